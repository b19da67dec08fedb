//! Decision table for the phase machine: each case is a job, a world, and what must follow.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::{Value, json};

use super::*;
use crate::api::{FineTuneJob, FineTuneJobStatus, Phase, PyTorchJob};

fn t(s: &str) -> Time {
    Time(s.parse().unwrap())
}

const T0: &str = "2026-11-26T10:00:00Z";
const T1: &str = "2026-11-26T10:05:00Z";

fn job(spec_patch: Value, status: Option<FineTuneJobStatus>) -> FineTuneJob {
    let mut spec = json!({
        "image": "img",
        "model": {"claimName": "m"},
        "dataset": {"claimName": "d", "path": "train.jsonl"},
        "output": {"claimName": "o"},
        "training": {"epochs": 2},
        "backoffLimit": 3,
    });
    merge(&mut spec, spec_patch);
    let mut job: FineTuneJob = serde_json::from_value(json!({
        "apiVersion": "finetune.dev/v1alpha1",
        "kind": "FineTuneJob",
        "metadata": {"name": "ft", "namespace": "ns", "uid": "uid-1", "generation": 1},
        "spec": spec,
    }))
    .unwrap();
    job.status = status;
    job
}

fn merge(target: &mut Value, patch: Value) {
    if let (Value::Object(t), Value::Object(p)) = (target, patch) {
        for (k, v) in p {
            t.insert(k, v);
        }
    }
}

fn world(pre: Lookup<Job>, ptj: Lookup<PyTorchJob>, pods: Vec<Pod>) -> Observed {
    let mut observed = Observed::new(t(T1), pre, ptj);
    observed.pods = pods;
    observed
}

/// The pod a tail is read from.
fn tail_pod(e: &PlannedEvent) -> &str {
    match e.tail.as_ref().unwrap() {
        Tail::Fetch(source) => &source.pod,
        Tail::Text(_) => panic!("the tail was already read"),
    }
}

fn k8s_job(condition: Option<&str>) -> Job {
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

fn pytorch_job(condition: Option<&str>, suspended: bool) -> PyTorchJob {
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

fn pod(name: &str, container: &str, labels: Value, exit_code: Option<i32>, restarts: i32) -> Pod {
    let state = match exit_code {
        Some(code) => json!({"terminated": {"exitCode": code, "reason": "Error"}}),
        None => json!({"running": {}}),
    };
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "ns", "labels": labels,
                     "creationTimestamp": T0},
        "status": {"containerStatuses": [{
            "name": container, "ready": false, "restartCount": restarts, "image": "img",
            "imageID": "", "state": state,
        }]},
    }))
    .unwrap()
}

fn reasons(d: &Decision) -> Vec<&'static str> {
    d.events.iter().map(|e| e.reason).collect()
}

fn condition(status: &FineTuneJobStatus, type_: &str) -> Option<(String, String)> {
    status
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone()))
}

/// Feeds a decision's status back with the same world: nothing may change any more.
fn assert_settles(mut j: FineTuneJob, d: &Decision, w: &Observed) {
    j.status = Some(d.status.clone());
    let again = decide(&j, w);
    assert_eq!(again.status, d.status, "status changed on a second look");
    assert!(
        again.events.is_empty(),
        "events repeated: {:?}",
        again.events
    );
}

fn training_status() -> FineTuneJobStatus {
    let j = job(json!({}), None);
    decide(&j, &world(Lookup::Skipped, Lookup::Absent, vec![])).status
}

#[test]
fn new_job_with_preprocess_creates_the_preprocess_job() {
    let j = job(json!({"preprocess": {}}), None);
    let w = world(Lookup::Absent, Lookup::Absent, vec![]);
    let d = decide(&j, &w);
    assert_eq!(d.actions, vec![ChildAction::Create(ChildKind::Preprocess)]);
    assert_eq!(d.status.phase, Some(Phase::Initializing));
    assert_eq!(reasons(&d), vec![reason::PREPROCESS_STARTED]);
    assert_eq!(d.status.start_time, Some(t(T1)));
    assert_eq!(d.status.preprocess_job.as_deref(), Some("ft-preprocess"));
    assert_eq!(
        condition(&d.status, "Accepted"),
        Some(("True".into(), "Accepted".into()))
    );
    assert_eq!(condition(&d.status, "Initialized").unwrap().0, "False");
    assert_eq!(d.status.observed_generation, Some(1));
}

#[test]
fn new_job_without_preprocess_creates_the_pytorchjob() {
    let j = job(json!({}), None);
    let d = decide(&j, &world(Lookup::Skipped, Lookup::Absent, vec![]));
    assert_eq!(d.actions, vec![ChildAction::Create(ChildKind::PyTorchJob)]);
    assert_eq!(d.status.phase, Some(Phase::Training));
    assert_eq!(reasons(&d), vec![reason::TRAINING_STARTED]);
    assert_eq!(d.status.training_start_time, Some(t(T1)));
    assert_eq!(d.status.pytorch_job.as_deref(), Some("ft"));
    assert_eq!(
        condition(&d.status, "Initialized"),
        Some(("True".into(), "NoPreprocessing".into()))
    );
    // A restarted operator seeing the child it created publishes nothing new.
    let j = job(json!({}), Some(d.status.clone()));
    let running = world(
        Lookup::Skipped,
        Lookup::Present(pytorch_job(Some("Running"), false)),
        vec![],
    );
    let again = decide(&j, &running);
    assert!(again.actions.is_empty() && again.events.is_empty());
    assert_eq!(again.status, d.status);
}

#[test]
fn running_preprocess_changes_nothing() {
    let j = job(json!({"preprocess": {}}), None);
    let first = decide(&j, &world(Lookup::Absent, Lookup::Absent, vec![]));
    let j = job(json!({"preprocess": {}}), Some(first.status.clone()));
    let w = world(Lookup::Present(k8s_job(None)), Lookup::Absent, vec![]);
    let d = decide(&j, &w);
    assert!(d.actions.is_empty());
    assert!(d.events.is_empty());
    assert_eq!(d.status, first.status, "zero writes when nothing changed");
}

#[test]
fn finished_preprocess_starts_training() {
    let j = job(json!({"preprocess": {}}), None);
    let first = decide(&j, &world(Lookup::Absent, Lookup::Absent, vec![]));
    let j = job(json!({"preprocess": {}}), Some(first.status));
    let w = world(
        Lookup::Present(k8s_job(Some("Complete"))),
        Lookup::Absent,
        vec![],
    );
    let d = decide(&j, &w);
    assert_eq!(d.actions, vec![ChildAction::Create(ChildKind::PyTorchJob)]);
    assert_eq!(
        reasons(&d),
        vec![reason::PREPROCESS_SUCCEEDED, reason::TRAINING_STARTED]
    );
    assert_eq!(d.status.phase, Some(Phase::Training));
    assert_eq!(condition(&d.status, "Initialized").unwrap().0, "True");
    // Once initialized, the preprocess Job is no longer needed.
    let j = job(json!({"preprocess": {}}), Some(d.status));
    assert!(!needs(&j).preprocess_job);
}

#[test]
fn failed_preprocess_fails_with_exit_code_and_tail() {
    let j = job(json!({"preprocess": {}}), None);
    let first = decide(&j, &world(Lookup::Absent, Lookup::Absent, vec![]));
    let j = job(json!({"preprocess": {}}), Some(first.status));
    let labels =
        json!({"finetune.dev/job-name": "ft", "batch.kubernetes.io/job-name": "ft-preprocess"});
    let pods = vec![pod("ft-preprocess-abc", "preprocess", labels, Some(2), 0)];
    let w = world(
        Lookup::Present(k8s_job(Some("Failed"))),
        Lookup::Absent,
        pods,
    );
    let d = decide(&j, &w);
    assert_eq!(d.status.phase, Some(Phase::Failed));
    assert_eq!(d.status.reason.as_deref(), Some(reason::PREPROCESS_FAILED));
    assert_eq!(d.status.completion_time, Some(t(T1)));
    assert_eq!(
        condition(&d.status, "Failed"),
        Some(("True".into(), "PreprocessFailed".into()))
    );
    let e = &d.events[0];
    assert_eq!(
        (e.reason, e.severity),
        (reason::PREPROCESS_FAILED, Severity::Warning)
    );
    assert!(e.note.contains("exited with code 2 (Error)"), "{}", e.note);
    assert_eq!(
        e.tail,
        Some(Tail::Fetch(LogSource {
            pod: "ft-preprocess-abc".into(),
            container: "preprocess".into()
        }))
    );
    assert!(d.actions.is_empty());
    assert_settles(j, &d, &w);
}

#[test]
fn running_training_changes_nothing() {
    let status = training_status();
    let j = job(json!({}), Some(status.clone()));
    let w = world(
        Lookup::Skipped,
        Lookup::Present(pytorch_job(Some("Running"), false)),
        vec![],
    );
    let d = decide(&j, &w);
    assert!(d.actions.is_empty() && d.events.is_empty());
    assert_eq!(d.status, status);
    assert_eq!(d.requeue_after, None);
}

#[test]
fn succeeded_training_succeeds() {
    let j = job(json!({}), Some(training_status()));
    let w = world(
        Lookup::Skipped,
        Lookup::Present(pytorch_job(Some("Succeeded"), false)),
        vec![],
    );
    let d = decide(&j, &w);
    assert_eq!(d.status.phase, Some(Phase::Succeeded));
    assert_eq!(
        condition(&d.status, "Complete"),
        Some(("True".into(), "TrainingSucceeded".into()))
    );
    assert_eq!(reasons(&d), vec![reason::TRAINING_SUCCEEDED]);
    assert_eq!(d.status.completion_time, Some(t(T1)));
    assert_settles(j, &d, &w);
}

#[test]
fn failed_training_reports_the_failing_container() {
    let j = job(json!({}), Some(training_status()));
    let labels = json!({"finetune.dev/job-name": "ft"});
    let pods = vec![
        pod("ft-master-0", "pytorch", labels.clone(), Some(1), 0),
        pod("ft-worker-0", "pytorch", labels, Some(137), 0),
    ];
    let w = world(
        Lookup::Skipped,
        Lookup::Present(pytorch_job(Some("Failed"), false)),
        pods,
    );
    let d = decide(&j, &w);
    assert_eq!(d.status.phase, Some(Phase::Failed));
    assert_eq!(d.status.reason.as_deref(), Some(reason::TRAINING_FAILED));
    let e = &d.events[0];
    assert_eq!(e.severity, Severity::Warning);
    assert!(e.note.contains("PyTorchJob ft is Failed."), "{}", e.note);
    assert!(
        e.note
            .contains("pod ft-master-0 container pytorch exited with code 1"),
        "{}",
        e.note
    );
    assert_eq!(tail_pod(e), "ft-master-0");
    assert_settles(j, &d, &w);
}

#[test]
fn a_deleted_child_fails_the_job() {
    let j = job(json!({}), Some(training_status()));
    let d = decide(&j, &world(Lookup::Skipped, Lookup::Absent, vec![]));
    assert_eq!(d.status.phase, Some(Phase::Failed));
    assert_eq!(d.status.reason.as_deref(), Some(reason::CHILD_DELETED));
    assert!(d.actions.is_empty(), "a deleted child is not re-created");
    assert_eq!(reasons(&d), vec![reason::TRAINING_FAILED]);
}

#[test]
fn a_container_restarting_too_often_fails_the_job_and_stops_it() {
    let j = job(json!({}), Some(training_status()));
    let pods = vec![pod("ft-master-0", "pytorch", json!({}), None, 4)];
    let w = world(
        Lookup::Skipped,
        Lookup::Present(pytorch_job(Some("Running"), false)),
        pods,
    );
    let d = decide(&j, &w);
    assert_eq!(d.status.phase, Some(Phase::Failed));
    assert_eq!(
        d.actions,
        vec![ChildAction::SetSuspended(ChildKind::PyTorchJob, true)]
    );
    assert!(
        d.events[0].note.contains("restarted 4 times"),
        "{}",
        d.events[0].note
    );
}

#[test]
fn deadline_is_enforced_from_training_start() {
    let mut status = training_status();
    status.training_start_time = Some(t("2026-11-26T10:04:00Z"));
    // 60 s elapsed of 100: wait for the rest.
    let j = job(json!({"activeDeadlineSeconds": 100}), Some(status.clone()));
    let w = world(
        Lookup::Skipped,
        Lookup::Present(pytorch_job(Some("Running"), false)),
        vec![],
    );
    let d = decide(&j, &w);
    assert_eq!(d.requeue_after, Some(Duration::from_secs(40)));
    assert_eq!(d.status.phase, Some(Phase::Training));
    // 60 s elapsed of 60: fail and stop the pods.
    let j = job(json!({"activeDeadlineSeconds": 60}), Some(status));
    let d = decide(&j, &w);
    assert_eq!(d.status.phase, Some(Phase::Failed));
    assert_eq!(d.status.reason.as_deref(), Some(reason::DEADLINE_EXCEEDED));
    assert_eq!(
        d.actions,
        vec![ChildAction::SetSuspended(ChildKind::PyTorchJob, true)]
    );
    assert_eq!(reasons(&d), vec![reason::DEADLINE_EXCEEDED]);
    assert_eq!(tail_pod(&d.events[0]), "ft-master-0");
    assert_settles(j, &d, &w);
}

#[test]
fn suspend_and_resume() {
    let status = training_status();
    let running = world(
        Lookup::Skipped,
        Lookup::Present(pytorch_job(Some("Running"), false)),
        vec![],
    );
    let j = job(json!({"suspend": true}), Some(status));
    let d = decide(&j, &running);
    assert_eq!(
        d.actions,
        vec![ChildAction::SetSuspended(ChildKind::PyTorchJob, true)]
    );
    assert_eq!(d.status.phase, Some(Phase::Suspended));
    assert_eq!(reasons(&d), vec![reason::SUSPENDED]);
    assert_eq!(
        condition(&d.status, "Suspended"),
        Some(("True".into(), "Suspended".into()))
    );

    // Once the child is suspended, nothing more happens.
    let suspended = world(
        Lookup::Skipped,
        Lookup::Present(pytorch_job(Some("Suspended"), true)),
        vec![],
    );
    let j = job(json!({"suspend": true}), Some(d.status.clone()));
    let again = decide(&j, &suspended);
    assert!(again.actions.is_empty() && again.events.is_empty());
    assert_eq!(again.status, d.status);

    // Resume: unsuspend, back to Training, the deadline clock restarts.
    let j = job(json!({"suspend": false}), Some(d.status));
    let r = decide(&j, &suspended);
    assert_eq!(
        r.actions,
        vec![ChildAction::SetSuspended(ChildKind::PyTorchJob, false)]
    );
    assert_eq!(r.status.phase, Some(Phase::Training));
    assert_eq!(reasons(&r), vec![reason::RESUMED]);
    assert_eq!(r.status.training_start_time, Some(t(T1)));
    assert_eq!(
        condition(&r.status, "Suspended"),
        Some(("False".into(), "Resumed".into()))
    );
}

#[test]
fn a_job_created_suspended_creates_nothing_until_resumed() {
    let j = job(json!({"suspend": true}), None);
    let d = decide(&j, &world(Lookup::Skipped, Lookup::Absent, vec![]));
    assert!(d.actions.is_empty());
    assert_eq!(d.status.phase, Some(Phase::Suspended));
    let j = job(json!({"suspend": false}), Some(d.status));
    let r = decide(&j, &world(Lookup::Skipped, Lookup::Absent, vec![]));
    assert_eq!(r.actions, vec![ChildAction::Create(ChildKind::PyTorchJob)]);
    assert_eq!(reasons(&r), vec![reason::RESUMED, reason::TRAINING_STARTED]);
}

#[test]
fn a_missing_pytorchjob_kind_is_reported_not_fatal() {
    let j = job(json!({"preprocess": {}}), None);
    let w = world(Lookup::Absent, Lookup::KindMissing, vec![]);
    let d = decide(&j, &w);
    assert!(
        d.actions.is_empty(),
        "nothing starts, not even preprocessing"
    );
    assert_eq!(d.status.phase, Some(Phase::Pending));
    assert_eq!(
        condition(&d.status, "Accepted"),
        Some(("False".into(), reason::PYTORCHJOB_NOT_INSTALLED.into()))
    );
    assert_eq!(d.requeue_after, Some(Duration::from_secs(60)));
    assert_settles(j.clone(), &d, &w);
    // Installing the training operator is enough.
    let j = job(json!({"preprocess": {}}), Some(d.status));
    let d = decide(&j, &world(Lookup::Absent, Lookup::Absent, vec![]));
    assert_eq!(d.actions, vec![ChildAction::Create(ChildKind::Preprocess)]);
    assert_eq!(condition(&d.status, "Accepted").unwrap().0, "True");
}

#[test]
fn a_queued_job_waits_for_kueue() {
    let spec = json!({"scheduling": {"queueName": "gpu"}});
    let j = job(spec.clone(), None);
    let d = decide(&j, &world(Lookup::Skipped, Lookup::Absent, vec![]));
    assert_eq!(d.actions, vec![ChildAction::Create(ChildKind::PyTorchJob)]);
    assert_eq!(d.status.phase, Some(Phase::Pending));
    assert_eq!(d.status.reason.as_deref(), Some(reason::QUEUED));
    assert!(d.events.is_empty());
    // Still suspended by Kueue: nothing changes, and we never touch runPolicy.suspend.
    let j = job(spec.clone(), Some(d.status.clone()));
    let waiting = world(
        Lookup::Skipped,
        Lookup::Present(pytorch_job(Some("Suspended"), true)),
        vec![],
    );
    let w = decide(&j, &waiting);
    assert!(w.actions.is_empty() && w.events.is_empty());
    assert_eq!(w.status, d.status);
    // Admitted: training starts.
    let admitted = world(
        Lookup::Skipped,
        Lookup::Present(pytorch_job(Some("Running"), false)),
        vec![],
    );
    let a = decide(&j, &admitted);
    assert_eq!(a.status.phase, Some(Phase::Training));
    assert_eq!(reasons(&a), vec![reason::TRAINING_STARTED]);
    assert!(a.actions.is_empty());
}

#[test]
fn finished_jobs_change_nothing_and_need_nothing() {
    let j = job(json!({}), Some(training_status()));
    let w = world(
        Lookup::Skipped,
        Lookup::Present(pytorch_job(Some("Succeeded"), false)),
        vec![],
    );
    let done = decide(&j, &w).status;
    let j = job(json!({}), Some(done.clone()));
    assert_eq!(needs(&j), Needs::default(), "a finished job reads nothing");
    let d = decide(&j, &world(Lookup::Skipped, Lookup::Skipped, vec![]));
    assert_eq!(d.status, done);
    assert!(d.actions.is_empty() && d.events.is_empty() && d.requeue_after.is_none());
}

#[test]
fn finished_jobs_delete_their_children_when_asked() {
    let j = job(json!({}), Some(training_status()));
    let w = world(
        Lookup::Skipped,
        Lookup::Present(pytorch_job(Some("Succeeded"), false)),
        vec![],
    );
    let done = decide(&j, &w).status;
    let spec = json!({"cleanup": {"deleteChildrenAfterFinished": true}});
    let j = job(spec.clone(), Some(done.clone()));
    assert!(needs(&j).pytorch_job && !needs(&j).pods);
    let d = decide(
        &j,
        &world(
            Lookup::Skipped,
            Lookup::Present(pytorch_job(Some("Succeeded"), false)),
            vec![],
        ),
    );
    assert_eq!(d.actions, vec![ChildAction::Delete(ChildKind::PyTorchJob)]);
    assert!(d.events.is_empty());
    let gone = decide(&j, &world(Lookup::Skipped, Lookup::Absent, vec![]));
    assert!(gone.actions.is_empty());
}

#[test]
fn phase_never_moves_backwards() {
    // Kueue preempting a job that already trained keeps it in Training.
    let spec = json!({"scheduling": {"queueName": "gpu"}});
    let mut status = training_status();
    status.phase = Some(Phase::Training);
    let j = job(spec, Some(status));
    let preempted = world(
        Lookup::Skipped,
        Lookup::Present(pytorch_job(Some("Suspended"), true)),
        vec![],
    );
    let d = decide(&j, &preempted);
    assert_eq!(d.status.phase, Some(Phase::Training));
    assert!(d.events.is_empty());
}

#[test]
fn a_rejected_child_fails_the_job_with_the_apiserver_message() {
    let j = job(json!({}), None);
    let (status, event) = child_rejected(
        &j,
        ChildKind::PyTorchJob,
        "spec.tolerations[0]: Invalid",
        &t(T1),
    );
    assert_eq!(status.phase, Some(Phase::Failed));
    assert_eq!(status.reason.as_deref(), Some(reason::CHILD_REJECTED));
    assert!(event.note.contains("spec.tolerations[0]: Invalid"));
    assert_eq!(event.severity, Severity::Warning);
}

#[test]
fn suspend_does_not_claim_to_stop_a_queued_job() {
    let spec = json!({"scheduling": {"queueName": "gpu"}, "suspend": true});
    let mut status = training_status();
    status.phase = Some(Phase::Training);
    let j = job(spec, Some(status));
    let running = world(
        Lookup::Skipped,
        Lookup::Present(pytorch_job(Some("Running"), false)),
        vec![],
    );
    let d = decide(&j, &running);
    assert_eq!(d.status.phase, Some(Phase::Training));
    assert!(d.actions.is_empty(), "Kueue owns runPolicy.suspend");
    assert_eq!(
        condition(&d.status, "Suspended"),
        Some(("False".into(), "ManagedByQueue".into()))
    );
    assert!(d.events.is_empty());
}

/// Records of InstructLab v0.12 log lines: metrics through Rich's handler, markers as prints.
fn records(lines: &[&str]) -> Vec<crate::logs::progress::Record> {
    let log: String = lines
        .iter()
        .map(|l| match l.starts_with("epoch=") {
            true => format!("[10:04:59] INFO     {l}   main_ds.py:170\n"),
            false => format!("{l}\n"),
        })
        .collect();
    let mut parser = crate::logs::progress::ProgressParser::new();
    let mut records = parser.feed(log.as_bytes());
    records.extend(parser.finish());
    records
}

fn cursor(time: &str, lines: i64) -> crate::api::LogCursor {
    crate::api::LogCursor {
        pod_uid: "uid-m".into(),
        time: time.into(),
        lines,
    }
}

#[test]
fn log_lines_become_progress_checkpoints_and_events() {
    let j = job(json!({"training": {"epochs": 2}}), Some(training_status()));
    let mut w = world(
        Lookup::Skipped,
        Lookup::Present(pytorch_job(Some("Running"), false)),
        vec![],
    );
    w.log = Some(LogRead {
        records: records(&[
            "epoch=0, step=1, rank=0, overall_throughput=40.0, avg_loss=2.500, samples_seen=100, total_samples=200, num_epoch_steps=2",
            "epoch=0, step=2, rank=0, overall_throughput=42.0, avg_loss=2.000, samples_seen=200, total_samples=200, num_epoch_steps=2",
            "\x1b[93mModel state saved in: /output/ft/full_state/epoch_0\x1b[0m",
        ]),
        cursor: Some(cursor("2026-11-26T10:04:59.5Z", 3)),
    });
    w.next_log_read = Some(Duration::from_secs(10));
    let d = decide(&j, &w);
    let p = d.status.progress.clone().expect("progress");
    assert_eq!(
        (p.epoch, p.epoch_text.as_deref(), p.step, p.total_steps),
        (Some(1), Some("1/2"), Some(2), Some(4))
    );
    assert_eq!(p.percent, Some(50));
    assert_eq!(p.loss, Some(2.0));
    assert_eq!(
        d.status.checkpoints[0].path,
        "/output/ft/full_state/epoch_0"
    );
    assert_eq!(
        d.status.log_cursor,
        Some(cursor("2026-11-26T10:04:59.5Z", 3))
    );
    assert_eq!(reasons(&d), ["EpochCompleted", "CheckpointSaved"]);
    // Events that repeat a reason carry distinct actions, so the recorder never merges them.
    assert_eq!(d.events[0].action, "EpochCompleted/epoch-1");
    assert!(
        d.events[0]
            .note
            .contains("Epoch 1/2 completed, loss 2.0000"),
        "{}",
        d.events[0].note
    );
    assert_eq!(
        d.requeue_after,
        Some(Duration::from_secs(10)),
        "the next read"
    );

    // Nothing new read: nothing written, nothing published.
    let j = job(json!({"training": {"epochs": 2}}), Some(d.status.clone()));
    let mut quiet = world(
        Lookup::Skipped,
        Lookup::Present(pytorch_job(Some("Running"), false)),
        vec![],
    );
    quiet.log = Some(LogRead {
        records: vec![],
        cursor: Some(cursor("2026-11-26T10:04:59.5Z", 3)),
    });
    let again = decide(&j, &quiet);
    assert_eq!(again.status, d.status);
    assert!(again.events.is_empty());
}

#[test]
fn the_last_lines_count_before_success() {
    let j = job(json!({"training": {"epochs": 1}}), Some(training_status()));
    let mut w = world(
        Lookup::Skipped,
        Lookup::Present(pytorch_job(Some("Succeeded"), false)),
        vec![],
    );
    w.log = Some(LogRead {
        records: records(&[
            "epoch=0, step=2, rank=0, avg_loss=1.500, samples_seen=200, total_samples=200, num_epoch_steps=2",
        ]),
        cursor: None,
    });
    let d = decide(&j, &w);
    assert_eq!(d.status.phase, Some(Phase::Succeeded));
    assert_eq!(d.status.progress.as_ref().unwrap().percent, Some(100));
    assert_eq!(reasons(&d), ["EpochCompleted", "TrainingSucceeded"]);
}

#[test]
fn failures_get_a_specific_reason_from_pods_and_log() {
    let j = job(json!({}), Some(training_status()));
    let mut w = world(
        Lookup::Skipped,
        Lookup::Present(pytorch_job(Some("Failed"), false)),
        vec![pod("ft-master-0", "pytorch", json!({}), Some(1), 0)],
    );
    w.failure_log = Some("step 3\n[rank0]: torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 20.00 GiB\n".into());
    let d = decide(&j, &w);
    assert_eq!(d.status.reason.as_deref(), Some(reason::TRAINING_FAILED));
    assert_eq!(
        condition(&d.status, "Failed"),
        Some(("True".into(), "CUDAOutOfMemory".into()))
    );
    assert!(
        d.status
            .message
            .as_deref()
            .unwrap()
            .starts_with("the GPU ran out of memory")
    );
    // The lines already read end the event; nothing is read twice.
    assert!(matches!(&d.events[0].tail, Some(Tail::Text(t)) if t.contains("CUDA out of memory")));
}

#[test]
fn pods_that_cannot_start_mark_the_job_stalled_once() {
    let j = job(json!({}), Some(training_status()));
    let unschedulable: Pod = serde_json::from_value(json!({
        "metadata": {"name": "ft-master-0", "labels": {"training.kubeflow.org/job-name": "ft"},
                     "creationTimestamp": "2026-11-26T10:00:00Z"},
        "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False",
            "reason": "Unschedulable", "message": "0/4 nodes are available: 4 Insufficient nvidia.com/gpu."}]},
    }))
    .unwrap();
    let w = world(
        Lookup::Skipped,
        Lookup::Present(pytorch_job(Some("Created"), false)),
        vec![unschedulable],
    );
    let d = decide(&j, &w);
    assert_eq!(
        d.status.phase,
        Some(Phase::Training),
        "stalled is not failed"
    );
    assert_eq!(
        condition(&d.status, "Stalled"),
        Some(("True".into(), "InsufficientGPUs".into()))
    );
    assert_eq!(reasons(&d), ["TrainingStalled"]);
    assert_eq!(d.events[0].severity, Severity::Warning);
    assert_settles(j, &d, &w);

    // Once the pods run, the condition says so.
    let j = job(json!({}), Some(d.status));
    let d = decide(
        &j,
        &world(
            Lookup::Skipped,
            Lookup::Present(pytorch_job(Some("Running"), false)),
            vec![],
        ),
    );
    assert_eq!(
        condition(&d.status, "Stalled"),
        Some(("False".into(), "Progressing".into()))
    );
    assert!(d.events.is_empty());
}

#[test]
fn no_new_step_within_the_progress_deadline_is_a_stall() {
    let mut status = training_status();
    status.training_start_time = Some(t("2026-11-26T10:04:00Z"));
    let spec = json!({"progressDeadlineSeconds": 100});
    let running = world(
        Lookup::Skipped,
        Lookup::Present(pytorch_job(Some("Running"), false)),
        vec![],
    );
    let d = decide(&job(spec.clone(), Some(status.clone())), &running);
    assert_eq!(condition(&d.status, "Stalled"), None);
    assert_eq!(d.requeue_after, Some(Duration::from_secs(40)));

    status.training_start_time = Some(t("2026-11-26T10:00:00Z"));
    let d = decide(&job(spec, Some(status)), &running);
    assert_eq!(
        condition(&d.status, "Stalled"),
        Some(("True".into(), "ProgressDeadlineExceeded".into()))
    );
    assert_eq!(reasons(&d), ["TrainingStalled"]);
    assert_eq!(d.status.phase, Some(Phase::Training));
}

#[test]
fn needs_the_log_only_while_training() {
    let training = job(json!({}), Some(training_status()));
    assert!(needs(&training).log);
    let j = job(json!({"preprocess": {}}), None);
    let initializing = decide(&j, &world(Lookup::Absent, Lookup::Absent, vec![])).status;
    assert!(!needs(&job(json!({"preprocess": {}}), Some(initializing))).log);
    let done = decide(
        &training,
        &world(
            Lookup::Skipped,
            Lookup::Present(pytorch_job(Some("Succeeded"), false)),
            vec![],
        ),
    )
    .status;
    assert!(!needs(&job(json!({}), Some(done))).log);
}

#[test]
fn a_bad_pod_label_key_fails_the_job_before_anything_starts() {
    let j = job(json!({"podTemplate": {"labels": {"team/a/b": "x"}}}), None);
    let d = decide(&j, &world(Lookup::Skipped, Lookup::Absent, vec![]));
    assert!(d.actions.is_empty(), "nothing is created");
    assert_eq!(d.status.phase, Some(Phase::Failed));
    assert_eq!(d.status.reason.as_deref(), Some(reason::INVALID_SPEC));
    assert_eq!(
        condition(&d.status, "Accepted"),
        Some(("False".into(), "InvalidSpec".into()))
    );
    assert_eq!(reasons(&d), [reason::INVALID_SPEC]);
    assert!(
        d.status
            .message
            .unwrap()
            .contains("podTemplate.labels key \"team/a/b\"")
    );
}

// ---- hardening: children that are not ours, crashes, queues, recreated pods, stable text ----

#[test]
fn an_object_with_the_childs_name_that_is_not_ours_fails_the_job_untouched() {
    // No preprocessing: the PyTorchJob's name is taken by someone else's object.
    let j = job(json!({}), None);
    let d = decide(&j, &world(Lookup::Skipped, Lookup::Foreign, vec![]));
    assert_eq!(d.status.phase, Some(Phase::Failed));
    assert_eq!(d.status.reason.as_deref(), Some(reason::CHILD_CONFLICT));
    let message = d.status.message.clone().unwrap();
    assert!(
        message.starts_with(
            "a PyTorchJob named ft already exists and is not owned by this FineTuneJob"
        ),
        "{message}"
    );
    // Never created over, suspended or deleted, not even when asked to clean up.
    assert!(d.actions.is_empty(), "{:?}", d.actions);
    assert_eq!(reasons(&d), vec![reason::TRAINING_FAILED]);
    let cleanup = job(
        json!({"cleanup": {"deleteChildrenAfterFinished": true}}),
        Some(d.status.clone()),
    );
    let again = decide(&cleanup, &world(Lookup::Foreign, Lookup::Foreign, vec![]));
    assert!(again.actions.is_empty(), "{:?}", again.actions);

    // The preprocess Job's name taken: the same, with the preprocess reason.
    let j = job(json!({"preprocess": {}}), None);
    let d = decide(&j, &world(Lookup::Foreign, Lookup::Absent, vec![]));
    assert_eq!(d.status.reason.as_deref(), Some(reason::CHILD_CONFLICT));
    assert!(d.actions.is_empty());
    assert_eq!(reasons(&d), vec![reason::PREPROCESS_FAILED]);

    // Found only when creating it: the same decision.
    let d = child_conflict(&job(json!({}), None), ChildKind::PyTorchJob, &t(T1));
    assert_eq!(d.status.reason.as_deref(), Some(reason::CHILD_CONFLICT));
    assert!(d.actions.is_empty());
}

#[test]
fn a_child_created_before_a_crash_is_recorded_in_status() {
    // The operator created the PyTorchJob, then died before writing the status that names it.
    let mut status = training_status();
    status.pytorch_job = None;
    status.phase = Some(Phase::Pending);
    let j = job(json!({}), Some(status));
    let w = world(
        Lookup::Skipped,
        Lookup::Present(pytorch_job(Some("Running"), false)),
        vec![],
    );
    let d = decide(&j, &w);
    assert_eq!(d.status.pytorch_job.as_deref(), Some("ft"));
    assert!(needs(&job(json!({}), Some(d.status.clone()))).log);
    // Deleted later: reported, not silently created again.
    let j = job(json!({}), Some(d.status));
    let d = decide(&j, &world(Lookup::Skipped, Lookup::Absent, vec![]));
    assert_eq!(d.status.reason.as_deref(), Some(reason::CHILD_DELETED));
    assert!(d.actions.is_empty());

    // The same for the preprocess Job.
    let j = job(json!({"preprocess": {}}), None);
    let d = decide(
        &j,
        &world(Lookup::Present(k8s_job(None)), Lookup::Absent, vec![]),
    );
    assert_eq!(d.status.preprocess_job.as_deref(), Some("ft-preprocess"));
}

fn failed_pod(name: &str, uid: &str, exit_code: i32) -> Pod {
    let mut p = pod(
        name,
        "pytorch",
        json!({"finetune.dev/job-name": "ft", "training.kubeflow.org/job-name": "ft"}),
        Some(exit_code),
        0,
    );
    p.metadata.uid = Some(uid.into());
    p.status.as_mut().unwrap().phase = Some("Failed".into());
    p
}

#[test]
fn recreated_training_pods_count_against_the_backoff_limit() {
    // restartPolicy ExitCode: the training operator replaces a pod that exits with 137 by a new
    // pod, so restartCount stays 0; each failed pod is counted once, by UID.
    let running = |pods| {
        world(
            Lookup::Skipped,
            Lookup::Present(pytorch_job(Some("Running"), false)),
            pods,
        )
    };
    let mut status = training_status();
    let spec = json!({"backoffLimit": 1});
    let w = running(vec![failed_pod("ft-master-0", "a", 137)]);
    let d = decide(&job(spec.clone(), Some(status.clone())), &w);
    assert_eq!(d.status.phase, Some(Phase::Training));
    assert_eq!(d.status.pod_failures.as_ref().unwrap().count, 1);
    // The same pod seen again is not counted again.
    assert_settles(job(spec.clone(), Some(status.clone())), &d, &w);
    status = d.status;

    // An exit code below 128 is the PyTorchJob's own failure to report, not counted here.
    let d = decide(
        &job(spec.clone(), Some(status.clone())),
        &running(vec![failed_pod("ft-master-0", "b", 1)]),
    );
    assert_eq!(d.status.pod_failures.as_ref().unwrap().count, 1);

    // The recreated pod fails too: past the limit, the job fails with the exit codes.
    let d = decide(
        &job(spec, Some(status)),
        &running(vec![failed_pod("ft-master-0", "c", 143)]),
    );
    assert_eq!(d.status.phase, Some(Phase::Failed));
    let message = d.status.message.clone().unwrap();
    assert!(
        message.contains("training pods failed 2 times, more than backoffLimit 1")
            && message.contains("137, 143"),
        "{message}"
    );
    assert_eq!(
        d.actions,
        vec![ChildAction::SetSuspended(ChildKind::PyTorchJob, true)]
    );
}

#[test]
fn a_queued_job_that_fails_deletes_its_pytorchjob() {
    // Kueue un-suspends an admitted job: suspending would not free its GPUs.
    let spec = json!({"scheduling": {"queueName": "gpu"}, "activeDeadlineSeconds": 60});
    let mut status = training_status();
    status.training_start_time = Some(t(T0));
    let w = world(
        Lookup::Skipped,
        Lookup::Present(pytorch_job(Some("Running"), false)),
        vec![],
    );
    let d = decide(&job(spec.clone(), Some(status)), &w);
    assert_eq!(d.status.reason.as_deref(), Some(reason::DEADLINE_EXCEEDED));
    assert_eq!(d.actions, vec![ChildAction::Delete(ChildKind::PyTorchJob)]);

    // Restarting too often: the same.
    let pods = vec![pod("ft-master-0", "pytorch", json!({}), None, 4)];
    let d = decide(
        &job(
            json!({"scheduling": {"queueName": "gpu"}}),
            Some(training_status()),
        ),
        &world(
            Lookup::Skipped,
            Lookup::Present(pytorch_job(Some("Running"), false)),
            pods,
        ),
    );
    assert_eq!(d.status.phase, Some(Phase::Failed));
    assert_eq!(d.actions, vec![ChildAction::Delete(ChildKind::PyTorchJob)]);
}

#[test]
fn time_suspended_by_the_queue_does_not_count_against_the_deadline() {
    let spec = json!({"scheduling": {"queueName": "gpu"}, "activeDeadlineSeconds": 60});
    let mut status = training_status();
    status.training_start_time = Some(t(T0));
    // Preempted: Kueue suspended the admitted PyTorchJob. 5 minutes pass: no failure.
    let preempted = world(
        Lookup::Skipped,
        Lookup::Present(pytorch_job(Some("Suspended"), true)),
        vec![],
    );
    let d = decide(&job(spec.clone(), Some(status)), &preempted);
    assert_eq!(d.status.phase, Some(Phase::Training));
    assert_eq!(d.status.reason.as_deref(), Some(reason::SUSPENDED_BY_QUEUE));
    assert!(d.actions.is_empty());
    // Re-admitted: the clock starts again.
    let admitted = world(
        Lookup::Skipped,
        Lookup::Present(pytorch_job(Some("Running"), false)),
        vec![],
    );
    let d = decide(&job(spec, Some(d.status)), &admitted);
    assert_eq!(d.status.phase, Some(Phase::Training));
    assert_eq!(d.status.training_start_time, Some(t(T1)));
    assert_eq!(d.requeue_after, Some(Duration::from_secs(60)));
}

#[test]
fn a_stalled_job_is_not_rewritten_while_nothing_changes() {
    let mut status = training_status();
    status.training_start_time = Some(t(T0));
    let spec = json!({"progressDeadlineSeconds": 100});
    let running = |now: &str| {
        let mut w = world(
            Lookup::Skipped,
            Lookup::Present(pytorch_job(Some("Running"), false)),
            vec![],
        );
        w.now = t(now);
        w
    };
    let d = decide(&job(spec.clone(), Some(status)), &running(T1));
    assert_eq!(
        condition(&d.status, "Stalled").unwrap().1,
        "ProgressDeadlineExceeded"
    );
    // A minute later, still no step: the same status (no write), no second event.
    let later = decide(
        &job(spec, Some(d.status.clone())),
        &running("2026-11-26T10:06:00Z"),
    );
    assert_eq!(later.status, d.status);
    assert!(later.events.is_empty());
}

#[test]
fn a_forbidden_child_marks_the_job_stalled_once_with_the_apiservers_words() {
    let j = job(json!({"preprocess": {}}), None);
    let quota = "jobs.batch \"ft-preprocess\" is forbidden: exceeded quota: q, requested: count/jobs.batch=1";
    let (status, event) = child_forbidden(&j, ChildKind::Preprocess, quota, &t(T1));
    assert_eq!(
        condition(&status, "Stalled"),
        Some(("True".into(), reason::CREATE_FORBIDDEN.into()))
    );
    assert!(
        status
            .message
            .as_deref()
            .unwrap()
            .contains("exceeded quota")
    );
    assert_eq!(event.unwrap().reason, reason::PREPROCESS_STALLED);
    // Retried with backoff: the same status, no second event.
    let j = job(json!({"preprocess": {}}), Some(status.clone()));
    let (again, event) = child_forbidden(&j, ChildKind::Preprocess, quota, &t(T1));
    assert_eq!(again, status);
    assert!(event.is_none());
    // Allowed at last: the job goes on and the condition clears.
    let d = decide(&j, &world(Lookup::Absent, Lookup::Absent, vec![]));
    assert_eq!(d.actions, vec![ChildAction::Create(ChildKind::Preprocess)]);
    assert_eq!(condition(&d.status, "Stalled").unwrap().0, "False");
}

#[test]
fn a_child_without_pods_after_the_grace_period_is_stalled_with_its_failed_create_message() {
    let mut ptj = pytorch_job(Some("Created"), false);
    ptj.metadata.uid = Some("ptj-uid".into());
    ptj.metadata.creation_timestamp = Some(t("2026-11-26T10:04:30Z"));
    let mut started = training_status();
    started.training_start_time = Some(t(T0));
    let j = job(json!({}), Some(started));
    // 30 s after creation: still within the grace period; look again when it ends.
    let w = world(Lookup::Skipped, Lookup::Present(ptj.clone()), vec![]);
    assert_eq!(needs_failed_create(&j, &w), None);
    let d = decide(&j, &w);
    assert_eq!(condition(&d.status, "Stalled"), None);
    assert_eq!(d.requeue_after, Some(Duration::from_secs(30)));

    // Past it: the controller reads the child's FailedCreate event once.
    ptj.metadata.creation_timestamp = Some(t(T0));
    let mut w = world(Lookup::Skipped, Lookup::Present(ptj), vec![]);
    assert_eq!(needs_failed_create(&j, &w).as_deref(), Some("ptj-uid"));
    let why = "pods \"ft-master-0\" is forbidden: violates PodSecurity \"restricted:latest\": runAsNonRoot != true";
    w.child_failed_create = Some(why.into());
    let d = decide(&j, &w);
    assert_eq!(
        condition(&d.status, "Stalled"),
        Some(("True".into(), reason::NO_PODS.into()))
    );
    let message = &d
        .status
        .conditions
        .iter()
        .find(|c| c.type_ == "Stalled")
        .unwrap()
        .message;
    assert!(
        message.contains("PyTorchJob ft has created no pod") && message.contains("runAsNonRoot"),
        "{message}"
    );
    assert_eq!(reasons(&d), vec![reason::TRAINING_STALLED]);

    // Later reconciles do not read the events again and keep the same words: no write.
    let j = job(json!({}), Some(d.status.clone()));
    assert_eq!(needs_failed_create(&j, &w), None);
    w.child_failed_create = None;
    let again = decide(&j, &w);
    assert_eq!(again.status, d.status);
    assert!(again.events.is_empty());

    // Suspended by the queue, a child rightly has no pods.
    let mut queued = pytorch_job(Some("Suspended"), true);
    queued.metadata.creation_timestamp = Some(t(T0));
    let j = job(
        json!({"scheduling": {"queueName": "gpu"}}),
        Some(training_status()),
    );
    let d = decide(&j, &world(Lookup::Skipped, Lookup::Present(queued), vec![]));
    assert_eq!(condition(&d.status, "Stalled"), None);
}

#[test]
fn a_job_whose_output_directory_another_live_job_uses_fails_before_creating_anything() {
    let named = |name: &str, created: &str, patch: Value, status: Option<FineTuneJobStatus>| {
        let mut j = job(patch, status);
        j.metadata.name = Some(name.into());
        j.metadata.uid = Some(format!("uid-{name}"));
        j.metadata.creation_timestamp = Some(t(created));
        j
    };
    let shared = json!({"output": {"claimName": "o", "path": "runs/a"}});
    let older = named("a", T0, shared.clone(), None);
    let newer = named("b", T1, shared.clone(), None);
    assert_eq!(
        output_in_use_by(&newer, [&older, &newer]).as_deref(),
        Some("a")
    );
    // The older one keeps the directory.
    assert_eq!(output_in_use_by(&older, [&older, &newer]), None);
    // Finished or deleted jobs, other claims, other paths, other namespaces: no conflict.
    let mut done = training_status();
    done.phase = Some(Phase::Succeeded);
    let finished = named("a", T0, shared.clone(), Some(done));
    assert_eq!(output_in_use_by(&newer, [&finished]), None);
    let other_path = named(
        "a",
        T0,
        json!({"output": {"claimName": "o", "path": "runs/c"}}),
        None,
    );
    assert_eq!(output_in_use_by(&newer, [&other_path]), None);
    let mut elsewhere = older.clone();
    elsewhere.metadata.namespace = Some("other".into());
    assert_eq!(output_in_use_by(&newer, [&elsewhere]), None);
    // The default path is the job's name: "b" with path "a" collides with job "a".
    let default_a = named("a", T0, json!({}), None);
    let b_at_a = named(
        "b",
        T1,
        json!({"output": {"claimName": "o", "path": "a"}}),
        None,
    );
    assert_eq!(
        output_in_use_by(&b_at_a, [&default_a]).as_deref(),
        Some("a")
    );
    // A newer job that already runs keeps its directory too.
    let running = named("c", T1, shared, Some(training_status()));
    assert_eq!(output_in_use_by(&older, [&running]).as_deref(), Some("c"));

    let mut w = world(Lookup::Skipped, Lookup::Absent, vec![]);
    w.output_in_use_by = Some("a".into());
    let d = decide(&newer, &w);
    assert_eq!(d.status.phase, Some(Phase::Failed));
    assert_eq!(d.status.reason.as_deref(), Some(reason::OUTPUT_IN_USE));
    assert!(d.actions.is_empty());
    assert_eq!(reasons(&d), vec![reason::OUTPUT_IN_USE]);
}

#[test]
fn event_actions_fit_in_128_bytes_whatever_the_checkpoint_path() {
    // The apiserver counts an action's length in bytes; a path of CJK characters has three
    // bytes to a character.
    let j = job(json!({}), Some(training_status()));
    let mut w = world(
        Lookup::Skipped,
        Lookup::Present(pytorch_job(Some("Running"), false)),
        vec![],
    );
    let dir = "样本".repeat(30);
    w.log = Some(LogRead {
        records: records(&[
            &format!("\x1b[93mSaving model in huggingface format at: {dir}\x1b[0m"),
            &format!("\x1b[93mModel saved in /output/ft/hf_format/{dir}\x1b[0m"),
        ]),
        cursor: None,
    });
    let d = decide(&j, &w);
    let saved = d
        .events
        .iter()
        .find(|e| e.reason == "CheckpointSaved")
        .expect("a CheckpointSaved event");
    assert!(saved.action.len() <= 128, "{} bytes", saved.action.len());
    assert!(
        saved.action.starts_with("CheckpointSaved/样本"),
        "{}",
        saved.action
    );
}

#[test]
fn no_pods_is_not_claimed_after_a_resume_or_while_a_pod_is_recreated() {
    let mut ptj = pytorch_job(Some("Created"), false);
    ptj.metadata.uid = Some("ptj-uid".into());
    ptj.metadata.creation_timestamp = Some(t(T0));
    // Re-admitted (or resumed) 10 s ago: the grace counts from there.
    let mut status = training_status();
    status.training_start_time = Some(t("2026-11-26T10:04:50Z"));
    let j = job(json!({}), Some(status.clone()));
    let w = world(Lookup::Skipped, Lookup::Present(ptj.clone()), vec![]);
    assert_eq!(needs_failed_create(&j, &w), None);
    let d = decide(&j, &w);
    assert_eq!(condition(&d.status, "Stalled"), None);
    assert_eq!(d.requeue_after, Some(Duration::from_secs(50)));
    // A job that had pods (the training operator counted one) is between two pods, not podless.
    status.training_start_time = Some(t(T0));
    let mut had_pods = ptj;
    had_pods.status.as_mut().unwrap().replica_statuses.insert(
        "Master".into(),
        serde_json::from_value(json!({"failed": 1})).unwrap(),
    );
    let j = job(json!({}), Some(status));
    let w = world(Lookup::Skipped, Lookup::Present(had_pods), vec![]);
    assert_eq!(needs_failed_create(&j, &w), None);
    assert_eq!(condition(&decide(&j, &w).status, "Stalled"), None);
}

#[test]
fn pods_stopped_on_purpose_are_not_failures_and_none_is_counted_twice() {
    let spec = json!({"backoffLimit": 100});
    let running = |pods| {
        world(
            Lookup::Skipped,
            Lookup::Present(pytorch_job(Some("Running"), false)),
            pods,
        )
    };
    // Evicted (DisruptionTarget) or being deleted: not counted.
    let mut evicted = failed_pod("ft-worker-0", "e", 137);
    evicted.status.as_mut().unwrap().conditions = Some(vec![
        serde_json::from_value(json!({"type": "DisruptionTarget", "status": "True"})).unwrap(),
    ]);
    let mut deleting = failed_pod("ft-worker-1", "d", 137);
    deleting.metadata.deletion_timestamp = Some(t(T1));
    let d = decide(
        &job(spec.clone(), Some(training_status())),
        &running(vec![evicted, deleting]),
    );
    assert_eq!(d.status.pod_failures, None);
    // Suspended by the queue (preempted): not counted either.
    let preempted = world(
        Lookup::Skipped,
        Lookup::Present(pytorch_job(Some("Suspended"), true)),
        vec![failed_pod("ft-master-0", "p", 137)],
    );
    let q = json!({"scheduling": {"queueName": "gpu"}, "backoffLimit": 0});
    let mut status = training_status();
    status.training_start_time = Some(t(T0));
    assert_eq!(
        decide(&job(q, Some(status)), &preempted)
            .status
            .pod_failures,
        None
    );

    // 40 failed pods seen at once (a large job losing a node pool): counted once each, and a
    // second look counts none again although only 16 UIDs are usually kept.
    let many: Vec<Pod> = (0..40)
        .map(|i| failed_pod(&format!("ft-worker-{i}"), &format!("u{i}"), 137))
        .collect();
    let d = decide(
        &job(spec.clone(), Some(training_status())),
        &running(many.clone()),
    );
    assert_eq!(d.status.pod_failures.as_ref().unwrap().count, 40);
    assert_settles(job(spec, Some(training_status())), &d, &running(many));
}

#[test]
fn a_job_held_by_the_queue_or_just_resumed_is_not_overdue() {
    let spec = json!({"progressDeadlineSeconds": 100, "scheduling": {"queueName": "gpu"}});
    let mut status = training_status();
    status.training_start_time = Some(t(T0));
    let preempted = world(
        Lookup::Skipped,
        Lookup::Present(pytorch_job(Some("Suspended"), true)),
        vec![],
    );
    let d = decide(&job(spec.clone(), Some(status)), &preempted);
    assert_eq!(condition(&d.status, "Stalled"), None);
    // Re-admitted now after a step long ago: the deadline counts from the re-admission.
    let mut status = d.status;
    status.progress = Some(serde_json::from_value(json!({"step": 3, "updateTime": T0})).unwrap());
    let admitted = world(
        Lookup::Skipped,
        Lookup::Present(pytorch_job(Some("Running"), false)),
        vec![],
    );
    let d = decide(&job(spec, Some(status)), &admitted);
    assert_eq!(condition(&d.status, "Stalled"), None);
}

#[test]
fn a_leftover_being_deleted_is_not_a_conflict_and_a_found_child_clears_create_forbidden() {
    let mut leftover = pytorch_job(None, false);
    leftover.metadata.deletion_timestamp = Some(t(T0));
    leftover.metadata.owner_references = Some(vec![
        serde_json::from_value(
            json!({"apiVersion": "finetune.dev/v1alpha1", "kind": "FineTuneJob",
                                      "name": "ft", "uid": "old", "controller": true}),
        )
        .unwrap(),
    ]);
    assert_eq!(
        owned(Some(leftover), |p| &p.metadata, Some("uid-1")),
        Lookup::Absent
    );

    // The create went through but the status write after it did not: the next look finds the
    // child, and the forbidden condition goes.
    let j = job(json!({"preprocess": {}}), Some(training_status()));
    let (forbidden, _) = child_forbidden(&j, ChildKind::Preprocess, "quota", &t(T1));
    let j = job(json!({"preprocess": {}}), Some(forbidden));
    let d = decide(
        &j,
        &world(Lookup::Present(k8s_job(None)), Lookup::Absent, vec![]),
    );
    assert_eq!(condition(&d.status, "Stalled").unwrap().0, "False");
}

/// The quoted CamelCase words of `text` after each occurrence of `marker`.
fn quoted_after<'a>(text: &'a str, marker: &str) -> Vec<&'a str> {
    text.split(marker)
        .skip(1)
        .filter_map(|rest| rest.trim_start().strip_prefix('"')?.split('"').next())
        .filter(|w| w.chars().next().is_some_and(|c| c.is_ascii_uppercase()))
        .collect()
}

#[test]
fn every_reason_the_code_can_set_or_emit_is_documented() {
    let docs = include_str!("../../docs/api.md");
    let module = include_str!("mod.rs");
    let reasons_block = module
        .split("pub mod reason {")
        .nth(1)
        .and_then(|rest| rest.split("\n}\n").next())
        .expect("the reason module");
    let mut reasons = quoted_after(reasons_block, "&str =");
    // The specific reasons of the Failed and Stalled conditions.
    reasons.extend(quoted_after(include_str!("diagnose.rs"), "diagnosis("));
    // The progress events.
    reasons.extend(quoted_after(
        include_str!("../logs/progress/fold.rs"),
        "} =>",
    ));
    assert!(reasons.len() > 30, "found only {reasons:?}");
    let missing: Vec<&&str> = reasons
        .iter()
        .filter(|r| !docs.contains(&format!("`{r}`")))
        .collect();
    assert!(missing.is_empty(), "not in docs/api.md: {missing:?}");
}
