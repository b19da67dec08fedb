//! Pods that stop for a reason that is not the run's own failure, on the real control plane
//! with kwok playing how real training pods stop (tests/cluster/README.md, "Pod behaviour
//! contract"): a deleted pod whose training container has the preStop hook logs InstructLab's
//! on-demand checkpoint and exits 0; one without it logs torchrun's SIGTERM and exits 1; a pod
//! annotated `sim.finetune.dev/checkpoint-requested` plays InstructLab finding its trigger file.

use finetune_operator::api::{Phase, PyTorchJob, condition};
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{EvictParams, Patch, PatchParams};
use serde_json::json;
use testkit::e2e::*;
use testkit::pod_logs::metrics_line;

/// A training log two steps into epoch 1 of 3, with the full state of epoch 0 saved.
fn first_attempt_log(name: &str) -> Vec<String> {
    vec![
        metrics_line(0, 1, 2.5),
        metrics_line(0, 2, 2.1),
        format!("\u{1b}[93mModel state saved in: /output/{name}/full_state/epoch_0\u{1b}[0m"),
        metrics_line(1, 3, 1.9),
    ]
}

/// The log of the next attempt, as InstructLab prints it when it finds the full state.
fn resumed_log(name: &str) -> Vec<String> {
    vec![
        format!("\u{1b}[93mLoading state from: /output/{name}/full_state/epoch_0\u{1b}[0m"),
        "\u{1b}[93mTraining metadata loaded: {'current_epoch': 0, 'samples_seen': 200, 'global_step': 3}\u{1b}[0m".to_string(),
        metrics_line(1, 3, 1.8),
    ]
}

fn strs(lines: &[String]) -> Vec<&str> {
    lines.iter().map(String::as_str).collect()
}

/// Creates the job `name` (3 epochs, pods that run for 10 minutes, the rank-0 log from
/// [`first_attempt_log`]) and waits until its first attempt trains at step 3.
async fn first_attempt(ns: &TestNamespace, name: &str, on_demand: bool) -> String {
    let log = format!("{}-train.log", ns.name);
    ns.write_log(&log, &strs(&first_attempt_log(name)));
    let spec = finetunejob(name, json!({"sim.finetune.dev/duration": "10m"}))
        .epochs(3)
        .set("/training/onDemandCheckpointing", json!(on_demand))
        .set("/podTemplate/labels", json!({"sim.finetune.dev/log": log}));
    ns.create(spec).await;
    ns.eventually("the first attempt trains", || async {
        let job = ns.jobs().get(name).await.unwrap();
        let step = job.status.as_ref().and_then(|s| s.progress.as_ref()?.step);
        phase(&job) == Some(Phase::Training) && step == Some(3)
    })
    .await;
    log
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspension_saves_an_on_demand_checkpoint_first_and_the_next_attempt_resumes() {
    let ns = TestNamespace::new("ondemand").await;
    let _operator = Operator::start_with(&ns.name, &["--progress-interval-seconds", "1"]);
    let log = first_attempt(&ns, "od", true).await;
    let ptj = ns.api::<PyTorchJob>().get("od").await.unwrap();
    let container = &ptj.spec.pytorch_replica_specs["Master"]
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0];
    assert!(
        container
            .lifecycle
            .as_ref()
            .and_then(|l| l.pre_stop.as_ref())
            .is_some()
    );

    let patch = |suspend: bool| Patch::Merge(json!({"spec": {"suspend": suspend}}));
    ns.jobs()
        .patch("od", &PatchParams::default(), &patch(true))
        .await
        .unwrap();
    // The pod stops through its preStop hook: the checkpoint is in the status before the
    // attempt is closed.
    ns.eventually("the checkpoint and the attempt's end", || async {
        let job = ns.jobs().get("od").await.unwrap();
        let status = job.status.clone().unwrap_or_default();
        let checkpointed = status
            .conditions
            .iter()
            .any(|c| c.type_ == condition::CHECKPOINTED && c.status == "True");
        let u = usage(&job);
        phase(&job) == Some(Phase::Suspended)
            && checkpointed
            && u.attempts == 1
            && u.running_since.is_none()
    })
    .await;
    ns.wait_for_event("od", "OnDemandCheckpointSaved").await;
    // The log file is the pod's whole log: rewritten while the stopped pod is still there, it
    // would be that pod's log too (a real pod's log never changes once it exited).
    wait_gone(
        &ns.api::<Pod>(),
        "finetune.dev/job-name=od",
        "the stopped pod",
    )
    .await;

    // The next attempt's pod logs what InstructLab prints when it resumes.
    ns.write_log(&log, &strs(&resumed_log("od")));
    ns.jobs()
        .patch("od", &PatchParams::default(), &patch(false))
        .await
        .unwrap();
    ns.eventually("attempt 2 resumes from the full state", || async {
        let job = ns.jobs().get("od").await.unwrap();
        let resumed = job.status.as_ref().and_then(|s| s.resumed_from.clone());
        phase(&job) == Some(Phase::Training)
            && usage(&job).attempts == 2
            && resumed.is_some_and(|c| c.path == "/output/od/full_state/epoch_0")
    })
    .await;
    let job = ns.jobs().get("od").await.unwrap();
    assert_eq!(usage(&job).disruptions, 0, "a suspension is no disruption");
    assert!(!failed(&job));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_evicted_training_pod_goes_on_as_a_new_attempt() {
    let ns = TestNamespace::new("evict").await;
    let _operator = Operator::start_with(&ns.name, &["--progress-interval-seconds", "1"]);
    let log = first_attempt(&ns, "ev", false).await;
    let first = ns.api::<PyTorchJob>().get("ev").await.unwrap();
    // Let the attempt run whole seconds past its checkpoint (the status counts in seconds), so
    // that the GPU time used and lost are something to check.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;

    // The Eviction API (what a node drain uses): DisruptionTarget, then SIGTERM: torchrun
    // exits 1, which fails the PyTorchJob (restartPolicy ExitCode).
    ns.api::<Pod>()
        .evict("ev-master-0", &EvictParams::default())
        .await
        .unwrap();
    let evicted = ns.wait_for_event("ev", "Evicted").await;
    let note = evicted.note.unwrap_or_default();
    assert!(
        note.contains("pod ev-master-0 was stopped by Kubernetes (EvictionByEvictionAPI")
            && note.contains("attempt 2 resumes from its last full-state checkpoint /output/ev/full_state/epoch_0"),
        "{note}"
    );
    ns.write_log(&log, &strs(&resumed_log("ev")));
    ns.eventually("attempt 2 on a new PyTorchJob", || async {
        let job = ns.jobs().get("ev").await.unwrap();
        let ptj = ns.api::<PyTorchJob>().get_opt("ev").await.unwrap();
        let u = usage(&job);
        phase(&job) == Some(Phase::Training)
            && u.attempts == 2
            && u.disruptions == 1
            && ptj.is_some_and(|p| p.uid() != first.uid())
    })
    .await;
    let job = ns.jobs().get("ev").await.unwrap();
    let u = usage(&job);
    // The fixture's 2 nodes × 2 GPUs, for at least the 2 s that passed after the checkpoint.
    assert!(
        u.gpu_seconds >= 4 * 2 && u.gpu_seconds_lost >= 4 * 2,
        "{u:?}"
    );
    assert!(!failed(&job));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_asked_for_with_the_plugin_goes_on_without_counting_as_a_disruption() {
    let ns = TestNamespace::new("askckpt").await;
    let _operator = Operator::start_with(&ns.name, &["--progress-interval-seconds", "1"]);
    let log = first_attempt(&ns, "ask", true).await;
    let binary = testkit::operator::operator_binary().expect("the operator binary");
    let plugin = |args: &[&str]| {
        // `finetune-operator kubectl ...` is the plugin; its `kubectl exec` finds our kubectl.
        let path = format!(
            "{}:{}",
            cluster().bin_dir.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        std::process::Command::new(&binary)
            .arg("kubectl")
            .args(args)
            .env("KUBECONFIG", &cluster().admin_kubeconfig)
            .env("PATH", path)
            .output()
            .expect("run the plugin")
    };

    // The plugin marks the job, then writes the trigger with `kubectl exec`. kwok's pods have
    // no container to exec into, so that step is refused here, and the plugin says where.
    let out = plugin(&["checkpoint", "ask", "-n", &ns.name]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.starts_with("error: could not write the checkpoint trigger in pod ask-master-0: "),
        "{stderr}"
    );
    let job = ns.jobs().get("ask").await.unwrap();
    let asked = job.metadata.annotations.unwrap_or_default();
    assert!(
        asked.contains_key("finetune.dev/checkpoint-requested"),
        "{asked:?}"
    );

    // What the exec does in a real pod: InstructLab finds the trigger, saves, exits 0.
    ns.api::<Pod>()
        .patch(
            "ask-master-0",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {
                "sim.finetune.dev/checkpoint-requested": "true"}}})),
        )
        .await
        .unwrap();
    let event = ns.wait_for_event("ask", "CheckpointRequested").await;
    assert!(
        event
            .note
            .unwrap_or_default()
            .contains("a checkpoint was asked for at"),
        "the note says it was asked for"
    );
    ns.write_log(&log, &strs(&resumed_log("ask")));
    ns.eventually("attempt 2, not counted as a disruption", || async {
        let job = ns.jobs().get("ask").await.unwrap();
        let u = usage(&job);
        phase(&job) == Some(Phase::Training) && u.attempts == 2 && u.disruptions == 0
    })
    .await;

    // A job without on-demand checkpointing is refused before anything is touched.
    ns.create(finetunejob(
        "plain",
        json!({"sim.finetune.dev/duration": "10m"}),
    ))
    .await;
    let out = plugin(&["checkpoint", "plain", "-n", &ns.name]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(
            "does not checkpoint on demand: it needs spec.training.onDemandCheckpointing: true"
        ),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plain = ns.jobs().get("plain").await.unwrap();
    assert!(plain.metadata.annotations.unwrap_or_default().is_empty());
}
