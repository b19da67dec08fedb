//! A deleted FineTuneJob: Cancelled, children deleted in the foreground, then the finalizer; and
//! a settled finished job, which costs nothing.

use super::*;

#[tokio::test]
async fn deletion_removes_the_children_then_the_finalizer() {
    let (ctx, mut api) = setup();
    let deleting = json!({"deletionTimestamp": "2026-11-26T11:00:00Z"});
    let obj = ft()
        .status_json(training_status())
        .meta(deleting.clone())
        .json();
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
async fn deleting_a_failed_job_reads_no_failure_tail_it_would_not_report() {
    // A finished job publishes no Cancelled event and its failure was reported when it failed:
    // deletion reads the children and deletes them, nothing else (no pod log, no events).
    let (ctx, mut api) = setup();
    let mut failed = training_status();
    failed["phase"] = json!("Failed");
    failed["reason"] = json!("TrainingFailed");
    let obj = ft()
        .status_json(failed)
        .meta(json!({"deletionTimestamp": "2026-11-26T11:00:00Z"}))
        .json();
    let server = tokio::spawn(async move {
        api.not_found(Method::GET, PREPROCESS_PATH).await;
        api.answer(Method::GET, PYTORCHJOB_PATH, 200, pytorchjob("Failed"))
            .await;
        let (_, body) = api
            .answer(Method::DELETE, PYTORCHJOB_PATH, 200, pytorchjob("Failed"))
            .await;
        assert_eq!(body["propagationPolicy"], "Foreground");
        api.no_more().await;
    });
    assert_eq!(
        run(ctx, &obj).await.unwrap(),
        Action::requeue(Duration::from_secs(5))
    );
    server.await.unwrap();
}

#[tokio::test]
async fn deletion_is_not_blocked_when_the_pytorchjob_kind_is_missing() {
    let (ctx, mut api) = setup();
    let obj = ft()
        .meta(json!({"deletionTimestamp": "2026-11-26T11:00:00Z"}))
        .json();
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
    let obj = ft().status_json(status).json();
    let server = tokio::spawn(async move {
        api.no_more().await;
    });
    assert_eq!(run(ctx, &obj).await.unwrap(), Action::await_change());
    server.await.unwrap();
}
