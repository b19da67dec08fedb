//! Properties of every function that cuts or reads log text: no panic on any input (arbitrary
//! Unicode, arbitrary bytes, multi-byte characters at every cut point), bounds kept, and the log
//! cursor always moves on.

use finetune_operator::api::LogCursor;
use finetune_operator::logs::cursor::{after_cursor, since_time};
use finetune_operator::logs::progress::{
    MAX_LINE_BYTES, MAX_MESSAGE_BYTES, ProgressParser, Record,
};
use finetune_operator::logs::redact::{REDACTED, drop_samples, mask_secrets};
use finetune_operator::logs::text::{
    ceil_char_boundary, floor_char_boundary, prefix_within, suffix_within,
};
use finetune_operator::logs::{
    MAX_NOTE_BYTES, TAIL_LIMIT_BYTES, TAIL_LINES, compose_note, next_tail_lines,
};
use finetune_operator::status::diagnose;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;
use proptest::prelude::*;
use proptest::sample::select;
use serde_json::json;

const SEPARATOR: &str = "\n--- last log lines ---\n";
const CUT_MARK: &str = "…\n";

/// Characters of 1 to 4 bytes, and the ones logs are full of.
const CHARS: &[char] = &['a', ' ', 'é', '█', '▌', '中', '😀', '|', '%'];

/// Text of `CHARS` and newlines: nothing that cleaning, redaction or masking would change.
fn plain_text(max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(prop_oneof![9 => select(CHARS), 1 => Just('\n')], 0..max)
        .prop_map(|chars| chars.into_iter().collect())
}

/// Any Unicode, with the characters logs carry weighted up: escapes, carriage returns,
/// newlines, multi-byte characters, sample markers.
fn log_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        4 => any::<String>(),
        2 => plain_text(40),
        1 => Just("\u{1b}[92m".to_string()),
        1 => Just("\u{1b}[0m".to_string()),
        1 => Just("\u{1b}[".to_string()),
        1 => Just("\r".to_string()),
        2 => Just("\n".to_string()),
        1 => Just("Instruction ex sample 1: ".to_string()),
        1 => Just("\u{1b}[35mOriginal Input: <|user|>".to_string()),
        1 => Just("HF_TOKEN=hf_abcdefghijklmnopqrstuvwxyz".to_string()),
        1 => Just("[10:00:00] INFO     ".to_string()),
        1 => Just("█".repeat(400)),
    ];
    prop::collection::vec(piece, 0..60).prop_map(|pieces| pieces.concat())
}

/// A summary of exactly `len` bytes, of `c` padded with ASCII.
fn summary_of(len: usize, c: char) -> String {
    let n = len / c.len_utf8();
    let mut s = c.to_string().repeat(n);
    s.push_str(&"x".repeat(len - s.len()));
    s
}

fn check_note(summary: &str, log: Option<&str>) -> String {
    let note = compose_note(summary, log);
    assert!(note.len() <= MAX_NOTE_BYTES, "{} bytes", note.len());
    note
}

/// For text nothing cleans nor redacts: the note is the summary (cut to fit), then, when there
/// is room, the end of the log, whole lines first.
fn check_plain_note(summary: &str, log: &str) {
    let note = check_note(summary, Some(log));
    let summary = prefix_within(summary, MAX_NOTE_BYTES);
    assert!(note.starts_with(summary));
    let log = log.trim_end_matches('\n');
    let room = MAX_NOTE_BYTES.saturating_sub(summary.len() + SEPARATOR.len());
    if log.trim().is_empty() || room <= CUT_MARK.len() {
        assert_eq!(note, summary);
        return;
    }
    let kept = note
        .strip_prefix(summary)
        .and_then(|n| n.strip_prefix(SEPARATOR))
        .expect("a separator after the summary");
    match kept.strip_prefix(CUT_MARK) {
        Some(end) if log.len() > room => {
            assert!(log.ends_with(end), "{end:?} is not the end of the log");
            // As much as fits, less a partial first line.
            let cut = log.len() - end.len();
            assert!(
                log[..cut].ends_with('\n') || end.len() + 4 > room - CUT_MARK.len(),
                "kept {} of {} bytes",
                end.len(),
                room - CUT_MARK.len()
            );
        }
        _ => assert_eq!(kept, log),
    }
}

#[test]
fn notes_fit_for_every_summary_length_with_multi_byte_characters_at_the_cut() {
    // Lines of 1- to 4-byte characters, shifted by 0 to 3 bytes, so that the cut falls on
    // every byte of a character.
    let mut logs = Vec::new();
    for c in ['█', 'é', '中', '😀'] {
        for shift in 0..c.len_utf8() {
            let line = format!("{}{}\n", "a".repeat(shift), c.to_string().repeat(100));
            logs.push(line.repeat(8));
            logs.push(format!(
                "{}{}",
                "a".repeat(shift),
                c.to_string().repeat(500)
            ));
        }
    }
    // Each log takes runs of 8 consecutive lengths: every alignment of the cut, for each.
    for len in 0..=1100 {
        for c in ['x', '█'] {
            let summary = summary_of(len, c);
            check_plain_note(&summary, &logs[(len / 8) % logs.len()]);
            check_note(&summary, None);
        }
    }
}

proptest! {
    #[test]
    fn notes_fit_whatever_the_summary_and_log(
        len in 0usize..=1100,
        c in select(CHARS),
        log in log_text(),
    ) {
        let summary = summary_of(len, c);
        check_note(&summary, Some(&log));
    }

    #[test]
    fn notes_keep_the_end_of_plain_logs(
        len in 0usize..=1100,
        c in select(CHARS),
        log in plain_text(3000),
    ) {
        check_plain_note(&summary_of(len, c), &log);
    }

    #[test]
    fn notes_of_arbitrary_bytes_fit(
        summary in any::<String>(),
        bytes in prop::collection::vec(any::<u8>(), 0..4000),
    ) {
        check_note(&summary, Some(&String::from_utf8_lossy(&bytes)));
    }

    #[test]
    fn cuts_fall_on_character_boundaries(s in any::<String>(), max in 0usize..200) {
        let floor = floor_char_boundary(&s, max);
        let ceil = ceil_char_boundary(&s, max);
        prop_assert!(s.is_char_boundary(floor) && floor <= max.min(s.len()));
        prop_assert!(s.is_char_boundary(ceil) && (ceil >= max || ceil == s.len()));
        let p = prefix_within(&s, max);
        prop_assert!(p.len() <= max && s.starts_with(p));
        prop_assert!(s[p.len()..].chars().next().is_none_or(|c| p.len() + c.len_utf8() > max));
        let t = suffix_within(&s, max);
        prop_assert!(t.len() <= max && s.ends_with(t));
    }

    #[test]
    fn tails_are_asked_again_at_most_twice(asked in any::<i64>(), got in any::<usize>()) {
        if let Some(fewer) = next_tail_lines(asked, got) {
            prop_assert!(fewer >= 1 && fewer < asked);
            prop_assert!(got as u64 >= TAIL_LIMIT_BYTES as u64);
        }
        let mut requests = 1;
        let mut lines = TAIL_LINES;
        while let Some(fewer) = next_tail_lines(lines, got) {
            lines = fewer;
            requests += 1;
        }
        prop_assert!(requests <= 3);
    }

    #[test]
    fn redaction_takes_any_text(log in log_text()) {
        let dropped = drop_samples(&log);
        prop_assert!(!dropped.contains("ex sample 1: "));
        mask_secrets(&dropped);
    }

    #[test]
    fn secrets_never_survive_their_surroundings(
        before in any::<String>(),
        after in any::<String>(),
        token in "[A-Za-z0-9]{20,40}",
    ) {
        let secret = format!("hf_{token}");
        let text = format!("{before} HF_TOKEN={secret} {after}");
        let masked = mask_secrets(&text);
        prop_assert!(!masked.contains(&secret), "{}", masked);
        prop_assert!(masked.contains(REDACTED));
        let note = compose_note("s", Some(&text));
        prop_assert!(!note.contains(&token[..10]), "{}", note);
    }

    #[test]
    fn diagnoses_take_any_log_and_message(log in log_text(), message in any::<String>()) {
        diagnose::failure(&[], "pytorch", Some(&log));
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p"},
            "status": {"conditions": [{"type": "PodScheduled", "status": "False",
                                       "reason": "Unschedulable", "message": message}]},
        }))
        .unwrap();
        let d = diagnose::failure(&[pod], "pytorch", Some(&log));
        prop_assert!(d.is_some());
    }

    #[test]
    fn the_parser_takes_any_bytes_in_any_chunks(
        bytes in prop::collection::vec(any::<u8>(), 0..20_000),
        chunk in 1usize..5000,
    ) {
        let whole = parse(&[&bytes]);
        let chunks: Vec<&[u8]> = bytes.chunks(chunk).collect();
        prop_assert_eq!(format!("{whole:?}"), format!("{:?}", parse(&chunks)));
        let mut cold = ProgressParser::cold();
        cold.feed(&bytes[bytes.len() / 2..]);
    }

    #[test]
    fn the_parser_takes_any_log_text(log in log_text()) {
        parse(&[log.as_bytes()]);
    }

    #[test]
    fn the_cursor_takes_any_text_and_only_moves_forward(
        bytes in prop::collection::vec(any::<u8>(), 0..3000),
        text in log_text(),
        lines in any::<i64>(),
        second in 0i64..4,
        cut in any::<bool>(),
        garbage_time in any::<bool>(),
    ) {
        let time = match garbage_time {
            true => text.chars().take(30).collect(),
            false => stamp(T0 + second * SECOND),
        };
        let cursor = LogCursor { pod_uid: "uid".into(), time, lines };
        let stamped: String = text
            .split('\n')
            .enumerate()
            .map(|(i, l)| format!("{} {l}\n", stamp(T0 + i as i64 * 300_000_000)))
            .collect();
        let lossy = String::from_utf8_lossy(&bytes);
        for text in [stamped.as_str(), text.as_str(), &lossy] {
            let new = after_cursor(text, "uid", Some(&cursor), cut);
            let next = new.cursor.expect("a cursor stays a cursor");
            let (Ok(from), Ok(to)) = (cursor.time.parse::<Timestamp>(), next.time.parse::<Timestamp>())
            else {
                continue;
            };
            prop_assert!(to > from || (to == from && next.lines >= cursor.lines));
            if cut && new.lines.is_empty() {
                // A cut read with nothing new moves on to a later second.
                prop_assert!(since_time(&next) > since_time(&cursor));
            }
        }
    }
}

fn parse(chunks: &[&[u8]]) -> Vec<Record> {
    let mut parser = ProgressParser::new();
    let mut records = Vec::new();
    for chunk in chunks {
        records.extend(parser.feed(chunk));
        assert!(parser.retained_bytes() <= 2 * (3 * MAX_LINE_BYTES + MAX_MESSAGE_BYTES) + 4096);
    }
    records.extend(parser.finish());
    records
}

const SECOND: i64 = 1_000_000_000;
const T0: i64 = 1_768_471_200 * SECOND;

/// A kubelet timestamp: nine digits of fraction.
fn stamp(nanos: i64) -> String {
    format!(
        "{:.9}",
        Timestamp::from_nanosecond(i128::from(nanos)).expect("a time in range")
    )
}
