#!/usr/bin/env bash
# Runs the fuzz targets in fuzz/ (cargo-fuzz, libFuzzer), one at a time, and
# prints per target: executions, seconds, crashes.
#
#   scripts/fuzz.sh [seconds-per-target] [target…]    # default: 600 s, every target
#
# A crash input is written to fuzz/artifacts/<target>/ and the run of that
# target stops there; reproduce it with
#   cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run -s none <target> artifacts/<target>/<file>
# then keep it as a regression test in the owning crate.
# The corpus grows in fuzz/corpus/<target>/ (git-ignored) and is reused by the
# next run; fuzz/seeds/<target>/ (in git) holds hand-written starting inputs.
# Logs: fuzz/logs/<target>.log. FUZZ_SANITIZER=address builds with ASan
# (slower; the code under test is safe Rust, so `none` is the default).
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

secs="${1:-600}"
[ $# -gt 0 ] && shift
case "$secs" in
  '' | *[!0-9]*) echo "seconds-per-target must be a whole number, got '$secs'" >&2; exit 2 ;;
esac

if ! command -v cargo-fuzz >/dev/null 2>&1; then
  echo "==> installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi
# libfuzzer-sys compiles libFuzzer itself (C++).
if ! command -v c++ >/dev/null 2>&1 && ! command -v g++ >/dev/null 2>&1; then
  echo "libFuzzer needs a C++ compiler: apt-get install -y g++" >&2
  exit 1
fi

# cargo-fuzz passes nightly-only compiler flags (-Zsanitizer=…,
# -Cpasses=sancov-module, -Zfuzzing cfg handling). Only a stable toolchain is
# installed here, and RUSTC_BOOTSTRAP=1 lets stable rustc accept them; it
# affects only the fuzz builds of this script, never the workspace's own.
export RUSTC_BOOTSTRAP=1
sanitizer="${FUZZ_SANITIZER:-none}"

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo fuzz list)
fi

mkdir -p logs
summary=()
status=0
for t in "${targets[@]}"; do
  echo "==> $t: build (sanitizer: $sanitizer)"
  cargo fuzz build -s "$sanitizer" "$t"
  mkdir -p "corpus/$t" "artifacts/$t"
  before=$(find "artifacts/$t" -type f | wc -l)
  extra=()
  case "$t" in
    # Long reply lines (past the parser's 8 KiB line limit) must be reachable.
    memcached_meta) extra+=(-max_len=20000) ;;
  esac
  # Hand-written seeds (in git) next to the grown corpus (not in git).
  dirs=("corpus/$t")
  [ -d "seeds/$t" ] && dirs+=("seeds/$t")
  echo "==> $t: run for ${secs}s"
  start=$(date +%s)
  rc=0
  # -jobs=1 runs the fuzzer in a child whose output goes to fuzz-0.log.
  rm -f fuzz-0.log
  cargo fuzz run -s "$sanitizer" "$t" "${dirs[@]}" -- \
    -max_total_time="$secs" -jobs=1 -workers=1 -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 "${extra[@]}" >"logs/$t.log" 2>&1 || rc=$?
  [ -f fuzz-0.log ] && cat fuzz-0.log >>"logs/$t.log" && rm -f fuzz-0.log
  elapsed=$(( $(date +%s) - start ))
  execs=$(grep -o 'stat::number_of_executed_units: [0-9]*' "logs/$t.log" | tail -1 | grep -o '[0-9]*$' || true)
  crashes=$(( $(find "artifacts/$t" -type f | wc -l) - before ))
  line=$(printf '%-16s execs=%-12s seconds=%-6s crashes=%s' "$t" "${execs:-?}" "$elapsed" "$crashes")
  echo "$line"
  summary+=("$line")
  if [ "$rc" -ne 0 ] || [ "$crashes" -ne 0 ]; then
    status=1
    echo "    (exit $rc; see fuzz/logs/$t.log and fuzz/artifacts/$t/)"
  fi
done

echo "==> summary"
printf '%s\n' "${summary[@]}"
exit "$status"
