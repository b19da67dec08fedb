//! The operator process as the driver measures it: memory and CPU from /proc, and waits on its
//! metrics (the jobs it knows, its reconcile counter).

use std::process::Command;
use std::time::{Duration, Instant};

use testkit::Operator;

use crate::Res;
use crate::settings::{LONG_WAIT, QUIET};

/// Reconciles the operator has run, 0 while its metrics do not answer.
pub fn reconciles(op: &Operator) -> f64 {
    op.reconciles().unwrap_or(0.0)
}

/// Jobs the operator's caches hold, live and finished (the sum of its `finetune_jobs{phase}`
/// gauges), 0 while its metrics do not answer.
pub fn jobs_known(op: &Operator) -> f64 {
    op.metrics()
        .map(|text| {
            testkit::prom::samples(&text, "finetune_jobs")
                .iter()
                .map(|(_, v)| v)
                .sum()
        })
        .unwrap_or(0.0)
}

/// Waits until the operator's caches hold all `n` jobs: a restarted operator lists them first,
/// which with thousands of jobs takes longer than [`QUIET`]. The reconcile counter cannot say
/// it: a settled job is only counted, never reconciled. Fails rather than let a restart be
/// measured before its caches are full.
pub async fn wait_known(op: &Operator, n: usize) -> Res<()> {
    let deadline = Instant::now() + LONG_WAIT;
    while jobs_known(op) < n as f64 {
        if Instant::now() > deadline {
            return Err(format!(
                "the operator knows only {} of {n} jobs after {LONG_WAIT:?}; see {}",
                jobs_known(op),
                op.log().display()
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// Waits until no reconcile has run for [`QUIET`]; returns when the last one ran.
pub async fn wait_quiet(op: &Operator) -> Instant {
    let mut last = reconciles(op);
    let mut changed = Instant::now();
    let deadline = Instant::now() + LONG_WAIT;
    while changed.elapsed() < QUIET && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = reconciles(op);
        if now != last {
            last = now;
            changed = Instant::now();
        }
    }
    changed
}

/// The operator's process id (0 once it is stopped: no figures).
pub fn pid(op: &Operator) -> u32 {
    op.pid().unwrap_or(0)
}

/// (VmHWM, VmRSS) of a process, in MiB.
pub fn memory_mib(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .map_or(0.0, |kib| kib / 1024.0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

/// CPU time (user + system) a process has used, in seconds.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let Some((_, after)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    // After the command: state is field 3; utime and stime are fields 14 and 15.
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / clock_ticks()
}

fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    })
}
