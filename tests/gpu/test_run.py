"""run.sh reads the preempt scenario's preStop hook from what the operator renders, and refuses
clearly when there is none: `run.sh --dry-run`, and the GPU run before it installs anything.

    cd tests/gpu && python3 -m unittest test_run

The operator binary is a stand-in that prints a children file for `render`: the rendered
children of ftj-preempt.yaml with the hook (testdata/children-preempt.yaml), or the same
without it. Needs bash and PyYAML; no GPU, no operator binary.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURE = os.path.join(HERE, "testdata", "children-preempt.yaml")
HOOK = ["/bin/sh", "-c",
        "touch /dev/shm/checkpoint_requested /dev/shm/instructlab_checkpoint_requested; exec sleep 86400"]


class RunReadsTheHook(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.dir)
        self.out = os.path.join(self.dir, "out")

    def operator(self, with_hook):
        """A stand-in binary whose `render` prints the preempt children."""
        children = FIXTURE
        if not with_hook:
            with open(FIXTURE) as fh:
                docs = [d for d in yaml.safe_load_all(fh) if d]
            ptj = next(d for d in docs if d["kind"] == "PyTorchJob")
            for c in ptj["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"]:
                c.pop("lifecycle", None)
            children = os.path.join(self.dir, "children-without-hook.yaml")
            with open(children, "w") as fh:
                yaml.safe_dump_all(docs, fh)
        binary = os.path.join(self.dir, "finetune-operator")
        with open(binary, "w") as fh:
            fh.write(f'#!/bin/sh\ncase "$1" in render) cat "{children}" ;; *) echo "stand-in: $*" >&2; exit 9 ;; esac\n')
        os.chmod(binary, 0o755)
        return binary

    def run_sh(self, *args):
        env = {k: v for k, v in os.environ.items() if k not in ("FTO_BIN", "ILAB_VERSION")}
        env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")  # python3 with PyYAML
        return subprocess.run(["bash", os.path.join(HERE, "run.sh"), "--out", self.out, *args],
                              capture_output=True, text=True, env=env, timeout=120)

    def test_dry_run_takes_the_rendered_hook(self):
        p = self.run_sh("--dry-run", "--scenarios", "preempt", "--bin", self.operator(True))
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertIn(f"dry-run preempt/prestop: {json.dumps(HOOK)}", p.stdout)
        self.assertIn("dry-run: PASS", p.stdout)
        with open(os.path.join(self.out, "dry-run-preempt-prestop.json")) as fh:
            info = json.load(fh)
        self.assertEqual((info["argv"], info["pod"]), (HOOK, "ilab-tiny-preempt-master-0"))
        with open(os.path.join(self.out, "dry-run-preempt-train.json")) as fh:
            train = json.load(fh)
        self.assertEqual((train["preStop"], train["terminationGracePeriodSeconds"]), (HOOK, 40))
        self.assertIn("--on_demand_checkpointing", train["argv"])
        # the FineTuneJob it rendered: the kit's, with the image tag of the release under test
        with open(os.path.join(self.out, "ftj-preempt.yaml")) as fh:
            ftj = yaml.safe_load(fh)
        self.assertTrue(ftj["spec"]["training"]["onDemandCheckpointing"])
        self.assertTrue(ftj["spec"]["image"].endswith(":v0.16.2"))

    def test_dry_run_refuses_children_without_the_hook(self):
        p = self.run_sh("--dry-run", "--scenarios", "preempt", "--bin", self.operator(False))
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        self.assertIn("preempt: REFUSED: launch.py: the PyTorchJob Master's container `pytorch` has no "
                      "lifecycle.preStop hook", p.stdout)
        self.assertIn("renders no preStop hook for ftj-preempt.yaml; leave preempt out (--scenarios)", p.stdout)
        self.assertIn("dry-run: FAIL", p.stdout)

    def test_the_gpu_run_refuses_before_it_installs_anything(self):
        # /bin/false as the venv's python: were the refusal missed, the run would end there
        p = self.run_sh("--scenarios", "preempt", "--bin", self.operator(False), "--python", "/bin/false",
                        "--time-limit", "60")
        self.assertEqual(p.returncode, 2, p.stdout + p.stderr)
        self.assertIn("preempt: REFUSED: launch.py: the PyTorchJob Master's container `pytorch` has no "
                      "lifecycle.preStop hook", p.stdout)
        for later in ("nvidia-smi", "venv", "GPU"):
            self.assertNotIn(later, p.stdout.split("scenarios: preempt;", 1)[1])
        self.assertFalse(os.path.exists(os.path.join(self.out, "venv")))

    def test_other_scenarios_do_not_need_the_hook(self):
        p = self.run_sh("--dry-run", "--scenarios", "sigterm", "--bin", self.operator(False))
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertNotIn("prestop", p.stdout)
        self.assertNotIn("REFUSED", p.stdout)
        self.assertIn("dry-run sigterm/train: torchrun", p.stdout)


if __name__ == "__main__":
    unittest.main()
