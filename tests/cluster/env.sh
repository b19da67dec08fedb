# shellcheck shell=bash
# Source me (bash): point kubectl and tests at the local test cluster.
#   source tests/cluster/env.sh
# Exports KUBECONFIG=build/cluster/kubeconfig, puts the cluster's own kubectl (v1.36)
# first on PATH, and FTO_SIM_LOG_DIR (where pod log files live, see README "Logs").
# Does not build or start anything; run tests/cluster/up.sh for that.
_fto_cluster_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
_fto_bin_dir="$("$_fto_cluster_dir/bin-dir.sh" || true)"
export KUBECONFIG="${FTO_CLUSTER_RUN_DIR:-$(cd "$_fto_cluster_dir/../.." && pwd)/build/cluster}/kubeconfig"
FTO_SIM_LOG_DIR="$(dirname "$KUBECONFIG")/pod-logs"
export FTO_SIM_LOG_DIR
case ":$PATH:" in
  *":$_fto_bin_dir:"*) ;;
  *) export PATH="$_fto_bin_dir:$PATH" ;;
esac
[ -x "$_fto_bin_dir/kubectl" ] || echo "note: cluster binaries not built yet; run tests/cluster/build.sh" >&2
unset _fto_cluster_dir _fto_bin_dir
