//! Hostile values in the new string fields arrive as exactly one literal argv element.

use super::*;
use testkit::expansion::{HOSTILE, expand};

/// Whether a tracking value holds the MLflow URI under test (the one field refusing spaces).
fn wanted_uri(tracking: &Value) -> bool {
    tracking["mlflow"]["trackingUri"]
        .as_str()
        .is_some_and(|u| u.starts_with("http://mlflow/"))
}

#[test]
fn hostile_values_arrive_as_exactly_one_literal_argv_element() {
    type Case = (&'static str, fn(&str) -> Value, fn(&str) -> String);
    let cases: Vec<Case> = vec![
        (
            "/spec/training/tracking",
            |h| json!({"mlflow": {"trackingUri": format!("http://mlflow/{h}")}}),
            |h| format!("--mlflow_tracking_uri=http://mlflow/{h}"),
        ),
        (
            "/spec/training/tracking",
            |h| json!({"mlflow": {"trackingUri": "http://m", "experimentName": h}}),
            |h| format!("--mlflow_experiment_name={h}"),
        ),
        (
            "/spec/training/tracking",
            |h| json!({"mlflow": {"trackingUri": "http://m", "runName": h}}),
            |h| format!("--mlflow_run_name={h}"),
        ),
        (
            "/spec/training/tracking",
            |h| json!({"wandb": {"project": h}}),
            |h| format!("--wandb_project={h}"),
        ),
        (
            "/spec/training/tracking",
            |h| json!({"wandb": {"project": "p", "entity": h}}),
            |h| format!("--wandb_entity={h}"),
        ),
        (
            "/spec/training/tracking",
            |h| json!({"wandb": {"project": "p", "runName": h}}),
            |h| format!("--wandb_run_name={h}"),
        ),
        (
            "/spec/training/tracking",
            |h| json!({"tensorboardDir": format!("tb/{h}")}),
            |h| format!("--tensorboard_log_dir=/output/o/tb/{h}"),
        ),
    ];
    for (pointer, value, expected) in cases {
        let mut admitted = 0;
        for hostile in HOSTILE {
            let obj = with(base(), pointer, value(hostile));
            let Ok(job) = parse_finetunejob(&obj.to_string()) else {
                // Only the URI refuses values (those with spaces); every `$` form gets through.
                assert!(
                    wanted_uri(&value(hostile)) && hostile.contains(' ') && !hostile.contains('$'),
                    "{pointer} {hostile:?} refused"
                );
                continue;
            };
            admitted += 1;
            let children = build_children(&job).unwrap();
            let ptj = serde_json::to_value(&children.training).unwrap();
            let pre = serde_json::to_value(children.preprocess.as_ref().unwrap()).unwrap();
            let wanted = expected(hostile);
            for (owner, template) in [
                (
                    "Master",
                    &ptj["spec"]["pytorchReplicaSpecs"]["Master"]["template"],
                ),
                (
                    "Worker",
                    &ptj["spec"]["pytorchReplicaSpecs"]["Worker"]["template"],
                ),
                ("preprocess", &pre["spec"]["template"]),
            ] {
                let c = &template["spec"]["containers"][0];
                // What the training operator injects, then the container's own env, expanded.
                let mut env: BTreeMap<String, String> = [
                    ("MASTER_ADDR", "job-master-0"),
                    ("MASTER_PORT", "23456"),
                    ("RANK", "0"),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
                for e in c["env"].as_array().unwrap() {
                    if let Some(v) = e["value"].as_str() {
                        let v = expand(v, &env);
                        env.insert(e["name"].as_str().unwrap().to_string(), v);
                    }
                }
                let argv: Vec<String> = c["args"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|a| expand(a.as_str().unwrap(), &env))
                    .collect();
                let n = argv.iter().filter(|a| **a == wanted).count();
                let in_this = owner != "preprocess";
                assert_eq!(
                    n,
                    usize::from(in_this),
                    "{owner}: {wanted:?} in {argv:#?} ({hostile:?})"
                );
                for a in argv.iter().filter(|a| **a != wanted) {
                    assert!(
                        !a.contains(*hostile),
                        "{hostile:?} leaked into {a:?} ({owner})"
                    );
                }
                for v in env.values() {
                    assert!(!v.contains(*hostile), "{hostile:?} leaked into env {v:?}");
                }
            }
        }
        assert!(
            admitted >= HOSTILE.len() / 2,
            "{pointer}: only {admitted} admitted"
        );
    }
}
