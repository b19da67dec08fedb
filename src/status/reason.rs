//! Every reason the operator writes: of the phase (`status.reason`), of a condition, of an Event.
//!
//! Users, alerts and Argo CD match on these words, so they are API, and this is their one home:
//! a [`Reason`] can only be made here, so no call site can pass a string literal. [`ALL`] lists
//! them all (a test proves it complete, another that `docs/api.md` documents each). Pure data;
//! it touches nothing. Condition *types* live in `api::condition`.
//!
//! Event reasons are distinct per phase, so the event recorder's 6-minute deduplication (keyed on
//! the reason, not the note) never hides a new message.

use std::fmt;

use crate::children::ChildKind;
use crate::logs::progress::Transition;

/// A reason the operator writes.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Reason(&'static str);

impl Reason {
    pub const fn as_str(self) -> &'static str {
        self.0
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl fmt::Debug for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.0, f)
    }
}

impl PartialEq<str> for Reason {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for Reason {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl PartialEq<Reason> for String {
    fn eq(&self, other: &Reason) -> bool {
        self == other.0
    }
}

impl From<Reason> for String {
    fn from(reason: Reason) -> Self {
        reason.0.to_string()
    }
}

// ---- the phases (`status.reason`, `Accepted`, `Initialized`, `Complete`) ----------------------

/// A new job, before anything starts; also the `Accepted` condition's.
pub const ACCEPTED: Reason = Reason("Accepted");
/// The preprocess Job runs.
pub const PREPROCESSING: Reason = Reason("Preprocessing");
/// `Initialized` without a preprocess Job: `spec.preprocess` is not set.
pub const NO_PREPROCESSING: Reason = Reason("NoPreprocessing");
/// The PyTorchJob trains.
pub const TRAINING: Reason = Reason("Training");
/// The PyTorchJob waits for Kueue to admit it.
pub const QUEUED: Reason = Reason("Queued");
/// Kueue stopped the admitted PyTorchJob (preempted or evicted it from its ClusterQueue) and
/// holds it suspended until it admits it again; still Training. Also a Warning event.
pub const PREEMPTED: Reason = Reason("Preempted");
/// A disruption stopped the training pods (the pod condition DisruptionTarget: eviction, node
/// drain or loss); the run goes on as a new attempt. Also a Warning event.
pub const EVICTED: Reason = Reason("Evicted");
/// Training stopped without failing (SIGTERM from outside, an on-demand checkpoint's exit) and
/// goes on as a new attempt. Also a Warning event.
pub const INTERRUPTED: Reason = Reason("Interrupted");
/// A user asked for a checkpoint (`kubectl finetune checkpoint`): InstructLab saved it and
/// exited, and training goes on as a new attempt, not counted as a disruption. Also a Normal
/// event.
pub const CHECKPOINT_REQUESTED: Reason = Reason("CheckpointRequested");
/// `Accepted=False`: the training operator is not installed.
pub const PYTORCHJOB_NOT_INSTALLED: Reason = Reason("PyTorchJobNotInstalled");
/// The trainer.kubeflow.org/v1alpha1 TrainJob kind is not served (`Accepted=False`).
pub const TRAINJOB_NOT_INSTALLED: Reason = Reason("TrainJobNotInstalled");

// ---- events of the phases ---------------------------------------------------------------------

pub const PREPROCESS_STARTED: Reason = Reason("PreprocessStarted");
pub const PREPROCESS_SUCCEEDED: Reason = Reason("PreprocessSucceeded");
/// Also a phase reason (Warning event).
pub const PREPROCESS_FAILED: Reason = Reason("PreprocessFailed");
pub const TRAINING_STARTED: Reason = Reason("TrainingStarted");
pub const TRAINING_SUCCEEDED: Reason = Reason("TrainingSucceeded");
/// Also a phase reason (Warning event).
pub const TRAINING_FAILED: Reason = Reason("TrainingFailed");
/// Also a phase reason (Warning event).
pub const DEADLINE_EXCEEDED: Reason = Reason("DeadlineExceeded");
/// spec.suspend; also the phase and `Suspended` condition reason.
pub const SUSPENDED: Reason = Reason("Suspended");
/// spec.suspend set back to false; also the `Suspended=False` reason.
pub const RESUMED: Reason = Reason("Resumed");
/// The FineTuneJob was deleted before it finished.
pub const CANCELLED: Reason = Reason("Cancelled");

// ---- failures announced as PreprocessFailed or TrainingFailed (status only) --------------------

/// Someone deleted a child before it finished.
pub const CHILD_DELETED: Reason = Reason("ChildDeleted");
/// The PyTorchJob succeeded, but only because InstructLab saved an on-demand checkpoint and
/// exited with code 0 with epochs left: a run that stopped early is never Succeeded.
pub const CHECKPOINTED_NOT_FINISHED: Reason = Reason("CheckpointedNotFinished");
/// Training was interrupted more than spec.disruptionLimit times (also a Warning event).
pub const DISRUPTION_LIMIT_EXCEEDED: Reason = Reason("DisruptionLimitExceeded");
/// A child could not be made: the apiserver refused it, or it could not be built.
pub const CHILD_REJECTED: Reason = Reason("ChildRejected");
/// An object with a child's name exists and is not controlled by the FineTuneJob.
pub const CHILD_CONFLICT: Reason = Reason("ChildConflict");

// ---- failures before anything is created (also Warning events) --------------------------------

/// Another live FineTuneJob writes to the same output directory.
pub const OUTPUT_IN_USE: Reason = Reason("OutputInUse");
/// The spec holds what Kubernetes would refuse on a pod (e.g. a bad label key).
pub const INVALID_SPEC: Reason = Reason("InvalidSpec");

// ---- the Suspended condition ------------------------------------------------------------------

/// `Suspended=False`: spec.suspend has no effect on a queued job; Kueue owns its suspension.
pub const MANAGED_BY_QUEUE: Reason = Reason("ManagedByQueue");

// ---- the Stalled condition and its Warning events ---------------------------------------------

/// Warning events when the Stalled condition turns true.
pub const PREPROCESS_STALLED: Reason = Reason("PreprocessStalled");
pub const TRAINING_STALLED: Reason = Reason("TrainingStalled");
/// No new training step within progressDeadlineSeconds.
pub const PROGRESS_DEADLINE_EXCEEDED: Reason = Reason("ProgressDeadlineExceeded");
/// `Stalled=False`: the pods run (or the child could be created) again.
pub const PROGRESSING: Reason = Reason("Progressing");
/// A child has created no pod within the grace period.
pub const NO_PODS: Reason = Reason("NoPods");
/// The apiserver forbids creating a child (RBAC, quota, admission).
pub const CREATE_FORBIDDEN: Reason = Reason("CreateForbidden");

// ---- diagnoses: the Failed or Stalled condition's specific reason ------------------------------

/// The container hit its memory limit.
pub const OOM_KILLED: Reason = Reason("OOMKilled");
pub const CUDA_OUT_OF_MEMORY: Reason = Reason("CUDAOutOfMemory");
pub const NCCL_TIMEOUT: Reason = Reason("NCCLTimeout");
pub const NCCL_ERROR: Reason = Reason("NCCLError");
/// torchrun received a signal (SIGTERM: the pod was deleted, evicted or preempted).
pub const TERMINATED: Reason = Reason("Terminated");
/// The image's InstructLab refused the command line (argparse), e.g. a flag of a newer release.
pub const INCOMPATIBLE_IMAGE: Reason = Reason("IncompatibleImage");
pub const IMAGE_PULL_FAILED: Reason = Reason("ImagePullFailed");
pub const INSUFFICIENT_GPUS: Reason = Reason("InsufficientGPUs");
pub const VOLUME_NOT_BOUND: Reason = Reason("VolumeNotBound");
pub const UNSCHEDULABLE: Reason = Reason("Unschedulable");
/// No scheduler looked at the pod (a schedulerName that does not run).
pub const NOT_SCHEDULED: Reason = Reason("NotScheduled");

// ---- progress events, from the rank-0 log -----------------------------------------------------

pub const EPOCH_COMPLETED: Reason = Reason("EpochCompleted");
pub const CHECKPOINT_SAVED: Reason = Reason("CheckpointSaved");
pub const RESUMED_FROM_CHECKPOINT: Reason = Reason("ResumedFromCheckpoint");
/// `Checkpointed=True` and its Normal event: InstructLab saved an on-demand checkpoint.
pub const ON_DEMAND_CHECKPOINT_SAVED: Reason = Reason("OnDemandCheckpointSaved");
/// Warning when a job succeeds although the log shows planned samples never trained.
pub const SAMPLES_SKIPPED: Reason = Reason("SamplesSkipped");

/// Every reason above, once.
pub const ALL: &[Reason] = &[
    ACCEPTED,
    PREPROCESSING,
    NO_PREPROCESSING,
    TRAINING,
    QUEUED,
    PREEMPTED,
    EVICTED,
    INTERRUPTED,
    CHECKPOINT_REQUESTED,
    PYTORCHJOB_NOT_INSTALLED,
    TRAINJOB_NOT_INSTALLED,
    PREPROCESS_STARTED,
    PREPROCESS_SUCCEEDED,
    PREPROCESS_FAILED,
    TRAINING_STARTED,
    TRAINING_SUCCEEDED,
    TRAINING_FAILED,
    DEADLINE_EXCEEDED,
    SUSPENDED,
    RESUMED,
    CANCELLED,
    CHILD_DELETED,
    CHECKPOINTED_NOT_FINISHED,
    DISRUPTION_LIMIT_EXCEEDED,
    CHILD_REJECTED,
    CHILD_CONFLICT,
    OUTPUT_IN_USE,
    INVALID_SPEC,
    MANAGED_BY_QUEUE,
    PREPROCESS_STALLED,
    TRAINING_STALLED,
    PROGRESS_DEADLINE_EXCEEDED,
    PROGRESSING,
    NO_PODS,
    CREATE_FORBIDDEN,
    OOM_KILLED,
    CUDA_OUT_OF_MEMORY,
    NCCL_TIMEOUT,
    NCCL_ERROR,
    TERMINATED,
    INCOMPATIBLE_IMAGE,
    IMAGE_PULL_FAILED,
    INSUFFICIENT_GPUS,
    VOLUME_NOT_BOUND,
    UNSCHEDULABLE,
    NOT_SCHEDULED,
    EPOCH_COMPLETED,
    CHECKPOINT_SAVED,
    RESUMED_FROM_CHECKPOINT,
    ON_DEMAND_CHECKPOINT_SAVED,
    SAMPLES_SKIPPED,
];

/// Whether the phase `reason` says training is between attempts (stopped by Kueue or a
/// disruption, and not running again yet): no deadline or progress clock runs then.
pub fn between_attempts(reason: Option<&str>) -> bool {
    reason.is_some_and(|r| {
        [PREEMPTED, EVICTED, INTERRUPTED, CHECKPOINT_REQUESTED]
            .iter()
            .any(|b| b == r)
    })
}

/// The event reason of a change the rank-0 log shows.
pub fn of_transition(transition: &Transition) -> Reason {
    match transition {
        Transition::EpochCompleted { .. } => EPOCH_COMPLETED,
        Transition::CheckpointSaved { .. } => CHECKPOINT_SAVED,
        Transition::ResumedFromCheckpoint { .. } => RESUMED_FROM_CHECKPOINT,
    }
}

/// The Warning that announces a failure in the phase of the child `kind` (the failure's own
/// reason, e.g. ChildConflict, is the status's).
pub fn failed(kind: ChildKind) -> Reason {
    match kind {
        ChildKind::Preprocess => PREPROCESS_FAILED,
        ChildKind::PyTorchJob | ChildKind::TrainJob => TRAINING_FAILED,
    }
}

/// The Warning when the Stalled condition turns true in the phase of the child `kind`.
pub fn stalled(kind: ChildKind) -> Reason {
    match kind {
        ChildKind::Preprocess => PREPROCESS_STALLED,
        ChildKind::PyTorchJob | ChildKind::TrainJob => TRAINING_STALLED,
    }
}
