//! The cursor against answers as the kubelet gives them, and a simulated kubelet driven by
//! property tests.

use super::*;
use proptest::prelude::*;

const A: &str = "2026-01-15T10:00:00.100000000Z";
const B: &str = "2026-01-15T10:00:00.200000000Z";
const C: &str = "2026-01-15T10:00:01Z";

fn log(lines: &[(&str, &str)]) -> String {
    lines.iter().map(|(t, l)| format!("{t} {l}\n")).collect()
}

fn cursor(time: &str, lines: i64) -> LogCursor {
    LogCursor {
        pod_uid: "uid".into(),
        time: time.into(),
        lines,
    }
}

#[test]
fn first_read_takes_every_line() {
    let text = log(&[(A, "one"), (B, "two"), (B, "three")]);
    let read = after_cursor(&text, "uid", None, false);
    assert_eq!(read.lines, ["one", "two", "three"]);
    assert_eq!(read.cursor, Some(cursor(B, 2)));
}

#[test]
fn a_second_read_skips_what_was_read_even_within_one_timestamp() {
    // The read starts at the cursor's second, so it repeats A and B.
    let text = log(&[
        (A, "one"),
        (B, "two"),
        (B, "three"),
        (B, "four"),
        (C, "five"),
    ]);
    let read = after_cursor(&text, "uid", Some(&cursor(B, 2)), false);
    assert_eq!(read.lines, ["four", "five"]);
    assert_eq!(read.cursor, Some(cursor(C, 1)));
}

#[test]
fn nothing_new_keeps_the_cursor() {
    let text = log(&[(A, "one"), (B, "two")]);
    let read = after_cursor(&text, "uid", Some(&cursor(B, 1)), false);
    assert!(read.lines.is_empty());
    assert_eq!(read.cursor, Some(cursor(B, 1)));
    let read = after_cursor("", "uid", Some(&cursor(B, 1)), false);
    assert_eq!(read.cursor, Some(cursor(B, 1)));
}

#[test]
fn a_cut_last_line_waits_for_the_next_read() {
    let text = format!("{}{C} incompl", log(&[(A, "one")]));
    let read = after_cursor(&text, "uid", None, true);
    assert_eq!(read.lines, ["one"]);
    assert_eq!(read.cursor, Some(cursor(A, 1)));
}

#[test]
fn a_single_line_longer_than_the_limit_is_taken_as_it_is() {
    let text = format!("{A} {}", "x".repeat(100));
    let read = after_cursor(&text, "uid", None, true);
    assert_eq!(read.lines.len(), 1);
    assert_eq!(read.cursor, Some(cursor(A, 1)));
}

#[test]
fn a_new_pod_starts_over() {
    let text = log(&[(A, "one")]);
    let read = after_cursor(&text, "new-uid", Some(&cursor(C, 5)), false);
    assert_eq!(read.lines, ["one"]);
    assert_eq!(read.cursor.unwrap().pod_uid, "new-uid");
}

#[test]
fn since_time_is_the_cursors_second() {
    let since = since_time(&cursor(B, 1)).unwrap();
    assert_eq!(since.to_string(), "2026-01-15T10:00:00Z");
}

#[test]
fn a_cut_read_with_nothing_new_moves_to_the_next_second() {
    // Lines of one second, all read (the cut one too), fill the read up to the limit.
    let text = format!("{}{B} thr", log(&[(A, "one"), (B, "two")]));
    let read = after_cursor(&text, "uid", Some(&cursor(B, 2)), true);
    assert!(read.lines.is_empty());
    let next = read.cursor.unwrap();
    assert_eq!(next, cursor("2026-01-15T10:00:01Z", 0));
    assert_eq!(
        since_time(&next).unwrap().to_string(),
        "2026-01-15T10:00:01Z"
    );
    // Every line of that next second, the first one included, is new.
    let text = log(&[(C, "later")]);
    let read = after_cursor(&text, "uid", Some(&next), false);
    assert_eq!(read.lines, ["later"]);
    assert_eq!(read.cursor, Some(cursor(C, 1)));
}

#[test]
fn the_cursor_never_moves_back() {
    // A cut read that ends before the cursor (its second held more than the limit).
    let text = format!("{}{B} cut", log(&[(A, "one")]));
    let read = after_cursor(&text, "uid", Some(&cursor(B, 1)), true);
    assert!(read.lines.is_empty());
    assert_eq!(read.cursor, Some(cursor("2026-01-15T10:00:01Z", 0)));
    let text = log(&[(A, "one")]);
    let read = after_cursor(&text, "uid", Some(&cursor(B, 1)), false);
    assert_eq!(read.cursor, Some(cursor(B, 1)));
}

#[test]
fn stamps_of_partial_entries_are_removed_from_the_line() {
    let text = format!("{A} \r10%|█ \r20%|██{B} \r30%|███ | 3/10\n{C} {A} own text\n");
    let read = after_cursor(&text, "uid", None, false);
    assert_eq!(
        read.lines,
        ["\r10%|█ \r20%|██\r30%|███ | 3/10", &format!("{A} own text")]
    );
    // Other shapes of stamps are text.
    let text = format!("{A} saved at 2026-01-15T10:00:00Z to /out\n");
    let read = after_cursor(&text, "uid", None, false);
    assert_eq!(read.lines, ["saved at 2026-01-15T10:00:00Z to /out"]);
}

// ---- the kubelet, simulated: reads in a loop as the follower does ----

/// One entry of the container's log as the runtime wrote it.
struct Entry {
    nanos: i64,
    text: Vec<u8>,
    /// A partial entry (a piece of a line longer than 16 KiB) ends without a newline.
    partial: bool,
}

fn entry(nanos: i64, text: impl Into<Vec<u8>>) -> Entry {
    Entry {
        nanos,
        text: text.into(),
        partial: false,
    }
}

const SECOND: i64 = 1_000_000_000;
const T0: i64 = 1_768_471_200 * SECOND;

fn stamp(nanos: i64) -> String {
    let t = Timestamp::from_nanosecond(i128::from(nanos)).unwrap();
    // The kubelet's format: nine digits of fraction.
    format!(
        "{}.{:09}Z",
        t.strftime("%Y-%m-%dT%H:%M:%S"),
        nanos.rem_euclid(SECOND)
    )
}

/// What `GET pods/log?timestamps=true&sinceTime=…&limitBytes=…` answers: the entries at or
/// after `since`, each after its timestamp, cut at `limit` bytes, even inside a character.
fn kubelet(log: &[Entry], since: Option<Timestamp>, limit: usize) -> Vec<u8> {
    let since = since.map_or(i64::MIN, |s| s.as_second() * SECOND);
    let mut out = Vec::new();
    for e in log.iter().filter(|e| e.nanos >= since) {
        out.extend_from_slice(stamp(e.nanos).as_bytes());
        out.push(b' ');
        out.extend_from_slice(&e.text);
        if !e.partial {
            out.push(b'\n');
        }
    }
    out.truncate(limit);
    out
}

/// Follows `log` read by read as the controller does; returns the lines and the reads made.
fn follow(log: &[Entry], limit: usize) -> (Vec<String>, usize) {
    follow_at_most(log, limit, 100)
}

/// [`follow`], failing after `max_reads`.
fn follow_at_most(log: &[Entry], limit: usize, max_reads: usize) -> (Vec<String>, usize) {
    let mut cursor: Option<LogCursor> = None;
    let mut lines = Vec::new();
    for reads in 1..=max_reads {
        let bytes = kubelet(log, cursor.as_ref().and_then(since_time), limit);
        let cut = bytes.len() >= limit;
        let text = String::from_utf8_lossy(&bytes);
        let new = after_cursor(&text, "uid", cursor.as_ref(), cut);
        let caught_up = !cut && new.lines.is_empty();
        lines.extend(new.lines.into_iter().map(String::from));
        cursor = new.cursor;
        if caught_up {
            return (lines, reads);
        }
    }
    panic!("the follower never caught up: {lines:?}");
}

#[test]
fn a_second_holding_more_than_the_limit_is_passed() {
    let mut log: Vec<Entry> = (0..100)
        .map(|i| entry(T0 + i * 1000, format!("line {i:03} {}", "x".repeat(90))))
        .collect();
    log.push(entry(T0 + SECOND + 5, "epoch=0, step=1, later"));
    log.push(entry(T0 + 2 * SECOND, "epoch=0, step=2, last"));
    let (lines, reads) = follow(&log, 2048);
    assert!(lines.contains(&format!("line 000 {}", "x".repeat(90))));
    assert_eq!(
        lines[lines.len() - 2..],
        ["epoch=0, step=1, later", "epoch=0, step=2, last"]
    );
    assert!(reads <= 5, "{reads} reads");
    // Nothing is read twice.
    let mut unique = lines.clone();
    unique.dedup();
    assert_eq!(unique, lines);
}

#[test]
fn a_single_line_longer_than_the_limit_is_passed() {
    for first in [true, false] {
        let mut log = Vec::new();
        if !first {
            log.push(entry(T0, "before"));
        }
        log.push(entry(T0 + 10, "y".repeat(10_000)));
        log.push(entry(T0 + 20, "same second, after"));
        log.push(entry(T0 + SECOND, "next second"));
        let (lines, reads) = follow(&log, 2048);
        assert!(lines.iter().any(|l| l.starts_with("yyyy")), "{lines:?}");
        assert_eq!(lines.last().unwrap(), "next second", "first: {first}");
        assert!(reads <= 5, "{reads} reads");
    }
}

#[test]
fn a_line_of_partial_entries_reads_as_one_and_what_follows_is_read() {
    // A tqdm bar of 40 KiB over three seconds, written as 16 KiB partial entries, with a
    // stdout line of another stream glued after one of them.
    let bar: Vec<u8> = "\r 50%|█████     | 5/10".repeat(1200).into_bytes();
    let mut log = vec![entry(T0, "start")];
    for (i, piece) in bar.chunks(16 * 1024).enumerate() {
        let mut e = entry(T0 + (i as i64 + 1) * SECOND, piece.to_vec());
        e.partial = i < 2;
        log.push(e);
    }
    log.insert(2, entry(T0 + SECOND + 1, "glued"));
    log.push(entry(T0 + 4 * SECOND, "epoch=0, step=5, after the bar"));

    let (lines, _) = follow(&log, 256 * 1024);
    let whole = String::from_utf8_lossy(&bar).into_owned();
    let (head, tail) = whole.split_at(16 * 1024);
    assert_eq!(
        lines,
        [
            "start",
            &format!("{head}glued"),
            tail,
            "epoch=0, step=5, after the bar"
        ]
    );

    // With a limit below the bar, the reader still gets past it.
    let (lines, reads) = follow(&log, 8 * 1024);
    assert_eq!(lines.last().unwrap(), "epoch=0, step=5, after the bar");
    assert!(reads <= 12, "{reads} reads");
}

#[test]
fn invalid_bytes_and_characters_cut_by_the_limit_are_read_lossily() {
    let log = vec![
        entry(T0, b"ok \xff\xfe\xc3 bytes".to_vec()),
        entry(T0 + 1, "█".repeat(1000)),
        entry(T0 + SECOND, "é after"),
    ];
    let (lines, _) = follow(&log, 256 * 1024);
    assert_eq!(
        lines,
        [
            "ok \u{fffd}\u{fffd}\u{fffd} bytes",
            &"█".repeat(1000),
            "é after"
        ]
    );
    // 1000 bytes cut inside a `█`: the cut line is taken as it is, then the rest is read.
    let (lines, _) = follow(&log, 1000);
    assert!(
        lines[1].starts_with("███") && lines[1].ends_with('\u{fffd}'),
        "{lines:?}"
    );
    assert_eq!(lines.last().unwrap(), "é after");
}

// Moved beside the simulated kubelet it drives: arbitrary logs, any read limit.
proptest! {
#[test]
fn following_a_log_never_freezes(
    entries in prop::collection::vec(
        (0i64..3, 0usize..3, prop_oneof!["[ -~é█\\r]{0,50}", any::<String>()], any::<bool>()),
        1..40,
    ),
    limit in 64usize..4096,
) {
    // Entries a few per second; some long (up to 3 limits), some partial pieces of a line.
    let mut log = Vec::new();
    let mut nanos = T0;
    for (gap, repeat, text, partial) in entries {
        nanos += gap * SECOND / 2 + 1;
        let text = text.replace('\n', " ");
        let text = text.repeat(1 + repeat * limit / text.len().max(1));
        let text = crate::logs::text::prefix_within(&text, repeat * limit + 50);
        log.push(Entry { nanos, text: text.as_bytes().to_vec(), partial });
    }
    // The last line ends, so that what follows starts a line.
    if let Some(last) = log.last_mut() {
        last.partial = false;
    }
    let end = nanos / SECOND * SECOND + 2 * SECOND;
    log.push(Entry { nanos: end, text: b"END".to_vec(), partial: false });
    let seconds = usize::try_from((end - T0) / SECOND).unwrap_or(0);
    let (lines, reads) = follow_at_most(&log, limit, 4 * (log.len() + seconds) + 4);
    prop_assert_eq!(lines.last().map(String::as_str), Some("END"), "{} reads", reads);
}
}

#[test]
fn a_line_cut_behind_lines_read_before_is_read_whole_from_its_own_second() {
    // The read ends inside the next second's line, just after its timestamp: that line is not
    // taken cut (it would be, empty, and the whole one skipped as read); the next read, from
    // the next second, has it whole.
    let log = vec![entry(T0 + 1, "𝕒𐬹𞅀𐠷® "), entry(T0 + 2 * SECOND, "END")];
    let (lines, reads) = follow(&log, 82);
    assert_eq!(lines, ["𝕒𐬹𞅀𐠷® ", "END"]);
    assert!(reads <= 4, "{reads} reads");
}
