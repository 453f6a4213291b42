#!/usr/bin/env bash
# Runs the benchmarks and prints medians and ratios.
#   scripts/bench.sh            memory hit (macro vs Cache::get vs moka) and store hits
#                               (STORE_BENCH_ROUNDS=30 paired rounds per ratio)
#                               and in-memory hits vs the `cached` crate (MEMORY_BENCH_ROUNDS=30)
#   scripts/bench.sh memory     only the in-memory benchmarks (with `freshness`: fail-safe's
#                               cost on a hit, a hot key across its expiry with/without refresh;
#                               `compression`: lz4 and bincode on a ~64 KiB document)
#   scripts/bench.sh hybrid     only the comparisons with a target against what a user would
#                               otherwise pick: memory_vs_cached, and store_hit's hybrid ones
#                               (local tier over Redis; `local = false` vs raw and vs `cached`)
# Store benchmarks start their own redis-server and memcached on free loopback
# ports; redis-benchmark runs against a redis-server this script starts.
# Ends with every ratio that has a target, and whether it is met.
set -euo pipefail
cd "$(dirname "$0")/.."
what="${1:-all}"
target_dir="${CARGO_TARGET_DIR:-target}"
results=$(mktemp)
trap 'rm -f "$results"' EXIT

if [ "$what" != hybrid ]; then
cargo bench -p cacheside --bench memory_hit -- --noplot >&2
CRITERION="$target_dir/criterion" python3 - <<'PY'
import json, os, pathlib, sys
def median(path):
    est = json.loads((pathlib.Path(os.environ["CRITERION"]) / path / "new" / "estimates.json").read_text())
    return est["median"]["point_estimate"]  # ns per operation
m = {n: median(f"memory_hit/{n}") for n in ("macro_hit", "cache_get", "moka_get", "fingerprint")}
print("in-memory hit (~100-byte struct), median per call:")
for n, ns in m.items():
    print(f"  {n:<10} {ns:8.1f} ns")
print(f"  macro_hit / cache_get = {m['macro_hit'] / m['cache_get']:.3f}   (target < 1.10)")
print(f"  cache_get / moka_get  = {m['cache_get'] / m['moka_get']:.3f}")
print(f"  macro_hit < 1 us: {'yes' if m['macro_hit'] < 1000 else 'NO'}")
print(f"  fingerprint lookup per hit = {m['fingerprint']:.1f} ns ({m['fingerprint'] / m['macro_hit'] * 100:.1f} % of a macro hit)")
PY
fi

# Unpinned: its scaling figure needs both cores.
cargo bench -p cacheside --bench memory_vs_cached | tee -a "$results"

if [ "$what" != hybrid ]; then
  # Fail-safe's cost on a hit; a hot key across its expiry with and without early refresh.
  cargo bench -p cacheside --bench freshness | tee -a "$results"
  # lz4 compression and the bincode codec on a ~64 KiB document: bytes stored, time per encode/decode.
  cargo bench -p cacheside --features bincode,compression --bench compression | tee -a "$results"
fi

if [ "$what" != memory ]; then
  # Pinned to one core, servers included (they inherit the affinity): the
  # ratio is then the CPU cost per hit, not how two cores happen to share the
  # work. The bench interleaves the two sides of each ratio round by round.
  pin=()
  command -v taskset >/dev/null 2>&1 && pin=(taskset -c 0)
  if [ "$what" = hybrid ]; then
    STORE_BENCH_ONLY="${STORE_BENCH_ONLY:-hybrid}" \
      "${pin[@]}" cargo bench -p cacheside --features testing,redis,memcached --bench store_hit | tee -a "$results"
  else
    "${pin[@]}" cargo bench -p cacheside --features testing,redis,memcached --bench store_hit | tee -a "$results"
  fi
fi

if [ "$what" = all ] && command -v redis-benchmark >/dev/null; then
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --daemonize no >/dev/null 2>&1 &
  pid=$!
  trap 'kill $pid 2>/dev/null || true; rm -f "$results"' EXIT
  for _ in $(seq 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
  redis-cli -p "$port" set raw:widget:7 "$(head -c 100 /dev/zero | tr '\0' x)" >/dev/null
  echo "redis-benchmark GET (100-byte value), same machine:"
  for c in 1 64; do
    printf '  -c %-2s ' "$c"
    redis-benchmark -p "$port" -c "$c" -n 100000 -q -t get 2>/dev/null | tr '\r' '\n' | grep -E '^GET' | tail -1
  done
fi

echo "targets:"
grep '^target:' "$results" | sed 's/^target: /  /' || echo "  (none measured)"
