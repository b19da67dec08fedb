//! What the operator reads and changes on a child, whatever its kind: the [`Child`] trait,
//! implemented for the preprocess `batch/v1` Job, the Kubeflow PyTorchJob and the Kubeflow
//! Trainer `TrainJob`, after Kueue's `GenericJob` (`IsSuspended`, `Suspend`, `Finished`); and
//! [`TrainingJob`], the training child of either backend.
//!
//! Pure: no I/O. The phase machine (`status`) reads children through it, and the controller
//! creates, suspends and deletes them through it, generic over the kind. Each kind's condition
//! list is read here and only here.

use k8s_openapi::api::batch::v1::{Job, JobCondition};
use k8s_openapi::api::core::v1::Pod;
use kube::core::NamespaceResourceScope;
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta};

use crate::api::{Backend, JobCondition as TrainingCondition, PyTorchJob, TrainJob};
use crate::names::{
    BATCH_JOB_LABELS, JOBSET_NAME_LABEL, TRAINING_JOB_LABEL, preprocess_job_name, pytorch_job_name,
};

/// The children a FineTuneJob can have.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChildKind {
    /// The preprocess `batch/v1` Job.
    Preprocess,
    /// The Kubeflow `kubeflow.org/v1` PyTorchJob.
    PyTorchJob,
    /// The Kubeflow Trainer `trainer.kubeflow.org/v1alpha1` TrainJob.
    TrainJob,
}

impl ChildKind {
    /// The Kubernetes kind of the child, as messages name it.
    pub fn api_kind(self) -> &'static str {
        match self {
            ChildKind::Preprocess => "Job",
            ChildKind::PyTorchJob => "PyTorchJob",
            ChildKind::TrainJob => "TrainJob",
        }
    }

    /// The training child of `backend`.
    pub fn training(backend: Backend) -> Self {
        match backend {
            Backend::PyTorchJob => ChildKind::PyTorchJob,
            Backend::TrainJob => ChildKind::TrainJob,
        }
    }

    /// Whether this is a training child (of either backend).
    pub fn is_training(self) -> bool {
        matches!(self, ChildKind::PyTorchJob | ChildKind::TrainJob)
    }
}

/// How a child ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Succeeded,
    /// Failed, with its controller's message.
    Failed(String),
}

/// A kind of child: how it is named, suspended and read.
pub trait Child:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + std::fmt::Debug
    + Serialize
    + DeserializeOwned
{
    /// Which child this is.
    const KIND: ChildKind;

    /// The name of this child of the FineTuneJob `job_name`.
    fn name(job_name: &str) -> String;

    /// Whether the child is suspended (by us, or by Kueue): no pods run.
    fn is_suspended(&self) -> bool;

    /// The merge patch that suspends (or resumes) the child: only that one field.
    fn suspend_patch(suspend: bool) -> Value;

    /// Whether the child's condition `type_` is True.
    fn condition(&self, type_: &str) -> bool;

    /// Whether the child succeeded.
    fn succeeded(&self) -> bool;

    /// The message of the child's Failed condition, when it failed.
    fn failed_message(&self) -> Option<String>;

    /// Whether the child's controller ever had a pod of it (counted, or running).
    fn ever_had_pods(&self) -> bool;

    /// Whether `pod` belongs to the child named `child_name`, by the label its controller puts
    /// on its pods.
    fn is_pod_of(pod: &Pod, child_name: &str) -> bool;

    /// How the child ended, once it has: success first.
    fn finished(&self) -> Option<Outcome> {
        if self.succeeded() {
            return Some(Outcome::Succeeded);
        }
        self.failed_message().map(Outcome::Failed)
    }
}

impl Child for Job {
    const KIND: ChildKind = ChildKind::Preprocess;

    fn name(job_name: &str) -> String {
        preprocess_job_name(job_name)
    }

    fn is_suspended(&self) -> bool {
        self.spec.as_ref().and_then(|s| s.suspend).unwrap_or(false)
    }

    fn suspend_patch(suspend: bool) -> Value {
        json!({"spec": {"suspend": suspend}})
    }

    fn condition(&self, type_: &str) -> bool {
        true_job_condition(self, type_).is_some()
    }

    fn succeeded(&self) -> bool {
        self.condition("Complete")
    }

    /// The condition's message, else its reason, else "Failed".
    fn failed_message(&self) -> Option<String> {
        true_job_condition(self, "Failed").map(|c| {
            c.message
                .clone()
                .or_else(|| c.reason.clone())
                .unwrap_or_else(|| c.type_.clone())
        })
    }

    /// The Job controller counts its pods; it resets them (and startTime) on a resume.
    fn ever_had_pods(&self) -> bool {
        self.status.as_ref().is_some_and(|s| {
            s.active.unwrap_or(0) + s.succeeded.unwrap_or(0) + s.failed.unwrap_or(0) > 0
        })
    }

    fn is_pod_of(pod: &Pod, child_name: &str) -> bool {
        BATCH_JOB_LABELS
            .iter()
            .any(|l| pod.labels().get(*l).map(String::as_str) == Some(child_name))
    }
}

/// The Job's condition `type_`, when True: the one reader of a batch Job's condition list.
fn true_job_condition<'a>(job: &'a Job, type_: &str) -> Option<&'a JobCondition> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_ && c.status == "True")
}

impl Child for PyTorchJob {
    const KIND: ChildKind = ChildKind::PyTorchJob;

    fn name(job_name: &str) -> String {
        pytorch_job_name(job_name)
    }

    /// `runPolicy.suspend`, set by us, or by Kueue for a queued job.
    fn is_suspended(&self) -> bool {
        self.spec
            .run_policy
            .as_ref()
            .and_then(|r| r.suspend)
            .unwrap_or(false)
    }

    fn suspend_patch(suspend: bool) -> Value {
        json!({"spec": {"runPolicy": {"suspend": suspend}}})
    }

    fn condition(&self, type_: &str) -> bool {
        true_training_condition(self, type_).is_some()
    }

    fn succeeded(&self) -> bool {
        self.condition("Succeeded")
    }

    /// The condition's message, else "no message".
    fn failed_message(&self) -> Option<String> {
        true_training_condition(self, "Failed").map(|c| {
            c.message
                .clone()
                .unwrap_or_else(|| "no message".to_string())
        })
    }

    fn ever_had_pods(&self) -> bool {
        let Some(status) = &self.status else {
            return false;
        };
        status.replica_statuses.values().any(|r| {
            [r.active, r.succeeded, r.failed]
                .into_iter()
                .flatten()
                .any(|n| n > 0)
        }) || self.condition("Running")
    }

    fn is_pod_of(pod: &Pod, child_name: &str) -> bool {
        pod.labels().get(TRAINING_JOB_LABEL).map(String::as_str) == Some(child_name)
    }
}

/// The PyTorchJob's condition `type_`, when True: the one reader of the training operator's
/// condition list.
fn true_training_condition<'a>(job: &'a PyTorchJob, type_: &str) -> Option<&'a TrainingCondition> {
    job.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_ && c.status == "True")
}

impl Child for TrainJob {
    const KIND: ChildKind = ChildKind::TrainJob;

    /// The TrainJob, and the JobSet Trainer makes of it, take the FineTuneJob's name.
    fn name(job_name: &str) -> String {
        pytorch_job_name(job_name)
    }

    /// `spec.suspend`, set by us, or by Kueue for a queued job.
    fn is_suspended(&self) -> bool {
        self.spec.suspend.unwrap_or(false)
    }

    fn suspend_patch(suspend: bool) -> Value {
        json!({"spec": {"suspend": suspend}})
    }

    fn condition(&self, type_: &str) -> bool {
        true_trainjob_condition(self, type_).is_some()
    }

    fn succeeded(&self) -> bool {
        self.condition("Complete")
    }

    /// The condition's message, else its reason, else "no message".
    fn failed_message(&self) -> Option<String> {
        true_trainjob_condition(self, "Failed").map(|c| {
            [&c.message, &c.reason]
                .into_iter()
                .find(|t| !t.is_empty())
                .cloned()
                .unwrap_or_else(|| "no message".to_string())
        })
    }

    /// JobSet's count of the replicated jobs' Jobs; it keeps the counts across a suspension.
    fn ever_had_pods(&self) -> bool {
        self.status.as_ref().is_some_and(|s| {
            s.jobs_status
                .iter()
                .any(|j| j.active + j.ready + j.succeeded + j.failed > 0)
        })
    }

    fn is_pod_of(pod: &Pod, child_name: &str) -> bool {
        pod.labels().get(JOBSET_NAME_LABEL).map(String::as_str) == Some(child_name)
    }
}

/// The TrainJob's condition `type_`, when True: the one reader of Trainer's condition list.
fn true_trainjob_condition<'a>(job: &'a TrainJob, type_: &str) -> Option<&'a Condition> {
    job.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_ && c.status == "True")
}

/// The training child, of whichever backend the FineTuneJob names: what the phase machine
/// reads of it, through [`Child`].
#[derive(Clone, Debug, PartialEq)]
pub enum TrainingJob {
    PyTorchJob(PyTorchJob),
    TrainJob(TrainJob),
}

impl TrainingJob {
    pub fn kind(&self) -> ChildKind {
        match self {
            TrainingJob::PyTorchJob(_) => ChildKind::PyTorchJob,
            TrainingJob::TrainJob(_) => ChildKind::TrainJob,
        }
    }

    pub fn metadata(&self) -> &ObjectMeta {
        match self {
            TrainingJob::PyTorchJob(j) => &j.metadata,
            TrainingJob::TrainJob(j) => &j.metadata,
        }
    }

    pub fn is_suspended(&self) -> bool {
        match self {
            TrainingJob::PyTorchJob(j) => j.is_suspended(),
            TrainingJob::TrainJob(j) => j.is_suspended(),
        }
    }

    pub fn finished(&self) -> Option<Outcome> {
        match self {
            TrainingJob::PyTorchJob(j) => j.finished(),
            TrainingJob::TrainJob(j) => j.finished(),
        }
    }

    pub fn ever_had_pods(&self) -> bool {
        match self {
            TrainingJob::PyTorchJob(j) => j.ever_had_pods(),
            TrainingJob::TrainJob(j) => j.ever_had_pods(),
        }
    }

    pub fn condition(&self, type_: &str) -> bool {
        match self {
            TrainingJob::PyTorchJob(j) => j.condition(type_),
            TrainingJob::TrainJob(j) => j.condition(type_),
        }
    }
}

/// Serialized as the object it holds (for `render` and tests).
impl Serialize for TrainingJob {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            TrainingJob::PyTorchJob(j) => j.serialize(serializer),
            TrainingJob::TrainJob(j) => j.serialize(serializer),
        }
    }
}

impl From<PyTorchJob> for TrainingJob {
    fn from(job: PyTorchJob) -> Self {
        TrainingJob::PyTorchJob(job)
    }
}

impl From<TrainJob> for TrainingJob {
    fn from(job: TrainJob) -> Self {
        TrainingJob::TrainJob(job)
    }
}

/// Whether `pod` belongs to the training child `kind` named `child_name`.
pub fn is_training_pod_of(kind: ChildKind, pod: &Pod, child_name: &str) -> bool {
    match kind {
        ChildKind::TrainJob => TrainJob::is_pod_of(pod, child_name),
        _ => PyTorchJob::is_pod_of(pod, child_name),
    }
}

/// A child built from the FineTuneJob, to be created. Boxed: a child is large and an action
/// list is small.
#[derive(Clone, Debug, PartialEq)]
pub enum NewChild {
    Preprocess(Box<Job>),
    PyTorchJob(Box<PyTorchJob>),
    TrainJob(Box<TrainJob>),
}

impl NewChild {
    pub fn kind(&self) -> ChildKind {
        match self {
            NewChild::Preprocess(_) => ChildKind::Preprocess,
            NewChild::PyTorchJob(_) => ChildKind::PyTorchJob,
            NewChild::TrainJob(_) => ChildKind::TrainJob,
        }
    }
}

impl From<Job> for NewChild {
    fn from(job: Job) -> Self {
        NewChild::Preprocess(Box::new(job))
    }
}

impl From<PyTorchJob> for NewChild {
    fn from(job: PyTorchJob) -> Self {
        NewChild::PyTorchJob(Box::new(job))
    }
}

impl From<TrainJob> for NewChild {
    fn from(job: TrainJob) -> Self {
        NewChild::TrainJob(Box::new(job))
    }
}

impl From<TrainingJob> for NewChild {
    fn from(job: TrainingJob) -> Self {
        match job {
            TrainingJob::PyTorchJob(j) => j.into(),
            TrainingJob::TrainJob(j) => j.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(status: Value) -> Job {
        serde_json::from_value(json!({"metadata": {"name": "ft-preprocess"},
                                      "spec": {"template": {}, "suspend": true},
                                      "status": status}))
        .unwrap()
    }

    fn pytorch_job(status: Value) -> PyTorchJob {
        serde_json::from_value(json!({"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob",
                                      "metadata": {"name": "ft"},
                                      "spec": {"runPolicy": {"suspend": true}, "pytorchReplicaSpecs": {}},
                                      "status": status}))
        .unwrap()
    }

    #[test]
    fn both_kinds_answer_the_same_questions_from_their_own_fields() {
        assert_eq!(
            (Job::name("ft"), PyTorchJob::name("ft")),
            ("ft-preprocess".into(), "ft".into())
        );
        let (pre, ptj) = (job(json!({})), pytorch_job(json!({})));
        assert!(pre.is_suspended() && ptj.is_suspended());
        assert_eq!((pre.finished(), ptj.finished()), (None, None));
        assert!(!pre.ever_had_pods() && !ptj.ever_had_pods());

        let pre = job(json!({"failed": 1, "conditions": [
            {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]}));
        assert_eq!(
            pre.finished(),
            Some(Outcome::Failed("BackoffLimitExceeded".into()))
        );
        assert!(pre.ever_had_pods() && pre.condition("Failed") && !pre.condition("Complete"));
        let ptj = pytorch_job(json!({"conditions": [{"type": "Running", "status": "True"},
                                                    {"type": "Failed", "status": "True"}]}));
        assert_eq!(ptj.finished(), Some(Outcome::Failed("no message".into())));
        assert!(ptj.ever_had_pods());
        let ptj = pytorch_job(
            json!({"conditions": [{"type": "Succeeded", "status": "True"},
                                                    {"type": "Failed", "status": "False"}]}),
        );
        assert_eq!(ptj.finished(), Some(Outcome::Succeeded));

        assert_eq!(
            Job::suspend_patch(false),
            json!({"spec": {"suspend": false}})
        );
        assert_eq!(
            PyTorchJob::suspend_patch(true),
            json!({"spec": {"runPolicy": {"suspend": true}}})
        );
    }

    #[test]
    fn pods_are_told_apart_by_their_controllers_label() {
        let pod = |labels: Value| -> Pod {
            serde_json::from_value(json!({"metadata": {"name": "p", "labels": labels}})).unwrap()
        };
        assert!(Job::is_pod_of(
            &pod(json!({"job-name": "ft-preprocess"})),
            "ft-preprocess"
        ));
        assert!(Job::is_pod_of(
            &pod(json!({"batch.kubernetes.io/job-name": "ft-preprocess"})),
            "ft-preprocess"
        ));
        assert!(!Job::is_pod_of(
            &pod(json!({"training.kubeflow.org/job-name": "ft"})),
            "ft"
        ));
        assert!(PyTorchJob::is_pod_of(
            &pod(json!({"training.kubeflow.org/job-name": "ft"})),
            "ft"
        ));
        assert!(!PyTorchJob::is_pod_of(
            &pod(json!({"finetune.dev/job-name": "ft"})),
            "ft"
        ));
    }
}
