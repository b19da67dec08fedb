//! A new job: the finalizer and first status, its children created (a plain create), and what
//! follows when the apiserver refuses one or an object of its name is not ours.

use super::*;
use crate::controller::Error;
use crate::controller::cache::Freshness;
use std::time::Instant;

#[tokio::test]
async fn first_reconcile_writes_the_finalizer_with_the_child_then_training() {
    // The context's clock, not the system's, stamps the status.
    let (ctx, mut api) = setup_with(|ctx| ctx.with_clock(fixed_clock("2026-11-26T10:00:07Z")));
    let obj = ft().meta(json!({"finalizers": null})).json();
    let with_finalizer = ft().meta(json!({"resourceVersion": "11"})).json();
    let server = tokio::spawn(async move {
        // What the decision needs: the PyTorchJob (not created yet), discovery, the pods.
        api.not_found(Method::GET, PYTORCHJOB_PATH).await;
        api.answer(Method::GET, "/apis/kubeflow.org/v1", 200, discovery())
            .await;
        api.answer(Method::GET, PODS_PATH, 200, pod_list(vec![]))
            .await;
        let (_, patch, finalized) = api.expect(Method::PATCH, NS_PATH).await;
        assert_eq!(
            patch,
            json!([
                {"op": "test", "path": "/metadata/finalizers", "value": null},
                {"op": "add", "path": "/metadata/finalizers", "value": ["finetune.dev/cleanup"]},
            ])
        );
        // With it, in the same round trip (the finalizer is not answered yet), the PyTorchJob:
        // neither waits for the other. No separate Pending write: nothing makes this job wait.
        let (_, ptj) = api.echo(Method::POST, PYTORCHJOBS_PATH).await;
        assert_eq!(ptj["kind"], "PyTorchJob");
        respond(finalized, 200, &with_finalizer);
        // The status, naming the child, only once both are in.
        let (_, status) = api.echo_status(&with_finalizer, "12").await;
        assert_eq!(status["status"]["phase"], "Training");
        // Decided from the first status: accepted at the context's time.
        assert_eq!(status["status"]["conditions"][0]["type"], "Accepted");
        assert_eq!(status["status"]["startTime"], "2026-11-26T10:00:07Z");
        assert_eq!(
            status["status"]["conditions"][0]["lastTransitionTime"],
            "2026-11-26T10:00:07Z"
        );
        assert_eq!(api.event().await["reason"], "TrainingStarted");
        api.no_more().await;
    });
    let action = run(ctx, &obj).await.unwrap();
    assert_eq!(action, Action::await_change());
    server.await.unwrap();
}

#[tokio::test]
async fn a_new_job_that_waits_is_written_pending() {
    // The PyTorchJob kind is not installed: the job waits, and says so from its first write.
    let (ctx, mut api) = setup();
    let obj = ft().json();
    let reply = obj.clone();
    let server = tokio::spawn(async move {
        api.not_found(Method::GET, PYTORCHJOB_PATH).await;
        api.not_found(Method::GET, "/apis/kubeflow.org/v1").await;
        api.answer(Method::GET, PODS_PATH, 200, pod_list(vec![]))
            .await;
        let (_, status) = api.status_write(reply).await;
        assert_eq!(status["status"]["phase"], "Pending");
        assert_eq!(status["status"]["conditions"][0]["type"], "Accepted");
        assert!(status["status"].get("pytorchJob").is_none(), "{status}");
    });
    let _ = run(ctx, &obj).await;
    server.await.unwrap();
}

#[tokio::test]
async fn a_new_job_whose_first_pass_fails_is_still_shown_pending() {
    let (ctx, mut api) = setup();
    let obj = ft().json();
    let reply = obj.clone();
    let server = tokio::spawn(async move {
        api.not_found(Method::GET, PYTORCHJOB_PATH).await;
        api.answer(Method::GET, "/apis/kubeflow.org/v1", 200, discovery())
            .await;
        api.answer(Method::GET, PODS_PATH, 200, pod_list(vec![]))
            .await;
        let unavailable = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                 "reason": "ServiceUnavailable", "code": 503, "message": "etcd is slow"});
        api.answer(Method::POST, PYTORCHJOBS_PATH, 503, unavailable)
            .await;
        // The pass is retried with backoff; meanwhile `kubectl get` shows the job Pending.
        let (_, status) = api.status_write(reply).await;
        assert_eq!(status["status"]["phase"], "Pending");
        api.no_more().await;
    });
    let result = run(ctx, &obj).await;
    assert!(result.is_err(), "{result:?}");
    server.await.unwrap();
}

#[tokio::test]
async fn a_cache_older_than_our_last_write_waits_for_the_watch() {
    let (ctx, mut api) = setup();
    let written = ft()
        .status_json(training_status())
        .meta(json!({"resourceVersion": "11"}))
        .json();
    ctx.written
        .record(&serde_json::from_value(written.clone()).unwrap());
    // The cache still holds version 10, written a moment ago: nothing is read or decided; the
    // watch event of version 11 reconciles the job again, the requeue if it never comes.
    let cached = ft().status_json(training_status()).json();
    let server = tokio::spawn(async move {
        api.no_more().await;
    });
    let action = run(ctx.clone(), &cached).await.unwrap();
    server.await.unwrap();
    assert_ne!(action, Action::await_change(), "a fallback requeue is set");

    // Once the cache holds version 11, it is decided on without reading the object.
    let cached = ft()
        .status_json(training_status())
        .meta(json!({"resourceVersion": "11"}))
        .json();
    assert_eq!(
        ctx.written
            .check(&serde_json::from_value(cached).unwrap(), Instant::now()),
        Freshness::Current
    );
}

#[tokio::test]
async fn a_cache_behind_for_longer_than_the_grace_is_read_not_decided_on() {
    let (ctx, mut api) = setup();
    let written = ft()
        .status_json(training_status())
        .meta(json!({"resourceVersion": "11"}))
        .json();
    // A version the operator read (or wrote longer than the grace ago) that the cache lacks.
    ctx.written
        .record_read(&serde_json::from_value(written.clone()).unwrap());
    let cached = ft().status_json(training_status()).json();
    let server = tokio::spawn(async move {
        api.answer(Method::GET, NS_PATH, 200, written).await;
        api.training(pytorchjob("Running"), pod_list(vec![])).await;
        api.no_more().await;
    });
    run(ctx.clone(), &cached).await.unwrap();
    server.await.unwrap();
}

#[tokio::test]
async fn a_new_job_with_preprocess_gets_its_preprocess_job() {
    let (ctx, mut api) = setup();
    let obj = ft().spec(json!({"preprocess": {"maxSeqLen": 4096}})).json();
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

        let (query, status) = api.status_write(reply.clone()).await;
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
    let obj = ft()
        .spec(json!({"preprocess": {}, "resources": {"nodes": 2, "gpusPerNode": 4}}))
        .status_json(status)
        .json();
    let reply = obj.clone();
    let server = tokio::spawn(async move {
        let done = json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "ft-preprocess", "namespace": "ns", "uid": "pre-1", "ownerReferences": [ours()]},
                          "spec": {"template": {}}, "status": {"conditions": [{"type": "Complete", "status": "True"}]}});
        api.answer(Method::GET, PREPROCESS_PATH, 200, done).await;
        let ptj = api.creates_the_pytorchjob().await;
        assert_eq!(ptj["spec"]["pytorchReplicaSpecs"]["Worker"]["replicas"], 1);
        assert_eq!(ptj["spec"]["nprocPerNode"], "4");

        let (_, status) = api.status_write(reply.clone()).await;
        assert_eq!(status["status"]["phase"], "Training");
        assert_eq!(status["status"]["pytorchJob"], "ft");
        assert!(status["status"]["trainingStartTime"].is_string());

        assert_eq!(api.event().await["reason"], "PreprocessSucceeded");
        assert_eq!(api.event().await["reason"], "TrainingStarted");
    });
    run(ctx, &obj).await.unwrap();
    server.await.unwrap();
}

#[tokio::test]
async fn a_create_that_finds_the_name_taken_by_another_object_fails_the_job() {
    let (ctx, mut api) = setup();
    let mut status = training_status();
    status["phase"] = json!("Pending");
    status.as_object_mut().unwrap().remove("pytorchJob");
    status.as_object_mut().unwrap().remove("trainingStartTime");
    let obj = ft().status_json(status).json();
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
        let (_, status) = api.status_write(reply).await;
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
    let obj = ft()
        .spec(json!({"preprocess": {}}))
        .status_json(pending_status())
        .json();
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
        let (_, status) = api.status_write(reply).await;
        assert_eq!(status["status"]["reason"], "CreateForbidden");
        assert!(
            status["status"]["message"]
                .as_str()
                .unwrap()
                .contains("exceeded quota")
        );
        assert!(status["status"].get("preprocessJob").is_none(), "{status}");
        assert_eq!(api.event().await["reason"], "PreprocessStalled");
        api.no_more().await;
    });
    let result = run(ctx, &obj).await;
    assert!(matches!(result, Err(Error::Kube { .. })), "{result:?}");
    server.await.unwrap();
}

/// The first status, as written with the finalizer.
fn pending_status() -> Value {
    json!({
        "phase": "Pending", "startTime": "2026-11-26T10:00:00Z", "observedGeneration": 1,
        "reason": "Accepted", "message": "Accepted; starting",
        "conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted",
                        "message": "The spec was accepted", "lastTransitionTime": "2026-11-26T10:00:00Z"}]})
}

#[tokio::test]
async fn a_rejected_create_fails_the_job_with_the_apiservers_message() {
    let (ctx, mut api) = setup();
    let obj = ft().status_json(pending_status()).json();
    let reply = obj.clone();
    let server = tokio::spawn(async move {
        api.not_found(Method::GET, PYTORCHJOB_PATH).await;
        api.answer(Method::GET, "/apis/kubeflow.org/v1", 200, discovery())
            .await;
        api.answer(Method::GET, PODS_PATH, 200, pod_list(vec![]))
            .await;
        let invalid = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                             "reason": "Invalid", "code": 422,
                             "message": "PyTorchJob.kubeflow.org \"ft\" is invalid: spec.tolerations[0].operator: Unsupported value"});
        let (_, created) = api
            .answer(Method::POST, PYTORCHJOBS_PATH, 422, invalid)
            .await;
        assert_eq!(created["kind"], "PyTorchJob");
        // Not retried: the job fails with the apiserver's words, and says nothing else.
        let (_, status) = api.status_write(reply).await;
        assert_eq!(status["status"]["phase"], "Failed");
        assert_eq!(status["status"]["reason"], "ChildRejected");
        assert!(status["status"].get("pytorchJob").is_none(), "{status}");
        let event = api.event().await;
        assert_eq!(
            (&event["reason"], &event["type"]),
            (&json!("TrainingFailed"), &json!("Warning"))
        );
        assert!(
            event["note"].as_str().unwrap().contains(
                "the API server refused to create the PyTorchJob: PyTorchJob.kubeflow.org"
            ),
            "{event}"
        );
        api.no_more().await;
    });
    run(ctx, &obj).await.unwrap();
    server.await.unwrap();
}

#[tokio::test]
async fn with_background_events_a_reconcile_does_not_wait_for_its_events() {
    let (ctx, mut api) = setup_with(Context::with_background_events);
    let obj = ft().json();
    let reply = obj.clone();
    let (returned, reconcile_returned) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        api.creates_the_pytorchjob().await;
        let (_, status) = api.status_write(reply).await;
        assert_eq!(status["status"]["phase"], "Training");
        // The event is sent, and not answered until the reconcile has returned.
        let (_, event, send) = api.expect(Method::POST, EVENTS_PATH).await;
        assert_eq!(event["reason"], "TrainingStarted");
        reconcile_returned.await.unwrap();
        respond(send, 201, &event);
        api.no_more().await;
    });
    tokio::time::timeout(Duration::from_secs(2), run(ctx, &obj))
        .await
        .expect("the reconcile waited for its event")
        .unwrap();
    returned.send(()).unwrap();
    server.await.unwrap();
}
