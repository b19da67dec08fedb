//! Every name the operator gives or looks for, in one place: child and pod names, container
//! names, our own label, finalizer and field manager, and the labels and annotations of the
//! systems we work with (the Job controller, the training operator, Kueue, Istio).
//!
//! Users, dashboards and other controllers match on these strings, so they are API: changing
//! one is a breaking change. The builders, the phase machine and the controller all read them
//! from here, and none of them depends on another for a name.

/// Finalizer the operator keeps on every FineTuneJob until its children are gone.
pub const FINALIZER: &str = "finetune.dev/cleanup";
/// Server-side apply field manager; users can name it in Argo CD `managedFieldsManagers`.
pub const FIELD_MANAGER: &str = "finetune-operator";
/// Label put on every child and every pod the operator causes, valued with the FineTuneJob name.
pub const JOB_NAME_LABEL: &str = "finetune.dev/job-name";

/// Name of the preprocess container.
pub const PREPROCESS_CONTAINER: &str = "preprocess";
/// Name of the training container; the training operator requires exactly this name.
pub const PYTORCH_CONTAINER: &str = "pytorch";

/// The ClusterTrainingRuntime a FineTuneJob's TrainJob runs on (deploy/trainer/runtimes.yaml):
/// Trainer's torch runtime with exit codes read as the PyTorchJob's `ExitCode` policy reads
/// them.
pub const TRAINJOB_RUNTIME: &str = "finetune-instructlab";
/// The same runtime with the preStop hook that asks for an on-demand checkpoint
/// (`training.onDemandCheckpointing`): a runtime patch cannot carry a lifecycle hook.
pub const TRAINJOB_CHECKPOINT_RUNTIME: &str = "finetune-instructlab-checkpoint";
/// The manager of the operator's runtime patch on a TrainJob (Trainer requires a domain).
pub const RUNTIME_PATCH_MANAGER: &str = "finetune.dev/operator";

/// The labels the Job controller puts its Job's name in (the second is the older one).
pub const BATCH_JOB_LABELS: [&str; 2] = ["batch.kubernetes.io/job-name", "job-name"];
/// The label the training operator puts its PyTorchJob's name in.
pub const TRAINING_JOB_LABEL: &str = "training.kubeflow.org/job-name";
/// The label JobSet puts its name in, on its Jobs and their pods (a TrainJob's JobSet has the
/// TrainJob's name).
pub const JOBSET_NAME_LABEL: &str = "jobset.sigs.k8s.io/jobset-name";
/// The label JobSet puts its UID in, on its Jobs' pods.
pub const JOBSET_UID_LABEL: &str = "jobset.sigs.k8s.io/jobset-uid";
/// The label an Indexed Job puts a pod's completion index in: rank 0 of a TrainJob's nodes is
/// the pod of index 0.
pub const JOB_COMPLETION_INDEX_LABEL: &str = "batch.kubernetes.io/job-completion-index";
/// Label Kueue reads to pick the LocalQueue of a workload.
pub const KUEUE_QUEUE_LABEL: &str = "kueue.x-k8s.io/queue-name";
/// The annotation `kubectl finetune checkpoint` sets on a FineTuneJob (an RFC 3339 time) when
/// it asks the training pods for an on-demand checkpoint: an exit after it is the user's
/// request, not a disruption. Written by the user's tool, only read by the operator.
pub const CHECKPOINT_REQUESTED_ANNOTATION: &str = "finetune.dev/checkpoint-requested";
/// The files InstructLab's workers watch for with `--on_demand_checkpointing`
/// (`checkpoint_requested` from 0.16.1, `instructlab_checkpoint_requested` in 0.16.0).
pub const CHECKPOINT_TRIGGER_FILES: [&str; 2] = [
    "/dev/shm/checkpoint_requested",
    "/dev/shm/instructlab_checkpoint_requested",
];
/// Kueue's label for the WorkloadPriorityClass of a job.
pub const KUEUE_PRIORITY_CLASS_LABEL: &str = "kueue.x-k8s.io/priority-class";
/// Kueue's label on a Workload: the UID of the job it stands for.
pub const KUEUE_JOB_UID_LABEL: &str = "kueue.x-k8s.io/job-uid";
/// Annotation that keeps Istio from injecting a sidecar (which keeps pods from completing).
pub const ISTIO_INJECT_ANNOTATION: &str = "sidecar.istio.io/inject";

/// Name of the preprocess Job of a FineTuneJob.
pub fn preprocess_job_name(job_name: &str) -> String {
    format!("{job_name}-preprocess")
}

/// Name of the PyTorchJob of a FineTuneJob: the FineTuneJob's own name.
pub fn pytorch_job_name(job_name: &str) -> String {
    job_name.to_string()
}

/// The training container of `backend`'s pods.
pub fn training_container(backend: crate::api::Backend) -> &'static str {
    match backend {
        crate::api::Backend::PyTorchJob => PYTORCH_CONTAINER,
        crate::api::Backend::TrainJob => crate::api::NODE,
    }
}

/// Name of the rank-0 pod of a PyTorchJob, whose log carries progress and the failure tail (a
/// TrainJob's has a random name: see `status::pods::rank0`).
pub fn master_pod_name(job_name: &str) -> String {
    format!("{job_name}-master-0")
}
