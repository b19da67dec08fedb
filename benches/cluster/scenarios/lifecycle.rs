//! The whole lifecycle (operator only): N jobs whose pods run for 1 s, from creation to
//! Succeeded, and the API cost per job lifecycle.

use serde_json::{Value, json};

use super::throughput::{cost, operator_run, side};
use crate::Res;
use crate::lab::Lab;
use crate::settings::Settings;

/// Every size, `settings.lifecycle_runs` times: `{"lifecycle": ..., "api_cost": ...}`.
pub async fn run(lab: &Lab, settings: &Settings) -> Res<Value> {
    let mut out = serde_json::Map::new();
    let mut cost_out = serde_json::Map::new();
    for &n in &settings.sizes {
        let mut runs = Vec::new();
        for run in 1..=settings.lifecycle_runs {
            say!("lifecycle N={n}, run {run}/{}", settings.lifecycle_runs);
            let ns = format!("bench-life-n{n}-r{run}");
            let r = operator_run(lab, &lab.operator_bin, &ns, n, true).await?;
            say!(
                "  operator: Training in {:.2}s, Succeeded in {:.2}s, p50 {:.0} ms, p99 {:.0} ms",
                r.seconds,
                r.succeeded_seconds.unwrap_or(f64::NAN),
                r.p50_ms,
                r.p99_ms
            );
            runs.push(r);
        }
        out.insert(n.to_string(), json!({"operator": side(n, &runs)}));
        cost_out.insert(n.to_string(), cost(n, &runs));
    }
    Ok(json!({"lifecycle": out, "api_cost": cost_out}))
}
