#!/usr/bin/env bash
# packaging/install_and_build (issue 13): installs the build into a temporary
# prefix, checks the installed tree, then builds the installed examples
# (share/doc/woodpecker/examples) against it as a user would:
#   1. make, with `pkg-config --cflags --libs woodpecker` (libwoodpecker.so);
#   2. CMake, with find_package(Woodpecker) (Woodpecker::woodpecker);
#   3. statically: pkg-config --static, and Woodpecker::woodpecker_static;
# and runs each: a consumer tailing the log in another process while the
# producer appends, then a second consumer reading it afterwards; both must
# print exactly the producer's input. Also installs with DESTDIR.
#   install_and_build.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$(cd "$1" && pwd)
src=$(cd "$2" && pwd)
mkdir -p "${WP_TEST_TMP:-/tmp}"
tmp=$(mktemp -d "${WP_TEST_TMP:-/tmp}/packaging.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
strict=(-O2 -Wall -Wextra -Wpedantic -Werror)

# ---- install and the installed tree ------------------------------------------
prefix=$tmp/prefix
cmake --install "$build" --prefix "$prefix" >"$tmp/install.log" 2>&1 \
  || { cat "$tmp/install.log"; fail "cmake --install"; }
pc=$(find "$prefix" -name woodpecker.pc)
[ -n "$pc" ] || fail "no woodpecker.pc installed"
libdir=$(dirname "$(dirname "$pc")")
version=$(sed -n 's/^Version: //p' "$pc")
major=${version%%.*}
for f in include/woodpecker.h include/woodpecker_stream.h bin/wp bin/woodpecker \
         share/man/man1/wp.1 share/man/man5/woodpecker.yaml.5 share/man/man8/woodpecker.8 \
         share/doc/woodpecker/woodpecker.example.yaml \
         share/doc/woodpecker/examples/{producer.c,consumer.c,Makefile,CMakeLists.txt,README.md}; do
  [ -f "$prefix/$f" ] || fail "not installed: $f"
done
for f in libwoodpecker.a "libwoodpecker.so.$version" \
         cmake/Woodpecker/{WoodpeckerConfig,WoodpeckerConfigVersion,WoodpeckerTargets}.cmake; do
  [ -f "$libdir/$f" ] || fail "not installed: $libdir/$f"
done
[ "$(readlink "$libdir/libwoodpecker.so")" = "libwoodpecker.so.$major" ] || fail "libwoodpecker.so link"
[ "$(readlink "$libdir/libwoodpecker.so.$major")" = "libwoodpecker.so.$version" ] \
  || fail "libwoodpecker.so.$major link"
for h in woodpecker.h woodpecker_stream.h; do
  cmp -s "$src/include/$h" "$prefix/include/$h" || fail "installed header $h differs"
done
grep -qx "prefix=$prefix" "$pc" || fail "woodpecker.pc: prefix is not $prefix: $(head -3 "$pc")"
"$prefix/bin/wp" --help >/dev/null || fail "installed wp --help"
"$prefix/bin/woodpecker" --help >/dev/null || fail "installed woodpecker --help"
export PKG_CONFIG_PATH=$libdir/pkgconfig
pkg-config --exists --print-errors "woodpecker = $version" || fail "pkg-config woodpecker"

# DESTDIR: the files go under it, the .pc names the prefix without it.
DESTDIR=$tmp/dest cmake --install "$build" --prefix /opt/woodpecker >/dev/null
dpc=$(find "$tmp/dest/opt/woodpecker" -name woodpecker.pc)
[ -n "$dpc" ] && grep -qx "prefix=/opt/woodpecker" "$dpc" || fail "DESTDIR install: woodpecker.pc"
[ -f "$tmp/dest/opt/woodpecker/bin/wp" ] || fail "DESTDIR install: bin/wp"
rm -rf "$tmp/dest"

# ---- producer and consumer ---------------------------------------------------
# run_pair BIN_DIR NAME: a consumer tails while the producer appends, then a
# second consumer reads the log from its start; both print the input. The
# installed wp creates the log first: two processes that open a new data
# directory at the same moment can fail (SQLite "database is locked" while
# one of them creates the metadata file).
n=2000
seq 1 $n | sed 's/^/entry number /' >"$tmp/input"
run_pair() {
  local bin=$1 name=$2 data=$tmp/data-$2
  "$prefix/bin/wp" -o storage.root="$data" log create "$name" || fail "$name: wp log create"
  timeout 120 "$bin/consumer" "$data" "$name" $n >"$tmp/$name.tail" 2>"$tmp/$name.tail.err" &
  local tail_pid=$!
  timeout 120 "$bin/producer" "$data" "$name" <"$tmp/input" 2>"$tmp/$name.prod.err" \
    || { cat "$tmp/$name.prod.err"; fail "$name: producer"; }
  wait $tail_pid || { cat "$tmp/$name.tail.err"; fail "$name: tailing consumer"; }
  cmp -s "$tmp/input" "$tmp/$name.tail" || fail "$name: the tailing consumer printed other entries"
  timeout 120 "$bin/consumer" "$data" "$name" $n >"$tmp/$name.after" \
    || fail "$name: consumer after the producer"
  cmp -s "$tmp/input" "$tmp/$name.after" || fail "$name: the consumer printed other entries"
  echo "$name: $(cat "$tmp/$name.prod.err")"
}
# needs BIN LIBDIR yes|no: whether the program loads libwoodpecker.so from LIBDIR
needs() {
  local loaded
  loaded=$(ldd "$1" | awk '$1 ~ /^libwoodpecker\.so/ {print $3}')
  if [ "$3" = yes ]; then
    [ "$loaded" = "$2/libwoodpecker.so.$major" ] || fail "$1 loads libwoodpecker from '$loaded'"
  else
    [ -z "$loaded" ] || fail "$1 is linked to $loaded, not static"
  fi
}

# 1. make + pkg-config, shared library (found with LD_LIBRARY_PATH)
cp -r "$prefix/share/doc/woodpecker/examples" "$tmp/ex-make"
make -s -C "$tmp/ex-make" CFLAGS="${strict[*]}" >"$tmp/make.log" 2>&1 \
  || { cat "$tmp/make.log"; fail "make (pkg-config)"; }
export LD_LIBRARY_PATH=$libdir
needs "$tmp/ex-make/producer" "$libdir" yes
run_pair "$tmp/ex-make" make
unset LD_LIBRARY_PATH

# 2. CMake + find_package(Woodpecker), shared library (rpath)
cmake -S "$tmp/ex-make" -B "$tmp/ex-cmake" -DCMAKE_PREFIX_PATH="$prefix" \
      -DCMAKE_C_FLAGS="${strict[*]}" >"$tmp/cmake.log" 2>&1 \
  && cmake --build "$tmp/ex-cmake" >>"$tmp/cmake.log" 2>&1 \
  || { cat "$tmp/cmake.log"; fail "CMake find_package build"; }
needs "$tmp/ex-cmake/producer" "$libdir" yes
run_pair "$tmp/ex-cmake" cmake

# 3. static: libwoodpecker.a with the shared libraries the .pc names
#    (Requires.private, Libs.private; `pkg-config --static` would also want
#    the static dependencies of Debian's libcurl), and woodpecker_static
mkdir "$tmp/ex-static"
static_libs="$libdir/libwoodpecker.a $(pkg-config --libs $(pkg-config --print-requires-private woodpecker)) $(sed -n 's/^Libs.private: //p' "$pc")"
for p in producer consumer; do
  # shellcheck disable=SC2046,SC2086
  cc -std=c11 "${strict[@]}" $(pkg-config --cflags woodpecker) -o "$tmp/ex-static/$p" \
     "$tmp/ex-make/$p.c" $static_libs || fail "static link of $p with pkg-config --static"
done
needs "$tmp/ex-static/producer" "$libdir" no
run_pair "$tmp/ex-static" static
cmake -S "$tmp/ex-make" -B "$tmp/ex-cmake-static" -DCMAKE_PREFIX_PATH="$prefix" \
      -DWOODPECKER_STATIC=ON -DCMAKE_C_FLAGS="${strict[*]}" >"$tmp/cmake-static.log" 2>&1 \
  && cmake --build "$tmp/ex-cmake-static" >>"$tmp/cmake-static.log" 2>&1 \
  || { cat "$tmp/cmake-static.log"; fail "CMake Woodpecker::woodpecker_static build"; }
needs "$tmp/ex-cmake-static/consumer" "$libdir" no
run_pair "$tmp/ex-cmake-static" cmake_static

echo "packaging: installed to a prefix and with DESTDIR; the examples built with" \
     "pkg-config, find_package and statically, and ran"
