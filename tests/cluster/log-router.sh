#!/usr/bin/env bash
# The parts of the simulated kubelet that kwok cannot do itself: which file `kubectl logs`
# serves for a pod, and what a training process prints when it is stopped.
#
# 1. Routing. kwok v0.8.0 serves logs from `Logs` objects (one per pod, matched by
#    namespace/name) or `ClusterLogs` objects (matched by namespace/name lists only); neither
#    can select on labels. So this loop watches pods and, for each pod labelled
#      sim.finetune.dev/log=<file>             -> <run dir>/pod-logs/<file>
#    or annotated
#      sim.finetune.dev/log-path=<path>        -> <path> (relative: under pod-logs/)
#    creates a `Logs` object with the pod's name, owned by the pod (so the garbage
#    collector removes it with the pod). kwok prefers a pod's `Logs` over the catch-all
#    ClusterLogs (default.log).
#
# 2. Stopping. kwok's Stages decide exit codes and phases but cannot write a file, and the
#    log is what tells a real stop apart: for a routed pod whose training container runs
#    (phase Running; `pytorch`, or `node` in a JobSet's pod, i.e. a TrainJob's), this loop
#    appends the genuine InstructLab 0.16.2 lines (from tests/fixtures/instructlab/realrun/)
#    to the pod's log file, then annotates the pod
#      sim.finetune.dev/stop=checkpoint|sigterm
#    and the Stages in config/kwok.yaml end the container accordingly (see the README,
#    "Pod behaviour contract"):
#    - the pod is being deleted (deletionTimestamp: deleted, evicted, drained, preempted,
#      or its PyTorchJob or TrainJob suspended) and the training container has a
#      lifecycle.preStop hook (the hook writes InstructLab's on-demand checkpoint trigger
#      file): the on-demand checkpoint lines, `checkpoint` (exit 0 after the save);
#    - being deleted without a preStop hook: kubelet's SIGTERM reaches torchrun, which
#      prints a SignalException traceback: the SIGTERM lines, `sigterm` (exit 1);
#    - not being deleted, annotated sim.finetune.dev/checkpoint-requested=true (someone
#      wrote the trigger file with `kubectl exec`) and the training container runs with
#      --on_demand_checkpointing: the on-demand lines, `checkpoint`.
#    Once per pod: never twice for the same pod UID (remembered across watch restarts, and
#    a pod that already carries the annotation is left alone). The annotation is patched
#    with the pod's UID as a precondition, so a pod recreated under the same name (the
#    training operator does that) is never marked by mistake.
#
# Started and stopped by up.sh/down.sh.
#
# Usage: log-router.sh <run dir>
set -uo pipefail

RUN_DIR="$1"
LOG_DIR="$RUN_DIR/pod-logs"
REALRUN_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/../fixtures/instructlab/realrun" && pwd)"
# kubectl comes from the bin dir that up.sh put first on PATH. The kubeconfig is passed
# as a flag (not $KUBECONFIG) so down.sh recognises these kubectl processes as ours.
kc() { kubectl --kubeconfig="$RUN_DIR/kubeconfig" "$@"; }

say() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*"; }

# lines_from <file> <text>: the lines of <file> from the first one containing <text> to
# the end, byte for byte (carriage returns and escape sequences of progress bars included).
lines_from() { awk -v t="$2" 'found || index($0, t) { found = 1; print }' "$1"; }

# What InstructLab 0.16.2 printed from the trigger file's effect to its exit (0), and what
# torchrun printed from kubelet's SIGTERM to its exit (1). Taken from the genuine logs at
# start; a fixture that no longer holds them stops the router at once (up.sh reports it).
mapfile -t CHECKPOINT_LINES < <(lines_from "$REALRUN_DIR/train-0.16-ondemand.log" \
  'On-demand checkpoint: global consensus reached')
mapfile -t SIGTERM_LINES < <(lines_from "$REALRUN_DIR/train-0.16-sigterm.log" \
  'Received 15 death signal, shutting down workers')
if [[ "${CHECKPOINT_LINES[-1]:-}" != *'Epoch 1:  50%'* \
   || "${CHECKPOINT_LINES[-2]:-}" != *'On-demand checkpoint saved (during minibatch processing). Exiting training.'* \
   || "${SIGTERM_LINES[-1]:-}" != *'SignalException: Process 4676 got signal: 15' ]]; then
  say "ERROR: the stop lines are not where expected in $REALRUN_DIR/train-0.16-{ondemand,sigterm}.log"
  exit 1
fi

log_path() { # <label> <log-path annotation>
  local label="$1" path="$2"
  if [[ -n "$path" ]]; then
    [[ "$path" == /* ]] && echo "$path" || echo "$LOG_DIR/$path"
  else
    echo "$LOG_DIR/$label"
  fi
}

route() {
  local ns="$1" name="$2" uid="$3" path="$4"
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

# append_cri <file> <line>...: appends the lines in the CRI log format kwok serves (as
# sim-log.sh does), in one write, each with the current time and 1 ns after the previous
# one, so the lines keep their order under `kubectl logs --timestamps`/`--since-time`.
append_cri() {
  local file="$1" now sec ns ts out="" line
  shift
  now="${EPOCHREALTIME/[^0-9]/.}"   # the decimal separator follows the locale
  sec="${now%.*}" ns=$((10#${now#*.} * 1000))
  for line in "$@"; do
    TZ=UTC0 printf -v ts '%(%Y-%m-%dT%H:%M:%S)T.%09dZ' $((sec + ns / 1000000000)) $((ns % 1000000000))
    out+="$ts stdout F $line"$'\n'
    ns=$((ns + 1))
  done
  printf '%s' "$out" >>"$file"
}

# mark <ns> <name> <uid> <kind>: the annotation the kwok Stages act on. A few tries: if
# it never lands, kwok removes the pod at the end of its grace period (sim-pod-stopping).
mark() {
  local ns="$1" name="$2" uid="$3" kind="$4" err
  for _ in 1 2 3; do
    if err="$(kc -n "$ns" patch pod "$name" --type=merge \
        -p "{\"metadata\":{\"uid\":\"$uid\",\"annotations\":{\"sim.finetune.dev/stop\":\"$kind\"}}}" 2>&1)"; then
      return 0
    fi
    # Gone, or replaced by a pod of the same name (the UID precondition): nothing to mark.
    [[ "$err" != *NotFound* && "$err" != *'field is immutable'* ]] || return 0
    sleep 0.2
  done
  say "WARNING: could not annotate pod $ns/$name with sim.finetune.dev/stop=$kind: $err"
}

# stop_pod <ns> <name> <uid> <file> <kind> <why>
declare -A stopped=()
stop_pod() {
  local ns="$1" name="$2" uid="$3" file="$4" kind="$5" why="$6"
  stopped[$uid]="$kind"
  if [[ "$kind" == checkpoint ]]; then
    append_cri "$file" "${CHECKPOINT_LINES[@]}"
  else
    append_cri "$file" "${SIGTERM_LINES[@]}"
  fi
  mark "$ns" "$name" "$uid" "$kind"
  say "pod $ns/$name: $why -> $kind lines appended to $file"
}

say "watching pods for sim.finetune.dev/log labels (log dir $LOG_DIR)"
# One line per watch event, fields separated by US (\x1f, which no JSON value printed here
# holds raw); the container's args come last since they may hold anything else. The
# training container: `pytorch`, or in a JobSet's pod (a TrainJob's) `node`; the fields
# of both are printed, and the loop takes `node`'s where there is no `pytorch`.
o='.object'
pytorch="$o.spec.containers[?(@.name==\"pytorch\")]"
node="$o.spec.containers[?(@.name==\"node\")]"
fmt="{.type}{\"\x1f\"}{$o.metadata.namespace}{\"\x1f\"}{$o.metadata.name}{\"\x1f\"}{$o.metadata.uid}"
fmt+="{\"\x1f\"}{$o.metadata.labels.sim\.finetune\.dev/log}"
fmt+="{\"\x1f\"}{$o.metadata.annotations.sim\.finetune\.dev/log-path}"
fmt+="{\"\x1f\"}{$o.metadata.deletionTimestamp}{\"\x1f\"}{$o.status.phase}"
fmt+="{\"\x1f\"}{$o.status.containerStatuses[?(@.name==\"pytorch\")].state.running.startedAt}"
fmt+="{\"\x1f\"}{$o.metadata.annotations.sim\.finetune\.dev/stop}"
fmt+="{\"\x1f\"}{$o.metadata.annotations.sim\.finetune\.dev/checkpoint-requested}"
fmt+="{\"\x1f\"}{$o.metadata.labels.jobset\.sigs\.k8s\.io/jobset-name}"
fmt+="{\"\x1f\"}{$o.status.containerStatuses[?(@.name==\"node\")].state.running.startedAt}"
fmt+="{\"\x1f\"}{$node.lifecycle.preStop}{\"\x1f\"}{$node.command}{$node.args}"
fmt+="{\"\x1f\"}{$pytorch.lifecycle.preStop}{\"\x1f\"}{$pytorch.command}{$pytorch.args}{\"\n\"}"
# The watch ends when the apiserver closes it (every 30-60 min) or restarts; then
# it is simply opened again, which lists every pod anew (applying is idempotent; the
# stops already done are remembered in `stopped`, and marked on the pods).
while true; do
  declare -A routed=()
  while IFS=$'\x1f' read -r type ns name uid label path deleting phase running marked trigger \
      jobset node_running node_prestop node_argv prestop argv; do
    [[ "$type" != DELETED && -n "$uid" && ( -n "$label" || -n "$path" ) ]] || continue
    if [[ -z "$running" && -n "$jobset" && -n "$node_running" ]]; then
      running="$node_running" prestop="$node_prestop" argv="$node_argv"
    fi
    file="$(log_path "$label" "$path")"
    if [[ -z "${routed[$uid]:-}" ]]; then
      routed[$uid]=1
      route "$ns" "$name" "$uid" "$file"
    fi
    # Stops: only while the training process runs, and once per pod.
    [[ "$phase" == Running && -n "$running" && -z "$marked" ]] || continue
    if [[ -n "${stopped[$uid]:-}" ]]; then
      # Lines already appended; the annotation did not show yet (an event older than our
      # patch) or did not land: (re)apply it, a no-op when it is there.
      mark "$ns" "$name" "$uid" "${stopped[$uid]}"
    elif [[ -n "$deleting" && -n "$prestop" ]]; then
      stop_pod "$ns" "$name" "$uid" "$file" checkpoint "deleted, preStop hook writes the trigger file"
    elif [[ -n "$deleting" ]]; then
      stop_pod "$ns" "$name" "$uid" "$file" sigterm "deleted, no preStop hook: SIGTERM"
    elif [[ "$trigger" == true && "$argv" == *'"--on_demand_checkpointing"'* ]]; then
      stop_pod "$ns" "$name" "$uid" "$file" checkpoint "sim.finetune.dev/checkpoint-requested"
    fi
  done < <(kc get pods --all-namespaces --watch --output-watch-events -o "jsonpath=$fmt")
  unset routed
  sleep 1
done
