#!/usr/bin/env bash
# `make test`: the whole suite — formatting, lints (workspace, and the eBPF crate in its own
# run), unit tests, the privileged end-to-end tests (root, real kernel), then the packaging
# tests (packaging/tests/run.sh: build, inspect, lint and install the deb/rpm packages).
# Ends with one line adding up every cargo test run and the packaging checks:
# "N passed, M failed".
set -euo pipefail
cd "$(dirname "$0")/.."
CARGO=${CARGO:-cargo}
log=$(mktemp -t cordon-test.XXXXXX)
trap 'rm -f "$log"' EXIT

step() { printf '==> %s\n' "$*"; "$@" 2>&1 | tee -a "$log"; }

step "$CARGO" fmt --all -- --check
step "$CARGO" clippy --workspace --exclude cordon-agent-ebpf --all-targets -- -D warnings
(cd agent-ebpf && step "$CARGO" +nightly clippy -Z build-std=core --target bpfel-unknown-none --release -- -D warnings)
step "$CARGO" test --workspace --exclude cordon-agent-ebpf --exclude cordon-tests
step "$CARGO" build -p cordon-agent -p cordon-collector -p cordon-enforcer
step "$CARGO" test -p cordon-tests -- --test-threads=2
step bash packaging/tests/run.sh

passed=$(grep -Eo 'test result: [a-zA-Z]+\. [0-9]+ passed' "$log" | awk '{s+=$4} END {print s+0}')
failed=$(grep -Eo '[0-9]+ failed;' "$log" | awk '{s+=$1} END {print s+0}')
# packaging/tests/run.sh ends with "N passed, M failed" of its own checks.
read -r pkg_passed pkg_failed < <(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$log" | awk '{p+=$1; f+=$3} END {print p+0, f+0}')
passed=$((passed + pkg_passed))
failed=$((failed + pkg_failed))
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
