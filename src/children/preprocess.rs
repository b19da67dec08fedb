//! The preprocess Job: `python -m instructlab.training.data_process`, once, on CPUs only.

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::ResourceExt;

use super::pod::{self, DATA_MOUNT, MODEL_MOUNT, Mounts, OUTPUT_MOUNT};
use super::{BuildError, child_meta, flag, under};
use crate::api::{FineTuneJob, PreprocessSpec};
use crate::names::{PREPROCESS_CONTAINER, preprocess_job_name};

/// Where the processed data lands inside the output directory.
pub fn processed_data_dir(job: &FineTuneJob) -> String {
    let output = under(OUTPUT_MOUNT, job.spec.output_dir(&job.name_any()));
    format!("{output}/data")
}

/// Builds `<name>-preprocess` from the job and its `spec.preprocess`. Fails only when the
/// FineTuneJob lacks the metadata an owner reference needs.
pub fn build_preprocess_job(job: &FineTuneJob, pre: &PreprocessSpec) -> Result<Job, BuildError> {
    let spec = &job.spec;
    let mut args = vec![
        flag("--data_path", under(DATA_MOUNT, &spec.dataset.path)),
        flag("--data_output_path", processed_data_dir(job)),
        flag("--max_seq_len", pre.max_seq_len),
        flag("--model_name_or_path", under(MODEL_MOUNT, &spec.model.path)),
    ];
    // data_process defaults to 16 worker processes; more processes than CPUs only costs memory.
    if let Some(cpus) = pre
        .resources
        .requests
        .as_ref()
        .and_then(|r| r.get("cpu"))
        .and_then(whole_cpus)
    {
        args.push(flag("--num_cpu_procs", cpus));
    }
    if let Some(template) = &pre.chat_template {
        args.push(flag("--chat-tmpl-path", template));
    }

    let mounts = Mounts {
        shared_memory: false,
    };
    let mut container = pod::container(
        job,
        PREPROCESS_CONTAINER,
        &["python", "-m", "instructlab.training.data_process"],
        args,
        pod::env(job, pod::trust_remote_code(job).into_iter().collect()),
        &mounts,
    );
    container.resources = Some(pre.resources.clone());

    Ok(Job {
        metadata: child_meta(job, preprocess_job_name(&job.name_any()))?,
        spec: Some(JobSpec {
            backoff_limit: Some(spec.backoff_limit),
            template: PodTemplateSpec {
                metadata: Some(pod::pod_metadata(job)),
                // Never: a failed attempt stays as a pod whose exit code and log we can report.
                spec: Some(pod::pod_spec(job, container, &mounts, Some("Never"))),
            },
            ..Default::default()
        }),
        status: None,
    })
}

/// CPUs in a quantity, rounded up: "2" → 2, "1500m" → 2, "0.5" → 1.
fn whole_cpus(quantity: &Quantity) -> Option<i64> {
    let q = quantity.0.trim();
    let millis = if let Some(m) = q.strip_suffix('m') {
        m.parse::<f64>().ok()?
    } else {
        q.parse::<f64>().ok()? * 1000.0
    };
    (millis.is_finite() && millis > 0.0).then(|| (millis / 1000.0).ceil() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_cpus_rounds_up() {
        let q = |s: &str| Quantity(s.to_string());
        assert_eq!(whole_cpus(&q("2")), Some(2));
        assert_eq!(whole_cpus(&q("1500m")), Some(2));
        assert_eq!(whole_cpus(&q("0.5")), Some(1));
        assert_eq!(whole_cpus(&q("0")), None);
        assert_eq!(whole_cpus(&q("lots")), None);
    }
}
