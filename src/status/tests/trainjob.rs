//! The TrainJob backend: the same phases, failures, suspension and deletion as the PyTorchJob's,
//! read from the TrainJob's conditions and its JobSet's pods.

use super::*;

fn spec() -> Value {
    json!({"backend": "TrainJob"})
}

/// The TrainJob `ft` (uid `tj-1`, controlled by the FineTuneJob), with its condition
/// `condition` True.
fn train_job(condition: Option<&str>, suspended: bool) -> TrainJob {
    let conditions: Vec<Value> = condition
        .map(|c| {
            json!({"type": c, "status": "True", "reason": format!("{c}Reason"),
                   "message": format!("TrainJob is {c}"), "lastTransitionTime": T0})
        })
        .into_iter()
        .collect();
    serde_json::from_value(json!({
        "apiVersion": "trainer.kubeflow.org/v1alpha1",
        "kind": "TrainJob",
        "metadata": {"name": "ft", "namespace": "ns", "uid": "tj-1",
                     "ownerReferences": [{"apiVersion": "finetune.dev/v1alpha1", "kind": "FineTuneJob",
                                          "name": "ft", "uid": "uid-1", "controller": true}]},
        "spec": {"runtimeRef": {"name": "finetune-instructlab"}, "suspend": suspended},
        "status": {"conditions": conditions},
    }))
    .unwrap()
}

/// A pod of the TrainJob's JobSet (uid `js-1`), of completion index `index`.
fn node_pod(name: &str, index: u32, exit_code: Option<i32>) -> Pod {
    let mut pod = PodFixture::new(name)
        .container("node")
        .labels(json!({
            "finetune.dev/job-name": "ft",
            "jobset.sigs.k8s.io/jobset-name": "ft",
            "jobset.sigs.k8s.io/jobset-uid": "js-1",
            "batch.kubernetes.io/job-completion-index": index.to_string(),
        }))
        .controlled_by("Job", "ft-node-0", "batch-job-uid");
    if let Some(code) = exit_code {
        pod = pod.terminated(code, "Error");
    }
    pod.build()
}

fn train_world(tj: Lookup<TrainJob>, pods: Vec<Pod>) -> Observed {
    let mut observed = Observed::new(t(T1), Lookup::Skipped, tj.map(TrainingJob::from));
    observed.jobset_uid = Some("js-1".into());
    observed.with_own_pods(pods)
}

#[test]
fn a_new_job_creates_a_trainjob_and_trains() {
    let j = job(spec(), None);
    let d = decide(&j, &train_world(Lookup::Absent, vec![]));
    assert_eq!(d.actions, vec![create(&j, ChildKind::TrainJob)]);
    assert_eq!(d.status.phase, Some(Phase::Training));
    assert_eq!(d.status.train_job.as_deref(), Some("ft"));
    assert_eq!(d.status.pytorch_job, None);
    assert_eq!(
        d.status.message.as_deref(),
        Some("TrainJob ft trains on 1 node(s) with 1 GPU(s) each")
    );
    assert_eq!(reasons(&d), vec![reason::TRAINING_STARTED]);
    // Once it runs, nothing changes.
    let j = job(spec(), Some(d.status.clone()));
    let w = train_world(
        Lookup::Present(train_job(None, false)),
        vec![node_pod("ft-node-0-0-abcde", 0, None)],
    );
    let again = decide(&j, &w);
    assert!(again.actions.is_empty() && again.events.is_empty());
    assert_eq!(again.status, d.status);
}

#[test]
fn only_pods_of_our_trainjobs_jobset_are_ours() {
    let ours = node_pod("ft-node-0-0-abcde", 0, None);
    let mut other = node_pod("ft-node-0-0-zzzzz", 0, None);
    other
        .metadata
        .labels
        .as_mut()
        .unwrap()
        .insert("jobset.sigs.k8s.io/jobset-uid".into(), "js-other".into());
    let w = train_world(Lookup::Present(train_job(None, false)), vec![ours, other]);
    let names: Vec<_> = w
        .pods
        .iter()
        .map(|p| p.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(names, vec!["ft-node-0-0-abcde".to_string()]);
    // Without the JobSet's UID (not read yet), no pod of the TrainJob is taken as ours.
    let mut w = Observed::new(
        t(T1),
        Lookup::Skipped,
        Lookup::Present(TrainingJob::from(train_job(None, false))),
    );
    w.jobset_uid = None;
    assert!(
        w.with_own_pods(vec![node_pod("p", 0, None)])
            .pods
            .is_empty()
    );
}

#[test]
fn complete_is_succeeded() {
    let j = job(spec(), Some(training_status()));
    let d = decide(
        &j,
        &train_world(Lookup::Present(train_job(Some("Complete"), false)), vec![]),
    );
    assert_eq!(d.status.phase, Some(Phase::Succeeded));
    assert_eq!(
        d.status.message.as_deref(),
        Some("TrainJob ft finished training")
    );
    assert_eq!(reasons(&d), vec![reason::TRAINING_SUCCEEDED]);
}

#[test]
fn failed_names_the_rank0_container_and_reads_its_log() {
    let j = job(spec(), Some(training_status()));
    let w = train_world(
        Lookup::Present(train_job(Some("Failed"), false)),
        vec![
            node_pod("ft-node-0-1-bbbbb", 1, Some(1)),
            node_pod("ft-node-0-0-aaaaa", 0, Some(3)),
        ],
    );
    let after = needs_after(&j, &w);
    assert_eq!(
        after.failure_log,
        Some(LogSource {
            pod: "ft-node-0-0-aaaaa".into(),
            container: "node".into()
        })
    );
    let d = decide(&j, &w);
    assert_eq!(d.status.phase, Some(Phase::Failed));
    let message = d.status.message.unwrap();
    assert!(
        message.starts_with("TrainJob ft failed: TrainJob is Failed; pod ft-node-0-0-aaaaa container node exited with code 3"),
        "{message}"
    );
}

#[test]
fn suspending_suspends_the_trainjob() {
    let j = job(
        json!({"backend": "TrainJob", "suspend": true}),
        Some(training_status()),
    );
    let d = decide(
        &j,
        &train_world(Lookup::Present(train_job(None, false)), vec![]),
    );
    assert_eq!(
        d.actions,
        vec![ChildAction::SetSuspended(ChildKind::TrainJob, true)]
    );
    assert_eq!(d.status.phase, Some(Phase::Suspended));
}

#[test]
fn a_missing_kind_waits_naming_both_backends() {
    let j = job(spec(), None);
    let d = decide(&j, &train_world(Lookup::KindMissing, vec![]));
    assert!(d.actions.is_empty());
    assert_eq!(
        condition(&d.status, "Accepted"),
        Some(("False".into(), "TrainJobNotInstalled".into()))
    );
    let message = d.status.message.unwrap();
    assert!(
        message.contains("TrainJob kind") && message.contains("spec.backend PyTorchJob"),
        "{message}"
    );
}

#[test]
fn deleting_the_job_deletes_its_trainjob() {
    let j = fixture(spec(), Some(training_status()))
        .meta(json!({"deletionTimestamp": T1}))
        .build();
    let w = train_world(Lookup::Present(train_job(None, false)), vec![]);
    let d = deletion(&j, &w);
    assert_eq!(d.delete.training.as_deref(), Some("tj-1"));
    assert_eq!(d.then, AfterDeletion::Wait(Duration::from_secs(5)));
}

/// A job training on a TrainJob, as [`a_new_job_creates_a_trainjob_and_trains`] leaves it.
fn training_status() -> FineTuneJobStatus {
    let j = job(spec(), None);
    let mut status = decide(&j, &train_world(Lookup::Absent, vec![])).status;
    status.observed_generation = Some(1);
    status
}
