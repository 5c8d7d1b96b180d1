#!/usr/bin/env bash
# packaging/man_pages: the generated man pages hold every word of their
# source, in order, and render without a groff warning (issue 13).
#   man_pages.sh PYTHON3 SOURCE_DIR MAN_DIR WP WOODPECKER
# The pages are generated at build time from `wp --help`, `woodpecker --help`
# and docs/configuration.md (scripts/mkman.py), so they cannot drift; this
# checks that the generator dropped nothing.
set -euo pipefail
py=$1 src=$2 man=$3 wp=$4 server=$5
mkman="$py $src/scripts/mkman.py check"
rc=0
for args in "$man/wp.1 --help-of $wp" \
            "$man/woodpecker.8 --help-of $server" \
            "$man/woodpecker.yaml.5 --markdown $src/docs/configuration.md"; do
  # shellcheck disable=SC2086
  $mkman $args || rc=$?
  [ $rc -eq 0 ] || exit $rc
done
echo "man pages: wp.1, woodpecker.8, woodpecker.yaml.5 checked"
