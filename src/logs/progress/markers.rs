//! Checkpoint and resume markers, which rank 0 `print`s in yellow (`\x1b[93m…\x1b[0m`) in every
//! version, the per-rank loss lines, the validation loss (a Rich message, v0.14.2+), and the
//! lines that tell how the process ends: the on-demand checkpoint's exit (a Rich message, v0.16+)
//! and torchrun's signal (plain lines).
//!
//! A save prints a start and an end marker with other output between them; the pair becomes one
//! [`Record::CheckpointSaved`] at the end marker, so a save that never finished records nothing.
//! The end marker alone is enough (a parser started mid-log may have missed the start).

use super::record::{RankLoss, Record, ResumePoint, SavedCheckpoint};
use super::scan::{find, float_prefix, int_after, int_prefix, trim};
use crate::api::CheckpointKind;

/// Markers whose pair has not finished yet. Paths are at most a line long.
#[derive(Debug, Default)]
pub(super) struct Markers {
    /// `Saving model in huggingface format at …` seen: the samples its name says, if any.
    hf: Option<Option<i64>>,
    full: Option<PendingFullState>,
    /// `Loading state from: <dir>` seen, waiting for the metadata line.
    loading: Option<String>,
}

#[derive(Debug)]
struct PendingFullState {
    path: String,
    epoch: Option<i64>,
    samples: Option<i64>,
    global_step: Option<i64>,
}

impl Markers {
    /// Reads a marker filling `text` (one print, ANSI-free); false when `text` is none.
    pub(super) fn read(&mut self, text: &[u8], out: &mut Vec<Record>) -> bool {
        let text = trim(text);
        if let Some(rest) = text.strip_prefix(b"Saving model in huggingface format at") {
            // v0.6+: "at: samples_N" (or "at: last_epoch"); v0.5: "at samples_seen: N".
            let samples = match rest.strip_prefix(b" samples_seen: ") {
                Some(n) => int_prefix(n).map(|(v, _)| v),
                None => int_after(rest, b"samples_"),
            };
            self.hf = Some(samples);
        } else if let Some(path) = text.strip_prefix(b"Model saved in ") {
            self.hf_saved(trim(path), out);
        } else if let Some(path) = text.strip_prefix(b"Saving full model state in ") {
            let path = trim(path);
            self.full = Some(PendingFullState {
                path: lossy(path),
                epoch: last_component_number(path, b"epoch_"),
                samples: None,
                global_step: None,
            });
        } else if let Some(state) = text.strip_prefix(b"Saving training state: ") {
            // v0.16: "{'current_epoch': 1, 'samples_seen': 480, 'global_step': 31}" for an
            // on-demand checkpoint.
            if let Some(full) = &mut self.full {
                full.samples = int_after(state, b"'samples_seen': ");
                full.epoch = int_after(state, b"'current_epoch': ").or(full.epoch);
                full.global_step = int_after(state, b"'global_step': ");
            }
        } else if let Some(path) = text.strip_prefix(b"Model state saved in: ") {
            let path = trim(path);
            let pending = self.full.take().filter(|f| f.path.as_bytes() == path);
            out.push(Record::CheckpointSaved(SavedCheckpoint {
                kind: CheckpointKind::FullState,
                path: lossy(path),
                epoch: pending
                    .as_ref()
                    .and_then(|p| p.epoch)
                    .or_else(|| last_component_number(path, b"epoch_")),
                samples: pending.as_ref().and_then(|p| p.samples),
                global_step: pending.and_then(|p| p.global_step),
            }));
        } else if let Some(path) = text.strip_prefix(b"Loading state from: ") {
            self.loading = Some(lossy(trim(path)));
        } else if let Some(metadata) = text.strip_prefix(b"Training metadata loaded: ") {
            if let Some(epoch) = int_after(metadata, b"'current_epoch': ") {
                out.push(Record::Resumed(ResumePoint {
                    path: self.loading.take(),
                    epoch,
                    samples: int_after(metadata, b"'samples_seen': "),
                    global_step: int_after(metadata, b"'global_step': "),
                }));
            }
        } else if text.starts_with(b"No checkpoints to load from") {
            out.push(Record::FreshStart);
        } else if let Some(rest) = text.strip_prefix(b"Resuming mid-epoch") {
            if let Some(epoch) = int_after(rest, b"epoch=") {
                let last_step = int_after(rest, b"last_step=");
                out.push(Record::ResumedMidEpoch { epoch, last_step });
            }
        } else if text.starts_with(b"On-demand checkpoint saved")
            && find(text, b"Exiting training").is_some()
        {
            // v0.16: "On-demand checkpoint saved (during minibatch processing). Exiting
            // training."
            out.push(Record::OnDemandExit);
        } else if let Some((loss, _)) = text
            .strip_prefix(b"Validation loss: ")
            .and_then(|value| float_prefix(trim(value)))
        {
            // v0.14.2+: `base_logger.info("Validation loss: %.6f", …)` on rank 0.
            out.push(Record::ValidationLoss { loss });
        } else if let Some(signal) = launcher_signal(text) {
            out.push(Record::LauncherSignal { signal });
        } else {
            return false;
        }
        true
    }

    pub(super) fn retained_bytes(&self) -> usize {
        self.full.as_ref().map_or(0, |f| f.path.capacity())
            + self.loading.as_ref().map_or(0, String::capacity)
    }

    fn hf_saved(&mut self, path: &[u8], out: &mut Vec<Record>) {
        // v0.6-v0.8 also print "Model saved in <base model> requires conversion" when loading
        // a Granite model through dolomite: not a checkpoint.
        if path.ends_with(b"requires conversion") {
            return;
        }
        let started = self.hf.take();
        // Without its start marker, only a path under hf_format/ is known to be one (older
        // versions print the same sentence for DeepSpeed-native saves).
        if started.is_none() && find(path, b"hf_format").is_none() {
            return;
        }
        out.push(Record::CheckpointSaved(SavedCheckpoint {
            kind: CheckpointKind::Hf,
            path: lossy(path),
            epoch: None,
            samples: started
                .flatten()
                .or_else(|| last_component_number(path, b"samples_")),
            global_step: None,
        }));
    }
}

/// The signal torchrun received, from the last line of its traceback,
/// `torch.distributed.elastic.multiprocessing.api.SignalException: Process 1 got signal: 15`,
/// or from its agent's warning before it,
/// `W1130 00:23:52.394000 1 torch/distributed/elastic/agent/server/api.py:739] Received 15 death
/// signal, shutting down workers`. The traceback's source line
/// (`raise SignalException(f"Process {os.getpid()} got signal: …`) is neither. `text` is one
/// line, without the blanks around it.
pub fn launcher_signal(text: &[u8]) -> Option<i64> {
    const EXCEPTION: &[u8] = b"SignalException: Process ";
    const RECEIVED: &[u8] = b"] Received ";
    match text.first()? {
        b't' => {
            let rest = &text[find(text, EXCEPTION)? + EXCEPTION.len()..];
            let (_, pid_len) = int_prefix(rest)?;
            let rest = rest[pid_len..].strip_prefix(b" got signal: ")?;
            int_prefix(rest).map(|(signal, _)| signal)
        }
        // glog's level letter, then the date.
        b'I' | b'W' | b'E' => {
            let rest = &text[find(text, RECEIVED)? + RECEIVED.len()..];
            let (signal, len) = int_prefix(rest)?;
            rest[len..].starts_with(b" death signal").then_some(signal)
        }
        _ => None,
    }
}

/// Reads every `Epoch: E, Step: S, Rank: R, loss = L` in `text`: ranks share stdout and their
/// prints glue together (`… loss = 2.421875Epoch: 0, Step: 1, Rank: 2, …`). The loss is a float,
/// or `tensor(0.0810, device='cuda:0', grad_fn=<MulBackward0>)` in v0.11.
pub(super) fn rank_losses(text: &[u8], out: &mut Vec<Record>) {
    const EPOCH: &[u8] = b"Epoch: ";
    let mut rest = text;
    while let Some(at) = find(rest, EPOCH) {
        rest = &rest[at + EPOCH.len()..];
        if let Some((record, used)) = rank_loss(rest) {
            out.push(record);
            rest = &rest[used..];
        }
    }
}

/// One rank line after its `Epoch: `, and the bytes it used.
fn rank_loss(s: &[u8]) -> Option<(Record, usize)> {
    let mut at = 0;
    let epoch = int_field(s, &mut at, b"")?;
    let step = int_field(s, &mut at, b", Step: ")?;
    let rank = int_field(s, &mut at, b", Rank: ")?;
    let value = s.get(at..)?.strip_prefix(b", loss = ")?;
    at += b", loss = ".len();
    let tensor = usize::from(value.starts_with(b"tensor(")) * b"tensor(".len();
    let loss = float_prefix(&value[tensor..]);
    at += loss.map_or(0, |(_, n)| tensor + n);
    let record = Record::RankLoss(RankLoss {
        epoch,
        step,
        rank,
        loss: loss.map(|(v, _)| v),
    });
    Some((record, at))
}

/// `prefix` then an integer at `*at`; moves `at` past both.
fn int_field(s: &[u8], at: &mut usize, prefix: &[u8]) -> Option<i64> {
    let rest = s.get(*at..)?.strip_prefix(prefix)?;
    let (value, len) = int_prefix(rest)?;
    *at += prefix.len() + len;
    Some(value)
}

/// `N` when the last path component is `<prefix>N` (`samples_992`, `epoch_0`).
fn last_component_number(path: &[u8], prefix: &[u8]) -> Option<i64> {
    let name = path.rsplit(|&b| b == b'/').next()?;
    let digits = name.strip_prefix(prefix)?;
    int_prefix(digits)
        .filter(|&(_, n)| n == digits.len())
        .map(|(v, _)| v)
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(lines: &[&str]) -> Vec<Record> {
        let mut markers = Markers::default();
        let mut out = Vec::new();
        for line in lines {
            assert!(markers.read(line.as_bytes(), &mut out), "{line}");
        }
        out
    }

    #[test]
    fn hf_pair_becomes_one_checkpoint() {
        let out = read(&[
            "Saving model in huggingface format at: samples_992",
            "Model saved in /o/hf_format/samples_992",
        ]);
        assert_eq!(
            out,
            vec![Record::CheckpointSaved(SavedCheckpoint {
                kind: CheckpointKind::Hf,
                path: "/o/hf_format/samples_992".into(),
                epoch: None,
                samples: Some(992),
                global_step: None,
            })]
        );
        let old = read(&[
            "Saving model in huggingface format at samples_seen: 130",
            "Model saved in /o/hf_format/samples_130",
        ]);
        assert!(matches!(&old[0], Record::CheckpointSaved(c) if c.samples == Some(130)));
        let last = read(&[
            "Saving model in huggingface format at: last_epoch",
            "Model saved in /o/hf_format/last_epoch",
        ]);
        assert!(matches!(&last[0], Record::CheckpointSaved(c) if c.samples.is_none()));
    }

    #[test]
    fn conversions_and_native_saves_are_not_checkpoints() {
        let out = read(&[
            "Model saved in /models/granite-7b-base requires conversion",
            "Model saved in /o/ds_native",
        ]);
        assert_eq!(out, vec![]);
    }

    #[test]
    fn full_state_and_resume() {
        let out = read(&[
            "Saving full model state in /o/full_state/epoch_1",
            "Saving training state: {'current_epoch': 1, 'samples_seen': 1987}",
            "Model state saved in: /o/full_state/epoch_1",
            "Loading state from: /o/full_state/epoch_1",
            "Training metadata loaded: {'current_epoch': 1, 'samples_seen': 1987}",
            "Resuming mid-epoch: epoch=2, last_step=20",
            "No checkpoints to load from: /o/full_state",
        ]);
        assert_eq!(
            out,
            vec![
                Record::CheckpointSaved(SavedCheckpoint {
                    kind: CheckpointKind::FullState,
                    path: "/o/full_state/epoch_1".into(),
                    epoch: Some(1),
                    samples: Some(1987),
                    global_step: None,
                }),
                Record::Resumed(ResumePoint {
                    path: Some("/o/full_state/epoch_1".into()),
                    epoch: 1,
                    samples: Some(1987),
                    global_step: None,
                }),
                Record::ResumedMidEpoch {
                    epoch: 2,
                    last_step: Some(20)
                },
                Record::FreshStart,
            ]
        );
    }

    #[test]
    fn on_demand_checkpoint_and_exit() {
        // Genuine 0.16.2 lines of a run with --on_demand_checkpointing, trigger file written.
        let mut markers = Markers::default();
        let mut out = Vec::new();
        for line in [
            "Saving full model state in /output/ilab-tiny/full_state/epoch_1",
            "Saving training state: {'current_epoch': 1, 'samples_seen': 480, 'global_step': 31}",
            "Model state saved in: /output/ilab-tiny/full_state/epoch_1",
            "On-demand checkpoint: checkpoint saved successfully.",
            "On-demand checkpoint saved (during minibatch processing). Exiting training.",
        ] {
            markers.read(line.as_bytes(), &mut out);
        }
        assert_eq!(
            out,
            vec![
                Record::CheckpointSaved(SavedCheckpoint {
                    kind: CheckpointKind::FullState,
                    path: "/output/ilab-tiny/full_state/epoch_1".into(),
                    epoch: Some(1),
                    samples: Some(480),
                    global_step: Some(31),
                }),
                Record::OnDemandExit,
            ]
        );
        // A resume from it prints the training state it saved.
        let resumed = read(&[
            "Training metadata loaded: {'current_epoch': 1, 'samples_seen': 480, 'global_step': 31}",
        ]);
        assert!(matches!(&resumed[0], Record::Resumed(r) if r.global_step == Some(31)));
    }

    #[test]
    fn torchrun_signals() {
        // Genuine lines of torchrun sent SIGTERM (torch 2.11).
        let signal = read(&[
            "W1130 00:23:52.394000 4676 torch/distributed/elastic/agent/server/api.py:739] Received 15 death signal, shutting down workers",
            "torch.distributed.elastic.multiprocessing.api.SignalException: Process 4676 got signal: 15",
        ]);
        assert_eq!(
            signal,
            vec![
                Record::LauncherSignal { signal: 15 },
                Record::LauncherSignal { signal: 15 }
            ]
        );
        let mut out = Vec::new();
        let mut markers = Markers::default();
        for other in [
            "    raise SignalException(f\"Process {os.getpid()} got signal: {sigval}\", sigval=sigval)",
            "W1130 00:23:52.395000 4676 torch/distributed/elastic/multiprocessing/api.py:1012] Sending process 4740 closing signal SIGTERM",
            "torch.distributed.elastic.multiprocessing.api.SignalException: Process x got signal: 15",
            "W1130 00:23:52.394000 4676 api.py:739] Received a death signal",
            "On-demand checkpoint saved somewhere",
            "",
        ] {
            assert!(!markers.read(other.as_bytes(), &mut out), "{other}");
        }
        assert_eq!(out, vec![]);
    }

    #[test]
    fn glued_rank_lines() {
        let mut out = Vec::new();
        let line = b"Epoch 0:   0%| | 0/12 [00:00<?, ?it/s]Epoch: 0, Step: 1, Rank: 1, loss = 2.5Epoch: 0, Step: 1, Rank: 0, loss = tensor(4.6137, device='cuda:0', grad_fn=<MulBackward0>)Epoch: 0, Step: 1, Rank: 2, loss = nope";
        rank_losses(line, &mut out);
        let loss = |rank, loss| {
            Record::RankLoss(RankLoss {
                epoch: 0,
                step: 1,
                rank,
                loss,
            })
        };
        assert_eq!(
            out,
            vec![loss(1, Some(2.5)), loss(0, Some(4.6137)), loss(2, None)]
        );
        rank_losses(b"Epoch: x", &mut out);
        assert_eq!(out.len(), 3);
    }
}
