//! `kubectl finetune`, the kubectl plugin: the operator's binary run as `kubectl-finetune` (a
//! link of that name, as the README installs it), against the cluster with the admin
//! kubeconfig, as a user would run it. `list` through kubectl's own plugin lookup; `logs`,
//! `suspend`, `resume` and `watch` directly; the errors of a missing job and a missing pod.

use std::path::PathBuf;
use std::process::{Command, Output};

use finetune_operator::api::Phase;
use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use serde_json::json;
use testkit::e2e::*;

/// A directory holding `kubectl-finetune`, a link to the operator binary cargo built.
fn plugin_dir(ns: &str) -> PathBuf {
    let dir = cluster().work_dir.join(format!("{ns}-plugin"));
    std::fs::create_dir_all(&dir).unwrap();
    let link = dir.join("kubectl-finetune");
    let _ = std::fs::remove_file(&link);
    let binary = testkit::operator::operator_binary().expect("the operator binary");
    std::os::unix::fs::symlink(binary, &link).unwrap();
    dir
}

/// Runs `kubectl-finetune ARGS` with the cluster's admin kubeconfig.
fn plugin(dir: &std::path::Path, args: &[&str]) -> Output {
    Command::new(dir.join("kubectl-finetune"))
        .args(args)
        .env("KUBECONFIG", &cluster().admin_kubeconfig)
        .output()
        .expect("run kubectl-finetune")
}

/// Runs `kubectl finetune ARGS`: kubectl finds the plugin on the PATH.
fn kubectl_finetune(dir: &std::path::Path, args: &[&str]) -> Output {
    let c = cluster();
    let path = format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    Command::new(&c.kubectl)
        .arg("finetune")
        .args(args)
        .env("PATH", path)
        .env("KUBECONFIG", &c.admin_kubeconfig)
        .output()
        .expect("run kubectl finetune")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_lists_logs_suspends_and_resumes_a_running_job() {
    let ns = TestNamespace::new("plugin").await;
    let _operator = Operator::start(&ns.name);
    let dir = plugin_dir(&ns.name);
    let log = format!("{}-train.log", ns.name);
    ns.write_log(
        &log,
        &[
            "epoch=0, step=3, avg_loss=1.7",
            "epoch=0, step=4, avg_loss=1.6",
        ],
    );
    let spec = finetunejob("plug", json!({"sim.finetune.dev/duration": "10m"}))
        .set("/podTemplate/labels", json!({"sim.finetune.dev/log": log}));
    ns.create(spec).await;
    ns.wait_for_phase("plug", Phase::Training).await;
    ns.eventually("the rank-0 pod runs", || async {
        ns.api::<Pod>()
            .get_opt("plug-master-0")
            .await
            .unwrap()
            .and_then(|p| p.status?.phase)
            .as_deref()
            == Some("Running")
    })
    .await;

    // list, through kubectl's plugin lookup.
    let out = kubectl_finetune(&dir, &["list", "-n", &ns.name]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    let mut lines = stdout.lines();
    let header: Vec<_> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME",
            "PHASE",
            "PROGRESS",
            "EPOCH",
            "LOSS",
            "ETA",
            "GPU-HOURS"
        ],
        "{stdout}"
    );
    let row: Vec<_> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(&row[..2], ["plug", "Training"], "{stdout}");
    let all = kubectl_finetune(&dir, &["list", "-A"]);
    assert!(all.status.success(), "{}", text(&all.stderr));
    assert!(
        text(&all.stdout)
            .lines()
            .any(|l| l
                .split_whitespace()
                .take(3)
                .eq([ns.name.as_str(), "plug", "Training"])),
        "{}",
        text(&all.stdout)
    );

    // logs: the rank-0 log, without naming the pod.
    let out = plugin(&dir, &["logs", "plug", "-n", &ns.name]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains("epoch=0, step=3, avg_loss=1.7")
            && stdout.contains("epoch=0, step=4, avg_loss=1.6"),
        "{stdout}"
    );
    let out = plugin(&dir, &["logs", "plug", "-n", &ns.name, "--tail", "1"]);
    assert_eq!(
        text(&out.stdout).trim_end(),
        "epoch=0, step=4, avg_loss=1.6"
    );

    // suspend: spec.suspend set, the phase goes Suspended, the pods go.
    let out = plugin(&dir, &["suspend", "plug", "-n", &ns.name]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("finetunejob plug suspended"),
        "{}",
        text(&out.stdout)
    );
    assert!(ns.jobs().get("plug").await.unwrap().spec.suspend);
    ns.wait_for_phase("plug", Phase::Suspended).await;
    wait_gone(
        &ns.api::<Pod>(),
        "training.kubeflow.org/job-name=plug",
        "the suspended pods",
    )
    .await;
    let out = plugin(&dir, &["suspend", "plug", "-n", &ns.name]);
    assert!(out.status.success());
    assert!(
        text(&out.stdout).contains("already suspended"),
        "{}",
        text(&out.stdout)
    );
    // No pod while suspended: logs says so.
    let out = plugin(&dir, &["logs", "plug", "-n", &ns.name]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr).trim_end(),
        "error: pod plug-master-0 of FineTuneJob plug does not exist yet (the job's phase is Suspended)"
    );

    // resume: spec.suspend cleared, training again.
    let out = plugin(&dir, &["resume", "plug", "-n", &ns.name]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("finetunejob plug resumed"),
        "{}",
        text(&out.stdout)
    );
    assert!(!ns.jobs().get("plug").await.unwrap().spec.suspend);
    ns.wait_for_phase("plug", Phase::Training).await;
    ns.eventually("training pods again", || async {
        !ns.api::<Pod>()
            .list(&ListParams::default().labels("training.kubeflow.org/job-name=plug"))
            .await
            .unwrap()
            .items
            .is_empty()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_watch_ends_with_the_job_and_a_missing_job_is_an_error() {
    let ns = TestNamespace::new("plugwatch").await;
    let _operator = Operator::start(&ns.name);
    let dir = plugin_dir(&ns.name);

    // A job that is not there: a clear error, exit 1, for every verb that names one.
    for verb in ["logs", "watch", "suspend", "resume"] {
        let out = plugin(&dir, &[verb, "nope", "-n", &ns.name]);
        assert_eq!(out.status.code(), Some(1), "{verb}");
        assert_eq!(
            text(&out.stderr).trim_end(),
            format!("error: FineTuneJob nope not found in namespace {}", ns.name),
            "{verb}"
        );
    }
    let out = plugin(&dir, &["list", "-n", &ns.name]);
    assert!(out.status.success());
    assert!(
        text(&out.stderr).contains("No FineTuneJobs found"),
        "{}",
        text(&out.stderr)
    );

    // watch: progress lines until the job succeeds, then exit 0.
    ns.create(finetunejob(
        "watched",
        json!({"sim.finetune.dev/duration": "3s"}),
    ))
    .await;
    let dir2 = dir.clone();
    let name = ns.name.clone();
    let out =
        tokio::task::spawn_blocking(move || plugin(&dir2, &["watch", "watched", "-n", &name]))
            .await
            .unwrap();
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("  Training"), "{stdout}");
    assert!(
        stdout.trim_end().ends_with("FineTuneJob watched succeeded"),
        "{stdout}"
    );
    // Once finished, watch says so at once.
    let out = plugin(&dir, &["watch", "watched", "-n", &ns.name]);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).contains("Succeeded"));
    let out = plugin(&dir, &["suspend", "watched", "-n", &ns.name]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr).trim_end(),
        "error: FineTuneJob watched has already Succeeded: there is nothing to suspend"
    );
}
