//! Prometheus metrics: the operator's own (`finetune_operator_*`: reconciles, errors,
//! durations, jobs by phase, API requests by verb, GPU time and training attempts), and those of
//! the jobs (`finetune_*`, see `jobs.rs`).

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use kube::runtime::reflector::Store;
use prometheus_client::encoding::{EncodeLabelSet, text};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use super::jobs::{JobMetrics, JobRow, phase_counts};
use super::requests::RequestLabels;
use crate::api::{FineTuneJob, Phase, Usage};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub error: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabels {
    pub phase: String,
}

/// The jobs, read once per scrape: the controller's live jobs and what it keeps of finished ones.
pub type JobsSource = Arc<dyn Fn() -> Vec<JobRow> + Send + Sync>;

pub struct Metrics {
    pub registry: Registry,
    pub reconciles: Counter,
    pub reconcile_errors: Family<ErrorLabels, Counter>,
    pub reconcile_duration: Histogram,
    pub jobs: Family<PhaseLabels, Gauge>,
    pub api_requests: Family<RequestLabels, Counter>,
    /// GPU time and attempts, summed over every job from what each status write added to
    /// `status.usage` (no per-job label: one series each, whatever the number of jobs).
    pub usage: UsageCounters,
    /// The jobs the controller's caches hold, read at scrape time.
    jobs_source: OnceLock<JobsSource>,
    /// Whether a scrape has per-job series (`--per-job-metrics`).
    per_job: bool,
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
        let usage = UsageCounters::default();
        usage.register(&mut registry);
        Self {
            usage,
            registry,
            reconciles,
            reconcile_errors,
            reconcile_duration,
            jobs,
            api_requests,
            jobs_source: OnceLock::new(),
            per_job: false,
        }
    }
}

/// Counters of what training cost, over all jobs.
#[derive(Default)]
pub struct UsageCounters {
    pub gpu_seconds: Counter,
    pub gpu_seconds_lost: Counter,
    pub attempts: Counter,
    pub preemptions: Counter,
    pub disruptions: Counter,
}

impl UsageCounters {
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "gpu_seconds",
            "GPU-seconds training pods used (requested GPUs x time they ran), counted when an attempt ends",
            self.gpu_seconds.clone(),
        );
        registry.register(
            "gpu_seconds_lost",
            "GPU-seconds of work lost at interruptions (since the last checkpoint resumed from)",
            self.gpu_seconds_lost.clone(),
        );
        registry.register(
            "training_attempts",
            "Training attempts started (first starts and restarts after an interruption)",
            self.attempts.clone(),
        );
        registry.register(
            "preemptions",
            "Times Kueue stopped a running job",
            self.preemptions.clone(),
        );
        registry.register(
            "disruptions",
            "Disruptions that ended a training attempt (eviction, node drain, SIGTERM, on-demand checkpoint exit)",
            self.disruptions.clone(),
        );
    }

    /// Adds what a status write added to `usage` (`old` to `new`). Never negative: a status
    /// that went back (rewritten by hand) adds nothing.
    pub fn record(&self, old: Option<&Usage>, new: Option<&Usage>) {
        let Some(new) = new else {
            return;
        };
        let zero = Usage::default();
        let old = old.unwrap_or(&zero);
        let add = |counter: &Counter, delta: i64| {
            if let Ok(delta) = u64::try_from(delta)
                && delta > 0
            {
                counter.inc_by(delta);
            }
        };
        add(&self.gpu_seconds, new.gpu_seconds - old.gpu_seconds);
        add(
            &self.gpu_seconds_lost,
            new.gpu_seconds_lost - old.gpu_seconds_lost,
        );
        add(
            &self.attempts,
            i64::from(new.attempts) - i64::from(old.attempts),
        );
        add(
            &self.preemptions,
            i64::from(new.preemptions) - i64::from(old.preemptions),
        );
        add(
            &self.disruptions,
            i64::from(new.disruptions) - i64::from(old.disruptions),
        );
    }
}

impl Metrics {
    /// With per-job series (`finetune_job_*{namespace,name}`) at each scrape, or without.
    pub fn with_per_job_metrics(mut self, on: bool) -> Self {
        self.per_job = on;
        self
    }

    /// Lets the job metrics read the jobs the controller holds, once per scrape.
    pub fn watch_jobs(&self, source: JobsSource) {
        let _ = self.jobs_source.set(source);
    }

    /// Lets the job metrics read a store of FineTuneJobs.
    pub fn watch_store(&self, store: Store<FineTuneJob>) {
        self.watch_jobs(Arc::new(move || {
            store.state().iter().map(|job| JobRow::of(job)).collect()
        }));
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

    /// Renders the metrics in the OpenMetrics text format. The job metrics come from one
    /// snapshot of the cache (a list of `Arc`s), taken once per scrape; without a cache (a
    /// replica waiting for the leader lease) there are none.
    pub fn render(&self) -> String {
        let jobs = self.jobs_source.get().map(|source| source());
        if let Some(jobs) = &jobs {
            for (phase, count) in Phase::ALL.iter().zip(phase_counts(jobs)) {
                self.jobs
                    .get_or_create(&PhaseLabels {
                        phase: phase.as_str().to_string(),
                    })
                    .set(count);
            }
        }
        let mut out = String::new();
        text::encode_registry(&mut out, &self.registry).expect("writing to a String cannot fail");
        if let Some(jobs) = jobs {
            let mut registry = Registry::with_prefix("finetune");
            registry.register_collector(Box::new(JobMetrics {
                jobs,
                per_job: self.per_job,
            }));
            text::encode_registry(&mut out, &registry).expect("writing to a String cannot fail");
        }
        text::encode_eof(&mut out).expect("writing to a String cannot fail");
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

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(
        gpu_seconds: i64,
        lost: i64,
        attempts: i32,
        preemptions: i32,
        disruptions: i32,
    ) -> Usage {
        Usage {
            gpu_seconds,
            gpu_seconds_lost: lost,
            attempts,
            preemptions,
            disruptions,
            ..Usage::default()
        }
    }

    #[test]
    fn usage_counters_add_what_each_status_write_added_and_never_go_back() {
        let metrics = Metrics::default();
        metrics.usage.record(None, Some(&usage(0, 0, 1, 0, 0)));
        metrics
            .usage
            .record(Some(&usage(0, 0, 1, 0, 0)), Some(&usage(600, 480, 1, 0, 1)));
        metrics.usage.record(
            Some(&usage(600, 480, 1, 0, 1)),
            Some(&usage(1200, 480, 2, 1, 1)),
        );
        // A status rewritten by hand to less adds nothing.
        metrics.usage.record(
            Some(&usage(1200, 480, 2, 1, 1)),
            Some(&usage(0, 0, 0, 0, 0)),
        );
        let text = metrics.render();
        for line in [
            "finetune_operator_gpu_seconds_total 1200",
            "finetune_operator_gpu_seconds_lost_total 480",
            "finetune_operator_training_attempts_total 2",
            "finetune_operator_preemptions_total 1",
            "finetune_operator_disruptions_total 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} not in:\n{text}");
        }
    }
}
