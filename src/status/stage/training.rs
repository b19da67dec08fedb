//! The Training phase: create the training child (a PyTorchJob or a TrainJob, as spec.backend
//! says; queued with Kueue, or started), follow it, and tell how it ended, including what its
//! own status does not show: training pods that failed or restart too often, and a success that
//! is not one (an on-demand checkpoint's exit). Pure; the child to create is built here and
//! carried in the action.

use super::{attempt, progress};
use crate::api::{FineTuneJob, Phase, condition};
use crate::children::{Outcome, TrainingJob, build_training_job};
use crate::logs::progress::LogState;
use crate::names::training_container;
use crate::status::decider::{Decider, Flow};
use crate::status::decision::{PlannedEvent, Severity};
use crate::status::diagnose::log::TailReading;
use crate::status::diagnose::{self, Diagnosis};
use crate::status::outcome::{self, RunOutcome};
use crate::status::world::{Lookup, Observed};
use crate::status::{pods, reason};

pub(in crate::status) fn training(d: &mut Decider) -> Flow {
    let kind = d.training_kind();
    match &d.obs().training {
        Lookup::Absent if d.status().training_child().is_none() => {
            let built = build_training_job(d.job()).map(Into::into);
            if !d.create(kind, built) {
                return Flow::Stop;
            }
            d.record_child(kind);
            match d.job().spec.queue_name() {
                Some(queue) => queued(d, queue),
                None => training_started(d),
            }
            Flow::Stop
        }
        // The child of an interrupted attempt, on its way out: the next one is created once
        // it is gone.
        Lookup::Present(ptj)
            if d.status().training_child().is_none()
                && (ptj.finished().is_some() || ptj.metadata().deletion_timestamp.is_some()) =>
        {
            Flow::Stop
        }
        Lookup::Present(ptj) => {
            // As for the preprocess Job: a child created before a crash is recorded now, so
            // that its log is followed and its deletion is not answered by a new one.
            d.record_child(kind);
            training_job_state(d, ptj)
        }
        _ => Flow::Stop,
    }
}

fn training_job_state(d: &mut Decider, ptj: &TrainingJob) -> Flow {
    let container = training_container(d.job().spec.backend);
    // The last lines (the final epoch, the final checkpoint) count before the verdict.
    progress::follow_log(d);
    match ptj.finished() {
        Some(Outcome::Succeeded) => {
            succeeded(d);
            return Flow::Stop;
        }
        Some(Outcome::Failed(failed)) => {
            let diagnosis = training_diagnosis(d);
            // SIGTERM from outside, or a pod Kubernetes stopped: not the run's own failure.
            let terminated = diagnosis
                .as_ref()
                .is_some_and(|x| x.reason == reason::TERMINATED);
            if let Some(disruption) = attempt::disruption(d, terminated, false) {
                attempt::retry(d, disruption);
                return Flow::Stop;
            }
            let rank0 = pods::rank0(d.job(), &d.obs().pods).map(|r| r.pod);
            let termination = pods::failed_container(
                &d.obs().pods,
                container,
                rank0.as_deref().unwrap_or_default(),
            );
            let mut message = format!("{} failed: {failed}", d.training_child());
            if let Some(t) = &termination {
                message.push_str(&format!("; {}", t.describe()));
            }
            d.fail_diagnosed(reason::TRAINING_FAILED, diagnosis, message, None);
            return Flow::Stop;
        }
        None => {}
    }
    // Too many failed (recreated) pods, or a container restarting in place too often: both
    // are past backoffLimit, and both stop the pods.
    let backoff_limit = d.job().spec.backoff_limit;
    let too_many = count_pod_failures(d, ptj).or_else(|| {
        pods::restarting_too_often(&d.obs().pods, container, backoff_limit).map(|t| {
            format!(
                "pod {} container {} restarted {} times, more than backoffLimit {backoff_limit}; last exit code {}",
                t.pod, t.container, t.restarts, t.exit_code
            )
        })
    });
    if let Some(message) = too_many {
        let diagnosis = training_diagnosis(d);
        d.fail_diagnosed(
            reason::TRAINING_FAILED,
            diagnosis,
            message,
            Some(d.training_kind()),
        );
        return Flow::Stop;
    }
    let queue = d.job().spec.queue_name();
    let suspended_by_queue = queue.is_some() && ptj.is_suspended();
    match (suspended_by_queue, d.status().training_start_time.is_some()) {
        (true, false) => queued(d, queue.unwrap_or_default()),
        (false, false) => training_started(d),
        (true, true) => preempted(d),
        (false, true) => {
            // Admitted again (after a preemption, or a new attempt after a disruption): as for
            // a Kubernetes Job, the deadline counts again from here, so time spent waiting in
            // the queue does not count.
            if !attempt::running(d) {
                d.start_training_clock();
            }
            let message = training_message(d);
            d.set_phase(Phase::Training, reason::TRAINING, &message)
        }
    }
    Flow::Continue
}

/// Kueue suspended the admitted training child. While an attempt runs, Kueue just stopped it: the
/// stop is counted once, with a Warning that says why (its Workload's `Evicted` condition:
/// `Preempted`, or another eviction), and the attempt ends when its pods are gone. Between
/// attempts, it waits to be admitted again.
fn preempted(d: &mut Decider) {
    if !attempt::running(d) {
        return;
    }
    if !stopped_by_queue(d.old().reason.as_deref()) {
        let child = d.training_child();
        let goes_on =
            "training goes on from its last full-state checkpoint when Kueue admits it again";
        let (why, message) = match &d.obs().queue_eviction {
            Some(e) if e.reason == "Preempted" => (
                reason::PREEMPTED,
                format!("Kueue preempted {child}: {}; {goes_on}", e.message),
            ),
            Some(e) => (
                reason::EVICTED,
                format!(
                    "Kueue evicted {child} ({}: {}); {goes_on}",
                    e.reason, e.message
                ),
            ),
            None => (
                reason::PREEMPTED,
                format!(
                    "Kueue stopped {child} (preempted or evicted it from its ClusterQueue); {goes_on}"
                ),
            ),
        };
        let usage = d.usage_mut();
        usage.preemptions = usage.preemptions.saturating_add(1);
        d.event(Severity::Warning, why, message.clone(), None);
        d.set_phase(Phase::Training, why, &message);
    }
    attempt::end_when_stopped(d);
}

/// Whether the phase's reason already says Kueue stopped the job.
fn stopped_by_queue(reason: Option<&str>) -> bool {
    reason.is_some_and(|r| reason::PREEMPTED == r || reason::EVICTED == r)
}

/// The UID of the training child whose Workload says why Kueue stopped it: a queued job, admitted
/// and training, that Kueue has just suspended (the status does not say so yet).
pub(in crate::status) fn queue_stop_of(job: &FineTuneJob, observed: &Observed) -> Option<String> {
    job.spec.queue_name()?;
    let status = job.status.as_ref()?;
    let ptj = observed.training.present()?;
    let admitted_before = status.training_start_time.is_some() && status.training_child().is_some();
    let new_stop =
        status.phase == Some(Phase::Training) && !stopped_by_queue(status.reason.as_deref());
    (ptj.is_suspended() && admitted_before && new_stop && ptj.finished().is_none())
        .then(|| ptj.metadata().uid.clone())
        .flatten()
}

/// The training child succeeded: its pods exited 0. The log may say the run is not finished (an
/// on-demand checkpoint's exit, with epochs left: a run that stopped early is never
/// Succeeded, it goes on as a new attempt) or that it skipped samples (it succeeds, with a
/// Warning).
fn succeeded(d: &mut Decider) {
    let state = LogState::from_status(d.status());
    let verdict = outcome::judge(&state, &TailReading::default(), true);
    if verdict.outcome == RunOutcome::Checkpointed
        && let Some(disruption) = attempt::disruption(d, false, true)
    {
        attempt::retry(d, disruption);
        return;
    }
    d.end_attempt(false);
    let mut message = format!("{} finished training", d.training_child());
    let skipped = state
        .progress
        .as_ref()
        .and_then(outcome::samples_skipped_message);
    if let Some(skipped) = &skipped {
        message = format!("{message}; {skipped}");
    }
    d.set_condition(
        condition::COMPLETE,
        true,
        reason::TRAINING_SUCCEEDED,
        &message,
    );
    d.set_phase(Phase::Succeeded, reason::TRAINING_SUCCEEDED, &message);
    d.complete();
    let summary = format!("{} finished training", d.training_child());
    d.event(Severity::Normal, reason::TRAINING_SUCCEEDED, summary, None);
    if let Some(skipped) = skipped {
        d.publish(PlannedEvent::warning(reason::SAMPLES_SKIPPED, skipped));
    }
}

fn queued(d: &mut Decider, queue: &str) {
    let message = format!(
        "{} waits for Kueue to admit it from queue {queue}",
        d.training_child()
    );
    d.set_phase(Phase::Pending, reason::QUEUED, &message);
}

/// The same words at the start and while training, so a steady state writes nothing.
fn training_message(d: &Decider) -> String {
    let spec = &d.job().spec;
    format!(
        "{} trains on {} node(s) with {} GPU(s) each",
        d.training_child(),
        spec.resources.nodes,
        spec.resources.gpus_per_node
    )
}

fn training_started(d: &mut Decider) {
    let message = training_message(d);
    d.start_training_clock();
    d.set_phase(Phase::Training, reason::TRAINING, &message);
    d.event(Severity::Normal, reason::TRAINING_STARTED, message, None);
}

/// Counts training pods that failed, each once (by UID), into status.podFailures. With
/// restartPolicy ExitCode the training operator recreates a pod that exits with 128 or more
/// as a new pod, so its restartCount stays 0 and only this count sees the repeats. Returns
/// the failure message once the count passes backoffLimit.
fn count_pod_failures(d: &mut Decider, ptj: &TrainingJob) -> Option<String> {
    const KEEP: usize = 16;
    // Pods stopped on purpose (a suspension, a preemption by Kueue, an eviction) are not
    // failures of the run, even when they die with 137.
    if ptj.is_suspended() {
        return None;
    }
    let container = training_container(d.job().spec.backend);
    let failed: Vec<(&str, i32)> = attempt::training_pods(d)
        .filter(|p| p.metadata.deletion_timestamp.is_none() && !pods::disrupted(p))
        .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Failed"))
        .filter_map(|p| {
            let t = pods::termination(p, container)?;
            Some((p.metadata.uid.as_deref()?, t.exit_code))
        })
        // Codes 1-127 fail the PyTorchJob itself (its Failed condition says so), and the
        // TrainJob through the runtime's podFailurePolicy; only the codes they retry are
        // counted here.
        .filter(|(_, code)| *code >= 128)
        .collect();
    let mut failures = d.status().pod_failures.clone().unwrap_or_default();
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
    let limit = d.job().spec.backoff_limit;
    let over = failures.count > limit;
    let message = over.then(|| {
        let codes: Vec<String> = failures.exit_codes.iter().map(i32::to_string).collect();
        format!(
            "training pods failed {} times, more than backoffLimit {limit} (exit codes, most recent last: {})",
            failures.count,
            codes.join(", ")
        )
    });
    d.set_pod_failures(failures);
    message
}

/// What the training pods and the failing container's log say went wrong.
fn training_diagnosis(d: &Decider) -> Option<Diagnosis> {
    diagnose::failure(
        &d.obs().pods,
        training_container(d.job().spec.backend),
        d.obs().failure_log.as_deref(),
    )
}
