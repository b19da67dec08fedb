//! The Initializing phase: run the preprocess Job once, and tell how it ended. Pure; the Job
//! to create is built here and carried in the action.

use k8s_openapi::api::batch::v1::Job;

use crate::api::{Phase, condition};
use crate::children::{Child, ChildKind, Outcome, build_preprocess_job};
use crate::names::PREPROCESS_CONTAINER;
use crate::status::decider::{Decider, Flow};
use crate::status::decision::Severity;
use crate::status::world::Lookup;
use crate::status::{diagnose, pods, reason};

pub(in crate::status) fn preprocess(d: &mut Decider) -> Flow {
    let Some(pre_spec) = &d.job().spec.preprocess else {
        d.set_condition(
            condition::INITIALIZED,
            true,
            reason::NO_PREPROCESSING,
            "spec.preprocess is not set; dataset.path is used as processed data",
        );
        return Flow::Continue;
    };
    if d.initialized() {
        return Flow::Continue;
    }
    let job_name = Job::name(d.name());
    let running = format!("Job {job_name} runs instructlab.training.data_process");
    match &d.obs().preprocess_job {
        Lookup::Absent if d.status().preprocess_job.is_none() => {
            let built = build_preprocess_job(d.job(), pre_spec).map(Into::into);
            if !d.create(ChildKind::Preprocess, built) {
                return Flow::Stop;
            }
            d.record_child(ChildKind::Preprocess);
            d.set_condition(
                condition::INITIALIZED,
                false,
                reason::PREPROCESSING,
                &running,
            );
            d.set_phase(Phase::Initializing, reason::PREPROCESSING, &running);
            d.event(Severity::Normal, reason::PREPROCESS_STARTED, running, None);
            Flow::Stop
        }
        Lookup::Present(pre) => {
            // Ours but not in the status: the operator stopped between creating it and
            // writing the status. Recording it now makes its deletion visible later.
            d.record_child(ChildKind::Preprocess);
            match pre.finished() {
                Some(Outcome::Succeeded) => {
                    let message = format!("Job {job_name} processed the data");
                    d.set_condition(
                        condition::INITIALIZED,
                        true,
                        reason::PREPROCESS_SUCCEEDED,
                        &message,
                    );
                    d.event(
                        Severity::Normal,
                        reason::PREPROCESS_SUCCEEDED,
                        message,
                        None,
                    );
                    Flow::Continue
                }
                Some(Outcome::Failed(failed)) => {
                    let job_pods = pods::of::<Job>(&d.obs().pods, d.name());
                    let termination = pods::failed_container(&job_pods, PREPROCESS_CONTAINER, "");
                    let mut message = format!("preprocess Job {job_name} failed: {failed}");
                    if let Some(t) = &termination {
                        message.push_str(&format!("; {}", t.describe()));
                    }
                    let diagnosis = diagnose::failure(
                        &job_pods,
                        PREPROCESS_CONTAINER,
                        d.obs().failure_log.as_deref(),
                    );
                    d.fail_diagnosed(reason::PREPROCESS_FAILED, diagnosis, message, None);
                    Flow::Stop
                }
                None => {
                    d.set_condition(
                        condition::INITIALIZED,
                        false,
                        reason::PREPROCESSING,
                        &running,
                    );
                    d.set_phase(Phase::Initializing, reason::PREPROCESSING, &running);
                    Flow::Stop
                }
            }
        }
        // Skipped cannot happen while needs() asks for it; Absent after creation is handled
        // by children_deleted. Either way, wait for the next event.
        _ => Flow::Stop,
    }
}
