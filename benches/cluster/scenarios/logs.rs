//! Scenario 5: following training logs. Jobs in Training whose rank-0 logs grow by one
//! InstructLab v0.12 step every 2 s; the operator's CPU and requests over a few windows, and the
//! lag from a step's append to the job's status showing it.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use finetune_operator::api::FineTuneJob;
use finetune_operator::names::master_pod_name;
use kube::Api;
use kube::api::ListParams;
use serde_json::{Value, json};
use testkit::operator::is_write;
use testkit::pod_logs;

use crate::Res;
use crate::lab::Lab;
use crate::measure::{cpu_seconds, memory_mib, pid};
use crate::settings::Settings;
use crate::stats::{delta, round, spread, stats, sum_where};
use crate::tracker::{Tracker, apply, child_and_training, job, names};

/// Lines of one training step (see `step_lines`), and how often the driver appends one.
const STEP_LINES: usize = 3;
const STEP_INTERVAL: Duration = Duration::from_secs(2);
/// Steps appended this close to the end of the windows are not counted in the progress lag:
/// the operator reads a log at most every 10 s, so they may not have been read yet.
const LAG_TAIL: Duration = Duration::from_secs(15);

/// One training step of an InstructLab v0.12 rank-0 log, as Rich prints it at COLUMNS=512 (the
/// operator's pods set it): the per-rank loss lines and the metrics line, padded.
fn step_lines(step: u64) -> Vec<String> {
    let epoch = step / 500;
    let loss = 2.45 / (1.0 + step as f64 / 50.0);
    let clock = jiff::Zoned::now().strftime("%H:%M:%S").to_string();
    let pad = |s: String| format!("{s:<240}");
    vec![
        pad(format!(
            "[{clock}] INFO     Epoch: {epoch}, Step: {step}, Rank: 0, loss = {loss:.6}, grad_accum_steps = 1"
        )),
        pad(format!(
            "[{clock}] INFO     Epoch: {epoch}, Step: {step}, Rank: 1, loss = {loss:.6}, grad_accum_steps = 1"
        )),
        pad(format!(
            "           INFO     epoch={epoch}, step={step}, rank=0, overall_throughput=46.283, lr=2.00e-05, \
             cuda_mem_allocated=14.813, cuda_malloc_retries=0, num_loss_counted_tokens=63488, \
             num_tokens_rank0=37200, batch_size=124, num_minibatches=2, avg_loss={loss:.3}, \
             samples_seen={}, gradnorm=0.813, total_samples=62000, num_epoch_steps=500",
            step * 124
        )),
    ]
}

fn append(path: &Path, lines: &[String]) -> std::io::Result<()> {
    pod_logs::append(path, &lines.iter().map(String::as_str).collect::<Vec<_>>())
}

pub async fn run(lab: &Lab, settings: &Settings) -> Res<Value> {
    let n = settings.log_jobs;
    let ns = "bench-logs".to_string();
    say!("log following: {n} jobs in Training, one step every 2 s each");
    lab.namespace(&ns).await?;
    let names = names("log", n);
    let files: Vec<PathBuf> = names
        .iter()
        .map(|name| lab.cluster.pod_logs.join(format!("bench-{name}.log")))
        .collect();
    // kwok serves each master pod's log from its file, from the pod's first second.
    let mut pods = Vec::new();
    for (name, file) in names.iter().zip(&files) {
        std::fs::write(file, "")?;
        append(file, &["[rank0]: bench: training starts".to_string()])?;
        pods.push((master_pod_name(name), file.clone()));
    }
    lab.cluster.serve_logs(&ns, &pods)?;

    let op = lab.operator(&ns)?;
    let tracker = Tracker::start(&lab.admin, &ns).await?;
    let jobs = names.iter().map(|name| job(name, &ns, "2h")).collect();
    apply(&lab.admin, jobs).await?;
    tracker
        .wait("in Training", &names, child_and_training)
        .await?;

    let stop = Arc::new(AtomicBool::new(false));
    // Each step, and when it had been appended to every log.
    let appended: Arc<Mutex<Vec<(u64, Instant)>>> = Arc::default();
    let appender = {
        let (stop, files, appended) = (stop.clone(), files.clone(), appended.clone());
        tokio::task::spawn_blocking(move || {
            let mut step = 1;
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let lines = step_lines(step);
                for f in &files {
                    let _ = append(f, &lines);
                }
                appended.lock().unwrap().push((step, Instant::now()));
                step += 1;
                std::thread::sleep(STEP_INTERVAL.saturating_sub(t.elapsed()));
            }
        })
    };
    // Warm up: every job's log has been read at least once.
    tokio::time::sleep(Duration::from_secs(20)).await;
    let requests = || op.requests().unwrap_or_default();
    let (mut cpu, mut rps, mut wps, mut logs_ps) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let windows_start = Instant::now();
    for w in 1..=settings.log_windows {
        let (c0, r0, t0) = (cpu_seconds(pid(&op)), requests(), Instant::now());
        tokio::time::sleep(settings.log_window).await;
        let (c1, r1, secs) = (
            cpu_seconds(pid(&op)),
            requests(),
            t0.elapsed().as_secs_f64(),
        );
        let d = delta(&r1, &r0);
        cpu.push((c1 - c0) / secs * 100.0);
        rps.push(d.values().sum::<f64>() / secs);
        wps.push(sum_where(&d, |v, _| is_write(v)) / secs);
        logs_ps.push(sum_where(&d, |_, r| r == "pods/log") / secs);
        say!(
            "  window {w}: CPU {:.1}% of a core, {:.1} requests/s ({:.1} writes/s, {:.1} log reads/s)",
            cpu[cpu.len() - 1],
            rps[rps.len() - 1],
            wps[wps.len() - 1],
            logs_ps[logs_ps.len() - 1]
        );
    }
    let windows_end = Instant::now();
    stop.store(true, Ordering::Relaxed);
    appender.await?;
    let lag = progress_lag(
        &tracker,
        &names,
        &appended.lock().unwrap(),
        windows_start,
        windows_end,
    );
    let progressed = {
        let jobs: Api<FineTuneJob> = Api::namespaced(lab.admin.clone(), &ns);
        jobs.list(&ListParams::default())
            .await?
            .items
            .iter()
            .filter(|j| {
                j.status
                    .as_ref()
                    .and_then(|s| s.progress.as_ref())
                    .is_some_and(|p| p.step.unwrap_or(0) > 0)
            })
            .count()
    };
    // The operator's whole CPU (reads, parsing, status writes, events) per log line served.
    let lines_per_second = (n * STEP_LINES) as f64 / STEP_INTERVAL.as_secs_f64();
    let per_1000_lines: Vec<f64> = cpu
        .iter()
        .map(|percent| percent * 10.0 / lines_per_second * 1000.0)
        .collect();
    let (hwm, rss) = memory_mib(pid(&op));
    drop(op);
    drop(tracker);
    lab.delete_namespace(&ns).await?;
    for f in files {
        let _ = std::fs::remove_file(f);
    }
    Ok(json!({
        "jobs": n,
        "window_seconds": settings.log_window.as_secs(),
        "cpu_percent_of_one_core": stats(&cpu),
        "log_lines_per_second": round(lines_per_second),
        "cpu_ms_per_1000_log_lines": stats(&per_1000_lines),
        "requests_per_second": stats(&rps),
        "writes_per_second": stats(&wps),
        "log_reads_per_second": stats(&logs_ps),
        "jobs_with_progress": progressed,
        "rss_mib": round(rss),
        "peak_rss_mib": round(hwm),
        "progress_lag_seconds": lag,
    }))
}

/// Over every (job, step) appended during the windows, except in their last [`LAG_TAIL`]: the
/// seconds from the step's append to the job's `status.progress.step` first seen at or above it.
fn progress_lag(
    tracker: &Tracker,
    names: &[String],
    appended: &[(u64, Instant)],
    start: Instant,
    end: Instant,
) -> Value {
    let cutoff = end.checked_sub(LAG_TAIL).unwrap_or(start);
    let seen = tracker.seen.lock().unwrap();
    let (mut lags, mut unseen) = (Vec::new(), 0);
    for &(step, at) in appended
        .iter()
        .filter(|(_, at)| *at >= start && *at < cutoff)
    {
        for name in names {
            match seen.step_seen(name, step as i64) {
                Some(shown) => lags.push(shown.saturating_duration_since(at).as_secs_f64()),
                None => unseen += 1,
            }
        }
    }
    let lag = spread(&lags);
    say!(
        "  progress lag: p50 {} s, p99 {} s, max {} s over {} (job, step) pairs ({unseen} not shown by the end)",
        lag["p50"],
        lag["p99"],
        lag["max"],
        lags.len()
    );
    json!({
        "p50": lag["p50"], "p99": lag["p99"], "min": lag["min"], "max": lag["max"],
        "pairs": lags.len(), "unseen": unseen, "tail_dropped_seconds": LAG_TAIL.as_secs(),
    })
}
