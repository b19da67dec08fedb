#!/usr/bin/env bash
# `make test`: every test. First those that need no cluster (unit, mocked apiserver, golden,
# CEL, Lua), then those on the real local control plane (tests/cluster/). A cluster that cannot
# start fails the run; nothing is skipped. A cluster this script starts, it stops again.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s)
step() { printf '\n== %s (%ss)\n' "$1" "$(( $(date +%s) - started ))"; }

step "tests without a cluster: cargo test"
cargo test --locked

step "the GPU kit's launcher and comparator, without a GPU (tests/gpu/)"
# Kubernetes' $(VAR) expansion, the training operator's variables, and the comparator on the
# genuine logs. Nothing may be skipped: a skip would hide a missing binary or PyYAML.
cargo build --locked
kit_log=$(mktemp)
FTO_BIN="${CARGO_TARGET_DIR:-target}/debug/finetune-operator" \
  python3 -m unittest discover -s tests/gpu -p 'test_*.py' 2>&1 | tee "$kit_log"
if grep -q "skipped" "$kit_log"; then
  echo "the GPU kit's tests skipped some cases; they must all run here" >&2
  exit 1
fi
rm -f "$kit_log"

step "local control plane"
kubeconfig=build/cluster/kubeconfig
if [ -f "$kubeconfig" ] && tests/cluster/bin-dir.sh >/dev/null 2>&1 \
   && "$(tests/cluster/bin-dir.sh)/kubectl" --kubeconfig "$kubeconfig" --request-timeout=5s get --raw /readyz >/dev/null 2>&1; then
  echo "reusing the running cluster"
else
  trap 'step "stopping the cluster"; tests/cluster/down.sh' EXIT
  # Our CRD goes in before the garbage collector starts, so cascades work from the first second.
  FTO_CLUSTER_CRDS=crds/finetune.dev_finetunejobs.yaml tests/cluster/up.sh
fi

step "cluster smoke test"
tests/cluster/smoke.sh

step "the Helm chart: helm lint, the same objects as deploy/, dry runs and a release on the cluster"
# helm is the cluster's (tests/cluster/helm), so this runs once the cluster is up; seconds.
cargo test --locked --test chart

step "end-to-end tests: the operator on the local control plane"
# Each test runs its own operator in its own namespace; most of the time is spent waiting.
# Six at a time: with Kueue's webhooks on every PyTorchJob, eight starved the 2-core machine
# until the apiserver timed requests out and a watch went quiet for minutes.
cargo test --locked --test e2e -- --test-threads=6

step "end-to-end, alone: a cluster without the PyTorchJob kind"
cargo test --locked --test e2e_sequential -- --test-threads=1

step "all tests passed"
