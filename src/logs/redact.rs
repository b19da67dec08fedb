//! What a log tail may show in an Event: no training data, no secrets.
//!
//! Events are readable by everyone who may read Events in the namespace, often more people than
//! may read the pods' logs. InstructLab's `data_process` prints a few training samples into its
//! log ("Samples Previews"): [`drop_samples`] replaces them with a count. Wrapper scripts and
//! libraries echo tokens, passwords and URLs with credentials: [`mask_secrets`] replaces the
//! common shapes with `[REDACTED]`. Both are heuristics that err on the side of hiding.

use std::borrow::Cow;
use std::sync::LazyLock;

use regex::{Regex, RegexSet};

/// What stands in place of a secret.
pub const REDACTED: &str = "[REDACTED]";

/// Masks the common shapes of secrets in `text`: tokens of Hugging Face, GitHub, GitLab,
/// OpenAI, Slack and AWS, JWTs, `Bearer …` and `Authorization: …`, values of keys named like
/// `*_TOKEN`, `*_KEY`, `*SECRET*`, `password`, and the credentials of URLs (`scheme://user:pass@`).
pub fn mask_secrets(text: &str) -> Cow<'_, str> {
    // One pass finds which shapes occur at all; most text holds none.
    let (any, each) = &*SECRETS;
    let mut out = Cow::Borrowed(text);
    for i in any.matches(text).iter() {
        let Some((pattern, replacement)) = each.get(i) else {
            continue;
        };
        if let Cow::Owned(changed) = pattern.replace_all(&out, replacement.as_str()) {
            out = Cow::Owned(changed);
        }
    }
    out
}

type Secrets = (RegexSet, Vec<(Regex, String)>);

// Word boundaries are ASCII ones, `(?-u:\b)`: with Unicode ones the regex engine leaves its DFA
// for a slow one on any text that is not ASCII (a tqdm bar).
static SECRETS: LazyLock<Secrets> = LazyLock::new(|| {
    let keep = |prefix: &str| format!("${{{prefix}}}{REDACTED}");
    let each: Vec<(Regex, String)> = [
        // scheme://user:password@host, scheme://token@host
        (
            r"(?i)(?P<k>(?-u:\b)[a-z][a-z0-9+.\-]*://)[^\s/?#@]+@",
            format!("${{k}}{REDACTED}@"),
        ),
        // Authorization: Basic …, "authorization": "Bearer …"
        (
            r#"(?i)(?P<k>(?-u:\b)authorization["']?\s*[:=]\s*["']?)[^"'\r\n]+"#,
            keep("k"),
        ),
        (r"(?i)(?P<k>(?-u:\b)bearer\s+)[A-Za-z0-9._~+/=\-]{8,}", keep("k")),
        // HF_TOKEN=…, api_key: "…", 'hf_token': '…', password=…, AWS_SECRET_ACCESS_KEY=…
        (
            r#"(?i)(?P<k>[A-Za-z0-9_.\-]*(?:token|secret|password|passwd|[_.\-]key|apikey|credentials?)["']?\s*[:=]\s*)(?:"[^"]*"|'[^']*'|[^\s"',;&]+)"#,
            keep("k"),
        ),
        // --hf-token VALUE, --password VALUE
        (
            r"(?i)(?P<k>--[a-z0-9_\-]*(?:token|secret|password|passwd|key)\s+)[^\s\-]\S*",
            keep("k"),
        ),
        (r"(?-u:\b)hf_[A-Za-z0-9]{16,}", REDACTED.to_string()),
        (r"(?-u:\b)gh[pousr]_[A-Za-z0-9]{20,}", REDACTED.to_string()),
        (r"(?-u:\b)github_pat_[A-Za-z0-9_]{20,}", REDACTED.to_string()),
        (r"(?-u:\b)glpat-[A-Za-z0-9_\-]{20,}", REDACTED.to_string()),
        (r"(?-u:\b)sk-[A-Za-z0-9_\-]{20,}", REDACTED.to_string()),
        (r"(?-u:\b)xox[abposr]-[A-Za-z0-9\-]{10,}", REDACTED.to_string()),
        (r"(?-u:\b)(?:AKIA|ASIA)[0-9A-Z]{16}(?-u:\b)", REDACTED.to_string()),
        (
            r"(?-u:\b)eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]*",
            REDACTED.to_string(),
        ),
    ]
    .into_iter()
    .map(|(pattern, replacement)| (regex(pattern), replacement))
    .collect();
    let any = RegexSet::new(each.iter().map(|(r, _)| r.as_str())).expect("valid constant patterns");
    (any, each)
});

/// `log` without the training samples InstructLab prints, each run of their lines replaced by
/// `[N lines of training samples omitted]`.
///
/// `data_process` prints, for a few samples, `ESC[35mOriginal Input: <chat>\nESC[0m` and
/// `ESC[33mInstruction ex sample N: <masked chat>ESC[0m` (`Pretraining ex sample` for
/// pretraining data); the chat spans as many lines as its messages. A dump runs from such a
/// line to the colour reset that ends the print; printed without colour, up to the next line
/// that looks like a log line (a level, a time, a progress bar, a traceback). A tail may also
/// start inside a dump: lines before the first log line are dropped when they hold chat-template
/// tokens or end just before the next sample.
pub fn drop_samples(log: &str) -> Cow<'_, str> {
    if !SAMPLE_START.is_match(log) && !CHAT_TOKEN.is_match(log) {
        return Cow::Borrowed(log);
    }
    let body = log.strip_suffix('\n');
    let lines: Vec<&str> = body.unwrap_or(log).split('\n').collect();
    let kinds: Vec<Kind> = lines.iter().map(|l| Kind::of(l)).collect();
    let mut dropped = vec![false; lines.len()];

    // A tail that starts inside a dump.
    let head = kinds
        .iter()
        .position(|k| !matches!(k, Kind::Other))
        .unwrap_or(lines.len());
    let head_lines = lines.get(..head).unwrap_or_default();
    let before_a_sample = matches!(kinds.get(head), Some(Kind::Start { .. }))
        && head_lines
            .last()
            .is_some_and(|l| l.trim_end().ends_with(RESET));
    if before_a_sample || head_lines.iter().any(|l| CHAT_TOKEN.is_match(l)) {
        dropped.iter_mut().take(head).for_each(|d| *d = true);
    }

    let mut i = head;
    while i < lines.len() {
        let Some(Kind::Start { colored, rest }) = kinds.get(i) else {
            i += 1;
            continue;
        };
        let (colored, rest) = (*colored, *rest);
        dropped[i] = true;
        let mut ended = colored && lines[i].get(rest..).is_some_and(|r| r.contains(RESET));
        i += 1;
        while !ended && i < lines.len() {
            if !colored && matches!(kinds[i], Kind::Log) {
                break;
            }
            dropped[i] = true;
            ended = colored && lines[i].contains(RESET);
            i += 1;
        }
    }

    let mut out = String::with_capacity(log.len());
    let mut run = 0;
    for (line, drop) in lines.iter().zip(&dropped) {
        if *drop {
            run += 1;
            continue;
        }
        push_omitted(&mut out, &mut run);
        out.push_str(line);
        out.push('\n');
    }
    push_omitted(&mut out, &mut run);
    if body.is_none() {
        out.pop();
    }
    Cow::Owned(out)
}

fn push_omitted(out: &mut String, run: &mut usize) {
    if *run > 0 {
        let s = if *run == 1 { "" } else { "s" };
        out.push_str(&format!("[{run} line{s} of training samples omitted]\n"));
        *run = 0;
    }
}

const RESET: &str = "\u{1b}[0m";

/// What a line of a log is, for finding sample dumps.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    /// The first line of a printed sample; `rest`: where its text starts, after the marker.
    Start {
        colored: bool,
        rest: usize,
    },
    /// A line of the program's own logging.
    Log,
    Other,
}

impl Kind {
    fn of(line: &str) -> Kind {
        if let Some(m) = SAMPLE_START.find(line) {
            let colored = line.get(..m.start()).is_some_and(|b| b.contains('\u{1b}'));
            return Kind::Start {
                colored,
                rest: m.end(),
            };
        }
        // tqdm redraws its bars after a carriage return.
        if line.contains('\r') || line.contains("%|") || LOG_LINE.is_match(&visible(line)) {
            return Kind::Log;
        }
        Kind::Other
    }
}

/// `line` without ANSI escape sequences.
fn visible(line: &str) -> Cow<'_, str> {
    if line.contains('\u{1b}') {
        ANSI.replace_all(line, "")
    } else {
        Cow::Borrowed(line)
    }
}

static SAMPLE_START: LazyLock<Regex> =
    LazyLock::new(|| regex(r"Original Input: |(?:Instruction|Pretraining) ex sample \d+: "));

/// Special tokens of chat templates (Granite, ChatML, Llama, Mistral) and InstructLab's own.
static CHAT_TOKEN: LazyLock<Regex> =
    LazyLock::new(|| regex(r"(?i)<\|[a-z_/]+\|>|<MASK>|\[/?INST\]|<</?SYS>>|</s>"));

/// Lines a program's logging writes: Rich's time column or level, a level, an ISO or glog
/// time, a traceback, a rank prefix, an exception.
static LOG_LINE: LazyLock<Regex> = LazyLock::new(|| {
    regex(
        r#"^(?:\s*\[\d{2}:\d{2}:\d{2}\]\s|\s*(?:DEBUG|INFO|WARNING|WARN|ERROR|CRITICAL|FATAL)(?-u:\b)|\[?\d{4}-\d{2}-\d{2}[\sT]\d{2}:\d{2}|[IWEF]\d{4}\s\d{2}:\d{2}:\d{2}|\s*Traceback \(most recent call last\)|\s+File "|\[rank\d+\]|[A-Za-z_][\w.]*(?:Error|Exception|Interrupt|Exit)(?-u:\b))"#,
    )
});

static ANSI: LazyLock<Regex> =
    LazyLock::new(|| regex(r"\x1b(?:\[[0-9;?]*[\x40-\x7e]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|.)"));

/// A constant pattern (the tests compile every one).
fn regex(pattern: &str) -> Regex {
    Regex::new(pattern).expect("a valid constant pattern")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A genuine `data_process` log (instructlab-training 0.16.2) of 320 synthetic samples.
    fn preprocess_log() -> String {
        let bytes = include_bytes!("../../tests/fixtures/instructlab/preprocess-v0.16.log");
        String::from_utf8_lossy(bytes).into_owned()
    }

    const SAMPLE_TEXT: [&str; 11] = [
        "Original Input",
        "ex sample",
        "start_of_role",
        "MASK",
        "concise assistant",
        "friendly tutor",
        "12 minus 66",
        "Australia",
        "Canberra",
        "Hungary",
        "Budapest",
    ];

    const ERROR: &str = "Traceback (most recent call last):\n  File \"/app/data_process.py\", line 1, in <module>\nValueError: the dataset is empty\n";

    fn assert_no_samples(text: &str) {
        for sample in SAMPLE_TEXT {
            assert!(!text.contains(sample), "{sample:?} survived in:\n{text}");
        }
    }

    #[test]
    fn samples_of_the_real_preprocess_log_are_dropped_and_the_rest_kept() {
        let log = preprocess_log() + ERROR;
        let out = drop_samples(&log);
        assert_no_samples(&out);
        assert!(
            out.contains("[18 lines of training samples omitted]\n"),
            "{out}"
        );
        for kept in [
            "Generating train split: 320 examples",
            "quantile 100th: 58",
            "Samples Previews...",
            "Filtering out pretraining samples (num_proc=2): 100%|██████████|",
            "Validating unmask tokens not in data (num_proc=2): 100%|██████████| 320/320",
            "Creating json from Arrow format: 100%",
            ERROR,
        ] {
            assert!(out.contains(kept), "{kept:?} is gone:\n{out}");
        }
        assert!(out.ends_with(ERROR));
        assert_eq!(out.lines().count() + 17, log.lines().count());
    }

    #[test]
    fn a_tail_starting_anywhere_in_a_dump_shows_no_sample() {
        let log = preprocess_log() + ERROR;
        let lines: Vec<&str> = log.split_inclusive('\n').collect();
        for start in 0..lines.len() {
            let tail: String = lines[start..].concat();
            let out = drop_samples(&tail);
            assert_no_samples(&out);
            assert!(
                out.ends_with("ValueError: the dataset is empty\n"),
                "from line {start}"
            );
        }
    }

    #[test]
    fn a_dump_without_colour_ends_at_the_next_log_line() {
        let log = "INFO start\nInstruction ex sample 1: my data\nmore of my data\n[10:00:00] INFO     next\nExtra\n";
        assert_eq!(
            drop_samples(log),
            "INFO start\n[2 lines of training samples omitted]\n[10:00:00] INFO     next\nExtra\n"
        );
        // A dump that runs to the end, without a final newline.
        assert_eq!(
            drop_samples("ok\nPretraining ex sample 2: data"),
            "ok\n[1 line of training samples omitted]"
        );
    }

    #[test]
    fn logs_without_samples_are_left_alone() {
        let log = "epoch=0, step=1\nSaving model in huggingface format at: samples_96\n";
        assert!(matches!(drop_samples(log), Cow::Borrowed(_)));
    }

    #[test]
    fn secrets_are_masked() {
        let cases = [
            (
                "HF_TOKEN=hf_abcdefghijklmnopqrstuvwxyz1234",
                "HF_TOKEN=[REDACTED]",
            ),
            (
                "export AWS_SECRET_ACCESS_KEY=abc/def+ghi x",
                "export AWS_SECRET_ACCESS_KEY=[REDACTED] x",
            ),
            (
                "db password=hunter2 user=bob",
                "db password=[REDACTED] user=bob",
            ),
            (
                "{'hf_token': 'x y', 'lr': 1e-05}",
                "{'hf_token': [REDACTED], 'lr': 1e-05}",
            ),
            (
                r#"{"api_key": "abc", "n": 1}"#,
                r#"{"api_key": [REDACTED], "n": 1}"#,
            ),
            (
                "curl -H 'Authorization: Basic dXNlcjpwYXNz' url",
                "curl -H 'Authorization: [REDACTED]' url",
            ),
            ("sent Bearer abcdefgh12345678.x", "sent Bearer [REDACTED]"),
            (
                "git clone https://user:p4ss@github.com/o/r.git",
                "git clone https://[REDACTED]@github.com/o/r.git",
            ),
            (
                "pip index s3://AKIAX:secret@bucket/key",
                "pip index s3://[REDACTED]@bucket/key",
            ),
            (
                "huggingface-cli login --token abc123",
                "huggingface-cli login --token [REDACTED]",
            ),
            ("using hf_abcdefghijklmnopqrstu now", "using [REDACTED] now"),
            ("ghp_abcdefghijklmnopqrstuvwxyz0123456789", "[REDACTED]"),
            ("key sk-proj-abcdefghijklmnopqrstuvwx.", "key [REDACTED]."),
            ("AKIAIOSFODNN7EXAMPLE is the id", "[REDACTED] is the id"),
            (
                "jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.sig",
                "jwt [REDACTED]",
            ),
            (
                "?x=1&access_token=abc&y=2",
                "?x=1&access_token=[REDACTED]&y=2",
            ),
        ];
        for (text, masked) in cases {
            assert_eq!(mask_secrets(text), masked, "{text}");
            // Masking again changes nothing.
            assert_eq!(mask_secrets(masked), masked, "{masked}");
        }
    }

    #[test]
    fn ordinary_log_lines_are_not_masked() {
        for line in [
            "Model saved in /output/ft/hf_format/samples_992",
            "max_new_tokens=5, num_tokens: 12, total_samples=1012, keys=3",
            "Epoch: 0, Step: 1, Rank: 0, loss = 2.421875",
            "Downloading https://huggingface.co/ibm-granite/granite-7b-base/resolve/main/config.json",
            "[09:12:12] INFO     epoch=0, step=1, rank=0, overall_throughput=43.505, lr=8.00e-07",
            "Special tokens: eos: [0], pad: [0], bos: [0], system: [1], user: [2], assistant: [3]",
            "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB",
            "Filter (num_proc=2): 100%|██████████| 320/320 [00:00<00:00, 1771.20 examples/s]",
        ] {
            assert!(
                matches!(mask_secrets(line), Cow::Borrowed(_)),
                "{line} -> {}",
                mask_secrets(line)
            );
        }
    }
}
