//! Why a run failed or cannot go on, from pod state and log patterns, in words a user acts on;
//! and which container's last lines explain a failure (`failure_source`). Pure: it reads the
//! pods and log lines it is given. What log lines alone say is [`log`]'s, which
//! `finetune-operator inspect-log` reads logs with too.

pub mod log;

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;

use super::decision::LogSource;
use super::pods;
use super::reason::{self, Reason};
use super::world::Observed;
use crate::api::FineTuneJob;
use crate::children::{Child, Outcome};
use crate::names::{PREPROCESS_CONTAINER, training_container};

/// A pod waiting less than this for a node, a volume or its image is just starting: volumes
/// bind and GPUs free up within seconds. Only a longer wait is worth a Stalled condition.
pub const BLOCKED_GRACE: Duration = Duration::from_secs(60);

/// A specific reason (a condition reason) and what it means.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnosis {
    pub reason: Reason,
    pub detail: String,
}

fn diagnosis(reason: Reason, detail: String) -> Option<Diagnosis> {
    Some(Diagnosis { reason, detail })
}

/// Why pods cannot start: no node fits (not enough GPUs), a volume is not bound, or the image
/// cannot be pulled. These never fail a job by themselves (a node may come, an image may be
/// pushed), so they are reported while the job waits. With `since`, only pods created at least
/// [`BLOCKED_GRACE`] before that time count.
pub fn blocked(pods: &[Pod], since: Option<&Time>) -> Option<Diagnosis> {
    for pod in pods {
        if pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        if let (Some(now), Some(created)) = (since, pod.metadata.creation_timestamp.as_ref())
            && now.0.as_second() - created.0.as_second() < BLOCKED_GRACE.as_secs() as i64
        {
            continue;
        }
        let status = pod.status.as_ref();
        let unschedulable = status
            .and_then(|s| s.conditions.as_ref())
            .into_iter()
            .flatten()
            .find(|c| {
                c.type_ == "PodScheduled"
                    && c.status == "False"
                    && c.reason.as_deref() == Some("Unschedulable")
            });
        if let Some(c) = unschedulable {
            let message = c.message.clone().unwrap_or_default();
            let lower = message.to_lowercase();
            let reason = if lower.contains("persistentvolumeclaim") || lower.contains("unbound") {
                reason::VOLUME_NOT_BOUND
            } else if lower.contains("insufficient") && lower.contains("gpu") {
                reason::INSUFFICIENT_GPUS
            } else {
                reason::UNSCHEDULABLE
            };
            return diagnosis(
                reason,
                format!("pod {} cannot be scheduled: {message}", pod.name_any()),
            );
        }
        let waiting = status
            .and_then(|s| s.container_statuses.as_ref())
            .into_iter()
            .flatten()
            .filter_map(|c| Some((c, c.state.as_ref()?.waiting.as_ref()?)))
            .find(|(_, w)| {
                matches!(
                    w.reason.as_deref(),
                    Some("ErrImagePull" | "ImagePullBackOff" | "InvalidImageName")
                )
            });
        if let Some((container, w)) = waiting {
            return diagnosis(
                reason::IMAGE_PULL_FAILED,
                format!(
                    "pod {} container {} cannot pull its image ({}{})",
                    pod.name_any(),
                    container.name,
                    w.reason.as_deref().unwrap_or_default(),
                    w.message
                        .as_deref()
                        .map(|m| format!(": {m}"))
                        .unwrap_or_default()
                ),
            );
        }
        // No scheduler has looked at the pod at all (no PodScheduled condition, not even False):
        // its schedulerName names a scheduler that does not run. Only a stall check (with
        // `since`, past the grace period) says so.
        let never_looked_at = since.is_some()
            && status.and_then(|s| s.phase.as_deref()) == Some("Pending")
            && !status
                .and_then(|s| s.conditions.as_ref())
                .into_iter()
                .flatten()
                .any(|c| c.type_ == "PodScheduled");
        if never_looked_at {
            return diagnosis(
                reason::NOT_SCHEDULED,
                format!(
                    "pod {} has not been considered by any scheduler; check that the scheduler \
                     named in scheduling.schedulerName runs in the cluster",
                    pod.name_any()
                ),
            );
        }
    }
    None
}

/// Why a container failed: killed for memory, or what its last lines `log` say ([`log::read`]:
/// CUDA out of memory, a signal to torchrun, an NCCL error or timeout, a refused command line),
/// or one of the reasons pods could not start.
pub fn failure(pods: &[Pod], container: &str, log: Option<&str>) -> Option<Diagnosis> {
    let oom_killed = pods.iter().find(|pod| {
        let statuses = pod
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref());
        statuses.into_iter().flatten().any(|c| {
            c.name == container
                && [c.state.as_ref(), c.last_state.as_ref()]
                    .into_iter()
                    .flatten()
                    .filter_map(|s| s.terminated.as_ref())
                    .any(|t| t.reason.as_deref() == Some("OOMKilled"))
        })
    });
    if let Some(pod) = oom_killed {
        return diagnosis(
            reason::OOM_KILLED,
            format!(
                "pod {} container {container} was killed for using more memory than its limit; raise resources.memory (training) or preprocess.resources",
                pod.name_any()
            ),
        );
    }
    if let Some(found) = log.and_then(|l| log::read(l).diagnosis) {
        return Some(found);
    }
    blocked(pods, None)
}

/// The container whose last lines explain a failure in `observed`, if one failed: the failed
/// preprocess pod, or the failing training pod (the rank-0 pod first).
pub(crate) fn failure_source(job: &FineTuneJob, observed: &Observed) -> Option<LogSource> {
    let name = job.name_any();
    if let Some(pre) = observed.preprocess_job.present()
        && pre.failed_message().is_some()
    {
        let job_pods = pods::of::<Job>(&observed.pods, &name);
        return pods::failed_container(&job_pods, PREPROCESS_CONTAINER, "").map(|t| LogSource {
            pod: t.pod,
            container: t.container,
        });
    }
    let training = observed.training.present()?;
    let container = training_container(job.spec.backend);
    let rank0 = pods::rank0(job, &observed.pods).map(|r| r.pod);
    let pod = if matches!(training.finished(), Some(Outcome::Failed(_))) {
        pods::failed_container(
            &observed.pods,
            container,
            rank0.as_deref().unwrap_or_default(),
        )
        .map(|t| t.pod)
        .or(rank0)?
    } else {
        pods::restarting_too_often(&observed.pods, container, job.spec.backoff_limit)?.pod
    };
    Some(LogSource {
        pod,
        container: container.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(status: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "ft-master-0"}, "status": status}))
            .unwrap()
    }

    #[test]
    fn unschedulable_pods_are_told_apart() {
        let unschedulable = |message: &str| {
            pod(
                json!({"conditions": [{"type": "PodScheduled", "status": "False",
                "reason": "Unschedulable", "message": message}]}),
            )
        };
        let gpus = unschedulable("0/4 nodes are available: 4 Insufficient nvidia.com/gpu.");
        assert_eq!(blocked(&[gpus], None).unwrap().reason, "InsufficientGPUs");
        let volume = unschedulable(
            "0/4 nodes are available: pod has unbound immediate PersistentVolumeClaims.",
        );
        assert_eq!(blocked(&[volume], None).unwrap().reason, "VolumeNotBound");
        let other =
            unschedulable("0/4 nodes are available: 4 node(s) didn't match Pod's node affinity.");
        let d = blocked(&[other], None).unwrap();
        assert_eq!(d.reason, "Unschedulable");
        assert!(d.detail.contains("node affinity"));
    }

    #[test]
    fn a_pod_no_scheduler_looks_at_is_not_scheduled_after_the_grace_period() {
        let p: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "ft-master-0", "creationTimestamp": "2026-11-26T10:00:00Z"},
            "status": {"phase": "Pending"}}))
        .unwrap();
        let later = Time("2026-11-26T10:05:00Z".parse().unwrap());
        let d = blocked(std::slice::from_ref(&p), Some(&later)).unwrap();
        assert_eq!(d.reason, "NotScheduled");
        assert!(d.detail.contains("schedulerName"));
        // Not a reason a failure is explained by, and not before the grace period.
        assert_eq!(blocked(std::slice::from_ref(&p), None), None);
        let soon = Time("2026-11-26T10:00:30Z".parse().unwrap());
        assert_eq!(blocked(&[p], Some(&soon)), None);
    }

    #[test]
    fn a_pod_just_created_is_not_blocked_yet() {
        let mut p = pod(
            json!({"conditions": [{"type": "PodScheduled", "status": "False",
            "reason": "Unschedulable", "message": "pod has unbound immediate PersistentVolumeClaims"}]}),
        );
        p.metadata.creation_timestamp = Some(Time("2026-11-26T10:00:00Z".parse().unwrap()));
        let soon = Time("2026-11-26T10:00:30Z".parse().unwrap());
        let later = Time("2026-11-26T10:01:00Z".parse().unwrap());
        assert_eq!(blocked(std::slice::from_ref(&p), Some(&soon)), None);
        assert_eq!(
            blocked(&[p], Some(&later)).unwrap().reason,
            "VolumeNotBound"
        );
    }

    #[test]
    fn image_pull_failures_are_blocking() {
        let p = pod(
            json!({"containerStatuses": [{"name": "pytorch", "ready": false, "restartCount": 0,
            "image": "i", "imageID": "", "state": {"waiting": {"reason": "ImagePullBackOff",
            "message": "Back-off pulling image \"registry.example/x:1\""}}}]}),
        );
        let d = blocked(&[p], None).unwrap();
        assert_eq!(d.reason, "ImagePullFailed");
        assert!(d.detail.contains("registry.example/x:1"), "{}", d.detail);
    }

    #[test]
    fn failures_are_classified_from_pod_state_then_log() {
        let oom = pod(
            json!({"containerStatuses": [{"name": "pytorch", "ready": false, "restartCount": 0,
            "image": "i", "imageID": "", "state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}]}),
        );
        assert_eq!(
            failure(&[oom], "pytorch", Some("CUDA out of memory"))
                .unwrap()
                .reason,
            "OOMKilled"
        );
        let plain = pod(json!({}));
        let cases = [
            (
                "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB",
                "CUDAOutOfMemory",
            ),
            (
                "[Rank 1] Watchdog caught collective operation timeout: WorkNCCL(SeqNum=7) ran for 600000 milliseconds before timing out",
                "NCCLTimeout",
            ),
            (
                "RuntimeError: NCCL error in: ProcessGroupNCCL.cpp:1970, unhandled system error (run with NCCL_DEBUG=INFO for details), NCCL version 2.20.5\nncclSystemError: System call failed",
                "NCCLError",
            ),
        ];
        for (log, reason) in cases {
            assert_eq!(
                failure(std::slice::from_ref(&plain), "pytorch", Some(log))
                    .unwrap()
                    .reason,
                reason,
                "{log}"
            );
        }
        assert_eq!(
            failure(&[plain], "pytorch", Some("ValueError: bad data")),
            None
        );
    }
}
