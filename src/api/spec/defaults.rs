//! Serde defaults of the spec fields. They also become the schema defaults of the CRD.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

pub(super) fn default_backoff_limit() -> i32 {
    3
}

pub(super) fn default_disruption_limit() -> i32 {
    5
}

/// The default of `spec.terminationGracePeriodSeconds`, which the TrainJob runtimes of
/// `deploy/trainer/runtimes.yaml` hold too (a TrainJob queued by Kueue gets it from there).
pub const DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS: i64 = 120;

pub(super) fn default_termination_grace_period() -> i64 {
    DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS
}

pub(super) fn default_max_seq_len() -> i32 {
    4096
}

pub(super) fn default_preprocess_resources() -> ResourceRequirements {
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

pub(super) fn default_effective_batch_size() -> i32 {
    128
}

pub(super) fn default_learning_rate() -> String {
    "2e-5".to_string()
}

pub(super) fn default_warmup_steps() -> i32 {
    25
}

pub(super) fn default_max_batch_len() -> i32 {
    5000
}

pub(super) fn default_seed() -> i64 {
    42
}

pub(super) fn default_true() -> bool {
    true
}

pub(super) fn default_lora_rank() -> i32 {
    4
}

pub(super) fn default_lora_alpha() -> i32 {
    32
}

pub(super) fn default_lora_dropout() -> String {
    "0.1".to_string()
}

pub(super) fn default_lora_target_modules() -> Vec<String> {
    ["q_proj", "k_proj", "v_proj", "o_proj"]
        .map(String::from)
        .to_vec()
}

pub(super) fn default_one() -> i32 {
    1
}

pub(super) fn default_gpu_resource_name() -> String {
    "nvidia.com/gpu".to_string()
}
