//! `FineTuneJob.status`: the durable story of a run, written only by the operator.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use serde::{Deserialize, Serialize};

/// Observed state of a FineTuneJob.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FineTuneJobStatus {
    /// Pending (only while the job waits: a queue, a missing kind) → Initializing → Training →
    /// Succeeded | Failed, or Suspended while suspended.
    /// Never moves backwards; Succeeded and Failed are final.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,

    /// Conditions Accepted, Initialized, Complete, Failed, Suspended and Stalled, each with a
    /// reason and message. lastTransitionTime moves only when the condition's status changes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,

    /// The metadata.generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Short machine-readable reason for the phase, e.g. PreprocessFailed, TrainingFailed,
    /// DeadlineExceeded, ChildDeleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,

    /// Human-readable explanation of the phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,

    /// Name of the preprocess Job, once created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preprocess_job: Option<String>,

    /// Name of the PyTorchJob, once created (backend PyTorchJob).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pytorch_job: Option<String>,

    /// Name of the TrainJob, once created (backend TrainJob).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_job: Option<String>,

    /// When the operator first accepted the job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,

    /// When training started (the PyTorchJob was created or resumed); activeDeadlineSeconds
    /// counts from here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training_start_time: Option<Time>,

    /// When the job reached Succeeded or Failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,

    /// Training progress parsed from the rank-0 log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,

    /// Checkpoints seen in the rank-0 log, oldest first (at most 64: the newest are kept).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checkpoints: Vec<Checkpoint>,

    /// The full training state the current run resumed from, when InstructLab reported
    /// loading one (after a pod restart or a resume).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resumed_from: Option<Checkpoint>,

    /// How far the operator has read the rank-0 log, so that a restarted operator misses no
    /// line and counts none twice. Moved only by a read that found something (lines that
    /// changed nothing are not worth a write; a restarted operator reads them again, to no
    /// effect). Internal bookkeeping.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_cursor: Option<LogCursor>,

    /// Training pods that failed and were recreated by the training operator (restartPolicy
    /// ExitCode recreates a pod that exits with a code of 128 or more, e.g. 137 when killed).
    /// Counted against spec.backoffLimit: past it the job fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_failures: Option<PodFailures>,

    /// GPU time and attempts of training, over every attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
}

/// What training cost: GPU time used and lost, attempts, interruptions. Times are as the
/// operator observed them: an attempt counts from the moment its PyTorchJob was created or
/// started again (admitted, resumed) to the moment the operator saw its pods stop or the
/// PyTorchJob finish; the running attempt is added when it ends.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    /// GPU-seconds the training pods held: requested GPUs (nodes × gpusPerNode) × the time
    /// they ran, summed over the attempts that ended.
    pub gpu_seconds: i64,
    /// gpuSeconds in hours, to two decimals (the GPU-Hours column of `kubectl get -o wide`).
    pub gpu_hours: f64,
    /// GPU-seconds whose work was lost: at each interruption, requested GPUs × the time since
    /// the last full-state checkpoint the next attempt resumes from (or since the attempt
    /// began, when it saved none).
    pub gpu_seconds_lost: i64,
    /// Attempts started: 1 for the first start, one more each time training starts again
    /// after an interruption (a resume, a re-admission by Kueue, a retry after a disruption).
    pub attempts: i32,
    /// Times Kueue stopped the running job (preempted or evicted it from its ClusterQueue).
    pub preemptions: i32,
    /// Disruptions that ended an attempt (eviction, node drain or loss, SIGTERM, an on-demand
    /// checkpoint's exit): counted against spec.disruptionLimit.
    pub disruptions: i32,
    /// When the running attempt started; unset between attempts. Internal bookkeeping.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running_since: Option<Time>,
}

/// Failed training pods, counted once each.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodFailures {
    /// Training pods that failed so far.
    pub count: i32,
    /// Exit codes of the most recent failures, oldest first (at most 16).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exit_codes: Vec<i32>,
    /// UIDs of the most recent failed pods, so that each is counted once (at most 16).
    /// Internal bookkeeping.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pod_uids: Vec<String>,
}

/// A position in the log of one container: after the line stamped `time`, counting `lines`
/// lines carrying exactly that timestamp (several lines can share one).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LogCursor {
    /// UID of the pod the log belongs to; a recreated pod starts a new log.
    pub pod_uid: String,
    /// Timestamp of the last line read, RFC 3339 with nanoseconds, as the kubelet stamps it.
    pub time: String,
    /// Lines read that carry exactly `time`.
    pub lines: i64,
}

/// Lifecycle phase of a FineTuneJob: Pending (accepted, waiting to start or for queue
/// admission), Initializing (preprocessing), Training, Succeeded and Failed (final), Suspended.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, schemars::JsonSchema)]
pub enum Phase {
    // No doc comments on variants: schemars would turn them into a oneOf the CRD cannot hold.
    Pending,
    Initializing,
    Training,
    Succeeded,
    Failed,
    Suspended,
}

impl FineTuneJobStatus {
    /// The name of the training child (PyTorchJob or TrainJob), once created.
    pub fn training_child(&self) -> Option<&str> {
        self.pytorch_job.as_deref().or(self.train_job.as_deref())
    }
}

impl Phase {
    pub const ALL: [Phase; 6] = [
        Phase::Pending,
        Phase::Initializing,
        Phase::Training,
        Phase::Succeeded,
        Phase::Failed,
        Phase::Suspended,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "Pending",
            Phase::Initializing => "Initializing",
            Phase::Training => "Training",
            Phase::Succeeded => "Succeeded",
            Phase::Failed => "Failed",
            Phase::Suspended => "Suspended",
        }
    }

    pub fn is_finished(self) -> bool {
        matches!(self, Phase::Succeeded | Phase::Failed)
    }
}

/// Training progress, from the rank-0 log of the master pod.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Progress {
    /// Current epoch, counted from 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<i64>,
    /// Epochs in the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_epochs: Option<i64>,
    /// Current epoch out of the total, e.g. "2/3" (for kubectl get).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch_text: Option<String>,
    /// Optimizer steps done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<i64>,
    /// Optimizer steps in the run, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_steps: Option<i64>,
    /// Samples seen so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub samples_seen: Option<i64>,
    /// Samples per epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_samples: Option<i64>,
    /// Samples the run is to train: epochs × samples per epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub samples_planned: Option<i64>,
    /// Planned samples never trained although every epoch ended (samplesPlanned − samplesSeen
    /// at the last step), set only when the gap is more than one step's worth of samples per
    /// epoch: packing batches across GPUs may leave out a few samples of each epoch, a larger
    /// gap means whole steps were skipped. InstructLab 0.16.2 resumed from an on-demand
    /// checkpoint skips data this way and says nothing; the job still succeeds, with a
    /// SamplesSkipped Warning event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub samples_skipped: Option<i64>,
    /// Percent of the run done, 0 to 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<i64>,
    /// Most recent training loss.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss: Option<f64>,
    /// Most recent validation loss (InstructLab's "Validation loss", logged every
    /// training.validation.frequency steps when training.validation is set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation_loss: Option<f64>,
    /// Samples per second across all GPUs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throughput: Option<f64>,
    /// Estimated time training finishes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eta: Option<Time>,
    /// When the progress was last read from the log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_time: Option<Time>,
    /// The training process saved an on-demand checkpoint and exited with code 0 (InstructLab's
    /// "On-demand checkpoint saved (…). Exiting training."), with epochs left unless percent is
    /// 100. Cleared when training starts again. Such a run is not finished: the job fails with
    /// CheckpointedNotFinished instead of succeeding.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub on_demand_exit: bool,
}

/// A checkpoint InstructLab reported saving (or loading).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Checkpoint {
    /// Directory of the checkpoint as the training pod sees it (under /output).
    pub path: String,
    /// Epoch the checkpoint was saved at, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<i64>,
    /// Samples seen when the checkpoint was saved, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub samples: Option<i64>,
    /// hf: a HuggingFace model; fullState: resumable optimizer state.
    pub kind: CheckpointKind,
    /// When the operator saw the checkpoint in the log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<Time>,
}

/// Kind of a checkpoint.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum CheckpointKind {
    Hf,
    FullState,
}

/// Condition types the operator maintains.
pub mod condition {
    /// The spec was accepted and the operator can act on it.
    pub const ACCEPTED: &str = "Accepted";
    /// Preprocessing finished (or was not asked for).
    pub const INITIALIZED: &str = "Initialized";
    /// Training finished successfully.
    pub const COMPLETE: &str = "Complete";
    /// The job failed.
    pub const FAILED: &str = "Failed";
    /// The job is suspended.
    pub const SUSPENDED: &str = "Suspended";
    /// Training makes no progress: pods cannot start (no GPUs, image, volume) or no new step
    /// came within spec.progressDeadlineSeconds.
    pub const STALLED: &str = "Stalled";
    /// InstructLab saved an on-demand checkpoint before its pods stopped: where, and how far
    /// training had got.
    pub const CHECKPOINTED: &str = "Checkpointed";
}
