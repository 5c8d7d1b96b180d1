/* test_objstore_client.c — unit tests of the S3 client (src/storage/s3_client.c)
 * without a real S3 server: a tiny HTTP server in a thread records every
 * request and answers from a queue of canned responses, or else as a small
 * in-memory object store (PUT with If-None-Match or If-Match, GET with
 * Range, HEAD, DELETE, POST ?delete checking Content-MD5). Covered: the
 * SigV4 request shape (the signature is recomputed here independently,
 * with the query canonicalized as a server does), XML parsing of list and
 * error bodies including malformed input, the retry policy with real
 * 5xx/4xx answers and injected resets and slow answers, retried
 * conditional PUTs (If-None-Match and If-Match) that find their own
 * object, ETags from PUT and GET, batch delete (splitting, escaping,
 * per-key errors, 501/405 fallback, retries), and that no request waits on
 * "Expect: 100-continue" (the server answers it like RGW, with Nagle on).
 * (Named without "_s3" so CTest does not start RGW for it.) */
#include "test.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <time.h>

#include "storage/s3_client.h"

#define AK "AKIDEXAMPLE"
#define SK "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
#define BUCKET "bkt"
#define REGION "eu-west-3"

/* ---- the fake server --------------------------------------------------------- */

#define REC_MAX 512
#define CANNED_MAX 64
#define OBJ_MAX 32
#define HDR_BYTES_MAX 16384

typedef struct {
    char method[16], path[2048], query[2048];
    char hdrs[HDR_BYTES_MAX]; /* "name: value\r\n" lines as received */
    unsigned char *body;
    size_t body_len;
} rec;

typedef struct {
    int status;
    const char *hdrs; /* extra header lines, each ending in \r\n */
    const char *body;
    size_t body_len;  /* 0: strlen(body) */
    size_t send_len;  /* if nonzero: send only this much of the body, then close */
} canned;

typedef struct {
    char key[256];
    unsigned char *data;
    size_t len;
} obj;

static struct {
    int lfd, port;
    pthread_t th;
    atomic_int stop;
    atomic_int accepts; /* connections accepted */
    atomic_int expects; /* requests with "Expect: 100-continue" */
    pthread_mutex_t mu;
    rec recs[REC_MAX];
    int n_recs;
    canned q[CANNED_MAX];
    int q_head, q_n;
    obj objs[OBJ_MAX];
} srv = {.mu = PTHREAD_MUTEX_INITIALIZER};

static void srv_push(int status, const char *hdrs, const char *body)
{
    pthread_mutex_lock(&srv.mu);
    srv.q[(srv.q_head + srv.q_n++) % CANNED_MAX] = (canned){status, hdrs, body, 0, 0};
    pthread_mutex_unlock(&srv.mu);
}

static void srv_push_c(canned c)
{
    pthread_mutex_lock(&srv.mu);
    srv.q[(srv.q_head + srv.q_n++) % CANNED_MAX] = c;
    pthread_mutex_unlock(&srv.mu);
}

static int srv_count(void)
{
    pthread_mutex_lock(&srv.mu);
    int n = srv.n_recs;
    pthread_mutex_unlock(&srv.mu);
    return n;
}

static void srv_reset(void)
{
    pthread_mutex_lock(&srv.mu);
    for (int i = 0; i < srv.n_recs; i++)
        free(srv.recs[i].body);
    srv.n_recs = 0;
    srv.q_n = 0;
    for (int i = 0; i < OBJ_MAX; i++) {
        free(srv.objs[i].data);
        memset(&srv.objs[i], 0, sizeof srv.objs[i]);
    }
    pthread_mutex_unlock(&srv.mu);
}

/* The value of header `name` in a header block (case-insensitive), or NULL. */
static const char *hdr_get(const char *hdrs, const char *name, char *out, size_t cap)
{
    size_t nl = strlen(name);
    for (const char *p = hdrs; *p;) {
        const char *e = strstr(p, "\r\n");
        if (!e)
            break;
        if ((size_t)(e - p) > nl && strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
            const char *v = p + nl + 1;
            while (*v == ' ')
                v++;
            snprintf(out, cap, "%.*s", (int)(e - v), v);
            return out;
        }
        p = e + 2;
    }
    return NULL;
}

static void md5_hex(const unsigned char *b, size_t n, char out[33])
{
    unsigned char d[16];
    unsigned int dl;
    EVP_Digest(b, n, d, &dl, EVP_md5(), NULL);
    for (int i = 0; i < 16; i++)
        sprintf(out + 2 * i, "%02x", d[i]);
}

static void send_all(int fd, const void *b, size_t n)
{
    const char *p = b;
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0)
            return;
        p += w;
        n -= (size_t)w;
    }
}

static void reply(int fd, int status, const char *hdrs, const void *body, size_t len, bool head)
{
    char h[1024];
    int n = snprintf(h, sizeof h, "HTTP/1.1 %d X\r\nContent-Length: %zu\r\n%s\r\n", status, len,
                     hdrs ? hdrs : "");
    send_all(fd, h, (size_t)n);
    if (!head && len)
        send_all(fd, body, len);
}

static obj *obj_find(const char *key)
{
    for (int i = 0; i < OBJ_MAX; i++)
        if (srv.objs[i].data && strcmp(srv.objs[i].key, key) == 0)
            return &srv.objs[i];
    return NULL;
}

static const char NO_SUCH_KEY[] = "<Error><Code>NoSuchKey</Code><Message>no such key</Message></Error>";
static const char PRECOND[] = "<Error><Code>PreconditionFailed</Code></Error>";

/* If-Match as AWS applies it: a missing key is 404, a mismatch 412; the
 * ETag may be given quoted or not. True if the PUT may go on. */
static bool store_if_match(int fd, const rec *r, const obj *o)
{
    char v[256], m[33], quoted[40];
    if (!hdr_get(r->hdrs, "If-Match", v, sizeof v))
        return true;
    if (!o) {
        reply(fd, 404, NULL, NO_SUCH_KEY, strlen(NO_SUCH_KEY), false);
        return false;
    }
    md5_hex(o->data, o->len, m);
    snprintf(quoted, sizeof quoted, "\"%s\"", m);
    if (strcmp(v, "*") == 0 || strcmp(v, m) == 0 || strcmp(v, quoted) == 0)
        return true;
    reply(fd, 412, NULL, PRECOND, strlen(PRECOND), false);
    return false;
}

static void store_put(int fd, const rec *r)
{
    char v[64], etag[64], m[33];
    obj *o = obj_find(r->path);
    if (o && hdr_get(r->hdrs, "If-None-Match", v, sizeof v)) {
        reply(fd, 412, NULL, PRECOND, strlen(PRECOND), false);
        return;
    }
    if (!store_if_match(fd, r, o))
        return;
    for (int i = 0; !o && i < OBJ_MAX; i++)
        if (!srv.objs[i].data)
            o = &srv.objs[i];
    if (!o)
        return;
    free(o->data);
    snprintf(o->key, sizeof o->key, "%.255s", r->path);
    o->data = malloc(r->body_len + 1);
    memcpy(o->data, r->body, r->body_len);
    o->len = r->body_len;
    md5_hex(o->data, o->len, m);
    snprintf(etag, sizeof etag, "ETag: \"%s\"\r\n", m);
    reply(fd, 200, etag, NULL, 0, false);
}

static void store_get(int fd, const rec *r, bool head)
{
    char v[128], h[256], m[33];
    obj *o = obj_find(r->path);
    if (!o) {
        reply(fd, 404, NULL, NO_SUCH_KEY, head ? 0 : strlen(NO_SUCH_KEY), head);
        return;
    }
    md5_hex(o->data, o->len, m);
    unsigned long long a, b;
    if (!head && hdr_get(r->hdrs, "Range", v, sizeof v) && sscanf(v, "bytes=%llu-%llu", &a, &b) == 2) {
        if (a >= o->len) {
            snprintf(h, sizeof h, "Content-Range: bytes */%zu\r\n", o->len);
            reply(fd, 416, h, NULL, 0, false);
            return;
        }
        if (b >= o->len)
            b = o->len - 1;
        snprintf(h, sizeof h, "Content-Range: bytes %llu-%llu/%zu\r\nETag: \"%s\"\r\n", a, b, o->len, m);
        reply(fd, 206, h, o->data + a, (size_t)(b - a + 1), false);
        return;
    }
    snprintf(h, sizeof h, "ETag: \"%s\"\r\n", m);
    char hl[512];
    int n = snprintf(hl, sizeof hl, "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n%s\r\n", o->len, h);
    send_all(fd, hl, (size_t)n);
    if (!head)
        send_all(fd, o->data, o->len);
}

static void store_delete(int fd, const rec *r)
{
    obj *o = obj_find(r->path);
    if (o) {
        free(o->data);
        memset(o, 0, sizeof *o);
    }
    reply(fd, 204, NULL, NULL, 0, false);
}

/* The request path of key in bucket BUCKET, as the client encodes it. */
static void key_path(const char *key, char *out, size_t cap)
{
    size_t o = (size_t)snprintf(out, cap, "/" BUCKET "/");
    for (const unsigned char *p = (const unsigned char *)key; *p && o + 4 < cap; p++)
        o += (size_t)(isalnum(*p) || strchr("-._~/", *p) ? sprintf(out + o, "%c", *p)
                                                         : sprintf(out + o, "%%%02X", *p));
}

/* Decodes the XML text [v, v+n) (the five entities and &#N;) into out. */
static void xml_unescape(const char *v, size_t n, char *out, size_t cap)
{
    static const char *const ent[][2] = {{"&amp;", "&"}, {"&lt;", "<"}, {"&gt;", ">"},
                                         {"&quot;", "\""}, {"&apos;", "'"}};
    size_t o = 0;
    for (size_t i = 0; i < n && o + 1 < cap;) {
        size_t k, l = 0;
        for (k = 0; k < 5; k++)
            if (strncmp(v + i, ent[k][0], strlen(ent[k][0])) == 0)
                break;
        if (k < 5) {
            out[o++] = ent[k][1][0];
            i += strlen(ent[k][0]);
        } else if (strncmp(v + i, "&#", 2) == 0 && sscanf(v + i, "&#%zu;", &l) == 1) {
            out[o++] = (char)l;
            i = (size_t)((const char *)memchr(v + i, ';', n - i) - v) + 1;
        } else {
            out[o++] = v[i++];
        }
    }
    out[o] = '\0';
}

static void md5_b64(const unsigned char *b, size_t n, char out[32])
{
    unsigned char d[16];
    unsigned int dl;
    EVP_Digest(b, n, d, &dl, EVP_md5(), NULL);
    EVP_EncodeBlock((unsigned char *)out, d, 16);
}

static const char DELETE_HEAD[] = "<Delete><Quiet>true</Quiet>";

/* DeleteObjects: Content-MD5 required and checked, at most 1000 keys;
 * keys under deny/ fail with AccessDenied, under gone/ with NoSuchKey (as
 * a server may report a missing key), the others are deleted. */
static void store_delete_many(int fd, const rec *r)
{
    static const char bad_md5[] = "<Error><Code>InvalidDigest</Code></Error>";
    char v[64], want[32], key[1200], path[4096];
    md5_b64(r->body, r->body_len, want);
    if (!hdr_get(r->hdrs, "Content-MD5", v, sizeof v) || strcmp(v, want) != 0 ||
        strncmp((char *)r->body, DELETE_HEAD, strlen(DELETE_HEAD)) != 0) {
        reply(fd, 400, NULL, bad_md5, strlen(bad_md5), false);
        return;
    }
    size_t cap = r->body_len * 4 + 4096, o = 0; /* an error entry < 4x its <Object> */
    char *res = malloc(cap);
    o += (size_t)sprintf(res, "<?xml version=\"1.0\"?><DeleteResult xmlns=\"x\">");
    int n = 0;
    for (const char *p = (char *)r->body; (p = strstr(p, "<Object><Key>")) != NULL; n++) {
        p += 13;
        const char *e = strstr(p, "</Key>");
        if (!e)
            break;
        xml_unescape(p, (size_t)(e - p), key, sizeof key);
        const char *code = strncmp(key, "deny/", 5) == 0   ? "AccessDenied"
                           : strncmp(key, "gone/", 5) == 0 ? "NoSuchKey"
                                                           : NULL;
        if (code) {
            o += (size_t)snprintf(res + o, cap - o, "<Error><Key>%.*s</Key><Code>%s</Code>"
                                  "<Message>%s</Message></Error>", (int)(e - p), p, code,
                                  code[0] == 'A' ? "Access Denied" : "no such key");
            continue;
        }
        key_path(key, path, sizeof path);
        obj *ob = obj_find(path);
        if (ob) {
            free(ob->data);
            memset(ob, 0, sizeof *ob);
        }
    }
    o += (size_t)snprintf(res + o, cap - o, "</DeleteResult>");
    if (n > 1000)
        reply(fd, 400, NULL, "<Error><Code>MalformedXML</Code></Error>", 40, false);
    else
        reply(fd, 200, "Content-Type: application/xml\r\n", res, o, false);
    free(res);
}

/* Answers one request; returns false to close the connection. */
static bool serve(int fd, const rec *r)
{
    pthread_mutex_lock(&srv.mu);
    bool head = strcmp(r->method, "HEAD") == 0, keep = true;
    if (srv.q_n > 0) {
        canned c = srv.q[srv.q_head];
        srv.q_head = (srv.q_head + 1) % CANNED_MAX;
        srv.q_n--;
        size_t len = c.body ? (c.body_len ? c.body_len : strlen(c.body)) : 0;
        if (c.send_len) {
            reply(fd, c.status, c.hdrs, c.body, len, true);
            send_all(fd, c.body, c.send_len);
            keep = false;
        } else {
            reply(fd, c.status, c.hdrs, c.body, len, head);
        }
    } else if (strcmp(r->method, "PUT") == 0) {
        store_put(fd, r);
    } else if (strcmp(r->method, "GET") == 0 || head) {
        store_get(fd, r, head);
    } else if (strcmp(r->method, "DELETE") == 0) {
        store_delete(fd, r);
    } else if (strcmp(r->method, "POST") == 0 && strcmp(r->query, "delete=") == 0) {
        store_delete_many(fd, r);
    } else {
        reply(fd, 501, NULL, NULL, 0, false);
    }
    pthread_mutex_unlock(&srv.mu);
    return keep;
}

/* Reads one request into r (headers bounded); false at EOF or error. */
static bool read_request(int fd, char *buf, size_t cap, size_t *have, rec *r)
{
    char *end;
    while (!(end = memmem(buf, *have, "\r\n\r\n", 4))) {
        if (*have >= cap)
            return false;
        ssize_t n = recv(fd, buf + *have, cap - *have, 0);
        if (n <= 0)
            return false;
        *have += (size_t)n;
    }
    *end = '\0';
    char target[4096];
    memset(r, 0, sizeof *r);
    if (sscanf(buf, "%15s %4095s", r->method, target) != 2)
        return false;
    char *qm = strchr(target, '?');
    if (qm)
        *qm = '\0';
    snprintf(r->path, sizeof r->path, "%.2047s", target);
    snprintf(r->query, sizeof r->query, "%.2047s", qm ? qm + 1 : "");
    char *h = strstr(buf, "\r\n");
    snprintf(r->hdrs, sizeof r->hdrs, "%s\r\n", h ? h + 2 : "");
    char v[32];
    if (hdr_get(r->hdrs, "Expect", v, sizeof v) && strcasecmp(v, "100-continue") == 0) {
        /* As a server does: the interim answer once the request is checked
         * (here after 2 ms), whether or not the body already came. */
        atomic_fetch_add(&srv.expects, 1);
        struct timespec ts = {0, 2000000};
        nanosleep(&ts, NULL);
        send_all(fd, "HTTP/1.1 100 Continue\r\n\r\n", 25);
    }
    size_t clen = hdr_get(r->hdrs, "Content-Length", v, sizeof v) ? strtoul(v, NULL, 10) : 0;
    size_t hlen = (size_t)(end + 4 - buf);
    r->body = malloc(clen + 1);
    size_t avail = *have - hlen, taken = avail < clen ? avail : clen, got = taken;
    memcpy(r->body, buf + hlen, taken);
    while (got < clen) {
        ssize_t n = recv(fd, r->body + got, clen - got, 0);
        if (n <= 0)
            return false;
        got += (size_t)n;
    }
    r->body[clen] = 0;
    r->body_len = clen;
    memmove(buf, buf + hlen + taken, avail - taken);
    *have = avail - taken;
    return true;
}

static void *conn_main(void *arg)
{
    int fd = (int)(intptr_t)arg;
    static _Thread_local char buf[HDR_BYTES_MAX * 2];
    size_t have = 0;
    rec r;
    while (read_request(fd, buf, sizeof buf, &have, &r)) {
        pthread_mutex_lock(&srv.mu);
        bool kept = srv.n_recs < REC_MAX;
        if (kept)
            srv.recs[srv.n_recs++] = r;
        pthread_mutex_unlock(&srv.mu);
        bool keep = serve(fd, &r);
        if (!kept)
            free(r.body);
        if (!keep)
            break;
    }
    close(fd);
    return NULL;
}

static void *srv_main(void *arg)
{
    (void)arg;
    while (!atomic_load(&srv.stop)) {
        struct pollfd p = {.fd = srv.lfd, .events = POLLIN};
        if (poll(&p, 1, 50) <= 0)
            continue;
        int fd = accept(srv.lfd, NULL, NULL);
        if (fd < 0)
            continue;
        atomic_fetch_add(&srv.accepts, 1);
        pthread_t t;
        if (pthread_create(&t, NULL, conn_main, (void *)(intptr_t)fd) == 0)
            pthread_detach(t);
        else
            close(fd);
    }
    return NULL;
}

static int srv_start(void)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    srv.lfd = socket(AF_INET, SOCK_STREAM, 0);
    if (srv.lfd < 0 || bind(srv.lfd, (struct sockaddr *)&a, sizeof a) != 0 || listen(srv.lfd, 16) != 0 ||
        getsockname(srv.lfd, (struct sockaddr *)&a, &al) != 0)
        return -1;
    srv.port = ntohs(a.sin_port);
    return pthread_create(&srv.th, NULL, srv_main, NULL) == 0 ? 0 : -1;
}

static void srv_stop(void)
{
    atomic_store(&srv.stop, 1);
    pthread_join(srv.th, NULL);
    close(srv.lfd);
    srv_reset();
}

/* Recorded request i (an empty one if there is none: a CHECK then fails). */
static rec *srv_rec(int i)
{
    static rec none;
    return i >= 0 && i < srv.n_recs ? &srv.recs[i] : &none;
}

/* ---- an independent SigV4 verifier -------------------------------------------- */

static void hexs(const unsigned char *b, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02x", b[i]);
}

static void sha256_hex(const void *b, size_t n, char out[65])
{
    unsigned char d[32];
    SHA256(b, n, d);
    hexs(d, 32, out);
}

static void hmac(const void *key, size_t kl, const char *msg, unsigned char out[32])
{
    unsigned int ol = 32;
    HMAC(EVP_sha256(), key, (int)kl, (const unsigned char *)msg, strlen(msg), out, &ol);
}

static int unhex(int c) { return c >= '0' && c <= '9' ? c - '0' : (c | 32) - 'a' + 10; }

/* Decodes %XX then encodes per AWS (unreserved kept), as a server does. */
static void aws_reencode(const char *in, size_t n, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)in[i];
        if (c == '%' && i + 2 < n + 1 && i + 2 <= n) {
            c = (unsigned char)(unhex(in[i + 1]) * 16 + unhex(in[i + 2]));
            i += 2;
        }
        if (isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~')
            out[o++] = (char)c;
        else
            o += (size_t)sprintf(out + o, "%%%02X", c);
    }
    out[o] = '\0';
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static void canonical_query(const char *q, char *out, size_t cap)
{
    char *parts[32], buf[2048];
    int n = 0;
    snprintf(buf, sizeof buf, "%s", q);
    for (char *save, *t = strtok_r(buf, "&", &save); t && n < 32; t = strtok_r(NULL, "&", &save)) {
        char *eq = strchr(t, '='), k[1024], v[3072];
        aws_reencode(t, eq ? (size_t)(eq - t) : strlen(t), k);
        aws_reencode(eq ? eq + 1 : "", eq ? strlen(eq + 1) : 0, v);
        parts[n] = malloc(strlen(k) + strlen(v) + 2);
        sprintf(parts[n++], "%s=%s", k, v);
    }
    qsort(parts, (size_t)n, sizeof parts[0], cmp_str);
    out[0] = '\0';
    for (int i = 0; i < n; i++) {
        snprintf(out + strlen(out), cap - strlen(out), "%s%s", i ? "&" : "", parts[i]);
        free(parts[i]);
    }
}

/* 1 if r carries a valid SigV4 signature for secret SK and region REGION. */
static int sigv4_check(const rec *r, const char *secret, bool quiet)
{
    char auth[1024], cred[256], signed_h[512], sig[80], date[32], hv[1024], cq[4096];
    if (!hdr_get(r->hdrs, "Authorization", auth, sizeof auth) ||
        !hdr_get(r->hdrs, "X-Amz-Date", date, sizeof date))
        return 0;
    if (sscanf(auth, "AWS4-HMAC-SHA256 Credential=%255[^,], SignedHeaders=%511[^,], Signature=%79s",
               cred, signed_h, sig) != 3)
        return 0;
    char *canon = malloc(65536), *sts = malloc(4096);
    canonical_query(r->query, cq, sizeof cq);
    int o = sprintf(canon, "%s\n%s\n%s\n", r->method, r->path, cq);
    char names[512];
    snprintf(names, sizeof names, "%s", signed_h);
    for (char *save, *t = strtok_r(names, ";", &save); t; t = strtok_r(NULL, ";", &save))
        o += sprintf(canon + o, "%s:%s\n", t, hdr_get(r->hdrs, t, hv, sizeof hv) ? hv : "");
    o += sprintf(canon + o, "\n%s\n%s", signed_h,
                 hdr_get(r->hdrs, "x-amz-content-sha256", hv, sizeof hv) ? hv : "");
    char ch[65], scope[128];
    sha256_hex(canon, (size_t)o, ch);
    snprintf(scope, sizeof scope, "%.8s/%s/s3/aws4_request", date, REGION);
    sprintf(sts, "AWS4-HMAC-SHA256\n%s\n%s\n%s", date, scope, ch);
    unsigned char k1[32], k2[32], k3[32], k4[32], s[32];
    char ks[128], d8[9], want[65];
    snprintf(ks, sizeof ks, "AWS4%s", secret);
    snprintf(d8, sizeof d8, "%.8s", date);
    hmac(ks, strlen(ks), d8, k1);
    hmac(k1, 32, REGION, k2);
    hmac(k2, 32, "s3", k3);
    hmac(k3, 32, "aws4_request", k4);
    hmac(k4, 32, sts, s);
    hexs(s, 32, want);
    int ok = strcmp(want, sig) == 0 && strncmp(cred, AK "/", strlen(AK) + 1) == 0 &&
             strstr(cred, scope) != NULL;
    if (!ok && !quiet)
        fprintf(stderr, "  signature mismatch; canonical request:\n%s\n", canon);
    free(canon);
    free(sts);
    return ok;
}

static int sigv4_valid(const rec *r, const char *secret) { return sigv4_check(r, secret, false); }

/* ---- clients -------------------------------------------------------------------- */

static s3_client *client(bool path_style, int max_retries, int64_t timeout_ms)
{
    char ep[64];
    snprintf(ep, sizeof ep, "http://%s:%d", path_style ? "127.0.0.1" : "localhost", srv.port);
    s3_options o = {.endpoint = ep, .bucket = BUCKET, .region = REGION, .access_key = AK,
                    .secret_key = SK, .session_token = "", .path_style = path_style,
                    .timeout_ms = timeout_ms, .max_retries = max_retries, .retry_base_ms = 1,
                    .retry_cap_ms = 5};
    s3_client *c = NULL;
    if (s3_client_open(&o, &c) != 0)
        fprintf(stderr, "  s3_client_open: %s\n", wp_errmsg());
    return c;
}

static int put_str(s3_client *c, const char *key, const char *s, unsigned flags)
{
    struct iovec v = {(void *)s, strlen(s)};
    return s3_put(c, key, &v, 1, flags);
}

/* ---- pure helpers ------------------------------------------------------------------ */

TEST(uri_encode)
{
    char out[64];
    CHECK(s3_uri_encode("a b/c+~-_.", true, out, sizeof out) == 14);
    CHECK(strcmp(out, "a%20b/c%2B~-_.") == 0);
    CHECK(s3_uri_encode("a/b=c&", false, out, sizeof out) > 0 && strcmp(out, "a%2Fb%3Dc%26") == 0);
    CHECK(s3_uri_encode("\xc3\xa9", false, out, sizeof out) > 0 && strcmp(out, "%C3%A9") == 0);
    CHECK(s3_uri_encode("abc", false, out, 3) == -1); /* no room for the NUL */
    CHECK(s3_uri_encode("a b", false, out, 5) == -1);
    CHECK(s3_uri_encode("", false, out, 1) == 0 && out[0] == '\0');
}

TEST(backoff_bounds)
{
    for (int k = 1; k <= 12; k++) {
        int64_t ceil_ms = 50LL << (k - 1);
        if (ceil_ms > 2000)
            ceil_ms = 2000;
        int64_t mx = 0, mn = INT64_MAX;
        for (int i = 0; i < 300; i++) {
            int64_t d = s3_backoff_ms(k, 50, 2000);
            CHECK(d >= 0 && d <= ceil_ms);
            mx = d > mx ? d : mx;
            mn = d < mn ? d : mn;
        }
        CHECK(mx > mn); /* jitter */
        CHECK(mx > ceil_ms / 2); /* and it uses the range */
    }
}

static const char LIST_OK[] =
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>"
    "<ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Name>bkt</Name>"
    "<Prefix>p/</Prefix><KeyCount>3</KeyCount><MaxKeys>3</MaxKeys><IsTruncated>true</IsTruncated>"
    "<NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=</NextContinuationToken>"
    "<Contents><Key>p/a</Key><LastModified>2024-01-01T00:00:00.000Z</LastModified>"
    "<ETag>&quot;abc&quot;</ETag><Size>0</Size><StorageClass>STANDARD</StorageClass></Contents>"
    "<Contents><Key>p/b&amp;c&#65;&#x42;</Key><Size>123456789012</Size></Contents>"
    "<Contents><Key>p/\xc3\xa9</Key><Size> 7 </Size></Contents>"
    "<CommonPrefixes><Prefix>p/d/</Prefix></CommonPrefixes>"
    "<CommonPrefixes><Prefix>p/e/</Prefix></CommonPrefixes></ListBucketResult>";

TEST(parse_list_valid)
{
    s3_list_page p;
    CHECK_OK(s3_parse_list(LIST_OK, strlen(LIST_OK), &p));
    CHECK(p.n_items == 3 && p.n_prefixes == 2 && p.truncated);
    if (p.n_items == 3) {
        CHECK(strcmp(p.items[0].key, "p/a") == 0 && p.items[0].size == 0);
        CHECK(strcmp(p.items[1].key, "p/b&cAB") == 0 && p.items[1].size == 123456789012ULL);
        CHECK(strcmp(p.items[2].key, "p/\xc3\xa9") == 0 && p.items[2].size == 7);
    }
    if (p.n_prefixes == 2)
        CHECK(strcmp(p.prefixes[0], "p/d/") == 0 && strcmp(p.prefixes[1], "p/e/") == 0);
    CHECK(p.next_token && strcmp(p.next_token, "1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=") == 0);
    s3_list_page_free(&p);
    const char *last = "<ListBucketResult><IsTruncated>false</IsTruncated></ListBucketResult>";
    CHECK_OK(s3_parse_list(last, strlen(last), &p));
    CHECK(p.n_items == 0 && !p.truncated && p.next_token == NULL);
    s3_list_page_free(&p);
}

static int parse_bad(const char *contents)
{
    char *x = malloc(strlen(contents) + 256);
    sprintf(x, "<ListBucketResult><IsTruncated>false</IsTruncated>%s</ListBucketResult>", contents);
    s3_list_page p;
    int rc = s3_parse_list(x, strlen(x), &p);
    s3_list_page_free(&p);
    free(x);
    return rc;
}

TEST(parse_list_malformed)
{
    CHECK_RC(WP_EIO, parse_bad("<Contents><Key>a</Key></Contents>"));            /* no Size */
    CHECK_RC(WP_EIO, parse_bad("<Contents><Key>a</Key><Size>12a</Size></Contents>"));
    CHECK_RC(WP_EIO, parse_bad("<Contents><Key>a</Key><Size>-1</Size></Contents>"));
    CHECK_RC(WP_EIO, parse_bad("<Contents><Key>a</Key><Size>99999999999999999999</Size></Contents>"));
    CHECK_RC(WP_EIO, parse_bad("<Contents><Key>a</Key><Size></Size></Contents>"));
    CHECK_RC(WP_EIO, parse_bad("<Contents><Size>1</Size></Contents>"));             /* no Key */
    CHECK_RC(WP_EIO, parse_bad("<Contents><Key></Key><Size>1</Size></Contents>"));  /* empty */
    CHECK_RC(WP_EIO, parse_bad("<Contents><Key>a&bogus;</Key><Size>1</Size></Contents>"));
    CHECK_RC(WP_EIO, parse_bad("<Contents><Key>a&#0;</Key><Size>1</Size></Contents>"));
    CHECK_RC(WP_EIO, parse_bad("<Contents><Key>a&#xD800;</Key><Size>1</Size></Contents>"));
    CHECK_RC(WP_EIO, parse_bad("<Contents><Key>a&amp</Key><Size>1</Size></Contents>"));
    CHECK_RC(WP_EIO, parse_bad("<CommonPrefixes></CommonPrefixes>"));
    /* A key longer than S3_KEY_MAX. */
    char *big = malloc(S3_KEY_MAX + 100);
    sprintf(big, "<Contents><Key>%0*d</Key><Size>1</Size></Contents>", S3_KEY_MAX + 1, 0);
    CHECK_RC(WP_EIO, parse_bad(big));
    sprintf(big, "<Contents><Key>%0*d</Key><Size>1</Size></Contents>", S3_KEY_MAX, 0);
    CHECK_OK(parse_bad(big));
    free(big);
    /* More keys than a page may hold. */
    size_t n = (S3_LIST_KEYS_MAX + 1) * 64;
    char *many = malloc(n), *o = many;
    for (int i = 0; i <= S3_LIST_KEYS_MAX; i++)
        o += sprintf(o, "<Contents><Key>k%d</Key><Size>1</Size></Contents>", i);
    CHECK_RC(WP_EIO, parse_bad(many));
    free(many);
    /* Not a list; cut short; truncated without a token. */
    s3_list_page p;
    CHECK_RC(WP_EIO, s3_parse_list("<Error/>", 8, &p));
    s3_list_page_free(&p);
    CHECK_RC(WP_EIO, s3_parse_list(LIST_OK, strlen(LIST_OK) - 30, &p));
    s3_list_page_free(&p);
    const char *t = "<ListBucketResult><IsTruncated>true</IsTruncated></ListBucketResult>";
    CHECK_RC(WP_EIO, s3_parse_list(t, strlen(t), &p));
    s3_list_page_free(&p);
    /* An unterminated element inside a complete document is skipped, not read past. */
    CHECK_OK(parse_bad("<Contents><Key>a</Key><Size>1</Size>"));
    /* Every prefix of a valid answer parses or fails cleanly (ASan watches). */
    for (size_t l = 0; l < strlen(LIST_OK); l += 7) {
        char *cut = malloc(l ? l : 1);
        memcpy(cut, LIST_OK, l);
        s3_parse_list(cut, l, &p);
        s3_list_page_free(&p);
        free(cut);
    }
}

TEST(parse_error_body)
{
    char code[S3_CODE_MAX], msg[64];
    const char *e = "<?xml version=\"1.0\"?><Error><Code>SlowDown</Code><Message>Reduce &amp; "
                    "retry</Message><RequestId>x</RequestId></Error>";
    s3_parse_error(e, strlen(e), code, sizeof code, msg, sizeof msg);
    CHECK(strcmp(code, "SlowDown") == 0);
    CHECK(strcmp(msg, "Reduce ") == 0); /* cut before an entity: only for humans */
    s3_parse_error("garbage", 7, code, sizeof code, msg, sizeof msg);
    CHECK(code[0] == '\0' && msg[0] == '\0');
    s3_parse_error(NULL, 0, code, sizeof code, msg, sizeof msg);
    CHECK(code[0] == '\0');
    const char *lng = "<Error><Code>AVeryLongCodeThatDoesNotFit</Code></Error>";
    char small[8];
    s3_parse_error(lng, strlen(lng), small, sizeof small, msg, sizeof msg);
    CHECK(strcmp(small, "AVeryLo") == 0);
    const char *cut = "<Error><Code>NoSuch";
    s3_parse_error(cut, strlen(cut), code, sizeof code, msg, sizeof msg);
    CHECK(code[0] == '\0');
}

/* ---- the request shape ------------------------------------------------------------ */

TEST(sigv4_put_shape)
{
    srv_reset();
    s3_client *c = client(true, 0, 2000);
    REQUIRE(c);
    struct iovec v[2] = {{"hello ", 6}, {"world", 5}};
    CHECK_OK(s3_put(c, "dir/a b+c", v, 2, S3_PUT_IF_ABSENT));
    REQUIRE(srv_count() == 1);
    rec *r = srv_rec(0);
    char h[256], want[65];
    CHECK(strcmp(r->method, "PUT") == 0);
    CHECK(strcmp(r->path, "/bkt/dir/a%20b%2Bc") == 0);
    CHECK(r->body_len == 11 && memcmp(r->body, "hello world", 11) == 0);
    sha256_hex("hello world", 11, want);
    CHECK(hdr_get(r->hdrs, "x-amz-content-sha256", h, sizeof h) && strcmp(h, want) == 0);
    CHECK(hdr_get(r->hdrs, "Content-MD5", h, sizeof h) && strcmp(h, "XrY7u+Ae7tCTyyK7j1rNww==") == 0);
    CHECK(hdr_get(r->hdrs, "If-None-Match", h, sizeof h) && strcmp(h, "*") == 0);
    CHECK(hdr_get(r->hdrs, "Authorization", h, sizeof h) &&
          strstr(h, "SignedHeaders=content-md5;host;if-none-match;x-amz-content-sha256;x-amz-date") &&
          strstr(h, "/" REGION "/s3/aws4_request"));
    CHECK(hdr_get(r->hdrs, "x-amz-security-token", h, sizeof h) == NULL);
    CHECK(hdr_get(r->hdrs, "Expect", h, sizeof h) == NULL);
    CHECK(sigv4_valid(r, SK));
    CHECK(!sigv4_check(r, "another secret", true));
    /* An empty body and a GET: the empty payload's hash. */
    CHECK_OK(s3_put(c, "empty", NULL, 0, 0));
    char buf[4];
    size_t got;
    CHECK_OK(s3_get(c, "empty", 0, buf, sizeof buf, &got, NULL));
    REQUIRE(srv_count() == 3);
    for (int i = 1; i < 3; i++) {
        r = srv_rec(i);
        CHECK(hdr_get(r->hdrs, "x-amz-content-sha256", h, sizeof h) &&
              strcmp(h, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855") == 0);
        CHECK(sigv4_valid(r, SK));
    }
    CHECK(hdr_get(srv_rec(2)->hdrs, "Range", h, sizeof h) && strcmp(h, "bytes=0-3") == 0);
    s3_client_close(c);
}

TEST(sigv4_query_and_vhost)
{
    srv_reset();
    s3_client *c = client(false, 0, 2000);
    REQUIRE(c);
    srv_push(200, NULL, "<ListBucketResult><IsTruncated>false</IsTruncated></ListBucketResult>");
    s3_list_page p;
    CHECK_OK(s3_list(c, "p q/", "/", NULL, "a+b/c=", 7, &p));
    s3_list_page_free(&p);
    srv_push(200, NULL, "<InitiateMultipartUploadResult><UploadId>u/1+2</UploadId></InitiateMultipartUploadResult>");
    char id[S3_UPLOAD_ID_MAX];
    CHECK_OK(s3_mpu_create(c, "k", id));
    CHECK(strcmp(id, "u/1+2") == 0);
    srv_push(204, NULL, NULL);
    CHECK_OK(s3_mpu_abort(c, "k", id));
    REQUIRE(srv_count() == 3);
    rec *r = srv_rec(0);
    char h[256];
    CHECK(strcmp(r->path, "/") == 0);
    CHECK(strcmp(r->query, "continuation-token=a%2Bb%2Fc%3D&delimiter=%2F&list-type=2&max-keys=7&"
                           "prefix=p%20q%2F") == 0);
    char host[64];
    snprintf(host, sizeof host, BUCKET ".localhost:%d", srv.port);
    CHECK(hdr_get(r->hdrs, "Host", h, sizeof h) && strcmp(h, host) == 0);
    CHECK(sigv4_valid(r, SK));
    r = srv_rec(1);
    CHECK(strcmp(r->method, "POST") == 0 && strcmp(r->path, "/k") == 0 && strcmp(r->query, "uploads=") == 0);
    CHECK(sigv4_valid(r, SK));
    r = srv_rec(2);
    CHECK(strcmp(r->method, "DELETE") == 0 && strcmp(r->query, "uploadId=u%2F1%2B2") == 0);
    CHECK(sigv4_valid(r, SK));
    s3_client_close(c);
}

TEST(session_token_and_env_credentials)
{
    srv_reset();
    char ep[64];
    snprintf(ep, sizeof ep, "http://127.0.0.1:%d", srv.port);
    setenv("AWS_ACCESS_KEY_ID", AK, 1);
    setenv("AWS_SECRET_ACCESS_KEY", SK, 1);
    setenv("AWS_SESSION_TOKEN", "tok/en", 1);
    s3_options o = {.endpoint = ep, .bucket = BUCKET, .region = REGION, .path_style = true};
    s3_client *c = NULL;
    CHECK_OK(s3_client_open(&o, &c));
    unsetenv("AWS_ACCESS_KEY_ID");
    unsetenv("AWS_SECRET_ACCESS_KEY");
    unsetenv("AWS_SESSION_TOKEN");
    REQUIRE(c);
    CHECK_OK(put_str(c, "t", "x", 0));
    REQUIRE(srv_count() == 1);
    char h[256];
    CHECK(hdr_get(srv_rec(0)->hdrs, "x-amz-security-token", h, sizeof h) && strcmp(h, "tok/en") == 0);
    CHECK(hdr_get(srv_rec(0)->hdrs, "Authorization", h, sizeof h) && strstr(h, "x-amz-security-token"));
    CHECK(sigv4_valid(srv_rec(0), SK));
    s3_client_close(c);
    /* No credentials at all; bad options. */
    CHECK_RC(WP_EINVAL, s3_client_open(&o, &c));
    o.access_key = AK, o.secret_key = SK;
    o.bucket = "Bad_Bucket";
    CHECK_RC(WP_EINVAL, s3_client_open(&o, &c));
    o.bucket = BUCKET, o.endpoint = "http://h/path";
    CHECK_RC(WP_EINVAL, s3_client_open(&o, &c));
    /* What the Authorization header cannot carry: a credential with a
     * separator in it, keys over 256 bytes. */
    o.endpoint = ep, o.access_key = "AK/ID";
    CHECK_RC(WP_EINVAL, s3_client_open(&o, &c));
    char long_key[300];
    memset(long_key, 'k', sizeof long_key - 1);
    long_key[sizeof long_key - 1] = '\0';
    o.access_key = AK, o.secret_key = long_key;
    CHECK_RC(WP_EINVAL, s3_client_open(&o, &c));
    o.secret_key = SK;
    CHECK_OK(s3_client_open(&o, &c));
    s3_client_close(c);
    o.endpoint = "file:///etc";
    CHECK_RC(WP_EINVAL, s3_client_open(&o, &c));
}

/* ---- answers: ranges, bounds ------------------------------------------------------- */

TEST(ranged_get_answers)
{
    srv_reset();
    s3_client *c = client(true, 0, 2000);
    REQUIRE(c);
    char data[1000], buf[100];
    for (int i = 0; i < 1000; i++)
        data[i] = (char)('a' + i % 26);
    struct iovec v = {data, sizeof data};
    CHECK_OK(s3_put(c, "o", &v, 1, 0));
    size_t got = 0;
    uint64_t total = 0;
    CHECK_OK(s3_get(c, "o", 100, buf, 50, &got, &total));
    CHECK(got == 50 && total == 1000 && memcmp(buf, data + 100, 50) == 0);
    CHECK_OK(s3_get(c, "o", 990, buf, 50, &got, &total));
    CHECK(got == 10 && memcmp(buf, data + 990, 10) == 0);
    CHECK_OK(s3_get(c, "o", 1000, buf, 50, &got, &total));
    CHECK(got == 0 && total == 1000);
    /* A server that ignores Range: the client skips to the offset. */
    srv_push_c((canned){200, NULL, data, sizeof data, 0});
    CHECK_OK(s3_get(c, "o", 300, buf, 40, &got, &total));
    CHECK(got == 40 && total == 1000 && memcmp(buf, data + 300, 40) == 0);
    /* A 206 for another range is refused. */
    srv_push(206, "Content-Range: bytes 0-9/1000\r\n", "abcdefghij");
    CHECK_RC(WP_EIO, s3_get(c, "o", 5, buf, 10, &got, &total));
    CHECK(got == 0);
    /* A 206 shorter than it should be. */
    srv_push(206, "Content-Range: bytes 5-9/1000\r\n", "fghij");
    CHECK_RC(WP_EIO, s3_get(c, "o", 5, buf, 10, &got, &total));
    /* A longer body than asked: only what fits is kept. */
    srv_push(206, "Content-Range: bytes 5-24/1000\r\n", "fghijklmnopqrstuvwxy");
    CHECK_OK(s3_get(c, "o", 5, buf, 10, &got, &total));
    CHECK(got == 10 && memcmp(buf, "fghijklmno", 10) == 0);
    CHECK_RC(WP_ENOENT, s3_get(c, "nope", 0, buf, 10, &got, &total));
    CHECK(strstr(wp_errmsg(), "NoSuchKey") && strstr(wp_errmsg(), BUCKET "/nope"));
    s3_client_close(c);
}

TEST(answer_bounds)
{
    srv_reset();
    s3_client *c = client(true, 3, 2000);
    REQUIRE(c);
    size_t n = S3_XML_BYTES_MAX + 4096;
    char *big = malloc(n + 1);
    REQUIRE(big);
    memset(big, ' ', n);
    big[n] = '\0';
    srv_push_c((canned){200, NULL, big, n, 0});
    s3_list_page p;
    int before = srv_count();
    CHECK_RC(WP_ETOOBIG, s3_list(c, "x/", NULL, NULL, NULL, 0, &p));
    s3_list_page_free(&p);
    CHECK(srv_count() - before == 1); /* not retried */
    /* An ETag longer than S3_ETAG_MAX is dropped, not overflowed. */
    char hdr[400];
    snprintf(hdr, sizeof hdr, "ETag: \"%0300d\"\r\n", 0);
    srv_push(200, hdr, NULL);
    s3_obj_info info;
    CHECK_OK(s3_head(c, "o", &info));
    CHECK(info.etag[0] == '\0' && info.size == 0);
    /* A list answer naming a key outside the prefix. */
    srv_push(200, NULL, "<ListBucketResult><Contents><Key>other/k</Key><Size>1</Size></Contents>"
                        "<IsTruncated>false</IsTruncated></ListBucketResult>");
    CHECK_RC(WP_EIO, s3_list(c, "x/", NULL, NULL, NULL, 0, &p));
    s3_list_page_free(&p);
    free(big);
    s3_client_close(c);
}

/* ---- retries -------------------------------------------------------------------------- */

static const char SLOWDOWN[] = "<Error><Code>SlowDown</Code><Message>slow down</Message></Error>";

TEST(retry_policy)
{
    srv_reset();
    s3_client *c = client(true, 3, 2000);
    REQUIRE(c);
    s3_stats st0, st1;
    s3_client_stats(c, &st0);
    /* 503 SlowDown twice, then the store takes it. */
    srv_push(503, NULL, SLOWDOWN);
    srv_push(503, NULL, SLOWDOWN);
    CHECK_OK(put_str(c, "k", "v", 0));
    CHECK(srv_count() == 3);
    s3_client_stats(c, &st1);
    CHECK(st1.retries - st0.retries == 2 && st1.attempts - st0.attempts == 3);
    /* 500, 502, 504, 408, 429 are retried too. */
    static const int retried[] = {500, 502, 504, 408, 429};
    for (size_t i = 0; i < sizeof retried / sizeof retried[0]; i++) {
        int before = srv_count();
        srv_push(retried[i], NULL, NULL);
        CHECK_OK(put_str(c, "k", "v", 0));
        CHECK(srv_count() - before == 2);
    }
    /* Exhausted: 1 + max_retries attempts, the last S3 code named. */
    int before = srv_count();
    for (int i = 0; i < 4; i++)
        srv_push(500, NULL, "<Error><Code>InternalError</Code></Error>");
    CHECK_RC(WP_EUNAVAILABLE, put_str(c, "k", "v", 0));
    CHECK(srv_count() - before == 4);
    CHECK(strstr(wp_errmsg(), "InternalError") && strstr(wp_errmsg(), "4 attempts"));
    /* 4xx other than 408/429 fail at once, naming bucket, key and code. */
    static const int at_once[] = {400, 403, 404, 409, 412};
    static const int want_rc[] = {WP_EIO, WP_EIO, WP_ENOENT, WP_EIO, WP_EEXIST};
    for (size_t i = 0; i < sizeof at_once / sizeof at_once[0]; i++) {
        before = srv_count();
        srv_push(at_once[i], NULL, "<Error><Code>SomeCode</Code></Error>");
        CHECK_RC(want_rc[i], put_str(c, "dir/key1", "v", 0));
        CHECK(srv_count() - before == 1);
        CHECK(strstr(wp_errmsg(), "SomeCode") && strstr(wp_errmsg(), BUCKET "/dir/key1"));
    }
    /* A connection cut in the middle of an answer is retried. */
    before = srv_count();
    srv_push_c((canned){200, "Content-Range: bytes 0-99/100\r\n", "0123456789", 100, 5});
    char buf[16];
    size_t got;
    CHECK_OK(s3_get(c, "k", 0, buf, sizeof buf, &got, NULL));
    CHECK(got == 1 && buf[0] == 'v');
    CHECK(srv_count() - before == 2);
    s3_client_close(c);
}

typedef struct {
    s3_fault_kind kind;
    int status;
    int64_t delay_ms;
    int first_n;
    atomic_int seen;
    char last_url[512];
} plan;

static void plan_hook(void *arg, const s3_fault_req *req, s3_fault *out)
{
    plan *p = arg;
    snprintf(p->last_url, sizeof p->last_url, "%s", req->url);
    if (atomic_fetch_add(&p->seen, 1) >= p->first_n)
        return;
    out->kind = p->kind;
    out->status = p->status;
    out->body = p->status ? SLOWDOWN : NULL;
    out->delay_ms = p->delay_ms;
}

TEST(injected_faults)
{
    srv_reset();
    s3_client *c = client(true, 2, 300);
    REQUIRE(c);
    /* Statuses from the hook never reach the server. */
    plan p = {.kind = S3_FAULT_STATUS, .status = 503, .first_n = 2};
    s3_client_set_fault(c, plan_hook, &p);
    CHECK_OK(put_str(c, "k", "v", 0));
    CHECK(srv_count() == 1 && atomic_load(&p.seen) == 3);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/bkt/k", srv.port);
    CHECK(strcmp(p.last_url, url) == 0);
    /* Resets before sending. */
    plan r = {.kind = S3_FAULT_RESET, .first_n = 2};
    s3_client_set_fault(c, plan_hook, &r);
    CHECK_OK(put_str(c, "k2", "v", 0));
    CHECK(srv_count() == 2);
    r = (plan){.kind = S3_FAULT_RESET, .first_n = 3};
    CHECK_RC(WP_EUNAVAILABLE, put_str(c, "k3", "v", 0));
    CHECK(strstr(wp_errmsg(), "3 attempts") != NULL);
    /* A slow answer below the timeout arrives; above it, the attempt times out. */
    plan s = {.kind = S3_FAULT_SLOW, .delay_ms = 100, .first_n = 1};
    s3_client_set_fault(c, plan_hook, &s);
    int64_t t0 = wp__now_ns();
    CHECK_OK(put_str(c, "k4", "v", 0));
    CHECK(wp__now_ns() - t0 >= 100 * 1000000LL);
    s = (plan){.kind = S3_FAULT_SLOW, .delay_ms = 10000, .first_n = 100};
    t0 = wp__now_ns();
    s3_obj_info info;
    CHECK_RC(WP_ETIMEDOUT, s3_head(c, "k4", &info));
    int64_t ms = (wp__now_ns() - t0) / 1000000;
    CHECK(ms >= 900 && ms < 3000); /* 3 attempts of 300 ms */
    CHECK(strstr(wp_errmsg(), "3 attempts") != NULL);
    s3_client_set_fault(c, NULL, NULL);
    s3_client_close(c);
}

TEST(conditional_put_finds_own_object)
{
    srv_reset();
    s3_client *c = client(true, 3, 2000);
    REQUIRE(c);
    /* The first attempt is applied but its answer lost; the retry gets a
     * 412, a HEAD finds our size and MD5: success, counted once. */
    plan p = {.kind = S3_FAULT_RESET_AFTER, .first_n = 1};
    s3_client_set_fault(c, plan_hook, &p);
    CHECK_OK(put_str(c, "blk", "payload-1", S3_PUT_IF_ABSENT));
    CHECK(srv_count() == 3); /* PUT, PUT (412), HEAD */
    CHECK(strcmp(srv_rec(2)->method, "HEAD") == 0);
    s3_stats st;
    s3_client_stats(c, &st);
    CHECK(st.own_object_412 == 1 && st.puts == 1);
    /* Same, but someone else's object is there: WP_EEXIST. */
    s3_client_set_fault(c, NULL, NULL);
    CHECK_OK(put_str(c, "blk2", "theirs", 0));
    p = (plan){.kind = S3_FAULT_RESET, .first_n = 1};
    s3_client_set_fault(c, plan_hook, &p);
    CHECK_RC(WP_EEXIST, put_str(c, "blk2", "mine!!", S3_PUT_IF_ABSENT));
    CHECK(strstr(wp_errmsg(), "412") != NULL);
    /* Same size, other bytes: still not ours. */
    p = (plan){.kind = S3_FAULT_RESET, .first_n = 1};
    CHECK_RC(WP_EEXIST, put_str(c, "blk2", "THEIRS", S3_PUT_IF_ABSENT));
    /* A first-attempt 412 is never claimed, even for identical bytes. */
    s3_client_set_fault(c, NULL, NULL);
    int before = srv_count();
    CHECK_RC(WP_EEXIST, put_str(c, "blk2", "theirs", S3_PUT_IF_ABSENT));
    CHECK(srv_count() - before == 1);
    s3_client_close(c);
}

TEST(connection_reuse)
{
    srv_reset();
    s3_client *c = client(true, 2, 2000);
    REQUIRE(c);
    int before = atomic_load(&srv.accepts);
    char buf[8];
    size_t got;
    for (int i = 0; i < 20; i++) {
        CHECK_OK(put_str(c, "reuse", "abc", 0));
        CHECK_OK(s3_get(c, "reuse", 0, buf, sizeof buf, &got, NULL));
    }
    CHECK(atomic_load(&srv.accepts) - before == 1);
    /* A server that closes the connection: the next request opens another. */
    srv_push_c((canned){500, "Connection: close\r\n", "x", 1, 1});
    CHECK_OK(put_str(c, "reuse", "abc", 0));
    CHECK(atomic_load(&srv.accepts) - before == 2);
    s3_client_close(c);
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* Issue 14: a PUT sends its body with the request, never after an
 * "Expect: 100-continue". The fake server, like RGW's beast frontend by
 * default, leaves Nagle on and answers such a header with "100 Continue"
 * 2 ms later. A client that sent the body without waiting for it (libcurl
 * with CURLOPT_EXPECT_100_TIMEOUT_MS 0) then has nothing to send to carry
 * the ACK of that segment, and the server's answer waits for its delayed
 * ACK: 40+ ms per PUT instead of well under 1. */
TEST(put_body_in_one_round_trip)
{
    srv_reset();
    atomic_store(&srv.expects, 0);
    s3_client *c = client(true, 0, 5000);
    REQUIRE(c);
    char body[1024], key[32];
    memset(body, 'x', sizeof body);
    struct iovec v = {body, sizeof body};
    int64_t lat[21];
    for (int i = 0; i < 21; i++) {
        snprintf(key, sizeof key, "one/%d", i);
        int64_t t0 = wp__now_ns();
        CHECK_OK(s3_put(c, key, &v, 1, S3_PUT_IF_ABSENT));
        lat[i] = wp__now_ns() - t0;
    }
    qsort(lat, 21, sizeof lat[0], cmp_i64);
    CHECK(lat[10] < 20 * 1000000LL); /* the median PUT: no delayed ACK in it */
    /* Nor for a large body (where libcurl asks for 100-continue even on a
     * POST), nor for a POST. */
    size_t big_n = 2 * 1024 * 1024 + 1;
    char *big = calloc(1, big_n);
    REQUIRE(big);
    struct iovec bv = {big, big_n};
    CHECK_OK(s3_put(c, "big", &bv, 1, 0));
    free(big);
    const char *keys[] = {"one/0", "one/1"};
    CHECK_OK(s3_delete_many(c, keys, 2));
    char h[64];
    for (int i = 0; i < srv_count(); i++)
        CHECK(hdr_get(srv_rec(i)->hdrs, "Expect", h, sizeof h) == NULL);
    CHECK(srv_count() == 23 && atomic_load(&srv.expects) == 0);
    s3_client_close(c);
}

TEST(multipart_shape)
{
    srv_reset();
    s3_client *c = client(true, 1, 5000);
    REQUIRE(c);
    size_t n = S3_PART_BYTES_MIN + 1000;
    char *b = calloc(1, n);
    REQUIRE(b);
    srv_push(200, NULL, "<InitiateMultipartUploadResult><UploadId>UP1</UploadId></InitiateMultipartUploadResult>");
    srv_push(200, "ETag: \"e1\"\r\n", NULL);
    srv_push(200, "ETag: \"e2\"\r\n", NULL);
    srv_push(200, NULL, "<CompleteMultipartUploadResult><ETag>\"x-2\"</ETag></CompleteMultipartUploadResult>");
    CHECK_OK(s3_put_multipart(c, "big", b, n, S3_PART_BYTES_MIN));
    REQUIRE(srv_count() == 4);
    CHECK(strcmp(srv_rec(1)->query, "partNumber=1&uploadId=UP1") == 0);
    CHECK(srv_rec(1)->body_len == S3_PART_BYTES_MIN && srv_rec(2)->body_len == 1000);
    CHECK(strcmp(srv_rec(3)->method, "POST") == 0 && strcmp(srv_rec(3)->query, "uploadId=UP1") == 0);
    CHECK(srv_rec(3)->body && strstr((char *)srv_rec(3)->body,
                                     "<Part><PartNumber>2</PartNumber><ETag>\"e2\"</ETag></Part>"));
    for (int i = 0; i < 4; i++)
        CHECK(sigv4_valid(srv_rec(i), SK));
    /* A completion answered 200 + <Error> is a failure (retried), then aborted. */
    srv_reset();
    srv_push(200, NULL, "<InitiateMultipartUploadResult><UploadId>UP2</UploadId></InitiateMultipartUploadResult>");
    srv_push(200, "ETag: \"e1\"\r\n", NULL);
    srv_push(200, "ETag: \"e2\"\r\n", NULL);
    srv_push(200, NULL, "<Error><Code>InternalError</Code></Error>");
    srv_push(200, NULL, "<Error><Code>InternalError</Code></Error>");
    srv_push(204, NULL, NULL);
    CHECK_RC(WP_EUNAVAILABLE, s3_put_multipart(c, "big", b, n, S3_PART_BYTES_MIN));
    CHECK(strstr(wp_errmsg(), "InternalError") != NULL);
    REQUIRE(srv_count() == 6);
    CHECK(strcmp(srv_rec(5)->method, "DELETE") == 0 && strcmp(srv_rec(5)->query, "uploadId=UP2") == 0);
    free(b);
    s3_client_close(c);
}

/* ---- If-Match PUTs and ETags ---------------------------------------------------------- */

static int put_ex_str(s3_client *c, const char *key, const char *s, const char *if_match,
                      s3_obj_info *out)
{
    struct iovec v = {(void *)s, strlen(s)};
    s3_put_opts o = {.if_match = if_match};
    return s3_put_ex(c, key, &v, 1, &o, out);
}

TEST(put_if_match)
{
    srv_reset();
    s3_client *c = client(true, 3, 2000);
    REQUIRE(c);
    s3_obj_info p1, p2, g;
    char m1[33], m2[33], h[256], buf[16], quoted[40];
    md5_hex((const unsigned char *)"one", 3, m1);
    md5_hex((const unsigned char *)"two!", 4, m2);
    /* The ETag of a new object comes back without quotes, with our size. */
    CHECK_OK(put_ex_str(c, "cas", "one", NULL, &p1));
    CHECK(p1.size == 3 && strcmp(p1.etag, m1) == 0);
    size_t got = 0;
    CHECK_OK(s3_get_ex(c, "cas", 0, buf, sizeof buf, &got, &g));
    CHECK(got == 3 && g.size == 3 && strcmp(g.etag, p1.etag) == 0);
    /* If-Match with what we read: replaced; the header is sent verbatim and signed. */
    int before = srv_count();
    CHECK_OK(put_ex_str(c, "cas", "two!", g.etag, &p2));
    CHECK(p2.size == 4 && strcmp(p2.etag, m2) == 0);
    REQUIRE(srv_count() - before == 1);
    rec *r = srv_rec(before);
    CHECK(hdr_get(r->hdrs, "If-Match", h, sizeof h) && strcmp(h, m1) == 0);
    CHECK(hdr_get(r->hdrs, "If-None-Match", h, sizeof h) == NULL);
    CHECK(hdr_get(r->hdrs, "Authorization", h, sizeof h) && strstr(h, ";if-match;"));
    CHECK(sigv4_valid(r, SK));
    /* A stale ETag: 412 -> WP_ECONFLICT at once, naming bucket and key; no HEAD. */
    before = srv_count();
    CHECK_RC(WP_ECONFLICT, put_ex_str(c, "cas", "three", m1, &p2));
    CHECK(strstr(wp_errmsg(), BUCKET "/cas") && strstr(wp_errmsg(), "412") &&
          strstr(wp_errmsg(), "PreconditionFailed"));
    CHECK(srv_count() - before == 1 && p2.etag[0] == '\0' && p2.size == 0);
    CHECK_OK(s3_get_ex(c, "cas", 0, buf, sizeof buf, &got, &g));
    CHECK(got == 4 && memcmp(buf, "two!", 4) == 0 && strcmp(g.etag, m2) == 0);
    /* The quoted form goes out as given (this store, like AWS, accepts it). */
    snprintf(quoted, sizeof quoted, "\"%s\"", m2);
    before = srv_count();
    CHECK_OK(put_ex_str(c, "cas", "one", quoted, NULL));
    CHECK(hdr_get(srv_rec(before)->hdrs, "If-Match", h, sizeof h) && strcmp(h, quoted) == 0);
    /* A missing key answered 404 (AWS): WP_ECONFLICT too. */
    CHECK_RC(WP_ECONFLICT, put_ex_str(c, "nokey", "x", m1, NULL));
    CHECK(strstr(wp_errmsg(), BUCKET "/nokey") && strstr(wp_errmsg(), "404"));
    /* Bad options: both conditions; header injection; nothing is sent. */
    before = srv_count();
    struct iovec v = {"x", 1};
    s3_put_opts both = {.flags = S3_PUT_IF_ABSENT, .if_match = m1};
    CHECK_RC(WP_EINVAL, s3_put_ex(c, "cas", &v, 1, &both, NULL));
    CHECK_RC(WP_EINVAL, put_ex_str(c, "cas", "x", "abc\r\nX-Evil: 1", NULL));
    CHECK_RC(WP_EINVAL, put_ex_str(c, "cas", "x", "", NULL));
    CHECK(srv_count() == before);
    /* NULL options and out: a plain PUT. */
    CHECK_OK(s3_put_ex(c, "plain", &v, 1, NULL, NULL));
    s3_client_close(c);
}

TEST(if_match_put_finds_own_object)
{
    srv_reset();
    s3_client *c = client(true, 3, 2000);
    REQUIRE(c);
    s3_obj_info p1, p2;
    char m2[33];
    md5_hex((const unsigned char *)"v2", 2, m2);
    CHECK_OK(put_ex_str(c, "cas", "v1", NULL, &p1));
    /* Applied, answer lost; the retry's If-Match no longer holds (412);
     * the HEAD finds our bytes: success, with the new ETag. */
    plan p = {.kind = S3_FAULT_RESET_AFTER, .first_n = 1};
    s3_client_set_fault(c, plan_hook, &p);
    int before = srv_count();
    CHECK_OK(put_ex_str(c, "cas", "v2", p1.etag, &p2));
    CHECK(srv_count() - before == 3); /* PUT, PUT (412), HEAD */
    CHECK(strcmp(srv_rec(before + 1)->method, "PUT") == 0 &&
          strcmp(srv_rec(before + 2)->method, "HEAD") == 0);
    CHECK(p2.size == 2 && strcmp(p2.etag, m2) == 0);
    s3_stats st;
    s3_client_stats(c, &st);
    CHECK(st.own_object_412 == 1 && st.puts == 2);
    /* Not sent the first time (reset), and the object changed meanwhile:
     * the retry's 412 is someone else's write (same size, other bytes). */
    p = (plan){.kind = S3_FAULT_RESET, .first_n = 1};
    CHECK_RC(WP_ECONFLICT, put_ex_str(c, "cas", "v3", p1.etag, &p2));
    CHECK(strstr(wp_errmsg(), "412") && strstr(wp_errmsg(), BUCKET "/cas"));
    /* A first-attempt 412 is never claimed, even for the bytes that are there. */
    s3_client_set_fault(c, NULL, NULL);
    before = srv_count();
    CHECK_RC(WP_ECONFLICT, put_ex_str(c, "cas", "v2", p1.etag, NULL));
    CHECK(srv_count() - before == 1);
    s3_client_stats(c, &st);
    CHECK(st.own_object_412 == 1);
    s3_client_close(c);
}

TEST(get_ex_info)
{
    srv_reset();
    s3_client *c = client(true, 0, 2000);
    REQUIRE(c);
    char buf[8], m[33];
    size_t got;
    s3_obj_info info;
    s3_stats st0, st1;
    md5_hex((const unsigned char *)"abcdef", 6, m);
    CHECK_OK(put_str(c, "g", "abcdef", 0));
    s3_client_stats(c, &st0);
    CHECK_OK(s3_get_ex(c, "g", 2, buf, 3, &got, &info));
    CHECK(got == 3 && memcmp(buf, "cde", 3) == 0 && info.size == 6 && strcmp(info.etag, m) == 0);
    /* len == 0: a HEAD. */
    CHECK_OK(s3_get_ex(c, "g", 0, buf, 0, &got, &info));
    CHECK(got == 0 && info.size == 6 && strcmp(info.etag, m) == 0);
    s3_client_stats(c, &st1);
    CHECK(st1.gets - st0.gets == 2);
    /* A 416 without ETag or Content-Range (as RGW answers): a HEAD fills in. */
    srv_push(416, NULL, "<Error><Code>InvalidRange</Code></Error>");
    int before = srv_count();
    CHECK_OK(s3_get_ex(c, "g", 6, buf, sizeof buf, &got, &info));
    CHECK(got == 0 && info.size == 6 && strcmp(info.etag, m) == 0);
    CHECK(srv_count() - before == 2 && strcmp(srv_rec(before + 1)->method, "HEAD") == 0);
    /* ... unless the object grew in between: then no ETag. */
    srv_push(416, NULL, "<Error><Code>InvalidRange</Code></Error>");
    srv_push(200, "ETag: \"newer\"\r\n", "0123456789");
    CHECK_OK(s3_get_ex(c, "g", 6, buf, sizeof buf, &got, &info));
    CHECK(got == 0 && info.etag[0] == '\0');
    /* s3_get never adds the HEAD. */
    srv_push(416, NULL, "<Error><Code>InvalidRange</Code></Error>");
    before = srv_count();
    uint64_t total = 99;
    CHECK_OK(s3_get(c, "g", 6, buf, sizeof buf, &got, &total));
    CHECK(srv_count() - before == 1 && got == 0 && total == 0);
    CHECK_RC(WP_ENOENT, s3_get_ex(c, "nope", 0, buf, sizeof buf, &got, &info));
    CHECK(info.etag[0] == '\0');
    s3_client_stats(c, &st1);
    CHECK(st1.gets - st0.gets == 5);
    s3_client_close(c);
}

/* ---- batch delete ------------------------------------------------------------------------ */

static int count_str(const void *hay, size_t n, const char *needle)
{
    int k = 0;
    size_t l = strlen(needle);
    for (const char *p = hay, *e = p + n; (p = memmem(p, (size_t)(e - p), needle, l)) != NULL; p += l)
        k++;
    return k;
}

static bool has_obj(const char *key)
{
    char path[4096];
    key_path(key, path, sizeof path);
    pthread_mutex_lock(&srv.mu);
    bool yes = obj_find(path) != NULL;
    pthread_mutex_unlock(&srv.mu);
    return yes;
}

/* keys[i] = "<prefix>%04d" in one allocation; free with free(). */
static char **make_keys(const char *prefix, size_t n)
{
    char **k = malloc(n * (sizeof *k + 32));
    if (!k)
        return NULL;
    char *s = (char *)(k + n);
    for (size_t i = 0; i < n; i++, s += 32) {
        snprintf(s, 32, "%s%04zu", prefix, i);
        k[i] = s;
    }
    return k;
}

TEST(delete_many_batches)
{
    srv_reset();
    s3_client *c = client(true, 2, 2000);
    REQUIRE(c);
    char **keys = make_keys("del/", 2500);
    REQUIRE(keys);
    const char *special = "del/a&b<c>\"d'e\tf\r\ng \xc3\xa9";
    keys[1234] = (char *)special;
    static const int present[] = {0, 999, 1000, 1234, 1999, 2000, 2499};
    for (size_t i = 0; i < sizeof present / sizeof present[0]; i++)
        CHECK_OK(put_str(c, keys[present[i]], "x", 0));
    s3_stats st0, st1;
    s3_client_stats(c, &st0);
    int before = srv_count();
    CHECK_OK(s3_delete_many(c, (const char *const *)keys, 2500));
    s3_client_stats(c, &st1);
    REQUIRE(srv_count() - before == 3); /* 1000 + 1000 + 500 */
    static const int per[] = {1000, 1000, 500};
    for (int b = 0; b < 3; b++) {
        rec *r = srv_rec(before + b);
        char h[128], want[32], first[64], last[64];
        CHECK(strcmp(r->method, "POST") == 0 && strcmp(r->path, "/" BUCKET) == 0 &&
              strcmp(r->query, "delete=") == 0);
        CHECK(count_str(r->body, r->body_len, "<Object><Key>") == per[b]);
        CHECK(r->body_len > strlen(DELETE_HEAD) && memcmp(r->body, DELETE_HEAD, strlen(DELETE_HEAD)) == 0);
        md5_b64(r->body, r->body_len, want);
        CHECK(hdr_get(r->hdrs, "Content-MD5", h, sizeof h) && strcmp(h, want) == 0);
        CHECK(hdr_get(r->hdrs, "Authorization", h, sizeof h) && strstr(h, "content-md5"));
        CHECK(sigv4_valid(r, SK));
        /* In order: batch b holds keys [1000b, 1000b + per[b]). */
        snprintf(first, sizeof first, "%s<Object><Key>del/%04d</Key>", DELETE_HEAD, 1000 * b);
        snprintf(last, sizeof last, "<Key>del/%04d</Key></Object></Delete>", 1000 * b + per[b] - 1);
        CHECK(memmem(r->body, r->body_len, first, strlen(first)) != NULL);
        CHECK(r->body_len > strlen(last) &&
              memcmp(r->body + r->body_len - strlen(last), last, strlen(last)) == 0);
    }
    const char *esc = "<Key>del/a&amp;b&lt;c&gt;&quot;d&apos;e&#9;f&#13;&#10;g \xc3\xa9</Key>";
    CHECK(memmem(srv_rec(before + 1)->body, srv_rec(before + 1)->body_len, esc, strlen(esc)) != NULL);
    for (size_t i = 0; i < sizeof present / sizeof present[0]; i++)
        CHECK(!has_obj(keys[present[i]]));
    CHECK(st1.deletes - st0.deletes == 2500 && st1.batch_deletes - st0.batch_deletes == 3);
    CHECK(st1.requests - st0.requests == 3);
    /* n == 0 sends nothing; a bad key is refused before anything is sent. */
    before = srv_count();
    CHECK_OK(s3_delete_many(c, NULL, 0));
    keys[2000] = "";
    CHECK_RC(WP_EINVAL, s3_delete_many(c, (const char *const *)keys, 2500));
    CHECK(strstr(wp_errmsg(), "2000") != NULL);
    CHECK_RC(WP_EINVAL, s3_delete_many(c, NULL, 1));
    CHECK(srv_count() == before);
    free(keys);
    s3_client_close(c);
}

TEST(delete_many_key_errors)
{
    srv_reset();
    s3_client *c = client(true, 2, 2000);
    REQUIRE(c);
    CHECK_OK(put_str(c, "ok/1", "x", 0));
    /* NoSuchKey entries are success. */
    const char *fine[] = {"ok/1", "gone/2", "gone/3"};
    CHECK_OK(s3_delete_many(c, fine, 3));
    CHECK(!has_obj("ok/1"));
    /* Any other: WP_EIO naming the first failed key (decoded), Code and Message. */
    const char *bad[] = {"ok/1", "gone/2", "deny/a&b", "deny/second"};
    int before = srv_count();
    CHECK_RC(WP_EIO, s3_delete_many(c, bad, 4));
    CHECK(srv_count() - before == 1); /* not retried */
    CHECK(strstr(wp_errmsg(), "key deny/a&b:") && strstr(wp_errmsg(), "AccessDenied") &&
          strstr(wp_errmsg(), "\"Access Denied\"") && strstr(wp_errmsg(), BUCKET));
    CHECK(strstr(wp_errmsg(), "deny/second") == NULL);
    /* A later batch is not sent after a failed one. */
    char **keys = make_keys("deny/", 1001);
    REQUIRE(keys);
    before = srv_count();
    CHECK_RC(WP_EIO, s3_delete_many(c, (const char *const *)keys, 1001));
    CHECK(srv_count() - before == 1 && strstr(wp_errmsg(), "deny/0000"));
    free(keys);
    /* Answers that are no DeleteResult, or an incomplete one: WP_EIO. */
    srv_push(200, NULL, "");
    CHECK_RC(WP_EIO, s3_delete_many(c, fine, 1));
    srv_push(200, NULL, "<DeleteResult><Error><Key>k</Key><Code>X</Code></Error>");
    CHECK_RC(WP_EIO, s3_delete_many(c, fine, 1));
    srv_push(200, NULL, "<DeleteResultX></DeleteResultX>");
    CHECK_RC(WP_EIO, s3_delete_many(c, fine, 1));
    /* An error entry without a key still fails. */
    srv_push(200, NULL, "<DeleteResult><Error><Code>InternalError</Code></Error></DeleteResult>");
    CHECK_RC(WP_EIO, s3_delete_many(c, fine, 1));
    CHECK(strstr(wp_errmsg(), "InternalError") && strstr(wp_errmsg(), "no valid <Key>"));
    /* The empty-element form is a complete answer. */
    srv_push(200, NULL, "<?xml version=\"1.0\"?><DeleteResult xmlns=\"x\"/>");
    CHECK_OK(s3_delete_many(c, fine, 1));
    s3_client_close(c);
}

TEST(delete_many_fallback)
{
    srv_reset();
    s3_client *c = client(true, 3, 2000);
    REQUIRE(c);
    const char *keys[] = {"f/1", "f/2", "f/3"};
    for (int i = 0; i < 3; i++)
        CHECK_OK(put_str(c, keys[i], "x", 0));
    s3_stats st0, st1;
    s3_client_stats(c, &st0);
    /* 501 NotImplemented: not retried; one DELETE per key instead. */
    srv_push(501, NULL, "<Error><Code>NotImplemented</Code></Error>");
    int before = srv_count();
    CHECK_OK(s3_delete_many(c, keys, 3));
    REQUIRE(srv_count() - before == 4);
    CHECK(strcmp(srv_rec(before)->method, "POST") == 0);
    for (int i = 0; i < 3; i++) {
        CHECK(strcmp(srv_rec(before + 1 + i)->method, "DELETE") == 0);
        CHECK(!has_obj(keys[i]));
    }
    s3_client_stats(c, &st1);
    CHECK(st1.deletes - st0.deletes == 3 && st1.batch_deletes - st0.batch_deletes == 1 &&
          st1.retries == st0.retries);
    /* 405 likewise. */
    srv_push(405, NULL, "<Error><Code>MethodNotAllowed</Code></Error>");
    before = srv_count();
    CHECK_OK(s3_delete_many(c, keys, 2));
    CHECK(srv_count() - before == 3);
    /* A failing single DELETE in the fallback is reported. */
    srv_push(501, NULL, NULL);
    srv_push(403, NULL, "<Error><Code>AccessDenied</Code></Error>");
    CHECK_RC(WP_EIO, s3_delete_many(c, keys, 3));
    CHECK(strstr(wp_errmsg(), "DELETE " BUCKET "/f/1") && strstr(wp_errmsg(), "AccessDenied"));
    s3_client_close(c);
}

typedef struct {
    int posts; /* POST ?delete attempts seen */
    char method[8], key[8], query[16];
} del_plan;

static void del_hook(void *arg, const s3_fault_req *req, s3_fault *out)
{
    del_plan *p = arg;
    if (strcmp(req->method, "POST") != 0)
        return;
    snprintf(p->method, sizeof p->method, "%s", req->method);
    snprintf(p->key, sizeof p->key, "%s", req->key);
    snprintf(p->query, sizeof p->query, "%s", req->query);
    if (p->posts++ == 0)
        out->kind = S3_FAULT_RESET_AFTER; /* applied, answer lost */
}

TEST(delete_many_retry)
{
    srv_reset();
    s3_client *c = client(true, 3, 2000);
    REQUIRE(c);
    const char *keys[] = {"r/1", "r/2", "r/ctl\x01key"};
    for (int i = 0; i < 3; i++)
        CHECK_OK(put_str(c, keys[i], "x", 0));
    /* 503 SlowDown twice: the same batch is sent three times. */
    srv_push(503, NULL, SLOWDOWN);
    srv_push(503, NULL, SLOWDOWN);
    s3_stats st0, st1;
    s3_client_stats(c, &st0);
    int before = srv_count();
    CHECK_OK(s3_delete_many(c, keys, 2));
    REQUIRE(srv_count() - before == 3);
    for (int i = 1; i < 3; i++)
        CHECK(srv_rec(before + i)->body_len == srv_rec(before)->body_len &&
              memcmp(srv_rec(before + i)->body, srv_rec(before)->body, srv_rec(before)->body_len) == 0);
    s3_client_stats(c, &st1);
    CHECK(st1.retries - st0.retries == 2 && st1.batch_deletes - st0.batch_deletes == 1);
    CHECK(!has_obj("r/1") && !has_obj("r/2"));
    /* A 200 whose body is an <Error> (not a DeleteResult) is retried too. */
    srv_push(200, NULL, "<Error><Code>InternalError</Code></Error>");
    before = srv_count();
    CHECK_OK(s3_delete_many(c, keys, 2));
    CHECK(srv_count() - before == 2);
    /* Exhausted retries: WP_EUNAVAILABLE. */
    for (int i = 0; i < 4; i++)
        srv_push(503, NULL, SLOWDOWN);
    CHECK_RC(WP_EUNAVAILABLE, s3_delete_many(c, keys, 2));
    CHECK(strstr(wp_errmsg(), "SlowDown") && strstr(wp_errmsg(), "4 attempts"));
    /* The fault hook sees the POST; a lost answer re-sends the batch. A key
     * XML cannot carry (a control byte) goes by a single DELETE. */
    CHECK_OK(put_str(c, "r/1", "x", 0));
    del_plan dp = {0};
    s3_client_set_fault(c, del_hook, &dp);
    before = srv_count();
    CHECK_OK(s3_delete_many(c, keys, 3));
    s3_client_set_fault(c, NULL, NULL);
    CHECK(dp.posts == 2 && strcmp(dp.method, "POST") == 0 && dp.key[0] == '\0' &&
          strcmp(dp.query, "delete=") == 0);
    REQUIRE(srv_count() - before == 3); /* POST (answer lost), POST, DELETE */
    CHECK(count_str(srv_rec(before)->body, srv_rec(before)->body_len, "<Object>") == 2);
    CHECK(strcmp(srv_rec(before + 2)->method, "DELETE") == 0 &&
          strcmp(srv_rec(before + 2)->path, "/" BUCKET "/r/ctl%01key") == 0);
    CHECK(!has_obj("r/1") && !has_obj(keys[2]));
    /* Only such keys: no POST at all. */
    before = srv_count();
    CHECK_OK(s3_delete_many(c, keys + 2, 1));
    CHECK(srv_count() - before == 1 && strcmp(srv_rec(before)->method, "DELETE") == 0);
    s3_client_close(c);
}

int main(void)
{
    if (srv_start() != 0) {
        perror("fake server");
        return 2;
    }
    RUN(uri_encode);
    RUN(backoff_bounds);
    RUN(parse_list_valid);
    RUN(parse_list_malformed);
    RUN(parse_error_body);
    RUN(sigv4_put_shape);
    RUN(sigv4_query_and_vhost);
    RUN(session_token_and_env_credentials);
    RUN(ranged_get_answers);
    RUN(answer_bounds);
    RUN(retry_policy);
    RUN(injected_faults);
    RUN(conditional_put_finds_own_object);
    RUN(connection_reuse);
    RUN(put_body_in_one_round_trip);
    RUN(multipart_shape);
    RUN(put_if_match);
    RUN(if_match_put_finds_own_object);
    RUN(get_ex_info);
    RUN(delete_many_batches);
    RUN(delete_many_key_errors);
    RUN(delete_many_fallback);
    RUN(delete_many_retry);
    srv_stop();
    return test_done();
}
