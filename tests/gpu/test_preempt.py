"""Unit tests of the preemption scenario's pod stop (preempt.py) and of the preStop hook as
launch.py reads it from the children, with a stand-in for the training container.

    cd tests/gpu && python3 -m unittest test_preempt

Needs PyYAML (as the kit does) and Linux (/proc); no GPU, no InstructLab. The hook of
testdata/children-preempt.yaml writes into /dev/shm, which a test must not touch: the
stopping tests swap in a hook that writes into a temporary directory instead, and start a
small Python program that logs steps as the Master container.
"""
import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import unittest

import yaml

import launch
import preempt

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURE = os.path.join(HERE, "testdata", "children-preempt.yaml")
HOOK = ["/bin/sh", "-c",
        "touch /dev/shm/checkpoint_requested /dev/shm/instructlab_checkpoint_requested; exec sleep 86400"]

# Logs InstructLab-like step lines; on the trigger file it "saves" and exits 0 (mode
# `honours`), or goes on (`ignores`); `ignores-term` also survives SIGTERM.
FAKE_TRAINING = textwrap.dedent("""\
    import os, signal, sys, time
    trigger, mode, metrics = sys.argv[1], sys.argv[2], sys.argv[3]
    if mode == "ignores-term":
        signal.signal(signal.SIGTERM, lambda *_: print("got SIGTERM, going on", flush=True))
    for step in range(1, 100000):
        print(f"INFO epoch=0, step={step}, rank=0, samples_seen={16 * step}, total_samples=320", flush=True)
        with open(metrics, "a") as fh:
            fh.write('{"epoch": 0, "step": %d, "samples_seen": %d}\\n' % (step, 16 * step))
        if mode == "honours" and os.path.exists(trigger):
            print("On-demand checkpoint saved (during minibatch processing). Exiting training.", flush=True)
            sys.exit(0)
        time.sleep(0.05)
""")


def load_fixture():
    with open(FIXTURE, encoding="utf-8") as fh:
        return [d for d in yaml.safe_load_all(fh) if d]


def master(docs):
    ptj = next(d for d in docs if d["kind"] == "PyTorchJob")
    pod = ptj["spec"]["pytorchReplicaSpecs"]["Master"]["template"]
    return pod, next(c for c in pod["spec"]["containers"] if c["name"] == "pytorch")


def write_docs(path, docs):
    with open(path, "w", encoding="utf-8") as fh:
        yaml.safe_dump_all(docs, fh)


class HookFromChildren(unittest.TestCase):
    """launch.py picks the hook from the rendered children, and refuses without one."""

    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.addCleanup(self.dir.cleanup)

    def children(self, edit=None):
        docs = load_fixture()
        if edit:
            edit(*master(docs))
        path = os.path.join(self.dir.name, "children.yaml")
        write_docs(path, docs)
        return path

    def launch(self, *args):
        return subprocess.run([sys.executable, os.path.join(HERE, "launch.py"), *args],
                              capture_output=True, text=True)

    def test_fixture_hook_is_the_rendered_one(self):
        self.assertEqual(launch.prestop_hook(load_fixture()), (HOOK, 40))
        train = launch.resolve(load_fixture(), "train", {"PATH": "/bin"})
        self.assertIn("--on_demand_checkpointing", train["argv"])
        self.assertEqual((train["preStop"], train["terminationGracePeriodSeconds"]), (HOOK, 40))

    def test_prestop_dry_run_runs_the_hook_in_the_container_environment(self):
        p = self.launch(FIXTURE, "prestop", "--dry-run")
        self.assertEqual(p.returncode, 0, p.stderr)
        info = json.loads(p.stdout)
        self.assertEqual(info["argv"], HOOK)
        train = json.loads(self.launch(FIXTURE, "train", "--dry-run").stdout)
        self.assertEqual((info["env"], info["workdir"], info["pod"]), (train["env"], train["workdir"], train["pod"]))
        self.assertEqual(info["env"]["HOSTNAME"], "ilab-tiny-preempt-master-0")
        self.assertEqual(info["env"]["RANK"], "0")

    def test_the_hook_is_not_expanded(self):
        # kubelet expands $(VAR) in command, args and env, never in lifecycle hooks
        def edit(pod, c):
            c["lifecycle"]["preStop"]["exec"]["command"] = ["/bin/echo", "$(NNODES)", "$$"]
        info = json.loads(self.launch(self.children(edit), "prestop", "--dry-run").stdout)
        self.assertEqual(info["argv"], ["/bin/echo", "$(NNODES)", "$$"])
        self.assertEqual(info["env"]["NNODES"], "1")

    def test_grace_period_defaults_to_kubernetes(self):
        def edit(pod, c):
            del pod["spec"]["terminationGracePeriodSeconds"]
        with open(self.children(edit)) as fh:
            docs = [d for d in yaml.safe_load_all(fh) if d]
        self.assertEqual(launch.prestop_hook(docs)[1], 30)

    def test_refused_without_a_hook(self):
        cases = {
            "no lifecycle": (lambda pod, c: c.pop("lifecycle"), "has no lifecycle.preStop hook"),
            "postStart only": (lambda pod, c: c.update(lifecycle={"postStart": {"exec": {"command": ["true"]}}}),
                               "has no lifecycle.preStop hook"),
            "httpGet": (lambda pod, c: c.update(lifecycle={"preStop": {"httpGet": {"path": "/", "port": 80}}}),
                        "of another kind (httpGet); this kit runs exec hooks only"),
            "empty exec": (lambda pod, c: c.update(lifecycle={"preStop": {"exec": {}}}),
                           "of another kind (an exec without a command)"),
        }
        for name, (edit, want) in cases.items():
            with self.subTest(name):
                with open(self.children(edit)) as fh:
                    docs = [d for d in yaml.safe_load_all(fh) if d]
                with self.assertRaises(launch.NoHook) as e:
                    launch.prestop_hook(docs)
                self.assertIn("launch.py: the PyTorchJob Master's container `pytorch` ", str(e.exception))
                self.assertIn(want, str(e.exception))
                self.assertIsNone(launch.resolve(docs, "train", {})["preStop"])
        # the command line says so on stderr, exit status 2, nothing on stdout
        path = self.children(lambda pod, c: c.pop("lifecycle"))
        p = self.launch(path, "prestop", "--dry-run")
        self.assertEqual((p.returncode, p.stdout), (2, ""))
        self.assertIn("launch.py: the PyTorchJob Master's container `pytorch` has no lifecycle.preStop hook: these "
                      "children were rendered without the checkpoint-before-stop hook", p.stderr)
        # preempt.py refuses before it waits for anything (the pid file does not even exist)
        p = subprocess.run([sys.executable, os.path.join(HERE, "preempt.py"), path, "--pidfile",
                            os.path.join(self.dir.name, "no-such-pid"), "--at-step", "1", "--log", "/dev/null"],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 2)
        self.assertIn("preempt.py: refused: launch.py: the PyTorchJob Master's container `pytorch` has no "
                      "lifecycle.preStop hook", p.stderr)


class StepWatcher(unittest.TestCase):
    def test_log_and_metrics(self):
        with tempfile.TemporaryDirectory() as d:
            log, metrics = os.path.join(d, "log"), os.path.join(d, "m.jsonl")
            w = preempt.StepWatcher(log, metrics)
            self.assertIsNone(w.poll())  # neither exists yet
            with open(log, "wb") as fh:
                fh.write(b"Epoch 0: 10%|\r INFO Epoch: 0, Step: 3, Rank: 0, loss = 6.8\n INFO epoch=0, st")
            self.assertEqual((w.poll(), w.seen_in), (3, "log"))
            with open(log, "ab") as fh:  # the rest of a line cut between two reads
                fh.write(b"ep=4, rank=0, overall_throughput=1.0\n")
            self.assertEqual(w.poll(), 4)
            with open(metrics, "wb") as fh:
                fh.write(b'{"num_epochs": 8}\n{"epoch": 0, "step": 7, "samples_seen": 112}\n{"epoch": 0, "st')
            self.assertEqual((w.poll(), w.seen_in), (7, "metrics"))
            with open(metrics, "ab") as fh:
                fh.write(b'ep": 9}\n')
            self.assertEqual(w.poll(), 9)
            with open(log, "ab") as fh:  # a lower step changes nothing
                fh.write(b"epoch=0, step=5, rank=0\n")
            self.assertEqual((w.poll(), w.seen_in), (9, "metrics"))


class Stop(unittest.TestCase):
    """The kubelet sequence against a stand-in container started by launch.py."""

    def setUp(self):
        self.dir = tempfile.mkdtemp()
        self.addCleanup(lambda: subprocess.run(["rm", "-rf", self.dir]))
        self.trigger = os.path.join(self.dir, "checkpoint_requested")
        with open(os.path.join(self.dir, "fake_training.py"), "w") as fh:
            fh.write(FAKE_TRAINING)

    def start(self, mode, grace=5, hook=None):
        docs = load_fixture()
        pod, c = master(docs)
        c["command"] = [sys.executable, os.path.join(self.dir, "fake_training.py")]
        c["args"] = [self.trigger, mode, os.path.join(self.dir, "metrics.jsonl")]
        c["env"].append({"name": "KIT_TEST_DIR", "value": self.dir})
        # the rendered hook, writing into the test's directory instead of /dev/shm
        c["lifecycle"]["preStop"]["exec"]["command"] = hook or [
            "/bin/sh", "-c",
            "touch \"$KIT_TEST_DIR/checkpoint_requested\"; echo \"$HOSTNAME $FTJ_RUN_TAG\" '$(KIT_TEST_DIR)' "
            "> \"$KIT_TEST_DIR/hook-saw\"; echo $$ > \"$KIT_TEST_DIR/hook-pid\"; exec sleep 86400"]
        pod["spec"]["terminationGracePeriodSeconds"] = grace
        self.children = os.path.join(self.dir, "children.yaml")
        write_docs(self.children, docs)
        self.log = os.path.join(self.dir, "train.log")
        self.pidfile = os.path.join(self.dir, "train.pid")
        with open(self.log, "wb") as out:
            self.container = subprocess.Popen(
                [sys.executable, os.path.join(HERE, "launch.py"), self.children, "train", "--pidfile", self.pidfile],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=self.dir)
        self.addCleanup(self.kill_container)

    def kill_container(self):
        if self.container.poll() is None:
            self.container.kill()
        self.container.wait()

    def preempt(self, at_step=5, *extra, source="--log"):
        record = os.path.join(self.dir, "stop.json")
        target = self.log if source == "--log" else os.path.join(self.dir, "metrics.jsonl")
        t0 = time.monotonic()
        p = subprocess.run([sys.executable, os.path.join(HERE, "preempt.py"), self.children, "--pidfile", self.pidfile,
                            "--at-step", str(at_step), source, target, "--record", record, *extra],
                           capture_output=True, text=True, timeout=60)
        took = time.monotonic() - t0
        rc = self.container.wait(timeout=30)
        with open(record) as fh:
            rec = json.load(fh)
        return p, rec, rc, took

    def assert_hook_gone(self):
        with open(os.path.join(self.dir, "hook-pid")) as fh:
            pid = int(fh.read())
        self.assertFalse(preempt.alive(pid), "the hook outlived the container")

    def test_the_hook_stops_training_within_the_grace_period(self):
        self.start("honours")
        p, rec, rc, took = self.preempt(5)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(rc, 0)  # exited on its own: no signal
        self.assertFalse(rec["sigterm"])
        self.assertFalse(rec["sigkill"])
        self.assertGreaterEqual(rec["stepSeen"], 5)
        self.assertEqual(rec["stepSeenIn"], "log")
        self.assertEqual(rec["hook"][:2], ["/bin/sh", "-c"])
        self.assertEqual(rec["hookEnded"], "killed when the container exited")
        self.assertLess(took, 5)
        self.assertIn("within the 5s grace period: no SIGTERM; hook killed when the container exited", p.stdout)
        with open(self.log) as fh:
            self.assertIn("On-demand checkpoint saved", fh.read())
        # in the container's environment, with the command unexpanded
        with open(os.path.join(self.dir, "hook-saw")) as fh:
            self.assertEqual(fh.read().split(), ["ilab-tiny-preempt-master-0", "1x1-gpu", "$(KIT_TEST_DIR)"])
        self.assert_hook_gone()

    def test_the_step_can_come_from_the_metrics(self):
        self.start("honours")
        p, rec, rc, _ = self.preempt(4, source="--metrics")
        self.assertEqual((p.returncode, rc, rec["stepSeenIn"], rec["sigterm"]), (0, 0, "metrics", False))

    def test_sigterm_when_the_grace_period_passes(self):
        self.start("ignores", grace=1)
        p, rec, rc, took = self.preempt(3)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(rc, -signal.SIGTERM)
        self.assertTrue(rec["sigterm"])
        self.assertFalse(rec["sigkill"])
        self.assertGreaterEqual(rec["sigtermAfterS"], 1)
        self.assertIn("the 1s grace period passed with the container still running: SIGTERM", p.stdout)
        self.assertTrue(os.path.exists(self.trigger))
        self.assert_hook_gone()

    def test_sigkill_two_seconds_after_an_ignored_sigterm(self):
        # and the rendered grace period capped for the kit's deadline
        self.start("ignores-term", grace=60)
        p, rec, rc, took = self.preempt(3, "--grace-cap", "0.2")
        self.assertEqual(rc, -signal.SIGKILL)
        self.assertEqual((rec["gracePeriodSeconds"], rec["gracePeriodSecondsRendered"]), (0.2, 60))
        self.assertTrue(rec["sigterm"] and rec["sigkill"])
        self.assertLess(rec["sigtermAfterS"], 1)
        self.assertGreaterEqual(rec["sigkillAfterS"] - rec["sigtermAfterS"], 2)
        self.assertLess(took, 10)
        self.assertIn(", SIGKILL at +", p.stdout)
        with open(self.log) as fh:
            self.assertIn("got SIGTERM, going on", fh.read())
        self.assert_hook_gone()

    def test_a_hook_that_ends_early_brings_sigterm_early(self):
        self.start("ignores", grace=30, hook=["/bin/sh", "-c", 'echo $$ > "$KIT_TEST_DIR/hook-pid"; exit 3'])
        p, rec, rc, took = self.preempt(3)
        self.assertEqual((rc, rec["sigterm"], rec["hookExit"]), (-signal.SIGTERM, True, 3))
        self.assertLess(took, 10)
        self.assertIn("the hook ended (3) with the container still running: SIGTERM", p.stdout)

    def test_step_never_logged(self):
        self.start("honours")
        os.kill(self.container.pid, 0)
        # the container ends before step 10^6
        killer = subprocess.Popen(["/bin/sh", "-c", f"sleep 1; kill {self.container.pid}"])
        p, rec, rc, _ = self.preempt(10 ** 6)
        killer.wait()
        self.assertEqual(p.returncode, 3)
        self.assertEqual(rec["why"], "the container exited first")
        self.assertIn("was never logged (the container exited first): no hook run, no signal sent", p.stdout)
        self.assertFalse(os.path.exists(self.trigger))


if __name__ == "__main__":
    unittest.main()
