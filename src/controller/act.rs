//! Carrying out a [`Decision`]: children first, then status, then events, then deletions.
//!
//! The order is deliberate. A child is created before the status that names it, so a crash in
//! between leaves a child the next reconcile finds (no duplicate). Status is written before the
//! events derived from it, so a crash in between loses an event rather than repeating it. Events
//! read their log tails before children are deleted.
//!
//! Nothing is decided here: the children come built in the actions, and when the apiserver
//! refuses a create, `status` says what follows ([`status::child_rejected`] and its siblings).
//! Every child is handled through [`Child`], whatever its kind.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::{Api, Resource, ResourceExt};
use serde_json::{Value, json};
use tracing::{info, warn};

use super::Context;
use super::error::{Error, KubeContext, is_already_exists, is_conflict, is_not_found};
use super::events;
use crate::api::{Backend, FineTuneJob, FineTuneJobStatus, PyTorchJob, TrainJob};
use crate::children::{Child, ChildKind, Children, NewChild};
use crate::names::FIELD_MANAGER;
use crate::status::{self, ChildAction, Decision, OwnedChildren, PlannedEvent};

/// `stored`: the status the apiserver holds, which `job` (the object decided on) may not yet
/// carry: a new job is decided from its first status before that is written. Updated when the
/// status is written, so that a caller seeing an error knows whether it was.
///
/// `finalizing`: the finalizer's write for a new job (or nothing), sent together with the
/// children's: neither needs the other, and the status, which names the children, is written
/// once both are in. So a new job's first reconcile takes two round trips to the apiserver
/// (finalizer and child, then status), not three.
pub async fn act(
    job: &FineTuneJob,
    stored: &mut Option<FineTuneJobStatus>,
    decision: Decision,
    ctx: &Context,
    finalizing: impl Future<Output = Result<(), Error>>,
) -> Result<(), Error> {
    let ns = job.namespace().ok_or(Error::MissingNamespace)?;
    let name = job.name_any();
    let (finalized, created) =
        futures::join!(finalizing, create_children(job, decision, ctx, &ns, &name));
    finalized?;
    // A create the apiserver forbids: reported in the status, then retried with backoff.
    let (decision, forbidden) = created?;

    if stored.as_ref() != Some(&decision.status) {
        patch_status(job, &decision.status, ctx).await?;
        let old_usage = stored.as_ref().and_then(|s| s.usage.as_ref());
        ctx.metrics
            .usage
            .record(old_usage, decision.status.usage.as_ref());
        *stored = Some(decision.status.clone());
    }

    publish_all(job, &decision.events, ctx, &ns).await;

    if let Some(e) = forbidden {
        return Err(e);
    }
    let background = DeleteParams::background();
    for action in &decision.actions {
        if let ChildAction::Delete(kind) = *action {
            let uid = decision.owned.uid(kind);
            match kind {
                ChildKind::Preprocess => {
                    delete_child::<Job>(uid, ctx, &ns, &name, &background).await?
                }
                ChildKind::PyTorchJob => {
                    delete_child::<PyTorchJob>(uid, ctx, &ns, &name, &background).await?
                }
                ChildKind::TrainJob => {
                    delete_child::<TrainJob>(uid, ctx, &ns, &name, &background).await?
                }
            }
        }
    }
    Ok(())
}

/// Creates the decision's children and changes their suspension, in order. A refused create
/// replaces the decision with what follows from it (a conflict, a rejection, a forbidden create:
/// the latter is also returned, to be retried once the status says so).
async fn create_children(
    job: &FineTuneJob,
    mut decision: Decision,
    ctx: &Context,
    ns: &str,
    name: &str,
) -> Result<(Decision, Option<Error>), Error> {
    let now = ctx.now();
    let owner_uid = job.metadata.uid.as_deref();
    let mut forbidden = None;

    for action in &decision.actions {
        let uid = |kind| decision.owned.uid(kind);
        let (kind, result) = match action {
            ChildAction::Create(NewChild::Preprocess(child)) => (
                ChildKind::Preprocess,
                create_child(&**child, owner_uid, ctx, ns).await,
            ),
            ChildAction::Create(NewChild::PyTorchJob(child)) => (
                ChildKind::PyTorchJob,
                create_child(&**child, owner_uid, ctx, ns).await,
            ),
            ChildAction::Create(NewChild::TrainJob(child)) => (
                ChildKind::TrainJob,
                create_child(&**child, owner_uid, ctx, ns).await,
            ),
            ChildAction::SetSuspended(kind, suspend) => {
                let (kind, suspend) = (*kind, *suspend);
                match kind {
                    ChildKind::Preprocess => {
                        set_suspended::<Job>(suspend, uid(kind), ctx, ns, name).await?
                    }
                    ChildKind::PyTorchJob => {
                        set_suspended::<PyTorchJob>(suspend, uid(kind), ctx, ns, name).await?
                    }
                    ChildKind::TrainJob => {
                        set_suspended::<TrainJob>(suspend, uid(kind), ctx, ns, name).await?
                    }
                }
                continue;
            }
            ChildAction::Delete(_) => continue,
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
                source: kube::Error::Api(refusal),
                ..
            }) if is_permanent(&refusal) => {
                decision = status::child_rejected(job, kind, &refusal.message, &now);
                break;
            }
            // RBAC, a quota or an admission webhook said no: that may change, so retry with
            // backoff, but say so in the status instead of retrying silently.
            Err(Error::Kube {
                source: kube::Error::Api(refusal),
                action,
            }) if refusal.code == 403 => {
                decision = status::child_forbidden(job, kind, &refusal.message, &now);
                forbidden = Some(Error::Kube {
                    action,
                    source: kube::Error::Api(refusal),
                });
                break;
            }
            Err(e) => return Err(e),
        }
    }
    Ok((decision, forbidden))
}

/// 4xx answers that mean "this object will never be accepted as it is".
fn is_permanent(status: &kube::core::Status) -> bool {
    matches!(status.code, 400 | 422) || status.reason == "Invalid" || status.reason == "BadRequest"
}

/// The error label of reading a child back after its create found the name taken.
fn get_action(kind: ChildKind) -> &'static str {
    match kind {
        ChildKind::Preprocess => "get_preprocess_job",
        ChildKind::PyTorchJob => "get_pytorchjob",
        ChildKind::TrainJob => "get_trainjob",
    }
}

/// Creates a child with a plain create, never an apply: an apply would take over an object of
/// the same name that is not ours. An existing object is fine only when it is ours (created
/// before a crash, not yet in the watch cache).
async fn create_child<C: Child>(
    child: &C,
    owner_uid: Option<&str>,
    ctx: &Context,
    ns: &str,
) -> Result<(), Error> {
    let api = Api::<C>::namespaced(ctx.client.clone(), ns);
    let params = PostParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..Default::default()
    };
    match api.create(&params, child).await {
        Ok(_) => {
            info!(child = %child.name_any(), kind = %C::kind(&()), "created child");
            return Ok(());
        }
        Err(e) if is_already_exists(&e) => {}
        Err(source) => {
            return Err(Error::Kube {
                action: "create_child",
                source,
            });
        }
    }
    let existing = api
        .get_opt(&child.name_any())
        .await
        .during(get_action(C::KIND))?;
    ours_or_conflict(
        existing.as_ref().map(|c| c.meta()),
        owner_uid,
        C::KIND,
        child.name_any(),
    )
}

/// After a create found the name taken: ours is fine (created before a crash), another live
/// object is a conflict, and one gone again or being deleted is retried.
fn ours_or_conflict(
    existing: Option<&ObjectMeta>,
    owner_uid: Option<&str>,
    kind: ChildKind,
    name: String,
) -> Result<(), Error> {
    let kind = kind.api_kind();
    match existing {
        Some(meta) if status::controlled_by(meta, owner_uid) => Ok(()),
        Some(meta) if meta.deletion_timestamp.is_none() => Err(Error::ChildConflict { kind, name }),
        // Gone again, or going: not created, and not a conflict. Retried.
        _ => Err(Error::ChildRace { kind, name }),
    }
}

/// Suspends or resumes a child. A merge patch touches only this one field; the child's UID in
/// the patch makes the apiserver refuse it if another object has taken the name.
async fn set_suspended<C: Child>(
    suspend: bool,
    uid: Option<&str>,
    ctx: &Context,
    ns: &str,
    job_name: &str,
) -> Result<(), Error> {
    let Some(uid) = uid else {
        // Only children observed as ours are changed.
        return Ok(());
    };
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..Default::default()
    };
    let mut patch = json!({"metadata": {"uid": uid}});
    if let (Value::Object(patch), Value::Object(suspension)) =
        (&mut patch, C::suspend_patch(suspend))
    {
        patch.extend(suspension);
    }
    let result = Api::<C>::namespaced(ctx.client.clone(), ns)
        .patch(&C::name(job_name), &params, &Patch::Merge(patch))
        .await
        .map(|_| ());
    match result {
        // Gone already: nothing left to suspend.
        Err(e) if is_not_found(&e) => Ok(()),
        other => other.during("suspend_child"),
    }
}

/// Deletes exactly the child with `uid` (a precondition): never another object of its name.
async fn delete_child<C: Child>(
    uid: Option<&str>,
    ctx: &Context,
    ns: &str,
    job_name: &str,
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
    let result = Api::<C>::namespaced(ctx.client.clone(), ns)
        .delete(&C::name(job_name), &params)
        .await
        .map(|_| ());
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
    status: &FineTuneJobStatus,
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
            warn!(reason = event.reason.as_str(), error = %e, "could not publish event");
        }
    }
}

/// Deletes the children in `owned` in the foreground, so that each disappears only after its
/// pods (and their GPUs) are gone. A child already gone is fine; an object of a child's name
/// that is not ours is never deleted (it is not in `owned`).
pub async fn delete_children_foreground(
    job: &FineTuneJob,
    owned: &OwnedChildren,
    ctx: &Context,
) -> Result<(), Error> {
    let ns = job.namespace().ok_or(Error::MissingNamespace)?;
    let name = job.name_any();
    let params = DeleteParams::foreground();
    let Children {
        preprocess,
        training,
    } = owned;
    delete_child::<Job>(preprocess.as_deref(), ctx, &ns, &name, &params).await?;
    let training = training.as_deref();
    match job.spec.backend {
        Backend::PyTorchJob => {
            delete_child::<PyTorchJob>(training, ctx, &ns, &name, &params).await?
        }
        Backend::TrainJob => delete_child::<TrainJob>(training, ctx, &ns, &name, &params).await?,
    }
    Ok(())
}
