//! How training ends, as far as the log says: what the exit code alone does not tell.

use serde::Serialize;

#[cfg(doc)]
use super::record::Record;

/// What the log says about how training ends, which its exit code alone does not tell: a
/// process that exits 0 after an on-demand checkpoint has epochs left, one that ran every epoch
/// may have skipped data, and torchrun exits 1 on SIGTERM. `status::outcome` turns it, with what
/// the last lines say, into the run's outcome.
///
/// The exit and the signal belong to one start of training: a new start (its setup record, a
/// resume, a fresh start) clears them. Of these facts only the on-demand exit is kept in the
/// status (`progress.onDemandExit`): the others follow again from the progress, and a signal
/// from the failing pod's last lines.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Ending {
    /// Samples the run is to train: epochs × samples per epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub planned_samples: Option<i64>,
    /// Every epoch has ended (the progress is at 100 %).
    pub epochs_completed: bool,
    /// By how many samples the last step's `samples_seen` falls short of the plan although
    /// every epoch ended. Packing samples into batches across GPUs may leave a few of each epoch
    /// out; more than a step's worth per epoch means whole steps were skipped ([`skipped`]),
    /// which the log does not say otherwise. Resumed from an on-demand checkpoint taken in
    /// epoch 1 (from 0), InstructLab 0.16.2 skipped the rest of that epoch and 11 steps of the
    /// next: 336 of 2,560 samples.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub samples_short: Option<i64>,
    /// The process saved an on-demand checkpoint and exits ([`Record::OnDemandExit`]): exit
    /// code 0, with epochs left unless `epochs_completed`.
    pub on_demand_exit: bool,
    /// The signal torchrun received ([`Record::LauncherSignal`]); it exits 1 on SIGTERM.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signal: Option<i64>,
}

/// The samples a run that ended every epoch never trained: its shortfall `short`, when that is
/// more than one step's worth of samples per epoch (`samples_per_epoch / steps_per_epoch`,
/// rounded up, × `epochs`). Batches are packed by length and split across GPUs, which may
/// leave a few samples of an epoch out, not a whole step's worth; a larger gap means steps
/// were skipped. Without the steps per epoch nothing is called skipped: the two cannot be told
/// apart.
pub(super) fn skipped(
    short: i64,
    samples_per_epoch: i64,
    steps_per_epoch: Option<i64>,
    epochs: i64,
) -> Option<i64> {
    let steps = steps_per_epoch.filter(|&s| s > 0)?;
    let per_step = samples_per_epoch.saturating_add(steps - 1) / steps;
    (short > per_step.saturating_mul(epochs)).then_some(short)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_more_than_a_step_per_epoch_is_skipped() {
        // 8 epochs of 320 samples in 20 steps: 16 a step, 128 tolerated over the run.
        assert_eq!(skipped(336, 320, Some(20), 8), Some(336));
        assert_eq!(skipped(128, 320, Some(20), 8), None);
        assert_eq!(skipped(129, 320, Some(20), 8), Some(129));
        // 1,012 samples in 8 steps: 127 a step (rounded up).
        assert_eq!(skipped(127, 1012, Some(8), 1), None);
        assert_eq!(skipped(128, 1012, Some(8), 1), Some(128));
        assert_eq!(skipped(336, 320, None, 8), None);
        assert_eq!(skipped(336, 320, Some(0), 8), None);
    }
}
