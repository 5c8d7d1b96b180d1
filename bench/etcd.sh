#!/usr/bin/env bash
# etcd.sh — what etcd metadata costs Woodpecker (local-disk data):
#   1. etcd requests per segment roll and per append (from etcd's own
#      /metrics: gRPC Range/Txn/Put/DeleteRange/Lease* handled), and
#   2. cross-process tail latency: `wp bench --tail` in one process reads
#      what `wp bench --mode sync` appends in another, with meta.type etcd
#      and with the embedded SQLite, in the same run.
# Usage: bench/etcd.sh path/to/wp        (make bench-etcd)
set -euo pipefail
WP=${1:-build/wp}
WP=$(cd "$(dirname "$WP")" && pwd)/$(basename "$WP")
ENTRIES=${ENTRIES:-20000}
TAIL_ENTRIES=${TAIL_ENTRIES:-2000}
command -v etcd >/dev/null || "$(dirname "$0")/../scripts/deps.sh"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/wp-bench-etcd.XXXXXX")
etcd_pid=
cleanup() { [ -n "$etcd_pid" ] && kill "$etcd_pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cport=$(free_port); pport=$(free_port)
etcd --name b1 --data-dir "$tmp/etcd" --logger=zap --log-level=error \
  --listen-client-urls "http://127.0.0.1:$cport" --advertise-client-urls "http://127.0.0.1:$cport" \
  --listen-peer-urls "http://127.0.0.1:$pport" --initial-advertise-peer-urls "http://127.0.0.1:$pport" \
  --initial-cluster "b1=http://127.0.0.1:$pport" --initial-cluster-state new >"$tmp/etcd.log" 2>&1 &
etcd_pid=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$cport/health" | grep -q true && break; sleep 0.1; done
ep="http://127.0.0.1:$cport"

requests() { # every unary gRPC request etcd has handled
  curl -sf "$ep/metrics" | awk '/^grpc_server_handled_total.*grpc_type="unary"/ { s += $2 } END { print s + 0 }'
}
ETCD=(-o meta.type=etcd -o "meta.etcd.endpoints=$ep" -o segment.max_bytes=4MiB)
run() { echo "\$ wp $*" >&2; "$WP" "$@"; }

# 1. requests per roll and per append: a 1-entry run (fixed cost of opening
# the client, creating the log, opening and closing the writer), then a run
# of ENTRIES entries; the difference divided by the extra rolls.
r0=$(requests)
run "${ETCD[@]}" -o meta.prefix=one/ -o "storage.root=$tmp/one" bench --log b --entries 1 --size 4KiB --json >/dev/null
r1=$(requests)
run "${ETCD[@]}" -o meta.prefix=many/ -o "storage.root=$tmp/many" bench --log b --entries "$ENTRIES" --size 4KiB --json >"$tmp/many.json"
r2=$(requests)
segs=$("$WP" "${ETCD[@]}" -o meta.prefix=many/ -o "storage.root=$tmp/many" segments b | tail -n +2 | wc -l)
fixed=$((r1 - r0)); many=$((r2 - r1)); rolls=$((segs - 1))
per_roll=$(python3 -c "print(round(($many - $fixed) / max($rolls, 1), 2))")
per_append=$(python3 -c "print(round(max($many - $fixed - $rolls * 3, 0) / $ENTRIES, 5))")

# 2. cross-process tail latency, etcd vs SQLite metadata.
tail_case() { # NAME CONFIG...
  local name=$1; shift
  "$WP" "$@" log create t >/dev/null
  "$WP" "$@" bench --tail --log t --entries "$TAIL_ENTRIES" --json >"$tmp/$name.tail" &
  local tpid=$!
  sleep 1
  run "$@" bench --log t --entries "$TAIL_ENTRIES" --size 1KiB --mode sync --json >"$tmp/$name.w"
  wait "$tpid"
  python3 -c "import json; d=json.load(open('$tmp/$name.tail')); print(d['e2e_p50_ms'], d['e2e_p99_ms'], d['entries'])"
}
read -r e50 e99 en < <(tail_case etcd "${ETCD[@]}" -o meta.prefix=tail/ -o "storage.root=$tmp/tail-etcd")
read -r s50 s99 sn < <(tail_case sqlite -o "storage.root=$tmp/tail-sqlite")

cat <<EOF

## etcd metadata cost (local-disk data, etcd 1 member on 127.0.0.1)

| measure | value |
|---|---:|
| fixed cost of a run (client + log create + writer open/close), etcd requests | $fixed |
| run of $ENTRIES x 4 KiB appends: etcd requests | $many |
| segment rolls in that run | $rolls |
| etcd requests per segment roll (target <= 3) | $per_roll |
| etcd requests per append beyond 3 per roll (target 0) | $per_append |

| cross-process tail (sync 1 KiB appends, reader in another process) | p50 ms | p99 ms | entries |
|---|---:|---:|---:|
| meta.type etcd (target p50 <= 5 ms) | $e50 | $e99 | $en |
| meta.type sqlite | $s50 | $s99 | $sn |

Commands: bench/etcd.sh $WP (ENTRIES=$ENTRIES TAIL_ENTRIES=$TAIL_ENTRIES); the
individual wp commands are echoed above.
EOF
