#!/usr/bin/env bash
# Build the local control plane (etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, kubectl, kwok, kwokctl, training-operator) from the Go modules in
# tests/cluster/*/go.mod into $FTO_CACHE/cluster-bin/<key>/.
#
# The key hashes the go.mod/go.sum files, the build flags and `go version`, so a second
# run with nothing changed returns at once. We build into a temp dir and rename it when
# every binary is there, so an interrupted build never looks complete.
#
# Usage: tests/cluster/build.sh [--print-dir]
#   --print-dir  print the bin dir for the current key and exit (no build)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

command -v go >/dev/null || die "go is not installed; Go >= 1.26 is needed to build the test cluster"

BIN_DIR="$(cluster_bin_dir)"
if [[ "${1:-}" == "--print-dir" ]]; then
  echo "$BIN_DIR"
  exit 0
fi

if bin_dir_complete "$BIN_DIR"; then
  log "cluster binaries up to date: $BIN_DIR"
  echo "$BIN_DIR"
  exit 0
fi

# A cold build downloads ~1.4 GB of modules and fills ~5 GB of Go build cache; check
# first rather than failing half-way with a confusing linker error.
NEED_GIB="${FTO_BUILD_MIN_FREE_GIB:-8}"
GOMODCACHE_DIR="$(go env GOMODCACHE)"
GOCACHE_DIR="$(go env GOCACHE)"
mkdir -p "$FTO_CACHE/cluster-bin" "$GOMODCACHE_DIR" "$GOCACHE_DIR"
for d in "$FTO_CACHE/cluster-bin" "$GOMODCACHE_DIR" "$GOCACHE_DIR"; do
  free_kib="$(df -Pk "$d" | awk 'NR==2 {print $4}')"
  if (( free_kib < NEED_GIB * 1024 * 1024 )); then
    die "not enough free disk under $d: $((free_kib / 1024 / 1024)) GiB free, need >= $NEED_GIB GiB.
Free some space (e.g. 'go clean -cache', or remove old keys under $FTO_CACHE/cluster-bin/) and retry."
  fi
done

log "building test-cluster binaries (key $(basename "$BIN_DIR"); $(go version | cut -d' ' -f3))"
log "a cold build takes about 17 minutes on 2 cores; later builds reuse the Go build cache"

# Leftovers of builds killed hard (SIGKILL) long ago; recent ones may still be running.
find "$FTO_CACHE/cluster-bin" -maxdepth 1 -name '.tmp-*' -mmin +180 -exec rm -rf {} + 2>/dev/null || true
TMP_DIR="$(mktemp -d "$FTO_CACHE/cluster-bin/.tmp-$(basename "$BIN_DIR")-XXXXXX")"
# Remove the partial dir on any failure or interrupt.
trap 'rm -rf "$TMP_DIR"' EXIT
trap 'exit 130' INT TERM

TOTAL_START=$SECONDS
# build <label> <module dir> <ldflags> <-o target> <packages...>
build() {
  local label="$1" mod="$2" ldflags="$3" out="$4"; shift 4
  local start=$SECONDS
  log "  -> $label ..."
  # -C: run inside the component's own module so its pinned requirements apply.
  if ! CGO_ENABLED=0 go build -C "$CLUSTER_DIR/$mod" -trimpath -buildvcs=false \
        -ldflags "$ldflags" -o "$out" "$@"; then
    die "building $label failed (module tests/cluster/$mod); see the Go errors above"
  fi
  log "     $label done in $((SECONDS - start))s"
}

# Download first (about 1.4 GB, ~30 s when the proxy is fast), so a network problem
# shows up as such and not as a compile error.
start=$SECONDS
log "  -> downloading Go modules ..."
for m in "${MODULES[@]}"; do
  go list -C "$CLUSTER_DIR/$m" -deps tool >/dev/null \
    || die "could not download the Go modules of tests/cluster/$m (is the Go module proxy reachable? GOPROXY=$(go env GOPROXY))"
done
log "     modules ready in $((SECONDS - start))s"

build etcd              etcd "$(etcd_ldflags)" "$TMP_DIR/etcd" go.etcd.io/etcd/server/v3
build kube-apiserver    k8s  "$(k8s_ldflags)"  "$TMP_DIR/" k8s.io/kubernetes/cmd/kube-apiserver
build kube-controller-manager k8s "$(k8s_ldflags)" "$TMP_DIR/" k8s.io/kubernetes/cmd/kube-controller-manager
build kube-scheduler    k8s  "$(k8s_ldflags)"  "$TMP_DIR/" k8s.io/kubernetes/cmd/kube-scheduler
build kubectl           k8s  "$(k8s_ldflags)"  "$TMP_DIR/" k8s.io/kubernetes/cmd/kubectl
build "kwok, kwokctl"   kwok "$(kwok_ldflags)" "$TMP_DIR/" sigs.k8s.io/kwok/cmd/kwok sigs.k8s.io/kwok/cmd/kwokctl
build training-operator training-operator "$(training_operator_ldflags)" "$TMP_DIR/training-operator" \
  github.com/kubeflow/training-operator/cmd/training-operator.v1

# CRDs the cluster installs ship in the same modules as the binaries: keep copies next
# to the binaries so up.sh never needs the module cache.
mod_dir() { go list -C "$CLUSTER_DIR/$1" -m -f '{{.Dir}}' "$2"; }
cp "$(mod_dir training-operator github.com/kubeflow/training-operator)/manifests/base/crds/kubeflow.org_pytorchjobs.yaml" \
   "$(mod_dir kwok sigs.k8s.io/kwok)/kustomize/crd/bases/kwok.x-k8s.io_logs.yaml" "$TMP_DIR/"
chmod 644 "$TMP_DIR"/*.yaml
chmod 755 "$TMP_DIR"

"$TMP_DIR/kubectl" version --client >"$TMP_DIR/VERSIONS" 2>&1
"$TMP_DIR/etcd" --version >>"$TMP_DIR/VERSIONS" 2>&1
"$TMP_DIR/kwok" --version >>"$TMP_DIR/VERSIONS" 2>&1 || true
grep -q "$K8S_VERSION" "$TMP_DIR/VERSIONS" || die "kubectl is not stamped $K8S_VERSION: $(cat "$TMP_DIR/VERSIONS")"
touch "$TMP_DIR/.complete"

# Publish atomically. A concurrent build may have won the race; keep theirs.
if ! mv -T "$TMP_DIR" "$BIN_DIR" 2>/dev/null; then
  bin_dir_complete "$BIN_DIR" || die "could not move $TMP_DIR to $BIN_DIR"
  rm -rf "$TMP_DIR"
fi
trap - EXIT

log "all binaries built in $((SECONDS - TOTAL_START))s"
sed 's/^/     /' "$BIN_DIR/VERSIONS" >&2
echo "$BIN_DIR"
