//! The scenarios, one module each, in the order of the report: throughput and API cost (with
//! the limit they are measured against), log following, then memory and restart at scale.

pub mod limit;
pub mod logs;
pub mod scale;
pub mod throughput;
