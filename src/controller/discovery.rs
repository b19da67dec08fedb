//! Whether the cluster serves a training kind (the PyTorchJob, the TrainJob), and how long a
//! "yes" is trusted: a missing kind answers a GET with the same 404 as a missing object.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use kube::{Client, Resource};

use super::Context;
use super::error::{Error, is_not_found};
use crate::api::{Backend, PyTorchJob, TrainJob};
use crate::status::Lookup;

/// How long a positive answer of discovery ("the kind is served") is reused when a child is
/// not found: a burst of new jobs asks once, and a removed kind is noticed soon.
pub const KIND_CHECK_TTL: Duration = Duration::from_secs(10);

/// When discovery last said a kind is served.
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

/// [`KindSeen`] of each backend's kind.
#[derive(Default)]
pub struct KindsSeen {
    pytorch_job: KindSeen,
    train_job: KindSeen,
}

impl KindsSeen {
    pub fn of(&self, backend: Backend) -> &KindSeen {
        match backend {
            Backend::PyTorchJob => &self.pytorch_job,
            Backend::TrainJob => &self.train_job,
        }
    }
}

/// What a 404 on our training child means: the object is absent, or the kind is not served at
/// all. Discovery says which; a recent "served" answer is reused.
pub(super) async fn not_found<T>(ctx: &Context, backend: Backend) -> Result<Lookup<T>, Error> {
    let seen = ctx.kinds_seen.of(backend);
    if seen.recent() {
        return Ok(Lookup::Absent);
    }
    let installed = kind_installed(&ctx.client, backend).await?;
    seen.set(installed);
    Ok(if installed {
        Lookup::Absent
    } else {
        Lookup::KindMissing
    })
}

/// Whether the cluster serves `backend`'s kind: `kubeflow.org/v1` `pytorchjobs` or
/// `trainer.kubeflow.org/v1alpha1` `trainjobs`.
pub async fn kind_installed(client: &Client, backend: Backend) -> Result<bool, Error> {
    match backend {
        Backend::PyTorchJob => served::<PyTorchJob>(client).await,
        Backend::TrainJob => served::<TrainJob>(client).await,
    }
}

async fn served<K: Resource<DynamicType = ()>>(client: &Client) -> Result<bool, Error> {
    let api_version = K::api_version(&());
    match client.list_api_group_resources(&api_version).await {
        Ok(list) => Ok(list.resources.iter().any(|r| r.name == K::plural(&()))),
        Err(e) if is_not_found(&e) => Ok(false),
        Err(source) => Err(Error::Kube {
            action: "discover_training_kind",
            source,
        }),
    }
}
