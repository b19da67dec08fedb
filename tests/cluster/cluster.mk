# Make fragment for the local test control plane (tests/cluster/README.md).
# Included from the repository's top-level Makefile; paths are relative to the repo root.
#
#   make cluster-build   build etcd, kube-*, kubectl, kwok, training-operator, kueue, trainer, jobset, helm (cached)
#   make cluster-up      build if needed, start the cluster (idempotent)
#   make cluster-down    stop it; leaves no process behind
#   make cluster-smoke   start it if needed, run the smoke test

CLUSTER_SCRIPTS := tests/cluster

.PHONY: cluster-build cluster-up cluster-down cluster-smoke

cluster-build:
	bash $(CLUSTER_SCRIPTS)/build.sh

cluster-up:
	bash $(CLUSTER_SCRIPTS)/up.sh

cluster-down:
	bash $(CLUSTER_SCRIPTS)/down.sh

cluster-smoke: cluster-up
	bash $(CLUSTER_SCRIPTS)/smoke.sh
