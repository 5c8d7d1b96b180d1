/* cmd_bench.c — `wp bench`: append throughput, ack latency (append call to
 * callback) and, with --reader, end-to-end latency (append call to a tailing
 * reader receiving the entry, from a CLOCK_MONOTONIC send timestamp embedded
 * in the first 8 bytes of each payload); the process's CPU time and the
 * bytes the run added to the log's segments (on disk or in the bucket: with
 * flush.compression, less than the payload). Payloads are random bytes or
 * log-like text (--payload), cut from a pool so that entries differ.
 * --seconds stops appending after that long (sustained-ingest runs); the
 * report is of what was appended. */
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "cli.h"

/* Bounds: latencies are kept per entry (2 x 8 bytes each). */
#define BENCH_ENTRIES_MAX 20000000LL
#define BENCH_SIZE_MAX (64LL << 20)
#define BENCH_WINDOW_MAX 1000000LL
#define BENCH_SECONDS_MAX 86400LL
/* --entries when not given: without --seconds a short run, with it as many
 * as the latencies may keep (the time decides). */
#define BENCH_ENTRIES_DEFAULT 100000LL
/* Entry i's payload is the `size` bytes at (i * size) mod this in a pool:
 * entries differ (a compressor finds no whole repeated entry in a block of
 * up to a few MiB), and the pool stays cache-sized. */
#define BENCH_POOL_BYTES (4LL << 20)
/* How long the reader may see nothing after the writer finished. */
#define BENCH_READER_IDLE_MS 10000
#define BENCH_READER_POLL_MS 100

static const char bench_usage[] =
    "wp bench [--log NAME] [--entries N] [--seconds S] [--size BYTES] [--mode async|sync] "
    "[--window N] [--payload random|text] [--reader] [--json]\n"
    "       wp bench --tail [--log NAME] [--entries N] [--json]   (read only: end-to-end latency\n"
    "                of entries another `wp bench` process appends)";

typedef struct {
    const char *log;
    int64_t entries, size, window;
    int64_t seconds; /* stop appending after this long; 0: at --entries only */
    bool sync, reader, json, tail;
    bool text; /* --payload text: log lines; else random bytes */
} bench_opts;

/* What a run cost besides time: CPU of the whole process (writer, flusher,
 * reader) from the first append until the reader has everything, and the
 * bytes the run added to the log's segments. */
typedef struct {
    double cpu_s;
    int64_t stored_bytes; /* -1: unknown */
} bench_cost;

/* In-flight window and ack latencies, shared with the callback thread. */
typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int64_t appended; /* appends made (each acked or failed by the end) */
    int64_t in_flight, acked, failed;
    int64_t wake_at; /* wake a full window's sender once in_flight <= this */
    int first_rc;
    int64_t *sent_ns; /* [entries] send time of entry i */
    int64_t *ack_ns;  /* [entries] ack latency of entry i */
} bench_acks;

/* The tailing reader thread. */
typedef struct {
    wp_reader *r;
    _Atomic int64_t want; /* lowered to what was appended when --seconds stops early */
    int64_t got;
    int64_t *e2e_ns; /* [entries] */
    int rc;
    char errmsg[CLI_MSG_MAX];
    atomic_bool writer_done, stop;
    pthread_t tid;
} bench_reader;

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int parse_bench(int argc, char **argv, bench_opts *o)
{
    static const char *const payloads[] = {"random", "text", NULL};
    static const char *const modes[] = {"async", "sync", NULL};
    int payload = 0, mode = 0;
    *o = (bench_opts){.log = "bench", .size = 1024, .window = 1024};
    const cli_opt opts[] = {
        {.name = "--reader", .kind = CLI_FLAG, .out = &o->reader},
        {.name = "--tail", .kind = CLI_FLAG, .out = &o->tail},
        {.name = "--json", .kind = CLI_FLAG, .out = &o->json},
        {.name = "--log", .kind = CLI_STR, .out = &o->log, .want = "a NAME"},
        {.name = "--entries", .kind = CLI_I64, .out = &o->entries, .min = 1,
         .max = BENCH_ENTRIES_MAX, .want = "1..20000000"},
        {.name = "--seconds", .kind = CLI_I64, .out = &o->seconds, .min = 1,
         .max = BENCH_SECONDS_MAX, .want = "1..86400"},
        {.name = "--size", .kind = CLI_BYTES, .out = &o->size, .max = BENCH_SIZE_MAX,
         .want = "bytes (0..64MiB, e.g. 4KiB)"},
        {.name = "--window", .kind = CLI_I64, .out = &o->window, .min = 1,
         .max = BENCH_WINDOW_MAX, .want = "1..1000000"},
        {.name = "--payload", .kind = CLI_CHOICE, .out = &payload, .choices = payloads,
         .want = "random or text"},
        {.name = "--mode", .kind = CLI_CHOICE, .out = &mode, .choices = modes,
         .want = "async or sync"},
        {0},
    };
    _Static_assert(BENCH_ENTRIES_MAX == 20000000LL && BENCH_WINDOW_MAX == 1000000LL &&
                       BENCH_SECONDS_MAX == 86400LL,
                   "the --entries, --window and --seconds wants");
    _Static_assert(BENCH_ENTRIES_DEFAULT <= BENCH_ENTRIES_MAX, "default within bounds");
    int st = cli_parse(bench_usage, argc, argv, opts, NULL, 0, 0, NULL, NULL);
    if (st)
        return st;
    if (o->tail && o->seconds)
        return usage_err(bench_usage, "--seconds applies to appending, not to --tail");
    if (!o->entries) /* not given (its minimum is 1) */
        o->entries = o->seconds ? BENCH_ENTRIES_MAX : BENCH_ENTRIES_DEFAULT;
    o->text = payload == 1;
    o->sync = mode == 1;
    return 0;
}

static void *bench_reader_main(void *arg)
{
    bench_reader *br = arg;
    int64_t idle_since = 0;
    while (br->got < atomic_load(&br->want) && !atomic_load(&br->stop)) {
        wp_entry e;
        int rc = wp_reader_next(br->r, BENCH_READER_POLL_MS, &e);
        int64_t now = mono_ns();
        if (rc == WP_ETIMEDOUT) {
            if (!atomic_load(&br->writer_done))
                continue;
            if (!idle_since)
                idle_since = now;
            if (now - idle_since < BENCH_READER_IDLE_MS * 1000000LL)
                continue;
        }
        if (rc) {
            br->rc = rc;
            snprintf(br->errmsg, sizeof br->errmsg, "%s", wp_errmsg());
            break;
        }
        idle_since = 0;
        int64_t sent = -1;
        if (e.len >= 8)
            memcpy(&sent, e.data, 8);
        br->e2e_ns[br->got++] = sent >= 0 ? now - sent : -1;
    }
    return NULL;
}

static void bench_ack_cb(void *arg, int rc, wp_msg_id id)
{
    (void)id;
    bench_acks *b = arg;
    int64_t now = mono_ns();
    pthread_mutex_lock(&b->mu);
    /* Callbacks run in id order, which is append order: the k-th is entry k. */
    int64_t k = b->acked + b->failed;
    if (rc == WP_OK) {
        b->ack_ns[b->acked++] = now - b->sent_ns[k];
    } else {
        b->failed++;
        if (!b->first_rc)
            b->first_rc = rc;
    }
    b->in_flight--;
    /* Acks come in batches (a block each); waking the sender once a
     * quarter of the window is free, not per ack, spares a thread switch
     * per entry. */
    if (b->in_flight <= b->wake_at)
        pthread_cond_signal(&b->cv);
    pthread_mutex_unlock(&b->mu);
}

static uint64_t xorshift(uint64_t *x)
{
    *x ^= *x << 13, *x ^= *x >> 7, *x ^= *x << 17;
    return *x;
}

/* Fills p with log lines like a service's access log: timestamps that
 * advance, a few services, levels, paths and statuses, and ids, latencies
 * and addresses that vary. Compresses about as real logs do. */
static void pool_text(uint8_t *p, size_t len, uint64_t *x)
{
    static const char *const svc[] = {"orders-api", "payments", "inventory", "auth",
                                      "gateway", "search", "billing", "shipping"};
    static const char *const lvl[] = {"INFO", "INFO", "INFO", "INFO", "INFO", "INFO",
                                      "INFO", "DEBUG", "WARN", "ERROR"};
    static const char *const meth[] = {"GET", "GET", "GET", "POST", "PUT", "DELETE"};
    static const char *const path[] = {"/api/v1/orders/%u", "/api/v1/orders/%u/items",
                                       "/api/v1/users/%u", "/api/v1/cart/%u",
                                       "/api/v2/search?q=item-%u&page=1", "/healthz",
                                       "/api/v1/payments/%u/capture", "/metrics"};
    static const int status[] = {200, 200, 200, 200, 201, 204, 304, 400, 404, 500};
    uint64_t us = 1796550000000000ull; /* 2026-12-06 */
    size_t off = 0;
    char line[512], pth[128];
    while (off < len) {
        us += xorshift(x) % 5000;
        time_t t = (time_t)(us / 1000000);
        struct tm tm;
        gmtime_r(&t, &tm);
        uint64_t r = xorshift(x);
        snprintf(pth, sizeof pth, path[r % 8], (unsigned)(xorshift(x) % 1000000));
        int n = snprintf(line, sizeof line,
                         "%04d-%02d-%02dT%02d:%02d:%02d.%06uZ %-5s [%s] req=%016" PRIx64
                         " method=%s path=%s status=%d dur_ms=%u.%02u user=u-%u "
                         "ip=10.%u.%u.%u bytes=%u\n",
                         tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                         tm.tm_sec, (unsigned)(us % 1000000), lvl[(r >> 8) % 10],
                         svc[(r >> 16) % 8], xorshift(x), meth[(r >> 24) % 6], pth,
                         status[(r >> 32) % 10], (unsigned)(r >> 40) % 300,
                         (unsigned)(r >> 52) % 100, (unsigned)(xorshift(x) % 100000),
                         (unsigned)(r % 16), (unsigned)(r >> 4) % 256, (unsigned)(r >> 12) % 256,
                         (unsigned)(xorshift(x) % 20000));
        size_t k = (size_t)n < len - off ? (size_t)n : len - off;
        memcpy(p + off, line, k);
        off += k;
    }
}

/* The payload pool: BENCH_POOL_BYTES + size bytes. */
static uint8_t *pool_new(const bench_opts *o)
{
    size_t len = (size_t)(BENCH_POOL_BYTES + o->size);
    uint8_t *p = malloc(len);
    if (!p)
        return NULL;
    uint64_t x = 0x9e3779b97f4a7c15ull; /* xorshift64: fixed seed, same pool every run */
    if (o->text)
        pool_text(p, len, &x);
    else
        for (size_t i = 0; i < len; i++)
            p[i] = (uint8_t)xorshift(&x);
    return p;
}

static uint8_t *pool_entry(uint8_t *pool, const bench_opts *o, int64_t i)
{
    return pool + (i * o->size) % BENCH_POOL_BYTES; /* < 2^51: no overflow */
}

/* Stamps the send time into the payload (when it has room) and returns it. */
static int64_t stamp(uint8_t *payload, size_t size)
{
    int64_t now = mono_ns();
    if (size >= 8)
        memcpy(payload, &now, 8);
    return now;
}

/* Appends o->entries entries, or fewer if they reach deadline_ns first
 * (CLOCK_MONOTONIC). */
static int bench_async(wp_writer *w, const bench_opts *o, bench_acks *b, uint8_t *pool,
                       int64_t deadline_ns)
{
    int st = 0;
    pthread_mutex_lock(&b->mu);
    b->wake_at = o->window - (o->window + 3) / 4;
    pthread_mutex_unlock(&b->mu);
    for (int64_t i = 0; i < o->entries; i++) {
        pthread_mutex_lock(&b->mu);
        while (b->in_flight >= o->window)
            pthread_cond_wait(&b->cv, &b->mu);
        int first_rc = b->first_rc;
        uint8_t *payload = pool_entry(pool, o, i);
        int64_t now = stamp(payload, (size_t)o->size);
        if (first_rc || now >= deadline_ns) {
            pthread_mutex_unlock(&b->mu);
            if (first_rc)
                st = fail(first_rc, "bench append to '%s' (asynchronous ack)", o->log);
            break;
        }
        b->in_flight++;
        b->appended++;
        b->sent_ns[i] = now;
        pthread_mutex_unlock(&b->mu);
        int rc = wp_writer_append_async(w, payload, (size_t)o->size, bench_ack_cb, b);
        if (rc) {
            pthread_mutex_lock(&b->mu); /* no callback for a refused append */
            b->in_flight--;
            b->appended--;
            pthread_mutex_unlock(&b->mu);
            st = fail(rc, "bench append %" PRId64 " to '%s'", i, o->log);
            break;
        }
    }
    int rc = wp_writer_flush(w);
    if (rc && !st)
        st = fail(rc, "flushing bench appends to '%s'", o->log);
    if (b->failed && !st)
        st = fail_msg("%" PRId64 " bench appends to '%s' failed: %s", b->failed, o->log,
                      wp_strerror(b->first_rc));
    return st;
}

static int bench_sync(wp_writer *w, const bench_opts *o, bench_acks *b, uint8_t *pool,
                      int64_t deadline_ns)
{
    for (int64_t i = 0; i < o->entries; i++) {
        wp_msg_id id;
        uint8_t *payload = pool_entry(pool, o, i);
        int64_t sent = stamp(payload, (size_t)o->size);
        if (sent >= deadline_ns)
            break;
        int rc = wp_writer_append(w, payload, (size_t)o->size, &id);
        if (rc)
            return fail(rc, "bench append %" PRId64 " to '%s'", i, o->log);
        b->appended++;
        b->ack_ns[b->acked++] = mono_ns() - sent;
    }
    return 0;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Exact nearest-rank percentile of sorted values, in ms (NAN if none). */
static double pct_ms(const int64_t *sorted, int64_t n, double p)
{
    if (n <= 0)
        return NAN;
    double x = p / 100.0 * (double)n;
    int64_t rank = (int64_t)x;
    if ((double)rank < x) /* ceil without libm */
        rank++;
    int64_t i = rank < 1 ? 0 : rank > n ? n - 1 : rank - 1;
    return (double)sorted[i] / 1e6;
}

/* Drops the -1 markers (entries too small to carry a timestamp) and sorts. */
static int64_t sort_valid(int64_t *v, int64_t n)
{
    int64_t k = 0;
    for (int64_t i = 0; i < n; i++)
        if (v[i] >= 0)
            v[k++] = v[i];
    qsort(v, (size_t)k, sizeof *v, cmp_i64);
    return k;
}

static void print_ms_json(const char *key, double v)
{
    if (isnan(v))
        printf(",\"%s\":null", key);
    else
        printf(",\"%s\":%.4f", key, v);
}

static double cpu_now_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec +
           ((double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_usec) / 1e6;
}

static void bench_report(const bench_opts *o, bench_acks *b, bench_reader *br, double secs,
                         const bench_cost *cost)
{
    int64_t n_ack = sort_valid(b->ack_ns, b->acked);
    int64_t n_e2e = br ? sort_valid(br->e2e_ns, br->got) : 0;
    double bytes = (double)b->acked * (double)o->size;
    double mibs = secs > 0 ? bytes / secs / (1024.0 * 1024.0) : 0;
    double eps = secs > 0 ? (double)b->acked / secs : 0;
    double a50 = pct_ms(b->ack_ns, n_ack, 50), a99 = pct_ms(b->ack_ns, n_ack, 99);
    double a999 = pct_ms(b->ack_ns, n_ack, 99.9);
    double e50 = pct_ms(br ? br->e2e_ns : NULL, n_e2e, 50);
    double e99 = pct_ms(br ? br->e2e_ns : NULL, n_e2e, 99);
    double gib = bytes / (1024.0 * 1024.0 * 1024.0);
    double cpu_gib = gib > 0 ? cost->cpu_s / gib : NAN;
    double ratio = bytes > 0 && cost->stored_bytes >= 0 ? (double)cost->stored_bytes / bytes : NAN;
    if (o->json) {
        printf("{\"log\":\"%s\",\"mode\":\"%s\",\"entries\":%" PRId64 ",\"size\":%" PRId64
               ",\"bytes\":%.0f,\"seconds\":%.6f,\"mib_per_s\":%.3f,\"entries_per_s\":%.1f",
               o->log, o->sync ? "sync" : "async", b->acked, o->size, bytes, secs, mibs, eps);
        print_ms_json("ack_p50_ms", a50);
        print_ms_json("ack_p99_ms", a99);
        print_ms_json("ack_p999_ms", a999);
        print_ms_json("e2e_p50_ms", e50);
        print_ms_json("e2e_p99_ms", e99);
        printf(",\"reader_entries\":%" PRId64 ",\"payload\":\"%s\",\"stored_bytes\":%" PRId64,
               br ? br->got : 0, o->text ? "text" : "random", cost->stored_bytes);
        print_ms_json("stored_ratio", ratio);
        printf(",\"cpu_s\":%.3f", cost->cpu_s);
        print_ms_json("cpu_s_per_gib", cpu_gib);
        printf("}\n");
        return;
    }
    printf("entries:      %" PRId64 " x %" PRId64 " bytes (%s", b->acked, o->size,
           o->sync ? "sync" : "async");
    if (!o->sync)
        printf(", window %" PRId64, o->window);
    if (o->seconds)
        printf(", appending for at most %" PRId64 " s", o->seconds);
    printf(", %s payloads)\nbytes:        %.0f\nseconds:      %.3f\nMiB/s:        %.2f\n",
           o->text ? "text" : "random", bytes, secs, mibs);
    if (cost->stored_bytes >= 0)
        printf("stored bytes: %" PRId64 " (%.3f of the payload bytes)\n", cost->stored_bytes, ratio);
    printf("CPU seconds:  %.3f (%.2f per GiB of payload)\n", cost->cpu_s, cpu_gib);
    printf("entries/s:    %.0f\n", eps);
    printf("ack ms:       p50 %.3f  p99 %.3f  p99.9 %.3f\n", a50, a99, a999);
    if (br)
        printf("e2e ms:       p50 %.3f  p99 %.3f  (%" PRId64 " entries read)\n", e50, e99,
               br->got);
}

/* Opens (creating if absent) the log, a writer and, with --reader, a reader
 * at the tail. */
static int bench_open(cli *c, const bench_opts *o, wp_log **log, wp_writer **w, wp_reader **r)
{
    int st = check_name(o->log);
    if (st || (st = cli_open_client(c)))
        return st;
    int rc = wp_log_create(c->client, o->log);
    if (rc && rc != WP_EEXIST)
        return fail(rc, "creating log '%s'", o->log);
    if ((st = cli_open_log(c, o->log, log)))
        return st;
    if ((rc = wp_writer_open(*log, w))) {
        st = fail(rc, "opening a writer on '%s'", o->log);
        goto out_close_log;
    }
    if (o->reader && (rc = wp_reader_open(*log, WP_LATEST, r))) {
        st = fail(rc, "opening a reader on '%s'", o->log);
        goto out_close_writer;
    }
    return 0;
out_close_writer:
    wp_writer_close(*w);
out_close_log:
    wp_log_close(*log);
    return st;
}

/* Runs the appends and, with --reader, waits for the reader to catch up. */
static int bench_run(wp_writer *w, const bench_opts *o, bench_acks *b, bench_reader *br,
                     double *secs, bench_cost *cost)
{
    uint8_t *pool = pool_new(o);
    if (!pool)
        return fail_msg("out of memory");
    double cpu0 = cpu_now_s();
    int64_t t0 = mono_ns();
    int64_t deadline = o->seconds ? t0 + o->seconds * 1000000000LL : INT64_MAX;
    int st = o->sync ? bench_sync(w, o, b, pool, deadline) : bench_async(w, o, b, pool, deadline);
    *secs = (double)(mono_ns() - t0) / 1e9;
    free(pool);
    if (br) {
        if (st)
            atomic_store(&br->stop, true);
        atomic_store(&br->want, b->appended); /* --seconds: fewer than --entries */
        atomic_store(&br->writer_done, true);
        pthread_join(br->tid, NULL);
    }
    cost->cpu_s = cpu_now_s() - cpu0;
    if (!br)
        return st;
    if (!st && br->rc)
        st = fail_msg("bench reader on '%s' after %" PRId64 " of %" PRId64 " entries: %s (%s)",
                      o->log, br->got, atomic_load(&br->want), wp_strerror(br->rc), br->errmsg);
    return st;
}

/* --tail: read o->entries entries appended by another process from the
 * current end, measuring append call -> receive (CLOCK_MONOTONIC is shared
 * by every process of the machine). */
static int bench_tail(cli *c, const bench_opts *o)
{
    bench_reader br = {.got = 0};
    wp_log *log = NULL;
    atomic_init(&br.want, o->entries);
    int st = check_name(o->log);
    if (st || (st = cli_open_client(c)) || (st = cli_open_log(c, o->log, &log)))
        return st;
    br.e2e_ns = calloc((size_t)o->entries, sizeof *br.e2e_ns);
    int rc = br.e2e_ns ? wp_reader_open(log, WP_LATEST, &br.r) : WP_ENOMEM;
    if (rc) {
        st = fail(rc, "opening a reader on '%s'", o->log);
        goto out;
    }
    atomic_store(&br.writer_done, true); /* stop after BENCH_READER_IDLE_MS of silence */
    bench_reader_main(&br);
    wp_reader_close(br.r);
    int64_t n = sort_valid(br.e2e_ns, br.got);
    double e50 = pct_ms(br.e2e_ns, n, 50), e99 = pct_ms(br.e2e_ns, n, 99);
    if (o->json) {
        printf("{\"log\":\"%s\",\"mode\":\"tail\",\"entries\":%" PRId64, o->log, br.got);
        print_ms_json("e2e_p50_ms", e50);
        print_ms_json("e2e_p99_ms", e99);
        printf("}\n");
    } else {
        printf("tail entries: %" PRId64 "\ne2e ms:       p50 %.3f  p99 %.3f\n", br.got, e50, e99);
    }
    st = finish_stdout();
out:
    free(br.e2e_ns);
    wp_log_close(log);
    return st;
}

int cmd_bench(cli *c, int argc, char **argv)
{
    bench_opts o;
    bench_acks b = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
    bench_reader br = {.got = 0};
    bench_cost cost = {.stored_bytes = -1};
    wp_log *log = NULL;
    wp_writer *w = NULL;
    wp_reader *r = NULL;
    wp_log_info before, after;
    double secs = 0;
    bool ran = false, stat_ok = false;
    int st = parse_bench(argc, argv, &o), rc;
    if (st)
        return st;
    if (o.tail)
        return bench_tail(c, &o);
    b.sent_ns = calloc((size_t)o.entries, sizeof *b.sent_ns);
    b.ack_ns = calloc((size_t)o.entries, sizeof *b.ack_ns);
    br.e2e_ns = o.reader ? calloc((size_t)o.entries, sizeof *br.e2e_ns) : NULL;
    if (!b.sent_ns || !b.ack_ns || (o.reader && !br.e2e_ns)) {
        st = fail_msg("out of memory for %" PRId64 " latencies", o.entries);
        goto out_free;
    }
    if ((st = bench_open(c, &o, &log, &w, &r)))
        goto out_free;
    stat_ok = wp_log_stat(log, &before) == WP_OK; /* after the writer's recovery */
    br.r = r;
    atomic_init(&br.want, o.entries);
    if (r && pthread_create(&br.tid, NULL, bench_reader_main, &br) != 0) {
        st = fail_msg("starting the reader thread");
        goto out_close;
    }
    ran = !(st = bench_run(w, &o, &b, r ? &br : NULL, &secs, &cost));
out_close:
    if (r)
        wp_reader_close(r);
    if ((rc = wp_writer_close(w)) && !st)
        st = fail(rc, "closing the writer of '%s'", o.log);
    /* The writer completed its segment: the log's bytes include this run's. */
    if (!st && stat_ok && wp_log_stat(log, &after) == WP_OK)
        cost.stored_bytes = after.bytes - before.bytes;
    if (!st && ran)
        bench_report(&o, &b, r ? &br : NULL, secs, &cost);
    wp_log_close(log);
    if (!st)
        st = finish_stdout();
out_free:
    free(b.sent_ns);
    free(b.ack_ns);
    free(br.e2e_ns);
    return st;
}
