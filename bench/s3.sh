#!/usr/bin/env bash
# s3.sh — Woodpecker on object storage against the raw limit of the same S3
# server, in one run (make bench-s3):
#   raw: THREADS threads of conditional 2 MiB PUTs (build/wp-s3put), the
#        concurrency Woodpecker uses (flush.max_threads);
#   wp:  `wp bench` async appends of 1 MiB and of 4 KiB entries with
#        storage.type s3 (MemoryBuffer: flush.max_bytes 2 MiB,
#        flush.max_interval_ms 200 by default) and a tailing reader;
# and prints MiB/s, ack p50/p99, the ratio to raw and PUTs per GB.
# The server is a local Ceph RGW started by scripts/rgw.sh (or the one
# described by $WP_S3_ENV). Usage: bench/s3.sh path/to/wp
set -euo pipefail
WP=${1:-build/wp}
WP=$(cd "$(dirname "$WP")" && pwd)/$(basename "$WP")
PUT=$(dirname "$WP")/wp-s3put
here=$(cd "$(dirname "$0")" && pwd)
THREADS=${THREADS:-16}
SECONDS_RAW=${SECONDS_RAW:-5}
REPS=${REPS:-3}

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
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {print (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }

# raw limit
raws=()
for r in $(seq "$REPS"); do
  "$PUT" put "$env_file" $((2 * 1024 * 1024)) "$THREADS" "$SECONDS_RAW" >"$tmp/raw.$r.json"
  raws+=("$(jget "$tmp/raw.$r.json" mib_per_s)")
  "$PUT" delete "$env_file" "$(jget "$tmp/raw.$r.json" prefix)/" >/dev/null # RGW memstore is RAM
done
raw=$(median "${raws[@]}")
raw_p50=$(jget "$tmp/raw.1.json" put_p50_ms)
echo "bench: raw 2 MiB PUTs x $THREADS threads: $raw MiB/s (runs: ${raws[*]})"

S3=(-o storage.type=s3 -o "storage.s3.endpoint=$WP_S3_ENDPOINT" -o "storage.s3.bucket=$WP_S3_BUCKET"
    -o "storage.s3.access_key=$WP_S3_ACCESS_KEY" -o "storage.s3.secret_key=$WP_S3_SECRET_KEY"
    -o "storage.s3.region=${WP_S3_REGION:-us-east-1}" -o "flush.max_threads=$THREADS")
rows=()
# s3_drop PREFIX: delete what a case wrote, and have RGW free the deleted
# objects' tails now (its memstore OSD is RAM).
s3_drop() {
  "$PUT" delete "$env_file" "$1/" >/dev/null
  if [ -n "$started" ]; then
    timeout 60 radosgw-admin -c "$tmp/rgw/ceph.conf" gc process --include-all >/dev/null 2>&1 || true
  fi
}
wp_case() { # NAME ENTRIES SIZE WINDOW [--reader]
  local name=$1 entries=$2 size=$3 window=$4 rd=${5:-} mibs=() a50=() a99=() e50=() puts=0 bytes=0
  local cputs=0 objs=0 csecs=()
  for r in $(seq "$REPS"); do
    local pfx="wpbench-$name-$r-$$"
    # compaction off while appending (it would run at a random point of the
    # measurement); then `wp compact` of what was written, timed
    "$WP" "${S3[@]}" -o "storage.s3.prefix=$pfx" -o "storage.root=$tmp/$name-$r" -o compaction.enabled=false \
      bench --log b --entries "$entries" --size "$size" --window "$window" $rd --json >"$tmp/$name.$r.json"
    mibs+=("$(jget "$tmp/$name.$r.json" mib_per_s)")
    a50+=("$(jget "$tmp/$name.$r.json" ack_p50_ms)"); a99+=("$(jget "$tmp/$name.$r.json" ack_p99_ms)")
    e50+=("$(jget "$tmp/$name.$r.json" e2e_p50_ms | sed 's/None/-/')")
    puts=$((puts + $("$PUT" count "$env_file" "$pfx/")))
    bytes=$((bytes + $(python3 -c "print(int(float('$(jget "$tmp/$name.$r.json" bytes)')))")))
    local t0 t1 out
    t0=$(date +%s.%N)
    out=$("$WP" "${S3[@]}" -o "storage.s3.prefix=$pfx" -o "storage.root=$tmp/$name-$r" compact b)
    t1=$(date +%s.%N)
    csecs+=("$(python3 -c "print(round($t1 - $t0, 2))")")
    cputs=$((cputs + $(printf '%s\n' "$out" | sed -n 's/^ok: [0-9]* segment(s) sealed, \([0-9]*\) PUT(s).*/\1/p')))
    objs=$((objs + $("$PUT" count "$env_file" "$pfx/")))
    s3_drop "$pfx"
  done
  local m gib; m=$(median "${mibs[@]}"); gib=$(python3 -c "print($bytes / 2**30)")
  rows+=("| wp $name | $m | $(median "${a50[@]}") | $(median "${a99[@]}") | $(median "${e50[@]}") | $(python3 -c "print(round($m / $raw, 2))") | $(python3 -c "print(round($puts / $gib, 1))") | $(python3 -c "print(round($cputs / $gib, 1))") ($(median "${csecs[@]}") s) | $(python3 -c "print(round($objs / $gib, 1))") |")
  echo "bench: wp $name: $m MiB/s (runs: ${mibs[*]})"
}
# Throughput cases without a reader (it would GET everything back from the
# same server); a third, lighter case measures the tailing reader.
wp_case async-1MiB 512 $((1024 * 1024)) 64
wp_case async-4KiB 100000 4096 16384
wp_case tail-4KiB 5000 4096 64 --reader

cat <<EOF

## Object storage: Woodpecker vs raw PUTs to the same S3 server (median of $REPS runs)

| case | MiB/s | ack p50 ms | ack p99 ms | tail-read p50 ms (in process) | ratio to raw | PUTs per GiB appending | compaction PUTs per GiB (wp compact time) | objects per GiB after |
|---|---:|---:|---:|---:|---:|---:|---:|---:|
| raw 2 MiB PUTs, $THREADS threads | $raw | $raw_p50 (one PUT) | - | - | 1.00 | 512 | - | 512 |
$(printf '%s\n' "${rows[@]}")

Ack latency p50 is expected near flush.max_interval_ms (200 ms) + one PUT
when the load does not fill 2 MiB blocks sooner. PUTs per GiB appending
counts every object a case left (data and markers); then \`wp compact\`
PUTs each completed segment's footer object and merges its objects into
objects of compaction.max_bytes (32 MiB). Commands:
    $PUT put ENV $((2 * 1024 * 1024)) $THREADS $SECONDS_RAW
    wp ${S3[*]} -o storage.s3.prefix=P -o storage.root=D bench --log b --entries 512 --size 1MiB --window 64 --json
    wp ${S3[*]} -o storage.s3.prefix=P -o storage.root=D bench --log b --entries 100000 --size 4096 --window 16384 --json
    wp ${S3[*]} -o storage.s3.prefix=P -o storage.root=D bench --log b --entries 5000 --size 4096 --window 64 --reader --json
    (each with -o compaction.enabled=false, then: wp ... compact b)
EOF
