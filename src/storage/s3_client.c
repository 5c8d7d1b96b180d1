/* s3_client.c — S3 on libcurl (see s3_client.h for the contract).
 *
 * A request is an s3_req: method, key, pre-sorted pre-encoded query,
 * extra headers, an optional body (iovecs, streamed by a read callback)
 * and response sinks. s3_exec runs the attempts: it asks the fault hook,
 * takes an easy handle from the pool, signs (SigV4, computed here: see
 * "SigV4" below for why not by CURLOPT_AWS_SIGV4), performs, classifies
 * and backs off. */
#include "storage/s3_client.h"

#include <assert.h>
#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/limits.h"
#include "base/metrics.h"

/* Easy handles kept for reuse (each keeps its connection alive). */
#define S3_POOL_MAX 64
/* Extra header lines one request may carry. */
#define S3_REQ_HDRS_MAX 8
/* Bytes of an URL: endpoint + bucket + encoded key (3x) + query. */
#define S3_URL_MAX (1024 + 64 + 3 * S3_KEY_MAX + 3 * S3_UPLOAD_ID_MAX + 3 * S3_KEY_MAX + 256)
/* Bytes of a query string (continuation tokens are opaque; bounded). */
#define S3_QUERY_MAX (3 * S3_UPLOAD_ID_MAX + 3 * S3_KEY_MAX * 2 + 256)
/* Default per-attempt timeout and backoff (s3_options). */
#define S3_TIMEOUT_MS_DEFAULT 30000
#define S3_RETRY_BASE_MS_DEFAULT 50
#define S3_RETRY_CAP_MS_DEFAULT 2000
/* Connect phase of an attempt, at most. */
#define S3_CONNECT_TIMEOUT_MS_MAX 10000
/* Bytes of a session token (AWS STS tokens are a few KiB). */
#define S3_TOKEN_MAX 8192
/* Bytes of an access key, a secret key or a region. */
#define S3_CRED_MAX 256
/* Header lines a request carries besides its own (Host, x-amz-date,
 * x-amz-content-sha256, x-amz-security-token, Authorization, Expect). */
#define S3_STD_HDRS 6
/* Bytes of an endpoint's host[:port]. */
#define S3_HOSTPORT_MAX 1024
/* Bytes of a signed header's name. */
#define S3_HDR_NAME_MAX 64
/* Largest object size believed from the network (S3 allows 5 TiB). */
#define S3_SIZE_MAX (1ULL << 50)

static const char EMPTY_SHA256[] =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

struct s3_client {
    char *scheme;   /* "http" or "https" */
    char *hostport; /* "127.0.0.1:8000" */
    char *bucket, *region, *access_key, *secret_key, *token, *ca_file;
    bool path_style;
    int64_t timeout_ms;
    int max_retries, base_ms, cap_ms;
    const wp__logger *logger;
    pthread_mutex_t mu; /* guards pool and the fault hook */
    CURL *pool[S3_POOL_MAX];
    int n_pool;
    s3_fault_fn fault;
    void *fault_arg;
    atomic_uint_fast64_t n_requests, n_attempts, n_retries, n_puts, n_put_bytes, n_own;
    atomic_uint_fast64_t n_gets, n_deletes, n_batch_deletes;
};

typedef struct {
    /* request */
    const char *method;
    const char *key;   /* "" = the bucket */
    const char *query; /* "" = none */
    const struct iovec *iov;
    int iovcnt;
    uint64_t body_len;
    const char *sha256_hex; /* of the body */
    const char *hdr[S3_REQ_HDRS_MAX];
    int n_hdr;
    const char *result_tag; /* a 200 whose body has it may list per-item <Error>s */
    bool final_501;    /* 501 is an answer (unsupported), not a transient failure */
    void *sink;        /* 2xx body of a GET goes here ... */
    size_t sink_cap;   /* ... up to this many bytes */
    uint64_t skip;     /* leading 2xx body bytes to drop (a 200 to a ranged GET) */
    /* upload cursor */
    int cur_iov;
    size_t cur_off;
    /* response */
    long status;
    size_t sink_len;
    bool sink_full;
    char *body; /* non-sink answer bytes (XML), NUL-terminated */
    size_t body_len_resp, body_cap;
    bool overflow;
    char etag[S3_ETAG_MAX];
    bool has_length, has_range;
    uint64_t content_length, range_start, range_total;
    /* fault injection */
    int64_t stall_ms;
    bool stall_timeout, stalled;
    CURLcode cc;
    int64_t attempt_timeout_ms;
    bool maybe_applied; /* an earlier attempt may have reached the server */
} s3_req;

/* ---- small helpers -------------------------------------------------------- */

static char *dupstr(const char *s) { return strdup(s ? s : ""); }

static const char *nz(const char *a, const char *b) { return a && *a ? a : b; }

static void hex_encode(const unsigned char *b, size_t n, char *out)
{
    static const char hx[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hx[b[i] >> 4];
        out[2 * i + 1] = hx[b[i] & 15];
    }
    out[2 * n] = '\0';
}

static void sleep_ms(int64_t ms)
{
    if (ms <= 0)
        return;
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* SHA-256 (hex) and MD5 (raw) of the iovecs, in one pass. */
static int hash_iov(const struct iovec *iov, int iovcnt, char sha_hex[65], unsigned char md5[16])
{
    EVP_MD_CTX *a = EVP_MD_CTX_new(), *b = EVP_MD_CTX_new();
    unsigned char sha[32];
    unsigned int n = 0;
    int ok = a && b && EVP_DigestInit_ex(a, EVP_sha256(), NULL) && EVP_DigestInit_ex(b, EVP_md5(), NULL);
    for (int i = 0; ok && i < iovcnt; i++)
        ok = EVP_DigestUpdate(a, iov[i].iov_base, iov[i].iov_len) &&
             EVP_DigestUpdate(b, iov[i].iov_base, iov[i].iov_len);
    ok = ok && EVP_DigestFinal_ex(a, sha, &n) && EVP_DigestFinal_ex(b, md5, &n);
    EVP_MD_CTX_free(a);
    EVP_MD_CTX_free(b);
    if (!ok)
        return wp__err(WP_ENOMEM, "s3: hashing the body failed (OpenSSL)");
    hex_encode(sha, 32, sha_hex);
    return 0;
}

int s3_uri_encode(const char *s, bool keep_slash, char *out, size_t cap)
{
    static const char hx[] = "0123456789ABCDEF";
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        bool plain = isalnum(*p) || *p == '-' || *p == '.' || *p == '_' || *p == '~' ||
                     (keep_slash && *p == '/');
        if (o + (plain ? 1 : 3) >= cap)
            return -1;
        if (plain) {
            out[o++] = (char)*p;
        } else {
            out[o++] = '%';
            out[o++] = hx[*p >> 4];
            out[o++] = hx[*p & 15];
        }
    }
    if (o >= cap)
        return -1;
    out[o] = '\0';
    return (int)o;
}

int64_t s3_backoff_ms(int k, int base_ms, int cap_ms)
{
    static _Thread_local uint64_t seed;
    if (!seed)
        seed = (uint64_t)wp__now_ns() ^ (uint64_t)(uintptr_t)&seed;
    seed ^= seed << 13; /* xorshift64 */
    seed ^= seed >> 7;
    seed ^= seed << 17;
    int64_t ceil_ms = base_ms;
    for (int i = 1; i < k && ceil_ms < cap_ms; i++)
        ceil_ms *= 2;
    if (ceil_ms > cap_ms)
        ceil_ms = cap_ms;
    return ceil_ms > 0 ? (int64_t)(seed % (uint64_t)(ceil_ms + 1)) : 0;
}

/* ---- minimal XML ---------------------------------------------------------- */

/* The content of the next <tag>...</tag> in [p, end): *v, *vn; returns the
 * position after the closing tag, or NULL if there is none. Elements
 * searched here never nest in themselves in S3 answers. */
static const char *xml_elem(const char *p, const char *end, const char *tag, const char **v,
                            size_t *vn)
{
    char open[48], close[48];
    int lo = snprintf(open, sizeof open, "<%s>", tag);
    int lc = snprintf(close, sizeof close, "</%s>", tag);
    if (!p || p >= end || lo <= 0 || lc <= 0)
        return NULL;
    const char *a = memmem(p, (size_t)(end - p), open, (size_t)lo);
    if (!a)
        return NULL;
    a += lo;
    const char *b = memmem(a, (size_t)(end - a), close, (size_t)lc);
    if (!b)
        return NULL;
    *v = a;
    *vn = (size_t)(b - a);
    return b + lc;
}

/* Appends the UTF-8 form of code point cp; false if invalid or no room. */
static bool utf8_put(uint32_t cp, char *out, size_t cap, size_t *o)
{
    unsigned char b[4];
    size_t n;
    if (cp == 0 || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return false;
    if (cp < 0x80) {
        b[0] = (unsigned char)cp, n = 1;
    } else if (cp < 0x800) {
        b[0] = (unsigned char)(0xC0 | cp >> 6), b[1] = (unsigned char)(0x80 | (cp & 63)), n = 2;
    } else if (cp < 0x10000) {
        b[0] = (unsigned char)(0xE0 | cp >> 12), b[1] = (unsigned char)(0x80 | ((cp >> 6) & 63));
        b[2] = (unsigned char)(0x80 | (cp & 63)), n = 3;
    } else {
        b[0] = (unsigned char)(0xF0 | cp >> 18), b[1] = (unsigned char)(0x80 | ((cp >> 12) & 63));
        b[2] = (unsigned char)(0x80 | ((cp >> 6) & 63)), b[3] = (unsigned char)(0x80 | (cp & 63));
        n = 4;
    }
    if (*o + n >= cap)
        return false;
    memcpy(out + *o, b, n);
    *o += n;
    return true;
}

/* Decodes one entity at s (after '&', up to ';'); false if unknown. */
static bool xml_entity(const char *s, size_t n, char *out, size_t cap, size_t *o)
{
    static const struct {
        const char *name;
        char c;
    } named[] = {{"amp", '&'}, {"lt", '<'}, {"gt", '>'}, {"quot", '"'}, {"apos", '\''}};
    for (size_t i = 0; i < sizeof named / sizeof named[0]; i++)
        if (strlen(named[i].name) == n && memcmp(s, named[i].name, n) == 0) {
            if (*o + 1 >= cap)
                return false;
            out[(*o)++] = named[i].c;
            return true;
        }
    if (n < 2 || n > 8 || s[0] != '#')
        return false;
    bool hex = s[1] == 'x';
    uint32_t cp = 0;
    size_t i = hex ? 2 : 1;
    if (i == n)
        return false;
    for (; i < n; i++) {
        int d = isdigit((unsigned char)s[i]) ? s[i] - '0'
                : hex && isxdigit((unsigned char)s[i]) ? (tolower((unsigned char)s[i]) - 'a' + 10)
                                                       : -1;
        if (d < 0)
            return false;
        cp = cp * (hex ? 16 : 10) + (uint32_t)d;
    }
    return utf8_put(cp, out, cap, o);
}

/* Copies XML text [v, v+n) into out (capacity cap, NUL-terminated),
 * decoding entities; false if malformed, contains NUL/'<', or too long. */
static bool xml_text(const char *v, size_t n, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (v[i] == '\0' || v[i] == '<')
            return false;
        if (v[i] == '&') {
            const char *semi = memchr(v + i, ';', n - i);
            if (!semi || !xml_entity(v + i + 1, (size_t)(semi - v - i - 1), out, cap, &o))
                return false;
            i = (size_t)(semi - v);
            continue;
        }
        if (o + 1 >= cap)
            return false;
        out[o++] = v[i];
    }
    out[o] = '\0';
    return true;
}

/* Like xml_text, into a new allocation of at most max bytes. */
static char *xml_text_dup(const char *v, size_t n, size_t max)
{
    size_t cap = (n < max ? n : max) + 1;
    char *s = malloc(cap);
    if (s && !xml_text(v, n, s, cap)) {
        free(s);
        return NULL;
    }
    return s;
}

static bool parse_u64(const char *v, size_t n, uint64_t max, uint64_t *out)
{
    while (n && isspace((unsigned char)*v))
        v++, n--;
    while (n && isspace((unsigned char)v[n - 1]))
        n--;
    if (n == 0 || n > 19)
        return false;
    uint64_t x = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isdigit((unsigned char)v[i]))
            return false;
        x = x * 10 + (uint64_t)(v[i] - '0');
    }
    if (x > max)
        return false;
    *out = x;
    return true;
}

void s3_parse_error(const char *xml, size_t len, char *code, size_t code_cap, char *msg,
                    size_t msg_cap)
{
    const char *end = xml ? xml + len : NULL, *v;
    size_t vn;
    if (code_cap)
        code[0] = '\0';
    if (msg_cap)
        msg[0] = '\0';
    if (!xml)
        return;
    const char *err = memmem(xml, len, "<Error>", 7);
    if (code_cap && xml_elem(err, end, "Code", &v, &vn)) {
        if (!xml_text(v, vn < code_cap - 1 ? vn : code_cap - 1, code, code_cap))
            code[0] = '\0';
    }
    if (msg_cap && xml_elem(err, end, "Message", &v, &vn)) {
        /* Cut before an entity or at capacity; a message is only for humans. */
        size_t n = vn < msg_cap - 1 ? vn : msg_cap - 1;
        const char *amp = memchr(v, '&', n);
        if (!xml_text(v, amp ? (size_t)(amp - v) : n, msg, msg_cap))
            msg[0] = '\0';
    }
}

void s3_list_page_free(s3_list_page *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->n_items; i++)
        free(p->items[i].key);
    for (size_t i = 0; i < p->n_prefixes; i++)
        free(p->prefixes[i]);
    free(p->items);
    free(p->prefixes);
    free(p->next_token);
    memset(p, 0, sizeof *p);
}

static int list_contents(const char *xml, const char *end, s3_list_page *out)
{
    const char *p = xml, *blk, *v;
    size_t bn, vn;
    while ((p = xml_elem(p, end, "Contents", &blk, &bn)) != NULL) {
        if (out->n_items >= S3_LIST_KEYS_MAX)
            return wp__err(WP_EIO, "s3: list answer has more than %d keys", S3_LIST_KEYS_MAX);
        s3_list_item it = {0};
        if (!xml_elem(blk, blk + bn, "Key", &v, &vn) ||
            !(it.key = xml_text_dup(v, vn, S3_KEY_MAX)) || !*it.key) {
            free(it.key);
            return wp__err(WP_EIO, "s3: list answer has a bad or missing <Key>");
        }
        if (!xml_elem(blk, blk + bn, "Size", &v, &vn) || !parse_u64(v, vn, S3_SIZE_MAX, &it.size)) {
            int rc = wp__err(WP_EIO, "s3: list answer has a bad <Size> for key %.200s", it.key);
            free(it.key);
            return rc;
        }
        out->items[out->n_items++] = it;
    }
    return 0;
}

static int list_prefixes(const char *xml, const char *end, s3_list_page *out)
{
    const char *p = xml, *blk, *v;
    size_t bn, vn;
    while ((p = xml_elem(p, end, "CommonPrefixes", &blk, &bn)) != NULL) {
        if (out->n_prefixes >= S3_LIST_KEYS_MAX)
            return wp__err(WP_EIO, "s3: list answer has more than %d prefixes", S3_LIST_KEYS_MAX);
        char *s = NULL;
        if (!xml_elem(blk, blk + bn, "Prefix", &v, &vn) || !(s = xml_text_dup(v, vn, S3_KEY_MAX)) ||
            !*s) {
            free(s);
            return wp__err(WP_EIO, "s3: list answer has a bad <CommonPrefixes>");
        }
        out->prefixes[out->n_prefixes++] = s;
    }
    return 0;
}

int s3_parse_list(const char *xml, size_t len, s3_list_page *out)
{
    memset(out, 0, sizeof *out);
    const char *end = xml + len, *v;
    size_t vn;
    if (!memmem(xml, len, "<ListBucketResult", 17) || !memmem(xml, len, "</ListBucketResult>", 19))
        return wp__err(WP_EIO, "s3: list answer is not a complete <ListBucketResult>");
    out->items = calloc(S3_LIST_KEYS_MAX, sizeof *out->items);
    out->prefixes = calloc(S3_LIST_KEYS_MAX, sizeof *out->prefixes);
    if (!out->items || !out->prefixes)
        return wp__err(WP_ENOMEM, "s3: list page");
    int rc = list_contents(xml, end, out);
    if (!rc)
        rc = list_prefixes(xml, end, out);
    if (rc)
        return rc;
    if (xml_elem(xml, end, "IsTruncated", &v, &vn))
        out->truncated = vn == 4 && memcmp(v, "true", 4) == 0;
    if (xml_elem(xml, end, "NextContinuationToken", &v, &vn) && vn > 0 &&
        !(out->next_token = xml_text_dup(v, vn, S3_KEY_MAX)))
        return wp__err(WP_EIO, "s3: list answer has a bad <NextContinuationToken>");
    if (out->truncated && !out->next_token)
        return wp__err(WP_EIO, "s3: truncated list answer without a continuation token");
    return 0;
}

/* ---- curl callbacks ------------------------------------------------------- */

static size_t on_read(char *buf, size_t size, size_t nmemb, void *arg)
{
    s3_req *q = arg;
    size_t cap = size * nmemb, n = 0;
    while (n < cap && q->cur_iov < q->iovcnt) {
        const struct iovec *v = &q->iov[q->cur_iov];
        size_t take = v->iov_len - q->cur_off;
        if (take > cap - n)
            take = cap - n;
        memcpy(buf + n, (const char *)v->iov_base + q->cur_off, take);
        n += take;
        q->cur_off += take;
        if (q->cur_off == v->iov_len)
            q->cur_iov++, q->cur_off = 0;
    }
    return n;
}

static int on_seek(void *arg, curl_off_t off, int origin)
{
    s3_req *q = arg;
    if (origin != SEEK_SET || off < 0 || (uint64_t)off > q->body_len)
        return CURL_SEEKFUNC_CANTSEEK;
    q->cur_iov = 0;
    q->cur_off = 0;
    for (uint64_t left = (uint64_t)off; left > 0;) {
        size_t l = q->iov[q->cur_iov].iov_len;
        if (left < l) {
            q->cur_off = (size_t)left;
            break;
        }
        left -= l;
        q->cur_iov++;
    }
    return CURL_SEEKFUNC_OK;
}

static bool header_is(const char *line, size_t n, const char *name, const char **val, size_t *vn)
{
    size_t l = strlen(name);
    if (n <= l || strncasecmp(line, name, l) != 0 || line[l] != ':')
        return false;
    const char *v = line + l + 1, *e = line + n;
    while (v < e && (*v == ' ' || *v == '\t'))
        v++;
    while (e > v && (e[-1] == '\r' || e[-1] == '\n' || e[-1] == ' '))
        e--;
    *val = v;
    *vn = (size_t)(e - v);
    return true;
}

/* Content-Range: bytes START-END/TOTAL  or  bytes * /TOTAL (416). */
static void parse_content_range(s3_req *q, const char *v, size_t n)
{
    char buf[96];
    unsigned long long a, b, t;
    if (n >= sizeof buf)
        return;
    memcpy(buf, v, n);
    buf[n] = '\0';
    if (sscanf(buf, "bytes %llu-%llu/%llu", &a, &b, &t) == 3 && a <= b && b < t && t <= S3_SIZE_MAX) {
        q->has_range = true, q->range_start = a, q->range_total = t;
    } else if (sscanf(buf, "bytes */%llu", &t) == 1 && t <= S3_SIZE_MAX) {
        q->has_range = true, q->range_start = t, q->range_total = t;
    }
}

static void header_etag(s3_req *q, const char *v, size_t n)
{
    if (n >= 2 && v[0] == '"' && v[n - 1] == '"')
        v++, n -= 2;
    if (n < sizeof q->etag) {
        memcpy(q->etag, v, n);
        q->etag[n] = '\0';
    }
}

static size_t on_header(char *line, size_t size, size_t nmemb, void *arg)
{
    s3_req *q = arg;
    size_t n = size * nmemb;
    const char *v;
    size_t vn;
    if (n > 5 && memcmp(line, "HTTP/", 5) == 0) {
        const char *sp = memchr(line, ' ', n);
        q->status = sp ? strtol(sp + 1, NULL, 10) : 0;
        q->has_length = q->has_range = false;
        q->etag[0] = '\0';
        if (q->stall_ms > 0 && !q->stalled && q->status >= 200) {
            q->stalled = true; /* injected slow answer */
            sleep_ms(q->stall_timeout ? q->attempt_timeout_ms : q->stall_ms);
            if (q->stall_timeout)
                return 0;
        }
    } else if (header_is(line, n, "ETag", &v, &vn)) {
        header_etag(q, v, vn);
    } else if (header_is(line, n, "Content-Length", &v, &vn)) {
        q->has_length = parse_u64(v, vn, S3_SIZE_MAX, &q->content_length);
    } else if (header_is(line, n, "Content-Range", &v, &vn)) {
        parse_content_range(q, v, vn);
    }
    return n;
}

static size_t body_append(s3_req *q, const char *p, size_t n)
{
    if (q->body_len_resp + n > S3_XML_BYTES_MAX) {
        q->overflow = true;
        return 0;
    }
    if (q->body_len_resp + n + 1 > q->body_cap) {
        size_t cap = q->body_cap ? q->body_cap : 4096;
        while (cap < q->body_len_resp + n + 1)
            cap *= 2;
        char *nb = realloc(q->body, cap);
        if (!nb)
            return 0;
        q->body = nb;
        q->body_cap = cap;
    }
    memcpy(q->body + q->body_len_resp, p, n);
    q->body_len_resp += n;
    q->body[q->body_len_resp] = '\0';
    return n;
}

static size_t on_write(char *p, size_t size, size_t nmemb, void *arg)
{
    s3_req *q = arg;
    size_t n = size * nmemb, used = 0;
    if (!q->sink || q->status < 200 || q->status > 299)
        return body_append(q, p, n);
    if (q->skip && q->status == 200) { /* the server ignored Range */
        used = q->skip < n ? (size_t)q->skip : n;
        q->skip -= used;
    }
    size_t take = n - used;
    if (take > q->sink_cap - q->sink_len) {
        take = q->sink_cap - q->sink_len;
        q->sink_full = true; /* the rest is not wanted: stop the transfer */
    }
    memcpy((char *)q->sink + q->sink_len, p + used, take);
    q->sink_len += take;
    return q->sink_full ? 0 : n;
}

/* ---- one attempt ---------------------------------------------------------- */

static int build_url(const s3_client *c, const s3_req *q, char *url, size_t cap)
{
    char ek[3 * S3_KEY_MAX + 1];
    if (s3_uri_encode(q->key, true, ek, sizeof ek) < 0)
        return wp__err(WP_EINVAL, "s3: key too long: %.100s...", q->key);
    int n;
    if (c->path_style)
        n = snprintf(url, cap, "%s://%s/%s%s%s%s%s", c->scheme, c->hostport, c->bucket,
                     *q->key ? "/" : "", ek, *q->query ? "?" : "", q->query);
    else
        n = snprintf(url, cap, "%s://%s.%s/%s%s%s", c->scheme, c->bucket, c->hostport, ek,
                     *q->query ? "?" : "", q->query);
    if (n < 0 || (size_t)n >= cap)
        return wp__err(WP_EINVAL, "s3: URL too long for key %.100s...", q->key);
    return 0;
}

/* ---- SigV4 ---------------------------------------------------------------- */

/* Requests are signed here, not by libcurl's CURLOPT_AWS_SIGV4, so that a
 * PUT goes without "Expect: 100-continue". libcurl adds that header to
 * every PUT with a body; and its signer (7.88) signs each line of
 * CURLOPT_HTTPHEADER, including the "Expect:" that would suppress the
 * header, which is then not sent: the server rejects the signature. With
 * the header, the body either waits for the server's interim "100
 * Continue" (a round trip), or, with CURLOPT_EXPECT_100_TIMEOUT_MS 0, goes
 * at once and the 100 Continue arrives after it: the client then has
 * nothing to send to carry the ACK of that small segment, so a server
 * without TCP_NODELAY (RGW's beast frontend by default) holds its answer
 * (Nagle) until the client's delayed ACK fires: a PUT of 1 KiB took 44 ms
 * instead of 2 (issue 14). Without the header, request and body go out at
 * once and the answer follows them. */

typedef struct {
    char name[S3_HDR_NAME_MAX]; /* lower case */
    const char *v;              /* value: leading and trailing blanks cut */
    size_t vn;
} sig_hdr;

static int sig_hdr_cmp(const void *a, const void *b)
{
    return strcmp(((const sig_hdr *)a)->name, ((const sig_hdr *)b)->name);
}

/* Parses the header line "Name: value" into *h; false if it has no name
 * or the name is too long. */
static bool sig_hdr_parse(const char *line, sig_hdr *h)
{
    const char *colon = strchr(line, ':');
    size_t nl = colon ? (size_t)(colon - line) : 0;
    if (nl == 0 || nl >= sizeof h->name)
        return false;
    for (size_t i = 0; i < nl; i++)
        h->name[i] = (char)tolower((unsigned char)line[i]);
    h->name[nl] = '\0';
    const char *v = colon + 1, *e = v + strlen(v);
    while (v < e && (*v == ' ' || *v == '\t'))
        v++;
    while (e > v && (e[-1] == ' ' || e[-1] == '\t'))
        e--;
    h->v = v;
    h->vn = (size_t)(e - v);
    return true;
}

static bool hmac_sha256(const void *key, size_t kl, const char *msg, unsigned char out[32])
{
    unsigned int n = 32;
    const unsigned char *m = (const unsigned char *)msg;
    return HMAC(EVP_sha256(), key, (int)kl, m, strlen(msg), out, &n) != NULL;
}

/* The canonical request (AWS SigV4) of q with the headers h[0..n) (sorted),
 * the path of url and the body hash; *names gets the signed header list.
 * Header values are trimmed and runs of blanks in them folded. NULL if out
 * of memory. */
static char *canonical_request(const s3_req *q, const char *url, const sig_hdr *h, int n,
                               char *names, size_t names_cap, size_t *len)
{
    const char *path = strchr(strstr(url, "://") + 3, '/');
    size_t path_n = strcspn(path, "?"), cap = strlen(url) + strlen(q->method) + 128;
    for (int i = 0; i < n; i++) /* its line and its place in the name list */
        cap += 2 * sizeof h[i].name + 2 + h[i].vn;
    char *b = malloc(cap);
    if (!b)
        return NULL;
    size_t o = (size_t)snprintf(b, cap, "%s\n%.*s\n%s\n", q->method, (int)path_n, path, q->query);
    size_t no = 0;
    names[0] = '\0';
    for (int i = 0; i < n; i++) {
        o += (size_t)snprintf(b + o, cap - o, "%s:", h[i].name);
        for (size_t k = 0; k < h[i].vn; k++)
            if (!(h[i].v[k] == ' ' && k > 0 && h[i].v[k - 1] == ' '))
                b[o++] = h[i].v[k];
        b[o++] = '\n';
        no += (size_t)snprintf(names + no, names_cap - no, "%s%s", i ? ";" : "", h[i].name);
    }
    o += (size_t)snprintf(b + o, cap - o, "\n%s\n%s", names,
                          q->sha256_hex ? q->sha256_hex : EMPTY_SHA256);
    assert(o < cap && no < names_cap);
    *len = o;
    return b;
}

/* The "Authorization: AWS4-HMAC-SHA256 ..." line of q for url, signing the
 * header lines lines[0..n) at amz_date ("YYYYMMDDTHHMMSSZ"). */
static int sigv4_authorization(const s3_client *c, const s3_req *q, const char *url,
                               const char *const *lines, int n, const char *amz_date, char *out,
                               size_t cap)
{
    sig_hdr h[S3_REQ_HDRS_MAX + S3_STD_HDRS];
    char names[(S3_REQ_HDRS_MAX + S3_STD_HDRS) * S3_HDR_NAME_MAX], creq_hex[65], scope[128];
    char sts[64 + sizeof scope + 65], key[4 + S3_CRED_MAX + 1], sig_hex[65];
    unsigned char d[32], k[32];
    unsigned int dn = 0;
    size_t len;
    assert(n <= S3_REQ_HDRS_MAX + S3_STD_HDRS);
    for (int i = 0; i < n; i++)
        if (!sig_hdr_parse(lines[i], &h[i]))
            return wp__err(WP_EINVAL, "s3: header line cannot be signed: %.80s", lines[i]);
    qsort(h, (size_t)n, sizeof h[0], sig_hdr_cmp);
    char *creq = canonical_request(q, url, h, n, names, sizeof names, &len);
    if (!creq)
        return wp__err(WP_ENOMEM, "s3: out of memory for a request");
    bool ok = EVP_Digest(creq, len, d, &dn, EVP_sha256(), NULL);
    free(creq);
    hex_encode(d, 32, creq_hex);
    snprintf(scope, sizeof scope, "%.8s/%s/s3/aws4_request", amz_date, c->region);
    snprintf(sts, sizeof sts, "AWS4-HMAC-SHA256\n%s\n%s\n%s", amz_date, scope, creq_hex);
    snprintf(key, sizeof key, "AWS4%s", c->secret_key);
    char day[9];
    snprintf(day, sizeof day, "%.8s", amz_date);
    ok = ok && hmac_sha256(key, strlen(key), day, k) && hmac_sha256(k, 32, c->region, k) &&
         hmac_sha256(k, 32, "s3", k) && hmac_sha256(k, 32, "aws4_request", k) &&
         hmac_sha256(k, 32, sts, d);
    if (!ok)
        return wp__err(WP_ENOMEM, "s3: signing failed (OpenSSL)");
    hex_encode(d, 32, sig_hex);
    int w = snprintf(out, cap,
                     "Authorization: AWS4-HMAC-SHA256 Credential=%s/%s, SignedHeaders=%s, "
                     "Signature=%s",
                     c->access_key, scope, names, sig_hex);
    if (w < 0 || (size_t)w >= cap)
        return wp__err(WP_EINVAL, "s3: Authorization header too long");
    return 0;
}

/* The header lines of one attempt, signed now: Host (the one signed, so
 * libcurl sends it and not its own), x-amz-date, x-amz-content-sha256,
 * the session token, q's own lines, Authorization, and "Expect:" (no
 * Expect: 100-continue, see above), in *out. */
static int build_headers(const s3_client *c, const s3_req *q, const char *url,
                         struct curl_slist **out)
{
    char host[16 + 64 + S3_HOSTPORT_MAX], date[40], sha[96], token[S3_TOKEN_MAX + 32], amz_date[20];
    char auth[256 + S3_CRED_MAX + S3_HDR_NAME_MAX * (S3_REQ_HDRS_MAX + S3_STD_HDRS)];
    const char *lines[S3_REQ_HDRS_MAX + S3_STD_HDRS];
    int n = 0;
    struct tm tm;
    time_t now = time(NULL);
    gmtime_r(&now, &tm);
    strftime(amz_date, sizeof amz_date, "%Y%m%dT%H%M%SZ", &tm);
    snprintf(host, sizeof host, "Host: %s%s%s", c->path_style ? "" : c->bucket,
             c->path_style ? "" : ".", c->hostport);
    snprintf(date, sizeof date, "x-amz-date: %s", amz_date);
    snprintf(sha, sizeof sha, "x-amz-content-sha256: %s",
             q->sha256_hex ? q->sha256_hex : EMPTY_SHA256);
    lines[n++] = host, lines[n++] = date, lines[n++] = sha;
    if (*c->token) {
        snprintf(token, sizeof token, "x-amz-security-token: %s", c->token);
        lines[n++] = token;
    }
    for (int i = 0; i < q->n_hdr; i++)
        lines[n++] = q->hdr[i];
    int rc = sigv4_authorization(c, q, url, lines, n, amz_date, auth, sizeof auth);
    if (rc)
        return rc;
    lines[n++] = auth;
    lines[n++] = "Expect:";
    struct curl_slist *h = NULL, *t;
    for (int i = 0; i < n; i++) {
        if (!(t = curl_slist_append(h, lines[i]))) {
            curl_slist_free_all(h);
            return wp__err(WP_ENOMEM, "s3: out of memory for a request");
        }
        h = t;
    }
    *out = h;
    return 0;
}

static void set_method(CURL *h, s3_req *q)
{
    if (strcmp(q->method, "PUT") == 0) {
        curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, (curl_off_t)q->body_len);
    } else if (strcmp(q->method, "POST") == 0) {
        curl_easy_setopt(h, CURLOPT_POST, 1L);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)q->body_len);
    } else if (strcmp(q->method, "HEAD") == 0) {
        curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    } else if (strcmp(q->method, "DELETE") == 0) {
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, "DELETE");
    }
    if (q->iovcnt > 0 || strcmp(q->method, "PUT") == 0 || strcmp(q->method, "POST") == 0) {
        curl_easy_setopt(h, CURLOPT_READFUNCTION, on_read);
        curl_easy_setopt(h, CURLOPT_READDATA, q);
        curl_easy_setopt(h, CURLOPT_SEEKFUNCTION, on_seek);
        curl_easy_setopt(h, CURLOPT_SEEKDATA, q);
    }
}

static void set_options(const s3_client *c, CURL *h, s3_req *q, const char *url,
                        struct curl_slist *hdrs)
{
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)q->attempt_timeout_ms);
    long ct = c->timeout_ms < S3_CONNECT_TIMEOUT_MS_MAX ? (long)c->timeout_ms : S3_CONNECT_TIMEOUT_MS_MAX;
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, ct);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, q);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, q);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    if (*c->ca_file)
        curl_easy_setopt(h, CURLOPT_CAINFO, c->ca_file);
    set_method(h, q);
}

static CURL *pool_get(s3_client *c)
{
    CURL *h = NULL;
    pthread_mutex_lock(&c->mu);
    if (c->n_pool > 0)
        h = c->pool[--c->n_pool];
    pthread_mutex_unlock(&c->mu);
    if (h)
        curl_easy_reset(h); /* keeps the live connection */
    else
        h = curl_easy_init();
    return h;
}

static void pool_put(s3_client *c, CURL *h)
{
    pthread_mutex_lock(&c->mu);
    if (c->n_pool < S3_POOL_MAX) {
        c->pool[c->n_pool++] = h;
        h = NULL;
    }
    pthread_mutex_unlock(&c->mu);
    if (h)
        curl_easy_cleanup(h);
}

static void response_reset(s3_req *q)
{
    q->status = 0;
    q->sink_len = 0;
    q->sink_full = q->overflow = q->has_length = q->has_range = false;
    q->body_len_resp = 0;
    if (q->body)
        q->body[0] = '\0';
    q->etag[0] = '\0';
    q->cur_iov = 0;
    q->cur_off = 0;
    q->stall_ms = 0;
    q->stall_timeout = q->stalled = false;
    q->cc = CURLE_OK;
}

/* Applies a fault decided by the hook; true if the attempt is over. */
static bool fault_apply(s3_req *q, const s3_fault *f)
{
    switch (f->kind) {
    case S3_FAULT_STATUS:
        q->status = f->status;
        if (f->body)
            body_append(q, f->body, strlen(f->body));
        return true;
    case S3_FAULT_RESET:
        q->cc = CURLE_RECV_ERROR;
        return true;
    case S3_FAULT_SLOW:
        q->stall_ms = f->delay_ms;
        q->stall_timeout = f->delay_ms >= q->attempt_timeout_ms;
        return false;
    default:
        return false;
    }
}

static void fault_ask(s3_client *c, s3_req *q, const char *url, int attempt, s3_fault *f)
{
    memset(f, 0, sizeof *f);
    pthread_mutex_lock(&c->mu);
    s3_fault_fn fn = c->fault;
    void *arg = c->fault_arg;
    pthread_mutex_unlock(&c->mu);
    if (!fn)
        return;
    s3_fault_req fr = {.method = q->method, .key = q->key, .query = q->query, .url = url,
                       .attempt = attempt, .body_bytes = q->body_len};
    fn(arg, &fr, f);
}

/* Performs one HTTP exchange; its outcome is in q->cc and q->status. */
static int attempt_once(s3_client *c, s3_req *q, const char *url, int attempt)
{
    response_reset(q);
    s3_fault f;
    fault_ask(c, q, url, attempt, &f);
    atomic_fetch_add(&c->n_attempts, 1);
    if (fault_apply(q, &f))
        return 0;
    struct curl_slist *hdrs = NULL;
    int rc = build_headers(c, q, url, &hdrs);
    if (rc)
        return rc;
    CURL *h = pool_get(c);
    if (!h) {
        curl_slist_free_all(hdrs);
        return wp__err(WP_ENOMEM, "s3: out of memory for a request");
    }
    set_options(c, h, q, url, hdrs);
    q->cc = curl_easy_perform(h);
    if (q->cc == CURLE_WRITE_ERROR && q->sink_full)
        q->cc = CURLE_OK; /* we stopped it: enough bytes */
    else if (q->cc == CURLE_WRITE_ERROR && q->stall_timeout)
        q->cc = CURLE_OPERATION_TIMEDOUT;
    if (q->cc == CURLE_OK && f.kind == S3_FAULT_RESET_AFTER)
        q->cc = CURLE_RECV_ERROR; /* applied, but the answer is lost */
    curl_slist_free_all(hdrs);
    pool_put(c, h);
    return 0;
}

/* ---- classification and the retry loop ------------------------------------ */

static bool curl_retryable(CURLcode cc, const s3_req *q)
{
    if (q->overflow)
        return false;
    switch (cc) {
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_URL_MALFORMAT:
    case CURLE_NOT_BUILT_IN:
    case CURLE_OUT_OF_MEMORY:
    case CURLE_BAD_FUNCTION_ARGUMENT:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CIPHER:
    case CURLE_LOGIN_DENIED:
    case CURLE_READ_ERROR:
    case CURLE_ABORTED_BY_CALLBACK:
    case CURLE_FILESIZE_EXCEEDED:
        return false;
    default:
        return true;
    }
}

static bool status_retryable(long st) { return st == 408 || st == 429 || (st >= 500 && st <= 599); }

/* A 200 answer carrying an <Error> (S3 may do this on CompleteMultipartUpload),
 * unless it is a result that lists per-item errors (DeleteObjects). */
static bool ok_with_error(const s3_req *q)
{
    if (q->status != 200 || q->body_len_resp == 0)
        return false;
    if (q->result_tag && memmem(q->body, q->body_len_resp, q->result_tag, strlen(q->result_tag)))
        return false;
    return memmem(q->body, q->body_len_resp, "<Error>", 7) != NULL;
}

static bool attempt_done(const s3_req *q)
{
    if (q->cc != CURLE_OK)
        return !curl_retryable(q->cc, q);
    if (q->final_501 && q->status == 501)
        return true;
    if (ok_with_error(q))
        return false;
    return !status_retryable(q->status);
}

static int http_error(const s3_client *c, const s3_req *q, int attempts)
{
    char code[S3_CODE_MAX], msg[160];
    s3_parse_error(q->body, q->body_len_resp, code, sizeof code, msg, sizeof msg);
    int rc = q->status == 404 ? WP_ENOENT
             : q->status == 412 ? WP_EEXIST
             : q->status == 413 ? WP_ETOOBIG
             : status_retryable(q->status) || ok_with_error(q) ? WP_EUNAVAILABLE
                                          : WP_EIO;
    return wp__err(rc, "s3: %s %s/%s%s%s: HTTP %ld %s%s%s%s (after %d attempt%s)", q->method,
                   c->bucket, q->key, *q->query ? "?" : "", *q->query ? q->query : "", q->status,
                   *code ? code : "(no error code)", *msg ? " \"" : "", msg, *msg ? "\"" : "",
                   attempts, attempts == 1 ? "" : "s");
}

static int transport_error(const s3_client *c, const s3_req *q, int attempts)
{
    int rc = q->overflow ? WP_ETOOBIG
             : q->cc == CURLE_OPERATION_TIMEDOUT ? WP_ETIMEDOUT
             : curl_retryable(q->cc, q) ? WP_EUNAVAILABLE
                                        : WP_EIO;
    return wp__err(rc, "s3: %s %s/%s: %s%s (curl %d, after %d attempt%s)", q->method, c->bucket,
                   q->key, q->overflow ? "answer too large: " : "", curl_easy_strerror(q->cc),
                   (int)q->cc, attempts, attempts == 1 ? "" : "s");
}

/* The latency histogram of a request (metrics). */
static wp__hist_id req_hist(const s3_req *q)
{
    if (strcmp(q->method, "PUT") == 0)
        return H_S3_PUT;
    if (strcmp(q->method, "GET") == 0)
        return q->key[0] ? H_S3_GET : H_S3_LIST; /* the bucket: a listing */
    if (strcmp(q->method, "DELETE") == 0)
        return H_S3_DELETE;
    return H_S3_OTHER;
}

static int s3_exec_once(s3_client *c, s3_req *q);

/* Runs the request with retries. 0 for a 2xx answer (q holds it), else a
 * WP_E* code with detail; q->status/q->body describe the last answer. */
static int s3_exec(s3_client *c, s3_req *q)
{
    int64_t t0 = wp__now_ns();
    int rc = s3_exec_once(c, q);
    wp__hist_observe(req_hist(q), wp__now_ns() - t0);
    return rc;
}

static int s3_exec_once(s3_client *c, s3_req *q)
{
    char url[S3_URL_MAX];
    int rc = build_url(c, q, url, sizeof url);
    if (rc)
        return rc;
    atomic_fetch_add(&c->n_requests, 1);
    q->attempt_timeout_ms = c->timeout_ms + (int64_t)(q->body_len / 1024) +
                            (int64_t)(q->sink_cap / 1024);
    q->maybe_applied = false;
    int k;
    for (k = 0;; k++) {
        rc = attempt_once(c, q, url, k);
        if (rc)
            return rc;
        if (attempt_done(q) || k >= c->max_retries)
            break;
        q->maybe_applied = true;
        int64_t d = s3_backoff_ms(k + 1, c->base_ms, c->cap_ms);
        wp__log(c->logger, WP_LOG_WARN, "s3: %s %s/%s: %s %ld, retry %d/%d in %" PRId64 " ms",
                q->method, c->bucket, q->key, q->cc ? curl_easy_strerror(q->cc) : "HTTP",
                q->cc ? 0L : q->status, k + 1, c->max_retries, d);
        atomic_fetch_add(&c->n_retries, 1);
        wp__metric_inc(M_S3_RETRIES);
        sleep_ms(d);
    }
    if (q->cc != CURLE_OK)
        return transport_error(c, q, k + 1);
    if (q->status < 200 || q->status > 299 || ok_with_error(q))
        return http_error(c, q, k + 1);
    return 0;
}

static void req_free(s3_req *q) { free(q->body); }

/* ---- objects -------------------------------------------------------------- */

static int check_key(const char *key)
{
    size_t n = key ? strlen(key) : 0;
    if (n == 0 || n > S3_KEY_MAX)
        return wp__err(WP_EINVAL, "s3: bad key length %zu", n);
    return 0;
}

static int iov_total(const struct iovec *iov, int iovcnt, uint64_t *total)
{
    if (iovcnt < 0 || (iovcnt > 0 && !iov))
        return wp__err(WP_EINVAL, "s3: bad iovec");
    *total = 0;
    for (int i = 0; i < iovcnt; i++) {
        if (iov[i].iov_len > (uint64_t)S3_OBJECT_BYTES_MAX - *total)
            return wp__err(WP_ETOOBIG, "s3: body above %lld bytes", S3_OBJECT_BYTES_MAX);
        *total += iov[i].iov_len;
    }
    return 0;
}

/* After a 412 on a retried conditional PUT: is the object there ours? If
 * so, *info (may be NULL) receives what the HEAD found. */
static bool own_object(s3_client *c, const char *key, uint64_t len, const unsigned char md5[16],
                       s3_obj_info *info)
{
    s3_obj_info found;
    char hex[33];
    if (s3_head(c, key, &found) != 0)
        return false;
    hex_encode(md5, 16, hex);
    if (found.size != len || strcasecmp(found.etag, hex) != 0)
        return false;
    if (info)
        *info = found;
    return true;
}

/* The header line "If-Match: v"; WP_EINVAL if v is empty, longer than a
 * quoted ETag or holds bytes a header cannot carry. */
static int if_match_line(const char *v, char *line, size_t cap)
{
    size_t n = strlen(v);
    bool ok = n > 0 && n <= S3_ETAG_MAX + 1;
    for (size_t i = 0; ok && i < n; i++)
        ok = (unsigned char)v[i] >= 0x20 && v[i] != 0x7f;
    if (!ok)
        return wp__err(WP_EINVAL, "s3: bad If-Match value (empty, over %d bytes or control bytes)",
                       S3_ETAG_MAX + 1);
    snprintf(line, cap, "If-Match: %s", v);
    return 0;
}

/* Settles a failed conditional PUT: a 412 after a possibly applied earlier
 * attempt is 0 if the object is ours; a failed If-Match (412, or the 404
 * AWS answers for a missing key) is WP_ECONFLICT. Else rc unchanged. */
static int put_settle(s3_client *c, const s3_req *q, const char *key, const char *if_match,
                      uint64_t len, const unsigned char md5[16], int rc, s3_obj_info *out)
{
    bool failed = rc == WP_EEXIST && q->status == 412;
    bool missing = if_match && rc == WP_ENOENT && q->status == 404;
    if (!failed && !missing)
        return rc;
    char detail[WP_ERRMSG_MAX];
    snprintf(detail, sizeof detail, "%s", wp_errmsg());
    if (failed && q->maybe_applied && own_object(c, key, len, md5, out)) {
        atomic_fetch_add(&c->n_own, 1);
        wp__err_clear();
        return 0; /* an earlier attempt wrote it */
    }
    if (if_match)
        return wp__err(WP_ECONFLICT, "%s; If-Match: %s", detail, if_match);
    return wp__err(WP_EEXIST, "%s", detail);
}

int s3_put_ex(s3_client *c, const char *key, const struct iovec *iov, int iovcnt,
              const s3_put_opts *o, s3_obj_info *out)
{
    static const s3_put_opts none = {0};
    char sha[65], md5b64[32], hmd5[64], hmatch[S3_ETAG_MAX + 16];
    unsigned char md5[16];
    uint64_t len = 0;
    if (out)
        memset(out, 0, sizeof *out);
    if (!o)
        o = &none;
    int rc = check_key(key);
    if (!rc && o->if_match && (o->flags & S3_PUT_IF_ABSENT))
        rc = wp__err(WP_EINVAL, "s3: PUT %s: If-Match and If-None-Match together", key);
    if (!rc && o->if_match)
        rc = if_match_line(o->if_match, hmatch, sizeof hmatch);
    if (!rc)
        rc = iov_total(iov, iovcnt, &len);
    if (!rc)
        rc = hash_iov(iov, iovcnt, sha, md5);
    if (rc)
        return rc;
    EVP_EncodeBlock((unsigned char *)md5b64, md5, 16);
    snprintf(hmd5, sizeof hmd5, "Content-MD5: %s", md5b64);
    s3_req q = {.method = "PUT", .key = key, .query = "", .iov = iov, .iovcnt = iovcnt,
                .body_len = len, .sha256_hex = sha, .hdr = {hmd5}, .n_hdr = 1};
    if (o->flags & S3_PUT_IF_ABSENT)
        q.hdr[q.n_hdr++] = "If-None-Match: *";
    if (o->if_match)
        q.hdr[q.n_hdr++] = hmatch;
    rc = s3_exec(c, &q);
    if (rc == 0 && out) {
        out->size = len;
        memcpy(out->etag, q.etag, sizeof out->etag);
    } else if (rc) {
        rc = put_settle(c, &q, key, o->if_match, len, md5, rc, out);
    }
    if (rc == 0) {
        atomic_fetch_add(&c->n_puts, 1);
        atomic_fetch_add(&c->n_put_bytes, len);
    }
    req_free(&q);
    return rc;
}

int s3_put(s3_client *c, const char *key, const struct iovec *iov, int iovcnt, unsigned flags)
{
    s3_put_opts o = {.flags = flags};
    return s3_put_ex(c, key, iov, iovcnt, &o, NULL);
}

int s3_head(s3_client *c, const char *key, s3_obj_info *out)
{
    memset(out, 0, sizeof *out);
    int rc = check_key(key);
    if (rc)
        return rc;
    s3_req q = {.method = "HEAD", .key = key, .query = ""};
    rc = s3_exec(c, &q);
    if (rc == 0 && !q.has_length)
        rc = wp__err(WP_EIO, "s3: HEAD %s/%s: answer without Content-Length", c->bucket, key);
    if (rc == 0) {
        out->size = q.content_length;
        memcpy(out->etag, q.etag, sizeof out->etag);
    }
    req_free(&q);
    return rc;
}

/* Checks a 2xx answer to a ranged GET of [off, off+len). */
static int get_check(const s3_client *c, const s3_req *q, const char *key, uint64_t off, size_t len,
                     uint64_t *total)
{
    if (q->status == 206) {
        if (!q->has_range || q->range_start != off)
            return wp__err(WP_EIO, "s3: GET %s/%s: 206 answer without a matching Content-Range",
                           c->bucket, key);
        *total = q->range_total;
    } else {
        if (!q->has_length)
            return wp__err(WP_EIO, "s3: GET %s/%s: answer without Content-Length", c->bucket, key);
        *total = q->content_length; /* the server ignored Range: whole object */
    }
    uint64_t want = *total > off ? *total - off : 0;
    if (want > len)
        want = len;
    if (q->sink_len != want)
        return wp__err(WP_EIO, "s3: GET %s/%s: got %zu bytes at %" PRIu64 ", expected %" PRIu64,
                       c->bucket, key, q->sink_len, off, want);
    return 0;
}

/* The ranged GET of s3_get_ex (len > 0): *found gets size and ETag;
 * *past_end is set for a 416 (off at or past the end). */
static int get_range(s3_client *c, const char *key, uint64_t off, void *buf, size_t len,
                     size_t *got, s3_obj_info *found, bool *past_end)
{
    char range[80];
    snprintf(range, sizeof range, "Range: bytes=%" PRIu64 "-%" PRIu64, off, off + len - 1);
    s3_req q = {.method = "GET", .key = key, .query = "", .hdr = {range}, .n_hdr = 1,
                .sink = buf, .sink_cap = len, .skip = off};
    int rc = s3_exec(c, &q);
    *past_end = rc == WP_EIO && q.status == 416;
    if (*past_end) {
        wp__err_clear();
        rc = 0;
        found->size = q.has_range ? q.range_total : 0;
    } else if (rc == 0) {
        rc = get_check(c, &q, key, off, len, &found->size);
        *got = rc ? 0 : q.sink_len;
    }
    memcpy(found->etag, q.etag, sizeof found->etag);
    req_free(&q);
    return rc;
}

/* s3_get_ex; with fill, a 416 without ETag (RGW's has neither ETag nor
 * Content-Range) is completed by a HEAD if that shows an object that still
 * ends at or before off (else it changed in between, or the HEAD failed:
 * the ETag stays ""). */
static int get_object(s3_client *c, const char *key, uint64_t off, void *buf, size_t len,
                      size_t *got, s3_obj_info *info, bool fill)
{
    s3_obj_info found = {0}, now;
    bool past_end = false;
    *got = 0;
    if (info)
        memset(info, 0, sizeof *info);
    int rc = check_key(key);
    if (rc)
        return rc;
    if (len == 0)
        rc = s3_head(c, key, &found);
    else
        rc = get_range(c, key, off, buf, len, got, &found, &past_end);
    if (rc == 0 && past_end && fill && !found.etag[0]) {
        if (s3_head(c, key, &now) == 0 && now.size <= off)
            found = now;
        wp__err_clear(); /* the read itself succeeded */
    }
    if (rc == 0 && info)
        *info = found;
    if (rc == 0)
        atomic_fetch_add(&c->n_gets, 1);
    return rc;
}

int s3_get_ex(s3_client *c, const char *key, uint64_t off, void *buf, size_t len, size_t *got,
              s3_obj_info *info)
{
    return get_object(c, key, off, buf, len, got, info, info != NULL);
}

int s3_get(s3_client *c, const char *key, uint64_t off, void *buf, size_t len, size_t *got,
           uint64_t *obj_size)
{
    s3_obj_info info;
    int rc = get_object(c, key, off, buf, len, got, obj_size ? &info : NULL, false);
    if (rc == 0 && obj_size)
        *obj_size = info.size;
    return rc;
}

int s3_delete(s3_client *c, const char *key)
{
    int rc = check_key(key);
    if (rc)
        return rc;
    s3_req q = {.method = "DELETE", .key = key, .query = ""};
    rc = s3_exec(c, &q);
    if (rc == WP_ENOENT) {
        wp__err_clear();
        rc = 0;
    }
    if (rc == 0)
        atomic_fetch_add(&c->n_deletes, 1);
    req_free(&q);
    return rc;
}

/* ---- batch delete (DeleteObjects) ----------------------------------------- */

/* True if XML 1.0 can carry key as text: valid UTF-8 (no surrogates, no
 * U+FFFE/FFFF) without control bytes other than tab, LF and CR (which are
 * sent as character references, so no parser normalizes them). */
static bool xml_key_ok(const char *key)
{
    static const uint32_t min_cp[] = {0, 0x80, 0x800, 0x10000};
    for (const unsigned char *p = (const unsigned char *)key; *p;) {
        if (*p < 0x80) {
            if (*p < 0x20 && *p != '\t' && *p != '\n' && *p != '\r')
                return false;
            p++;
            continue;
        }
        int n = (*p & 0xE0) == 0xC0 ? 1 : (*p & 0xF0) == 0xE0 ? 2 : (*p & 0xF8) == 0xF0 ? 3 : 0;
        if (n == 0)
            return false;
        uint32_t cp = *p & (0x3Fu >> n);
        for (int i = 1; i <= n; i++) {
            if ((p[i] & 0xC0) != 0x80) /* also stops at the NUL */
                return false;
            cp = cp << 6 | (p[i] & 0x3Fu);
        }
        if (cp < min_cp[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF) || cp == 0xFFFE ||
            cp == 0xFFFF)
            return false;
        p += n + 1;
    }
    return true;
}

/* Adds the XML text form of s at b + *o (b NULL: only counts). */
static void xml_escape(const char *s, char *b, size_t *o)
{
    for (; *s; s++) {
        const char *e = *s == '&'    ? "&amp;"
                        : *s == '<'  ? "&lt;"
                        : *s == '>'  ? "&gt;"
                        : *s == '"'  ? "&quot;"
                        : *s == '\'' ? "&apos;"
                        : *s == '\t' ? "&#9;"
                        : *s == '\n' ? "&#10;"
                        : *s == '\r' ? "&#13;"
                                     : NULL;
        size_t n = e ? strlen(e) : 1;
        if (b)
            memcpy(b + *o, e ? e : s, n);
        *o += n;
    }
}

/* The quiet <Delete> body naming the keys XML can carry (*n_sent of them);
 * NULL if out of memory. */
static char *delete_body(const char *const *keys, size_t n, size_t *len, size_t *n_sent)
{
    static const char head[] = "<Delete><Quiet>true</Quiet>", tail[] = "</Delete>";
    static const char open[] = "<Object><Key>", close[] = "</Key></Object>";
    size_t o = sizeof head - 1 + sizeof tail - 1;
    *n_sent = 0;
    for (size_t i = 0; i < n; i++)
        if (xml_key_ok(keys[i])) {
            o += sizeof open - 1 + sizeof close - 1;
            xml_escape(keys[i], NULL, &o);
        }
    char *b = malloc(o + 1);
    if (!b)
        return NULL;
    memcpy(b, head, sizeof head - 1);
    o = sizeof head - 1;
    for (size_t i = 0; i < n; i++) {
        if (!xml_key_ok(keys[i]))
            continue;
        memcpy(b + o, open, sizeof open - 1);
        o += sizeof open - 1;
        xml_escape(keys[i], b, &o);
        memcpy(b + o, close, sizeof close - 1);
        o += sizeof close - 1;
        ++*n_sent;
    }
    memcpy(b + o, tail, sizeof tail);
    *len = o + sizeof tail - 1;
    return b;
}

/* Checks a <DeleteResult> answer: 0 if it lists no <Error> but NoSuchKey,
 * else WP_EIO naming the first failed key with its Code and Message. */
static int delete_result(const s3_client *c, const char *xml, size_t len)
{
    const char *end = xml + len, *r = memmem(xml, len, "<DeleteResult", 13), *gt, *blk, *v;
    size_t bn, vn;
    if (!r || r + 13 >= end || !(r[13] == '>' || r[13] == '/' || isspace((unsigned char)r[13])) ||
        !(gt = memchr(r, '>', (size_t)(end - r))) ||
        (gt[-1] != '/' && !memmem(gt, (size_t)(end - gt), "</DeleteResult>", 15)))
        return wp__err(WP_EIO, "s3: POST %s?delete: answer is not a complete <DeleteResult>",
                       c->bucket);
    for (const char *p = gt + 1; (p = xml_elem(p, end, "Error", &blk, &bn)) != NULL;) {
        char code[S3_CODE_MAX], msg[160], key[S3_KEY_MAX + 1];
        s3_parse_error(blk - 7, bn + 7, code, sizeof code, msg, sizeof msg); /* from "<Error>" */
        if (strcmp(code, "NoSuchKey") == 0)
            continue; /* already gone: deleted */
        if (!xml_elem(blk, blk + bn, "Key", &v, &vn) || !xml_text(v, vn, key, sizeof key))
            snprintf(key, sizeof key, "(no valid <Key>)");
        return wp__err(WP_EIO, "s3: POST %s?delete: key %.300s: %s%s%s%s", c->bucket, key,
                       *code ? code : "(no error code)", *msg ? " \"" : "", msg, *msg ? "\"" : "");
    }
    return 0;
}

/* Sends one DeleteObjects request; *unsupported is set (and 0 returned) if
 * the server answers 501 or 405. */
static int delete_post(s3_client *c, char *body, size_t len, size_t n_keys, bool *unsupported)
{
    char sha[65], md5b64[32], hmd5[64];
    unsigned char md5[16];
    struct iovec v = {body, len};
    *unsupported = false;
    int rc = hash_iov(&v, 1, sha, md5);
    if (rc)
        return rc;
    EVP_EncodeBlock((unsigned char *)md5b64, md5, 16);
    snprintf(hmd5, sizeof hmd5, "Content-MD5: %s", md5b64);
    s3_req q = {.method = "POST", .key = "", .query = "delete=", .iov = &v, .iovcnt = 1,
                .body_len = len, .sha256_hex = sha, .hdr = {hmd5, "Content-Type: application/xml"},
                .n_hdr = 2, .result_tag = "<DeleteResult", .final_501 = true};
    atomic_fetch_add(&c->n_batch_deletes, 1);
    rc = s3_exec(c, &q);
    if (rc && q.cc == CURLE_OK && (q.status == 501 || q.status == 405)) {
        wp__log(c->logger, WP_LOG_WARN, "s3: POST %s?delete: HTTP %ld: deleting %zu keys one by one",
                c->bucket, q.status, n_keys);
        wp__err_clear();
        *unsupported = true;
        rc = 0;
    } else if (rc == 0) {
        rc = delete_result(c, q.body ? q.body : "", q.body_len_resp);
        if (rc == 0)
            atomic_fetch_add(&c->n_deletes, n_keys);
    }
    req_free(&q);
    return rc;
}

/* Deletes keys[0..n) (n <= S3_DELETE_KEYS_MAX): one DeleteObjects request,
 * then single DELETEs for the keys it could not name (or all of them if
 * the server lacks DeleteObjects). */
static int delete_batch(s3_client *c, const char *const *keys, size_t n)
{
    size_t len = 0, sent;
    bool unsupported = false;
    char *body = delete_body(keys, n, &len, &sent);
    if (!body)
        return wp__err(WP_ENOMEM, "s3: DeleteObjects body");
    int rc = sent > 0 ? delete_post(c, body, len, sent, &unsupported) : 0;
    free(body);
    for (size_t i = 0; rc == 0 && i < n; i++)
        if (unsupported || !xml_key_ok(keys[i]))
            rc = s3_delete(c, keys[i]);
    return rc;
}

int s3_delete_many(s3_client *c, const char *const *keys, size_t n)
{
    if (n > 0 && !keys)
        return wp__err(WP_EINVAL, "s3: delete of %zu keys without keys", n);
    for (size_t i = 0; i < n; i++) {
        size_t l = keys[i] ? strlen(keys[i]) : 0;
        if (l == 0 || l > S3_KEY_MAX)
            return wp__err(WP_EINVAL, "s3: delete: key %zu of %zu has bad length %zu", i, n, l);
    }
    for (size_t at = 0; at < n; at += S3_DELETE_KEYS_MAX) {
        size_t m = n - at < S3_DELETE_KEYS_MAX ? n - at : S3_DELETE_KEYS_MAX;
        int rc = delete_batch(c, keys + at, m);
        if (rc)
            return rc;
    }
    return 0;
}

/* ---- listing -------------------------------------------------------------- */

/* Appends "&name=<encoded value>" (or without '&' first) to a query. */
static int query_add(char *q, size_t cap, const char *name, const char *value)
{
    char enc[3 * S3_KEY_MAX + 1];
    if (s3_uri_encode(value, false, enc, sizeof enc) < 0)
        return wp__err(WP_EINVAL, "s3: query value for %s too long", name);
    size_t l = strlen(q);
    int n = snprintf(q + l, cap - l, "%s%s=%s", l ? "&" : "", name, enc);
    if (n < 0 || (size_t)n >= cap - l)
        return wp__err(WP_EINVAL, "s3: query too long");
    return 0;
}

/* The ListObjectsV2 query, parameters in sorted order (SigV4 needs it). */
static int list_query(char *q, size_t cap, const char *prefix, const char *delimiter,
                      const char *start_after, const char *token, int max_keys)
{
    char mk[16];
    snprintf(mk, sizeof mk, "%d", max_keys);
    q[0] = '\0';
    int rc = 0;
    if (token && *token)
        rc = query_add(q, cap, "continuation-token", token);
    if (!rc && delimiter && *delimiter)
        rc = query_add(q, cap, "delimiter", delimiter);
    if (!rc)
        rc = query_add(q, cap, "list-type", "2");
    if (!rc)
        rc = query_add(q, cap, "max-keys", mk);
    if (!rc)
        rc = query_add(q, cap, "prefix", prefix ? prefix : "");
    if (!rc && start_after && *start_after)
        rc = query_add(q, cap, "start-after", start_after);
    return rc;
}

static int list_check_prefix(const s3_list_page *p, const char *prefix)
{
    size_t pl = strlen(prefix);
    for (size_t i = 0; i < p->n_items; i++)
        if (strncmp(p->items[i].key, prefix, pl) != 0)
            return wp__err(WP_EIO, "s3: list of %s returned key %.200s outside it", prefix,
                           p->items[i].key);
    for (size_t i = 0; i < p->n_prefixes; i++)
        if (strncmp(p->prefixes[i], prefix, pl) != 0)
            return wp__err(WP_EIO, "s3: list of %s returned prefix %.200s outside it", prefix,
                           p->prefixes[i]);
    return 0;
}

int s3_list(s3_client *c, const char *prefix, const char *delimiter, const char *start_after,
            const char *token, int max_keys, s3_list_page *out)
{
    memset(out, 0, sizeof *out);
    if (max_keys <= 0 || max_keys > S3_LIST_KEYS_MAX)
        max_keys = S3_LIST_KEYS_MAX;
    if (!prefix)
        prefix = "";
    char query[S3_QUERY_MAX];
    int rc = list_query(query, sizeof query, prefix, delimiter, start_after, token, max_keys);
    if (rc)
        return rc;
    s3_req q = {.method = "GET", .key = "", .query = query};
    rc = s3_exec(c, &q);
    if (rc == 0)
        rc = s3_parse_list(q.body ? q.body : "", q.body_len_resp, out);
    if (rc == 0)
        rc = list_check_prefix(out, prefix);
    if (rc == WP_EIO && q.status == 200)
        rc = wp__err(WP_EIO, "s3: list %s/%s: %s", c->bucket, prefix, wp_errmsg());
    req_free(&q);
    return rc;
}

int s3_list_all(s3_client *c, const char *prefix, const char *start_after, int max_keys,
                size_t max_items, s3_list_fn fn, void *arg)
{
    s3_list_page p = {0};
    char *token = NULL;
    size_t seen = 0;
    int rc;
    for (;;) {
        rc = s3_list(c, prefix, NULL, token ? NULL : start_after, token, max_keys, &p);
        for (size_t i = 0; rc == 0 && i < p.n_items; i++) {
            if (++seen > max_items)
                rc = wp__err(WP_ETOOBIG, "s3: more than %zu keys under %s", max_items, prefix);
            else
                rc = fn(arg, p.items[i].key, p.items[i].size);
        }
        if (rc || !p.truncated)
            break;
        if (token && strcmp(token, p.next_token) == 0) {
            rc = wp__err(WP_EIO, "s3: list of %s repeats its continuation token", prefix);
            break;
        }
        free(token);
        token = p.next_token;
        p.next_token = NULL;
        s3_list_page_free(&p);
    }
    s3_list_page_free(&p);
    free(token);
    return rc;
}

/* ---- multipart upload ------------------------------------------------------ */

static int upload_query(char *q, size_t cap, int part_no, const char *upload_id)
{
    q[0] = '\0';
    if (!upload_id || !*upload_id || strlen(upload_id) >= S3_UPLOAD_ID_MAX)
        return wp__err(WP_EINVAL, "s3: bad upload id");
    if (part_no > 0) {
        char pn[16];
        snprintf(pn, sizeof pn, "%d", part_no);
        int rc = query_add(q, cap, "partNumber", pn);
        if (rc)
            return rc;
    }
    return query_add(q, cap, "uploadId", upload_id);
}

int s3_mpu_create(s3_client *c, const char *key, char upload_id[S3_UPLOAD_ID_MAX])
{
    upload_id[0] = '\0';
    int rc = check_key(key);
    if (rc)
        return rc;
    s3_req q = {.method = "POST", .key = key, .query = "uploads=",
                .hdr = {"Content-Type: application/octet-stream"}, .n_hdr = 1};
    rc = s3_exec(c, &q);
    const char *v;
    size_t vn;
    if (rc == 0 && (!xml_elem(q.body, q.body + q.body_len_resp, "UploadId", &v, &vn) ||
                    !xml_text(v, vn, upload_id, S3_UPLOAD_ID_MAX) || !*upload_id))
        rc = wp__err(WP_EIO, "s3: POST %s/%s?uploads: answer without a valid <UploadId>", c->bucket, key);
    req_free(&q);
    return rc;
}

int s3_mpu_put_part(s3_client *c, const char *key, const char *upload_id, int part_no,
                    const struct iovec *iov, int iovcnt, char etag[S3_ETAG_MAX])
{
    etag[0] = '\0';
    char query[S3_QUERY_MAX], sha[65], md5b64[32], hmd5[64];
    unsigned char md5[16];
    uint64_t len = 0;
    int rc = check_key(key);
    if (!rc && (part_no < 1 || part_no > S3_PARTS_MAX))
        rc = wp__err(WP_EINVAL, "s3: part number %d out of 1..%d", part_no, S3_PARTS_MAX);
    if (!rc)
        rc = upload_query(query, sizeof query, part_no, upload_id);
    if (!rc)
        rc = iov_total(iov, iovcnt, &len);
    if (!rc)
        rc = hash_iov(iov, iovcnt, sha, md5);
    if (rc)
        return rc;
    EVP_EncodeBlock((unsigned char *)md5b64, md5, 16);
    snprintf(hmd5, sizeof hmd5, "Content-MD5: %s", md5b64);
    s3_req q = {.method = "PUT", .key = key, .query = query, .iov = iov, .iovcnt = iovcnt,
                .body_len = len, .sha256_hex = sha, .hdr = {hmd5}, .n_hdr = 1};
    rc = s3_exec(c, &q);
    if (rc == 0 && !q.etag[0])
        rc = wp__err(WP_EIO, "s3: part %d of %s/%s: answer without ETag", part_no, c->bucket, key);
    if (rc == 0) {
        memcpy(etag, q.etag, S3_ETAG_MAX);
        atomic_fetch_add(&c->n_puts, 1);
        atomic_fetch_add(&c->n_put_bytes, len);
    }
    req_free(&q);
    return rc;
}

/* <CompleteMultipartUpload> with every part's number and ETag. */
static char *complete_body(const char (*etags)[S3_ETAG_MAX], int n, size_t *len)
{
    size_t cap = 64 + (size_t)n * (S3_ETAG_MAX + 64), o = 0;
    char *b = malloc(cap);
    if (!b)
        return NULL;
    o += (size_t)snprintf(b, cap, "<CompleteMultipartUpload>");
    for (int i = 0; i < n; i++)
        o += (size_t)snprintf(b + o, cap - o,
                              "<Part><PartNumber>%d</PartNumber><ETag>\"%s\"</ETag></Part>", i + 1,
                              etags[i]);
    o += (size_t)snprintf(b + o, cap - o, "</CompleteMultipartUpload>");
    *len = o;
    return b;
}

int s3_mpu_complete(s3_client *c, const char *key, const char *upload_id,
                    const char (*etags)[S3_ETAG_MAX], int n_parts)
{
    char query[S3_QUERY_MAX], sha[65];
    unsigned char md5[16];
    int rc = check_key(key);
    if (!rc && (n_parts < 1 || n_parts > S3_PARTS_MAX))
        rc = wp__err(WP_EINVAL, "s3: %d parts", n_parts);
    for (int i = 0; !rc && i < n_parts; i++)
        if (strpbrk(etags[i], "<>&\"") || !memchr(etags[i], '\0', S3_ETAG_MAX))
            rc = wp__err(WP_EINVAL, "s3: bad ETag for part %d", i + 1);
    if (!rc)
        rc = upload_query(query, sizeof query, 0, upload_id);
    if (rc)
        return rc;
    size_t len;
    char *body = complete_body(etags, n_parts, &len);
    if (!body)
        return wp__err(WP_ENOMEM, "s3: complete body");
    struct iovec v = {body, len};
    rc = hash_iov(&v, 1, sha, md5);
    s3_req q = {.method = "POST", .key = key, .query = query, .iov = &v, .iovcnt = 1,
                .body_len = len, .sha256_hex = sha,
                .hdr = {"Content-Type: application/xml"}, .n_hdr = 1};
    if (!rc)
        rc = s3_exec(c, &q);
    /* A retried completion whose first try went through: the upload is gone. */
    if (rc == WP_ENOENT && q.maybe_applied) {
        s3_obj_info info;
        if (s3_head(c, key, &info) == 0)
            rc = 0;
    }
    req_free(&q);
    free(body);
    return rc;
}

int s3_mpu_abort(s3_client *c, const char *key, const char *upload_id)
{
    char query[S3_QUERY_MAX];
    int rc = check_key(key);
    if (!rc)
        rc = upload_query(query, sizeof query, 0, upload_id);
    if (rc)
        return rc;
    s3_req q = {.method = "DELETE", .key = key, .query = query};
    rc = s3_exec(c, &q);
    if (rc == WP_ENOENT) {
        wp__err_clear();
        rc = 0;
    }
    req_free(&q);
    return rc;
}

int s3_put_multipart(s3_client *c, const char *key, const void *buf, size_t len, size_t part_bytes)
{
    if (part_bytes < S3_PART_BYTES_MIN || part_bytes > (size_t)S3_OBJECT_BYTES_MAX)
        return wp__err(WP_EINVAL, "s3: part size %zu out of range", part_bytes);
    size_t n = len ? (len + part_bytes - 1) / part_bytes : 1;
    if (n > S3_PARTS_MAX)
        return wp__err(WP_ETOOBIG, "s3: %zu bytes need more than %d parts", len, S3_PARTS_MAX);
    char(*etags)[S3_ETAG_MAX] = calloc(n, sizeof *etags);
    char upload_id[S3_UPLOAD_ID_MAX];
    if (!etags)
        return wp__err(WP_ENOMEM, "s3: part list");
    int rc = s3_mpu_create(c, key, upload_id);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        size_t off = i * part_bytes, l = len - off < part_bytes ? len - off : part_bytes;
        struct iovec v = {(char *)buf + off, l};
        rc = s3_mpu_put_part(c, key, upload_id, (int)i + 1, &v, 1, etags[i]);
    }
    if (rc == 0)
        rc = s3_mpu_complete(c, key, upload_id, (const char(*)[S3_ETAG_MAX])etags, (int)n);
    if (rc && upload_id[0]) {
        char detail[WP_ERRMSG_MAX];
        snprintf(detail, sizeof detail, "%s", wp_errmsg());
        (void)s3_mpu_abort(c, key, upload_id);
        wp__err(rc, "%s", detail);
    }
    free(etags);
    return rc;
}

/* ---- the client ------------------------------------------------------------ */

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static void curl_init_once(void) { curl_global_init(CURL_GLOBAL_ALL); }

/* Splits "http[s]://host[:port][/]" into scheme and host:port. */
static int parse_endpoint(s3_client *c, const char *ep)
{
    const char *hp;
    if (strncmp(ep, "http://", 7) == 0)
        c->scheme = strdup("http"), hp = ep + 7;
    else if (strncmp(ep, "https://", 8) == 0)
        c->scheme = strdup("https"), hp = ep + 8;
    else
        return wp__err(WP_EINVAL, "s3: endpoint must start with http:// or https://: %.200s", ep);
    size_t n = strlen(hp);
    while (n && hp[n - 1] == '/')
        n--;
    if (n == 0 || n >= S3_HOSTPORT_MAX || memchr(hp, '/', n) || memchr(hp, '?', n) ||
        memchr(hp, '@', n))
        return wp__err(WP_EINVAL, "s3: endpoint must be scheme://host[:port]: %.200s", ep);
    c->hostport = strndup(hp, n);
    return c->scheme && c->hostport ? 0 : wp__err(WP_ENOMEM, "s3: client");
}

static int check_bucket(const char *b)
{
    size_t n = b ? strlen(b) : 0;
    bool ok = n >= 3 && n <= 63;
    for (size_t i = 0; ok && i < n; i++)
        ok = islower((unsigned char)b[i]) || isdigit((unsigned char)b[i]) || b[i] == '-' || b[i] == '.';
    return ok ? 0 : wp__err(WP_EINVAL, "s3: bad bucket name '%.80s' (3..63 of [a-z0-9.-])", b ? b : "");
}

static int copy_options(s3_client *c, const s3_options *o)
{
    c->bucket = dupstr(o->bucket);
    c->region = dupstr(nz(o->region, "us-east-1"));
    c->access_key = dupstr(nz(o->access_key, getenv("AWS_ACCESS_KEY_ID")));
    c->secret_key = dupstr(nz(o->secret_key, getenv("AWS_SECRET_ACCESS_KEY")));
    c->token = dupstr(o->session_token ? o->session_token : getenv("AWS_SESSION_TOKEN"));
    c->ca_file = dupstr(o->ca_file);
    if (!c->bucket || !c->region || !c->access_key || !c->secret_key || !c->token || !c->ca_file)
        return wp__err(WP_ENOMEM, "s3: client");
    if (!*c->access_key || !*c->secret_key)
        return wp__err(WP_EINVAL, "s3: no credentials (set storage.s3.access_key/secret_key or "
                                  "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)");
    /* Both go into the Authorization header (SigV4 credential scope). */
    if (strpbrk(c->access_key, ":,/ \t\r\n") || strpbrk(c->region, ":,/ \t\r\n") ||
        strlen(c->region) > 40 || strlen(c->access_key) > S3_CRED_MAX ||
        strlen(c->secret_key) > S3_CRED_MAX)
        return wp__err(WP_EINVAL, "s3: bad access key, secret key or region");
    if (strlen(c->token) > S3_TOKEN_MAX || strpbrk(c->token, "\r\n"))
        return wp__err(WP_EINVAL, "s3: bad session token (over %d bytes or a line break)", S3_TOKEN_MAX);
    c->path_style = o->path_style;
    c->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : S3_TIMEOUT_MS_DEFAULT;
    c->max_retries = o->max_retries < 0 ? 0 : o->max_retries > S3_RETRIES_MAX ? S3_RETRIES_MAX : o->max_retries;
    c->base_ms = o->retry_base_ms > 0 ? o->retry_base_ms : S3_RETRY_BASE_MS_DEFAULT;
    c->cap_ms = o->retry_cap_ms > 0 ? o->retry_cap_ms : S3_RETRY_CAP_MS_DEFAULT;
    c->logger = o->logger;
    return 0;
}

int s3_client_open(const s3_options *o, s3_client **out)
{
    *out = NULL;
    if (!o || !o->endpoint)
        return wp__err(WP_EINVAL, "s3: no endpoint");
    int rc = check_bucket(o->bucket);
    if (rc)
        return rc;
    pthread_once(&curl_once, curl_init_once);
    s3_client *c = calloc(1, sizeof *c);
    if (!c)
        return wp__err(WP_ENOMEM, "s3: client");
    pthread_mutex_init(&c->mu, NULL);
    rc = parse_endpoint(c, o->endpoint);
    if (!rc)
        rc = copy_options(c, o);
    if (rc) {
        s3_client_close(c);
        return rc;
    }
    *out = c;
    return 0;
}

void s3_client_close(s3_client *c)
{
    if (!c)
        return;
    for (int i = 0; i < c->n_pool; i++)
        curl_easy_cleanup(c->pool[i]);
    pthread_mutex_destroy(&c->mu);
    free(c->scheme);
    free(c->hostport);
    free(c->bucket);
    free(c->region);
    free(c->access_key);
    free(c->secret_key);
    free(c->token);
    free(c->ca_file);
    free(c);
}

const char *s3_client_bucket(const s3_client *c) { return c->bucket; }

void s3_client_set_fault(s3_client *c, s3_fault_fn fn, void *arg)
{
    pthread_mutex_lock(&c->mu);
    c->fault = fn;
    c->fault_arg = arg;
    pthread_mutex_unlock(&c->mu);
}

void s3_client_stats(s3_client *c, s3_stats *out)
{
    out->requests = atomic_load(&c->n_requests);
    out->attempts = atomic_load(&c->n_attempts);
    out->retries = atomic_load(&c->n_retries);
    out->puts = atomic_load(&c->n_puts);
    out->put_bytes = atomic_load(&c->n_put_bytes);
    out->own_object_412 = atomic_load(&c->n_own);
    out->gets = atomic_load(&c->n_gets);
    out->deletes = atomic_load(&c->n_deletes);
    out->batch_deletes = atomic_load(&c->n_batch_deletes);
}
