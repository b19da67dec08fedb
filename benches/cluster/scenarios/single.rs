//! Latency a user feels at N = 1: on an idle cluster, single applies one after the other, each
//! once the one before is in Training and a second has passed; for the operator, the limit and,
//! when given, the older operator, each in a fresh namespace with its controller started before
//! the first apply.

use std::path::Path;
use std::time::{Duration, Instant};

use finetune_operator::api::FineTuneJob;
use kube::Api;
use kube::api::PostParams;
use serde_json::{Value, json};

use super::limit::limit_controller;
use super::throughput::START_PATH_DURATION;
use crate::Res;
use crate::lab::Lab;
use crate::settings::Settings;
use crate::stats::spread;
use crate::tracker::{Tracker, child_and_training, job};

/// The pause between one job reaching Training and the next apply.
const PAUSE: Duration = Duration::from_secs(1);

/// `count` single applies in `ns`, with the operator `binary`, or the limit when `None`.
async fn side(lab: &Lab, binary: Option<&Path>, ns: &str, count: usize) -> Res<Value> {
    lab.namespace(ns).await?;
    let names: Vec<String> = (0..count).map(|i| format!("single-{i:05}")).collect();
    lab.quiet_logs(ns, &names)?;
    let tracker = Tracker::start(&lab.admin, ns).await?;
    let (op, limit) = match binary {
        Some(bin) => (Some(lab.operator_from(bin, ns)?), None),
        None => {
            let client = lab.cluster.operator_client().await?;
            let limit = tokio::spawn(limit_controller(client, ns.to_string(), count));
            // Let its watch start, as the operator's has by the time it is ready.
            tokio::time::sleep(Duration::from_millis(500)).await;
            (None, Some(limit))
        }
    };
    let api: Api<FineTuneJob> = Api::namespaced(lab.admin.clone(), ns);
    let (mut to_child, mut to_training) = (Vec::new(), Vec::new());
    for name in names {
        let body = job(&name, ns, START_PATH_DURATION);
        let t0 = Instant::now();
        api.create(&PostParams::default(), &body).await?;
        tracker
            .wait(
                "in Training",
                std::slice::from_ref(&name),
                child_and_training,
            )
            .await?;
        {
            let seen = tracker.seen.lock().unwrap();
            let ms = |at: Option<&Instant>| {
                at.map_or(f64::NAN, |at| {
                    at.saturating_duration_since(t0).as_secs_f64() * 1000.0
                })
            };
            to_child.push(ms(seen.pytorch_job.get(&name)));
            to_training.push(ms(seen.training.get(&name)));
        }
        tokio::time::sleep(PAUSE).await;
    }
    if let Some(limit) = limit {
        limit.await??;
    }
    drop(op);
    drop(tracker);
    lab.delete_namespace(ns).await?;
    let (child, training) = (spread(&to_child), spread(&to_training));
    say!(
        "  apply → PyTorchJob p50 {} ms, p99 {} ms; apply → Training p50 {} ms, p99 {} ms",
        child["p50"],
        child["p99"],
        training["p50"],
        training["p99"]
    );
    Ok(json!({"apply_to_child_ms": child, "apply_to_training_ms": training}))
}

/// `{"operator": ..., "limit": ..., "operator_before": ...}`, each with the spread of apply →
/// PyTorchJob and apply → Training in milliseconds.
pub async fn run(lab: &Lab, settings: &Settings) -> Res<Value> {
    let count = settings.single_runs;
    let mut out = serde_json::Map::new();
    say!("single applies: {count}, operator");
    out.insert(
        "operator".into(),
        side(lab, Some(&lab.operator_bin), "bench-single-op", count).await?,
    );
    say!("single applies: {count}, limit");
    out.insert(
        "limit".into(),
        side(lab, None, "bench-single-limit", count).await?,
    );
    if let Some(bin) = &settings.before_operator {
        say!("single applies: {count}, operator, before");
        out.insert(
            "operator_before".into(),
            side(lab, Some(bin), "bench-single-before", count).await?,
        );
    }
    Ok(Value::Object(out))
}
