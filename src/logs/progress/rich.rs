//! v0.11+ messages, rendered by Rich's `RichHandler` as a table row:
//!
//! ```text
//! [09:12:12] INFO     epoch=0, step=1, rank=0,                      main_ds.py:496
//!                     overall_throughput=43.505, lr=8.00e-07,
//!            INFO     Saving current state to                        accelerator.py:3030
//! ```
//!
//! The time column is blank when the second repeats; the level column is 8 wide; the message
//! column takes the rest of the console width (padded with spaces) but for the `file.py:line`
//! column on the right. A message wider than its column continues on lines indented to the
//! column, broken at spaces, or inside a word longer than the column ("fold"). With
//! `COLUMNS=512` (the operator's pods) lines are 512 bytes and metrics lines never wrap;
//! without it Rich uses 80 columns.

use super::scan::{leading_spaces, trim, trim_end};

/// Longest message kept; the rest of a longer one is dropped.
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024;

const LEVELS: [&[u8]; 5] = [b"DEBUG", b"INFO", b"WARNING", b"ERROR", b"CRITICAL"];
const LEVEL_WIDTH: usize = 8;
/// How far into a line a header glued behind other output is looked for.
const GLUED_HEADER_SEARCH: usize = 512;

/// Where a Rich record starts in a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Header {
    /// Offset of the record in the line: 0, unless the record follows a tqdm bar on the same
    /// line. tqdm ends its redraws with `\r`, not a newline, so the next line written to the
    /// log, a Rich record on stdout, is glued behind the bar's last redraw (or behind a 16 KiB
    /// piece of it, where the container runtime cut the unterminated stderr line).
    pub start: usize,
    /// Width of the time column, `[09:12:12]` in the C locale.
    pub time_width: usize,
}

/// Finds a record header in an ANSI-free line. `time_width` is the last header's, for headers
/// whose time is blank.
pub(super) fn find_header(text: &[u8], time_width: usize) -> Option<Header> {
    match text.first()? {
        b'[' => bracketed_time(text, 0),
        b' ' => (leading_spaces(text) == time_width + 1 && level_at(text, time_width + 1))
            .then_some(Header {
                start: 0,
                time_width,
            }),
        _ => {
            let head = &text[..text.len().min(GLUED_HEADER_SEARCH)];
            head.iter()
                .enumerate()
                .filter(|&(_, &b)| b == b'[')
                .find_map(|(at, _)| bracketed_time(text, at))
                .or_else(|| blank_time_after_bar(head, time_width))
        }
    }
}

/// A header whose time is blank right after a tqdm bar, which ends with its rate in brackets:
/// `… 2/20 [00:10<01:20,  4.48s/it]           INFO     Epoch: 0, Step: 3, …`.
fn blank_time_after_bar(head: &[u8], time_width: usize) -> Option<Header> {
    head.iter()
        .enumerate()
        .filter(|&(_, &b)| b == b']')
        .map(|(at, _)| at + 1)
        .find(|&start| {
            let rest = &head[start..];
            leading_spaces(rest) == time_width + 1 && level_at(rest, time_width + 1)
        })
        .map(|start| Header { start, time_width })
}

/// `[time] LEVEL ` at `at`, the time made of digits and separators.
fn bracketed_time(text: &[u8], at: usize) -> Option<Header> {
    let inside = text.get(at + 1..(at + 24).min(text.len()))?;
    let close = inside.iter().position(|&b| b == b']')?;
    let time_chars = |b: &u8| b.is_ascii_digit() || b" :/.,-APM".contains(b);
    if close == 0 || !inside[..close].iter().all(time_chars) {
        return None;
    }
    let time_width = close + 2;
    let after = at + time_width;
    (text.get(after) == Some(&b' ') && level_at(text, after + 1)).then_some(Header {
        start: at,
        time_width,
    })
}

fn level_at(text: &[u8], at: usize) -> bool {
    let rest = text.get(at..).unwrap_or_default();
    LEVELS
        .iter()
        .any(|level| rest.starts_with(level) && matches!(rest.get(level.len()), None | Some(b' ')))
}

/// A Rich message being reassembled from its lines.
#[derive(Debug)]
pub(super) struct RichMessage {
    text: Vec<u8>,
    /// Column where the message starts on every line of the record.
    column: usize,
    /// Width of the message column, known when the header line shows the path column.
    width: Option<usize>,
    last_part_len: usize,
}

impl RichMessage {
    /// Starts a message from its header line (`line` begins at the header).
    pub(super) fn start(line: &[u8], time_width: usize) -> Self {
        let column = time_width + 1 + LEVEL_WIDTH + 1;
        let part = trim_end(line.get(column..).unwrap_or_default());
        let (part, width) = match path_column(part) {
            Some(at) => (trim_end(&part[..at]), Some(at - 1)),
            None => (part, None),
        };
        let mut message = RichMessage {
            text: Vec::new(),
            column,
            width,
            last_part_len: part.len(),
        };
        message.append(part);
        message
    }

    /// Whether `line` continues this message: indented to the message column, not blank.
    pub(super) fn continued_by(&self, line: &[u8]) -> bool {
        leading_spaces(line) >= self.column && trim_end(line).len() > self.column
    }

    /// Adds a continuation line.
    pub(super) fn push(&mut self, line: &[u8]) {
        let part = trim(line.get(self.column..).unwrap_or_default());
        // Rich breaks at a space (which it drops) unless one word fills the whole column.
        let folded =
            self.width.is_some_and(|w| self.last_part_len >= w) && !self.text.ends_with(b",");
        if !folded && !self.text.is_empty() {
            self.append(b" ");
        }
        self.append(part);
        self.last_part_len = part.len();
    }

    pub(super) fn text(&self) -> &[u8] {
        &self.text
    }

    /// A `key=value, …` list that does not end with a comma is complete: Rich breaks such a
    /// list only after a comma. Reading it at once keeps progress current without waiting for
    /// the next line.
    pub(super) fn is_complete_list(&self) -> bool {
        let key = self
            .text
            .iter()
            .take_while(|&&b| b.is_ascii_alphanumeric() || b == b'_')
            .count();
        key > 0 && self.text.get(key) == Some(&b'=') && !self.text.ends_with(b",")
    }

    pub(super) fn retained_bytes(&self) -> usize {
        self.text.capacity()
    }

    fn append(&mut self, bytes: &[u8]) {
        let room = MAX_MESSAGE_BYTES.saturating_sub(self.text.len());
        self.text.extend_from_slice(&bytes[..bytes.len().min(room)]);
    }
}

/// Offset of the `file.py:123` path column at the end of a header's message part.
fn path_column(part: &[u8]) -> Option<usize> {
    let space = part.iter().rposition(|&b| b == b' ')?;
    let token = &part[space + 1..];
    let colon = token.iter().rposition(|&b| b == b':')?;
    let (name, line) = (&token[..colon], &token[colon + 1..]);
    let is_path = name.contains(&b'.') && !line.is_empty() && line.iter().all(u8::is_ascii_digit);
    is_path.then_some(space + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(lines: &[&str]) -> Option<String> {
        let first = lines[0].as_bytes();
        let header = find_header(first, 10)?;
        let mut message = RichMessage::start(&first[header.start..], header.time_width);
        for line in &lines[1..] {
            assert!(message.continued_by(line.as_bytes()), "{line:?}");
            message.push(line.as_bytes());
        }
        Some(String::from_utf8(message.text().to_vec()).unwrap())
    }

    #[test]
    fn wrapped_list_rejoins() {
        let text = read(&[
            "[06:46:42] INFO     epoch=0, step=1, rank=0,                       richtest.py:6",
            "                    overall_throughput=45.368, lr=8.00e-07,                     ",
            "                    num_epoch_steps=158                                         ",
        ]);
        assert_eq!(
            text.as_deref(),
            Some(
                "epoch=0, step=1, rank=0, overall_throughput=45.368, lr=8.00e-07, num_epoch_steps=158"
            )
        );
    }

    #[test]
    fn folded_word_rejoins_without_space() {
        let text = read(&[
            "           INFO     Saving current state to                        richtest.py:8",
            "                    /root/.local/share/instructlab/phased/phase1/c              ",
            "                    heckpoints/full_state/epoch_0                               ",
        ]);
        assert_eq!(
            text.as_deref(),
            Some(
                "Saving current state to /root/.local/share/instructlab/phased/phase1/checkpoints/full_state/epoch_0"
            )
        );
    }

    #[test]
    fn headers() {
        assert_eq!(
            find_header(b"[09:12:10] INFO     x", 10),
            Some(Header {
                start: 0,
                time_width: 10
            })
        );
        assert_eq!(
            find_header(b"           WARNING  x", 10),
            Some(Header {
                start: 0,
                time_width: 10
            })
        );
        assert_eq!(
            find_header(b"[01:02:03 PM] ERROR    x", 10).map(|h| h.time_width),
            Some(13)
        );
        let glued = b"Map:  77%|\xe2\x96\x8b [09:12:10] INFO     num_gpus=2";
        assert_eq!(find_header(glued, 10).map(|h| h.start), Some(14));
        // Genuine (0.12.1): the time repeats, so it is blank.
        let blank = "Epoch 0:  10%|\u{2588}         | 2/20 [00:10<01:20,  4.48s/it]           INFO     Epoch: 0, Step: 3, Rank: 0, loss = 6.876012";
        assert_eq!(
            find_header(blank.as_bytes(), 10),
            Some(Header {
                start: blank.find("]    ").unwrap() + 1,
                time_width: 10
            })
        );
        for noise in [
            &b"[2025-03-25 07:58:32,399] [INFO] [real_accelerator.py:219:get_accelerator] x"[..],
            b"[rank0]: Traceback (most recent call last):",
            b"                    continuation",
            b"[]",
            b"[09:12:10] INFOS",
            b"x]          INFO     ten spaces, not eleven",
            b"x]            INFO     twelve",
            b"x]           INFORMATION",
        ] {
            assert_eq!(
                find_header(noise, 10),
                None,
                "{:?}",
                String::from_utf8_lossy(noise)
            );
        }
    }

    #[test]
    fn complete_lists_and_caps() {
        let list = RichMessage::start(b"[09:12:10] INFO     a=1, b=2      main_ds.py:1", 10);
        assert!(list.is_complete_list());
        assert_eq!(list.text(), b"a=1, b=2");
        let open = RichMessage::start(b"[09:12:10] INFO     a=1,          main_ds.py:1", 10);
        assert!(!open.is_complete_list());
        let mut long = RichMessage::start(b"[09:12:10] INFO     x", 10);
        let line = [vec![b' '; 20], vec![b'y'; 4000]].concat();
        for _ in 0..10 {
            long.push(&line);
        }
        assert_eq!(long.text().len(), MAX_MESSAGE_BYTES);
    }
}
