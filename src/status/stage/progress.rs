//! Progress from the rank-0 log: the lines read this time, folded into progress, checkpoints
//! and the resume point, each epoch end, checkpoint and resume an event. Pure: the controller
//! read the lines.

use crate::api::condition;
use crate::logs::progress::{FoldContext, LogState, Transition, fold};
use crate::status::decider::Decider;
use crate::status::decision::{PlannedEvent, Severity};
use crate::status::{outcome, reason};

pub(in crate::status) fn follow_log(d: &mut Decider) {
    let Some(log) = &d.obs().log else {
        return;
    };
    let context = FoldContext {
        total_epochs: Some(i64::from(d.job().spec.training.epochs)),
        now: Some(d.now().clone()),
    };
    let before = LogState::from_status(d.status());
    let folded = fold(&before, &log.records, &context);
    let on_demand_exit = |s: &LogState| s.progress.as_ref().is_some_and(|p| p.on_demand_exit);
    let checkpointed = on_demand_exit(&folded.state) && !on_demand_exit(&before);
    let message = checkpointed.then(|| outcome::checkpoint_saved_message(&folded.state));
    d.set_log_state(folded.state, log.cursor.clone());
    for transition in folded.transitions {
        let why = reason::of_transition(&transition);
        let mut event = PlannedEvent::new(Severity::Normal, why, transition.note(), None);
        event.action = format!("{why}/{}", transition_key(&transition));
        d.publish(event);
    }
    if let Some(message) = message {
        d.set_condition(
            condition::CHECKPOINTED,
            true,
            reason::ON_DEMAND_CHECKPOINT_SAVED,
            &message,
        );
        d.event(
            Severity::Normal,
            reason::ON_DEMAND_CHECKPOINT_SAVED,
            message,
            None,
        );
    }
}

/// What tells one transition from the next of its kind: the epoch, or the checkpoint.
fn transition_key(transition: &Transition) -> String {
    let key = match transition {
        Transition::EpochCompleted { epoch, .. } => format!("epoch-{epoch}"),
        Transition::CheckpointSaved { checkpoint }
        | Transition::ResumedFromCheckpoint { checkpoint } => checkpoint
            .path
            .rsplit('/')
            .take(2)
            .collect::<Vec<_>>()
            .join("-"),
    };
    // The apiserver allows 128 bytes for an action.
    crate::logs::text::prefix_within(&key, 96).to_string()
}
