//! A FineTuneJob's life on the real control plane: every phase with and without preprocessing,
//! its children and their owner references, suspend and resume, cleanup once finished,
//! cancelling by deleting it, and progress read from the training log up to 100 %.

use finetune_operator::api::{FineTuneJob, Phase, PyTorchJob};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde_json::json;
use testkit::e2e::*;

fn owned_by(meta: &kube::core::ObjectMeta, job: &FineTuneJob) -> bool {
    meta.owner_references.iter().flatten().any(|o| {
        o.kind == "FineTuneJob"
            && o.name == job.name_any()
            && Some(&o.uid) == job.meta().uid.as_ref()
            && o.controller == Some(true)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_node_with_preprocessing_runs_through_every_phase() {
    let ns = TestNamespace::new("multi").await;
    let _operator = Operator::start(&ns.name);
    let recorder = PhaseRecorder::start(&ns, "multi");
    let spec = with_preprocess(finetunejob(
        "multi",
        json!({"sim.finetune.dev/duration": "3s"}),
    ))
    // Argo CD's tracking metadata must never be copied to children.
    .meta(json!({
        "labels": {"app.kubernetes.io/instance": "argo-app"},
        "annotations": {"argocd.argoproj.io/tracking-id": "app:finetune.dev/FineTuneJob:ns/multi"},
    }));
    ns.create(spec).await;

    // While training, the preprocess pod (finished) and both training pods carry our label.
    ns.wait_for_phase("multi", Phase::Training).await;
    ns.eventually(
        "the preprocess, master and worker pods are labelled",
        || async {
            let pods = ns
                .api::<Pod>()
                .list(&ListParams::default().labels("finetune.dev/job-name=multi"))
                .await
                .unwrap();
            let names: Vec<String> = pods.items.iter().map(|p| p.name_any()).collect();
            ["multi-master-0", "multi-worker-0", "multi-preprocess-"]
                .iter()
                .all(|n| names.iter().any(|m| m.starts_with(n)))
        },
    )
    .await;

    let (job, _) = ns.wait_for_phase("multi", Phase::Succeeded).await;
    // No Pending: nothing made the job wait, so its first status write was already
    // Initializing (Pending is written only when a job does wait; see the queue tests).
    assert_eq!(
        recorder.phases_until(Phase::Succeeded).await,
        [Phase::Initializing, Phase::Training, Phase::Succeeded]
    );
    let status = job.status.clone().unwrap();
    let (start, training, done) = (
        status.start_time.unwrap().0,
        status.training_start_time.unwrap().0,
        status.completion_time.unwrap().0,
    );
    assert!(
        start <= training && training <= done,
        "{start} {training} {done}"
    );
    assert_eq!(status.observed_generation, job.metadata.generation);
    assert_eq!(status.preprocess_job.as_deref(), Some("multi-preprocess"));
    assert_eq!(status.pytorch_job.as_deref(), Some("multi"));

    // Children: owned, labelled, nothing of the FineTuneJob's own metadata copied.
    let pre = ns.api::<Job>().get("multi-preprocess").await.unwrap();
    let ptj = ns.api::<PyTorchJob>().get("multi").await.unwrap();
    for meta in [&pre.metadata, &ptj.metadata] {
        assert!(owned_by(meta, &job), "{:?}", meta.owner_references);
        assert_eq!(
            meta.labels.as_ref().unwrap()["finetune.dev/job-name"],
            "multi"
        );
        assert!(
            !meta
                .labels
                .as_ref()
                .unwrap()
                .contains_key("app.kubernetes.io/instance")
        );
        assert!(
            meta.annotations
                .as_ref()
                .is_none_or(|a| !a.contains_key("argocd.argoproj.io/tracking-id"))
        );
    }
    assert_eq!(ptj.spec.pytorch_replica_specs["Worker"].replicas, Some(1));
    ns.wait_for_events(
        "multi",
        &[
            "PreprocessStarted",
            "PreprocessSucceeded",
            "TrainingStarted",
            "TrainingSucceeded",
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_node_without_preprocessing() {
    let ns = TestNamespace::new("single").await;
    let _operator = Operator::start(&ns.name);
    let recorder = PhaseRecorder::start(&ns, "single");
    let spec = finetunejob("single", json!({"sim.finetune.dev/duration": "2s"})).nodes(1, 4);
    ns.create(spec).await;
    ns.wait_for_phase("single", Phase::Succeeded).await;
    assert_eq!(
        recorder.phases_until(Phase::Succeeded).await,
        [Phase::Training, Phase::Succeeded]
    );
    let ptj = ns.api::<PyTorchJob>().get("single").await.unwrap();
    assert!(!ptj.spec.pytorch_replica_specs.contains_key("Worker"));
    assert!(
        ns.api::<Job>()
            .get_opt("single-preprocess")
            .await
            .unwrap()
            .is_none()
    );
    ns.wait_for_events("single", &["TrainingStarted", "TrainingSucceeded"])
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn children_carry_block_owner_deletion() {
    let ns = TestNamespace::new("owner").await;
    let _operator = Operator::start(&ns.name);
    let spec =
        finetunejob("owned", json!({"sim.finetune.dev/duration": "1s"})).preprocess(json!({}));
    ns.create(spec).await;
    ns.wait_for_phase("owned", Phase::Succeeded).await;
    let job = ns.jobs().get("owned").await.unwrap();
    for owners in [
        ns.api::<Job>()
            .get("owned-preprocess")
            .await
            .unwrap()
            .owner_references()
            .to_vec(),
        ns.api::<PyTorchJob>()
            .get("owned")
            .await
            .unwrap()
            .owner_references()
            .to_vec(),
    ] {
        assert_eq!(owners.len(), 1);
        assert_eq!(owners[0].uid, job.uid().unwrap());
        assert_eq!(owners[0].controller, Some(true));
        assert_eq!(owners[0].block_owner_deletion, Some(true));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspend_then_resume() {
    let ns = TestNamespace::new("suspend").await;
    let _operator = Operator::start(&ns.name);
    ns.create(finetunejob(
        "susp",
        json!({"sim.finetune.dev/duration": "8s"}),
    ))
    .await;
    ns.wait_for_phase("susp", Phase::Training).await;

    let patch = |suspend: bool| Patch::Merge(json!({"spec": {"suspend": suspend}}));
    ns.jobs()
        .patch("susp", &PatchParams::default(), &patch(true))
        .await
        .unwrap();
    ns.wait_for_phase("susp", Phase::Suspended).await;
    let ptj = ns.api::<PyTorchJob>().get("susp").await.unwrap();
    assert_eq!(ptj.spec.run_policy.unwrap().suspend, Some(true));
    wait_gone(
        &ns.api::<Pod>(),
        "training.kubeflow.org/job-name=susp",
        "the suspended pods",
    )
    .await;

    ns.jobs()
        .patch("susp", &PatchParams::default(), &patch(false))
        .await
        .unwrap();
    ns.wait_for_phase("susp", Phase::Training).await;
    ns.wait_for_phase("susp", Phase::Succeeded).await;
    ns.wait_for_events(
        "susp",
        &[
            "TrainingStarted",
            "Suspended",
            "Resumed",
            "TrainingSucceeded",
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn children_are_deleted_after_finishing_when_asked() {
    let ns = TestNamespace::new("cleanup").await;
    let _operator = Operator::start(&ns.name);
    let spec = with_preprocess(finetunejob(
        "clean",
        json!({"sim.finetune.dev/duration": "1s"}),
    ))
    .set("/cleanup", json!({"deleteChildrenAfterFinished": true}));
    ns.create(spec).await;
    ns.wait_for_phase("clean", Phase::Succeeded).await;
    ns.eventually("the children are deleted", || async {
        ns.api::<PyTorchJob>()
            .get_opt("clean")
            .await
            .unwrap()
            .is_none()
            && ns
                .api::<Job>()
                .get_opt("clean-preprocess")
                .await
                .unwrap()
                .is_none()
    })
    .await;
    let job = ns.jobs().get("clean").await.unwrap();
    assert_eq!(
        phase(&job),
        Some(Phase::Succeeded),
        "the FineTuneJob itself stays"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_training_job_cancels_it_and_removes_everything() {
    let ns = TestNamespace::new("delete").await;
    let _operator = Operator::start(&ns.name);
    let log = format!("{}-train.log", ns.name);
    ns.write_log(
        &log,
        &[
            "epoch=0, step=3, avg_loss=1.7",
            "epoch=0, step=4, avg_loss=1.6",
        ],
    );
    let spec = finetunejob("del", json!({"sim.finetune.dev/duration": "10m"}))
        .set("/podTemplate/labels", json!({"sim.finetune.dev/log": log}));
    ns.create(spec).await;
    ns.wait_for_phase("del", Phase::Training).await;
    ns.eventually("training pods run", || async {
        let pods = ns
            .api::<Pod>()
            .list(&ListParams::default().labels("training.kubeflow.org/job-name=del"))
            .await
            .unwrap();
        pods.items
            .iter()
            .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
            .count()
            == 2
    })
    .await;

    ns.jobs()
        .delete("del", &DeleteParams::default())
        .await
        .unwrap();
    ns.eventually("the FineTuneJob is gone", || async {
        ns.jobs().get_opt("del").await.unwrap().is_none()
    })
    .await;
    assert!(
        ns.api::<PyTorchJob>()
            .get_opt("del")
            .await
            .unwrap()
            .is_none()
    );
    wait_gone(&ns.api::<Pod>(), "finetune.dev/job-name=del", "the pods").await;
    let cancelled = ns.wait_for_event("del", "Cancelled").await;
    let events = ns.events("del").await;
    let count = events
        .iter()
        .filter(|e| e.reason.as_deref() == Some("Cancelled"))
        .count();
    assert_eq!(count, 1, "one Cancelled event");
    let note = cancelled.note.as_deref().unwrap();
    assert!(
        note.contains("while Training") && note.ends_with("epoch=0, step=4, avg_loss=1.6"),
        "{note}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_rises_to_100_percent_as_the_log_grows() {
    let ns = TestNamespace::new("progress").await;
    let _operator = Operator::start_with(&ns.name, &["--progress-interval-seconds", "1"]);
    let log = format!("{}-train.log", ns.name);
    ns.write_log(
        &log,
        &["[10:00:00] INFO     Starting training   main_ds.py:100"],
    );
    let spec = finetunejob("prog", json!({"sim.finetune.dev/duration": "60s"}))
        .epochs(3)
        .set("/podTemplate/labels", json!({"sim.finetune.dev/log": log}));
    ns.create(spec).await;
    ns.wait_for_phase("prog", Phase::Training).await;

    // The first epoch: kubectl shows the run part done.
    let first: Vec<String> = vec![
        metrics_line(0, 1, 2.5),
        metrics_line(0, 2, 2.1),
        "\u{1b}[93mModel state saved in: /output/prog/full_state/epoch_0\u{1b}[0m".to_string(),
    ];
    ns.append_log(&log, &first.iter().map(String::as_str).collect::<Vec<_>>());
    let columns = |row: &str| row.split_whitespace().map(String::from).collect::<Vec<_>>();
    ns.eventually("kubectl shows a third of the run done", || async {
        let out = kubectl(&["get", "ftj", "prog", "-n", &ns.name, "--no-headers"]);
        let row = columns(&String::from_utf8_lossy(&out.stdout));
        row.len() >= 5 && row[2] == "33" && row[3] == "1/3" && row[4] == "2.1"
    })
    .await;

    // The rest of the run.
    let rest: Vec<String> = vec![
        metrics_line(1, 3, 1.7),
        metrics_line(1, 4, 1.4),
        metrics_line(2, 5, 1.2),
        metrics_line(2, 6, 1.05),
        "\u{1b}[93mModel saved in /output/prog/hf_format/samples_600\u{1b}[0m".to_string(),
    ];
    ns.append_log(&log, &rest.iter().map(String::as_str).collect::<Vec<_>>());
    ns.eventually("kubectl shows the run done", || async {
        let out = kubectl(&["get", "ftj", "prog", "-n", &ns.name, "--no-headers"]);
        let row = columns(&String::from_utf8_lossy(&out.stdout));
        row.len() >= 5 && row[2] == "100" && row[3] == "3/3" && row[4] == "1.05"
    })
    .await;
    let job = ns.jobs().get("prog").await.unwrap();
    let status = job.status.unwrap();
    let progress = status.progress.unwrap();
    assert_eq!(
        (progress.step, progress.total_steps, progress.samples_seen),
        (Some(6), Some(6), Some(600))
    );
    assert!(progress.update_time.is_some());
    assert_eq!(status.checkpoints.len(), 2, "{:?}", status.checkpoints);
    let cursor = status.log_cursor.expect("a cursor");
    assert!(cursor.lines >= 1);

    // Events: every epoch end and checkpoint, once each.
    ns.eventually(
        "three EpochCompleted and two CheckpointSaved events",
        || async {
            let reasons = ns.event_reasons("prog").await;
            reasons.iter().filter(|r| *r == "EpochCompleted").count() == 3
                && reasons.iter().filter(|r| *r == "CheckpointSaved").count() == 2
        },
    )
    .await;
}
