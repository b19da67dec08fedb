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

impl TrainingSpec {
    /// Whether InstructLab saves the resumable full state at each epoch.
    pub fn full_state_at_epoch(&self) -> bool {
        self.full_state_at_epoch.unwrap_or(self.lora.is_none())
    }
}
