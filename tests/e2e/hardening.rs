//! Hardening on the real control plane: objects that are not ours, a queue that un-suspends, pods
//! the training operator recreates, and children the API server will not create or run.

use std::time::Duration;

use finetune_operator::api::{Phase, PyTorchJob};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::ResourceQuota;
use kube::ResourceExt;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::harness::*;

fn condition<'a>(
    job: &'a finetune_operator::api::FineTuneJob,
    type_: &str,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    job.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
}

/// Waits until the job's Stalled condition is True with `reason`; returns the job and it.
async fn wait_for_stalled(
    ns: &TestNamespace,
    name: &str,
    reason: &str,
) -> (
    finetune_operator::api::FineTuneJob,
    k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition,
) {
    let (job, _) = ns
        .wait_for(name, &format!("Stalled ({reason})"), |j| {
            condition(j, "Stalled").is_some_and(|c| c.status == "True" && c.reason == reason)
        })
        .await;
    let stalled = condition(&job, "Stalled").cloned().unwrap();
    (job, stalled)
}

/// Creates a ResourceQuota and waits until the quota controller has counted usage (admission
/// enforces it only then).
async fn quota(
    ns: &TestNamespace,
    name: &str,
    hard: serde_json::Value,
) -> kube::Api<ResourceQuota> {
    let quotas = ns.api::<ResourceQuota>();
    let quota: ResourceQuota =
        serde_json::from_value(json!({"metadata": {"name": name}, "spec": {"hard": hard}}))
            .unwrap();
    quotas.create(&PostParams::default(), &quota).await.unwrap();
    ns.eventually("the quota is in force", || async {
        quotas
            .get(name)
            .await
            .unwrap()
            .status
            .and_then(|s| s.hard)
            .is_some()
    })
    .await;
    quotas
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
async fn children_carry_block_owner_deletion() {
    let ns = TestNamespace::new("owner").await;
    let _operator = Operator::start(&ns.name);
    let mut spec = finetunejob("owned", json!({"sim.finetune.dev/duration": "1s"}));
    spec["spec"]["preprocess"] = json!({});
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
async fn a_queued_job_past_its_deadline_gives_its_gpus_back() {
    // No Kueue here: the test un-suspends the PyTorchJob as Kueue does when it admits it, and
    // tries again after the failure, as Kueue would after an eviction.
    let ns = TestNamespace::new("queued").await;
    let _operator = Operator::start(&ns.name);
    let mut spec = finetunejob("queued", json!({"sim.finetune.dev/duration": "10m"}));
    spec["spec"]["scheduling"] = json!({"queueName": "gpu"});
    spec["spec"]["activeDeadlineSeconds"] = json!(5);
    ns.create(spec).await;
    ns.wait_for("queued", "queued", |j| {
        j.status.as_ref().and_then(|s| s.reason.as_deref()) == Some("Queued")
    })
    .await;
    let ptjs = ns.api::<PyTorchJob>();
    ptjs.patch(
        "queued",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"runPolicy": {"suspend": false}}})),
    )
    .await
    .unwrap();
    let (job, _) = ns.wait_for_phase("queued", Phase::Failed).await;
    assert_eq!(
        job.status.unwrap().reason.as_deref(),
        Some("DeadlineExceeded")
    );
    // Deleted, not merely suspended: nothing is left for the queue to resume.
    wait_gone(&ptjs, "finetune.dev/job-name=queued", "the PyTorchJob").await;
    wait_gone(
        &ns.api::<k8s_openapi::api::core::v1::Pod>(),
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
    let mut spec = finetunejob(
        "recreate",
        json!({"sim.finetune.dev/duration": "1s", "sim.finetune.dev/exit-code": "137",
               "sim.finetune.dev/reason": "Error"}),
    );
    spec["spec"]["resources"] = json!({"nodes": 1, "gpusPerNode": 1});
    spec["spec"]["backoffLimit"] = json!(1);
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
async fn a_quota_that_forbids_the_child_is_reported_then_the_job_goes_on() {
    let ns = TestNamespace::new("quota").await;
    let _operator = Operator::start(&ns.name);
    let quotas = quota(&ns, "no-jobs", json!({"count/jobs.batch": "0"})).await;

    let mut spec = finetunejob("quota", json!({"sim.finetune.dev/duration": "1s"}));
    spec["spec"]["preprocess"] = json!({});
    ns.create(spec).await;
    let (job, stalled) = wait_for_stalled(&ns, "quota", "CreateForbidden").await;
    assert!(
        stalled.message.contains("exceeded quota"),
        "{}",
        stalled.message
    );
    ns.wait_for_event("quota", "PreprocessStalled").await;

    quotas
        .delete("no-jobs", &DeleteParams::default())
        .await
        .unwrap();
    let (job, _) = ns.wait_for_phase("quota", Phase::Succeeded).await;
    assert_eq!(condition(&job, "Stalled").unwrap().status, "False");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_whose_pods_are_refused_is_stalled_with_the_reason() {
    // A quota of zero pods: the Job exists, its controller cannot create a pod, and says why
    // only in a FailedCreate event.
    let ns = TestNamespace::new("nopods").await;
    let _operator = Operator::start(&ns.name);
    quota(&ns, "no-pods", json!({"pods": "0"})).await;
    let mut spec = finetunejob("nopods", json!({"sim.finetune.dev/duration": "1s"}));
    spec["spec"]["preprocess"] = json!({});
    ns.create(spec).await;
    let (job, stalled) = wait_for_stalled(&ns, "nopods", "NoPods").await;
    assert!(
        stalled
            .message
            .contains("Job nopods-preprocess has created no pod")
            && stalled.message.contains("exceeded quota"),
        "{}",
        stalled.message
    );
    assert_eq!(job.status.unwrap().phase, Some(Phase::Initializing));
    // A stalled job is not rewritten while nothing changes.
    let version = ns.jobs().get("nopods").await.unwrap().resource_version();
    tokio::time::sleep(Duration::from_secs(12)).await;
    assert_eq!(
        ns.jobs().get("nopods").await.unwrap().resource_version(),
        version
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_job_on_the_same_output_directory_fails_clearly() {
    let ns = TestNamespace::new("outdir").await;
    let _operator = Operator::start(&ns.name);
    let mut first = finetunejob("first", json!({"sim.finetune.dev/duration": "30s"}));
    first["spec"]["output"]["path"] = json!("runs/shared");
    ns.create(first).await;
    ns.wait_for_phase("first", Phase::Training).await;
    let mut second = finetunejob("second", json!({"sim.finetune.dev/duration": "1s"}));
    second["spec"]["output"]["path"] = json!("runs/shared");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restricted_namespace_is_satisfied_by_the_pod_security_context() {
    let ns = TestNamespace::new("restricted").await;
    let namespaces: kube::Api<k8s_openapi::api::core::v1::Namespace> =
        kube::Api::all(ns.client.clone());
    namespaces
        .patch(
            &ns.name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {
                "pod-security.kubernetes.io/enforce": "restricted"}}})),
        )
        .await
        .unwrap();
    let _operator = Operator::start(&ns.name);

    // Without runAsNonRoot, pod security admission refuses every pod: the job says so.
    let mut refused = finetunejob("refused", json!({"sim.finetune.dev/duration": "1s"}));
    refused["spec"]["resources"] = json!({"nodes": 1, "gpusPerNode": 1});
    ns.create(refused).await;

    // With it, the same job runs.
    let mut allowed = finetunejob("allowed", json!({"sim.finetune.dev/duration": "1s"}));
    allowed["spec"]["resources"] = json!({"nodes": 1, "gpusPerNode": 1});
    allowed["spec"]["preprocess"] = json!({});
    allowed["spec"]["podSecurityContext"] = json!({"runAsNonRoot": true, "runAsUser": 1000});
    ns.create(allowed).await;
    ns.wait_for_phase("allowed", Phase::Succeeded).await;

    let (job, stalled) = wait_for_stalled(&ns, "refused", "NoPods").await;
    assert!(
        stalled
            .message
            .contains("PyTorchJob refused has created no pod")
            && stalled.message.contains("runAsNonRoot"),
        "{}",
        stalled.message
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_no_scheduler_picks_up_are_reported() {
    let ns = TestNamespace::new("nosched").await;
    let _operator = Operator::start(&ns.name);
    let mut spec = finetunejob("nosched", json!({"sim.finetune.dev/duration": "1s"}));
    spec["spec"]["resources"] = json!({"nodes": 1, "gpusPerNode": 1});
    spec["spec"]["scheduling"] = json!({"schedulerName": "no-such-scheduler"});
    ns.create(spec).await;
    let (job, stalled) = wait_for_stalled(&ns, "nosched", "NotScheduled").await;
    assert!(
        stalled.message.contains("schedulerName"),
        "{}",
        stalled.message
    );
    ns.wait_for_event("nosched", "TrainingStalled").await;
}
