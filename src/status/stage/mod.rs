//! The stages of a decision, one concept to a file, in the order `Decider::run` calls them:
//! checks before anything is created (`admission`), children that are not ours or are gone
//! (`conflict`), suspension, preprocessing, training (with `progress` from the rank-0 log), the
//! deadline, a stall, and deleting children (`cleanup`, also of a deleted FineTuneJob).
//!
//! Each stage reads the world and changes the status only through the `Decider`; none does I/O.

pub(super) mod admission;
pub(super) mod attempt;
pub(super) mod cleanup;
pub(super) mod conflict;
pub(super) mod deadline;
pub(super) mod preprocess;
pub(super) mod progress;
pub(super) mod stall;
pub(super) mod suspend;
pub(super) mod training;
