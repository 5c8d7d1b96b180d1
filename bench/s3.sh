#!/usr/bin/env bash
# s3.sh — Woodpecker on object storage against the raw limit of the same S3
# server, in one run (make bench-s3):
#   raw: THREADS threads of conditional 2 MiB PUTs (build/wp-s3put), the
#        concurrency Woodpecker uses (flush.max_threads);
#   wp:  `wp bench` async appends of 1 MiB and of 4 KiB entries with
#        storage.type s3 (MemoryBuffer: flush.max_bytes 2 MiB,
#        flush.max_interval_ms 200 by default) and a tailing reader;
#   low load (issue 14): `wp bench --mode sync` of 1 KiB entries, one at a
#        time, flush.max_interval_ms 0 (an ack is one PUT), next to one
#        1 KiB conditional PUT at a time (wp-s3put with 1 thread, and curl
#        as a check on the S3 client itself), interleaved run by run;
# and prints MiB/s, ack p50/p99, the ratio to raw and PUTs per GB.
# The server is a local Ceph RGW started by scripts/rgw.sh (or the one
# described by $WP_S3_ENV). Usage: bench/s3.sh path/to/wp
# Knobs: THREADS (16), SECONDS_RAW (5), REPS (3), LOW_ENTRIES (1000),
# LOW_SECONDS (3: raw single PUTs per run), LOW_CURL (300 PUTs; 0 = no
# curl row), CASES ("low tput": the low-load case, the throughput cases).
set -euo pipefail
WP=${1:-build/wp}
WP=$(cd "$(dirname "$WP")" && pwd)/$(basename "$WP")
PUT=$(dirname "$WP")/wp-s3put
here=$(cd "$(dirname "$0")" && pwd)
THREADS=${THREADS:-16}
SECONDS_RAW=${SECONDS_RAW:-5}
REPS=${REPS:-3}
LOW_ENTRIES=${LOW_ENTRIES:-1000}
LOW_SECONDS=${LOW_SECONDS:-3}
LOW_CURL=${LOW_CURL:-300}
CASES=${CASES:-low tput}
has_case() { [[ " $CASES " == *" $1 "* ]]; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/wp-bench-s3.XXXXXX")
started=
cleanup() { [ -n "$started" ] && bash "$here/../scripts/rgw.sh" stop "$tmp/rgw" >/dev/null 2>&1; rm -rf "$tmp"; }
trap cleanup EXIT
env_file=${WP_S3_ENV:-}
if [ -z "$env_file" ]; then
  bash "$here/../scripts/rgw.sh" start "$tmp/rgw" >/dev/null
  started=1
  env_file=$tmp/rgw/env
fi
# shellcheck disable=SC1090
. "$env_file"
echo "bench: S3 endpoint $WP_S3_ENDPOINT (bucket $WP_S3_BUCKET)"

jget() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$1" "$2"; }
# median of numbers ("-" if there are none, e.g. no tail reader)
median() { printf '%s\n' "$@" | grep -E '^[0-9.eE+-]*[0-9]' | sort -g |
  awk '{v[NR]=$1} END {print NR == 0 ? "-" : (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }

# raw limit (of the throughput cases)
raws=() raw=- raw_p50=-
if has_case tput; then
  for r in $(seq "$REPS"); do
    "$PUT" put "$env_file" $((2 * 1024 * 1024)) "$THREADS" "$SECONDS_RAW" >"$tmp/raw.$r.json"
    raws+=("$(jget "$tmp/raw.$r.json" mib_per_s)")
    "$PUT" delete "$env_file" "$(jget "$tmp/raw.$r.json" prefix)/" >/dev/null # RGW memstore is RAM
  done
  raw=$(median "${raws[@]}")
  raw_p50=$(jget "$tmp/raw.1.json" put_p50_ms)
  echo "bench: raw 2 MiB PUTs x $THREADS threads: $raw MiB/s (runs: ${raws[*]})"
fi

S3=(-o storage.type=s3 -o "storage.s3.endpoint=$WP_S3_ENDPOINT" -o "storage.s3.bucket=$WP_S3_BUCKET"
    -o "storage.s3.access_key=$WP_S3_ACCESS_KEY" -o "storage.s3.secret_key=$WP_S3_SECRET_KEY"
    -o "storage.s3.region=${WP_S3_REGION:-us-east-1}" -o "flush.max_threads=$THREADS")
# s3_drop PREFIX: delete what a case wrote, and have RGW free the deleted
# objects' tails now (its memstore OSD is RAM).
s3_drop() {
  "$PUT" delete "$env_file" "$1/" >/dev/null
  if [ -n "$started" ]; then
    timeout 60 radosgw-admin -c "$tmp/rgw/ceph.conf" gc process --include-all >/dev/null 2>&1 || true
  fi
}
# wp_run NAME R ARGS...: one run of `wp bench ARGS --json` (compaction off
# while appending: it would run at a random point of the measurement), then
# `wp compact` of what it wrote, timed; counts objects before and after,
# then drops them. Adds to the arrays of wp_stats.
wp_run() {
  local name=$1 r=$2; shift 2
  local pfx="wpbench-$name-$r-$$" t0 t1 out
  "$WP" "${S3[@]}" "${CASE_OPTS[@]}" -o "storage.s3.prefix=$pfx" -o "storage.root=$tmp/$name-$r" \
    -o compaction.enabled=false bench --log b "$@" --json >"$tmp/$name.$r.json"
  mibs+=("$(jget "$tmp/$name.$r.json" mib_per_s)")
  a50+=("$(jget "$tmp/$name.$r.json" ack_p50_ms)"); a99+=("$(jget "$tmp/$name.$r.json" ack_p99_ms)")
  e50+=("$(jget "$tmp/$name.$r.json" e2e_p50_ms | sed 's/None/-/')")
  puts=$((puts + $("$PUT" count "$env_file" "$pfx/")))
  bytes=$((bytes + $(python3 -c "print(int(float('$(jget "$tmp/$name.$r.json" bytes)')))")))
  t0=$(date +%s.%N)
  out=$("$WP" "${S3[@]}" "${CASE_OPTS[@]}" -o "storage.s3.prefix=$pfx" -o "storage.root=$tmp/$name-$r" compact b)
  t1=$(date +%s.%N)
  csecs+=("$(python3 -c "print(round($t1 - $t0, 2))")")
  cputs=$((cputs + $(printf '%s\n' "$out" | sed -n 's/^ok: [0-9]* segment(s) sealed, \([0-9]*\) PUT(s).*/\1/p')))
  objs=$((objs + $("$PUT" count "$env_file" "$pfx/")))
  s3_drop "$pfx"
}
wp_stats_reset() { mibs=() a50=() a99=() e50=() csecs=() puts=0 bytes=0 cputs=0 objs=0; }
# wp_row NAME RATIO: the table row of the runs since wp_stats_reset.
wp_row() {
  local m gib; m=$(median "${mibs[@]}"); gib=$(python3 -c "print($bytes / 2**30)")
  rows+=("| wp $1 | $m | $(median "${a50[@]}") | $(median "${a99[@]}") | $(median "${e50[@]}") | $2 | $(python3 -c "print(round($puts / $gib, 1))") | $(python3 -c "print(round($cputs / $gib, 1))") ($(median "${csecs[@]}") s) | $(python3 -c "print(round($objs / $gib, 1))") |")
  echo "bench: wp $1: $m MiB/s (runs: ${mibs[*]})"
}
CASE_OPTS=()
wp_case() { # NAME ENTRIES SIZE WINDOW [--reader]
  local name=$1 entries=$2 size=$3 window=$4 rd=${5:-} m
  wp_stats_reset
  for r in $(seq "$REPS"); do
    # shellcheck disable=SC2086
    wp_run "$name" "$r" --entries "$entries" --size "$size" --window "$window" $rd
  done
  m=$(median "${mibs[@]}")
  wp_row "$name" "$(python3 -c "print(round($m / $raw, 2))")"
}

# pcts FILE: "p50 p99" (ms) of the latencies in FILE (ms, one a line), by
# wp-s3put's rule (the sorted values at n/2 and n*99/100).
pcts() { python3 -c "
import sys; v = sorted(float(x) for x in open(sys.argv[1]) if x.strip())
print(round(v[len(v) // 2], 3), round(v[len(v) * 99 // 100], 3))" "$1"; }
# curl_puts N PFX: N conditional 1 KiB PUTs, one at a time on one
# connection, by curl (SigV4; it waits for "100 Continue" before each
# body); prints their p50 p99 (ms). Fails unless every answer is 200.
curl_puts() {
  local n=$1 pfx=$2 sha args=() i
  head -c 1024 /dev/urandom >"$tmp/curl.body"
  sha=$(sha256sum "$tmp/curl.body" | cut -d' ' -f1)
  for i in $(seq "$n"); do args+=(-T "$tmp/curl.body" "$WP_S3_ENDPOINT/$WP_S3_BUCKET/$pfx/$i.blk"); done
  curl -sS --aws-sigv4 "aws:amz:${WP_S3_REGION:-us-east-1}:s3" --user "$WP_S3_ACCESS_KEY:$WP_S3_SECRET_KEY" \
    -H "x-amz-content-sha256: $sha" -H 'If-None-Match: *' -w '%{http_code} %{time_total}\n' \
    "${args[@]}" >"$tmp/curl.out"
  if [ "$(grep -c '^200 ' "$tmp/curl.out")" -ne "$n" ]; then
    echo "bench: error: curl PUTs failed: $(grep -v '^200 ' "$tmp/curl.out" | head -n 3)" >&2
    return 1
  fi
  awk '{print $2 * 1000}' "$tmp/curl.out" >"$tmp/curl.ms"
  pcts "$tmp/curl.ms"
}
ratio() { python3 -c "print(round($1 / $2, 2))"; }

# Low load (issue 14): per run, one 1 KiB PUT at a time for LOW_SECONDS by
# wp-s3put (the raw latency: the same S3 client, no Woodpecker), LOW_CURL of
# them by curl (another client), then LOW_ENTRIES sync 1 KiB appends with
# flush.max_interval_ms 0. Ratios are taken run by run (neighbours in
# time), then their median.
low_case() {
  local r rp50=() rp99=() cp50=() cp99=() lr50=() lr99=() cr50=() cr99=() x out
  wp_stats_reset
  CASE_OPTS=(-o flush.max_interval_ms=0)
  for r in $(seq "$REPS"); do
    "$PUT" put "$env_file" 1024 1 "$LOW_SECONDS" >"$tmp/one.$r.json"
    rp50+=("$(jget "$tmp/one.$r.json" put_p50_ms)"); rp99+=("$(jget "$tmp/one.$r.json" put_p99_ms)")
    "$PUT" delete "$env_file" "$(jget "$tmp/one.$r.json" prefix)/" >/dev/null
    if [ "$LOW_CURL" -gt 0 ]; then
      out=$(curl_puts "$LOW_CURL" "curlput-$r-$$") || exit 1
      read -r -a x <<<"$out"
      cp50+=("${x[0]}"); cp99+=("${x[1]}")
      cr50+=("$(ratio "${x[0]}" "${rp50[-1]}")"); cr99+=("$(ratio "${x[1]}" "${rp99[-1]}")")
      "$PUT" delete "$env_file" "curlput-$r-$$/" >/dev/null
    fi
    wp_run sync-1KiB-low "$r" --entries "$LOW_ENTRIES" --size 1024 --mode sync
    lr50+=("$(ratio "${a50[-1]}" "${rp50[-1]}")"); lr99+=("$(ratio "${a99[-1]}" "${rp99[-1]}")")
    echo "bench: low load run $r: one PUT p50/p99 ${rp50[-1]}/${rp99[-1]} ms, curl ${cp50[-1]:--}/${cp99[-1]:--} ms," \
      "wp sync append ${a50[-1]}/${a99[-1]} ms (ratios ${lr50[-1]}/${lr99[-1]})"
  done
  CASE_OPTS=()
  low_p50=$(median "${rp50[@]}") low_p99=$(median "${rp99[@]}")
  low_rows+=("| raw: one 1 KiB PUT at a time (wp-s3put) | $low_p50 | $low_p99 | 1.00 | 1.00 |")
  [ "$LOW_CURL" -gt 0 ] &&
    low_rows+=("| curl: one 1 KiB PUT at a time (another client; waits for 100 Continue) | $(median "${cp50[@]}") | $(median "${cp99[@]}") | $(median "${cr50[@]}") | $(median "${cr99[@]}") |")
  low_rows+=("| wp sync 1 KiB, one at a time, flush.max_interval_ms=0 | $(median "${a50[@]}") | $(median "${a99[@]}") | $(median "${lr50[@]}") | $(median "${lr99[@]}") |")
  wp_row "sync-1KiB-low (one at a time, flush.max_interval_ms=0)" \
    "$(median "${lr50[@]}") / $(median "${lr99[@]}") (ack p50 / p99 to one raw 1 KiB PUT)"
}

rows=() low_rows=()
has_case tput && rows+=("| raw 2 MiB PUTs, $THREADS threads | $raw | $raw_p50 (one PUT) | - | - | 1.00 | 512 | - | 512 |")
has_case low && low_case
# Throughput cases without a reader (it would GET everything back from the
# same server); a third, lighter case measures the tailing reader.
if has_case tput; then
  wp_case async-1MiB 512 $((1024 * 1024)) 64
  wp_case async-4KiB 100000 4096 16384
  wp_case tail-4KiB 5000 4096 64 --reader
fi

cat <<EOF

## Object storage: Woodpecker vs raw PUTs to the same S3 server (median of $REPS runs)

| case | MiB/s | ack p50 ms | ack p99 ms | tail-read p50 ms (in process) | ratio to raw | PUTs per GiB appending | compaction PUTs per GiB (wp compact time) | objects per GiB after |
|---|---:|---:|---:|---:|---:|---:|---:|---:|
$(printf '%s\n' "${rows[@]}")
EOF
if has_case low; then
  cat <<EOF

### Low load: one 1 KiB append at a time (median of $REPS runs; ratios taken run by run)

| case | p50 ms | p99 ms | p50 / raw p50 | p99 / raw p99 |
|---|---:|---:|---:|---:|
$(printf '%s\n' "${low_rows[@]}")

Target (issue 14): wp ack p50 <= 1.5 x and p99 <= 2 x those of one raw PUT.
EOF
fi
cat <<EOF

Ack latency p50 is expected near flush.max_interval_ms (200 ms) + one PUT
when the load does not fill 2 MiB blocks sooner; with
flush.max_interval_ms=0 and one append at a time, one PUT. PUTs per GiB
appending counts every object a case left (data and markers); then \`wp
compact\` PUTs each completed segment's footer object and merges its
objects into objects of compaction.max_bytes (32 MiB). Commands:
    $PUT put ENV $((2 * 1024 * 1024)) $THREADS $SECONDS_RAW
    wp ${S3[*]} -o storage.s3.prefix=P -o storage.root=D bench --log b --entries 512 --size 1MiB --window 64 --json
    wp ${S3[*]} -o storage.s3.prefix=P -o storage.root=D bench --log b --entries 100000 --size 4096 --window 16384 --json
    wp ${S3[*]} -o storage.s3.prefix=P -o storage.root=D bench --log b --entries 5000 --size 4096 --window 64 --reader --json
    (each with -o compaction.enabled=false, then: wp ... compact b)
  low load, per run:
    $PUT put ENV 1024 1 $LOW_SECONDS
    curl --aws-sigv4 ... -H 'If-None-Match: *' -T 1KiB-file URL1 -T 1KiB-file URL2 ... ($LOW_CURL PUTs, one connection)
    wp ${S3[*]} -o flush.max_interval_ms=0 -o storage.s3.prefix=P -o storage.root=D bench --log b --entries $LOW_ENTRIES --size 1024 --mode sync --json
EOF
