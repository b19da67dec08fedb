//! The phase machine: observed world → next status, children to create or change, events.
//!
//! [`decide`] is a pure function. The controller fetches what [`needs`] asks for, calls
//! [`decide`], and carries out the [`Decision`]. Events are derived from status transitions, and
//! status is durable, so a restarted operator re-deciding the same world publishes nothing new.

pub mod bounds;
mod conditions;
mod decider;
pub mod diagnose;
mod pod_metadata;
pub mod pods;
mod progress;

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::ResourceExt;

use crate::api::{FineTuneJob, FineTuneJobStatus, LogCursor, Phase, PyTorchJob, condition};

use crate::logs::progress::Record;

use crate::names;
use crate::names::{PREPROCESS_CONTAINER, PYTORCH_CONTAINER, master_pod_name, preprocess_job_name};
pub use conditions::is_true as condition_is_true;
use decider::Decider;

/// What the controller found for one child.
#[derive(Clone, Debug, PartialEq)]
pub enum Lookup<T> {
    /// Not fetched: [`needs`] said this state does not depend on it.
    Skipped,
    Absent,
    /// The cluster does not serve this kind at all (e.g. no training operator installed).
    KindMissing,
    /// An object with the child's name exists but this FineTuneJob does not control it (no
    /// controller owner reference with its UID). It is never read as ours, changed or deleted.
    Foreign,
    Present(T),
}

impl<T> Lookup<T> {
    pub fn present(&self) -> Option<&T> {
        match self {
            Lookup::Present(t) => Some(t),
            _ => None,
        }
    }
}

/// Whether `meta` names the object with `owner_uid` as its controller: the only test of "ours".
/// Names can be reused by anyone; UIDs cannot.
pub fn controlled_by(meta: &ObjectMeta, owner_uid: Option<&str>) -> bool {
    let Some(owner_uid) = owner_uid else {
        return false;
    };
    meta.owner_references
        .iter()
        .flatten()
        .any(|r| r.controller == Some(true) && r.uid == owner_uid)
}

/// A looked-up child, as ours (`Present`) only when `owner_uid` controls it.
pub fn owned<T>(
    found: Option<T>,
    meta: impl Fn(&T) -> &ObjectMeta,
    owner_uid: Option<&str>,
) -> Lookup<T> {
    match found {
        None => Lookup::Absent,
        Some(child) if controlled_by(meta(&child), owner_uid) => Lookup::Present(child),
        // Another object on its way out (a leftover the garbage collector is deleting): not a
        // conflict, the name is free in a moment.
        Some(child) if meta(&child).deletion_timestamp.is_some() => Lookup::Absent,
        Some(_) => Lookup::Foreign,
    }
}

/// The world as the controller observed it for one FineTuneJob.
#[derive(Clone, Debug)]
pub struct Observed {
    /// Current time, whole seconds (the apiserver stores times at second precision).
    pub now: Time,
    pub preprocess_job: Lookup<Job>,
    pub pytorch_job: Lookup<PyTorchJob>,
    /// Pods labelled with the job's name (preprocess and training pods).
    pub pods: Vec<Pod>,
    /// The rank-0 log's new records, when it was read this time (only while training).
    pub log: Option<LogRead>,
    /// When the rank-0 log is next due to be read (only while training).
    pub next_log_read: Option<Duration>,
    /// The last lines of the failing container, when [`failure_source`] names one.
    pub failure_log: Option<String>,
    /// The message of the newest `FailedCreate` event of a child without pods, when
    /// [`needs_failed_create`] asked for it.
    pub child_failed_create: Option<String>,
    /// Another live FineTuneJob that writes to the same output directory (only looked for
    /// before this job has created anything), from [`output_in_use_by`].
    pub output_in_use_by: Option<String>,
}

impl Observed {
    /// A world of the given time and children, without pods or logs.
    pub fn new(now: Time, preprocess_job: Lookup<Job>, pytorch_job: Lookup<PyTorchJob>) -> Self {
        Observed {
            now,
            preprocess_job,
            pytorch_job,
            pods: Vec::new(),
            log: None,
            next_log_read: None,
            failure_log: None,
            child_failed_create: None,
            output_in_use_by: None,
        }
    }
}

/// New lines of the rank-0 log, read this time.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LogRead {
    /// What the new lines said.
    pub records: Vec<Record>,
    /// Where the next read starts.
    pub cursor: Option<LogCursor>,
}

/// Which parts of the world a reconcile must fetch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Needs {
    pub preprocess_job: bool,
    pub pytorch_job: bool,
    pub pods: bool,
    /// The rank-0 log, for progress: only while training.
    pub log: bool,
}

/// The two children.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChildKind {
    Preprocess,
    PyTorchJob,
}

/// A change to a child.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChildAction {
    Create(ChildKind),
    SetSuspended(ChildKind, bool),
    Delete(ChildKind),
}

/// Event severity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    Normal,
    Warning,
}

/// Where to read the log lines that end an event's note.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogSource {
    pub pod: String,
    pub container: String,
}

/// The log lines that end an event's note.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tail {
    /// Read the last lines of this container when publishing.
    Fetch(LogSource),
    /// Lines already read.
    Text(String),
}

/// An event to publish on the FineTuneJob.
#[derive(Clone, Debug, PartialEq)]
pub struct PlannedEvent {
    pub severity: Severity,
    pub reason: &'static str,
    /// The event's action. The recorder merges events of one reason and action within six
    /// minutes, keeping the first note, so events that repeat a reason with news (one per epoch,
    /// one per checkpoint) carry a distinct action.
    pub action: String,
    pub note: String,
    pub tail: Option<Tail>,
}

/// UIDs of the children this FineTuneJob controls, as observed. Every change to a child is made
/// on exactly that object (a UID precondition), never on another that took its name meanwhile.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OwnedChildren {
    pub preprocess: Option<String>,
    pub pytorch_job: Option<String>,
}

impl OwnedChildren {
    pub fn of(observed: &Observed) -> Self {
        OwnedChildren {
            preprocess: observed
                .preprocess_job
                .present()
                .and_then(|j| j.metadata.uid.clone()),
            pytorch_job: observed
                .pytorch_job
                .present()
                .and_then(|p| p.metadata.uid.clone()),
        }
    }

    pub fn uid(&self, kind: ChildKind) -> Option<&str> {
        match kind {
            ChildKind::Preprocess => self.preprocess.as_deref(),
            ChildKind::PyTorchJob => self.pytorch_job.as_deref(),
        }
    }
}

impl PlannedEvent {
    /// A Warning without log lines, its action the reason.
    pub fn warning(reason: &'static str, note: String) -> Self {
        PlannedEvent {
            severity: Severity::Warning,
            reason,
            action: reason.to_string(),
            note,
            tail: None,
        }
    }
}

/// What to do after observing the world.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    /// The status to write; the controller patches it only when it differs from the current.
    pub status: FineTuneJobStatus,
    pub actions: Vec<ChildAction>,
    pub events: Vec<PlannedEvent>,
    /// Reconcile again after this long even if nothing changes (a deadline, a missing kind).
    pub requeue_after: Option<Duration>,
    /// The children the actions apply to.
    pub owned: OwnedChildren,
}

/// Event reasons. Distinct per phase, so the event recorder's 6-minute deduplication (keyed on
/// the reason, not the note) never hides a new message.
pub mod reason {
    pub const PREPROCESS_STARTED: &str = "PreprocessStarted";
    pub const PREPROCESS_SUCCEEDED: &str = "PreprocessSucceeded";
    pub const PREPROCESS_FAILED: &str = "PreprocessFailed";
    pub const TRAINING_STARTED: &str = "TrainingStarted";
    pub const TRAINING_SUCCEEDED: &str = "TrainingSucceeded";
    pub const TRAINING_FAILED: &str = "TrainingFailed";
    pub const DEADLINE_EXCEEDED: &str = "DeadlineExceeded";
    pub const SUSPENDED: &str = "Suspended";
    pub const RESUMED: &str = "Resumed";
    pub const CANCELLED: &str = "Cancelled";
    /// Status-only reasons (no event of their own).
    pub const CHILD_DELETED: &str = "ChildDeleted";
    pub const CHILD_REJECTED: &str = "ChildRejected";
    /// An object with a child's name exists and is not controlled by the FineTuneJob.
    pub const CHILD_CONFLICT: &str = "ChildConflict";
    /// Stalled: the apiserver forbids creating a child (RBAC, quota, admission).
    pub const CREATE_FORBIDDEN: &str = "CreateForbidden";
    /// Another live FineTuneJob writes to the same output directory.
    pub const OUTPUT_IN_USE: &str = "OutputInUse";
    pub const PYTORCHJOB_NOT_INSTALLED: &str = "PyTorchJobNotInstalled";
    pub const QUEUED: &str = "Queued";
    /// Phase reason while Kueue holds an admitted PyTorchJob suspended (preempted, evicted).
    pub const SUSPENDED_BY_QUEUE: &str = "SuspendedByQueue";
    /// The spec holds what Kubernetes would refuse on a pod (e.g. a bad label key). Also an
    /// event (Warning).
    pub const INVALID_SPEC: &str = "InvalidSpec";
    /// Warning events when the Stalled condition turns true.
    pub const PREPROCESS_STALLED: &str = "PreprocessStalled";
    pub const TRAINING_STALLED: &str = "TrainingStalled";
    /// Stalled condition reasons besides the diagnoses of blocked pods.
    pub const PROGRESS_DEADLINE_EXCEEDED: &str = "ProgressDeadlineExceeded";
    pub const PROGRESSING: &str = "Progressing";
    /// Stalled: a child has created no pod within the grace period.
    pub const NO_PODS: &str = "NoPods";
}

/// How often to look again while the PyTorchJob kind is missing.
const KIND_MISSING_RETRY: Duration = Duration::from_secs(60);

/// What a reconcile must fetch, given the job's current status.
pub fn needs(job: &FineTuneJob) -> Needs {
    let status = job.status.clone().unwrap_or_default();
    if status.phase.is_some_and(Phase::is_finished) {
        // A finished job costs no reads, unless its children are to be deleted.
        let cleanup = job.spec.cleanup.delete_children_after_finished;
        return Needs {
            preprocess_job: cleanup && status.preprocess_job.is_some(),
            pytorch_job: cleanup && status.pytorch_job.is_some(),
            pods: false,
            log: false,
        };
    }
    let initialized = conditions::is_true(&status.conditions, condition::INITIALIZED);
    Needs {
        preprocess_job: job.spec.preprocess.is_some() && !initialized,
        pytorch_job: true,
        pods: true,
        log: status.phase == Some(Phase::Training) && status.pytorch_job.is_some(),
    }
}

/// The container whose last lines explain a failure in `observed`, if one failed: the failed
/// preprocess pod, or the failing training pod (the rank-0 pod first).
pub fn failure_source(job: &FineTuneJob, observed: &Observed) -> Option<LogSource> {
    let name = job.name_any();
    if let Some(pre) = observed.preprocess_job.present()
        && decider::job_condition(pre, "Failed")
    {
        let job_pods = pods::of_job(&observed.pods, &preprocess_job_name(&name));
        return pods::failed_container(&job_pods, PREPROCESS_CONTAINER, "").map(|t| LogSource {
            pod: t.pod,
            container: t.container,
        });
    }
    let ptj = observed.pytorch_job.present()?;
    let master = master_pod_name(&name);
    let pod = if ptj.condition_true("Failed").is_some() {
        pods::failed_container(&observed.pods, PYTORCH_CONTAINER, &master)
            .map(|t| t.pod)
            .unwrap_or(master)
    } else {
        pods::restarting_too_often(&observed.pods, PYTORCH_CONTAINER, job.spec.backoff_limit)?.pod
    };
    Some(LogSource {
        pod,
        container: PYTORCH_CONTAINER.to_string(),
    })
}

/// A running child without pods, as [`podless_child`] sees it.
pub(crate) enum PodlessChild<'a> {
    /// Within the grace period: look again after this long.
    Wait(Duration),
    /// Past it, and it never had a pod.
    Stalled {
        kind: &'static str,
        name: String,
        meta: &'a ObjectMeta,
    },
}

/// The running child of the current phase when it has created no pod: pod security admission
/// refused them, a quota is used up, a ServiceAccount or PriorityClass is missing. The grace
/// period counts from the child's creation or, when later, the start of its current run (a
/// resume; for the PyTorchJob also a re-admission by Kueue), and a child that ever had pods is
/// never podless: the gap while a pod is recreated is not a stall.
pub(crate) fn podless_child<'a>(
    job: &FineTuneJob,
    status: &FineTuneJobStatus,
    observed: &'a Observed,
) -> Option<PodlessChild<'a>> {
    let name = job.name_any();
    let (kind, child, meta, started) = match status.phase? {
        Phase::Initializing => {
            let pre = observed.preprocess_job.present()?;
            let pre_status = pre.status.as_ref();
            let counted = pre_status.map_or(0, |s| {
                s.active.unwrap_or(0) + s.succeeded.unwrap_or(0) + s.failed.unwrap_or(0)
            });
            let suspended = pre.spec.as_ref().and_then(|s| s.suspend).unwrap_or(false);
            let child = preprocess_job_name(&name);
            if suspended
                || counted > 0
                || decider::job_condition(pre, "Complete")
                || decider::job_condition(pre, "Failed")
                || !pods::of_job(&observed.pods, &child).is_empty()
            {
                return None;
            }
            // The Job controller resets startTime when a suspended Job resumes.
            let started = pre_status.and_then(|s| s.start_time.clone());
            ("Job", child, &pre.metadata, started)
        }
        Phase::Training => {
            let ptj = observed.pytorch_job.present()?;
            let suspended = ptj.suspended();
            if suspended
                || ptj.ever_had_pods()
                || ptj.condition_true("Succeeded").is_some()
                || ptj.condition_true("Failed").is_some()
                || observed
                    .pods
                    .iter()
                    .any(|p| p.labels().get(names::TRAINING_JOB_LABEL) == Some(&name))
            {
                return None;
            }
            (
                "PyTorchJob",
                name,
                &ptj.metadata,
                status.training_start_time.clone(),
            )
        }
        _ => return None,
    };
    let created = meta.creation_timestamp.as_ref()?;
    let reference = started.map_or(created.0, |s| s.0.max(created.0));
    let age = observed.now.0.as_second() - reference.as_second();
    let grace = diagnose::BLOCKED_GRACE.as_secs() as i64;
    Some(if age < grace {
        PodlessChild::Wait(Duration::from_secs((grace - age).unsigned_abs()))
    } else {
        PodlessChild::Stalled {
            kind,
            name: child,
            meta,
        }
    })
}

/// The UID of the child whose events explain why it has no pods ([`podless_child`]), while the
/// job is not already marked Stalled for it: the events are read once per stall.
pub fn needs_failed_create(job: &FineTuneJob, observed: &Observed) -> Option<String> {
    let status = job.status.as_ref()?;
    let already = status.conditions.iter().any(|c| {
        c.type_ == condition::STALLED && c.status == "True" && c.reason == reason::NO_PODS
    });
    if already {
        return None;
    }
    match podless_child(job, status, observed)? {
        PodlessChild::Stalled { meta, .. } => meta.uid.clone(),
        PodlessChild::Wait(_) => None,
    }
}

/// The name of another live FineTuneJob in the namespace that writes to the same directory of
/// the same output claim, and so would overwrite this job's checkpoints and data (or have
/// InstructLab resume from them). Of two jobs created together only the newer one yields: one
/// that already runs (has children), or was created first, keeps the directory.
pub fn output_in_use_by<'a>(
    job: &FineTuneJob,
    others: impl IntoIterator<Item = &'a FineTuneJob>,
) -> Option<String> {
    let name = job.name_any();
    let dir = job.spec.output_dir(&name);
    let key = |j: &FineTuneJob| {
        (
            j.metadata.creation_timestamp.clone().map(|t| t.0),
            j.name_any(),
        )
    };
    others
        .into_iter()
        .filter(|o| o.metadata.uid != job.metadata.uid && o.namespace() == job.namespace())
        .filter(|o| o.metadata.deletion_timestamp.is_none())
        .filter(|o| {
            let status = o.status.clone().unwrap_or_default();
            let started = status.preprocess_job.is_some() || status.pytorch_job.is_some();
            !status.phase.is_some_and(Phase::is_finished) && (started || key(o) < key(job))
        })
        .find(|o| {
            o.spec.output.claim_name == job.spec.output.claim_name
                && o.spec.output_dir(&o.name_any()) == dir
        })
        .map(|o| o.name_any())
}

/// Decides the next status, child actions and events for `job` in the world `observed`.
pub fn decide(job: &FineTuneJob, observed: &Observed) -> Decision {
    let mut d = Decider::new(job, observed);
    d.run();
    d.finish()
}

/// The first status of a new job, written together with the finalizer, so that `kubectl get`
/// shows Pending before anything starts.
pub fn accepted(job: &FineTuneJob, now: &Time) -> FineTuneJobStatus {
    let observed = Observed::new(now.clone(), Lookup::Skipped, Lookup::Skipped);
    let mut d = Decider::new(job, &observed);
    d.new.observed_generation = d.generation;
    d.new.start_time = Some(now.clone());
    d.set_phase(Phase::Pending, "Accepted", "Accepted; starting");
    d.set_condition(
        condition::ACCEPTED,
        true,
        "Accepted",
        "The spec was accepted",
    );
    d.finish().status
}

/// Status and event after the apiserver refused to create a child (e.g. an invalid toleration
/// that admission of the FineTuneJob could not check). Retrying would not help, so the job fails.
pub fn child_rejected(
    job: &FineTuneJob,
    kind: ChildKind,
    message: &str,
    now: &Time,
) -> (FineTuneJobStatus, PlannedEvent) {
    let observed = Observed::new(now.clone(), Lookup::Skipped, Lookup::Skipped);
    let mut d = Decider::new(job, &observed);
    let (what, event_reason) = match kind {
        ChildKind::Preprocess => ("preprocess Job", reason::PREPROCESS_FAILED),
        ChildKind::PyTorchJob => ("PyTorchJob", reason::TRAINING_FAILED),
    };
    let text = format!("the API server refused to create the {what}: {message}");
    d.fail(reason::CHILD_REJECTED, &text, None);
    (d.finish().status, PlannedEvent::warning(event_reason, text))
}

/// The decision after creating a child found an object of its name that is not ours (created
/// after the watch cache was read, or without our label so the cache never saw it).
pub fn child_conflict(job: &FineTuneJob, kind: ChildKind, now: &Time) -> Decision {
    let mut observed = Observed::new(now.clone(), Lookup::Skipped, Lookup::Skipped);
    match kind {
        ChildKind::Preprocess => observed.preprocess_job = Lookup::Foreign,
        ChildKind::PyTorchJob => observed.pytorch_job = Lookup::Foreign,
    }
    decide(job, &observed)
}

/// Status and event while the apiserver forbids creating a child (RBAC, a ResourceQuota, an
/// admission webhook). Unlike a rejection this may pass later (the quota is raised, the policy
/// fixed), so the job does not fail: it is marked Stalled, with the apiserver's words, and the
/// controller retries with backoff. The text carries no counter, so retries write nothing new.
pub fn child_forbidden(
    job: &FineTuneJob,
    kind: ChildKind,
    message: &str,
    now: &Time,
) -> (FineTuneJobStatus, Option<PlannedEvent>) {
    let observed = Observed::new(now.clone(), Lookup::Skipped, Lookup::Skipped);
    let mut d = Decider::new(job, &observed);
    let was_stalled = conditions::is_true(&d.new.conditions, condition::STALLED);
    let (what, event_reason) = match kind {
        ChildKind::Preprocess => ("preprocess Job", reason::PREPROCESS_STALLED),
        ChildKind::PyTorchJob => ("PyTorchJob", reason::TRAINING_STALLED),
    };
    let text = format!(
        "the API server forbids creating the {what} (retrying with backoff): {}",
        bounds::bounded(message, bounds::MAX_MESSAGE_BYTES / 2)
    );
    d.set_condition(condition::STALLED, true, reason::CREATE_FORBIDDEN, &text);
    d.new.reason = Some(reason::CREATE_FORBIDDEN.to_string());
    d.new.message = Some(text.clone());
    let event = (!was_stalled).then(|| PlannedEvent::warning(event_reason, text));
    (d.finish().status, event)
}

#[cfg(test)]
mod tests;
