//! The cluster as the driver uses it, on `testkit`: the release operator it runs, more fake
//! nodes, namespaces it fills and empties between measurements, and the apiserver's request
//! counters.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use finetune_operator::api::FineTuneJob;
use finetune_operator::names::master_pod_name;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use testkit::{Cluster, Operator, OperatorOptions, prom};

use crate::Res;
use crate::settings::{APPLY_CONCURRENCY, LONG_WAIT};

/// The storage class and volume label prefix of the driver's volumes.
const CLASS: &str = "bench";

pub struct Lab {
    pub cluster: Cluster,
    /// For the driver's own actions.
    pub admin: Client,
    pub operator_bin: PathBuf,
}

impl Lab {
    pub async fn connect() -> Res<Self> {
        let cluster = Cluster::connect("build/bench")?;
        let operator_bin = match std::env::var_os("FTO_BENCH_OPERATOR") {
            Some(path) => PathBuf::from(path),
            None => testkit::operator::operator_binary()
                .map_err(|e| format!("{e}: `cargo build --release` first"))?,
        };
        if !operator_bin.exists() {
            return Err(format!(
                "no operator binary at {}: `cargo build --release` first",
                operator_bin.display()
            )
            .into());
        }
        Ok(Self {
            admin: cluster.admin_client().await?,
            cluster,
            operator_bin,
        })
    }

    /// Starts the release operator, watching `namespace` only, under its ServiceAccount; returns
    /// it once /readyz answers ([`Operator::ready_after`] says how long that took).
    pub fn operator(&self, namespace: &str) -> Res<Operator> {
        self.operator_from(&self.operator_bin, namespace)
    }

    /// [`Lab::operator`] with another binary (an older build, measured as "before").
    pub fn operator_from(&self, binary: &Path, namespace: &str) -> Res<Operator> {
        let log = self
            .cluster
            .work_dir
            .join(format!("operator-{namespace}.log"));
        let mut options =
            OperatorOptions::new(binary, namespace, &self.cluster.operator_kubeconfig, &log);
        options.log_format = "json".to_string();
        options.ready_timeout = Duration::from_secs(120);
        Operator::launch(options)
    }

    /// Fake nodes big enough for 10,000 one-GPU pods, besides the cluster's four 8-GPU nodes.
    pub fn add_nodes(&self, count: usize, pods_each: usize) -> Res<()> {
        let docs: Vec<String> = (0..count)
            .map(|i| {
                let capacity = json!({"cpu": "1000", "memory": "8Ti", "ephemeral-storage": "10Ti",
                                      "nvidia.com/gpu": pods_each.to_string(), "pods": pods_each.to_string()});
                json!({"apiVersion": "v1", "kind": "Node",
                       "metadata": {"name": format!("bench-node-{i}"),
                                    "labels": {"type": "kwok", "kubernetes.io/hostname": format!("bench-node-{i}"),
                                               "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
                                               "nvidia.com/gpu.present": "true"},
                                    "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"}},
                       "status": {"allocatable": capacity, "capacity": capacity}})
                .to_string()
            })
            .collect();
        let existing = self.cluster.run(&["get", "nodes", "-o", "name"], None)?;
        let missing: Vec<String> = docs
            .into_iter()
            .enumerate()
            .filter(|(i, _)| !existing.contains(&format!("node/bench-node-{i}\n")))
            .map(|(_, d)| d)
            .collect();
        if !missing.is_empty() {
            self.cluster
                .run(&["create", "-f", "-"], Some(&missing.join("\n---\n")))?;
        }
        // kwok marks them Ready; the node lifecycle controller then lifts the not-ready taint.
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let out = self.cluster.run(
                &[
                    "get",
                    "nodes",
                    "-l",
                    "type=kwok",
                    "-o",
                    "jsonpath={range .items[*]}{.status.conditions[?(@.type==\"Ready\")].status}{.spec.taints}{\"\\n\"}{end}",
                ],
                None,
            )?;
            if out.lines().filter(|l| *l == "True").count() >= count + 4 {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err("the bench nodes did not become Ready and untainted".into());
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// A namespace with the claims a FineTuneJob mounts, bound ahead of time (kwok mounts
    /// nothing, but the scheduler wants bound claims).
    pub async fn namespace(&self, name: &str) -> Res<()> {
        let namespaces: Api<Namespace> = Api::all(self.admin.clone());
        namespaces
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": name}}))?,
            )
            .await?;
        self.cluster.create_volumes(name, CLASS, "Retain")
    }

    /// Makes the master pods of the jobs `names` in `ns` serve a log of one line, as a run that
    /// has only just started: the start path is then measured without the progress reads and
    /// writes that the default log (training steps and a checkpoint) would add to its window.
    pub fn quiet_logs(&self, ns: &str, names: &[String]) -> Res<()> {
        let file = self.cluster.pod_logs.join("bench-start-path.log");
        if !file.exists() {
            std::fs::write(&file, "")?;
            testkit::pod_logs::append(&file, &["[rank0]: bench: training starts"])?;
        }
        let pods: Vec<(String, std::path::PathBuf)> = names
            .iter()
            .map(|name| (master_pod_name(name), file.clone()))
            .collect();
        self.cluster.serve_logs(ns, &pods)
    }

    /// Deletes the namespaces an interrupted run left behind.
    pub async fn remove_leftovers(&self) -> Res<()> {
        let namespaces: Api<Namespace> = Api::all(self.admin.clone());
        for ns in namespaces
            .list_metadata(&ListParams::default())
            .await?
            .items
        {
            let name = ns.name_any();
            if name.starts_with("bench-") {
                say!("removing namespace {name}, left by an earlier run");
                self.delete_namespace(&name).await?;
            }
        }
        Ok(())
    }

    /// Deletes a namespace and everything in it, and waits until it is gone, so that the next
    /// measurement runs on a quiet cluster. The operator that would remove the finalizers is
    /// stopped by then, so the driver removes them.
    pub async fn delete_namespace(&self, name: &str) -> Res<()> {
        let t = Instant::now();
        let jobs: Api<FineTuneJob> = Api::namespaced(self.admin.clone(), name);
        let list = jobs.list_metadata(&ListParams::default()).await?;
        let strip = Patch::Merge(json!({"metadata": {"finalizers": null}}));
        futures::stream::iter(
            list.items
                .into_iter()
                .filter(|j| !j.finalizers().is_empty()),
        )
        .map(|j| {
            let jobs = jobs.clone();
            let strip = &strip;
            async move {
                let _ = jobs
                    .patch(&j.name_any(), &PatchParams::default(), strip)
                    .await;
            }
        })
        .buffer_unordered(APPLY_CONCURRENCY)
        .collect::<Vec<_>>()
        .await;
        let namespaces: Api<Namespace> = Api::all(self.admin.clone());
        let _ = namespaces.delete(name, &DeleteParams::background()).await;
        let deadline = Instant::now() + LONG_WAIT;
        let mut last_note = Instant::now();
        while namespaces.get_opt(name).await?.is_some() {
            if Instant::now() > deadline {
                return Err(format!("namespace {name} still there after {LONG_WAIT:?}").into());
            }
            if last_note.elapsed() > Duration::from_secs(30) {
                say!(
                    "  still deleting namespace {name} ({}s)",
                    t.elapsed().as_secs()
                );
                last_note = Instant::now();
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        self.cluster.delete_volumes(name, CLASS)?;
        say!(
            "  deleted namespace {name} in {:.1}s",
            t.elapsed().as_secs_f64()
        );
        Ok(())
    }

    /// The apiserver's request counters, by (verb, group/resource[/subresource]).
    pub async fn apiserver_requests(&self) -> Res<BTreeMap<(String, String), f64>> {
        let text = testkit::cluster::apiserver_metrics(&self.admin).await?;
        let mut out = BTreeMap::new();
        for (labels, value) in prom::samples(&text, "apiserver_request_total") {
            let get = |k: &str| labels.get(k).cloned().unwrap_or_default();
            let mut resource = match get("group").as_str() {
                "" => get("resource"),
                g => format!("{g}/{}", get("resource")),
            };
            if !get("subresource").is_empty() {
                resource = format!("{resource}/{}", get("subresource"));
            }
            *out.entry((get("verb"), resource)).or_insert(0.0) += value;
        }
        Ok(out)
    }
}
