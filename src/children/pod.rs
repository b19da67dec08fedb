//! Pod pieces shared by both phases: metadata, volumes, env, security context, scheduling.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities, Container, EmptyDirVolumeSource, EnvVar, PersistentVolumeClaimVolumeSource,
    PodSecurityContext, PodSpec, SeccompProfile, SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;

use crate::api::FineTuneJob;
use crate::names::{ISTIO_INJECT_ANNOTATION, JOB_NAME_LABEL};

pub(super) const MODEL_MOUNT: &str = "/model";
pub(super) const DATA_MOUNT: &str = "/data";
pub(super) const OUTPUT_MOUNT: &str = "/output";

/// The label every child and pod carries; it is how the operator finds them again.
pub(super) fn job_labels(job: &FineTuneJob) -> BTreeMap<String, String> {
    BTreeMap::from([(JOB_NAME_LABEL.to_string(), job.name_any())])
}

/// Pod metadata: the user's podTemplate labels and annotations, our label on top (it cannot be
/// overridden), and the Istio opt-out as a default the user may override.
pub(super) fn pod_metadata(job: &FineTuneJob) -> ObjectMeta {
    let overrides = job.spec.pod_template.as_ref();
    let mut labels = overrides.and_then(|o| o.labels.clone()).unwrap_or_default();
    labels.extend(job_labels(job));
    let mut annotations =
        BTreeMap::from([(ISTIO_INJECT_ANNOTATION.to_string(), "false".to_string())]);
    annotations.extend(
        overrides
            .and_then(|o| o.annotations.clone())
            .unwrap_or_default(),
    );
    ObjectMeta {
        labels: Some(labels),
        annotations: Some(annotations),
        ..Default::default()
    }
}

/// Which volumes a phase mounts.
pub(super) struct Mounts {
    /// A memory-backed /dev/shm: NCCL needs more than the container runtime's 64 MiB.
    pub shared_memory: bool,
}

pub(super) fn volumes(job: &FineTuneJob, mounts: &Mounts) -> Vec<Volume> {
    let claim = |name: &str, claim: &str, read_only: bool| Volume {
        name: name.to_string(),
        persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
            claim_name: claim.to_string(),
            read_only: read_only.then_some(true),
        }),
        ..Default::default()
    };
    let empty_dir = |name: &str, medium: Option<&str>| Volume {
        name: name.to_string(),
        empty_dir: Some(EmptyDirVolumeSource {
            medium: medium.map(String::from),
            ..Default::default()
        }),
        ..Default::default()
    };
    let spec = &job.spec;
    let mut volumes = vec![
        claim("model", &spec.model.claim_name, true),
        claim("data", &spec.dataset.claim_name, true),
        claim("output", &spec.output.claim_name, false),
        empty_dir("tmp", None),
    ];
    if mounts.shared_memory {
        volumes.push(empty_dir("dshm", Some("Memory")));
    }
    volumes
}

pub(super) fn volume_mounts(mounts: &Mounts) -> Vec<VolumeMount> {
    let mount = |name: &str, path: &str, read_only: bool| VolumeMount {
        name: name.to_string(),
        mount_path: path.to_string(),
        read_only: read_only.then_some(true),
        ..Default::default()
    };
    let mut list = vec![
        mount("model", MODEL_MOUNT, true),
        mount("data", DATA_MOUNT, true),
        mount("output", OUTPUT_MOUNT, false),
        mount("tmp", "/tmp", false),
    ];
    if mounts.shared_memory {
        list.push(mount("dshm", "/dev/shm", false));
    }
    list
}

/// An env var with a plain value. Kubernetes expands `$(VAR)` in it: a user value must go
/// through `literal` first.
pub(super) fn var(name: &str, value: String) -> EnvVar {
    EnvVar {
        name: name.to_string(),
        value: Some(value),
        ..Default::default()
    }
}

/// Env every container gets, then `extra` (set by the operator), then the user's `spec.env`,
/// which keeps plain Kubernetes semantics.
pub(super) fn env(job: &FineTuneJob, extra: Vec<EnvVar>) -> Vec<EnvVar> {
    // Caches go to the writable /tmp emptyDir. COLUMNS stops InstructLab's Rich logger from
    // wrapping lines at 80 columns when stdout is not a terminal; Rich also pads every line to
    // that width, so it is just wide enough for a metrics line (~330 characters), not 10000.
    let mut env: Vec<EnvVar> = [
        ("XDG_CACHE_HOME", "/tmp"),
        ("TRITON_CACHE_DIR", "/tmp"),
        ("HF_HOME", "/tmp"),
        ("TRANSFORMERS_CACHE", "/tmp"),
        ("COLUMNS", "512"),
    ]
    .into_iter()
    .map(|(n, v)| var(n, v.to_string()))
    .collect();
    env.extend(extra);
    env.extend(job.spec.env.clone().unwrap_or_default());
    env
}

/// `TRUST_REMOTE_CODE=1` when `training.trustRemoteCode` is set, for both phases: data_process
/// reads only this variable, and main_ds loads the tokenizer before it looks at its
/// `--trust_remote_code` flag.
pub(super) fn trust_remote_code(job: &FineTuneJob) -> Option<EnvVar> {
    job.spec
        .training
        .trust_remote_code
        .then(|| var("TRUST_REMOTE_CODE", "1".to_string()))
}

/// No privilege escalation, no capabilities, the runtime's default seccomp profile.
pub(super) fn security_context() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".to_string()]),
            ..Default::default()
        }),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".to_string(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The pod securityContext: the user and groups of `spec.podSecurityContext`, nothing else, and
/// none at all without it (the container's own securityContext is already locked down).
pub(super) fn pod_security_context(job: &FineTuneJob) -> Option<PodSecurityContext> {
    let options = job.spec.pod_security_context.as_ref()?;
    Some(PodSecurityContext {
        run_as_non_root: options.run_as_non_root,
        run_as_user: options.run_as_user,
        run_as_group: options.run_as_group,
        fs_group: options.fs_group,
        supplemental_groups: options.supplemental_groups.clone(),
        ..Default::default()
    })
}

/// A pod spec around one container, with the scheduling, identity and pull settings of the job.
pub(super) fn pod_spec(
    job: &FineTuneJob,
    container: Container,
    mounts: &Mounts,
    restart_policy: Option<&str>,
) -> PodSpec {
    let spec = &job.spec;
    let scheduling = spec.scheduling.clone().unwrap_or_default();
    PodSpec {
        containers: vec![container],
        volumes: Some(volumes(job, mounts)),
        restart_policy: restart_policy.map(String::from),
        service_account_name: spec.service_account_name.clone(),
        security_context: pod_security_context(job),
        image_pull_secrets: spec.image_pull_secrets.clone(),
        termination_grace_period_seconds: Some(spec.termination_grace_period_seconds),
        node_selector: scheduling.node_selector,
        tolerations: scheduling.tolerations,
        affinity: scheduling.affinity,
        priority_class_name: scheduling.priority_class_name,
        scheduler_name: scheduling.scheduler_name,
        ..Default::default()
    }
}

/// A container with the job's image, the given argv and env, and the locked-down security
/// context.
pub(super) fn container(
    job: &FineTuneJob,
    name: &str,
    command: &[&str],
    args: Vec<String>,
    env: Vec<EnvVar>,
    mounts: &Mounts,
) -> Container {
    Container {
        name: name.to_string(),
        image: Some(job.spec.image.clone()),
        image_pull_policy: job.spec.image_pull_policy.map(|p| p.as_str().to_string()),
        command: Some(command.iter().map(|s| s.to_string()).collect()),
        args: Some(args),
        env: Some(env),
        volume_mounts: Some(volume_mounts(mounts)),
        security_context: Some(security_context()),
        ..Default::default()
    }
}
