//! Where and how the pods run: nodes and GPUs for training, and, for the pods of both phases,
//! scheduling, extra pod metadata and the user and groups they run as.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Affinity, Toleration};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use super::defaults::{default_gpu_resource_name, default_one};
use crate::api::rules;

/// Nodes and GPUs for training.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeResources {
    /// Training nodes: one Master plus nodes-1 Workers (`--nnodes`).
    #[serde(default = "default_one")]
    #[schemars(range(min = 1, max = 1024))]
    pub nodes: i32,

    /// GPUs per node, requested and limited per pod (`--nproc_per_node`).
    #[serde(default = "default_one")]
    #[schemars(range(min = 1, max = 64))]
    pub gpus_per_node: i32,

    /// Extended resource name of the GPUs.
    #[serde(default = "default_gpu_resource_name")]
    #[schemars(
        length(max = 253),
        regex(
            pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
        )
    )]
    pub gpu_resource_name: String,

    /// CPU per training pod, request = limit. Unset leaves it to the namespace defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<Quantity>,

    /// Memory per training pod, request = limit. Unset leaves it to the namespace defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Quantity>,
}

impl Default for NodeResources {
    fn default() -> Self {
        Self {
            nodes: 1,
            gpus_per_node: 1,
            gpu_resource_name: default_gpu_resource_name(),
            cpu: None,
            memory: None,
        }
    }
}

/// Where the pods run. Applied to both phases.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = rules::priority_class_needs_queue())]
pub struct SchedulingSpec {
    /// Node labels the pods require. Values are label values (at most 63 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("maxProperties" = 64))]
    pub node_selector: Option<BTreeMap<String, String>>,

    /// Taints the pods tolerate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub tolerations: Option<Vec<Toleration>>,

    /// Node and pod affinity of the pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,

    /// PriorityClass of the pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub priority_class_name: Option<String>,

    /// Scheduler of the pods, e.g. a gang scheduler.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub scheduler_name: Option<String>,

    /// Kueue LocalQueue. The PyTorchJob gets label kueue.x-k8s.io/queue-name, is created
    /// suspended, and Kueue decides when it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub queue_name: Option<String>,

    /// Kueue WorkloadPriorityClass of the PyTorchJob (label kueue.x-k8s.io/priority-class):
    /// within its ClusterQueue a job of a higher priority may preempt one of a lower. Only with
    /// queueName.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub workload_priority_class_name: Option<String>,
}

/// Extra pod metadata. Keys under finetune.dev/, training.kubeflow.org/ and kueue.x-k8s.io/
/// are reserved for the operators.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodTemplateOverrides {
    /// Labels added to every pod. Values are label values (at most 63 characters: letters,
    /// digits, '-', '_', '.').
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "label_map")]
    #[x_kube(validation = rules::reserved_label_keys())]
    pub labels: Option<BTreeMap<String, String>>,

    /// Annotations added to every pod, after the default sidecar.istio.io/inject: "false".
    /// Values hold at most 4096 characters (Kubernetes allows 256 KiB of annotations in all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("maxProperties" = 64))]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// A map of label values: bounded, so that the CEL rule on its keys fits the apiserver's cost
/// budget, and each value checked by a plain pattern (no CEL cost at all).
fn label_map(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "nullable": true,
        "maxProperties": 64,
        "additionalProperties": {
            "type": "string",
            "maxLength": 63,
            "pattern": "^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"
        }
    })
}

/// The user and groups of the pods: what a namespace enforcing the restricted Pod Security
/// Standard asks for, and what a non-root user needs to write the output claim. Nothing here can
/// widen the pods' privileges.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = rules::non_root_user())]
pub struct PodSecurityOptions {
    /// Require the containers to run as a user other than root (UID 0): the kubelet refuses to
    /// start a container whose user is root, so an image that runs as root needs runAsUser too.
    /// A namespace enforcing the restricted Pod Security Standard requires true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_as_non_root: Option<bool>,

    /// UID the containers run as, instead of the user the image names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 2147483647))]
    pub run_as_user: Option<i64>,

    /// GID of the containers' primary group, instead of the image's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 2147483647))]
    pub run_as_group: Option<i64>,

    /// GID added to the containers' groups and given ownership of the volumes that support it,
    /// so that a non-root user can write the output claim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 2147483647))]
    pub fs_group: Option<i64>,

    /// More GIDs added to the containers' groups, e.g. one that may read the model claim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), inner(range(min = 0, max = 2147483647)))]
    pub supplemental_groups: Option<Vec<i64>>,
}
