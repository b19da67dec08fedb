//! `finetune-operator inspect-log FILE`: what the operator would derive from a whole log.

use serde::Serialize;

use super::fold::{Ending, FoldContext, LogState, Transition, fold};
use super::parser::ProgressParser;
use super::record::{LossKey, MetricsFormat, Record};
use crate::api::{Checkpoint, Progress};

/// The progress, checkpoints and events the operator would derive from a log.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Inspection {
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
    Inspection {
        format,
        records: records.len(),
        progress: folded.state.progress,
        checkpoints: folded.state.checkpoints,
        resumed_from: folded.state.resumed_from,
        ending: folded.state.ending,
        transitions: folded.transitions,
    }
}
