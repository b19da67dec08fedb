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

/// One request of the API cost tables: the operator's label, the apiserver's name for the same
/// requests, and the least the design needs per job, over the whole lifecycle (without
/// preprocessing) and on the start path (creation to Training). `a|b`: either request (the
/// operator creates the PyTorchJob; older builds and the limit apply it), counted together.
struct CostRow {
    ours: &'static str,
    theirs: &'static str,
    lifecycle: &'static str,
    start: &'static str,
}

const fn row(
    ours: &'static str,
    theirs: &'static str,
    lifecycle: &'static str,
    start: &'static str,
) -> CostRow {
    CostRow {
        ours,
        theirs,
        lifecycle,
        start,
    }
}

const COST_ROWS: &[CostRow] = &[
    row(
        "get finetunejobs",
        "GET finetune.dev/finetunejobs",
        "0",
        "0",
    ),
    row(
        "patch finetunejobs",
        "PATCH finetune.dev/finetunejobs",
        "1 (finalizer)",
        "1 (finalizer)",
    ),
    row(
        "patch finetunejobs/status",
        "APPLY finetune.dev/finetunejobs/status",
        "2 (Training, Succeeded) + 1 per progress change",
        "1 (Training)",
    ),
    row("get pytorchjobs", "GET kubeflow.org/pytorchjobs", "0", "0"),
    row(
        "create pytorchjobs|patch pytorchjobs",
        "POST kubeflow.org/pytorchjobs|APPLY kubeflow.org/pytorchjobs",
        "1 (create)",
        "1 (create)",
    ),
    row("list pods", "LIST pods", "0", "0"),
    row("list discovery", "", "0", "0"),
    row(
        "get pods/log",
        "CONNECT pods/log",
        "1 per log read while training",
        "0",
    ),
    row(
        "create events",
        "POST events.k8s.io/events",
        "2 (TrainingStarted, TrainingSucceeded) + progress events",
        "1 (TrainingStarted)",
    ),
];

/// Writes per job on the start path, as the design needs them (see [`COST_ROWS`]).
const START_MINIMUM_WRITES: u32 = 4;

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
    let sizes = measured(r, "start_path", &settings.sizes);
    let life_sizes = measured(r, "lifecycle", &settings.sizes);
    let has_before_op = !r["settings"]["before_operator"].is_null()
        || sizes
            .iter()
            .any(|n| !r["start_path"][n]["operator_before"].is_null())
        || !r["single"]["operator_before"].is_null();
    values.insert(
        "before_operator",
        r["settings"]["before_operator"]
            .as_str()
            .map_or("an older build".to_string(), |rev| format!("at {rev}")),
    );
    values.insert(
        "before_runs",
        r["settings"]["before_runs"]
            .as_u64()
            .unwrap_or(1)
            .to_string(),
    );
    values.insert(
        "single_runs",
        r["settings"]["single_runs"]
            .as_u64()
            .unwrap_or(settings.single_runs as u64)
            .to_string(),
    );
    values.insert(
        "lifecycle_runs",
        r["settings"]["lifecycle_runs"]
            .as_u64()
            .unwrap_or(settings.lifecycle_runs as u64)
            .to_string(),
    );
    values.insert(
        "summary",
        block(&summary(r, b, has_b || has_before_op, settings)),
    );
    values.insert("start_path", block(&start_path(r, &sizes)));
    values.insert("single", block(&single(r)));
    values.insert("start_path_cost", block(&start_path_cost(r, &sizes)));
    values.insert("lifecycle", block(&lifecycle(r, b, has_b, &life_sizes)));
    values.insert("api_cost", block(&api_cost(r, b, has_b, &life_sizes)));
    values.insert("memory", block(&memory(r, b, has_b, settings)));
    values.insert("memory_slope", block(&memory_slope(r)));
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
    values.insert(
        "lag_tail_seconds",
        l["progress_lag_seconds"]["tail_dropped_seconds"]
            .as_u64()
            .unwrap_or(15)
            .to_string(),
    );
    values.insert("progress_lag", block(&progress_lag(r)));
    values.insert("parser", parser_section(r));
    let notes = std::fs::read_to_string(testkit::repo().join("benches/results/NOTES.md"))
        .map(|notes| block(&[notes.trim_end().to_string(), String::new()]))
        .unwrap_or_default();
    values.insert("notes", notes);
    let mut flags: BTreeSet<&str> = has_b.then_some("baseline").into_iter().collect();
    if has_before_op {
        flags.insert("before_operator");
    }
    fill(REPORT, &values, &flags)
}

/// The sizes of `settings_sizes` that the results hold for `key`, as JSON keys.
fn measured(r: &Value, key: &str, settings_sizes: &[usize]) -> Vec<String> {
    let mut sizes: Vec<u64> = settings_sizes.iter().map(|n| *n as u64).collect();
    if let Some(o) = r[key].as_object() {
        sizes.extend(o.keys().filter_map(|k| k.parse::<u64>().ok()));
    }
    sizes.sort_unstable();
    sizes.dedup();
    sizes
        .into_iter()
        .map(|n| n.to_string())
        .filter(|n| !r[key][n].is_null())
        .collect()
}

/// "p50 / p99" of a spread, in milliseconds.
fn p50_p99(s: &Value) -> Option<String> {
    Some(format!(
        "{} / {} ms",
        s["p50"].as_f64()?.round(),
        s["p99"].as_f64()?.round()
    ))
}

/// The operator's and the training operator's memory per job between the smallest and the
/// largest job count measured, in KiB per job, and both at the largest count, in MiB.
struct Slope {
    from: String,
    to: String,
    operator_kib: f64,
    peer_kib: f64,
    operator_mib: f64,
    peer_mib: f64,
    to_jobs: f64,
}

const EXTRAPOLATE_TO: f64 = 100_000.0;

fn slope(x: &Value) -> Option<Slope> {
    let scale = x["scale"].as_object()?;
    let mut points: Vec<(f64, &str, f64, f64)> = scale
        .iter()
        .filter_map(|(k, s)| {
            Some((
                k.parse::<f64>().ok()?,
                k.as_str(),
                s["operator_peak_rss_mib_after_restart"]["median"].as_f64()?,
                s["training_operator_rss_mib"].as_f64()?,
            ))
        })
        .collect();
    points.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (first, last) = (points.first()?, points.last()?);
    if last.0 <= first.0 {
        return None;
    }
    let per_job = |a: f64, b: f64| (b - a) * 1024.0 / (last.0 - first.0);
    Some(Slope {
        from: first.1.to_string(),
        to: last.1.to_string(),
        operator_kib: per_job(first.2, last.2),
        peer_kib: per_job(first.3, last.3),
        operator_mib: last.2,
        peer_mib: last.3,
        to_jobs: last.0,
    })
}

impl Slope {
    /// Both, extrapolated linearly to [`EXTRAPOLATE_TO`] jobs, in MiB.
    fn extrapolated(&self) -> (f64, f64) {
        let more = EXTRAPOLATE_TO - self.to_jobs;
        (
            self.operator_mib + self.operator_kib * more / 1024.0,
            self.peer_mib + self.peer_kib * more / 1024.0,
        )
    }
}

/// The summary against the goals. "Before" is the older operator measured in this run where it
/// was, else the baseline where it holds the same measurement, else "–".
fn summary(r: &Value, b: &Value, with_before: bool, settings: &Settings) -> Vec<String> {
    // Every size asked for, measured or not, largest first.
    let mut sizes: Vec<usize> = settings.sizes.clone();
    sizes.sort_unstable_by(|a, b| b.cmp(a));
    let sizes: Vec<String> = sizes.iter().map(usize::to_string).collect();
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
    let dash = || "–".to_string();
    let mem = |x: &Value| {
        let (n, s) = largest(x);
        let restarted = s["operator_peak_rss_mib_after_restart"]["median"].as_f64();
        let processing = s["operator_peak_rss_mib_while_processing"].as_f64();
        let Some(peer) = s["training_operator_rss_mib"].as_f64() else {
            return dash();
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
    let restart_writes = |x: &Value| {
        let (n, s) = largest(x);
        if s["restart"].is_null() {
            return dash();
        }
        format!("{} at {n} jobs", ms(&s["restart"]["writes"]))
    };
    let slope_text = |x: &Value| {
        slope(x).map_or_else(dash, |s| {
            format!(
                "operator {:.1} KiB/job, training operator {:.1} KiB/job ({}–{} jobs)",
                s.operator_kib, s.peer_kib, s.from, s.to
            )
        })
    };
    let extrapolation = |x: &Value| {
        slope(x).map_or_else(dash, |s| {
            let (o, p) = s.extrapolated();
            format!(
                "operator {:.0} MiB vs training operator {:.0} MiB ({:.2}×), extrapolated",
                o,
                p,
                o / p
            )
        })
    };
    let lag = |x: &Value| {
        let l = &x["log_following"]["progress_lag_seconds"];
        match (l["p50"].as_f64(), l["p99"].as_f64()) {
            (Some(p50), Some(p99)) => format!("{p50:.1} / {p99:.1} s"),
            _ => dash(),
        }
    };
    let single = |who: &str| {
        let s = &r["single"];
        match (
            p50_p99(&s[who]["apply_to_training_ms"]),
            p50_p99(&s["limit"]["apply_to_training_ms"]),
        ) {
            (Some(o), Some(l)) => format!("{o} (limit {l})"),
            _ => dash(),
        }
    };
    let start_writes = |c: &Value| {
        c["writes_per_job"]["median"]
            .as_f64()
            .map_or_else(dash, |w| format!("{w:.2} (minimum {START_MINIMUM_WRITES})"))
    };
    let top = sizes.first().cloned().unwrap_or_else(|| "1000".to_string());
    // (figure, before, after, goal)
    let mut rows: Vec<(String, String, String, String)> = Vec::new();
    for n in &sizes {
        let t = &r["start_path"][n];
        rows.push((
            format!("start path: time to all Training, operator / limit, N = {n}"),
            if t["before_ratio"].is_null() {
                dash()
            } else {
                ms(&t["before_ratio"])
            },
            ms(&t["ratio"]),
            "≤ 1.3".to_string(),
        ));
    }
    rows.push((
        "N = 1: apply → Training, p50 / p99".to_string(),
        single("operator_before"),
        single("operator"),
        "–".to_string(),
    ));
    rows.push((
        "progress lag (step appended → status), p50 / p99".to_string(),
        lag(b),
        lag(r),
        "–".to_string(),
    ));
    let c = &r["start_path_cost"][&top];
    rows.push((
        format!("start path: operator writes per job, N = {top}"),
        start_writes(&c["before"]),
        start_writes(c),
        START_MINIMUM_WRITES.to_string(),
    ));
    rows.push((
        "peak RSS: operator vs training operator".to_string(),
        mem(b),
        mem(r),
        format!("≤ 0.1× at {big} jobs"),
    ));
    rows.push((
        "memory per job (peak after restart; training operator RSS)".to_string(),
        slope_text(b),
        slope_text(r),
        "–".to_string(),
    ));
    rows.push((
        format!("memory at {EXTRAPOLATE_TO:.0} jobs, linear extrapolation"),
        extrapolation(b),
        extrapolation(r),
        "–".to_string(),
    ));
    rows.push((
        "writes after a restart with finished jobs".to_string(),
        restart_writes(b),
        restart_writes(r),
        "0".to_string(),
    ));
    let mut out = Vec::new();
    if with_before {
        out.push("| figure | before | after | goal |".to_string());
        out.push("| --- | --- | --- | --- |".to_string());
        for (what, before, after, goal) in &rows {
            out.push(format!("| {what} | {before} | {after} | {goal} |"));
        }
    } else {
        out.push("| figure | value | goal |".to_string());
        out.push("| --- | --- | --- |".to_string());
        for (what, _, after, goal) in &rows {
            out.push(format!("| {what} | {after} | {goal} |"));
        }
    }
    out
}

/// One row's time, rate and latencies of a side (`seconds`, `jobs_per_second`, `p50_ms`,
/// `p99_ms`).
fn timing(t: &Value) -> String {
    format!(
        "{} | {} | {} | {}",
        ms(&t["seconds"]),
        ms(&t["jobs_per_second"]),
        ms(&t["p50_ms"]),
        ms(&t["p99_ms"])
    )
}

/// Section 1: per size, the operator's (and the older operator's) and the limit's times and
/// latencies on the start path.
fn start_path(r: &Value, sizes: &[String]) -> Vec<String> {
    if sizes.is_empty() {
        return vec!["(not measured in this run)".to_string()];
    }
    let mut out = vec![
        "| N | who | time to all Training (s) | jobs/s | p50 apply → child (ms) | p99 apply → child (ms) | operator / limit |".to_string(),
        "| --- | --- | --- | --- | --- | --- | --- |".to_string(),
    ];
    for n in sizes {
        let t = &r["start_path"][n];
        if !t["operator_before"].is_null() {
            out.push(format!(
                "| {n} | operator, before | {} | {} |",
                timing(&t["operator_before"]),
                ms(&t["before_ratio"])
            ));
        }
        out.push(format!(
            "| {n} | operator | {} | {} |",
            timing(&t["operator"]),
            ms(&t["ratio"])
        ));
        out.push(format!("| {n} | limit | {} | |", timing(&t["limit"])));
    }
    out
}

/// Section 1, N = 1: the spread of each side's single applies.
fn single(r: &Value) -> Vec<String> {
    let s = &r["single"];
    if s.is_null() {
        return vec!["(not measured in this run)".to_string()];
    }
    let mut out = vec![
        "| who | applies | apply → PyTorchJob p50 | p99 | min | max | apply → Training p50 | p99 | min | max |".to_string(),
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |".to_string(),
    ];
    for (who, label) in [
        ("operator_before", "operator, before"),
        ("operator", "operator"),
        ("limit", "limit"),
    ] {
        let x = &s[who];
        if x.is_null() {
            continue;
        }
        let (c, t) = (&x["apply_to_child_ms"], &x["apply_to_training_ms"]);
        out.push(format!(
            "| {label} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            c["count"],
            f(&c["p50"]),
            f(&c["p99"]),
            f(&c["min"]),
            f(&c["max"]),
            f(&t["p50"]),
            f(&t["p99"]),
            f(&t["min"]),
            f(&t["max"])
        ));
    }
    out
}

/// A request count of a per-job table (`a|b`: the sum of both): "–" where the table names no
/// such request; 0 where the operator's counter, which lists only what was sent, lacks it.
fn cell(x: &Value, key: &str, zero_if_absent: bool) -> String {
    let values: Vec<f64> = key
        .split('|')
        .filter(|k| !k.is_empty())
        .filter_map(|k| x[k].as_f64())
        .collect();
    if values.is_empty() {
        return if zero_if_absent && !x.is_null() && !key.is_empty() {
            "0".to_string()
        } else {
            "–".to_string()
        };
    }
    f(&crate::stats::round(values.iter().sum()))
}

/// A request's name in a table.
fn label(key: &str) -> String {
    key.replace('|', "` or `")
}

/// Section 2, the start path: writes per job, and per request beside the minimum and the limit.
fn start_path_cost(r: &Value, sizes: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for n in sizes {
        let c = &r["start_path_cost"][n];
        if c.is_null() {
            continue;
        }
        let bc = &c["before"];
        out.push(format!(
            "N = {n}: operator writes per job {} (minimum {START_MINIMUM_WRITES}; the limit makes 2), reads per job {}, reconciles per job {}{}.",
            ms(&c["writes_per_job"]),
            ms(&c["reads_per_job"]),
            ms(&c["reconciles_per_job"]),
            if bc.is_null() {
                String::new()
            } else {
                format!(
                    " (operator, before: {} writes, {} reads, {} reconciles)",
                    ms(&bc["writes_per_job"]),
                    ms(&bc["reads_per_job"]),
                    ms(&bc["reconciles_per_job"])
                )
            }
        ));
        out.push(String::new());
        let with_before = !bc.is_null();
        out.push(format!(
            "| request | {}operator | apiserver | limit, apiserver | minimum |",
            if with_before {
                "operator, before | "
            } else {
                ""
            }
        ));
        out.push(format!(
            "| --- | --- | --- | --- | {}--- |",
            if with_before { "--- | " } else { "" }
        ));
        for CostRow {
            ours,
            theirs,
            start: min,
            ..
        } in COST_ROWS
        {
            let before = if with_before {
                format!("{} | ", cell(&bc["operator"], ours, true))
            } else {
                String::new()
            };
            out.push(format!(
                "| `{}` | {before}{} | {} | {} | {min} |",
                label(ours),
                cell(&c["operator"], ours, true),
                cell(&c["apiserver"], theirs, false),
                cell(&c["limit"]["apiserver"], theirs, false)
            ));
        }
        out.push(String::new());
    }
    out
}

/// Section 2, the whole lifecycle: time to Training and to Succeeded, beside the baseline's
/// 1-second runs where it has them.
fn lifecycle(r: &Value, b: &Value, has_b: bool, sizes: &[String]) -> Vec<String> {
    if sizes.is_empty() {
        return vec!["(not measured in this run)".to_string()];
    }
    let mut out = vec![
        "| N | who | time to all Training (s) | time to all Succeeded (s) | jobs/s to Training | p50 apply → child (ms) | p99 apply → child (ms) |".to_string(),
        "| --- | --- | --- | --- | --- | --- | --- |".to_string(),
    ];
    let row = |t: &Value| {
        format!(
            "{} | {} | {} | {} | {}",
            ms(&t["seconds"]),
            ms(&t["succeeded_seconds"]),
            ms(&t["jobs_per_second"]),
            ms(&t["p50_ms"]),
            ms(&t["p99_ms"])
        )
    };
    for n in sizes {
        let bt = &b["throughput"][n];
        if has_b && !bt.is_null() {
            out.push(format!(
                "| {n} | operator, before | {} |",
                row(&bt["operator"])
            ));
            out.push(format!(
                "| {n} | limit, before run | {} |",
                row(&bt["limit"])
            ));
        }
        out.push(format!(
            "| {n} | operator | {} |",
            row(&r["lifecycle"][n]["operator"])
        ));
    }
    out
}

/// Section 2, the whole lifecycle: per size measured, requests per job, and the table beside
/// the minimum.
fn api_cost(r: &Value, b: &Value, has_b: bool, sizes: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for n in sizes {
        let c = &r["api_cost"][n];
        if c.is_null() {
            continue;
        }
        let bc = &b["api_cost"][n];
        out.push(format!(
            "N = {n}, per job lifecycle: writes {}, reads {}, reconciles {}{}.",
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
        for CostRow {
            ours,
            theirs,
            lifecycle: min,
            ..
        } in COST_ROWS
        {
            if with_before {
                out.push(format!(
                    "| `{}` | {} | {} | {} | {} | {min} |",
                    label(ours),
                    cell(&bc["operator"], ours, true),
                    cell(&c["operator"], ours, true),
                    cell(&bc["apiserver"], theirs, false),
                    cell(&c["apiserver"], theirs, false)
                ));
            } else {
                out.push(format!(
                    "| `{}` | {} | {} | {min} |",
                    label(ours),
                    cell(&c["operator"], ours, true),
                    cell(&c["apiserver"], theirs, false)
                ));
            }
        }
        out.push(String::new());
    }
    out
}

/// Section 3: memory per job between the two job counts, and a linear extrapolation.
fn memory_slope(r: &Value) -> Vec<String> {
    let Some(s) = slope(r) else {
        return Vec::new();
    };
    let (o, p) = s.extrapolated();
    vec![
        format!(
            "**Per job**, from {} to {} jobs: the operator's peak after restart grows by {:.1} KiB per job, the training operator's RSS by {:.1} KiB per job.",
            s.from, s.to, s.operator_kib, s.peer_kib
        ),
        String::new(),
        format!(
            "**At {EXTRAPOLATE_TO:.0} jobs**, extrapolated linearly from those two points (an extrapolation, not a measurement: nothing here ran {EXTRAPOLATE_TO:.0} jobs): the operator about {o:.0} MiB, the training operator about {p:.0} MiB, {:.2}×.",
            o / p
        ),
    ]
}

/// Section 5: the progress lag.
fn progress_lag(r: &Value) -> Vec<String> {
    let l = &r["log_following"]["progress_lag_seconds"];
    if l.is_null() {
        return Vec::new();
    }
    vec![
        "| (job, step) pairs | p50 (s) | p99 (s) | min (s) | max (s) | not shown by the end |"
            .to_string(),
        "| --- | --- | --- | --- | --- | --- |".to_string(),
        format!(
            "| {} | {} | {} | {} | {} | {} |",
            l["pairs"],
            f(&l["p50"]),
            f(&l["p99"]),
            f(&l["min"]),
            f(&l["max"]),
            l["unseen"]
        ),
    ]
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
