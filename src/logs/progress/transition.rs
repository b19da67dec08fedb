//! The changes a fold reports, which the controller publishes as Events.

use serde::Serialize;

use crate::api::{Checkpoint, CheckpointKind};

/// A change the controller reports as an Event.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum Transition {
    /// An epoch ended. Loss and samples are those of its last step, when it was read.
    #[serde(rename_all = "camelCase")]
    EpochCompleted {
        /// From 1.
        epoch: i64,
        total_epochs: Option<i64>,
        loss: Option<f64>,
        samples_seen: Option<i64>,
    },
    /// A checkpoint finished saving.
    CheckpointSaved { checkpoint: Checkpoint },
    /// Training restarted from a saved full state.
    ResumedFromCheckpoint { checkpoint: Checkpoint },
}

impl Transition {
    /// Event reason.
    pub fn reason(&self) -> &'static str {
        match self {
            Transition::EpochCompleted { .. } => "EpochCompleted",
            Transition::CheckpointSaved { .. } => "CheckpointSaved",
            Transition::ResumedFromCheckpoint { .. } => "ResumedFromCheckpoint",
        }
    }

    /// Event note.
    pub fn note(&self) -> String {
        match self {
            Transition::EpochCompleted {
                epoch,
                total_epochs,
                loss,
                samples_seen,
            } => {
                let mut note = match total_epochs {
                    Some(total) => format!("Epoch {epoch}/{total} completed"),
                    None => format!("Epoch {epoch} completed"),
                };
                if let Some(loss) = loss {
                    note += &format!(", loss {loss:.4}");
                }
                if let Some(samples) = samples_seen {
                    note += &format!(", {samples} samples seen");
                }
                note
            }
            Transition::CheckpointSaved { checkpoint } => {
                let kind = match checkpoint.kind {
                    CheckpointKind::Hf => "HuggingFace checkpoint",
                    CheckpointKind::FullState => "Full training state",
                };
                format!("{kind} saved in {}", checkpoint.path)
            }
            Transition::ResumedFromCheckpoint { checkpoint } => {
                format!("Training resumed from {}", checkpoint.path)
            }
        }
    }
}
