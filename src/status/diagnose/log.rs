//! Why a process failed, from the last lines of its log alone: the one reading of a failing
//! container's tail. The controller's Failed condition ([`super::failure`], which asks the pods
//! first) and `finetune-operator inspect-log` both read tails through [`read`], so the two
//! never disagree. Pure.

use std::sync::LazyLock;

use regex::Regex;

use super::{Diagnosis, diagnosis};
use crate::logs::plain_line;
use crate::logs::progress::launcher_signal;
use crate::logs::redact::mask_secrets;
use crate::logs::text::bounded;
use crate::status::reason;

/// Bytes of a log line quoted in a diagnosis or as the exception.
const MAX_QUOTE_BYTES: usize = 256;

/// What the last lines of a log say about how its process ended.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TailReading {
    /// A cause the operator names: CUDA out of memory, a signal to torchrun, NCCL, a command
    /// line the image's InstructLab refused.
    pub diagnosis: Option<Diagnosis>,
    /// The exception a Python traceback ends with, e.g. `ValueError: bad data`, secrets masked
    /// and at most 256 bytes: that of the last traceback other than torchrun's summary of a
    /// failed worker (`ChildFailedError`), which names no cause.
    pub exception: Option<String>,
    /// A Python traceback is among the lines: the process died of an exception.
    pub traceback: bool,
}

/// Reads the last lines of a log (raw: colour codes and `\r` redraws are fine).
pub fn read(tail: &str) -> TailReading {
    let lines: Vec<String> = tail
        .split('\n')
        .map(|l| without_rank_prefix(&plain_line(l)).trim_end().to_string())
        .filter(|l| !l.is_empty())
        .collect();
    let (exception, traceback) = exception(&lines);
    TailReading {
        diagnosis: diagnose(tail, &lines),
        exception,
        traceback,
    }
}

/// The causes in order of precedence: a CUDA OOM makes the other ranks time out in NCCL, and
/// a signal to torchrun ends every rank's collectives too.
fn diagnose(tail: &str, lines: &[String]) -> Option<Diagnosis> {
    if tail.contains("CUDA out of memory") || tail.contains("OutOfMemoryError") {
        return diagnosis(
            reason::CUDA_OUT_OF_MEMORY,
            "the GPU ran out of memory (CUDA out of memory); lower training.maxBatchLen, or offload to CPU (training.cpuOffloadOptimizer, cpuOffloadParams)".to_string(),
        );
    }
    // The same lines the fold reads the signal from.
    if let Some(signal) = lines
        .iter()
        .rev()
        .find_map(|l| launcher_signal(l.trim().as_bytes()))
    {
        return Some(terminated(signal));
    }
    let nccl = tail.contains("NCCL") || tail.contains("ProcessGroupNCCL");
    if nccl
        && (tail.contains("Watchdog caught collective operation timeout")
            || tail.to_lowercase().contains("timed out")
            || tail.contains("Timeout"))
    {
        return diagnosis(
            reason::NCCL_TIMEOUT,
            "a collective operation between GPUs timed out (NCCL); check the network between nodes and that every node started".to_string(),
        );
    }
    if nccl
        && (tail.contains("NCCL error")
            || tail.contains("ncclInternalError")
            || tail.contains("ncclSystemError")
            || tail.contains("ncclUnhandledCudaError"))
    {
        return diagnosis(
            reason::NCCL_ERROR,
            "the GPUs could not communicate (NCCL error); check the network between nodes, /dev/shm and the NCCL settings in spec.env".to_string(),
        );
    }
    if let Some(refused) = lines.iter().rev().find(|l| ARGPARSE_ERROR.is_match(l)) {
        return diagnosis(
            reason::INCOMPATIBLE_IMAGE,
            format!(
                "the image's instructlab-training refused its command line ({}): a field set in the spec needs a newer release (see \"InstructLab versions\" in docs/api.md), or an extraArgs entry is not an option it knows; use an image with a newer instructlab-training, or unset the field",
                quote(refused)
            ),
        );
    }
    None
}

/// torchrun received `signal` (it then exits 1, which the PyTorchJob does not retry).
pub fn terminated(signal: i64) -> Diagnosis {
    Diagnosis {
        reason: reason::TERMINATED,
        detail: format!(
            "torchrun received signal {signal}{} and stopped training: the pod was deleted, evicted or preempted, or its node shut down; torchrun then exits with code 1, which the PyTorchJob does not retry. A new FineTuneJob with the same output.path resumes from the last full state",
            signal_name(signal)
        ),
    }
}

/// A Python traceback's header.
static TRACEBACK: LazyLock<Regex> =
    LazyLock::new(|| regex(r"^Traceback \(most recent call last\):"));

/// An exception's line without its traceback (cut off above the tail): a dotted name ending
/// like Python's exception classes, then `:` or the end of the line.
static EXCEPTION_LINE: LazyLock<Regex> = LazyLock::new(|| {
    regex(
        r"^(?:[A-Za-z_][A-Za-z0-9_]*\.)*[A-Za-z_][A-Za-z0-9_]*(?:Error|Exception|Interrupt|Exit)(?::|$)",
    )
});

/// argparse refusing a command line: `main_ds.py: error: unrecognized arguments: --x=1`,
/// `… error: argument --lr_scheduler: invalid choice: …`, `… error: the following arguments are
/// required: …`. The program name is `main_ds.py`, `data_process.py` or `torchrun`.
static ARGPARSE_ERROR: LazyLock<Regex> = LazyLock::new(|| {
    regex(
        r"^[A-Za-z0-9_.\-/]+: error: (?:unrecognized arguments: |argument |the following arguments are required: )",
    )
});

/// The prefix torchrun puts before its workers' lines with `--tee` or a log-line prefix
/// template: `[rank0]: `, `[default0]: `.
static RANK_PREFIX: LazyLock<Regex> =
    LazyLock::new(|| regex(r"^\[(?:rank|default)[0-9]+\]:(?: |$)"));

fn regex(pattern: &str) -> Regex {
    Regex::new(pattern).expect("valid constant pattern")
}

fn without_rank_prefix(line: &str) -> &str {
    match RANK_PREFIX.find(line) {
        Some(m) => &line[m.end()..],
        None => line,
    }
}

fn signal_name(signal: i64) -> &'static str {
    match signal {
        1 => " (SIGHUP)",
        2 => " (SIGINT)",
        15 => " (SIGTERM)",
        _ => "",
    }
}

/// The exception of the last traceback that names a cause, and whether there is a traceback.
/// A traceback is its header, frames indented below it, then the exception's line.
fn exception(lines: &[String]) -> (Option<String>, bool) {
    let mut found: Vec<&str> = Vec::new();
    let mut traceback = false;
    let mut in_frames = false;
    for line in lines {
        if TRACEBACK.is_match(line) {
            (traceback, in_frames) = (true, true);
        } else if in_frames && !line.starts_with([' ', '\t']) && EXCEPTION_LINE.is_match(line) {
            // Other processes' lines may come between the frames.
            in_frames = false;
            found.push(line);
        }
    }
    let named = found
        .iter()
        .rev()
        .find(|l| !l.contains("ChildFailedError"))
        .or(found.last())
        .copied()
        // The traceback's header may be above the tail.
        .or_else(|| {
            lines
                .iter()
                .rev()
                .find(|l| EXCEPTION_LINE.is_match(l))
                .map(String::as_str)
        });
    (named.map(quote), traceback)
}

/// A log line as a diagnosis quotes it: secrets masked, at most [`MAX_QUOTE_BYTES`].
fn quote(line: &str) -> String {
    let masked = mask_secrets(line.trim());
    bounded(&masked, MAX_QUOTE_BYTES)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason_of(tail: &str) -> Option<String> {
        read(tail).diagnosis.map(|d| d.reason.to_string())
    }

    #[test]
    fn causes_are_named_from_the_tail() {
        let cases = [
            (
                "[rank0]: torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB",
                "CUDAOutOfMemory",
            ),
            (
                "[Rank 1] Watchdog caught collective operation timeout: WorkNCCL(SeqNum=7) ran for 600000 milliseconds before timing out",
                "NCCLTimeout",
            ),
            (
                "RuntimeError: NCCL error in: ProcessGroupNCCL.cpp:1970, unhandled system error\nncclSystemError: System call failed",
                "NCCLError",
            ),
            (
                "torch.distributed.elastic.multiprocessing.api.SignalException: Process 1 got signal: 15",
                "Terminated",
            ),
            (
                "W1130 00:23:52.394000 1 torch/distributed/elastic/agent/server/api.py:739] Received 15 death signal, shutting down workers",
                "Terminated",
            ),
            (
                "usage: main_ds.py [-h] [--model_name_or_path MODEL_NAME_OR_PATH]\n[rank0]: main_ds.py: error: unrecognized arguments: --adamw_beta1=0.9",
                "IncompatibleImage",
            ),
            (
                "main_ds.py: error: argument --lr_scheduler: invalid choice: 'wsd' (choose from 'linear', 'cosine')",
                "IncompatibleImage",
            ),
        ];
        for (tail, reason) in cases {
            assert_eq!(reason_of(tail).as_deref(), Some(reason), "{tail}");
        }
        assert_eq!(reason_of("ValueError: bad data"), None);
        // The traceback's source line is not the signal.
        assert_eq!(
            reason_of(
                r#"    raise SignalException(f"Process {os.getpid()} got signal: {sigval}", sigval=sigval)"#
            ),
            None
        );
    }

    #[test]
    fn a_signal_names_itself_and_the_refused_argument_is_quoted() {
        let d = read("torch.distributed.elastic.multiprocessing.api.SignalException: Process 4676 got signal: 15")
            .diagnosis
            .unwrap();
        assert!(
            d.detail
                .starts_with("torchrun received signal 15 (SIGTERM)")
        );
        let d = read("\x1b[31mmain_ds.py: error: unrecognized arguments: --hf_token=hf_abcdefghijklmnopqrstu\x1b[0m\n")
            .diagnosis
            .unwrap();
        assert!(
            d.detail
                .contains("(main_ds.py: error: unrecognized arguments: --hf_token=[REDACTED])"),
            "{}",
            d.detail
        );
    }

    #[test]
    fn the_exception_is_the_last_one_that_names_a_cause() {
        let tail = "\
[rank0]: Traceback (most recent call last):
[rank0]:   File \"/app/main_ds.py\", line 10, in <module>
[rank0]:     main()
[rank0]:     ^^^^^^
[rank0]: ValueError: sample 3 has no assistant turn
E1130 00:00:00.000000 1 torch/distributed/elastic/multiprocessing/api.py:869] failed (exitcode: 1) local_rank: 0 (pid: 12) of binary: /usr/bin/python
Traceback (most recent call last):
  File \"/usr/bin/torchrun\", line 8, in <module>
    sys.exit(main())
torch.distributed.elastic.multiprocessing.errors.ChildFailedError:
============================================================
instructlab.training.main_ds FAILED
";
        let reading = read(tail);
        assert_eq!(
            reading.exception.as_deref(),
            Some("ValueError: sample 3 has no assistant turn")
        );
        assert!(reading.traceback);
        assert_eq!(reading.diagnosis, None);
    }

    #[test]
    fn an_exception_whose_traceback_is_cut_off_is_still_found() {
        let reading = read("    return forward(x)\nRuntimeError: shape mismatch\n\n");
        assert_eq!(
            reading.exception.as_deref(),
            Some("RuntimeError: shape mismatch")
        );
        assert!(!reading.traceback);
        assert_eq!(read("all good\nUserWarning: careful").exception, None);
        let long = format!("ValueError: {}", "x".repeat(1000));
        let quoted = read(&long).exception.unwrap();
        assert!(quoted.len() <= MAX_QUOTE_BYTES && quoted.ends_with('…'));
    }
}
