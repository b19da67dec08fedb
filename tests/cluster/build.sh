#!/usr/bin/env bash
# Build the local control plane (etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, kubectl, kwok, kwokctl, training-operator, kueue, trainer-controller-manager,
# jobset-controller-manager, helm) from the Go modules in
# tests/cluster/*/go.mod, and assemble the bin dir $FTO_CACHE/cluster-bin/<key>/.
#
# Each module is cached on its own, in $FTO_CACHE/cluster-bin/<module>-<module key>/ (the
# key hashes its go.mod/go.sum, its recipe in lib.sh and `go version`), so adding or bumping
# one module builds that one only. The bin dir holds hard links to the files of every
# module's dir; a second run with nothing changed returns at once. Every directory is built
# under a temp name and renamed when complete, so an interrupted build never looks complete.
#
# Usage: tests/cluster/build.sh [--print-dir | --module NAME]
#   --print-dir    print the bin dir for the current key and exit (no build)
#   --module NAME  build that module only (if missing) and print its dir, no bin dir: for
#                  tools used outside the cluster, e.g. crane for scripts/image.sh
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

command -v go >/dev/null || die "go is not installed; Go >= 1.26 is needed to build the test cluster"
go_toolchain >/dev/null

BIN_DIR="$(cluster_bin_dir)"
if [[ "${1:-}" == "--print-dir" ]]; then
  echo "$BIN_DIR"
  exit 0
fi
ONLY=""
if [[ "${1:-}" == "--module" ]]; then
  ONLY="${2:-}"
  [[ " ${MODULES[*]} " == *" $ONLY "* ]] || die "--module needs one of: ${MODULES[*]}"
  MODULES=("$ONLY")
  if module_dir_complete "$(module_dir "$ONLY")" "$ONLY"; then
    module_dir "$ONLY"
    exit 0
  fi
fi

if [[ -z "$ONLY" ]] && bin_dir_complete "$BIN_DIR"; then
  log "cluster binaries up to date: $BIN_DIR"
  echo "$BIN_DIR"
  exit 0
fi

CACHE_DIR="$FTO_CACHE/cluster-bin"
mkdir -p "$CACHE_DIR"
# Leftovers of builds killed hard (SIGKILL) long ago; recent ones may still be running.
find "$CACHE_DIR" -maxdepth 1 -name '.tmp-*' -mmin +180 -exec rm -rf {} + 2>/dev/null || true
# Partial dirs of this run are removed on any failure or interrupt.
TMP_DIRS=()
trap 'rm -rf "${TMP_DIRS[@]}"' EXIT
trap 'exit 130' INT TERM

# publish <temp dir> <final dir> [module]: rename atomically (a module's dir, or without a
# module the bin dir). A concurrent build may have won the race; keep theirs.
publish() {
  local tmp="$1" dest="$2" m="${3:-}"
  mv -T "$tmp" "$dest" 2>/dev/null && return
  if [[ -n "$m" ]]; then module_dir_complete "$dest" "$m"; else bin_dir_complete "$dest"; fi \
    || die "could not move $tmp to $dest"
  rm -rf "$tmp"
}

TOTAL_START=$SECONDS
MISSING=()
for m in "${MODULES[@]}"; do
  module_dir_complete "$(module_dir "$m")" "$m" || MISSING+=("$m")
done

if (( ${#MISSING[@]} > 0 )); then
  # A cold build of everything downloads ~1.8 GB of modules and fills ~6.5 GB of Go build
  # cache; check first rather than failing half-way with a confusing linker error.
  NEED_GIB="${FTO_BUILD_MIN_FREE_GIB:-8}"
  GOMODCACHE_DIR="$(go env GOMODCACHE)"
  GOCACHE_DIR="$(go env GOCACHE)"
  mkdir -p "$GOMODCACHE_DIR" "$GOCACHE_DIR"
  for d in "$CACHE_DIR" "$GOMODCACHE_DIR" "$GOCACHE_DIR"; do
    free_kib="$(df -Pk "$d" | awk 'NR==2 {print $4}')"
    if (( free_kib < NEED_GIB * 1024 * 1024 )); then
      die "not enough free disk under $d: $((free_kib / 1024 / 1024)) GiB free, need >= $NEED_GIB GiB.
Free some space (e.g. 'go clean -cache', or remove old keys under $CACHE_DIR/) and retry."
    fi
  done

  log "building test-cluster modules: ${MISSING[*]} ($(go version | cut -d' ' -f3))"
  log "cold, on 2 cores: k8s ~10 min, kueue ~8 min, helm ~6 min, trainer and jobset ~5-7 min each, kwok and training-operator ~3 min each, etcd and crane ~1 min; later builds reuse the Go build cache"

  # Download first (about 1.8 GB for all, ~30 s when the proxy is fast), so a network
  # problem shows up as such and not as a compile error.
  start=$SECONDS
  log "  -> downloading Go modules ..."
  for m in "${MISSING[@]}"; do
    go list -C "$CLUSTER_DIR/$m" -deps tool >/dev/null \
      || die "could not download the Go modules of tests/cluster/$m (is the Go module proxy reachable? GOPROXY=$(go env GOPROXY))"
  done
  log "     modules ready in $((SECONDS - start))s"

  for m in "${MISSING[@]}"; do
    dest="$(module_dir "$m")"
    start=$SECONDS
    log "  -> $m ($(module_binaries "$m")) ..."
    tmp="$(mktemp -d "$CACHE_DIR/.tmp-$(basename "$dest")-XXXXXX")"
    TMP_DIRS+=("$tmp")
    "recipe_${m//-/_}" "$tmp"
    for b in $(module_binaries "$m"); do
      [[ -x "$tmp/$b" ]] || die "the $m recipe did not produce $b"
    done
    chmod 644 "$tmp"/*.yaml "$tmp/VERSIONS" 2>/dev/null || true
    chmod 755 "$tmp"
    touch "$tmp/.complete"
    publish "$tmp" "$dest" "$m"
    log "     $m done in $((SECONDS - start))s: $(basename "$dest")"
  done
fi

if [[ -n "$ONLY" ]]; then
  trap - EXIT
  module_dir "$ONLY"
  exit 0
fi

# --- The bin dir: hard links to every module's files ------------------------------------------
tmp="$(mktemp -d "$CACHE_DIR/.tmp-$(basename "$BIN_DIR")-XXXXXX")"
TMP_DIRS+=("$tmp")
: >"$tmp/VERSIONS"
for m in "${MODULES[@]}"; do
  src="$(module_dir "$m")"
  module_dir_complete "$src" "$m" || die "module $m is not built: $src"
  for f in "$src"/*; do
    name="$(basename "$f")"
    [[ "$name" != VERSIONS ]] || continue
    [[ ! -e "$tmp/$name" ]] || die "two modules provide $name (the second is $m)"
    # Same file system (one parent dir), so a hard link; a copy if that fails anyway.
    ln "$f" "$tmp/$name" 2>/dev/null || cp -p "$f" "$tmp/$name"
  done
  cat "$src/VERSIONS" >>"$tmp/VERSIONS"
  echo "$m $(basename "$src")" >>"$tmp/MODULES"
done
chmod 644 "$tmp/VERSIONS" "$tmp/MODULES"
chmod 755 "$tmp"
touch "$tmp/.complete"
publish "$tmp" "$BIN_DIR"
trap - EXIT

log "bin dir assembled in $((SECONDS - TOTAL_START))s: $BIN_DIR"
sed 's/^/     /' "$BIN_DIR/VERSIONS" >&2
echo "$BIN_DIR"
