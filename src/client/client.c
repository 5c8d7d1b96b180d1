/* client.c — the client: backends, log handles, tail notification state,
 * truncation, reader registrations, and the background threads (GC of
 * truncated segments; the reader lease keepalive on its own). */
#include <inttypes.h>
#include <stdio.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/metrics.h"
#include "client/internal.h"
#include "logstore/segment.h"
#include "os/os.h"

/* ---- tail state -------------------------------------------------------- */

static tailstate *tail_get(wp_client *c, int64_t log_id)
{
    pthread_mutex_lock(&c->mu);
    tailstate *t = c->tails;
    while (t && t->log_id != log_id)
        t = t->next;
    if (!t && (t = calloc(1, sizeof *t))) {
        t->log_id = log_id;
        t->w_seg = t->w_lac = -1;
        pthread_mutex_init(&t->mu, NULL);
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&t->cond, &ca);
        pthread_condattr_destroy(&ca);
        t->next = c->tails;
        c->tails = t;
    }
    if (t)
        t->refs++;
    pthread_mutex_unlock(&c->mu);
    return t;
}

static void tail_put(wp_client *c, tailstate *t)
{
    pthread_mutex_lock(&c->mu);
    if (--t->refs == 0) {
        tailstate **pp = &c->tails;
        while (*pp != t)
            pp = &(*pp)->next;
        *pp = t->next;
        pthread_mutex_destroy(&t->mu);
        pthread_cond_destroy(&t->cond);
        free(t);
    }
    pthread_mutex_unlock(&c->mu);
}

void tail_writer(tailstate *t, const void *owner, bool open)
{
    pthread_mutex_lock(&t->mu);
    if (open) {
        t->writer = owner;
        t->w_seg = t->w_lac = -1;
    } else if (t->writer == owner) {
        t->writer = NULL;
    }
    t->seq++;
    pthread_cond_broadcast(&t->cond);
    pthread_mutex_unlock(&t->mu);
}

void tail_publish(tailstate *t, const void *owner, int64_t seg, int64_t lac)
{
    pthread_mutex_lock(&t->mu);
    if (t->writer == owner) {
        t->w_seg = seg;
        t->w_lac = lac;
        t->seq++;
        pthread_cond_broadcast(&t->cond);
    }
    pthread_mutex_unlock(&t->mu);
}

void tail_bump(tailstate *t)
{
    pthread_mutex_lock(&t->mu);
    t->seq++;
    pthread_cond_broadcast(&t->cond);
    pthread_mutex_unlock(&t->mu);
}

bool tail_lac(tailstate *t, int64_t seg, int64_t *lac, uint64_t *seq, bool *has_writer)
{
    pthread_mutex_lock(&t->mu);
    bool mine = t->writer && t->w_seg == seg;
    if (mine)
        *lac = t->w_lac;
    *seq = t->seq;
    *has_writer = t->writer != NULL;
    pthread_mutex_unlock(&t->mu);
    return mine;
}

void tail_wait(tailstate *t, uint64_t seq, int64_t deadline_ns)
{
    pthread_mutex_lock(&t->mu);
    while (t->seq == seq) {
        if (deadline_ns < 0) {
            pthread_cond_wait(&t->cond, &t->mu);
            continue;
        }
        struct timespec ts = {deadline_ns / 1000000000LL, deadline_ns % 1000000000LL};
        if (pthread_cond_timedwait(&t->cond, &t->mu, &ts) != 0)
            break;
    }
    pthread_mutex_unlock(&t->mu);
}

/* ---- names ------------------------------------------------------------- */

bool wp_log_name_valid(const char *name)
{
    if (!name)
        return false;
    size_t n = strlen(name);
    if (n == 0 || n > WP_LOG_NAME_MAX || name[0] == '/' || name[n - 1] == '/')
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = name[i];
        bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                  ch == '.' || ch == '_' || ch == '-' || ch == '/';
        if (!ok || (ch == '/' && name[i + 1] == '/'))
            return false;
    }
    /* "." and ".." as a whole part would be confusing in paths and keys */
    for (const char *p = name; *p;) {
        const char *e = strchr(p, '/');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if ((len == 1 && p[0] == '.') || (len == 2 && p[0] == '.' && p[1] == '.'))
            return false;
        p += len + (e ? 1 : 0);
    }
    return true;
}

static int check_name(const char *name)
{
    if (!wp_log_name_valid(name))
        return wp__err(WP_EINVAL, "invalid log name '%.64s%s' (1..%d of [A-Za-z0-9._-], '/' "
                       "between non-empty parts)", name ? name : "(null)",
                       name && strlen(name) > 64 ? "..." : "", WP_LOG_NAME_MAX);
    return WP_OK;
}

/* ---- background: GC ----------------------------------------------------- */

static bool seg_wholly_truncated(const meta_log *ml, const meta_seg *s)
{
    if (ml->trunc_seg < 0 || s->state == WP_SEG_ACTIVE)
        return false;
    return s->seg_id < ml->trunc_seg ||
           (s->seg_id == ml->trunc_seg && s->last_entry_id <= ml->trunc_entry);
}

void wp__gc_test_delay(wp_client *c, int64_t ms)
{
    pthread_mutex_lock(&c->mu);
    c->test_gc_delay_ms = ms;
    pthread_cond_broadcast(&c->bg_cond); /* a sleep under way follows the new delay */
    pthread_mutex_unlock(&c->mu);
}

/* The test hook's sleep (wp__gc_test_delay); ends early at close. */
static void gc_test_sleep(wp_client *c)
{
    pthread_mutex_lock(&c->mu);
    int64_t t0 = wp__now_ns();
    while (!c->bg_stop && c->test_gc_delay_ms > 0) {
        int64_t due = t0 + c->test_gc_delay_ms * 1000000LL;
        if (wp__now_ns() >= due)
            break;
        struct timespec ts = {due / 1000000000LL, due % 1000000000LL};
        pthread_cond_timedwait(&c->bg_cond, &c->mu, &ts);
    }
    pthread_mutex_unlock(&c->mu);
}

/* The lowest segment a live reader of the log needs (INT64_MAX: none). */
static int gc_hold(wp_client *c, int64_t log_id, int64_t *hold)
{
    meta_reader *rds;
    size_t n;
    int rc = c->meta->ops->reader_list(c->meta, log_id, &rds, &n);
    if (rc)
        return rc;
    *hold = INT64_MAX;
    for (size_t i = 0; i < n; i++)
        if (rds[i].seg_id < *hold)
            *hold = rds[i].seg_id;
    free(rds);
    return WP_OK;
}

static int gc_log(wp_client *c, const char *name, int64_t now_ms)
{
    meta *m = c->meta;
    meta_log ml;
    int rc = m->ops->log_get(m, name, &ml);
    if (rc || ml.trunc_seg < 0)
        return rc == WP_ENOENT ? WP_OK : rc;
    meta_seg *segs = NULL;
    size_t n = 0;
    if ((rc = m->ops->seg_list(m, ml.log_id, &segs, &n)))
        return rc;
    int64_t hold = INT64_MAX; /* lowest segment a live reader needs, as last read */
    bool hold_read = false;
    for (size_t i = 0; i + 1 < n; i++) { /* the last segment is kept: it holds the id high-water mark */
        meta_seg *s = &segs[i];
        if (s->state != WP_SEG_TRUNCATED && seg_wholly_truncated(&ml, s)) {
            s->state = WP_SEG_TRUNCATED;
            s->truncated_ms = now_ms;
            if (m->ops->seg_update(m, s) != WP_OK)
                continue;
        }
        if (s->state != WP_SEG_TRUNCATED || now_ms - s->truncated_ms < c->cfg.retention_ttl_ms ||
            (hold_read && s->seg_id >= hold))
            continue;
        /* The readers are read again right before each deletion: one that
         * registered since the pass began (deletions can take long) holds
         * too. A reader registers before it resolves its start, so only a
         * deletion whose readers were read before that registration can
         * remove a segment it resolved; it then reads WP_ETRUNCATED, never
         * skips (docs/metadata.md §3.3). */
        if ((rc = gc_hold(c, ml.log_id, &hold)))
            break;
        hold_read = true;
        if (s->seg_id >= hold)
            continue;
        gc_test_sleep(c);
        /* data first, then metadata: a crash in between is resumed next pass */
        if ((rc = c->st->ops->seg_delete(c->st, ml.log_id, s->seg_id)))
            break;
        rc = m->ops->seg_delete(m, ml.log_id, s->seg_id, s->rev);
        if (rc == WP_ECONFLICT || rc == WP_ENOENT)
            rc = WP_OK;
        if (rc)
            break;
        wp__log(&c->logger, WP_LOG_INFO, "gc: log '%s': deleted segment %" PRId64, name, s->seg_id);
    }
    free(segs);
    return rc;
}

int wp__gc_run(wp_client *c, int64_t now_ms)
{
    char **names;
    size_t n;
    int rc = c->meta->ops->log_list(c->meta, "", &names, &n);
    if (rc)
        return rc;
    for (size_t i = 0; i < n; i++) {
        int r = gc_log(c, names[i], now_ms);
        if (r && !rc)
            rc = r;
        if (r)
            wp__log(&c->logger, WP_LOG_WARN, "gc: log '%s': %s (%s)", names[i], wp_strerror(r),
                    wp_errmsg());
    }
    wp_free_names(names, n);
    return rc;
}

/* ---- reader registrations and their lease ------------------------------ */

/* Puts rg's registration under the current lease. reg_mu held. */
static int reg_put(wp_client *c, const reader_reg *rg)
{
    meta_reader mr = {.log_id = rg->log_id, .seg_id = rg->seg_id, .entry_id = rg->entry_id,
                      .lease_id = c->lease_id};
    memcpy(mr.name, rg->name, sizeof mr.name);
    return c->meta->ops->reader_put(c->meta, &mr);
}

/* Grants a new lease and registers every listed reader under it: the old
 * lease (if any) is gone, and its registrations with it. A reader whose
 * data GC deleted meanwhile finds out when it reads (WP_ETRUNCATED).
 * reg_mu held. */
static int lease_renew(wp_client *c)
{
    int64_t lease;
    int rc = c->meta->ops->lease_grant(c->meta, c->cfg.reader_lease_ttl_ms, &lease);
    if (rc) {
        c->lease_id = 0; /* tried again at the next registration or keepalive tick */
        return rc;
    }
    c->lease_id = lease;
    for (reader_reg *rg = c->regs; rg; rg = rg->next) {
        int r = reg_put(c, rg);
        if (r && r != WP_ENOENT) /* ENOENT: its log was deleted */
            wp__log(&c->logger, WP_LOG_WARN, "reader %s: cannot register again: %s (%s)",
                    rg->name, wp_strerror(r), wp_errmsg());
    }
    return WP_OK;
}

int client_reader_register(wp_client *c, reader_reg *rg, int64_t seg, int64_t entry)
{
    pthread_mutex_lock(&c->reg_mu);
    rg->seg_id = seg;
    rg->entry_id = entry;
    int rc = c->lease_id ? WP_OK : lease_renew(c);
    if (rc == WP_OK)
        rc = reg_put(c, rg);
    /* ENOENT: the lease expired (and the keepalive has not noticed yet), or
     * the log is gone */
    if (rc == WP_ENOENT && c->meta->ops->lease_keepalive(c->meta, c->lease_id) == WP_ENOENT) {
        wp__log(&c->logger, WP_LOG_WARN, "reader lease %" PRId64 " expired; registering every "
                "reader again under a new one", c->lease_id);
        rc = lease_renew(c);
        if (rc == WP_OK)
            rc = reg_put(c, rg);
    }
    if (!rg->listed) {
        rg->next = c->regs;
        c->regs = rg;
        rg->listed = true;
    }
    pthread_mutex_unlock(&c->reg_mu);
    return rc;
}

void client_reader_unregister(wp_client *c, reader_reg *rg)
{
    pthread_mutex_lock(&c->reg_mu);
    if (rg->listed) {
        reader_reg **pp = &c->regs;
        while (*pp != rg)
            pp = &(*pp)->next;
        *pp = rg->next;
        rg->listed = false;
        c->meta->ops->reader_delete(c->meta, rg->log_id, rg->name);
    }
    pthread_mutex_unlock(&c->reg_mu);
}

/* Renews the lease; if it expired anyway (a stalled process, metadata
 * unreachable for longer than the TTL), takes a new one and registers
 * every open reader again at once. */
static void keepalive(wp_client *c)
{
    pthread_mutex_lock(&c->reg_mu);
    int64_t lease = c->lease_id;
    bool readers = c->regs != NULL;
    pthread_mutex_unlock(&c->reg_mu);
    if (!lease && !readers)
        return;
    int rc = lease ? c->meta->ops->lease_keepalive(c->meta, lease) : WP_ENOENT;
    if (rc != WP_ENOENT)
        return; /* done, or failed: tried again next tick, well within the TTL */
    pthread_mutex_lock(&c->reg_mu);
    if (c->lease_id == lease) { /* nobody renewed it meanwhile */
        if (lease)
            wp__log(&c->logger, WP_LOG_WARN, "reader lease %" PRId64 " expired; registering "
                    "every reader again under a new one", lease);
        if ((rc = lease_renew(c)))
            wp__log(&c->logger, WP_LOG_WARN, "cannot take a new reader lease: %s (%s)",
                    wp_strerror(rc), wp_errmsg());
    }
    pthread_mutex_unlock(&c->reg_mu);
}

/* Sleeps on bg_cond for ms; false once the client is stopping. mu held. */
static bool bg_sleep(wp_client *c, int64_t ms)
{
    int64_t due = wp__now_ns() + ms * 1000000LL;
    struct timespec ts = {due / 1000000000LL, due % 1000000000LL};
    while (!c->bg_stop && pthread_cond_timedwait(&c->bg_cond, &c->mu, &ts) == 0)
        ;
    return !c->bg_stop;
}

/* The keepalive thread: a third of the TTL between renewals, so that two
 * can fail before the lease runs out. Nothing else runs here. */
static void *lease_main(void *arg)
{
    wp_client *c = arg;
    pthread_mutex_lock(&c->mu);
    while (bg_sleep(c, c->cfg.reader_lease_ttl_ms / 3)) {
        pthread_mutex_unlock(&c->mu);
        keepalive(c);
        pthread_mutex_lock(&c->mu);
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

/* The GC thread: one pass every gc.interval_ms. */
static void *bg_main(void *arg)
{
    wp_client *c = arg;
    pthread_mutex_lock(&c->mu);
    while (bg_sleep(c, c->cfg.gc_interval_ms)) {
        pthread_mutex_unlock(&c->mu);
        wp__gc_run(c, wp__wall_ms());
        pthread_mutex_lock(&c->mu);
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

/* ---- compaction (object storage; format.md section 11.3) ---------------- */

/* Finalizes (if needed) and compacts segment s; marks it SEALED once compact. */
static int compact_seg(wp_client *c, const char *name, meta_seg *s, int *done)
{
    storage *st = c->st;
    bool compact = false;
    uint64_t max = (uint64_t)c->cfg.compaction_max_bytes;
    int rc = st->ops->seg_compact(st, s->log_id, s->seg_id, max, &compact);
    if (rc == WP_ENOENT) { /* completed but not finalized: the completer failed or crashed */
        rc = st->ops->seg_finalize(st, s->log_id, s->seg_id, (uint64_t)s->bytes);
        if (!rc)
            rc = st->ops->seg_compact(st, s->log_id, s->seg_id, max, &compact);
        if (rc == WP_ENOENT) { /* deleted meanwhile (GC, log deletion): nothing to do */
            wp__err_clear();
            return WP_OK;
        }
    }
    if (rc || !compact)
        return rc;
    s->state = WP_SEG_SEALED;
    rc = c->meta->ops->seg_update(c->meta, s);
    if (rc == WP_ECONFLICT || rc == WP_ENOENT) /* truncated, deleted or sealed meanwhile */
        return WP_OK;
    if (!rc) {
        (*done)++;
        wp__log(&c->logger, WP_LOG_DEBUG, "compaction: log '%s': segment %" PRId64 " sealed", name,
                s->seg_id);
    }
    return rc;
}

static int compact_log(wp_client *c, const char *name, int *budget, int *done)
{
    meta *m = c->meta;
    meta_log ml;
    meta_seg *segs = NULL;
    size_t n = 0;
    int rc = m->ops->log_get(m, name, &ml);
    if (rc)
        return rc == WP_ENOENT ? WP_OK : rc;
    if ((rc = m->ops->seg_list(m, ml.log_id, &segs, &n)))
        return rc;
    for (size_t i = 0; i < n && *budget > 0 && !rc; i++) {
        if (segs[i].state != WP_SEG_COMPLETED)
            continue;
        (*budget)--;
        rc = compact_seg(c, name, &segs[i], done);
    }
    free(segs);
    return rc;
}

int wp__compact_run(wp_client *c, int *done)
{
    int dummy = 0;
    if (!done)
        done = &dummy;
    *done = 0;
    if (!c->st->ops->seg_compact || !c->st->ops->seg_finalize)
        return wp__err(WP_ENOTSUP, "compaction: storage '%s' has none", c->st->ops->name);
    char **names;
    size_t n;
    int rc = c->meta->ops->log_list(c->meta, "", &names, &n), budget = COMPACT_SEGS_PER_PASS;
    if (rc)
        return rc;
    for (size_t i = 0; i < n && budget > 0; i++) {
        int r = compact_log(c, names[i], &budget, done);
        if (r == WP_ENOTSUP) {
            rc = r;
            break;
        }
        if (r && !rc)
            rc = r;
        if (r)
            wp__log(&c->logger, WP_LOG_WARN, "compaction: log '%s': %s (%s)", names[i],
                    wp_strerror(r), wp_errmsg());
    }
    wp_free_names(names, n);
    return rc;
}

int wp_log_compact(wp_log *l, wp_compact_info *out)
{
    if (!l)
        return wp__err(WP_EINVAL, "wp_log_compact: NULL log");
    wp_client *c = l->c;
    if (!c->st->ops->seg_compact || !c->st->ops->seg_finalize)
        return wp__err(WP_ENOTSUP, "compaction: storage '%s' has none (object storage only)",
                       c->st->ops->name);
    storage_stats s0 = {0}, s1 = {0};
    if (c->st->ops->stats)
        c->st->ops->stats(c->st, &s0);
    int done = 0, total = 0, rc;
    do {
        int budget = COMPACT_SEGS_PER_PASS;
        done = 0;
        rc = compact_log(c, l->name, &budget, &done);
        total += done;
    } while (!rc && done > 0);
    if (c->st->ops->stats)
        c->st->ops->stats(c->st, &s1);
    if (out)
        *out = (wp_compact_info){total, (int64_t)(s1.puts - s0.puts),
                                 (int64_t)(s1.put_bytes - s0.put_bytes)};
    return rc;
}

static void *compactor_main(void *arg)
{
    wp_client *c = arg;
    pthread_mutex_lock(&c->mu);
    while (!c->bg_stop && !c->compact_off) {
        int64_t due = wp__now_ns() + c->cfg.gc_interval_ms * 1000000LL;
        struct timespec ts = {due / 1000000000LL, due % 1000000000LL};
        pthread_cond_timedwait(&c->bg_cond, &c->mu, &ts);
        if (c->bg_stop)
            break;
        pthread_mutex_unlock(&c->mu);
        int done = 0;
        int rc = wp__compact_run(c, &done);
        if (rc == WP_ENOTSUP) /* the endpoint cannot commit one: said once in the log */
            wp__log(&c->logger, WP_LOG_WARN, "compaction off: %s", wp_errmsg());
        pthread_mutex_lock(&c->mu);
        if (rc == WP_ENOTSUP)
            c->compact_off = true;
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

/* ---- client ------------------------------------------------------------ */

/* Does the store's fencing hold (object storage: does the endpoint honour
 * If-None-Match)? Read from the setting `conditionwrite`, probed and
 * recorded when absent (format.md §11). Only for stores that can tell. */
static int detect_cond_writes(wp_client *c)
{
    char v[8];
    c->cond_writes = true;
    if (!c->st->ops->fence_probe)
        return 0;
    int rc = c->meta->ops->setting_get(c->meta, "conditionwrite", v, sizeof v);
    if (rc == WP_ENOENT) {
        bool honoured = false;
        if ((rc = c->st->ops->fence_probe(c->st, &honoured)) != 0)
            return wp__err(rc, "probing conditional writes: %s", wp_errmsg());
        snprintf(v, sizeof v, "%s", honoured ? "true" : "false");
        rc = c->meta->ops->setting_put(c->meta, "conditionwrite", v);
    } else if (rc == WP_ETOOBIG) {
        rc = wp__err(WP_ECORRUPT, "setting conditionwrite is neither true nor false");
    }
    if (rc)
        return rc;
    if (strcmp(v, "true") != 0 && strcmp(v, "false") != 0)
        return wp__err(WP_ECORRUPT, "setting conditionwrite is '%s', not true or false", v);
    c->cond_writes = strcmp(v, "true") == 0;
    if (!c->cond_writes)
        wp__log(&c->logger, WP_LOG_WARN, "endpoint ignores If-None-Match: fencing falls back "
                "to a metadata epoch check before every ack");
    return 0;
}

/* What the store declares: its flush defaults (where the configuration
 * does not set them), the shortest poll of a cross-process reader. */
static void apply_storage_defaults(wp_client *c)
{
    const struct storage_ops *o = c->st->ops;
    if (o->flush_bytes_default && !wp__config_is_set(&c->cfg, "flush.max_bytes"))
        c->cfg.flush_max_bytes = o->flush_bytes_default;
    if (o->flush_interval_ms_default && !wp__config_is_set(&c->cfg, "flush.max_interval_ms"))
        c->cfg.flush_max_interval_ms = o->flush_interval_ms_default;
    if (o->flush_threads_default && !wp__config_is_set(&c->cfg, "flush.max_threads"))
        c->cfg.flush_max_threads = o->flush_threads_default;
    int64_t poll_ms = c->cfg.reader_poll_max_ms;
    if (poll_ms < o->poll_min_ms)
        poll_ms = o->poll_min_ms;
    c->poll_max_ns = poll_ms * 1000000LL;
}

int wp_client_open(const wp_config *cfg, wp_client **out)
{
    if (!cfg || !out)
        return wp__err(WP_EINVAL, "wp_client_open: NULL argument");
    wp_client *c = calloc(1, sizeof *c);
    if (!c)
        return wp__err(WP_ENOMEM, "client");
    c->cfg = *cfg;
    c->logger = (wp__logger){cfg->log_fn, cfg->log_arg, cfg->log_level};
    pthread_mutex_init(&c->mu, NULL);
    pthread_mutex_init(&c->reg_mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&c->bg_cond, &ca);
    pthread_condattr_destroy(&ca);
    /* Metadata first: a backend that places segments on servers finds
     * them there. */
    int rc = meta_open(cfg, &c->meta);
    if (rc)
        goto out_free;
    if ((rc = storage_open(cfg, &c->logger, c->meta, &c->st)))
        goto out_meta_only;
    apply_storage_defaults(c);
    if ((rc = detect_cond_writes(c)) != 0)
        goto out_meta;
    if (pthread_create(&c->lease_thr, NULL, lease_main, c) != 0) {
        rc = wp__err(WP_ENOMEM, "cannot start the reader lease thread");
        goto out_meta;
    }
    if (pthread_create(&c->bg, NULL, bg_main, c) != 0) {
        rc = wp__err(WP_ENOMEM, "cannot start the background thread");
        goto out_lease_thr;
    }
    if (c->cfg.compaction_enabled && c->st->ops->seg_compact) {
        c->compactor_started = pthread_create(&c->compactor, NULL, compactor_main, c) == 0;
        if (!c->compactor_started)
            wp__log(&c->logger, WP_LOG_WARN, "cannot start the compaction thread: no compaction");
    }
    *out = c;
    return WP_OK;
out_lease_thr:
    pthread_mutex_lock(&c->mu);
    c->bg_stop = true;
    pthread_cond_broadcast(&c->bg_cond);
    pthread_mutex_unlock(&c->mu);
    pthread_join(c->lease_thr, NULL);
out_meta: /* the storage first: it may use the metadata until closed */
    c->st->ops->close(c->st);
out_meta_only:
    c->meta->ops->close(c->meta);
out_free:
    pthread_mutex_destroy(&c->mu);
    pthread_mutex_destroy(&c->reg_mu);
    pthread_cond_destroy(&c->bg_cond);
    free(c);
    return rc;
}

void wp_client_close(wp_client *c)
{
    if (!c)
        return;
    pthread_mutex_lock(&c->mu);
    c->bg_stop = true;
    pthread_cond_broadcast(&c->bg_cond);
    pthread_mutex_unlock(&c->mu);
    pthread_join(c->bg, NULL);
    pthread_join(c->lease_thr, NULL);
    if (c->compactor_started)
        pthread_join(c->compactor, NULL);
    if (c->lease_id)
        c->meta->ops->lease_revoke(c->meta, c->lease_id);
    c->st->ops->close(c->st); /* first: it may use the metadata until closed */
    c->meta->ops->close(c->meta);
    while (c->tails) { /* only if handles leaked */
        tailstate *t = c->tails;
        c->tails = t->next;
        free(t);
    }
    pthread_mutex_destroy(&c->mu);
    pthread_mutex_destroy(&c->reg_mu);
    pthread_cond_destroy(&c->bg_cond);
    free(c);
}

/* ---- logs -------------------------------------------------------------- */

int wp_log_create(wp_client *c, const char *name)
{
    if (!c)
        return wp__err(WP_EINVAL, "wp_log_create: NULL client");
    int rc = check_name(name);
    if (rc)
        return rc;
    meta_log ml;
    rc = c->meta->ops->log_create(c->meta, name, wp__wall_ms(), &ml);
    if (rc == WP_EEXIST)
        return wp__err(WP_EEXIST, "log '%s' already exists", name);
    return rc;
}

int wp_log_open(wp_client *c, const char *name, wp_log **out)
{
    if (!c || !out)
        return wp__err(WP_EINVAL, "wp_log_open: NULL argument");
    int rc = check_name(name);
    if (rc)
        return rc;
    meta_log ml;
    rc = c->meta->ops->log_get(c->meta, name, &ml);
    if (rc == WP_ENOENT)
        return wp__err(WP_ENOENT, "no log named '%s'", name);
    if (rc)
        return rc;
    wp_log *l = calloc(1, sizeof *l);
    if (!l || !(l->tail = tail_get(c, ml.log_id))) {
        free(l);
        return wp__err(WP_ENOMEM, "log handle");
    }
    l->c = c;
    l->log_id = ml.log_id;
    snprintf(l->name, sizeof l->name, "%s", name);
    *out = l;
    return WP_OK;
}

void wp_log_close(wp_log *l)
{
    if (!l)
        return;
    tail_put(l->c, l->tail);
    free(l);
}

int wp_log_delete(wp_client *c, const char *name)
{
    if (!c)
        return wp__err(WP_EINVAL, "wp_log_delete: NULL client");
    int rc = check_name(name);
    if (rc)
        return rc;
    meta_log ml;
    rc = c->meta->ops->log_get(c->meta, name, &ml);
    if (rc == WP_ENOENT)
        return wp__err(WP_ENOENT, "no log named '%s'", name);
    if (rc == WP_OK)
        rc = c->meta->ops->log_delete(c->meta, name, ml.rev);
    if (rc == WP_OK)
        rc = c->st->ops->log_delete(c->st, ml.log_id);
    if (rc == WP_OK) {
        tailstate *t = tail_get(c, ml.log_id);
        if (t) {
            tail_bump(t);
            tail_put(c, t);
        }
    }
    return rc;
}

int wp_log_list(wp_client *c, const char *prefix, char ***names, size_t *n)
{
    if (!c || !names || !n)
        return wp__err(WP_EINVAL, "wp_log_list: NULL argument");
    return c->meta->ops->log_list(c->meta, prefix ? prefix : "", names, n);
}

int wp_log_truncate(wp_log *l, wp_msg_id upto)
{
    if (!l || upto.segment_id < 0 || upto.entry_id < 0)
        return wp__err(WP_EINVAL, "truncate: bad position");
    wp_msg_id last;
    int rc = wp__log_last_id(l, &last);
    if (rc)
        return rc;
    if (wp_msg_id_cmp(upto, last) > 0) {
        char a[WP_MSG_ID_STR_MAX], b[WP_MSG_ID_STR_MAX];
        return wp__err(WP_EINVAL, "truncate: %s is beyond the last durable entry %s",
                       wp_msg_id_format(upto, a), wp_msg_id_format(last, b));
    }
    meta *m = l->c->meta;
    for (int tries = 0; tries < 64; tries++) {
        meta_log ml;
        if ((rc = m->ops->log_get(m, l->name, &ml)))
            return rc;
        if (wp_msg_id_cmp(upto, (wp_msg_id){ml.trunc_seg, ml.trunc_entry}) <= 0)
            return WP_OK;
        ml.trunc_seg = upto.segment_id;
        ml.trunc_entry = upto.entry_id;
        rc = m->ops->log_update(m, &ml);
        if (rc != WP_ECONFLICT)
            break;
    }
    if (rc == WP_OK)
        tail_bump(l->tail);
    return rc;
}

/* Current size of an active segment in storage (0 if missing). */
static int64_t active_bytes(wp_client *c, int64_t log_id, int64_t seg_id)
{
    st_reader *r;
    uint64_t size = 0;
    if (c->st->ops->seg_open_read(c->st, log_id, seg_id, &r) == WP_OK) {
        c->st->ops->seg_size(r, &size);
        c->st->ops->seg_reader_close(r);
    }
    return (int64_t)size;
}

int wp_log_segments(wp_log *l, wp_segment_info **out, size_t *n)
{
    if (!l || !out || !n)
        return wp__err(WP_EINVAL, "wp_log_segments: NULL argument");
    meta_seg *segs;
    int rc = l->c->meta->ops->seg_list(l->c->meta, l->log_id, &segs, n);
    if (rc)
        return rc;
    wp_segment_info *info = calloc(*n ? *n : 1, sizeof *info);
    if (!info) {
        free(segs);
        return wp__err(WP_ENOMEM, "segment list");
    }
    for (size_t i = 0; i < *n; i++) {
        meta_seg *s = &segs[i];
        info[i] = (wp_segment_info){s->seg_id, s->state, s->last_entry_id, s->bytes, s->epoch,
                                    s->created_ms, s->completed_ms};
        if (s->state == WP_SEG_ACTIVE) {
            wp_msg_id last;
            info[i].bytes = active_bytes(l->c, l->log_id, s->seg_id);
            if (i + 1 == *n && wp__log_last_id(l, &last) == WP_OK && last.segment_id == s->seg_id)
                info[i].last_entry_id = last.entry_id;
        }
    }
    free(segs);
    *out = info;
    return WP_OK;
}

int wp_log_stat(wp_log *l, wp_log_info *out)
{
    if (!l || !out)
        return wp__err(WP_EINVAL, "wp_log_stat: NULL argument");
    meta_log ml;
    int rc = l->c->meta->ops->log_get(l->c->meta, l->name, &ml);
    if (rc)
        return rc;
    wp_segment_info *segs;
    size_t n;
    if ((rc = wp_log_segments(l, &segs, &n)))
        return rc;
    memset(out, 0, sizeof *out);
    snprintf(out->name, sizeof out->name, "%s", ml.name);
    out->log_id = ml.log_id;
    out->writer_epoch = ml.epoch;
    out->truncated_to = (wp_msg_id){ml.trunc_seg, ml.trunc_entry};
    out->created_ms = ml.created_ms;
    out->n_segments = (int64_t)n;
    for (size_t i = 0; i < n; i++)
        out->bytes += segs[i].bytes;
    free(segs);
    return wp__log_last_id(l, &out->last_id);
}

const char *wp_seg_state_name(int state)
{
    switch (state) {
    case WP_SEG_ACTIVE:
        return "active";
    case WP_SEG_COMPLETED:
        return "completed";
    case WP_SEG_SEALED:
        return "sealed";
    case WP_SEG_TRUNCATED:
        return "truncated";
    default:
        return "unknown";
    }
}

typedef struct {
    wp_verify_fn fn;
    void *arg;
    int64_t seg_id;
} verify_ctx;

static void verify_problem(void *arg, const char *problem)
{
    verify_ctx *v = arg;
    if (v->fn)
        v->fn(v->arg, v->seg_id, problem);
}

int wp_log_verify(wp_log *l, wp_verify_fn fn, void *arg, int64_t *entries_checked)
{
    if (!l)
        return wp__err(WP_EINVAL, "wp_log_verify: NULL log");
    meta_seg *segs;
    size_t n;
    int rc = l->c->meta->ops->seg_list(l->c->meta, l->log_id, &segs, &n);
    if (rc)
        return rc;
    int64_t entries = 0;
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        verify_ctx v = {fn, arg, segs[i].seg_id};
        if (lseg_verify(l->c->st, l->log_id, segs[i].seg_id, segs[i].state != WP_SEG_ACTIVE,
                        (uint64_t)segs[i].bytes, segs[i].last_entry_id, verify_problem, &v,
                        &entries) != WP_OK)
            bad = 1;
    }
    free(segs);
    if (entries_checked)
        *entries_checked = entries;
    return bad ? wp__err(WP_ECORRUPT, "log '%s' has damaged segments", l->name) : WP_OK;
}

/* ---- metrics ----------------------------------------------------------- */

int wp_client_metrics(wp_client *c, wp_metric_fn fn, void *arg)
{
    if (!c || !fn)
        return wp__err(WP_EINVAL, "wp_client_metrics: NULL argument");
    wp__metrics_visit(fn, arg);
    /* This client's segments by state, from its metadata store. */
    static const char *const STATES[] = {"active", "completed", "sealed", "truncated"};
    _Static_assert(WP_SEG_ACTIVE == 0 && WP_SEG_TRUNCATED == 3, "segment states");
    int64_t count[4] = {0}, logs = 0;
    char **names = NULL;
    size_t n = 0;
    meta *m = c->meta;
    int rc = m->ops->log_list(m, "", &names, &n);
    for (size_t i = 0; rc == WP_OK && i < n; i++) {
        meta_log ml;
        meta_seg *segs = NULL;
        size_t ns = 0;
        int r = m->ops->log_get(m, names[i], &ml);
        if (r == WP_ENOENT) /* deleted meanwhile */
            continue;
        if (r == WP_OK)
            r = m->ops->seg_list(m, ml.log_id, &segs, &ns);
        if (r) {
            rc = r;
            break;
        }
        logs++;
        for (size_t k = 0; k < ns; k++)
            if (segs[k].state >= 0 && segs[k].state < 4)
                count[segs[k].state]++;
        free(segs);
    }
    wp_free_names(names, n);
    if (rc)
        return rc;
    wp_metric lm = {.name = "wp_logs", .help = "Logs in the metadata store.",
                    .kind = WP_METRIC_GAUGE, .labels = "", .value = (double)logs};
    fn(arg, &lm);
    for (int s = 0; s < 4; s++) {
        char labels[32];
        snprintf(labels, sizeof labels, "state=\"%s\"", STATES[s]);
        wp_metric sm = {.name = "wp_segments", .help = "Segments in the metadata store, by state.",
                        .kind = WP_METRIC_GAUGE, .labels = labels, .value = (double)count[s]};
        fn(arg, &sm);
    }
    return WP_OK;
}

int wp_client_metrics_text(wp_client *c, char **text, size_t *len)
{
    if (!c || !text)
        return wp__err(WP_EINVAL, "wp_client_metrics_text: NULL argument");
    wp__prom p = {0};
    int rc = wp_client_metrics(c, wp__prom_metric, &p);
    if (rc == WP_OK && (p.failed || !p.buf))
        rc = wp__err(WP_ENOMEM, "metrics text");
    if (rc) {
        free(p.buf);
        return rc;
    }
    *text = p.buf;
    if (len)
        *len = p.len;
    return WP_OK;
}
