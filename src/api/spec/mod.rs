//! `FineTuneJob.spec`: what to train, on what, with which resources.
//!
//! This file holds the top-level spec, the FineTuneJob custom resource derived from it, and its
//! accessors; the nested types live in the submodules, grouped by topic.

use k8s_openapi::api::core::v1::{EnvVar, LocalObjectReference};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::rules;
use super::status::FineTuneJobStatus;
use defaults::{default_backoff_limit, default_disruption_limit, default_termination_grace_period};

mod defaults;
mod placement;
mod storage;
mod tracking;
mod training;

pub use defaults::DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS;
pub use placement::*;
pub use storage::*;
pub use tracking::*;
pub use training::*;

/// A fine-tuning run: optional data preprocessing, then InstructLab training on one or more GPU
/// nodes as a Kubeflow PyTorchJob. The spec is immutable once created, except `suspend` and
/// `cleanup`.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "finetune.dev",
    version = "v1alpha1",
    kind = "FineTuneJob",
    plural = "finetunejobs",
    singular = "finetunejob",
    shortname = "ftj",
    category = "finetune",
    namespaced,
    status = "FineTuneJobStatus",
    derive = "PartialEq",
    doc = "A fine-tuning run: optional data preprocessing, then InstructLab training on one or more GPU nodes as a Kubeflow PyTorchJob.",
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase", description = "Pending, Initializing, Training, Succeeded, Failed or Suspended"),
    printcolumn(name = "Progress", type_ = "integer", json_path = ".status.progress.percent", description = "Percent of the training done"),
    printcolumn(name = "Epoch", type_ = "string", json_path = ".status.progress.epochText", description = "Current epoch out of the total, e.g. 2/3"),
    printcolumn(name = "Loss", type_ = "number", json_path = ".status.progress.loss", description = "Most recent training loss"),
    printcolumn(name = "Val Loss", type_ = "number", json_path = ".status.progress.validationLoss", priority = 1, description = "Most recent validation loss, with training.validation set"),
    printcolumn(name = "ETA", type_ = "date", json_path = ".status.progress.eta", priority = 1, description = "When training is estimated to finish"),
    printcolumn(name = "GPU-Hours", type_ = "number", json_path = ".status.usage.gpuHours", priority = 1, description = "GPU-hours the training pods used, over all attempts"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    printcolumn(name = "Model", type_ = "string", json_path = ".spec.model.claimName", priority = 1, description = "Claim holding the base model"),
    printcolumn(name = "Nodes", type_ = "integer", json_path = ".spec.resources.nodes", priority = 1, description = "Training nodes"),
    printcolumn(name = "GPUs", type_ = "integer", json_path = ".spec.resources.gpusPerNode", priority = 1, description = "GPUs per node"),
    validation = rules::name(),
    cel
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = rules::max_batch_len())]
#[x_kube(validation = rules::immutable_spec())]
#[x_kube(validation = rules::trainjob_priority_class())]
#[x_kube(validation = rules::trainjob_scheduler_name())]
#[x_kube(validation = rules::trainjob_image_pull_policy())]
#[x_kube(validation = rules::trainjob_queue())]
pub struct FineTuneJobSpec {
    /// The Kubeflow kind that runs training: `PyTorchJob` (Kubeflow training operator v1, the
    /// default) or `TrainJob` (Kubeflow Trainer v2, on the ClusterTrainingRuntimes the project
    /// ships in deploy/trainer/). Both run the same pods and report the same status. With
    /// TrainJob, scheduling.priorityClassName, scheduling.schedulerName and imagePullPolicy
    /// cannot be set (Trainer has no field for them), and a job queued by Kueue
    /// (scheduling.queueName) keeps terminationGracePeriodSeconds at its default, 120 (Kueue
    /// v0.17 drops a TrainJob's own grace period; the runtimes hold the default). Immutable.
    #[serde(default)]
    pub backend: Backend,

    /// Container image with `instructlab-training` installed, used by both the preprocess Job and
    /// the training pods. Nothing is installed at run time.
    #[schemars(length(min = 1, max = 1024), regex(pattern = r"^\S+$"))]
    pub image: String,

    /// Image pull policy for both phases: Always, IfNotPresent or Never. Defaults as in a Pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<ImagePullPolicy>,

    /// Secrets used to pull the image, in both phases.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16))]
    pub image_pull_secrets: Option<Vec<LocalObjectReference>>,

    /// The base model, mounted read-only at /model.
    pub model: ModelSource,

    /// The training data, mounted read-only at /data.
    pub dataset: DatasetSource,

    /// Where checkpoints, the processed data and the final model are written, mounted
    /// read-write at /output. For more than one node it must be a claim every node can mount
    /// (ReadWriteMany).
    pub output: OutputTarget,

    /// Turns on the Initializing phase: a CPU-only Job runs
    /// `python -m instructlab.training.data_process` once and writes
    /// /output/<output.path>/data/data.jsonl before any GPU is claimed. Without it,
    /// dataset.path must already be processed data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preprocess: Option<PreprocessSpec>,

    /// Training hyperparameters, passed to `instructlab.training.main_ds`.
    pub training: TrainingSpec,

    /// Nodes and GPUs for training.
    #[serde(default)]
    pub resources: NodeResources,

    /// Where the pods of both phases may run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduling: Option<SchedulingSpec>,

    /// Environment variables added to the containers of both phases, after the operator's
    /// defaults. Plain Kubernetes EnvVars: `$(VAR)` references are expanded as usual. A value
    /// holds at most 32768 characters; pass larger data with valueFrom.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    pub env: Option<Vec<EnvVar>>,

    /// Labels and annotations added to every pod of both phases.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_template: Option<PodTemplateOverrides>,

    /// ServiceAccount the pods of both phases run as. Defaults to the namespace's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub service_account_name: Option<String>,

    /// User and groups the pods of both phases run as (a safe subset of the pod
    /// securityContext). The containers always run without privilege escalation, with every
    /// capability dropped and the RuntimeDefault seccomp profile; with runAsNonRoot: true the
    /// pods also meet the restricted Pod Security Standard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_security_context: Option<PodSecurityOptions>,

    /// Seconds training may run, counted from the moment training starts (and again from a
    /// resume). Enforced by the operator: the job then fails with reason DeadlineExceeded and
    /// its training pods are stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub active_deadline_seconds: Option<i64>,

    /// Seconds training may go without a new step in the rank-0 log (from the start of
    /// training, or the last step) before the job is marked Stalled with a Warning event. The
    /// job keeps running; this is an alarm, not a deadline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub progress_deadline_seconds: Option<i64>,

    /// Retries of failed pods, for the preprocess Job and the PyTorchJob.
    #[serde(default = "default_backoff_limit")]
    #[schemars(range(min = 0, max = 100))]
    pub backoff_limit: i32,

    /// Seconds a training pod gets to stop (its pod's terminationGracePeriodSeconds): with
    /// training.onDemandCheckpointing, the time to save an on-demand checkpoint when the pod is
    /// suspended, preempted, evicted or drained, before it is killed. Size it for writing the
    /// model's full state (weights and optimizer) to the output volume.
    #[serde(default = "default_termination_grace_period")]
    #[schemars(range(min = 0, max = 86400))]
    pub termination_grace_period_seconds: i64,

    /// Times training may be interrupted by a disruption and resume as a new attempt before the
    /// job fails with DisruptionLimitExceeded. A disruption stops the pods for a reason that is
    /// not the run's own failure: an eviction, a node drain or loss (the pod condition
    /// DisruptionTarget), a SIGTERM, or an on-demand checkpoint's exit. The new attempt resumes
    /// from the last full-state checkpoint (an on-demand one with
    /// training.onDemandCheckpointing). Counted apart from backoffLimit, which still fails real
    /// errors fast. Kueue preemptions are not counted: Kueue re-admits the job itself.
    #[serde(default = "default_disruption_limit")]
    #[schemars(range(min = 0, max = 100))]
    pub disruption_limit: i32,

    /// While true the job is not started, and a running job's children are suspended (their
    /// pods are deleted). Set it back to false to resume; training resumes from the last full
    /// state checkpoint when there is one. With scheduling.queueName, a PyTorchJob already handed
    /// to Kueue is not suspended: Kueue owns its suspension.
    #[serde(default)]
    pub suspend: bool,

    /// What happens to the children when the job finishes.
    #[serde(default)]
    pub cleanup: CleanupSpec,
}

/// The Kubeflow kind that runs training.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema,
)]
pub enum Backend {
    /// A `kubeflow.org/v1` PyTorchJob (Kubeflow training operator v1).
    #[default]
    PyTorchJob,
    /// A `trainer.kubeflow.org/v1alpha1` TrainJob (Kubeflow Trainer v2).
    TrainJob,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PyTorchJob => "PyTorchJob",
            Self::TrainJob => "TrainJob",
        }
    }
}

/// Image pull policy of the containers.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub enum ImagePullPolicy {
    Always,
    IfNotPresent,
    Never,
}

impl ImagePullPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Always => "Always",
            Self::IfNotPresent => "IfNotPresent",
            Self::Never => "Never",
        }
    }
}

/// Cleanup of the children once the job finished.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CleanupSpec {
    /// Delete the preprocess Job and the PyTorchJob (and so their pods and logs) when the job
    /// has finished. The FineTuneJob itself is never deleted by the operator.
    #[serde(default)]
    pub delete_children_after_finished: bool,
}

impl FineTuneJobSpec {
    /// Directory inside the output claim: `output.path`, or the job's name.
    pub fn output_dir<'a>(&'a self, job_name: &'a str) -> &'a str {
        self.output.path.as_deref().unwrap_or(job_name)
    }

    /// The queue Kueue admits the PyTorchJob from, if any.
    pub fn queue_name(&self) -> Option<&str> {
        self.scheduling.as_ref()?.queue_name.as_deref()
    }
}
