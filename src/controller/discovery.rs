//! Whether the cluster serves the PyTorchJob kind, and how long a "yes" is trusted: a missing
//! kind answers a GET with the same 404 as a missing object.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use kube::{Client, Resource};

use super::Context;
use super::error::{Error, is_not_found};
use crate::api::PyTorchJob;
use crate::status::Lookup;

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

/// What a 404 on our PyTorchJob means: the object is absent, or the kind is not served at all.
/// Discovery says which; a recent "served" answer is reused.
pub(super) async fn not_found(ctx: &Context) -> Result<Lookup<PyTorchJob>, Error> {
    if ctx.kind_seen.recent() {
        return Ok(Lookup::Absent);
    }
    let installed = pytorchjob_kind_installed(&ctx.client).await?;
    ctx.kind_seen.set(installed);
    Ok(if installed {
        Lookup::Absent
    } else {
        Lookup::KindMissing
    })
}

/// Whether the cluster serves `kubeflow.org/v1` `pytorchjobs`.
pub async fn pytorchjob_kind_installed(client: &Client) -> Result<bool, Error> {
    let api_version = PyTorchJob::api_version(&());
    match client.list_api_group_resources(&api_version).await {
        Ok(list) => Ok(list
            .resources
            .iter()
            .any(|r| r.name == PyTorchJob::plural(&()))),
        Err(e) if is_not_found(&e) => Ok(false),
        Err(source) => Err(Error::Kube {
            action: "discover_pytorchjob_kind",
            source,
        }),
    }
}
