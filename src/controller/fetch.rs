//! Reading the world: the children and pods of one FineTuneJob as [`status::needs`] asks, then
//! what [`status::needs_after`] asks once those are known. Nothing is decided here: this only
//! reads, from the watch caches first.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Event as CoreEvent, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, ListParams, LogParams};
use kube::{Api, Client, ResourceExt};

use tracing::debug;

use super::error::{Error, KubeContext, is_not_found};
use super::follow::read_log;
use super::{Context, discovery};
use crate::api::{Backend, FineTuneJob, PyTorchJob, TrainJob};
use crate::children::{Child, TrainingJob};

use crate::logs::{TAIL_LIMIT_BYTES, TAIL_LINES, next_tail_lines};
use crate::names::{JOB_NAME_LABEL, KUEUE_JOB_UID_LABEL};
use crate::status::{self, LogSource, Lookup, Needs, Observed, QueueEviction};

/// Reads what `needs` asks for (the children, the pods, the new lines of the rank-0 log when
/// due), then what [`status::needs_after`] asks for (the last lines of a failing container, the
/// `FailedCreate` events of a child without pods).
pub async fn observe(ctx: &Context, job: &FineTuneJob, needs: Needs) -> Result<Observed, Error> {
    let client = &ctx.client;
    let ns = job.namespace().ok_or(Error::MissingNamespace)?;
    let name = job.name_any();

    // The watch caches answer first. A child they lack is looked up in the apiserver: the
    // cache may not have seen it created yet, and "absent" would mean "deleted".
    //
    // A child the status does not name was never created (the status is written after the
    // child); unless a crash came in between, in which case applying it again is harmless. So
    // for such a child the cache's "absent" is enough, outside deletion (which must see every
    // child) and, for the PyTorchJob, while discovery has just found its kind.
    let caches = ctx.caches.get();
    let status = job.status.clone().unwrap_or_default();
    let absence_is_enough = caches.is_some() && job.metadata.deletion_timestamp.is_none();
    // A child is ours only when this FineTuneJob's UID controls it: an object that merely has
    // the child's name (another team's job, a leftover of a deleted FineTuneJob of the same
    // name) is `Foreign` and never read as our status, changed or deleted.
    let uid = job.metadata.uid.as_deref();
    let preprocess_job = if needs.preprocess_job {
        let child = Job::name(&name);
        let found = match caches.and_then(|c| c.preprocess_job(&ns, &child)) {
            Some(j) => Some(j),
            None if absence_is_enough && status.preprocess_job.is_none() => None,
            None => {
                let jobs: Api<Job> = Api::namespaced(client.clone(), &ns);
                jobs.get_opt(&child).await.during("get_preprocess_job")?
            }
        };
        status::owned(found, |j| &j.metadata, uid)
    } else {
        Lookup::Skipped
    };

    let backend = job.spec.backend;
    let training = if needs.training {
        let child = PyTorchJob::name(&name);
        let cached = caches.and_then(|c| match backend {
            Backend::PyTorchJob => c.pytorch_job(&ns, &child).map(TrainingJob::from),
            Backend::TrainJob => c.train_job(&ns, &child).map(TrainingJob::from),
        });
        match cached {
            Some(p) => status::owned(Some(p), |p| p.metadata(), uid),
            None if absence_is_enough
                && status.training_child().is_none()
                && ctx.kinds_seen.of(backend).recent() =>
            {
                Lookup::Absent
            }
            None => match backend {
                Backend::PyTorchJob => get_training_job::<PyTorchJob>(ctx, &ns, &child, uid)
                    .await?
                    .map(TrainingJob::from),
                Backend::TrainJob => get_training_job::<TrainJob>(ctx, &ns, &child, uid)
                    .await?
                    .map(TrainingJob::from),
            },
        }
    } else {
        Lookup::Skipped
    };
    // A TrainJob's pods are controlled by the Jobs of the JobSet it controls: they are known as
    // ours by that JobSet's UID.
    let jobset_uid = match training.present() {
        Some(TrainingJob::TrainJob(train_job)) if needs.pods => {
            jobset_uid(ctx, job, &ns, train_job).await?
        }
        _ => None,
    };

    let pods = if needs.pods {
        match caches.and_then(|c| c.pods.of(&ns, &name)) {
            Some(pods) => pods,
            None => {
                let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
                let selector = format!("{JOB_NAME_LABEL}={name}");
                api.list(&ListParams::default().labels(&selector))
                    .await
                    .during("list_pods")?
                    .items
            }
        }
    } else {
        Vec::new()
    };

    let mut observed = Observed::new(ctx.now(), preprocess_job, training);
    observed.jobset_uid = jobset_uid;
    let mut observed = observed.with_own_pods(pods);
    // The second round: what the children and pods show is worth reading.
    let after = status::needs_after(job, &observed);
    if needs.log {
        let (read, next) = ctx
            .followers
            .read(client, job, &observed.pods, after.final_log_read)
            .await;
        observed.log = read;
        observed.next_log_read = Some(next);
    }
    if let Some(source) = &after.failure_log {
        observed.failure_log = log_tail(client, &ns, source).await;
    }
    if needs.other_jobs
        && let Some(store) = ctx.job_store.get()
    {
        let others = store.state();
        observed.output_in_use_by =
            status::output_in_use_by(job, others.iter().map(|j| j.as_ref()));
    }
    if let Some(ptj_uid) = &after.queue_stop_of {
        observed.queue_eviction = queue_eviction(client, &ns, ptj_uid).await;
    }
    if let Some(child_uid) = &after.failed_create_of {
        observed.child_failed_create = failed_create(client, &ns, child_uid).await;
    }
    Ok(observed)
}

/// Why Kueue stopped the PyTorchJob with `ptj_uid`: the `Evicted` condition of its Workload
/// (found by Kueue's job-UID label). Best effort, like the events below: without it the status
/// says Kueue stopped the job without saying why.
async fn queue_eviction(client: &Client, ns: &str, ptj_uid: &str) -> Option<QueueEviction> {
    let resource = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("kueue.x-k8s.io", "v1beta2", "Workload"),
        "workloads",
    );
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &resource);
    let selector = format!("{KUEUE_JOB_UID_LABEL}={ptj_uid}");
    let list = match api.list(&ListParams::default().labels(&selector)).await {
        Ok(list) => list,
        Err(e) => {
            debug!(error = %e, "could not read the Kueue Workload");
            return None;
        }
    };
    list.items.iter().find_map(|w| {
        let conditions = w.data.get("status")?.get("conditions")?.as_array()?;
        let evicted = conditions
            .iter()
            .find(|c| c.get("type").and_then(|t| t.as_str()) == Some("Evicted"))?;
        if evicted.get("status").and_then(|s| s.as_str()) != Some("True") {
            return None;
        }
        let text = |key: &str| {
            let value = evicted
                .get(key)
                .and_then(|v| v.as_str())
                .unwrap_or_default();
            crate::status::bounds::bounded(value, 1024).to_string()
        };
        Some(QueueEviction {
            reason: text("reason"),
            message: text("message"),
        })
    })
}

/// The message of the newest event that says why a child could not create its pods (the Job
/// controller's `FailedCreate`, the training operator's `FailedCreatePod`). Best effort: without
/// it the Stalled message points at `kubectl describe`.
async fn failed_create(client: &Client, ns: &str, child_uid: &str) -> Option<String> {
    let events: Api<CoreEvent> = Api::namespaced(client.clone(), ns);
    let params = ListParams::default()
        .fields(&format!("involvedObject.uid={child_uid}"))
        .limit(50);
    match events.list(&params).await {
        Ok(list) => list
            .items
            .into_iter()
            .filter(|e| {
                e.reason
                    .as_deref()
                    .is_some_and(|r| r.starts_with("FailedCreate"))
            })
            .max_by_key(|e| {
                e.last_timestamp
                    .clone()
                    .or(e.event_time.as_ref().map(|t| Time(t.0)))
            })
            .and_then(|e| e.message),
        Err(e) => {
            debug!(error = %e, "no FailedCreate events");
            None
        }
    }
}

/// The training child from the apiserver. A 404 is also what a missing kind looks like:
/// discovery says which (a recent "installed" answer is reused).
async fn get_training_job<K: Child>(
    ctx: &Context,
    ns: &str,
    name: &str,
    owner_uid: Option<&str>,
) -> Result<Lookup<K>, Error> {
    let api: Api<K> = Api::namespaced(ctx.client.clone(), ns);
    let backend = match K::KIND {
        crate::children::ChildKind::TrainJob => Backend::TrainJob,
        _ => Backend::PyTorchJob,
    };
    match api.get(name).await {
        Ok(p) => Ok(status::owned(Some(p), |p| p.meta(), owner_uid)),
        Err(e) if is_not_found(&e) => discovery::not_found(ctx, backend).await,
        Err(source) => Err(Error::Kube {
            action: "get_training_job",
            source,
        }),
    }
}

/// The UID of the JobSet our TrainJob controls (same name), read once per TrainJob and kept:
/// the relation never changes. None while Trainer has not made it yet, or when the JobSet of
/// that name is not controlled by our TrainJob (its pods are then never read as ours).
async fn jobset_uid(
    ctx: &Context,
    job: &FineTuneJob,
    ns: &str,
    train_job: &TrainJob,
) -> Result<Option<String>, Error> {
    let Some(train_job_uid) = train_job.metadata.uid.as_deref() else {
        return Ok(None);
    };
    let key = kube::runtime::reflector::ObjectRef::from(job);
    if let Some(uid) = ctx.jobsets.get(&key, train_job_uid) {
        return Ok(Some(uid));
    }
    let resource = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("jobset.x-k8s.io", "v1alpha2", "JobSet"),
        "jobsets",
    );
    let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), ns, &resource);
    let Some(jobset) = api
        .get_opt(&train_job.name_any())
        .await
        .during("get_jobset")?
    else {
        return Ok(None);
    };
    if !status::controlled_by(&jobset.metadata, Some(train_job_uid)) {
        return Ok(None);
    }
    let uid = jobset.metadata.uid.clone();
    if let Some(uid) = &uid {
        ctx.jobsets.set(key, train_job_uid, uid);
    }
    Ok(uid)
}

/// The last lines of a container's log, bounded in lines and bytes. An answer that fills the
/// byte limit holds the first bytes of its lines, not the newest: it is asked again with fewer
/// lines ([`next_tail_lines`]). A missing pod or log is not an error: what it would explain is
/// still worth reporting without it.
pub async fn log_tail(client: &Client, ns: &str, source: &LogSource) -> Option<String> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let mut lines = TAIL_LINES;
    let mut tail = None;
    loop {
        let params = LogParams {
            container: Some(source.container.clone()),
            tail_lines: Some(lines),
            limit_bytes: Some(TAIL_LIMIT_BYTES),
            ..Default::default()
        };
        match read_log(&pods, &source.pod, &params).await {
            Ok(bytes) => {
                let fewer = next_tail_lines(lines, bytes.len());
                tail = Some(String::from_utf8_lossy(&bytes).into_owned());
                match fewer {
                    Some(fewer) => lines = fewer,
                    None => return tail,
                }
            }
            Err(e) => {
                debug!(pod = %source.pod, error = %e, "no log tail");
                return tail;
            }
        }
    }
}
