//! BENCHMARKS.md, from the figures of a run (the JSON file) and, optionally, an earlier run's as
//! "before". The fixed prose lives in `report.md` (and `report_parser.md` for section 6); this
//! module makes the tables and fills them in.
//!
//! The templates' syntax is in `template.rs`.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::Res;
use crate::settings::Settings;
use crate::template::{block, fill};

const REPORT: &str = include_str!("report.md");
const PARSER: &str = include_str!("report_parser.md");

/// Writes BENCHMARKS.md (`settings.md`) for `results`, with the baseline of `settings`, if any.
pub fn write(results: &Value, settings: &Settings) -> Res<()> {
    let baseline: Option<Value> = settings
        .baseline
        .as_ref()
        .and_then(|p| std::fs::read_to_string(p).ok())
        .and_then(|t| serde_json::from_str(&t).ok());
    std::fs::write(&settings.md, markdown(results, baseline.as_ref(), settings))?;
    Ok(())
}

fn f(v: &Value) -> String {
    match v.as_f64() {
        Some(x) if x >= 100.0 => format!("{x:.0}"),
        Some(x) if x >= 10.0 => format!("{x:.1}"),
        Some(x) => format!("{x:.2}"),
        None => "–".to_string(),
    }
}

/// "median (min–max)".
fn ms(s: &Value) -> String {
    if s["runs"].as_array().is_some_and(|r| r.len() > 1) {
        format!("{} ({}–{})", f(&s["median"]), f(&s["min"]), f(&s["max"]))
    } else {
        f(&s["median"])
    }
}

/// The operator's request label, the apiserver's name for the same requests, and the least the
/// design needs per job without preprocessing (None: not a request the design needs).
const COST_ROWS: &[(&str, &str, &str)] = &[
    ("get finetunejobs", "GET finetune.dev/finetunejobs", "0"),
    (
        "patch finetunejobs",
        "PATCH finetune.dev/finetunejobs",
        "1 (finalizer)",
    ),
    (
        "patch finetunejobs/status",
        "APPLY finetune.dev/finetunejobs/status",
        "3 (Pending, Training, Succeeded) + 1 per progress change",
    ),
    ("get pytorchjobs", "GET kubeflow.org/pytorchjobs", "0"),
    (
        "patch pytorchjobs",
        "APPLY kubeflow.org/pytorchjobs",
        "1 (create)",
    ),
    ("list pods", "LIST pods", "0"),
    ("list discovery", "", "0"),
    (
        "get pods/log",
        "CONNECT pods/log",
        "1 per log read while training",
    ),
    (
        "create events",
        "POST events.k8s.io/events",
        "2 (TrainingStarted, TrainingSucceeded) + progress events",
    ),
];

/// BENCHMARKS.md for the results `r`, beside `baseline` when there is one.
fn markdown(r: &Value, baseline: Option<&Value>, settings: &Settings) -> String {
    let m = &r["machine"];
    let b = baseline.unwrap_or(&Value::Null);
    let has_b = baseline.is_some();
    let text = |v: &Value| v.as_str().unwrap_or("").to_string();
    let mut values: BTreeMap<&str, String> = BTreeMap::new();
    values.insert("command", settings.command.clone());
    values.insert("cores", m["cores"].to_string());
    values.insert("cpu", text(&m["cpu"]));
    values.insert("memory_gib", m["memory_gib"].to_string());
    values.insert("kernel", text(&m["kernel"]));
    values.insert("rustc", text(&m["rustc"]));
    values.insert("date", text(&m["date"]));
    values.insert("commit", text(&m["commit"]));
    values.insert("kube", text(&m["kube"]));
    values.insert("k8s_openapi", text(&m["k8s_openapi"]));
    values.insert(
        "cluster",
        m["cluster"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default(),
    );
    let runs = r["settings"]["runs"]
        .as_u64()
        .unwrap_or(settings.runs as u64);
    values.insert("runs", runs.to_string());
    values.insert("total_minutes", f(&r["total_minutes"]));
    values.insert(
        "baseline_commit",
        b["machine"]["commit"].as_str().unwrap_or("?").to_string(),
    );
    values.insert("summary", block(&summary(r, b, has_b, settings)));
    values.insert("throughput", block(&throughput(r, b, has_b, settings)));
    values.insert("api_cost", block(&api_cost(r, b, has_b, settings)));
    values.insert("memory", block(&memory(r, b, has_b, settings)));
    values.insert("restarts", r["settings"]["restarts"].to_string());
    values.insert("restart", block(&restart(r, b, has_b, settings)));
    let l = &r["log_following"];
    values.insert("log_jobs", l["jobs"].to_string());
    values.insert(
        "log_windows",
        r["settings"]
            .get("log_windows")
            .and_then(Value::as_u64)
            .unwrap_or(settings.log_windows as u64)
            .to_string(),
    );
    values.insert("log_window_seconds", l["window_seconds"].to_string());
    values.insert("log_following", block(&log_following(r, b, has_b)));
    values.insert("parser", parser_section(r));
    let notes = std::fs::read_to_string(testkit::repo().join("benches/results/NOTES.md"))
        .map(|notes| block(&[notes.trim_end().to_string(), String::new()]))
        .unwrap_or_default();
    values.insert("notes", notes);
    let flags: BTreeSet<&str> = has_b.then_some("baseline").into_iter().collect();
    fill(REPORT, &values, &flags)
}

/// The summary against the goals: the largest throughput size, memory and restart writes at
/// the largest job count.
fn summary(r: &Value, b: &Value, has_b: bool, settings: &Settings) -> Vec<String> {
    let top = settings
        .sizes
        .iter()
        .max()
        .copied()
        .unwrap_or(1000)
        .to_string();
    let big = settings
        .scale
        .iter()
        .max()
        .copied()
        .unwrap_or(10000)
        .to_string();
    // The largest job count a run measured, and its figures.
    let largest = |x: &Value| -> (String, Value) {
        x["scale"]
            .as_object()
            .and_then(|o| o.iter().max_by_key(|(k, _)| k.parse::<u64>().unwrap_or(0)))
            .map_or(("–".to_string(), Value::Null), |(k, v)| {
                (k.clone(), v.clone())
            })
    };
    let ratio = |x: &Value| ms(&x["throughput"][&top]["ratio"]);
    let mem = |x: &Value| {
        let (n, s) = largest(x);
        let restarted = s["operator_peak_rss_mib_after_restart"]["median"].as_f64();
        let processing = s["operator_peak_rss_mib_while_processing"].as_f64();
        let Some(peer) = s["training_operator_rss_mib"].as_f64() else {
            return "–".to_string();
        };
        let side = |what: &str, mib: Option<f64>| {
            mib.map(|o| format!("{what} {o:.0} MiB ({:.2}×)", o / peer))
        };
        let parts: Vec<String> = [
            side("after restart", restarted),
            side("while processing", processing),
        ]
        .into_iter()
        .flatten()
        .collect();
        format!("{} vs {peer:.0} MiB, at {n} jobs", parts.join(", "))
    };
    let writes = |x: &Value| {
        let (n, s) = largest(x);
        format!("{} at {n} jobs", ms(&s["restart"]["writes"]))
    };
    let rows = [
        (
            format!("time to Training, operator / limit, N = {top}"),
            &ratio as &dyn Fn(&Value) -> String,
            "≤ 1.3".to_string(),
        ),
        (
            "peak RSS: operator vs training operator".to_string(),
            &mem,
            format!("< 0.33× at {big} jobs"),
        ),
        (
            "writes after a restart with finished jobs".to_string(),
            &writes,
            "0".to_string(),
        ),
    ];
    let mut out = Vec::new();
    if has_b {
        out.push("| figure | before | after | goal |".to_string());
        out.push("| --- | --- | --- | --- |".to_string());
        for (what, value, goal) in &rows {
            out.push(format!("| {what} | {} | {} | {goal} |", value(b), value(r)));
        }
    } else {
        out.push("| figure | value | goal |".to_string());
        out.push("| --- | --- | --- |".to_string());
        for (what, value, goal) in &rows {
            out.push(format!("| {what} | {} | {goal} |", value(r)));
        }
    }
    out
}

/// Section 1: per size, the operator's and the limit's times and latencies.
fn throughput(r: &Value, b: &Value, has_b: bool, settings: &Settings) -> Vec<String> {
    let row = |x: &Value, n: &str, who: &str| -> String {
        let t = &x["throughput"][n];
        format!(
            "{} | {} | {} | {} | {}",
            ms(&t[who]["seconds"]),
            ms(&t[who]["jobs_per_second"]),
            ms(&t[who]["p50_ms"]),
            ms(&t[who]["p99_ms"]),
            if who == "operator" {
                ms(&t["ratio"])
            } else {
                String::new()
            }
        )
    };
    let mut out = vec![
        "| N | who | time to all Training (s) | jobs/s | p50 apply → child (ms) | p99 apply → child (ms) | operator / limit |".to_string(),
        "| --- | --- | --- | --- | --- | --- | --- |".to_string(),
    ];
    for n in &settings.sizes {
        let n = n.to_string();
        if has_b && b["throughput"].get(&n).is_some() {
            out.push(format!(
                "| {n} | operator, before | {} |",
                row(b, &n, "operator")
            ));
            out.push(format!(
                "| {n} | limit, before run | {} |",
                row(b, &n, "limit")
            ));
        }
        out.push(format!("| {n} | operator | {} |", row(r, &n, "operator")));
        out.push(format!("| {n} | limit | {} |", row(r, &n, "limit")));
    }
    out
}

/// Section 2: per size measured, requests per job, and the table beside the minimum.
fn api_cost(r: &Value, b: &Value, has_b: bool, settings: &Settings) -> Vec<String> {
    let mut out = Vec::new();
    for n in &settings.sizes {
        let n = n.to_string();
        let c = &r["api_cost"][&n];
        if c.is_null() {
            continue;
        }
        let bc = &b["api_cost"][&n];
        out.push(format!(
            "N = {n}: writes per job {}, reads per job {}, reconciles per job {}{}.",
            ms(&c["writes_per_job"]),
            ms(&c["reads_per_job"]),
            ms(&c["reconciles_per_job"]),
            if bc.is_null() {
                String::new()
            } else {
                format!(
                    " (before: {} writes, {} reads, {} reconciles)",
                    ms(&bc["writes_per_job"]),
                    ms(&bc["reads_per_job"]),
                    ms(&bc["reconciles_per_job"])
                )
            }
        ));
        out.push(String::new());
        let with_before = has_b && !bc.is_null();
        if with_before {
            out.push(
                "| request | operator, before | operator | apiserver, before | apiserver | minimum |"
                    .to_string(),
            );
            out.push("| --- | --- | --- | --- | --- | --- |".to_string());
        } else {
            out.push("| request | operator | apiserver | minimum |".to_string());
            out.push("| --- | --- | --- | --- |".to_string());
        }
        for (ours, theirs, min) in COST_ROWS {
            let get = |x: &Value, k: &str| {
                if k.is_empty() {
                    "–".to_string()
                } else {
                    f(&x[k])
                }
            };
            let zero = |s: String| if s == "–" { "0".to_string() } else { s };
            if with_before {
                out.push(format!(
                    "| `{ours}` | {} | {} | {} | {} | {min} |",
                    zero(get(&bc["operator"], ours)),
                    zero(get(&c["operator"], ours)),
                    get(&bc["apiserver"], theirs),
                    get(&c["apiserver"], theirs)
                ));
            } else {
                out.push(format!(
                    "| `{ours}` | {} | {} | {min} |",
                    zero(get(&c["operator"], ours)),
                    get(&c["apiserver"], theirs)
                ));
            }
        }
        out.push(String::new());
    }
    out
}

/// The runs to show, before and after: the baseline only when there is one.
fn sides<'a>(r: &'a Value, b: &'a Value, has_b: bool) -> Vec<(&'static str, &'a Value)> {
    let mut sides = Vec::new();
    if has_b {
        sides.push(("before", b));
    }
    sides.push(("after", r));
    sides
}

/// Section 3: memory at each job count.
fn memory(r: &Value, b: &Value, has_b: bool, settings: &Settings) -> Vec<String> {
    let mut out = vec![
        "| jobs | | operator, peak while processing | operator, peak after restart | training operator RSS (peak) | operator / training operator |".to_string(),
        "| --- | --- | --- | --- | --- | --- |".to_string(),
    ];
    for n in &settings.scale {
        let n = n.to_string();
        for (label, x) in sides(r, b, has_b) {
            let s = &x["scale"][&n];
            if s.is_null() {
                continue;
            }
            let op = s["operator_peak_rss_mib_after_restart"]["median"].as_f64();
            let peer = s["training_operator_rss_mib"].as_f64();
            out.push(format!(
                "| {n} | {} | {} | {} | {} ({}) | {} |",
                if has_b { label } else { "" },
                f(&s["operator_peak_rss_mib_while_processing"]),
                ms(&s["operator_peak_rss_mib_after_restart"]),
                f(&s["training_operator_rss_mib"]),
                f(&s["training_operator_peak_rss_mib"]),
                match (op, peer) {
                    (Some(o), Some(p)) => format!("{:.2}×", o / p),
                    _ => "–".into(),
                }
            ));
        }
    }
    out
}

/// Section 4: restarts at each job count.
fn restart(r: &Value, b: &Value, has_b: bool, settings: &Settings) -> Vec<String> {
    let mut out = vec![
        "| jobs | | ready (s) | first pass (s) | reconciles | reads | writes |".to_string(),
        "| --- | --- | --- | --- | --- | --- | --- |".to_string(),
    ];
    for n in &settings.scale {
        let n = n.to_string();
        for (label, x) in sides(r, b, has_b) {
            let s = &x["scale"][&n]["restart"];
            if s.is_null() {
                continue;
            }
            out.push(format!(
                "| {n} | {} | {} | {} | {} | {} | {} |",
                if has_b { label } else { "" },
                ms(&s["ready_seconds"]),
                ms(&s["first_pass_seconds"]),
                ms(&s["reconciles"]),
                ms(&s["reads"]),
                ms(&s["writes"])
            ));
        }
    }
    out
}

/// Section 5: CPU and requests while following logs.
fn log_following(r: &Value, b: &Value, has_b: bool) -> Vec<String> {
    let mut out = vec![
        "| | CPU (% of one core) | CPU ms per 1,000 log lines | requests/s | writes/s | log reads/s | RSS (MiB) | jobs with progress |".to_string(),
        "| --- | --- | --- | --- | --- | --- | --- | --- |".to_string(),
    ];
    for (label, x) in sides(r, b, has_b) {
        let l = &x["log_following"];
        if l.is_null() {
            continue;
        }
        out.push(format!(
            "| {} | {} | {} | {} | {} | {} | {} | {}/{} |",
            if has_b { label } else { "operator" },
            ms(&l["cpu_percent_of_one_core"]),
            ms(&l["cpu_ms_per_1000_log_lines"]),
            ms(&l["requests_per_second"]),
            ms(&l["writes_per_second"]),
            ms(&l["log_reads_per_second"]),
            f(&l["rss_mib"]),
            l["jobs_with_progress"]
                .as_u64()
                .map_or("–".to_string(), |p| p.to_string()),
            l["jobs"]
        ));
    }
    out
}

/// Section 6: the parser's own throughput (benches/parser.rs, run by `make bench` first), or
/// nothing when the run has no parser figures.
fn parser_section(r: &Value) -> String {
    let Some(rows) = r["parser"].as_array().filter(|rows| !rows.is_empty()) else {
        return String::new();
    };
    let mut lines = vec![
        "| log | what | MB | lines | records | MB/s | ms per 1,000 lines |".to_string(),
        "| --- | --- | --- | --- | --- | --- | --- |".to_string(),
    ];
    for row in rows {
        lines.push(format!(
            "| {} | {} | {:.0} | {} | {} | {} | {} |",
            row["log"].as_str().unwrap_or("–"),
            row["what"].as_str().unwrap_or("–"),
            row["bytes"].as_f64().unwrap_or(0.0) / 1e6,
            row["lines"],
            row["records"],
            f(&row["mb_per_s"]),
            f(&row["ms_per_1000_lines"]),
        ));
    }
    lines.push(String::new());
    let values = BTreeMap::from([("rows", block(&lines))]);
    fill(PARSER, &values, &BTreeSet::new())
}

/// The JSON lines benches/parser.rs printed, when `make bench` saved them (`FTO_BENCH_PARSER`).
pub fn parser_results() -> Option<Value> {
    let path = std::env::var_os("FTO_BENCH_PARSER")?;
    let text = std::fs::read_to_string(path).ok()?;
    let rows: Vec<Value> = text
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|v| v["bench"] == "parser")
        .collect();
    Some(Value::Array(rows))
}
