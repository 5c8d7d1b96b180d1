/* stream_producer.c — idempotent producers (include/woodpecker_stream.h,
 * docs/streaming-api.md §2). A wps_produce call becomes one or more produce
 * requests; each is sent to the channel's owner as the client's records
 * (or the last 421 answer) name it, and sent again unchanged — same
 * producer id and sequence numbers, only the term the client believes in
 * may differ — after a lost answer, a move or a node that is not ready,
 * until its deadline. The node answers a sequence number it has made
 * durable with the id it got then, so a retry never writes a message
 * twice. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "client/stream_client.h"
#include "codec/wpm.h"

struct wps_producer {
    wps_client *c;
    char channel[WPS_CHANNEL_MAX + 1];
    char id[WPS_PRODUCER_ID_MAX + 1];
    pthread_mutex_t mu; /* calls; everything below */
    int64_t next_seq;
    int64_t timeout_ms;
    sh_conn h;
    /* The owner a 421 or 409 answer named, when newer than the records. */
    char hint_addr[META_NODE_ADDR_MAX + 1];
    int64_t hint_term;
    int64_t sent_term; /* of the request in progress (check_moved) */
};

static bool producer_id_valid(const char *s)
{
    size_t n = s ? strnlen(s, WPS_PRODUCER_ID_MAX + 1) : 0;
    if (n < 1 || n > WPS_PRODUCER_ID_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] < 0x21 || s[i] > 0x7e)
            return false;
    return true;
}

/* "p-" and 128 random bits in hex. */
static int generate_id(char out[WPS_PRODUCER_ID_MAX + 1])
{
    uint8_t r[16];
    size_t got = 0;
    while (got < sizeof r) {
        ssize_t k = getrandom(r + got, sizeof r - got, 0);
        if (k <= 0)
            return wp__err_sys(errno, "getrandom", "producer id");
        got += (size_t)k;
    }
    char *p = out + snprintf(out, WPS_PRODUCER_ID_MAX + 1, "p-");
    for (size_t i = 0; i < sizeof r; i++)
        p += snprintf(p, 3, "%02x", r[i]);
    return WP_OK;
}

/* The highest sequence number the channel's producers' snapshot holds for
 * id, -1 if none (or it cannot be read: the clock covers it). */
static int64_t snapshot_last_seq(wps_client *c, const char *channel, const char *id)
{
    char key[META_KV_KEY_MAX + 1];
    snprintf(key, sizeof key, "%s%s", SC_KEY_PRODUCERS, channel);
    meta_kv kv = {0};
    int64_t last = -1;
    if (c->m->ops->kv_get(c->m, key, &kv) != WP_OK) {
        wp__err_clear();
        return last;
    }
    cJSON *o = cJSON_ParseWithLength((const char *)kv.value, kv.len);
    const cJSON *ps = cJSON_GetObjectItemCaseSensitive(o, "producers");
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(ps, id), *pair;
    cJSON_ArrayForEach(pair, (cJSON_IsArray(arr) ? arr : NULL))
    {
        const cJSON *s = cJSON_GetArrayItem(pair, 0);
        if (cJSON_IsNumber(s) && s->valuedouble > (double)last && s->valuedouble < (double)WPM_SEQ_MAX)
            last = (int64_t)s->valuedouble;
    }
    cJSON_Delete(o);
    meta_kv_free(&kv);
    return last;
}

int wps_producer_open(wps_client *c, const char *channel, const char *producer_id,
                      wps_producer **out)
{
    if (!c || !out)
        return wp__err(WP_EINVAL, "wps_producer_open: NULL argument");
    *out = NULL;
    if (!sc_channel_valid(channel))
        return wp__err(WP_EINVAL, "wps_producer_open: bad channel name (1..%d bytes of "
                       "[A-Za-z0-9._-])", WPS_CHANNEL_MAX);
    if (producer_id && !producer_id_valid(producer_id))
        return wp__err(WP_EINVAL, "wps_producer_open: bad producer id (1..%d bytes of printable "
                       "ASCII, no spaces)", WPS_PRODUCER_ID_MAX);
    sc_rec rec;
    int rc = sc_lookup(c, channel, &rec, NULL) ? WP_OK : sc_get(c, channel, &rec);
    if (rc)
        return rc;
    wps_producer *p = calloc(1, sizeof *p);
    if (!p)
        return wp__err(WP_ENOMEM, "producer");
    p->c = c;
    p->timeout_ms = WPS_TIMEOUT_MS_DEFAULT;
    memcpy(p->channel, channel, strlen(channel) + 1);
    if (producer_id)
        memcpy(p->id, producer_id, strlen(producer_id) + 1);
    else if ((rc = generate_id(p->id)))
        goto out_free;
    /* Above whatever this id sent before: the clock in microseconds (a
     * producer sends far fewer than a million messages a second), and the
     * snapshot's last number should the clock have gone back. */
    int64_t last = snapshot_last_seq(c, channel, p->id);
    p->next_seq = wp__wall_ms() * 1000;
    if (p->next_seq <= last)
        p->next_seq = last + 1;
    if ((rc = sh_conn_init(&p->h, c)))
        goto out_free;
    pthread_mutex_init(&p->mu, NULL);
    sc_handles_add(c, 1);
    *out = p;
    return WP_OK;
out_free:
    free(p);
    return rc;
}

const char *wps_producer_id(const wps_producer *p) { return p ? p->id : ""; }

void wps_producer_set_timeout_ms(wps_producer *p, int64_t timeout_ms)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->timeout_ms = timeout_ms >= 1 ? timeout_ms : 1;
    pthread_mutex_unlock(&p->mu);
}

void wps_producer_close(wps_producer *p)
{
    if (!p)
        return;
    sh_conn_free(&p->h);
    sc_handles_add(p->c, -1);
    pthread_mutex_destroy(&p->mu);
    free(p);
}

/* ---- one request ------------------------------------------------------------ */

static int check_msgs(const wp_payload *msgs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const wp_payload *m = &msgs[i];
        if (!m->data && m->len > 0)
            return wp__err(WP_EINVAL, "wps_produce: message %zu: NULL data", i);
        if (m->n_props > 0 && (!m->prop_keys || !m->prop_values))
            return wp__err(WP_EINVAL, "wps_produce: message %zu: NULL properties", i);
        if (m->len > (size_t)WP_ENTRY_BYTES_MAX)
            return wp__err(WP_ETOOBIG, "wps_produce: message %zu: %zu bytes, above %lld", i,
                           m->len, (long long)WP_ENTRY_BYTES_MAX);
        if (m->n_props > WPS_PROPS_MAX)
            return wp__err(WP_EINVAL, "wps_produce: message %zu: %zu properties, above %d", i,
                           m->n_props, WPS_PROPS_MAX);
        for (size_t k = 0; k < m->n_props; k++) {
            const char *key = m->prop_keys[k], *v = m->prop_values[k];
            if (!key || !v || !wpm_utf8_valid(key, strlen(key)) || !wpm_utf8_valid(v, strlen(v)))
                return wp__err(WP_EINVAL, "wps_produce: message %zu: property %zu is not a valid "
                               "UTF-8 string", i, k);
            if (strlen(key) > WP_PROP_KEY_MAX || strlen(v) > WP_PROP_VALUE_MAX)
                return wp__err(WP_ETOOBIG, "wps_produce: message %zu: property %zu is above %d "
                               "bytes of key or %lld of value", i, k, WP_PROP_KEY_MAX,
                               (long long)WP_PROP_VALUE_MAX);
        }
    }
    return WP_OK;
}

/* The next request: messages from msgs[0] while they fit
 * stream.max_request_bytes (at least one), numbered from p->next_seq;
 * s->cnt gets their count. */
static int build_src(wps_producer *p, const wp_payload *msgs, size_t n, sc_body *s)
{
    size_t limit = (size_t)p->c->cfg.stream_max_request_bytes;
    size_t idl = strlen(p->id), hdr = wpm_req_hdr_size(idl), total = hdr, cnt = 0;
    size_t head_max = hdr;
    while (cnt < n && cnt < SC_REQUEST_MESSAGES_MAX) {
        const wp_payload *m = &msgs[cnt];
        size_t head = WPM_REQ_MSG_FIXED + wpm_props_size(m->n_props, m->prop_keys, m->prop_values);
        if (cnt > 0 && total + head + m->len > limit)
            break; /* goes into the next request */
        total += head + m->len;
        if (head > head_max)
            head_max = head;
        cnt++;
    }
    if (p->next_seq + (int64_t)cnt >= WPM_SEQ_MAX)
        return wp__err(WP_EINVAL, "producer '%s': sequence numbers exhausted", p->id);
    int rc = sc_body_init(s, p->id, msgs, cnt, p->next_seq, total, head_max);
    if (rc)
        return rc;
    p->next_seq += (int64_t)cnt;
    return WP_OK;
}

/* A request in progress stops when the records move the channel past the
 * term it was sent at. */
static bool check_moved(void *arg)
{
    wps_producer *p = arg;
    sc_rec rec;
    return sc_lookup(p->c, p->channel, &rec, NULL) && rec.term > p->sent_term;
}

/* The ids of a 200 answer (docs/streaming-api.md §7): k of them, in
 * request order. */
static int parse_ids(const sh_resp *r, size_t k, wp_msg_id *ids, const char *addr)
{
    int64_t term;
    uint32_t count = 0;
    const uint8_t *raw;
    char why[WPM_WHY_MAX];
    if (wpm_ans_decode((const uint8_t *)(r->body ? r->body : ""), r->body ? r->len : 0, &term,
                       &count, &raw, why))
        return wp__err(WP_ECORRUPT, "produce: %s: the answer does not decode: %s", addr, why);
    if (count != k)
        return wp__err(WP_ECORRUPT, "produce: %s: the answer holds %u ids for %zu messages", addr,
                       count, k);
    for (uint32_t i = 0; ids && i < count; i++) {
        bool dup;
        wpm_ans_id(raw, i, &ids[i], &dup);
        if (ids[i].segment_id < 0 || ids[i].entry_id < 0)
            ids[i] = (wp_msg_id){-1, -1};
    }
    return WP_OK;
}

/* The owner a 421 (records as the node read them) or 409 stale_term (the
 * node's own term) answer names, kept when newer than what we sent to. */
static void take_hint(wps_producer *p, const sh_resp *r, const char *addr, int64_t term)
{
    cJSON *o = r->body ? cJSON_ParseWithLength(r->body, r->len) : NULL;
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(o, "addr");
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, "term");
    const char *ha = r->status == 409 ? addr : cJSON_IsString(a) ? a->valuestring : "";
    if (cJSON_IsNumber(t) && t->valuedouble > (double)term && t->valuedouble < (double)WPM_SEQ_MAX &&
        ha[0] && meta_node_addr_valid(ha, strlen(ha))) {
        snprintf(p->hint_addr, sizeof p->hint_addr, "%s", ha);
        p->hint_term = (int64_t)t->valuedouble;
    }
    cJSON_Delete(o);
}

/* Where to send: the records' owner, or a newer hint. False if the channel
 * has no owner yet; *gone if it has no record. */
static bool target(wps_producer *p, char *addr, int64_t *term, uint64_t *gen, bool *gone)
{
    sc_rec rec;
    *gone = false;
    bool have = sc_lookup(p->c, p->channel, &rec, gen);
    if (!have) {
        int rc = sc_get(p->c, p->channel, &rec); /* a record the client has not seen yet? */
        if (rc == WP_ENOENT) {
            *gone = true;
            return false;
        }
        if (rc)
            rec = (sc_rec){0};
    }
    if (p->hint_addr[0] && p->hint_term > rec.term) {
        snprintf(addr, META_NODE_ADDR_MAX + 1, "%s", p->hint_addr);
        *term = p->hint_term;
        return true;
    }
    p->hint_addr[0] = '\0';
    snprintf(addr, META_NODE_ADDR_MAX + 1, "%s", rec.addr);
    *term = rec.term;
    return rec.addr[0] != '\0';
}

/* Sends one request until it is answered 200, a permanent error or the
 * deadline. */
static int send_request(wps_producer *p, sc_body *body, size_t k, wp_msg_id *ids,
                        int64_t deadline)
{
    char addr[META_NODE_ADDR_MAX + 1], url[META_NODE_ADDR_MAX + WPS_CHANNEL_MAX + 64];
    char last[WP_ERRMSG_MAX] = "the channel has no owner yet";
    int64_t backoff = SC_BACKOFF_MIN_MS;
    int rc = WP_OK;
    for (;;) {
        int64_t term = 0;
        uint64_t gen = 0;
        bool gone = false;
        if (target(p, addr, &term, &gen, &gone)) {
            body->term = term;
            sc_body_rewind(body);
            snprintf(url, sizeof url, "http://%s/v1/channels/%s/messages", addr, p->channel);
            int64_t left = sh_left_ms(deadline);
            p->sent_term = term;
            sh_resp r;
            sh_perform(&p->h, &(sh_req){.method = "POST", .url = url, .body_read = sc_body_read,
                                        .body_rewind = sc_body_rewind, .body_arg = body,
                                        .body_len = body->total,
                                        .content_type = WPM_CONTENT_TYPE,
                                        .accept = WPM_CONTENT_TYPE,
                                        .timeout_ms = left < SC_ATTEMPT_MS_MAX ? (left ? left : 1)
                                                                               : SC_ATTEMPT_MS_MAX,
                                        .check = check_moved, .check_arg = p},
                       &r);
            bool answered = r.curl_rc == CURLE_OK && r.status != 0;
            if (answered && r.status == 200) {
                rc = parse_ids(&r, k, ids, addr);
                sh_resp_free(&r);
                break;
            }
            bool retry = !answered || r.status == 421 || r.status == 409 || r.status >= 500;
            rc = sh_error(&r, "produce", addr);
            snprintf(last, sizeof last, "%s", wp_errmsg());
            if (answered && (r.status == 421 || r.status == 409))
                take_hint(p, &r, addr, term);
            sh_resp_free(&r);
            if (!retry)
                break;
            sc_kick(p->c);
            if (p->hint_addr[0] && strcmp(p->hint_addr, addr) != 0 && backoff == SC_BACKOFF_MIN_MS) {
                backoff *= 2; /* a new owner named: go there at once, once */
                continue;
            }
        } else if (gone) {
            rc = wp__err(WP_ENOENT, "produce: no channel '%s'", p->channel);
            break;
        }
        if (sh_left_ms(deadline) == 0) {
            rc = wp__err(WP_ETIMEDOUT, "produce to '%s': not acknowledged in %" PRId64 " ms "
                         "(last: %s)", p->channel, p->timeout_ms, last);
            break;
        }
        sh_pause(p->c, gen, backoff, deadline, NULL);
        backoff = backoff * 2 < SC_BACKOFF_MAX_MS ? backoff * 2 : SC_BACKOFF_MAX_MS;
    }
    return rc;
}

int wps_produce(wps_producer *p, const wp_payload *msgs, size_t n, wp_msg_id *ids_out)
{
    if (!p || (!msgs && n > 0))
        return wp__err(WP_EINVAL, "wps_produce: NULL argument");
    for (size_t i = 0; ids_out && i < n; i++)
        ids_out[i] = (wp_msg_id){-1, -1};
    int rc = check_msgs(msgs, n);
    if (rc)
        return rc;
    pthread_mutex_lock(&p->mu);
    for (size_t i = 0; i < n && rc == WP_OK;) {
        sc_body body;
        if ((rc = build_src(p, msgs + i, n - i, &body)))
            break;
        int64_t deadline = wp__now_ns() + p->timeout_ms * 1000000LL;
        rc = send_request(p, &body, body.cnt, ids_out ? ids_out + i : NULL, deadline);
        sc_body_free(&body);
        i += body.cnt;
    }
    pthread_mutex_unlock(&p->mu);
    return rc;
}
