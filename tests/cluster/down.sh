#!/usr/bin/env bash
# Stop the local test control plane started by up.sh and leave no process behind.
# Safe to run when nothing is up. Keeps build/cluster/ (logs, PKI) for inspection;
# the next up.sh starts with fresh cluster state anyway.
#
# Usage: tests/cluster/down.sh
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# Our processes: those running a binary from our cache (or bash running our log
# router) whose command line names this run dir. Found from the process table rather
# than trusted pid files, so a lost or stale pid file neither hides one of ours nor
# points at someone else's process. Nothing else is touched.
our_pids() {
  local pid args exe
  while read -r pid args; do
    [[ "$args" == *"$RUN_DIR"* && "$pid" != "$$" ]] || continue
    exe="$(readlink "/proc/$pid/exe" 2>/dev/null || true)"
    case "$exe" in
      "$FTO_CACHE"/cluster-bin/*) echo "$pid" ;;
      */bash) [[ "$args" != *log-router.sh* ]] || echo "$pid" ;;
    esac
  done < <(ps -eo pid=,args=)
}
# (Not `our_pids | grep -q`: with pipefail, grep exiting early fails the pipeline.)
is_ours() { [[ " $(our_pids | tr '\n' ' ') " == *" $1 "* ]]; }
# Alive and not a zombie (an exited child not yet reaped still answers kill -0).
running() { [[ -r "/proc/$1/stat" && "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]]; }

# Signal a process; a session leader started by up.sh (setsid) with its whole process
# group, which takes the log router's kubectl child along.
signal() {
  local sig="$1" pid="$2"
  if [[ "$(ps -o pgid= -p "$pid" 2>/dev/null | tr -d ' ')" == "$pid" ]]; then
    kill "-$sig" -- "-$pid" 2>/dev/null || true
  else
    kill "-$sig" "$pid" 2>/dev/null || true
  fi
}

# stop <pid> <name>: SIGTERM, wait up to 15 s for a clean exit, then SIGKILL.
stop() {
  local pid="$1" name="$2" deadline=$((SECONDS + 15))
  signal TERM "$pid"
  while running "$pid"; do
    if (( SECONDS >= deadline )); then
      log "  $name (pid $pid) did not exit after SIGTERM; killing it"
      signal KILL "$pid"
      sleep 0.2
      break
    fi
    sleep 0.1
  done
}

if [[ -z "$(our_pids)" ]]; then
  log "test cluster is not running"
  stopped=0
else
  log "stopping test cluster"
  stopped=1
  # Reverse start order: clients before the apiserver, the apiserver before etcd, so
  # each can shut down cleanly instead of retrying a dead dependency.
  # All of them, whatever FTO_CLUSTER_TRAINER says now (the cluster may have been started
  # with the other setting).
  for (( i=${#ALL_COMPONENTS[@]}-1; i>=0; i-- )); do
    name="${ALL_COMPONENTS[i]}"
    pid="$(cat "$RUN_DIR/pids/$name.pid" 2>/dev/null || true)"
    if [[ -n "$pid" ]] && is_ours "$pid"; then stop "$pid" "$name"; fi
  done
  # Anything of ours without a (valid) pid file.
  for pid in $(our_pids); do stop "$pid" "pid $pid"; done
fi
rm -f "$RUN_DIR"/pids/*.pid
rm -f "$TO_CERT_DIR/tls.crt" "$TO_CERT_DIR/tls.key" "$TO_CERT_DIR/ca.crt"

left="$(our_pids | paste -sd, -)"
if [[ -n "$left" ]]; then
  ps -o pid,args -p "$left" >&2 || true
  die "could not stop these processes"
fi
(( stopped == 0 )) || log "test cluster stopped; no process left"
