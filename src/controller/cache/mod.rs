//! What the controller's watches already hold, so that a reconcile reads the apiserver only when
//! the cache cannot answer.
//!
//! - The FineTuneJob: the controller hands over its cached copy; it is used unless it is older
//!   than the operator's own last write of that object ([`Written`]).
//! - The children and pods: kept from the same watches that trigger reconciles ([`Caches`]).
//!   A child missing from the cache is looked up in the apiserver: it may just have been created,
//!   and deciding "deleted" on a stale cache would fail the job.

mod pod_index;
mod slim;
mod written;

use k8s_openapi::api::batch::v1::Job;
use kube::runtime::reflector::{ObjectRef, Store};

use crate::api::PyTorchJob;

pub use pod_index::PodIndex;
pub use slim::{slim_finetune_job, slim_job, slim_pod, slim_pytorch_job};
pub use written::{Freshness, Written};

/// The watch caches of the children and pods, set when the controller starts.
pub struct Caches {
    pub pytorch_jobs: Store<PyTorchJob>,
    pub preprocess_jobs: Store<Job>,
    pub pods: PodIndex,
}

impl Caches {
    pub fn pytorch_job(&self, ns: &str, name: &str) -> Option<PyTorchJob> {
        let key = ObjectRef::new(name).within(ns);
        self.pytorch_jobs.get(&key).map(|p| (*p).clone())
    }

    pub fn preprocess_job(&self, ns: &str, name: &str) -> Option<Job> {
        let key = ObjectRef::new(name).within(ns);
        self.preprocess_jobs.get(&key).map(|j| (*j).clone())
    }
}
