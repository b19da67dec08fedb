//! The TrainJob backend on the real Kubeflow Trainer v2 and JobSet: the core scenarios of the
//! PyTorchJob's (phases, failure, progress, suspend and resume, deadline, deletion), with the job's
//! `spec.backend: TrainJob` and the project's runtimes (deploy/trainer/).

use finetune_operator::api::{FineTuneJob, Phase, PyTorchJob, TrainJob};
use finetune_operator::testing::JobFixture;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use serde_json::json;
use testkit::e2e::*;

/// A FineTuneJob on the TrainJob backend, its pods simulated with `annotations`.
fn on_trainjob(name: &str, annotations: serde_json::Value) -> JobFixture {
    trainer_runtimes();
    finetunejob(name, annotations).set("/backend", json!("TrainJob"))
}

/// The JobSet's pods of the job's TrainJob.
async fn node_pods(ns: &TestNamespace, name: &str) -> Vec<Pod> {
    ns.api::<Pod>()
        .list(&ListParams::default().labels(&format!("jobset.sigs.k8s.io/jobset-name={name}")))
        .await
        .unwrap()
        .items
}

fn running(pod: &Pod) -> bool {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
}

fn owned_by(job: &FineTuneJob, meta: &kube::core::ObjectMeta) -> bool {
    meta.owner_references.iter().flatten().any(|o| {
        o.kind == "FineTuneJob"
            && Some(&o.uid) == job.metadata.uid.as_ref()
            && o.controller == Some(true)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trainjob_runs_through_training_to_succeeded() {
    let ns = TestNamespace::new("tj-phases").await;
    let _operator = Operator::start(&ns.name);
    let recorder = PhaseRecorder::start(&ns, "tjok");
    let spec = on_trainjob("tjok", json!({"sim.finetune.dev/duration": "3s"}))
        .meta(json!({"labels": {"app.kubernetes.io/instance": "argo-app"}}));
    ns.create(spec).await;
    let (job, _) = ns.wait_for_phase("tjok", Phase::Succeeded).await;
    assert_eq!(
        recorder.phases_until(Phase::Succeeded).await,
        [Phase::Training, Phase::Succeeded]
    );
    let status = job.status.clone().unwrap();
    assert_eq!(status.train_job.as_deref(), Some("tjok"));
    assert_eq!(status.pytorch_job, None);
    assert_eq!(
        status.message.as_deref(),
        Some("TrainJob tjok finished training")
    );
    // The TrainJob is ours, carries our label and none of the FineTuneJob's own, and no
    // PyTorchJob was made.
    let tj = ns.api::<TrainJob>().get("tjok").await.unwrap();
    assert!(
        owned_by(&job, &tj.metadata),
        "{:?}",
        tj.metadata.owner_references
    );
    let labels = tj.labels();
    assert_eq!(labels["finetune.dev/job-name"], "tjok");
    assert!(!labels.contains_key("app.kubernetes.io/instance"));
    assert_eq!(tj.spec.runtime_ref.name, "finetune-instructlab");
    assert!(
        ns.api::<PyTorchJob>()
            .get_opt("tjok")
            .await
            .unwrap()
            .is_none()
    );
    ns.wait_for_events("tjok", &["TrainingStarted", "TrainingSucceeded"])
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_trainjob_fails_the_job_with_the_exit_code_and_log_tail() {
    let ns = TestNamespace::new("tj-fail").await;
    let _operator = Operator::start(&ns.name);
    let log = format!("{}-train.log", ns.name);
    ns.write_log(
        &log,
        &[
            "Traceback (most recent call last):",
            "ValueError: bad dataset row 7",
        ],
    );
    let spec = on_trainjob(
        "tjfail",
        json!({"sim.finetune.dev/duration": "2s", "sim.finetune.dev/exit-code": "3"}),
    )
    .nodes(1, 1)
    .set("/podTemplate/labels", json!({"sim.finetune.dev/log": log}));
    ns.create(spec).await;
    ns.eventually("the rank-0 pod exists", || async {
        !node_pods(&ns, "tjfail").await.is_empty()
    })
    .await;
    let pod = node_pods(&ns, "tjfail").await[0].name_any();
    ns.serve_log_of(&pod, &log);
    let (job, _) = ns.wait_for_phase("tjfail", Phase::Failed).await;
    let status = job.status.unwrap();
    assert_eq!(status.reason.as_deref(), Some("TrainingFailed"));
    let message = status.message.unwrap();
    assert!(
        message.starts_with("TrainJob tjfail failed: ")
            && message.contains(&format!("pod {pod} container node exited with code 3")),
        "{message}"
    );
    let failed = ns.wait_for_event("tjfail", "TrainingFailed").await;
    let note = failed.note.unwrap_or_default();
    assert!(note.ends_with("ValueError: bad dataset row 7"), "{note}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_is_read_from_the_rank0_pod_of_the_trainjob() {
    let ns = TestNamespace::new("tj-progress").await;
    let _operator = Operator::start_with(&ns.name, &["--progress-interval-seconds", "1"]);
    let log = format!("{}-train.log", ns.name);
    ns.write_log(&log, &[metrics_line(0, 1, 2.5).as_str()]);
    let spec = on_trainjob("tjprog", json!({"sim.finetune.dev/duration": "10m"})).nodes(2, 1);
    ns.create(spec).await;
    ns.eventually("both node pods run", || async {
        node_pods(&ns, "tjprog")
            .await
            .iter()
            .filter(|p| running(p))
            .count()
            == 2
    })
    .await;
    // Rank 0 is the pod of completion index 0; the other serves a log that must not be read.
    let pods = node_pods(&ns, "tjprog").await;
    let index = |p: &Pod| p.labels()["batch.kubernetes.io/job-completion-index"].clone();
    let rank0 = pods.iter().find(|p| index(p) == "0").unwrap().name_any();
    let other = pods.iter().find(|p| index(p) == "1").unwrap().name_any();
    let decoy = format!("{}-decoy.log", ns.name);
    ns.write_log(&decoy, &[metrics_line(0, 2, 9.0).as_str()]);
    ns.serve_log_of(&other, &decoy);
    ns.serve_log_of(&rank0, &log);
    ns.wait_for("tjprog", "step 1", |j| {
        j.status
            .as_ref()
            .and_then(|s| s.progress.as_ref())
            .and_then(|p| p.step)
            == Some(1)
    })
    .await;
    ns.append_log(&log, &[metrics_line(0, 2, 1.5).as_str()]);
    let (job, _) = ns
        .wait_for("tjprog", "step 2", |j| {
            j.status
                .as_ref()
                .and_then(|s| s.progress.as_ref())
                .and_then(|p| p.step)
                == Some(2)
        })
        .await;
    let progress = job.status.unwrap().progress.unwrap();
    assert_eq!(progress.loss, Some(1.5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trainjob_is_suspended_resumed_and_deleted_with_the_job() {
    let ns = TestNamespace::new("tj-suspend").await;
    let _operator = Operator::start(&ns.name);
    ns.create(on_trainjob(
        "tjs",
        json!({"sim.finetune.dev/duration": "10m"}),
    ))
    .await;
    ns.wait_for_phase("tjs", Phase::Training).await;
    ns.eventually("the node pods run", || async {
        node_pods(&ns, "tjs").await.iter().any(running)
    })
    .await;

    let set_suspend = |on: bool| {
        let jobs = ns.jobs();
        async move {
            jobs.patch(
                "tjs",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"suspend": on}})),
            )
            .await
            .unwrap();
        }
    };
    set_suspend(true).await;
    ns.wait_for_phase("tjs", Phase::Suspended).await;
    ns.eventually(
        "the TrainJob is suspended and its pods are gone",
        || async {
            let tj = ns.api::<TrainJob>().get("tjs").await.unwrap();
            tj.spec.suspend == Some(true) && node_pods(&ns, "tjs").await.is_empty()
        },
    )
    .await;
    set_suspend(false).await;
    ns.wait_for_phase("tjs", Phase::Training).await;
    ns.eventually("the node pods run again", || async {
        node_pods(&ns, "tjs").await.iter().any(running)
    })
    .await;
    ns.wait_for_events("tjs", &["TrainingStarted", "Suspended", "Resumed"])
        .await;

    ns.jobs()
        .delete("tjs", &DeleteParams::default())
        .await
        .unwrap();
    ns.eventually("the FineTuneJob and its TrainJob are gone", || async {
        ns.jobs().get_opt("tjs").await.unwrap().is_none()
            && ns.api::<TrainJob>().get_opt("tjs").await.unwrap().is_none()
    })
    .await;
    wait_gone(&ns.api::<Pod>(), "finetune.dev/job-name=tjs", "the pods").await;
    ns.wait_for_event("tjs", "Cancelled").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trainjob_past_its_deadline_fails_and_its_pods_stop() {
    // The operator's own deadline, from the moment training starts (not the TrainJob's
    // activeDeadlineSeconds, which would count time suspended by a queue).
    let ns = TestNamespace::new("tj-deadline").await;
    let _operator = Operator::start(&ns.name);
    ns.create(
        on_trainjob("tjd", json!({"sim.finetune.dev/duration": "10m"}))
            .set("/activeDeadlineSeconds", json!(5)),
    )
    .await;
    let (job, _) = ns.wait_for_phase("tjd", Phase::Failed).await;
    assert_eq!(
        job.status.as_ref().unwrap().reason.as_deref(),
        Some("DeadlineExceeded")
    );
    ns.wait_for_event("tjd", "DeadlineExceeded").await;
    // The pods are stopped: the TrainJob is suspended and its JobSet's pods go.
    let tj = ns.api::<TrainJob>().get("tjd").await.unwrap();
    assert_eq!(tj.spec.suspend, Some(true));
    assert_eq!(tj.spec.active_deadline_seconds, None);
    ns.eventually("the node pods are gone", || async {
        node_pods(&ns, "tjd").await.is_empty()
    })
    .await;
}
