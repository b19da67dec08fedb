//! Size limits on everything a user can put in `spec`.
//!
//! A FineTuneJob is stored whole in etcd and copied into every pod, so no string, list or map in
//! its spec is unbounded: the API server refuses a value over its limit at admission, with the
//! field and the limit in the message. Bounds also keep the API server's cost estimate of the
//! CEL rules low (an unbounded string is costed as if it filled the whole request).
//!
//! The spec's own fields carry their limits as schema attributes (see `spec.rs`). The Kubernetes
//! types embedded in it (EnvVar, Toleration, Affinity, ResourceRequirements, ...) come from
//! k8s-openapi without any, so [`bound_spec`] adds them to the generated schema: the limits of
//! [`LIMITS`] where a user may plausibly come near, and generous defaults everywhere else. The
//! limits are far above real use; they exist to refuse the absurd.

use serde_json::{Map, Value, json};

/// A limit on one node of the schema, named by its path below `spec`: `.` between properties,
/// `[]` for the items of a list, `{}` for the values of a map.
#[derive(Clone, Copy, Debug)]
pub(super) enum Limit {
    Length(u64),
    Items(u64),
    Properties(u64),
}

/// Characters in an env value: 32 KiB holds any configuration passed that way (a certificate
/// chain, a JSON document). Larger data belongs in a ConfigMap or Secret (`valueFrom`).
pub const MAX_ENV_VALUE_LENGTH: u64 = 32 * 1024;
/// Characters in a pod annotation value: Kubernetes allows 256 KiB of annotations per object in
/// total, which 64 values of 4 KiB (the most podTemplate.annotations holds) just fill.
pub const MAX_ANNOTATION_VALUE_LENGTH: u64 = 4096;
/// A Kubernetes object name (a DNS subdomain), and a ConfigMap or Secret key.
const NAME: u64 = 253;
/// A label value, and a DNS label.
const LABEL_VALUE: u64 = 63;
/// A qualified name, e.g. a label or taint key: a 253-character prefix, '/', a 63-character name.
const QUALIFIED_NAME: u64 = 253 + 1 + 63;

pub(super) const LIMITS: &[(&str, Limit)] = &[
    ("env[].name", Limit::Length(NAME)),
    ("env[].value", Limit::Length(MAX_ENV_VALUE_LENGTH)),
    ("env[].valueFrom.configMapKeyRef.name", Limit::Length(NAME)),
    ("env[].valueFrom.configMapKeyRef.key", Limit::Length(NAME)),
    ("env[].valueFrom.secretKeyRef.name", Limit::Length(NAME)),
    ("env[].valueFrom.secretKeyRef.key", Limit::Length(NAME)),
    ("imagePullSecrets[].name", Limit::Length(NAME)),
    (
        "podTemplate.annotations{}",
        Limit::Length(MAX_ANNOTATION_VALUE_LENGTH),
    ),
    ("scheduling.nodeSelector{}", Limit::Length(LABEL_VALUE)),
    (
        "scheduling.tolerations[].key",
        Limit::Length(QUALIFIED_NAME),
    ),
    ("scheduling.tolerations[].value", Limit::Length(LABEL_VALUE)),
    ("preprocess.resources.claims", Limit::Items(16)),
    (
        "preprocess.resources.claims[].name",
        Limit::Length(LABEL_VALUE),
    ),
    ("preprocess.resources.limits", Limit::Properties(16)),
    ("preprocess.resources.requests", Limit::Properties(16)),
];

/// Any other string of an embedded Kubernetes type: names, keys, paths, selector values.
const DEFAULT_MAX_LENGTH: u64 = 1024;
/// Any other list of an embedded Kubernetes type, e.g. the values of an affinity expression.
const DEFAULT_MAX_ITEMS: u64 = 256;
/// Any other map of an embedded Kubernetes type, e.g. an affinity's matchLabels.
const DEFAULT_MAX_PROPERTIES: u64 = 64;
/// An int-or-string, which in the spec is always a quantity such as "500m" or "64Gi".
const QUANTITY_MAX_LENGTH: u64 = 64;

/// Bounds every string, list and map of the `spec` schema that has no bound yet. Returns the
/// paths of [`LIMITS`] it applied, so a test can tell a stale entry.
pub(super) fn bound_spec(spec: &mut Value) -> Vec<&'static str> {
    let mut applied = Vec::new();
    bound(spec, "", &mut applied);
    applied
}

fn bound(schema: &mut Value, path: &str, applied: &mut Vec<&'static str>) {
    let Some(node) = schema.as_object_mut() else {
        return;
    };
    if let Some((entry, limit)) = LIMITS.iter().find(|(p, _)| *p == path) {
        let (key, value) = match *limit {
            Limit::Length(n) => ("maxLength", n),
            Limit::Items(n) => ("maxItems", n),
            Limit::Properties(n) => ("maxProperties", n),
        };
        if !node.contains_key(key) {
            node.insert(key.to_string(), json!(value));
            applied.push(entry);
        }
    }
    default_bound(node);

    let join = |name: &str| match path {
        "" => name.to_string(),
        _ => format!("{path}.{name}"),
    };
    if let Some(Value::Object(props)) = node.get_mut("properties") {
        for (name, prop) in props.iter_mut() {
            bound(prop, &join(name), applied);
        }
    }
    if let Some(items) = node.get_mut("items") {
        bound(items, &format!("{path}[]"), applied);
    }
    if let Some(values @ Value::Object(_)) = node.get_mut("additionalProperties") {
        bound(values, &format!("{path}{{}}"), applied);
    }
}

fn default_bound(node: &mut Map<String, Value>) {
    let set = |node: &mut Map<String, Value>, key: &str, value: u64| {
        node.entry(key.to_string()).or_insert(json!(value));
    };
    if node.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true)) {
        set(node, "maxLength", QUANTITY_MAX_LENGTH);
        return;
    }
    match node.get("type").and_then(Value::as_str) {
        // An enum is bounded by its values.
        Some("string") if !node.contains_key("enum") => set(node, "maxLength", DEFAULT_MAX_LENGTH),
        Some("array") => set(node, "maxItems", DEFAULT_MAX_ITEMS),
        Some("object")
            if node
                .get("additionalProperties")
                .is_some_and(Value::is_object) =>
        {
            set(node, "maxProperties", DEFAULT_MAX_PROPERTIES)
        }
        _ => {}
    }
}

/// The values of `object` over a `maxLength`, `maxItems` or `maxProperties` of `schema`, as the
/// API server would refuse them (it counts characters, as here), one message per value, with
/// its path. The CEL validator used by `render` checks only the rules, not these bounds.
pub fn size_errors(schema: &Value, object: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    check(schema, object, "", &mut errors);
    errors
}

fn check(schema: &Value, value: &Value, path: &str, errors: &mut Vec<String>) {
    let limit = |key: &str| schema.get(key).and_then(Value::as_u64);
    let join = |name: &str| match path {
        "" => name.to_string(),
        _ => format!("{path}.{name}"),
    };
    match value {
        Value::String(text) => {
            let length = text.chars().count() as u64;
            if let Some(max) = limit("maxLength").filter(|max| length > *max) {
                errors.push(format!(
                    "{path}: too long: {length} characters, at most {max}"
                ));
            }
        }
        Value::Array(items) => {
            let count = items.len() as u64;
            if let Some(max) = limit("maxItems").filter(|max| count > *max) {
                errors.push(format!("{path}: too many items: {count}, at most {max}"));
            }
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    check(item_schema, item, &format!("{path}[{i}]"), errors);
                }
            }
        }
        Value::Object(fields) => {
            let count = fields.len() as u64;
            if let Some(max) = limit("maxProperties").filter(|max| count > *max) {
                errors.push(format!("{path}: too many entries: {count}, at most {max}"));
            }
            let props = schema.get("properties").and_then(Value::as_object);
            let values = schema.get("additionalProperties").filter(|v| v.is_object());
            for (name, field) in fields {
                match props.and_then(|p| p.get(name)) {
                    Some(prop) => check(prop, field, &join(name), errors),
                    None => {
                        if let Some(values) = values {
                            check(values, field, &format!("{path}[{name}]"), errors);
                        }
                    }
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_limit_applies_to_a_field_of_the_spec() {
        let crd =
            serde_json::to_value(<super::super::FineTuneJob as kube::CustomResourceExt>::crd())
                .unwrap();
        let mut spec =
            crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"].clone();
        let applied = bound_spec(&mut spec);
        let stale: Vec<&str> = LIMITS
            .iter()
            .map(|(p, _)| *p)
            .filter(|p| !applied.contains(p))
            .collect();
        assert!(stale.is_empty(), "limits for no unbounded field: {stale:?}");
    }

    #[test]
    fn size_errors_name_the_value_and_the_limit() {
        let schema = json!({
            "type": "object",
            "properties": {
                "env": {"type": "array", "maxItems": 2, "items": {
                    "type": "object",
                    "properties": {"value": {"type": "string", "maxLength": 3}},
                }},
                "labels": {"type": "object", "maxProperties": 1,
                    "additionalProperties": {"type": "string", "maxLength": 2}},
            },
        });
        let object = json!({
            "env": [{"value": "abc"}, {"value": "abcd"}, {"value": "ü"}],
            "labels": {"a": "xyz", "b": "ok"},
        });
        assert_eq!(
            size_errors(&schema, &object),
            [
                "env: too many items: 3, at most 2",
                "env[1].value: too long: 4 characters, at most 3",
                "labels: too many entries: 2, at most 1",
                "labels[a]: too long: 3 characters, at most 2",
            ]
        );
    }
}
