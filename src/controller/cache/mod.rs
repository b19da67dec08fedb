//! What the controller's watches already hold, so that a reconcile reads the apiserver only when
//! the cache cannot answer.
//!
//! - The FineTuneJob: the controller hands over its cached copy; it is used unless it is older
//!   than the operator's own last write of that object ([`Written`]).
//! - The children and pods: kept from the same watches that trigger reconciles ([`Caches`]).
//!   A child missing from the cache is looked up in the apiserver: it may just have been created,
//!   and deciding "deleted" on a stale cache would fail the job.

mod finished;
mod jobsets;
mod packed;
mod pod_index;
mod slim;
mod written;

use k8s_openapi::api::batch::v1::Job;

use crate::api::{PyTorchJob, TrainJob};

pub use finished::FinishedJobs;
pub use jobsets::JobSetUids;
pub use packed::{Packed, PackedStore};
pub use pod_index::PodIndex;
pub use slim::{slim_finetune_job, slim_job, slim_pod, slim_pytorch_job, slim_train_job};
pub use written::{Freshness, Written};

/// The watch caches of the children and pods, set when the controller starts.
pub struct Caches {
    pub pytorch_jobs: PackedStore<PyTorchJob>,
    pub train_jobs: PackedStore<TrainJob>,
    pub preprocess_jobs: PackedStore<Job>,
    pub pods: PodIndex,
}

impl Caches {
    pub fn pytorch_job(&self, ns: &str, name: &str) -> Option<PyTorchJob> {
        self.pytorch_jobs.get(ns, name)
    }

    pub fn train_job(&self, ns: &str, name: &str) -> Option<TrainJob> {
        self.train_jobs.get(ns, name)
    }

    pub fn preprocess_job(&self, ns: &str, name: &str) -> Option<Job> {
        self.preprocess_jobs.get(ns, name)
    }
}
