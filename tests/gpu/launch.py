#!/usr/bin/env python3
"""Start a container of `finetune-operator render` output the way its pod would start it.

usage:
  launch.py CHILDREN.yaml preprocess|train [--dry-run] [--describe FILE] [--pidfile FILE]
  launch.py CHILDREN.yaml prestop [--dry-run] [--describe FILE] [--pidfile FILE]
                                     the Master container's preStop exec hook, run as
                                     kubelet runs it (below); refused when there is none
  launch.py CHILDREN.yaml paths      shell assignments: JOB_NAME MODEL_PATH DATA_PATH
                                     PREP_OUTPUT TRAIN_DATA OUTPUT_DIR
  launch.py base-env CMD ARGS...     run CMD with the filtered "image" environment below

CHILDREN.yaml is what `finetune-operator render -f FTJ.yaml` prints.

* preprocess: the batch/v1 Job's container named `preprocess` (else its first).
* train: the PyTorchJob's Master replica, container `pytorch`, with the variables
  the Kubeflow training operator v1.9 appends to every container of a replica
  (pkg/controller.v1/pytorch/envvar.go, master.go; non-elastic job, Master index 0):
  PYTHONUNBUFFERED, MASTER_PORT, PET_MASTER_PORT, MASTER_ADDR, PET_MASTER_ADDR,
  WORLD_SIZE (= sum of replicas x nprocPerNode, nprocPerNode counted as 1 when it
  is not an integer), RANK=0, PET_NPROC_PER_NODE (when nprocPerNode is set),
  PET_NODE_RANK=0, PET_NNODES (= sum of replicas).
  MASTER_PORT is the Master's `pytorchjob-port` container port, which the training
  operator defaults to 23456. MASTER_ADDR is `<job>-master-0` in a cluster (a
  headless Service that resolves to the pod itself); here it is 127.0.0.1, the one
  deliberate difference, since that name resolves nowhere outside a cluster.
  GPUKIT_MASTER_ADDR / GPUKIT_MASTER_PORT override both.

Expansion follows kubelet (k8s.io/kubernetes third_party/forked/golang/expansion):
env entries are resolved in order, each value expanded against the variables
defined before it (a later entry of the same name replaces the earlier one);
then command and args are expanded against the whole container environment.
`$(VAR)` of a defined VAR becomes its value, `$$` becomes `$` (so `$$(VAR)` is a
literal `$(VAR)`), an undefined `$(VAR)` and every other `$` stay as written.
valueFrom fieldRef gets the pod's fields; secretKeyRef, configMapKeyRef,
resourceFieldRef and envFrom cannot be resolved here: they are listed under
`env_unresolved` and left out. The Service variables kubelet adds
(KUBERNETES_SERVICE_HOST, ...) are not modelled.

The image's own ENV is stood for by a filtered copy of this launcher's
environment (PATH, PYTHONPATH, HOME, VIRTUAL_ENV, locale, LD_LIBRARY_PATH, CUDA_*,
NVIDIA_*, NCCL_*, and the kit's GPUKIT_* markers); the rest of the calling shell
(TERM, colour switches, HF_*/TQDM_* settings, ...) is dropped, since a pod has
none of it. The container env is laid over that, as a container runtime does, and
HOSTNAME is the pod's name. The working directory is the container's workingDir,
else GPUKIT_WORKDIR (the image's WORKDIR), else the current directory.

prestop: the `lifecycle.preStop.exec.command` of the same container (the Master's
`pytorch`), as kubelet runs it when the pod is deleted, evicted or preempted: the
argv exactly as written (kubelet expands no `$(VAR)` in lifecycle hooks), in the
container's environment and working directory (an exec in a running container gets
the container's process environment). A container without an exec preStop hook is
refused with exit status 2 and says so; so are the other kinds of hook (httpGet,
tcpSocket, sleep), which this kit does not run. The train dry run shows the hook
(`preStop`, null when none) and the pod's `terminationGracePeriodSeconds`
(Kubernetes' default, 30, when unset).

Nothing of the launcher's own is printed: what the program prints is the log, as
`kubectl logs` shows it. --dry-run prints, as JSON, the argv, environment and
working directory it would exec, and execs nothing. --describe writes the same
JSON to FILE and still execs. --pidfile writes the process id, which after exec
is the program's own (torchrun's, PID 1 of the container).

Needs PyYAML for the children; `expand` and `resolve_env` need nothing.
"""
import json
import os
import shlex
import sys

DEFAULT_MASTER_ADDR = "127.0.0.1"
DEFAULT_MASTER_PORT = "23456"  # training operator: PytorchJobDefaultPort
DEFAULT_GRACE_SECONDS = 30  # Kubernetes' terminationGracePeriodSeconds when unset


def expand(text, mapping):
    """Kubernetes' expansion.Expand with a mapping that keeps unknown `$(NAME)`."""
    out = []
    checkpoint = 0
    cursor = 0
    n = len(text)
    while cursor < n:
        if text[cursor] == "$" and cursor + 1 < n:
            out.append(text[checkpoint:cursor])
            rest = text[cursor + 1:]
            if rest[0] == "$":  # escaped operator: `$$` -> `$`
                read, is_var, advance = "$", False, 1
            elif rest[0] == "(":
                close = rest.find(")", 1)
                if close == -1:  # incomplete reference: kept as written
                    read, is_var, advance = "$(", False, 1
                else:
                    read, is_var, advance = rest[1:close], True, close + 1
            else:  # a `$` that starts no expression: kept with the next character
                read, is_var, advance = "$" + rest[0], False, 1
            if is_var:
                out.append(mapping[read] if read in mapping else "$(" + read + ")")
            else:
                out.append(read)
            cursor += advance
            checkpoint = cursor + 1
        cursor += 1
    return "".join(out) + text[checkpoint:]


def resolve_env(env_list, field_values=None):
    """kubelet's makeEnvironmentVariables for `env`: returns (dict, unresolved names)."""
    field_values = field_values or {}
    resolved = {}
    unresolved = []
    for e in env_list:
        name = e["name"]
        value = "" if e.get("value") is None else str(e["value"])
        if value:  # kubelet expands non-empty values only
            resolved[name] = expand(value, resolved)
        elif e.get("valueFrom"):
            path = (e["valueFrom"].get("fieldRef") or {}).get("fieldPath")
            if path in field_values:
                resolved[name] = field_values[path]
            else:
                unresolved.append(name)
        else:
            resolved[name] = ""
    return resolved, unresolved


KEEP_NAMES = {
    "PATH", "PYTHONPATH", "PYTHONDONTWRITEBYTECODE", "HOME", "LANG", "LANGUAGE",
    "TZ", "VIRTUAL_ENV", "LD_LIBRARY_PATH",
}
KEEP_PREFIXES = ("LC_", "CUDA_", "NVIDIA_", "NCCL_", "GPUKIT_")


def base_env(environ=None):
    """The launcher's environment, filtered to what an image would provide."""
    environ = os.environ if environ is None else environ
    return {k: v for k, v in environ.items() if k in KEEP_NAMES or k.startswith(KEEP_PREFIXES)}


def load_docs(path):
    import yaml  # PyYAML

    with open(path, encoding="utf-8") as fh:
        return [d for d in yaml.safe_load_all(fh) if d]


def pick(docs, which):
    """(owner object, pod template, container, pod name) for `preprocess` or `train`."""
    if which == "preprocess":
        job = next((d for d in docs if d.get("kind") == "Job"), None)
        if job is None:
            raise SystemExit("launch.py: the children have no Job (no spec.preprocess?)")
        pod = job["spec"]["template"]
        containers = pod["spec"]["containers"]
        c = next((x for x in containers if x.get("name") == "preprocess"), containers[0])
        return job, pod, c, job["metadata"]["name"] + "-x7k2p"  # a Job's pod: random suffix
    if which == "train":
        ptj = next((d for d in docs if d.get("kind") == "PyTorchJob"), None)
        if ptj is None:
            raise SystemExit("launch.py: the children have no PyTorchJob")
        pod = ptj["spec"]["pytorchReplicaSpecs"]["Master"]["template"]
        c = next(x for x in pod["spec"]["containers"] if x.get("name") == "pytorch")
        return ptj, pod, c, ptj["metadata"]["name"] + "-master-0"
    raise SystemExit(f"launch.py: unknown container {which!r} (preprocess|train|prestop)")


class NoHook(SystemExit):
    """The Master's training container has no preStop hook the kit can run."""


def prestop_hook(docs):
    """(argv, terminationGracePeriodSeconds) of the PyTorchJob Master's training container.

    Raises NoHook, a SystemExit carrying the reason, when the container has no
    `lifecycle.preStop.exec.command`.
    """
    _, pod, c, _ = pick(docs, "train")
    where = f"the PyTorchJob Master's container `{c.get('name')}`"
    pre_stop = (c.get("lifecycle") or {}).get("preStop")
    if not pre_stop:
        raise NoHook(f"launch.py: {where} has no lifecycle.preStop hook: these children were rendered "
                     "without the checkpoint-before-stop hook (it comes with "
                     "spec.training.onDemandCheckpointing: true, from an operator that renders it)")
    command = (pre_stop.get("exec") or {}).get("command")
    if not command:
        kinds = ", ".join(sorted(k for k in pre_stop if k != "exec")) or "an exec without a command"
        raise NoHook(f"launch.py: {where} has a lifecycle.preStop hook of another kind ({kinds}); "
                     "this kit runs exec hooks only")
    grace = pod["spec"].get("terminationGracePeriodSeconds")
    return [str(x) for x in command], int(DEFAULT_GRACE_SECONDS if grace is None else grace)


def training_operator_env(ptj, environ=None):
    """What the training operator v1.9 appends to the Master replica's containers."""
    environ = os.environ if environ is None else environ
    spec = ptj["spec"]
    replicas = sum(int(r.get("replicas", 1)) for r in spec["pytorchReplicaSpecs"].values())
    nproc = spec.get("nprocPerNode")
    try:
        nproc_int = int(nproc) if nproc is not None else 1
    except ValueError:  # "auto", "gpu": the operator counts 1
        nproc_int = 1
    port = environ.get("GPUKIT_MASTER_PORT", DEFAULT_MASTER_PORT)
    addr = environ.get("GPUKIT_MASTER_ADDR", DEFAULT_MASTER_ADDR)
    env = [
        ("PYTHONUNBUFFERED", "0"),  # the operator's value; any non-empty value unbuffers
        ("MASTER_PORT", port),
        ("PET_MASTER_PORT", port),
        ("MASTER_ADDR", addr),
        ("PET_MASTER_ADDR", addr),
        ("WORLD_SIZE", str(replicas * nproc_int)),
        ("RANK", "0"),
    ]
    if nproc is not None:
        env.append(("PET_NPROC_PER_NODE", str(nproc)))
    env.append(("PET_NODE_RANK", "0"))
    if spec.get("elasticPolicy") is None:
        env.append(("PET_NNODES", str(replicas)))
    return [{"name": k, "value": v} for k, v in env]


def resolve(docs, which, environ=None):
    """Everything the container would get: a dict that --dry-run prints."""
    environ = os.environ if environ is None else environ
    obj, pod, c, pod_name = pick(docs, which)
    env_list = list(c.get("env") or [])
    if which == "train":
        env_list += training_operator_env(obj, environ)
    fields = {
        "metadata.name": pod_name,
        "metadata.namespace": obj["metadata"].get("namespace", "default"),
        "spec.nodeName": "node-0",
        "spec.serviceAccountName": pod["spec"].get("serviceAccountName", "default"),
        "status.podIP": "127.0.0.1",
        "status.hostIP": "127.0.0.1",
    }
    container_env, unresolved = resolve_env(env_list, fields)
    if c.get("envFrom"):
        unresolved.append("envFrom")
    command = [expand(x, container_env) for x in (c.get("command") or [])]
    args = [expand(x, container_env) for x in (c.get("args") or [])]
    env = base_env(environ)
    env["HOSTNAME"] = pod_name
    env.update(container_env)
    extra = {}
    if which == "train":
        hook = ((c.get("lifecycle") or {}).get("preStop") or {}).get("exec") or {}
        grace = pod["spec"].get("terminationGracePeriodSeconds")
        extra = {
            "preStop": [str(x) for x in hook["command"]] if hook.get("command") else None,
            "terminationGracePeriodSeconds": int(DEFAULT_GRACE_SECONDS if grace is None else grace),
        }
    return {
        "container": c.get("name"),
        "pod": pod_name,
        "image": c.get("image"),
        "argv": command + args,
        "workdir": c.get("workingDir") or environ.get("GPUKIT_WORKDIR") or os.getcwd(),
        "env": dict(sorted(env.items())),
        "container_env": container_env,
        "env_unresolved": unresolved,
        **extra,
    }


def resolve_prestop(docs, environ=None):
    """What kubelet would exec for the Master's preStop hook: the train container's
    environment and working directory, the hook's argv unexpanded. Raises NoHook."""
    argv, _ = prestop_hook(docs)
    info = resolve(docs, "train", environ)
    info["argv"] = argv
    info["hook"] = "preStop"
    return info


def paths(docs):
    """Flag values of both containers, for run.sh."""
    out = {}
    for which in ("preprocess", "train"):
        try:
            info = resolve(docs, which)
        except SystemExit:
            continue
        flags = dict(a[2:].split("=", 1) for a in info["argv"] if a.startswith("--") and "=" in a)
        if which == "preprocess":
            out["DATA_PATH"] = flags.get("data_path", "")
            out["PREP_OUTPUT"] = flags.get("data_output_path", "")
            out["MODEL_PATH"] = flags.get("model_name_or_path", "")
        else:
            out["JOB_NAME"] = info["pod"][: -len("-master-0")]
            out["TRAIN_DATA"] = flags.get("data_path", "")
            out["OUTPUT_DIR"] = flags.get("output_dir", "")
            out["MODEL_PATH"] = flags.get("model_name_or_path", out.get("MODEL_PATH", ""))
    return out


def main(argv):
    if len(argv) >= 3 and argv[1] == "base-env":
        os.execvpe(argv[2], argv[2:], base_env())
    if len(argv) < 3:
        sys.stderr.write(__doc__)
        return 2
    path, which, rest = argv[1], argv[2], argv[3:]
    docs = load_docs(path)
    if which == "paths":
        for k, v in paths(docs).items():
            print(f"{k}={shlex.quote(v)}")
        return 0
    dry_run, describe, pidfile = False, None, None
    while rest:
        a = rest.pop(0)
        if a == "--dry-run":
            dry_run = True
        elif a in ("--describe", "--pidfile") and rest:
            if a == "--describe":
                describe = rest.pop(0)
            else:
                pidfile = rest.pop(0)
        else:
            sys.stderr.write(f"launch.py: unknown option {a}\n")
            return 2
    if which == "prestop":
        try:
            info = resolve_prestop(docs)
        except NoHook as e:
            sys.stderr.write(f"{e}\n")
            return 2
    else:
        info = resolve(docs, which)
    text = json.dumps(info, indent=2) + "\n"
    if dry_run:
        sys.stdout.write(text)
        return 0
    if describe:
        with open(describe, "w", encoding="utf-8") as fh:
            fh.write(text)
    if not info["argv"]:
        sys.stderr.write("launch.py: the container has no command (the image's ENTRYPOINT would run)\n")
        return 2
    if pidfile:
        with open(pidfile, "w", encoding="utf-8") as fh:
            fh.write(f"{os.getpid()}\n")
    os.chdir(info["workdir"])
    try:
        os.execvpe(info["argv"][0], info["argv"], info["env"])
    except FileNotFoundError:  # what a container runtime reports
        sys.stderr.write(f'exec: "{info["argv"][0]}": executable file not found in $PATH\n')
        return 127


if __name__ == "__main__":
    sys.exit(main(sys.argv))
