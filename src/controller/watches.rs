//! The watches: FineTuneJobs, their children and their pods, one watch per kind, filling the
//! caches reconciles read from and triggering reconciles.

use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::runtime::controller::{self, Config as ControllerConfig};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{Controller, WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use tracing::{debug, info, warn};

use super::{Context, Error, Settings, cache, error_policy, kind_installed, reconcile};
use crate::api::{Backend, FineTuneJob, PyTorchJob, TrainJob};
use crate::names::JOB_NAME_LABEL;
use crate::telemetry::JobRow;

pub(super) fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
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
/// pods and PyTorchJobs were most of a restarted operator's peak memory (see the restart memory
/// figures in BENCHMARKS.md). More, smaller lists cost no measurable time.
const LIST_PAGE_SIZE: u32 = 50;

/// How often the cluster is asked whether a training kind it does not serve is served now.
const KIND_WATCH_RETRY: Duration = Duration::from_secs(60);

/// The stream `watch` makes, started once the cluster serves `backend`'s kind: a watch of a kind
/// that is not served only fails, again and again, and most clusters have one of the two
/// backends only. Installing the other later is noticed within [`KIND_WATCH_RETRY`]; until then
/// its children are read from the apiserver.
fn when_served<S: futures::Stream + Send + 'static>(
    ctx: Arc<Context>,
    backend: Backend,
    watch: impl FnOnce() -> S + Send + 'static,
) -> impl futures::Stream<Item = S::Item> + Send + 'static {
    futures::stream::once(async move {
        let mut said = false;
        loop {
            match kind_installed(&ctx.client, backend).await {
                Ok(true) => break,
                Ok(false) if !said => {
                    said = true;
                    info!(
                        kind = backend.as_str(),
                        "training kind not served; jobs with this spec.backend wait for it"
                    );
                }
                Ok(false) => {}
                Err(e) => debug!(kind = backend.as_str(), error = %e, "discovery failed"),
            }
            tokio::time::sleep(KIND_WATCH_RETRY).await;
        }
        info!(kind = backend.as_str(), "watching the training kind");
        watch()
    })
    .flatten()
}

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
    // Children and pods carry our label; selecting on it keeps the watches small. The same
    // watches that trigger reconciles fill the caches reconciles read from.
    let listing = watcher::Config::default()
        .any_semantic()
        .page_size(LIST_PAGE_SIZE);
    let ours = listing.clone().labels(JOB_NAME_LABEL);
    let pytorch_jobs = cache::PackedStore::default();
    let train_jobs = cache::PackedStore::default();
    let preprocess_jobs = cache::PackedStore::default();
    let pods = cache::PodIndex::default();
    let (store, watch) = (pytorch_jobs.clone(), api::<PyTorchJob>(&client, ns));
    let config = ours.clone();
    let pytorch_stream = when_served(ctx.clone(), Backend::PyTorchJob, move || {
        watcher(watch, config)
            .default_backoff()
            .modify(cache::slim_pytorch_job)
            .inspect_ok(move |event| store.apply(event))
            .touched_objects()
    });
    let (store, watch) = (train_jobs.clone(), api::<TrainJob>(&client, ns));
    let config = ours.clone();
    let train_stream = when_served(ctx.clone(), Backend::TrainJob, move || {
        watcher(watch, config)
            .default_backoff()
            .modify(cache::slim_train_job)
            .inspect_ok(move |event| store.apply(event))
            .touched_objects()
    });
    let store = preprocess_jobs.clone();
    let preprocess_stream = watcher(api::<Job>(&client, ns), ours.clone())
        .default_backoff()
        .modify(cache::slim_job)
        .inspect_ok(move |event| store.apply(event))
        .touched_objects();
    let index = pods.clone();
    let pod_stream = watcher(api::<Pod>(&client, ns), ours)
        .default_backoff()
        .modify(cache::slim_pod)
        .inspect_ok(move |event| index.apply(event))
        .touched_objects();
    let _ = ctx.caches.set(cache::Caches {
        pytorch_jobs,
        train_jobs,
        preprocess_jobs,
        pods,
    });
    let (job_store, job_writer) = reflector::store();
    // Settled jobs leave the controller's store for a few figures each (see
    // `cache::FinishedJobs`); with them go the per-job maps that only live jobs need.
    let finished = cache::FinishedJobs::default();
    let (divert, forget) = (finished.clone(), ctx.clone());
    let job_stream = watcher(jobs, listing)
        .default_backoff()
        .modify(cache::slim_finetune_job)
        .try_filter_map(move |event| {
            let event = divert.divert(event, |job| forget.forget(&ObjectRef::from(job)));
            std::future::ready(Ok(event))
        })
        .reflect(job_writer)
        .applied_objects();
    let _ = ctx.job_store.set(job_store.clone());
    let controller = Controller::for_stream(job_stream, job_store)
        .owns_stream(preprocess_stream)
        .owns_stream(pytorch_stream)
        .owns_stream(train_stream)
        .watches_stream(pod_stream, |pod: Pod| {
            let name = pod.labels().get(JOB_NAME_LABEL)?.clone();
            Some(ObjectRef::new(&name).within(&pod.namespace()?))
        })
        .with_config(
            ControllerConfig::default()
                .concurrency(settings.concurrency)
                .debounce(settings.debounce),
        );
    let live = controller.store();
    ctx.metrics.watch_jobs(Arc::new(move || {
        let mut rows: Vec<_> = live.state().iter().map(|job| JobRow::of(job)).collect();
        rows.extend(finished.rows());
        rows
    }));
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
