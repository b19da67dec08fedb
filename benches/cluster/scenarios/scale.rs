//! Scenarios 3 and 4: memory with thousands of finished jobs, beside the Kubeflow training
//! operator holding the same PyTorchJobs, and the cost of restarting the operator then.

use std::time::Instant;

use serde_json::{Value, json};
use testkit::Operator;

use crate::Res;
use crate::lab::Lab;
use crate::measure::{memory_mib, pid, reconciles, wait_known, wait_quiet};
use crate::settings::Settings;
use crate::stats::{reads, requests_json, round, stats, writes};
use crate::tracker::{Tracker, apply, job, succeeded};

/// Kills the operator and starts it again; measures its first pass over `jobs` jobs.
async fn restart(lab: &Lab, op: &mut Operator, jobs: usize) -> Res<Value> {
    let ns = op.namespace.clone();
    op.kill();
    let spawned = Instant::now();
    *op = lab.operator(&ns)?;
    let ready = op.ready_after();
    wait_known(op, jobs).await?;
    let last = wait_quiet(op).await;
    let requests = op.requests().unwrap_or_default();
    let (hwm, rss) = memory_mib(pid(op));
    let writes = writes(&requests);
    let reads = reads(&requests);
    say!(
        "  restart with {jobs} jobs: ready in {:.2}s, first pass done in {:.2}s, {writes} writes, {reads} reads, peak RSS {hwm:.1} MiB",
        ready.as_secs_f64(),
        (last - spawned).as_secs_f64()
    );
    Ok(json!({
        "ready_seconds": ready.as_secs_f64(),
        "first_pass_seconds": (last - spawned).as_secs_f64().max(ready.as_secs_f64()),
        "reconciles": reconciles(op),
        "writes": writes,
        "reads": reads,
        "requests": requests_json(&requests, 1.0),
        "peak_rss_mib": hwm,
        "rss_mib": rss,
    }))
}

/// Every job count of `settings.scale`, in one namespace filled step by step; `saved` gets the
/// figures so far after each job count, so that an interrupted run keeps them.
pub async fn run(
    lab: &Lab,
    settings: &Settings,
    mut saved: impl FnMut(&Value) -> Res<()>,
) -> Res<Value> {
    let ns = "bench-scale".to_string();
    lab.namespace(&ns).await?;
    let mut op = lab.operator(&ns)?;
    let tracker = Tracker::start(&lab.admin, &ns).await?;
    let mut out = serde_json::Map::new();
    let mut total = 0;
    for &target in &settings.scale {
        let t = Instant::now();
        while total < target {
            let batch = (target - total).min(1000);
            let names: Vec<String> = (total..total + batch)
                .map(|i| format!("job-{i:05}"))
                .collect();
            let jobs = names.iter().map(|name| job(name, &ns, "1s")).collect();
            apply(&lab.admin, jobs).await?;
            tracker.wait("Succeeded", &names, succeeded).await?;
            total += batch;
            say!(
                "  {total}/{target} jobs Succeeded ({}s)",
                t.elapsed().as_secs()
            );
        }
        wait_quiet(&op).await;
        let (hwm, rss) = memory_mib(pid(&op));
        let peer = lab.cluster.training_operator_pid().map(memory_mib);
        say!(
            "memory with {target} jobs: operator peak {hwm:.1} MiB (RSS {rss:.1}); training operator {}",
            peer.map_or("?".to_string(), |(h, r)| format!(
                "peak {h:.1} MiB (RSS {r:.1})"
            ))
        );
        let mut restarts = Vec::new();
        for i in 1..=settings.restarts {
            say!("restart {i}/{} with {target} jobs", settings.restarts);
            restarts.push(restart(lab, &mut op, target).await?);
        }
        let field = |k: &str| {
            restarts
                .iter()
                .filter_map(|r| r[k].as_f64())
                .collect::<Vec<_>>()
        };
        let peer_after = lab.cluster.training_operator_pid().map(memory_mib);
        out.insert(
            target.to_string(),
            json!({
                "fill_seconds": t.elapsed().as_secs_f64(),
                "operator_peak_rss_mib_while_processing": round(hwm),
                "operator_rss_mib_after_processing": round(rss),
                "operator_peak_rss_mib_after_restart": stats(&field("peak_rss_mib")),
                "operator_rss_mib_after_restart": stats(&field("rss_mib")),
                "training_operator_rss_mib": peer_after.map(|(_, r)| round(r)),
                "training_operator_peak_rss_mib": peer_after.map(|(h, _)| round(h)),
                "restart": {
                    "ready_seconds": stats(&field("ready_seconds")),
                    "first_pass_seconds": stats(&field("first_pass_seconds")),
                    "writes": stats(&field("writes")),
                    "reads": stats(&field("reads")),
                    "reconciles": stats(&field("reconciles")),
                    "requests_first_run": restarts.first().map(|r| r["requests"].clone()),
                },
            }),
        );
        saved(&Value::Object(out.clone()))?;
    }
    drop(tracker);
    drop(op);
    Ok(Value::Object(out))
}
