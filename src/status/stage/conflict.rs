//! Children that are not ours, or no longer there: an object with a child's name that this
//! FineTuneJob does not control, and a child someone deleted before it finished. Both fail the
//! job; neither is ever touched. Pure.

use k8s_openapi::api::batch::v1::Job;

use crate::api::PyTorchJob;
use crate::children::{Child, ChildKind};

use crate::status::decider::{Decider, Flow};
use crate::status::decision::Severity;
use crate::status::reason;
use crate::status::world::Lookup;

/// An object with a child's name exists and is not ours: never adopt, change or delete it
/// (it may be another team's job); fail with a reason that says what to do.
pub(in crate::status) fn children_conflict(d: &mut Decider) -> Flow {
    let obs = d.obs();
    let (kind, child) = if matches!(obs.preprocess_job, Lookup::Foreign) {
        (ChildKind::Preprocess, Job::name(d.name()))
    } else if matches!(obs.training, Lookup::Foreign) {
        (d.training_kind(), PyTorchJob::name(d.name()))
    } else {
        return Flow::Continue;
    };
    let message = format!(
        "a {} named {child} already exists and is not owned by this FineTuneJob; \
         it is left untouched: delete or rename it, or give this FineTuneJob another name",
        kind.api_kind()
    );
    // A conflict on the training child's name found while preprocessing runs: stop that too.
    let running_preprocess = obs
        .preprocess_job
        .present()
        .is_some_and(|j| j.finished().is_none());
    let stop = (kind.is_training() && running_preprocess).then_some(ChildKind::Preprocess);
    d.fail(reason::CHILD_CONFLICT, &message, stop);
    d.event(Severity::Warning, reason::failed(kind), message, None);
    Flow::Stop
}

/// A child we created has disappeared before the job finished: someone else deleted it.
pub(in crate::status) fn children_deleted(d: &mut Decider) -> Flow {
    let obs = d.obs();
    let preprocess_gone = d.status().preprocess_job.is_some()
        && !d.initialized()
        && matches!(obs.preprocess_job, Lookup::Absent);
    let training_gone = d.status().training_child().is_some()
        && matches!(obs.training, Lookup::Absent | Lookup::KindMissing);
    let (kind, what, child) = if preprocess_gone {
        (
            ChildKind::Preprocess,
            "the preprocess Job",
            Job::name(d.name()),
        )
    } else if training_gone {
        (d.training_kind(), "the", d.training_child())
    } else {
        return Flow::Continue;
    };
    let message = format!("{what} {child} was deleted before it finished");
    d.fail(reason::CHILD_DELETED, &message, None);
    d.event(Severity::Warning, reason::failed(kind), message, None);
    Flow::Stop
}
