/* writer.c — the single writer of a log (ARCHITECTURE §3): epoch bump and
 * fencing at open, entry ids, group commit into blocks, in-order acks, the
 * LAC, segment rolling, bounded memory with backpressure.
 *
 * Appenders reserve room for a record in the tail block of a queue under
 * w->mu and encode it after unlocking (the copy and CRC of the payload do
 * not hold up the other threads); one flusher thread takes ready blocks
 * whose records are all encoded, writes them with one durable append
 * (lseg_write), then runs the callbacks in id order. Because one thread
 * does every write, finish and create, acks are in id order across
 * segments too. Any storage or metadata error fails the writer for good. */
#include <assert.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "client/internal.h"
#include "base/metrics.h"
#include "codec/codec.h"
#include "logstore/segment.h"

/* One flush writes at most this many blocks / bytes (bounds latency). */
#define FLUSH_BATCH_BLOCKS_MAX 256
#define FLUSH_BATCH_BYTES_MAX (64 * WP_MiB)
/* Parallel uploads (object storage): uploads finished but not yet acked
 * (waiting for an earlier one) keep no worker busy; at most this many per
 * worker may wait, so that one slow PUT does not idle the others. */
#define UPLOADS_WAITING_PER_WORKER 4
#define EPOCH_CAS_TRIES_MAX 64
/* How often an idle writer on a backend that places segments on servers
 * looks whether its segment should move (roll_if_idle_and_degraded). */
#define IDLE_DEGRADED_CHECK_MS 250
/* Free blocks an idle writer (nothing buffered) keeps for reuse. */
#define FREE_BLOCKS_IDLE_MAX 8
/* The flusher retries after this long when it could not allocate an upload. */
#define ALLOC_RETRY_MS 10

typedef struct {
    wp_append_cb cb;
    void *arg;
} ackcb;

typedef struct wblock {
    struct wblock *next;
    lseg_block b;
    size_t cap;
    int64_t seg_id;
    ackcb *cbs;
    size_t cbcap;
    int64_t t0_ns; /* first append, for flush.max_interval_ms */
    int writers;   /* records reserved, still being encoded outside w->mu */
    bool sealed;
    bool announced; /* the flusher was woken for this block */
} wblock;

/* One append in flight: ready blocks of one segment, uploaded as one
 * storage append, acked in order. */
typedef struct upload {
    struct upload *next;      /* in-flight list, oldest first */
    struct upload *next_todo; /* workers' queue */
    wblock *batch[FLUSH_BATCH_BLOCKS_MAX];
    int n;
    lseg_w *seg;
    lseg_put put;
    int rc;
    bool done;
} upload;

struct wp_writer {
    wp_log *log;
    wp_client *c;
    const wp_config *cfg;
    meta_log ml; /* our epoch; rev refreshed by the flusher */

    pthread_mutex_t mu;
    pthread_cond_t cond_work, cond_space, cond_done;
    wblock *head, *tail;
    wblock *free_blocks; /* for reuse: their pages are already mapped */
    size_t free_bytes;   /* capacity of free_blocks */
    int n_free;
    int64_t cur_seg, next_entry;           /* id of the next append */
    uint64_t seg_bytes;                    /* bytes assigned to cur_seg */
    int64_t degraded_seg;                  /* lost a server: roll off it (-1 none) */
    uint32_t seg_blocks;
    int64_t seg_t0_ns;
    int64_t pending_bytes;
    uint64_t n_appended, n_done;
    int failed;
    bool closing;
    pthread_t thr;
    wp_msg_id lac;
    int close_rc;
    upload *in_head, *in_tail; /* dispatched, not yet delivered */
    int n_inflight, max_inflight; /* dispatched, not yet delivered */
    int n_running, max_running;   /* dispatched, upload not finished */
    upload *todo_head, *todo_tail; /* waiting for a worker */
    pthread_cond_t cond_todo;
    pthread_t *workers; /* NULL: uploads run on the flusher thread */
    int n_workers;
    bool workers_stop;
    bool alloc_retry; /* the flusher could not allocate an upload: retry soon */

    /* Flusher thread only. */
    lseg_w *seg;
    meta_seg mseg;
};

static void stop_workers(wp_writer *w);

/* ---- blocks ------------------------------------------------------------ */

static wblock *block_get(wp_writer *w, int64_t seg_id, int64_t first)
{
    wblock *b = w->free_blocks;
    if (b) {
        w->free_blocks = b->next;
        w->free_bytes -= b->cap;
        w->n_free--;
    } else {
        b = calloc(1, sizeof *b);
        if (!b)
            return NULL;
    }
    b->next = NULL;
    b->seg_id = seg_id;
    b->b.first_entry_id = first;
    b->b.n_entries = 0;
    b->b.len = BLK_HEADER_SIZE;
    b->writers = 0;
    b->sealed = false;
    b->announced = false;
    b->t0_ns = wp__now_ns();
    return b;
}

static void block_put(wp_writer *w, wblock *b)
{
    /* Kept while the buffered and the kept blocks fit writer.max_pending_bytes
     * together: a writer at its limit then allocates (and the kernel zeroes
     * pages) no more, and holds no more memory than the limit when idle. */
    if (b->cap <= (size_t)w->cfg->flush_max_bytes * 2 &&
        (int64_t)(w->free_bytes + b->cap) + w->pending_bytes <= w->cfg->writer_max_pending_bytes) {
        b->next = w->free_blocks;
        w->free_blocks = b;
        w->free_bytes += b->cap;
        w->n_free++;
        return;
    }
    free(b->b.buf);
    free(b->cbs);
    free(b);
}

/* Once nothing is buffered, gives back all but FREE_BLOCKS_IDLE_MAX blocks. */
static void blocks_trim(wp_writer *w)
{
    while (w->pending_bytes == 0 && w->n_free > FREE_BLOCKS_IDLE_MAX) {
        wblock *b = w->free_blocks;
        w->free_blocks = b->next;
        w->free_bytes -= b->cap;
        w->n_free--;
        free(b->b.buf);
        free(b->cbs);
        free(b);
    }
}

/* Detaches the head block of the queue. */
static wblock *head_pop(wp_writer *w)
{
    wblock *b = w->head;
    w->head = b->next;
    if (w->tail == b)
        w->tail = NULL;
    b->next = NULL;
    return b;
}

/* Makes room for a record of rec_len bytes and its callback. The buffer is
 * sized once for a full block (flush.max_bytes), so it only grows while the
 * block is empty (a first record above that): records being encoded
 * outside w->mu never see it move. */
static int block_reserve(wblock *b, size_t rec_len, size_t flush_max_bytes)
{
    if (b->b.len + rec_len > b->cap) {
        assert(b->b.n_entries == 0 && b->writers == 0);
        size_t cap = BLK_HEADER_SIZE + flush_max_bytes;
        if (cap < b->b.len + rec_len)
            cap = b->b.len + rec_len;
        uint8_t *nb = realloc(b->b.buf, cap);
        if (!nb)
            return wp__err(WP_ENOMEM, "block buffer of %zu bytes", cap);
        b->b.buf = nb;
        b->cap = cap;
    }
    if (b->b.n_entries == b->cbcap) {
        size_t cap = b->cbcap ? b->cbcap * 2 : 64;
        ackcb *nc = realloc(b->cbs, cap * sizeof *nc);
        if (!nc)
            return wp__err(WP_ENOMEM, "ack list");
        b->cbs = nc;
        b->cbcap = cap;
    }
    return WP_OK;
}

/* ---- metadata steps (flusher thread) ----------------------------------- */

/* After a CAS conflict on the log: reload it; fenced if the epoch moved. */
static int refresh_log(wp_writer *w)
{
    meta_log cur;
    int rc = w->c->meta->ops->log_get(w->c->meta, w->log->name, &cur);
    if (rc == WP_ENOENT)
        return wp__err(WP_ECLOSED, "log '%s' was deleted", w->log->name);
    if (rc)
        return rc;
    if (cur.epoch != w->ml.epoch || cur.log_id != w->ml.log_id)
        return wp__err(WP_EFENCED, "log '%s': writer epoch %" PRId64 " superseded by %" PRId64,
                       w->log->name, w->ml.epoch, cur.epoch);
    w->ml = cur;
    return WP_OK;
}

static int open_segment(wp_writer *w, int64_t seg_id)
{
    meta *m = w->c->meta;
    w->mseg = (meta_seg){.log_id = w->ml.log_id, .seg_id = seg_id, .state = WP_SEG_ACTIVE,
                         .last_entry_id = -1, .epoch = w->ml.epoch, .created_ms = wp__wall_ms()};
    storage *st = w->c->st;
    int rc;
    /* Where it will live, if the storage places segments (on servers):
     * recorded with the segment, for everyone who will touch it. */
    if (st->ops->seg_place &&
        (rc = st->ops->seg_place(st, w->ml.log_id, seg_id, w->mseg.placement,
                                 sizeof w->mseg.placement)))
        return rc;
    for (int tries = 0;; tries++) {
        rc = m->ops->seg_create(m, &w->ml, &w->mseg);
        if (rc != WP_ECONFLICT || tries == EPOCH_CAS_TRIES_MAX)
            break;
        if ((rc = refresh_log(w)))
            return rc;
    }
    if (rc == WP_EEXIST)
        return wp__err(WP_EFENCED, "segment %" PRId64 " of log '%s' was created by another writer",
                       seg_id, w->log->name);
    if (rc)
        return rc;
    rc = lseg_create(w->c->st, w->ml.log_id, seg_id, w->ml.epoch, &w->seg);
    if (rc == WP_OK)
        wp__metric_inc(M_SEGMENTS_CREATED);
    if (rc == WP_EEXIST)
        return wp__err(WP_EFENCED, "segment %" PRId64 " of log '%s' exists in storage (fenced)",
                       seg_id, w->log->name);
    if (rc == WP_OK) /* flush.compression: its indexes are BLK_CODEC_* */
        rc = lseg_set_codec(w->seg, (uint32_t)w->cfg->flush_compression);
    return rc;
}

static int complete_segment(wp_writer *w)
{
    int64_t last;
    uint64_t bytes;
    int rc = lseg_finish(w->seg, &last, &bytes);
    lseg_close(w->seg);
    w->seg = NULL;
    if (rc)
        return rc;
    meta_seg s = w->mseg;
    s.state = WP_SEG_COMPLETED;
    s.last_entry_id = last;
    s.bytes = (int64_t)bytes;
    s.completed_ms = wp__wall_ms();
    rc = w->c->meta->ops->seg_update(w->c->meta, &s);
    if (rc == WP_ECONFLICT)
        return wp__err(WP_EFENCED, "segment %" PRId64 " of log '%s' was completed by a newer writer",
                       s.seg_id, w->log->name);
    return rc;
}

/* Gets u's blocks ready to upload: rolls the segment if they belong to
 * the next one (only called with nothing in flight), then plans the append. */
static int prepare_upload(wp_writer *w, upload *u)
{
    int rc;
    if (w->seg && w->mseg.seg_id != u->batch[0]->seg_id) {
        if ((rc = complete_segment(w)))
            return rc;
    }
    if (!w->seg && (rc = open_segment(w, u->batch[0]->seg_id)))
        return rc;
    lseg_block *bs[FLUSH_BATCH_BLOCKS_MAX];
    for (int i = 0; i < u->n; i++)
        bs[i] = &u->batch[i]->b;
    u->seg = w->seg;
    return lseg_prepare(w->seg, bs, u->n, &u->put);
}

/* ---- flusher thread ---------------------------------------------------- */

static bool block_due(const wp_writer *w, const wblock *b, int64_t now)
{
    return b->sealed || w->closing || w->failed || w->cfg->flush_max_interval_ms == 0 ||
           now - b->t0_ns >= w->cfg->flush_max_interval_ms * 1000000LL;
}

/* Due, and every record reserved in it is encoded. */
static bool block_ready(const wp_writer *w, const wblock *b, int64_t now)
{
    return b->writers == 0 && block_due(w, b, now);
}

/* Bytes one upload may carry (it takes the ready blocks that fit, at
 * least one). Sequential (local disk): everything ready, in one durable
 * append. Parallel (object storage): max_pending_bytes / flush.max_threads
 * (at least flush.max_bytes), so that a writer which is behind still
 * coalesces ready blocks into fewer, larger PUTs (a PUT costs the store
 * CPU of its own), but no upload is so large that the others, and every
 * ack behind it, wait for one long PUT while the buffer is full. */
static size_t batch_bytes_max(const wp_writer *w)
{
    if (!w->workers)
        return FLUSH_BATCH_BYTES_MAX;
    size_t max = (size_t)(w->cfg->writer_max_pending_bytes / w->max_running);
    if (max < (size_t)w->cfg->flush_max_bytes)
        max = (size_t)w->cfg->flush_max_bytes;
    return max < FLUSH_BATCH_BYTES_MAX ? max : FLUSH_BATCH_BYTES_MAX;
}

/* Recycles empty blocks at the head of the queue. None should be there
 * (append_reserve takes back a block it could not fill), but one left
 * queued would stop the flusher for good, with every append behind it.
 * An empty block has no record being encoded: nobody else refers to it. */
static void drop_empty_head(wp_writer *w)
{
    while (w->head && w->head->b.n_entries == 0) {
        assert(w->head->writers == 0);
        block_put(w, head_pop(w));
    }
}

/* Detaches ready blocks of one segment from the head of the queue, up to
 * bytes_max of them (but at least one block). */
static int take_batch(wp_writer *w, wblock **batch, int64_t now, size_t bytes_max)
{
    int n = 0;
    size_t bytes = 0;
    drop_empty_head(w);
    while (w->head && n < FLUSH_BATCH_BLOCKS_MAX && block_ready(w, w->head, now) &&
           (n == 0 || (batch[0]->seg_id == w->head->seg_id &&
                       bytes + w->head->b.len <= bytes_max))) {
        wblock *b = head_pop(w);
        b->sealed = true;
        batch[n++] = b;
        bytes += b->b.len;
        drop_empty_head(w);
    }
    return n;
}

/* Sleeps until an append, a finished upload, or the head block's flush
 * interval runs out. If the head is already due, nothing but a finished
 * upload can unblock the flusher, so it waits for that signal. */
static void wait_for_work(wp_writer *w)
{
    if (w->alloc_retry) {
        w->alloc_retry = false;
        int64_t due = wp__now_ns() + ALLOC_RETRY_MS * 1000000LL;
        struct timespec ts = {due / 1000000000LL, due % 1000000000LL};
        pthread_cond_timedwait(&w->cond_work, &w->mu, &ts);
        return;
    }
    if (w->head && w->head->b.n_entries && w->cfg->flush_max_interval_ms > 0) {
        int64_t due = w->head->t0_ns + w->cfg->flush_max_interval_ms * 1000000LL;
        if (due > wp__now_ns()) {
            struct timespec ts = {due / 1000000000LL, due % 1000000000LL};
            pthread_cond_timedwait(&w->cond_work, &w->mu, &ts);
            return;
        }
    }
    pthread_cond_wait(&w->cond_work, &w->mu);
}

/* Runs callbacks of a detached batch with rc; returns entries acked. */
static uint64_t run_callbacks(wblock **batch, int n, int rc)
{
    uint64_t count = 0;
    for (int i = 0; i < n; i++) {
        wblock *b = batch[i];
        for (uint32_t k = 0; k < b->b.n_entries; k++) {
            wp_msg_id id = {b->seg_id, b->b.first_entry_id + k};
            if (b->cbs[k].cb)
                b->cbs[k].cb(b->cbs[k].arg, rc, id);
        }
        count += b->b.n_entries;
    }
    return count;
}

static void after_flush(wp_writer *w, wblock **batch, int n, int rc)
{
    /* The records' bytes, as append_reserve counted them (not the block
     * headers: counting those drifted pending_bytes down by 32 bytes a
     * block, loosening writer.max_pending_bytes without end). */
    int64_t bytes = 0, entries = 0;
    for (int i = 0; i < n; i++) {
        bytes += (int64_t)(batch[i]->b.len - BLK_HEADER_SIZE);
        entries += batch[i]->b.n_entries;
    }
    wp__metric_add(G_PENDING_BYTES, -bytes);
    if (rc) {
        wp__metric_error(rc, entries);
    } else {
        wp__metric_add(M_ACKED, entries);
        int64_t now = wp__now_ns();
        for (int i = 0; i < n; i++)
            wp__hist_observe(H_ACK, now - batch[i]->t0_ns);
    }
    wblock *last = batch[n - 1];
    pthread_mutex_lock(&w->mu);
    if (rc && !w->failed) {
        w->failed = rc;
        wp__log(&w->c->logger, WP_LOG_ERROR, "writer of log '%s' failed: %s (%s)",
                w->log->name, wp_strerror(rc), wp_errmsg());
    }
    if (!rc)
        w->lac = (wp_msg_id){last->seg_id, last->b.first_entry_id + last->b.n_entries - 1};
    w->pending_bytes -= bytes;
    pthread_cond_broadcast(&w->cond_space);
    pthread_mutex_unlock(&w->mu);
    if (!rc)
        tail_publish(w->log->tail, w, w->lac.segment_id, w->lac.entry_id);
    uint64_t done = run_callbacks(batch, n, rc);
    pthread_mutex_lock(&w->mu);
    w->n_done += done;
    for (int i = 0; i < n; i++)
        block_put(w, batch[i]);
    blocks_trim(w);
    pthread_cond_broadcast(&w->cond_done);
    pthread_mutex_unlock(&w->mu);
}

/* Fallback fencing for endpoints that ignore If-None-Match (format.md
 * §11): before an upload is acked, the log's epoch in metadata must still
 * be ours. One metadata read per delivered upload. */
static int epoch_still_ours(wp_writer *w)
{
    meta_log cur;
    meta *m = w->c->meta;
    int rc = m->ops->log_get(m, w->log->name, &cur);
    if (rc == WP_ENOENT)
        return wp__err(WP_ECLOSED, "log '%s' was deleted", w->log->name);
    if (rc)
        return rc;
    if (cur.epoch != w->ml.epoch || cur.log_id != w->ml.log_id)
        return wp__err(WP_EFENCED, "log '%s': epoch is now %lld, this writer's is %lld "
                       "(metadata epoch check)", w->log->name, (long long)cur.epoch,
                       (long long)w->ml.epoch);
    return 0;
}

/* Delivers the oldest in-flight upload if it is done: records the outcome
 * in the segment, then acks or fails its entries. Called with w->mu held;
 * returns with it held. */
static bool deliver_one(wp_writer *w)
{
    upload *u = w->in_head;
    if (!u || !u->done)
        return false;
    w->in_head = u->next;
    if (!w->in_head)
        w->in_tail = NULL;
    w->n_inflight--;
    int failed = w->failed;
    pthread_mutex_unlock(&w->mu);
    int rc = u->rc;
    if (!failed && !rc && !w->c->cond_writes)
        rc = epoch_still_ours(w);
    if (u->seg) /* prepared: the segment learns the outcome in order */
        rc = lseg_put_done(u->seg, &u->put, failed ? failed : rc);
    if (u->seg && !rc && lseg_degraded(u->seg)) { /* new entries go elsewhere */
        pthread_mutex_lock(&w->mu);
        if (w->degraded_seg != u->batch[0]->seg_id) {
            w->degraded_seg = u->batch[0]->seg_id;
            wp__log(&w->c->logger, WP_LOG_WARN, "log '%s': segment %" PRId64 " lost a server; "
                    "rolling to a new segment", w->log->name, w->degraded_seg);
            wp__metric_inc(M_QUORUM_ROLLS);
        }
        pthread_mutex_unlock(&w->mu);
    }
    after_flush(w, u->batch, u->n, failed ? failed : rc);
    free(u);
    pthread_mutex_lock(&w->mu);
    return true;
}

/* One flush: the storage append of u's blocks, timed and counted. */
static int put_run(upload *u, bool parallel)
{
    int64_t t0 = wp__now_ns(), bytes = 0;
    int rc = lseg_put_run(u->seg, &u->put, parallel);
    for (int i = 0; i < u->put.n; i++)
        bytes += (int64_t)u->put.iov[i].iov_len;
    wp__hist_observe(H_FLUSH, wp__now_ns() - t0);
    wp__hist_observe(H_FLUSH_SIZE, bytes);
    wp__metric_inc(M_FLUSHES);
    wp__metric_add(M_FLUSH_BYTES, bytes);
    return rc;
}

/* Takes ready blocks and starts their upload (in a worker, or inline).
 * Called with w->mu held; returns with it held; false if nothing to do. */
static bool dispatch_one(wp_writer *w)
{
    drop_empty_head(w);
    if (w->n_running >= w->max_running || w->n_inflight >= w->max_inflight || !w->head)
        return false;
    bool roll = !w->seg || w->mseg.seg_id != w->head->seg_id;
    if (roll && w->n_inflight > 0)
        return false; /* a segment completes only after all its uploads */
    upload *u = calloc(1, sizeof *u);
    if (!u) { /* nothing taken yet: retried in ALLOC_RETRY_MS, even if nothing wakes us */
        w->alloc_retry = true;
        return false;
    }
    u->n = take_batch(w, u->batch, wp__now_ns(), batch_bytes_max(w));
    if (u->n == 0) {
        free(u);
        return false;
    }
    int failed = w->failed;
    pthread_mutex_unlock(&w->mu);
    int rc = failed ? failed : prepare_upload(w, u);
    pthread_mutex_lock(&w->mu);
    if (w->in_tail)
        w->in_tail->next = u;
    else
        w->in_head = u;
    w->in_tail = u;
    w->n_inflight++;
    if (rc || !w->workers) { /* failed, or sequential: run it here */
        pthread_mutex_unlock(&w->mu);
        if (!rc)
            rc = put_run(u, false);
        pthread_mutex_lock(&w->mu);
        u->rc = rc;
        u->done = true;
        return true;
    }
    w->n_running++;
    if (w->todo_tail)
        w->todo_tail->next_todo = u;
    else
        w->todo_head = u;
    w->todo_tail = u;
    pthread_cond_signal(&w->cond_todo);
    return true;
}

/* Upload workers (object storage): run appends in parallel. */
static void *worker_main(void *arg)
{
    wp_writer *w = arg;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (!w->todo_head && !w->workers_stop)
            pthread_cond_wait(&w->cond_todo, &w->mu);
        upload *u = w->todo_head;
        if (!u)
            break;
        w->todo_head = u->next_todo;
        if (!w->todo_head)
            w->todo_tail = NULL;
        pthread_mutex_unlock(&w->mu);
        int rc = put_run(u, true);
        pthread_mutex_lock(&w->mu);
        u->rc = rc;
        u->done = true;
        w->n_running--;
        pthread_cond_broadcast(&w->cond_work);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

/* An idle writer whose segment lost a server, or sits on one that is
 * draining or out of room (storage_ops.seg_writer_degraded), completes it
 * now rather than at its next append, so that the server is not held up
 * by an idle log (a drain waits for it). New appends go to the next
 * segment, created when they are flushed. Called with w->mu held, by the
 * flusher, with nothing queued or in flight; returns with it held. */
static void roll_if_idle_and_degraded(wp_writer *w)
{
    if (!w->seg || w->head || w->in_head || w->closing || w->failed || !lseg_degraded(w->seg))
        return;
    if (w->tail)
        w->tail->sealed = true;
    int64_t old = w->cur_seg;
    w->cur_seg++; /* under w->mu: every append from now on goes to the next one */
    w->next_entry = 0;
    w->seg_bytes = SEG_HEADER_SIZE;
    w->seg_blocks = 0;
    w->seg_t0_ns = wp__now_ns();
    pthread_mutex_unlock(&w->mu);
    int rc = complete_segment(w);
    wp__log(&w->c->logger, rc ? WP_LOG_ERROR : WP_LOG_INFO, "log '%s': idle segment %" PRId64
            " is on a server that left or has no room: completed it (%s)", w->log->name, old,
            rc ? wp_errmsg() : "the next append starts a new segment");
    pthread_mutex_lock(&w->mu);
    if (rc && !w->failed)
        w->failed = rc;
}

static void *flusher_main(void *arg)
{
    wp_writer *w = arg;
    bool watch = w->c->st->ops->seg_writer_degraded != NULL;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        if (deliver_one(w) || dispatch_one(w))
            continue;
        if (w->closing && !w->in_head && !w->head)
            break;
        if (watch && w->seg && !w->head && !w->in_head) {
            roll_if_idle_and_degraded(w);
            if (w->head || w->in_head || w->closing)
                continue;
            int64_t due = wp__now_ns() + IDLE_DEGRADED_CHECK_MS * 1000000LL;
            struct timespec ts = {due / 1000000000LL, due % 1000000000LL};
            pthread_cond_timedwait(&w->cond_work, &w->mu, &ts);
            continue;
        }
        wait_for_work(w);
    }
    int rc = w->failed;
    pthread_mutex_unlock(&w->mu);
    if (w->seg && !rc)
        rc = complete_segment(w);
    if (w->seg) {
        lseg_close(w->seg);
        w->seg = NULL;
    }
    w->close_rc = rc;
    return NULL;
}

/* ---- open: epoch bump and recovery ------------------------------------- */

static int bump_epoch(wp_writer *w)
{
    meta *m = w->c->meta;
    int rc = WP_ECONFLICT;
    for (int tries = 0; rc == WP_ECONFLICT && tries < EPOCH_CAS_TRIES_MAX; tries++) {
        rc = m->ops->log_get(m, w->log->name, &w->ml);
        if (rc == WP_OK && w->ml.log_id != w->log->log_id)
            return wp__err(WP_ECLOSED, "log '%s' was deleted and re-created", w->log->name);
        if (rc)
            return rc;
        w->ml.epoch++;
        rc = m->ops->log_update(m, &w->ml);
    }
    return rc;
}

/* Completes one active segment of an older writer: fence, recover the
 * last durable entry, record it in metadata. */
static int recover_segment(wp_writer *w, meta_seg *s)
{
    int64_t last;
    uint64_t bytes;
    /* A segment a newer writer created is not ours to recover: this writer
     * is the stale one (the storage and the segment header say the same,
     * lseg_recover checks those too). */
    if (s->epoch > w->ml.epoch)
        return wp__err(WP_EFENCED, "log '%s': segment %" PRId64 " was created by epoch %" PRId64
                       ", above this writer's %" PRId64, w->log->name, s->seg_id, s->epoch,
                       w->ml.epoch);
    int rc = lseg_recover(w->c->st, s->log_id, s->seg_id, w->ml.epoch, &w->c->logger, &last,
                          &bytes);
    if (rc)
        return rc;
    for (int tries = 0; tries < EPOCH_CAS_TRIES_MAX; tries++) {
        s->state = WP_SEG_COMPLETED;
        s->last_entry_id = last;
        s->bytes = (int64_t)bytes;
        s->completed_ms = wp__wall_ms();
        rc = w->c->meta->ops->seg_update(w->c->meta, s);
        if (rc != WP_ECONFLICT)
            break;
        /* the old writer may have completed it meanwhile, or a newer one */
        if ((rc = refresh_log(w)))
            return rc;
        if ((rc = w->c->meta->ops->seg_get(w->c->meta, s->log_id, s->seg_id, s)))
            return rc;
        if (s->state != WP_SEG_ACTIVE)
            return WP_OK;
    }
    if (rc == WP_OK)
        wp__log(&w->c->logger, WP_LOG_INFO, "log '%s': recovered segment %" PRId64
                " up to entry %" PRId64, w->log->name, s->seg_id, last);
    return rc;
}

static int recover(wp_writer *w)
{
    meta_seg *segs = NULL;
    size_t n = 0;
    int rc = w->c->meta->ops->seg_list(w->c->meta, w->ml.log_id, &segs, &n);
    if (rc)
        return rc;
    w->cur_seg = 0;
    w->lac = (wp_msg_id){-1, -1};
    for (size_t i = 0; i < n && rc == WP_OK; i++) {
        if (segs[i].state == WP_SEG_ACTIVE)
            if ((rc = recover_segment(w, &segs[i])) == WP_OK)
                wp__metric_inc(M_SEGMENTS_RECOVERED);
        w->cur_seg = segs[i].seg_id + 1;
        if (segs[i].last_entry_id >= 0)
            w->lac = (wp_msg_id){segs[i].seg_id, segs[i].last_entry_id};
    }
    free(segs);
    return rc;
}

/* Object storage: flush.max_threads uploads in flight, each on a worker. */
static int start_workers(wp_writer *w)
{
    w->max_inflight = w->max_running = 1;
    if (!w->c->st->ops->seg_append_nth || w->cfg->flush_max_threads <= 1)
        return WP_OK;
    w->workers = calloc((size_t)w->cfg->flush_max_threads, sizeof *w->workers);
    if (!w->workers)
        return wp__err(WP_ENOMEM, "upload workers");
    for (int i = 0; i < w->cfg->flush_max_threads; i++) {
        if (pthread_create(&w->workers[i], NULL, worker_main, w) != 0) {
            stop_workers(w);
            return wp__err(WP_ENOMEM, "cannot start upload worker %d", i);
        }
        w->n_workers++;
    }
    w->max_running = w->n_workers;
    w->max_inflight = w->n_workers * UPLOADS_WAITING_PER_WORKER;
    return WP_OK;
}

static void stop_workers(wp_writer *w)
{
    pthread_mutex_lock(&w->mu);
    w->workers_stop = true;
    pthread_cond_broadcast(&w->cond_todo);
    pthread_mutex_unlock(&w->mu);
    for (int i = 0; i < w->n_workers; i++)
        pthread_join(w->workers[i], NULL);
    w->n_workers = 0;
}

static void writer_free(wp_writer *w)
{
    /* The flusher delivers every block before it exits; should one remain,
     * its appends still get their one callback. */
    while (w->head) {
        wblock *b = head_pop(w);
        run_callbacks(&b, 1, WP_ECLOSED);
        free(b->b.buf);
        free(b->cbs);
        free(b);
    }
    while (w->free_blocks) {
        wblock *b = w->free_blocks;
        w->free_blocks = b->next;
        free(b->b.buf);
        free(b->cbs);
        free(b);
    }
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cond_work);
    pthread_cond_destroy(&w->cond_space);
    pthread_cond_destroy(&w->cond_done);
    pthread_cond_destroy(&w->cond_todo);
    free(w->workers);
    free(w);
}

int wp_writer_open(wp_log *log, wp_writer **out)
{
    if (!log || !out)
        return wp__err(WP_EINVAL, "wp_writer_open: NULL argument");
    wp_writer *w = calloc(1, sizeof *w);
    if (!w)
        return wp__err(WP_ENOMEM, "writer");
    w->log = log;
    w->c = log->c;
    w->cfg = &log->c->cfg;
    pthread_mutex_init(&w->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&w->cond_work, &ca);
    pthread_condattr_destroy(&ca);
    pthread_cond_init(&w->cond_space, NULL);
    pthread_cond_init(&w->cond_done, NULL);
    pthread_cond_init(&w->cond_todo, NULL);
    int rc = bump_epoch(w);
    if (rc == WP_OK)
        rc = recover(w);
    if (rc)
        goto out_free;
    w->seg_bytes = SEG_HEADER_SIZE;
    w->seg_t0_ns = wp__now_ns();
    w->degraded_seg = -1;
    tail_writer(log->tail, w, true);
    if ((rc = start_workers(w)))
        goto out_untail;
    if (pthread_create(&w->thr, NULL, flusher_main, w) != 0) {
        rc = wp__err(WP_ENOMEM, "cannot start the flusher thread");
        stop_workers(w);
        goto out_untail;
    }
    wp__log(&w->c->logger, WP_LOG_INFO, "log '%s': writer open, epoch %" PRId64
            ", next segment %" PRId64, log->name, w->ml.epoch, w->cur_seg);
    wp__metric_inc(G_WRITERS);
    *out = w;
    return WP_OK;
out_untail:
    tail_writer(log->tail, w, false);
out_free:
    writer_free(w);
    return rc;
}

/* ---- append ------------------------------------------------------------ */

/* A segment's size: seg_bytes (its header and blocks, exactly what lseg
 * writes) + its index and footer. need_roll keeps seg_bytes at most
 * segment.max_bytes, except for a segment's first entry, which is always
 * accepted. It does not count the index and footer: the bound of
 * segment.max_bytes leaves room for them (WP_SEGMENT_MAX_BYTES_MAX, and
 * its _Static_assert in limits.h); a segment of one entry fits too: */
_Static_assert(WP_SEGMENT_TAIL_BYTES_MAX == WP_SEGMENT_BLOCKS_MAX * (long long)IDX_ENTRY_SIZE + FTR_SIZE,
               "index and footer of a full segment");
_Static_assert(SEG_HEADER_SIZE + WP_BLOCK_BYTES_MAX + IDX_ENTRY_SIZE + FTR_SIZE <= WP_SEGMENT_BYTES_MAX,
               "a segment holding one entry of any size completes");

static bool need_roll(const wp_writer *w, size_t rec_len)
{
    if (w->next_entry == 0)
        return false;
    const wp_config *c = w->cfg;
    return w->degraded_seg == w->cur_seg ||
           w->seg_bytes + rec_len + BLK_HEADER_SIZE > (uint64_t)c->segment_max_bytes ||
           w->seg_blocks >= (uint64_t)c->segment_max_blocks ||
           (c->segment_max_age_ms > 0 &&
            wp__now_ns() - w->seg_t0_ns >= c->segment_max_age_ms * 1000000LL);
}

/* The block the next record of rec_len bytes goes into (may start one). */
static wblock *tail_block(wp_writer *w, size_t rec_len)
{
    wblock *t = w->tail;
    const wp_config *c = w->cfg;
    if (t && !t->sealed && t->seg_id == w->cur_seg &&
        (t->b.n_entries == 0 || t->b.len + rec_len <= (size_t)c->flush_max_bytes + BLK_HEADER_SIZE) &&
        t->b.n_entries < (uint32_t)c->flush_max_entries)
        return t;
    if (t)
        t->sealed = true;
    wblock *b = block_get(w, w->cur_seg, w->next_entry);
    if (!b)
        return NULL;
    if (w->tail)
        w->tail->next = b;
    else
        w->head = b;
    w->tail = b;
    w->seg_blocks++;
    w->seg_bytes += BLK_HEADER_SIZE;
    return b;
}

/* Takes back b, the block tail_block just queued after prev, which stayed
 * empty (its reservation failed): the queue and the segment's counts are
 * as before, and b goes back to the free list. An empty block left queued
 * would be sealed by the next roll and stop the flusher at it. */
static void tail_unqueue(wp_writer *w, wblock *b, wblock *prev)
{
    assert(w->tail == b && b->b.n_entries == 0 && b->writers == 0);
    if (prev)
        prev->next = NULL;
    else
        w->head = NULL;
    w->tail = prev;
    w->seg_blocks--;
    w->seg_bytes -= BLK_HEADER_SIZE;
    block_put(w, b);
}

/* Waits for room under writer.max_pending_bytes; called with w->mu held. */
static int wait_space(wp_writer *w, size_t rec_len, int flags)
{
    while (!w->failed && !w->closing && w->pending_bytes > 0 &&
           w->pending_bytes + (int64_t)rec_len > w->cfg->writer_max_pending_bytes) {
        if (flags & WP_NONBLOCK)
            return wp__err(WP_EAGAIN, "writer.max_pending_bytes (%" PRId64 ") buffered",
                           w->cfg->writer_max_pending_bytes);
        pthread_cond_wait(&w->cond_space, &w->mu);
    }
    if (w->failed)
        return wp__err(w->failed, "writer of log '%s' has failed: %s", w->log->name,
                       wp_strerror(w->failed));
    if (w->closing)
        return wp__err(WP_ECLOSED, "writer is closing");
    return WP_OK;
}

/* Reserves room for a record of rec_len bytes in the tail block and
 * assigns its id; the caller encodes it at (*out)->b.buf + *off, then calls
 * append_done. Called with w->mu held. */
static int append_reserve(wp_writer *w, size_t rec_len, int flags, wp_append_cb cb, void *arg,
                          wblock **out, size_t *off)
{
    int rc = wait_space(w, rec_len, flags);
    if (rc)
        return rc;
    if (need_roll(w, rec_len)) {
        if (w->tail)
            w->tail->sealed = true;
        w->cur_seg++;
        w->next_entry = 0;
        w->seg_bytes = SEG_HEADER_SIZE;
        w->seg_blocks = 0;
        w->seg_t0_ns = wp__now_ns();
    }
    wblock *prev = w->tail;
    wblock *b = tail_block(w, rec_len);
    if (!b)
        return wp__err(WP_ENOMEM, "block");
    if ((rc = block_reserve(b, rec_len, (size_t)w->cfg->flush_max_bytes))) {
        if (b != prev) /* new and still empty: the queue must not keep it */
            tail_unqueue(w, b, prev);
        return rc;
    }
    *off = b->b.len;
    b->b.len += rec_len;
    b->cbs[b->b.n_entries] = (ackcb){cb, arg};
    b->b.n_entries++;
    b->writers++;
    w->next_entry++;
    w->seg_bytes += rec_len;
    w->pending_bytes += (int64_t)rec_len;
    w->n_appended++;
    wp__metric_add(G_PENDING_BYTES, (int64_t)rec_len);
    if (b->b.len - BLK_HEADER_SIZE >= (size_t)w->cfg->flush_max_bytes ||
        b->b.n_entries >= (uint32_t)w->cfg->flush_max_entries)
        b->sealed = true;
    *out = b;
    return WP_OK;
}

/* A reserved record of b is encoded. Wakes the flusher when it has
 * something new: a block to time (its first records) or one to take. Not
 * on every append: a 4 KiB append would otherwise cost a wakeup. Called
 * with w->mu held. */
static void append_done(wp_writer *w, wblock *b)
{
    assert(b->writers > 0);
    if (--b->writers > 0)
        return;
    if (!b->announced || block_ready(w, b, wp__now_ns())) {
        b->announced = true;
        pthread_cond_signal(&w->cond_work);
    }
}

int wp_writer_append_entry_async(wp_writer *w, const wp_payload *p, int flags, wp_append_cb cb,
                                 void *arg)
{
    if (!w || !p)
        return wp__err(WP_EINVAL, "append: NULL argument");
    int rc = rec_check(p, (size_t)w->cfg->writer_max_entry_bytes);
    if (rc)
        return rc;
    size_t rec_len = rec_size(p), off = 0;
    wblock *b = NULL;
    pthread_mutex_lock(&w->mu);
    rc = append_reserve(w, rec_len, flags, cb, arg, &b, &off);
    pthread_mutex_unlock(&w->mu);
    if (rc)
        return rc;
    /* b stays in the queue (and its buffer in place) while b->writers > 0 */
    rec_encode(p, b->b.buf + off);
    pthread_mutex_lock(&w->mu);
    append_done(w, b);
    pthread_mutex_unlock(&w->mu);
    wp__metric_inc(M_APPENDS);
    wp__metric_add(M_APPEND_BYTES, (int64_t)p->len);
    return WP_OK;
}

int wp_writer_append_async(wp_writer *w, const void *data, size_t len, wp_append_cb cb, void *arg)
{
    wp_payload p = {.data = data, .len = len};
    return wp_writer_append_entry_async(w, &p, 0, cb, arg);
}

typedef struct {
    wp_writer *w;
    bool done;
    int rc;
    wp_msg_id id;
} sync_wait;

static void sync_cb(void *arg, int rc, wp_msg_id id)
{
    sync_wait *sw = arg;
    pthread_mutex_lock(&sw->w->mu);
    sw->done = true;
    sw->rc = rc;
    sw->id = id;
    pthread_cond_broadcast(&sw->w->cond_done);
    pthread_mutex_unlock(&sw->w->mu);
}

int wp_writer_append_entry(wp_writer *w, const wp_payload *p, wp_msg_id *out)
{
    sync_wait sw = {.w = w};
    int rc = wp_writer_append_entry_async(w, p, 0, sync_cb, &sw);
    if (rc)
        return rc;
    pthread_mutex_lock(&w->mu);
    while (!sw.done)
        pthread_cond_wait(&w->cond_done, &w->mu);
    pthread_mutex_unlock(&w->mu);
    if (sw.rc)
        return wp__err(sw.rc, "append to log '%s' failed: %s", w->log->name, wp_strerror(sw.rc));
    if (out)
        *out = sw.id;
    return WP_OK;
}

int wp_writer_append(wp_writer *w, const void *data, size_t len, wp_msg_id *out)
{
    wp_payload p = {.data = data, .len = len};
    return wp_writer_append_entry(w, &p, out);
}

int wp_writer_flush(wp_writer *w)
{
    if (!w)
        return wp__err(WP_EINVAL, "flush: NULL writer");
    pthread_mutex_lock(&w->mu);
    uint64_t target = w->n_appended;
    while (w->n_done < target)
        pthread_cond_wait(&w->cond_done, &w->mu);
    int rc = w->failed;
    pthread_mutex_unlock(&w->mu);
    if (rc)
        return wp__err(rc, "writer of log '%s' has failed: %s", w->log->name, wp_strerror(rc));
    return WP_OK;
}

wp_msg_id wp_writer_lac(wp_writer *w)
{
    pthread_mutex_lock(&w->mu);
    wp_msg_id id = w->lac;
    pthread_mutex_unlock(&w->mu);
    return id;
}

int wp_writer_close(wp_writer *w)
{
    if (!w)
        return WP_OK;
    pthread_mutex_lock(&w->mu);
    w->closing = true;
    pthread_cond_broadcast(&w->cond_work);
    pthread_cond_broadcast(&w->cond_space);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->thr, NULL);
    stop_workers(w);
    int rc = w->close_rc;
    tail_writer(w->log->tail, w, false);
    if (rc)
        rc = wp__err(rc, "closing the writer of log '%s': %s", w->log->name, wp_strerror(rc));
    writer_free(w);
    wp__metric_add(G_WRITERS, -1);
    return rc;
}
