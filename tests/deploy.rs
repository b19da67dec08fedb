//! The manifests in deploy/: least-privilege RBAC without wildcards, a restricted pod, probes,
//! resources. (`make lint` also renders them with `kubectl kustomize deploy/`.)

use std::path::Path;

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

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect()
}

#[test]
fn rbac_has_no_wildcards_and_only_reads_pods() {
    let rbac = docs("rbac.yaml");
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

#[test]
fn the_operator_pod_is_restricted() {
    let deployment = docs("deployment.yaml").remove(0);
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
