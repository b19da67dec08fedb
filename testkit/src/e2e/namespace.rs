//! One namespace per test, with the volumes a FineTuneJob mounts and the pod logs its pods
//! serve; deleted when the test ends.

use std::path::PathBuf;

use finetune_operator::api::FineTuneJob;
use finetune_operator::names::master_pod_name;
use finetune_operator::testing::JobFixture;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::PostParams;
use kube::{Api, Client};
use serde_json::json;

use super::{admin_client, cluster};
use crate::pod_logs;

/// The storage class and volume label prefix of the suite's volumes.
const CLASS: &str = "e2e";

/// A namespace for one test. Deleted on drop, with its volumes.
pub struct TestNamespace {
    pub name: String,
    pub client: Client,
}

impl TestNamespace {
    pub async fn new(prefix: &str) -> Self {
        let client = admin_client().await;
        let name = format!("e2e-{prefix}-{}", unique());
        let namespaces: Api<Namespace> = Api::all(client.clone());
        namespaces
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": name}})).unwrap(),
            )
            .await
            .unwrap();
        let ns = Self { name, client };
        cluster()
            .create_volumes(&ns.name, CLASS, "Delete")
            .unwrap_or_else(|e| panic!("{e}"));
        ns
    }

    pub fn jobs(&self) -> Api<FineTuneJob> {
        Api::namespaced(self.client.clone(), &self.name)
    }

    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), &self.name)
    }

    /// Creates the FineTuneJob in this namespace. A job whose pods are labelled
    /// `sim.finetune.dev/log: <file>` serves that file as their log from their first second.
    pub async fn create(&self, job: JobFixture) -> FineTuneJob {
        let job = job.namespace(&self.name).json();
        if let Some(file) = job["spec"]["podTemplate"]["labels"]["sim.finetune.dev/log"].as_str() {
            let name = job["metadata"]["name"].as_str().unwrap();
            let nodes = job["spec"]["resources"]["nodes"].as_i64().unwrap_or(1);
            self.serve_log(name, nodes, file);
        }
        let job: FineTuneJob = serde_json::from_value(job).unwrap();
        self.jobs()
            .create(&PostParams::default(), &job)
            .await
            .unwrap()
    }

    /// Makes kwok serve `file` as the log of the training pods of job `name` before they exist.
    fn serve_log(&self, name: &str, nodes: i64, file: &str) {
        let path = self.log_path(file);
        let pods = std::iter::once(master_pod_name(name))
            .chain((0..nodes - 1).map(|i| format!("{name}-worker-{i}")))
            .map(|pod| (pod, path.clone()))
            .collect::<Vec<_>>();
        cluster()
            .serve_logs(&self.name, &pods)
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// Makes kwok serve `file` as the log of the pod `pod` (a TrainJob's pods have random
    /// names: known only once they exist).
    pub fn serve_log_of(&self, pod: &str, file: &str) {
        cluster()
            .serve_logs(&self.name, &[(pod.to_string(), self.log_path(file))])
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// Creates the LocalQueue `fto-queue` in this namespace, on the cluster's ClusterQueue, so
    /// that jobs here can be queued by Kueue (see [`crate::kueue`]).
    pub fn create_local_queue(&self) {
        cluster()
            .create_local_queue(&self.name)
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// Where the pod log file `file` lies.
    pub fn log_path(&self, file: &str) -> PathBuf {
        cluster().pod_logs.join(file)
    }

    /// Writes a pod log file the pods labelled `sim.finetune.dev/log: <file>` serve.
    pub fn write_log(&self, file: &str, lines: &[&str]) {
        std::fs::write(self.log_path(file), "").unwrap();
        self.append_log(file, lines);
    }

    /// Appends lines to a served log file, stamped with the current time as a kubelet would,
    /// to play a run in progress.
    pub fn append_log(&self, file: &str, lines: &[&str]) {
        pod_logs::append(&self.log_path(file), lines).unwrap();
    }

    /// Appends raw CRI log entries in one burst: see [`pod_logs::append_raw`].
    pub fn append_raw_log(&self, file: &str, entries: &[(&str, &[u8])]) {
        pod_logs::append_raw(&self.log_path(file), entries).unwrap();
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        let c = cluster();
        let _ = c.kubectl(&["delete", "namespace", &self.name, "--wait=false"]);
        let _ = c.delete_volumes(&self.name, CLASS);
    }
}

fn unique() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{}{}",
        std::process::id() % 10000,
        N.fetch_add(1, Ordering::Relaxed)
    )
}
