//! No user value reaches a shell or an interpreter as code, and Kubernetes' `$(VAR)` expansion
//! cannot rewrite it.
//!
//! Hostile strings go into every string field that admission lets through and that the operator
//! places into a container. After simulating Kubernetes' expansion exactly, each must arrive as
//! exactly one literal argv element per container (or, for the image, as the image), and appear
//! nowhere else in the children.

use std::collections::BTreeMap;

use finetune_operator::children::build_children;
use finetune_operator::render::parse_finetunejob;
use finetune_operator::testing::JobFixture;
use serde_json::{Value, json};
use testkit::expansion::{HOSTILE, expand};

/// A container of a child, with the env the kubelet would expand args with.
struct Container {
    owner: String,
    args: Vec<String>,
    command: Vec<String>,
    image: String,
    env: BTreeMap<String, String>,
}

fn containers(children: &Value) -> Vec<Container> {
    let mut templates = Vec::new();
    for child in children.as_array().unwrap() {
        let kind = child["kind"].as_str().unwrap().to_string();
        match kind.as_str() {
            "Job" => templates.push((kind.clone(), child["spec"]["template"].clone())),
            "PyTorchJob" => {
                for (replica, spec) in child["spec"]["pytorchReplicaSpecs"].as_object().unwrap() {
                    templates.push((format!("{kind}/{replica}"), spec["template"].clone()));
                }
            }
            other => panic!("unexpected child {other}"),
        }
    }
    templates
        .into_iter()
        .flat_map(|(owner, template)| {
            let list = template["spec"]["containers"].as_array().unwrap().clone();
            list.into_iter().map(move |c| {
                // What the training operator injects into the pytorch container.
                let mut env: BTreeMap<String, String> = [
                    ("MASTER_ADDR", "job-master-0"),
                    ("MASTER_PORT", "23456"),
                    ("RANK", "0"),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
                for e in c["env"].as_array().into_iter().flatten() {
                    if let Some(v) = e["value"].as_str() {
                        let v = expand(v, &env);
                        env.insert(e["name"].as_str().unwrap().to_string(), v);
                    }
                }
                let strings = |key: &str| -> Vec<String> {
                    c[key]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|s| s.as_str().unwrap().to_string())
                        .collect()
                };
                Container {
                    owner: owner.clone(),
                    args: strings("args"),
                    command: strings("command"),
                    image: c["image"].as_str().unwrap().to_string(),
                    env,
                }
            })
        })
        .collect()
}

fn base() -> Value {
    JobFixture::new("job")
        .meta(json!({"namespace": "ns", "uid": "u-1"}))
        .image("registry.example/ilab:1")
        .spec(json!({
            "model": {"claimName": "models", "path": "m"},
            "dataset": {"claimName": "datasets", "path": "d.jsonl"},
            "output": {"claimName": "out", "path": "o"},
            "preprocess": {},
            "resources": {"nodes": 2},
        }))
        .json()
}

/// Where a field's value goes: (pointer in the spec, value to set, expected argv elements per
/// container kind ("Job" or "PyTorchJob"), built from the hostile text).
type Case = (
    &'static str,
    fn(&str) -> Value,
    fn(&str) -> Vec<(&'static str, String)>,
);

fn cases() -> Vec<Case> {
    vec![
        (
            "/spec/model/path",
            |h| json!(format!("m/{h}")),
            |h| {
                let a = format!("--model_name_or_path=/model/m/{h}");
                vec![("Job", a.clone()), ("PyTorchJob", a)]
            },
        ),
        (
            "/spec/dataset/path",
            |h| json!(format!("d/{h}")),
            |h| vec![("Job", format!("--data_path=/data/d/{h}"))],
        ),
        (
            "/spec/output/path",
            |h| json!(format!("o/{h}")),
            |h| {
                vec![
                    ("Job", format!("--data_output_path=/output/o/{h}/data")),
                    ("PyTorchJob", format!("--output_dir=/output/o/{h}")),
                    (
                        "PyTorchJob",
                        format!("--data_path=/output/o/{h}/data/data.jsonl"),
                    ),
                ]
            },
        ),
        (
            "/spec/preprocess/chatTemplate",
            |h| json!(format!("/opt/t/{h}")),
            |h| {
                let a = format!("--chat-tmpl-path=/opt/t/{h}");
                vec![("Job", a.clone()), ("PyTorchJob", a)]
            },
        ),
        (
            "/spec/training/extraArgs",
            |h| json!([format!("--note={h}")]),
            |h| vec![("PyTorchJob", format!("--note={h}"))],
        ),
    ]
}

fn set(mut obj: Value, pointer: &str, value: Value) -> Value {
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    obj.pointer_mut(parent).unwrap()[key] = value;
    obj
}

#[test]
fn hostile_strings_arrive_as_exactly_one_literal_argv_element() {
    for (pointer, value, expected) in cases() {
        for hostile in HOSTILE {
            let obj = set(base(), pointer, value(hostile));
            let yaml = serde_json::to_string(&obj).unwrap();
            // Admission lets it through (same CEL rules as the apiserver).
            let job = parse_finetunejob(&yaml)
                .unwrap_or_else(|e| panic!("{pointer} = {hostile:?} refused: {e}"));
            let children = build_children(&job).unwrap();
            let mut docs = vec![serde_json::to_value(&children.training).unwrap()];
            docs.extend(
                children
                    .preprocess
                    .iter()
                    .map(|j| serde_json::to_value(j).unwrap()),
            );
            let all = containers(&Value::Array(docs));
            assert_eq!(all.len(), 3, "preprocess + master + worker");

            for c in &all {
                // Never a shell or an inline interpreter.
                let cmd = c.command.join(" ");
                assert!(
                    !["sh", "bash", "/bin/sh", "/bin/bash"].contains(&c.command[0].as_str())
                        && !c.command.iter().chain(&c.args).any(|a| a == "-c"),
                    "{}: command {cmd:?}",
                    c.owner
                );
                let argv: Vec<String> = c.args.iter().map(|a| expand(a, &c.env)).collect();
                let kind = c.owner.split('/').next().unwrap();
                let expectations = expected(hostile);
                let wanted: Vec<&String> = expectations
                    .iter()
                    .filter(|(k, _)| *k == kind)
                    .map(|(_, v)| v)
                    .collect();
                for w in &wanted {
                    let n = argv.iter().filter(|a| a == w).count();
                    assert_eq!(
                        n, 1,
                        "{pointer} = {hostile:?}: {} argv {argv:#?} should hold {w:?} once",
                        c.owner
                    );
                }
                // Nowhere else: no other argv element, env value, command or image holds it.
                for a in argv.iter().filter(|a| !wanted.contains(a)) {
                    assert!(
                        !a.contains(*hostile),
                        "{pointer} = {hostile:?} leaked into {a:?} ({})",
                        c.owner
                    );
                }
                for v in c.env.values().chain(&c.command).chain([&c.image]) {
                    assert!(
                        !v.contains(*hostile),
                        "{pointer} = {hostile:?} leaked into {v:?} ({})",
                        c.owner
                    );
                }
            }
        }
    }
}

#[test]
fn the_image_is_passed_through_unchanged_and_never_expanded() {
    // Kubernetes does not expand `image`; it must arrive byte for byte.
    let image = "registry.example/ilab@sha256:abc$(HOME)";
    let obj = set(base(), "/spec/image", json!(image));
    let job = parse_finetunejob(&obj.to_string()).unwrap();
    let children = build_children(&job).unwrap();
    let docs = Value::Array(vec![
        serde_json::to_value(&children.training).unwrap(),
        serde_json::to_value(children.preprocess.as_ref().unwrap()).unwrap(),
    ]);
    for c in containers(&docs) {
        assert_eq!(c.image, image);
        assert!(c.args.iter().all(|a| !a.contains("sha256")));
    }
}

#[test]
fn spec_env_keeps_kubernetes_semantics() {
    // A user may reference other variables in spec.env on purpose: it is passed as written.
    let obj = set(
        base(),
        "/spec/env",
        json!([{"name": "OUT", "value": "$(COLUMNS)-wide"}]),
    );
    let job = parse_finetunejob(&obj.to_string()).unwrap();
    let children = build_children(&job).unwrap();
    let docs = Value::Array(vec![serde_json::to_value(&children.training).unwrap()]);
    for c in containers(&docs) {
        assert_eq!(c.env["OUT"], "512-wide");
    }
}
