//! Reconcile against a mocked apiserver: every request is asserted, in order, and answered as the
//! apiserver would. An unexpected extra request fails the reconcile (the mock is gone). The
//! cases are split by topic; this file holds the mock and what they share (the FineTuneJob and
//! pods come from `crate::testing`).

mod creation;
mod deletion;
mod logs;
mod training;

use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::Client;
use kube::client::Body;
use kube::runtime::controller::Action;
use kube::runtime::events::Reporter;
use serde_json::{Value, json};
use tower_test::mock::{self, Handle, SendResponse};

use super::{Context, reconcile};
use crate::api::FineTuneJob;
use crate::telemetry::Metrics;
use crate::testing::{JobFixture, PodFixture};

const NS_PATH: &str = "/apis/finetune.dev/v1alpha1/namespaces/ns/finetunejobs/ft";
const STATUS_PATH: &str = "/apis/finetune.dev/v1alpha1/namespaces/ns/finetunejobs/ft/status";
const PREPROCESS_PATH: &str = "/apis/batch/v1/namespaces/ns/jobs/ft-preprocess";
const PYTORCHJOB_PATH: &str = "/apis/kubeflow.org/v1/namespaces/ns/pytorchjobs/ft";
const PODS_PATH: &str = "/api/v1/namespaces/ns/pods";
const JOBS_PATH: &str = "/apis/batch/v1/namespaces/ns/jobs";
const PYTORCHJOBS_PATH: &str = "/apis/kubeflow.org/v1/namespaces/ns/pytorchjobs";
const EVENTS_PATH: &str = "/apis/events.k8s.io/v1/namespaces/ns/events";

struct ApiServer(Handle<Request<Body>, Response<Body>>);

impl ApiServer {
    /// Takes the next request, asserts its method and path, returns its query and JSON body.
    async fn expect(
        &mut self,
        method: Method,
        path: &str,
    ) -> (String, Value, SendResponse<Response<Body>>) {
        let (request, send) = tokio::time::timeout(Duration::from_secs(2), self.0.next_request())
            .await
            .unwrap_or_else(|_| panic!("no request; expected {method} {path}"))
            .unwrap_or_else(|| panic!("client gone; expected {method} {path}"));
        assert_eq!(
            (request.method(), request.uri().path()),
            (&method, path),
            "unexpected request {} {}",
            request.method(),
            request.uri()
        );
        let query = request.uri().query().unwrap_or("").to_string();
        let bytes = request.into_body().collect_bytes().await.unwrap();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        (query, body, send)
    }

    /// Expects a request and answers it with `status` and `answer`.
    async fn answer(
        &mut self,
        method: Method,
        path: &str,
        status: u16,
        answer: Value,
    ) -> (String, Value) {
        let (query, body, send) = self.expect(method, path).await;
        respond(send, status, &answer);
        (query, body)
    }

    /// Expects a request and answers it with `bytes` as they are (a log need not be UTF-8).
    async fn answer_bytes(&mut self, method: Method, path: &str, bytes: Vec<u8>) -> String {
        let (query, _, send) = self.expect(method, path).await;
        send.send_response(Response::builder().body(Body::from(bytes)).unwrap());
        query
    }

    /// Expects the status write and answers with `reply`.
    async fn status_write(&mut self, reply: Value) -> (String, Value) {
        self.answer(Method::PATCH, STATUS_PATH, 200, reply).await
    }

    /// Expects a request and answers with its own body, as the apiserver does for an apply.
    async fn echo(&mut self, method: Method, path: &str) -> (String, Value) {
        let (query, body, send) = self.expect(method, path).await;
        respond(send, 200, &body);
        (query, body)
    }

    /// Expects a status apply and answers with `object` holding the applied status and
    /// `version`, as the apiserver does.
    async fn echo_status(&mut self, object: &Value, version: &str) -> (String, Value) {
        let (query, body, send) = self.expect(Method::PATCH, STATUS_PATH).await;
        let mut answer = object.clone();
        answer["status"] = body["status"].clone();
        answer["metadata"]["resourceVersion"] = json!(version);
        respond(send, 200, &answer);
        (query, body)
    }

    /// A PyTorchJob not created yet: its 404, discovery, the pods, then its create, answered
    /// with itself. Returns what was created.
    async fn creates_the_pytorchjob(&mut self) -> Value {
        self.not_found(Method::GET, PYTORCHJOB_PATH).await;
        self.answer(Method::GET, "/apis/kubeflow.org/v1", 200, discovery())
            .await;
        self.answer(Method::GET, PODS_PATH, 200, pod_list(vec![]))
            .await;
        let (_, ptj) = self.echo(Method::POST, PYTORCHJOBS_PATH).await;
        assert_eq!(ptj["kind"], "PyTorchJob");
        ptj
    }

    /// A training job's reconcile reads its PyTorchJob, then its pods.
    async fn training(&mut self, ptj: Value, pods: Value) {
        self.answer(Method::GET, PYTORCHJOB_PATH, 200, ptj).await;
        self.answer(Method::GET, PODS_PATH, 200, pods).await;
    }

    /// Asserts that no further request arrives (the client may also be gone, which is fine).
    async fn no_more(&mut self) {
        let next = tokio::time::timeout(Duration::from_millis(300), self.0.next_request()).await;
        if let Ok(Some((request, _))) = next {
            panic!("unexpected request {} {}", request.method(), request.uri());
        }
    }

    async fn not_found(&mut self, method: Method, path: &str) {
        self.answer(method, path, 404, not_found()).await;
    }

    /// An event: POST answered with the event itself.
    async fn event(&mut self) -> Value {
        let (_, body, send) = self.expect(Method::POST, EVENTS_PATH).await;
        respond(send, 201, &body);
        body
    }
}

fn respond(send: SendResponse<Response<Body>>, status: u16, answer: &Value) {
    let text = match answer {
        Value::String(s) => s.clone().into_bytes(),
        other => serde_json::to_vec(other).unwrap(),
    };
    send.send_response(
        Response::builder()
            .status(StatusCode::from_u16(status).unwrap())
            .body(Body::from(text))
            .unwrap(),
    );
}

fn not_found() -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "not found"})
}

/// The controller reference of a child of the FineTuneJob [`ft`] builds.
fn ours() -> Value {
    json!({"apiVersion": "finetune.dev/v1alpha1", "kind": "FineTuneJob", "name": "ft",
           "uid": "uid-1", "controller": true, "blockOwnerDeletion": true})
}

fn discovery() -> Value {
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "kubeflow.org/v1",
           "resources": [{"name": "pytorchjobs", "singularName": "pytorchjob", "namespaced": true,
                          "kind": "PyTorchJob", "verbs": ["get", "list", "watch", "create", "patch", "delete"]}]})
}

fn pod_list(items: Vec<Value>) -> Value {
    json!({"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": "1"}, "items": items})
}

fn setup() -> (Arc<Context>, ApiServer) {
    setup_with(|ctx| ctx)
}

fn setup_with(configure: impl FnOnce(Context) -> Context) -> (Arc<Context>, ApiServer) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let reporter = Reporter {
        controller: "finetune-operator".into(),
        instance: Some("test".into()),
    };
    let ctx = Arc::new(configure(Context::new(
        client,
        reporter,
        Arc::new(Metrics::default()),
        Duration::from_secs(10),
    )));
    (ctx, ApiServer(handle))
}

/// A clock that always says `at`.
fn fixed_clock(at: &'static str) -> crate::controller::Clock {
    Arc::new(move || Time(at.parse().unwrap()))
}

/// The FineTuneJob `ft` as the apiserver stores it (namespace `ns`, uid `uid-1`, generation 1,
/// resourceVersion 10), with our finalizer.
fn ft() -> JobFixture {
    JobFixture::new("ft").stored().finalized()
}

async fn run(ctx: Arc<Context>, obj: &Value) -> Result<Action, super::Error> {
    let job: FineTuneJob = serde_json::from_value(obj.clone()).unwrap();
    reconcile(Arc::new(job), ctx).await
}

fn training_status() -> Value {
    json!({
        "phase": "Training", "pytorchJob": "ft", "startTime": "2026-11-26T10:00:00Z",
        "trainingStartTime": "2026-11-26T10:00:00Z", "observedGeneration": 1,
        "reason": "Training", "message": "PyTorchJob ft trains on 1 node(s) with 1 GPU(s) each",
        "conditions": [
            {"type": "Initialized", "status": "True", "reason": "NoPreprocessing",
             "message": "spec.preprocess is not set; dataset.path is used as processed data",
             "lastTransitionTime": "2026-11-26T10:00:00Z", "observedGeneration": 1},
            {"type": "Accepted", "status": "True", "reason": "Accepted", "message": "The spec was accepted",
             "lastTransitionTime": "2026-11-26T10:00:00Z", "observedGeneration": 1}],
    })
}

fn pytorchjob(condition: &str) -> Value {
    json!({"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob",
           "metadata": {"name": "ft", "namespace": "ns", "uid": "ptj-1", "ownerReferences": [ours()]},
           "spec": {"pytorchReplicaSpecs": {}},
           "status": {"conditions": [{"type": condition, "status": "True",
                                      "message": format!("PyTorchJob ft is {condition}.")}]}})
}

/// A PyTorchJob of our name that another FineTuneJob (an older `ft`) controls.
fn foreign_pytorchjob() -> Value {
    json!({"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob",
           "metadata": {"name": "ft", "namespace": "ns", "uid": "theirs",
                        "ownerReferences": [{"apiVersion": "finetune.dev/v1alpha1", "kind": "FineTuneJob",
                                             "name": "ft", "uid": "an-older-ft", "controller": true}]},
           "spec": {"pytorchReplicaSpecs": {}},
           "status": {"conditions": [{"type": "Succeeded", "status": "True"}]}})
}

const MASTER_LOG_PATH: &str = "/api/v1/namespaces/ns/pods/ft-master-0/log";

/// The rank-0 pod, controlled by the PyTorchJob `ptj-1`: running, or terminated with
/// `exit_code`.
fn master_pod(exit_code: Option<i32>) -> Value {
    let pod =
        PodFixture::new("ft-master-0")
            .uid("pod-uid")
            .controlled_by("PyTorchJob", "ft", "ptj-1");
    match exit_code {
        Some(code) => pod.terminated(code, if code == 0 { "Completed" } else { "Error" }),
        None => pod,
    }
    .json()
}
