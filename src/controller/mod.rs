//! The reconcile loop: fetch → decide (pure, in `status`) → act → report.

mod act;
mod cache;
mod discovery;
mod error;
mod events;
mod fetch;
mod finalizer;
mod follow;
mod watches;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use kube::runtime::controller::Action;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef};
use kube::{Api, Client, ResourceExt};
use tracing::warn;

pub use error::Error;
pub use fetch::pytorchjob_kind_installed;
pub use watches::run;

use crate::api::{FineTuneJob, Phase};
use crate::names;
use crate::status::{self, Lookup, Needs, PlannedEvent, Severity, Tail, reason};
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
    /// When discovery last found the PyTorchJob kind.
    kind_seen: discovery::KindSeen,
    /// The FineTuneJobs the controller watches, to find another live job writing to the same
    /// output directory; unset until [`run`] starts the watch.
    job_store: OnceLock<reflector::Store<FineTuneJob>>,
    /// Whether Event notes end with the last log lines (see [`Context::with_log_tails`]).
    log_tails: bool,
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
            kind_seen: discovery::KindSeen::default(),
            job_store: OnceLock::new(),
            log_tails: true,
        }
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

/// A finished job with nothing left to do costs no API call at all, so a restart with
/// thousands of finished jobs is free. A finished status never regresses, so the cached copy is
/// trustworthy here.
fn settled(job: &FineTuneJob) -> bool {
    let Some(status) = &job.status else {
        return false;
    };
    status.phase.is_some_and(Phase::is_finished)
        && status.observed_generation == job.metadata.generation
        && job.metadata.deletion_timestamp.is_none()
        && finalizer::has_finalizer(job)
        && !job.spec.cleanup.delete_children_after_finished
}

/// Reconciles one FineTuneJob. A panic inside (a bug, whatever input caused it) becomes an error
/// for this object only, retried with backoff: one bad job never stops the process or the others.
pub async fn reconcile(cached: Arc<FineTuneJob>, ctx: Arc<Context>) -> Result<Action, Error> {
    catch_panics(reconcile_job(cached, ctx)).await
}

/// Turns a panic of `reconcile` into [`Error::Panicked`]. The shared state a panic could leave
/// half-written is behind mutexes whose poisoning is ignored on purpose: each holds maps of
/// plain values that stay valid at every step.
async fn catch_panics(
    reconcile: impl Future<Output = Result<Action, Error>>,
) -> Result<Action, Error> {
    use futures::FutureExt;
    match std::panic::AssertUnwindSafe(reconcile).catch_unwind().await {
        Ok(result) => result,
        Err(payload) => Err(Error::Panicked(error::panic_message(payload.as_ref()))),
    }
}

async fn reconcile_job(cached: Arc<FineTuneJob>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.metrics.reconcile_started();
    if settled(&cached) {
        return Ok(Action::await_change());
    }
    let ns = cached.namespace().ok_or(Error::MissingNamespace)?;
    let api: Api<FineTuneJob> = Api::namespaced(ctx.client.clone(), &ns);
    // Deciding on a copy older than our own last status write could repeat an event or a
    // transition. The cached copy is used when it holds that write; otherwise read the object.
    let job = match ctx.written.check(&cached) {
        cache::Freshness::Current => (*cached).clone(),
        cache::Freshness::Stale => {
            let fresh = api
                .get_opt(&cached.name_any())
                .await
                .map_err(|source| Error::Kube {
                    action: "get_finetunejob",
                    source,
                })?;
            match fresh {
                Some(job) => {
                    ctx.written.record(&job);
                    job
                }
                None => {
                    ctx.forget(&ObjectRef::from(cached.as_ref()));
                    return Ok(Action::await_change());
                }
            }
        }
    };

    if job.metadata.deletion_timestamp.is_some() {
        return match finalizer::has_finalizer(&job) {
            true => cleanup(&api, &job, &ctx).await,
            false => Ok(Action::await_change()),
        };
    }
    let job = if finalizer::has_finalizer(&job) {
        job
    } else {
        // The finalizer, and with it the first status (Pending), so that `kubectl get` shows
        // the job before anything starts; then on with the object these writes returned.
        let job = finalizer::add(&api, &job, &ctx).await?;
        if job.status.is_none() {
            act::patch_status(&job, &status::accepted(&job, &fetch::now()), &ctx).await?
        } else {
            job
        }
    };

    let observed = fetch::observe(&ctx, &job, status::needs(&job)).await?;
    let decision = status::decide(&job, &observed);
    let requeue = decision.requeue_after;
    let training = decision.status.phase == Some(Phase::Training);
    act::act(&job, decision, &ctx).await?;
    if !training {
        ctx.followers.forget(&ObjectRef::from(&job));
    }
    ctx.failures
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .remove(&ObjectRef::from(&job));
    Ok(requeue.map_or_else(Action::await_change, Action::requeue))
}

/// Deletion: announce a cancellation (with the last log lines), delete the children in the
/// foreground, wait until they are gone, then let the FineTuneJob go. A missing PyTorchJob kind
/// never blocks this: its lookup says the child is absent.
async fn cleanup(
    api: &Api<FineTuneJob>,
    job: &FineTuneJob,
    ctx: &Context,
) -> Result<Action, Error> {
    let status = job.status.clone().unwrap_or_default();
    let phase = status.phase.unwrap_or(Phase::Pending);
    ctx.followers.forget(&ObjectRef::from(job));
    let needs = Needs {
        preprocess_job: true,
        pytorch_job: true,
        pods: phase == Phase::Initializing,
        log: false,
    };
    let observed = fetch::observe(ctx, job, needs).await?;
    let children: Vec<_> = [
        observed.preprocess_job.present().map(|j| &j.metadata),
        observed.pytorch_job.present().map(|j| &j.metadata),
    ]
    .into_iter()
    .flatten()
    .collect();
    let undeleted = children.iter().any(|m| m.deletion_timestamp.is_none());
    let ever_created = status.preprocess_job.is_some() || status.pytorch_job.is_some();

    // Announce once: when we are about to delete live children, or when there never were any.
    if !phase.is_finished() && (undeleted || !ever_created) {
        let event = cancelled_event(job, phase, &observed);
        if let Err(e) = events::publish(job, &event, ctx, api_namespace(job)?).await {
            warn!(error = %e, "could not publish the Cancelled event");
        }
    }
    if undeleted {
        act::delete_children(job, &status::OwnedChildren::of(&observed), ctx).await?;
    }
    if children.is_empty() {
        finalizer::remove(api, job).await?;
        // The object is about to go: nothing kept for it may outlive it.
        ctx.forget(&ObjectRef::from(job));
        return Ok(Action::await_change());
    }
    // The children's own deletion events wake us; the requeue is a safety net.
    Ok(Action::requeue(Duration::from_secs(5)))
}

fn api_namespace(job: &FineTuneJob) -> Result<&str, Error> {
    job.metadata
        .namespace
        .as_deref()
        .ok_or(Error::MissingNamespace)
}

fn cancelled_event(job: &FineTuneJob, phase: Phase, observed: &status::Observed) -> PlannedEvent {
    let name = job.name_any();
    let tail = match phase {
        Phase::Training | Phase::Suspended
            if matches!(observed.pytorch_job, Lookup::Present(_)) =>
        {
            Some(Tail::Fetch(status::LogSource {
                pod: names::master_pod_name(&name),
                container: names::PYTORCH_CONTAINER.to_string(),
            }))
        }
        Phase::Initializing => {
            let pods = status::pods::of_job(&observed.pods, &names::preprocess_job_name(&name));
            pods.iter()
                .max_by_key(|p| p.metadata.creation_timestamp.clone())
                .map(|p| {
                    Tail::Fetch(status::LogSource {
                        pod: p.name_any(),
                        container: names::PREPROCESS_CONTAINER.to_string(),
                    })
                })
        }
        _ => None,
    };
    PlannedEvent {
        severity: Severity::Normal,
        reason: reason::CANCELLED,
        action: reason::CANCELLED.to_string(),
        note: format!(
            "FineTuneJob deleted while {}; deleting its children",
            phase.as_str()
        ),
        tail,
    }
}

/// Retries with exponential backoff per object: 5 s, 10 s, 20 s … up to 5 minutes.
pub fn error_policy(job: Arc<FineTuneJob>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.reconcile_failed(error.metric_label());
    let mut failures = ctx
        .failures
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let count = failures.entry(ObjectRef::from(job.as_ref())).or_insert(0);
    *count = count.saturating_add(1);
    let delay = Duration::from_secs(5u64.saturating_mul(1 << (*count - 1).min(6)))
        .min(Duration::from_secs(300));
    warn!(job = %job.name_any(), namespace = ?job.namespace(), error = %error, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

#[cfg(test)]
mod tests;
