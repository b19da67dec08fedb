//! End-to-end tests on the real local control plane (tests/cluster/): kube-apiserver with its
//! admission and CEL, etcd, the garbage collector and Job controller, the scheduler, the real
//! Kubeflow training operator, and kwok playing the pods. The operator runs as a local process
//! under its own ServiceAccount and deploy/ RBAC, so a missing permission fails a test.
//!
//! Run with `make test` (which starts the cluster), or `cargo test --test e2e` against a running
//! one. Without a cluster these tests fail; they never skip.

mod hardening;
mod harness;
mod logs;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use finetune_operator::api::{FineTuneJob, Phase, PyTorchJob};
use futures::TryStreamExt;
use harness::*;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};

/// Records every distinct phase a job goes through, from before it is created.
struct PhaseRecorder(Arc<Mutex<Vec<Phase>>>);

impl PhaseRecorder {
    fn start(ns: &TestNamespace, name: &str) -> Self {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
        let stream = watcher::watcher(ns.jobs(), config);
        tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream.applied_objects());
            while let Ok(Some(job)) = stream.try_next().await {
                if let Some(p) = phase(&job) {
                    let mut seen = sink.lock().unwrap();
                    if seen.last() != Some(&p) {
                        seen.push(p);
                    }
                }
            }
        });
        Self(seen)
    }

    /// The phases seen, once the last one is `last` (the recorder's watch may lag the test's).
    async fn phases_until(&self, last: Phase) -> Vec<Phase> {
        let deadline = std::time::Instant::now() + TIMEOUT;
        loop {
            let seen = self.0.lock().unwrap().clone();
            if seen.last() == Some(&last) || std::time::Instant::now() > deadline {
                return seen;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn with_preprocess(mut job: Value) -> Value {
    job["spec"]["preprocess"] = json!({"maxSeqLen": 2048});
    job
}

fn owned_by(meta: &kube::core::ObjectMeta, job: &FineTuneJob) -> bool {
    meta.owner_references.iter().flatten().any(|o| {
        o.kind == "FineTuneJob"
            && o.name == job.name_any()
            && Some(&o.uid) == job.meta().uid.as_ref()
            && o.controller == Some(true)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_node_with_preprocessing_runs_through_every_phase() {
    let ns = TestNamespace::new("multi").await;
    let _operator = Operator::start(&ns.name);
    let recorder = PhaseRecorder::start(&ns, "multi");
    let mut spec = with_preprocess(finetunejob(
        "multi",
        json!({"sim.finetune.dev/duration": "3s"}),
    ));
    // Argo CD's tracking metadata must never be copied to children.
    spec["metadata"]["labels"] = json!({"app.kubernetes.io/instance": "argo-app"});
    spec["metadata"]["annotations"] =
        json!({"argocd.argoproj.io/tracking-id": "app:finetune.dev/FineTuneJob:ns/multi"});
    ns.create(spec).await;

    // While training, the preprocess pod (finished) and both training pods carry our label.
    ns.wait_for_phase("multi", Phase::Training).await;
    ns.eventually(
        "the preprocess, master and worker pods are labelled",
        || async {
            let pods = ns
                .api::<Pod>()
                .list(&ListParams::default().labels("finetune.dev/job-name=multi"))
                .await
                .unwrap();
            let names: Vec<String> = pods.items.iter().map(|p| p.name_any()).collect();
            ["multi-master-0", "multi-worker-0", "multi-preprocess-"]
                .iter()
                .all(|n| names.iter().any(|m| m.starts_with(n)))
        },
    )
    .await;

    let (job, _) = ns.wait_for_phase("multi", Phase::Succeeded).await;
    assert_eq!(
        recorder.phases_until(Phase::Succeeded).await,
        [
            Phase::Pending,
            Phase::Initializing,
            Phase::Training,
            Phase::Succeeded
        ]
    );
    let status = job.status.clone().unwrap();
    let (start, training, done) = (
        status.start_time.unwrap().0,
        status.training_start_time.unwrap().0,
        status.completion_time.unwrap().0,
    );
    assert!(
        start <= training && training <= done,
        "{start} {training} {done}"
    );
    assert_eq!(status.observed_generation, job.metadata.generation);
    assert_eq!(status.preprocess_job.as_deref(), Some("multi-preprocess"));
    assert_eq!(status.pytorch_job.as_deref(), Some("multi"));

    // Children: owned, labelled, nothing of the FineTuneJob's own metadata copied.
    let pre = ns.api::<Job>().get("multi-preprocess").await.unwrap();
    let ptj = ns.api::<PyTorchJob>().get("multi").await.unwrap();
    for meta in [&pre.metadata, &ptj.metadata] {
        assert!(owned_by(meta, &job), "{:?}", meta.owner_references);
        assert_eq!(
            meta.labels.as_ref().unwrap()["finetune.dev/job-name"],
            "multi"
        );
        assert!(
            !meta
                .labels
                .as_ref()
                .unwrap()
                .contains_key("app.kubernetes.io/instance")
        );
        assert!(
            meta.annotations
                .as_ref()
                .is_none_or(|a| !a.contains_key("argocd.argoproj.io/tracking-id"))
        );
    }
    assert_eq!(ptj.spec.pytorch_replica_specs["Worker"].replicas, Some(1));
    ns.wait_for_events(
        "multi",
        &[
            "PreprocessStarted",
            "PreprocessSucceeded",
            "TrainingStarted",
            "TrainingSucceeded",
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_node_without_preprocessing() {
    let ns = TestNamespace::new("single").await;
    let _operator = Operator::start(&ns.name);
    let recorder = PhaseRecorder::start(&ns, "single");
    let mut spec = finetunejob("single", json!({"sim.finetune.dev/duration": "2s"}));
    spec["spec"]["resources"] = json!({"nodes": 1, "gpusPerNode": 4});
    ns.create(spec).await;
    ns.wait_for_phase("single", Phase::Succeeded).await;
    assert_eq!(
        recorder.phases_until(Phase::Succeeded).await,
        [Phase::Pending, Phase::Training, Phase::Succeeded]
    );
    let ptj = ns.api::<PyTorchJob>().get("single").await.unwrap();
    assert!(!ptj.spec.pytorch_replica_specs.contains_key("Worker"));
    assert!(
        ns.api::<Job>()
            .get_opt("single-preprocess")
            .await
            .unwrap()
            .is_none()
    );
    ns.wait_for_events("single", &["TrainingStarted", "TrainingSucceeded"])
        .await;
}

/// The Warning event holds the exit code and the last lines of the served log.
async fn assert_failure_event(
    ns: &TestNamespace,
    name: &str,
    reason: &str,
    exit_code: i32,
    last_line: &str,
) {
    let event = ns.wait_for_event(name, reason).await;
    assert_eq!(event.type_.as_deref(), Some("Warning"));
    let note = event.note.as_deref().unwrap_or_default();
    assert!(
        note.contains(&format!("exited with code {exit_code}")),
        "{note}"
    );
    assert!(note.trim_end().ends_with(last_line), "{note}");
    assert!(note.len() <= 1024);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preprocess_failure_fails_with_the_exit_code_and_log_tail() {
    let ns = TestNamespace::new("prefail").await;
    let _operator = Operator::start(&ns.name);
    let log = format!("{}-pre.log", ns.name);
    ns.write_log(
        &log,
        &[
            "Processing dataset /data/train.jsonl",
            "ValueError: sample 7 has no messages",
        ],
    );
    let mut spec = with_preprocess(finetunejob(
        "prefail",
        json!({"sim.finetune.dev/duration": "1s", "sim.finetune.dev/exit-code": "2",
               "sim.finetune.dev/container": "preprocess"}),
    ));
    spec["spec"]["backoffLimit"] = json!(0);
    spec["spec"]["podTemplate"]["labels"] = json!({"sim.finetune.dev/log": log});
    ns.create(spec).await;
    let (job, _) = ns.wait_for_phase("prefail", Phase::Failed).await;
    assert_eq!(
        job.status.as_ref().unwrap().reason.as_deref(),
        Some("PreprocessFailed")
    );
    assert_failure_event(
        &ns,
        "prefail",
        "PreprocessFailed",
        2,
        "ValueError: sample 7 has no messages",
    )
    .await;
    assert!(
        ns.api::<PyTorchJob>()
            .get_opt("prefail")
            .await
            .unwrap()
            .is_none(),
        "no training after a failed preprocess"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn training_failure_fails_with_the_exit_code_and_log_tail() {
    let ns = TestNamespace::new("trainfail").await;
    let _operator = Operator::start(&ns.name);
    let log = format!("{}-train.log", ns.name);
    ns.write_log(
        &log,
        &[
            "epoch=0, step=1, avg_loss=2.1",
            "torch.OutOfMemoryError: CUDA out of memory.",
        ],
    );
    let mut spec = finetunejob(
        "trainfail",
        json!({"sim.finetune.dev/duration": "2s", "sim.finetune.dev/exit-code": "1"}),
    );
    spec["spec"]["podTemplate"]["labels"] = json!({"sim.finetune.dev/log": log});
    ns.create(spec).await;
    let (job, _) = ns.wait_for_phase("trainfail", Phase::Failed).await;
    assert_eq!(
        job.status.as_ref().unwrap().reason.as_deref(),
        Some("TrainingFailed")
    );
    assert_failure_event(
        &ns,
        "trainfail",
        "TrainingFailed",
        1,
        "torch.OutOfMemoryError: CUDA out of memory.",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_deadline_is_enforced_by_the_operator() {
    let ns = TestNamespace::new("deadline").await;
    let _operator = Operator::start(&ns.name);
    let mut spec = finetunejob("deadline", json!({"sim.finetune.dev/duration": "10m"}));
    spec["spec"]["activeDeadlineSeconds"] = json!(5);
    ns.create(spec).await;
    let (job, _) = ns.wait_for_phase("deadline", Phase::Failed).await;
    assert_eq!(
        job.status.as_ref().unwrap().reason.as_deref(),
        Some("DeadlineExceeded")
    );
    ns.wait_for_event("deadline", "DeadlineExceeded").await;
    // The pods are stopped: the PyTorchJob is suspended and its pods go.
    let ptj = ns.api::<PyTorchJob>().get("deadline").await.unwrap();
    assert_eq!(ptj.spec.run_policy.unwrap().suspend, Some(true));
    wait_gone(
        &ns.api::<Pod>(),
        "training.kubeflow.org/job-name=deadline",
        "the training pods",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspend_then_resume() {
    let ns = TestNamespace::new("suspend").await;
    let _operator = Operator::start(&ns.name);
    ns.create(finetunejob(
        "susp",
        json!({"sim.finetune.dev/duration": "8s"}),
    ))
    .await;
    ns.wait_for_phase("susp", Phase::Training).await;

    let patch = |suspend: bool| Patch::Merge(json!({"spec": {"suspend": suspend}}));
    ns.jobs()
        .patch("susp", &PatchParams::default(), &patch(true))
        .await
        .unwrap();
    ns.wait_for_phase("susp", Phase::Suspended).await;
    let ptj = ns.api::<PyTorchJob>().get("susp").await.unwrap();
    assert_eq!(ptj.spec.run_policy.unwrap().suspend, Some(true));
    wait_gone(
        &ns.api::<Pod>(),
        "training.kubeflow.org/job-name=susp",
        "the suspended pods",
    )
    .await;

    ns.jobs()
        .patch("susp", &PatchParams::default(), &patch(false))
        .await
        .unwrap();
    ns.wait_for_phase("susp", Phase::Training).await;
    ns.wait_for_phase("susp", Phase::Succeeded).await;
    ns.wait_for_events(
        "susp",
        &[
            "TrainingStarted",
            "Suspended",
            "Resumed",
            "TrainingSucceeded",
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn children_are_deleted_after_finishing_when_asked() {
    let ns = TestNamespace::new("cleanup").await;
    let _operator = Operator::start(&ns.name);
    let mut spec = with_preprocess(finetunejob(
        "clean",
        json!({"sim.finetune.dev/duration": "1s"}),
    ));
    spec["spec"]["cleanup"] = json!({"deleteChildrenAfterFinished": true});
    ns.create(spec).await;
    ns.wait_for_phase("clean", Phase::Succeeded).await;
    ns.eventually("the children are deleted", || async {
        ns.api::<PyTorchJob>()
            .get_opt("clean")
            .await
            .unwrap()
            .is_none()
            && ns
                .api::<Job>()
                .get_opt("clean-preprocess")
                .await
                .unwrap()
                .is_none()
    })
    .await;
    let job = ns.jobs().get("clean").await.unwrap();
    assert_eq!(
        phase(&job),
        Some(Phase::Succeeded),
        "the FineTuneJob itself stays"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_training_job_cancels_it_and_removes_everything() {
    let ns = TestNamespace::new("delete").await;
    let _operator = Operator::start(&ns.name);
    let log = format!("{}-train.log", ns.name);
    ns.write_log(
        &log,
        &[
            "epoch=0, step=3, avg_loss=1.7",
            "epoch=0, step=4, avg_loss=1.6",
        ],
    );
    let mut spec = finetunejob("del", json!({"sim.finetune.dev/duration": "10m"}));
    spec["spec"]["podTemplate"]["labels"] = json!({"sim.finetune.dev/log": log});
    ns.create(spec).await;
    ns.wait_for_phase("del", Phase::Training).await;
    ns.eventually("training pods run", || async {
        let pods = ns
            .api::<Pod>()
            .list(&ListParams::default().labels("training.kubeflow.org/job-name=del"))
            .await
            .unwrap();
        pods.items
            .iter()
            .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
            .count()
            == 2
    })
    .await;

    ns.jobs()
        .delete("del", &DeleteParams::default())
        .await
        .unwrap();
    ns.eventually("the FineTuneJob is gone", || async {
        ns.jobs().get_opt("del").await.unwrap().is_none()
    })
    .await;
    assert!(
        ns.api::<PyTorchJob>()
            .get_opt("del")
            .await
            .unwrap()
            .is_none()
    );
    wait_gone(&ns.api::<Pod>(), "finetune.dev/job-name=del", "the pods").await;
    let cancelled = ns.wait_for_event("del", "Cancelled").await;
    let events = ns.events("del").await;
    let count = events
        .iter()
        .filter(|e| e.reason.as_deref() == Some("Cancelled"))
        .count();
    assert_eq!(count, 1, "one Cancelled event");
    let note = cancelled.note.as_deref().unwrap();
    assert!(
        note.contains("while Training") && note.ends_with("epoch=0, step=4, avg_loss=1.6"),
        "{note}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admission_refuses_invalid_and_hostile_specs_with_actionable_messages() {
    let ns = TestNamespace::new("admission").await;
    let c = cluster();
    let apply = |job: Value| {
        let mut job = job;
        job["metadata"]["namespace"] = json!(ns.name);
        c.kubectl_stdin(&["apply", "-f", "-"], &job.to_string())
    };
    let refused: Vec<(&str, Value, &str)> = vec![
        (
            "path traversal",
            {
                let mut j = finetunejob("a1", json!({}));
                j["spec"]["dataset"]["path"] = json!("../../etc/passwd");
                j
            },
            "must be a relative path inside the volume",
        ),
        (
            "chat template on a volume",
            {
                let mut j = with_preprocess(finetunejob("a2", json!({})));
                j["spec"]["preprocess"]["chatTemplate"] = json!("/data/evil.py");
                j
            },
            "executed as Python",
        ),
        (
            "abbreviated chat template flag",
            {
                let mut j = finetunejob("a3", json!({}));
                j["spec"]["training"]["extraArgs"] = json!(["--chat-tmpl=/data/evil.py"]);
                j
            },
            "flag the operator manages",
        ),
        (
            "shell in extraArgs",
            {
                let mut j = finetunejob("a4", json!({}));
                j["spec"]["training"]["extraArgs"] = json!(["; rm -rf /"]);
                j
            },
            "starting with '--'",
        ),
        (
            "name too long",
            finetunejob(&"n".repeat(41), json!({})),
            "at most 40 characters",
        ),
        (
            "maxBatchLen below maxSeqLen",
            {
                let mut j = with_preprocess(finetunejob("a5", json!({})));
                j["spec"]["training"]["maxBatchLen"] = json!(100);
                j
            },
            "at least preprocess.maxSeqLen",
        ),
        (
            "4-bit LoRA with FSDP",
            {
                let mut j = finetunejob("a6", json!({}));
                j["spec"]["training"]["lora"] = json!({"quantizeBits": 4});
                j
            },
            "requires training.framework: deepspeed",
        ),
        (
            "learning rate not a positive decimal",
            {
                let mut j = finetunejob("a7", json!({}));
                j["spec"]["training"]["learningRate"] = json!("$(HOME)");
                j
            },
            "spec.training.learningRate",
        ),
        (
            "env value over 32 KiB",
            {
                let mut j = finetunejob("a8", json!({}));
                j["spec"]["env"] = json!([{"name": "A", "value": "x".repeat(32769)}]);
                j
            },
            "spec.env[0].value: Too long",
        ),
        (
            "more than 128 env vars",
            {
                let mut j = finetunejob("a9", json!({}));
                j["spec"]["env"] = (0..129)
                    .map(|i| json!({"name": format!("V{i}"), "value": "x"}))
                    .collect();
                j
            },
            "spec.env: Too many",
        ),
    ];
    for (what, job, message) in refused {
        let out = apply(job);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{what}: accepted");
        assert!(stderr.contains(message), "{what}: {stderr}");
    }

    // Hostile but harmless text is accepted and reaches the child as one literal argument.
    let mut hostile = finetunejob("hostile", json!({}));
    hostile["spec"]["dataset"]["path"] = json!("$(HOME)/`id`; rm -rf ~.jsonl");
    let out = apply(hostile.clone());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Changing the training spec of an existing job is refused; suspend may change.
    hostile["spec"]["training"]["epochs"] = json!(5);
    let out = apply(hostile.clone());
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("create a new FineTuneJob to train again")
    );
    hostile["spec"]["training"]["epochs"] = json!(2);
    hostile["spec"]["suspend"] = json!(true);
    let out = apply(hostile);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_values_reach_the_pods_literally() {
    let ns = TestNamespace::new("literal").await;
    let _operator = Operator::start(&ns.name);
    let mut spec = finetunejob("lit", json!({"sim.finetune.dev/duration": "10m"}));
    spec["spec"]["dataset"]["path"] = json!("$(HOME)/`id`; rm -rf ~.jsonl");
    spec["spec"]["training"]["extraArgs"] = json!(["--note=$(MASTER_ADDR)$$"]);
    ns.create(spec).await;
    ns.wait_for_phase("lit", Phase::Training).await;
    ns.eventually("the master pod exists", || async {
        ns.api::<Pod>()
            .get_opt("lit-master-0")
            .await
            .unwrap()
            .is_some()
    })
    .await;
    let pod = ns.api::<Pod>().get("lit-master-0").await.unwrap();
    let args = pod.spec.unwrap().containers[0].args.clone().unwrap();
    // Escaped for Kubernetes' expansion: the program receives exactly the user's text.
    assert!(
        args.contains(&"--data_path=/data/$$(HOME)/`id`; rm -rf ~.jsonl".to_string()),
        "{args:#?}"
    );
    assert!(
        args.contains(&"--note=$$(MASTER_ADDR)$$$$".to_string()),
        "{args:#?}"
    );
    assert_eq!(pod_command(&ns, "lit-master-0").await, ["torchrun"]);
}

async fn pod_command(ns: &TestNamespace, pod: &str) -> Vec<String> {
    let pod = ns.api::<Pod>().get(pod).await.unwrap();
    pod.spec.unwrap().containers[0].command.clone().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_shows_the_columns_and_explains_the_fields() {
    let ns = TestNamespace::new("kubectl").await;
    let _operator = Operator::start(&ns.name);
    ns.create(finetunejob(
        "cols",
        json!({"sim.finetune.dev/duration": "1s"}),
    ))
    .await;
    ns.wait_for_phase("cols", Phase::Succeeded).await;
    let c = cluster();
    let get = c.kubectl(&["get", "ftj", "-n", &ns.name]);
    let table = String::from_utf8_lossy(&get.stdout);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "PHASE", "PROGRESS", "EPOCH", "LOSS", "AGE"],
        "{table}"
    );
    assert!(
        table
            .lines()
            .nth(1)
            .unwrap()
            .split_whitespace()
            .take(2)
            .eq(["cols", "Succeeded"]),
        "{table}"
    );
    let wide = c.kubectl(&["get", "finetunejobs", "-o", "wide", "-n", &ns.name]);
    let wide = String::from_utf8_lossy(&wide.stdout);
    let header: Vec<&str> = wide.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(&header[6..], ["MODEL", "NODES", "GPUS"], "{wide}");
    assert!(
        wide.contains("models")
            && wide
                .lines()
                .nth(1)
                .unwrap()
                .split_whitespace()
                .rev()
                .take(3)
                .eq(["2", "2", "models"]),
        "{wide}"
    );

    let explain = c.kubectl(&["explain", "ftj.spec.training"]);
    let text = String::from_utf8_lossy(&explain.stdout);
    assert!(text.contains("Training hyperparameters"), "{text}");
    assert!(
        text.contains("learningRate") && text.contains("A string, so that GitOps diffs"),
        "{text}"
    );
    let explain = c.kubectl(&["explain", "ftj.spec"]);
    let text = String::from_utf8_lossy(&explain.stdout);
    let words = text.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        words.contains("The spec is immutable once created, except `suspend` and `cleanup`"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_operator_restarts_without_duplicates() {
    let ns = TestNamespace::new("restart").await;
    let mut operator = Operator::start(&ns.name);
    ns.create(with_preprocess(finetunejob(
        "rs",
        json!({"sim.finetune.dev/duration": "6s"}),
    )))
    .await;
    ns.wait_for_phase("rs", Phase::Training).await;
    // Killed mid-training, once the start of training has been announced. (Dying between a
    // status write and its event loses that one event rather than repeating it.)
    ns.wait_for_event("rs", "TrainingStarted").await;
    operator.kill();
    tokio::time::sleep(Duration::from_secs(2)).await;
    operator.restart();
    ns.wait_for_phase("rs", Phase::Succeeded).await;
    ns.wait_for_event("rs", "TrainingSucceeded").await;

    let jobs = ns
        .api::<Job>()
        .list(&ListParams::default().labels("finetune.dev/job-name=rs"))
        .await
        .unwrap();
    let ptjs = ns
        .api::<PyTorchJob>()
        .list(&ListParams::default().labels("finetune.dev/job-name=rs"))
        .await
        .unwrap();
    assert_eq!(
        (jobs.items.len(), ptjs.items.len()),
        (1, 1),
        "no duplicate children"
    );
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for e in ns.events("rs").await {
        *counts.entry(e.reason.unwrap_or_default()).or_default() +=
            e.series.map_or(1, |s| s.count as usize);
    }
    assert!(
        counts.values().all(|n| *n == 1),
        "repeated events: {counts:?}"
    );
    for reason in [
        "PreprocessStarted",
        "PreprocessSucceeded",
        "TrainingStarted",
        "TrainingSucceeded",
    ] {
        assert!(counts.contains_key(reason), "{reason} missing: {counts:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_jobs_cost_no_writes_in_steady_state() {
    let ns = TestNamespace::new("steady").await;
    let operator = Operator::start(&ns.name);
    for name in ["s1", "s2", "s3"] {
        ns.create(finetunejob(
            name,
            json!({"sim.finetune.dev/duration": "1s"}),
        ))
        .await;
    }
    ns.create(finetunejob(
        "s4",
        json!({"sim.finetune.dev/duration": "1s", "sim.finetune.dev/exit-code": "3"}),
    ))
    .await;
    for name in ["s1", "s2", "s3"] {
        ns.wait_for_phase(name, Phase::Succeeded).await;
    }
    ns.wait_for_phase("s4", Phase::Failed).await;
    // Let the last watch events settle, then nothing may be written for 30 s.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = operator.write_requests();
    assert!(before > 0.0, "the metric counts writes");
    tokio::time::sleep(Duration::from_secs(30)).await;
    let after = operator.write_requests();
    assert_eq!(
        before,
        after,
        "writes in steady state:\n{}",
        operator.metrics()
    );
}

/// The Argo CD health check, on the statuses the operator wrote in the cluster.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn argocd_health_follows_the_real_statuses() {
    use mlua::serde::SerializeOptions;
    use mlua::{Lua, LuaOptions, LuaSerdeExt, StdLib};

    let ns = TestNamespace::new("argocd").await;
    let _operator = Operator::start(&ns.name);
    let long = json!({"sim.finetune.dev/duration": "10m"});
    let mut queued = finetunejob("pending", long.clone());
    queued["spec"]["scheduling"] = json!({"queueName": "no-kueue-here"});
    ns.create(queued).await;
    ns.create(with_preprocess(finetunejob("initializing", long.clone())))
        .await;
    ns.create(finetunejob("training", long.clone())).await;
    ns.create(finetunejob(
        "succeeded",
        json!({"sim.finetune.dev/duration": "1s"}),
    ))
    .await;
    ns.create(finetunejob(
        "failed",
        json!({"sim.finetune.dev/duration": "1s", "sim.finetune.dev/exit-code": "1"}),
    ))
    .await;
    let mut suspended = finetunejob("suspended", long);
    suspended["spec"]["suspend"] = json!(true);
    ns.create(suspended).await;

    let script = std::fs::read_to_string(repo().join("deploy/argocd/health.lua")).unwrap();
    let health = |job: &FineTuneJob| -> String {
        let lua = Lua::new_with(StdLib::NONE, LuaOptions::default()).unwrap();
        let options = SerializeOptions::new()
            .serialize_none_to_null(false)
            .serialize_unit_to_null(false);
        let obj = lua
            .to_value_with(&serde_json::to_value(job).unwrap(), options)
            .unwrap();
        lua.globals().set("obj", obj).unwrap();
        let result: mlua::Table = lua.load(&script).eval().unwrap();
        result.get("status").unwrap()
    };
    for (name, phase, expected) in [
        ("pending", Phase::Pending, "Progressing"),
        ("initializing", Phase::Initializing, "Progressing"),
        ("training", Phase::Training, "Progressing"),
        ("succeeded", Phase::Succeeded, "Healthy"),
        ("failed", Phase::Failed, "Degraded"),
        ("suspended", Phase::Suspended, "Suspended"),
    ] {
        let (job, _) = ns
            .wait_for(
                name,
                &format!("phase {phase:?} written for generation 1"),
                |j| {
                    harness::phase(j) == Some(phase)
                        && j.status.as_ref().and_then(|s| s.observed_generation)
                            == j.metadata.generation
                        && (phase != Phase::Pending
                            || j.status.as_ref().and_then(|s| s.reason.as_deref())
                                == Some("Queued"))
                },
            )
            .await;
        assert_eq!(health(&job), expected, "{name}");
    }
}

/// A v0.12 metrics line as InstructLab's Rich handler prints it.
fn metrics_line(epoch: i64, step: i64, loss: f64) -> String {
    format!(
        "[10:00:00] INFO     epoch={epoch}, step={step}, rank=0, overall_throughput=41.500, lr=2.00e-05, avg_loss={loss:.3}, samples_seen={}, total_samples=200, num_epoch_steps=2   main_ds.py:170",
        step * 100
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_rises_to_100_percent_as_the_log_grows() {
    let ns = TestNamespace::new("progress").await;
    let _operator = Operator::start_with(&ns.name, &["--progress-interval-seconds", "1"]);
    let log = format!("{}-train.log", ns.name);
    ns.write_log(
        &log,
        &["[10:00:00] INFO     Starting training   main_ds.py:100"],
    );
    let mut spec = finetunejob("prog", json!({"sim.finetune.dev/duration": "60s"}));
    spec["spec"]["training"]["epochs"] = json!(3);
    spec["spec"]["podTemplate"]["labels"] = json!({"sim.finetune.dev/log": log});
    ns.create(spec).await;
    ns.wait_for_phase("prog", Phase::Training).await;

    // The first epoch: kubectl shows the run part done.
    let first: Vec<String> = vec![
        metrics_line(0, 1, 2.5),
        metrics_line(0, 2, 2.1),
        "\u{1b}[93mModel state saved in: /output/prog/full_state/epoch_0\u{1b}[0m".to_string(),
    ];
    ns.append_log(&log, &first.iter().map(String::as_str).collect::<Vec<_>>());
    let columns = |row: &str| row.split_whitespace().map(String::from).collect::<Vec<_>>();
    ns.eventually("kubectl shows a third of the run done", || async {
        let out = cluster().kubectl(&["get", "ftj", "prog", "-n", &ns.name, "--no-headers"]);
        let row = columns(&String::from_utf8_lossy(&out.stdout));
        row.len() >= 5 && row[2] == "33" && row[3] == "1/3" && row[4] == "2.1"
    })
    .await;

    // The rest of the run.
    let rest: Vec<String> = vec![
        metrics_line(1, 3, 1.7),
        metrics_line(1, 4, 1.4),
        metrics_line(2, 5, 1.2),
        metrics_line(2, 6, 1.05),
        "\u{1b}[93mModel saved in /output/prog/hf_format/samples_600\u{1b}[0m".to_string(),
    ];
    ns.append_log(&log, &rest.iter().map(String::as_str).collect::<Vec<_>>());
    ns.eventually("kubectl shows the run done", || async {
        let out = cluster().kubectl(&["get", "ftj", "prog", "-n", &ns.name, "--no-headers"]);
        let row = columns(&String::from_utf8_lossy(&out.stdout));
        row.len() >= 5 && row[2] == "100" && row[3] == "3/3" && row[4] == "1.05"
    })
    .await;
    let job = ns.jobs().get("prog").await.unwrap();
    let status = job.status.unwrap();
    let progress = status.progress.unwrap();
    assert_eq!(
        (progress.step, progress.total_steps, progress.samples_seen),
        (Some(6), Some(6), Some(600))
    );
    assert!(progress.update_time.is_some());
    assert_eq!(status.checkpoints.len(), 2, "{:?}", status.checkpoints);
    let cursor = status.log_cursor.expect("a cursor");
    assert!(cursor.lines >= 1);

    // Events: every epoch end and checkpoint, once each.
    ns.eventually(
        "three EpochCompleted and two CheckpointSaved events",
        || async {
            let reasons = ns.event_reasons("prog").await;
            reasons.iter().filter(|r| *r == "EpochCompleted").count() == 3
                && reasons.iter().filter(|r| *r == "CheckpointSaved").count() == 2
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_leader_election_one_replica_acts_and_another_takes_over() {
    let ns = TestNamespace::new("leader").await;
    let flags = ["--leader-elect", "--lease-namespace", "finetune-system"];
    let mut first = Operator::start_with(&ns.name, &flags);
    // Let the first replica take the lease (a lease left by an earlier run expires in 30 s).
    ns.eventually("a replica holds the lease", || async {
        let out = cluster().kubectl(&[
            "get",
            "lease",
            "finetune-operator-leader",
            "-n",
            "finetune-system",
            "-o",
            "jsonpath={.spec.holderIdentity}",
        ]);
        String::from_utf8_lossy(&out.stdout).ends_with(&first.pid().to_string())
    })
    .await;
    let second = Operator::start_with(&ns.name, &flags);

    ns.create(finetunejob(
        "one",
        json!({"sim.finetune.dev/duration": "1s"}),
    ))
    .await;
    ns.wait_for_phase("one", Phase::Succeeded).await;
    assert!(first.reconciles() > 0.0, "the leader reconciles");
    assert_eq!(second.reconciles(), 0.0, "the follower only waits");

    // The leader dies without releasing the lease: the follower takes over once it expires.
    first.kill();
    ns.create(finetunejob(
        "two",
        json!({"sim.finetune.dev/duration": "1s"}),
    ))
    .await;
    ns.wait_for_phase("two", Phase::Succeeded).await;
    assert!(second.reconciles() > 0.0, "the new leader reconciles");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_the_operator_gracefully() {
    let ns = TestNamespace::new("sigterm").await;
    let mut operator = Operator::start(&ns.name);
    ns.create(finetunejob(
        "term",
        json!({"sim.finetune.dev/duration": "1s"}),
    ))
    .await;
    ns.wait_for_phase("term", Phase::Succeeded).await;
    let status = operator.terminate();
    assert!(status.success(), "exit status {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_kubernetes_would_refuse_on_a_pod_fails_the_job_at_once() {
    let ns = TestNamespace::new("badkey").await;
    let _operator = Operator::start(&ns.name);
    let mut spec = finetunejob("badkey", json!({}));
    spec["spec"]["podTemplate"]["annotations"] = json!({"not a key": "x"});
    ns.create(spec).await;
    let (job, _) = ns.wait_for_phase("badkey", Phase::Failed).await;
    let status = job.status.unwrap();
    assert_eq!(status.reason.as_deref(), Some("InvalidSpec"));
    assert!(status.message.unwrap().contains("\"not a key\""));
    assert!(
        ns.api::<PyTorchJob>()
            .get_opt("badkey")
            .await
            .unwrap()
            .is_none()
    );
    ns.wait_for_event("badkey", "InvalidSpec").await;
}
