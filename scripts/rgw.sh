#!/usr/bin/env bash
# rgw.sh — a throwaway one-host Ceph cluster with an S3 gateway (RGW) for tests.
#
#   scripts/rgw.sh start DIR   start 1 mon + 1 memstore OSD + radosgw on
#                              127.0.0.1 (free ports), all state under DIR;
#                              create an S3 user and a bucket; write DIR/env;
#                              return once RGW answers signed S3 requests.
#   scripts/rgw.sh stop DIR    stop every process started (by PID file) and
#                              remove DIR.
#   scripts/rgw.sh status DIR  exit 0 if the cluster under DIR answers.
#
# DIR/env holds shell-sourceable lines WP_S3_ENDPOINT=..., WP_S3_ACCESS_KEY,
# WP_S3_SECRET_KEY, WP_S3_BUCKET, WP_S3_REGION (and, when openssl is
# installed, WP_S3_HTTPS_ENDPOINT and WP_S3_CA_FILE: RGW also serves HTTPS
# with a self-signed certificate). Needs only the Debian packages ceph-mon
# ceph-osd radosgw ceph-common (and what they pull in: python3 signs the
# few S3 requests made here). Settings that matter (see INFRA.md): no cephx
# inside the cluster, crc messenger mode, everything bound to 127.0.0.1,
# pool size 1, a memstore OSD; fast monitor commits and tcp_nodelay on the
# gateway (without it every answer with a body waits ~40 ms for an ACK).
set -u

BUCKET=wp-test
REGION=us-east-1
# Debian's python3 (the ceph CLI's own) before any other in PATH.
PY=$(command -v /usr/bin/python3 || command -v python3 || true)

# Reports a failed start with the logs' last lines, stops what was started
# (the logs stay under DIR until "stop") and exits.
die() {
    echo "rgw.sh: error: $*" >&2
    show_logs >&2
    if [ -n "${DIR:-}" ] && [ -d "$DIR/pids" ]; then
        kill_daemons
        rm -rf "$DIR/pids"
    fi
    exit 1
}

# The daemons' own stderr first, then the end of each Ceph log.
show_logs() {
    [ -n "${DIR:-}" ] && [ -d "$DIR/log" ] || return 0
    local f
    for f in "$DIR"/log/{mon,osd,rgw,mon-mkfs,osd-mkfs,user-create}.out "$DIR"/log/client.rgw.a.log "$DIR"/log/osd.0.log "$DIR"/log/mon.a.log; do
        [ -s "$f" ] || continue
        echo "---- last lines of $f"
        tail -n 15 "$f"
    done
}

# TCP ports in LISTEN state (from /proc: iproute2 may be missing).
used_ports() {
    local f sl addr rest st
    for f in /proc/net/tcp /proc/net/tcp6; do
        [ -r "$f" ] || continue
        while read -r sl addr rest st _; do
            [ "$st" = 0A ] && echo $((16#${addr##*:}))
        done < <(tail -n +2 "$f")
    done
}

# free_port VAR: sets VAR to a TCP port nothing listens on and no earlier
# call returned, from a random start in 20000..59999.
free_port() {
    local used p tries=0
    used=$(used_ports)
    while [ $tries -lt 200 ]; do
        p=$((20000 + (RANDOM * 32768 + RANDOM) % 40000))
        if ! grep -qx "$p" <<<"$used${TAKEN:-}"; then
            TAKEN="${TAKEN:-}"$'\n'"$p"
            printf -v "$1" '%s' "$p"
            return 0
        fi
        tries=$((tries + 1))
    done
    die "no free TCP port found"
}

rand_alnum() { # rand_alnum N
    tr -dc 'A-Za-z0-9' </dev/urandom | head -c "$1"
}

# True if the PID in file $1 runs (a zombie, killed but not yet reaped by
# its new parent, counts as gone).
pid_alive() {
    local pid
    [ -s "$1" ] || return 1
    pid=$(cat "$1")
    kill -0 "$pid" 2>/dev/null || return 1
    ! grep -q '^State:[[:space:]]*Z' "/proc/$pid/status" 2>/dev/null
}

write_conf() {
    cat >"$DIR/ceph.conf" <<EOF
[global]
fsid = $FSID
mon_host = v2:127.0.0.1:$MON_PORT
mon_initial_members = a
public_addr = 127.0.0.1
cluster_addr = 127.0.0.1
public_network = 127.0.0.0/8
cluster_network = 127.0.0.0/8
ms_bind_msgr1 = false
ms_bind_ipv6 = false
auth_cluster_required = none
auth_service_required = none
auth_client_required = none
auth_supported = none
ms_mon_client_mode = crc
ms_client_mode = crc
ms_cluster_mode = crc
ms_service_mode = crc
ms_mon_cluster_mode = crc
ms_mon_service_mode = crc
run_dir = $DIR/run
admin_socket = $DIR/run/\$name.asok
log_file = $DIR/log/\$name.log
pid_file = $DIR/run/\$name.pid
keyring = $DIR/keyring
mon_data = $DIR/mon/\$name
osd_data = $DIR/osd/\$name
osd_objectstore = memstore
memstore_device_bytes = 4294967296
osd_pool_default_size = 1
osd_pool_default_min_size = 1
osd_pool_default_pg_num = 8
osd_pool_default_pgp_num = 8
osd_pool_default_pg_autoscale_mode = off
osd_crush_chooseleaf_type = 0
mon_allow_pool_size_one = true
# Commit monitor updates (pool creation, OSD boot) without the 1 s batching.
paxos_propose_interval = 0.05
paxos_min_wait = 0.01
mon_allow_pool_delete = true
mon_max_pg_per_osd = 1000
mon_warn_on_pool_no_redundancy = false
osd_max_object_name_len = 460
osd_max_object_namespace_len = 64
mon_osd_full_ratio = 0.99
mon_osd_nearfull_ratio = 0.98
osd_failsafe_full_ratio = 0.995
log_to_stderr = false
err_to_stderr = false
debug_ms = 0

[client.rgw.a]
rgw_frontends = $FRONTENDS
rgw_dns_name = localhost
rgw_thread_pool_size = 64
rgw_enable_usage_log = false
rgw_enable_ops_log = false
# The OSD keeps objects in RAM: the tails of deleted objects larger than the
# 4 MiB head (merged objects of compaction, raw PUTs) are freed by RGW's GC,
# which by default waits 2 h; here it runs every 30 s on what is 30 s old.
rgw_gc_obj_min_wait = 30
rgw_gc_processor_period = 30
EOF
}

# Runs a daemon in the foreground under its own session, output to
# DIR/log/NAME.out, and records its PID in DIR/pids/NAME.
spawn() { # spawn NAME CMD...
    local name=$1
    shift
    setsid "$@" </dev/null >"$DIR/log/$name.out" 2>&1 &
    echo $! >"$DIR/pids/$name"
    disown $!
}

ceph_cli() { timeout 20 ceph -c "$DIR/ceph.conf" --connect-timeout 10 "$@"; }

wait_for() { # wait_for WHAT SECONDS CMD...
    local what=$1 secs=$2 end
    shift 2
    end=$((SECONDS + secs))
    until "$@" >/dev/null 2>&1; do
        [ $SECONDS -lt $end ] || die "timed out after ${secs}s waiting for $what"
        check_alive
        sleep 0.3
    done
}

check_alive() {
    local f
    for f in "$DIR"/pids/*; do
        [ -e "$f" ] || continue
        pid_alive "$f" || die "$(basename "$f") exited during startup"
    done
}

start_mon() {
    mkdir -p "$DIR/mon/mon.a"
    monmaptool --create --fsid "$FSID" --addv a "[v2:127.0.0.1:$MON_PORT]" \
        "$DIR/monmap" >"$DIR/log/monmaptool.out" 2>&1 || die "monmaptool failed"
    ceph-authtool --create-keyring "$DIR/keyring" --gen-key -n mon. \
        --cap mon 'allow *' >"$DIR/log/authtool.out" 2>&1 || die "ceph-authtool failed"
    ceph-mon -c "$DIR/ceph.conf" --mkfs -i a --monmap "$DIR/monmap" \
        --keyring "$DIR/keyring" >"$DIR/log/mon-mkfs.out" 2>&1 || die "ceph-mon --mkfs failed"
    spawn mon ceph-mon -c "$DIR/ceph.conf" -f -i a
    wait_for "the monitor" 60 ceph_cli mon stat
}

osd_up() { ceph_cli osd stat -f json | grep -q '"num_up_osds":1'; }

start_osd() {
    local uuid id
    uuid=$(cat /proc/sys/kernel/random/uuid)
    id=$(ceph_cli osd create "$uuid") || die "ceph osd create failed"
    [ "$id" = 0 ] || die "unexpected osd id '$id'"
    mkdir -p "$DIR/osd/osd.0"
    ceph-osd -c "$DIR/ceph.conf" -i 0 --mkfs --osd-uuid "$uuid" \
        >"$DIR/log/osd-mkfs.out" 2>&1 || die "ceph-osd --mkfs failed"
    spawn osd ceph-osd -c "$DIR/ceph.conf" -f -i 0
    wait_for "the OSD to come up" 90 osd_up
}

# s3_req METHOD PATH [BODY]: one SigV4-signed request to RGW (anonymous if
# ACCESS_KEY is empty), with python3's standard library (curl may be
# missing). Prints the HTTP status (000 if there was no answer) and, for an
# error, the start of the answer on stderr; true for a 2xx status.
s3_req() {
    local code
    code=$(RGW_PORT=$RGW_PORT ACCESS_KEY=${ACCESS_KEY:-} SECRET_KEY=${SECRET_KEY:-} \
        REGION=$REGION "$PY" - "$@" <<'PY'
import datetime, hashlib, hmac, http.client, os, sys
method, path = sys.argv[1], sys.argv[2]
body = sys.argv[3].encode() if len(sys.argv) > 3 else b""
port, ak, sk, region = int(os.environ["RGW_PORT"]), os.environ["ACCESS_KEY"], os.environ["SECRET_KEY"], os.environ["REGION"]
host = "127.0.0.1:%d" % port
headers = {}
if ak:
    t = datetime.datetime.now(datetime.timezone.utc)
    amz, day = t.strftime("%Y%m%dT%H%M%SZ"), t.strftime("%Y%m%d")
    ph = hashlib.sha256(body).hexdigest()
    signed = "host;x-amz-content-sha256;x-amz-date"
    creq = "\n".join([method, path, "", "host:%s\nx-amz-content-sha256:%s\nx-amz-date:%s\n" % (host, ph, amz), signed, ph])
    scope = "%s/%s/s3/aws4_request" % (day, region)
    sts = "\n".join(["AWS4-HMAC-SHA256", amz, scope, hashlib.sha256(creq.encode()).hexdigest()])
    k = ("AWS4" + sk).encode()
    for m in (day, region, "s3", "aws4_request"):
        k = hmac.new(k, m.encode(), hashlib.sha256).digest()
    sig = hmac.new(k, sts.encode(), hashlib.sha256).hexdigest()
    headers = {"x-amz-date": amz, "x-amz-content-sha256": ph,
               "Authorization": "AWS4-HMAC-SHA256 Credential=%s/%s, SignedHeaders=%s, Signature=%s" % (ak, scope, signed, sig)}
try:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request(method, path, body=body, headers=headers)
    r = c.getresponse()
    data = r.read()
except OSError as e:
    print("000")
    print(e, file=sys.stderr)
    sys.exit(0)
print(r.status)
if r.status >= 300:
    print(data[:400].decode(errors="replace"), file=sys.stderr)
PY
    )
    echo "$code"
    case "$code" in 2??) return 0 ;; *) return 1 ;; esac
}

rgw_answers() { ACCESS_KEY= s3_req GET / >/dev/null; }

bucket_ok() { s3_req HEAD "/$BUCKET" >/dev/null; }

start_rgw() {
    spawn rgw radosgw -c "$DIR/ceph.conf" -f -n client.rgw.a --rgw-frontends "$FRONTENDS"
    wait_for "radosgw to answer HTTP on port $RGW_PORT" 120 rgw_answers
    timeout 60 radosgw-admin -c "$DIR/ceph.conf" user create --uid=wp --display-name=woodpecker \
        --access-key="$ACCESS_KEY" --secret-key="$SECRET_KEY" \
        >"$DIR/log/user-create.out" 2>&1 || die "radosgw-admin user create failed"
    local out
    out=$(s3_req PUT "/$BUCKET" 2>&1) || die "creating bucket $BUCKET failed: HTTP $out"
    wait_for "bucket $BUCKET to answer a signed HEAD" 30 bucket_ok
}

# A self-signed certificate for 127.0.0.1 and localhost, if openssl is there:
# RGW then also serves HTTPS (WP_S3_HTTPS_ENDPOINT, WP_S3_CA_FILE in env).
make_tls() {
    TLS_PORT=
    command -v openssl >/dev/null || return 0
    mkdir -p "$DIR/tls"
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=127.0.0.1 \
        -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" \
        -keyout "$DIR/tls/key.pem" -out "$DIR/tls/cert.pem" >"$DIR/log/openssl.out" 2>&1 || return 0
    free_port TLS_PORT
    FRONTENDS="$FRONTENDS ssl_endpoint=127.0.0.1:$TLS_PORT"
    FRONTENDS="$FRONTENDS ssl_certificate=$DIR/tls/cert.pem ssl_private_key=$DIR/tls/key.pem"
}

# The first object write of a fresh gateway is slow (~2 s): pay it here.
warm_up() {
    local out
    out=$(s3_req PUT "/$BUCKET/warm-up" warm 2>&1) || die "a test PUT to bucket $BUCKET failed: HTTP $out"
    out=$(s3_req DELETE "/$BUCKET/warm-up" 2>&1) || die "a test DELETE in bucket $BUCKET failed: HTTP $out"
}

write_env() {
    cat >"$DIR/env.tmp" <<EOF
WP_S3_ENDPOINT=http://127.0.0.1:$RGW_PORT
WP_S3_ACCESS_KEY=$ACCESS_KEY
WP_S3_SECRET_KEY=$SECRET_KEY
WP_S3_BUCKET=$BUCKET
WP_S3_REGION=$REGION
EOF
    if [ -n "$TLS_PORT" ]; then
        echo "WP_S3_HTTPS_ENDPOINT=https://127.0.0.1:$TLS_PORT" >>"$DIR/env.tmp"
        echo "WP_S3_CA_FILE=$DIR/tls/cert.pem" >>"$DIR/env.tmp"
    fi
    mv "$DIR/env.tmp" "$DIR/env"
}

# 0 if DIR holds a running cluster whose bucket answers signed requests.
running() {
    [ -s "$DIR/env" ] || return 1
    local f
    for f in mon osd rgw; do
        pid_alive "$DIR/pids/$f" || return 1
    done
    local WP_S3_ENDPOINT WP_S3_ACCESS_KEY WP_S3_SECRET_KEY
    # shellcheck disable=SC1091
    . "$DIR/env"
    RGW_PORT=${WP_S3_ENDPOINT##*:}
    ACCESS_KEY=$WP_S3_ACCESS_KEY
    SECRET_KEY=$WP_S3_SECRET_KEY
    bucket_ok
}

# PIDs (from DIR/pids) of the daemons still running.
live_pids() {
    local name f
    for name in rgw osd mon; do
        f="$DIR/pids/$name"
        pid_alive "$f" && cat "$f"
    done
}

# Stops every daemon listed in DIR/pids: SIGTERM, then SIGKILL after 2 s.
# The state is thrown away: no need to wait for a slow clean exit
# (radosgw takes ~6 s on SIGTERM; the monitor and OSD ~2 s).
kill_daemons() {
    local pids i
    pids=$(live_pids)
    [ -n "$pids" ] || return 0
    # shellcheck disable=SC2086
    kill -TERM $pids 2>/dev/null
    for i in $(seq 1 20); do
        [ -n "$(live_pids)" ] || return 0
        sleep 0.1
    done
    pids=$(live_pids)
    # shellcheck disable=SC2086
    [ -z "$pids" ] || kill -KILL $pids 2>/dev/null
    for i in $(seq 1 50); do
        [ -n "$(live_pids)" ] || return 0
        sleep 0.1
    done
}

stop_all() {
    [ -d "$DIR" ] || return 0
    kill_daemons
    # Only remove what looks like our state directory.
    if [ -f "$DIR/ceph.conf" ] || [ -d "$DIR/pids" ]; then
        rm -rf "$DIR"
    fi
}

cmd_start() {
    if running; then
        echo "rgw.sh: already running: $(head -n 1 "$DIR/env")"
        return 0
    fi
    stop_all # leftovers of a failed or stale start
    for tool in ceph-mon ceph-osd radosgw radosgw-admin ceph monmaptool ceph-authtool setsid timeout; do
        command -v "$tool" >/dev/null ||
            die "$tool not found (apt-get install -y --no-install-recommends ceph-mon ceph-osd radosgw ceph-common)"
    done
    [ -n "$PY" ] || die "python3 not found (ceph-common needs it)"
    mkdir -p "$DIR"/{run,log,pids,mon,osd} || die "cannot create $DIR"
    local t0=$SECONDS
    FSID=$(cat /proc/sys/kernel/random/uuid)
    free_port MON_PORT
    free_port RGW_PORT
    ACCESS_KEY=WP$(rand_alnum 18)
    SECRET_KEY=$(rand_alnum 40)
    FRONTENDS="beast endpoint=127.0.0.1:$RGW_PORT tcp_nodelay=1"
    make_tls
    write_conf
    start_mon
    echo "rgw.sh: monitor up after $((SECONDS - t0))s"
    start_osd
    echo "rgw.sh: OSD up after $((SECONDS - t0))s"
    start_rgw
    warm_up
    write_env
    echo "rgw.sh: RGW ready at http://127.0.0.1:$RGW_PORT (bucket $BUCKET) in $((SECONDS - t0))s"
}

main() {
    [ $# -eq 2 ] || { echo "usage: $0 start|stop|status DIR" >&2; exit 2; }
    case "$2" in
    /*) DIR=$2 ;;
    *) DIR=$PWD/$2 ;;
    esac
    DIR=${DIR%/}
    [ -n "$DIR" ] && [ "$DIR" != / ] || { echo "rgw.sh: refusing DIR '$2'" >&2; exit 2; }
    case "$1" in
    start) # a port taken between picking and binding, or a slow daemon
           # on a loaded machine: one clean retry before giving up
        ( cmd_start ) || { echo "rgw.sh: start failed; retrying once" >&2; stop_all; cmd_start; } ;;
    stop) stop_all; echo "rgw.sh: stopped" ;;
    status) running ;;
    *) echo "usage: $0 start|stop|status DIR" >&2; exit 2 ;;
    esac
}

main "$@"
