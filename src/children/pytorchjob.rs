//! The PyTorchJob: `torchrun ... -m instructlab.training.main_ds ...` on one Master and
//! `nodes - 1` Workers.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    EnvVar, EnvVarSource, ExecAction, Lifecycle, LifecycleHandler, PodTemplateSpec,
    ResourceRequirements, SecretKeySelector,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::ResourceExt;

use super::pod::{self, DATA_MOUNT, MODEL_MOUNT, Mounts, OUTPUT_MOUNT};
use super::preprocess::processed_data_dir;
use super::{BuildError, child_meta, flag, literal, under};
use crate::api::{FineTuneJob, MASTER, PyTorchJob, PyTorchJobSpec, ReplicaSpec, RunPolicy, WORKER};
use crate::names::{KUEUE_PRIORITY_CLASS_LABEL, KUEUE_QUEUE_LABEL, PYTORCH_CONTAINER};

/// Builds the PyTorchJob `<name>`.
pub fn build_pytorch_job(job: &FineTuneJob) -> Result<PyTorchJob, BuildError> {
    let spec = &job.spec;
    let nodes = spec.resources.nodes;
    let mounts = Mounts {
        shared_memory: true,
    };
    let mut container = pod::container(
        job,
        PYTORCH_CONTAINER,
        &["torchrun"],
        training_args(job),
        pod::env(job, training_env(job)),
        &mounts,
    );
    container.resources = Some(training_resources(job));
    if spec.training.on_demand_checkpointing {
        container.lifecycle = Some(checkpoint_before_stop());
    }

    // ExitCode: exit codes 1-127 (a Python error) fail the job at once and honestly; 128-255
    // (SIGKILL, SIGTERM on preemption) recreate the pod, which resumes from the last full state.
    let replica = |replicas: i32| ReplicaSpec {
        replicas: Some(replicas),
        restart_policy: Some("ExitCode".to_string()),
        template: PodTemplateSpec {
            metadata: Some(pod::pod_metadata(job)),
            spec: Some(pod::pod_spec(job, container.clone(), &mounts, None)),
        },
    };
    let mut replica_specs = BTreeMap::from([(MASTER.to_string(), replica(1))]);
    if nodes > 1 {
        replica_specs.insert(WORKER.to_string(), replica(nodes - 1));
    }

    let mut metadata = child_meta(job, job.name_any())?;
    let queue = spec.queue_name();
    if let Some(queue) = queue {
        let labels = metadata.labels.get_or_insert_with(BTreeMap::new);
        labels.insert(KUEUE_QUEUE_LABEL.to_string(), queue.to_string());
        let priority = spec
            .scheduling
            .as_ref()
            .and_then(|s| s.workload_priority_class_name.as_ref());
        if let Some(priority) = priority {
            labels.insert(KUEUE_PRIORITY_CLASS_LABEL.to_string(), priority.clone());
        }
    }

    Ok(PyTorchJob {
        metadata,
        spec: PyTorchJobSpec {
            run_policy: Some(RunPolicy {
                // Running: when the job ends, pods still holding GPUs are deleted; finished pods
                // (and so the master's log) are kept.
                clean_pod_policy: Some("Running".to_string()),
                backoff_limit: Some(spec.backoff_limit),
                // With a queue, Kueue unsuspends the job on admission and owns the field after.
                suspend: queue.map(|_| true),
            }),
            nproc_per_node: Some(spec.resources.gpus_per_node.to_string()),
            pytorch_replica_specs: replica_specs,
        },
        status: None,
    })
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

fn checkpoint_before_stop() -> Lifecycle {
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

/// torchrun's arguments, then main_ds's. `$(RANK)`, `$(MASTER_ADDR)` and `$(MASTER_PORT)` are the
/// only references left for Kubernetes to expand; the training operator injects those variables.
fn training_args(job: &FineTuneJob) -> Vec<String> {
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
        "--node_rank=$(RANK)".to_string(),
        "--master_addr=$(MASTER_ADDR)".to_string(),
        "--master_port=$(MASTER_PORT)".to_string(),
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
    use serde_json::json;

    use super::*;
    use crate::names::CHECKPOINT_TRIGGER_FILES;
    use crate::testing::JobFixture;

    fn training_container(
        ptj: &PyTorchJob,
        replica: &str,
    ) -> k8s_openapi::api::core::v1::Container {
        let spec = ptj.spec.pytorch_replica_specs[replica]
            .template
            .spec
            .clone();
        spec.unwrap().containers[0].clone()
    }

    #[test]
    fn on_demand_checkpointing_gives_every_training_pod_the_fixed_pre_stop_hook() {
        let plain = JobFixture::new("ft").stored().nodes(2, 8).build();
        let ptj = build_pytorch_job(&plain).unwrap();
        assert_eq!(training_container(&ptj, MASTER).lifecycle, None);

        // Values a user controls (paths, names) never reach the hook: it is one constant.
        let on = JobFixture::new("ft; $(HOME) `x`")
            .stored()
            .nodes(2, 8)
            .set("/training/onDemandCheckpointing", json!(true))
            .set("/output/path", json!("$(SHELL); rm -rf /"))
            .spec(json!({"terminationGracePeriodSeconds": 900}))
            .build();
        let ptj = build_pytorch_job(&on).unwrap();
        for replica in [MASTER, WORKER] {
            let c = training_container(&ptj, replica);
            let hook = c.lifecycle.and_then(|l| l.pre_stop).and_then(|h| h.exec);
            assert_eq!(
                hook.and_then(|e| e.command),
                Some(CHECKPOINT_BEFORE_STOP.map(String::from).to_vec()),
                "{replica}"
            );
            assert!(
                c.args
                    .unwrap()
                    .contains(&"--on_demand_checkpointing".to_string())
            );
            let pod = ptj.spec.pytorch_replica_specs[replica]
                .template
                .spec
                .as_ref();
            assert_eq!(pod.unwrap().termination_grace_period_seconds, Some(900));
        }
    }

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

    #[test]
    fn the_workload_priority_class_is_a_label_kueue_reads() {
        let queued = JobFixture::new("ft")
            .stored()
            .queue("gpus")
            .set("/scheduling/workloadPriorityClassName", json!("fto-high"))
            .build();
        let labels = build_pytorch_job(&queued).unwrap().metadata.labels.unwrap();
        assert_eq!(labels[KUEUE_QUEUE_LABEL], "gpus");
        assert_eq!(labels[KUEUE_PRIORITY_CLASS_LABEL], "fto-high");
    }
}
