//! Each genuine run, read as the operator reads it, against InstructLab's own record of it.

use super::*;

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
