//! Golden files: the rendered children of every example are pinned under tests/golden/.
//!
//! A change to what users' jobs run shows up as a diff here. After an intended change,
//! regenerate with `make golden` (or `UPDATE_GOLDEN=1 cargo test --test golden`) and review the diff.

use std::path::{Path, PathBuf};

use finetune_operator::render::render;

fn examples() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_example_renders_as_pinned() {
    let files = examples();
    assert!(
        files.len() >= 3,
        "examples/ should hold the documented examples"
    );
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut stale = Vec::new();
    for file in files {
        let input = std::fs::read_to_string(&file).unwrap();
        let rendered = render(&input).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let golden = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/golden")
            .join(file.file_name().unwrap());
        if update {
            std::fs::write(&golden, &rendered).unwrap();
        }
        if std::fs::read_to_string(&golden).ok().as_deref() != Some(rendered.as_str()) {
            stale.push(golden.display().to_string());
        }
    }
    assert!(
        stale.is_empty(),
        "rendered children differ from {stale:?}; run `make golden` and review the diff"
    );
}

#[test]
fn render_refuses_what_admission_would_refuse() {
    let input = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/finetune.yaml"),
    )
    .unwrap()
    .replace("path: skills/train.jsonl", "path: /etc/passwd");
    let err = render(&input).unwrap_err().to_string();
    assert!(
        err.contains("spec.dataset.path") && err.contains("relative path"),
        "{err}"
    );
}

#[test]
fn render_refuses_values_over_their_size_limit() {
    let input = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/finetune.yaml"),
    )
    .unwrap()
    .replace(
        "path: skills/train.jsonl",
        &format!("path: {}", "d".repeat(1025)),
    );
    let err = render(&input).unwrap_err().to_string();
    assert!(
        err.contains("spec.dataset.path: too long: 1025 characters, at most 1024"),
        "{err}"
    );
}

#[test]
fn render_refuses_other_kinds() {
    let err = render("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("FineTuneJob"), "{err}");
}
