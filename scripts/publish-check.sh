#!/usr/bin/env bash
# Packages every published crate (cacheside-macros, cacheside-core,
# cacheside-backends, cacheside) and builds each from its package, in
# dependency order, against the others' packaged sources: what
# `cargo publish` would upload, without uploading. The examples are
# `publish = false` and left out.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo publish --dry-run --workspace --allow-dirty \
  --exclude widgets-example --exclude quickstart-example "$@"
