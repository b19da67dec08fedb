//! Kueue in the local cluster (`tests/cluster/README.md`, "Kueue"): the names of what `up.sh`
//! creates, and a LocalQueue for a test's namespace.
//!
//! The ClusterQueue [`CLUSTER_QUEUE`] admits workloads from every namespace that has a LocalQueue
//! on it. Its quota is exactly what the four fake nodes have, [`GPU_QUOTA`] GPUs (and 256 CPUs,
//! 2Ti of memory), so a job asking for more GPUs than are free waits in the queue, and one
//! asking for more than [`GPU_QUOTA`] never starts. Within the queue a [`PRIORITY_HIGH`] workload
//! preempts [`PRIORITY_LOW`] ones when the quota is short. The ClusterQueue is shared: tests that
//! run at the same time share its GPUs.

use serde_json::{Value, json};

use crate::{Cluster, Result};

/// The ClusterQueue, over all namespaces, with the fake nodes' resources as its quota.
pub const CLUSTER_QUEUE: &str = "fto-gpus";
/// The name of the LocalQueue in `default`, and of the one [`Cluster::create_local_queue`] makes.
pub const LOCAL_QUEUE: &str = "fto-queue";
/// A WorkloadPriorityClass of value 100.
pub const PRIORITY_LOW: &str = "fto-low";
/// A WorkloadPriorityClass of value 1000: preempts [`PRIORITY_LOW`] workloads for quota.
pub const PRIORITY_HIGH: &str = "fto-high";
/// GPUs (`nvidia.com/gpu`) in the ClusterQueue's quota: 4 fake nodes with 8 each.
pub const GPU_QUOTA: u32 = 32;
/// The label that puts a job into a LocalQueue.
pub const QUEUE_NAME_LABEL: &str = "kueue.x-k8s.io/queue-name";
/// The label that gives a job's workload a WorkloadPriorityClass.
pub const PRIORITY_CLASS_LABEL: &str = "kueue.x-k8s.io/priority-class";

/// The LocalQueue [`LOCAL_QUEUE`] of `namespace`, on [`CLUSTER_QUEUE`].
pub fn local_queue(namespace: &str) -> Value {
    json!({"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "LocalQueue",
           "metadata": {"name": LOCAL_QUEUE, "namespace": namespace},
           "spec": {"clusterQueue": CLUSTER_QUEUE}})
}

impl Cluster {
    /// Creates the LocalQueue [`LOCAL_QUEUE`] in `namespace`, on [`CLUSTER_QUEUE`], and waits
    /// until Kueue has it active, so that jobs labelled `kueue.x-k8s.io/queue-name: fto-queue`
    /// there are admitted as soon as the quota allows. It goes with the namespace.
    pub fn create_local_queue(&self, namespace: &str) -> Result<()> {
        self.apply(&[local_queue(namespace)])
            .map_err(|e| format!("LocalQueue in {namespace}: {e}"))?;
        self.run(
            &[
                "wait",
                "-n",
                namespace,
                "--for=condition=Active",
                &format!("localqueue/{LOCAL_QUEUE}"),
                "--timeout=60s",
            ],
            None,
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo;

    fn docs(path: &str) -> Vec<Value> {
        let text = std::fs::read_to_string(repo().join(path)).unwrap();
        serde_saphyr::from_multiple(&text).unwrap()
    }

    fn named<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
        docs.iter()
            .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no {kind} {name} in tests/cluster/config/kueue-queues.yaml"))
    }

    /// The names and the quota here are those `up.sh` creates, and the quota is what the fake
    /// nodes have, so a test can count on them.
    #[test]
    fn constants_match_the_cluster_config() {
        let queues = docs("tests/cluster/config/kueue-queues.yaml");
        let cq = named(&queues, "ClusterQueue", CLUSTER_QUEUE);
        let quota = |resource: &str| {
            cq["spec"]["resourceGroups"][0]["flavors"][0]["resources"]
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["name"] == resource)
                .unwrap_or_else(|| panic!("{resource} in the ClusterQueue's quota"))["nominalQuota"]
                .clone()
        };
        assert_eq!(quota("nvidia.com/gpu"), json!(GPU_QUOTA));
        assert_eq!(
            cq["spec"]["preemption"]["withinClusterQueue"],
            "LowerPriority"
        );
        assert_eq!(
            named(&queues, "WorkloadPriorityClass", PRIORITY_LOW)["value"],
            100
        );
        assert_eq!(
            named(&queues, "WorkloadPriorityClass", PRIORITY_HIGH)["value"],
            1000
        );
        let lq = named(&queues, "LocalQueue", LOCAL_QUEUE);
        assert_eq!(lq["spec"]["clusterQueue"], CLUSTER_QUEUE);
        assert_eq!(local_queue("x")["spec"], lq["spec"]);

        let nodes: Vec<Value> = docs("tests/cluster/config/nodes.yaml")
            .into_iter()
            .filter(|d| d["kind"] == "Node")
            .collect();
        assert_eq!(nodes.len(), 4);
        // Sum of one allocatable resource over the nodes, its values all ending in `unit`.
        let total = |resource: &str, unit: &str| -> u32 {
            nodes
                .iter()
                .map(|n| {
                    let value = n["status"]["allocatable"][resource].as_str().unwrap();
                    value.strip_suffix(unit).unwrap().parse::<u32>().unwrap()
                })
                .sum()
        };
        assert_eq!(
            total("nvidia.com/gpu", ""),
            GPU_QUOTA,
            "the quota is what the fake nodes have"
        );
        assert_eq!(quota("cpu"), json!(total("cpu", "")));
        assert_eq!(
            quota("memory"),
            json!(format!("{}Gi", total("memory", "Gi")))
        );

        // The scripts use the same names (lib.sh).
        let lib = std::fs::read_to_string(repo().join("tests/cluster/lib.sh")).unwrap();
        for line in [
            format!("KUEUE_CLUSTER_QUEUE={CLUSTER_QUEUE}\n"),
            format!("KUEUE_LOCAL_QUEUE={LOCAL_QUEUE}\n"),
            format!("KUEUE_PRIORITY_LOW={PRIORITY_LOW}\n"),
            format!("KUEUE_PRIORITY_HIGH={PRIORITY_HIGH}\n"),
        ] {
            assert!(lib.contains(&line), "lib.sh has {line:?}");
        }
    }
}
