/* stream.c — the streaming client (include/woodpecker_stream.h): the
 * channel records kept current by a thread of the client (on a watch's
 * kick, or every stream.assign_interval_ms without watches), node choice
 * and channel admin over the nodes' HTTP API. Producers and consumers are
 * stream_producer.c and stream_consumer.c; see stream_client.h. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "client/stream_client.h"

_Static_assert(WPS_CHANNEL_MAX + 1 == sizeof(((wps_channel_info *)0)->name), "channel name");
_Static_assert(WP_NODE_ID_MAX + 1 == sizeof(((wps_channel_info *)0)->owner), "owner");
_Static_assert(META_NODE_ADDR_MAX + 1 == sizeof(((wps_channel_info *)0)->addr), "addr");
_Static_assert(sizeof SC_KEY_CHANNELS - 1 + WPS_CHANNEL_MAX <= META_KV_KEY_MAX, "record key");

/* ---- records ------------------------------------------------------------------ */

bool sc_channel_valid(const char *name)
{
    size_t n = name ? strnlen(name, WPS_CHANNEL_MAX + 1) : 0;
    return n >= 1 && n <= WPS_CHANNEL_MAX && meta_token_valid(name, n, 1, WPS_CHANNEL_MAX);
}

bool wps_channel_name_valid(const char *name) { return sc_channel_valid(name); }

/* An integer field in [0, 2^53] (exact in a JSON number). */
static bool get_int(const cJSON *o, const char *k, int64_t *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > 9007199254740992.0 ||
        v->valuedouble != (double)(int64_t)v->valuedouble)
        return false;
    *out = (int64_t)v->valuedouble;
    return true;
}

static bool get_str(const cJSON *o, const char *k, char *out, size_t cap)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!cJSON_IsString(v) || strlen(v->valuestring) >= cap)
        return false;
    memcpy(out, v->valuestring, strlen(v->valuestring) + 1);
    return true;
}

int sc_rec_decode(const char *name, const uint8_t *v, size_t len, sc_rec *out)
{
    *out = (sc_rec){0};
    if (!sc_channel_valid(name))
        return wp__err(WP_ECORRUPT, "channel record: bad name '%.140s'", name);
    memcpy(out->name, name, strlen(name) + 1);
    char log[WP_LOG_NAME_MAX + 1], want[WP_LOG_NAME_MAX + 1];
    snprintf(want, sizeof want, "%s%s", SC_LOG_PREFIX, name);
    cJSON *o = cJSON_ParseWithLength((const char *)v, len);
    bool ok = cJSON_IsObject(o) && get_str(o, "log", log, sizeof log) && strcmp(log, want) == 0 &&
              get_int(o, "term", &out->term) && get_str(o, "owner", out->owner, sizeof out->owner) &&
              get_str(o, "addr", out->addr, sizeof out->addr) &&
              get_int(o, "created_ms", &out->created_ms) &&
              (!out->owner[0] || meta_node_id_valid(out->owner, strlen(out->owner))) &&
              (!out->addr[0] || meta_node_addr_valid(out->addr, strlen(out->addr)));
    cJSON_Delete(o);
    if (!ok)
        return wp__err(WP_ECORRUPT, "the channel record of '%s' does not decode", name);
    return WP_OK;
}

int sc_get(wps_client *c, const char *name, sc_rec *out)
{
    char key[META_KV_KEY_MAX + 1];
    snprintf(key, sizeof key, "%s%s", SC_KEY_CHANNELS, name);
    meta_kv kv = {0};
    int rc = c->m->ops->kv_get(c->m, key, &kv);
    if (rc == WP_ENOENT)
        rc = wp__err(WP_ENOENT, "no channel '%s'", name);
    if (rc == WP_OK)
        rc = sc_rec_decode(name, kv.value, kv.len, out);
    meta_kv_free(&kv);
    return rc;
}

/* Every channel record, sorted by name (the store lists keys sorted); a
 * record that does not decode is left out (logged). */
static int read_records(wps_client *c, sc_rec **out, size_t *n)
{
    meta_kv *kvs = NULL;
    size_t k = 0;
    int rc = c->m->ops->kv_list(c->m, SC_KEY_CHANNELS, &kvs, &k);
    if (rc)
        return rc;
    sc_rec *v = calloc(k ? k : 1, sizeof *v);
    if (!v) {
        meta_kv_free_list(kvs, k);
        return wp__err(WP_ENOMEM, "%zu channel records", k);
    }
    size_t got = 0, pl = strlen(SC_KEY_CHANNELS);
    for (size_t i = 0; i < k; i++) {
        if (sc_rec_decode(kvs[i].key + pl, kvs[i].value, kvs[i].len, &v[got]) == WP_OK)
            got++;
        else
            wp__log(&c->lg, WP_LOG_WARN, "streaming client: %s (left out)", wp_errmsg());
    }
    meta_kv_free_list(kvs, k);
    *out = v;
    *n = got;
    return WP_OK;
}

static int rec_cmp(const void *a, const void *b)
{
    return strcmp(((const sc_rec *)a)->name, ((const sc_rec *)b)->name);
}

/* Under c->mu. */
static const sc_rec *find_locked(const wps_client *c, const char *name)
{
    sc_rec key;
    snprintf(key.name, sizeof key.name, "%s", name);
    return c->n_recs ? bsearch(&key, c->recs, c->n_recs, sizeof *c->recs, rec_cmp) : NULL;
}

bool sc_lookup(wps_client *c, const char *name, sc_rec *out, uint64_t *gen)
{
    pthread_mutex_lock(&c->mu);
    const sc_rec *r = find_locked(c, name);
    if (r)
        *out = *r;
    if (gen)
        *gen = c->gen;
    pthread_mutex_unlock(&c->mu);
    return r != NULL;
}

void sc_kick(wps_client *c)
{
    pthread_mutex_lock(&c->mu);
    c->kick = true;
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->mu);
}

bool sc_wait_change(wps_client *c, uint64_t gen, int64_t deadline_ns, const _Atomic bool *stop)
{
    struct timespec ts = {deadline_ns / 1000000000LL, deadline_ns % 1000000000LL};
    pthread_mutex_lock(&c->mu);
    while (c->gen == gen && !c->stop && !(stop && atomic_load(stop)) &&
           pthread_cond_timedwait(&c->cond, &c->mu, &ts) == 0)
        ;
    bool changed = c->gen != gen;
    pthread_mutex_unlock(&c->mu);
    return changed;
}

void sc_wake(wps_client *c)
{
    pthread_mutex_lock(&c->mu);
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->mu);
}

void sc_handles_add(wps_client *c, int d)
{
    pthread_mutex_lock(&c->mu);
    c->n_handles += d;
    pthread_mutex_unlock(&c->mu);
}

static bool rec_equal(const sc_rec *a, const sc_rec *b)
{
    return a->term == b->term && a->created_ms == b->created_ms && strcmp(a->name, b->name) == 0 &&
           strcmp(a->owner, b->owner) == 0 && strcmp(a->addr, b->addr) == 0;
}

/* Reads the records; on a change publishes them (gen + 1) and wakes every
 * request in progress. */
static int refresh(wps_client *c)
{
    sc_rec *v = NULL;
    size_t n = 0;
    int rc = read_records(c, &v, &n);
    if (rc)
        return rc;
    pthread_mutex_lock(&c->mu);
    bool changed = n != c->n_recs;
    for (size_t i = 0; !changed && i < n; i++)
        changed = !rec_equal(&v[i], &c->recs[i]);
    if (changed) {
        free(c->recs);
        c->recs = v;
        c->n_recs = n;
        c->gen++;
        pthread_cond_broadcast(&c->cond);
        for (sh_conn *h = c->conns; h; h = h->next)
            curl_multi_wakeup(h->multi);
    }
    pthread_mutex_unlock(&c->mu);
    if (!changed)
        free(v);
    return WP_OK;
}

static void on_change(void *arg) { sc_kick(arg); }

static void on_watch_failed(void *arg, int rc, const char *msg)
{
    wps_client *c = arg;
    wp__log(&c->lg, WP_LOG_WARN, "streaming client: the watch of the channel records ended "
            "(%s: %s); reading them every %" PRId64 " ms", wp_strerror(rc), msg,
            c->cfg.stream_assign_interval_ms);
    pthread_mutex_lock(&c->mu);
    c->watch_failed = true;
    c->kick = true;
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->mu);
}

/* The records' thread: reads them when kicked (the watch, a request that
 * failed) and every poll interval. */
static void *sync_main(void *arg)
{
    wps_client *c = arg;
    pthread_mutex_lock(&c->mu);
    while (!c->stop) {
        bool polling = !c->watch || c->watch_failed;
        int64_t every_ms = polling ? c->cfg.stream_assign_interval_ms : SC_WATCH_SAFETY_POLL_MS;
        int64_t due = wp__now_ns() + every_ms * 1000000LL;
        struct timespec ts = {due / 1000000000LL, due % 1000000000LL};
        while (!c->stop && !c->kick && pthread_cond_timedwait(&c->cond, &c->mu, &ts) == 0)
            ;
        if (c->stop)
            break;
        c->kick = false;
        pthread_mutex_unlock(&c->mu);
        int rc = refresh(c);
        if (rc)
            wp__log(&c->lg, WP_LOG_WARN, "streaming client: reading the channel records: %s (%s)",
                    wp_strerror(rc), wp_errmsg());
        pthread_mutex_lock(&c->mu);
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

int wps_client_open(const wp_config *cfg, wps_client **out)
{
    if (!cfg || !out)
        return wp__err(WP_EINVAL, "wps_client_open: NULL argument");
    *out = NULL;
    wps_client *c = calloc(1, sizeof *c);
    if (!c)
        return wp__err(WP_ENOMEM, "streaming client");
    c->cfg = *cfg;
    c->lg = (wp__logger){cfg->log_fn, cfg->log_arg, cfg->log_level};
    pthread_mutex_init(&c->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&c->cond, &ca);
    pthread_condattr_destroy(&ca);
    int rc = meta_open(cfg, &c->m);
    if (rc)
        goto out_free;
    if (!c->m->ops->kv_get || !c->m->ops->kv_list) {
        rc = wp__err(WP_ENOTSUP, "metadata store '%s' has no generic records", c->m->ops->name);
        goto out_close_meta;
    }
    /* The watch first, then the first read: no change in between is missed. */
    if (c->m->ops->kv_watch &&
        c->m->ops->kv_watch(c->m, SC_KEY_CHANNELS, on_change, on_watch_failed, c, &c->watch)) {
        wp__log(&c->lg, WP_LOG_WARN, "streaming client: no watch of the channel records (%s); "
                "reading them every %" PRId64 " ms", wp_errmsg(), cfg->stream_assign_interval_ms);
        c->watch = NULL;
    }
    if ((rc = refresh(c)))
        goto out_stop_watch;
    if (pthread_create(&c->thr, NULL, sync_main, c) != 0) {
        rc = wp__err(WP_ENOMEM, "cannot start the streaming client's thread");
        goto out_stop_watch;
    }
    c->thr_started = true;
    *out = c;
    return WP_OK;
out_stop_watch:
    if (c->watch)
        c->m->ops->watch_stop(c->watch);
out_close_meta:
    c->m->ops->close(c->m);
out_free:
    free(c->recs);
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cond);
    free(c);
    return rc;
}

void wps_client_close(wps_client *c)
{
    if (!c)
        return;
    pthread_mutex_lock(&c->mu);
    c->stop = true;
    pthread_cond_broadcast(&c->cond);
    if (c->n_handles)
        wp__log(&c->lg, WP_LOG_ERROR, "wps_client_close: %d producer(s) or consumer(s) still open",
                c->n_handles);
    pthread_mutex_unlock(&c->mu);
    if (c->watch) /* no callback after it returns */
        c->m->ops->watch_stop(c->watch);
    if (c->thr_started)
        pthread_join(c->thr, NULL);
    c->m->ops->close(c->m);
    free(c->recs);
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cond);
    free(c);
}

/* ---- channel admin ------------------------------------------------------------ */

static int check_channel(const char *op, const char *name)
{
    if (!sc_channel_valid(name))
        return wp__err(WP_EINVAL, "%s: bad channel name '%.64s%s' (1..%d bytes of "
                       "[A-Za-z0-9._-])", op, name ? name : "(null)",
                       name && strlen(name) > 64 ? "..." : "", WPS_CHANNEL_MAX);
    return WP_OK;
}

/* One admin request to a live streaming node: the first that answers (a
 * node that cannot be reached is skipped; nodes are asked in turn). The
 * answer in *r (status 0 if none answered: WP_EUNAVAILABLE). */
static int admin_request(wps_client *c, const char *what, const char *method, const char *path,
                         const char *body, sh_resp *r, char *addr, size_t addr_cap)
{
    meta_node *ns = NULL;
    size_t n = 0;
    int rc = c->m->ops->node_list(c->m, SC_NODE_KIND, &ns, &n);
    if (rc)
        return rc;
    if (n == 0) {
        free(ns);
        return wp__err(WP_EUNAVAILABLE, "%s: no live streaming node is registered", what);
    }
    sh_conn h;
    if ((rc = sh_conn_init(&h, c))) {
        free(ns);
        return rc;
    }
    pthread_mutex_lock(&c->mu);
    unsigned first = c->node_next++;
    pthread_mutex_unlock(&c->mu);
    *r = (sh_resp){0};
    for (size_t k = 0; k < n; k++) {
        const meta_node *nd = &ns[(first + k) % n];
        char url[META_NODE_ADDR_MAX + 256];
        snprintf(url, sizeof url, "http://%s%s", nd->addr, path);
        sh_resp_free(r);
        sh_perform(&h, &(sh_req){.method = method, .url = url, .body = body,
                                 .body_len = body ? strlen(body) : 0, .timeout_ms = SC_ADMIN_MS},
                   r);
        snprintf(addr, addr_cap, "%s", nd->addr);
        if (r->status != 0 && r->status != 503)
            break;
    }
    sh_conn_free(&h);
    free(ns);
    return WP_OK;
}

int wps_channel_create(wps_client *c, const char *name)
{
    static const char op[] = "wps_channel_create";
    if (!c)
        return wp__err(WP_EINVAL, "%s: NULL client", op);
    int rc = check_channel(op, name);
    if (rc)
        return rc;
    char body[WPS_CHANNEL_MAX + 32], addr[META_NODE_ADDR_MAX + 1] = "", what[WPS_CHANNEL_MAX + 40];
    snprintf(body, sizeof body, "{\"name\":\"%s\"}", name); /* the name needs no escape */
    snprintf(what, sizeof what, "creating channel '%s'", name);
    sh_resp r;
    if ((rc = admin_request(c, what, "POST", "/v1/channels", body, &r, addr, sizeof addr)))
        return rc;
    if (r.status != 201)
        rc = sh_error(&r, what, addr);
    sh_resp_free(&r);
    if (rc == WP_OK)
        sc_kick(c); /* where the store has no watch: learn it now */
    return rc;
}

int wps_channel_delete(wps_client *c, const char *name)
{
    static const char op[] = "wps_channel_delete";
    if (!c)
        return wp__err(WP_EINVAL, "%s: NULL client", op);
    int rc = check_channel(op, name);
    if (rc)
        return rc;
    char path[WPS_CHANNEL_MAX + 32], addr[META_NODE_ADDR_MAX + 1] = "", what[WPS_CHANNEL_MAX + 40];
    snprintf(path, sizeof path, "/v1/channels/%s", name);
    snprintf(what, sizeof what, "deleting channel '%s'", name);
    sh_resp r;
    if ((rc = admin_request(c, what, "DELETE", path, NULL, &r, addr, sizeof addr)))
        return rc;
    if (r.status != 204 && r.status != 200)
        rc = sh_error(&r, what, addr);
    sh_resp_free(&r);
    if (rc == WP_OK)
        sc_kick(c);
    return rc;
}

static int info_cmp(const void *a, const void *b)
{
    return strcmp(((const wps_channel_info *)a)->name, ((const wps_channel_info *)b)->name);
}

/* One channel of a list answer (a record with its name). */
static bool list_item(const cJSON *o, wps_channel_info *d)
{
    const cJSON *nm = cJSON_GetObjectItemCaseSensitive(o, "name");
    if (!cJSON_IsString(nm) || !sc_channel_valid(nm->valuestring))
        return false;
    char *v = cJSON_PrintUnformatted(o);
    sc_rec rec;
    bool ok = v && sc_rec_decode(nm->valuestring, (const uint8_t *)v, strlen(v), &rec) == WP_OK;
    cJSON_free(v);
    if (!ok)
        return false;
    *d = (wps_channel_info){.term = rec.term, .created_ms = rec.created_ms};
    memcpy(d->name, rec.name, sizeof d->name);
    memcpy(d->owner, rec.owner, sizeof d->owner);
    memcpy(d->addr, rec.addr, sizeof d->addr);
    return true;
}

int wps_channel_list(wps_client *c, wps_channel_info **out, size_t *n)
{
    static const char what[] = "listing channels";
    if (!c || !out || !n)
        return wp__err(WP_EINVAL, "wps_channel_list: NULL argument");
    *out = NULL;
    *n = 0;
    char addr[META_NODE_ADDR_MAX + 1] = "";
    sh_resp r;
    int rc = admin_request(c, what, "GET", "/v1/channels", NULL, &r, addr, sizeof addr);
    if (rc)
        return rc;
    if (r.status != 200) {
        rc = sh_error(&r, what, addr);
        sh_resp_free(&r);
        return rc;
    }
    cJSON *o = cJSON_ParseWithLength(r.body ? r.body : "", r.len);
    sh_resp_free(&r);
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(o, "channels"), *it;
    int cnt = cJSON_IsArray(arr) ? cJSON_GetArraySize(arr) : -1;
    wps_channel_info *v = cnt >= 0 ? calloc(cnt ? (size_t)cnt : 1, sizeof *v) : NULL;
    size_t k = 0;
    if (cnt < 0)
        rc = wp__err(WP_ECORRUPT, "%s: %s: the answer has no channels array", what, addr);
    else if (!v)
        rc = wp__err(WP_ENOMEM, "%s: %d channels", what, cnt);
    cJSON_ArrayForEach(it, (rc ? NULL : arr))
    {
        if (!list_item(it, &v[k])) {
            rc = wp__err(WP_ECORRUPT, "%s: %s: channel %zu of the answer does not decode", what,
                         addr, k);
            break;
        }
        k++;
    }
    cJSON_Delete(o);
    if (rc) {
        free(v);
        return rc;
    }
    qsort(v, k, sizeof *v, info_cmp);
    *out = v;
    *n = k;
    return WP_OK;
}
