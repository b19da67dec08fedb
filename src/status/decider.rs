//! The stages of a decision, in order: a deleted child, suspension, a missing kind,
//! preprocessing, training, the deadline, a stall.

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use kube::ResourceExt;

use super::*;
use crate::api::{FineTuneJob, FineTuneJobStatus, Phase, PyTorchJob, condition};
use crate::names;
use crate::names::{PREPROCESS_CONTAINER, PYTORCH_CONTAINER, master_pod_name, preprocess_job_name};

/// Whether the stage is done deciding, or the next stage should look too.
pub(super) enum Flow {
    Continue,
    Stop,
}

pub(super) struct Decider<'a> {
    pub(super) job: &'a FineTuneJob,
    pub(super) name: String,
    pub(super) obs: &'a Observed,
    pub(super) old: FineTuneJobStatus,
    pub(super) new: FineTuneJobStatus,
    pub(super) generation: Option<i64>,
    pub(super) actions: Vec<ChildAction>,
    pub(super) events: Vec<PlannedEvent>,
    pub(super) requeue_after: Option<Duration>,
}

impl<'a> Decider<'a> {
    pub(super) fn new(job: &'a FineTuneJob, obs: &'a Observed) -> Self {
        let old = job.status.clone().unwrap_or_default();
        Self {
            job,
            name: job.name_any(),
            obs,
            new: old.clone(),
            old,
            generation: job.metadata.generation,
            actions: Vec::new(),
            events: Vec::new(),
            requeue_after: None,
        }
    }

    pub(super) fn finish(mut self) -> Decision {
        bounds::bound_status(&mut self.new);
        Decision {
            status: self.new,
            actions: self.actions,
            events: self.events,
            requeue_after: self.requeue_after,
            owned: OwnedChildren::of(self.obs),
        }
    }

    pub(super) fn run(&mut self) {
        self.new.observed_generation = self.generation;
        if self.old.phase.is_some_and(Phase::is_finished) {
            self.finished();
            return;
        }
        if self.new.start_time.is_none() {
            self.new.start_time = Some(self.obs.now.clone());
            self.set_phase(Phase::Pending, "Accepted", "Accepted; starting");
        }
        // What admission could not check fails the job before anything is created.
        if self.new.preprocess_job.is_none()
            && self.new.pytorch_job.is_none()
            && let Some(problem) = pod_metadata::invalid_pod_metadata(self.job)
        {
            self.set_condition(condition::ACCEPTED, false, reason::INVALID_SPEC, &problem);
            self.fail(reason::INVALID_SPEC, &problem, None);
            self.event(Severity::Warning, reason::INVALID_SPEC, problem, None);
            return;
        }
        if self.new.preprocess_job.is_none()
            && self.new.pytorch_job.is_none()
            && let Some(other) = self.obs.output_in_use_by.clone()
        {
            let message = format!(
                "FineTuneJob {other} writes to the same output directory (claim {}, path {}); \
                 two runs would overwrite each other's checkpoints: set a distinct output.path",
                self.job.spec.output.claim_name,
                self.job.spec.output_dir(&self.name)
            );
            self.fail(reason::OUTPUT_IN_USE, &message, None);
            self.event(Severity::Warning, reason::OUTPUT_IN_USE, message, None);
            return;
        }
        for stage in [
            Self::children_conflict,
            Self::children_deleted,
            Self::suspend,
            Self::kind_installed,
            Self::preprocess,
            Self::training,
            Self::deadline,
        ] {
            if let Flow::Stop = stage(self) {
                break;
            }
        }
        self.creation_allowed();
        self.stalled();
        if self.new.phase == Some(Phase::Training) {
            self.requeue_at_most(self.obs.next_log_read);
        }
        if !matches!(self.obs.pytorch_job, Lookup::KindMissing) {
            self.set_condition(
                condition::ACCEPTED,
                true,
                "Accepted",
                "The spec was accepted",
            );
        }
        self.delete_children_if_finished();
    }

    /// A child the apiserver forbade before is being created now: the Stalled condition that
    /// said so is over, whatever the phase (a queued job stays Pending).
    fn creation_allowed(&mut self) {
        let forbidden = self.new.conditions.iter().any(|c| {
            c.type_ == condition::STALLED
                && c.status == "True"
                && c.reason == reason::CREATE_FORBIDDEN
        });
        // Created now, or found created (the status write after the create was lost).
        let created = self
            .actions
            .iter()
            .any(|a| matches!(a, ChildAction::Create(_)))
            || self.obs.preprocess_job.present().is_some()
            || self.obs.pytorch_job.present().is_some();
        if forbidden && created {
            self.set_condition(
                condition::STALLED,
                false,
                reason::PROGRESSING,
                "The API server allowed creating the child",
            );
        }
    }

    // ---- stages -------------------------------------------------------------------------

    /// An object with a child's name exists and is not ours: never adopt, change or delete it
    /// (it may be another team's job); fail with a reason that says what to do.
    pub(super) fn children_conflict(&mut self) -> Flow {
        let (kind, child, event_reason) = if matches!(self.obs.preprocess_job, Lookup::Foreign) {
            (
                "Job",
                preprocess_job_name(&self.name),
                reason::PREPROCESS_FAILED,
            )
        } else if matches!(self.obs.pytorch_job, Lookup::Foreign) {
            ("PyTorchJob", self.name.clone(), reason::TRAINING_FAILED)
        } else {
            return Flow::Continue;
        };
        let message = format!(
            "a {kind} named {child} already exists and is not owned by this FineTuneJob; \
             it is left untouched: delete or rename it, or give this FineTuneJob another name"
        );
        // A conflict on the PyTorchJob's name found while preprocessing runs: stop that too.
        let running_preprocess = self
            .obs
            .preprocess_job
            .present()
            .is_some_and(|j| !job_finished(j));
        let stop = (kind == "PyTorchJob" && running_preprocess).then_some(ChildKind::Preprocess);
        self.fail(reason::CHILD_CONFLICT, &message, stop);
        self.event(Severity::Warning, event_reason, message, None);
        Flow::Stop
    }

    /// A child we created has disappeared before the job finished: someone else deleted it.
    pub(super) fn children_deleted(&mut self) -> Flow {
        let preprocess_gone = self.new.preprocess_job.is_some()
            && !self.initialized()
            && matches!(self.obs.preprocess_job, Lookup::Absent);
        let pytorch_gone = self.new.pytorch_job.is_some()
            && matches!(self.obs.pytorch_job, Lookup::Absent | Lookup::KindMissing);
        let message = if preprocess_gone {
            format!(
                "the preprocess Job {} was deleted before it finished",
                preprocess_job_name(&self.name)
            )
        } else if pytorch_gone {
            format!(
                "the PyTorchJob {} was deleted before it finished",
                self.name
            )
        } else {
            return Flow::Continue;
        };
        let event_reason = if preprocess_gone {
            reason::PREPROCESS_FAILED
        } else {
            reason::TRAINING_FAILED
        };
        self.fail(reason::CHILD_DELETED, &message, None);
        self.event(Severity::Warning, event_reason, message, None);
        Flow::Stop
    }

    /// spec.suspend: hold creation, suspend running children; on resume, unsuspend them.
    pub(super) fn suspend(&mut self) -> Flow {
        let suspend = self.job.spec.suspend;
        let was_suspended = self.old.phase == Some(Phase::Suspended);
        let queue_managed = self.job.spec.queue_name().is_some();

        // Children whose suspension differs from what the spec asks for.
        if let Some(pre) = self.obs.preprocess_job.present() {
            let is = pre.spec.as_ref().and_then(|s| s.suspend).unwrap_or(false);
            if is != suspend && !job_finished(pre) {
                self.actions
                    .push(ChildAction::SetSuspended(ChildKind::Preprocess, suspend));
            }
        }
        if let Some(ptj) = self.obs.pytorch_job.present() {
            let is = ptj.suspended();
            // Kueue owns runPolicy.suspend of a queued job; we never fight it.
            if is != suspend && !queue_managed {
                self.actions
                    .push(ChildAction::SetSuspended(ChildKind::PyTorchJob, suspend));
            }
        }

        if suspend && queue_managed && self.new.pytorch_job.is_some() {
            // Saying Suspended while Kueue keeps the pods running would be a lie.
            self.set_condition(
                condition::SUSPENDED,
                false,
                "ManagedByQueue",
                "spec.suspend has no effect once the PyTorchJob is queued: Kueue owns its \
                 suspension (deactivate its Workload to stop it)",
            );
            return Flow::Continue;
        }
        if suspend {
            let message = "Suspended by spec.suspend; no pods run until it is set to false";
            self.set_condition(condition::SUSPENDED, true, reason::SUSPENDED, message);
            if !was_suspended {
                self.event(
                    Severity::Normal,
                    reason::SUSPENDED,
                    message.to_string(),
                    None,
                );
            }
            self.new.phase = Some(Phase::Suspended);
            self.new.reason = Some(reason::SUSPENDED.to_string());
            self.new.message = Some(message.to_string());
            return Flow::Stop;
        }
        if was_suspended {
            self.set_condition(
                condition::SUSPENDED,
                false,
                reason::RESUMED,
                "Resumed: spec.suspend is false",
            );
            self.event(
                Severity::Normal,
                reason::RESUMED,
                "Resumed: spec.suspend is false".to_string(),
                None,
            );
            // The deadline counts again from the resume, as for a Kubernetes Job.
            if self.new.training_start_time.is_some() {
                self.new.training_start_time = Some(self.obs.now.clone());
            }
            // Return to the phase the world is in; the next stages set it.
            self.new.phase = Some(self.resume_phase());
        }
        Flow::Continue
    }

    /// Without the PyTorchJob kind nothing can train: say so instead of starting (or failing),
    /// and look again from time to time, so that installing the training operator is enough.
    pub(super) fn kind_installed(&mut self) -> Flow {
        if !matches!(self.obs.pytorch_job, Lookup::KindMissing) {
            return Flow::Continue;
        }
        let message = "The kubeflow.org/v1 PyTorchJob kind is not installed in this cluster; \
                       install the Kubeflow training operator (v1.9) and the job starts by itself";
        self.set_condition(
            condition::ACCEPTED,
            false,
            reason::PYTORCHJOB_NOT_INSTALLED,
            message,
        );
        self.new.reason = Some(reason::PYTORCHJOB_NOT_INSTALLED.to_string());
        self.new.message = Some(message.to_string());
        self.requeue_after = Some(KIND_MISSING_RETRY);
        Flow::Stop
    }

    /// The Initializing phase: run the preprocess Job once.
    pub(super) fn preprocess(&mut self) -> Flow {
        if self.job.spec.preprocess.is_none() {
            self.set_condition(
                condition::INITIALIZED,
                true,
                "NoPreprocessing",
                "spec.preprocess is not set; dataset.path is used as processed data",
            );
            return Flow::Continue;
        }
        if self.initialized() {
            return Flow::Continue;
        }
        let job_name = preprocess_job_name(&self.name);
        match &self.obs.preprocess_job {
            Lookup::Absent if self.new.preprocess_job.is_none() => {
                self.actions
                    .push(ChildAction::Create(ChildKind::Preprocess));
                self.new.preprocess_job = Some(job_name.clone());
                let message = format!("Job {job_name} runs instructlab.training.data_process");
                self.set_condition(condition::INITIALIZED, false, "Preprocessing", &message);
                self.set_phase(Phase::Initializing, "Preprocessing", &message);
                self.event(Severity::Normal, reason::PREPROCESS_STARTED, message, None);
                Flow::Stop
            }
            Lookup::Present(pre) => {
                // Ours but not in the status: the operator stopped between creating it and
                // writing the status. Recording it now makes its deletion visible later.
                self.new.preprocess_job = Some(job_name.clone());
                if job_condition(pre, "Complete") {
                    let message = format!("Job {job_name} processed the data");
                    self.set_condition(
                        condition::INITIALIZED,
                        true,
                        reason::PREPROCESS_SUCCEEDED,
                        &message,
                    );
                    self.event(
                        Severity::Normal,
                        reason::PREPROCESS_SUCCEEDED,
                        message,
                        None,
                    );
                    Flow::Continue
                } else if let Some(failed) = job_condition_message(pre, "Failed") {
                    let job_pods = pods::of_job(&self.obs.pods, &job_name);
                    let termination = pods::failed_container(&job_pods, PREPROCESS_CONTAINER, "");
                    let mut message = format!("preprocess Job {job_name} failed: {failed}");
                    if let Some(t) = &termination {
                        message.push_str(&format!("; {}", t.describe()));
                    }
                    let diagnosis = diagnose::failure(
                        &job_pods,
                        PREPROCESS_CONTAINER,
                        self.obs.failure_log.as_deref(),
                    );
                    self.fail_diagnosed(reason::PREPROCESS_FAILED, diagnosis, message, None);
                    Flow::Stop
                } else {
                    let message = format!("Job {job_name} runs instructlab.training.data_process");
                    self.set_condition(condition::INITIALIZED, false, "Preprocessing", &message);
                    self.set_phase(Phase::Initializing, "Preprocessing", &message);
                    Flow::Stop
                }
            }
            // Skipped cannot happen while needs() asks for it; Absent after creation is handled
            // by children_deleted. Either way, wait for the next event.
            _ => Flow::Stop,
        }
    }

    /// The Training phase: the PyTorchJob.
    pub(super) fn training(&mut self) -> Flow {
        match &self.obs.pytorch_job {
            Lookup::Absent if self.new.pytorch_job.is_none() => {
                self.actions
                    .push(ChildAction::Create(ChildKind::PyTorchJob));
                self.new.pytorch_job = Some(self.name.clone());
                match self.job.spec.queue_name() {
                    Some(queue) => self.queued(queue),
                    None => self.training_started(),
                }
                Flow::Stop
            }
            Lookup::Present(ptj) => {
                // As for the preprocess Job: a child created before a crash is recorded now, so
                // that its log is followed and its deletion is not answered by a new one.
                self.new.pytorch_job = Some(self.name.clone());
                self.pytorch_job_state(ptj)
            }
            _ => Flow::Stop,
        }
    }

    pub(super) fn pytorch_job_state(&mut self, ptj: &PyTorchJob) -> Flow {
        // The last lines (the final epoch, the final checkpoint) count before the verdict.
        self.follow_log();
        if ptj.condition_true("Succeeded").is_some() {
            let message = format!("PyTorchJob {} finished training", self.name);
            self.set_condition(
                condition::COMPLETE,
                true,
                reason::TRAINING_SUCCEEDED,
                &message,
            );
            self.set_phase(Phase::Succeeded, reason::TRAINING_SUCCEEDED, &message);
            self.new.completion_time = Some(self.obs.now.clone());
            self.event(Severity::Normal, reason::TRAINING_SUCCEEDED, message, None);
            return Flow::Stop;
        }
        let master = master_pod_name(&self.name);
        if let Some(failed) = ptj.condition_true("Failed") {
            let termination = pods::failed_container(&self.obs.pods, PYTORCH_CONTAINER, &master);
            let mut message = format!(
                "PyTorchJob {} failed: {}",
                self.name,
                failed.message.as_deref().unwrap_or("no message")
            );
            if let Some(t) = &termination {
                message.push_str(&format!("; {}", t.describe()));
            }
            let diagnosis = self.training_diagnosis();
            self.fail_diagnosed(reason::TRAINING_FAILED, diagnosis, message, None);
            return Flow::Stop;
        }
        // Too many failed (recreated) pods, or a container restarting in place too often: both
        // are past backoffLimit, and both stop the pods.
        let too_many = self.count_pod_failures(ptj).or_else(|| {
            pods::restarting_too_often(&self.obs.pods, PYTORCH_CONTAINER, self.job.spec.backoff_limit)
                .map(|t| {
                    format!(
                        "pod {} container {} restarted {} times, more than backoffLimit {}; last exit code {}",
                        t.pod, t.container, t.restarts, self.job.spec.backoff_limit, t.exit_code
                    )
                })
        });
        if let Some(message) = too_many {
            let diagnosis = self.training_diagnosis();
            self.fail_diagnosed(
                reason::TRAINING_FAILED,
                diagnosis,
                message,
                Some(ChildKind::PyTorchJob),
            );
            return Flow::Stop;
        }
        let suspended_by_queue = self.job.spec.queue_name().is_some() && ptj.suspended();
        match (suspended_by_queue, self.new.training_start_time.is_some()) {
            (true, false) => self.queued(self.job.spec.queue_name().unwrap_or_default()),
            (false, false) => self.training_started(),
            (true, true) => self.set_phase(
                Phase::Training,
                reason::SUSPENDED_BY_QUEUE,
                &format!("Kueue suspended PyTorchJob {} (e.g. preempted)", self.name),
            ),
            (false, true) => {
                // Re-admitted: as for a Kubernetes Job, the deadline counts again from here,
                // so time spent waiting in the queue does not count.
                if self.old.reason.as_deref() == Some(reason::SUSPENDED_BY_QUEUE) {
                    self.new.training_start_time = Some(self.obs.now.clone());
                }
                let message = self.training_message();
                self.set_phase(Phase::Training, "Training", &message)
            }
        }
        Flow::Continue
    }

    /// activeDeadlineSeconds, counted from the start (or resume) of training.
    pub(super) fn deadline(&mut self) -> Flow {
        let (Some(limit), Some(started)) = (
            self.job.spec.active_deadline_seconds,
            self.new.training_start_time.as_ref(),
        ) else {
            return Flow::Continue;
        };
        // Suspended by the queue: no pods run, and the clock restarts on re-admission.
        if self.new.phase != Some(Phase::Training)
            || self.new.reason.as_deref() == Some(reason::SUSPENDED_BY_QUEUE)
        {
            return Flow::Continue;
        }
        let elapsed = self.obs.now.0.as_second() - started.0.as_second();
        if elapsed < limit {
            self.requeue_at_most(Some(Duration::from_secs((limit - elapsed) as u64)));
            return Flow::Continue;
        }
        let mut message = format!(
            "training ran for {elapsed}s, longer than activeDeadlineSeconds {limit}; its pods were stopped"
        );
        if let Some(d) = diagnose::blocked(&self.obs.pods, None) {
            message.push_str(&format!("; {}", d.detail));
        }
        let tail = Some(Tail::Fetch(LogSource {
            pod: master_pod_name(&self.name),
            container: PYTORCH_CONTAINER.to_string(),
        }));
        self.fail(
            reason::DEADLINE_EXCEEDED,
            &message,
            Some(ChildKind::PyTorchJob),
        );
        self.event(Severity::Warning, reason::DEADLINE_EXCEEDED, message, tail);
        Flow::Stop
    }

    /// A finished job: nothing changes any more, except deleting children when asked.
    pub(super) fn finished(&mut self) {
        self.delete_children_if_finished();
    }

    pub(super) fn delete_children_if_finished(&mut self) {
        if !self.new.phase.is_some_and(Phase::is_finished)
            || !self.job.spec.cleanup.delete_children_after_finished
        {
            return;
        }
        if exists(&self.obs.preprocess_job, |j| &j.metadata) {
            self.actions
                .push(ChildAction::Delete(ChildKind::Preprocess));
        }
        if exists(&self.obs.pytorch_job, |j| &j.metadata)
            && !self
                .actions
                .contains(&ChildAction::Delete(ChildKind::PyTorchJob))
        {
            self.actions
                .push(ChildAction::Delete(ChildKind::PyTorchJob));
        }
    }

    // ---- helpers ------------------------------------------------------------------------

    pub(super) fn initialized(&self) -> bool {
        conditions::is_true(&self.new.conditions, condition::INITIALIZED)
    }

    /// The phase to return to after a resume: the furthest the job had got.
    pub(super) fn resume_phase(&self) -> Phase {
        if self.new.pytorch_job.is_some() {
            Phase::Training
        } else if self.new.preprocess_job.is_some() && !self.initialized() {
            Phase::Initializing
        } else {
            Phase::Pending
        }
    }

    pub(super) fn queued(&mut self, queue: &str) {
        self.set_phase(
            Phase::Pending,
            reason::QUEUED,
            &format!(
                "PyTorchJob {} waits for Kueue to admit it from queue {queue}",
                self.name
            ),
        );
    }

    /// The same words at the start and while training, so a steady state writes nothing.
    pub(super) fn training_message(&self) -> String {
        let spec = &self.job.spec;
        format!(
            "PyTorchJob {} trains on {} node(s) with {} GPU(s) each",
            self.name, spec.resources.nodes, spec.resources.gpus_per_node
        )
    }

    pub(super) fn training_started(&mut self) {
        let message = self.training_message();
        self.new.training_start_time = Some(self.obs.now.clone());
        self.set_phase(Phase::Training, "Training", &message);
        self.event(Severity::Normal, reason::TRAINING_STARTED, message, None);
    }

    /// Fails the job with `why` (the phase's reason, e.g. TrainingFailed) and a Warning event of
    /// the same reason. A diagnosis gives the Failed condition its specific reason (e.g.
    /// CUDAOutOfMemory) and puts its advice first in the message. The event ends with the
    /// failing container's last lines.
    pub(super) fn fail_diagnosed(
        &mut self,
        why: &'static str,
        diagnosis: Option<diagnose::Diagnosis>,
        message: String,
        stop: Option<ChildKind>,
    ) {
        let message = match &diagnosis {
            Some(d) => format!("{}; {message}", d.detail),
            None => message,
        };
        self.fail(why, &message, stop);
        if let Some(d) = &diagnosis {
            self.set_condition(condition::FAILED, true, d.reason, &message);
        }
        let tail = failure_source(self.job, self.obs).map(|source| match &self.obs.failure_log {
            Some(text) => Tail::Text(text.clone()),
            None => Tail::Fetch(source),
        });
        self.event(Severity::Warning, why, message, tail);
    }

    /// Counts training pods that failed, each once (by UID), into status.podFailures. With
    /// restartPolicy ExitCode the training operator recreates a pod that exits with 128 or more
    /// as a new pod, so its restartCount stays 0 and only this count sees the repeats. Returns
    /// the failure message once the count passes backoffLimit.
    fn count_pod_failures(&mut self, ptj: &PyTorchJob) -> Option<String> {
        const KEEP: usize = 16;
        // Pods stopped on purpose (a suspension, a preemption by Kueue, an eviction) are not
        // failures of the run, even when they die with 137.
        if ptj.suspended() {
            return None;
        }
        let failed: Vec<(&str, i32)> = self
            .obs
            .pods
            .iter()
            .filter(|p| p.labels().get(names::TRAINING_JOB_LABEL) == Some(&self.name))
            .filter(|p| p.metadata.deletion_timestamp.is_none() && !pods::disrupted(p))
            .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Failed"))
            .filter_map(|p| {
                let t = pods::termination(p, PYTORCH_CONTAINER)?;
                Some((p.metadata.uid.as_deref()?, t.exit_code))
            })
            // Codes 1-127 fail the PyTorchJob itself (its Failed condition says so); only the
            // codes it retries are counted here.
            .filter(|(_, code)| *code >= 128)
            .collect();
        let mut failures = self.new.pod_failures.clone().unwrap_or_default();
        let mut changed = false;
        for (uid, code) in &failed {
            if failures.pod_uids.iter().any(|u| u == uid) {
                continue;
            }
            failures.count = failures.count.saturating_add(1);
            failures.exit_codes.push(*code);
            failures.pod_uids.push((*uid).to_string());
            changed = true;
        }
        if !changed {
            return None;
        }
        let excess = failures.exit_codes.len().saturating_sub(KEEP);
        failures.exit_codes.drain(..excess);
        // A UID is forgotten only once its pod is gone (so it is never counted twice), and
        // then only beyond the most recent few.
        let keep_from = failures.pod_uids.len().saturating_sub(KEEP);
        let mut index = 0;
        failures.pod_uids.retain(|uid| {
            let keep = index >= keep_from || failed.iter().any(|(u, _)| u == uid);
            index += 1;
            keep
        });
        let limit = self.job.spec.backoff_limit;
        let over = failures.count > limit;
        let message = over.then(|| {
            let codes: Vec<String> = failures.exit_codes.iter().map(i32::to_string).collect();
            format!(
                "training pods failed {} times, more than backoffLimit {limit} (exit codes, most recent last: {})",
                failures.count,
                codes.join(", ")
            )
        });
        self.new.pod_failures = Some(failures);
        message
    }

    /// What the training pods and the failing container's log say went wrong.
    fn training_diagnosis(&self) -> Option<diagnose::Diagnosis> {
        diagnose::failure(
            &self.obs.pods,
            PYTORCH_CONTAINER,
            self.obs.failure_log.as_deref(),
        )
    }

    /// Reconcile again within `after` at the latest.
    pub(super) fn requeue_at_most(&mut self, after: Option<Duration>) {
        if let Some(after) = after {
            self.requeue_after = Some(self.requeue_after.map_or(after, |r| r.min(after)));
        }
    }

    /// Fails the job for good; `stop` names a child whose pods must stop now.
    pub(super) fn fail(&mut self, why: &str, message: &str, stop: Option<ChildKind>) {
        self.set_condition(condition::FAILED, true, why, message);
        self.set_phase(Phase::Failed, why, message);
        self.new.completion_time = Some(self.obs.now.clone());
        match stop {
            // Kueue owns the suspension of a queued PyTorchJob and un-suspends it when it is
            // admitted again: suspending would not keep its GPUs free. Deleting it does.
            Some(ChildKind::PyTorchJob) if self.job.spec.queue_name().is_some() => {
                self.actions
                    .push(ChildAction::Delete(ChildKind::PyTorchJob));
            }
            Some(kind) => self.actions.push(ChildAction::SetSuspended(kind, true)),
            None => {}
        }
    }

    /// Sets the phase, unless that would move it backwards.
    pub(super) fn set_phase(&mut self, phase: Phase, why: &str, message: &str) {
        let rank = |p: Phase| match p {
            Phase::Pending | Phase::Suspended => 0,
            Phase::Initializing => 1,
            Phase::Training => 2,
            Phase::Succeeded | Phase::Failed => 3,
        };
        if let Some(current) = self.new.phase
            && current != Phase::Suspended
            && rank(phase) < rank(current)
        {
            return;
        }
        self.new.phase = Some(phase);
        self.new.reason = Some(why.to_string());
        self.new.message = Some(message.to_string());
    }

    pub(super) fn set_condition(&mut self, type_: &str, status: bool, why: &str, message: &str) {
        conditions::set(
            &mut self.new.conditions,
            type_,
            status,
            why,
            message,
            self.generation,
            &self.obs.now,
        );
    }

    pub(super) fn event(
        &mut self,
        severity: Severity,
        reason: &'static str,
        note: String,
        tail: Option<Tail>,
    ) {
        self.events.push(PlannedEvent {
            severity,
            reason,
            action: reason.to_string(),
            note,
            tail,
        });
    }
}

/// The child exists and is not already being deleted.
fn exists<T>(
    lookup: &Lookup<T>,
    meta: impl Fn(&T) -> &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> bool {
    lookup
        .present()
        .is_some_and(|t| meta(t).deletion_timestamp.is_none())
}

pub(super) fn job_condition(job: &Job, type_: &str) -> bool {
    job_condition_message(job, type_).is_some()
}

/// The message of the Job's condition `type_` when it is True.
fn job_condition_message(job: &Job, type_: &str) -> Option<String> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_ && c.status == "True")
        .map(|c| {
            c.message
                .clone()
                .or_else(|| c.reason.clone())
                .unwrap_or_else(|| type_.to_string())
        })
}

fn job_finished(job: &Job) -> bool {
    job_condition(job, "Complete") || job_condition(job, "Failed")
}
