#!/usr/bin/env bash
# Runs the benchmarks and prints medians and ratios.
#   scripts/bench.sh            memory hit (macro vs Cache::get vs moka) and store hits
#                               (STORE_BENCH_ROUNDS=30 paired rounds per ratio)
#   scripts/bench.sh memory     only the in-memory benchmark
# Store benchmarks start their own redis-server and memcached on free loopback
# ports; redis-benchmark runs against a redis-server this script starts.
set -euo pipefail
cd "$(dirname "$0")/.."
what="${1:-all}"

cargo bench --bench memory_hit -- --noplot >&2
python3 - <<'PY'
import json, pathlib, sys
def median(path):
    est = json.loads((pathlib.Path("target/criterion") / path / "new" / "estimates.json").read_text())
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

if [ "$what" = all ]; then
  # Pinned to one core, servers included (they inherit the affinity): the
  # ratio is then the CPU cost per hit, not how two cores happen to share the
  # work. The bench interleaves the two sides of each ratio round by round.
  pin=()
  command -v taskset >/dev/null 2>&1 && pin=(taskset -c 0)
  "${pin[@]}" cargo bench --features testing,redis,memcached --bench store_hit
fi

if [ "$what" = all ] && command -v redis-benchmark >/dev/null; then
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --daemonize no >/dev/null 2>&1 &
  pid=$!
  trap 'kill $pid 2>/dev/null || true' EXIT
  for _ in $(seq 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
  redis-cli -p "$port" set raw:widget:7 "$(head -c 100 /dev/zero | tr '\0' x)" >/dev/null
  echo "redis-benchmark GET (100-byte value), same machine:"
  for c in 1 64; do
    printf '  -c %-2s ' "$c"
    redis-benchmark -p "$port" -c "$c" -n 100000 -q -t get 2>/dev/null | tr '\r' '\n' | grep -E '^GET' | tail -1
  done
fi
