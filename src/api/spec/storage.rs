//! Storage of a FineTuneJob: the claims holding the base model and the training data, and the
//! claim the results are written to.

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use crate::api::rules;

/// The base model.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelSource {
    /// PersistentVolumeClaim holding the model, mounted read-only at /model.
    #[schemars(length(min = 1, max = 253))]
    pub claim_name: String,

    /// Model directory inside the claim (HuggingFace format). Empty means the claim's root.
    #[serde(default)]
    #[schemars(length(max = 1024))]
    #[x_kube(validation = rules::relative_path())]
    pub path: String,
}

/// The training data.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct DatasetSource {
    /// PersistentVolumeClaim holding the data, mounted read-only at /data.
    #[schemars(length(min = 1, max = 253))]
    pub claim_name: String,

    /// JSONL file inside the claim: chat messages when preprocess is set, otherwise data
    /// already processed by InstructLab.
    #[schemars(length(min = 1, max = 1024))]
    #[x_kube(validation = rules::relative_path())]
    pub path: String,
}

/// Where results go.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct OutputTarget {
    /// PersistentVolumeClaim for checkpoints and the final model, mounted read-write at /output.
    #[schemars(length(min = 1, max = 253))]
    pub claim_name: String,

    /// Directory inside the claim. Defaults to the FineTuneJob's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    #[x_kube(validation = rules::relative_path())]
    pub path: Option<String>,
}
