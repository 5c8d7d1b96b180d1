/* reader.c — readers (ARCHITECTURE §4): positioning, reading across
 * segments, tailing. An entry is visible when it is at or below the LAC:
 * for a completed segment its last entry from metadata, for the active one
 * the in-process writer's LAC (woken by a condition variable) or, for a
 * writer in another process, the segment's published LAC hint (polled with
 * a short backoff bounded by reader.poll_max_ms). */
#include <inttypes.h>
#include <stdio.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/metrics.h"
#include "client/internal.h"
#include "logstore/segment.h"

/* How long an in-process wait sleeps before re-checking metadata (covers a
 * writer in another process taking over the log). */
#define TAIL_WAIT_SLICE_NS (50 * 1000000LL)
#define POLL_MIN_NS (100 * 1000LL)
/* Longest a read waits at a server for entries (storage that pushes
 * them: seg_reader_wait) before the reader looks at metadata again. */
#define LONG_POLL_MS 500

struct wp_reader {
    wp_log *log;
    wp_client *c;
    int64_t seg, entry; /* the next entry returned is the first >= (seg, entry) */
    lseg_r *sr;         /* open segment == seg */
    bool sr_completed;
    int64_t sr_last;    /* last entry of a completed segment */
    int64_t poll_ns;
    int wait_ms;        /* how long the next read of an active segment may wait */
    /* registration (GC hold), listed in the client */
    reader_reg reg;
    /* With a metadata store that has watches (etcd): a watch on the log's
     * segment records marks the reader's view stale, so it reads segment
     * metadata only after a change (never polls etcd). NULL without (SQLite,
     * where a read is a local query). */
    meta_watch *watch;
    bool meta_dirty;   /* atomic */
    bool watch_failed; /* atomic */
    int64_t wait_seg;  /* segment whose metadata showed nothing new, -1 */
    meta_seg wait_meta; /* its record, if it exists (storage not yet) */
    bool wait_meta_valid;
    /* properties of the last entry */
    const char **keys, **vals;
    size_t props_cap;
    char *pbuf;
    size_t pbuf_cap;
};

/* ---- positioning ------------------------------------------------------- */

/* Last durable entry of an active segment: the in-process writer's LAC, or
 * the storage hint published by a writer elsewhere. */
static int64_t active_lac(wp_client *c, tailstate *t, int64_t log_id, int64_t seg_id)
{
    int64_t lac;
    uint64_t seq;
    bool has_writer;
    if (tail_lac(t, seg_id, &lac, &seq, &has_writer))
        return lac;
    if (c->st->ops->durable_when_visible) /* objects: visible only once durable */
        return LSEG_LAC_UNKNOWN;
    lseg_r *r;
    if (lseg_open_read(c->st, log_id, seg_id, false, 0, &r))
        return -1;
    int rc = lseg_read_lac(r, &lac);
    if (rc == WP_ENOTSUP) /* objects: visible only once durable */
        lac = LSEG_LAC_UNKNOWN;
    else if (rc)
        lac = -1;
    lseg_close_read(r);
    return lac;
}

/* Last durable entry of an active segment; where the storage has no LAC
 * hint (objects), found by walking the block headers of what is there. */
static int64_t active_last(wp_client *c, tailstate *t, int64_t log_id, int64_t seg_id)
{
    int64_t lac = active_lac(c, t, log_id, seg_id);
    if (lac != LSEG_LAC_UNKNOWN)
        return lac;
    lseg_r *r;
    if (lseg_open_read(c->st, log_id, seg_id, false, 0, &r))
        return -1;
    lseg_entry e;
    lseg_seek(r, INT64_MAX - 1); /* skips whole blocks by their headers */
    lac = lseg_next(r, LSEG_LAC_UNKNOWN, &e) == WP_EAGAIN ? lseg_position(r) - 1 : -1;
    lseg_close_read(r);
    return lac;
}

int wp__log_last_id(wp_log *log, wp_msg_id *out)
{
    meta_seg *segs;
    size_t n;
    int rc = log->c->meta->ops->seg_list(log->c->meta, log->log_id, &segs, &n);
    if (rc)
        return rc;
    *out = (wp_msg_id){-1, -1};
    for (size_t i = n; i-- > 0;) {
        int64_t last = segs[i].state == WP_SEG_ACTIVE
                           ? active_last(log->c, log->tail, log->log_id, segs[i].seg_id)
                           : segs[i].last_entry_id;
        meta_seg now;
        if (last < 0 && segs[i].state == WP_SEG_ACTIVE &&
            log->c->meta->ops->seg_get(log->c->meta, log->log_id, segs[i].seg_id, &now) == 0 &&
            now.state != WP_SEG_ACTIVE)
            last = now.last_entry_id; /* completed meanwhile: its walk met the footer */
        if (last >= 0) {
            *out = (wp_msg_id){segs[i].seg_id, last};
            break;
        }
    }
    free(segs);
    return WP_OK;
}

/* ---- missing segments -------------------------------------------------- */

/* Whether (seg, entry) is at or below the log's truncation point. */
static bool pos_truncated(const meta_log *ml, int64_t seg, int64_t entry)
{
    return ml->trunc_seg >= 0 &&
           wp_msg_id_cmp((wp_msg_id){seg, entry}, (wp_msg_id){ml->trunc_seg, ml->trunc_entry}) <= 0;
}

/* Segment `seg` is not among `segs` (the log's segments, in id order).
 * Segment ids are dense, and GC deletes only completed segments wholly at
 * or below the truncation point, never the last one. So:
 * - no later segment: `seg` is not created yet (WP_EAGAIN);
 * - a later one, and (seg, entry) at or below the truncation point: `seg`
 *   was deleted with entries at or after (seg, entry) (WP_ETRUNCATED);
 * - a later one, and (seg, entry) above the truncation point: `seg` held
 *   nothing at or after (seg, entry) (deleted once wholly truncated, so
 *   entry is past its end; or never created), and reading goes on with the
 *   next segment that exists, *next (WP_OK). */
static int seg_missing(const wp_reader *r, const meta_log *ml, const meta_seg *segs, size_t n,
                       int64_t seg, int64_t entry, const meta_seg **next)
{
    size_t i = 0;
    while (i < n && segs[i].seg_id <= seg)
        i++;
    if (i == n)
        return WP_EAGAIN;
    if (pos_truncated(ml, seg, entry))
        return wp__err(WP_ETRUNCATED, "log '%s': position %" PRId64 ":%" PRId64 " was truncated "
                       "and segment %" PRId64 " deleted", r->log->name, seg, entry, seg);
    *next = &segs[i];
    return WP_OK;
}

/* Resolves WP_EARLIEST / WP_LATEST / an id (not negative) to a concrete
 * position and checks it is still retained. */
static int resolve_start(wp_reader *r, wp_msg_id from)
{
    meta *m = r->c->meta;
    meta_log ml;
    int rc = m->ops->log_get(m, r->log->name, &ml);
    if (rc)
        return rc;
    meta_seg *segs;
    size_t n;
    if ((rc = m->ops->seg_list(m, r->log->log_id, &segs, &n)))
        return rc;
    int64_t first_seg = n ? segs[0].seg_id : 0;
    int64_t end_seg = n ? segs[n - 1].seg_id + 1 : 0;
    if (wp_msg_id_cmp(from, WP_EARLIEST) == 0) {
        r->seg = ml.trunc_seg >= 0 ? ml.trunc_seg : 0;
        r->entry = ml.trunc_seg >= 0 ? ml.trunc_entry + 1 : 0;
        if (r->seg < first_seg) {
            r->seg = first_seg;
            r->entry = 0;
        }
    } else if (wp_msg_id_cmp(from, WP_LATEST) == 0) {
        wp_msg_id last;
        rc = wp__log_last_id(r->log, &last);
        r->seg = last.segment_id >= 0 ? last.segment_id : end_seg;
        r->entry = last.entry_id + 1;
        if (last.segment_id < 0)
            r->entry = 0;
    } else {
        r->seg = from.segment_id;
        r->entry = from.entry_id;
        bool exists = false;
        for (size_t i = 0; i < n && !exists; i++)
            exists = segs[i].seg_id == r->seg;
        const meta_seg *next;
        if (!exists && (rc = seg_missing(r, &ml, segs, n, r->seg, r->entry, &next)) == WP_EAGAIN)
            rc = WP_OK; /* not created yet: waits for it */
    }
    free(segs);
    return rc;
}

/* ---- registration (holds GC below our position) ------------------------ */

static int register_position(wp_reader *r)
{
    return client_reader_register(r->c, &r->reg, r->seg, r->entry);
}

/* ---- metadata changes ------------------------------------------------ */

/* False if the last metadata read of segment r->seg found nothing new and
 * the watch has reported no change since (then a new read would find the
 * same). Otherwise clears the change mark, so a change during the read that
 * follows marks it again. */
static bool meta_stale(wp_reader *r)
{
    if (!r->watch || __atomic_load_n(&r->watch_failed, __ATOMIC_SEQ_CST))
        return true;
    bool dirty = __atomic_exchange_n(&r->meta_dirty, false, __ATOMIC_SEQ_CST);
    return dirty || r->wait_seg != r->seg;
}

static void on_seg_event(void *arg)
{
    wp_reader *r = arg;
    __atomic_store_n(&r->meta_dirty, true, __ATOMIC_SEQ_CST);
    tail_bump(r->log->tail);
}

static void on_watch_err(void *arg, int rc, const char *msg)
{
    wp_reader *r = arg;
    wp__log(&r->c->logger, WP_LOG_WARN, "reader %s: segment watch ended: %s (%s); reading "
            "metadata on every poll", r->reg.name, wp_strerror(rc), msg);
    __atomic_store_n(&r->meta_dirty, true, __ATOMIC_SEQ_CST);
    __atomic_store_n(&r->watch_failed, true, __ATOMIC_SEQ_CST);
}

/* ---- open/close -------------------------------------------------------- */

void wp__reader_test_on_resolved(wp_client *c, void (*fn)(void *arg), void *arg)
{
    c->test_resolved_fn = fn;
    c->test_resolved_arg = arg;
}

int wp_reader_open(wp_log *log, wp_msg_id from, wp_reader **out)
{
    if (!log || !out)
        return wp__err(WP_EINVAL, "wp_reader_open: NULL argument");
    wp_reader *r = calloc(1, sizeof *r);
    if (!r)
        return wp__err(WP_ENOMEM, "reader");
    r->log = log;
    r->c = log->c;
    static _Atomic uint64_t counter;
    snprintf(r->reg.name, sizeof r->reg.name, "r-%d-%" PRIx64 "-%" PRIu64, (int)getpid(),
             (uint64_t)wp__now_ns(), (uint64_t)++counter);
    r->reg.log_id = log->log_id;
    int rc = WP_OK;
    r->meta_dirty = true;
    r->wait_seg = -1;
    const struct meta_ops *mo = r->c->meta->ops;
    if (mo->seg_watch) /* before reading state: no missed change */
        rc = mo->seg_watch(r->c->meta, log->log_id, on_seg_event, on_watch_err, r, &r->watch);
    /* Registered first, at a position that holds whatever the start
     * resolves to: `from` itself, or 0:0 (every segment) for earliest and
     * latest. A GC pass from then on keeps it; what GC deleted before,
     * resolve_start sees (WP_ETRUNCATED at once). Then the registration
     * moves up to the resolved position. */
    bool exact = wp_msg_id_cmp(from, WP_EARLIEST) != 0 && wp_msg_id_cmp(from, WP_LATEST) != 0;
    wp_msg_id hold = exact ? from : (wp_msg_id){0, 0};
    if (rc == WP_OK && (hold.segment_id < 0 || hold.entry_id < 0))
        rc = wp__err(WP_EINVAL, "reader position %" PRId64 ":%" PRId64 " is negative",
                     from.segment_id, from.entry_id);
    if (rc == WP_OK)
        rc = client_reader_register(r->c, &r->reg, hold.segment_id, hold.entry_id);
    if (rc == WP_OK)
        rc = resolve_start(r, from);
    if (rc == WP_OK && r->c->test_resolved_fn)
        r->c->test_resolved_fn(r->c->test_resolved_arg);
    if (rc == WP_OK && (r->seg != hold.segment_id || r->entry != hold.entry_id))
        rc = register_position(r);
    if (rc) {
        if (r->watch)
            r->c->meta->ops->watch_stop(r->watch);
        client_reader_unregister(r->c, &r->reg);
        free(r);
        return rc;
    }
    wp__metric_inc(G_READERS);
    *out = r;
    return WP_OK;
}

void wp_reader_close(wp_reader *r)
{
    if (!r)
        return;
    wp__metric_add(G_READERS, -1);
    if (r->watch)
        r->c->meta->ops->watch_stop(r->watch);
    lseg_close_read(r->sr);
    client_reader_unregister(r->c, &r->reg);
    free(r->keys);
    free(r->vals);
    free(r->pbuf);
    free(r);
}

/* ---- next -------------------------------------------------------------- */

/* Segment r->seg is not in metadata: the log's segments and truncation
 * point decide (seg_missing). WP_OK with *s the segment to read (r->seg,
 * or the next one that exists, then at entry 0). */
static int find_segment(wp_reader *r, meta_seg *s)
{
    meta *m = r->c->meta;
    meta_log ml;
    int rc = m->ops->log_get(m, r->log->name, &ml);
    if (rc == WP_ENOENT || (rc == WP_OK && ml.log_id != r->log->log_id))
        return wp__err(WP_ECLOSED, "log '%s' was deleted", r->log->name);
    if (rc)
        return rc;
    meta_seg *segs;
    size_t n;
    if ((rc = m->ops->seg_list(m, r->log->log_id, &segs, &n)))
        return rc;
    const meta_seg *next = NULL;
    for (size_t i = 0; i < n && !next; i++)
        if (segs[i].seg_id == r->seg) /* created meanwhile */
            next = &segs[i];
    if (!next)
        rc = seg_missing(r, &ml, segs, n, r->seg, r->entry, &next);
    if (rc == WP_OK) {
        if (next->seg_id != r->seg) {
            r->seg = next->seg_id;
            r->entry = 0;
        }
        *s = *next;
    } else if (rc == WP_EAGAIN) {
        r->wait_seg = r->seg; /* not created yet */
        r->wait_meta_valid = false;
    }
    free(segs);
    return rc;
}

/* Opens the segment at r->seg, or the first one after it that holds
 * entries at or after the position (a completed segment that ends before
 * r->entry has nothing for us). WP_EAGAIN if it does not exist yet;
 * WP_ETRUNCATED if entries we need were deleted. */
static int open_segment(wp_reader *r)
{
    meta *m = r->c->meta;
    meta_seg s;
    int rc;
    if (!meta_stale(r)) {
        if (!r->wait_meta_valid)
            return WP_EAGAIN;
        s = r->wait_meta;
        goto open_data;
    }
    for (;;) {
        rc = m->ops->seg_get(m, r->log->log_id, r->seg, &s);
        if (rc == WP_ENOENT)
            rc = find_segment(r, &s);
        if (rc)
            return rc;
        if (s.state == WP_SEG_ACTIVE || r->entry <= s.last_entry_id)
            break;
        r->seg++; /* completed before r->entry (or empty): nothing to read in it */
        r->entry = 0;
    }
open_data:
    r->sr_completed = s.state != WP_SEG_ACTIVE;
    r->sr_last = s.last_entry_id;
    rc = lseg_open_read(r->c->st, r->log->log_id, r->seg, r->sr_completed, (uint64_t)s.bytes, &r->sr);
    if (rc == WP_ENOENT && r->sr_completed)
        return wp__err(WP_ETRUNCATED, "log '%s': segment %" PRId64 " data was deleted",
                       r->log->name, r->seg);
    if (rc == WP_ENOENT) { /* created in metadata, not yet in storage */
        r->wait_seg = r->seg;
        r->wait_meta = s;
        r->wait_meta_valid = true;
        return WP_EAGAIN;
    }
    if (rc)
        return rc;
    r->wait_meta_valid = false;
    lseg_seek(r->sr, r->entry);
    if (r->reg.seg_id != r->seg)
        register_position(r); /* best effort: the old, lower registration holds it too */
    return WP_OK;
}

/* The active segment ran dry: has it been completed meanwhile? Closes
 * r->sr if the segment is gone from metadata. */
static int refresh_state(wp_reader *r)
{
    meta_seg s;
    if (!meta_stale(r))
        return WP_OK;
    int rc = r->c->meta->ops->seg_get(r->c->meta, r->log->log_id, r->seg, &s);
    if (rc == WP_ENOENT) { /* completed, truncated and deleted since */
        lseg_close_read(r->sr);
        r->sr = NULL; /* open_segment decides: deleted what we need, or go on */
        return WP_OK;
    }
    if (rc)
        return rc;
    if (s.state != WP_SEG_ACTIVE) {
        r->sr_completed = true;
        r->sr_last = s.last_entry_id;
    } else {
        r->wait_seg = r->seg; /* still active: wait for a change */
    }
    return WP_OK;
}

/* A completed segment failed to read (an object or file gone, or short):
 * if GC is deleting it (TRUNCATED in metadata, or gone), the entries we
 * need were deleted under us: WP_ETRUNCATED instead of the read error. */
static int read_error(wp_reader *r, int rc)
{
    meta_seg s;
    if (!r->sr_completed || rc == WP_ENOMEM)
        return rc;
    int grc = r->c->meta->ops->seg_get(r->c->meta, r->log->log_id, r->seg, &s);
    if (grc == WP_ENOENT || (grc == WP_OK && s.state == WP_SEG_TRUNCATED))
        return wp__err(WP_ETRUNCATED, "log '%s': segment %" PRId64 " was deleted while read at "
                       "entry %" PRId64 " (%s)", r->log->name, r->seg, r->entry, wp_strerror(rc));
    return rc;
}

/* Reads the segment's state whatever the watch says: completed? */
static bool completed_meanwhile(wp_reader *r)
{
    meta_seg s;
    if (r->sr_completed ||
        r->c->meta->ops->seg_get(r->c->meta, r->log->log_id, r->seg, &s) != WP_OK)
        return false;
    return s.state != WP_SEG_ACTIVE;
}

static int fill_entry(wp_reader *r, const lseg_entry *e, wp_entry *out)
{
    out->id = (wp_msg_id){r->seg, e->entry_id};
    out->data = e->rec.data;
    out->len = e->rec.len;
    out->n_props = e->rec.n_props;
    out->prop_keys = NULL;
    out->prop_values = NULL;
    if (e->rec.n_props == 0)
        return WP_OK;
    size_t need = e->rec.props_len + 2 * e->rec.n_props;
    if (e->rec.n_props > r->props_cap) {
        free(r->keys);
        free(r->vals);
        r->keys = malloc(e->rec.n_props * sizeof *r->keys);
        r->vals = malloc(e->rec.n_props * sizeof *r->vals);
        r->props_cap = r->keys && r->vals ? e->rec.n_props : 0;
        if (!r->props_cap)
            return wp__err(WP_ENOMEM, "properties");
    }
    if (need > r->pbuf_cap) {
        free(r->pbuf);
        r->pbuf = malloc(need);
        r->pbuf_cap = r->pbuf ? need : 0;
        if (!r->pbuf)
            return wp__err(WP_ENOMEM, "properties");
    }
    size_t off = 0, at = 0;
    const uint8_t *k, *v;
    size_t kl, vl;
    for (uint32_t i = 0; rec_prop_next(&e->rec, &off, &k, &kl, &v, &vl); i++) {
        r->keys[i] = r->pbuf + at;
        memcpy(r->pbuf + at, k, kl);
        r->pbuf[at + kl] = '\0';
        at += kl + 1;
        r->vals[i] = r->pbuf + at;
        memcpy(r->pbuf + at, v, vl);
        r->pbuf[at + vl] = '\0';
        at += vl + 1;
    }
    out->prop_keys = r->keys;
    out->prop_values = r->vals;
    return WP_OK;
}

/* One attempt: WP_OK with an entry, WP_EAGAIN if nothing is visible. */
static int try_next(wp_reader *r, wp_entry *out)
{
    for (;;) {
        int rc;
        if (!r->sr && (rc = open_segment(r)))
            return rc;
        int64_t max = r->sr_completed ? r->sr_last
                                      : active_lac(r->c, r->log->tail, r->log->log_id, r->seg);
        lseg_entry e;
        lseg_set_wait(r->sr, r->sr_completed ? 0 : r->wait_ms);
        rc = lseg_next(r->sr, max, &e);
        if (rc == WP_OK) {
            r->entry = e.entry_id + 1;
            rc = fill_entry(r, &e, out);
            if (rc == WP_OK) {
                wp__metric_inc(M_READ_ENTRIES);
                wp__metric_add(M_READ_BYTES, (int64_t)out->len);
            }
            return rc;
        }
        if (rc == WP_ECORRUPT && max == LSEG_LAC_UNKNOWN && completed_meanwhile(r)) {
            /* objects: reading what is there ran into the index + footer of
             * a segment completed meanwhile; read on with its index */
            lseg_close_read(r->sr);
            r->sr = NULL;
            r->wait_seg = -1;
            continue;
        }
        if (rc != WP_EAGAIN)
            return read_error(r, rc);
        if (!r->sr_completed) {
            if ((rc = refresh_state(r)))
                return rc;
            if (!r->sr)
                continue;
            if (!r->sr_completed)
                return WP_EAGAIN;
            continue; /* completed meanwhile: read up to its last entry */
        }
        lseg_close_read(r->sr); /* segment done: on to the next */
        r->sr = NULL;
        r->seg++;
        r->entry = 0;
    }
}

static void sleep_ns(int64_t ns)
{
    struct timespec ts = {ns / 1000000000LL, ns % 1000000000LL};
    nanosleep(&ts, NULL);
}

int wp_reader_next(wp_reader *r, int timeout_ms, wp_entry *out)
{
    if (!r || !out)
        return wp__err(WP_EINVAL, "wp_reader_next: NULL argument");
    /* The clock is read only when the read has to wait: an entry that is
     * there costs none (a tailing reader takes millions a second). */
    int64_t deadline = timeout_ms < 0 ? -1 : INT64_MIN; /* INT64_MIN: not read yet */
    for (;;) {
        int64_t lac;
        uint64_t seq;
        bool has_writer;
        tail_lac(r->log->tail, r->seg, &lac, &seq, &has_writer);
        /* A writer elsewhere, on servers that push entries: the read itself
         * waits for them (bounded, so that the log's metadata is looked at
         * now and then: a roll, a truncation). */
        if (!has_writer && deadline == INT64_MIN)
            deadline = wp__now_ns() + (int64_t)timeout_ms * 1000000LL;
        int64_t left_ms = has_writer || deadline < 0 ? LONG_POLL_MS
                                                     : (deadline - wp__now_ns()) / 1000000LL;
        r->wait_ms = has_writer ? 0 : (int)(left_ms < LONG_POLL_MS ? left_ms : LONG_POLL_MS);
        int rc = try_next(r, out);
        r->wait_ms = 0;
        if (rc != WP_EAGAIN) {
            if (rc == WP_OK)
                r->poll_ns = POLL_MIN_NS;
            return rc;
        }
        int64_t now = wp__now_ns();
        if (deadline == INT64_MIN)
            deadline = now + (int64_t)timeout_ms * 1000000LL;
        if (r->sr && lseg_waited(r->sr))
            continue; /* it waited already: no sleep on top */
        if (deadline >= 0 && now >= deadline)
            return wp__err(WP_ETIMEDOUT, "no new entry within %d ms", timeout_ms);
        int64_t until = deadline < 0 ? now + TAIL_WAIT_SLICE_NS : deadline;
        if (has_writer) {
            /* in-process writer: woken when it publishes */
            if (until > now + TAIL_WAIT_SLICE_NS)
                until = now + TAIL_WAIT_SLICE_NS;
            tail_wait(r->log->tail, seq, until);
            continue;
        }
        /* writer elsewhere: bounded backoff */
        int64_t step = r->poll_ns ? r->poll_ns : POLL_MIN_NS;
        if (step > until - now)
            step = until - now;
        sleep_ns(step);
        r->poll_ns = r->poll_ns * 2;
        if (r->poll_ns > r->c->poll_max_ns)
            r->poll_ns = r->c->poll_max_ns;
        if (r->poll_ns < POLL_MIN_NS)
            r->poll_ns = POLL_MIN_NS * 2;
    }
}
