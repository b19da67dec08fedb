//! `FineTuneJob.spec`: what to train, on what, with which resources.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, EnvVar, LocalObjectReference, ResourceRequirements, Toleration,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::rules;
use super::status::FineTuneJobStatus;

/// A fine-tuning run: optional data preprocessing, then InstructLab training on one or more GPU
/// nodes as a Kubeflow PyTorchJob. The spec is immutable once created, except `suspend` and
/// `cleanup`.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "finetune.dev",
    version = "v1alpha1",
    kind = "FineTuneJob",
    plural = "finetunejobs",
    singular = "finetunejob",
    shortname = "ftj",
    category = "finetune",
    namespaced,
    status = "FineTuneJobStatus",
    derive = "PartialEq",
    doc = "A fine-tuning run: optional data preprocessing, then InstructLab training on one or more GPU nodes as a Kubeflow PyTorchJob.",
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase", description = "Pending, Initializing, Training, Succeeded, Failed or Suspended"),
    printcolumn(name = "Progress", type_ = "integer", json_path = ".status.progress.percent", description = "Percent of the training done"),
    printcolumn(name = "Epoch", type_ = "string", json_path = ".status.progress.epochText", description = "Current epoch out of the total, e.g. 2/3"),
    printcolumn(name = "Loss", type_ = "number", json_path = ".status.progress.loss", description = "Most recent training loss"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    printcolumn(name = "Model", type_ = "string", json_path = ".spec.model.claimName", priority = 1, description = "Claim holding the base model"),
    printcolumn(name = "Nodes", type_ = "integer", json_path = ".spec.resources.nodes", priority = 1, description = "Training nodes"),
    printcolumn(name = "GPUs", type_ = "integer", json_path = ".spec.resources.gpusPerNode", priority = 1, description = "GPUs per node"),
    validation = rules::name(),
    cel
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = rules::max_batch_len())]
#[x_kube(validation = rules::immutable_spec())]
pub struct FineTuneJobSpec {
    /// Container image with `instructlab-training` installed, used by both the preprocess Job and
    /// the training pods. Nothing is installed at run time.
    #[schemars(length(min = 1, max = 1024), regex(pattern = r"^\S+$"))]
    pub image: String,

    /// Image pull policy for both phases: Always, IfNotPresent or Never. Defaults as in a Pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<ImagePullPolicy>,

    /// Secrets used to pull the image, in both phases.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16))]
    pub image_pull_secrets: Option<Vec<LocalObjectReference>>,

    /// The base model, mounted read-only at /model.
    pub model: ModelSource,

    /// The training data, mounted read-only at /data.
    pub dataset: DatasetSource,

    /// Where checkpoints, the processed data and the final model are written, mounted
    /// read-write at /output. For more than one node it must be a claim every node can mount
    /// (ReadWriteMany).
    pub output: OutputTarget,

    /// Turns on the Initializing phase: a CPU-only Job runs
    /// `python -m instructlab.training.data_process` once and writes
    /// /output/<output.path>/data/data.jsonl before any GPU is claimed. Without it,
    /// dataset.path must already be processed data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preprocess: Option<PreprocessSpec>,

    /// Training hyperparameters, passed to `instructlab.training.main_ds`.
    pub training: TrainingSpec,

    /// Nodes and GPUs for training.
    #[serde(default)]
    pub resources: NodeResources,

    /// Where the pods of both phases may run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduling: Option<SchedulingSpec>,

    /// Environment variables added to the containers of both phases, after the operator's
    /// defaults. Plain Kubernetes EnvVars: `$(VAR)` references are expanded as usual. A value
    /// holds at most 32768 characters; pass larger data with valueFrom.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    pub env: Option<Vec<EnvVar>>,

    /// Labels and annotations added to every pod of both phases.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_template: Option<PodTemplateOverrides>,

    /// ServiceAccount the pods of both phases run as. Defaults to the namespace's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub service_account_name: Option<String>,

    /// User and groups the pods of both phases run as (a safe subset of the pod
    /// securityContext). The containers always run without privilege escalation, with every
    /// capability dropped and the RuntimeDefault seccomp profile; with runAsNonRoot: true the
    /// pods also meet the restricted Pod Security Standard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_security_context: Option<PodSecurityOptions>,

    /// Seconds training may run, counted from the moment training starts (and again from a
    /// resume). Enforced by the operator: the job then fails with reason DeadlineExceeded and
    /// its training pods are stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub active_deadline_seconds: Option<i64>,

    /// Seconds training may go without a new step in the rank-0 log (from the start of
    /// training, or the last step) before the job is marked Stalled with a Warning event. The
    /// job keeps running; this is an alarm, not a deadline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub progress_deadline_seconds: Option<i64>,

    /// Retries of failed pods, for the preprocess Job and the PyTorchJob.
    #[serde(default = "default_backoff_limit")]
    #[schemars(range(min = 0, max = 100))]
    pub backoff_limit: i32,

    /// Seconds a training pod gets between SIGTERM and SIGKILL, for example to write a
    /// checkpoint when it is preempted.
    #[serde(default = "default_termination_grace_period")]
    #[schemars(range(min = 0, max = 86400))]
    pub termination_grace_period_seconds: i64,

    /// While true the job is not started, and a running job's children are suspended (their
    /// pods are deleted). Set it back to false to resume; training resumes from the last full
    /// state checkpoint when there is one. With scheduling.queueName, a PyTorchJob already handed
    /// to Kueue is not suspended: Kueue owns its suspension.
    #[serde(default)]
    pub suspend: bool,

    /// What happens to the children when the job finishes.
    #[serde(default)]
    pub cleanup: CleanupSpec,
}

fn default_backoff_limit() -> i32 {
    3
}

fn default_termination_grace_period() -> i64 {
    120
}

/// Image pull policy of the containers.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub enum ImagePullPolicy {
    Always,
    IfNotPresent,
    Never,
}

impl ImagePullPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Always => "Always",
            Self::IfNotPresent => "IfNotPresent",
            Self::Never => "Never",
        }
    }
}

/// The base model.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelSource {
    /// PersistentVolumeClaim holding the model, mounted read-only at /model.
    #[schemars(length(min = 1, max = 253))]
    pub claim_name: String,

    /// Model directory inside the claim (HuggingFace format). Empty means the claim's root.
    #[serde(default)]
    #[schemars(length(max = 1024))]
    #[x_kube(validation = rules::relative_path())]
    pub path: String,
}

/// The training data.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct DatasetSource {
    /// PersistentVolumeClaim holding the data, mounted read-only at /data.
    #[schemars(length(min = 1, max = 253))]
    pub claim_name: String,

    /// JSONL file inside the claim: chat messages when preprocess is set, otherwise data
    /// already processed by InstructLab.
    #[schemars(length(min = 1, max = 1024))]
    #[x_kube(validation = rules::relative_path())]
    pub path: String,
}

/// Where results go.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct OutputTarget {
    /// PersistentVolumeClaim for checkpoints and the final model, mounted read-write at /output.
    #[schemars(length(min = 1, max = 253))]
    pub claim_name: String,

    /// Directory inside the claim. Defaults to the FineTuneJob's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    #[x_kube(validation = rules::relative_path())]
    pub path: Option<String>,
}

/// Data preprocessing (`instructlab.training.data_process`), run once as a CPU-only Job.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct PreprocessSpec {
    /// Longest sample in tokens; longer samples are dropped (`--max_seq_len`).
    #[serde(default = "default_max_seq_len")]
    #[schemars(range(min = 1, max = 1048576))]
    pub max_seq_len: i32,

    /// Chat template module (`--chat-tmpl-path`). InstructLab executes it as Python, so it must
    /// be an absolute path to a file inside the image, never on a volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 2, max = 1024))]
    #[x_kube(validation = rules::chat_template())]
    pub chat_template: Option<String>,

    /// Resources of the preprocess container. Defaults to 2 CPUs and 8Gi of memory.
    #[serde(default = "default_preprocess_resources")]
    pub resources: ResourceRequirements,
}

fn default_max_seq_len() -> i32 {
    4096
}

fn default_preprocess_resources() -> ResourceRequirements {
    let amount = |cpu: Option<&str>, memory: &str| {
        let mut map = BTreeMap::new();
        if let Some(cpu) = cpu {
            map.insert("cpu".to_string(), Quantity(cpu.to_string()));
        }
        map.insert("memory".to_string(), Quantity(memory.to_string()));
        map
    };
    ResourceRequirements {
        requests: Some(amount(Some("2"), "8Gi")),
        limits: Some(amount(None, "8Gi")),
        ..Default::default()
    }
}

/// Training hyperparameters for `instructlab.training.main_ds`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = rules::quantized_lora_needs_deepspeed())]
#[x_kube(validation = rules::full_state_without_lora())]
pub struct TrainingSpec {
    /// Passes over the data (`--num_epochs`).
    #[schemars(range(min = 1, max = 10000))]
    pub epochs: i32,

    /// Samples per optimizer step across all GPUs (`--effective_batch_size`).
    #[serde(default = "default_effective_batch_size")]
    #[schemars(range(min = 1))]
    pub effective_batch_size: i32,

    /// Peak learning rate as a decimal string greater than zero, e.g. "2e-5"
    /// (`--learning_rate`). A string, so that GitOps diffs never see float round-trips.
    #[serde(default = "default_learning_rate")]
    #[schemars(
        length(max = 32),
        regex(
            pattern = r"^(?:[0-9]*[1-9][0-9]*(?:\.[0-9]*)?|[0-9]*\.[0-9]*[1-9][0-9]*)(?:[eE][-+]?[0-9]{1,3})?$"
        )
    )]
    pub learning_rate: String,

    /// Linear warm-up steps (`--num_warmup_steps`).
    #[serde(default = "default_warmup_steps")]
    #[schemars(range(min = 0))]
    pub warmup_steps: i32,

    /// Tokens per GPU per step (`--max_batch_len`); at least preprocess.maxSeqLen.
    #[serde(default = "default_max_batch_len")]
    #[schemars(range(min = 1))]
    pub max_batch_len: i32,

    /// Save a HuggingFace checkpoint every this many samples; 0 turns it off (`--save_samples`).
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub save_samples: i64,

    /// Random seed (`--seed`).
    #[serde(default = "default_seed")]
    pub seed: i64,

    /// Save a HuggingFace checkpoint at the end of every epoch (`--checkpoint_at_epoch`).
    #[serde(default = "default_true")]
    pub checkpoint_at_epoch: bool,

    /// Keep only the last checkpoint, in hf_format/last_epoch (`--keep_last_checkpoint_only`).
    #[serde(default)]
    pub keep_last_checkpoint_only: bool,

    /// Save the full resumable state at every epoch end (`--accelerate_full_state_at_epoch`), so
    /// that a restarted pod resumes from full_state/epoch_N. Defaults to true, or false when
    /// lora is set (InstructLab cannot save it for LoRA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full_state_at_epoch: Option<bool>,

    /// Distributed training framework (`--distributed_training_framework`).
    #[serde(default)]
    pub framework: Framework,

    /// Offload optimizer state to CPU memory (`--cpu_offload_optimizer`).
    #[serde(default)]
    pub cpu_offload_optimizer: bool,

    /// Offload parameters to CPU memory with FSDP (`--cpu_offload_params_fsdp`).
    #[serde(default)]
    pub cpu_offload_params: bool,

    /// Train a LoRA adapter instead of all weights. The adapter is merged into the saved
    /// HuggingFace checkpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lora: Option<LoraSpec>,

    /// More `main_ds` flags, appended as they are, one argv element each (e.g.
    /// "--lr_scheduler=cosine"). Each must start with "--" and must not repeat a flag the
    /// operator sets from the fields above.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), inner(length(min = 3, max = 1024)))]
    #[x_kube(validation = rules::extra_args())]
    pub extra_args: Option<Vec<String>>,
}

fn default_effective_batch_size() -> i32 {
    128
}

fn default_learning_rate() -> String {
    "2e-5".to_string()
}

fn default_warmup_steps() -> i32 {
    25
}

fn default_max_batch_len() -> i32 {
    5000
}

fn default_seed() -> i64 {
    42
}

fn default_true() -> bool {
    true
}

/// Distributed training framework.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Framework {
    #[default]
    Fsdp,
    Deepspeed,
}

impl Framework {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fsdp => "fsdp",
            Self::Deepspeed => "deepspeed",
        }
    }
}

/// LoRA settings (`--lora_*`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct LoraSpec {
    /// Rank of the adapter matrices (`--lora_r`).
    #[serde(default = "default_lora_rank")]
    #[schemars(range(min = 1, max = 4096))]
    pub rank: i32,

    /// Scaling factor (`--lora_alpha`).
    #[serde(default = "default_lora_alpha")]
    #[schemars(range(min = 1, max = 65536))]
    pub alpha: i32,

    /// Dropout probability as a decimal string in [0, 1), e.g. "0.1" (`--lora_dropout`).
    #[serde(default = "default_lora_dropout")]
    #[schemars(length(max = 16), regex(pattern = r"^(?:0(?:\.[0-9]+)?|\.[0-9]+)$"))]
    pub dropout: String,

    /// Module names the adapter is applied to (`--lora_target_modules`).
    #[serde(default = "default_lora_target_modules")]
    #[schemars(
        length(min = 1, max = 32),
        inner(length(max = 128), regex(pattern = r"^[A-Za-z0-9_.]{1,128}$"))
    )]
    pub target_modules: Vec<String>,

    /// Quantize the base model to this many bits while training (QLoRA, `--lora_quant_bits`).
    /// Only 4 is supported, and it needs framework: deepspeed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 4, max = 4))]
    pub quantize_bits: Option<i32>,
}

fn default_lora_rank() -> i32 {
    4
}

fn default_lora_alpha() -> i32 {
    32
}

fn default_lora_dropout() -> String {
    "0.1".to_string()
}

fn default_lora_target_modules() -> Vec<String> {
    ["q_proj", "k_proj", "v_proj", "o_proj"]
        .map(String::from)
        .to_vec()
}

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

fn default_one() -> i32 {
    1
}

fn default_gpu_resource_name() -> String {
    "nvidia.com/gpu".to_string()
}

/// Where the pods run. Applied to both phases.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
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
    #[x_kube(validation = kube::core::Rule::new(
        "self.all(k, !k.startsWith('finetune.dev/') && !k.startsWith('training.kubeflow.org/') && !k.startsWith('kueue.x-k8s.io/'))"
    ).message("podTemplate.labels: keys under finetune.dev/, training.kubeflow.org/ and kueue.x-k8s.io/ are reserved for the operators"))]
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

/// Cleanup of the children once the job finished.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CleanupSpec {
    /// Delete the preprocess Job and the PyTorchJob (and so their pods and logs) when the job
    /// has finished. The FineTuneJob itself is never deleted by the operator.
    #[serde(default)]
    pub delete_children_after_finished: bool,
}

impl FineTuneJobSpec {
    /// Directory inside the output claim: `output.path`, or the job's name.
    pub fn output_dir<'a>(&'a self, job_name: &'a str) -> &'a str {
        self.output.path.as_deref().unwrap_or(job_name)
    }

    /// The queue Kueue admits the PyTorchJob from, if any.
    pub fn queue_name(&self) -> Option<&str> {
        self.scheduling.as_ref()?.queue_name.as_deref()
    }
}

impl TrainingSpec {
    /// Whether InstructLab saves the resumable full state at each epoch.
    pub fn full_state_at_epoch(&self) -> bool {
        self.full_state_at_epoch.unwrap_or(self.lora.is_none())
    }
}
