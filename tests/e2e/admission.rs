//! What a user meets at the apiserver: refused specs with messages to act on (the cases the CEL
//! tests check locally), hostile but harmless values reaching the pods literally, an immutable
//! spec, and kubectl's columns and `explain`.

use finetune_operator::api::Phase;
use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};
use testkit::admission::{self, admission_cases};
use testkit::e2e::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admission_refuses_invalid_and_hostile_specs_with_actionable_messages() {
    let ns = TestNamespace::new("admission").await;
    let apply = |job: Value| {
        let mut job = job;
        job["metadata"]["namespace"] = json!(ns.name);
        kubectl_stdin(&["apply", "-f", "-"], &job.to_string())
    };
    let base = admission::base().json();
    let mut wrong = Vec::new();
    for case in admission_cases() {
        let out = apply(case.apply_to(&base));
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.success() {
            wrong.push(format!("{}: accepted", case.name));
        } else if !case.refused_in(&stderr) {
            wrong.push(format!(
                "{}: expected {:?} in {stderr}",
                case.name, case.message
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));

    // Hostile but harmless text is accepted and reaches the child as one literal argument.
    let hostile = finetunejob("hostile", json!({}))
        .set("/dataset/path", json!("$(HOME)/`id`; rm -rf ~.jsonl"))
        .json();
    let out = apply(hostile.clone());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Changing the training spec of an existing job is refused; suspend may change.
    let mut hostile = hostile;
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
    let spec = finetunejob("lit", json!({"sim.finetune.dev/duration": "10m"}))
        .set("/dataset/path", json!("$(HOME)/`id`; rm -rf ~.jsonl"))
        .set("/training/extraArgs", json!(["--note=$(MASTER_ADDR)$$"]));
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
    let get = kubectl(&["get", "ftj", "-n", &ns.name]);
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
    let wide = kubectl(&["get", "finetunejobs", "-o", "wide", "-n", &ns.name]);
    let wide = String::from_utf8_lossy(&wide.stdout);
    let header: Vec<&str> = wide.lines().next().unwrap().split_whitespace().collect();
    // `-o wide` adds the priority-1 columns: the validation loss, the ETA, the GPU-hours used,
    // and what the job runs on.
    assert_eq!(
        header,
        [
            "NAME",
            "PHASE",
            "PROGRESS",
            "EPOCH",
            "LOSS",
            "VAL",
            "LOSS",
            "ETA",
            "GPU-HOURS",
            "AGE",
            "MODEL",
            "NODES",
            "GPUS"
        ],
        "{wide}"
    );
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

    let explain = kubectl(&["explain", "ftj.spec.training"]);
    let text = String::from_utf8_lossy(&explain.stdout);
    assert!(text.contains("Training hyperparameters"), "{text}");
    assert!(
        text.contains("learningRate") && text.contains("A string, so that GitOps diffs"),
        "{text}"
    );
    let explain = kubectl(&["explain", "ftj.spec"]);
    let text = String::from_utf8_lossy(&explain.stdout);
    let words = text.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        words.contains("The spec is immutable once created, except `suspend` and `cleanup`"),
        "{text}"
    );
}
