//! CEL rules and schema patterns enforced by the apiserver at admission.
//!
//! Each rule carries a message a user can act on. They live here, not inline on the fields, so
//! that they can be read (and reviewed for security) in one place.

use kube::core::{Message, Rule};

/// A path inside a volume: relative, with no `.`, `..` or empty segment, and no control
/// characters. The operator joins it under a fixed mount point, so it can never escape that mount.
pub(super) const RELATIVE_PATH_RULE: &str = "!self.startsWith('/') && !self.matches('(^|/)[.]{1,2}(/|$)') && !self.contains('//') && !self.matches('[\\\\x00-\\\\x1f\\\\x7f]')";
pub(super) const RELATIVE_PATH_MESSAGE: &str = "must be a relative path inside the volume: no leading '/', no '.', '..' or empty segment, no control characters";

pub(super) fn relative_path() -> Rule {
    Rule::new(RELATIVE_PATH_RULE).message(RELATIVE_PATH_MESSAGE)
}

/// The chat template is a Python module that InstructLab executes, so it must come from the
/// (trusted) image, never from a volume a user can write to.
pub(super) fn chat_template() -> Rule {
    Rule::new(
        "self.startsWith('/') && !self.matches('(^|/)[.]{1,2}(/|$)') && !self.contains('//') \
         && !self.matches('[\\\\x00-\\\\x1f\\\\x7f]') \
         && !['/data', '/model', '/output', '/tmp', '/dev'].exists(p, self == p || self.startsWith(p + '/'))",
    )
    .message(
        "preprocess.chatTemplate is executed as Python, so it must be an absolute path to a file \
         inside the image, not under /data, /model, /output, /tmp or /dev, without '.', '..' or \
         empty segments",
    )
}

/// Flags the operator sets from typed fields. Python's argparse accepts any unambiguous prefix of
/// a flag (`--chat-tmpl` means `--chat-tmpl-path`), so an extra argument is refused when its name
/// is a prefix of one of these.
pub(super) const MANAGED_MAIN_DS_FLAGS: &[&str] = &[
    "--model_name_or_path",
    "--data_path",
    "--output_dir",
    "--num_epochs",
    "--effective_batch_size",
    "--learning_rate",
    "--num_warmup_steps",
    "--max_batch_len",
    "--save_samples",
    "--seed",
    "--checkpoint_at_epoch",
    "--accelerate_full_state_at_epoch",
    "--keep_last_checkpoint_only",
    "--distributed_training_framework",
    "--cpu_offload_optimizer",
    "--cpu_offload_params_fsdp",
    "--lora_r",
    "--lora_alpha",
    "--lora_dropout",
    "--lora_quant_bits",
    "--lora_target_modules",
    "--chat-tmpl-path",
    "--chat_tmpl_path",
];

pub(super) fn extra_args() -> Rule {
    let managed = MANAGED_MAIN_DS_FLAGS
        .iter()
        .map(|f| format!("'{f}'"))
        .collect::<Vec<_>>()
        .join(", ");
    Rule::new(format!(
        "self.all(a, a.matches('^--[A-Za-z]') && !a.matches('[\\\\x00-\\\\x1f\\\\x7f]') \
         && ![{managed}].exists(m, m.startsWith(a.indexOf('=') < 0 ? a : a.substring(0, a.indexOf('=')))))"
    ))
    .message(
        "each training.extraArgs element must be one flag starting with '--' (e.g. '--use_liger' or \
         '--lr_scheduler=cosine') without control characters, and must not set (or abbreviate) a \
         flag the operator manages from typed fields such as --output_dir or --chat-tmpl-path",
    )
}

/// `metadata.name` must leave room for the child names and be a DNS-1035 label, because the
/// training operator names Services after the pods.
pub(super) fn name() -> Rule {
    Rule::new(format!(
        "size(self.metadata.name) <= {max} && self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')",
        max = super::MAX_NAME_LENGTH
    ))
    .message(Message::Message(format!(
        "metadata.name must be at most {max} characters, start with a lowercase letter and contain \
         only lowercase letters, digits and '-', so that the children <name>-preprocess, \
         <name>-master-0 and <name>-worker-N are valid DNS labels",
        max = super::MAX_NAME_LENGTH
    )))
}

pub(super) fn max_batch_len() -> Rule {
    Rule::new("!has(self.preprocess) || self.training.maxBatchLen >= self.preprocess.maxSeqLen")
        .message(
            "training.maxBatchLen (tokens per GPU per step) must be at least preprocess.maxSeqLen",
        )
}

pub(super) fn quantized_lora_needs_deepspeed() -> Rule {
    Rule::new("!has(self.lora) || !has(self.lora.quantizeBits) || self.framework == 'deepspeed'")
        .message("training.lora.quantizeBits (4-bit LoRA) requires training.framework: deepspeed; InstructLab does not support quantized LoRA with FSDP")
}

pub(super) fn full_state_without_lora() -> Rule {
    Rule::new("!has(self.lora) || !has(self.fullStateAtEpoch) || !self.fullStateAtEpoch")
        .message("training.fullStateAtEpoch cannot be true together with training.lora; InstructLab cannot save a resumable full state for LoRA")
}

/// fsdpShardingStrategy configures FSDP; with DeepSpeed InstructLab ignores it, which would hide
/// a mistake.
/// Kueue reads the workload priority class only from jobs it manages.
pub(super) fn priority_class_needs_queue() -> Rule {
    Rule::new("!has(self.workloadPriorityClassName) || has(self.queueName)").message(
        "scheduling.workloadPriorityClassName needs scheduling.queueName: only Kueue reads it",
    )
}

pub(super) fn sharding_strategy_needs_fsdp() -> Rule {
    Rule::new("!has(self.fsdpShardingStrategy) || self.framework == 'fsdp'").message(
        "training.fsdpShardingStrategy applies only to training.framework: fsdp; remove it, or \
         set framework: fsdp",
    )
}

/// Flags that optional typed fields of `training` render, with the CEL condition (on
/// `training`) under which they do. While such a field is set, `training.extraArgs` may not
/// pass, or abbreviate, one of its flags: argparse would take whichever comes last.
pub(super) const TYPED_OPTIONAL_FLAGS: &[(&str, &[&str])] = &[
    ("has(self.lrScheduler)", &["--lr_scheduler"]),
    (
        "has(self.fsdpShardingStrategy)",
        &["--fsdp_sharding_strategy"],
    ),
    ("has(self.useLiger) && self.useLiger", &["--use_liger"]),
    (
        "has(self.trustRemoteCode) && self.trustRemoteCode",
        &["--trust_remote_code"],
    ),
    (
        "has(self.onDemandCheckpointing) && self.onDemandCheckpointing",
        &["--on_demand_checkpointing"],
    ),
    (
        "has(self.adamw)",
        &[
            "--adamw_weight_decay",
            "--adamw_beta1",
            "--adamw_beta2",
            "--adamw_eps",
        ],
    ),
    (
        "has(self.validation)",
        &["--validation_split", "--validation_frequency"],
    ),
    (
        "has(self.tracking) && has(self.tracking.mlflow)",
        &[
            "--mlflow_tracking_uri",
            "--mlflow_experiment_name",
            "--mlflow_run_name",
        ],
    ),
    (
        "has(self.tracking) && has(self.tracking.wandb)",
        &["--wandb_project", "--wandb_entity", "--wandb_run_name"],
    ),
    (
        "has(self.tracking) && has(self.tracking.tensorboardDir)",
        &["--tensorboard_log_dir"],
    ),
];

pub(super) fn extra_args_repeat_typed_fields() -> Rule {
    let flags = TYPED_OPTIONAL_FLAGS
        .iter()
        .flat_map(|(condition, flags)| {
            flags
                .iter()
                .map(move |f| format!("({condition} ? '{f}' : '')"))
        })
        .collect::<Vec<_>>()
        .join(", ");
    Rule::new(format!(
        "!has(self.extraArgs) || self.extraArgs.all(a, ![{flags}].exists(m, m != '' \
         && m.startsWith(a.indexOf('=') < 0 ? a : a.substring(0, a.indexOf('=')))))"
    ))
    .message(
        "training.extraArgs repeats (or abbreviates) a flag that a typed field of training sets: \
         lrScheduler, fsdpShardingStrategy, useLiger, trustRemoteCode, onDemandCheckpointing, \
         adamw (--adamw_*), validation (--validation_*), tracking.mlflow (--mlflow_*), \
         tracking.wandb (--wandb_*) or tracking.tensorboardDir (--tensorboard_log_dir); remove \
         the flag from extraArgs and keep the typed field",
    )
}

/// A decimal number as Python's float() reads it: digits with an optional fraction, and an
/// optional exponent of at most two digits (so that, within the field's 32 characters, the value
/// is neither infinite nor rounded to 0). `[.]` is a literal dot.
const DECIMAL: &str = "^([0-9]+([.][0-9]*)?|[.][0-9]+)([eE][-+]?[0-9]{1,2})?$";

/// A decimal string of at least 0.
pub(super) fn non_negative_decimal(field: &str) -> Rule {
    Rule::new(format!("self.matches('{DECIMAL}')")).message(Message::Message(format!(
        "{field} must be a decimal number of at least 0, written as a string, e.g. \"0.01\" or \
         \"1e-4\" (exponents of at most two digits)"
    )))
}

/// A decimal string greater than 0: at least one non-zero digit before any exponent.
pub(super) fn positive_decimal(field: &str) -> Rule {
    Rule::new(format!(
        "self.matches('{DECIMAL}') && self.matches('^[^eE]*[1-9]')"
    ))
    .message(Message::Message(format!(
        "{field} must be a decimal number greater than 0, written as a string, e.g. \"1e-8\" \
         (exponents of at most two digits)"
    )))
}

/// A decimal string in [0, 1), without exponent.
pub(super) fn unit_interval_decimal(field: &str) -> Rule {
    Rule::new("self.matches('^(0([.][0-9]*)?|[.][0-9]+)$')").message(Message::Message(format!(
        "{field} must be a decimal number of at least 0 and below 1, written as a string, e.g. \
         \"0.9\""
    )))
}

/// A decimal string strictly between 0 and 1, without exponent.
pub(super) fn validation_split() -> Rule {
    Rule::new("self.matches('^0?[.][0-9]*[1-9][0-9]*$')").message(
        "training.validation.split must be a decimal number greater than 0 and below 1, written \
         as a string, e.g. \"0.05\" (the fraction of the samples held out for validation)",
    )
}

/// A name passed to a tracking backend: one line of text.
pub(super) fn tracking_name(field: &str) -> Rule {
    Rule::new("!self.matches('[\\\\x00-\\\\x1f\\\\x7f]')").message(Message::Message(format!(
        "{field} must not contain control characters such as newlines"
    )))
}

/// The MLflow tracking URI: no whitespace or control characters, and no credentials in it
/// (anything before an '@' in the authority), which would be stored in the spec in plain text
/// and copied into the pods' argv.
pub(super) fn tracking_uri() -> Rule {
    Rule::new(
        "!self.matches('[\\\\x00-\\\\x20\\\\x7f]') && !self.matches('^[^/?#]*//[^/?#]*@')",
    )
    .message(
        "training.tracking.mlflow.trackingUri must be a URI without spaces or control characters \
         and without credentials (user:password@host); give those with token, or username and \
         password, from a Secret",
    )
}

/// MLflow uses username and password over a token when it has both, silently; and either alone
/// of username and password is ignored.
pub(super) fn mlflow_credentials() -> Rule {
    Rule::new(
        "has(self.username) == has(self.password) && !(has(self.token) && has(self.username))",
    )
    .message(
        "training.tracking.mlflow: set token, or username and password together, not both (MLflow \
         would ignore the token, or a username without a password)",
    )
}

/// runAsNonRoot: true with runAsUser: 0 is a pod the kubelet would never start; refused at once.
pub(super) fn non_root_user() -> Rule {
    Rule::new(
        "!has(self.runAsNonRoot) || !self.runAsNonRoot || !has(self.runAsUser) || self.runAsUser != 0",
    )
    .message(
        "podSecurityContext.runAsUser: 0 is root, which runAsNonRoot: true forbids (the kubelet \
         would refuse to start the containers); set a non-zero UID, or leave runAsUser out to use \
         the image's user",
    )
}

/// Label keys under finetune.dev/, training.kubeflow.org/, trainer.kubeflow.org/,
/// jobset.sigs.k8s.io/ and kueue.x-k8s.io/ belong to this operator, the two Kubeflow backends,
/// JobSet and Kueue; a user's pod label must not set or shadow them.
pub(super) fn reserved_label_keys() -> Rule {
    Rule::new(
        "self.all(k, !['finetune.dev/', 'training.kubeflow.org/', 'trainer.kubeflow.org/', 'jobset.sigs.k8s.io/', 'kueue.x-k8s.io/'].exists(p, k.startsWith(p)))",
    )
    .message(
        "podTemplate.labels: keys under finetune.dev/, training.kubeflow.org/, trainer.kubeflow.org/, jobset.sigs.k8s.io/ and kueue.x-k8s.io/ are reserved for the operators",
    )
}

/// What a TrainJob cannot carry (Trainer v2.3's runtime patches have no field for it), refused
/// by name: `what` is the field, `why` how to do without it.
fn trainjob_cannot(condition: &str, what: &str, why: &str) -> Rule {
    Rule::new(format!("self.backend != 'TrainJob' || !({condition})")).message(
        Message::Message(format!(
            "{what} cannot be used with backend: TrainJob (Kubeflow Trainer v2 has no field for it); {why}"
        )),
    )
}

pub(super) fn trainjob_priority_class() -> Rule {
    trainjob_cannot(
        "has(self.scheduling) && has(self.scheduling.priorityClassName)",
        "scheduling.priorityClassName",
        "use backend: PyTorchJob, or scheduling.queueName with scheduling.workloadPriorityClassName (Kueue)",
    )
}

pub(super) fn trainjob_scheduler_name() -> Rule {
    trainjob_cannot(
        "has(self.scheduling) && has(self.scheduling.schedulerName)",
        "scheduling.schedulerName",
        "use backend: PyTorchJob",
    )
}

/// Kueue's TrainJob integration (v0.17) is built on Trainer v2.2's types: the update with which
/// it admits a TrainJob drops the runtime patch's `terminationGracePeriodSeconds` (new in v2.3),
/// Trainer renders the JobSet without it, and JobSet v0.12 refuses that change (`spec.replicatedJobs:
/// field is immutable`): the job would stay suspended for ever. A queued TrainJob therefore leaves
/// the grace period to the runtimes, which hold the default; any other value is refused.
pub(super) fn trainjob_queue() -> Rule {
    let default = super::DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS;
    Rule::new(format!(
        "self.backend != 'TrainJob' || !has(self.scheduling) || !has(self.scheduling.queueName) || !has(self.terminationGracePeriodSeconds) || self.terminationGracePeriodSeconds == {default}"
    ))
    .message(Message::Message(format!(
        "with backend: TrainJob and scheduling.queueName, terminationGracePeriodSeconds must be {default}, the default (the operator's TrainJob runtimes hold it: Kueue v0.17 rewrites a queued TrainJob without a grace period of its own, and its JobSet then never starts); leave it out or use backend: PyTorchJob"
    )))
}

pub(super) fn trainjob_image_pull_policy() -> Rule {
    trainjob_cannot(
        "has(self.imagePullPolicy)",
        "imagePullPolicy",
        "leave it out (the default applies: Always for a :latest tag, else IfNotPresent) or use backend: PyTorchJob",
    )
}

/// Fields that may change after creation; everything else in `spec` is frozen.
const MUTABLE_SPEC_FIELDS: &[&str] = &["suspend", "cleanup"];

/// Fields of `spec` that are always present once the schema defaults are applied.
const DEFAULTED_SPEC_FIELDS: &[&str] = &[
    "backend",
    "image",
    "model",
    "dataset",
    "output",
    "training",
    "resources",
    "backoffLimit",
    "disruptionLimit",
    "terminationGracePeriodSeconds",
];

/// Fields of `spec` that may be absent.
const OPTIONAL_SPEC_FIELDS: &[&str] = &[
    "imagePullPolicy",
    "imagePullSecrets",
    "preprocess",
    "scheduling",
    "env",
    "podTemplate",
    "serviceAccountName",
    "podSecurityContext",
    "activeDeadlineSeconds",
    "progressDeadlineSeconds",
];

/// A changed training spec that silently retrains, or is silently ignored, is worse than a clear
/// refusal. Optional fields compare presence too, so adding `preprocess` later is also refused.
pub(super) fn immutable_spec() -> Rule {
    let mut terms: Vec<String> = DEFAULTED_SPEC_FIELDS
        .iter()
        .map(|f| format!("self.{f} == oldSelf.{f}"))
        .collect();
    terms.extend(OPTIONAL_SPEC_FIELDS.iter().map(|f| {
        format!("has(self.{f}) == has(oldSelf.{f}) && (!has(self.{f}) || self.{f} == oldSelf.{f})")
    }));
    Rule::new(terms.join(" && ")).message(Message::Message(format!(
        "spec is immutable once the FineTuneJob is created, except {}: create a new FineTuneJob to train again",
        MUTABLE_SPEC_FIELDS.join(" and ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every field of `training` renders flags that extraArgs may not repeat: either always
    /// (their flags are in MANAGED_MAIN_DS_FLAGS) or while set (TYPED_OPTIONAL_FLAGS). A new
    /// field must be added to one of the two.
    #[test]
    fn every_training_field_guards_its_flags_against_extra_args() {
        const MANAGED_FIELDS: &[&str] = &[
            "epochs",
            "effectiveBatchSize",
            "learningRate",
            "warmupSteps",
            "maxBatchLen",
            "saveSamples",
            "seed",
            "checkpointAtEpoch",
            "keepLastCheckpointOnly",
            "fullStateAtEpoch",
            "framework",
            "cpuOffloadOptimizer",
            "cpuOffloadParams",
            "lora",
            "extraArgs",
        ];
        let crd = <super::super::FineTuneJob as kube::CustomResourceExt>::crd();
        let schema = serde_json::to_value(&crd.spec.versions[0].schema).unwrap();
        let props =
            schema["openAPIV3Schema"]["properties"]["spec"]["properties"]["training"]["properties"]
                .as_object()
                .unwrap();
        for field in props.keys() {
            let typed = TYPED_OPTIONAL_FLAGS
                .iter()
                .any(|(condition, _)| condition.contains(&format!("has(self.{field})")));
            assert!(
                typed || MANAGED_FIELDS.contains(&field.as_str()),
                "training.{field} is in neither list"
            );
        }
        // The two lists of flags are disjoint: a managed flag is refused in extraArgs anyway.
        for (_, flags) in TYPED_OPTIONAL_FLAGS {
            for flag in *flags {
                assert!(!MANAGED_MAIN_DS_FLAGS.contains(flag), "{flag}");
            }
        }
    }

    /// The immutability rule must name every spec field except the mutable ones, or a new field
    /// would silently become mutable.
    #[test]
    fn immutable_rule_covers_every_spec_field() {
        let crd = <super::super::FineTuneJob as kube::CustomResourceExt>::crd();
        let schema = serde_json::to_value(&crd.spec.versions[0].schema).unwrap();
        let props = schema["openAPIV3Schema"]["properties"]["spec"]["properties"]
            .as_object()
            .unwrap();
        let mut listed: Vec<&str> = DEFAULTED_SPEC_FIELDS
            .iter()
            .chain(OPTIONAL_SPEC_FIELDS)
            .chain(MUTABLE_SPEC_FIELDS)
            .copied()
            .collect();
        listed.sort_unstable();
        let mut actual: Vec<&str> = props.keys().map(String::as_str).collect();
        actual.sort_unstable();
        assert_eq!(listed, actual);
    }
}
