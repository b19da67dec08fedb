//! The operator's own last write of each FineTuneJob, until the controller's cache holds it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;

use crate::api::FineTuneJob;

/// The resourceVersion each FineTuneJob had after the operator's own last write, until the
/// controller's cache has caught up with it. resourceVersions are only compared for equality.
#[derive(Default)]
pub struct Written {
    versions: Mutex<HashMap<ObjectRef<FineTuneJob>, (String, Instant)>>,
}

/// How long a cache behind the operator's own write is waited for before the object is read.
/// The watch event of a write normally arrives within milliseconds and starts the next
/// reconcile itself; the wait ends early then. A cache that never shows that exact version
/// (someone else wrote again before the watch caught up) is read once this has passed.
pub const WATCH_GRACE: Duration = Duration::from_secs(2);

/// Whether the cached copy can be decided on.
#[derive(Debug, PartialEq, Eq)]
pub enum Freshness {
    /// It holds the operator's last write (or the operator wrote nothing since it started).
    Current,
    /// The cache has not yet caught up with a write made this long ago: the watch event that
    /// carries it is on its way and reconciles the job again. Decide nothing now.
    Behind(Duration),
    /// The cache has not caught up within [`WATCH_GRACE`]: read the object.
    Stale,
}

impl Written {
    pub fn check(&self, cached: &FineTuneJob, now: Instant) -> Freshness {
        let key = ObjectRef::from(cached);
        let mut versions = self
            .versions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match versions.get(&key) {
            None => Freshness::Current,
            Some((v, _)) if cached.resource_version().as_ref() == Some(v) => {
                versions.remove(&key);
                Freshness::Current
            }
            Some((_, at)) => match now.saturating_duration_since(*at) {
                age if age < WATCH_GRACE => Freshness::Behind(WATCH_GRACE - age),
                _ => Freshness::Stale,
            },
        }
    }

    /// Remembers the version a write returned: the cache is trusted again once it holds exactly
    /// this version.
    pub fn record(&self, object: &FineTuneJob) {
        self.record_at(object, Instant::now());
    }

    /// Remembers the version a read returned. The wait for the cache starts over from
    /// [`WATCH_GRACE`] ago: the object has been read once, so a cache still behind it is read
    /// again rather than waited for.
    pub fn record_read(&self, object: &FineTuneJob) {
        let now = Instant::now();
        self.record_at(object, now.checked_sub(WATCH_GRACE).unwrap_or(now));
    }

    fn record_at(&self, object: &FineTuneJob, at: Instant) {
        if let Some(version) = object.resource_version() {
            self.versions
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(ObjectRef::from(object), (version, at));
        }
    }

    pub fn forget(&self, key: &ObjectRef<FineTuneJob>) {
        self.versions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ftj(version: &str) -> FineTuneJob {
        crate::testing::JobFixture::new("ft")
            .meta(json!({"namespace": "ns", "resourceVersion": version}))
            .build()
    }

    #[test]
    fn a_cached_copy_is_trusted_once_it_holds_the_last_write() {
        let written = Written::default();
        let now = Instant::now();
        assert_eq!(written.check(&ftj("5"), now), Freshness::Current);
        written.record_at(&ftj("7"), now);
        assert_eq!(
            written.check(&ftj("5"), now),
            Freshness::Behind(WATCH_GRACE)
        );
        assert_eq!(written.check(&ftj("7"), now), Freshness::Current);
        // Caught up: later versions (someone else's changes) are trusted.
        assert_eq!(written.check(&ftj("9"), now), Freshness::Current);
    }

    #[test]
    fn a_cache_behind_for_longer_than_the_grace_is_read() {
        let written = Written::default();
        let then = Instant::now();
        written.record_at(&ftj("7"), then);
        let soon = then + Duration::from_millis(500);
        assert_eq!(
            written.check(&ftj("5"), soon),
            Freshness::Behind(WATCH_GRACE - Duration::from_millis(500))
        );
        // Someone else wrote version 9 before the watch delivered 7: the cache never holds 7.
        assert_eq!(
            written.check(&ftj("9"), then + WATCH_GRACE),
            Freshness::Stale
        );
    }

    #[test]
    fn a_cache_behind_a_read_is_read_again_without_waiting() {
        let written = Written::default();
        written.record_read(&ftj("9"));
        assert_eq!(written.check(&ftj("5"), Instant::now()), Freshness::Stale);
        assert_eq!(written.check(&ftj("9"), Instant::now()), Freshness::Current);
    }
}
