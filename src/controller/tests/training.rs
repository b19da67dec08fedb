//! A training job: a steady state that writes nothing, a failure with its log tail, a PyTorchJob
//! of our name that is not ours, a panic.

use super::*;
use crate::controller::reconcile::catch_panics;
use crate::controller::{Error, error_policy};

#[tokio::test]
async fn a_steady_training_job_writes_nothing() {
    let (ctx, mut api) = setup();
    let obj = ft().status_json(training_status()).json();
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
    let obj = ft().status_json(training_status()).json();
    let reply = obj.clone();
    let server = tokio::spawn(async move {
        api.answer(Method::GET, PYTORCHJOB_PATH, 200, pytorchjob("Failed"))
            .await;
        let master = PodFixture::new("ft-master-0")
            .controlled_by("PyTorchJob", "ft", "ptj-1")
            .terminated(1, "Error")
            .json();
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
        let (_, status) = api.status_write(reply.clone()).await;
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
async fn a_pytorchjob_of_our_name_that_is_not_ours_is_never_read_changed_or_deleted() {
    // Its Succeeded condition must not become ours; the job fails with ChildConflict.
    let (ctx, mut api) = setup();
    let obj = ft().status_json(training_status()).json();
    let reply = obj.clone();
    let server =
        tokio::spawn(async move {
            api.answer(Method::GET, PYTORCHJOB_PATH, 200, foreign_pytorchjob())
                .await;
            api.answer(Method::GET, PODS_PATH, 200, pod_list(vec![]))
                .await;
            let (_, status) = api.status_write(reply).await;
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
    let obj = ft()
        .status_json(training_status())
        .meta(json!({"deletionTimestamp": "2026-11-26T11:00:00Z"}))
        .json();
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
async fn a_panic_in_a_reconcile_is_an_error_for_that_object_only() {
    let result = catch_panics(async {
        let text = "█".repeat(3);
        // A byte offset inside a character: the kind of bug the log tails once had.
        let _ = &text[..1];
        Ok(Action::await_change())
    })
    .await;
    match result {
        Err(Error::Panicked(message)) => {
            assert!(message.contains("char boundary"), "{message}")
        }
        other => panic!("expected a caught panic, got {other:?}"),
    }
    // It is retried with backoff like any error.
    let (ctx, _api) = setup();
    let job: FineTuneJob = serde_json::from_value(ft().json()).unwrap();
    let action = error_policy(Arc::new(job), &Error::Panicked("boom".into()), ctx);
    assert_eq!(action, Action::requeue(Duration::from_secs(5)));
}
