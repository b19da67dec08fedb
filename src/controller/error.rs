//! The reconcile boundary's error type.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    /// A Kubernetes API call failed; `action` says which.
    #[error("{action}: {source}")]
    Kube {
        action: &'static str,
        #[source]
        source: kube::Error,
    },
    #[error("the FineTuneJob has no namespace")]
    MissingNamespace,
    /// A child with the name this FineTuneJob's child gets exists and is not ours.
    #[error("{kind} {name} exists and is not controlled by this FineTuneJob")]
    ChildConflict { kind: &'static str, name: String },
    /// A create found the name taken by an object that is gone again or on its way out:
    /// retried, the name will be free.
    #[error("{kind} {name}: the name is taken by an object being deleted; retrying")]
    ChildRace { kind: &'static str, name: String },
    /// A bug: the reconcile panicked. Caught so that one job never stops the others; retried
    /// with backoff like any other error.
    #[error("reconcile panicked: {0}")]
    Panicked(String),
}

impl Error {
    /// Label value for the reconcile-errors metric: the failed action, or the error kind.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube { action, .. } => action,
            Error::MissingNamespace => "missing_namespace",
            Error::ChildConflict { .. } => "child_conflict",
            Error::ChildRace { .. } => "child_race",
            Error::Panicked(_) => "panicked",
        }
    }
}

/// Attaches the action being attempted to a kube error.
pub(crate) trait KubeContext<T> {
    fn during(self, action: &'static str) -> Result<T, Error>;
}

impl<T> KubeContext<T> for Result<T, kube::Error> {
    fn during(self, action: &'static str) -> Result<T, Error> {
        self.map_err(|source| Error::Kube { action, source })
    }
}

/// A 404, whatever its body. The apiserver answers a path of a kind it does not serve (such as
/// a PyTorchJob without the training operator) with a plain-text "404 page not found", which
/// kube cannot read as a NotFound Status.
pub(crate) fn is_not_found(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 404 || status.is_not_found())
}

/// A 409 AlreadyExists answer to a create.
pub(crate) fn is_already_exists(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 409 && status.reason == "AlreadyExists")
}

/// The text of a panic payload (`panic!` with a literal or a formatted message).
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_string())
}

/// A 409 Conflict (e.g. a failed UID precondition).
pub(crate) fn is_conflict(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 409)
}
