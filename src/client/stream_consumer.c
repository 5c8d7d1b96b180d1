/* stream_consumer.c — consumers (include/woodpecker_stream.h,
 * docs/streaming-api.md §4). Each consumer has a thread that keeps one
 * pushed stream (GET ...?stream=1, in the binary frames of §7) open to the
 * channel's owner and puts the messages it decodes on a bounded queue, a
 * chunk's worth at a time; when the queue is full the thread stops reading,
 * and TCP holds the node back. When the stream ends — a move (an end
 * frame), a dropped connection, a 421, a record that names a new owner —
 * the thread opens a stream at the owner the records (or the end frame)
 * name, from after the last message it queued: every message is queued
 * once, in id order. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "client/stream_client.h"
#include "codec/wpm.h"

/* The messages decoded from one piece of the stream: one allocation
 * holds this header, the messages and a copy of their frames, which the
 * messages point into; it is freed with the last of them. */
typedef struct qbatch {
    atomic_size_t refs; /* messages not freed yet */
} qbatch;

/* A queued message. */
typedef struct qmsg {
    struct qmsg *next;
    qbatch *batch;
    wp_msg_id id;
    const uint8_t *data; /* len bytes, then a NUL (written over the next frame's first byte) */
    size_t len;
    size_t n_props;
    const char **keys, **vals; /* into the frame; the arrays malloc'd (one block) */
    const char *producer;
    int64_t seq;
    size_t bytes; /* counted against SC_QUEUE_BYTES_MAX */
} qmsg;

struct wps_consumer {
    wps_client *c;
    char channel[WPS_CHANNEL_MAX + 1];
    sh_conn h;
    pthread_t thr;
    bool thr_started;
    _Atomic bool stop;
    pthread_mutex_t mu; /* the queue, the end */
    pthread_cond_t cond;
    qmsg *head, *tail;
    size_t q_n, q_bytes;
    bool room_wait; /* the thread waits for room */
    int end_rc; /* the stream ended for good: after the queue, this */
    char end_msg[WP_ERRMSG_MAX];
    qmsg *cur; /* returned last; freed at the next call */
    qmsg *mine; /* taken off the queue by wps_consume, not returned yet */
    /* The thread's own. */
    int policy;       /* WPS_FROM_*; LATEST is resolved to AT at open */
    wp_msg_id start;
    bool queued_any;
    wp_msg_id last;   /* last message queued */
    int64_t conn_term; /* term of the owner the stream is open to */
    long status;      /* of the stream's answer; 0 before its first byte */
    sh_buf part;      /* a partial frame */
    bool magic_seen;  /* the stream's first 4 bytes */
    sh_buf errbody;   /* an answer that is not the stream */
    bool ended;       /* an end line came */
    bool got_msgs;    /* this connection delivered a message */
    char hint_addr[META_NODE_ADDR_MAX + 1];
    int fatal;        /* a line that does not decode, or too long */
    wpm_msg *views;   /* decode_frames' scratch: message frames, before their batch */
    size_t n_views, cap_views;
};

static void qmsg_free(qmsg *m)
{
    if (!m)
        return;
    free(m->keys);
    if (atomic_fetch_sub(&m->batch->refs, 1) == 1)
        free(m->batch);
}

/* Ends the stream for good (the thread's last word). */
static void set_end(wps_consumer *co, int rc, const char *msg)
{
    pthread_mutex_lock(&co->mu);
    if (!co->end_rc) {
        co->end_rc = rc;
        snprintf(co->end_msg, sizeof co->end_msg, "%s", msg);
    }
    pthread_cond_broadcast(&co->cond);
    pthread_mutex_unlock(&co->mu);
}

/* ---- decoding (docs/streaming-api.md §7) ------------------------------------- */

/* The decimal wp.s property: -1 if it is not one. */
static int64_t seq_parse(const char *s, size_t n)
{
    int64_t v = 0;
    if (n == 0 || n > 16)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v < WPM_SEQ_MAX ? v : -1;
}

/* The message of view v, whose frame bytes are at base: producer and
 * seq from wp.p and wp.s, the user's properties into arrays (one block).
 * False if there is no memory for them. */
static bool msg_fill(qmsg *m, const wpm_msg *v, const uint8_t *src, const uint8_t *base)
{
    size_t off = 0, kl, vl, n_user = 0;
    const char *k, *val;
    *m = (qmsg){.id = v->id, .len = v->len, .seq = -1,
                .data = base + (v->data - src)};
    while (wpm_prop_next(v, &off, &k, &kl, &val, &vl)) {
        if (k[0] == 'w' && k[1] == 'p' && k[2] == '.') {
            if (k[3] == 'p' && k[4] == '\0')
                m->producer = (const char *)base + ((const uint8_t *)val - src);
            else if (k[3] == 's' && k[4] == '\0')
                m->seq = seq_parse(val, vl);
        } else {
            n_user++;
        }
    }
    if (n_user == 0)
        return true;
    m->keys = malloc(2 * n_user * sizeof *m->keys);
    if (!m->keys)
        return false;
    m->vals = m->keys + n_user;
    off = 0;
    while (wpm_prop_next(v, &off, &k, &kl, &val, &vl)) {
        if (strncmp(k, "wp.", 3) == 0)
            continue;
        m->keys[m->n_props] = (const char *)base + ((const uint8_t *)k - src);
        m->vals[m->n_props++] = (const char *)base + ((const uint8_t *)val - src);
    }
    return true;
}

/* The messages of views[0..n) (frames in src[0..used)) as a list on one
 * new batch; NULL (co->fatal set) without memory. */
static qmsg *batch_new(wps_consumer *co, const uint8_t *src, size_t used)
{
    size_t n = co->n_views;
    qbatch *b = malloc(sizeof *b + n * sizeof(qmsg) + used + 1);
    if (!b) {
        co->fatal = wp__err(WP_ENOMEM, "consume '%s': %zu bytes of messages", co->channel, used);
        return NULL;
    }
    qmsg *ms = (qmsg *)(b + 1);
    uint8_t *base = (uint8_t *)(ms + n);
    memcpy(base, src, used);
    atomic_init(&b->refs, n);
    qmsg *list = NULL, **tail = &list;
    for (size_t i = 0; i < n; i++) {
        if (!msg_fill(&ms[i], &co->views[i], src, base)) {
            for (size_t j = 0; j < i; j++)
                free(ms[j].keys);
            free(b); /* nothing else points into it yet */
            co->fatal = wp__err(WP_ENOMEM, "consume '%s': properties", co->channel);
            return NULL;
        }
        ms[i].batch = b;
        ms[i].bytes = co->views[i].len + WPM_FRAME_MSG_FIXED + co->views[i].props_len;
        /* The NUL after the payload: over the next frame's type byte,
         * decoded already (or the one spare byte at the end). */
        ((uint8_t *)ms[i].data)[ms[i].len] = '\0';
        *tail = &ms[i];
        tail = &ms[i].next;
    }
    return list;
}

static void list_free(qmsg *m)
{
    while (m) {
        qmsg *next = m->next;
        qmsg_free(m);
        m = next;
    }
}

/* Puts a list of messages on the queue, in order, waiting while it is
 * full; the reader of the queue is woken once per list, not per message.
 * False if the consumer is closing (what was not queued is freed). */
static bool enqueue(wps_consumer *co, qmsg *list)
{
    pthread_mutex_lock(&co->mu);
    bool added = false;
    while (list && !atomic_load(&co->stop)) {
        if (co->q_n > 0 &&
            (co->q_n >= SC_QUEUE_MSGS_MAX || co->q_bytes + list->bytes > SC_QUEUE_BYTES_MAX)) {
            if (added)
                pthread_cond_broadcast(&co->cond);
            added = false;
            co->room_wait = true; /* wps_consume wakes us when it takes the queue */
            pthread_cond_wait(&co->cond, &co->mu);
            co->room_wait = false;
            continue;
        }
        qmsg *m = list;
        list = m->next;
        m->next = NULL;
        if (co->tail)
            co->tail->next = m;
        else
            co->head = m;
        co->tail = m;
        co->q_n++;
        co->q_bytes += m->bytes;
        added = true;
    }
    if (added)
        pthread_cond_broadcast(&co->cond);
    bool ok = !atomic_load(&co->stop);
    pthread_mutex_unlock(&co->mu);
    list_free(list);
    return ok;
}

/* An end frame: where the channel went. */
static void on_end(wps_consumer *co, const char *p, size_t n)
{
    co->ended = true;
    cJSON *o = cJSON_ParseWithLength(p, n);
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(o, "addr");
    if (cJSON_IsString(a) && a->valuestring[0] &&
        meta_node_addr_valid(a->valuestring, strlen(a->valuestring)))
        snprintf(co->hint_addr, sizeof co->hint_addr, "%s", a->valuestring);
    cJSON_Delete(o);
}

/* Decodes the frames at p[0..n) into co->views: the bytes used (a
 * partial frame at the end is left), or -1 (co->fatal set). */
static long long decode_frames(wps_consumer *co, const uint8_t *p, size_t n)
{
    size_t at = 0;
    co->n_views = 0;
    if (!co->magic_seen) {
        if (n < WPM_MAGIC_LEN)
            return 0;
        if (memcmp(p, WPM_MAGIC, WPM_MAGIC_LEN) != 0) {
            co->fatal = wp__err(WP_ECORRUPT, "consume '%s': the stream does not start with %s",
                                co->channel, WPM_MAGIC);
            return -1;
        }
        co->magic_seen = true;
        at = WPM_MAGIC_LEN;
    }
    while (at < n && !co->ended) {
        char type, why[WPM_WHY_MAX];
        wpm_msg f;
        const char *end = NULL;
        size_t end_len = 0, need;
        long long k = wpm_frame_decode(p + at, n - at, SC_FRAME_BYTES_MAX, &type, &f, &end,
                                       &end_len, &need, why);
        if (k < 0) {
            co->fatal = wp__err(WP_ECORRUPT, "consume '%s': a frame of the stream does not decode "
                                "(%s)", co->channel, why);
            return -1;
        }
        if (k == 0)
            break;
        at += (size_t)k;
        if (type == WPM_FRAME_END) {
            on_end(co, end, end_len);
        } else if (type == WPM_FRAME_MSG) {
            if (co->queued_any && wp_msg_id_cmp(f.id, co->last) <= 0)
                continue; /* queued already (never expected: we resume after it) */
            if (co->n_views == co->cap_views) {
                size_t cap = co->cap_views ? 2 * co->cap_views : 256;
                wpm_msg *v = realloc(co->views, cap * sizeof *v);
                if (!v) {
                    co->fatal = wp__err(WP_ENOMEM, "consume '%s': %zu messages", co->channel, cap);
                    return -1;
                }
                co->views = v;
                co->cap_views = cap;
            }
            co->views[co->n_views++] = f;
            co->queued_any = true; /* as soon as it is on its way to the queue */
            co->last = f.id;
            co->got_msgs = true;
        }
    }
    return (long long)at;
}

/* The messages decoded from p onto the queue (also those before a frame
 * that does not decode). A frame ends with its payload: the last message's
 * payload ends the bytes they take. */
static bool queue_views(wps_consumer *co, const uint8_t *p)
{
    if (co->n_views == 0)
        return true;
    const wpm_msg *last = &co->views[co->n_views - 1];
    qmsg *list = batch_new(co, p, (size_t)(last->data + last->len - p));
    co->n_views = 0;
    return list && enqueue(co, list);
}

/* The stream's bytes (curl's write callback, through sh_perform). */
static bool on_data(void *arg, CURL *easy, const char *p, size_t n)
{
    wps_consumer *co = arg;
    if (co->status == 0) {
        curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &co->status);
        const char *ct = NULL;
        curl_easy_getinfo(easy, CURLINFO_CONTENT_TYPE, &ct);
        if (co->status == 200 && (!ct || !strstr(ct, WPM_CONTENT_TYPE))) {
            co->fatal = wp__err(WP_ECORRUPT, "consume '%s': the node answers '%s', not %s (an "
                                "older node?)", co->channel, ct ? ct : "", WPM_CONTENT_TYPE);
            return false;
        }
    }
    if (co->status != 200) { /* an error answer: kept for its message */
        size_t k = co->errbody.len + n > SC_ERROR_BODY_MAX ? SC_ERROR_BODY_MAX - co->errbody.len : n;
        sh_buf_put(&co->errbody, p, k);
        return true;
    }
    long long used;
    bool ok = true;
    if (co->part.len == 0) { /* straight from curl's buffer; keep what is left */
        used = decode_frames(co, (const uint8_t *)p, n);
        /* what decoded goes on, even before a bad frame */
        ok = queue_views(co, (const uint8_t *)p);
        if (used >= 0 && (size_t)used < n && !co->ended)
            sh_buf_put(&co->part, p + used, n - (size_t)used);
    } else {
        if (co->part.len + n > SC_FRAME_BYTES_MAX + (size_t)SC_RECV_BUFFER_BYTES) {
            co->fatal = wp__err(WP_ETOOBIG, "consume '%s': a frame of the stream is above %lld "
                                "bytes", co->channel, (long long)SC_FRAME_BYTES_MAX);
            return false;
        }
        sh_buf_put(&co->part, p, n);
        used = co->part.oom ? 0 : decode_frames(co, (const uint8_t *)co->part.p, co->part.len);
        ok = queue_views(co, (const uint8_t *)co->part.p);
        if (used > 0) {
            memmove(co->part.p, co->part.p + used, co->part.len - (size_t)used);
            co->part.len -= (size_t)used;
        }
    }
    if (co->part.oom) {
        co->fatal = wp__err(WP_ENOMEM, "consume '%s': a frame of %zu bytes", co->channel,
                            co->part.len + n);
        return false;
    }
    return ok && used >= 0;
}

/* ---- the thread ---------------------------------------------------------------- */

/* The stream stops when the consumer closes or the records move the
 * channel past the term of the owner it is open to. */
static bool check(void *arg)
{
    wps_consumer *co = arg;
    sc_rec rec;
    return atomic_load(&co->stop) ||
           (sc_lookup(co->c, co->channel, &rec, NULL) && rec.term > co->conn_term);
}

static void stream_url(wps_consumer *co, const char *addr, char *url, size_t cap)
{
    static const char *const from[] = {"all", "latest", "at", "after"};
    char id[WP_MSG_ID_STR_MAX] = "";
    const char *f = from[co->policy];
    if (co->queued_any) {
        f = "after";
        wp_msg_id_format(co->last, id);
    } else if (co->policy == WPS_FROM_AT || co->policy == WPS_FROM_AFTER) {
        wp_msg_id_format(co->start, id);
    }
    snprintf(url, cap, "http://%s/v1/channels/%s/messages?stream=1&from=%s%s%s", addr,
             co->channel, f, id[0] ? "&id=" : "", id);
}

/* Where to connect: an end line's hint (once), else the records' owner.
 * False if there is none yet; *gone if the channel has no record. */
static bool target(wps_consumer *co, char *addr, int64_t *term, uint64_t *gen, bool *gone)
{
    sc_rec rec;
    *gone = false;
    bool have = sc_lookup(co->c, co->channel, &rec, gen);
    if (!have) {
        int rc = sc_get(co->c, co->channel, &rec);
        if (rc == WP_ENOENT) {
            *gone = true;
            return false;
        }
        if (rc)
            return false;
    }
    bool hint = co->hint_addr[0] != '\0';
    snprintf(addr, META_NODE_ADDR_MAX + 1, "%s", hint ? co->hint_addr : rec.addr);
    co->hint_addr[0] = '\0';
    *term = rec.term;
    return addr[0] != '\0';
}

/* What an answer other than a stream means: true to try again. */
static bool retry_answer(wps_consumer *co, const sh_resp *r, const char *addr)
{
    char what[WPS_CHANNEL_MAX + 32];
    snprintf(what, sizeof what, "consume '%s'", co->channel);
    int rc = sh_error(r, what, addr);
    bool answered = r->curl_rc == CURLE_OK && r->status != 0;
    if (!answered || r->status == 421 || r->status == 409 || r->status == 503)
        return true;
    if (r->status >= 500 && rc != WP_ETRUNCATED && rc != WP_ECORRUPT && rc != WP_EINVAL &&
        rc != WP_ENOENT)
        return true;
    set_end(co, rc, wp_errmsg());
    return false;
}

/* One stream: open, read until it ends. True to open another. */
static bool one_stream(wps_consumer *co, const char *addr, bool *progress)
{
    char url[META_NODE_ADDR_MAX + WPS_CHANNEL_MAX + 128];
    stream_url(co, addr, url, sizeof url);
    co->status = 0;
    co->part.len = 0;
    co->part.oom = false;
    co->magic_seen = false;
    co->errbody.len = 0;
    co->ended = co->got_msgs = false;
    sh_resp r;
    sh_perform(&co->h, &(sh_req){.method = "GET", .url = url, .accept = WPM_CONTENT_TYPE,
                                 .on_data = on_data, .arg = co,
                                 .check = check, .check_arg = co},
               &r);
    *progress = co->got_msgs;
    if (atomic_load(&co->stop))
        return false;
    if (co->fatal) {
        set_end(co, co->fatal, wp_errmsg());
        return false;
    }
    if (co->status == 200 || r.status == 200)
        return true; /* the stream ended (a move, a drop, a record change): resume */
    r.body = co->errbody.p; /* the answer's body, for its error */
    r.len = co->errbody.len;
    bool again = retry_answer(co, &r, addr);
    if (again && r.status == 421 && r.body) { /* the owner as the node knows it */
        cJSON *o = cJSON_ParseWithLength(r.body, r.len);
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(o, "addr");
        if (cJSON_IsString(a) && a->valuestring[0] && strcmp(a->valuestring, addr) != 0 &&
            meta_node_addr_valid(a->valuestring, strlen(a->valuestring)))
            snprintf(co->hint_addr, sizeof co->hint_addr, "%s", a->valuestring);
        cJSON_Delete(o);
    }
    return again;
}

static void *consumer_main(void *arg)
{
    wps_consumer *co = arg;
    int64_t backoff = SC_BACKOFF_MIN_MS;
    while (!atomic_load(&co->stop)) {
        char addr[META_NODE_ADDR_MAX + 1];
        int64_t term = 0;
        uint64_t gen = 0;
        bool gone = false, progress = false;
        if (target(co, addr, &term, &gen, &gone)) {
            co->conn_term = term;
            if (!one_stream(co, addr, &progress))
                break;
            if (progress || co->ended)
                backoff = SC_BACKOFF_MIN_MS;
            if (co->hint_addr[0])
                continue; /* an end line or a 421 named the new owner: go now */
            sc_kick(co->c);
        } else if (gone) {
            set_end(co, WP_ENOENT, "consume: the channel was deleted");
            break;
        }
        sh_pause(co->c, gen, backoff, INT64_MAX, &co->stop);
        backoff = backoff * 2 < SC_BACKOFF_MAX_MS ? backoff * 2 : SC_BACKOFF_MAX_MS;
    }
    return NULL;
}

/* ---- WPS_FROM_LATEST: the owner's end, asked once at open ------------------------ */

/* The id of the first message after the end as the owner sees it now:
 * a long poll from=latest that waits for nothing. */
static int latest_position(wps_consumer *co, wp_msg_id *pos)
{
    int64_t deadline = wp__now_ns() + WPS_TIMEOUT_MS_DEFAULT * 1000000LL;
    int64_t backoff = SC_BACKOFF_MIN_MS;
    char last[WP_ERRMSG_MAX] = "the channel has no owner yet";
    for (;;) {
        char addr[META_NODE_ADDR_MAX + 1], url[META_NODE_ADDR_MAX + WPS_CHANNEL_MAX + 128];
        int64_t term = 0;
        uint64_t gen = 0;
        bool gone = false;
        if (target(co, addr, &term, &gen, &gone)) {
            snprintf(url, sizeof url, "http://%s/v1/channels/%s/messages?from=latest&max=1"
                     "&wait_ms=0", addr, co->channel);
            int64_t left = sh_left_ms(deadline);
            sh_resp r;
            sh_perform(&co->h, &(sh_req){.method = "GET", .url = url,
                                         .timeout_ms = left < SC_ATTEMPT_MS_MAX ? (left ? left : 1)
                                                                                : SC_ATTEMPT_MS_MAX},
                       &r);
            if (r.curl_rc == CURLE_OK && r.status == 200) {
                cJSON *o = cJSON_ParseWithLength(r.body ? r.body : "", r.len);
                const cJSON *ms = cJSON_GetObjectItemCaseSensitive(o, "messages");
                const cJSON *m0 = cJSON_GetArrayItem(ms, 0);
                const cJSON *id = m0 ? cJSON_GetObjectItemCaseSensitive(m0, "id")
                                     : cJSON_GetObjectItemCaseSensitive(o, "next");
                bool ok = cJSON_IsString(id) && sh_id_parse(id->valuestring, pos);
                cJSON_Delete(o);
                int rc = ok ? WP_OK : wp__err(WP_ECORRUPT, "consume '%s': %s: the answer from "
                                              "latest has no position: %.200s", co->channel, addr,
                                              r.body ? r.body : "");
                sh_resp_free(&r);
                return rc;
            }
            char what[WPS_CHANNEL_MAX + 32];
            snprintf(what, sizeof what, "consume '%s'", co->channel);
            int rc = sh_error(&r, what, addr);
            bool answered = r.curl_rc == CURLE_OK && r.status != 0;
            sh_resp_free(&r);
            if (answered && r.status != 421 && r.status != 409 && r.status < 500)
                return rc;
            snprintf(last, sizeof last, "%s", wp_errmsg());
            sc_kick(co->c);
        } else if (gone) {
            return wp__err(WP_ENOENT, "consume: no channel '%s'", co->channel);
        }
        if (sh_left_ms(deadline) == 0)
            return wp__err(WP_ETIMEDOUT, "consume '%s' from latest: no owner answered in %d ms "
                           "(last: %s)", co->channel, WPS_TIMEOUT_MS_DEFAULT, last);
        sh_pause(co->c, gen, backoff, deadline, NULL);
        backoff = backoff * 2 < SC_BACKOFF_MAX_MS ? backoff * 2 : SC_BACKOFF_MAX_MS;
    }
}

/* ---- the API ------------------------------------------------------------------- */

int wps_consumer_open(wps_client *c, const char *channel, int policy, wp_msg_id id,
                      wps_consumer **out)
{
    if (!c || !out)
        return wp__err(WP_EINVAL, "wps_consumer_open: NULL argument");
    *out = NULL;
    if (!sc_channel_valid(channel))
        return wp__err(WP_EINVAL, "wps_consumer_open: bad channel name (1..%d bytes of "
                       "[A-Za-z0-9._-])", WPS_CHANNEL_MAX);
    if (policy < WPS_FROM_ALL || policy > WPS_FROM_AFTER)
        return wp__err(WP_EINVAL, "wps_consumer_open: bad policy %d (WPS_FROM_*)", policy);
    bool with_id = policy == WPS_FROM_AT || policy == WPS_FROM_AFTER;
    if (with_id && (id.segment_id < 0 || id.entry_id < 0))
        return wp__err(WP_EINVAL, "wps_consumer_open: negative id");
    sc_rec rec;
    int rc = sc_lookup(c, channel, &rec, NULL) ? WP_OK : sc_get(c, channel, &rec);
    if (rc)
        return rc;
    wps_consumer *co = calloc(1, sizeof *co);
    if (!co)
        return wp__err(WP_ENOMEM, "consumer");
    co->c = c;
    memcpy(co->channel, channel, strlen(channel) + 1);
    co->policy = policy;
    co->start = with_id ? id : (wp_msg_id){0, 0};
    pthread_mutex_init(&co->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&co->cond, &ca);
    pthread_condattr_destroy(&ca);
    if ((rc = sh_conn_init(&co->h, c)))
        goto out_free;
    if (policy == WPS_FROM_LATEST) {
        if ((rc = latest_position(co, &co->start)))
            goto out_conn;
        co->policy = WPS_FROM_AT;
    }
    if (pthread_create(&co->thr, NULL, consumer_main, co) != 0) {
        rc = wp__err(WP_ENOMEM, "cannot start the consumer's thread");
        goto out_conn;
    }
    co->thr_started = true;
    sc_handles_add(c, 1);
    *out = co;
    return WP_OK;
out_conn:
    sh_conn_free(&co->h);
out_free:
    pthread_mutex_destroy(&co->mu);
    pthread_cond_destroy(&co->cond);
    free(co);
    return rc;
}

int wps_consume(wps_consumer *co, int timeout_ms, wps_message *out)
{
    if (!co || !out)
        return wp__err(WP_EINVAL, "wps_consume: NULL argument");
    qmsg_free(co->cur);
    co->cur = NULL;
    if (!co->mine) { /* the whole queue at once: one lock per batch, not per message */
        int64_t deadline = wp__now_ns() + (int64_t)(timeout_ms > 0 ? timeout_ms : 0) * 1000000LL;
        struct timespec ts = {deadline / 1000000000LL, deadline % 1000000000LL};
        pthread_mutex_lock(&co->mu);
        while (!co->head && !co->end_rc && timeout_ms != 0) {
            if (timeout_ms < 0)
                pthread_cond_wait(&co->cond, &co->mu);
            else if (pthread_cond_timedwait(&co->cond, &co->mu, &ts) != 0)
                break;
        }
        co->mine = co->head;
        co->head = co->tail = NULL;
        co->q_n = co->q_bytes = 0;
        if (co->mine && co->room_wait)
            pthread_cond_broadcast(&co->cond); /* room for the thread, in one go */
        int end = co->end_rc;
        if (!co->mine) {
            char msg[WP_ERRMSG_MAX];
            snprintf(msg, sizeof msg, "%s", co->end_msg);
            pthread_mutex_unlock(&co->mu);
            return end ? wp__err(end, "%s", msg)
                       : wp__err(WP_ETIMEDOUT, "consume '%s': no message in %d ms", co->channel,
                                 timeout_ms);
        }
        pthread_mutex_unlock(&co->mu);
    }
    qmsg *m = co->mine;
    co->mine = m->next;
    co->cur = m;
    *out = (wps_message){.id = m->id, .data = m->data, .len = m->len, .n_props = m->n_props,
                         .prop_keys = m->keys, .prop_values = m->vals, .producer = m->producer,
                         .seq = m->seq};
    return WP_OK;
}

void wps_consumer_close(wps_consumer *co)
{
    if (!co)
        return;
    atomic_store(&co->stop, true);
    pthread_mutex_lock(&co->mu);
    pthread_cond_broadcast(&co->cond); /* a full queue's wait */
    pthread_mutex_unlock(&co->mu);
    sc_wake(co->c);                    /* a pause */
    curl_multi_wakeup(co->h.multi);    /* a stream */
    if (co->thr_started)
        pthread_join(co->thr, NULL);
    sh_conn_free(&co->h);
    sc_handles_add(co->c, -1);
    while (co->head) {
        qmsg *m = co->head;
        co->head = m->next;
        qmsg_free(m);
    }
    list_free(co->mine);
    qmsg_free(co->cur);
    free(co->views);
    sh_buf_free(&co->part);
    sh_buf_free(&co->errbody);
    pthread_mutex_destroy(&co->mu);
    pthread_cond_destroy(&co->cond);
    free(co);
}
