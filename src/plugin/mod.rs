//! `kubectl finetune`: the kubectl plugin, in the operator's own binary. Installed (copied or
//! linked) as `kubectl-finetune` on the PATH, kubectl runs it for `kubectl finetune ...`; it is
//! also `finetune-operator kubectl ...`.
//!
//! Verbs: `list` (phase, progress, epoch, loss, time left), `logs NAME` (the rank-0 log, or the
//! preprocess log, without knowing pod names), `watch NAME` (a progress line on each change
//! until the job ends), `suspend NAME` and `resume NAME` (spec.suspend, the one field of the
//! spec a user changes). It connects as kubectl does: the kubeconfig, its current context and
//! that context's namespace, unless `--kubeconfig`, `--context` or `-n` say otherwise.
//!
//! What it prints is computed by pure functions ([`table`]); this module only talks to the
//! apiserver and turns its answers into errors a user can act on.

pub mod cli;
pub mod table;

use std::ffi::OsStr;
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use futures::{AsyncReadExt, StreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, LogParams, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Config};
use serde_json::json;

use crate::api::{Backend, FineTuneJob, Phase};
use crate::names;
use cli::{Cli, Global, Verb};

/// The file name kubectl finds the plugin by.
pub const PLUGIN_BINARY: &str = "kubectl-finetune";

/// The field manager of the plugin's patches.
const FIELD_MANAGER: &str = "kubectl-finetune";

/// Whether the binary was started as the kubectl plugin: its file name (argv[0]) is
/// `kubectl-finetune` (or `kubectl-finetune.exe`), whatever the directory.
pub fn invoked_as_plugin(argv0: &OsStr) -> bool {
    Path::new(argv0)
        .file_name()
        .and_then(OsStr::to_str)
        .is_some_and(|name| name == PLUGIN_BINARY || name == "kubectl-finetune.exe")
}

/// Errors the user can act on; each is printed as `error: ...` with exit status 1.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot load the kubeconfig: {0}")]
    Config(String),
    #[error("the FineTuneJob CRD is not installed in this cluster (kubectl apply -f crds/)")]
    CrdMissing,
    #[error("FineTuneJob {name} not found in namespace {namespace}")]
    JobMissing { name: String, namespace: String },
    #[error("pod {pod} of FineTuneJob {name} does not exist yet (the job's phase is {phase})")]
    NoPod {
        pod: String,
        name: String,
        phase: String,
    },
    #[error("FineTuneJob {name} has no preprocess step (spec.preprocess is not set)")]
    NoPreprocess { name: String },
    #[error(
        "the preprocess Job {job} of FineTuneJob {name} has no pod yet (the job's phase is {phase})"
    )]
    NoPreprocessPod {
        job: String,
        name: String,
        phase: String,
    },
    #[error("FineTuneJob {name} has already {phase}: there is nothing to {verb}")]
    Finished {
        name: String,
        phase: &'static str,
        verb: &'static str,
    },
    #[error("FineTuneJob {name} failed: {reason}: {message}")]
    Failed {
        name: String,
        reason: String,
        message: String,
    },
    #[error("FineTuneJob {name} was deleted")]
    Deleted { name: String },
    #[error(
        "FineTuneJob {name} does not checkpoint on demand: it needs spec.training.onDemandCheckpointing: true (InstructLab 0.16.0 or newer), set when the job is created"
    )]
    NoOnDemand { name: String },
    #[error(
        "FineTuneJob {name} has no running training pod to checkpoint (the job's phase is {phase})"
    )]
    NotTraining { name: String, phase: String },
    #[error("could not write the checkpoint trigger in pod {pod}: {why}")]
    Exec { pod: String, why: String },
    #[error("{0}")]
    Kube(#[from] kube::Error),
}

/// Runs the plugin with the full command line, `argv[0]` first (when started as
/// `kubectl-finetune`).
pub fn main_as_plugin(args: impl IntoIterator<Item = std::ffi::OsString>) -> ExitCode {
    use clap::Parser;
    run(cli::PluginCommand::parse_from(args).cli)
}

/// Runs one verb and prints its error, if any, as `error: ...`.
pub fn run(cli: Cli) -> ExitCode {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(execute(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn execute(cli: Cli) -> Result<ExitCode, Error> {
    let streaming = matches!(
        cli.verb,
        Verb::Logs { follow: true, .. } | Verb::Watch { .. }
    );
    let (client, namespace) = connect(&cli.global, streaming).await?;
    let at = Target { client, namespace };
    match cli.verb {
        Verb::List { all_namespaces } => at.list(all_namespaces).await,
        Verb::Logs {
            name,
            follow,
            preprocess,
            tail,
        } => at.logs(&name, follow, preprocess, tail).await,
        Verb::Watch { name } => at.watch(&name).await,
        Verb::Suspend { name } => at.set_suspend(&name, true).await,
        Verb::Resume { name } => at.set_suspend(&name, false).await,
        Verb::Checkpoint { name } => at.checkpoint(&name, &cli.global).await,
    }
}

/// A client as kubectl would make it, and the namespace to act in. `streaming`: no read
/// timeout, so that a quiet log or watch is not cut.
async fn connect(global: &Global, streaming: bool) -> Result<(Client, String), Error> {
    let options = KubeConfigOptions {
        context: global.context.clone(),
        ..KubeConfigOptions::default()
    };
    let config_error = |e: &dyn std::fmt::Display| Error::Config(e.to_string());
    let mut config = match &global.kubeconfig {
        Some(path) => {
            let kubeconfig = Kubeconfig::read_from(path).map_err(|e| config_error(&e))?;
            Config::from_custom_kubeconfig(kubeconfig, &options)
                .await
                .map_err(|e| config_error(&e))?
        }
        None if global.context.is_some() => Config::from_kubeconfig(&options)
            .await
            .map_err(|e| config_error(&e))?,
        None => Config::infer().await.map_err(|e| config_error(&e))?,
    };
    if streaming {
        config.read_timeout = None;
    }
    let namespace = global
        .namespace
        .clone()
        .unwrap_or_else(|| config.default_namespace.clone());
    let client = Client::try_from(config).map_err(|e| config_error(&e))?;
    Ok((client, namespace))
}

struct Target {
    client: Client,
    namespace: String,
}

impl Target {
    fn jobs(&self) -> Api<FineTuneJob> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// The job, or why it cannot be read: the CRD or the job missing.
    async fn job(&self, name: &str) -> Result<FineTuneJob, Error> {
        match self.jobs().get(name).await {
            Ok(job) => Ok(job),
            Err(e) => Err(self.explain(e, Some(name)).await),
        }
    }

    /// A 404 means no CRD (the apiserver does not serve finetunejobs) or no such job.
    async fn explain(&self, error: kube::Error, name: Option<&str>) -> Error {
        if !matches!(&error, kube::Error::Api(s) if s.code == 404) {
            return Error::Kube(error);
        }
        let served = self
            .client
            .list_api_group_resources("finetune.dev/v1alpha1")
            .await
            .map(|list| list.resources.iter().any(|r| r.name == "finetunejobs"));
        match (served, name) {
            (Ok(true), Some(name)) => Error::JobMissing {
                name: name.to_string(),
                namespace: self.namespace.clone(),
            },
            (Ok(true), None) => Error::Kube(error),
            (Ok(false), _) => Error::CrdMissing,
            (Err(kube::Error::Api(s)), _) if s.code == 404 => Error::CrdMissing,
            (Err(e), _) => Error::Kube(e),
        }
    }

    async fn list(&self, all_namespaces: bool) -> Result<ExitCode, Error> {
        let api = if all_namespaces {
            Api::all(self.client.clone())
        } else {
            self.jobs()
        };
        let mut jobs = match api.list(&ListParams::default()).await {
            Ok(list) => list.items,
            Err(e) => return Err(self.explain(e, None).await),
        };
        if jobs.is_empty() {
            if all_namespaces {
                eprintln!("No FineTuneJobs found.");
            } else {
                eprintln!("No FineTuneJobs found in namespace {}.", self.namespace);
            }
            return Ok(ExitCode::SUCCESS);
        }
        jobs.sort_by(|a, b| {
            (&a.metadata.namespace, &a.metadata.name)
                .cmp(&(&b.metadata.namespace, &b.metadata.name))
        });
        let now = jiff::Timestamp::now();
        let rows: Vec<_> = jobs
            .iter()
            .map(|job| table::Row::from_job(job, now))
            .collect();
        print!("{}", table::render_table(&rows, all_namespaces));
        Ok(ExitCode::SUCCESS)
    }

    async fn logs(
        &self,
        name: &str,
        follow: bool,
        preprocess: bool,
        tail: Option<i64>,
    ) -> Result<ExitCode, Error> {
        let job = self.job(name).await?;
        let phase = phase_text(&job);
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace);
        let (pod, container) = if preprocess {
            if job.spec.preprocess.is_none() {
                return Err(Error::NoPreprocess { name: name.into() });
            }
            let child = names::preprocess_job_name(name);
            (
                self.newest_preprocess_pod(&pods, &child)
                    .await?
                    .ok_or_else(|| Error::NoPreprocessPod {
                        job: child,
                        name: name.into(),
                        phase: phase.clone(),
                    })?,
                names::PREPROCESS_CONTAINER,
            )
        } else {
            // The rank-0 pod: by name for a PyTorchJob, by its JobSet's labels for a TrainJob.
            let candidates = match job.spec.backend {
                Backend::PyTorchJob => pods
                    .get_opt(&names::master_pod_name(name))
                    .await?
                    .into_iter()
                    .collect(),
                Backend::TrainJob => {
                    let selector = format!("{}={name}", names::JOBSET_NAME_LABEL);
                    pods.list(&ListParams::default().labels(&selector))
                        .await?
                        .items
                }
            };
            let rank0 = crate::status::pods::rank0_pod(&job, &candidates);
            match rank0 {
                Some((pod, container)) => {
                    (pod.metadata.name.clone().unwrap_or_default(), container)
                }
                None => {
                    return Err(Error::NoPod {
                        pod: match job.spec.backend {
                            Backend::PyTorchJob => names::master_pod_name(name),
                            Backend::TrainJob => format!("of completion index 0 of JobSet {name}"),
                        },
                        name: name.into(),
                        phase,
                    });
                }
            }
        };
        let params = LogParams {
            container: Some(container.to_string()),
            follow,
            tail_lines: tail,
            ..LogParams::default()
        };
        let mut log = pods.log_stream(&pod, &params).await?;
        let mut stdout = std::io::stdout().lock();
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            let read = log
                .read(&mut buffer)
                .await
                .map_err(|e| Error::Kube(kube::Error::ReadEvents(e)))?;
            if read == 0 {
                break;
            }
            // A closed stdout (e.g. `| head`) ends the command quietly.
            if stdout
                .write_all(&buffer[..read])
                .and_then(|()| stdout.flush())
                .is_err()
            {
                break;
            }
        }
        Ok(ExitCode::SUCCESS)
    }

    /// The newest pod of the preprocess Job, found by the Job controller's label.
    async fn newest_preprocess_pod(
        &self,
        pods: &Api<Pod>,
        job: &str,
    ) -> Result<Option<String>, Error> {
        for label in names::BATCH_JOB_LABELS {
            let list = pods
                .list(&ListParams::default().labels(&format!("{label}={job}")))
                .await?;
            let newest = list
                .items
                .into_iter()
                .max_by_key(|p| p.metadata.creation_timestamp.as_ref().map(|t| t.0));
            if let Some(pod) = newest {
                return Ok(pod.metadata.name);
            }
        }
        Ok(None)
    }

    async fn watch(&self, name: &str) -> Result<ExitCode, Error> {
        // Read once first, for the clear errors of a missing CRD or job.
        let job = self.job(name).await?;
        let mut last = String::new();
        if let Some(done) = self.show(&job, &mut last)? {
            return Ok(done);
        }
        let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
        let mut events = watcher(self.jobs(), config).default_backoff().boxed();
        while let Some(event) = events.next().await {
            match event {
                Ok(watcher::Event::Apply(job) | watcher::Event::InitApply(job)) => {
                    if let Some(done) = self.show(&job, &mut last)? {
                        return Ok(done);
                    }
                }
                Ok(watcher::Event::Delete(_)) => return Err(Error::Deleted { name: name.into() }),
                Ok(_) => {}
                // The watcher retries with a backoff; say why the lines stopped meanwhile.
                Err(e) => eprintln!("warning: watching FineTuneJob {name}: {e}"),
            }
        }
        Err(Error::Deleted { name: name.into() })
    }

    /// Prints the job's progress line if it changed; once the job has ended, its outcome.
    fn show(&self, job: &FineTuneJob, last: &mut String) -> Result<Option<ExitCode>, Error> {
        let line = table::progress_line(job, jiff::Timestamp::now());
        if line != *last {
            println!("{}  {line}", jiff::Zoned::now().strftime("%H:%M:%S"));
            *last = line;
        }
        let status = job.status.as_ref();
        let name = job.metadata.name.clone().unwrap_or_default();
        match status.and_then(|s| s.phase) {
            Some(Phase::Succeeded) => {
                println!("FineTuneJob {name} succeeded");
                Ok(Some(ExitCode::SUCCESS))
            }
            Some(Phase::Failed) => Err(Error::Failed {
                name,
                reason: status.and_then(|s| s.reason.clone()).unwrap_or_default(),
                message: status.and_then(|s| s.message.clone()).unwrap_or_default(),
            }),
            _ => Ok(None),
        }
    }

    async fn set_suspend(&self, name: &str, suspend: bool) -> Result<ExitCode, Error> {
        let job = self.job(name).await?;
        let verb = if suspend { "suspend" } else { "resume" };
        if let Some(phase) = job.status.as_ref().and_then(|s| s.phase)
            && phase.is_finished()
        {
            return Err(Error::Finished {
                name: name.into(),
                phase: phase.as_str(),
                verb,
            });
        }
        if job.spec.suspend == suspend {
            let state = if suspend {
                "suspended"
            } else {
                "not suspended"
            };
            println!(
                "finetunejob {name} is already {state} (spec.suspend is {suspend}); nothing changed"
            );
            return Ok(ExitCode::SUCCESS);
        }
        let patch = Patch::Merge(json!({"spec": {"suspend": suspend}}));
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..PatchParams::default()
        };
        if let Err(e) = self.jobs().patch(name, &params, &patch).await {
            return Err(self.explain(e, Some(name)).await);
        }
        if suspend {
            println!(
                "finetunejob {name} suspended; its pods are stopped and the job's phase will say Suspended"
            );
        } else {
            println!(
                "finetunejob {name} resumed; the job's phase will leave Suspended once it runs again (training resumes from the last full-state checkpoint, if any)"
            );
        }
        Ok(ExitCode::SUCCESS)
    }
}

impl Target {
    /// Asks every running training pod of the job for an on-demand checkpoint: first the
    /// annotation that tells the operator the exit is asked for, then InstructLab's trigger
    /// files, written with `kubectl exec` (the plugin's connection settings passed on).
    async fn checkpoint(&self, name: &str, global: &Global) -> Result<ExitCode, Error> {
        let job = self.job(name).await?;
        if let Some(phase) = job.status.as_ref().and_then(|s| s.phase)
            && phase.is_finished()
        {
            return Err(Error::Finished {
                name: name.into(),
                phase: phase.as_str(),
                verb: "checkpoint",
            });
        }
        if !job.spec.training.on_demand_checkpointing {
            return Err(Error::NoOnDemand { name: name.into() });
        }
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace);
        let selector = match job.spec.backend {
            Backend::PyTorchJob => format!("{}={name}", names::TRAINING_JOB_LABEL),
            Backend::TrainJob => format!("{}={name}", names::JOBSET_NAME_LABEL),
        };
        let container = names::training_container(job.spec.backend);
        let list = pods.list(&ListParams::default().labels(&selector)).await?;
        let running: Vec<String> = list
            .items
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
            .filter_map(|p| p.metadata.name.clone())
            .collect();
        if running.is_empty() {
            return Err(Error::NotTraining {
                name: name.into(),
                phase: phase_text(&job),
            });
        }
        let now = jiff::Timestamp::now()
            .round(jiff::Unit::Second)
            .unwrap_or(jiff::Timestamp::now());
        let patch = Patch::Merge(json!({"metadata": {"annotations": {
            names::CHECKPOINT_REQUESTED_ANNOTATION: now.to_string(),
        }}}));
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..PatchParams::default()
        };
        if let Err(e) = self.jobs().patch(name, &params, &patch).await {
            return Err(self.explain(e, Some(name)).await);
        }
        for pod in &running {
            let argv = global.trigger_argv(&self.namespace, pod, container);
            let out = std::process::Command::new("kubectl")
                .args(&argv)
                .output()
                .map_err(|e| Error::Exec {
                    pod: pod.clone(),
                    why: format!("cannot run kubectl: {e}"),
                })?;
            if !out.status.success() {
                return Err(Error::Exec {
                    pod: pod.clone(),
                    why: String::from_utf8_lossy(&out.stderr).trim().to_string(),
                });
            }
        }
        println!(
            "finetunejob {name}: asked {} training pod(s) for an on-demand checkpoint; InstructLab saves it and exits, and training goes on from it as a new attempt (kubectl finetune watch {name})",
            running.len()
        );
        Ok(ExitCode::SUCCESS)
    }
}

fn phase_text(job: &FineTuneJob) -> String {
    job.status
        .as_ref()
        .and_then(|s| s.phase)
        .map_or("not set yet", Phase::as_str)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plugin_is_known_by_its_file_name() {
        for argv0 in [
            "kubectl-finetune",
            "/usr/local/bin/kubectl-finetune",
            "./kubectl-finetune",
            "C:/bin/kubectl-finetune.exe",
        ] {
            assert!(invoked_as_plugin(OsStr::new(argv0)), "{argv0}");
        }
        for argv0 in [
            "finetune-operator",
            "/usr/bin/finetune-operator",
            "kubectl-finetune-old",
            "/opt/kubectl-finetune/finetune-operator",
            "",
        ] {
            assert!(!invoked_as_plugin(OsStr::new(argv0)), "{argv0}");
        }
    }

    #[test]
    fn every_verb_parses_with_kubectl_flags() {
        use clap::Parser;
        let parse = |args: &[&str]| {
            cli::PluginCommand::try_parse_from(
                std::iter::once("kubectl-finetune").chain(args.iter().copied()),
            )
            .map(|c| c.cli)
        };
        let c = parse(&["list", "-A"]).unwrap();
        assert!(matches!(
            c.verb,
            Verb::List {
                all_namespaces: true
            }
        ));
        let c = parse(&[
            "-n",
            "team-a",
            "logs",
            "ft",
            "-f",
            "--preprocess",
            "--tail",
            "20",
        ])
        .unwrap();
        assert_eq!(c.global.namespace.as_deref(), Some("team-a"));
        assert!(matches!(
            c.verb,
            Verb::Logs { ref name, follow: true, preprocess: true, tail: Some(20) } if name == "ft"
        ));
        let c = parse(&["suspend", "ft", "--namespace", "b", "--context", "kind"]).unwrap();
        assert_eq!(c.global.namespace.as_deref(), Some("b"));
        assert_eq!(c.global.context.as_deref(), Some("kind"));
        assert!(matches!(
            parse(&["resume", "ft"]).unwrap().verb,
            Verb::Resume { .. }
        ));
        assert!(matches!(
            parse(&["watch", "ft"]).unwrap().verb,
            Verb::Watch { .. }
        ));
        assert!(parse(&["logs"]).is_err(), "logs needs a name");
        assert!(parse(&[]).is_err(), "a verb is needed");
        for verb in ["list", "logs", "watch", "suspend", "resume"] {
            let help = parse(&[verb, "--help"]).unwrap_err();
            assert_eq!(help.kind(), clap::error::ErrorKind::DisplayHelp, "{verb}");
            assert!(help.to_string().contains("kubectl finetune"), "{help}");
        }
    }

    #[test]
    fn errors_say_what_to_do() {
        assert_eq!(
            Error::CrdMissing.to_string(),
            "the FineTuneJob CRD is not installed in this cluster (kubectl apply -f crds/)"
        );
        assert_eq!(
            Error::JobMissing {
                name: "ft".into(),
                namespace: "team-a".into()
            }
            .to_string(),
            "FineTuneJob ft not found in namespace team-a"
        );
        assert_eq!(
            Error::NoPod {
                pod: "ft-master-0".into(),
                name: "ft".into(),
                phase: "Pending".into()
            }
            .to_string(),
            "pod ft-master-0 of FineTuneJob ft does not exist yet (the job's phase is Pending)"
        );
    }
}
