/* upload.c — server-driven tiering; see upload.h.
 *
 * The looker thread lists the copies on disk, reads the records of their
 * logs (one seg_list per log), keeps a table of what it saw (sorted by
 * segment), queues the COMPLETED ones for the upload threads and drops
 * the copies whose grace ran out. An upload thread takes one segment at a
 * time: eligibility, claim, local completion, objects, check, compaction,
 * seal, claim deletion. Every step is idempotent, so a failed upload is
 * simply tried again later (with a backoff), by this server or another. */
#include "server/upload.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "base/limits.h"
#include "logstore/segment.h"
#include "storage/s3.h"
#include "storage/storage.h"

/* A part (one PUT) is compaction.max_bytes, at most this much. */
#define PART_MAX (64 * WP_MiB)
#define BACKOFF_MIN_NS (1000 * 1000000LL)
#define BACKOFF_MAX_NS (30 * 1000000000LL)
#define COMPACT_ROUNDS 8
#define SEAL_TRIES 8

typedef struct {
    int64_t log_id, seg_id;
    int state;            /* the record's WP_SEG_*; -1: no record */
    int64_t seen_ns;      /* SEALED or orphaned since (0: not) */
    int64_t next_try_ns;  /* after a failed or refused upload */
    int64_t backoff_ns;
    int64_t attempt;      /* the last claim attempt seen of it */
    bool busy;            /* queued or being uploaded */
    meta_seg rec;         /* the record, as last read */
} tracked;

struct uploader {
    const wp_config *cfg;
    const wp__logger *lg;
    replica *rs;
    meta *m;
    const int64_t *lease_id;
    storage *cold; /* NULL: no object storage configured */
    size_t part;
    pthread_mutex_t mu; /* everything below */
    pthread_cond_t cond;       /* the looker's sleep; upload threads' queue */
    tracked *t;
    size_t n_t;
    int64_t *q_log, *q_seg;
    size_t q_head, q_len, q_cap;
    bool stop, kick;
    upload_view view;
    bool unsealed_none; /* the last look found nothing unsealed */
    int64_t look_start_ns; /* when the last look began */
    pthread_t looker;
    pthread_t *uploaders;
    int n_uploaders;
    bool looker_started;
};

/* Process-wide counters for GET /metrics (a server process runs one). */
static _Atomic uint64_t n_uploaded, n_uploaded_bytes, n_upload_failures, n_dropped, n_takeovers;

void uploader_counters(uint64_t *uploaded, uint64_t *bytes, uint64_t *failures, uint64_t *dropped,
                       uint64_t *takeovers)
{
    *uploaded = atomic_load(&n_uploaded);
    *bytes = atomic_load(&n_uploaded_bytes);
    *failures = atomic_load(&n_upload_failures);
    *dropped = atomic_load(&n_dropped);
    *takeovers = atomic_load(&n_takeovers);
}

static tracked *find(tracked *t, size_t n, int64_t log_id, int64_t seg_id)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (t[mid].log_id < log_id || (t[mid].log_id == log_id && t[mid].seg_id < seg_id))
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n && t[lo].log_id == log_id && t[lo].seg_id == seg_id ? &t[lo] : NULL;
}

/* ---- one upload ------------------------------------------------------------ */

/* The object copy is complete and holds [0, last]: its footer says so. */
static int cold_check(uploader *u, int64_t log_id, int64_t seg_id, uint64_t bytes, int64_t last)
{
    int64_t got = -2;
    int rc = lseg_check_complete(u->cold, log_id, seg_id, bytes, &got);
    if (rc == WP_OK && got != last)
        rc = wp__err(WP_ECORRUPT, "segment %" PRId64 "/%" PRId64 " in object storage ends at entry %"
                     PRId64 ", its record at %" PRId64, log_id, seg_id, got, last);
    return rc;
}

/* The size of a finalized object copy. */
static int cold_size(uploader *u, int64_t log_id, int64_t seg_id, uint64_t *size)
{
    st_reader *r = NULL;
    int rc = u->cold->ops->seg_open_read(u->cold, log_id, seg_id, &r);
    if (rc == WP_OK)
        rc = u->cold->ops->seg_size(r, size);
    if (r)
        u->cold->ops->seg_reader_close(r);
    return rc;
}

/* Writes the copy's `bytes` bytes as the segment's objects, owned by
 * epoch `gen` (the claim's generation), and finalizes them. *out_bytes:
 * the object copy's length (another claimant's, if it finished first). */
static int put_objects(uploader *u, int64_t log_id, int64_t seg_id, int64_t gen, uint64_t bytes,
                       int64_t last, uint64_t *out_bytes, uint8_t *buf)
{
    storage *c = u->cold;
    st_writer *w = NULL;
    int rc = c->ops->seg_create(c, log_id, seg_id, gen, &w);
    if (rc == WP_EEXIST) { /* an earlier attempt's objects: start over at 0 */
        wp__err_clear();
        rc = c->ops->seg_reopen(c, log_id, seg_id, gen, 0, &w);
        if (rc == WP_EINVAL) { /* finalized already: by an earlier attempt */
            uint64_t size = 0;
            wp__err_clear();
            rc = cold_size(u, log_id, seg_id, &size);
            if (rc == WP_OK && (rc = cold_check(u, log_id, seg_id, size, last)) == WP_OK) {
                *out_bytes = size;
                return WP_OK;
            }
            if (rc == WP_ECORRUPT) { /* a bad commit (a stale claimant's): remove it, retry */
                wp__log(u->lg, WP_LOG_WARN, "upload: segment %" PRId64 "/%" PRId64 ": the objects "
                        "there are not a good copy (%s): deleting them", log_id, seg_id,
                        wp_errmsg());
                if ((rc = c->ops->seg_delete(c, log_id, seg_id)) == WP_OK)
                    rc = wp__err(WP_EAGAIN, "segment %" PRId64 "/%" PRId64 ": bad objects "
                                 "deleted, upload again", log_id, seg_id);
            }
            return rc;
        }
        if (rc == WP_OK)
            atomic_fetch_add(&n_takeovers, 1);
    }
    if (rc)
        return rc;
    for (uint64_t off = 0; off < bytes && rc == WP_OK;) {
        size_t want = bytes - off < u->part ? (size_t)(bytes - off) : u->part, got = 0;
        rc = replica_read_bytes(u->rs, log_id, seg_id, off, buf, want, &got);
        if (rc == WP_OK && got != want)
            rc = wp__err(WP_ECORRUPT, "segment %" PRId64 "/%" PRId64 ": copy shorter than %" PRIu64
                         " bytes", log_id, seg_id, bytes);
        if (rc == WP_OK) {
            struct iovec iov = {buf, got};
            rc = c->ops->seg_append(w, &iov, 1);
        }
        off += got;
    }
    c->ops->seg_writer_close(w);
    if (rc == WP_OK)
        rc = c->ops->seg_finalize(c, log_id, seg_id, bytes);
    if (rc == WP_ECORRUPT) { /* finalized meanwhile at another length: by whom? */
        uint64_t size = 0;
        int rc2 = cold_size(u, log_id, seg_id, &size);
        if (rc2 == WP_OK && cold_check(u, log_id, seg_id, size, last) == WP_OK) {
            *out_bytes = size;
            return WP_OK;
        }
        return rc;
    }
    /* Finalized at our length after every append of ours landed: the
     * committed view is our copy (a claimant with a later generation would
     * have fenced our appends; one with an earlier one cannot own the view
     * after our reopen, and no view of our stream but the whole one has
     * our length as an append boundary). No read-back needed. */
    if (rc == WP_OK)
        *out_bytes = bytes;
    return rc;
}

/* Seals the record at `bytes` (CAS); *ours: this call sealed it (not
 * another claimant before it). WP_ENOENT: the segment is gone. */
static int seal(uploader *u, const meta_seg *s, uint64_t bytes, bool *ours)
{
    *ours = false;
    for (int i = 0; i < SEAL_TRIES; i++) {
        meta_seg cur;
        int rc = u->m->ops->seg_get(u->m, s->log_id, s->seg_id, &cur);
        if (rc)
            return rc;
        if (cur.state != WP_SEG_COMPLETED) /* sealed by another claimant, or truncated */
            return WP_OK;
        if (cur.last_entry_id != s->last_entry_id)
            return wp__err(WP_ECORRUPT, "segment %" PRId64 "/%" PRId64 ": record changed its last "
                           "entry from %" PRId64 " to %" PRId64, s->log_id, s->seg_id,
                           s->last_entry_id, cur.last_entry_id);
        cur.state = WP_SEG_SEALED;
        cur.bytes = (int64_t)bytes;
        rc = u->m->ops->seg_update(u->m, &cur);
        *ours = rc == WP_OK;
        if (rc != WP_ECONFLICT)
            return rc;
        wp__err_clear();
    }
    return wp__err(WP_ECONFLICT, "segment %" PRId64 "/%" PRId64 ": the record kept changing",
                   s->log_id, s->seg_id);
}

/* Uploads one COMPLETED segment if this server may: WP_EAGAIN (quietly)
 * if it lags or another server holds the claim. */
static int upload_one(uploader *u, const meta_seg *s0, int64_t *attempt, uint8_t *buf)
{
    /* The record as it is now (the look's may be a second old: another
     * server may have sealed it since, and a claim would then only cost
     * requests). */
    meta_seg cur;
    int rc = u->m->ops->seg_get(u->m, s0->log_id, s0->seg_id, &cur);
    if (rc == WP_ENOENT || (rc == WP_OK && cur.state != WP_SEG_COMPLETED)) {
        wp__err_clear();
        return WP_OK; /* sealed, truncated or deleted meanwhile: nothing to do */
    }
    if (rc)
        return rc;
    const meta_seg *s = &cur;
    replica_state st;
    rc = replica_state_get(u->rs, s->log_id, s->seg_id, &st);
    if (rc)
        return rc;
    if (st.last < s->last_entry_id) /* ARCHITECTURE §7.1: a lagging replica never uploads */
        return WP_EAGAIN;
    if (st.completed && st.last != s->last_entry_id)
        return wp__err(WP_ECORRUPT, "segment %" PRId64 "/%" PRId64 ": this copy was completed at "
                       "entry %" PRId64 ", the record says %" PRId64, s->log_id, s->seg_id,
                       st.last, s->last_entry_id);
    meta_claim c = {.log_id = s->log_id, .seg_id = s->seg_id,
                    .lease_id = __atomic_load_n(u->lease_id, __ATOMIC_RELAXED),
                    .claimed_ms = wp__wall_ms(), .attempt = *attempt + 1};
    snprintf(c.node_id, sizeof c.node_id, "%s", u->cfg->node_id);
    rc = u->m->ops->claim_create(u->m, &c);
    bool adopted = false;
    if (rc == WP_EEXIST) {
        meta_claim other;
        int grc = u->m->ops->claim_get(u->m, s->log_id, s->seg_id, &other);
        if (grc == WP_OK && strcmp(other.node_id, c.node_id) == 0) {
            /* Ours: an attempt of this server that could not delete its
             * claim (metadata unavailable), or of its previous run (same
             * id, same data). Only one thread here uploads a segment at a
             * time, so it is ours to go on with, at its generation. */
            c = other;
            rc = WP_OK;
            adopted = true;
            wp__log(u->lg, WP_LOG_INFO, "upload: segment %" PRId64 "/%" PRId64 ": going on with "
                    "this server's claim %" PRId64, s->log_id, s->seg_id, c.rev);
        } else {
            /* another replica uploads: look again later (takeover) */
            if (grc == WP_OK && other.attempt > *attempt)
                *attempt = other.attempt;
            wp__err_clear();
            return WP_EAGAIN;
        }
    }
    if (rc)
        return rc;
    *attempt = c.attempt;
    if (c.attempt > 1 && !adopted)
        wp__log(u->lg, WP_LOG_INFO, "upload: segment %" PRId64 "/%" PRId64 ": taking over "
                "(attempt %" PRId64 ", claim %" PRId64 ")", s->log_id, s->seg_id, c.attempt, c.rev);
    /* The writer's COMPLETE may not have reached this copy (it holds
     * [0, last] all the same): complete it here, at the record's entry. */
    if (!st.completed)
        rc = replica_complete(u->rs, s->log_id, s->seg_id, st.epoch, s->last_entry_id, &st);
    uint64_t bytes = 0;
    if (rc == WP_OK)
        rc = put_objects(u, s->log_id, s->seg_id, c.rev, st.bytes, s->last_entry_id, &bytes, buf);
    bool compact = false;
    for (int i = 0; rc == WP_OK && !compact && i < COMPACT_ROUNDS; i++) {
        rc = u->cold->ops->seg_compact(u->cold, s->log_id, s->seg_id,
                                       (uint64_t)u->cfg->compaction_max_bytes, &compact);
        if (rc == WP_ENOTSUP) { /* the endpoint cannot commit a compaction: read as is */
            wp__err_clear();
            rc = WP_OK;
            compact = true;
        }
    }
    if (rc == WP_OK) {
        bool ours = false;
        rc = seal(u, s, bytes, &ours);
        if (rc == WP_ENOENT) { /* deleted meanwhile (GC): so are the objects */
            wp__err_clear();
            rc = u->cold->ops->seg_delete(u->cold, s->log_id, s->seg_id);
        } else if (rc == WP_OK && ours) {
            atomic_fetch_add(&n_uploaded, 1);
            atomic_fetch_add(&n_uploaded_bytes, bytes);
            wp__log(u->lg, WP_LOG_INFO, "upload: segment %" PRId64 "/%" PRId64 " sealed: %" PRIu64
                    " bytes, entries 0..%" PRId64, s->log_id, s->seg_id, bytes, s->last_entry_id);
        }
    }
    int keep = rc;
    char why[256];
    snprintf(why, sizeof why, "%s", rc ? wp_errmsg() : "");
    rc = u->m->ops->claim_delete(u->m, s->log_id, s->seg_id, c.rev);
    if (rc == WP_ENOENT || rc == WP_ECONFLICT) /* expired, or taken over: theirs now */
        rc = WP_OK;
    if (keep) {
        wp__err(keep, "%s", why);
        return keep;
    }
    return rc;
}

static void *uploader_main(void *arg)
{
    uploader *u = arg;
    uint8_t *buf = malloc(u->part);
    pthread_mutex_lock(&u->mu);
    while (!u->stop) {
        if (u->q_len == 0) {
            pthread_cond_wait(&u->cond, &u->mu);
            continue;
        }
        int64_t log_id = u->q_log[u->q_head], seg_id = u->q_seg[u->q_head];
        u->q_head = (u->q_head + 1) % u->q_cap;
        u->q_len--;
        tracked *t = find(u->t, u->n_t, log_id, seg_id);
        if (!t)
            continue;
        meta_seg s = t->rec;
        int64_t attempt = t->attempt;
        pthread_mutex_unlock(&u->mu);
        int rc = buf ? upload_one(u, &s, &attempt, buf) : wp__err(WP_ENOMEM, "upload buffer");
        if (rc && rc != WP_EAGAIN) {
            atomic_fetch_add(&n_upload_failures, 1);
            wp__log(u->lg, WP_LOG_WARN, "upload: segment %" PRId64 "/%" PRId64 ": %s (%s); "
                    "trying again later", log_id, seg_id, wp_strerror(rc), wp_errmsg());
        }
        pthread_mutex_lock(&u->mu);
        if ((t = find(u->t, u->n_t, log_id, seg_id)) != NULL) {
            t->busy = false;
            t->attempt = attempt;
            if (rc) {
                int64_t b = rc == WP_EAGAIN ? 0 : t->backoff_ns ? 2 * t->backoff_ns : BACKOFF_MIN_NS;
                t->backoff_ns = b > BACKOFF_MAX_NS ? BACKOFF_MAX_NS : b;
                t->next_try_ns = wp__now_ns() + t->backoff_ns;
            } else {
                t->backoff_ns = 0;
                u->kick = true; /* look again now: it is sealed */
                pthread_cond_broadcast(&u->cond);
            }
        }
    }
    pthread_mutex_unlock(&u->mu);
    free(buf);
    return NULL;
}

/* ---- looking ----------------------------------------------------------------- */

static int queue_push(uploader *u, int64_t log_id, int64_t seg_id)
{
    if (u->q_len == u->q_cap) {
        size_t cap = u->q_cap ? 2 * u->q_cap : 64;
        int64_t *l = malloc(cap * sizeof *l), *s = malloc(cap * sizeof *s);
        if (!l || !s) {
            free(l);
            free(s);
            return WP_ENOMEM;
        }
        for (size_t i = 0; i < u->q_len; i++) {
            l[i] = u->q_log[(u->q_head + i) % u->q_cap];
            s[i] = u->q_seg[(u->q_head + i) % u->q_cap];
        }
        free(u->q_log);
        free(u->q_seg);
        u->q_log = l;
        u->q_seg = s;
        u->q_head = 0;
        u->q_cap = cap;
    }
    size_t at = (u->q_head + u->q_len) % u->q_cap;
    u->q_log[at] = log_id;
    u->q_seg[at] = seg_id;
    u->q_len++;
    return WP_OK;
}

static const meta_seg *rec_find(const meta_seg *segs, size_t n, int64_t seg_id)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (segs[mid].seg_id < seg_id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n && segs[lo].seg_id == seg_id ? &segs[lo] : NULL;
}

/* One look at every copy held. */
static int look(uploader *u)
{
    int64_t start = wp__now_ns();
    replica_id *ids = NULL;
    size_t n = 0;
    int rc = replica_list(u->rs, &ids, &n);
    if (rc)
        return rc;
    tracked *nt = calloc(n ? n : 1, sizeof *nt);
    if (!nt) {
        free(ids);
        return wp__err(WP_ENOMEM, "upload: table of %zu copies", n);
    }
    /* The records, one seg_list per log (ids are sorted by log). */
    meta_seg *segs = NULL;
    size_t n_segs = 0;
    int64_t segs_log = -1;
    bool segs_ok = false;
    for (size_t i = 0; i < n; i++) {
        tracked *t = &nt[i];
        t->log_id = ids[i].log_id;
        t->seg_id = ids[i].seg_id;
        t->state = -2; /* unknown: the metadata did not answer */
        if (ids[i].log_id != segs_log) {
            free(segs);
            segs = NULL;
            n_segs = 0;
            segs_log = ids[i].log_id;
            int r = u->m->ops->seg_list(u->m, segs_log, &segs, &n_segs);
            segs_ok = r == WP_OK || r == WP_ENOENT;
            if (r == WP_ENOENT)
                n_segs = 0;
            if (!segs_ok && rc == WP_OK)
                rc = r;
        }
        if (!segs_ok)
            continue;
        const meta_seg *s = rec_find(segs, n_segs, t->seg_id);
        if (s) {
            t->state = s->state;
            t->rec = *s;
            replica_state st;
            if (s->state == WP_SEG_COMPLETED &&
                replica_state_get(u->rs, t->log_id, t->seg_id, &st) == WP_OK && st.completed)
                t->rec.bytes = (int64_t)st.bytes; /* what this copy would upload */
            wp__err_clear();
        } else {
            /* No record. If the log has others, GC deleted this one and its
             * DELETE missed us. If it has none, the log is gone, or this is
             * not the metadata the copies were written under: keep them. */
            t->state = n_segs > 0 ? -1 : -3;
        }
    }
    free(segs);
    free(ids);

    int64_t now = wp__now_ns(), now_ms = wp__wall_ms();
    int64_t grace = u->cfg->node_drop_grace_ms * 1000000LL;
    upload_view v = {.held = (int64_t)n, .looked = true};
    bool unsealed = rc != WP_OK;
    replica_id *drop = calloc(n ? n : 1, sizeof *drop);
    size_t n_drop = 0;
    pthread_mutex_lock(&u->mu);
    for (size_t i = 0; i < n; i++) {
        tracked *t = &nt[i];
        const tracked *old = find(u->t, u->n_t, t->log_id, t->seg_id);
        if (old) {
            t->next_try_ns = old->next_try_ns;
            t->backoff_ns = old->backoff_ns;
            t->attempt = old->attempt;
            t->busy = old->busy;
            if (old->state == t->state)
                t->seen_ns = old->seen_ns;
        }
        switch (t->state) {
        case -2: /* unknown */
            if (old) {
                t->state = old->state;
                t->rec = old->rec;
            }
            unsealed = true;
            break;
        case -3: /* the log has no records: kept, but it holds no drain up */
            break;
        case -1: /* orphan */
        case WP_SEG_SEALED:
            if (!t->seen_ns)
                t->seen_ns = now;
            if (now - t->seen_ns >= grace && !t->busy && drop)
                drop[n_drop++] = (replica_id){t->log_id, t->seg_id};
            break;
        case WP_SEG_ACTIVE:
            v.active++;
            unsealed = true;
            break;
        case WP_SEG_COMPLETED: {
            unsealed = true;
            v.waiting++;
            v.waiting_bytes += t->rec.bytes;
            int64_t age = t->rec.completed_ms > 0 ? now_ms - t->rec.completed_ms : 0;
            if (age > v.lag_ms)
                v.lag_ms = age;
            if (u->cold && !t->busy && now >= t->next_try_ns &&
                age >= u->cfg->node_upload_delay_ms && queue_push(u, t->log_id, t->seg_id) == 0) {
                t->busy = true;
                pthread_cond_broadcast(&u->cond);
            }
            break;
        }
        default: /* TRUNCATED: GC deletes it; nothing to upload */
            break;
        }
    }
    free(u->t);
    u->t = nt;
    u->n_t = n;
    u->view = v;
    u->unsealed_none = !unsealed;
    u->look_start_ns = start;
    pthread_mutex_unlock(&u->mu);
    for (size_t i = 0; i < n_drop; i++) {
        int r = replica_delete(u->rs, drop[i].log_id, drop[i].seg_id);
        if (r)
            wp__log(u->lg, WP_LOG_WARN, "upload: dropping copy %" PRId64 "/%" PRId64 ": %s (%s)",
                    drop[i].log_id, drop[i].seg_id, wp_strerror(r), wp_errmsg());
        else {
            atomic_fetch_add(&n_dropped, 1);
            wp__log(u->lg, WP_LOG_INFO, "upload: dropped copy %" PRId64 "/%" PRId64
                    " (in object storage, or deleted)", drop[i].log_id, drop[i].seg_id);
        }
    }
    free(drop);
    return rc;
}

static void *looker_main(void *arg)
{
    uploader *u = arg;
    pthread_mutex_lock(&u->mu);
    while (!u->stop) {
        pthread_mutex_unlock(&u->mu);
        int rc = look(u);
        if (rc)
            wp__log(u->lg, WP_LOG_WARN, "upload: looking at the copies held: %s (%s)",
                    wp_strerror(rc), wp_errmsg());
        pthread_mutex_lock(&u->mu);
        int64_t due = wp__now_ns() + u->cfg->node_upload_interval_ms * 1000000LL;
        struct timespec ts = {due / 1000000000LL, due % 1000000000LL};
        while (!u->stop && !u->kick && pthread_cond_timedwait(&u->cond, &u->mu, &ts) == 0)
            ;
        u->kick = false;
    }
    pthread_mutex_unlock(&u->mu);
    return NULL;
}

/* ---- the rest ---------------------------------------------------------------- */

bool uploader_uploads(const uploader *u) { return u->cold != NULL; }

void uploader_view(uploader *u, upload_view *out)
{
    pthread_mutex_lock(&u->mu);
    *out = u->view;
    pthread_mutex_unlock(&u->mu);
}

void uploader_kick(uploader *u)
{
    pthread_mutex_lock(&u->mu);
    u->kick = true;
    pthread_cond_broadcast(&u->cond);
    pthread_mutex_unlock(&u->mu);
}

bool uploader_holds_nothing_unsealed(uploader *u, int64_t since_ns)
{
    pthread_mutex_lock(&u->mu);
    bool r = u->view.looked && u->unsealed_none && u->look_start_ns >= since_ns;
    pthread_mutex_unlock(&u->mu);
    return r;
}

void uploader_stop(uploader *u)
{
    if (!u)
        return;
    pthread_mutex_lock(&u->mu);
    u->stop = true;
    pthread_cond_broadcast(&u->cond);
    pthread_mutex_unlock(&u->mu);
    if (u->looker_started)
        pthread_join(u->looker, NULL);
    for (int i = 0; i < u->n_uploaders; i++)
        pthread_join(u->uploaders[i], NULL);
    free(u->uploaders);
    if (u->cold)
        u->cold->ops->close(u->cold);
    free(u->t);
    free(u->q_log);
    free(u->q_seg);
    pthread_mutex_destroy(&u->mu);
    pthread_cond_destroy(&u->cond);
    free(u);
}

int uploader_start(const wp_config *cfg, const wp__logger *lg, replica *rs, meta *m,
                   const int64_t *lease_id, uploader **out)
{
    uploader *u = calloc(1, sizeof *u);
    if (!u)
        return wp__err(WP_ENOMEM, "uploader");
    u->cfg = cfg;
    u->lg = lg;
    u->rs = rs;
    u->m = m;
    u->lease_id = lease_id;
    u->part = cfg->compaction_max_bytes > PART_MAX ? PART_MAX : (size_t)cfg->compaction_max_bytes;
    pthread_mutex_init(&u->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&u->cond, &ca);
    pthread_condattr_destroy(&ca);
    int rc = WP_OK;
    if (cfg->s3_bucket[0])
        rc = storage_s3_open(cfg, lg, &u->cold);
    int n = u->cold ? (int)cfg->node_upload_threads : 0;
    if (rc == WP_OK && n > 0 && !(u->uploaders = calloc((size_t)n, sizeof *u->uploaders)))
        rc = wp__err(WP_ENOMEM, "upload threads");
    for (int i = 0; rc == WP_OK && i < n; i++) {
        if (pthread_create(&u->uploaders[i], NULL, uploader_main, u) != 0)
            rc = wp__err(WP_ENOMEM, "cannot start upload thread %d", i);
        else
            u->n_uploaders++;
    }
    if (rc == WP_OK) {
        if (pthread_create(&u->looker, NULL, looker_main, u) != 0)
            rc = wp__err(WP_ENOMEM, "cannot start the upload looker thread");
        else
            u->looker_started = true;
    }
    if (rc) {
        uploader_stop(u);
        return rc;
    }
    *out = u;
    return WP_OK;
}
