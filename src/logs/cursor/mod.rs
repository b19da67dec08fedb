//! Reading a container log incrementally with a cursor the status can hold.
//!
//! The operator asks for the log with `timestamps=true`, `sinceTime` (whole seconds: the
//! kubelet compares at the second the API carries) and `limitBytes`. The answer repeats the
//! lines of the cursor's second and may end inside a line, even inside a character. The caller
//! decodes it lossily (a log is bytes, not always UTF-8). [`after_cursor`] keeps the lines not
//! read before, drops a cut last line (it comes again whole next time) and says where the next
//! read starts. Lines sharing one timestamp are told apart by counting them.
//!
//! Since `sinceTime` has whole seconds, a read that the lines of one second fill up to the
//! limit would come back the same every time. Such a read moves the cursor to the next second:
//! the rest of that second is lost to progress (never to the log itself), and the reader never
//! freezes.

use std::borrow::Cow;

use jiff::Timestamp;

use crate::api::LogCursor;

/// The lines of one read that come after the cursor.
#[derive(Debug, PartialEq)]
pub struct NewLines<'a> {
    /// Line texts, timestamp removed, in log order.
    pub lines: Vec<Cow<'a, str>>,
    /// Where the next read starts; None when nothing was ever read.
    pub cursor: Option<LogCursor>,
}

/// `sinceTime` for the read after `cursor`: its second (the API's precision).
pub fn since_time(cursor: &LogCursor) -> Option<Timestamp> {
    let t: Timestamp = cursor.time.parse().ok()?;
    Timestamp::from_second(t.as_second()).ok()
}

/// Splits a read of `pod_uid`'s log (`timestamps=true`) into the lines after `cursor`.
///
/// `cut` says the read stopped at `limitBytes`: its last line is then incomplete and is left
/// for the next read. When a cut read holds no whole new line, its cut line is taken as it is
/// if it is new and would come cut again (a line longer than the limit, or one of the cursor's
/// second behind lines of that second already read); otherwise the cursor moves to the next
/// second, from which a cut line of a later second comes whole.
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
    let is_new = |time: Timestamp, count: i64| match start {
        Some((t, n)) => time > t || (time == t && count > n),
        None => true,
    };

    // After the last newline comes "" or a line still incomplete, read again whole next time.
    let mut pieces: Vec<&str> = text.split('\n').collect();
    let unfinished = pieces.pop().filter(|p| !p.is_empty());

    let mut lines = Vec::new();
    let mut position: Option<Position> = None;
    for piece in pieces {
        let Some(line) = Stamped::parse(piece) else {
            continue;
        };
        let count = line.count_after(position.as_ref());
        if is_new(line.time, count) {
            lines.push(line.text());
        }
        position = Some(Position::of(&line, count));
    }
    // A cut line of a later second than the cursor's, behind lines read before, comes whole
    // once the read starts at a later second (below): taking it now would keep a cut text and
    // skip the whole one.
    let comes_whole_later = |line: &Stamped| {
        position.is_some() && start.is_some_and(|(t, _)| line.time.as_second() > t.as_second())
    };
    if cut
        && lines.is_empty()
        && let Some(line) = unfinished.and_then(Stamped::parse)
        && !comes_whole_later(&line)
    {
        let count = line.count_after(position.as_ref());
        if is_new(line.time, count) {
            lines.push(line.text());
        }
        position = Some(Position::of(&line, count));
    }

    // The cursor only moves forward: to the last line read when it is new.
    let moved = position.as_ref().filter(|p| is_new(p.time, p.count));
    let mut next = match moved {
        Some(p) => Some(LogCursor {
            pod_uid: pod_uid.to_string(),
            time: p.stamp.clone(),
            lines: p.count,
        }),
        None => cursor.cloned(),
    };
    if cut && lines.is_empty() {
        // Nothing new up to the limit: the same read would come back. Go on at the next second.
        let base = start.map(|(t, _)| t).or(position.as_ref().map(|p| p.time));
        if let Some(second) = base.and_then(next_second) {
            next = Some(LogCursor {
                pod_uid: pod_uid.to_string(),
                time: second.to_string(),
                lines: 0,
            });
        }
    }
    NewLines {
        lines,
        cursor: next,
    }
}

/// The start of the second after `t`'s.
fn next_second(t: Timestamp) -> Option<Timestamp> {
    Timestamp::from_second(t.as_second().checked_add(1)?).ok()
}

/// A line of the answer: the kubelet's timestamp, a space, the text.
struct Stamped<'a> {
    stamp: &'a str,
    time: Timestamp,
    rest: &'a str,
}

impl<'a> Stamped<'a> {
    fn parse(piece: &'a str) -> Option<Self> {
        let (stamp, rest) = piece.split_once(' ')?;
        let time = stamp.parse().ok()?;
        Some(Stamped { stamp, time, rest })
    }

    /// Its number among the lines of its timestamp, in this read.
    fn count_after(&self, previous: Option<&Position>) -> i64 {
        match previous {
            Some(p) if p.time == self.time => p.count.saturating_add(1),
            _ => 1,
        }
    }

    fn text(&self) -> Cow<'a, str> {
        without_partial_stamps(self.rest, self.stamp)
    }
}

/// The last line read: its timestamp and number among the lines of that timestamp.
struct Position {
    stamp: String,
    time: Timestamp,
    count: i64,
}

impl Position {
    fn of(line: &Stamped<'_>, count: i64) -> Self {
        Position {
            stamp: line.stamp.to_string(),
            time: line.time,
            count,
        }
    }
}

/// `text` without the timestamps the kubelet put inside it. The runtime writes a line longer
/// than 16 KiB (a tqdm bar redrawn with `\r` for a whole epoch) as partial entries, and the
/// kubelet prefixes each entry with its timestamp but ends only the last with a newline; a line
/// of another stream may follow a partial entry the same way. Without those stamps the text is
/// what the process wrote, as a pipe shows it. Only stamps shaped like the line's own (`like`)
/// count, and one at the very start is the process's own text.
fn without_partial_stamps<'a>(text: &'a str, like: &str) -> Cow<'a, str> {
    let bytes = text.as_bytes();
    let mut out = String::new();
    let mut copied = 0;
    let mut i = 1;
    while i < bytes.len() {
        let end = i + like.len();
        let is_stamp = bytes.get(end) == Some(&b' ')
            && bytes
                .get(i..end)
                .is_some_and(|c| same_shape(c, like.as_bytes()))
            && text
                .get(i..end)
                .is_some_and(|s| s.parse::<Timestamp>().is_ok());
        if is_stamp {
            out.push_str(text.get(copied..i).unwrap_or_default());
            i = end + 1;
            copied = i;
        } else {
            i += 1;
        }
    }
    if copied == 0 {
        return Cow::Borrowed(text);
    }
    out.push_str(text.get(copied..).unwrap_or_default());
    Cow::Owned(out)
}

/// Whether `a` has the shape of the timestamp `like`: digits where it has digits, its other
/// bytes elsewhere.
fn same_shape(a: &[u8], like: &[u8]) -> bool {
    a.len() == like.len()
        && a.iter().zip(like).all(|(x, y)| match y.is_ascii_digit() {
            true => x.is_ascii_digit(),
            false => x == y,
        })
}

#[cfg(test)]
mod tests;
