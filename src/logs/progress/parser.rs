//! The incremental parser: bytes in, in chunks cut anywhere, records out.

use super::line::LineReader;
use super::record::Record;

/// Longest line kept; the rest of a longer line is dropped. Rich pads its lines to `COLUMNS`,
/// 512 in the operator's pods, so they stay whole. `\r` ends a line too: tqdm redraws its bar
/// after one, and output of other processes may follow the last redraw.
pub const MAX_LINE_BYTES: usize = 16 * 1024;

/// Reads an InstructLab rank-0 log incrementally.
///
/// Feeding a log in any chunking gives the same records as feeding it whole: a record is
/// emitted once the lines that make it are complete, and the unfinished last line waits for
/// the next chunk. State between chunks is bounded whatever the input: the unfinished line
/// ([`MAX_LINE_BYTES`]), an open Rich message ([`super::MAX_MESSAGE_BYTES`]), and a few paths
/// of checkpoint saves under way; an open JSON block keeps only the numbers it needs and is
/// given up after [`super::MAX_BLOCK_LINES`] lines.
#[derive(Debug, Default)]
pub struct ProgressParser {
    /// The line the last chunk ended inside, cut at [`MAX_LINE_BYTES`].
    partial: Vec<u8>,
    /// Started mid-log: the bytes before the first line end belong to a line seen only in part.
    skip_to_line_start: bool,
    reader: LineReader,
}

impl ProgressParser {
    /// A parser for a log read from its first byte (or from the start of a line).
    pub fn new() -> Self {
        Self::default()
    }

    /// A parser for a log read from an arbitrary offset: it skips to the next line end, and
    /// what it missed (the start of a JSON block, of a Rich message, of a checkpoint save) only
    /// costs the records that needed it. Records are complete and correct from there on.
    pub fn cold() -> Self {
        ProgressParser {
            skip_to_line_start: true,
            ..Self::default()
        }
    }

    /// Reads the next bytes of the log and returns the records they complete.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<Record> {
        let mut out = Vec::new();
        let mut rest = chunk;
        if self.skip_to_line_start {
            let Some(end) = find_line_end(rest) else {
                return out;
            };
            self.skip_to_line_start = false;
            rest = &rest[end + 1..];
        }
        if !self.partial.is_empty() {
            let Some(end) = find_line_end(rest) else {
                self.keep_partial(rest);
                return out;
            };
            self.keep_partial(&rest[..end]);
            let line = std::mem::take(&mut self.partial);
            self.reader.line(&line, &mut out);
            // Give the buffer back so a long line's capacity is reused, not reallocated.
            self.partial = line;
            self.partial.clear();
            rest = &rest[end + 1..];
        }
        while let Some(end) = find_line_end(rest) {
            self.reader.line(&rest[..end.min(MAX_LINE_BYTES)], &mut out);
            rest = &rest[end + 1..];
        }
        self.keep_partial(rest);
        out
    }

    /// Ends the log: the last line, even unterminated, and a Rich message still open.
    pub fn finish(mut self) -> Vec<Record> {
        let mut out = Vec::new();
        if !self.skip_to_line_start {
            self.reader.line(&self.partial, &mut out);
        }
        self.reader.finish(&mut out);
        out
    }

    /// Bytes of memory the parser holds between chunks: bounded by the caps of the module
    /// docs, whatever it was fed.
    pub fn retained_bytes(&self) -> usize {
        self.partial.capacity() + self.reader.retained_bytes()
    }

    fn keep_partial(&mut self, bytes: &[u8]) {
        let room = MAX_LINE_BYTES.saturating_sub(self.partial.len());
        self.partial
            .extend_from_slice(&bytes[..bytes.len().min(room)]);
    }
}

/// Position of the first `\n` or `\r`. Looks at 32 bytes at a time first, which the compiler
/// vectorises: most bytes of a log are not line ends, and Rich pads its lines to the console width.
fn find_line_end(s: &[u8]) -> Option<usize> {
    const BLOCK: usize = 32;
    let is_end = |b: u8| b == b'\n' || b == b'\r';
    let mut at = 0;
    while let Some(block) = s.get(at..at + BLOCK) {
        if block.iter().fold(false, |any, &b| any | is_end(b)) {
            break;
        }
        at += BLOCK;
    }
    s[at..].iter().position(|&b| is_end(b)).map(|p| at + p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_ends() {
        assert_eq!(find_line_end(b""), None);
        assert_eq!(find_line_end(b"abc\r"), Some(3));
        let long = [vec![b'x'; 100], b"\nrest".to_vec()].concat();
        assert_eq!(find_line_end(&long), Some(100));
        assert_eq!(find_line_end(&[b'x'; 64]), None);
    }

    #[test]
    fn cold_start_skips_the_first_partial_line() {
        let log = b"\"step\": 3,\nNo checkpoints to load from: /o\n";
        let mut cold = ProgressParser::cold();
        assert_eq!(cold.feed(&log[..4]), vec![]);
        assert_eq!(cold.feed(&log[4..]), vec![Record::FreshStart]);
        assert_eq!(cold.finish(), vec![]);
    }

    #[test]
    fn unterminated_last_line_is_read_at_finish() {
        let mut parser = ProgressParser::new();
        assert_eq!(parser.feed(b"No checkpoints to load from: /o"), vec![]);
        assert_eq!(parser.finish(), vec![Record::FreshStart]);
    }

    #[test]
    fn partial_line_is_capped() {
        let mut parser = ProgressParser::new();
        for _ in 0..100 {
            parser.feed(&[b'x'; 1000]);
        }
        assert_eq!(parser.partial.len(), MAX_LINE_BYTES);
        parser.feed(b"\n");
        assert!(parser.partial.is_empty());
    }
}
