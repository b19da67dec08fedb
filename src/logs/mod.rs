//! Pod logs: bounded tails that fit an Event note, incremental reads with a cursor, and the
//! training progress InstructLab prints.

pub mod cursor;
pub mod progress;
mod tail;
pub mod text;

pub use tail::{MAX_NOTE_BYTES, TAIL_LIMIT_BYTES, TAIL_LINES, compose_note, next_tail_lines};
