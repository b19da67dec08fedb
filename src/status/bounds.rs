//! Every string the status carries has a bound. Messages quote the apiserver, pods and logs,
//! and checkpoint paths come from the log: all of it is input the operator does not control,
//! and an unbounded status would grow the object (etcd refuses objects over 1.5 MiB) and every
//! watch event of it.

use crate::api::FineTuneJobStatus;
pub use crate::logs::text::bounded;

/// The most bytes of a message (status.message, a condition's message).
pub const MAX_MESSAGE_BYTES: usize = 4096;
/// The most bytes of a checkpoint path.
pub const MAX_PATH_BYTES: usize = 1024;

/// Applies the bounds to a whole status.
pub fn bound_status(status: &mut FineTuneJobStatus) {
    let cut = |s: &mut String, max: usize| {
        if s.len() > max {
            *s = bounded(s, max);
        }
    };
    if let Some(m) = status.message.as_mut() {
        cut(m, MAX_MESSAGE_BYTES);
    }
    for c in &mut status.conditions {
        cut(&mut c.message, MAX_MESSAGE_BYTES);
    }
    for c in status
        .checkpoints
        .iter_mut()
        .chain(status.resumed_from.as_mut())
    {
        cut(&mut c.path, MAX_PATH_BYTES);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::text::CUT_MARK;

    #[test]
    fn cuts_on_a_character_boundary_and_marks_the_cut() {
        assert_eq!(bounded("short", 10), "short");
        let cut = bounded(&"█".repeat(100), 50);
        assert!(cut.len() <= 50, "{}", cut.len());
        assert!(cut.ends_with(CUT_MARK));
        assert!(cut.trim_end_matches(CUT_MARK).chars().all(|c| c == '█'));
        // Limits smaller than the mark itself still give a valid, bounded string.
        for max in 0..8 {
            assert!(bounded("ééééé", max).len() <= max.max(CUT_MARK.len()));
        }
    }

    #[test]
    fn every_message_and_path_of_a_status_is_bounded() {
        let mut status: FineTuneJobStatus = serde_json::from_value(serde_json::json!({
            "message": "m".repeat(100_000),
            "conditions": [{"type": "Failed", "status": "True", "reason": "R",
                            "message": "é".repeat(50_000), "lastTransitionTime": "2026-11-26T10:00:00Z"}],
            "checkpoints": [{"path": "/output/".to_string() + &"p".repeat(10_000), "kind": "hf",
                             "time": "2026-11-26T10:00:00Z"}],
        }))
        .unwrap();
        bound_status(&mut status);
        assert!(status.message.unwrap().len() <= MAX_MESSAGE_BYTES);
        assert!(status.conditions[0].message.len() <= MAX_MESSAGE_BYTES);
        assert!(status.checkpoints[0].path.len() <= MAX_PATH_BYTES);
    }
}
