//! Publishing planned events, with the last log lines of the container they are about (training
//! samples dropped, secrets masked: [`crate::logs::redact`]), unless log tails are turned off.
//!
//! Events are composed in the reconcile (a log tail is read before the children are deleted),
//! and sent either there or, with [`EventQueue`], by a task of their own after the reconcile
//! moved on: an event is not on the way to anything else, so a burst of new jobs should not wait
//! for its TrainingStarted events before the next job gets its child.

use futures::StreamExt;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::Resource;
use kube::runtime::events::{Event, EventType, Recorder};
use tokio::sync::mpsc;
use tracing::warn;

use super::Context;
use super::fetch::log_tail;
use crate::api::FineTuneJob;
use crate::logs::compose_note;
use crate::status::{PlannedEvent, Severity, Tail};

pub async fn publish(
    job: &FineTuneJob,
    planned: &PlannedEvent,
    ctx: &Context,
    ns: &str,
) -> Result<(), kube::Error> {
    let log = match &planned.tail {
        _ if !ctx.log_tails => None,
        Some(Tail::Fetch(source)) => log_tail(&ctx.client, ns, source).await,
        Some(Tail::Text(text)) => Some(text.clone()),
        None => None,
    };
    let event = Event {
        type_: match planned.severity {
            Severity::Normal => EventType::Normal,
            Severity::Warning => EventType::Warning,
        },
        reason: planned.reason.to_string(),
        note: Some(compose_note(&planned.note, log.as_deref())),
        action: planned.action.clone(),
        secondary: None,
    };
    let regarding = job.object_ref(&());
    match &ctx.event_queue {
        Some(queue) => {
            queue.send(regarding, event);
            Ok(())
        }
        None => ctx.recorder.publish(&event, &regarding).await,
    }
}

/// Events waiting to be sent, and the task that sends them, `CONCURRENCY` at a time. Bounded:
/// when the apiserver cannot keep up and `CAPACITY` events wait, a new one is dropped with a
/// warning (events are best effort; the status holds the same facts).
pub struct EventQueue {
    waiting: mpsc::Sender<(ObjectReference, Event)>,
}

impl EventQueue {
    const CAPACITY: usize = 10_000;
    const CONCURRENCY: usize = 4;

    /// Starts the sending task on the current tokio runtime.
    pub fn start(recorder: Recorder) -> Self {
        let (waiting, receiver) = mpsc::channel::<(ObjectReference, Event)>(Self::CAPACITY);
        let queued = futures::stream::unfold(receiver, |mut receiver| async move {
            receiver.recv().await.map(|item| (item, receiver))
        });
        tokio::spawn(
            queued.for_each_concurrent(Self::CONCURRENCY, move |(regarding, event)| {
                let recorder = recorder.clone();
                async move {
                    if let Err(e) = recorder.publish(&event, &regarding).await {
                        warn!(reason = %event.reason, error = %e, "could not publish event");
                    }
                }
            }),
        );
        Self { waiting }
    }

    fn send(&self, regarding: ObjectReference, event: Event) {
        if let Err(e) = self.waiting.try_send((regarding, event)) {
            let (regarding, event) = match e {
                mpsc::error::TrySendError::Full(item) | mpsc::error::TrySendError::Closed(item) => {
                    item
                }
            };
            warn!(
                reason = %event.reason,
                job = regarding.name.as_deref().unwrap_or_default(),
                "too many events waiting to be sent; dropped this one"
            );
        }
    }
}
