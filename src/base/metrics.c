/* metrics.c — see metrics.h. */
#include "base/metrics.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct {
    const char *name, *help;
    int kind;
} M_DEF[M_N] = {
    [M_APPENDS] = {"wp_appends_total", "Entries accepted by wp_writer_append*.", WP_METRIC_COUNTER},
    [M_APPEND_BYTES] = {"wp_append_bytes_total", "Payload bytes of the entries accepted.",
                        WP_METRIC_COUNTER},
    [M_ACKED] = {"wp_acked_total", "Entries acknowledged durable.", WP_METRIC_COUNTER},
    [M_FLUSHES] = {"wp_flushes_total", "Flushes: storage appends of blocks.", WP_METRIC_COUNTER},
    [M_FLUSH_BYTES] = {"wp_flush_bytes_total", "Bytes of the blocks flushed.", WP_METRIC_COUNTER},
    [M_READ_ENTRIES] = {"wp_read_entries_total", "Entries returned by wp_reader_next.",
                        WP_METRIC_COUNTER},
    [M_READ_BYTES] = {"wp_read_bytes_total", "Payload bytes of the entries read.",
                      WP_METRIC_COUNTER},
    [M_S3_RETRIES] = {"wp_s3_retries_total", "S3 requests retried after a failed attempt.",
                      WP_METRIC_COUNTER},
    [M_QUORUM_ADDS] = {"wp_quorum_adds_total", "ADD requests sent to LogStore servers.",
                       WP_METRIC_COUNTER},
    [M_QUORUM_ROLLS] = {"wp_quorum_rolls_total",
                        "Segments a writer rolled away from because a server was lost.",
                        WP_METRIC_COUNTER},
    [M_SEGMENTS_CREATED] = {"wp_segments_created_total", "Segments created by writers.",
                            WP_METRIC_COUNTER},
    [M_SEGMENTS_RECOVERED] = {"wp_segments_recovered_total",
                              "Segments a new writer recovered and completed.", WP_METRIC_COUNTER},
    [G_PENDING_BYTES] = {"wp_pending_bytes", "Bytes appended and not yet acknowledged.",
                         WP_METRIC_GAUGE},
    [G_WRITERS] = {"wp_writers", "Open writers.", WP_METRIC_GAUGE},
    [G_READERS] = {"wp_readers", "Open readers.", WP_METRIC_GAUGE},
};

/* Upper bounds in seconds: 50 us .. 10 s, then +Inf. */
static const double BOUNDS[WP__HIST_BUCKETS] = {
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
    0.025,   0.05,   0.1,     0.25,   0.5,   1,      10,     1.0 / 0.0};
/* Upper bounds in bytes: 512 B, 1 KiB, ... 1 MiB (x2), 4, 16, 64 MiB, then +Inf. */
static const double SIZE_BOUNDS[WP__HIST_BUCKETS] = {
    512,    1024,   2048,    4096,    8192,    16384,   32768,    65536,
    131072, 262144, 524288, 1048576, 4194304, 16777216, 67108864, 1.0 / 0.0};

static const struct {
    const char *name, *help, *labels;
    double unit; /* observed units per output unit (ns per s; 1 for bytes) */
    const double *bounds;
} H_DEF[H_N] = {
    [H_ACK] = {"wp_ack_seconds", "From an append to its acknowledgement (first entry of each "
                                 "block).", "", 1e9, BOUNDS},
    [H_FLUSH] = {"wp_flush_seconds", "One flush: a storage append of blocks, durable.", "", 1e9,
                 BOUNDS},
    [H_FDATASYNC] = {"wp_fdatasync_seconds", "One fdatasync or fsync.", "", 1e9, BOUNDS},
    [H_S3_PUT] = {"wp_s3_request_seconds", "S3 requests, retries included.", "method=\"PUT\"",
                  1e9, BOUNDS},
    [H_S3_GET] = {"wp_s3_request_seconds", "", "method=\"GET\"", 1e9, BOUNDS},
    [H_S3_LIST] = {"wp_s3_request_seconds", "", "method=\"LIST\"", 1e9, BOUNDS},
    [H_S3_DELETE] = {"wp_s3_request_seconds", "", "method=\"DELETE\"", 1e9, BOUNDS},
    [H_S3_OTHER] = {"wp_s3_request_seconds", "", "method=\"OTHER\"", 1e9, BOUNDS},
    [H_QUORUM_ADD] = {"wp_quorum_add_seconds",
                      "An ADD to a segment's servers until its ack quorum answered.", "", 1e9,
                      BOUNDS},
    [H_FLUSH_SIZE] = {"wp_flush_size_bytes", "Bytes of one flush.", "", 1, SIZE_BOUNDS},
};

#define N_CODES 32 /* -rc for every WP_E* code, with room */

static _Atomic int64_t counters[M_N];
static struct {
    _Atomic uint64_t count, sum_ns, b[WP__HIST_BUCKETS];
} hists[H_N];
static _Atomic uint64_t errors[N_CODES];

void wp__metric_add(wp__metric_id id, int64_t v)
{
    atomic_fetch_add_explicit(&counters[id], v, memory_order_relaxed);
}

void wp__hist_observe(wp__hist_id id, int64_t ns)
{
    if (ns < 0)
        ns = 0;
    double s = (double)ns / H_DEF[id].unit;
    int i = 0;
    while (i < WP__HIST_BUCKETS - 1 && s > H_DEF[id].bounds[i])
        i++;
    atomic_fetch_add_explicit(&hists[id].b[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&hists[id].count, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&hists[id].sum_ns, (uint64_t)ns, memory_order_relaxed);
}

void wp__metric_error(int rc, int64_t n)
{
    if (rc < 0 && -rc < N_CODES && n > 0)
        atomic_fetch_add_explicit(&errors[-rc], (uint64_t)n, memory_order_relaxed);
}

static const char *code_name(int rc)
{
    switch (rc) {
#define WP_ERR_NAME(name, val, msg) \
    case val:                       \
        return #name;
        WP_ERRNO_MAP(WP_ERR_NAME)
#undef WP_ERR_NAME
    default:
        return NULL;
    }
}

void wp__metrics_visit(wp_metric_fn fn, void *arg)
{
    for (int i = 0; i < M_N; i++) {
        wp_metric m = {.name = M_DEF[i].name, .help = M_DEF[i].help, .kind = M_DEF[i].kind,
                       .labels = "",
                       .value = (double)atomic_load_explicit(&counters[i], memory_order_relaxed)};
        fn(arg, &m);
    }
    for (int rc = -1; rc > -N_CODES; rc--) {
        const char *name = code_name(rc);
        if (!name)
            continue;
        char labels[48];
        snprintf(labels, sizeof labels, "code=\"%s\"", name);
        wp_metric m = {.name = "wp_ack_errors_total",
                       .help = "Entries whose append failed instead of being acknowledged, by "
                               "error code.",
                       .kind = WP_METRIC_COUNTER, .labels = labels,
                       .value = (double)atomic_load_explicit(&errors[-rc], memory_order_relaxed)};
        fn(arg, &m);
    }
    for (int i = 0; i < H_N; i++) {
        uint64_t cum[WP__HIST_BUCKETS], run = 0;
        for (int k = 0; k < WP__HIST_BUCKETS; k++) {
            run += atomic_load_explicit(&hists[i].b[k], memory_order_relaxed);
            cum[k] = run;
        }
        /* count from the buckets, so that +Inf equals count even while others add */
        wp_metric m = {.name = H_DEF[i].name, .help = H_DEF[i].help, .kind = WP_METRIC_HISTOGRAM,
                       .labels = H_DEF[i].labels,
                       .value = (double)atomic_load_explicit(&hists[i].sum_ns,
                                                             memory_order_relaxed) / H_DEF[i].unit,
                       .count = run, .n_buckets = WP__HIST_BUCKETS,
                       .bucket_bounds = H_DEF[i].bounds,
                       .bucket_counts = cum};
        fn(arg, &m);
    }
}

/* ---- Prometheus text ------------------------------------------------------ */

static void prom_put(wp__prom *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void prom_put(wp__prom *p, const char *fmt, ...)
{
    if (p->failed)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(p->buf ? p->buf + p->len : NULL, p->buf ? p->cap - p->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            p->failed = 1;
            return;
        }
        if (p->buf && p->len + (size_t)n < p->cap) {
            p->len += (size_t)n;
            return;
        }
        size_t cap = p->cap ? p->cap * 2 : 4096;
        while (cap < p->len + (size_t)n + 1)
            cap *= 2;
        char *nb = realloc(p->buf, cap);
        if (!nb) {
            p->failed = 1;
            return;
        }
        p->buf = nb;
        p->cap = cap;
    }
}

static void prom_bound(char *out, size_t cap, double b)
{
    if (b > 1e300)
        snprintf(out, cap, "+Inf");
    else
        snprintf(out, cap, "%.10g", b);
}

void wp__prom_metric(void *arg, const wp_metric *m)
{
    wp__prom *p = arg;
    if (strcmp(p->last_name, m->name) != 0) {
        static const char *const TYPES[] = {"counter", "gauge", "histogram"};
        if (m->help && m->help[0])
            prom_put(p, "# HELP %s %s\n", m->name, m->help);
        prom_put(p, "# TYPE %s %s\n", m->name,
                 m->kind >= 0 && m->kind <= 2 ? TYPES[m->kind] : "untyped");
        snprintf(p->last_name, sizeof p->last_name, "%s", m->name);
    }
    const char *l = m->labels ? m->labels : "";
    if (m->kind != WP_METRIC_HISTOGRAM) {
        prom_put(p, "%s%s%s%s %.17g\n", m->name, l[0] ? "{" : "", l, l[0] ? "}" : "", m->value);
        return;
    }
    for (int i = 0; i < m->n_buckets; i++) {
        char b[32];
        prom_bound(b, sizeof b, m->bucket_bounds[i]);
        prom_put(p, "%s_bucket{%s%sle=\"%s\"} %" PRIu64 "\n", m->name, l, l[0] ? "," : "", b,
                 m->bucket_counts[i]);
    }
    prom_put(p, "%s_sum%s%s%s %.9g\n", m->name, l[0] ? "{" : "", l, l[0] ? "}" : "", m->value);
    prom_put(p, "%s_count%s%s%s %" PRIu64 "\n", m->name, l[0] ? "{" : "", l, l[0] ? "}" : "",
             m->count);
}
