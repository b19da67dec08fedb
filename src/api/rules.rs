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

/// Label keys under finetune.dev/, training.kubeflow.org/ and kueue.x-k8s.io/ belong to this
/// operator, the training operator and Kueue; a user's pod label must not set or shadow them.
pub(super) fn reserved_label_keys() -> Rule {
    Rule::new(
        "self.all(k, !k.startsWith('finetune.dev/') && !k.startsWith('training.kubeflow.org/') && !k.startsWith('kueue.x-k8s.io/'))",
    )
    .message(
        "podTemplate.labels: keys under finetune.dev/, training.kubeflow.org/ and kueue.x-k8s.io/ are reserved for the operators",
    )
}

/// Fields that may change after creation; everything else in `spec` is frozen.
const MUTABLE_SPEC_FIELDS: &[&str] = &["suspend", "cleanup"];

/// Fields of `spec` that are always present once the schema defaults are applied.
const DEFAULTED_SPEC_FIELDS: &[&str] = &[
    "image",
    "model",
    "dataset",
    "output",
    "training",
    "resources",
    "backoffLimit",
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
