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
    let ptj = serde_json::to_value(&children.training).unwrap();
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

mod admission;
mod escaping;
mod rendering;
mod versions;
