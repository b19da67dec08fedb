//! Children the cluster will not create or run: a quota that forbids the child or its pods, pod
//! security admission, a scheduler nobody runs. The job stays, Stalled with the reason, and
//! goes on once the obstacle is gone.

use std::time::Duration;

use finetune_operator::api::{FineTuneJob, Phase};
use k8s_openapi::api::core::v1::{Namespace, ResourceQuota};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;
use testkit::e2e::*;

fn condition<'a>(job: &'a FineTuneJob, type_: &str) -> Option<&'a Condition> {
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
) -> (FineTuneJob, Condition) {
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
async fn quota(ns: &TestNamespace, name: &str, hard: serde_json::Value) -> Api<ResourceQuota> {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quota_that_forbids_the_child_is_reported_then_the_job_goes_on() {
    let ns = TestNamespace::new("quota").await;
    let _operator = Operator::start(&ns.name);
    let quotas = quota(&ns, "no-jobs", json!({"count/jobs.batch": "0"})).await;

    let spec =
        finetunejob("quota", json!({"sim.finetune.dev/duration": "1s"})).preprocess(json!({}));
    ns.create(spec).await;
    let (_, stalled) = wait_for_stalled(&ns, "quota", "CreateForbidden").await;
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
    let spec =
        finetunejob("nopods", json!({"sim.finetune.dev/duration": "1s"})).preprocess(json!({}));
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
async fn a_restricted_namespace_is_satisfied_by_the_pod_security_context() {
    let ns = TestNamespace::new("restricted").await;
    let namespaces: Api<Namespace> = Api::all(ns.client.clone());
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
    let refused = finetunejob("refused", json!({"sim.finetune.dev/duration": "1s"})).nodes(1, 1);
    ns.create(refused).await;

    // With it, the same job runs.
    let allowed = finetunejob("allowed", json!({"sim.finetune.dev/duration": "1s"}))
        .nodes(1, 1)
        .preprocess(json!({}))
        .set(
            "/podSecurityContext",
            json!({"runAsNonRoot": true, "runAsUser": 1000}),
        );
    ns.create(allowed).await;
    ns.wait_for_phase("allowed", Phase::Succeeded).await;

    let (_, stalled) = wait_for_stalled(&ns, "refused", "NoPods").await;
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
    let spec = finetunejob("nosched", json!({"sim.finetune.dev/duration": "1s"}))
        .nodes(1, 1)
        .set("/scheduling", json!({"schedulerName": "no-such-scheduler"}));
    ns.create(spec).await;
    let (_, stalled) = wait_for_stalled(&ns, "nosched", "NotScheduled").await;
    assert!(
        stalled.message.contains("schedulerName"),
        "{}",
        stalled.message
    );
    ns.wait_for_event("nosched", "TrainingStalled").await;
}
