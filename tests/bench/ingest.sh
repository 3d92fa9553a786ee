#!/usr/bin/env bash
# Collector ingest benchmark: simulated agents over real QUIC on loopback (no root needed).
#
# Usage: tests/bench/ingest.sh [cordon-loadgen options]     (see cordon-loadgen --help)
#
# Env:   LOADGEN    path to cordon-loadgen   (default: $CARGO_TARGET_DIR or target, /release)
#        COLLECTOR  path to cordon-collector (default: next to cordon-loadgen)
#        BASELINE   path to another cordon-collector build: the same load runs against it
#                   first, then against COLLECTOR, for a before/after in one run
#
# cordon-loadgen starts the collector itself for each phase, with a fresh data directory
# under $TMPDIR and a free UDP port on 127.0.0.1, and stops it at the end (also on failure):
#   - saturation: 50 agents, batches of 1000 records, 4 unacknowledged batches each;
#   - connected:  1000 agents connected at once, 20 records/s each.
# It prints records/s acknowledged, send→ack p50/p99, the collector's RSS and CPU, and a
# loss check against the collector's SQLite store; the exit code is 1 on any loss.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
LOADGEN=${LOADGEN:-$target/release/cordon-loadgen}
COLLECTOR=${COLLECTOR:-$(dirname "$LOADGEN")/cordon-collector}
for bin in "$LOADGEN" "$COLLECTOR" ${BASELINE:+"$BASELINE"}; do
    [[ -x $bin ]] || { echo "$0: not executable: $bin" >&2; exit 1; }
done

echo "# $(date -u +%FT%TZ), $(nproc) cores, $(uname -r)"
rc=0
if [[ -n ${BASELINE:-} ]]; then
    echo "## baseline: $BASELINE"
    "$LOADGEN" --collector "$BASELINE" "$@" || rc=$?
    echo
    echo "## candidate: $COLLECTOR"
fi
"$LOADGEN" --collector "$COLLECTOR" "$@" || rc=$?
exit $rc
