#!/usr/bin/env bash
# streaming.sh — the streaming service (docs/streaming.md) against the
# library used directly and against NATS JetStream and Redis Streams as
# publish/subscribe services (issue 12). What `make bench-streaming` runs:
#   bench/streaming.sh [path/to/wp]   (woodpecker and wp-stream-bench are
#                                      taken from the same directory)
# One workload for every system (bench/peers/stream_common.h): C channels,
# per channel a producer sending batches of B messages of S bytes (one batch
# in flight, the next once every message of it is acked) and a consumer on
# the pushed stream, for BENCH_SECONDS. Reported per system and case: MiB/s
# of payload acked, produce -> consume latency p50/p99 (a timestamp in the
# payload), the batch's ack latency, CPU seconds per GiB (servers + client).
# Systems (all on 127.0.0.1, all data in one scratch directory on the disk):
#   wp-direct   the library in one process (tools/wp-stream-bench.c direct):
#               a wp_writer and a tailing wp_reader per channel's log, the
#               configuration the nodes use (local storage, etcd metadata)
#   wp-relay    the library behind two bare loopback TCP hops in one process
#               (wp-stream-bench relay): producer -> relay thread -> writer;
#               reader -> relay thread -> consumer; length-prefixed messages,
#               no HTTP: what any networked service of the library pays at
#               least on these cores (a floor for wp-service, not a peer)
#   wp-service  etcd (1 member), one coordinator, one streaming node;
#               channels created through the API; wps_producer/wps_consumer
#               (tools/wp-stream-bench.c service)
#   wp-service-3  the same with 3 streaming nodes (cases with more than one
#               channel; BENCH_NODES3=0 skips it)
#   redis       Redis 7 Streams, appendfsync always (BENCH_REDIS_FSYNC),
#               XADD pipelined per batch / XREAD BLOCK (bench/peers/stream_redis.c)
#   nats        NATS JetStream 2.9, file storage, 1 replica (not durable at
#               ack: 2.9 has no fsync at ack), js_PublishAsync per batch /
#               ordered push consumer (bench/peers/stream_nats.c)
# Every server is started fresh (empty data directory) for every case and
# run, and stopped by PID right after its client. Target (issue 12):
# wp-service >= 0.7 x wp-direct in MiB/s, and ahead of both peers.
# Writes bench/results/<YYYY-MM-DD>-streaming.{md,tsv}.
#
# Environment (defaults in brackets):
#   REPS [3]               runs per case and system; every figure is the
#                          median, every ratio the median of the run-by-run
#                          ratios (systems of one run measured minutes apart)
#   BENCH_SECONDS [10]     producers start batches for this long
#   BENCH_BATCH [256]      messages per batch (= in flight per channel)
#   BENCH_SIZES [1024 16384]   payload sizes
#   BENCH_CHANNELS [1 16]  channel counts
#   BENCH_NODES3 [1]       0 skips wp-service-3
#   BENCH_RELAY [1]        0 skips wp-relay
#   BENCH_PEERS [1]        0 skips redis and nats
#   BENCH_PAYLOAD [random] random: incompressible bytes; text: letters
#                          (the C client sends both as they are)
#   BENCH_REDIS_FSYNC [always]  Redis appendfsync: always or everysec
#   BENCH_CONSUME [1]      0: producers only (--no-consume), the produce
#                          path's own limit
#   BENCH_NODE_OPTS []     more settings for the streaming nodes, KEY=VALUE
#                          separated by spaces (each given as -o KEY=VALUE)
#   WP_BENCH_DIR           scratch parent [directory of the wp binary]
#   BENCH_RESULTS          results directory [bench/results]
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
WP=${1:-$here/../build/wp}
[ -x "$WP" ] || { echo "bench: no wp binary at '$WP' (run 'make build' first)" >&2; exit 1; }
WP=$(cd "$(dirname "$WP")" && pwd)/$(basename "$WP")
BIN=$(dirname "$WP")
SERVER=$BIN/woodpecker
SBENCH=$BIN/wp-stream-bench
INVOCATION="bench/streaming.sh ${1:-build/wp}"
REPS=${REPS:-3}
RUN_S=${BENCH_SECONDS:-10}
BATCH=${BENCH_BATCH:-256}
read -r -a SIZES <<<"${BENCH_SIZES:-1024 16384}"
read -r -a CHANS <<<"${BENCH_CHANNELS:-1 16}"
NODES3=${BENCH_NODES3:-1}
NODE_OPTS=()
for o in ${BENCH_NODE_OPTS:-}; do NODE_OPTS+=(-o "$o"); done
RELAY=${BENCH_RELAY:-1}
PEERS=${BENCH_PEERS:-1}
PAYLOAD=${BENCH_PAYLOAD:-random}
REDIS_FSYNC=${BENCH_REDIS_FSYNC:-always}
CONSUME=${BENCH_CONSUME:-1}
RESULTS=${BENCH_RESULTS:-$here/results}
DATE=$(date +%F)

log() { echo "bench: $*" >&2; }
die() { log "error: $*"; exit 1; }
for b in "$SERVER" "$SBENCH"; do
  [ -x "$b" ] || die "no '$b' next to wp (build the tree: cmake --build)"
done
case $PAYLOAD in random | text) ;; *) die "BENCH_PAYLOAD is random or text" ;; esac
case $REDIS_FSYNC in always | everysec) ;; *) die "BENCH_REDIS_FSYNC is always or everysec" ;; esac

# Debian packages, installed only if missing (quietly), as bench/run.sh.
install_deps() {
  local pkgs=(etcd-server jq gcc curl) missing=() p sudo=
  [ "$PEERS" = 0 ] || pkgs+=(redis-server libhiredis-dev nats-server libnats-dev)
  for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing ${missing[*]}"
  [ "$(id -u)" -ne 0 ] && sudo=sudo
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq >/dev/null
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}
install_deps

parent=${WP_BENCH_DIR:-$BIN}
tmp=$(mktemp -d "$parent/wp-streaming.XXXXXX")
declare -A LIVE=() # pid -> 1 for every process we started and did not reap yet
cleanup() {
  local p
  for p in "${!LIVE[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fs=$(df -PT "$tmp" | awk 'NR == 2 { print $2 " on " $7 " (" $1 ")" }')
case $fs in tmpfs*) log "warning: scratch is on tmpfs, fsync means nothing there (set WP_BENCH_DIR)" ;; esac
log "scratch $tmp, file system $fs; $(nproc) cores shared by every server and client"

mkdir -p "$tmp/bin"
if [ "$PEERS" != 0 ]; then
  CFLAGS=(-O2 -std=c11 -Wall -Wextra -D_GNU_SOURCE)
  gcc "${CFLAGS[@]}" "$here/peers/stream_redis.c" -o "$tmp/bin/stream_redis" -lhiredis -lpthread -lm
  gcc "${CFLAGS[@]}" "$here/peers/stream_nats.c" -o "$tmp/bin/stream_nats" -lnats -lpthread -lm
fi
TICK=$(getconf CLK_TCK)

# ------------------------------------------------------------- servers ---
# As in bench/run.sh: free ports of 127.0.0.1, ready when the log says so,
# stopped by PID (SIGTERM, then SIGKILL after 15 s).

free_port() {
  local p _
  for _ in $(seq 100); do
    p=$((20000 + RANDOM % 40000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      echo "$p"
      return 0
    fi
  done
  return 1
}

# wait_log FILE PATTERN PID: until FILE has PATTERN (0) or PID died / 15 s (1).
wait_log() {
  local _
  for _ in $(seq 150); do
    grep -q "$2" "$1" 2>/dev/null && return 0
    kill -0 "$3" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

stop_pid() {
  local _
  kill -TERM "$1" 2>/dev/null || true
  for _ in $(seq 150); do
    kill -0 "$1" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
  unset "LIVE[$1]"
}

# start_redis DIR: sets SRV_PIDS, SRV_PORT, SRV_CMDS.
start_redis() {
  local dir=$1 _ pid
  mkdir -p "$dir"
  for _ in 1 2 3 4 5; do
    SRV_PORT=$(free_port)
    SRV_CMDS=("redis-server --bind 127.0.0.1 --port $SRV_PORT --dir DIR --appendonly yes --appendfsync $REDIS_FSYNC --save ''")
    redis-server --bind 127.0.0.1 --port "$SRV_PORT" --dir "$dir" --daemonize no \
      --appendonly yes --appendfsync "$REDIS_FSYNC" --save '' --logfile "$dir/redis.log" >/dev/null 2>&1 &
    pid=$!
    LIVE[$pid]=1
    SRV_PIDS=("$pid")
    wait_log "$dir/redis.log" "Ready to accept connections" "$pid" && return 0
    stop_pid "$pid"
  done
  die "redis-server did not start: $(tail -3 "$dir/redis.log" 2>/dev/null)"
}

# start_nats DIR: sets SRV_PIDS, SRV_PORT, SRV_CMDS.
start_nats() {
  local dir=$1 _ pid
  mkdir -p "$dir"
  for _ in 1 2 3 4 5; do
    SRV_PORT=$(free_port)
    cat >"$dir/nats.conf" <<EOF
listen: "127.0.0.1:$SRV_PORT"
max_payload: 2MB
jetstream {
  store_dir: "$dir/js"
}
EOF
    SRV_CMDS=("nats-server -c nats.conf  # listen 127.0.0.1:$SRV_PORT, max_payload 2MB, jetstream { store_dir DIR }")
    nats-server -c "$dir/nats.conf" >"$dir/nats.log" 2>&1 &
    pid=$!
    LIVE[$pid]=1
    SRV_PIDS=("$pid")
    wait_log "$dir/nats.log" "Server is ready" "$pid" && return 0
    stop_pid "$pid"
  done
  die "nats-server did not start: $(tail -3 "$dir/nats.log" 2>/dev/null)"
}

# start_etcd DIR: one member on free ports; sets ETCD_PID, ETCD_PORT.
start_etcd() {
  local dir=$1 pport _
  mkdir -p "$dir"
  for _ in 1 2 3 4 5; do
    ETCD_PORT=$(free_port)
    pport=$(free_port)
    [ "$pport" != "$ETCD_PORT" ] || continue
    rm -rf "$dir/data"
    ETCD_CMD="etcd --name b1 --data-dir DIR --listen-client-urls http://127.0.0.1:$ETCD_PORT ... (one member, defaults)"
    etcd --name b1 --data-dir "$dir/data" --logger=zap --log-level=warn \
      --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
      --listen-peer-urls "http://127.0.0.1:$pport" --initial-advertise-peer-urls "http://127.0.0.1:$pport" \
      --initial-cluster "b1=http://127.0.0.1:$pport" --initial-cluster-state new >"$dir/etcd.log" 2>&1 &
    ETCD_PID=$!
    LIVE[$ETCD_PID]=1
    for _ in $(seq 150); do
      curl -sf "http://127.0.0.1:$ETCD_PORT/health" 2>/dev/null | grep -q true && return 0
      kill -0 "$ETCD_PID" 2>/dev/null || break
      sleep 0.1
    done
    stop_pid "$ETCD_PID"
  done
  die "etcd did not start: $(tail -3 "$dir/etcd.log" 2>/dev/null)"
}

# The configuration shared by the nodes, the coordinator and both modes of
# wp-stream-bench: local storage in DIR/data, etcd metadata, defaults else
# (stream.assign_interval_ms 200: the coordinator assigns new channels
# sooner; it does not touch the data path).
write_cfg() {
  cat >"$1/stream.yaml" <<EOF
storage:
  root: $1/data
meta:
  type: etcd
  prefix: sbench/
  etcd:
    endpoints: http://127.0.0.1:$ETCD_PORT
stream:
  assign_interval_ms: 200
EOF
}

# start_service DIR NODES: etcd, the coordinator, NODES streaming nodes;
# sets SRV_PIDS (coordinator and nodes), SRV_CMDS.
start_service() {
  local dir=$1 k pid
  start_etcd "$dir/etcd"
  write_cfg "$dir"
  SRV_CMDS=("$ETCD_CMD" "woodpecker streaming-coord -c stream.yaml -o node.id=c0")
  "$SERVER" streaming-coord -c "$dir/stream.yaml" -o node.id=c0 >"$dir/coord.out" 2>"$dir/coord.log" &
  pid=$!
  LIVE[$pid]=1
  SRV_PIDS=("$pid")
  wait_log "$dir/coord.out" "running" "$pid" || die "the coordinator did not start: $(tail -3 "$dir/coord.log")"
  for k in $(seq "$2"); do
    "$SERVER" streaming-node -c "$dir/stream.yaml" -o node.id="n$k" -o stream.listen=127.0.0.1:0 \
      "${NODE_OPTS[@]}" >"$dir/n$k.out" 2>"$dir/n$k.log" &
    pid=$!
    LIVE[$pid]=1
    SRV_PIDS+=("$pid")
    wait_log "$dir/n$k.out" "serving on" "$pid" || die "node n$k did not start: $(tail -3 "$dir/n$k.log")"
  done
  SRV_CMDS+=("woodpecker streaming-node -c stream.yaml -o node.id=nK -o stream.listen=127.0.0.1:0${NODE_OPTS[*]:+ ${NODE_OPTS[*]}}  # K = 1..$2")
  SRV_CMDS+=("stream.yaml: storage.root DIR/data, meta.type etcd, meta.etcd.endpoints http://127.0.0.1:$ETCD_PORT, meta.prefix sbench/, stream.assign_interval_ms 200")
}

# CPU seconds (user + system + waited-for children) of a live process.
proc_cpu_s() {
  sed 's/.*) //' "/proc/$1/stat" | awk -v t="$TICK" '{ printf "%.3f", ($12 + $13 + $14 + $15) / t }'
}
srv_cpu() {
  local p t=0
  for p in "$@"; do t=$(awk -v a="$t" -v b="$(proc_cpu_s "$p" 2>/dev/null || echo 0)" 'BEGIN { printf "%.3f", a + b }'); done
  echo "$t"
}

# --------------------------------------------------------- the cases ---

declare -A V=() CMD=() SCMD=() OWNERS=() # V[sys|case|metric] = values, one per run
METRICS=(mib_s cons_mib_s e2e_p50 e2e_p99 ack_p50 ack_p99 e2e_max cpu_gib cpu_srv cpu_cli messages)
add() { V[$1|$2|$3]="${V[$1|$2|$3]:-} $4"; }
label() { case $1 in 1024) echo 1KiB ;; 16384) echo 16KiB ;; *) echo "${1}B" ;; esac; }
case_name() { echo "$(label "$1") x $2 ch"; }

systems_for() { # CHANNELS: the systems of a case, in table order
  local s=(wp-direct)
  [ "$RELAY" = 0 ] || s+=(wp-relay)
  s+=(wp-service)
  [ "$NODES3" = 0 ] || [ "$1" -le 1 ] || s+=(wp-service-3)
  [ "$PEERS" = 0 ] || s+=(redis nats)
  echo "${s[*]}"
}

# run_one SYS SIZE CHANNELS REP: starts the system's servers, runs its
# client, records the metrics, stops the servers.
run_one() {
  local sys=$1 size=$2 ch=$3 rep=$4 c dir json err cpu0 cpu1 argv=()
  c=$(case_name "$size" "$ch")
  dir=$tmp/run
  rm -rf "$dir"
  mkdir -p "$dir"
  json=$tmp/$sys-$size-$ch-$rep.json
  err=$tmp/$sys-$size-$ch-$rep.err
  local wl=(--channels "$ch" --size "$size" --batch "$BATCH" --seconds "$RUN_S" --payload "$PAYLOAD" --name c)
  [ "$CONSUME" != 0 ] || wl+=(--no-consume)
  SRV_PIDS=()
  SRV_CMDS=()
  ETCD_PID=
  case $sys in
    wp-direct)
      start_etcd "$dir/etcd"
      write_cfg "$dir"
      SRV_CMDS=("$ETCD_CMD" "stream.yaml as for wp-service")
      argv=("$SBENCH" direct -c "$dir/stream.yaml" "${wl[@]}") ;;
    wp-relay)
      start_etcd "$dir/etcd"
      write_cfg "$dir"
      SRV_CMDS=("$ETCD_CMD" "stream.yaml as for wp-service")
      argv=("$SBENCH" relay -c "$dir/stream.yaml" "${wl[@]}") ;;
    wp-service) start_service "$dir" 1; argv=("$SBENCH" service -c "$dir/stream.yaml" "${wl[@]}") ;;
    wp-service-3) start_service "$dir" 3; argv=("$SBENCH" service -c "$dir/stream.yaml" "${wl[@]}") ;;
    redis) start_redis "$dir/redis"; argv=("$tmp/bin/stream_redis" --port "$SRV_PORT" "${wl[@]}") ;;
    nats) start_nats "$dir/nats"; argv=("$tmp/bin/stream_nats" --port "$SRV_PORT" "${wl[@]}") ;;
  esac
  if [ -z "${CMD[$sys|$c]:-}" ]; then
    CMD[$sys|$c]=$(printf '%s ' "${argv[@]}" | sed "s#$tmp/run#DIR#g; s#$tmp/bin/#bench/peers/#; s#$BIN/#$(basename "$BIN")/#; s/ $//")
    SCMD[$sys]=$(printf '%s\n' "${SRV_CMDS[@]}")
  fi
  cpu0=$(srv_cpu "${SRV_PIDS[@]}")
  if ! timeout $((RUN_S * 3 + 120)) "${argv[@]}" >"$json" 2>"$err"; then
    cat "$err" >&2
    for f in "$dir"/*.log "$dir"/*/*.log; do [ -f "$f" ] && { echo "--- $f" >&2; tail -5 "$f" >&2; }; done
    die "$sys, $c, run $rep failed"
  fi
  cpu1=$(srv_cpu "${SRV_PIDS[@]}")
  local p
  for ((p = ${#SRV_PIDS[@]} - 1; p >= 0; p--)); do stop_pid "${SRV_PIDS[$p]}"; done # nodes, then the coordinator
  [ -z "$ETCD_PID" ] || stop_pid "$ETCD_PID"
  local vals mib cmib e50 e99 a50 a99 emax ccpu bytes msgs
  vals=$(jq -r '[.mib_per_s, .consume_mib_per_s, .e2e_p50_ms, .e2e_p99_ms, .ack_p50_ms, .ack_p99_ms, .e2e_max_ms, .cpu_s, .bytes, .messages] | map(. // "nan") | @tsv' "$json")
  read -r mib cmib e50 e99 a50 a99 emax ccpu bytes msgs <<<"$vals"
  local scpu
  scpu=$(awk -v a="$cpu0" -v b="$cpu1" 'BEGIN { printf "%.3f", b - a }')
  add "$sys" "$c" mib_s "$mib"
  add "$sys" "$c" cons_mib_s "$cmib"
  add "$sys" "$c" e2e_p50 "$e50"
  add "$sys" "$c" e2e_p99 "$e99"
  add "$sys" "$c" ack_p50 "$a50"
  add "$sys" "$c" ack_p99 "$a99"
  add "$sys" "$c" e2e_max "$emax"
  add "$sys" "$c" cpu_srv "$scpu"
  add "$sys" "$c" cpu_cli "$ccpu"
  add "$sys" "$c" messages "$msgs"
  add "$sys" "$c" cpu_gib "$(awk -v s="$scpu" -v c="$ccpu" -v b="$bytes" 'BEGIN { if (b > 0) printf "%.3f", (s + c) / (b / 1073741824); else print "nan" }')"
  case $sys in wp-service*)
    OWNERS[$sys|$c]=$(sed -n 's/^wp-stream-bench: owners: //p' "$err" | tr ' ' '\n' | sed 's/.*=//' | sort | uniq -c | awk '{ printf "%s%s:%s", (NR > 1 ? " " : ""), $2, $1 }') ;;
  esac
  printf 'bench: run %d %-12s %-14s %8.1f MiB/s (consumed %8.1f)  e2e p50 %8.2f  p99 %8.2f ms  ack p50 %8.2f ms  CPU s/GiB %s\n' \
    "$rep" "$sys" "$c" "$mib" "$cmib" "$e50" "$e99" "$a50" "$(awk -v s="$scpu" -v c="$ccpu" -v b="$bytes" 'BEGIN { printf "%.2f", (s + c) / (b / 1073741824) }')" >&2
}

# median VALUES...: "nan" if none.
median() {
  printf '%s\n' "$@" | { grep -v -e nan -e '^$' || true; } | sort -g |
    awk '{ v[NR] = $1 } END { if (NR == 0) print "nan"; else if (NR % 2) printf "%.4f\n", v[(NR + 1) / 2];
                              else printf "%.4f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
# M SYS CASE METRIC: the median of the runs.
M() {
  local a
  read -r -a a <<<"${V[$1|$2|$3]:-}"
  median "${a[@]:-nan}"
}
# R SYS OTHER CASE METRIC: the median of the run-by-run ratios SYS ÷ OTHER.
R() {
  local a b i r=()
  read -r -a a <<<"${V[$1|$3|$4]:-}"
  read -r -a b <<<"${V[$2|$3|$4]:-}"
  for i in "${!a[@]}"; do
    [ -n "${b[$i]:-}" ] && r+=("$(awk -v x="${a[$i]}" -v y="${b[$i]}" 'BEGIN { if (x == "nan" || y == "nan" || y + 0 == 0) print "nan"; else printf "%.4f", x / y }')")
  done
  median "${r[@]:-nan}"
}
minmax() {
  printf '%s\n' ${V[$1|$2|mib_s]} | awk '$1 != "nan" { if (n++ == 0 || $1 < lo) lo = $1; if ($1 > hi) hi = $1 } END { if (n) printf "%.0f–%.0f", lo, hi; else print "-" }'
}
fmt() {
  if [ "$1" = nan ] || [ -z "$1" ]; then echo "-"; else printf "%.${2}f" "$1"; fi
}
fmt3() {
  if [ "$1" = nan ] || [ -z "$1" ]; then echo "-"; else
    awk -v v="$1" 'BEGIN { printf (v >= 100 ? "%.0f" : v >= 10 ? "%.1f" : "%.2f"), v }'
  fi
}

CASES=()
for size in "${SIZES[@]}"; do for ch in "${CHANS[@]}"; do CASES+=("$size $ch"); done; done
t_start=$(date +%s)
log "$REPS runs x ${#CASES[@]} cases, ${RUN_S} s each, batch $BATCH, payload $PAYLOAD$( [ "$CONSUME" != 0 ] || echo ', no consumers')"
for rep in $(seq "$REPS"); do
  for cs in "${CASES[@]}"; do
    read -r size ch <<<"$cs"
    for sys in $(systems_for "$ch"); do run_one "$sys" "$size" "$ch" "$rep"; done
  done
done
t_total=$(($(date +%s) - t_start))

# --------------------------------------------------------------- report ---

mkdir -p "$RESULTS"
out=$RESULTS/$DATE-streaming.md
tsv=$RESULTS/$DATE-streaming.tsv
{
  printf 'system\tcase'
  printf '\t%s' "${METRICS[@]}" ratio_direct
  printf '\n'
  for cs in "${CASES[@]}"; do
    read -r size ch <<<"$cs"
    c=$(case_name "$size" "$ch")
    for sys in $(systems_for "$ch"); do
      printf '%s\t%s' "$sys" "$c"
      for m in "${METRICS[@]}"; do printf '\t%s' "$(M "$sys" "$c" "$m")"; done
      printf '\t%s\n' "$(R "$sys" wp-direct "$c" mib_s)"
    done
  done
} >"$tsv"

verdict() { awk -v r="$1" -v t="$2" 'BEGIN { if (r == "nan") print "-"; else if (r + 0 >= t + 0) print "met"; else print "**missed**" }'; }
{
  echo "# Streaming service: Woodpecker vs the library directly, Redis Streams, NATS JetStream ($DATE)"
  echo
  echo "\`$(for v in REPS BENCH_SECONDS BENCH_BATCH BENCH_SIZES BENCH_CHANNELS BENCH_NODES3 BENCH_PEERS BENCH_PAYLOAD BENCH_REDIS_FSYNC BENCH_CONSUME; do [ -n "${!v:-}" ] && printf '%s=%s ' "$v" "${!v}"; done)$INVOCATION\`"
  echo "(issue 12; medians of $REPS runs; took $t_total s). Machine: $(nproc) cores"
  echo "($(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)), $(free -g | awk '/^Mem:/ { print $2 }') GiB RAM, $fs; every server and"
  echo "client runs on these cores, all data goes to this one disk. Woodpecker"
  echo "at $(git -C "$here/.." rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$here/.." diff --quiet 2>/dev/null || echo ' (with uncommitted changes)'); $(redis-server --version 2>/dev/null | awk '{ print "Redis " substr($3, 3) }'),"
  echo "NATS $(nats-server --version 2>/dev/null | awk '{ print $2 }'), etcd $(etcd --version 2>/dev/null | sed -n 's/^etcd Version: //p')."
  echo
  echo "Workload, the same for every system (bench/peers/stream_common.h): C"
  echo "channels; per channel one producer sending batches of $BATCH messages of S"
  echo "bytes ($PAYLOAD payload) and waiting until the whole batch is acked before the"
  echo "next (one batch in flight per channel), and one consumer on the pushed stream,"
  echo "for $RUN_S s. MiB/s = payload acked ÷ (start → last ack); consumed MiB/s ="
  echo "payload consumed ÷ (start → last message consumed), lower when consumers fall"
  echo "behind (their backlog then adds to e2e); e2e = produce call →"
  echo "the consumer has the message (timestamp in the payload), over every message;"
  echo "ack = produce call → the batch acked; CPU = servers (/proc) + client"
  echo "(getrusage) seconds per GiB of payload. ÷ direct = median of the run-by-run"
  echo "ratios to wp-direct (the same case, same run)."
  echo
  echo "| case | system | MiB/s (runs) | consumed MiB/s | e2e p50 ms | e2e p99 ms | ack p50 ms | ack p99 ms | CPU s/GiB | ÷ direct |"
  echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"
  for cs in "${CASES[@]}"; do
    read -r size ch <<<"$cs"
    c=$(case_name "$size" "$ch")
    for sys in $(systems_for "$ch"); do
      printf '| %s | %s | %s (%s) | %s | %s | %s | %s | %s | %s | %s |\n' "$c" "$sys" \
        "$(fmt "$(M "$sys" "$c" mib_s)" 1)" "$(minmax "$sys" "$c")" "$(fmt "$(M "$sys" "$c" cons_mib_s)" 1)" \
        "$(fmt3 "$(M "$sys" "$c" e2e_p50)")" "$(fmt3 "$(M "$sys" "$c" e2e_p99)")" \
        "$(fmt3 "$(M "$sys" "$c" ack_p50)")" "$(fmt3 "$(M "$sys" "$c" ack_p99)")" \
        "$(fmt "$(M "$sys" "$c" cpu_gib)" 2)" "$(fmt "$(R "$sys" wp-direct "$c" mib_s)" 2)"
    done
  done
  echo
  echo "## Targets (issue 12)"
  echo
  echo "wp-service ≥ 0.7 × wp-direct (MiB/s) and ahead of both peers; ratios are"
  echo "medians of the run-by-run ratios. e2e p50: < 1 means the service is faster."
  echo "relay ÷ direct: the share of the library that two bare TCP hops leave on"
  echo "these cores; service ÷ relay: the service against that floor."
  echo
  echo "| case | service | service ÷ direct | vs 0.7 | relay ÷ direct | service ÷ relay | consumed MiB/s ÷ direct | service ÷ redis | service ÷ nats | ahead of both | e2e p50 ÷ redis | e2e p50 ÷ nats |"
  echo "|---|---|---:|---|---:|---:|---:|---:|---:|---|---:|---:|"
  for cs in "${CASES[@]}"; do
    read -r size ch <<<"$cs"
    c=$(case_name "$size" "$ch")
    for svc in wp-service wp-service-3; do
      [[ " $(systems_for "$ch") " == *" $svc "* ]] || continue
      rd=$(R "$svc" wp-direct "$c" mib_s)
      rr=$(R "$svc" redis "$c" mib_s)
      rn=$(R "$svc" nats "$c" mib_s)
      ahead=$(awk -v a="$rr" -v b="$rn" 'BEGIN { if (a == "nan" || b == "nan") print "-"; else if (a > 1 && b > 1) print "yes"; else print "**no**" }')
      printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$c" "$svc" "$(fmt "$rd" 2)" "$(verdict "$rd" 0.7)" \
        "$(fmt "$(R wp-relay wp-direct "$c" mib_s)" 2)" "$(fmt "$(R "$svc" wp-relay "$c" mib_s)" 2)" \
        "$(fmt "$(R "$svc" wp-direct "$c" cons_mib_s)" 2)" \
        "$(fmt "$rr" 2)" "$(fmt "$rn" 2)" "$ahead" \
        "$(fmt "$(R "$svc" redis "$c" e2e_p50)" 2)" "$(fmt "$(R "$svc" nats "$c" e2e_p50)" 2)"
    done
  done
  echo
  if [ ${#OWNERS[@]} -gt 0 ]; then
    echo "Channels per streaming node (last run): $(for k in "${!OWNERS[@]}"; do printf '%s, %s: %s\n' "${k%%|*}" "${k#*|}" "${OWNERS[$k]}"; done | sort | paste -sd';' | sed 's/;/; /g')."
    echo
  fi
  echo "## Durability at ack"
  echo
  echo "- **wp-direct, wp-relay, wp-service**: an ack (the append callback; the produce"
  echo "  answer) follows the fdatasync of the segment holding the message (local"
  echo "  storage, default flush settings; group commit). The service's node runs the"
  echo "  same writer, one per channel, and answers a produce request once every"
  echo "  message of it is durable."
  echo "- **redis**: \`appendfsync $REDIS_FSYNC\`$( [ "$REDIS_FSYNC" = always ] && echo ": the AOF is fdatasynced before the replies of an
  event-loop iteration are sent (durable at ack, group commit across clients)" || echo ": **not durable at ack** (the AOF is fsynced once a second)")."
  echo "- **nats**: JetStream 2.9.10, file storage, 1 replica: **not durable at ack**"
  echo "  (the PubAck follows the write to the block file, page cache; 2.9 has no"
  echo "  per-message fsync, \`sync_interval: always\` arrived in 2.10)."
  echo
  echo "## Commands"
  echo
  echo "Servers (fresh, empty data directory, for every case and run; DIR is the"
  echo "run's scratch directory on the disk):"
  echo
  for sys in wp-direct wp-relay wp-service wp-service-3 redis nats; do
    [ -n "${SCMD[$sys]:-}" ] || continue
    echo "- $sys:"
    while IFS= read -r l; do echo "      $l"; done <<<"${SCMD[$sys]}"
  done
  echo
  echo "Clients (the first run's; every figure of a row comes from its REPS runs):"
  echo
  for cs in "${CASES[@]}"; do
    read -r size ch <<<"$cs"
    c=$(case_name "$size" "$ch")
    for sys in $(systems_for "$ch"); do
      echo "    $c, $sys: ${CMD[$sys|$c]}"
    done
  done
  echo
  echo "bench/peers/stream_redis.c and stream_nats.c are compiled by the script:"
  echo "\`gcc -O2 -std=c11 -D_GNU_SOURCE bench/peers/stream_redis.c -lhiredis -lpthread -lm\`"
  echo "(stream_nats.c: \`-lnats\`). Every run's values: \`$DATE-streaming.tsv\` has the medians;"
  echo "the runs, metric by metric:"
  echo
  echo "| case | system | MiB/s per run | e2e p99 ms per run |"
  echo "|---|---|---|---|"
  for cs in "${CASES[@]}"; do
    read -r size ch <<<"$cs"
    c=$(case_name "$size" "$ch")
    for sys in $(systems_for "$ch"); do
      printf '| %s | %s | %s | %s |\n' "$c" "$sys" "$(printf '%s ' ${V[$sys|$c|mib_s]} | awk '{ for (i = 1; i <= NF; i++) printf "%s%.1f", (i > 1 ? ", " : ""), $i }')" \
        "$(printf '%s ' ${V[$sys|$c|e2e_p99]} | awk '{ for (i = 1; i <= NF; i++) printf "%s%.1f", (i > 1 ? ", " : ""), $i }')"
    done
  done
} >"$out"
echo
sed -n '/^| case | system | MiB\/s (runs)/,/^$/p' "$out"
sed -n '/^| case | service |/,/^$/p' "$out"
echo "Results: $out, $tsv (took $t_total s)"
