//! Reading a container log incrementally with a cursor the status can hold.
//!
//! The operator asks for the log with `timestamps=true`, `sinceTime` (whole seconds: the
//! kubelet compares at the second the API carries) and `limitBytes`. The answer repeats the
//! lines of the cursor's second and may end inside a line. [`after_cursor`] keeps the lines not
//! read before, drops a cut last line (it comes again whole next time) and says where the next
//! read starts. Lines sharing one timestamp are told apart by counting them.

use jiff::Timestamp;

use crate::api::LogCursor;

/// The lines of one read that come after the cursor.
#[derive(Debug, PartialEq)]
pub struct NewLines<'a> {
    /// Line texts, timestamp removed, in log order.
    pub lines: Vec<&'a str>,
    /// Where the next read starts; None when nothing was ever read.
    pub cursor: Option<LogCursor>,
}

/// `sinceTime` for the read after `cursor`: its second (the API's precision).
pub fn since_time(cursor: &LogCursor) -> Option<Timestamp> {
    let t: Timestamp = cursor.time.parse().ok()?;
    Timestamp::from_second(t.as_second()).ok()
}

/// Splits a read of `pod_uid`'s log (`timestamps=true`) into the lines after `cursor`.
/// `cut` says the read stopped at `limitBytes`: its last line is then incomplete and is left
/// for the next read, unless it is the only one (a single line longer than the limit), which
/// is taken as it is so the reader never gets stuck.
pub fn after_cursor<'a>(
    text: &'a str,
    pod_uid: &str,
    cursor: Option<&LogCursor>,
    cut: bool,
) -> NewLines<'a> {
    // A recreated pod writes a new log: its cursor starts over.
    let cursor = cursor.filter(|c| c.pod_uid == pod_uid);
    let start: Option<(Timestamp, i64)> =
        cursor.and_then(|c| Some((c.time.parse().ok()?, c.lines)));

    // After the last newline comes "" or a line still incomplete, read again whole next time;
    // unless a cut read holds nothing else (one line longer than the limit).
    let mut pieces: Vec<&str> = text.split('\n').collect();
    let last = pieces.pop().unwrap_or("");
    if !last.is_empty() && cut && pieces.is_empty() {
        pieces.push(last);
    }

    let mut lines = Vec::new();
    let mut position: Option<(Timestamp, &str, i64)> = None;
    for piece in pieces {
        let Some((stamp, line)) = piece.split_once(' ') else {
            continue;
        };
        let Ok(time) = stamp.parse::<Timestamp>() else {
            continue;
        };
        let count = match position {
            Some((t, _, n)) if t == time => n + 1,
            _ => 1,
        };
        position = Some((time, stamp, count));
        let already_read = match start {
            Some((t, n)) => time < t || (time == t && count <= n),
            None => false,
        };
        if !already_read {
            lines.push(line);
        }
    }

    let cursor = match position {
        Some((time, stamp, count)) => {
            // Keep the count of the cursor's own second when nothing newer came.
            let count = match start {
                Some((t, n)) if t == time => count.max(n),
                _ => count,
            };
            Some(LogCursor {
                pod_uid: pod_uid.to_string(),
                time: stamp.to_string(),
                lines: count,
            })
        }
        None => cursor.cloned(),
    };
    NewLines { lines, cursor }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
