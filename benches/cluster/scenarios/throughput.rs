//! Scenarios 1 and 2: throughput and latency beside the limit, and the API cost per job
//! lifecycle. Operator and limit alternate, run by run, each in a fresh namespace.

use std::collections::HashMap;
use std::time::Instant;

use finetune_operator::api::FineTuneJob;
use serde_json::{Value, json};
use testkit::operator::Requests;

use super::limit;
use crate::Res;
use crate::lab::Lab;
use crate::measure::{memory_mib, pid, reconciles, wait_quiet};
use crate::settings::Settings;
use crate::stats::{delta, percentile, reads, requests_json, stats, writes};
use crate::tracker::{Tracker, apply, child_and_training, job, names, succeeded};

pub struct RunResult {
    pub seconds: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Operator runs only: its requests and the apiserver's, from creation to Succeeded.
    pub operator_requests: Option<Requests>,
    pub apiserver_requests: Option<Requests>,
    pub reconciles: Option<f64>,
    pub peak_rss_mib: Option<f64>,
}

async fn operator_run(lab: &Lab, n: usize, run: usize) -> Res<RunResult> {
    let ns = format!("bench-op-n{n}-r{run}");
    lab.namespace(&ns).await?;
    let op = lab.operator(&ns)?;
    let tracker = Tracker::start(&lab.admin, &ns).await?;
    let names = names("job", n);
    let jobs = names.iter().map(|name| job(name, &ns, "1s")).collect();
    let op_before = op.requests().unwrap_or_default();
    let reconciles_before = reconciles(&op);
    let api_before = lab.apiserver_requests().await?;

    let (seconds, latencies) = create_and_time(lab, &tracker, &names, jobs).await?;

    // API cost: on to Succeeded, then until the operator is quiet.
    tracker.wait("Succeeded", &names, succeeded).await?;
    wait_quiet(&op).await;
    let op_delta = delta(&op.requests().unwrap_or_default(), &op_before);
    let reconciles = reconciles(&op) - reconciles_before;
    let mut api_delta = delta(&lab.apiserver_requests().await?, &api_before);
    // The driver's own creates are not the operator's.
    if let Some(v) =
        api_delta.get_mut(&("POST".to_string(), "finetune.dev/finetunejobs".to_string()))
    {
        *v -= n as f64;
    }
    let (hwm, _) = memory_mib(pid(&op));
    drop(op);
    drop(tracker);
    lab.delete_namespace(&ns).await?;
    Ok(RunResult {
        seconds,
        p50_ms: percentile(&latencies, 50.0),
        p99_ms: percentile(&latencies, 99.0),
        operator_requests: Some(op_delta),
        apiserver_requests: Some(api_delta),
        reconciles: Some(reconciles),
        peak_rss_mib: Some(hwm),
    })
}

/// Creates the jobs at once; returns the seconds until every one has its PyTorchJob and phase
/// Training, and each job's milliseconds from its create returning to its PyTorchJob.
pub async fn create_and_time(
    lab: &Lab,
    tracker: &Tracker,
    names: &[String],
    jobs: Vec<FineTuneJob>,
) -> Res<(f64, Vec<f64>)> {
    let t0 = Instant::now();
    let created = apply(&lab.admin, jobs).await?;
    let end = tracker
        .wait(
            "with a PyTorchJob and phase Training",
            names,
            child_and_training,
        )
        .await?;
    Ok(((end - t0).as_secs_f64(), latencies(tracker, &created)))
}

fn latencies(tracker: &Tracker, created: &HashMap<String, Instant>) -> Vec<f64> {
    let seen = tracker.seen.lock().unwrap();
    created
        .iter()
        .filter_map(|(name, at)| {
            let child = seen.pytorch_job.get(name)?;
            Some(child.saturating_duration_since(*at).as_secs_f64() * 1000.0)
        })
        .collect()
}

/// Every size, `settings.runs` times, operator then limit: `{"throughput": ..., "api_cost": ...}`.
pub async fn run(lab: &Lab, settings: &Settings) -> Res<Value> {
    let mut out = serde_json::Map::new();
    let mut cost = serde_json::Map::new();
    for &n in &settings.sizes {
        let (mut op, mut lim) = (Vec::new(), Vec::new());
        for run in 1..=settings.runs {
            say!("throughput N={n}, run {run}/{}: operator", settings.runs);
            let r = operator_run(lab, n, run).await?;
            say!(
                "  operator: {:.2}s, p50 {:.0} ms, p99 {:.0} ms",
                r.seconds,
                r.p50_ms,
                r.p99_ms
            );
            op.push(r);
            say!("throughput N={n}, run {run}/{}: limit", settings.runs);
            let r = limit::run(lab, n, run).await?;
            say!(
                "  limit: {:.2}s, p50 {:.0} ms, p99 {:.0} ms",
                r.seconds,
                r.p50_ms,
                r.p99_ms
            );
            lim.push(r);
        }
        let secs = |v: &[RunResult]| v.iter().map(|r| r.seconds).collect::<Vec<_>>();
        let ratios: Vec<f64> = op
            .iter()
            .zip(&lim)
            .map(|(o, l)| o.seconds / l.seconds)
            .collect();
        let side = |v: &[RunResult]| {
            json!({
                "seconds": stats(&secs(v)),
                "jobs_per_second": stats(&v.iter().map(|r| n as f64 / r.seconds).collect::<Vec<_>>()),
                "p50_ms": stats(&v.iter().map(|r| r.p50_ms).collect::<Vec<_>>()),
                "p99_ms": stats(&v.iter().map(|r| r.p99_ms).collect::<Vec<_>>()),
            })
        };
        let mut operator = side(&op);
        operator["peak_rss_mib"] =
            stats(&op.iter().filter_map(|r| r.peak_rss_mib).collect::<Vec<_>>());
        out.insert(
            n.to_string(),
            json!({"operator": operator, "limit": side(&lim), "ratio": stats(&ratios)}),
        );
        // API cost per job lifecycle: the median run by total operator requests.
        let mut by_total: Vec<&RunResult> = op.iter().collect();
        by_total.sort_by(|a, b| {
            let t = |r: &RunResult| {
                r.operator_requests
                    .as_ref()
                    .map_or(0.0, |q| q.values().sum())
            };
            t(a).total_cmp(&t(b))
        });
        let median = by_total[by_total.len() / 2];
        let per_job = |r: &RunResult| {
            let q = r.operator_requests.as_ref().unwrap();
            (writes(q) / n as f64, reads(q) / n as f64)
        };
        cost.insert(
            n.to_string(),
            json!({
                "operator": requests_json(median.operator_requests.as_ref().unwrap(), n as f64),
                "apiserver": requests_json(median.apiserver_requests.as_ref().unwrap(), n as f64),
                "writes_per_job": stats(&op.iter().map(|r| per_job(r).0).collect::<Vec<_>>()),
                "reads_per_job": stats(&op.iter().map(|r| per_job(r).1).collect::<Vec<_>>()),
                "reconciles_per_job": stats(&op.iter().filter_map(|r| r.reconciles).map(|x| x / n as f64).collect::<Vec<_>>()),
            }),
        );
    }
    Ok(json!({"throughput": out, "api_cost": cost}))
}
