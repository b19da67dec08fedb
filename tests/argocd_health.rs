//! The Argo CD health check (deploy/argocd/health.lua) in Lua 5.1, as Argo CD's gopher-lua runs
//! it: no standard library, `obj` holding the resource, a `{status, message}` table back.
//!
//! The objects are made by the operator's own phase machine, so the check is tested on the
//! statuses the operator really writes.

use std::path::Path;

use finetune_operator::api::{FineTuneJob, Phase};
use finetune_operator::status::{Lookup, Observed, decide};
use finetune_operator::testing::JobFixture;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use mlua::serde::SerializeOptions;
use mlua::{Lua, LuaOptions, LuaSerdeExt, StdLib, Value as LuaValue};
use serde_json::{Value, json};

fn script() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/argocd/health.lua"))
        .unwrap()
}

/// Runs the check on `obj`, returning (status, message).
fn health(obj: &Value) -> (String, String) {
    let lua = Lua::new_with(StdLib::NONE, LuaOptions::default()).unwrap();
    let options = SerializeOptions::new()
        .serialize_none_to_null(false)
        .serialize_unit_to_null(false);
    let value = lua.to_value_with(obj, options).unwrap();
    lua.globals().set("obj", value).unwrap();
    let result: mlua::Table = lua.load(script()).eval().unwrap();
    let status: String = result.get("status").unwrap();
    let message: LuaValue = result.get("message").unwrap();
    let message = match message {
        LuaValue::String(s) => s.to_str().unwrap().to_string(),
        LuaValue::Nil => String::new(),
        other => panic!("message is {other:?}"),
    };
    (status, message)
}

fn base_job(spec_extra: Value) -> FineTuneJob {
    JobFixture::new("ft")
        .meta(json!({"namespace": "ns", "uid": "u", "generation": 1}))
        .spec(
            json!({"model": {"claimName": "m"}, "dataset": {"claimName": "d", "path": "t.jsonl"}}),
        )
        .spec(spec_extra)
        .build()
}

fn pytorchjob(condition: &str) -> Lookup<finetune_operator::api::PyTorchJob> {
    Lookup::Present(
        serde_json::from_value(json!({
            "apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob",
            "metadata": {"name": "ft", "namespace": "ns"}, "spec": {"pytorchReplicaSpecs": {}},
            "status": {"conditions": [{"type": condition, "status": "True", "message": "done"}]},
        }))
        .unwrap(),
    )
}

/// Takes `job` through the phase machine in `world` and returns it as JSON with the new status.
fn step(
    mut job: FineTuneJob,
    pre: Lookup<k8s_openapi::api::batch::v1::Job>,
    ptj: Lookup<finetune_operator::api::PyTorchJob>,
) -> FineTuneJob {
    let world = Observed::new(
        Time("2026-11-26T10:00:00Z".parse().unwrap()),
        pre,
        ptj.map(Into::into),
    );
    job.status = Some(decide(&job, &world).status);
    job
}

fn phase(job: &FineTuneJob) -> Phase {
    job.status.as_ref().unwrap().phase.unwrap()
}

#[test]
fn health_follows_every_phase() {
    // No status yet.
    let fresh = base_job(json!({}));
    assert_eq!(
        health(&serde_json::to_value(&fresh).unwrap()).0,
        "Progressing"
    );

    let pending = step(base_job(json!({})), Lookup::Skipped, Lookup::KindMissing);
    let initializing = step(
        base_job(json!({"preprocess": {}})),
        Lookup::Absent,
        Lookup::Absent,
    );
    let training = step(base_job(json!({})), Lookup::Skipped, Lookup::Absent);
    let succeeded = step(training.clone(), Lookup::Skipped, pytorchjob("Succeeded"));
    let failed = step(training.clone(), Lookup::Skipped, pytorchjob("Failed"));
    let suspended = step(
        base_job(json!({"suspend": true})),
        Lookup::Skipped,
        Lookup::Absent,
    );

    let cases = [
        (
            &pending,
            Phase::Pending,
            "Progressing",
            "PyTorchJob kind is not installed",
        ),
        (
            &initializing,
            Phase::Initializing,
            "Progressing",
            "Initializing: Job ft-preprocess",
        ),
        (
            &training,
            Phase::Training,
            "Progressing",
            "Training: PyTorchJob ft trains",
        ),
        (&succeeded, Phase::Succeeded, "Healthy", "finished training"),
        (
            &failed,
            Phase::Failed,
            "Degraded",
            "TrainingFailed: PyTorchJob ft failed: done",
        ),
        (
            &suspended,
            Phase::Suspended,
            "Suspended",
            "Suspended by spec.suspend",
        ),
    ];
    for (job, expected_phase, status, message) in cases {
        assert_eq!(phase(job), expected_phase);
        let (s, m) = health(&serde_json::to_value(job).unwrap());
        assert_eq!(s, status, "{expected_phase:?}: {m}");
        assert!(
            m.contains(message),
            "{expected_phase:?}: {m:?} lacks {message:?}"
        );
    }
}

#[test]
fn training_health_shows_progress() {
    let mut job =
        serde_json::to_value(step(base_job(json!({})), Lookup::Skipped, Lookup::Absent)).unwrap();
    job["status"]["progress"] = json!({"percent": 42});
    let (status, message) = health(&job);
    assert_eq!(status, "Progressing");
    assert!(message.ends_with("(42%)"), "{message}");
}

#[test]
fn a_stale_status_is_progressing_whatever_its_phase() {
    let failed = step(
        step(base_job(json!({})), Lookup::Skipped, Lookup::Absent),
        Lookup::Skipped,
        pytorchjob("Failed"),
    );
    let mut obj = serde_json::to_value(failed).unwrap();
    obj["metadata"]["generation"] = json!(2);
    let (status, message) = health(&obj);
    assert_eq!(status, "Progressing");
    assert!(message.contains("generation 2"), "{message}");
}

#[test]
fn the_argocd_cm_patch_embeds_the_same_script() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/argocd");
    let patch: Value =
        serde_saphyr::from_str(&std::fs::read_to_string(dir.join("argocd-cm-patch.yaml")).unwrap())
            .unwrap();
    let embedded = patch["data"]["resource.customizations.health.finetune.dev_FineTuneJob"]
        .as_str()
        .unwrap();
    assert_eq!(embedded.trim_end(), script().trim_end());
}
