/* stream_http.c — the streaming client's HTTP requests and error answers;
 * see stream_client.h. A request runs on a curl multi handle of its own
 * (one easy handle, whose connection is kept for the next request) and
 * sleeps in curl_multi_poll, which the client's records thread interrupts
 * (curl_multi_wakeup) when a channel record changes: a request to a node
 * that no longer owns the channel is then stopped at once, whatever it
 * waits for. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "client/stream_client.h"

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;
static void curl_init(void) { curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT); }

int sh_conn_init(sh_conn *h, wps_client *c)
{
    *h = (sh_conn){.c = c};
    pthread_once(&curl_once, curl_init);
    if (curl_init_rc != CURLE_OK)
        return wp__err(WP_ENOMEM, "curl_global_init: %s", curl_easy_strerror(curl_init_rc));
    h->multi = curl_multi_init();
    h->easy = h->multi ? curl_easy_init() : NULL;
    if (!h->easy) {
        if (h->multi)
            curl_multi_cleanup(h->multi);
        return wp__err(WP_ENOMEM, "curl handles");
    }
    pthread_mutex_lock(&c->mu);
    h->next = c->conns;
    c->conns = h;
    pthread_mutex_unlock(&c->mu);
    return WP_OK;
}

void sh_conn_free(sh_conn *h)
{
    if (!h->multi)
        return;
    wps_client *c = h->c;
    pthread_mutex_lock(&c->mu); /* no wakeup of it from now on */
    sh_conn **pp = &c->conns;
    while (*pp && *pp != h)
        pp = &(*pp)->next;
    if (*pp)
        *pp = h->next;
    pthread_mutex_unlock(&c->mu);
    curl_easy_cleanup(h->easy);
    curl_multi_cleanup(h->multi);
    h->multi = NULL;
    h->easy = NULL;
}

/* ---- one request ---------------------------------------------------------------- */

typedef struct {
    const sh_req *q;
    sh_resp *r;
    CURL *easy;
    bool stopped;
} xfer;

static size_t on_write(char *p, size_t sz, size_t nm, void *arg)
{
    xfer *x = arg;
    size_t n = sz * nm;
    if (x->q->on_data) {
        if (x->q->on_data(x->q->arg, x->easy, p, n))
            return n;
        x->stopped = true;
        return 0; /* not n: curl stops the transfer */
    }
    sh_resp *r = x->r;
    if (r->len + n > SC_ANSWER_BYTES_MAX) {
        snprintf(r->err, sizeof r->err, "answer above %lld bytes", (long long)SC_ANSWER_BYTES_MAX);
        x->stopped = true;
        return 0;
    }
    char *b = realloc(r->body, r->len + n + 1);
    if (!b) {
        snprintf(r->err, sizeof r->err, "out of memory for the answer");
        x->stopped = true;
        return 0;
    }
    memcpy(b + r->len, p, n);
    r->body = b;
    r->len += n;
    b[r->len] = '\0';
    return n;
}

static size_t on_read(char *buf, size_t sz, size_t nm, void *arg)
{
    xfer *x = arg;
    return x->q->body_read(x->q->body_arg, buf, sz * nm);
}

/* curl sends a body again from its start when a reused connection turns
 * out closed: only offset 0 is asked for. */
static int on_seek(void *arg, curl_off_t off, int origin)
{
    xfer *x = arg;
    if (off != 0 || origin != SEEK_SET)
        return CURL_SEEKFUNC_CANTSEEK;
    x->q->body_rewind(x->q->body_arg);
    return CURL_SEEKFUNC_OK;
}

static void set_options(CURL *e, const sh_req *q, struct curl_slist *hd, xfer *x, char *err)
{
    curl_easy_setopt(e, CURLOPT_URL, q->url);
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, q->method);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, hd);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http");
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPIDLE, 5L);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPINTVL, 5L);
    long connect_ms = q->timeout_ms > 0 && q->timeout_ms < SC_CONNECT_MS ? (long)q->timeout_ms
                                                                         : SC_CONNECT_MS;
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, connect_ms);
    if (q->timeout_ms > 0) {
        curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)q->timeout_ms);
    } else { /* a stream: no end, but never silent for long (heartbeats) */
        curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1L);
        curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, (long)SC_STREAM_IDLE_S);
    }
    /* Fewer, larger reads and writes: a pushed stream and produce bodies
     * carry hundreds of KiB at a time. */
    curl_easy_setopt(e, CURLOPT_BUFFERSIZE, (long)SC_RECV_BUFFER_BYTES);
    curl_easy_setopt(e, CURLOPT_UPLOAD_BUFFERSIZE, (long)SC_SEND_BUFFER_BYTES);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, err);
    if (q->body) {
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, q->body);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)q->body_len);
    } else if (q->body_read) { /* written straight into curl's send buffer */
        curl_easy_setopt(e, CURLOPT_POST, 1L);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)q->body_len);
        curl_easy_setopt(e, CURLOPT_READFUNCTION, on_read);
        curl_easy_setopt(e, CURLOPT_READDATA, x);
        curl_easy_setopt(e, CURLOPT_SEEKFUNCTION, on_seek);
        curl_easy_setopt(e, CURLOPT_SEEKDATA, x);
    }
}

void sh_perform(sh_conn *h, const sh_req *q, sh_resp *r)
{
    *r = (sh_resp){.curl_rc = CURLE_FAILED_INIT};
    CURL *e = h->easy;
    xfer x = {.q = q, .r = r, .easy = e};
    char ct[128], acc[128];
    snprintf(ct, sizeof ct, "Content-Type: %s", q->content_type ? q->content_type : "application/json");
    snprintf(acc, sizeof acc, "Accept: %s", q->accept ? q->accept : "application/json");
    struct curl_slist *hd = curl_slist_append(NULL, ct);
    struct curl_slist *hd1 = hd ? curl_slist_append(hd, acc) : NULL;
    struct curl_slist *hd2 = hd1 ? curl_slist_append(hd1, "Expect:") : NULL;
    if (!hd2) {
        curl_slist_free_all(hd1 ? hd1 : hd);
        r->curl_rc = CURLE_OUT_OF_MEMORY;
        snprintf(r->err, sizeof r->err, "out of memory");
        return;
    }
    char err[CURL_ERROR_SIZE] = "";
    curl_easy_reset(e);
    set_options(e, q, hd2, &x, err);
    if (curl_multi_add_handle(h->multi, e) != CURLM_OK) {
        curl_slist_free_all(hd2);
        snprintf(r->err, sizeof r->err, "curl_multi_add_handle failed");
        return;
    }
    int running = 1;
    for (;;) {
        if (curl_multi_perform(h->multi, &running) != CURLM_OK || !running)
            break;
        if (q->check && q->check(q->check_arg)) {
            r->aborted = true;
            break;
        }
        if (curl_multi_poll(h->multi, NULL, 0, 1000, NULL) != CURLM_OK)
            break;
    }
    bool done = false;
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(h->multi, &left)))
        if (m->msg == CURLMSG_DONE && m->easy_handle == e) {
            r->curl_rc = m->data.result;
            done = true;
        }
    if (!done)
        r->curl_rc = r->aborted ? CURLE_ABORTED_BY_CALLBACK : CURLE_RECV_ERROR;
    if (x.stopped)
        r->aborted = true;
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &r->status);
    curl_multi_remove_handle(h->multi, e);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, NULL);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, NULL);
    curl_slist_free_all(hd2);
    if (!r->err[0])
        snprintf(r->err, sizeof r->err, "%s",
                 err[0] ? err : r->aborted && !done ? "stopped" : curl_easy_strerror(r->curl_rc));
}

void sh_resp_free(sh_resp *r)
{
    free(r->body);
    r->body = NULL;
    r->len = 0;
}

/* ---- error answers ------------------------------------------------------------- */

static int code_of(const char *name)
{
    static const struct {
        const char *name;
        int code;
    } codes[] = {
#define SH_CODE(name, val, msg) {"WP_" #name, val},
        WP_ERRNO_MAP(SH_CODE)
#undef SH_CODE
    };
    for (size_t i = 0; i < sizeof codes / sizeof *codes; i++)
        if (strcmp(name, codes[i].name) == 0 || strcmp(name, wp_strerror(codes[i].code)) == 0)
            return codes[i].code;
    return 0;
}

static int code_of_status(long status)
{
    switch (status) {
    case 400: return WP_EINVAL;
    case 404: return WP_ENOENT;
    case 409: return WP_EEXIST;
    case 413: return WP_ETOOBIG;
    case 421:
    case 503: return WP_EUNAVAILABLE;
    default: return WP_EIO;
    }
}

int sh_error(const sh_resp *r, const char *what, const char *addr)
{
    if (r->curl_rc != CURLE_OK || r->status == 0)
        return wp__err(WP_EUNAVAILABLE, "%s: %s: %s", what, addr && addr[0] ? addr : "(no node)",
                       r->err[0] ? r->err : curl_easy_strerror(r->curl_rc));
    cJSON *o = r->body ? cJSON_ParseWithLength(r->body, r->len) : NULL;
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(o, "error");
    const cJSON *msg = cJSON_GetObjectItemCaseSensitive(o, "message");
    const char *ename = cJSON_IsString(e) ? e->valuestring : "";
    int code = ename[0] ? code_of(ename) : 0;
    if (code == 0)
        code = code_of_status(r->status);
    int rc = wp__err(code, "%s: %s: HTTP %ld %.64s%s%.300s", what, addr, r->status, ename,
                     cJSON_IsString(msg) ? ": " : "", cJSON_IsString(msg) ? msg->valuestring : "");
    cJSON_Delete(o);
    return rc;
}

/* ---- buffers and encodings ---------------------------------------------------- */

void sh_buf_put(sh_buf *b, const void *p, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *np = realloc(b->p, cap);
        if (!np) {
            b->oom = true;
            return;
        }
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->len, p, n);
    b->len += n;
    b->p[b->len] = '\0';
}

void sh_buf_str(sh_buf *b, const char *s) { sh_buf_put(b, s, strlen(s)); }

void sh_buf_fmt(sh_buf *b, const char *fmt, ...)
{
    char tmp[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof tmp)
        b->oom = true; /* only short formats are used */
    else
        sh_buf_put(b, tmp, (size_t)n);
}

void sh_buf_free(sh_buf *b)
{
    free(b->p);
    *b = (sh_buf){0};
}

bool sh_id_parse(const char *s, wp_msg_id *out)
{
    int64_t v[2] = {0, 0};
    for (int part = 0; part < 2; part++) {
        const char *start = s;
        while (*s >= '0' && *s <= '9') {
            if (v[part] > (INT64_MAX - 9) / 10)
                return false;
            v[part] = v[part] * 10 + (*s++ - '0');
        }
        if (s == start || *s != (part == 0 ? ':' : '\0'))
            return false;
        s++;
    }
    *out = (wp_msg_id){v[0], v[1]};
    return true;
}

int64_t sh_left_ms(int64_t deadline_ns)
{
    int64_t left = (deadline_ns - wp__now_ns()) / 1000000LL;
    return left > 0 ? left : 0;
}

void sh_pause(wps_client *c, uint64_t gen, int64_t ms, int64_t deadline_ns,
              const _Atomic bool *stop)
{
    int64_t until = wp__now_ns() + ms * 1000000LL;
    if (until > deadline_ns)
        until = deadline_ns;
    sc_wait_change(c, gen, until, stop);
}
