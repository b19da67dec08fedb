//! Pod logs as event material: bounded tails that fit an Event note.

pub mod progress;
mod tail;

pub use tail::{MAX_NOTE_BYTES, TAIL_LIMIT_BYTES, TAIL_LINES, compose_note};
