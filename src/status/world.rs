//! The world a decision is made in: what the controller found ([`Observed`], [`Lookup`]), what
//! it is asked to read ([`Needs`], then [`NeedsAfter`]), and the one test of which objects are
//! ours ([`controlled_by`], [`owned`]).
//!
//! Pure data and pure functions; the controller fills these in and touches nothing else here.

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

use super::decision::{LogSource, OwnedChildren};
use crate::api::LogCursor;
use crate::children::{Children, TrainingJob};
use crate::logs::progress::Record;
use crate::names::JOBSET_UID_LABEL;

/// What the controller found for one child.
#[derive(Clone, Debug, PartialEq)]
pub enum Lookup<T> {
    /// Not fetched: [`super::needs`] said this state does not depend on it.
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

    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Lookup<U> {
        match self {
            Lookup::Skipped => Lookup::Skipped,
            Lookup::Absent => Lookup::Absent,
            Lookup::KindMissing => Lookup::KindMissing,
            Lookup::Foreign => Lookup::Foreign,
            Lookup::Present(t) => Lookup::Present(f(t)),
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
    /// The training child: a PyTorchJob or a TrainJob, as `spec.backend` says.
    pub training: Lookup<TrainingJob>,
    /// The UID of the JobSet Trainer made of our TrainJob (the TrainJob controls it), when the
    /// controller found one: a TrainJob's pods belong to it.
    pub jobset_uid: Option<String>,
    /// Pods labelled with the job's name (preprocess and training pods) that our children
    /// control ([`Observed::with_own_pods`]).
    pub pods: Vec<Pod>,
    /// The rank-0 log's new records, when it was read this time (only while training).
    pub log: Option<LogRead>,
    /// When the rank-0 log is next due to be read (only while training).
    pub next_log_read: Option<Duration>,
    /// The last lines of the failing container, when [`NeedsAfter::failure_log`] named one.
    pub failure_log: Option<String>,
    /// The message of the newest `FailedCreate` event of a child without pods, when
    /// [`NeedsAfter::failed_create_of`] asked for it.
    pub child_failed_create: Option<String>,
    /// Another live FineTuneJob that writes to the same output directory (only looked for
    /// when [`Needs::other_jobs`]), from [`super::output_in_use_by`].
    pub output_in_use_by: Option<String>,
    /// Why Kueue stopped the PyTorchJob, from its Workload's `Evicted` condition, when
    /// [`NeedsAfter::queue_stop_of`] asked for it and the Workload could be read.
    pub queue_eviction: Option<QueueEviction>,
}

/// The `Evicted` condition of a Kueue Workload: e.g. reason `Preempted`, message `Preempted to
/// accommodate a workload (…) due to prioritization in the ClusterQueue`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueEviction {
    pub reason: String,
    pub message: String,
}

impl Observed {
    /// A world of the given time and children, without pods or logs.
    pub fn new(now: Time, preprocess_job: Lookup<Job>, training: Lookup<TrainingJob>) -> Self {
        Observed {
            now,
            preprocess_job,
            training,
            jobset_uid: None,
            pods: Vec::new(),
            log: None,
            next_log_read: None,
            failure_log: None,
            child_failed_create: None,
            output_in_use_by: None,
            queue_eviction: None,
        }
    }

    /// With the pods among `pods` that our own children control. Pods carry our label, which
    /// anyone can set: a pod that merely has it is never read as ours. A TrainJob's pods are
    /// controlled by the Jobs of its JobSet: they are ours when they carry the UID of the
    /// JobSet our TrainJob controls ([`Observed::jobset_uid`]).
    pub fn with_own_pods(mut self, pods: Vec<Pod>) -> Self {
        let Children {
            preprocess,
            training,
        } = OwnedChildren::of(&self);
        let child_uids: Vec<String> = [preprocess, training].into_iter().flatten().collect();
        let jobset_uid = self.jobset_uid.clone();
        self.pods = pods
            .into_iter()
            .filter(|p| {
                child_uids
                    .iter()
                    .any(|u| controlled_by(&p.metadata, Some(u)))
                    || jobset_uid.as_ref().is_some_and(|uid| {
                        p.metadata
                            .labels
                            .as_ref()
                            .and_then(|l| l.get(JOBSET_UID_LABEL))
                            == Some(uid)
                    })
            })
            .collect();
        self
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

/// Which parts of the world a reconcile must fetch first ([`super::needs`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Needs {
    pub preprocess_job: bool,
    /// The training child, of the backend `spec.backend` names.
    pub training: bool,
    pub pods: bool,
    /// The rank-0 log, for progress: only while training.
    pub log: bool,
    /// The other FineTuneJobs of the watch cache, for one writing to the same output directory:
    /// only before this job has created anything.
    pub other_jobs: bool,
}

/// What to read once the children and pods are known ([`super::needs_after`]): the second round
/// of a fetch, decided here so that the controller only carries it out.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NeedsAfter {
    /// Training has ended: read the rest of the rank-0 log now, whatever the interval, so the
    /// final epoch and checkpoint count before the verdict (only when [`Needs::log`]).
    pub final_log_read: bool,
    /// The container whose last lines explain a failure.
    pub failure_log: Option<LogSource>,
    /// The UID of a child without pods whose `FailedCreate` events say why.
    pub failed_create_of: Option<String>,
    /// The UID of a queued PyTorchJob Kueue just stopped while it trained: its Workload's
    /// `Evicted` condition says why (read once per stop).
    pub queue_stop_of: Option<String>,
}
