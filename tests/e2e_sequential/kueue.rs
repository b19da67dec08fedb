//! Real Kueue decides when a queued FineTuneJob trains: it waits while the ClusterQueue's GPU
//! quota is short, is admitted, is preempted by a job of a higher WorkloadPriorityClass, and
//! comes back. It runs alone because it needs the whole quota (`kueue::GPU_QUOTA`) to itself.

use std::time::Duration;

use finetune_operator::api::{FineTuneJob, Phase};
use finetune_operator::testing::JobFixture;
use kube::Api;
use kube::api::{ApiResource, DeleteParams, DynamicObject, GroupVersionKind};
use serde_json::json;
use testkit::e2e::*;

fn reason(job: &FineTuneJob) -> Option<&str> {
    job.status.as_ref()?.reason.as_deref()
}

fn queued(name: &str, priority: &str, nodes: u32, duration: &str) -> JobFixture {
    finetunejob(name, json!({"sim.finetune.dev/duration": duration}))
        .nodes(nodes, 8)
        .queue(kueue::LOCAL_QUEUE)
        .set("/scheduling/workloadPriorityClassName", json!(priority))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_job_waits_for_quota_is_admitted_preempted_and_comes_back() {
    waits_is_admitted_preempted_and_comes_back("kueue", "PyTorchJob").await;
}

/// The same on the TrainJob backend: Kueue's TrainJob integration (on in the local cluster with
/// Trainer) admits, preempts and re-admits the operator's TrainJobs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_trainjob_waits_for_quota_is_admitted_preempted_and_comes_back() {
    trainer_runtimes();
    waits_is_admitted_preempted_and_comes_back("kueue-tj", "TrainJob").await;
}

async fn waits_is_admitted_preempted_and_comes_back(namespace: &str, backend: &str) {
    let ns = TestNamespace::new(namespace).await;
    ns.create_local_queue();
    let _operator = Operator::start(&ns.name);
    let queued = |name, priority, nodes, duration| {
        queued(name, priority, nodes, duration).set("/backend", json!(backend))
    };

    // A blocker holds 16 of the 32 GPUs for a few seconds.
    ns.create(queued("blocker", kueue::PRIORITY_LOW, 2, "8s"))
        .await;
    ns.wait_for_phase("blocker", Phase::Training).await;

    // The job needs 24: it waits, and its phase and reason say why.
    ns.create(queued("low", kueue::PRIORITY_LOW, 3, "10m"))
        .await;
    let (job, _) = ns
        .wait_for("low", "queued by Kueue", |j| reason(j) == Some("Queued"))
        .await;
    assert_eq!(phase(&job), Some(Phase::Pending));
    assert!(
        job.status
            .unwrap()
            .message
            .unwrap()
            .contains("waits for Kueue to admit it"),
        "the message says what it waits for"
    );

    // The blocker ends: the job is admitted and trains.
    ns.wait_for_phase("blocker", Phase::Succeeded).await;
    let (job, _) = ns
        .wait_for("low", "admitted", |j| {
            phase(j) == Some(Phase::Training) && reason(j) == Some("Training")
        })
        .await;
    assert_eq!(usage(&job).attempts, 1);
    // Let the attempt run a few whole seconds (the status counts time in seconds), so that its
    // GPU time is something to check.
    tokio::time::sleep(Duration::from_secs(3)).await;

    // A job of a higher priority needs 16 GPUs: Kueue preempts the low one.
    ns.create(queued("high", kueue::PRIORITY_HIGH, 2, "10m"))
        .await;
    let (job, _) = ns
        .wait_for("low", "preempted", |j| reason(j) == Some("Preempted"))
        .await;
    assert_eq!(
        phase(&job),
        Some(Phase::Training),
        "a preemption is no failure"
    );
    assert_eq!(usage(&job).preemptions, 1);
    // Kueue's own words, from the Workload the operator may read (RBAC).
    let message = job.status.as_ref().unwrap().message.clone().unwrap();
    assert!(
        message.starts_with(&format!(
            "Kueue preempted {backend} low: Preempted to accommodate"
        )),
        "{message}"
    );
    ns.wait_for_event("low", "Preempted").await;
    ns.wait_for_phase("high", Phase::Training).await;
    // Its pods are gone: the attempt is over and its GPU time counted.
    ns.wait_for("low", "the preempted attempt to end", |j| {
        usage(j).running_since.is_none()
    })
    .await;

    // The high one goes: the low one is admitted again, as attempt 2.
    ns.jobs()
        .delete("high", &DeleteParams::default())
        .await
        .unwrap();
    let (job, _) = ns
        .wait_for("low", "admitted again", |j| {
            reason(j) == Some("Training") && usage(j).attempts == 2
        })
        .await;
    let u = usage(&job);
    assert_eq!((u.preemptions, u.disruptions), (1, 0), "{u:?}");
    // 24 GPUs for at least the 3 s the first attempt ran.
    assert!(u.gpu_seconds >= 24 * 3, "{u:?}");
    assert_eq!(u.gpu_hours, (u.gpu_seconds as f64 / 36.0).round() / 100.0);
    assert!(!failed(&job));

    // The next test needs the whole quota: the jobs go while the operator runs (it removes
    // its finalizer, their children go, and with them their Workloads, which hold quota).
    for name in ["blocker", "low"] {
        let _ = ns.jobs().delete(name, &DeleteParams::default()).await;
    }
    wait_gone(&ns.jobs(), "", "the FineTuneJobs").await;
    let workloads = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("kueue.x-k8s.io", "v1beta2", "Workload"),
        "workloads",
    );
    let workloads: Api<DynamicObject> =
        Api::namespaced_with(admin_client().await, &ns.name, &workloads);
    wait_gone(&workloads, "", "the Workloads").await;
}
