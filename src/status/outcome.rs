//! How a run ended, judged from its rank-0 log: what the fold gathered ([`LogState`] and its
//! [`Ending`](crate::logs::progress::Ending)) and what the last lines say
//! ([`diagnose::log::read`]). The controller judges a PyTorchJob that succeeded by it (an
//! on-demand checkpoint's exit is not a finished run) and `finetune-operator inspect-log` prints
//! it, so the two agree. Pure.

use serde::Serialize;

use super::diagnose::log::{self, TailReading};
use super::reason::{self, Reason};
use crate::api::{CheckpointKind, Progress};
use crate::logs::progress::LogState;

#[cfg(doc)]
use super::diagnose;

/// How a run ended, as far as its log says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum RunOutcome {
    /// Every planned epoch ended.
    Completed,
    /// InstructLab saved an on-demand checkpoint and exited (code 0) with epochs left: not
    /// finished.
    Checkpointed,
    /// The last lines name a cause or end in a Python traceback, or torchrun got a signal.
    Failed,
    /// None of these, and the log goes on: the process still runs.
    Running,
    /// None of these, and the log has ended: it was cut, or its process vanished without a
    /// word (SIGKILL, a lost node).
    Incomplete,
}

/// An outcome and, for one the operator fails a job for, why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub outcome: RunOutcome,
    /// The reason of the Failed condition the operator sets for a failed or checkpointed run.
    pub reason: Option<Reason>,
    /// What happened: the diagnosis, the exception, the on-demand exit.
    pub message: Option<String>,
}

/// Judges a run from what the fold made of its log (`state`) and what its last lines say
/// (`tail`). `ended`: the log will not grow (its process exited, or it is a saved file).
///
/// Failed comes first when the lines leave no doubt (a traceback, a signal); a cause named by
/// a pattern alone (NCCL chatter) counts only when the run neither completed nor checkpointed.
/// Then completed (every epoch ended), checkpointed (an on-demand checkpoint's exit), and
/// running or incomplete.
pub fn judge(state: &LogState, tail: &TailReading, ended: bool) -> Verdict {
    let ending = &state.ending;
    let crashed = tail.traceback || ending.signal.is_some();
    let diagnosed = tail.diagnosis.is_some() && !ending.epochs_completed && !ending.on_demand_exit;
    if crashed || diagnosed {
        let (reason, message) = match (&tail.diagnosis, ending.signal, &tail.exception) {
            (Some(d), _, _) => (d.reason, d.detail.clone()),
            (None, Some(signal), _) => {
                let d = log::terminated(signal);
                (d.reason, d.detail)
            }
            (None, None, Some(exception)) => (reason::TRAINING_FAILED, exception.clone()),
            (None, None, None) => (
                reason::TRAINING_FAILED,
                "the log ends in a Python traceback".to_string(),
            ),
        };
        return Verdict {
            outcome: RunOutcome::Failed,
            reason: Some(reason),
            message: Some(message),
        };
    }
    let (outcome, reason, message) = if ending.epochs_completed {
        (RunOutcome::Completed, None, None)
    } else if ending.on_demand_exit {
        (
            RunOutcome::Checkpointed,
            Some(reason::CHECKPOINTED_NOT_FINISHED),
            Some(checkpointed_message(state)),
        )
    } else if ended {
        (RunOutcome::Incomplete, None, None)
    } else {
        (RunOutcome::Running, None, None)
    };
    Verdict {
        outcome,
        reason,
        message,
    }
}

/// What an on-demand checkpoint's exit left, for `inspect-log`: where the checkpoint is, how far
/// training got, and that the run is not finished.
pub fn checkpointed_message(state: &LogState) -> String {
    checkpoint_saved_message(state)
        + " and exited with code 0 before training finished; a new FineTuneJob with the same output.path resumes from it"
}

/// Where the on-demand checkpoint is and how far training got: the Checkpointed condition.
pub fn checkpoint_saved_message(state: &LogState) -> String {
    let mut message = "InstructLab saved an on-demand checkpoint".to_string();
    if let Some(c) = state
        .checkpoints
        .iter()
        .rfind(|c| c.kind == CheckpointKind::FullState)
    {
        message += &format!(" in {}", c.path);
    }
    if let Some(p) = &state.progress {
        if let Some(epoch) = &p.epoch_text {
            message += &format!(" in epoch {epoch}");
        }
        match (p.samples_seen, p.samples_planned) {
            (Some(seen), Some(planned)) => message += &format!(" ({seen} of {planned} samples)"),
            (Some(seen), None) => message += &format!(" ({seen} samples)"),
            _ => {}
        }
    }
    message
}

/// The warning for a run that ended every epoch without training all its samples, when the
/// progress says so (`samplesSkipped`).
pub fn samples_skipped_message(progress: &Progress) -> Option<String> {
    let skipped = progress.samples_skipped?;
    let planned = progress.samples_planned?;
    let percent = i128::from(skipped) * 100 / i128::from(planned.max(1));
    let seen = progress
        .samples_seen
        .map(|s| format!(" ({s} seen)"))
        .unwrap_or_default();
    Some(format!(
        "{skipped} of {planned} planned samples ({percent} %) were never trained although every epoch ended{seen}: InstructLab skipped steps without a word, as 0.16.2 does when it resumes from an on-demand checkpoint taken within an epoch"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Checkpoint;
    use crate::logs::progress::Ending;

    fn state(ending: Ending) -> LogState {
        LogState {
            ending,
            ..LogState::default()
        }
    }

    fn tail(text: &str) -> TailReading {
        log::read(text)
    }

    #[test]
    fn outcomes() {
        let none = TailReading::default();
        let completed = Ending {
            epochs_completed: true,
            ..Ending::default()
        };
        let on_demand = Ending {
            on_demand_exit: true,
            ..Ending::default()
        };
        let signal = Ending {
            signal: Some(15),
            ..Ending::default()
        };
        let outcome = |s: &LogState, t: &TailReading, ended| judge(s, t, ended).outcome;
        assert_eq!(
            outcome(&state(completed.clone()), &none, true),
            RunOutcome::Completed
        );
        assert_eq!(
            outcome(&state(on_demand.clone()), &none, true),
            RunOutcome::Checkpointed
        );
        assert_eq!(
            outcome(&state(Ending::default()), &none, true),
            RunOutcome::Incomplete
        );
        assert_eq!(
            outcome(&state(Ending::default()), &none, false),
            RunOutcome::Running
        );

        // A signal, without its lines: Terminated.
        let v = judge(&state(signal), &none, true);
        assert_eq!(
            (v.outcome, v.reason),
            (RunOutcome::Failed, Some(reason::TERMINATED))
        );
        // A traceback fails even a run whose epochs all ended (the final save crashed).
        let crash = tail("Traceback (most recent call last):\n  File \"x\"\nOSError: disk full");
        let v = judge(&state(completed.clone()), &crash, true);
        assert_eq!(
            (v.outcome, v.reason, v.message.as_deref()),
            (
                RunOutcome::Failed,
                Some(reason::TRAINING_FAILED),
                Some("OSError: disk full")
            )
        );
        // NCCL chatter without a traceback fails only a run that did not end otherwise.
        let nccl = tail("NCCL WARN Timeout waiting for connection");
        assert_eq!(
            outcome(&state(completed), &nccl, true),
            RunOutcome::Completed
        );
        assert_eq!(
            outcome(&state(on_demand), &nccl, true),
            RunOutcome::Checkpointed
        );
        let v = judge(&state(Ending::default()), &nccl, false);
        assert_eq!(
            (v.outcome, v.reason),
            (RunOutcome::Failed, Some(reason::NCCL_TIMEOUT))
        );
    }

    #[test]
    fn messages_say_how_far_training_got() {
        let mut s = state(Ending {
            on_demand_exit: true,
            ..Ending::default()
        });
        s.checkpoints.push(Checkpoint {
            path: "/output/ft/full_state/epoch_1".into(),
            epoch: Some(2),
            samples: Some(480),
            kind: CheckpointKind::FullState,
            time: None,
        });
        s.progress = Some(Progress {
            epoch_text: Some("2/8".into()),
            samples_seen: Some(480),
            samples_planned: Some(2560),
            ..Progress::default()
        });
        assert_eq!(
            judge(&s, &TailReading::default(), true).message.as_deref(),
            Some(
                "InstructLab saved an on-demand checkpoint in /output/ft/full_state/epoch_1 in epoch 2/8 (480 of 2560 samples) and exited with code 0 before training finished; a new FineTuneJob with the same output.path resumes from it"
            )
        );
        let p = Progress {
            samples_seen: Some(2224),
            samples_planned: Some(2560),
            samples_skipped: Some(336),
            ..Progress::default()
        };
        let m = samples_skipped_message(&p).unwrap();
        assert!(m.starts_with("336 of 2560 planned samples (13 %) were never trained although every epoch ended (2224 seen)"), "{m}");
        assert_eq!(samples_skipped_message(&Progress::default()), None);
    }
}
