//! Publishing planned events, with the last log lines of the container they are about.

use k8s_openapi::api::core::v1::Pod;
use kube::api::LogParams;
use kube::runtime::events::{Event, EventType};
use kube::{Api, Resource};
use tracing::debug;

use super::Context;
use crate::api::FineTuneJob;
use crate::logs::{TAIL_LIMIT_BYTES, TAIL_LINES, compose_note};
use crate::status::{LogSource, PlannedEvent, Severity};

pub async fn publish(
    job: &FineTuneJob,
    planned: &PlannedEvent,
    ctx: &Context,
    ns: &str,
) -> Result<(), kube::Error> {
    let log = match &planned.tail {
        Some(source) => tail(ctx, ns, source).await,
        None => None,
    };
    let event = Event {
        type_: match planned.severity {
            Severity::Normal => EventType::Normal,
            Severity::Warning => EventType::Warning,
        },
        reason: planned.reason.to_string(),
        note: Some(compose_note(&planned.note, log.as_deref())),
        action: planned.reason.to_string(),
        secondary: None,
    };
    ctx.recorder.publish(&event, &job.object_ref(&())).await
}

/// The last lines of a container's log, bounded in lines and bytes. A missing pod or log is not
/// an error: the event is still worth publishing without it.
async fn tail(ctx: &Context, ns: &str, source: &LogSource) -> Option<String> {
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    let params = LogParams {
        container: Some(source.container.clone()),
        tail_lines: Some(TAIL_LINES),
        limit_bytes: Some(TAIL_LIMIT_BYTES),
        ..Default::default()
    };
    match pods.logs(&source.pod, &params).await {
        Ok(log) => Some(log),
        Err(e) => {
            debug!(pod = %source.pod, error = %e, "no log tail for event");
            None
        }
    }
}
