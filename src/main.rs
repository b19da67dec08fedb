//! The `finetune-operator` binary: `run` (default), `crd`, `render`, `inspect-log`, `kubectl`;
//! started as `kubectl-finetune`, the kubectl plugin (`finetune_operator::plugin`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use finetune_operator::controller::{self, Context, Settings};
use finetune_operator::telemetry::{self, CountRequests, Health, LogFormat, Metrics};
use finetune_operator::{api, client, plugin, render};
use kube::Client;
use kube::runtime::events::Reporter;
use kube_lease_manager::LeaseManagerBuilder;
use tokio::sync::watch;
use tracing::{error, info, warn};

#[cfg(target_env = "musl")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    version,
    about = "Runs InstructLab fine-tuning jobs (FineTuneJob) on Kubernetes"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Run the controller (the default).
    Run(RunArgs),
    /// Print the FineTuneJob CustomResourceDefinition as YAML.
    Crd,
    /// Print, as multi-document YAML, the children a FineTuneJob would get. No cluster needed.
    Render {
        /// FineTuneJob YAML file, or - for standard input.
        #[arg(short = 'f', long = "filename")]
        file: PathBuf,
    },
    /// Print, as JSON, the progress, checkpoints and events the operator would derive from a
    /// training log (e.g. `kubectl logs NAME-master-0 > run.log`).
    InspectLog {
        /// Rank-0 log file, or - for standard input.
        file: PathBuf,
        /// Epochs of the run (spec.training.epochs); without it, the log's own count if it has one.
        #[arg(long)]
        epochs: Option<i64>,
    },
    /// The kubectl plugin (`kubectl finetune`, when this binary is installed as kubectl-finetune).
    Kubectl(plugin::cli::Cli),
}

#[derive(Args, Clone)]
struct RunArgs {
    /// Watch FineTuneJobs in this namespace only (default: all namespaces).
    #[arg(long, env = "WATCH_NAMESPACE")]
    namespace: Option<String>,
    /// Take a Lease before reconciling, so that only one replica acts at a time.
    #[arg(long)]
    leader_elect: bool,
    /// Namespace of the leader-election Lease (default: the pod's namespace).
    #[arg(long, env = "POD_NAMESPACE", default_value = "finetune-system")]
    lease_namespace: String,
    /// Address of the /metrics, /healthz and /readyz endpoints.
    #[arg(long, default_value = "0.0.0.0:8080")]
    metrics_address: SocketAddr,
    /// Log format.
    #[arg(long, value_enum, default_value = "json")]
    log_format: LogFormat,
    /// Reconciles running at once.
    #[arg(long, default_value_t = 8)]
    concurrency: u16,
    /// Milliseconds to wait after a change before reconciling, to batch bursts of updates.
    #[arg(long, default_value_t = 0)]
    debounce_ms: u64,
    /// Least seconds between two reads of a training job's log, and so between two progress
    /// updates of its status.
    #[arg(long, default_value_t = 10)]
    progress_interval_seconds: u64,
    /// Most reads of training logs a second, over all jobs: with more training jobs than
    /// progress-interval-seconds × this, each job's log is read less often than the interval
    /// (1,000 jobs at the defaults: every 50 s). Each read is a request the API server passes
    /// on to a kubelet.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=10000))]
    log_reads_per_second: u32,
    /// Seconds a request to the API server may take to connect, to send, or to wait for the
    /// next bytes of its answer, before it fails and the reconcile is retried; so a hung log read
    /// cannot hold a worker. Watches are exempt: kube restarts a watch silent for 295 s itself.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
    api_timeout_seconds: u64,
    /// End failure and cancellation Events with the container's last log lines (training
    /// samples dropped, secrets masked). `false`: Events carry no log line at all.
    #[arg(long, env = "FTO_EVENT_LOG_TAILS", default_value_t = true, action = clap::ArgAction::Set)]
    event_log_tails: bool,
    /// Export per-job metrics on /metrics: `finetune_job_*` labelled `namespace` and `name`
    /// (phase, progress ratio, loss, validation loss, GPU-seconds, ETA). Off by default: each
    /// job kept in the cluster, finished ones included, adds up to six series, which a
    /// Prometheus should take on purpose. `finetune_jobs{phase}` is always exported.
    #[arg(long, env = "FTO_PER_JOB_METRICS", default_value_t = false, num_args = 0..=1,
          default_missing_value = "true", require_equals = true, action = clap::ArgAction::Set)]
    per_job_metrics: bool,
}

fn main() -> ExitCode {
    // kubectl runs a plugin by its file name: started as kubectl-finetune, this is the plugin.
    if std::env::args_os()
        .next()
        .is_some_and(|argv0| plugin::invoked_as_plugin(&argv0))
    {
        return plugin::main_as_plugin(std::env::args_os());
    }
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Crd) => {
            print!("{}", api::crd_yaml());
            ExitCode::SUCCESS
        }
        Some(Command::Render { file }) => {
            match read_text(&file).map(|yaml| render::render(&yaml)) {
                Ok(Ok(out)) => {
                    print!("{out}");
                    ExitCode::SUCCESS
                }
                Ok(Err(e)) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
                Err(e) => {
                    eprintln!("error: cannot read {}: {e}", file.display());
                    ExitCode::FAILURE
                }
            }
        }
        Some(Command::InspectLog { file, epochs }) => match read_bytes(&file) {
            Ok(bytes) => {
                let inspection = finetune_operator::logs::progress::inspect(&bytes, epochs);
                println!(
                    "{}",
                    serde_json::to_string_pretty(&inspection).expect("inspection serializes")
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: cannot read {}: {e}", file.display());
                ExitCode::FAILURE
            }
        },
        Some(Command::Kubectl(cli)) => plugin::run(cli),
        Some(Command::Run(args)) => run(args),
        None => run(cli.run),
    }
}

/// A file's bytes, or standard input's for `-`.
fn read_bytes(file: &PathBuf) -> std::io::Result<Vec<u8>> {
    if file.as_os_str() == "-" {
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut bytes)?;
        Ok(bytes)
    } else {
        std::fs::read(file)
    }
}

fn read_text(file: &PathBuf) -> std::io::Result<String> {
    String::from_utf8(read_bytes(file)?)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

fn run(args: RunArgs) -> ExitCode {
    telemetry::init_logging(args.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(operate(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!(error = %e, "finetune-operator stopped");
            ExitCode::FAILURE
        }
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

async fn operate(args: RunArgs) -> Result<(), BoxError> {
    let metrics = Arc::new(Metrics::default().with_per_job_metrics(args.per_job_metrics));
    let health = Arc::new(Health::default());
    let config = kube::Config::infer().await?;
    let clients = client::clients(
        config,
        Duration::from_secs(args.api_timeout_seconds),
        &CountRequests {
            family: metrics.api_requests.clone(),
        },
    )?;
    let client = clients.requests.clone();

    // One shutdown signal (SIGTERM or Ctrl-C) for the controller, the lease and the server.
    let (stop_tx, stop_rx) = watch::channel(false);
    let stop_tx = Arc::new(stop_tx);
    let on_signal = stop_tx.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        info!("shutting down");
        let _ = on_signal.send(true);
    });
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };

    let server = tokio::spawn(telemetry::serve(
        args.metrics_address,
        metrics.clone(),
        health.clone(),
        stopped(stop_rx.clone()),
    ));

    let reporter = Reporter {
        controller: finetune_operator::names::FIELD_MANAGER.to_string(),
        instance: std::env::var("POD_NAME").ok(),
    };
    let ctx = Arc::new(
        Context::new(
            client.clone(),
            reporter,
            metrics,
            Duration::from_secs(args.progress_interval_seconds.max(1)),
        )
        .with_log_tails(args.event_log_tails)
        .with_log_read_budget(args.log_reads_per_second)
        .with_background_events(),
    );
    let settings = Settings {
        namespace: args.namespace.clone(),
        concurrency: args.concurrency,
        debounce: Duration::from_millis(args.debounce_ms),
        watch_client: clients.watches,
    };

    let result = if args.leader_elect {
        run_as_leader(client, &args, ctx, settings, health, stop_rx.clone()).await
    } else {
        health.set_ready(true);
        controller::run(ctx, settings, stopped(stop_rx.clone()))
            .await
            .map_err(BoxError::from)
    };
    // However the controller ended (a signal, an error), the server stops too, so that a
    // failure exits the process instead of leaving it alive and idle.
    let _ = stop_tx.send(true);
    let _ = server.await;
    result
}

/// Waits for the Lease, runs the controller while holding it, and exits when it is lost, so that
/// a new leader never overlaps with this one for long.
async fn run_as_leader(
    client: Client,
    args: &RunArgs,
    ctx: Arc<Context>,
    settings: Settings,
    health: Arc<Health>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), BoxError> {
    let identity = std::env::var("POD_NAME").unwrap_or_else(|_| {
        format!(
            "{}-{}",
            finetune_operator::names::FIELD_MANAGER,
            std::process::id()
        )
    });
    // Each replica keeps the lease manager's own field manager (one per identity): server-side
    // apply conflicts between replicas are what keep two of them from holding the lease.
    let manager = LeaseManagerBuilder::new(client, "finetune-operator-leader")
        .with_namespace(&args.lease_namespace)
        .with_identity(identity)
        .build()
        .await?;
    let (mut leading, lease_task) = manager.watch().await;
    health.set_ready(true);
    info!(namespace = %args.lease_namespace, "waiting for the leader lease");
    loop {
        if *leading.borrow_and_update() {
            break;
        }
        tokio::select! {
            changed = leading.changed() => changed?,
            _ = stop.wait_for(|s| *s) => return Ok(()),
        }
    }
    info!("acquired the leader lease");
    let mut lost = leading.clone();
    let mut stop_controller = stop.clone();
    let lease_lost = async move {
        tokio::select! {
            _ = lost.wait_for(|leader| !*leader) => warn!("lost the leader lease"),
            _ = stop_controller.wait_for(|s| *s) => {}
        }
    };
    let result = controller::run(ctx, settings, lease_lost).await;
    drop(leading);
    let _ = lease_task.await;
    if !*stop.borrow() {
        // Lost the lease without being asked to stop: exit non-zero and let Kubernetes restart
        // this replica as a follower.
        return Err("lost the leader lease".into());
    }
    result.map_err(BoxError::from)
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn per_job_metrics(args: &[&str]) -> bool {
        let cli =
            Cli::try_parse_from(std::iter::once("finetune-operator").chain(args.iter().copied()))
                .unwrap_or_else(|e| panic!("{args:?}: {e}"));
        match cli.command {
            Some(Command::Run(run)) => run.per_job_metrics,
            None => cli.run.per_job_metrics,
            Some(_) => panic!("{args:?}: not run"),
        }
    }

    #[test]
    fn per_job_metrics_is_off_unless_asked_for() {
        assert!(!per_job_metrics(&["run"]));
        assert!(per_job_metrics(&["run", "--per-job-metrics"]));
        assert!(per_job_metrics(&[
            "run",
            "--per-job-metrics",
            "--leader-elect"
        ]));
        assert!(per_job_metrics(&["run", "--per-job-metrics=true"]));
        assert!(!per_job_metrics(&["run", "--per-job-metrics=false"]));
        assert!(
            per_job_metrics(&["--per-job-metrics"]),
            "run is the default"
        );
        // The bare flag never takes the next word as its value: here a subcommand.
        let cli = Cli::try_parse_from(["finetune-operator", "--per-job-metrics", "crd"]).unwrap();
        assert!(matches!(cli.command, Some(Command::Crd)));
    }
}
