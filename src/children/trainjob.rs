//! The TrainJob (Kubeflow Trainer v2): the training pod, split into what a TrainJob can carry.
//!
//! The image, argv, env, resources and node count go in `spec.trainer`; the volumes, mounts,
//! security contexts, identity and placement in a runtime patch of the replicated job `node`;
//! the preStop checkpoint hook, which no patch can carry, by choosing the runtime that has it
//! (`deploy/trainer/runtimes.yaml`). Anything else the pod holds is refused here rather than
//! dropped: the CRD refuses it first, at admission.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, PodSpec};
use kube::ResourceExt;
use serde::Serialize;

use super::training::{Rendezvous, TrainingPod, checkpoint_before_stop, training_pod};
use super::{BuildError, child_meta, queued_meta};
use crate::api::{
    DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS, FineTuneJob, JobSetSpecPatch, JobSetTemplatePatch,
    JobSpecPatch, JobTemplatePatch, MetadataPatch, NODE, PodSpecPatch, PodTemplatePatch,
    ReplicatedJobPatch, RuntimePatch, RuntimeRef, TrainJob, TrainJobSpec, Trainer,
    TrainingRuntimeSpecPatch,
};
use crate::names::{RUNTIME_PATCH_MANAGER, TRAINJOB_CHECKPOINT_RUNTIME, TRAINJOB_RUNTIME};

/// What Trainer's torch plugin sets in every node's pod.
const RENDEZVOUS: Rendezvous = Rendezvous {
    node_rank: "PET_NODE_RANK",
    master_addr: "PET_MASTER_ADDR",
    master_port: "PET_MASTER_PORT",
};

/// Builds the TrainJob `<name>`.
pub fn build_train_job(job: &FineTuneJob) -> Result<TrainJob, BuildError> {
    let spec = &job.spec;
    let TrainingPod {
        metadata: pod_metadata,
        spec: mut pod,
    } = training_pod(job, NODE, &RENDEZVOUS);
    let mut container = std::mem::take(&mut pod.containers)
        .into_iter()
        .next()
        .unwrap_or_default();

    let trainer = Trainer {
        image: container.image.take(),
        command: container.command.take(),
        args: container.args.take(),
        env: container.env.take(),
        num_nodes: Some(spec.resources.nodes),
        num_proc_per_node: Some(spec.resources.gpus_per_node),
        resources_per_node: container.resources.take(),
    };
    let runtime = match container.lifecycle.take() {
        None => TRAINJOB_RUNTIME,
        Some(hook) if hook == checkpoint_before_stop() => TRAINJOB_CHECKPOINT_RUNTIME,
        Some(_) => return Err(unsupported("a lifecycle hook of its own")),
    };
    let patched_container = Container {
        name: std::mem::take(&mut container.name),
        volume_mounts: container.volume_mounts.take(),
        security_context: container.security_context.take(),
        ..Default::default()
    };
    refuse_the_rest(&container)?;
    let patched_pod = PodSpecPatch {
        containers: vec![patched_container],
        volumes: pod.volumes.take(),
        security_context: pod.security_context.take(),
        service_account_name: pod.service_account_name.take(),
        image_pull_secrets: pod.image_pull_secrets.take(),
        termination_grace_period_seconds: grace_period(
            job,
            pod.termination_grace_period_seconds.take(),
        ),
        node_selector: pod.node_selector.take(),
        tolerations: pod.tolerations.take(),
        affinity: pod.affinity.take(),
    };
    refuse_the_rest(&PodSpec {
        containers: Vec::new(),
        ..pod
    })?;

    let patch = RuntimePatch {
        manager: RUNTIME_PATCH_MANAGER.to_string(),
        training_runtime_spec: Some(TrainingRuntimeSpecPatch {
            template: JobSetTemplatePatch {
                spec: JobSetSpecPatch {
                    replicated_jobs: vec![ReplicatedJobPatch {
                        name: NODE.to_string(),
                        template: JobTemplatePatch {
                            spec: JobSpecPatch {
                                template: PodTemplatePatch {
                                    metadata: Some(MetadataPatch {
                                        labels: pod_metadata.labels,
                                        annotations: pod_metadata.annotations,
                                    }),
                                    spec: patched_pod,
                                },
                            },
                        },
                    }],
                },
            },
        }),
    };

    Ok(TrainJob {
        metadata: queued_meta(job, child_meta(job, job.name_any())?),
        spec: TrainJobSpec {
            runtime_ref: RuntimeRef {
                name: runtime.to_string(),
                api_group: Some("trainer.kubeflow.org".to_string()),
                kind: Some("ClusterTrainingRuntime".to_string()),
            },
            trainer: Some(trainer),
            runtime_patches: vec![patch],
            // With a queue, Kueue unsuspends the job on admission and owns the field after.
            suspend: spec.queue_name().map(|_| true),
            active_deadline_seconds: None,
        },
        status: None,
    })
}

/// The pod's grace period in the runtime patch, except for a job queued by Kueue that keeps the
/// default: Kueue v0.17 updates a TrainJob it admits with Trainer v2.2's types, which lack the
/// patch's `terminationGracePeriodSeconds`, so the field would vanish and Trainer's new JobSet
/// differ from the old in a field JobSet does not let change. The runtimes hold the default
/// instead (`deploy/trainer/runtimes.yaml`); the CRD refuses another value with a queue.
fn grace_period(job: &FineTuneJob, seconds: Option<i64>) -> Option<i64> {
    let queued = job.spec.queue_name().is_some();
    seconds.filter(|s| !(queued && *s == DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS))
}

fn unsupported(what: impl Into<String>) -> BuildError {
    BuildError::Unsupported {
        backend: "TrainJob",
        what: what.into(),
    }
}

/// Fails, naming them, when fields are left that the TrainJob cannot carry.
fn refuse_the_rest(rest: &impl Serialize) -> Result<(), BuildError> {
    let fields = left_fields(rest);
    if fields.is_empty() {
        return Ok(());
    }
    Err(unsupported(fields.join(", ")))
}

/// The fields of `rest` that hold something: not absent, empty or zero-length.
fn left_fields(rest: &impl Serialize) -> Vec<String> {
    let Ok(serde_json::Value::Object(map)) = serde_json::to_value(rest) else {
        return Vec::new();
    };
    let empty = |v: &serde_json::Value| match v {
        serde_json::Value::Null => true,
        serde_json::Value::String(s) => s.is_empty(),
        serde_json::Value::Array(a) => a.is_empty(),
        serde_json::Value::Object(o) => o.is_empty(),
        _ => false,
    };
    let fields: BTreeMap<_, _> = map.into_iter().filter(|(_, v)| !empty(v)).collect();
    fields.into_keys().collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::children::build_pytorch_job;
    use crate::names::PYTORCH_CONTAINER;
    use crate::testing::JobFixture;

    fn patched_pod(tj: &TrainJob) -> &PodTemplatePatch {
        let patch = tj.spec.runtime_patches[0].training_runtime_spec.as_ref();
        let jobs = &patch.unwrap().template.spec.replicated_jobs;
        assert_eq!(jobs.len(), 1);
        assert_eq!(jobs[0].name, NODE);
        &jobs[0].template.spec.template
    }

    #[test]
    fn both_renderings_carry_the_same_pod_but_the_rendezvous_variables() {
        let job = JobFixture::new("ft")
            .stored()
            .nodes(2, 8)
            .set("/training/onDemandCheckpointing", json!(true))
            .spec(json!({
                "serviceAccountName": "trainer",
                "podSecurityContext": {"runAsUser": 1000, "fsGroup": 1000},
                "scheduling": {"nodeSelector": {"gpu": "h200"},
                               "tolerations": [{"key": "gpu", "operator": "Exists"}]},
                "podTemplate": {"labels": {"team": "a"}, "annotations": {"note": "b"}},
            }))
            .build();
        let ptj = build_pytorch_job(&job).unwrap();
        let master = &ptj.spec.pytorch_replica_specs["Master"].template;
        let ptj_pod = master.spec.clone().unwrap();
        let ptj_container = &ptj_pod.containers[0];
        assert_eq!(ptj_container.name, PYTORCH_CONTAINER);

        let tj = build_train_job(&job).unwrap();
        let trainer = tj.spec.trainer.clone().unwrap();
        assert_eq!(trainer.image, ptj_container.image);
        assert_eq!(trainer.command, ptj_container.command);
        assert_eq!(trainer.env, ptj_container.env);
        assert_eq!(trainer.resources_per_node, ptj_container.resources);
        assert_eq!(
            (trainer.num_nodes, trainer.num_proc_per_node),
            (Some(2), Some(8))
        );
        // The argv is the same but for the variables each backend's controller sets.
        let renamed: Vec<String> = ptj_container
            .args
            .clone()
            .unwrap()
            .into_iter()
            .map(|a| {
                a.replace("$(RANK)", "$(PET_NODE_RANK)")
                    .replace("$(MASTER_ADDR)", "$(PET_MASTER_ADDR)")
                    .replace("$(MASTER_PORT)", "$(PET_MASTER_PORT)")
            })
            .collect();
        assert_eq!(trainer.args, Some(renamed));

        let patched = patched_pod(&tj);
        let meta = patched.metadata.clone().unwrap();
        let ptj_meta = master.metadata.clone().unwrap();
        assert_eq!(meta.labels, ptj_meta.labels);
        assert_eq!(meta.annotations, ptj_meta.annotations);
        let pod = &patched.spec;
        assert_eq!(pod.volumes, ptj_pod.volumes);
        assert_eq!(pod.security_context, ptj_pod.security_context);
        assert_eq!(pod.service_account_name.as_deref(), Some("trainer"));
        assert_eq!(pod.node_selector, ptj_pod.node_selector);
        assert_eq!(pod.tolerations, ptj_pod.tolerations);
        assert_eq!(
            pod.termination_grace_period_seconds,
            ptj_pod.termination_grace_period_seconds
        );
        assert_eq!(pod.containers.len(), 1);
        assert_eq!(pod.containers[0].name, NODE);
        assert_eq!(pod.containers[0].volume_mounts, ptj_container.volume_mounts);
        assert_eq!(
            pod.containers[0].security_context,
            ptj_container.security_context
        );
        // The hook no patch can carry: the runtime that has it.
        assert_eq!(tj.spec.runtime_ref.name, TRAINJOB_CHECKPOINT_RUNTIME);
    }

    #[test]
    fn without_on_demand_checkpointing_the_runtime_has_no_hook_and_a_queue_suspends() {
        let job = JobFixture::new("ft").stored().queue("gpus").build();
        let tj = build_train_job(&job).unwrap();
        assert_eq!(tj.spec.runtime_ref.name, TRAINJOB_RUNTIME);
        assert_eq!(tj.spec.suspend, Some(true));
        let labels = tj.metadata.labels.unwrap();
        assert_eq!(labels[crate::names::KUEUE_QUEUE_LABEL], "gpus");
        assert_eq!(
            tj.metadata.owner_references.unwrap()[0].controller,
            Some(true)
        );
    }

    #[test]
    fn a_queued_job_takes_its_grace_period_from_the_runtime() {
        // Kueue v0.17 drops the patch's grace period when it admits the TrainJob: a queued job
        // leaves it to the runtimes, which hold the default.
        let queued = build_train_job(&JobFixture::new("ft").stored().queue("gpus").build());
        assert_eq!(
            patched_pod(&queued.unwrap())
                .spec
                .termination_grace_period_seconds,
            None
        );
        let unqueued = build_train_job(&JobFixture::new("ft").stored().build()).unwrap();
        assert_eq!(
            patched_pod(&unqueued).spec.termination_grace_period_seconds,
            Some(DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS)
        );
        let runtimes = include_str!("../../deploy/trainer/runtimes.yaml");
        let held =
            format!("terminationGracePeriodSeconds: {DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS}\n");
        assert_eq!(
            runtimes.matches(&held).count(),
            2,
            "both runtimes hold the default"
        );
    }

    #[test]
    fn what_a_trainjob_cannot_carry_is_refused_by_name() {
        let job = JobFixture::new("ft")
            .stored()
            .spec(json!({"scheduling": {"priorityClassName": "high", "schedulerName": "volcano"}}))
            .build();
        assert_eq!(
            build_train_job(&job),
            Err(BuildError::Unsupported {
                backend: "TrainJob",
                what: "priorityClassName, schedulerName".to_string()
            })
        );
        let job = JobFixture::new("ft")
            .stored()
            .spec(json!({"imagePullPolicy": "Always"}))
            .build();
        assert_eq!(
            build_train_job(&job),
            Err(BuildError::Unsupported {
                backend: "TrainJob",
                what: "imagePullPolicy".to_string()
            })
        );
    }
}
