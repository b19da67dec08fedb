//! Metrics of the FineTuneJobs themselves, under the prefix `finetune_` (the operator's own
//! metrics are `finetune_operator_*`): computed at each scrape from a snapshot of the
//! controller's cache, so they cost no API request and no work in a reconcile, and a deleted
//! job's series are gone from the next scrape on (nothing is kept between scrapes).
//!
//! Conventions: base units (`_seconds`, `_timestamp_seconds`), ratios 0–1 (`_ratio`), gauges
//! only (no `_total`: these mirror status fields, which are read, not counted here).
//!
//! - `finetune_jobs{phase}`: FineTuneJobs by phase, every phase always present (0 included), so
//!   that an alert on `finetune_jobs{phase="Failed"} > 0` never sees a gap. It counts the same
//!   as `finetune_operator_jobs{phase}`, which stays for the dashboards and scripts that read
//!   it: the job family gets its own, so that everything about jobs reads `finetune_*` and
//!   everything about the operator process `finetune_operator_*`.
//! - Per job, labelled `namespace` and `name`, only with `--per-job-metrics`: one series per
//!   job and metric is unbounded cardinality (a cluster keeping 10,000 finished jobs exports
//!   about 50,000 series), which a Prometheus should take only on purpose.

use std::fmt;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::gauge::ConstGauge;

use crate::api::{FineTuneJob, Phase};

/// What the job metrics read of one job: its names and a few status figures. The controller
/// keeps exactly this of a finished job, and builds it from the cached object of a live one.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct JobRow {
    pub namespace: String,
    pub name: String,
    pub figures: JobFigures,
}

/// A job's status figures the metrics export.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct JobFigures {
    /// None before the first status: about to be Pending.
    pub phase: Option<Phase>,
    pub percent: Option<i64>,
    pub loss: Option<f64>,
    pub validation_loss: Option<f64>,
    pub gpu_seconds: Option<i64>,
    /// When training is estimated to finish, in Unix milliseconds.
    pub eta_ms: Option<i64>,
}

impl JobFigures {
    pub fn of(job: &FineTuneJob) -> Self {
        let status = job.status.as_ref();
        let progress = status.and_then(|s| s.progress.as_ref());
        Self {
            phase: status.and_then(|s| s.phase),
            percent: progress.and_then(|p| p.percent),
            loss: progress.and_then(|p| p.loss),
            validation_loss: progress.and_then(|p| p.validation_loss),
            gpu_seconds: status.and_then(|s| Some(s.usage.as_ref()?.gpu_seconds)),
            eta_ms: progress.and_then(|p| Some(p.eta.as_ref()?.0.as_millisecond())),
        }
    }
}

impl JobRow {
    pub fn of(job: &FineTuneJob) -> Self {
        Self {
            namespace: job.metadata.namespace.clone().unwrap_or_default(),
            name: job.metadata.name.clone().unwrap_or_default(),
            figures: JobFigures::of(job),
        }
    }

    /// The phase as counted: a job without a phase yet is about to be Pending.
    fn phase(&self) -> Phase {
        self.figures.phase.unwrap_or(Phase::Pending)
    }
}

/// How many of `jobs` are in each phase, in the order of [`Phase::ALL`].
pub(super) fn phase_counts(jobs: &[JobRow]) -> [i64; Phase::ALL.len()] {
    let mut counts = [0; Phase::ALL.len()];
    for job in jobs {
        let phase = job.phase();
        if let Some(i) = Phase::ALL.iter().position(|p| *p == phase) {
            counts[i] += 1;
        }
    }
    counts
}

/// The job metrics of one scrape, from one snapshot of the jobs.
#[derive(Debug)]
pub(super) struct JobMetrics {
    pub jobs: Vec<JobRow>,
    pub per_job: bool,
}

/// A per-job gauge: its name (after `finetune_`), help, and value, absent when the status does
/// not have it (then the job has no series for it).
struct PerJob {
    name: &'static str,
    help: &'static str,
    value: fn(&JobRow) -> Option<f64>,
}

/// The per-job gauges besides `finetune_job_phase`.
const PER_JOB: &[PerJob] = &[
    PerJob {
        name: "job_progress_ratio",
        help: "Part of the run done, 0 to 1 (status.progress.percent / 100; 1 only once the last epoch ended)",
        value: |job| job.figures.percent.map(|p| p as f64 / 100.0),
    },
    PerJob {
        name: "job_loss",
        help: "Latest training loss read from the rank-0 log (status.progress.loss)",
        value: |job| job.figures.loss,
    },
    PerJob {
        name: "job_validation_loss",
        help: "Latest validation loss (status.progress.validationLoss, with training.validation)",
        value: |job| job.figures.validation_loss,
    },
    PerJob {
        name: "job_gpu_seconds",
        help: "GPU-seconds of the training attempts that ended (status.usage.gpuSeconds); the running attempt is added when it ends",
        value: |job| job.figures.gpu_seconds.map(|s| s as f64),
    },
    PerJob {
        name: "job_eta_timestamp_seconds",
        help: "When training is estimated to finish, in Unix seconds (status.progress.eta), while the job is neither finished nor suspended",
        value: |job| {
            let phase = job.phase();
            if phase.is_finished() || phase == Phase::Suspended {
                return None;
            }
            Some(job.figures.eta_ms? as f64 / 1000.0)
        },
    },
];

impl Collector for JobMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let counts = phase_counts(&self.jobs);
        let mut family = encoder.encode_descriptor(
            "jobs",
            "FineTuneJobs by phase (a job without a phase yet counts as Pending)",
            None,
            MetricType::Gauge,
        )?;
        for (phase, count) in Phase::ALL.iter().zip(counts) {
            let labels = [("phase", phase.as_str())];
            ConstGauge::new(count).encode(family.encode_family(&labels)?)?;
        }
        if !self.per_job {
            return Ok(());
        }

        // One series per job, for its current phase only (value 1): six times fewer series
        // than one per phase with 0 or 1, and Prometheus ends the old phase's series at the
        // first scrape without it.
        let mut family = encoder.encode_descriptor(
            "job_phase",
            "The phase of each FineTuneJob: 1 on the series of its current phase",
            None,
            MetricType::Gauge,
        )?;
        for job in &self.jobs {
            let labels = [
                ("namespace", job.namespace.as_str()),
                ("name", job.name.as_str()),
                ("phase", job.phase().as_str()),
            ];
            ConstGauge::new(1i64).encode(family.encode_family(&labels)?)?;
        }
        for gauge in PER_JOB {
            let mut family =
                encoder.encode_descriptor(gauge.name, gauge.help, None, MetricType::Gauge)?;
            for job in &self.jobs {
                let Some(value) = (gauge.value)(job) else {
                    continue;
                };
                let labels = [
                    ("namespace", job.namespace.as_str()),
                    ("name", job.name.as_str()),
                ];
                ConstGauge::new(value).encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}
