//! What a run measures, from the `FTO_BENCH_*` variables (see the top of `main.rs`), and the
//! constants every scenario shares.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};
use testkit::repo;

/// Concurrent creates when "applying N jobs at once".
pub const APPLY_CONCURRENCY: usize = 32;
/// The operator's default controller concurrency (`--concurrency`); the limit uses the same.
pub const OPERATOR_CONCURRENCY: usize = 8;
/// How long the operator must not reconcile before a lifecycle counts as settled.
pub const QUIET: Duration = Duration::from_secs(3);
/// Upper bound for any wait: the driver always ends.
pub const LONG_WAIT: Duration = Duration::from_secs(30 * 60);

pub struct Settings {
    pub runs: usize,
    pub sizes: Vec<usize>,
    pub lifecycle_runs: usize,
    pub single_runs: usize,
    /// An older operator binary, measured as a third side ("operator, before").
    pub before_operator: Option<PathBuf>,
    pub before_runs: usize,
    pub scale: Vec<usize>,
    pub restarts: usize,
    pub log_jobs: usize,
    pub log_windows: usize,
    pub log_window: Duration,
    pub only: Option<HashSet<String>>,
    pub json: PathBuf,
    pub md: PathBuf,
    pub baseline: Option<PathBuf>,
    pub command: String,
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

fn env_list(name: &str, default: &str) -> Vec<usize> {
    std::env::var(name)
        .unwrap_or_else(|_| default.to_string())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect()
}

impl Settings {
    pub fn from_env() -> Self {
        let root = repo();
        Self {
            runs: env_or("FTO_BENCH_RUNS", 3),
            sizes: env_list("FTO_BENCH_SIZES", "100,1000"),
            lifecycle_runs: env_or("FTO_BENCH_LIFECYCLE_RUNS", 1),
            single_runs: env_or("FTO_BENCH_SINGLE_RUNS", 20),
            before_operator: std::env::var("FTO_BENCH_BEFORE_OPERATOR")
                .ok()
                .filter(|s| !s.is_empty())
                .map(|p| root.join(p)),
            before_runs: env_or("FTO_BENCH_BEFORE_RUNS", 1),
            scale: env_list("FTO_BENCH_SCALE", "1000,10000"),
            restarts: env_or("FTO_BENCH_RESTARTS", 3),
            log_jobs: env_or("FTO_BENCH_LOG_JOBS", 100),
            log_windows: env_or("FTO_BENCH_LOG_WINDOWS", 3),
            log_window: Duration::from_secs(env_or("FTO_BENCH_LOG_WINDOW_SECONDS", 30)),
            only: std::env::var("FTO_BENCH_ONLY")
                .ok()
                .filter(|s| !s.is_empty())
                .map(|s| s.split(',').map(|x| x.trim().to_string()).collect()),
            json: root.join(env_or(
                "FTO_BENCH_JSON",
                "benches/results/results.json".to_string(),
            )),
            md: root.join(env_or("FTO_BENCH_MD", "BENCHMARKS.md".to_string())),
            baseline: std::env::var("FTO_BENCH_BASELINE")
                .ok()
                .filter(|s| !s.is_empty())
                .map(|p| root.join(p)),
            command: std::env::var("FTO_BENCH_COMMAND")
                .unwrap_or_else(|_| "cargo bench --bench cluster".to_string()),
        }
    }

    /// What the JSON file records of the settings.
    pub fn to_json(&self) -> Value {
        json!({"runs": self.runs, "sizes": self.sizes, "scale": self.scale,
               "lifecycle_runs": self.lifecycle_runs, "single_runs": self.single_runs,
               // The revision scripts/bench.sh built it from (a path would name this machine).
               "before_operator": self.before_operator.as_ref().map(|_| {
                   std::env::var("FTO_BENCH_BEFORE_REV").unwrap_or_else(|_| "given".to_string())
               }),
               "before_runs": self.before_runs,
               "restarts": self.restarts, "log_jobs": self.log_jobs,
               "log_windows": self.log_windows,
               "apply_concurrency": APPLY_CONCURRENCY, "operator_concurrency": OPERATOR_CONCURRENCY})
    }

    pub fn wants(&self, scenario: &str) -> bool {
        self.only.as_ref().is_none_or(|o| o.contains(scenario))
    }
}
