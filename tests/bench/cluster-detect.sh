#!/usr/bin/env bash
# connect() → alert on Kafka, one collector and a 3-node cluster, in one run (root: the
# fleet and cluster labs are network namespaces with real agents).
#
# Usage: tests/bench/cluster-detect.sh [VIOLATIONS]      (default 100)
#
# Env:   BIN  directory of the builds (default: $CARGO_TARGET_DIR or target, /release):
#             cordon-agent, cordon-collector, cordon, cordon-detect-bench,
#             cordon-cluster-detect-bench
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${BIN:-${CARGO_TARGET_DIR:-$root/target}/release}
n=${1:-100}
for b in cordon-agent cordon-collector cordon cordon-detect-bench cordon-cluster-detect-bench; do
    [[ -x $BIN/$b ]] || { echo "$0: not executable: $BIN/$b" >&2; exit 1; }
done
export CORDON_AGENT=$BIN/cordon-agent CORDON_COLLECTOR=$BIN/cordon-collector CORDON_CLI=$BIN/cordon

echo "# $(date -u +%FT%TZ), $(nproc) cores, $(uname -r), load average $(cut -d' ' -f1-3 /proc/loadavg)"
rc=0
echo "## one collector (SQLite)"
"$BIN/cordon-detect-bench" --violations "$n" || rc=$?
echo
echo "## cluster of 3 nodes (PostgreSQL, Kafka)"
"$BIN/cordon-cluster-detect-bench" --violations "$n" || rc=$?
exit $rc
