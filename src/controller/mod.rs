//! The reconcile loop: fetch → decide (pure, in `status`) → act → report.

mod act;
mod cache;
mod deletion;
mod error;
mod events;
mod fetch;
mod finalizer;
mod follow;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::runtime::controller::{self, Action, Config as ControllerConfig};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{Controller, WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use tracing::{debug, info, warn};

pub use error::Error;
pub use fetch::pytorchjob_kind_installed;

use crate::api::{FineTuneJob, Phase, PyTorchJob};
use crate::names::JOB_NAME_LABEL;
use crate::status;
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
    kind_seen: cache::KindSeen,
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
            kind_seen: cache::KindSeen::default(),
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

fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Objects per page of a watch's initial list. A page is deserialized whole, pod specs and
/// templates included, before the caches slim each object: with kube's default (500) the pages of
/// pods and PyTorchJobs were most of a restarted operator's peak memory (118–157 MiB against
/// 49 MiB at 50, with 2,000 finished jobs). More, smaller lists cost no measurable time.
const LIST_PAGE_SIZE: u32 = 50;

/// Runs the controller until `shutdown` resolves. Fails at once, with an install hint, when the
/// FineTuneJob CRD is not installed.
pub async fn run(
    ctx: Arc<Context>,
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) -> Result<(), Error> {
    let client = settings.watch_client.clone();
    let ns = settings.namespace.as_deref();
    let jobs: Api<FineTuneJob> = api(&client, ns);
    api::<FineTuneJob>(&ctx.client, ns)
        .list(&ListParams::default().limit(1))
        .await
        .map_err(|source| Error::Kube {
            action: "list_finetunejobs (is the CRD installed? kubectl apply -f crds/)",
            source,
        })?;
    if !pytorchjob_kind_installed(&ctx.client).await? {
        warn!("the kubeflow.org/v1 PyTorchJob kind is not installed; jobs will wait for it");
    }

    // Children and pods carry our label; selecting on it keeps the watches small. The same
    // watches that trigger reconciles fill the caches reconciles read from.
    let listing = watcher::Config::default()
        .any_semantic()
        .page_size(LIST_PAGE_SIZE);
    let ours = listing.clone().labels(JOB_NAME_LABEL);
    let (pytorch_jobs, pytorch_writer) = reflector::store();
    let (preprocess_jobs, preprocess_writer) = reflector::store();
    let pods = cache::PodIndex::default();
    let pytorch_stream = watcher(api::<PyTorchJob>(&client, ns), ours.clone())
        .default_backoff()
        .modify(cache::slim_pytorch_job)
        .reflect(pytorch_writer)
        .touched_objects();
    let preprocess_stream = watcher(api::<Job>(&client, ns), ours.clone())
        .default_backoff()
        .modify(cache::slim_job)
        .reflect(preprocess_writer)
        .touched_objects();
    let index = pods.clone();
    let pod_stream = watcher(api::<Pod>(&client, ns), ours)
        .default_backoff()
        .modify(cache::slim_pod)
        .inspect_ok(move |event| index.apply(event))
        .touched_objects();
    let _ = ctx.caches.set(cache::Caches {
        pytorch_jobs,
        preprocess_jobs,
        pods,
    });
    let (job_store, job_writer) = reflector::store();
    let job_stream = watcher(jobs, listing)
        .default_backoff()
        .modify(cache::slim_finetune_job)
        .reflect(job_writer)
        .applied_objects();
    let _ = ctx.job_store.set(job_store.clone());
    let controller = Controller::for_stream(job_stream, job_store)
        .owns_stream(preprocess_stream)
        .owns_stream(pytorch_stream)
        .watches_stream(pod_stream, |pod: Pod| {
            let name = pod.labels().get(JOB_NAME_LABEL)?.clone();
            Some(ObjectRef::new(&name).within(&pod.namespace()?))
        })
        .with_config(
            ControllerConfig::default()
                .concurrency(settings.concurrency)
                .debounce(settings.debounce),
        );
    ctx.metrics.watch_store(controller.store());
    info!(namespace = ns.unwrap_or("<all>"), "controller started");
    controller
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok((obj, _)) => debug!(object = %obj, "reconciled"),
                // Reconciler failures are logged by `error_policy`, and a reconcile of an
                // object deleted meanwhile is expected; a failing watch or runner is not.
                Err(
                    e @ (controller::Error::ReconcilerFailed(..)
                    | controller::Error::ObjectNotFound(_)),
                ) => debug!(error = %e, "reconcile loop"),
                Err(e) => warn!(error = %e, "controller queue failed; retrying"),
            }
        })
        .await;
    info!("controller stopped");
    Ok(())
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
    if status::is_settled(&cached) {
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
            true => deletion::run(&api, &job, &ctx).await,
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
