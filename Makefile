# Top-level entry points. Each target installs what it needs (scripts/deps.sh).
BUILD      ?= build
BUILD_ASAN ?= build-asan
BUILD_FUZZ ?= build-fuzz
BUILD_O3   ?= build-release
JOBS       ?= $(shell nproc)
MAKEFLAGS  += --no-print-directory
FUZZ_SECONDS ?= 20
PREFIX     ?= /usr/local

.PHONY: all deps build install demo test test-unit test-asan test-release fuzz bench bench-peers bench-etcd bench-s3 bench-quorum bench-tiering bench-streaming clean

all: build

deps:
	@scripts/deps.sh

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

# Installs into $(PREFIX) (under $(DESTDIR) if set): woodpecker.h,
# libwoodpecker.{a,so}, wp, woodpecker, woodpecker.pc, the CMake package,
# man pages, the example config and examples/ (cmake/packaging.cmake).
# As root with no DESTDIR, refreshes the dynamic linker's cache.
install: build
	@DESTDIR="$(DESTDIR)" cmake --install $(BUILD) --prefix "$(PREFIX)"
	@if [ -z "$(DESTDIR)" ] && [ "$$(id -u)" = 0 ] && command -v ldconfig >/dev/null; then ldconfig; fi

# The embedded demo: local disk + SQLite, in a temporary directory.
demo: build
	@scripts/demo.sh $(BUILD)/wp

# Everything CI runs: the tests, the same tests under ASan+UBSan, a -O3
# build (its warnings differ; -Werror), a short fuzz run.
test: test-unit test-asan test-release fuzz

test-release: deps
	@cmake -S . -B $(BUILD_O3) -DCMAKE_BUILD_TYPE=Release >/dev/null
	@cmake --build $(BUILD_O3) -j $(JOBS) >/dev/null

test-unit: build
	@cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

test-asan: deps
	@cmake -S . -B $(BUILD_ASAN) -DCMAKE_BUILD_TYPE=Debug -DWP_SANITIZE=ON >/dev/null
	@cmake --build $(BUILD_ASAN) -j $(JOBS)
	@cd $(BUILD_ASAN) && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
	  ctest --output-on-failure -j $(JOBS)

fuzz: deps
	@scripts/fuzz.sh $(BUILD_FUZZ) $(FUZZ_SECONDS)

bench: build
	@scripts/deps.sh bench
	@bench/local.sh $(BUILD)/wp

# Side by side with fio, Redis Streams and NATS JetStream (bench/README.md).
bench-peers: build
	@bench/run.sh $(BUILD)/wp

# etcd requests per segment roll / append, cross-process tail latency.
bench-etcd: build
	@bench/etcd.sh $(BUILD)/wp

# Service mode: 3 LogStore servers on loopback vs local mode, same run;
# then the same servers tiering to object storage (bench-tiering).
bench-quorum: build
	@bench/quorum.sh $(BUILD)/wp
	@bench/tiering.sh $(BUILD)/wp

# Tiering: sustained ingest while 3 LogStore servers upload to a local Ceph
# RGW, against that RGW's raw PUT limit in the same run (issue 11).
bench-tiering: build
	@bench/tiering.sh $(BUILD)/wp

# Streaming service (issue 12): produce/consume through the service vs the
# library directly, Redis Streams and NATS JetStream, same run.
bench-streaming: build
	@bench/streaming.sh $(BUILD)/wp

# Object storage (local Ceph RGW): Woodpecker vs raw parallel PUTs.
bench-s3: build
	@bench/s3.sh $(BUILD)/wp

clean:
	rm -rf $(BUILD) $(BUILD_ASAN) $(BUILD_FUZZ)
