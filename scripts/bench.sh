#!/usr/bin/env bash
# Runs the in-memory hit benchmark and prints medians and ratios.
# Usage: scripts/bench.sh [extra criterion args]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench --bench memory_hit -- --noplot "$@" >&2
python3 - <<'PY'
import json, pathlib
base = pathlib.Path("target/criterion/memory_hit")
med = {}
for name in ("macro_hit", "cache_get", "moka_get"):
    est = json.loads((base / name / "new" / "estimates.json").read_text())
    med[name] = est["median"]["point_estimate"]  # nanoseconds
for name, ns in med.items():
    print(f"{name:<10} median {ns:8.1f} ns")
print(f"macro_hit / cache_get = {med['macro_hit'] / med['cache_get']:.3f}  (target < 1.10)")
print(f"cache_get / moka_get  = {med['cache_get'] / med['moka_get']:.3f}")
print(f"macro_hit median < 1 us: {'yes' if med['macro_hit'] < 1000 else 'NO'}")
PY
