//! The FineTuneJobs the suites and the benchmark create on the local cluster, built with the
//! operator's own fixture ([`JobFixture`]), so that a new required field changes one place.

use finetune_operator::testing::JobFixture;
use serde_json::{Value, json};

/// The image the jobs on the local cluster name (kwok never pulls it).
pub const IMAGE: &str = "registry.example/instructlab-training:v0.12.1";

/// A FineTuneJob for the local cluster: the claims [`crate::Cluster::create_volumes`] binds,
/// two epochs, two nodes of two GPUs (small asks: tests run side by side on 4 fake nodes of 8
/// GPUs), and pods that kwok plays as `annotations` say (`sim.finetune.dev/duration`, ...).
pub fn finetunejob(name: &str, annotations: Value) -> JobFixture {
    JobFixture::new(name)
        .image(IMAGE)
        .spec(json!({
            "model": {"claimName": "models", "path": "granite-7b"},
            "dataset": {"claimName": "datasets", "path": "train.jsonl"},
            "output": {"claimName": "training-output"},
        }))
        .epochs(2)
        .nodes(2, 2)
        .pod_annotations(annotations)
}

/// With a preprocessing phase (`maxSeqLen` 2048).
pub fn with_preprocess(job: JobFixture) -> JobFixture {
    job.preprocess(json!({"maxSeqLen": 2048}))
}
