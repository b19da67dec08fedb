//! Reconcile against a mocked apiserver: every request is asserted, in order, and answered as the
//! apiserver would. An unexpected extra request fails the reconcile (the mock is gone).

use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use kube::Client;
use kube::client::Body;
use kube::runtime::controller::Action;
use kube::runtime::events::Reporter;
use serde_json::{Value, json};
use tower_test::mock::{self, Handle, SendResponse};

use super::{Context, reconcile};
use crate::api::FineTuneJob;
use crate::telemetry::Metrics;

const NS_PATH: &str = "/apis/finetune.dev/v1alpha1/namespaces/ns/finetunejobs/ft";
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

    /// Expects a request and answers with its own body, as the apiserver does for an apply.
    async fn echo(&mut self, method: Method, path: &str) -> (String, Value) {
        let (query, body, send) = self.expect(method, path).await;
        respond(send, 200, &body);
        (query, body)
    }

    /// Expects a status apply and answers with `object` holding the applied status and
    /// `version`, as the apiserver does.
    async fn echo_status(&mut self, path: &str, object: &Value, version: &str) -> (String, Value) {
        let (query, body, send) = self.expect(Method::PATCH, path).await;
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

/// The controller reference of a child of the FineTuneJob `ftj()` builds.
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

fn ftj(spec_extra: Value, status: Value, metadata_extra: Value) -> Value {
    let mut spec = json!({
        "image": "img",
        "model": {"claimName": "m", "path": ""},
        "dataset": {"claimName": "d", "path": "train.jsonl"},
        "output": {"claimName": "o"},
        "training": {"epochs": 1},
    });
    for (k, v) in spec_extra.as_object().unwrap() {
        spec[k] = v.clone();
    }
    let mut metadata = json!({"name": "ft", "namespace": "ns", "uid": "uid-1", "generation": 1,
                              "resourceVersion": "10", "finalizers": ["finetune.dev/cleanup"]});
    for (k, v) in metadata_extra.as_object().unwrap() {
        metadata[k] = v.clone();
    }
    let mut obj = json!({"apiVersion": "finetune.dev/v1alpha1", "kind": "FineTuneJob",
                         "metadata": metadata, "spec": spec});
    if !status.is_null() {
        obj["status"] = status;
    }
    obj
}

async fn run(ctx: Arc<Context>, obj: &Value) -> Result<Action, super::Error> {
    let job: FineTuneJob = serde_json::from_value(obj.clone()).unwrap();
    reconcile(Arc::new(job), ctx).await
}

#[tokio::test]
async fn first_reconcile_adds_the_finalizer_writes_pending_and_goes_on() {
    let (ctx, mut api) = setup();
    let obj = ftj(json!({}), Value::Null, json!({"finalizers": null}));
    let with_finalizer = ftj(json!({}), Value::Null, json!({"resourceVersion": "11"}));
    let server = tokio::spawn(async move {
        let (_, patch) = api
            .answer(Method::PATCH, NS_PATH, 200, with_finalizer.clone())
            .await;
        assert_eq!(
            patch,
            json!([
                {"op": "test", "path": "/metadata/finalizers", "value": null},
                {"op": "add", "path": "/metadata/finalizers", "value": ["finetune.dev/cleanup"]},
            ])
        );
        // With it, the first status: Pending, so `kubectl get` shows it before anything starts.
        let (_, status) = api
            .echo_status(&format!("{NS_PATH}/status"), &with_finalizer, "12")
            .await;
        assert_eq!(status["status"]["phase"], "Pending");
        assert_eq!(status["status"]["conditions"][0]["type"], "Accepted");
        assert!(status["status"]["startTime"].is_string());
        // Then on, in the same reconcile, with the object the writes returned.
        api.creates_the_pytorchjob().await;
        let (_, status) = api
            .echo_status(&format!("{NS_PATH}/status"), &with_finalizer, "13")
            .await;
        assert_eq!(status["status"]["phase"], "Training");
        assert_eq!(api.event().await["reason"], "TrainingStarted");
        api.no_more().await;
    });
    let action = run(ctx, &obj).await.unwrap();
    assert_eq!(action, Action::await_change());
    server.await.unwrap();
}

#[tokio::test]
async fn a_cache_older_than_our_last_write_is_not_decided_on() {
    let (ctx, mut api) = setup();
    let written = ftj(
        json!({}),
        training_status(),
        json!({"resourceVersion": "11"}),
    );
    ctx.written
        .record(&serde_json::from_value(written.clone()).unwrap());
    // The cache still holds version 10: the object is read.
    let cached = ftj(json!({}), training_status(), json!({}));
    let server = tokio::spawn(async move {
        api.answer(Method::GET, NS_PATH, 200, written).await;
        api.training(pytorchjob("Running"), pod_list(vec![])).await;
        api.no_more().await;
    });
    run(ctx.clone(), &cached).await.unwrap();
    server.await.unwrap();

    // Once the cache holds version 11, it is decided on without reading the object.
    let cached = ftj(
        json!({}),
        training_status(),
        json!({"resourceVersion": "11"}),
    );
    assert_eq!(
        ctx.written.check(&serde_json::from_value(cached).unwrap()),
        super::cache::Freshness::Current
    );
}

#[tokio::test]
async fn a_new_job_with_preprocess_gets_its_preprocess_job() {
    let (ctx, mut api) = setup();
    let obj = ftj(
        json!({"preprocess": {"maxSeqLen": 4096}}),
        Value::Null,
        json!({}),
    );
    let reply = obj.clone();
    let server = tokio::spawn(async move {
        api.not_found(Method::GET, PREPROCESS_PATH).await;
        api.not_found(Method::GET, PYTORCHJOB_PATH).await;
        api.answer(Method::GET, "/apis/kubeflow.org/v1", 200, discovery())
            .await;
        let (query, _) = api
            .answer(Method::GET, PODS_PATH, 200, pod_list(vec![]))
            .await;
        assert!(
            query.contains("labelSelector=finetune.dev%2Fjob-name%3Dft"),
            "{query}"
        );

        // A plain create, never an apply that could take over an object of the same name.
        let (query, job) = api.echo(Method::POST, JOBS_PATH).await;
        assert!(query.contains("fieldManager=finetune-operator"), "{query}");
        assert_eq!(job["kind"], "Job");
        assert_eq!(job["metadata"]["ownerReferences"][0]["uid"], "uid-1");
        assert_eq!(job["metadata"]["ownerReferences"][0]["controller"], true);
        assert_eq!(
            job["metadata"]["ownerReferences"][0]["blockOwnerDeletion"],
            true
        );
        assert_eq!(
            job["spec"]["template"]["spec"]["containers"][0]["command"],
            json!(["python", "-m", "instructlab.training.data_process"])
        );

        let (query, status) = api
            .answer(
                Method::PATCH,
                &format!("{NS_PATH}/status"),
                200,
                reply.clone(),
            )
            .await;
        assert!(query.contains("fieldManager=finetune-operator"), "{query}");
        assert_eq!(status["status"]["phase"], "Initializing");
        assert_eq!(status["status"]["preprocessJob"], "ft-preprocess");

        let event = api.event().await;
        assert_eq!(event["reason"], "PreprocessStarted");
        assert_eq!(event["type"], "Normal");
        assert_eq!(event["regarding"]["name"], "ft");
    });
    let action = run(ctx, &obj).await.unwrap();
    assert_eq!(action, Action::await_change());
    server.await.unwrap();
}

#[tokio::test]
async fn finished_preprocessing_creates_the_pytorchjob() {
    let (ctx, mut api) = setup();
    let status = json!({
        "phase": "Initializing", "preprocessJob": "ft-preprocess", "startTime": "2026-11-26T10:00:00Z",
        "observedGeneration": 1,
        "conditions": [
            {"type": "Initialized", "status": "False", "reason": "Preprocessing", "message": "m",
             "lastTransitionTime": "2026-11-26T10:00:00Z"},
            {"type": "Accepted", "status": "True", "reason": "Accepted", "message": "The spec was accepted",
             "lastTransitionTime": "2026-11-26T10:00:00Z"}],
    });
    let obj = ftj(
        json!({"preprocess": {}, "resources": {"nodes": 2, "gpusPerNode": 4}}),
        status,
        json!({}),
    );
    let reply = obj.clone();
    let server = tokio::spawn(async move {
        let done = json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "ft-preprocess", "namespace": "ns", "uid": "pre-1", "ownerReferences": [ours()]},
                          "spec": {"template": {}}, "status": {"conditions": [{"type": "Complete", "status": "True"}]}});
        api.answer(Method::GET, PREPROCESS_PATH, 200, done).await;
        let ptj = api.creates_the_pytorchjob().await;
        assert_eq!(ptj["spec"]["pytorchReplicaSpecs"]["Worker"]["replicas"], 1);
        assert_eq!(ptj["spec"]["nprocPerNode"], "4");

        let (_, status) = api
            .answer(
                Method::PATCH,
                &format!("{NS_PATH}/status"),
                200,
                reply.clone(),
            )
            .await;
        assert_eq!(status["status"]["phase"], "Training");
        assert_eq!(status["status"]["pytorchJob"], "ft");
        assert!(status["status"]["trainingStartTime"].is_string());

        assert_eq!(api.event().await["reason"], "PreprocessSucceeded");
        assert_eq!(api.event().await["reason"], "TrainingStarted");
    });
    run(ctx, &obj).await.unwrap();
    server.await.unwrap();
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

#[tokio::test]
async fn a_steady_training_job_writes_nothing() {
    let (ctx, mut api) = setup();
    let obj = ftj(json!({}), training_status(), json!({}));
    let server = tokio::spawn(async move {
        api.training(pytorchjob("Running"), pod_list(vec![])).await;
        // No status patch, no event: the mock would see them and the join below would fail.
        // (No log read either: the master pod has not started.)
        api.no_more().await;
    });
    assert_eq!(
        run(ctx, &obj).await.unwrap(),
        Action::requeue(Duration::from_secs(10))
    );
    server.await.unwrap();
}

#[tokio::test]
async fn failed_training_publishes_a_warning_with_the_log_tail() {
    let (ctx, mut api) = setup();
    let obj = ftj(json!({}), training_status(), json!({}));
    let reply = obj.clone();
    let server = tokio::spawn(async move {
        api.answer(Method::GET, PYTORCHJOB_PATH, 200, pytorchjob("Failed"))
            .await;
        let master = json!({"metadata": {"name": "ft-master-0", "namespace": "ns", "creationTimestamp": "2026-11-26T10:00:00Z",
                                         "ownerReferences": [{"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob",
                                                              "name": "ft", "uid": "ptj-1", "controller": true}]},
            "status": {"containerStatuses": [{"name": "pytorch", "ready": false, "restartCount": 0, "image": "img", "imageID": "",
                "state": {"terminated": {"exitCode": 1, "reason": "Error"}}}]}});
        api.answer(Method::GET, PODS_PATH, 200, pod_list(vec![master]))
            .await;

        // The failing container's last lines are read once: they explain the failure (the
        // condition's reason) and end the event's note.
        let (query, _) = api
            .answer(Method::GET, "/api/v1/namespaces/ns/pods/ft-master-0/log", 200,
                    Value::String("step 9 loss 0.5\nTraceback (most recent call last):\ntorch.OutOfMemoryError: CUDA out of memory.\n".into()))
            .await;
        for part in ["container=pytorch", "tailLines=40", "limitBytes=65536"] {
            assert!(query.contains(part), "{query}");
        }
        let (_, status) = api
            .answer(
                Method::PATCH,
                &format!("{NS_PATH}/status"),
                200,
                reply.clone(),
            )
            .await;
        assert_eq!(status["status"]["phase"], "Failed");
        assert_eq!(status["status"]["reason"], "TrainingFailed");
        let failed = status["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Failed")
            .unwrap();
        assert_eq!(failed["reason"], "CUDAOutOfMemory");
        assert!(
            status["status"]["message"]
                .as_str()
                .unwrap()
                .starts_with("the GPU ran out of memory")
        );

        let event = api.event().await;
        assert_eq!(event["reason"], "TrainingFailed");
        assert_eq!(event["type"], "Warning");
        let note = event["note"].as_str().unwrap();
        assert!(note.contains("exited with code 1 (Error)"), "{note}");
        assert!(
            note.ends_with("torch.OutOfMemoryError: CUDA out of memory."),
            "{note}"
        );
        assert!(note.len() <= 1024);
    });
    run(ctx, &obj).await.unwrap();
    server.await.unwrap();
}

#[tokio::test]
async fn deletion_removes_the_children_then_the_finalizer() {
    let (ctx, mut api) = setup();
    let deleting = json!({"deletionTimestamp": "2026-11-26T11:00:00Z"});
    let obj = ftj(json!({}), training_status(), deleting.clone());
    let server = tokio::spawn(async move {
        api.not_found(Method::GET, PREPROCESS_PATH).await;
        api.answer(Method::GET, PYTORCHJOB_PATH, 200, pytorchjob("Running"))
            .await;
        api.answer(
            Method::GET,
            "/api/v1/namespaces/ns/pods/ft-master-0/log",
            200,
            Value::String("epoch 1\n".into()),
        )
        .await;
        let event = api.event().await;
        assert_eq!(event["reason"], "Cancelled");
        assert!(event["note"].as_str().unwrap().ends_with("epoch 1"));
        // Only what exists and is ours is deleted, and exactly that object (its UID).
        let (_, body) = api
            .answer(Method::DELETE, PYTORCHJOB_PATH, 200, pytorchjob("Running"))
            .await;
        assert_eq!(body["propagationPolicy"], "Foreground");
        assert_eq!(body["preconditions"]["uid"], "ptj-1");
    });
    // Children still exist: wait for them.
    assert_eq!(
        run(ctx.clone(), &obj).await.unwrap(),
        Action::requeue(Duration::from_secs(5))
    );
    server.await.unwrap();

    // Next time they are gone: the finalizer goes, and no second Cancelled event is published.
    let (ctx, mut api) = setup();
    let current = obj.clone();
    let server = tokio::spawn(async move {
        api.not_found(Method::GET, PREPROCESS_PATH).await;
        api.not_found(Method::GET, PYTORCHJOB_PATH).await;
        api.answer(Method::GET, "/apis/kubeflow.org/v1", 200, discovery())
            .await;
        let (_, patch) = api.answer(Method::PATCH, NS_PATH, 200, current).await;
        assert_eq!(
            patch,
            json!([
                {"op": "test", "path": "/metadata/finalizers/0", "value": "finetune.dev/cleanup"},
                {"op": "remove", "path": "/metadata/finalizers/0"},
            ])
        );
    });
    assert_eq!(run(ctx, &obj).await.unwrap(), Action::await_change());
    server.await.unwrap();
}

#[tokio::test]
async fn deletion_is_not_blocked_when_the_pytorchjob_kind_is_missing() {
    let (ctx, mut api) = setup();
    let obj = ftj(
        json!({}),
        Value::Null,
        json!({"deletionTimestamp": "2026-11-26T11:00:00Z"}),
    );
    let current = obj.clone();
    let server = tokio::spawn(async move {
        api.not_found(Method::GET, PREPROCESS_PATH).await;
        // The apiserver answers paths of a kind it does not serve in plain text.
        let plain = Value::String("404 page not found\n".into());
        api.answer(Method::GET, PYTORCHJOB_PATH, 404, plain.clone())
            .await;
        api.answer(Method::GET, "/apis/kubeflow.org/v1", 404, plain)
            .await;
        assert_eq!(api.event().await["reason"], "Cancelled");
        api.answer(Method::PATCH, NS_PATH, 200, current).await;
    });
    assert_eq!(run(ctx, &obj).await.unwrap(), Action::await_change());
    server.await.unwrap();
}

#[tokio::test]
async fn a_settled_finished_job_costs_no_request() {
    let (ctx, mut api) = setup();
    let mut status = training_status();
    status["phase"] = json!("Succeeded");
    let obj = ftj(json!({}), status, json!({}));
    let server = tokio::spawn(async move {
        api.no_more().await;
    });
    assert_eq!(run(ctx, &obj).await.unwrap(), Action::await_change());
    server.await.unwrap();
}

// ---- hardening ----------------------------------------------------------------------------

#[tokio::test]
async fn a_panic_in_a_reconcile_is_an_error_for_that_object_only() {
    let result = super::catch_panics(async {
        let text = "█".repeat(3);
        // A byte offset inside a character: the kind of bug the log tails once had.
        let _ = &text[..1];
        Ok(Action::await_change())
    })
    .await;
    match result {
        Err(super::Error::Panicked(message)) => {
            assert!(message.contains("char boundary"), "{message}")
        }
        other => panic!("expected a caught panic, got {other:?}"),
    }
    // It is retried with backoff like any error.
    let (ctx, _api) = setup();
    let job: FineTuneJob = serde_json::from_value(ftj(json!({}), Value::Null, json!({}))).unwrap();
    let action = super::error_policy(Arc::new(job), &super::Error::Panicked("boom".into()), ctx);
    assert_eq!(action, Action::requeue(Duration::from_secs(5)));
}

fn foreign_pytorchjob() -> Value {
    json!({"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob",
           "metadata": {"name": "ft", "namespace": "ns", "uid": "theirs",
                        "ownerReferences": [{"apiVersion": "finetune.dev/v1alpha1", "kind": "FineTuneJob",
                                             "name": "ft", "uid": "an-older-ft", "controller": true}]},
           "spec": {"pytorchReplicaSpecs": {}},
           "status": {"conditions": [{"type": "Succeeded", "status": "True"}]}})
}

#[tokio::test]
async fn a_pytorchjob_of_our_name_that_is_not_ours_is_never_read_changed_or_deleted() {
    // Its Succeeded condition must not become ours; the job fails with ChildConflict.
    let (ctx, mut api) = setup();
    let obj = ftj(json!({}), training_status(), json!({}));
    let reply = obj.clone();
    let server =
        tokio::spawn(async move {
            api.answer(Method::GET, PYTORCHJOB_PATH, 200, foreign_pytorchjob())
                .await;
            api.answer(Method::GET, PODS_PATH, 200, pod_list(vec![]))
                .await;
            let (_, status) = api
                .answer(Method::PATCH, &format!("{NS_PATH}/status"), 200, reply)
                .await;
            assert_eq!(status["status"]["phase"], "Failed");
            assert_eq!(status["status"]["reason"], "ChildConflict");
            let event = api.event().await;
            assert_eq!(event["type"], "Warning");
            assert!(event["note"].as_str().unwrap().contains(
                "a PyTorchJob named ft already exists and is not owned by this FineTuneJob"
            ));
            // No PATCH, no DELETE of the other object.
            api.no_more().await;
        });
    run(ctx, &obj).await.unwrap();
    server.await.unwrap();

    // Deleting the FineTuneJob deletes nothing that is not ours.
    let (ctx, mut api) = setup();
    let obj = ftj(
        json!({}),
        training_status(),
        json!({"deletionTimestamp": "2026-11-26T11:00:00Z"}),
    );
    let current = obj.clone();
    let server = tokio::spawn(async move {
        api.not_found(Method::GET, PREPROCESS_PATH).await;
        api.answer(Method::GET, PYTORCHJOB_PATH, 200, foreign_pytorchjob())
            .await;
        let (_, patch) = api.answer(Method::PATCH, NS_PATH, 200, current).await;
        assert_eq!(patch[1]["op"], "remove");
        api.no_more().await;
    });
    assert_eq!(run(ctx, &obj).await.unwrap(), Action::await_change());
    server.await.unwrap();
}

#[tokio::test]
async fn a_create_that_finds_the_name_taken_by_another_object_fails_the_job() {
    let (ctx, mut api) = setup();
    let mut status = training_status();
    status["phase"] = json!("Pending");
    status.as_object_mut().unwrap().remove("pytorchJob");
    status.as_object_mut().unwrap().remove("trainingStartTime");
    let obj = ftj(json!({}), status, json!({}));
    let reply = obj.clone();
    let server = tokio::spawn(async move {
        // Not there when looked up (no label: no cache would have it either)...
        api.not_found(Method::GET, PYTORCHJOB_PATH).await;
        api.answer(Method::GET, "/apis/kubeflow.org/v1", 200, discovery())
            .await;
        api.answer(Method::GET, PODS_PATH, 200, pod_list(vec![]))
            .await;
        // ... but there when created.
        let exists = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                            "reason": "AlreadyExists", "code": 409, "message": "pytorchjobs.kubeflow.org \"ft\" already exists"});
        api.answer(Method::POST, PYTORCHJOBS_PATH, 409, exists)
            .await;
        api.answer(Method::GET, PYTORCHJOB_PATH, 200, foreign_pytorchjob())
            .await;
        let (_, status) = api
            .answer(Method::PATCH, &format!("{NS_PATH}/status"), 200, reply)
            .await;
        assert_eq!(status["status"]["reason"], "ChildConflict");
        assert!(status["status"].get("pytorchJob").is_none(), "{status}");
        assert_eq!(api.event().await["reason"], "TrainingFailed");
        api.no_more().await;
    });
    run(ctx, &obj).await.unwrap();
    server.await.unwrap();
}

#[tokio::test]
async fn a_forbidden_create_is_reported_in_status_and_retried() {
    let (ctx, mut api) = setup();
    let pending = json!({
        "phase": "Pending", "startTime": "2026-11-26T10:00:00Z", "observedGeneration": 1,
        "reason": "Accepted", "message": "Accepted; starting",
        "conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted",
                        "message": "The spec was accepted", "lastTransitionTime": "2026-11-26T10:00:00Z"}]});
    let obj = ftj(json!({"preprocess": {}}), pending, json!({}));
    let reply = obj.clone();
    let server = tokio::spawn(async move {
        api.not_found(Method::GET, PREPROCESS_PATH).await;
        api.not_found(Method::GET, PYTORCHJOB_PATH).await;
        api.answer(Method::GET, "/apis/kubeflow.org/v1", 200, discovery())
            .await;
        api.answer(Method::GET, PODS_PATH, 200, pod_list(vec![]))
            .await;
        let forbidden = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                               "reason": "Forbidden", "code": 403,
                               "message": "jobs.batch \"ft-preprocess\" is forbidden: exceeded quota: q, requested: count/jobs.batch=1, used: count/jobs.batch=0, limited: count/jobs.batch=0"});
        api.answer(Method::POST, JOBS_PATH, 403, forbidden).await;
        let (_, status) = api
            .answer(Method::PATCH, &format!("{NS_PATH}/status"), 200, reply)
            .await;
        assert_eq!(status["status"]["reason"], "CreateForbidden");
        assert!(
            status["status"]["message"]
                .as_str()
                .unwrap()
                .contains("exceeded quota")
        );
        assert!(status["status"].get("preprocessJob").is_none(), "{status}");
        assert_eq!(api.event().await["reason"], "PreprocessStalled");
    });
    let result = run(ctx, &obj).await;
    assert!(
        matches!(result, Err(super::Error::Kube { .. })),
        "{result:?}"
    );
    server.await.unwrap();
}

const MASTER_LOG_PATH: &str = "/api/v1/namespaces/ns/pods/ft-master-0/log";

/// The rank-0 pod, started (running, or terminated with `exit_code`).
fn master_pod(exit_code: Option<i32>) -> Value {
    let state = match exit_code {
        Some(code) => {
            json!({"terminated": {"exitCode": code, "reason": if code == 0 { "Completed" } else { "Error" }}})
        }
        None => json!({"running": {}}),
    };
    json!({"metadata": {"name": "ft-master-0", "namespace": "ns", "uid": "pod-uid",
                        "creationTimestamp": "2026-11-26T10:00:00Z",
                        "ownerReferences": [{"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob",
                                             "name": "ft", "uid": "ptj-1", "controller": true}]},
           "status": {"containerStatuses": [{"name": "pytorch", "ready": true, "restartCount": 0,
                                             "image": "img", "imageID": "", "state": state}]}})
}

#[tokio::test]
async fn the_reconcile_that_sees_training_end_reads_the_rest_of_the_log() {
    let (ctx, mut api) = setup();
    let obj = ftj(json!({}), training_status(), json!({}));
    let reply = obj.clone();
    let server = tokio::spawn(async move {
        // Training runs: the log is read (nothing yet), the next read is due in 10 s.
        api.training(pytorchjob("Running"), pod_list(vec![master_pod(None)]))
            .await;
        let query = api.answer_bytes(Method::GET, MASTER_LOG_PATH, vec![]).await;
        assert!(query.contains("timestamps=true"), "{query}");

        // At once the PyTorchJob has succeeded: the log is read regardless of the interval,
        // and read on while a read stops at the limit.
        api.training(pytorchjob("Succeeded"), pod_list(vec![master_pod(Some(0))]))
            .await;
        let filler = "2026-11-26T10:04:00.000000001Z \rtqdm bar █ █ █\n".repeat(10_000);
        let full = filler.as_bytes()[..256 * 1024].to_vec();
        let query = api.answer_bytes(Method::GET, MASTER_LOG_PATH, full).await;
        assert!(
            query.contains("limitBytes=262144") && !query.contains("sinceTime"),
            "{query}"
        );
        // The rest, with bytes that are not UTF-8, ending without a newline.
        let rest = [
            &b"2026-11-26T10:05:00.000000001Z \xff\xfe not text\n"[..],
            b"2026-11-26T10:05:00.000000002Z \x1b[93mSaving model in huggingface format at: samples_96\x1b[0m\n",
            // The last line has no newline: the process ended without one.
            b"2026-11-26T10:05:00.000000003Z \x1b[93mModel saved in /output/ft/hf_format/samples_96\x1b[0m",
        ]
        .concat();
        let query = api.answer_bytes(Method::GET, MASTER_LOG_PATH, rest).await;
        assert!(
            query.contains("sinceTime=2026-11-26T10%3A04%3A00Z"),
            "{query}"
        );

        let (_, status) = api
            .answer(
                Method::PATCH,
                &format!("{NS_PATH}/status"),
                200,
                reply.clone(),
            )
            .await;
        assert_eq!(status["status"]["phase"], "Succeeded");
        assert_eq!(
            status["status"]["checkpoints"][0]["path"],
            "/output/ft/hf_format/samples_96"
        );
        assert_eq!(
            status["status"]["logCursor"]["time"],
            "2026-11-26T10:05:00.000000003Z"
        );
        assert_eq!(api.event().await["reason"], "CheckpointSaved");
        assert_eq!(api.event().await["reason"], "TrainingSucceeded");
        api.no_more().await;
    });
    run(ctx.clone(), &obj).await.unwrap();
    run(ctx, &obj).await.unwrap();
    server.await.unwrap();
}

#[tokio::test]
async fn a_failure_tail_that_fills_the_limit_is_read_again_with_fewer_lines() {
    let (ctx, mut api) = setup();
    let obj = ftj(json!({}), training_status(), json!({}));
    let reply = obj.clone();
    let server = tokio::spawn(async move {
        api.answer(Method::GET, PYTORCHJOB_PATH, 200, pytorchjob("Failed"))
            .await;
        let mut master = master_pod(Some(1));
        master["metadata"]["uid"] = Value::Null;
        api.answer(Method::GET, PODS_PATH, 200, pod_list(vec![master]))
            .await;
        // Rich lines padded to 512 columns: the first 64 KiB of the last 40 lines lack the
        // exception at the end.
        let padded = format!("{:<511}\n", "[10:00:00] INFO     step");
        let query = api
            .answer_bytes(
                Method::GET,
                MASTER_LOG_PATH,
                padded.repeat(200).into_bytes()[..65536].to_vec(),
            )
            .await;
        assert!(
            query.contains("tailLines=40") && query.contains("limitBytes=65536"),
            "{query}"
        );
        let query = api
            .answer_bytes(
                Method::GET,
                MASTER_LOG_PATH,
                format!("{padded}torch.OutOfMemoryError: CUDA out of memory.\n").into_bytes(),
            )
            .await;
        assert!(query.contains("tailLines=10"), "{query}");
        let (_, status) = api
            .answer(
                Method::PATCH,
                &format!("{NS_PATH}/status"),
                200,
                reply.clone(),
            )
            .await;
        let failed = status["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Failed")
            .unwrap();
        assert_eq!(failed["reason"], "CUDAOutOfMemory");
        let event = api.event().await;
        let note = event["note"].as_str().unwrap();
        assert!(
            note.ends_with("torch.OutOfMemoryError: CUDA out of memory."),
            "{note}"
        );
        api.no_more().await;
    });
    run(ctx, &obj).await.unwrap();
    server.await.unwrap();
}

#[tokio::test]
async fn with_log_tails_off_events_carry_no_log_line() {
    let (ctx, mut api) = setup_with(|ctx| ctx.with_log_tails(false));
    let obj = ftj(json!({}), training_status(), json!({}));
    let reply = obj.clone();
    let server = tokio::spawn(async move {
        api.answer(Method::GET, PYTORCHJOB_PATH, 200, pytorchjob("Failed"))
            .await;
        let mut master = master_pod(Some(1));
        master["metadata"]["uid"] = Value::Null;
        api.answer(Method::GET, PODS_PATH, 200, pod_list(vec![master]))
            .await;
        // Still read, to diagnose the failure; never published.
        api.answer_bytes(
            Method::GET,
            MASTER_LOG_PATH,
            b"HF_TOKEN=x\ntorch.OutOfMemoryError: CUDA out of memory.\n".to_vec(),
        )
        .await;
        let (_, status) = api
            .answer(
                Method::PATCH,
                &format!("{NS_PATH}/status"),
                200,
                reply.clone(),
            )
            .await;
        assert_eq!(status["status"]["reason"], "TrainingFailed");
        let event = api.event().await;
        let note = event["note"].as_str().unwrap();
        assert!(note.contains("exited with code 1"), "{note}");
        assert!(note.contains("the GPU ran out of memory"), "{note}");
        assert!(
            !note.contains("log lines")
                && !note.contains("OutOfMemoryError")
                && !note.contains("HF_TOKEN"),
            "{note}"
        );
        api.no_more().await;
    });
    run(ctx, &obj).await.unwrap();
    server.await.unwrap();

    // A deletion's Cancelled event does not even read the log.
    let (ctx, mut api) = setup_with(|ctx| ctx.with_log_tails(false));
    let deleting = ftj(
        json!({}),
        training_status(),
        json!({"deletionTimestamp": "2026-11-26T11:00:00Z"}),
    );
    let server = tokio::spawn(async move {
        api.not_found(Method::GET, PREPROCESS_PATH).await;
        api.answer(Method::GET, PYTORCHJOB_PATH, 200, pytorchjob("Running"))
            .await;
        let event = api.event().await;
        assert_eq!(event["reason"], "Cancelled");
        assert!(!event["note"].as_str().unwrap().contains("log lines"));
        api.answer(Method::DELETE, PYTORCHJOB_PATH, 200, pytorchjob("Running"))
            .await;
    });
    run(ctx, &deleting).await.unwrap();
    server.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_log_read_that_never_ends_gives_up_in_bounded_time() {
    let (ctx, mut api) = setup();
    let server = tokio::spawn(async move {
        // The request arrives and is never answered (a hung kubelet behind the apiserver).
        let (_, _, send) = api.expect(Method::GET, MASTER_LOG_PATH).await;
        tokio::time::sleep(Duration::from_secs(3600)).await;
        drop(send);
    });
    let pods: kube::Api<k8s_openapi::api::core::v1::Pod> =
        kube::Api::namespaced(ctx.client.clone(), "ns");
    let started = tokio::time::Instant::now();
    let result = super::follow::read_log(&pods, "ft-master-0", &Default::default()).await;
    assert!(result.is_err());
    assert_eq!(started.elapsed(), super::follow::LOG_READ_TIMEOUT);
    server.abort();
}

#[tokio::test]
async fn a_read_that_stops_at_the_limit_is_followed_by_another_a_second_later() {
    // A log that grows faster than one read (256 KiB) per interval must be caught up, not read
    // at the interval's pace for ever.
    let (ctx, mut api) = setup();
    let obj = ftj(json!({}), training_status(), json!({}));
    let reply = obj.clone();
    let server = tokio::spawn(async move {
        for look in 0..2 {
            api.training(pytorchjob("Running"), pod_list(vec![master_pod(None)]))
                .await;
            let second = format!("2026-11-26T10:04:0{look}.000000001Z");
            let filler = format!("{second} \rtqdm bar █ █ █\n").repeat(10_000);
            let full = filler.as_bytes()[..256 * 1024].to_vec();
            api.answer_bytes(Method::GET, MASTER_LOG_PATH, full).await;
            api.answer(
                Method::PATCH,
                &format!("{NS_PATH}/status"),
                200,
                reply.clone(),
            )
            .await;
        }
    });
    let first = run(ctx.clone(), &obj).await.unwrap();
    assert_eq!(first, Action::requeue(Duration::from_secs(1)));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // The interval (10 s) has not passed, but the catch-up read is due.
    run(ctx, &obj).await.unwrap();
    server.await.unwrap();
}
