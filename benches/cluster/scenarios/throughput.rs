//! Scenarios 1 and 2: the start path beside the limit, and its API cost. N jobs whose pods run
//! for an hour, so that the window from the first create to every job in Training holds the
//! start path alone (finalizer, PyTorchJob, Training status, TrainingStarted event) and none of
//! the later lifecycle. Operator and limit (and, when given, the older operator) alternate, run
//! by run, each in a fresh namespace.

use std::collections::HashMap;
use std::path::Path;
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

/// How long kwok runs the pods of a start-path run: longer than any run.
pub const START_PATH_DURATION: &str = "1h";

pub struct RunResult {
    pub seconds: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Lifecycle runs only: from the first create to every job Succeeded.
    pub succeeded_seconds: Option<f64>,
    /// The operator's requests (operator runs only) and the apiserver's, over the run's window.
    pub operator_requests: Option<Requests>,
    pub apiserver_requests: Option<Requests>,
    pub reconciles: Option<f64>,
    pub peak_rss_mib: Option<f64>,
}

/// The apiserver's requests since `before`, less the driver's own `n` creates.
pub async fn apiserver_delta(lab: &Lab, before: &Requests, n: usize) -> Res<Requests> {
    let mut d = delta(&lab.apiserver_requests().await?, before);
    if let Some(v) = d.get_mut(&("POST".to_string(), "finetune.dev/finetunejobs".to_string())) {
        *v -= n as f64;
    }
    Ok(d)
}

/// One operator run of `n` jobs in the fresh namespace `ns`, with the operator `binary`. The
/// window ends once every job is in Training, or, with `lifecycle`, once every job has
/// Succeeded and the operator has been quiet for a while; requests are counted over it.
pub async fn operator_run(
    lab: &Lab,
    binary: &Path,
    ns: &str,
    n: usize,
    lifecycle: bool,
) -> Res<RunResult> {
    lab.namespace(ns).await?;
    let op = lab.operator_from(binary, ns)?;
    let tracker = Tracker::start(&lab.admin, ns).await?;
    let names = names("job", n);
    let duration = if lifecycle { "1s" } else { START_PATH_DURATION };
    if !lifecycle {
        lab.quiet_logs(ns, &names)?;
    }
    let jobs = names.iter().map(|name| job(name, ns, duration)).collect();
    let op_before = op.requests().unwrap_or_default();
    let reconciles_before = reconciles(&op);
    let api_before = lab.apiserver_requests().await?;

    let t0 = Instant::now();
    let (seconds, latencies) = create_and_time(lab, &tracker, &names, jobs).await?;
    let succeeded_seconds = if lifecycle {
        let end = tracker.wait("Succeeded", &names, succeeded).await?;
        wait_quiet(&op).await;
        Some((end - t0).as_secs_f64())
    } else {
        None
    };
    let op_delta = delta(&op.requests().unwrap_or_default(), &op_before);
    let reconciles = reconciles(&op) - reconciles_before;
    let api_delta = apiserver_delta(lab, &api_before, n).await?;
    let (hwm, _) = memory_mib(pid(&op));
    drop(op);
    drop(tracker);
    lab.delete_namespace(ns).await?;
    Ok(RunResult {
        seconds,
        p50_ms: percentile(&latencies, 50.0),
        p99_ms: percentile(&latencies, 99.0),
        succeeded_seconds,
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

fn say_run(who: &str, r: &RunResult) {
    say!(
        "  {who}: {:.2}s, p50 {:.0} ms, p99 {:.0} ms{}",
        r.seconds,
        r.p50_ms,
        r.p99_ms,
        r.operator_requests
            .as_ref()
            .map_or(String::new(), |q| format!(
                ", {} operator writes",
                writes(q)
            ))
    );
}

/// Times and latencies of one side's runs.
pub fn side(n: usize, v: &[RunResult]) -> Value {
    let mut out = json!({
        "seconds": stats(&v.iter().map(|r| r.seconds).collect::<Vec<_>>()),
        "jobs_per_second": stats(&v.iter().map(|r| n as f64 / r.seconds).collect::<Vec<_>>()),
        "p50_ms": stats(&v.iter().map(|r| r.p50_ms).collect::<Vec<_>>()),
        "p99_ms": stats(&v.iter().map(|r| r.p99_ms).collect::<Vec<_>>()),
    });
    let rss: Vec<f64> = v.iter().filter_map(|r| r.peak_rss_mib).collect();
    if !rss.is_empty() {
        out["peak_rss_mib"] = stats(&rss);
    }
    let to_succeeded: Vec<f64> = v.iter().filter_map(|r| r.succeeded_seconds).collect();
    if !to_succeeded.is_empty() {
        out["succeeded_seconds"] = stats(&to_succeeded);
    }
    out
}

/// Requests per job of one side's runs: the operator's and the apiserver's of the median run
/// by total requests, and writes, reads and reconciles per job of every run.
pub fn cost(n: usize, runs: &[RunResult]) -> Value {
    let total = |r: &RunResult| {
        r.operator_requests
            .as_ref()
            .or(r.apiserver_requests.as_ref())
            .map_or(0.0, |q| q.values().sum())
    };
    let mut by_total: Vec<&RunResult> = runs.iter().collect();
    by_total.sort_by(|a, b| total(a).total_cmp(&total(b)));
    let Some(median) = by_total.get(by_total.len() / 2) else {
        return Value::Null;
    };
    let per_job = |f: fn(&Requests) -> f64| {
        stats(
            &runs
                .iter()
                .filter_map(|r| r.operator_requests.as_ref())
                .map(|q| f(q) / n as f64)
                .collect::<Vec<_>>(),
        )
    };
    json!({
        "operator": median.operator_requests.as_ref().map(|q| requests_json(q, n as f64)),
        "apiserver": median.apiserver_requests.as_ref().map(|q| requests_json(q, n as f64)),
        "writes_per_job": per_job(writes),
        "reads_per_job": per_job(reads),
        "reconciles_per_job": stats(&runs.iter().filter_map(|r| r.reconciles).map(|x| x / n as f64).collect::<Vec<_>>()),
    })
}

/// Every size, `settings.runs` times, operator then limit (then the older operator, for its
/// first `settings.before_runs` runs): `{"start_path": ..., "start_path_cost": ...}`.
pub async fn run(lab: &Lab, settings: &Settings) -> Res<Value> {
    let mut out = serde_json::Map::new();
    let mut cost_out = serde_json::Map::new();
    for &n in &settings.sizes {
        let (mut op, mut lim, mut before) = (Vec::new(), Vec::new(), Vec::new());
        for run in 1..=settings.runs {
            say!("start path N={n}, run {run}/{}: operator", settings.runs);
            let ns = format!("bench-op-n{n}-r{run}");
            let r = operator_run(lab, &lab.operator_bin, &ns, n, false).await?;
            say_run("operator", &r);
            op.push(r);
            say!("start path N={n}, run {run}/{}: limit", settings.runs);
            let r = limit::run(lab, n, run).await?;
            say_run("limit", &r);
            lim.push(r);
            if let Some(bin) = &settings.before_operator
                && run <= settings.before_runs
            {
                say!("start path N={n}, run {run}: operator, before");
                let ns = format!("bench-before-n{n}-r{run}");
                let r = operator_run(lab, bin, &ns, n, false).await?;
                say_run("operator, before", &r);
                before.push(r);
            }
        }
        let ratios: Vec<f64> = op
            .iter()
            .zip(&lim)
            .map(|(o, l)| o.seconds / l.seconds)
            .collect();
        let mut entry =
            json!({"operator": side(n, &op), "limit": side(n, &lim), "ratio": stats(&ratios)});
        let mut c = cost(n, &op);
        c["limit"] = cost(n, &lim);
        if !before.is_empty() {
            // Each older run against the limit run it followed.
            let ratios: Vec<f64> = before
                .iter()
                .zip(&lim)
                .map(|(o, l)| o.seconds / l.seconds)
                .collect();
            entry["operator_before"] = side(n, &before);
            entry["before_ratio"] = stats(&ratios);
            c["before"] = cost(n, &before);
        }
        out.insert(n.to_string(), entry);
        cost_out.insert(n.to_string(), c);
    }
    Ok(json!({"start_path": out, "start_path_cost": cost_out}))
}
