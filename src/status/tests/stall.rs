//! The deadline and the Stalled condition: pods that cannot start, children without pods, no
//! new step within progressDeadlineSeconds.

use super::*;

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
    assert_eq!(
        d.status.reason.as_deref(),
        Some(reason::DEADLINE_EXCEEDED.as_str())
    );
    assert_eq!(
        d.actions,
        vec![ChildAction::SetSuspended(ChildKind::PyTorchJob, true)]
    );
    assert_eq!(reasons(&d), vec![reason::DEADLINE_EXCEEDED]);
    assert_eq!(tail_pod(&d.events[0]), "ft-master-0");
    assert_settles(j, &d, &w);
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
fn a_child_without_pods_after_the_grace_period_is_stalled_with_its_failed_create_message() {
    let mut ptj = pytorch_job(Some("Created"), false);
    ptj.metadata.uid = Some("ptj-uid".into());
    ptj.metadata.creation_timestamp = Some(t("2026-11-26T10:04:30Z"));
    let mut started = training_status();
    started.training_start_time = Some(t(T0));
    let j = job(json!({}), Some(started));
    // 30 s after creation: still within the grace period; look again when it ends.
    let w = world(Lookup::Skipped, Lookup::Present(ptj.clone()), vec![]);
    assert_eq!(needs_after(&j, &w).failed_create_of, None);
    let d = decide(&j, &w);
    assert_eq!(condition(&d.status, "Stalled"), None);
    assert_eq!(d.requeue_after, Some(Duration::from_secs(30)));

    // Past it: the controller reads the child's FailedCreate event once.
    ptj.metadata.creation_timestamp = Some(t(T0));
    let mut w = world(Lookup::Skipped, Lookup::Present(ptj), vec![]);
    assert_eq!(
        needs_after(&j, &w).failed_create_of.as_deref(),
        Some("ptj-uid")
    );
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
    assert_eq!(needs_after(&j, &w).failed_create_of, None);
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
fn no_pods_is_not_claimed_after_a_resume_or_while_a_pod_is_recreated() {
    let mut ptj = pytorch_job(Some("Created"), false);
    ptj.metadata.uid = Some("ptj-uid".into());
    ptj.metadata.creation_timestamp = Some(t(T0));
    // Re-admitted (or resumed) 10 s ago: the grace counts from there.
    let mut status = training_status();
    status.training_start_time = Some(t("2026-11-26T10:04:50Z"));
    let j = job(json!({}), Some(status.clone()));
    let w = world(Lookup::Skipped, Lookup::Present(ptj.clone()), vec![]);
    assert_eq!(needs_after(&j, &w).failed_create_of, None);
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
    assert_eq!(needs_after(&j, &w).failed_create_of, None);
    assert_eq!(condition(&decide(&j, &w).status, "Stalled"), None);
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
