//! Statistics of repeated measurements and request counts, as the JSON file holds them.

use serde_json::{Value, json};
use testkit::operator::{Requests, is_write};

pub fn percentile(values: &[f64], p: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

/// Median and spread of repeated measurements.
pub fn stats(values: &[f64]) -> Value {
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let median = if v.is_empty() {
        f64::NAN
    } else if v.len() % 2 == 1 {
        v[v.len() / 2]
    } else {
        (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0
    };
    json!({
        "median": round(median),
        "min": round(*v.first().unwrap_or(&f64::NAN)),
        "max": round(*v.last().unwrap_or(&f64::NAN)),
        "runs": v.iter().map(|x| round(*x)).collect::<Vec<_>>(),
    })
}

pub fn round(x: f64) -> Value {
    if x.is_finite() {
        json!((x * 1000.0).round() / 1000.0)
    } else {
        Value::Null
    }
}

pub fn requests_json(r: &Requests, per: f64) -> Value {
    Value::Object(
        r.iter()
            .map(|((verb, res), v)| (format!("{verb} {res}"), round(v / per)))
            .collect(),
    )
}

/// The requests counted between two readings.
pub fn delta(after: &Requests, before: &Requests) -> Requests {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0.0)))
        .filter(|(_, v)| *v > 0.0)
        .collect()
}

pub fn sum_where(requests: &Requests, pred: impl Fn(&str, &str) -> bool) -> f64 {
    requests
        .iter()
        .filter(|((verb, res), _)| pred(verb, res))
        .map(|(_, v)| v)
        .sum::<f64>()
        + 0.0
}

/// Writes among the requests.
pub fn writes(requests: &Requests) -> f64 {
    sum_where(requests, |v, _| is_write(v))
}

/// Reads among the requests.
pub fn reads(requests: &Requests) -> f64 {
    sum_where(requests, |v, _| !is_write(v))
}

/// Percentiles and extremes of many samples of one run (latencies).
pub fn spread(values: &[f64]) -> Value {
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    json!({
        "p50": round(percentile(values, 50.0)),
        "p99": round(percentile(values, 99.0)),
        "min": round(min),
        "max": round(max),
        "count": values.len(),
    })
}
