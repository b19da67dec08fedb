//! Failures: of the preprocess Job and the PyTorchJob, diagnosed from pods and logs, and the
//! training pods that fail or restart past backoffLimit.

use super::*;

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
    assert_eq!(
        d.status.reason.as_deref(),
        Some(reason::PREPROCESS_FAILED.as_str())
    );
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
    assert_eq!(
        d.status.reason.as_deref(),
        Some(reason::TRAINING_FAILED.as_str())
    );
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
    assert_eq!(
        d.status.reason.as_deref(),
        Some(reason::CHILD_DELETED.as_str())
    );
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
fn failures_get_a_specific_reason_from_pods_and_log() {
    let j = job(json!({}), Some(training_status()));
    let mut w = world(
        Lookup::Skipped,
        Lookup::Present(pytorch_job(Some("Failed"), false)),
        vec![pod("ft-master-0", "pytorch", json!({}), Some(1), 0)],
    );
    w.failure_log = Some("step 3\n[rank0]: torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 20.00 GiB\n".into());
    let d = decide(&j, &w);
    assert_eq!(
        d.status.reason.as_deref(),
        Some(reason::TRAINING_FAILED.as_str())
    );
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
    assert_eq!(
        d.status.reason.as_deref(),
        Some(reason::DEADLINE_EXCEEDED.as_str())
    );
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
