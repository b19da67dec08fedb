//! The [`Decider`]: one decision under way, from the job's current status to the next one, and
//! the only writer of it. The stages (`stage/`) read the world and the status through it and
//! change them only through its methods, which keep the invariants: the phase never moves
//! backwards, a condition's transition time moves only on a change, every event has a reason of
//! `reason`, and every string is bounded when the decision is finished.
//!
//! Pure: no I/O.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;

use super::decision::{ChildAction, Decision, OwnedChildren, PlannedEvent, Severity, Tail};
use super::diagnose::{self, Diagnosis};
use super::reason::{self, Reason};
use super::stage::{self, admission, cleanup, conflict, deadline, preprocess, stall, suspend};
use super::world::{Lookup, Observed};
use super::{bounds, conditions};
use crate::api::{
    CheckpointKind, FineTuneJob, FineTuneJobStatus, LogCursor, Phase, PodFailures, Usage, condition,
};
use crate::children::{BuildError, ChildKind, NewChild};
use crate::logs::progress::LogState;
use crate::names::{preprocess_job_name, pytorch_job_name};

/// Whether a stage is done deciding, or the next stage should look too.
pub(super) enum Flow {
    Continue,
    Stop,
}

/// A stage of [`Decider::run`].
type Stage = fn(&mut Decider<'_>) -> Flow;

pub(super) struct Decider<'a> {
    job: &'a FineTuneJob,
    name: String,
    obs: &'a Observed,
    old: FineTuneJobStatus,
    new: FineTuneJobStatus,
    generation: Option<i64>,
    actions: Vec<ChildAction>,
    events: Vec<PlannedEvent>,
    requeue_after: Option<Duration>,
}

impl<'a> Decider<'a> {
    /// A decision that starts from the job's current status.
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

    /// The first status of a new job: Pending, Accepted.
    pub(super) fn accepted(job: &'a FineTuneJob, obs: &'a Observed) -> Self {
        let mut d = Self::new(job, obs);
        d.new.observed_generation = d.generation;
        d.start();
        d.accept();
        d
    }

    /// The apiserver refused to create the child `kind`: the job fails with its `message`.
    pub(super) fn rejected(
        job: &'a FineTuneJob,
        obs: &'a Observed,
        kind: ChildKind,
        message: &str,
    ) -> Self {
        let mut d = Self::new(job, obs);
        let text = format!(
            "the API server refused to create the {}: {message}",
            child_phrase(kind)
        );
        d.reject(kind, text);
        d
    }

    /// The apiserver forbids creating the child `kind`: Stalled, with its `message`, and a
    /// Warning when that is news.
    pub(super) fn forbidden(
        job: &'a FineTuneJob,
        obs: &'a Observed,
        kind: ChildKind,
        message: &str,
    ) -> Self {
        let mut d = Self::new(job, obs);
        let was_stalled = conditions::is_true(&d.new.conditions, condition::STALLED);
        let text = format!(
            "the API server forbids creating the {} (retrying with backoff): {}",
            child_phrase(kind),
            bounds::bounded(message, bounds::MAX_MESSAGE_BYTES / 2)
        );
        d.set_condition(condition::STALLED, true, reason::CREATE_FORBIDDEN, &text);
        d.explain(reason::CREATE_FORBIDDEN, &text);
        if !was_stalled {
            d.publish(PlannedEvent::warning(reason::stalled(kind), text));
        }
        d
    }

    /// The decision, with every string of the status bounded.
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

    /// Decides: the stages in order, each reading the world and the status so far.
    pub(super) fn run(&mut self) {
        self.new.observed_generation = self.generation;
        if self.old.phase.is_some_and(Phase::is_finished) {
            // Nothing changes any more, except deleting children when asked.
            cleanup::delete_children_if_finished(self);
            return;
        }
        if self.new.start_time.is_none() {
            self.start();
        }
        if let Flow::Stop = admission::before_creation(self) {
            return;
        }
        let stages: [Stage; 7] = [
            conflict::children_conflict,
            conflict::children_deleted,
            suspend::suspend,
            admission::kind_installed,
            preprocess::preprocess,
            stage::training::training,
            deadline::deadline,
        ];
        for stage in stages {
            if let Flow::Stop = stage(self) {
                break;
            }
        }
        stall::creation_allowed(self);
        stall::stalled(self);
        if self.new.phase == Some(Phase::Training) {
            self.requeue_at_most(self.obs.next_log_read);
        }
        if !matches!(self.obs.training, Lookup::KindMissing) {
            self.accept();
        }
        cleanup::delete_children_if_finished(self);
    }

    fn start(&mut self) {
        self.new.start_time = Some(self.obs.now.clone());
        self.set_phase(Phase::Pending, reason::ACCEPTED, "Accepted; starting");
    }

    fn accept(&mut self) {
        self.set_condition(
            condition::ACCEPTED,
            true,
            reason::ACCEPTED,
            "The spec was accepted",
        );
    }

    // ---- what stages read ---------------------------------------------------------------

    pub(super) fn job(&self) -> &'a FineTuneJob {
        self.job
    }

    pub(super) fn obs(&self) -> &'a Observed {
        self.obs
    }

    /// The FineTuneJob's name.
    pub(super) fn name(&self) -> &str {
        &self.name
    }

    /// The training child's kind: the PyTorchJob or the TrainJob, as `spec.backend` says.
    pub(super) fn training_kind(&self) -> ChildKind {
        ChildKind::training(self.job.spec.backend)
    }

    /// How messages name the training child: "PyTorchJob ft", "TrainJob ft".
    pub(super) fn training_child(&self) -> String {
        format!("{} {}", self.training_kind().api_kind(), self.name)
    }

    pub(super) fn now(&self) -> &'a Time {
        &self.obs.now
    }

    /// The status the decision started from.
    pub(super) fn old(&self) -> &FineTuneJobStatus {
        &self.old
    }

    /// The status so far.
    pub(super) fn status(&self) -> &FineTuneJobStatus {
        &self.new
    }

    pub(super) fn actions(&self) -> &[ChildAction] {
        &self.actions
    }

    pub(super) fn initialized(&self) -> bool {
        conditions::is_true(&self.new.conditions, condition::INITIALIZED)
    }

    // ---- what stages change -------------------------------------------------------------

    /// Sets the phase, unless that would move it backwards.
    pub(super) fn set_phase(&mut self, phase: Phase, why: Reason, message: &str) {
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
        self.explain(why, message);
    }

    /// Sets the phase whatever it was: into and out of Suspended, which spec.suspend decides.
    pub(super) fn set_phase_unranked(&mut self, phase: Phase) {
        self.new.phase = Some(phase);
    }

    /// Says why the phase is what it is, without changing it.
    pub(super) fn explain(&mut self, why: Reason, message: &str) {
        self.new.reason = Some(why.to_string());
        self.new.message = Some(message.to_string());
    }

    pub(super) fn set_condition(&mut self, type_: &str, status: bool, why: Reason, message: &str) {
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

    /// Publishes an event whose action is its reason.
    pub(super) fn event(
        &mut self,
        severity: Severity,
        reason: Reason,
        note: String,
        tail: Option<Tail>,
    ) {
        self.publish(PlannedEvent::new(severity, reason, note, tail));
    }

    pub(super) fn publish(&mut self, event: PlannedEvent) {
        self.events.push(event);
    }

    /// Records the child `kind` in the status by name: created now, or found created.
    pub(super) fn record_child(&mut self, kind: ChildKind) {
        match kind {
            ChildKind::Preprocess => {
                self.new.preprocess_job = Some(preprocess_job_name(&self.name))
            }
            ChildKind::PyTorchJob => self.new.pytorch_job = Some(pytorch_job_name(&self.name)),
            ChildKind::TrainJob => self.new.train_job = Some(pytorch_job_name(&self.name)),
        }
    }

    /// Training (re)starts now: the deadline counts from here, and an attempt begins.
    pub(super) fn start_training_clock(&mut self) {
        self.new.training_start_time = Some(self.obs.now.clone());
        self.begin_attempt();
    }

    /// The usage so far. A job that started training under an operator that kept no `usage`
    /// has one attempt, running since training last started.
    pub(super) fn usage(&self) -> Option<Usage> {
        match (&self.new.usage, &self.new.training_start_time) {
            (Some(usage), _) => Some(usage.clone()),
            (None, Some(started)) => Some(Usage {
                attempts: 1,
                running_since: Some(started.clone()),
                ..Usage::default()
            }),
            (None, None) => None,
        }
    }

    /// An attempt begins now, unless one is running.
    pub(super) fn begin_attempt(&mut self) {
        let now = self.obs.now.clone();
        self.new.usage = self.usage();
        let usage = self.new.usage.get_or_insert_with(Usage::default);
        if usage.running_since.is_none() {
            usage.attempts = usage.attempts.saturating_add(1);
            usage.running_since = Some(now);
        }
    }

    /// The running attempt ended now: its GPU time counts, and with `interrupted` the work
    /// since its last full-state checkpoint counts as lost. Nothing when none runs.
    pub(super) fn end_attempt(&mut self, interrupted: bool) {
        let gpus = i64::from(self.job.spec.resources.nodes)
            * i64::from(self.job.spec.resources.gpus_per_node);
        let now = self.obs.now.0;
        self.new.usage = self.usage();
        let Some(usage) = self.new.usage.as_mut() else {
            return;
        };
        let Some(since) = usage.running_since.take() else {
            return;
        };
        let seconds = |from: &Time| (now.as_second() - from.0.as_second()).max(0);
        usage.gpu_seconds = usage.gpu_seconds.saturating_add(gpus * seconds(&since));
        usage.gpu_hours = (usage.gpu_seconds as f64 / 36.0).round() / 100.0;
        if interrupted {
            // The newest full state saved in this attempt is where the next one resumes.
            let saved = self
                .new
                .checkpoints
                .iter()
                .filter(|c| c.kind == CheckpointKind::FullState)
                .filter_map(|c| c.time.as_ref())
                .filter(|t| t.0 >= since.0)
                .max_by_key(|t| t.0);
            let lost_from = saved.unwrap_or(&since);
            usage.gpu_seconds_lost = usage
                .gpu_seconds_lost
                .saturating_add(gpus * seconds(lost_from));
        }
    }

    /// Changes the counters of `status.usage`.
    pub(super) fn usage_mut(&mut self) -> &mut Usage {
        self.new.usage = self.usage();
        self.new.usage.get_or_insert_with(Usage::default)
    }

    /// Forgets the child `kind` it is replacing: the next one is created when the old one
    /// is gone.
    pub(super) fn forget_child(&mut self, kind: ChildKind) {
        match kind {
            ChildKind::Preprocess => self.new.preprocess_job = None,
            ChildKind::PyTorchJob => self.new.pytorch_job = None,
            ChildKind::TrainJob => self.new.train_job = None,
        }
    }

    /// The job finished now.
    pub(super) fn complete(&mut self) {
        self.new.completion_time = Some(self.obs.now.clone());
    }

    pub(super) fn set_pod_failures(&mut self, failures: PodFailures) {
        self.new.pod_failures = Some(failures);
    }

    /// What the rank-0 log says so far, and where the next read starts (when it moved).
    pub(super) fn set_log_state(&mut self, state: LogState, cursor: Option<LogCursor>) {
        self.new.progress = state.progress;
        self.new.checkpoints = state.checkpoints;
        self.new.resumed_from = state.resumed_from;
        if cursor.is_some() {
            self.new.log_cursor = cursor;
        }
    }

    pub(super) fn act(&mut self, action: ChildAction) {
        self.actions.push(action);
    }

    /// Creates the child a stage built. A FineTuneJob the builders cannot make a child of
    /// (without a uid or namespace for the owner reference: never one the apiserver hands
    /// out) fails, as a child the apiserver refused does. Returns whether it is created.
    pub(super) fn create(&mut self, kind: ChildKind, built: Result<NewChild, BuildError>) -> bool {
        match built {
            Ok(child) => {
                self.act(ChildAction::Create(child));
                true
            }
            Err(e) => {
                let text = format!("the operator cannot build the {}: {e}", child_phrase(kind));
                self.reject(kind, text);
                false
            }
        }
    }

    /// Reconcile again within `after` at the latest.
    pub(super) fn requeue_at_most(&mut self, after: Option<Duration>) {
        if let Some(after) = after {
            self.requeue_after = Some(self.requeue_after.map_or(after, |r| r.min(after)));
        }
    }

    /// Look again after this long, whatever else asked for.
    pub(super) fn requeue_in(&mut self, after: Duration) {
        self.requeue_after = Some(after);
    }

    /// Fails the job for good; `stop` names a child whose pods must stop now.
    pub(super) fn fail(&mut self, why: Reason, message: &str, stop: Option<ChildKind>) {
        self.end_attempt(false);
        self.set_condition(condition::FAILED, true, why, message);
        self.set_phase(Phase::Failed, why, message);
        self.complete();
        match stop {
            // Kueue owns the suspension of a queued training child and un-suspends it when it is
            // admitted again: suspending would not keep its GPUs free. Deleting it does.
            Some(kind) if kind.is_training() && self.job.spec.queue_name().is_some() => {
                self.act(ChildAction::Delete(kind));
            }
            Some(kind) => self.act(ChildAction::SetSuspended(kind, true)),
            None => {}
        }
    }

    /// Fails the job with `why` (the phase's reason, e.g. TrainingFailed) and a Warning event of
    /// the same reason. A diagnosis gives the Failed condition its specific reason (e.g.
    /// CUDAOutOfMemory) and puts its advice first in the message; without one, the exception
    /// the failing container's log ends with closes the message. The event ends with the
    /// failing container's last lines.
    pub(super) fn fail_diagnosed(
        &mut self,
        why: Reason,
        diagnosis: Option<Diagnosis>,
        message: String,
        stop: Option<ChildKind>,
    ) {
        let exception = || {
            let tail = self.obs.failure_log.as_deref()?;
            diagnose::log::read(tail).exception
        };
        let message = match &diagnosis {
            Some(d) => format!("{}; {message}", d.detail),
            None => match exception() {
                Some(exception) => format!("{message}; the log ends with {exception}"),
                None => message,
            },
        };
        self.fail(why, &message, stop);
        if let Some(d) = &diagnosis {
            self.set_condition(condition::FAILED, true, d.reason, &message);
        }
        let tail = diagnose::failure_source(self.job, self.obs).map(|source| {
            match &self.obs.failure_log {
                Some(text) => Tail::Text(text.clone()),
                None => Tail::Fetch(source),
            }
        });
        self.event(Severity::Warning, why, message, tail);
    }

    /// Fails the job for a child that could not be made, announced as the failure of its phase.
    fn reject(&mut self, kind: ChildKind, text: String) {
        self.fail(reason::CHILD_REJECTED, &text, None);
        self.publish(PlannedEvent::warning(reason::failed(kind), text));
    }
}

/// How messages name the child `kind`.
fn child_phrase(kind: ChildKind) -> &'static str {
    match kind {
        ChildKind::Preprocess => "preprocess Job",
        ChildKind::PyTorchJob => "PyTorchJob",
        ChildKind::TrainJob => "TrainJob",
    }
}
