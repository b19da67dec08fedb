//! The end-to-end harness: the local control plane (tests/cluster/), one namespace per test,
//! and the operator as a real process under its own ServiceAccount and the RBAC in deploy/.
//!
//! Each test starts its own operator, watching only the test's namespace, so tests run in
//! parallel, and a test may kill and restart its operator without disturbing the others.

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use finetune_operator::api::{FineTuneJob, Phase};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::events::v1::Event;
use kube::api::{ListParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Config, ResourceExt};
use serde_json::{Value, json};

#[path = "../support/http.rs"]
mod http;
use http::http_get;

pub const TIMEOUT: Duration = Duration::from_secs(120);

/// Events about training progress, read from the served log.
pub const PROGRESS_EVENTS: &[&str] =
    &["EpochCompleted", "CheckpointSaved", "ResumedFromCheckpoint"];

pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Paths of the running cluster and of the operator's own kubeconfig.
pub struct Cluster {
    pub admin_kubeconfig: PathBuf,
    pub operator_kubeconfig: PathBuf,
    pub kubectl: PathBuf,
    pub log_dir: PathBuf,
    pub work_dir: PathBuf,
}

/// The cluster, set up once per test binary: CRD and RBAC from the repo, a ServiceAccount
/// token for the operator. Panics with a clear message when there is no cluster: these tests
/// never skip.
pub fn cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        let root = repo();
        let admin = std::env::var_os("FTO_KUBECONFIG")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("build/cluster/kubeconfig"));
        let bin_dir = Command::new(root.join("tests/cluster/bin-dir.sh"))
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
            .expect("the local control plane is not built: run `make cluster-up` (or `make test`)");
        let kubectl = bin_dir.join("kubectl");
        let work_dir = root.join("build/e2e");
        std::fs::create_dir_all(&work_dir).unwrap();
        let cluster = Cluster {
            admin_kubeconfig: admin.clone(),
            operator_kubeconfig: work_dir.join("operator.kubeconfig"),
            kubectl,
            log_dir: root.join("build/cluster/pod-logs"),
            work_dir,
        };
        let ready = cluster.kubectl(&["get", "--raw", "/readyz", "--request-timeout=10s"]);
        assert!(
            ready.status.success(),
            "no local cluster at {}: run `make cluster-up` (or `make test`, which starts it). {}",
            admin.display(),
            String::from_utf8_lossy(&ready.stderr)
        );
        cluster.install();
        cluster
    })
}

impl Cluster {
    pub fn kubectl(&self, args: &[&str]) -> std::process::Output {
        Command::new(&self.kubectl)
            .arg("--kubeconfig")
            .arg(&self.admin_kubeconfig)
            .args(args)
            .output()
            .expect("run kubectl")
    }

    /// Runs kubectl with `input` on stdin.
    pub fn kubectl_stdin(&self, args: &[&str], input: &str) -> std::process::Output {
        let mut child = Command::new(&self.kubectl)
            .arg("--kubeconfig")
            .arg(&self.admin_kubeconfig)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run kubectl");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }

    fn must(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The CRD and the operator's namespace, ServiceAccount and RBAC, as `kubectl apply -k
    /// deploy/` would install them (without the Deployment: the operator runs as a local
    /// process), then a kubeconfig holding the ServiceAccount's token.
    fn install(&self) {
        let root = repo();
        let rendered = self.must(&["kustomize", root.join("deploy").to_str().unwrap()]);
        let docs: Vec<Value> = serde_saphyr::from_multiple(&rendered).unwrap();
        let wanted: Vec<Value> = docs
            .into_iter()
            .filter(|d| d["kind"] != "Deployment")
            .collect();
        let stream = wanted
            .iter()
            .map(|d| serde_json::to_string(d).unwrap())
            .collect::<Vec<_>>()
            .join("\n---\n");
        let out = self.kubectl_stdin(
            &[
                "apply",
                "--server-side",
                "--force-conflicts",
                "--field-manager=e2e",
                "-f",
                "-",
            ],
            &stream,
        );
        assert!(
            out.status.success(),
            "install deploy/: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.must(&[
            "wait",
            "--for=condition=Established",
            "crd/finetunejobs.finetune.dev",
            "--timeout=60s",
        ]);

        let token = self.must(&[
            "create",
            "token",
            "finetune-operator",
            "-n",
            "finetune-system",
            "--duration=24h",
        ]);
        let admin: Value =
            serde_saphyr::from_str(&std::fs::read_to_string(&self.admin_kubeconfig).unwrap())
                .unwrap();
        let cluster = &admin["clusters"][0]["cluster"];
        let kubeconfig = json!({
            "apiVersion": "v1", "kind": "Config", "current-context": "operator",
            "clusters": [{"name": "local", "cluster": cluster}],
            "users": [{"name": "finetune-operator", "user": {"token": token.trim()}}],
            "contexts": [{"name": "operator", "context": {"cluster": "local", "user": "finetune-operator"}}],
        });
        std::fs::write(
            &self.operator_kubeconfig,
            serde_json::to_string_pretty(&kubeconfig).unwrap(),
        )
        .unwrap();
    }
}

/// A kube client with admin rights, for the test's own actions.
pub async fn admin_client() -> Client {
    let c = cluster();
    let kubeconfig = Kubeconfig::read_from(&c.admin_kubeconfig).unwrap();
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    Client::try_from(config).unwrap()
}

/// A namespace for one test, with the volumes a FineTuneJob mounts. Deleted on drop.
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
        ns.create_volumes();
        ns
    }

    /// PersistentVolumes bound ahead of time to this namespace's claims, so the scheduler
    /// places the pods (kwok never mounts anything).
    fn create_volumes(&self) {
        let mut docs = Vec::new();
        for claim in ["models", "datasets", "training-output"] {
            let pv = format!("{}-{claim}", self.name);
            docs.push(json!({"apiVersion": "v1", "kind": "PersistentVolume",
                "metadata": {"name": pv, "labels": {"e2e-namespace": self.name}},
                "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteMany"],
                         "persistentVolumeReclaimPolicy": "Delete", "storageClassName": "e2e",
                         "hostPath": {"path": format!("/tmp/{pv}")},
                         "claimRef": {"namespace": self.name, "name": claim}}}));
            docs.push(json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "metadata": {"name": claim, "namespace": self.name},
                "spec": {"accessModes": ["ReadWriteMany"], "storageClassName": "e2e", "volumeName": pv,
                         "resources": {"requests": {"storage": "1Gi"}}}}));
        }
        let stream = docs
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join("\n---\n");
        let out = cluster().kubectl_stdin(&["apply", "-f", "-"], &stream);
        assert!(
            out.status.success(),
            "volumes: {}",
            String::from_utf8_lossy(&out.stderr)
        );
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

    /// Creates a FineTuneJob from JSON (metadata.namespace is filled in).
    pub async fn create(&self, mut job: Value) -> FineTuneJob {
        job["metadata"]["namespace"] = json!(self.name);
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

    /// Waits until `done` holds for the job, returning it and every distinct phase seen on the
    /// way, in order.
    pub async fn wait_for(
        &self,
        name: &str,
        what: &str,
        done: impl Fn(&FineTuneJob) -> bool,
    ) -> (FineTuneJob, Vec<Phase>) {
        let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
        let mut stream = watcher::watcher(self.jobs(), config)
            .applied_objects()
            .boxed();
        let mut phases = Vec::new();
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let next = tokio::time::timeout(remaining, stream.try_next()).await;
            let job = match next {
                Ok(Ok(Some(job))) => job,
                Ok(Ok(None)) => panic!("watch ended while waiting for {name}: {what}"),
                Ok(Err(e)) => panic!("watch failed while waiting for {name}: {e}"),
                Err(_) => {
                    let current = self.jobs().get(name).await.ok();
                    panic!(
                        "timed out after {TIMEOUT:?} waiting for {name}: {what}; phases seen {phases:?}; status {:#?}",
                        current.and_then(|j| j.status)
                    )
                }
            };
            if let Some(phase) = job.status.as_ref().and_then(|s| s.phase)
                && phases.last() != Some(&phase)
            {
                phases.push(phase);
            }
            if done(&job) {
                return (job, phases);
            }
        }
    }

    pub async fn wait_for_phase(&self, name: &str, phase: Phase) -> (FineTuneJob, Vec<Phase>) {
        self.wait_for(name, &format!("phase {phase:?}"), |j| {
            j.status.as_ref().and_then(|s| s.phase) == Some(phase)
        })
        .await
    }

    /// Events about the FineTuneJob `name`, oldest first.
    pub async fn events(&self, name: &str) -> Vec<Event> {
        let events: Api<Event> = self.api();
        let mut list = events
            .list(
                &ListParams::default()
                    .fields(&format!("regarding.name={name},regarding.kind=FineTuneJob")),
            )
            .await
            .unwrap()
            .items;
        list.sort_by_key(|e| e.event_time.clone().map(|t| t.0));
        list
    }

    pub async fn event_reasons(&self, name: &str) -> Vec<String> {
        self.events(name)
            .await
            .into_iter()
            .filter_map(|e| e.reason)
            .collect()
    }

    /// Waits until the job's lifecycle events are exactly `expected`, in order. Progress events
    /// (EpochCompleted, CheckpointSaved) depend on the served log and are left out. Events are
    /// published just after the status they follow, so a test that saw the status may be a
    /// moment early.
    pub async fn wait_for_events(&self, name: &str, expected: &[&str]) {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let mut reasons = self.event_reasons(name).await;
            reasons.retain(|r| !PROGRESS_EVENTS.contains(&r.as_str()));
            if reasons == expected {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "events of {name}: expected {expected:?}, got {reasons:?}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Waits for an event with `reason` about the job and returns it.
    pub async fn wait_for_event(&self, name: &str, reason: &str) -> Event {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let events = self.events(name).await;
            if let Some(e) = events.iter().find(|e| e.reason.as_deref() == Some(reason)) {
                return e.clone();
            }
            assert!(
                Instant::now() < deadline,
                "no {reason} event for {name}; got {:?}",
                events.iter().map(|e| &e.reason).collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Polls until the condition holds, panicking with `what` after the timeout.
    pub async fn eventually<F, Fut>(&self, what: &str, mut check: F)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = bool>,
    {
        let deadline = Instant::now() + TIMEOUT;
        while !check().await {
            assert!(
                Instant::now() < deadline,
                "timed out after {TIMEOUT:?}: {what}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Makes kwok serve `file` as the log of the training pods of job `name` before they exist.
    /// The cluster's log router does it when a labelled pod appears, but the operator may read
    /// the log of a pod that just started before that, and would get the default log instead.
    fn serve_log(&self, name: &str, nodes: i64, file: &str) {
        let path = cluster().log_dir.join(file);
        let pods = std::iter::once(format!("{name}-master-0"))
            .chain((0..nodes - 1).map(|i| format!("{name}-worker-{i}")));
        let docs: Vec<String> = pods
            .map(|pod| {
                json!({"apiVersion": "kwok.x-k8s.io/v1alpha1", "kind": "Logs",
                       "metadata": {"name": pod, "namespace": self.name},
                       "spec": {"logs": [{"logsFile": path, "previousLogsFile": path, "follow": true}]}})
                .to_string()
            })
            .collect();
        let out = cluster().kubectl_stdin(&["apply", "-f", "-"], &docs.join("\n---\n"));
        assert!(
            out.status.success(),
            "kwok Logs: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Writes a pod log file the pods labelled `sim.finetune.dev/log: <file>` serve.
    pub fn write_log(&self, file: &str, lines: &[&str]) {
        std::fs::write(cluster().log_dir.join(file), "").unwrap();
        self.append_log(file, lines);
    }

    /// Appends lines to a served log file, stamped with the current time as a kubelet would,
    /// to play a run in progress.
    pub fn append_log(&self, file: &str, lines: &[&str]) {
        let mut text = String::new();
        for line in lines {
            let now = jiff::Timestamp::now();
            text.push_str(&format!("{now:.9} stdout F {line}\n"));
        }
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(cluster().log_dir.join(file))
            .unwrap();
        f.write_all(text.as_bytes()).unwrap();
    }
}

impl TestNamespace {
    /// Appends raw CRI log entries, all stamped with one timestamp (a burst within one
    /// second): each is `(tag, bytes)`, tag `F` for a full line or `P` for a partial one, as the
    /// runtime writes a line longer than 16 KiB. The bytes are written as they are, valid UTF-8
    /// or not.
    pub fn append_raw_log(&self, file: &str, entries: &[(&str, &[u8])]) {
        let now = jiff::Timestamp::now();
        let mut bytes = Vec::new();
        for (tag, text) in entries {
            bytes.extend_from_slice(format!("{now:.9} stdout {tag} ").as_bytes());
            bytes.extend_from_slice(text);
            bytes.push(b'\n');
        }
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(cluster().log_dir.join(file))
            .unwrap();
        f.write_all(&bytes).unwrap();
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        let c = cluster();
        let _ = c.kubectl(&["delete", "namespace", &self.name, "--wait=false"]);
        let _ = c.kubectl(&[
            "delete",
            "pv",
            "-l",
            &format!("e2e-namespace={}", self.name),
            "--wait=false",
        ]);
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

/// The operator as a local process, under its ServiceAccount token, watching one namespace.
pub struct Operator {
    child: Option<Child>,
    pub namespace: String,
    pub metrics_port: u16,
    log: PathBuf,
    extra_args: Vec<String>,
}

impl Operator {
    pub fn start(namespace: &str) -> Self {
        Self::start_with(namespace, &[])
    }

    /// Starts the operator with more command-line flags.
    pub fn start_with(namespace: &str, extra_args: &[&str]) -> Self {
        let port = free_port();
        let log = cluster().work_dir.join(format!("{namespace}-operator.log"));
        let mut op = Self {
            child: None,
            namespace: namespace.to_string(),
            metrics_port: port,
            log,
            extra_args: extra_args.iter().map(|a| a.to_string()).collect(),
        };
        op.spawn();
        op
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_finetune-operator"))
            .args([
                "run",
                "--namespace",
                &self.namespace,
                "--log-format",
                "text",
            ])
            .arg("--metrics-address")
            .arg(format!("127.0.0.1:{}", self.metrics_port))
            .args(&self.extra_args)
            .env("KUBECONFIG", &cluster().operator_kubeconfig)
            .env("RUST_LOG", "info,finetune_operator=debug")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start the operator");
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!("the operator exited ({status}); see {}", self.log.display());
            }
            if http_get(self.metrics_port, "/readyz").is_some_and(|(code, _)| code == 200) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "operator not ready; see {}",
                self.log.display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Whether the process is still running (it never exits on its own).
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// The process id (the leader-election identity without POD_NAME).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// SIGTERM, as Kubernetes stops a pod, and the exit status once the process ended.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "the operator ignored SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL, as when a node dies: no graceful shutdown.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// The operator's Prometheus metrics.
    pub fn metrics(&self) -> String {
        let (code, body) = http_get(self.metrics_port, "/metrics").expect("metrics endpoint");
        assert_eq!(code, 200);
        body
    }

    /// Reconciles the operator has run.
    pub fn reconciles(&self) -> f64 {
        self.metrics()
            .lines()
            .find_map(|l| {
                l.strip_prefix("finetune_operator_reconciles_total ")?
                    .parse()
                    .ok()
            })
            .unwrap_or(0.0)
    }

    /// Sum of `finetune_operator_api_requests_total` samples whose verb is a write.
    pub fn write_requests(&self) -> f64 {
        self.metrics()
            .lines()
            .filter(|l| l.starts_with("finetune_operator_api_requests_total{"))
            .filter(|l| {
                !["verb=\"get\"", "verb=\"list\"", "verb=\"watch\""]
                    .iter()
                    .any(|v| l.contains(v))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.kill();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A FineTuneJob for the fake cluster: kwok plays its pods as the annotations say.
pub fn finetunejob(name: &str, annotations: Value) -> Value {
    json!({
        "apiVersion": "finetune.dev/v1alpha1",
        "kind": "FineTuneJob",
        "metadata": {"name": name},
        "spec": {
            "image": "registry.example/instructlab-training:v0.12.1",
            "model": {"claimName": "models", "path": "granite-7b"},
            "dataset": {"claimName": "datasets", "path": "train.jsonl"},
            "output": {"claimName": "training-output"},
            "training": {"epochs": 2},
            // Small asks: tests run side by side on 4 fake nodes of 8 GPUs.
            "resources": {"nodes": 2, "gpusPerNode": 2},
            "podTemplate": {"annotations": annotations},
        }
    })
}

pub fn phase(job: &FineTuneJob) -> Option<Phase> {
    job.status.as_ref().and_then(|s| s.phase)
}

/// Waits until `list` (e.g. pods of the job) is empty.
pub async fn wait_gone<K>(api: &Api<K>, selector: &str, what: &str)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let items = api
            .list(&ListParams::default().labels(selector))
            .await
            .unwrap()
            .items;
        if items.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what} to be gone: {:?}",
            items.iter().map(|i| i.name_any()).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
