//! Benchmarks of the operator on the local control plane (tests/cluster/): throughput and
//! latency beside "the limit", API cost per job, memory beside the Kubeflow training operator,
//! restart cost, and the CPU cost of following training logs.
//!
//! Nothing here asserts a time: it measures and reports. `make bench` (scripts/bench.sh) builds
//! the release operator, starts the cluster and runs this driver, which writes a JSON file of the
//! figures and BENCHMARKS.md. Run it by hand against a running cluster with
//! `cargo bench --bench cluster` and the variables below.
//!
//! Environment (all optional):
//! - `FTO_BENCH_OPERATOR`: the operator binary (default: the release build next to this bench).
//! - `FTO_BENCH_RUNS` (3): runs per throughput size; `FTO_BENCH_SIZES` ("100,1000");
//!   `FTO_BENCH_SCALE` ("1000,10000"): job counts of the memory and restart scenario;
//!   `FTO_BENCH_RESTARTS` (3); `FTO_BENCH_LOG_JOBS` (100); `FTO_BENCH_LOG_WINDOWS` (3) windows of
//!   `FTO_BENCH_LOG_WINDOW_SECONDS` (30).
//! - `FTO_BENCH_ONLY`: a comma list of scenarios to run (`throughput,logs,scale`).
//! - `FTO_BENCH_JSON` (bench/results.json), `FTO_BENCH_MD` (BENCHMARKS.md),
//!   `FTO_BENCH_BASELINE` (a results file from an earlier run, shown as "before"),
//!   `FTO_BENCH_COMMAND` (the command line to print in the report), `FTO_BENCH_PARSER` (the
//!   JSON lines benches/parser.rs printed, reported as section 6).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use finetune_operator::api::{FineTuneJob, Phase, PyTorchJob};
use finetune_operator::children::build_pytorch_job;
use finetune_operator::names::{FIELD_MANAGER, master_pod_name};
use finetune_operator::status::{self, Lookup, Observed};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Config, Resource, ResourceExt};
use serde_json::{Value, json};

#[path = "../tests/support/http.rs"]
mod local_http;
use local_http::http_get;

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Concurrent creates when "applying N jobs at once".
const APPLY_CONCURRENCY: usize = 32;
/// The operator's default controller concurrency (`--concurrency`); the limit uses the same.
const OPERATOR_CONCURRENCY: usize = 8;
/// How long the operator must not reconcile before a lifecycle counts as settled.
const QUIET: Duration = Duration::from_secs(3);
/// Upper bound for any wait: the driver always ends.
const LONG_WAIT: Duration = Duration::from_secs(30 * 60);

static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

macro_rules! say {
    ($($arg:tt)*) => {{
        let t = START.get_or_init(Instant::now).elapsed().as_secs();
        eprintln!("[bench {:>2}:{:02}] {}", t / 60, t % 60, format!($($arg)*));
    }};
}

fn main() -> std::process::ExitCode {
    START.get_or_init(Instant::now);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(run()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench failed: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

// ---- settings ----------------------------------------------------------------------------

struct Settings {
    runs: usize,
    sizes: Vec<usize>,
    scale: Vec<usize>,
    restarts: usize,
    log_jobs: usize,
    log_windows: usize,
    log_window: Duration,
    only: Option<HashSet<String>>,
    json: PathBuf,
    md: PathBuf,
    baseline: Option<PathBuf>,
    command: String,
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

fn env_list(name: &str, default: &str) -> Vec<usize> {
    std::env::var(name)
        .unwrap_or_else(|_| default.to_string())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect()
}

impl Settings {
    fn from_env() -> Self {
        let root = repo();
        Self {
            runs: env_or("FTO_BENCH_RUNS", 3),
            sizes: env_list("FTO_BENCH_SIZES", "100,1000"),
            scale: env_list("FTO_BENCH_SCALE", "1000,10000"),
            restarts: env_or("FTO_BENCH_RESTARTS", 3),
            log_jobs: env_or("FTO_BENCH_LOG_JOBS", 100),
            log_windows: env_or("FTO_BENCH_LOG_WINDOWS", 3),
            log_window: Duration::from_secs(env_or("FTO_BENCH_LOG_WINDOW_SECONDS", 30)),
            only: std::env::var("FTO_BENCH_ONLY")
                .ok()
                .filter(|s| !s.is_empty())
                .map(|s| s.split(',').map(|x| x.trim().to_string()).collect()),
            json: root.join(env_or("FTO_BENCH_JSON", "bench/results.json".to_string())),
            md: root.join(env_or("FTO_BENCH_MD", "BENCHMARKS.md".to_string())),
            baseline: std::env::var("FTO_BENCH_BASELINE")
                .ok()
                .filter(|s| !s.is_empty())
                .map(|p| root.join(p)),
            command: std::env::var("FTO_BENCH_COMMAND")
                .unwrap_or_else(|_| "cargo bench --bench cluster".to_string()),
        }
    }

    fn wants(&self, scenario: &str) -> bool {
        self.only.as_ref().is_none_or(|o| o.contains(scenario))
    }
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

// ---- the cluster ---------------------------------------------------------------------------

struct Cluster {
    admin: Client,
    admin_kubeconfig: PathBuf,
    operator_kubeconfig: PathBuf,
    operator_bin: PathBuf,
    kubectl: PathBuf,
    bin_dir: PathBuf,
    pod_logs: PathBuf,
    work: PathBuf,
}

impl Cluster {
    async fn connect() -> Res<Self> {
        let root = repo();
        let admin_kubeconfig = std::env::var_os("FTO_KUBECONFIG")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("build/cluster/kubeconfig"));
        let out = Command::new(root.join("tests/cluster/bin-dir.sh")).output()?;
        if !out.status.success() {
            return Err("the local control plane is not built: run `make cluster-up`".into());
        }
        let bin_dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        let operator_bin = std::env::var_os("FTO_BENCH_OPERATOR")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                // target/release/deps/cluster-<hash> → target/release/finetune-operator
                let exe = std::env::current_exe().expect("current exe");
                exe.parent()
                    .and_then(Path::parent)
                    .expect("target dir")
                    .join("finetune-operator")
            });
        if !operator_bin.exists() {
            return Err(format!(
                "no operator binary at {}: `cargo build --release` first",
                operator_bin.display()
            )
            .into());
        }
        let work = root.join("build/bench");
        std::fs::create_dir_all(&work)?;
        let kubeconfig = Kubeconfig::read_from(&admin_kubeconfig)?;
        let config =
            Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
        let cluster = Self {
            admin: Client::try_from(config)?,
            operator_kubeconfig: work.join("operator.kubeconfig"),
            admin_kubeconfig,
            operator_bin,
            kubectl: bin_dir.join("kubectl"),
            bin_dir,
            pod_logs: root.join("build/cluster/pod-logs"),
            work,
        };
        cluster.must(&["get", "--raw", "/readyz", "--request-timeout=10s"])?;
        Ok(cluster)
    }

    fn kubectl(&self, args: &[&str], input: Option<&str>) -> Res<String> {
        let mut child = Command::new(&self.kubectl)
            .arg("--kubeconfig")
            .arg(&self.admin_kubeconfig)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let mut stdin = child.stdin.take().expect("stdin");
        if let Some(input) = input {
            stdin.write_all(input.as_bytes())?;
        }
        drop(stdin);
        let out = child.wait_with_output()?;
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

    fn must(&self, args: &[&str]) -> Res<String> {
        self.kubectl(args, None)
    }

    /// deploy/ without the Deployment (the operator runs as a local process), and a kubeconfig
    /// with the operator's ServiceAccount token: the operator runs under its own RBAC.
    fn install(&self) -> Res<()> {
        let rendered = self.must(&["kustomize", repo().join("deploy").to_str().unwrap()])?;
        let docs: Vec<Value> = serde_saphyr::from_multiple(&rendered)?;
        let stream = docs
            .iter()
            .filter(|d| d["kind"] != "Deployment")
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join("\n---\n");
        self.kubectl(
            &[
                "apply",
                "--server-side",
                "--force-conflicts",
                "--field-manager=bench",
                "-f",
                "-",
            ],
            Some(&stream),
        )?;
        self.must(&[
            "wait",
            "--for=condition=Established",
            "crd/finetunejobs.finetune.dev",
            "--timeout=60s",
        ])?;
        let token = self.must(&[
            "create",
            "token",
            "finetune-operator",
            "-n",
            "finetune-system",
            "--duration=24h",
        ])?;
        let admin: Value =
            serde_saphyr::from_str(&std::fs::read_to_string(&self.admin_kubeconfig)?)?;
        let kubeconfig = json!({
            "apiVersion": "v1", "kind": "Config", "current-context": "operator",
            "clusters": [{"name": "local", "cluster": admin["clusters"][0]["cluster"]}],
            "users": [{"name": "finetune-operator", "user": {"token": token.trim()}}],
            "contexts": [{"name": "operator", "context": {"cluster": "local", "user": "finetune-operator"}}],
        });
        std::fs::write(&self.operator_kubeconfig, kubeconfig.to_string())?;
        Ok(())
    }

    /// Fake nodes big enough for 10,000 one-GPU pods, besides the cluster's four 8-GPU nodes.
    fn add_nodes(&self, count: usize, pods_each: usize) -> Res<()> {
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
        let existing = self.must(&["get", "nodes", "-o", "name"])?;
        let missing: Vec<String> = docs
            .into_iter()
            .enumerate()
            .filter(|(i, _)| !existing.contains(&format!("node/bench-node-{i}\n")))
            .map(|(_, d)| d)
            .collect();
        if !missing.is_empty() {
            self.kubectl(&["create", "-f", "-"], Some(&missing.join("\n---\n")))?;
        }
        // kwok marks them Ready; the node lifecycle controller then lifts the not-ready taint.
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let out = self.must(&[
                "get",
                "nodes",
                "-l",
                "type=kwok",
                "-o",
                "jsonpath={range .items[*]}{.status.conditions[?(@.type==\"Ready\")].status}{.spec.taints}{\"\\n\"}{end}",
            ])?;
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
    async fn namespace(&self, name: &str) -> Res<()> {
        let namespaces: Api<Namespace> = Api::all(self.admin.clone());
        namespaces
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": name}}))?,
            )
            .await?;
        let pvs: Api<PersistentVolume> = Api::all(self.admin.clone());
        let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(self.admin.clone(), name);
        for claim in ["models", "datasets", "training-output"] {
            let pv = format!("{name}-{claim}");
            pvs.create(
                &PostParams::default(),
                &serde_json::from_value(json!({
                "metadata": {"name": pv, "labels": {"bench-namespace": name}},
                "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteMany"],
                         "persistentVolumeReclaimPolicy": "Retain", "storageClassName": "bench",
                         "hostPath": {"path": format!("/tmp/{pv}")},
                         "claimRef": {"namespace": name, "name": claim}}}))?,
            )
            .await?;
            pvcs.create(&PostParams::default(), &serde_json::from_value(json!({
                "metadata": {"name": claim},
                "spec": {"accessModes": ["ReadWriteMany"], "storageClassName": "bench", "volumeName": pv,
                         "resources": {"requests": {"storage": "1Gi"}}}}))?)
                .await?;
        }
        Ok(())
    }

    /// Deletes a namespace and everything in it, and waits until it is gone, so that the next
    /// measurement runs on a quiet cluster. The operator that would remove the finalizers is
    /// stopped by then, so the driver removes them.
    async fn delete_namespace(&self, name: &str) -> Res<()> {
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
        let pvs: Api<PersistentVolume> = Api::all(self.admin.clone());
        pvs.delete_collection(
            &DeleteParams::background(),
            &ListParams::default().labels(&format!("bench-namespace={name}")),
        )
        .await?;
        say!(
            "  deleted namespace {name} in {:.1}s",
            t.elapsed().as_secs_f64()
        );
        Ok(())
    }

    /// The apiserver's request counters, by (verb, group/resource[/subresource]).
    async fn apiserver_requests(&self) -> Res<BTreeMap<(String, String), f64>> {
        let text = self
            .admin
            .request_text(http::Request::get("/metrics").body(vec![])?)
            .await?;
        let mut out = BTreeMap::new();
        for (labels, value) in samples(&text, "apiserver_request_total") {
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

    fn training_operator_pid(&self) -> Option<u32> {
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

/// The samples of one metric in the Prometheus text format: labels and value.
fn samples(text: &str, name: &str) -> Vec<(BTreeMap<String, String>, f64)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let (labels, value) = match rest.strip_prefix('{') {
            Some(r) => match r.rsplit_once("} ") {
                Some((l, v)) => (l, v),
                None => continue,
            },
            None if rest.starts_with(' ') => ("", rest.trim()),
            None => continue,
        };
        let Ok(value) = value.split_whitespace().next().unwrap_or("").parse::<f64>() else {
            continue;
        };
        let mut map = BTreeMap::new();
        for pair in split_labels(labels) {
            if let Some((k, v)) = pair.split_once('=') {
                map.insert(k.to_string(), v.trim_matches('"').to_string());
            }
        }
        out.push((map, value));
    }
    out
}

/// Splits `a="x",b="y,z"` at the commas outside quotes.
fn split_labels(s: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted) = (0, false);
    for (i, c) in s.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if start < s.len() {
        parts.push(&s[start..]);
    }
    parts
}

// ---- the operator process ------------------------------------------------------------------

struct Operator {
    child: Option<Child>,
    port: u16,
    namespace: String,
    log: PathBuf,
}

/// The operator's request counters, by (verb, resource).
type Requests = BTreeMap<(String, String), f64>;

impl Operator {
    /// Starts the release operator, watching `namespace` only, under its ServiceAccount; returns
    /// it once /readyz answers, and how long that took.
    fn start(cluster: &Cluster, namespace: &str) -> Res<(Self, Duration)> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let log = cluster.work.join(format!("operator-{namespace}.log"));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)?;
        let t = Instant::now();
        let child = Command::new(&cluster.operator_bin)
            .args(["run", "--namespace", namespace, "--log-format", "json"])
            .arg("--metrics-address")
            .arg(format!("127.0.0.1:{port}"))
            .env("KUBECONFIG", &cluster.operator_kubeconfig)
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()?;
        let mut op = Self {
            child: Some(child),
            port,
            namespace: namespace.to_string(),
            log,
        };
        loop {
            if let Some(Ok(Some(status))) = op.child.as_mut().map(Child::try_wait) {
                return Err(
                    format!("the operator exited ({status}); see {}", op.log.display()).into(),
                );
            }
            if http_get(port, "/readyz").is_some_and(|(code, _)| code == 200) {
                return Ok((op, t.elapsed()));
            }
            if t.elapsed() > Duration::from_secs(120) {
                return Err(format!("operator not ready; see {}", op.log.display()).into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    fn metrics(&self) -> String {
        http_get(self.port, "/metrics")
            .map(|(_, body)| body)
            .unwrap_or_default()
    }

    fn requests(&self) -> Requests {
        let mut out = BTreeMap::new();
        for (labels, value) in samples(&self.metrics(), "finetune_operator_api_requests_total") {
            let key = (
                labels.get("verb").cloned().unwrap_or_default(),
                labels.get("resource").cloned().unwrap_or_default(),
            );
            *out.entry(key).or_insert(0.0) += value;
        }
        out
    }

    fn reconciles(&self) -> f64 {
        samples(&self.metrics(), "finetune_operator_reconciles_total")
            .first()
            .map_or(0.0, |(_, v)| *v)
    }

    /// Waits until at least `n` reconciles have run: a restarted operator reconciles every job
    /// once, after its initial lists, which with thousands of jobs take longer than [`QUIET`].
    /// Fails rather than let a restart be measured before its first pass.
    async fn wait_reconciles(&self, n: usize) -> Res<()> {
        let deadline = Instant::now() + LONG_WAIT;
        while self.reconciles() < n as f64 {
            if Instant::now() > deadline {
                return Err(format!(
                    "only {} of {n} jobs reconciled after {LONG_WAIT:?}; see {}",
                    self.reconciles(),
                    self.log.display()
                )
                .into());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    }

    /// Waits until no reconcile has run for [`QUIET`]; returns when the last one ran.
    async fn wait_quiet(&self) -> Instant {
        let mut last = self.reconciles();
        let mut changed = Instant::now();
        let deadline = Instant::now() + LONG_WAIT;
        while changed.elapsed() < QUIET && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let now = self.reconciles();
            if now != last {
                last = now;
                changed = Instant::now();
            }
        }
        changed
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.kill();
    }
}

/// (VmHWM, VmRSS) of a process, in MiB.
fn memory_mib(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .map_or(0.0, |kib| kib / 1024.0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

/// CPU time (user + system) a process has used, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let Some((_, after)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    // After the command: state is field 3; utime and stime are fields 14 and 15.
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / clock_ticks()
}

fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    })
}

fn delta(after: &Requests, before: &Requests) -> Requests {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0.0)))
        .filter(|(_, v)| *v > 0.0)
        .collect()
}

fn is_write(verb: &str) -> bool {
    !matches!(verb.to_ascii_lowercase().as_str(), "get" | "list" | "watch")
}

fn sum_where(requests: &Requests, pred: impl Fn(&str, &str) -> bool) -> f64 {
    requests
        .iter()
        .filter(|((verb, res), _)| pred(verb, res))
        .map(|(_, v)| v)
        .sum::<f64>()
        + 0.0
}

// ---- jobs and watches ----------------------------------------------------------------------

/// A one-node, one-GPU FineTuneJob without preprocessing; kwok runs its pod for `duration`.
fn job(name: &str, namespace: &str, duration: &str) -> FineTuneJob {
    serde_json::from_value(json!({
        "apiVersion": "finetune.dev/v1alpha1",
        "kind": "FineTuneJob",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "image": "registry.example/instructlab-training:v0.12.1",
            "model": {"claimName": "models", "path": "granite-7b"},
            "dataset": {"claimName": "datasets", "path": "train.jsonl"},
            "output": {"claimName": "training-output"},
            "training": {"epochs": 3},
            "resources": {"nodes": 1, "gpusPerNode": 1},
            "podTemplate": {"annotations": {"sim.finetune.dev/duration": duration}},
        }
    }))
    .expect("a valid FineTuneJob")
}

/// When the driver first saw each job's PyTorchJob, phase Training and phase Succeeded, by the
/// local clock of watch events.
#[derive(Default)]
struct Seen {
    pytorch_job: HashMap<String, Instant>,
    training: HashMap<String, Instant>,
    succeeded: HashMap<String, Instant>,
}

struct Tracker {
    seen: Arc<Mutex<Seen>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Tracker {
    /// Watches the namespace's PyTorchJobs and FineTuneJobs; returns once both watches have
    /// listed, so that nothing created afterwards is missed.
    async fn start(client: &Client, namespace: &str) -> Res<Self> {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(2);
        let ptj_api: Api<PyTorchJob> = Api::namespaced(client.clone(), namespace);
        let ftj_api: Api<FineTuneJob> = Api::namespaced(client.clone(), namespace);
        let s = seen.clone();
        let ready = tx.clone();
        let ptj = tokio::spawn(async move {
            let mut stream =
                std::pin::pin!(watcher(ptj_api, watcher::Config::default()).default_backoff());
            while let Some(event) = stream.next().await {
                match event {
                    Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p)) => {
                        let now = Instant::now();
                        s.lock()
                            .unwrap()
                            .pytorch_job
                            .entry(p.name_any())
                            .or_insert(now);
                    }
                    Ok(watcher::Event::InitDone) => {
                        let _ = ready.try_send(());
                    }
                    _ => {}
                }
            }
        });
        let s = seen.clone();
        let ftj = tokio::spawn(async move {
            let mut stream =
                std::pin::pin!(watcher(ftj_api, watcher::Config::default()).default_backoff());
            while let Some(event) = stream.next().await {
                match event {
                    Ok(watcher::Event::Apply(j) | watcher::Event::InitApply(j)) => {
                        let now = Instant::now();
                        let phase = j.status.as_ref().and_then(|s| s.phase);
                        let mut seen = s.lock().unwrap();
                        if matches!(
                            phase,
                            Some(Phase::Training | Phase::Succeeded | Phase::Failed)
                        ) {
                            seen.training.entry(j.name_any()).or_insert(now);
                        }
                        if matches!(phase, Some(Phase::Succeeded | Phase::Failed)) {
                            seen.succeeded.entry(j.name_any()).or_insert(now);
                        }
                    }
                    Ok(watcher::Event::InitDone) => {
                        let _ = tx.try_send(());
                    }
                    _ => {}
                }
            }
        });
        for _ in 0..2 {
            tokio::time::timeout(Duration::from_secs(120), rx.recv())
                .await
                .map_err(|_| "the driver's watches did not start")?;
        }
        Ok(Self {
            seen,
            tasks: vec![ptj, ftj],
        })
    }

    /// Waits until `done` holds for `n` names; returns the latest instant among them.
    async fn wait(
        &self,
        what: &str,
        names: &[String],
        done: fn(&Seen, &str) -> Option<Instant>,
    ) -> Res<Instant> {
        let deadline = Instant::now() + LONG_WAIT;
        let mut last_note = Instant::now();
        loop {
            let (count, latest) = {
                let seen = self.seen.lock().unwrap();
                let times: Vec<Instant> = names.iter().filter_map(|n| done(&seen, n)).collect();
                (times.len(), times.into_iter().max())
            };
            if count == names.len() {
                return Ok(latest.unwrap_or_else(Instant::now));
            }
            if Instant::now() > deadline {
                return Err(format!("timed out: {count}/{} jobs {what}", names.len()).into());
            }
            if last_note.elapsed() > Duration::from_secs(30) {
                say!("  {count}/{} jobs {what}", names.len());
                last_note = Instant::now();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Tracker {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn child_and_training(seen: &Seen, name: &str) -> Option<Instant> {
    Some(*seen.pytorch_job.get(name)?.max(seen.training.get(name)?))
}

fn succeeded(seen: &Seen, name: &str) -> Option<Instant> {
    seen.succeeded.get(name).copied()
}

/// Creates the jobs, `APPLY_CONCURRENCY` at a time; returns when each create returned.
async fn apply(client: &Client, jobs: Vec<FineTuneJob>) -> Res<HashMap<String, Instant>> {
    let results: Vec<Res<(String, Instant)>> = futures::stream::iter(jobs)
        .map(|job| {
            let api: Api<FineTuneJob> =
                Api::namespaced(client.clone(), &job.namespace().unwrap_or_default());
            async move {
                let created = api.create(&PostParams::default(), &job).await?;
                Ok((created.name_any(), Instant::now()))
            }
        })
        .buffer_unordered(APPLY_CONCURRENCY)
        .collect()
        .await;
    results.into_iter().collect()
}

// ---- statistics ----------------------------------------------------------------------------

fn percentile(values: &[f64], p: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

/// Median and spread of repeated measurements.
fn stats(values: &[f64]) -> Value {
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let median = if v.is_empty() {
        f64::NAN
    } else if v.len() % 2 == 1 {
        v[v.len() / 2]
    } else {
        (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0
    };
    json!({
        "median": round(median),
        "min": round(*v.first().unwrap_or(&f64::NAN)),
        "max": round(*v.last().unwrap_or(&f64::NAN)),
        "runs": v.iter().map(|x| round(*x)).collect::<Vec<_>>(),
    })
}

fn round(x: f64) -> Value {
    if x.is_finite() {
        json!((x * 1000.0).round() / 1000.0)
    } else {
        Value::Null
    }
}

fn requests_json(r: &Requests, per: f64) -> Value {
    Value::Object(
        r.iter()
            .map(|((verb, res), v)| (format!("{verb} {res}"), round(v / per)))
            .collect(),
    )
}

// ---- scenario 1 and 2: throughput, latency, API cost ---------------------------------------

struct RunResult {
    seconds: f64,
    p50_ms: f64,
    p99_ms: f64,
    /// Operator runs only: its requests and the apiserver's, from creation to Succeeded.
    operator_requests: Option<Requests>,
    apiserver_requests: Option<Requests>,
    reconciles: Option<f64>,
    peak_rss_mib: Option<f64>,
}

fn names(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i:05}")).collect()
}

async fn throughput_operator(cluster: &Cluster, n: usize, run: usize) -> Res<RunResult> {
    let ns = format!("bench-op-n{n}-r{run}");
    cluster.namespace(&ns).await?;
    let (op, _) = Operator::start(cluster, &ns)?;
    let tracker = Tracker::start(&cluster.admin, &ns).await?;
    let names = names("job", n);
    let jobs = names.iter().map(|name| job(name, &ns, "1s")).collect();
    let op_before = op.requests();
    let reconciles_before = op.reconciles();
    let api_before = cluster.apiserver_requests().await?;

    let (seconds, latencies) = create_and_time(cluster, &tracker, &names, jobs).await?;

    // API cost: on to Succeeded, then until the operator is quiet.
    tracker.wait("Succeeded", &names, succeeded).await?;
    op.wait_quiet().await;
    let op_delta = delta(&op.requests(), &op_before);
    let reconciles = op.reconciles() - reconciles_before;
    let mut api_delta = delta(&cluster.apiserver_requests().await?, &api_before);
    // The driver's own creates are not the operator's.
    if let Some(v) =
        api_delta.get_mut(&("POST".to_string(), "finetune.dev/finetunejobs".to_string()))
    {
        *v -= n as f64;
    }
    let (hwm, _) = memory_mib(op.pid());
    drop(op);
    drop(tracker);
    cluster.delete_namespace(&ns).await?;
    Ok(RunResult {
        seconds,
        p50_ms: percentile(&latencies, 50.0),
        p99_ms: percentile(&latencies, 99.0),
        operator_requests: Some(op_delta),
        apiserver_requests: Some(api_delta),
        reconciles: Some(reconciles),
        peak_rss_mib: Some(hwm),
    })
}

/// Creates the jobs at once; returns the seconds until every one has its PyTorchJob and phase
/// Training, and each job's milliseconds from its create returning to its PyTorchJob.
async fn create_and_time(
    cluster: &Cluster,
    tracker: &Tracker,
    names: &[String],
    jobs: Vec<FineTuneJob>,
) -> Res<(f64, Vec<f64>)> {
    let t0 = Instant::now();
    let created = apply(&cluster.admin, jobs).await?;
    let end = tracker
        .wait(
            "with a PyTorchJob and phase Training",
            names,
            child_and_training,
        )
        .await?;
    Ok(((end - t0).as_secs_f64(), latencies(tracker, &created)))
}

fn latencies(tracker: &Tracker, created: &HashMap<String, Instant>) -> Vec<f64> {
    let seen = tracker.seen.lock().unwrap();
    created
        .iter()
        .filter_map(|(name, at)| {
            let child = seen.pytorch_job.get(name)?;
            Some(child.saturating_duration_since(*at).as_secs_f64() * 1000.0)
        })
        .collect()
}

fn now() -> Time {
    let ts = jiff::Timestamp::now();
    Time(jiff::Timestamp::from_second(ts.as_second()).expect("a current timestamp"))
}

/// The limit: a minimal controller with the same kube client library, the same client settings
/// (the operator's kubeconfig and ServiceAccount, kube's defaults) and the same concurrency. It
/// watches the namespace's FineTuneJobs and, once per job, applies exactly the PyTorchJob the
/// operator would build and writes exactly the Training status the operator would write.
async fn limit_controller(client: Client, namespace: String, n: usize) -> Res<()> {
    let jobs: Api<FineTuneJob> = Api::namespaced(client.clone(), &namespace);
    let children: Api<PyTorchJob> = Api::namespaced(client.clone(), &namespace);
    let mut handled = HashSet::new();
    let stream = watcher(jobs.clone(), watcher::Config::default())
        .default_backoff()
        .applied_objects()
        .filter_map(|r| async move { r.ok() })
        .filter(move |j| std::future::ready(handled.insert(j.name_any())))
        .take(n);
    let params = PatchParams::apply(FIELD_MANAGER).force();
    stream
        .for_each_concurrent(OPERATOR_CONCURRENCY, |job| {
            let (jobs, children, params) = (&jobs, &children, &params);
            async move {
                let name = job.name_any();
                let child = build_pytorch_job(&job).expect("a buildable job");
                let mut current = job.clone();
                let at = now();
                current.status = Some(status::accepted(&current, &at));
                let decision = status::decide(
                    &current,
                    &Observed::new(at, Lookup::Skipped, Lookup::Absent),
                );
                let body = json!({
                    "apiVersion": FineTuneJob::api_version(&()),
                    "kind": FineTuneJob::kind(&()),
                    "status": decision.status,
                });
                for attempt in 0..5 {
                    let result = async {
                        children.patch(&name, params, &Patch::Apply(&child)).await?;
                        jobs.patch_status(&name, params, &Patch::Apply(&body))
                            .await?;
                        Ok::<_, kube::Error>(())
                    }
                    .await;
                    match result {
                        Ok(()) => return,
                        Err(e) if attempt < 4 => {
                            say!("  limit: {name}: {e}; retrying");
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                        Err(e) => say!("  limit: {name}: {e}; giving up"),
                    }
                }
            }
        })
        .await;
    Ok(())
}

async fn throughput_limit(cluster: &Cluster, n: usize, run: usize) -> Res<RunResult> {
    let ns = format!("bench-limit-n{n}-r{run}");
    cluster.namespace(&ns).await?;
    let kubeconfig = Kubeconfig::read_from(&cluster.operator_kubeconfig)?;
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
    let client = Client::try_from(config)?;
    let tracker = Tracker::start(&cluster.admin, &ns).await?;
    let limit = tokio::spawn(limit_controller(client, ns.clone(), n));
    // Let its watch start, as the operator's has by the time it is ready.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let names = names("job", n);
    let jobs = names.iter().map(|name| job(name, &ns, "1s")).collect();

    let (seconds, latencies) = create_and_time(cluster, &tracker, &names, jobs).await?;
    limit.await??;
    drop(tracker);
    cluster.delete_namespace(&ns).await?;
    Ok(RunResult {
        seconds,
        p50_ms: percentile(&latencies, 50.0),
        p99_ms: percentile(&latencies, 99.0),
        operator_requests: None,
        apiserver_requests: None,
        reconciles: None,
        peak_rss_mib: None,
    })
}

async fn throughput(cluster: &Cluster, settings: &Settings) -> Res<Value> {
    let mut out = serde_json::Map::new();
    let mut cost = serde_json::Map::new();
    for &n in &settings.sizes {
        let (mut op, mut lim) = (Vec::new(), Vec::new());
        for run in 1..=settings.runs {
            say!("throughput N={n}, run {run}/{}: operator", settings.runs);
            let r = throughput_operator(cluster, n, run).await?;
            say!(
                "  operator: {:.2}s, p50 {:.0} ms, p99 {:.0} ms",
                r.seconds,
                r.p50_ms,
                r.p99_ms
            );
            op.push(r);
            say!("throughput N={n}, run {run}/{}: limit", settings.runs);
            let r = throughput_limit(cluster, n, run).await?;
            say!(
                "  limit: {:.2}s, p50 {:.0} ms, p99 {:.0} ms",
                r.seconds,
                r.p50_ms,
                r.p99_ms
            );
            lim.push(r);
        }
        let secs = |v: &[RunResult]| v.iter().map(|r| r.seconds).collect::<Vec<_>>();
        let ratios: Vec<f64> = op
            .iter()
            .zip(&lim)
            .map(|(o, l)| o.seconds / l.seconds)
            .collect();
        let side = |v: &[RunResult]| {
            json!({
                "seconds": stats(&secs(v)),
                "jobs_per_second": stats(&v.iter().map(|r| n as f64 / r.seconds).collect::<Vec<_>>()),
                "p50_ms": stats(&v.iter().map(|r| r.p50_ms).collect::<Vec<_>>()),
                "p99_ms": stats(&v.iter().map(|r| r.p99_ms).collect::<Vec<_>>()),
            })
        };
        let mut operator = side(&op);
        operator["peak_rss_mib"] =
            stats(&op.iter().filter_map(|r| r.peak_rss_mib).collect::<Vec<_>>());
        out.insert(
            n.to_string(),
            json!({"operator": operator, "limit": side(&lim), "ratio": stats(&ratios)}),
        );
        // API cost per job lifecycle: the median run by total operator requests.
        let mut by_total: Vec<&RunResult> = op.iter().collect();
        by_total.sort_by(|a, b| {
            let t = |r: &RunResult| {
                r.operator_requests
                    .as_ref()
                    .map_or(0.0, |q| q.values().sum())
            };
            t(a).total_cmp(&t(b))
        });
        let median = by_total[by_total.len() / 2];
        let per_job = |r: &RunResult| {
            let q = r.operator_requests.as_ref().unwrap();
            (
                sum_where(q, |v, _| is_write(v)) / n as f64,
                sum_where(q, |v, _| !is_write(v)) / n as f64,
            )
        };
        cost.insert(
            n.to_string(),
            json!({
                "operator": requests_json(median.operator_requests.as_ref().unwrap(), n as f64),
                "apiserver": requests_json(median.apiserver_requests.as_ref().unwrap(), n as f64),
                "writes_per_job": stats(&op.iter().map(|r| per_job(r).0).collect::<Vec<_>>()),
                "reads_per_job": stats(&op.iter().map(|r| per_job(r).1).collect::<Vec<_>>()),
                "reconciles_per_job": stats(&op.iter().filter_map(|r| r.reconciles).map(|x| x / n as f64).collect::<Vec<_>>()),
            }),
        );
    }
    Ok(json!({"throughput": out, "api_cost": cost}))
}

// ---- scenario 5: log following -------------------------------------------------------------

/// One training step of an InstructLab v0.12 rank-0 log, as Rich prints it at COLUMNS=512 (the
/// operator's pods set it): the per-rank loss lines and the metrics line, padded.
/// Lines of one training step in the log-following scenario (see `step_lines`), and how often
/// the driver appends one.
const STEP_LINES: usize = 3;
const STEP_INTERVAL: Duration = Duration::from_secs(2);

fn step_lines(step: u64) -> Vec<String> {
    let epoch = step / 500;
    let loss = 2.45 / (1.0 + step as f64 / 50.0);
    let clock = jiff::Zoned::now().strftime("%H:%M:%S").to_string();
    let pad = |s: String| format!("{s:<240}");
    vec![
        pad(format!(
            "[{clock}] INFO     Epoch: {epoch}, Step: {step}, Rank: 0, loss = {loss:.6}, grad_accum_steps = 1"
        )),
        pad(format!(
            "[{clock}] INFO     Epoch: {epoch}, Step: {step}, Rank: 1, loss = {loss:.6}, grad_accum_steps = 1"
        )),
        pad(format!(
            "           INFO     epoch={epoch}, step={step}, rank=0, overall_throughput=46.283, lr=2.00e-05, \
             cuda_mem_allocated=14.813, cuda_malloc_retries=0, num_loss_counted_tokens=63488, \
             num_tokens_rank0=37200, batch_size=124, num_minibatches=2, avg_loss={loss:.3}, \
             samples_seen={}, gradnorm=0.813, total_samples=62000, num_epoch_steps=500",
            step * 124
        )),
    ]
}

fn append_log(path: &Path, lines: &[String]) -> std::io::Result<()> {
    let mut text = String::new();
    for line in lines {
        text.push_str(&format!("{:.9} stdout F {line}\n", jiff::Timestamp::now()));
    }
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)?
        .write_all(text.as_bytes())
}

async fn log_following(cluster: &Cluster, settings: &Settings) -> Res<Value> {
    let n = settings.log_jobs;
    let ns = "bench-logs".to_string();
    say!("log following: {n} jobs in Training, one step every 2 s each");
    cluster.namespace(&ns).await?;
    let names = names("log", n);
    let files: Vec<PathBuf> = names
        .iter()
        .map(|name| cluster.pod_logs.join(format!("bench-{name}.log")))
        .collect();
    // kwok serves each master pod's log from its file, from the pod's first second.
    let mut docs = Vec::new();
    for (name, file) in names.iter().zip(&files) {
        std::fs::write(file, "")?;
        append_log(file, &["[rank0]: bench: training starts".to_string()])?;
        docs.push(
            json!({"apiVersion": "kwok.x-k8s.io/v1alpha1", "kind": "Logs",
               "metadata": {"name": master_pod_name(name), "namespace": ns},
               "spec": {"logs": [{"logsFile": file, "previousLogsFile": file, "follow": true}]}})
            .to_string(),
        );
    }
    cluster.kubectl(&["apply", "-f", "-"], Some(&docs.join("\n---\n")))?;

    let (op, _) = Operator::start(cluster, &ns)?;
    let tracker = Tracker::start(&cluster.admin, &ns).await?;
    let jobs = names.iter().map(|name| job(name, &ns, "2h")).collect();
    apply(&cluster.admin, jobs).await?;
    tracker
        .wait("in Training", &names, child_and_training)
        .await?;

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let appender = {
        let (stop, files) = (stop.clone(), files.clone());
        tokio::task::spawn_blocking(move || {
            let mut step = 1;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let t = Instant::now();
                let lines = step_lines(step);
                for f in &files {
                    let _ = append_log(f, &lines);
                }
                step += 1;
                std::thread::sleep(STEP_INTERVAL.saturating_sub(t.elapsed()));
            }
        })
    };
    // Warm up: every job's log has been read at least once.
    tokio::time::sleep(Duration::from_secs(20)).await;
    let (mut cpu, mut rps, mut wps, mut logs_ps) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for w in 1..=settings.log_windows {
        let (c0, r0, t0) = (cpu_seconds(op.pid()), op.requests(), Instant::now());
        tokio::time::sleep(settings.log_window).await;
        let (c1, r1, secs) = (
            cpu_seconds(op.pid()),
            op.requests(),
            t0.elapsed().as_secs_f64(),
        );
        let d = delta(&r1, &r0);
        cpu.push((c1 - c0) / secs * 100.0);
        rps.push(d.values().sum::<f64>() / secs);
        wps.push(sum_where(&d, |v, _| is_write(v)) / secs);
        logs_ps.push(sum_where(&d, |_, r| r == "pods/log") / secs);
        say!(
            "  window {w}: CPU {:.1}% of a core, {:.1} requests/s ({:.1} writes/s, {:.1} log reads/s)",
            cpu[cpu.len() - 1],
            rps[rps.len() - 1],
            wps[wps.len() - 1],
            logs_ps[logs_ps.len() - 1]
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    appender.await?;
    let progressed = {
        let jobs: Api<FineTuneJob> = Api::namespaced(cluster.admin.clone(), &ns);
        jobs.list(&ListParams::default())
            .await?
            .items
            .iter()
            .filter(|j| {
                j.status
                    .as_ref()
                    .and_then(|s| s.progress.as_ref())
                    .is_some_and(|p| p.step.unwrap_or(0) > 0)
            })
            .count()
    };
    // The operator's whole CPU (reads, parsing, status writes, events) per log line served.
    let lines_per_second = (n * STEP_LINES) as f64 / STEP_INTERVAL.as_secs_f64();
    let per_1000_lines: Vec<f64> = cpu
        .iter()
        .map(|percent| percent * 10.0 / lines_per_second * 1000.0)
        .collect();
    let (hwm, rss) = memory_mib(op.pid());
    drop(op);
    drop(tracker);
    cluster.delete_namespace(&ns).await?;
    for f in files {
        let _ = std::fs::remove_file(f);
    }
    Ok(json!({
        "jobs": n,
        "window_seconds": settings.log_window.as_secs(),
        "cpu_percent_of_one_core": stats(&cpu),
        "log_lines_per_second": round(lines_per_second),
        "cpu_ms_per_1000_log_lines": stats(&per_1000_lines),
        "requests_per_second": stats(&rps),
        "writes_per_second": stats(&wps),
        "log_reads_per_second": stats(&logs_ps),
        "jobs_with_progress": progressed,
        "rss_mib": round(rss),
        "peak_rss_mib": round(hwm),
    }))
}

// ---- scenarios 3 and 4: memory and restart --------------------------------------------------

async fn restart(cluster: &Cluster, op: &mut Operator, jobs: usize) -> Res<Value> {
    let ns = op.namespace.clone();
    op.kill();
    let spawned = Instant::now();
    let (fresh, ready) = Operator::start(cluster, &ns)?;
    *op = fresh;
    op.wait_reconciles(jobs).await?;
    let last = op.wait_quiet().await;
    let requests = op.requests();
    let (hwm, rss) = memory_mib(op.pid());
    let writes = sum_where(&requests, |v, _| is_write(v));
    let reads = sum_where(&requests, |v, _| !is_write(v));
    say!(
        "  restart with {jobs} jobs: ready in {:.2}s, first pass done in {:.2}s, {writes} writes, {reads} reads, peak RSS {hwm:.1} MiB",
        ready.as_secs_f64(),
        (last - spawned).as_secs_f64()
    );
    Ok(json!({
        "ready_seconds": ready.as_secs_f64(),
        "first_pass_seconds": (last - spawned).as_secs_f64().max(ready.as_secs_f64()),
        "reconciles": op.reconciles(),
        "writes": writes,
        "reads": reads,
        "requests": requests_json(&requests, 1.0),
        "peak_rss_mib": hwm,
        "rss_mib": rss,
    }))
}

async fn scale(cluster: &Cluster, settings: &Settings) -> Res<Value> {
    let ns = "bench-scale".to_string();
    cluster.namespace(&ns).await?;
    let (mut op, _) = Operator::start(cluster, &ns)?;
    let tracker = Tracker::start(&cluster.admin, &ns).await?;
    let mut out = serde_json::Map::new();
    let mut total = 0;
    for &target in &settings.scale {
        let t = Instant::now();
        while total < target {
            let batch = (target - total).min(1000);
            let names: Vec<String> = (total..total + batch)
                .map(|i| format!("job-{i:05}"))
                .collect();
            let jobs = names.iter().map(|name| job(name, &ns, "1s")).collect();
            apply(&cluster.admin, jobs).await?;
            tracker.wait("Succeeded", &names, succeeded).await?;
            total += batch;
            say!(
                "  {total}/{target} jobs Succeeded ({}s)",
                t.elapsed().as_secs()
            );
        }
        op.wait_quiet().await;
        let (hwm, rss) = memory_mib(op.pid());
        let peer = cluster.training_operator_pid().map(memory_mib);
        say!(
            "memory with {target} jobs: operator peak {hwm:.1} MiB (RSS {rss:.1}); training operator {}",
            peer.map_or("?".to_string(), |(h, r)| format!(
                "peak {h:.1} MiB (RSS {r:.1})"
            ))
        );
        let mut restarts = Vec::new();
        for i in 1..=settings.restarts {
            say!("restart {i}/{} with {target} jobs", settings.restarts);
            restarts.push(restart(cluster, &mut op, target).await?);
        }
        let field = |k: &str| {
            restarts
                .iter()
                .filter_map(|r| r[k].as_f64())
                .collect::<Vec<_>>()
        };
        let peer_after = cluster.training_operator_pid().map(memory_mib);
        out.insert(
            target.to_string(),
            json!({
                "fill_seconds": t.elapsed().as_secs_f64(),
                "operator_peak_rss_mib_while_processing": round(hwm),
                "operator_rss_mib_after_processing": round(rss),
                "operator_peak_rss_mib_after_restart": stats(&field("peak_rss_mib")),
                "operator_rss_mib_after_restart": stats(&field("rss_mib")),
                "training_operator_rss_mib": peer_after.map(|(_, r)| round(r)),
                "training_operator_peak_rss_mib": peer_after.map(|(h, _)| round(h)),
                "restart": {
                    "ready_seconds": stats(&field("ready_seconds")),
                    "first_pass_seconds": stats(&field("first_pass_seconds")),
                    "writes": stats(&field("writes")),
                    "reads": stats(&field("reads")),
                    "reconciles": stats(&field("reconciles")),
                    "requests_first_run": restarts.first().map(|r| r["requests"].clone()),
                },
            }),
        );
    }
    drop(tracker);
    drop(op);
    Ok(Value::Object(out))
}

// ---- the report ----------------------------------------------------------------------------

fn sh(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn machine(cluster: &Cluster) -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, m)| m.trim().to_string())
        .unwrap_or_default();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_gib = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|k| k.parse::<f64>().ok())
        .map_or(0.0, |k| k / 1024.0 / 1024.0);
    let lock = std::fs::read_to_string(repo().join("Cargo.lock")).unwrap_or_default();
    let version_of = |krate: &str| {
        let needle = format!("name = \"{krate}\"\nversion = \"");
        lock.find(&needle)
            .map(|i| {
                lock[i + needle.len()..]
                    .split('"')
                    .next()
                    .unwrap_or("")
                    .to_string()
            })
            .unwrap_or_default()
    };
    let versions = std::fs::read_to_string(cluster.bin_dir.join("VERSIONS")).unwrap_or_default();
    let dirty = !sh(
        "git",
        &[
            "-C",
            repo().to_str().unwrap(),
            "status",
            "--porcelain",
            "--untracked-files=no",
        ],
    )
    .is_empty();
    json!({
        "cpu": model,
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "memory_gib": (mem_gib * 10.0).round() / 10.0,
        "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
        "rustc": sh("rustc", &["-V"]),
        "kube": version_of("kube"),
        "k8s_openapi": version_of("k8s-openapi"),
        "cluster": versions.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>(),
        "commit": format!("{}{}", sh("git", &["-C", repo().to_str().unwrap(), "rev-parse", "--short", "HEAD"]), if dirty { " (with uncommitted changes)" } else { "" }),
        "date": jiff::Timestamp::now().strftime("%Y-%m-%d %H:%M UTC").to_string(),
    })
}

fn f(v: &Value) -> String {
    match v.as_f64() {
        Some(x) if x >= 100.0 => format!("{x:.0}"),
        Some(x) if x >= 10.0 => format!("{x:.1}"),
        Some(x) => format!("{x:.2}"),
        None => "–".to_string(),
    }
}

/// "median (min–max)".
fn ms(s: &Value) -> String {
    if s["runs"].as_array().is_some_and(|r| r.len() > 1) {
        format!("{} ({}–{})", f(&s["median"]), f(&s["min"]), f(&s["max"]))
    } else {
        f(&s["median"])
    }
}

/// The operator's request label, the apiserver's name for the same requests, and the least the
/// design needs per job without preprocessing (None: not a request the design needs).
const COST_ROWS: &[(&str, &str, &str)] = &[
    ("get finetunejobs", "GET finetune.dev/finetunejobs", "0"),
    (
        "patch finetunejobs",
        "PATCH finetune.dev/finetunejobs",
        "1 (finalizer)",
    ),
    (
        "patch finetunejobs/status",
        "APPLY finetune.dev/finetunejobs/status",
        "3 (Pending, Training, Succeeded) + 1 per progress change",
    ),
    ("get pytorchjobs", "GET kubeflow.org/pytorchjobs", "0"),
    (
        "patch pytorchjobs",
        "APPLY kubeflow.org/pytorchjobs",
        "1 (create)",
    ),
    ("list pods", "LIST pods", "0"),
    ("list discovery", "", "0"),
    (
        "get pods/log",
        "CONNECT pods/log",
        "1 per log read while training",
    ),
    (
        "create events",
        "POST events.k8s.io/events",
        "2 (TrainingStarted, TrainingSucceeded) + progress events",
    ),
];

fn markdown(r: &Value, baseline: Option<&Value>, settings: &Settings) -> String {
    let m = &r["machine"];
    let b = baseline.unwrap_or(&Value::Null);
    let has_b = baseline.is_some();
    let mut md = String::new();
    let mut w = |s: &str| {
        md.push_str(s);
        md.push('\n');
    };
    let runs = r["settings"]["runs"]
        .as_u64()
        .unwrap_or(settings.runs as u64);
    w("# Benchmarks");
    w("");
    w(
        "The operator on the local control plane ([`tests/cluster/`](tests/cluster/README.md)): a \
       real kube-apiserver, etcd, controller manager, scheduler and Kubeflow training operator, \
       with kwok playing the nodes and pods. Written by `make bench` ([`scripts/bench.sh`](scripts/bench.sh), \
       driver [`benches/cluster.rs`](benches/cluster.rs)); every figure is also in \
       [`bench/results.json`](bench/results.json). These are benchmarks, not tests: nothing asserts \
       a time.",
    );
    w("");
    w(&format!("- **Command**: `{}`", settings.command));
    w(&format!(
        "- **Machine**: {} cores ({}), {} GiB, Linux {}; {}; measured {}",
        m["cores"],
        m["cpu"].as_str().unwrap_or(""),
        m["memory_gib"],
        m["kernel"].as_str().unwrap_or(""),
        m["rustc"].as_str().unwrap_or(""),
        m["date"].as_str().unwrap_or("")
    ));
    w(&format!(
        "- **Versions**: operator at {} (release build), kube {}, k8s-openapi {}; cluster: {}",
        m["commit"].as_str().unwrap_or(""),
        m["kube"].as_str().unwrap_or(""),
        m["k8s_openapi"].as_str().unwrap_or(""),
        m["cluster"]
            .as_array()
            .map(|a| a
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(", "))
            .unwrap_or_default()
    ));
    w(&format!(
        "- **Runs**: `median (min–max)` of {runs} runs unless a row says otherwise. The whole \
         run took {} min.",
        f(&r["total_minutes"])
    ));
    if has_b {
        w(&format!(
            "- **Before**: the same benchmark on the operator before the changes of section 7 \
             (at {}), from [`bench/baseline.json`](bench/baseline.json).",
            b["machine"]["commit"].as_str().unwrap_or("?")
        ));
    }
    w("");

    // Summary against the goals.
    let top = settings
        .sizes
        .iter()
        .max()
        .copied()
        .unwrap_or(1000)
        .to_string();
    let big = settings
        .scale
        .iter()
        .max()
        .copied()
        .unwrap_or(10000)
        .to_string();
    // The largest job count a run measured, and its figures.
    let largest = |x: &Value| -> (String, Value) {
        x["scale"]
            .as_object()
            .and_then(|o| o.iter().max_by_key(|(k, _)| k.parse::<u64>().unwrap_or(0)))
            .map_or(("–".to_string(), Value::Null), |(k, v)| {
                (k.clone(), v.clone())
            })
    };
    let ratio = |x: &Value| ms(&x["throughput"][&top]["ratio"]);
    let mem = |x: &Value| {
        let (n, s) = largest(x);
        let restarted = s["operator_peak_rss_mib_after_restart"]["median"].as_f64();
        let processing = s["operator_peak_rss_mib_while_processing"].as_f64();
        let Some(peer) = s["training_operator_rss_mib"].as_f64() else {
            return "–".to_string();
        };
        let side = |what: &str, mib: Option<f64>| {
            mib.map(|o| format!("{what} {o:.0} MiB ({:.2}×)", o / peer))
        };
        let parts: Vec<String> = [
            side("after restart", restarted),
            side("while processing", processing),
        ]
        .into_iter()
        .flatten()
        .collect();
        format!("{} vs {peer:.0} MiB, at {n} jobs", parts.join(", "))
    };
    let writes = |x: &Value| {
        let (n, s) = largest(x);
        format!("{} at {n} jobs", ms(&s["restart"]["writes"]))
    };
    w("## Summary");
    w("");
    let rows = [
        (
            format!("time to Training, operator / limit, N = {top}"),
            &ratio as &dyn Fn(&Value) -> String,
            "≤ 1.3".to_string(),
        ),
        (
            "peak RSS: operator vs training operator".to_string(),
            &mem,
            format!("< 0.33× at {big} jobs"),
        ),
        (
            "writes after a restart with finished jobs".to_string(),
            &writes,
            "0".to_string(),
        ),
    ];
    if has_b {
        w("| figure | before | after | goal |");
        w("| --- | --- | --- | --- |");
        for (what, value, goal) in &rows {
            w(&format!(
                "| {what} | {} | {} | {goal} |",
                value(b),
                value(r)
            ));
        }
    } else {
        w("| figure | value | goal |");
        w("| --- | --- | --- |");
        for (what, value, goal) in &rows {
            w(&format!("| {what} | {} | {goal} |", value(r)));
        }
    }
    w("");

    // 1. Throughput.
    w("## 1. Throughput and latency");
    w("");
    w(
        "N FineTuneJobs (one node, one GPU, no preprocessing; kwok runs each pod for 1 s) are \
       created at once (32 creates in flight) in a fresh namespace. **Time** runs from the first \
       create to the moment every job has its PyTorchJob and phase Training. **Latency** is, per \
       job, from its create returning to its PyTorchJob appearing in a watch the driver holds on \
       the namespace (local receive times: object timestamps have one-second precision). \
       **The limit** is a minimal controller in the same driver: the same kube client library, \
       the operator's kubeconfig and ServiceAccount, kube's default client settings and the \
       operator's default concurrency (8). It watches the FineTuneJobs and, once per job, \
       server-side-applies exactly the PyTorchJob the operator builds \
       (`finetune_operator::children::build_pytorch_job`) and writes exactly the Training status \
       the operator would (`status::decide`): 2 writes, no reads. Operator and limit alternate, \
       run by run, each in its own namespace, deleted before the next run.",
    );
    w("");
    let tp_row = |x: &Value, n: &str, who: &str| -> String {
        let t = &x["throughput"][n];
        format!(
            "{} | {} | {} | {} | {}",
            ms(&t[who]["seconds"]),
            ms(&t[who]["jobs_per_second"]),
            ms(&t[who]["p50_ms"]),
            ms(&t[who]["p99_ms"]),
            if who == "operator" {
                ms(&t["ratio"])
            } else {
                String::new()
            }
        )
    };
    w(
        "| N | who | time to all Training (s) | jobs/s | p50 apply → child (ms) | p99 apply → child (ms) | operator / limit |",
    );
    w("| --- | --- | --- | --- | --- | --- | --- |");
    for n in &settings.sizes {
        let n = n.to_string();
        if has_b && b["throughput"].get(&n).is_some() {
            w(&format!(
                "| {n} | operator, before | {} |",
                tp_row(b, &n, "operator")
            ));
            w(&format!(
                "| {n} | limit, before run | {} |",
                tp_row(b, &n, "limit")
            ));
        }
        w(&format!(
            "| {n} | operator | {} |",
            tp_row(r, &n, "operator")
        ));
        w(&format!("| {n} | limit | {} |", tp_row(r, &n, "limit")));
    }
    w("");

    // 2. API cost.
    w("## 2. API cost per job lifecycle");
    w("");
    w(
        "Requests per FineTuneJob from creation to Succeeded (then until the operator has been idle \
       for 3 s), in the throughput runs: the operator's own counter \
       `finetune_operator_api_requests_total{verb,resource}`, and beside it the apiserver's \
       `apiserver_request_total` over the same window. The apiserver counts every client (it has \
       no per-client label), so its figures are an upper bound where other components use the \
       same requests (pod lists, events: kwok and the training operator publish events too); \
       the driver's own creates are subtracted. The kwok catch-all log that every pod serves \
       holds a few training steps and a checkpoint, so each job also reads its log, records \
       progress once and publishes progress events. The minimum is what the design needs with \
       watch caches: the writes that change what a user sees, and no reads besides the shared \
       watches and the log.",
    );
    w("");
    for n in &settings.sizes {
        let n = n.to_string();
        let c = &r["api_cost"][&n];
        if c.is_null() {
            continue;
        }
        let bc = &b["api_cost"][&n];
        w(&format!(
            "N = {n}: writes per job {}, reads per job {}, reconciles per job {}{}.",
            ms(&c["writes_per_job"]),
            ms(&c["reads_per_job"]),
            ms(&c["reconciles_per_job"]),
            if bc.is_null() {
                String::new()
            } else {
                format!(
                    " (before: {} writes, {} reads, {} reconciles)",
                    ms(&bc["writes_per_job"]),
                    ms(&bc["reads_per_job"]),
                    ms(&bc["reconciles_per_job"])
                )
            }
        ));
        w("");
        if has_b && !bc.is_null() {
            w(
                "| request | operator, before | operator | apiserver, before | apiserver | minimum |",
            );
            w("| --- | --- | --- | --- | --- | --- |");
        } else {
            w("| request | operator | apiserver | minimum |");
            w("| --- | --- | --- | --- |");
        }
        for (ours, theirs, min) in COST_ROWS {
            let get = |x: &Value, k: &str| {
                if k.is_empty() {
                    "–".to_string()
                } else {
                    f(&x[k])
                }
            };
            let zero = |s: String| if s == "–" { "0".to_string() } else { s };
            if has_b && !bc.is_null() {
                w(&format!(
                    "| `{ours}` | {} | {} | {} | {} | {min} |",
                    zero(get(&bc["operator"], ours)),
                    zero(get(&c["operator"], ours)),
                    get(&bc["apiserver"], theirs),
                    get(&c["apiserver"], theirs)
                ));
            } else {
                w(&format!(
                    "| `{ours}` | {} | {} | {min} |",
                    zero(get(&c["operator"], ours)),
                    get(&c["apiserver"], theirs)
                ));
            }
        }
        w("");
    }

    // 3 and 4. Memory and restart.
    w("## 3. Memory");
    w("");
    w(
        "One namespace filled with finished jobs, 1,000 at a time (each with its PyTorchJob, pod and \
       Service, kept after success), watched by one operator. *While processing*: the operator's \
       VmHWM after it took every job from creation to Succeeded (one sample). *After restart*: \
       VmHWM of a freshly started operator once it has listed and passed over every job \
       (median of the restarts below). Beside it, the Kubeflow training operator of the same \
       cluster, holding the same PyTorchJobs (VmRSS, and VmHWM since the cluster started). \
       /proc/PID/status; MiB.",
    );
    w("");
    w(
        "| jobs | | operator, peak while processing | operator, peak after restart | training operator RSS (peak) | operator / training operator |",
    );
    w("| --- | --- | --- | --- | --- | --- |");
    for n in &settings.scale {
        let n = n.to_string();
        for (label, x) in [("before", b), ("after", r)] {
            let s = &x["scale"][&n];
            if s.is_null() || (label == "before" && !has_b) {
                continue;
            }
            let op = s["operator_peak_rss_mib_after_restart"]["median"].as_f64();
            let peer = s["training_operator_rss_mib"].as_f64();
            w(&format!(
                "| {n} | {} | {} | {} | {} ({}) | {} |",
                if has_b { label } else { "" },
                f(&s["operator_peak_rss_mib_while_processing"]),
                ms(&s["operator_peak_rss_mib_after_restart"]),
                f(&s["training_operator_rss_mib"]),
                f(&s["training_operator_peak_rss_mib"]),
                match (op, peer) {
                    (Some(o), Some(p)) => format!("{:.2}×", o / p),
                    _ => "–".into(),
                }
            ));
        }
    }
    w("");
    w("## 4. Restart");
    w("");
    w(&format!(
        "The operator is killed (SIGKILL) with every job of section 3 finished and started \
       again, {} times. *Ready*: from the start of the process to `/readyz` answering 200. *First \
       pass*: once every job was reconciled at least once, until the reconcile counter has not \
       moved for 3 s (time of its last change). `/readyz` answers once the process serves, \
       before its caches are filled, so the first pass is the time to full service. Requests: \
       everything the new process sent (its own metrics), including the initial lists (pages \
       of 50 objects) and watches.",
        r["settings"]["restarts"]
    ));
    w("");
    w("| jobs | | ready (s) | first pass (s) | reconciles | reads | writes |");
    w("| --- | --- | --- | --- | --- | --- | --- |");
    for n in &settings.scale {
        let n = n.to_string();
        for (label, x) in [("before", b), ("after", r)] {
            let s = &x["scale"][&n]["restart"];
            if s.is_null() || (label == "before" && !has_b) {
                continue;
            }
            w(&format!(
                "| {n} | {} | {} | {} | {} | {} | {} |",
                if has_b { label } else { "" },
                ms(&s["ready_seconds"]),
                ms(&s["first_pass_seconds"]),
                ms(&s["reconciles"]),
                ms(&s["reads"]),
                ms(&s["writes"])
            ));
        }
    }
    w("");

    // 5. Log following.
    w("## 5. Log following");
    w("");
    let l = &r["log_following"];
    w(&format!(
        "{} jobs in Training (kwok runs their pods for 2 h); the driver appends one \
       InstructLab v0.12 training step to each rank-0 log every 2 s (3 lines of 240 characters, \
       as Rich prints them: two per-rank loss lines and the metrics line), about 360 B/s per job. \
       The operator runs with its defaults (a job's log is read at most every 10 s). After 20 s \
       of warm-up, {} windows of {} s: operator CPU (utime + stime from /proc/PID/stat) and its \
       requests.",
        l["jobs"],
        r["settings"]
            .get("log_windows")
            .and_then(Value::as_u64)
            .unwrap_or(settings.log_windows as u64),
        l["window_seconds"]
    ));
    w("");
    w(
        "| | CPU (% of one core) | CPU ms per 1,000 log lines | requests/s | writes/s | log reads/s | RSS (MiB) | jobs with progress |",
    );
    w("| --- | --- | --- | --- | --- | --- | --- | --- |");
    for (label, x) in [("before", b), ("after", r)] {
        let l = &x["log_following"];
        if l.is_null() || (label == "before" && !has_b) {
            continue;
        }
        w(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {}/{} |",
            if has_b { label } else { "operator" },
            ms(&l["cpu_percent_of_one_core"]),
            ms(&l["cpu_ms_per_1000_log_lines"]),
            ms(&l["requests_per_second"]),
            ms(&l["writes_per_second"]),
            ms(&l["log_reads_per_second"]),
            f(&l["rss_mib"]),
            l["jobs_with_progress"]
                .as_u64()
                .map_or("–".to_string(), |p| p.to_string()),
            l["jobs"]
        ));
    }
    w("");
    w(
        "CPU per 1,000 log lines is the operator's whole CPU in a window (reading, parsing, \
       status writes, events, its watches) over the lines the driver appended in it.",
    );
    w("");
    parser_section(r, &mut w);
    if let Ok(notes) = std::fs::read_to_string(repo().join("bench/NOTES.md")) {
        w(notes.trim_end());
        w("");
    }
    md
}

/// Section 6: the parser's own throughput (benches/parser.rs, run by `make bench` first).
fn parser_section(r: &Value, w: &mut impl FnMut(&str)) {
    let Some(rows) = r["parser"].as_array().filter(|rows| !rows.is_empty()) else {
        return;
    };
    w("## 6. Log parser");
    w("");
    w(
        "[`benches/parser.rs`](benches/parser.rs) on one core: large logs made by repeating the \
       fixtures of `tests/fixtures/instructlab/`, fed in 64 KiB chunks as the operator reads a \
       log; best of 3. *parse* only splits lines and recognises records; *parse_and_fold* also \
       folds them into the status values, as the controller does.",
    );
    w("");
    w("| log | what | MB | lines | records | MB/s | ms per 1,000 lines |");
    w("| --- | --- | --- | --- | --- | --- | --- |");
    for row in rows {
        w(&format!(
            "| {} | {} | {:.0} | {} | {} | {} | {} |",
            row["log"].as_str().unwrap_or("–"),
            row["what"].as_str().unwrap_or("–"),
            row["bytes"].as_f64().unwrap_or(0.0) / 1e6,
            row["lines"],
            row["records"],
            f(&row["mb_per_s"]),
            f(&row["ms_per_1000_lines"]),
        ));
    }
    w("");
}

/// The JSON lines benches/parser.rs printed, when `make bench` saved them (`FTO_BENCH_PARSER`).
fn parser_results() -> Option<Value> {
    let path = std::env::var_os("FTO_BENCH_PARSER")?;
    let text = std::fs::read_to_string(path).ok()?;
    let rows: Vec<Value> = text
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|v| v["bench"] == "parser")
        .collect();
    Some(Value::Array(rows))
}

async fn run() -> Res<()> {
    let settings = Settings::from_env();
    if std::env::var("FTO_BENCH_REPORT_ONLY").is_ok_and(|v| v == "1") {
        // Only the report, from the JSON file of an earlier run.
        let results: Value = serde_json::from_str(&std::fs::read_to_string(&settings.json)?)?;
        let baseline = settings
            .baseline
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .and_then(|t| serde_json::from_str(&t).ok());
        std::fs::write(
            &settings.md,
            markdown(&results, baseline.as_ref(), &settings),
        )?;
        say!("wrote {}", settings.md.display());
        return Ok(());
    }
    let cluster = Cluster::connect().await?;
    say!("operator binary: {}", cluster.operator_bin.display());
    cluster.install()?;
    cluster.add_nodes(10, 2000)?;
    // What an interrupted run left behind.
    let namespaces: Api<Namespace> = Api::all(cluster.admin.clone());
    for ns in namespaces
        .list_metadata(&ListParams::default())
        .await?
        .items
    {
        let name = ns.name_any();
        if name.starts_with("bench-") {
            say!("removing namespace {name}, left by an earlier run");
            cluster.delete_namespace(&name).await?;
        }
    }
    let mut results = serde_json::Map::new();
    results.insert("machine".into(), machine(&cluster));
    if let Some(parser) = parser_results() {
        results.insert("parser".into(), parser);
    }
    results.insert(
        "settings".into(),
        json!({"runs": settings.runs, "sizes": settings.sizes, "scale": settings.scale,
               "restarts": settings.restarts, "log_jobs": settings.log_jobs,
               "log_windows": settings.log_windows,
               "apply_concurrency": APPLY_CONCURRENCY, "operator_concurrency": OPERATOR_CONCURRENCY}),
    );
    let save = |results: &serde_json::Map<String, Value>| -> Res<()> {
        if let Some(dir) = settings.json.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(
            &settings.json,
            serde_json::to_string_pretty(results)? + "\n",
        )?;
        Ok(())
    };
    if settings.wants("throughput") {
        let t = throughput(&cluster, &settings).await?;
        results.insert("throughput".into(), t["throughput"].clone());
        results.insert("api_cost".into(), t["api_cost"].clone());
        save(&results)?;
    }
    if settings.wants("logs") {
        results.insert(
            "log_following".into(),
            log_following(&cluster, &settings).await?,
        );
        save(&results)?;
    }
    if settings.wants("scale") {
        results.insert("scale".into(), scale(&cluster, &settings).await?);
    }
    results.insert(
        "total_minutes".into(),
        round(START.get().unwrap().elapsed().as_secs_f64() / 60.0),
    );
    save(&results)?;
    let results = Value::Object(results);
    let baseline = settings
        .baseline
        .as_ref()
        .and_then(|p| std::fs::read_to_string(p).ok())
        .and_then(|t| serde_json::from_str(&t).ok());
    std::fs::write(
        &settings.md,
        markdown(&results, baseline.as_ref(), &settings),
    )?;
    say!(
        "wrote {} and {}",
        settings.json.display(),
        settings.md.display()
    );
    Ok(())
}
