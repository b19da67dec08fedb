//! Finished jobs: nothing changes any more, except deleting children when asked; and when a job
//! needs nothing at all ([`is_settled`]).

use super::*;

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
    assert!(needs(&j).training && !needs(&j).pods);
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
fn a_finished_job_with_nothing_left_to_do_is_settled() {
    let j = job(json!({}), Some(training_status()));
    let w = world(
        Lookup::Skipped,
        Lookup::Present(pytorch_job(Some("Succeeded"), false)),
        vec![],
    );
    let done = decide(&j, &w).status;
    let settled = || fixture(json!({}), Some(done.clone())).finalized();
    assert!(is_settled(&settled().build()));
    // Its needs agree: nothing to read.
    assert_eq!(needs(&settled().build()), Needs::default());

    // Anything left to do, and it is not.
    assert!(
        !is_settled(&fixture(json!({}), Some(done.clone())).build()),
        "no finalizer yet"
    );
    assert!(
        !is_settled(&settled().meta(json!({"generation": 2})).build()),
        "a new spec"
    );
    assert!(
        !is_settled(&settled().meta(json!({"deletionTimestamp": T1})).build()),
        "deleted"
    );
    assert!(
        !is_settled(
            &settled()
                .spec(json!({"cleanup": {"deleteChildrenAfterFinished": true}}))
                .build()
        ),
        "children to delete"
    );
    assert!(!is_settled(
        &fixture(json!({}), Some(training_status()))
            .finalized()
            .build()
    ));
    assert!(!is_settled(&fixture(json!({}), None).finalized().build()));
    let mut failed = done;
    failed.phase = Some(Phase::Failed);
    assert!(is_settled(
        &fixture(json!({}), Some(failed)).finalized().build()
    ));
}
