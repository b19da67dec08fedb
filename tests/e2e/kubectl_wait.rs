//! `kubectl wait` in pipelines: the `Complete` and `Failed` conditions follow the Job conventions,
//! so `kubectl wait --for=condition=Complete` returns when a job succeeds and
//! `--for=condition=Failed` when it fails; neither returns for the other outcome before its
//! timeout. The README's "Waiting for a job in CI pipelines" snippet, run here as written, returns
//! as soon as the job ends either way and prints the failure reason.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use finetune_operator::api::Phase;
use serde_json::json;
use testkit::e2e::*;

/// The README section whose first `bash` block the tests run.
const SECTION: &str = "## Waiting for a job in CI pipelines";

/// The snippet's own timeout: far longer than any of these jobs, so a snippet that returns
/// before it returned because the job ended.
const SNIPPET_TIMEOUT: &str = "10m";

/// The README's snippet, as written.
fn readme_snippet() -> String {
    let readme = std::fs::read_to_string(testkit::repo().join("README.md")).expect("README.md");
    let section = readme
        .split_once(SECTION)
        .unwrap_or_else(|| panic!("README.md has no section {SECTION:?}"))
        .1;
    let block = section
        .split_once("```bash\n")
        .expect("a bash block in the section")
        .1;
    block
        .split_once("```")
        .expect("the end of the block")
        .0
        .to_string()
}

/// Runs the README's snippet with bash, the cluster's kubectl first on PATH, for job `name` in
/// namespace `ns`.
fn run_snippet(ns: &str, name: &str) -> (Output, Duration) {
    let c = cluster();
    let path = format!(
        "{}:{}",
        c.bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let started = Instant::now();
    let out = Command::new("bash")
        .args(["-c", &readme_snippet()])
        .env("PATH", path)
        .env("KUBECONFIG", &c.admin_kubeconfig)
        .env("NAMESPACE", ns)
        .env("JOB", name)
        .env("TIMEOUT", SNIPPET_TIMEOUT)
        .output()
        .expect("run bash");
    (out, started.elapsed())
}

/// `kubectl wait` for `condition` on FineTuneJob `name`, with its exit status and how long it
/// took.
fn kubectl_wait(ns: &str, name: &str, condition: &str, timeout: &str) -> (Output, Duration) {
    let started = Instant::now();
    let out = kubectl(&[
        "wait",
        "-n",
        ns,
        &format!("ftj/{name}"),
        &format!("--for=condition={condition}"),
        &format!("--timeout={timeout}"),
    ]);
    (out, started.elapsed())
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_wait_for_complete_returns_when_the_job_succeeds() {
    let ns = TestNamespace::new("waitok").await;
    let _operator = Operator::start(&ns.name);
    ns.create(finetunejob(
        "waitok",
        json!({"sim.finetune.dev/duration": "3s"}),
    ))
    .await;

    // Both start while the job is still pending or training.
    let ((wait, wait_took), (snippet, snippet_took)) = std::thread::scope(|s| {
        let snippet = s.spawn(|| run_snippet(&ns.name, "waitok"));
        let wait = kubectl_wait(&ns.name, "waitok", "Complete", "120s");
        (wait, snippet.join().unwrap())
    });
    println!("kubectl wait --for=condition=Complete, job succeeded: exit 0 after {wait_took:?}");
    println!("README snippet, job succeeded: exit 0 after {snippet_took:?}");
    assert!(wait.status.success(), "{}", text(&wait.stderr));
    assert!(
        text(&wait.stdout).contains("finetunejob.finetune.dev/waitok condition met"),
        "{}",
        text(&wait.stdout)
    );
    assert_eq!(
        snippet.status.code(),
        Some(0),
        "{}{}",
        text(&snippet.stdout),
        text(&snippet.stderr)
    );
    assert!(
        text(&snippet.stdout).contains("FineTuneJob waitok: Succeeded"),
        "{}",
        text(&snippet.stdout)
    );
    let job = ns.jobs().get("waitok").await.unwrap();
    assert_eq!(phase(&job), Some(Phase::Succeeded));

    // Waiting for the other outcome ends at its timeout, with an error.
    let (failed, failed_took) = kubectl_wait(&ns.name, "waitok", "Failed", "3s");
    assert!(!failed.status.success());
    assert!(
        text(&failed.stderr).contains("timed out waiting for the condition"),
        "{}",
        text(&failed.stderr)
    );
    assert!(failed_took < Duration::from_secs(60), "{failed_took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_wait_for_failed_returns_when_the_job_fails_and_complete_does_not_hang() {
    let ns = TestNamespace::new("waitfail").await;
    let _operator = Operator::start(&ns.name);
    ns.create(finetunejob(
        "waitfail",
        json!({"sim.finetune.dev/duration": "2s", "sim.finetune.dev/exit-code": "1"}),
    ))
    .await;

    let ((wait, wait_took), (snippet, snippet_took)) = std::thread::scope(|s| {
        let snippet = s.spawn(|| run_snippet(&ns.name, "waitfail"));
        let wait = kubectl_wait(&ns.name, "waitfail", "Failed", "120s");
        (wait, snippet.join().unwrap())
    });
    println!("kubectl wait --for=condition=Failed, job failed: exit 0 after {wait_took:?}");
    println!("README snippet, job failed: exit 1 after {snippet_took:?}");
    assert!(wait.status.success(), "{}", text(&wait.stderr));
    assert!(
        text(&wait.stdout).contains("finetunejob.finetune.dev/waitfail condition met"),
        "{}",
        text(&wait.stdout)
    );

    // The snippet returned because the job ended, long before its own timeout, with exit 1 and
    // the phase, reason and message.
    let stderr = text(&snippet.stderr);
    assert_eq!(
        snippet.status.code(),
        Some(1),
        "{}{stderr}",
        text(&snippet.stdout)
    );
    assert!(snippet_took < Duration::from_secs(120), "{snippet_took:?}");
    let job = ns.jobs().get("waitfail").await.unwrap();
    assert_eq!(phase(&job), Some(Phase::Failed));
    let status = job.status.unwrap();
    let (reason, message) = (status.reason.unwrap(), status.message.unwrap());
    assert_eq!(reason, "TrainingFailed");
    assert!(
        stderr.contains(&format!(
            "FineTuneJob waitfail: Failed: {reason}: {message}"
        )),
        "{stderr}"
    );

    // `--for=condition=Complete` on a failed job does not return success: it ends at its
    // timeout, with an error. Hence the snippet's two waits.
    let (complete, complete_took) = kubectl_wait(&ns.name, "waitfail", "Complete", "3s");
    println!(
        "kubectl wait --for=condition=Complete --timeout=3s, job failed: exit {:?} after {complete_took:?}",
        complete.status.code()
    );
    assert!(!complete.status.success());
    assert!(
        text(&complete.stderr).contains("timed out waiting for the condition"),
        "{}",
        text(&complete.stderr)
    );
    assert!(complete_took < Duration::from_secs(60), "{complete_took:?}");
}
