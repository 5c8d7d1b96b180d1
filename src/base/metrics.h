/* metrics.h — the process's counters and latency histograms (issue 13):
 * bumped by the layers where things happen (the writer, readers, the
 * fdatasync of the OS layer, S3 requests, quorum requests, the LogStore
 * server), read by wp_client_metrics and the servers' GET /metrics.
 *
 * All of it is per process (a storage operation has no client to charge):
 * lock-free atomics, cheap enough for the append path. Names follow
 * Prometheus conventions (docs/configuration.md "Metrics" lists them). */
#ifndef WP_BASE_METRICS_H
#define WP_BASE_METRICS_H

#include <stdint.h>

#include "woodpecker.h"

/* Counters (monotonic) and gauges (up and down). */
typedef enum {
    M_APPENDS,          /* entries accepted by wp_writer_append* */
    M_APPEND_BYTES,     /* their payload bytes */
    M_ACKED,            /* entries acknowledged durable */
    M_FLUSHES,          /* storage appends of blocks (flushes) */
    M_FLUSH_BYTES,      /* their bytes */
    M_READ_ENTRIES,     /* entries returned by wp_reader_next */
    M_READ_BYTES,       /* their payload bytes */
    M_S3_RETRIES,       /* S3 requests retried */
    M_QUORUM_ADDS,      /* ADDs sent to LogStore servers (each replica counts) */
    M_QUORUM_ROLLS,     /* segments rolled away from a lost server */
    M_SEGMENTS_CREATED, /* segments a writer of this process created */
    M_SEGMENTS_RECOVERED,
    M_GAUGE_FIRST,
    G_PENDING_BYTES = M_GAUGE_FIRST, /* appended, not yet acked */
    G_WRITERS,
    G_READERS,
    M_N
} wp__metric_id;

/* Histograms: latencies (observed in ns, seconds in the output) and one
 * of sizes (H_FLUSH_SIZE: bytes). */
typedef enum {
    H_ACK,          /* an entry's wait from its append to its ack (per block: its first entry) */
    H_FLUSH,        /* one storage append (a flush) */
    H_FDATASYNC,    /* one fdatasync / fsync */
    H_S3_PUT,
    H_S3_GET,
    H_S3_LIST,
    H_S3_DELETE,
    H_S3_OTHER,     /* HEAD, POST (multipart, batch delete) */
    H_QUORUM_ADD,   /* an ADD until its ack quorum answered */
    H_FLUSH_SIZE,   /* bytes of one flush (observed in bytes, not ns) */
    H_N
} wp__hist_id;

#define WP__HIST_BUCKETS 16

void wp__metric_add(wp__metric_id id, int64_t v);
static inline void wp__metric_inc(wp__metric_id id) { wp__metric_add(id, 1); }
void wp__hist_observe(wp__hist_id id, int64_t ns_or_bytes);
/* n failed acknowledgements with WP_E* code rc. */
void wp__metric_error(int rc, int64_t n);

/* Visits the process's metrics. */
void wp__metrics_visit(wp_metric_fn fn, void *arg);

/* The Prometheus text format (0.0.4) of metrics given to fn: a growing
 * buffer; wp__prom_metric is a wp_metric_fn with a wp__prom * as arg. */
typedef struct {
    char *buf;
    size_t len, cap;
    int failed; /* out of memory */
    char last_name[128]; /* HELP/TYPE once per name */
} wp__prom;
void wp__prom_metric(void *arg, const wp_metric *m);

#endif
