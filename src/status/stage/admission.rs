//! What stops a job before anything starts: a spec Kubernetes would refuse on a pod, an output
//! directory another live job writes to, and a missing PyTorchJob kind. Pure.

use std::time::Duration;

use kube::ResourceExt;

use crate::api::{Backend, FineTuneJob, Phase, condition};
use crate::status::decider::{Decider, Flow};
use crate::status::decision::Severity;
use crate::status::pod_metadata;
use crate::status::reason;
use crate::status::world::Lookup;

/// How often to look again while the PyTorchJob kind is missing.
const KIND_MISSING_RETRY: Duration = Duration::from_secs(60);

/// Before the first child: what admission could not check fails the job, and so does an output
/// directory in use by another job.
pub(in crate::status) fn before_creation(d: &mut Decider) -> Flow {
    let status = d.status();
    if status.preprocess_job.is_some() || status.training_child().is_some() {
        return Flow::Continue;
    }
    if let Some(problem) = pod_metadata::invalid_pod_metadata(d.job()) {
        d.set_condition(condition::ACCEPTED, false, reason::INVALID_SPEC, &problem);
        d.fail(reason::INVALID_SPEC, &problem, None);
        d.event(Severity::Warning, reason::INVALID_SPEC, problem, None);
        return Flow::Stop;
    }
    if let Some(other) = d.obs().output_in_use_by.clone() {
        let spec = &d.job().spec;
        let message = format!(
            "FineTuneJob {other} writes to the same output directory (claim {}, path {}); \
             two runs would overwrite each other's checkpoints: set a distinct output.path",
            spec.output.claim_name,
            spec.output_dir(d.name())
        );
        d.fail(reason::OUTPUT_IN_USE, &message, None);
        d.event(Severity::Warning, reason::OUTPUT_IN_USE, message, None);
        return Flow::Stop;
    }
    Flow::Continue
}

/// Without the backend's kind nothing can train: say so, naming both backends, instead of
/// starting (or failing), and look again from time to time, so that installing the Kubeflow
/// component is enough.
pub(in crate::status) fn kind_installed(d: &mut Decider) -> Flow {
    if !matches!(d.obs().training, Lookup::KindMissing) {
        return Flow::Continue;
    }
    let (why, message) = match d.job().spec.backend {
        Backend::PyTorchJob => (
            reason::PYTORCHJOB_NOT_INSTALLED,
            "The kubeflow.org/v1 PyTorchJob kind is not installed in this cluster (spec.backend \
             PyTorchJob); install the Kubeflow training operator (v1.9) and the job starts by \
             itself, or, where Kubeflow Trainer v2 is installed, create the job with \
             spec.backend TrainJob",
        ),
        Backend::TrainJob => (
            reason::TRAINJOB_NOT_INSTALLED,
            "The trainer.kubeflow.org/v1alpha1 TrainJob kind is not installed in this cluster \
             (spec.backend TrainJob); install Kubeflow Trainer v2 and the operator's runtimes \
             (deploy/trainer) and the job starts by itself, or, where the Kubeflow training \
             operator v1 is installed, create the job with spec.backend PyTorchJob",
        ),
    };
    d.set_condition(condition::ACCEPTED, false, why, message);
    d.explain(why, message);
    d.requeue_in(KIND_MISSING_RETRY);
    Flow::Stop
}

/// The name of another live FineTuneJob in the namespace that writes to the same directory of
/// the same output claim, and so would overwrite this job's checkpoints and data (or have
/// InstructLab resume from them). Of two jobs created together only the newer one yields: one
/// that already runs (has children), or was created first, keeps the directory.
pub fn output_in_use_by<'a>(
    job: &FineTuneJob,
    others: impl IntoIterator<Item = &'a FineTuneJob>,
) -> Option<String> {
    let name = job.name_any();
    let dir = job.spec.output_dir(&name);
    let key = |j: &FineTuneJob| {
        (
            j.metadata.creation_timestamp.clone().map(|t| t.0),
            j.name_any(),
        )
    };
    others
        .into_iter()
        .filter(|o| o.metadata.uid != job.metadata.uid && o.namespace() == job.namespace())
        .filter(|o| o.metadata.deletion_timestamp.is_none())
        .filter(|o| {
            let status = o.status.clone().unwrap_or_default();
            let started = status.preprocess_job.is_some() || status.training_child().is_some();
            !status.phase.is_some_and(Phase::is_finished) && (started || key(o) < key(job))
        })
        .find(|o| {
            o.spec.output.claim_name == job.spec.output.claim_name
                && o.spec.output_dir(&o.name_any()) == dir
        })
        .map(|o| o.name_any())
}
