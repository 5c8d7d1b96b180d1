/* internal.h — the client layer's shared structures: client, log handles,
 * and the per-log tail state that wakes in-process readers. */
#ifndef WP_CLIENT_INTERNAL_H
#define WP_CLIENT_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "base/err.h"
#include "config/config.h"
#include "meta/meta.h"
#include "storage/storage.h"

/* What readers in this client need to know about a log's writer; shared by
 * every wp_log handle of the same log in one client. */
typedef struct tailstate {
    struct tailstate *next;
    int64_t log_id;
    int refs;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    uint64_t seq;       /* bumped on every change below */
    const void *writer; /* the open writer of this client, NULL none */
    int64_t w_seg;      /* its active segment, -1 before the first flush */
    int64_t w_lac;      /* last durable entry in w_seg, -1 none */
    bool deleted;
} tailstate;


/* A reader's registration (its GC hold, docs/metadata.md §3.3). The client
 * lists every open reader's, so that when its lease expired it registers
 * them all again under a new one. Fields under the client's reg_mu; only
 * the reader's own thread changes the position. */
typedef struct reader_reg {
    struct reader_reg *next;
    int64_t log_id;
    char name[WP_READER_NAME_MAX + 1];
    int64_t seg_id, entry_id; /* registered position: at or below the reader's */
    bool listed;
} reader_reg;

struct wp_client {
    wp_config cfg;
    wp__logger logger;
    meta *meta;
    storage *st;
    pthread_mutex_t mu;
    tailstate *tails;
    int n_logs; /* open wp_log handles */

    /* Background threads, stopped by bg_stop (under mu) and woken by
     * bg_cond: GC of truncated segments (bg), and the reader lease
     * keepalive on a thread of its own (lease_thr), so that it never waits
     * behind a GC pass, however long its deletions take. */
    pthread_t bg;
    pthread_t lease_thr;
    bool bg_stop;
    pthread_cond_t bg_cond;
    /* Compaction thread (object storage, compaction.enabled): woken by
     * bg_cond too; compact_off once the endpoint cannot commit one. */
    pthread_t compactor;
    bool compactor_started;
    bool compact_off;
    /* Reader registrations: the lease they hang on (0: none yet) and every
     * open reader's, under reg_mu (never taken while holding mu). */
    pthread_mutex_t reg_mu;
    int64_t lease_id;
    reader_reg *regs;
    /* Longest sleep of a reader polling a writer in another process:
     * reader.poll_max_ms, at least the store's poll_min_ms (object storage:
     * each poll lists the segment). */
    int64_t poll_max_ns;
    /* The storage fences by conditional PUT (always true on local disk; on
     * S3 the setting `conditionwrite`, probed once per store). When false,
     * writers check the log's epoch in metadata before every ack. */
    bool cond_writes;
    /* Test hooks (wp__gc_test_delay, wp__reader_test_on_resolved); zero in
     * normal use. test_gc_delay_ms is read under mu. */
    int64_t test_gc_delay_ms;
    void (*test_resolved_fn)(void *arg);
    void *test_resolved_arg;
};

struct wp_log {
    wp_client *c;
    char name[WP_LOG_NAME_MAX + 1];
    int64_t log_id;
    tailstate *tail;
};

/* Tail notifications: the writer publishes, readers wait. */
/* tail_writer sets (open) or clears (!open) the owner; tail_publish only
 * takes effect for the current owner, so a fenced writer cannot publish. */
void tail_writer(tailstate *t, const void *owner, bool open);
void tail_publish(tailstate *t, const void *owner, int64_t seg, int64_t lac);
/* Reads the in-process writer's LAC for seg: false if no writer of this
 * client writes seg. *seq (always set) is the state's version for
 * tail_wait; *has_writer tells whether this client has a writer at all. */
bool tail_lac(tailstate *t, int64_t seg, int64_t *lac, uint64_t *seq, bool *has_writer);
/* Last durable id of a log ({-1,-1} if none). */
int wp__log_last_id(wp_log *log, wp_msg_id *out);
void tail_bump(tailstate *t);
/* Waits until t->seq != seq or the deadline (CLOCK_MONOTONIC ns, -1: none). */
void tail_wait(tailstate *t, uint64_t seq, int64_t deadline_ns);

/* Registers a reader at (seg, entry), or moves its registration there
 * (rg->log_id and rg->name set; rg zeroed otherwise before the first
 * call, and then listed in the client until client_reader_unregister).
 * One reader_put under the client's lease, granted on first use; if the
 * lease has expired, a new one is granted and every listed reader is
 * registered again. */
int client_reader_register(wp_client *c, reader_reg *rg, int64_t seg, int64_t entry);
/* Unlists rg and deletes its registration (no-op if never listed). */
void client_reader_unregister(wp_client *c, reader_reg *rg);

/* Runs one GC pass over every log (exposed for tests and `wp`). */
int wp__gc_run(wp_client *c, int64_t now_ms);
/* Test hook: GC sleeps ms before deleting each segment's data, like a slow
 * object store (a background pass then lasts longer than a reader lease).
 * A sleep under way follows a new setting (0 ends it) and ends when the
 * client closes. 0 turns it off. */
void wp__gc_test_delay(wp_client *c, int64_t ms);
/* Test hook: wp_reader_open calls fn(arg) once it has resolved the start
 * position, before it returns (NULL turns it off). Set it before opening
 * readers; it is not synchronized with readers being opened. */
void wp__reader_test_on_resolved(wp_client *c, void (*fn)(void *arg), void *arg);
/* One compaction pass over every log (format.md section 11.3): finalizes
 * and compacts up to COMPACT_SEGS_PER_PASS completed segments and marks
 * them SEALED. *done (may be NULL) counts segments sealed. WP_ENOTSUP if
 * the storage has no compaction. */
#define COMPACT_SEGS_PER_PASS 16
int wp__compact_run(wp_client *c, int *done);

#endif
