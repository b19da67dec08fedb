//! Logs as real runs print them: multi-byte characters (tqdm's `█`, accents, CJK), 512-column
//! Rich lines, invalid bytes, lines longer than 16 KiB written as partial entries, and bursts
//! larger than one read. Whatever the bytes, the operator stays up, keeps reading, and reads the
//! last lines of a run.

use std::time::Duration;

use finetune_operator::api::Phase;
use k8s_openapi::api::core::v1::Pod;
use kube::api::DeleteParams;
use serde_json::json;

use testkit::e2e::*;

/// A tqdm bar as data_process prints it, padded like a 512-column Rich line.
fn tqdm_line(i: usize) -> String {
    format!(
        "Map (num_proc=8): {:>3}%|{}{}| {i}/320 [00:01<00:00, 250.00 examples/s] 数据 éàü",
        i * 100 / 320,
        "█".repeat(i % 60),
        " ".repeat(60 - i % 60)
    ) + &" ".repeat(300)
}

/// Waits until the job's progress shows `step`.
async fn wait_for_step(ns: &TestNamespace, name: &str, step: i64) {
    ns.wait_for(name, &format!("step {step}"), |j| {
        j.status
            .as_ref()
            .and_then(|s| s.progress.as_ref())
            .and_then(|p| p.step)
            == Some(step)
    })
    .await;
}

async fn operator_is_alive(operator: &mut Operator) {
    assert!(operator.running(), "the operator exited; see its log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_job_with_multibyte_wide_logs_is_diagnosed_and_the_operator_stays_up() {
    let ns = TestNamespace::new("mbfail").await;
    let mut operator = Operator::start(&ns.name);
    let log = format!("{}-train.log", ns.name);
    // Many long multi-byte lines, then the exception at the very end, Rich-padded to 512
    // columns: only a tail that keeps the newest lines sees it.
    let mut lines: Vec<String> = (0..80).map(tqdm_line).collect();
    lines.push(format!("{:<512}", "Traceback (most recent call last):"));
    lines.push(format!(
        "{:<512}",
        "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB █"
    ));
    ns.write_log(&log, &lines.iter().map(String::as_str).collect::<Vec<_>>());
    let spec = finetunejob(
        "mbfail",
        json!({"sim.finetune.dev/duration": "2s", "sim.finetune.dev/exit-code": "1"}),
    )
    .set("/podTemplate/labels", json!({"sim.finetune.dev/log": log}));
    ns.create(spec).await;
    let (job, _) = ns.wait_for_phase("mbfail", Phase::Failed).await;
    let failed = job
        .status
        .as_ref()
        .unwrap()
        .conditions
        .iter()
        .find(|c| c.type_ == "Failed")
        .cloned()
        .unwrap();
    assert_eq!(failed.reason, "CUDAOutOfMemory", "{failed:?}");
    let event = ns.wait_for_event("mbfail", "TrainingFailed").await;
    let note = event.note.unwrap_or_default();
    assert!(note.contains("CUDA out of memory"), "{note}");
    assert!(note.len() <= 1024);
    operator_is_alive(&mut operator).await;

    // Another job in the namespace is still reconciled.
    ns.create(finetunejob(
        "after",
        json!({"sim.finetune.dev/duration": "1s"}),
    ))
    .await;
    ns.wait_for_phase("after", Phase::Succeeded).await;
    operator_is_alive(&mut operator).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_training_job_with_multibyte_logs_completes() {
    let ns = TestNamespace::new("mbdel").await;
    let mut operator = Operator::start(&ns.name);
    let log = format!("{}-train.log", ns.name);
    let lines: Vec<String> = (0..60).map(tqdm_line).collect();
    ns.write_log(&log, &lines.iter().map(String::as_str).collect::<Vec<_>>());
    let spec = finetunejob("mbdel", json!({"sim.finetune.dev/duration": "10m"}))
        .set("/podTemplate/labels", json!({"sim.finetune.dev/log": log}));
    ns.create(spec).await;
    ns.wait_for_phase("mbdel", Phase::Training).await;
    // Its log is served once the master pod runs (it may wait for GPUs the other tests hold).
    ns.eventually("the master pod runs", || async {
        ns.api::<Pod>()
            .get_opt("mbdel-master-0")
            .await
            .unwrap()
            .and_then(|p| p.status?.phase)
            .is_some_and(|phase| phase == "Running")
    })
    .await;
    ns.jobs()
        .delete("mbdel", &DeleteParams::default())
        .await
        .unwrap();
    ns.eventually("the FineTuneJob is gone", || async {
        ns.jobs().get_opt("mbdel").await.unwrap().is_none()
    })
    .await;
    let cancelled = ns.wait_for_event("mbdel", "Cancelled").await;
    assert!(cancelled.note.unwrap_or_default().contains('█'));
    operator_is_alive(&mut operator).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_is_read_past_bursts_long_lines_and_invalid_bytes() {
    let ns = TestNamespace::new("burst").await;
    let mut operator = Operator::start_with(&ns.name, &["--progress-interval-seconds", "1"]);
    let log = format!("{}-train.log", ns.name);
    ns.write_log(&log, &[metrics_line(0, 1, 2.5).as_str()]);
    let spec = finetunejob("burst", json!({"sim.finetune.dev/duration": "10m"}))
        .set("/podTemplate/labels", json!({"sim.finetune.dev/log": log}));
    ns.create(spec).await;
    wait_for_step(&ns, "burst", 1).await;

    // One second holding more than a read (256 KiB) of tqdm redraws.
    let bar = tqdm_line(200).into_bytes();
    let burst: Vec<(&str, &[u8])> = (0..700).map(|_| ("F", bar.as_slice())).collect();
    ns.append_raw_log(&log, &burst);
    // A 40 KiB line of \r redraws, written as 16 KiB partial entries.
    let redraws = "\r 50%|█████     | 100/200".repeat(1700).into_bytes();
    let chunks: Vec<&[u8]> = redraws.chunks(16 * 1024).collect();
    let mut partial: Vec<(&str, &[u8])> = chunks[..chunks.len() - 1]
        .iter()
        .map(|c| ("P", *c))
        .collect();
    partial.push(("F", chunks[chunks.len() - 1]));
    ns.append_raw_log(&log, &partial);
    // Bytes that are not UTF-8, and a character cut in half.
    ns.append_raw_log(
        &log,
        &[
            ("F", b"\xff\xfe garbage \xe2\x96"),
            ("F", "ok █".as_bytes()),
        ],
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    ns.append_log(
        &log,
        &[
            metrics_line(0, 2, 2.1).as_str(),
            metrics_line(1, 3, 1.7).as_str(),
        ],
    );

    wait_for_step(&ns, "burst", 3).await;
    operator_is_alive(&mut operator).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_lines_of_a_run_are_read_when_it_succeeds() {
    // Reads are rare here (once an hour, and the first one an hour after the container
    // started): only the read at the end can see any line.
    let ns = TestNamespace::new("lastlines").await;
    let _operator = Operator::start_with(&ns.name, &["--progress-interval-seconds", "3600"]);
    let log = format!("{}-train.log", ns.name);
    ns.write_log(&log, &[metrics_line(0, 1, 2.5).as_str()]);
    let spec = finetunejob("last", json!({"sim.finetune.dev/duration": "12s"}))
        .set("/podTemplate/labels", json!({"sim.finetune.dev/log": log}));
    ns.create(spec).await;
    ns.wait_for_phase("last", Phase::Training).await;
    ns.append_log(
        &log,
        &[
            metrics_line(0, 2, 2.1).as_str(),
            metrics_line(1, 3, 1.7).as_str(),
            metrics_line(1, 4, 1.2).as_str(),
            "\u{1b}[93mModel saved in /output/last/hf_format/samples_400\u{1b}[0m",
        ],
    );
    let (job, _) = ns.wait_for_phase("last", Phase::Succeeded).await;
    let status = job.status.unwrap();
    let progress = status.progress.unwrap();
    assert_eq!((progress.step, progress.percent), (Some(4), Some(100)));
    assert_eq!(status.checkpoints.len(), 1, "{:?}", status.checkpoints);
    ns.eventually("the final epoch and checkpoint events", || async {
        let reasons = ns.event_reasons("last").await;
        reasons.iter().filter(|r| *r == "EpochCompleted").count() == 2
            && reasons.iter().any(|r| r == "CheckpointSaved")
    })
    .await;
}
