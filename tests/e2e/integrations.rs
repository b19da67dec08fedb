//! Other tools on the statuses the operator really writes: Argo CD's health check.

use finetune_operator::api::{FineTuneJob, Phase};
use mlua::serde::SerializeOptions;
use mlua::{Lua, LuaOptions, LuaSerdeExt, StdLib};
use serde_json::json;
use testkit::e2e::*;

/// The Argo CD health check, on the statuses the operator wrote in the cluster.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn argocd_health_follows_the_real_statuses() {
    let ns = TestNamespace::new("argocd").await;
    let _operator = Operator::start(&ns.name);
    let long = json!({"sim.finetune.dev/duration": "10m"});
    ns.create(finetunejob("pending", long.clone()).queue("no-kueue-here"))
        .await;
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
    ns.create(finetunejob("suspended", long).suspend(true))
        .await;

    let script = std::fs::read_to_string(testkit::repo().join("deploy/argocd/health.lua")).unwrap();
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
                    testkit::e2e::phase(j) == Some(phase)
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
