//! The manifests in deploy/: least-privilege RBAC without wildcards, a restricted pod, probes,
//! resources, and a namespaced install with the same rules and no cluster-wide grant.
//!
//! The kustomizations are rendered with `kubectl kustomize`, as `make lint` and the end-to-end
//! suite do, so kubectl must be on PATH.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

fn docs(file: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("deploy")
            .join(file),
    )
    .unwrap();
    serde_saphyr::from_multiple(&text).unwrap()
}

/// The objects `kubectl apply -k deploy/<dir>` would apply.
fn rendered(dir: &str) -> Vec<Value> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(dir);
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(&path)
        .output()
        .expect("kubectl on PATH renders the kustomizations (`make lint` needs it too)");
    assert!(
        out.status.success(),
        "kubectl kustomize {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_saphyr::from_multiple(&String::from_utf8(out.stdout).unwrap()).unwrap()
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect()
}

fn named<'a>(docs: &'a [Value], kind: &str, name: &str) -> Option<&'a Value> {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
}

#[test]
fn rbac_has_no_wildcards_and_only_reads_pods() {
    let rbac = docs("operator/rbac.yaml");
    let roles: Vec<&Value> = rbac
        .iter()
        .filter(|d| matches!(d["kind"].as_str(), Some("ClusterRole" | "Role")))
        .collect();
    assert_eq!(roles.len(), 2);
    for role in roles {
        for rule in role["rules"].as_array().unwrap() {
            for key in ["apiGroups", "resources", "verbs"] {
                assert!(!strings(&rule[key]).contains(&"*"), "wildcard in {rule}");
            }
            let resources = strings(&rule["resources"]);
            if resources.contains(&"pods") || resources.contains(&"pods/log") {
                assert!(
                    strings(&rule["verbs"])
                        .iter()
                        .all(|v| ["get", "list", "watch"].contains(v)),
                    "{rule}"
                );
            }
            if resources.contains(&"finetunejobs") {
                // Only the finalizer is patched; never update (which could rewrite the spec).
                assert!(!strings(&rule["verbs"]).contains(&"update"), "{rule}");
            }
        }
    }
}

/// Every verb granted is one the operator's requests use (src/controller, kube's event recorder,
/// the lease manager), and nothing more. A new request needs a rule here and in rbac.yaml; the
/// end-to-end suite runs the operator under these rules and fails on a missing one.
#[test]
fn rbac_grants_exactly_the_verbs_the_operator_uses() {
    let used: &[(&str, &str, &[&str])] = &[
        // get: a fresh read when the cache is stale; list, watch: the controller's watch;
        // patch: the finalizer.
        (
            "finetune.dev",
            "finetunejobs",
            &["get", "list", "watch", "patch"],
        ),
        // The status is applied, never read alone.
        ("finetune.dev", "finetunejobs/status", &["patch"]),
        // blockOwnerDeletion on the children's owner references.
        ("finetune.dev", "finetunejobs/finalizers", &["update"]),
        (
            "batch",
            "jobs",
            &["get", "list", "watch", "create", "patch", "delete"],
        ),
        (
            "kubeflow.org",
            "pytorchjobs",
            &["get", "list", "watch", "create", "patch", "delete"],
        ),
        (
            "trainer.kubeflow.org",
            "trainjobs",
            &["get", "list", "watch", "create", "patch", "delete"],
        ),
        // The JobSet of a TrainJob, once: its UID tells the TrainJob's pods.
        ("jobset.x-k8s.io", "jobsets", &["get"]),
        // The pod watch, and a list when the cache is not running; no single pod is read.
        ("", "pods", &["list", "watch"]),
        ("", "pods/log", &["get"]),
        // The recorder creates an event and patches it when it repeats.
        ("events.k8s.io", "events", &["create", "patch"]),
        // The FailedCreate events of a child that has created no pod.
        ("", "events", &["list"]),
        // Why Kueue stopped a queued PyTorchJob: its Workload's Evicted condition.
        ("kueue.x-k8s.io", "workloads", &["list"]),
    ];
    let rbac = docs("operator/rbac.yaml");
    let role = named(&rbac, "ClusterRole", "finetune-operator").unwrap();
    let mut granted: Vec<(String, String, Vec<String>)> = Vec::new();
    for rule in role["rules"].as_array().unwrap() {
        for group in strings(&rule["apiGroups"]) {
            for resource in strings(&rule["resources"]) {
                let mut verbs: Vec<String> = strings(&rule["verbs"])
                    .iter()
                    .map(|v| v.to_string())
                    .collect();
                verbs.sort();
                granted.push((group.to_string(), resource.to_string(), verbs));
            }
        }
    }
    granted.sort();
    let mut expected: Vec<(String, String, Vec<String>)> = used
        .iter()
        .map(|(g, r, verbs)| {
            let mut verbs: Vec<String> = verbs.iter().map(|v| v.to_string()).collect();
            verbs.sort();
            (g.to_string(), r.to_string(), verbs)
        })
        .collect();
    expected.sort();
    assert_eq!(granted, expected);

    // The lease manager reads the Lease, creates it once and patches it; it never deletes it.
    let leases = named(&rbac, "Role", "finetune-operator-leader-election").unwrap();
    assert_eq!(
        strings(&leases["rules"][0]["verbs"]),
        ["get", "create", "patch"]
    );
}

#[test]
fn the_operator_pod_is_restricted() {
    let deployment = docs("operator/deployment.yaml").remove(0);
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    let container = &pod["containers"][0];
    let sc = &container["securityContext"];
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(strings(&sc["capabilities"]["drop"]), ["ALL"]);
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    for kind in ["requests", "limits"] {
        for resource in ["cpu", "memory"] {
            assert!(
                container["resources"][kind][resource].is_string(),
                "{kind}.{resource}"
            );
        }
    }
    assert!(strings(&container["args"]).contains(&"--leader-elect"));
}

#[test]
fn the_cluster_wide_install_binds_the_rules_to_the_operator() {
    let docs = rendered("");
    let binding = named(&docs, "ClusterRoleBinding", "finetune-operator").unwrap();
    assert_eq!(binding["roleRef"]["kind"], "ClusterRole");
    assert_eq!(binding["subjects"][0]["name"], "finetune-operator");
    assert_eq!(binding["subjects"][0]["namespace"], "finetune-system");
    let deployment = named(&docs, "Deployment", "finetune-operator").unwrap();
    let args = strings(&deployment["spec"]["template"]["spec"]["containers"][0]["args"]);
    assert!(
        !args.iter().any(|a| a.starts_with("--namespace")),
        "{args:?}"
    );
}

#[test]
fn the_namespaced_install_grants_the_same_rules_in_one_namespace_only() {
    let cluster_wide = rendered("");
    let namespaced = rendered("namespaced");
    let cluster_role = named(&cluster_wide, "ClusterRole", "finetune-operator").unwrap();

    // Nothing cluster-scoped: no ClusterRole(Binding), no Namespace, no CRD (a cluster admin
    // installs that once; deleting one namespace's install must not delete every job).
    let kinds: Vec<&str> = namespaced
        .iter()
        .filter_map(|d| d["kind"].as_str())
        .collect();
    for kind in [
        "ClusterRole",
        "ClusterRoleBinding",
        "Namespace",
        "CustomResourceDefinition",
    ] {
        assert!(!kinds.contains(&kind), "{kind} in {kinds:?}");
    }
    let namespace = namespaced[0]["metadata"]["namespace"].as_str().unwrap();
    for doc in &namespaced {
        assert_eq!(doc["metadata"]["namespace"], namespace, "{}", doc["kind"]);
    }

    let role = named(&namespaced, "Role", "finetune-operator").unwrap();
    assert_eq!(role["rules"], cluster_role["rules"]);
    let binding = named(&namespaced, "RoleBinding", "finetune-operator").unwrap();
    assert_eq!(binding["roleRef"]["kind"], "Role");
    assert_eq!(binding["roleRef"]["name"], "finetune-operator");
    for binding in namespaced.iter().filter(|d| d["kind"] == "RoleBinding") {
        let subject = &binding["subjects"][0];
        assert_eq!(subject["kind"], "ServiceAccount");
        assert_eq!(subject["name"], "finetune-operator");
        assert_eq!(subject["namespace"], namespace);
    }

    // The operator watches the namespace it runs in, where its Lease lives too.
    let pod =
        &named(&namespaced, "Deployment", "finetune-operator").unwrap()["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "finetune-operator");
    let container = &pod["containers"][0];
    assert!(
        strings(&container["args"]).contains(&"--namespace=$(POD_NAMESPACE)"),
        "{}",
        container["args"]
    );
    let env = container["env"].as_array().unwrap();
    let pod_namespace = env.iter().find(|e| e["name"] == "POD_NAMESPACE").unwrap();
    assert_eq!(
        pod_namespace["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.namespace"
    );
    assert!(named(&namespaced, "Role", "finetune-operator-leader-election").is_some());
}

/// The chart's appVersion is the operator's version: it is the default image tag and the
/// `app.kubernetes.io/version` label, so a release must bump both (tests/chart/ checks the
/// rest of the chart against these manifests).
#[test]
fn the_charts_app_version_is_the_crate_version() {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("charts/finetune-operator/Chart.yaml"),
    )
    .unwrap();
    let chart: Value = serde_saphyr::from_str(&text).unwrap();
    assert_eq!(chart["appVersion"], env!("CARGO_PKG_VERSION"));
}

/// The two ClusterTrainingRuntimes a TrainJob of the operator names: one container `node`
/// (the torch plugin's), exit codes 1-127 final, and the preStop hook, the operator's own
/// constant, only on the runtime chosen for training.onDemandCheckpointing.
#[test]
fn the_trainjob_runtimes_are_the_ones_the_operator_names() {
    use finetune_operator::children::CHECKPOINT_BEFORE_STOP;
    use finetune_operator::names::{TRAINJOB_CHECKPOINT_RUNTIME, TRAINJOB_RUNTIME};

    let runtimes = rendered("trainer");
    assert_eq!(runtimes.len(), 2, "{runtimes:#?}");
    for (name, hook) in [
        (TRAINJOB_RUNTIME, None),
        (
            TRAINJOB_CHECKPOINT_RUNTIME,
            Some(CHECKPOINT_BEFORE_STOP.to_vec()),
        ),
    ] {
        let runtime = named(&runtimes, "ClusterTrainingRuntime", name)
            .unwrap_or_else(|| panic!("no ClusterTrainingRuntime {name}"));
        assert_eq!(
            runtime["metadata"]["labels"]["trainer.kubeflow.org/framework"],
            "torch"
        );
        let jobs = runtime["spec"]["template"]["spec"]["replicatedJobs"]
            .as_array()
            .unwrap();
        assert_eq!(jobs.len(), 1, "{name}");
        assert_eq!(jobs[0]["name"], "node");
        let job = &jobs[0]["template"]["spec"];
        let pod = &job["template"]["spec"];
        assert_eq!(
            pod["restartPolicy"], "Never",
            "{name}: podFailurePolicy needs it"
        );
        let containers = pod["containers"].as_array().unwrap();
        assert_eq!(containers.len(), 1, "{name}");
        assert_eq!(containers[0]["name"], "node");
        assert_eq!(
            job["backoffLimit"], 100,
            "{name}: the operator enforces spec.backoffLimit (at most 100) itself"
        );
        let rules = job["podFailurePolicy"]["rules"].as_array().unwrap();
        assert_eq!(rules.len(), 1, "{name}");
        assert_eq!(rules[0]["action"], "FailJob");
        let codes = &rules[0]["onExitCodes"];
        assert_eq!(
            (&codes["containerName"], &codes["operator"]),
            (&"node".into(), &"In".into())
        );
        let values: Vec<u64> = codes["values"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_u64)
            .collect();
        assert_eq!(values, (1..=127).collect::<Vec<u64>>(), "{name}");
        let pre_stop = strings(&containers[0]["lifecycle"]["preStop"]["exec"]["command"]);
        match hook {
            None => assert!(containers[0].get("lifecycle").is_none(), "{name}"),
            Some(hook) => assert_eq!(pre_stop, hook, "{name}"),
        }
    }
}
