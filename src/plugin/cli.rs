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

impl Global {
    /// The argv of `kubectl exec` that writes InstructLab's trigger files in `pod`'s training
    /// container, with the same kubeconfig, context and namespace as the plugin. Each value is
    /// one argv element (no shell), and the command in the pod is `touch` with fixed paths.
    pub fn trigger_argv(&self, namespace: &str, pod: &str, container: &str) -> Vec<String> {
        let mut argv = Vec::new();
        if let Some(path) = &self.kubeconfig {
            argv.push(format!("--kubeconfig={}", path.display()));
        }
        if let Some(context) = &self.context {
            argv.push(format!("--context={context}"));
        }
        argv.extend([
            "exec".to_string(),
            format!("--namespace={namespace}"),
            format!("--container={container}"),
            pod.to_string(),
            "--".to_string(),
            "touch".to_string(),
        ]);
        argv.extend(crate::names::CHECKPOINT_TRIGGER_FILES.map(String::from));
        argv
    }
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
    /// Ask a training job for an on-demand checkpoint now (needs
    /// spec.training.onDemandCheckpointing, InstructLab 0.16.0 or newer). Writes InstructLab's
    /// trigger file in each running training pod with `kubectl exec` (kubectl must be on the
    /// PATH); InstructLab saves a full state and exits, and training goes on from it as a new
    /// attempt, not counted as a disruption.
    Checkpoint {
        /// The FineTuneJob.
        name: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_trigger_is_a_fixed_touch_with_the_plugins_connection() {
        let global = Global {
            namespace: Some("ignored: the resolved namespace is passed".into()),
            context: Some("lab".into()),
            kubeconfig: Some("/home/me/.kube/other config".into()),
        };
        assert_eq!(
            global.trigger_argv("team-a", "ft-worker-0", "pytorch"),
            [
                "--kubeconfig=/home/me/.kube/other config",
                "--context=lab",
                "exec",
                "--namespace=team-a",
                "--container=pytorch",
                "ft-worker-0",
                "--",
                "touch",
                "/dev/shm/checkpoint_requested",
                "/dev/shm/instructlab_checkpoint_requested",
            ]
        );
        // Without options, kubectl's own defaults apply.
        assert_eq!(
            Global::default().trigger_argv("ns", "p", "pytorch")[..3],
            ["exec", "--namespace=ns", "--container=pytorch"]
        );
    }
}
