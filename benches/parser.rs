//! Throughput of the InstructLab log parser on one core.
//!
//! Builds large logs by repeating the fixtures of tests/fixtures/instructlab (each alone, then
//! all together), feeds them in 64 KiB chunks as the operator reads a log, and prints one JSON
//! line per log: bytes, lines, records, best-of-three seconds, MB/s, and milliseconds per 1,000
//! lines (wall time of one thread, which is its CPU time). `parse_and_fold` also folds each
//! chunk's records into the status values, as the controller does.
//!
//! `cargo bench --bench parser`; `BENCH_MB` sets the size of the combined log (default 200).

use std::hint::black_box;
use std::time::{Duration, Instant};

use finetune_operator::logs::progress::{FoldContext, LogState, ProgressParser, fold};

const FIXTURES: [&str; 5] = [
    "v0.7.log",
    "v0.11.log",
    "v0.11-wrapped.log",
    "v0.12.log",
    "v0.12-resumed.log",
];
const CHUNK: usize = 64 * 1024;
const RUNS: usize = 3;
const MB: f64 = 1e6;

fn main() {
    let total_mb: usize = std::env::var("BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let fixtures: Vec<(&str, Vec<u8>)> = FIXTURES
        .iter()
        .map(|name| {
            let path = format!(
                "{}/tests/fixtures/instructlab/{name}",
                env!("CARGO_MANIFEST_DIR")
            );
            (
                *name,
                std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}")),
            )
        })
        .collect();

    let per_fixture = (total_mb / 5).max(1) * 1_000_000;
    for (name, bytes) in &fixtures {
        report(name, "parse", &repeat(&[bytes], per_fixture), false);
    }
    let all: Vec<&Vec<u8>> = fixtures.iter().map(|(_, b)| b).collect();
    let combined = repeat(&all, total_mb * 1_000_000);
    report("all", "parse", &combined, false);
    report("all", "parse_and_fold", &combined, true);
}

/// The logs one after the other, again and again, until `size` bytes.
fn repeat(logs: &[&Vec<u8>], size: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(size + logs.iter().map(|l| l.len()).max().unwrap_or(0));
    while out.len() < size {
        for log in logs {
            out.extend_from_slice(log);
        }
    }
    out
}

fn report(log: &str, what: &str, bytes: &[u8], with_fold: bool) {
    let lines = bytes.iter().filter(|&&b| b == b'\n').count();
    let mut best = Duration::MAX;
    let mut records = 0;
    for _ in 0..RUNS {
        let start = Instant::now();
        records = run(bytes, with_fold);
        best = best.min(start.elapsed());
    }
    let seconds = best.as_secs_f64();
    println!(
        "{{\"bench\":\"parser\",\"log\":\"{log}\",\"what\":\"{what}\",\"bytes\":{},\"lines\":{lines},\"records\":{records},\"seconds\":{seconds:.3},\"mb_per_s\":{:.1},\"ms_per_1000_lines\":{:.4}}}",
        bytes.len(),
        bytes.len() as f64 / MB / seconds,
        seconds * 1000.0 / (lines as f64 / 1000.0),
    );
}

/// Feeds `bytes` in chunks; returns the number of records.
fn run(bytes: &[u8], with_fold: bool) -> usize {
    let mut parser = ProgressParser::new();
    let mut state = LogState::default();
    let ctx = FoldContext {
        total_epochs: Some(3),
        now: None,
    };
    let mut records = 0;
    for chunk in bytes.chunks(CHUNK) {
        let new = parser.feed(black_box(chunk));
        records += new.len();
        if with_fold {
            state = fold(&state, &new, &ctx).state;
        }
    }
    records += parser.finish().len();
    black_box(state);
    records
}
