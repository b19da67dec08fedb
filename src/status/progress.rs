//! Progress from the rank-0 log, and stall detection: the part of a decision about whether a
//! running job moves.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;

use super::decider::Decider;
use super::{PodlessChild, Severity, conditions, diagnose, pods, reason};
use crate::api::{Phase, condition};

use crate::logs::progress::{FoldContext, LogState, Transition, fold};
use crate::names;
use crate::names::preprocess_job_name;

impl Decider<'_> {
    /// Folds the log lines read this time into progress, checkpoints and the resume point, and
    /// reports each epoch end, checkpoint and resume as an event.
    pub(super) fn follow_log(&mut self) {
        let Some(log) = &self.obs.log else {
            return;
        };
        let context = FoldContext {
            total_epochs: Some(i64::from(self.job.spec.training.epochs)),
            now: Some(self.obs.now.clone()),
        };
        let folded = fold(&LogState::from_status(&self.new), &log.records, &context);
        self.new.progress = folded.state.progress;
        self.new.checkpoints = folded.state.checkpoints;
        self.new.resumed_from = folded.state.resumed_from;
        if log.cursor.is_some() {
            self.new.log_cursor = log.cursor.clone();
        }
        for transition in folded.transitions {
            let action = format!("{}/{}", transition.reason(), transition_key(&transition));
            self.event(
                Severity::Normal,
                transition.reason(),
                transition.note(),
                None,
            );
            if let Some(event) = self.events.last_mut() {
                event.action = action;
            }
        }
    }

    /// The Stalled condition: pods that cannot start, or no new step within
    /// progressDeadlineSeconds. A Warning event marks the moment it turns true.
    pub(super) fn stalled(&mut self) {
        let (event_reason, job_pods) = match self.new.phase {
            Some(Phase::Initializing) => (
                reason::PREPROCESS_STALLED,
                pods::of_job(&self.obs.pods, &preprocess_job_name(&self.name)),
            ),
            Some(Phase::Training) => (reason::TRAINING_STALLED, self.training_pods()),
            _ => return,
        };
        let verdict = match diagnose::blocked(&job_pods, Some(&self.obs.now)) {
            Some(d) => Some((d.reason, d.detail)),
            None => self.no_pods().or_else(|| self.progress_overdue()),
        };
        let was_stalled = conditions::is_true(&self.new.conditions, condition::STALLED);
        match verdict {
            Some((why, message)) => {
                self.set_condition(condition::STALLED, true, why, &message);
                if !was_stalled {
                    self.event(Severity::Warning, event_reason, message, None);
                }
            }
            // Only a job that was ever stalled carries the condition.
            None if self
                .new
                .conditions
                .iter()
                .any(|c| c.type_ == condition::STALLED) =>
            {
                self.set_condition(
                    condition::STALLED,
                    false,
                    reason::PROGRESSING,
                    "The pods run and training makes progress",
                );
            }
            None => {}
        }
    }

    /// A child that has created no pod within [`diagnose::BLOCKED_GRACE`] ([`podless_child`]).
    /// The child's `FailedCreate` event says why; the message is kept once set, so it does not
    /// change while the stall lasts.
    fn no_pods(&mut self) -> Option<(&'static str, String)> {
        let (kind, name) = match super::podless_child(self.job, &self.new, self.obs)? {
            PodlessChild::Wait(after) => {
                self.requeue_at_most(Some(after));
                return None;
            }
            PodlessChild::Stalled { kind, name, .. } => (kind, name),
        };
        if let Some(c) = self.new.conditions.iter().find(|c| {
            c.type_ == condition::STALLED && c.status == "True" && c.reason == reason::NO_PODS
        }) {
            return Some((reason::NO_PODS, c.message.clone()));
        }
        let grace = diagnose::BLOCKED_GRACE.as_secs();
        let mut message = format!("{kind} {name} has created no pod in {grace}s");
        match &self.obs.child_failed_create {
            Some(why) => message.push_str(&format!(": {why}")),
            None => message.push_str(&format!(
                "; `kubectl describe {} {name}` shows why",
                kind.to_lowercase()
            )),
        }
        Some((reason::NO_PODS, message))
    }

    fn training_pods(&self) -> Vec<Pod> {
        self.obs
            .pods
            .iter()
            .filter(|p| p.labels().get(names::TRAINING_JOB_LABEL) == Some(&self.name))
            .cloned()
            .collect()
    }

    /// With progressDeadlineSeconds: how long training has gone without a new step, when that
    /// is too long. Otherwise it asks to look again when the deadline would pass.
    fn progress_overdue(&mut self) -> Option<(&'static str, String)> {
        let limit = self.job.spec.progress_deadline_seconds?;
        // Held by the queue, nothing can progress; the clock restarts on re-admission.
        if self.new.phase != Some(Phase::Training)
            || self.new.reason.as_deref() == Some(reason::SUSPENDED_BY_QUEUE)
        {
            return None;
        }
        // The progress's updateTime moves only when a step (or checkpoint) is read.
        // The last step, or the start of the current run (a resume, a re-admission) if later.
        let last = [
            self.new
                .progress
                .as_ref()
                .and_then(|p| p.update_time.clone()),
            self.new.training_start_time.clone(),
        ]
        .into_iter()
        .flatten()
        .max_by_key(|t| t.0)?;
        let quiet = self.obs.now.0.as_second() - last.0.as_second();
        if quiet < limit {
            self.requeue_at_most(Some(Duration::from_secs((limit - quiet) as u64)));
            return None;
        }
        Some((
            reason::PROGRESS_DEADLINE_EXCEEDED,
            // The time of the last step, not a running count of seconds: the message must stay
            // the same from one reconcile to the next, or a stalled job is rewritten each time.
            format!(
                "no new training step in the rank-0 log since {} (progressDeadlineSeconds {limit})",
                last.0
            ),
        ))
    }
}

/// What tells one transition from the next of its kind: the epoch, or the checkpoint.
fn transition_key(transition: &Transition) -> String {
    let key = match transition {
        Transition::EpochCompleted { epoch, .. } => format!("epoch-{epoch}"),
        Transition::CheckpointSaved { checkpoint }
        | Transition::ResumedFromCheckpoint { checkpoint } => checkpoint
            .path
            .rsplit('/')
            .take(2)
            .collect::<Vec<_>>()
            .join("-"),
    };
    // The apiserver allows 128 bytes for an action.
    crate::logs::text::prefix_within(&key, 96).to_string()
}
