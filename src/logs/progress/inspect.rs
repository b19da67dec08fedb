//! `finetune-operator inspect-log FILE`: what the operator would derive from a whole log, and
//! how the run ended.

use serde::Serialize;

use super::ending::Ending;
use super::fold::{FoldContext, LogState, fold};
use super::parser::ProgressParser;
use super::record::{LossKey, MetricsFormat, Record};
use super::transition::Transition;
use crate::api::{Checkpoint, Progress};
use crate::logs::last_lines::last_meaningful_lines;
use crate::status::diagnose::log;
use crate::status::outcome::{RunOutcome, judge};

/// The progress, checkpoints and events the operator would derive from a log, and how the run
/// ended.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Inspection {
    /// How the run ended: `completed`, `checkpointed`, `failed` or `incomplete` (a saved log
    /// has ended, so never `running`).
    pub outcome: RunOutcome,
    /// Epochs × samples per epoch, when the log tells both.
    pub samples_planned: Option<i64>,
    /// Planned samples a run that ended every epoch never trained, when more than a step's
    /// worth per epoch (as `status.progress.samplesSkipped`).
    pub samples_skipped: Option<i64>,
    /// Why the operator would fail the job: for a failed or a checkpointed run.
    pub failure: Option<Failure>,
    /// The InstructLab version the metrics format points to, when there are metrics.
    pub format: Option<&'static str>,
    /// Records read from the log.
    pub records: usize,
    pub progress: Option<Progress>,
    pub checkpoints: Vec<Checkpoint>,
    pub resumed_from: Option<Checkpoint>,
    /// How training ends, as far as the log says.
    pub ending: Ending,
    /// What the operator would report as Events, in log order.
    pub transitions: Vec<Transition>,
}

/// Why a run failed, or stopped before it finished.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Failure {
    /// The reason the operator would give the Failed condition, e.g. `CUDAOutOfMemory`,
    /// `Terminated`, `CheckpointedNotFinished`, `TrainingFailed` when no cause is named.
    pub reason: String,
    /// What happened and what to do about it, or the exception the log ends with.
    pub message: String,
    /// The last meaningful lines of the log, oldest first: no progress bars, blank lines or
    /// per-step records; training samples dropped and secrets masked as in Events.
    pub last_lines: Vec<String>,
}

/// Reads a whole log as the operator would. Without `total_epochs` (the spec's), the log's own
/// count is used when it prints one (v0.5–v0.10). No clock: no `updateTime`, `eta` or
/// checkpoint times.
pub fn inspect(bytes: &[u8], total_epochs: Option<i64>) -> Inspection {
    let mut parser = ProgressParser::new();
    let mut records = parser.feed(bytes);
    records.extend(parser.finish());
    let ctx = FoldContext {
        total_epochs,
        now: None,
    };
    let folded = fold(&LogState::default(), &records, &ctx);
    let format = records.iter().rev().find_map(|r| match r {
        Record::Step(step) => Some(match (step.format, step.loss_key) {
            (MetricsFormat::JsonBlock, _) => "v0.5-v0.10: JSON blocks, total_loss",
            (MetricsFormat::KeyValue, Some(LossKey::AvgLoss)) => "v0.12+: key=value, avg_loss",
            (MetricsFormat::KeyValue, _) => "v0.11: key=value, total_loss",
        }),
        _ => None,
    });
    // The last lines are read as the controller reads a failing pod's tail, with the progress
    // records, which say nothing of a failure, left out.
    let last_lines = last_meaningful_lines(&String::from_utf8_lossy(bytes));
    let verdict = judge(&folded.state, &log::read(&last_lines.join("\n")), true);
    let failure = verdict.reason.map(|reason| Failure {
        reason: reason.to_string(),
        message: verdict.message.unwrap_or_default(),
        last_lines,
    });
    let state = folded.state;
    let progress = state.progress.as_ref();
    Inspection {
        outcome: verdict.outcome,
        samples_planned: progress.and_then(|p| p.samples_planned),
        samples_skipped: progress.and_then(|p| p.samples_skipped),
        failure,
        format,
        records: records.len(),
        progress: state.progress,
        checkpoints: state.checkpoints,
        resumed_from: state.resumed_from,
        ending: state.ending,
        transitions: folded.transitions,
    }
}
