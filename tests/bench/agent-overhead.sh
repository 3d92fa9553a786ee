#!/usr/bin/env bash
# Measure Cordon agent overhead in one run, alternating rounds with and without the agent.
#
# Usage: tests/bench/agent-overhead.sh [ROUNDS] [SECONDS]     (defaults: 3 rounds, 5 s)
#
# Env:   AGENT  path to cordon-agent  (default: target/release/cordon-agent)
#        BENCH  path to cordon-bench  (default: target/release/cordon-bench)
#        KEEP=1 keep the temporary directory with raw results and agent logs
#
# Each round measures connection rate (cordon-bench connrate, SECONDS long) and bulk
# throughput (4 GiB) once without and once with `cordon-agent watch` running. Odd rounds run
# without-first, even rounds with-first, to cancel thermal/frequency drift. All traffic is
# on 127.0.0.1. The agent loads eBPF programs, so run this as root.
# Output: a markdown table on stdout (per round and median), then the agent's last
# "type":"stats" line per round verbatim.
set -euo pipefail

rounds=${1:-3}
duration=${2:-5}   # not "SECONDS": that is a bash builtin variable
[[ $rounds =~ ^[1-9][0-9]*$ && $duration =~ ^[1-9][0-9]*$ ]] || {
    echo "usage: $0 [ROUNDS] [SECONDS]" >&2
    exit 2
}

root=$(cd "$(dirname "$0")/../.." && pwd)
AGENT=${AGENT:-$root/target/release/cordon-agent}
BENCH=${BENCH:-$root/target/release/cordon-bench}
for bin in "$AGENT" "$BENCH"; do
    [[ -x $bin ]] || { echo "$0: not executable: $bin" >&2; exit 1; }
done
command -v python3 >/dev/null || { echo "$0: python3 is required" >&2; exit 1; }

tmp=$(mktemp -d -t cordon-bench.XXXXXX)
AGENT_PID=""

# Stop the agent (if running) with SIGINT, escalating to SIGKILL after 10 s.
stop_agent() {
    [[ -n $AGENT_PID ]] || return 0
    local pid=$AGENT_PID
    AGENT_PID=""
    kill -INT "$pid" 2>/dev/null || true
    for _ in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

# Each measurement runs in a network namespace of its own (loopback only, no routes), so
# the TIME_WAIT sockets one run leaves behind cannot slow the next one down.
NETNS=""
drop_netns() {
    [[ -n $NETNS ]] && ip netns del "$NETNS" 2>/dev/null || true
    NETNS=""
}
fresh_netns() {
    drop_netns
    NETNS="cordon-bench-$$-$1"
    ip netns add "$NETNS"
    ip -n "$NETNS" link set lo up
}

cleanup() {
    local rc=$?
    stop_agent
    drop_netns
    if [[ ${KEEP:-0} == 1 || $rc -ne 0 ]]; then
        echo "$0: raw results kept in $tmp" >&2
    else
        rm -rf "$tmp"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# measure ROUND LABEL: run both benchmarks, saving their JSON lines.
measure() {
    echo "round $1: measuring $2 agent" >&2
    # Throughput first: the connection-rate run leaves the agent busy for a moment with
    # the ends of ~100k flows, which would otherwise be charged to the throughput run.
    fresh_netns "$1-$2-tput"
    ip netns exec "$NETNS" "$BENCH" throughput --bytes $((4 << 30)) > "$tmp/$1-$2-tput.json"
    fresh_netns "$1-$2-conn"
    [[ -n $AGENT_PID ]] && "$BENCH" pid-stats "$AGENT_PID" > "$tmp/$1-agent-before-conn.json"
    ip netns exec "$NETNS" "$BENCH" connrate --seconds "$duration" > "$tmp/$1-$2-conn.json"
    [[ -n $AGENT_PID ]] && "$BENCH" pid-stats "$AGENT_PID" > "$tmp/$1-agent-after-conn.json"
    drop_netns
    # Let the agent (if any) settle before the next measurement starts.
    sleep 3
}

# with_agent ROUND: start the agent, wait for attach, measure, record its usage, stop it.
with_agent() {
    local round=$1 err="$tmp/agent-$1.err"
    # Non-interactive bash starts background jobs with SIGINT ignored; the agent installs its
    # own SIGINT handler (tokio::signal), which overrides that, so stop_agent's SIGINT works.
    "$AGENT" watch --json --stats-on-exit > "$tmp/agent-$round.jsonl" 2> "$err" &
    AGENT_PID=$!
    for i in $(seq 301); do
        grep -q 'capture started' "$err" && break
        if ! kill -0 "$AGENT_PID" 2>/dev/null || (( i == 301 )); then
            echo "$0: agent exited or did not attach within 30 s; its stderr:" >&2
            cat "$err" >&2
            exit 1
        fi
        sleep 0.1
    done
    measure "$round" with
    "$BENCH" pid-stats "$AGENT_PID" > "$tmp/$round-pidstats.json"
    stop_agent
}

for round in $(seq "$rounds"); do
    if (( round % 2 == 1 )); then
        measure "$round" without
        with_agent "$round"
    else
        with_agent "$round"
        measure "$round" without
    fi
done

python3 - "$tmp" "$rounds" <<'EOF'
import json, statistics, sys

tmp, rounds = sys.argv[1], int(sys.argv[2])

def load(name):
    with open(f"{tmp}/{name}") as f:
        return json.loads(f.readline())

def agent_output(r):
    """(distinct flows reported, last stats line verbatim) from the agent's JSON output."""
    starts, stats = 0, None
    with open(f"{tmp}/agent-{r}.jsonl", errors="replace") as f:
        for line in f:
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if not isinstance(obj, dict):
                continue
            if obj.get("type") == "flow" and obj.get("event") == "start":
                starts += 1
            elif obj.get("type") == "stats":
                stats = line.strip()
    return starts, stats

rows, stats_lines = [], []
for r in range(1, rounds + 1):
    cw, cg = load(f"{r}-without-conn.json"), load(f"{r}-with-conn.json")
    tw, tg = load(f"{r}-without-tput.json"), load(f"{r}-with-tput.json")
    ps = load(f"{r}-pidstats.json")
    # CPU per connection: the benchmark's own, plus (with) the agent's during the run.
    agent_cpu = (load(f"{r}-agent-after-conn.json")["cpu_seconds"]
                 - load(f"{r}-agent-before-conn.json")["cpu_seconds"])
    cpu_without = cw["cpu_us_per_conn"]
    cpu_with = cg["cpu_us_per_conn"] + agent_cpu * 1e6 / max(cg["connections"], 1)
    starts, stats = agent_output(r)
    stats_lines.append(stats)
    rss = ps["peak_rss_kib"]
    rows.append([
        cw["rate_per_s"], cg["rate_per_s"], cg["rate_per_s"] / cw["rate_per_s"],
        tw["mib_per_s"], tg["mib_per_s"], tg["mib_per_s"] / tw["mib_per_s"],
        ps["cpu_seconds"], rss / 1024 if rss is not None else float("nan"), starts,
        cpu_without, cpu_with, cpu_without / cpu_with,
    ])

fmt = ["{:.0f}", "{:.0f}", "{:.3f}", "{:.0f}", "{:.0f}", "{:.3f}", "{:.2f}", "{:.1f}", "{:.0f}",
       "{:.1f}", "{:.1f}", "{:.3f}"]
def cells(values):
    return " | ".join(f.format(v) for f, v in zip(fmt, values))

print("| round | conn/s without | conn/s with | ratio | MiB/s without | MiB/s with | ratio "
      "| agent CPU s | agent peak RSS MiB | flow starts "
      "| CPU µs/conn without | CPU µs/conn with (+agent) | CPU ratio |")
print("|---" * 13 + "|")
for r, row in enumerate(rows, 1):
    print(f"| {r} | {cells(row)} |")
medians = [statistics.median(col) for col in zip(*rows)]
print(f"| **median** | {cells(medians)} |")
print()
print('Agent\'s last `"type":"stats"` line per round:')
print()
for r, line in enumerate(stats_lines, 1):
    print(f"- round {r}: `{line if line is not None else '(none)'}`")
EOF
