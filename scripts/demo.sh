#!/usr/bin/env bash
# `make demo`: a collector and an agent on this machine, on loopback. The collector starts
# (creating its CA), an operator token and a join token are made, the agent enrolls over
# the network and streams every flow on this host with the process behind it; a small web
# server and clients make traffic, and the `cordon` CLI shows hosts and flows from the
# collector. Runs until Ctrl-C (or DEMO_SECONDS seconds, if set).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=target/release
[ "$(id -u)" = 0 ] || { echo "demo: the agent loads eBPF programs and needs root (sudo make demo)" >&2; exit 1; }

tmp=$(mktemp -d /tmp/cordon-demo.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -INT "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 0' INT TERM

say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
qport=$((20000 + RANDOM % 10000)); aport=$((qport + 10000)); web=$((qport + 20000))

say "collector: agents on udp 127.0.0.1:$qport, API on http://127.0.0.1:$aport"
cat >"$tmp/collector.toml" <<CFG
listen = "127.0.0.1:$qport"
data_dir = "$tmp/collector"
server_names = ["127.0.0.1"]
[api]
listen = "127.0.0.1:$aport"
CFG
"$BIN/cordon-collector" run --config "$tmp/collector.toml" 2>"$tmp/collector.log" &
pids+=($!)
for _ in $(seq 100); do grep -q "collector listening" "$tmp/collector.log" 2>/dev/null && break; sleep 0.1; done
fp=$(grep -o 'ca_fingerprint=[0-9a-f]*' "$tmp/collector.log" | cut -d= -f2)
echo "CA fingerprint: $fp"

say "the first operator token, made on the collector host: cordon-collector token create"
"$BIN/cordon-collector" token create --config "$tmp/collector.toml" --name demo >"$tmp/admin.token"
export CORDON_API="http://127.0.0.1:$aport" CORDON_TOKEN_FILE="$tmp/admin.token"
cordon() { "$BIN/cordon" "$@"; }

say "a join token for one agent: cordon token create --enroll"
cordon token create --enroll --name "demo agent" >"$tmp/join.token"

say "the agent enrolls (its key never leaves this host): cordon-agent enroll"
mkdir -p "$tmp/agent"
cat >"$tmp/agent.toml" <<CFG
[capture]
poll_interval_ms = 500
export_interval_ms = 5000
[uplink]
collectors = ["127.0.0.1:$qport"]
ca_file = "$tmp/agent/ca.pem"
cert_file = "$tmp/agent/agent.pem"
key_file = "$tmp/agent/agent.key"
spool_dir = "$tmp/agent/spool"
[enforcer]
# The demo runs on this machine itself: never isolate it.
backend = "none"
state_file = "$tmp/agent/enforcer.json"
CFG
"$BIN/cordon-agent" enroll --config "$tmp/agent.toml" --token-file "$tmp/join.token" --ca-fingerprint "$fp"

say "the agent captures every flow on this host and streams it: cordon-agent run"
"$BIN/cordon-agent" run --config "$tmp/agent.toml" 2>"$tmp/agent.log" &
pids+=($!)
for _ in $(seq 300); do grep -q "connected to the collector" "$tmp/agent.log" 2>/dev/null && break; sleep 0.1; done
grep -o 'capture started.*\|connected to the collector.*' "$tmp/agent.log" | sed 's/^/   /'

say "traffic: a web server on 127.0.0.1:$web, curl and a UDP sender"
python3 -m http.server "$web" --bind 127.0.0.1 --directory "$tmp" >/dev/null 2>&1 &
pids+=($!)
(
  sleep 1
  while :; do
    curl -s -o /dev/null "http://127.0.0.1:$web/" || true
    python3 -c "import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.sendto(b'demo', ('127.0.0.1', $web))"
    sleep 3
  done
) &
pids+=($!)
sleep 4

say "cordon hosts"
cordon hosts
say "cordon flows --port $web   (from the collector's store)"
cordon flows --port "$web" --limit 12

say "a policy: loopback may reach the web server (tcp/$web) and the collector; nothing else"
cat >"$tmp/policy.yaml" <<POL
name: demo
groups:
  this-host:
    cidr: [127.0.0.0/8]
rules:
  - name: web
    consumer: any
    provider: this-host
    ports: [tcp/$web]
    action: allow
  - name: collector
    consumer: any
    provider: this-host
    ports: [udp/$qport, tcp/$aport]
    action: allow
catch_all:
  - action: deny
    severity: HIGH
POL
cat "$tmp/policy.yaml" | sed 's/^/   /'
cordon policy apply "$tmp/policy.yaml"
cordon policy publish 1
sleep 5
say "cordon alerts   (the UDP datagrams to port $web break the policy; each alert is deduplicated with a count)"
cordon alerts --limit 5
say "cordon flows --verdict escaped"
cordon flows --verdict escaped --limit 6

end=$(( $(date +%s) + ${DEMO_SECONDS:-1000000} ))
say "new flows every 5 s (Ctrl-C to stop)"
while [ "$(date +%s)" -lt "$end" ]; do
  since=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  sleep 5
  cordon flows --since "$since" --limit 15 | tail -n +2
done
say "collector metrics"
curl -s "http://127.0.0.1:$aport/metrics" | grep -v '^#' || true
