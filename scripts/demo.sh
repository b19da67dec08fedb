#!/usr/bin/env bash
# `make demo`: the operator end to end on the local Kubernetes control plane (tests/cluster/).
#
#   1. builds the operator (cargo) and, on a fresh machine, the control plane (~25 min, once);
#   2. starts the local cluster with our CRD installed before the garbage collector starts;
#   3. installs deploy/ without its Deployment: namespace, CRD, ServiceAccount, RBAC;
#   4. runs the operator as a local process under its ServiceAccount's token (not admin);
#   5. prepares the namespace finetune-demo: claims bound to local volumes, the job of an earlier
#      run deleted, a copy of examples/finetune.yaml with pod annotations that make kwok play a
#      short 2-node run with preprocessing (and a rank-0 log written while the master "trains");
#   6. applies it and watches `kubectl get finetunejobs -w` until it succeeds or fails (or 3 min);
#   7. shows `kubectl describe` with the events, and the children.
#
# Idempotent: a second run reuses the cluster and a healthy operator and re-creates the job.
#
# Usage: scripts/demo.sh          (make demo)
#        scripts/demo.sh down     (make demo-down) stop the operator, then the cluster
# Env:   FTO_DEMO_TIMEOUT (seconds to wait for the job, default 180),
#        FTO_DEMO_METRICS_PORT (default FTO_CLUSTER_PORT_BASE + 88 = 26488),
#        and the cluster's: FTO_CACHE, FTO_CLUSTER_PORT_BASE (tests/cluster/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."

NS=finetune-demo
JOB=granite-ft
DEMO_DIR=build/demo
OP_PID_FILE="$DEMO_DIR/operator.pid"
OP_LOG="$DEMO_DIR/operator.log"
OP_KUBECONFIG="$DEMO_DIR/operator.kubeconfig"
SIM_LOG=demo-granite-ft.log     # the pods' log file, under build/cluster/pod-logs/
POD_DURATION=8s                 # how long kwok lets each pod run
METRICS_PORT="${FTO_DEMO_METRICS_PORT:-$(( ${FTO_CLUSTER_PORT_BASE:-26400} + 88 ))}"
TIMEOUT="${FTO_DEMO_TIMEOUT:-180}"

if [[ -t 1 ]]; then B=$'\033[1m' DIM=$'\033[2m' R=$'\033[0m'; else B="" DIM="" R=""; fi
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
say() { printf '%s\n' "$*"; }
cmd() { printf '%s$ %s%s\n' "$DIM" "$*" "$R"; }   # echo a command the user can type too
die() { printf '\nERROR: %s\n' "$*" >&2; exit 1; }

# The operators this checkout's demo started: `finetune-operator run --namespace finetune-demo`
# running in this directory. Found in the process table, so a stale pid file never points at
# someone else's process, and operators of other checkouts or of the e2e tests are left alone.
demo_operator_pids() {
  local pid args
  while read -r pid args; do
    [[ "$args" == *" run --namespace $NS "* ]] || continue
    [[ "$(readlink "/proc/$pid/exe" 2>/dev/null)" == */finetune-operator* ]] || continue
    [[ "$(readlink "/proc/$pid/cwd" 2>/dev/null)" == "$PWD" ]] || continue
    echo "$pid"
  done < <(ps -eo pid=,args=)
}

stop_operator() {
  local pid deadline
  for pid in $(demo_operator_pids); do
    say "stopping the demo operator (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    deadline=$((SECONDS + 10))
    while kill -0 "$pid" 2>/dev/null && (( SECONDS < deadline )); do sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  rm -f "$OP_PID_FILE"
}

if [[ "${1:-}" == down ]]; then
  stop_operator
  tests/cluster/down.sh
  left="$(demo_operator_pids | paste -sd, -)"
  [[ -z "$left" ]] || die "the demo operator is still running: pid $left"
  say "demo stopped; no operator or cluster process left (logs kept in $DEMO_DIR/ and build/cluster/logs/)"
  exit 0
fi
[[ $# -eq 0 ]] || die "usage: $0 [down]"

# --- Steps, with timings -----------------------------------------------------------------
T0="$(now)"
STEPS=7 STEP=0 STEP_T0="" STEP_LABEL="" TIMINGS=()
end_step() { [[ -z "$STEP_T0" ]] || TIMINGS+=("$STEP_LABEL $(since "$STEP_T0")s"); }
# step <title> <short label for the timings>
step() {
  end_step
  STEP=$((STEP + 1)) STEP_T0="$(now)" STEP_LABEL="$2"
  printf '\n%s[%d/%d] %s%s  %s(at %ss)%s\n' "$B" "$STEP" "$STEPS" "$1" "$R" "$DIM" "$(since "$T0")" "$R"
}
# Ctrl-C: stop (bash would otherwise go on when a kubectl handles the signal itself). The EXIT
# trap set in step 6 then stops the watch; the operator and the cluster keep running.
trap 'printf "\ninterrupted; the cluster and the operator keep running (make demo-down stops them)\n" >&2
      exit 130' INT TERM
trap 'printf "\nmake demo failed in step %s/%s (see above). Operator log: %s; stop with: make demo-down\n" \
  "$STEP" "$STEPS" "$OP_LOG" >&2' ERR

mkdir -p "$DEMO_DIR"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${FTO_CACHE:-$HOME/.cache/finetune-operator}/cargo-target/$(rustc -vV | sha256sum | cut -c1-16)}"
BIN="$CARGO_TARGET_DIR/debug/finetune-operator"

cluster_built=1
tests/cluster/bin-dir.sh >/dev/null 2>&1 || cluster_built=0
if (( ! cluster_built )); then
  say "${B}First run on this machine:${R} the local control plane (etcd, kube-apiserver,"
  say "kube-controller-manager, kube-scheduler, kubectl, kwok, Kubeflow training operator) is built"
  say "from Go modules first. That takes about 25 minutes on 2 cores, once; progress follows."
  say "Later runs reuse it and take well under a minute."
fi

# --- 1. The operator ---------------------------------------------------------------------
step "Build the operator" build
cmd "cargo build --locked"
cargo build --locked

# --- 2. The cluster ----------------------------------------------------------------------
if (( cluster_built )); then
  step "Start the local cluster" cluster
else
  step "Build the local cluster (about 25 minutes, once), then start it" cluster
fi
cmd "FTO_CLUSTER_CRDS=crds/finetune.dev_finetunejobs.yaml tests/cluster/up.sh"
FTO_CLUSTER_CRDS=crds/finetune.dev_finetunejobs.yaml tests/cluster/up.sh
# KUBECONFIG (admin) and the cluster's kubectl v1.36 first on PATH; FTO_SIM_LOG_DIR.
# shellcheck source=tests/cluster/env.sh
source tests/cluster/env.sh

# --- 3. CRD and RBAC ---------------------------------------------------------------------
step "Install the CRD and RBAC from deploy/ (everything but the Deployment)" install
cmd "kubectl kustomize deploy/ | (drop the Deployment) | kubectl apply --server-side -f -"
kubectl kustomize deploy/ \
  | python3 -c '
import re, sys
documents = sys.stdin.read().split("\n---\n")
print("\n---\n".join(d for d in documents if not re.search("^kind: Deployment$", d, re.M)))' \
  | kubectl apply --server-side --force-conflicts --field-manager=finetune-demo -f -
kubectl wait --for=condition=Established crd/finetunejobs.finetune.dev --timeout=60s >/dev/null

# --- 4. The operator, under its own ServiceAccount ---------------------------------------
step "Run the operator as a local process under its ServiceAccount token" operator
token_works() {
  [[ -f "$OP_KUBECONFIG" ]] &&
    kubectl --kubeconfig "$OP_KUBECONFIG" auth can-i watch finetunejobs.finetune.dev -n "$NS" >/dev/null 2>&1
}
new_token=0
if token_works; then
  say "reusing the ServiceAccount token in $OP_KUBECONFIG"
else
  cmd "kubectl create token finetune-operator -n finetune-system --duration=24h"
  token="$(kubectl create token finetune-operator -n finetune-system --duration=24h)"
  server="$(kubectl config view --raw --minify -o jsonpath='{.clusters[0].cluster.server}')"
  ca="$(kubectl config view --raw --minify -o jsonpath='{.clusters[0].cluster.certificate-authority-data}')"
  (umask 077 && cat >"$OP_KUBECONFIG" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: $server
    certificate-authority-data: $ca
users:
- name: finetune-operator
  user:
    token: $token
contexts:
- name: operator
  context:
    cluster: local
    user: finetune-operator
current-context: operator
EOF
  )
  say "wrote $OP_KUBECONFIG (user system:serviceaccount:finetune-system:finetune-operator)"
  new_token=1
fi
# Progress read from the log every second (default 10), as the demo's run is short.
OP_ARGS=(run --namespace "$NS" --metrics-address "127.0.0.1:$METRICS_PORT" --log-format text
         --progress-interval-seconds 1)
ready() { curl -sf "http://127.0.0.1:$METRICS_PORT/readyz" >/dev/null 2>&1; }
same_operator() {  # same binary (not rebuilt since), same flags, same token
  [[ "$new_token" == 0 && "$(readlink "/proc/$1/exe")" == "$(realpath "$BIN")" &&
     "$(tr '\0' ' ' <"/proc/$1/cmdline")" == "$BIN ${OP_ARGS[*]} " ]]
}
pid="$(demo_operator_pids | head -n1)"
if [[ -n "$pid" ]] && same_operator "$pid" && ready; then
  say "the operator is already running and ready (pid $pid): reusing it"
else
  [[ -z "$pid" ]] || say "restarting the operator (new binary, flags or token, or not ready)"
  stop_operator
  if (exec 3<>"/dev/tcp/127.0.0.1/$METRICS_PORT") 2>/dev/null; then
    die "port $METRICS_PORT on 127.0.0.1 is in use; pick another with FTO_DEMO_METRICS_PORT=<port>"
  fi
  cmd "KUBECONFIG=$OP_KUBECONFIG finetune-operator ${OP_ARGS[*]}"
  # setsid: its own session, so Ctrl-C on the demo leaves it running for `make demo-down`.
  KUBECONFIG="$PWD/$OP_KUBECONFIG" NO_COLOR=1 setsid "$BIN" "${OP_ARGS[@]}" >"$OP_LOG" 2>&1 </dev/null &
  pid=$!
  echo "$pid" >"$OP_PID_FILE"
  deadline=$((SECONDS + 30))
  until ready; do
    if ! kill -0 "$pid" 2>/dev/null; then tail -n 20 "$OP_LOG" >&2; die "the operator exited; see $OP_LOG"; fi
    (( SECONDS < deadline )) || { tail -n 20 "$OP_LOG" >&2; die "the operator is not ready after 30s; see $OP_LOG"; }
    sleep 0.2
  done
  say "operator ready (pid $pid), watching namespace $NS; log: $OP_LOG"
fi

# --- 5. The FineTuneJob --------------------------------------------------------------------
step "Prepare the namespace $NS" prepare
# The claims the job mounts, bound ahead of time to local volumes (kwok mounts nothing).
{
  printf 'apiVersion: v1\nkind: Namespace\nmetadata: {name: %s}\n' "$NS"
  for claim in models datasets training-output; do
    cat <<EOF
---
apiVersion: v1
kind: PersistentVolume
metadata: {name: $NS-$claim, labels: {demo: $NS}}
spec:
  capacity: {storage: 1Gi}
  accessModes: [ReadWriteMany]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: demo
  hostPath: {path: /tmp/$NS-$claim}
  claimRef: {namespace: $NS, name: $claim}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: $claim, namespace: $NS}
spec:
  accessModes: [ReadWriteMany]
  storageClassName: demo
  volumeName: $NS-$claim
  resources: {requests: {storage: 1Gi}}
EOF
  done
} | kubectl apply -f - >/dev/null
kubectl wait -n "$NS" --for=jsonpath='{.status.phase}'=Bound pvc --all --timeout=60s >/dev/null
say "namespace $NS with the claims models, datasets, training-output (bound)"

children() { kubectl get pods,jobs.batch,pytorchjobs -n "$NS" -l "finetune.dev/job-name=$JOB" -o name; }
if kubectl get ftj "$JOB" -n "$NS" >/dev/null 2>&1; then
  cmd "kubectl delete ftj $JOB -n $NS      # from an earlier run"
  kubectl delete ftj "$JOB" -n "$NS" --wait --timeout=90s
  deadline=$((SECONDS + 90))
  while [[ -n "$(children)" ]]; do
    (( SECONDS < deadline )) || die "the children of the earlier $JOB are still there after 90s"
    sleep 0.3
  done
fi

# The pods' log: every pod of the job serves this file (label sim.finetune.dev/log). It starts
# with a few lines; play_training_log appends the rank-0 training output while the master runs.
: >"$FTO_SIM_LOG_DIR/$SIM_LOG"
tests/cluster/sim-log.sh "$FTO_SIM_LOG_DIR/$SIM_LOG" \
  "[rank0]: simulated by the local cluster (kwok): every pod of the demo serves build/cluster/pod-logs/$SIM_LOG" \
  "W$(date -u '+%m%d %H:%M:%S').000000 1 torch/distributed/run.py:792] Setting OMP_NUM_THREADS environment variable for each process to be 1 in default, to avoid your system being overloaded, please further tune the variable for optimal performance in your application as needed."

# kwok serves a pod's log from the `Logs` object named after it, which log-router.sh creates
# when the pod appears; the master can start, and the operator read its log, before kwok has
# that object, and then gets default.log. So the training pods' Logs exist beforehand.
kubectl delete logs.kwok.x-k8s.io -n "$NS" "$JOB-master-0" "$JOB-worker-0" --ignore-not-found --wait >/dev/null
for pod in "$JOB-master-0" "$JOB-worker-0"; do
  cat <<EOF
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Logs
metadata: {name: $pod, namespace: $NS}
spec:
  logs:
  - {logsFile: $FTO_SIM_LOG_DIR/$SIM_LOG, previousLogsFile: $FTO_SIM_LOG_DIR/$SIM_LOG, follow: true}
EOF
done | kubectl apply -f - >/dev/null

# examples/finetune.yaml as is, plus spec.podTemplate for kwok (tests/cluster/README.md).
kubectl create --dry-run=client -o json -n "$NS" -f examples/finetune.yaml | python3 -c '
import json, sys
job = json.load(sys.stdin)
template = job["spec"].setdefault("podTemplate", {})
# kwok runs each pod (preprocess, master, worker) this long, then it exits 0.
template.setdefault("annotations", {})["sim.finetune.dev/duration"] = sys.argv[1]
# kwok serves build/cluster/pod-logs/<this file> as the log of every container of the pods.
template.setdefault("labels", {})["sim.finetune.dev/log"] = sys.argv[2]
json.dump(job, sys.stdout, indent=2)' "$POD_DURATION" "$SIM_LOG" >"$DEMO_DIR/$JOB.json"
say "rendered examples/finetune.yaml + spec.podTemplate for kwok into $DEMO_DIR/$JOB.json"

# The rank-0 log of a 3-epoch InstructLab v0.12 run (4 steps an epoch, a checkpoint at each
# epoch end), appended with the current time while the master pod runs, as a real one prints it.
play_training_log() {
  local deadline=$((SECONDS + TIMEOUT)) epoch s step loss
  local losses=(2.450372 2.300301 2.145503 1.988921 1.857754 1.720679 1.610787 1.503617
                1.407523 1.312259 1.225360 1.134948)
  until [[ "$(kubectl get pod "$JOB-master-0" -n "$NS" -o jsonpath='{.status.phase}' 2>/dev/null)" == Running ]]; do
    (( SECONDS < deadline )) || return 0
    sleep 0.3
  done
  emit() { tests/cluster/sim-log.sh "$FTO_SIM_LOG_DIR/$SIM_LOG" "$@"; }
  emit "[$(date +%T)] INFO     Using tokenizer chat template from /model/granite-7b-base/tokenizer_config.json   tokenizer_utils.py:58"
  for epoch in 0 1 2; do
    for s in 1 2 3 4; do
      step=$((epoch * 4 + s)) loss="${losses[epoch * 4 + s - 1]}"
      sleep 0.45
      emit "[$(date +%T)] INFO     Epoch: $epoch, Step: $step, Rank: 0, loss = $loss, grad_accum_steps = 1   main_ds.py:151" \
        "[$(date +%T)] INFO     epoch=$epoch, step=$step, rank=0, overall_throughput=46.281, lr=$(printf %.2e "$(( step * 8 ))e-7"), cuda_mem_allocated=14.813, cuda_malloc_retries=0, num_loss_counted_tokens=63488, num_tokens_rank0=37200, batch_size=124, num_minibatches=2, avg_loss=$(printf %.3f "$loss"), samples_seen=$(( step * 124 )), gradnorm=0.813, total_samples=496, num_epoch_steps=4   main_ds.py:170"
    done
    local y=$'\033[93m' n=$'\033[0m' out=/output/$JOB seen=$(( (epoch + 1) * 496 ))
    emit "${y}Saving model in huggingface format at: samples_$seen$n" \
      "${y}Model saved in $out/hf_format/samples_$seen$n" \
      "${y}Saving full model state in $out/full_state/epoch_$epoch$n" \
      "${y}Saving training state: {'current_epoch': $epoch, 'samples_seen': $seen}$n" \
      "${y}Model state saved in: $out/full_state/epoch_$epoch$n"
  done
}

# --- 6. Watch ------------------------------------------------------------------------------
step "Apply examples/finetune.yaml and watch: Initializing → Training → Succeeded" run
cmd "kubectl apply -n $NS -f examples/finetune.yaml   # with spec.podTemplate for kwok: $DEMO_DIR/$JOB.json"
cmd "kubectl get finetunejobs -n $NS -w"
# The watch starts first, so that it shows every phase (it says "No resources found" until then).
kubectl get finetunejobs -n "$NS" -w 2> >(grep -v '^No resources found' >&2) &
watcher=$!
play_training_log &
player=$!
trap 'kill "$watcher" "$player" 2>/dev/null || true' EXIT
sleep 0.5
kubectl apply -n "$NS" -f "$DEMO_DIR/$JOB.json" >/dev/null
phase() { kubectl get ftj "$JOB" -n "$NS" -o jsonpath='{.status.phase}' 2>/dev/null || true; }
deadline=$((SECONDS + TIMEOUT))
until [[ "$(phase)" == Succeeded || "$(phase)" == Failed ]] || (( SECONDS >= deadline )); do sleep 0.5; done
sleep 1   # let the watch print the last change
kill "$watcher" "$player" 2>/dev/null || true
wait "$watcher" "$player" 2>/dev/null || true
final="$(phase)"

# --- 7. Describe ---------------------------------------------------------------------------
step "Describe it: conditions and events" describe
# Events are published just after the status they follow.
uid="$(kubectl get ftj "$JOB" -n "$NS" -o jsonpath='{.metadata.uid}')"
deadline=$((SECONDS + 10))
until kubectl get events -n "$NS" --field-selector "involvedObject.uid=$uid" -o jsonpath='{.items[*].reason}' \
      | grep -qwE 'TrainingSucceeded|TrainingFailed|PreprocessFailed|DeadlineExceeded' \
      || (( SECONDS >= deadline )); do
  sleep 0.3
done
cmd "kubectl describe ftj $JOB -n $NS"
kubectl describe ftj "$JOB" -n "$NS"
echo
cmd "kubectl get pytorchjobs,jobs,pods -n $NS"
kubectl get pytorchjobs,jobs,pods -n "$NS"
end_step

# --- Summary ---------------------------------------------------------------------------------
trap - ERR
echo
timings="$(printf '%s, ' "${TIMINGS[@]}")"
case "$final" in
  Succeeded) say "${B}$JOB Succeeded${R}; the demo took ${B}$(since "$T0")s${R} (${timings%, })" ;;
  Failed)    say "${B}$JOB Failed${R}: see the events above and $OP_LOG" ;;
  *)         say "${B}$JOB did not finish within ${TIMEOUT}s${R} (phase: ${final:-none}); last operator log lines:"
             tail -n 15 "$OP_LOG" ;;
esac
hint() { printf '  %-56s %s# %s%s\n' "$1" "$DIM" "$2" "$R"; }
echo
say "${B}Look around${R} (the cluster and the operator keep running):"
hint "source tests/cluster/env.sh" "KUBECONFIG and kubectl v1.36 in this shell"
hint "kubectl get ftj -n $NS" "-o yaml for the whole status"
hint "kubectl describe ftj $JOB -n $NS" "conditions and events"
hint "kubectl logs $JOB-master-0 -n $NS" "rank-0 log: build/cluster/pod-logs/$SIM_LOG"
hint "kubectl get pytorchjob,job,pods,events -n $NS" "the children and what happened to them"
hint "less $OP_LOG" "the operator's log (pid $(cat "$OP_PID_FILE" 2>/dev/null || echo ?))"
hint "curl -s 127.0.0.1:$METRICS_PORT/metrics" "its Prometheus metrics"
hint "make render" "finetune-operator render -f examples/finetune.yaml"
hint "make demo" "run the job again"
say "${B}Stop${R}:"
hint "make demo-down" "stops the operator and the local cluster"
[[ "$final" == Succeeded ]] || exit 1
