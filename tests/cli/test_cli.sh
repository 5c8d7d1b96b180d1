#!/usr/bin/env bash
# test_cli.sh — the wp CLI contract (ARCHITECTURE §10), end to end against the
# built binary, with data under a scratch directory.
#   bash tests/cli/test_cli.sh path/to/wp      (WP_TEST_TMP: scratch parent)
# Prints "N passed, N failed" and exits non-zero if anything failed.
set -u
WP=${1:?usage: test_cli.sh path/to/wp}
case $WP in /*) ;; *) WP=$PWD/$WP ;; esac
base=${WP_TEST_TMP:-${TMPDIR:-/tmp}}
mkdir -p "$base"
dir=$(mktemp -d "$base/cli.XXXXXX") || exit 1
root=$dir/root
bg=()
cleanup() {
  for p in "${bg[@]}"; do kill "$p" 2>/dev/null; done
  rm -rf "$dir"
}
trap cleanup EXIT

passed=0 failed=0 rc=0 out='' err=''
wp() { "$WP" -o storage.root="$root" "$@"; }

# run CMD...: runs with empty stdin; sets rc, out, err.
run() {
  "$@" >"$dir/out" 2>"$dir/err" </dev/null
  rc=$?
  out=$(cat "$dir/out") err=$(cat "$dir/err")
}
# run_in FILE CMD...: the same with stdin from FILE.
run_in() {
  local in=$1
  shift
  "$@" >"$dir/out" 2>"$dir/err" <"$in"
  rc=$?
  out=$(cat "$dir/out") err=$(cat "$dir/err")
}
# expect DESC TEST-ARGS...: one check, evaluated with `test`.
expect() {
  local desc=$1
  shift
  if test "$@"; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
    echo "FAIL: $desc (rc=$rc)"
    echo "  stdout: $(printf '%s' "$out" | head -c 400)"
    echo "  stderr: $(printf '%s' "$err" | head -c 400)"
  fi
}
# expect_error DESC RC: the last command exited RC with a "wp: error: " message.
expect_error() {
  local prefixed=no
  case $err in "wp: error: "*) prefixed=yes ;; esac
  expect "$1: exit $2" "$rc" -eq "$2"
  expect "$1: 'wp: error: ' on stderr" "$prefixed" = yes
}
expect_ok() { expect "$1: exit 0" "$rc" -eq 0; }

# ---- usage ---------------------------------------------------------------------

run "$WP"
expect_error "no command" 2
expect "no command: usage on stderr" -n "$(printf '%s' "$err" | grep '^usage: wp')"
run "$WP" --help
expect_ok "--help"
expect "--help: usage on stdout" -n "$(printf '%s' "$out" | grep '^usage: wp')"
expect "--help: lists commands" -n "$(printf '%s' "$out" | grep 'truncate NAME S:E')"
run "$WP" help
expect_ok "help"
expect "help: usage on stdout" -n "$(printf '%s' "$out" | grep '^usage: wp')"
run wp frobnicate
expect_error "unknown command" 2
expect "unknown command: named" -n "$(printf '%s' "$err" | grep frobnicate)"
run wp log
expect_error "log without sub-command" 2
run wp log frob x
expect_error "unknown log sub-command" 2
expect "unknown log sub-command: named" -n "$(printf '%s' "$err" | grep "unknown log command 'frob'")"
expect "unknown log sub-command: the log sub-commands" \
  -n "$(printf '%s' "$err" | grep 'usage: wp log create|delete|list|info')"
run wp channel bogus
expect_error "unknown channel sub-command" 2
expect "unknown channel sub-command: the channel sub-commands" \
  -n "$(printf '%s' "$err" | grep 'usage: wp channel create|list|delete')"
run wp log create
expect_error "log create without NAME" 2
run wp log info a b
expect_error "log info with two names" 2
run wp read x --bogus
expect_error "unknown read option" 2
run wp read x --count abc
expect_error "bad --count" 2
run wp read x --from nowhere
expect_error "bad --from" 2
run wp read x --format yaml
expect_error "bad --format" 2
run wp truncate x 1-2
expect_error "bad truncate id" 2
run wp bench --mode turbo
expect_error "bad bench mode" 2
run wp bench --payload zeros
expect_error "bad bench payload" 2
run "$WP" -o
expect_error "-o without a value" 2
run "$WP" -o novalue log list
expect_error "-o without '='" 2
run "$WP" --frob log list
expect_error "unknown global option" 2

# ---- config errors ------------------------------------------------------------

run wp -o no.such.key=1 log list
expect_error "bad -o key" 1
expect "bad -o key: named" -n "$(printf '%s' "$err" | grep no.such.key)"
run wp -o segment.max_bytes=banana log list
expect_error "bad -o value" 1
run "$WP" -c "$dir/missing.yaml" log list
expect_error "missing config file" 1
printf 'storage:\n  root: [unclosed\n  : - : {\n' >"$dir/garbled.yaml"
run "$WP" -c "$dir/garbled.yaml" log list
expect_error "garbled config file" 1
printf 'storage:\n  root: %s\nbogus_section:\n  x: 1\n' "$root" >"$dir/unknown.yaml"
run "$WP" -c "$dir/unknown.yaml" log list
expect_error "unknown key in config file" 1
printf 'storage:\n  root: %s\n' "$root" >"$dir/good.yaml"
run "$WP" -c "$dir/good.yaml" log list
expect_ok "good config file"
WP_NO_SUCH__KEY=1 run wp log list
expect_error "bad WP_* environment override" 1

# ---- names and missing logs ----------------------------------------------------

long=$(printf 'n%.0s' $(seq 201))
for bad in "bad name!" "" "$long" "a//b" "/lead"; do
  run wp log create "$bad"
  expect_error "create bad name '${bad:0:20}'" 1
done
run wp log create "$(printf 'n%.0s' $(seq 200))"
expect_ok "create a 200-byte name"
for cmd in "log info" "log delete" "read" "segments" "verify" "truncate" "compact"; do
  extra=()
  [ "$cmd" = truncate ] && extra=(0:0)
  # shellcheck disable=SC2086
  run wp $cmd nope "${extra[@]}"
  expect_error "$cmd of a missing log" 1
done
printf 'x\n' >"$dir/one.txt"
run_in "$dir/one.txt" wp append nope
expect_error "append to a missing log" 1

# ---- create, list, info, delete -------------------------------------------------

for n in a b ns/c; do
  run wp log create $n
  expect_ok "create $n"
done
run wp log create a
expect_error "create an existing log" 1
run wp log list
expect_ok "list"
expect "list: sorted names" "$(printf '%s' "$out" | grep -v '^nnn')" = "$(printf 'a\nb\nns/c')"
run wp log list ns/
expect "list with prefix" "$out" = "ns/c"
run wp log info a
expect_ok "info"
expect "info: name" "$(printf '%s' "$out" | grep '^name: ')" = "name: a"
for k in id writer_epoch truncated_to created segments bytes last_id; do
  expect "info: has $k" -n "$(printf '%s' "$out" | grep "^$k: ")"
done
expect "info: empty log has no last id" "$(printf '%s' "$out" | grep '^last_id: ')" = "last_id: none"
run wp log delete b
expect_ok "delete"
run wp log list
expect "list after delete" "$(printf '%s' "$out" | grep -v '^nnn')" = "$(printf 'a\nns/c')"
run wp log info b
expect_error "info of a deleted log" 1

# ---- append and read back ---------------------------------------------------------

: >"$dir/lines.txt"
for i in $(seq 0 99); do echo "line $i: héllo wörld" >>"$dir/lines.txt"; done
run_in "$dir/lines.txt" wp append a
expect_ok "append 100 lines"
expect "append: prints ids 0:0..0:99" "$out" = "$(seq 0 99 | sed 's/^/0:/')"
awk '{ printf "0:%d\t%s\n", NR - 1, $0 }' "$dir/lines.txt" >"$dir/expect.txt"
run wp read a
expect_ok "read"
expect "read: every entry in order, text" "$out" = "$(cat "$dir/expect.txt")"
run wp read a --format raw
expect "read --format raw" "$out" = "$(cat "$dir/lines.txt")"
run wp read a --from 0:50
expect "read --from 0:50" "$out" = "$(sed -n '51,$p' "$dir/expect.txt")"
run wp read a --from=0:50 --count 3
expect "read --from 0:50 --count 3" "$out" = "$(sed -n '51,53p' "$dir/expect.txt")"
run wp read a --count 0
expect "read --count 0 prints nothing" -z "$out"
run wp read a --from latest
expect_ok "read --from latest"
expect "read --from latest: nothing new" -z "$out"
run wp read a --format json --count 2
expect "read --format json" "$(printf '%s' "$out" | head -1)" = \
  '{"id":"0:0","data":"line 0: héllo wörld","props":{}}'

printf 'with props\n' >"$dir/p.txt"
run_in "$dir/p.txt" wp append a --prop k1=v1 --prop 'k2=a "q"'
expect_ok "append --prop"
pid_=$out
run wp read a --from "$pid_" --format json
expect "json props" "$out" = "{\"id\":\"$pid_\",\"data\":\"with props\",\"props\":{\"k1\":\"v1\",\"k2\":\"a \\\"q\\\"\"}}"

python3 -c 'import sys; sys.stdout.buffer.write(bytes(range(256)))' >"$dir/bin"
run wp append a --file "$dir/bin"
expect_ok "append --file"
bid=$out
run wp read a --from "$bid" --count 1
expect "binary entry in text form is escaped" "$out" = \
  "$bid	$(python3 -c 'import sys; sys.stdout.write("".join(chr(b) if 32 <= b < 127 and b != 92 else "\\x%02x" % b for b in range(256)))')"
"$WP" -o storage.root="$root" read a --from "$bid" --count 1 --format raw >"$dir/bin.out" 2>/dev/null
printf '\n' >>"$dir/bin"
expect "binary entry in raw form is exact" -z "$(cmp "$dir/bin" "$dir/bin.out" 2>&1)"
run wp read a --from "$bid" --count 1 --format json
expect "binary entry in json form is base64" "$(printf '%s' "$out" |
  python3 -c 'import sys, json, base64; o = json.loads(sys.stdin.read()); print(o["encoding"], base64.b64decode(o["data"]) == bytes(range(256)))')" = "base64 True"

: >"$dir/empty.txt"
run_in "$dir/empty.txt" wp append a
expect_ok "append of empty input"
expect "append of empty input prints nothing" -z "$out"

head -c 100 /dev/zero | tr '\0' x >"$dir/big.txt"
echo >>"$dir/big.txt"
run_in "$dir/big.txt" wp -o writer.max_entry_bytes=16 append a
expect_error "append over writer.max_entry_bytes" 1

# ---- truncate, segments, verify -----------------------------------------------------

run wp truncate a 0:49
expect_ok "truncate"
run wp read a --from earliest --count 1
expect "read from earliest after truncate starts after the point" "$out" = "$(sed -n '51p' "$dir/expect.txt")"
run wp log info a
expect "info: truncated_to" "$(printf '%s' "$out" | grep '^truncated_to: ')" = "truncated_to: 0:49"
nseg=$(printf '%s' "$out" | sed -n 's/^segments: //p')
run wp segments a
expect_ok "segments"
expect "segments: header" -n "$(printf '%s' "$out" | head -1 | grep 'id.*state.*last_entry.*bytes.*epoch.*created.*completed')"
expect "segments: one row per segment" "$(printf '%s\n' "$out" | sed 1d | wc -l)" -eq "${nseg:-0}"
expect "segments: segment 0 holds entries 0..99" -n "$(printf '%s' "$out" | grep -E '^0 +[a-z]+ +99 ')"
expect "segments: location column" -n "$(printf '%s' "$out" | head -1 | grep -E 'completed +location$')"
expect "segments: local segments are local" \
  "$(printf '%s\n' "$out" | sed 1d | awk '{ print $NF }' | sort -u)" = local
run wp verify a
expect_ok "verify"
expect "verify: ok line" -n "$(printf '%s' "$out" | grep -E '^ok: [1-9][0-9]* entries checked$')"
run wp compact a
expect_error "compact on local storage" 1
expect "compact: says object storage only" -n "$(printf '%s' "$err" | grep 'object storage only')"
run wp compact
expect_error "compact without a NAME" 2

# ---- nodes, and segment locations in service mode ------------------------------

run wp nodes
expect_ok "nodes without servers"
expect "nodes without servers: says so" "$out" = "no live nodes"
run wp nodes --json
expect "nodes --json without servers: an empty array" "$out" = "[]"
run wp nodes --kind=logstore
expect "nodes --kind without servers" "$out" = "no live nodes of kind 'logstore'"
for bad in LogStore "log store" "" "a/b" "$(printf 'k%.0s' $(seq 32))"; do
  run wp nodes --kind "$bad"
  expect_error "nodes --kind '${bad:0:20}'" 2
done
run wp nodes --kind
expect_error "nodes --kind without a value" 2
run wp nodes --frob
expect_error "nodes with an unknown option" 2
run wp nodes extra
expect_error "nodes with an argument" 2
run wp -o meta.type=etcd -o meta.etcd.endpoints=http://127.0.0.1:1 -o meta.etcd.timeout_ms=300 nodes
expect_error "nodes with unreachable metadata" 1

# A LogStore server registered in the same metadata file; a quorum log of
# one replica on it.
server=$(dirname "$WP")/woodpecker
if [ -x "$server" ]; then
  "$server" logstore -o node.id=ls-cli -o node.listen=127.0.0.1:0 -o node.data_dir="$dir/ls" \
    -o meta.path="$root/meta.sqlite" -o node.zone=zone-c -o node.disk_reserve_bytes=0 \
    >"$dir/ls.out" 2>"$dir/ls.err" &
  lsp=$!
  bg+=("$lsp")
  for _ in $(seq 100); do grep -q 'serving on' "$dir/ls.out" && break; sleep 0.1; done
  addr=$(sed -n 's/.*serving on //p' "$dir/ls.out")
  expect "logstore server started" -n "$addr"
  run wp nodes
  expect_ok "nodes with a server"
  expect "nodes: header" "$(printf '%s\n' "$out" | head -1 | tr -s ' ')" = \
    "id kind addr zone load free segments upload lag up"
  expect "nodes: the server's row" \
    "$(printf '%s\n' "$out" | sed 1d | awk '{ print $1, $2, $3, $4, $5, $8, $9, $10, $11, $12, $13 }')" = \
    "ls-cli logstore $addr zone-c 0 0 0 / 0 B -"
  expect "nodes: free space in binary units" \
    -n "$(printf '%s\n' "$out" | sed 1d | grep -E ' [0-9]+(\.[0-9] [KMGTPE]i| )B ')"
  run wp nodes --kind logstore --json
  expect "nodes --json fields" "$(printf '%s' "$out" | python3 -c 'import sys, json
a = json.loads(sys.stdin.read())
o = a[0]
print(len(a), o["id"], o["kind"], o["addr"], o["zone"], o["disk_free"] > 0, o["segments"],
      o["upload_segments"], o["upload_bytes"], o["upload_lag_ms"], o["up_ms"] >= 0,
      o["registered_ms"] > 0)')" = "1 ls-cli logstore $addr zone-c True 0 0 0 0 True True"
  run wp nodes --kind streaming
  expect "nodes --kind streaming" "$out" = "no live nodes of kind 'streaming'"

  q=(-o storage.type=quorum -o quorum.write=1 -o quorum.ack=1)
  run wp "${q[@]}" log create q
  printf 'q0\nq1\n' >"$dir/q.txt"
  run_in "$dir/q.txt" wp "${q[@]}" append q
  expect_ok "append to a quorum log"
  run wp "${q[@]}" segments q
  expect_ok "segments of a quorum log"
  expect "segments: a quorum segment's replicas by node id" \
    "$(printf '%s\n' "$out" | sed 1d | awk '{ print $1, $2, $(NF-1), $NF }')" = "0 completed replicas ls-cli"
  run wp segments q # the placement, whatever the configuration says
  expect "segments: placement over configuration" \
    "$(printf '%s\n' "$out" | sed 1d | awk '{ print $(NF-1), $NF }')" = "replicas ls-cli"

  kill -TERM "$lsp"
  wait "$lsp"
  expect "logstore server exits 0 on SIGTERM" $? -eq 0
  run wp nodes
  expect "nodes after the server deregistered" "$out" = "no live nodes"
else
  echo "skip: no $server (nodes with a server, quorum locations)"
fi

# ---- corruption -----------------------------------------------------------------

run wp log create c
: >"$dir/c.txt"
for i in $(seq 0 1999); do printf 'entry %04d %s\n' "$i" "$(printf '%0150d' "$i")" >>"$dir/c.txt"; done
run_in "$dir/c.txt" wp append c
expect_ok "append 2000 entries to c"
awk '{ printf "0:%d\t%s\n", NR - 1, $0 }' "$dir/c.txt" >"$dir/c.expect"
run wp log info c
cid=$(printf '%s' "$out" | sed -n 's/^id: //p')
data=$(find "$root/$cid" -path "*/0/data" -type f 2>/dev/null | head -1)
expect "segment data file exists ($root/$cid/0/data)" -n "$data" -a -f "$data"
if [ -n "$data" ] && [ -f "$data" ]; then
  python3 - "$data" <<'EOF'
import sys
with open(sys.argv[1], "r+b") as f:
    f.seek(0, 2)
    mid = f.tell() // 2
    f.seek(mid)
    b = f.read(1)[0]
    f.seek(mid)
    f.write(bytes([b ^ 0x5A]))
EOF
  run wp verify c
  expect_error "verify of a corrupt segment" 1
  run wp read c
  expect "read of a corrupt range fails" "$rc" -ne 0
  case $err in "wp: error: "*) p=yes ;; *) p=no ;; esac
  expect "read of a corrupt range: 'wp: error: '" "$p" = yes
  n=$(printf '%s' "$out" | grep -c .)
  expect "read of a corrupt range prints only correct entries" \
    "$out" = "$(head -n "$n" "$dir/c.expect")"
  expect "read of a corrupt range stops before the end" "$n" -lt 2000
fi

# ---- follow --------------------------------------------------------------------

run wp log create f
(for i in 1 2 3 4 5; do echo "tick $i"; sleep 0.2; done) |
  "$WP" -o storage.root="$root" append f >"$dir/f.ids" 2>"$dir/f.err" &
bg+=($!)
run timeout 30 "$WP" -o storage.root="$root" read f --follow --count 5 --format raw
expect_ok "read --follow --count 5 with a concurrent appender"
expect "read --follow returns the appended entries" "$out" = "$(printf 'tick %d\n' 1 2 3 4 5)"
wait "${bg[-1]}"
expect "concurrent appender succeeded" $? -eq 0
"$WP" -o storage.root="$root" read f --follow >"$dir/f.out" 2>"$dir/f.err2" &
fp=$!
bg+=("$fp")
sleep 0.6
printf 'late\n' | "$WP" -o storage.root="$root" append f >/dev/null 2>&1
for _ in $(seq 50); do grep -q late "$dir/f.out" && break; sleep 0.1; done
kill -TERM "$fp"
wait "$fp"
rc=$? out=$(cat "$dir/f.out") err=$(cat "$dir/f.err2")
expect "read --follow ends cleanly on SIGTERM" "$rc" -eq 0
expect "read --follow saw all 6 entries" "$(printf '%s\n' "$out" | wc -l)" -eq 6
expect "read --follow saw the late entry" "$(printf '%s\n' "$out" | tail -1 | cut -f2)" = late

# ---- streaming commands without servers ------------------------------------------
# (against servers: tests/integration/test_stream_client.c)

run "$WP" --help
expect "--help: lists the streaming commands" \
  "$(printf '%s\n' "$out" | grep -cE '^  (channel (create|list|delete)|produce|consume) ')" -eq 5
run wp channel create
expect_error "channel create without NAME" 2
run wp channel delete a b
expect_error "channel delete with two names" 2
run wp channel list extra
expect_error "channel list with an argument" 2
run wp channel create 'no good'
expect_error "bad channel name" 1
expect "bad channel name: named" -n "$(printf '%s' "$err" | grep 'invalid channel name')"
run wp channel create "$(printf 'c%.0s' $(seq 1 129))"
expect_error "channel name too long" 1
run wp produce
expect_error "produce without CHANNEL" 2
run wp produce ch --producer
expect_error "produce --producer without a value" 2
run wp produce ch --bogus
expect_error "unknown produce option" 2
run wp consume
expect_error "consume without CHANNEL" 2
run wp consume ch --from sideways
expect_error "bad consume --from" 2
run wp consume ch --from at
expect_error "consume --from at without --id" 2
run wp consume ch --from after --id 1-2
expect_error "bad consume --id" 2
run wp consume ch --id 0:1
expect_error "consume --id without at/after" 2
run wp consume ch --count -1
expect_error "bad consume --count" 2
run wp consume ch --timeout-ms x
expect_error "bad consume --timeout-ms" 2
# The SQLite store of storage.root: no streaming node registered, no channel.
run wp channel list
expect_error "channel list without nodes" 1
expect "channel list without nodes: says so" -n "$(printf '%s' "$err" | grep 'no live streaming node')"
run wp channel create ch
expect_error "channel create without nodes" 1
run_in /dev/null wp produce ch
expect_error "produce to a missing channel" 1
expect "produce to a missing channel: named" -n "$(printf '%s' "$err" | grep "no channel 'ch'")"
run wp consume ch
expect_error "consume a missing channel" 1

# ---- bench (tiny) ----------------------------------------------------------------

run wp bench --log b1 --entries 200 --size 100 --reader --json
expect_ok "bench --json"
expect "bench --json fields" "$(printf '%s' "$out" | python3 -c 'import sys, json
o = json.loads(sys.stdin.read())
print(o["entries"], o["bytes"], o["reader_entries"], o["ack_p50_ms"] >= 0, o["e2e_p99_ms"] >= 0)')" = "200 20000 200 True True"
run wp bench --log b1 --entries 20 --size 4 --mode sync
expect_ok "bench sync, entries smaller than a timestamp"
expect "bench text output" -n "$(printf '%s' "$out" | grep '^MiB/s:')"
run wp read b1 --count 1000
expect "bench entries are readable" "$(printf '%s\n' "$out" | wc -l)" -eq 220
# compressible payloads, compressed: fewer bytes stored than appended
run wp -o flush.compression=zstd bench --log b2 --entries 300 --size 1000 --payload text --json
expect_ok "bench --payload text, zstd"
expect "bench reports stored bytes and CPU" "$(printf '%s' "$out" | python3 -c 'import sys, json
o = json.loads(sys.stdin.read())
print(o["payload"], 0 < o["stored_bytes"] < o["bytes"] / 2, o["stored_ratio"] < 0.5, o["cpu_s"] >= 0)')" = "text True True True"
run wp verify b2
expect_ok "verify a compressed log"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
