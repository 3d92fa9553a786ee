#!/usr/bin/env bash
# `make demo`: the agent watching live flows on this host, with processes.
# It runs a local web server and a few clients on loopback so there is traffic to see,
# then keeps watching until Ctrl-C (or DEMO_SECONDS seconds, if set).
set -euo pipefail
cd "$(dirname "$0")/.."
AGENT=target/release/cordon-agent
[ "$(id -u)" = 0 ] || { echo "demo: the agent loads eBPF programs and needs root (sudo make demo)" >&2; exit 1; }

tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

port=$((20000 + RANDOM % 20000))
echo "==> a web server on 127.0.0.1:$port and a few clients, so there is traffic to watch"
python3 -m http.server "$port" --bind 127.0.0.1 --directory "$tmp" >/dev/null 2>&1 &
pids+=($!)
(
  sleep 2
  for i in 1 2 3 4 5; do
    curl -s -o /dev/null "http://127.0.0.1:$port/" || true
    python3 -c "import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.sendto(b'demo $i', ('127.0.0.1', $port))"
    sleep 2
  done
) &
pids+=($!)

echo "==> cordon-agent watch (Ctrl-C to stop)"
args=(watch --stats-on-exit)
[ -n "${DEMO_SECONDS:-}" ] && args+=(--duration "${DEMO_SECONDS}s")
"$AGENT" "${args[@]}"
