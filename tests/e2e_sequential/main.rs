//! End-to-end tests that must run alone, after the main suite (`make test` runs them so), never
//! beside it nor beside each other (one thread): they change the cluster itself, or need all of
//! its GPUs. The harness is `testkit::e2e`, as for the main suite. Kueue's test is in `kueue.rs`.
//!
//! A cluster without the PyTorchJob kind: FineTuneJobs wait with a clear condition instead of
//! crash-looping, and deleting them is never blocked. The test removes the PyTorchJob CRD, and
//! puts it back and checks the training operator and the garbage collector work again before it
//! ends.

mod kueue;

use std::time::Duration;

use finetune_operator::api::{Phase, PyTorchJob};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, PostParams};
use serde_json::json;
use testkit::e2e::*;

const CRD: &str = "pytorchjobs.kubeflow.org";

/// Installs the PyTorchJob CRD again (from the cluster's build) and waits until it is served.
fn restore_crd() -> Result<(), String> {
    let crd = cluster().bin_dir.join("kubeflow.org_pytorchjobs.yaml");
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    loop {
        let apply = kubectl(&[
            "apply",
            "--server-side",
            "--field-manager=fto-test-cluster",
            "-f",
            crd.to_str().unwrap(),
        ]);
        let wait = kubectl(&[
            "wait",
            "--for=condition=Established",
            &format!("crd/{CRD}"),
            "--timeout=10s",
        ]);
        if apply.status.success() && wait.status.success() {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            return Err(format!(
                "{}{}",
                String::from_utf8_lossy(&apply.stderr),
                String::from_utf8_lossy(&wait.stderr)
            ));
        }
        // The deleted CRD may still be terminating.
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Puts the CRD back if the test ends early, so a failure here does not break the cluster.
struct RestoreCrd;

impl Drop for RestoreCrd {
    fn drop(&mut self) {
        if let Err(e) = restore_crd() {
            eprintln!("could not restore the PyTorchJob CRD: {e}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_pytorchjob_kind_jobs_wait_and_deletion_is_not_blocked() {
    let out = kubectl(&["delete", "crd", CRD, "--wait=true", "--timeout=60s"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let restore = RestoreCrd;

    let ns = TestNamespace::new("nokind").await;
    let _operator = Operator::start(&ns.name);
    ns.create(finetunejob("waits", json!({}))).await;
    let (job, _) = ns
        .wait_for(
            "waits",
            "Accepted=False with reason PyTorchJobNotInstalled",
            |j| {
                j.status.as_ref().is_some_and(|s| {
                    s.conditions.iter().any(|c| {
                        c.type_ == "Accepted"
                            && c.status == "False"
                            && c.reason == "PyTorchJobNotInstalled"
                    })
                })
            },
        )
        .await;
    let status = job.status.unwrap();
    assert_eq!(status.phase, Some(Phase::Pending));
    // Both backends are named: the one to install, and the other to choose instead.
    let message = status.message.unwrap();
    assert!(
        message.contains("install the Kubeflow training operator")
            && message.contains("spec.backend TrainJob"),
        "{message}"
    );

    ns.jobs()
        .delete("waits", &DeleteParams::default())
        .await
        .unwrap();
    ns.eventually(
        "the FineTuneJob is deleted without the PyTorchJob kind",
        || async { ns.jobs().get_opt("waits").await.unwrap().is_none() },
    )
    .await;
    ns.wait_for_event("waits", "Cancelled").await;

    // Leave the cluster as it was: the CRD back, the training operator and the garbage
    // collector working with it again (the collector rediscovers kinds every 30 s).
    restore_crd().expect("restore the PyTorchJob CRD");
    std::mem::forget(restore);
    let probe: PyTorchJob = serde_json::from_value(json!({
        "apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob",
        "metadata": {"name": "probe", "namespace": ns.name},
        "spec": {"pytorchReplicaSpecs": {"Master": {"replicas": 1, "restartPolicy": "Never",
            "template": {"metadata": {"annotations": {"sim.finetune.dev/duration": "10m"}},
                         "spec": {"containers": [{"name": "pytorch", "image": "busybox"}]}}}}},
    }))
    .unwrap();
    let probes = ns.api::<PyTorchJob>();
    ns.eventually("the PyTorchJob kind is served again", || async {
        probes.create(&PostParams::default(), &probe).await.is_ok()
    })
    .await;
    ns.eventually("the training operator runs the probe's pod", || async {
        ns.api::<Pod>()
            .get_opt("probe-master-0")
            .await
            .unwrap()
            .is_some()
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    probes
        .delete("probe", &DeleteParams::foreground())
        .await
        .unwrap();
    ns.eventually("the garbage collector removes the probe's pod", || async {
        ns.api::<Pod>()
            .get_opt("probe-master-0")
            .await
            .unwrap()
            .is_none()
            && probes.get_opt("probe").await.unwrap().is_none()
    })
    .await;
}
