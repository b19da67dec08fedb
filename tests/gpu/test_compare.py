"""Unit tests of compare.py, and the comparator on the genuine logs.

    cd tests/gpu && python3 -m unittest test_compare

`GenuineLogs` runs `inspect-log` on the fixtures of real InstructLab runs
(tests/fixtures/instructlab/realrun/, or $FIXTURES) and needs the operator binary
($FTO_BIN, `finetune-operator` on PATH, or target/debug); it is skipped without them.
"""
import io
import json
import os
import shutil
import tempfile
import unittest
from contextlib import redirect_stdout

import compare

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
FIXTURES = os.environ.get("FIXTURES") or os.path.join(REPO, "tests", "fixtures", "instructlab", "realrun")
OUT = "/output/job"


def operator_binary():
    for b in (os.environ.get("FTO_BIN"), shutil.which("finetune-operator"),
              os.path.join(REPO, "target", "debug", "finetune-operator")):
        if b and os.access(b, os.X_OK):
            return b
    return None


def hp(epochs=2):
    return {"model_name_or_path": "/model/m", "output_dir": OUT, "num_epochs": epochs, "save_samples": 32}


def step(n, epoch, loss):
    return {"epoch": epoch, "step": n, "rank": 0, "overall_throughput": 100.0 + n, "avg_loss": loss,
            "samples_seen": 16 * n, "total_samples": 32, "num_epoch_steps": 2}


def run_records():
    """2 epochs x 2 steps of 16 samples; checkpoints every 32 samples and at epoch ends."""
    return [hp(), {"num_gpus": 1, "total_samples": 32},
            step(1, 0, 6.12345), step(2, 0, 5.5555), step(3, 1, 5.0004), step(4, 1, 4.21049)]


def cp(rel, epoch, samples, kind):
    return {"path": f"{OUT}/{rel}", "epoch": epoch, "samples": samples, "kind": kind}


CHECKPOINTS = [cp("hf_format/samples_32", 1, 32, "hf"), cp("full_state/epoch_0", 1, 32, "fullState"),
               cp("hf_format/samples_64", 2, 64, "hf"), cp("full_state/epoch_1", 2, 64, "fullState")]
TREE = [f"{OUT}", f"{OUT}/data", f"{OUT}/hf_format", f"{OUT}/full_state"] + [c["path"] for c in CHECKPOINTS] \
    + [f"{OUT}/hf_format/samples_32/config.json", "/output/other/hf_format/samples_999"]


def inspect():
    return {
        "progress": {"epoch": 2, "totalEpochs": 2, "step": 4, "totalSteps": 4, "samplesSeen": 64,
                     "totalSamples": 32, "percent": 100, "loss": 4.21, "throughput": 104.0},
        "checkpoints": [dict(c) for c in CHECKPOINTS],
        "resumedFrom": None,
        "transitions": [{"type": "epochCompleted", "epoch": 1, "loss": 5.556, "samplesSeen": 32},
                        {"type": "epochCompleted", "epoch": 2, "loss": 4.21, "samplesSeen": 64}],
    }


class Compare(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp()
        self.tree = os.path.join(self.dir, "tree.txt")
        with open(self.tree, "w") as fh:
            fh.write("\n".join(TREE) + "\n")

    def tearDown(self):
        shutil.rmtree(self.dir)

    def diffs(self, ins=None, records=None, tree="default", epochs=None):
        tree = self.tree if tree == "default" else tree
        d, _, _ = compare.compare(ins or inspect(), records or run_records(), tree, epochs)
        return d

    def test_agreement(self):
        self.assertEqual(self.diffs(), [])

    def test_epoch_is_one_based(self):
        ins = inspect()
        ins["progress"]["epoch"] = 1  # what a 0-based reading would say
        self.assertEqual(self.diffs(ins), ["epoch (1-based): inspect-log says 1, the JSONL says 2"])

    def test_every_progress_field(self):
        ins = inspect()
        ins["progress"].update(step=3, samplesSeen=48, totalSamples=64, totalSteps=8, loss=4.211, throughput=104.1)
        d = self.diffs(ins)
        self.assertEqual(len(d), 6, d)
        for word in ("step", "samples seen", "total samples", "total steps", "loss", "throughput"):
            self.assertTrue(any(x.startswith(word) for x in d), word)

    def test_loss_rounding(self):
        self.assertTrue(compare.loss_matches(5.215, 5.215078830718994))
        self.assertTrue(compare.loss_matches(0.124, 0.1245))  # a tie, either way
        self.assertTrue(compare.loss_matches(0.125, 0.1245))
        self.assertFalse(compare.loss_matches(5.216, 5.215078830718994))
        self.assertFalse(compare.loss_matches(5.2151, 5.215078830718994))  # not rounded

    def test_doctored_jsonl(self):
        records = run_records()
        records[-1]["avg_loss"] = 4.5
        records[3]["samples_seen"] = 40  # last step of epoch 0
        d = self.diffs(records=records)
        self.assertIn("loss: inspect-log says 4.21, the JSONL says 4.5 (rounded 4.5)", d)
        self.assertTrue(any(x.startswith("epoch 1 completed: inspect-log says samplesSeen 32") for x in d), d)
        self.assertTrue(any(x.startswith("epoch 2 completed: inspect-log says loss 4.21") for x in d), d)

    def test_checkpoints(self):
        ins = inspect()
        ins["checkpoints"][1]["epoch"] = 2  # full_state/epoch_0 is epoch 1
        ins["checkpoints"].append(cp("hf_format/samples_96", 2, 96, "hf"))
        del ins["checkpoints"][2]
        self.assertEqual(self.diffs(ins), [
            "checkpoint full_state/epoch_0: inspect-log says epoch 2, expected 1",
            "checkpoint hf_format/samples_96: in the log, not in the output directory",
            "checkpoint hf_format/samples_64: in the output directory, not in inspect-log",
        ])

    def test_tree_as_directory(self):
        root = os.path.join(self.dir, "job")
        for c in CHECKPOINTS:
            os.makedirs(os.path.join(root, c["path"][len(OUT) + 1:]))
        self.assertEqual(self.diffs(tree=root), [])
        os.makedirs(os.path.join(root, "hf_format", "last"))
        self.assertEqual(self.diffs(tree=root), ["checkpoint hf_format/last: in the output directory, not in inspect-log"])

    def test_no_tree_is_a_note(self):
        d, notes, _ = compare.compare(inspect(), run_records(), None, None)
        self.assertEqual(d, [])
        self.assertIn("checkpoints: not checked (no --tree)", notes)

    def test_no_step_records(self):
        self.assertEqual(self.diffs(records=[hp()]), ["the metrics JSONL has no record with a `step`"])

    def test_missing_loss_is_a_difference(self):
        ins = inspect()
        del ins["progress"]["loss"]
        self.assertEqual(self.diffs(ins), ["loss: inspect-log has none, the JSONL says 4.21049"])

    def test_resumed_without_steps_of_its_own(self):
        records = run_records() + [hp(), {"num_gpus": 1}]
        resumed = cp("full_state/epoch_1", 2, 64, "fullState")
        ins = {"progress": {"epoch": 2, "step": 4, "totalSteps": 4, "samplesSeen": 64, "totalSamples": 32},
               "checkpoints": [resumed], "resumedFrom": resumed, "transitions": []}
        d, notes, _ = compare.compare(ins, records, self.tree, None)
        self.assertEqual(d, [])
        self.assertTrue(any(n.startswith("loss: not in this log") for n in notes), notes)
        # a checkpoint newer than the resume point must be in the log
        with open(self.tree, "a") as fh:
            fh.write(f"{OUT}/hf_format/samples_96\n")
        d, _, _ = compare.compare(ins, records, self.tree, None)
        self.assertEqual(d, ["checkpoint hf_format/samples_96: in the output directory, not in inspect-log"])
        # with steps of its own, a missing loss is a difference
        d, _, _ = compare.compare(ins, records + [step(5, 2, 4.0)], None, None)
        self.assertIn("loss: inspect-log has none, the JSONL says 4.0", d)

    def test_main_exit_codes(self):
        m = os.path.join(self.dir, "m.jsonl")
        j = os.path.join(self.dir, "i.json")
        with open(m, "w") as fh:
            fh.write("".join(json.dumps(r) + "\n" for r in run_records()))
        with open(j, "w") as fh:
            json.dump(inspect(), fh)
        args = ["--log", "unused", "--metrics", m, "--inspect-json", j, "--tree", self.tree]
        with redirect_stdout(io.StringIO()) as out:
            self.assertEqual(compare.main(args), 0)
        self.assertIn("compare: PASS", out.getvalue())
        bad = inspect()
        bad["progress"]["step"] = 5
        with open(j, "w") as fh:
            json.dump(bad, fh)
        with redirect_stdout(io.StringIO()) as out:
            self.assertEqual(compare.main(args), 1)
        self.assertIn("DIFF  step: inspect-log says 5, the JSONL says 4", out.getvalue())
        with redirect_stdout(io.StringIO()):
            self.assertEqual(compare.main(["--log", "x", "--metrics", os.path.join(self.dir, "none")]), 2)


@unittest.skipUnless(os.path.isdir(FIXTURES) and operator_binary(),
                     "needs tests/fixtures/instructlab/realrun and the finetune-operator binary")
class GenuineLogs(unittest.TestCase):
    """inspect-log against InstructLab's own metrics on the logs of real runs (one H200)."""

    # log, metrics JSONL, tree listing (None: none was taken)
    RUNS = [
        ("train-0.16.log", "metrics-0.16.jsonl", "tree-0.16.txt"),
        ("train-0.12.log", "metrics-0.12.jsonl", None),
        # the pod restarted after success: no tree was taken after it; it wrote nothing
        ("train-0.16-resumed.log", "metrics-0.16-after-resume.jsonl", "tree-0.16.txt"),
        ("train-0.16-ondemand.log", "metrics-0.16-ondemand.jsonl", "tree-0.16-ondemand.txt"),
        ("train-0.16-sigterm.log", "metrics-0.16-sigterm.jsonl", "tree-0.16-sigterm.txt"),
    ]

    def run_compare(self, log, metrics, tree):
        f = lambda n: os.path.join(FIXTURES, n)  # noqa: E731
        args = ["--bin", operator_binary(), "--log", f(log), "--metrics", metrics if os.path.isabs(metrics) else f(metrics)]
        if tree:
            args += ["--tree", tree if os.path.isabs(tree) else f(tree)]
        with redirect_stdout(io.StringIO()) as out:
            rc = compare.main(args)
        return rc, out.getvalue()

    def test_genuine_runs_agree(self):
        for log, metrics, tree in self.RUNS:
            with self.subTest(log=log):
                rc, out = self.run_compare(log, metrics, tree)
                self.assertEqual(rc, 0, out)

    def test_doctored_jsonl_fails(self):
        with open(os.path.join(FIXTURES, "metrics-0.16.jsonl")) as fh:
            records = [json.loads(x) for x in fh if x.strip()]
        records[-1]["avg_loss"] += 0.01
        records[-1]["samples_seen"] += 16
        with tempfile.TemporaryDirectory() as d:
            m = os.path.join(d, "metrics.jsonl")
            with open(m, "w") as fh:
                fh.write("".join(json.dumps(r) + "\n" for r in records))
            t = os.path.join(d, "tree.txt")
            with open(os.path.join(FIXTURES, "tree-0.16.txt")) as src, open(t, "w") as fh:
                fh.write("".join(x for x in src if "samples_576" not in x))
            rc, out = self.run_compare("train-0.16.log", m, t)
        self.assertEqual(rc, 1, out)
        for want in ("DIFF  samples seen: inspect-log says 640, the JSONL says 656",
                     "DIFF  loss: inspect-log says 5.215",
                     "DIFF  checkpoint hf_format/samples_576: in the log, not in the output directory"):
            self.assertIn(want, out)


if __name__ == "__main__":
    unittest.main()
