#!/usr/bin/env bash
# Smoke test of the local test cluster (run by `make cluster-smoke`, part of `make test`).
#
# Proves the pieces our operator's tests rely on work together for real:
#   - a PyTorchJob (Master + 1 Worker, container `pytorch`) goes Created -> Running ->
#     Succeeded through the real training operator, on pods played by kwok;
#   - `kubectl logs <job>-master-0` serves the log file chosen by a pod label, and
#     `kubectl logs -f` shows lines appended while the pod runs;
#   - a PyTorchJob whose pods exit with a code ends Failed, the exit code and reason in
#     the container status; an unlabelled pod serves default.log;
#   - deleting a PyTorchJob removes its pods (garbage collector);
#   - the rest of the pod contract: batch Job pods complete or fail, init containers
#     run before the main containers, image pull failures keep pods Pending;
#   - how running training pods stop: deleted or evicted with a preStop hook, the genuine
#     on-demand checkpoint lines land in the log and `pytorch` exits 0 (pod Succeeded);
#     without one, the genuine SIGTERM lines and exit 1 (pod Failed); DisruptionTarget
#     where evicted; the final status stays readable a few seconds, then the pod goes; the
#     checkpoint-requested annotation checkpoints without a deletion; other deleted pods
#     go at once with their logs untouched.
#   - Kueue: a PyTorchJob labelled with a queue is suspended by Kueue's webhook, admitted
#     and unsuspended, its pods run; a higher-priority one that needs its GPUs preempts it
#     (evicted, suspended again, pods gone), and it is admitted again once that one is gone.
#   - Trainer v2 and JobSet (unless FTO_CLUSTER_TRAINER=0): a TrainJob of 2 nodes on the
#     ClusterTrainingRuntime torch-distributed makes a JobSet, a batch Job and 2 pods with the
#     torch env; kwok runs them and the TrainJob ends Complete; one whose pods exit with a
#     code ends Failed; a suspended one has no pods, and runs once resumed; deleting a
#     TrainJob removes its JobSet, Job and pods. The project's ClusterTrainingRuntimes
#     (deploy/trainer/) are accepted, fail a TrainJob at once on exit code 3 keeping the pod,
#     and recreate the pod on exit code 137.
# Never skips: if the cluster is not reachable it fails with a message saying so.
#
# Usage: tests/cluster/smoke.sh     (cluster started by tests/cluster/up.sh)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

BIN_DIR="$(cluster_bin_dir)"
bin_dir_complete "$BIN_DIR" || die "test-cluster binaries are not built ($BIN_DIR).
Start the cluster first: make cluster-up (or tests/cluster/up.sh)."
export PATH="$BIN_DIR:$PATH"
export KUBECONFIG="$KUBECONFIG_PATH"

[[ -f "$KUBECONFIG" ]] || die "no test cluster: $KUBECONFIG does not exist.
Start it with: make cluster-up (or tests/cluster/up.sh)."
kubectl get --raw /readyz >/dev/null 2>&1 || die "the test cluster is not reachable \
(kube-apiserver at https://127.0.0.1:$APISERVER_PORT is not ready).
Start it with: make cluster-up (or tests/cluster/up.sh); logs are in build/cluster/logs/."
curl -sf "http://127.0.0.1:$TO_HEALTH_PORT/readyz" >/dev/null 2>&1 || die "the training \
operator of the test cluster is not ready (http://127.0.0.1:$TO_HEALTH_PORT/readyz).
Restart the cluster: make cluster-down cluster-up; see build/cluster/logs/training-operator.log."
curl -sf "http://127.0.0.1:$KUEUE_HEALTH_PORT/readyz" >/dev/null 2>&1 || die "Kueue in the test \
cluster is not ready (http://127.0.0.1:$KUEUE_HEALTH_PORT/readyz).
Restart the cluster: make cluster-down cluster-up; see build/cluster/logs/kueue.log."
if (( TRAINER_ENABLED )); then
  [[ "$(cat "$RUN_DIR/trainer-enabled" 2>/dev/null)" == 1 ]] || die "the test cluster runs without \
Trainer and JobSet (started with FTO_CLUSTER_TRAINER=0): smoke-test it with FTO_CLUSTER_TRAINER=0,
or start it with them (tests/cluster/up.sh restarts it)."
  for c in jobset:$JOBSET_HEALTH_PORT trainer:$TRAINER_HEALTH_PORT; do
    curl -sf "http://127.0.0.1:${c#*:}/readyz" >/dev/null 2>&1 || die "${c%%:*} in the test cluster \
is not ready (http://127.0.0.1:${c#*:}/readyz).
Restart the cluster: make cluster-down cluster-up; see build/cluster/logs/${c%%:*}.log."
  done
fi

T0=$SECONDS
ID="$(date +%s)-$$"
NS="fto-smoke-$ID"
LOG_FILE="smoke-$ID.log"
MARKER="smoke marker $ID"
PASSED=0
FAILED=0
FOLLOW_PID=""

pass() { PASSED=$((PASSED + 1)); printf '  PASS  %s\n' "$*"; }
fail() { FAILED=$((FAILED + 1)); printf '  FAIL  %s\n' "$*"; }
# check <description> <command...>
check() { local d="$1"; shift; if "$@"; then pass "$d"; else fail "$d"; fi; }

k() { kubectl -n "$NS" "$@"; }
jp() { k get "$1" -o "jsonpath=$2" 2>/dev/null || true; }
cond() { jp "$1" "{.status.conditions[?(@.type==\"$2\")].status}"; }
# is <resource> <jsonpath> <expected>: the jsonpath value equals the expected text
# (a function, so `eventually` re-reads it on every try).
is() { [[ "$(jp "$1" "$2")" == "$3" ]]; }
cond_is() { [[ "$(cond "$1" "$2")" == "$3" ]]; }

# eventually <seconds> <command...>: poll until the command succeeds.
eventually() {
  local deadline=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do
    (( SECONDS < deadline )) || return 1
    sleep 0.3
  done
}

cleanup() {
  [[ -z "$FOLLOW_PID" ]] || kill "$FOLLOW_PID" 2>/dev/null || true
  # Stop test pods still running would get the SIGTERM lines appended when the namespace
  # goes, recreating their log files: remove them without a grace period first.
  [[ -z "${STOP_PODS[*]:-}" ]] || k delete pod "${STOP_PODS[@]}" --grace-period=0 --force \
    --ignore-not-found --wait=false >/dev/null 2>&1 || true
  k delete pod -l 'jobset.sigs.k8s.io/jobset-name in (tj-term, tj-ckpt)' --grace-period=0 --force \
    --wait=false >/dev/null 2>&1 || true
  # The namespace controller deletes everything in it; no need to wait.
  kubectl delete namespace "$NS" --wait=false >/dev/null 2>&1 || true
  rm -f "$POD_LOG_DIR/$LOG_FILE" "$RUN_DIR/smoke-follow-$ID.out" "$POD_LOG_DIR/smoke-$ID-"*.log \
    "$RUN_DIR/smoke-eviction-$ID.json"
}
trap cleanup EXIT

echo "cluster-smoke: namespace $NS"
kubectl create namespace "$NS" >/dev/null
eventually 30 k get serviceaccount default || { fail "default ServiceAccount created in $NS"; exit 1; }

# The log file the `ok` job's pods choose by label; appended to below while they run.
"$CLUSTER_DIR/sim-log.sh" "$LOG_FILE" "$MARKER: training started" "epoch=0, step=1, avg_loss=1.234"

pytorchjob() { # name restartPolicy annotations-yaml labels-yaml [runPolicy-yaml] [job-labels-yaml] [workers] [gpus]
  local replica
  printf 'apiVersion: kubeflow.org/v1\nkind: PyTorchJob\nmetadata:\n  name: %s\n  labels: {%s}\nspec:\n' "$1" "${6:-}"
  [[ -z "${5:-}" ]] || printf '  runPolicy: {%s}\n' "$5"
  printf '  pytorchReplicaSpecs:\n'
  for replica in Master Worker; do
    cat <<EOF
    $replica:
      replicas: $([[ $replica == Master ]] && echo 1 || echo "${7:-1}")
      restartPolicy: $2
      template:
        metadata:
          annotations: {$3}
          labels: {$4}
        spec:
          containers:
          - name: pytorch
            image: registry.invalid/finetune-operator/smoke:1
            command: ["torchrun", "train.py"]
            resources:
              limits: {nvidia.com/gpu: "${8:-4}", cpu: "8", memory: 64Gi}
EOF
  done
}
job() { # name annotations-yaml
  cat <<EOF
apiVersion: batch/v1
kind: Job
metadata:
  name: $1
spec:
  backoffLimit: 0
  template:
    metadata:
      annotations: {$2}
    spec:
      restartPolicy: Never
      containers:
      - name: preprocess
        image: registry.invalid/finetune-operator/preprocess:1
EOF
}

# Raw training pods for the stop protocol (see the README, "Pod behaviour contract").
REALRUN="$REPO_ROOT/tests/fixtures/instructlab/realrun"
PRESTOP='{"preStop": {"exec": {"command": ["/bin/sh", "-c", "touch /dev/shm/checkpoint_requested /dev/shm/instructlab_checkpoint_requested; exec sleep 86400"]}}}'
ONDEMAND_ARGS='["-m", "instructlab.training.main_ds", "--on_demand_checkpointing"]'
stop_log() { echo "smoke-$ID-$1.log"; }
raw_pod() { # name container args-json lifecycle-json annotations-json routed(yes|no) [init-containers-yaml]
  local labels="{}"
  if [[ "$6" == yes ]]; then
    labels="{\"sim.finetune.dev/log\": \"$(stop_log "$1")\"}"
    "$CLUSTER_DIR/sim-log.sh" "$(stop_log "$1")" "pod $1 started"
  fi
  cat <<EOF
apiVersion: v1
kind: Pod
metadata:
  name: $1
  annotations: $5
  labels: $labels
spec:
  containers:
  - name: $2
    image: registry.invalid/finetune-operator/smoke:1
    command: ["torchrun"]
    args: $3
    lifecycle: $4
${7:-}
EOF
}
STOP_PODS=(stop-del-ckpt stop-del-term stop-evict-ckpt stop-evict-term stop-trigger stop-trigger-noflag
           stop-pending stop-other stop-unrouted)

{
  # Deleted with a preStop hook; a checkpoint save of 3 s, to see the lines come first.
  raw_pod stop-del-ckpt pytorch "$ONDEMAND_ARGS" "$PRESTOP" '{"sim.finetune.dev/checkpoint-duration": "3s"}' yes
  echo ---
  raw_pod stop-del-term pytorch '["-m", "instructlab.training.main_ds"]' '{}' '{}' yes
  echo ---
  raw_pod stop-evict-ckpt pytorch "$ONDEMAND_ARGS" "$PRESTOP" '{}' yes
  echo ---
  raw_pod stop-evict-term pytorch "$ONDEMAND_ARGS" '{}' '{}' yes
  echo ---
  raw_pod stop-trigger pytorch "$ONDEMAND_ARGS" '{}' '{}' yes
  echo ---
  # No --on_demand_checkpointing: InstructLab ignores the trigger file.
  raw_pod stop-trigger-noflag pytorch '["-m", "instructlab.training.main_ds"]' '{}' '{}' yes
  echo ---
  # Still Pending (init container running) when deleted.
  raw_pod stop-pending pytorch "$ONDEMAND_ARGS" "$PRESTOP" '{"sim.finetune.dev/init-duration": "10m"}' yes \
    '  initContainers:
  - name: init-pytorch
    image: registry.invalid/finetune-operator/smoke:1'
  echo ---
  # No `pytorch` container.
  raw_pod stop-other main '[]' "$PRESTOP" '{}' yes
  echo ---
  # No routed log.
  raw_pod stop-unrouted pytorch "$ONDEMAND_ARGS" "$PRESTOP" '{}' no
  echo ---
  pytorchjob ok OnFailure '"sim.finetune.dev/duration": "10s"' "\"sim.finetune.dev/log\": \"$LOG_FILE\""
  echo ---
  pytorchjob bad Never '"sim.finetune.dev/duration": "2s", "sim.finetune.dev/exit-code": "3"' ''
  echo ---
  pytorchjob crashy OnFailure '"sim.finetune.dev/duration": "1s", "sim.finetune.dev/exit-code": "1"' '' 'backoffLimit: 2'
  echo ---
  job prep-ok '"sim.finetune.dev/duration": "1s"'
  echo ---
  job prep-bad '"sim.finetune.dev/duration": "1s", "sim.finetune.dev/exit-code": "2"'
  echo ---
  cat <<'EOF'
apiVersion: v1
kind: Pod
metadata:
  name: with-init
  annotations: {"sim.finetune.dev/init-duration": "6s"}
spec:
  initContainers:
  - name: data-loader
    image: registry.invalid/finetune-operator/preprocess:1
  containers:
  - name: main
    image: registry.invalid/finetune-operator/smoke:1
---
apiVersion: v1
kind: Pod
metadata:
  name: pull-fails
  annotations: {"sim.finetune.dev/image-pull-failure": "true"}
spec:
  containers:
  - name: main
    image: registry.invalid/finetune-operator/missing:1
EOF
} | k apply -f - >/dev/null

echo "cluster-smoke: init containers and image pull failures"
check "init container running (pod Pending, main container PodInitializing)" eventually 15 is pod/with-init \
  '{.status.phase} {.status.initContainerStatuses[0].started} {.status.containerStatuses[0].state.waiting.reason}' \
  "Pending true PodInitializing"
check "image pull failure: Pending with container waiting ErrImagePull" eventually 15 is pod/pull-fails \
  '{.status.phase} {.status.containerStatuses[0].state.waiting.reason}' "Pending ErrImagePull"

echo "cluster-smoke: PyTorchJob ok (Master + Worker, 10s run)"
# Watch the job's conditions until it finishes, recording each one seen True.
seen=""
deadline=$((SECONDS + 120))
while (( SECONDS < deadline )); do
  for c in Created Running Succeeded Failed; do
    [[ "$(cond pytorchjob/ok "$c")" != True || " $seen " == *" $c "* ]] || seen="$seen $c"
  done
  [[ " $seen " != *" Succeeded "* && " $seen " != *" Failed "* ]] || break
  # While it runs: logs, then a follow that must show a line appended afterwards.
  if [[ " $seen " == *" Running "* && -z "$FOLLOW_PID" ]] \
     && [[ "$(jp pod/ok-master-0 '{.status.phase}')" == Running ]]; then
    check "kubectl logs ok-master-0 serves the file chosen by its sim.finetune.dev/log label" \
      eventually 10 bash -c "kubectl -n '$NS' logs ok-master-0 -c pytorch | grep -qF '$MARKER: training started'"
    kubectl -n "$NS" logs -f ok-master-0 -c pytorch >"$RUN_DIR/smoke-follow-$ID.out" 2>&1 &
    FOLLOW_PID=$!
    sleep 1
    "$CLUSTER_DIR/sim-log.sh" "$LOG_FILE" "$MARKER: epoch=0, step=2, avg_loss=1.111"
    check "kubectl logs -f shows a line appended while the pod runs" \
      eventually 10 grep -qF "$MARKER: epoch=0, step=2" "$RUN_DIR/smoke-follow-$ID.out"
    kill "$FOLLOW_PID" 2>/dev/null || true
  fi
  sleep 0.3
done
check "PyTorchJob ok went Created -> Running -> Succeeded (seen:$seen)" \
  test "$seen" == " Created Running Succeeded"
check "ok-master-0 Succeeded with container pytorch exit code 0" test \
  "$(jp pod/ok-master-0 '{.status.phase} {.status.containerStatuses[?(@.name=="pytorch")].state.terminated.exitCode}')" == "Succeeded 0"
check "ok-worker-0 ran its init container (init-pytorch), then Succeeded" eventually 15 is pod/ok-worker-0 \
  '{.status.initContainerStatuses[0].name} {.status.initContainerStatuses[0].state.terminated.reason} {.status.phase}' \
  "init-pytorch Completed Succeeded"

echo "cluster-smoke: PyTorchJob bad (exit code 3)"
check "PyTorchJob bad ends Failed" eventually 60 cond_is pytorchjob/bad Failed True
check "bad-master-0 Failed; container pytorch terminated with exit code 3, reason Error" test \
  "$(jp pod/bad-master-0 '{.status.phase} {.status.containerStatuses[?(@.name=="pytorch")].state.terminated.exitCode} {.status.containerStatuses[?(@.name=="pytorch")].state.terminated.reason}')" == "Failed 3 Error"
check "kubectl logs of an unlabelled pod serves default.log" \
  bash -c "kubectl -n '$NS' logs bad-master-0 -c pytorch | grep -qF 'Training finished'"

echo "cluster-smoke: PyTorchJob crashy (OnFailure, exit code 1, backoffLimit 2)"
check "crashy-master-0: container pytorch restarted, exit code 1 in lastState" eventually 30 is pod/crashy-master-0 \
  '{.status.phase} {.status.containerStatuses[0].lastState.terminated.exitCode} {.status.containerStatuses[0].lastState.terminated.reason}' \
  "Running 1 Error"
check "PyTorchJob crashy ends Failed once the restarts pass its backoffLimit" eventually 60 cond_is pytorchjob/crashy Failed True

echo "cluster-smoke: garbage collection"
check "PyTorchJob ok still has its 2 pods" test "$(k get pods -l training.kubeflow.org/job-name=ok -o name | wc -l)" == 2
k delete pytorchjob ok --wait=false >/dev/null
no_ok_pods() { [[ -z "$(k get pods -l training.kubeflow.org/job-name=ok -o name)" ]]; }
check "deleting PyTorchJob ok removes its pods (garbage collector)" eventually 60 no_ok_pods

echo "cluster-smoke: rest of the pod contract"
check "Job prep-ok completes" eventually 30 cond_is job/prep-ok Complete True
check "Job prep-bad fails" eventually 30 cond_is job/prep-bad Failed True
check "prep-bad pod: container terminated with exit code 2, reason Error" test \
  "$(k get pods -l job-name=prep-bad -o 'jsonpath={.items[0].status.phase} {.items[0].status.containerStatuses[0].state.terminated.exitCode} {.items[0].status.containerStatuses[0].state.terminated.reason}')" == "Failed 2 Error"
check "init container completed after its init-duration, then the pod Running" eventually 30 is pod/with-init \
  '{.status.initContainerStatuses[0].state.terminated.reason} {.status.phase}' "Completed Running"
check "image pull failure then turns into ImagePullBackOff, pod still Pending" eventually 30 is pod/pull-fails \
  '{.status.phase} {.status.containerStatuses[0].state.waiting.reason}' "Pending ImagePullBackOff"

echo "cluster-smoke: stopping training pods (deletion, eviction, on-demand checkpoint)"
# name|phase|deletionTimestamp|exit code|reason|DisruptionTarget|stop annotation, a pod a line
pod_states() {
  k get pods -o 'jsonpath={range .items[*]}{.metadata.name}{"|"}{.status.phase}{"|"}{.metadata.deletionTimestamp}{"|"}{.status.containerStatuses[0].state.terminated.exitCode}{"|"}{.status.containerStatuses[0].state.terminated.reason}{"|"}{.status.conditions[?(@.type=="DisruptionTarget")].status}{"|"}{.metadata.annotations.sim\.finetune\.dev/stop}{"\n"}{end}'
}
stop_pods_ready() {
  local out p
  out="$(pod_states)"
  for p in "${STOP_PODS[@]}"; do
    [[ "$p" == stop-pending ]] || grep -q "^$p|Running|" <<<"$out" || return 1
  done
  [[ "$(jp pod/stop-pending '{.status.phase} {.status.initContainerStatuses[0].started}')" == "Pending true" ]]
}
check "the stop test pods run (stop-pending: its init container)" eventually 30 stop_pods_ready
evict() {
  printf '{"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "%s", "namespace": "%s"}}' \
    "$1" "$NS" >"$RUN_DIR/smoke-eviction-$ID.json"
  kubectl create --raw "/api/v1/namespaces/$NS/pods/$1/eviction" -f "$RUN_DIR/smoke-eviction-$ID.json" >/dev/null
}
k delete pod stop-del-ckpt stop-del-term stop-pending stop-other stop-unrouted --wait=false >/dev/null
evict stop-evict-ckpt
evict stop-evict-term
# The router handles events in order: once stop-trigger has stopped, it has seen this one.
k annotate pod stop-trigger-noflag sim.finetune.dev/checkpoint-requested=true >/dev/null
k annotate pod stop-trigger sim.finetune.dev/checkpoint-requested=true >/dev/null

# Watch them all at once, recording for each pod the first terminated status seen (and the
# last log lines read at that moment), whether it still ran while its log already held the
# checkpoint's last lines, and whether it is gone.
declare -A term=() tails=() ran_after_lines=() gone=()
deadline=$((SECONDS + 40))
while (( SECONDS < deadline )); do
  out="$(pod_states)"
  for p in "${STOP_PODS[@]}"; do
    line="$(grep "^$p|" <<<"$out" || true)"
    if [[ -z "$line" ]]; then gone[$p]=1; continue; fi
    IFS='|' read -r _ phase deleting code reason disruption _ <<<"$line"
    if [[ -n "$code" && -z "${term[$p]:-}" ]]; then
      term[$p]="$phase $code $reason deleting=$([[ -n "$deleting" ]] && echo yes || echo no) DisruptionTarget=${disruption:-none}"
      tails[$p]="$(k logs "$p" --tail=2 2>&1 || true)"
    fi
    if [[ "$phase" == Running ]] && grep -qF 'Exiting training.' "$POD_LOG_DIR/$(stop_log "$p")" 2>/dev/null; then
      ran_after_lines[$p]=1
    fi
  done
  finished=1
  for p in stop-del-ckpt stop-del-term stop-evict-ckpt stop-evict-term stop-pending stop-other stop-unrouted; do
    [[ -n "${gone[$p]:-}" ]] || finished=0
  done
  [[ -n "${term[stop-trigger]:-}" ]] || finished=0
  (( finished )) && break
  sleep 0.2
done

# appended_is <pod> <fixture> <text>: the pod's log holds its first line, then, in kwok's CRI
# format, exactly the fixture's lines from the one containing <text> to its end.
appended_is() {
  local file
  file="$POD_LOG_DIR/$(stop_log "$1")"
  [[ "$(grep -cE '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+Z stdout F ' "$file")" == "$(wc -l <"$file")" ]] &&
    cmp -s <(tail -n +2 "$file" | cut -d' ' -f4-) <(sed -n "/$3/,\$p" "$REALRUN/$2")
}
CKPT_FROM='On-demand checkpoint: global consensus reached'
TERM_FROM='Received 15 death signal, shutting down workers'
untouched() { [[ "$(wc -l <"$POD_LOG_DIR/$(stop_log "$1")")" == 1 ]]; }
# Removed at once: gone, never seen with a terminated container.
gone_at_once() { [[ -n "${gone[$1]:-}" && -z "${term[$1]:-}" ]]; }
tail_has() { grep -qF "$2" <<<"${tails[$1]:-}"; }

check "deleted, preStop: Succeeded, pytorch exit 0 Completed, before it goes (seen: ${term[stop-del-ckpt]:-nothing})" \
  test "${term[stop-del-ckpt]:-}" == "Succeeded 0 Completed deleting=yes DisruptionTarget=none"
check "deleted, preStop: the genuine on-demand checkpoint lines appended to its log" \
  appended_is stop-del-ckpt train-0.16-ondemand.log "$CKPT_FROM"
check "deleted, preStop: pytorch still ran while the checkpoint was saved (log lines first, exit after)" \
  test -n "${ran_after_lines[stop-del-ckpt]:-}"
check "deleted, preStop: kubectl logs of the stopped pod ends with the checkpoint's exit line" \
  tail_has stop-del-ckpt 'On-demand checkpoint saved (during minibatch processing). Exiting training.'
check "deleted, no preStop: Failed, pytorch exit 1 Error, before it goes (seen: ${term[stop-del-term]:-nothing})" \
  test "${term[stop-del-term]:-}" == "Failed 1 Error deleting=yes DisruptionTarget=none"
check "deleted, no preStop: the genuine SIGTERM lines appended to its log" \
  appended_is stop-del-term train-0.16-sigterm.log "$TERM_FROM"
check "deleted, no preStop: kubectl logs of the stopped pod ends with torchrun's SignalException" \
  tail_has stop-del-term 'SignalException: Process 4676 got signal: 15'
check "evicted, preStop: Succeeded, exit 0, DisruptionTarget True (seen: ${term[stop-evict-ckpt]:-nothing})" \
  test "${term[stop-evict-ckpt]:-}" == "Succeeded 0 Completed deleting=yes DisruptionTarget=True"
check "evicted, preStop: the on-demand checkpoint lines appended" \
  appended_is stop-evict-ckpt train-0.16-ondemand.log "$CKPT_FROM"
check "evicted, no preStop: Failed, exit 1 Error, DisruptionTarget True (seen: ${term[stop-evict-term]:-nothing})" \
  test "${term[stop-evict-term]:-}" == "Failed 1 Error deleting=yes DisruptionTarget=True"
check "evicted, no preStop: the SIGTERM lines appended" \
  appended_is stop-evict-term train-0.16-sigterm.log "$TERM_FROM"
for p in stop-del-ckpt stop-del-term stop-evict-ckpt stop-evict-term; do
  check "$p is gone after its final status" test -n "${gone[$p]:-}"
done
check "checkpoint-requested, --on_demand_checkpointing: Succeeded, exit 0, no deletion (seen: ${term[stop-trigger]:-nothing})" \
  test "${term[stop-trigger]:-}" == "Succeeded 0 Completed deleting=no DisruptionTarget=none"
check "checkpoint-requested: the on-demand checkpoint lines appended" \
  appended_is stop-trigger train-0.16-ondemand.log "$CKPT_FROM"
check "checkpoint-requested: the pod stays (nothing deleted it)" is pod/stop-trigger '{.status.phase}' Succeeded
check "checkpoint-requested without --on_demand_checkpointing: still Running, unmarked" \
  is pod/stop-trigger-noflag '{.status.phase}|{.metadata.annotations.sim\.finetune\.dev/stop}' 'Running|'
check "checkpoint-requested without --on_demand_checkpointing: log untouched" untouched stop-trigger-noflag
check "deleted while Pending: gone at once, no final status" gone_at_once stop-pending
check "deleted, no pytorch container: gone at once, no final status" gone_at_once stop-other
check "deleted, no routed log: gone at once, no final status" gone_at_once stop-unrouted
check "pods deleted at once: their logs untouched" eval 'untouched stop-pending && untouched stop-other'
echo "cluster-smoke: Kueue (ClusterQueue $KUEUE_CLUSTER_QUEUE: $(kubectl get clusterqueue "$KUEUE_CLUSTER_QUEUE" \
  -o 'jsonpath={.spec.resourceGroups[0].flavors[0].resources[?(@.name=="nvidia.com/gpu")].nominalQuota}') GPUs)"
T_KUEUE=$SECONDS
# With the conversion strategy Webhook, the apiserver must call Kueue to serve v1beta1.
converted() {
  [[ "$(kubectl get crd "clusterqueues.kueue.x-k8s.io" -o 'jsonpath={.spec.conversion.strategy}')" == Webhook \
     && "$(kubectl get "clusterqueues.v1beta1.kueue.x-k8s.io" "$KUEUE_CLUSTER_QUEUE" -o 'jsonpath={.apiVersion}' 2>/dev/null)" \
        == kueue.x-k8s.io/v1beta1 ]]
}
check "Kueue's conversion webhook serves the ClusterQueue as v1beta1" converted
# Kueue admits by quota; the pods still need free GPUs on the nodes. The jobs above hold
# some (a failed job keeps its pods), so they go first.
k delete pytorchjobs,jobs,pods --all --wait=false >/dev/null
no_pods() { [[ -z "$(k get pods -o name)" ]]; }
eventually 60 no_pods || fail "the pods of the jobs above are gone before the Kueue part"
# As a test does: a LocalQueue of its own namespace, on the shared ClusterQueue.
k apply -f - >/dev/null <<EOF
apiVersion: kueue.x-k8s.io/v1beta2
kind: LocalQueue
metadata:
  name: $KUEUE_LOCAL_QUEUE
spec:
  clusterQueue: $KUEUE_CLUSTER_QUEUE
EOF
# low: 3 pods x 8 GPUs (24 of the 32); high: 2 x 8. Both together do not fit, so high
# (priority 1000) can only run by preempting low (100).
queued() { # name priority-class workers
  pytorchjob "$1" OnFailure '"sim.finetune.dev/duration": "10m"' '' '' \
    "\"kueue.x-k8s.io/queue-name\": \"$KUEUE_LOCAL_QUEUE\", \"kueue.x-k8s.io/priority-class\": \"$2\"" "$3" 8
}
# The Workload Kueue made for a PyTorchJob.
wl() { k get workloads -o "jsonpath={.items[?(@.metadata.ownerReferences[0].name==\"$1\")].metadata.name}" 2>/dev/null; }
wl_is() { # job jsonpath expected
  local w; w="$(wl "$1")"
  [[ -n "$w" && "$(jp "workload/$w" "$2")" == "$3" ]]
}
wl_cond() { wl_is "$1" "{.status.conditions[?(@.type==\"$2\")].status}" "$3"; }
suspend_is() { is "pytorchjob/$1" '{.spec.runPolicy.suspend}' "$2"; }
# pods_running <job> <n>: n pods, all Running on the fake GPU nodes.
pods_running() {
  local out
  out="$(k get pods -l "training.kubeflow.org/job-name=$1" -o 'jsonpath={range .items[*]}{.status.phase} {.spec.nodeName}{"\n"}{end}')"
  [[ "$(grep -c '^Running gpu-node-[0-3]$' <<<"$out")" == "$2" && "$(grep -c . <<<"$out")" == "$2" ]]
}
no_job_pods() { [[ -z "$(k get pods -l "training.kubeflow.org/job-name=$1" -o name)" ]]; }

created="$(queued low "$KUEUE_PRIORITY_LOW" 2 | k create -o 'jsonpath={.spec.runPolicy.suspend}' -f -)"
check "Kueue's webhook suspends PyTorchJob low on create (suspend: $created)" test "$created" == true
check "a Workload for low is admitted, priority 100 from $KUEUE_PRIORITY_LOW" eventually 30 \
  wl_is low '{.status.conditions[?(@.type=="Admitted")].status} {.spec.priority} {.spec.priorityClassRef.name}' \
  "True 100 $KUEUE_PRIORITY_LOW"
check "Kueue unsuspends low" eventually 30 suspend_is low false
check "low's 3 pods run on the fake GPU nodes" eventually 60 pods_running low 3

queued high "$KUEUE_PRIORITY_HIGH" 1 | k create -f - >/dev/null
check "high (priority 1000) preempts low: low's Workload Evicted, reason Preempted" eventually 30 \
  wl_is low '{.status.conditions[?(@.type=="Evicted")].status} {.status.conditions[?(@.type=="Evicted")].reason}' \
  "True Preempted"
check "low's Workload is no longer admitted" eventually 30 wl_cond low Admitted False
suspended_without_pods() { suspend_is "$1" true && no_job_pods "$1"; }
check "low is suspended again and its pods are gone" eventually 60 suspended_without_pods low
check "high is admitted and its 2 pods run" eventually 60 pods_running high 2
check "high's Workload is admitted" wl_cond high Admitted True

k delete pytorchjob high --wait=false >/dev/null
check "with high deleted, low's Workload is admitted again" eventually 60 wl_cond low Admitted True
check "low is unsuspended and its 3 pods run again" eventually 60 pods_running low 3
check "high's pods are gone" eventually 30 no_job_pods high
echo "cluster-smoke: the Kueue part took $((SECONDS - T_KUEUE))s"

if (( TRAINER_ENABLED )); then
echo "cluster-smoke: Trainer v2 (TrainJobs on the ClusterTrainingRuntime $TRAINER_TORCH_RUNTIME, through JobSet)"
T_TRAINER=$SECONDS
# The Kueue part's PyTorchJob holds 24 of the GPUs.
k delete pytorchjobs --all --wait=false >/dev/null
# trainjob <name> <suspend> <pod annotations-yaml> <pod labels-yaml> [nodes] [runtime kind]
# [runtime name] [args-json]: by default 2 nodes of the ClusterTrainingRuntime. The pods'
# annotations and labels (the pod behaviour contract) come through a runtime patch, the only
# way to put metadata on a TrainJob's pods.
trainjob() {
  cat <<EOF
apiVersion: trainer.kubeflow.org/v1alpha1
kind: TrainJob
metadata:
  name: $1
spec:
  runtimeRef: {name: ${7:-$TRAINER_TORCH_RUNTIME}, kind: ${6:-ClusterTrainingRuntime}, apiGroup: trainer.kubeflow.org}
  suspend: $2
  trainer:
    numNodes: ${5:-2}
    command: ["torchrun", "-m", "instructlab.training.main_ds"]
    args: ${8:-["--model_name_or_path", "/model"]}
    resourcesPerNode:
      limits: {nvidia.com/gpu: "1", cpu: "2", memory: 8Gi}
  runtimePatches:
  - manager: finetune.dev/smoke
    trainingRuntimeSpec:
      template:
        spec:
          replicatedJobs:
          - name: node
            template:
              spec:
                template:
                  metadata:
                    annotations: {$3}
                    labels: {$4}
EOF
}
# How a running TrainJob pod stops when its TrainJob is suspended (as Kueue does to preempt
# it): its training container is `node`. With the runtime as shipped (no preStop hook): the
# SIGTERM lines, exit 1; with a runtime of our own whose `node` has the operator's preStop
# hook: the on-demand checkpoint lines, exit 0. One node each: pods that share a log file
# share their stop lines.
"$CLUSTER_DIR/sim-log.sh" "$(stop_log tj-term)" "pod of tj-term started"
"$CLUSTER_DIR/sim-log.sh" "$(stop_log tj-ckpt)" "pod of tj-ckpt started"
{
  cat <<EOF
apiVersion: trainer.kubeflow.org/v1alpha1
kind: TrainingRuntime
metadata:
  name: torch-prestop
spec:
  mlPolicy: {numNodes: 1, torch: {}}
  template:
    spec:
      replicatedJobs:
      - name: node
        template:
          metadata:
            labels: {trainer.kubeflow.org/trainjob-ancestor-step: trainer}
          spec:
            template:
              spec:
                containers:
                - name: node
                  image: registry.invalid/finetune-operator/smoke:1
                  lifecycle: $PRESTOP
EOF
  echo ---
  trainjob tj-term false '"sim.finetune.dev/duration": "10m"' "\"sim.finetune.dev/log\": \"$(stop_log tj-term)\"" 1
  echo ---
  trainjob tj-ckpt false '"sim.finetune.dev/duration": "10m"' "\"sim.finetune.dev/log\": \"$(stop_log tj-ckpt)\"" 1 \
    TrainingRuntime torch-prestop '["--model_name_or_path", "/model", "--on_demand_checkpointing"]'
  echo ---
  trainjob tj-ok false '"sim.finetune.dev/duration": "6s"' "\"sim.finetune.dev/log\": \"$LOG_FILE\""
  echo ---
  trainjob tj-bad false '"sim.finetune.dev/duration": "1s", "sim.finetune.dev/exit-code": "3"' ''
  echo ---
  trainjob tj-held true '"sim.finetune.dev/duration": "1s"' ''
} | k apply -f - >/dev/null
# tj_cond <trainjob> <type>: "<status> <reason>: <message>"
tj_cond() {
  jp "trainjob/$1" "{.status.conditions[?(@.type==\"$2\")].status} {.status.conditions[?(@.type==\"$2\")].reason}: {.status.conditions[?(@.type==\"$2\")].message}"
}
tj_cond_is() { [[ "$(tj_cond "$1" "$2")" == "$3" ]]; }
# A TrainJob's pods: those of its JobSet, which has the TrainJob's name.
tj_pods() { k get pods -l "jobset.sigs.k8s.io/jobset-name=$1" -o name; }
tj_phases() { k get pods -l "jobset.sigs.k8s.io/jobset-name=$1" -o 'jsonpath={.items[*].status.phase}'; }
tj_phases_are() { [[ "$(tj_phases "$1")" == "$2" ]]; }
# rank0 <trainjob>: the pod of node 0 (completion index 0 of the only Job).
rank0() { k get pods -l "jobset.sigs.k8s.io/jobset-name=$1,batch.kubernetes.io/job-completion-index=0" -o name; }
check "TrainJob tj-ok: JobSet tj-ok owned by it" eventually 30 is jobset/tj-ok \
  '{.metadata.ownerReferences[0].kind}/{.metadata.ownerReferences[0].name}' TrainJob/tj-ok
check "TrainJob tj-ok: batch Job tj-ok-node-0 owned by the JobSet, Indexed, 2 completions" eventually 30 is job/tj-ok-node-0 \
  '{.metadata.ownerReferences[0].kind} {.spec.completionMode} {.spec.completions} {.spec.parallelism}' "JobSet Indexed 2 2"
check "TrainJob tj-ok: 2 pods Running" eventually 30 tj_phases_are tj-ok "Running Running"
r0="$(rank0 tj-ok)"
check "TrainJob tj-ok: the node-0 pod (job-completion-index 0) is $r0, hostname tj-ok-node-0-0, subdomain tj-ok" is "$r0" \
  '{.metadata.labels.jobset\.sigs\.k8s\.io/replicatedjob-name} {.spec.hostname} {.spec.subdomain}' "node tj-ok-node-0-0 tj-ok"
check "TrainJob tj-ok: container node runs the TrainJob's command and args" is "$r0" \
  '{.spec.containers[*].name} {.spec.containers[0].command} {.spec.containers[0].args}' \
  'node ["torchrun","-m","instructlab.training.main_ds"] ["--model_name_or_path","/model"]'
env_of() { jp "$r0" "{.spec.containers[0].env[?(@.name==\"$1\")].value}{.spec.containers[0].env[?(@.name==\"$1\")].valueFrom.fieldRef.fieldPath}"; }
check "TrainJob tj-ok: torch env PET_NNODES=2 PET_NPROC_PER_NODE=auto PET_MASTER_ADDR=tj-ok-node-0-0.tj-ok PET_MASTER_PORT=29500" \
  test "$(env_of PET_NNODES) $(env_of PET_NPROC_PER_NODE) $(env_of PET_MASTER_ADDR) $(env_of PET_MASTER_PORT)" == \
  "2 auto tj-ok-node-0-0.tj-ok 29500"
check "TrainJob tj-ok: PET_NODE_RANK is the pod's job-completion-index" \
  test "$(env_of PET_NODE_RANK)" == "metadata.annotations['batch.kubernetes.io/job-completion-index']"
check "TrainJob tj-ok: the runtime patch's annotation and label reach the pods" is "$r0" \
  '{.metadata.annotations.sim\.finetune\.dev/duration} {.metadata.labels.sim\.finetune\.dev/log}' "6s $LOG_FILE"
check "kubectl logs of the node-0 pod serves the file chosen by its label" \
  eventually 10 bash -c "kubectl -n '$NS' logs '$r0' | grep -qF '$MARKER: training started'"
check "TrainJob tj-ok completes: Complete True, reason AllJobsCompleted" eventually 60 \
  tj_cond_is tj-ok Complete "True AllJobsCompleted: jobset completed successfully"
check "TrainJob tj-ok: both pods Succeeded" tj_phases_are tj-ok "Succeeded Succeeded"
check "TrainJob tj-bad (exit code 3) fails: Failed True, reason FailedJobs" eventually 60 tj_cond_is tj-bad Failed \
  "True FailedJobs: jobset failed due to one or more job failures (first failed job: tj-bad-node-0)"
check "TrainJob tj-held (suspend: true): Suspended True, reason Suspended" eventually 30 \
  tj_cond_is tj-held Suspended "True Suspended: TrainJob is suspended"
check "TrainJob tj-held: JobSet suspended, no pods" eval \
  '[[ "$(jp jobset/tj-held "{.spec.suspend}")" == true && -z "$(tj_pods tj-held)" ]]'
k patch trainjob tj-held --type=merge -p '{"spec": {"suspend": false}}' >/dev/null
check "TrainJob tj-held resumed: Suspended False, reason Resumed" eventually 30 \
  tj_cond_is tj-held Suspended "False Resumed: TrainJob is resumed"
check "TrainJob tj-held resumed: its 2 pods run and it completes" eventually 60 \
  tj_cond_is tj-held Complete "True AllJobsCompleted: jobset completed successfully"
check "TrainJobs tj-term and tj-ckpt run (1 pod each)" eventually 30 \
  eval 'tj_phases_are tj-term Running && tj_phases_are tj-ckpt Running'
k patch trainjob tj-term tj-ckpt --type=merge -p '{"spec": {"suspend": true}}' >/dev/null
# The first terminated status each pod shows, and whether it is gone after.
declare -A tj_term=() tj_gone=()
deadline=$((SECONDS + 40))
while (( SECONDS < deadline )); do
  for t in tj-term tj-ckpt; do
    line="$(k get pods -l "jobset.sigs.k8s.io/jobset-name=$t" -o 'jsonpath={range .items[*]}{.status.phase}|{.status.containerStatuses[0].name}|{.status.containerStatuses[0].state.terminated.exitCode}|{.status.containerStatuses[0].state.terminated.reason}|{.metadata.deletionTimestamp}{"\n"}{end}' 2>/dev/null)"
    if [[ -z "$line" ]]; then tj_gone[$t]=1; continue; fi
    IFS='|' read -r phase cname code reason deleting <<<"$line"
    [[ -z "$code" || -n "${tj_term[$t]:-}" ]] || tj_term[$t]="$phase $cname $code $reason deleting=$([[ -n "$deleting" ]] && echo yes || echo no)"
  done
  [[ -z "${tj_gone[tj-term]:-}" || -z "${tj_gone[tj-ckpt]:-}" ]] || break
  sleep 0.2
done
check "TrainJob tj-term suspended: its pod Failed, node exit 1 Error, before it goes (seen: ${tj_term[tj-term]:-nothing})" \
  test "${tj_term[tj-term]:-}" == "Failed node 1 Error deleting=yes"
check "TrainJob tj-term suspended: the genuine SIGTERM lines appended to its log" \
  appended_is tj-term train-0.16-sigterm.log "$TERM_FROM"
check "TrainJob tj-ckpt (runtime with the preStop hook) suspended: Succeeded, node exit 0 (seen: ${tj_term[tj-ckpt]:-nothing})" \
  test "${tj_term[tj-ckpt]:-}" == "Succeeded node 0 Completed deleting=yes"
check "TrainJob tj-ckpt suspended: the on-demand checkpoint lines appended to its log" \
  appended_is tj-ckpt train-0.16-ondemand.log "$CKPT_FROM"
check "TrainJobs tj-term and tj-ckpt: the stopped pods are gone, Suspended True" eval \
  '[[ -n "${tj_gone[tj-term]:-}" && -n "${tj_gone[tj-ckpt]:-}" ]] && tj_cond_is tj-term Suspended "True Suspended: TrainJob is suspended"'
# The project's own runtimes (deploy/trainer/, named by the operator's TrainJobs): accepted by
# Trainer's validator, and their exit codes read as a PyTorchJob's restartPolicy ExitCode:
# 1-127 fail the TrainJob at once with the failed pod kept (its log is the failure tail),
# 128-255 recreate the pod.
kubectl apply -k "$REPO_ROOT/deploy/trainer/" >/dev/null
{
  trainjob tj-py false '"sim.finetune.dev/duration": "1s", "sim.finetune.dev/exit-code": "3"' '' 1 \
    ClusterTrainingRuntime finetune-instructlab
  echo ---
  trainjob tj-kill false '"sim.finetune.dev/duration": "1s", "sim.finetune.dev/exit-code": "137"' '' 1 \
    ClusterTrainingRuntime finetune-instructlab-checkpoint
} | k apply -f - >/dev/null
check "TrainJob tj-py (runtime finetune-instructlab, exit code 3) fails: Failed True, reason FailedJobs" \
  eventually 60 tj_cond_is tj-py Failed \
  "True FailedJobs: jobset failed due to one or more job failures (first failed job: tj-py-node-0)"
check "TrainJob tj-py: one pod, Failed and kept (not retried, not deleted)" tj_phases_are tj-py Failed
check "TrainJob tj-kill (runtime finetune-instructlab-checkpoint, exit code 137): its pod is recreated" \
  eventually 60 eval '[[ "$(tj_pods tj-kill | wc -l)" -ge 2 ]]'
check "TrainJob tj-kill: not failed" eval '[[ "$(tj_cond tj-kill Failed)" != True* ]]'
check "TrainJob tj-kill: node has the operator's preStop hook" is "$(rank0 tj-kill | head -1)" \
  '{.spec.containers[0].lifecycle.preStop.exec.command[0]}' /bin/sh
k delete trainjob tj-py tj-kill --wait=false >/dev/null
k delete trainjob tj-ok --wait=false >/dev/null
tj_gone() { [[ -z "$(k get jobset tj-ok -o name 2>/dev/null)$(k get job tj-ok-node-0 -o name 2>/dev/null)$(tj_pods tj-ok)" ]]; }
check "deleting TrainJob tj-ok removes its JobSet, Job and pods (garbage collector)" eventually 60 tj_gone
echo "cluster-smoke: the Trainer part took $((SECONDS - T_TRAINER))s"
fi

echo "cluster-smoke: took $((SECONDS - T0))s"
echo "cluster-smoke: $PASSED passed, $FAILED failed"
(( FAILED == 0 ))
