/*
 * woodpecker.h — the one public C API of Woodpecker, a durable, ordered,
 * append-only write-ahead log. See README.md and docs/ for the design.
 *
 * Conventions
 * - Functions that act return 0 (WP_OK) or a negative WP_E* code.
 * - After a failed call, wp_errmsg() returns a thread-local message with the
 *   details (path, syscall, errno, key name); it stays valid until the next
 *   failing call on the same thread.
 * - A call that returns an error never invokes its callback.
 * - The library never prints; it reports through the log callback of the
 *   config (wp_config_set_log).
 * - Thread safety: a wp_client, wp_log and wp_writer may be shared by many
 *   threads. A wp_reader is used by one thread at a time.
 */
#ifndef WOODPECKER_H
#define WOODPECKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- errors ------------------------------------------------------------ */

/* X(name, value, message): one list generates the enum and wp_strerror. */
#define WP_ERRNO_MAP(X)                                                      \
    X(EINVAL, -1, "invalid argument")                                        \
    X(ENOENT, -2, "no such log, segment or key")                             \
    X(EEXIST, -3, "already exists")                                          \
    X(EFENCED, -4, "writer fenced by a newer writer")                        \
    X(ETIMEDOUT, -5, "timed out")                                            \
    X(ECORRUPT, -6, "data corrupt (checksum or format mismatch)")            \
    X(EIO, -7, "I/O error")                                                  \
    X(ENOSPC, -8, "no space left on device")                                 \
    X(ECLOSED, -9, "handle closed or failed")                                \
    X(ETRUNCATED, -10, "position truncated and garbage-collected")           \
    X(EAGAIN, -11, "resource temporarily unavailable (would block)")         \
    X(EUNAVAILABLE, -12, "service unavailable")                              \
    X(EQUORUM, -13, "write quorum not reached")                              \
    X(ENOMEM, -14, "out of memory")                                          \
    X(ECONFLICT, -15, "compare-and-swap conflict (concurrent update)")       \
    X(ETOOBIG, -16, "entry or value too large")                              \
    X(ENOTSUP, -17, "operation not supported by this backend")

enum {
    WP_OK = 0,
#define WP_ERR_ENUM(name, val, msg) WP_##name = (val),
    WP_ERRNO_MAP(WP_ERR_ENUM)
#undef WP_ERR_ENUM
};

/* Static text for a WP_E* code (never NULL). */
const char *wp_strerror(int rc);
/* Details of the last failed call on this thread ("" if none). */
const char *wp_errmsg(void);

/* ---- message ids ------------------------------------------------------- */

/* (segment_id, entry_id), ordered lexicographically. */
typedef struct {
    int64_t segment_id, entry_id;
} wp_msg_id;

/* Reader start positions: before the first retained entry / after the last
 * durable entry at open time. They compare below/above every real id. */
extern const wp_msg_id WP_EARLIEST, WP_LATEST;

int wp_msg_id_cmp(wp_msg_id a, wp_msg_id b); /* <0, 0, >0 */
/* "seg:entry" into buf (at least WP_MSG_ID_STR_MAX bytes). Returns buf. */
#define WP_MSG_ID_STR_MAX 48
char *wp_msg_id_format(wp_msg_id id, char *buf);
/* Parses "seg:entry" (both non-negative decimal); WP_EINVAL otherwise. */
int wp_msg_id_parse(const char *s, wp_msg_id *out);
/* Stable 16-byte big-endian binary form. */
void wp_msg_id_encode(wp_msg_id id, uint8_t out[16]);
wp_msg_id wp_msg_id_decode(const uint8_t in[16]);

/* ---- configuration ----------------------------------------------------- */

typedef struct wp_config wp_config;

/* The embedded local default (see docs/configuration.md). Caller frees. */
int wp_config_default(wp_config **out);
/* Defaults overlaid with a YAML file. Unknown keys and bad values fail with
 * WP_EINVAL and a wp_errmsg() that names the key (and line). */
int wp_config_load(const char *yaml_path, wp_config **out);
/* Sets one dotted key ("flush.max_bytes") from its text form. */
int wp_config_set(wp_config *, const char *key, const char *value);
/* Reads a key's current value as text into buf. */
int wp_config_get(const wp_config *, const char *key, char *buf, size_t len);
/* Applies environment overrides: WP_<SECTION>__<KEY>=value, e.g.
 * WP_FLUSH__MAX_BYTES=1MiB sets flush.max_bytes. Unknown WP_*__* names fail. */
int wp_config_apply_env(wp_config *);
/* Copies a config (the client keeps its own copy; the caller's may be freed). */
int wp_config_dup(const wp_config *, wp_config **out);
void wp_config_free(wp_config *);

enum { WP_LOG_DEBUG = 0, WP_LOG_INFO = 1, WP_LOG_WARN = 2, WP_LOG_ERROR = 3 };
typedef void (*wp_log_fn)(void *arg, int level, const char *msg);
/* Installs a log callback (default: none; the library never prints). */
void wp_config_set_log(wp_config *, wp_log_fn fn, void *arg);

/* ---- client and logs --------------------------------------------------- */

typedef struct wp_client wp_client;
typedef struct wp_log wp_log;
typedef struct wp_writer wp_writer;
typedef struct wp_reader wp_reader;

/* Opens the metadata and storage backends named by the config (copied). */
int wp_client_open(const wp_config *, wp_client **out);
/* Closes the client. Every log, writer and reader must be closed first. */
void wp_client_close(wp_client *);

/* Log names: [A-Za-z0-9._-] and '/', 1..200 bytes, no empty '/' parts. */
bool wp_log_name_valid(const char *name);
int wp_log_create(wp_client *, const char *name); /* WP_EEXIST if present */
int wp_log_open(wp_client *, const char *name, wp_log **out);
/* Deletes the log's metadata and data. Open handles then get WP_ECLOSED. */
int wp_log_delete(wp_client *, const char *name);
/* Names (sorted) starting with prefix ("" for all); free with wp_free_names. */
int wp_log_list(wp_client *, const char *prefix, char ***names, size_t *n);
void wp_free_names(char **names, size_t n);
void wp_log_close(wp_log *);
/* Marks every entry at or below upto as truncated (inclusive). Segments
 * wholly below are deleted after retention.ttl_ms, once no reader needs
 * them. Truncating at or below the current point is a no-op. */
int wp_log_truncate(wp_log *, wp_msg_id upto);

typedef struct {
    char name[256];
    int64_t log_id;
    int64_t writer_epoch;
    wp_msg_id truncated_to; /* {-1,-1} if never truncated */
    int64_t created_ms;     /* unix ms */
    int64_t n_segments;
    int64_t bytes;          /* sum of segment sizes */
    wp_msg_id last_id;      /* last durable id known, {-1,-1} if empty */
} wp_log_info;
int wp_log_stat(wp_log *, wp_log_info *out);

enum { WP_SEG_ACTIVE = 0, WP_SEG_COMPLETED = 1, WP_SEG_SEALED = 2, WP_SEG_TRUNCATED = 3 };
const char *wp_seg_state_name(int state);
typedef struct {
    int64_t segment_id;
    int state;             /* WP_SEG_* */
    int64_t last_entry_id; /* -1 if empty; for ACTIVE: last durable known */
    int64_t bytes;
    int64_t writer_epoch;
    int64_t created_ms, completed_ms;
} wp_segment_info;
/* Segments in id order; free *out with free(). */
int wp_log_segments(wp_log *, wp_segment_info **out, size_t *n);

/* Where a segment's replicas live (storage.type quorum; docs/metadata.md
 * section 3.2): the ack quorum A, ':', then the replicas, comma-separated,
 * each "<node_id>@<host:port>" or "<host:port>"; e.g.
 * "2:ls-1@10.0.0.1:7400,ls-2@10.0.0.2:7400,ls-3@10.0.0.3:7400". "" on every
 * other storage, and for quorum segments made before placements were
 * recorded (those use quorum.nodes). Printable ASCII, no spaces. */
#define WP_PLACEMENT_MAX 511
typedef struct {
    int64_t segment_id;
    char placement[WP_PLACEMENT_MAX + 1];
} wp_segment_placement;
/* The placement of each of the log's segments, in id order (one metadata
 * listing, like wp_log_segments); free *out with free(). */
int wp_log_placements(wp_log *, wp_segment_placement **out, size_t *n);

/* Checks every CRC, block header, index and footer of every retained
 * segment; the callback (may be NULL) gets one line per problem. Returns
 * WP_ECORRUPT if any problem was found. */
typedef void (*wp_verify_fn)(void *arg, int64_t segment_id, const char *problem);
int wp_log_verify(wp_log *, wp_verify_fn fn, void *arg, int64_t *entries_checked);

/* Compacts the log's completed segments now (object storage only:
 * docs/format.md section 11.2; the client also does it in the background
 * when compaction.enabled) and marks them sealed. Readers are not
 * disturbed. `out` (may be NULL) gets the segments sealed and the PUTs the
 * client made meanwhile (its PUTs, whatever made them). WP_ENOTSUP on
 * local storage or when the endpoint cannot commit a compaction. */
typedef struct {
    int64_t segments_sealed;
    int64_t puts, put_bytes;
} wp_compact_info;
int wp_log_compact(wp_log *, wp_compact_info *out);

/* ---- writer ------------------------------------------------------------ */

/* One entry to append: payload plus optional string properties. */
typedef struct {
    const void *data;
    size_t len;
    size_t n_props;
    const char *const *prop_keys;
    const char *const *prop_values;
} wp_payload;

/* Opens the log's single writer: bumps the writer epoch in metadata (fencing
 * any older writer, in this or another process) and completes its active
 * segments, recovering their last durable entry. */
int wp_writer_open(wp_log *, wp_writer **out);

/* Appends and waits until the entry is durable. Its id goes to *out. */
int wp_writer_append(wp_writer *, const void *data, size_t len, wp_msg_id *out);
int wp_writer_append_entry(wp_writer *, const wp_payload *, wp_msg_id *out);

/* Async append: the data is copied; cb runs exactly once (on a writer
 * thread; keep it short) after the entry is durable (rc 0) or failed.
 * Callbacks run in id order. Blocks while max_pending_bytes are buffered,
 * unless flags has WP_NONBLOCK (then WP_EAGAIN). */
typedef void (*wp_append_cb)(void *arg, int rc, wp_msg_id id);
enum { WP_NONBLOCK = 1 };
int wp_writer_append_async(wp_writer *, const void *data, size_t len,
                           wp_append_cb cb, void *arg);
int wp_writer_append_entry_async(wp_writer *, const wp_payload *, int flags,
                                 wp_append_cb cb, void *arg);

/* Waits until every entry appended before the call is acked or failed.
 * Returns the writer's failure code if it has failed. */
int wp_writer_flush(wp_writer *);
/* The last add confirmed: highest id of the contiguous acked prefix. */
wp_msg_id wp_writer_lac(wp_writer *);
/* Flushes, completes the active segment and frees the writer. Returns the
 * first error (e.g. WP_EFENCED) but frees the writer in all cases. */
int wp_writer_close(wp_writer *);

/* ---- reader ------------------------------------------------------------ */

/* An entry returned by wp_reader_next. Owned by the reader; valid until the
 * reader's next call. */
typedef struct {
    wp_msg_id id;
    const void *data;
    size_t len;
    size_t n_props;
    const char *const *prop_keys;
    const char *const *prop_values;
} wp_entry;

/* Opens a reader at `from`: WP_EARLIEST, WP_LATEST, or an id (inclusive;
 * "after (s,e)" is (s,e+1)). WP_ETRUNCATED if from's data is deleted. */
int wp_reader_open(wp_log *, wp_msg_id from, wp_reader **out);
/* Waits up to timeout_ms (-1: forever, 0: poll) for the next durable entry.
 * WP_ETIMEDOUT when none came. Never returns an entry above the LAC, never
 * skips or repeats one. */
int wp_reader_next(wp_reader *, int timeout_ms, wp_entry *out);
void wp_reader_close(wp_reader *);

/* ---- nodes ------------------------------------------------------------- */

/* A live node registration (a LogStore or streaming server; docs/metadata.md
 * section 3.4), as the node last reported it: a LogStore server reports
 * again every few seconds. Text fields are NUL-terminated. */
typedef struct {
    char id[129];            /* 1..128 bytes of [A-Za-z0-9._-] */
    char kind[32];           /* 1..31 bytes of [a-z0-9_-]: "logstore", ... */
    char addr[256];          /* where to reach it: host:port */
    char zone[64];           /* its zone, "" if none */
    int64_t registered_ms;   /* unix ms: when it started */
    int64_t disk_free;       /* bytes it can still take (0: none) */
    int64_t load;            /* requests in progress */
    int64_t segments;        /* segment copies it holds on disk */
    int64_t upload_segments; /* of those, completed and not yet in object
                              * storage (waiting for upload) */
    int64_t upload_bytes;    /* their bytes */
    int64_t upload_lag_ms;   /* age of the oldest of them since it was
                              * completed; 0 if none */
} wp_node_info;
/* The live registrations of `kind` ("" or NULL: every kind) in the client's
 * metadata store, sorted by id; none without servers (embedded mode).
 * WP_EINVAL for a bad kind. Free *out with free(). */
int wp_client_nodes(wp_client *, const char *kind, wp_node_info **out, size_t *n);

/* ---- metrics ----------------------------------------------------------- */

/* One metric, as Prometheus names it (docs/configuration.md, "Metrics").
 * Counters and gauges have `value`; a histogram (latencies in seconds,
 * flush sizes in bytes) has `count` observations summing to `value`, and
 * bucket_counts[i] observations at most bucket_bounds[i] (cumulative; the
 * last bound is +Inf). `labels` is "" or Prometheus label pairs without braces, e.g.
 * `code="EIO"`. Everything points into storage valid during the callback. */
enum { WP_METRIC_COUNTER = 0, WP_METRIC_GAUGE = 1, WP_METRIC_HISTOGRAM = 2 };
typedef struct {
    const char *name;
    const char *help;
    int kind;
    const char *labels;
    double value;
    uint64_t count;
    int n_buckets;
    const double *bucket_bounds;
    const uint64_t *bucket_counts;
} wp_metric;
typedef void (*wp_metric_fn)(void *arg, const wp_metric *m);

/* Calls fn for every metric: this process's counters and latency
 * histograms (appends, acks, flushes and their sizes, fdatasync, S3 PUT,
 * GET, LIST, DELETE, quorum ADDs, retries, failed acks by error code,
 * pending bytes, open writers and readers: per process, whatever client
 * caused them) and this client's segments by state (read from its
 * metadata store: one listing of every log, so not for a hot loop). */
int wp_client_metrics(wp_client *, wp_metric_fn fn, void *arg);
/* The same in the Prometheus text exposition format (version 0.0.4);
 * *text is NUL-terminated, free() it. */
int wp_client_metrics_text(wp_client *, char **text, size_t *len);

#ifdef __cplusplus
}
#endif
#endif /* WOODPECKER_H */
