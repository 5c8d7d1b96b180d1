/* stream_consumer.c — consumers (include/woodpecker_stream.h,
 * docs/streaming-api.md §4). Each consumer has a thread that keeps one
 * pushed stream (GET ...?stream=1, NDJSON) open to the channel's owner and
 * puts the messages it decodes on a bounded queue; when the queue is full
 * the thread stops reading, and TCP holds the node back. When the stream
 * ends — a move ({"end":"moved",...}), a dropped connection, a 421, a
 * record that names a new owner — the thread opens a stream at the owner
 * the records (or the end line) name, from after the last message it
 * queued: every message is queued once, in id order. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "client/stream_client.h"

typedef struct qmsg {
    struct qmsg *next;
    wp_msg_id id;
    uint8_t *data; /* len bytes, then a NUL */
    size_t len;
    size_t n_props;
    char **keys, **vals;
    char *producer;
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
    int end_rc; /* the stream ended for good: after the queue, this */
    char end_msg[WP_ERRMSG_MAX];
    qmsg *cur; /* returned last; freed at the next call */
    /* The thread's own. */
    int policy;       /* WPS_FROM_*; LATEST is resolved to AT at open */
    wp_msg_id start;
    bool queued_any;
    wp_msg_id last;   /* last message queued */
    int64_t conn_term; /* term of the owner the stream is open to */
    long status;      /* of the stream's answer; 0 before its first byte */
    sh_buf line;      /* a partial NDJSON line */
    sh_buf errbody;   /* an answer that is not the stream */
    bool ended;       /* an end line came */
    bool got_msgs;    /* this connection delivered a message */
    char hint_addr[META_NODE_ADDR_MAX + 1];
    int fatal;        /* a line that does not decode, or too long */
};

static void qmsg_free(qmsg *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->n_props; i++) {
        free(m->keys[i]);
        free(m->vals[i]);
    }
    free(m->keys);
    free(m->vals);
    free(m->data);
    free(m->producer);
    free(m);
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

/* ---- decoding ----------------------------------------------------------------- */

static char *dup_str(const char *s, size_t *bytes)
{
    size_t n = strlen(s);
    char *d = malloc(n + 1);
    if (d)
        memcpy(d, s, n + 1);
    *bytes += n + 1;
    return d;
}

static int decode_props(const cJSON *props, qmsg *m)
{
    if (!props)
        return WP_OK;
    if (!cJSON_IsObject(props))
        return WP_ECORRUPT;
    int n = cJSON_GetArraySize(props);
    m->keys = calloc(n ? (size_t)n : 1, sizeof *m->keys);
    m->vals = calloc(n ? (size_t)n : 1, sizeof *m->vals);
    if (!m->keys || !m->vals)
        return WP_ENOMEM;
    const cJSON *kv;
    cJSON_ArrayForEach(kv, props)
    {
        if (!cJSON_IsString(kv) || !kv->string)
            return WP_ECORRUPT;
        size_t i = m->n_props;
        m->keys[i] = dup_str(kv->string, &m->bytes);
        m->vals[i] = dup_str(kv->valuestring, &m->bytes);
        m->n_props++;
        if (!m->keys[i] || !m->vals[i])
            return WP_ENOMEM;
    }
    return WP_OK;
}

/* One message object of the stream into a new qmsg. */
static int decode_msg(const cJSON *o, qmsg **out)
{
    qmsg *m = calloc(1, sizeof *m);
    if (!m)
        return WP_ENOMEM;
    m->seq = -1;
    m->bytes = sizeof *m;
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(o, "id");
    const cJSON *pl = cJSON_GetObjectItemCaseSensitive(o, "payload");
    const cJSON *b64 = cJSON_GetObjectItemCaseSensitive(o, "payload_b64");
    const cJSON *pr = cJSON_GetObjectItemCaseSensitive(o, "producer");
    const cJSON *sq = cJSON_GetObjectItemCaseSensitive(o, "seq");
    int rc = WP_OK;
    bool oom = false;
    if (!cJSON_IsString(id) || !sh_id_parse(id->valuestring, &m->id) || (pl && b64) ||
        (pr && !cJSON_IsString(pr)) || (sq && !cJSON_IsNumber(sq)))
        rc = WP_ECORRUPT;
    else if (cJSON_IsString(pl)) {
        m->len = strlen(pl->valuestring);
        if (!(m->data = (uint8_t *)dup_str(pl->valuestring, &m->bytes)))
            rc = WP_ENOMEM;
    } else if (!cJSON_IsString(b64)) {
        rc = WP_ECORRUPT;
    } else if (!(m->data = sh_b64_decode(b64->valuestring, &m->len, &oom))) {
        rc = oom ? WP_ENOMEM : WP_ECORRUPT;
    } else {
        m->bytes += m->len + 1;
    }
    if (rc == WP_OK)
        rc = decode_props(cJSON_GetObjectItemCaseSensitive(o, "props"), m);
    if (rc == WP_OK && pr && !(m->producer = dup_str(pr->valuestring, &m->bytes)))
        rc = WP_ENOMEM;
    if (rc == WP_OK && sq)
        m->seq = sq->valuedouble >= 0 && sq->valuedouble < 9007199254740992.0 ? (int64_t)sq->valuedouble
                                                                              : -1;
    if (rc) {
        qmsg_free(m);
        return rc;
    }
    *out = m;
    return WP_OK;
}

/* Puts m on the queue, waiting while it is full. False if the consumer is
 * closing (m freed). */
static bool enqueue(wps_consumer *co, qmsg *m)
{
    pthread_mutex_lock(&co->mu);
    while (!atomic_load(&co->stop) && co->q_n > 0 &&
           (co->q_n >= SC_QUEUE_MSGS_MAX || co->q_bytes + m->bytes > SC_QUEUE_BYTES_MAX))
        pthread_cond_wait(&co->cond, &co->mu);
    bool ok = !atomic_load(&co->stop);
    if (ok) {
        if (co->tail)
            co->tail->next = m;
        else
            co->head = m;
        co->tail = m;
        co->q_n++;
        co->q_bytes += m->bytes;
        pthread_cond_broadcast(&co->cond);
    }
    pthread_mutex_unlock(&co->mu);
    if (!ok)
        qmsg_free(m);
    return ok;
}

/* One NDJSON line: a message, an end line, or a heartbeat (empty). False
 * stops the stream (closing, or co->fatal set). */
static bool on_line(wps_consumer *co, const char *p, size_t n)
{
    if (n > 0 && p[n - 1] == '\r')
        n--;
    if (n == 0)
        return true; /* heartbeat */
    cJSON *o = cJSON_ParseWithLength(p, n);
    if (!cJSON_IsObject(o)) {
        cJSON_Delete(o);
        co->fatal = wp__err(WP_ECORRUPT, "consume '%s': a line of the stream is not a JSON object: "
                            "%.*s", co->channel, (int)(n < 100 ? n : 100), p);
        return false;
    }
    const cJSON *end = cJSON_GetObjectItemCaseSensitive(o, "end");
    if (end) {
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(o, "addr");
        co->ended = true;
        if (cJSON_IsString(a) && a->valuestring[0] && meta_node_addr_valid(a->valuestring,
                                                                            strlen(a->valuestring)))
            snprintf(co->hint_addr, sizeof co->hint_addr, "%s", a->valuestring);
        cJSON_Delete(o);
        return true;
    }
    qmsg *m = NULL;
    int rc = decode_msg(o, &m);
    cJSON_Delete(o);
    if (rc) {
        co->fatal = rc == WP_ENOMEM
                        ? wp__err(WP_ENOMEM, "consume '%s': out of memory", co->channel)
                        : wp__err(WP_ECORRUPT, "consume '%s': a message does not decode: %.*s",
                                  co->channel, (int)(n < 100 ? n : 100), p);
        return false;
    }
    if (co->queued_any && wp_msg_id_cmp(m->id, co->last) <= 0) {
        qmsg_free(m); /* queued already (never expected: we resume after it) */
        return true;
    }
    wp_msg_id id = m->id;
    if (!enqueue(co, m))
        return false;
    co->queued_any = true;
    co->last = id;
    co->got_msgs = true;
    return true;
}

/* The stream's bytes (curl's write callback, through sh_perform). */
static bool on_data(void *arg, CURL *easy, const char *p, size_t n)
{
    wps_consumer *co = arg;
    if (co->status == 0)
        curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &co->status);
    if (co->status != 200) { /* an error answer: kept for its message */
        size_t k = co->errbody.len + n > SC_ERROR_BODY_MAX ? SC_ERROR_BODY_MAX - co->errbody.len : n;
        sh_buf_put(&co->errbody, p, k);
        return true;
    }
    while (n > 0) {
        const char *nl = memchr(p, '\n', n);
        size_t k = nl ? (size_t)(nl - p) : n;
        if (co->line.len + k > SC_LINE_BYTES_MAX) {
            co->fatal = wp__err(WP_ETOOBIG, "consume '%s': a line of the stream is above %lld "
                                "bytes", co->channel, (long long)SC_LINE_BYTES_MAX);
            return false;
        }
        bool ok = true;
        if (nl && co->line.len == 0) {
            ok = on_line(co, p, k); /* the whole line is here: no copy */
        } else {
            sh_buf_put(&co->line, p, k);
            if (co->line.oom) {
                co->fatal = wp__err(WP_ENOMEM, "consume '%s': a line of %zu bytes", co->channel,
                                    co->line.len + k);
                return false;
            }
            if (nl) {
                ok = on_line(co, co->line.p, co->line.len);
                co->line.len = 0;
            }
        }
        if (!ok)
            return false;
        p += nl ? k + 1 : k;
        n -= nl ? k + 1 : k;
    }
    return true;
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
    co->line.len = 0;
    co->errbody.len = 0;
    co->ended = co->got_msgs = false;
    sh_resp r;
    sh_perform(&co->h, &(sh_req){.method = "GET", .url = url, .on_data = on_data, .arg = co,
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
    int64_t deadline = wp__now_ns() + (int64_t)(timeout_ms > 0 ? timeout_ms : 0) * 1000000LL;
    struct timespec ts = {deadline / 1000000000LL, deadline % 1000000000LL};
    pthread_mutex_lock(&co->mu);
    while (!co->head && !co->end_rc && timeout_ms != 0) {
        if (timeout_ms < 0)
            pthread_cond_wait(&co->cond, &co->mu);
        else if (pthread_cond_timedwait(&co->cond, &co->mu, &ts) != 0)
            break;
    }
    qmsg *m = co->head;
    if (m) {
        co->head = m->next;
        if (!co->head)
            co->tail = NULL;
        co->q_n--;
        co->q_bytes -= m->bytes;
        pthread_cond_broadcast(&co->cond); /* room for the thread */
    }
    int end = co->end_rc;
    char msg[WP_ERRMSG_MAX];
    snprintf(msg, sizeof msg, "%s", co->end_msg);
    pthread_mutex_unlock(&co->mu);
    if (!m)
        return end ? wp__err(end, "%s", msg)
                   : wp__err(WP_ETIMEDOUT, "consume '%s': no message in %d ms", co->channel,
                             timeout_ms);
    co->cur = m;
    *out = (wps_message){.id = m->id, .data = m->data, .len = m->len, .n_props = m->n_props,
                         .prop_keys = (const char *const *)m->keys,
                         .prop_values = (const char *const *)m->vals, .producer = m->producer,
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
    qmsg_free(co->cur);
    sh_buf_free(&co->line);
    sh_buf_free(&co->errbody);
    pthread_mutex_destroy(&co->mu);
    pthread_cond_destroy(&co->cond);
    free(co);
}
