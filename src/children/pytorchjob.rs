//! The PyTorchJob: the training pod on one Master and `nodes - 1` Workers.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::PodTemplateSpec;
use kube::ResourceExt;

use super::training::{Rendezvous, TrainingPod, training_pod};
use super::{BuildError, child_meta, queued_meta};
use crate::api::{FineTuneJob, MASTER, PyTorchJob, PyTorchJobSpec, ReplicaSpec, RunPolicy, WORKER};
use crate::names::PYTORCH_CONTAINER;

/// What the training operator sets in every replica's pod (MASTER_ADDR and RANK only with a
/// Master).
const RENDEZVOUS: Rendezvous = Rendezvous {
    node_rank: "RANK",
    master_addr: "MASTER_ADDR",
    master_port: "MASTER_PORT",
};

/// Builds the PyTorchJob `<name>`.
pub fn build_pytorch_job(job: &FineTuneJob) -> Result<PyTorchJob, BuildError> {
    let spec = &job.spec;
    let nodes = spec.resources.nodes;
    let TrainingPod {
        metadata: pod_metadata,
        spec: pod_spec,
    } = training_pod(job, PYTORCH_CONTAINER, &RENDEZVOUS);

    // ExitCode: exit codes 1-127 (a Python error) fail the job at once and honestly; 128-255
    // (SIGKILL, SIGTERM on preemption) recreate the pod, which resumes from the last full state.
    let replica = |replicas: i32| ReplicaSpec {
        replicas: Some(replicas),
        restart_policy: Some("ExitCode".to_string()),
        template: PodTemplateSpec {
            metadata: Some(pod_metadata.clone()),
            spec: Some(pod_spec.clone()),
        },
    };
    let mut replica_specs = BTreeMap::from([(MASTER.to_string(), replica(1))]);
    if nodes > 1 {
        replica_specs.insert(WORKER.to_string(), replica(nodes - 1));
    }

    let metadata = queued_meta(job, child_meta(job, job.name_any())?);
    let queue = spec.queue_name();

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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::training::CHECKPOINT_BEFORE_STOP;
    use super::*;
    use crate::names::{KUEUE_PRIORITY_CLASS_LABEL, KUEUE_QUEUE_LABEL};
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
