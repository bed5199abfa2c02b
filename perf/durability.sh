#!/usr/bin/env bash
# Durable vs non-durable W-e2e, alternating, in one session (issue "durable log", docs/FOUNDATIONS.md §7).
#
#   perf/durability.sh [RUNS] [SECONDS]        (defaults: 3 runs of each, 10 s per phase)
#
# Each pair starts a relay with durability on (the default: group commit + fdatasync), then one with
# --danger-log-skip-fdatasync (the same writes, never made durable), each on a fresh temporary storage directory,
# and runs `tessera perf e2e --relay … --relay-pid …` against it. Reports land in perf/reports/ as JSON and
# markdown; the last lines print the ratio per pair. Needs `cargo build --release` first.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
seconds=${2:-10}
bin=target/release/tessera
out=perf/reports/durability-$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$out"
[ -x "$bin" ] || { echo "build first: cargo build --release" >&2; exit 2; }

run_one() { # $1 = label, $2.. = extra relay flags
    local label=$1; shift
    local dir port pid
    dir=$(mktemp -d)
    port=$((20000 + RANDOM % 20000))
    "$bin" relay --port "$port" --storage "$dir" "$@" >"$out/$label.relay.log" 2>&1 &
    pid=$!
    for _ in $(seq 50); do grep -q "listening" "$out/$label.relay.log" 2>/dev/null && break; sleep 0.1; done
    "$bin" perf e2e --relay "ws://127.0.0.1:$port" --relay-pid "$pid" --seconds "$seconds" --json \
        >"$out/$label.json" 2>"$out/$label.progress"
    kill -TERM "$pid"; wait "$pid" || true
    rm -rf "$dir"
    python3 - "$out/$label.json" "$label" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
sat, half = r["phases"][0], r["phases"][1]
def q(ph, k, p):
    l = ph.get(k)
    return "n/a" if not l else f'{l[p]:.0f}'
print(f'{sys.argv[2]:>16}: saturated {sat["routed_per_s"]:>9,.0f} routed/s; half {half["routed_per_s"]:>8,.0f}/s: '
      f'deliver p50 {q(half,"latency_us","p50")} p99 {q(half,"latency_us","p99")} µs, '
      f'ACK p50 {q(half,"ack_latency_us","p50")} p99 {q(half,"ack_latency_us","p99")} µs; '
      f'other cores {half.get("other_cores") or 0:.2f}')
PY
}

for i in $(seq "$runs"); do
    run_one "durable-$i"
    run_one "nodurable-$i" --danger-log-skip-fdatasync
done
python3 - "$out" "$runs" <<'PY'
import json, sys
out, runs = sys.argv[1], int(sys.argv[2])
ratios = []
for i in range(1, runs + 1):
    d = json.load(open(f"{out}/durable-{i}.json"))["phases"][0]["routed_per_s"]
    n = json.load(open(f"{out}/nodurable-{i}.json"))["phases"][0]["routed_per_s"]
    ratios.append(d / n)
    print(f"pair {i}: durable / non-durable = {d:,.0f} / {n:,.0f} = {d / n:.2f}")
ratios.sort()
print(f"median ratio {ratios[len(ratios) // 2]:.2f}; reports in {out}")
PY
