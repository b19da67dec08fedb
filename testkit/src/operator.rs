//! The operator as a local process under its ServiceAccount token, watching one namespace, its
//! metrics on a free port of 127.0.0.1: spawn, wait for `/readyz`, SIGTERM, SIGKILL, restart,
//! and its Prometheus metrics.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use crate::endpoint::http_get;
use crate::{Result, prom};

/// The operator's request counter, summed by (verb, resource).
pub type Requests = BTreeMap<(String, String), f64>;

/// How to run the operator.
#[derive(Clone, Debug)]
pub struct OperatorOptions {
    pub binary: PathBuf,
    /// The only namespace it watches (`--namespace`).
    pub namespace: String,
    /// Its kubeconfig (normally [`crate::Cluster::operator_kubeconfig`]).
    pub kubeconfig: PathBuf,
    /// Its stdout and stderr, appended.
    pub log: PathBuf,
    /// `--log-format`: `text` or `json`.
    pub log_format: String,
    /// More command-line flags.
    pub args: Vec<String>,
    /// More environment (e.g. `RUST_LOG`).
    pub env: Vec<(String, String)>,
    /// How long it may take to answer `/readyz`.
    pub ready_timeout: Duration,
}

impl OperatorOptions {
    /// `binary` watching `namespace` under `kubeconfig`, logging text to `log`, ready within 30 s.
    pub fn new(binary: &Path, namespace: &str, kubeconfig: &Path, log: &Path) -> Self {
        Self {
            binary: binary.to_path_buf(),
            namespace: namespace.to_string(),
            kubeconfig: kubeconfig.to_path_buf(),
            log: log.to_path_buf(),
            log_format: "text".to_string(),
            args: Vec::new(),
            env: Vec::new(),
            ready_timeout: Duration::from_secs(30),
        }
    }
}

/// The operator binary cargo built beside the running test or bench: a test or bench binary
/// lies in `target/<profile>/deps/`, the operator in `target/<profile>/` (cargo builds it for
/// every integration test and bench). `FTO_OPERATOR_BINARY` names another one.
pub fn operator_binary() -> Result<PathBuf> {
    let binary = match std::env::var_os("FTO_OPERATOR_BINARY") {
        Some(path) => PathBuf::from(path),
        None => {
            let exe = std::env::current_exe()?;
            exe.parent()
                .and_then(Path::parent)
                .ok_or("no target directory above the running executable")?
                .join("finetune-operator")
        }
    };
    if !binary.exists() {
        return Err(format!("no operator binary at {}", binary.display()).into());
    }
    Ok(binary)
}

/// A running operator. Killed on drop.
pub struct Operator {
    child: Option<Child>,
    options: OperatorOptions,
    pub namespace: String,
    pub metrics_port: u16,
    ready_after: Duration,
}

impl Operator {
    /// Starts the operator and returns once `/readyz` answers 200.
    pub fn launch(options: OperatorOptions) -> Result<Self> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let mut op = Self {
            child: None,
            namespace: options.namespace.clone(),
            options,
            metrics_port: port,
            ready_after: Duration::ZERO,
        };
        op.spawn()?;
        Ok(op)
    }

    fn spawn(&mut self) -> Result<()> {
        let o = &self.options;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&o.log)?;
        let started = Instant::now();
        let child = Command::new(&o.binary)
            .args([
                "run",
                "--namespace",
                &o.namespace,
                "--log-format",
                &o.log_format,
            ])
            .arg("--metrics-address")
            .arg(format!("127.0.0.1:{}", self.metrics_port))
            .args(&o.args)
            .env("KUBECONFIG", &o.kubeconfig)
            .envs(o.env.iter().map(|(k, v)| (k, v)))
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("start the operator {}: {e}", o.binary.display()))?;
        self.child = Some(child);
        self.wait_ready(started)
    }

    fn wait_ready(&mut self, started: Instant) -> Result<()> {
        let log = self.options.log.display().to_string();
        loop {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                return Err(format!("the operator exited ({status}); see {log}").into());
            }
            if http_get(self.metrics_port, "/readyz").is_some_and(|(code, _)| code == 200) {
                self.ready_after = started.elapsed();
                return Ok(());
            }
            if started.elapsed() > self.options.ready_timeout {
                return Err(format!("operator not ready; see {log}").into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// How long the last start took, from spawning the process to `/readyz` answering 200.
    pub fn ready_after(&self) -> Duration {
        self.ready_after
    }

    /// Its log file.
    pub fn log(&self) -> &Path {
        &self.options.log
    }

    /// Whether the process is still running (it never exits on its own).
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// The process id (the leader-election identity without POD_NAME), while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGTERM, as Kubernetes stops a pod, and the exit status once the process ended (within
    /// 15 s).
    pub fn terminate(&mut self) -> Result<ExitStatus> {
        let mut child = self.child.take().ok_or("the operator is not running")?;
        let sent = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()?;
        if !sent.success() {
            return Err(format!("kill -TERM {}: {sent}", child.id()).into());
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err("the operator ignored SIGTERM".into());
            }
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

    /// Kills the process and starts it again, with the same options and port.
    pub fn restart(&mut self) -> Result<()> {
        self.kill();
        self.spawn()
    }

    /// Its Prometheus metrics.
    pub fn metrics(&self) -> Result<String> {
        match http_get(self.metrics_port, "/metrics") {
            Some((200, body)) => Ok(body),
            Some((code, _)) => Err(format!("/metrics answered {code}").into()),
            None => Err(format!(
                "nothing answers on port {}; see {}",
                self.metrics_port,
                self.options.log.display()
            )
            .into()),
        }
    }

    /// Reconciles it has run (`finetune_operator_reconciles_total`).
    pub fn reconciles(&self) -> Result<f64> {
        Ok(prom::value(&self.metrics()?, "finetune_operator_reconciles_total").unwrap_or(0.0))
    }

    /// Its API requests (`finetune_operator_api_requests_total`), by (verb, resource).
    pub fn requests(&self) -> Result<Requests> {
        let mut out = Requests::new();
        for (labels, value) in
            prom::samples(&self.metrics()?, "finetune_operator_api_requests_total")
        {
            let label = |k: &str| labels.get(k).cloned().unwrap_or_default();
            *out.entry((label("verb"), label("resource"))).or_insert(0.0) += value;
        }
        Ok(out)
    }

    /// Its API requests whose verb is a write.
    pub fn write_requests(&self) -> Result<f64> {
        Ok(self
            .requests()?
            .iter()
            .filter(|((verb, _), _)| is_write(verb))
            .map(|(_, v)| v)
            .sum())
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Whether a request verb (the operator's `get`, the apiserver's `GET`) changes something.
pub fn is_write(verb: &str) -> bool {
    !matches!(verb.to_ascii_lowercase().as_str(), "get" | "list" | "watch")
}
