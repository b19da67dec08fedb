#!/usr/bin/env python3
"""Compare what `finetune-operator inspect-log` reads from a training log with what
InstructLab itself wrote: its metrics JSONL and the checkpoints in its output directory.

usage: compare.py --log TRAIN.log --metrics METRICS.jsonl [--tree DIR|LISTING]
                  [--epochs N] [--bin finetune-operator | --inspect-json FILE]

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


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--log", required=True)
    ap.add_argument("--metrics", required=True)
    ap.add_argument("--tree")
    ap.add_argument("--epochs", type=int)
    ap.add_argument("--bin", default=os.environ.get("FTO_BIN", "finetune-operator"))
    ap.add_argument("--inspect-json")
    a = ap.parse_args(argv)
    try:
        records = read_jsonl(a.metrics)
        _, hp, _, _ = truth(records)
        epochs = a.epochs or hp.get(HP_KEY)
        if a.inspect_json:
            with open(a.inspect_json, encoding="utf-8") as fh:
                inspect = json.load(fh)
        else:
            inspect = run_inspect(a.bin, a.log, epochs)
        if a.tree is not None and not os.path.exists(a.tree):
            raise FileNotFoundError(f"--tree {a.tree}: no such file or directory")
    except (OSError, ValueError, RuntimeError) as e:
        print(f"compare: ERROR {e}")
        return 2
    diffs, notes, facts = compare(inspect, records, a.tree, epochs)
    print(f"compare: {a.log} against {a.metrics}" + (f" and {a.tree}" if a.tree else "")
          + f" (epochs {epochs})")
    for f in facts:
        print(f"  ok    {f}")
    for n in notes:
        print(f"  note  {n}")
    for d in diffs:
        print(f"  DIFF  {d}")
    print(f"compare: {'FAIL, ' + str(len(diffs)) + ' difference(s)' if diffs else 'PASS'}")
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main())
