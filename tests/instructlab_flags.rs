//! The typed InstructLab options of `spec.training` (validation, AdamW, experiment tracking,
//! scheduler, FSDP sharding, Liger, remote code, on-demand checkpointing): their CEL rules, how
//! they render (only when set, one argv element per value, `$` doubled, secrets only through
//! `secretKeyRef`), and the InstructLab versions they need.
//!
//! `tests/fixtures/instructlab/argparse-flags.json` holds the flags each published
//! instructlab-training release accepts, read from its wheel by `argparse_flags.py` next to it;
//! the version table of docs/api.md and every example are checked against it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use finetune_operator::api;
use finetune_operator::children::build_children;
use finetune_operator::render::parse_finetunejob;
use kube::core::cel::Validator;
use serde_json::{Value, json};
use testkit::expansion::{HOSTILE, expand};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn schema() -> Value {
    let crd = serde_json::to_value(api::crd()).unwrap();
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

/// The schema of `spec.training`, or of a field below it (`/properties/...` pointer).
fn training_schema(pointer: &str) -> Value {
    schema()
        .pointer(&format!("/properties/spec/properties/training{pointer}"))
        .unwrap_or_else(|| panic!("no schema at training{pointer}"))
        .clone()
}

/// A job without any of the optional InstructLab options.
fn base() -> Value {
    json!({
        "apiVersion": "finetune.dev/v1alpha1",
        "kind": "FineTuneJob",
        "metadata": {"name": "job", "namespace": "ns", "uid": "u-1"},
        "spec": {
            "image": "quay.io/instructlab/instructlab-training:v0.16.2",
            "model": {"claimName": "models", "path": "m"},
            "dataset": {"claimName": "datasets", "path": "d.jsonl"},
            "output": {"claimName": "out", "path": "o"},
            "preprocess": {},
            "training": {"epochs": 1},
            "resources": {"nodes": 2},
        }
    })
}

/// Every optional option set.
fn full() -> Value {
    let mut job = base();
    job["spec"]["training"] = json!({
        "epochs": 1,
        "lrScheduler": "constant_with_warmup",
        "fsdpShardingStrategy": "SHARD_GRAD_OP",
        "adamw": {"weightDecay": "0.01", "beta1": "0.8", "beta2": ".999", "eps": "1E-08"},
        "validation": {"split": "0.1", "frequency": 7},
        "tracking": {
            "mlflow": {
                "trackingUri": "https://mlflow.example:5000/",
                "experimentName": "exp",
                "runName": "run-{rank}",
                "username": {"secretKeyRef": {"name": "mlflow", "key": "user"}},
                "password": {"secretKeyRef": {"name": "mlflow", "key": "pass"}},
            },
            "wandb": {
                "project": "proj",
                "entity": "team",
                "runName": "wb-{time}",
                "apiKey": {"secretKeyRef": {"name": "wandb", "key": "api-key"}},
            },
            "tensorboardDir": "tb/logs",
        },
        "useLiger": true,
        "trustRemoteCode": true,
        "onDemandCheckpointing": true,
        "extraArgs": ["--disable_flash_attn"],
    });
    job
}

fn with(mut obj: Value, pointer: &str, value: Value) -> Value {
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    obj.pointer_mut(parent)
        .unwrap_or_else(|| panic!("no {parent}"))[key] = value;
    obj
}

fn without(mut obj: Value, pointer: &str) -> Value {
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    obj.pointer_mut(parent)
        .unwrap()
        .as_object_mut()
        .unwrap()
        .remove(key);
    obj
}

/// Applies the schema defaults (as the apiserver does before validation), checks the size
/// limits and runs the CEL rules.
fn check(obj: &Value) -> Result<(), Vec<String>> {
    let schema = schema();
    let obj = kube::core::cel::apply_defaults(&schema, obj);
    let mut errors = api::size_errors(&schema, &obj);
    if let Err(e) = Validator::new().validate(&schema, &obj, None) {
        errors.extend(e.into_vec().into_iter().map(|e| e.to_string()));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// The rendered containers: (kind, args, env) for the preprocess Job and the PyTorchJob Master.
struct Rendered {
    preprocess_args: Vec<String>,
    preprocess_env: Vec<Value>,
    training_args: Vec<String>,
    training_env: Vec<Value>,
    worker_args: Vec<String>,
}

fn rendered(obj: &Value) -> Rendered {
    let job = parse_finetunejob(&obj.to_string()).unwrap_or_else(|e| panic!("refused: {e}"));
    let children = build_children(&job).unwrap();
    let pre = serde_json::to_value(children.preprocess.as_ref().unwrap()).unwrap();
    let ptj = serde_json::to_value(&children.pytorch_job).unwrap();
    let container = |template: &Value| template["spec"]["containers"][0].clone();
    let pre_c = container(&pre["spec"]["template"]);
    let master = container(&ptj["spec"]["pytorchReplicaSpecs"]["Master"]["template"]);
    let worker = container(&ptj["spec"]["pytorchReplicaSpecs"]["Worker"]["template"]);
    let strings = |c: &Value| -> Vec<String> { serde_json::from_value(c["args"].clone()).unwrap() };
    let env = |c: &Value| -> Vec<Value> { c["env"].as_array().cloned().unwrap_or_default() };
    assert_eq!(
        master["env"], worker["env"],
        "Master and Worker share their env"
    );
    Rendered {
        preprocess_args: strings(&pre_c),
        preprocess_env: env(&pre_c),
        training_args: strings(&master),
        training_env: env(&master),
        worker_args: strings(&worker),
    }
}

/// main_ds's arguments: what follows `-m instructlab.training.main_ds`.
fn main_ds_args(args: &[String]) -> Vec<String> {
    let at = args
        .iter()
        .position(|a| a == "instructlab.training.main_ds")
        .expect("main_ds is started");
    args[at + 1..].to_vec()
}

/// The flag names of an argv (`--name` of `--name=value`), without the values of nargs lists.
fn flag_names(args: &[String]) -> BTreeSet<String> {
    args.iter()
        .filter(|a| a.starts_with("--"))
        .map(|a| a.split('=').next().unwrap().to_string())
        .collect()
}

fn env_names(env: &[Value]) -> Vec<&str> {
    env.iter().map(|e| e["name"].as_str().unwrap()).collect()
}

const NEW_FLAGS: &[&str] = &[
    "--lr_scheduler",
    "--fsdp_sharding_strategy",
    "--adamw_weight_decay",
    "--adamw_beta1",
    "--adamw_beta2",
    "--adamw_eps",
    "--validation_split",
    "--validation_frequency",
    "--mlflow_tracking_uri",
    "--mlflow_experiment_name",
    "--mlflow_run_name",
    "--wandb_project",
    "--wandb_entity",
    "--wandb_run_name",
    "--tensorboard_log_dir",
    "--use_liger",
    "--trust_remote_code",
    "--on_demand_checkpointing",
];

const SECRET_ENV: &[&str] = &[
    "MLFLOW_TRACKING_TOKEN",
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
    "WANDB_API_KEY",
];

// ---------------------------------------------------------------------------------------------
// Admission: schema and CEL rules
// ---------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------
// Rendering
// ---------------------------------------------------------------------------------------------

#[test]
fn nothing_is_rendered_for_options_left_unset() {
    let r = rendered(&base());
    let names = flag_names(&r.training_args);
    for flag in NEW_FLAGS {
        assert!(!names.contains(*flag), "{flag} rendered though unset");
    }
    for env in [&r.training_env, &r.preprocess_env] {
        let names = env_names(env);
        for var in SECRET_ENV.iter().chain(&["TRUST_REMOTE_CODE"]) {
            assert!(!names.contains(var), "{var} set though nothing asks for it");
        }
    }
    // Switches turned off explicitly render nothing either.
    let off = with(
        with(
            with(base(), "/spec/training/useLiger", json!(false)),
            "/spec/training/trustRemoteCode",
            json!(false),
        ),
        "/spec/training/onDemandCheckpointing",
        json!(false),
    );
    assert_eq!(rendered(&off).training_args, r.training_args);
}

#[test]
fn every_option_renders_its_flags_once_each_value_one_element() {
    let r = rendered(&full());
    let args = main_ds_args(&r.training_args);
    let expected = [
        "--use_liger",
        "--trust_remote_code",
        "--on_demand_checkpointing",
        "--lr_scheduler=constant_with_warmup",
        "--fsdp_sharding_strategy=SHARD_GRAD_OP",
        "--adamw_weight_decay=0.01",
        "--adamw_beta1=0.8",
        "--adamw_beta2=.999",
        "--adamw_eps=1E-08",
        "--validation_split=0.1",
        "--validation_frequency=7",
        "--mlflow_tracking_uri=https://mlflow.example:5000/",
        "--mlflow_experiment_name=exp",
        "--mlflow_run_name=run-{rank}",
        "--wandb_project=proj",
        "--wandb_entity=team",
        "--wandb_run_name=wb-{time}",
        "--tensorboard_log_dir=/output/o/tb/logs",
    ];
    let new: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| NEW_FLAGS.contains(&a.split('=').next().unwrap()))
        .collect();
    assert_eq!(new, expected);
    // The user's extra arguments still come last.
    assert_eq!(args.last().unwrap(), "--disable_flash_attn");
    // Every worker runs the same argv.
    assert_eq!(r.worker_args, r.training_args);
    // The preprocess Job gets none of main_ds's flags.
    let pre = flag_names(&r.preprocess_args);
    for flag in NEW_FLAGS {
        assert!(!pre.contains(*flag), "{flag} given to data_process");
    }
}

#[test]
fn credentials_are_env_vars_from_secret_key_refs_of_the_training_containers() {
    let r = rendered(&full());
    let secret = |name: &str, key: &str| json!({"secretKeyRef": {"name": name, "key": key}});
    let find = |env: &[Value], name: &str| -> Option<Value> {
        env.iter().find(|e| e["name"] == name).cloned()
    };
    assert_eq!(
        find(&r.training_env, "MLFLOW_TRACKING_USERNAME").unwrap(),
        json!({"name": "MLFLOW_TRACKING_USERNAME", "valueFrom": secret("mlflow", "user")})
    );
    assert_eq!(
        find(&r.training_env, "MLFLOW_TRACKING_PASSWORD").unwrap(),
        json!({"name": "MLFLOW_TRACKING_PASSWORD", "valueFrom": secret("mlflow", "pass")})
    );
    assert_eq!(
        find(&r.training_env, "WANDB_API_KEY").unwrap(),
        json!({"name": "WANDB_API_KEY", "valueFrom": secret("wandb", "api-key")})
    );
    assert!(find(&r.training_env, "MLFLOW_TRACKING_TOKEN").is_none());
    // The token variant.
    let token = with(
        full(),
        "/spec/training/tracking/mlflow",
        json!({"trackingUri": "http://m", "token": secret("tok", "t")}),
    );
    let env = rendered(&token).training_env;
    assert_eq!(
        find(&env, "MLFLOW_TRACKING_TOKEN").unwrap(),
        json!({"name": "MLFLOW_TRACKING_TOKEN", "valueFrom": secret("tok", "t")})
    );
    assert!(find(&env, "MLFLOW_TRACKING_USERNAME").is_none());
    // The preprocess container never sees a tracking credential.
    for var in SECRET_ENV {
        assert!(
            find(&r.preprocess_env, var).is_none(),
            "{var} in preprocess"
        );
    }
    // The user's spec.env comes after the operator's variables (and so can override them).
    let user = with(
        full(),
        "/spec/env",
        json!([{"name": "WANDB_BASE_URL", "value": "https://wandb.example"}]),
    );
    let names = env_names(&rendered(&user).training_env)
        .into_iter()
        .map(String::from)
        .collect::<Vec<_>>();
    let at = |n: &str| names.iter().position(|x| x == n).unwrap();
    assert!(at("WANDB_API_KEY") < at("WANDB_BASE_URL"), "{names:?}");
}

#[test]
fn trust_remote_code_reaches_both_phases() {
    let job = with(base(), "/spec/training/trustRemoteCode", json!(true));
    let r = rendered(&job);
    assert!(main_ds_args(&r.training_args).contains(&"--trust_remote_code".to_string()));
    let one = json!({"name": "TRUST_REMOTE_CODE", "value": "1"});
    // data_process has no flag for it and reads only the variable; main_ds loads the tokenizer
    // before it looks at its flag, so the training container gets the variable too.
    assert_eq!(
        r.preprocess_env.iter().filter(|e| **e == one).count(),
        1,
        "{:#?}",
        r.preprocess_env
    );
    assert_eq!(r.training_env.iter().filter(|e| **e == one).count(), 1);
    assert!(!flag_names(&r.preprocess_args).contains("--trust_remote_code"));
}

#[test]
fn tensorboard_logs_go_below_the_jobs_output_directory() {
    let tb = |output: Option<&str>| {
        let mut job = with(
            base(),
            "/spec/training/tracking",
            json!({"tensorboardDir": "tb"}),
        );
        job = match output {
            Some(path) => with(job, "/spec/output/path", json!(path)),
            None => without(job, "/spec/output/path"),
        };
        let args = rendered(&job).training_args;
        args.into_iter()
            .filter(|a| a.starts_with("--tensorboard_log_dir="))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        tb(Some("runs/a")),
        ["--tensorboard_log_dir=/output/runs/a/tb"]
    );
    assert_eq!(tb(None), ["--tensorboard_log_dir=/output/job/tb"]);
}

// ---------------------------------------------------------------------------------------------
// Escaping: hostile values in the new string fields
// ---------------------------------------------------------------------------------------------

/// Whether a tracking value holds the MLflow URI under test (the one field refusing spaces).
fn wanted_uri(tracking: &Value) -> bool {
    tracking["mlflow"]["trackingUri"]
        .as_str()
        .is_some_and(|u| u.starts_with("http://mlflow/"))
}

#[test]
fn hostile_values_arrive_as_exactly_one_literal_argv_element() {
    type Case = (&'static str, fn(&str) -> Value, fn(&str) -> String);
    let cases: Vec<Case> = vec![
        (
            "/spec/training/tracking",
            |h| json!({"mlflow": {"trackingUri": format!("http://mlflow/{h}")}}),
            |h| format!("--mlflow_tracking_uri=http://mlflow/{h}"),
        ),
        (
            "/spec/training/tracking",
            |h| json!({"mlflow": {"trackingUri": "http://m", "experimentName": h}}),
            |h| format!("--mlflow_experiment_name={h}"),
        ),
        (
            "/spec/training/tracking",
            |h| json!({"mlflow": {"trackingUri": "http://m", "runName": h}}),
            |h| format!("--mlflow_run_name={h}"),
        ),
        (
            "/spec/training/tracking",
            |h| json!({"wandb": {"project": h}}),
            |h| format!("--wandb_project={h}"),
        ),
        (
            "/spec/training/tracking",
            |h| json!({"wandb": {"project": "p", "entity": h}}),
            |h| format!("--wandb_entity={h}"),
        ),
        (
            "/spec/training/tracking",
            |h| json!({"wandb": {"project": "p", "runName": h}}),
            |h| format!("--wandb_run_name={h}"),
        ),
        (
            "/spec/training/tracking",
            |h| json!({"tensorboardDir": format!("tb/{h}")}),
            |h| format!("--tensorboard_log_dir=/output/o/tb/{h}"),
        ),
    ];
    for (pointer, value, expected) in cases {
        let mut admitted = 0;
        for hostile in HOSTILE {
            let obj = with(base(), pointer, value(hostile));
            let Ok(job) = parse_finetunejob(&obj.to_string()) else {
                // Only the URI refuses values (those with spaces); every `$` form gets through.
                assert!(
                    wanted_uri(&value(hostile)) && hostile.contains(' ') && !hostile.contains('$'),
                    "{pointer} {hostile:?} refused"
                );
                continue;
            };
            admitted += 1;
            let children = build_children(&job).unwrap();
            let ptj = serde_json::to_value(&children.pytorch_job).unwrap();
            let pre = serde_json::to_value(children.preprocess.as_ref().unwrap()).unwrap();
            let wanted = expected(hostile);
            for (owner, template) in [
                (
                    "Master",
                    &ptj["spec"]["pytorchReplicaSpecs"]["Master"]["template"],
                ),
                (
                    "Worker",
                    &ptj["spec"]["pytorchReplicaSpecs"]["Worker"]["template"],
                ),
                ("preprocess", &pre["spec"]["template"]),
            ] {
                let c = &template["spec"]["containers"][0];
                // What the training operator injects, then the container's own env, expanded.
                let mut env: BTreeMap<String, String> = [
                    ("MASTER_ADDR", "job-master-0"),
                    ("MASTER_PORT", "23456"),
                    ("RANK", "0"),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
                for e in c["env"].as_array().unwrap() {
                    if let Some(v) = e["value"].as_str() {
                        let v = expand(v, &env);
                        env.insert(e["name"].as_str().unwrap().to_string(), v);
                    }
                }
                let argv: Vec<String> = c["args"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|a| expand(a.as_str().unwrap(), &env))
                    .collect();
                let n = argv.iter().filter(|a| **a == wanted).count();
                let in_this = owner != "preprocess";
                assert_eq!(
                    n,
                    usize::from(in_this),
                    "{owner}: {wanted:?} in {argv:#?} ({hostile:?})"
                );
                for a in argv.iter().filter(|a| **a != wanted) {
                    assert!(
                        !a.contains(*hostile),
                        "{hostile:?} leaked into {a:?} ({owner})"
                    );
                }
                for v in env.values() {
                    assert!(!v.contains(*hostile), "{hostile:?} leaked into env {v:?}");
                }
            }
        }
        assert!(
            admitted >= HOSTILE.len() / 2,
            "{pointer}: only {admitted} admitted"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// InstructLab versions
// ---------------------------------------------------------------------------------------------

/// The oldest instructlab-training release the operator supports.
const OLDEST_SUPPORTED: &str = "0.12.1";

fn fixture() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/instructlab/argparse-flags.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn version_key(v: &str) -> Vec<u32> {
    v.split('.').map(|p| p.parse().unwrap()).collect()
}

/// The releases of the fixture from the oldest supported on, oldest first.
fn supported(fixture: &Value) -> Vec<(String, Value)> {
    let mut list: Vec<(String, Value)> = fixture["versions"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(v, _)| version_key(v) >= version_key(OLDEST_SUPPORTED))
        .map(|(v, r)| (v.clone(), r.clone()))
        .collect();
    list.sort_by_key(|(v, _)| version_key(v));
    list
}

fn strings(v: &Value) -> Vec<String> {
    serde_json::from_value(v.clone()).unwrap()
}

fn release(fixture: &Value, version: &str) -> Value {
    fixture["versions"][version].clone()
}

/// The version table of docs/api.md: field → minimum instructlab-training version.
fn documented_minimums() -> BTreeMap<String, String> {
    let docs =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/api.md")).unwrap();
    let section = docs
        .split("\n## ")
        .find(|s| s.starts_with("InstructLab versions"))
        .expect("docs/api.md has a section `## InstructLab versions`");
    let mut table = BTreeMap::new();
    for line in section.lines().filter(|l| l.starts_with("| `training.")) {
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        let field = cells[0].trim_matches('`').to_string();
        let version = cells.last().unwrap().to_string();
        assert_eq!(version_key(&version).len(), 3, "{line}");
        table.insert(field, version);
    }
    table
}

/// One job per typed field of the version table, with only that field set.
fn single_field_jobs() -> Vec<(&'static str, Value)> {
    let t = |pointer: &str, value: Value| with(base(), &format!("/spec/training{pointer}"), value);
    vec![
        ("training.lrScheduler", t("/lrScheduler", json!("linear"))),
        ("training.useLiger", t("/useLiger", json!(true))),
        (
            "training.fsdpShardingStrategy",
            t("/fsdpShardingStrategy", json!("FULL_SHARD")),
        ),
        (
            "training.adamw",
            t(
                "/adamw",
                json!({"weightDecay": "0", "beta1": "0.9", "beta2": "0.95", "eps": "1e-8"}),
            ),
        ),
        (
            "training.tracking",
            t(
                "/tracking",
                json!({"mlflow": {"trackingUri": "http://m", "experimentName": "e", "runName": "r"},
                       "wandb": {"project": "p", "entity": "e", "runName": "r"},
                       "tensorboardDir": "tb"}),
            ),
        ),
        (
            "training.validation",
            t("/validation", json!({"split": "0.1", "frequency": 10})),
        ),
        (
            "training.trustRemoteCode",
            t("/trustRemoteCode", json!(true)),
        ),
        (
            "training.onDemandCheckpointing",
            t("/onDemandCheckpointing", json!(true)),
        ),
    ]
}

#[test]
fn the_version_table_in_the_docs_matches_the_released_wheels() {
    let fixture = fixture();
    let releases = supported(&fixture);
    let table = documented_minimums();
    let jobs = single_field_jobs();
    let fields: BTreeSet<&str> = jobs.iter().map(|(f, _)| *f).collect();
    let documented: BTreeSet<&str> = table.keys().map(String::as_str).collect();
    assert_eq!(
        fields, documented,
        "docs/api.md's version table lists other fields"
    );

    let base_flags = flag_names(&main_ds_args(&rendered(&base()).training_args));
    for (field, job) in jobs {
        let minimum = &table[field];
        // The flags this field adds, as rendered.
        let added: Vec<String> = flag_names(&main_ds_args(&rendered(&job).training_args))
            .difference(&base_flags)
            .cloned()
            .collect();
        assert!(!added.is_empty(), "{field} renders nothing");
        for (version, release) in &releases {
            let known: BTreeSet<String> = strings(&release["main_ds"]).into_iter().collect();
            let missing: Vec<&String> = added.iter().filter(|f| !known.contains(*f)).collect();
            if version_key(version) >= version_key(minimum) {
                assert!(
                    missing.is_empty(),
                    "{field}: main_ds {version} lacks {missing:?}, though docs say {minimum}+"
                );
            } else {
                assert!(
                    !missing.is_empty(),
                    "{field}: main_ds {version} already accepts {added:?}; docs say {minimum}"
                );
            }
        }
    }
    // data_process reads TRUST_REMOTE_CODE from the version trustRemoteCode needs on.
    let minimum = &table["training.trustRemoteCode"];
    for (version, release) in &releases {
        let reads = strings(&release["data_process_env"]).contains(&"TRUST_REMOTE_CODE".into());
        assert_eq!(
            reads,
            version_key(version) >= version_key(minimum),
            "data_process {version}"
        );
    }
}

/// The examples' children, rendered and parsed back.
fn examples() -> Vec<(String, Value, Vec<Value>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|file| {
            let input = std::fs::read_to_string(&file).unwrap();
            let job: Value = serde_saphyr::from_str(&input).unwrap();
            // The same children `finetune-operator render` prints.
            let mut parsed = parse_finetunejob(&input).unwrap();
            parsed.metadata.uid = Some("u-1".to_string());
            parsed
                .metadata
                .namespace
                .get_or_insert_with(|| "default".to_string());
            let children = build_children(&parsed).unwrap();
            let mut docs = vec![serde_json::to_value(&children.pytorch_job).unwrap()];
            docs.extend(
                children
                    .preprocess
                    .iter()
                    .map(|j| serde_json::to_value(j).unwrap()),
            );
            (file.display().to_string(), job, docs)
        })
        .collect()
}

fn container_args(child: &Value) -> Vec<Vec<String>> {
    let templates: Vec<&Value> = match child["kind"].as_str().unwrap() {
        "Job" => vec![&child["spec"]["template"]],
        _ => child["spec"]["pytorchReplicaSpecs"]
            .as_object()
            .unwrap()
            .values()
            .map(|r| &r["template"])
            .collect(),
    };
    templates
        .into_iter()
        .flat_map(|t| t["spec"]["containers"].as_array().unwrap().clone())
        .map(|c| strings(&c["args"]))
        .collect()
}

#[test]
fn every_example_runs_on_the_instructlab_release_it_names() {
    let fixture = fixture();
    for (file, job, children) in examples() {
        let image = job["spec"]["image"].as_str().unwrap();
        let version = image
            .rsplit_once(":v")
            .map(|(_, v)| v)
            .unwrap_or_else(|| panic!("{file}: image {image} has no vX.Y.Z tag"));
        let release = release(&fixture, version);
        assert!(release.is_object(), "{file}: no fixture for {version}");
        for child in &children {
            for args in container_args(child) {
                let (known, flags) = if child["kind"] == "Job" {
                    (strings(&release["data_process"]), flag_names(&args))
                } else {
                    (
                        strings(&release["main_ds"]),
                        flag_names(&main_ds_args(&args)),
                    )
                };
                for flag in flags {
                    assert!(
                        known.contains(&flag),
                        "{file}: {flag} is not a flag of InstructLab {version}"
                    );
                }
            }
        }
    }
}

#[test]
fn the_other_fields_run_on_every_supported_release() {
    let fixture = fixture();
    // Every field that is not in the version table, set, in the two combinations they allow.
    let mut lora = base();
    lora["spec"]["preprocess"] = json!({"maxSeqLen": 2048, "chatTemplate": "/opt/t.py",
        "resources": {"requests": {"cpu": "3"}}});
    lora["spec"]["training"] = json!({
        "epochs": 2, "effectiveBatchSize": 64, "learningRate": "1e-5", "warmupSteps": 3,
        "maxBatchLen": 9000, "saveSamples": 1000, "seed": 7, "checkpointAtEpoch": true,
        "keepLastCheckpointOnly": true, "framework": "deepspeed", "cpuOffloadOptimizer": true,
        "lora": {"rank": 8, "alpha": 16, "dropout": "0.05", "targetModules": ["q_proj"],
                 "quantizeBits": 4},
        "extraArgs": ["--disable_flash_attn"],
    });
    let mut fsdp = base();
    fsdp["spec"]["training"] = json!({
        "epochs": 1, "fullStateAtEpoch": true, "cpuOffloadParams": true,
        "checkpointAtEpoch": false,
    });
    for job in [base(), lora, fsdp] {
        let r = rendered(&job);
        for (version, release) in supported(&fixture) {
            for flag in flag_names(&main_ds_args(&r.training_args)) {
                assert!(
                    strings(&release["main_ds"]).contains(&flag),
                    "{flag} is not a flag of main_ds {version}"
                );
            }
            for flag in flag_names(&r.preprocess_args) {
                assert!(
                    strings(&release["data_process"]).contains(&flag),
                    "{flag} is not a flag of data_process {version}"
                );
            }
        }
    }
    // And with every option, everything is a flag of the newest release.
    let (newest, release) = supported(&fixture).pop().unwrap();
    for flag in flag_names(&main_ds_args(&rendered(&full()).training_args)) {
        assert!(
            strings(&release["main_ds"]).contains(&flag),
            "{flag} is not a flag of main_ds {newest}"
        );
    }
}

#[test]
fn removed_logger_flags_are_never_rendered() {
    // InstructLab 0.14.0 removed --logger_type and --run_name; argparse exits 2 on them.
    let fixture = fixture();
    for (version, release) in supported(&fixture) {
        let flags = strings(&release["main_ds"]);
        let removed = version_key(&version) >= version_key("0.14.0");
        for flag in ["--logger_type", "--run_name"] {
            assert_eq!(
                !flags.contains(&flag.to_string()),
                removed,
                "{flag} in {version}"
            );
        }
    }
    let mut all: Vec<(String, Vec<String>)> = examples()
        .into_iter()
        .flat_map(|(file, _, children)| {
            children
                .iter()
                .flat_map(container_args)
                .map(|args| (file.clone(), args))
                .collect::<Vec<_>>()
        })
        .collect();
    let r = rendered(&full());
    all.push(("every option".to_string(), r.training_args));
    all.push(("every option".to_string(), r.preprocess_args));
    for (file, args) in all {
        for a in &args {
            let name = a.split('=').next().unwrap();
            assert!(
                name != "--logger_type" && name != "--run_name",
                "{file} renders {a}"
            );
        }
    }
}
