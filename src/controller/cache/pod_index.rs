//! The pods of each FineTuneJob, indexed from the pod watch.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::runtime::watcher;

use super::packed::Packed;
use crate::names::JOB_NAME_LABEL;

/// Pods by namespace and FineTuneJob (their `finetune.dev/job-name` label), kept from the pod
/// watch. Unlike a plain store it answers "the pods of this job" without a scan.
#[derive(Clone, Default)]
pub struct PodIndex {
    inner: Arc<RwLock<IndexState>>,
}

/// Pods by (namespace, job name), then by pod name; packed, see [`Packed`].
type PodsByJob = HashMap<(String, String), HashMap<String, Packed<Pod>>>;

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
                if let (Some((job, name)), Some(packed)) = (key_of(pod), Packed::pack(pod)) {
                    state.pods.entry(job).or_default().insert(name, packed);
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
                if let (Some((job, name)), Some(packed), Some(relist)) =
                    (key_of(pod), Packed::pack(pod), state.relist.as_mut())
                {
                    relist.entry(job).or_default().insert(name, packed);
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
                .map(|pods| pods.values().filter_map(Packed::unpack).collect())
                .unwrap_or_default(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, job: &str) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": name, "namespace": "ns",
            "labels": {JOB_NAME_LABEL: job}}}))
        .unwrap()
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
}
