#!/usr/bin/env bash
# Runs the benchmarks and prints medians and ratios.
#   scripts/bench.sh            memory hit (macro vs Cache::get vs moka) and store hits
#   scripts/bench.sh memory     only the in-memory benchmark
# Store benchmarks start their own redis-server and memcached on free loopback
# ports; redis-benchmark runs against a redis-server this script starts.
set -euo pipefail
cd "$(dirname "$0")/.."
what="${1:-all}"

cargo bench --bench memory_hit -- --noplot >&2
if [ "$what" = all ]; then
  # Pinned to one core, servers included (they inherit the affinity): on 2
  # shared cores the 64-task figures swung 0.5-1.0 between identical runs;
  # pinned, the ratio is the CPU cost per hit and repeats within ~2%.
  pin=()
  command -v taskset >/dev/null 2>&1 && pin=(taskset -c 0)
  "${pin[@]}" cargo bench --features testing,redis,memcached --bench store_hit -- --noplot >&2
fi

python3 - "$what" <<'PY'
import json, pathlib, sys
def median(path):
    est = json.loads((pathlib.Path("target/criterion") / path / "new" / "estimates.json").read_text())
    return est["median"]["point_estimate"]  # ns per operation
m = {n: median(f"memory_hit/{n}") for n in ("macro_hit", "cache_get", "moka_get")}
print("in-memory hit (~100-byte struct), median per call:")
for n, ns in m.items():
    print(f"  {n:<10} {ns:8.1f} ns")
print(f"  macro_hit / cache_get = {m['macro_hit'] / m['cache_get']:.3f}   (target < 1.10)")
print(f"  cache_get / moka_get  = {m['cache_get'] / m['moka_get']:.3f}")
print(f"  macro_hit < 1 us: {'yes' if m['macro_hit'] < 1000 else 'NO'}")
if sys.argv[1] == "all":
    print("store hits, throughput (ops/s) = 1e9 / median ns per op:")
    for tasks in (1, 64):
        for store in ("redis", "memcached"):
            mac = median(f"store_hit_{tasks}/{store}_macro")
            raw = median(f"store_hit_{tasks}/{store}_raw")
            print(f"  {store:<9} {tasks:>2} tasks: macro {1e9/mac:9.0f}/s  raw {1e9/raw:9.0f}/s  "
                  f"macro/raw = {raw/mac:.3f}   (target >= 0.90)")
PY

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
