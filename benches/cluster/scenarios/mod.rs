//! The scenarios, one module each, in the order they run: single applies on an idle cluster,
//! the start path beside the limit (with the limit itself), the whole lifecycle, log following,
//! then memory and restart at scale.

pub mod lifecycle;
pub mod limit;
pub mod logs;
pub mod scale;
pub mod single;
pub mod throughput;
