//! activeDeadlineSeconds, counted from the start (or resume, or re-admission) of training: past
//! it the job fails and its pods stop. Pure.

use std::time::Duration;

use crate::api::Phase;
use crate::status::decider::{Decider, Flow};
use crate::status::decision::{LogSource, Severity, Tail};
use crate::status::{diagnose, pods, reason};

pub(in crate::status) fn deadline(d: &mut Decider) -> Flow {
    let (Some(limit), Some(started)) = (
        d.job().spec.active_deadline_seconds,
        d.status().training_start_time.clone(),
    ) else {
        return Flow::Continue;
    };
    // Between attempts (preempted, interrupted): no pods run, and the clock restarts with the
    // next attempt.
    if d.status().phase != Some(Phase::Training)
        || reason::between_attempts(d.status().reason.as_deref())
    {
        return Flow::Continue;
    }
    let elapsed = d.now().0.as_second() - started.0.as_second();
    if elapsed < limit {
        d.requeue_at_most(Some(Duration::from_secs((limit - elapsed) as u64)));
        return Flow::Continue;
    }
    let mut message = format!(
        "training ran for {elapsed}s, longer than activeDeadlineSeconds {limit}; its pods were stopped"
    );
    if let Some(blocked) = diagnose::blocked(&d.obs().pods, None) {
        message.push_str(&format!("; {}", blocked.detail));
    }
    let tail = pods::rank0(d.job(), &d.obs().pods).map(|rank0| {
        Tail::Fetch(LogSource {
            pod: rank0.pod,
            container: rank0.container.to_string(),
        })
    });
    let kind = d.training_kind();
    d.fail(reason::DEADLINE_EXCEEDED, &message, Some(kind));
    d.event(Severity::Warning, reason::DEADLINE_EXCEEDED, message, tail);
    Flow::Stop
}
