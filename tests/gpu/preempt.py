#!/usr/bin/env python3
"""Stop a running training container as kubelet stops it when its pod is deleted, evicted
or preempted, once the container has logged a given step.

usage: preempt.py CHILDREN.yaml --pidfile FILE --at-step N [--log FILE] [--metrics FILE]
                  [--grace-cap S] [--wait S] [--record FILE]

CHILDREN.yaml is what `finetune-operator render` printed; the container is its PyTorchJob
Master's `pytorch` container, started by `launch.py CHILDREN.yaml train --pidfile FILE`
(the pid in FILE is then the container's first process, torchrun).

1. Wait until step N or a later one is logged: InstructLab's `step=N,` / `Step: N,` in
   --log, or a record with `"step": N` in --metrics (its metrics JSONL), whichever shows it
   first; at most --wait seconds (default 600).
2. Run the container's preStop hook as kubelet does (pkg/kubelet/kuberuntime,
   killContainer): `lifecycle.preStop.exec.command` exactly as rendered (no `$(VAR)`
   expansion), in the container's environment and working directory (`launch.py
   prestop`), and wait until the hook ends or the pod's terminationGracePeriodSeconds
   pass, whichever is first (--grace-cap lowers the bound for the kit's deadline).
3. If the container still runs then, send SIGTERM to its first process; what is left of
   the grace period, at least 2 s (kubelet's minimum), later, SIGKILL.
4. When the container has exited, kill what is left of the hook: the container runtime
   does that, since the hook runs inside the container. A hook that waits for the
   container to exit (`exec sleep`) thus keeps kubelet from sending SIGTERM while
   InstructLab saves its checkpoint.

Prints one line saying what happened, and writes the details as JSON to --record.
Exit status: 0 once the container has exited (on its own or by a signal); 2 on a usage
error or when the container has no exec preStop hook (refused before anything is done);
3 when step N was never logged: the container ended first, or --wait passed (the hook
was not run and no signal sent).

Linux only (reads /proc). Needs PyYAML, as launch.py does.
"""
import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

import launch

MIN_GRACE_SECONDS = 2  # kubelet's minimumGracePeriodInSeconds
POLL = 0.1
STEP_IN_LOG = re.compile(rb"(?:\bstep=|\bStep: )(\d+),")


def alive(pid):
    """Whether process `pid` runs: it exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except (FileNotFoundError, ProcessLookupError):
        return False
    state = stat[stat.rfind(b")") + 2:stat.rfind(b")") + 3]
    return state not in (b"Z", b"X", b"")


class StepWatcher:
    """The highest step a growing log or metrics JSONL has shown so far."""

    def __init__(self, log=None, metrics=None):
        self.sources = [(p, kind) for p, kind in ((log, "log"), (metrics, "metrics")) if p]
        self.offsets = {p: 0 for p, _ in self.sources}
        self.carry = {p: b"" for p, _ in self.sources}
        self.step = None
        self.seen_in = None

    def poll(self):
        for path, kind in self.sources:
            try:
                with open(path, "rb") as fh:
                    fh.seek(self.offsets[path])
                    data = fh.read()
            except FileNotFoundError:
                continue
            if not data:
                continue
            self.offsets[path] += len(data)
            data = self.carry[path] + data
            if kind == "log":
                steps = [int(m) for m in STEP_IN_LOG.findall(data)]
                self.carry[path] = data[-64:]  # a line cut between two reads
            else:
                complete, _, rest = data.rpartition(b"\n")
                self.carry[path] = rest
                steps = []
                for line in complete.split(b"\n"):
                    try:
                        record = json.loads(line)
                    except ValueError:
                        continue
                    if isinstance(record, dict) and isinstance(record.get("step"), int):
                        steps.append(record["step"])
            if steps and (self.step is None or max(steps) > self.step):
                self.step, self.seen_in = max(steps), kind
        return self.step


def read_pid(pidfile, deadline):
    while time.monotonic() < deadline:
        try:
            with open(pidfile, encoding="utf-8") as fh:
                text = fh.read().strip()
            if text:
                return int(text)
        except FileNotFoundError:
            pass
        time.sleep(POLL)
    return None


def wait_until(pred, seconds):
    """Polls `pred` until it holds or `seconds` pass; returns whether it held."""
    end = time.monotonic() + seconds
    while True:
        if pred():
            return True
        if time.monotonic() >= end:
            return False
        time.sleep(POLL)


def stop(info, grace, pid, hook_output):
    """Steps 2-4 above for the container whose first process is `pid`. Returns the record."""
    t0 = time.monotonic()
    since = lambda: round(time.monotonic() - t0, 1)  # noqa: E731
    rec = {"hook": info["argv"], "gracePeriodSeconds": grace, "sigterm": False, "sigkill": False}
    hook = subprocess.Popen(info["argv"], env=info["env"], cwd=info["workdir"], stdin=subprocess.DEVNULL,
                            stdout=hook_output, stderr=subprocess.STDOUT, start_new_session=True)
    rec["hookPid"] = hook.pid
    wait_until(lambda: not alive(pid) or hook.poll() is not None, grace)
    if hook.poll() is not None and alive(pid):
        rec["hookExit"] = hook.returncode
        rec["hookEndedAfterS"] = since()
    if alive(pid):
        left = max(grace - (time.monotonic() - t0), MIN_GRACE_SECONDS)
        os.kill(pid, signal.SIGTERM)
        rec["sigterm"], rec["sigtermAfterS"] = True, since()
        if not wait_until(lambda: not alive(pid), left):
            os.kill(pid, signal.SIGKILL)
            rec["sigkill"], rec["sigkillAfterS"] = True, since()
            wait_until(lambda: not alive(pid), 10)
    rec["containerExitedAfterS"] = since()
    if hook.poll() is None:
        # The container is gone: its runtime ends every process in it, the hook included.
        try:
            os.killpg(hook.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        hook.wait()
        rec["hookEnded"] = "killed when the container exited"
    else:
        rec.setdefault("hookExit", hook.returncode)
        rec["hookEnded"] = f"exited {hook.returncode}"
    return rec


def describe(rec):
    if "stepSeen" not in rec:
        return f"step {rec['atStep']} was never logged ({rec['why']}): no hook run, no signal sent"
    text = (f"preStop hook run once step {rec['stepSeen']} was logged ({rec['stepSeenIn']}, "
            f"+{rec['stepSeenAfterS']}s); ")
    if not rec["sigterm"]:
        return text + (f"the container exited {rec['containerExitedAfterS']}s later, within the "
                       f"{rec['gracePeriodSeconds']}s grace period: no SIGTERM; hook {rec['hookEnded']}")
    why = (f"the hook ended ({rec['hookExit']})" if "hookEndedAfterS" in rec
           else f"the {rec['gracePeriodSeconds']}s grace period passed")
    text += f"{why} with the container still running: SIGTERM at +{rec['sigtermAfterS']}s"
    if rec["sigkill"]:
        text += f", SIGKILL at +{rec['sigkillAfterS']}s"
    return text + f"; hook {rec['hookEnded']}"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("children")
    ap.add_argument("--pidfile", required=True)
    ap.add_argument("--at-step", type=int, required=True)
    ap.add_argument("--log")
    ap.add_argument("--metrics")
    ap.add_argument("--grace-cap", type=float)
    ap.add_argument("--wait", type=float, default=600)
    ap.add_argument("--record")
    a = ap.parse_args(argv)
    if not (a.log or a.metrics):
        ap.error("--log or --metrics is needed to see the step")
    docs = launch.load_docs(a.children)
    try:
        info = launch.resolve_prestop(docs)
    except launch.NoHook as e:
        print(f"preempt.py: refused: {e}", file=sys.stderr)
        return 2
    grace = info["terminationGracePeriodSeconds"]
    if a.grace_cap is not None and a.grace_cap < grace:
        grace = a.grace_cap
    rec = {"atStep": a.at_step, "gracePeriodSecondsRendered": info["terminationGracePeriodSeconds"]}
    t_start = time.monotonic()
    deadline = t_start + a.wait
    pid = read_pid(a.pidfile, deadline)
    watcher = StepWatcher(a.log, a.metrics)
    rc = 3
    if pid is None:
        rec["why"] = f"no pid in {a.pidfile}"
    else:
        rec["pid"] = pid
        while True:
            step = watcher.poll()
            if step is not None and step >= a.at_step:
                break
            if not alive(pid):
                rec["why"] = "the container exited first"
                break
            if time.monotonic() >= deadline:
                rec["why"] = f"{a.wait:g}s passed"
                break
            time.sleep(POLL)
        if "why" not in rec:
            rec["stepSeen"], rec["stepSeenIn"] = watcher.step, watcher.seen_in
            rec["stepSeenAfterS"] = round(time.monotonic() - t_start, 1)
            with tempfile.TemporaryFile() as out:
                rec.update(stop(info, grace, pid, out))
                out.seek(0)
                rec["hookOutput"] = out.read().decode("utf-8", "replace")[-2000:]
            rc = 0
    rec["summary"] = describe(rec)
    if a.record:
        with open(a.record, "w", encoding="utf-8") as fh:
            json.dump(rec, fh, indent=2)
            fh.write("\n")
    print(rec["summary"])
    return rc


if __name__ == "__main__":
    sys.exit(main())
