//! Attempts: disruptions that end the PyTorchJob go on as a new attempt (within
//! disruptionLimit), real failures still fail, Kueue's preemption and spec.suspend end the
//! attempt once the pods are gone, and `usage` counts GPU time used and lost.

use super::progress::{cursor, records};
use super::*;
use crate::api::{Checkpoint, CheckpointKind, Usage};

const TRAINING_LABELS: &str = "training.kubeflow.org/job-name";

/// Training on 1 node with 2 GPUs, running since T0 (the world's now is T1, 300 s later), with
/// a full state saved at T0 + 60 s.
fn running(spec: Value) -> FineTuneJob {
    let mut status = training_status();
    status.training_start_time = Some(t(T0));
    status.usage = Some(Usage {
        attempts: 1,
        running_since: Some(t(T0)),
        ..Usage::default()
    });
    status.checkpoints = vec![Checkpoint {
        path: "/output/ft/full_state/epoch_0".into(),
        epoch: Some(1),
        samples: Some(320),
        kind: CheckpointKind::FullState,
        time: Some(t("2026-11-26T10:01:00Z")),
    }];
    job(on_two_gpus(spec), Some(status))
}

/// `spec` on 1 node with 2 GPUs.
fn on_two_gpus(mut spec: Value) -> Value {
    spec["resources"] = json!({"nodes": 1, "gpusPerNode": 2});
    spec
}

/// The job of `spec` (on 2 GPUs) with the status decision `d` left it in: the next look.
fn after(spec: &Value, d: Decision) -> FineTuneJob {
    job(on_two_gpus(spec.clone()), Some(d.status))
}

/// The master pod, ended with `exit_code`; `evicted` adds the DisruptionTarget condition the
/// Eviction API sets.
fn master(exit_code: i32, evicted: bool) -> Pod {
    let mut pod = PodFixture::new("ft-master-0")
        .container("pytorch")
        .labels(json!({TRAINING_LABELS: "ft"}))
        .terminated(
            exit_code,
            if exit_code == 0 { "Completed" } else { "Error" },
        )
        .phase(if exit_code == 0 {
            "Succeeded"
        } else {
            "Failed"
        });
    if evicted {
        pod = pod.status(
            json!({"conditions": [{"type": "DisruptionTarget", "status": "True",
            "reason": "EvictionByEvictionAPI", "message": "Eviction API: evicting"}]}),
        );
    }
    pod.build()
}

fn running_master() -> Pod {
    PodFixture::new("ft-master-0")
        .container("pytorch")
        .labels(json!({TRAINING_LABELS: "ft"}))
        .phase("Running")
        .build()
}

/// The PyTorchJob with its condition `condition` (suspended or not), and its pods.
fn with_ptj(condition: &str, suspended: bool, pods: Vec<Pod>) -> Observed {
    world(
        Lookup::Skipped,
        Lookup::Present(pytorch_job(Some(condition), suspended)),
        pods,
    )
}

/// The PyTorchJob ended with `condition`, and its master pod.
fn ended(condition: &str, master: Pod) -> Observed {
    with_ptj(condition, false, vec![master])
}

fn usage(d: &Decision) -> Usage {
    d.status.usage.clone().unwrap()
}

#[test]
fn an_evicted_pod_that_failed_the_pytorchjob_goes_on_from_the_last_full_state() {
    let j = running(json!({}));
    let w = ended("Failed", master(1, true));
    let d = decide(&j, &w);
    assert_eq!(d.status.phase, Some(Phase::Training));
    assert_eq!(d.status.reason.as_deref(), Some("Evicted"));
    assert_eq!(condition(&d.status, "Failed"), None);
    assert_eq!(d.actions, [ChildAction::Delete(ChildKind::PyTorchJob)]);
    assert_eq!(d.status.pytorch_job, None);
    assert_eq!(
        d.status.message.as_deref(),
        Some(
            "PyTorchJob ft stopped: pod ft-master-0 was stopped by Kubernetes (EvictionByEvictionAPI: Eviction API: evicting); attempt 1 ended, and attempt 2 resumes from its last full-state checkpoint /output/ft/full_state/epoch_0 (disruption 1 of at most 5)"
        )
    );
    // 2 GPUs × 300 s used; 2 × 240 s since the full state at T0 + 60 s lost.
    let u = usage(&d);
    assert_eq!(
        (u.gpu_seconds, u.gpu_hours, u.gpu_seconds_lost),
        (600, 0.17, 480)
    );
    assert_eq!((u.attempts, u.disruptions, u.running_since), (1, 1, None));
    assert_eq!(reasons(&d), [reason::EVICTED]);
    assert_eq!(d.events[0].severity, Severity::Warning);
    assert_settles(j, &d, &w);
}

#[test]
fn the_next_attempt_waits_for_the_old_pytorchjob_to_go_then_starts() {
    let j = running(json!({}));
    let d = decide(&j, &ended("Failed", master(1, true)));
    let j = after(&json!({}), d);

    // Still there (the cache has not seen the deletion yet): nothing is decided on it again.
    let still = ended("Failed", master(1, true));
    let d = decide(&j, &still);
    assert!(d.actions.is_empty(), "{:?}", d.actions);
    assert!(d.events.is_empty());
    assert_eq!(usage(&d).disruptions, 1, "counted once");

    // Gone: the new PyTorchJob, and attempt 2 starts now.
    let gone = world(Lookup::Skipped, Lookup::Absent, vec![]);
    let d = decide(&j, &gone);
    assert_eq!(d.actions, [create(&j, ChildKind::PyTorchJob)]);
    assert_eq!(d.status.pytorch_job.as_deref(), Some("ft"));
    assert_eq!(d.status.reason.as_deref(), Some("Training"));
    assert_eq!(d.status.training_start_time, Some(t(T1)));
    let u = usage(&d);
    assert_eq!((u.attempts, u.running_since), (2, Some(t(T1))));
    assert_eq!(reasons(&d), [reason::TRAINING_STARTED]);
}

#[test]
fn a_failure_without_a_disruption_still_fails_at_once() {
    let j = running(json!({}));
    let mut w = ended("Failed", master(1, false));
    w.failure_log = Some("Traceback (most recent call last):\nValueError: bad sample\n".into());
    let d = decide(&j, &w);
    assert_eq!(d.status.phase, Some(Phase::Failed));
    assert_eq!(d.status.reason.as_deref(), Some("TrainingFailed"));
    assert!(d.actions.is_empty());
    let u = usage(&d);
    assert_eq!(
        (
            u.gpu_seconds,
            u.gpu_seconds_lost,
            u.disruptions,
            u.running_since
        ),
        (600, 0, 0, None)
    );
    assert_settles(j, &d, &w);
}

#[test]
fn past_the_disruption_limit_the_job_fails() {
    let mut j = running(json!({"disruptionLimit": 1}));
    j.status
        .as_mut()
        .unwrap()
        .usage
        .as_mut()
        .unwrap()
        .disruptions = 1;
    let w = ended("Failed", master(1, true));
    let d = decide(&j, &w);
    assert_eq!(d.status.phase, Some(Phase::Failed));
    assert_eq!(
        condition(&d.status, "Failed"),
        Some(("True".into(), "DisruptionLimitExceeded".into()))
    );
    assert!(
        d.status
            .message
            .as_deref()
            .unwrap()
            .ends_with("training was interrupted 2 times, more than disruptionLimit 1"),
        "{:?}",
        d.status.message
    );
    assert!(d.actions.is_empty());
    assert_eq!(usage(&d).disruptions, 2);
    assert_eq!(reasons(&d), [reason::DISRUPTION_LIMIT_EXCEEDED]);
    assert_settles(j, &d, &w);
}

#[test]
fn a_kueue_preemption_counts_once_and_the_attempt_ends_when_the_pods_are_gone() {
    let spec = json!({"scheduling": {"queueName": "gpu"}});
    let j = running(spec.clone());

    // Kueue suspended it; the pods are still stopping.
    let stopping = with_ptj("Suspended", true, vec![running_master()]);
    let d = decide(&j, &stopping);
    assert_eq!(d.status.reason.as_deref(), Some("Preempted"));
    assert_eq!(reasons(&d), [reason::PREEMPTED]);
    let u = usage(&d);
    assert_eq!((u.preemptions, u.running_since), (1, Some(t(T0))));
    assert!(d.actions.is_empty(), "Kueue owns the suspension");
    assert_settles(j.clone(), &d, &stopping);

    // The pods are gone: the attempt ends (work since the full state lost), nothing more said.
    let j = after(&spec, d);
    let gone = with_ptj("Suspended", true, vec![]);
    let d = decide(&j, &gone);
    let u = usage(&d);
    assert_eq!(
        (
            u.preemptions,
            u.running_since,
            u.gpu_seconds,
            u.gpu_seconds_lost
        ),
        (1, None, 600, 480)
    );
    assert!(d.events.is_empty());
    assert_settles(j, &d, &gone);

    // Admitted again: attempt 2, and the deadline clock starts over.
    let j = after(&spec, d);
    let admitted = with_ptj("Running", false, vec![running_master()]);
    let d = decide(&j, &admitted);
    assert_eq!(d.status.reason.as_deref(), Some("Training"));
    assert_eq!(d.status.training_start_time, Some(t(T1)));
    let u = usage(&d);
    assert_eq!((u.attempts, u.running_since), (2, Some(t(T1))));
    assert_settles(j, &d, &admitted);
}

#[test]
fn a_suspension_reads_the_on_demand_checkpoint_the_stopping_pod_saves() {
    let spec = json!({"suspend": true, "training": {"epochs": 8}});
    let mut j = running(spec.clone());
    j.status.as_mut().unwrap().phase = Some(Phase::Suspended);
    let mut w = with_ptj("Suspended", true, vec![master(0, false)]);
    w.log = Some(LogRead {
        records: records(&[
            "epoch=1, step=30, rank=0, overall_throughput=59.526, avg_loss=4.843, samples_seen=480, total_samples=320, num_epoch_steps=20",
            "\x1b[93mSaving full model state in /output/ft/full_state/epoch_1\x1b[0m",
            "\x1b[93mModel state saved in: /output/ft/full_state/epoch_1\x1b[0m",
            "On-demand checkpoint saved (during minibatch processing). Exiting training.",
        ]),
        cursor: Some(cursor("2026-11-26T10:04:59Z", 1)),
    });
    let d = decide(&j, &w);
    assert_eq!(d.status.phase, Some(Phase::Suspended));
    let checkpointed = d
        .status
        .conditions
        .iter()
        .find(|c| c.type_ == "Checkpointed")
        .unwrap();
    assert_eq!(checkpointed.reason, "OnDemandCheckpointSaved");
    assert_eq!(
        checkpointed.message,
        "InstructLab saved an on-demand checkpoint in /output/ft/full_state/epoch_1 in epoch 2/8 (480 of 2560 samples)"
    );
    // Saved just now: nothing lost.
    let u = usage(&d);
    assert_eq!(
        (u.running_since, u.gpu_seconds, u.gpu_seconds_lost),
        (None, 600, 0)
    );
    assert!(reasons(&d).contains(&reason::ON_DEMAND_CHECKPOINT_SAVED));

    // Resumed: attempt 2.
    let mut spec = spec;
    spec["suspend"] = json!(false);
    let j = after(&spec, d);
    let resumed = with_ptj("Running", false, vec![running_master()]);
    let d = decide(&j, &resumed);
    assert_eq!(d.status.phase, Some(Phase::Training));
    assert_eq!(usage(&d).attempts, 2);
}

#[test]
fn the_log_is_read_while_suspended_pods_stop_and_not_after() {
    let mut j = running(json!({"suspend": true}));
    j.status.as_mut().unwrap().phase = Some(Phase::Suspended);
    assert!(needs(&j).log, "the stopping pods' last lines");
    j.status
        .as_mut()
        .unwrap()
        .usage
        .as_mut()
        .unwrap()
        .running_since = None;
    assert!(!needs(&j).log);
}

#[test]
fn a_finished_job_counts_its_gpu_time() {
    let j = running(json!({}));
    let w = ended("Succeeded", master(0, false));
    let d = decide(&j, &w);
    assert_eq!(d.status.phase, Some(Phase::Succeeded));
    let u = usage(&d);
    assert_eq!(
        (u.gpu_seconds, u.gpu_seconds_lost, u.running_since),
        (600, 0, None)
    );
}

#[test]
fn the_workload_says_why_kueue_stopped_the_job_read_once_per_stop() {
    let j = running(json!({"scheduling": {"queueName": "gpu"}}));
    let mut ptj = pytorch_job(Some("Suspended"), true);
    ptj.metadata.uid = Some("ptj-uid".into());
    let mut w = world(
        Lookup::Skipped,
        Lookup::Present(ptj),
        vec![running_master()],
    );
    assert_eq!(
        needs_after(&j, &w).queue_stop_of.as_deref(),
        Some("ptj-uid")
    );

    w.queue_eviction = Some(QueueEviction {
        reason: "Preempted".into(),
        message: "Preempted to accommodate a workload (UID: w2) due to prioritization in the ClusterQueue".into(),
    });
    let d = decide(&j, &w);
    assert_eq!(d.status.reason.as_deref(), Some("Preempted"));
    assert_eq!(
        d.status.message.as_deref(),
        Some(
            "Kueue preempted PyTorchJob ft: Preempted to accommodate a workload (UID: w2) due to prioritization in the ClusterQueue; training goes on from its last full-state checkpoint when Kueue admits it again"
        )
    );
    // Once the status says so, the Workload is not read again, and nothing changes.
    let mut again = j.clone();
    again.status = Some(d.status.clone());
    assert_eq!(needs_after(&again, &w).queue_stop_of, None);
    w.queue_eviction = None;
    assert_settles(j.clone(), &d, &w);

    // Another eviction (the pods were not ready in time): Evicted, counted the same way.
    w.queue_eviction = Some(QueueEviction {
        reason: "PodsReadyTimeout".into(),
        message: "Exceeded the PodsReady timeout".into(),
    });
    let d = decide(&j, &w);
    assert_eq!(d.status.reason.as_deref(), Some("Evicted"));
    assert!(d.status.message.as_deref().unwrap().starts_with(
        "Kueue evicted PyTorchJob ft (PodsReadyTimeout: Exceeded the PodsReady timeout)"
    ));
    assert_eq!(usage(&d).preemptions, 1);
    assert_eq!(reasons(&d), [reason::EVICTED]);
}

#[test]
fn a_checkpoint_the_user_asked_for_goes_on_without_counting_as_a_disruption() {
    let mut j = running(json!({"disruptionLimit": 0, "training": {"epochs": 8}}));
    let on_demand = |j: &FineTuneJob| {
        let mut w = ended("Succeeded", master(0, false));
        w.log = Some(LogRead {
            records: records(&[
                "epoch=1, step=30, rank=0, overall_throughput=59.526, avg_loss=4.843, samples_seen=480, total_samples=320, num_epoch_steps=20",
                "\x1b[93mModel state saved in: /output/ft/full_state/epoch_1\x1b[0m",
                "On-demand checkpoint saved (during minibatch processing). Exiting training.",
            ]),
            cursor: Some(cursor("2026-11-26T10:04:59Z", 1)),
        });
        decide(j, &w)
    };
    // Asked for during this attempt (kubectl finetune checkpoint): a new attempt, not counted.
    j.metadata.annotations = Some(
        [(
            "finetune.dev/checkpoint-requested".to_string(),
            "2026-11-26T10:04:00Z".to_string(),
        )]
        .into(),
    );
    let d = on_demand(&j);
    assert_eq!(d.status.reason.as_deref(), Some("CheckpointRequested"));
    assert_eq!(d.actions, [ChildAction::Delete(ChildKind::PyTorchJob)]);
    assert_eq!(
        d.status.message.as_deref(),
        Some(
            "PyTorchJob ft stopped: a checkpoint was asked for at 2026-11-26T10:04:00Z (kubectl finetune checkpoint); InstructLab saved it and exited with code 0; attempt 1 ended, and attempt 2 resumes from its last full-state checkpoint /output/ft/full_state/epoch_1"
        )
    );
    assert_eq!(usage(&d).disruptions, 0);
    let e = d.events.last().unwrap();
    assert_eq!(
        (e.reason, e.severity),
        (reason::CHECKPOINT_REQUESTED, Severity::Normal)
    );

    // Asked for before this attempt began: this exit is nobody's request, and with
    // disruptionLimit 0 the job fails.
    j.metadata.annotations = Some(
        [(
            "finetune.dev/checkpoint-requested".to_string(),
            "2026-11-26T09:00:00Z".to_string(),
        )]
        .into(),
    );
    let d = on_demand(&j);
    assert_eq!(d.status.phase, Some(Phase::Failed));
    assert_eq!(
        condition(&d.status, "Failed"),
        Some(("True".into(), "DisruptionLimitExceeded".into()))
    );
}
