//! Reading logs: the rank-0 log while training and at its end, failure tails, tails turned off,
//! reads that hang or fill the limit.

use super::*;
use crate::controller::follow;

#[tokio::test]
async fn the_reconcile_that_sees_training_end_reads_the_rest_of_the_log() {
    let (ctx, mut api) = setup();
    let obj = ft().status_json(training_status()).json();
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

        let (_, status) = api.status_write(reply.clone()).await;
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
    let obj = ft().status_json(training_status()).json();
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
        let (_, status) = api.status_write(reply.clone()).await;
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
    let obj = ft().status_json(training_status()).json();
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
        let (_, status) = api.status_write(reply.clone()).await;
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
    let deleting = ft()
        .status_json(training_status())
        .meta(json!({"deletionTimestamp": "2026-11-26T11:00:00Z"}))
        .json();
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
    let result = follow::read_log(&pods, "ft-master-0", &Default::default()).await;
    assert!(result.is_err());
    assert_eq!(started.elapsed(), follow::LOG_READ_TIMEOUT);
    server.abort();
}

#[tokio::test]
async fn a_read_that_stops_at_the_limit_is_followed_by_another_a_second_later() {
    // A log that grows faster than one read (256 KiB) per interval must be caught up, not read
    // at the interval's pace for ever.
    let (ctx, mut api) = setup();
    let obj = ft().status_json(training_status()).json();
    let reply = obj.clone();
    let server = tokio::spawn(async move {
        for look in 0..2 {
            api.training(pytorchjob("Running"), pod_list(vec![master_pod(None)]))
                .await;
            let second = format!("2026-11-26T10:04:0{look}.000000001Z");
            let filler = format!("{second} \rtqdm bar █ █ █\n").repeat(10_000);
            let full = filler.as_bytes()[..256 * 1024].to_vec();
            api.answer_bytes(Method::GET, MASTER_LOG_PATH, full).await;
            api.status_write(reply.clone()).await;
        }
    });
    let first = run(ctx.clone(), &obj).await.unwrap();
    assert_eq!(first, Action::requeue(Duration::from_secs(1)));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // The interval (10 s) has not passed, but the catch-up read is due.
    run(ctx, &obj).await.unwrap();
    server.await.unwrap();
}

#[tokio::test]
async fn a_container_that_just_started_is_first_read_one_interval_later() {
    // Its log holds only start-up lines: reading it at once would cost a read and a status
    // write per job as jobs start, when the apiserver is busiest.
    let (ctx, mut api) = setup();
    let obj = ft().status_json(training_status()).json();
    let mut master = master_pod(None);
    let started = jiff::Timestamp::now() - jiff::SignedDuration::from_secs(4);
    master["status"]["containerStatuses"][0]["state"]["running"]["startedAt"] =
        json!(started.to_string());
    let server = tokio::spawn(async move {
        api.training(pytorchjob("Running"), pod_list(vec![master]))
            .await;
        // No log read, no status write.
        api.no_more().await;
    });
    let action = run(ctx, &obj).await.unwrap();
    server.await.unwrap();
    // Due once it has run the 10 s interval: about 6 s from now (less the test's own time).
    let shown = format!("{action:?}");
    let seconds: f64 = shown
        .split("requeue_after: Some(")
        .nth(1)
        .and_then(|rest| rest.split("s)").next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no requeue: {shown}"));
    assert!((4.0..=6.0).contains(&seconds), "{shown}");
}

/// A context whose log reads are due every `interval` (the default is 10 s).
fn setup_following_every(interval: Duration) -> (Arc<Context>, ApiServer) {
    setup_with(|ctx| Context {
        followers: follow::Followers::new(interval),
        ..ctx
    })
}

/// What InstructLab 0.16.2 printed on a real GPU before its first step (warnings, Rich's
/// loading bars with their carriage returns and block characters, the dataset split), each line
/// timestamped as the kubelet does, all in the second 10:04:01.
fn real_start_up() -> String {
    include_str!("../../../tests/fixtures/instructlab/realrun/train-0.16.log")
        .lines()
        .take_while(|line| !line.contains("num_gpus="))
        .enumerate()
        .map(|(i, line)| format!("2026-11-26T10:04:01.{:09}Z {line}\n", i + 1))
        .collect()
}

#[tokio::test]
async fn a_read_that_finds_nothing_writes_no_status_and_the_next_goes_on_after_it() {
    // Start-up lines move the cursor over nothing a user sees: a status write for that alone
    // would cost one per job as jobs start.
    let (ctx, mut api) = setup_following_every(Duration::from_millis(200));
    let obj = ft().status_json(training_status()).json();
    let reply = obj.clone();
    let server = tokio::spawn(async move {
        api.training(pytorchjob("Running"), pod_list(vec![master_pod(None)]))
            .await;
        let start_up = real_start_up();
        assert!(
            start_up.contains('\r') && start_up.contains('█'),
            "{start_up}"
        );
        api.answer_bytes(Method::GET, MASTER_LOG_PATH, start_up.clone().into())
            .await;
        api.no_more().await;

        // The next read starts after those lines, not at the status's (older) cursor: the
        // kubelet sends the whole second of `sinceTime` again, start-up lines included.
        api.training(pytorchjob("Running"), pod_list(vec![master_pod(None)]))
            .await;
        let saved = format!(
            "{start_up}2026-11-26T10:05:00.000000001Z \x1b[93mModel saved in /output/ft/hf_format/samples_96\x1b[0m\n"
        );
        let query = api
            .answer_bytes(Method::GET, MASTER_LOG_PATH, saved.into())
            .await;
        assert!(
            query.contains("sinceTime=2026-11-26T10%3A04%3A01Z"),
            "{query}"
        );
        let (_, status) = api.status_write(reply).await;
        assert_eq!(
            status["status"]["checkpoints"][0]["path"],
            "/output/ft/hf_format/samples_96"
        );
        assert_eq!(
            status["status"]["logCursor"]["time"],
            "2026-11-26T10:05:00.000000001Z"
        );
        assert_eq!(api.event().await["reason"], "CheckpointSaved");
        api.no_more().await;
    });
    run(ctx.clone(), &obj).await.unwrap();
    // Past the interval, and past the server's wait for no more requests.
    tokio::time::sleep(Duration::from_millis(500)).await;
    run(ctx, &obj).await.unwrap();
    server.await.unwrap();
}

#[tokio::test]
async fn a_due_read_gives_way_once_while_new_jobs_start() {
    let (ctx, mut api) = setup_following_every(Duration::from_millis(200));
    let obj = ft().status_json(training_status()).json();
    let server = tokio::spawn(async move {
        // Another job has just started: the read is put off by one interval.
        api.training(pytorchjob("Running"), pod_list(vec![master_pod(None)]))
            .await;
        api.no_more().await;
        // Jobs are still starting, but the read was already put off once: it goes ahead.
        api.training(pytorchjob("Running"), pod_list(vec![master_pod(None)]))
            .await;
        api.answer_bytes(Method::GET, MASTER_LOG_PATH, vec![]).await;
        api.no_more().await;
    });
    ctx.followers.job_started(std::time::Instant::now());
    let first = run(ctx.clone(), &obj).await.unwrap();
    assert_eq!(first, Action::requeue(Duration::from_millis(200)));
    tokio::time::sleep(Duration::from_millis(500)).await;
    ctx.followers.job_started(std::time::Instant::now());
    run(ctx, &obj).await.unwrap();
    server.await.unwrap();
}

#[tokio::test]
async fn jobs_waiting_for_their_first_read_count_in_the_read_budget() {
    // At one read a second, a second job's first read comes after the first job's, though the
    // first has not been read yet: a burst of new jobs must not read all at once one interval
    // later.
    let (ctx, _api) = setup_with(|ctx| Context {
        followers: follow::Followers::new(Duration::from_secs(1)).with_budget(1),
        ..ctx
    });
    let pods: Vec<_> = ["ft", "ft2"]
        .into_iter()
        .map(|job| {
            let mut master = master_pod(None);
            master["metadata"]["name"] = json!(format!("{job}-master-0"));
            master["status"]["containerStatuses"][0]["state"]["running"]["startedAt"] =
                json!(jiff::Timestamp::now().to_string());
            serde_json::from_value(master).unwrap()
        })
        .collect();
    let job = |name| -> FineTuneJob {
        serde_json::from_value(
            JobFixture::new(name)
                .stored()
                .finalized()
                .status_json(training_status())
                .json(),
        )
        .unwrap()
    };
    let (read, first) = ctx
        .followers
        .read(&ctx.client, &job("ft"), &pods, false)
        .await;
    assert!(read.is_none());
    // Due once its container has run the interval (not the interval a pod not started gets).
    assert!(
        (Duration::from_millis(500)..Duration::from_secs(1)).contains(&first),
        "{first:?}"
    );
    let (read, second) = ctx
        .followers
        .read(&ctx.client, &job("ft2"), &pods, false)
        .await;
    assert!(read.is_none());
    assert!(
        (Duration::from_millis(1500)..Duration::from_secs(2)).contains(&second),
        "{second:?}"
    );
}
