//! Waiting for what the operator does: a job's status, its events, any condition, objects to
//! go; and a recorder of every phase a job passes through. Each wait fails the test after
//! [`TIMEOUT`], saying what it waited for.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use finetune_operator::api::{FineTuneJob, Phase};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::events::v1::Event;
use kube::api::ListParams;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};

use super::{PROGRESS_EVENTS, TIMEOUT, TestNamespace, phase};

impl TestNamespace {
    /// Waits until `done` holds for the job, returning it and every distinct phase seen on the
    /// way, in order.
    pub async fn wait_for(
        &self,
        name: &str,
        what: &str,
        done: impl Fn(&FineTuneJob) -> bool,
    ) -> (FineTuneJob, Vec<Phase>) {
        let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
        let mut stream = watcher::watcher(self.jobs(), config)
            .applied_objects()
            .boxed();
        let mut phases = Vec::new();
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let next = tokio::time::timeout(remaining, stream.try_next()).await;
            let job = match next {
                Ok(Ok(Some(job))) => job,
                Ok(Ok(None)) => panic!("watch ended while waiting for {name}: {what}"),
                Ok(Err(e)) => panic!("watch failed while waiting for {name}: {e}"),
                Err(_) => {
                    let current = self.jobs().get(name).await.ok();
                    panic!(
                        "timed out after {TIMEOUT:?} waiting for {name}: {what}; phases seen {phases:?}; status {:#?}",
                        current.and_then(|j| j.status)
                    )
                }
            };
            if let Some(phase) = phase(&job)
                && phases.last() != Some(&phase)
            {
                phases.push(phase);
            }
            if done(&job) {
                return (job, phases);
            }
        }
    }

    pub async fn wait_for_phase(&self, name: &str, phase: Phase) -> (FineTuneJob, Vec<Phase>) {
        self.wait_for(name, &format!("phase {phase:?}"), |j| {
            super::phase(j) == Some(phase)
        })
        .await
    }

    /// Events about the FineTuneJob `name`, oldest first.
    pub async fn events(&self, name: &str) -> Vec<Event> {
        let events: Api<Event> = self.api();
        let mut list = events
            .list(
                &ListParams::default()
                    .fields(&format!("regarding.name={name},regarding.kind=FineTuneJob")),
            )
            .await
            .unwrap()
            .items;
        list.sort_by_key(|e| e.event_time.clone().map(|t| t.0));
        list
    }

    pub async fn event_reasons(&self, name: &str) -> Vec<String> {
        self.events(name)
            .await
            .into_iter()
            .filter_map(|e| e.reason)
            .collect()
    }

    /// Waits until the job's lifecycle events are exactly `expected`, in order. Progress events
    /// (EpochCompleted, CheckpointSaved) depend on the served log and are left out. Events are
    /// published just after the status they follow, so a test that saw the status may be a
    /// moment early.
    pub async fn wait_for_events(&self, name: &str, expected: &[&str]) {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let mut reasons = self.event_reasons(name).await;
            reasons.retain(|r| !PROGRESS_EVENTS.contains(&r.as_str()));
            if reasons == expected {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "events of {name}: expected {expected:?}, got {reasons:?}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Waits for an event with `reason` about the job and returns it.
    pub async fn wait_for_event(&self, name: &str, reason: &str) -> Event {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let events = self.events(name).await;
            if let Some(e) = events.iter().find(|e| e.reason.as_deref() == Some(reason)) {
                return e.clone();
            }
            assert!(
                Instant::now() < deadline,
                "no {reason} event for {name}; got {:?}",
                events.iter().map(|e| &e.reason).collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Polls until the condition holds, panicking with `what` after the timeout.
    pub async fn eventually<F, Fut>(&self, what: &str, mut check: F)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = bool>,
    {
        let deadline = Instant::now() + TIMEOUT;
        while !check().await {
            assert!(
                Instant::now() < deadline,
                "timed out after {TIMEOUT:?}: {what}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

/// Waits until no object matches the label `selector` (e.g. the pods of a job).
pub async fn wait_gone<K>(api: &Api<K>, selector: &str, what: &str)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let items = api
            .list(&ListParams::default().labels(selector))
            .await
            .unwrap()
            .items;
        if items.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what} to be gone: {:?}",
            items.iter().map(|i| i.name_any()).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Records every distinct phase a job goes through, from before it is created.
pub struct PhaseRecorder(Arc<Mutex<Vec<Phase>>>);

impl PhaseRecorder {
    pub fn start(ns: &TestNamespace, name: &str) -> Self {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
        let stream = watcher::watcher(ns.jobs(), config);
        tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream.applied_objects());
            while let Ok(Some(job)) = stream.try_next().await {
                if let Some(p) = phase(&job) {
                    let mut seen = sink.lock().unwrap();
                    if seen.last() != Some(&p) {
                        seen.push(p);
                    }
                }
            }
        });
        Self(seen)
    }

    /// The phases seen, once the last one is `last` (the recorder's watch may lag the test's).
    pub async fn phases_until(&self, last: Phase) -> Vec<Phase> {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let seen = self.0.lock().unwrap().clone();
            if seen.last() == Some(&last) || Instant::now() > deadline {
                return seen;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
