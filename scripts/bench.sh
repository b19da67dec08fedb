#!/usr/bin/env bash
# `make bench`: the benchmarks. Not tests: nothing asserts a time; they measure and report.
#
#   1. the parser's throughput on one core (benches/parser.rs), then
#   2. the operator on the local control plane (benches/cluster/): throughput and latency
#      beside "the limit", API cost per job, memory beside the training operator, restart,
#      log following. It writes BENCHMARKS.md and benches/results/results.json.
#
# Builds the release operator, starts the local cluster (tests/cluster/) unless one is running,
# and stops it again if it started it. About 80 minutes on 2 cores; progress is printed.
# Env: the FTO_BENCH_* variables of benches/cluster/main.rs (e.g. FTO_BENCH_RUNS=1 for a quick look;
# FTO_BENCH_BASELINE=benches/results/baseline.json to show an earlier run as "before"), FTO_BENCH_SKIP_PARSER=1.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s)
step() { printf '\n== %s (%ss)\n' "$1" "$(( $(date +%s) - started ))"; }

if pgrep -f "cargo test|ci-clone" >/dev/null 2>&1; then
  echo "note: other builds or tests are running on this machine; the figures will be noisy" >&2
fi

step "build: the release operator and the benchmarks"
cargo build --locked --release
cargo bench --locked --no-run --bench cluster --bench parser

if [[ "${FTO_BENCH_SKIP_PARSER:-}" != 1 ]]; then
  step "parser throughput (one core)"
  mkdir -p build/bench
  cargo bench --locked --bench parser | tee build/bench/parser.jsonl
  export FTO_BENCH_PARSER=build/bench/parser.jsonl
fi

step "local control plane"
kubeconfig=build/cluster/kubeconfig
if [ -f "$kubeconfig" ] && tests/cluster/bin-dir.sh >/dev/null 2>&1 \
   && "$(tests/cluster/bin-dir.sh)/kubectl" --kubeconfig "$kubeconfig" --request-timeout=5s get --raw /readyz >/dev/null 2>&1; then
  echo "reusing the running cluster; unless it was started with FTO_TRAINING_OPERATOR_THREADS=8, its"
  echo "training operator finishes jobs slowly (make cluster-down first to let this start one)"
else
  trap 'step "stopping the cluster"; tests/cluster/down.sh' EXIT
  # The training operator with as many workers as the operator has (--concurrency 8).
  FTO_TRAINING_OPERATOR_THREADS=8 FTO_CLUSTER_CRDS=crds/finetune.dev_finetunejobs.yaml \
    tests/cluster/up.sh
fi

step "the operator on the local control plane"
export FTO_BENCH_OPERATOR="$CARGO_TARGET_DIR/release/finetune-operator"
export FTO_BENCH_COMMAND="${FTO_BENCH_COMMAND:-make bench}"
export FTO_BENCH_BASELINE="${FTO_BENCH_BASELINE-benches/results/baseline.json}"
cargo bench --locked --bench cluster

step "done: BENCHMARKS.md, benches/results/results.json"
