//! A tower layer on the kube client that counts every request by verb and resource, so that
//! "zero writes in steady state" can be checked from the operator's own metrics.

use std::task::{Context, Poll};

use http::{Method, Request, Uri};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use tower::{Layer, Service};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// get, list, watch, create, update, patch, delete, deletecollection (as the apiserver names them).
    pub verb: String,
    /// Resource and subresource, e.g. pods/log, finetunejobs/status.
    pub resource: String,
}

impl RequestLabels {
    pub fn is_write(&self) -> bool {
        !matches!(self.verb.as_str(), "get" | "list" | "watch")
    }
}

#[derive(Clone)]
pub struct CountRequests {
    pub family: Family<RequestLabels, Counter>,
}

impl<S> Layer<S> for CountRequests {
    type Service = Counted<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Counted {
            inner,
            family: self.family.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Counted<S> {
    inner: S,
    family: Family<RequestLabels, Counter>,
}

impl<S, B> Service<Request<B>> for Counted<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        self.family
            .get_or_create(&classify(req.method(), req.uri()))
            .inc();
        self.inner.call(req)
    }
}

/// The apiserver's verb and resource of a request path such as
/// `/apis/batch/v1/namespaces/ns/jobs/name` or `/api/v1/namespaces/ns/pods/name/log`.
pub fn classify(method: &Method, uri: &Uri) -> RequestLabels {
    let segments: Vec<&str> = uri.path().split('/').filter(|s| !s.is_empty()).collect();
    // Skip the group/version prefix: /api/v1 or /apis/<group>/<version>.
    let rest: &[&str] = match segments.first() {
        Some(&"api") => segments.get(2..).unwrap_or_default(),
        Some(&"apis") => segments.get(3..).unwrap_or_default(),
        _ => &[],
    };
    let rest = match rest {
        ["namespaces", _ns, tail @ ..] if !tail.is_empty() => tail,
        other => other,
    };
    let (resource, named) = match rest {
        [] => ("discovery".to_string(), false),
        [resource] => (resource.to_string(), false),
        [resource, _name] => (resource.to_string(), true),
        [resource, _name, sub, ..] => (format!("{resource}/{sub}"), true),
    };
    let watch = uri
        .query()
        .is_some_and(|q| q.split('&').any(|kv| kv == "watch=true" || kv == "watch=1"));
    let verb = match *method {
        Method::GET if watch => "watch",
        Method::GET if named => "get",
        Method::GET => "list",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE if named => "delete",
        Method::DELETE => "deletecollection",
        _ => "other",
    };
    RequestLabels {
        verb: verb.to_string(),
        resource,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(method: Method, uri: &str) -> (String, String) {
        let l = classify(&method, &uri.parse().unwrap());
        (l.verb, l.resource)
    }

    #[test]
    fn classifies_like_the_apiserver() {
        let s = |a: &str, b: &str| (a.to_string(), b.to_string());
        assert_eq!(
            c(Method::GET, "/api/v1/namespaces/ns/pods/p/log?tailLines=5"),
            s("get", "pods/log")
        );
        assert_eq!(
            c(Method::GET, "/api/v1/namespaces/ns/pods?labelSelector=a"),
            s("list", "pods")
        );
        assert_eq!(
            c(Method::GET, "/api/v1/pods?watch=true&labelSelector=a"),
            s("watch", "pods")
        );
        assert_eq!(
            c(
                Method::PATCH,
                "/apis/finetune.dev/v1alpha1/namespaces/ns/finetunejobs/j/status?fieldManager=x"
            ),
            s("patch", "finetunejobs/status")
        );
        assert_eq!(
            c(Method::POST, "/apis/events.k8s.io/v1/namespaces/ns/events"),
            s("create", "events")
        );
        assert_eq!(
            c(Method::DELETE, "/apis/batch/v1/namespaces/ns/jobs/j"),
            s("delete", "jobs")
        );
        assert_eq!(
            c(Method::GET, "/apis/kubeflow.org/v1"),
            s("list", "discovery")
        );
        assert_eq!(
            c(Method::GET, "/apis/finetune.dev/v1alpha1/finetunejobs"),
            s("list", "finetunejobs")
        );
        assert!(
            !classify(
                &Method::GET,
                &"/api/v1/namespaces/ns/pods/p".parse().unwrap()
            )
            .is_write()
        );
        assert!(
            classify(
                &Method::PATCH,
                &"/api/v1/namespaces/ns/pods/p".parse().unwrap()
            )
            .is_write()
        );
    }
}
