#!/usr/bin/env bash
# quorum.sh — Woodpecker in service mode (storage.type quorum: each flush
# written to 3 LogStore servers, acked at 2) against local mode and against
# the replicated systems users would pick instead, 3 replicas each, in the
# same run on the same machine. What `make bench-quorum` runs:
#   bench/quorum.sh path/to/wp
# Systems (all servers on 127.0.0.1, sharing this machine's cores and disk):
#   wp-quorum  3 `woodpecker logstore` servers; each fdatasyncs before it
#              answers, the writer acks at 2 of 3
#   wp-local   Woodpecker embedded on local disk (one copy)
#   etcd-3     a 3-member etcd cluster (Raft; the leader and a follower have
#              fsynced the entry before the put is answered), client
#              bench/peers/etcd_bench.c (gRPC over HTTP/2, nghttp2)
#   nats-3     a 3-node NATS JetStream cluster, stream with 3 replicas (file
#              storage; 2.9 never fsyncs at ack), client bench/peers/nats_bench.c
# Cases (each REPS times, the median of each metric reported):
#   async 1 KiB, 16 KiB, 1 MiB entries, at most BENCH_WINDOW in flight: MiB/s
#   and ack p50/p99
#   sync 4 KiB entries, one at a time: ack p50/p99 (the database-commit case)
#   read: a log of 1 KiB entries (BENCH_READ_MIB of them) written, then read
#   back from its start with `wp read` (a reader catching up): MiB/s and the
#   reader's CPU seconds (Woodpecker only: quorum against local)
# etcd and NATS clusters are started fresh (empty data directories) for every
# case and run, and stopped right after it; the LogStore servers run for the
# whole benchmark, each run writes a new log.
# Issue 10's targets: sync ack p50 <= 2 x local's; async throughput >= 0.33 x
# local's; Woodpecker quorum ahead of both peers at every size.
#
# Environment (defaults in brackets):
#   REPS [3]                runs per case
#   BENCH_WINDOW [1024]     in-flight appends / puts / publishes in the async
#                           cases, every system (`wp bench`'s default)
#   BENCH_MAX_S [20]        the peer clients stop sending after this long
#   BENCH_PEERS [1]         0: Woodpecker only (no etcd, no NATS)
#   BENCH_CASES [1k 16k 1m sync read]  the cases to run, in that order
#   BENCH_READ_MIB [512]    MiB of 1 KiB entries the read case writes and reads
#   WP_BENCH_DIR            scratch parent [directory of the wp binary]
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
WP=${1:-build/wp}
[ -x "$WP" ] || { echo "bench: no wp binary at '$WP' (run 'make build' first)" >&2; exit 1; }
WP=$(cd "$(dirname "$WP")" && pwd)/$(basename "$WP")
SERVER=$(dirname "$WP")/woodpecker
[ -x "$SERVER" ] || { echo "bench: no server binary at '$SERVER'" >&2; exit 1; }
REPS=${REPS:-3}
WIN=${BENCH_WINDOW:-1024}
MAX_S=${BENCH_MAX_S:-20}
PEERS=${BENCH_PEERS:-1}
CASES=${BENCH_CASES:-1k 16k 1m sync read}
READ_MIB=${BENCH_READ_MIB:-512}

log() { echo "bench: $*" >&2; }
die() { log "error: $*"; exit 1; }

# Debian packages of the peers, installed only if missing (quietly).
install_deps() {
  local pkgs=(etcd-server etcd-client nats-server libnats-dev libnghttp2-dev gcc curl gnuplot-nox)
  local missing=() p sudo=
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
[ "$PEERS" = 0 ] || install_deps

parent=${WP_BENCH_DIR:-$(dirname "$WP")}
tmp=$(mktemp -d "$parent/wp-bench-quorum.XXXXXX")
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
disks=$(lsblk -d -n -o TYPE,SIZE 2>/dev/null | awk '$1 == "disk" && $2 != "0B"' | wc -l)
log "scratch directory $tmp, $fs"
case $fs in tmpfs*) log "warning: scratch is on tmpfs, fsync means nothing there (set WP_BENCH_DIR)" ;; esac
echo "bench: one machine, $(nproc) cores, $disks disk(s): every server and client of every system"
echo "bench: runs on them, all data in $fs (3 replicas = 3 copies on the same disk)"

if [ "$PEERS" != 0 ]; then
  mkdir -p "$tmp/bin"
  CFLAGS=(-O2 -std=c11 -Wall -Wextra -D_GNU_SOURCE)
  gcc "${CFLAGS[@]}" "$here/peers/etcd_bench.c" -o "$tmp/bin/etcd_bench" -lnghttp2 -lm
  gcc "${CFLAGS[@]}" "$here/peers/nats_bench.c" -o "$tmp/bin/nats_bench" -lnats -lpthread -lm
fi

# ------------------------------------------------------------- servers ---

# free_ports N: N distinct ports nobody listens on (random, 20000-59999).
free_ports() {
  local got=() p _
  for _ in $(seq 200); do
    p=$((20000 + RANDOM % 40000))
    [[ " ${got[*]:-} " == *" $p "* ]] && continue
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && continue
    got+=("$p")
    [ ${#got[@]} = "$1" ] && { echo "${got[*]}"; return 0; }
  done
  return 1
}

# stop_pids PID...: SIGTERM, up to 15 s, then SIGKILL.
stop_pids() {
  local p _
  for p in "$@"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "$@"; do
    for _ in $(seq 150); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
    unset "LIVE[$p]"
  done
}

# The LogStore servers: started once, one after the other (three starting at
# once on a new nodes.sqlite can fail with "database is locked").
nodes=""
for i in 0 1 2; do
  mkdir -p "$tmp/s$i"
  "$SERVER" logstore -o node.id="bench$i" -o node.listen=127.0.0.1:0 -o node.data_dir="$tmp/s$i" \
    -o meta.path="$tmp/nodes.sqlite" -o node.disk_reserve_bytes=0 >"$tmp/s$i.out" 2>"$tmp/s$i.err" &
  LIVE[$!]=1
  for _ in $(seq 50); do grep -q "serving on" "$tmp/s$i.out" && break; sleep 0.1; done
  addr=$(sed -n 's/.*serving on //p' "$tmp/s$i.out")
  [ -n "$addr" ] || { echo "bench: server $i did not start"; cat "$tmp/s$i.err"; exit 1; }
  nodes+="${nodes:+,}$addr"
done
echo "bench: wp-quorum: 3 LogStore servers at $nodes, for the whole run"

# start_etcd3 DIR: a 3-member etcd cluster, fresh. Sets ETCD_PIDS, ETCD_LEADER
# (host:port of the leader's client URL) and, the first time, ETCD_CMD (the
# command of member e0, as run).
ETCD_CMD=''
start_etcd3() {
  local dir=$1 try i ok ports cl=() pe=() ic='' cmd
  for try in 1 2 3; do
    rm -rf "$dir"
    mkdir -p "$dir"
    read -r -a ports <<<"$(free_ports 6)" || die "no free ports"
    cl=("${ports[@]:0:3}") pe=("${ports[@]:3:3}") ic='' ETCD_PIDS=()
    for i in 0 1 2; do ic+="${ic:+,}e$i=http://127.0.0.1:${pe[$i]}"; done
    for i in 0 1 2; do
      cmd=(etcd --name "e$i" --data-dir "$dir/e$i" --logger=zap --log-level=warn
           --listen-client-urls "http://127.0.0.1:${cl[$i]}" --advertise-client-urls "http://127.0.0.1:${cl[$i]}"
           --listen-peer-urls "http://127.0.0.1:${pe[$i]}" --initial-advertise-peer-urls "http://127.0.0.1:${pe[$i]}"
           --initial-cluster "$ic" --initial-cluster-state new --initial-cluster-token "bench-$try")
      [ -n "$ETCD_CMD" ] || [ "$i" != 0 ] || ETCD_CMD="${cmd[*]}"
      "${cmd[@]}" >"$dir/e$i.log" 2>&1 &
      ETCD_PIDS+=($!)
      LIVE[$!]=1
    done
    ok=1
    for i in 0 1 2; do
      for _ in $(seq 150); do
        curl -sf "http://127.0.0.1:${cl[$i]}/health" 2>/dev/null | grep -q true && continue 2
        kill -0 "${ETCD_PIDS[$i]}" 2>/dev/null || break
        sleep 0.1
      done
      ok=0
      break
    done
    if [ "$ok" = 1 ]; then
      ETCD_LEADER=$(ETCDCTL_API=3 etcdctl --endpoints="127.0.0.1:${cl[0]},127.0.0.1:${cl[1]},127.0.0.1:${cl[2]}" \
        endpoint status -w simple 2>/dev/null | awk -F', ' '$5 == "true" { print $1; exit }')
      [ -n "$ETCD_LEADER" ] && return 0
    fi
    stop_pids "${ETCD_PIDS[@]}"
  done
  die "etcd cluster did not start: $(tail -3 "$dir/e0.log" 2>/dev/null)"
}

# start_nats3 DIR: a 3-node NATS cluster with JetStream, fresh. Sets
# NATS_PIDS, NATS_SERVERS (name=url list for nats_bench --servers) and, the
# first time, NATS_CONF (node n0's configuration file, as run).
NATS_CONF=''
start_nats3() {
  local dir=$1 try i ok ports routes
  for try in 1 2 3; do
    rm -rf "$dir"
    mkdir -p "$dir"
    read -r -a ports <<<"$(free_ports 9)" || die "no free ports"
    routes='' NATS_SERVERS='' NATS_PIDS=()
    for i in 0 1 2; do routes+="${routes:+, }\"nats-route://127.0.0.1:${ports[$((3 + i))]}\""; done
    for i in 0 1 2; do
      cat >"$dir/n$i.conf" <<EOF
server_name: n$i
listen: "127.0.0.1:${ports[$i]}"
http: "127.0.0.1:${ports[$((6 + i))]}"
max_payload: 2MB
jetstream { store_dir: "$dir/js$i" }
cluster { name: bench, listen: "127.0.0.1:${ports[$((3 + i))]}", routes: [ $routes ] }
EOF
      [ -n "$NATS_CONF" ] || [ "$i" != 0 ] || NATS_CONF=$(grep -v '^$' "$dir/n$i.conf" | tr '\n' ';' | sed 's/;$//')
      nats-server -c "$dir/n$i.conf" >"$dir/n$i.log" 2>&1 &
      NATS_PIDS+=($!)
      LIVE[$!]=1
      NATS_SERVERS+="${NATS_SERVERS:+,}n$i=nats://127.0.0.1:${ports[$i]}"
    done
    ok=1
    for i in 0 1 2; do
      for _ in $(seq 150); do
        curl -sf "http://127.0.0.1:${ports[$((6 + i))]}/healthz" 2>/dev/null | grep -q '"ok"' && continue 2
        kill -0 "${NATS_PIDS[$i]}" 2>/dev/null || break
        sleep 0.1
      done
      ok=0
      break
    done
    [ "$ok" = 1 ] && return 0
    stop_pids "${NATS_PIDS[@]}"
  done
  die "NATS cluster did not start: $(tail -3 "$dir/n0.log" 2>/dev/null)"
}

# ---------------------------------------------------------------- cases ---

jget() { python3 -c 'import json,sys; v=json.load(open(sys.argv[1])).get(sys.argv[2]); print("nan" if v is None else v)' "$1" "$2"; }
median() {
  printf '%s\n' "$@" | { grep -v nan || true; } | sort -g |
    awk '{ v[NR] = $1 } END { if (NR == 0) print "nan"; else if (NR % 2) print v[(NR + 1) / 2];
                              else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "nan" || b == "nan" || b + 0 == 0) print "-"; else printf "%.2f", a / b }'; }
num() { awk -v v="$1" -v d="$2" 'BEGIN { if (v == "nan" || v == "") print "-"; else printf "%.*f", d, v }'; }

SYSTEMS=(wp-quorum wp-local)
[ "$PEERS" = 0 ] || SYSTEMS+=(etcd-3 nats-3)
declare -A V=() CMD=() # V[sys|metric] (space-separated, one per run), CMD[sys]: rep 1's command

# one SYS OUT CMD...: run CMD (stdout to OUT), record its JSON metrics under
# SYS. CMD runs in the background and is waited for, so that a signal to
# this script is acted on at once (cleanup kills CMD).
one() {
  local sys=$1 out=$2 m pid rc=0
  shift 2
  [ -n "${CMD[$sys]:-}" ] || CMD[$sys]="$*"
  "$@" >"$out" 2>"$out.err" &
  pid=$!
  LIVE[$pid]=1
  wait "$pid" || rc=$?
  unset "LIVE[$pid]"
  if [ "$rc" != 0 ]; then
    log "$sys failed (exit $rc): $(tail -3 "$out.err")"
    echo '{}' >"$out"
  fi
  for m in mib_per_s ack_p50_ms ack_p99_ms entries; do V[$sys|$m]+=" $(jget "$out" "$m")"; done
}

# one_read SYS OUT LOG ENTRIES SIZE WP-ARGS...: writes LOG (wp bench, not
# measured), then reads it back from its start to /dev/null (wp read
# --format raw); OUT gets mib_per_s (payload ÷ the read's wall time) and
# cpu_s (the reader's user + sys).
one_read() {
  local sys=$1 out=$2 lg=$3 n=$4 size=$5
  shift 5
  "$@" bench --log "$lg" --entries "$n" --size "$size" --json >"$out.w" 2>"$out.err" ||
    { log "$sys: writing $lg failed: $(tail -3 "$out.err")"; echo '{}' >"$out"; return; }
  [ -n "${CMD[$sys]:-}" ] || CMD[$sys]="$* read $lg --count $n --format raw >/dev/null  (after: $* bench --log $lg --entries $n --size $size)"
  local TIMEFORMAT='%R %U %S' rc=0 t
  { time "$@" read "$lg" --count "$n" --format raw >/dev/null 2>"$out.err" || rc=$?; } 2>"$out.time"
  [ "$rc" = 0 ] || { log "$sys: reading $lg failed: $(tail -3 "$out.err")"; echo '{}' >"$out"; return; }
  t=$(tail -1 "$out.time")
  awk -v n="$n" -v s="$size" -v t="$t" 'BEGIN {
    split(t, u, " "); printf "{\"mib_per_s\": %.3f, \"cpu_s\": %.3f, \"entries\": %d}\n",
    n * s / 1048576 / u[1], u[2] + u[3], n }' >"$out"
  for m in mib_per_s cpu_s entries; do V[$sys|$m]+=" $(jget "$out" "$m")"; done
}

run=0
# bench MODE SIZE ENTRIES WINDOW: REPS runs of every system.
bench() {
  local mode=$1 size=$2 n=$3 w=$4 r sys m
  local wopt=(--window "$w") pwin=$w
  [ "$mode" = sync ] && wopt=() pwin=1
  V=() CMD=()
  if [ "$mode" = read ]; then
    for r in $(seq "$REPS"); do
      run=$((run + 1))
      one_read wp-quorum "$tmp/q$run.json" "qr$run" "$n" "$size" "$WP" -o storage.type=quorum \
        -o quorum.nodes="$nodes" -o meta.path="$tmp/q.sqlite" -o storage.root="$tmp/q"
      one_read wp-local "$tmp/l$run.json" "lr$run" "$n" "$size" "$WP" -o storage.root="$tmp/local"
    done
    for sys in wp-quorum wp-local; do
      # shellcheck disable=SC2086
      for m in mib_per_s cpu_s entries; do V[$sys|$m]=$(median ${V[$sys|$m]}); done
    done
    return
  fi
  for r in $(seq "$REPS"); do
    run=$((run + 1))
    one wp-quorum "$tmp/q$run.json" "$WP" -o storage.type=quorum -o quorum.nodes="$nodes" \
      -o meta.path="$tmp/q.sqlite" -o storage.root="$tmp/q" \
      bench --log "q$run" --mode "$mode" --entries "$n" --size "$size" "${wopt[@]}" --json
    one wp-local "$tmp/l$run.json" "$WP" -o storage.root="$tmp/local" \
      bench --log "l$run" --mode "$mode" --entries "$n" --size "$size" "${wopt[@]}" --json
    [ "$PEERS" = 0 ] && continue
    start_etcd3 "$tmp/etcd"
    one etcd-3 "$tmp/e$run.json" "$tmp/bin/etcd_bench" --host "${ETCD_LEADER%:*}" --port "${ETCD_LEADER##*:}" \
      --log "e$run" --entries "$n" --size "$size" --window "$pwin" --seconds "$MAX_S"
    stop_pids "${ETCD_PIDS[@]}"
    rm -rf "$tmp/etcd"
    start_nats3 "$tmp/nats"
    one nats-3 "$tmp/n$run.json" "$tmp/bin/nats_bench" --servers "$NATS_SERVERS" --replicas 3 \
      --log "n$run" --entries "$n" --size "$size" --window "$pwin" --seconds "$MAX_S"
    stop_pids "${NATS_PIDS[@]}"
    rm -rf "$tmp/nats"
  done
  for sys in "${SYSTEMS[@]}"; do
    # shellcheck disable=SC2086
    for m in mib_per_s ack_p50_ms ack_p99_ms entries; do V[$sys|$m]=$(median ${V[$sys|$m]}); done
  done
}

label() { case $1 in 1024) echo "1 KiB" ;; 4096) echo "4 KiB" ;; 16384) echo "16 KiB" ;; 1048576) echo "1 MiB" ;; esac; }
declare -A SUMMARY=() # SUMMARY[case|sys] = quorum ÷ sys on the case's main metric

# report MODE SIZE ENTRIES: the table of one case (medians), ratios, commands.
report() {
  local mode=$1 size=$2 n=$3 sys key main what
  local q_m=${V[wp-quorum|mib_per_s]:-nan} q_a=${V[wp-quorum|ack_p50_ms]:-nan} q_b=${V[wp-quorum|ack_p99_ms]:-nan}
  key="$mode $(label "$size")"
  echo
  if [ "$mode" = read ]; then
    echo "== read back $(label "$size") x $n from the start (a reader catching up), median of $REPS"
    printf '  %-10s %9s %14s %9s\n' system MiB/s "reader CPU s" entries
    for sys in wp-quorum wp-local; do
      printf '  %-10s %9s %14s %9s\n' "$sys" "$(num "${V[$sys|mib_per_s]}" 1)" \
        "$(num "${V[$sys|cpu_s]}" 2)" "$(num "${V[$sys|entries]}" 0)"
    done
    echo "  catch-up read wp-quorum / wp-local: $(ratio "$q_m" "${V[wp-local|mib_per_s]}") (no target: 3 servers and the reader share the cores)"
    for sys in wp-quorum wp-local; do echo "  command $sys: ${CMD[$sys]}"; done
    return
  fi
  if [ "$mode" = sync ]; then
    echo "== sync $(label "$size") x $n, one at a time$([ "$PEERS" = 0 ] || echo " (peers: window 1)"), median of $REPS"
  else
    echo "== async $(label "$size") x $n, window $WIN, median of $REPS"
  fi
  printf '  %-10s %9s %11s %11s %9s   %-27s\n' system MiB/s "ack p50 ms" "ack p99 ms" entries \
    "wp-quorum ÷ it: MiB/s p50 p99"
  for sys in "${SYSTEMS[@]}"; do
    printf '  %-10s %9s %11s %11s %9s' "$sys" "$(num "${V[$sys|mib_per_s]}" 1)" \
      "$(num "${V[$sys|ack_p50_ms]}" 3)" "$(num "${V[$sys|ack_p99_ms]}" 3)" "$(num "${V[$sys|entries]}" 0)"
    [ "$sys" = wp-quorum ] || printf '   %8s %6s %6s' "$(ratio "$q_m" "${V[$sys|mib_per_s]}")" \
      "$(ratio "$q_a" "${V[$sys|ack_p50_ms]}")" "$(ratio "$q_b" "${V[$sys|ack_p99_ms]}")"
    printf '\n'
  done
  if [ "$mode" = sync ]; then
    echo "  sync ack p50 wp-quorum / wp-local: $(ratio "$q_a" "${V[wp-local|ack_p50_ms]}") (target <= 2)"
    main=ack_p50_ms what="ack p50"
  else
    echo "  throughput wp-quorum / wp-local: $(ratio "$q_m" "${V[wp-local|mib_per_s]}") (target >= 0.33; 3 copies on one disk)"
    main=mib_per_s what=MiB/s
  fi
  for sys in "${SYSTEMS[@]}"; do
    case $sys in wp-*) continue ;; esac
    local r ahead
    r=$(ratio "${V[wp-quorum|$main]}" "${V[$sys|$main]}")
    SUMMARY[$key|$sys]=$r
    if [ "$r" = - ]; then ahead="no figure"
    elif [ "$main" = mib_per_s ]; then
      ahead=$(awk -v r="$r" 'BEGIN { print (r > 1 ? "ahead" : "behind") }')
    else
      ahead=$(awk -v r="$r" 'BEGIN { print (r < 1 ? "ahead" : "behind") }')
    fi
    echo "  wp-quorum vs $sys: $ahead ($what ratio $r; target: ahead)"
  done
  for sys in "${SYSTEMS[@]}"; do echo "  command $sys: ${CMD[$sys]}"; done
  # The chart's data (bench/plot.gp): throughput of the async cases, ack
  # latency of every case ("-": not measured).
  if [ "$mode" = async ]; then
    local row; row=$(label "$size" | tr -d ' ')
    for sys in "${SYSTEMS[@]}"; do row+=" $(num "${V[$sys|mib_per_s]}" 1)"; done
    echo "$row" >>"$tmp/chart/thr.dat"
  fi
  for sys in "${SYSTEMS[@]}"; do
    echo "\"$sys $mode $(label "$size" | tr -d ' ')\" $(num "${V[$sys|ack_p50_ms]}" 3) $(num "${V[$sys|ack_p99_ms]}" 3) -" \
      >>"$tmp/chart/ack.dat"
  done
}

declare -A CASE=([1k]="async 1024 20000" [16k]="async 16384 4000" [1m]="async 1048576 200"
                  [sync]="sync 4096 2000" [read]="read 1024 $((READ_MIB * 1024))")
mkdir -p "$tmp/chart"
echo "size ${SYSTEMS[*]}" >"$tmp/chart/thr.dat"
for c in $CASES; do
  [ -n "${CASE[$c]:-}" ] || die "BENCH_CASES: no case '$c' (1k 16k 1m sync read)"
  read -r mode size n <<<"${CASE[$c]}"
  bench "$mode" "$size" "$n" "$WIN"
  report "$mode" "$size" "$n"
done

# The chart (gnuplot, when present): bench/results/<date>-quorum.png, or
# under BENCH_RESULTS.
if command -v gnuplot >/dev/null && [ "$(wc -l <"$tmp/chart/thr.dat")" -gt 1 ]; then
  out_dir=${BENCH_RESULTS:-$(cd "$(dirname "$0")" && pwd)/results}
  mkdir -p "$out_dir"
  png="$out_dir/$(date +%F)-quorum.png"
  gnuplot -e "dir='$tmp/chart'; out='$png'; ncol=$((${#SYSTEMS[@]} + 1)); e2e=0; title='make bench-quorum $(date +%F): 3 replicas on one machine (2 cores, one disk)'" \
    "$(cd "$(dirname "$0")" && pwd)/plot.gp" 2>"$tmp/gnuplot.err" &&
    echo "bench: chart $png" >&2 || log "no chart: $(tail -2 "$tmp/gnuplot.err")"
fi

if [ "$PEERS" != 0 ]; then
  echo
  echo "== wp-quorum ÷ peer (async: MiB/s, > 1 = Woodpecker ahead; sync: ack p50, < 1 = ahead)"
  printf '  %-12s %8s %8s\n' case etcd-3 nats-3
  for key in "async 1 KiB" "async 16 KiB" "async 1 MiB" "sync 4 KiB"; do
    [ -n "${SUMMARY[$key|etcd-3]:-}" ] || continue
    printf '  %-12s %8s %8s\n' "$key" "${SUMMARY[$key|etcd-3]}" "${SUMMARY[$key|nats-3]}"
  done
  echo
  echo "Servers (fresh per case and run; ports change, the rest does not):"
  echo "  etcd-3: 3 members e0..e2 (etcd $(etcd --version 2>/dev/null | sed -n 's/^etcd Version: //p')), e0's command:"
  echo "    $ETCD_CMD"
  echo "    the client puts to the Raft leader (found with etcdctl endpoint status)"
  echo "  nats-3: 3 nodes n0..n2 (nats-server $(nats-server --version 2>/dev/null | sed 's/^nats-server: //')), n0's nats.conf:"
  echo "    $NATS_CONF"
  echo "    stream: file storage, 3 replicas; the writer connects to the stream's leader"
  echo "  NATS 2.9 does not fsync before acking (no sync_interval option before 2.10):"
  echo "  its acks mean 2 of 3 servers have the message in the page cache, not on disk."
fi
