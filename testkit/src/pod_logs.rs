//! Pod logs as kwok serves them: files in the container runtime's (CRI) format, one entry a line,
//! `<RFC3339Nano timestamp> stdout <F|P> <text>`. A test or the benchmark appends to them while
//! the pods run, to play a training run in progress.

use std::io::Write;
use std::path::Path;

/// Appends lines (full entries), each stamped with the current time as a kubelet would.
pub fn append(path: &Path, lines: &[&str]) -> std::io::Result<()> {
    let mut text = String::new();
    for line in lines {
        let now = jiff::Timestamp::now();
        text.push_str(&format!("{now:.9} stdout F {line}\n"));
    }
    append_bytes(path, text.as_bytes())
}

/// Appends raw entries, all stamped with one timestamp (a burst within one second): each is
/// `(tag, bytes)`, tag `F` for a full line or `P` for a partial one, as the runtime writes a
/// line longer than 16 KiB. The bytes are written as they are, valid UTF-8 or not.
pub fn append_raw(path: &Path, entries: &[(&str, &[u8])]) -> std::io::Result<()> {
    let now = jiff::Timestamp::now();
    let mut bytes = Vec::new();
    for (tag, text) in entries {
        bytes.extend_from_slice(format!("{now:.9} stdout {tag} ").as_bytes());
        bytes.extend_from_slice(text);
        bytes.push(b'\n');
    }
    append_bytes(path, &bytes)
}

fn append_bytes(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)?
        .write_all(bytes)
}

/// An InstructLab v0.12 metrics line as its Rich handler prints it (100 samples a step, 2 steps
/// an epoch, 200 samples in all).
pub fn metrics_line(epoch: i64, step: i64, loss: f64) -> String {
    format!(
        "[10:00:00] INFO     epoch={epoch}, step={step}, rank=0, overall_throughput=41.500, lr=2.00e-05, avg_loss={loss:.3}, samples_seen={}, total_samples=200, num_epoch_steps=2   main_ds.py:170",
        step * 100
    )
}
