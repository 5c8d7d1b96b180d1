#!/usr/bin/env bash
# quorum.sh — Woodpecker in service mode (storage.type quorum: each flush
# written to 3 LogStore servers, acked at 2) against local mode, in the same
# run. What `make bench-quorum` runs:
#   bench/quorum.sh path/to/wp
# The 3 servers run on loopback on this machine and share its one disk, so
# every byte is written and synced three times on the same device: the
# physical ceiling is about 1/3 of local mode's throughput.
# Cases (each REPS times, the median reported):
#   async 1 KiB, 16 KiB, 1 MiB entries: MiB/s and ack p50/p99
#   sync 4 KiB entries, one at a time: ack p50/p99 (the database-commit case)
# Issue 10's targets: sync ack p50 <= 2 x local's; async throughput >= 0.33 x
# local's. Not yet here: the replicated peers (a 3-member etcd cluster, NATS
# JetStream with 3 replicas). Environment: WP_BENCH_DIR, REPS (default 3).
set -euo pipefail

WP=${1:-build/wp}
[ -x "$WP" ] || { echo "bench: no wp binary at '$WP' (run 'make build' first)" >&2; exit 1; }
WP=$(cd "$(dirname "$WP")" && pwd)/$(basename "$WP")
SERVER=$(dirname "$WP")/woodpecker
[ -x "$SERVER" ] || { echo "bench: no server binary at '$SERVER'" >&2; exit 1; }
REPS=${REPS:-3}
parent=${WP_BENCH_DIR:-$(dirname "$WP")}
tmp=$(mktemp -d "$parent/wp-bench-quorum.XXXXXX")
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
echo "bench: scratch directory $tmp on $(df -PT "$tmp" | awk 'NR == 2 { print $2 " " $7 }')"
echo "bench: 3 LogStore servers on 127.0.0.1 sharing this machine's one disk"

nodes=""
for i in 0 1 2; do
  mkdir -p "$tmp/s$i"
  "$SERVER" logstore -o node.id="bench$i" -o node.listen=127.0.0.1:0 -o node.data_dir="$tmp/s$i" \
    -o meta.path="$tmp/nodes.sqlite" -o node.disk_reserve_bytes=0 >"$tmp/s$i.out" 2>"$tmp/s$i.err" &
  pids+=($!)
done
for i in 0 1 2; do
  for _ in $(seq 50); do grep -q "serving on" "$tmp/s$i.out" && break; sleep 0.1; done
  addr=$(sed -n 's/.*serving on //p' "$tmp/s$i.out")
  [ -n "$addr" ] || { echo "bench: server $i did not start"; cat "$tmp/s$i.err"; exit 1; }
  nodes+="${nodes:+,}$addr"
done

jget() { python3 -c 'import json,sys; v=json.load(open(sys.argv[1])).get(sys.argv[2]); print("nan" if v is None else v)' "$1" "$2"; }
median() {
  printf '%s\n' "$@" | { grep -v nan || true; } | sort -g |
    awk '{ v[NR] = $1 } END { if (NR == 0) print "nan"; else if (NR % 2) print v[(NR + 1) / 2];
                              else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 == 0) print "nan"; else printf "%.2f", a / b }'; }

run=0
# bench MODE SIZE ENTRIES -> sets mibs/p50/p99 for quorum (q_*) and local (l_*)
bench() {
  local mode=$1 size=$2 n=$3 qm=() qa=() qb=() lm=() la=() lb=()
  for r in $(seq "$REPS"); do
    run=$((run + 1))
    local qo="$tmp/q$run.json" lo="$tmp/l$run.json"
    local qcmd=("$WP" -o storage.type=quorum -o quorum.nodes="$nodes" -o meta.path="$tmp/q.sqlite"
                -o storage.root="$tmp/q" bench --log "q$run" --mode "$mode" --entries "$n" --size "$size" --json)
    local lcmd=("$WP" -o storage.root="$tmp/local" bench --log "l$run" --mode "$mode" --entries "$n"
                --size "$size" --json)
    "${qcmd[@]}" >"$qo"
    "${lcmd[@]}" >"$lo"
    qm+=("$(jget "$qo" mib_per_s)"); qa+=("$(jget "$qo" ack_p50_ms)"); qb+=("$(jget "$qo" ack_p99_ms)")
    lm+=("$(jget "$lo" mib_per_s)"); la+=("$(jget "$lo" ack_p50_ms)"); lb+=("$(jget "$lo" ack_p99_ms)")
    [ "$r" = 1 ] && echo "  command: ${qcmd[*]}"
  done
  q_mibs=$(median "${qm[@]}"); q_p50=$(median "${qa[@]}"); q_p99=$(median "${qb[@]}")
  l_mibs=$(median "${lm[@]}"); l_p50=$(median "${la[@]}"); l_p99=$(median "${lb[@]}")
}

printf '%-22s %10s %10s %8s %10s %10s %10s %10s\n' case "quorum MB/s" "local MB/s" ratio \
  "q ack p50" "l ack p50" "q ack p99" "l ack p99"
for c in "async 1024 20000" "async 16384 4000" "async 1048576 200" "sync 4096 2000"; do
  set -- $c
  bench "$1" "$2" "$3"
  printf '%-22s %10s %10s %8s %9sms %9sms %9sms %9sms\n' "$1 $2 B x $3" "$q_mibs" "$l_mibs" \
    "$(ratio "$q_mibs" "$l_mibs")" "$q_p50" "$l_p50" "$q_p99" "$l_p99"
  if [ "$1" = sync ]; then
    echo "  sync ack p50 quorum / local: $(ratio "$q_p50" "$l_p50") (target <= 2)"
  else
    echo "  throughput quorum / local: $(ratio "$q_mibs" "$l_mibs") (target >= 0.33; 3 copies on one disk)"
  fi
done
