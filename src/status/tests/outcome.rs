//! How training ended, as the log tells it: a PyTorchJob that succeeded after an on-demand
//! checkpoint's exit (not finished: a new attempt), one that skipped samples (Succeeded, with a
//! Warning), and failures named from the failing pod's last lines.

use super::progress::{cursor, records};
use super::*;

/// The on-demand run of InstructLab 0.16.2 (8 epochs of 320 samples in 20 steps): step 30,
/// then the checkpoint asked for, then the exit.
const ON_DEMAND: &[&str] = &[
    "epoch=1, step=30, rank=0, overall_throughput=59.526, avg_loss=4.843, samples_seen=480, total_samples=320, num_epoch_steps=20",
    "\x1b[93mSaving full model state in /output/ft/full_state/epoch_1\x1b[0m",
    "\x1b[93mSaving training state: {'current_epoch': 1, 'samples_seen': 480, 'global_step': 31}\x1b[0m",
    "\x1b[93mModel state saved in: /output/ft/full_state/epoch_1\x1b[0m",
    "On-demand checkpoint saved (during minibatch processing). Exiting training.",
];

fn eight_epochs(status: FineTuneJobStatus) -> FineTuneJob {
    job(json!({"training": {"epochs": 8}}), Some(status))
}

fn ptj_world(condition: &str, lines: &[&str]) -> Observed {
    let mut w = world(
        Lookup::Skipped,
        Lookup::Present(pytorch_job(Some(condition), false)),
        vec![],
    );
    w.log = Some(LogRead {
        records: records(lines),
        cursor: Some(cursor("2026-11-26T10:04:59Z", 1)),
    });
    w
}

/// Not finished, and not failed: the ended PyTorchJob is deleted and training goes on from
/// the on-demand checkpoint as attempt 2.
fn assert_goes_on(d: &Decision) {
    assert_eq!(d.status.phase, Some(Phase::Training));
    assert_eq!(
        d.status.reason.as_deref(),
        Some(reason::INTERRUPTED.as_str())
    );
    assert_eq!(condition(&d.status, "Failed"), None);
    assert_eq!(condition(&d.status, "Complete"), None);
    assert_eq!(
        condition(&d.status, "Checkpointed"),
        Some(("True".into(), "OnDemandCheckpointSaved".into()))
    );
    assert_eq!(d.status.completion_time, None);
    assert_eq!(d.status.pytorch_job, None, "replaced by the next attempt's");
    assert_eq!(d.actions, [ChildAction::Delete(ChildKind::PyTorchJob)]);
    let e = d.events.last().unwrap();
    assert_eq!(
        (e.reason, e.severity),
        (reason::INTERRUPTED, Severity::Warning)
    );
    assert_eq!(
        e.note,
        "PyTorchJob ft stopped: InstructLab saved an on-demand checkpoint and exited with code 0; attempt 1 ended, and attempt 2 resumes from its last full-state checkpoint /output/ft/full_state/epoch_1 (disruption 1 of at most 5)"
    );
    let usage = d.status.usage.as_ref().unwrap();
    assert_eq!((usage.attempts, usage.disruptions), (1, 1));
    assert_eq!(usage.running_since, None);
}

#[test]
fn a_success_after_an_on_demand_checkpoint_goes_on_as_a_new_attempt() {
    // The exit was read while the PyTorchJob still ran: the status keeps it.
    let j = eight_epochs(training_status());
    let running = ptj_world("Running", ON_DEMAND);
    let read = decide(&j, &running);
    let p = read.status.progress.as_ref().unwrap();
    assert!(p.on_demand_exit);
    assert_eq!(p.samples_planned, Some(2560));
    assert_eq!(read.status.phase, Some(Phase::Training));
    assert_settles(j, &read, &running);

    // Then the PyTorchJob succeeds, with nothing new in the log.
    let j = eight_epochs(read.status);
    let done = ptj_world("Succeeded", &[]);
    let d = decide(&j, &done);
    assert_goes_on(&d);
    assert_eq!(reasons(&d), [reason::INTERRUPTED]);
    assert_settles(j, &d, &done);
}

#[test]
fn an_on_demand_exit_in_the_final_read_goes_on_too() {
    let j = eight_epochs(training_status());
    let w = ptj_world("Succeeded", ON_DEMAND);
    let d = decide(&j, &w);
    assert_goes_on(&d);
    assert_eq!(
        reasons(&d),
        [
            reason::CHECKPOINT_SAVED,
            reason::ON_DEMAND_CHECKPOINT_SAVED,
            reason::INTERRUPTED
        ]
    );
    assert_settles(j, &d, &w);
}

/// The run resumed from the on-demand checkpoint, as InstructLab 0.16.2 does it: steps go on
/// from the checkpoint's global step, but the rest of epoch 2 (from 1) and 11 steps of the next
/// are skipped, and the last step has seen `last_samples`.
fn resumed(last_samples: i64) -> Vec<String> {
    vec![
        "\x1b[93mLoading state from: /output/ft/full_state/epoch_1\x1b[0m".into(),
        "\x1b[93mTraining metadata loaded: {'current_epoch': 1, 'samples_seen': 480, 'global_step': 31}\x1b[0m".into(),
        "epoch=2, step=52, rank=0, overall_throughput=200.0, avg_loss=3.000, samples_seen=496, total_samples=320, num_epoch_steps=20".into(),
        format!("epoch=7, step=160, rank=0, overall_throughput=200.0, avg_loss=1.000, samples_seen={last_samples}, total_samples=320, num_epoch_steps=20"),
    ]
}

#[test]
fn a_run_that_skipped_samples_succeeds_with_a_warning_once() {
    let j = eight_epochs(training_status());
    let first = decide(&j, &ptj_world("Running", ON_DEMAND));
    // The pod restarted (a new start clears the exit) and trained to the last epoch.
    let j = eight_epochs(first.status);
    let lines = resumed(2224);
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    let w = ptj_world("Succeeded", &lines);
    let d = decide(&j, &w);
    assert_eq!(d.status.phase, Some(Phase::Succeeded));
    let p = d.status.progress.as_ref().unwrap();
    assert_eq!(
        (
            p.percent,
            p.samples_planned,
            p.samples_skipped,
            p.on_demand_exit
        ),
        (Some(100), Some(2560), Some(336), false)
    );
    let skipped = "336 of 2560 planned samples (13 %) were never trained although every epoch ended (2224 seen)";
    let complete = d.status.conditions.iter().find(|c| c.type_ == "Complete");
    assert!(
        complete.is_some_and(|c| c.status == "True" && c.message.contains(skipped)),
        "{complete:?}"
    );
    let warnings: Vec<_> = d
        .events
        .iter()
        .filter(|e| e.severity == Severity::Warning)
        .collect();
    assert_eq!(warnings.len(), 1, "{:?}", d.events);
    assert_eq!(warnings[0].reason, reason::SAMPLES_SKIPPED);
    assert!(
        warnings[0].note.starts_with(skipped),
        "{}",
        warnings[0].note
    );
    assert!(reasons(&d).contains(&reason::TRAINING_SUCCEEDED));
    assert_settles(j, &d, &w);
}

#[test]
fn a_gap_within_a_step_per_epoch_is_not_skipped() {
    // 8 epochs of 16-sample steps: up to 128 samples short is batch packing.
    let j = eight_epochs(training_status());
    let lines = resumed(2560 - 128);
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    let w = ptj_world("Succeeded", &lines);
    let d = decide(&j, &w);
    assert_eq!(d.status.phase, Some(Phase::Succeeded));
    assert_eq!(d.status.progress.as_ref().unwrap().samples_skipped, None);
    assert!(!reasons(&d).contains(&reason::SAMPLES_SKIPPED));
    assert_eq!(
        d.status.message.as_deref(),
        Some("PyTorchJob ft finished training")
    );
    assert_settles(j, &d, &w);
}

/// The last 40 lines of a genuine log, as the controller reads a tail.
fn genuine_tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

fn failed_with_tail(tail: String) -> Decision {
    let j = job(json!({}), Some(training_status()));
    let mut w = world(
        Lookup::Skipped,
        Lookup::Present(pytorch_job(Some("Failed"), false)),
        vec![pod("ft-master-0", "pytorch", json!({}), Some(1), 0)],
    );
    w.failure_log = Some(tail);
    let d = decide(&j, &w);
    assert_settles(j, &d, &w);
    d
}

#[test]
fn the_failing_pods_last_lines_name_the_cause() {
    // torchrun got SIGTERM (the pod was deleted, evicted, preempted) and exited 1.
    let sigterm =
        include_str!("../../../tests/fixtures/instructlab/realrun/train-0.16-sigterm.log");
    // Not the run's own failure: it goes on as a new attempt.
    let d = failed_with_tail(genuine_tail(sigterm));
    assert_eq!(condition(&d.status, "Failed"), None);
    assert_eq!(
        (d.status.phase, d.status.message.as_deref()),
        (
            Some(Phase::Training),
            Some(
                "PyTorchJob ft stopped: torchrun got SIGTERM from outside the run and exited; attempt 1 ended, and attempt 2 resumes from the start (no full-state checkpoint was saved yet) (disruption 1 of at most 5)"
            )
        )
    );
    assert_eq!(d.actions, [ChildAction::Delete(ChildKind::PyTorchJob)]);

    // An image whose InstructLab is older than a field the spec sets.
    let d = failed_with_tail(
        "usage: main_ds.py [-h] [--model_name_or_path MODEL_NAME_OR_PATH]\n[rank0]: main_ds.py: error: unrecognized arguments: --adamw_beta1=0.9\n".into(),
    );
    assert_eq!(
        condition(&d.status, "Failed"),
        Some(("True".into(), "IncompatibleImage".into()))
    );
    assert!(d.status.message.as_deref().unwrap().contains(
        "refused its command line (main_ds.py: error: unrecognized arguments: --adamw_beta1=0.9)"
    ));

    // No cause the operator knows: the exception closes the message.
    let d = failed_with_tail(
        "Traceback (most recent call last):\n  File \"/app/x.py\", line 3, in <module>\nValueError: sample 3 has no assistant turn\n".into(),
    );
    assert_eq!(
        condition(&d.status, "Failed"),
        Some(("True".into(), "TrainingFailed".into()))
    );
    assert!(
        d.status
            .message
            .as_deref()
            .unwrap()
            .ends_with("; the log ends with ValueError: sample 3 has no assistant turn"),
        "{:?}",
        d.status.message
    );
}
