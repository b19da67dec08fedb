//! Decision table for the phase machine: each case is a job, a world, and what must follow, by
//! topic. Every case that can be decided again is fed back through [`assert_settles`]. This file
//! holds what the cases share; the fixtures are `crate::testing`'s.

mod attempts;
mod creation;
mod deletion;
mod failure;
mod finished;
mod outcome;
mod progress;
mod reasons;
mod refusal;
mod stall;
mod suspension;
mod trainjob;

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::{Value, json};

use super::*;
use crate::api::{FineTuneJob, FineTuneJobStatus, PyTorchJob, TrainJob};
use crate::children::{TrainingJob, build_preprocess_job, build_pytorch_job, build_train_job};
use crate::testing::{JobFixture, PodFixture};

pub(super) fn t(s: &str) -> Time {
    Time(s.parse().unwrap())
}

pub(super) const T0: &str = "2026-11-26T10:00:00Z";
pub(super) const T1: &str = "2026-11-26T10:05:00Z";

/// The FineTuneJob `ft` as stored (namespace `ns`, uid `uid-1`, generation 1), two epochs,
/// with `spec_patch` merged into its spec and the given status.
pub(super) fn job(spec_patch: Value, status: Option<FineTuneJobStatus>) -> FineTuneJob {
    fixture(spec_patch, status).build()
}

pub(super) fn fixture(spec_patch: Value, status: Option<FineTuneJobStatus>) -> JobFixture {
    JobFixture::new("ft")
        .stored()
        .epochs(2)
        .spec(spec_patch)
        .status(status.as_ref())
}

pub(super) fn world(pre: Lookup<Job>, ptj: Lookup<PyTorchJob>, pods: Vec<Pod>) -> Observed {
    let mut observed = Observed::new(t(T1), pre, ptj.map(TrainingJob::from));
    observed.pods = pods;
    observed
}

/// The action that creates the child `kind` of `j`, built as the builders build it.
pub(super) fn create(j: &FineTuneJob, kind: ChildKind) -> ChildAction {
    ChildAction::Create(match kind {
        ChildKind::Preprocess => build_preprocess_job(j, j.spec.preprocess.as_ref().unwrap())
            .unwrap()
            .into(),
        ChildKind::PyTorchJob => build_pytorch_job(j).unwrap().into(),
        ChildKind::TrainJob => build_train_job(j).unwrap().into(),
    })
}

/// The pod a tail is read from.
pub(super) fn tail_pod(e: &PlannedEvent) -> &str {
    match e.tail.as_ref().unwrap() {
        Tail::Fetch(source) => &source.pod,
        Tail::Text(_) => panic!("the tail was already read"),
    }
}

/// The preprocess Job, with its condition `condition` True.
pub(super) fn k8s_job(condition: Option<&str>) -> Job {
    let conditions: Vec<Value> = condition
        .map(|c| json!({"type": c, "status": "True", "message": format!("Job {c}")}))
        .into_iter()
        .collect();
    serde_json::from_value(json!({
        "metadata": {"name": "ft-preprocess", "namespace": "ns"},
        "spec": {"template": {}, "suspend": false},
        "status": {"conditions": conditions},
    }))
    .unwrap()
}

/// The PyTorchJob, with its condition `condition` True.
pub(super) fn pytorch_job(condition: Option<&str>, suspended: bool) -> PyTorchJob {
    let conditions: Vec<Value> = condition
        .map(|c| json!({"type": c, "status": "True", "message": format!("PyTorchJob ft is {c}.")}))
        .into_iter()
        .collect();
    serde_json::from_value(json!({
        "apiVersion": "kubeflow.org/v1",
        "kind": "PyTorchJob",
        "metadata": {"name": "ft", "namespace": "ns"},
        "spec": {"runPolicy": {"suspend": suspended}, "pytorchReplicaSpecs": {}},
        "status": {"conditions": conditions},
    }))
    .unwrap()
}

/// A pod with one container: running, or terminated with `exit_code` (reason Error).
pub(super) fn pod(
    name: &str,
    container: &str,
    labels: Value,
    exit_code: Option<i32>,
    restarts: i32,
) -> Pod {
    let mut pod = PodFixture::new(name)
        .container(container)
        .labels(labels)
        .restarts(restarts);
    if let Some(code) = exit_code {
        pod = pod.terminated(code, "Error");
    }
    pod.build()
}

pub(super) fn reasons(d: &Decision) -> Vec<Reason> {
    d.events.iter().map(|e| e.reason).collect()
}

pub(super) fn condition(status: &FineTuneJobStatus, type_: &str) -> Option<(String, String)> {
    status
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone()))
}

/// Feeds a decision's status back with the same world: nothing may change any more.
pub(super) fn assert_settles(mut j: FineTuneJob, d: &Decision, w: &Observed) {
    j.status = Some(d.status.clone());
    let again = decide(&j, w);
    assert_eq!(again.status, d.status, "status changed on a second look");
    assert!(
        again.events.is_empty(),
        "events repeated: {:?}",
        again.events
    );
}

pub(super) fn training_status() -> FineTuneJobStatus {
    let j = job(json!({}), None);
    decide(&j, &world(Lookup::Skipped, Lookup::Absent, vec![])).status
}
