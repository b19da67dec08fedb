//! `finetune-operator render -f FILE`: the children a FineTuneJob would get, with no cluster.
//!
//! The file is defaulted and checked against the CRD's size limits and CEL rules as the
//! apiserver would, then built by the same pure functions the controller uses.

use serde_json::Value;
use thiserror::Error;

use crate::api::FineTuneJob;
use crate::children::{BuildError, build_children};

/// Stands in for the uid the apiserver assigns, so owner references can be shown.
pub const PLACEHOLDER_UID: &str = "00000000-0000-0000-0000-000000000000";
/// Namespace used when the file names none, as kubectl would with the default context.
pub const DEFAULT_NAMESPACE: &str = "default";

#[derive(Debug, Error)]
pub enum RenderError {
    #[error("cannot read YAML: {0}")]
    Yaml(String),
    #[error(
        "expected one finetune.dev/v1alpha1 FineTuneJob, found apiVersion {api_version:?} kind {kind:?}"
    )]
    NotAFineTuneJob { api_version: String, kind: String },
    #[error("the API server would refuse this FineTuneJob:\n{}", .0.join("\n"))]
    Invalid(Vec<String>),
    #[error("the spec does not match the schema: {0}")]
    Schema(#[from] serde_json::Error),
    #[error(transparent)]
    Build(#[from] BuildError),
}

/// Reads a FineTuneJob from YAML, applying the schema defaults and checking the size limits and
/// CEL rules.
pub fn parse_finetunejob(yaml: &str) -> Result<FineTuneJob, RenderError> {
    let value: Value =
        serde_saphyr::from_str(yaml).map_err(|e| RenderError::Yaml(e.to_string()))?;
    let field = |name: &str| {
        value
            .get(name)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let (api_version, kind) = (field("apiVersion"), field("kind"));
    if api_version != "finetune.dev/v1alpha1" || kind != "FineTuneJob" {
        return Err(RenderError::NotAFineTuneJob { api_version, kind });
    }
    let crd = crate::api::crd();
    let schema = serde_json::to_value(
        crd.spec.versions[0]
            .schema
            .as_ref()
            .and_then(|s| s.open_api_v3_schema.as_ref())
            .expect("the CRD has a schema"),
    )?;
    let value = kube::core::cel::apply_defaults(&schema, &value);
    // The size limits first: the CEL validator does not check them, the API server does.
    let mut errors = crate::api::size_errors(&schema, &value);
    if let Err(refused) = kube::core::cel::Validator::new().validate(&schema, &value, None) {
        errors.extend(refused.into_vec().into_iter().map(|e| e.to_string()));
    }
    if !errors.is_empty() {
        return Err(RenderError::Invalid(
            errors.into_iter().map(|e| format!("- {e}")).collect(),
        ));
    }
    Ok(serde_json::from_value(value)?)
}

/// Prints the children of the FineTuneJob in `yaml` as a multi-document YAML stream.
pub fn render(yaml: &str) -> Result<String, RenderError> {
    let mut job = parse_finetunejob(yaml)?;
    let meta = &mut job.metadata;
    let placeholder = meta.uid.is_none();
    meta.uid.get_or_insert_with(|| PLACEHOLDER_UID.to_string());
    meta.namespace
        .get_or_insert_with(|| DEFAULT_NAMESPACE.to_string());

    let children = build_children(&job)?;
    let mut docs = Vec::new();
    if let Some(pre) = &children.preprocess {
        docs.push(to_yaml(pre));
    }
    docs.push(to_yaml(&children.training));
    let mut out = String::new();
    if placeholder {
        out.push_str(&format!(
            "# ownerReferences[].uid is a placeholder ({PLACEHOLDER_UID}); the API server assigns the real one.\n"
        ));
    }
    out.push_str(&docs.join("---\n"));
    Ok(out)
}

fn to_yaml<T: serde::Serialize>(value: &T) -> String {
    serde_saphyr::to_string(value).expect("Kubernetes objects serialize to YAML")
}
