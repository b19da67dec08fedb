//! The local control plane (`tests/cluster/`) as the suites and the benchmark reach it: the admin
//! kubeconfig, our kubectl, the install of `deploy/` with a kubeconfig for the operator's
//! ServiceAccount, volumes for a namespace, and pod logs served by kwok.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use kube::Client;
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::{Value, json};

use crate::{Result, repo};

/// Paths of the running cluster, and of what a suite keeps beside it (`work_dir`).
pub struct Cluster {
    /// `FTO_KUBECONFIG`, or the cluster's own admin kubeconfig.
    pub admin_kubeconfig: PathBuf,
    /// The operator's ServiceAccount token, written by [`Cluster::install`].
    pub operator_kubeconfig: PathBuf,
    /// The cluster's binaries (kubectl, the CRDs it installs, `VERSIONS`).
    pub bin_dir: PathBuf,
    pub kubectl: PathBuf,
    /// Where kwok reads the files it serves as pod logs (`build/cluster/pod-logs`).
    pub pod_logs: PathBuf,
    /// The suite's own files: the operator's kubeconfig and logs.
    pub work_dir: PathBuf,
}

impl Cluster {
    /// Finds the running cluster; `work_dir` is relative to the repository (e.g. `build/e2e`).
    /// Fails with what to run when the cluster is not built or not up.
    pub fn connect(work_dir: &str) -> Result<Self> {
        let root = repo();
        let admin_kubeconfig = std::env::var_os("FTO_KUBECONFIG")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("build/cluster/kubeconfig"));
        let out = Command::new(root.join("tests/cluster/bin-dir.sh")).output()?;
        if !out.status.success() {
            return Err(
                "the local control plane is not built: run `make cluster-up` (or `make test`)"
                    .into(),
            );
        }
        let bin_dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        let work_dir = root.join(work_dir);
        std::fs::create_dir_all(&work_dir)?;
        let cluster = Self {
            operator_kubeconfig: work_dir.join("operator.kubeconfig"),
            kubectl: bin_dir.join("kubectl"),
            bin_dir,
            pod_logs: root.join("build/cluster/pod-logs"),
            work_dir,
            admin_kubeconfig,
        };
        cluster
            .run(&["get", "--raw", "/readyz", "--request-timeout=10s"], None)
            .map_err(|e| {
                format!(
                    "no local cluster at {}: run `make cluster-up` (or `make test`, which starts it). {e}",
                    cluster.admin_kubeconfig.display()
                )
            })?;
        Ok(cluster)
    }

    /// Runs kubectl as admin; the caller looks at the exit status.
    pub fn kubectl(&self, args: &[&str]) -> Result<Output> {
        Ok(Command::new(&self.kubectl)
            .arg("--kubeconfig")
            .arg(&self.admin_kubeconfig)
            .args(args)
            .output()?)
    }

    /// Runs kubectl as admin with `input` on stdin.
    pub fn kubectl_stdin(&self, args: &[&str], input: &str) -> Result<Output> {
        let mut child = Command::new(&self.kubectl)
            .arg("--kubeconfig")
            .arg(&self.admin_kubeconfig)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let mut stdin = child.stdin.take().expect("a piped stdin");
        stdin.write_all(input.as_bytes())?;
        drop(stdin);
        Ok(child.wait_with_output()?)
    }

    /// Runs kubectl as admin and returns its stdout; fails with its stderr when it fails.
    pub fn run(&self, args: &[&str], input: Option<&str>) -> Result<String> {
        let out = match input {
            Some(input) => self.kubectl_stdin(args, input)?,
            None => self.kubectl(args)?,
        };
        if !out.status.success() {
            return Err(format!(
                "kubectl {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            )
            .into());
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Applies the objects (`kubectl apply -f -`).
    pub fn apply(&self, docs: &[Value]) -> Result<()> {
        self.run(&["apply", "-f", "-"], Some(&stream(docs)))?;
        Ok(())
    }

    /// The CRD and the operator's namespace, ServiceAccount and RBAC, as `kubectl apply -k
    /// deploy/` would install them (without the Deployment: the operator runs as a local
    /// process), then a kubeconfig holding the ServiceAccount's token, so that the operator runs
    /// under its own RBAC.
    pub fn install(&self, field_manager: &str) -> Result<()> {
        let rendered = self.run(
            &["kustomize", &repo().join("deploy").to_string_lossy()],
            None,
        )?;
        let docs: Vec<Value> = serde_saphyr::from_multiple(&rendered)?;
        let wanted: Vec<Value> = docs
            .into_iter()
            .filter(|d| d["kind"] != "Deployment")
            .collect();
        self.run(
            &[
                "apply",
                "--server-side",
                "--force-conflicts",
                &format!("--field-manager={field_manager}"),
                "-f",
                "-",
            ],
            Some(&stream(&wanted)),
        )
        .map_err(|e| format!("install deploy/: {e}"))?;
        self.run(
            &[
                "wait",
                "--for=condition=Established",
                "crd/finetunejobs.finetune.dev",
                "--timeout=60s",
            ],
            None,
        )?;

        let token = self.run(
            &[
                "create",
                "token",
                "finetune-operator",
                "-n",
                "finetune-system",
                "--duration=24h",
            ],
            None,
        )?;
        let admin: Value =
            serde_saphyr::from_str(&std::fs::read_to_string(&self.admin_kubeconfig)?)?;
        let kubeconfig = json!({
            "apiVersion": "v1", "kind": "Config", "current-context": "operator",
            "clusters": [{"name": "local", "cluster": admin["clusters"][0]["cluster"]}],
            "users": [{"name": "finetune-operator", "user": {"token": token.trim()}}],
            "contexts": [{"name": "operator", "context": {"cluster": "local", "user": "finetune-operator"}}],
        });
        std::fs::write(
            &self.operator_kubeconfig,
            serde_json::to_string_pretty(&kubeconfig)?,
        )?;
        Ok(())
    }

    /// A client with admin rights. A client belongs to the tokio runtime that made it: make one
    /// per runtime (each `#[tokio::test]` has its own).
    pub async fn admin_client(&self) -> Result<Client> {
        client(&self.admin_kubeconfig).await
    }

    /// A client as the operator: its ServiceAccount and RBAC (after [`Cluster::install`]).
    pub async fn operator_client(&self) -> Result<Client> {
        client(&self.operator_kubeconfig).await
    }

    /// PersistentVolumes bound ahead of time to the claims a FineTuneJob mounts (`models`,
    /// `datasets`, `training-output`) in `namespace`, and the claims, so that the scheduler
    /// places the pods (kwok never mounts anything). The volumes are labelled
    /// `<class>-namespace=<namespace>` and use the storage class `class`.
    pub fn create_volumes(&self, namespace: &str, class: &str, reclaim_policy: &str) -> Result<()> {
        let mut docs = Vec::new();
        for claim in ["models", "datasets", "training-output"] {
            let pv = format!("{namespace}-{claim}");
            docs.push(json!({"apiVersion": "v1", "kind": "PersistentVolume",
                "metadata": {"name": pv, "labels": {format!("{class}-namespace"): namespace}},
                "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteMany"],
                         "persistentVolumeReclaimPolicy": reclaim_policy, "storageClassName": class,
                         "hostPath": {"path": format!("/tmp/{pv}")},
                         "claimRef": {"namespace": namespace, "name": claim}}}));
            docs.push(json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "metadata": {"name": claim, "namespace": namespace},
                "spec": {"accessModes": ["ReadWriteMany"], "storageClassName": class, "volumeName": pv,
                         "resources": {"requests": {"storage": "1Gi"}}}}));
        }
        self.apply(&docs)
            .map_err(|e| format!("volumes: {e}").into())
    }

    /// Deletes the volumes [`Cluster::create_volumes`] made for `namespace`, without waiting.
    pub fn delete_volumes(&self, namespace: &str, class: &str) -> Result<()> {
        self.run(
            &[
                "delete",
                "pv",
                "-l",
                &format!("{class}-namespace={namespace}"),
                "--wait=false",
            ],
            None,
        )?;
        Ok(())
    }

    /// Makes kwok serve each file as the log of the pod named beside it (a kwok `Logs` object
    /// per pod), before the pod exists. The cluster's log router does it when a labelled pod
    /// appears, but the operator may read the log of a pod that just started before that, and
    /// would get the default log instead.
    pub fn serve_logs(&self, namespace: &str, pods: &[(String, PathBuf)]) -> Result<()> {
        let docs: Vec<Value> = pods
            .iter()
            .map(|(pod, path)| {
                json!({"apiVersion": "kwok.x-k8s.io/v1alpha1", "kind": "Logs",
                       "metadata": {"name": pod, "namespace": namespace},
                       "spec": {"logs": [{"logsFile": path, "previousLogsFile": path, "follow": true}]}})
            })
            .collect();
        self.apply(&docs)
            .map_err(|e| format!("kwok Logs: {e}").into())
    }

    /// The process id of the cluster's Kubeflow training operator, if it runs.
    pub fn training_operator_pid(&self) -> Option<u32> {
        let pid: u32 =
            std::fs::read_to_string(repo().join("build/cluster/pids/training-operator.pid"))
                .ok()?
                .trim()
                .parse()
                .ok()?;
        let cmdline = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).ok()?;
        cmdline.contains("training-operator").then_some(pid)
    }
}

/// The apiserver's own metrics (Prometheus text), read with `client`.
pub async fn apiserver_metrics(client: &Client) -> Result<String> {
    Ok(client
        .request_text(http::Request::get("/metrics").body(vec![])?)
        .await?)
}

async fn client(kubeconfig: &Path) -> Result<Client> {
    let kubeconfig = Kubeconfig::read_from(kubeconfig)?;
    let config =
        kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
    Ok(Client::try_from(config)?)
}

/// Objects as one multi-document stream for kubectl.
fn stream(docs: &[Value]) -> String {
    docs.iter()
        .map(Value::to_string)
        .collect::<Vec<_>>()
        .join("\n---\n")
}
