//! Carrying out a [`Decision`]: children first, then status, then events, then deletions.
//!
//! The order is deliberate. A child is created before the status that names it, so a crash in
//! between leaves a child the next reconcile finds (no duplicate). Status is written before the
//! events derived from it, so a crash in between loses an event rather than repeating it. Events
//! read their log tails before children are deleted.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde_json::json;
use tracing::{info, warn};

use super::Context;
use super::error::{Error, KubeContext, is_already_exists, is_conflict, is_not_found};
use super::events;
use crate::api::{FineTuneJob, PyTorchJob};
use crate::children::{build_preprocess_job, build_pytorch_job};
use crate::names::{FIELD_MANAGER, preprocess_job_name};
use crate::status::{self, ChildAction, ChildKind, Decision, PlannedEvent};

pub async fn act(job: &FineTuneJob, mut decision: Decision, ctx: &Context) -> Result<(), Error> {
    let ns = job.namespace().ok_or(Error::MissingNamespace)?;
    let name = job.name_any();
    let now = super::fetch::now();

    for action in &decision.actions {
        let result = match *action {
            ChildAction::Create(kind) => create_child(job, kind, ctx, &ns).await,
            ChildAction::SetSuspended(kind, suspend) => {
                set_suspended(kind, suspend, decision.owned.uid(kind), ctx, &ns, &name).await
            }
            ChildAction::Delete(_) => Ok(()),
        };
        let ChildAction::Create(kind) = *action else {
            result?;
            continue;
        };
        match result {
            Ok(()) => {}
            // An object of the child's name that is not ours: never touched; the job fails.
            Err(Error::ChildConflict { .. }) => {
                decision = status::child_conflict(job, kind, &now);
                break;
            }
            // Retrying cannot fix a child the apiserver refuses; the job fails with its message.
            Err(Error::Kube {
                source: kube::Error::Api(status),
                ..
            }) if is_permanent(&status) => {
                let (failed, event) = status::child_rejected(job, kind, &status.message, &now);
                decision.status = failed;
                decision.events = vec![event];
                decision.actions.clear();
                break;
            }
            // RBAC, a quota or an admission webhook said no: that may change, so retry with
            // backoff, but say so in the status instead of retrying silently.
            Err(Error::Kube {
                source: kube::Error::Api(status),
                action,
            }) if status.code == 403 => {
                let (stalled, event) = status::child_forbidden(job, kind, &status.message, &now);
                if job.status.as_ref() != Some(&stalled) {
                    patch_status(job, &stalled, ctx).await?;
                }
                publish_all(job, event.as_slice(), ctx, &ns).await;
                return Err(Error::Kube {
                    action,
                    source: kube::Error::Api(status),
                });
            }
            Err(e) => return Err(e),
        }
    }

    if job.status.as_ref() != Some(&decision.status) {
        patch_status(job, &decision.status, ctx).await?;
    }

    publish_all(job, &decision.events, ctx, &ns).await;

    for action in &decision.actions {
        if let ChildAction::Delete(kind) = *action {
            delete_child(
                kind,
                decision.owned.uid(kind),
                ctx,
                &ns,
                &name,
                &DeleteParams::background(),
            )
            .await?;
        }
    }
    Ok(())
}

/// 4xx answers that mean "this object will never be accepted as it is".
fn is_permanent(status: &kube::core::Status) -> bool {
    matches!(status.code, 400 | 422) || status.reason == "Invalid" || status.reason == "BadRequest"
}

/// Creates a child with a plain create, never an apply: an apply would take over an object of
/// the same name that is not ours. An existing object is fine only when it is ours (created
/// before a crash, not yet in the watch cache).
async fn create_child(
    job: &FineTuneJob,
    kind: ChildKind,
    ctx: &Context,
    ns: &str,
) -> Result<(), Error> {
    let uid = job.metadata.uid.as_deref();
    match kind {
        ChildKind::Preprocess => {
            let Some(pre) = job.spec.preprocess.as_ref() else {
                // The decision creates it only when spec.preprocess is set.
                return Ok(());
            };
            let child = build_preprocess_job(job, pre)?;
            let api = Api::<Job>::namespaced(ctx.client.clone(), ns);
            if create(&api, &child).await? {
                return Ok(());
            }
            let existing = api
                .get_opt(&child.name_any())
                .await
                .during("get_preprocess_job")?;
            ours_or_conflict(
                existing.as_ref().map(|j| &j.metadata),
                uid,
                "Job",
                child.name_any(),
            )
        }
        ChildKind::PyTorchJob => {
            let child = build_pytorch_job(job)?;
            let api = Api::<PyTorchJob>::namespaced(ctx.client.clone(), ns);
            if create(&api, &child).await? {
                return Ok(());
            }
            let existing = api
                .get_opt(&child.name_any())
                .await
                .during("get_pytorchjob")?;
            ours_or_conflict(
                existing.as_ref().map(|p| &p.metadata),
                uid,
                "PyTorchJob",
                child.name_any(),
            )
        }
    }
}

/// Creates `child`; false when an object of its name already exists.
async fn create<K>(api: &Api<K>, child: &K) -> Result<bool, Error>
where
    K: Resource<DynamicType = ()>
        + Serialize
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let params = PostParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..Default::default()
    };
    match api.create(&params, child).await {
        Ok(_) => {
            info!(child = %child.name_any(), kind = %K::kind(&()), "created child");
            Ok(true)
        }
        Err(e) if is_already_exists(&e) => Ok(false),
        Err(source) => Err(Error::Kube {
            action: "create_child",
            source,
        }),
    }
}

/// After a create found the name taken: ours is fine (created before a crash), another live
/// object is a conflict, and one gone again or being deleted is retried.
fn ours_or_conflict(
    existing: Option<&ObjectMeta>,
    owner_uid: Option<&str>,
    kind: &'static str,
    name: String,
) -> Result<(), Error> {
    match existing {
        Some(meta) if status::controlled_by(meta, owner_uid) => Ok(()),
        Some(meta) if meta.deletion_timestamp.is_none() => Err(Error::ChildConflict { kind, name }),
        // Gone again, or going: not created, and not a conflict. Retried.
        _ => Err(Error::ChildRace { kind, name }),
    }
}

/// Suspends or resumes a child. A merge patch touches only this one field; the child's UID in
/// the patch makes the apiserver refuse it if another object has taken the name.
async fn set_suspended(
    kind: ChildKind,
    suspend: bool,
    uid: Option<&str>,
    ctx: &Context,
    ns: &str,
    name: &str,
) -> Result<(), Error> {
    let Some(uid) = uid else {
        // Only children observed as ours are changed.
        return Ok(());
    };
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..Default::default()
    };
    let result = match kind {
        ChildKind::Preprocess => Api::<Job>::namespaced(ctx.client.clone(), ns)
            .patch(
                &preprocess_job_name(name),
                &params,
                &Patch::Merge(json!({"metadata": {"uid": uid}, "spec": {"suspend": suspend}})),
            )
            .await
            .map(|_| ()),
        ChildKind::PyTorchJob => Api::<PyTorchJob>::namespaced(ctx.client.clone(), ns)
            .patch(
                name,
                &params,
                &Patch::Merge(
                    json!({"metadata": {"uid": uid}, "spec": {"runPolicy": {"suspend": suspend}}}),
                ),
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

/// Deletes exactly the child with `uid` (a precondition): never another object of its name.
async fn delete_child(
    kind: ChildKind,
    uid: Option<&str>,
    ctx: &Context,
    ns: &str,
    name: &str,
    params: &DeleteParams,
) -> Result<(), Error> {
    let Some(uid) = uid else {
        return Ok(());
    };
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: Some(uid.to_string()),
            resource_version: None,
        }),
        ..params.clone()
    };
    let result = match kind {
        ChildKind::Preprocess => Api::<Job>::namespaced(ctx.client.clone(), ns)
            .delete(&preprocess_job_name(name), &params)
            .await
            .map(|_| ()),
        ChildKind::PyTorchJob => Api::<PyTorchJob>::namespaced(ctx.client.clone(), ns)
            .delete(name, &params)
            .await
            .map(|_| ()),
    };
    match result {
        // Gone, or the name now belongs to another object (a 409 on the precondition).
        Err(e) if is_not_found(&e) || is_conflict(&e) => Ok(()),
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

/// Used by the deletion flow: deletes the children this FineTuneJob owns in the foreground, so
/// that each disappears only after its pods (and their GPUs) are gone. A child already gone is
/// fine; an object of a child's name that is not ours is never deleted.
pub async fn delete_children(
    job: &FineTuneJob,
    owned: &status::OwnedChildren,
    ctx: &Context,
) -> Result<(), Error> {
    let ns = job.namespace().ok_or(Error::MissingNamespace)?;
    let name = job.name_any();
    let params = DeleteParams::foreground();
    for kind in [ChildKind::Preprocess, ChildKind::PyTorchJob] {
        delete_child(kind, owned.uid(kind), ctx, &ns, &name, &params).await?;
    }
    Ok(())
}
