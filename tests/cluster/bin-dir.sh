#!/usr/bin/env bash
# Print the directory that holds (or will hold) the test-cluster binaries for the
# current go.mod/go.sum files, build flags and Go version. Never builds.
# Exit status 1 (path still printed) when that directory is not complete yet.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
dir="$(cluster_bin_dir)"
echo "$dir"
bin_dir_complete "$dir"
