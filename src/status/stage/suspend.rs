//! spec.suspend: hold creation, suspend running children; on resume, unsuspend them and return
//! to the phase the job had reached. Kueue owns the suspension of a queued training child. Pure.

use crate::api::{Phase, condition};
use crate::children::{Child, ChildKind};
use crate::status::decider::{Decider, Flow};
use crate::status::decision::{ChildAction, Severity};
use crate::status::reason;
use crate::status::stage::{attempt, progress};

pub(in crate::status) fn suspend(d: &mut Decider) -> Flow {
    let suspend = d.job().spec.suspend;
    let was_suspended = d.old().phase == Some(Phase::Suspended);
    let queue_managed = d.job().spec.queue_name().is_some();
    let obs = d.obs();

    // Children whose suspension differs from what the spec asks for.
    if let Some(pre) = obs.preprocess_job.present()
        && pre.is_suspended() != suspend
        && pre.finished().is_none()
    {
        d.act(ChildAction::SetSuspended(ChildKind::Preprocess, suspend));
    }
    // Kueue owns runPolicy.suspend of a queued job; we never fight it.
    if let Some(ptj) = obs.training.present()
        && ptj.is_suspended() != suspend
        && !queue_managed
    {
        d.act(ChildAction::SetSuspended(ptj.kind(), suspend));
    }

    if suspend && queue_managed && d.status().training_child().is_some() {
        // Saying Suspended while Kueue keeps the pods running would be a lie.
        let message = format!(
            "spec.suspend has no effect once the {} is queued: Kueue owns its suspension \
             (deactivate its Workload to stop it)",
            d.training_kind().api_kind()
        );
        d.set_condition(
            condition::SUSPENDED,
            false,
            reason::MANAGED_BY_QUEUE,
            &message,
        );
        return Flow::Continue;
    }
    if suspend {
        let message = "Suspended by spec.suspend; no pods run until it is set to false";
        d.set_condition(condition::SUSPENDED, true, reason::SUSPENDED, message);
        if !was_suspended {
            d.event(
                Severity::Normal,
                reason::SUSPENDED,
                message.to_string(),
                None,
            );
        }
        d.set_phase_unranked(Phase::Suspended);
        d.explain(reason::SUSPENDED, message);
        // The training pods stop now: what their log says last (an on-demand checkpoint
        // saved on the way out) still counts, and the attempt ends when they are gone.
        if d.status().training_child().is_some() {
            progress::follow_log(d);
            attempt::end_when_stopped(d);
        }
        return Flow::Stop;
    }
    if was_suspended {
        let message = "Resumed: spec.suspend is false";
        d.set_condition(condition::SUSPENDED, false, reason::RESUMED, message);
        d.event(Severity::Normal, reason::RESUMED, message.to_string(), None);
        // The deadline counts again from the resume, as for a Kubernetes Job.
        if d.status().training_start_time.is_some() {
            d.start_training_clock();
        }
        // Return to the phase the world is in; the next stages set it.
        let phase = resume_phase(d);
        d.set_phase_unranked(phase);
    }
    Flow::Continue
}

/// The phase to return to after a resume: the furthest the job had got.
fn resume_phase(d: &Decider) -> Phase {
    let status = d.status();
    if status.training_child().is_some() {
        Phase::Training
    } else if status.preprocess_job.is_some() && !d.initialized() {
        Phase::Initializing
    } else {
        Phase::Pending
    }
}
