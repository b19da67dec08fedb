//! The last lines of a log worth reading to debug a run: without progress bars, blank lines
//! and the per-step progress records that make up most of a training log, so that what is left
//! is what happened at the end (the last checkpoint, a warning, the traceback and its
//! exception). Bounded and redacted as the tails of Events are ([`super::redact`]): whoever gets
//! `inspect-log`'s output may not be allowed to read the training data.

use std::sync::LazyLock;

use regex::Regex;

use super::plain_line;
use super::redact::{drop_samples, mask_secrets};
use super::text::{bounded, ceil_char_boundary};

/// Lines kept, the newest; as many as the operator reads for an Event's tail.
pub const MAX_LAST_LINES: usize = super::TAIL_LINES as usize;
/// Bytes kept of one line.
pub const MAX_LAST_LINE_BYTES: usize = 512;
/// Bytes of the end of the log looked at: far more than the lines kept need.
const MAX_SCANNED_BYTES: usize = 1024 * 1024;

/// A tqdm bar: `Epoch 1:  50%|█████     | 10/20 [00:01<00:01,  6.28it/s]`.
static PROGRESS_BAR: LazyLock<Regex> =
    LazyLock::new(|| regex(r"[0-9]+%\|[^|]*\|\s*[0-9.]+[kMG]?/[0-9.?]+[kMG]?"));

/// A step's metrics, a rank's loss or a validation loss, with or without Rich's time and level
/// columns, and the lines of a metrics JSON block (v0.5–v0.10).
static PROGRESS_RECORD: LazyLock<Regex> = LazyLock::new(|| {
    regex(
        r#"^(?:\[[0-9:]+\])?\s*(?:(?:DEBUG|INFO|WARNING)\s+)?(?:epoch=[0-9]+, step=[0-9]+|Epoch: [0-9]+, Step: [0-9]+, Rank: [0-9]+|val_loss=|Validation loss: )|^\s*[{}]\s*$|^\s*"[A-Za-z_]+": [^{\[]*$"#,
    )
});

/// Rich pads each line to the console width (512 columns in the operator's pods) between the
/// message and the source column.
static PADDING: LazyLock<Regex> = LazyLock::new(|| regex(r"(\S) {4,}"));

fn regex(pattern: &str) -> Regex {
    Regex::new(pattern).expect("valid constant pattern")
}

/// The last [`MAX_LAST_LINES`] meaningful lines of `log`, oldest first: colour codes removed,
/// of a line redrawn after `\r` the last drawing, Rich's padding shortened, training samples
/// dropped and secrets masked (as in an Event's tail), each at most [`MAX_LAST_LINE_BYTES`]
/// (cut lines end with `…`).
pub fn last_meaningful_lines(log: &str) -> Vec<String> {
    let mut start = ceil_char_boundary(log, log.len().saturating_sub(MAX_SCANNED_BYTES));
    if start > 0 {
        // The first line is seen only in part.
        start = log[start..]
            .find('\n')
            .map_or(log.len(), |nl| start + nl + 1);
    }
    let log = drop_samples(&log[start..]);
    let mut kept: Vec<String> = log
        .split('\n')
        .rev()
        .map(plain_line)
        .filter(|l| is_meaningful(l))
        .take(MAX_LAST_LINES)
        .collect();
    kept.reverse();
    kept.into_iter().map(|l| shown(&l)).collect()
}

fn is_meaningful(line: &str) -> bool {
    !line.trim().is_empty() && !PROGRESS_BAR.is_match(line) && !PROGRESS_RECORD.is_match(line)
}

/// A kept line as shown: padding shortened, secrets masked before it is cut, so that no cut
/// leaves a piece of one.
fn shown(line: &str) -> String {
    let line = PADDING.replace_all(line.trim_end(), "$1  ");
    let masked = mask_secrets(&line);
    bounded(&masked, MAX_LAST_LINE_BYTES)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_bars_blank_lines_and_progress_records_are_skipped() {
        let log = "\
[00:23:50] INFO     epoch=1, step=30, rank=0, avg_loss=4.843, samples_seen=480          main_ds.py:343
Epoch 1:  45%|████▌     | 9/20 [00:01<00:01,  6.28it/s]\r           INFO     Epoch: 1, Step: 31, Rank: 0, loss = 4.843  main_ds.py:298

\x1b[93mModel state saved in: /output/ft/full_state/epoch_1\x1b[0m
{
    \"epoch\": 0,
    \"step\": 3,
}
Traceback (most recent call last):
  File \"/usr/bin/torchrun\", line 8, in <module>
torch.distributed.elastic.multiprocessing.api.SignalException: Process 1 got signal: 15
";
        assert_eq!(
            last_meaningful_lines(log),
            [
                "Model state saved in: /output/ft/full_state/epoch_1",
                "Traceback (most recent call last):",
                "  File \"/usr/bin/torchrun\", line 8, in <module>",
                "torch.distributed.elastic.multiprocessing.api.SignalException: Process 1 got signal: 15",
            ]
        );
    }

    #[test]
    fn lines_are_bounded_padded_less_and_redacted() {
        let log: String = (0..100).map(|i| format!("line {i}\n")).collect();
        let lines = last_meaningful_lines(&log);
        assert_eq!(lines.len(), MAX_LAST_LINES);
        assert_eq!(lines.last().map(String::as_str), Some("line 99"));
        let rich = format!(
            "           INFO     Number of samples per save: 96{}main_ds.py:225",
            " ".repeat(400)
        );
        assert_eq!(
            last_meaningful_lines(&rich),
            ["           INFO  Number of samples per save: 96  main_ds.py:225"]
        );
        let long = format!(
            "ValueError: {} HF_TOKEN=hf_abcdefghijklmnopqrstu",
            "é".repeat(400)
        );
        let [line] = last_meaningful_lines(&long).try_into().unwrap();
        assert!(
            line.len() <= MAX_LAST_LINE_BYTES && line.ends_with('…'),
            "{line}"
        );
        let secret = last_meaningful_lines("export HF_TOKEN=hf_abcdefghijklmnopqrstu\n");
        assert_eq!(secret, ["export HF_TOKEN=[REDACTED]"]);
        let samples = "\x1b[33mInstruction ex sample 1: <|user|>my private question\x1b[0m\nValueError: bad\n";
        assert_eq!(
            last_meaningful_lines(samples),
            ["[1 line of training samples omitted]", "ValueError: bad"]
        );
    }

    #[test]
    fn only_the_end_of_a_huge_log_is_read() {
        let log = format!("{}\nthe end\n", "x".repeat(3 * MAX_SCANNED_BYTES));
        assert_eq!(last_meaningful_lines(&log), ["the end"]);
    }
}
