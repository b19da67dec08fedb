//! The operator's own last write of each FineTuneJob, until the controller's cache holds it.

use std::collections::HashMap;
use std::sync::Mutex;

use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;

use crate::api::FineTuneJob;

/// The resourceVersion each FineTuneJob had after the operator's own last write, until the
/// controller's cache has caught up with it. resourceVersions are only compared for equality.
#[derive(Default)]
pub struct Written {
    versions: Mutex<HashMap<ObjectRef<FineTuneJob>, String>>,
}

/// Whether the cached copy can be decided on.
#[derive(Debug, PartialEq, Eq)]
pub enum Freshness {
    /// It holds the operator's last write (or the operator wrote nothing since it started).
    Current,
    /// The cache has not yet caught up with the operator's last write: read the object.
    Stale,
}

impl Written {
    pub fn check(&self, cached: &FineTuneJob) -> Freshness {
        let key = ObjectRef::from(cached);
        let mut versions = self
            .versions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match versions.get(&key) {
            None => Freshness::Current,
            Some(v) if cached.resource_version().as_ref() == Some(v) => {
                versions.remove(&key);
                Freshness::Current
            }
            Some(_) => Freshness::Stale,
        }
    }

    /// Remembers the version a write (or a read after one) returned: the cache is trusted again
    /// once it holds exactly this version.
    pub fn record(&self, object: &FineTuneJob) {
        if let Some(version) = object.resource_version() {
            self.versions
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(ObjectRef::from(object), version);
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
        assert_eq!(written.check(&ftj("5")), Freshness::Current);
        written.record(&ftj("7"));
        assert_eq!(written.check(&ftj("5")), Freshness::Stale);
        assert_eq!(written.check(&ftj("7")), Freshness::Current);
        // Caught up: later versions (someone else's changes) are trusted.
        assert_eq!(written.check(&ftj("9")), Freshness::Current);
    }
}
