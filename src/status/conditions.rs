//! metav1.Condition bookkeeping: a condition's lastTransitionTime moves only when its status
//! changes, so an unchanged world produces an identical status (and no write). The one reader and
//! writer of the FineTuneJob's own condition list; pure.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use super::reason::Reason;

/// Sets condition `type_` to `status` with `reason` and `message`. The transition time is kept
/// from the existing condition when the status did not change.
pub fn set(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: bool,
    reason: Reason,
    message: impl Into<String>,
    generation: Option<i64>,
    now: &Time,
) {
    let status = if status { "True" } else { "False" }.to_string();
    let message = message.into();
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(existing) => {
            if existing.status != status {
                existing.last_transition_time = now.clone();
                existing.status = status;
            }
            existing.reason = reason.to_string();
            existing.message = message;
            existing.observed_generation = generation;
        }
        None => conditions.push(Condition {
            type_: type_.to_string(),
            status,
            reason: reason.to_string(),
            message,
            observed_generation: generation,
            last_transition_time: now.clone(),
        }),
    }
}

/// Condition `type_` when it is True: the one reader of the FineTuneJob's condition list.
pub fn true_condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions
        .iter()
        .find(|c| c.type_ == type_ && c.status == "True")
}

/// Whether condition `type_` is present and True.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    true_condition(conditions, type_).is_some()
}

/// Condition `type_` when it is True for `reason`.
pub fn true_for<'a>(
    conditions: &'a [Condition],
    type_: &str,
    reason: Reason,
) -> Option<&'a Condition> {
    true_condition(conditions, type_).filter(|c| c.reason == reason)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::reason::{ACCEPTED, PROGRESSING, QUEUED};

    fn time(s: &str) -> Time {
        Time(s.parse().unwrap())
    }

    #[test]
    fn transition_time_moves_only_on_status_change() {
        let t1 = time("2026-01-01T00:00:00Z");
        let t2 = time("2026-01-01T00:01:00Z");
        let mut c = Vec::new();
        set(&mut c, "Ready", false, QUEUED, "a", Some(1), &t1);
        set(&mut c, "Ready", false, PROGRESSING, "b", Some(2), &t2);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].last_transition_time, t1);
        assert_eq!(c[0].reason, "Progressing");
        assert_eq!(c[0].observed_generation, Some(2));
        set(&mut c, "Ready", true, ACCEPTED, "c", Some(2), &t2);
        assert_eq!(c[0].last_transition_time, t2);
        assert!(is_true(&c, "Ready"));
        assert!(!is_true(&c, "Other"));
        assert!(true_for(&c, "Ready", ACCEPTED).is_some());
        assert!(true_for(&c, "Ready", QUEUED).is_none());
    }
}
