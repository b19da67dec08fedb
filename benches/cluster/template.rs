//! The report's templates (`report.md`, `report_parser.md`): fixed prose with placeholders,
//! one rule per kind of line:
//! - a line `{{if NAME}}text` is `text`, kept only when the flag NAME is set;
//! - a line that is only `{{NAME}}` is replaced by a block of whole lines (each ending in a
//!   newline, see [`block`]), and removed when the block is empty;
//! - elsewhere `{{NAME}}` is replaced by its value.
//!
//! A placeholder without a value is a mistake in the driver: it panics.

use std::collections::{BTreeMap, BTreeSet};

/// Fills `template`; see the module documentation.
pub fn fill(template: &str, values: &BTreeMap<&str, String>, flags: &BTreeSet<&str>) -> String {
    let value = |name: &str| -> &str {
        values.get(name).unwrap_or_else(|| {
            panic!("the report template names {{{{{name}}}}}, which has no value")
        })
    };
    let mut out = String::new();
    for line in template.split_inclusive('\n') {
        let mut line = line;
        if let Some(rest) = line.strip_prefix("{{if ") {
            let (flag, text) = rest.split_once("}}").expect("{{if NAME}}");
            if !flags.contains(flag) {
                continue;
            }
            line = text;
        }
        let bare = line.trim_end_matches('\n');
        if let Some(name) = bare.strip_prefix("{{").and_then(|n| n.strip_suffix("}}"))
            && !name.contains("{{")
        {
            out.push_str(value(name));
            continue;
        }
        let mut rest = line;
        while let Some(start) = rest.find("{{") {
            let end = rest[start..].find("}}").expect("a closed placeholder") + start;
            out.push_str(&rest[..start]);
            out.push_str(value(&rest[start + 2..end]));
            rest = &rest[end + 2..];
        }
        out.push_str(rest);
    }
    out
}

/// Lines as a block: each ends in a newline.
pub fn block(lines: &[String]) -> String {
    lines.iter().map(|l| format!("{l}\n")).collect()
}
