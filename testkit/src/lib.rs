//! Support for the tests and benchmarks of finetune-operator that run on the local control plane
//! (`tests/cluster/`), shared by the end-to-end suites (`tests/e2e/`, `tests/e2e_sequential/`),
//! the CEL tests and the cluster benchmark (`benches/cluster/`):
//!
//! - [`cluster`]: the running cluster: kubeconfig, kubectl, the install of `deploy/`, volumes,
//!   pod logs served by kwok.
//! - [`operator`]: the operator as a local process: spawn, wait for `/readyz`, SIGTERM, SIGKILL,
//!   its metrics.
//! - [`prom`]: the one reader of the Prometheus text format.
//! - [`random`]: deterministic randomness and random cuts of a log.
//! - [`pod_logs`]: log files in the container runtime's format, as kwok serves them.
//! - [`fixtures`] and [`admission`]: the FineTuneJobs the suites create, and the specs
//!   admission refuses (checked locally and by the apiserver).
//! - [`expansion`]: the kubelet's `$(VAR)` expansion, and hostile values to send through it.
//! - [`kueue`]: Kueue in the cluster: the ClusterQueue, priority classes and LocalQueues.
//! - [`e2e`]: the end-to-end harness: one namespace and one operator per test, and waits.
//!
//! A dev-dependency only, never part of the operator. What the benchmark shares returns
//! [`Result`]; the end-to-end harness panics with a clear message, as a test assertion does.

use std::path::Path;

pub mod admission;
pub mod cluster;
pub mod e2e;
mod endpoint;
pub mod expansion;
pub mod fixtures;
pub mod kueue;
pub mod operator;
pub mod pod_logs;
pub mod prom;
pub mod random;

pub use cluster::Cluster;
pub use operator::{Operator, OperatorOptions};

pub type Error = Box<dyn std::error::Error + Send + Sync>;
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The repository root.
pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("testkit/ lies in the repository")
}
