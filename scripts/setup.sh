#!/usr/bin/env bash
# Installs what a clean machine lacks to build and test finetune-operator: the musl target and
# musl-gcc (for the static release binary the Dockerfile ships), rustfmt and clippy (for
# `make lint`), PyYAML (for the GPU kit's own tests in `make test`). Idempotent; prints what it does.
set -euo pipefail

if ! rustup target list --installed | grep -qx x86_64-unknown-linux-musl; then
  echo "setup: adding the Rust target x86_64-unknown-linux-musl"
  rustup target add x86_64-unknown-linux-musl
fi

for component in rustfmt clippy; do
  if ! rustup component list --installed | grep -q "^$component"; then
    echo "setup: adding the Rust component $component"
    rustup component add "$component"
  fi
done

if ! command -v musl-gcc >/dev/null 2>&1; then
  echo "setup: installing musl-tools (musl-gcc) from Debian"
  sudo_cmd=""
  if [ "$(id -u)" != 0 ]; then sudo_cmd="sudo"; fi
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq musl-tools >/dev/null
fi
if ! python3 -c 'import yaml' >/dev/null 2>&1; then
  echo "setup: installing PyYAML (the GPU kit's launcher tests read rendered children) from Debian"
  sudo_cmd=""
  if [ "$(id -u)" != 0 ]; then sudo_cmd="sudo"; fi
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq python3-yaml >/dev/null
fi
echo "setup: build prerequisites present"
