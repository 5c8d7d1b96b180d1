/* peer_common.h — what the peer benchmark clients (redis_bench.c,
 * nats_bench.c) share with `wp bench` (tools/wp/cmd_bench.c): options, the send
 * timestamp embedded in each payload, latency arrays and the JSON report
 * (same field names and the same nearest-rank percentiles).
 *
 * Payload layout: bytes 0..7 the CLOCK_MONOTONIC send time in ns (host
 * order), the rest incompressible xorshift64 bytes. The ack latency is
 * "append call -> ack received", the end-to-end latency "append call -> the
 * tailing reader (its own connection) received the entry". Header-only: each
 * client is one translation unit (built by bench/run.sh, not by CMake). */
#ifndef WP_BENCH_PEER_COMMON_H
#define WP_BENCH_PEER_COMMON_H

#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Bounds (as in tools/wp/cmd_bench.c): latencies are kept per entry. */
#define PEER_ENTRIES_MAX 20000000LL
#define PEER_SIZE_MAX (64LL << 20)
#define PEER_WINDOW_MAX 1000000LL
#define PEER_SECONDS_MAX 3600.0
/* How long the reader may see nothing after the writer finished. */
#define PEER_READER_IDLE_MS 10000
#define PEER_READER_POLL_MS 100

typedef struct {
    const char *host;
    int port;
    const char *log; /* stream name */
    int64_t entries, size, window;
    double seconds_max; /* stop sending new entries after this long */
    bool reader;
} peer_opts;

/* Latencies in ns, one slot per entry; -1 = no timestamp. */
typedef struct {
    int64_t *ack_ns, n_ack;
    int64_t *e2e_ns, n_e2e;
    int64_t failed;
} peer_lat;

static int64_t peer_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Writes the send time into the first 8 bytes (when there is room). */
static int64_t peer_stamp(uint8_t *payload, size_t size)
{
    int64_t now = peer_mono_ns();
    if (size >= 8)
        memcpy(payload, &now, 8);
    return now;
}

/* The send time embedded in a received payload, or -1. */
static int64_t peer_sent_ns(const void *data, size_t len)
{
    int64_t sent = -1;
    if (data && len >= 8)
        memcpy(&sent, data, 8);
    return sent;
}

static uint8_t *peer_payload(int64_t size)
{
    uint8_t *p = malloc((size_t)size + 1);
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (int64_t i = 0; p && i < size; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        p[i] = (uint8_t)x;
    }
    return p;
}

static int peer_usage(const char *prog, const char *msg)
{
    fprintf(stderr,
            "%s: %s\nusage: %s --port N [--host H] [--log NAME] [--entries N] [--size BYTES] "
            "[--window N] [--seconds S] [--reader]\n",
            prog, msg, prog);
    return 2;
}

static bool peer_i64(const char *s, int64_t lo, int64_t hi, int64_t *out)
{
    char *end;
    long long v = strtoll(s, &end, 10);
    if (end == s || *end || v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

/* Parses argv; returns 0, or 2 after printing the usage. */
static int peer_parse(int argc, char **argv, peer_opts *o)
{
    *o = (peer_opts){"127.0.0.1", 0, "bench", 100000, 1024, 256, 20.0, false};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int64_t n;
        if (strcmp(a, "--reader") == 0) {
            o->reader = true;
            continue;
        }
        if (!v)
            return peer_usage(argv[0], "missing value");
        i++;
        if (strcmp(a, "--host") == 0) {
            o->host = v;
        } else if (strcmp(a, "--log") == 0) {
            o->log = v;
        } else if (strcmp(a, "--port") == 0 && peer_i64(v, 1, 65535, &n)) {
            o->port = (int)n;
        } else if (strcmp(a, "--entries") == 0 && peer_i64(v, 1, PEER_ENTRIES_MAX, &n)) {
            o->entries = n;
        } else if (strcmp(a, "--size") == 0 && peer_i64(v, 8, PEER_SIZE_MAX, &n)) {
            o->size = n;
        } else if (strcmp(a, "--window") == 0 && peer_i64(v, 1, PEER_WINDOW_MAX, &n)) {
            o->window = n;
        } else if (strcmp(a, "--seconds") == 0) {
            char *end;
            o->seconds_max = strtod(v, &end);
            if (end == v || *end || !(o->seconds_max > 0 && o->seconds_max <= PEER_SECONDS_MAX))
                return peer_usage(argv[0], "--seconds wants (0, 3600]");
        } else {
            return peer_usage(argv[0], "bad option or value");
        }
    }
    if (!o->port)
        return peer_usage(argv[0], "--port is required");
    return 0;
}

static int peer_lat_alloc(peer_lat *l, int64_t entries)
{
    *l = (peer_lat){0};
    l->ack_ns = calloc((size_t)entries, sizeof *l->ack_ns);
    l->e2e_ns = calloc((size_t)entries, sizeof *l->e2e_ns);
    return l->ack_ns && l->e2e_ns ? 0 : -1;
}

static void peer_lat_free(peer_lat *l)
{
    free(l->ack_ns);
    free(l->e2e_ns);
}

static int peer_cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static int64_t peer_sort_valid(int64_t *v, int64_t n)
{
    int64_t k = 0;
    for (int64_t i = 0; i < n; i++)
        if (v[i] >= 0)
            v[k++] = v[i];
    qsort(v, (size_t)k, sizeof *v, peer_cmp_i64);
    return k;
}

/* Nearest-rank percentile in ms, NAN if no values (as wp bench). */
static double peer_pct_ms(const int64_t *sorted, int64_t n, double p)
{
    if (n <= 0)
        return NAN;
    double x = p / 100.0 * (double)n;
    int64_t rank = (int64_t)x;
    if ((double)rank < x)
        rank++;
    int64_t i = rank < 1 ? 0 : rank > n ? n - 1 : rank - 1;
    return (double)sorted[i] / 1e6;
}

static void peer_ms_json(const char *key, double v)
{
    if (isnan(v))
        printf(",\"%s\":null", key);
    else
        printf(",\"%s\":%.4f", key, v);
}

/* One JSON line with the fields of `wp bench --json`. */
static void peer_report(const peer_opts *o, peer_lat *l, double secs)
{
    int64_t acked = l->n_ack;
    int64_t n_ack = peer_sort_valid(l->ack_ns, l->n_ack);
    int64_t n_e2e = peer_sort_valid(l->e2e_ns, l->n_e2e);
    double bytes = (double)acked * (double)o->size;
    printf("{\"log\":\"%s\",\"mode\":\"async\",\"entries\":%" PRId64 ",\"size\":%" PRId64
           ",\"bytes\":%.0f,\"seconds\":%.6f,\"mib_per_s\":%.3f,\"entries_per_s\":%.1f",
           o->log, acked, o->size, bytes, secs, secs > 0 ? bytes / secs / 1048576.0 : 0,
           secs > 0 ? (double)acked / secs : 0);
    peer_ms_json("ack_p50_ms", peer_pct_ms(l->ack_ns, n_ack, 50));
    peer_ms_json("ack_p99_ms", peer_pct_ms(l->ack_ns, n_ack, 99));
    peer_ms_json("ack_p999_ms", peer_pct_ms(l->ack_ns, n_ack, 99.9));
    peer_ms_json("e2e_p50_ms", peer_pct_ms(l->e2e_ns, n_e2e, 50));
    peer_ms_json("e2e_p99_ms", peer_pct_ms(l->e2e_ns, n_e2e, 99));
    printf(",\"reader_entries\":%" PRId64 ",\"window\":%" PRId64 "}\n", l->n_e2e, o->window);
    fflush(stdout);
}

#endif
