//! Fitting a summary and the last log lines into one Event note.
//!
//! The apiserver refuses notes over 1024 bytes. A failure is explained by its last lines, so when
//! something must go, the oldest lines go first; the summary line stays. What the note shows of
//! the log has training samples dropped and secrets masked ([`super::redact`]).

use super::redact::{drop_samples, mask_secrets};
use super::text::{prefix_within, suffix_within};

/// The apiserver's limit on an Event note.
pub const MAX_NOTE_BYTES: usize = 1024;
/// Lines asked of the apiserver for a tail, at first.
pub const TAIL_LINES: i64 = 40;
/// Bytes asked of the apiserver for a tail: a bounded read whatever the lines look like. 40
/// lines of 512 columns (Rich pads to the console width) fit.
pub const TAIL_LIMIT_BYTES: i64 = 64 * 1024;

/// The lines to ask for after an answer of `got` bytes to a request for the last `asked` lines;
/// None when that answer is the tail to keep. The kubelet answers the *first* `limitBytes` of
/// the last `tailLines` lines: an answer that fills the limit lacks the newest lines, which
/// explain a failure, so the tail is asked again with a quarter of the lines (40, 10, 2: three
/// requests at most).
pub fn next_tail_lines(asked: i64, got: usize) -> Option<i64> {
    let full = u64::try_from(got).unwrap_or(u64::MAX) >= TAIL_LIMIT_BYTES.unsigned_abs();
    let fewer = asked / 4;
    (full && fewer >= 1).then_some(fewer)
}

const SEPARATOR: &str = "\n--- last log lines ---\n";
const CUT_MARK: &str = "…\n";

/// Joins `summary` and the end of `log` into a note of at most [`MAX_NOTE_BYTES`] bytes,
/// keeping the most recent lines. ANSI colour codes and carriage-return progress bars are
/// removed so that the bytes carry text.
pub fn compose_note(summary: &str, log: Option<&str>) -> String {
    let summary = mask_secrets(summary);
    let summary = prefix_within(&summary, MAX_NOTE_BYTES);
    // Secrets are masked before anything is cut, so that no cut leaves a piece of one.
    let log = log.map(|l| mask_secrets(&clean(&drop_samples(l))).into_owned());
    let Some(log) = log.filter(|l| !l.trim().is_empty()) else {
        return summary.to_string();
    };
    let budget = MAX_NOTE_BYTES.saturating_sub(summary.len() + SEPARATOR.len());
    if budget <= CUT_MARK.len() {
        return summary.to_string();
    }
    let log = log.trim_end_matches('\n');
    let tail = if log.len() <= budget {
        log.to_string()
    } else {
        // Keep whole lines from the end; if even the last line is too long, keep its end.
        let end = suffix_within(log, budget - CUT_MARK.len());
        let end = match end.find('\n') {
            Some(nl) if nl + 1 < end.len() => end.get(nl + 1..).unwrap_or(end),
            _ => end,
        };
        format!("{CUT_MARK}{end}")
    };
    format!("{summary}{SEPARATOR}{tail}")
}

/// Strips ANSI escape sequences and keeps only the last rewrite of carriage-return lines.
fn clean(log: &str) -> String {
    let mut out = String::with_capacity(log.len());
    for line in log.split('\n') {
        push_plain(line, &mut out);
        out.push('\n');
    }
    out
}

/// One log line (no `\n`) as a terminal shows it: the last drawing of a line redrawn after
/// `\r` (a progress bar), without ANSI escape sequences.
pub fn plain_line(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    push_plain(line, &mut out);
    out
}

fn push_plain(line: &str, out: &mut String) {
    let line = line.rsplit('\r').find(|s| !s.is_empty()).unwrap_or("");
    strip_ansi_into(line, out);
}

fn strip_ansi_into(line: &str, out: &mut String) {
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ params final-byte(0x40..=0x7e); other escapes: ESC + one char.
            if chars.peek() == Some(&'[') {
                chars.next();
                for c in chars.by_ref() {
                    if ('\u{40}'..='\u{7e}').contains(&c) {
                        break;
                    }
                }
            } else {
                chars.next();
            }
        } else {
            out.push(c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_note_is_summary_then_log() {
        let note = compose_note("exited with code 1", Some("line 1\nline 2\n"));
        assert_eq!(
            note,
            "exited with code 1\n--- last log lines ---\nline 1\nline 2"
        );
    }

    #[test]
    fn empty_log_gives_summary_only() {
        assert_eq!(compose_note("s", Some("\n \n")), "s");
        assert_eq!(compose_note("s", None), "s");
    }

    #[test]
    fn long_log_keeps_most_recent_whole_lines() {
        let log: String = (0..500).map(|i| format!("line {i}\n")).collect();
        let note = compose_note("summary", Some(&log));
        assert!(note.len() <= MAX_NOTE_BYTES, "{}", note.len());
        assert!(note.ends_with("line 499"));
        assert!(!note.contains("line 0\n"));
        let after = note.split(SEPARATOR).nth(1).unwrap();
        assert!(after.starts_with(CUT_MARK));
        // Every kept line is whole.
        for line in after.trim_start_matches(CUT_MARK).lines() {
            assert!(line.starts_with("line "), "{line:?}");
        }
    }

    #[test]
    fn one_huge_line_keeps_its_end_on_a_char_boundary() {
        let log = "é".repeat(2000) + "END";
        let note = compose_note("summary", Some(&log));
        assert!(note.len() <= MAX_NOTE_BYTES);
        assert!(note.ends_with("END"));
    }

    #[test]
    fn a_tail_of_tqdm_bars_longer_than_the_budget_is_cut_on_a_char_boundary() {
        // The cut point of this tail falls inside a `█` (3 bytes): slicing there panicked.
        let log = format!("{}\n", "█".repeat(100)).repeat(20);
        let note = compose_note("s", Some(&log));
        assert!(note.len() <= MAX_NOTE_BYTES, "{}", note.len());
        assert!(note.ends_with(&"█".repeat(100)), "{note}");
    }

    #[test]
    fn a_tail_that_fills_the_limit_is_asked_again_with_fewer_lines() {
        let full = TAIL_LIMIT_BYTES as usize;
        assert_eq!(next_tail_lines(TAIL_LINES, 1000), None);
        assert_eq!(next_tail_lines(TAIL_LINES, full - 1), None);
        // Always full: 40, 10, 2 lines, three requests at most.
        let mut asked = vec![TAIL_LINES];
        while let Some(fewer) = next_tail_lines(*asked.last().unwrap(), full) {
            asked.push(fewer);
        }
        assert_eq!(asked, [40, 10, 2]);
        assert_eq!(next_tail_lines(1, full), None);
        assert_eq!(next_tail_lines(0, full), None);
    }

    #[test]
    fn notes_show_no_training_samples_nor_secrets() {
        let log = "Samples Previews...\n\u{1b}[35mOriginal Input: <|user|>my private question\n\u{1b}[0m\n\u{1b}[33mInstruction ex sample 1: <MASK>my private answer\u{1b}[0m\n+ export HF_TOKEN=hf_abcdefghijklmnopqrstuvwx\nValueError: bad\n";
        let note = compose_note("failed; token=abc", Some(log));
        assert_eq!(
            note,
            "failed; token=[REDACTED]\n--- last log lines ---\nSamples Previews...\n[3 lines of training samples omitted]\n+ export HF_TOKEN=[REDACTED]\nValueError: bad"
        );
    }

    #[test]
    fn oversized_summary_is_cut_and_log_dropped() {
        let summary = "x".repeat(3000);
        let note = compose_note(&summary, Some("log"));
        assert_eq!(note.len(), MAX_NOTE_BYTES);
    }

    #[test]
    fn ansi_and_carriage_returns_are_cleaned() {
        let log = "\u{1b}[92mgreen\u{1b}[0m\n10%\r50%\r100%\n";
        let note = compose_note("s", Some(log));
        assert!(note.ends_with("green\n100%"), "{note:?}");
    }
}
