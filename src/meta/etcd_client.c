/* etcd_client.c — etcd v3 over its HTTP/JSON gateway (see etcd_client.h).
 *
 * Wire facts (etcd 3.4, ../shared/INFRA.md): every request is a POST of a
 * JSON object; keys and values are base64; int64 fields are JSON strings;
 * fields holding their default value are omitted (a failed txn has no
 * "succeeded", a missing key no "kvs"); errors come back as a non-200 status
 * with {"error","message","code"} (code = the gRPC code). /v3/watch streams
 * one JSON object per line, each wrapped in {"result": ...}. */
#include "meta/etcd_client.h"

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/err.h"
#include "base/limits.h"

/* Idle curl handles kept for connection reuse. */
#define ETCD_POOL_MAX 8
/* Backoff between rounds over all endpoints, and between watch reconnects. */
#define ETCD_BACKOFF_MS_MIN 20
#define ETCD_BACKOFF_MS_MAX 500
/* One attempt gets max(this, timeout/3) of the deadline, so a hung member
 * (e.g. a follower without a leader) leaves time to try another. */
#define ETCD_ATTEMPT_MS_MIN 1000
/* Bound on an endpoint URL and on an auth token. */
#define ETCD_URL_MAX 1024
#define ETCD_TOKEN_MAX 1024
/* gRPC status codes carried in gateway errors. */
#define GRPC_INVALID_ARGUMENT 3
#define GRPC_NOT_FOUND 5
#define GRPC_PERMISSION_DENIED 7
#define GRPC_RESOURCE_EXHAUSTED 8
#define GRPC_FAILED_PRECONDITION 9
#define GRPC_OUT_OF_RANGE 11
#define GRPC_UNAUTHENTICATED 16

struct etcd_client {
    char *eps[ETCD_ENDPOINTS_MAX];
    size_t n_eps;
    atomic_size_t cur;
    int64_t timeout_ms;
    size_t max_resp;
    char *user, *pass, *ca, *cert, *key;
    pthread_mutex_t mu; /* pool and token */
    CURL *pool[ETCD_POOL_MAX];
    size_t n_pool;
    char token[ETCD_TOKEN_MAX + 1];
};

enum { CALL_IDEMPOTENT = 1, CALL_NOAUTH = 2 };

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;

static void curl_init(void) { curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT); }

static int64_t now_ms(void) { return wp__now_ns() / 1000000; }

static void sleep_ms(int64_t ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* ---- base64 ------------------------------------------------------------ */

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t etcd_b64_encode(const void *in, size_t n, char *out)
{
    const uint8_t *p = in;
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)p[i + 1] << 8;
        if (i + 2 < n)
            v |= p[i + 2];
        out[o++] = B64[v >> 18 & 63];
        out[o++] = B64[v >> 12 & 63];
        out[o++] = i + 1 < n ? B64[v >> 6 & 63] : '=';
        out[o++] = i + 2 < n ? B64[v & 63] : '=';
    }
    out[o] = '\0';
    return o;
}

static int b64_val(char ch)
{
    if (ch >= 'A' && ch <= 'Z')
        return ch - 'A';
    if (ch >= 'a' && ch <= 'z')
        return ch - 'a' + 26;
    if (ch >= '0' && ch <= '9')
        return ch - '0' + 52;
    if (ch == '+')
        return 62;
    if (ch == '/')
        return 63;
    return -1;
}

long etcd_b64_decode(const char *in, size_t len, uint8_t *out)
{
    if (len % 4 != 0)
        return -1;
    size_t o = 0;
    for (size_t i = 0; i < len; i += 4) {
        bool last = i + 4 == len;
        int pad = (last && in[i + 3] == '=') + (last && in[i + 2] == '=');
        int v[4];
        for (int k = 0; k < 4 - pad; k++)
            if ((v[k] = b64_val(in[i + k])) < 0)
                return -1;
        if (pad == 1 && in[i + 2] == '=')
            return -1;
        uint32_t w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12;
        if (pad < 2)
            w |= (uint32_t)v[2] << 6;
        if (pad < 1)
            w |= (uint32_t)v[3];
        if ((pad == 2 && (w & 0xffff)) || (pad == 1 && (w & 0xff)))
            return -1; /* non-canonical: stray bits under the padding */
        out[o++] = (uint8_t)(w >> 16);
        if (pad < 2)
            out[o++] = (uint8_t)(w >> 8);
        if (pad < 1)
            out[o++] = (uint8_t)w;
    }
    return (long)o;
}

/* ---- JSON building ----------------------------------------------------- */

static bool add_b64(cJSON *o, const char *name, const void *p, size_t n)
{
    char *s = malloc(4 * ((n + 2) / 3) + 1);
    if (!s)
        return false;
    etcd_b64_encode(p, n, s);
    bool ok = cJSON_AddStringToObject(o, name, s) != NULL;
    free(s);
    return ok;
}

static bool add_i64(cJSON *o, const char *name, int64_t v)
{
    char s[24];
    snprintf(s, sizeof s, "%lld", (long long)v);
    return cJSON_AddStringToObject(o, name, s) != NULL;
}

/* range_end for "every key starting with key": key with its last byte below
 * 0xff incremented and the rest dropped; "\0" (all keys) if there is none. */
static bool add_prefix_end(cJSON *o, const char *key)
{
    size_t n = strlen(key);
    uint8_t *end = malloc(n + 1);
    if (!end)
        return false;
    memcpy(end, key, n);
    while (n > 0 && end[n - 1] == 0xff)
        n--;
    if (n > 0)
        end[n - 1]++;
    else
        end[n++] = 0;
    bool ok = add_b64(o, "range_end", end, n);
    free(end);
    return ok;
}

static cJSON *range_json(const etcd_op *op)
{
    cJSON *o = cJSON_CreateObject();
    bool ok = o && add_b64(o, "key", op->key, strlen(op->key));
    if (ok && (op->prefix || op->prefix_of))
        ok = add_prefix_end(o, op->prefix_of ? op->prefix_of : op->key);
    if (ok && op->limit > 0)
        ok = add_i64(o, "limit", op->limit);
    if (ok && op->revision > 0)
        ok = add_i64(o, "revision", op->revision);
    if (ok && op->keys_only)
        ok = cJSON_AddTrueToObject(o, "keys_only") != NULL;
    if (!ok)
        cJSON_Delete(o);
    return ok ? o : NULL;
}

static cJSON *put_json(const etcd_op *op)
{
    cJSON *o = cJSON_CreateObject();
    bool ok = o && add_b64(o, "key", op->key, strlen(op->key)) &&
              add_b64(o, "value", op->value, op->value_len);
    if (ok && op->lease)
        ok = add_i64(o, "lease", op->lease);
    if (!ok)
        cJSON_Delete(o);
    return ok ? o : NULL;
}

static cJSON *delete_json(const etcd_op *op)
{
    cJSON *o = cJSON_CreateObject();
    bool ok = o && add_b64(o, "key", op->key, strlen(op->key));
    if (ok && op->prefix)
        ok = add_prefix_end(o, op->key);
    if (!ok)
        cJSON_Delete(o);
    return ok ? o : NULL;
}

static cJSON *op_json(const etcd_op *op)
{
    static const char *const names[] = {"request_range", "request_put", "request_delete_range"};
    cJSON *inner = op->kind == ETCD_OP_RANGE ? range_json(op)
                   : op->kind == ETCD_OP_PUT ? put_json(op)
                                             : delete_json(op);
    cJSON *o = inner ? cJSON_CreateObject() : NULL;
    if (!o) {
        cJSON_Delete(inner);
        return NULL;
    }
    cJSON_AddItemToObject(o, names[op->kind], inner);
    return o;
}

static cJSON *cmp_json(const etcd_cmp *c)
{
    static const char *const targets[] = {"CREATE", "MOD", "VALUE"};
    static const char *const results[] = {"EQUAL", "GREATER", "LESS", "NOT_EQUAL"};
    cJSON *o = cJSON_CreateObject();
    bool ok = o && cJSON_AddStringToObject(o, "target", targets[c->target]) &&
              cJSON_AddStringToObject(o, "result", results[c->result]) &&
              add_b64(o, "key", c->key, strlen(c->key));
    if (ok && c->target == ETCD_CMP_CREATE)
        ok = add_i64(o, "create_revision", c->rev);
    else if (ok && c->target == ETCD_CMP_MOD)
        ok = add_i64(o, "mod_revision", c->rev);
    else if (ok)
        ok = add_b64(o, "value", c->value, c->value_len);
    if (!ok)
        cJSON_Delete(o);
    return ok ? o : NULL;
}

/* Prints o (and deletes it) into a malloc'd string; NULL if out of memory. */
static char *print_del(cJSON *o)
{
    char *s = o ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    return s;
}

/* ---- JSON reading (untrusted input) ------------------------------------ */

static int bad_field(const char *name, const char *what)
{
    return wp__err(WP_ECORRUPT, "etcd response: field \"%s\" %s", name, what);
}

/* Missing → 0. etcd sends strings; plain numbers are accepted too. */
static int json_i64(const cJSON *o, const char *name, int64_t *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    *out = 0;
    if (!v)
        return 0;
    if (cJSON_IsNumber(v)) {
        double d = v->valuedouble; /* exact integers only: |d| <= 2^53 */
        if (!(d >= -9007199254740992.0 && d <= 9007199254740992.0) || (double)(int64_t)d != d)
            return bad_field(name, "is not an int64");
        *out = (int64_t)d;
        return 0;
    }
    if (!cJSON_IsString(v) || !v->valuestring[0])
        return bad_field(name, "is not an int64");
    char *end = NULL;
    errno = 0;
    long long x = strtoll(v->valuestring, &end, 10);
    if (errno || *end || v->valuestring[0] == ' ' || v->valuestring[0] == '+')
        return bad_field(name, "is not an int64");
    *out = x;
    return 0;
}

static int json_nonneg(const cJSON *o, const char *name, int64_t *out)
{
    int rc = json_i64(o, name, out);
    if (rc == 0 && *out < 0)
        return bad_field(name, "is negative");
    return rc;
}

static int json_bool(const cJSON *o, const char *name, bool *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    *out = false;
    if (!v)
        return 0;
    if (!cJSON_IsBool(v))
        return bad_field(name, "is not a bool");
    *out = cJSON_IsTrue(v);
    return 0;
}

/* Missing → empty. The result is NUL-terminated; free it. */
static int json_b64(const cJSON *o, const char *name, uint8_t **out, size_t *len)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    *out = NULL;
    *len = 0;
    if (v && !cJSON_IsString(v))
        return bad_field(name, "is not a string");
    const char *s = v ? v->valuestring : "";
    size_t n = strlen(s);
    uint8_t *buf = malloc(n / 4 * 3 + 1);
    if (!buf)
        return wp__err(WP_ENOMEM, "etcd response: out of memory");
    long got = etcd_b64_decode(s, n, buf);
    if (got < 0) {
        free(buf);
        return bad_field(name, "is not base64");
    }
    buf[got] = 0;
    *out = buf;
    *len = (size_t)got;
    return 0;
}

void etcd_kv_free(etcd_kv *kv)
{
    free(kv->key);
    free(kv->value);
    memset(kv, 0, sizeof *kv);
}

static int parse_kv(const cJSON *o, etcd_kv *kv)
{
    memset(kv, 0, sizeof *kv);
    if (!cJSON_IsObject(o))
        return wp__err(WP_ECORRUPT, "etcd response: a kv is not an object");
    uint8_t *key = NULL;
    int rc = json_b64(o, "key", &key, &kv->key_len);
    kv->key = (char *)key;
    if (rc == 0 && (kv->key_len == 0 || memchr(kv->key, 0, kv->key_len)))
        rc = bad_field("key", "is empty or holds a NUL");
    if (rc == 0)
        rc = json_b64(o, "value", &kv->value, &kv->value_len);
    if (rc == 0)
        rc = json_nonneg(o, "create_revision", &kv->create_rev);
    if (rc == 0)
        rc = json_nonneg(o, "mod_revision", &kv->mod_rev);
    if (rc == 0)
        rc = json_nonneg(o, "version", &kv->version);
    if (rc == 0)
        rc = json_i64(o, "lease", &kv->lease);
    if (rc < 0)
        etcd_kv_free(kv);
    return rc;
}

static void op_result_free(etcd_op_result *r)
{
    for (size_t i = 0; i < r->n_kvs; i++)
        etcd_kv_free(&r->kvs[i]);
    free(r->kvs);
    memset(r, 0, sizeof *r);
}

void etcd_result_free(etcd_result *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->n_ops; i++)
        op_result_free(&r->ops[i]);
    free(r->ops);
    bool maybe = r->maybe_applied;
    memset(r, 0, sizeof *r);
    r->maybe_applied = maybe;
}

static int parse_kvs(const cJSON *o, etcd_op_result *r)
{
    const cJSON *kvs = cJSON_GetObjectItemCaseSensitive(o, "kvs");
    if (!kvs)
        return 0;
    if (!cJSON_IsArray(kvs))
        return bad_field("kvs", "is not an array");
    int n = cJSON_GetArraySize(kvs);
    if (n == 0)
        return 0;
    r->kvs = calloc((size_t)n, sizeof *r->kvs);
    if (!r->kvs)
        return wp__err(WP_ENOMEM, "etcd response: out of memory");
    const cJSON *it;
    cJSON_ArrayForEach(it, kvs) {
        int rc = parse_kv(it, &r->kvs[r->n_kvs]);
        if (rc < 0)
            return rc;
        r->n_kvs++;
    }
    return 0;
}

static int parse_op_range(const cJSON *o, etcd_op_result *r)
{
    if (!cJSON_IsObject(o))
        return wp__err(WP_ECORRUPT, "etcd response: range result is not an object");
    int rc = parse_kvs(o, r);
    if (rc == 0)
        rc = json_nonneg(o, "count", &r->count);
    if (rc == 0)
        rc = json_bool(o, "more", &r->more);
    return rc;
}

static int parse_header(const cJSON *o, int64_t *rev)
{
    const cJSON *h = cJSON_GetObjectItemCaseSensitive(o, "header");
    if (!cJSON_IsObject(h))
        return wp__err(WP_ECORRUPT, "etcd response: no header");
    int rc = json_nonneg(h, "revision", rev);
    if (rc == 0 && *rev < 1)
        rc = bad_field("revision", "is missing");
    return rc;
}

static int alloc_ops(etcd_result *r, size_t n)
{
    r->n_ops = 0;
    r->ops = n ? calloc(n, sizeof *r->ops) : NULL;
    if (n && !r->ops)
        return wp__err(WP_ENOMEM, "etcd response: out of memory");
    return 0;
}

static int parse_range_obj(const cJSON *o, etcd_result *out)
{
    int rc = parse_header(o, &out->revision);
    if (rc == 0)
        rc = alloc_ops(out, 1);
    if (rc == 0) {
        out->n_ops = 1;
        rc = parse_op_range(o, &out->ops[0]);
    }
    return rc;
}

/* One element of a txn's "responses": exactly one of three members. */
static int parse_txn_resp(const cJSON *o, etcd_op_result *r)
{
    const cJSON *v;
    if (!cJSON_IsObject(o))
        return wp__err(WP_ECORRUPT, "etcd response: txn response is not an object");
    if ((v = cJSON_GetObjectItemCaseSensitive(o, "response_range")))
        return parse_op_range(v, r);
    if ((v = cJSON_GetObjectItemCaseSensitive(o, "response_delete_range"))) {
        if (!cJSON_IsObject(v))
            return bad_field("response_delete_range", "is not an object");
        return json_nonneg(v, "deleted", &r->count);
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(o, "response_put")))
        return cJSON_IsObject(v) ? 0 : bad_field("response_put", "is not an object");
    return wp__err(WP_ECORRUPT, "etcd response: unknown txn response");
}

static int parse_txn_obj(const cJSON *o, etcd_result *out)
{
    int rc = parse_header(o, &out->revision);
    if (rc == 0)
        rc = json_bool(o, "succeeded", &out->succeeded);
    const cJSON *rs = cJSON_GetObjectItemCaseSensitive(o, "responses");
    if (rc < 0 || !rs)
        return rc;
    if (!cJSON_IsArray(rs))
        return bad_field("responses", "is not an array");
    if ((rc = alloc_ops(out, (size_t)cJSON_GetArraySize(rs))) < 0)
        return rc;
    const cJSON *it;
    cJSON_ArrayForEach(it, rs) {
        if ((rc = parse_txn_resp(it, &out->ops[out->n_ops])) < 0)
            return rc;
        out->n_ops++;
    }
    return 0;
}

static int parse_body(const char *body, size_t len, cJSON **out)
{
    cJSON *o = cJSON_ParseWithLength(body, len);
    if (!cJSON_IsObject(o)) {
        cJSON_Delete(o);
        return wp__err(WP_ECORRUPT, "etcd response: not a JSON object");
    }
    *out = o;
    return 0;
}

int etcd_parse_range(const char *body, size_t len, etcd_result *out)
{
    cJSON *o = NULL;
    memset(out, 0, sizeof *out);
    int rc = parse_body(body, len, &o);
    if (rc == 0)
        rc = parse_range_obj(o, out);
    cJSON_Delete(o);
    if (rc < 0)
        etcd_result_free(out);
    return rc;
}

int etcd_parse_txn(const char *body, size_t len, etcd_result *out)
{
    cJSON *o = NULL;
    memset(out, 0, sizeof *out);
    int rc = parse_body(body, len, &o);
    if (rc == 0)
        rc = parse_txn_obj(o, out);
    cJSON_Delete(o);
    if (rc < 0)
        etcd_result_free(out);
    return rc;
}

/* ---- client ------------------------------------------------------------ */

static char *dup_opt(const char *s)
{
    return strdup(s ? s : "");
}

static int parse_endpoints(etcd_client *c, const char *list)
{
    const char *p = list ? list : "";
    while (*p) {
        size_t n = strcspn(p, ",");
        while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '/'))
            n--;
        while (n > 0 && *p == ' ')
            p++, n--;
        if (n > 0) {
            if (c->n_eps == ETCD_ENDPOINTS_MAX || n > ETCD_URL_MAX)
                return wp__err(WP_EINVAL, "etcd: too many or too long endpoints in '%s'", list);
            if (strncmp(p, "http://", 7) != 0 && strncmp(p, "https://", 8) != 0)
                return wp__err(WP_EINVAL, "etcd: endpoint '%.*s' is not http(s)://", (int)n, p);
            if (!(c->eps[c->n_eps++] = strndup(p, n)))
                return wp__err(WP_ENOMEM, "etcd: out of memory");
        }
        p += strcspn(p, ",");
        p += *p == ',';
    }
    return c->n_eps ? 0 : wp__err(WP_EINVAL, "etcd: no endpoints in '%s'", list ? list : "");
}

int etcd_client_new(const etcd_options *o, etcd_client **out)
{
    *out = NULL;
    pthread_once(&curl_once, curl_init);
    if (curl_init_rc != CURLE_OK)
        return wp__err(WP_EIO, "etcd: curl_global_init failed");
    if (o->timeout_ms <= 0)
        return wp__err(WP_EINVAL, "etcd: timeout must be positive");
    etcd_client *c = calloc(1, sizeof *c);
    if (!c)
        return wp__err(WP_ENOMEM, "etcd: out of memory");
    pthread_mutex_init(&c->mu, NULL);
    c->timeout_ms = o->timeout_ms;
    c->max_resp = o->max_response_bytes ? o->max_response_bytes : ETCD_RESPONSE_BYTES_MAX;
    c->user = dup_opt(o->username);
    c->pass = dup_opt(o->password);
    c->ca = dup_opt(o->ca_file);
    c->cert = dup_opt(o->cert_file);
    c->key = dup_opt(o->key_file);
    int rc = parse_endpoints(c, o->endpoints);
    if (rc == 0 && !(c->user && c->pass && c->ca && c->cert && c->key))
        rc = wp__err(WP_ENOMEM, "etcd: out of memory");
    if (rc < 0) {
        etcd_client_free(c);
        return rc;
    }
    *out = c;
    return 0;
}

void etcd_client_free(etcd_client *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->n_pool; i++)
        curl_easy_cleanup(c->pool[i]);
    for (size_t i = 0; i < c->n_eps; i++)
        free(c->eps[i]);
    free(c->user);
    free(c->pass);
    free(c->ca);
    free(c->cert);
    free(c->key);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

const char *etcd_client_endpoint(etcd_client *c) { return c->eps[atomic_load(&c->cur) % c->n_eps]; }

int64_t etcd_deadline(const etcd_client *c, int64_t timeout_ms)
{
    return wp__now_ns() + (timeout_ms > 0 ? timeout_ms : c->timeout_ms) * 1000000;
}

/* Moves on from endpoint idx (unless another thread already did). */
static void rotate(etcd_client *c, size_t idx)
{
    size_t want = idx;
    atomic_compare_exchange_strong(&c->cur, &want, (idx + 1) % c->n_eps);
}

static CURL *pool_get(etcd_client *c)
{
    CURL *h = NULL;
    pthread_mutex_lock(&c->mu);
    if (c->n_pool > 0)
        h = c->pool[--c->n_pool];
    pthread_mutex_unlock(&c->mu);
    return h ? h : curl_easy_init();
}

static void pool_put(etcd_client *c, CURL *h)
{
    pthread_mutex_lock(&c->mu);
    if (c->n_pool < ETCD_POOL_MAX) {
        c->pool[c->n_pool++] = h;
        h = NULL;
    }
    pthread_mutex_unlock(&c->mu);
    if (h)
        curl_easy_cleanup(h);
}

/* ---- one HTTP attempt -------------------------------------------------- */

typedef struct {
    char *buf;
    size_t len, cap, max;
    bool too_big;
} rbuf;

static size_t rbuf_write(char *p, size_t size, size_t nmemb, void *arg)
{
    rbuf *b = arg;
    size_t n = size * nmemb;
    if (n > b->max - b->len) {
        b->too_big = true;
        return 0;
    }
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *nb = realloc(b->buf, cap);
        if (!nb)
            return 0;
        b->buf = nb;
        b->cap = cap;
    }
    memcpy(b->buf + b->len, p, n);
    b->len += n;
    b->buf[b->len] = '\0';
    return n;
}

typedef struct {
    const char *p;
    size_t len, off;
} body_src;

typedef struct {
    CURLcode cc;
    long http;
    bool sent;
    rbuf body;
    body_src src;
    char err[CURL_ERROR_SIZE];
} attempt;

/* Sets the options every request shares (TLS, timeouts, keepalive). */
static void set_common(etcd_client *c, CURL *h, const char *url, struct curl_slist *hdrs,
                       int64_t timeout_ms)
{
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)timeout_ms);
    curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(h, CURLOPT_TCP_KEEPIDLE, 5L);
    curl_easy_setopt(h, CURLOPT_TCP_KEEPINTVL, 5L);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    if (c->ca[0])
        curl_easy_setopt(h, CURLOPT_CAINFO, c->ca);
    if (c->cert[0])
        curl_easy_setopt(h, CURLOPT_SSLCERT, c->cert);
    if (c->key[0])
        curl_easy_setopt(h, CURLOPT_SSLKEY, c->key);
}

static struct curl_slist *headers(const char *token)
{
    char auth[ETCD_TOKEN_MAX + 32];
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    struct curl_slist *h2 = h ? curl_slist_append(h, "Expect:") : NULL;
    if (h2 && token && token[0]) {
        snprintf(auth, sizeof auth, "Authorization: %s", token);
        h2 = curl_slist_append(h2, auth);
    }
    if (!h2)
        curl_slist_free_all(h);
    return h2;
}

/* The body of a request that must not be re-sent, fed by a read callback. */
static size_t src_read(char *buf, size_t size, size_t nitems, void *arg)
{
    body_src *s = arg;
    size_t n = size * nitems < s->len - s->off ? size * nitems : s->len - s->off;
    memcpy(buf, s->p + s->off, n);
    s->off += n;
    return n;
}

/* once: the request must reach etcd at most once per attempt. libcurl
 * silently re-sends a request whose reused connection died without an
 * answer; it cannot with a body it has no way to rewind (no seek
 * callback): it then fails with CURLE_SEND_FAIL_REWIND and the caller
 * learns that the outcome is unknown. */
static void set_body(CURL *h, const char *body, bool once, body_src *src)
{
    curl_easy_setopt(h, CURLOPT_POST, 1L);
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    if (!once) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
        return;
    }
    src->p = body;
    src->len = strlen(body);
    src->off = 0;
    curl_easy_setopt(h, CURLOPT_READFUNCTION, src_read);
    curl_easy_setopt(h, CURLOPT_READDATA, src);
}

static int attempt_run(etcd_client *c, const char *ep, const char *path, const char *body,
                       bool once, const char *token, int64_t timeout_ms, attempt *a)
{
    char url[ETCD_URL_MAX + 64];
    memset(a, 0, sizeof *a);
    a->body.max = c->max_resp;
    snprintf(url, sizeof url, "%s%s", ep, path);
    struct curl_slist *hdrs = headers(token);
    CURL *h = hdrs ? pool_get(c) : NULL;
    if (!h) {
        curl_slist_free_all(hdrs);
        return wp__err(WP_ENOMEM, "etcd: out of memory");
    }
    curl_easy_reset(h);
    set_common(c, h, url, hdrs, timeout_ms);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
    set_body(h, body, once, &a->src);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, rbuf_write);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &a->body);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, a->err);
    a->cc = curl_easy_perform(h);
    long req_size = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &a->http);
    curl_easy_getinfo(h, CURLINFO_REQUEST_SIZE, &req_size);
    a->sent = req_size > 0;
    if (!a->err[0])
        snprintf(a->err, sizeof a->err, "%s", curl_easy_strerror(a->cc));
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, NULL);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
    pool_put(c, h);
    curl_slist_free_all(hdrs);
    return 0;
}

/* ---- calls: failover, retries, auth ------------------------------------ */

typedef struct {
    long grpc_code;
    char msg[256];
} http_error;

static void parse_error(const attempt *a, http_error *e)
{
    e->grpc_code = -1;
    snprintf(e->msg, sizeof e->msg, "HTTP %ld", a->http);
    cJSON *o = a->body.buf ? cJSON_ParseWithLength(a->body.buf, a->body.len) : NULL;
    const cJSON *code = cJSON_GetObjectItemCaseSensitive(o, "code");
    const cJSON *msg = cJSON_GetObjectItemCaseSensitive(o, "message");
    if (cJSON_IsNumber(code))
        e->grpc_code = (long)code->valuedouble;
    if (cJSON_IsString(msg))
        snprintf(e->msg, sizeof e->msg, "HTTP %ld: %s", a->http, msg->valuestring);
    cJSON_Delete(o);
}

/* A server answer that no retry on another member would change. */
static int definite_error(const http_error *e, const char *path)
{
    int rc = WP_EINVAL;
    if (e->grpc_code == GRPC_NOT_FOUND)
        rc = WP_ENOENT;
    else if (e->grpc_code == GRPC_OUT_OF_RANGE)
        rc = WP_ETRUNCATED;
    else if (e->grpc_code == GRPC_RESOURCE_EXHAUSTED)
        rc = WP_ENOSPC;
    return wp__err(rc, "etcd %s: %s", path, e->msg);
}

static bool transient(const attempt *a, const http_error *e)
{
    if (a->http >= 500 || a->http == 429)
        return true;
    return e->grpc_code == GRPC_RESOURCE_EXHAUSTED && !strstr(e->msg, "space");
}

static int authenticate(etcd_client *c, int64_t deadline);

/* Copies the current token into tok (authenticating first if needed). */
static int get_token(etcd_client *c, int flags, int64_t deadline, char *tok)
{
    tok[0] = '\0';
    if ((flags & CALL_NOAUTH) || !c->user[0])
        return 0;
    pthread_mutex_lock(&c->mu);
    memcpy(tok, c->token, sizeof c->token);
    pthread_mutex_unlock(&c->mu);
    if (tok[0])
        return 0;
    int rc = authenticate(c, deadline);
    pthread_mutex_lock(&c->mu);
    memcpy(tok, c->token, sizeof c->token);
    pthread_mutex_unlock(&c->mu);
    return rc;
}

static void drop_token(etcd_client *c, const char *tok)
{
    pthread_mutex_lock(&c->mu);
    if (strcmp(c->token, tok) == 0)
        c->token[0] = '\0';
    pthread_mutex_unlock(&c->mu);
}

/* Waits before the next round over the endpoints; false if past deadline. */
static bool backoff(int64_t *ms, int64_t deadline)
{
    int64_t left = (deadline - wp__now_ns()) / 1000000;
    if (left <= 0)
        return false;
    sleep_ms(*ms < left ? *ms : left);
    *ms = *ms * 2 > ETCD_BACKOFF_MS_MAX ? ETCD_BACKOFF_MS_MAX : *ms * 2;
    return true;
}

typedef struct {
    etcd_client *c;
    const char *path, *body;
    int flags;
    int64_t deadline;
    char last[CURL_ERROR_SIZE + ETCD_URL_MAX + 64];
    int64_t backoff_ms;
    size_t failures;
    bool reauthed, maybe_applied;
} call_state;

/* Outcome of one attempt: 1 = try again, 0 = done (json set), < 0 error. */
/* Failures of TLS set-up that no retry or other endpoint will mend: an
 * untrusted server certificate, unreadable CA/cert/key files. */
static bool tls_config_error(CURLcode cc)
{
    return cc == CURLE_PEER_FAILED_VERIFICATION || cc == CURLE_SSL_CACERT_BADFILE ||
           cc == CURLE_SSL_CERTPROBLEM || cc == CURLE_SSL_ISSUER_ERROR;
}

static int call_step(call_state *s, cJSON **json)
{
    etcd_client *c = s->c;
    char tok[ETCD_TOKEN_MAX + 1];
    int rc = get_token(c, s->flags, s->deadline, tok);
    if (rc < 0)
        return rc;
    int64_t left = (s->deadline - wp__now_ns()) / 1000000;
    int64_t share = c->timeout_ms / 3 > ETCD_ATTEMPT_MS_MIN ? c->timeout_ms / 3 : ETCD_ATTEMPT_MS_MIN;
    size_t idx = atomic_load(&c->cur) % c->n_eps;
    attempt a;
    left = left < 1 ? 1 : left;
    bool idem = s->flags & CALL_IDEMPOTENT;
    if ((rc = attempt_run(c, c->eps[idx], s->path, s->body, !idem, tok, left < share ? left : share,
                          &a)) < 0)
        return rc;
    if (a.cc == CURLE_OK && a.http == 200) {
        rc = parse_body(a.body.buf ? a.body.buf : "", a.body.len, json);
        s->maybe_applied = rc < 0 && !idem;
        goto out;
    }
    snprintf(s->last, sizeof s->last, "%s%s: %s", c->eps[idx], s->path, a.err);
    if (a.body.too_big) {
        s->maybe_applied = !idem;
        rc = wp__err(WP_ETOOBIG, "etcd %s: response larger than %zu bytes", s->last, c->max_resp);
        goto out;
    }
    if (tls_config_error(a.cc)) { /* retrying cannot fix a certificate problem */
        rc = wp__err(WP_EUNAVAILABLE, "etcd %s (TLS)", s->last);
        goto out;
    }
    if (a.cc != CURLE_OK) {
        if (a.sent && !idem) {
            s->maybe_applied = true;
            rc = wp__err(WP_EUNAVAILABLE, "etcd %s (outcome unknown)", s->last);
            goto out;
        }
        rotate(c, idx);
        rc = 1;
        goto out;
    }
    http_error e;
    parse_error(&a, &e);
    snprintf(s->last, sizeof s->last, "%s%s: %s", c->eps[idx], s->path, e.msg);
    if (e.grpc_code == GRPC_UNAUTHENTICATED && c->user[0] && !s->reauthed &&
        !(s->flags & CALL_NOAUTH)) {
        drop_token(c, tok);
        s->reauthed = true;
        rc = 1;
    } else if (transient(&a, &e) && !idem && a.http != 429) {
        s->maybe_applied = true;
        rc = wp__err(WP_EUNAVAILABLE, "etcd %s (outcome unknown)", s->last);
    } else if (transient(&a, &e)) {
        rotate(c, idx);
        rc = 1;
    } else {
        rc = definite_error(&e, s->path);
    }
out:
    free(a.body.buf);
    return rc;
}

/* POSTs body to path until an answer or the deadline. *maybe_applied tells
 * a non-idempotent caller that the request may have taken effect. */
static int call(etcd_client *c, const char *path, const char *body, int flags, int64_t deadline,
                cJSON **json, bool *maybe_applied)
{
    call_state s;
    memset(&s, 0, sizeof s);
    s.c = c;
    s.path = path;
    s.body = body;
    s.flags = flags;
    s.deadline = deadline ? deadline : etcd_deadline(c, 0);
    s.backoff_ms = ETCD_BACKOFF_MS_MIN;
    *json = NULL;
    int rc;
    for (;;) {
        if (wp__now_ns() >= s.deadline) {
            rc = wp__err(WP_EUNAVAILABLE, "etcd %s: no answer within the deadline (%s)", path,
                         s.last[0] ? s.last : "no attempt");
            break;
        }
        bool reauthed = s.reauthed;
        if ((rc = call_step(&s, json)) <= 0)
            break;
        if (s.reauthed != reauthed)
            continue; /* a fresh token: retry at once */
        if (++s.failures % c->n_eps == 0)
            backoff(&s.backoff_ms, s.deadline); /* the loop head reports the deadline */
    }
    if (maybe_applied)
        *maybe_applied = s.maybe_applied;
    return rc;
}

static int authenticate(etcd_client *c, int64_t deadline)
{
    cJSON *o = cJSON_CreateObject();
    if (o && (!cJSON_AddStringToObject(o, "name", c->user) ||
              !cJSON_AddStringToObject(o, "password", c->pass))) {
        cJSON_Delete(o);
        o = NULL;
    }
    char *body = print_del(o);
    if (!body)
        return wp__err(WP_ENOMEM, "etcd: out of memory");
    cJSON *resp = NULL;
    int rc = call(c, "/v3/auth/authenticate", body, CALL_IDEMPOTENT | CALL_NOAUTH, deadline, &resp,
                  NULL);
    free(body);
    if (rc < 0)
        return wp__err(rc, "etcd authenticate as '%s': %s", c->user, wp_errmsg());
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(resp, "token");
    size_t n = cJSON_IsString(t) ? strlen(t->valuestring) : 0;
    bool ok = n > 0 && n <= ETCD_TOKEN_MAX && strcspn(t->valuestring, "\r\n") == n;
    if (ok) {
        pthread_mutex_lock(&c->mu);
        memcpy(c->token, t->valuestring, n + 1);
        pthread_mutex_unlock(&c->mu);
    }
    cJSON_Delete(resp);
    return ok ? 0 : wp__err(WP_ECORRUPT, "etcd authenticate: bad token in response");
}

int etcd_call_json(etcd_client *c, const char *path, const char *body, bool idempotent,
                   int64_t deadline_ns, void **json)
{
    cJSON *o = NULL;
    int rc = call(c, path, body, idempotent ? CALL_IDEMPOTENT : 0, deadline_ns, &o, NULL);
    *json = o;
    return rc;
}

/* ---- KV ---------------------------------------------------------------- */

/* Sends a request object (deleted here) and parses the answer with parse. */
static int kv_call(etcd_client *c, const char *path, cJSON *req, int flags, int64_t deadline,
                   int (*parse)(const cJSON *, etcd_result *), etcd_result *out)
{
    memset(out, 0, sizeof *out);
    char *body = print_del(req);
    if (!body)
        return wp__err(WP_ENOMEM, "etcd %s: out of memory", path);
    cJSON *resp = NULL;
    int rc = call(c, path, body, flags, deadline, &resp, &out->maybe_applied);
    free(body);
    if (rc == 0 && (rc = parse(resp, out)) < 0) {
        out->maybe_applied = !(flags & CALL_IDEMPOTENT);
        etcd_result_free(out);
    }
    cJSON_Delete(resp);
    return rc;
}

static int parse_put_obj(const cJSON *o, etcd_result *out) { return parse_header(o, &out->revision); }

static int parse_delete_obj(const cJSON *o, etcd_result *out)
{
    int rc = parse_header(o, &out->revision);
    if (rc == 0)
        rc = alloc_ops(out, 1);
    if (rc == 0) {
        out->n_ops = 1;
        rc = json_nonneg(o, "deleted", &out->ops[0].count);
    }
    return rc;
}

int etcd_range(etcd_client *c, const etcd_op *range, int64_t deadline_ns, etcd_result *out)
{
    cJSON *req = range_json(range);
    if (!req) {
        memset(out, 0, sizeof *out);
        return wp__err(WP_ENOMEM, "etcd range: out of memory");
    }
    return kv_call(c, "/v3/kv/range", req, CALL_IDEMPOTENT, deadline_ns, parse_range_obj, out);
}

int etcd_put(etcd_client *c, const char *key, const void *val, size_t len, int64_t lease,
             int64_t deadline_ns, etcd_result *out)
{
    etcd_op op = {.kind = ETCD_OP_PUT, .key = key, .value = val, .value_len = len, .lease = lease};
    cJSON *req = put_json(&op);
    if (!req) {
        memset(out, 0, sizeof *out);
        return wp__err(WP_ENOMEM, "etcd put: out of memory");
    }
    return kv_call(c, "/v3/kv/put", req, 0, deadline_ns, parse_put_obj, out);
}

int etcd_delete(etcd_client *c, const char *key, bool prefix, int64_t deadline_ns,
                etcd_result *out)
{
    etcd_op op = {.kind = ETCD_OP_DELETE, .key = key, .prefix = prefix};
    cJSON *req = delete_json(&op);
    if (!req) {
        memset(out, 0, sizeof *out);
        return wp__err(WP_ENOMEM, "etcd delete: out of memory");
    }
    return kv_call(c, "/v3/kv/deleterange", req, 0, deadline_ns, parse_delete_obj, out);
}

static bool add_ops(cJSON *o, const char *name, const etcd_op *ops, size_t n)
{
    cJSON *arr = cJSON_AddArrayToObject(o, name);
    for (size_t i = 0; arr && i < n; i++) {
        cJSON *op = op_json(&ops[i]);
        if (!op)
            return false;
        cJSON_AddItemToArray(arr, op);
    }
    return arr != NULL;
}

static bool all_reads(const etcd_op *ops, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (ops[i].kind != ETCD_OP_RANGE)
            return false;
    return true;
}

int etcd_txn(etcd_client *c, const etcd_cmp *cmp, size_t n_cmp, const etcd_op *success,
             size_t n_success, const etcd_op *failure, size_t n_failure, int64_t deadline_ns,
             etcd_result *out)
{
    cJSON *req = cJSON_CreateObject();
    cJSON *arr = req ? cJSON_AddArrayToObject(req, "compare") : NULL;
    bool ok = arr != NULL;
    for (size_t i = 0; ok && i < n_cmp; i++) {
        cJSON *x = cmp_json(&cmp[i]);
        ok = x != NULL;
        if (ok)
            cJSON_AddItemToArray(arr, x);
    }
    ok = ok && add_ops(req, "success", success, n_success) &&
         add_ops(req, "failure", failure, n_failure);
    if (!ok) {
        cJSON_Delete(req);
        memset(out, 0, sizeof *out);
        return wp__err(WP_ENOMEM, "etcd txn: out of memory");
    }
    int flags = all_reads(success, n_success) && all_reads(failure, n_failure) ? CALL_IDEMPOTENT : 0;
    return kv_call(c, "/v3/kv/txn", req, flags, deadline_ns, parse_txn_obj, out);
}

/* ---- leases ------------------------------------------------------------ */

static int lease_call(etcd_client *c, const char *path, const char *field, int64_t v, int flags,
                      int64_t deadline, cJSON **resp, bool *maybe_applied)
{
    cJSON *req = cJSON_CreateObject();
    if (req && !add_i64(req, field, v)) {
        cJSON_Delete(req);
        req = NULL;
    }
    char *body = print_del(req);
    if (!body)
        return wp__err(WP_ENOMEM, "etcd %s: out of memory", path);
    int rc = call(c, path, body, flags, deadline, resp, maybe_applied);
    free(body);
    return rc;
}

int etcd_lease_grant(etcd_client *c, int64_t ttl_s, int64_t deadline_ns, int64_t *id,
                     int64_t *granted_ttl_s)
{
    cJSON *resp = NULL;
    /* Retrying a grant is safe: a lease granted twice leaks one, which
     * expires by itself after its ttl. */
    int rc = lease_call(c, "/v3/lease/grant", "TTL", ttl_s, CALL_IDEMPOTENT, deadline_ns, &resp, NULL);
    const cJSON *err = cJSON_GetObjectItemCaseSensitive(resp, "error");
    int64_t ttl = 0;
    if (rc == 0 && cJSON_IsString(err) && err->valuestring[0])
        rc = wp__err(WP_EINVAL, "etcd lease grant: %s", err->valuestring);
    if (rc == 0 && (rc = json_i64(resp, "ID", id)) == 0 && (rc = json_i64(resp, "TTL", &ttl)) == 0 &&
        (*id <= 0 || ttl <= 0))
        rc = wp__err(WP_ECORRUPT, "etcd lease grant: no ID or TTL in response");
    if (rc == 0 && granted_ttl_s)
        *granted_ttl_s = ttl;
    cJSON_Delete(resp);
    return rc;
}

int etcd_lease_keepalive(etcd_client *c, int64_t id, int64_t deadline_ns, int64_t *ttl_s)
{
    cJSON *resp = NULL;
    int rc = lease_call(c, "/v3/lease/keepalive", "ID", id, CALL_IDEMPOTENT, deadline_ns, &resp, NULL);
    const cJSON *res = cJSON_GetObjectItemCaseSensitive(resp, "result");
    const cJSON *err = cJSON_GetObjectItemCaseSensitive(resp, "error");
    int64_t ttl = 0;
    if (rc == 0 && err)
        rc = wp__err(WP_EUNAVAILABLE, "etcd lease keepalive %lld: stream error",
                     (long long)id);
    else if (rc == 0 && !cJSON_IsObject(res))
        rc = wp__err(WP_ECORRUPT, "etcd lease keepalive: no result in response");
    else if (rc == 0 && (rc = json_i64(res, "TTL", &ttl)) == 0 && ttl <= 0)
        rc = wp__err(WP_ENOENT, "etcd lease %lld expired or revoked", (long long)id);
    if (rc == 0 && ttl_s)
        *ttl_s = ttl;
    cJSON_Delete(resp);
    return rc;
}

int etcd_lease_revoke(etcd_client *c, int64_t id, int64_t deadline_ns, bool *maybe_applied)
{
    cJSON *resp = NULL;
    int rc = lease_call(c, "/v3/lease/revoke", "ID", id, 0, deadline_ns, &resp, maybe_applied);
    cJSON_Delete(resp);
    return rc;
}

int etcd_lease_timetolive(etcd_client *c, int64_t id, int64_t deadline_ns, int64_t *ttl_s)
{
    cJSON *resp = NULL;
    int rc = lease_call(c, "/v3/lease/timetolive", "ID", id, CALL_IDEMPOTENT, deadline_ns, &resp, NULL);
    int64_t ttl = 0;
    if (rc == 0 && (rc = json_i64(resp, "TTL", &ttl)) == 0 && ttl <= 0)
        rc = wp__err(WP_ENOENT, "etcd lease %lld expired or revoked", (long long)id);
    if (rc == 0 && ttl_s)
        *ttl_s = ttl;
    cJSON_Delete(resp);
    return rc;
}

/* ---- watch streams ----------------------------------------------------- */

/* Splits a stream into lines; on_line returns 0 to go on, else stops it. */
typedef struct {
    rbuf line;
    int (*on_line)(void *arg, const char *line, size_t len);
    void *arg;
    int stop_rc; /* what stopped the stream (0: it ended) */
} line_reader;

static size_t lines_write(char *p, size_t size, size_t nmemb, void *arg)
{
    line_reader *lr = arg;
    size_t n = size * nmemb;
    for (size_t i = 0; i < n;) {
        char *nl = memchr(p + i, '\n', n - i);
        size_t take = nl ? (size_t)(nl - (p + i)) : n - i;
        if (take && rbuf_write(p + i, 1, take, &lr->line) != take) {
            lr->stop_rc = lr->line.too_big ? wp__err(WP_ETOOBIG, "etcd watch: line over %zu bytes",
                                                     lr->line.max)
                                           : wp__err(WP_ENOMEM, "etcd watch: out of memory");
            return 0;
        }
        i += take;
        if (!nl)
            break;
        i++;
        int rc = lr->line.len ? lr->on_line(lr->arg, lr->line.buf, lr->line.len) : 0;
        lr->line.len = 0;
        if (rc != 0) {
            lr->stop_rc = rc;
            return 0;
        }
    }
    return n;
}

static void events_free(etcd_event *ev, size_t n)
{
    for (size_t i = 0; i < n; i++)
        etcd_kv_free(&ev[i].kv);
    free(ev);
}

static int parse_event(const cJSON *o, etcd_event *ev)
{
    memset(ev, 0, sizeof *ev);
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(o, "type");
    if (type && !(cJSON_IsString(type) &&
                  (!strcmp(type->valuestring, "PUT") || !strcmp(type->valuestring, "DELETE"))))
        return bad_field("type", "is not PUT or DELETE");
    ev->type = type && !strcmp(type->valuestring, "DELETE") ? ETCD_EV_DELETE : ETCD_EV_PUT;
    int rc = parse_kv(cJSON_GetObjectItemCaseSensitive(o, "kv"), &ev->kv);
    if (rc == 0 && ev->kv.mod_rev < 1)
        rc = bad_field("mod_revision", "is missing in an event");
    return rc;
}

static int parse_events(const cJSON *res, etcd_event **out, size_t *n)
{
    const cJSON *evs = cJSON_GetObjectItemCaseSensitive(res, "events");
    *out = NULL;
    *n = 0;
    if (!evs)
        return 0;
    if (!cJSON_IsArray(evs))
        return bad_field("events", "is not an array");
    int cnt = cJSON_GetArraySize(evs);
    if (cnt == 0)
        return 0;
    etcd_event *ev = calloc((size_t)cnt, sizeof *ev);
    if (!ev)
        return wp__err(WP_ENOMEM, "etcd watch: out of memory");
    const cJSON *it;
    cJSON_ArrayForEach(it, evs) {
        int rc = parse_event(it, &ev[*n]);
        if (rc < 0) {
            events_free(ev, *n);
            *n = 0;
            return rc;
        }
        (*n)++;
    }
    *out = ev;
    return 0;
}

/* What one watch line says. */
typedef struct {
    bool created, canceled;
    int64_t header_rev, compact_rev;
    etcd_event *ev;
    size_t n_ev;
} watch_msg;

static int parse_watch_line(const char *line, size_t len, watch_msg *m)
{
    memset(m, 0, sizeof *m);
    cJSON *o = NULL;
    int rc = parse_body(line, len, &o);
    if (rc < 0)
        return rc;
    const cJSON *res = cJSON_GetObjectItemCaseSensitive(o, "result");
    const cJSON *h = cJSON_GetObjectItemCaseSensitive(res, "header");
    if (cJSON_GetObjectItemCaseSensitive(o, "error") || !cJSON_IsObject(res)) {
        rc = wp__err(WP_EUNAVAILABLE, "etcd watch: stream error: %.200s", line);
    } else if (!cJSON_IsObject(h)) {
        rc = wp__err(WP_ECORRUPT, "etcd watch: no header");
    } else if ((rc = json_bool(res, "created", &m->created)) == 0 &&
               (rc = json_bool(res, "canceled", &m->canceled)) == 0 &&
               (rc = json_nonneg(h, "revision", &m->header_rev)) == 0 &&
               (rc = json_nonneg(res, "compact_revision", &m->compact_rev)) == 0) {
        rc = parse_events(res, &m->ev, &m->n_ev);
    }
    cJSON_Delete(o);
    return rc;
}

static char *watch_body(const char *key, bool prefix, int64_t start_rev)
{
    cJSON *o = cJSON_CreateObject();
    cJSON *cr = o ? cJSON_AddObjectToObject(o, "create_request") : NULL;
    bool ok = cr && add_b64(cr, "key", key, strlen(key));
    if (ok && prefix)
        ok = add_prefix_end(cr, key);
    if (ok && start_rev > 0)
        ok = add_i64(cr, "start_revision", start_rev);
    if (!ok) {
        cJSON_Delete(o);
        o = NULL;
    }
    return print_del(o);
}

/* Prepares h to stream /v3/watch with body into lr (no overall timeout). */
static struct curl_slist *watch_setup(etcd_client *c, CURL *h, const char *ep, const char *body,
                                      line_reader *lr, int64_t connect_ms)
{
    char url[ETCD_URL_MAX + 64], tok[ETCD_TOKEN_MAX + 1];
    snprintf(url, sizeof url, "%s/v3/watch", ep);
    if (get_token(c, 0, etcd_deadline(c, connect_ms), tok) < 0)
        tok[0] = '\0';
    struct curl_slist *hdrs = headers(tok);
    if (!hdrs)
        return NULL;
    set_common(c, h, url, hdrs, connect_ms);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, lines_write);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, lr);
    return hdrs;
}

/* ---- etcd_first_change ------------------------------------------------- */

typedef struct {
    etcd_event *out;
    bool found;
    int64_t compacted;
} first_state;

static int first_line(void *arg, const char *line, size_t len)
{
    first_state *fs = arg;
    watch_msg m;
    int rc = parse_watch_line(line, len, &m);
    if (rc < 0)
        return rc;
    if (m.canceled) {
        fs->compacted = m.compact_rev;
        rc = wp__err(m.compact_rev ? WP_ETRUNCATED : WP_EUNAVAILABLE,
                     "etcd watch canceled (compacted at %lld)", (long long)m.compact_rev);
    } else if (m.n_ev > 0) {
        *fs->out = m.ev[0];
        memset(&m.ev[0].kv, 0, sizeof m.ev[0].kv);
        fs->found = true;
        rc = 1;
    }
    events_free(m.ev, m.n_ev);
    return rc;
}

int etcd_first_change(etcd_client *c, const char *key, int64_t after, int64_t deadline_ns,
                      etcd_event *out)
{
    memset(out, 0, sizeof *out);
    char *body = watch_body(key, false, after + 1);
    if (!body)
        return wp__err(WP_ENOMEM, "etcd watch: out of memory");
    int rc = WP_EUNAVAILABLE;
    wp__err(rc, "etcd watch %s: no answer within the deadline", key);
    int64_t deadline = deadline_ns ? deadline_ns : etcd_deadline(c, 0);
    for (size_t i = 0; rc < 0 && rc != WP_ETRUNCATED && wp__now_ns() < deadline; i++) {
        first_state fs = {.out = out};
        line_reader lr = {.line.max = c->max_resp, .on_line = first_line, .arg = &fs};
        size_t idx = atomic_load(&c->cur) % c->n_eps;
        CURL *h = pool_get(c);
        if (!h)
            break;
        curl_easy_reset(h);
        int64_t left = (deadline - wp__now_ns()) / 1000000 + 1;
        struct curl_slist *hdrs = watch_setup(c, h, c->eps[idx], body, &lr, left);
        curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)left);
        CURLcode cc = hdrs ? curl_easy_perform(h) : CURLE_OUT_OF_MEMORY;
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
        pool_put(c, h);
        curl_slist_free_all(hdrs);
        free(lr.line.buf);
        if (fs.found)
            rc = 0;
        else if (lr.stop_rc < 0)
            rc = lr.stop_rc;
        else if (cc != CURLE_OK)
            rc = wp__err(WP_EUNAVAILABLE, "etcd %s/v3/watch: %s", c->eps[idx], curl_easy_strerror(cc));
        if (rc < 0 && rc != WP_ETRUNCATED) {
            rotate(c, idx);
            sleep_ms(ETCD_BACKOFF_MS_MIN);
        }
    }
    free(body);
    return rc;
}

/* ---- background watch -------------------------------------------------- */

struct etcd_watch {
    etcd_client *c;
    char *key;
    bool prefix;
    etcd_watch_fn fn;
    etcd_watch_err_fn err_fn;
    void *arg;
    pthread_t thr;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool created, done;
    int fatal_rc;          /* a reason the watch ended for good */
    char fatal_msg[WP_ERRMSG_MAX];
    atomic_bool stop;
    CURLM *multi;          /* under mu: for wakeup */
    atomic_llong reconnects;
    int64_t next_rev;      /* watch thread only: first revision not delivered */
};

static int watch_line(void *arg, const char *line, size_t len)
{
    etcd_watch *w = arg;
    watch_msg m;
    int rc = parse_watch_line(line, len, &m);
    if (rc == WP_EUNAVAILABLE)
        return rc; /* a stream error: reconnect */
    if (rc < 0 || m.canceled) {
        if (rc == 0)
            rc = wp__err(m.compact_rev ? WP_ETRUNCATED : WP_EUNAVAILABLE,
                         "etcd watch %s: canceled by the server (compacted at revision %lld, "
                         "needed %lld)", w->key, (long long)m.compact_rev, (long long)w->next_rev);
        if (rc != WP_EUNAVAILABLE) {
            w->fatal_rc = rc;
            snprintf(w->fatal_msg, sizeof w->fatal_msg, "%s", wp_errmsg());
        }
        events_free(m.ev, m.n_ev);
        return rc;
    }
    if (m.created) {
        if (w->next_rev == 0)
            w->next_rev = m.header_rev + 1;
        pthread_mutex_lock(&w->mu);
        w->created = true;
        pthread_cond_broadcast(&w->cv);
        pthread_mutex_unlock(&w->mu);
    }
    size_t keep = 0;
    int64_t max_rev = 0;
    for (size_t i = 0; i < m.n_ev; i++) {
        if (m.ev[i].kv.mod_rev < w->next_rev) { /* already delivered */
            etcd_kv_free(&m.ev[i].kv);
            continue;
        }
        max_rev = m.ev[i].kv.mod_rev > max_rev ? m.ev[i].kv.mod_rev : max_rev;
        m.ev[keep++] = m.ev[i];
    }
    if (keep > 0 && w->fn)
        w->fn(w->arg, m.ev, keep);
    if (keep > 0)
        w->next_rev = max_rev + 1;
    else if (!m.created && m.n_ev == 0 && m.header_rev >= w->next_rev)
        w->next_rev = m.header_rev + 1; /* progress notification */
    events_free(m.ev, keep);
    return 0;
}

/* Streams one connection until it ends, fails or the watch is stopped. */
static void watch_stream(etcd_watch *w, size_t idx)
{
    char *body = watch_body(w->key, w->prefix, w->next_rev);
    CURL *h = body ? curl_easy_init() : NULL;
    CURLM *multi = h ? curl_multi_init() : NULL;
    line_reader lr = {.line.max = w->c->max_resp, .on_line = watch_line, .arg = w};
    struct curl_slist *hdrs = multi ? watch_setup(w->c, h, w->c->eps[idx], body, &lr,
                                                  w->c->timeout_ms) : NULL;
    if (hdrs && curl_multi_add_handle(multi, h) == CURLM_OK) {
        pthread_mutex_lock(&w->mu);
        w->multi = multi;
        pthread_mutex_unlock(&w->mu);
        int running = 1;
        while (running && !atomic_load(&w->stop) && w->fatal_rc == 0) {
            if (curl_multi_perform(multi, &running) != CURLM_OK)
                break;
            if (running)
                curl_multi_poll(multi, NULL, 0, 1000, NULL);
        }
        pthread_mutex_lock(&w->mu);
        w->multi = NULL;
        pthread_mutex_unlock(&w->mu);
        curl_multi_remove_handle(multi, h);
    }
    curl_slist_free_all(hdrs);
    curl_multi_cleanup(multi);
    curl_easy_cleanup(h);
    free(lr.line.buf);
    free(body);
}

static struct timespec abs_after_ms(int64_t ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += (time_t)(ms / 1000);
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

/* Sleeps about ms, or less if the watch is stopped or signalled. */
static void watch_nap(etcd_watch *w, int64_t ms)
{
    struct timespec ts = abs_after_ms(ms);
    pthread_mutex_lock(&w->mu);
    if (!atomic_load(&w->stop))
        pthread_cond_timedwait(&w->cv, &w->mu, &ts);
    pthread_mutex_unlock(&w->mu);
}

static void *watch_main(void *arg)
{
    etcd_watch *w = arg;
    int64_t backoff_ms = ETCD_BACKOFF_MS_MIN;
    while (!atomic_load(&w->stop) && w->fatal_rc == 0) {
        size_t idx = atomic_load(&w->c->cur) % w->c->n_eps;
        int64_t before = w->next_rev, t0 = now_ms();
        watch_stream(w, idx);
        if (atomic_load(&w->stop) || w->fatal_rc)
            break;
        atomic_fetch_add(&w->reconnects, 1);
        if (w->next_rev == before && now_ms() - t0 < 1000)
            rotate(w->c, idx); /* this member did not serve us: try the next */
        else
            backoff_ms = ETCD_BACKOFF_MS_MIN;
        watch_nap(w, backoff_ms);
        backoff_ms = backoff_ms * 2 > ETCD_BACKOFF_MS_MAX ? ETCD_BACKOFF_MS_MAX : backoff_ms * 2;
    }
    pthread_mutex_lock(&w->mu);
    etcd_watch_err_fn err_fn = w->err_fn;
    pthread_mutex_unlock(&w->mu);
    if (w->fatal_rc && err_fn)
        err_fn(w->arg, w->fatal_rc, w->fatal_msg);
    pthread_mutex_lock(&w->mu);
    w->done = true;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

/* Waits until the watch is confirmed, ended, or the deadline passed. */
static int watch_wait_created(etcd_watch *w, int64_t deadline)
{
    int rc = 0;
    pthread_mutex_lock(&w->mu);
    while (!w->created && !w->done) {
        int64_t left = (deadline - wp__now_ns()) / 1000000;
        if (left <= 0) {
            rc = wp__err(WP_EUNAVAILABLE, "etcd watch %s: not established within the deadline "
                         "(endpoint %s)", w->key, etcd_client_endpoint(w->c));
            break;
        }
        struct timespec ts = abs_after_ms(left < 50 ? left : 50);
        pthread_cond_timedwait(&w->cv, &w->mu, &ts);
    }
    if (rc == 0 && !w->created)
        rc = wp__err(w->fatal_rc ? w->fatal_rc : WP_EUNAVAILABLE, "%s", w->fatal_msg);
    pthread_mutex_unlock(&w->mu);
    return rc;
}

int etcd_watch_start(etcd_client *c, const char *key, bool prefix, int64_t start_rev,
                     etcd_watch_fn fn, etcd_watch_err_fn err_fn, void *arg, etcd_watch **out)
{
    *out = NULL;
    etcd_watch *w = calloc(1, sizeof *w);
    if (!w || !(w->key = strdup(key))) {
        free(w);
        return wp__err(WP_ENOMEM, "etcd watch: out of memory");
    }
    w->c = c;
    w->prefix = prefix;
    w->fn = fn;
    w->err_fn = err_fn;
    w->arg = arg;
    w->next_rev = start_rev > 0 ? start_rev : 0;
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    if (pthread_create(&w->thr, NULL, watch_main, w) != 0) {
        free(w->key);
        free(w);
        return wp__err(WP_ENOMEM, "etcd watch: cannot start a thread");
    }
    int rc = watch_wait_created(w, etcd_deadline(c, 0));
    if (rc < 0) {
        char msg[WP_ERRMSG_MAX];
        snprintf(msg, sizeof msg, "%s", wp_errmsg());
        pthread_mutex_lock(&w->mu);
        w->err_fn = NULL; /* the caller gets rc instead */
        pthread_mutex_unlock(&w->mu);
        etcd_watch_stop(w);
        return wp__err(rc, "%s", msg);
    }
    *out = w;
    return 0;
}

void etcd_watch_stop(etcd_watch *w)
{
    if (!w)
        return;
    pthread_mutex_lock(&w->mu);
    atomic_store(&w->stop, true);
    if (w->multi)
        curl_multi_wakeup(w->multi);
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->thr, NULL);
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
    free(w->key);
    free(w);
}

int64_t etcd_watch_reconnects(etcd_watch *w) { return atomic_load(&w->reconnects); }
