"""Unit tests of launch.py: kubelet's `$(VAR)` expansion, env resolution, the training
operator's variables, and a dry run on `finetune-operator render` output.

    cd tests/gpu && python3 -m unittest test_launch

The expansion rules are Kubernetes' documented ones (EnvVar.value, Container.command/args):
"Variable references $(VAR_NAME) are expanded using the previously defined environment
variables in the container and any service environment variables. If a variable cannot be
resolved, the reference in the input string will be unchanged. Double $$ are reduced to a
single $, which allows for escaping the $(VAR_NAME) syntax: i.e. "$$(VAR_NAME)" will produce
the string literal "$(VAR_NAME)". Escaped references will never be expanded, regardless of
whether the variable exists or not."
The render test needs PyYAML and the operator binary ($FTO_BIN, `finetune-operator` on PATH,
or target/debug); it is skipped without them.
"""
import json
import os
import shutil
import subprocess
import unittest

import launch

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))

try:
    import yaml  # noqa: F401
    HAVE_YAML = True
except ImportError:
    HAVE_YAML = False


def operator_binary():
    for b in (os.environ.get("FTO_BIN"), shutil.which("finetune-operator"),
              os.path.join(REPO, "target", "debug", "finetune-operator")):
        if b and os.access(b, os.X_OK):
            return b
    return None


class Expand(unittest.TestCase):
    M = {"VAR": "value", "A": "a", "EMPTY": "", "WITH_DOLLAR": "x$(VAR)y"}

    def check(self, text, want):
        self.assertEqual(launch.expand(text, self.M), want, text)

    def test_defined_reference_expands(self):
        self.check("$(VAR)", "value")
        self.check("pre-$(VAR)-post", "pre-value-post")
        self.check("$(A)$(VAR)", "avalue")
        self.check("$(EMPTY)", "")

    def test_undefined_reference_stays(self):
        self.check("$(X)", "$(X)")
        self.check("--node_rank=$(RANK)", "--node_rank=$(RANK)")
        self.check("$(X)$(VAR)", "$(X)value")
        self.check("$()", "$()")

    def test_double_dollar_is_one_dollar(self):
        self.check("$$", "$")
        self.check("$$$$", "$$")
        self.check("a$$b", "a$b")
        self.check("price: 5$$", "price: 5$")

    def test_escaped_reference_is_literal(self):
        self.check("$$(VAR)", "$(VAR)")
        self.check("$$(X)", "$(X)")
        self.check("$$$(VAR)", "$value")
        self.check("$$$$(VAR)", "$$(VAR)")

    def test_other_dollars_stay(self):
        self.check("$VAR", "$VAR")
        self.check("${VAR}", "${VAR}")
        self.check("$", "$")
        self.check("a$", "a$")
        self.check("$1 $@", "$1 $@")

    def test_incomplete_reference_stays(self):
        self.check("$(VAR", "$(VAR")
        self.check("x $(", "x $(")
        self.check("$(VAR $(A)", "$(VAR $(A)")  # the name runs to the first ')': undefined

    def test_values_are_not_expanded_again(self):
        self.check("$(WITH_DOLLAR)", "x$(VAR)y")

    def test_no_dollar_is_unchanged(self):
        self.check("", "")
        self.check("plain text (with parens)", "plain text (with parens)")
        self.check("ünïcode $(VAR) ✓", "ünïcode value ✓")


class ResolveEnv(unittest.TestCase):
    def test_earlier_variables_only(self):
        env, _ = launch.resolve_env([
            {"name": "A", "value": "$(B)-a"},
            {"name": "B", "value": "b"},
            {"name": "C", "value": "$(A)/$(B)"},
        ])
        self.assertEqual(env, {"A": "$(B)-a", "B": "b", "C": "$(B)-a/b"})

    def test_later_definition_wins_and_sees_the_earlier(self):
        env, _ = launch.resolve_env([
            {"name": "P", "value": "1"},
            {"name": "P", "value": "$(P)2"},
        ])
        self.assertEqual(env["P"], "12")

    def test_self_reference_before_definition_stays(self):
        env, _ = launch.resolve_env([{"name": "P", "value": "$(P)x"}])
        self.assertEqual(env["P"], "$(P)x")

    def test_escapes_in_values(self):
        env, _ = launch.resolve_env([
            {"name": "A", "value": "a"},
            {"name": "LIT", "value": "$$(A)"},
            {"name": "DOLLAR", "value": "cost $$5"},
        ])
        self.assertEqual(env["LIT"], "$(A)")
        self.assertEqual(env["DOLLAR"], "cost $5")

    def test_empty_and_value_from(self):
        env, unresolved = launch.resolve_env([
            {"name": "E", "value": ""},
            {"name": "N"},
            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
            {"name": "USE", "value": "$(POD):$(TOKEN)"},
        ], {"metadata.name": "job-master-0"})
        self.assertEqual(env, {"E": "", "N": "", "POD": "job-master-0", "USE": "job-master-0:$(TOKEN)"})
        self.assertEqual(unresolved, ["TOKEN"])


def ptj(replicas, nproc="1", elastic=False):
    spec = {"pytorchReplicaSpecs": {"Master": {"replicas": 1}}}
    if replicas > 1:
        spec["pytorchReplicaSpecs"]["Worker"] = {"replicas": replicas - 1}
    if nproc is not None:
        spec["nprocPerNode"] = nproc
    if elastic:
        spec["elasticPolicy"] = {"minReplicas": 1}
    return {"spec": spec}


class TrainingOperatorEnv(unittest.TestCase):
    def env(self, *a, **kw):
        return {e["name"]: e["value"] for e in launch.training_operator_env(ptj(*a, **kw), {})}

    def test_master_of_one_node(self):
        self.assertEqual(self.env(1, "1"), {
            "PYTHONUNBUFFERED": "0", "MASTER_PORT": "23456", "PET_MASTER_PORT": "23456",
            "MASTER_ADDR": "127.0.0.1", "PET_MASTER_ADDR": "127.0.0.1", "WORLD_SIZE": "1",
            "RANK": "0", "PET_NPROC_PER_NODE": "1", "PET_NODE_RANK": "0", "PET_NNODES": "1",
        })

    def test_world_size_counts_processes(self):
        e = self.env(4, "8")
        self.assertEqual((e["WORLD_SIZE"], e["PET_NNODES"], e["PET_NPROC_PER_NODE"]), ("32", "4", "8"))

    def test_non_integer_nproc_counts_one(self):
        e = self.env(2, "auto")
        self.assertEqual((e["WORLD_SIZE"], e["PET_NPROC_PER_NODE"]), ("2", "auto"))

    def test_elastic_has_no_pet_nnodes_and_unset_nproc_none(self):
        e = self.env(2, None, elastic=True)
        self.assertNotIn("PET_NNODES", e)
        self.assertNotIn("PET_NPROC_PER_NODE", e)

    def test_overrides(self):
        e = {x["name"]: x["value"] for x in launch.training_operator_env(
            ptj(1), {"GPUKIT_MASTER_ADDR": "10.0.0.5", "GPUKIT_MASTER_PORT": "29500"})}
        self.assertEqual((e["MASTER_ADDR"], e["PET_MASTER_PORT"]), ("10.0.0.5", "29500"))


class BaseEnv(unittest.TestCase):
    def test_filter(self):
        got = launch.base_env({"PATH": "/bin", "TERM": "xterm", "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": "0",
                               "NCCL_DEBUG": "INFO", "GPUKIT_STEP": "t", "LC_ALL": "C", "PYTHONWARNINGS": "x"})
        self.assertEqual(got, {"PATH": "/bin", "CUDA_VISIBLE_DEVICES": "0", "NCCL_DEBUG": "INFO",
                               "GPUKIT_STEP": "t", "LC_ALL": "C"})


CHILDREN = """
apiVersion: batch/v1
kind: Job
metadata: {name: j-preprocess, namespace: ns}
spec:
  template:
    spec:
      containers:
      - name: preprocess
        command: [python, -m, mod]
        args: ["--out=/output/$(JOB)", "--lit=$$(JOB)", "--rank=$(RANK)"]
        env:
        - {name: JOB, value: j}
        - {name: POD, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
---
apiVersion: kubeflow.org/v1
kind: PyTorchJob
metadata: {name: j, namespace: ns}
spec:
  nprocPerNode: "2"
  pytorchReplicaSpecs:
    Master:
      replicas: 1
      template:
        spec:
          containers:
          - name: pytorch
            command: [torchrun]
            args: ["--node_rank=$(RANK)", "--master_addr=$(MASTER_ADDR)", "--tag=$(TAG)", "--x=$$$(RANK)"]
            env:
            - {name: TAG, value: "$(WORLD_SIZE)w"}
    Worker:
      replicas: 1
"""


@unittest.skipUnless(HAVE_YAML, "PyYAML missing")
class Resolve(unittest.TestCase):
    def setUp(self):
        import yaml
        self.docs = [d for d in yaml.safe_load_all(CHILDREN) if d]

    def test_preprocess(self):
        info = launch.resolve(self.docs, "preprocess", {"PATH": "/bin", "TERM": "x"})
        self.assertEqual(info["argv"], ["python", "-m", "mod", "--out=/output/j", "--lit=$(JOB)", "--rank=$(RANK)"])
        self.assertEqual(info["pod"], "j-preprocess-x7k2p")
        self.assertEqual(info["env"], {"PATH": "/bin", "HOSTNAME": "j-preprocess-x7k2p", "JOB": "j",
                                       "POD": "j-preprocess-x7k2p"})

    def test_train(self):
        info = launch.resolve(self.docs, "train", {"GPUKIT_WORKDIR": "/w"})
        # TAG comes before the operator's WORLD_SIZE: not expanded; args see everything
        self.assertEqual(info["argv"], ["torchrun", "--node_rank=0", "--master_addr=127.0.0.1", "--tag=$(WORLD_SIZE)w",
                                        "--x=$0"])
        self.assertEqual(info["env"]["WORLD_SIZE"], "4")
        self.assertEqual(info["env"]["PET_NNODES"], "2")
        self.assertEqual(info["env"]["HOSTNAME"], "j-master-0")
        self.assertEqual(info["workdir"], "/w")
        self.assertEqual(launch.paths(self.docs)["JOB_NAME"], "j")


@unittest.skipUnless(HAVE_YAML and operator_binary(), "needs PyYAML and the finetune-operator binary")
class DryRunOnRenderedChildren(unittest.TestCase):
    """`launch.py --dry-run` on what `finetune-operator render` makes of the kit's FineTuneJobs."""

    def dry_run(self, ftj, which):
        children = subprocess.run([operator_binary(), "render", "-f", os.path.join(HERE, ftj)],
                                  check=True, capture_output=True, text=True).stdout
        import tempfile
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as fh:
            fh.write(children)
        try:
            out = subprocess.run(["python3", os.path.join(HERE, "launch.py"), fh.name, which, "--dry-run"],
                                 check=True, capture_output=True, text=True).stdout
        finally:
            os.unlink(fh.name)
        return json.loads(out)

    def test_train(self):
        info = self.dry_run("ftj.yaml", "train")
        argv = info["argv"]
        self.assertEqual(argv[0], "torchrun")
        self.assertNotIn("$(", " ".join(argv))
        for flag in ("--nnodes=1", "--nproc_per_node=1", "--node_rank=0", "--master_addr=127.0.0.1",
                     "--master_port=23456", "instructlab.training.main_ds", "--output_dir=/output/ilab-tiny",
                     "--num_epochs=2", "--save_samples=96", "--disable_flash_attn"):
            self.assertIn(flag, argv)
        env = info["env"]
        self.assertEqual(env["FTJ_RUN_TAG"], "1x1-gpu")
        for k, v in {"RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1", "PET_NNODES": "1",
                     "PET_NPROC_PER_NODE": "1", "PET_NODE_RANK": "0", "HOSTNAME": "ilab-tiny-master-0"}.items():
            self.assertEqual(env[k], v, k)
        self.assertEqual(info["env_unresolved"], [])

    def test_preprocess(self):
        info = self.dry_run("ftj.yaml", "preprocess")
        self.assertEqual(info["argv"][:3], ["python", "-m", "instructlab.training.data_process"])
        self.assertIn("--data_output_path=/output/ilab-tiny/data", info["argv"])
        # NNODES is not defined in the preprocess container: the reference stays
        self.assertEqual(info["env"]["FTJ_RUN_TAG"], "$(NNODES)x$(NPROC_PER_NODE)-gpu")
        self.assertNotIn("RANK", info["env"])

    def test_scenarios(self):
        self.assertIn("--on_demand_checkpointing", self.dry_run("ftj-ondemand.yaml", "train")["argv"])
        self.assertIn("--num_epochs=8", self.dry_run("ftj-sigterm.yaml", "train")["argv"])

    def test_preempt_renders_the_hook_of_the_fixture(self):
        # testdata/children-preempt.yaml stands for this render in the kit's other tests
        import yaml
        with open(os.path.join(HERE, "testdata", "children-preempt.yaml")) as fh:
            want = launch.resolve([d for d in yaml.safe_load_all(fh) if d], "train", {})
        got = self.dry_run("ftj-preempt.yaml", "train")
        self.assertIn("--on_demand_checkpointing", got["argv"])
        self.assertEqual((got["preStop"], got["terminationGracePeriodSeconds"]),
                         (want["preStop"], want["terminationGracePeriodSeconds"]))
        self.assertEqual(got["argv"], want["argv"])
        self.assertEqual(got["container_env"], want["container_env"])


if __name__ == "__main__":
    unittest.main()
