#!/usr/bin/env bash
# Append lines to a simulated pod log, in the CRI log format that kwok serves
# ("<RFC3339Nano timestamp> stdout F <text>"), so a test can make a "running" pod
# print more output; `kubectl logs -f` picks the new lines up.
#
# Usage: tests/cluster/sim-log.sh <file> [line...]     (no lines: read them from stdin)
#   <file> without a slash is taken under build/cluster/pod-logs/ (see README "Logs").
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[[ $# -ge 1 ]] || die "usage: $0 <file> [line...]"
file="$1"; shift
[[ "$file" == */* ]] || file="$POD_LOG_DIR/$file"
mkdir -p "$(dirname "$file")"

emit() { printf '%s stdout F %s\n' "$(date -u +%Y-%m-%dT%H:%M:%S.%NZ)" "$1"; }
if [[ $# -gt 0 ]]; then
  for line in "$@"; do emit "$line"; done >>"$file"
else
  while IFS= read -r line || [[ -n "$line" ]]; do emit "$line"; done >>"$file"
fi
