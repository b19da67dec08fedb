//! The reconcile loop, as a pipeline: fetch (what `status::needs` asks for, caches first) →
//! decide (pure, `status::decide`) → act (children, then status, then events) → requeue. A
//! deleted FineTuneJob takes the same shape through `status::deletion`.
//!
//! - [`Context`] and [`Settings`] (here): what every reconcile shares.
//! - `watches`: the watches that fill the caches and trigger reconciles ([`run`]).
//! - `reconcile`: one reconcile ([`reconcile`]) and the retry policy ([`error_policy`]).
//! - `fetch`, `follow`: reading the world and the rank-0 log; `cache`, `discovery`: what is kept
//!   between reconciles.
//! - `act`, `deletion`, `finalizer`, `events`: carrying out a decision.

mod act;
mod cache;
mod deletion;
mod discovery;
mod error;
mod events;
mod fetch;
mod finalizer;
mod follow;
mod reconcile;
mod watches;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::Client;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef};

pub use discovery::kind_installed;
/// What the caches keep of each object, for the memory benchmark (`benches/cache_memory.rs`).
#[doc(hidden)]
pub mod cache_layout {
    pub use super::cache::{
        FinishedJobs, Packed, PackedStore, PodIndex, slim_finetune_job, slim_pod, slim_pytorch_job,
    };
}
pub use error::Error;
pub use reconcile::{error_policy, reconcile};
pub use watches::run;

use crate::api::FineTuneJob;
use crate::telemetry::Metrics;

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    /// One recorder for the process: its cache deduplicates repeated events.
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    /// Consecutive failures per object, for exponential retry backoff.
    failures: Mutex<HashMap<ObjectRef<FineTuneJob>, u32>>,
    /// The rank-0 logs being followed, one per training job.
    followers: follow::Followers,
    /// The children and pods the controller's watches hold; unset (every read goes to the
    /// apiserver) until [`run`] starts them.
    caches: OnceLock<cache::Caches>,
    /// The operator's own last write of each FineTuneJob, until the cache holds it.
    written: cache::Written,
    /// When discovery last found each training kind.
    kinds_seen: discovery::KindsSeen,
    /// The JobSet of each of our TrainJobs.
    jobsets: cache::JobSetUids,
    /// The FineTuneJobs the controller watches, to find another live job writing to the same
    /// output directory; unset until [`run`] starts the watch.
    job_store: OnceLock<reflector::Store<FineTuneJob>>,
    /// Whether Event notes end with the last log lines (see [`Context::with_log_tails`]).
    log_tails: bool,
    /// Where events go once composed: sent by their own task, or, without it, by the
    /// reconcile itself (see [`Context::with_background_events`]).
    event_queue: Option<events::EventQueue>,
    /// The reconcile clock (see [`Context::now`]).
    clock: Clock,
}

/// Where a reconcile reads the time: the system clock, or a fixed one in tests.
pub type Clock = Arc<dyn Fn() -> Time + Send + Sync>;

/// The current time at whole seconds, as the apiserver stores it.
pub fn system_now() -> Time {
    let ts = jiff::Timestamp::now();
    Time(jiff::Timestamp::from_second(ts.as_second()).expect("a current timestamp is in range"))
}

impl Context {
    /// `progress_interval`: the least time between two reads of a job's log, and so between
    /// two progress writes to its status.
    pub fn new(
        client: Client,
        reporter: Reporter,
        metrics: Arc<Metrics>,
        progress_interval: Duration,
    ) -> Self {
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            metrics,
            failures: Mutex::default(),
            followers: follow::Followers::new(progress_interval),
            caches: OnceLock::new(),
            written: cache::Written::default(),
            kinds_seen: discovery::KindsSeen::default(),
            jobsets: cache::JobSetUids::default(),
            job_store: OnceLock::new(),
            log_tails: true,
            event_queue: None,
            clock: Arc::new(system_now),
        }
    }

    /// Reads the time from `clock` instead of the system clock (tests).
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The time decisions are made at: whole seconds, because the apiserver stores times so and
    /// a status compared with its stored copy must not differ in a fraction.
    pub fn now(&self) -> Time {
        (self.clock)()
    }

    /// Sends events from a task of their own, after the reconcile that planned them has moved
    /// on, instead of within it (the unit tests keep them in the reconcile, where the order of
    /// requests is fixed). Must be called within a tokio runtime.
    pub fn with_background_events(mut self) -> Self {
        self.event_queue = Some(events::EventQueue::start(self.recorder.clone()));
        self
    }

    /// At most `reads_per_second` rank-0 log reads a second over all training jobs: beyond
    /// `progress_interval × reads_per_second` jobs, each job's log is read less often than the
    /// interval ([`follow::spacing`]).
    pub fn with_log_read_budget(mut self, reads_per_second: u32) -> Self {
        self.followers = self.followers.with_budget(reads_per_second);
        self
    }

    /// Whether Event notes end with the failing container's last log lines (redacted; the
    /// default). Off, events carry no log line at all.
    pub fn with_log_tails(mut self, on: bool) -> Self {
        self.log_tails = on;
        self
    }
}

impl Context {
    /// Drops everything kept per object for a job that is gone, so that the per-object maps
    /// stay as large as the set of live jobs.
    fn forget(&self, job: &ObjectRef<FineTuneJob>) {
        self.followers.forget(job);
        self.written.forget(job);
        self.jobsets.forget(job);
        self.failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(job);
    }
}

/// Settings of the controller loop.
#[derive(Clone)]
pub struct Settings {
    /// Watch only this namespace; all namespaces when None.
    pub namespace: Option<String>,
    /// Reconciles running at once.
    pub concurrency: u16,
    /// Wait this long after a change before reconciling, to batch bursts of pod updates.
    pub debounce: Duration,
    /// The client of the watches: a watch is silent while nothing changes, so it cannot take
    /// the read timeout of the context's client (see [`crate::client`]).
    pub watch_client: Client,
}

#[cfg(test)]
mod tests;
