"""Unit tests of compare.py, and the comparator on the genuine logs.

    cd tests/gpu && python3 -m unittest test_compare

`Compare` and `Attempts` (the preemption scenario's checks) need nothing. `GenuineLogs`
runs `inspect-log` on the fixtures of real InstructLab runs (tests/fixtures/instructlab/realrun/,
or $FIXTURES), `GenuinePreemption` on the genuine on-demand run and a retry made of genuine
lines; both need the operator binary ($FTO_BIN, `finetune-operator` on PATH, or target/debug)
and are skipped without them (`make test` fails on a skip).
"""
import contextlib
import io
import json
import os
import re
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


# The preemption scenario in small: 4 epochs x 2 steps of 16 samples; attempt 1 stops by an
# on-demand checkpoint after step 3 (epoch 1 from 0, 48 samples), attempt 2 resumes from it.
SAVE_LINE = "On-demand checkpoint: saving full-state checkpoint at epoch=1, global_step=4, samples_seen=48"
EXIT_LINE = "On-demand checkpoint saved (during minibatch processing). Exiting training."
ATTEMPT1_LOG = f"INFO epoch=1, step=3, rank=0\n           INFO     {SAVE_LINE}\n           INFO     {EXIT_LINE}\n"


def attempt_records(first, last, samples, epochs=4):
    """A start of training: its hyperparameters, setup and steps first..last after `samples`."""
    records = [hp(epochs), {"num_gpus": 1, "total_samples": 32}]
    for n in range(first, last + 1):
        samples += 16
        records.append({"epoch": (n - 1) // 2, "step": n, "rank": 0, "overall_throughput": 100.0 + n,
                        "avg_loss": 5.0 - n / 10, "samples_seen": samples, "total_samples": 32,
                        "num_epoch_steps": 2})
    return records


def attempt_inspections(resume_at=4):
    """inspect-log of both attempts, attempt 2 running steps resume_at..8."""
    last = 48 + 16 * (9 - resume_at)
    first = {
        "outcome": "checkpointed", "samplesPlanned": 128, "samplesSkipped": None,
        "progress": {"epoch": 2, "step": 3, "totalSteps": 8, "samplesSeen": 48, "totalSamples": 32,
                     "loss": 4.7, "throughput": 103.0},
        "checkpoints": [cp("hf_format/samples_32", 1, 32, "hf"), cp("full_state/epoch_0", 1, 32, "fullState"),
                        cp("hf_format/samples_48", 2, 48, "hf"), cp("full_state/epoch_1", 2, 48, "fullState")],
        "resumedFrom": None,
        "transitions": [{"type": "epochCompleted", "epoch": 1, "loss": 4.8, "samplesSeen": 32}],
    }
    second = {
        "outcome": "completed", "samplesPlanned": 128, "samplesSkipped": None,
        "progress": {"epoch": 4, "step": 8, "totalSteps": 8, "samplesSeen": last, "totalSamples": 32,
                     "loss": 4.2, "throughput": 108.0},
        "checkpoints": [cp("full_state/epoch_1", 2, 48, "fullState")],
        "resumedFrom": cp("full_state/epoch_1", 2, 48, "fullState"),
        "transitions": [],
    }
    return [first, second]


class Attempts(unittest.TestCase):
    """compare_attempts: the preemption scenario's checks, without the binary."""

    def setUp(self):
        self.dir = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.dir)
        self.tree1 = os.path.join(self.dir, "tree1.txt")
        with open(self.tree1, "w") as fh:
            fh.write("".join(f"{OUT}/{x}\n" for x in ("hf_format/samples_32", "full_state/epoch_0",
                                                       "hf_format/samples_48", "full_state/epoch_1")))

    def run_checks(self, resume_at=4, inspections=None, texts=None, records=None, exit_codes=(0, 0), stops=None):
        if records is None:
            records = attempt_records(1, 3, 0) + attempt_records(resume_at, 8, 48)
        _, checks, facts = compare.compare_attempts(
            inspections or attempt_inspections(resume_at), texts or [ATTEMPT1_LOG, ""], records,
            [self.tree1, None], list(exit_codes), stops, None)
        return checks, facts

    def failed(self, **kw):
        checks, _ = self.run_checks(**kw)
        return [text for passed, text in checks if not passed]

    def test_a_resume_at_the_next_step(self):
        checks, facts = self.run_checks()
        self.assertEqual([t for p, t in checks if not p], [])
        texts = [t for _, t in checks]
        for want in ("attempt 1 exit code: 0", f"attempt 1 on-demand lines in the log: {SAVE_LINE!r}",
                     "attempt 1 outcome: inspect-log says 'checkpointed'",
                     "attempt 1 checkpoint full_state/epoch_1: in the output directory and in inspect-log, epoch 2",
                     "attempt 2 resumed from full_state/epoch_1: inspect-log's resumedFrom is /output/job/full_state/epoch_1 (48 samples)",
                     "attempt 2 exit code: 0", "attempt 2 outcome: inspect-log says 'completed'",
                     "samples planned: inspect-log says 128, the JSONL 4 epochs x 32 = 128",
                     "samples skipped: inspect-log says None, the JSONL shows 0 (no step missing)"):
            self.assertTrue(any(t.startswith(want) for t in texts), want)
        self.assertIn("attempt 2 resumed at step 4, the checkpoint's next step", facts)
        self.assertIn("across the attempts: checkpointed after step 3, resumed at step 4 (the checkpoint's next: 4); "
                      "128 of 128 planned samples trained", facts)

    def test_skipped_steps(self):
        # attempt 2 starts at step 6: steps 4 and 5 never run, 32 samples
        self.assertEqual(self.failed(resume_at=6),
                         ["samples skipped: inspect-log says None, the JSONL shows 32 (steps 4-5 missing)"])
        ins = attempt_inspections(6)
        ins[1]["samplesSkipped"] = 32
        checks, facts = self.run_checks(resume_at=6, inspections=ins)
        self.assertEqual([t for p, t in checks if not p], [])
        self.assertIn("attempt 2 resumed at step 6, the checkpoint's next step is 4: steps 4-5 never ran", facts)
        self.assertIn("across the attempts: checkpointed after step 3, resumed at step 6 (the checkpoint's next: 4); "
                      "96 of 128 planned samples trained, 2 steps never ran (32 samples, 25 %)", facts)
        # a count where nothing was skipped is as wrong
        ins = attempt_inspections()
        ins[1]["samplesSkipped"] = 16
        self.assertEqual(self.failed(inspections=ins),
                         ["samples skipped: inspect-log says 16, the JSONL shows 0 (no step missing)"])

    def test_packing_shortfall_is_no_skip(self):
        records = attempt_records(1, 3, 0) + attempt_records(4, 8, 48)
        records[-1]["samples_seen"] = 120
        checks, facts = self.run_checks(records=records)
        self.assertEqual([t for p, t in checks if not p], [])
        self.assertIn("8 samples short of the plan with no step missing: batch packing", facts)

    def test_attempt_one_must_have_stopped_by_the_checkpoint(self):
        self.assertEqual(self.failed(exit_codes=(1, 0)),
                         ["attempt 1 exit code: 1 (0 after an on-demand checkpoint)"])
        self.assertEqual(self.failed(texts=["INFO epoch=1, step=3, rank=0\n", ""]),
                         ["attempt 1 on-demand lines in the log: missing the save and the exit"])
        self.assertEqual(self.failed(texts=[SAVE_LINE + "\n", ""]),
                         ["attempt 1 on-demand lines in the log: missing the exit"])
        ins = attempt_inspections()
        ins[0]["outcome"] = "failed"
        self.assertEqual(self.failed(inspections=ins),
                         ["attempt 1 outcome: inspect-log says 'failed', expected 'checkpointed'"])
        stop = {"stepSeen": 3, "sigterm": True, "summary": "the 60s grace period passed: SIGTERM"}
        self.assertEqual(self.failed(stops=[stop]),
                         ["attempt 1 stopped by its preStop hook: the 60s grace period passed: SIGTERM"])
        self.assertEqual(self.failed(stops=[{"sigterm": False, "summary": "step 30 was never logged"}]),
                         ["attempt 1 stopped by its preStop hook: step 30 was never logged"])
        checks, _ = self.run_checks(stops=[{"stepSeen": 3, "sigterm": False, "summary": "no SIGTERM"}])
        self.assertIn((True, "attempt 1 stopped by its preStop hook: no SIGTERM"), checks)

    def test_the_checkpoint(self):
        with open(self.tree1, "w") as fh:
            fh.write(f"{OUT}/full_state/epoch_0\n")
        self.assertEqual(self.failed(), ["attempt 1 checkpoint full_state/epoch_1: full_state/epoch_1 is not in the "
                                         "output directory after attempt 1"])
        os.remove(self.tree1)
        self.setUp()
        ins = attempt_inspections()
        ins[0]["checkpoints"][-1]["samples"] = 32
        self.assertEqual(self.failed(inspections=ins), [
            "attempt 1 checkpoint full_state/epoch_1: inspect-log's last full-state checkpoint is "
            "/output/job/full_state/epoch_1 (epoch 2, samples 32), expected /output/job/full_state/epoch_1 "
            "(epoch 2, samples 48)"])
        # the log's save disagrees with the JSONL's last step
        text = ATTEMPT1_LOG.replace("samples_seen=48", "samples_seen=64")
        self.assertEqual(self.failed(texts=[text, ""]), [
            "attempt 1 checkpoint full_state/epoch_1: the log saves epoch 1 at samples_seen 64, the JSONL's last "
            "step of attempt 1 is epoch 1 at 48"])
        ins = attempt_inspections()
        ins[1]["resumedFrom"] = cp("full_state/epoch_0", 1, 32, "fullState")
        self.assertEqual(self.failed(inspections=ins), [
            "attempt 2 resumed from full_state/epoch_1: inspect-log's resumedFrom is /output/job/full_state/epoch_0 "
            "(32 samples)"])

    def test_the_last_attempt_completes(self):
        ins = attempt_inspections()
        ins[1]["outcome"] = "incomplete"
        ins[1]["samplesPlanned"] = 64
        self.assertEqual(self.failed(inspections=ins, exit_codes=(0, 137)), [
            "attempt 2 exit code: 137", "attempt 2 outcome: inspect-log says 'incomplete', expected 'completed'",
            "samples planned: inspect-log says 64, the JSONL 4 epochs x 32 = 128"])

    def test_one_start_in_the_jsonl_for_two_logs(self):
        self.assertEqual(self.failed(records=attempt_records(1, 8, 0)),
                         ["the JSONL has 1 start(s) of training (hyperparameter records), for 2 logs"])

    def test_main(self):
        m = os.path.join(self.dir, "m.jsonl")
        with open(m, "w") as fh:
            fh.write("".join(json.dumps(r) + "\n" for r in attempt_records(1, 3, 0) + attempt_records(4, 8, 48)))
        logs, jsons = [], []
        for i, (ins, text) in enumerate(zip(attempt_inspections(), [ATTEMPT1_LOG, ""]), 1):
            logs += ["--log", os.path.join(self.dir, f"a{i}.log")]
            jsons += ["--inspect-json", os.path.join(self.dir, f"a{i}.json")]
            with open(logs[-1], "w") as fh:
                fh.write(text)
            with open(jsons[-1], "w") as fh:
                json.dump(ins, fh)
        stop = os.path.join(self.dir, "stop.json")
        with open(stop, "w") as fh:
            json.dump({"stepSeen": 3, "sigterm": False, "summary": "exited within the grace period"}, fh)
        base = logs + jsons + ["--metrics", m, "--stop", stop]
        args = base + ["--exit-code", "0", "--exit-code", "0"]
        with redirect_stdout(io.StringIO()) as out:
            self.assertEqual(compare.main(args), 0, out.getvalue())
        text = out.getvalue()
        self.assertIn("compare: 2 attempts of one run", text)
        self.assertIn("attempt 1: ", text)
        self.assertIn("  PASS  attempt 1 stopped by its preStop hook: exited within the grace period", text)
        self.assertIn("  fact  across the attempts: checkpointed after step 3", text)
        self.assertTrue(text.endswith("compare: PASS\n"), text)
        with redirect_stdout(io.StringIO()) as out:
            self.assertEqual(compare.main(base + ["--exit-code", "1", "--exit-code", "0"]), 1)
        self.assertIn("  FAIL  attempt 1 exit code: 1", out.getvalue())
        self.assertIn("compare: FAIL, 0 difference(s), 1 failed check(s)", out.getvalue())
        # a per-attempt difference fails too
        ins = attempt_inspections()
        ins[1]["progress"]["step"] = 7
        with open(jsons[-1], "w") as fh:
            json.dump(ins[1], fh)
        with redirect_stdout(io.StringIO()) as out:
            self.assertEqual(compare.main(args), 1)
        self.assertIn("  DIFF  step: inspect-log says 7, the JSONL says 8", out.getvalue())
        # attempts' options with one log, or counts that do not match: usage errors
        for bad in (["--log", logs[1], "--metrics", m, "--exit-code", "0"],
                    logs + ["--metrics", m, "--exit-code", "0"],
                    logs + ["--metrics", m, "--stop", stop, "--stop", stop]):
            with self.subTest(bad=bad), redirect_stdout(io.StringIO()), \
                    contextlib.redirect_stderr(io.StringIO()), self.assertRaises(SystemExit) as e:
                compare.main(bad)
            self.assertEqual(e.exception.code, 2)


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


def fixture_lines(name):
    with open(os.path.join(FIXTURES, name), encoding="utf-8") as fh:
        return fh.read().split("\n")


def block(lines, first, last):
    """The lines from the first one containing `first` to the next one containing `last`."""
    i = next(n for n, x in enumerate(lines) if first in x)
    j = next(n for n in range(i, len(lines)) if last in lines[n])
    return lines[i:j + 1]


def resumed_attempt(first_step):
    """The retry of the genuine on-demand run (train-0.16-ondemand.log: 8 epochs x 20 steps of
    16 samples, checkpoint full_state/epoch_1 at samples_seen 480, next step 31), resuming at
    `first_step` and running to step 160: its log, its records for the metrics JSONL, and the
    checkpoints it writes. Made of the genuine lines of 0.16.2: the start of the restart after
    success (train-0.16-resumed.log) with the on-demand checkpoint's metadata, the step lines
    of step 30, the hf_format and full_state saves of train-0.16.log. The genuine retry
    resumed at step 52 (README of the fixtures: 2,224 samples at the end)."""
    start = block(fixture_lines("train-0.16-resumed.log"), "UserWarning: DeepSpeed CPU", "Number of samples per save")
    start = [x.replace("'samples_seen': 640}", "'samples_seen': 480, 'global_step': 31}")
             .replace("Updating 'samples_seen' 640", "Updating 'samples_seen' 480") for x in start]
    ondemand = fixture_lines("train-0.16-ondemand.log")
    progress = next(x for x in ondemand if "Epoch: 1, Step: 30, Rank: 0" in x)
    progress = progress[progress.index("\x1b[A") + len("\x1b[A"):]
    metrics_line = next(x for x in ondemand if "INFO     epoch=1, step=30, rank=0," in x)
    plain = fixture_lines("train-0.16.log")
    hf = block(plain, "Saving model in huggingface format at: samples_96", "Model saved in /output/ilab-tiny/hf_format/samples_96")
    full = block(plain, "Saving full model state in /output/ilab-tiny/full_state/epoch_0",
                 "Model state saved in: /output/ilab-tiny/full_state/epoch_0")
    records = [json.loads(x) for x in fixture_lines("metrics-0.16-ondemand.jsonl") if x.strip()]
    step30 = records[-1]
    assert step30["step"] == 30
    records = [dict(records[0], timestamp="2026-11-30T00:22:21.000000"), records[1]]
    log, saved, samples = list(start), [], 480
    for n in range(first_step, 161):
        samples += 16
        epoch, loss, throughput = (n - 1) // 20, 4.9 - n / 250 + 0.0001234, 200 + n + 0.123456
        records.append(dict(step30, epoch=epoch, step=n, samples_seen=samples, avg_loss=loss, overall_throughput=throughput))
        log.append(progress.replace("Epoch: 1, Step: 30,", f"Epoch: {epoch}, Step: {n},")
                   .replace("loss = 4.906826", f"loss = {loss:.6f}"))
        log.append(metrics_line.replace("epoch=1, step=30,", f"epoch={epoch}, step={n},")
                   .replace("overall_throughput=59.526,", f"overall_throughput={throughput:.3f},")
                   .replace("avg_loss=4.907,", f"avg_loss={loss:.3f},")
                   .replace("samples_seen=480,", f"samples_seen={samples},"))
        end_of_epoch = n % 20 == 0
        if samples % 96 == 0 or end_of_epoch:
            log += [x.replace("samples_96", f"samples_{samples}") for x in hf]
            saved.append(f"hf_format/samples_{samples}")
        if end_of_epoch:
            log += [x.replace("epoch_0", f"epoch_{epoch}")
                    .replace("{'current_epoch': 0, 'samples_seen': 320}", f"{{'current_epoch': {epoch}, 'samples_seen': {samples}}}")
                    for x in full]
            saved.append(f"full_state/epoch_{epoch}")
    return "\n".join(log) + "\n", records, saved


@unittest.skipUnless(os.path.isdir(FIXTURES) and operator_binary(),
                     "needs tests/fixtures/instructlab/realrun and the finetune-operator binary")
class GenuinePreemption(unittest.TestCase):
    """The preemption scenario's comparison with inspect-log: attempt 1 is the genuine on-demand
    run of 0.16.2, attempt 2 its retry made of genuine lines (resumed_attempt)."""

    OUTPUT = "/output/ilab-tiny"

    def setUp(self):
        self.dir = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.dir)
        self.tree1 = os.path.join(FIXTURES, "tree-0.16-ondemand.txt")
        with open(self.tree1) as fh:
            self.attempt1 = sorted({m.group(1) for m in (re.match(
                rf"^{re.escape(self.OUTPUT)}/((hf_format|full_state)/[^/]+)$", x.strip()) for x in fh) if m})

    def write(self, name, text):
        path = os.path.join(self.dir, name)
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text)
        return path

    def run_attempts(self, first_step, jsonl_first_step=None):
        log, records, saved = resumed_attempt(first_step)
        if jsonl_first_step:  # a JSONL that disagrees with the log
            records = resumed_attempt(jsonl_first_step)[1]
        with open(os.path.join(FIXTURES, "metrics-0.16-ondemand.jsonl")) as fh:
            genuine = [json.loads(x) for x in fh if x.strip()]
        m = self.write("metrics.jsonl", "".join(json.dumps(r) + "\n" for r in genuine + records))
        tree2 = self.write("tree2.txt", "".join(f"{self.OUTPUT}/{x}\n" for x in sorted(set(self.attempt1) | set(saved))))
        stop = self.write("stop.json", json.dumps({"stepSeen": 30, "sigterm": False, "summary": "no SIGTERM"}))
        args = ["--bin", operator_binary(), "--metrics", m,
                "--log", os.path.join(FIXTURES, "train-0.16-ondemand.log"), "--log", self.write("attempt2.log", log),
                "--tree", self.tree1, "--tree", tree2, "--exit-code", "0", "--exit-code", "0", "--stop", stop]
        with redirect_stdout(io.StringIO()) as out:
            rc = compare.main(args)
        return rc, out.getvalue(), saved

    def test_the_made_retry_writes_the_genuine_retrys_checkpoints(self):
        # the genuine retry's output directory was kept, moved aside, in the later run's listing
        with open(os.path.join(FIXTURES, "tree-0.16-sigterm.txt")) as fh:
            genuine = {m.group(1) for m in (re.match(r"^/output/ilab-tiny\.ondemand/((hf_format|full_state)/[^/]+)$",
                                                     x.strip()) for x in fh) if m}
        _, _, saved = resumed_attempt(52)
        self.assertEqual(set(self.attempt1) | set(saved), genuine)

    def test_resumed_at_step_52_skipped_336_samples(self):
        rc, out, _ = self.run_attempts(52)
        self.assertEqual(rc, 0, out)
        for want in (
            "  PASS  attempt 1 on-demand lines in the log: 'On-demand checkpoint: saving full-state checkpoint at "
            "epoch=1, global_step=31, samples_seen=480'",
            "  PASS  attempt 1 outcome: inspect-log says 'checkpointed'",
            "  PASS  attempt 1 checkpoint full_state/epoch_1: in the output directory and in inspect-log, epoch 2 (from 1), "
            "480 samples",
            "  PASS  attempt 2 resumed from full_state/epoch_1: inspect-log's resumedFrom is /output/ilab-tiny/full_state/"
            "epoch_1 (480 samples)",
            "  PASS  attempt 2 outcome: inspect-log says 'completed'",
            "  PASS  samples planned: inspect-log says 2560, the JSONL 8 epochs x 320 = 2560",
            "  PASS  samples skipped: inspect-log says 336, the JSONL shows 336 (steps 31-51 missing)",
            "  fact  attempt 2 resumed at step 52, the checkpoint's next step is 31: steps 31-51 never ran",
            "  fact  across the attempts: checkpointed after step 30, resumed at step 52 (the checkpoint's next: 31); "
            "2224 of 2560 planned samples trained, 21 steps never ran (336 samples, 13 %)",
        ):
            self.assertIn(want, out)
        self.assertNotIn("DIFF", out)

    def test_resumed_at_the_next_step_skipped_nothing(self):
        rc, out, _ = self.run_attempts(31)
        self.assertEqual(rc, 0, out)
        self.assertIn("  PASS  samples skipped: inspect-log says None, the JSONL shows 0 (no step missing)", out)
        self.assertIn("across the attempts: checkpointed after step 30, resumed at step 31 (the checkpoint's next: 31); "
                      "2560 of 2560 planned samples trained", out)

    def test_a_jsonl_that_disagrees_fails(self):
        # the log resumed at step 52, the JSONL says 31: nothing skipped, 2,560 samples
        rc, out, _ = self.run_attempts(52, jsonl_first_step=31)
        self.assertEqual(rc, 1, out)
        self.assertIn("  FAIL  samples skipped: inspect-log says 336, the JSONL shows 0 (no step missing)", out)
        self.assertIn("  DIFF  samples seen: inspect-log says 2224, the JSONL says 2560", out)
        self.assertTrue(out.endswith("difference(s), 1 failed check(s)\n"), out)
        # and the other way round
        rc, out, _ = self.run_attempts(31, jsonl_first_step=52)
        self.assertEqual(rc, 1, out)
        self.assertIn("  FAIL  samples skipped: inspect-log says None, the JSONL shows 336 (steps 31-51 missing)", out)

if __name__ == "__main__":
    unittest.main()
