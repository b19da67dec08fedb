//! Byte-level helpers the format readers share. They never allocate and never panic: logs are
//! arbitrary bytes.

/// First position of `needle` in `haystack`.
pub(super) fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    let (&first, rest) = needle.split_first()?;
    let mut from = 0;
    while let Some(p) = haystack.get(from..)?.iter().position(|&b| b == first) {
        let at = from + p;
        if haystack.get(at + 1..at + needle.len()) == Some(rest) {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

/// The integer right after the first `key` in `s`.
pub(super) fn int_after(s: &[u8], key: &[u8]) -> Option<i64> {
    let at = find(s, key)? + key.len();
    int_prefix(s.get(at..)?).map(|(v, _)| v)
}

/// Number of leading spaces.
pub(super) fn leading_spaces(s: &[u8]) -> usize {
    s.iter().take_while(|&&b| b == b' ').count()
}

/// `s` without trailing spaces and tabs. Rich pads lines to the console width (512 columns in
/// the operator's pods, more elsewhere), so this looks at 32 bytes at a time.
pub(super) fn trim_end(s: &[u8]) -> &[u8] {
    const BLOCK: usize = 32;
    let blank = |b: u8| b == b' ' || b == b'\t';
    let mut end = s.len();
    while end >= BLOCK
        && s[end - BLOCK..end]
            .iter()
            .fold(true, |all, &b| all & blank(b))
    {
        end -= BLOCK;
    }
    while end > 0 && blank(s[end - 1]) {
        end -= 1;
    }
    &s[..end]
}

/// `s` without surrounding spaces and tabs.
pub(super) fn trim(s: &[u8]) -> &[u8] {
    let start = s.iter().take_while(|&&b| b == b' ' || b == b'\t').count();
    trim_end(&s[start..])
}

/// An integer at the start of `s` and its length in bytes; `None` if there is none or it
/// overflows.
pub(super) fn int_prefix(s: &[u8]) -> Option<(i64, usize)> {
    let sign = usize::from(s.first() == Some(&b'-'));
    let digits = s[sign..].iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || digits > 18 {
        return None;
    }
    let end = sign + digits;
    let value = s[sign..end]
        .iter()
        .fold(0i64, |v, &d| v * 10 + i64::from(d - b'0'));
    Some((if sign == 1 { -value } else { value }, end))
}

/// A number at the start of `s` as Python prints it (`json.dumps`, `repr`, `%.3f`, `%.2e`),
/// and its length in bytes. Includes `NaN`, `nan`, `Infinity` and `inf`, so callers that need a
/// finite number must check.
pub(super) fn float_prefix(s: &[u8]) -> Option<(f64, usize)> {
    let sign = usize::from(matches!(s.first(), Some(b'-' | b'+')));
    let negative = s.first() == Some(&b'-');
    let body = &s[sign..];
    for (word, value) in [
        (&b"NaN"[..], f64::NAN),
        (b"nan", f64::NAN),
        (b"Infinity", f64::INFINITY),
        (b"inf", f64::INFINITY),
    ] {
        if body.starts_with(word) {
            let v = if negative { -value } else { value };
            return Some((v, sign + word.len()));
        }
    }
    let digits = |from: usize| {
        body[from..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count()
    };
    let mut end = digits(0);
    if end == 0 {
        return None;
    }
    if body.get(end) == Some(&b'.') {
        end += 1 + digits(end + 1);
    }
    // An exponent only counts when digits follow: "2.42Epoch" is 2.42 then text.
    if matches!(body.get(end), Some(b'e' | b'E')) {
        let mut e = end + 1;
        if matches!(body.get(e), Some(b'-' | b'+')) {
            e += 1;
        }
        let exp = digits(e.min(body.len()));
        if exp > 0 {
            end = e + exp;
        }
    }
    let text = std::str::from_utf8(&s[..sign + end]).ok()?;
    text.parse().ok().map(|v| (v, sign + end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_as_python_prints_them() {
        assert_eq!(
            float_prefix(b"8.000000000000001e-07,"),
            Some((8.000000000000001e-07, 21))
        );
        assert_eq!(float_prefix(b"2.00e-05"), Some((2e-05, 8)));
        assert_eq!(float_prefix(b"55.0\n"), Some((55.0, 4)));
        assert_eq!(float_prefix(b"2.421875Epoch: 0"), Some((2.421875, 8)));
        assert_eq!(float_prefix(b"-1.5e+3x"), Some((-1500.0, 7)));
        assert_eq!(float_prefix(b"-Infinity"), Some((f64::NEG_INFINITY, 9)));
        assert!(float_prefix(b"NaN").is_some_and(|(v, n)| v.is_nan() && n == 3));
        assert_eq!(float_prefix(b"None"), None);
        assert_eq!(float_prefix(b"-"), None);
        assert_eq!(float_prefix(b"1e"), Some((1.0, 1)));
    }

    #[test]
    fn ints_refuse_overflow() {
        assert_eq!(int_prefix(b"20016}"), Some((20016, 5)));
        assert_eq!(int_prefix(b"-3"), Some((-3, 2)));
        assert_eq!(int_prefix(b"99999999999999999999"), None);
        assert_eq!(int_prefix(b""), None);
    }

    #[test]
    fn find_and_trim() {
        assert_eq!(find(b"aab", b"ab"), Some(1));
        assert_eq!(find(b"a", b"ab"), None);
        assert_eq!(find(b"abc", b""), None);
        assert_eq!(
            int_after(b"{'current_epoch': 2, 'x': 1}", b"'current_epoch': "),
            Some(2)
        );
        let padded = [b"x".as_slice(), &[b' '; 100]].concat();
        assert_eq!(trim_end(&padded), b"x");
        assert_eq!(trim(b"  a b \t"), b"a b");
        assert_eq!(trim(b"   "), b"");
    }
}
