//! Publishing planned events, with the last log lines of the container they are about (training
//! samples dropped, secrets masked: [`crate::logs::redact`]), unless log tails are turned off.

use kube::Resource;
use kube::runtime::events::{Event, EventType};

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
    ctx.recorder.publish(&event, &job.object_ref(&())).await
}
