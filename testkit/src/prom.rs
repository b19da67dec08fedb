//! The one reader of the Prometheus text format, for the operator's `/metrics` and the
//! apiserver's: the samples of a metric, with their labels.

use std::collections::BTreeMap;

/// The labels of one sample, by name.
pub type Labels = BTreeMap<String, String>;

/// The samples of the metric `name`: labels and value. Comments and other metrics (also those
/// whose name merely starts with `name`) are skipped, as are lines that do not parse.
pub fn samples(text: &str, name: &str) -> Vec<(Labels, f64)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let (labels, value) = match rest.strip_prefix('{') {
            Some(r) => match r.rsplit_once("} ") {
                Some((l, v)) => (l, v),
                None => continue,
            },
            None if rest.starts_with(' ') => ("", rest.trim()),
            None => continue,
        };
        let Ok(value) = value.split_whitespace().next().unwrap_or("").parse::<f64>() else {
            continue;
        };
        let mut map = Labels::new();
        for pair in split_labels(labels) {
            if let Some((k, v)) = pair.split_once('=') {
                map.insert(k.to_string(), v.trim_matches('"').to_string());
            }
        }
        out.push((map, value));
    }
    out
}

/// The value of the first sample of `name` (an unlabelled counter has one).
pub fn value(text: &str, name: &str) -> Option<f64> {
    samples(text, name).first().map(|(_, v)| *v)
}

/// Splits `a="x",b="y,z"` at the commas outside quotes.
fn split_labels(s: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted) = (0, false);
    for (i, c) in s.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if start < s.len() {
        parts.push(&s[start..]);
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
# HELP finetune_operator_reconciles Reconciles run.
# TYPE finetune_operator_reconciles counter
finetune_operator_reconciles_total 7
finetune_operator_reconciles_total_other 99
finetune_operator_api_requests_total{verb=\"get\",resource=\"pods/log\"} 3
finetune_operator_api_requests_total{verb=\"patch\",resource=\"a,b\"} 2 1700000000
broken_total{verb=\"get\" 1
# EOF
";

    #[test]
    fn reads_samples_with_and_without_labels() {
        assert_eq!(value(TEXT, "finetune_operator_reconciles_total"), Some(7.0));
        let requests = samples(TEXT, "finetune_operator_api_requests_total");
        assert_eq!(requests.len(), 2);
        assert_eq!(requests[0].0["verb"], "get");
        assert_eq!(requests[0].0["resource"], "pods/log");
        assert_eq!(requests[0].1, 3.0);
        assert_eq!(requests[1].0["resource"], "a,b", "a comma inside quotes");
        assert_eq!(requests[1].1, 2.0, "the timestamp is not the value");
    }

    #[test]
    fn skips_what_is_not_the_metric() {
        assert_eq!(value(TEXT, "finetune_operator_missing_total"), None);
        assert!(samples(TEXT, "broken_total").is_empty());
        assert_eq!(samples(TEXT, "finetune_operator_reconciles_total").len(), 1);
    }
}
