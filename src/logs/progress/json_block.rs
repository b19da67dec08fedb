//! v0.5–v0.10 metrics: `json.dumps(data, indent=4)` between `\x1b[92m` and `\x1b[0m`, one
//! member per line, the closing brace alone at column 0. The block is read line by line, keeping
//! only the [`Fields`] it needs, so its size never matters; lines of other processes may land
//! inside it and are read as ordinary lines.

use super::fields::Fields;
use super::record::{MetricsFormat, Record};
use super::scan::trim;

/// Lines after which a block that never closed is given up: a metrics block has 15, the
/// `script_params` block about 50.
pub const MAX_BLOCK_LINES: usize = 512;

/// A JSON block being read.
#[derive(Debug, Default)]
pub(super) struct JsonBlock {
    fields: Fields,
    lines: usize,
}

/// What a line meant to an open block.
pub(super) enum BlockLine {
    /// A member, a nested bracket or a list item.
    Content,
    /// The closing brace, with what the block held.
    Closed(Option<Record>),
    /// Not JSON: read it as an ordinary line; the block stays open.
    Other,
    /// The block ran past [`MAX_BLOCK_LINES`]: given up.
    Abandoned,
}

impl JsonBlock {
    /// Reads one ANSI-free line of the block.
    pub(super) fn line(&mut self, text: &[u8]) -> BlockLine {
        if text.first() == Some(&b'}') {
            return BlockLine::Closed(
                std::mem::take(&mut self.fields).into_record(MetricsFormat::JsonBlock),
            );
        }
        self.lines += 1;
        if self.lines > MAX_BLOCK_LINES {
            return BlockLine::Abandoned;
        }
        // Members are indented; anything at column 0 other than the brace is someone else's.
        let content = trim(text);
        if text.first() != Some(&b' ') || content.is_empty() {
            return BlockLine::Other;
        }
        match content[0] {
            b'"' => {
                if let Some((key, value)) = member(content) {
                    self.fields.set(key, value);
                }
                BlockLine::Content
            }
            b'{' | b'}' | b'[' | b']' | b'-' | b'0'..=b'9' => BlockLine::Content,
            _ => BlockLine::Other,
        }
    }
}

/// `"key": value,` → key and value without the trailing comma.
fn member(content: &[u8]) -> Option<(&[u8], &[u8])> {
    let rest = &content[1..];
    let quote = rest.iter().position(|&b| b == b'"')?;
    let value = rest[quote + 1..].strip_prefix(b":")?;
    let value = trim(value);
    Some((&rest[..quote], value.strip_suffix(b",").unwrap_or(value)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::progress::record::Setup;

    fn read(lines: &[&str]) -> (JsonBlock, Vec<BlockLine>) {
        let mut block = JsonBlock::default();
        let seen = lines.iter().map(|l| block.line(l.as_bytes())).collect();
        (block, seen)
    }

    #[test]
    fn script_params_gives_epochs() {
        let (_, seen) = read(&[
            "    \"script_params\": {",
            "        \"num_epochs\": 7,",
            "        \"lora_target_modules\": [",
            "            \"q_proj\",",
            "        ],",
            "    },",
            "    \"timestamp\": \"2025-03-25T07:58:36.498258\"",
            "}\u{1b}[0m",
        ]);
        let Some(BlockLine::Closed(record)) = seen.last() else {
            panic!("not closed");
        };
        let setup = Setup {
            num_epochs: Some(7),
            ..Setup::default()
        };
        assert_eq!(record, &Some(Record::Setup(setup)));
        assert!(matches!(seen[3], BlockLine::Content));
    }

    #[test]
    fn foreign_lines_pass_through_and_endless_blocks_end() {
        let (mut block, seen) = read(&["Epoch: 0, Step: 2, Rank: 3, loss = 2.1", "    \"x\": 1,"]);
        assert!(matches!(seen[0], BlockLine::Other));
        assert!(matches!(seen[1], BlockLine::Content));
        let last = (0..MAX_BLOCK_LINES).map(|_| block.line(b"    1,")).last();
        assert!(matches!(last, Some(BlockLine::Abandoned)));
    }
}
