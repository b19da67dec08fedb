//! Training progress from the rank-0 log of InstructLab (`instructlab.training.main_ds`).
//!
//! # Use
//!
//! [`ProgressParser`] turns log bytes, fed in chunks cut anywhere, into [`Record`]s; [`fold`]
//! turns records into the status values (`progress`, `checkpoints`) and the [`Transition`]s to
//! report as Events. The parser is kept per running container; the fold starts from the status,
//! so nothing else has to survive an operator restart:
//!
//! ```
//! use finetune_operator::logs::progress::{FoldContext, LogState, ProgressParser, fold};
//!
//! let mut parser = ProgressParser::new(); // ProgressParser::cold() when starting mid-log
//! let mut state = LogState::default(); // LogState::from_status(&status) in the controller
//! for chunk in [&b"\x1b[93mModel state saved in: /output/ft/full_"[..], b"state/epoch_0\x1b[0m\n"] {
//!     let records = parser.feed(chunk);
//!     let folded = fold(&state, &records, &FoldContext { total_epochs: Some(3), now: None });
//!     for t in &folded.transitions {
//!         println!("{}: {}", t.reason(), t.note()); // CheckpointSaved: Full training state saved in …
//!     }
//!     state = folded.state;
//! }
//! assert_eq!(state.checkpoints[0].path, "/output/ft/full_state/epoch_0");
//! ```
//!
//! [`inspect`] does both over a whole file for `finetune-operator inspect-log`.
//!
//! # Formats
//!
//! Metrics are logged once per step by rank 0; epochs count from 0 (`"epoch": 0`, `Epoch 0`,
//! `full_state/epoch_0` are the first epoch).
//!
//! v0.5–v0.10: `json.dumps(metrics, indent=4)` in green, `total_loss`; the first block holds
//! `script_params` (with `num_epochs`), the second `num_batches` and `total_samples`:
//!
//! ```text
//! \x1b[92m{
//!     "epoch": 0,
//!     "step": 1,
//!     "total_loss": 2.5375135977659076,
//!     "samples_seen": 130,
//!     …
//! }\x1b[0m
//! ```
//!
//! v0.11: a dict through Rich's handler, with its time, level and path columns, floats as
//! `%.3f` or `%.2e`, `num_epoch_steps` added; lines wrap at 80 columns when `COLUMNS` is unset:
//!
//! ```text
//! [09:12:12] INFO     epoch=0, step=1, rank=0, overall_throughput=43.505, lr=8.00e-07, …, total_loss=2.457, samples_seen=123, gradnorm=None, total_samples=1012, num_epoch_steps=8   main_ds.py:496
//! ```
//!
//! v0.12+: the same with `avg_loss` and `num_minibatches` (tests/realrun_logs/ checks 0.12.1
//! and 0.16.2 against the metrics JSONL InstructLab wrote in the same runs).
//!
//! Every version: per-rank lines (plain prints up to v0.10, Rich from v0.11; the loss is a
//! `tensor(…)` in v0.11, and v0.12 adds `grad_accum_steps`):
//!
//! ```text
//! Epoch: 0, Step: 1, Rank: 3, loss = 2.421875
//! ```
//!
//! and checkpoint markers printed in yellow (`\x1b[93m…\x1b[0m`):
//!
//! ```text
//! Saving model in huggingface format at: samples_992      (v0.5: "at samples_seen: 992")
//! Model saved in /output/ft/hf_format/samples_992
//! Saving full model state in /output/ft/full_state/epoch_0
//! Saving training state: {'current_epoch': 0, 'samples_seen': 992}
//! Model state saved in: /output/ft/full_state/epoch_0
//! Loading state from: /output/ft/full_state/epoch_0
//! Training metadata loaded: {'current_epoch': 0, 'samples_seen': 992}
//! Resuming mid-epoch: epoch=1, last_step=12
//! No checkpoints to load from: /output/ft/full_state
//! ```
//!
//! v0.14.2+ with `--validation_split`, every `--validation_frequency` steps after the step's
//! metrics: rank 0's message with 6 decimals, then the metrics dict (`%.3f`, or `%.2e` below
//! 0.001 and above 999):
//!
//! ```text
//!            INFO     Validation loss: 5.123456                                main_ds.py:164
//!            INFO     val_loss=5.123, val_num_tokens=2170                      main_ds.py:398
//! ```
//!
//! v0.16 with `--on_demand_checkpointing`, once the trigger file appears: a full state taken
//! within the epoch, whose training state has the step to go on with, then a Rich message, and
//! the process exits 0:
//!
//! ```text
//! Saving training state: {'current_epoch': 1, 'samples_seen': 480, 'global_step': 31}
//! On-demand checkpoint saved (during minibatch processing). Exiting training.
//! ```
//!
//! torchrun (the container's first process) on SIGTERM, before it exits 1:
//!
//! ```text
//! W1130 00:23:52.394000 1 torch/distributed/elastic/agent/server/api.py:739] Received 15 death signal, shutting down workers
//! torch.distributed.elastic.multiprocessing.api.SignalException: Process 1 got signal: 15
//! ```
//!
//! Around them: tqdm bars redrawn after `\r`, warnings, NCCL and DeepSpeed lines, Rich output of
//! other libraries; and the artefacts of many processes sharing one pipe: prints glued on one
//! line, a bar glued before a JSON block or a Rich record (whose time column is blank when the
//! second repeats), a stderr line the container runtime cut at 16 KiB glued before the next
//! stdout line, another rank's line inside a Rich line longer than `PIPE_BUF`. The readers
//! expect all of these.
//!
//! # Bounds
//!
//! Input is untrusted bytes (invalid UTF-8, NULs, anything). The parser never panics and keeps
//! at most [`MAX_LINE_BYTES`] of an unfinished line and [`MAX_MESSAGE_BYTES`] of a wrapped Rich
//! message, gives up a JSON block after [`MAX_BLOCK_LINES`] lines, and holds a few paths of saves
//! under way: tens of KiB per job, whatever it is fed. The fold keeps [`MAX_CHECKPOINTS`].

mod clean;
mod ending;
mod fields;
mod fold;
mod inspect;
mod json_block;
mod line;
mod markers;
mod parser;
mod record;
mod rich;
mod scan;
mod transition;

pub use ending::Ending;
pub use fold::{FoldContext, Folded, LogState, MAX_CHECKPOINTS, fold};
pub use inspect::{Inspection, inspect};
pub use json_block::MAX_BLOCK_LINES;
pub use markers::launcher_signal;
pub use parser::{MAX_LINE_BYTES, ProgressParser};
pub use record::{
    LossKey, MetricsFormat, RankLoss, Record, ResumePoint, SavedCheckpoint, Setup, StepMetrics,
};
pub use rich::MAX_MESSAGE_BYTES;
pub use transition::Transition;

#[cfg(test)]
mod tests;
