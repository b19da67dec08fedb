//! Fold scenarios: records in, status values and transitions out.

mod ending;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::*;
use crate::api::{Checkpoint, CheckpointKind, Progress};

const N: i64 = 8;
const SAMPLES: i64 = 1000;

fn ctx(now: Option<i64>) -> FoldContext {
    FoldContext {
        total_epochs: Some(3),
        now: now.map(time),
    }
}

fn time(second: i64) -> Time {
    Time(jiff::Timestamp::from_second(second).unwrap())
}

fn setup() -> Record {
    Record::Setup(Setup {
        num_epochs: None,
        steps_per_epoch: Some(N),
        total_samples: Some(SAMPLES),
    })
}

/// Step `step` of `epoch` (both as logged), 120 samples a step, loss 1/step.
fn step(epoch: i64, step: i64, samples_seen: i64) -> Record {
    Record::Step(StepMetrics {
        format: MetricsFormat::KeyValue,
        epoch,
        step,
        rank: Some(0),
        samples_seen,
        loss: Some(1.0 / step as f64),
        loss_key: Some(LossKey::AvgLoss),
        throughput: Some(40.0),
        total_samples: Some(SAMPLES),
        num_epoch_steps: Some(N),
    })
}

/// Steps `from..=to` of a run that resumed at `first_epoch` (steps count from 1 there).
fn steps(first_epoch: i64, from: i64, to: i64) -> Vec<Record> {
    (from..=to)
        .map(|s| step(first_epoch + (s - 1) / N, s, (first_epoch * N + s) * 120))
        .collect()
}

fn saved(kind: CheckpointKind, path: &str, epoch: Option<i64>, samples: Option<i64>) -> Record {
    Record::CheckpointSaved(SavedCheckpoint {
        kind,
        path: path.into(),
        epoch,
        samples,
        global_step: None,
    })
}

fn run(prev: &LogState, records: &[Record]) -> Folded {
    fold(prev, records, &ctx(None))
}

fn progress(folded: &Folded) -> &Progress {
    folded.state.progress.as_ref().expect("progress")
}

fn epochs_completed(transitions: &[Transition]) -> Vec<(i64, Option<f64>, Option<i64>)> {
    transitions
        .iter()
        .filter_map(|t| match t {
            Transition::EpochCompleted {
                epoch,
                loss,
                samples_seen,
                ..
            } => Some((*epoch, *loss, *samples_seen)),
            _ => None,
        })
        .collect()
}

#[test]
fn steps_make_progress() {
    let records = [vec![setup()], steps(0, 1, 10)].concat();
    let folded = fold(&LogState::default(), &records, &ctx(Some(1_000)));
    let p = progress(&folded);
    assert_eq!(p.epoch, Some(2));
    assert_eq!(p.epoch_text.as_deref(), Some("2/3"));
    assert_eq!((p.step, p.total_steps), (Some(10), Some(24)));
    assert_eq!(
        (p.samples_seen, p.total_samples),
        (Some(1200), Some(SAMPLES))
    );
    assert_eq!(p.percent, Some(41));
    assert_eq!((p.loss, p.throughput), (Some(0.1), Some(40.0)));
    // 1,800 samples left at 40 a second.
    assert_eq!(p.eta, Some(time(1_045)));
    assert_eq!(p.update_time, Some(time(1_000)));
}

#[test]
fn an_epoch_ends_on_its_last_step_with_that_steps_loss() {
    let folded = run(
        &LogState::default(),
        &[vec![setup()], steps(0, 1, 24)].concat(),
    );
    assert_eq!(
        epochs_completed(&folded.transitions),
        vec![
            (1, Some(1.0 / 8.0), Some(960)),
            (2, Some(1.0 / 16.0), Some(1920)),
            (3, Some(1.0 / 24.0), Some(2880)),
        ]
    );
    let p = progress(&folded);
    assert_eq!(
        (p.percent, p.epoch_text.as_deref()),
        (Some(100), Some("3/3"))
    );
    assert_eq!(p.eta, None);
}

#[test]
fn without_steps_per_epoch_an_epoch_ends_when_the_next_begins_and_percent_stays_below_100() {
    // A parser started mid-log: no setup record, no num_epoch_steps (v0.5–v0.10).
    let records: Vec<Record> = steps(0, 1, 24)
        .into_iter()
        .map(|r| match r {
            Record::Step(s) => Record::Step(StepMetrics {
                num_epoch_steps: None,
                format: MetricsFormat::JsonBlock,
                ..s
            }),
            r => r,
        })
        .collect();
    let folded = run(&LogState::default(), &records);
    assert_eq!(
        epochs_completed(&folded.transitions),
        vec![
            (1, Some(1.0 / 8.0), Some(960)),
            (2, Some(1.0 / 16.0), Some(1920))
        ]
    );
    let p = progress(&folded);
    // 2,880 of 3,000 samples, by samples; steps unknown.
    assert_eq!((p.percent, p.total_steps), (Some(96), None));
}

#[test]
fn chunked_folds_equal_one_fold_and_refolding_changes_nothing() {
    let records = [
        vec![setup()],
        steps(0, 1, 8),
        vec![
            saved(
                CheckpointKind::Hf,
                "/o/hf_format/samples_960",
                None,
                Some(960),
            ),
            saved(
                CheckpointKind::FullState,
                "/o/full_state/epoch_0",
                Some(0),
                Some(960),
            ),
        ],
        steps(0, 9, 13),
        vec![
            Record::Resumed(ResumePoint {
                path: Some("/o/full_state/epoch_0".into()),
                epoch: 0,
                samples: Some(960),
                global_step: None,
            }),
            setup(),
        ],
        steps(1, 1, 16),
    ]
    .concat();
    let whole = run(&LogState::default(), &records);
    for cut in 0..=records.len() {
        let first = run(&LogState::default(), &records[..cut]);
        let second = run(&first.state, &records[cut..]);
        assert_eq!(second.state, whole.state, "cut at {cut}");
        let transitions = [first.transitions, second.transitions].concat();
        assert_eq!(transitions, whole.transitions, "cut at {cut}");
    }
    let again = run(&whole.state, &records[records.len() - 5..]);
    assert_eq!((again.state, again.transitions), (whole.state, vec![]));
}

#[test]
fn a_resume_goes_back_to_its_checkpoint_and_is_recorded() {
    let before = run(
        &LogState::default(),
        &[vec![setup()], steps(0, 1, 12)].concat(),
    );
    assert_eq!(progress(&before).percent, Some(50));
    let point = ResumePoint {
        path: Some("/o/full_state/epoch_0".into()),
        epoch: 0,
        samples: Some(960),
        global_step: None,
    };
    let resumed = run(&before.state, &[Record::Resumed(point.clone())]);
    let p = progress(&resumed);
    assert_eq!(
        (p.epoch, p.step, p.samples_seen),
        (Some(2), Some(8), Some(960))
    );
    assert_eq!(p.percent, Some(33));
    let checkpoint = Checkpoint {
        path: "/o/full_state/epoch_0".into(),
        epoch: Some(1),
        samples: Some(960),
        kind: CheckpointKind::FullState,
        time: None,
    };
    assert_eq!(resumed.state.resumed_from.as_ref(), Some(&checkpoint));
    assert_eq!(resumed.state.checkpoints, vec![checkpoint.clone()]);
    assert_eq!(
        resumed.transitions,
        vec![Transition::ResumedFromCheckpoint { checkpoint }]
    );
    // The resumed run counts steps from 1 again; its epoch 2 is reported once more.
    let after = run(&resumed.state, &steps(1, 1, 8));
    assert_eq!(progress(&after).step, Some(16));
    assert_eq!(
        epochs_completed(&after.transitions),
        vec![(2, Some(1.0 / 8.0), Some(1920))]
    );
    let again = run(&after.state, &[Record::Resumed(point)]);
    assert!(again.transitions.is_empty());
}

#[test]
fn a_mid_epoch_resume_keeps_its_epoch_open() {
    let before = run(
        &LogState::default(),
        &[vec![setup()], steps(0, 1, 12)].concat(),
    );
    let resumed = run(
        &before.state,
        &[Record::ResumedMidEpoch {
            epoch: 1,
            last_step: Some(10),
        }],
    );
    let p = progress(&resumed);
    assert_eq!((p.epoch, p.step, p.percent), (Some(2), Some(10), Some(41)));
    let after = run(&resumed.state, &steps(0, 11, 16));
    assert_eq!(
        epochs_completed(&after.transitions),
        vec![(2, Some(1.0 / 16.0), Some(1920))]
    );
}

#[test]
fn a_fresh_start_starts_over() {
    let before = run(
        &LogState::default(),
        &[vec![setup()], steps(0, 1, 12)].concat(),
    );
    let after = run(&before.state, &[Record::FreshStart, setup()]);
    let p = progress(&after);
    assert_eq!(
        (p.epoch, p.step, p.percent, p.loss),
        (None, None, None, None)
    );
    assert_eq!((p.total_steps, p.total_samples), (Some(24), Some(SAMPLES)));
    let again = run(&after.state, &steps(0, 1, 8));
    assert_eq!(epochs_completed(&again.transitions).len(), 1);
}

#[test]
fn percent_never_goes_down_within_a_run() {
    let ahead = run(
        &LogState::default(),
        &[vec![setup()], steps(0, 1, 12)].concat(),
    );
    // A rank line of the same run, behind the metrics: nothing moves.
    let late = Record::RankLoss(RankLoss {
        epoch: 0,
        step: 3,
        rank: 0,
        loss: Some(9.0),
    });
    let folded = run(&ahead.state, &[late]);
    assert_eq!(folded.state, ahead.state);
}

#[test]
fn rank_zero_lines_move_the_step_but_not_the_loss_nor_past_an_epochs_end() {
    let before = run(
        &LogState::default(),
        &[vec![setup()], steps(0, 1, 6)].concat(),
    );
    let line = |step, rank| {
        Record::RankLoss(RankLoss {
            epoch: 0,
            step,
            rank,
            loss: Some(9.0),
        })
    };
    let folded = run(&before.state, &[line(7, 1), line(7, 0)]);
    let p = progress(&folded);
    assert_eq!((p.step, p.loss), (Some(7), Some(1.0 / 6.0)));
    // The last step of an epoch waits for its metrics, which end the epoch with their loss.
    let folded = run(&folded.state, &[line(8, 0)]);
    assert_eq!(progress(&folded).step, Some(7));
    assert!(folded.transitions.is_empty());
}

#[test]
fn update_time_and_eta_move_only_with_the_progress() {
    let first = fold(
        &LogState::default(),
        &[setup(), step(0, 1, 120)],
        &ctx(Some(100)),
    );
    let idle = fold(&first.state, &[], &ctx(Some(200)));
    assert_eq!(idle.state, first.state);
    let next = fold(&first.state, &[step(0, 2, 240)], &ctx(Some(300)));
    assert_eq!(progress(&next).update_time, Some(time(300)));
    assert_eq!(progress(&next).eta, Some(time(300 + 69)));
}

#[test]
fn odd_numbers_are_left_out() {
    let nan = Record::Step(StepMetrics {
        loss: Some(f64::NAN),
        throughput: Some(f64::INFINITY),
        ..match step(0, 1, 120) {
            Record::Step(s) => s,
            _ => unreachable!(),
        }
    });
    let folded = run(&LogState::default(), &[nan]);
    assert_eq!(
        (progress(&folded).loss, progress(&folded).throughput),
        (None, None)
    );
    // Absurd values neither panic nor move anything.
    let absurd = [
        step(i64::MAX, 1, 1),
        step(-1, 1, 1),
        step(0, -5, 1),
        Record::Setup(Setup {
            num_epochs: Some(i64::MAX),
            steps_per_epoch: Some(i64::MAX),
            total_samples: Some(i64::MAX),
        }),
        step(3, i64::MAX, i64::MAX),
        Record::ResumedMidEpoch {
            epoch: i64::MIN,
            last_step: None,
        },
    ];
    let folded = fold(&LogState::default(), &absurd, &ctx(Some(0)));
    assert!(folded.state.progress.is_some());
    // Nor does a status someone edited by hand.
    let edited = LogState {
        progress: Some(Progress {
            epoch: Some(i64::MIN),
            step: Some(i64::MIN),
            total_steps: Some(i64::MIN),
            total_epochs: Some(-1),
            percent: Some(100),
            ..Progress::default()
        }),
        ..LogState::default()
    };
    let line = Record::RankLoss(RankLoss {
        epoch: 0,
        step: i64::MIN,
        rank: 0,
        loss: None,
    });
    let saved = saved(CheckpointKind::FullState, "/o", Some(i64::MAX), Some(-1));
    fold(
        &edited,
        &[setup(), line, saved, step(0, 1, 1)],
        &ctx(Some(0)),
    );
}

#[test]
fn checkpoints_are_deduplicated_and_capped() {
    let last = |samples| {
        saved(
            CheckpointKind::Hf,
            "/o/hf_format/last_epoch",
            None,
            Some(samples),
        )
    };
    let folded = run(&LogState::default(), &[last(960), last(1920)]);
    assert_eq!(folded.state.checkpoints.len(), 1);
    assert_eq!(folded.state.checkpoints[0].samples, Some(1920));
    assert_eq!(folded.transitions.len(), 2);

    let many: Vec<Record> = (0..MAX_CHECKPOINTS as i64 + 6)
        .map(|i| {
            saved(
                CheckpointKind::Hf,
                &format!("/o/hf_format/samples_{i}"),
                None,
                Some(i),
            )
        })
        .collect();
    let folded = run(&LogState::default(), &many);
    assert_eq!(folded.state.checkpoints.len(), MAX_CHECKPOINTS);
    assert_eq!(folded.state.checkpoints[0].samples, Some(6));
}

#[test]
fn checkpoints_take_epoch_and_samples_from_the_progress_when_the_log_does_not_say() {
    let folded = run(
        &LogState::default(),
        &[
            setup(),
            step(1, 9, 1080),
            saved(CheckpointKind::Hf, "/o/hf_format/last_epoch", None, None),
        ],
    );
    let c = &folded.state.checkpoints[0];
    assert_eq!((c.epoch, c.samples), (Some(2), Some(1080)));
}

#[test]
fn transition_reasons_and_notes() {
    let epoch = Transition::EpochCompleted {
        epoch: 2,
        total_epochs: Some(3),
        loss: Some(0.41234),
        samples_seen: Some(1920),
    };
    assert_eq!(epoch.reason(), "EpochCompleted");
    assert_eq!(
        epoch.note(),
        "Epoch 2/3 completed, loss 0.4123, 1920 samples seen"
    );
    let checkpoint = Checkpoint {
        path: "/o/full_state/epoch_1".into(),
        epoch: Some(2),
        samples: Some(1920),
        kind: CheckpointKind::FullState,
        time: None,
    };
    let saved = Transition::CheckpointSaved {
        checkpoint: checkpoint.clone(),
    };
    assert_eq!(saved.reason(), "CheckpointSaved");
    assert_eq!(
        saved.note(),
        "Full training state saved in /o/full_state/epoch_1"
    );
    let resumed = Transition::ResumedFromCheckpoint { checkpoint };
    assert_eq!(
        resumed.note(),
        "Training resumed from /o/full_state/epoch_1"
    );
    let json = serde_json::to_value(&epoch).unwrap();
    assert_eq!(json["type"], "epochCompleted");
    assert_eq!(json["samplesSeen"], 1920);
}
