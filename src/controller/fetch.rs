//! Reading the world: the children and pods of one FineTuneJob, as [`status::needs`] asks.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::ListParams;
use kube::{Api, Client, Resource, ResourceExt};

use super::error::{Error, KubeContext};
use crate::api::{FineTuneJob, JOB_NAME_LABEL, PyTorchJob};
use crate::build::preprocess_job_name;
use crate::status::{Lookup, Needs, Observed};

/// The current time at whole seconds, as the apiserver stores it.
pub fn now() -> Time {
    let ts = jiff::Timestamp::now();
    Time(jiff::Timestamp::from_second(ts.as_second()).expect("a current timestamp is in range"))
}

pub async fn observe(client: &Client, job: &FineTuneJob, needs: Needs) -> Result<Observed, Error> {
    let ns = job.namespace().ok_or(Error::MissingNamespace)?;
    let name = job.name_any();

    let preprocess_job = if needs.preprocess_job {
        let jobs: Api<Job> = Api::namespaced(client.clone(), &ns);
        jobs.get_opt(&preprocess_job_name(&name))
            .await
            .during("get_preprocess_job")?
            .map_or(Lookup::Absent, Lookup::Present)
    } else {
        Lookup::Skipped
    };

    let pytorch_job = if needs.pytorch_job {
        let api: Api<PyTorchJob> = Api::namespaced(client.clone(), &ns);
        match api.get_opt(&name).await.during("get_pytorchjob")? {
            Some(p) => Lookup::Present(p),
            // A 404 is also what a missing kind looks like; ask discovery which it is.
            None if pytorchjob_kind_installed(client).await? => Lookup::Absent,
            None => Lookup::KindMissing,
        }
    } else {
        Lookup::Skipped
    };

    let pods = if needs.pods {
        let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
        let selector = format!("{JOB_NAME_LABEL}={name}");
        api.list(&ListParams::default().labels(&selector))
            .await
            .during("list_pods")?
            .items
    } else {
        Vec::new()
    };

    Ok(Observed {
        now: now(),
        preprocess_job,
        pytorch_job,
        pods,
    })
}

/// Whether the cluster serves `kubeflow.org/v1` `pytorchjobs`.
pub async fn pytorchjob_kind_installed(client: &Client) -> Result<bool, Error> {
    let api_version = PyTorchJob::api_version(&());
    match client.list_api_group_resources(&api_version).await {
        Ok(list) => Ok(list
            .resources
            .iter()
            .any(|r| r.name == PyTorchJob::plural(&()))),
        Err(kube::Error::Api(status)) if status.is_not_found() => Ok(false),
        Err(source) => Err(Error::Kube {
            action: "discover_pytorchjob_kind",
            source,
        }),
    }
}
