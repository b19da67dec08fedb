#!/usr/bin/env bash
# Builds the static release binary. The Dockerfile runs exactly this script, and so does CI,
# since there is no container engine to run the Dockerfile itself.
#   scripts/build-musl.sh [OUTPUT_DIR]    (default: build/musl)
set -euo pipefail
out="${1:-build/musl}"
target=x86_64-unknown-linux-musl
echo "build-musl: cargo build --release --locked --target $target"
cargo build --release --locked --target "$target" --bin finetune-operator
target_dir="${CARGO_TARGET_DIR:-target}"
mkdir -p "$out"
cp "$target_dir/$target/release/finetune-operator" "$out/finetune-operator"
if command -v file >/dev/null 2>&1; then file "$out/finetune-operator"; fi
echo "build-musl: $out/finetune-operator"
