//! What the caches keep of each object.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ContainerStatus, Pod, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::api::{FineTuneJob, PyTorchJob, TrainJob};
use crate::names::{
    BATCH_JOB_LABELS, CHECKPOINT_REQUESTED_ANNOTATION, JOB_COMPLETION_INDEX_LABEL, JOB_NAME_LABEL,
    JOBSET_NAME_LABEL, JOBSET_UID_LABEL, TRAINING_JOB_LABEL,
};

// What is kept of each cached object: what decisions read and nothing else, since the caches hold
// every job the operator has ever seen (10,000 finished jobs are 10,000 of each). Decisions read a
// pod's names, a few labels, uid, times and status; a child's metadata (its ownerReferences map it
// to its FineTuneJob), status and suspension. Pod specs, pod templates and managedFields are most
// of an object's size.

/// The pod labels decisions read: ours (the index key), the training operator's job name (the
/// training pods of a PyTorchJob), the batch Job's (the preprocess pods), and JobSet's name,
/// UID and the completion index (the training pods of a TrainJob, and which one is rank 0).
const POD_LABELS_READ: [&str; 7] = [
    JOB_NAME_LABEL,
    TRAINING_JOB_LABEL,
    BATCH_JOB_LABELS[0],
    BATCH_JOB_LABELS[1],
    JOBSET_NAME_LABEL,
    JOBSET_UID_LABEL,
    JOB_COMPLETION_INDEX_LABEL,
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

/// A TrainJob as cached: without its trainer and runtime patches (the pod it runs); suspend and
/// status stay.
pub fn slim_train_job(job: &mut TrainJob) {
    job.metadata.managed_fields = None;
    job.spec.trainer = None;
    job.spec.runtime_patches.clear();
}

/// A batch Job as cached: its pod template emptied (suspend and status stay).
pub fn slim_job(job: &mut Job) {
    job.metadata.managed_fields = None;
    if let Some(spec) = job.spec.as_mut() {
        spec.template = Default::default();
    }
}

/// A FineTuneJob as cached: without managedFields, labels and annotations, which no decision
/// reads (`kubectl apply` keeps a second copy of the whole object in an annotation), except the
/// one annotation a decision does read: when the user asked for a checkpoint.
pub fn slim_finetune_job(job: &mut FineTuneJob) {
    job.metadata.managed_fields = None;
    job.metadata.annotations = job
        .metadata
        .annotations
        .take()
        .and_then(|mut all| all.remove_entry(CHECKPOINT_REQUESTED_ANNOTATION))
        .map(|kept| [kept].into());
    job.metadata.labels = None;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::children::Child;
    use kube::ResourceExt;
    use serde_json::json;

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
        // The one annotation a decision reads stays, alone.
        let asked = (
            CHECKPOINT_REQUESTED_ANNOTATION.to_string(),
            "2026-11-30T06:00:00Z".to_string(),
        );
        ft.metadata.annotations = Some([("a".to_string(), "b".to_string()), asked.clone()].into());
        slim_finetune_job(&mut ft);
        assert_eq!(ft.metadata.annotations, Some([asked].into()));
        assert!(ft.metadata.labels.is_none());
        assert_eq!(ft.resource_version().as_deref(), Some("7"));
        assert_eq!(ft.spec, ftj("7").spec);
    }

    fn ftj(version: &str) -> FineTuneJob {
        crate::testing::JobFixture::new("ft")
            .meta(json!({"namespace": "ns", "resourceVersion": version}))
            .build()
    }
}
