//! Benchmarks of the operator on the local control plane (tests/cluster/): latency of single
//! applies and throughput of the start path beside "the limit", API cost per job, the whole
//! lifecycle, memory beside the Kubeflow training operator, restart cost, and the CPU cost and
//! progress lag of following training logs.
//!
//! Nothing here asserts a time: it measures and reports. `make bench` (scripts/bench.sh) builds
//! the release operator, starts the cluster and runs this driver, which writes a JSON file of the
//! figures and BENCHMARKS.md. Run it by hand against a running cluster with
//! `cargo bench --bench cluster` and the variables below.
//!
//! Scenarios, in the order they run: `single` (single applies on an idle cluster), `throughput`
//! (the start path: N jobs whose pods run 1 h, until every one is in Training, beside the limit),
//! `lifecycle` (N jobs whose pods run 1 s, until every one has Succeeded), `logs`, `scale`.
//!
//! Environment (all optional):
//! - `FTO_BENCH_OPERATOR`: the operator binary (default: the release build next to this bench).
//! - `FTO_BENCH_SINGLE_RUNS` (20): single applies per side.
//! - `FTO_BENCH_RUNS` (3): runs per start-path size; `FTO_BENCH_SIZES` ("100,1000"): the sizes of
//!   the start path and the lifecycle; `FTO_BENCH_LIFECYCLE_RUNS` (1): runs per lifecycle size.
//! - `FTO_BENCH_BEFORE_OPERATOR`: an older operator binary, measured as a third side "operator,
//!   before" in `single` and `throughput` (`FTO_BENCH_BEFORE_RUNS` (1) runs per size there);
//!   scripts/bench.sh sets it from `FTO_BENCH_BEFORE_REV`.
//! - `FTO_BENCH_SCALE` ("1000,10000"): job counts of the memory and restart scenario;
//!   `FTO_BENCH_RESTARTS` (3); `FTO_BENCH_LOG_JOBS` (100); `FTO_BENCH_LOG_WINDOWS` (3) windows of
//!   `FTO_BENCH_LOG_WINDOW_SECONDS` (30).
//! - `FTO_BENCH_ONLY`: a comma list of scenarios to run (`single,throughput,lifecycle,logs,scale`).
//! - `FTO_BENCH_JSON` (benches/results/results.json), `FTO_BENCH_MD` (BENCHMARKS.md),
//!   `FTO_BENCH_BASELINE` (a results file from an earlier run, shown as "before" where it holds
//!   the same measurement), `FTO_BENCH_COMMAND` (the command line to print in the report),
//!   `FTO_BENCH_PARSER` (the JSON lines benches/parser.rs printed, reported as section 6).
//! - `FTO_BENCH_REPORT_ONLY=1`: no measurement, only BENCHMARKS.md again from the JSON file.
//! - `FTO_BENCH_MERGE=1`: the scenarios run (`FTO_BENCH_ONLY`) replace theirs in the existing JSON
//!   file, whose other figures stay; the run is listed under `merged_runs`.
//!
//! Layout: `settings` (the variables above), `lab` (the cluster and the operator as the driver
//! uses them, on `testkit`), `measure` (the operator's memory, CPU and reconciles), `tracker`
//! (the jobs, and when each reached what), `stats`, one module per scenario under `scenarios/`,
//! `machine` (what a run ran on) and `report` (BENCHMARKS.md: the fixed prose is in `report.md`,
//! filled in by `template`).

use std::sync::OnceLock;
use std::time::Instant;

use serde_json::Value;

static START: OnceLock<Instant> = OnceLock::new();

/// Progress on stderr, with the time since the driver started.
macro_rules! say {
    ($($arg:tt)*) => {{
        let t = $crate::START.get_or_init(std::time::Instant::now).elapsed().as_secs();
        eprintln!("[bench {:>2}:{:02}] {}", t / 60, t % 60, format!($($arg)*));
    }};
}

mod lab;
mod machine;
mod measure;
mod report;
mod scenarios;
mod settings;
mod stats;
mod template;
mod tracker;

use lab::Lab;
use settings::Settings;

type Res<T> = testkit::Result<T>;

/// Writes the figures so far to the JSON file.
fn save(settings: &Settings, results: &serde_json::Map<String, Value>) -> Res<()> {
    if let Some(dir) = settings.json.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(
        &settings.json,
        serde_json::to_string_pretty(results)? + "\n",
    )?;
    Ok(())
}

fn main() -> std::process::ExitCode {
    START.get_or_init(Instant::now);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(run()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench failed: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> Res<()> {
    let settings = Settings::from_env();
    if std::env::var("FTO_BENCH_REPORT_ONLY").is_ok_and(|v| v == "1") {
        // Only the report, from the JSON file of an earlier run.
        let results: Value = serde_json::from_str(&std::fs::read_to_string(&settings.json)?)?;
        report::write(&results, &settings)?;
        say!("wrote {}", settings.md.display());
        return Ok(());
    }
    let lab = Lab::connect().await?;
    say!("operator binary: {}", lab.operator_bin.display());
    if let Some(before) = &settings.before_operator {
        if !before.exists() {
            return Err(format!("no operator binary at {}", before.display()).into());
        }
        say!("operator binary, before: {}", before.display());
    }
    lab.cluster.install("bench")?;
    lab.add_nodes(10, 2000)?;
    lab.remove_leftovers().await?;
    // With FTO_BENCH_MERGE=1 the scenarios run now replace theirs in the existing results, and
    // the others stay (the machine and commit of the first run stay too).
    let merged: Option<serde_json::Map<String, Value>> =
        if std::env::var("FTO_BENCH_MERGE").is_ok_and(|v| v == "1") {
            Some(serde_json::from_str(&std::fs::read_to_string(
                &settings.json,
            )?)?)
        } else {
            None
        };
    let earlier_minutes = merged
        .as_ref()
        .and_then(|m| m.get("total_minutes"))
        .and_then(Value::as_f64)
        .unwrap_or(0.0);
    let mut results = merged.unwrap_or_default();
    if !results.contains_key("machine") {
        results.insert("machine".into(), machine::machine(&lab.cluster));
    } else {
        let runs = results
            .entry("merged_runs")
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Some(runs) = runs.as_array_mut() {
            runs.push(serde_json::json!({
                "scenarios": std::env::var("FTO_BENCH_ONLY").unwrap_or_default(),
                "machine": machine::machine(&lab.cluster),
            }));
        }
    }
    if let Some(parser) = report::parser_results() {
        results.insert("parser".into(), parser);
    }
    // A merged run keeps the settings the other scenarios were measured with (the report reads
    // them, e.g. the "before" operator's revision); the scenarios run now use the same defaults.
    results
        .entry("settings")
        .or_insert_with(|| settings.to_json());
    if settings.wants("single") {
        let single = scenarios::single::run(&lab, &settings).await?;
        results.insert("single".into(), single);
        save(&settings, &results)?;
    }
    if settings.wants("throughput") {
        let t = scenarios::throughput::run(&lab, &settings).await?;
        results.insert("start_path".into(), t["start_path"].clone());
        results.insert("start_path_cost".into(), t["start_path_cost"].clone());
        save(&settings, &results)?;
    }
    if settings.wants("lifecycle") {
        let l = scenarios::lifecycle::run(&lab, &settings).await?;
        results.insert("lifecycle".into(), l["lifecycle"].clone());
        results.insert("api_cost".into(), l["api_cost"].clone());
        save(&settings, &results)?;
    }
    if settings.wants("logs") {
        let logs = scenarios::logs::run(&lab, &settings).await?;
        results.insert("log_following".into(), logs);
        save(&settings, &results)?;
    }
    if settings.wants("scale") {
        let scale = scenarios::scale::run(&lab, &settings, |partial| {
            results.insert("scale".into(), partial.clone());
            save(&settings, &results)
        })
        .await?;
        results.insert("scale".into(), scale);
    }
    results.insert(
        "total_minutes".into(),
        stats::round(earlier_minutes + START.get().unwrap().elapsed().as_secs_f64() / 60.0),
    );
    save(&settings, &results)?;
    report::write(&Value::Object(results), &settings)?;
    say!(
        "wrote {} and {}",
        settings.json.display(),
        settings.md.display()
    );
    Ok(())
}
