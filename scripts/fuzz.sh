#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz/fuzz_*.c) with clang and runs each
# for a short time, starting from the seed corpus in tests/fuzz/corpus/<name>.
# Usage: scripts/fuzz.sh BUILD_DIR SECONDS_PER_TARGET
set -euo pipefail
build=${1:-build-fuzz}; secs=${2:-20}
if ! command -v clang >/dev/null; then
  echo "fuzz: clang not found, skipping fuzz run" >&2; exit 0
fi
CC=clang cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Debug -DWP_FUZZ=ON >/dev/null
cmake --build "$build" -j "$(nproc)" >/dev/null
n=0
for f in "$build"/fuzz_*; do
  [ -x "$f" ] || continue
  name=$(basename "$f")
  seeds=tests/fuzz/corpus/$name
  work=$(mktemp -d)
  [ -d "$seeds" ] && cp -r "$seeds"/. "$work"/
  echo "fuzz: $name for ${secs}s"
  "$f" -max_total_time="$secs" -max_len=65536 -print_final_stats=0 "$work" >"$build/$name.log" 2>&1 \
    || { echo "fuzz: $name FAILED"; tail -n 40 "$build/$name.log"; rm -rf "$work"; exit 1; }
  rm -rf "$work"; n=$((n+1))
done
echo "fuzz: $n targets ran clean"
