//! New jobs: what is created first, what a restart finds, what stops a job before it starts.

use super::*;

#[test]
fn new_job_with_preprocess_creates_the_preprocess_job() {
    let j = job(json!({"preprocess": {}}), None);
    let w = world(Lookup::Absent, Lookup::Absent, vec![]);
    let d = decide(&j, &w);
    assert_eq!(d.actions, vec![create(&j, ChildKind::Preprocess)]);
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
    assert_eq!(d.actions, vec![create(&j, ChildKind::PyTorchJob)]);
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
    assert_eq!(d.actions, vec![create(&j, ChildKind::PyTorchJob)]);
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
    assert_eq!(
        d.status.reason.as_deref(),
        Some(reason::CHILD_DELETED.as_str())
    );
    assert!(d.actions.is_empty());

    // The same for the preprocess Job.
    let j = job(json!({"preprocess": {}}), None);
    let d = decide(
        &j,
        &world(Lookup::Present(k8s_job(None)), Lookup::Absent, vec![]),
    );
    assert_eq!(d.status.preprocess_job.as_deref(), Some("ft-preprocess"));
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
    assert_eq!(reasons(&d), [reason::PREEMPTED]);
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
    assert_eq!(d.actions, vec![create(&j, ChildKind::Preprocess)]);
    assert_eq!(condition(&d.status, "Accepted").unwrap().0, "True");
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
    assert_eq!(
        d.status.reason.as_deref(),
        Some(reason::INVALID_SPEC.as_str())
    );
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

#[test]
fn a_job_whose_output_directory_another_live_job_uses_fails_before_creating_anything() {
    let named = |name: &str, created: &str, patch: Value, status: Option<FineTuneJobStatus>| {
        fixture(patch, status)
            .meta(json!({"name": name, "uid": format!("uid-{name}"), "creationTimestamp": created}))
            .build()
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
    assert_eq!(
        d.status.reason.as_deref(),
        Some(reason::OUTPUT_IN_USE.as_str())
    );
    assert!(d.actions.is_empty());
    assert_eq!(reasons(&d), vec![reason::OUTPUT_IN_USE]);
}
