//! The training pod, as both backends run it: `torchrun ... -m instructlab.training.main_ds ...`
//! in one container on every node, with the job's volumes, env, resources, security context and
//! scheduling. One builder; `pytorchjob` and `trainjob` only render it into their kind's fields.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    EnvVar, EnvVarSource, ExecAction, Lifecycle, LifecycleHandler, PodSpec, ResourceRequirements,
    SecretKeySelector,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;

use super::pod::{self, DATA_MOUNT, MODEL_MOUNT, Mounts, OUTPUT_MOUNT};
use super::preprocess::processed_data_dir;
use super::{flag, literal, under};
use crate::api::FineTuneJob;

/// The variables a backend's controller sets in every training pod, which torchrun's topology
/// flags name: this node's rank, and where rank 0 listens.
pub(super) struct Rendezvous {
    pub node_rank: &'static str,
    pub master_addr: &'static str,
    pub master_port: &'static str,
}

/// A training pod: the metadata and spec every node's pod gets. Its one container is the
/// training container.
pub(super) struct TrainingPod {
    pub metadata: ObjectMeta,
    pub spec: PodSpec,
}

/// Mounts of the training pods: the memory-backed /dev/shm NCCL needs.
pub(super) const TRAINING_MOUNTS: Mounts = Mounts {
    shared_memory: true,
};

/// The training pod of `job`, its container named `container`, its topology flags reading
/// `rendezvous`.
pub(super) fn training_pod(
    job: &FineTuneJob,
    container: &str,
    rendezvous: &Rendezvous,
) -> TrainingPod {
    let mut training = pod::container(
        job,
        container,
        &["torchrun"],
        training_args(job, rendezvous),
        pod::env(job, training_env(job)),
        &TRAINING_MOUNTS,
    );
    training.resources = Some(training_resources(job));
    if job.spec.training.on_demand_checkpointing {
        training.lifecycle = Some(checkpoint_before_stop());
    }
    TrainingPod {
        metadata: pod::pod_metadata(job),
        spec: pod::pod_spec(job, training, &TRAINING_MOUNTS, None),
    }
}

/// The program the preStop hook runs: a constant, with no value from the spec in it.
///
/// kubelet runs it when the pod is about to stop (deletion by a suspension or a Kueue
/// preemption, eviction, node drain) and sends SIGTERM only once it returns or the grace
/// period runs out. It writes the trigger files InstructLab's workers watch for with
/// `--on_demand_checkpointing` ([`crate::names::CHECKPOINT_TRIGGER_FILES`]), then waits: InstructLab saves a full-state
/// checkpoint and exits 0, which ends the container and with it this hook. The sleep is cut
/// short by terminationGracePeriodSeconds, so the wait is bounded however long it says.
pub const CHECKPOINT_BEFORE_STOP: [&str; 3] = [
    "/bin/sh",
    "-c",
    "touch /dev/shm/checkpoint_requested /dev/shm/instructlab_checkpoint_requested; exec sleep 86400",
];

pub(super) fn checkpoint_before_stop() -> Lifecycle {
    Lifecycle {
        pre_stop: Some(LifecycleHandler {
            exec: Some(ExecAction {
                command: Some(
                    CHECKPOINT_BEFORE_STOP
                        .iter()
                        .map(|s| s.to_string())
                        .collect(),
                ),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The training container's own env: the topology, TRUST_REMOTE_CODE, and the tracking
/// credentials, each read from its Secret by the kubelet (the value never appears in the spec or
/// in the children).
fn training_env(job: &FineTuneJob) -> Vec<EnvVar> {
    let spec = &job.spec;
    let mut env = vec![
        pod::var("NNODES", spec.resources.nodes.to_string()),
        pod::var("NPROC_PER_NODE", spec.resources.gpus_per_node.to_string()),
    ];
    env.extend(pod::trust_remote_code(job));
    let tracking = spec.training.tracking.as_ref();
    let mlflow = tracking.and_then(|t| t.mlflow.as_ref());
    let wandb = tracking.and_then(|t| t.wandb.as_ref());
    // The variables the MLflow and W&B clients read (InstructLab passes none of these itself).
    let secrets = [
        (
            "MLFLOW_TRACKING_TOKEN",
            mlflow.and_then(|m| m.token.as_ref()),
        ),
        (
            "MLFLOW_TRACKING_USERNAME",
            mlflow.and_then(|m| m.username.as_ref()),
        ),
        (
            "MLFLOW_TRACKING_PASSWORD",
            mlflow.and_then(|m| m.password.as_ref()),
        ),
        ("WANDB_API_KEY", wandb.and_then(|w| w.api_key.as_ref())),
    ];
    env.extend(secrets.into_iter().filter_map(|(name, source)| {
        let secret = &source?.secret_key_ref;
        Some(EnvVar {
            name: name.to_string(),
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: secret.name.clone(),
                    key: secret.key.clone(),
                    optional: None,
                }),
                ..Default::default()
            }),
            ..Default::default()
        })
    }));
    env
}

/// GPUs (and optional CPU and memory) with request = limit, so training pods get a guaranteed
/// share.
fn training_resources(job: &FineTuneJob) -> ResourceRequirements {
    let res = &job.spec.resources;
    let mut amounts = BTreeMap::from([(
        res.gpu_resource_name.clone(),
        Quantity(res.gpus_per_node.to_string()),
    )]);
    if let Some(cpu) = &res.cpu {
        amounts.insert("cpu".to_string(), cpu.clone());
    }
    if let Some(memory) = &res.memory {
        amounts.insert("memory".to_string(), memory.clone());
    }
    ResourceRequirements {
        requests: Some(amounts.clone()),
        limits: Some(amounts),
        ..Default::default()
    }
}

/// torchrun's arguments, then main_ds's. The rendezvous variables are the only references left
/// for Kubernetes to expand; the backend's controller injects them.
fn training_args(job: &FineTuneJob, rendezvous: &Rendezvous) -> Vec<String> {
    let spec = &job.spec;
    let t = &spec.training;
    let output_dir = under(OUTPUT_MOUNT, spec.output_dir(&job.name_any()));
    let data_path = match spec.preprocess {
        Some(_) => format!("{}/data.jsonl", processed_data_dir(job)),
        None => under(DATA_MOUNT, &spec.dataset.path),
    };

    let mut args = vec![
        flag("--nnodes", spec.resources.nodes),
        flag("--nproc_per_node", spec.resources.gpus_per_node),
        format!("--node_rank=$({})", rendezvous.node_rank),
        format!("--master_addr=$({})", rendezvous.master_addr),
        format!("--master_port=$({})", rendezvous.master_port),
        "-m".to_string(),
        "instructlab.training.main_ds".to_string(),
        flag("--model_name_or_path", under(MODEL_MOUNT, &spec.model.path)),
        flag("--data_path", data_path),
        flag("--output_dir", output_dir),
        flag("--num_epochs", t.epochs),
        flag("--effective_batch_size", t.effective_batch_size),
        flag("--learning_rate", &t.learning_rate),
        flag("--num_warmup_steps", t.warmup_steps),
        flag("--max_batch_len", t.max_batch_len),
        flag("--save_samples", t.save_samples),
        flag("--seed", t.seed),
        flag("--distributed_training_framework", t.framework.as_str()),
    ];
    // Boolean flags of main_ds are store_true switches: present means on.
    let switches = [
        (t.checkpoint_at_epoch, "--checkpoint_at_epoch"),
        (t.full_state_at_epoch(), "--accelerate_full_state_at_epoch"),
        (t.keep_last_checkpoint_only, "--keep_last_checkpoint_only"),
        (t.cpu_offload_optimizer, "--cpu_offload_optimizer"),
        (t.cpu_offload_params, "--cpu_offload_params_fsdp"),
        (t.use_liger, "--use_liger"),
        (t.trust_remote_code, "--trust_remote_code"),
        (t.on_demand_checkpointing, "--on_demand_checkpointing"),
    ];
    args.extend(
        switches
            .into_iter()
            .filter(|(on, _)| *on)
            .map(|(_, name)| name.to_string()),
    );
    if let Some(lora) = &t.lora {
        args.push(flag("--lora_r", lora.rank));
        args.push(flag("--lora_alpha", lora.alpha));
        args.push(flag("--lora_dropout", &lora.dropout));
        if let Some(bits) = lora.quantize_bits {
            args.push(flag("--lora_quant_bits", bits));
        }
        // nargs="+": one argv element per module name (validated as identifiers at admission).
        args.push("--lora_target_modules".to_string());
        args.extend(lora.target_modules.iter().map(|m| literal(m)));
    }
    if let Some(scheduler) = t.lr_scheduler {
        args.push(flag("--lr_scheduler", scheduler.as_str()));
    }
    if let Some(strategy) = t.fsdp_sharding_strategy {
        args.push(flag("--fsdp_sharding_strategy", strategy.as_str()));
    }
    // Decimal strings are passed exactly as written (validated at admission).
    if let Some(adamw) = &t.adamw {
        let values = [
            ("--adamw_weight_decay", &adamw.weight_decay),
            ("--adamw_beta1", &adamw.beta1),
            ("--adamw_beta2", &adamw.beta2),
            ("--adamw_eps", &adamw.eps),
        ];
        args.extend(
            values
                .into_iter()
                .filter_map(|(name, value)| Some(flag(name, value.as_ref()?))),
        );
    }
    if let Some(validation) = &t.validation {
        args.push(flag("--validation_split", &validation.split));
        args.push(flag("--validation_frequency", validation.frequency));
    }
    args.extend(tracking_args(job));
    if let Some(template) = spec
        .preprocess
        .as_ref()
        .and_then(|p| p.chat_template.as_ref())
    {
        args.push(flag("--chat-tmpl-path", template));
    }
    args.extend(t.extra_args.iter().flatten().map(|a| literal(a)));
    args
}

/// The experiment tracking flags (InstructLab 0.14.0 or newer), only for the backends set. Never
/// `--logger_type` or `--run_name`: InstructLab 0.14.0 removed them, and argparse refuses them.
fn tracking_args(job: &FineTuneJob) -> Vec<String> {
    let Some(tracking) = &job.spec.training.tracking else {
        return Vec::new();
    };
    let mut args = Vec::new();
    if let Some(mlflow) = &tracking.mlflow {
        args.push(flag("--mlflow_tracking_uri", &mlflow.tracking_uri));
        if let Some(experiment) = &mlflow.experiment_name {
            args.push(flag("--mlflow_experiment_name", experiment));
        }
        if let Some(run) = &mlflow.run_name {
            args.push(flag("--mlflow_run_name", run));
        }
    }
    if let Some(wandb) = &tracking.wandb {
        args.push(flag("--wandb_project", &wandb.project));
        if let Some(entity) = &wandb.entity {
            args.push(flag("--wandb_entity", entity));
        }
        if let Some(run) = &wandb.run_name {
            args.push(flag("--wandb_run_name", run));
        }
    }
    if let Some(dir) = &tracking.tensorboard_dir {
        let output_dir = under(OUTPUT_MOUNT, job.spec.output_dir(&job.name_any()));
        args.push(flag("--tensorboard_log_dir", under(&output_dir, dir)));
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names::CHECKPOINT_TRIGGER_FILES;

    #[test]
    fn the_hook_touches_the_trigger_files_instructlab_watches() {
        let script = CHECKPOINT_BEFORE_STOP[2];
        assert_eq!(
            script,
            format!(
                "touch {}; exec sleep 86400",
                CHECKPOINT_TRIGGER_FILES.join(" ")
            )
        );
    }
}
