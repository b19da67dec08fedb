//! From records to status values: a pure fold over what the status already says.
//!
//! The controller keeps no parser state across operator restarts, only the status, so the fold
//! starts from a [`LogState`] (the status's `progress` and `checkpoints`) and the records of the
//! new bytes, and returns the next [`LogState`] and the [`Transition`]s the new bytes caused.
//! Folding records already folded changes nothing and reports nothing.
//!
//! Mapping InstructLab's numbers to the status:
//! - `epoch` is InstructLab's 0-based epoch + 1 (the first epoch shows as `1/3`).
//! - `step` counts steps from the start of the run. After a resume from the full state of
//!   epoch `f - 1`, InstructLab counts `step` from 1 again at epoch `f`; when the steps per
//!   epoch `n` are known, `f × n` is added back (`f` follows from a step's epoch and number).
//! - `totalSteps` is steps per epoch (`num_epoch_steps` in v0.11+ metrics, `num_batches` in the
//!   setup record every version prints at start) × epochs. It is left unset rather than guessed
//!   from samples and batch sizes: batches are packed by length, so the guess drifts, and a
//!   wrong value would fire epoch ends early.
//! - `percent` is steps done / total steps, or samples seen / (samples per epoch × epochs) when
//!   the steps per epoch are unknown; it is 100 only once the last epoch has ended and 99 at
//!   most before. It never goes down, except after a restart from a checkpoint or from scratch,
//!   where it drops back to where training really is.
//! - An epoch has ended when its last step's metrics are logged (steps per epoch known) or when
//!   a step of a later epoch is. Rank 0's per-rank line, printed before the metrics of its step,
//!   moves the step but not the loss, and never onto an epoch's last step.
//! - Resumes: the checkpoint resumed from goes into `resumedFrom` (and into `checkpoints` if it
//!   is not there); the progress goes back to it. `No checkpoints to load from` starts over.
//! - `eta` is `now` + samples left / the latest throughput; no `now`, no eta.
//! - `updateTime` (and eta) move only when the progress itself moved, so a reconcile that read
//!   nothing new writes nothing.
//! - `validationLoss` is the latest validation loss; a shorter print of the value it holds
//!   (`val_loss=5.123` after `Validation loss: 5.123456`) does not replace it.
//! - `samplesPlanned` is epochs × samples per epoch; `samplesSkipped` is the shortfall of a run
//!   that ended every epoch, when it is more than a step's worth per epoch
//!   ([`ending::skipped`]).
//! - `onDemandExit` is the on-demand checkpoint's exit of the current start of training.
//!
//! [`Ending`] gathers what the log says about how training ends (every epoch done, samples short
//! of the plan, an on-demand checkpoint's exit, a signal to torchrun): the facts
//! `status::outcome` judges a run by.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde::Serialize;

use super::ending::{self, Ending};
use super::record::{Record, ResumePoint, SavedCheckpoint, StepMetrics};
use super::transition::Transition;
use crate::api::{Checkpoint, CheckpointKind, FineTuneJobStatus, Progress};

/// Checkpoints kept in the status, newest last: a run that saves every few hundred samples
/// would otherwise grow the object without bound.
pub const MAX_CHECKPOINTS: usize = 64;

/// Epoch numbers beyond this are taken for garbage rather than progress.
const MAX_EPOCH: i64 = 1_000_000;

/// What the log has said so far, as status values.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LogState {
    pub progress: Option<Progress>,
    pub checkpoints: Vec<Checkpoint>,
    /// The full state the current run resumed from.
    pub resumed_from: Option<Checkpoint>,
    /// How training ends, as far as the log says. Only the on-demand exit is in the status
    /// (`progress.onDemandExit`); the rest follows from the progress at the next fold.
    pub ending: Ending,
}

impl LogState {
    /// The state a status records. Its ending is what the progress says, without the signal,
    /// which only the log's lines tell.
    pub fn from_status(status: &FineTuneJobStatus) -> Self {
        let p = status.progress.clone().unwrap_or_default();
        let epochs_completed = p.percent == Some(100);
        let samples_short = match (p.samples_planned, p.samples_seen) {
            (Some(planned), Some(seen)) if epochs_completed && seen < planned => {
                Some(planned - seen)
            }
            _ => None,
        };
        LogState {
            progress: status.progress.clone(),
            checkpoints: status.checkpoints.clone(),
            resumed_from: status.resumed_from.clone(),
            ending: Ending {
                planned_samples: p.samples_planned,
                epochs_completed,
                samples_short,
                on_demand_exit: p.on_demand_exit,
                signal: None,
            },
        }
    }
}

/// What the fold needs besides the log.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FoldContext {
    /// Epochs of the run (`spec.training.epochs`); the log's own value is used without it.
    pub total_epochs: Option<i64>,
    /// The time to stamp updates and checkpoints with and to count the eta from.
    pub now: Option<Time>,
}

/// The next state and what changed.
#[derive(Clone, Debug, PartialEq)]
pub struct Folded {
    pub state: LogState,
    pub transitions: Vec<Transition>,
}

/// Folds `records` (in log order) into `prev`.
pub fn fold(prev: &LogState, records: &[Record], ctx: &FoldContext) -> Folded {
    let mut run = Run::new(prev, ctx);
    for record in records {
        run.apply(record);
    }
    run.finish(prev)
}

/// The fold's working state: the progress being built and what the status does not spell out.
struct Run<'a> {
    ctx: &'a FoldContext,
    progress: Progress,
    /// Whether there is any progress to show.
    known: bool,
    steps_per_epoch: Option<i64>,
    total_epochs: Option<i64>,
    /// Epochs ended, as a count.
    completed: i64,
    /// Epoch (from 0) of the latest step read, whose loss and samples the progress holds.
    last_epoch: Option<i64>,
    /// Training restarted in these records: progress may go back.
    restarted: bool,
    checkpoints: Vec<Checkpoint>,
    resumed_from: Option<Checkpoint>,
    ending: Ending,
    transitions: Vec<Transition>,
}

impl<'a> Run<'a> {
    fn new(prev: &LogState, ctx: &'a FoldContext) -> Self {
        let progress = prev.progress.clone().unwrap_or_default();
        // Steps per epoch from what the previous fold derived them into.
        let steps_per_epoch = match (progress.total_steps, progress.total_epochs) {
            (Some(steps), Some(epochs)) if epochs > 0 && steps > 0 && steps % epochs == 0 => {
                Some(steps / epochs)
            }
            _ => None,
        };
        let total_epochs = ctx.total_epochs.or(progress.total_epochs);
        let last_epoch = progress.epoch.map(|e| e.saturating_sub(1));
        let mut completed = last_epoch.unwrap_or(0).max(0);
        if let (Some(step), Some(per_epoch)) = (progress.step, steps_per_epoch) {
            completed = completed.max(step / per_epoch.max(1));
        }
        if progress.percent == Some(100) {
            completed = completed.max(total_epochs.unwrap_or(0));
        }
        Run {
            ctx,
            known: prev.progress.is_some(),
            progress,
            steps_per_epoch,
            total_epochs,
            completed,
            last_epoch,
            restarted: false,
            checkpoints: prev.checkpoints.clone(),
            resumed_from: prev.resumed_from.clone(),
            ending: prev.ending.clone(),
            transitions: Vec::new(),
        }
    }

    fn apply(&mut self, record: &Record) {
        match record {
            Record::Step(step) => self.step(step),
            Record::Setup(setup) => {
                // Printed at every start of training.
                self.new_start();
                self.known = true;
                self.set_steps_per_epoch(setup.steps_per_epoch);
                self.progress.total_samples = setup.total_samples.or(self.progress.total_samples);
                if self.ctx.total_epochs.is_none() {
                    self.total_epochs = setup.num_epochs.or(self.total_epochs);
                }
            }
            Record::RankLoss(line) => {
                // Rank 0's line comes before its metrics: it may move the step, not the loss,
                // and not onto an epoch's last step, which ends the epoch with its metrics.
                let step = self.global_step(line.epoch, line.step);
                let behind =
                    (self.last_epoch, self.progress.step) >= (Some(line.epoch), Some(step));
                let ends_epoch = self.ends_epoch(line.epoch, step);
                if line.rank == 0 && valid_epoch(line.epoch) && !behind && !ends_epoch {
                    self.advance(line.epoch, step);
                }
            }
            Record::CheckpointSaved(saved) => self.checkpoint_saved(saved),
            Record::Resumed(point) => self.resumed(point),
            Record::ResumedMidEpoch { epoch, last_step } => {
                if valid_epoch(*epoch) {
                    self.restart(*epoch);
                    let step = last_step.or(self.progress.step).unwrap_or(0);
                    self.advance(*epoch, step);
                }
            }
            Record::FreshStart => {
                self.restart(0);
                self.resumed_from = None;
                let p = &mut self.progress;
                (p.epoch, p.step, p.samples_seen, p.percent) = (None, None, None, None);
                (p.loss, p.throughput, p.validation_loss) = (None, None, None);
                self.last_epoch = None;
            }
            Record::ValidationLoss { loss } => self.validation_loss(*loss),
            Record::OnDemandExit => self.ending.on_demand_exit = true,
            Record::LauncherSignal { signal } => self.ending.signal = Some(*signal),
        }
    }

    fn step(&mut self, m: &StepMetrics) {
        if m.rank.unwrap_or(0) != 0 || !valid_epoch(m.epoch) || m.step < 0 {
            return;
        }
        self.set_steps_per_epoch(m.num_epoch_steps);
        self.progress.total_samples = m.total_samples.or(self.progress.total_samples);
        let step = self.global_step(m.epoch, m.step);
        // Earlier epochs end before this step's values replace their last ones.
        self.complete_through(m.epoch);
        let p = &mut self.progress;
        p.samples_seen = Some(m.samples_seen);
        p.loss = m.loss.filter(|l| l.is_finite());
        p.throughput = m.throughput.filter(|t| t.is_finite() && *t >= 0.0);
        self.advance(m.epoch, step);
    }

    /// Moves to `step` of `epoch` (from 0) and ends the epoch if that was its last step.
    fn advance(&mut self, epoch: i64, step: i64) {
        self.known = true;
        self.complete_through(epoch);
        self.progress.epoch = Some(epoch + 1);
        self.progress.step = Some(step);
        self.last_epoch = Some(epoch);
        if self.ends_epoch(epoch, step) {
            self.complete_through(epoch + 1);
        }
    }

    /// Whether `step` (from the start of the run) is the last of `epoch`.
    fn ends_epoch(&self, epoch: i64, step: i64) -> bool {
        self.steps_per_epoch
            .is_some_and(|n| step >= (epoch + 1).saturating_mul(n))
    }

    /// Marks epochs up to `count` as ended. Only an epoch whose steps were read is reported:
    /// epochs that passed unseen (a parser started mid-log) have no loss to tell.
    fn complete_through(&mut self, count: i64) {
        if count <= self.completed {
            return;
        }
        if let Some(epoch) = self
            .last_epoch
            .filter(|&e| e >= self.completed && e < count)
        {
            self.transitions.push(Transition::EpochCompleted {
                epoch: epoch.saturating_add(1),
                total_epochs: self.total_epochs,
                loss: self.progress.loss,
                samples_seen: self.progress.samples_seen,
            });
        }
        self.completed = count;
    }

    /// InstructLab's `step` counted from the start of the run (see the module docs): a run
    /// resumed at epoch `f` counts steps from 1 again, so epoch `e`'s steps are
    /// `(e - f) × n + 1 ..= (e - f + 1) × n` and `f` follows from `e` and the step.
    fn global_step(&self, epoch: i64, step: i64) -> i64 {
        let Some(n) = self.steps_per_epoch else {
            return step;
        };
        let first_epoch = epoch - step.saturating_sub(1).max(0) / n;
        if first_epoch <= 0 {
            return step;
        }
        first_epoch.saturating_mul(n).saturating_add(step)
    }

    /// A validation loss, unless it is the one already held as printed with fewer digits:
    /// rank 0 prints `Validation loss: %.6f`, then the same value as `val_loss=%.3f` (or `%.2e`).
    fn validation_loss(&mut self, loss: f64) {
        if !loss.is_finite() {
            return;
        }
        let held = self.progress.validation_loss;
        let shorter = |v: f64| [format!("{v:.3}"), format!("{v:.2e}")];
        if held.is_some_and(|h| shorter(h).iter().any(|s| s.parse() == Ok(loss))) {
            return;
        }
        self.progress.validation_loss = Some(loss);
    }

    fn set_steps_per_epoch(&mut self, steps: Option<i64>) {
        if let Some(steps) = steps.filter(|&s| s > 0) {
            self.steps_per_epoch = Some(steps);
        }
    }

    fn checkpoint_saved(&mut self, saved: &SavedCheckpoint) {
        let checkpoint = Checkpoint {
            path: saved.path.clone(),
            epoch: saved
                .epoch
                .map(|e| e.saturating_add(1))
                .or(self.progress.epoch),
            samples: saved.samples.or(self.progress.samples_seen),
            kind: saved.kind,
            time: self.ctx.now.clone(),
        };
        if self
            .checkpoints
            .iter()
            .any(|c| same_checkpoint(c, &checkpoint))
        {
            return;
        }
        self.keep(checkpoint.clone());
        self.transitions
            .push(Transition::CheckpointSaved { checkpoint });
    }

    fn resumed(&mut self, point: &ResumePoint) {
        if !valid_epoch(point.epoch) {
            return;
        }
        self.known = true;
        self.restart(point.epoch + 1);
        self.last_epoch = Some(point.epoch);
        // Training goes on with the next epoch (unless the checkpoint was the last one).
        let next = point.epoch + 2;
        self.progress.epoch = Some(self.total_epochs.map_or(next, |t| next.min(t.max(1))));
        self.progress.step = self
            .steps_per_epoch
            .map(|s| s.saturating_mul(point.epoch + 1))
            .or(self.progress.step);
        self.progress.samples_seen = point.samples.or(self.progress.samples_seen);
        let Some(path) = &point.path else {
            return;
        };
        let checkpoint = Checkpoint {
            path: path.clone(),
            epoch: Some(point.epoch + 1),
            samples: point.samples,
            kind: CheckpointKind::FullState,
            time: self.ctx.now.clone(),
        };
        let again = self
            .resumed_from
            .as_ref()
            .is_some_and(|r| same_checkpoint(r, &checkpoint));
        if !self.checkpoints.iter().any(|c| c.path == checkpoint.path) {
            self.keep(checkpoint.clone());
        }
        self.resumed_from = Some(checkpoint.clone());
        if !again {
            self.transitions
                .push(Transition::ResumedFromCheckpoint { checkpoint });
        }
    }

    /// Training starts again after `completed` epochs.
    fn restart(&mut self, completed: i64) {
        self.completed = completed;
        self.restarted = true;
        self.new_start();
    }

    /// A new start of training: how the last one ended no longer holds.
    fn new_start(&mut self) {
        self.ending.on_demand_exit = false;
        self.ending.signal = None;
    }

    /// Adds a checkpoint, replacing an older one in the same directory (`last_epoch` is saved
    /// over at every epoch).
    fn keep(&mut self, checkpoint: Checkpoint) {
        self.checkpoints.retain(|c| c.path != checkpoint.path);
        self.checkpoints.push(checkpoint);
        let excess = self.checkpoints.len().saturating_sub(MAX_CHECKPOINTS);
        self.checkpoints.drain(..excess);
    }

    fn finish(mut self, prev: &LogState) -> Folded {
        let total_epochs = self.total_epochs;
        let p = &mut self.progress;
        p.total_epochs = total_epochs;
        if let (Some(per_epoch), Some(epochs)) = (self.steps_per_epoch, total_epochs) {
            p.total_steps = Some(per_epoch.saturating_mul(epochs));
        }
        p.epoch_text = p.epoch.map(|e| match total_epochs {
            Some(total) => format!("{e}/{total}"),
            None => e.to_string(),
        });
        let done = total_epochs.is_some_and(|t| t > 0 && self.completed >= t);
        let planned = total_epochs
            .zip(p.total_samples)
            .filter(|&(e, t)| e > 0 && t > 0)
            .map(|(e, t)| e.saturating_mul(t));
        self.ending.planned_samples = planned;
        self.ending.epochs_completed = done;
        self.ending.samples_short = match (planned, p.samples_seen) {
            (Some(planned), Some(seen)) if done && seen < planned => Some(planned - seen),
            _ => None,
        };
        p.samples_planned = planned;
        p.samples_skipped = match (self.ending.samples_short, p.total_samples, total_epochs) {
            (Some(short), Some(per_epoch), Some(epochs)) => {
                ending::skipped(short, per_epoch, self.steps_per_epoch, epochs)
            }
            _ => None,
        };
        p.on_demand_exit = self.ending.on_demand_exit;
        let percent = if done {
            Some(100)
        } else {
            fraction(p, self.steps_per_epoch, total_epochs).map(|f| f.min(99))
        };
        p.percent = match (percent, prev_percent(prev)) {
            (Some(now), Some(before)) if !self.restarted => Some(now.max(before)),
            (None, _) if !self.restarted => p.percent,
            (now, _) => now,
        };

        let previous = prev.progress.clone().unwrap_or_default();
        let moved = without_times(p) != without_times(&previous);
        if moved {
            p.update_time = self.ctx.now.clone();
            p.eta = if done {
                None
            } else {
                eta(p, total_epochs, self.ctx.now.as_ref())
            };
        } else {
            (p.update_time, p.eta) = (previous.update_time, previous.eta);
        }
        Folded {
            state: LogState {
                progress: self.known.then_some(self.progress),
                checkpoints: self.checkpoints,
                resumed_from: self.resumed_from,
                ending: self.ending,
            },
            transitions: self.transitions,
        }
    }
}

fn valid_epoch(epoch: i64) -> bool {
    (0..MAX_EPOCH).contains(&epoch)
}

/// Same directory, same content: the record was folded before.
fn same_checkpoint(a: &Checkpoint, b: &Checkpoint) -> bool {
    a.path == b.path && a.kind == b.kind && a.samples == b.samples && a.epoch == b.epoch
}

fn prev_percent(prev: &LogState) -> Option<i64> {
    prev.progress.as_ref().and_then(|p| p.percent)
}

/// Percent done, by steps when the steps per epoch are known, else by samples.
fn fraction(p: &Progress, steps_per_epoch: Option<i64>, epochs: Option<i64>) -> Option<i64> {
    let epochs = i128::from(epochs.filter(|&e| e > 0)?);
    let (done, per_epoch) = match (p.step, steps_per_epoch, p.samples_seen, p.total_samples) {
        (Some(step), Some(per_epoch), _, _) => (step, per_epoch),
        (_, _, Some(samples), Some(total)) if total > 0 => (samples, total),
        _ => return None,
    };
    let percent = i128::from(done.max(0)) * 100 / (i128::from(per_epoch) * epochs);
    i64::try_from(percent.min(100)).ok()
}

/// `now` + samples left / throughput, to the second.
fn eta(p: &Progress, epochs: Option<i64>, now: Option<&Time>) -> Option<Time> {
    let total = p.total_samples?.checked_mul(epochs?)?;
    let left = total.checked_sub(p.samples_seen?)?;
    let throughput = p.throughput.filter(|t| *t > 0.0)?;
    if left <= 0 {
        return None;
    }
    let seconds = (left as f64 / throughput).ceil();
    // Beyond a year the estimate says nothing; it also keeps the conversion in range.
    if !(0.0..=31_536_000.0).contains(&seconds) {
        return None;
    }
    let at = now?.0.as_second().checked_add(seconds as i64)?;
    jiff::Timestamp::from_second(at).ok().map(Time)
}

fn without_times(p: &Progress) -> Progress {
    Progress {
        update_time: None,
        eta: None,
        ..p.clone()
    }
}
