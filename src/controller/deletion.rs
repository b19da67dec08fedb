//! Carrying out [`status::deletion`] for a deleted FineTuneJob that still has our finalizer:
//! read what [`status::needs`] asks for, publish the `Cancelled` event (best effort), delete the
//! children it names in the foreground, then remove the finalizer or wait. Nothing is decided
//! here.

use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, ResourceExt};
use tracing::warn;

use super::error::Error;
use super::{Context, act, events, fetch, finalizer};
use crate::api::FineTuneJob;
use crate::status::{self, AfterDeletion};

pub(super) async fn run(
    api: &Api<FineTuneJob>,
    job: &FineTuneJob,
    ctx: &Context,
) -> Result<Action, Error> {
    ctx.followers.forget(&ObjectRef::from(job));
    let observed = fetch::observe(ctx, job, status::needs(job)).await?;
    let deletion = status::deletion(job, &observed);
    if let Some(event) = &deletion.event {
        let ns = job.namespace().ok_or(Error::MissingNamespace)?;
        if let Err(e) = events::publish(job, event, ctx, &ns).await {
            warn!(error = %e, "could not publish the Cancelled event");
        }
    }
    act::delete_children_foreground(job, &deletion.delete, ctx).await?;
    match deletion.then {
        AfterDeletion::RemoveFinalizer => {
            finalizer::remove(api, job).await?;
            // The object is about to go: nothing kept for it may outlive it.
            ctx.forget(&ObjectRef::from(job));
            Ok(Action::await_change())
        }
        AfterDeletion::Wait(after) => Ok(Action::requeue(after)),
    }
}
