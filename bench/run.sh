#!/usr/bin/env bash
# run.sh — Woodpecker side by side with the systems users would pick instead
# (issue 5). What `make bench-peers` runs:
#   bench/run.sh [path/to/wp]        (wp-s3put is taken from the same directory)
# One writer, one log/stream, entries of 1 KiB, 16 KiB and 1 MiB, async
# appends with a bounded window, every ack durable (see bench/README.md for
# how each system is configured), a concurrent tailing reader for end-to-end
# latency. Systems: Woodpecker embedded on local disk (SQLite metadata, the
# default), the same with etcd metadata, fio (write + fdatasync per write: the
# physical limit), Redis 7 Streams, NATS JetStream 2.9, Woodpecker embedded on
# object storage (a local Ceph RGW) and that storage's limit (raw parallel
# conditional 2 MiB PUTs, build/wp-s3put).
# Writes bench/results/<YYYY-MM-DD>.{md,tsv,png} and prints the change
# against the previous results file.
#
# Environment (defaults in brackets):
#   BENCH_MIB [256]        data per case (MiB)
#   BENCH_MAX_S [20]       cap per case (seconds): peers stop sending, fio
#                          stops, Woodpecker's entry count is scaled down
#   REPS [5]               runs per case; each metric is the median
#   BENCH_WINDOW [256]     in-flight appends for 1 KiB and 16 KiB entries
#   BENCH_WINDOW_LARGE [8] in-flight appends for 1 MiB entries
#   BENCH_ETCD [1]         0 skips Woodpecker with etcd metadata
#   BENCH_S3 [1]           0 skips the object storage rows (no Ceph needed)
#   BENCH_S3_MIB [BENCH_MIB]  data per Woodpecker-on-S3 case (MiB)
#   BENCH_S3_WINDOW_MIB [64]  in-flight bytes on S3 (window = this ÷ entry
#                          size): an ack waits for flush.max_interval_ms
#                          (200 ms) plus a PUT, so the window must be large
#   BENCH_S3_THREADS [16]  flush.max_threads of Woodpecker = threads of the
#                          raw PUT run
#   BENCH_S3_RAW_S [5]     seconds per raw PUT run
#   BENCH_S3_READER [1]    0 runs the S3 cases without the tailing reader
#                          (it GETs every block back from the same RGW)
#   BENCH_STRACE [1]       0 skips the fsync count check (needs strace)
#   BENCH_FLAG_PCT [15]    a change worse than this is flagged "(!)"
#   WP_BENCH_DIR           scratch parent [directory of the wp binary]; all
#                          systems write there, on the same file system
#   BENCH_RESULTS          results directory [bench/results]
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
WP=${1:-$here/../build/wp}
[ -x "$WP" ] || { echo "bench: no wp binary at '$WP' (run 'make build' first)" >&2; exit 1; }
WP=$(cd "$(dirname "$WP")" && pwd)/$(basename "$WP")
S3PUT=$(dirname "$WP")/wp-s3put
INVOCATION="bench/run.sh ${1:-build/wp}"
MIB=${BENCH_MIB:-256}
MAX_S=${BENCH_MAX_S:-20}
REPS=${REPS:-5}
WIN_SMALL=${BENCH_WINDOW:-256}
WIN_LARGE=${BENCH_WINDOW_LARGE:-8}
FLAG_PCT=${BENCH_FLAG_PCT:-15}
RESULTS=${BENCH_RESULTS:-$here/results}
DATE=$(date +%F)
SIZES=(1024 16384 1048576)
DO_ETCD=${BENCH_ETCD:-1}
DO_S3=${BENCH_S3:-1}
S3_MIB=${BENCH_S3_MIB:-$MIB}
S3_WIN_MIB=${BENCH_S3_WINDOW_MIB:-64}
S3_THREADS=${BENCH_S3_THREADS:-16}
S3_RAW_S=${BENCH_S3_RAW_S:-5}
S3_READER=${BENCH_S3_READER:-1}
# Table order. wp_etcd: Woodpecker with etcd metadata; wp_s3: Woodpecker on
# S3; s3put: raw conditional 2 MiB PUTs to the same S3 server.
SYSTEMS=(woodpecker)
[ "$DO_ETCD" = 0 ] || SYSTEMS+=(wp_etcd)
SYSTEMS+=(fio redis nats)
[ "$DO_S3" = 0 ] || SYSTEMS+=(wp_s3 s3put)
has_sys() { local s; for s in "${SYSTEMS[@]}"; do [ "$s" = "$1" ] && return 0; done; return 1; }
# Strace check: entries of 1 KiB per system (not timed).
CHECK_ENTRIES=20000

log() { echo "bench: $*" >&2; }
die() { log "error: $*"; exit 1; }
# fmt VALUE DECIMALS: "-" for a missing value.
fmt() {
  if [ "$1" = nan ] || [ -z "$1" ]; then echo "-"; else printf "%.${2}f" "$1"; fi
}
# fmt3 VALUE: about 3 significant digits.
fmt3() {
  if [ "$1" = nan ] || [ -z "$1" ]; then echo "-"; else
    awk -v v="$1" 'BEGIN { printf (v >= 100 ? "%.0f" : v >= 10 ? "%.1f" : "%.2f"), v }'
  fi
}

# ---------------------------------------------------------------- setup ---

# Debian packages, installed only if missing (quietly).
install_deps() {
  local pkgs=(redis-server libhiredis-dev nats-server libnats-dev fio gnuplot-nox jq time gcc curl)
  local missing=() p sudo=
  [ "${BENCH_STRACE:-1}" = 0 ] || pkgs+=(strace)
  [ "$DO_ETCD" = 0 ] || pkgs+=(etcd-server)
  # scripts/rgw.sh: one monitor, one memstore OSD, radosgw (python3 comes with ceph-common)
  [ "$DO_S3" = 0 ] || pkgs+=(ceph-mon ceph-osd radosgw ceph-common)
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
if [ "$DO_S3" != 0 ]; then
  [ -x "$S3PUT" ] || die "no wp-s3put next to wp ('$S3PUT'; build it, or BENCH_S3=0)"
fi
parent=${WP_BENCH_DIR:-$(dirname "$WP")}
tmp=$(mktemp -d "$parent/wp-peers.XXXXXX")
declare -A LIVE=() # pid -> 1 for every process we started and did not reap yet
# kill_tree PID: SIGKILL to PID and all its descendants (by PID).
kill_tree() {
  local kids k
  kids=$(pgrep -P "$1" || true)
  kill -KILL "$1" 2>/dev/null || true
  for k in $kids; do kill_tree "$k"; done
}
RGW_DIR='' # set while the local Ceph RGW (scripts/rgw.sh) runs
RGW_PIDS=() SRV_CPU_PIDS=() CFG_EXTRA=()
cleanup() {
  local p
  for p in "${!LIVE[@]}"; do kill_tree "$p"; done
  # rgw.sh stops its daemons by their PID files and removes the directory.
  [ -z "$RGW_DIR" ] || bash "$here/../scripts/rgw.sh" stop "$RGW_DIR" >/dev/null 2>&1 || true
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fs=$(df -PT "$tmp" | awk 'NR == 2 { print $2 " on " $7 " (" $1 ")" }')
case $fs in tmpfs*) log "warning: scratch is on tmpfs, fsync means nothing there (set WP_BENCH_DIR)" ;; esac
log "scratch $tmp, file system $fs"

# The peer clients: compiled here, not part of the CMake build.
mkdir -p "$tmp/bin"
CFLAGS=(-O2 -std=c11 -Wall -Wextra -D_GNU_SOURCE)
gcc "${CFLAGS[@]}" "$here/peers/redis_bench.c" -o "$tmp/bin/redis_bench" -lhiredis -lpthread -lm
gcc "${CFLAGS[@]}" "$here/peers/nats_bench.c" -o "$tmp/bin/nats_bench" -lnats -lpthread -lm
TICK=$(getconf CLK_TCK)

# ------------------------------------------------------------- servers ---

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

# stop_pid PID: SIGTERM, up to 15 s, then SIGKILL.
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

# start_redis DIR: sets SRV_PID, SRV_PORT.
start_redis() {
  local dir=$1 _
  mkdir -p "$dir"
  for _ in 1 2 3 4 5; do
    SRV_PORT=$(free_port)
    redis-server --bind 127.0.0.1 --port "$SRV_PORT" --dir "$dir" --daemonize no \
      --appendonly yes --appendfsync always --save '' --logfile "$dir/redis.log" >/dev/null 2>&1 &
    SRV_PID=$!
    LIVE[$SRV_PID]=1
    wait_log "$dir/redis.log" "Ready to accept connections" "$SRV_PID" && return 0
    stop_pid "$SRV_PID"
  done
  die "redis-server did not start: $(tail -3 "$dir/redis.log" 2>/dev/null)"
}

# start_nats DIR: sets SRV_PID, SRV_PORT.
start_nats() {
  local dir=$1 _
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
    nats-server -c "$dir/nats.conf" >"$dir/nats.log" 2>&1 &
    SRV_PID=$!
    LIVE[$SRV_PID]=1
    wait_log "$dir/nats.log" "Server is ready" "$SRV_PID" && return 0
    stop_pid "$SRV_PID"
  done
  die "nats-server did not start: $(tail -3 "$dir/nats.log" 2>/dev/null)"
}

# start_etcd DIR: one etcd member on free ports of 127.0.0.1; sets SRV_PID,
# SRV_PORT (client port). Ready when /health says so.
start_etcd() {
  local dir=$1 pport _
  mkdir -p "$dir"
  for _ in 1 2 3 4 5; do
    SRV_PORT=$(free_port)
    pport=$(free_port)
    [ "$pport" != "$SRV_PORT" ] || continue
    rm -rf "$dir/data"
    etcd --name b1 --data-dir "$dir/data" --logger=zap --log-level=warn \
      --listen-client-urls "http://127.0.0.1:$SRV_PORT" --advertise-client-urls "http://127.0.0.1:$SRV_PORT" \
      --listen-peer-urls "http://127.0.0.1:$pport" --initial-advertise-peer-urls "http://127.0.0.1:$pport" \
      --initial-cluster "b1=http://127.0.0.1:$pport" --initial-cluster-state new >"$dir/etcd.log" 2>&1 &
    SRV_PID=$!
    LIVE[$SRV_PID]=1
    for _ in $(seq 150); do
      curl -sf "http://127.0.0.1:$SRV_PORT/health" 2>/dev/null | grep -q true && return 0
      kill -0 "$SRV_PID" 2>/dev/null || break
      sleep 0.1
    done
    stop_pid "$SRV_PID"
  done
  die "etcd did not start: $(tail -3 "$dir/etcd.log" 2>/dev/null)"
}

# start_rgw: the local Ceph RGW for the object storage rows, once per run
# (cold start 4-13 s); sets RGW_DIR, RGW_ENV, RGW_PIDS (array) and loads
# WP_S3_*.
# Every case deletes what it wrote (memstore: the OSD keeps objects in RAM,
# capped at 4 GiB) and has RGW's garbage collector drop the deleted objects'
# tails at once (it would wait 2 h otherwise).
start_rgw() {
  RGW_DIR=$tmp/rgw
  log "starting a local Ceph RGW (scripts/rgw.sh)"
  if ! bash "$here/../scripts/rgw.sh" start "$RGW_DIR" >"$tmp/rgw-start.log" 2>&1; then
    cat "$tmp/rgw-start.log" >&2
    die "scripts/rgw.sh start failed (BENCH_S3=0 skips object storage)"
  fi
  RGW_ENV=$RGW_DIR/env
  # shellcheck disable=SC1090
  . "$RGW_ENV"
  mapfile -t RGW_PIDS < <(cat "$RGW_DIR"/pids/{mon,osd,rgw})
  log "RGW at $WP_S3_ENDPOINT, bucket $WP_S3_BUCKET ($(tail -1 "$tmp/rgw-start.log"))"
}

# s3_drop PREFIX: delete every object under PREFIX/ and purge RGW's GC queue.
s3_drop() {
  "$S3PUT" delete "$RGW_ENV" "$1/" >/dev/null || log "warning: deleting $1/ failed"
  timeout 60 radosgw-admin -c "$RGW_DIR/ceph.conf" gc process --include-all >/dev/null 2>&1 ||
    log "warning: radosgw-admin gc process failed (memstore may fill up)"
}

# CPU seconds (user + system, including waited-for children such as Redis's
# AOF rewrite) of a live process, from /proc/PID/stat.
proc_cpu_s() {
  sed 's/.*) //' "/proc/$1/stat" | awk -v t="$TICK" '{ printf "%.3f", ($12 + $13 + $14 + $15) / t }'
}
# Peak RSS (VmHWM) of a live process in MiB.
proc_hwm_mib() { awk '/^VmHWM:/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status"; }
# srv_cpu PID...: the sum of proc_cpu_s (the RGW: monitor + OSD + radosgw).
srv_cpu() {
  local p t=0
  for p in "$@"; do t=$(awk -v a="$t" -v b="$(proc_cpu_s "$p")" 'BEGIN { printf "%.3f", a + b }'); done
  echo "$t"
}

# --------------------------------------------------------- the cases ---

declare -A V=() CMD=() # V[sys|size|metric] = space-separated values, one per run
# rss_svc: peak RSS of the service an embedded Woodpecker uses (etcd);
# objs: objects written per case (S3 rows).
METRICS=(entries mib_s entries_s ack_p50 ack_p99 ack_p999 e2e_p50 e2e_p99 cpu_gib cpu_srv cpu_cli rss rss_cli
         mib_s_min mib_s_max rss_svc objs)

window_for() { if [ "$1" -ge 1048576 ]; then echo "$WIN_LARGE"; else echo "$WIN_SMALL"; fi; }
label() {
  case $1 in 1024) echo 1KiB ;; 16384) echo 16KiB ;; 1048576) echo 1MiB ;; *) echo "${1}B" ;; esac
}

# add SYS SIZE METRIC VALUE
add() { V[$1|$2|$3]="${V[$1|$2|$3]:-} $4"; }

# record SYS SIZE JSON TIMEFILE SRV_CPU SRV_RSS [SVC_RSS]: one run of a
# wp-bench-style client (JSON line) wrapped in GNU time (user sys
# maxrss-KiB). SRV_RSS empty: the client is the process that counts
# (embedded); SVC_RSS: peak RSS of the service it uses (etcd).
record() {
  local sys=$1 size=$2 json=$3 tf=$4 scpu=$5 srss=$6 svc=${7:-nan} vals ccpu crss
  local ent bytes mibs eps a50 a99 a999 e50 e99
  vals=$(jq -r '[.entries, .bytes, .mib_per_s, .entries_per_s, .ack_p50_ms, .ack_p99_ms,
                 .ack_p999_ms, .e2e_p50_ms, .e2e_p99_ms] | map(. // "nan") | @tsv' "$json")
  read -r ent bytes mibs eps a50 a99 a999 e50 e99 <<<"$vals"
  ccpu=$(awk '{ printf "%.3f", $1 + $2 }' "$tf")
  crss=$(awk '{ printf "%.1f", $3 / 1024 }' "$tf")
  add "$sys" "$size" entries "$ent"
  add "$sys" "$size" mib_s "$mibs"
  add "$sys" "$size" entries_s "$eps"
  add "$sys" "$size" ack_p50 "$a50"
  add "$sys" "$size" ack_p99 "$a99"
  add "$sys" "$size" ack_p999 "$a999"
  add "$sys" "$size" e2e_p50 "$e50"
  add "$sys" "$size" e2e_p99 "$e99"
  add "$sys" "$size" cpu_srv "${scpu:-nan}"
  add "$sys" "$size" cpu_cli "$ccpu"
  add "$sys" "$size" cpu_gib "$(awk -v s="${scpu:-0}" -v c="$ccpu" -v b="$bytes" \
    'BEGIN { if (b > 0) printf "%.3f", (s + c) / (b / 1073741824); else print "nan" }')"
  if [ -n "$srss" ]; then
    add "$sys" "$size" rss "$srss"
    add "$sys" "$size" rss_cli "$crss"
  else # embedded / single process: its own peak is the one that counts
    add "$sys" "$size" rss "$crss"
    add "$sys" "$size" rss_cli nan
  fi
  add "$sys" "$size" rss_svc "$svc"
  log "$sys $(label "$size"): $(fmt "$mibs" 1) MiB/s, ack p50 $(fmt "$a50" 3) ms" \
    "p99 $(fmt "$a99" 3) ms, e2e p99 $(fmt "$e99" 3) ms"
}

# run OUT CMD...: CMD with stdout to OUT, in the background and waited for,
# so that a signal to this script is acted on at once (cleanup kills CMD).
run() {
  local out=$1 pid rc=0
  shift
  "$@" >"$out" &
  pid=$!
  LIVE[$pid]=1
  wait "$pid" || rc=$?
  unset "LIVE[$pid]"
  return "$rc"
}

# timed TIMEFILE OUT CMD...: run CMD under GNU time ("user sys maxrss-KiB").
timed() {
  local tf=$1 out=$2
  shift 2
  run "$out" /usr/bin/time -f '%U %S %M' -o "$tf" "$@"
}

declare -A WP_N=() # entries per system and size (scaled to the time cap)

# wp_case SYS SIZE WINDOW MIB READER HOOK CONFIG...: `wp bench` embedded, with
# CONFIG (-o key=value ...) before the subcommand. The entry count is MIB of
# data, scaled down from a probe (1/16 of it, no reader) if that would take
# over MAX_S. HOOK is called as `HOOK begin TAG` before each wp run (it may
# add to CFG_EXTRA) and `HOOK end TAG` after it (cleanup); SRV_CPU_PIDS (array:
# the servers whose CPU counts), SVC_PID (the service whose peak RSS counts)
# and CMD_CFG (the configuration as shown in the results) are set by the
# caller. Sets WP_OK=1 on success.
wp_case() {
  local sys=$1 size=$2 w=$3 mib=$4 rd=$5 hook=$6 n secs cpu0 cpu1 svc=nan ok=1
  shift 6
  local dir=$tmp/$sys out=$tmp/$sys.json tf=$tmp/$sys.time
  local rdopt=()
  [ "$rd" = 1 ] && rdopt=(--reader)
  WP_OK=0
  if [ -z "${WP_N[$sys|$size]:-}" ]; then # probe 1/16 of the data, scale to MAX_S
    n=$((mib * 1048576 / size))
    local p=$((n / 16 < 16 ? (n < 16 ? n : 16) : n / 16))
    rm -rf "$dir"
    CFG_EXTRA=()
    $hook begin probe
    if ! run "$out" "$WP" "$@" "${CFG_EXTRA[@]}" -o storage.root="$dir" bench --log bench \
      --entries "$p" --size "$size" --mode async --window "$w" --json; then
      $hook end probe
      log "$sys $(label "$size"): probe failed"
      return 0
    fi
    $hook end probe
    secs=$(jq -r .seconds "$out")
    n=$(awk -v n="$n" -v p="$p" -v s="$secs" -v m="$MAX_S" \
      'BEGIN { e = s * n / p; if (e > m) n = int(n * m / e); if (n < 1) n = 1; print n }')
    WP_N[$sys|$size]=$n
  fi
  n=${WP_N[$sys|$size]}
  rm -rf "$dir"
  CFG_EXTRA=()
  $hook begin run
  CMD[$sys|$size]="wp ${CMD_CFG:-}-o storage.root=DIR bench --log bench --entries $n --size $size --mode async --window $w ${rdopt[*]:+${rdopt[*]} }--json"
  cpu0=$(srv_cpu "${SRV_CPU_PIDS[@]}")
  timed "$tf" "$out" "$WP" "$@" "${CFG_EXTRA[@]}" -o storage.root="$dir" bench --log bench \
    --entries "$n" --size "$size" --mode async --window "$w" "${rdopt[@]}" --json || ok=0
  cpu1=$(srv_cpu "${SRV_CPU_PIDS[@]}")
  [ -n "${SVC_PID:-}" ] && svc=$(proc_hwm_mib "$SVC_PID")
  $hook end run
  rm -rf "$dir"
  if [ "$ok" = 0 ]; then
    log "$sys $(label "$size"): failed"
    return 0
  fi
  local scpu=
  [ ${#SRV_CPU_PIDS[@]} -gt 0 ] && scpu=$(awk -v a="$cpu0" -v b="$cpu1" 'BEGIN { printf "%.3f", b - a }')
  record "$sys" "$size" "$out" "$tf" "$scpu" "" "$svc"
  WP_OK=1
}
no_hook() { :; }

# Woodpecker embedded, local disk, SQLite metadata (the default).
case_woodpecker() {
  SRV_CPU_PIDS=()
  SVC_PID=''
  CMD_CFG=''
  wp_case woodpecker "$1" "$(window_for "$1")" "$MIB" 1 no_hook
}

# etcd_hook begin|end TAG: a fresh meta.prefix per wp run (the probe's log
# metadata stays in etcd after its data directory is removed).
etcd_hook() {
  [ "$1" = begin ] && CFG_EXTRA=(-o "meta.prefix=bench-$2/")
  return 0
}

# Woodpecker embedded, local disk data, metadata in a fresh one-member etcd
# (its CPU counts as server CPU, its peak RSS is rss_svc).
case_wp_etcd() {
  local size=$1
  rm -rf "$tmp/etcd"
  start_etcd "$tmp/etcd"
  SRV_CPU_PIDS=("$SRV_PID")
  SVC_PID=$SRV_PID
  CMD_CFG="-o meta.type=etcd -o meta.etcd.endpoints=http://127.0.0.1:PORT "
  wp_case wp_etcd "$size" "$(window_for "$size")" "$MIB" 1 etcd_hook \
    -o meta.type=etcd -o "meta.etcd.endpoints=http://127.0.0.1:$SRV_PORT"
  stop_pid "$SRV_PID"
  SRV_CPU_PIDS=()
  SVC_PID=''
  rm -rf "$tmp/etcd"
}

# The S3 cases' window: S3_WIN_MIB of entries in flight.
s3_window() {
  awk -v m="$S3_WIN_MIB" -v s="$1" 'BEGIN { w = int(m * 1048576 / s); if (w < 1) w = 1;
                                            if (w > 1000000) w = 1000000; print w }'
}
S3_PFX=
# s3_hook begin|end TAG: a unique object prefix per wp run; at the end,
# count its objects (the timed run's: objs) and delete them.
s3_hook() {
  if [ "$1" = begin ]; then
    S3_PFX="wpbench-$S3_CUR-$2-$$-$RANDOM$RANDOM"
    CFG_EXTRA=(-o "storage.s3.prefix=$S3_PFX")
  else
    if [ "$2" = run ]; then
      S3_OBJS=$("$S3PUT" count "$RGW_ENV" "$S3_PFX/" 2>/dev/null || echo nan)
    fi
    s3_drop "$S3_PFX"
  fi
}

# Woodpecker embedded on the local RGW: default S3 settings (flush.max_bytes
# 2 MiB, flush.max_interval_ms 200), flush.max_threads S3_THREADS.
case_wp_s3() {
  local size=$1
  S3_CUR=$(label "$size") S3_OBJS=nan
  SRV_CPU_PIDS=("${RGW_PIDS[@]}")
  SVC_PID=''
  CMD_CFG="-o storage.type=s3 -o storage.s3.endpoint=URL -o storage.s3.bucket=B -o storage.s3.access_key=K -o storage.s3.secret_key=S -o storage.s3.prefix=UNIQUE -o flush.max_threads=$S3_THREADS "
  wp_case wp_s3 "$size" "$(s3_window "$size")" "$S3_MIB" "$S3_READER" s3_hook \
    -o storage.type=s3 -o "storage.s3.endpoint=$WP_S3_ENDPOINT" -o "storage.s3.bucket=$WP_S3_BUCKET" \
    -o "storage.s3.access_key=$WP_S3_ACCESS_KEY" -o "storage.s3.secret_key=$WP_S3_SECRET_KEY" \
    -o "storage.s3.region=${WP_S3_REGION:-us-east-1}" -o "flush.max_threads=$S3_THREADS"
  [ "$WP_OK" = 1 ] && add wp_s3 "$size" objs "$S3_OBJS"
  SRV_CPU_PIDS=()
}

# The limit of the same RGW: S3_THREADS threads of conditional 2 MiB PUTs
# (If-None-Match: *, like Woodpecker's block uploads) for S3_RAW_S seconds,
# run next to the Woodpecker case of each entry size. ack = one PUT.
case_s3put() {
  local size=$1 out=$tmp/s3put.json tf=$tmp/s3put.time cpu0 cpu1 pfx failed
  local obj=$((2 * 1048576))
  CMD[s3put|$size]="wp-s3put put ENV $obj $S3_THREADS $S3_RAW_S"
  cpu0=$(srv_cpu "${RGW_PIDS[@]}")
  if ! timed "$tf" "$out" "$S3PUT" put "$RGW_ENV" "$obj" "$S3_THREADS" "$S3_RAW_S"; then
    log "s3put ($(label "$size") case): failed"
    return 0
  fi
  cpu1=$(srv_cpu "${RGW_PIDS[@]}")
  pfx=$(jq -r .prefix "$out")
  [ -n "$pfx" ] && [ "$pfx" != null ] && s3_drop "$pfx"
  failed=$(jq -r '.failed // 0' "$out")
  [ "$failed" = 0 ] || log "s3put: $failed PUTs failed"
  # As a wp-bench JSON line: entries = PUTs, ack = one PUT's latency.
  jq -c '{entries: .puts, bytes: (.puts * .size), mib_per_s: .mib_per_s,
          entries_per_s: .puts_per_s, ack_p50_ms: .put_p50_ms, ack_p99_ms: .put_p99_ms,
          ack_p999_ms: null, e2e_p50_ms: null, e2e_p99_ms: null}' "$out" >"$tmp/s3put.line"
  record s3put "$size" "$tmp/s3put.line" "$tf" "$(awk -v a="$cpu0" -v b="$cpu1" 'BEGIN { printf "%.3f", b - a }')" ""
  add s3put "$size" objs "$(jq -r .puts "$out")"
}

case_fio() {
  local size=$1 dir=$tmp/fio out=$tmp/fio.json tf=$tmp/fio.time vals
  mkdir -p "$dir"
  CMD[fio|$size]="fio --name=wal --directory=DIR --ioengine=sync --rw=write --fdatasync=1 --bs=$size --size=${MIB}M --runtime=$MAX_S --output-format=json"
  if ! timed "$tf" /dev/null fio --name=wal --directory="$dir" --ioengine=sync \
    --rw=write --fdatasync=1 --bs="$size" --size="${MIB}M" --runtime="$MAX_S" \
    --output-format=json --output="$out"; then
    log "fio $(label "$size"): failed"
    rm -rf "$dir"
    return 0
  fi
  rm -rf "$dir"
  # As a wp-bench JSON line: ack = fdatasync latency (fio's "sync" section).
  if ! jq -c 'def ms(p): .sync.lat_ns.percentile[p] | if . == null then null else . / 1e6 end;
      .jobs[0] | {entries: .write.total_ios, bytes: .write.io_bytes,
      mib_per_s: (.write.bw_bytes / 1048576), entries_per_s: .write.iops,
      ack_p50_ms: ms("50.000000"), ack_p99_ms: ms("99.000000"), ack_p999_ms: ms("99.900000"),
      e2e_p50_ms: null, e2e_p99_ms: null}' "$out" >"$tmp/fio.line"; then
    log "fio $(label "$size"): unexpected JSON output"
    return 0
  fi
  record fio "$size" "$tmp/fio.line" "$tf" "" ""
}

# case_peer SYS SIZE: fresh server, client run, CPU and peak RSS, stop.
case_peer() {
  local sys=$1 size=$2 dir=$tmp/$1 out=$tmp/$1.json tf=$tmp/$1.time n w cpu0 cpu1 hwm ok=1
  n=$((MIB * 1048576 / size))
  w=$(window_for "$size")
  rm -rf "$dir"
  "start_$sys" "$dir"
  CMD[$sys|$size]="${sys}_bench --port PORT --log bench --entries $n --size $size --window $w --seconds $MAX_S --reader"
  cpu0=$(proc_cpu_s "$SRV_PID")
  timed "$tf" "$out" "$tmp/bin/${sys}_bench" --port "$SRV_PORT" --log bench --entries "$n" \
    --size "$size" --window "$w" --seconds "$MAX_S" --reader || ok=0
  cpu1=$(proc_cpu_s "$SRV_PID")
  hwm=$(proc_hwm_mib "$SRV_PID")
  stop_pid "$SRV_PID"
  if [ "$ok" = 1 ]; then
    record "$sys" "$size" "$out" "$tf" "$(awk -v a="$cpu0" -v b="$cpu1" 'BEGIN { printf "%.3f", b - a }')" "$hwm"
  else
    log "$sys $(label "$size"): client failed"
  fi
  rm -rf "$dir"
}

case_redis() { case_peer redis "$1"; }
case_nats() { case_peer nats "$1"; }

t_start=$(date +%s)
has_sys wp_s3 && start_rgw
for rep in $(seq "$REPS"); do
  log "run $rep of $REPS"
  for size in "${SIZES[@]}"; do
    for sys in "${SYSTEMS[@]}"; do
      sync # start each case without the previous one's dirty pages
      "case_$sys" "$size"
    done
  done
done

# ------------------------------------------- durability check (strace) ---

declare -A SYNCS=() # SYNCS[sys] = "acks fsync-family-calls"
SYNC_CALLS=fsync,fdatasync,sync_file_range,msync,syncfs,sync

# sum_syncs FILE: fsync-family calls in a `strace -c` summary.
sum_syncs() {
  awk '$NF ~ /^(fsync|fdatasync|sync_file_range|msync|syncfs|sync)$/ { n += $4 }
       END { print n + 0 }' "$1"
}

check_peer() {
  local sys=$1 dir=$tmp/$1 sout=$tmp/$1.strace spid _ acks
  rm -rf "$dir"
  "start_$sys" "$dir"
  strace -f -c -e trace="$SYNC_CALLS" -o "$sout" -p "$SRV_PID" 2>"$sout.err" &
  spid=$!
  LIVE[$spid]=1
  for _ in $(seq 50); do grep -q attached "$sout.err" 2>/dev/null && break; sleep 0.1; done
  acks=
  run "$tmp/$sys.check" "$tmp/bin/${sys}_bench" --port "$SRV_PORT" --log bench \
    --entries "$CHECK_ENTRIES" --size 1024 --window "$WIN_SMALL" && acks=$(jq -r .entries "$tmp/$sys.check")
  kill -INT "$spid" 2>/dev/null || true
  wait "$spid" 2>/dev/null || true
  unset "LIVE[$spid]"
  stop_pid "$SRV_PID"
  [ -n "$acks" ] && SYNCS[$sys]="$acks $(sum_syncs "$sout")"
  rm -rf "$dir"
}

if [ "${BENCH_STRACE:-1}" != 0 ] && command -v strace >/dev/null; then
  log "durability check: counting fsync-family calls during $CHECK_ENTRIES acks of 1 KiB"
  if run "$tmp/wpc.json" strace -f -c -e trace="$SYNC_CALLS" -o "$tmp/wp.strace" "$WP" \
    -o storage.root="$tmp/wpc" bench --log bench --entries "$CHECK_ENTRIES" --size 1024 \
    --window "$WIN_SMALL" --json; then
    SYNCS[woodpecker]="$(jq -r .entries "$tmp/wpc.json") $(sum_syncs "$tmp/wp.strace")"
  fi
  rm -rf "$tmp/wpc"
  if has_sys wp_etcd; then # the embedded process's calls; etcd's own WAL syncs are not counted
    rm -rf "$tmp/etcd"
    start_etcd "$tmp/etcd"
    if run "$tmp/wpe.json" strace -f -c -e trace="$SYNC_CALLS" -o "$tmp/wpe.strace" "$WP" \
      -o meta.type=etcd -o "meta.etcd.endpoints=http://127.0.0.1:$SRV_PORT" \
      -o storage.root="$tmp/wpe" bench --log bench --entries "$CHECK_ENTRIES" --size 1024 \
      --window "$WIN_SMALL" --json; then
      SYNCS[wp_etcd]="$(jq -r .entries "$tmp/wpe.json") $(sum_syncs "$tmp/wpe.strace")"
    fi
    stop_pid "$SRV_PID"
    rm -rf "$tmp/wpe" "$tmp/etcd"
  fi
  check_peer redis
  check_peer nats
fi
# The RGW is not needed any more: stop it now (cleanup would, too).
if [ -n "$RGW_DIR" ]; then
  bash "$here/../scripts/rgw.sh" stop "$RGW_DIR" >/dev/null 2>&1 || log "warning: scripts/rgw.sh stop failed"
  RGW_DIR=
fi
t_total=$(($(date +%s) - t_start))

# ------------------------------------------------------------ results ---

median() {
  printf '%s\n' "$@" | { grep -v -e nan -e '^$' || true; } | sort -g |
    awk '{ v[NR] = $1 } END { if (NR == 0) print "nan"; else if (NR % 2) print v[(NR + 1) / 2];
                              else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
# M SYS SIZE METRIC: the median ("nan" if not measured).
M() {
  # shellcheck disable=SC2086
  median ${V[$1|$2|$3]:-nan}
}

# The spread of the throughput over the runs, to judge the noise.
# spread SYS SIZE: "min max" of the MiB/s of the runs ("nan nan" if none).
spread() {
  # shellcheck disable=SC2086
  printf '%s\n' ${V[$1|$2|mib_s]:-} | { grep -v -e nan -e '^$' || true; } | sort -g |
    awk 'NR == 1 { lo = $1 } { hi = $1 } END { if (NR) print lo, hi; else print "nan nan" }'
}
for sys in "${SYSTEMS[@]}"; do
  for size in "${SIZES[@]}"; do
    read -r lo hi <<<"$(spread "$sys" "$size")"
    V[$sys|$size|mib_s_min]=$lo
    V[$sys|$size|mib_s_max]=$hi
  done
done

mkdir -p "$RESULTS"
prev=$(find "$RESULTS" -maxdepth 1 -name '*.tsv' | sort | tail -1)
new_tsv=$tmp/new.tsv
{
  printf 'system\tsize\t%s\n' "$(IFS=$'\t'; echo "${METRICS[*]}")"
  for sys in "${SYSTEMS[@]}"; do
    for size in "${SIZES[@]}"; do
      printf '%s\t%s' "$sys" "$size"
      for m in "${METRICS[@]}"; do printf '\t%s' "$(M "$sys" "$size" "$m")"; done
      printf '\n'
    done
  done
} >"$new_tsv"

# T SYS SIZE METRIC [TSV]: a value from a results TSV (the new one by default).
T() {
  awk -F'\t' -v s="$1" -v z="$2" -v m="$3" '
    NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
    $1 == s && $2 == z && (m in col) { print $(col[m]); found = 1 }
    END { if (!found) print "nan" }' "${4:-$new_tsv}"
}

# change NEW OLD HIGHER_IS_BETTER: "+12.3%" with "(!)" if worse than FLAG_PCT;
# "new" if only NEW has a value (a row or metric the previous run lacked),
# "gone" if only OLD has one.
change() {
  awk -v n="$1" -v o="$2" -v up="$3" -v f="$FLAG_PCT" 'BEGIN {
    if (n != "nan" && o == "nan") { print "new"; exit }
    if (n == "nan" && o != "nan") { print "gone"; exit }
    if (n == "nan" || o == "nan" || o + 0 == 0) { print "-"; exit }
    d = (n - o) / o * 100; worse = up ? -d : d
    printf "%+.1f%%%s", d, (worse > f ? " (!)" : "") }'
}

declare -A NAME=(
  [woodpecker]="Woodpecker (embedded, local disk, SQLite metadata)"
  [wp_etcd]="Woodpecker (embedded, local disk, etcd metadata)"
  [fio]="fio write+fdatasync (physical limit of the disk)"
  [redis]="Redis $(redis-server --version | sed -n 's/.*v=\([0-9.]*\).*/\1/p') Streams"
  [nats]="NATS JetStream $(nats-server --version | sed 's/.*v//')"
  [wp_s3]="Woodpecker (embedded, object storage: local Ceph RGW)"
  [s3put]="raw conditional PUTs of 2 MiB objects, $S3_THREADS threads, same RGW (physical limit of the object store)"
)
short() {
  case $1 in woodpecker) echo wp ;; wp_etcd) echo wp-etcd ;; wp_s3) echo wp-s3 ;;
    s3put) echo raw-put ;; *) echo "$1" ;; esac
}
# entry_label SYS SIZE: the entry column; raw-put rows are 2 MiB objects
# measured next to the wp-s3 case of that entry size.
entry_label() {
  if [ "$1" = s3put ]; then echo "2MiB obj. (next to $(label "$2"))"; else label "$2"; fi
}

# ratio A B: A / B with 2 decimals ("-" if either is missing or B is 0).
ratio() {
  awk -v a="$1" -v b="$2" 'BEGIN { if (a == "nan" || b == "nan" || b + 0 == 0) print "-";
                                    else printf "%.2f", a / b }'
}

print_change() {
  local sys size
  echo
  if [ -z "$prev" ]; then
    echo "Change: no previous results in $RESULTS (this run is the baseline)."
    return
  fi
  echo "Change against $(basename "$prev") (flag (!) = worse by more than $FLAG_PCT %):"
  echo
  printf '%-11s %-6s %26s %26s %26s %26s %26s\n' system size "MiB/s" "ack p50 ms" "ack p99 ms" \
    "e2e p99 ms" "CPU s/GiB"
  for sys in "${SYSTEMS[@]}"; do
    for size in "${SIZES[@]}"; do
      local cells=() m up
      for m in mib_s ack_p50 ack_p99 e2e_p99 cpu_gib; do
        up=0
        [ "$m" = mib_s ] && up=1
        local n o
        n=$(T "$sys" "$size" "$m") o=$(T "$sys" "$size" "$m" "$prev")
        if [ "$n" = nan ] && [ "$o" = nan ]; then
          cells+=("-")
        elif [ "$o" = nan ]; then
          cells+=("new: $(fmt "$n" 2)")
        else
          cells+=("$(fmt "$o" 2) -> $(fmt "$n" 2) $(change "$n" "$o" "$up")")
        fi
      done
      printf '%-11s %-6s %26s %26s %26s %26s %26s\n' "$sys" "$(label "$size")" "${cells[@]}"
    done
  done
}

machine() {
  local cpu mem
  cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
  mem=$(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
  echo "$(nproc) CPUs ($cpu), $mem RAM, Linux $(uname -r), $fs"
}

# ratio_row LABEL A-SYS B-SYS SIZE: a row of the ratio table (A ÷ B).
ratio_row() {
  local cells=() m
  for m in mib_s ack_p50 ack_p99 e2e_p99 cpu_gib rss; do
    cells+=("$(ratio "$(T "$2" "$4" "$m")" "$(T "$3" "$4" "$m")")")
  done
  printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' "$(label "$4")" "$1" "${cells[@]}"
}

write_md() {
  local sys size out=$1
  {
    echo "# Side-by-side benchmark, $DATE"
    echo
    echo "Command: \`$INVOCATION\` (\`make bench-peers\` runs \`bench/run.sh build/wp\`),"
    echo "REPS=$REPS, BENCH_MIB=$MIB, BENCH_MAX_S=$MAX_S, BENCH_WINDOW=$WIN_SMALL,"
    echo "BENCH_WINDOW_LARGE=$WIN_LARGE$(has_sys wp_s3 && echo ", BENCH_S3_MIB=$S3_MIB, BENCH_S3_WINDOW_MIB=$S3_WIN_MIB, BENCH_S3_THREADS=$S3_THREADS, BENCH_S3_RAW_S=$S3_RAW_S, BENCH_S3_READER=$S3_READER")"
    echo "$(has_sys wp_etcd || echo '(BENCH_ETCD=0: no etcd rows) ')$(has_sys wp_s3 || echo '(BENCH_S3=0: no object storage rows) ')The whole run took $t_total s."
    echo
    echo "Machine: $(machine)."
    echo "Versions: Redis $(redis-server --version | sed -n 's/.*v=\([0-9.]*\).*/\1/p')," \
      "hiredis $(dpkg-query -W -f='${Version}' libhiredis-dev 2>/dev/null)," \
      "nats-server $(nats-server --version | sed 's/.*v//')," \
      "cnats $(dpkg-query -W -f='${Version}' libnats-dev 2>/dev/null), $(fio --version)$(
      has_sys wp_etcd && echo ", etcd $(etcd --version 2>/dev/null | sed -n 's/^etcd Version: //p')")$(
      has_sys wp_s3 && echo ", Ceph RGW $(dpkg-query -W -f='${Version}' radosgw 2>/dev/null) (memstore OSD)")."
    echo
    echo "Workload: one writer, one log/stream, async appends with at most $WIN_SMALL in flight"
    echo "(1 KiB, 16 KiB) or $WIN_LARGE (1 MiB), $MIB MiB per case or $MAX_S s, whichever"
    echo "comes first; a tailing reader (own thread, own connection for the peers)"
    echo "measures end-to-end latency from a CLOCK_MONOTONIC stamp in the payload."
    if has_sys wp_s3; then
      echo "On object storage (wp-s3) the window is $S3_WIN_MIB MiB of entries instead"
      echo "($(for size in "${SIZES[@]}"; do printf '%s for %s, ' "$(s3_window "$size")" "$(label "$size")"; done | sed 's/, $//'))"
      echo "and a case is $S3_MIB MiB: an ack waits for the 200 ms flush interval plus a PUT,"
      echo "so a small window would measure the interval, not the store."
      if [ "$S3_READER" = 1 ]; then
        echo "Its tailing reader GETs every block back from the same RGW."
      else
        echo "BENCH_S3_READER=0: the wp-s3 cases ran without the tailing reader."
      fi
    fi
    echo "Every number is the median of $REPS runs (per metric). All local data on the same"
    echo "file system. Redis, NATS and etcd are restarted with an empty data directory"
    echo "per run; the RGW runs for the whole benchmark and every case deletes its objects."
    echo
    echo "Systems:"
    for sys in "${SYSTEMS[@]}"; do
      echo "- $(short "$sys") = ${NAME[$sys]}$([ "$sys" = nats ] && echo " (not durable at ack, see below)")"
    done
    echo
    echo "![chart]($DATE.png)"
    echo
    echo "| system | entry | entries | MiB/s (min–max) | entries/s | ack p50 ms | ack p99 ms | ack p99.9 ms | e2e p50 ms | e2e p99 ms | CPU s/GiB | peak RSS MiB | Δ MiB/s | Δ ack p99 |"
    echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    for sys in "${SYSTEMS[@]}"; do
      for size in "${SIZES[@]}"; do
        local dm=- da=-
        if [ -n "$prev" ]; then
          dm=$(change "$(T "$sys" "$size" mib_s)" "$(T "$sys" "$size" mib_s "$prev")" 1)
          da=$(change "$(T "$sys" "$size" ack_p99)" "$(T "$sys" "$size" ack_p99 "$prev")" 0)
        fi
        printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' \
          "$(short "$sys")" "$(entry_label "$sys" "$size")" "$(fmt "$(T "$sys" "$size" entries)" 0)" \
          "$(fmt "$(T "$sys" "$size" mib_s)" 1) ($(fmt3 "$(T "$sys" "$size" mib_s_min)")–$(fmt3 "$(T "$sys" "$size" mib_s_max)"))" \
          "$(fmt "$(T "$sys" "$size" entries_s)" 0)" \
          "$(fmt "$(T "$sys" "$size" ack_p50)" 3)" "$(fmt "$(T "$sys" "$size" ack_p99)" 3)" \
          "$(fmt "$(T "$sys" "$size" ack_p999)" 3)" "$(fmt "$(T "$sys" "$size" e2e_p50)" 3)" \
          "$(fmt "$(T "$sys" "$size" e2e_p99)" 3)" "$(fmt "$(T "$sys" "$size" cpu_gib)" 2)" \
          "$(fmt "$(T "$sys" "$size" rss)" 1)" "$dm" "$da"
      done
    done
    echo
    if [ -n "$prev" ]; then
      echo "Δ columns: change against \`$(basename "$prev")\`; (!) marks a change worse"
      echo "than $FLAG_PCT %; \"new\": that file has no value for this row."
    else
      echo "Δ columns: empty, no previous results (this run is the baseline)."
    fi
    echo "Single machine, shared and noisy: see the min–max of the runs before"
    echo "calling a change a regression."
    echo
    echo "Columns: MiB/s and entries/s over the writer's time (first append to last"
    echo "ack). ack = append call → durable ack (fio: fdatasync latency of one write,"
    echo "without the write(2) itself; raw-put: latency of one 2 MiB PUT with"
    echo "$S3_THREADS in flight, entries = PUTs). e2e = append call → the tailing reader"
    echo "has the entry. CPU s/GiB = user+system CPU seconds of the server process (from"
    echo "/proc/<pid>/stat utime+stime+cutime+cstime, delta over the client run) plus the"
    echo "client process (GNU time, getrusage of the child: writer and reader threads,"
    echo "startup included), per GiB acked. Woodpecker and fio are one process, so"
    echo "theirs is the whole process; for wp-etcd the server is etcd, for wp-s3 and"
    echo "raw-put it is the whole Ceph cluster (monitor + memstore OSD + radosgw), which"
    echo "shares the 2 cores with the client. Peak RSS = VmHWM of the server (Redis, NATS)"
    echo "or of the embedded process (Woodpecker, every mode: includes the benchmark's"
    echo "per-entry latency arrays, 24 bytes per entry, and on S3 the $S3_WIN_MIB MiB window)"
    echo "or of fio or wp-s3put."
    has_sys wp_etcd && echo "Not in that column: etcd's peak RSS (column \`rss_svc\` of the .tsv:" \
      "$(for size in "${SIZES[@]}"; do printf '%s MiB at %s, ' "$(fmt "$(T wp_etcd "$size" rss_svc)" 1)" "$(label "$size")"; done | sed 's/, $//'))."
    has_sys wp_s3 && echo "The RGW's RSS is not reported: memstore keeps every object in RAM, so it is the data, not a cost."
    echo
    echo "With W appends in flight, ack latency is mostly queueing: about W ÷"
    echo "entries/s (Little's law). fio has one write in flight, so its ack latency is"
    echo "one fdatasync; compare the others' latencies with each other, not with fio."
    echo
    echo "## Ratios"
    echo
    echo "Throughput: > 1 means the first system is faster. Latency, CPU and RSS: < 1"
    echo "means it needs less."
    echo
    echo "| entry | ratio | MiB/s | ack p50 | ack p99 | e2e p99 | CPU s/GiB | peak RSS |"
    echo "|---|---|---:|---:|---:|---:|---:|---:|"
    for size in "${SIZES[@]}"; do
      for sys in fio redis nats; do
        ratio_row "wp ÷ $sys" woodpecker "$sys" "$size"
      done
      has_sys wp_etcd && ratio_row "wp-etcd ÷ wp (etcd vs SQLite metadata)" wp_etcd woodpecker "$size"
      has_sys wp_s3 && ratio_row "wp-s3 ÷ raw-put (2 MiB objects × $S3_THREADS threads)" wp_s3 s3put "$size"
    done
    echo
    echo "### Where the other side wins"
    echo
    wins
    echo
    echo "## Durability at ack: how each system is configured"
    echo
    echo "- **Woodpecker (wp)**: embedded, default configuration (group commit: a flush"
    echo "  writes the buffered entries and fdatasyncs the segment; the append callback"
    echo "  runs after that fdatasync). \`wp bench --mode async --window W --reader\`."
    if has_sys wp_etcd; then
      echo "- **Woodpecker with etcd metadata (wp-etcd)**: the same data path and"
      echo "  durability as wp (fdatasync per flush, local disk); logs, segments and"
      echo "  readers are kept in a one-member etcd $(etcd --version 2>/dev/null | sed -n 's/^etcd Version: //p') on 127.0.0.1 (started"
      echo "  fresh per case, data directory on the same file system, which fsyncs its"
      echo "  own WAL) instead of the embedded SQLite: \`-o meta.type=etcd"
      echo "  -o meta.etcd.endpoints=http://127.0.0.1:PORT\`. An append makes no etcd"
      echo "  request; segment rolls and the writer's open/close do."
    fi
    echo "- **fio**: \`--ioengine=sync --rw=write --fdatasync=1\`: write(2) then"
    echo "  fdatasync(2) for every block of the entry size; no batching. The limit for"
    echo "  one durable write at a time; group-committing systems can exceed it."
    echo "- **Redis**: \`redis-server --appendonly yes --appendfsync always --save ''\`"
    echo "  (other settings default, including automatic AOF rewrite). Redis writes"
    echo "  the AOF and fdatasyncs it in the event loop before it sends the replies of"
    echo "  that loop iteration, so a pipelined XADD reply means the entry is on disk."
    echo "  The stream is also kept whole in memory (peak RSS grows with data)."
    echo "  Client: bench/peers/redis_bench.c (hiredis, XADD pipelined with at most W"
    echo "  replies outstanding; reader XREAD BLOCK on a second connection)."
    echo "- **NATS JetStream 2.9**: \`nats-server -c nats.conf\` with"
    echo "  \`jetstream { store_dir }\`, \`max_payload: 2MB\`; stream with file storage,"
    echo "  1 replica. **Not durable at ack**: 2.9 has no per-message fsync option"
    echo "  (\`sync_interval: always\` arrived in 2.10; 2.9.10 rejects it: \"unknown field"
    echo "  sync_interval\"). The PubAck is sent after the message is written to the"
    echo "  block file (page cache, one pwrite per message in our strace); fsync only"
    echo "  happens in the background on a timer (check below: none at all during"
    echo "  the run). Reported as is: these are *not* durable-at-ack numbers."
    echo "  Client: bench/peers/nats_bench.c (cnats, js_PublishAsync with MaxPending"
    echo "  = W; reader = ordered push consumer on a second connection)."
    if has_sys wp_s3; then
      echo "- **Woodpecker on object storage (wp-s3)**: \`-o storage.type=s3\` against a"
      echo "  local Ceph RGW (scripts/rgw.sh: one monitor, one memstore OSD, radosgw, all"
      echo "  on 127.0.0.1), S3 defaults (flush.max_bytes 2 MiB, flush.max_interval_ms"
      echo "  200), flush.max_threads $S3_THREADS. **Ack = the PUT of the block that holds"
      echo "  the entry succeeded** (conditional PUT, If-None-Match: *); nothing is on"
      echo "  local disk but the SQLite metadata. The object store is only as durable as"
      echo "  its PUT: this RGW's memstore OSD keeps objects in RAM (a test server, so"
      echo "  these numbers show Woodpecker's S3 path, not a disk-backed S3)."
      echo "- **raw-put**: \`wp-s3put put ENV 2097152 $S3_THREADS $S3_RAW_S\`: $S3_THREADS threads,"
      echo "  each PUTting 2 MiB objects one after another, conditional (If-None-Match:"
      echo "  *) like Woodpecker's block uploads, for $S3_RAW_S s, against the same RGW;"
      echo "  ack = the PUT's 200 answer. It is the object store's limit at Woodpecker's"
      echo "  concurrency and block size, whatever the entry size (the entry column says"
      echo "  which wp-s3 case it ran next to)."
    fi
    echo
    if [ ${#SYNCS[@]} -gt 0 ]; then
      echo "Check (strace -f -c on the server / embedded process, separate untimed run"
      echo "of $CHECK_ENTRIES × 1 KiB, window $WIN_SMALL): fsync-family system calls"
      echo "(fsync, fdatasync, sync_file_range, msync, syncfs, sync) per acked entry."
      echo
      echo "| system | acks | fsync-family calls | acks per call |"
      echo "|---|---:|---:|---:|"
      for sys in woodpecker wp_etcd redis nats; do
        [ -n "${SYNCS[$sys]:-}" ] || continue
        read -r a c <<<"${SYNCS[$sys]}"
        printf '| %s | %s | %s | %s |\n' "$(short "$sys")" "$a" "$c" \
          "$(awk -v a="$a" -v c="$c" 'BEGIN { if (c > 0) printf "%.1f", a / c; else print "∞ (no fsync)" }')"
      done
      echo
      echo "Several acks per call is group commit (one fdatasync covers every entry"
      echo "written before it). Zero calls means no entry was durable when acked."
      echo "strace slows every system call, so the batching here is not the batching"
      echo "of the timed runs; the counts show whether and how acks are made durable."
      has_sys wp_etcd && echo "For wp-etcd only the embedded process is traced (etcd's WAL syncs are etcd's own)."
      has_sys wp_s3 && echo "wp-s3 makes no fsync: its acks follow PUTs (next section)."
      echo
    fi
    echo "## Object storage"
    echo
    if has_sys wp_s3; then
      echo "Woodpecker on S3 against the limit of the same server: raw conditional"
      echo "PUTs of **2 MiB objects with $S3_THREADS threads** (Woodpecker's block size and"
      echo "upload concurrency), measured right after the wp-s3 case of each entry size."
      echo "RGW, its OSD and the benchmark share the 2 cores$( [ "$S3_READER" = 1 ] && echo "; wp-s3's tailing reader
GETs every block back from the same RGW while the writer PUTs, raw-put has no reader")."
      echo
      echo "| entry | wp-s3 MiB/s | raw-put MiB/s (2 MiB × $S3_THREADS thr.) | wp-s3 ÷ raw-put | wp-s3 ack p50 / p99 ms | one PUT p50 / p99 ms | objects per GiB (wp-s3; raw: 512) |"
      echo "|---|---:|---:|---:|---:|---:|---:|"
      for size in "${SIZES[@]}"; do
        printf '| %s | %s | %s | %s | %s / %s | %s / %s | %s |\n' "$(label "$size")" \
          "$(fmt "$(T wp_s3 "$size" mib_s)" 1)" "$(fmt "$(T s3put "$size" mib_s)" 1)" \
          "$(ratio "$(T wp_s3 "$size" mib_s)" "$(T s3put "$size" mib_s)")" \
          "$(fmt "$(T wp_s3 "$size" ack_p50)" 0)" "$(fmt "$(T wp_s3 "$size" ack_p99)" 0)" \
          "$(fmt "$(T s3put "$size" ack_p50)" 0)" "$(fmt "$(T s3put "$size" ack_p99)" 0)" \
          "$(awk -v o="$(T wp_s3 "$size" objs)" -v e="$(T wp_s3 "$size" entries)" -v s="$size" \
            'BEGIN { if (o == "nan" || e == "nan" || e + 0 == 0) print "-"; else printf "%.0f", o / (e * s / 1073741824) }')"
      done
      echo
      echo "An ack on S3 waits for flush.max_interval_ms (200 ms) or 2 MiB of entries,"
      echo "then for the PUT, behind up to $S3_WIN_MIB MiB of queued entries: hundreds of ms, not"
      echo "the single-digit ms of the local disk. Objects per GiB below 512 means ready"
      echo "blocks were coalesced into larger objects."
    else
      echo "Not measured in this run (BENCH_S3=0)."
    fi
    echo
    echo "## Commands"
    echo
    for sys in "${SYSTEMS[@]}"; do
      for size in "${SIZES[@]}"; do
        [ -n "${CMD[$sys|$size]:-}" ] && echo "    ${CMD[$sys|$size]}"
      done
    done
    has_sys wp_s3 && echo "    (after every S3 case: wp-s3put delete ENV PREFIX/; radosgw-admin gc process --include-all)"
    echo
    echo "Raw medians: \`$DATE.tsv\` (the next run compares against it)."
  } >"$out"
}

# wins: one bullet per (peer, size) where the peer beats Woodpecker.
wins() {
  local size sys any=0
  for sys in fio redis nats; do
    for size in "${SIZES[@]}"; do
      local what=() m r
      for m in mib_s ack_p50 ack_p99 e2e_p99 cpu_gib rss; do
        r=$(ratio "$(T woodpecker "$size" "$m")" "$(T "$sys" "$size" "$m")")
        [ "$r" = - ] && continue
        if [ "$m" = mib_s ]; then
          awk -v r="$r" 'BEGIN { exit !(r < 1) }' && what+=("throughput (wp ÷ $sys = $r)")
        else
          awk -v r="$r" 'BEGIN { exit !(r > 1) }' && what+=("$m (wp ÷ $sys = $r)")
        fi
      done
      if [ ${#what[@]} -gt 0 ]; then
        any=1
        local joined
        printf -v joined '%s, ' "${what[@]}"
        echo "- $sys, $(label "$size"): ${joined%, }"
      fi
    done
  done
  [ "$any" = 1 ] || echo "- none: Woodpecker is ahead on every metric measured."
}

write_plot() {
  local pd=$tmp/plot sys size
  mkdir -p "$pd"
  {
    printf 'size'
    for sys in "${SYSTEMS[@]}"; do printf '\t%s' "$(short "$sys")"; done
    printf '\n'
    for size in "${SIZES[@]}"; do
      printf '%s' "$(label "$size")"
      for sys in "${SYSTEMS[@]}"; do printf '\t%s' "$(fmt "$(T "$sys" "$size" mib_s)" 2)"; done
      printf '\n'
    done
  } >"$pd/thr.dat"
  : >"$pd/ack.dat"
  : >"$pd/e2e.dat"
  for sys in "${SYSTEMS[@]}"; do
    for size in "${SIZES[@]}"; do
      local xl
      xl="$(short "$sys") $(label "$size")"
      [ "$sys" = s3put ] && xl="raw-put 2MiB ($(label "$size"))"
      printf '"%s"\t%s\t%s\t%s\n' "$xl" \
        "$(fmt "$(T "$sys" "$size" ack_p50)" 4)" "$(fmt "$(T "$sys" "$size" ack_p99)" 4)" \
        "$(fmt "$(T "$sys" "$size" ack_p999)" 4)" >>"$pd/ack.dat"
      case $sys in fio | s3put) continue ;; esac
      printf '"%s %s"\t%s\t%s\n' "$(short "$sys")" "$(label "$size")" \
        "$(fmt "$(T "$sys" "$size" e2e_p50)" 4)" "$(fmt "$(T "$sys" "$size" e2e_p99)" 4)" >>"$pd/e2e.dat"
    done
  done
  local t="Woodpecker side by side, $DATE (fio ack = fdatasync only; NATS 2.9 not durable at ack"
  has_sys wp_s3 && t="$t; raw-put = 2 MiB x $S3_THREADS threads"
  t="$t)"
  gnuplot -e "dir='$pd'; out='$1'; ncol=$((${#SYSTEMS[@]} + 1)); title='$t'" "$here/plot.gp"
}

print_change
write_md "$tmp/new.md"
write_plot "$tmp/new.png"
cp "$new_tsv" "$RESULTS/$DATE.tsv"
cp "$tmp/new.md" "$RESULTS/$DATE.md"
cp "$tmp/new.png" "$RESULTS/$DATE.png"
echo
sed -n '/^| system | entry/,/^$/p' "$RESULTS/$DATE.md"
sed -n '/^| entry | wp-s3 MiB/,/^$/p' "$RESULTS/$DATE.md"
echo "Results: $RESULTS/$DATE.md, $RESULTS/$DATE.png, $RESULTS/$DATE.tsv (took $t_total s)"
