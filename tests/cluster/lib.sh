# shellcheck shell=bash disable=SC2034  # sourced; the variables are used by the scripts
# Shared helpers for the test-cluster scripts. Sourced, never executed.
# Every script here works out the same paths from this file, so the build cache key,
# the runtime directory and the ports are defined exactly once.

CLUSTER_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$CLUSTER_DIR/../.." && pwd)"

# Binaries live outside the clone so every checkout (and CI) reuses them.
FTO_CACHE="${FTO_CACHE:-$HOME/.cache/finetune-operator}"
# Runtime state lives in the repo's ignored build area (/build is in .gitignore).
RUN_DIR="${FTO_CLUSTER_RUN_DIR:-$REPO_ROOT/build/cluster}"
KUBECONFIG_PATH="$RUN_DIR/kubeconfig"
FIXTURES_DIR="$REPO_ROOT/tests/fixtures/cluster"

# Every component listens on 127.0.0.1 only, on fixed ports derived from one base so
# a clash can be fixed with a single variable (FTO_CLUSTER_PORT_BASE). They must stay
# below the kernel's ephemeral port range (usually 32768-60999): a port in that range
# can be taken at random as the source port of some outgoing connection, and the
# component's listen() then fails with "address already in use".
PORT_BASE="${FTO_CLUSTER_PORT_BASE:-26400}"
APISERVER_PORT=$((PORT_BASE + 43))        # kube-apiserver (HTTPS)            26443
KWOK_PORT=$((PORT_BASE + 50))             # kwok "kubelet" (logs, healthz)     26450
KCM_PORT=$((PORT_BASE + 57))              # kube-controller-manager /healthz   26457
SCHEDULER_PORT=$((PORT_BASE + 59))        # kube-scheduler /healthz            26459
ETCD_PORT=$((PORT_BASE + 79))             # etcd clients (HTTP)                26479
ETCD_PEER_PORT=$((PORT_BASE + 80))        # etcd peers (HTTP)                  26480
TO_METRICS_PORT=$((PORT_BASE + 81))       # training-operator /metrics         26481
TO_HEALTH_PORT=$((PORT_BASE + 82))        # training-operator /healthz,/readyz 26482
TO_WEBHOOK_PORT=$((PORT_BASE + 93))       # training-operator webhook (unused) 26493
KUEUE_METRICS_PORT=$((PORT_BASE + 83))    # kueue /metrics (HTTPS)             26483
KUEUE_HEALTH_PORT=$((PORT_BASE + 84))     # kueue /healthz, /readyz            26484
KUEUE_WEBHOOK_PORT=$((PORT_BASE + 94))    # kueue webhooks (HTTPS)             26494
JOBSET_METRICS_PORT=$((PORT_BASE + 85))   # jobset /metrics (HTTPS)            26485
JOBSET_HEALTH_PORT=$((PORT_BASE + 86))    # jobset /healthz, /readyz           26486
JOBSET_WEBHOOK_PORT=$((PORT_BASE + 95))   # jobset webhooks (HTTPS)            26495
TRAINER_METRICS_PORT=$((PORT_BASE + 87))  # trainer /metrics (HTTPS)           26487
TRAINER_HEALTH_PORT=$((PORT_BASE + 89))   # trainer /healthz, /readyz          26489
# (26488 is taken by the operator's metrics in scripts/demo.sh.)
TRAINER_WEBHOOK_PORT=$((PORT_BASE + 96))  # trainer webhooks (HTTPS)           26496
ALL_PORTS=("$APISERVER_PORT" "$ETCD_PORT" "$ETCD_PEER_PORT" "$KCM_PORT" "$SCHEDULER_PORT"
           "$KWOK_PORT" "$TO_METRICS_PORT" "$TO_HEALTH_PORT" "$TO_WEBHOOK_PORT"
           "$KUEUE_METRICS_PORT" "$KUEUE_HEALTH_PORT" "$KUEUE_WEBHOOK_PORT")

# Kubeflow Trainer v2 and JobSet (see README, "Trainer v2 and JobSet"): on unless
# FTO_CLUSTER_TRAINER=0, which gives the cluster without them (as the benchmarks measure it).
TRAINER_ENABLED=1
[[ "${FTO_CLUSTER_TRAINER:-1}" != 0 ]] || TRAINER_ENABLED=0
if (( TRAINER_ENABLED )); then
  ALL_PORTS+=("$JOBSET_METRICS_PORT" "$JOBSET_HEALTH_PORT" "$JOBSET_WEBHOOK_PORT"
              "$TRAINER_METRICS_PORT" "$TRAINER_HEALTH_PORT" "$TRAINER_WEBHOOK_PORT")
fi

# Started by up.sh in this order (jobset and trainer unless FTO_CLUSTER_TRAINER=0); down.sh
# stops all of them in reverse.
ALL_COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok log-router training-operator kueue
                jobset trainer)
COMPONENTS=("${ALL_COMPONENTS[@]}")
(( TRAINER_ENABLED )) || COMPONENTS=("${ALL_COMPONENTS[@]:0:8}")

# The training operator's cert rotator waits for its serving cert at this fixed path
# (hard-coded in training-operator v1.9.x, normally a mounted Secret).
TO_CERT_DIR=/tmp/k8s-webhook-server/serving-certs

# Kueue (see README, "Kueue"). The apiserver reaches its webhooks through the Service
# $KUEUE_WEBHOOK_SERVICE, of type ExternalName, which points at 127.0.0.1; the serving cert
# is for that Service's name. Kueue's own cert manager checks the cert and fills in the CA.
KUEUE_NAMESPACE=kueue-system
KUEUE_WEBHOOK_SERVICE=kueue-webhook-service
KUEUE_CERT_SECRET=kueue-webhook-server-cert
# The webhooks registered (names from Kueue's generated manifests): those of Kueue's own types
# and of the integrations enabled in config/kueue-config.yaml (PyTorchJob only).
KUEUE_WEBHOOKS=(mclusterqueue.kb.io vclusterqueue.kb.io vcohort.kb.io mresourceflavor.kb.io
                vresourceflavor.kb.io mworkload.kb.io vworkload.kb.io
                mpytorchjob.kb.io vpytorchjob.kb.io)
# The CRDs with a conversion webhook (Kueue's own install patches the same five). Kueue's
# cert manager fills in the CA of exactly these; it fails to start if one has no webhook.
KUEUE_CONVERSION_CRDS=(localqueues clusterqueues cohorts workloads multikueueclusters)
# The queues and priority classes up.sh creates (config/kueue-queues.yaml; the testkit
# crate has the same names).
KUEUE_CLUSTER_QUEUE=fto-gpus
KUEUE_LOCAL_QUEUE=fto-queue
KUEUE_PRIORITY_LOW=fto-low
KUEUE_PRIORITY_HIGH=fto-high

# Trainer v2 and JobSet (see README, "Trainer v2 and JobSet"). As for Kueue, the apiserver
# reaches their webhooks through ExternalName Services pointing at 127.0.0.1; the serving
# certs (for those Services' names, signed by the cluster CA) come from up.sh, their own cert
# managers are off. The namespaces and names are those of their own installs.
JOBSET_NAMESPACE=jobset-system
JOBSET_WEBHOOK_SERVICE=jobset-webhook-service
# Webhooks registered (names from JobSet's generated manifests): its JobSet defaulter and
# validator, and the two for the pods of JobSets (only pods labelled jobset.sigs.k8s.io/jobset-name,
# as upstream's kustomize patch selects them).
JOBSET_WEBHOOKS=(mjobset.kb.io vjobset.kb.io mpod.kb.io vpod.kb.io)
TRAINER_NAMESPACE=kubeflow-system
TRAINER_WEBHOOK_SERVICE=kubeflow-trainer-controller-manager
# All of Trainer's: the TrainJob defaulter and validator, the (Cluster)TrainingRuntime validators.
TRAINER_WEBHOOKS=(defaulter.trainjob.trainer.kubeflow.org validator.trainjob.trainer.kubeflow.org
                  validator.trainingruntime.trainer.kubeflow.org
                  validator.clustertrainingruntime.trainer.kubeflow.org)
# The ClusterTrainingRuntime up.sh installs, as Trainer ships it (the testkit may name it too).
TRAINER_TORCH_RUNTIME=torch-distributed

# Pod log files served through `kubectl logs` (see README, "Logs").
POD_LOG_DIR="$RUN_DIR/pod-logs"

# One Go module per upstream, so bumping one never disturbs the others. Each module is built
# and cached on its own (below), so adding or bumping one builds that one only.
MODULES=(k8s etcd kwok training-operator kueue trainer jobset helm crane)

# Versions stamped into the binaries; they must match the go.mod files (kwok and the
# training operator stamp themselves). The keys below cover go.mod and these flags.
K8S_VERSION=v1.36.3
ETCD_VERSION=v3.6.16
KUEUE_VERSION=v0.17.0
TRAINER_VERSION=v2.3.0
JOBSET_VERSION=v0.12.0
HELM_VERSION=v4.3.1
CRANE_VERSION=v0.22.1

# Static, reproducible, stripped binaries. Version stamps make `kubectl version` and
# `kube-apiserver --version` report v1.36.x instead of v0.0.0-master, and keep
# version-gated flag logic in other tools on the 1.36 path.
k8s_ldflags() {
  local v="${K8S_VERSION#v}" f=""
  local major="${v%%.*}" rest="${v#*.}"
  local minor="${rest%%.*}"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    f+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
    f+=" -X $pkg.gitTreeState=clean -X $pkg.gitCommit=module-$K8S_VERSION"
  done
  echo "-s -w$f"
}
etcd_ldflags() { echo "-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA=module-$ETCD_VERSION"; }
kwok_ldflags() { echo "-s -w"; }
training_operator_ldflags() { echo "-s -w"; }
# Kueue logs its version at start ("Initializing" ... gitVersion); unstamped it says v0.0.0-main.
kueue_ldflags() {
  echo "-s -w -X sigs.k8s.io/kueue/pkg/version.GitVersion=$KUEUE_VERSION" \
    "-X sigs.k8s.io/kueue/pkg/version.GitCommit=module-$KUEUE_VERSION"
}
# Trainer has no version variable; its module version is in the binary's build info (VERSIONS).
trainer_ldflags() { echo "-s -w"; }
# JobSet logs its version at start ("Initializing" ... gitVersion); unstamped it says v0.0.0-main.
jobset_ldflags() {
  echo "-s -w -X sigs.k8s.io/jobset/pkg/version.GitVersion=$JOBSET_VERSION" \
    "-X sigs.k8s.io/jobset/pkg/version.GitCommit=module-$JOBSET_VERSION"
}
# `helm version` says v4.3.1 (unstamped: v4.3). Helm takes the Kubernetes version it renders for
# (.Capabilities.KubeVersion) from client-go's version in its build info, so nothing to stamp there.
helm_ldflags() {
  echo "-s -w -X helm.sh/helm/v4/internal/version.version=$HELM_VERSION" \
    "-X helm.sh/helm/v4/internal/version.gitCommit=module-$HELM_VERSION" \
    "-X helm.sh/helm/v4/internal/version.gitTreeState=clean"
}
# crane assembles the operator's OCI image (scripts/image.sh); unstamped it says "(devel)".
crane_ldflags() { echo "-s -w -X github.com/google/go-containerregistry/cmd/crane/cmd.Version=$CRANE_VERSION"; }

# --- Build recipes ---------------------------------------------------------------------
# One per module (recipe_<module>, dashes as underscores): build into $1, an empty directory,
# everything the cluster takes from that module: binaries, the CRDs and manifests it ships
# (copies, so up.sh never needs the module cache), and a VERSIONS file. Called by build.sh.
# A recipe's text and its module's ldflags are part of the module's cache key, so editing a
# recipe rebuilds that module only.

# gobuild <module> <ldflags> <-o target> <packages...>: a static, reproducible build inside
# the component's own module (-C), so its pinned requirements apply.
gobuild() {
  local mod="$1" ldflags="$2" out="$3"; shift 3
  if ! CGO_ENABLED=0 go build -C "$CLUSTER_DIR/$mod" -trimpath -buildvcs=false \
        -ldflags "$ldflags" -o "$out" "$@"; then
    die "building $* failed (module tests/cluster/$mod); see the Go errors above"
  fi
}
# moddir <module> <go module path>: where the Go module's files are (GOMODCACHE).
moddir() { go list -C "$CLUSTER_DIR/$1" -m -f '{{.Dir}}' "$2"; }
# modversion <binary> <go module path>: "<go module path> <version>" from the binary's build info.
modversion() {
  go version -m "$1" | awk -v m="$2" '($1 == "mod" || $1 == "dep") && $2 == m { print m, $3; found = 1 } END { exit !found }' \
    || die "no $2 in the build info of $1"
}

recipe_k8s() {
  local pkg
  for pkg in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
    gobuild k8s "$(k8s_ldflags)" "$1/" "k8s.io/kubernetes/cmd/$pkg"
  done
  "$1/kubectl" version --client >"$1/VERSIONS" 2>&1
  grep -q "$K8S_VERSION" "$1/VERSIONS" || die "kubectl is not stamped $K8S_VERSION: $(cat "$1/VERSIONS")"
}
recipe_etcd() {
  gobuild etcd "$(etcd_ldflags)" "$1/etcd" go.etcd.io/etcd/server/v3
  "$1/etcd" --version >"$1/VERSIONS" 2>&1
}
recipe_kwok() {
  gobuild kwok "$(kwok_ldflags)" "$1/" sigs.k8s.io/kwok/cmd/kwok sigs.k8s.io/kwok/cmd/kwokctl
  cp "$(moddir kwok sigs.k8s.io/kwok)/kustomize/crd/bases/kwok.x-k8s.io_logs.yaml" "$1/"
  "$1/kwok" --version >"$1/VERSIONS" 2>&1 || true
}
recipe_training_operator() {
  gobuild training-operator "$(training_operator_ldflags)" "$1/training-operator" \
    github.com/kubeflow/training-operator/cmd/training-operator.v1
  cp "$(moddir training-operator github.com/kubeflow/training-operator)/manifests/base/crds/kubeflow.org_pytorchjobs.yaml" "$1/"
  modversion "$1/training-operator" github.com/kubeflow/training-operator >"$1/VERSIONS"
}
recipe_kueue() {
  gobuild kueue "$(kueue_ldflags)" "$1/kueue" sigs.k8s.io/kueue/cmd/kueue
  local src; src="$(moddir kueue sigs.k8s.io/kueue)"
  # All of Kueue's CRDs, as its own install has them: the controller watches most of them.
  cp "$src"/config/components/crd/bases/kueue.x-k8s.io_*.yaml "$1/"
  # Its webhook configurations as generated upstream; up.sh registers the ones it needs.
  cp "$src/config/components/webhook/manifests.yaml" "$1/kueue-webhooks.yaml"
  modversion "$1/kueue" sigs.k8s.io/kueue >"$1/VERSIONS"
}
recipe_trainer() {
  gobuild trainer "$(trainer_ldflags)" "$1/trainer-controller-manager" \
    github.com/kubeflow/trainer/v2/cmd/trainer-controller-manager
  local src; src="$(moddir trainer github.com/kubeflow/trainer/v2)"
  # TrainJob, TrainingRuntime, ClusterTrainingRuntime.
  cp "$src"/manifests/base/crds/trainer.kubeflow.org_*.yaml "$1/"
  # The ClusterTrainingRuntime torch-distributed as Trainer ships it.
  cp "$src/manifests/base/runtimes/torch_distributed.yaml" "$1/trainer-runtime-torch-distributed.yaml"
  cp "$src/manifests/base/webhook/manifests.yaml" "$1/trainer-webhooks.yaml"
  modversion "$1/trainer-controller-manager" github.com/kubeflow/trainer/v2 >"$1/VERSIONS"
  grep -qx "github.com/kubeflow/trainer/v2 $TRAINER_VERSION" "$1/VERSIONS" \
    || die "trainer is not $TRAINER_VERSION: $(cat "$1/VERSIONS")"
}
# JobSet's main package is its module root.
recipe_jobset() {
  gobuild jobset "$(jobset_ldflags)" "$1/jobset-controller-manager" sigs.k8s.io/jobset
  local src; src="$(moddir jobset sigs.k8s.io/jobset)"
  cp "$src/config/components/crd/bases/jobset.x-k8s.io_jobsets.yaml" "$1/"
  cp "$src/config/components/webhook/manifests.yaml" "$1/jobset-webhooks.yaml"
  modversion "$1/jobset-controller-manager" sigs.k8s.io/jobset >"$1/VERSIONS"
  grep -qx "sigs.k8s.io/jobset $JOBSET_VERSION" "$1/VERSIONS" || die "jobset is not $JOBSET_VERSION: $(cat "$1/VERSIONS")"
}
# Helm renders and lints the chart in charts/ (tests/chart/); it never installs anything here.
recipe_helm() {
  gobuild helm "$(helm_ldflags)" "$1/helm" helm.sh/helm/v4/cmd/helm
  "$1/helm" version >"$1/VERSIONS" 2>&1
  grep -q "Version:\"$HELM_VERSION\"" "$1/VERSIONS" || die "helm is not stamped $HELM_VERSION: $(cat "$1/VERSIONS")"
}

recipe_crane() {
  gobuild crane "$(crane_ldflags)" "$1/crane" github.com/google/go-containerregistry/cmd/crane
  echo "crane $("$1/crane" version)" >"$1/VERSIONS"
  grep -qx "crane $CRANE_VERSION" "$1/VERSIONS" || die "crane is not stamped $CRANE_VERSION: $(cat "$1/VERSIONS")"
}

# Binaries each module provides; a complete directory has all of them.
module_binaries() {
  case "$1" in
    k8s) echo kube-apiserver kube-controller-manager kube-scheduler kubectl ;;
    etcd) echo etcd ;;
    kwok) echo kwok kwokctl ;;
    training-operator) echo training-operator ;;
    kueue) echo kueue ;;
    trainer) echo trainer-controller-manager ;;
    jobset) echo jobset-controller-manager ;;
    helm) echo helm ;;
    crane) echo crane ;;
    *) die "unknown module $1" ;;
  esac
}

# --- Cache keys --------------------------------------------------------------------------
# Each module's binaries live in $FTO_CACHE/cluster-bin/<module>-<module key>/; the bin dir
# the scripts use, $FTO_CACHE/cluster-bin/<cluster key>/, holds hard links to the files of
# all of them. A module key hashes what changes that module's output: its go.mod/go.sum,
# its recipe and ldflags, the shared build helpers (gobuild holds the flags), and the Go
# toolchain. The cluster key hashes the module keys and the layout of the combined dir.
# Bump when build.sh changes what it puts into the combined dir, so old dirs are not reused.
BUILD_LAYOUT=3

# Asked once per shell: call it outside $(...) first, so that subshells inherit the answer.
_GO_TOOLCHAIN=""
go_toolchain() {
  [[ -n "$_GO_TOOLCHAIN" ]] || _GO_TOOLCHAIN="$(go version; go env GOOS GOARCH)"
  echo "$_GO_TOOLCHAIN"
}

module_key() {
  local m="$1" f="${1//-/_}"
  {
    echo "== $m"
    cat "$CLUSTER_DIR/$m/go.mod" "$CLUSTER_DIR/$m/go.sum"
    echo "== recipe"
    declare -f "recipe_$f" gobuild moddir modversion
    "${f}_ldflags"
    echo "== toolchain"
    go_toolchain
  } | sha256sum | cut -c1-16
}
module_dir() { echo "$FTO_CACHE/cluster-bin/$1-$(module_key "$1")"; }

cluster_key() {
  local m
  go_toolchain >/dev/null
  {
    echo "layout=$BUILD_LAYOUT"
    for m in "${MODULES[@]}"; do echo "$m $(module_key "$m")"; done
  } | sha256sum | cut -c1-16
}
cluster_bin_dir() { echo "$FTO_CACHE/cluster-bin/$(cluster_key)"; }

# module_dir_complete <dir> <module>
module_dir_complete() {
  local b
  [[ -f "$1/.complete" ]] || return 1
  for b in $(module_binaries "$2"); do [[ -x "$1/$b" ]] || return 1; done
}
bin_dir_complete() {
  local m
  [[ -f "$1/.complete" ]] || return 1
  for m in "${MODULES[@]}"; do module_dir_complete "$1" "$m" || return 1; done
}

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf '\nERROR: %s\n' "$*" >&2; exit 1; }
