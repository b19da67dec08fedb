//! Progress from the rank-0 log: epochs, checkpoints, their events and actions.

use super::*;

/// Records of InstructLab v0.12 log lines: metrics through Rich's handler, markers as prints.
pub(super) fn records(lines: &[&str]) -> Vec<crate::logs::progress::Record> {
    let log: String = lines
        .iter()
        .map(|l| match l.starts_with("epoch=") {
            true => format!("[10:04:59] INFO     {l}   main_ds.py:170\n"),
            false => format!("{l}\n"),
        })
        .collect();
    let mut parser = crate::logs::progress::ProgressParser::new();
    let mut records = parser.feed(log.as_bytes());
    records.extend(parser.finish());
    records
}

pub(super) fn cursor(time: &str, lines: i64) -> crate::api::LogCursor {
    crate::api::LogCursor {
        pod_uid: "uid-m".into(),
        time: time.into(),
        lines,
    }
}

#[test]
fn log_lines_become_progress_checkpoints_and_events() {
    let j = job(json!({"training": {"epochs": 2}}), Some(training_status()));
    let mut w = world(
        Lookup::Skipped,
        Lookup::Present(pytorch_job(Some("Running"), false)),
        vec![],
    );
    w.log = Some(LogRead {
        records: records(&[
            "epoch=0, step=1, rank=0, overall_throughput=40.0, avg_loss=2.500, samples_seen=100, total_samples=200, num_epoch_steps=2",
            "epoch=0, step=2, rank=0, overall_throughput=42.0, avg_loss=2.000, samples_seen=200, total_samples=200, num_epoch_steps=2",
            "\x1b[93mModel state saved in: /output/ft/full_state/epoch_0\x1b[0m",
        ]),
        cursor: Some(cursor("2026-11-26T10:04:59.5Z", 3)),
    });
    w.next_log_read = Some(Duration::from_secs(10));
    let d = decide(&j, &w);
    let p = d.status.progress.clone().expect("progress");
    assert_eq!(
        (p.epoch, p.epoch_text.as_deref(), p.step, p.total_steps),
        (Some(1), Some("1/2"), Some(2), Some(4))
    );
    assert_eq!(p.percent, Some(50));
    assert_eq!(p.loss, Some(2.0));
    assert_eq!(
        d.status.checkpoints[0].path,
        "/output/ft/full_state/epoch_0"
    );
    assert_eq!(
        d.status.log_cursor,
        Some(cursor("2026-11-26T10:04:59.5Z", 3))
    );
    assert_eq!(reasons(&d), ["EpochCompleted", "CheckpointSaved"]);
    // Events that repeat a reason carry distinct actions, so the recorder never merges them.
    assert_eq!(d.events[0].action, "EpochCompleted/epoch-1");
    assert!(
        d.events[0]
            .note
            .contains("Epoch 1/2 completed, loss 2.0000"),
        "{}",
        d.events[0].note
    );
    assert_eq!(
        d.requeue_after,
        Some(Duration::from_secs(10)),
        "the next read"
    );

    // Nothing new read: nothing written, nothing published.
    let j = job(json!({"training": {"epochs": 2}}), Some(d.status.clone()));
    let mut quiet = world(
        Lookup::Skipped,
        Lookup::Present(pytorch_job(Some("Running"), false)),
        vec![],
    );
    quiet.log = Some(LogRead {
        records: vec![],
        cursor: Some(cursor("2026-11-26T10:04:59.5Z", 3)),
    });
    let again = decide(&j, &quiet);
    assert_eq!(again.status, d.status);
    assert!(again.events.is_empty());
}

#[test]
fn the_last_lines_count_before_success() {
    let j = job(json!({"training": {"epochs": 1}}), Some(training_status()));
    let mut w = world(
        Lookup::Skipped,
        Lookup::Present(pytorch_job(Some("Succeeded"), false)),
        vec![],
    );
    w.log = Some(LogRead {
        records: records(&[
            "epoch=0, step=2, rank=0, avg_loss=1.500, samples_seen=200, total_samples=200, num_epoch_steps=2",
        ]),
        cursor: None,
    });
    let d = decide(&j, &w);
    assert_eq!(d.status.phase, Some(Phase::Succeeded));
    assert_eq!(d.status.progress.as_ref().unwrap().percent, Some(100));
    assert_eq!(reasons(&d), ["EpochCompleted", "TrainingSucceeded"]);
}

#[test]
fn event_actions_fit_in_128_bytes_whatever_the_checkpoint_path() {
    // The apiserver counts an action's length in bytes; a path of CJK characters has three
    // bytes to a character.
    let j = job(json!({}), Some(training_status()));
    let mut w = world(
        Lookup::Skipped,
        Lookup::Present(pytorch_job(Some("Running"), false)),
        vec![],
    );
    let dir = "样本".repeat(30);
    w.log = Some(LogRead {
        records: records(&[
            &format!("\x1b[93mSaving model in huggingface format at: {dir}\x1b[0m"),
            &format!("\x1b[93mModel saved in /output/ft/hf_format/{dir}\x1b[0m"),
        ]),
        cursor: None,
    });
    let d = decide(&j, &w);
    let saved = d
        .events
        .iter()
        .find(|e| e.reason == "CheckpointSaved")
        .expect("a CheckpointSaved event");
    assert!(saved.action.len() <= 128, "{} bytes", saved.action.len());
    assert!(
        saved.action.starts_with("CheckpointSaved/样本"),
        "{}",
        saved.action
    );
}
