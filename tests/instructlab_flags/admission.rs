//! The schema and CEL rules of the options: what is admitted, what is refused and with which
//! message.

use super::*;
use crate::versions::{fixture, strings, supported};

#[test]
fn a_job_with_every_option_is_admitted() {
    check(&base()).unwrap();
    check(&full()).unwrap();
}

#[test]
fn well_formed_values_are_admitted() {
    let cases: Vec<(&str, Value)> = vec![
        (
            "/spec/training/validation",
            json!({"split": ".5", "frequency": 1}),
        ),
        (
            "/spec/training/validation",
            json!({"split": "0.999", "frequency": 1}),
        ),
        ("/spec/training/adamw", json!({"weightDecay": "0"})),
        ("/spec/training/adamw", json!({"weightDecay": "1e-4"})),
        ("/spec/training/adamw", json!({"weightDecay": "2."})),
        ("/spec/training/adamw", json!({"beta1": "0"})),
        ("/spec/training/adamw", json!({"beta2": "0.95"})),
        ("/spec/training/adamw", json!({"eps": "0.00000001"})),
        ("/spec/training/adamw", json!({"eps": "1e-99"})),
        ("/spec/training/adamw", json!({})),
        (
            "/spec/training/tracking",
            json!({"mlflow": {"trackingUri": "databricks"}}),
        ),
        (
            "/spec/training/tracking",
            json!({"mlflow": {"trackingUri": "http://mlflow:5000/path?x=a@b",
                "token": {"secretKeyRef": {"name": "t", "key": "token"}}}}),
        ),
        (
            "/spec/training/tracking",
            json!({"wandb": {"project": "p"}}),
        ),
        ("/spec/training/tracking", json!({"tensorboardDir": "tb"})),
        ("/spec/training/fsdpShardingStrategy", json!("HYBRID_SHARD")),
        // Without the typed field, extraArgs may still pass the flag (older manifests).
        (
            "/spec/training/extraArgs",
            json!(["--lr_scheduler=linear", "--use_liger", "--wandb_project=p"]),
        ),
    ];
    for (pointer, value) in cases {
        let job = with(base(), pointer, value.clone());
        check(&job).unwrap_or_else(|e| panic!("{pointer} = {value} refused: {e:?}"));
    }
}

#[test]
fn invalid_options_are_refused_with_an_actionable_message() {
    let split = "training.validation.split must be a decimal number greater than 0 and below 1";
    let beta = "must be a decimal number of at least 0 and below 1";
    let eps = "training.adamw.eps must be a decimal number greater than 0";
    let decay = "training.adamw.weightDecay must be a decimal number of at least 0";
    let repeat = "training.extraArgs repeats (or abbreviates) a flag that a typed field";
    let uri = "without credentials (user:password@host)";
    let creds = "set token, or username and password together, not both";
    let mlflow = |fields: Value| {
        let mut m = json!({"trackingUri": "http://mlflow:5000"});
        m.as_object_mut()
            .unwrap()
            .extend(fields.as_object().unwrap().clone());
        json!({"mlflow": m})
    };
    let secret = |key: &str| json!({"secretKeyRef": {"name": "s", "key": key}});
    let cases: Vec<(&str, &str, Value, &str)> = vec![
        (
            "split 0",
            "/spec/training/validation",
            json!({"split": "0", "frequency": 1}),
            split,
        ),
        (
            "split 0.0",
            "/spec/training/validation",
            json!({"split": "0.0", "frequency": 1}),
            split,
        ),
        (
            "split 1",
            "/spec/training/validation",
            json!({"split": "1", "frequency": 1}),
            split,
        ),
        (
            "split 1.0",
            "/spec/training/validation",
            json!({"split": "1.0", "frequency": 1}),
            split,
        ),
        (
            "split 1.5",
            "/spec/training/validation",
            json!({"split": "1.5", "frequency": 1}),
            split,
        ),
        (
            "split exponent",
            "/spec/training/validation",
            json!({"split": "5e-2", "frequency": 1}),
            split,
        ),
        (
            "split negative",
            "/spec/training/validation",
            json!({"split": "-0.1", "frequency": 1}),
            split,
        ),
        (
            "split text",
            "/spec/training/validation",
            json!({"split": "a lot", "frequency": 1}),
            split,
        ),
        (
            "beta1 1",
            "/spec/training/adamw",
            json!({"beta1": "1"}),
            beta,
        ),
        (
            "beta1 1.0",
            "/spec/training/adamw",
            json!({"beta1": "1.0"}),
            beta,
        ),
        (
            "beta2 negative",
            "/spec/training/adamw",
            json!({"beta2": "-0.5"}),
            beta,
        ),
        (
            "beta2 exponent",
            "/spec/training/adamw",
            json!({"beta2": "9e-1"}),
            beta,
        ),
        ("eps 0", "/spec/training/adamw", json!({"eps": "0"}), eps),
        (
            "eps 0.000",
            "/spec/training/adamw",
            json!({"eps": "0.000"}),
            eps,
        ),
        (
            "eps 0e-3",
            "/spec/training/adamw",
            json!({"eps": "0e-3"}),
            eps,
        ),
        (
            "eps underflows",
            "/spec/training/adamw",
            json!({"eps": "1e-999"}),
            eps,
        ),
        (
            "eps negative",
            "/spec/training/adamw",
            json!({"eps": "-1e-8"}),
            eps,
        ),
        (
            "eps nan",
            "/spec/training/adamw",
            json!({"eps": "nan"}),
            eps,
        ),
        (
            "decay negative",
            "/spec/training/adamw",
            json!({"weightDecay": "-0.1"}),
            decay,
        ),
        (
            "decay infinite",
            "/spec/training/adamw",
            json!({"weightDecay": "1e999"}),
            decay,
        ),
        (
            "decay inf",
            "/spec/training/adamw",
            json!({"weightDecay": "inf"}),
            decay,
        ),
        (
            "sharding with deepspeed",
            "/spec/training",
            json!({"epochs": 1, "framework": "deepspeed", "fsdpShardingStrategy": "FULL_SHARD"}),
            "training.fsdpShardingStrategy applies only to training.framework: fsdp",
        ),
        (
            "credentials in the tracking URI",
            "/spec/training/tracking",
            json!({"mlflow": {"trackingUri": "https://user:secret@mlflow.example"}}),
            uri,
        ),
        (
            "user in the tracking URI",
            "/spec/training/tracking",
            json!({"mlflow": {"trackingUri": "http://token@mlflow.example/x"}}),
            uri,
        ),
        (
            "space in the tracking URI",
            "/spec/training/tracking",
            json!({"mlflow": {"trackingUri": "http://mlflow example"}}),
            uri,
        ),
        (
            "newline in the tracking URI",
            "/spec/training/tracking",
            json!({"mlflow": {"trackingUri": "http://mlflow\n--x"}}),
            uri,
        ),
        (
            "token and basic auth",
            "/spec/training/tracking",
            mlflow(json!({"token": secret("t"), "username": secret("u"), "password": secret("p")})),
            creds,
        ),
        (
            "username alone",
            "/spec/training/tracking",
            mlflow(json!({"username": secret("u")})),
            creds,
        ),
        (
            "password alone",
            "/spec/training/tracking",
            mlflow(json!({"token": secret("t"), "password": secret("p")})),
            creds,
        ),
        (
            "newline in a run name",
            "/spec/training/tracking",
            mlflow(json!({"runName": "a\nb"})),
            "training.tracking.mlflow.runName must not contain control characters",
        ),
        (
            "newline in the experiment",
            "/spec/training/tracking",
            mlflow(json!({"experimentName": "a\rb"})),
            "training.tracking.mlflow.experimentName must not contain control characters",
        ),
        (
            "control character in the W&B project",
            "/spec/training/tracking",
            json!({"wandb": {"project": "a\u{7}"}}),
            "training.tracking.wandb.project must not contain control characters",
        ),
        (
            "newline in the W&B entity",
            "/spec/training/tracking",
            json!({"wandb": {"project": "p", "entity": "a\nb"}}),
            "training.tracking.wandb.entity must not contain control characters",
        ),
        (
            "newline in the W&B run name",
            "/spec/training/tracking",
            json!({"wandb": {"project": "p", "runName": "a\nb"}}),
            "training.tracking.wandb.runName must not contain control characters",
        ),
        (
            "absolute TensorBoard dir",
            "/spec/training/tracking",
            json!({"tensorboardDir": "/etc"}),
            "relative path",
        ),
        (
            "TensorBoard dir escaping by ..",
            "/spec/training/tracking",
            json!({"tensorboardDir": "tb/../../other-job"}),
            "relative path",
        ),
        (
            "TensorBoard dir with an empty segment",
            "/spec/training/tracking",
            json!({"tensorboardDir": "a//b"}),
            "relative path",
        ),
        (
            "lrScheduler and --lr_scheduler",
            "/spec/training",
            json!({"epochs": 1, "lrScheduler": "cosine", "extraArgs": ["--lr_scheduler=linear"]}),
            repeat,
        ),
        (
            "lrScheduler and an abbreviation",
            "/spec/training",
            json!({"epochs": 1, "lrScheduler": "cosine", "extraArgs": ["--lr_sched=linear"]}),
            repeat,
        ),
        (
            "useLiger and --use_liger",
            "/spec/training",
            json!({"epochs": 1, "useLiger": true, "extraArgs": ["--use_liger"]}),
            repeat,
        ),
        (
            "trustRemoteCode and --trust_remote_code",
            "/spec/training",
            json!({"epochs": 1, "trustRemoteCode": true, "extraArgs": ["--trust_remote_code"]}),
            repeat,
        ),
        (
            "onDemandCheckpointing and --on_demand",
            "/spec/training",
            json!({"epochs": 1, "onDemandCheckpointing": true, "extraArgs": ["--on_demand"]}),
            repeat,
        ),
        (
            "fsdpShardingStrategy and --fsdp_sharding_strategy",
            "/spec/training",
            json!({"epochs": 1, "fsdpShardingStrategy": "NO_SHARD",
                   "extraArgs": ["--fsdp_sharding_strategy=FULL_SHARD"]}),
            repeat,
        ),
        (
            "adamw and another --adamw flag",
            "/spec/training",
            json!({"epochs": 1, "adamw": {"beta1": "0.9"}, "extraArgs": ["--adamw_eps=1e-6"]}),
            repeat,
        ),
        (
            "validation and --validation_frequency",
            "/spec/training",
            json!({"epochs": 1, "validation": {"split": "0.1", "frequency": 5},
                   "extraArgs": ["--validation_frequency=9"]}),
            repeat,
        ),
        (
            "mlflow and --mlflow_run_name",
            "/spec/training",
            json!({"epochs": 1, "tracking": mlflow(json!({})),
                   "extraArgs": ["--mlflow_run_name=x"]}),
            repeat,
        ),
        (
            "wandb and --wandb_entity",
            "/spec/training",
            json!({"epochs": 1, "tracking": {"wandb": {"project": "p"}},
                   "extraArgs": ["--wandb_entity=x"]}),
            repeat,
        ),
        (
            "tensorboardDir and --tensorboard_log_dir",
            "/spec/training",
            json!({"epochs": 1, "tracking": {"tensorboardDir": "tb"},
                   "extraArgs": ["--tensorboard_log_dir=/tmp"]}),
            repeat,
        ),
    ];
    for (what, pointer, value, message) in cases {
        let job = with(base(), pointer, value);
        match check(&job) {
            Ok(()) => panic!("{what}: admitted"),
            Err(errors) => assert!(
                errors.iter().any(|e| e.contains(message)),
                "{what}: expected {message:?} in {errors:#?}"
            ),
        }
    }
}

#[test]
fn the_schema_requires_both_validation_fields_and_bounds_the_frequency() {
    let validation = training_schema("/properties/validation");
    let mut required: Vec<&str> = validation["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    required.sort_unstable();
    assert_eq!(required, ["frequency", "split"]);
    assert_eq!(validation["properties"]["frequency"]["minimum"], json!(1.0));
    // And a job missing one is refused before anything is built.
    let job = with(base(), "/spec/training/validation", json!({"split": "0.1"}));
    let err = parse_finetunejob(&job.to_string()).unwrap_err().to_string();
    assert!(err.contains("frequency"), "{err}");
}

#[test]
fn secrets_can_only_be_given_by_secret_key_ref() {
    // The schema of every credential has exactly one property, secretKeyRef, and requires it:
    // there is no field a literal value could go into.
    for pointer in [
        "/properties/tracking/properties/mlflow/properties/token",
        "/properties/tracking/properties/mlflow/properties/username",
        "/properties/tracking/properties/mlflow/properties/password",
        "/properties/tracking/properties/wandb/properties/apiKey",
    ] {
        let s = training_schema(pointer);
        let props: Vec<&String> = s["properties"].as_object().unwrap().keys().collect();
        assert_eq!(props, ["secretKeyRef"], "{pointer}");
        assert_eq!(s["required"], json!(["secretKeyRef"]), "{pointer}");
        let reference = &s["properties"]["secretKeyRef"];
        let mut keys: Vec<&String> = reference["properties"]
            .as_object()
            .unwrap()
            .keys()
            .collect();
        keys.sort_unstable();
        assert_eq!(keys, ["key", "name"], "{pointer}");
    }
    // A literal is not a secretKeyRef: refused (the apiserver would prune `value`, then miss
    // the required secretKeyRef).
    let job = with(
        base(),
        "/spec/training/tracking",
        json!({"wandb": {"project": "p", "apiKey": {"value": "hunter2"}}}),
    );
    let err = parse_finetunejob(&job.to_string()).unwrap_err().to_string();
    assert!(err.contains("secretKeyRef"), "{err}");
}

#[test]
fn enums_hold_exactly_what_instructlab_accepts() {
    let enum_of = |pointer: &str| -> Vec<String> {
        training_schema(pointer)["enum"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|v| v.as_str().map(String::from))
            .collect()
    };
    let fixture = fixture();
    for (version, release) in supported(&fixture) {
        assert_eq!(
            enum_of("/properties/lrScheduler"),
            strings(&release["lr_scheduler_choices"]),
            "lrScheduler vs the --lr_scheduler choices of {version}"
        );
        assert_eq!(
            enum_of("/properties/fsdpShardingStrategy"),
            strings(&release["sharding_strategies"]),
            "fsdpShardingStrategy vs InstructLab's ShardingStrategies in {version}"
        );
    }
}
