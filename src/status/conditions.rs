//! metav1.Condition bookkeeping: a condition's lastTransitionTime moves only when its status
//! changes, so an unchanged world produces an identical status (and no write).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// Sets condition `type_` to `status` with `reason` and `message`. The transition time is kept
/// from the existing condition when the status did not change.
pub fn set(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: bool,
    reason: &str,
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

/// Whether condition `type_` is present and True.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    conditions
        .iter()
        .any(|c| c.type_ == type_ && c.status == "True")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn time(s: &str) -> Time {
        Time(s.parse().unwrap())
    }

    #[test]
    fn transition_time_moves_only_on_status_change() {
        let t1 = time("2026-01-01T00:00:00Z");
        let t2 = time("2026-01-01T00:01:00Z");
        let mut c = Vec::new();
        set(&mut c, "Ready", false, "Waiting", "a", Some(1), &t1);
        set(&mut c, "Ready", false, "StillWaiting", "b", Some(2), &t2);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].last_transition_time, t1);
        assert_eq!(c[0].reason, "StillWaiting");
        assert_eq!(c[0].observed_generation, Some(2));
        set(&mut c, "Ready", true, "Done", "c", Some(2), &t2);
        assert_eq!(c[0].last_transition_time, t2);
        assert!(is_true(&c, "Ready"));
        assert!(!is_true(&c, "Other"));
    }
}
