//! Label and annotation keys and label values, checked as the apiserver checks them on pods.
//!
//! Admission of a FineTuneJob checks label values by schema pattern, but a CEL check of map keys
//! does not fit the apiserver's cost budget. A bad key would only fail when the training
//! operator creates the pods, leaving the PyTorchJob waiting forever, so the operator checks
//! the keys itself before it creates anything.

use crate::api::FineTuneJob;

/// The first problem with the pod metadata or node selector of `job`, if any.
pub fn invalid_pod_metadata(job: &FineTuneJob) -> Option<String> {
    let spec = &job.spec;
    let template = spec.pod_template.as_ref();
    let labels = template
        .and_then(|t| t.labels.as_ref())
        .into_iter()
        .flatten();
    let annotations = template
        .and_then(|t| t.annotations.as_ref())
        .into_iter()
        .flatten();
    let selector = spec
        .scheduling
        .as_ref()
        .and_then(|s| s.node_selector.as_ref())
        .into_iter()
        .flatten();
    for (field, key) in labels
        .map(|(k, _)| ("podTemplate.labels", k))
        .chain(annotations.map(|(k, _)| ("podTemplate.annotations", k)))
        .chain(
            selector
                .clone()
                .map(|(k, _)| ("scheduling.nodeSelector", k)),
        )
    {
        if !is_qualified_name(key) {
            return Some(format!(
                "{field} key {key:?} is not a valid key: an optional DNS subdomain prefix and '/', then at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
            ));
        }
    }
    selector
        .filter(|(_, v)| !is_label_value(v))
        .map(|(k, v)| {
            format!(
                "scheduling.nodeSelector value {v:?} of {k:?} is not a valid label value: at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
            )
        })
        .next()
}

/// `prefix/name` or `name`, as Kubernetes requires of label and annotation keys.
fn is_qualified_name(key: &str) -> bool {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    !name.is_empty() && is_label_value(name) && prefix.is_none_or(is_dns_subdomain)
}

/// Empty, or at most 63 alphanumerics, `-`, `_`, `.`, beginning and ending alphanumeric.
fn is_label_value(value: &str) -> bool {
    let bytes = value.as_bytes();
    value.len() <= 63
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && bytes.first().is_none_or(u8::is_ascii_alphanumeric)
        && bytes.last().is_none_or(u8::is_ascii_alphanumeric)
}

/// Lowercase DNS labels joined by dots, at most 253 characters.
fn is_dns_subdomain(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 253
        && value.split('.').all(|label| {
            let bytes = label.as_bytes();
            !bytes.is_empty()
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
                && bytes.first().is_some_and(|b| *b != b'-')
                && bytes.last().is_some_and(|b| *b != b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_values_follow_kubernetes() {
        for good in ["team", "app.kubernetes.io/name", "example.com/a_b.c-d", "a"] {
            assert!(is_qualified_name(good), "{good}");
        }
        for bad in [
            "",
            "a b",
            "-a",
            "a-",
            "Example.com/x",
            "/x",
            "x/",
            "a/b/c",
            &"n".repeat(64),
        ] {
            assert!(!is_qualified_name(bad), "{bad}");
        }
        assert!(is_label_value(""));
        assert!(!is_label_value("a b"));
    }

    #[test]
    fn the_first_bad_key_is_reported() {
        let job: FineTuneJob = serde_json::from_value(serde_json::json!({
            "apiVersion": "finetune.dev/v1alpha1", "kind": "FineTuneJob", "metadata": {"name": "ft"},
            "spec": {"image": "i", "model": {"claimName": "m"}, "dataset": {"claimName": "d", "path": "p"},
                     "output": {"claimName": "o"}, "training": {"epochs": 1},
                     "podTemplate": {"annotations": {"bad key": "x"}}},
        }))
        .unwrap();
        let message = invalid_pod_metadata(&job).unwrap();
        assert!(
            message.contains("podTemplate.annotations key \"bad key\""),
            "{message}"
        );
    }
}
