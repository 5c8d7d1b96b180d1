/* coord.c — the streaming coordinator; see coord.h and docs/streaming.md §3.
 *
 * One thread: it keeps the lease alive, tries to become active (a
 * create-only put of stream/coord under the lease), and while active runs
 * an assignment pass every stream.assign_interval_ms and after every
 * change under stream/ it watches (where the metadata store has watches). */
#include "stream/coord.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "stream/stream.h"

struct stream_coord {
    const wp_config *cfg;
    const wp__logger *lg;
    meta *m;
    meta_watch *watch;
    int64_t lease_id;
    int64_t my_create_rev; /* of stream/coord while active; 0 standby */
    pthread_t thr;
    bool started;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    bool stop, kick, active;
};

static void on_change(void *arg)
{
    stream_coord *c = arg;
    pthread_mutex_lock(&c->mu);
    c->kick = true;
    pthread_cond_signal(&c->cond);
    pthread_mutex_unlock(&c->mu);
}

static void on_watch_failed(void *arg, int rc, const char *msg)
{
    stream_coord *c = arg;
    wp__log(c->lg, WP_LOG_WARN, "coordinator: watch ended (%s: %s); polling", wp_strerror(rc), msg);
}

/* Becomes active if nobody is: create-only put of stream/coord. */
static int try_elect(stream_coord *c)
{
    cJSON *o = cJSON_CreateObject();
    char *v = NULL;
    if (o && cJSON_AddStringToObject(o, "node", c->cfg->node_id) &&
        cJSON_AddStringToObject(o, "addr", "") &&
        cJSON_AddNumberToObject(o, "since_ms", (double)wp__wall_ms()))
        v = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!v)
        return wp__err(WP_ENOMEM, "coordinator record");
    int64_t rev = 0;
    int rc = c->m->ops->kv_put(c->m, STREAM_KEY_COORD, v, strlen(v), 0, c->lease_id, &rev);
    free(v);
    if (rc == WP_EEXIST) {
        wp__err_clear();
        return WP_OK; /* another one is active */
    }
    if (rc)
        return rc;
    c->my_create_rev = rev;
    wp__log(c->lg, WP_LOG_INFO, "coordinator %s: active", c->cfg->node_id);
    return WP_OK;
}

/* Still the active one: stream/coord is the record it created. */
static bool still_active(stream_coord *c)
{
    meta_kv kv = {0};
    int rc = c->m->ops->kv_get(c->m, STREAM_KEY_COORD, &kv);
    bool mine = rc == WP_OK && kv.create_rev == c->my_create_rev && kv.lease_id == c->lease_id;
    meta_kv_free(&kv);
    if (rc && rc != WP_ENOENT)
        return true; /* cannot tell (metadata unavailable): assignment writes fail anyway */
    if (!mine) {
        wp__log(c->lg, WP_LOG_WARN, "coordinator %s: no longer active", c->cfg->node_id);
        c->my_create_rev = 0;
    }
    return mine;
}

/* CAS of a channel record to a new owner at term + 1. */
static int assign(stream_coord *c, stream_channel *ch, const meta_node *to)
{
    stream_channel n = *ch;
    n.term = ch->term + 1;
    snprintf(n.owner, sizeof n.owner, "%s", to->id);
    snprintf(n.addr, sizeof n.addr, "%s", to->addr);
    char *v = stream_channel_json(&n);
    if (!v)
        return wp__err(WP_ENOMEM, "channel record");
    char key[META_KV_KEY_MAX + 1];
    snprintf(key, sizeof key, "%s%s", STREAM_KEY_CHANNELS, ch->name);
    int64_t rev = 0;
    int rc = c->m->ops->kv_put(c->m, key, v, strlen(v), ch->rev, 0, &rev);
    free(v);
    if (rc == WP_OK) {
        wp__log(c->lg, WP_LOG_INFO, "coordinator: channel '%s' -> %s (term %" PRId64 ", was %s)",
                ch->name, to->id, n.term, ch->owner[0] ? ch->owner : "unassigned");
        *ch = n;
        ch->rev = rev;
    } else if (rc == WP_ECONFLICT || rc == WP_ENOENT) { /* changed or deleted: next pass */
        wp__err_clear();
        rc = WP_OK;
    }
    return rc;
}

static int node_index(const meta_node *ns, size_t n, const char *id)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(ns[i].id, id) == 0)
            return (int)i;
    return -1;
}

/* The live node with the fewest channels (ties: the smallest id). */
static int least_loaded(const size_t *count, size_t n)
{
    int best = -1;
    for (size_t i = 0; i < n; i++)
        if (best < 0 || count[i] < count[best])
            best = (int)i;
    return best;
}

static int pass(stream_coord *c)
{
    meta_node *ns = NULL;
    size_t nn = 0;
    stream_channel *chs = NULL;
    size_t nc = 0;
    int rc = c->m->ops->node_list(c->m, STREAM_NODE_KIND, &ns, &nn);
    if (rc == WP_OK)
        rc = stream_channel_list(c->m, &chs, &nc);
    size_t *count = rc ? NULL : calloc(nn ? nn : 1, sizeof *count);
    if (rc == WP_OK && !count)
        rc = wp__err(WP_ENOMEM, "coordinator counts");
    if (rc || nn == 0)
        goto out;
    for (size_t i = 0; i < nc; i++) {
        int k = chs[i].owner[0] ? node_index(ns, nn, chs[i].owner) : -1;
        if (k >= 0 && strcmp(ns[k].addr, chs[i].addr) == 0)
            count[k]++;
    }
    /* Orphans: unassigned, owner not live, or the owner came back on
     * another address (it lost its channels when it restarted). */
    for (size_t i = 0; i < nc && rc == WP_OK; i++) {
        int k = chs[i].owner[0] ? node_index(ns, nn, chs[i].owner) : -1;
        if (k >= 0 && strcmp(ns[k].addr, chs[i].addr) == 0)
            continue;
        int to = least_loaded(count, nn);
        if ((rc = assign(c, &chs[i], &ns[to])) == WP_OK && strcmp(chs[i].owner, ns[to].id) == 0)
            count[to]++;
    }
    /* Rebalance: one channel at a time from the most to the least loaded. */
    for (int moves = 0; rc == WP_OK && moves < (int)nc; moves++) {
        int lo = least_loaded(count, nn), hi = 0;
        for (size_t i = 0; i < nn; i++)
            if (count[i] > count[hi])
                hi = (int)i;
        if (count[hi] < count[lo] + 2)
            break;
        size_t pick = nc;
        for (size_t i = 0; i < nc; i++)
            if (strcmp(chs[i].owner, ns[hi].id) == 0)
                pick = i; /* the last by name */
        if (pick == nc || (rc = assign(c, &chs[pick], &ns[lo])) != WP_OK ||
            strcmp(chs[pick].owner, ns[lo].id) != 0)
            break;
        count[hi]--;
        count[lo]++;
    }
out:
    free(count);
    free(ns);
    free(chs);
    return rc;
}

static void *coord_main(void *arg)
{
    stream_coord *c = arg;
    int64_t ttl = c->cfg->stream_lease_ttl_ms;
    int64_t next_keepalive = 0;
    pthread_mutex_lock(&c->mu);
    while (!c->stop) {
        pthread_mutex_unlock(&c->mu);
        int64_t now = wp__now_ns();
        int rc = WP_OK;
        if (now >= next_keepalive) {
            rc = c->m->ops->lease_keepalive(c->m, c->lease_id);
            if (rc == WP_ENOENT) { /* expired: whatever it held is gone */
                wp__log(c->lg, WP_LOG_WARN, "coordinator %s: lease expired", c->cfg->node_id);
                c->my_create_rev = 0;
                rc = c->m->ops->lease_grant(c->m, ttl, &c->lease_id);
            }
            if (rc == WP_OK)
                next_keepalive = now + ttl / 3 * 1000000LL;
        }
        if (rc == WP_OK && !c->my_create_rev)
            rc = try_elect(c);
        if (rc == WP_OK && c->my_create_rev && still_active(c))
            rc = pass(c);
        if (rc)
            wp__log(c->lg, WP_LOG_WARN, "coordinator %s: %s (%s)", c->cfg->node_id,
                    wp_strerror(rc), wp_errmsg());
        pthread_mutex_lock(&c->mu);
        c->active = c->my_create_rev != 0;
        int64_t wait_ms = c->cfg->stream_assign_interval_ms;
        if (wait_ms > ttl / 3)
            wait_ms = ttl / 3;
        int64_t due = wp__now_ns() + wait_ms * 1000000LL;
        struct timespec ts = {due / 1000000000LL, due % 1000000000LL};
        while (!c->stop && !c->kick && pthread_cond_timedwait(&c->cond, &c->mu, &ts) == 0)
            ;
        c->kick = false;
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

bool stream_coord_active(stream_coord *c)
{
    pthread_mutex_lock(&c->mu);
    bool a = c->active;
    pthread_mutex_unlock(&c->mu);
    return a;
}

void stream_coord_stop(stream_coord *c)
{
    if (!c)
        return;
    pthread_mutex_lock(&c->mu);
    c->stop = true;
    pthread_cond_signal(&c->cond);
    pthread_mutex_unlock(&c->mu);
    if (c->started)
        pthread_join(c->thr, NULL);
    if (c->watch)
        c->m->ops->watch_stop(c->watch);
    if (c->m) {
        if (c->lease_id) /* its record goes with it: a standby takes over now */
            c->m->ops->lease_revoke(c->m, c->lease_id);
        c->m->ops->close(c->m);
    }
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cond);
    free(c);
}

int stream_coord_start(const wp_config *cfg, const wp__logger *lg, stream_coord **out)
{
    if (!cfg->node_id[0])
        return wp__err(WP_EINVAL, "node.id is required for a streaming coordinator");
    stream_coord *c = calloc(1, sizeof *c);
    if (!c)
        return wp__err(WP_ENOMEM, "coordinator");
    c->cfg = cfg;
    c->lg = lg;
    pthread_mutex_init(&c->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&c->cond, &ca);
    pthread_condattr_destroy(&ca);
    int rc = meta_open(cfg, &c->m);
    if (rc == WP_OK && (!c->m->ops->kv_put || !c->m->ops->kv_list))
        rc = wp__err(WP_ENOTSUP, "metadata store '%s' has no generic records", c->m->ops->name);
    if (rc == WP_OK)
        rc = c->m->ops->lease_grant(c->m, cfg->stream_lease_ttl_ms, &c->lease_id);
    if (rc == WP_OK && c->m->ops->kv_watch &&
        c->m->ops->kv_watch(c->m, "stream/", on_change, on_watch_failed, c, &c->watch) != WP_OK) {
        wp__log(lg, WP_LOG_WARN, "coordinator: no watch (%s); polling", wp_errmsg());
        c->watch = NULL;
    }
    if (rc == WP_OK) {
        if (pthread_create(&c->thr, NULL, coord_main, c) != 0)
            rc = wp__err(WP_ENOMEM, "cannot start the coordinator thread");
        else
            c->started = true;
    }
    if (rc) {
        stream_coord_stop(c);
        return rc;
    }
    *out = c;
    return WP_OK;
}
