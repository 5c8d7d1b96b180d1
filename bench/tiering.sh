#!/usr/bin/env bash
# tiering.sh — sustained ingest in service mode with tiering on (issue 11):
# one writer appends to 3 LogStore servers for DURATION seconds while the
# servers upload every completed segment to object storage (a local Ceph
# RGW), seal it and drop their copies. What `make bench-tiering` runs:
#   bench/tiering.sh path/to/wp
# In one run, against the same RGW:
#   raw    the RGW's raw PUT limit: REPS runs of THREADS threads of
#          conditional RAW_SIZE PUTs for SECONDS_RAW s (wp-s3put, as
#          bench/s3.sh), the median; measured before the servers start
#   wp     `wp bench --seconds DURATION` (async ENTRY_SIZE entries, window
#          WINDOW, storage.type quorum, segment.max_bytes SEGMENT_BYTES)
#          against 3 `woodpecker logstore` servers with storage.s3.* set
#          (tiering), node.drop_grace_ms DROP_GRACE_MS, gc.interval_ms 1000,
#          retention.ttl_ms 0, and a /metrics endpoint each
#   truncator  every TRUNCATE_EVERY s, truncates the log up to the newest
#          segment that is at least KEEP_SEGMENTS behind the writer's and
#          below the oldest one not yet sealed (a segment waiting for its
#          upload is never truncated: the servers hold what the uploaders
#          have not taken, so their bytes stay bounded only if upload keeps
#          up); the servers' GC then deletes it from their disks and from
#          the bucket; `radosgw-admin gc process --include-all` every
#          RGW_GC_EVERY s frees the deleted objects (the memstore OSD is RAM)
#   sampler    every second, per server: bytes held (du of node.data_dir)
#          and its /metrics (upload waiting segments/bytes, upload lag,
#          uploaded bytes, S3 requests by method, ADD bytes received)
# After the writer stops it waits (up to DRAIN_MAX s) for the servers to
# upload what is left. Then the catch-up phase measures the uploaders' own
# limit: the servers restarted with node.upload_delay_ms of a day take
# CATCHUP_BYTES of appends to another log, are restarted without the delay
# and upload that backlog with no writer running (MiB/s = the bytes they
# sealed / the time it took; no truncation meanwhile). Then it prints the
# table (each figure with the command it comes from), and writes
# bench/results/<date>-tiering.png (bytes held and upload lag per server
# over time, ingest and upload MiB/s), the samples as <date>-tiering.csv
# and the report as <date>-tiering.md (or under BENCH_RESULTS).
# Issue 11's target: upload keeps up with ingest at >= 0.8 x the raw PUT
# limit of the same RGW.
#
# Environment (defaults in brackets):
#   DURATION [180]          seconds of appending
#   REPS [3]                runs of the raw PUT limit (median)
#   THREADS [16] RAW_SIZE [2097152] SECONDS_RAW [5]   the raw runs' shape
#                           (bench/s3.sh's: Woodpecker's S3 block size and
#                           upload concurrency)
#   ENTRY_SIZE [16384] WINDOW [1024]   the writer's entries
#   SEGMENT_BYTES [64MiB]   segment.max_bytes of the writer
#   DROP_GRACE_MS [3000]    node.drop_grace_ms of the servers
#   UPLOAD_THREADS []       node.upload_threads of the servers (empty: default)
#   KEEP_SEGMENTS [3] TRUNCATE_EVERY [5] RGW_GC_EVERY [10]
#   WARMUP [DURATION/6]     seconds at the start left out of the steady part
#   BOUND_SLACK [4 x SEGMENT_BYTES]   bytes held count as bounded if each
#                           server's maximum over the last third of the
#                           steady part is at most this much above its
#                           first third's (what a server holds follows the
#                           ingest rate: the active segment, those waiting,
#                           and DROP_GRACE_MS worth of sealed ones; the
#                           rate moves by tens of % on a shared machine)
#   CATCHUP_BYTES [2GiB]    the catch-up phase's backlog (0: no such phase)
#   DRAIN_MAX [120]         seconds to wait for the uploads after the writer
#   ATTEMPTS [3]            a sustained phase whose writer fails is thrown
#                           away (servers, metadata, objects) and started
#                           over, at most this many times in all; the report
#                           lists each failure
#   WP_S3_ENV               an S3 server's env file (scripts/rgw.sh's format)
#                           instead of starting RGW here
#   WP_BENCH_DIR            scratch parent [directory of the wp binary]
#   BENCH_RESULTS           where the png/csv/md go [bench/results]
#   KEEP_SCRATCH            non-empty: keep the scratch directory (the
#                           servers' logs, metadata, samples) for a look
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
WP=${1:-build/wp}
[ -x "$WP" ] || { echo "bench: no wp binary at '$WP' (run 'make build' first)" >&2; exit 1; }
WP=$(cd "$(dirname "$WP")" && pwd)/$(basename "$WP")
SERVER=$(dirname "$WP")/woodpecker
PUT=$(dirname "$WP")/wp-s3put
for b in "$SERVER" "$PUT"; do [ -x "$b" ] || { echo "bench: no binary at '$b'" >&2; exit 1; }; done
DURATION=${DURATION:-180}
REPS=${REPS:-3}
THREADS=${THREADS:-16}
RAW_SIZE=${RAW_SIZE:-2097152}
SECONDS_RAW=${SECONDS_RAW:-5}
ENTRY_SIZE=${ENTRY_SIZE:-16384}
WINDOW=${WINDOW:-1024}
SEGMENT_BYTES=${SEGMENT_BYTES:-64MiB}
DROP_GRACE_MS=${DROP_GRACE_MS:-3000}
UPLOAD_THREADS=${UPLOAD_THREADS:-}
KEEP_SEGMENTS=${KEEP_SEGMENTS:-3}
TRUNCATE_EVERY=${TRUNCATE_EVERY:-5}
RGW_GC_EVERY=${RGW_GC_EVERY:-10}
WARMUP=${WARMUP:-$((DURATION / 6))}
DRAIN_MAX=${DRAIN_MAX:-120}
ATTEMPTS=${ATTEMPTS:-3}
LOG=tier
seg_bytes=$(python3 -c '
import re, sys
m = re.fullmatch(r"(\d+)\s*([KMG]?)(i?B)?", sys.argv[1])
print(int(m.group(1)) << {"": 0, "K": 10, "M": 20, "G": 30}[m.group(2)] if m else "")' "$SEGMENT_BYTES")
[ -n "$seg_bytes" ] || { echo "bench: SEGMENT_BYTES '$SEGMENT_BYTES' is not a size" >&2; exit 1; }
BOUND_SLACK=${BOUND_SLACK:-$((4 * seg_bytes))}
CATCHUP_BYTES=${CATCHUP_BYTES:-$((2 << 30))}

log() { echo "bench: $*" >&2; }
die() { log "error: $*"; exit 1; }

# Debian packages, installed only if missing (quietly): RGW (unless another
# S3 server is named), gnuplot for the chart.
install_deps() {
  local pkgs=(gnuplot-nox python3) missing=() p sudo=
  [ -n "${WP_S3_ENV:-}" ] || pkgs+=(ceph-mon ceph-osd radosgw ceph-common)
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

parent=${WP_BENCH_DIR:-$(dirname "$WP")}
tmp=$(mktemp -d "$parent/wp-bench-tiering.XXXXXX")
declare -A LIVE=() # pid -> 1 for every process we started and did not reap yet
rgw_started='' env_file='' pfx="wptier-$$-$(date +%s)"
cleanup() {
  local p
  [ -z "${run:-}" ] || touch "$run/stop" "$run/stop.trunc" 2>/dev/null || true
  for p in "${!LIVE[@]}"; do
    pkill -TERM -P "$p" 2>/dev/null || true # a loop's current child (wp, sleep)
    kill -TERM "$p" 2>/dev/null || true
  done
  sleep 0.5
  for p in "${!LIVE[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ -n "$rgw_started" ]; then
    bash "$here/../scripts/rgw.sh" stop "$tmp/rgw" >/dev/null 2>&1 || true
  elif [ -n "$env_file" ]; then # someone else's server: leave nothing of ours in it
    "$PUT" delete "$env_file" "$pfx-a" >/dev/null 2>&1 || true
  fi
  if [ -n "${KEEP_SCRATCH:-}" ]; then log "kept $tmp (KEEP_SCRATCH)"; else rm -rf "$tmp"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fs=$(df -PT "$tmp" | awk 'NR == 2 { print $2 " on " $7 " (" $1 ")" }')
log "scratch directory $tmp, $fs"
echo "bench: one machine, $(nproc) cores: the writer, 3 LogStore servers (3 copies on one disk, $fs),"
echo "bench: their uploaders and the RGW (monitor, memstore OSD, radosgw) all share them"

# ----------------------------------------------------------------- RGW ---

env_file=${WP_S3_ENV:-}
if [ -z "$env_file" ]; then
  log "starting a local Ceph RGW (scripts/rgw.sh, ~15 s)"
  bash "$here/../scripts/rgw.sh" start "$tmp/rgw" >"$tmp/rgw.out" 2>&1 || { cat "$tmp/rgw.out" >&2; die "RGW did not start"; }
  rgw_started=1
  env_file=$tmp/rgw/env
fi
# shellcheck disable=SC1090
. "$env_file"
log "S3 endpoint $WP_S3_ENDPOINT (bucket $WP_S3_BUCKET, prefix $pfx)"
rgw_gc() {
  [ -n "$rgw_started" ] || return 0
  timeout 60 radosgw-admin -c "$tmp/rgw/ceph.conf" gc process --include-all >/dev/null 2>&1 || true
}

jget() { python3 -c 'import json,sys; v=json.load(open(sys.argv[1])).get(sys.argv[2]); print("nan" if v is None else v)' "$1" "$2"; }

# The raw PUT limit, before the servers start (nothing else uses the RGW).
RAW_CMD=("$PUT" put "$env_file" "$RAW_SIZE" "$THREADS" "$SECONDS_RAW")
raws=()
for r in $(seq "$REPS"); do
  "${RAW_CMD[@]}" >"$tmp/raw.$r.json" || die "wp-s3put failed"
  raws+=("$(jget "$tmp/raw.$r.json" mib_per_s)")
  "$PUT" delete "$env_file" "$(jget "$tmp/raw.$r.json" prefix)/" >/dev/null
  rgw_gc
done
log "raw PUT limit runs (MiB/s): ${raws[*]}"

# ------------------------------------------------------------- servers ---

SRV_OPTS=(-o node.disk_reserve_bytes=0 -o "node.drop_grace_ms=$DROP_GRACE_MS" -o gc.interval_ms=1000
          -o retention.ttl_ms=0)
[ -z "$UPLOAD_THREADS" ] || SRV_OPTS+=(-o "node.upload_threads=$UPLOAD_THREADS")
# What the command lines print: the keys shown, secrets not.
show() { printf '%s ' "$@" | sed -E 's/(secret_key|access_key)=[^ ]*/\1=.../g; s/ $//'; }

# attempt_setup N: attempt N's own directory ($run: metadata, the servers'
# data directories, samples), S3 prefix and command lines. An attempt
# whose writer fails is thrown away whole and the next one starts fresh.
attempt_setup() {
  run=$tmp/a$1 apfx=$pfx-a$1
  mkdir -p "$run"
  S3=(-o "storage.s3.endpoint=$WP_S3_ENDPOINT" -o "storage.s3.bucket=$WP_S3_BUCKET"
      -o "storage.s3.region=${WP_S3_REGION:-us-east-1}" -o "storage.s3.access_key=$WP_S3_ACCESS_KEY"
      -o "storage.s3.secret_key=$WP_S3_SECRET_KEY" -o "storage.s3.prefix=$apfx" -o storage.s3.path_style=true)
  META=(-o "meta.path=$run/meta.sqlite")
  CLI=("$WP" -o storage.type=quorum "${META[@]}" -o "storage.root=$run/client"
       -o "segment.max_bytes=$SEGMENT_BYTES" "${S3[@]}")
}

# start_servers [-o KEY=VALUE]...: the 3 servers, one after the other (three
# starting at once on a new SQLite file can fail with "database is
# locked"), with SRV_OPTS and these options, on ports the kernel picks
# (the sampler reads each server's metrics address from $run/sN.out, so
# restarts are fine). Sets srv_pids and SRV_CMD (server 0's command).
srv_pids=()
start_servers() {
  local i cmd
  srv_pids=()
  for i in 0 1 2; do
    mkdir -p "$run/s$i"
    cmd=("$SERVER" logstore -o "node.id=tier$i" -o "node.data_dir=$run/s$i"
         -o node.listen=127.0.0.1:0 -o node.metrics_listen=127.0.0.1:0
         "${META[@]}" "${SRV_OPTS[@]}" "${S3[@]}" "$@")
    [ "$i" != 0 ] || SRV_CMD=$(show "${cmd[@]}")
    : >"$run/s$i.out"
    "${cmd[@]}" >>"$run/s$i.out" 2>>"$run/s$i.err" &
    LIVE[$!]=1
    srv_pids+=($!)
    for _ in $(seq 100); do grep -q "serving on" "$run/s$i.out" && break; sleep 0.1; done
    grep -q "serving on" "$run/s$i.out" || { tail -n 5 "$run/s$i.err" >&2; die "server $i did not start"; }
  done
}
# stop_servers: SIGTERM (a server deregisters), up to 15 s, then SIGKILL.
stop_servers() {
  local p _
  for p in "${srv_pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${srv_pids[@]}"; do
    for _ in $(seq 150); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
    unset "LIVE[$p]"
  done
  srv_pids=()
}
# ------------------------------------------------------ sampler, truncator ---

# The sampler: one row a second (unix time, then per server: bytes held, its
# metrics and its CPU seconds; then, when the RGW is ours, the OSD's RSS and
# the CPU seconds of monitor, OSD and radosgw; the machine's busy CPU
# seconds) until $run/stop.
cat >"$tmp/sampler.py" <<'PY'
import os, re, sys, time, urllib.request
out, stop, rgw = sys.argv[1], sys.argv[2], sys.argv[3]
srv = list(zip(sys.argv[4::2], sys.argv[5::2]))
KEYS = ["waiting_segments", "waiting_bytes", "lag_s", "upload_bytes", "uploads", "failures",
        "segments", "dropped", "add_bytes", "put", "get", "delete", "list"]
NAMES = {"wp_logstore_upload_waiting_segments": "waiting_segments",
         "wp_logstore_upload_waiting_bytes": "waiting_bytes",
         "wp_logstore_upload_lag_seconds": "lag_s",
         "wp_logstore_upload_bytes_total": "upload_bytes", "wp_logstore_uploads_total": "uploads",
         "wp_logstore_upload_failures_total": "failures", "wp_logstore_segments": "segments",
         "wp_logstore_dropped_total": "dropped", "wp_logstore_request_bytes_total": "add_bytes",
         'wp_s3_request_seconds_count{method="PUT"}': "put",
         'wp_s3_request_seconds_count{method="GET"}': "get",
         'wp_s3_request_seconds_count{method="DELETE"}': "delete",
         'wp_s3_request_seconds_count{method="LIST"}': "list"}
def held(d):  # what du counts: allocated blocks
    n = 0
    for root, _, files in os.walk(d):
        for f in files:
            try:
                n += os.lstat(os.path.join(root, f)).st_blocks * 512
            except OSError:
                pass
    return n
def metrics(out):  # "" for each figure of a server that did not answer
    v = dict.fromkeys(KEYS, "")
    try:  # its address: "woodpecker logstore: metrics on http://HOST:PORT/metrics"
        url = re.search(r"metrics on (http\S+)", open(out).read()).group(1)
        text = urllib.request.urlopen(url, timeout=2).read().decode()
    except (OSError, AttributeError):
        return v
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        name, _, val = line.rpartition(" ")
        k = NAMES.get(name)
        if k:
            v[k] = val
    return v
HZ = os.sysconf("SC_CLK_TCK")
def cpu(pid):  # user + system CPU seconds of a process ("" if gone)
    try:
        st = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
        return "%.2f" % ((int(st[11]) + int(st[12])) / HZ)
    except (OSError, ValueError, IndexError):
        return ""
def pid_of(path):
    try:
        return int(open(path).read().split()[0])
    except (OSError, ValueError, IndexError):
        return 0
def busy():  # CPU seconds the machine spent busy (every core), from /proc/stat
    v = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    return "%.2f" % ((sum(v[:8]) - v[3] - v[4]) / HZ)
def rss(pid):
    try:
        for line in open("/proc/%d/status" % pid):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return ""
with open(out, "w") as f:
    f.write(",".join(["unix_s"] + ["%s_%d" % (k, i) for i in range(len(srv))
                                   for k in ["held_bytes"] + KEYS + ["cpu_s"]] +
                     ["osd_rss_bytes", "rgw_cpu_s", "machine_busy_s"]) + "\n")
    nxt = time.time()
    while not os.path.exists(stop):
        row = ["%.3f" % time.time()]
        for d, out in srv:
            m = metrics(out)
            row += [str(held(d))] + [m[k] for k in KEYS] + [cpu(pid_of(d + "/logstore.pid"))]
        ceph = [pid_of("%s/pids/%s" % (rgw, n)) for n in ("rgw", "osd", "mon")] if rgw else []
        c = [cpu(p) for p in ceph if p]
        row.append(str(rss(ceph[1])) if ceph and ceph[1] else "")
        row.append("%.2f" % sum(float(x) for x in c) if c and all(c) else "")
        row.append(busy())
        f.write(",".join(row) + "\n")
        f.flush()
        nxt += 1
        time.sleep(max(0, nxt - time.time()))
PY
start_sampler() {
  python3 "$tmp/sampler.py" "$run/samples.raw" "$run/stop" "${rgw_started:+$tmp/rgw}" \
    "$run/s0" "$run/s0.out" "$run/s1" "$run/s1.out" "$run/s2" "$run/s2.out" \
    >"$run/sampler.out" 2>&1 &
  LIVE[$!]=1
  sampler_pid=$!
}
# stop_bg PID: a background job of ours, stopped by its stop file already
# or now by SIGTERM (and its current child).
stop_bg() {
  local _
  for _ in $(seq 100); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
  pkill -TERM -P "$1" 2>/dev/null || true
  kill -TERM "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
  unset "LIVE[$1]"
}

# truncator LOG STOPFILE: until STOPFILE exists, every TRUNCATE_EVERY s,
# truncates LOG up to the newest segment KEEP_SEGMENTS behind its newest
# one and below its oldest completed (not yet sealed) one, one line per
# truncation in $run/truncations (unix time, log, segment, entry); runs the
# RGW's GC every RGW_GC_EVERY s.
truncator() {
  local lg=$1 stop=$2 done_to=-1 last_gc=$SECONDS k e
  while [ ! -e "$stop" ]; do
    sleep "$TRUNCATE_EVERY"
    if "${CLI[@]}" segments "$lg" >"$run/segs.txt" 2>>"$run/truncator.err"; then
      read -r k e < <(awk -v keep="$KEEP_SEGMENTS" '
        NR > 1 { id[n] = $1; st[n] = $2; last[n] = $3; n++; if ($1 > top) top = $1 }
        END {
          lim = top - keep
          for (i = 0; i < n; i++) if (st[i] == "completed" && id[i] - 1 < lim) lim = id[i] - 1
          k = -1
          for (i = 0; i < n; i++) if (st[i] == "sealed" && id[i] <= lim && id[i] > k) { k = id[i]; e = last[i] }
          print k, (k < 0 ? -1 : e)
        }' "$run/segs.txt")
      if [ "$k" -gt "$done_to" ] && "${CLI[@]}" truncate "$lg" "$k:$e" 2>>"$run/truncator.err"; then
        echo "$(date +%s.%N) $lg $k $e" >>"$run/truncations"
        done_to=$k
      fi
    fi
    if [ $((SECONDS - last_gc)) -ge "$RGW_GC_EVERY" ]; then
      rgw_gc
      last_gc=$SECONDS
    fi
  done
}

# waiting_now: the segments all servers wait to upload, as of the last
# sample (-1: a server did not answer).
waiting_now() {
  tail -n 1 "$run/samples.raw" | python3 -c '
import sys
h = open(sys.argv[1]).readline().strip().split(",")
r = sys.stdin.readline().strip().split(",")
v = [r[i] for i, k in enumerate(h) if k.startswith("waiting_segments_") and i < len(r)]
print(sum(int(float(x)) for x in v) if len(v) == 3 and all(v) else -1)' "$run/samples.raw"
}
# drain [backlog]: waits (up to DRAIN_MAX s) until the servers' looks find
# nothing waiting, 4 half-second checks in a row; prints when that was
# (unix time), or nothing. With "backlog", only after a look found some
# (servers just started have not looked yet).
drain() {
  local zero=0 seen=1 w _
  [ "${1:-}" != backlog ] || seen=0
  for _ in $(seq $((DRAIN_MAX * 2))); do
    sleep 0.5
    w=$(waiting_now)
    [ "$w" -gt 0 ] && seen=1
    if [ "$w" = 0 ] && [ "$seen" = 1 ]; then
      zero=$((zero + 1))
      [ "$zero" -ge 4 ] && { date +%s.%N; return 0; }
    else
      zero=0
    fi
  done
}

# -------------------------------------------------------- sustained ingest ---

# run_bench OUT CMD...: CMD in the background (a signal to this script acts
# at once), stdout to OUT; on failure prints its error and the servers'
# last words, and returns non-zero.
run_bench() {
  local out=$1 pid rc=0 i
  shift
  "$@" >"$out" 2>"$out.err" &
  pid=$!
  LIVE[$pid]=1
  wait "$pid" || rc=$?
  unset "LIVE[$pid]"
  [ "$rc" = 0 ] && return 0
  log "wp bench failed (exit $rc):"
  cat "$out.err" >&2
  for i in 0 1 2; do
    [ -s "$run/s$i.err" ] || continue
    log "server $i's last lines:"
    tail -n 5 "$run/s$i.err" >&2
  done
  return 1
}

# Attempts of the sustained phase: fresh servers, sampler, truncator, writer.
failures=() ok=''
for att in $(seq "$ATTEMPTS"); do
  attempt_setup "$att"
  start_servers
  log "attempt $att: 3 LogStore servers up, at $(sed -n 's/.*serving on //p' "$run"/s[012].out | tr '\n' ' ')"
  "${CLI[@]}" log create "$LOG" >/dev/null
  start_sampler
  truncator "$LOG" "$run/stop.trunc" &
  LIVE[$!]=1
  trunc_pid=$!
  sleep 3 # a few samples of the idle servers first
  BENCH=("${CLI[@]}" bench --log "$LOG" --seconds "$DURATION" --size "$ENTRY_SIZE" --window "$WINDOW" --json)
  BENCH_CMD=$(show "${BENCH[@]}")
  log "appending for $DURATION s: $BENCH_CMD"
  t_start=$(date +%s.%N)
  if run_bench "$run/bench.json" "${BENCH[@]}"; then
    ok=1
    break
  fi
  failures+=("attempt $att, after $(python3 -c "print(round($(date +%s.%N) - $t_start))") s: $(head -n 1 "$run/bench.json.err")")
  touch "$run/stop" "$run/stop.trunc"
  stop_bg "$trunc_pid"
  stop_bg "$sampler_pid"
  stop_servers
  "$PUT" delete "$env_file" "$apfx/" >/dev/null 2>&1 || true
  rgw_gc
  [ -n "${KEEP_SCRATCH:-}" ] || rm -rf "$run"
  log "attempt $att thrown away"
done
[ -n "$ok" ] || die "the writer failed in each of $ATTEMPTS attempts"
t_end=$(date +%s.%N)
log "writer done: $(jget "$run/bench.json" mib_per_s) MiB/s; waiting for the uploads (at most $DRAIN_MAX s)"
t_drained=$(drain)
[ -n "$t_drained" ] || log "warning: uploads not drained after $DRAIN_MAX s"
sleep 2
touch "$run/stop.trunc"
stop_bg "$trunc_pid"
t_main_done=$(date +%s.%N)
truncs=$(wc -l <"$run/truncations" 2>/dev/null || echo 0)
[ "$truncs" -gt 0 ] || log "warning: the truncator never truncated ($(tail -2 "$run/truncator.err" 2>/dev/null))"

# ------------------------------------------------------------- catch-up ---

# The uploaders' own limit: CATCHUP_BYTES appended to another log while the
# servers hold every upload back (node.upload_delay_ms of a day), then the
# servers restarted without the delay upload that backlog with nothing else
# running, nor the truncator: upload MiB/s = the bytes they sealed / the
# time from the last sample before the first seal to the first sample
# after the last (1-s samples).
t_c_up='' t_c_done='' CATCHUP_CMD='' MAIN_SRV_CMD=$SRV_CMD
if [ "$CATCHUP_BYTES" -gt 0 ]; then
  rgw_gc
  stop_servers
  start_servers -o node.upload_delay_ms=86400000
  CATCHUP=("${CLI[@]}" bench --log catchup --entries $((CATCHUP_BYTES / ENTRY_SIZE)) --size "$ENTRY_SIZE"
           --window "$WINDOW" --json)
  CATCHUP_CMD=$(show "${CATCHUP[@]}")
  log "catch-up: appending $((CATCHUP_BYTES >> 20)) MiB with uploads held back"
  if run_bench "$run/catchup.json" "${CATCHUP[@]}"; then
    stop_servers
    t_c_up=$(date +%s.%N)
    start_servers
    log "catch-up: servers restarted with uploads on; waiting for them (at most $DRAIN_MAX s)"
    t_c_done=$(drain backlog)
    [ -n "$t_c_done" ] || log "warning: catch-up uploads not drained after $DRAIN_MAX s"
    sleep 1
  else
    failures+=("catch-up: $(head -n 1 "$run/catchup.json.err")")
    log "no catch-up figures"
  fi
fi
touch "$run/stop"
stop_bg "$sampler_pid"

# ------------------------------------------------------------- analysis ---

out_dir=${BENCH_RESULTS:-$here/results}
mkdir -p "$out_dir"
stem="$out_dir/$(date +%F)-tiering"
raw_med=$(printf '%s\n' "${raws[@]}" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }')

cat >"$tmp/analyse.py" <<'PY'
import csv, json, math, os, sys
a = dict(x.split("=", 1) for x in sys.argv[1:])
num = lambda k: float(a[k]) if a.get(k) else None
t0, t1, td, tm = num("t_start"), num("t_end"), num("t_drained"), num("t_main_done")
warm, slack, raw = num("warmup"), num("slack"), num("raw")
b = json.load(open(a["bench"]))
rows = list(csv.DictReader(open(a["samples"])))
N = 3
MiB, GiB = 2.0 ** 20, 2.0 ** 30
def f(r, k):
    v = r.get(k, "")
    return float(v) if v not in ("", None) else math.nan
def tot(r, k):
    return sum(f(r, "%s_%d" % (k, i)) for i in range(N))
def mx(v):  # max, NaN left out
    v = [x for x in v if not math.isnan(x)]
    return max(v) if v else math.nan
def mean(v):
    v = [x for x in v if not math.isnan(x)]
    return sum(v) / len(v) if v else math.nan
def pct(v, p):  # nearest rank
    v = sorted(x for x in v if not math.isnan(x))
    return v[min(len(v) - 1, max(0, math.ceil(p / 100 * len(v)) - 1))] if v else math.nan
for r in rows:
    r["t"] = float(r["unix_s"]) - t0
    u = float(r["unix_s"])
    r["phase"] = ("idle" if r["t"] < 0 else "sustained" if u <= t1 else "drain" if u <= tm
                  else "catchup-append" if a.get("t_c_up") and u <= num("t_c_up") else "catchup-upload")
T = t1 - t0
main = [r for r in rows if float(r["unix_s"]) <= tm]
run = [r for r in main if 0 <= r["t"] <= T]
def at(t):  # the sample nearest to t
    return min(main, key=lambda r: abs(r["t"] - t))
# Steady part: from WARMUP to the writer's end.
ra, rz = at(warm), at(T)
dt = rz["t"] - ra["t"]
up = (tot(rz, "upload_bytes") - tot(ra, "upload_bytes")) / dt / MiB
ing_srv = (tot(rz, "add_bytes") - tot(ra, "add_bytes")) / N / dt / MiB
ingest = b["mib_per_s"]
gib = b["bytes"] / GiB
last = main[-1]
lags = [mx(f(r, "lag_s_%d" % i) for i in range(N)) for r in run]
steady = [r for r in run if r["t"] >= warm]
third = len(steady) // 3
first, final = steady[:third], steady[-third:]
held, bounded = [], True
for i in range(N):
    k = "held_bytes_%d" % i
    m1, m3 = mx(f(r, k) for r in first), mx(f(r, k) for r in final)
    ok = m3 <= m1 + slack
    bounded = bounded and ok
    held.append((mx(f(r, k) for r in run), m1, m3, mean(f(r, k) for r in first),
                 mean(f(r, k) for r in final), ok))
def wmax(r):  # bytes waiting for upload on the server with the most (each holds a copy)
    return mx(f(r, "waiting_bytes_%d" % i) for i in range(N))
w1, w3 = mx(wmax(r) for r in first), mx(wmax(r) for r in final)
xs = [r["t"] for r in steady]
ys = [tot(r, "held_bytes") for r in steady]
mxs, mys = sum(xs) / len(xs), sum(ys) / len(ys)
slope = sum((x - mxs) * (y - mys) for x, y in zip(xs, ys)) / max(1e-9, sum((x - mxs) ** 2 for x in xs))
puts, gets, dels = tot(last, "put"), tot(last, "get"), tot(last, "delete")
osd = [f(r, "osd_rss_bytes") for r in main]
L = []
row = lambda fig, val, src: L.append("| %s | %s | %s |" % (fig, val, src))
L.append("| figure | value | from |")
L.append("|---|---:|---|")
row("ingest MiB/s (%.0f s, %d entries of %d B)" % (b["seconds"], b["entries"], b["size"]), "%.1f" % ingest,
    "wp bench: `mib_per_s`")
row("ack p50 / p99 ms", "%.1f / %.1f" % (b["ack_p50_ms"], b["ack_p99_ms"]), "wp bench: `ack_p50_ms`, `ack_p99_ms`")
row("raw PUT limit MiB/s (median of %s)" % a["raws"].replace(" ", ", "), "%.1f" % raw, "wp-s3put put")
row("upload MiB/s, steady part (%.0f..%.0f s)" % (ra["t"], rz["t"]), "%.1f" % up,
    "servers' `wp_logstore_upload_bytes_total`, summed: delta / time")
row("ingest at the servers MiB/s, same part", "%.1f" % ing_srv,
    "servers' `wp_logstore_request_bytes_total` / 3: delta / time")
row("**upload / raw PUT limit**", "**%.2f**" % (up / raw), "target >= 0.8")
row("upload / ingest", "%.2f" % (up / ingest), "upload MiB/s / wp bench `mib_per_s`")
row("upload lag max / p99 s", "%.1f / %.1f" % (mx(lags), pct(lags, 99)),
    "max over servers of `wp_logstore_upload_lag_seconds`, 1-s samples while appending")
for i, (m, m1, m3, a1, a3, ok) in enumerate(held):
    row("bytes held, server %d: max MiB; first / last third of the steady part: max (mean)" % i,
        "%.0f; %.0f (%.0f) / %.0f (%.0f): %s" % (m / MiB, m1 / MiB, a1 / MiB, m3 / MiB, a3 / MiB,
                                                  "bounded" if ok else "NOT bounded"),
        "du of `node.data_dir`, 1-s samples")
row("waiting for upload on a server: max MiB, first / last third", "%.0f / %.0f" % (w1 / MiB, w3 / MiB),
    "`wp_logstore_upload_waiting_bytes`, the largest of the 3 servers")
row("bytes held, all servers: trend over the steady part", "%+.1f MiB/min" % (slope * 60 / MiB),
    "least squares of the summed du samples")
row("waiting on a server when the writer stopped; drained after", "%.0f MiB; %s" % (
    wmax(at(T)) / MiB, "%.1f s" % (td - t1) if td else "not in %s s" % a["drain_max"]),
    "`wp_logstore_upload_waiting_segments` 0 on every server (4 checks, 0.5 s apart)")
row("uploaded / appended bytes", "%.3f" % (tot(last, "upload_bytes") / b["bytes"]),
    "`wp_logstore_upload_bytes_total` after the drain / wp bench `bytes`")
row("**S3 PUTs per GiB ingested**", "**%.1f**" % (puts / gib),
    "servers' `wp_s3_request_seconds_count{method=\"PUT\"}` after the drain / (wp bench `bytes` / GiB)")
row("S3 GETs, DELETEs per GiB ingested", "%.1f, %.1f" % (gets / gib, dels / gib), "the same, GET and DELETE")
row("upload failures (tried again); truncations", "%.0f; %s" % (tot(last, "failures"), a["truncs"]),
    "`wp_logstore_upload_failures_total`; the truncator's `wp truncate` calls")
if not math.isnan(mx(osd)):
    row("RGW OSD RSS max MiB", "%.0f" % (mx(osd) / MiB), "VmRSS of ceph-osd (memstore: objects in RAM)")
def cores(r0, r1):  # CPU cores used between two samples: servers, RGW, machine
    d = r1["t"] - r0["t"]
    return ((tot(r1, "cpu_s") - tot(r0, "cpu_s")) / d, (f(r1, "rgw_cpu_s") - f(r0, "rgw_cpu_s")) / d,
            (f(r1, "machine_busy_s") - f(r0, "machine_busy_s")) / d)
def cores_txt(c, writer=None):
    t = "servers %.2f, RGW %s" % (c[0], "-" if math.isnan(c[1]) else "%.2f" % c[1])
    return t + (", writer %.2f" % writer if writer is not None else "") + "; machine %.2f of %d" % (c[2], os.cpu_count())
row("CPU cores used, steady part", cores_txt(cores(ra, rz), b["cpu_s"] / b["seconds"]),
    "/proc/PID/stat of the servers, monitor + OSD + radosgw; wp bench `cpu_s`; /proc/stat")
cu = None
if a.get("t_c_up"):
    c = json.load(open(a["catchup"]))
    cr = [r for r in rows if r["phase"] == "catchup-upload" and not math.isnan(tot(r, "upload_bytes"))]
    if num("t_c_done") and cr:
        fin = tot(cr[-1], "upload_bytes")
        zero = [r for r in cr if tot(r, "upload_bytes") == 0]
        r0 = zero[-1] if zero else cr[0]  # the last sample before a seal
        r1 = next(r for r in cr if tot(r, "upload_bytes") == fin)  # the first after the last
        secs = r1["t"] - r0["t"]
        cu = fin / secs / MiB
        row("catch-up: %d MiB appended with uploads held back (%.1f MiB/s), then uploaded" %
            (c["bytes"] / MiB, c["mib_per_s"]), "%.1f MiB/s (%.0f MiB in %.0f s)" % (cu, fin / MiB, secs),
            "servers' `wp_logstore_upload_bytes_total` after their restart: from the last sample before "
            "the first seal to the first after the last (1-s samples)")
        row("**catch-up upload / raw PUT limit**", "**%.2f**" % (cu / raw), "the uploaders' own limit")
        row("catch-up: S3 PUTs, GETs per GiB uploaded; upload failures", "%.1f, %.1f; %.0f" % (
            tot(cr[-1], "put") / (fin / GiB), tot(cr[-1], "get") / (fin / GiB), tot(cr[-1], "failures")),
            "the servers' counters after their restart")
        row("CPU cores used, catch-up upload", cores_txt(cores(r0, r1)), "as above")
    else:
        row("catch-up upload", "not drained in %s s" % a["drain_max"], "")
L.append("")
L.append("Bytes held bounded (each server's maximum over the last third of the steady part at most "
         "%.0f MiB above its first third's): %s." % (slack / MiB, "yes" if bounded else "NO"))
L.append("Target (issue 11), upload keeps up with ingest at >= 0.8 x the raw PUT limit: upload keeps up %s, "
         "at %.2f x the raw limit: %s%s." % (
             "(upload/ingest %.2f, bounded)" % (up / ingest) if bounded and up / ingest >= 0.95
             else "NO (upload/ingest %.2f%s)" % (up / ingest, "" if bounded else ", bytes held not bounded"),
             up / raw, "met" if up / raw >= 0.8 and bounded and up / ingest >= 0.95 else "NOT met",
             "" if cu is None else "; the uploaders alone (catch-up) reach %.2f x" % (cu / raw)))
open(a["table"], "w").write("\n".join(L) + "\n")
# The samples as CSV: t_s since the writer started, the phase, the rest.
with open(a["csv"], "w") as fo:
    keys = [k for k in rows[0] if k not in ("unix_s", "t", "phase")]
    fo.write("t_s,phase," + ",".join(keys) + "\n")
    for r in rows:
        fo.write("%.3f,%s," % (r["t"], r["phase"]) + ",".join(r[k] for k in keys) + "\n")
# The chart's data (bench/tiering.gp), sustained phase and drain: t, held
# 0..2 (MiB), lag 0..2 (s), ingest and upload MiB/s (10-s windows), waiting
# MiB (the largest of the servers).
with open(a["plot"], "w") as fo:
    for j, r in enumerate(main):
        p = main[max(0, j - 10)]
        d = r["t"] - p["t"]
        ing = (tot(r, "add_bytes") - tot(p, "add_bytes")) / N / d / MiB if d > 0 else math.nan
        u = (tot(r, "upload_bytes") - tot(p, "upload_bytes")) / d / MiB if d > 0 else math.nan
        v = [r["t"]] + [f(r, "held_bytes_%d" % i) / MiB for i in range(N)] + \
            [f(r, "lag_s_%d" % i) for i in range(N)] + [ing, u, wmax(r) / MiB]
        fo.write(" ".join("NaN" if math.isnan(x) else "%.3f" % x for x in v) + "\n")
PY
python3 "$tmp/analyse.py" samples="$run/samples.raw" bench="$run/bench.json" catchup="$run/catchup.json" \
  t_start="$t_start" t_end="$t_end" t_drained="$t_drained" t_main_done="$t_main_done" \
  t_c_up="$t_c_up" t_c_done="$t_c_done" warmup="$WARMUP" slack="$BOUND_SLACK" raw="$raw_med" \
  raws="${raws[*]}" truncs="$truncs" drain_max="$DRAIN_MAX" csv="$stem.csv" plot="$tmp/plot.dat" \
  table="$tmp/table.txt" || die "analysis failed"

png="$stem.png"
if gnuplot -e "dat='$tmp/plot.dat'; out='$png'; tend=$(python3 -c "print($t_end - $t_start)"); title='make bench-tiering $(date +%F): 3 LogStore servers uploading to a local RGW, $(nproc) cores shared'" \
  "$here/tiering.gp" 2>"$tmp/gnuplot.err"; then
  log "chart $png"
else
  log "no chart: $(tail -2 "$tmp/gnuplot.err")"
  png=
fi

{
  echo "## Tiering: sustained ingest, 3 LogStore servers uploading to RGW ($(date +%F))"
  echo
  echo "Writer: $DURATION s of async $ENTRY_SIZE-byte entries (window $WINDOW), segment.max_bytes $SEGMENT_BYTES;"
  echo "servers: node.drop_grace_ms $DROP_GRACE_MS, gc.interval_ms 1000, retention.ttl_ms 0${UPLOAD_THREADS:+, node.upload_threads $UPLOAD_THREADS};"
  echo "truncated every $TRUNCATE_EVERY s to $KEEP_SEGMENTS segments behind the writer (sealed segments only); steady part from $WARMUP s."
  echo
  cat "$tmp/table.txt"
  echo
  if [ ${#failures[@]} -gt 0 ]; then
    echo "The writer failed (that attempt was thrown away and started over fresh):"
    for f in "${failures[@]}"; do echo "- $f"; done
    echo
  fi
  echo "Commands:"
  echo "- raw PUT limit ($REPS runs, each then deleted): \`$(show "${RAW_CMD[@]}")\`"
  echo "- servers (tier0..tier2): \`$MAIN_SRV_CMD\`"
  echo "- writer: \`$BENCH_CMD\`"
  [ -z "$CATCHUP_CMD" ] || echo "- catch-up: the servers with \`-o node.upload_delay_ms=86400000\` added, then \`$CATCHUP_CMD\`, then the servers restarted as above"
  echo "- truncator: \`$(show "${CLI[@]}") segments $LOG\`, then \`$(show "${CLI[@]}") truncate $LOG S:E\`$([ -n "$rgw_started" ] && echo "; \`radosgw-admin -c CEPH_CONF gc process --include-all\` every $RGW_GC_EVERY s")"
  echo "- sampler, every 1 s per server: GET its /metrics (node.metrics_listen), and the allocated bytes of every file under node.data_dir (du)"
  echo "- this report: \`$(show "$0" "$WP")\` with DURATION=$DURATION REPS=$REPS CATCHUP_BYTES=$CATCHUP_BYTES"
  echo
  echo "Samples: $stem.csv${png:+; chart: $png}"
} | tee "$stem.md"
