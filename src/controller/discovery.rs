//! Whether the cluster serves the PyTorchJob kind, and how long a "yes" is trusted.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a positive answer of discovery ("the PyTorchJob kind is served") is reused when a
/// PyTorchJob is not found: a burst of new jobs asks once, and a removed kind is noticed soon.
pub const KIND_CHECK_TTL: Duration = Duration::from_secs(10);

/// When discovery last said the PyTorchJob kind is served.
#[derive(Default)]
pub struct KindSeen(Mutex<Option<Instant>>);

impl KindSeen {
    pub fn recent(&self) -> bool {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .is_some_and(|t| t.elapsed() < KIND_CHECK_TTL)
    }

    pub fn set(&self, installed: bool) {
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = installed.then(Instant::now);
    }
}
