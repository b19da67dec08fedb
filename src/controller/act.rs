//! Carrying out a [`Decision`]: children first, then status, then events, then deletions.
//!
//! The order is deliberate. A child is created before the status that names it, so a crash in
//! between leaves a child the next reconcile finds (no duplicate). Status is written before the
//! events derived from it, so a crash in between loses an event rather than repeating it. Events
//! read their log tails before children are deleted.

use k8s_openapi::api::batch::v1::Job;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde_json::json;
use tracing::{info, warn};

use super::Context;
use super::error::{Error, KubeContext, is_not_found};
use super::events;
use crate::api::{FIELD_MANAGER, FineTuneJob, PyTorchJob};
use crate::build::{build_preprocess_job, build_pytorch_job, preprocess_job_name};
use crate::status::{self, ChildAction, ChildKind, Decision, PlannedEvent};

pub async fn act(job: &FineTuneJob, mut decision: Decision, ctx: &Context) -> Result<(), Error> {
    let ns = job.namespace().ok_or(Error::MissingNamespace)?;
    let name = job.name_any();

    for action in &decision.actions {
        let result = match *action {
            ChildAction::Create(kind) => create_child(job, kind, ctx, &ns).await,
            ChildAction::SetSuspended(kind, suspend) => {
                set_suspended(kind, suspend, ctx, &ns, &name).await
            }
            ChildAction::Delete(_) => Ok(()),
        };
        match (result, *action) {
            (Ok(()), _) => {}
            // Retrying cannot fix a child the apiserver refuses; the job fails with its message.
            (
                Err(Error::Kube {
                    source: kube::Error::Api(status),
                    ..
                }),
                ChildAction::Create(kind),
            ) if is_permanent(&status) => {
                let (failed, event) =
                    status::child_rejected(job, kind, &status.message, &super::fetch::now());
                decision.status = failed;
                decision.events = vec![event];
                decision.actions.clear();
                break;
            }
            (Err(e), _) => return Err(e),
        }
    }

    if job.status.as_ref() != Some(&decision.status) {
        patch_status(job, &decision.status, ctx).await?;
    }

    publish_all(job, &decision.events, ctx, &ns).await;

    for action in &decision.actions {
        if let ChildAction::Delete(kind) = *action {
            delete_child(kind, ctx, &ns, &name, &DeleteParams::background()).await?;
        }
    }
    Ok(())
}

/// 4xx answers that mean "this object will never be accepted as it is".
fn is_permanent(status: &kube::core::Status) -> bool {
    matches!(status.code, 400 | 422) || status.reason == "Invalid" || status.reason == "BadRequest"
}

async fn create_child(
    job: &FineTuneJob,
    kind: ChildKind,
    ctx: &Context,
    ns: &str,
) -> Result<(), Error> {
    let params = PatchParams::apply(FIELD_MANAGER).force();
    match kind {
        ChildKind::Preprocess => {
            let pre = job
                .spec
                .preprocess
                .as_ref()
                .expect("a preprocess Job is only created when spec.preprocess is set");
            let child = build_preprocess_job(job, pre)?;
            apply(
                Api::<Job>::namespaced(ctx.client.clone(), ns),
                &child,
                &params,
            )
            .await
        }
        ChildKind::PyTorchJob => {
            let child = build_pytorch_job(job)?;
            apply(
                Api::<PyTorchJob>::namespaced(ctx.client.clone(), ns),
                &child,
                &params,
            )
            .await
        }
    }
}

async fn apply<K>(api: Api<K>, child: &K, params: &PatchParams) -> Result<(), Error>
where
    K: Resource<DynamicType = ()>
        + Serialize
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let name = child.meta().name.clone().unwrap_or_default();
    api.patch(&name, params, &Patch::Apply(child))
        .await
        .during("create_child")?;
    info!(child = %name, kind = %K::kind(&()), "created child");
    Ok(())
}

/// Suspends or resumes a child. A merge patch touches only this one field.
async fn set_suspended(
    kind: ChildKind,
    suspend: bool,
    ctx: &Context,
    ns: &str,
    name: &str,
) -> Result<(), Error> {
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..Default::default()
    };
    let result = match kind {
        ChildKind::Preprocess => Api::<Job>::namespaced(ctx.client.clone(), ns)
            .patch(
                &preprocess_job_name(name),
                &params,
                &Patch::Merge(json!({"spec": {"suspend": suspend}})),
            )
            .await
            .map(|_| ()),
        ChildKind::PyTorchJob => Api::<PyTorchJob>::namespaced(ctx.client.clone(), ns)
            .patch(
                name,
                &params,
                &Patch::Merge(json!({"spec": {"runPolicy": {"suspend": suspend}}})),
            )
            .await
            .map(|_| ()),
    };
    match result {
        // Gone already: nothing left to suspend.
        Err(e) if is_not_found(&e) => Ok(()),
        other => other.during("suspend_child"),
    }
}

async fn delete_child(
    kind: ChildKind,
    ctx: &Context,
    ns: &str,
    name: &str,
    params: &DeleteParams,
) -> Result<(), Error> {
    let result = match kind {
        ChildKind::Preprocess => Api::<Job>::namespaced(ctx.client.clone(), ns)
            .delete(&preprocess_job_name(name), params)
            .await
            .map(|_| ()),
        ChildKind::PyTorchJob => Api::<PyTorchJob>::namespaced(ctx.client.clone(), ns)
            .delete(name, params)
            .await
            .map(|_| ()),
    };
    match result {
        Err(e) if is_not_found(&e) => Ok(()),
        other => other.during("delete_child"),
    }
}

/// Writes the whole status with server-side apply, so fields we stop setting are removed.
/// Returns the object as written.
pub async fn patch_status(
    job: &FineTuneJob,
    status: &crate::api::FineTuneJobStatus,
    ctx: &Context,
) -> Result<FineTuneJob, Error> {
    let ns = job.namespace().ok_or(Error::MissingNamespace)?;
    let api: Api<FineTuneJob> = Api::namespaced(ctx.client.clone(), &ns);
    let body = json!({
        "apiVersion": FineTuneJob::api_version(&()),
        "kind": FineTuneJob::kind(&()),
        "status": status,
    });
    let written = api
        .patch_status(
            &job.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&body),
        )
        .await
        .during("patch_status")?;
    ctx.written.record(&written);
    Ok(written)
}

/// Events are best effort: a failure to publish one is logged, never retried (a retry would
/// repeat the events that did get through).
async fn publish_all(job: &FineTuneJob, planned: &[PlannedEvent], ctx: &Context, ns: &str) {
    for event in planned {
        if let Err(e) = events::publish(job, event, ctx, ns).await {
            warn!(reason = event.reason, error = %e, "could not publish event");
        }
    }
}

/// Used by the deletion flow: deletes both children in the foreground, so that each disappears
/// only after its pods (and their GPUs) are gone. A child already gone is fine.
pub async fn delete_children(job: &FineTuneJob, ctx: &Context) -> Result<(), Error> {
    let ns = job.namespace().ok_or(Error::MissingNamespace)?;
    let name = job.name_any();
    let params = DeleteParams::foreground();
    delete_child(ChildKind::Preprocess, ctx, &ns, &name, &params).await?;
    delete_child(ChildKind::PyTorchJob, ctx, &ns, &name, &params).await
}
