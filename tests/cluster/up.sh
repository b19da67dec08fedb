#!/usr/bin/env bash
# Start the local test control plane: etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, kwok (4 fake GPU nodes, simulated pods, `kubectl logs`), a small
# log router, the Kubeflow training operator (PyTorchJob only), Kueue (its PyTorchJob
# integration, a ClusterQueue over the fake nodes' GPUs, two priority classes), and
# Kubeflow Trainer v2 with JobSet (TrainJob; the ClusterTrainingRuntime torch-distributed).
#
# Builds the binaries first if needed. Idempotent: when the cluster is already up and
# healthy it says so and exits 0; a half-dead cluster is stopped and started afresh.
# Every start is a fresh cluster (etcd is wiped); the PKI is kept between starts.
#
# Usage: tests/cluster/up.sh        (then: source tests/cluster/env.sh)
# Env:   FTO_CACHE, FTO_CLUSTER_PORT_BASE, FTO_CLUSTER_CRDS (extra CRDs installed before
#        the controllers start), FTO_TRAINING_OPERATOR_THREADS (its --controller-threads,
#        default 1), FTO_CLUSTER_TRAINER=0 (without Trainer and JobSet),
#        FTO_KEEP_ON_FAILURE=1 (debug a failed start)
set -Eeuo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

T0="$(date +%s.%N)"
elapsed() { awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }

BIN_DIR="$("$CLUSTER_DIR/build.sh")"
export PATH="$BIN_DIR:$PATH"
# Everything below talks to this cluster only, never to ~/.kube/config.
export KUBECONFIG="$KUBECONFIG_PATH"
unset KUBEFLOW_NAMESPACE

pid_of() { cat "$RUN_DIR/pids/$1.pid" 2>/dev/null || true; }
alive() { local pid; pid="$(pid_of "$1")"; [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; }

healthy() {
  local c
  for c in "${COMPONENTS[@]}"; do alive "$c" || return 1; done
  kubectl get --raw /readyz >/dev/null 2>&1 || return 1
  curl -sf "http://127.0.0.1:$TO_HEALTH_PORT/readyz" >/dev/null 2>&1 || return 1
  curl -sf "http://127.0.0.1:$KUEUE_HEALTH_PORT/readyz" >/dev/null 2>&1 || return 1
  if (( TRAINER_ENABLED )); then
    curl -sf "http://127.0.0.1:$JOBSET_HEALTH_PORT/readyz" >/dev/null 2>&1 || return 1
    curl -sf "http://127.0.0.1:$TRAINER_HEALTH_PORT/readyz" >/dev/null 2>&1 || return 1
  fi
  # The same composition as asked for (a cluster started with FTO_CLUSTER_TRAINER=0 has none).
  [[ "$(cat "$RUN_DIR/trainer-enabled" 2>/dev/null)" == "$TRAINER_ENABLED" ]] || return 1
}

if healthy; then
  log "test cluster is already up and healthy (kubeconfig: $KUBECONFIG_PATH)"
  exit 0
fi
for c in "${COMPONENTS[@]}"; do
  if alive "$c"; then
    running_with="$(cat "$RUN_DIR/trainer-enabled" 2>/dev/null || true)"
    if [[ -n "$running_with" && "$running_with" != "$TRAINER_ENABLED" ]]; then
      log "test cluster runs $( ((TRAINER_ENABLED)) && echo without || echo with) Trainer and JobSet; stopping it to start afresh"
    else
      log "test cluster is only partly running; stopping it to start afresh"
    fi
    "$CLUSTER_DIR/down.sh"
    break
  fi
done

read -r eph_lo eph_hi </proc/sys/net/ipv4/ip_local_port_range
for p in "${ALL_PORTS[@]}"; do
  if (( p >= eph_lo && p <= eph_hi )); then
    die "port $p is inside the ephemeral port range $eph_lo-$eph_hi, where outgoing
connections may take it at random; choose FTO_CLUSTER_PORT_BASE so that ports
n+43..n+96 stay below $eph_lo."
  fi
done
for p in "${ALL_PORTS[@]}"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
    die "port $p on 127.0.0.1 is already in use (another cluster or program?).
Stop it, or pick other ports with FTO_CLUSTER_PORT_BASE=<n> (ports n+43..n+96, below 32768)."
  fi
done

# --- On failure: show what the components said, then leave nothing running. ---------
on_error() {
  local rc=$? line="$1" cmd="$2"
  printf '\nERROR: the test cluster did not start: up.sh line %s failed (exit %s): %s\n' \
    "$line" "$rc" "$cmd" >&2
  printf 'Last log lines:\n' >&2
  for f in "$RUN_DIR"/logs/*.log; do
    [[ -f "$f" ]] || continue
    printf -- '--- %s\n' "${f#"$REPO_ROOT"/}" >&2
    tail -n 12 "$f" >&2
  done
  if [[ "${FTO_KEEP_ON_FAILURE:-}" == 1 ]]; then
    printf '\nFTO_KEEP_ON_FAILURE=1: leaving it running; stop with tests/cluster/down.sh\n' >&2
  else
    "$CLUSTER_DIR/down.sh" >&2 || true
  fi
  exit "$rc"
}
trap 'on_error "$LINENO" "$BASH_COMMAND"' ERR

# wait_for <what> <seconds> <command...>: poll until the command succeeds. Gives up
# early when a component started so far has exited (its log says why).
wait_for() {
  local what="$1" timeout="$2"; shift 2
  local deadline=$((SECONDS + timeout)) f
  until "$@" >/dev/null 2>&1; do
    for f in "$RUN_DIR"/pids/*.pid; do
      [[ -e "$f" ]] || continue
      if ! kill -0 "$(cat "$f")" 2>/dev/null; then
        log "$(basename "$f" .pid) exited while waiting for $what; see ${RUN_DIR#"$REPO_ROOT"/}/logs/$(basename "$f" .pid).log"
        return 1
      fi
    done
    if (( SECONDS >= deadline )); then
      log "timed out after ${timeout}s waiting for $what"
      return 1
    fi
    sleep 0.2
  done
}

# start <name> <command...>: run detached in its own session (so Ctrl-C in the caller's
# terminal does not kill it, and down.sh can stop its whole process group).
start() {
  local name="$1"; shift
  (cd "$RUN_DIR" && exec setsid "$@" >"$RUN_DIR/logs/$name.log" 2>&1 </dev/null) &
  echo "$!" >"$RUN_DIR/pids/$name.pid"
}

# --- Fresh runtime directory (PKI kept) ----------------------------------------------
mkdir -p "$RUN_DIR"
rm -rf "$RUN_DIR/etcd" "$RUN_DIR/logs" "$RUN_DIR/pids" "$RUN_DIR/crds" "$POD_LOG_DIR" "$RUN_DIR/trainer-tmp"
mkdir -p "$RUN_DIR/logs" "$RUN_DIR/pids" "$RUN_DIR/pki" "$POD_LOG_DIR"
echo "$TRAINER_ENABLED" >"$RUN_DIR/trainer-enabled"
# Log fixtures are copied, so tests can append to them without touching the repo.
cp "$FIXTURES_DIR"/*.log "$POD_LOG_DIR/"

# --- PKI: one CA; serving certs with 127.0.0.1 SANs; an admin client cert -----------
# A real CA (not a self-signed leaf) because rustls clients (kube-rs) reject a leaf
# certificate used as its own CA.
PKI="$RUN_DIR/pki"
if [[ ! -f "$PKI/admin.crt" ]]; then
  log "generating PKI in ${PKI#"$REPO_ROOT"/}"
  (
    cd "$PKI"
    ec_key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
    ec_key ca.key
    openssl req -x509 -new -key ca.key -sha256 -days 3650 -subj "/CN=finetune-operator-test-ca" \
      -addext "basicConstraints=critical,CA:TRUE" \
      -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" -out ca.crt
    # sign <name> <subject> <extensions>
    sign() {
      ec_key "$1.key"
      openssl req -new -key "$1.key" -subj "$2" -out "$1.csr"
      printf '%s\n' "$3" >"$1.ext"
      openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -sha256 \
        -days 3650 -extfile "$1.ext" -out "$1.crt" 2>/dev/null
      rm -f "$1.csr" "$1.ext"
    }
    sans="subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
    sign apiserver "/CN=kube-apiserver" \
      "basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
$sans"
    sign kwok "/CN=kwok-kubelet" \
      "basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,DNS:localhost"
    sign admin "/O=system:masters/CN=finetune-operator-test-admin" \
      "basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth"
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out sa.key 2>/dev/null
    openssl pkey -in sa.key -pubout -out sa.pub
  )
fi
# Kueue's webhook serving cert, in the form Kueue's own cert manager makes and checks (its
# CA: RSA, the key in PKCS#1, named kueue-ca; the cert: for the webhook Service's name), so
# that it keeps them. The file names are the keys of its Secret; the dir is its certDir.
KUEUE_PKI="$PKI/kueue"
if [[ ! -f "$KUEUE_PKI/tls.crt" ]]; then
  log "generating Kueue's webhook cert in ${KUEUE_PKI#"$REPO_ROOT"/}"
  mkdir -p "$KUEUE_PKI"
  (
    cd "$KUEUE_PKI"
    openssl genrsa -traditional -out ca.key 2048 2>/dev/null
    openssl req -x509 -new -key ca.key -sha256 -days 3650 -subj "/O=kueue/CN=kueue-ca" \
      -addext "basicConstraints=critical,CA:TRUE" \
      -addext "keyUsage=critical,keyCertSign,digitalSignature,keyEncipherment" \
      -addext "subjectAltName=DNS:kueue-ca" -out ca.crt
    openssl genrsa -traditional -out tls.key.tmp 2048 2>/dev/null
    openssl req -new -key tls.key.tmp -subj "/CN=$KUEUE_WEBHOOK_SERVICE.$KUEUE_NAMESPACE.svc" -out tls.csr
    printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature,keyEncipherment" \
      "extendedKeyUsage=serverAuth" "subjectAltName=DNS:$KUEUE_WEBHOOK_SERVICE.$KUEUE_NAMESPACE.svc" >tls.ext
    openssl x509 -req -in tls.csr -CA ca.crt -CAkey ca.key -CAcreateserial -sha256 -days 3650 \
      -extfile tls.ext -out tls.crt.tmp 2>/dev/null
    rm -f tls.csr tls.ext ca.srl
    mv tls.key.tmp tls.key
    mv tls.crt.tmp tls.crt
  )
fi

# JobSet's and Trainer's webhook serving certs: for their webhook Services' names, signed by
# the cluster CA (made again if that CA changed). Their own cert managers are off (README,
# "Trainer v2 and JobSet"), so these are what they serve and the CA is what up.sh puts into
# their webhook configurations.
webhook_cert() { # <dir> <DNS name>
  [[ -f "$1/tls.crt" ]] && openssl verify -CAfile "$PKI/ca.crt" "$1/tls.crt" >/dev/null 2>&1 && return
  log "generating the webhook cert for $2 in ${1#"$REPO_ROOT"/}"
  mkdir -p "$1"
  (
    cd "$1"
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out tls.key.tmp 2>/dev/null
    openssl req -new -key tls.key.tmp -subj "/CN=$2" -out tls.csr
    printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature" \
      "extendedKeyUsage=serverAuth" "subjectAltName=DNS:$2" >tls.ext
    openssl x509 -req -in tls.csr -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial \
      -CAserial ca.srl -sha256 -days 3650 -extfile tls.ext -out tls.crt.tmp 2>/dev/null
    rm -f tls.csr tls.ext ca.srl
    mv tls.key.tmp tls.key
    mv tls.crt.tmp tls.crt
  )
}
if (( TRAINER_ENABLED )); then
  webhook_cert "$PKI/jobset" "$JOBSET_WEBHOOK_SERVICE.$JOBSET_NAMESPACE.svc"
  webhook_cert "$PKI/trainer" "$TRAINER_WEBHOOK_SERVICE.$TRAINER_NAMESPACE.svc"
fi

# Self-contained admin kubeconfig (certs embedded), so it can be copied anywhere.
b64() { base64 -w0 "$1"; }
cat >"$KUBECONFIG_PATH.tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: fto-test
  cluster:
    server: https://127.0.0.1:$APISERVER_PORT
    certificate-authority-data: $(b64 "$PKI/ca.crt")
users:
- name: fto-test-admin
  user:
    client-certificate-data: $(b64 "$PKI/admin.crt")
    client-key-data: $(b64 "$PKI/admin.key")
contexts:
- name: fto-test
  context:
    cluster: fto-test
    user: fto-test-admin
current-context: fto-test
EOF
mv "$KUBECONFIG_PATH.tmp" "$KUBECONFIG_PATH"
chmod 600 "$KUBECONFIG_PATH"

# --- etcd ----------------------------------------------------------------------------
log "starting etcd on 127.0.0.1:$ETCD_PORT"
start etcd etcd --name=node0 --data-dir="$RUN_DIR/etcd" \
  --listen-client-urls="http://127.0.0.1:$ETCD_PORT" --advertise-client-urls="http://127.0.0.1:$ETCD_PORT" \
  --listen-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
  --initial-cluster="node0=http://127.0.0.1:$ETCD_PEER_PORT" \
  --unsafe-no-fsync=true --auto-compaction-retention=1 --quota-backend-bytes=8589934592 --log-level=warn
wait_for "etcd" 30 curl -sf "http://127.0.0.1:$ETCD_PORT/health"

# --- kube-apiserver ------------------------------------------------------------------
# Advertised as 127.0.0.1 with no endpoint reconciler: the `kubernetes` Service's
# Endpoints may not hold a loopback address, and nothing in the cluster uses them.
log "starting kube-apiserver on https://127.0.0.1:$APISERVER_PORT"
start kube-apiserver kube-apiserver \
  --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$APISERVER_PORT" \
  --endpoint-reconciler-type=none \
  --etcd-servers="http://127.0.0.1:$ETCD_PORT" --etcd-prefix=/registry \
  --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
  --client-ca-file="$PKI/ca.crt" \
  --requestheader-client-ca-file="$PKI/ca.crt" --requestheader-allowed-names=front-proxy-client \
  --requestheader-username-headers=X-Remote-User --requestheader-group-headers=X-Remote-Group \
  --requestheader-extra-headers-prefix=X-Remote-Extra- \
  --service-account-issuer=https://kubernetes.default.svc.cluster.local \
  --service-account-key-file="$PKI/sa.pub" --service-account-signing-key-file="$PKI/sa.key" \
  --service-cluster-ip-range=10.96.0.0/16 \
  --authorization-mode=RBAC --allow-privileged=true \
  --enable-priority-and-fairness=false --max-requests-inflight=0 --max-mutating-requests-inflight=0 \
  --profiling=false
wait_for "kube-apiserver /readyz" 60 kubectl get --raw /readyz

# --- Objects that must exist before the controllers start ----------------------------
# The garbage collector only rediscovers API types every 30 s, so the PyTorchJob and Kueue
# CRDs go in before kube-controller-manager starts. Server-side apply: the CRDs are too big
# for client-side apply's last-applied annotation.
if (( TRAINER_ENABLED )); then
  log "installing PyTorchJob, kwok Logs, Kueue, JobSet and Trainer CRDs, namespaces kubeflow, $KUEUE_NAMESPACE, $JOBSET_NAMESPACE and $TRAINER_NAMESPACE, fake nodes"
else
  log "installing PyTorchJob, kwok Logs and Kueue CRDs, namespaces kubeflow and $KUEUE_NAMESPACE, fake nodes"
fi
# Kueue's CRDs, those in KUEUE_CONVERSION_CRDS with their conversion webhook as Kueue's install
# patches it in, through the same Service as its other webhooks (rendered here, in one
# apply: each write of a CRD with a schema that big takes the apiserver a while).
KUEUE_CA_BUNDLE="$(b64 "$KUEUE_PKI/ca.crt")"
mkdir -p "$RUN_DIR/crds"
crd_args=(-f "$BIN_DIR/kubeflow.org_pytorchjobs.yaml" -f "$BIN_DIR/kwok.x-k8s.io_logs.yaml")
for crd in "$BIN_DIR"/kueue.x-k8s.io_*.yaml; do
  name="$(basename "$crd" .yaml)"
  if [[ " ${KUEUE_CONVERSION_CRDS[*]} " == *" ${name#kueue.x-k8s.io_} "* ]]; then
    awk -v ca="$KUEUE_CA_BUNDLE" -v ns="$KUEUE_NAMESPACE" -v svc="$KUEUE_WEBHOOK_SERVICE" \
        -v port="$KUEUE_WEBHOOK_PORT" '
      { print }
      !done && /^spec:$/ {
        print "  conversion:\n    strategy: Webhook\n    webhook:\n      conversionReviewVersions: [v1]"
        print "      clientConfig:\n        caBundle: " ca
        print "        service: {namespace: " ns ", name: " svc ", path: /convert, port: " port "}"
        done = 1
      }
      END { exit !done }' "$crd" >"$RUN_DIR/crds/$name.yaml"
    crd="$RUN_DIR/crds/$name.yaml"
  fi
  crd_args+=(-f "$crd")
done
if (( $(grep -l "path: /convert" "$RUN_DIR"/crds/*.yaml | wc -l) != ${#KUEUE_CONVERSION_CRDS[@]} )); then
  log "not every CRD in KUEUE_CONVERSION_CRDS (${KUEUE_CONVERSION_CRDS[*]}) is among Kueue's CRDs"
  false
fi
# JobSet's CRD and Trainer's three (TrainJob, TrainingRuntime, ClusterTrainingRuntime), as
# they ship them: no conversion webhooks.
if (( TRAINER_ENABLED )); then
  crd_args+=(-f "$BIN_DIR/jobset.x-k8s.io_jobsets.yaml")
  for crd in "$BIN_DIR"/trainer.kubeflow.org_*.yaml; do crd_args+=(-f "$crd"); done
fi
kubectl apply --server-side --field-manager=fto-test-cluster "${crd_args[@]}" >/dev/null
# More CRDs for the same reason, e.g. the operator's own, so that deleting one of its
# objects cascades at once: FTO_CLUSTER_CRDS="<file or dir, relative to the repo> ...".
for crd in ${FTO_CLUSTER_CRDS:-}; do
  [[ "$crd" == /* ]] || crd="$REPO_ROOT/$crd"
  log "  + $crd"
  kubectl apply --server-side --field-manager=fto-test-cluster -f "$crd" >/dev/null
done
established() {
  [[ "$(kubectl get crd -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Established")].status}{"\n"}{end}' \
        | sort -u)" == True ]]
}
wait_for "CRDs to be established" 30 established
# The training operator's cert rotator needs this Secret to exist (empty) and fills it.
# Kueue's finds its cert in its Secret. The apiserver calls Kueue's webhooks through the
# Service (TLS server name <service>.<namespace>.svc); as an ExternalName Service it
# resolves to 127.0.0.1, where Kueue listens.
kubectl apply --server-side --field-manager=fto-test-cluster -f - >/dev/null <<EOF
apiVersion: v1
kind: Namespace
metadata:
  name: kubeflow
---
apiVersion: v1
kind: Secret
metadata:
  name: training-operator-webhook-cert
  namespace: kubeflow
type: Opaque
---
apiVersion: v1
kind: Namespace
metadata:
  name: $KUEUE_NAMESPACE
---
apiVersion: v1
kind: Secret
metadata:
  name: $KUEUE_CERT_SECRET
  namespace: $KUEUE_NAMESPACE
type: Opaque
data:
  ca.crt: $KUEUE_CA_BUNDLE
  ca.key: $(b64 "$KUEUE_PKI/ca.key")
  tls.crt: $(b64 "$KUEUE_PKI/tls.crt")
  tls.key: $(b64 "$KUEUE_PKI/tls.key")
---
apiVersion: v1
kind: Service
metadata:
  name: $KUEUE_WEBHOOK_SERVICE
  namespace: $KUEUE_NAMESPACE
spec:
  type: ExternalName
  externalName: 127.0.0.1
EOF
# render_webhooks <generated manifests> <Service> <namespace> <port> <CA bundle> <mutating
# configuration name> <validating configuration name> <selectors> <webhook>...: the webhook
# configurations of a controller-runtime project's generated manifests (Kueue's, JobSet's,
# Trainer's), only the named webhooks, the two configurations renamed, each webhook pointing
# at the Service on the port with the CA filled in. <selectors>: "<webhook>=<label> ...", an
# objectSelector "<label> exists" for those webhooks (what JobSet's install patches in).
render_webhooks() {
  local file="$1" svc="$2" ns="$3" port="$4" ca="$5" mname="$6" vname="$7" sel="$8"; shift 8
  awk -v keep="$*" -v svc="$svc" -v ns="$ns" -v port="$port" -v ca="$ca" -v mname="$mname" \
      -v vname="$vname" -v sel="$sel" -v file="$(basename "$file")" '
    function flush() {
      if (block != "" && (name in wanted)) { printf "%s", block; kept++ }
      block = ""; name = ""
    }
    BEGIN {
      n = split(keep, k, " "); for (i = 1; i <= n; i++) wanted[k[i]] = 1
      m = split(sel, s, " "); for (i = 1; i <= m; i++) { split(s[i], kv, "="); selector[kv[1]] = kv[2] }
    }
    /^- / { flush(); inblock = 1 }
    !/^- / && !/^ / { flush(); inblock = 0 }
    inblock {
      line = $0
      if (line == "      name: webhook-service") line = "      name: " svc
      if (line == "      namespace: system") line = "      namespace: " ns
      block = block line "\n"
      if (line ~ /^  name: /) {
        name = substr(line, 9)
        if (name in selector)
          block = block "  objectSelector: {matchExpressions: [{key: " selector[name] ", operator: Exists}]}\n"
      }
      if (line == "  clientConfig:") block = block "    caBundle: " ca "\n"
      if (line ~ /^      path: /) block = block "      port: " port "\n"
      next
    }
    /^  name: mutating-webhook-configuration$/ { $0 = "  name: " mname }
    /^  name: validating-webhook-configuration$/ { $0 = "  name: " vname }
    { print }
    END {
      flush()
      if (kept != n) { printf "found %d of the %d webhooks in %s\n", kept, n, file > "/dev/stderr"; exit 1 }
    }' "$file"
}
# Kueue's webhook configurations: only the webhooks in KUEUE_WEBHOOKS, named
# kueue-{mutating,validating}-webhook-configuration as its cert manager expects. With Trainer,
# its TrainJob webhooks too: they add Kueue's runtime patch, without which Kueue never
# unsuspends an admitted TrainJob.
if (( TRAINER_ENABLED )); then
  KUEUE_WEBHOOKS+=(mtrainjob.kb.io vtrainjob.kb.io)
fi
render_webhooks "$BIN_DIR/kueue-webhooks.yaml" "$KUEUE_WEBHOOK_SERVICE" "$KUEUE_NAMESPACE" \
  "$KUEUE_WEBHOOK_PORT" "$KUEUE_CA_BUNDLE" kueue-mutating-webhook-configuration \
  kueue-validating-webhook-configuration "" "${KUEUE_WEBHOOKS[@]}" >"$RUN_DIR/kueue-webhooks.yaml"
kubectl apply --server-side --field-manager=fto-test-cluster -f "$RUN_DIR/kueue-webhooks.yaml" >/dev/null
# JobSet and Trainer: their namespaces, the ExternalName Services their webhooks are called
# through (as Kueue's), and their webhook configurations (names as in their own installs)
# with the cluster CA, which signed the certs they serve.
if (( TRAINER_ENABLED )); then
  kubectl apply --server-side --field-manager=fto-test-cluster -f - >/dev/null <<EOF
apiVersion: v1
kind: Namespace
metadata:
  name: $JOBSET_NAMESPACE
---
apiVersion: v1
kind: Service
metadata:
  name: $JOBSET_WEBHOOK_SERVICE
  namespace: $JOBSET_NAMESPACE
spec:
  type: ExternalName
  externalName: 127.0.0.1
---
apiVersion: v1
kind: Namespace
metadata:
  name: $TRAINER_NAMESPACE
---
apiVersion: v1
kind: Service
metadata:
  name: $TRAINER_WEBHOOK_SERVICE
  namespace: $TRAINER_NAMESPACE
spec:
  type: ExternalName
  externalName: 127.0.0.1
EOF
  CLUSTER_CA_BUNDLE="$(b64 "$PKI/ca.crt")"
  {
    render_webhooks "$BIN_DIR/jobset-webhooks.yaml" "$JOBSET_WEBHOOK_SERVICE" "$JOBSET_NAMESPACE" \
      "$JOBSET_WEBHOOK_PORT" "$CLUSTER_CA_BUNDLE" jobset-mutating-webhook-configuration \
      jobset-validating-webhook-configuration \
      "mpod.kb.io=jobset.sigs.k8s.io/jobset-name vpod.kb.io=jobset.sigs.k8s.io/jobset-name" \
      "${JOBSET_WEBHOOKS[@]}"
    echo ---
    render_webhooks "$BIN_DIR/trainer-webhooks.yaml" "$TRAINER_WEBHOOK_SERVICE" "$TRAINER_NAMESPACE" \
      "$TRAINER_WEBHOOK_PORT" "$CLUSTER_CA_BUNDLE" defaulter.trainer.kubeflow.org \
      validator.trainer.kubeflow.org "" "${TRAINER_WEBHOOKS[@]}"
  } >"$RUN_DIR/trainer-webhooks.yaml"
  kubectl apply --server-side --field-manager=fto-test-cluster -f "$RUN_DIR/trainer-webhooks.yaml" >/dev/null
fi
# Node status (capacity, allocatable) is kept on create, so creating the nodes sets it.
kubectl create -f "$CLUSTER_DIR/config/nodes.yaml" >/dev/null

# --- Controllers ---------------------------------------------------------------------
log "starting kube-controller-manager, kube-scheduler, kwok"
start kube-controller-manager kube-controller-manager \
  --kubeconfig="$KUBECONFIG_PATH" \
  --authentication-kubeconfig="$KUBECONFIG_PATH" --authorization-kubeconfig="$KUBECONFIG_PATH" \
  --bind-address=127.0.0.1 --secure-port="$KCM_PORT" --cert-dir="$RUN_DIR/pki/kcm" \
  --authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics \
  --leader-elect=false --controllers='*' \
  --root-ca-file="$PKI/ca.crt" --service-account-private-key-file="$PKI/sa.key" \
  --kube-api-qps=5000 --kube-api-burst=10000 \
  --node-monitor-period=25s --node-monitor-grace-period=3m20s
start kube-scheduler kube-scheduler \
  --kubeconfig="$KUBECONFIG_PATH" \
  --authentication-kubeconfig="$KUBECONFIG_PATH" --authorization-kubeconfig="$KUBECONFIG_PATH" \
  --bind-address=127.0.0.1 --secure-port="$SCHEDULER_PORT" --cert-dir="$RUN_DIR/pki/scheduler" \
  --authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics \
  --leader-elect=false --kube-api-qps=5000 --kube-api-burst=10000
# kwok: node name "localhost" becomes each node's Hostname address, so the apiserver
# dials 127.0.0.1:$KWOK_PORT for logs. Pod IPs come from a documentation range
# (TEST-NET-2); they are data only and nothing connects to them.
sed "s|@POD_LOG_DIR@|$POD_LOG_DIR|g" "$CLUSTER_DIR/config/kwok.yaml" >"$RUN_DIR/kwok.yaml"
start kwok kwok \
  --kubeconfig="$KUBECONFIG_PATH" --config="$RUN_DIR/kwok.yaml" \
  --manage-nodes-with-label-selector=type=kwok \
  --node-name=localhost --node-ip=127.0.0.1 --node-port="$KWOK_PORT" \
  --server-address="127.0.0.1:$KWOK_PORT" \
  --tls-cert-file="$PKI/kwok.crt" --tls-private-key-file="$PKI/kwok.key" \
  --cidr=198.51.100.0/24 --node-lease-duration-seconds=200 --enable-crds=Logs
start log-router bash "$CLUSTER_DIR/log-router.sh" "$RUN_DIR"

# --- Kueue -----------------------------------------------------------------------------------
# Started early: it takes a few seconds (a first manager checks the certs, then the real one
# starts), while the rest comes up. Its PyTorchJob integration needs the CRD, installed above.
log "starting kueue (PyTorchJob integration; TrainJob too with Trainer)"
sed -e "s|@KUEUE_NAMESPACE@|$KUEUE_NAMESPACE|" -e "s|@KUEUE_HEALTH_PORT@|$KUEUE_HEALTH_PORT|" \
    -e "s|@KUEUE_METRICS_PORT@|$KUEUE_METRICS_PORT|" -e "s|@KUEUE_WEBHOOK_PORT@|$KUEUE_WEBHOOK_PORT|" \
    -e "s|@KUEUE_CERT_DIR@|$KUEUE_PKI|" -e "s|@KUEUE_WEBHOOK_SERVICE@|$KUEUE_WEBHOOK_SERVICE|" \
    -e "s|@KUEUE_CERT_SECRET@|$KUEUE_CERT_SECRET|" "$CLUSTER_DIR/config/kueue-config.yaml" >"$RUN_DIR/kueue-config.yaml"
# With Trainer, the TrainJob integration too (it needs the TrainJob CRD, installed above).
if (( TRAINER_ENABLED )); then
  sed -i 's|^  - kubeflow.org/pytorchjob$|&\n  - trainer.kubeflow.org/trainjob|' "$RUN_DIR/kueue-config.yaml"
  grep -q "trainer.kubeflow.org/trainjob" "$RUN_DIR/kueue-config.yaml"
fi
if grep -E "@[A-Z_]+@" "$RUN_DIR/kueue-config.yaml" >&2; then
  log "config/kueue-config.yaml has a placeholder that up.sh does not fill (above)"
  false
fi
start kueue env KUBECONFIG="$KUBECONFIG_PATH" kueue --config="$RUN_DIR/kueue-config.yaml" \
  --zap-encoder=console --zap-log-level=info

# --- JobSet and Trainer -----------------------------------------------------------------
# Started early too; their CRDs (and JobSet's, which Trainer watches) are in. No leader
# election, everything on 127.0.0.1, webhooks served with the certs made above.
if (( TRAINER_ENABLED )); then
  log "starting jobset and trainer (TrainJob)"
  sed -e "s|@JOBSET_HEALTH_PORT@|$JOBSET_HEALTH_PORT|" -e "s|@JOBSET_METRICS_PORT@|$JOBSET_METRICS_PORT|" \
      -e "s|@JOBSET_WEBHOOK_PORT@|$JOBSET_WEBHOOK_PORT|" -e "s|@JOBSET_CERT_DIR@|$PKI/jobset|" \
      "$CLUSTER_DIR/config/jobset-config.yaml" >"$RUN_DIR/jobset-config.yaml"
  sed -e "s|@TRAINER_HEALTH_PORT@|$TRAINER_HEALTH_PORT|" -e "s|@TRAINER_METRICS_PORT@|$TRAINER_METRICS_PORT|" \
      -e "s|@TRAINER_WEBHOOK_PORT@|$TRAINER_WEBHOOK_PORT|" \
      "$CLUSTER_DIR/config/trainer-config.yaml" >"$RUN_DIR/trainer-config.yaml"
  if grep -E "@[A-Z_]+@" "$RUN_DIR/jobset-config.yaml" "$RUN_DIR/trainer-config.yaml" >&2; then
    log "config/jobset-config.yaml or config/trainer-config.yaml has a placeholder that up.sh does not fill (above)"
    false
  fi
  # JobSet's --kube-api-qps/--kube-api-burst flags would override its config; not given.
  start jobset jobset-controller-manager --kubeconfig="$KUBECONFIG_PATH" \
    --config="$RUN_DIR/jobset-config.yaml" --zap-devel=false --zap-log-level=info
  # Trainer's webhook server reads its cert from os.TempDir()/k8s-webhook-server/serving-certs.
  TRAINER_CERT_DIR="$RUN_DIR/trainer-tmp/k8s-webhook-server/serving-certs"
  mkdir -p "$TRAINER_CERT_DIR"
  cp "$PKI/trainer/tls.crt" "$PKI/trainer/tls.key" "$TRAINER_CERT_DIR/"
  start trainer env TMPDIR="$RUN_DIR/trainer-tmp" trainer-controller-manager \
    --kubeconfig="$KUBECONFIG_PATH" --config="$RUN_DIR/trainer-config.yaml" --zap-log-level=info
fi

# --- Training operator -----------------------------------------------------------------
log "starting training-operator (PyTorchJob only)"
# Stale cert files from an earlier run would not match the new Secret.
mkdir -p "$TO_CERT_DIR"
rm -f "$TO_CERT_DIR/tls.crt" "$TO_CERT_DIR/tls.key" "$TO_CERT_DIR/ca.crt"
start training-operator env MY_POD_NAMESPACE=kubeflow training-operator \
  --kubeconfig="$KUBECONFIG_PATH" --enable-scheme=pytorchjob \
  --metrics-bind-address="127.0.0.1:$TO_METRICS_PORT" \
  --health-probe-bind-address="127.0.0.1:$TO_HEALTH_PORT" \
  --webhook-server-port="$TO_WEBHOOK_PORT" \
  --leader-elect=false --kube-api-qps=200 --kube-api-burst=400 --zap-devel=false \
  --controller-threads="${FTO_TRAINING_OPERATOR_THREADS:-1}"
# In a real deployment the Secret is mounted at $TO_CERT_DIR; here we copy the cert
# the rotator generated into it, which is what the operator waits for before it
# starts any controller.
secret_has_cert() {
  [[ -n "$(kubectl -n kubeflow get secret training-operator-webhook-cert \
    -o jsonpath='{.data.tls\.crt}' 2>/dev/null)" ]]
}
wait_for "training-operator to fill its webhook cert Secret" 60 secret_has_cert
# One read, so key and cert come from the same version of the Secret (the rotator may
# write it twice while starting). tls.crt goes last: its existence is what the
# operator waits for, and it then loads tls.key at once.
read -r key crt ca <<<"$(kubectl -n kubeflow get secret training-operator-webhook-cert \
  -o 'jsonpath={.data.tls\.key} {.data.tls\.crt} {.data.ca\.crt}')"
put_cert() { base64 -d <<<"$2" >"$TO_CERT_DIR/.$1.tmp" && mv "$TO_CERT_DIR/.$1.tmp" "$TO_CERT_DIR/$1"; }
put_cert tls.key "$key"
put_cert ca.crt "$ca"
put_cert tls.crt "$crt"

# --- Ready? ----------------------------------------------------------------------------
https_ok() { curl -skf "https://127.0.0.1:$1/healthz"; }
wait_for "kube-controller-manager /healthz" 60 https_ok "$KCM_PORT"
wait_for "kube-scheduler /healthz" 60 https_ok "$SCHEDULER_PORT"
wait_for "kwok /healthz" 60 https_ok "$KWOK_PORT"
nodes_ready() {
  # 4 nodes Ready and untainted (the node lifecycle controller removes the not-ready
  # taint that the apiserver adds at creation).
  local out
  out="$(kubectl get nodes -l type=kwok -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{.spec.taints}{"\n"}{end}')"
  [[ "$(grep -cx True <<<"$out")" == 4 ]]
}
wait_for "4 fake nodes Ready and untainted" 90 nodes_ready
wait_for "the default ServiceAccount" 60 kubectl -n default get serviceaccount default
wait_for "training-operator /readyz" 90 curl -sf "http://127.0.0.1:$TO_HEALTH_PORT/readyz"
# Ready means its webhook server is up; creating the queues then goes through Kueue's
# webhooks for its own types, and the PyTorchJob below through its PyTorchJob webhook.
wait_for "kueue /readyz" 90 curl -sf "http://127.0.0.1:$KUEUE_HEALTH_PORT/readyz"
kubectl apply --server-side --field-manager=fto-test-cluster -f "$CLUSTER_DIR/config/kueue-queues.yaml" >/dev/null
cq_active() {
  [[ "$(kubectl get clusterqueue "$KUEUE_CLUSTER_QUEUE" \
        -o jsonpath='{.status.conditions[?(@.type=="Active")].status}')" == True ]]
}
wait_for "ClusterQueue $KUEUE_CLUSTER_QUEUE to be active" 30 cq_active
# A PyTorchJob for the queue, dry run: Kueue's webhook must suspend it.
suspended_by_kueue() {
  [[ "$(kubectl create --dry-run=server -o jsonpath='{.spec.runPolicy.suspend}' -f - <<EOF
apiVersion: kubeflow.org/v1
kind: PyTorchJob
metadata:
  name: kueue-webhook-check
  namespace: default
  labels: {kueue.x-k8s.io/queue-name: $KUEUE_LOCAL_QUEUE}
spec:
  pytorchReplicaSpecs:
    Master:
      replicas: 1
      template:
        spec:
          containers: [{name: pytorch, image: registry.invalid/check:1}]
EOF
  )" == true ]]
}
wait_for "Kueue's PyTorchJob webhook to suspend a queued PyTorchJob" 30 suspended_by_kueue
if (( TRAINER_ENABLED )); then
  # Ready means their webhook servers are up. The runtime goes through Trainer's validating
  # webhook; the dry runs check that the apiserver reaches the JobSet and TrainJob webhooks.
  wait_for "jobset /readyz" 90 curl -sf "http://127.0.0.1:$JOBSET_HEALTH_PORT/readyz"
  wait_for "trainer /readyz" 90 curl -sf "http://127.0.0.1:$TRAINER_HEALTH_PORT/readyz"
  kubectl apply --server-side --field-manager=fto-test-cluster \
    -f "$BIN_DIR/trainer-runtime-torch-distributed.yaml" >/dev/null
  defaulted_by_jobset() {
    [[ "$(kubectl create --dry-run=server -o jsonpath='{.spec.startupPolicy.startupPolicyOrder}' -f - <<EOF
apiVersion: jobset.x-k8s.io/v1alpha2
kind: JobSet
metadata:
  name: jobset-webhook-check
  namespace: default
spec:
  replicatedJobs:
  - name: node
    template:
      spec:
        template:
          spec:
            containers: [{name: node, image: registry.invalid/check:1}]
EOF
    )" == AnyOrder ]]
  }
  wait_for "JobSet's webhook to default a JobSet" 30 defaulted_by_jobset
  # Trainer's defaulter writes the time of each runtime patch.
  defaulted_by_trainer() {
    [[ -n "$(kubectl create --dry-run=server -o jsonpath='{.spec.runtimePatches[0].time}' -f - <<EOF
apiVersion: trainer.kubeflow.org/v1alpha1
kind: TrainJob
metadata:
  name: trainer-webhook-check
  namespace: default
spec:
  runtimeRef: {name: $TRAINER_TORCH_RUNTIME}
  runtimePatches:
  - manager: finetune.dev/test-cluster
    trainingRuntimeSpec: {template: {metadata: {labels: {check: "1"}}}}
EOF
    )" ]]
  }
  wait_for "Trainer's webhooks to default and validate a TrainJob" 30 defaulted_by_trainer
fi
alive log-router || die "log-router exited; see ${RUN_DIR#"$REPO_ROOT"/}/logs/log-router.log"

trap - ERR
log "test cluster ready in $(elapsed)s"
cat >&2 <<EOF
  kubeconfig: $KUBECONFIG_PATH
  use it:     source tests/cluster/env.sh   (or: export KUBECONFIG=$KUBECONFIG_PATH PATH=$BIN_DIR:\$PATH)
  apiserver:  https://127.0.0.1:$APISERVER_PORT   logs: ${RUN_DIR#"$REPO_ROOT"/}/logs/
  stop:       tests/cluster/down.sh
EOF
