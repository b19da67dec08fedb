//! The Helm chart (charts/finetune-operator/) beside the kustomize install (deploy/):
//!
//! - `helm lint --strict` passes, cluster-wide and namespaced;
//! - with the default values the chart renders every object of `deploy/` (the Namespace aside,
//!   which `helm install --create-namespace` makes), equal apart from labels and the CRD's keep
//!   annotation: the same CRD, RBAC rules and bindings, and the same Deployment, pod spec and
//!   image included; with `watchNamespace` set, likewise every object of `deploy/namespaced/`;
//! - the values that map to the operator's flags and to optional objects do so;
//! - on the local control plane, all four renderings pass a server-side dry-run apply, and the
//!   chart installs, upgrades and uninstalls for real, without a ServiceMonitor where the
//!   Prometheus Operator is absent.
//!
//! helm (v4.3.1) and kubectl (v1.36) are the local cluster's (tests/cluster/, built from Go
//! modules), so `make test` runs this suite after starting the cluster; `cargo test --test chart`
//! runs it against a running one. Without those binaries or the cluster, the tests fail; they
//! never skip.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use serde_json::Value;
use testkit::{Cluster, repo};

/// `helm install finetune-operator` names the objects as deploy/ does.
const RELEASE: &str = "finetune-operator";
/// deploy/'s namespace, and deploy/namespaced/'s.
const CLUSTER_WIDE_NS: &str = "finetune-system";
const NAMESPACED_NS: &str = "finetune-jobs";
const SERVICE_MONITOR: &str = "monitoring.coreos.com/v1/ServiceMonitor";

/// The cluster's bin dir, which holds helm and kubectl; fails when it is not built.
fn bin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let out = Command::new(repo().join("tests/cluster/bin-dir.sh"))
            .output()
            .expect("tests/cluster/bin-dir.sh runs");
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        assert!(
            out.status.success() && dir.join("helm").is_file(),
            "helm and kubectl are not built in {}: run tests/cluster/build.sh (or `make test`)",
            dir.display()
        );
        dir
    })
}

/// Helm's own directories (cache, config, data) stay in build/chart/, and its kubeconfig is
/// named explicitly, so no user setting or cluster of the machine takes part.
fn helm_command(kubeconfig: Option<&Path>) -> Command {
    let work = repo().join("build/chart");
    let mut cmd = Command::new(bin_dir().join("helm"));
    for (var, dir) in [
        ("HELM_CACHE_HOME", "helm-cache"),
        ("HELM_CONFIG_HOME", "helm-config"),
        ("HELM_DATA_HOME", "helm-data"),
    ] {
        cmd.env(var, work.join(dir));
    }
    // A render needs no cluster: a kubeconfig that does not exist makes sure it uses none.
    let nowhere = work.join("no-cluster.kubeconfig");
    cmd.env("KUBECONFIG", kubeconfig.unwrap_or(&nowhere));
    cmd.env_remove("HELM_NAMESPACE")
        .env_remove("HELM_KUBECONTEXT");
    cmd
}

fn chart() -> String {
    repo()
        .join("charts/finetune-operator")
        .to_string_lossy()
        .into_owned()
}

fn describe(cmd: &str, args: &[&str], out: &Output) -> String {
    format!(
        "{cmd} {}: exit {:?}\n{}{}",
        args.join(" "),
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn helm(args: &[&str], kubeconfig: Option<&Path>) -> Output {
    helm_command(kubeconfig)
        .args(args)
        .output()
        .expect("helm runs")
}

fn helm_ok(args: &[&str], kubeconfig: Option<&Path>) -> String {
    let out = helm(args, kubeconfig);
    assert!(out.status.success(), "{}", describe("helm", args, &out));
    String::from_utf8(out.stdout).unwrap()
}

/// `helm template` of the chart as release `finetune-operator` in `namespace`, for Kubernetes
/// 1.36 (the local cluster's), with `--set`s and other flags.
fn template_args(namespace: &str, flags: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "template",
        RELEASE,
        &chart(),
        "--namespace",
        namespace,
        "--kube-version",
        "1.36.3",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(flags.iter().map(|s| s.to_string()));
    args
}

fn render_text(namespace: &str, flags: &[&str]) -> String {
    let args = template_args(namespace, flags);
    helm_ok(&args.iter().map(String::as_str).collect::<Vec<_>>(), None)
}

fn render(namespace: &str, flags: &[&str]) -> Vec<Value> {
    parse(&render_text(namespace, flags))
}

/// A render that must fail; returns helm's error.
fn render_error(namespace: &str, flags: &[&str]) -> String {
    let args = template_args(namespace, flags);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = helm(&args, None);
    assert!(
        !out.status.success(),
        "expected a failure: {}",
        describe("helm", &args, &out)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn kubectl(args: &[&str], input: Option<&str>, kubeconfig: Option<&Path>) -> Output {
    let mut cmd = Command::new(bin_dir().join("kubectl"));
    if let Some(kubeconfig) = kubeconfig {
        cmd.arg("--kubeconfig").arg(kubeconfig);
    }
    let mut child = cmd
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl runs");
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(input.unwrap_or_default().as_bytes())
        .unwrap();
    drop(stdin);
    child.wait_with_output().unwrap()
}

/// `kubectl kustomize deploy/<dir>`, with our kubectl v1.36.
fn kustomize_text(dir: &str) -> String {
    let path = repo().join("deploy").join(dir);
    let args = ["kustomize", path.to_str().unwrap()];
    let out = kubectl(&args, None, None);
    assert!(out.status.success(), "{}", describe("kubectl", &args, &out));
    String::from_utf8(out.stdout).unwrap()
}

fn parse(text: &str) -> Vec<Value> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(text).unwrap();
    docs.into_iter().filter(|d| !d.is_null()).collect()
}

fn id(doc: &Value) -> String {
    format!(
        "{} {}/{}",
        doc["kind"].as_str().unwrap_or("?"),
        doc["metadata"]["namespace"].as_str().unwrap_or("-"),
        doc["metadata"]["name"].as_str().unwrap_or("?")
    )
}

fn ids(docs: &[Value]) -> BTreeSet<String> {
    docs.iter().map(id).collect()
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in {:?}", ids(docs)))
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

fn args_of(docs: &[Value]) -> Vec<String> {
    let deployment = find(docs, "Deployment", RELEASE);
    deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect()
}

/// Numbers as the apiserver reads them: kustomize prints the CRD's `minimum: 1.0` as `1`, while
/// the chart keeps the generated text, and JSON does not tell the two apart.
fn integral_numbers(value: &mut Value) {
    match value {
        Value::Number(n) => {
            if let Some(f) = n.as_f64().filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15) {
                *value = Value::from(f as i64);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(integral_numbers),
        Value::Object(map) => map.values_mut().for_each(integral_numbers),
        _ => {}
    }
}

/// What may differ between the two renderings of an object: labels (Helm's and kustomize's are
/// their own, and the chart selects its pods by release too), the CRD's keep annotation, and how
/// a number is written. In the kustomize rendering, `$(POD_NAMESPACE)` (kustomize cannot write
/// the namespace into an argument, so Kubernetes expands it in the pod) becomes the namespace the
/// pod runs in, which the chart writes itself.
fn normalized(doc: &Value) -> Value {
    let mut doc = doc.clone();
    integral_numbers(&mut doc);
    let namespace = doc["metadata"]["namespace"].as_str().map(str::to_string);
    let metadata = doc["metadata"].as_object_mut().unwrap();
    metadata.remove("labels");
    if let Some(annotations) = metadata
        .get_mut("annotations")
        .and_then(Value::as_object_mut)
    {
        annotations.remove("helm.sh/resource-policy");
        if annotations.is_empty() {
            metadata.remove("annotations");
        }
    }
    if doc["kind"] == "Deployment" {
        let spec = doc["spec"].as_object_mut().unwrap();
        spec.remove("selector");
        spec["template"]["metadata"]
            .as_object_mut()
            .unwrap()
            .remove("labels");
        for container in spec["template"]["spec"]["containers"]
            .as_array_mut()
            .unwrap()
        {
            for arg in container["args"].as_array_mut().unwrap() {
                let expanded = arg
                    .as_str()
                    .unwrap()
                    .replace("$(POD_NAMESPACE)", namespace.as_deref().unwrap());
                *arg = Value::String(expanded);
            }
        }
    }
    doc
}

/// The paths where two values differ, each with both sides.
fn differ(a: &Value, b: &Value, path: String, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for key in keys {
                let (l, r) = (&x.get(key), &y.get(key));
                match (l, r) {
                    (Some(l), Some(r)) => differ(l, r, format!("{path}/{key}"), out),
                    _ => out.push(format!("{path}/{key}: {l:?} | {r:?}")),
                }
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (l, r)) in x.iter().zip(y).enumerate() {
                differ(l, r, format!("{path}/{i}"), out);
            }
        }
        _ if a != b => out.push(format!("{path}: {a} | {b}")),
        _ => {}
    }
}

/// Every object of the kustomize rendering is in the chart's, equal once normalized; the chart
/// adds only `extra` (ids), and the kustomize rendering's Namespace is not in the chart.
fn assert_same_objects(kustomize: &[Value], helm: &[Value], extra: &[&str]) {
    let expected: BTreeSet<String> = kustomize
        .iter()
        .filter(|d| d["kind"] != "Namespace")
        .map(id)
        .chain(extra.iter().map(|s| s.to_string()))
        .collect();
    assert_eq!(ids(helm), expected, "the chart's objects");
    let mut differences = Vec::new();
    for doc in kustomize.iter().filter(|d| d["kind"] != "Namespace") {
        let twin = helm.iter().find(|h| id(h) == id(doc)).unwrap();
        differ(
            &normalized(twin),
            &normalized(doc),
            id(doc),
            &mut differences,
        );
    }
    assert!(
        differences.is_empty(),
        "the chart and kustomize differ (path: chart | kustomize):\n{}",
        differences.join("\n")
    );
}

#[test]
fn helm_lint_passes_strictly() {
    for flags in [
        &[][..],
        &[
            "--set",
            "watchNamespace=team-a",
            "--set",
            "crds.install=false",
        ][..],
        &[
            "--set",
            "serviceMonitor.enabled=true",
            "--set",
            "leaderElection.enabled=false",
            "--set",
            "eventLogTails=false",
        ][..],
    ] {
        let mut args = vec!["lint", "--strict", "--kube-version", "1.36.3"];
        let chart = chart();
        args.push(&chart);
        args.extend_from_slice(flags);
        let out = helm_ok(&args, None);
        assert!(out.contains("0 chart(s) failed"), "{out}");
    }
}

#[test]
fn the_default_chart_renders_what_deploy_applies() {
    let kustomize = parse(&kustomize_text(""));
    let helm = render(CLUSTER_WIDE_NS, &[]);
    assert_same_objects(
        &kustomize,
        &helm,
        &["Service finetune-system/finetune-operator-metrics"],
    );
    // The comparison covered these; said outright, so that a change to either install that
    // drops one shows here by name.
    let kinds: BTreeSet<&str> = helm.iter().filter_map(|d| d["kind"].as_str()).collect();
    for kind in [
        "CustomResourceDefinition",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "ServiceAccount",
        "Deployment",
    ] {
        assert!(kinds.contains(kind), "{kind} missing from {kinds:?}");
    }
    let args = args_of(&helm);
    assert!(
        !args.iter().any(|a| a.starts_with("--namespace")),
        "{args:?}"
    );
}

#[test]
fn the_namespaced_chart_renders_what_deploy_namespaced_applies() {
    let kustomize = parse(&kustomize_text("namespaced"));
    let helm = render(
        NAMESPACED_NS,
        &[
            "--set",
            &format!("watchNamespace={NAMESPACED_NS}"),
            // deploy/namespaced/ leaves the CRD to a cluster admin.
            "--set",
            "crds.install=false",
        ],
    );
    assert_same_objects(
        &kustomize,
        &helm,
        &["Service finetune-jobs/finetune-operator-metrics"],
    );
    assert!(args_of(&helm).contains(&format!("--namespace={NAMESPACED_NS}")));
    for kind in [
        "ClusterRole",
        "ClusterRoleBinding",
        "CustomResourceDefinition",
    ] {
        assert!(
            of_kind(&helm, kind).is_empty(),
            "{kind} in {:?}",
            ids(&helm)
        );
    }
}

/// The CRD is the generated one, byte for byte in its schema: parsed, it equals crds/, with the
/// release's labels and, unless `crds.keep=false`, the keep annotation.
#[test]
fn the_crd_is_crds_own_with_labels_and_the_keep_policy() {
    let committed: Value = serde_saphyr::from_str(
        &std::fs::read_to_string(repo().join("crds/finetune.dev_finetunejobs.yaml")).unwrap(),
    )
    .unwrap();
    let helm = render(CLUSTER_WIDE_NS, &[]);
    let crd = find(
        &helm,
        "CustomResourceDefinition",
        "finetunejobs.finetune.dev",
    );
    assert_eq!(
        crd["metadata"]["annotations"]["helm.sh/resource-policy"],
        "keep"
    );
    assert_eq!(
        crd["metadata"]["labels"]["app.kubernetes.io/instance"],
        RELEASE
    );
    // Byte for byte the same numbers too (1.0 stays 1.0): compared without normalizing them.
    let mut metadata_only = crd.clone();
    metadata_only["metadata"] = committed["metadata"].clone();
    assert!(metadata_only == committed, "the chart's CRD is not crds/'s");

    let helm = render(CLUSTER_WIDE_NS, &["--set", "crds.keep=false"]);
    let crd = find(
        &helm,
        "CustomResourceDefinition",
        "finetunejobs.finetune.dev",
    );
    assert!(
        crd["metadata"].get("annotations").is_none(),
        "{}",
        crd["metadata"]
    );
    assert_eq!(crd["spec"], committed["spec"]);

    let helm = render(CLUSTER_WIDE_NS, &["--set", "crds.install=false"]);
    assert!(of_kind(&helm, "CustomResourceDefinition").is_empty());
}

#[test]
fn values_set_the_operators_flags() {
    let args = args_of(&render(CLUSTER_WIDE_NS, &["--set", "eventLogTails=false"]));
    assert!(
        args.contains(&"--event-log-tails=false".to_string()),
        "{args:?}"
    );

    let helm = render(
        CLUSTER_WIDE_NS,
        &[
            "--set",
            "leaderElection.enabled=false",
            "--set",
            "logFormat=text",
            "--set",
            "metrics.port=9090",
            "--set-json",
            r#"extraArgs=["--concurrency=16"]"#,
        ],
    );
    assert_eq!(
        args_of(&helm),
        [
            "run",
            "--metrics-address=0.0.0.0:9090",
            "--log-format=text",
            "--concurrency=16"
        ]
    );
    // No Lease, so no rights on Leases.
    assert_eq!(of_kind(&helm, "Role").len(), 0, "{:?}", ids(&helm));
    assert_eq!(of_kind(&helm, "RoleBinding").len(), 0, "{:?}", ids(&helm));
    let container =
        &find(&helm, "Deployment", RELEASE)["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["ports"][0]["containerPort"], 9090);

    let helm = render(
        CLUSTER_WIDE_NS,
        &[
            "--set",
            "replicas=3",
            "--set",
            "image.tag=v9.9.9",
            "--set",
            "resources.limits.memory=1Gi",
        ],
    );
    let deployment = find(&helm, "Deployment", RELEASE);
    assert_eq!(deployment["spec"]["replicas"], 3);
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        container["image"],
        "ghcr.io/finetune-operator/finetune-operator:v9.9.9"
    );
    assert_eq!(container["resources"]["limits"]["memory"], "1Gi");
    assert_eq!(container["resources"]["requests"]["cpu"], "50m");

    let digest = format!("sha256:{}", "ab".repeat(32));
    let helm = render(
        CLUSTER_WIDE_NS,
        &["--set", &format!("image.digest={digest}")],
    );
    assert_eq!(
        find(&helm, "Deployment", RELEASE)["spec"]["template"]["spec"]["containers"][0]["image"],
        format!("ghcr.io/finetune-operator/finetune-operator@{digest}")
    );
}

/// Another namespace than the release's: the rules in a Role there, bound to the ServiceAccount
/// in the release namespace, where the Lease and its Role stay.
#[test]
fn watching_another_namespace_grants_the_rules_there_only() {
    let helm = render(CLUSTER_WIDE_NS, &["--set", "watchNamespace=team-a"]);
    assert!(args_of(&helm).contains(&"--namespace=team-a".to_string()));
    assert!(of_kind(&helm, "ClusterRole").is_empty());
    assert!(of_kind(&helm, "ClusterRoleBinding").is_empty());
    let role = find(&helm, "Role", RELEASE);
    assert_eq!(role["metadata"]["namespace"], "team-a");
    let binding = find(&helm, "RoleBinding", RELEASE);
    assert_eq!(binding["metadata"]["namespace"], "team-a");
    assert_eq!(binding["roleRef"]["kind"], "Role");
    assert_eq!(binding["subjects"][0]["name"], RELEASE);
    assert_eq!(binding["subjects"][0]["namespace"], CLUSTER_WIDE_NS);
    let lease_role = find(&helm, "Role", "finetune-operator-leader-election");
    assert_eq!(lease_role["metadata"]["namespace"], CLUSTER_WIDE_NS);
    // The same rules as cluster-wide.
    let cluster_wide = render(CLUSTER_WIDE_NS, &[]);
    assert_eq!(
        role["rules"],
        find(&cluster_wide, "ClusterRole", RELEASE)["rules"]
    );
}

/// Values the operator cannot honour fail the render with what to change.
#[test]
fn impossible_values_fail_with_a_reason() {
    let error = render_error(
        CLUSTER_WIDE_NS,
        &[
            "--set",
            "replicas=2",
            "--set",
            "leaderElection.enabled=false",
        ],
    );
    assert!(
        error.contains("replicas > 1 needs leaderElection.enabled"),
        "{error}"
    );

    // The operator watches one namespace or all: a list is refused by the values' schema.
    let error = render_error(
        CLUSTER_WIDE_NS,
        &["--set-json", r#"watchNamespace=["team-a","team-b"]"#],
    );
    assert!(error.contains("watchNamespace"), "{error}");

    let error = render_error(
        CLUSTER_WIDE_NS,
        &[
            "--set",
            "serviceMonitor.enabled=true",
            "--set",
            "metrics.service.enabled=false",
        ],
    );
    assert!(
        error.contains("serviceMonitor.enabled needs metrics.service.enabled"),
        "{error}"
    );

    // A misspelt value is an error, not silently ignored.
    let error = render_error(CLUSTER_WIDE_NS, &["--set", "watchNamespaces=team-a"]);
    assert!(error.contains("watchNamespaces"), "{error}");
}

/// The ServiceMonitor exists only where the cluster serves its kind, and then scrapes the
/// metrics Service, which selects the operator's pods and their metrics port.
#[test]
fn the_service_monitor_needs_the_prometheus_operator() {
    let without = render(CLUSTER_WIDE_NS, &["--set", "serviceMonitor.enabled=true"]);
    assert!(of_kind(&without, "ServiceMonitor").is_empty());

    let with = render(
        CLUSTER_WIDE_NS,
        &[
            "--set",
            "serviceMonitor.enabled=true",
            "--set",
            "serviceMonitor.interval=30s",
            "--set",
            "serviceMonitor.labels.release=prometheus",
            "--api-versions",
            SERVICE_MONITOR,
        ],
    );
    let monitor = find(&with, "ServiceMonitor", RELEASE);
    assert_eq!(monitor["metadata"]["labels"]["release"], "prometheus");
    let service = find(&with, "Service", "finetune-operator-metrics");
    for (key, value) in monitor["spec"]["selector"]["matchLabels"]
        .as_object()
        .unwrap()
    {
        assert_eq!(&service["metadata"]["labels"][key], value, "{key}");
    }
    assert_eq!(
        monitor["spec"]["endpoints"][0]["port"],
        service["spec"]["ports"][0]["name"]
    );
    assert_eq!(monitor["spec"]["endpoints"][0]["interval"], "30s");
    assert_eq!(
        monitor["spec"]["namespaceSelector"]["matchNames"][0],
        CLUSTER_WIDE_NS
    );

    let deployment = find(&with, "Deployment", RELEASE);
    let pod_labels = &deployment["spec"]["template"]["metadata"]["labels"];
    for (key, value) in service["spec"]["selector"].as_object().unwrap() {
        assert_eq!(&pod_labels[key], value, "{key}");
    }
    for (key, value) in deployment["spec"]["selector"]["matchLabels"]
        .as_object()
        .unwrap()
    {
        assert_eq!(&pod_labels[key], value, "{key}");
    }
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        service["spec"]["ports"][0]["targetPort"],
        container["ports"][0]["name"]
    );

    let off = render(CLUSTER_WIDE_NS, &["--api-versions", SERVICE_MONITOR]);
    assert!(of_kind(&off, "ServiceMonitor").is_empty());
}

/// The local cluster, and the namespaces of both installs (a server-side dry run creates nothing,
/// so the objects of a namespace that does not exist would be refused). Left in place: the
/// end-to-end suite installs deploy/ into finetune-system anyway.
fn cluster_with_namespaces() -> Cluster {
    let cluster = Cluster::connect("build/chart").unwrap_or_else(|e| panic!("{e}"));
    for ns in [CLUSTER_WIDE_NS, NAMESPACED_NS] {
        let out = kubectl(
            &["create", "namespace", ns, "--dry-run=client", "-o", "yaml"],
            None,
            None,
        );
        assert!(out.status.success());
        let manifest = String::from_utf8(out.stdout).unwrap();
        let args = [
            "apply",
            "--server-side",
            "--field-manager=fto-chart-test",
            "-f",
            "-",
        ];
        let out = kubectl(&args, Some(&manifest), Some(&cluster.admin_kubeconfig));
        assert!(out.status.success(), "{}", describe("kubectl", &args, &out));
    }
    cluster
}

/// What CI applies for real, checked by the real apiserver without persisting anything: schema
/// and field validation (strict), admission, RBAC escalation checks, and server-side apply
/// against what the cluster holds (the CRD that `up.sh` installed).
#[test]
fn every_rendering_passes_a_server_side_dry_run() {
    let cluster = cluster_with_namespaces();
    let renderings = [
        ("kubectl kustomize deploy/", kustomize_text("")),
        (
            "kubectl kustomize deploy/namespaced/",
            kustomize_text("namespaced"),
        ),
        (
            "helm template (cluster-wide)",
            render_text(CLUSTER_WIDE_NS, &[]),
        ),
        (
            "helm template (namespaced)",
            render_text(
                NAMESPACED_NS,
                &[
                    "--set",
                    &format!("watchNamespace={NAMESPACED_NS}"),
                    "--set",
                    "crds.install=false",
                ],
            ),
        ),
    ];
    for (what, manifest) in renderings {
        let objects = parse(&manifest).len();
        let args = [
            "apply",
            "--server-side",
            "--dry-run=server",
            "--field-manager=fto-chart-test",
            "-f",
            "-",
        ];
        let out = kubectl(&args, Some(&manifest), Some(&cluster.admin_kubeconfig));
        assert!(
            out.status.success(),
            "{what}: {}",
            describe("kubectl", &args, &out)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            stdout.matches("(server dry run)").count(),
            objects,
            "{what}: every object is checked\n{stdout}"
        );
    }
}

/// A real release on the real apiserver, beside the cluster's own CRD (so crds.install=false,
/// and a release name of its own): install with the ServiceMonitor asked for but no Prometheus
/// Operator in the cluster, wait until the Deployment is available (kwok runs its pod), upgrade
/// with a changed flag, uninstall, and nothing of the release is left.
#[test]
fn the_chart_installs_upgrades_and_uninstalls() {
    let cluster = Cluster::connect("build/chart").unwrap_or_else(|e| panic!("{e}"));
    let kubeconfig = Some(cluster.admin_kubeconfig.as_path());
    let (release, ns) = ("fto-chart-check", "fto-chart-check");
    let chart = chart();
    // Left over from an interrupted run: the release, then its namespace, gone before we start
    // (a namespace still terminating refuses new objects).
    let _ = helm(&["uninstall", release, "-n", ns, "--wait"], kubeconfig);
    let gone = [
        "delete",
        "namespace",
        ns,
        "--ignore-not-found",
        "--timeout=60s",
    ];
    let out = kubectl(&gone, None, kubeconfig);
    assert!(out.status.success(), "{}", describe("kubectl", &gone, &out));

    let install = [
        "install",
        release,
        &chart,
        "-n",
        ns,
        "--create-namespace",
        "--set",
        "crds.install=false",
        "--set",
        "serviceMonitor.enabled=true",
        "--wait",
        "--timeout",
        "120s",
        "-o",
        "json",
    ];
    let out: Value = serde_json::from_str(&helm_ok(&install, kubeconfig)).unwrap();
    let notes = out["info"]["notes"].as_str().unwrap();
    assert!(notes.contains("No ServiceMonitor was created"), "{notes}");
    let manifest = parse(out["manifest"].as_str().unwrap());
    assert!(of_kind(&manifest, "ServiceMonitor").is_empty());
    let name = "fto-chart-check-finetune-operator";
    assert!(!of_kind(&manifest, "ClusterRole").is_empty());

    let upgrade = [
        "upgrade",
        release,
        &chart,
        "-n",
        ns,
        "--reuse-values",
        "--set",
        "eventLogTails=false",
        "--wait",
        "--timeout",
        "120s",
    ];
    helm_ok(&upgrade, kubeconfig);
    let args = [
        "get",
        "deployment",
        name,
        "-n",
        ns,
        "-o",
        "jsonpath={.spec.template.spec.containers[0].args}",
    ];
    let out = kubectl(&args, None, kubeconfig);
    assert!(out.status.success(), "{}", describe("kubectl", &args, &out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("--event-log-tails=false"),
        "{}",
        describe("kubectl", &args, &out)
    );

    helm_ok(&["uninstall", release, "-n", ns, "--wait"], kubeconfig);
    let args = [
        "get",
        "clusterrole,clusterrolebinding,deployment,serviceaccount,role,rolebinding,service",
        "-A",
        "-l",
        &format!("app.kubernetes.io/instance={release}"),
        "-o",
        "name",
    ];
    let out = kubectl(&args, None, kubeconfig);
    assert!(out.status.success(), "{}", describe("kubectl", &args, &out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "",
        "left behind"
    );
    // The cluster's CRD was never the release's: still there.
    let args = ["get", "crd", "finetunejobs.finetune.dev", "-o", "name"];
    let out = kubectl(&args, None, kubeconfig);
    assert!(out.status.success(), "{}", describe("kubectl", &args, &out));
    let out = kubectl(&gone, None, kubeconfig);
    assert!(out.status.success(), "{}", describe("kubectl", &gone, &out));
}
