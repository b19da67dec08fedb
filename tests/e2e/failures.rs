//! Jobs that fail, and say why: a failing preprocess or training pod (exit code and log tail), a
//! deadline, with or without a queue, pods the training operator recreates past the backoff
//! limit, a pod key Kubernetes would refuse, and children that clash with what is already
//! there (an object that is not ours, another job's output directory).

use finetune_operator::api::{Phase, PyTorchJob};
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{DeleteParams, PostParams};
use serde_json::json;
use testkit::e2e::*;

/// The Warning event holds the exit code and the last lines of the served log.
async fn assert_failure_event(
    ns: &TestNamespace,
    name: &str,
    reason: &str,
    exit_code: i32,
    last_line: &str,
) {
    let event = ns.wait_for_event(name, reason).await;
    assert_eq!(event.type_.as_deref(), Some("Warning"));
    let note = event.note.as_deref().unwrap_or_default();
    assert!(
        note.contains(&format!("exited with code {exit_code}")),
        "{note}"
    );
    assert!(note.trim_end().ends_with(last_line), "{note}");
    assert!(note.len() <= 1024);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preprocess_failure_fails_with_the_exit_code_and_log_tail() {
    let ns = TestNamespace::new("prefail").await;
    let _operator = Operator::start(&ns.name);
    let log = format!("{}-pre.log", ns.name);
    ns.write_log(
        &log,
        &[
            "Processing dataset /data/train.jsonl",
            "ValueError: sample 7 has no messages",
        ],
    );
    let spec = with_preprocess(finetunejob(
        "prefail",
        json!({"sim.finetune.dev/duration": "1s", "sim.finetune.dev/exit-code": "2",
               "sim.finetune.dev/container": "preprocess"}),
    ))
    .set("/backoffLimit", json!(0))
    .set("/podTemplate/labels", json!({"sim.finetune.dev/log": log}));
    ns.create(spec).await;
    let (job, _) = ns.wait_for_phase("prefail", Phase::Failed).await;
    assert_eq!(
        job.status.as_ref().unwrap().reason.as_deref(),
        Some("PreprocessFailed")
    );
    assert_failure_event(
        &ns,
        "prefail",
        "PreprocessFailed",
        2,
        "ValueError: sample 7 has no messages",
    )
    .await;
    assert!(
        ns.api::<PyTorchJob>()
            .get_opt("prefail")
            .await
            .unwrap()
            .is_none(),
        "no training after a failed preprocess"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn training_failure_fails_with_the_exit_code_and_log_tail() {
    let ns = TestNamespace::new("trainfail").await;
    let _operator = Operator::start(&ns.name);
    let log = format!("{}-train.log", ns.name);
    ns.write_log(
        &log,
        &[
            "epoch=0, step=1, avg_loss=2.1",
            "torch.OutOfMemoryError: CUDA out of memory.",
        ],
    );
    let spec = finetunejob(
        "trainfail",
        json!({"sim.finetune.dev/duration": "2s", "sim.finetune.dev/exit-code": "1"}),
    )
    // One node: a Worker would share the routed log file, and the training operator's deletion
    // of it (cleanPodPolicy Running) would append its SIGTERM lines to the master's log.
    .nodes(1, 8)
    .set("/podTemplate/labels", json!({"sim.finetune.dev/log": log}));
    ns.create(spec).await;
    let (job, _) = ns.wait_for_phase("trainfail", Phase::Failed).await;
    assert_eq!(
        job.status.as_ref().unwrap().reason.as_deref(),
        Some("TrainingFailed")
    );
    assert_failure_event(
        &ns,
        "trainfail",
        "TrainingFailed",
        1,
        "torch.OutOfMemoryError: CUDA out of memory.",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_deadline_is_enforced_by_the_operator() {
    let ns = TestNamespace::new("deadline").await;
    let _operator = Operator::start(&ns.name);
    let spec = finetunejob("deadline", json!({"sim.finetune.dev/duration": "10m"}))
        .set("/activeDeadlineSeconds", json!(5));
    ns.create(spec).await;
    let (job, _) = ns.wait_for_phase("deadline", Phase::Failed).await;
    assert_eq!(
        job.status.as_ref().unwrap().reason.as_deref(),
        Some("DeadlineExceeded")
    );
    ns.wait_for_event("deadline", "DeadlineExceeded").await;
    // The pods are stopped: the PyTorchJob is suspended and its pods go.
    let ptj = ns.api::<PyTorchJob>().get("deadline").await.unwrap();
    assert_eq!(ptj.spec.run_policy.unwrap().suspend, Some(true));
    wait_gone(
        &ns.api::<Pod>(),
        "training.kubeflow.org/job-name=deadline",
        "the training pods",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_job_past_its_deadline_gives_its_gpus_back() {
    // Real Kueue admits it (one GPU: the quota has room), and would admit a merely suspended
    // PyTorchJob again after the failure.
    let ns = TestNamespace::new("queued").await;
    ns.create_local_queue();
    let _operator = Operator::start(&ns.name);
    let spec = finetunejob("queued", json!({"sim.finetune.dev/duration": "10m"}))
        .nodes(1, 1)
        .queue(kueue::LOCAL_QUEUE)
        .set("/activeDeadlineSeconds", json!(5));
    ns.create(spec).await;
    let ptjs = ns.api::<PyTorchJob>();
    let (job, _) = ns.wait_for_phase("queued", Phase::Failed).await;
    assert_eq!(
        job.status.unwrap().reason.as_deref(),
        Some("DeadlineExceeded")
    );
    // Deleted, not merely suspended: nothing is left for the queue to resume.
    wait_gone(&ptjs, "finetune.dev/job-name=queued", "the PyTorchJob").await;
    wait_gone(
        &ns.api::<Pod>(),
        "finetune.dev/job-name=queued",
        "the training pods",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recreated_training_pods_count_against_the_backoff_limit() {
    // Exit 137 (killed): with restartPolicy ExitCode the training operator replaces the pod by a
    // new one each time; restartCount stays 0, so only the operator's count stops it.
    let ns = TestNamespace::new("recreate").await;
    let _operator = Operator::start(&ns.name);
    let spec = finetunejob(
        "recreate",
        json!({"sim.finetune.dev/duration": "1s", "sim.finetune.dev/exit-code": "137",
               "sim.finetune.dev/reason": "Error"}),
    )
    .nodes(1, 1)
    .set("/backoffLimit", json!(1));
    ns.create(spec).await;
    let (job, _) = ns.wait_for_phase("recreate", Phase::Failed).await;
    let status = job.status.unwrap();
    let message = status.message.unwrap_or_default();
    assert!(
        message.contains("training pods failed 2 times, more than backoffLimit 1")
            && message.contains("137, 137"),
        "{message}"
    );
    assert_eq!(status.pod_failures.unwrap().count, 2);
    ns.wait_for_event("recreate", "TrainingFailed").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_kubernetes_would_refuse_on_a_pod_fails_the_job_at_once() {
    let ns = TestNamespace::new("badkey").await;
    let _operator = Operator::start(&ns.name);
    let spec = finetunejob("badkey", json!({})).pod_annotations(json!({"not a key": "x"}));
    ns.create(spec).await;
    let (job, _) = ns.wait_for_phase("badkey", Phase::Failed).await;
    let status = job.status.unwrap();
    assert_eq!(status.reason.as_deref(), Some("InvalidSpec"));
    assert!(status.message.unwrap().contains("\"not a key\""));
    assert!(
        ns.api::<PyTorchJob>()
            .get_opt("badkey")
            .await
            .unwrap()
            .is_none()
    );
    ns.wait_for_event("badkey", "InvalidSpec").await;
}

/// Another team's suspended PyTorchJob, named as our child would be.
fn foreign_pytorchjob(name: &str) -> PyTorchJob {
    serde_json::from_value(json!({
        "apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob",
        "metadata": {"name": name, "labels": {"team": "other"}},
        "spec": {"runPolicy": {"suspend": true},
                 "pytorchReplicaSpecs": {"Master": {"replicas": 1, "restartPolicy": "Never",
                     "template": {"spec": {"containers": [{"name": "pytorch", "image": "other:1"}]}}}}}
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_with_the_childs_name_that_is_not_ours_is_never_touched() {
    let ns = TestNamespace::new("foreign").await;
    let _operator = Operator::start(&ns.name);
    let ptjs = ns.api::<PyTorchJob>();
    let theirs = ptjs
        .create(&PostParams::default(), &foreign_pytorchjob("clash"))
        .await
        .unwrap();

    ns.create(finetunejob(
        "clash",
        json!({"sim.finetune.dev/duration": "2s"}),
    ))
    .await;
    let (job, _) = ns.wait_for_phase("clash", Phase::Failed).await;
    let status = job.status.clone().unwrap();
    assert_eq!(status.reason.as_deref(), Some("ChildConflict"));
    assert!(
        status.message.as_deref().unwrap().contains(
            "a PyTorchJob named clash already exists and is not owned by this FineTuneJob"
        ),
        "{status:?}"
    );
    assert!(status.pytorch_job.is_none());
    ns.wait_for_event("clash", "TrainingFailed").await;

    // Deleting the FineTuneJob leaves the other object exactly as it was.
    ns.jobs()
        .delete("clash", &DeleteParams::default())
        .await
        .unwrap();
    ns.eventually("the FineTuneJob is gone", || async {
        ns.jobs().get_opt("clash").await.unwrap().is_none()
    })
    .await;
    let after = ptjs.get("clash").await.unwrap();
    assert_eq!(after.uid(), theirs.uid());
    assert!(after.owner_references().is_empty());
    assert_eq!(after.metadata.deletion_timestamp, None);
    assert_eq!(
        after.spec.run_policy.as_ref().and_then(|r| r.suspend),
        Some(true)
    );
    assert_eq!(after.labels().get("finetune.dev/job-name"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_job_on_the_same_output_directory_fails_clearly() {
    let ns = TestNamespace::new("outdir").await;
    let _operator = Operator::start(&ns.name);
    let first = finetunejob("first", json!({"sim.finetune.dev/duration": "30s"}))
        .set("/output/path", json!("runs/shared"));
    ns.create(first).await;
    ns.wait_for_phase("first", Phase::Training).await;
    let second = finetunejob("second", json!({"sim.finetune.dev/duration": "1s"}))
        .set("/output/path", json!("runs/shared"));
    ns.create(second).await;
    let (job, _) = ns.wait_for_phase("second", Phase::Failed).await;
    let status = job.status.unwrap();
    assert_eq!(status.reason.as_deref(), Some("OutputInUse"));
    assert!(
        status
            .message
            .as_deref()
            .unwrap()
            .starts_with("FineTuneJob first writes to the same output directory"),
        "{status:?}"
    );
    assert!(status.pytorch_job.is_none());
    // The first one is not disturbed.
    assert_eq!(
        phase(&ns.jobs().get("first").await.unwrap()),
        Some(Phase::Training)
    );
}
