//! The reconcile boundary's error type.

use thiserror::Error;

use crate::build::BuildError;

#[derive(Debug, Error)]
pub enum Error {
    /// A Kubernetes API call failed; `action` says which.
    #[error("{action}: {source}")]
    Kube {
        action: &'static str,
        #[source]
        source: kube::Error,
    },
    #[error("building a child: {0}")]
    Build(#[from] BuildError),
    #[error("the FineTuneJob has no namespace")]
    MissingNamespace,
}

impl Error {
    /// Label value for the reconcile-errors metric: the failed action, or the error kind.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube { action, .. } => action,
            Error::Build(_) => "build",
            Error::MissingNamespace => "missing_namespace",
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
