#!/usr/bin/env bash
# demo.sh — the embedded Woodpecker demo (local disk + SQLite, no servers),
# in a temporary directory that is removed on exit. What `make demo` runs:
#   scripts/demo.sh path/to/wp
# Every step prints its command first, so you can repeat it by hand.
set -euo pipefail

WP=${1:-build/wp}
[ -x "$WP" ] || { echo "demo: no wp binary at '$WP' (run 'make build' first)" >&2; exit 1; }
WP=$(cd "$(dirname "$WP")" && pwd)/$(basename "$WP")

tmp=$(mktemp -d "${TMPDIR:-/tmp}/wp-demo.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
cfg=$tmp/woodpecker.yaml
# retention.ttl_ms 0 and a short GC interval: truncated segments are deleted
# within a fraction of a second, so the demo shows the space being freed.
cat >"$cfg" <<EOF
storage:
  root: $tmp/data
retention:
  ttl_ms: 0
gc:
  interval_ms: 200
EOF

# step CMD...: echoes the command (as you would type it), then runs it.
step() {
  printf '\n$'
  printf ' %q' "$@"
  printf '\n'
  "$@"
}
wp() { "$WP" -c "$cfg" "$@"; }
# say LINE...: a comment block, one "# " line per argument.
say() {
  printf '\n'
  printf '# %s\n' "$@"
}
# show TEXT: echoes a pipeline that the script then runs itself.
show() { printf '\n$ %s\n' "$*"; }

say "Woodpecker demo: data and metadata under $tmp"
step cat "$cfg"
step "$WP" -c "$cfg" log create demo
step "$WP" -c "$cfg" log list

say "Append 100,000 entries of 1 KiB (async, group commit) while a reader tails the log;" \
  "8 MiB segments so that there are several to truncate."
step "$WP" -c "$cfg" -o segment.max_bytes=8MiB bench --log demo --entries 100000 --size 1024 --reader
step "$WP" -c "$cfg" log info demo
step "$WP" -c "$cfg" segments demo

say "The first three entries (bench payloads: an 8-byte timestamp, then random bytes," \
  "escaped as \\xNN; cut to 100 columns here):"
show "$WP -c $cfg read demo --count 3 | cut -c 1-100"
wp read demo --count 3 | cut -c 1-100

say "Append two lines of text (one entry per line; prints the ids) and read them back:"
show "printf 'hello\\nwoodpecker\\n' | $WP -c $cfg append demo"
ids=$(printf 'hello\nwoodpecker\n' | wp append demo)
printf '%s\n' "$ids"
first=${ids%%$'\n'*}
step "$WP" -c "$cfg" read demo --from "$first"

# Truncate at the last entry of the middle segment: every segment up to it is
# wholly truncated and is garbage-collected after retention.ttl_ms (0 here).
mid=$(wp segments demo | awk 'NR > 1 { id[n] = $1; last[n] = $3; n++ }
                             END { m = int((n - 1) / 2); print id[m] ":" last[m] }')
say "Truncate up to $mid (inclusive), the end of the middle segment:"
step du -sh "$tmp/data"
step "$WP" -c "$cfg" truncate demo "$mid"
say "Reading from the earliest retained entry now starts right after $mid:"
show "$WP -c $cfg read demo --count 1 | cut -c 1-100"
wp read demo --count 1 | cut -c 1-100
say "Garbage collection runs in every open client each gc.interval_ms (200 ms here);" \
  "keep one open for a second, a tailing reader, so that it deletes the truncated segments:"
step timeout 1 "$WP" -c "$cfg" read demo --from latest --follow || true
step "$WP" -c "$cfg" segments demo
step du -sh "$tmp/data"
step "$WP" -c "$cfg" log info demo

say "Check every CRC, block header, index and footer:"
step "$WP" -c "$cfg" verify demo
say "Demo done (the temporary directory is removed now)."
