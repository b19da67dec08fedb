//! Pod logs: bounded tails that fit an Event note (without training samples or secrets),
//! incremental reads with a cursor, and the training progress InstructLab prints.

pub mod cursor;
pub mod last_lines;
pub mod progress;
pub mod redact;
mod tail;
pub mod text;

pub use tail::{
    MAX_NOTE_BYTES, TAIL_LIMIT_BYTES, TAIL_LINES, compose_note, next_tail_lines, plain_line,
};
