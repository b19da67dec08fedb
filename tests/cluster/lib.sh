# shellcheck shell=bash disable=SC2034  # sourced; the variables are used by the scripts
# Shared helpers for the test-cluster scripts. Sourced, never executed.
# Every script here works out the same paths from this file, so the build cache key,
# the runtime directory and the ports are defined exactly once.

CLUSTER_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$CLUSTER_DIR/../.." && pwd)"

# Binaries live outside the clone so every checkout (and CI) reuses them.
FTO_CACHE="${FTO_CACHE:-$HOME/.cache/finetune-operator}"
# Runtime state lives in the repo's ignored build area (/build is in .gitignore).
RUN_DIR="${FTO_CLUSTER_RUN_DIR:-$REPO_ROOT/build/cluster}"
KUBECONFIG_PATH="$RUN_DIR/kubeconfig"
FIXTURES_DIR="$REPO_ROOT/tests/fixtures/cluster"

# Every component listens on 127.0.0.1 only, on fixed ports derived from one base so
# a clash can be fixed with a single variable (FTO_CLUSTER_PORT_BASE). They must stay
# below the kernel's ephemeral port range (usually 32768-60999): a port in that range
# can be taken at random as the source port of some outgoing connection, and the
# component's listen() then fails with "address already in use".
PORT_BASE="${FTO_CLUSTER_PORT_BASE:-26400}"
APISERVER_PORT=$((PORT_BASE + 43))        # kube-apiserver (HTTPS)            26443
KWOK_PORT=$((PORT_BASE + 50))             # kwok "kubelet" (logs, healthz)     26450
KCM_PORT=$((PORT_BASE + 57))              # kube-controller-manager /healthz   26457
SCHEDULER_PORT=$((PORT_BASE + 59))        # kube-scheduler /healthz            26459
ETCD_PORT=$((PORT_BASE + 79))             # etcd clients (HTTP)                26479
ETCD_PEER_PORT=$((PORT_BASE + 80))        # etcd peers (HTTP)                  26480
TO_METRICS_PORT=$((PORT_BASE + 81))       # training-operator /metrics         26481
TO_HEALTH_PORT=$((PORT_BASE + 82))        # training-operator /healthz,/readyz 26482
TO_WEBHOOK_PORT=$((PORT_BASE + 93))       # training-operator webhook (unused) 26493
ALL_PORTS=("$APISERVER_PORT" "$ETCD_PORT" "$ETCD_PEER_PORT" "$KCM_PORT" "$SCHEDULER_PORT"
           "$KWOK_PORT" "$TO_METRICS_PORT" "$TO_HEALTH_PORT" "$TO_WEBHOOK_PORT")

# Started by up.sh in this order; down.sh stops them in reverse.
COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok log-router training-operator)

# The training operator's cert rotator waits for its serving cert at this fixed path
# (hard-coded in training-operator v1.9.x, normally a mounted Secret).
TO_CERT_DIR=/tmp/k8s-webhook-server/serving-certs

# Pod log files served through `kubectl logs` (see README, "Logs").
POD_LOG_DIR="$RUN_DIR/pod-logs"

# One Go module per upstream, so bumping one never disturbs the others.
MODULES=(k8s etcd kwok training-operator)

# Versions stamped into the binaries; they must match the go.mod files (kwok and the
# training operator stamp themselves). The key below covers go.mod and these flags.
K8S_VERSION=v1.36.3
ETCD_VERSION=v3.6.16

# Static, reproducible, stripped binaries. Version stamps make `kubectl version` and
# `kube-apiserver --version` report v1.36.x instead of v0.0.0-master, and keep
# version-gated flag logic in other tools on the 1.36 path.
k8s_ldflags() {
  local v="${K8S_VERSION#v}" f=""
  local major="${v%%.*}" rest="${v#*.}"
  local minor="${rest%%.*}"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    f+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
    f+=" -X $pkg.gitTreeState=clean -X $pkg.gitCommit=module-$K8S_VERSION"
  done
  echo "-s -w$f"
}
etcd_ldflags() { echo "-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA=module-$ETCD_VERSION"; }
kwok_ldflags() { echo "-s -w"; }
training_operator_ldflags() { echo "-s -w"; }
BUILD_ENV="CGO_ENABLED=0 -trimpath -buildvcs=false"
# Bump when build.sh changes what it puts into the bin dir, so old dirs are not reused.
BUILD_LAYOUT=2

# The cache key: anything that changes the produced binaries.
cluster_key() {
  {
    for m in "${MODULES[@]}"; do
      echo "== $m"
      cat "$CLUSTER_DIR/$m/go.mod" "$CLUSTER_DIR/$m/go.sum"
    done
    echo "== flags"
    echo "$BUILD_ENV layout=$BUILD_LAYOUT"
    k8s_ldflags; etcd_ldflags; kwok_ldflags; training_operator_ldflags
    echo "== toolchain"
    go version
    go env GOOS GOARCH
  } | sha256sum | cut -c1-16
}

cluster_bin_dir() { echo "$FTO_CACHE/cluster-bin/$(cluster_key)"; }

# Every binary a complete bin dir must hold.
BINARIES=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kwok kwokctl training-operator)

bin_dir_complete() {
  local dir="$1" b
  [[ -f "$dir/.complete" ]] || return 1
  for b in "${BINARIES[@]}"; do [[ -x "$dir/$b" ]] || return 1; done
}

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf '\nERROR: %s\n' "$*" >&2; exit 1; }
