//! The pods of both phases meet the `restricted` Pod Security Standard once the user sets
//! `spec.podSecurityContext.runAsNonRoot: true`, so FineTuneJobs run in namespaces that enforce
//! it (`pod-security.kubernetes.io/enforce: restricted`).
//!
//! The checks are written from the standard (kubernetes.io/docs/concepts/security/
//! pod-security-standards, Kubernetes 1.33), baseline and restricted controls alike, over every
//! container of the pod.

use finetune_operator::children::{TrainingJob, build_children};
use finetune_operator::render::parse_finetunejob;
use finetune_operator::testing::JobFixture;
use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec, SELinuxOptions};
use serde_json::{Value, json};

fn job(pod_security_context: Option<Value>) -> Value {
    let job = JobFixture::new("secure-ft")
        .meta(json!({"namespace": "restricted-ns", "uid": "u-1"}))
        .image("quay.io/instructlab/instructlab-training:v0.12.1")
        .spec(json!({
            "model": {"claimName": "models"},
            "dataset": {"claimName": "datasets", "path": "train.jsonl"},
            "output": {"claimName": "out"},
            "preprocess": {},
            "resources": {"nodes": 3},
            "env": [{"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "t"}}}],
            "podTemplate": {"labels": {"team": "a"}, "annotations": {"example.com/owner": "a"}},
        }));
    match pod_security_context {
        Some(psc) => job.set("/podSecurityContext", psc),
        None => job,
    }
    .json()
}

/// The pod templates of every child: the preprocess Job's, the Master's and the Workers'.
fn pod_templates(job: &Value) -> Vec<(String, PodTemplateSpec)> {
    let job = parse_finetunejob(&job.to_string()).unwrap();
    let children = build_children(&job).unwrap();
    let mut templates = vec![(
        "preprocess".to_string(),
        children.preprocess.unwrap().spec.unwrap().template,
    )];
    let TrainingJob::PyTorchJob(pytorch_job) = children.training else {
        panic!("the default backend is PyTorchJob");
    };
    for (replica, spec) in pytorch_job.spec.pytorch_replica_specs {
        templates.push((replica, spec.template));
    }
    assert_eq!(templates.len(), 3, "preprocess, Master and Worker");
    templates
}

/// Capabilities the restricted standard lets a container add.
const ALLOWED_CAPABILITIES: &[&str] = &["NET_BIND_SERVICE"];
/// Volume types the restricted standard allows.
const ALLOWED_VOLUMES: &[&str] = &[
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
];
/// Sysctls the baseline standard allows.
const SAFE_SYSCTLS: &[&str] = &[
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
];
const SELINUX_TYPES: &[&str] = &[
    "",
    "container_t",
    "container_init_t",
    "container_kvm_t",
    "container_engine_t",
];

/// SELinux: only the container types, and no user or role.
fn selinux_allowed(se: &SELinuxOptions) -> bool {
    SELINUX_TYPES.contains(&se.type_.as_deref().unwrap_or(""))
        && se.user.is_none()
        && se.role.is_none()
}

/// Every control of the restricted standard (which includes baseline) the pod breaks.
fn restricted_violations(template: &PodTemplateSpec) -> Vec<String> {
    let mut v = Vec::new();
    let pod: &PodSpec = template.spec.as_ref().unwrap();
    let psc = pod.security_context.clone().unwrap_or_default();
    let containers: Vec<&Container> = pod
        .containers
        .iter()
        .chain(pod.init_containers.iter().flatten())
        .collect();
    assert!(
        pod.ephemeral_containers.is_none(),
        "no ephemeral containers at creation"
    );

    // Baseline.
    for (what, on) in [
        ("hostNetwork", pod.host_network),
        ("hostPID", pod.host_pid),
        ("hostIPC", pod.host_ipc),
    ] {
        if on == Some(true) {
            v.push(format!("host namespaces: {what}"));
        }
    }
    if psc
        .windows_options
        .as_ref()
        .and_then(|w| w.host_process)
        .unwrap_or(false)
    {
        v.push("HostProcess on the pod".into());
    }
    for volume in pod.volumes.iter().flatten() {
        let value = serde_json::to_value(volume).unwrap();
        let types: Vec<&String> = value
            .as_object()
            .unwrap()
            .keys()
            .filter(|k| *k != "name")
            .collect();
        if value.get("hostPath").is_some() {
            v.push(format!("hostPath volume {}", volume.name));
        }
        for t in types {
            if !ALLOWED_VOLUMES.contains(&t.as_str()) {
                v.push(format!("volume {} of type {t}", volume.name));
            }
        }
    }
    for sysctl in psc.sysctls.iter().flatten() {
        if !SAFE_SYSCTLS.contains(&sysctl.name.as_str()) {
            v.push(format!("sysctl {}", sysctl.name));
        }
    }
    for (key, value) in template
        .metadata
        .as_ref()
        .and_then(|m| m.annotations.as_ref())
        .into_iter()
        .flatten()
    {
        if key.starts_with("container.apparmor.security.beta.kubernetes.io/")
            && value != "runtime/default"
            && !value.starts_with("localhost/")
        {
            v.push(format!("AppArmor annotation {key}: {value}"));
        }
    }
    let pod_apparmor = psc.app_armor_profile.as_ref().map(|p| p.type_.as_str());
    if pod_apparmor == Some("Unconfined") {
        v.push("AppArmor Unconfined on the pod".into());
    }
    if psc
        .se_linux_options
        .as_ref()
        .is_some_and(|se| !selinux_allowed(se))
    {
        v.push("SELinux options on the pod".into());
    }
    let pod_seccomp = psc.seccomp_profile.as_ref().map(|p| p.type_.as_str());

    // Restricted, pod level.
    if psc.run_as_user == Some(0) {
        v.push("runAsUser 0 on the pod".into());
    }

    for c in containers {
        let sc = c.security_context.clone().unwrap_or_default();
        let name = &c.name;
        if sc.privileged == Some(true) {
            v.push(format!("{name}: privileged"));
        }
        if sc
            .windows_options
            .as_ref()
            .and_then(|w| w.host_process)
            .unwrap_or(false)
        {
            v.push(format!("{name}: HostProcess"));
        }
        for port in c.ports.iter().flatten() {
            if port.host_port.is_some_and(|p| p != 0) {
                v.push(format!("{name}: hostPort"));
            }
        }
        if sc.proc_mount.as_deref().is_some_and(|m| m != "Default") {
            v.push(format!("{name}: procMount"));
        }
        if sc.app_armor_profile.as_ref().map(|p| p.type_.as_str()) == Some("Unconfined") {
            v.push(format!("{name}: AppArmor Unconfined"));
        }
        if sc
            .se_linux_options
            .as_ref()
            .is_some_and(|se| !selinux_allowed(se))
        {
            v.push(format!("{name}: SELinux options"));
        }
        // Privilege escalation: explicitly false.
        if sc.allow_privilege_escalation != Some(false) {
            v.push(format!("{name}: allowPrivilegeEscalation is not false"));
        }
        // Capabilities: drop ALL, add at most NET_BIND_SERVICE.
        let caps = sc.capabilities.clone().unwrap_or_default();
        if !caps.drop.iter().flatten().any(|c| c == "ALL") {
            v.push(format!("{name}: capabilities do not drop ALL"));
        }
        for added in caps.add.iter().flatten() {
            if !ALLOWED_CAPABILITIES.contains(&added.as_str()) {
                v.push(format!("{name}: adds capability {added}"));
            }
        }
        // Running as non-root: true on the container, or on the pod and not false here.
        let non_root = match sc.run_as_non_root {
            Some(value) => value,
            None => psc.run_as_non_root == Some(true),
        };
        if !non_root {
            v.push(format!("{name}: runAsNonRoot is not true"));
        }
        if sc.run_as_user == Some(0) {
            v.push(format!("{name}: runAsUser 0"));
        }
        // Seccomp: RuntimeDefault or Localhost, on the container or inherited from the pod.
        let seccomp = sc
            .seccomp_profile
            .as_ref()
            .map(|p| p.type_.as_str())
            .or(pod_seccomp);
        if !matches!(seccomp, Some("RuntimeDefault" | "Localhost")) {
            v.push(format!("{name}: seccomp is {seccomp:?}"));
        }
    }
    v
}

#[test]
fn with_run_as_non_root_every_pod_meets_the_restricted_standard() {
    for psc in [
        json!({"runAsNonRoot": true}),
        json!({"runAsNonRoot": true, "runAsUser": 1000, "runAsGroup": 1000, "fsGroup": 1000,
               "supplementalGroups": [2000]}),
    ] {
        for (pod, template) in pod_templates(&job(Some(psc.clone()))) {
            let violations = restricted_violations(&template);
            assert!(violations.is_empty(), "{pod} with {psc}: {violations:#?}");
        }
    }
}

#[test]
fn without_it_only_run_as_non_root_is_missing() {
    for (pod, template) in pod_templates(&job(None)) {
        let violations = restricted_violations(&template);
        assert!(!violations.is_empty(), "{pod}: the check is not vacuous");
        assert!(
            violations
                .iter()
                .all(|v| v.ends_with("runAsNonRoot is not true")),
            "{pod}: {violations:#?}"
        );
    }
}

#[test]
fn the_pod_security_context_reaches_every_pod_as_written() {
    let psc = json!({"runAsNonRoot": true, "runAsUser": 1001, "runAsGroup": 1002,
                     "fsGroup": 1003, "supplementalGroups": [1004, 1005]});
    for (pod, template) in pod_templates(&job(Some(psc.clone()))) {
        let written = serde_json::to_value(template.spec.unwrap().security_context).unwrap();
        assert_eq!(written, psc, "{pod}");
    }
    // Absent, the pods get no pod-level securityContext at all (the rendered children of jobs
    // that do not use it stay as they were).
    for (pod, template) in pod_templates(&job(None)) {
        assert!(template.spec.unwrap().security_context.is_none(), "{pod}");
    }
}
