#!/usr/bin/env bash
# Two builds of the relay, back to back and alternating, on W-route, W-sub and W-e2e (issue 11: "behaviour
# unchanged", measured before and after a refactor; docs/FOUNDATIONS.md §7 defines the workloads).
#
#   perf/compare-builds.sh BIN_A BIN_B [PAIRS] [SECONDS]     (defaults: 3 pairs, 10 s per W-e2e phase)
#
# BIN_A and BIN_B are `tessera` release binaries (e.g. a `git worktree` of the old commit built with
# `cargo build --release`, and this checkout's target/release/tessera). Each pair runs A then B: W-route 5 s,
# W-sub 3 s, then W-e2e (each binary starts its own relay on a fresh temporary directory). JSON reports land
# in perf/reports/compare-<UTC time>/; the last lines print every figure per run and the B/A medians.
set -euo pipefail
cd "$(dirname "$0")/.."
a=${1:?usage: perf/compare-builds.sh BIN_A BIN_B [PAIRS] [SECONDS]}
b=${2:?usage: perf/compare-builds.sh BIN_A BIN_B [PAIRS] [SECONDS]}
pairs=${3:-3}
seconds=${4:-10}
for bin in "$a" "$b"; do [ -x "$bin" ] || { echo "not an executable: $bin" >&2; exit 2; }; done
out=perf/reports/compare-$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$out"
echo "A = $a ($("$a" --version 2>/dev/null || echo unknown))" | tee "$out/builds.txt"
echo "B = $b ($("$b" --version 2>/dev/null || echo unknown))" | tee -a "$out/builds.txt"

for i in $(seq "$pairs"); do
    for label in A B; do
        bin=$a; [ "$label" = B ] && bin=$b
        echo "pair $i, build $label" >&2
        "$bin" perf route --seconds 5 --json >"$out/route-$label-$i.json"
        "$bin" perf subscribe --seconds 3 --json >"$out/sub-$label-$i.json"
        "$bin" perf e2e --seconds "$seconds" --json >"$out/e2e-$label-$i.json" 2>"$out/e2e-$label-$i.progress" \
            || echo "W-e2e run $label-$i was not clean (see $out/e2e-$label-$i.json)" >&2
    done
done

python3 - "$out" "$pairs" <<'PY'
import json, statistics, sys
out, pairs = sys.argv[1], int(sys.argv[2])
def load(kind, label, i):
    return json.load(open(f"{out}/{kind}-{label}-{i}.json"))
rows = {}
for label in "AB":
    for i in range(1, pairs + 1):
        route, sub, e2e = load("route", label, i), load("sub", label, i), load("e2e", label, i)
        sat, half = e2e["phases"][0], e2e["phases"][1]
        lat = half.get("latency_us") or {}
        ack = half.get("ack_latency_us") or {}
        row = {
            "W-route proofs/s": route["ops_per_s"],
            "W-sub subscribes/s": sub["ops_per_s"],
            "W-e2e routed/s (saturated)": sat["routed_per_s"],
            "W-e2e deliver p50 µs (half rate)": lat.get("p50", float("nan")),
            "W-e2e deliver p99 µs (half rate)": lat.get("p99", float("nan")),
            "W-e2e ACK p99 µs (half rate)": ack.get("p99", float("nan")),
        }
        print(f"{label}{i}: " + "; ".join(f"{k} {v:,.0f}" for k, v in row.items()))
        for k, v in row.items():
            rows.setdefault(k, {}).setdefault(label, []).append(v)
print()
for k, by in rows.items():
    ma, mb = statistics.median(by["A"]), statistics.median(by["B"])
    print(f"{k:>34}: A median {ma:>12,.0f}  B median {mb:>12,.0f}  B/A {mb / ma:.3f}")
PY
