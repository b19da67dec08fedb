#!/usr/bin/env bash
# `make bench`: the benchmarks. Not tests: nothing asserts a time; they measure and report.
#
#   1. the parser's throughput on one core (benches/parser.rs), then
#   2. the operator on the local control plane (benches/cluster/): single applies and the start
#      path beside "the limit", API cost per job, the whole lifecycle, log following (CPU and
#      progress lag), memory beside the training operator, restart. It writes BENCHMARKS.md and
#      benches/results/results.json.
#
# Builds the release operator, starts the local cluster (tests/cluster/) unless one is running,
# and stops it again if it started it. About 80 minutes on 2 cores after the builds (the last
# full run, with FTO_BENCH_BEFORE_REV: 79); progress is printed.
# Also prints what the caches hold per finished job (benches/cache_memory.rs), for section 7.
# Env: the FTO_BENCH_* variables of benches/cluster/main.rs (e.g. FTO_BENCH_RUNS=1 for a quick look;
# FTO_BENCH_BASELINE=benches/results/baseline.json to show an earlier run as "before"), FTO_BENCH_SKIP_PARSER=1,
# FTO_BENCH_BEFORE_REV=<git rev>: also measure the release build of that revision as "operator, before"
# (built in a temporary git worktree; its target dir is kept in the cache dir, keyed by the revision).
set -euo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s)
step() { printf '\n== %s (%ss)\n' "$1" "$(( $(date +%s) - started ))"; }

if pgrep -f "cargo test|ci-clone" >/dev/null 2>&1; then
  echo "note: other builds or tests are running on this machine; the figures will be noisy" >&2
fi

step "build: the release operator and the benchmarks"
cargo build --locked --release
cargo bench --locked --no-run --bench cluster --bench parser --bench cache_memory

if [[ -n "${FTO_BENCH_BEFORE_REV:-}" ]]; then
  rev=$(git rev-parse --verify "${FTO_BENCH_BEFORE_REV}^{commit}")
  step "build: the release operator at ${FTO_BENCH_BEFORE_REV} ($rev), as \"operator, before\""
  before_dir="${FTO_CACHE:-$HOME/.cache/finetune-operator}/bench-before/$rev"
  before_bin="$before_dir/target/release/finetune-operator"
  # Written once that revision's build succeeded: a seeded target dir holds the current binary.
  if [ -f "$before_dir/built" ] && [ -x "$before_bin" ]; then
    echo "already built: $before_bin"
  else
    if [ ! -d "$before_dir/target/release" ] && [ -d "$CARGO_TARGET_DIR/release" ]; then
      # The dependencies are most likely the same: start from the current release build, built
      # the same way (the whole workspace, so the dependencies' features match), so that only
      # what changed needs compiling (cargo decides what it can reuse).
      echo "seeding $before_dir/target from $CARGO_TARGET_DIR/release"
      mkdir -p "$before_dir/target"
      cp -r "$CARGO_TARGET_DIR/release" "$before_dir/target/release"
      rm -f "$before_bin"
    fi
    tree=$(mktemp -d)
    git worktree add --detach "$tree" "$rev"
    echo "building in $tree"
    if ! (cd "$tree" && CARGO_TARGET_DIR="$before_dir/target" cargo build --locked --release); then
      git worktree remove --force "$tree"
      exit 1
    fi
    git worktree remove --force "$tree"
    touch "$before_dir/built"
  fi
  export FTO_BENCH_BEFORE_OPERATOR="$before_bin" FTO_BENCH_BEFORE_REV
fi

if [[ "${FTO_BENCH_SKIP_PARSER:-}" != 1 ]]; then
  step "parser throughput (one core)"
  mkdir -p build/bench
  cargo bench --locked --bench parser | tee build/bench/parser.jsonl
  export FTO_BENCH_PARSER=build/bench/parser.jsonl
fi

step "what the caches hold per finished job (benches/cache_memory.rs)"
mkdir -p build/bench
cargo bench --locked --bench cache_memory | tee build/bench/cache_memory.jsonl

step "local control plane"
kubeconfig=build/cluster/kubeconfig
if [ -f "$kubeconfig" ] && tests/cluster/bin-dir.sh >/dev/null 2>&1 \
   && "$(tests/cluster/bin-dir.sh)/kubectl" --kubeconfig "$kubeconfig" --request-timeout=5s get --raw /readyz >/dev/null 2>&1; then
  echo "reusing the running cluster; unless it was started with FTO_TRAINING_OPERATOR_THREADS=8, its"
  echo "training operator finishes jobs slowly (make cluster-down first to let this start one)"
else
  trap 'step "stopping the cluster"; tests/cluster/down.sh' EXIT
  # The training operator with as many workers as the operator has (--concurrency 8); without
  # Trainer v2 and JobSet, which the benchmarks do not use (the cluster of earlier runs).
  FTO_TRAINING_OPERATOR_THREADS=8 FTO_CLUSTER_TRAINER=0 FTO_CLUSTER_CRDS=crds/finetune.dev_finetunejobs.yaml \
    tests/cluster/up.sh
fi

step "the operator on the local control plane"
export FTO_BENCH_OPERATOR="$CARGO_TARGET_DIR/release/finetune-operator"
export FTO_BENCH_COMMAND="${FTO_BENCH_COMMAND:-make bench}"
export FTO_BENCH_BASELINE="${FTO_BENCH_BASELINE-benches/results/baseline.json}"
cargo bench --locked --bench cluster

step "done: BENCHMARKS.md, benches/results/results.json"
