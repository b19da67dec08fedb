//! Every reason has one home, `reason`, whose list is complete, and `docs/api.md` documents each.

use super::*;
use crate::logs::progress::Transition;

#[test]
fn the_list_of_reasons_holds_every_reason_declared_once() {
    let source = include_str!("../reason.rs");
    let mut declared: Vec<&str> = source
        .lines()
        .filter_map(|l| {
            l.strip_prefix("pub const ")?
                .split_once(": Reason = Reason(\"")
        })
        .map(|(_, rest)| rest.split('"').next().unwrap())
        .collect();
    let mut listed: Vec<&str> = reason::ALL.iter().map(|r| r.as_str()).collect();
    assert!(listed.len() > 30, "found only {listed:?}");
    declared.sort_unstable();
    listed.sort_unstable();
    assert_eq!(
        listed, declared,
        "reason::ALL and the constants of reason.rs differ"
    );
    listed.dedup();
    assert_eq!(listed.len(), reason::ALL.len(), "a reason is listed twice");
}

#[test]
fn every_reason_the_code_can_set_or_emit_is_documented() {
    let docs = include_str!("../../../docs/api.md");
    let missing: Vec<&Reason> = reason::ALL
        .iter()
        .filter(|r| !docs.contains(&format!("`{r}`")))
        .collect();
    assert!(missing.is_empty(), "not in docs/api.md: {missing:?}");
}

#[test]
fn progress_events_have_the_reasons_the_log_reader_names() {
    let checkpoint = crate::api::Checkpoint {
        path: "/output/ft/hf_format/samples_96".into(),
        epoch: None,
        samples: None,
        kind: crate::api::CheckpointKind::Hf,
        time: None,
    };
    for transition in [
        Transition::EpochCompleted {
            epoch: 1,
            total_epochs: None,
            loss: None,
            samples_seen: None,
        },
        Transition::CheckpointSaved {
            checkpoint: checkpoint.clone(),
        },
        Transition::ResumedFromCheckpoint { checkpoint },
    ] {
        assert_eq!(reason::of_transition(&transition), transition.reason());
    }
}
