#!/usr/bin/env bash
# Load test of the widgets example with wrk (Debian package, installed if
# missing): a cached GET (#[cache], in-memory store) vs the same route with
# caching off (CACHE_ENABLED=false) vs a handler returning a constant.
# Everything runs on 127.0.0.1; each run is bounded by DURATION.
#   scripts/load.sh            # 10 s per route, 64 connections, 2 threads
#   DURATION=5s CONNECTIONS=32 scripts/load.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${DURATION:-10s}"
CONNECTIONS="${CONNECTIONS:-64}"

if ! command -v wrk >/dev/null 2>&1; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq wrk
fi

cargo build --release -p widgets-example --example widgets >&2
bin=target/release/examples/widgets
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

start() { # start <port> <CACHE_ENABLED>
  WIDGETS_DB=":memory:" WIDGETS_ADDR="127.0.0.1:$1" CACHE_ENABLED="$2" CACHE_BACKEND=memory \
    RATE_LIMIT_PER_MINUTE=1000000000 RUST_LOG=warn "$bin" >/dev/null 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do curl -fsS "http://127.0.0.1:$1/health" >/dev/null 2>&1 && return; sleep 0.1; done
  echo "the widgets example did not start on port $1" >&2; exit 1
}

cached_port=$(free_port); start "$cached_port" true
uncached_port=$(free_port); start "$uncached_port" false

rps() { # rps <url>
  curl -fsS "$1" >/dev/null   # warm (fills the cache for the cached route)
  wrk -t2 -c"$CONNECTIONS" -d"$DURATION" "$1" | awk '/Requests\/sec/ {print $2}'
}

cached=$(rps "http://127.0.0.1:$cached_port/widgets/1")
uncached=$(rps "http://127.0.0.1:$uncached_port/widgets/1")
constant=$(rps "http://127.0.0.1:$cached_port/health")

python3 - "$cached" "$uncached" "$constant" "$DURATION" "$CONNECTIONS" <<'PY'
import sys
cached, uncached, constant = map(float, sys.argv[1:4])
print(f"wrk -t2 -c{sys.argv[5]} -d{sys.argv[4]}, widgets example (release), in-memory store:")
print(f"  GET /widgets/1, cached (#[cache])      {cached:10.0f} req/s")
print(f"  GET /widgets/1, CACHE_ENABLED=false    {uncached:10.0f} req/s")
print(f"  GET /health, constant handler          {constant:10.0f} req/s")
print(f"  cached / constant = {cached/constant:.3f}   (target >= 0.80)")
print(f"  cached / uncached = {cached/uncached:.2f}")
PY
