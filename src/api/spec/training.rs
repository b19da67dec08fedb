//! What a FineTuneJob runs: the preprocessing of the data, the training hyperparameters, the
//! distributed training framework and the LoRA settings.

use k8s_openapi::api::core::v1::ResourceRequirements;
use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use super::defaults::{
    default_effective_batch_size, default_learning_rate, default_lora_alpha, default_lora_dropout,
    default_lora_rank, default_lora_target_modules, default_max_batch_len, default_max_seq_len,
    default_preprocess_resources, default_seed, default_true, default_warmup_steps,
};
use super::tracking::TrackingSpec;
use crate::api::rules;

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

/// Training hyperparameters for `instructlab.training.main_ds`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = rules::quantized_lora_needs_deepspeed())]
#[x_kube(validation = rules::full_state_without_lora())]
#[x_kube(validation = rules::sharding_strategy_needs_fsdp())]
#[x_kube(validation = rules::extra_args_repeat_typed_fields())]
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

    /// Learning rate schedule after the warm-up (`--lr_scheduler`): linear, cosine,
    /// cosine_with_restarts, polynomial, constant or constant_with_warmup. Unset leaves
    /// InstructLab's default (cosine).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lr_scheduler: Option<LrScheduler>,

    /// AdamW optimizer settings (`--adamw_*`, InstructLab 0.13.0 or newer). Each one unset
    /// keeps InstructLab's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adamw: Option<AdamWSpec>,

    /// Hold out part of the data and report a validation loss (`--validation_split`,
    /// `--validation_frequency`, InstructLab 0.14.2 or newer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation: Option<ValidationSpec>,

    /// Send the training metrics to MLflow, Weights & Biases and/or TensorBoard (InstructLab
    /// 0.14.0 or newer). Only rank 0 reports. The image must have the client package of each
    /// backend used installed (mlflow, wandb, tensorboard).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracking: Option<TrackingSpec>,

    /// FSDP sharding strategy (`--fsdp_sharding_strategy`): FULL_SHARD, SHARD_GRAD_OP, NO_SHARD
    /// or HYBRID_SHARD. Only with framework: fsdp. Unset leaves InstructLab's default
    /// (HYBRID_SHARD).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fsdp_sharding_strategy: Option<FsdpShardingStrategy>,

    /// Use the Liger kernels (`--use_liger`); the image must have liger-kernel installed.
    #[serde(default)]
    pub use_liger: bool,

    /// Let the model and tokenizer run Python code shipped in the model directory
    /// (`--trust_remote_code`, and TRUST_REMOTE_CODE=1 in both phases; InstructLab 0.15.2 or
    /// newer). Needed by models with custom code. That code runs in the pods with the pods'
    /// access: set it only for a model claim whose content you trust.
    #[serde(default)]
    pub trust_remote_code: bool,

    /// Checkpoint before the pods stop (InstructLab 0.16.0 or newer: older images refuse the
    /// flag, and the job fails with IncompatibleImage). Passes `--on_demand_checkpointing`, so
    /// that InstructLab's workers watch for a trigger file in /dev/shm, and gives the training
    /// container a preStop hook, a fixed program that writes that file and waits: when the
    /// pods are stopped by spec.suspend, a Kueue preemption, an eviction or a node drain,
    /// InstructLab first saves a full-state checkpoint (within
    /// terminationGracePeriodSeconds) and exits with code 0. The job shows a Checkpointed
    /// condition and the next attempt resumes from that checkpoint. Without it, a stopped pod
    /// loses the work since the last epoch-end checkpoint.
    #[serde(default)]
    pub on_demand_checkpointing: bool,

    /// More `main_ds` flags, appended as they are, one argv element each (e.g.
    /// "--disable_flash_attn"). Each must start with "--" and must not repeat a flag the
    /// operator sets from the fields above. Prefer the typed fields where there is one
    /// (lrScheduler, useLiger, adamw, ...): they are validated at admission, and a typed field
    /// that is set refuses the same flag here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), inner(length(min = 3, max = 1024)))]
    #[x_kube(validation = rules::extra_args())]
    pub extra_args: Option<Vec<String>>,
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

/// Learning rate schedulers of `main_ds` (`--lr_scheduler`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LrScheduler {
    Linear,
    Cosine,
    CosineWithRestarts,
    Polynomial,
    Constant,
    ConstantWithWarmup,
}

impl LrScheduler {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Linear => "linear",
            Self::Cosine => "cosine",
            Self::CosineWithRestarts => "cosine_with_restarts",
            Self::Polynomial => "polynomial",
            Self::Constant => "constant",
            Self::ConstantWithWarmup => "constant_with_warmup",
        }
    }
}

/// FSDP sharding strategies, named as in PyTorch and InstructLab (`--fsdp_sharding_strategy`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FsdpShardingStrategy {
    FullShard,
    ShardGradOp,
    NoShard,
    HybridShard,
}

impl FsdpShardingStrategy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::FullShard => "FULL_SHARD",
            Self::ShardGradOp => "SHARD_GRAD_OP",
            Self::NoShard => "NO_SHARD",
            Self::HybridShard => "HYBRID_SHARD",
        }
    }
}

/// AdamW settings (`--adamw_*`). Numbers are decimal strings, e.g. "0.95" or "1e-8", passed to
/// InstructLab exactly as written.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct AdamWSpec {
    /// Weight decay, a decimal string of at least 0, e.g. "0.01" (`--adamw_weight_decay`;
    /// InstructLab's default is 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 32))]
    #[x_kube(validation = rules::non_negative_decimal("training.adamw.weightDecay"))]
    pub weight_decay: Option<String>,

    /// Decay rate of the first moment, a decimal string in [0, 1), e.g. "0.9"
    /// (`--adamw_beta1`; InstructLab's default is 0.9).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 32))]
    #[x_kube(validation = rules::unit_interval_decimal("training.adamw.beta1"))]
    pub beta1: Option<String>,

    /// Decay rate of the second moment, a decimal string in [0, 1), e.g. "0.95"
    /// (`--adamw_beta2`; InstructLab's default is 0.95).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 32))]
    #[x_kube(validation = rules::unit_interval_decimal("training.adamw.beta2"))]
    pub beta2: Option<String>,

    /// Term added for numerical stability, a decimal string greater than 0, e.g. "1e-8"
    /// (`--adamw_eps`; InstructLab's default is 1e-8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 32))]
    #[x_kube(validation = rules::positive_decimal("training.adamw.eps"))]
    pub eps: Option<String>,
}

/// A validation set held out of the training data. Both fields are required.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ValidationSpec {
    /// Fraction of the samples held out for validation, a decimal string strictly between 0
    /// and 1, e.g. "0.05" (`--validation_split`).
    #[schemars(length(min = 1, max = 32))]
    #[x_kube(validation = rules::validation_split())]
    pub split: String,

    /// Compute the validation loss every this many training steps (`--validation_frequency`).
    #[schemars(range(min = 1))]
    pub frequency: i32,
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

impl TrainingSpec {
    /// Whether InstructLab saves the resumable full state at each epoch.
    pub fn full_state_at_epoch(&self) -> bool {
        self.full_state_at_epoch.unwrap_or(self.lora.is_none())
    }
}
