//! The end-to-end harness: the local control plane (`tests/cluster/`), one namespace per test,
//! and the operator as a real process under its own ServiceAccount and the RBAC in `deploy/`.
//!
//! Each test starts its own operator, watching only the test's namespace, so tests run in
//! parallel, and a test may kill and restart its operator without disturbing the others.
//! Everything here panics with a clear message on failure, as test assertions do; these tests
//! never skip.
//!
//! `use testkit::e2e::*;` brings the whole harness.

use std::sync::OnceLock;
use std::time::Duration;

use finetune_operator::api::{FineTuneJob, Phase, Usage};
use kube::Client;

pub use crate::fixtures::{finetunejob, with_preprocess};
pub use crate::pod_logs::metrics_line;
pub use crate::{Cluster, Operator, kueue};

mod namespace;
mod waits;

pub use namespace::TestNamespace;
pub use waits::{PhaseRecorder, wait_gone};

/// How long any wait of the suite lasts before the test fails.
pub const TIMEOUT: Duration = Duration::from_secs(120);

/// Events about training progress, read from the served log.
pub const PROGRESS_EVENTS: &[&str] =
    &["EpochCompleted", "CheckpointSaved", "ResumedFromCheckpoint"];

/// The cluster, set up once per test binary: CRD and RBAC from the repo, a ServiceAccount
/// token for the operator. Panics with what to run when there is no cluster.
pub fn cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        let cluster = Cluster::connect("build/e2e").unwrap_or_else(|e| panic!("{e}"));
        cluster.install("e2e").unwrap_or_else(|e| panic!("{e}"));
        cluster
    })
}

/// The project's ClusterTrainingRuntimes (deploy/trainer/), which the operator's TrainJobs name,
/// applied once per test binary. Kubeflow Trainer must run in the cluster (its webhook checks
/// them): `tests/cluster/up.sh` starts it unless FTO_CLUSTER_TRAINER=0.
pub fn trainer_runtimes() {
    static APPLIED: OnceLock<()> = OnceLock::new();
    APPLIED.get_or_init(|| {
        let dir = crate::repo().join("deploy/trainer");
        let out = kubectl(&["apply", "-k", dir.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "applying deploy/trainer (is Kubeflow Trainer running in the test cluster?): {}",
            String::from_utf8_lossy(&out.stderr)
        );
    });
}

/// A kube client with admin rights, for the test's own actions.
pub async fn admin_client() -> Client {
    cluster().admin_client().await.expect("an admin client")
}

/// The operator of a test: the binary cargo built beside the test, logging text at debug level to
/// `build/e2e/<namespace>-operator.log`.
impl Operator {
    pub fn start(namespace: &str) -> Self {
        Self::start_with(namespace, &[])
    }

    /// Starts the operator with more command-line flags.
    pub fn start_with(namespace: &str, extra_args: &[&str]) -> Self {
        let c = cluster();
        let binary = crate::operator::operator_binary().expect("the operator binary");
        let log = c.work_dir.join(format!("{namespace}-operator.log"));
        let mut options =
            crate::OperatorOptions::new(&binary, namespace, &c.operator_kubeconfig, &log);
        options.args = extra_args.iter().map(|a| a.to_string()).collect();
        options.env = vec![("RUST_LOG".into(), "info,finetune_operator=debug".into())];
        Operator::launch(options).unwrap_or_else(|e| panic!("{e}"))
    }
}

/// The job's phase, if it has one.
pub fn phase(job: &FineTuneJob) -> Option<Phase> {
    job.status.as_ref().and_then(|s| s.phase)
}

/// The job's `status.usage`, zero before it has one.
pub fn usage(job: &FineTuneJob) -> Usage {
    job.status
        .as_ref()
        .and_then(|s| s.usage.clone())
        .unwrap_or_default()
}

/// Whether the job's `Failed` condition was ever set.
pub fn failed(job: &FineTuneJob) -> bool {
    job.status
        .as_ref()
        .is_some_and(|s| s.conditions.iter().any(|c| c.type_ == "Failed"))
}

/// Runs kubectl as admin; the test looks at the exit status.
pub fn kubectl(args: &[&str]) -> std::process::Output {
    cluster().kubectl(args).expect("run kubectl")
}

/// Runs kubectl as admin with `input` on stdin.
pub fn kubectl_stdin(args: &[&str], input: &str) -> std::process::Output {
    cluster().kubectl_stdin(args, input).expect("run kubectl")
}
