//! A deleted FineTuneJob, in each phase: what is read, the `Cancelled` event and its tail, which
//! children are deleted (exactly ours, in the foreground), and when the finalizer goes.

use super::*;

/// `ft`, deleted, with our finalizer still on it.
fn deleted(spec: Value, status: Option<FineTuneJobStatus>) -> FineTuneJob {
    fixture(spec, status)
        .finalized()
        .meta(json!({"deletionTimestamp": T1}))
        .build()
}

fn ours_preprocess() -> Job {
    let mut pre = k8s_job(None);
    pre.metadata.uid = Some("pre-1".into());
    pre
}

fn ours_pytorch_job(condition: &str, suspended: bool) -> PyTorchJob {
    let mut ptj = pytorch_job(Some(condition), suspended);
    ptj.metadata.uid = Some("ptj-1".into());
    ptj
}

fn being_deleted<T: kube::Resource>(mut child: T) -> T {
    child.meta_mut().deletion_timestamp = Some(t(T1));
    child
}

fn delete(preprocess: Option<&str>, pytorch_job: Option<&str>) -> OwnedChildren {
    OwnedChildren {
        preprocess: preprocess.map(String::from),
        training: pytorch_job.map(String::from),
    }
}

fn wait() -> AfterDeletion {
    AfterDeletion::Wait(Duration::from_secs(5))
}

fn cancelled_tail(d: &Deletion) -> Option<&Tail> {
    let event = d.event.as_ref().expect("a Cancelled event");
    assert_eq!(
        (event.reason, event.severity),
        (reason::CANCELLED, Severity::Normal)
    );
    assert_eq!(event.action, "Cancelled");
    event.tail.as_ref()
}

#[test]
fn deletion_reads_every_child_and_the_preprocess_pods_only_while_preprocessing() {
    let every_child = |pods| Needs {
        preprocess_job: true,
        training: true,
        pods,
        log: false,
        other_jobs: false,
    };
    assert_eq!(needs(&deleted(json!({}), None)), every_child(false));
    assert_eq!(
        needs(&deleted(json!({}), Some(training_status()))),
        every_child(false)
    );
    let j = job(json!({"preprocess": {}}), None);
    let initializing = decide(&j, &world(Lookup::Absent, Lookup::Absent, vec![])).status;
    assert_eq!(
        needs(&deleted(json!({"preprocess": {}}), Some(initializing))),
        every_child(true)
    );
}

#[test]
fn a_job_deleted_before_anything_started_is_cancelled_and_let_go() {
    for status in [None, Some(accepted(&job(json!({}), None), &t(T0)))] {
        let j = deleted(json!({}), status);
        let d = deletion(&j, &world(Lookup::Absent, Lookup::Absent, vec![]));
        assert_eq!(cancelled_tail(&d), None);
        assert_eq!(
            d.event.as_ref().unwrap().note,
            "FineTuneJob deleted while Pending; deleting its children"
        );
        assert_eq!(d.delete, OwnedChildren::default());
        assert_eq!(d.then, AfterDeletion::RemoveFinalizer);
    }
    // A missing PyTorchJob kind never blocks it.
    let j = deleted(json!({}), None);
    let d = deletion(&j, &world(Lookup::Absent, Lookup::KindMissing, vec![]));
    assert_eq!(d.then, AfterDeletion::RemoveFinalizer);
}

#[test]
fn a_job_deleted_while_preprocessing_ends_with_the_newest_preprocess_pods_lines() {
    let spec = json!({"preprocess": {}});
    let j = job(spec.clone(), None);
    let initializing = decide(&j, &world(Lookup::Absent, Lookup::Absent, vec![])).status;
    let j = deleted(spec, Some(initializing));
    let preprocess_pod = |name: &str, created: &str| {
        PodFixture::new(name)
            .container("preprocess")
            .labels(json!({"batch.kubernetes.io/job-name": "ft-preprocess"}))
            .meta(json!({"creationTimestamp": created}))
            .build()
    };
    let pods = vec![
        preprocess_pod("ft-preprocess-new", T1),
        preprocess_pod("ft-preprocess-old", T0),
    ];
    let w = world(Lookup::Present(ours_preprocess()), Lookup::Absent, pods);
    let d = deletion(&j, &w);
    assert_eq!(
        cancelled_tail(&d),
        Some(&Tail::Fetch(LogSource {
            pod: "ft-preprocess-new".into(),
            container: "preprocess".into()
        }))
    );
    assert!(
        d.event
            .as_ref()
            .unwrap()
            .note
            .contains("while Initializing")
    );
    assert_eq!(d.delete, delete(Some("pre-1"), None));
    assert_eq!(d.then, wait());

    // Next time the Job is on its way out: no second event, nothing deleted again, still
    // waiting; then gone: the finalizer goes.
    let going = world(
        Lookup::Present(being_deleted(ours_preprocess())),
        Lookup::Absent,
        vec![],
    );
    let d = deletion(&j, &going);
    assert_eq!(d.event, None);
    assert_eq!(d.delete, OwnedChildren::default());
    assert_eq!(d.then, wait());
    let d = deletion(&j, &world(Lookup::Absent, Lookup::Absent, vec![]));
    assert_eq!((d.event, d.then), (None, AfterDeletion::RemoveFinalizer));
}

#[test]
fn a_job_deleted_while_training_or_suspended_ends_with_the_rank_0_lines() {
    let master = Tail::Fetch(LogSource {
        pod: "ft-master-0".into(),
        container: "pytorch".into(),
    });
    let j = deleted(json!({}), Some(training_status()));
    let w = world(
        Lookup::Absent,
        Lookup::Present(ours_pytorch_job("Running", false)),
        vec![],
    );
    let d = deletion(&j, &w);
    assert_eq!(cancelled_tail(&d), Some(&master));
    assert_eq!(d.delete, delete(None, Some("ptj-1")));
    assert_eq!(d.then, wait());

    let mut suspended = training_status();
    suspended.phase = Some(Phase::Suspended);
    let j = deleted(json!({"suspend": true}), Some(suspended));
    let w = world(
        Lookup::Absent,
        Lookup::Present(ours_pytorch_job("Suspended", true)),
        vec![],
    );
    let d = deletion(&j, &w);
    assert_eq!(cancelled_tail(&d), Some(&master));
    assert!(d.event.as_ref().unwrap().note.contains("while Suspended"));
    assert_eq!(d.delete, delete(None, Some("ptj-1")));

    // Suspended before anything was created: no lines to end with.
    let j = job(json!({"suspend": true}), None);
    let held = decide(&j, &world(Lookup::Skipped, Lookup::Absent, vec![])).status;
    let j = deleted(json!({"suspend": true}), Some(held));
    let d = deletion(&j, &world(Lookup::Absent, Lookup::Absent, vec![]));
    assert_eq!(cancelled_tail(&d), None);
    assert_eq!(d.then, AfterDeletion::RemoveFinalizer);
}

#[test]
fn a_finished_job_deleted_is_not_cancelled_but_its_children_go() {
    let j = job(json!({}), Some(training_status()));
    let w = world(
        Lookup::Skipped,
        Lookup::Present(ours_pytorch_job("Succeeded", false)),
        vec![],
    );
    let done = decide(&j, &w).status;
    let j = deleted(json!({}), Some(done));
    let mut again = w.clone();
    again.preprocess_job = Lookup::Absent;
    let d = deletion(&j, &again);
    assert_eq!(d.event, None);
    assert_eq!(d.delete, delete(None, Some("ptj-1")));
    assert_eq!(d.then, wait());
}

#[test]
fn a_deletion_never_deletes_an_object_that_is_not_ours() {
    let j = deleted(json!({}), Some(training_status()));
    let d = deletion(&j, &world(Lookup::Absent, Lookup::Foreign, vec![]));
    // Ours was created once and is gone: nothing to announce, nothing to delete.
    assert_eq!(d.event, None);
    assert_eq!(d.delete, OwnedChildren::default());
    assert_eq!(d.then, AfterDeletion::RemoveFinalizer);
}

#[test]
fn every_live_child_we_own_is_deleted_once_one_is_live() {
    // One already going, the other not: both are named, each by its UID (as before).
    let mut status = training_status();
    status.preprocess_job = Some("ft-preprocess".into());
    let j = deleted(json!({"preprocess": {}}), Some(status));
    let w = world(
        Lookup::Present(being_deleted(ours_preprocess())),
        Lookup::Present(ours_pytorch_job("Running", false)),
        vec![],
    );
    let d = deletion(&j, &w);
    assert!(d.event.is_some());
    assert_eq!(d.delete, delete(Some("pre-1"), Some("ptj-1")));
    assert_eq!(d.then, wait());
}
