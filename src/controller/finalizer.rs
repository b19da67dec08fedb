//! Adding and removing `finetune.dev/cleanup` with JSON patches whose `test` operation makes a
//! concurrent change to the finalizer list fail (and be retried) instead of being overwritten.

use kube::api::{Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde_json::json;

use super::Context;
use super::error::{Error, KubeContext, is_not_found};
use crate::api::FineTuneJob;
use crate::names::{FIELD_MANAGER, FINALIZER};

pub fn has_finalizer(job: &FineTuneJob) -> bool {
    job.finalizers().iter().any(|f| f == FINALIZER)
}

/// Adds the finalizer; returns the object as written.
pub async fn add(
    api: &Api<FineTuneJob>,
    job: &FineTuneJob,
    ctx: &Context,
) -> Result<FineTuneJob, Error> {
    let ops = match &job.metadata.finalizers {
        None => json!([
            {"op": "test", "path": "/metadata/finalizers", "value": null},
            {"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]},
        ]),
        Some(current) => json!([
            {"op": "test", "path": "/metadata/finalizers", "value": current},
            {"op": "add", "path": "/metadata/finalizers/-", "value": FINALIZER},
        ]),
    };
    let written = patch(api, job, ops, "add_finalizer")
        .await?
        .expect("only a removal answers nothing");
    ctx.written.record(&written);
    Ok(written)
}

pub async fn remove(api: &Api<FineTuneJob>, job: &FineTuneJob) -> Result<(), Error> {
    let Some(index) = job.finalizers().iter().position(|f| f == FINALIZER) else {
        return Ok(());
    };
    let path = format!("/metadata/finalizers/{index}");
    let ops = json!([
        {"op": "test", "path": path, "value": FINALIZER},
        {"op": "remove", "path": path},
    ]);
    patch(api, job, ops, "remove_finalizer").await.map(|_| ())
}

async fn patch(
    api: &Api<FineTuneJob>,
    job: &FineTuneJob,
    ops: serde_json::Value,
    action: &'static str,
) -> Result<Option<FineTuneJob>, Error> {
    let ops: json_patch::Patch =
        serde_json::from_value(ops).expect("finalizer patch is valid JSON patch");
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..Default::default()
    };
    match api
        .patch(&job.name_any(), &params, &Patch::<()>::Json(ops))
        .await
    {
        // Removing the finalizer of an object that is already gone is done.
        Err(e) if is_not_found(&e) && action == "remove_finalizer" => Ok(None),
        other => other.map(Some).during(action),
    }
}
