#!/usr/bin/env bash
# GPU conformance kit: real InstructLab training on one NVIDIA GPU, started from the children
# `finetune-operator render` makes, then `inspect-log` checked against InstructLab's own metrics
# JSONL and checkpoints. See tests/gpu/README.md. Not part of `make test`.
#
#   tests/gpu/run.sh [--ilab 0.16.2] [--out DIR] [--time-limit SECONDS] [options]
#   tests/gpu/run.sh --check      # no GPU: self-tests, render + dry-run, comparator on fixtures
#   tests/gpu/run.sh --dry-run    # no GPU: render + dry-run only
#
# Exit status: 0 when every scenario ran and agreed; 1 on any failure or difference;
# 2 on a usage or setup error; 3 when nothing failed but a scenario was skipped (time).
set -u -o pipefail
export PYTHONUNBUFFERED=1

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
ALL_SCENARIOS="plain restart ondemand preempt sigterm"
DEFAULT_SCENARIOS="plain restart preempt sigterm" # preempt's first attempt is ondemand's run, by the hook

usage() {
  cat <<EOF
usage: tests/gpu/run.sh [options]

  --ilab VERSION      instructlab-training release to test (default 0.16.2). Pins come from
                      tests/gpu/releases/VERSION.txt when it exists; else pip resolves freely.
  --out DIR           results (default build/gpu-conformance/VERSION in the repo)
  --time-limit S      deadline for the whole run, install included (default 1800)
  --scenarios "LIST"  any of: $ALL_SCENARIOS
                      (default: $DEFAULT_SCENARIOS)
  --bin PATH          finetune-operator binary (default \$FTO_BIN, then PATH, then target/debug)
  --python PY         interpreter for the venv (default python3.12, else python3; >= 3.12 for
                      the recorded pins)
  --venv DIR          venv to create or reuse (default OUT/venv; reused when it already holds
                      that instructlab-training)
  --wheels DIR        install offline from a wheel directory (pip --no-index --find-links DIR)
  --pip-args "ARGS"   more pip arguments (e.g. "--extra-index-url https://download.pytorch.org/whl/cu130")
  --check             only what needs no GPU: unit tests, render + dry-run of the scenarios'
                      containers (and preempt's preStop hook), the comparator on
                      tests/fixtures/instructlab/realrun/ when present
  --dry-run           only the render + dry-run part of --check (no tests): what an operator
                      binary renders for the scenarios, as the kit would start it
  -h, --help          this text

Writes to /model, /data, /output (the rendered absolute paths), /tmp and /dev/shm, as the pods
would: run it as root on a machine or container you can throw away.
EOF
}

ILAB=${ILAB_VERSION:-0.16.2}
OUT=""
LIMIT=1800
SCENARIOS=""
BIN=${FTO_BIN:-}
PY=""
VENV=""
WHEELS=""
PIP_ARGS=""
CHECK_ONLY=0
while (($#)); do
  case $1 in
    --ilab) ILAB=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --time-limit) LIMIT=$2; shift 2 ;;
    --scenarios) SCENARIOS=$2; shift 2 ;;
    --bin) BIN=$2; shift 2 ;;
    --python) PY=$2; shift 2 ;;
    --venv) VENV=$2; shift 2 ;;
    --wheels) WHEELS=$2; shift 2 ;;
    --pip-args) PIP_ARGS=$2; shift 2 ;;
    --check) CHECK_ONLY=1; shift ;;
    --dry-run) CHECK_ONLY=2; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "run.sh: unknown argument $1 (--help)" >&2; exit 2 ;;
  esac
done
if ((CHECK_ONLY)); then SCENARIOS=${SCENARIOS:-$ALL_SCENARIOS}; else SCENARIOS=${SCENARIOS:-$DEFAULT_SCENARIOS}; fi
for s in $SCENARIOS; do
  [[ " $ALL_SCENARIOS " == *" $s "* ]] || { echo "run.sh: unknown scenario $s" >&2; exit 2; }
done
[[ $LIMIT =~ ^[0-9]+$ ]] || { echo "run.sh: --time-limit wants seconds" >&2; exit 2; }
OUT=${OUT:-$REPO/build/gpu-conformance/$ILAB}
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd)
VENV=${VENV:-$OUT/venv}
HOST_PY=$(command -v python3) || { echo "run.sh: python3 is needed" >&2; exit 2; }
if [[ -z $BIN ]]; then
  BIN=$(command -v finetune-operator || true)
  [[ -n $BIN ]] || BIN=$REPO/target/debug/finetune-operator
fi
[[ -x $BIN ]] || { echo "run.sh: no finetune-operator binary at '$BIN' (make build, or --bin)" >&2; exit 2; }
export FTO_BIN=$BIN

T0=$SECONDS
RUNLOG=$OUT/run.log
: > "$RUNLOG"
say() { printf '[gpu-kit +%ss] %s\n' "$((SECONDS - T0))" "$*" | tee -a "$RUNLOG"; }
left() { echo $((LIMIT - (SECONDS - T0))); }
# cap WANT: min(WANT, time left - 20 s kept for the summary), at least 1 (`timeout 0` never ends)
cap() { local want=$1 l; l=$(($(left) - 20)); ((l < want)) && want=$l; ((want < 1)) && want=1; echo "$want"; }

# render SCENARIO FTJ: children of the kit's FineTuneJob, image tag set to the release under test
render() {
  local name=$1 ftj=$2
  sed -e "s|instructlab-training:v[0-9A-Za-z.+-]*|instructlab-training:v$ILAB|" "$ftj" > "$OUT/ftj-$name.yaml"
  "$BIN" render -f "$OUT/ftj-$name.yaml" > "$OUT/children-$name.yaml"
}
scenario_ftj() {
  case $1 in
    plain | restart) echo "$HERE/ftj.yaml" ;;
    ondemand) echo "$HERE/ftj-ondemand.yaml" ;;
    preempt) echo "$HERE/ftj-preempt.yaml" ;;
    sigterm) echo "$HERE/ftj-sigterm.yaml" ;;
  esac
}

# --- checks that need no GPU ------------------------------------------------------------
# hook_check PYTHON: the preempt scenario's preStop hook, read from its rendered children as
# preempt.py will run it; refused (status 1) when the children have none
hook_check() {
  local py=$1
  if "$py" "$HERE/launch.py" "$OUT/children-preempt.yaml" prestop --dry-run > "$OUT/dry-run-preempt-prestop.json" 2> "$OUT/dry-run-preempt-prestop.err"; then
    say "dry-run preempt/prestop: $("$py" -c 'import json,sys; print(json.dumps(json.load(open(sys.argv[1]))["argv"]))' "$OUT/dry-run-preempt-prestop.json")"
    return 0
  fi
  say "preempt: REFUSED: $(cat "$OUT/dry-run-preempt-prestop.err")"
  say "preempt: the operator at $BIN renders no preStop hook for ftj-preempt.yaml; leave preempt out (--scenarios) or use one that does"
  return 1
}
self_check() { # PYTHON (one with PyYAML) [dry-run]
  local py=$1 tests=1 rc=0 s which fx
  [[ ${2:-} == dry-run ]] && tests=0
  if ((tests)); then
    say "self-check: unit tests (launcher expansion rules, preStop hook and pod stop, comparator)"
    (cd "$HERE" && "$py" -m unittest -q test_launch test_preempt test_compare) 2>&1 | tee -a "$RUNLOG"
    ((PIPESTATUS[0] == 0)) || rc=1
  fi
  for s in $ALL_SCENARIOS; do
    [[ $s == restart ]] && continue
    # restart runs plain's children
    [[ " $SCENARIOS " == *" $s "* || ($s == plain && " $SCENARIOS " == *" restart "*) ]] || continue
    render "$s" "$(scenario_ftj "$s")" || { say "render of $s FAILED"; rc=1; continue; }
    if [[ $s == preempt ]]; then hook_check "$py" || rc=1; fi
    for which in preprocess train; do
      if "$py" "$HERE/launch.py" "$OUT/children-$s.yaml" "$which" --dry-run > "$OUT/dry-run-$s-$which.json"; then
        say "dry-run $s/$which: $("$py" -c 'import json,sys; print(" ".join(json.load(open(sys.argv[1]))["argv"]))' "$OUT/dry-run-$s-$which.json")"
      else
        say "dry-run $s/$which FAILED"; rc=1
      fi
    done
  done
  fx=${FIXTURES:-$REPO/tests/fixtures/instructlab/realrun}
  if ((tests)) && [[ -d $fx ]]; then
    say "self-check: the comparator on the genuine logs in ${fx#"$REPO"/}"
    (cd "$HERE" && FIXTURES=$fx "$py" -m unittest -q test_compare.GenuineLogs) 2>&1 | tee -a "$RUNLOG"
    ((PIPESTATUS[0] == 0)) || rc=1
  fi
  return "$rc"
}

if ((CHECK_ONLY)); then
  mode=check
  ((CHECK_ONLY == 2)) && mode=dry-run
  if ! "$HOST_PY" -c 'import yaml' 2> /dev/null; then
    echo "run.sh --$mode: $HOST_PY lacks PyYAML (pip install pyyaml)" >&2; exit 2
  fi
  if self_check "$HOST_PY" "$mode"; then say "$mode: PASS (outputs in $OUT)"; exit 0; fi
  say "$mode: FAIL"; exit 1
fi

# --- the GPU run ------------------------------------------------------------------------
say "GPU conformance: instructlab-training $ILAB; scenarios: $SCENARIOS; deadline ${LIMIT}s; out $OUT"
say "operator: $BIN ($("$BIN" --version 2>&1))"
# Refuse a preempt scenario without its hook before anything is installed (again in self_check,
# with the venv's PyYAML, when this python has none).
if [[ " $SCENARIOS " == *" preempt "* ]] && "$HOST_PY" -c 'import yaml' 2> /dev/null; then
  render preempt "$HERE/ftj-preempt.yaml" || { say "render of preempt FAILED"; exit 2; }
  hook_check "$HOST_PY" || exit 2
fi
{ date -u; uname -a; nproc; free -g | head -2; } >> "$RUNLOG" 2>&1
gpus=$(timeout 60 nvidia-smi -L 2>&1)
echo "$gpus" >> "$RUNLOG"
if [[ $'\n'$gpus != *$'\n'"GPU "* ]]; then say "no NVIDIA GPU (nvidia-smi -L): this kit needs one"; exit 2; fi
for d in /model /data /output /dev/shm; do
  if ! mkdir -p "$d" 2> /dev/null || [[ ! -w $d ]]; then say "$d is not writable: the rendered paths need it (run as root)"; exit 2; fi
done

# venv with the release under test
if [[ -z $PY ]]; then PY=$(command -v python3.12 || command -v python3); fi
installed() { "$VENV/bin/python" -c 'import importlib.metadata as m, sys; sys.exit(m.version("instructlab-training") != sys.argv[1])' "$ILAB" 2> /dev/null; }
if [[ -x $VENV/bin/python ]] && installed; then
  say "venv: reusing $VENV (instructlab-training $ILAB)"
else
  rm -rf "$VENV"
  say "venv: $PY -m venv $VENV"
  "$PY" -m venv "$VENV" >> "$RUNLOG" 2>&1 || { say "venv creation failed"; exit 2; }
  pins=()
  if [[ -f $HERE/releases/$ILAB.txt ]]; then
    pins=(-c "$HERE/releases/$ILAB.txt")
  else
    say "no tests/gpu/releases/$ILAB.txt: pip resolves freely (record pip-freeze.txt as that file if the run passes)"
  fi
  src=()
  [[ -n $WHEELS ]] && src=(--no-index --find-links "$WHEELS")
  read -r -a extra <<< "$PIP_ARGS"
  # accelerate is only in instructlab-training's [cuda] extra, which would also build flash-attn
  t=$(cap 1200)
  say "pip install instructlab-training==$ILAB accelerate pyyaml ${pins[*]} ${src[*]} $PIP_ARGS (timeout ${t}s)"
  if ! timeout "$t" "$VENV/bin/python" -m pip install --disable-pip-version-check -q "${src[@]}" "${extra[@]}" \
    "instructlab-training==$ILAB" accelerate pyyaml "${pins[@]}" >> "$RUNLOG" 2>&1; then
    say "pip install failed (see run.log)"; exit 2
  fi
fi
"$VENV/bin/python" -m pip freeze > "$OUT/pip-freeze.txt" 2>> "$RUNLOG"
export VIRTUAL_ENV=$VENV PATH=$VENV/bin:$PATH # the image's python and torchrun
unset PYTHONPATH
{
  echo "python: $(command -v python) ($(python -V 2>&1)); torchrun: $(command -v torchrun)"
  python -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")'
  timeout 60 nvidia-smi -L
  grep -iE '^(instructlab-training|torch|transformers|accelerate|datasets|peft|trl)==' "$OUT/pip-freeze.txt"
} > "$OUT/versions.txt" 2>&1
tee -a "$RUNLOG" < "$OUT/versions.txt"
python -c 'import sys, torch; sys.exit(not torch.cuda.is_available())' || { say "torch sees no CUDA device"; exit 2; }

self_check python || { say "self-check FAILED: not running the GPU scenarios"; exit 1; }

# the PVCs' contents: dataset and tiny model, built offline
[[ -s $OUT/children-plain.yaml ]] || render plain "$HERE/ftj.yaml" || { say "render of plain FAILED"; exit 1; }
eval "$(python "$HERE/launch.py" "$OUT/children-plain.yaml" paths)" # the same model and data for all
mkdir -p "$(dirname "$DATA_PATH")" && python "$HERE/gen_data.py" "$DATA_PATH" 320 2>&1 | tee -a "$RUNLOG"
rm -rf "$MODEL_PATH"
say "make_model -> $MODEL_PATH"
timeout "$(cap 300)" python "$HERE/make_model.py" --data "$DATA_PATH" --out "$MODEL_PATH" >> "$RUNLOG" 2>&1 ||
  { say "make_model failed (see run.log)"; exit 1; }

WORKDIR=$OUT/workdir # the image's WORKDIR
mkdir -p "$WORKDIR"
# A new pod gets a fresh /tmp (emptyDir; HF_HOME=XDG_CACHE_HOME=/tmp) and /dev/shm: drop what an
# earlier "pod" left there.
fresh_pod() {
  rm -rf /tmp/datasets /tmp/hub /tmp/modules /tmp/xet /tmp/torch /tmp/huggingface /tmp/accelerate /tmp/torchelastic_*
  rm -f /dev/shm/checkpoint_requested /dev/shm/instructlab_checkpoint_requested
}
# Kill, by pid, what is left of a step: processes carrying GPUKIT_STEP=TAG in their environment
# (torchrun starts its workers in new sessions; a timed-out torchrun can leave them behind).
reap() {
  local tag=$1 e p pids=()
  for e in /proc/[0-9]*/environ; do
    p=${e#/proc/}; p=${p%/environ}
    [[ $p == "$$" ]] && continue
    # grep without -q reads to the end: no SIGPIPE for tr under pipefail
    if { tr '\0' '\n' < "$e"; } 2> /dev/null | grep -x "GPUKIT_STEP=$tag" > /dev/null; then pids+=("$p"); fi
  done
  if ((${#pids[@]})); then say "reaping what $tag left: ${pids[*]}"; kill -9 "${pids[@]}" 2> /dev/null; sleep 2; fi
}
# launch TAG CHILDREN preprocess|train LOG WANT_S [trigger|sigterm|preempt]: one container, as
# its pod starts it; rc in RC. With an action, once step 30 is logged: write the on-demand
# checkpoint trigger files, SIGTERM torchrun (PID 1 of the container), or stop the pod as
# kubelet does (preempt.py: the rendered preStop hook, SIGTERM only after the grace period;
# its record in LOG.stop.json).
RC=0
launch() {
  local tag=$1 children=$2 which=$3 log=$4 want=$5 action=${6:-} t s pid i seen=0 prc
  t=$(cap "$want")
  if ((t < 30)); then say "SKIP $tag: $(left)s left"; RC=skip; return; fi
  fresh_pod
  s=$SECONDS
  say "START $tag (timeout ${t}s)"
  GPUKIT_STEP=$tag GPUKIT_WORKDIR=$WORKDIR timeout -k 15 "$t" python "$HERE/launch.py" "$children" "$which" \
    --describe "$log.exec.json" --pidfile "$log.pid" < /dev/null > "$log" 2>&1 &
  pid=$!
  if [[ $action == preempt ]]; then
    # the grace period, capped to what is left of the container's timeout
    GPUKIT_STEP=$tag python "$HERE/preempt.py" "$children" --pidfile "$log.pid" --at-step 30 --log "$log" \
      --metrics "$OUTPUT_DIR/training_params_and_metrics_global0.jsonl" --wait "$t" \
      --grace-cap "$((t - 15 > 1 ? t - 15 : 1))" --record "$log.stop.json" > "$log.stop.txt" 2>&1
    prc=$?
    say "$tag: $(cat "$log.stop.txt")"
    ((prc == 0)) && seen=1
  elif [[ -n $action ]]; then
    for ((i = 0; i < t * 5; i++)); do
      if grep -qE 'step=30,|Step: 30,' "$log" 2> /dev/null; then seen=1; break; fi
      kill -0 "$pid" 2> /dev/null || break
      sleep 0.2
    done
    if ((seen)) && [[ $action == trigger ]]; then
      touch /dev/shm/checkpoint_requested /dev/shm/instructlab_checkpoint_requested
      say "$tag: step 30 logged at +$((SECONDS - s))s: trigger files written"
    elif ((seen)); then
      say "$tag: step 30 logged at +$((SECONDS - s))s: SIGTERM to torchrun, pid $(cat "$log.pid")"
      kill -TERM "$(cat "$log.pid")"
    else
      say "$tag: step 30 was never logged"
    fi
  fi
  wait "$pid"; RC=$?
  echo "$RC" > "$log.rc"
  if [[ $action == preempt ]] && ((RC == 137)) && grep -q '"sigkill": true' "$log.stop.json" 2> /dev/null; then
    say "END $tag rc=$RC after $((SECONDS - s))s: SIGKILL at the end of the grace period"
  elif ((RC == 124 || RC == 137)); then # timeout's own codes: it stopped the container
    say "END $tag TIMED OUT after $((SECONDS - s))s (rc=$RC)"; RC=timeout
  else
    say "END $tag rc=$RC after $((SECONDS - s))s"
    ((seen)) || [[ -z $action ]] || RC=noaction
  fi
  reap "$tag"
  fresh_pod
}

declare -A VERDICT EXIT NOTE
# preprocess_step NAME CHILDREN DIR: a fresh output directory, then the preprocess container;
# status 1, with VERDICT[NAME] set, when the scenario cannot go on
preprocess_step() {
  local name=$1 children=$2 dir=$3
  rm -rf "$OUTPUT_DIR"
  launch "$name-preprocess" "$children" preprocess "$dir/preprocess.log" 240
  [[ $RC == skip ]] && { VERDICT[$name]=SKIPPED; return 1; }
  if [[ $RC != 0 || ! -s $TRAIN_DATA ]]; then
    say "$name: preprocess rc=$RC, $TRAIN_DATA $( [[ -s $TRAIN_DATA ]] && echo present || echo missing)"
    VERDICT[$name]=FAIL; return 1
  fi
  say "$name: preprocess wrote $(wc -l < "$TRAIN_DATA") samples to $PREP_OUTPUT"
}
has_on_demand() {
  grep -rqs on_demand_checkpointing "$(python -c 'import instructlab.training, os; print(os.path.dirname(instructlab.training.__file__))')"
}
# keep_outputs DIR SUFFIX: the metrics JSONL and the checkpoint tree as they are now
keep_outputs() {
  local m=$OUTPUT_DIR/training_params_and_metrics_global0.jsonl
  [[ -f $m ]] && cp -f "$m" "$1/metrics$2.jsonl"
  find "$OUTPUT_DIR" -maxdepth 2 2> /dev/null | sort > "$1/tree$2.txt"
  [[ -f $m ]] || { say "no $m"; return 1; }
}

# scenario NAME: preprocess (unless restart), train, compare; verdict in VERDICT[NAME]
scenario() {
  local name=$1 dir=$OUT/$1 children action="" want=240
  local DATA_PATH PREP_OUTPUT MODEL_PATH JOB_NAME TRAIN_DATA OUTPUT_DIR # set by launch.py paths
  mkdir -p "$dir"
  children=$OUT/children-$name.yaml # rendered by self_check
  [[ $name == restart ]] && children=$OUT/children-plain.yaml
  eval "$(python "$HERE/launch.py" "$children" paths)"
  say "== scenario $name: job $JOB_NAME, output $OUTPUT_DIR"
  if [[ $name == restart ]]; then
    compgen -G "$OUTPUT_DIR/full_state/epoch_*" > /dev/null ||
      { say "restart: no $OUTPUT_DIR/full_state/epoch_* from plain"; VERDICT[$name]=FAIL; return; }
  else
    preprocess_step "$name" "$children" "$dir" || return
  fi
  if [[ $name == ondemand ]]; then
    action=trigger
    has_on_demand || { say "ondemand: instructlab-training $ILAB has no --on_demand_checkpointing"; VERDICT[$name]=SKIPPED; return; }
  fi
  [[ $name == sigterm ]] && action=sigterm
  [[ $name == restart ]] && want=180
  launch "$name-train" "$children" train "$dir/train.log" "$want" $action
  EXIT[$name]=$(cat "$dir/train.log.rc" 2> /dev/null || echo "-")
  case $RC in
    skip) VERDICT[$name]=SKIPPED; return ;;
    timeout) VERDICT[$name]=FAIL; return ;;
    noaction) VERDICT[$name]=FAIL; say "$name: the run ended before step 30"; return ;;
  esac
  keep_outputs "$dir" "" || { VERDICT[$name]=FAIL; return; }
  "$HOST_PY" "$HERE/compare.py" --bin "$BIN" --log "$dir/train.log" --metrics "$dir/metrics.jsonl" --tree "$OUTPUT_DIR" \
    > "$dir/compare.txt" 2>&1
  local crc=$?
  tee -a "$RUNLOG" < "$dir/compare.txt"
  if ((crc != 0)); then VERDICT[$name]=FAIL
  elif [[ ($name == plain || $name == restart) && ${EXIT[$name]} != 0 ]]; then
    say "$name: training exited ${EXIT[$name]}"; VERDICT[$name]=FAIL
  else VERDICT[$name]=PASS; fi
}

# The preemption scenario: attempt 1 is stopped as kubelet stops a pod once step 30 is logged
# (the rendered preStop hook asks for an on-demand checkpoint; SIGTERM only if the grace period
# passes); attempt 2 is the operator's retry, the same container on the same output directory.
scenario_preempt() {
  local name=preempt dir=$OUT/preempt children=$OUT/children-preempt.yaml rc1 rc2 crc
  local DATA_PATH PREP_OUTPUT MODEL_PATH JOB_NAME TRAIN_DATA OUTPUT_DIR # set by launch.py paths
  mkdir -p "$dir"
  eval "$(python "$HERE/launch.py" "$children" paths)"
  say "== scenario $name: job $JOB_NAME, output $OUTPUT_DIR"
  has_on_demand || { say "preempt: instructlab-training $ILAB has no --on_demand_checkpointing"; VERDICT[$name]=SKIPPED; return; }
  preprocess_step "$name" "$children" "$dir" || return
  launch "$name-attempt1" "$children" train "$dir/attempt1.log" 240 preempt
  rc1=$(cat "$dir/attempt1.log.rc" 2> /dev/null || echo "-")
  EXIT[$name]=$rc1
  case $RC in
    skip) VERDICT[$name]=SKIPPED; return ;;
    timeout) VERDICT[$name]=FAIL; return ;;
    noaction) VERDICT[$name]=FAIL; NOTE[$name]="attempt 1 ended before step 30"; say "$name: ${NOTE[$name]}"; return ;;
  esac
  keep_outputs "$dir" -attempt1 || { VERDICT[$name]=FAIL; return; }
  if [[ $rc1 != 0 ]]; then
    # no retry: what attempt 1's log says, alone
    say "$name: attempt 1 exited $rc1, not 0: no retry"
    NOTE[$name]="attempt 1 exited $rc1: no retry ($(python -c 'import json,sys; print(json.load(open(sys.argv[1]))["summary"])' "$dir/attempt1.log.stop.json" 2> /dev/null || echo "no stop record"))"
    "$HOST_PY" "$HERE/compare.py" --bin "$BIN" --log "$dir/attempt1.log" --metrics "$dir/metrics-attempt1.jsonl" \
      --tree "$dir/tree-attempt1.txt" > "$dir/compare.txt" 2>&1
    tee -a "$RUNLOG" < "$dir/compare.txt"
    VERDICT[$name]=FAIL; return
  fi
  launch "$name-attempt2" "$children" train "$dir/attempt2.log" 240
  rc2=$(cat "$dir/attempt2.log.rc" 2> /dev/null || echo "-")
  EXIT[$name]=$rc1,$rc2
  case $RC in
    skip) VERDICT[$name]=SKIPPED; return ;;
    timeout) VERDICT[$name]=FAIL; return ;;
  esac
  keep_outputs "$dir" "" || { VERDICT[$name]=FAIL; return; }
  "$HOST_PY" "$HERE/compare.py" --bin "$BIN" --metrics "$dir/metrics.jsonl" \
    --log "$dir/attempt1.log" --tree "$dir/tree-attempt1.txt" --exit-code "$rc1" --stop "$dir/attempt1.log.stop.json" \
    --log "$dir/attempt2.log" --tree "$OUTPUT_DIR" --exit-code "$rc2" > "$dir/compare.txt" 2>&1
  crc=$?
  tee -a "$RUNLOG" < "$dir/compare.txt"
  if ((crc == 0)); then VERDICT[$name]=PASS; else VERDICT[$name]=FAIL; fi
}

for s in $ALL_SCENARIOS; do
  [[ " $SCENARIOS " == *" $s "* ]] || continue
  if [[ $s == restart && " $SCENARIOS " != *" plain "* ]]; then say "restart needs plain: skipped"; VERDICT[$s]=SKIPPED; continue; fi
  if [[ $s == restart && ${VERDICT[plain]:-} != PASS ]]; then say "restart: plain did not pass: skipped"; VERDICT[$s]=SKIPPED; continue; fi
  if [[ $s == preempt ]]; then scenario_preempt; else scenario "$s"; fi
done

# --- summary ----------------------------------------------------------------------------
status=0
{
  echo "instructlab-training $ILAB, $(date -u +%Y-%m-%d), $(timeout 30 nvidia-smi -L 2> /dev/null | head -1 | sed 's/ (UUID.*//')"
  grep -E '^torch ' "$OUT/versions.txt"
  printf '%-10s %-8s %-5s %s\n' scenario verdict exit "the log"
  for s in $SCENARIOS; do
    if [[ $s == preempt ]]; then
      end=$(sed -n 's/^  fact  across the attempts: //p' "$OUT/$s/compare.txt" 2> /dev/null || true)
      end=${end:-${NOTE[$s]:-}}
    else
      end=$(grep -o 'ends at step [0-9]* of [0-9]*' "$OUT/$s/compare.txt" 2> /dev/null || true)
      [[ -z $end && -f $OUT/$s/compare.txt ]] && end="ran to its end"
    fi
    printf '%-10s %-8s %-5s %s\n' "$s" "${VERDICT[$s]:-SKIPPED}" "${EXIT[$s]:--}" "$end"
    case ${VERDICT[$s]:-SKIPPED} in
      PASS) ;;
      SKIPPED) ((status == 0)) && status=3 ;;
      *) status=1 ;;
    esac
  done
  echo "recorded for 0.16.2 (README.md): exit plain 0, restart 0, ondemand 0 (ends at step 30 of 160), sigterm 1 (step 31);"
  echo "  preempt, expected from the same runs: 0,0, checkpointed after step 30, resumed at step 52 (the checkpoint's next: 31),"
  echo "  2224 of 2560 planned samples trained (InstructLab 0.16.2 skips them; inspect-log must say samplesSkipped 336)"
  echo "took $((SECONDS - T0))s; details: $OUT/<scenario>/compare.txt"
} > "$OUT/summary.txt"
say "== summary"
tee -a "$RUNLOG" < "$OUT/summary.txt"
exit "$status"
