//! spec.suspend and Kueue: suspending, resuming, queueing, preemption.

use super::*;

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
    assert_eq!(r.actions, vec![create(&j, ChildKind::PyTorchJob)]);
    assert_eq!(reasons(&r), vec![reason::RESUMED, reason::TRAINING_STARTED]);
}

#[test]
fn a_queued_job_waits_for_kueue() {
    let spec = json!({"scheduling": {"queueName": "gpu"}});
    let j = job(spec.clone(), None);
    let d = decide(&j, &world(Lookup::Skipped, Lookup::Absent, vec![]));
    assert_eq!(d.actions, vec![create(&j, ChildKind::PyTorchJob)]);
    assert_eq!(d.status.phase, Some(Phase::Pending));
    assert_eq!(d.status.reason.as_deref(), Some(reason::QUEUED.as_str()));
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
    assert_eq!(d.status.reason.as_deref(), Some(reason::PREEMPTED.as_str()));
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
