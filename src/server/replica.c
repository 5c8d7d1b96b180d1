/* replica.c — a LogStore server's segment copies; see replica.h.
 *
 * Each segment lives in the local storage backend under <dir>/segments
 * (docs/format.md §9) and is written through the logstore layer, so a
 * replica's copy is byte for byte a local-mode segment: the same recovery
 * (lseg_reopen cuts a torn tail), the same fence file (owner epoch,
 * synced), the same footer when completed. In memory each loaded segment
 * has its writer handle (at the epoch of the last ADD) and its state. */
#include "server/replica.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

#include "base/limits.h"
#include "codec/codec.h"
#include "logstore/segment.h"
#include "os/os.h"
#include "storage/storage.h"

#define BUCKETS 4096

typedef struct rseg {
    struct rseg *next;
    int64_t log_id, seg_id;
    int refs;            /* under rs->mu */
    bool unlinked;       /* removed from the map (deleted) */
    pthread_mutex_t mu;  /* everything below */
    bool loaded, exists;
    bool deleted;        /* a tombstone: refused (WP_EFENCED) or missing (WP_ENOENT) */
    int failed;          /* a write or sync failed: WP_EIO for good (fsyncgate) */
    lseg_w *w;           /* open for appends at w_epoch; NULL none */
    int64_t w_epoch;
    uint64_t bytes;      /* of a completed copy */
    replica_state st;
} rseg;

struct replica {
    storage *st;
    const wp__logger *lg;
    char dir[WP_PATH_MAX];
    char tomb_dir[WP_PATH_MAX];
    pthread_mutex_t mu; /* the map, refs, n_held */
    rseg *map[BUCKETS];
    uint64_t n_held; /* copies on disk */
};

static size_t bucket(int64_t log_id, int64_t seg_id)
{
    uint64_t h = (uint64_t)log_id * 0x9E3779B97F4A7C15ULL ^ (uint64_t)seg_id * 0xC2B2AE3D27D4EB4FULL;
    return (size_t)(h >> 32) % BUCKETS;
}

static int count_held(replica *rs, const char *sdir);

int replica_open(const char *dir, const wp__logger *lg, replica **out)
{
    replica *rs = calloc(1, sizeof *rs);
    if (!rs)
        return wp__err(WP_ENOMEM, "replica");
    int n = snprintf(rs->dir, sizeof rs->dir, "%s", dir);
    char sdir[WP_PATH_MAX];
    int m = snprintf(sdir, sizeof sdir, "%s/segments", dir);
    if (n < 0 || (size_t)n >= sizeof rs->dir || m < 0 || (size_t)m >= sizeof sdir) {
        free(rs);
        return wp__err(WP_EINVAL, "replica: data directory path too long");
    }
    int t = snprintf(rs->tomb_dir, sizeof rs->tomb_dir, "%s/tombstones", dir);
    int rc = t < 0 || (size_t)t >= sizeof rs->tomb_dir
                 ? wp__err(WP_EINVAL, "replica: data directory path too long")
                 : os_mkdir_p(rs->tomb_dir);
    if (rc == WP_OK)
        rc = storage_local_open(sdir, lg, &rs->st);
    if (rc == WP_OK && (rc = count_held(rs, sdir)) != WP_OK)
        rs->st->ops->close(rs->st);
    if (rc) {
        free(rs);
        return rc;
    }
    rs->lg = lg;
    pthread_mutex_init(&rs->mu, NULL);
    *out = rs;
    return WP_OK;
}

static void rseg_free(rseg *g)
{
    lseg_close(g->w);
    pthread_mutex_destroy(&g->mu);
    free(g);
}

void replica_close(replica *rs)
{
    if (!rs)
        return;
    for (size_t i = 0; i < BUCKETS; i++)
        while (rs->map[i]) {
            rseg *g = rs->map[i];
            rs->map[i] = g->next;
            rseg_free(g);
        }
    rs->st->ops->close(rs->st);
    pthread_mutex_destroy(&rs->mu);
    free(rs);
}

/* After a failed write or sync the copy is failed for good (fsyncgate). */
static int fail_copy(replica *rs, rseg *g, int rc)
{
    if (rc == WP_EIO || rc == WP_ENOSPC || rc == WP_ECLOSED) {
        g->failed = WP_EIO;
        wp__log(rs->lg, WP_LOG_ERROR, "replica: segment %" PRId64 "/%" PRId64 ": %s (%s): the "
                "copy is failed for good", g->log_id, g->seg_id, wp_strerror(rc), wp_errmsg());
    }
    return rc;
}

/* Tombstones (docs/protocol.md §5.7): <dir>/tombstones/L<log> for a log,
 * S<log>.<seg> for a segment; empty files, synced into their directory. */
static void tomb_path(const replica *rs, int64_t log_id, int64_t seg_id, char *out, size_t cap)
{
    if (seg_id < 0)
        snprintf(out, cap, "%s/L%" PRId64, rs->tomb_dir, log_id);
    else
        snprintf(out, cap, "%s/S%" PRId64 ".%" PRId64, rs->tomb_dir, log_id, seg_id);
}

static bool tomb_exists(const replica *rs, int64_t log_id, int64_t seg_id)
{
    char p[WP_PATH_MAX + 64];
    struct stat st;
    tomb_path(rs, log_id, -1, p, sizeof p);
    if (stat(p, &st) == 0)
        return true;
    tomb_path(rs, log_id, seg_id, p, sizeof p);
    return stat(p, &st) == 0;
}

static int tomb_put(replica *rs, int64_t log_id, int64_t seg_id)
{
    char p[WP_PATH_MAX + 64];
    tomb_path(rs, log_id, seg_id, p, sizeof p);
    int fd = os_sys.open(p, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return wp__err_sys(errno, "open", p);
    os_sys.close(fd);
    return os_fsync_path(rs->tomb_dir);
}

/* Copies on disk, counted once at open (STATS). */
static int count_held(replica *rs, const char *sdir)
{
    char **names;
    size_t n;
    int rc = os_list_dir(sdir, &names, &n);
    if (rc)
        return rc;
    for (size_t i = 0; i < n && !rc; i++) {
        char *end;
        long long id = strtoll(names[i], &end, 10);
        if (*end || id < 0)
            continue;
        int64_t *ids;
        size_t k;
        if ((rc = rs->st->ops->seg_list(rs->st, id, &ids, &k)) == WP_OK) {
            rs->n_held += k;
            free(ids);
        }
    }
    os_free_names(names, n);
    return rc;
}

/* The segment's entry, created if missing; with a reference. */
static rseg *rseg_get(replica *rs, int64_t log_id, int64_t seg_id)
{
    size_t b = bucket(log_id, seg_id);
    pthread_mutex_lock(&rs->mu);
    rseg *g = rs->map[b];
    while (g && (g->log_id != log_id || g->seg_id != seg_id))
        g = g->next;
    if (!g && (g = calloc(1, sizeof *g)) != NULL) {
        g->log_id = log_id;
        g->seg_id = seg_id;
        pthread_mutex_init(&g->mu, NULL);
        g->st = (replica_state){.last = -1, .lac = -1, .epoch = -1};
        g->next = rs->map[b];
        rs->map[b] = g;
    }
    if (g)
        g->refs++;
    pthread_mutex_unlock(&rs->mu);
    return g;
}

static void rseg_put(replica *rs, rseg *g)
{
    pthread_mutex_lock(&rs->mu);
    bool last = --g->refs == 0 && g->unlinked;
    pthread_mutex_unlock(&rs->mu);
    if (last)
        rseg_free(g);
}

/* Loads a segment's state from disk on first use (under g->mu): a copy
 * that exists is reopened at its owner's epoch (cutting a torn tail), or
 * found completed. */
static int rseg_load(replica *rs, rseg *g)
{
    if (g->loaded)
        return WP_OK;
    if (tomb_exists(rs, g->log_id, g->seg_id)) {
        g->loaded = g->deleted = true;
        g->st.epoch = INT64_MAX; /* a late writer is refused */
        return WP_OK;
    }
    int64_t owner = -1, last = -1;
    uint64_t bytes = 0;
    int rc = storage_local_owner(rs->st, g->log_id, g->seg_id, &owner);
    if (rc)
        return rc;
    st_reader *r = NULL;
    rc = rs->st->ops->seg_open_read(rs->st, g->log_id, g->seg_id, &r);
    if (rc == WP_ENOENT) {
        wp__err_clear();
        g->loaded = true;
        g->st.epoch = owner;
        return WP_OK;
    }
    if (rc)
        return rc;
    rs->st->ops->seg_reader_close(r);
    if (owner < 0)
        return wp__err(WP_ECORRUPT, "replica: segment %" PRId64 "/%" PRId64 " has no owner epoch",
                       g->log_id, g->seg_id);
    rc = lseg_reopen(rs->st, g->log_id, g->seg_id, owner, INT64_MAX, rs->lg, &g->w, &last, &bytes);
    if (rc)
        return rc;
    g->exists = g->loaded = true;
    g->w_epoch = owner;
    g->st.epoch = owner;
    g->st.last = last;
    g->st.completed = g->w == NULL;
    g->bytes = bytes;
    return WP_OK;
}

/* Takes the segment for an operation: loaded, locked, referenced. */
static int rseg_take(replica *rs, int64_t log_id, int64_t seg_id, rseg **out)
{
    if (log_id < 0 || seg_id < 0)
        return wp__err(WP_EINVAL, "replica: negative id (log %" PRId64 ", segment %" PRId64 ")",
                       log_id, seg_id);
    rseg *g = rseg_get(rs, log_id, seg_id);
    if (!g)
        return wp__err(WP_ENOMEM, "replica: segment entry");
    pthread_mutex_lock(&g->mu);
    int rc = rseg_load(rs, g);
    if (rc == WP_OK && g->failed)
        rc = wp__err(WP_EIO, "replica: segment %" PRId64 "/%" PRId64 ": a write or sync failed "
                     "earlier", log_id, seg_id);
    if (rc) {
        pthread_mutex_unlock(&g->mu);
        rseg_put(rs, g);
        return rc;
    }
    *out = g;
    return WP_OK;
}

static void rseg_release(replica *rs, rseg *g, replica_state *out)
{
    g->st.deleted = g->deleted;
    g->st.bytes = g->st.completed ? g->bytes : 0;
    if (out)
        *out = g->st;
    pthread_mutex_unlock(&g->mu);
    rseg_put(rs, g);
}

static int refuse_epoch(const rseg *g, int64_t epoch, const char *what)
{
    if (g->deleted)
        return wp__err(WP_EFENCED, "replica: segment %" PRId64 "/%" PRId64 " was deleted, %s "
                       "refused", g->log_id, g->seg_id, what);
    return wp__err(WP_EFENCED, "replica: segment %" PRId64 "/%" PRId64 " is fenced at epoch %" PRId64
                   ", %s of epoch %" PRId64 " refused", g->log_id, g->seg_id, g->st.epoch, what,
                   epoch);
}

/* A writer handle at `epoch` (creating the segment if missing). */
static int writer_at(replica *rs, rseg *g, int64_t epoch)
{
    if (g->w && g->w_epoch == epoch)
        return WP_OK;
    lseg_close(g->w);
    g->w = NULL;
    int64_t last = -1;
    uint64_t bytes = 0;
    int rc;
    if (!g->exists) {
        rc = lseg_create(rs->st, g->log_id, g->seg_id, epoch, &g->w);
        g->exists = rc == WP_OK;
        if (g->exists) {
            pthread_mutex_lock(&rs->mu);
            rs->n_held++;
            pthread_mutex_unlock(&rs->mu);
        }
    } else {
        rc = lseg_reopen(rs->st, g->log_id, g->seg_id, epoch, INT64_MAX, rs->lg, &g->w, &last,
                         &bytes);
        if (rc == WP_OK && !g->w)
            rc = wp__err(WP_ECLOSED, "replica: segment %" PRId64 "/%" PRId64 " is completed",
                         g->log_id, g->seg_id);
        if (rc == WP_OK && last != g->st.last)
            rc = wp__err(WP_ECORRUPT, "replica: segment %" PRId64 "/%" PRId64 " holds up to %"
                         PRId64 " on disk, %" PRId64 " in memory", g->log_id, g->seg_id, last,
                         g->st.last);
    }
    if (rc)
        return rc;
    g->w_epoch = epoch;
    g->st.epoch = epoch;
    return WP_OK;
}

/* Offset in records of the k-th record (k <= n), after checking them. */
static int records_skip(const uint8_t *records, size_t len, uint32_t k, size_t *off)
{
    size_t o = 0;
    for (uint32_t i = 0; i < k; i++) {
        rec_view v;
        size_t used;
        int rc = rec_decode(records + o, len - o, &v, &used);
        if (rc)
            return wp__err(WP_ECORRUPT, "replica: record %" PRIu32 " of an ADD: %s", i, wp_errmsg());
        o += used;
    }
    *off = o;
    return WP_OK;
}

/* Appends the records as one block (checked first), durably. */
static int write_block(replica *rs, rseg *g, int64_t first, uint32_t n, const uint8_t *records,
                       size_t len)
{
    if (len > WP_BLOCK_BYTES_MAX - BLK_HEADER_SIZE)
        return wp__err(WP_ETOOBIG, "replica: an ADD of %zu bytes", len);
    uint8_t *buf = malloc(BLK_HEADER_SIZE + len);
    if (!buf)
        return wp__err(WP_ENOMEM, "replica: block of %zu bytes", len);
    memcpy(buf + BLK_HEADER_SIZE, records, len);
    blk_header h = {.first_entry_id = first, .n_entries = n, .records_len = (uint32_t)len,
                    .records_crc = crc32c(0, records, len)};
    int rc = blk_check_records(&h, buf + BLK_HEADER_SIZE);
    if (rc) {
        free(buf);
        return wp__err(WP_ECORRUPT, "replica: ADD records: %s", wp_errmsg());
    }
    lseg_block b = {.buf = buf, .len = BLK_HEADER_SIZE + len, .first_entry_id = first,
                    .n_entries = n};
    lseg_block *bp = &b;
    rc = lseg_write(g->w, &bp, 1);
    free(buf);
    if (rc) { /* the handle is failed for good: the next ADD reopens (or none comes) */
        lseg_close(g->w);
        g->w = NULL;
    }
    if (rc == WP_EFENCED || rc == WP_EINVAL)
        return rc;
    return rc ? fail_copy(rs, g, rc) : WP_OK;
}

int replica_add(replica *rs, int64_t log_id, int64_t seg_id, int64_t epoch, int64_t first,
                uint32_t n, const uint8_t *records, size_t len, int64_t lac, replica_state *out)
{
    if (n > WP_BLOCK_ENTRIES_MAX || first < 0 || (n > 0 && !records))
        return wp__err(WP_EINVAL, "replica: ADD of %" PRIu32 " entries from %" PRId64, n, first);
    rseg *g;
    int rc = rseg_take(rs, log_id, seg_id, &g);
    if (rc)
        return rc;
    if (epoch < g->st.epoch)
        rc = refuse_epoch(g, epoch, "an ADD");
    else if (g->st.completed)
        rc = wp__err(WP_ECLOSED, "replica: segment %" PRId64 "/%" PRId64 " is completed", log_id,
                     seg_id);
    else if (n == 0) /* LAC-only: nothing to write (a lost LAC only makes recovery read more) */
        ;
    else if (first > g->st.last + 1)
        rc = wp__err(WP_EAGAIN, "replica: segment %" PRId64 "/%" PRId64 ": ADD from %" PRId64
                     ", this replica holds up to %" PRId64, log_id, seg_id, first, g->st.last);
    if (rc == WP_OK && n > 0 && first + (int64_t)n - 1 > g->st.last) {
        uint32_t skip = (uint32_t)(g->st.last + 1 - first); /* a resend: held already */
        size_t off = 0;
        rc = records_skip(records, len, skip, &off);
        if (rc == WP_OK)
            rc = writer_at(rs, g, epoch);
        if (rc == WP_OK)
            rc = write_block(rs, g, first + skip, n - skip, records + off, len - off);
        if (rc == WP_OK)
            g->st.last = first + (int64_t)n - 1;
    }
    if (rc == WP_OK && lac > g->st.lac)
        g->st.lac = lac;
    rseg_release(rs, g, out);
    return rc;
}

int replica_fence(replica *rs, int64_t log_id, int64_t seg_id, int64_t epoch, replica_state *out)
{
    rseg *g;
    int rc = rseg_take(rs, log_id, seg_id, &g);
    if (rc)
        return rc;
    if (epoch < g->st.epoch) {
        rc = refuse_epoch(g, epoch, "a FENCE");
    } else if (!g->exists) { /* created empty and owned: a stale writer cannot create it */
        rc = writer_at(rs, g, epoch);
    } else {
        if (g->w && g->w_epoch < epoch) {
            lseg_close(g->w);
            g->w = NULL;
        }
        rc = rs->st->ops->seg_fence(rs->st, log_id, seg_id, epoch); /* synced */
        if (rc == WP_OK)
            g->st.epoch = epoch;
    }
    rseg_release(rs, g, out);
    return rc;
}

int replica_state_get(replica *rs, int64_t log_id, int64_t seg_id, replica_state *out)
{
    rseg *g;
    int rc = rseg_take(rs, log_id, seg_id, &g);
    if (rc)
        return rc;
    if (!g->exists)
        rc = wp__err(WP_ENOENT, "replica: no segment %" PRId64 "/%" PRId64, log_id, seg_id);
    rseg_release(rs, g, out);
    return rc;
}

static int batch_add(replica_batch *b, size_t max_bytes, const lseg_entry *e)
{
    if (b->len + e->raw_len > b->cap) {
        /* max_bytes at once (the READs of a reader ask for the same), or
         * what one large entry needs */
        size_t c = b->cap > max_bytes ? b->cap : max_bytes;
        if (c < b->len + e->raw_len)
            c = b->len + e->raw_len;
        uint8_t *nb = realloc(b->buf, c);
        if (!nb)
            return wp__err(WP_ENOMEM, "replica: read buffer of %zu bytes", c);
        b->buf = nb;
        b->cap = c;
    }
    memcpy(b->buf + b->len, e->raw, e->raw_len);
    b->len += e->raw_len;
    if (b->n++ == 0)
        b->first = e->entry_id;
    return WP_OK;
}

static int read_entries(replica *rs, rseg *g, int64_t from, int64_t upto, size_t max_bytes,
                        replica_batch *out)
{
    lseg_r *r = NULL;
    int rc = lseg_open_read(rs->st, g->log_id, g->seg_id, g->st.completed, g->bytes, &r);
    if (rc)
        return rc;
    lseg_seek(r, from);
    lseg_entry e;
    while ((rc = lseg_next(r, upto, &e)) == WP_OK) {
        if (out->n > 0 && out->len + e.raw_len > max_bytes)
            break;
        if ((rc = batch_add(out, max_bytes, &e)))
            break;
        if (e.entry_id >= upto || out->len >= max_bytes)
            break;
    }
    lseg_close_read(r);
    if (rc == WP_EAGAIN)
        rc = WP_OK;
    return rc;
}

int replica_read(replica *rs, int64_t log_id, int64_t seg_id, int64_t from, int64_t upto,
                 size_t max_bytes, replica_batch *out, replica_state *st)
{
    out->len = 0;
    out->first = from;
    out->n = 0;
    rseg *g;
    int rc = rseg_take(rs, log_id, seg_id, &g);
    if (rc)
        return rc;
    if (!g->exists)
        rc = wp__err(WP_ENOENT, "replica: no segment %" PRId64 "/%" PRId64, log_id, seg_id);
    if (upto > g->st.last)
        upto = g->st.last;
    if (rc == WP_OK && from >= 0 && from <= upto)
        rc = read_entries(rs, g, from, upto, max_bytes, out);
    rseg_release(rs, g, st);
    if (rc) { /* the buffer stays the caller's */
        out->len = 0;
        out->n = 0;
    }
    return rc;
}

int replica_complete(replica *rs, int64_t log_id, int64_t seg_id, int64_t epoch, int64_t last,
                     replica_state *out)
{
    rseg *g;
    int rc = rseg_take(rs, log_id, seg_id, &g);
    if (rc)
        return rc;
    int64_t got = -1;
    uint64_t bytes = 0;
    if (epoch < g->st.epoch)
        rc = refuse_epoch(g, epoch, "a COMPLETE");
    else if (g->st.completed && g->st.last != last)
        rc = wp__err(WP_ECONFLICT, "replica: segment %" PRId64 "/%" PRId64 " was completed at %"
                     PRId64 ", not %" PRId64, log_id, seg_id, g->st.last, last);
    else if (!g->st.completed && (last < -1 || g->st.last < last))
        rc = wp__err(WP_ENOENT, "replica: segment %" PRId64 "/%" PRId64 ": holds up to %" PRId64
                     ", cannot complete at %" PRId64, log_id, seg_id, g->st.last, last);
    if (rc == WP_OK && !g->st.completed) {
        lseg_close(g->w);
        g->w = NULL;
        rc = lseg_recover_at(rs->st, log_id, seg_id, epoch, last, rs->lg, &got, &bytes);
        if (rc == WP_OK && got != last)
            rc = wp__err(WP_ECORRUPT, "replica: segment %" PRId64 "/%" PRId64 " completed at %"
                         PRId64 ", not %" PRId64, log_id, seg_id, got, last);
        if (rc == WP_OK) {
            g->exists = g->st.completed = true;
            g->st.last = last;
            g->st.epoch = epoch;
            g->bytes = bytes;
        } else if (rc != WP_EFENCED && rc != WP_ECORRUPT) {
            fail_copy(rs, g, rc);
        }
    }
    rseg_release(rs, g, out);
    return rc;
}

/* Unlinks every loaded entry of the log (seg_id < 0: all of it) from the
 * map, closing their writers. */
static void unlink_loaded(replica *rs, int64_t log_id, int64_t seg_id)
{
    rseg *gone = NULL;
    pthread_mutex_lock(&rs->mu);
    for (size_t b = 0; b < BUCKETS; b++)
        for (rseg **pp = &rs->map[b]; *pp;) {
            rseg *g = *pp;
            if (g->log_id == log_id && (seg_id < 0 || g->seg_id == seg_id)) {
                *pp = g->next;
                g->unlinked = true;
                g->refs++;
                g->next = gone;
                gone = g;
            } else {
                pp = &g->next;
            }
        }
    pthread_mutex_unlock(&rs->mu);
    while (gone) {
        rseg *g = gone;
        gone = g->next;
        pthread_mutex_lock(&g->mu);
        lseg_close(g->w);
        g->w = NULL;
        pthread_mutex_unlock(&g->mu);
        rseg_put(rs, g);
    }
}

int replica_delete(replica *rs, int64_t log_id, int64_t seg_id)
{
    if (log_id < 0)
        return wp__err(WP_EINVAL, "replica: negative log id");
    /* The tombstone first: from then on a late ADD is refused, whatever
     * happens to the deletion. */
    int rc = tomb_put(rs, log_id, seg_id);
    if (rc)
        return rc;
    unlink_loaded(rs, log_id, seg_id);
    int64_t *ids = NULL;
    size_t k = 0;
    if (seg_id < 0)
        rc = rs->st->ops->seg_list(rs->st, log_id, &ids, &k);
    else {
        st_reader *r = NULL;
        k = rs->st->ops->seg_open_read(rs->st, log_id, seg_id, &r) == WP_OK;
        if (r)
            rs->st->ops->seg_reader_close(r);
        wp__err_clear();
    }
    free(ids);
    if (rc == WP_OK)
        rc = seg_id < 0 ? rs->st->ops->log_delete(rs->st, log_id)
                        : rs->st->ops->seg_delete(rs->st, log_id, seg_id);
    if (rc == WP_OK) {
        pthread_mutex_lock(&rs->mu);
        rs->n_held -= k < rs->n_held ? k : rs->n_held;
        pthread_mutex_unlock(&rs->mu);
    }
    return rc;
}

static int id_cmp(const void *pa, const void *pb)
{
    const replica_id *a = pa, *b = pb;
    if (a->log_id != b->log_id)
        return a->log_id < b->log_id ? -1 : 1;
    return a->seg_id < b->seg_id ? -1 : a->seg_id > b->seg_id;
}

int replica_list(replica *rs, replica_id **out, size_t *n_out)
{
    *out = NULL;
    *n_out = 0;
    char sdir[WP_PATH_MAX + 16];
    snprintf(sdir, sizeof sdir, "%s/segments", rs->dir);
    char **names;
    size_t n;
    int rc = os_list_dir(sdir, &names, &n);
    if (rc)
        return rc;
    replica_id *v = NULL;
    size_t k = 0, cap = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        char *end;
        long long id = strtoll(names[i], &end, 10);
        if (*end || id < 0 || end == names[i])
            continue;
        int64_t *ids;
        size_t m;
        if ((rc = rs->st->ops->seg_list(rs->st, id, &ids, &m)) != WP_OK)
            break;
        for (size_t j = 0; j < m && !rc; j++) {
            if (tomb_exists(rs, id, ids[j]))
                continue;
            if (k == cap) {
                size_t c = cap ? 2 * cap : 64;
                replica_id *nv = realloc(v, c * sizeof *nv);
                if (!nv) {
                    rc = wp__err(WP_ENOMEM, "replica: list of %zu copies", c);
                    break;
                }
                v = nv;
                cap = c;
            }
            v[k++] = (replica_id){.log_id = id, .seg_id = ids[j]};
        }
        free(ids);
    }
    os_free_names(names, n);
    if (rc) {
        free(v);
        return rc;
    }
    if (k)
        qsort(v, k, sizeof *v, id_cmp);
    *out = v;
    *n_out = k;
    return WP_OK;
}

int replica_read_bytes(replica *rs, int64_t log_id, int64_t seg_id, uint64_t off, void *buf,
                       size_t len, size_t *got)
{
    *got = 0;
    rseg *g;
    int rc = rseg_take(rs, log_id, seg_id, &g);
    if (rc)
        return rc;
    if (!g->exists || g->deleted)
        rc = wp__err(WP_ENOENT, "replica: no segment %" PRId64 "/%" PRId64, log_id, seg_id);
    else if (!g->st.completed)
        rc = wp__err(WP_EINVAL, "replica: segment %" PRId64 "/%" PRId64 " is not completed",
                     log_id, seg_id);
    uint64_t size = g->bytes;
    rseg_release(rs, g, NULL);
    if (rc)
        return rc;
    if (off >= size)
        return WP_OK;
    if (len > size - off)
        len = (size_t)(size - off);
    /* A completed copy no longer changes: read it without the lock (a
     * deletion meanwhile makes this fail, never read other bytes). */
    st_reader *r = NULL;
    if ((rc = rs->st->ops->seg_open_read(rs->st, log_id, seg_id, &r)))
        return rc;
    size_t done = 0;
    while (done < len && rc == WP_OK) {
        size_t n = 0;
        rc = rs->st->ops->seg_read(r, off + done, (uint8_t *)buf + done, len - done, &n);
        if (rc == WP_OK && n == 0)
            rc = wp__err(WP_ECORRUPT, "replica: segment %" PRId64 "/%" PRId64 " is shorter than "
                         "its %" PRIu64 " bytes", log_id, seg_id, size);
        done += n;
    }
    rs->st->ops->seg_reader_close(r);
    *got = done;
    return rc;
}

int replica_stats_get(replica *rs, replica_stats *out)
{
    struct statvfs v;
    if (statvfs(rs->dir, &v) != 0)
        return wp__err_sys(errno, "statvfs", rs->dir);
    pthread_mutex_lock(&rs->mu);
    *out = (replica_stats){.disk_free = (uint64_t)v.f_bavail * v.f_frsize,
                           .disk_total = (uint64_t)v.f_blocks * v.f_frsize,
                           .segments = rs->n_held};
    pthread_mutex_unlock(&rs->mu);
    return WP_OK;
}
