#!/usr/bin/env python3
"""Compare what `finetune-operator inspect-log` reads from a training log with what
InstructLab itself wrote: its metrics JSONL and the checkpoints in its output directory.

usage: compare.py --log TRAIN.log --metrics METRICS.jsonl [--tree DIR|LISTING]
                  [--epochs N] [--bin finetune-operator | --inspect-json FILE]
       compare.py --log ATTEMPT1.log --log ATTEMPT2.log ... --metrics METRICS.jsonl
                  [--tree AFTER1 --tree AFTER2 ...] [--exit-code N ...] [--stop STOP.json ...]
                  [--epochs N] [--bin finetune-operator | --inspect-json FILE ...]

Exit status: 0 when everything agrees, 1 on any difference (each one printed as a
`DIFF` line), 2 when an input cannot be read. Python standard library only.

Inputs
  --log       the rank-0 training log (torchrun's stdout and stderr, as `kubectl logs`).
  --metrics   `<output_dir>/training_params_and_metrics_global0.jsonl`: a hyperparameter
              record when a process starts, then one record per step (`step`, `epoch`,
              `samples_seen`, `avg_loss`, ...). Appended across restarts.
  --tree      the output directory itself, or a listing of paths (`find /output`), from
              which only `<output_dir>/hf_format/*` and `<output_dir>/full_state/*` count.
              Without it the checkpoints are not checked (said so, not a difference).
  --epochs    passed to `inspect-log --epochs`; default: `num_epochs` of the last
              hyperparameter record of the JSONL.
  --bin       the operator binary (default `finetune-operator` on PATH);
  --inspect-json  a saved `inspect-log` JSON instead of running the binary.

What is compared (the "truth" is the last JSONL record that has a `step`)
  step          progress.step         == step
  epoch         progress.epoch        == epoch + 1   (JSONL is 0-based; inspect-log
                                                      counts epochs from 1: "epoch 2/2")
  samples seen  progress.samplesSeen  == samples_seen
  total samples progress.totalSamples == total_samples (samples per epoch)
  total steps   progress.totalSteps   == num_epoch_steps x epochs
  loss          progress.loss         == avg_loss rounded to 3 decimals (either way at a tie)
  throughput    progress.throughput   == overall_throughput rounded to 3 decimals
  per epoch     each `epochCompleted` transition (epoch E) == the last JSONL record of
                0-based epoch E-1: samplesSeen and loss
  checkpoints   the set of inspect-log's checkpoints == the set of directories under
                hf_format/ and full_state/ (paths relative to output_dir); a full_state/epoch_N
                checkpoint must say epoch N+1, an hf_format/samples_N one samples N.

A process that resumed from a checkpoint (inspect-log's `resumedFrom`) and logged no
step of its own (no step record after the JSONL's last hyperparameter record) cannot
know the loss: its missing loss and throughput are then noted, not differences. Its
log knows only the checkpoints it wrote or resumed from, so for it the tree must hold
every checkpoint the log names, and the log must name every checkpoint in the tree
newer than the one it resumed from.

Attempts (`--log` given more than once: the preemption scenario)
  The logs are the starts of one run on one output directory, in order: each but the last
  stopped by an on-demand checkpoint, the next resumed from it. The JSONL is the run's
  whole file; each start appends a hyperparameter record, which splits it into attempts.
  Each attempt is compared as above against the JSONL up to its end and the tree taken
  after it (`--tree` once per attempt). Then these checks, each PASS or FAIL:
    every attempt but the last: stopped by its preStop hook without SIGTERM (`--stop`,
      the record preempt.py wrote), exit code 0 (`--exit-code`, once per attempt), the
      on-demand lines in its log (`On-demand checkpoint: saving full-state checkpoint at
      epoch=E, global_step=G, samples_seen=S` and `On-demand checkpoint saved (...).
      Exiting training.`), inspect-log's outcome `checkpointed`, the checkpoint
      full_state/epoch_E in its tree and as inspect-log's last full-state checkpoint (epoch
      E+1, samples S, S the JSONL's samples_seen at the attempt's end), and the next
      attempt resumed from it (inspect-log's `resumedFrom`);
    the last attempt: exit code 0, outcome `completed`;
    the run: inspect-log's samplesPlanned == num_epochs x total_samples, and samplesSkipped
      (none counts as 0) == what the JSONL shows: when step numbers of the plan
      (num_epoch_steps x epochs) are missing from it, the plan less the last samples_seen;
      else 0 (a shortfall without a missing step is batch packing, noted).
  Recorded, not checked (InstructLab's behaviour, not the operator's reading): the step each
  attempt resumed at against the checkpoint's next step (G), the steps that never ran, and
  the samples trained across the attempts against the plan.
"""
import argparse
import json
import os
import re
import subprocess
import sys

HP_KEY = "num_epochs"  # a hyperparameter record has it; step records do not


def read_jsonl(path):
    records = []
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            line = line.strip()
            if not line:
                continue
            try:
                records.append(json.loads(line))
            except ValueError as e:
                raise ValueError(f"{path}:{n}: not JSON: {e}") from None
    return records


def truth(records):
    """(last step record, last hyperparameter record, step records of the last process)."""
    last_hp_index = max((i for i, r in enumerate(records) if HP_KEY in r), default=-1)
    steps = [r for r in records if "step" in r]
    own = [r for r in records[last_hp_index + 1:] if "step" in r]
    hp = records[last_hp_index] if last_hp_index >= 0 else {}
    return (steps[-1] if steps else None), hp, own, steps


def round3(x):
    return round(float(x), 3)


def loss_matches(got, exact):
    """`got` is `exact` rounded to 3 decimals (either way at a tie)."""
    got, exact = float(got), float(exact)
    return abs(got - round(got, 3)) < 1e-9 and abs(got - exact) <= 0.0005 + 1e-9


def checkpoints_in_tree(tree, output_dir):
    """Relative paths `hf_format/X` and `full_state/X` found in a directory or a listing."""
    found = set()
    if os.path.isdir(tree):
        for sub in ("hf_format", "full_state"):
            d = os.path.join(tree, sub)
            if os.path.isdir(d):
                found.update(f"{sub}/{x}" for x in os.listdir(d) if os.path.isdir(os.path.join(d, x)))
        return found
    pat = re.compile("^" + re.escape(output_dir.rstrip("/")) + r"/((hf_format|full_state)/[^/]+)/?$")
    with open(tree, encoding="utf-8") as fh:
        for line in fh:
            m = pat.match(line.strip())
            if m:
                found.add(m.group(1))
    return found


def relative(path, output_dir):
    prefix = output_dir.rstrip("/") + "/"
    return path[len(prefix):] if path.startswith(prefix) else path


def order_key(rel):
    """full_state/epoch_N and hf_format/samples_N by number, then by name."""
    m = re.search(r"(\d+)$", rel)
    return (rel.split("/")[0], int(m.group(1)) if m else -1, rel)


def compare(inspect, records, tree=None, epochs=None):
    """Returns (differences, notes, facts): lists of strings."""
    diffs, notes, facts = [], [], []
    last, hp, own, steps = truth(records)
    if last is None:
        return ["the metrics JSONL has no record with a `step`"], notes, facts
    progress = inspect.get("progress") or {}
    resumed = inspect.get("resumedFrom")
    no_steps_of_its_own = bool(resumed) and not own
    if epochs is None:
        epochs = hp.get(HP_KEY)

    def check(name, got, want):
        if got == want:
            facts.append(f"{name}: {got}")
        else:
            diffs.append(f"{name}: inspect-log says {got!r}, the JSONL says {want!r}")

    check("step", progress.get("step"), last["step"])
    check("epoch (1-based)", progress.get("epoch"), last["epoch"] + 1)
    check("samples seen", progress.get("samplesSeen"), last["samples_seen"])
    if "total_samples" in last:
        check("total samples (per epoch)", progress.get("totalSamples"), last["total_samples"])
    if "num_epoch_steps" in last and epochs:
        check("total steps", progress.get("totalSteps"), last["num_epoch_steps"] * int(epochs))

    if isinstance(progress.get("step"), int) and isinstance(progress.get("totalSteps"), int) \
            and progress["step"] < progress["totalSteps"]:
        notes.append(f"the log ends at step {progress['step']} of {progress['totalSteps']} "
                     f"({progress.get('percent')} %): training did not finish in this process")

    for key, src, name in (("loss", "avg_loss", "loss"), ("throughput", "overall_throughput", "throughput")):
        if src not in last or last[src] is None:
            continue
        got = progress.get(key)
        if got is None and no_steps_of_its_own:
            notes.append(f"{name}: not in this log (resumed from {resumed.get('path')}, no step of its own); "
                         f"the JSONL's last is {last[src]}")
        elif got is None:
            diffs.append(f"{name}: inspect-log has none, the JSONL says {last[src]}")
        elif (loss_matches(got, last[src]) if key == "loss" else got == round3(last[src])):
            facts.append(f"{name}: {got} ({last[src]})")
        else:
            diffs.append(f"{name}: inspect-log says {got}, the JSONL says {last[src]} (rounded {round3(last[src])})")

    for t in inspect.get("transitions") or []:
        if t.get("type") != "epochCompleted":
            continue
        e = t.get("epoch")
        in_epoch = [r for r in steps if r.get("epoch") == (e - 1 if isinstance(e, int) else None)]
        if not in_epoch:
            diffs.append(f"epoch {e} completed: the JSONL has no step of 0-based epoch {e - 1 if isinstance(e, int) else e}")
            continue
        end = in_epoch[-1]
        ok = True
        if t.get("samplesSeen") != end["samples_seen"]:
            ok = False
            diffs.append(f"epoch {e} completed: inspect-log says samplesSeen {t.get('samplesSeen')}, "
                         f"the JSONL's last step of epoch {e - 1} says {end['samples_seen']}")
        if t.get("loss") is None or not loss_matches(t["loss"], end["avg_loss"]):
            ok = False
            diffs.append(f"epoch {e} completed: inspect-log says loss {t.get('loss')}, "
                         f"the JSONL's last step of epoch {e - 1} says {end['avg_loss']}")
        if ok:
            facts.append(f"epoch {e} completed: samples {end['samples_seen']}, loss {t['loss']}")

    output_dir = hp.get("output_dir") or ""
    if tree is None:
        notes.append("checkpoints: not checked (no --tree)")
        return diffs, notes, facts
    on_disk = checkpoints_in_tree(tree, output_dir)
    logged = {}
    for cp in inspect.get("checkpoints") or []:
        rel = relative(cp.get("path", ""), output_dir)
        logged[rel] = cp
        m = re.fullmatch(r"full_state/epoch_(\d+)", rel)
        if m and cp.get("epoch") != int(m.group(1)) + 1:
            diffs.append(f"checkpoint {rel}: inspect-log says epoch {cp.get('epoch')}, expected {int(m.group(1)) + 1}")
        m = re.fullmatch(r"hf_format/samples_(\d+)", rel)
        if m and cp.get("samples") != int(m.group(1)):
            diffs.append(f"checkpoint {rel}: inspect-log says samples {cp.get('samples')}, expected {int(m.group(1))}")
    missing_on_disk = sorted(set(logged) - on_disk, key=order_key)
    not_logged = on_disk - set(logged)
    if resumed:
        # an earlier process wrote what precedes the resume point
        base = resumed.get("samples") or 0
        base_epoch = resumed.get("epoch") or 0

        def newer(rel):
            m = re.fullmatch(r"hf_format/samples_(\d+)", rel)
            if m:
                return int(m.group(1)) > base
            m = re.fullmatch(r"full_state/epoch_(\d+)", rel)
            if m:
                return int(m.group(1)) + 1 > base_epoch
            return True
        older = {r for r in not_logged if not newer(r)}
        if older:
            notes.append(f"checkpoints written before the resume point, not in this log: {len(older)}")
        not_logged -= older
    for rel in missing_on_disk:
        diffs.append(f"checkpoint {rel}: in the log, not in the output directory")
    for rel in sorted(not_logged, key=order_key):
        diffs.append(f"checkpoint {rel}: in the output directory, not in inspect-log")
    both = sorted(set(logged) & on_disk, key=order_key)
    facts.append(f"checkpoints: {len(both)} in both: {' '.join(both)}")
    return diffs, notes, facts


def run_inspect(binary, log, epochs):
    cmd = [binary, "inspect-log", log] + (["--epochs", str(epochs)] if epochs else [])
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {p.returncode}: {p.stderr.strip()}")
    return json.loads(p.stdout)


# InstructLab 0.16's on-demand checkpoint, as its log says it
ON_DEMAND_SAVE = re.compile(r"On-demand checkpoint: saving full-state checkpoint at "
                            r"epoch=(\d+), global_step=(\d+), samples_seen=(\d+)")
ON_DEMAND_EXIT = re.compile(r"On-demand checkpoint saved \([^)]*\)\. Exiting training\.")


def split_starts(records):
    """The JSONL's records, one list per start of training (each opens with its
    hyperparameter record)."""
    starts = []
    for r in records:
        if HP_KEY in r or not starts:
            starts.append([])
        starts[-1].append(r)
    return starts


def ranges(numbers):
    """[31, 32, 33, 40] -> "31-33, 40"."""
    out, numbers = [], sorted(numbers)
    i = 0
    while i < len(numbers):
        j = i
        while j + 1 < len(numbers) and numbers[j + 1] == numbers[j] + 1:
            j += 1
        out.append(str(numbers[i]) if i == j else f"{numbers[i]}-{numbers[j]}")
        i = j + 1
    return ", ".join(out)


def compare_attempts(inspections, texts, records, trees=None, exit_codes=None, stops=None, epochs=None):
    """The attempts of one run (see the module's doc). Returns (per attempt: (diffs, notes,
    facts) as compare() gives them, checks: [(passed, text)], facts: [text])."""
    n = len(inspections)
    trees = trees or [None] * n
    stops = stops or []
    starts = split_starts(records)
    checks, facts, story = [], [], []

    def check(passed, text):
        checks.append((bool(passed), text))

    if len(starts) != n:
        check(False, f"the JSONL has {len(starts)} start(s) of training (hyperparameter records), "
                     f"for {n} logs")
        return [], checks, facts
    per_attempt = []
    for i in range(n):
        upto = [r for start in starts[:i + 1] for r in start]
        per_attempt.append(compare(inspections[i], upto, trees[i], epochs))
    hp = starts[-1][0] if HP_KEY in starts[-1][0] else {}
    output_dir = (hp.get("output_dir") or "").rstrip("/")
    if epochs is None:
        epochs = hp.get(HP_KEY)
    steps = [r for r in records if "step" in r]
    own_steps = [[r for r in start if "step" in r] for start in starts]

    for i in range(n - 1):
        a, b = f"attempt {i + 1}", f"attempt {i + 2}"
        if i < len(stops) and stops[i] is not None:
            stop = stops[i]
            if "stepSeen" not in stop:
                check(False, f"{a} stopped by its preStop hook: {stop.get('summary', 'the hook never ran')}")
            else:
                check(not stop.get("sigterm"), f"{a} stopped by its preStop hook: {stop.get('summary')}")
        if exit_codes:
            check(exit_codes[i] == 0, f"{a} exit code: {exit_codes[i]} (0 after an on-demand checkpoint)")
        save = ON_DEMAND_SAVE.search(texts[i])
        exited = ON_DEMAND_EXIT.search(texts[i])
        check(save and exited, f"{a} on-demand lines in the log: " + (
            f"{save.group(0)!r}, {exited.group(0)!r}" if save and exited else
            "missing " + " and ".join(x for x, m in (("the save", save), ("the exit", exited)) if not m)))
        outcome = inspections[i].get("outcome")
        check(outcome == "checkpointed", f"{a} outcome: inspect-log says {outcome!r}, expected 'checkpointed'")
        last = own_steps[i][-1] if own_steps[i] else None
        if last is None:
            check(False, f"{a} checkpoint: the JSONL has no step of {a}")
            continue
        epoch = int(save.group(1)) if save else last["epoch"]
        samples = last["samples_seen"]
        next_step = int(save.group(2)) if save else last["step"] + 1
        rel = f"full_state/epoch_{epoch}"
        path = f"{output_dir}/{rel}"
        problems = []
        if save and (int(save.group(1)), int(save.group(3))) != (last["epoch"], samples):
            problems.append(f"the log saves epoch {save.group(1)} at samples_seen {save.group(3)}, the JSONL's "
                            f"last step of {a} is epoch {last['epoch']} at {samples}")
        if trees[i] is not None and rel not in checkpoints_in_tree(trees[i], output_dir):
            problems.append(f"{rel} is not in the output directory after {a}")
        full = [c for c in inspections[i].get("checkpoints") or [] if c.get("kind") == "fullState"]
        got = full[-1] if full else {}
        if (got.get("path"), got.get("epoch"), got.get("samples")) != (path, epoch + 1, samples):
            problems.append(f"inspect-log's last full-state checkpoint is {got.get('path')} (epoch "
                            f"{got.get('epoch')}, samples {got.get('samples')}), expected {path} (epoch "
                            f"{epoch + 1}, samples {samples})")
        check(not problems, f"{a} checkpoint {rel}: " + ("; ".join(problems) if problems else
                                                          f"in the output directory and in inspect-log, "
                                                          f"epoch {epoch + 1} (from 1), {samples} samples"))
        resumed = inspections[i + 1].get("resumedFrom") or {}
        check((resumed.get("path"), resumed.get("samples")) == (path, samples),
              f"{b} resumed from {rel}: inspect-log's resumedFrom is {resumed.get('path')} "
              f"({resumed.get('samples')} samples)")
        first = own_steps[i + 1][0]["step"] if own_steps[i + 1] else None
        story.append(f"checkpointed after step {last['step']}, " + (
            f"resumed at step {first} (the checkpoint's next: {next_step})" if first is not None else
            "then no step"))
        if first is None:
            facts.append(f"{b} logged no step (the checkpoint's next step is {next_step})")
        elif first == next_step:
            facts.append(f"{b} resumed at step {first}, the checkpoint's next step")
        else:
            facts.append(f"{b} resumed at step {first}, the checkpoint's next step is {next_step}"
                         + (f": steps {next_step}-{first - 1} never ran" if first > next_step else
                            f": steps {first}-{next_step - 1} ran again"))

    last_inspection = inspections[-1]
    if exit_codes:
        check(exit_codes[-1] == 0, f"attempt {n} exit code: {exit_codes[-1]}")
    outcome = last_inspection.get("outcome")
    check(outcome == "completed", f"attempt {n} outcome: inspect-log says {outcome!r}, expected 'completed'")
    per_epoch = next((r["total_samples"] for r in reversed(records) if "total_samples" in r), None)
    planned = int(epochs) * per_epoch if epochs and per_epoch else None
    check(planned is not None and last_inspection.get("samplesPlanned") == planned,
          f"samples planned: inspect-log says {last_inspection.get('samplesPlanned')}, the JSONL "
          f"{epochs} epochs x {per_epoch} = {planned}")
    final = steps[-1]["samples_seen"] if steps else 0
    epoch_steps = next((r["num_epoch_steps"] for r in reversed(steps) if "num_epoch_steps" in r), None)
    missing = []
    if epoch_steps and epochs:
        seen = {r["step"] for r in steps}
        missing = [s for s in range(1, epoch_steps * int(epochs) + 1) if s not in seen]
    short = max((planned or 0) - final, 0)
    want = short if missing else 0
    got = last_inspection.get("samplesSkipped") or 0
    check(got == want, f"samples skipped: inspect-log says {last_inspection.get('samplesSkipped')}, "
                       f"the JSONL shows {want}" + (f" (steps {ranges(missing)} missing)" if missing else
                                                    " (no step missing)"))
    if short and not missing:
        facts.append(f"{short} samples short of the plan with no step missing: batch packing")
    trained = f"{final} of {planned} planned samples trained" if planned else f"{final} samples trained"
    if missing and planned:
        trained += f", {len(missing)} steps never ran ({short} samples, {100 * short // planned} %)"
    facts.append("across the attempts: " + "; ".join(story + [trained]))
    return per_attempt, checks, facts


def load_inputs(a):
    """(records, epochs, inspections) of the command line; raises on unreadable input."""
    records = read_jsonl(a.metrics)
    _, hp, _, _ = truth(records)
    epochs = a.epochs or hp.get(HP_KEY)
    if a.inspect_json:
        if len(a.inspect_json) != len(a.log):
            raise ValueError(f"{len(a.inspect_json)} --inspect-json for {len(a.log)} --log")
        inspections = []
        for path in a.inspect_json:
            with open(path, encoding="utf-8") as fh:
                inspections.append(json.load(fh))
    else:
        inspections = [run_inspect(a.bin, log, epochs) for log in a.log]
    for tree in a.tree or []:
        if not os.path.exists(tree):
            raise FileNotFoundError(f"--tree {tree}: no such file or directory")
    return records, epochs, inspections


def print_comparison(diffs, notes, facts):
    for f in facts:
        print(f"  ok    {f}")
    for n in notes:
        print(f"  note  {n}")
    for d in diffs:
        print(f"  DIFF  {d}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--log", required=True, action="append")
    ap.add_argument("--metrics", required=True)
    ap.add_argument("--tree", action="append")
    ap.add_argument("--epochs", type=int)
    ap.add_argument("--bin", default=os.environ.get("FTO_BIN", "finetune-operator"))
    ap.add_argument("--inspect-json", action="append")
    ap.add_argument("--exit-code", type=int, action="append")
    ap.add_argument("--stop", action="append")
    a = ap.parse_args(argv)
    n = len(a.log)
    if n == 1 and (a.exit_code or a.stop or len(a.tree or []) > 1):
        ap.error("--exit-code, --stop and more than one --tree are for attempts (--log more than once)")
    if n > 1 and ((a.tree and len(a.tree) != n) or (a.exit_code and len(a.exit_code) != n)
                  or len(a.stop or []) > n - 1):
        ap.error(f"{n} attempts: --tree and --exit-code once per attempt, --stop at most once per attempt but the last")
    try:
        records, epochs, inspections = load_inputs(a)
        texts, stops = [], []
        if n > 1:
            for log in a.log:
                with open(log, encoding="utf-8", errors="replace") as fh:
                    texts.append(fh.read())
            for path in a.stop or []:
                with open(path, encoding="utf-8") as fh:
                    stops.append(json.load(fh))
    except (OSError, ValueError, RuntimeError) as e:
        print(f"compare: ERROR {e}")
        return 2
    if n == 1:
        tree = a.tree[0] if a.tree else None
        diffs, notes, facts = compare(inspections[0], records, tree, epochs)
        print(f"compare: {a.log[0]} against {a.metrics}" + (f" and {tree}" if tree else "")
              + f" (epochs {epochs})")
        print_comparison(diffs, notes, facts)
        print(f"compare: {'FAIL, ' + str(len(diffs)) + ' difference(s)' if diffs else 'PASS'}")
        return 1 if diffs else 0
    per_attempt, checks, facts = compare_attempts(inspections, texts, records, a.tree, a.exit_code, stops, epochs)
    print(f"compare: {n} attempts of one run, {' then '.join(a.log)}, against {a.metrics} (epochs {epochs})")
    ndiffs = 0
    for i, (diffs, notes, attempt_facts) in enumerate(per_attempt):
        print(f"attempt {i + 1}: {a.log[i]}" + (f" and {a.tree[i]}" if a.tree else ""))
        print_comparison(diffs, notes, attempt_facts)
        ndiffs += len(diffs)
    print("the run:")
    for passed, text in checks:
        print(f"  {'PASS' if passed else 'FAIL'}  {text}")
    for f in facts:
        print(f"  fact  {f}")
    failed = sum(1 for passed, _ in checks if not passed)
    if ndiffs or failed:
        print(f"compare: FAIL, {ndiffs} difference(s), {failed} failed check(s)")
        return 1
    print("compare: PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
