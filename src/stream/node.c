/* node.c — a streaming node; see node.h and docs/streaming.md.
 *
 * Hosted channels live in a small table (nodes host tens to thousands of
 * channels) of reference-counted entries: a request takes a reference for
 * as long as it uses the channel's log and writer; the sync thread removes
 * an entry (unhost) and the last reference closes its writer. A produce
 * request enqueues its messages under the channel's produce lock (so a
 * producer's sequence numbers are checked and appended in one order) and
 * waits for their acks outside it; the producers' table has its own lock,
 * which the writer's callbacks take, never the produce lock. */
#include "stream/node.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <microhttpd.h>
#include <openssl/evp.h>

#include "codec/le.h"
#include "codec/wpm.h"
#include "net/listen.h"
#include "stream/stream.h"

#define PRODUCERS_BUCKETS 256
#define PRODUCER_ID_MAX 128
#define MESSAGES_MAX 100000     /* messages in one produce request */
#define POLL_MAX_DEFAULT 100
#define POLL_MAX_MAX 10000
#define WAIT_DEFAULT_MS 10000
#define WAIT_MAX_MS 60000
#define SLICE_MS 200            /* waits are cut in slices to notice a stop or a move */
#define HEARTBEAT_MS 10000      /* an idle pushed stream sends an empty line this often */
#define CHUNK_BYTES (64 * 1024) /* a pushed stream sends what is ready, up to this, at once */
#define OPEN_RETRY_MS 1000
#define DELETE_RETRY_MS 5000 /* a channel's log delete that races an owner's writer open */
#define CONN_MEMORY_BYTES (128 * 1024) /* libmicrohttpd's buffer per connection */
#define CLOSE_WAVE 64 /* channels closed at once when the node stops */

/* ---- hosted channels -------------------------------------------------------- */

typedef struct producer {
    struct producer *next;
    char id[PRODUCER_ID_MAX + 1];
    int64_t last_seq; /* -1: none yet */
    int n, head;      /* window: the last n (seq, id), oldest at head */
    int64_t *seq;
    wp_msg_id *ids;   /* {-1,-1}: not durable yet */
} producer;

typedef struct hchan {
    char name[STREAM_CHANNEL_MAX + 1];
    int64_t term;
    int64_t log_id; /* of the channel's log: subscriptions are its reader records */
    wp_log *log;
    wp_writer *w;
    int refs;       /* under node->mu */
    bool gone;      /* unhosted: no new requests; closed when refs reach 0 */
    _Atomic int failed; /* the writer failed (fenced, storage): unhost and host again */
    pthread_mutex_t produce_mu; /* enqueueing of produce requests */
    pthread_mutex_t pmu;        /* producers; their windows */
    pthread_cond_t pcond;       /* a window entry got its id */
    int pwaiters;               /* under pmu: requests waiting on pcond */
    producer *producers[PRODUCERS_BUCKETS];
    int window;
    int64_t snap_ns;            /* last producers' snapshot */
    _Atomic bool snap_dirty;    /* a producer's window changed since the last snapshot */
} hchan;

struct stream_node {
    const wp_config *cfg;
    const wp__logger *lg;
    wp_client *c;
    meta *m;
    meta_watch *watch;
    int64_t lease_id;
    char addr[128];
    int lfd;
    struct MHD_Daemon *d;
    pthread_mutex_t mu; /* chans, n_chans */
    hchan **chans;
    int n_chans, cap_chans;
    pthread_t sync_thr, lease_thr;
    bool sync_started, lease_started;
    pthread_mutex_t sync_mu;
    pthread_cond_t sync_cond, lease_cond;
    bool kick;
    _Atomic bool stop;
};

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 1099511628211ULL;
    return h;
}

static void chan_free(hchan *ch)
{
    if (ch->w) {
        int rc = wp_writer_close(ch->w);
        (void)rc; /* fenced or failed: nothing to do, the next owner recovers */
    }
    if (ch->log)
        wp_log_close(ch->log);
    for (int b = 0; b < PRODUCERS_BUCKETS; b++)
        while (ch->producers[b]) {
            producer *p = ch->producers[b];
            ch->producers[b] = p->next;
            free(p->seq);
            free(p->ids);
            free(p);
        }
    pthread_mutex_destroy(&ch->produce_mu);
    pthread_mutex_destroy(&ch->pmu);
    pthread_cond_destroy(&ch->pcond);
    free(ch);
}

/* The hosted channel, with a reference; NULL if not hosted. */
static hchan *chan_get(stream_node *n, const char *name)
{
    hchan *ch = NULL;
    pthread_mutex_lock(&n->mu);
    for (int i = 0; i < n->n_chans; i++)
        if (strcmp(n->chans[i]->name, name) == 0 && !n->chans[i]->gone) {
            ch = n->chans[i];
            ch->refs++;
            break;
        }
    pthread_mutex_unlock(&n->mu);
    return ch;
}

static void chan_put(stream_node *n, hchan *ch)
{
    pthread_mutex_lock(&n->mu);
    bool last = --ch->refs == 0 && ch->gone;
    pthread_mutex_unlock(&n->mu);
    if (last)
        chan_free(ch);
}

/* ---- producers -------------------------------------------------------------- */

/* Under ch->pmu. NULL (no memory) only when create. */
static producer *producer_find(hchan *ch, const char *id, bool create)
{
    size_t b = hash_str(id) % PRODUCERS_BUCKETS;
    for (producer *p = ch->producers[b]; p; p = p->next)
        if (strcmp(p->id, id) == 0)
            return p;
    if (!create)
        return NULL;
    producer *p = calloc(1, sizeof *p);
    if (p) {
        p->seq = malloc((size_t)ch->window * sizeof *p->seq);
        p->ids = malloc((size_t)ch->window * sizeof *p->ids);
    }
    if (!p || !p->seq || !p->ids) {
        if (p) {
            free(p->seq);
            free(p->ids);
        }
        free(p);
        return NULL;
    }
    snprintf(p->id, sizeof p->id, "%s", id);
    p->last_seq = -1;
    p->next = ch->producers[b];
    ch->producers[b] = p;
    return p;
}

/* Under ch->pmu: records (seq, id) as the producer's latest; its slot. */
static int producer_push(hchan *ch, producer *p, int64_t seq, wp_msg_id id)
{
    int at;
    if (p->n < ch->window) {
        at = (p->head + p->n) % ch->window;
        p->n++;
    } else {
        at = p->head;
        p->head = (p->head + 1) % ch->window;
    }
    p->seq[at] = seq;
    p->ids[at] = id;
    if (seq > p->last_seq)
        p->last_seq = seq;
    return at;
}

/* Under ch->pmu: the window slot of seq, or -1. */
static int producer_slot(const hchan *ch, const producer *p, int64_t seq)
{
    for (int k = 0; k < p->n; k++) {
        int at = (p->head + k) % ch->window;
        if (p->seq[at] == seq)
            return at;
    }
    return -1;
}

/* Applies one durable message's producer properties (rebuild). */
static void producer_apply(hchan *ch, const wp_entry *e)
{
    const char *pid = NULL, *ps = NULL;
    for (size_t i = 0; i < e->n_props; i++) {
        if (strcmp(e->prop_keys[i], "wp.p") == 0)
            pid = e->prop_values[i];
        else if (strcmp(e->prop_keys[i], "wp.s") == 0)
            ps = e->prop_values[i];
    }
    char *end;
    long long seq = ps ? strtoll(ps, &end, 10) : -1;
    if (!pid || !ps || *end || seq < 0 || strlen(pid) > PRODUCER_ID_MAX)
        return;
    pthread_mutex_lock(&ch->pmu);
    producer *p = producer_find(ch, pid, true);
    if (p && seq > p->last_seq)
        producer_push(ch, p, seq, e->id);
    pthread_mutex_unlock(&ch->pmu);
}

static char *snapshot_json(hchan *ch, wp_msg_id at)
{
    cJSON *o = cJSON_CreateObject(), *ps = o ? cJSON_AddObjectToObject(o, "producers") : NULL;
    char t[48];
    stream_id_text(at, t);
    bool ok = ps && cJSON_AddNumberToObject(o, "term", (double)ch->term) &&
              cJSON_AddStringToObject(o, "at", t);
    pthread_mutex_lock(&ch->pmu);
    for (int b = 0; ok && b < PRODUCERS_BUCKETS; b++)
        for (producer *p = ch->producers[b]; ok && p; p = p->next) {
            cJSON *arr = cJSON_AddArrayToObject(ps, p->id);
            ok = arr != NULL;
            for (int k = 0; ok && k < p->n; k++) {
                int s = (p->head + k) % ch->window;
                if (p->ids[s].segment_id < 0 ||
                    (p->ids[s].segment_id > at.segment_id ||
                     (p->ids[s].segment_id == at.segment_id && p->ids[s].entry_id > at.entry_id)))
                    continue; /* not durable as of `at`: the scan from `at` finds it */
                cJSON *pair = cJSON_CreateArray();
                stream_id_text(p->ids[s], t);
                ok = pair && cJSON_AddItemToArray(arr, pair) &&
                     cJSON_AddItemToArray(pair, cJSON_CreateNumber((double)p->seq[s])) &&
                     cJSON_AddItemToArray(pair, cJSON_CreateString(t));
            }
        }
    pthread_mutex_unlock(&ch->pmu);
    char *s = ok ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    return s;
}

/* Loads stream/producers/<name>: the table as of *at; *at {-1,-1} none. */
static void snapshot_load(stream_node *n, hchan *ch, wp_msg_id *at)
{
    *at = (wp_msg_id){-1, -1};
    char key[META_KV_KEY_MAX + 1];
    snprintf(key, sizeof key, "%s%s", STREAM_KEY_PRODUCERS, ch->name);
    meta_kv kv = {0};
    if (n->m->ops->kv_get(n->m, key, &kv) != WP_OK) {
        wp__err_clear();
        return;
    }
    cJSON *o = cJSON_ParseWithLength((const char *)kv.value, kv.len);
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(o, "at");
    const cJSON *ps = cJSON_GetObjectItemCaseSensitive(o, "producers");
    wp_msg_id snap_at;
    if (cJSON_IsString(a) && stream_id_parse(a->valuestring, &snap_at) && cJSON_IsObject(ps)) {
        const cJSON *arr;
        pthread_mutex_lock(&ch->pmu);
        cJSON_ArrayForEach(arr, ps)
        {
            if (!cJSON_IsArray(arr) || strlen(arr->string) > PRODUCER_ID_MAX)
                continue;
            producer *p = producer_find(ch, arr->string, true);
            const cJSON *pair;
            cJSON_ArrayForEach(pair, arr)
            {
                const cJSON *s = cJSON_GetArrayItem(pair, 0), *i = cJSON_GetArrayItem(pair, 1);
                wp_msg_id id;
                if (p && cJSON_IsNumber(s) && s->valuedouble >= 0 && cJSON_IsString(i) &&
                    stream_id_parse(i->valuestring, &id) && (int64_t)s->valuedouble > p->last_seq)
                    producer_push(ch, p, (int64_t)s->valuedouble, id);
            }
        }
        pthread_mutex_unlock(&ch->pmu);
        *at = snap_at;
    } else {
        wp__log(n->lg, WP_LOG_WARN, "channel '%s': producers' snapshot does not decode; reading "
                "the whole channel instead", ch->name);
    }
    cJSON_Delete(o);
    meta_kv_free(&kv);
}

/* The producers' state of a channel just opened here: the snapshot, then
 * every message after it up to the end the writer's recovery found. */
static int producers_rebuild(stream_node *n, hchan *ch)
{
    wp_msg_id at;
    snapshot_load(n, ch, &at);
    wp_log_info info;
    int rc = wp_log_stat(ch->log, &info);
    if (rc || info.last_id.segment_id < 0)
        return rc;
    wp_msg_id from = at.segment_id < 0 ? WP_EARLIEST : (wp_msg_id){at.segment_id, at.entry_id + 1};
    wp_reader *r = NULL;
    rc = wp_reader_open(ch->log, from, &r);
    if (rc == WP_ETRUNCATED) { /* the snapshot's position was truncated since */
        wp__err_clear();
        rc = wp_reader_open(ch->log, WP_EARLIEST, &r);
    }
    if (rc)
        return rc;
    int64_t scanned = 0;
    for (;;) {
        wp_entry e;
        rc = wp_reader_next(r, 5000, &e);
        if (rc)
            break;
        producer_apply(ch, &e);
        scanned++;
        if (e.id.segment_id > info.last_id.segment_id ||
            (e.id.segment_id == info.last_id.segment_id && e.id.entry_id >= info.last_id.entry_id))
            break;
    }
    wp_reader_close(r);
    if (rc == WP_ETIMEDOUT) /* nothing more durable: the end */
        rc = WP_OK;
    wp__log(n->lg, WP_LOG_INFO, "channel '%s': producers rebuilt (%" PRId64 " messages read)",
            ch->name, scanned);
    return rc;
}

static void snapshot_write(stream_node *n, hchan *ch)
{
    wp_msg_id at = wp_writer_lac(ch->w);
    if (at.segment_id < 0)
        return;
    char *v = snapshot_json(ch, at);
    if (!v)
        return;
    char key[META_KV_KEY_MAX + 1];
    snprintf(key, sizeof key, "%s%s", STREAM_KEY_PRODUCERS, ch->name);
    size_t len = strlen(v);
    int rc = len <= META_KV_VALUE_MAX
                 ? n->m->ops->kv_put(n->m, key, v, len, -1, 0, NULL)
                 : wp__err(WP_ETOOBIG, "producers' snapshot of %zu bytes", len);
    free(v);
    if (rc)
        wp__log(n->lg, WP_LOG_WARN, "channel '%s': producers' snapshot: %s (%s)", ch->name,
                wp_strerror(rc), wp_errmsg());
}

/* ---- hosting ------------------------------------------------------------------ */

static int host(stream_node *n, const stream_channel *rec)
{
    hchan *ch = calloc(1, sizeof *ch);
    if (!ch)
        return wp__err(WP_ENOMEM, "channel");
    snprintf(ch->name, sizeof ch->name, "%s", rec->name);
    ch->term = rec->term;
    ch->window = (int)n->cfg->stream_producer_window;
    pthread_mutex_init(&ch->produce_mu, NULL);
    pthread_mutex_init(&ch->pmu, NULL);
    pthread_cond_init(&ch->pcond, NULL);
    char log[WP_LOG_NAME_MAX + 1];
    stream_log_name(rec->name, log);
    int rc = wp_log_open(n->c, log, &ch->log);
    wp_log_info li;
    if (rc == WP_OK && (rc = wp_log_stat(ch->log, &li)) == WP_OK)
        ch->log_id = li.log_id;
    if (rc == WP_OK)
        rc = wp_writer_open(ch->log, &ch->w); /* the fence: the old owner's writer is done */
    if (rc == WP_OK)
        rc = producers_rebuild(n, ch);
    if (rc) {
        chan_free(ch);
        return rc;
    }
    ch->snap_ns = wp__now_ns();
    ch->refs = 1; /* the table's */
    pthread_mutex_lock(&n->mu);
    if (n->n_chans == n->cap_chans) {
        int cap = n->cap_chans ? 2 * n->cap_chans : 16;
        hchan **nc = realloc(n->chans, (size_t)cap * sizeof *nc);
        if (!nc) {
            pthread_mutex_unlock(&n->mu);
            chan_free(ch);
            return wp__err(WP_ENOMEM, "channel table");
        }
        n->chans = nc;
        n->cap_chans = cap;
    }
    n->chans[n->n_chans++] = ch;
    pthread_mutex_unlock(&n->mu);
    wp__log(n->lg, WP_LOG_INFO, "node %s: hosting channel '%s' at term %" PRId64, n->cfg->node_id,
            ch->name, ch->term);
    return WP_OK;
}

/* Removes entry i of the table (under n->mu); the last reference closes it. */
static hchan *unhost_locked(stream_node *n, int i)
{
    hchan *ch = n->chans[i];
    n->chans[i] = n->chans[--n->n_chans];
    ch->gone = true;
    return --ch->refs == 0 ? ch : NULL;
}

/* One pass: the lease, the registration, the assignments, snapshots. */
static int sync_pass(stream_node *n)
{
    stream_channel *recs = NULL;
    size_t nr = 0;
    int rc = stream_channel_list(n->m, &recs, &nr);
    if (rc)
        return rc;
    /* Unhost what is no longer ours at that term (or failed). */
    hchan *to_free[64];
    int nf = 0;
    pthread_mutex_lock(&n->mu);
    for (int i = 0; i < n->n_chans;) {
        hchan *ch = n->chans[i];
        const stream_channel *r = NULL;
        for (size_t k = 0; k < nr && !r; k++)
            if (strcmp(recs[k].name, ch->name) == 0)
                r = &recs[k];
        bool keep = r && strcmp(r->owner, n->cfg->node_id) == 0 && strcmp(r->addr, n->addr) == 0 &&
                    r->term == ch->term && !atomic_load(&ch->failed);
        if (keep || nf == 64) {
            i++;
            continue;
        }
        wp__log(n->lg, WP_LOG_INFO, "node %s: channel '%s' (term %" PRId64 ") %s", n->cfg->node_id,
                ch->name, ch->term, !r ? "deleted" : atomic_load(&ch->failed) ? "failed here" :
                "moved");
        hchan *f = unhost_locked(n, i);
        if (f)
            to_free[nf++] = f;
    }
    pthread_mutex_unlock(&n->mu);
    for (int i = 0; i < nf; i++)
        chan_free(to_free[i]);
    /* Host what is ours and not hosted. */
    for (size_t k = 0; k < nr && !atomic_load(&n->stop); k++) {
        const stream_channel *r = &recs[k];
        if (strcmp(r->owner, n->cfg->node_id) != 0 || strcmp(r->addr, n->addr) != 0)
            continue;
        hchan *ch = chan_get(n, r->name);
        if (ch) {
            chan_put(n, ch);
            continue;
        }
        int hrc = host(n, r);
        if (hrc)
            wp__log(n->lg, WP_LOG_WARN, "node %s: cannot host channel '%s': %s (%s)",
                    n->cfg->node_id, r->name, wp_strerror(hrc), wp_errmsg());
    }
    free(recs);
    /* Producers' snapshots. */
    int64_t now = wp__now_ns(), every = n->cfg->stream_producer_snapshot_ms * 1000000LL;
    pthread_mutex_lock(&n->mu);
    int cnt = n->n_chans;
    hchan **snap = malloc((size_t)(cnt ? cnt : 1) * sizeof *snap);
    int ns = 0;
    for (int i = 0; snap && i < cnt; i++)
        if (atomic_load(&n->chans[i]->snap_dirty) && now - n->chans[i]->snap_ns >= every) {
            snap[ns++] = n->chans[i];
            n->chans[i]->refs++;
        }
    pthread_mutex_unlock(&n->mu);
    for (int i = 0; i < ns; i++) {
        atomic_store(&snap[i]->snap_dirty, false);
        snap[i]->snap_ns = now;
        snapshot_write(n, snap[i]);
        chan_put(n, snap[i]);
    }
    free(snap);
    return WP_OK;
}

static int register_node(stream_node *n)
{
    meta_node nd = {.lease_id = n->lease_id, .registered_ms = wp__wall_ms()};
    snprintf(nd.id, sizeof nd.id, "%s", n->cfg->node_id);
    snprintf(nd.kind, sizeof nd.kind, "%s", STREAM_NODE_KIND);
    snprintf(nd.addr, sizeof nd.addr, "%s", n->addr);
    snprintf(nd.zone, sizeof nd.zone, "%s", n->cfg->node_zone);
    pthread_mutex_lock(&n->mu);
    nd.load = n->n_chans;
    pthread_mutex_unlock(&n->mu);
    return n->m->ops->node_put(n->m, &nd);
}

static void on_change(void *arg)
{
    stream_node *n = arg;
    pthread_mutex_lock(&n->sync_mu);
    n->kick = true;
    pthread_cond_signal(&n->sync_cond);
    pthread_mutex_unlock(&n->sync_mu);
}

static void on_watch_failed(void *arg, int rc, const char *msg)
{
    stream_node *n = arg;
    wp__log(n->lg, WP_LOG_WARN, "node: watch ended (%s: %s); polling", wp_strerror(rc), msg);
}

/* The lease and the registration, on a thread of their own: a sync pass
 * that takes long (opening channels: writer recovery, the producers'
 * rebuild) must not let the lease lapse, or the coordinator would move
 * every channel of this node away and back. */
static void *lease_main(void *arg)
{
    stream_node *n = arg;
    int64_t ttl = n->cfg->stream_lease_ttl_ms;
    while (!atomic_load(&n->stop)) {
        int rc = n->m->ops->lease_keepalive(n->m, n->lease_id);
        if (rc == WP_ENOENT) {
            wp__log(n->lg, WP_LOG_WARN, "node %s: lease expired; registering again",
                    n->cfg->node_id);
            rc = n->m->ops->lease_grant(n->m, ttl, &n->lease_id);
        }
        if (rc == WP_OK)
            rc = register_node(n);
        if (rc)
            wp__log(n->lg, WP_LOG_WARN, "node %s: keeping the registration: %s (%s)",
                    n->cfg->node_id, wp_strerror(rc), wp_errmsg());
        int64_t due = wp__now_ns() + (rc ? ttl / 10 : ttl / 3) * 1000000LL;
        struct timespec ts = {due / 1000000000LL, due % 1000000000LL};
        pthread_mutex_lock(&n->sync_mu);
        while (!atomic_load(&n->stop) &&
               pthread_cond_timedwait(&n->lease_cond, &n->sync_mu, &ts) == 0)
            ;
        pthread_mutex_unlock(&n->sync_mu);
    }
    return NULL;
}

static void *sync_main(void *arg)
{
    stream_node *n = arg;
    while (!atomic_load(&n->stop)) {
        int rc = sync_pass(n);
        if (rc)
            wp__log(n->lg, WP_LOG_WARN, "node %s: %s (%s)", n->cfg->node_id, wp_strerror(rc),
                    wp_errmsg());
        int64_t wait_ms = n->cfg->stream_assign_interval_ms;
        int64_t due = wp__now_ns() + wait_ms * 1000000LL;
        struct timespec ts = {due / 1000000000LL, due % 1000000000LL};
        pthread_mutex_lock(&n->sync_mu);
        while (!atomic_load(&n->stop) && !n->kick &&
               pthread_cond_timedwait(&n->sync_cond, &n->sync_mu, &ts) == 0)
            ;
        n->kick = false;
        pthread_mutex_unlock(&n->sync_mu);
    }
    return NULL;
}

/* ---- HTTP plumbing ------------------------------------------------------------ */

typedef struct {
    char *body;
    size_t len, cap;
    bool too_big, answered; /* too_big: body above the limit (len counts it, body is gone) */
} request;

static int http_status(int rc)
{
    switch (rc) {
    case WP_EINVAL: return MHD_HTTP_BAD_REQUEST;
    case WP_ENOENT: return MHD_HTTP_NOT_FOUND;
    case WP_EEXIST: return MHD_HTTP_CONFLICT;
    case WP_ETOOBIG: return MHD_HTTP_CONTENT_TOO_LARGE;
    case WP_EUNAVAILABLE: return MHD_HTTP_SERVICE_UNAVAILABLE;
    case WP_ETRUNCATED: return MHD_HTTP_GONE;
    default: return MHD_HTTP_INTERNAL_SERVER_ERROR;
    }
}

static enum MHD_Result send_json(struct MHD_Connection *conn, int status, cJSON *o)
{
    char *s = o ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    if (!s)
        return MHD_NO;
    size_t len = strlen(s);
    char *body = malloc(len + 1);
    if (!body) {
        cJSON_free(s);
        return MHD_NO;
    }
    memcpy(body, s, len);
    body[len] = '\n';
    cJSON_free(s);
    struct MHD_Response *r = MHD_create_response_from_buffer(len + 1, body, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", "application/json");
    enum MHD_Result ret = MHD_queue_response(conn, (unsigned)status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result send_error(struct MHD_Connection *conn, int status, const char *code,
                                  const char *msg)
{
    cJSON *o = cJSON_CreateObject();
    if (o) {
        cJSON_AddStringToObject(o, "error", code);
        cJSON_AddStringToObject(o, "message", msg ? msg : "");
    }
    return send_json(conn, status, o);
}

static const char *code_name(int rc)
{
    switch (rc) {
#define CODE_NAME(name, val, msg)                                                             \
    case val:                                                                                 \
        return "WP_" #name;
        WP_ERRNO_MAP(CODE_NAME)
#undef CODE_NAME
    default:
        return "WP_EIO";
    }
}

static enum MHD_Result send_rc(struct MHD_Connection *conn, int rc)
{
    return send_error(conn, http_status(rc), code_name(rc), wp_errmsg());
}

/* 421 (not the owner here) with the owner as the records say, or 404 /
 * 503 (ours, being opened). */
static enum MHD_Result send_not_here(stream_node *n, struct MHD_Connection *conn, const char *name)
{
    stream_channel rec;
    int rc = stream_channel_get(n->m, name, &rec);
    if (rc == WP_ENOENT)
        return send_error(conn, MHD_HTTP_NOT_FOUND, "WP_ENOENT", "no such channel");
    if (rc)
        return send_rc(conn, rc);
    if (strcmp(rec.owner, n->cfg->node_id) == 0 && strcmp(rec.addr, n->addr) == 0) {
        on_change(n); /* host it now */
        return send_error(conn, MHD_HTTP_SERVICE_UNAVAILABLE, "WP_EUNAVAILABLE",
                          "the channel is being opened on this node: retry");
    }
    cJSON *o = cJSON_CreateObject();
    if (o) {
        cJSON_AddStringToObject(o, "error", "WP_EUNAVAILABLE");
        cJSON_AddStringToObject(o, "message", rec.owner[0] ? "the channel is owned by another node"
                                                           : "the channel is not assigned yet");
        cJSON_AddStringToObject(o, "owner", rec.owner);
        cJSON_AddStringToObject(o, "addr", rec.addr);
        cJSON_AddNumberToObject(o, "term", (double)rec.term);
    }
    return send_json(conn, rec.owner[0] ? MHD_HTTP_MISDIRECTED_REQUEST
                                        : MHD_HTTP_SERVICE_UNAVAILABLE, o);
}

/* ---- base64, UTF-8 ------------------------------------------------------------ */

static char *b64_encode(const uint8_t *p, size_t n)
{
    char *out = malloc(4 * ((n + 2) / 3) + 1);
    if (out)
        EVP_EncodeBlock((unsigned char *)out, p, (int)n);
    return out;
}

/* Decodes standard base64 (with padding); NULL if it is not. */
static uint8_t *b64_decode(const char *s, size_t *len)
{
    size_t n = strlen(s);
    if (n % 4 != 0 || n > (size_t)INT32_MAX)
        return NULL;
    uint8_t *out = malloc(n / 4 * 3 + 1);
    if (!out)
        return NULL;
    int got = n ? EVP_DecodeBlock(out, (const unsigned char *)s, (int)n) : 0;
    if (got < 0) {
        free(out);
        return NULL;
    }
    size_t pad = n >= 1 && s[n - 1] == '=' ? (n >= 2 && s[n - 2] == '=' ? 2 : 1) : 0;
    *len = (size_t)got - pad;
    return out;
}

/* ---- channel admin ------------------------------------------------------------- */

static cJSON *channel_obj(const stream_channel *ch)
{
    char *v = stream_channel_json(ch);
    cJSON *o = v ? cJSON_Parse(v) : NULL;
    free(v);
    if (o)
        cJSON_AddStringToObject(o, "name", ch->name);
    return o;
}

static enum MHD_Result channel_create(stream_node *n, struct MHD_Connection *conn, const request *rq)
{
    cJSON *o = cJSON_ParseWithLength(rq->body ? rq->body : "", rq->len);
    const cJSON *nm = cJSON_GetObjectItemCaseSensitive(o, "name");
    char name[STREAM_CHANNEL_MAX + 1];
    bool ok = cJSON_IsString(nm) && stream_channel_valid(nm->valuestring);
    if (ok)
        snprintf(name, sizeof name, "%s", nm->valuestring);
    cJSON_Delete(o);
    if (!ok)
        return send_error(conn, MHD_HTTP_BAD_REQUEST, "WP_EINVAL",
                          "want {\"name\": \"<1..128 bytes of [A-Za-z0-9._-]>\"}");
    char log[WP_LOG_NAME_MAX + 1];
    stream_log_name(name, log);
    int rc = wp_log_create(n->c, log);
    if (rc == WP_EEXIST) /* a create that stopped before its record: go on */
        rc = WP_OK;
    stream_channel ch = {.created_ms = wp__wall_ms()};
    snprintf(ch.name, sizeof ch.name, "%s", name);
    char *v = rc ? NULL : stream_channel_json(&ch);
    if (!rc && !v)
        rc = wp__err(WP_ENOMEM, "channel record");
    char key[META_KV_KEY_MAX + 1];
    snprintf(key, sizeof key, "%s%s", STREAM_KEY_CHANNELS, name);
    if (rc == WP_OK)
        rc = n->m->ops->kv_put(n->m, key, v, strlen(v), 0, 0, &ch.rev);
    free(v);
    if (rc == WP_EEXIST)
        return send_error(conn, MHD_HTTP_CONFLICT, "WP_EEXIST", "the channel exists");
    if (rc)
        return send_rc(conn, rc);
    return send_json(conn, MHD_HTTP_CREATED, channel_obj(&ch));
}

static enum MHD_Result channel_list(stream_node *n, struct MHD_Connection *conn)
{
    stream_channel *recs = NULL;
    size_t nr = 0;
    int rc = stream_channel_list(n->m, &recs, &nr);
    if (rc)
        return send_rc(conn, rc);
    cJSON *o = cJSON_CreateObject(), *arr = o ? cJSON_AddArrayToObject(o, "channels") : NULL;
    for (size_t i = 0; arr && i < nr; i++)
        cJSON_AddItemToArray(arr, channel_obj(&recs[i]));
    free(recs);
    return send_json(conn, MHD_HTTP_OK, o);
}

static enum MHD_Result channel_get(stream_node *n, struct MHD_Connection *conn, const char *name)
{
    stream_channel rec;
    int rc = stream_channel_get(n->m, name, &rec);
    if (rc == WP_ENOENT)
        return send_error(conn, MHD_HTTP_NOT_FOUND, "WP_ENOENT", "no such channel");
    if (rc)
        return send_rc(conn, rc);
    return send_json(conn, MHD_HTTP_OK, channel_obj(&rec));
}

static enum MHD_Result channel_delete(stream_node *n, struct MHD_Connection *conn, const char *name)
{
    char key[META_KV_KEY_MAX + 1], log[WP_LOG_NAME_MAX + 1];
    snprintf(key, sizeof key, "%s%s", STREAM_KEY_CHANNELS, name);
    int rc = n->m->ops->kv_delete(n->m, key, 0);
    if (rc == WP_ENOENT)
        return send_error(conn, MHD_HTTP_NOT_FOUND, "WP_ENOENT", "no such channel");
    if (rc)
        return send_rc(conn, rc);
    snprintf(key, sizeof key, "%s%s", STREAM_KEY_PRODUCERS, name);
    (void)n->m->ops->kv_delete(n->m, key, 0);
    stream_log_name(name, log);
    /* The log's record is deleted by CAS: an owner opening the channel's
     * writer at this moment (it has not seen the record go) changes it
     * under us. With the channel record gone no owner opens it again, so
     * the delete is tried again, for a while. */
    int64_t until = wp__now_ns() + DELETE_RETRY_MS * 1000000LL;
    while ((rc = wp_log_delete(n->c, log)) == WP_ECONFLICT && wp__now_ns() < until) {
        on_change(n);
        usleep(50 * 1000);
    }
    if (rc && rc != WP_ENOENT)
        return send_rc(conn, rc);
    on_change(n); /* an owner here lets go at once */
    struct MHD_Response *r = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
    enum MHD_Result ret = r ? MHD_queue_response(conn, MHD_HTTP_NO_CONTENT, r) : MHD_NO;
    if (r)
        MHD_destroy_response(r);
    return ret;
}

/* ---- produce ------------------------------------------------------------------ */

typedef struct preq preq;
typedef struct {
    preq *q;
    int i;
    producer *p; /* NULL: no producer */
    int64_t seq;
    int slot;    /* of seq in p's window when it was pushed */
} pmsg_ctx;

/* A produce request's acks: pending counts the appends whose callback has
 * not run, plus one that the request holds until it has enqueued them all
 * (so it cannot reach 0 early); whoever brings it to 0 sets done. The
 * callbacks take no lock but for the last. */
struct preq {
    pthread_mutex_t mu; /* done */
    pthread_cond_t cond;
    atomic_int pending;
    atomic_int first_rc;
    bool done;
    hchan *ch;
    wp_msg_id *ids;
    bool *dup;
    pmsg_ctx *ctx;
};

static void produce_cb(void *arg, int rc, wp_msg_id id)
{
    pmsg_ctx *x = arg;
    preq *q = x->q;
    hchan *ch = q->ch;
    if (rc)
        atomic_store(&ch->failed, rc); /* the writer has failed for good */
    if (x->p) {
        pthread_mutex_lock(&ch->pmu);
        /* Still there unless the window moved past it (seqs are unique in it). */
        int s = x->p->seq[x->slot] == x->seq ? x->slot : -1;
        if (s >= 0)
            x->p->ids[s] = rc ? (wp_msg_id){-2, -2} : id;
        atomic_store(&ch->snap_dirty, true);
        if (ch->pwaiters > 0) /* a duplicate waits for an id */
            pthread_cond_broadcast(&ch->pcond);
        pthread_mutex_unlock(&ch->pmu);
    }
    q->ids[x->i] = id; /* this slot is this callback's alone */
    int none = 0;
    if (rc)
        atomic_compare_exchange_strong(&q->first_rc, &none, rc);
    if (atomic_fetch_sub(&q->pending, 1) == 1) {
        pthread_mutex_lock(&q->mu);
        q->done = true;
        pthread_cond_signal(&q->cond);
        pthread_mutex_unlock(&q->mu);
    }
}

#define PMSG_PROPS_INLINE 4 /* the two wp. ones and two of the user's */

typedef struct {
    const uint8_t *data;
    size_t len;
    uint8_t *owned;
    int n_props;
    const char **keys, **vals; /* kin/vin, or malloc'd for more */
    const char *kin[PMSG_PROPS_INLINE], *vin[PMSG_PROPS_INLINE];
    int64_t seq;
    char seqbuf[24];
} pmsg;

/* Room for n properties (the user's and the two wp. ones). */
static int pmsg_props_room(pmsg *m, size_t n)
{
    if (n <= PMSG_PROPS_INLINE) {
        m->keys = m->kin;
        m->vals = m->vin;
        return WP_OK;
    }
    m->keys = malloc(n * sizeof *m->keys);
    m->vals = malloc(n * sizeof *m->vals);
    if (!m->keys || !m->vals)
        return wp__err(WP_ENOMEM, "%zu properties", n);
    return WP_OK;
}

static void pmsg_free(pmsg *m)
{
    free(m->owned);
    if (m->keys != m->kin)
        free(m->keys);
    if (m->vals != m->vin)
        free(m->vals);
}

/* The message's producer properties (wp.p, wp.s), after its own. */
static void pmsg_add_producer(pmsg *m, const char *producer_id)
{
    char t[24], *w = t + sizeof t; /* the seq in decimal (>= 0), without printf */
    uint64_t v = (uint64_t)m->seq;
    do {
        *--w = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    memcpy(m->seqbuf, w, (size_t)(t + sizeof t - w));
    m->seqbuf[t + sizeof t - w] = '\0';
    m->keys[m->n_props] = "wp.p";
    m->vals[m->n_props++] = producer_id;
    m->keys[m->n_props] = "wp.s";
    m->vals[m->n_props++] = m->seqbuf;
}

/* Parses one message of a JSON produce request. */
static int parse_msg(const cJSON *m, bool with_producer, const char *producer_id, pmsg *out)
{
    *out = (pmsg){.seq = -1};
    if (!cJSON_IsObject(m))
        return wp__err(WP_EINVAL, "a message is not an object");
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(m, "payload");
    const cJSON *b = cJSON_GetObjectItemCaseSensitive(m, "payload_b64");
    if (cJSON_IsString(p) && !b) {
        out->data = (const uint8_t *)p->valuestring;
        out->len = strlen(p->valuestring);
    } else if (cJSON_IsString(b) && !p) {
        out->owned = b64_decode(b->valuestring, &out->len);
        if (!out->owned)
            return wp__err(WP_EINVAL, "payload_b64 is not base64");
        out->data = out->owned;
    } else {
        return wp__err(WP_EINVAL, "a message needs exactly one of payload, payload_b64");
    }
    const cJSON *props = cJSON_GetObjectItemCaseSensitive(m, "props"), *kv;
    if (props && !cJSON_IsObject(props))
        return wp__err(WP_EINVAL, "props is not an object");
    int np = props ? cJSON_GetArraySize(props) : 0;
    if (np > 64)
        return wp__err(WP_EINVAL, "more than 64 properties");
    int rc = pmsg_props_room(out, (size_t)np + 2);
    if (rc)
        return rc;
    cJSON_ArrayForEach(kv, props)
    {
        if (!cJSON_IsString(kv))
            return wp__err(WP_EINVAL, "property '%.64s' is not a string", kv->string);
        if (strncmp(kv->string, "wp.", 3) == 0)
            return wp__err(WP_EINVAL, "property names starting with 'wp.' are reserved");
        out->keys[out->n_props] = kv->string;
        out->vals[out->n_props++] = kv->valuestring;
    }
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(m, "seq");
    if (with_producer) {
        if (!cJSON_IsNumber(s) || s->valuedouble < 0 || s->valuedouble >= (double)WPM_SEQ_MAX ||
            s->valuedouble != (double)(int64_t)s->valuedouble)
            return wp__err(WP_EINVAL, "with a producer, every message needs an integer seq >= 0");
        out->seq = (int64_t)s->valuedouble;
        pmsg_add_producer(out, producer_id);
    } else if (s) {
        return wp__err(WP_EINVAL, "seq without a producer");
    }
    return WP_OK;
}

/* A produce request, decoded: the messages point into the request's body
 * (or its JSON tree). */
typedef struct {
    bool binary;       /* application/vnd.woodpecker.messages (§7) */
    cJSON *json;
    int count;
    int64_t term;      /* -1: none */
    const char *pid;   /* NULL: no producer */
    char pid_buf[WPM_PRODUCER_MAX + 1];
    pmsg *pm;
} pinput;

static int parse_json_request(const request *rq, pinput *in)
{
    cJSON *o = in->json = cJSON_ParseWithLength(rq->body ? rq->body : "", rq->len);
    const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(o, "messages");
    const cJSON *term = cJSON_GetObjectItemCaseSensitive(o, "term");
    const cJSON *prod = cJSON_GetObjectItemCaseSensitive(o, "producer");
    int count = cJSON_IsArray(msgs) ? cJSON_GetArraySize(msgs) : -1;
    if (!o)
        return wp__err(WP_EINVAL, "the body is not JSON (near byte %zu)",
                       cJSON_GetErrorPtr() && rq->body ? (size_t)(cJSON_GetErrorPtr() - rq->body) : 0);
    if (!cJSON_IsObject(o) || count < 1 || count > MESSAGES_MAX)
        return wp__err(WP_EINVAL, "want {\"messages\": [1..%d messages], ...}", MESSAGES_MAX);
    if (term && (!cJSON_IsNumber(term) || term->valuedouble < 0))
        return wp__err(WP_EINVAL, "term is not a number >= 0");
    if (prod && (!cJSON_IsString(prod) || !prod->valuestring[0] ||
                 strlen(prod->valuestring) > PRODUCER_ID_MAX))
        return wp__err(WP_EINVAL, "producer is not a string of 1..%d bytes", PRODUCER_ID_MAX);
    in->term = term ? (int64_t)term->valuedouble : -1;
    in->pid = prod ? prod->valuestring : NULL;
    in->count = count;
    if (!(in->pm = calloc((size_t)count, sizeof *in->pm)))
        return wp__err(WP_ENOMEM, "produce of %d messages", count);
    int mi = 0, rc = WP_OK;
    const cJSON *msg;
    cJSON_ArrayForEach(msg, msgs) /* one walk: cJSON_GetArrayItem(i) is linear in i */
    {
        if (rc != WP_OK || mi >= count)
            break;
        rc = parse_msg(msg, in->pid != NULL, in->pid, &in->pm[mi++]);
    }
    return rc;
}

static int parse_wpm_request(const request *rq, size_t max_payload, pinput *in)
{
    const uint8_t *b = (const uint8_t *)rq->body;
    size_t n = rq->body ? rq->len : 0, off = 0;
    char why[WPM_WHY_MAX];
    wpm_req_hdr h;
    if (wpm_req_hdr_decode(b, n, &h, &off, why))
        return wp__err(WP_EINVAL, "%s", why);
    in->term = h.term;
    if (h.producer[0]) {
        memcpy(in->pid_buf, h.producer, sizeof in->pid_buf);
        in->pid = in->pid_buf;
    }
    /* Decode (and check) each message once, into a growing array of views
     * into the body; then the messages to append point at them. */
    wpm_msg *ms = NULL;
    int count = 0, cap = 0, rc = WP_OK;
    while (rc == WP_OK && off < n) {
        if (count >= MESSAGES_MAX) {
            rc = wp__err(WP_EINVAL, "more than %d messages", MESSAGES_MAX);
            break;
        }
        if (count == cap) {
            int nc = cap ? 2 * cap : 256;
            wpm_msg *g = realloc(ms, (size_t)nc * sizeof *g);
            if (!g) {
                rc = wp__err(WP_ENOMEM, "produce of %d messages", nc);
                break;
            }
            ms = g;
            cap = nc;
        }
        wpm_msg *m = &ms[count];
        *m = (wpm_msg){0};
        if (wpm_req_msg_decode(b, n, &off, max_payload, 64, m, why))
            rc = wp__err(m->len > max_payload ? WP_ETOOBIG : WP_EINVAL, "message %d: %s", count,
                         why);
        else
            count++;
    }
    if (rc == WP_OK && count < 1)
        rc = wp__err(WP_EINVAL, "no message in the request");
    if (rc == WP_OK && !(in->pm = calloc((size_t)count, sizeof *in->pm)))
        rc = wp__err(WP_ENOMEM, "produce of %d messages", count);
    in->count = in->pm ? count : 0;
    for (int i = 0; rc == WP_OK && i < count; i++) {
        const wpm_msg *m = &ms[i];
        pmsg *pm = &in->pm[i];
        *pm = (pmsg){.data = m->data, .len = m->len, .seq = m->seq};
        if (in->pid ? m->seq < 0 : m->seq >= 0) {
            rc = wp__err(WP_EINVAL, "message %d: %s", i,
                         in->pid ? "with a producer, every message needs a seq >= 0"
                                 : "seq without a producer");
            break;
        }
        if ((rc = pmsg_props_room(pm, (size_t)m->n_props + 2)))
            break;
        size_t po = 0, kl, vl;
        const char *k, *v;
        while (rc == WP_OK && wpm_prop_next(m, &po, &k, &kl, &v, &vl)) {
            if (strncmp(k, "wp.", 3) == 0)
                rc = wp__err(WP_EINVAL, "property names starting with 'wp.' are reserved");
            pm->keys[pm->n_props] = k;
            pm->vals[pm->n_props++] = v;
        }
        if (rc == WP_OK && in->pid)
            pmsg_add_producer(pm, in->pid);
    }
    free(ms);
    return rc;
}

static bool is_wpm(struct MHD_Connection *conn, enum MHD_ValueKind kind, const char *header)
{
    const char *v = MHD_lookup_connection_value(conn, kind, header);
    return v && strcasestr(v, WPM_CONTENT_TYPE) != NULL; /* Accept may list several */
}

static enum MHD_Result send_wpm(struct MHD_Connection *conn, uint8_t *body, size_t len)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", WPM_CONTENT_TYPE);
    enum MHD_Result ret = MHD_queue_response(conn, MHD_HTTP_OK, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result produce_answer(struct MHD_Connection *conn, const pinput *in, int64_t term,
                                      const wp_msg_id *ids, const bool *dup)
{
    if (in->binary) {
        size_t len = WPM_ANS_HDR_FIXED + (size_t)in->count * WPM_ANS_ID;
        uint8_t *b = malloc(len);
        if (!b)
            return send_rc(conn, wp__err(WP_ENOMEM, "answer"));
        uint8_t *p = wpm_put_ans_hdr(b, term, (uint32_t)in->count);
        for (int i = 0; i < in->count; i++)
            p = wpm_put_ans_id(p, ids[i].segment_id >= 0 ? ids[i] : (wp_msg_id){-1, -1}, dup[i]);
        return send_wpm(conn, b, len);
    }
    cJSON *a = cJSON_CreateObject(), *ja = a ? cJSON_AddArrayToObject(a, "ids") : NULL;
    cJSON *dups = a ? cJSON_AddArrayToObject(a, "dup") : NULL;
    if (a)
        cJSON_AddNumberToObject(a, "term", (double)term);
    for (int i = 0; ja && dups && i < in->count; i++) {
        char t[48];
        stream_id_text(ids[i], t);
        cJSON_AddItemToArray(ja, ids[i].segment_id >= 0 ? cJSON_CreateString(t) : cJSON_CreateNull());
        cJSON_AddItemToArray(dups, cJSON_CreateBool(dup[i]));
    }
    return send_json(conn, MHD_HTTP_OK, a);
}

static enum MHD_Result produce(stream_node *n, struct MHD_Connection *conn, const char *name,
                               const request *rq)
{
    hchan *ch = chan_get(n, name);
    if (!ch)
        return send_not_here(n, conn, name);
    pinput in = {.binary = is_wpm(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE), .term = -1};
    int rc = in.binary ? parse_wpm_request(rq, (size_t)n->cfg->writer_max_entry_bytes, &in)
                       : parse_json_request(rq, &in);
    enum MHD_Result ret;
    preq q = {.pending = 1, .ch = ch}; /* 1: the request's own count (see preq) */
    pthread_mutex_init(&q.mu, NULL);
    pthread_cond_init(&q.cond, NULL);
    if (rc) {
        ret = send_rc(conn, rc);
        goto out;
    }
    if (in.term >= 0 && in.term < ch->term) {
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "error", "stale_term");
        cJSON_AddStringToObject(e, "message", "the channel moved since: look its owner up again");
        cJSON_AddNumberToObject(e, "term", (double)ch->term);
        ret = send_json(conn, MHD_HTTP_CONFLICT, e);
        goto out;
    }
    if (in.term > ch->term) {
        on_change(n);
        ret = send_not_here(n, conn, name);
        goto out;
    }
    int count = in.count;
    pmsg *pm = in.pm;
    const char *pid = in.pid;
    q.ids = calloc((size_t)count, sizeof *q.ids);
    q.dup = calloc((size_t)count, sizeof *q.dup);
    q.ctx = calloc((size_t)count, sizeof *q.ctx);
    if (!q.ids || !q.dup || !q.ctx)
        rc = wp__err(WP_ENOMEM, "produce of %d messages", count);
    /* Enqueue in order, under the produce lock: a producer's seqs are
     * checked and appended in one order. */
    pthread_mutex_lock(&ch->produce_mu);
    producer *p = NULL; /* the request's producer (entries are never freed while hosted) */
    if (rc == WP_OK && pid) {
        pthread_mutex_lock(&ch->pmu);
        p = producer_find(ch, pid, true);
        pthread_mutex_unlock(&ch->pmu);
        if (!p)
            rc = wp__err(WP_ENOMEM, "producer table");
    }
    for (int i = 0; rc == WP_OK && i < count; i++) {
        int64_t prev_last = -1;
        int slot = -1;
        if (p) {
            pthread_mutex_lock(&ch->pmu);
            prev_last = p->last_seq;
            bool dup = pm[i].seq <= p->last_seq;
            if (!dup)
                slot = producer_push(ch, p, pm[i].seq, (wp_msg_id){-1, -1});
            pthread_mutex_unlock(&ch->pmu);
            if (dup) {
                q.dup[i] = true;
                continue;
            }
        }
        q.ctx[i] = (pmsg_ctx){.q = &q, .i = i, .p = p, .seq = pm[i].seq, .slot = slot};
        wp_payload pl = {.data = pm[i].data, .len = pm[i].len, .n_props = (size_t)pm[i].n_props,
                         .prop_keys = pm[i].keys, .prop_values = pm[i].vals};
        atomic_fetch_add(&q.pending, 1);
        rc = wp_writer_append_entry_async(ch->w, &pl, 0, produce_cb, &q.ctx[i]);
        if (rc) {
            atomic_fetch_sub(&q.pending, 1); /* its callback will not run */
            if (p) { /* not appended: the seq is not taken (it was pushed last) */
                pthread_mutex_lock(&ch->pmu);
                int newest = (p->head + p->n - 1) % ch->window;
                if (p->n < ch->window) {
                    p->n--;
                } else { /* it took the oldest's slot: leave a dead one */
                    p->seq[newest] = -1;
                    p->ids[newest] = (wp_msg_id){-2, -2};
                }
                p->last_seq = prev_last;
                pthread_mutex_unlock(&ch->pmu);
            }
            if (rc != WP_ETOOBIG && rc != WP_EINVAL)
                atomic_store(&ch->failed, rc);
        }
    }
    pthread_mutex_unlock(&ch->produce_mu);
    /* Wait for the acks (the callbacks run on the writer's thread). */
    if (atomic_fetch_sub(&q.pending, 1) != 1) { /* the request's own count */
        pthread_mutex_lock(&q.mu);
        while (!q.done)
            pthread_cond_wait(&q.cond, &q.mu);
        pthread_mutex_unlock(&q.mu);
    }
    if (!rc)
        rc = atomic_load(&q.first_rc);
    /* Duplicates answer with the id their seq got the first time, once
     * that one is durable. */
    for (int i = 0; rc == WP_OK && i < count; i++) {
        if (!q.dup[i])
            continue;
        pthread_mutex_lock(&ch->pmu);
        int s;
        while (p && (s = producer_slot(ch, p, pm[i].seq)) >= 0 && p->ids[s].segment_id == -1 &&
               !atomic_load(&ch->failed)) {
            ch->pwaiters++;
            pthread_cond_wait(&ch->pcond, &ch->pmu);
            ch->pwaiters--;
        }
        s = p ? producer_slot(ch, p, pm[i].seq) : -1;
        q.ids[i] = s >= 0 && p->ids[s].segment_id >= 0 ? p->ids[s] : (wp_msg_id){-1, -1};
        pthread_mutex_unlock(&ch->pmu);
    }
    if (rc == WP_OK) {
        ret = produce_answer(conn, &in, ch->term, q.ids, q.dup);
    } else if (rc == WP_EFENCED) { /* another owner took the channel over */
        on_change(n);
        ret = send_error(conn, MHD_HTTP_MISDIRECTED_REQUEST, "WP_EFENCED",
                         "the channel moved to another node: look its owner up again");
    } else {
        ret = send_rc(conn, rc);
    }
out:
    for (int i = 0; in.pm && i < in.count; i++)
        pmsg_free(&in.pm[i]);
    free(in.pm);
    free(q.ids);
    free(q.dup);
    free(q.ctx);
    pthread_mutex_destroy(&q.mu);
    pthread_cond_destroy(&q.cond);
    cJSON_Delete(in.json);
    chan_put(n, ch);
    return ret;
}

/* ---- consume ------------------------------------------------------------------ */

static cJSON *message_obj(const wp_entry *e)
{
    cJSON *m = cJSON_CreateObject();
    char t[48];
    stream_id_text(e->id, t);
    if (!m || !cJSON_AddStringToObject(m, "id", t))
        goto fail;
    if (wpm_utf8_valid(e->data, e->len)) {
        char *s = malloc(e->len + 1);
        if (!s)
            goto fail;
        memcpy(s, e->data, e->len);
        s[e->len] = '\0';
        bool ok = cJSON_AddStringToObject(m, "payload", s) != NULL;
        free(s);
        if (!ok)
            goto fail;
    } else {
        char *s = b64_encode(e->data, e->len);
        bool ok = s && cJSON_AddStringToObject(m, "payload_b64", s);
        free(s);
        if (!ok)
            goto fail;
    }
    cJSON *props = NULL;
    for (size_t i = 0; i < e->n_props; i++) {
        if (strncmp(e->prop_keys[i], "wp.", 3) == 0) {
            if (strcmp(e->prop_keys[i], "wp.p") == 0)
                cJSON_AddStringToObject(m, "producer", e->prop_values[i]);
            else if (strcmp(e->prop_keys[i], "wp.s") == 0)
                cJSON_AddNumberToObject(m, "seq", strtod(e->prop_values[i], NULL));
            continue;
        }
        if (!props && !(props = cJSON_AddObjectToObject(m, "props")))
            goto fail;
        cJSON_AddStringToObject(props, e->prop_keys[i], e->prop_values[i]);
    }
    return m;
fail:
    cJSON_Delete(m);
    return NULL;
}

/* ---- subscriptions (docs/streaming-api.md §5) -------------------------------- */

#define SUB_PREFIX "sub."

static bool sub_name_valid(const char *s)
{
    return s && strlen(s) <= WP_READER_NAME_MAX - strlen(SUB_PREFIX) && stream_channel_valid(s);
}

/* The subscription's record (a reader record of the channel's log, with no
 * lease: it holds GC until deleted). WP_ENOENT if none. */
static int sub_get(stream_node *n, hchan *ch, const char *sub, meta_reader *out)
{
    meta_reader *rs = NULL;
    size_t k = 0;
    int rc = n->m->ops->reader_list(n->m, ch->log_id, &rs, &k);
    if (rc)
        return rc;
    char full[WP_READER_NAME_MAX + 1];
    snprintf(full, sizeof full, "%s%s", SUB_PREFIX, sub);
    rc = wp__err(WP_ENOENT, "channel '%s' has no subscription '%s'", ch->name, sub);
    for (size_t i = 0; i < k; i++)
        if (strcmp(rs[i].name, full) == 0) {
            *out = rs[i];
            wp__err_clear();
            rc = WP_OK;
        }
    free(rs);
    return rc;
}

static int sub_put(stream_node *n, hchan *ch, const char *sub, wp_msg_id next)
{
    meta_reader r = {.log_id = ch->log_id, .seg_id = next.segment_id, .entry_id = next.entry_id};
    snprintf(r.name, sizeof r.name, "%s%s", SUB_PREFIX, sub);
    return n->m->ops->reader_put(n->m, &r);
}

/* The start position of a consume: from=all|latest|at|after [&id=S:E];
 * with sub=NAME and no from, where the subscription acknowledged (created
 * at from's position, default all, if it does not exist). */
static int consume_start_plain(hchan *ch, struct MHD_Connection *conn, wp_msg_id *pos);

static int consume_start(stream_node *n, hchan *ch, struct MHD_Connection *conn, wp_msg_id *pos)
{
    const char *sub = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "sub");
    const char *from = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "from");
    if (!sub)
        return consume_start_plain(ch, conn, pos);
    if (!sub_name_valid(sub))
        return wp__err(WP_EINVAL, "sub: 1..%zu bytes of [A-Za-z0-9._-]",
                       (size_t)WP_READER_NAME_MAX - strlen(SUB_PREFIX));
    meta_reader r;
    int rc = sub_get(n, ch, sub, &r);
    if (rc == WP_OK && !from) {
        *pos = (wp_msg_id){r.seg_id, r.entry_id};
        return WP_OK;
    }
    if (rc != WP_ENOENT && rc != WP_OK)
        return rc;
    wp__err_clear();
    if ((rc = consume_start_plain(ch, conn, pos)))
        return rc;
    /* Created (or moved, with an explicit from) at that position. */
    return sub_put(n, ch, sub, pos->segment_id < 0 ? (wp_msg_id){0, 0} : *pos);
}

static int consume_start_plain(hchan *ch, struct MHD_Connection *conn, wp_msg_id *pos)
{
    const char *from = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "from");
    const char *ids = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "id");
    wp_msg_id id;
    if (!from || strcmp(from, "all") == 0) {
        *pos = WP_EARLIEST;
        return WP_OK;
    }
    if (strcmp(from, "latest") == 0) {
        wp_msg_id lac = wp_writer_lac(ch->w);
        wp_log_info info;
        if (lac.segment_id < 0 && wp_log_stat(ch->log, &info) == WP_OK)
            lac = info.last_id;
        *pos = lac.segment_id < 0 ? (wp_msg_id){0, 0}
                                  : (wp_msg_id){lac.segment_id, lac.entry_id + 1};
        return WP_OK;
    }
    if ((strcmp(from, "at") == 0 || strcmp(from, "after") == 0) && stream_id_parse(ids, &id)) {
        *pos = strcmp(from, "at") == 0 ? id : (wp_msg_id){id.segment_id, id.entry_id + 1};
        return WP_OK;
    }
    return wp__err(WP_EINVAL, "from is all, latest, at or after (the last two with id=S:E)");
}

static long query_long(struct MHD_Connection *conn, const char *k, long def, long lo, long hi,
                       int *rc)
{
    const char *v = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, k);
    if (!v)
        return def;
    char *end;
    long x = strtol(v, &end, 10);
    if (end == v || *end || x < lo || x > hi)
        *rc = wp__err(WP_EINVAL, "%s: want an integer in [%ld, %ld]", k, lo, hi);
    return x;
}

static bool still_hosted(stream_node *n, hchan *ch)
{
    pthread_mutex_lock(&n->mu);
    bool ok = !ch->gone && !atomic_load(&n->stop);
    pthread_mutex_unlock(&n->mu);
    return ok;
}

static enum MHD_Result consume_poll(stream_node *n, struct MHD_Connection *conn, hchan *ch)
{
    int rc = WP_OK;
    long max = query_long(conn, "max", POLL_MAX_DEFAULT, 1, POLL_MAX_MAX, &rc);
    long wait = query_long(conn, "wait_ms", WAIT_DEFAULT_MS, 0, WAIT_MAX_MS, &rc);
    wp_msg_id pos;
    if (rc == WP_OK)
        rc = consume_start(n, ch, conn, &pos);
    wp_reader *r = NULL;
    if (rc == WP_OK)
        rc = wp_reader_open(ch->log, pos, &r);
    if (rc)
        return send_rc(conn, rc);
    cJSON *o = cJSON_CreateObject(), *arr = o ? cJSON_AddArrayToObject(o, "messages") : NULL;
    wp_msg_id next = pos.segment_id < 0 ? (wp_msg_id){0, 0} : pos;
    int64_t deadline = wp__now_ns() + wait * 1000000LL;
    long got = 0;
    while (arr && got < max) {
        int64_t left = (deadline - wp__now_ns()) / 1000000LL;
        int slice = got > 0 ? 0 : left < 0 ? 0 : left > SLICE_MS ? SLICE_MS : (int)left;
        wp_entry e;
        rc = wp_reader_next(r, slice, &e);
        if (rc == WP_ETIMEDOUT) {
            rc = WP_OK;
            if (got > 0 || wp__now_ns() >= deadline || !still_hosted(n, ch))
                break;
            continue;
        }
        if (rc)
            break;
        cJSON *m = message_obj(&e);
        if (!m) {
            rc = wp__err(WP_ENOMEM, "message");
            break;
        }
        cJSON_AddItemToArray(arr, m);
        next = (wp_msg_id){e.id.segment_id, e.id.entry_id + 1};
        got++;
    }
    wp_reader_close(r);
    if (rc) {
        cJSON_Delete(o);
        return send_rc(conn, rc);
    }
    char t[48];
    stream_id_text(next, t);
    if (got == 0 && pos.segment_id < 0)
        t[0] = '\0'; /* from=all and nothing yet: ask with from=all again */
    cJSON_AddStringToObject(o, "next", t);
    return send_json(conn, MHD_HTTP_OK, o);
}

typedef struct {
    stream_node *n;
    hchan *ch;
    wp_reader *r;
    char *buf;
    size_t len, off, cap;
    int64_t last_sent_ns;
    bool ended;
    bool sent_any; /* messages went out since last_sent_ns was set */
    bool binary;  /* frames of docs/streaming-api.md §7, else NDJSON */
    bool started; /* the binary stream's magic went out */
} cstream;

/* Room for k more bytes in s->buf. */
static bool cstream_room(cstream *s, size_t k)
{
    if (s->len + k <= s->cap)
        return true;
    size_t cap = s->cap ? s->cap : 4096;
    while (cap < s->len + k)
        cap *= 2;
    char *b = realloc(s->buf, cap);
    if (!b)
        return false;
    s->buf = b;
    s->cap = cap;
    return true;
}

/* One message onto s->buf, as a frame or an NDJSON line. */
static bool cstream_put_msg(cstream *s, const wp_entry *e)
{
    if (s->binary) {
        size_t k = WPM_FRAME_MSG_FIXED + wpm_props_size(e->n_props, e->prop_keys, e->prop_values) +
                   e->len;
        if (!cstream_room(s, k))
            return false;
        wpm_put_frame_msg((uint8_t *)s->buf + s->len, e->id, e->data, e->len, e->n_props,
                          e->prop_keys, e->prop_values);
        s->len += k;
        return true;
    }
    cJSON *m = message_obj(e);
    char *t = m ? cJSON_PrintUnformatted(m) : NULL;
    cJSON_Delete(m);
    if (!t)
        return false;
    size_t l = strlen(t);
    bool ok = cstream_room(s, l + 1);
    if (ok) {
        memcpy(s->buf + s->len, t, l);
        s->buf[s->len + l] = '\n';
        s->len += l + 1;
    }
    cJSON_free(t);
    return ok;
}

static void cstream_free(void *cls)
{
    cstream *s = cls;
    wp_reader_close(s->r);
    chan_put(s->n, s->ch);
    free(s->buf);
    free(s);
}

/* Fills s->buf with the next message(s) (lines or frames); false when the
 * stream ends. */
static bool cstream_fill(cstream *s)
{
    s->len = s->off = 0;
    if (s->ended)
        return false;
    if (s->binary && !s->started) {
        if (!cstream_room(s, WPM_MAGIC_LEN))
            return false;
        memcpy(s->buf, WPM_MAGIC, WPM_MAGIC_LEN);
        s->len = WPM_MAGIC_LEN;
        s->started = true;
    }
    for (;;) {
        if (!still_hosted(s->n, s->ch)) {
            if (s->len)
                return true; /* the messages read first; the end line next time */
            cJSON *o = cJSON_CreateObject();
            stream_channel rec;
            if (o && stream_channel_get(s->n->m, s->ch->name, &rec) == WP_OK) {
                cJSON_AddStringToObject(o, "owner", rec.owner);
                cJSON_AddStringToObject(o, "addr", rec.addr);
            }
            if (o)
                cJSON_AddStringToObject(o, "end", atomic_load(&s->n->stop) ? "stopping" : "moved");
            char *t = o ? cJSON_PrintUnformatted(o) : NULL;
            cJSON_Delete(o);
            s->ended = true;
            if (!t)
                return false;
            size_t l = strlen(t);
            if (s->binary && l <= WPM_END_JSON_MAX && cstream_room(s, 5 + l)) {
                uint8_t *b = (uint8_t *)s->buf;
                b[0] = WPM_FRAME_END;
                le_put32(b + 1, (uint32_t)l);
                memcpy(b + 5, t, l);
                s->len = 5 + l;
            } else if (!s->binary && cstream_room(s, l + 1)) {
                memcpy(s->buf, t, l);
                s->buf[l] = '\n';
                s->len = l + 1;
            }
            cJSON_free(t);
            return s->len > 0;
        }
        wp_entry e;
        int rc = wp_reader_next(s->r, s->len ? 0 : SLICE_MS, &e);
        if (rc == WP_ETIMEDOUT && s->len) /* what is ready goes out as one chunk */
            return true;
        if (rc == WP_ETIMEDOUT) {
            if (s->sent_any) { /* the clock is read once per chunk, not per message */
                s->last_sent_ns = wp__now_ns();
                s->sent_any = false;
            }
            if (wp__now_ns() - s->last_sent_ns >= HEARTBEAT_MS * 1000000LL) {
                if (!cstream_room(s, 1))
                    return false;
                /* keeps proxies and the peer's socket alive */
                s->buf[0] = s->binary ? WPM_FRAME_HEARTBEAT : '\n';
                s->len = 1;
                s->last_sent_ns = wp__now_ns();
                return true;
            }
            continue;
        }
        if (rc) {
            wp__log(s->n->lg, WP_LOG_WARN, "channel '%s': pushed stream ends: %s (%s)",
                    s->ch->name, wp_strerror(rc), wp_errmsg());
            return s->len > 0; /* what was read goes out first */
        }
        if (!cstream_put_msg(s, &e))
            return s->len > 0;
        s->sent_any = true;
        if (s->len >= CHUNK_BYTES) /* one chunk: at most about this much */
            return true;
    }
}

static ssize_t cstream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)pos;
    cstream *s = cls;
    if (s->off == s->len && !cstream_fill(s))
        return MHD_CONTENT_READER_END_OF_STREAM;
    size_t k = s->len - s->off < max ? s->len - s->off : max;
    memcpy(buf, s->buf + s->off, k);
    s->off += k;
    return (ssize_t)k;
}

static enum MHD_Result consume_stream(stream_node *n, struct MHD_Connection *conn, hchan *ch)
{
    wp_msg_id pos;
    int rc = consume_start(n, ch, conn, &pos);
    cstream *s = rc ? NULL : calloc(1, sizeof *s);
    if (!rc && !s)
        rc = wp__err(WP_ENOMEM, "stream");
    if (rc == WP_OK && (rc = wp_reader_open(ch->log, pos, &s->r)) != WP_OK) {
        free(s);
        s = NULL;
    }
    if (rc) {
        chan_put(n, ch);
        return send_rc(conn, rc);
    }
    s->n = n;
    s->ch = ch; /* the reference goes with the stream */
    s->binary = is_wpm(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_ACCEPT);
    s->last_sent_ns = wp__now_ns();
    struct MHD_Response *r =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 64 * 1024, cstream_read, s, cstream_free);
    if (!r) {
        cstream_free(s);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", s->binary ? WPM_CONTENT_TYPE : "application/x-ndjson");
    enum MHD_Result ret = MHD_queue_response(conn, MHD_HTTP_OK, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result consume(stream_node *n, struct MHD_Connection *conn, const char *name)
{
    hchan *ch = chan_get(n, name);
    if (!ch)
        return send_not_here(n, conn, name);
    const char *st = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "stream");
    if (st && strcmp(st, "1") == 0)
        return consume_stream(n, conn, ch); /* keeps the reference */
    enum MHD_Result ret = consume_poll(n, conn, ch);
    chan_put(n, ch);
    return ret;
}

/* POST .../subscriptions/<sub>/ack {"id":"S:E"}: the subscription has
 * processed everything up to id; it moves forward only. */
static enum MHD_Result sub_ack(stream_node *n, struct MHD_Connection *conn, hchan *ch,
                               const char *sub, const request *rq)
{
    cJSON *o = cJSON_ParseWithLength(rq->body ? rq->body : "", rq->len);
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(o, "id");
    wp_msg_id at;
    bool ok = cJSON_IsString(id) && stream_id_parse(id->valuestring, &at);
    cJSON_Delete(o);
    if (!ok)
        return send_error(conn, MHD_HTTP_BAD_REQUEST, "WP_EINVAL", "want {\"id\": \"S:E\"}");
    wp_msg_id next = {at.segment_id, at.entry_id + 1};
    meta_reader r;
    int rc = sub_get(n, ch, sub, &r);
    if (rc)
        return send_rc(conn, rc);
    if (r.seg_id > next.segment_id || (r.seg_id == next.segment_id && r.entry_id > next.entry_id))
        next = (wp_msg_id){r.seg_id, r.entry_id}; /* acked further already */
    else if ((rc = sub_put(n, ch, sub, next)))
        return send_rc(conn, rc);
    cJSON *a = cJSON_CreateObject();
    char t[48];
    stream_id_text(next, t);
    if (a)
        cJSON_AddStringToObject(a, "next", t);
    return send_json(conn, MHD_HTTP_OK, a);
}

static enum MHD_Result sub_list(stream_node *n, struct MHD_Connection *conn, hchan *ch)
{
    meta_reader *rs = NULL;
    size_t k = 0;
    int rc = n->m->ops->reader_list(n->m, ch->log_id, &rs, &k);
    if (rc)
        return send_rc(conn, rc);
    cJSON *o = cJSON_CreateObject(), *arr = o ? cJSON_AddArrayToObject(o, "subscriptions") : NULL;
    for (size_t i = 0; arr && i < k; i++) {
        if (strncmp(rs[i].name, SUB_PREFIX, strlen(SUB_PREFIX)) != 0 || rs[i].lease_id != 0)
            continue;
        cJSON *e = cJSON_CreateObject();
        char t[48];
        stream_id_text((wp_msg_id){rs[i].seg_id, rs[i].entry_id}, t);
        if (e) {
            cJSON_AddStringToObject(e, "name", rs[i].name + strlen(SUB_PREFIX));
            cJSON_AddStringToObject(e, "next", t);
            cJSON_AddItemToArray(arr, e);
        }
    }
    free(rs);
    return send_json(conn, MHD_HTTP_OK, o);
}

static enum MHD_Result sub_delete(stream_node *n, struct MHD_Connection *conn, hchan *ch,
                                  const char *sub)
{
    char full[WP_READER_NAME_MAX + 1];
    snprintf(full, sizeof full, "%s%s", SUB_PREFIX, sub);
    int rc = n->m->ops->reader_delete(n->m, ch->log_id, full);
    if (rc)
        return send_rc(conn, rc);
    struct MHD_Response *r = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
    enum MHD_Result ret = r ? MHD_queue_response(conn, MHD_HTTP_NO_CONTENT, r) : MHD_NO;
    if (r)
        MHD_destroy_response(r);
    return ret;
}

/* /v1/channels/<name>/subscriptions[/<sub>[/ack]] on the channel's owner. */
static enum MHD_Result subscriptions(stream_node *n, struct MHD_Connection *conn, const char *name,
                                     const char *rest, const char *method, const request *rq)
{
    char sub[WP_READER_NAME_MAX + 1] = "";
    bool ack = false;
    if (rest[0]) {
        const char *sl = strchr(rest + 1, '/');
        size_t l = sl ? (size_t)(sl - rest - 1) : strlen(rest + 1);
        ack = sl && strcmp(sl, "/ack") == 0;
        if (l == 0 || l >= sizeof sub || (sl && !ack))
            return send_error(conn, MHD_HTTP_NOT_FOUND, "WP_ENOENT", "no such endpoint");
        memcpy(sub, rest + 1, l);
        sub[l] = '\0';
        if (!sub_name_valid(sub))
            return send_error(conn, MHD_HTTP_BAD_REQUEST, "WP_EINVAL",
                              "a subscription name is 1..124 bytes of [A-Za-z0-9._-]");
    }
    hchan *ch = chan_get(n, name);
    if (!ch)
        return send_not_here(n, conn, name);
    enum MHD_Result ret;
    if (!sub[0] && strcmp(method, "GET") == 0)
        ret = sub_list(n, conn, ch);
    else if (sub[0] && ack && strcmp(method, "POST") == 0)
        ret = sub_ack(n, conn, ch, sub, rq);
    else if (sub[0] && !ack && strcmp(method, "DELETE") == 0)
        ret = sub_delete(n, conn, ch, sub);
    else
        ret = send_error(conn, MHD_HTTP_NOT_FOUND, "WP_ENOENT", "no such endpoint");
    chan_put(n, ch);
    return ret;
}

/* ---- routing ------------------------------------------------------------------ */

/* GET /metrics: the node's process metrics (docs/configuration.md "Metrics"). */
static enum MHD_Result send_metrics(stream_node *n, struct MHD_Connection *conn)
{
    char *text;
    size_t len;
    int rc = wp_client_metrics_text(n->c, &text, &len);
    if (rc)
        return send_rc(conn, rc);
    struct MHD_Response *r = MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(text);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", "text/plain; version=0.0.4");
    enum MHD_Result ret = MHD_queue_response(conn, MHD_HTTP_OK, r);
    MHD_destroy_response(r);
    return ret;
}

/* "/v1/channels/<name>[/<rest>]": the name (checked) and the rest. */
static bool split_path(const char *url, char name[STREAM_CHANNEL_MAX + 1], const char **rest)
{
    const char *p = url + strlen("/v1/channels/");
    const char *slash = strchr(p, '/');
    size_t l = slash ? (size_t)(slash - p) : strlen(p);
    if (l == 0 || l > STREAM_CHANNEL_MAX)
        return false;
    memcpy(name, p, l);
    name[l] = '\0';
    *rest = slash ? slash : "";
    return stream_channel_valid(name);
}

static enum MHD_Result route(stream_node *n, struct MHD_Connection *conn, const char *url,
                             const char *method, const request *rq)
{
    bool get = strcmp(method, "GET") == 0, post = strcmp(method, "POST") == 0;
    bool del = strcmp(method, "DELETE") == 0;
    if (strcmp(url, "/metrics") == 0 && get)
        return send_metrics(n, conn);
    if (strcmp(url, "/v1/channels") == 0 && post)
        return channel_create(n, conn, rq);
    if (strcmp(url, "/v1/channels") == 0 && get)
        return channel_list(n, conn);
    char name[STREAM_CHANNEL_MAX + 1];
    const char *rest;
    if (strncmp(url, "/v1/channels/", 13) == 0 && split_path(url, name, &rest)) {
        if (!rest[0] && get)
            return channel_get(n, conn, name);
        if (!rest[0] && del)
            return channel_delete(n, conn, name);
        if (strcmp(rest, "/messages") == 0 && post)
            return produce(n, conn, name, rq);
        if (strcmp(rest, "/messages") == 0 && get)
            return consume(n, conn, name);
        if (strncmp(rest, "/subscriptions", 14) == 0 && (rest[14] == '\0' || rest[14] == '/'))
            return subscriptions(n, conn, name, rest + 14, method, rq);
    }
    return send_error(conn, MHD_HTTP_NOT_FOUND, "WP_ENOENT", "no such endpoint (docs/streaming.md)");
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_size, void **con_cls)
{
    (void)version;
    stream_node *n = cls;
    request *rq = *con_cls;
    if (!rq) {
        if (!(rq = calloc(1, sizeof *rq)))
            return MHD_NO;
        *con_cls = rq;
        return MHD_YES;
    }
    if (*upload_size > 0) {
        size_t k = *upload_size;
        *upload_size = 0;
        if (rq->too_big) { /* read and dropped, so that the client reads the 413; a body
                            * far above the limit is cut off (the connection closes) */
            rq->len += k;
            return rq->len > 4 * (size_t)n->cfg->stream_max_request_bytes ? MHD_NO : MHD_YES;
        }
        if (rq->len + k > (size_t)n->cfg->stream_max_request_bytes) {
            rq->too_big = true;
            rq->len += k;
            free(rq->body);
            rq->body = NULL;
            rq->cap = 0;
            return MHD_YES;
        }
        if (rq->len + k + 1 > rq->cap) {
            /* The whole body at once when its length is announced (a
             * produce body is copied once, not once per doubling). */
            const char *cl = rq->cap ? NULL
                                     : MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
                                                                   MHD_HTTP_HEADER_CONTENT_LENGTH);
            long long want = cl ? atoll(cl) : 0;
            size_t cap = want > 0 && want <= n->cfg->stream_max_request_bytes ? (size_t)want + 1
                         : rq->cap                                             ? rq->cap
                                                                               : 4096;
            while (cap < rq->len + k + 1)
                cap *= 2;
            char *b = realloc(rq->body, cap);
            if (!b)
                return MHD_NO;
            rq->body = b;
            rq->cap = cap;
        }
        memcpy(rq->body + rq->len, upload, k);
        rq->len += k;
        rq->body[rq->len] = '\0';
        return MHD_YES;
    }
    if (rq->answered)
        return MHD_YES;
    rq->answered = true;
    if (rq->too_big) {
        char msg[96];
        snprintf(msg, sizeof msg, "request body above stream.max_request_bytes (%" PRId64 ")",
                 n->cfg->stream_max_request_bytes);
        return send_error(conn, MHD_HTTP_CONTENT_TOO_LARGE, "WP_ETOOBIG", msg);
    }
    return route(n, conn, url, method, rq);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)cls, (void)conn, (void)toe;
    request *rq = *con_cls;
    if (rq) {
        free(rq->body);
        free(rq);
        *con_cls = NULL;
    }
}

/* ---- start and stop ------------------------------------------------------------ */

const char *stream_node_addr(const stream_node *n) { return n->addr; }

int stream_node_hosted(stream_node *n)
{
    pthread_mutex_lock(&n->mu);
    int k = n->n_chans;
    pthread_mutex_unlock(&n->mu);
    return k;
}

static void *close_main(void *arg)
{
    chan_free(arg);
    return NULL;
}

/* Unhosts every channel and closes them CLOSE_WAVE at a time: a writer's
 * close finishes its segment in the metadata store, which takes up to the
 * store's timeout when the store does not answer; one after another that
 * was a timeout per channel at every stop. */
static void close_all(stream_node *n)
{
    for (;;) {
        hchan *fs[CLOSE_WAVE];
        pthread_t ts[CLOSE_WAVE];
        bool started[CLOSE_WAVE];
        int k = 0;
        pthread_mutex_lock(&n->mu);
        while (n->n_chans > 0 && k < CLOSE_WAVE) {
            hchan *f = unhost_locked(n, n->n_chans - 1);
            if (f) /* else a request still holds it: its chan_put closes it */
                fs[k++] = f;
        }
        bool more = n->n_chans > 0;
        pthread_mutex_unlock(&n->mu);
        for (int i = 0; i < k; i++)
            started[i] = pthread_create(&ts[i], NULL, close_main, fs[i]) == 0;
        for (int i = 0; i < k; i++) {
            if (started[i])
                pthread_join(ts[i], NULL);
            else
                chan_free(fs[i]); /* no thread: here */
        }
        if (!more)
            return;
    }
}

void stream_node_stop(stream_node *n)
{
    if (!n)
        return;
    atomic_store(&n->stop, true);
    pthread_mutex_lock(&n->sync_mu);
    pthread_cond_signal(&n->sync_cond);
    pthread_cond_signal(&n->lease_cond);
    pthread_mutex_unlock(&n->sync_mu);
    if (n->sync_started)
        pthread_join(n->sync_thr, NULL);
    if (n->d) /* waits for the connections' threads: streams end within SLICE_MS */
        MHD_stop_daemon(n->d);
    else if (n->lfd >= 0)
        close(n->lfd);
    if (n->watch)
        n->m->ops->watch_stop(n->watch);
    close_all(n);
    free(n->chans);
    /* After the closes, so that its wait for the store overlaps theirs;
     * before the revoke, so that it cannot register again after it. */
    if (n->lease_started)
        pthread_join(n->lease_thr, NULL);
    if (n->m) {
        /* The registration is on the lease and goes with it. When the
         * store does not answer, the lease expires on its own: a
         * node_delete would only wait for it once more. */
        int rc = n->lease_id ? n->m->ops->lease_revoke(n->m, n->lease_id) : WP_ENOENT;
        if (rc != WP_OK && rc != WP_EUNAVAILABLE && rc != WP_ETIMEDOUT)
            n->m->ops->node_delete(n->m, n->cfg->node_id);
        n->m->ops->close(n->m);
    }
    if (n->c)
        wp_client_close(n->c);
    pthread_mutex_destroy(&n->mu);
    pthread_mutex_destroy(&n->sync_mu);
    pthread_cond_destroy(&n->sync_cond);
    pthread_cond_destroy(&n->lease_cond);
    free(n);
}

int stream_node_start(const wp_config *cfg, const wp__logger *lg, stream_node **out)
{
    if (!cfg->node_id[0])
        return wp__err(WP_EINVAL, "node.id is required for a streaming node");
    stream_node *n = calloc(1, sizeof *n);
    if (!n)
        return wp__err(WP_ENOMEM, "streaming node");
    n->cfg = cfg;
    n->lg = lg;
    n->lfd = -1;
    pthread_mutex_init(&n->mu, NULL);
    pthread_mutex_init(&n->sync_mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&n->sync_cond, &ca);
    pthread_cond_init(&n->lease_cond, &ca);
    pthread_condattr_destroy(&ca);
    int rc = wp_client_open(cfg, &n->c);
    if (rc == WP_OK)
        rc = meta_open(cfg, &n->m);
    if (rc == WP_OK && (!n->m->ops->kv_put || !n->m->ops->kv_list))
        rc = wp__err(WP_ENOTSUP, "metadata store '%s' has no generic records", n->m->ops->name);
    if (rc == WP_OK)
        rc = net_listen(cfg->stream_listen, "stream.listen", &n->lfd, n->addr, sizeof n->addr);
    if (rc == WP_OK) {
        n->d = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_POLL_INTERNAL_THREAD, 0,
                                NULL, NULL, on_request, n, MHD_OPTION_LISTEN_SOCKET, n->lfd,
                                MHD_OPTION_CONNECTION_LIMIT,
                                (unsigned int)cfg->stream_connections_max,
                                MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)120,
                                /* reads of up to about this much per system call */
                                MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)CONN_MEMORY_BYTES,
                                MHD_OPTION_NOTIFY_COMPLETED, on_completed, n, MHD_OPTION_END);
        if (!n->d)
            rc = wp__err(WP_EIO, "stream.listen %s: the HTTP server did not start", n->addr);
    }
    if (rc == WP_OK)
        rc = n->m->ops->lease_grant(n->m, cfg->stream_lease_ttl_ms, &n->lease_id);
    if (rc == WP_OK)
        rc = register_node(n);
    if (rc == WP_OK && n->m->ops->kv_watch &&
        n->m->ops->kv_watch(n->m, STREAM_KEY_CHANNELS, on_change, on_watch_failed, n, &n->watch) !=
            WP_OK) {
        wp__log(lg, WP_LOG_WARN, "node: no watch (%s); polling", wp_errmsg());
        n->watch = NULL;
    }
    if (rc == WP_OK) {
        if (pthread_create(&n->lease_thr, NULL, lease_main, n) != 0)
            rc = wp__err(WP_ENOMEM, "cannot start the lease thread");
        else
            n->lease_started = true;
    }
    if (rc == WP_OK) {
        if (pthread_create(&n->sync_thr, NULL, sync_main, n) != 0)
            rc = wp__err(WP_ENOMEM, "cannot start the sync thread");
        else
            n->sync_started = true;
    }
    if (rc) {
        stream_node_stop(n);
        return rc;
    }
    wp__log(lg, WP_LOG_INFO, "streaming node %s: serving on %s", cfg->node_id, n->addr);
    *out = n;
    return WP_OK;
}
