//! What is kept of settled FineTuneJobs: their names and the figures the job metrics export.
//!
//! A settled job (finished, nothing left to do: [`status::is_settled`]) is never decided on
//! again, yet most jobs a cluster keeps are settled. So the FineTuneJob watch takes them out of
//! the controller's store, and this keeps a few numbers of each instead of the whole object
//! (4.4 KB as cached, `benches/cache_memory.rs`). A change that unsettles a job (a deletion, a
//! new spec, our finalizer gone) comes through the watch with the whole object, which goes back
//! into the store and is reconciled.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use kube::ResourceExt;
use kube::runtime::watcher::Event;

use crate::api::FineTuneJob;
use crate::status;
use crate::telemetry::{JobFigures, JobRow};

#[derive(Clone, Default)]
pub struct FinishedJobs {
    inner: Arc<RwLock<State>>,
}

type ByName = HashMap<(String, String), JobFigures>;

#[derive(Default)]
struct State {
    jobs: ByName,
    /// The settled jobs of a relist, swapped in when it completes.
    relist: Option<ByName>,
}

fn key_of(job: &FineTuneJob) -> (String, String) {
    (job.namespace().unwrap_or_default(), job.name_any())
}

impl FinishedJobs {
    /// Routes one event of the FineTuneJob watch on its way to the controller's store: a
    /// settled job is kept here and leaves the store (an `Apply` becomes a `Delete`; during a
    /// list it is left out), after `on_settled` saw it. Every other event passes on unchanged.
    pub fn divert(
        &self,
        event: Event<FineTuneJob>,
        on_settled: impl FnOnce(&FineTuneJob),
    ) -> Option<Event<FineTuneJob>> {
        let mut state = self
            .inner
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match event {
            Event::Apply(job) if status::is_settled(&job) => {
                on_settled(&job);
                state.jobs.insert(key_of(&job), JobFigures::of(&job));
                Some(Event::Delete(job))
            }
            Event::InitApply(job) if status::is_settled(&job) => {
                on_settled(&job);
                if let Some(relist) = state.relist.as_mut() {
                    relist.insert(key_of(&job), JobFigures::of(&job));
                }
                None
            }
            // Unsettled again (back to the store), or gone.
            Event::Apply(job) => {
                state.jobs.remove(&key_of(&job));
                Some(Event::Apply(job))
            }
            Event::Delete(job) => {
                state.jobs.remove(&key_of(&job));
                Some(Event::Delete(job))
            }
            Event::Init => {
                state.relist = Some(HashMap::new());
                Some(Event::Init)
            }
            Event::InitDone => {
                if let Some(relist) = state.relist.take() {
                    state.jobs = relist;
                }
                Some(Event::InitDone)
            }
            Event::InitApply(job) => Some(Event::InitApply(job)),
        }
    }

    /// Every finished job, as the metrics read them.
    pub fn rows(&self) -> Vec<JobRow> {
        let state = self
            .inner
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        state
            .jobs
            .iter()
            .map(|((namespace, name), figures)| JobRow {
                namespace: namespace.clone(),
                name: name.clone(),
                figures: figures.clone(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::JobFixture;
    use serde_json::json;

    fn job(name: &str, phase: &str) -> FineTuneJob {
        JobFixture::new(name)
            .stored()
            .finalized()
            .status_json(json!({"phase": phase, "observedGeneration": 1,
                                "progress": {"percent": 100, "loss": 0.5},
                                "usage": {"gpuSeconds": 3600, "gpuHours": 1.0, "gpuSecondsLost": 0,
                                          "attempts": 1, "preemptions": 0, "disruptions": 0}}))
            .build()
    }

    fn names(event: &Option<Event<FineTuneJob>>) -> (&'static str, String) {
        match event {
            Some(Event::Apply(j)) => ("apply", j.name_any()),
            Some(Event::Delete(j)) => ("delete", j.name_any()),
            Some(Event::InitApply(j)) => ("init-apply", j.name_any()),
            Some(Event::Init) => ("init", String::new()),
            Some(Event::InitDone) => ("init-done", String::new()),
            None => ("none", String::new()),
        }
    }

    #[test]
    fn settled_jobs_leave_the_store_for_their_figures_and_come_back_when_unsettled() {
        let finished = FinishedJobs::default();
        let mut settled = Vec::new();
        let mut pass = |event| finished.divert(event, |j| settled.push(j.name_any()));

        // A live job passes on; one that settles leaves the store.
        assert_eq!(
            names(&pass(Event::Apply(job("a", "Training")))),
            ("apply", "a".into())
        );
        assert_eq!(
            names(&pass(Event::Apply(job("a", "Succeeded")))),
            ("delete", "a".into())
        );
        // Deleted by the user: no longer settled, so back to the store, to be reconciled.
        let mut deleted = job("a", "Succeeded");
        deleted.metadata.deletion_timestamp = Some(crate::controller::system_now());
        assert_eq!(names(&pass(Event::Apply(deleted))), ("apply", "a".into()));
        assert_eq!(settled, ["a"]);
        assert!(finished.rows().is_empty());

        // A list: settled jobs are left out of it, and kept here.
        let pass = |event| finished.divert(event, |_| {});
        assert_eq!(names(&pass(Event::Init)).0, "init");
        assert_eq!(names(&pass(Event::InitApply(job("b", "Failed")))).0, "none");
        assert_eq!(
            names(&pass(Event::InitApply(job("c", "Training")))),
            ("init-apply", "c".into())
        );
        assert!(
            finished.rows().is_empty(),
            "swapped in when the list completes"
        );
        assert_eq!(names(&pass(Event::InitDone)).0, "init-done");
        let rows = finished.rows();
        assert_eq!(rows.len(), 1);
        assert_eq!(
            (rows[0].name.as_str(), rows[0].figures.phase),
            ("b", Some(crate::api::Phase::Failed))
        );
        assert_eq!(rows[0].figures.gpu_seconds, Some(3600));
        assert_eq!(rows[0].figures.loss, Some(0.5));
        // Gone.
        assert_eq!(
            names(&pass(Event::Delete(job("b", "Failed")))),
            ("delete", "b".into())
        );
        assert!(finished.rows().is_empty());
    }
}
