//! Prometheus metrics: reconciles, errors, durations, jobs by phase, API requests by verb.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use kube::runtime::reflector::Store;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use super::requests::RequestLabels;
use crate::api::{FineTuneJob, Phase};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub error: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabels {
    pub phase: String,
}

pub struct Metrics {
    pub registry: Registry,
    pub reconciles: Counter,
    pub reconcile_errors: Family<ErrorLabels, Counter>,
    pub reconcile_duration: Histogram,
    pub jobs: Family<PhaseLabels, Gauge>,
    pub api_requests: Family<RequestLabels, Counter>,
    /// The controller's cache of FineTuneJobs, counted by phase at scrape time.
    store: OnceLock<Store<FineTuneJob>>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("finetune_operator");
        let reconciles = Counter::default();
        let reconcile_errors = Family::<ErrorLabels, Counter>::default();
        let reconcile_duration = Histogram::new(exponential_buckets(0.001, 2.0, 14));
        let jobs = Family::<PhaseLabels, Gauge>::default();
        let api_requests = Family::<RequestLabels, Counter>::default();
        registry.register("reconciles", "Reconciles run", reconciles.clone());
        registry.register(
            "reconcile_errors",
            "Reconciles that failed, by failed action",
            reconcile_errors.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time a reconcile took",
            reconcile_duration.clone(),
        );
        registry.register("jobs", "FineTuneJobs by phase", jobs.clone());
        registry.register(
            "api_requests",
            "Requests the operator sent to the Kubernetes API, by verb and resource",
            api_requests.clone(),
        );
        Self {
            registry,
            reconciles,
            reconcile_errors,
            reconcile_duration,
            jobs,
            api_requests,
            store: OnceLock::new(),
        }
    }
}

impl Metrics {
    /// Lets the jobs-by-phase gauge read the controller's cache.
    pub fn watch_store(&self, store: Store<FineTuneJob>) {
        let _ = self.store.set(store);
    }

    /// Starts timing a reconcile; the time is recorded when the guard drops.
    pub fn reconcile_started(self: &Arc<Self>) -> ReconcileTimer {
        self.reconciles.inc();
        ReconcileTimer {
            metrics: self.clone(),
            start: Instant::now(),
        }
    }

    pub fn reconcile_failed(&self, label: &str) {
        self.reconcile_errors
            .get_or_create(&ErrorLabels {
                error: label.to_string(),
            })
            .inc();
    }

    /// Renders the metrics in the Prometheus text format.
    pub fn render(&self) -> String {
        if let Some(store) = self.store.get() {
            let mut counts = [0i64; Phase::ALL.len()];
            let mut unknown = 0;
            for job in store.state() {
                match job.status.as_ref().and_then(|s| s.phase) {
                    Some(p) => counts[Phase::ALL.iter().position(|q| *q == p).unwrap_or(0)] += 1,
                    None => unknown += 1,
                }
            }
            // Jobs without a phase yet are about to be Pending.
            counts[0] += unknown;
            for (phase, count) in Phase::ALL.iter().zip(counts) {
                self.jobs
                    .get_or_create(&PhaseLabels {
                        phase: phase.as_str().to_string(),
                    })
                    .set(count);
            }
        }
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing metrics to a String cannot fail");
        out
    }
}

pub struct ReconcileTimer {
    metrics: Arc<Metrics>,
    start: Instant,
}

impl Drop for ReconcileTimer {
    fn drop(&mut self) {
        self.metrics
            .reconcile_duration
            .observe(self.start.elapsed().as_secs_f64());
    }
}
