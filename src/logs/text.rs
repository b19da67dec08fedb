//! Cutting text at a byte budget without splitting a character.
//!
//! Limits on the apiserver's side (an Event note, an action) count bytes, and logs are full of
//! multi-byte characters (`█` of tqdm bars, accents, CJK): slicing a `str` at a byte offset
//! inside one panics. Every cut of text goes through these functions.

/// The largest char boundary of `s` at or before `i` (`s.len()` when `i` is past the end).
pub fn floor_char_boundary(s: &str, i: usize) -> usize {
    if i >= s.len() {
        return s.len();
    }
    // A UTF-8 character is at most 4 bytes, so a boundary is at most 3 bytes back; 0 always is.
    (i.saturating_sub(3)..=i)
        .rev()
        .find(|&b| s.is_char_boundary(b))
        .unwrap_or(0)
}

/// The smallest char boundary of `s` at or after `i` (`s.len()` when `i` is past the end).
pub fn ceil_char_boundary(s: &str, i: usize) -> usize {
    (i..s.len())
        .find(|&b| s.is_char_boundary(b))
        .unwrap_or(s.len())
}

/// The longest prefix of `s` of at most `max` bytes that ends on a char boundary.
pub fn prefix_within(s: &str, max: usize) -> &str {
    s.get(..floor_char_boundary(s, max)).unwrap_or_default()
}

/// The longest suffix of `s` of at most `max` bytes that starts on a char boundary.
pub fn suffix_within(s: &str, max: usize) -> &str {
    let start = ceil_char_boundary(s, s.len().saturating_sub(max));
    s.get(start..).unwrap_or_default()
}

/// What ends a text that was cut.
pub const CUT_MARK: &str = "…";

/// `text` cut to at most `max` bytes on a character boundary, ending with "…" when cut.
pub fn bounded(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max.saturating_sub(CUT_MARK.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{CUT_MARK}", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_fall_between_characters() {
        let s = "a█é中😀z";
        for max in 0..=s.len() + 2 {
            let p = prefix_within(s, max);
            assert!(p.len() <= max && s.starts_with(p), "{max}: {p:?}");
            // Nothing longer would fit: the next character is past the budget.
            assert!(
                s[p.len()..]
                    .chars()
                    .next()
                    .is_none_or(|c| p.len() + c.len_utf8() > max)
            );
            let t = suffix_within(s, max);
            assert!(t.len() <= max && s.ends_with(t), "{max}: {t:?}");
            let before = &s[..s.len() - t.len()];
            assert!(
                before
                    .chars()
                    .last()
                    .is_none_or(|c| t.len() + c.len_utf8() > max)
            );
        }
        assert_eq!(prefix_within("", 5), "");
        assert_eq!(suffix_within("", 5), "");
    }
}
