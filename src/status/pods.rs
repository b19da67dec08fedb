//! What the pods say that the Job and PyTorchJob statuses do not: exit codes, termination
//! reasons, and containers that keep restarting. Pure: it reads the pods it is given.

use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use kube::ResourceExt;

use crate::api::{Backend, FineTuneJob};
use crate::children::Child;
use crate::names::{
    JOB_COMPLETION_INDEX_LABEL, JOBSET_NAME_LABEL, master_pod_name, training_container,
};

/// Where the rank-0 training process runs, whose log carries progress and the failure tail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rank0 {
    pub pod: String,
    pub container: &'static str,
}

/// The rank-0 pod and container of `job`'s training child. A PyTorchJob's is named
/// `<name>-master-0`, whether or not it is among `pods`. A TrainJob's has a random name: it is
/// the pod of completion index 0 of its JobSet among `pods` (a live one before one being
/// deleted, then the newest: a recreated pod replaces a failed one kept for its log).
pub fn rank0(job: &FineTuneJob, pods: &[Pod]) -> Option<Rank0> {
    let name = job.name_any();
    let container = training_container(job.spec.backend);
    let pod = match job.spec.backend {
        Backend::PyTorchJob => master_pod_name(&name),
        Backend::TrainJob => pods
            .iter()
            .filter(|p| {
                let labels = p.labels();
                labels.get(JOBSET_NAME_LABEL) == Some(&name)
                    && labels.get(JOB_COMPLETION_INDEX_LABEL).map(String::as_str) == Some("0")
            })
            .max_by_key(|p| {
                (
                    p.metadata.deletion_timestamp.is_none(),
                    p.metadata.creation_timestamp.clone(),
                )
            })?
            .name_any(),
    };
    Some(Rank0 { pod, container })
}

/// The rank-0 pod itself, when it is among `pods`.
pub fn rank0_pod<'a>(job: &FineTuneJob, pods: &'a [Pod]) -> Option<(&'a Pod, &'static str)> {
    let rank0 = rank0(job, pods)?;
    let pod = pods.iter().find(|p| p.name_any() == rank0.pod)?;
    Some((pod, rank0.container))
}

/// How a container ended.
#[derive(Clone, Debug, PartialEq)]
pub struct Termination {
    pub pod: String,
    pub container: String,
    pub exit_code: i32,
    /// Kubelet's reason, e.g. Error, OOMKilled, Completed.
    pub reason: Option<String>,
    pub restarts: i32,
}

impl Termination {
    /// "pod P container C exited with code N (Reason)".
    pub fn describe(&self) -> String {
        let reason = self
            .reason
            .as_deref()
            .map(|r| format!(" ({r})"))
            .unwrap_or_default();
        format!(
            "pod {} container {} exited with code {}{reason}",
            self.pod, self.container, self.exit_code
        )
    }
}

fn container_status<'a>(pod: &'a Pod, container: &str) -> Option<&'a ContainerStatus> {
    pod.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .iter()
        .find(|c| c.name == container)
}

/// The container's current termination, or the last one if it restarted since.
pub fn termination(pod: &Pod, container: &str) -> Option<Termination> {
    let status = container_status(pod, container)?;
    let terminated = status
        .state
        .as_ref()
        .and_then(|s| s.terminated.as_ref())
        .or_else(|| {
            status
                .last_state
                .as_ref()
                .and_then(|s| s.terminated.as_ref())
        })?;
    Some(Termination {
        pod: pod.name_any(),
        container: container.to_string(),
        exit_code: terminated.exit_code,
        reason: terminated.reason.clone(),
        restarts: status.restart_count,
    })
}

/// The most relevant failed container among `pods`: a non-zero exit, preferring the pod named
/// `preferred` (the rank-0 pod), then the most recently created.
pub fn failed_container(pods: &[Pod], container: &str, preferred: &str) -> Option<Termination> {
    let mut failed: Vec<(&Pod, Termination)> = pods
        .iter()
        .filter_map(|p| termination(p, container).map(|t| (p, t)))
        .filter(|(_, t)| t.exit_code != 0)
        .collect();
    failed.sort_by_key(|(p, _)| {
        (
            p.name_any() == preferred,
            p.metadata.creation_timestamp.clone(),
        )
    });
    failed.pop().map(|(_, t)| t)
}

/// A container that restarted more often than the backoff limit allows. The PyTorchJob never
/// shows this: a pod that keeps restarting in place looks Running to the training operator.
pub fn restarting_too_often(
    pods: &[Pod],
    container: &str,
    backoff_limit: i32,
) -> Option<Termination> {
    pods.iter().find_map(|pod| {
        let status = container_status(pod, container)?;
        (status.restart_count > backoff_limit).then(|| {
            termination(pod, container).unwrap_or(Termination {
                pod: pod.name_any(),
                container: container.to_string(),
                exit_code: 0,
                reason: None,
                restarts: status.restart_count,
            })
        })
    })
}

/// Whether Kubernetes stopped the pod on purpose (eviction, preemption, node drain, deletion):
/// the `DisruptionTarget` condition.
pub fn disrupted(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|c| c.type_ == "DisruptionTarget" && c.status == "True")
}

/// Why Kubernetes stopped the pod on purpose, from its `DisruptionTarget` condition:
/// "was stopped by Kubernetes (EvictionByEvictionAPI: ...)".
pub fn disruption(pod: &Pod) -> Option<String> {
    let condition = pod
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "DisruptionTarget" && c.status == "True")?;
    let why = match (&condition.reason, &condition.message) {
        (Some(r), Some(m)) => format!(" ({r}: {m})"),
        (Some(r), None) => format!(" ({r})"),
        (None, Some(m)) => format!(" ({m})"),
        (None, None) => String::new(),
    };
    Some(format!("was stopped by Kubernetes{why}"))
}

/// The pods of the child `C` of the FineTuneJob `job_name`, by the label its controller sets.
pub fn of<C: Child>(pods: &[Pod], job_name: &str) -> Vec<Pod> {
    let child = C::name(job_name);
    pods.iter()
        .filter(|p| C::is_pod_of(p, &child))
        .cloned()
        .collect()
}
