//! The parser against genuine runs of instructlab-training 0.12.1 and 0.16.2 on one H200
//! (tests/fixtures/instructlab/realrun, see its README.md), checked against what InstructLab
//! itself wrote during the same runs: its metrics JSONL (step, epoch, samples, loss) and the
//! checkpoint directories the output volume held afterwards (`tree-*.txt`).
//!
//! Every expectation is read from those files; none is written down here. Mapping the JSONL to
//! the status: `epoch` there counts from 0, the status's from 1; `step` is InstructLab's own;
//! the loss is the `avg_loss` the log prints with 3 decimals; `full_state/epoch_N` holds the
//! state at the end of (0-based) epoch N, or at the on-demand exit within it.

use std::collections::BTreeSet;

use finetune_operator::api::{Checkpoint, CheckpointKind, Progress};
use finetune_operator::logs::progress::{
    Ending, FoldContext, LogState, LossKey, ProgressParser, Record, Setup, Transition, fold,
    inspect,
};
use serde_json::Value;
use testkit::random::{Rng, chunks};

fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/tests/fixtures/instructlab/realrun/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn text(name: &str) -> String {
    String::from_utf8(fixture(name)).expect("UTF-8")
}

/// One run as InstructLab recorded it: a training log, the metrics JSONL of its output
/// directory and, where one was taken, the listing of that directory after the run; and the
/// signal sent to torchrun during the run, if one was (README.md).
struct Run {
    log: &'static str,
    metrics: &'static str,
    tree: Option<&'static str>,
    signal: Option<i64>,
}

/// The runs that trained (the resumed run, which had nothing left, has its own test).
const RUNS: [Run; 4] = [
    Run {
        log: "train-0.12.log",
        metrics: "metrics-0.12.jsonl",
        tree: None,
        signal: None,
    },
    Run {
        log: "train-0.16.log",
        metrics: "metrics-0.16.jsonl",
        tree: Some("tree-0.16.txt"),
        signal: None,
    },
    Run {
        log: "train-0.16-ondemand.log",
        metrics: "metrics-0.16-ondemand.jsonl",
        tree: Some("tree-0.16-ondemand.txt"),
        signal: None,
    },
    Run {
        log: "train-0.16-sigterm.log",
        metrics: "metrics-0.16-sigterm.jsonl",
        tree: Some("tree-0.16-sigterm.txt"),
        // SIGTERM to torchrun after step 30 was logged.
        signal: Some(15),
    },
];

// ---------------------------------------------------------------------------------------------
// The truth: InstructLab's metrics JSONL and the output directory's listing
// ---------------------------------------------------------------------------------------------

/// A metrics line of one step.
#[derive(Clone, Debug)]
struct TruthStep {
    epoch: i64,
    step: i64,
    rank: i64,
    samples_seen: i64,
    avg_loss: f64,
    throughput: f64,
    total_samples: i64,
    num_epoch_steps: i64,
}

/// What one start of `main_ds` appended to the JSONL: its hyperparameters, the run's shape and
/// its steps.
#[derive(Debug)]
struct Segment {
    params: Value,
    num_batches: i64,
    total_samples: i64,
    steps: Vec<TruthStep>,
}

impl Segment {
    fn num_epochs(&self) -> i64 {
        int(&self.params, "num_epochs")
    }

    fn output_dir(&self) -> &str {
        self.params["output_dir"].as_str().expect("output_dir")
    }

    fn planned_samples(&self) -> i64 {
        self.num_epochs() * self.total_samples
    }
}

fn int(v: &Value, key: &str) -> i64 {
    v[key].as_i64().unwrap_or_else(|| panic!("{key} in {v}"))
}

fn float(v: &Value, key: &str) -> f64 {
    v[key].as_f64().unwrap_or_else(|| panic!("{key} in {v}"))
}

/// The JSONL split at each start of training (the file is appended to across restarts).
fn segments(name: &str) -> Vec<Segment> {
    let mut out: Vec<Segment> = Vec::new();
    for line in text(name).lines().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{name}: {e}"));
        if v.get("model_name_or_path").is_some() {
            out.push(Segment {
                params: v,
                num_batches: 0,
                total_samples: 0,
                steps: Vec::new(),
            });
            continue;
        }
        let segment = out.last_mut().expect("hyperparameters first");
        if v.get("num_batches").is_some() {
            segment.num_batches = int(&v, "num_batches");
            segment.total_samples = int(&v, "total_samples");
        } else if v.get("step").is_some() {
            segment.steps.push(TruthStep {
                epoch: int(&v, "epoch"),
                step: int(&v, "step"),
                rank: int(&v, "rank"),
                samples_seen: int(&v, "samples_seen"),
                avg_loss: float(&v, "avg_loss"),
                throughput: float(&v, "overall_throughput"),
                total_samples: int(&v, "total_samples"),
                num_epoch_steps: int(&v, "num_epoch_steps"),
            });
        } else {
            panic!("{name}: unknown line {line}");
        }
    }
    assert!(!out.is_empty(), "{name}: no run");
    out
}

/// A float as Rich's handler prints it (`%.3f`), read back.
fn printed(v: f64) -> f64 {
    format!("{v:.3}").parse().unwrap()
}

/// Checkpoint directories under the run's output directory in a `find /output -maxdepth 4`
/// listing: `hf_format/<name>` and `full_state/<name>`.
fn tree_checkpoints(name: &str, output_dir: &str) -> BTreeSet<String> {
    text(name)
        .lines()
        .filter(|path| {
            let Some(rest) = path.strip_prefix(output_dir) else {
                return false;
            };
            let parts: Vec<&str> = rest.split('/').collect();
            matches!(parts.as_slice(), ["", "hf_format" | "full_state", dir] if !dir.is_empty())
        })
        .map(str::to_string)
        .collect()
}

/// The checkpoints InstructLab's settings (first JSONL line) call for in a run that trains
/// without interruption: `hf_format/samples_<seen>` whenever samples seen passes a multiple of
/// `save_samples` and at each epoch's end (`checkpoint_at_epoch`), `full_state/epoch_<e>` at
/// each epoch's end (`accelerate_full_state_at_epoch`). Checked against a listing where there
/// is one, used where there is none.
fn planned_checkpoints(segment: &Segment) -> BTreeSet<String> {
    let p = &segment.params;
    let save = int(p, "save_samples");
    let dir = segment.output_dir();
    let mut out = BTreeSet::new();
    let mut before = 0;
    for (i, s) in segment.steps.iter().enumerate() {
        let epoch_ends = segment.steps.get(i + 1).is_none_or(|n| n.epoch != s.epoch)
            && steps_in_epoch(segment, s.epoch) == s.num_epoch_steps;
        if (save > 0 && s.samples_seen / save > before / save)
            || (epoch_ends && p["checkpoint_at_epoch"] == true)
        {
            out.insert(format!("{dir}/hf_format/samples_{}", s.samples_seen));
        }
        if epoch_ends && p["accelerate_full_state_at_epoch"] == true {
            out.insert(format!("{dir}/full_state/epoch_{}", s.epoch));
        }
        before = s.samples_seen;
    }
    out
}

fn steps_in_epoch(segment: &Segment, epoch: i64) -> i64 {
    segment.steps.iter().filter(|s| s.epoch == epoch).count() as i64
}

/// What the status should say of a checkpoint directory, from the steps of the run: an HF
/// save names its samples, and was written during the epoch of the step that reached them; a
/// full state belongs to its (0-based) epoch and holds the samples of that epoch's last step.
fn expected_checkpoint(path: &str, steps: &[TruthStep]) -> Checkpoint {
    let name = path.rsplit('/').next().unwrap();
    let (kind, epoch, samples) = if let Some(n) = name.strip_prefix("samples_") {
        let samples: i64 = n.parse().unwrap();
        let step = steps
            .iter()
            .find(|s| s.samples_seen == samples)
            .unwrap_or_else(|| panic!("no step reached {path}"));
        (CheckpointKind::Hf, step.epoch, samples)
    } else {
        let epoch: i64 = name.strip_prefix("epoch_").unwrap().parse().unwrap();
        let last = steps
            .iter()
            .rfind(|s| s.epoch == epoch)
            .unwrap_or_else(|| panic!("no step in {path}"));
        (CheckpointKind::FullState, epoch, last.samples_seen)
    };
    Checkpoint {
        path: path.to_string(),
        epoch: Some(epoch + 1),
        samples: Some(samples),
        kind,
        time: None,
    }
}

/// The progress the status should show after `last`, the run's last logged step (with
/// `onDemandExit` false: see [`exited_on_demand`]).
fn expected_progress(segment: &Segment, last: &TruthStep) -> Progress {
    let epochs = segment.num_epochs();
    let planned = segment.planned_samples();
    let percent = if last.samples_seen == planned {
        100
    } else {
        last.samples_seen * 100 / planned
    };
    Progress {
        epoch: Some(last.epoch + 1),
        total_epochs: Some(epochs),
        epoch_text: Some(format!("{}/{epochs}", last.epoch + 1)),
        step: Some(last.step),
        total_steps: Some(last.num_epoch_steps * epochs),
        samples_seen: Some(last.samples_seen),
        total_samples: Some(last.total_samples),
        percent: Some(percent),
        loss: Some(printed(last.avg_loss)),
        throughput: Some(printed(last.throughput)),
        eta: None,
        update_time: None,
        samples_planned: Some(planned),
        // No genuine run skipped samples.
        samples_skipped: None,
        validation_loss: None,
        on_demand_exit: false,
    }
}

/// Whether the run ended with an on-demand checkpoint's exit: it was started with on-demand
/// checkpointing and left the full state of an epoch that had not ended.
fn exited_on_demand(run: &Run, segment: &Segment) -> bool {
    let last = segment.steps.last().unwrap();
    let epoch_ended = steps_in_epoch(segment, last.epoch) == last.num_epoch_steps;
    let state_of_last_epoch = format!("{}/full_state/epoch_{}", segment.output_dir(), last.epoch);
    let mid_epoch_state = !epoch_ended
        && run.tree.is_some_and(|tree| {
            tree_checkpoints(tree, segment.output_dir()).contains(&state_of_last_epoch)
        });
    segment.params["on_demand_checkpointing"] == true && mid_epoch_state
}

/// Epochs whose every step was logged: (epoch from 1, loss and samples of its last step).
fn expected_epochs_completed(segment: &Segment) -> Vec<(i64, f64, i64)> {
    let mut out = Vec::new();
    for (i, s) in segment.steps.iter().enumerate() {
        let last_of_epoch = segment.steps.get(i + 1).is_none_or(|n| n.epoch != s.epoch);
        if last_of_epoch && steps_in_epoch(segment, s.epoch) == s.num_epoch_steps {
            out.push((s.epoch + 1, printed(s.avg_loss), s.samples_seen));
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The parser, as the operator runs it
// ---------------------------------------------------------------------------------------------

fn parse(bytes: &[u8]) -> Vec<Record> {
    let mut parser = ProgressParser::new();
    let mut records = parser.feed(bytes);
    records.extend(parser.finish());
    records
}

/// Folds the log chunk by chunk from `state`, as the controller does across reconciles.
fn fold_in_chunks(
    state: &LogState,
    bytes: &[u8],
    ctx: &FoldContext,
    rng: &mut Rng,
    max_chunk: usize,
) -> (LogState, Vec<Transition>) {
    let mut parser = ProgressParser::new();
    let mut state = state.clone();
    let mut transitions = Vec::new();
    for chunk in chunks(bytes, rng, max_chunk) {
        let folded = fold(&state, &parser.feed(chunk), ctx);
        state = folded.state;
        transitions.extend(folded.transitions);
    }
    let folded = fold(&state, &parser.finish(), ctx);
    transitions.extend(folded.transitions);
    (folded.state, transitions)
}

fn epochs_completed(transitions: &[Transition]) -> Vec<(i64, f64, i64)> {
    transitions
        .iter()
        .filter_map(|t| match t {
            Transition::EpochCompleted {
                epoch,
                loss: Some(loss),
                samples_seen: Some(samples),
                ..
            } => Some((*epoch, *loss, *samples)),
            Transition::EpochCompleted { .. } => panic!("an epoch ended without values: {t:?}"),
            _ => None,
        })
        .collect()
}

fn saved(transitions: &[Transition]) -> Vec<&Checkpoint> {
    transitions
        .iter()
        .filter_map(|t| match t {
            Transition::CheckpointSaved { checkpoint } => Some(checkpoint),
            _ => None,
        })
        .collect()
}

fn paths(checkpoints: &[Checkpoint]) -> BTreeSet<String> {
    checkpoints.iter().map(|c| c.path.clone()).collect()
}

fn ctx(epochs: i64) -> FoldContext {
    FoldContext {
        total_epochs: Some(epochs),
        now: None,
    }
}

// The tests, beside the truth and the reading they use.
mod runs;
