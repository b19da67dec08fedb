//! What the controller's watches already hold, so that a reconcile reads the apiserver only when
//! the cache cannot answer.
//!
//! - The FineTuneJob: the controller hands over its cached copy; it is used unless it is older
//!   than the operator's own last write of that object ([`Written`]).
//! - The children and pods: kept from the same watches that trigger reconciles ([`Caches`]).
//!   A child missing from the cache is looked up in the apiserver: it may just have been created,
//!   and deciding "deleted" on a stale cache would fail the job.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ContainerStatus, Pod, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;

use crate::api::{FineTuneJob, PyTorchJob};
use crate::names::{BATCH_JOB_LABELS, JOB_NAME_LABEL, TRAINING_JOB_LABEL};

/// The watch caches of the children and pods, set when the controller starts.
pub struct Caches {
    pub pytorch_jobs: Store<PyTorchJob>,
    pub preprocess_jobs: Store<Job>,
    pub pods: PodIndex,
}

impl Caches {
    pub fn pytorch_job(&self, ns: &str, name: &str) -> Option<PyTorchJob> {
        let key = ObjectRef::new(name).within(ns);
        self.pytorch_jobs.get(&key).map(|p| (*p).clone())
    }

    pub fn preprocess_job(&self, ns: &str, name: &str) -> Option<Job> {
        let key = ObjectRef::new(name).within(ns);
        self.preprocess_jobs.get(&key).map(|j| (*j).clone())
    }
}

/// Pods by namespace and FineTuneJob (their `finetune.dev/job-name` label), kept from the pod
/// watch. Unlike a plain store it answers "the pods of this job" without a scan.
#[derive(Clone, Default)]
pub struct PodIndex {
    inner: Arc<RwLock<IndexState>>,
}

// What is kept of each cached object: what decisions read and nothing else, since the caches hold
// every job the operator has ever seen (10,000 finished jobs are 10,000 of each). Decisions read a
// pod's names, a few labels, uid, times and status; a child's metadata (its ownerReferences map it
// to its FineTuneJob), status and suspension. Pod specs, pod templates and managedFields are most
// of an object's size.

/// The pod labels decisions read: ours (the index key), the training operator's job name (the
/// training pods) and the batch Job's (the preprocess pods).
const POD_LABELS_READ: [&str; 4] = [
    JOB_NAME_LABEL,
    TRAINING_JOB_LABEL,
    BATCH_JOB_LABELS[0],
    BATCH_JOB_LABELS[1],
];

/// A pod as cached: names, the labels decisions read, uid, controller reference, times, and its
/// phase, conditions and container states.
pub fn slim_pod(pod: &mut Pod) {
    let m = std::mem::take(&mut pod.metadata);
    pod.metadata = ObjectMeta {
        name: m.name,
        namespace: m.namespace,
        uid: m.uid,
        creation_timestamp: m.creation_timestamp,
        deletion_timestamp: m.deletion_timestamp,
        // The controller reference only: it tells our children's pods from others with our label.
        owner_references: m.owner_references.map(|refs| {
            refs.into_iter()
                .filter(|r| r.controller == Some(true))
                .collect()
        }),
        labels: m.labels.map(|labels| {
            labels
                .into_iter()
                .filter(|(k, _)| POD_LABELS_READ.contains(&k.as_str()))
                .collect()
        }),
        ..ObjectMeta::default()
    };
    pod.spec = None;
    pod.status = pod.status.take().map(|s| PodStatus {
        phase: s.phase,
        reason: s.reason,
        message: s.message,
        start_time: s.start_time,
        conditions: s.conditions,
        container_statuses: s.container_statuses.map(|statuses| {
            statuses
                .into_iter()
                .map(|c| ContainerStatus {
                    name: c.name,
                    ready: c.ready,
                    started: c.started,
                    restart_count: c.restart_count,
                    state: c.state,
                    last_state: c.last_state,
                    ..ContainerStatus::default()
                })
                .collect()
        }),
        ..PodStatus::default()
    });
}

/// A PyTorchJob as cached: without its replica specs (its run policy and status stay). An
/// emptied map, not emptied templates: a map node holds room for 11 replica specs inline, about
/// 20 KiB even for the one Master.
pub fn slim_pytorch_job(job: &mut PyTorchJob) {
    job.metadata.managed_fields = None;
    job.spec.pytorch_replica_specs.clear();
}

/// A batch Job as cached: its pod template emptied (suspend and status stay).
pub fn slim_job(job: &mut Job) {
    job.metadata.managed_fields = None;
    if let Some(spec) = job.spec.as_mut() {
        spec.template = Default::default();
    }
}

/// A FineTuneJob as cached: without managedFields and annotations, which no decision reads
/// (`kubectl apply` keeps a second copy of the whole object in an annotation).
pub fn slim_finetune_job(job: &mut FineTuneJob) {
    job.metadata.managed_fields = None;
    job.metadata.annotations = None;
    job.metadata.labels = None;
}

/// Pods by (namespace, job name), then by pod name.
type PodsByJob = HashMap<(String, String), HashMap<String, Arc<Pod>>>;

#[derive(Default)]
struct IndexState {
    ready: bool,
    pods: PodsByJob,
    /// The objects of a relist, swapped in when it completes.
    relist: Option<PodsByJob>,
}

fn key_of(pod: &Pod) -> Option<((String, String), String)> {
    let job = pod.labels().get(JOB_NAME_LABEL)?.clone();
    Some(((pod.namespace()?, job), pod.name_any()))
}

impl PodIndex {
    /// Applies one watch event.
    pub fn apply(&self, event: &watcher::Event<Pod>) {
        let mut state = self
            .inner
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match event {
            watcher::Event::Apply(pod) => {
                if let Some((job, name)) = key_of(pod) {
                    state
                        .pods
                        .entry(job)
                        .or_default()
                        .insert(name, Arc::new(pod.clone()));
                }
            }
            watcher::Event::Delete(pod) => {
                if let Some((job, name)) = key_of(pod)
                    && let Some(pods) = state.pods.get_mut(&job)
                {
                    pods.remove(&name);
                    if pods.is_empty() {
                        state.pods.remove(&job);
                    }
                }
            }
            watcher::Event::Init => state.relist = Some(HashMap::new()),
            watcher::Event::InitApply(pod) => {
                if let (Some((job, name)), Some(relist)) = (key_of(pod), state.relist.as_mut()) {
                    relist
                        .entry(job)
                        .or_default()
                        .insert(name, Arc::new(pod.clone()));
                }
            }
            watcher::Event::InitDone => {
                if let Some(relist) = state.relist.take() {
                    state.pods = relist;
                }
                state.ready = true;
            }
        }
    }

    /// The pods of one FineTuneJob, or None before the first list completed.
    pub fn of(&self, ns: &str, job: &str) -> Option<Vec<Pod>> {
        let state = self
            .inner
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !state.ready {
            return None;
        }
        let key = (ns.to_string(), job.to_string());
        Some(
            state
                .pods
                .get(&key)
                .map(|pods| pods.values().map(|p| (**p).clone()).collect())
                .unwrap_or_default(),
        )
    }
}

/// The resourceVersion each FineTuneJob had after the operator's own last write, until the
/// controller's cache has caught up with it. resourceVersions are only compared for equality.
#[derive(Default)]
pub struct Written {
    versions: Mutex<HashMap<ObjectRef<FineTuneJob>, String>>,
}

/// Whether the cached copy can be decided on.
#[derive(Debug, PartialEq, Eq)]
pub enum Freshness {
    /// It holds the operator's last write (or the operator wrote nothing since it started).
    Current,
    /// The cache has not yet caught up with the operator's last write: read the object.
    Stale,
}

impl Written {
    pub fn check(&self, cached: &FineTuneJob) -> Freshness {
        let key = ObjectRef::from(cached);
        let mut versions = self
            .versions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match versions.get(&key) {
            None => Freshness::Current,
            Some(v) if cached.resource_version().as_ref() == Some(v) => {
                versions.remove(&key);
                Freshness::Current
            }
            Some(_) => Freshness::Stale,
        }
    }

    /// Remembers the version a write (or a read after one) returned: the cache is trusted again
    /// once it holds exactly this version.
    pub fn record(&self, object: &FineTuneJob) {
        if let Some(version) = object.resource_version() {
            self.versions
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(ObjectRef::from(object), version);
        }
    }

    pub fn forget(&self, key: &ObjectRef<FineTuneJob>) {
        self.versions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(key);
    }
}

/// How long a positive answer of discovery ("the PyTorchJob kind is served") is reused when a
/// PyTorchJob is not found: a burst of new jobs asks once, and a removed kind is noticed soon.
pub const KIND_CHECK_TTL: Duration = Duration::from_secs(10);

/// When discovery last said the PyTorchJob kind is served.
#[derive(Default)]
pub struct KindSeen(Mutex<Option<Instant>>);

impl KindSeen {
    pub fn recent(&self) -> bool {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .is_some_and(|t| t.elapsed() < KIND_CHECK_TTL)
    }

    pub fn set(&self, installed: bool) {
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = installed.then(Instant::now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::children::Child;
    use crate::testing::{JobFixture, PodFixture};
    use serde_json::json;

    fn pod(name: &str, job: &str) -> Pod {
        PodFixture::new(name)
            .labels(json!({JOB_NAME_LABEL: job}))
            .build()
    }

    fn names(pods: Option<Vec<Pod>>) -> Vec<String> {
        let mut n: Vec<String> = pods.unwrap().iter().map(|p| p.name_any()).collect();
        n.sort();
        n
    }

    #[test]
    fn pod_index_answers_per_job_after_the_first_list() {
        let index = PodIndex::default();
        assert!(index.of("ns", "a").is_none(), "not ready before the list");
        index.apply(&watcher::Event::Init);
        index.apply(&watcher::Event::InitApply(pod("a-master-0", "a")));
        index.apply(&watcher::Event::InitApply(pod("b-master-0", "b")));
        index.apply(&watcher::Event::InitDone);
        index.apply(&watcher::Event::Apply(pod("a-worker-0", "a")));
        assert_eq!(names(index.of("ns", "a")), ["a-master-0", "a-worker-0"]);
        index.apply(&watcher::Event::Delete(pod("a-master-0", "a")));
        assert_eq!(names(index.of("ns", "a")), ["a-worker-0"]);
        assert!(index.of("other", "a").unwrap().is_empty());
        // A relist replaces everything.
        index.apply(&watcher::Event::Init);
        index.apply(&watcher::Event::InitApply(pod("b-master-0", "b")));
        index.apply(&watcher::Event::InitDone);
        assert!(index.of("ns", "a").unwrap().is_empty());
        assert_eq!(names(index.of("ns", "b")), ["b-master-0"]);
    }

    #[test]
    fn slim_objects_keep_what_decisions_read() {
        let mut p: Pod = serde_json::from_value(json!({
            "metadata": {"name": "a-master-0", "namespace": "ns", "uid": "u",
                         "creationTimestamp": "2026-11-26T10:00:00Z",
                         "labels": {JOB_NAME_LABEL: "a", "training.kubeflow.org/job-name": "a",
                                    "training.kubeflow.org/replica-type": "master"},
                         "annotations": {"x": "y"},
                         "ownerReferences": [{"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob",
                                              "name": "a", "uid": "o", "controller": true},
                                             {"apiVersion": "v1", "kind": "ConfigMap",
                                              "name": "other", "uid": "c"}],
                         "managedFields": [{"manager": "kwok"}]},
            "spec": {"containers": [{"name": "pytorch"}]},
            "status": {"phase": "Failed", "podIP": "10.0.0.1", "qosClass": "BestEffort",
                       "conditions": [{"type": "PodScheduled", "status": "False",
                                       "reason": "Unschedulable", "message": "0/1 nodes"}],
                       "containerStatuses": [{"name": "pytorch", "image": "i", "imageID": "x",
                           "ready": false, "restartCount": 2,
                           "state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}]}}))
        .unwrap();
        slim_pod(&mut p);
        let kept: serde_json::Value = serde_json::to_value(&p).unwrap();
        assert_eq!(
            kept,
            json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "a-master-0", "namespace": "ns", "uid": "u",
                         "creationTimestamp": "2026-11-26T10:00:00Z",
                         "labels": {JOB_NAME_LABEL: "a", "training.kubeflow.org/job-name": "a"},
                         "ownerReferences": [{"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob",
                                              "name": "a", "uid": "o", "controller": true}]},
            "status": {"phase": "Failed",
                       "conditions": [{"type": "PodScheduled", "status": "False",
                                       "reason": "Unschedulable", "message": "0/1 nodes"}],
                       "containerStatuses": [{"name": "pytorch", "image": "", "imageID": "",
                           "ready": false, "restartCount": 2,
                           "state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}]}})
        );

        let mut job: PyTorchJob = serde_json::from_value(json!({
            "apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob",
            "metadata": {"name": "a", "namespace": "ns"},
            "spec": {"runPolicy": {"suspend": true},
                     "pytorchReplicaSpecs": {"Master": {"replicas": 1,
                        "template": {"spec": {"containers": [{"name": "pytorch"}]}}}}},
            "status": {"conditions": [{"type": "Running", "status": "True"}]}}))
        .unwrap();
        slim_pytorch_job(&mut job);
        assert!(job.spec.pytorch_replica_specs.is_empty());
        assert!(job.condition("Running"));
        assert_eq!(job.spec.run_policy.unwrap().suspend, Some(true));

        // The resourceVersion stays: the freshness check compares it with our last write.
        let mut ft = ftj("7");
        ft.metadata.annotations = Some([("a".to_string(), "b".to_string())].into());
        ft.metadata.labels = Some([("team".to_string(), "x".repeat(63))].into());
        slim_finetune_job(&mut ft);
        assert!(ft.metadata.annotations.is_none());
        assert!(ft.metadata.labels.is_none());
        assert_eq!(ft.resource_version().as_deref(), Some("7"));
        assert_eq!(ft.spec, ftj("7").spec);
    }

    fn ftj(version: &str) -> FineTuneJob {
        JobFixture::new("ft")
            .namespace("ns")
            .meta(json!({"resourceVersion": version}))
            .build()
    }

    #[test]
    fn a_cached_copy_is_trusted_once_it_holds_the_last_write() {
        let written = Written::default();
        assert_eq!(written.check(&ftj("5")), Freshness::Current);
        written.record(&ftj("7"));
        assert_eq!(written.check(&ftj("5")), Freshness::Stale);
        assert_eq!(written.check(&ftj("7")), Freshness::Current);
        // Caught up: later versions (someone else's changes) are trusted.
        assert_eq!(written.check(&ftj("9")), Freshness::Current);
    }
}
