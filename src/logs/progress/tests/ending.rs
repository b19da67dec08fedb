//! How training ends (an on-demand checkpoint's exit, a signal, samples short of the plan) and
//! the validation loss.

use super::*;

#[test]
fn the_ending_says_how_training_stops_and_a_new_start_clears_it() {
    let before = run(
        &LogState::default(),
        &[vec![setup()], steps(0, 1, 12)].concat(),
    );
    assert_eq!(
        before.state.ending,
        Ending {
            planned_samples: Some(3 * SAMPLES),
            ..Ending::default()
        }
    );
    // An on-demand checkpoint's exit, then torchrun's signal.
    let exit = run(
        &before.state,
        &[Record::OnDemandExit, Record::LauncherSignal { signal: 15 }],
    );
    let ending = &exit.state.ending;
    assert!(ending.on_demand_exit && !ending.epochs_completed);
    assert_eq!(ending.signal, Some(15));
    assert!(exit.transitions.is_empty());
    // The exit is kept in the status, the rest of the progress does not move.
    let mut expected = before.state.progress.clone().unwrap();
    expected.on_demand_exit = true;
    assert_eq!(exit.state.progress, Some(expected));
    let status = crate::api::FineTuneJobStatus {
        progress: exit.state.progress.clone(),
        ..Default::default()
    };
    assert_eq!(
        LogState::from_status(&status).ending,
        Ending {
            signal: None,
            ..exit.state.ending.clone()
        },
        "what a status keeps of the ending"
    );
    // The next start of training (its setup record, a resume, a fresh start) clears them.
    for start in [
        setup(),
        Record::FreshStart,
        Record::Resumed(ResumePoint {
            path: None,
            epoch: 0,
            samples: Some(960),
            global_step: None,
        }),
        Record::ResumedMidEpoch {
            epoch: 1,
            last_step: Some(10),
        },
    ] {
        let again = run(&exit.state, std::slice::from_ref(&start));
        let ending = &again.state.ending;
        assert!(!ending.on_demand_exit, "{start:?}");
        assert_eq!(ending.signal, None, "{start:?}");
    }
    // Read in any cut, the same.
    let records = [
        vec![setup()],
        steps(0, 1, 12),
        vec![Record::OnDemandExit, Record::LauncherSignal { signal: 15 }],
    ]
    .concat();
    let whole = run(&LogState::default(), &records);
    for cut in 0..=records.len() {
        let first = run(&LogState::default(), &records[..cut]);
        assert_eq!(run(&first.state, &records[cut..]).state, whole.state);
    }
}

#[test]
fn every_epoch_ended_with_samples_short_of_the_plan() {
    // InstructLab 0.16.2, 8 epochs of 320 samples in 20 steps of 16, resumed from an
    // on-demand checkpoint in epoch 1 (0-based) after 480 samples: it skipped the rest of
    // epoch 1 and 11 steps of epoch 2, and ended after 2,224 samples instead of 2,560. (Steps
    // are numbered here by their place in the run.)
    let epochs = 8;
    let setup = Record::Setup(Setup {
        num_epochs: None,
        steps_per_epoch: Some(20),
        total_samples: Some(320),
    });
    let step = |epoch: i64, step: i64, samples_seen: i64| {
        Record::Step(StepMetrics {
            format: MetricsFormat::KeyValue,
            epoch,
            step,
            rank: Some(0),
            samples_seen,
            loss: Some(1.0),
            loss_key: Some(LossKey::AvgLoss),
            throughput: Some(200.0),
            total_samples: Some(320),
            num_epoch_steps: Some(20),
        })
    };
    let mut records = vec![
        setup,
        Record::Resumed(ResumePoint {
            path: Some("/o/full_state/epoch_1".into()),
            epoch: 1,
            samples: Some(480),
            global_step: Some(31),
        }),
    ];
    let mut samples = 480;
    for s in 52..=160 {
        samples += 16;
        records.push(step((s - 1) / 20, s, samples));
    }
    let ctx = FoldContext {
        total_epochs: Some(epochs),
        now: None,
    };
    let folded = fold(&LogState::default(), &records, &ctx);
    let p = progress(&folded);
    assert_eq!(
        (p.step, p.samples_seen, p.percent),
        (Some(160), Some(2224), Some(100))
    );
    assert_eq!(
        folded.state.ending,
        Ending {
            planned_samples: Some(2560),
            epochs_completed: true,
            samples_short: Some(336),
            on_demand_exit: false,
            signal: None,
        }
    );
    // The status says so, and keeps what the next fold needs to say it again.
    assert_eq!(
        (p.samples_planned, p.samples_skipped),
        (Some(2560), Some(336))
    );
    let status = crate::api::FineTuneJobStatus {
        progress: Some(p.clone()),
        ..Default::default()
    };
    assert_eq!(LogState::from_status(&status).ending, folded.state.ending);
    // A gap of at most one step's worth of samples per epoch (16 × 8) is batch packing.
    let packed = fold(&folded.state, &[step(7, 160, 2432)], &ctx);
    assert_eq!(packed.state.ending.samples_short, Some(128));
    assert_eq!(progress(&packed).samples_skipped, None);
    // A run that saw every sample is not short.
    let full = fold(&folded.state, &[step(7, 160, 2560)], &ctx);
    assert_eq!(full.state.ending.samples_short, None);
    assert!(full.state.ending.epochs_completed);
}

#[test]
fn the_latest_validation_loss_is_kept_at_its_most_precise() {
    let start = run(
        &LogState::default(),
        &[vec![setup()], steps(0, 1, 4)].concat(),
    );
    assert_eq!(progress(&start).validation_loss, None);
    // `Validation loss: %.6f`, then the metrics dict with `%.3f`: the same value.
    let validated = run(
        &start.state,
        &[
            Record::ValidationLoss { loss: 2.345678 },
            Record::ValidationLoss { loss: 2.346 },
        ],
    );
    assert_eq!(progress(&validated).validation_loss, Some(2.345678));
    assert!(validated.transitions.is_empty());
    // The dict alone, and `%.2e` for small values.
    let small = run(
        &validated.state,
        &[
            Record::ValidationLoss {
                loss: 0.000_123_456,
            },
            Record::ValidationLoss { loss: 1.23e-4 },
        ],
    );
    assert_eq!(progress(&small).validation_loss, Some(0.000_123_456));
    let next = run(&small.state, &[Record::ValidationLoss { loss: 1.9 }]);
    assert_eq!(progress(&next).validation_loss, Some(1.9));
    // Not a number: nothing; a fresh start: none yet.
    let nan = run(&next.state, &[Record::ValidationLoss { loss: f64::NAN }]);
    assert_eq!(progress(&nan).validation_loss, Some(1.9));
    let fresh = run(&next.state, &[Record::FreshStart]);
    assert_eq!(progress(&fresh).validation_loss, None);
}
