#!/usr/bin/env bash
# Assembles the operator's container image without a container engine: an OCI image layout
# holding one layer with one file, the static musl binary (`make musl`, the same build script
# the Dockerfile runs), on an empty base. No shell, no libc, no other file. The config says
# what the Dockerfile says: entrypoint /finetune-operator, cmd run, user 65532:65532, port 8080.
#
#   scripts/image.sh [BINARY] [OUTPUT_DIR]   (default: build/musl/finetune-operator build/image)
#
# Writes OUTPUT_DIR/oci/ (the OCI image layout: `crane push OUTPUT_DIR/oci REF`, or
# `skopeo copy oci:OUTPUT_DIR/oci docker://REF`) and OUTPUT_DIR/digest (the manifest's digest).
# tests/image.rs checks the result (`make image` runs both).
#
# crane (go-containerregistry) comes from the test-cluster module tests/cluster/crane/, built
# once and cached like the cluster's binaries. crane edits an image's config only in a registry,
# so the script runs crane's own registry on 127.0.0.1 (a free port, in memory, for the length
# of the script) and pulls the result back as a layout. Nothing is fetched from the network.
#
# Reproducible: the same binary and commit give the same digest. The layer's file has the
# commit's time (SOURCE_DATE_EPOCH, if set, wins), owner 65532:65532, mode 0755; gzip stores no
# name or time; the config has no creation time (crane sets none) and the labels hold only the
# version, the commit and its time.
set -euo pipefail
cd "$(dirname "$0")/.."

binary="${1:-build/musl/finetune-operator}"
out="${2:-build/image}"
# The user of the Dockerfile's distroless base ("nonroot"); deploy/ runs the pod as it.
uid=65532
# Where ghcr.io/finetune-operator/finetune-operator (deploy/operator/deployment.yaml) is built from.
source_url="${FTO_IMAGE_SOURCE:-https://github.com/finetune-operator/finetune-operator}"

[[ -f "$binary" ]] || { echo "image: no binary at $binary; run 'make musl' first" >&2; exit 1; }
# A field of the [package] table, which comes first in Cargo.toml.
package_field() {
  local v; v="$(sed -n "s/^$1 = \"\(.*\)\"$/\1/p" Cargo.toml | head -n 1)"
  [[ -n "$v" ]] || { echo "image: no $1 in Cargo.toml" >&2; exit 1; }
  echo "$v"
}
version="$(package_field version)"
license="$(package_field license)"
description="$(package_field description)"
if [[ -z "${SOURCE_DATE_EPOCH:-}" ]]; then
  SOURCE_DATE_EPOCH="$(git log -1 --format=%ct 2>/dev/null || echo 0)"
fi
revision="$(git rev-parse HEAD 2>/dev/null || echo unknown)"
created="$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)"

crane="$(tests/cluster/build.sh --module crane)/crane"
"$crane" version >/dev/null

tmp="$(mktemp -d)"
registry_pid=""
cleanup() {
  if [[ -n "$registry_pid" ]]; then kill "$registry_pid" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT

# The layer: /finetune-operator, ustar (no PAX headers with access times), gzip without name/time.
mkdir "$tmp/root"
cp "$binary" "$tmp/root/finetune-operator"
tar --create --format=ustar --directory="$tmp/root" --sort=name \
  --mtime="@$SOURCE_DATE_EPOCH" --owner="$uid" --group="$uid" --numeric-owner --mode=0755 \
  finetune-operator | gzip -n -9 >"$tmp/layer.tar.gz"

# crane's registry, on a port the kernel picks; it logs "serving on port N".
"$crane" registry serve --address 127.0.0.1:0 2>"$tmp/registry.log" &
registry_pid=$!
port=""
for _ in $(seq 100); do
  port="$(sed -n 's/.*serving on port \([0-9]*\).*/\1/p' "$tmp/registry.log")"
  [[ -n "$port" ]] && break
  kill -0 "$registry_pid" 2>/dev/null || break
  sleep 0.1
done
[[ -n "$port" ]] || { echo "image: crane's registry did not start:" >&2; cat "$tmp/registry.log" >&2; exit 1; }
ref="127.0.0.1:$port/finetune-operator:$version"

"$crane" append --oci-empty-base -f "$tmp/layer.tar.gz" -t "$ref" >/dev/null 2>"$tmp/crane.log" \
  || { cat "$tmp/crane.log" >&2; exit 1; }
"$crane" mutate "$ref" -t "$ref" \
  --set-platform linux/amd64 \
  --entrypoint /finetune-operator --cmd run \
  --user "$uid:$uid" --workdir / --exposed-ports 8080/tcp \
  --label "org.opencontainers.image.title=finetune-operator" \
  --label "org.opencontainers.image.description=$description" \
  --label "org.opencontainers.image.version=$version" \
  --label "org.opencontainers.image.revision=$revision" \
  --label "org.opencontainers.image.created=$created" \
  --label "org.opencontainers.image.source=$source_url" \
  --label "org.opencontainers.image.licenses=$license" >/dev/null 2>"$tmp/crane.log" \
  || { cat "$tmp/crane.log" >&2; exit 1; }
"$crane" pull --format oci "$ref" "$tmp/oci" 2>"$tmp/crane.log" || { cat "$tmp/crane.log" >&2; exit 1; }
digest="$("$crane" digest "$ref")"

# crane writes some blobs readable by their owner only; a layout is for anyone to push.
find "$tmp/oci" -type d -exec chmod 755 {} + && find "$tmp/oci" -type f -exec chmod 644 {} +
mkdir -p "$out"
rm -rf "$out/oci"
mv "$tmp/oci" "$out/oci"
echo "$digest" >"$out/digest"
echo "image: $out/oci (OCI layout), finetune-operator:$version $digest," \
  "$(du -sb "$out/oci/blobs" | cut -f1) bytes of blobs"
