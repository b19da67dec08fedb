//! Deleting children: after the job finished, when spec.cleanup asks (in the background), and
//! when the FineTuneJob itself is deleted ([`deletion`]: a `Cancelled` event, the children in
//! the foreground, then the finalizer). Pure: the controller carries out what this decides.

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;

use crate::api::{FineTuneJob, Phase};
use crate::children::{ChildKind, Children};
use crate::names::PREPROCESS_CONTAINER;
use crate::status::decider::Decider;
use crate::status::decision::{
    AfterDeletion, ChildAction, Deletion, LogSource, OwnedChildren, PlannedEvent, Severity, Tail,
};
use crate::status::pods;
use crate::status::reason;
use crate::status::world::{Lookup, Observed};

/// How soon to look again while a deleted FineTuneJob's children are still there.
const CHILDREN_GONE_CHECK: Duration = Duration::from_secs(5);

/// A finished job with spec.cleanup.deleteChildrenAfterFinished: delete the children that are
/// still there, in the background.
pub(in crate::status) fn delete_children_if_finished(d: &mut Decider) {
    if !d.status().phase.is_some_and(Phase::is_finished)
        || !d.job().spec.cleanup.delete_children_after_finished
    {
        return;
    }
    let obs = d.obs();
    if exists(&obs.preprocess_job, |j| &j.metadata) {
        d.act(ChildAction::Delete(ChildKind::Preprocess));
    }
    let delete = ChildAction::Delete(d.training_kind());
    if exists(&obs.training, |j| j.metadata()) && !d.actions().contains(&delete) {
        d.act(delete);
    }
}

/// The child exists and is not already being deleted.
fn exists<T>(lookup: &Lookup<T>, meta: impl Fn(&T) -> &ObjectMeta) -> bool {
    lookup
        .present()
        .is_some_and(|t| meta(t).deletion_timestamp.is_none())
}

/// A deleted FineTuneJob with our finalizer: announce the cancellation (with the last log
/// lines) once, delete the children in the foreground, wait until they are gone, then let the
/// FineTuneJob go. A missing training kind never blocks this: its lookup finds no child.
pub(in crate::status) fn deletion(job: &FineTuneJob, observed: &Observed) -> Deletion {
    let status = job.status.clone().unwrap_or_default();
    let phase = status.phase.unwrap_or(Phase::Pending);
    let Children {
        preprocess,
        training,
    } = Children {
        preprocess: observed.preprocess_job.present().map(|j| &j.metadata),
        training: observed.training.present().map(|p| p.metadata()),
    };
    let children: Vec<&ObjectMeta> = [preprocess, training].into_iter().flatten().collect();
    let undeleted = children.iter().any(|m| m.deletion_timestamp.is_none());
    let ever_created = status.preprocess_job.is_some() || status.training_child().is_some();
    // Announced once: when live children are about to go, or when there never were any.
    let announce = !phase.is_finished() && (undeleted || !ever_created);
    Deletion {
        event: announce.then(|| cancelled_event(job, phase, observed)),
        // Exactly the children observed as ours; each delete names its UID.
        delete: if undeleted {
            OwnedChildren::of(observed)
        } else {
            OwnedChildren::default()
        },
        then: if children.is_empty() {
            AfterDeletion::RemoveFinalizer
        } else {
            AfterDeletion::Wait(CHILDREN_GONE_CHECK)
        },
    }
}

/// `Cancelled`, with the last lines of the container that was running: the rank-0 pod's, or
/// the newest preprocess pod's.
fn cancelled_event(job: &FineTuneJob, phase: Phase, observed: &Observed) -> PlannedEvent {
    let name = job.name_any();
    let tail = match phase {
        Phase::Training | Phase::Suspended if observed.training.present().is_some() => {
            pods::rank0(job, &observed.pods).map(|rank0| {
                Tail::Fetch(LogSource {
                    pod: rank0.pod,
                    container: rank0.container.to_string(),
                })
            })
        }
        Phase::Initializing => pods::of::<Job>(&observed.pods, &name)
            .iter()
            .max_by_key(|p| p.metadata.creation_timestamp.clone())
            .map(|p| {
                Tail::Fetch(LogSource {
                    pod: p.name_any(),
                    container: PREPROCESS_CONTAINER.to_string(),
                })
            }),
        _ => None,
    };
    PlannedEvent::new(
        Severity::Normal,
        reason::CANCELLED,
        format!(
            "FineTuneJob deleted while {}; deleting its children",
            phase.as_str()
        ),
        tail,
    )
}
