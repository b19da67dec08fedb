//! ANSI escape removal. InstructLab colours its own prints (`\x1b[92m` JSON blocks, `\x1b[93m`
//! checkpoint markers); tqdm moves the cursor (`\x1b[A`); Rich adds colours and `\x1b]8;…`
//! hyperlinks when it believes it writes to a terminal.

/// Most escape positions kept per line; a line with more is noise, and the extra positions only
/// cost scanning.
const MAX_CUTS: usize = 64;

/// Copies `raw` into `out` without escape sequences and records in `cuts` where each sequence
/// was (offsets into `out`, ascending). The colour codes around a print delimit it when several
/// processes' output shares a line.
///
/// CSI is `ESC [ params final` with a final byte in 0x40..=0x7e; OSC is `ESC ] … BEL` or
/// `ESC ] … ESC \`; any other escape is `ESC` and one byte. An unterminated sequence runs to the
/// end of the line.
pub(super) fn strip_ansi(raw: &[u8], out: &mut Vec<u8>, cuts: &mut Vec<usize>) {
    out.clear();
    cuts.clear();
    let mut i = 0;
    while i < raw.len() {
        let Some(esc) = raw[i..].iter().position(|&b| b == 0x1b) else {
            out.extend_from_slice(&raw[i..]);
            break;
        };
        out.extend_from_slice(&raw[i..i + esc]);
        if cuts.len() < MAX_CUTS && cuts.last() != Some(&out.len()) {
            cuts.push(out.len());
        }
        i += esc + 1;
        match raw.get(i) {
            Some(b'[') => {
                let end = raw[i + 1..].iter().position(|b| (0x40..=0x7e).contains(b));
                i = end.map_or(raw.len(), |e| i + 1 + e + 1);
            }
            Some(b']') => {
                let body = &raw[i + 1..];
                i = match body.iter().position(|&b| b == 0x07 || b == 0x1b) {
                    // ESC \ ends an OSC: skip both bytes.
                    Some(e) if body[e] == 0x1b => i + 1 + e + 2,
                    Some(e) => i + 1 + e + 1,
                    None => raw.len(),
                };
            }
            Some(_) => i += 1,
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strip(raw: &[u8]) -> (String, Vec<usize>) {
        let (mut out, mut cuts) = (Vec::new(), Vec::new());
        strip_ansi(raw, &mut out, &mut cuts);
        (String::from_utf8(out).unwrap(), cuts)
    }

    #[test]
    fn colours_go_and_leave_cuts() {
        let (text, cuts) = strip(b"\x1b[93mModel saved in /o\x1b[0m");
        assert_eq!(text, "Model saved in /o");
        assert_eq!(cuts, vec![0, 17]);
        let (text, cuts) = strip(b"3.1s/it]\x1b[92m{");
        assert_eq!((text.as_str(), cuts), ("3.1s/it]{", vec![8]));
    }

    #[test]
    fn hyperlinks_cursor_moves_and_truncated_sequences() {
        let (text, _) = strip(b"a\x1b]8;;file:///x.py\x1b\\x.py\x1b]8;;\x07b\x1b[Ac\x1bMd");
        assert_eq!(text, "ax.pybcd");
        assert_eq!(strip(b"x\x1b[12").0, "x");
        assert_eq!(strip(b"x\x1b]8;;never ends").0, "x");
        assert_eq!(strip(b"x\x1b").0, "x");
    }
}
