#!/usr/bin/env bash
# test_cli_s3.sh — the CLI and the demo, unchanged, on object storage: the
# config points at the local Ceph RGW (CTest starts it for tests named
# *_s3*; $WP_TEST_S3_ENV is its env file) through WP_<SECTION>__<KEY>
# environment overrides, and the commands are those of test_cli.sh and
# scripts/demo.sh. Also `wp compact`: segments become sealed, data reads
# back and verifies. Deletes what it wrote.
#   bash tests/cli/test_cli_s3.sh path/to/wp
set -u
WP=${1:?usage: test_cli_s3.sh path/to/wp}
case $WP in /*) ;; *) WP=$PWD/$WP ;; esac
here=$(cd "$(dirname "$0")" && pwd)
envf=${WP_TEST_S3_ENV:?WP_TEST_S3_ENV names the S3 server env file}
# shellcheck disable=SC1090
. "$envf"
base=${WP_TEST_TMP:-${TMPDIR:-/tmp}}
mkdir -p "$base"
dir=$(mktemp -d "$base/clis3.XXXXXX") || exit 1
pfx="clis3-$$-$(date +%s)"
put=$(dirname "$WP")/wp-s3put
cleanup() {
  "$put" delete "$envf" "$pfx/" >/dev/null 2>&1
  rm -rf "$dir"
}
trap cleanup EXIT

export WP_STORAGE__TYPE=s3 WP_STORAGE__S3__ENDPOINT="$WP_S3_ENDPOINT" \
  WP_STORAGE__S3__BUCKET="$WP_S3_BUCKET" WP_STORAGE__S3__ACCESS_KEY="$WP_S3_ACCESS_KEY" \
  WP_STORAGE__S3__SECRET_KEY="$WP_S3_SECRET_KEY" WP_STORAGE__S3__REGION="${WP_S3_REGION:-us-east-1}"

passed=0 failed=0 rc=0 out='' err=''
run() {
  "$@" >"$dir/out" 2>"$dir/err" </dev/null
  rc=$?
  out=$(cat "$dir/out") err=$(cat "$dir/err")
}
expect() {
  local desc=$1
  shift
  if [ "$@" ]; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
    echo "FAIL: $desc (rc=$rc)"
    echo "  stdout: $(printf '%s' "$out" | tail -c 600)"
    echo "  stderr: $(printf '%s' "$err" | tail -c 600)"
  fi
}

# ---- the demo, unchanged (its own temporary storage.root and SQLite) --------
export WP_STORAGE__S3__PREFIX="$pfx/demo"
run bash "$here/../../scripts/demo.sh" "$WP"
expect "demo on S3: exit 0" "$rc" -eq 0
expect "demo on S3: verify ok" -n "$(printf '%s' "$out" | grep -E '^ok: [1-9][0-9]* entries checked$')"
segs_before=$(printf '%s\n' "$out" | grep -E '^segments: [0-9]+$' | head -1 | cut -d' ' -f2)
segs_after=$(printf '%s\n' "$out" | grep -E '^segments: [0-9]+$' | tail -1 | cut -d' ' -f2)
expect "demo on S3: GC deleted the truncated segments ($segs_before -> $segs_after)" \
  "${segs_after:-99}" -lt "${segs_before:-0}"
expect "demo on S3: background compaction sealed segments" \
  -n "$(printf '%s' "$out" | grep -E '^[0-9]+ +sealed ')"

# ---- CLI commands --------------------------------------------------------------
export WP_STORAGE__S3__PREFIX="$pfx/cli"
wp() { "$WP" -o storage.root="$dir/root" -o segment.max_bytes=256KiB "$@"; }
run wp log create a
expect "log create" "$rc" -eq 0
seq 1 3000 | sed 's/^/line-/' >"$dir/lines"
wp append a <"$dir/lines" >"$dir/ids" 2>"$dir/err"
expect "append 3000 lines" "$(wc -l <"$dir/ids")" -eq 3000
run wp bench --log a --entries 4000 --size 1000 --window 256
expect "bench" "$rc" -eq 0
run wp segments a
nseg=$(printf '%s\n' "$out" | sed 1d | wc -l)
ncomp=$(printf '%s\n' "$out" | sed 1d | grep -c ' completed ')
expect "segments: several completed" "$ncomp" -ge 3
expect "segments: every one in object storage" \
  "$(printf '%s\n' "$out" | sed 1d | grep -vc ' object storage$')" -eq 0
run wp compact a
expect "compact: exit 0" "$rc" -eq 0
expect "compact: reports the segments sealed" -n "$(printf '%s' "$out" | grep -E "^ok: $ncomp segment\(s\) sealed, [0-9]+ PUT\(s\)")"
run wp segments a
expect "segments: every completed one now sealed" "$(printf '%s\n' "$out" | sed 1d | grep -c ' sealed ')" -eq "$ncomp"
expect "segments: same count" "$(printf '%s\n' "$out" | sed 1d | wc -l)" -eq "$nseg"
run wp read a --count 3000
expect "read after compaction: exit 0" "$rc" -eq 0
expect "read after compaction: every line in order" "$(printf '%s\n' "$out" | cut -f2 | cmp - "$dir/lines" >/dev/null && echo same)" = same
run wp verify a
expect "verify after compaction" -n "$(printf '%s' "$out" | grep -E '^ok: 7000 entries checked$')"
run wp compact a
expect "compact again: nothing to do" -n "$(printf '%s' "$out" | grep -E '^ok: 0 segment\(s\) sealed')"
run wp log delete a
expect "log delete" "$rc" -eq 0
left=$("$put" count "$envf" "$pfx/cli/")
expect "log delete removed every object" "$left" -eq 0

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
