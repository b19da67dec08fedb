//! The part of Kubeflow Trainer v2's `trainer.kubeflow.org/v1alpha1` TrainJob that the operator
//! writes and reads (Trainer v2.3.0).
//!
//! Hand-written, as the PyTorchJob is: only the fields we use. A TrainJob names a
//! ClusterTrainingRuntime (a JobSet template) and fills in the trainer container; what else a
//! pod needs goes in `runtimePatches`, which allows only some pod fields (see
//! `children::trainjob`).
//!
//! Types only: how the operator reads and suspends a TrainJob is its `children::Child` impl.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, Container, EnvVar, LocalObjectReference, PodSecurityContext, ResourceRequirements,
    Toleration, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use serde::{Deserialize, Serialize};

/// The name of the one replicated job (and of its training container) in the torch runtimes,
/// Trainer's and ours.
pub const NODE: &str = "node";

#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "trainer.kubeflow.org",
    version = "v1alpha1",
    kind = "TrainJob",
    plural = "trainjobs",
    namespaced,
    status = "TrainJobStatus",
    schema = "disabled",
    derive = "PartialEq",
    derive = "Default"
)]
#[serde(rename_all = "camelCase")]
pub struct TrainJobSpec {
    pub runtime_ref: RuntimeRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trainer: Option<Trainer>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub runtime_patches: Vec<RuntimePatch>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspend: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_deadline_seconds: Option<i64>,
}

/// The runtime a TrainJob runs on: a ClusterTrainingRuntime by default.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeRef {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

/// The trainer container: what Trainer sets on the runtime's container `node`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Trainer {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<EnvVar>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_nodes: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_proc_per_node: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources_per_node: Option<ResourceRequirements>,
}

/// One manager's patch of the runtime (`manager` must be domain-prefixed). Others patch too
/// (Kueue adds its own, with the pod fields of its admission): every part of a patch the operator
/// reads back is optional, so that any manager's patch reads.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RuntimePatch {
    pub manager: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training_runtime_spec: Option<TrainingRuntimeSpecPatch>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct TrainingRuntimeSpecPatch {
    pub template: JobSetTemplatePatch,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct JobSetTemplatePatch {
    pub spec: JobSetSpecPatch,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct JobSetSpecPatch {
    pub replicated_jobs: Vec<ReplicatedJobPatch>,
}

/// The patch of one replicated job, by name.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct ReplicatedJobPatch {
    pub name: String,
    pub template: JobTemplatePatch,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct JobTemplatePatch {
    pub spec: JobSpecPatch,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct JobSpecPatch {
    pub template: PodTemplatePatch,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct PodTemplatePatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<MetadataPatch>,
    pub spec: PodSpecPatch,
}

/// Only labels and annotations may be patched.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MetadataPatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// The pod fields a runtime patch may set (Trainer v2.3.0): no priority class, scheduler name,
/// image pull policy or lifecycle hooks.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PodSpecPatch {
    /// Only `name`, `env`, `securityContext` and `volumeMounts` of each container.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub containers: Vec<Container>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volumes: Option<Vec<Volume>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_context: Option<PodSecurityContext>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_secrets: Option<Vec<LocalObjectReference>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub termination_grace_period_seconds: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerations: Option<Vec<Toleration>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TrainJobStatus {
    /// `Suspended`, `Complete`, `Failed`: none while it runs.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// Pods of each replicated job, as JobSet counts them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub jobs_status: Vec<JobStatus>,
}

/// JobSet's count of one replicated job's Jobs.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct JobStatus {
    pub name: String,
    #[serde(default)]
    pub ready: i32,
    #[serde(default)]
    pub succeeded: i32,
    #[serde(default)]
    pub failed: i32,
    #[serde(default)]
    pub active: i32,
    #[serde(default)]
    pub suspended: i32,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_trainjob_with_another_managers_patch_reads() {
        // Kueue's patch of an admitted TrainJob: pod fields without containers or volumes.
        let tj: TrainJob = serde_json::from_value(json!({
            "apiVersion": "trainer.kubeflow.org/v1alpha1", "kind": "TrainJob",
            "metadata": {"name": "ft"},
            "spec": {
                "runtimeRef": {"name": "finetune-instructlab"},
                "runtimePatches": [
                    {"manager": "finetune.dev/operator", "time": "2026-11-30T15:05:53Z"},
                    {"manager": "kueue.x-k8s.io/manager",
                     "trainingRuntimeSpec": {"template": {"metadata": {"labels": {"a": "b"}},
                                                          "spec": {}}}},
                    {"manager": "example.com/other",
                     "trainingRuntimeSpec": {"template": {"spec": {"replicatedJobs": [
                         {"name": "node", "template": {"spec": {"template": {
                             "spec": {"nodeSelector": {"zone": "a"}}}}}}]}}}},
                ],
            },
            "status": {"conditions": [], "jobsStatus": [{"name": "node", "active": 2}]},
        }))
        .unwrap();
        assert_eq!(tj.spec.runtime_patches.len(), 3);
        let other = tj.spec.runtime_patches[2]
            .training_runtime_spec
            .as_ref()
            .unwrap();
        let pod = &other.template.spec.replicated_jobs[0]
            .template
            .spec
            .template
            .spec;
        assert_eq!(pod.node_selector.as_ref().unwrap()["zone"], "a");
    }
}
