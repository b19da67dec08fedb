//! `deploy/grafana/finetune-dashboard.json` cannot silently rot: it is valid JSON, imports with a
//! `${DS_PROMETHEUS}` datasource input, and every PromQL expression in it (panel targets and
//! variable queries) names only metrics the operator really exports, as a render of its
//! registry lists them (`# TYPE` lines, with the sample names each type implies).

use std::collections::BTreeSet;
use std::path::Path;

use finetune_operator::api::{FineTuneJob, FineTuneJobStatus, Phase, Progress, Usage};
use finetune_operator::telemetry::{Metrics, RequestLabels};
use finetune_operator::testing::JobFixture;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::reflector;
use kube::runtime::watcher::Event;
use serde_json::Value;

const DATASOURCE: &str = "${DS_PROMETHEUS}";

fn dashboard() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/grafana/finetune-dashboard.json");
    let text = std::fs::read_to_string(&path).unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The sample names the operator exports, from a render with every family present: a job
/// whose status has every field, `--per-job-metrics`, one reconcile error, one API request.
fn exported() -> BTreeSet<String> {
    let status = FineTuneJobStatus {
        phase: Some(Phase::Training),
        progress: Some(Progress {
            percent: Some(50),
            loss: Some(0.5),
            validation_loss: Some(0.6),
            eta: Some(Time(jiff::Timestamp::from_second(1_767_225_600).unwrap())),
            ..Progress::default()
        }),
        usage: Some(Usage {
            gpu_seconds: 3600,
            ..Usage::default()
        }),
        ..FineTuneJobStatus::default()
    };
    let job: FineTuneJob = JobFixture::new("ft")
        .namespace("ns")
        .status(Some(&status))
        .build();
    let (store, mut writer) = reflector::store();
    writer.apply_watcher_event(&Event::Apply(job));
    let metrics = Metrics::default().with_per_job_metrics(true);
    metrics.watch_store(store);
    // Families with no series yet are not rendered at all.
    metrics.reconcile_failed("create");
    metrics
        .api_requests
        .get_or_create(&RequestLabels {
            verb: "get".into(),
            resource: "pods".into(),
        })
        .inc();
    let text = metrics.render();

    let mut names = BTreeSet::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let (name, kind) = rest.split_once(' ').unwrap();
        let suffixes: &[&str] = match kind {
            "counter" => &["_total"],
            "histogram" => &["_bucket", "_sum", "_count"],
            "info" => &["_info"],
            _ => &[""],
        };
        names.extend(suffixes.iter().map(|s| format!("{name}{s}")));
    }
    // Every sample rendered is one of those names, so the list is the whole truth.
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let name = line.split(['{', ' ']).next().unwrap();
        assert!(names.contains(name), "{name} has no # TYPE line:\n{text}");
    }
    names
}

/// PromQL words that are not metric names: aggregations, operators, modifiers.
const KEYWORDS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "atan2",
    "inf",
    "nan",
    "start",
    "end",
];

/// Keywords followed by a list of label names in parentheses, not an expression.
const LABEL_LISTS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// The metric names in a PromQL expression: identifiers that are not a function call (a name
/// followed by `(`), a keyword, a label name in a grouping list, or a Grafana variable (`$x`),
/// outside strings, label matchers `{...}` and ranges `[...]`.
fn metric_names(expr: &str) -> Vec<String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut names = Vec::new();
    let mut i = 0;
    // From an opening quote to after its closing one.
    let skip_string = |mut i: usize| -> usize {
        let quote = chars[i];
        i += 1;
        while i < chars.len() && chars[i] != quote {
            i += if chars[i] == '\\' { 2 } else { 1 };
        }
        i + 1
    };
    // From an opening bracket to after its closing one, strings inside included.
    let skip_group = |mut i: usize, open: char, close: char| -> usize {
        let mut depth = 0;
        while i < chars.len() {
            match chars[i] {
                '"' | '\'' | '`' => {
                    i = skip_string(i);
                    continue;
                }
                c if c == open => depth += 1,
                c if c == close => {
                    depth -= 1;
                    if depth == 0 {
                        return i + 1;
                    }
                }
                _ => {}
            }
            i += 1;
        }
        panic!("unbalanced {open} in {expr}");
    };
    let is_start = |c: char| c.is_ascii_alphabetic() || c == '_' || c == ':';
    let is_part = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    while i < chars.len() {
        let c = chars[i];
        match c {
            '"' | '\'' | '`' => i = skip_string(i),
            '{' => i = skip_group(i, '{', '}'),
            '[' => i = skip_group(i, '[', ']'),
            '$' => {
                i += 1;
                while i < chars.len() && is_part(chars[i]) {
                    i += 1;
                }
            }
            c if c.is_ascii_digit() || c == '.' => {
                // Numbers and durations (1.5, 1e3, 5m).
                while i < chars.len() && (is_part(chars[i]) || chars[i] == '.') {
                    i += 1;
                }
            }
            c if is_start(c) => {
                let start = i;
                while i < chars.len() && is_part(chars[i]) {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                let mut next = i;
                while next < chars.len() && chars[next].is_whitespace() {
                    next += 1;
                }
                let call = chars.get(next) == Some(&'(');
                if LABEL_LISTS.contains(&word.as_str()) && call {
                    i = skip_group(next, '(', ')');
                } else if !call && !KEYWORDS.contains(&word.as_str()) {
                    names.push(word);
                }
            }
            _ => i += 1,
        }
    }
    names
}

/// The query of a `label_values(...)` variable, as PromQL: its first argument.
fn variable_expr(query: &str) -> String {
    let inner = query
        .strip_prefix("label_values(")
        .and_then(|q| q.strip_suffix(')'))
        .unwrap_or_else(|| panic!("a variable query other than label_values: {query}"));
    // The last comma outside braces separates the label.
    let (mut depth, mut split) = (0, None);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => split = Some(i),
            _ => {}
        }
    }
    inner[..split.expect("label_values(metric, label)")].to_string()
}

/// Every panel, rows' nested panels included.
fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        out.push(panel);
        out.extend(panel["panels"].as_array().into_iter().flatten());
    }
    out
}

/// Every PromQL expression, with where it is.
fn expressions(dashboard: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for panel in panels(dashboard) {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"]
                .as_str()
                .unwrap_or_else(|| panic!("panel {} has a target without expr", panel["title"]));
            out.push((format!("panel {}", panel["title"]), expr.to_string()));
        }
    }
    for variable in dashboard["templating"]["list"].as_array().unwrap() {
        let query = variable["query"]["query"]
            .as_str()
            .or(variable["query"].as_str())
            .unwrap();
        assert_eq!(variable["definition"].as_str(), Some(query), "{variable}");
        out.push((
            format!("variable {}", variable["name"]),
            variable_expr(query),
        ));
    }
    out
}

#[test]
fn the_extractor_finds_metric_names_and_nothing_else() {
    let expr = r#"histogram_quantile(0.99, sum by (le, "x") (rate(a_bucket{x=~"$ns", y="b{c}"}[$__rate_interval] offset 5m))) / on(le) group_left(z) b_total > bool 1e3 or c:d unless sum without(w)(e)"#;
    assert_eq!(
        metric_names(expr),
        ["a_bucket", "b_total", "c:d", "e"],
        "{expr}"
    );
    assert_eq!(
        variable_expr(r#"label_values(m{a=~"$x,y"}, name)"#),
        r#"m{a=~"$x,y"}"#
    );
    // A misspelled name is found, so the check below would fail on it.
    let exported = exported();
    let unknown: Vec<String> = metric_names("sum(rate(finetune_operator_reconcile_total[5m]))")
        .into_iter()
        .filter(|n| !exported.contains(n))
        .collect();
    assert_eq!(unknown, ["finetune_operator_reconcile_total"]);
}

#[test]
fn every_expression_names_only_exported_metrics() {
    let dashboard = dashboard();
    let exported = exported();
    let expressions = expressions(&dashboard);
    assert!(expressions.len() >= 20, "{} expressions", expressions.len());
    let mut used = BTreeSet::new();
    for (place, expr) in &expressions {
        let names = metric_names(expr);
        assert!(!names.is_empty(), "{place}: no metric in {expr}");
        for name in names {
            assert!(
                exported.contains(&name),
                "{place}: {name} is not exported by the operator ({expr}); exported: {exported:?}"
            );
            used.insert(name);
        }
    }
    // What the dashboard is for: jobs by phase, progress, loss, GPU time, interruptions,
    // reconcile errors and durations.
    for name in [
        "finetune_jobs",
        "finetune_job_progress_ratio",
        "finetune_job_loss",
        "finetune_job_gpu_seconds",
        "finetune_operator_gpu_seconds_total",
        "finetune_operator_training_attempts_total",
        "finetune_operator_preemptions_total",
        "finetune_operator_disruptions_total",
        "finetune_operator_reconcile_errors_total",
        "finetune_operator_reconcile_duration_seconds_bucket",
    ] {
        assert!(used.contains(name), "the dashboard does not show {name}");
    }
}

#[test]
fn imports_with_a_prometheus_datasource_input() {
    let dashboard = dashboard();
    let inputs = dashboard["__inputs"].as_array().unwrap();
    assert!(
        inputs.iter().any(|i| i["name"] == "DS_PROMETHEUS"
            && i["type"] == "datasource"
            && i["pluginId"] == "prometheus"),
        "{inputs:?}"
    );
    let mut ids = BTreeSet::new();
    for panel in panels(&dashboard) {
        assert!(
            ids.insert(panel["id"].as_i64().unwrap()),
            "two panels with id {}",
            panel["id"]
        );
        if panel["type"] == "row" {
            continue;
        }
        let targets = panel["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "panel {} has no query", panel["title"]);
        for source in
            std::iter::once(&panel["datasource"]).chain(targets.iter().map(|t| &t["datasource"]))
        {
            assert_eq!(source["uid"], DATASOURCE, "panel {}", panel["title"]);
            assert_eq!(source["type"], "prometheus", "panel {}", panel["title"]);
        }
    }
    for variable in dashboard["templating"]["list"].as_array().unwrap() {
        assert_eq!(variable["datasource"]["uid"], DATASOURCE, "{variable}");
    }
    assert!(dashboard["uid"].as_str().is_some_and(|u| !u.is_empty()));
    assert!(dashboard["title"].as_str().is_some_and(|t| !t.is_empty()));
}
