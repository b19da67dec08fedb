//! The JobSet each of our TrainJobs controls, by UID: how a TrainJob's pods (controlled by the
//! JobSet's Jobs, labelled with its UID) are known as ours.

use std::collections::HashMap;
use std::sync::Mutex;

use kube::runtime::reflector::ObjectRef;

use crate::api::FineTuneJob;

/// Per FineTuneJob: its TrainJob's UID and the UID of the JobSet that TrainJob controls. Read
/// once per TrainJob: the relation never changes, and a new TrainJob (a new attempt) has a new
/// UID, so an entry of an earlier one is never used for it.
#[derive(Default)]
pub struct JobSetUids(Mutex<HashMap<ObjectRef<FineTuneJob>, (String, String)>>);

impl JobSetUids {
    /// The JobSet UID kept for `train_job_uid`, if any.
    pub fn get(&self, job: &ObjectRef<FineTuneJob>, train_job_uid: &str) -> Option<String> {
        let map = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (train_job, jobset) = map.get(job)?;
        (train_job == train_job_uid).then(|| jobset.clone())
    }

    pub fn set(&self, job: ObjectRef<FineTuneJob>, train_job_uid: &str, jobset_uid: &str) {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(job, (train_job_uid.to_string(), jobset_uid.to_string()));
    }

    pub fn forget(&self, job: &ObjectRef<FineTuneJob>) {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(job);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_jobset_uid_is_kept_for_its_own_trainjob_only() {
        let uids = JobSetUids::default();
        let job = ObjectRef::new("ft").within("ns");
        assert_eq!(uids.get(&job, "tj-1"), None);
        uids.set(job.clone(), "tj-1", "js-1");
        assert_eq!(uids.get(&job, "tj-1").as_deref(), Some("js-1"));
        // A new attempt's TrainJob has another UID: its JobSet is read anew.
        assert_eq!(uids.get(&job, "tj-2"), None);
        uids.forget(&job);
        assert_eq!(uids.get(&job, "tj-1"), None);
    }
}
