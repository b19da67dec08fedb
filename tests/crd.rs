//! The committed CRD matches the code, and every field a user can set is documented.
//!
//! Regenerate with `make crds` (or `UPDATE_CRDS=1 cargo test --test crd`), which also writes the
//! Helm chart's copy.

use finetune_operator::api;

const CRD_PATH: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/crds/finetune.dev_finetunejobs.yaml"
);
/// The chart's template inserts this file as it is (charts/finetune-operator/templates/crd.yaml),
/// so a stale copy would make `helm upgrade` install an old schema.
const CHART_CRD_PATH: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/charts/finetune-operator/files/finetune.dev_finetunejobs.yaml"
);

#[test]
fn committed_crd_matches_the_code() {
    let generated = api::crd_yaml();
    if std::env::var_os("UPDATE_CRDS").is_some() {
        std::fs::write(CRD_PATH, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(CRD_PATH).unwrap_or_default();
    assert!(
        committed == generated,
        "crds/finetune.dev_finetunejobs.yaml differs from `finetune-operator crd`; run `make crds`"
    );
}

#[test]
fn the_charts_crd_matches_the_code() {
    let generated = api::crd_yaml();
    if std::env::var_os("UPDATE_CRDS").is_some() {
        std::fs::write(CHART_CRD_PATH, &generated).unwrap();
    }
    let copy = std::fs::read_to_string(CHART_CRD_PATH).unwrap_or_default();
    assert!(
        copy == generated,
        "charts/finetune-operator/files/finetune.dev_finetunejobs.yaml differs from \
         `finetune-operator crd`; run `make crds`"
    );
}

/// Walks a schema and returns the paths of properties without a description.
fn undocumented(schema: &serde_json::Value, path: &str, out: &mut Vec<String>) {
    if let Some(props) = schema.get("properties").and_then(|p| p.as_object()) {
        for (name, prop) in props {
            let here = format!("{path}.{name}");
            if prop
                .get("description")
                .and_then(|d| d.as_str())
                .is_none_or(str::is_empty)
            {
                out.push(here.clone());
            }
            undocumented(prop, &here, out);
        }
    }
    if let Some(items) = schema.get("items") {
        undocumented(items, &format!("{path}[]"), out);
    }
}

#[test]
fn every_field_has_a_description_for_kubectl_explain() {
    let crd = serde_json::to_value(api::crd()).unwrap();
    let root = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
    let mut missing = Vec::new();
    undocumented(&root["properties"]["spec"], "spec", &mut missing);
    undocumented(&root["properties"]["status"], "status", &mut missing);
    assert!(
        missing.is_empty(),
        "fields without a description: {missing:#?}"
    );
}

/// Walks a schema and returns the paths of strings, lists and maps without a size limit.
fn unbounded(schema: &serde_json::Value, path: &str, out: &mut Vec<String>) {
    let has = |key: &str| schema.get(key).is_some();
    if schema.get("x-kubernetes-int-or-string") == Some(&serde_json::Value::Bool(true)) {
        if !has("maxLength") {
            out.push(path.to_string());
        }
        return;
    }
    match schema.get("type").and_then(|t| t.as_str()) {
        Some("string") if !has("maxLength") && !has("enum") => out.push(path.to_string()),
        Some("array") if !has("maxItems") => out.push(path.to_string()),
        Some("object") if schema["additionalProperties"].is_object() && !has("maxProperties") => {
            out.push(path.to_string())
        }
        _ => {}
    }
    if let Some(props) = schema.get("properties").and_then(|p| p.as_object()) {
        for (name, prop) in props {
            unbounded(prop, &format!("{path}.{name}"), out);
        }
    }
    if let Some(items) = schema.get("items") {
        unbounded(items, &format!("{path}[]"), out);
    }
    if let Some(values) = schema.get("additionalProperties").filter(|v| v.is_object()) {
        unbounded(values, &format!("{path}{{}}"), out);
    }
}

/// Every string, list and map a user can set has a size limit: the API server refuses what is
/// over it, and the CEL rules' cost estimates stay small.
#[test]
fn every_spec_value_has_a_size_limit() {
    let crd = serde_json::to_value(api::crd()).unwrap();
    let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
    let mut missing = Vec::new();
    unbounded(spec, "spec", &mut missing);
    assert!(missing.is_empty(), "without a size limit: {missing:#?}");
    let limit = |pointer: &str, key: &str| spec.pointer(pointer).unwrap()[key].as_u64();
    assert_eq!(
        limit("/properties/env/items/properties/value", "maxLength"),
        Some(32768)
    );
    assert_eq!(
        limit(
            "/properties/podTemplate/properties/annotations/additionalProperties",
            "maxLength"
        ),
        Some(4096)
    );
}

#[test]
fn crd_shape_matches_the_contract() {
    let crd = api::crd();
    assert_eq!(
        crd.metadata.name.as_deref(),
        Some("finetunejobs.finetune.dev")
    );
    let names = &crd.spec.names;
    assert_eq!(names.short_names.as_deref(), Some(&["ftj".to_string()][..]));
    assert_eq!(
        names.categories.as_deref(),
        Some(&["finetune".to_string()][..])
    );
    assert_eq!(crd.spec.scope, "Namespaced");
    let version = &crd.spec.versions[0];
    assert_eq!(version.name, "v1alpha1");
    assert!(version.subresources.as_ref().unwrap().status.is_some());
    let columns: Vec<(String, i32)> = version
        .additional_printer_columns
        .iter()
        .flatten()
        .map(|c| (c.name.to_uppercase(), c.priority.unwrap_or(0)))
        .collect();
    let expected = [
        ("PHASE", 0),
        ("PROGRESS", 0),
        ("EPOCH", 0),
        ("LOSS", 0),
        ("VAL LOSS", 1),
        ("ETA", 1),
        ("GPU-HOURS", 1),
        ("AGE", 0),
        ("MODEL", 1),
        ("NODES", 1),
        ("GPUS", 1),
    ];
    assert_eq!(
        columns,
        expected
            .iter()
            .map(|(n, p)| (n.to_string(), *p))
            .collect::<Vec<_>>()
    );
}

#[test]
fn descriptions_are_reflowed_for_kubectl_explain() {
    let crd = serde_json::to_value(api::crd()).unwrap();
    let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
    let d = spec["properties"]["output"]["description"]
        .as_str()
        .unwrap();
    assert!(!d.contains('\n'), "{d:?}");
    assert!(d.contains("mounted read-write at /output"));
}
