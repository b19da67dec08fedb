//! The CRD's CEL rules and size limits, evaluated locally on valid and invalid FineTuneJobs. The
//! same rules and limits apply in the apiserver at admission; the end-to-end suite checks them
//! there too.

use finetune_operator::api;
use kube::core::cel::Validator;
use serde_json::{Value, json};

fn schema() -> Value {
    let crd = serde_json::to_value(api::crd()).unwrap();
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

fn valid() -> Value {
    json!({
        "apiVersion": "finetune.dev/v1alpha1",
        "kind": "FineTuneJob",
        "metadata": {"name": "granite-ft", "namespace": "default"},
        "spec": {
            "image": "quay.io/instructlab/instructlab-training:v0.12.1",
            "model": {"claimName": "models", "path": "granite-7b"},
            "dataset": {"claimName": "datasets", "path": "skills/train.jsonl"},
            "output": {"claimName": "out"},
            "preprocess": {"maxSeqLen": 4096, "chatTemplate": "/opt/templates/tmpl.py"},
            "training": {"epochs": 3, "extraArgs": ["--use_liger", "--lr_scheduler=cosine"]},
        }
    })
}

/// Applies the schema defaults (as the apiserver does before validation), checks the size
/// limits and runs the rules.
fn check(obj: &Value, old: Option<&Value>) -> Result<(), Vec<String>> {
    let schema = schema();
    let obj = kube::core::cel::apply_defaults(&schema, obj);
    let old = old.map(|o| kube::core::cel::apply_defaults(&schema, o));
    let mut errors = api::size_errors(&schema, &obj);
    if let Err(e) = Validator::new().validate(&schema, &obj, old.as_ref()) {
        errors.extend(e.into_vec().into_iter().map(|e| e.to_string()));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

fn with(mut obj: Value, pointer: &str, value: Value) -> Value {
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    obj.pointer_mut(parent).unwrap()[key] = value;
    obj
}

#[test]
fn a_valid_job_passes() {
    check(&valid(), None).unwrap();
}

#[test]
fn invalid_jobs_are_refused_with_an_actionable_message() {
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "name too long",
            with(valid(), "/metadata/name", json!("a".repeat(41))),
            "at most 40 characters",
        ),
        (
            "name not DNS-1035",
            with(valid(), "/metadata/name", json!("1abc")),
            "start with a lowercase letter",
        ),
        (
            "absolute dataset path",
            with(valid(), "/spec/dataset/path", json!("/etc/passwd")),
            "relative path",
        ),
        (
            "dot-dot dataset path",
            with(valid(), "/spec/dataset/path", json!("a/../../x")),
            "relative path",
        ),
        (
            "dot-dot alone",
            with(valid(), "/spec/model/path", json!("..")),
            "relative path",
        ),
        (
            "dot segment",
            with(valid(), "/spec/model/path", json!("./x")),
            "relative path",
        ),
        (
            "empty segment",
            with(valid(), "/spec/output/path", json!("a//b")),
            "relative path",
        ),
        (
            "newline in path",
            with(valid(), "/spec/dataset/path", json!("a\nb")),
            "control characters",
        ),
        (
            "NUL in path",
            with(valid(), "/spec/dataset/path", json!("a\u{0}b")),
            "control characters",
        ),
        (
            "chat template on the data volume",
            with(
                valid(),
                "/spec/preprocess/chatTemplate",
                json!("/data/t.py"),
            ),
            "executed as Python",
        ),
        (
            "chat template under /output",
            with(
                valid(),
                "/spec/preprocess/chatTemplate",
                json!("/output/x/t.py"),
            ),
            "executed as Python",
        ),
        (
            "chat template relative",
            with(valid(), "/spec/preprocess/chatTemplate", json!("t.py")),
            "executed as Python",
        ),
        (
            "chat template escaping by ..",
            with(
                valid(),
                "/spec/preprocess/chatTemplate",
                json!("/opt/../data/t.py"),
            ),
            "executed as Python",
        ),
        (
            "chat template by //",
            with(
                valid(),
                "/spec/preprocess/chatTemplate",
                json!("//data/t.py"),
            ),
            "executed as Python",
        ),
        (
            "maxBatchLen below maxSeqLen",
            with(valid(), "/spec/training/maxBatchLen", json!(100)),
            "at least preprocess.maxSeqLen",
        ),
        (
            "4-bit LoRA with FSDP",
            with(valid(), "/spec/training/lora", json!({"quantizeBits": 4})),
            "requires training.framework: deepspeed",
        ),
        (
            "full state with LoRA",
            with(
                with(valid(), "/spec/training/lora", json!({})),
                "/spec/training/fullStateAtEpoch",
                json!(true),
            ),
            "cannot be true together with training.lora",
        ),
        (
            "extra arg without --",
            with(valid(), "/spec/training/extraArgs", json!(["-x"])),
            "starting with '--'",
        ),
        (
            "extra arg positional",
            with(valid(), "/spec/training/extraArgs", json!(["rm -rf /"])),
            "starting with '--'",
        ),
        (
            "extra arg sets a managed flag",
            with(
                valid(),
                "/spec/training/extraArgs",
                json!(["--output_dir=/tmp"]),
            ),
            "flag the operator manages",
        ),
        (
            "extra arg abbreviates the chat template flag",
            with(
                valid(),
                "/spec/training/extraArgs",
                json!(["--chat-tmpl=/data/x.py"]),
            ),
            "flag the operator manages",
        ),
        (
            "extra arg abbreviates a managed switch",
            with(valid(), "/spec/training/extraArgs", json!(["--accelerate"])),
            "flag the operator manages",
        ),
        (
            "extra arg with newline",
            with(valid(), "/spec/training/extraArgs", json!(["--a\n--b"])),
            "control characters",
        ),
        (
            "root user with runAsNonRoot",
            with(
                valid(),
                "/spec/podSecurityContext",
                json!({"runAsNonRoot": true, "runAsUser": 0}),
            ),
            "runAsUser: 0 is root, which runAsNonRoot: true forbids",
        ),
        (
            "reserved pod label",
            with(
                valid(),
                "/spec/podTemplate",
                json!({"labels": {"finetune.dev/job-name": "other"}}),
            ),
            "reserved",
        ),
    ];
    for (what, obj, message) in cases {
        match check(&obj, None) {
            Ok(()) => panic!("{what}: accepted, expected a refusal containing {message:?}"),
            Err(errors) => assert!(
                errors.iter().any(|e| e.contains(message)),
                "{what}: expected {message:?} in {errors:#?}"
            ),
        }
    }
}

#[test]
fn oversized_values_are_refused_with_the_field_and_the_limit() {
    let env_value = "x".repeat(api::MAX_ENV_VALUE_LENGTH as usize + 1);
    let annotation = "x".repeat(api::MAX_ANNOTATION_VALUE_LENGTH as usize + 1);
    let many = |n: usize, item: &dyn Fn(usize) -> Value| (0..n).map(item).collect::<Vec<_>>();
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "env value over 32 KiB",
            with(
                valid(),
                "/spec/env",
                json!([{"name": "A", "value": env_value}]),
            ),
            "spec.env[0].value: too long: 32769 characters, at most 32768",
        ),
        (
            "more than 128 env vars",
            with(
                valid(),
                "/spec/env",
                json!(many(
                    129,
                    &|i| json!({"name": format!("V{i}"), "value": "x"})
                )),
            ),
            "spec.env: too many items: 129, at most 128",
        ),
        (
            "annotation value over 4 KiB",
            with(
                valid(),
                "/spec/podTemplate",
                json!({"annotations": {"example.com/a": annotation}}),
            ),
            "spec.podTemplate.annotations[example.com/a]: too long: 4097 characters, at most 4096",
        ),
        (
            "label value over 63",
            with(
                valid(),
                "/spec/podTemplate",
                json!({"labels": {"team": "x".repeat(64)}}),
            ),
            "spec.podTemplate.labels[team]: too long",
        ),
        (
            "node selector value over 63",
            with(
                valid(),
                "/spec/scheduling",
                json!({"nodeSelector": {"pool": "x".repeat(64)}}),
            ),
            "spec.scheduling.nodeSelector[pool]: too long",
        ),
        (
            "image over 1024",
            with(valid(), "/spec/image", json!("x".repeat(1025))),
            "spec.image: too long",
        ),
        (
            "claim name over 253",
            with(valid(), "/spec/model/claimName", json!("x".repeat(254))),
            "spec.model.claimName: too long",
        ),
        (
            "dataset path over 1024",
            with(valid(), "/spec/dataset/path", json!("x".repeat(1025))),
            "spec.dataset.path: too long",
        ),
        (
            "extra argument over 1024",
            with(
                valid(),
                "/spec/training/extraArgs",
                json!([format!("--x={}", "y".repeat(1024))]),
            ),
            "spec.training.extraArgs[0]: too long",
        ),
        (
            "target module over 128",
            with(
                valid(),
                "/spec/training/lora",
                json!({"targetModules": ["q".repeat(129)]}),
            ),
            "spec.training.lora.targetModules[0]: too long",
        ),
        (
            "toleration value over 63",
            with(
                valid(),
                "/spec/scheduling",
                json!({"tolerations": [{"key": "gpu", "value": "x".repeat(64)}]}),
            ),
            "spec.scheduling.tolerations[0].value: too long",
        ),
        (
            "affinity values over 1024 characters",
            with(
                valid(),
                "/spec/scheduling",
                json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [{"matchExpressions": [
                        {"key": "pool", "operator": "In", "values": ["x".repeat(1025)]}
                    ]}]
                }}}}),
            ),
            "spec.scheduling.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].values[0]: too long",
        ),
        (
            "quantity over 64",
            with(
                valid(),
                "/spec/resources",
                json!({"memory": "9".repeat(65)}),
            ),
            "spec.resources.memory: too long",
        ),
    ];
    for (what, obj, message) in cases {
        match check(&obj, None) {
            Ok(()) => panic!("{what}: accepted, expected a refusal containing {message:?}"),
            Err(errors) => assert!(
                errors.iter().any(|e| e.contains(message)),
                "{what}: expected {message:?} in {errors:#?}"
            ),
        }
    }

    // At the limits, the same values pass.
    let at_limits = with(
        with(
            valid(),
            "/spec/env",
            json!([{"name": "A", "value": "x".repeat(api::MAX_ENV_VALUE_LENGTH as usize)}]),
        ),
        "/spec/podTemplate",
        json!({"annotations": {"example.com/a": "x".repeat(api::MAX_ANNOTATION_VALUE_LENGTH as usize)}}),
    );
    check(&at_limits, None).unwrap();
}

#[test]
fn hostile_but_harmless_values_pass_admission() {
    // These reach the program only as single argv elements; admission has no reason to refuse
    // them, and the escaping tests show they arrive literally.
    for path in [
        "$(HOME)/x.jsonl",
        "`id`.jsonl",
        "a; rm -rf ~.jsonl",
        "it's \"q\".jsonl",
        "données/ü.jsonl",
    ] {
        check(&with(valid(), "/spec/dataset/path", json!(path)), None)
            .unwrap_or_else(|e| panic!("{path}: {e:?}"));
    }
}

#[test]
fn spec_is_immutable_except_suspend_and_cleanup() {
    let old = valid();
    let refused = [
        (
            "training.epochs",
            with(valid(), "/spec/training/epochs", json!(4)),
        ),
        ("image", with(valid(), "/spec/image", json!("other:1"))),
        (
            "adding env",
            with(valid(), "/spec/env", json!([{"name": "A", "value": "b"}])),
        ),
        ("removing preprocess", {
            let mut v = valid();
            v["spec"].as_object_mut().unwrap().remove("preprocess");
            v
        }),
        (
            "resources.nodes",
            with(valid(), "/spec/resources", json!({"nodes": 2})),
        ),
    ];
    for (what, new) in refused {
        let errors = check(&new, Some(&old)).expect_err(what);
        assert!(
            errors
                .iter()
                .any(|e| e.contains("create a new FineTuneJob to train again")),
            "{what}: {errors:#?}"
        );
    }
    let allowed = [
        with(valid(), "/spec/suspend", json!(true)),
        with(
            valid(),
            "/spec/cleanup",
            json!({"deleteChildrenAfterFinished": true}),
        ),
    ];
    for new in allowed {
        check(&new, Some(&old)).unwrap();
    }
}
