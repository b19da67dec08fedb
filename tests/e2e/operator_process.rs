//! The operator as a process: killed mid-run and started again, idle once every job finished,
//! two replicas with leader election, a graceful stop on SIGTERM, and its per-job metrics.

use std::collections::BTreeMap;
use std::time::Duration;

use finetune_operator::api::{Phase, PyTorchJob};
use k8s_openapi::api::batch::v1::Job;
use kube::api::{DeleteParams, ListParams};
use serde_json::json;
use testkit::e2e::*;
use testkit::prom;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_operator_restarts_without_duplicates() {
    let ns = TestNamespace::new("restart").await;
    let mut operator = Operator::start(&ns.name);
    ns.create(with_preprocess(finetunejob(
        "rs",
        json!({"sim.finetune.dev/duration": "6s"}),
    )))
    .await;
    ns.wait_for_phase("rs", Phase::Training).await;
    // Killed mid-training, once the start of training has been announced. (Dying between a
    // status write and its event loses that one event rather than repeating it.)
    ns.wait_for_event("rs", "TrainingStarted").await;
    operator.kill();
    tokio::time::sleep(Duration::from_secs(2)).await;
    operator.restart().expect("restart the operator");
    ns.wait_for_phase("rs", Phase::Succeeded).await;
    ns.wait_for_event("rs", "TrainingSucceeded").await;

    let jobs = ns
        .api::<Job>()
        .list(&ListParams::default().labels("finetune.dev/job-name=rs"))
        .await
        .unwrap();
    let ptjs = ns
        .api::<PyTorchJob>()
        .list(&ListParams::default().labels("finetune.dev/job-name=rs"))
        .await
        .unwrap();
    assert_eq!(
        (jobs.items.len(), ptjs.items.len()),
        (1, 1),
        "no duplicate children"
    );
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for e in ns.events("rs").await {
        *counts.entry(e.reason.unwrap_or_default()).or_default() +=
            e.series.map_or(1, |s| s.count as usize);
    }
    assert!(
        counts.values().all(|n| *n == 1),
        "repeated events: {counts:?}"
    );
    for reason in [
        "PreprocessStarted",
        "PreprocessSucceeded",
        "TrainingStarted",
        "TrainingSucceeded",
    ] {
        assert!(counts.contains_key(reason), "{reason} missing: {counts:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_jobs_cost_no_writes_in_steady_state() {
    let ns = TestNamespace::new("steady").await;
    let operator = Operator::start(&ns.name);
    for name in ["s1", "s2", "s3"] {
        ns.create(finetunejob(
            name,
            json!({"sim.finetune.dev/duration": "1s"}),
        ))
        .await;
    }
    ns.create(finetunejob(
        "s4",
        json!({"sim.finetune.dev/duration": "1s", "sim.finetune.dev/exit-code": "3"}),
    ))
    .await;
    for name in ["s1", "s2", "s3"] {
        ns.wait_for_phase(name, Phase::Succeeded).await;
    }
    ns.wait_for_phase("s4", Phase::Failed).await;
    // Let the last watch events settle, then nothing may be written for 30 s.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = operator.write_requests().expect("the operator's metrics");
    assert!(before > 0.0, "the metric counts writes");
    tokio::time::sleep(Duration::from_secs(30)).await;
    let after = operator.write_requests().expect("the operator's metrics");
    assert_eq!(
        before,
        after,
        "writes in steady state:\n{}",
        operator.metrics().expect("the operator's metrics")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_leader_election_one_replica_acts_and_another_takes_over() {
    let ns = TestNamespace::new("leader").await;
    let flags = ["--leader-elect", "--lease-namespace", "finetune-system"];
    let mut first = Operator::start_with(&ns.name, &flags);
    let first_pid = first.pid().expect("running").to_string();
    // Let the first replica take the lease (a lease left by an earlier run expires in 30 s).
    ns.eventually("a replica holds the lease", || async {
        let out = kubectl(&[
            "get",
            "lease",
            "finetune-operator-leader",
            "-n",
            "finetune-system",
            "-o",
            "jsonpath={.spec.holderIdentity}",
        ]);
        String::from_utf8_lossy(&out.stdout).ends_with(&first_pid)
    })
    .await;
    let second = Operator::start_with(&ns.name, &flags);

    ns.create(finetunejob(
        "one",
        json!({"sim.finetune.dev/duration": "1s"}),
    ))
    .await;
    ns.wait_for_phase("one", Phase::Succeeded).await;
    let reconciles = |op: &Operator| op.reconciles().expect("the operator's metrics");
    assert!(reconciles(&first) > 0.0, "the leader reconciles");
    assert_eq!(reconciles(&second), 0.0, "the follower only waits");

    // The leader dies without releasing the lease: the follower takes over once it expires.
    first.kill();
    ns.create(finetunejob(
        "two",
        json!({"sim.finetune.dev/duration": "1s"}),
    ))
    .await;
    ns.wait_for_phase("two", Phase::Succeeded).await;
    assert!(reconciles(&second) > 0.0, "the new leader reconciles");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_the_operator_gracefully() {
    let ns = TestNamespace::new("sigterm").await;
    let mut operator = Operator::start(&ns.name);
    ns.create(finetunejob(
        "term",
        json!({"sim.finetune.dev/duration": "1s"}),
    ))
    .await;
    ns.wait_for_phase("term", Phase::Succeeded).await;
    let status = operator.terminate().expect("the operator stops on SIGTERM");
    assert!(status.success(), "exit status {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_job_metrics_follow_a_job_and_go_with_it() {
    let ns = TestNamespace::new("jobmetrics").await;
    let operator = Operator::start_with(&ns.name, &["--per-job-metrics"]);
    ns.create(finetunejob(
        "pm",
        json!({"sim.finetune.dev/duration": "1s"}),
    ))
    .await;
    ns.wait_for_phase("pm", Phase::Succeeded).await;
    let succeeded = |text: &str, metric: &str| {
        prom::samples(text, metric)
            .iter()
            .find(|(labels, _)| labels["phase"] == "Succeeded")
            .map(|(_, value)| *value)
    };
    // The metrics read the controller's cache, which follows the watch a moment later.
    ns.eventually("/metrics shows pm Succeeded", || async {
        let text = operator.metrics().expect("the operator's metrics");
        succeeded(&text, "finetune_jobs") == Some(1.0)
            && prom::samples(&text, "finetune_job_phase")
                .iter()
                .any(|(labels, value)| {
                    labels["namespace"] == ns.name
                        && labels["name"] == "pm"
                        && labels["phase"] == "Succeeded"
                        && *value == 1.0
                })
    })
    .await;

    ns.jobs()
        .delete("pm", &DeleteParams::default())
        .await
        .unwrap();
    ns.eventually("pm has no series left", || async {
        let text = operator.metrics().expect("the operator's metrics");
        succeeded(&text, "finetune_jobs") == Some(0.0)
            && !text
                .lines()
                .any(|l| l.starts_with("finetune_job_") && l.contains("name=\"pm\""))
    })
    .await;
}
