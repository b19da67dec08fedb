#!/usr/bin/env bash
# Lets a pod choose the file `kubectl logs` serves, through a pod label.
#
# kwok v0.8.0 serves logs from `Logs` objects (one per pod, matched by namespace/name)
# or `ClusterLogs` objects (matched by namespace/name lists only); neither can select
# on labels. So this loop watches pods and, for each pod labelled
#   sim.finetune.dev/log=<file>             -> <run dir>/pod-logs/<file>
# or annotated
#   sim.finetune.dev/log-path=<path>        -> <path> (relative: under pod-logs/)
# creates a `Logs` object with the pod's name, owned by the pod (so the garbage
# collector removes it with the pod). kwok prefers a pod's `Logs` over the catch-all
# ClusterLogs (default.log). Started and stopped by up.sh/down.sh.
#
# Usage: log-router.sh <run dir>
set -uo pipefail

RUN_DIR="$1"
LOG_DIR="$RUN_DIR/pod-logs"
# kubectl comes from the bin dir that up.sh put first on PATH. The kubeconfig is passed
# as a flag (not $KUBECONFIG) so down.sh recognises these kubectl processes as ours.
kc() { kubectl --kubeconfig="$RUN_DIR/kubeconfig" "$@"; }

say() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*"; }

route() {
  local ns="$1" name="$2" uid="$3" label="$4" path="$5"
  if [[ -n "$path" ]]; then
    [[ "$path" == /* ]] || path="$LOG_DIR/$path"
  else
    path="$LOG_DIR/$label"
  fi
  if kc apply --server-side --force-conflicts --field-manager=fto-log-router -f - >/dev/null <<EOF
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Logs
metadata:
  name: $name
  namespace: $ns
  ownerReferences:
  - apiVersion: v1
    kind: Pod
    name: $name
    uid: $uid
spec:
  logs:
  - logsFile: $path
    previousLogsFile: $path
    follow: true
EOF
  then
    say "pod $ns/$name -> $path"
  else
    say "WARNING: could not create Logs for pod $ns/$name"
  fi
}

say "watching pods for sim.finetune.dev/log labels (log dir $LOG_DIR)"
fmt='{.metadata.namespace}{"|"}{.metadata.name}{"|"}{.metadata.uid}{"|"}{.metadata.labels.sim\.finetune\.dev/log}{"|"}{.metadata.annotations.sim\.finetune\.dev/log-path}{"\n"}'
# The watch ends when the apiserver closes it (every 30-60 min) or restarts; then
# it is simply opened again, which lists every pod anew (applying is idempotent).
while true; do
  declare -A routed=()
  while IFS='|' read -r ns name uid label path; do
    [[ -n "$uid" && ( -n "$label" || -n "$path" ) ]] || continue
    [[ -z "${routed[$uid]:-}" ]] || continue
    routed[$uid]=1
    route "$ns" "$name" "$uid" "$label" "$path"
  done < <(kc get pods --all-namespaces --watch -o "jsonpath=$fmt")
  unset routed
  sleep 1
done
