#!/usr/bin/env bash
# The whole test suite: format, lints, unit, integration (real redis-server,
# Redis Cluster and memcached, started by the tests on free loopback ports),
# doc tests and trybuild UI tests. Installs the server binaries when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || missing+=(redis-tools)
command -v memcached >/dev/null 2>&1 || missing+=(memcached)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)   # the rediss:// test makes its own CA
if [ ${#missing[@]} -gt 0 ]; then
  echo "==> installing ${missing[*]} (the integration tests start their own servers)"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
fi

echo "==> cargo fmt --check"
cargo fmt --all -- --check

echo "==> cargo clippy (all targets, all features, -D warnings)"
cargo clippy --workspace --all-targets --all-features -- -D warnings

echo "==> cargo doc (all features, warnings denied: broken links fail)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --all-features --no-deps --quiet

echo "==> cargo test (workspace, all features: unit, integration, doc, UI)"
cargo test --workspace --all-features
