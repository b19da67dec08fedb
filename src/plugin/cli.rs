//! The command line of `kubectl finetune`.

use clap::{Args, Parser, Subcommand};

/// `kubectl finetune ...`, when the binary runs as `kubectl-finetune` (as kubectl runs plugins).
#[derive(Parser, Debug)]
#[command(
    name = "kubectl finetune",
    bin_name = "kubectl finetune",
    version,
    about = "List, follow, suspend and resume FineTuneJobs"
)]
pub struct PluginCommand {
    #[command(flatten)]
    pub cli: Cli,
}

/// The plugin's flags and verbs (also `finetune-operator kubectl ...`).
#[derive(Args, Debug)]
#[command(
    about = "List, follow, suspend and resume FineTuneJobs (the kubectl plugin; run as `kubectl finetune` when installed as kubectl-finetune)"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub verb: Verb,
}

/// Where to connect, as kubectl takes it.
#[derive(Args, Debug, Clone, Default)]
pub struct Global {
    /// Namespace of the job (default: the kubeconfig context's namespace).
    #[arg(short = 'n', long, global = true)]
    pub namespace: Option<String>,
    /// Kubeconfig context to use (default: the current context).
    #[arg(long, global = true)]
    pub context: Option<String>,
    /// Kubeconfig file (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long, global = true)]
    pub kubeconfig: Option<std::path::PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum Verb {
    /// List FineTuneJobs: phase, progress, epoch, loss and the time left.
    #[command(visible_alias = "ls")]
    List {
        /// List the jobs of all namespaces.
        #[arg(short = 'A', long)]
        all_namespaces: bool,
    },
    /// Print the training log of the rank-0 pod (NAME-master-0), or the preprocess log.
    Logs {
        /// The FineTuneJob.
        name: String,
        /// Follow the log until the pod's container ends.
        #[arg(short = 'f', long)]
        follow: bool,
        /// The preprocess Job's newest pod instead of the rank-0 training pod.
        #[arg(long)]
        preprocess: bool,
        /// Only the last N lines.
        #[arg(long, value_name = "N")]
        tail: Option<i64>,
    },
    /// Print a progress line on each change until the job ends: exit 0 when it succeeds, 1 when
    /// it fails.
    Watch {
        /// The FineTuneJob.
        name: String,
    },
    /// Suspend a job (sets spec.suspend): its pods are stopped, the job is kept.
    Suspend {
        /// The FineTuneJob.
        name: String,
    },
    /// Resume a suspended job (clears spec.suspend).
    Resume {
        /// The FineTuneJob.
        name: String,
    },
}
