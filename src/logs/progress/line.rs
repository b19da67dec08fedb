//! The line-level reader: decides what each line of the log is, keeping what spans lines (an
//! open JSON block, a Rich message that may continue, a checkpoint save under way).

use super::clean::strip_ansi;
use super::fields::key_values;
use super::json_block::{BlockLine, JsonBlock};
use super::markers::{Markers, rank_losses};
use super::record::{MetricsFormat, Record};
use super::rich::{RichMessage, find_header};
use super::scan::trim;

/// Rich's time column in the C locale, `[09:12:12]`.
const DEFAULT_TIME_WIDTH: usize = 10;

/// Reads lines (no `\n` or `\r` inside, at most the parser's line cap) into records.
#[derive(Debug)]
pub(super) struct LineReader {
    /// Scratch buffers for a line without its ANSI escapes, and where the escapes were.
    clean: Vec<u8>,
    cuts: Vec<usize>,
    block: Option<JsonBlock>,
    rich: Option<RichMessage>,
    time_width: usize,
    markers: Markers,
}

impl Default for LineReader {
    fn default() -> Self {
        LineReader {
            clean: Vec::new(),
            cuts: Vec::new(),
            block: None,
            rich: None,
            time_width: DEFAULT_TIME_WIDTH,
            markers: Markers::default(),
        }
    }
}

impl LineReader {
    pub(super) fn line(&mut self, raw: &[u8], out: &mut Vec<Record>) {
        // Blank lines carry nothing, and "\r\n" makes one after every line.
        if raw.is_empty() {
            return;
        }
        let mut clean = std::mem::take(&mut self.clean);
        let mut cuts = std::mem::take(&mut self.cuts);
        let text = if raw.contains(&0x1b) {
            strip_ansi(raw, &mut clean, &mut cuts);
            clean.as_slice()
        } else {
            cuts.clear();
            raw
        };
        self.text_line(text, &cuts, out);
        self.clean = clean;
        self.cuts = cuts;
    }

    /// Ends the log: a Rich message still open is complete; an open JSON block never will be.
    pub(super) fn finish(&mut self, out: &mut Vec<Record>) {
        self.end_rich(out);
        self.block = None;
    }

    pub(super) fn retained_bytes(&self) -> usize {
        self.clean.capacity()
            + self.cuts.capacity() * std::mem::size_of::<usize>()
            + self.rich.as_ref().map_or(0, RichMessage::retained_bytes)
            + self.markers.retained_bytes()
    }

    fn text_line(&mut self, text: &[u8], cuts: &[usize], out: &mut Vec<Record>) {
        if let Some(message) = &mut self.rich {
            if message.continued_by(text) {
                message.push(text);
                if message.is_complete_list() {
                    self.end_rich(out);
                }
                return;
            }
            self.end_rich(out);
        }
        if let Some(block) = &mut self.block {
            match block.line(text) {
                BlockLine::Content => return,
                BlockLine::Closed(record) => {
                    self.block = None;
                    out.extend(record);
                    // Another process's print may follow the brace on the same line.
                    self.plain(text, cuts, 1, out);
                    return;
                }
                BlockLine::Abandoned => self.block = None,
                BlockLine::Other => {}
            }
        }
        if let Some(header) = find_header(text, self.time_width) {
            self.time_width = header.time_width;
            let message = RichMessage::start(&text[header.start..], header.time_width);
            if message.is_complete_list() {
                self.rich_message(message.text(), out);
            } else {
                self.rich = Some(message);
            }
            return;
        }
        self.plain(text, cuts, 0, out);
    }

    /// A line that is not Rich output, from `from`. Colour codes split it into segments: each
    /// print of InstructLab is coloured, and other output glued to it is not.
    fn plain(&mut self, text: &[u8], cuts: &[usize], from: usize, out: &mut Vec<Record>) {
        let mut start = from;
        for end in cuts
            .iter()
            .copied()
            .filter(|&c| c > from && c < text.len())
            .chain([text.len()])
        {
            let segment = trim(&text[start.min(end)..end]);
            start = end;
            if segment == b"{" {
                // v0.5–v0.10 metrics: the block opens in green, at the end of its line.
                self.block = Some(JsonBlock::default());
            } else if !segment.is_empty() {
                self.message(segment, out);
            }
        }
    }

    /// One print or one Rich message.
    fn message(&mut self, text: &[u8], out: &mut Vec<Record>) {
        if !self.markers.read(text, out) {
            rank_losses(text, out);
        }
    }

    /// A Rich message: a print, or a `key=value` dict. Dicts come only through Rich, and the
    /// continuation lines of one, read without their header (a parser started mid-log), would
    /// otherwise look like dicts themselves.
    fn rich_message(&mut self, text: &[u8], out: &mut Vec<Record>) {
        match key_values(text) {
            Some(fields) => out.extend(fields.into_record(MetricsFormat::KeyValue)),
            None => self.message(text, out),
        }
    }

    fn end_rich(&mut self, out: &mut Vec<Record>) {
        if let Some(message) = self.rich.take() {
            self.rich_message(message.text(), out);
        }
    }
}
