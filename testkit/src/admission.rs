//! The specs admission refuses, as one table: the CEL tests (`tests/cel_rules.rs`) check each
//! case with the CRD's rules and size limits evaluated locally, and the end-to-end suite sends
//! each to the real apiserver, so both check the same list.

use finetune_operator::testing::JobFixture;
use serde_json::{Value, json};

/// What in the CRD refuses a case.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    /// A CEL rule (`x-kubernetes-validations`): refused locally and by the apiserver.
    Rule,
    /// A size limit (`maxLength`, `maxItems`, ...): refused locally (`api::size_errors`) and by
    /// the apiserver.
    Size,
    /// Another OpenAPI check (a `pattern`), which only the apiserver evaluates.
    Schema,
}

/// One refused spec: `base()` with `value` at `pointer`.
#[derive(Clone, Debug)]
pub struct AdmissionCase {
    pub name: &'static str,
    /// A JSON pointer into the whole object (`/spec/...`, `/metadata/name`).
    pub pointer: &'static str,
    pub value: Value,
    /// A fragment of the refusal. Compared in one canonical form, since the apiserver and the
    /// local checks write the same refusal slightly differently: without regard to case ("Too
    /// long", "too long"), and with map keys after a dot (`labels.team`, `labels[team]`).
    pub message: &'static str,
    pub check: Check,
    /// Further changes the refusal needs (e.g. `spec.backend: TrainJob`).
    pub with: Vec<(&'static str, Value)>,
}

impl AdmissionCase {
    /// `object` with this case's value at its pointer (objects on the way are created).
    pub fn apply_to(&self, object: &Value) -> Value {
        let object = with(object.clone(), self.pointer, self.value.clone());
        self.with.iter().fold(object, |object, (pointer, value)| {
            with(object, pointer, value.clone())
        })
    }

    /// Whether `text` (an error message, or several) holds the expected fragment.
    pub fn refused_in(&self, text: &str) -> bool {
        canonical(text).contains(&canonical(self.message))
    }
}

/// `text` in lower case, with a map key in brackets written after a dot (`a[k]` as `a.k`); list
/// indices (`env[0]`) stay.
fn canonical(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find('[') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after.find(']') {
            Some(close) if !after[..close].chars().all(|c| c.is_ascii_digit()) => {
                out.push('.');
                out.push_str(&after[..close]);
                rest = &after[close + 1..];
            }
            _ => {
                out.push('[');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out.to_lowercase()
}

/// The valid FineTuneJob the cases change: preprocessing with a chat template, LoRA-free
/// full training with extra arguments.
pub fn base() -> JobFixture {
    JobFixture::new("granite-ft")
        .namespace("default")
        .image("quay.io/instructlab/instructlab-training:v0.12.1")
        .spec(json!({
            "model": {"claimName": "models", "path": "granite-7b"},
            "dataset": {"claimName": "datasets", "path": "skills/train.jsonl"},
            "output": {"claimName": "out"},
            "preprocess": {"maxSeqLen": 4096, "chatTemplate": "/opt/templates/tmpl.py"},
            "training": {"epochs": 3, "extraArgs": ["--use_liger", "--lr_scheduler=cosine"]},
        }))
}

/// `object` with `value` at the JSON `pointer`, creating objects on the way.
pub fn with(mut object: Value, pointer: &str, value: Value) -> Value {
    finetune_operator::testing::set_pointer(&mut object, pointer, value);
    object
}

/// Every refused spec: [`rule_cases`], [`size_cases`] and [`schema_cases`].
pub fn admission_cases() -> Vec<AdmissionCase> {
    let mut cases = rule_cases();
    cases.extend(size_cases());
    cases.extend(schema_cases());
    cases
}

fn case(
    name: &'static str,
    pointer: &'static str,
    value: Value,
    message: &'static str,
    check: Check,
) -> AdmissionCase {
    AdmissionCase {
        name,
        pointer,
        value,
        message,
        check,
        with: Vec::new(),
    }
}

/// A case refused only with `spec.backend: TrainJob`.
fn on_trainjob(
    name: &'static str,
    pointer: &'static str,
    value: Value,
    message: &'static str,
) -> AdmissionCase {
    AdmissionCase {
        with: vec![("/spec/backend", json!("TrainJob"))],
        ..case(name, pointer, value, message, Check::Rule)
    }
}

/// Specs the CRD's CEL rules refuse, with the message a user acts on.
pub fn rule_cases() -> Vec<AdmissionCase> {
    let rule = |name, pointer, value, message| case(name, pointer, value, message, Check::Rule);
    vec![
        on_trainjob(
            "priority class with a TrainJob",
            "/spec/scheduling/priorityClassName",
            json!("high"),
            "scheduling.priorityClassName cannot be used with backend: TrainJob",
        ),
        on_trainjob(
            "scheduler name with a TrainJob",
            "/spec/scheduling/schedulerName",
            json!("volcano"),
            "scheduling.schedulerName cannot be used with backend: TrainJob",
        ),
        AdmissionCase {
            with: vec![
                ("/spec/backend", json!("TrainJob")),
                ("/spec/scheduling/queueName", json!("team-queue")),
            ],
            ..on_trainjob(
                "a grace period of its own on a TrainJob queued by Kueue",
                "/spec/terminationGracePeriodSeconds",
                json!(300),
                "with backend: TrainJob and scheduling.queueName, terminationGracePeriodSeconds must be 120",
            )
        },
        on_trainjob(
            "image pull policy with a TrainJob",
            "/spec/imagePullPolicy",
            json!("Always"),
            "imagePullPolicy cannot be used with backend: TrainJob",
        ),
        rule(
            "a JobSet label on the pods",
            "/spec/podTemplate/labels",
            json!({"jobset.sigs.k8s.io/jobset-name": "other"}),
            "reserved for the operators",
        ),
        rule(
            "name too long",
            "/metadata/name",
            json!("a".repeat(41)),
            "at most 40 characters",
        ),
        rule(
            "name not DNS-1035",
            "/metadata/name",
            json!("1abc"),
            "start with a lowercase letter",
        ),
        rule(
            "workload priority without a queue",
            "/spec/scheduling/workloadPriorityClassName",
            json!("fto-high"),
            "scheduling.workloadPriorityClassName needs scheduling.queueName",
        ),
        rule(
            "path traversal",
            "/spec/dataset/path",
            json!("../../etc/passwd"),
            "must be a relative path inside the volume",
        ),
        rule(
            "absolute dataset path",
            "/spec/dataset/path",
            json!("/etc/passwd"),
            "relative path",
        ),
        rule(
            "dot-dot dataset path",
            "/spec/dataset/path",
            json!("a/../../x"),
            "relative path",
        ),
        rule(
            "dot-dot alone",
            "/spec/model/path",
            json!(".."),
            "relative path",
        ),
        rule(
            "dot segment",
            "/spec/model/path",
            json!("./x"),
            "relative path",
        ),
        rule(
            "empty segment",
            "/spec/output/path",
            json!("a//b"),
            "relative path",
        ),
        rule(
            "newline in path",
            "/spec/dataset/path",
            json!("a\nb"),
            "control characters",
        ),
        rule(
            "NUL in path",
            "/spec/dataset/path",
            json!("a\u{0}b"),
            "control characters",
        ),
        rule(
            "chat template on the data volume",
            "/spec/preprocess/chatTemplate",
            json!("/data/evil.py"),
            "executed as Python",
        ),
        rule(
            "chat template under /output",
            "/spec/preprocess/chatTemplate",
            json!("/output/x/t.py"),
            "executed as Python",
        ),
        rule(
            "chat template relative",
            "/spec/preprocess/chatTemplate",
            json!("t.py"),
            "executed as Python",
        ),
        rule(
            "chat template escaping by ..",
            "/spec/preprocess/chatTemplate",
            json!("/opt/../data/t.py"),
            "executed as Python",
        ),
        rule(
            "chat template by //",
            "/spec/preprocess/chatTemplate",
            json!("//data/t.py"),
            "executed as Python",
        ),
        rule(
            "maxBatchLen below maxSeqLen",
            "/spec/training/maxBatchLen",
            json!(100),
            "at least preprocess.maxSeqLen",
        ),
        rule(
            "4-bit LoRA with FSDP",
            "/spec/training/lora",
            json!({"quantizeBits": 4}),
            "requires training.framework: deepspeed",
        ),
        rule(
            "full state with LoRA",
            "/spec/training",
            json!({"epochs": 3, "extraArgs": ["--use_liger", "--lr_scheduler=cosine"],
                   "lora": {}, "fullStateAtEpoch": true}),
            "cannot be true together with training.lora",
        ),
        rule(
            "extra arg without --",
            "/spec/training/extraArgs",
            json!(["-x"]),
            "starting with '--'",
        ),
        rule(
            "extra arg positional",
            "/spec/training/extraArgs",
            json!(["rm -rf /"]),
            "starting with '--'",
        ),
        rule(
            "shell in extraArgs",
            "/spec/training/extraArgs",
            json!(["; rm -rf /"]),
            "starting with '--'",
        ),
        rule(
            "extra arg sets a managed flag",
            "/spec/training/extraArgs",
            json!(["--output_dir=/tmp"]),
            "flag the operator manages",
        ),
        rule(
            "extra arg abbreviates the chat template flag",
            "/spec/training/extraArgs",
            json!(["--chat-tmpl=/data/evil.py"]),
            "flag the operator manages",
        ),
        rule(
            "extra arg abbreviates a managed switch",
            "/spec/training/extraArgs",
            json!(["--accelerate"]),
            "flag the operator manages",
        ),
        rule(
            "extra arg with newline",
            "/spec/training/extraArgs",
            json!(["--a\n--b"]),
            "control characters",
        ),
        rule(
            "root user with runAsNonRoot",
            "/spec/podSecurityContext",
            json!({"runAsNonRoot": true, "runAsUser": 0}),
            "runAsUser: 0 is root, which runAsNonRoot: true forbids",
        ),
        rule(
            "reserved pod label",
            "/spec/podTemplate",
            json!({"labels": {"finetune.dev/job-name": "other"}}),
            "reserved",
        ),
    ]
}

/// Values over their size limit, refused with the field (the local check also names the
/// limit; `api::size_errors` has its own tests).
pub fn size_cases() -> Vec<AdmissionCase> {
    let size = |name, pointer, value, message| case(name, pointer, value, message, Check::Size);
    let env_value = "x".repeat(finetune_operator::api::MAX_ENV_VALUE_LENGTH as usize + 1);
    let annotation = "x".repeat(finetune_operator::api::MAX_ANNOTATION_VALUE_LENGTH as usize + 1);
    vec![
        size(
            "env value over 32 KiB",
            "/spec/env",
            json!([{"name": "A", "value": env_value}]),
            "spec.env[0].value: too long",
        ),
        size(
            "more than 128 env vars",
            "/spec/env",
            (0..129)
                .map(|i| json!({"name": format!("V{i}"), "value": "x"}))
                .collect(),
            "spec.env: too many",
        ),
        size(
            "annotation value over 4 KiB",
            "/spec/podTemplate",
            json!({"annotations": {"example.com/a": annotation}}),
            "spec.podTemplate.annotations[example.com/a]: too long",
        ),
        size(
            "label value over 63",
            "/spec/podTemplate",
            json!({"labels": {"team": "x".repeat(64)}}),
            "spec.podTemplate.labels[team]: too long",
        ),
        size(
            "node selector value over 63",
            "/spec/scheduling",
            json!({"nodeSelector": {"pool": "x".repeat(64)}}),
            "spec.scheduling.nodeSelector[pool]: too long",
        ),
        size(
            "image over 1024",
            "/spec/image",
            json!("x".repeat(1025)),
            "spec.image: too long",
        ),
        size(
            "claim name over 253",
            "/spec/model/claimName",
            json!("x".repeat(254)),
            "spec.model.claimName: too long",
        ),
        size(
            "dataset path over 1024",
            "/spec/dataset/path",
            json!("x".repeat(1025)),
            "spec.dataset.path: too long",
        ),
        size(
            "extra argument over 1024",
            "/spec/training/extraArgs",
            json!([format!("--x={}", "y".repeat(1024))]),
            "spec.training.extraArgs[0]: too long",
        ),
        size(
            "target module over 128",
            "/spec/training/lora",
            json!({"targetModules": ["q".repeat(129)]}),
            "spec.training.lora.targetModules[0]: too long",
        ),
        size(
            "toleration value over 63",
            "/spec/scheduling",
            json!({"tolerations": [{"key": "gpu", "value": "x".repeat(64)}]}),
            "spec.scheduling.tolerations[0].value: too long",
        ),
        size(
            "affinity values over 1024 characters",
            "/spec/scheduling",
            json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [
                    {"key": "pool", "operator": "In", "values": ["x".repeat(1025)]}
                ]}]
            }}}}),
            "spec.scheduling.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].values[0]: too long",
        ),
        size(
            "quantity over 64",
            "/spec/resources",
            json!({"memory": "9".repeat(65)}),
            "spec.resources.memory: too long",
        ),
    ]
}

/// Values only the apiserver refuses: OpenAPI checks besides CEL rules and size limits.
pub fn schema_cases() -> Vec<AdmissionCase> {
    vec![case(
        "learning rate not a positive decimal",
        "/spec/training/learningRate",
        json!("$(HOME)"),
        "spec.training.learningRate",
        Check::Schema,
    )]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_compare_in_one_form() {
        let case = case(
            "label value over 63",
            "/spec/podTemplate/labels/team",
            json!("x"),
            "spec.podTemplate.labels[team]: too long",
            Check::Size,
        );
        assert!(case.refused_in("spec.podTemplate.labels[team]: too long: 64 characters"));
        assert!(case.refused_in("* spec.podTemplate.labels.team: Too long: may not be more"));
        assert!(!case.refused_in("spec.podTemplate.labels.other: Too long"));
        assert_eq!(
            canonical("spec.env[0].value: A[b]c[]"),
            "spec.env[0].value: a.bc[]"
        );
    }

    #[test]
    fn every_case_changes_the_base() {
        let base = base().json();
        for case in admission_cases() {
            assert_ne!(case.apply_to(&base), base, "{}", case.name);
        }
    }
}
