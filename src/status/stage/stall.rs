//! The Stalled condition: pods that cannot start, a child that has created no pod, no new
//! training step within progressDeadlineSeconds, or a child the apiserver forbids creating. An
//! alarm, not a failure: a Warning marks the moment it turns true, and the condition clears
//! when the job moves again. Pure.

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::ResourceExt;

use crate::api::{FineTuneJob, FineTuneJobStatus, Phase, PyTorchJob, TrainJob, condition};
use crate::children::{Child, ChildKind, TrainingJob};
use crate::status::decider::Decider;
use crate::status::decision::{ChildAction, Severity};
use crate::status::reason::{self, Reason};
use crate::status::world::Observed;
use crate::status::{conditions, diagnose, pods};

/// A child the apiserver forbade before is being created now: the Stalled condition that
/// said so is over, whatever the phase (a queued job stays Pending).
pub(in crate::status) fn creation_allowed(d: &mut Decider) {
    let forbidden = conditions::true_for(
        &d.status().conditions,
        condition::STALLED,
        reason::CREATE_FORBIDDEN,
    )
    .is_some();
    // Created now, or found created (the status write after the create was lost).
    let created = d
        .actions()
        .iter()
        .any(|a| matches!(a, ChildAction::Create(_)))
        || d.obs().preprocess_job.present().is_some()
        || d.obs().training.present().is_some();
    if forbidden && created {
        d.set_condition(
            condition::STALLED,
            false,
            reason::PROGRESSING,
            "The API server allowed creating the child",
        );
    }
}

/// Pods that cannot start, a child without pods, or no new step within
/// progressDeadlineSeconds.
pub(in crate::status) fn stalled(d: &mut Decider) {
    let kind = match d.status().phase {
        Some(Phase::Initializing) => ChildKind::Preprocess,
        Some(Phase::Training) => d.training_kind(),
        _ => return,
    };
    let job_pods = match kind {
        ChildKind::Preprocess => pods::of::<Job>(&d.obs().pods, d.name()),
        ChildKind::PyTorchJob => pods::of::<PyTorchJob>(&d.obs().pods, d.name()),
        ChildKind::TrainJob => pods::of::<TrainJob>(&d.obs().pods, d.name()),
    };
    let verdict = match diagnose::blocked(&job_pods, Some(d.now())) {
        Some(blocked) => Some((blocked.reason, blocked.detail)),
        None => no_pods(d).or_else(|| progress_overdue(d)),
    };
    let was_stalled = conditions::is_true(&d.status().conditions, condition::STALLED);
    match verdict {
        Some((why, message)) => {
            d.set_condition(condition::STALLED, true, why, &message);
            if !was_stalled {
                d.event(Severity::Warning, reason::stalled(kind), message, None);
            }
        }
        // Only a job that was ever stalled carries the condition.
        None if d
            .status()
            .conditions
            .iter()
            .any(|c| c.type_ == condition::STALLED) =>
        {
            d.set_condition(
                condition::STALLED,
                false,
                reason::PROGRESSING,
                "The pods run and training makes progress",
            );
        }
        None => {}
    }
}

/// A child that has created no pod within [`diagnose::BLOCKED_GRACE`] ([`podless_child`]).
/// The child's `FailedCreate` event says why; the message is kept once set, so it does not
/// change while the stall lasts.
fn no_pods(d: &mut Decider) -> Option<(Reason, String)> {
    let (kind, name) = match podless_child(d.job(), d.status(), d.obs())? {
        PodlessChild::Wait(after) => {
            d.requeue_at_most(Some(after));
            return None;
        }
        PodlessChild::Stalled { kind, name, .. } => (kind, name),
    };
    if let Some(c) =
        conditions::true_for(&d.status().conditions, condition::STALLED, reason::NO_PODS)
    {
        return Some((reason::NO_PODS, c.message.clone()));
    }
    let grace = diagnose::BLOCKED_GRACE.as_secs();
    let api_kind = kind.api_kind();
    let mut message = format!("{api_kind} {name} has created no pod in {grace}s");
    match &d.obs().child_failed_create {
        Some(why) => message.push_str(&format!(": {why}")),
        None => message.push_str(&format!(
            "; `kubectl describe {} {name}` shows why",
            api_kind.to_lowercase()
        )),
    }
    Some((reason::NO_PODS, message))
}

/// With progressDeadlineSeconds: how long training has gone without a new step, when that
/// is too long. Otherwise it asks to look again when the deadline would pass.
fn progress_overdue(d: &mut Decider) -> Option<(Reason, String)> {
    let limit = d.job().spec.progress_deadline_seconds?;
    let status = d.status();
    // Between attempts nothing can progress; the clock restarts with the next attempt.
    if status.phase != Some(Phase::Training) || reason::between_attempts(status.reason.as_deref()) {
        return None;
    }
    // The progress's updateTime moves only when a step (or checkpoint) is read.
    // The last step, or the start of the current run (a resume, a re-admission) if later.
    let last = [
        status.progress.as_ref().and_then(|p| p.update_time.clone()),
        status.training_start_time.clone(),
    ]
    .into_iter()
    .flatten()
    .max_by_key(|t| t.0)?;
    let quiet = d.now().0.as_second() - last.0.as_second();
    if quiet < limit {
        d.requeue_at_most(Some(Duration::from_secs((limit - quiet) as u64)));
        return None;
    }
    Some((
        reason::PROGRESS_DEADLINE_EXCEEDED,
        // The time of the last step, not a running count of seconds: the message must stay
        // the same from one reconcile to the next, or a stalled job is rewritten each time.
        format!(
            "no new training step in the rank-0 log since {} (progressDeadlineSeconds {limit})",
            last.0
        ),
    ))
}

/// A running child without pods, as [`podless_child`] sees it.
pub(in crate::status) enum PodlessChild<'a> {
    /// Within the grace period: look again after this long.
    Wait(Duration),
    /// Past it, and it never had a pod.
    Stalled {
        kind: ChildKind,
        name: String,
        meta: &'a ObjectMeta,
    },
}

/// The running child of the current phase when it has created no pod: pod security admission
/// refused them, a quota is used up, a ServiceAccount or PriorityClass is missing. The grace
/// period counts from the child's creation or, when later, the start of its current run (a
/// resume; for the PyTorchJob also a re-admission by Kueue), and a child that ever had pods is
/// never podless: the gap while a pod is recreated is not a stall.
pub(in crate::status) fn podless_child<'a>(
    job: &FineTuneJob,
    status: &FineTuneJobStatus,
    observed: &'a Observed,
) -> Option<PodlessChild<'a>> {
    let name = job.name_any();
    match status.phase? {
        Phase::Initializing => {
            let pre = observed.preprocess_job.present()?;
            // The Job controller resets startTime when a suspended Job resumes.
            let started = pre.status.as_ref().and_then(|s| s.start_time.clone());
            podless(pre, &name, observed, started)
        }
        Phase::Training => {
            let started = status.training_start_time.clone();
            match observed.training.present()? {
                TrainingJob::PyTorchJob(ptj) => podless(ptj, &name, observed, started),
                TrainingJob::TrainJob(tj) => podless(tj, &name, observed, started),
            }
        }
        _ => None,
    }
}

/// Whether `child` of the FineTuneJob `job_name` is podless, its current run started at
/// `started` (when known).
fn podless<'a, C: Child>(
    child: &'a C,
    job_name: &str,
    observed: &Observed,
    started: Option<Time>,
) -> Option<PodlessChild<'a>> {
    if child.is_suspended()
        || child.ever_had_pods()
        || child.finished().is_some()
        || !pods::of::<C>(&observed.pods, job_name).is_empty()
    {
        return None;
    }
    let meta = child.meta();
    let created = meta.creation_timestamp.as_ref()?;
    let reference = started.map_or(created.0, |s| s.0.max(created.0));
    let age = observed.now.0.as_second() - reference.as_second();
    let grace = diagnose::BLOCKED_GRACE.as_secs() as i64;
    Some(if age < grace {
        PodlessChild::Wait(Duration::from_secs((grace - age).unsigned_abs()))
    } else {
        PodlessChild::Stalled {
            kind: C::KIND,
            name: C::name(job_name),
            meta,
        }
    })
}
