//! The jobs of a measurement: what the driver creates, and when it saw each job's PyTorchJob,
//! phase Training and phase Succeeded, and each rise of its progress step, through watches it
//! holds on the namespace.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use finetune_operator::api::{FineTuneJob, Phase, PyTorchJob};
use futures::StreamExt;
use kube::api::PostParams;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use testkit::fixtures::finetunejob;

use crate::Res;
use crate::settings::{APPLY_CONCURRENCY, LONG_WAIT};

/// A one-node, one-GPU FineTuneJob of three epochs without preprocessing; kwok runs its pod for
/// `duration`.
pub fn job(name: &str, namespace: &str, duration: &str) -> FineTuneJob {
    finetunejob(name, json!({"sim.finetune.dev/duration": duration}))
        .namespace(namespace)
        .epochs(3)
        .nodes(1, 1)
        .build()
}

/// `<prefix>-00000`, `<prefix>-00001`, ...
pub fn names(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i:05}")).collect()
}

/// Creates the jobs, `APPLY_CONCURRENCY` at a time; returns when each create returned.
pub async fn apply(client: &Client, jobs: Vec<FineTuneJob>) -> Res<HashMap<String, Instant>> {
    let results: Vec<Res<(String, Instant)>> = futures::stream::iter(jobs)
        .map(|job| {
            let api: Api<FineTuneJob> =
                Api::namespaced(client.clone(), &job.namespace().unwrap_or_default());
            async move {
                let created = api.create(&PostParams::default(), &job).await?;
                Ok((created.name_any(), Instant::now()))
            }
        })
        .buffer_unordered(APPLY_CONCURRENCY)
        .collect()
        .await;
    results.into_iter().collect()
}

/// When the driver first saw each job's PyTorchJob, phase Training and phase Succeeded, by the
/// local clock of watch events.
#[derive(Default)]
pub struct Seen {
    pub pytorch_job: HashMap<String, Instant>,
    pub training: HashMap<String, Instant>,
    pub succeeded: HashMap<String, Instant>,
    /// Per job, each `status.progress.step` higher than the last, and when it was first seen.
    pub progress: HashMap<String, Vec<(i64, Instant)>>,
}

impl Seen {
    /// When the job's progress step was first seen at `step` or above.
    pub fn step_seen(&self, name: &str, step: i64) -> Option<Instant> {
        self.progress
            .get(name)?
            .iter()
            .find(|(s, _)| *s >= step)
            .map(|(_, at)| *at)
    }
}

pub struct Tracker {
    pub seen: Arc<Mutex<Seen>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Tracker {
    /// Watches the namespace's PyTorchJobs and FineTuneJobs; returns once both watches have
    /// listed, so that nothing created afterwards is missed.
    pub async fn start(client: &Client, namespace: &str) -> Res<Self> {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(2);
        let ptj_api: Api<PyTorchJob> = Api::namespaced(client.clone(), namespace);
        let ftj_api: Api<FineTuneJob> = Api::namespaced(client.clone(), namespace);
        let s = seen.clone();
        let ready = tx.clone();
        let ptj = tokio::spawn(async move {
            let mut stream =
                std::pin::pin!(watcher(ptj_api, watcher::Config::default()).default_backoff());
            while let Some(event) = stream.next().await {
                match event {
                    Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p)) => {
                        let now = Instant::now();
                        s.lock()
                            .unwrap()
                            .pytorch_job
                            .entry(p.name_any())
                            .or_insert(now);
                    }
                    Ok(watcher::Event::InitDone) => {
                        let _ = ready.try_send(());
                    }
                    _ => {}
                }
            }
        });
        let s = seen.clone();
        let ftj = tokio::spawn(async move {
            let mut stream =
                std::pin::pin!(watcher(ftj_api, watcher::Config::default()).default_backoff());
            while let Some(event) = stream.next().await {
                match event {
                    Ok(watcher::Event::Apply(j) | watcher::Event::InitApply(j)) => {
                        let now = Instant::now();
                        let phase = j.status.as_ref().and_then(|s| s.phase);
                        let mut seen = s.lock().unwrap();
                        if matches!(
                            phase,
                            Some(Phase::Training | Phase::Succeeded | Phase::Failed)
                        ) {
                            seen.training.entry(j.name_any()).or_insert(now);
                        }
                        if matches!(phase, Some(Phase::Succeeded | Phase::Failed)) {
                            seen.succeeded.entry(j.name_any()).or_insert(now);
                        }
                        let step = j
                            .status
                            .as_ref()
                            .and_then(|s| s.progress.as_ref())
                            .and_then(|p| p.step);
                        if let Some(step) = step {
                            let steps = seen.progress.entry(j.name_any()).or_default();
                            if steps.last().is_none_or(|(last, _)| step > *last) {
                                steps.push((step, now));
                            }
                        }
                    }
                    Ok(watcher::Event::InitDone) => {
                        let _ = tx.try_send(());
                    }
                    _ => {}
                }
            }
        });
        for _ in 0..2 {
            tokio::time::timeout(Duration::from_secs(120), rx.recv())
                .await
                .map_err(|_| "the driver's watches did not start")?;
        }
        Ok(Self {
            seen,
            tasks: vec![ptj, ftj],
        })
    }

    /// Waits until `done` holds for `n` names; returns the latest instant among them.
    pub async fn wait(
        &self,
        what: &str,
        names: &[String],
        done: fn(&Seen, &str) -> Option<Instant>,
    ) -> Res<Instant> {
        let deadline = Instant::now() + LONG_WAIT;
        let mut last_note = Instant::now();
        loop {
            let (count, latest) = {
                let seen = self.seen.lock().unwrap();
                let times: Vec<Instant> = names.iter().filter_map(|n| done(&seen, n)).collect();
                (times.len(), times.into_iter().max())
            };
            if count == names.len() {
                return Ok(latest.unwrap_or_else(Instant::now));
            }
            if Instant::now() > deadline {
                return Err(format!("timed out: {count}/{} jobs {what}", names.len()).into());
            }
            if last_note.elapsed() > Duration::from_secs(30) {
                say!("  {count}/{} jobs {what}", names.len());
                last_note = Instant::now();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Tracker {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// When the job had both its PyTorchJob and phase Training.
pub fn child_and_training(seen: &Seen, name: &str) -> Option<Instant> {
    Some(*seen.pytorch_job.get(name)?.max(seen.training.get(name)?))
}

/// When the job had finished.
pub fn succeeded(seen: &Seen, name: &str) -> Option<Instant> {
    seen.succeeded.get(name).copied()
}
