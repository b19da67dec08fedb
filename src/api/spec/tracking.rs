//! Experiment tracking: where InstructLab sends its training metrics besides its own JSONL file.
//! Credentials come only from Secrets, never from a value in the spec.

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use crate::api::rules;

/// Experiment tracking backends. Each one set is turned on; several may be used together.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrackingSpec {
    /// Log to an MLflow tracking server (`--mlflow_*`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mlflow: Option<MlflowSpec>,

    /// Log to Weights & Biases (`--wandb_*`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wandb: Option<WandbSpec>,

    /// Write TensorBoard event files into this directory, relative to the job's output
    /// directory (/output/<output.path>/<tensorboardDir>, `--tensorboard_log_dir`). A relative
    /// path without '.', '..' or empty segments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    #[x_kube(validation = rules::relative_path())]
    pub tensorboard_dir: Option<String>,
}

/// An MLflow tracking server. MLflow takes username and password over a token when it has both.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = rules::mlflow_credentials())]
pub struct MlflowSpec {
    /// Tracking server URI, e.g. "http://mlflow.mlflow.svc:5000" (`--mlflow_tracking_uri`).
    /// Without credentials in it: give those with token, or username and password.
    #[schemars(length(min = 1, max = 2048))]
    #[x_kube(validation = rules::tracking_uri())]
    pub tracking_uri: String,

    /// Experiment the run is logged under (`--mlflow_experiment_name`). Unset uses MLflow's
    /// default experiment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    #[x_kube(validation = rules::tracking_name("training.tracking.mlflow.experimentName"))]
    pub experiment_name: Option<String>,

    /// Name of the run (`--mlflow_run_name`). InstructLab replaces {time}, {utc_time}, {rank}
    /// and {local_rank} in it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    #[x_kube(validation = rules::tracking_name("training.tracking.mlflow.runName"))]
    pub run_name: Option<String>,

    /// Bearer token, from a Secret (env MLFLOW_TRACKING_TOKEN of the training containers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<FromSecret>,

    /// User name for basic authentication, from a Secret (env MLFLOW_TRACKING_USERNAME).
    /// Needs password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<FromSecret>,

    /// Password for basic authentication, from a Secret (env MLFLOW_TRACKING_PASSWORD).
    /// Needs username.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<FromSecret>,
}

/// A Weights & Biases project.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct WandbSpec {
    /// Project the run is logged to (`--wandb_project`).
    #[schemars(length(min = 1, max = 256))]
    #[x_kube(validation = rules::tracking_name("training.tracking.wandb.project"))]
    pub project: String,

    /// Team or user that owns the project (`--wandb_entity`). Unset uses the API key's default
    /// entity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    #[x_kube(validation = rules::tracking_name("training.tracking.wandb.entity"))]
    pub entity: Option<String>,

    /// Name of the run (`--wandb_run_name`). InstructLab replaces {time}, {utc_time}, {rank}
    /// and {local_rank} in it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    #[x_kube(validation = rules::tracking_name("training.tracking.wandb.runName"))]
    pub run_name: Option<String>,

    /// API key, from a Secret (env WANDB_API_KEY of the training containers). A server other
    /// than wandb.ai is set with WANDB_BASE_URL in spec.env.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<FromSecret>,
}

/// A credential read from a Secret in the job's namespace. There is deliberately no way to
/// write the value itself into the FineTuneJob.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct FromSecret {
    /// The Secret and key holding the value.
    pub secret_key_ref: SecretKeyRef,
}

/// A key of a Secret in the job's namespace. The Secret must exist: the pods do not start
/// without it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Secret.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub name: String,

    /// Key inside the Secret.
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[-._a-zA-Z0-9]+$"))]
    pub key: String,
}
