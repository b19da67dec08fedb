//! The limit the operator's throughput is measured against: a minimal controller with the same
//! kube client library, the same client settings (the operator's kubeconfig and ServiceAccount,
//! kube's defaults) and the same concurrency. It watches the namespace's FineTuneJobs and, once
//! per job, applies exactly the PyTorchJob the operator would build and writes exactly the
//! Training status the operator would write.

use std::collections::HashSet;
use std::time::Duration;

use finetune_operator::api::{FineTuneJob, PyTorchJob};
use finetune_operator::children::build_pytorch_job;
use finetune_operator::names::FIELD_MANAGER;
use finetune_operator::status::{self, Lookup, Observed};
use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;

use super::throughput::{RunResult, START_PATH_DURATION, apiserver_delta, create_and_time};
use crate::Res;
use crate::lab::Lab;
use crate::settings::OPERATOR_CONCURRENCY;
use crate::stats::percentile;
use crate::tracker::{Tracker, job, names};

fn now() -> Time {
    let ts = jiff::Timestamp::now();
    Time(jiff::Timestamp::from_second(ts.as_second()).expect("a current timestamp"))
}

/// The minimal controller: handles the first `n` FineTuneJobs it sees, then returns.
pub async fn limit_controller(client: Client, namespace: String, n: usize) -> Res<()> {
    let jobs: Api<FineTuneJob> = Api::namespaced(client.clone(), &namespace);
    let children: Api<PyTorchJob> = Api::namespaced(client.clone(), &namespace);
    let mut handled = HashSet::new();
    let stream = watcher(jobs.clone(), watcher::Config::default())
        .default_backoff()
        .applied_objects()
        .filter_map(|r| async move { r.ok() })
        .filter(move |j| std::future::ready(handled.insert(j.name_any())))
        .take(n);
    let params = PatchParams::apply(FIELD_MANAGER).force();
    stream
        .for_each_concurrent(OPERATOR_CONCURRENCY, |job| {
            let (jobs, children, params) = (&jobs, &children, &params);
            async move {
                let name = job.name_any();
                let child = build_pytorch_job(&job).expect("a buildable job");
                let mut current = job.clone();
                let at = now();
                current.status = Some(status::accepted(&current, &at));
                let decision = status::decide(
                    &current,
                    &Observed::new(at, Lookup::Skipped, Lookup::Absent),
                );
                let body = json!({
                    "apiVersion": FineTuneJob::api_version(&()),
                    "kind": FineTuneJob::kind(&()),
                    "status": decision.status,
                });
                for attempt in 0..5 {
                    let result = async {
                        children.patch(&name, params, &Patch::Apply(&child)).await?;
                        jobs.patch_status(&name, params, &Patch::Apply(&body))
                            .await?;
                        Ok::<_, kube::Error>(())
                    }
                    .await;
                    match result {
                        Ok(()) => return,
                        Err(e) if attempt < 4 => {
                            say!("  limit: {name}: {e}; retrying");
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                        Err(e) => say!("  limit: {name}: {e}; giving up"),
                    }
                }
            }
        })
        .await;
    Ok(())
}

/// One limit run of `n` jobs in a fresh namespace; their pods run as long as the operator's in
/// the start-path runs. The apiserver's requests are counted until every job is in Training.
pub async fn run(lab: &Lab, n: usize, run: usize) -> Res<RunResult> {
    let ns = format!("bench-limit-n{n}-r{run}");
    lab.namespace(&ns).await?;
    let client = lab.cluster.operator_client().await?;
    let tracker = Tracker::start(&lab.admin, &ns).await?;
    let limit = tokio::spawn(limit_controller(client, ns.clone(), n));
    // Let its watch start, as the operator's has by the time it is ready.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let names = names("job", n);
    lab.quiet_logs(&ns, &names)?;
    let jobs = names
        .iter()
        .map(|name| job(name, &ns, START_PATH_DURATION))
        .collect();
    let api_before = lab.apiserver_requests().await?;

    let (seconds, latencies) = create_and_time(lab, &tracker, &names, jobs).await?;
    let api_delta = apiserver_delta(lab, &api_before, n).await?;
    limit.await??;
    drop(tracker);
    lab.delete_namespace(&ns).await?;
    Ok(RunResult {
        seconds,
        p50_ms: percentile(&latencies, 50.0),
        p99_ms: percentile(&latencies, 99.0),
        succeeded_seconds: None,
        operator_requests: None,
        apiserver_requests: Some(api_delta),
        reconciles: None,
        peak_rss_mib: None,
    })
}
