//! Test fixtures, shared by the unit tests, the apiserver mock, the end-to-end suite and the
//! benchmarks: one way to write a FineTuneJob or a pod for a test, so that a new required field
//! changes one place.
//!
//! Not part of the operator's behaviour; public only so that the test and bench targets (which
//! are separate crates) can use it.
//!
//! ```
//! use finetune_operator::testing::{JobFixture, PodFixture};
//! let job = JobFixture::new("ft").preprocess(serde_json::json!({})).queue("team-a").build();
//! assert_eq!(job.spec.queue_name(), Some("team-a"));
//! let pod = PodFixture::new("ft-master-0").terminated(137, "OOMKilled").restarts(2).build();
//! assert_eq!(pod.metadata.name.as_deref(), Some("ft-master-0"));
//! ```

use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};

use crate::api::{FineTuneJob, FineTuneJobStatus};
use crate::names::{FINALIZER, PYTORCH_CONTAINER};

/// A FineTuneJob under construction, kept as JSON so that tests can also send it as it is (the
/// e2e suite applies it; the CEL tests validate it).
///
/// `new` gives the smallest valid spec: image `img`, claims `m`, `d` (path `train.jsonl`) and
/// `o`, one epoch; everything else takes the CRD defaults.
#[derive(Clone, Debug)]
pub struct JobFixture {
    value: Value,
}

impl JobFixture {
    pub fn new(name: &str) -> Self {
        JobFixture {
            value: json!({
                "apiVersion": "finetune.dev/v1alpha1",
                "kind": "FineTuneJob",
                "metadata": {"name": name},
                "spec": {
                    "image": "img",
                    "model": {"claimName": "m", "path": ""},
                    "dataset": {"claimName": "d", "path": "train.jsonl"},
                    "output": {"claimName": "o"},
                    "training": {"epochs": 1},
                },
            }),
        }
    }

    /// As the apiserver would hand it to the operator: namespace `ns`, uid `uid-1`,
    /// generation 1, resourceVersion 10.
    pub fn stored(self) -> Self {
        self.meta(json!({"namespace": "ns", "uid": "uid-1", "generation": 1,
                         "resourceVersion": "10"}))
    }

    /// With the operator's finalizer.
    pub fn finalized(self) -> Self {
        self.meta(json!({"finalizers": [FINALIZER]}))
    }

    /// Merges `fields` into metadata (a null removes a field).
    pub fn meta(mut self, fields: Value) -> Self {
        merge(&mut self.value["metadata"], fields);
        self
    }

    pub fn namespace(self, ns: &str) -> Self {
        self.meta(json!({"namespace": ns}))
    }

    /// Merges `fields` into the spec, one level deep: `{"training": {...}}` replaces `training`.
    pub fn spec(mut self, fields: Value) -> Self {
        merge(&mut self.value["spec"], fields);
        self
    }

    /// Sets the spec value at a JSON pointer below `spec` (e.g. `/training/epochs`), creating
    /// objects on the way.
    pub fn set(mut self, pointer: &str, value: Value) -> Self {
        set_pointer(&mut self.value["spec"], pointer, value);
        self
    }

    pub fn image(self, image: &str) -> Self {
        self.spec(json!({"image": image}))
    }

    pub fn epochs(self, epochs: u32) -> Self {
        self.set("/training/epochs", json!(epochs))
    }

    pub fn preprocess(self, preprocess: Value) -> Self {
        self.spec(json!({"preprocess": preprocess}))
    }

    /// Queued in the Kueue LocalQueue `queue`.
    pub fn queue(self, queue: &str) -> Self {
        self.set("/scheduling/queueName", json!(queue))
    }

    pub fn suspend(self, suspend: bool) -> Self {
        self.spec(json!({"suspend": suspend}))
    }

    pub fn nodes(self, nodes: u32, gpus_per_node: u32) -> Self {
        self.spec(json!({"resources": {"nodes": nodes, "gpusPerNode": gpus_per_node}}))
    }

    /// Annotations of the pods (the fake cluster's kwok reads its play from them).
    pub fn pod_annotations(self, annotations: Value) -> Self {
        self.set("/podTemplate/annotations", annotations)
    }

    pub fn status(mut self, status: Option<&FineTuneJobStatus>) -> Self {
        match status {
            Some(s) => self.value["status"] = serde_json::to_value(s).expect("a status serializes"),
            None => {
                if let Some(obj) = self.value.as_object_mut() {
                    obj.remove("status");
                }
            }
        }
        self
    }

    /// The status as JSON, for fields a test wants to write by hand.
    pub fn status_json(mut self, status: Value) -> Self {
        self.value["status"] = status;
        self
    }

    pub fn json(&self) -> Value {
        self.value.clone()
    }

    pub fn build(&self) -> FineTuneJob {
        serde_json::from_value(self.value.clone()).expect("the fixture is a valid FineTuneJob")
    }
}

/// A pod with one container, for the decision table and the mock: running unless told otherwise.
#[derive(Clone, Debug)]
pub struct PodFixture {
    value: Value,
}

impl PodFixture {
    /// A pod in namespace `ns` with one running `pytorch` container, created at
    /// 2026-11-26T10:00:00Z.
    pub fn new(name: &str) -> Self {
        PodFixture {
            value: json!({
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": name, "namespace": "ns", "labels": {},
                             "creationTimestamp": "2026-11-26T10:00:00Z"},
                "status": {"containerStatuses": [{
                    "name": PYTORCH_CONTAINER, "ready": false, "restartCount": 0, "image": "img",
                    "imageID": "", "state": {"running": {}},
                }]},
            }),
        }
    }

    /// Merges `fields` into metadata.
    pub fn meta(mut self, fields: Value) -> Self {
        merge(&mut self.value["metadata"], fields);
        self
    }

    pub fn uid(self, uid: &str) -> Self {
        self.meta(json!({"uid": uid}))
    }

    /// Adds labels.
    pub fn labels(mut self, labels: Value) -> Self {
        merge(&mut self.value["metadata"]["labels"], labels);
        self
    }

    /// Controlled by the object of `kind` with `uid`.
    pub fn controlled_by(self, kind: &str, name: &str, uid: &str) -> Self {
        let api_version = if kind == "Job" {
            "batch/v1"
        } else {
            "kubeflow.org/v1"
        };
        self.meta(
            json!({"ownerReferences": [{"apiVersion": api_version, "kind": kind,
            "name": name, "uid": uid, "controller": true}]}),
        )
    }

    /// Names the container (default `pytorch`).
    pub fn container(mut self, name: &str) -> Self {
        self.value["status"]["containerStatuses"][0]["name"] = json!(name);
        self
    }

    /// The container's last state: terminated with `exit_code` and `reason`.
    pub fn terminated(mut self, exit_code: i32, reason: &str) -> Self {
        self.value["status"]["containerStatuses"][0]["state"] =
            json!({"terminated": {"exitCode": exit_code, "reason": reason}});
        self
    }

    pub fn restarts(mut self, restarts: i32) -> Self {
        self.value["status"]["containerStatuses"][0]["restartCount"] = json!(restarts);
        self
    }

    /// The pod's phase (`Pending`, `Running`, `Succeeded`, `Failed`).
    pub fn phase(mut self, phase: &str) -> Self {
        self.value["status"]["phase"] = json!(phase);
        self
    }

    /// Merges `fields` into the pod's status (conditions, a waiting state, ...).
    pub fn status(mut self, fields: Value) -> Self {
        merge(&mut self.value["status"], fields);
        self
    }

    pub fn json(&self) -> Value {
        self.value.clone()
    }

    pub fn build(&self) -> Pod {
        serde_json::from_value(self.value.clone()).expect("the fixture is a valid Pod")
    }
}

/// Shallow merge: each key of `patch` replaces the one in `target`; a null removes it.
fn merge(target: &mut Value, patch: Value) {
    if !target.is_object() {
        *target = json!({});
    }
    if let (Value::Object(t), Value::Object(p)) = (target, patch) {
        for (k, v) in p {
            if v.is_null() {
                t.remove(&k);
            } else {
                t.insert(k, v);
            }
        }
    }
}

/// Sets `value` at the JSON `pointer` below `target`, creating objects on the way.
pub fn set_pointer(target: &mut Value, pointer: &str, value: Value) {
    let mut at = target;
    let mut keys: Vec<&str> = pointer.trim_start_matches('/').split('/').collect();
    let last = keys.pop().unwrap_or_default();
    for key in keys {
        if !at.get(key).is_some_and(Value::is_object) {
            at[key] = json!({});
        }
        at = &mut at[key];
    }
    at[last] = value;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixtures_build_and_set_what_they_say() {
        let job = JobFixture::new("ft")
            .stored()
            .finalized()
            .epochs(3)
            .set("/model/path", json!("granite"))
            .build();
        assert_eq!(job.metadata.uid.as_deref(), Some("uid-1"));
        assert_eq!(job.metadata.finalizers, Some(vec![FINALIZER.to_string()]));
        assert_eq!(job.spec.training.epochs, 3);
        assert_eq!(job.spec.model.path, "granite");
        let pod = PodFixture::new("p")
            .controlled_by("Job", "ft-preprocess", "u")
            .container("preprocess")
            .terminated(1, "Error")
            .phase("Failed")
            .build();
        let status = pod.status.unwrap();
        assert_eq!(status.phase.as_deref(), Some("Failed"));
        let container = &status.container_statuses.unwrap()[0];
        assert_eq!(container.name, "preprocess");
        assert_eq!(
            container
                .state
                .as_ref()
                .unwrap()
                .terminated
                .as_ref()
                .unwrap()
                .exit_code,
            1
        );
    }
}
