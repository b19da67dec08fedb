//! Children the apiserver refuses or that are not ours: conflicts, rejections, forbidden
//! creates, and a FineTuneJob the builders cannot make a child of.

use super::*;

#[test]
fn an_object_with_the_childs_name_that_is_not_ours_fails_the_job_untouched() {
    // No preprocessing: the PyTorchJob's name is taken by someone else's object.
    let j = job(json!({}), None);
    let d = decide(&j, &world(Lookup::Skipped, Lookup::Foreign, vec![]));
    assert_eq!(d.status.phase, Some(Phase::Failed));
    assert_eq!(
        d.status.reason.as_deref(),
        Some(reason::CHILD_CONFLICT.as_str())
    );
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
    assert_eq!(
        d.status.reason.as_deref(),
        Some(reason::CHILD_CONFLICT.as_str())
    );
    assert!(d.actions.is_empty());
    assert_eq!(reasons(&d), vec![reason::PREPROCESS_FAILED]);

    // Found only when creating it: the same decision.
    let d = child_conflict(&job(json!({}), None), ChildKind::PyTorchJob, &t(T1));
    assert_eq!(
        d.status.reason.as_deref(),
        Some(reason::CHILD_CONFLICT.as_str())
    );
    assert!(d.actions.is_empty());
}

#[test]
fn a_rejected_child_fails_the_job_with_the_apiserver_message() {
    // The controller creates children of a job whose first status it has written.
    let pending = accepted(&job(json!({}), None), &t(T0));
    let j = job(json!({}), Some(pending));
    let d = child_rejected(
        &j,
        ChildKind::PyTorchJob,
        "spec.tolerations[0]: Invalid",
        &t(T1),
    );
    assert_eq!(d.status.phase, Some(Phase::Failed));
    assert_eq!(
        d.status.reason.as_deref(),
        Some(reason::CHILD_REJECTED.as_str())
    );
    assert_eq!(d.status.completion_time, Some(t(T1)));
    assert_eq!(reasons(&d), vec![reason::TRAINING_FAILED]);
    let event = &d.events[0];
    assert!(event.note.contains("spec.tolerations[0]: Invalid"));
    assert_eq!(
        event.note,
        "the API server refused to create the PyTorchJob: spec.tolerations[0]: Invalid"
    );
    assert_eq!(event.severity, Severity::Warning);
    // Nothing else is done, and nothing is created again.
    assert!(d.actions.is_empty() && d.requeue_after.is_none());
    assert_settles(j, &d, &world(Lookup::Skipped, Lookup::Absent, vec![]));

    // The preprocess Job: announced as the preprocess phase's failure.
    let j = job(json!({"preprocess": {}}), None);
    let d = child_rejected(&j, ChildKind::Preprocess, "bad", &t(T1));
    assert_eq!(
        d.status.reason.as_deref(),
        Some(reason::CHILD_REJECTED.as_str())
    );
    assert_eq!(reasons(&d), vec![reason::PREPROCESS_FAILED]);
    assert!(
        d.events[0]
            .note
            .starts_with("the API server refused to create the preprocess Job")
    );
}

#[test]
fn a_job_the_builders_cannot_make_a_child_of_fails_as_rejected_and_never_panics() {
    // Never one the apiserver hands out: without a uid there is no owner reference.
    for (spec, kind, announced) in [
        (json!({}), ChildKind::PyTorchJob, reason::TRAINING_FAILED),
        (
            json!({"preprocess": {}}),
            ChildKind::Preprocess,
            reason::PREPROCESS_FAILED,
        ),
    ] {
        let j = fixture(spec, None).meta(json!({"uid": null})).build();
        let w = world(Lookup::Absent, Lookup::Absent, vec![]);
        let d = decide(&j, &w);
        assert!(d.actions.is_empty(), "{kind:?}: {:?}", d.actions);
        assert_eq!(d.status.phase, Some(Phase::Failed));
        assert_eq!(
            d.status.reason.as_deref(),
            Some(reason::CHILD_REJECTED.as_str())
        );
        assert_eq!(
            condition(&d.status, "Failed"),
            Some(("True".into(), reason::CHILD_REJECTED.into()))
        );
        assert_eq!(d.status.preprocess_job, None, "nothing was created");
        assert_eq!(d.status.pytorch_job, None, "nothing was created");
        let message = d.status.message.clone().unwrap();
        assert!(
            message.starts_with("the operator cannot build the")
                && message.contains("the FineTuneJob has no name or uid"),
            "{message}"
        );
        assert_eq!(reasons(&d), vec![announced]);
        assert_settles(j, &d, &w);
    }
    // Without a namespace, the same.
    let j = fixture(json!({}), None)
        .meta(json!({"namespace": null}))
        .build();
    let d = decide(&j, &world(Lookup::Skipped, Lookup::Absent, vec![]));
    assert_eq!(
        d.status.reason.as_deref(),
        Some(reason::CHILD_REJECTED.as_str())
    );
    assert!(d.status.message.unwrap().contains("no namespace"));
}

#[test]
fn a_forbidden_child_marks_the_job_stalled_once_with_the_apiservers_words() {
    let j = job(json!({"preprocess": {}}), None);
    let quota = "jobs.batch \"ft-preprocess\" is forbidden: exceeded quota: q, requested: count/jobs.batch=1";
    let d = child_forbidden(&j, ChildKind::Preprocess, quota, &t(T1));
    let status = d.status.clone();
    assert_eq!(
        condition(&status, "Stalled"),
        Some(("True".into(), reason::CREATE_FORBIDDEN.into()))
    );
    assert_eq!(
        status.reason.as_deref(),
        Some(reason::CREATE_FORBIDDEN.as_str())
    );
    assert!(
        status
            .message
            .as_deref()
            .unwrap()
            .contains("exceeded quota")
    );
    assert_eq!(reasons(&d), vec![reason::PREPROCESS_STALLED]);
    assert!(d.actions.is_empty(), "nothing is created or changed");
    // Retried with backoff: the same status, no second event.
    let j = job(json!({"preprocess": {}}), Some(status.clone()));
    let again = child_forbidden(&j, ChildKind::Preprocess, quota, &t(T1));
    assert_eq!(again.status, status);
    assert!(again.events.is_empty());
    // Allowed at last: the job goes on and the condition clears.
    let d = decide(&j, &world(Lookup::Absent, Lookup::Absent, vec![]));
    assert_eq!(d.actions, vec![create(&j, ChildKind::Preprocess)]);
    assert_eq!(condition(&d.status, "Stalled").unwrap().0, "False");
    // The PyTorchJob: a training stall.
    let j = job(json!({}), None);
    let d = child_forbidden(&j, ChildKind::PyTorchJob, "no", &t(T1));
    assert_eq!(reasons(&d), vec![reason::TRAINING_STALLED]);
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
    let forbidden = child_forbidden(&j, ChildKind::Preprocess, "quota", &t(T1));
    let j = job(json!({"preprocess": {}}), Some(forbidden.status));
    let d = decide(
        &j,
        &world(Lookup::Present(k8s_job(None)), Lookup::Absent, vec![]),
    );
    assert_eq!(condition(&d.status, "Stalled").unwrap().0, "False");
}
