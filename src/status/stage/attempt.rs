//! Attempts of training: what stopped a run that did not fail on its own, and what follows.
//!
//! A disruption (an eviction, a node drain or loss, a SIGTERM from outside, an on-demand
//! checkpoint's exit) ends the PyTorchJob although nothing is wrong with the run: it is
//! replaced by a new one on the same output directory, which InstructLab resumes from its last
//! full-state checkpoint, as long as spec.disruptionLimit allows. Kueue's preemption and
//! spec.suspend stop the pods without ending the PyTorchJob; the attempt ends when its pods are
//! gone. Each end counts the attempt's GPU time (`status.usage`). Pure.

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;

use crate::api::{CheckpointKind, PyTorchJob};
use crate::children::{Child, is_training_pod_of};
use crate::names::CHECKPOINT_REQUESTED_ANNOTATION;
use crate::status::decider::Decider;
use crate::status::decision::{ChildAction, Severity};
use crate::status::pods;
use crate::status::reason::{self, Reason};

/// Why training stopped when the run itself did not fail.
#[derive(Clone, Debug, PartialEq)]
pub(in crate::status) struct Disruption {
    /// Evicted (a pod has DisruptionTarget), Interrupted, or CheckpointRequested.
    pub reason: Reason,
    /// What happened, for the message.
    pub cause: String,
    /// Counted against spec.disruptionLimit: not when the user asked for the checkpoint.
    pub counted: bool,
}

/// The disruption that ended the PyTorchJob, if its end was one: a training pod Kubernetes
/// marked with DisruptionTarget, torchrun's SIGTERM (`terminated`: the log's diagnosis), or an
/// on-demand checkpoint's exit (`on_demand`). None: the run ended on its own.
pub(in crate::status) fn disruption(
    d: &Decider,
    terminated: bool,
    on_demand: bool,
) -> Option<Disruption> {
    let disrupted = training_pods(d)
        .find_map(|p| pods::disruption(p).map(|why| format!("pod {} {why}", p.name_any())));
    if on_demand
        && disrupted.is_none()
        && let Some(at) = checkpoint_requested(d)
    {
        return Some(Disruption {
            reason: reason::CHECKPOINT_REQUESTED,
            cause: format!(
                "a checkpoint was asked for at {at} (kubectl finetune checkpoint); InstructLab saved it and exited with code 0"
            ),
            counted: false,
        });
    }
    let exit = if on_demand {
        Some("InstructLab saved an on-demand checkpoint and exited with code 0")
    } else if terminated {
        Some("torchrun got SIGTERM from outside the run and exited")
    } else {
        None
    };
    match (disrupted, exit) {
        (Some(pod), Some(exit)) => Some(Disruption {
            reason: reason::EVICTED,
            cause: format!("{pod}; {exit}"),
            counted: true,
        }),
        (Some(pod), None) => Some(Disruption {
            reason: reason::EVICTED,
            cause: pod,
            counted: true,
        }),
        (None, Some(exit)) => Some(Disruption {
            reason: reason::INTERRUPTED,
            cause: exit.to_string(),
            counted: true,
        }),
        (None, None) => None,
    }
}

/// Goes on after `disruption` as a new attempt: the ended PyTorchJob is deleted and, once it
/// is gone, created again on the same output directory. Past spec.disruptionLimit the job
/// fails instead.
pub(in crate::status) fn retry(d: &mut Decider, disruption: Disruption) {
    let limit = d.job().spec.disruption_limit;
    let usage = d.usage().unwrap_or_default();
    let done = usage.disruptions;
    let attempt = usage.attempts.max(1);
    let child = d.training_child();
    if disruption.counted && done >= limit {
        let message = format!(
            "{child} stopped: {}; training was interrupted {} times, more than disruptionLimit {limit}",
            disruption.cause,
            done + 1
        );
        d.end_attempt(true);
        d.usage_mut().disruptions = done.saturating_add(1);
        d.fail(reason::DISRUPTION_LIMIT_EXCEEDED, &message, None);
        d.event(
            Severity::Warning,
            reason::DISRUPTION_LIMIT_EXCEEDED,
            message,
            None,
        );
        return;
    }
    d.end_attempt(true);
    let counter = if disruption.counted {
        d.usage_mut().disruptions = done.saturating_add(1);
        format!(" (disruption {} of at most {limit})", done + 1)
    } else {
        String::new()
    };
    let from = match last_full_state(d) {
        Some(path) => format!("its last full-state checkpoint {path}"),
        None => "the start (no full-state checkpoint was saved yet)".to_string(),
    };
    let message = format!(
        "{child} stopped: {}; attempt {attempt} ended, and attempt {} resumes from {from}{counter}",
        disruption.cause,
        attempt + 1,
    );
    let kind = d.training_kind();
    d.act(ChildAction::Delete(kind));
    d.forget_child(kind);
    d.set_phase(crate::api::Phase::Training, disruption.reason, &message);
    // Asked for, it is news; a disruption is a warning.
    let severity = match disruption.counted {
        true => Severity::Warning,
        false => Severity::Normal,
    };
    d.event(severity, disruption.reason, message, None);
}

/// When the user asked for a checkpoint during the running attempt (the annotation
/// `kubectl finetune checkpoint` sets), as it was written.
fn checkpoint_requested(d: &Decider) -> Option<String> {
    let value = d
        .job()
        .metadata
        .annotations
        .as_ref()?
        .get(CHECKPOINT_REQUESTED_ANNOTATION)?;
    let at: jiff::Timestamp = value.parse().ok()?;
    let since = d.usage()?.running_since?;
    (at >= since.0).then(|| value.clone())
}

/// The newest full-state checkpoint of the run, by path.
fn last_full_state(d: &Decider) -> Option<String> {
    d.status()
        .checkpoints
        .iter()
        .rfind(|c| c.kind == CheckpointKind::FullState)
        .map(|c| c.path.clone())
}

/// The pods of the training child, by the label its controller sets.
pub(in crate::status) fn training_pods<'a>(d: &Decider<'a>) -> impl Iterator<Item = &'a Pod> {
    let name = PyTorchJob::name(d.name());
    let kind = d.training_kind();
    d.obs()
        .pods
        .iter()
        .filter(move |p| is_training_pod_of(kind, p, &name))
}

/// Whether the PyTorchJob's training pods have all stopped: none is pending or running.
/// Pods on their way out (deleted, still saving an on-demand checkpoint) still count.
pub(in crate::status) fn pods_stopped(d: &Decider) -> bool {
    !training_pods(d).any(|p| {
        let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
        !matches!(phase, Some("Succeeded" | "Failed"))
    })
}

/// Whether an attempt is running (it began and has not ended).
pub(in crate::status) fn running(d: &Decider) -> bool {
    d.usage().is_some_and(|u| u.running_since.is_some())
}

/// Something outside the run (spec.suspend, Kueue) stopped its pods: the attempt ends once
/// every pod has stopped, so that the last lines of the rank-0 log (the on-demand checkpoint
/// a stopping pod saves) count first. Call it after the log was followed.
pub(in crate::status) fn end_when_stopped(d: &mut Decider) {
    if running(d) && pods_stopped(d) {
        d.end_attempt(true);
    }
}
