#!/usr/bin/env bash
# local.sh — Woodpecker on the local file system against fio on the same
# file system. What `make bench` runs:
#   bench/local.sh path/to/wp
# Cases (each run REPS times, the median reported; the machine is noisy):
#   fio 1M / 4k: sequential writes, write + fdatasync per block (--fdatasync=1)
#   wp async 1 MiB entries (flush.max_bytes 1MiB: one fdatasync per entry)
#   wp async 4 KiB entries (group commit: many entries per fdatasync)
#   wp sync 4 KiB entries (one append at a time, low load)
#   compression: wp async 4 KiB entries of log-like text and of random bytes
#     with flush.compression none, zstd and lz4: MB/s of payload, bytes
#     stored per payload byte, CPU seconds per GiB of payload
# Environment: WP_BENCH_DIR (scratch parent; default: the build directory),
# REPS (default 3). Needs python3 or jq to read JSON.
set -euo pipefail

WP=${1:-build/wp}
[ -x "$WP" ] || { echo "bench: no wp binary at '$WP' (run 'make build' first)" >&2; exit 1; }
WP=$(cd "$(dirname "$WP")" && pwd)/$(basename "$WP")
here=$(cd "$(dirname "$0")" && pwd)
REPS=${REPS:-3}

parent=${WP_BENCH_DIR:-$(dirname "$WP")}
tmp=$(mktemp -d "$parent/wp-bench.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
fs=$(df -PT "$tmp" | awk 'NR == 2 { print $2 " on " $7 " (" $1 ")" }')
echo "bench: scratch directory $tmp"
echo "bench: file system $fs"

if ! command -v fio >/dev/null; then
  "$here/../scripts/deps.sh" bench || echo "bench: could not install fio" >&2
fi

# jget FILE a/b/0/c: one value from a JSON file (python3, else jq); "nan" if
# absent. Paths use '/' because fio's percentile keys contain dots.
jget() {
  if command -v python3 >/dev/null; then
    python3 - "$1" "$2" <<'EOF'
import json, sys
v = json.load(open(sys.argv[1]))
for k in sys.argv[2].split("/"):
    v = v[int(k)] if isinstance(v, list) else v.get(k) if isinstance(v, dict) else None
    if v is None:
        break
print("nan" if v is None else v)
EOF
  else
    local q='' k
    IFS=/ read -ra parts <<<"$2"
    for k in "${parts[@]}"; do
      if [[ $k =~ ^[0-9]+$ ]]; then q+="[$k]"; else q+="[\"$k\"]"; fi
    done
    jq -r ".$q // \"nan\"" "$1"
  fi
}
# median V...: the median of numbers ("nan" ignored; "nan" if none).
median() {
  printf '%s\n' "$@" | { grep -v nan || true; } | sort -g |
    awk '{ v[NR] = $1 } END { if (NR == 0) print "nan"; else if (NR % 2) print v[(NR + 1) / 2];
                              else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
# scale V DIV: V / DIV, "nan" stays "nan".
scale() {
  if [ "$1" = nan ]; then echo nan; else awk -v v="$1" -v d="$2" 'BEGIN { print v / d }'; fi
}
fmt() {
  if [ "$1" = nan ]; then echo "-"; else printf "%.${2:-2}f" "$1"; fi
}

declare -A cmds mbs p50 p99 e50 e99 stored sratio cpug

# fio_case NAME BS SIZE: REPS fio runs; records MB/s and fdatasync latency.
fio_case() {
  local name=$1 bs=$2 size=$3 r m=() a=() b=()
  command -v fio >/dev/null || { cmds[$name]="(fio not available)"; return; }
  for r in $(seq "$REPS"); do
    local out=$tmp/$name.$r.json
    cmds[$name]="fio --name=$name --directory=$tmp/fio --ioengine=sync --rw=write --fdatasync=1 --bs=$bs --size=$size --runtime=10 --output-format=json"
    mkdir -p "$tmp/fio"
    # shellcheck disable=SC2086
    if ! ${cmds[$name]} --output="$out" >/dev/null; then
      echo "bench: fio failed: ${cmds[$name]}" >&2
      rm -rf "$tmp/fio"
      return
    fi
    rm -rf "$tmp/fio"
    m+=("$(scale "$(jget "$out" jobs/0/write/bw_bytes)" 1048576)")
    a+=("$(scale "$(jget "$out" jobs/0/sync/lat_ns/percentile/50.000000)" 1e6)")
    b+=("$(scale "$(jget "$out" jobs/0/sync/lat_ns/percentile/99.000000)" 1e6)")
  done
  mbs[$name]=$(median "${m[@]}") p50[$name]=$(median "${a[@]}") p99[$name]=$(median "${b[@]}")
  e50[$name]=nan e99[$name]=nan
  echo "bench: $name ${mbs[$name]} MiB/s, fdatasync p50 ${p50[$name]} ms" >&2
}

# wp_case NAME WP-ARGS...: REPS `wp bench --reader --json` runs in fresh roots.
wp_case() {
  local name=$1 r m=() a=() b=() c=() d=() s=() q=() g=()
  shift
  for r in $(seq "$REPS"); do
    local out=$tmp/$name.$r.json root=$tmp/$name-$r
    cmds[$name]="wp -o storage.root=$tmp/$name-N $* --reader --json"
    "$WP" -o storage.root="$root" "$@" --reader --json >"$out"
    rm -rf "$root"
    m+=("$(jget "$out" mib_per_s)")
    a+=("$(jget "$out" ack_p50_ms)") b+=("$(jget "$out" ack_p99_ms)")
    c+=("$(jget "$out" e2e_p50_ms)") d+=("$(jget "$out" e2e_p99_ms)")
    s+=("$(jget "$out" stored_bytes)") q+=("$(jget "$out" stored_ratio)")
    g+=("$(jget "$out" cpu_s_per_gib)")
  done
  mbs[$name]=$(median "${m[@]}") p50[$name]=$(median "${a[@]}") p99[$name]=$(median "${b[@]}")
  e50[$name]=$(median "${c[@]}") e99[$name]=$(median "${d[@]}")
  stored[$name]=$(median "${s[@]}") sratio[$name]=$(median "${q[@]}") cpug[$name]=$(median "${g[@]}")
  echo "bench: $name ${mbs[$name]} MiB/s, ack p50 ${p50[$name]} ms" >&2
}

fio_case fio-1M 1M 256M
fio_case fio-4k 4k 20M
wp_case wp-async-1MiB -o flush.max_bytes=1MiB bench --log b --entries 256 --size 1MiB --mode async --window 4
wp_case wp-async-4KiB bench --log b --entries 100000 --size 4KiB --mode async
wp_case wp-sync-4KiB bench --log b --entries 5000 --size 4KiB --mode sync
ZCASES=()
for payload in text random; do
  for codec in none zstd lz4; do
    ZCASES+=("wp-$codec-$payload")
    wp_case "wp-$codec-$payload" -o flush.compression=$codec bench --log b --entries 100000 \
      --size 4KiB --mode async --payload $payload
  done
done

# ratio NAME PEER: NAME's MB/s over PEER's.
ratio() {
  local x=${mbs[$1]:-nan} y=${mbs[$2]:-nan}
  if [ "$x" = nan ] || [ "$y" = nan ]; then echo "-"; return; fi
  awk -v x="$x" -v y="$y" 'BEGIN { printf "%.2f", (y > 0 ? x / y : 0) }'
}
row() {
  local n=$1 peer=$2
  printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$n" "$(fmt "${mbs[$n]:-nan}" 1)" \
    "$(fmt "${p50[$n]:-nan}" 3)" "$(fmt "${p99[$n]:-nan}" 3)" "$(fmt "${e50[$n]:-nan}" 3)" \
    "$(fmt "${e99[$n]:-nan}" 3)" "$([ -n "$peer" ] && ratio "$n" "$peer" || echo 1.00)"
}

echo
echo "## Local file system: wp vs fio (median of $REPS runs)"
echo
echo "File system: $fs"
echo
echo "| case | MiB/s | ack p50 ms | ack p99 ms | tail-read p50 ms | tail-read p99 ms | ratio to fio |"
echo "|---|---:|---:|---:|---:|---:|---:|"
row fio-1M ""
row wp-async-1MiB fio-1M
row fio-4k ""
row wp-async-4KiB fio-4k
row wp-sync-4KiB fio-4k
echo
echo "fio rows: ack = fdatasync latency of one block; wp rows: ack = append call to"
echo "durable callback, tail-read = append call to a concurrent reader receiving the entry."
echo
echo "## Compression: async 4 KiB entries, flush.compression per row (median of $REPS runs)"
echo
echo "| case | payload | codec | MB/s of payload | ack p50 ms | stored bytes | stored / payload | CPU s per GiB of payload |"
echo "|---|---|---|---:|---:|---:|---:|---:|"
for n in "${ZCASES[@]}"; do
  IFS=- read -r _ codec payload <<<"$n"
  printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' "$n" "$payload" "$codec" \
    "$(fmt "$(scale "${mbs[$n]:-nan}" 0.95367431640625)" 1)" "$(fmt "${p50[$n]:-nan}" 3)" \
    "$(fmt "${stored[$n]:-nan}" 0)" "$(fmt "${sratio[$n]:-nan}" 3)" "$(fmt "${cpug[$n]:-nan}" 2)"
done
echo
echo "MB/s = 10^6 bytes of payload per second; stored bytes = what the run added to the"
echo "log's segment files (headers, blocks, index, footers); CPU = user + system time of"
echo "the wp process (writer, compression, tailing reader, decompression) per GiB of"
echo "payload. text = log lines of a service (timestamps, ids, paths; bench/local.sh"
echo "uses \`wp bench --payload text\`), random = incompressible bytes."
echo
echo "Commands (wp = $WP; N = run number):"
echo
for n in fio-1M fio-4k wp-async-1MiB wp-async-4KiB wp-sync-4KiB "${ZCASES[@]}"; do
  echo "    ${cmds[$n]}"
done
