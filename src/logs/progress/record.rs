//! What the parser reads out of a log: one [`Record`] per fact, in log order.
//!
//! Epochs in records are InstructLab's own, counted from 0 (`"epoch": 0` is the first epoch, its
//! checkpoint is `full_state/epoch_0`); [`super::fold`] turns them into the 1-based epochs of the
//! status.

use crate::api::CheckpointKind;

/// One fact from the rank-0 log.
#[derive(Clone, Debug, PartialEq)]
pub enum Record {
    /// Metrics of one step, from a JSON block or a `key=value` line.
    Step(StepMetrics),
    /// The run's shape, printed before the first step: `script_params` (epochs) and the
    /// `num_batches`/`total_samples` record.
    Setup(Setup),
    /// One rank's `Epoch: E, Step: S, Rank: R, loss = L` line.
    RankLoss(RankLoss),
    /// A checkpoint finished saving (the "Saving …" and "… saved in" markers, paired).
    CheckpointSaved(SavedCheckpoint),
    /// Training restarted from a saved full state (`Loading state from:` and the metadata line).
    Resumed(ResumePoint),
    /// `Resuming mid-epoch: epoch=E, last_step=S`: the resumed epoch `epoch` is not finished.
    ResumedMidEpoch { epoch: i64, last_step: Option<i64> },
    /// `No checkpoints to load from`: training starts over from the first step.
    FreshStart,
    /// `On-demand checkpoint saved (…). Exiting training.` (v0.16+, `--on_demand_checkpointing`):
    /// the checkpoint asked for through the trigger file is written and the process ends with
    /// exit code 0, epochs left or not.
    OnDemandExit,
    /// A validation loss (v0.14.2+ with `--validation_split`): rank 0's `Validation loss:
    /// 5.123456` (`%.6f`) and the `val_loss=5.123, val_num_tokens=…` dict that follows it.
    ValidationLoss { loss: f64 },
    /// torchrun, the container's first process, received a signal and stops the workers:
    /// `SignalException: Process 1 got signal: 15` (it then exits 1), or its agent's earlier
    /// `Received 15 death signal, shutting down workers`.
    LauncherSignal { signal: i64 },
}

/// How the metrics of a step were printed, which tells the library version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricsFormat {
    /// v0.5–v0.10: a pretty-printed JSON block.
    JsonBlock,
    /// v0.11+: one `key=value, …` message through Rich.
    KeyValue,
}

/// Which key carried the loss: `total_loss` up to v0.11, `avg_loss` from v0.12.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LossKey {
    TotalLoss,
    AvgLoss,
}

/// Metrics InstructLab logs once per step on rank 0.
#[derive(Clone, Debug, PartialEq)]
pub struct StepMetrics {
    pub format: MetricsFormat,
    /// From 0.
    pub epoch: i64,
    /// `step` as logged: from 1, counting on across epochs, but starting again from 1 after a
    /// resume from an end-of-epoch full state.
    pub step: i64,
    pub rank: Option<i64>,
    /// Samples seen since the start of the run (restored on resume).
    pub samples_seen: i64,
    pub loss: Option<f64>,
    pub loss_key: Option<LossKey>,
    /// `overall_throughput`, samples per second.
    pub throughput: Option<f64>,
    /// Samples in one epoch.
    pub total_samples: Option<i64>,
    /// Steps in one epoch (v0.11+).
    pub num_epoch_steps: Option<i64>,
}

/// Facts about the whole run printed before training.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Setup {
    /// `num_epochs` of `script_params` (v0.5–v0.10 only).
    pub num_epochs: Option<i64>,
    /// `num_batches`: steps in one epoch.
    pub steps_per_epoch: Option<i64>,
    /// Samples in one epoch.
    pub total_samples: Option<i64>,
}

/// A per-rank loss line.
#[derive(Clone, Debug, PartialEq)]
pub struct RankLoss {
    /// From 0.
    pub epoch: i64,
    pub step: i64,
    pub rank: i64,
    /// The rank's loss (v0.5–v0.11), or the average over ranks (v0.12+). `None` when the value
    /// was not a number.
    pub loss: Option<f64>,
}

/// A checkpoint that finished saving.
#[derive(Clone, Debug, PartialEq)]
pub struct SavedCheckpoint {
    pub kind: CheckpointKind,
    /// Directory as the training pod sees it.
    pub path: String,
    /// From 0, when the log says (full states: `epoch_N`).
    pub epoch: Option<i64>,
    /// When the log says (`samples_N`, or the saved training state).
    pub samples: Option<i64>,
    /// `global_step` of the saved training state: only an on-demand checkpoint (v0.16+) has
    /// one, taken within its epoch; the next step to run, one past the last step logged.
    pub global_step: Option<i64>,
}

/// The full state a run restarted from.
#[derive(Clone, Debug, PartialEq)]
pub struct ResumePoint {
    /// Directory, when the `Loading state from:` line was read.
    pub path: Option<String>,
    /// Epoch of the checkpoint, from 0: training goes on with the next one.
    pub epoch: i64,
    pub samples: Option<i64>,
    /// `global_step` of an on-demand checkpoint (see [`SavedCheckpoint::global_step`]): it
    /// was taken within epoch `epoch`. InstructLab 0.16.2 still goes on with the next epoch,
    /// so the rest of this one is never trained.
    pub global_step: Option<i64>,
}
