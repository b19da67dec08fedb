//! The phase machine: observed world → next status, children to create or change, events.
//!
//! Every decision the operator makes is a pure function here; the controller only reads what
//! they ask for and carries out what they return:
//!
//! - [`needs`] says what to read first, [`needs_after`] what to read once the children and pods
//!   are known (the failing container's last lines, a child's `FailedCreate` events);
//! - [`decide`] turns the [`Observed`] world into a [`Decision`] (status, child actions with the
//!   children built, events); [`accepted`] is the first status of a new job;
//! - [`child_rejected`], [`child_forbidden`] and [`child_conflict`] are the decision when the
//!   apiserver refuses to create a child;
//! - [`deletion`] is what to do for a deleted FineTuneJob; [`is_settled`] says when a job needs
//!   nothing at all.
//!
//! Events are derived from status transitions, and status is durable, so a restarted operator
//! re-deciding the same world publishes nothing new. Every reason is in [`reason`].

pub mod bounds;
mod conditions;
mod decider;
mod decision;
pub mod diagnose;
pub mod outcome;
mod pod_metadata;
pub mod pods;
pub mod reason;
mod stage;
mod world;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;

use crate::api::{FineTuneJob, FineTuneJobStatus, Phase, condition};
use crate::children::ChildKind;
use crate::names::FINALIZER;
use decider::Decider;
use stage::stall::{self, PodlessChild};

pub use decision::{
    AfterDeletion, ChildAction, Decision, Deletion, LogSource, OwnedChildren, PlannedEvent,
    Severity, Tail,
};
pub use reason::Reason;
pub use stage::admission::output_in_use_by;
pub use world::{
    LogRead, Lookup, Needs, NeedsAfter, Observed, QueueEviction, controlled_by, owned,
};

/// What a reconcile must fetch first, given the job as it is.
pub fn needs(job: &FineTuneJob) -> Needs {
    let status = job.status.clone().unwrap_or_default();
    if job.metadata.deletion_timestamp.is_some() {
        // Deletion must see every child, and the preprocess pods for the Cancelled event's
        // last lines.
        return Needs {
            preprocess_job: true,
            training: true,
            pods: status.phase == Some(Phase::Initializing),
            log: false,
            other_jobs: false,
        };
    }
    if is_finished(&status) {
        // A finished job costs no reads, unless its children are to be deleted.
        let cleanup = deletes_children_after_finished(job);
        return Needs {
            preprocess_job: cleanup && status.preprocess_job.is_some(),
            training: cleanup && status.training_child().is_some(),
            ..Needs::default()
        };
    }
    let initialized = conditions::is_true(&status.conditions, condition::INITIALIZED);
    Needs {
        preprocess_job: job.spec.preprocess.is_some() && !initialized,
        training: true,
        pods: true,
        // While training, and while suspended pods stop (their last lines may say an on-demand
        // checkpoint was saved).
        log: status.training_child().is_some()
            && (status.phase == Some(Phase::Training)
                || (status.phase == Some(Phase::Suspended)
                    && status
                        .usage
                        .as_ref()
                        .is_some_and(|u| u.running_since.is_some()))),
        // Only before anything is created: a running job keeps its output directory.
        other_jobs: status.preprocess_job.is_none() && status.training_child().is_none(),
    }
}

/// What to read once the children and pods of `observed` are known.
pub fn needs_after(job: &FineTuneJob, observed: &Observed) -> NeedsAfter {
    // A deleted job's decision is [`deletion`] (its Cancelled event reads its own tail when it
    // is published), and a finished job's only deletes children: neither reads what these would
    // fetch, so fetching it would be requests for nothing.
    let finished = job.status.as_ref().is_some_and(is_finished);
    if job.metadata.deletion_timestamp.is_some() || finished {
        return NeedsAfter::default();
    }
    NeedsAfter {
        // The PyTorchJob ended, or the rank-0 container did (a pod stopped by a suspension,
        // a preemption or an eviction is soon gone, and its last lines with it).
        final_log_read: observed
            .training
            .present()
            .is_some_and(|p| p.finished().is_some())
            || rank0_ended(job, observed),
        failure_log: diagnose::failure_source(job, observed),
        failed_create_of: failed_create_of(job, observed),
        queue_stop_of: stage::training::queue_stop_of(job, observed),
    }
}

/// Whether the rank-0 training container has terminated.
fn rank0_ended(job: &FineTuneJob, observed: &Observed) -> bool {
    pods::rank0_pod(job, &observed.pods)
        .into_iter()
        .filter_map(|(p, container)| {
            let statuses = p.status.as_ref()?.container_statuses.as_ref()?;
            Some(statuses.iter().filter(move |c| c.name == container))
        })
        .flatten()
        .any(|c| c.state.as_ref().is_some_and(|s| s.terminated.is_some()))
}

/// The UID of the child whose events explain why it has no pods, while the job is not already
/// marked Stalled for it: the events are read once per stall.
fn failed_create_of(job: &FineTuneJob, observed: &Observed) -> Option<String> {
    let status = job.status.as_ref()?;
    if conditions::true_for(&status.conditions, condition::STALLED, reason::NO_PODS).is_some() {
        return None;
    }
    match stall::podless_child(job, status, observed)? {
        PodlessChild::Stalled { meta, .. } => meta.uid.clone(),
        PodlessChild::Wait(_) => None,
    }
}

/// Whether the job needs nothing at all: finished, its status current, not deleted, with our
/// finalizer, and no children to delete. Such a job costs no API call, so a restart with
/// thousands of finished jobs is free. A finished status never regresses, so a cached copy is
/// trustworthy here.
pub fn is_settled(job: &FineTuneJob) -> bool {
    let Some(status) = &job.status else {
        return false;
    };
    is_finished(status)
        && status.observed_generation == job.metadata.generation
        && job.metadata.deletion_timestamp.is_none()
        && job.finalizers().iter().any(|f| f == FINALIZER)
        && !deletes_children_after_finished(job)
}

fn is_finished(status: &FineTuneJobStatus) -> bool {
    status.phase.is_some_and(Phase::is_finished)
}

fn deletes_children_after_finished(job: &FineTuneJob) -> bool {
    job.spec.cleanup.delete_children_after_finished
}

/// Decides the next status, child actions and events for `job` in the world `observed`.
pub fn decide(job: &FineTuneJob, observed: &Observed) -> Decision {
    let mut d = Decider::new(job, observed);
    d.run();
    d.finish()
}

/// What to do for a deleted FineTuneJob that still has our finalizer, in the world
/// [`needs`] asked for.
pub fn deletion(job: &FineTuneJob, observed: &Observed) -> Deletion {
    stage::cleanup::deletion(job, observed)
}

/// The first status of a new job, written together with the finalizer, so that `kubectl get`
/// shows Pending before anything starts.
pub fn accepted(job: &FineTuneJob, now: &Time) -> FineTuneJobStatus {
    let observed = Observed::new(now.clone(), Lookup::Skipped, Lookup::Skipped);
    Decider::accepted(job, &observed).finish().status
}

/// The decision after the apiserver refused to create a child (e.g. an invalid toleration that
/// admission of the FineTuneJob could not check). Retrying would not help, so the job fails,
/// with the apiserver's message, and nothing else is done.
pub fn child_rejected(job: &FineTuneJob, kind: ChildKind, message: &str, now: &Time) -> Decision {
    let observed = Observed::new(now.clone(), Lookup::Skipped, Lookup::Skipped);
    Decider::rejected(job, &observed, kind, message).finish()
}

/// The decision after creating a child found an object of its name that is not ours (created
/// after the watch cache was read, or without our label so the cache never saw it).
pub fn child_conflict(job: &FineTuneJob, kind: ChildKind, now: &Time) -> Decision {
    let mut observed = Observed::new(now.clone(), Lookup::Skipped, Lookup::Skipped);
    match kind {
        ChildKind::Preprocess => observed.preprocess_job = Lookup::Foreign,
        ChildKind::PyTorchJob | ChildKind::TrainJob => observed.training = Lookup::Foreign,
    }
    decide(job, &observed)
}

/// The decision while the apiserver forbids creating a child (RBAC, a ResourceQuota, an
/// admission webhook). Unlike a rejection this may pass later (the quota is raised, the policy
/// fixed), so the job does not fail: it is marked Stalled, with the apiserver's words, and the
/// controller retries with backoff. The text carries no counter, so retries write nothing new.
pub fn child_forbidden(job: &FineTuneJob, kind: ChildKind, message: &str, now: &Time) -> Decision {
    let observed = Observed::new(now.clone(), Lookup::Skipped, Lookup::Skipped);
    Decider::forbidden(job, &observed, kind, message).finish()
}

#[cfg(test)]
mod tests;
