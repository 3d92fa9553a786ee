#!/usr/bin/env bash
# Collector cluster benchmarks on loopback (no root needed): simulated agents over real
# QUIC against one collector with SQLite and against clusters of 1, 2 and 3 nodes
# (PostgreSQL 15, a tansu Kafka broker and release cordon-collector nodes, all started by
# the benchmark on 127.0.0.1 and stopped at the end, also on failure).
#
# Usage: tests/bench/cluster.sh [throughput|failover|all] [cordon-cluster-bench options]
#        (default: all; see cordon-cluster-bench throughput --help / failover --help)
#
# Env:   BENCH      path to cordon-cluster-bench (default: $CARGO_TARGET_DIR or target, /release)
#        COLLECTOR  path to cordon-collector     (default: next to cordon-cluster-bench)
#
#   - throughput: per configuration a saturation phase (50 agents, batches of 1000
#     records, 4 unacknowledged each: records/s acknowledged and stored) and a sustained
#     phase (20,000 records/s offered: CPU per 1,000 records of the nodes, PostgreSQL and
#     tansu); every batch must be stored exactly once;
#   - failover: 3 nodes, 30 agents at 10,000 records/s; 12 times the busiest node is
#     killed (SIGKILL) and restarted: kill → its agents reconnected elsewhere, kill → their
#     first new batch stored; then every batch must be stored exactly once.
# The exit code is 1 on any loss, duplicate or agent error.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
BENCH=${BENCH:-$target/release/cordon-cluster-bench}
COLLECTOR=${COLLECTOR:-$(dirname "$BENCH")/cordon-collector}
for bin in "$BENCH" "$COLLECTOR"; do
    [[ -x $bin ]] || { echo "$0: not executable: $bin" >&2; exit 1; }
done
what=${1:-all}
[[ $# -gt 0 ]] && shift

echo "# $(date -u +%FT%TZ), $(nproc) cores, $(uname -r), load average $(cut -d' ' -f1-3 /proc/loadavg)"
rc=0
case $what in
    throughput|failover) "$BENCH" "$what" --collector "$COLLECTOR" "$@" || rc=$? ;;
    all)
        "$BENCH" throughput --collector "$COLLECTOR" "$@" || rc=$?
        "$BENCH" failover --collector "$COLLECTOR" "$@" || rc=$?
        ;;
    *) echo "$0: unknown benchmark $what (throughput, failover or all)" >&2; exit 2 ;;
esac
exit $rc
