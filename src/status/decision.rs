//! What a decision says to do: the [`Decision`] of a reconcile (status, child actions, events)
//! and the [`Deletion`] of a deleted FineTuneJob. Pure data for the controller to carry out;
//! nothing here reads or writes the cluster.

use std::time::Duration;

use super::reason::Reason;
use super::world::Observed;
use crate::api::FineTuneJobStatus;
use crate::children::{ChildKind, Children, NewChild};

/// A change to a child.
#[derive(Clone, Debug, PartialEq)]
pub enum ChildAction {
    /// Create this child, built by the decision.
    Create(NewChild),
    SetSuspended(ChildKind, bool),
    /// Delete the child in the background (it has finished, or must stop).
    Delete(ChildKind),
}

/// Event severity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    Normal,
    Warning,
}

/// Where to read the log lines that end an event's note.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogSource {
    pub pod: String,
    pub container: String,
}

/// The log lines that end an event's note.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tail {
    /// Read the last lines of this container when publishing.
    Fetch(LogSource),
    /// Lines already read.
    Text(String),
}

/// An event to publish on the FineTuneJob.
#[derive(Clone, Debug, PartialEq)]
pub struct PlannedEvent {
    pub severity: Severity,
    pub reason: Reason,
    /// The event's action. The recorder merges events of one reason and action within six
    /// minutes, keeping the first note, so events that repeat a reason with news (one per epoch,
    /// one per checkpoint) carry a distinct action.
    pub action: String,
    pub note: String,
    pub tail: Option<Tail>,
}

impl PlannedEvent {
    /// An event whose action is its reason.
    pub fn new(severity: Severity, reason: Reason, note: String, tail: Option<Tail>) -> Self {
        PlannedEvent {
            severity,
            reason,
            action: reason.to_string(),
            note,
            tail,
        }
    }

    /// A Warning without log lines, its action the reason.
    pub fn warning(reason: Reason, note: String) -> Self {
        Self::new(Severity::Warning, reason, note, None)
    }
}

/// UIDs of the children this FineTuneJob controls, as observed. Every change to a child is made
/// on exactly that object (a UID precondition), never on another that took its name meanwhile.
pub type OwnedChildren = Children<Option<String>, Option<String>>;

impl OwnedChildren {
    pub fn of(observed: &Observed) -> Self {
        Children {
            preprocess: observed
                .preprocess_job
                .present()
                .and_then(|j| j.metadata.uid.clone()),
            training: observed
                .training
                .present()
                .and_then(|p| p.metadata().uid.clone()),
        }
    }

    pub fn uid(&self, kind: ChildKind) -> Option<&str> {
        match kind {
            ChildKind::Preprocess => self.preprocess.as_deref(),
            ChildKind::PyTorchJob | ChildKind::TrainJob => self.training.as_deref(),
        }
    }
}

/// What to do after observing the world.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    /// The status to write; the controller patches it only when it differs from the current.
    pub status: FineTuneJobStatus,
    pub actions: Vec<ChildAction>,
    pub events: Vec<PlannedEvent>,
    /// Reconcile again after this long even if nothing changes (a deadline, a missing kind).
    pub requeue_after: Option<Duration>,
    /// The children the actions apply to.
    pub owned: OwnedChildren,
}

/// What to do for a deleted FineTuneJob that still has our finalizer.
#[derive(Clone, Debug, PartialEq)]
pub struct Deletion {
    /// The `Cancelled` event, published before anything is deleted (its tail is still there to
    /// read); announced once, when live children are about to go or there never were any.
    pub event: Option<PlannedEvent>,
    /// The children to delete in the foreground (each disappears only after its pods, and with
    /// them their GPUs): exactly these objects, by UID.
    pub delete: OwnedChildren,
    /// Then: let the FineTuneJob go, or wait for its children to be gone.
    pub then: AfterDeletion,
}

/// The last step of a [`Deletion`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AfterDeletion {
    /// No child is left: remove the finalizer.
    RemoveFinalizer,
    /// Children are still there: look again after this long at the latest (their own deletion
    /// events wake the controller first; this is a safety net).
    Wait(Duration),
}
