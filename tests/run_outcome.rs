//! How a run ended, as `inspect-log` tells it from a whole log: on the genuine runs of
//! instructlab-training 0.12.1 and 0.16.2 (tests/fixtures/instructlab/realrun, whose metrics
//! JSONL InstructLab wrote itself), on the generated fixtures, on logs cut short, and on the
//! tails of failures the operator names (CUDA out of memory, NCCL, a refused command line).

use finetune_operator::logs::progress::{Inspection, inspect};
use serde_json::Value;

fn read(path: &str) -> Vec<u8> {
    let path = format!(
        "{}/tests/fixtures/instructlab/{path}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// `num_epochs` × `total_samples` of the last start of training in a metrics JSONL.
fn planned(metrics: &str) -> (i64, i64) {
    let text = String::from_utf8(read(&format!("realrun/{metrics}"))).unwrap();
    let (mut epochs, mut samples) = (0, 0);
    for line in text.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        if let Some(e) = v["num_epochs"].as_i64() {
            epochs = e;
        }
        if v.get("num_batches").is_some() {
            samples = v["total_samples"].as_i64().unwrap();
        }
    }
    (epochs, epochs * samples)
}

fn outcome(inspection: &Inspection) -> String {
    serde_json::to_value(inspection.outcome)
        .unwrap()
        .as_str()
        .unwrap()
        .to_string()
}

/// The genuine runs: (log, metrics, outcome, Failed condition reason).
const GENUINE: [(&str, &str, &str, Option<&str>); 5] = [
    ("train-0.12.log", "metrics-0.12.jsonl", "completed", None),
    ("train-0.16.log", "metrics-0.16.jsonl", "completed", None),
    // Restarted on the finished output directory: nothing left, exit 0.
    (
        "train-0.16-resumed.log",
        "metrics-0.16-after-resume.jsonl",
        "completed",
        None,
    ),
    // The on-demand checkpoint's exit, with code 0, in epoch 2 of 8.
    (
        "train-0.16-ondemand.log",
        "metrics-0.16-ondemand.jsonl",
        "checkpointed",
        Some("CheckpointedNotFinished"),
    ),
    // SIGTERM to torchrun, exit 1.
    (
        "train-0.16-sigterm.log",
        "metrics-0.16-sigterm.jsonl",
        "failed",
        Some("Terminated"),
    ),
];

#[test]
fn the_genuine_runs_end_as_they_did() {
    for (log, metrics, expected, reason) in GENUINE {
        let (epochs, samples) = planned(metrics);
        let inspection = inspect(&read(&format!("realrun/{log}")), Some(epochs));
        assert_eq!(outcome(&inspection), expected, "{log}");
        assert_eq!(inspection.samples_planned, Some(samples), "{log}");
        // No genuine run skipped samples (and the completed ones saw every one).
        assert_eq!(inspection.samples_skipped, None, "{log}");
        let failure = inspection.failure.as_ref();
        assert_eq!(failure.map(|f| f.reason.as_str()), reason, "{log}");
        if let Some(f) = failure {
            assert!(!f.message.is_empty() && !f.last_lines.is_empty(), "{log}");
            assert!(f.last_lines.len() <= 40, "{log}");
            for line in &f.last_lines {
                assert!(
                    !line.contains('\x1b') && !line.contains('\r'),
                    "{log}: {line:?}"
                );
                assert!(
                    !line.contains("avg_loss=") && !line.contains("it/s]"),
                    "{log}: {line}"
                );
            }
        }
    }
}

#[test]
fn the_last_lines_end_with_what_happened() {
    let sigterm = inspect(&read("realrun/train-0.16-sigterm.log"), Some(8));
    let f = sigterm.failure.unwrap();
    assert!(
        f.message
            .starts_with("torchrun received signal 15 (SIGTERM)"),
        "{}",
        f.message
    );
    // The agent's warning, the traceback and its exception: the run's last words.
    assert!(
        f.last_lines
            .iter()
            .any(|l| l.contains("Received 15 death signal")),
        "{:?}",
        f.last_lines
    );
    assert!(
        f.last_lines
            .contains(&"Traceback (most recent call last):".to_string())
    );
    assert_eq!(
        f.last_lines.last().map(String::as_str),
        Some(
            "torch.distributed.elastic.multiprocessing.api.SignalException: Process 4676 got signal: 15"
        )
    );

    let on_demand = inspect(&read("realrun/train-0.16-ondemand.log"), Some(8));
    let f = on_demand.failure.unwrap();
    assert!(
        f.message.starts_with("InstructLab saved an on-demand checkpoint in /output/ilab-tiny/full_state/epoch_1 in epoch 2/8 (480 of 2560 samples)"),
        "{}",
        f.message
    );
    let last = f.last_lines.last().unwrap();
    assert!(
        last.contains(
            "On-demand checkpoint saved (during minibatch processing). Exiting training."
        ),
        "{last}"
    );
}

#[test]
fn a_log_cut_short_is_incomplete() {
    for (log, epochs) in [
        ("train-0.16.log", 2),
        ("train-0.16-ondemand.log", 8),
        ("train-0.16-sigterm.log", 8),
    ] {
        let bytes = read(&format!("realrun/{log}"));
        // Cut at a line end half way through: before any exit, signal or last epoch.
        let half = bytes.len() / 2;
        let cut = half + bytes[half..].iter().position(|&b| b == b'\n').unwrap() + 1;
        let inspection = inspect(&bytes[..cut], Some(epochs));
        assert_eq!(outcome(&inspection), "incomplete", "{log}");
        assert_eq!(inspection.failure, None, "{log}");
    }
}

#[test]
fn the_generated_fixtures_complete_without_skipping() {
    // Their batches drop up to 3 samples a step, as packing does: short of the plan, within
    // a step per epoch.
    for log in [
        "v0.7.log",
        "v0.11.log",
        "v0.11-wrapped.log",
        "v0.12.log",
        "v0.12-resumed.log",
    ] {
        let inspection = inspect(&read(log), Some(3));
        assert_eq!(outcome(&inspection), "completed", "{log}");
        assert!(
            inspection.ending.samples_short.is_some_and(|s| s > 0),
            "{log}"
        );
        assert_eq!(inspection.samples_skipped, None, "{log}");
    }
}

/// The 0.16.2 run resumed from the on-demand checkpoint (not among the fixtures; its numbers
/// are in the README of the runs): steps 52 to 160 of 8 epochs × 20, 16 samples each, after
/// the checkpoint's 480 samples, in the genuine format of rank 0's metrics.
fn resumed_after_on_demand() -> Vec<u8> {
    let genuine = String::from_utf8(read("realrun/train-0.16-ondemand.log")).unwrap();
    let template = genuine
        .split(['\n', '\r'])
        .find(|l| l.contains("INFO     epoch=1, step=30, rank=0,"))
        .expect("a metrics line");
    let mut log = String::new();
    log += "\x1b[93mLoading state from: /output/ilab-tiny/full_state/epoch_1\x1b[0m\n";
    log += "\x1b[93mTraining metadata loaded: {'current_epoch': 1, 'samples_seen': 480, 'global_step': 31}\x1b[0m\n";
    for (i, step) in (52..=160).enumerate() {
        let samples = 480 + 16 * (i as i64 + 1);
        let line = template
            .replace(
                "epoch=1, step=30,",
                &format!("epoch={}, step={step},", (step - 1) / 20),
            )
            .replace("samples_seen=480,", &format!("samples_seen={samples},"));
        log += &line;
        log += "\n";
    }
    log.into_bytes()
}

#[test]
fn only_the_run_that_skipped_steps_is_flagged() {
    let inspection = inspect(&resumed_after_on_demand(), Some(8));
    assert_eq!(outcome(&inspection), "completed");
    let p = inspection.progress.as_ref().unwrap();
    assert_eq!((p.samples_seen, p.percent), (Some(2224), Some(100)));
    assert_eq!(
        (inspection.samples_planned, inspection.samples_skipped),
        (Some(2560), Some(336))
    );
    assert_eq!(
        inspection.failure, None,
        "InstructLab exits 0: not a failure"
    );
}

#[test]
fn failing_tails_are_named_as_the_operator_names_them() {
    let head = String::from_utf8(read("realrun/train-0.16.log")).unwrap();
    // The first half of a genuine run, then the end of a failure.
    let head = &head[..head.len() / 2];
    let cases = [
        (
            "[rank0]: Traceback (most recent call last):\n[rank0]:   File \"/app/main_ds.py\", line 600, in train\n[rank0]: torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 20.00 GiB. GPU 0 has a total capacity of 79.19 GiB\n",
            "CUDAOutOfMemory",
        ),
        (
            "[rank1]:[E1130 00:00:00.000000 ProcessGroupNCCL.cpp:616] [Rank 1] Watchdog caught collective operation timeout: WorkNCCL(SeqNum=7, OpType=ALLREDUCE) ran for 600000 milliseconds before timing out.\n",
            "NCCLTimeout",
        ),
        (
            "usage: main_ds.py [-h] [--model_name_or_path MODEL_NAME_OR_PATH]\nmain_ds.py: error: unrecognized arguments: --adamw_beta1=0.9\nE1130 00:00:00.000000 1 torch/distributed/elastic/multiprocessing/api.py:869] failed (exitcode: 2) local_rank: 0 (pid: 12) of binary: /usr/bin/python3\n",
            "IncompatibleImage",
        ),
        (
            "Traceback (most recent call last):\n  File \"/app/main_ds.py\", line 9, in main\nKeyError: 'messages'\n",
            "TrainingFailed",
        ),
    ];
    for (tail, reason) in cases {
        let inspection = inspect(format!("{head}\n{tail}").as_bytes(), Some(2));
        assert_eq!(outcome(&inspection), "failed", "{tail}");
        let f = inspection.failure.unwrap();
        assert_eq!(f.reason, reason, "{tail}");
        assert_eq!(
            f.last_lines.last().map(String::as_str),
            tail.lines().last(),
            "{tail}"
        );
    }
}

#[test]
fn the_cli_prints_fields_a_script_reads() {
    let path = format!(
        "{}/tests/fixtures/instructlab/realrun/train-0.16-sigterm.log",
        env!("CARGO_MANIFEST_DIR")
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_finetune-operator"))
        .args(["inspect-log", &path, "--epochs", "8"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["outcome"], "failed");
    assert_eq!(json["failure"]["reason"], "Terminated");
    assert!(
        json["failure"]["lastLines"]
            .as_array()
            .is_some_and(|l| !l.is_empty())
    );
    assert_eq!(json["samplesPlanned"], 2560);
    assert!(json["samplesSkipped"].is_null());
    assert_eq!(json["progress"]["samplesPlanned"], 2560);
}
