//! One reconcile of one FineTuneJob, and what happens when it fails.
//!
//! Each reconcile runs in a span that names the job, so every log line below it says which job
//! it is about without repeating it.

use std::sync::Arc;
use std::time::Duration;

use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, ResourceExt};
use tracing::{Instrument, info_span, warn};

use super::error::{self, Error};
use super::{Context, act, cache, deletion, fetch, finalizer};
use crate::api::{FineTuneJob, Phase};
use crate::status;

/// Reconciles one FineTuneJob. A panic inside (a bug, whatever input caused it) becomes an error
/// for this object only, retried with backoff: one bad job never stops the process or the others.
pub async fn reconcile(cached: Arc<FineTuneJob>, ctx: Arc<Context>) -> Result<Action, Error> {
    let span = job_span(&cached);
    catch_panics(reconcile_job(cached, ctx))
        .instrument(span)
        .await
}

/// The span of everything done for one job: its namespace and name.
fn job_span(job: &FineTuneJob) -> tracing::Span {
    info_span!(
        "reconcile",
        namespace = job.metadata.namespace.as_deref().unwrap_or_default(),
        job = %job.name_any()
    )
}

/// Turns a panic of `reconcile` into [`Error::Panicked`]. The shared state a panic could leave
/// half-written is behind mutexes whose poisoning is ignored on purpose: each holds maps of
/// plain values that stay valid at every step.
pub(super) async fn catch_panics(
    reconcile: impl Future<Output = Result<Action, Error>>,
) -> Result<Action, Error> {
    use futures::FutureExt;
    match std::panic::AssertUnwindSafe(reconcile).catch_unwind().await {
        Ok(result) => result,
        Err(payload) => Err(Error::Panicked(error::panic_message(payload.as_ref()))),
    }
}

async fn reconcile_job(cached: Arc<FineTuneJob>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.metrics.reconcile_started();
    if status::is_settled(&cached) {
        return Ok(Action::await_change());
    }
    let ns = cached.namespace().ok_or(Error::MissingNamespace)?;
    let api: Api<FineTuneJob> = Api::namespaced(ctx.client.clone(), &ns);
    // Deciding on a copy older than our own last status write could repeat an event or a
    // transition. The cached copy is used when it holds that write. When it does not yet, the
    // watch event carrying the write is on its way and starts the next reconcile: wait for it
    // rather than spend a read (the requeue is the fallback should it never come). Only a cache
    // behind for longer than that is read from the apiserver.
    let job = match ctx.written.check(&cached, std::time::Instant::now()) {
        cache::Freshness::Current => (*cached).clone(),
        cache::Freshness::Behind(wait) => return Ok(Action::requeue(wait)),
        cache::Freshness::Stale => {
            let fresh = api
                .get_opt(&cached.name_any())
                .await
                .map_err(|source| Error::Kube {
                    action: "get_finetunejob",
                    source,
                })?;
            match fresh {
                Some(job) => {
                    ctx.written.record_read(&job);
                    job
                }
                None => {
                    ctx.forget(&ObjectRef::from(cached.as_ref()));
                    return Ok(Action::await_change());
                }
            }
        }
    };

    if job.metadata.deletion_timestamp.is_some() {
        return match finalizer::has_finalizer(&job) {
            true => deletion::run(&api, &job, &ctx).await,
            false => Ok(Action::await_change()),
        };
    }
    // A new job's finalizer is written together with its first children (see `act::act`).
    let needs_finalizer = !finalizer::has_finalizer(&job);
    // A new job is decided from its first status (Pending, Accepted) without writing that
    // status on its own: the same pass writes whatever follows. It is Pending itself when the
    // job does wait (a queue, a missing kind, another job on its output), and otherwise the job
    // goes straight to its first child (Initializing or Training), one status write sooner.
    let mut stored = job.status.clone();
    let mut job = job;
    if stored.is_none() {
        job.status = Some(status::accepted(&job, &ctx.now()));
        // Log reads of jobs already training give way while new ones start.
        ctx.followers.job_started(std::time::Instant::now());
    }

    let decided = async {
        let observed = fetch::observe(&ctx, &job, status::needs(&job)).await?;
        let decision = status::decide(&job, &observed);
        let requeue = decision.requeue_after;
        let training = decision.status.phase == Some(Phase::Training);
        let finalizing = async {
            if needs_finalizer {
                finalizer::add(&api, &job, &ctx).await?;
            }
            Ok(())
        };
        act::act(&job, &mut stored, decision, &ctx, finalizing).await?;
        Ok::<_, Error>((requeue, training))
    }
    .await;
    let (requeue, training) = match decided {
        Ok(done) => done,
        Err(e) => {
            // The pass failed before a new job had any status: it is shown Pending while the
            // pass is retried, as it would have been with the first status written first.
            if stored.is_none()
                && let Some(first) = &job.status
                && let Err(also) = act::patch_status(&job, first, &ctx).await
            {
                warn!(error = %also, "could not write the first status");
            }
            return Err(e);
        }
    };
    if !training {
        ctx.followers.forget(&ObjectRef::from(&job));
    }
    ctx.failures
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .remove(&ObjectRef::from(&job));
    Ok(requeue.map_or_else(Action::await_change, Action::requeue))
}

/// Retries with exponential backoff per object: 5 s, 10 s, 20 s … up to 5 minutes.
pub fn error_policy(job: Arc<FineTuneJob>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.reconcile_failed(error.metric_label());
    let mut failures = ctx
        .failures
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let count = failures.entry(ObjectRef::from(job.as_ref())).or_insert(0);
    *count = count.saturating_add(1);
    let delay = Duration::from_secs(5u64.saturating_mul(1 << (*count - 1).min(6)))
        .min(Duration::from_secs(300));
    job_span(&job).in_scope(|| warn!(error = %error, retry_in = ?delay, "reconcile failed"));
    Action::requeue(delay)
}
