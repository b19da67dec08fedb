//! Pure functions from a FineTuneJob to the children it gets: the preprocess `batch/v1` Job and
//! the training child, a Kubeflow PyTorchJob or (with `spec.backend: TrainJob`) a Kubeflow
//! Trainer v2 TrainJob, both rendered from one training pod (`training`).
//! No I/O here; `finetune-operator render` prints exactly what `build_children` builds.
//!
//! Security rule: no user value reaches a shell or an interpreter as code. Containers start with
//! `command` + `args` lists; each user value is exactly one argv element, with `$` doubled
//! (see [`literal`]) so that Kubernetes' `$(VAR)` expansion hands the program the user's text.
//!
//! [`Child`] says how each kind of child is named, suspended and read, for the phase machine and
//! the controller alike.

mod child;
mod pod;
mod preprocess;
mod pytorchjob;
mod training;
mod trainjob;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::{Resource, ResourceExt};
use thiserror::Error;

use crate::api::{Backend, FineTuneJob};
use crate::names::{KUEUE_PRIORITY_CLASS_LABEL, KUEUE_QUEUE_LABEL};

pub use child::{Child, ChildKind, NewChild, Outcome, TrainingJob, is_training_pod_of};
pub use preprocess::build_preprocess_job;
pub use pytorchjob::build_pytorch_job;
pub use training::CHECKPOINT_BEFORE_STOP;
pub use trainjob::build_train_job;

/// One slot per child of a FineTuneJob, in the order they run: the built children by default,
/// or anything else per child (the UIDs of those observed are `status::OwnedChildren`).
///
/// Code that handles every child destructures this without `..`, so that a third child fails
/// to compile until it is wired in there.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Children<P = Option<Job>, T = TrainingJob> {
    pub preprocess: P,
    /// The training child: a PyTorchJob or a TrainJob, as `spec.backend` says.
    pub training: T,
}

#[derive(Debug, Error, PartialEq)]
pub enum BuildError {
    #[error("the FineTuneJob has no {0}; children need it for their owner reference")]
    MissingMetadata(&'static str),
    /// A backend whose kind has no field for part of the pod (the CRD refuses such a spec at
    /// admission; this keeps a builder from dropping it silently).
    #[error("the {backend} backend cannot carry {what}")]
    Unsupported { backend: &'static str, what: String },
}

/// Builds every child the FineTuneJob gets.
pub fn build_children(job: &FineTuneJob) -> Result<Children, BuildError> {
    Ok(Children {
        preprocess: match &job.spec.preprocess {
            Some(pre) => Some(build_preprocess_job(job, pre)?),
            None => None,
        },
        training: build_training_job(job)?,
    })
}

/// Builds the training child of the backend `spec.backend` names.
pub fn build_training_job(job: &FineTuneJob) -> Result<TrainingJob, BuildError> {
    Ok(match job.spec.backend {
        Backend::PyTorchJob => build_pytorch_job(job)?.into(),
        Backend::TrainJob => build_train_job(job)?.into(),
    })
}

/// Escapes a user-supplied string for a container `args` element or an env value the operator
/// builds: Kubernetes expands `$(VAR)` there and turns `$$` into `$`, so doubling every `$` makes
/// the program receive the user's exact text.
pub fn literal(value: &str) -> String {
    value.replace('$', "$$")
}

/// `--flag=value` with the value escaped for Kubernetes expansion.
fn flag(name: &str, value: impl std::fmt::Display) -> String {
    format!("{name}={}", literal(&value.to_string()))
}

/// A path under a mount point. The path was validated at admission as relative with no `.`/`..`
/// segments, so the result stays under the mount.
fn under(mount: &str, path: &str) -> String {
    if path.is_empty() {
        mount.to_string()
    } else {
        format!("{mount}/{path}")
    }
}

/// Metadata of a child: our label, an owner reference with `controller: true` and
/// `blockOwnerDeletion: true`, and nothing
/// copied from the FineTuneJob's own labels or annotations (Argo CD would adopt the child).
fn child_meta(job: &FineTuneJob, name: String) -> Result<ObjectMeta, BuildError> {
    let mut owner = job
        .controller_owner_ref(&())
        .ok_or(BuildError::MissingMetadata("name or uid"))?;
    // With foreground deletion of the FineTuneJob (kubectl delete --cascade=foreground, Argo CD)
    // the garbage collector then waits for the children, and with them the pods and their GPUs.
    owner.block_owner_deletion = Some(true);
    let namespace = job
        .namespace()
        .ok_or(BuildError::MissingMetadata("namespace"))?;
    Ok(ObjectMeta {
        name: Some(name),
        namespace: Some(namespace),
        labels: Some(pod::job_labels(job)),
        owner_references: Some(vec![owner]),
        ..Default::default()
    })
}

/// A training child's metadata, with the labels Kueue reads when the job names a queue: the
/// LocalQueue, and the WorkloadPriorityClass when one is set.
fn queued_meta(job: &FineTuneJob, mut metadata: ObjectMeta) -> ObjectMeta {
    let Some(queue) = job.spec.queue_name() else {
        return metadata;
    };
    let labels = metadata.labels.get_or_insert_with(Default::default);
    labels.insert(KUEUE_QUEUE_LABEL.to_string(), queue.to_string());
    let priority = job
        .spec
        .scheduling
        .as_ref()
        .and_then(|s| s.workload_priority_class_name.as_ref());
    if let Some(priority) = priority {
        labels.insert(KUEUE_PRIORITY_CLASS_LABEL.to_string(), priority.clone());
    }
    metadata
}
