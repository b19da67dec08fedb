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

/// xorshift64*: deterministic randomness without a dependency.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n.max(1) as u64) as usize
    }
}

/// Random chunks of up to `max_chunk` bytes: cut inside lines, escapes, `\r\n` and the
/// multi-byte characters of tqdm's bars and Rich's text.
fn chunks<'a>(bytes: &'a [u8], rng: &mut Rng, max_chunk: usize) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let (chunk, tail) = rest.split_at((1 + rng.below(max_chunk)).min(rest.len()));
        out.push(chunk);
        rest = tail;
    }
    out
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

// ---------------------------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------------------------

#[test]
fn every_logged_step_is_read_as_instructlab_recorded_it() {
    for run in &RUNS {
        let segments = segments(run.metrics);
        let [segment] = segments.as_slice() else {
            panic!("{}: one start of training expected", run.metrics);
        };
        let records = parse(&fixture(run.log));
        let steps: Vec<_> = records
            .iter()
            .filter_map(|r| match r {
                Record::Step(s) => Some(s),
                _ => None,
            })
            .collect();
        assert_eq!(steps.len(), segment.steps.len(), "{}", run.log);
        for (read, truth) in steps.iter().zip(&segment.steps) {
            let what = format!("{} step {}", run.log, truth.step);
            assert_eq!(
                (read.epoch, read.step, read.rank, read.samples_seen),
                (
                    truth.epoch,
                    truth.step,
                    Some(truth.rank),
                    truth.samples_seen
                ),
                "{what}"
            );
            assert_eq!(read.loss, Some(printed(truth.avg_loss)), "{what}");
            assert_eq!(read.loss_key, Some(LossKey::AvgLoss), "{what}");
            assert_eq!(read.throughput, Some(printed(truth.throughput)), "{what}");
            assert_eq!(
                (read.total_samples, read.num_epoch_steps),
                (Some(truth.total_samples), Some(truth.num_epoch_steps)),
                "{what}"
            );
        }
        // Rank 0's own line of each step, `loss = 6.901139`: the average over ranks (v0.12+).
        let rank_lines: Vec<_> = records
            .iter()
            .filter_map(|r| match r {
                Record::RankLoss(l) if l.rank == 0 => Some((l.epoch, l.step, l.loss)),
                _ => None,
            })
            .collect();
        let truth: Vec<_> = segment
            .steps
            .iter()
            .map(|s| (s.epoch, s.step, format!("{:.6}", s.avg_loss).parse().ok()))
            .collect();
        assert_eq!(rank_lines, truth, "{}", run.log);
        // The run's shape, printed once before training.
        let setups: Vec<_> = records
            .iter()
            .filter(|r| matches!(r, Record::Setup(_)))
            .collect();
        assert_eq!(
            setups,
            [&Record::Setup(Setup {
                num_epochs: None,
                steps_per_epoch: Some(segment.num_batches),
                total_samples: Some(segment.total_samples),
            })],
            "{}",
            run.log
        );
    }
}

#[test]
fn progress_checkpoints_and_epochs_equal_the_truth() {
    for run in &RUNS {
        let segments = segments(run.metrics);
        let segment = &segments[0];
        let last = segment.steps.last().expect("steps");
        let log = fixture(run.log);
        // The spec's epochs: what the JSONL's hyperparameters say the run was started with.
        let inspection = inspect(&log, Some(segment.num_epochs()));
        assert_eq!(
            inspection.format,
            Some("v0.12+: key=value, avg_loss"),
            "{}",
            run.log
        );
        let expected = Progress {
            on_demand_exit: exited_on_demand(run, segment),
            ..expected_progress(segment, last)
        };
        assert_eq!(inspection.progress, Some(expected), "{}", run.log);
        assert_eq!(inspection.resumed_from, None, "{}", run.log);

        // Every checkpoint the run wrote, none it did not; each with its epoch and samples.
        let written = match run.tree {
            Some(tree) => tree_checkpoints(tree, segment.output_dir()),
            None => planned_checkpoints(segment),
        };
        assert!(!written.is_empty());
        assert_eq!(paths(&inspection.checkpoints), written, "{}", run.log);
        for checkpoint in &inspection.checkpoints {
            assert_eq!(
                checkpoint,
                &expected_checkpoint(&checkpoint.path, &segment.steps),
                "{}",
                run.log
            );
        }
        // Reported once each, in the order they were saved.
        let reported = saved(&inspection.transitions);
        assert_eq!(
            reported,
            inspection.checkpoints.iter().collect::<Vec<_>>(),
            "{}",
            run.log
        );
        assert_eq!(
            epochs_completed(&inspection.transitions),
            expected_epochs_completed(segment),
            "{}",
            run.log
        );
    }
}

#[test]
fn the_checkpoint_rule_matches_the_listing_of_an_uninterrupted_run() {
    // planned_checkpoints stands in for the listing the 0.12.1 run lacks: it must give exactly
    // what the uninterrupted 0.16.2 run wrote, and no more than what the interrupted ones did.
    for run in &RUNS {
        let Some(tree) = run.tree else { continue };
        let segments = segments(run.metrics);
        let segment = &segments[0];
        let listed = tree_checkpoints(tree, segment.output_dir());
        let planned = planned_checkpoints(segment);
        if last_epoch_ended(segment) {
            assert_eq!(planned, listed, "{tree}");
        } else {
            assert!(planned.is_subset(&listed), "{tree}");
        }
    }
}

fn last_epoch_ended(segment: &Segment) -> bool {
    segment.steps.last().is_some_and(|s| {
        s.epoch + 1 == segment.num_epochs() && steps_in_epoch(segment, s.epoch) == s.num_epoch_steps
    })
}

#[test]
fn any_chunking_folds_to_the_same_truth() {
    let mut rng = Rng(0x7ea1_0001);
    for run in &RUNS {
        let segments = segments(run.metrics);
        let segment = &segments[0];
        let log = fixture(run.log);
        let whole_records = parse(&log);
        let whole = inspect(&log, Some(segment.num_epochs()));
        for max_chunk in [1, 3, 17, 200, 4096, 70_000] {
            let mut parser = ProgressParser::new();
            let mut records = Vec::new();
            for chunk in chunks(&log, &mut rng, max_chunk) {
                records.extend(parser.feed(chunk));
            }
            records.extend(parser.finish());
            assert_eq!(
                records, whole_records,
                "{} in chunks of {max_chunk}",
                run.log
            );

            let (state, transitions) = fold_in_chunks(
                &LogState::default(),
                &log,
                &ctx(segment.num_epochs()),
                &mut rng,
                max_chunk,
            );
            let what = format!("{} folded in chunks of {max_chunk}", run.log);
            assert_eq!(state.progress, whole.progress, "{what}");
            assert_eq!(state.checkpoints, whole.checkpoints, "{what}");
            assert_eq!(state.resumed_from, whole.resumed_from, "{what}");
            assert_eq!(state.ending, whole.ending, "{what}");
            assert_eq!(transitions, whole.transitions, "{what}");
        }
    }
}

#[test]
fn a_cold_start_agrees_with_the_whole_log_after_its_first_record() {
    let mut rng = Rng(0x7ea1_0002);
    for run in &RUNS {
        let log = fixture(run.log);
        let whole = parse(&log);
        for _ in 0..16 {
            let offset = rng.below(log.len());
            let mut parser = ProgressParser::cold();
            let mut cold = Vec::new();
            for chunk in chunks(&log[offset..], &mut rng, 5000) {
                cold.extend(parser.feed(chunk));
            }
            cold.extend(parser.finish());
            // The first record may be a save whose first marker came before the cut.
            let agreed = cold.get(1..).unwrap_or_default();
            assert!(
                whole.ends_with(agreed),
                "{} from byte {offset}: {:?}",
                run.log,
                cold.first()
            );
        }
    }
}

#[test]
fn the_restarted_pod_resumes_from_the_last_full_state_with_nothing_left() {
    // The pod of the finished 0.16.2 run restarted with the same output directory: it loaded
    // the newest full state and had nothing left to train. Its start appended hyperparameters
    // and shape to the JSONL, and no step.
    let all = segments("metrics-0.16-after-resume.jsonl");
    let [first, second] = all.as_slice() else {
        panic!("two starts of training expected");
    };
    assert!(second.steps.is_empty());
    let epochs = second.num_epochs();
    let listed = tree_checkpoints("tree-0.16.txt", second.output_dir());
    // InstructLab loads the full state with the highest number.
    let newest = listed
        .iter()
        .filter_map(|p| {
            let n = p.rsplit_once("/full_state/epoch_")?.1;
            Some((n.parse::<i64>().ok()?, p.clone()))
        })
        .max()
        .expect("a full state");
    let resumed_from = expected_checkpoint(&newest.1, &first.steps);
    let last = first.steps.last().unwrap();

    // Folded over what the first pod's log left in the status, as the controller does.
    let mut rng = Rng(0x7ea1_0003);
    let (before, _) = fold_in_chunks(
        &LogState::default(),
        &fixture("train-0.16.log"),
        &ctx(epochs),
        &mut rng,
        4096,
    );
    for max_chunk in [1, 64, 100_000] {
        let (after, transitions) = fold_in_chunks(
            &before,
            &fixture("train-0.16-resumed.log"),
            &ctx(epochs),
            &mut rng,
            max_chunk,
        );
        assert_eq!(after.progress, Some(expected_progress(second, last)));
        assert_eq!(after.resumed_from.as_ref(), Some(&resumed_from));
        assert_eq!(paths(&after.checkpoints), listed);
        assert_eq!(
            transitions,
            [Transition::ResumedFromCheckpoint {
                checkpoint: resumed_from.clone()
            }]
        );
    }

    // Read alone (the operator restarted too): where training stands, without a step's loss.
    let alone = inspect(&fixture("train-0.16-resumed.log"), Some(epochs));
    let p = alone.progress.expect("progress");
    let truth = expected_progress(second, last);
    assert_eq!(
        (
            p.epoch,
            p.step,
            p.total_steps,
            p.samples_seen,
            p.total_samples,
            p.percent
        ),
        (
            truth.epoch,
            truth.step,
            truth.total_steps,
            truth.samples_seen,
            truth.total_samples,
            truth.percent
        )
    );
    assert_eq!((p.loss, p.throughput), (None, None));
    assert_eq!(alone.resumed_from, Some(resumed_from.clone()));
    assert_eq!(alone.checkpoints, [resumed_from]);
}

#[test]
fn the_ending_is_what_happened_to_the_run() {
    for run in &RUNS {
        let segments = segments(run.metrics);
        let segment = &segments[0];
        let last = segment.steps.last().unwrap();
        let planned = segment.planned_samples();
        let expected = Ending {
            planned_samples: Some(planned),
            epochs_completed: last.samples_seen == planned,
            samples_short: None,
            on_demand_exit: exited_on_demand(run, segment),
            signal: run.signal,
        };
        let inspection = inspect(&fixture(run.log), Some(segment.num_epochs()));
        assert_eq!(inspection.ending, expected, "{}", run.log);
    }
    // The on-demand checkpoint records the step to go on with: one past the last one logged.
    let on_demand_run = segments("metrics-0.16-ondemand.jsonl");
    let last = on_demand_run[0].steps.last().unwrap();
    let on_demand = parse(&fixture("train-0.16-ondemand.log"))
        .into_iter()
        .filter_map(|r| match r {
            Record::CheckpointSaved(c) if c.global_step.is_some() => Some(c),
            _ => None,
        })
        .collect::<Vec<_>>();
    assert_eq!(on_demand.len(), 1);
    assert_eq!(
        (
            on_demand[0].epoch,
            on_demand[0].samples,
            on_demand[0].global_step
        ),
        (
            Some(last.epoch),
            Some(last.samples_seen),
            Some(last.step + 1)
        )
    );

    // The restarted pod that had nothing left: every epoch done, nothing short.
    let all = segments("metrics-0.16-after-resume.jsonl");
    let inspection = inspect(
        &fixture("train-0.16-resumed.log"),
        Some(all[1].num_epochs()),
    );
    assert_eq!(
        inspection.ending,
        Ending {
            planned_samples: Some(all[1].planned_samples()),
            epochs_completed: true,
            ..Ending::default()
        }
    );
}

#[test]
fn a_rich_record_glued_behind_a_tqdm_bar_is_read_with_a_blank_time_too() {
    // In every genuine log the record after a redraw of tqdm's bar shares its line: tqdm ends
    // a redraw with \r, not a newline. The bar ends with its rate in brackets, and the time
    // column of the record is blank when its second repeats. Rank 0's loss line is always the
    // one there; a metrics line behind the bar must be read the same.
    let log = text("train-0.12.log");
    let lines: Vec<&str> = log.split(['\n', '\r']).collect();
    let (at, bar) = lines
        .iter()
        .enumerate()
        .find_map(|(i, l)| {
            let end = l.find("]           INFO     Epoch: ")?;
            (!l.starts_with(' ')).then(|| (i, &l[..=end]))
        })
        .expect("a record with a blank time glued behind a bar");
    let metrics = lines[at + 1];
    assert!(
        metrics.starts_with("           INFO     epoch="),
        "{metrics}"
    );
    let alone = parse(format!("{metrics}\n").as_bytes());
    assert!(matches!(alone.as_slice(), [Record::Step(_)]), "{alone:?}");
    assert_eq!(parse(format!("{bar}{metrics}\n").as_bytes()), alone);
}

#[test]
fn the_preprocess_log_yields_nothing() {
    // data_process's log: tqdm bars, Rich lines, and the training samples themselves.
    assert_eq!(parse(&fixture("preprocess-0.16.log")), []);
}
