/* test_meta_etcd.c — the metadata conformance suite on etcd (a member this
 * test starts itself), plus etcd-only behaviour: the client's base64 and
 * JSON decoding of odd responses, bounded response sizes, unreachable and
 * hung endpoints, failover, unknown outcomes re-checked (through a proxy
 * that drops responses after etcd applied the request), corrupt records
 * (claims, nodes and generic records too), generic records' stored form,
 * watches, auth with token expiry, and measured latency (printed). */
#include "test.h"

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>

#include "conformance/meta_conformance.h"
#include "config/config.h"
#include "meta/etcd.h"
#include "meta/etcd_client.h"
#include "support/etcd_proc.h"

static etcd_cluster cl;

static int64_t ms_now(void) { return wp__now_ns() / 1000000; }

static meta *open_at(const char *endpoints, const char *prefix, int64_t timeout_ms,
                     const char *user, const char *pass)
{
    wp_config *cfg = NULL;
    meta *m = NULL;
    if (wp_config_default(&cfg) != 0)
        return NULL;
    snprintf(cfg->etcd_endpoints, sizeof cfg->etcd_endpoints, "%s", endpoints);
    snprintf(cfg->meta_prefix, sizeof cfg->meta_prefix, "%s", prefix);
    snprintf(cfg->etcd_username, sizeof cfg->etcd_username, "%s", user ? user : "");
    snprintf(cfg->etcd_password, sizeof cfg->etcd_password, "%s", pass ? pass : "");
    cfg->etcd_timeout_ms = timeout_ms;
    int rc = meta_etcd_open(cfg, &m);
    if (rc != 0)
        fprintf(stderr, "  (meta_etcd_open %s %s: %s)\n", endpoints, prefix, wp_errmsg());
    wp_config_free(cfg);
    return m;
}

typedef struct {
    char prefix[128];
    int n;
} et_store;

static meta *et_open_fresh(void *arg)
{
    et_store *s = arg;
    snprintf(s->prefix, sizeof s->prefix, "conf/%d-%d/", (int)getpid(), ++s->n);
    return open_at(cl.endpoints, s->prefix, 5000, NULL, NULL);
}

static meta *et_open_again(void *arg)
{
    et_store *s = arg;
    return open_at(cl.endpoints, s->prefix, 5000, NULL, NULL);
}

static etcd_client *raw_client(const char *endpoints, int64_t timeout_ms, size_t max_resp)
{
    etcd_options o = {.endpoints = endpoints, .timeout_ms = timeout_ms,
                      .max_response_bytes = max_resp};
    etcd_client *c = NULL;
    if (etcd_client_new(&o, &c) != 0)
        fprintf(stderr, "  etcd_client_new: %s\n", wp_errmsg());
    return c;
}

/* ---- base64 and JSON decoding ------------------------------------------ */

TEST(et_b64)
{
    uint8_t in[64], dec[64];
    char enc[128];
    for (size_t n = 0; n < 40; n++) {
        for (size_t i = 0; i < n; i++)
            in[i] = (uint8_t)(i * 97 + n);
        size_t el = etcd_b64_encode(in, n, enc);
        CHECK(el == 4 * ((n + 2) / 3) && strlen(enc) == el);
        CHECK(etcd_b64_decode(enc, el, dec) == (long)n && memcmp(in, dec, n) == 0);
    }
    etcd_b64_encode("foo", 3, enc);
    CHECK(strcmp(enc, "Zm9v") == 0);
    CHECK(etcd_b64_decode("Zm8=", 4, dec) == 2 && memcmp(dec, "fo", 2) == 0);
    static const char *const bad[] = {"abc", "ab=c", "a===", "====", "Zm9=", "Zg=A", "!!!!",
                                      "Zm9v\n", "Zg==Zg=="};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        CHECK(etcd_b64_decode(bad[i], strlen(bad[i]), dec) == -1);
}

static int parse_range_str(const char *s)
{
    etcd_result r;
    int rc = etcd_parse_range(s, strlen(s), &r);
    etcd_result_free(&r);
    return rc;
}

TEST(et_parse_odd)
{
    static const char *const bad[] = {
        "", "[]", "null", "{", "{}", "{\"header\":{}}", "{\"header\":{\"revision\":\"x\"}}",
        "{\"header\":{\"revision\":\"-4\"}}", "{\"header\":{\"revision\":1.5}}",
        "{\"header\":{\"revision\":\"9\"},\"kvs\":{}}",
        "{\"header\":{\"revision\":\"9\"},\"kvs\":[1]}",
        "{\"header\":{\"revision\":\"9\"},\"kvs\":[{}]}",
        "{\"header\":{\"revision\":\"9\"},\"kvs\":[{\"key\":\"!!\"}]}",
        "{\"header\":{\"revision\":\"9\"},\"kvs\":[{\"key\":\"AA==\"}]}",
        "{\"header\":{\"revision\":\"9\"},\"kvs\":[{\"key\":\"Zm9v\",\"value\":7}]}",
        "{\"header\":{\"revision\":\"9\"},\"kvs\":[{\"key\":\"Zm9v\",\"mod_revision\":\"9x\"}]}",
        "{\"header\":{\"revision\":\"9\"},\"kvs\":[{\"key\":\"Zm9v\",\"mod_revision\":\" 9\"}]}",
        "{\"header\":{\"revision\":\"9\"},\"kvs\":[{\"key\":\"Zm9v\",\"version\":\"-1\"}]}",
        "{\"header\":{\"revision\":\"9\"},\"count\":\"99999999999999999999\"}",
        "{\"header\":{\"revision\":\"9\"},\"more\":\"yes\"}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        int rc = parse_range_str(bad[i]);
        if (rc != WP_ECORRUPT)
            fprintf(stderr, "  accepted: %s (rc %d)\n", bad[i], rc);
        CHECK(rc == WP_ECORRUPT);
    }
    char deep[4100];
    for (int i = 0; i < 2048; i++)
        deep[i] = '[', deep[4095 - i] = ']';
    deep[4096] = '\0';
    CHECK(parse_range_str(deep) == WP_ECORRUPT);

    etcd_result r;
    const char *ok = "{\"header\":{\"revision\":\"12\"},\"kvs\":[{\"key\":\"Zm9v\",\"create_revision\""
                     ":\"3\",\"mod_revision\":11,\"value\":\"YmFy\"}],\"count\":\"1\",\"more\":true,"
                     "\"unknown\":[1,2]}";
    CHECK_OK(etcd_parse_range(ok, strlen(ok), &r));
    CHECK(r.revision == 12 && r.n_ops == 1 && r.ops[0].n_kvs == 1 && r.ops[0].more);
    if (r.n_ops == 1 && r.ops[0].n_kvs == 1) {
        etcd_kv *kv = &r.ops[0].kvs[0];
        CHECK(strcmp(kv->key, "foo") == 0 && kv->value_len == 3 && !memcmp(kv->value, "bar", 3));
        CHECK(kv->create_rev == 3 && kv->mod_rev == 11 && kv->lease == 0 && kv->version == 0);
    }
    etcd_result_free(&r);

    /* Txn: "succeeded" omitted when false, responses of each kind. */
    const char *t = "{\"header\":{\"revision\":\"7\"},\"responses\":[{\"response_range\":{\"kvs\":"
                    "[{\"key\":\"Zm9v\"}]}},{\"response_delete_range\":{\"deleted\":\"2\"}},"
                    "{\"response_put\":{}}]}";
    CHECK_OK(etcd_parse_txn(t, strlen(t), &r));
    CHECK(!r.succeeded && r.n_ops == 3);
    if (r.n_ops == 3)
        CHECK(r.ops[0].n_kvs == 1 && r.ops[1].count == 2);
    etcd_result_free(&r);
    static const char *const badtxn[] = {
        "{\"header\":{\"revision\":\"7\"},\"succeeded\":1}",
        "{\"header\":{\"revision\":\"7\"},\"responses\":[{\"response_other\":{}}]}",
        "{\"header\":{\"revision\":\"7\"},\"responses\":[{\"response_put\":5}]}",
        "{\"header\":{\"revision\":\"7\"},\"responses\":{}}",
    };
    for (size_t i = 0; i < sizeof badtxn / sizeof *badtxn; i++) {
        CHECK_RC(WP_ECORRUPT, etcd_parse_txn(badtxn[i], strlen(badtxn[i]), &r));
        etcd_result_free(&r);
    }
}

/* ---- a fake etcd answering canned responses ---------------------------- */

typedef struct {
    int lfd, port;
    pthread_t thr;
    atomic_bool stop;
    atomic_int requests;
    pthread_mutex_t mu;
    int status;
    char *body;
    size_t body_len;
} fake_srv;

static void fake_answer(fake_srv *f, int fd)
{
    char req[8192];
    size_t got = 0;
    for (;;) { /* read headers and the Content-Length body */
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, 2000) <= 0)
            return;
        ssize_t n = read(fd, req + got, sizeof req - 1 - got);
        if (n <= 0)
            return;
        got += (size_t)n;
        req[got] = '\0';
        char *end = strstr(req, "\r\n\r\n"), *cl_ = strcasestr(req, "Content-Length:");
        if (end && (!cl_ || got >= (size_t)(end + 4 - req) + (size_t)atol(cl_ + 15)))
            break;
    }
    atomic_fetch_add(&f->requests, 1);
    pthread_mutex_lock(&f->mu);
    char hdr[256];
    int hl = snprintf(hdr, sizeof hdr, "HTTP/1.1 %d X\r\nContent-Type: application/json\r\n"
                      "Content-Length: %zu\r\nConnection: close\r\n\r\n", f->status, f->body_len);
    bool ok = send(fd, hdr, (size_t)hl, MSG_NOSIGNAL) == hl; /* the client may hang up */
    for (size_t off = 0; ok && off < f->body_len;) {
        ssize_t w = send(fd, f->body + off, f->body_len - off, MSG_NOSIGNAL);
        ok = w > 0;
        off += ok ? (size_t)w : 0;
    }
    pthread_mutex_unlock(&f->mu);
}

static void *fake_main(void *arg)
{
    fake_srv *f = arg;
    while (!atomic_load(&f->stop)) {
        struct pollfd p = {f->lfd, POLLIN, 0};
        if (poll(&p, 1, 50) <= 0)
            continue;
        int fd = accept(f->lfd, NULL, NULL);
        if (fd < 0)
            continue;
        fake_answer(f, fd);
        close(fd);
    }
    return NULL;
}

static void fake_set(fake_srv *f, int status, const char *body, size_t len)
{
    pthread_mutex_lock(&f->mu);
    free(f->body);
    f->body = malloc(len + 1);
    memcpy(f->body, body, len);
    f->body_len = len;
    f->status = status;
    pthread_mutex_unlock(&f->mu);
    atomic_store(&f->requests, 0);
}

static bool fake_start(fake_srv *f)
{
    memset(f, 0, sizeof *f);
    pthread_mutex_init(&f->mu, NULL);
    struct sockaddr_in a;
    socklen_t len = sizeof a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    f->lfd = socket(AF_INET, SOCK_STREAM, 0);
    if (f->lfd < 0 || bind(f->lfd, (struct sockaddr *)&a, sizeof a) != 0 ||
        listen(f->lfd, 16) != 0 || getsockname(f->lfd, (struct sockaddr *)&a, &len) != 0)
        return false;
    f->port = ntohs(a.sin_port);
    return pthread_create(&f->thr, NULL, fake_main, f) == 0;
}

static void fake_stop(fake_srv *f)
{
    atomic_store(&f->stop, true);
    pthread_join(f->thr, NULL);
    close(f->lfd);
    free(f->body);
    pthread_mutex_destroy(&f->mu);
}

static int fake_range(etcd_client *c, int64_t timeout_ms)
{
    etcd_op op = {.kind = ETCD_OP_RANGE, .key = "k"};
    etcd_result r;
    int rc = etcd_range(c, &op, etcd_deadline(c, timeout_ms), &r);
    etcd_result_free(&r);
    return rc;
}

TEST(et_fake_responses)
{
    fake_srv f;
    REQUIRE(fake_start(&f));
    char ep[64];
    snprintf(ep, sizeof ep, "http://127.0.0.1:%d", f.port);
    etcd_client *c = raw_client(ep, 400, 1024 * 1024);
    REQUIRE(c);

    /* A body over the bound is refused, not buffered. */
    size_t big = 2 * 1024 * 1024;
    char *huge = malloc(big);
    REQUIRE(huge);
    memset(huge, ' ', big);
    huge[0] = '{';
    huge[big - 1] = '}';
    fake_set(&f, 200, huge, big);
    free(huge);
    CHECK_RC(WP_ETOOBIG, fake_range(c, 0));

    static const char *const garbage[] = {"not json", "{\"header\":{\"revision\":\"x\"}}",
                                          "{\"header\":{\"revision\":\"5\"},\"kvs\":[{\"key\":1}]}"};
    for (size_t i = 0; i < 3; i++) {
        fake_set(&f, 200, garbage[i], strlen(garbage[i]));
        CHECK_RC(WP_ECORRUPT, fake_range(c, 0));
    }
    const char *e400 = "{\"error\":\"bad\",\"message\":\"bad key\",\"code\":3}";
    fake_set(&f, 400, e400, strlen(e400));
    CHECK_RC(WP_EINVAL, fake_range(c, 0));
    CHECK(strstr(wp_errmsg(), "bad key") != NULL);

    /* A transient 500: a read is retried until its deadline... */
    const char *e500 = "{\"error\":\"x\",\"message\":\"etcdserver: leader changed\",\"code\":14}";
    fake_set(&f, 500, e500, strlen(e500));
    int64_t t0 = ms_now();
    CHECK_RC(WP_EUNAVAILABLE, fake_range(c, 400));
    int64_t took = ms_now() - t0;
    CHECK(took >= 380 && took < 1500);
    CHECK(atomic_load(&f.requests) >= 2);
    CHECK(strstr(wp_errmsg(), ep) != NULL);
    /* ...a write is not: its outcome is unknown, the caller decides. */
    fake_set(&f, 500, e500, strlen(e500));
    etcd_result r;
    CHECK_RC(WP_EUNAVAILABLE, etcd_put(c, "k", "v", 1, 0, 0, &r));
    CHECK(r.maybe_applied);
    CHECK(atomic_load(&f.requests) == 1);
    etcd_result_free(&r);
    etcd_client_free(c);
    fake_stop(&f);
}

/* ---- unreachable, hung, failover --------------------------------------- */

static int dead_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    socklen_t len = sizeof a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd, (struct sockaddr *)&a, sizeof a);
    getsockname(fd, (struct sockaddr *)&a, &len);
    close(fd);
    return ntohs(a.sin_port);
}

TEST(et_unreachable)
{
    char ep[64];
    snprintf(ep, sizeof ep, "http://127.0.0.1:%d", dead_port());
    wp_config *cfg = NULL;
    REQUIRE(wp_config_default(&cfg) == 0);
    snprintf(cfg->etcd_endpoints, sizeof cfg->etcd_endpoints, "%s", ep);
    cfg->etcd_timeout_ms = 500;
    meta *m = (meta *)1;
    int64_t t0 = ms_now();
    CHECK_RC(WP_EUNAVAILABLE, meta_etcd_open(cfg, &m));
    int64_t took = ms_now() - t0;
    CHECK(m == NULL);
    CHECK(took >= 450 && took < 1500);
    CHECK(strstr(wp_errmsg(), ep) != NULL);
    etcd_client *c = raw_client(ep, 500, 0);
    etcd_watch *w = (etcd_watch *)1;
    t0 = ms_now();
    CHECK_RC(WP_EUNAVAILABLE, etcd_watch_start(c, "k", false, 0, NULL, NULL, NULL, &w));
    CHECK(w == NULL && ms_now() - t0 < 1500);
    etcd_client_free(c);
    snprintf(cfg->etcd_endpoints, sizeof cfg->etcd_endpoints, "ftp://x");
    CHECK_RC(WP_EINVAL, meta_etcd_open(cfg, &m));
    cfg->meta_prefix[0] = '\0';
    CHECK_RC(WP_EINVAL, meta_etcd_open(cfg, &m));
    wp_config_free(cfg);
}

TEST(et_failover)
{
    char eps[256];
    snprintf(eps, sizeof eps, "http://127.0.0.1:%d, %s", dead_port(), cl.endpoints);
    meta *m = open_at(eps, "failover", 3000, NULL, NULL);
    REQUIRE(m);
    meta_log l;
    CHECK_OK(m->ops->log_create(m, "f", 1, &l));
    CHECK_OK(m->ops->log_get(m, "f", &l));
    CHECK(strcmp(etcd_client_endpoint(meta_etcd_client(m)), cl.m[0].url) == 0);
    m->ops->close(m);
}

TEST(et_hung_endpoint)
{
    etcd_proxy *p = etcd_proxy_start(cl.m[0].client_port);
    REQUIRE(p);
    meta *m = open_at(etcd_proxy_url(p), "hung", 700, NULL, NULL);
    if (!m)
        etcd_proxy_stop(p);
    REQUIRE(m);
    meta_log l;
    CHECK_OK(m->ops->log_create(m, "h", 1, &l));
    etcd_proxy_blackhole(p, true);
    int64_t t0 = ms_now();
    CHECK_RC(WP_EUNAVAILABLE, m->ops->log_get(m, "h", &l));
    int64_t took = ms_now() - t0;
    CHECK(took >= 650 && took < 2000);
    CHECK(strstr(wp_errmsg(), etcd_proxy_url(p)) != NULL);
    etcd_proxy_blackhole(p, false);
    CHECK_OK(m->ops->log_get(m, "h", &l));
    m->ops->close(m);
    etcd_proxy_stop(p);
}

/* ---- unknown outcomes: the response is lost after etcd applied it ------ */

typedef struct {
    meta *direct;
    const char *name;
    int64_t bump;
} bump_hook;

/* Runs inside the proxy, after etcd applied A's write and before A learns
 * anything: another client updates the log on top of it. */
static void bump_on_drop(void *arg)
{
    bump_hook *h = arg;
    meta_log l;
    if (h->direct->ops->log_get(h->direct, h->name, &l) == 0) {
        l.epoch += h->bump;
        h->direct->ops->log_update(h->direct, &l);
    }
}

/* Runs inside the proxy after etcd applied A's delete of a log: another
 * client creates a log of the same name (a new id). */
static void recreate_on_drop(void *arg)
{
    bump_hook *h = arg;
    meta_log l;
    h->direct->ops->log_create(h->direct, h->name, 5, &l);
}

TEST(et_unknown_outcome)
{
    etcd_proxy *p = etcd_proxy_start(cl.m[0].client_port);
    REQUIRE(p);
    meta *a = open_at(etcd_proxy_url(p), "unknown", 3000, NULL, NULL);
    meta *b = open_at(cl.endpoints, "unknown", 3000, NULL, NULL);
    if (!a || !b) {
        etcd_proxy_stop(p);
        CHECK(a && b);
        return;
    }
    meta_log l, g, first;
    /* Create: applied, response lost, re-checked: one log, one id. */
    etcd_proxy_drop(p, "/v3/kv/txn", 1, NULL, NULL);
    CHECK_OK(a->ops->log_create(a, "x", 5, &l));
    CHECK(etcd_proxy_dropped(p) == 1);
    CHECK_OK(b->ops->log_get(b, "x", &g));
    CHECK(g.log_id == l.log_id && g.rev == l.rev);
    CHECK_OK(b->ops->log_create(b, "y", 5, &g));
    CHECK(g.log_id == l.log_id + 1); /* the generator moved exactly once */

    /* Update: applied once, not twice. */
    first = l;
    l.epoch = 1;
    etcd_proxy_drop(p, "/v3/kv/txn", 1, NULL, NULL);
    CHECK_OK(a->ops->log_update(a, &l));
    CHECK_OK(b->ops->log_get(b, "x", &g));
    CHECK(g.epoch == 1 && g.rev == l.rev && l.rev > first.rev);

    /* Update applied, then another client updated on top before the retry:
     * still ours (found as the first change after our base revision). */
    bump_hook h = {b, "x", 10};
    int64_t base = l.rev;
    l.epoch = 2;
    etcd_proxy_drop(p, "/v3/kv/txn", 1, bump_on_drop, &h);
    CHECK_OK(a->ops->log_update(a, &l));
    CHECK_OK(b->ops->log_get(b, "x", &g));
    CHECK(g.epoch == 12 && l.rev > base && l.rev < g.rev);
    /* Not applied: l.rev is stale now (B wrote on top), the txn fails and
     * its answer is lost; the re-check finds B's write first: a conflict. */
    l.epoch = 3;
    etcd_proxy_drop(p, "/v3/kv/txn", 1, NULL, NULL);
    CHECK_RC(WP_ECONFLICT, a->ops->log_update(a, &l));
    CHECK(etcd_proxy_dropped(p) == 4);
    CHECK_OK(b->ops->log_get(b, "x", &g));
    CHECK(g.epoch == 12);

    /* seg_create, reader_put, log_delete, lease_revoke. */
    meta_seg s = mc_seg(g.log_id, 0, 0);
    etcd_proxy_drop(p, "/v3/kv/txn", 1, NULL, NULL);
    CHECK_OK(a->ops->seg_create(a, &g, &s));
    meta_seg gs;
    CHECK_OK(b->ops->seg_get(b, g.log_id, 0, &gs));
    CHECK(gs.rev == s.rev);
    int64_t lease = 0;
    CHECK_OK(a->ops->lease_grant(a, 30000, &lease));
    meta_reader r = mc_reader(g.log_id, "rd", 0, 0, lease);
    etcd_proxy_drop(p, "/v3/kv/txn", 1, NULL, NULL);
    CHECK_OK(a->ops->reader_put(a, &r));
    CHECK(mc_count_readers(b, g.log_id) == 1);
    /* claim_create: applied, answer lost, found by its tag: created once,
     * at the rev it applied at; claim_delete: gone on the retry, done. */
    meta_claim c = mc_claim(g.log_id, 0, "ls-1", lease, 1), gc;
    etcd_proxy_drop(p, "/v3/kv/txn", 1, NULL, NULL);
    CHECK_OK(a->ops->claim_create(a, &c));
    CHECK_OK(b->ops->claim_get(b, g.log_id, 0, &gc));
    CHECK(gc.rev == c.rev && strcmp(gc.node_id, "ls-1") == 0);
    meta_claim c2 = mc_claim(g.log_id, 0, "ls-2", lease, 1);
    CHECK_RC(WP_EEXIST, b->ops->claim_create(b, &c2));
    etcd_proxy_drop(p, "/v3/kv/txn", 1, NULL, NULL);
    CHECK_OK(a->ops->claim_delete(a, g.log_id, 0, c.rev));
    CHECK_RC(WP_ENOENT, b->ops->claim_get(b, g.log_id, 0, &gc));
    etcd_proxy_drop(p, "/v3/lease/revoke", 1, NULL, NULL);
    CHECK_OK(a->ops->lease_revoke(a, lease));
    CHECK(mc_count_readers(b, g.log_id) == 0);
    etcd_proxy_drop(p, "/v3/kv/txn", 1, NULL, NULL);
    CHECK_OK(a->ops->log_delete(a, "x", g.rev));
    CHECK_RC(WP_ENOENT, b->ops->log_get(b, "x", &g));
    /* An unconditional delete applied, its answer lost, and the name
     * created again (a new log) before the retry: the delete is done; the
     * new log is not touched (the retry used to find it and delete it). */
    meta_log z, z2;
    CHECK_OK(b->ops->log_create(b, "z", 5, &z));
    bump_hook rh = {b, "z", 0};
    etcd_proxy_drop(p, "/v3/kv/txn", 1, recreate_on_drop, &rh);
    CHECK_OK(a->ops->log_delete(a, "z", 0));
    CHECK_OK(b->ops->log_get(b, "z", &z2));
    CHECK(z2.log_id != z.log_id);
    int dropped = etcd_proxy_dropped(p);
    if (dropped != 11)
        fprintf(stderr, "  dropped %d\n", dropped);
    CHECK(dropped == 11); /* every drop above happened */
    a->ops->close(a);
    b->ops->close(b);
    etcd_proxy_stop(p);
}

/* ---- corrupt records, schema version ----------------------------------- */

static void raw_put(etcd_client *c, const char *key, const void *v, size_t len)
{
    etcd_result r;
    if (etcd_put(c, key, v, len, 0, 0, &r) != 0)
        fprintf(stderr, "  raw put %s: %s\n", key, wp_errmsg());
    etcd_result_free(&r);
}

TEST(et_corrupt_records)
{
    meta *m = open_at(cl.endpoints, "corrupt", 3000, NULL, NULL);
    etcd_client *c = raw_client(cl.endpoints, 3000, 0);
    REQUIRE(m && c);
    meta_log l, g;
    CHECK_OK(m->ops->log_create(m, "c", 1, &l));
    meta_seg s = mc_seg(l.log_id, 0, 0);
    CHECK_OK(m->ops->seg_create(m, &l, &s));

    raw_put(c, "corrupt/logs/c", "\x01L", 2);
    CHECK_RC(WP_ECORRUPT, m->ops->log_get(m, "c", &g));
    CHECK(strstr(wp_errmsg(), "corrupt/logs/c") != NULL);
    raw_put(c, "corrupt/logs/c", "\x02L", 2);
    CHECK_RC(WP_ECORRUPT, m->ops->log_get(m, "c", &g));
    CHECK(strstr(wp_errmsg(), "format") != NULL);

    char key[128];
    uint8_t v[2 + 9 * 8 + 16];
    memset(v, 0, sizeof v);
    v[0] = 1;
    v[1] = 'S';
    v[2] = (uint8_t)l.log_id; /* log id, seg 0, state 9 */
    v[18] = 9;
    snprintf(key, sizeof key, "corrupt/segs/%020lld/%020d", (long long)l.log_id, 0);
    raw_put(c, key, v, sizeof v);
    meta_seg gs;
    CHECK_RC(WP_ECORRUPT, m->ops->seg_get(m, l.log_id, 0, &gs));
    meta_seg *segs = (meta_seg *)1;
    size_t n = 7;
    CHECK_RC(WP_ECORRUPT, m->ops->seg_list(m, l.log_id, &segs, &n));
    CHECK(segs == NULL && n == 0);
    v[18] = 1;
    v[10] = 5; /* seg id 5 under key 0 */
    raw_put(c, key, v, sizeof v);
    CHECK_RC(WP_ECORRUPT, m->ops->seg_get(m, l.log_id, 0, &gs));

    raw_put(c, "corrupt/version", "2", 1);
    meta *m2 = (meta *)1;
    wp_config *cfg = NULL;
    REQUIRE(wp_config_default(&cfg) == 0);
    snprintf(cfg->etcd_endpoints, sizeof cfg->etcd_endpoints, "%s", cl.endpoints);
    snprintf(cfg->meta_prefix, sizeof cfg->meta_prefix, "corrupt");
    CHECK_RC(WP_EINVAL, meta_etcd_open(cfg, &m2));
    CHECK(strstr(wp_errmsg(), "schema version 2") != NULL);
    raw_put(c, "corrupt/version", "1", 1);
    raw_put(c, "corrupt/logidgen", "x1", 2);
    CHECK_RC(WP_ECORRUPT, meta_etcd_open(cfg, &m2));
    CHECK(m2 == NULL);
    wp_config_free(cfg);
    etcd_client_free(c);
    m->ops->close(m);
}

/* A raw put attached to a lease (0: none). */
static void raw_put_lease(etcd_client *c, const char *key, const void *v, size_t len, int64_t lease)
{
    etcd_result r;
    if (etcd_put(c, key, v, len, lease, 0, &r) != 0)
        fprintf(stderr, "  raw put %s: %s\n", key, wp_errmsg());
    etcd_result_free(&r);
}

/* Bad claim values are WP_ECORRUPT naming the key, from get, list and
 * create (which reads the holder for its message). */
TEST(et_corrupt_claims)
{
    meta *m = open_at(cl.endpoints, "corruptc", 3000, NULL, NULL);
    etcd_client *c = raw_client(cl.endpoints, 3000, 0);
    if (!m || !c) {
        if (m)
            m->ops->close(m);
        etcd_client_free(c);
        CHECK(m && c);
        return;
    }
    meta_log l;
    CHECK_OK(m->ops->log_create(m, "c", 1, &l));
    meta_seg s = mc_seg(l.log_id, 0, 0);
    CHECK_OK(m->ops->seg_create(m, &l, &s));
    int64_t lease = 0;
    CHECK_OK(m->ops->lease_grant(m, 60000, &lease));
    meta_claim good = mc_claim(l.log_id, 0, "ls-1", lease, 1), g;
    CHECK_OK(m->ops->claim_create(m, &good));
    char key[128];
    snprintf(key, sizeof key, "corruptc/claims/%020lld/%020d", (long long)l.log_id, 0);

    uint8_t v[META_CLAIM_VALUE_MAX + 1];
    size_t len = meta_claim_encode(&good, NULL, v);
    /* Each case stores a bad value (attached to the lease unless said
     * otherwise). */
    for (int i = 0; i < 9; i++) {
        uint8_t x[META_CLAIM_VALUE_MAX + 1];
        size_t xlen = len;
        int64_t xlease = lease;
        meta_claim other = good;
        memcpy(x, v, len);
        switch (i) {
        case 0: /* too short */
            xlen = 2;
            break;
        case 1: /* unknown format */
            x[0] = 2;
            break;
        case 2: /* another kind */
            x[1] = 'N';
            break;
        case 3: /* bad node id */
            x[len - 1] = '/';
            break;
        case 4: /* no lease on the key: differs from the value's */
            xlease = 0;
            break;
        case 5: /* seg 5 under key 0 */
            other.seg_id = 5;
            xlen = meta_claim_encode(&other, NULL, x);
            break;
        case 6: /* log id 0 */
            memset(x + 2, 0, 8);
            break;
        case 7: /* attempt 0 */
            memset(x + 34, 0, 8);
            break;
        case 8: /* one byte too long */
            memset(x + len, 'x', sizeof x - len);
            xlen = sizeof x;
            break;
        }
        raw_put_lease(c, key, x, xlen, xlease);
        int rc = m->ops->claim_get(m, l.log_id, 0, &g);
        if (rc != WP_ECORRUPT || !strstr(wp_errmsg(), key))
            fprintf(stderr, "  case %d: %d %s\n", i, rc, wp_errmsg());
        CHECK(rc == WP_ECORRUPT);
        CHECK(strstr(wp_errmsg(), key) != NULL);
        meta_claim *cs = (meta_claim *)1;
        size_t n = 7;
        CHECK_RC(WP_ECORRUPT, m->ops->claim_list(m, l.log_id, &cs, &n));
        CHECK(cs == NULL && n == 0);
        CHECK_RC(WP_ECORRUPT, m->ops->claim_list(m, 0, &cs, &n));
        meta_claim again = mc_claim(l.log_id, 0, "ls-2", lease, 1);
        CHECK_RC(WP_ECORRUPT, m->ops->claim_create(m, &again));
    }
    /* Restored (a raw put of a good value on the lease): readable again. */
    raw_put_lease(c, key, v, len, lease);
    CHECK_OK(m->ops->claim_get(m, l.log_id, 0, &g));
    CHECK(strcmp(g.node_id, "ls-1") == 0 && g.lease_id == lease && g.rev > good.rev);
    CHECK_OK(m->ops->lease_revoke(m, lease));
    CHECK_RC(WP_ENOENT, m->ops->claim_get(m, l.log_id, 0, &g));
    etcd_client_free(c);
    m->ops->close(m);
}

/* Node values: a format-2 value (as servers from before the upload figures
 * wrote it) reads with the figures 0; a negative figure is WP_ECORRUPT
 * naming the key, from get and list. */
TEST(et_node_values)
{
    meta *m = open_at(cl.endpoints, "corruptn", 3000, NULL, NULL);
    etcd_client *c = raw_client(cl.endpoints, 3000, 0);
    if (!m || !c) {
        if (m)
            m->ops->close(m);
        etcd_client_free(c);
        CHECK(m && c);
        return;
    }
    int64_t lease = 0;
    CHECK_OK(m->ops->lease_grant(m, 60000, &lease));
    meta_node n = {.lease_id = lease, .registered_ms = 5, .disk_free = 100, .load = 2,
                   .segments = 4, .upload_segments = 1, .upload_bytes = 4096,
                   .upload_lag_ms = 1500};
    snprintf(n.id, sizeof n.id, "ls-1");
    snprintf(n.kind, sizeof n.kind, "logstore");
    snprintf(n.addr, sizeof n.addr, "h:1");
    CHECK_OK(m->ops->node_put(m, &n));
    meta_node g;
    CHECK_OK(m->ops->node_get(m, "ls-1", &g));
    CHECK(g.segments == 4 && g.upload_segments == 1 && g.upload_bytes == 4096 &&
          g.upload_lag_ms == 1500);

    const char *key = "corruptn/nodes/ls-1";
    uint8_t v[META_NODE_VALUE_MAX];
    meta_node old = n;
    old.segments = old.upload_segments = old.upload_bytes = old.upload_lag_ms = 0;
    size_t len = meta_node_encode(&old, v);
    CHECK(v[0] == 2);
    raw_put_lease(c, key, v, len, lease);
    memset(&g, 0xab, sizeof g);
    CHECK_OK(m->ops->node_get(m, "ls-1", &g));
    CHECK(g.disk_free == 100 && g.load == 2 && g.segments == 0 && g.upload_segments == 0 &&
          g.upload_bytes == 0 && g.upload_lag_ms == 0 && strcmp(g.addr, "h:1") == 0);

    len = meta_node_encode(&n, v);
    CHECK(v[0] == 3);
    for (int i = 0; i < 4; i++) { /* segments .. upload_lag_ms, after load */
        uint8_t x[META_NODE_VALUE_MAX];
        memcpy(x, v, len);
        meta_le64_put(x + 34 + 8 * i, (uint64_t)-1);
        raw_put_lease(c, key, x, len, lease);
        CHECK_RC(WP_ECORRUPT, m->ops->node_get(m, "ls-1", &g));
        CHECK(strstr(wp_errmsg(), key) != NULL);
        meta_node *ns = (meta_node *)1;
        size_t cnt = 7;
        CHECK_RC(WP_ECORRUPT, m->ops->node_list(m, "", &ns, &cnt));
        CHECK(ns == NULL && cnt == 0);
    }
    CHECK_OK(m->ops->node_put(m, &n)); /* a put replaces it */
    CHECK_OK(m->ops->node_get(m, "ls-1", &g));
    CHECK(g.upload_bytes == 4096);
    CHECK_OK(m->ops->lease_revoke(m, lease));
    etcd_client_free(c);
    m->ops->close(m);
}

/* ---- watch ------------------------------------------------------------- */

typedef struct {
    pthread_mutex_t mu;
    int64_t revs[64];
    int types[64];
    int n;
} ev_log;

static void on_events(void *arg, const etcd_event *ev, size_t n)
{
    ev_log *e = arg;
    pthread_mutex_lock(&e->mu);
    for (size_t i = 0; i < n && e->n < 64; i++) {
        e->revs[e->n] = ev[i].kv.mod_rev;
        e->types[e->n++] = ev[i].type;
    }
    pthread_mutex_unlock(&e->mu);
}

static int ev_count(ev_log *e)
{
    pthread_mutex_lock(&e->mu);
    int n = e->n;
    pthread_mutex_unlock(&e->mu);
    return n;
}

static bool wait_events(ev_log *e, int n)
{
    for (int64_t end = ms_now() + 3000; ms_now() < end; mc_sleep_ms(5))
        if (ev_count(e) >= n)
            return true;
    return false;
}

TEST(et_watch_segments)
{
    meta *m = open_at(cl.endpoints, "watch", 3000, NULL, NULL);
    REQUIRE(m);
    meta_log l;
    CHECK_OK(m->ops->log_create(m, "w", 1, &l));
    ev_log live = {.mu = PTHREAD_MUTEX_INITIALIZER}, hist = {.mu = PTHREAD_MUTEX_INITIALIZER};
    etcd_watch *w = NULL, *wh = NULL;
    CHECK_OK(meta_etcd_watch_segments(m, l.log_id, 0, on_events, NULL, &live, &w));
    meta_seg s[3];
    for (int i = 0; i < 3; i++) {
        s[i] = mc_seg(l.log_id, i, 0);
        CHECK_OK(m->ops->seg_create(m, &l, &s[i]));
    }
    s[0].state = WP_SEG_COMPLETED;
    CHECK_OK(m->ops->seg_update(m, &s[0]));
    CHECK_OK(m->ops->seg_delete(m, l.log_id, 1, 0));
    CHECK(wait_events(&live, 5));
    /* The same history from the first revision. */
    CHECK_OK(meta_etcd_watch_segments(m, l.log_id, s[0].rev - 3, on_events, NULL, &hist, &wh));
    CHECK(wait_events(&hist, 5));
    mc_sleep_ms(50);
    CHECK(ev_count(&live) == 5 && ev_count(&hist) == 5);
    for (int i = 0; i < 5 && i < live.n; i++) {
        CHECK(live.revs[i] == hist.revs[i]);
        CHECK(i == 0 || live.revs[i] > live.revs[i - 1]);
    }
    CHECK(live.revs[3] == s[0].rev && live.types[4] == ETCD_EV_DELETE);
    int64_t t0 = ms_now();
    etcd_watch_stop(w);
    etcd_watch_stop(wh);
    CHECK(ms_now() - t0 < 300); /* stopping does not wait for a poll tick */
    m->ops->close(m);
}

/* ---- generic records: stored form, corrupt records, unknown outcomes --- */

/* Reads one raw key: its kv (in *res; free it with etcd_result_free), or
 * NULL if absent. */
static const etcd_kv *raw_get(etcd_client *c, const char *key, etcd_result *res)
{
    etcd_op op = {.kind = ETCD_OP_RANGE, .key = key};
    if (etcd_range(c, &op, 0, res) != 0) {
        fprintf(stderr, "  raw range %s: %s\n", key, wp_errmsg());
        return NULL;
    }
    return res->n_ops == 1 && res->ops[0].n_kvs == 1 ? &res->ops[0].kvs[0] : NULL;
}

static void raw_del(etcd_client *c, const char *key)
{
    etcd_result r;
    if (etcd_delete(c, key, false, 0, &r) != 0)
        fprintf(stderr, "  raw delete %s: %s\n", key, wp_errmsg());
    etcd_result_free(&r);
}

/* docs/metadata.md §5.1, §5.2: a record is the key P kv/<key> holding the
 * raw bytes, on the record's etcd lease; rev and create_rev are etcd's
 * mod_revision and create_revision. Keys next to kv/ are not records. */
TEST(et_kv_layout)
{
    meta *m = open_at(cl.endpoints, "kvl", 3000, NULL, NULL);
    etcd_client *c = raw_client(cl.endpoints, 3000, 0);
    if (!m || !c) {
        if (m)
            m->ops->close(m);
        etcd_client_free(c);
        CHECK(m && c);
        return;
    }
    int64_t lease = 0, rev = 0, rev2 = 0;
    CHECK_OK(m->ops->lease_grant(m, 60000, &lease));
    const uint8_t v[] = {0, 1, 2, 0xff, 0, 'x'};
    CHECK_OK(m->ops->kv_put(m, "stream/channels/orders", v, sizeof v, 0, lease, &rev));
    etcd_result res;
    const etcd_kv *kv = raw_get(c, "kvl/kv/stream/channels/orders", &res);
    CHECK(kv != NULL);
    if (kv)
        CHECK(kv->value_len == sizeof v && memcmp(kv->value, v, sizeof v) == 0 &&
              kv->lease == lease && kv->mod_rev == rev && kv->create_rev == rev);
    etcd_result_free(&res);
    CHECK_OK(m->ops->kv_put(m, "stream/channels/orders", "y", 1, rev, 0, &rev2));
    kv = raw_get(c, "kvl/kv/stream/channels/orders", &res);
    CHECK(kv != NULL);
    if (kv)
        CHECK(kv->value_len == 1 && kv->value[0] == 'y' && kv->lease == 0 &&
              kv->mod_rev == rev2 && kv->create_rev == rev);
    etcd_result_free(&res);

    /* Written raw, read as a record. */
    raw_put(c, "kvl/kv/raw/x", "hello", 5);
    meta_kv g;
    CHECK_OK(m->ops->kv_get(m, "raw/x", &g));
    CHECK(g.len == 5 && memcmp(g.value, "hello", 6) == 0 && g.lease_id == 0 && g.rev > rev2 &&
          g.create_rev == g.rev);
    meta_kv_free(&g);

    /* Neighbours of the kv/ range, a log named like a record, a setting
     * named kv: none is a record. */
    raw_put(c, "kvl/kv", "x", 1);
    raw_put(c, "kvl/kvx/a", "x", 1);
    raw_put(c, "kvl/kv.", "x", 1);
    meta_log l;
    CHECK_OK(m->ops->log_create(m, "kv/raw/y", 1, &l));
    CHECK_OK(m->ops->setting_put(m, "kv", "x"));
    meta_kv *kvs = NULL;
    size_t n = 0;
    CHECK_OK(m->ops->kv_list(m, "", &kvs, &n));
    CHECK(n == 2);
    if (n == 2)
        CHECK(strcmp(kvs[0].key, "raw/x") == 0 && strcmp(kvs[1].key, "stream/channels/orders") == 0);
    meta_kv_free_list(kvs, n);
    CHECK_OK(m->ops->lease_revoke(m, lease));
    CHECK(mc_kv_is(m, "stream/channels/orders", "y", 1)); /* detached by the update */
    etcd_client_free(c);
    m->ops->close(m);
}

/* Keys and values that break the rules (written behind the store's back)
 * are WP_ECORRUPT naming the key, from get and list. */
TEST(et_corrupt_kv)
{
    meta *m = open_at(cl.endpoints, "corruptkv", 3000, NULL, NULL);
    etcd_client *c = raw_client(cl.endpoints, 3000, 0);
    if (!m || !c) {
        if (m)
            m->ops->close(m);
        etcd_client_free(c);
        CHECK(m && c);
        return;
    }
    CHECK_OK(m->ops->kv_put(m, "b/good", "x", 1, 0, 0, NULL));
    static const char *const bad_keys[] = {"corruptkv/kv/a//b", "corruptkv/kv/a/", "corruptkv/kv/",
                                           "corruptkv/kv/a b", "corruptkv/kv//a",
                                           "corruptkv/kv/caf\xc3\xa9"};
    for (size_t i = 0; i < sizeof bad_keys / sizeof *bad_keys; i++) {
        raw_put(c, bad_keys[i], "x", 1);
        meta_kv *kvs = (meta_kv *)1;
        size_t n = 7;
        int rc = m->ops->kv_list(m, "", &kvs, &n);
        if (rc != WP_ECORRUPT || !strstr(wp_errmsg(), bad_keys[i]))
            fprintf(stderr, "  case %zu: %d %s\n", i, rc, wp_errmsg());
        CHECK(rc == WP_ECORRUPT);
        CHECK(strstr(wp_errmsg(), bad_keys[i]) != NULL);
        CHECK(kvs == NULL && n == 0);
        CHECK_OK(m->ops->kv_list(m, "b/", &kvs, &n)); /* a list that does not meet it */
        CHECK(n == 1);
        meta_kv_free_list(kvs, n);
        raw_del(c, bad_keys[i]);
    }
    uint8_t *big = calloc(1, META_KV_VALUE_MAX + 1);
    REQUIRE(big);
    raw_put(c, "corruptkv/kv/b/big", big, META_KV_VALUE_MAX + 1);
    free(big);
    meta_kv g;
    CHECK_RC(WP_ECORRUPT, m->ops->kv_get(m, "b/big", &g));
    CHECK(strstr(wp_errmsg(), "corruptkv/kv/b/big") != NULL);
    CHECK(g.value == NULL);
    meta_kv *kvs = (meta_kv *)1;
    size_t n = 7;
    CHECK_RC(WP_ECORRUPT, m->ops->kv_list(m, "b", &kvs, &n));
    CHECK(kvs == NULL && n == 0);
    raw_del(c, "corruptkv/kv/b/big");
    CHECK(mc_kv_list_is(m, "", (const char *const[]){"b/good"}, 1));
    etcd_client_free(c);
    m->ops->close(m);
}

typedef struct {
    meta *direct;
    const char *key;
} kv_bump_hook;

/* Inside the proxy, after etcd applied A's write and before A learns
 * anything: another client upserts the record on top of it. */
static void kv_bump_on_drop(void *arg)
{
    kv_bump_hook *h = arg;
    h->direct->ops->kv_put(h->direct, h->key, "by-b", 4, -1, 0, NULL);
}

/* Every kv write whose answer is lost after etcd applied it: re-sent and
 * re-checked by value and lease (§5.5), reported once with the rev it
 * applied at; one that did not apply keeps its answer. */
TEST(et_kv_unknown_outcome)
{
    etcd_proxy *p = etcd_proxy_start(cl.m[0].client_port);
    REQUIRE(p);
    meta *a = open_at(etcd_proxy_url(p), "unknownkv", 3000, NULL, NULL);
    meta *b = open_at(cl.endpoints, "unknownkv", 3000, NULL, NULL);
    if (!a || !b) {
        if (a)
            a->ops->close(a);
        if (b)
            b->ops->close(b);
        etcd_proxy_stop(p);
        CHECK(a && b);
        return;
    }
    int64_t lease = 0, rev = 0, rev2 = 0;
    meta_kv g;
    CHECK_OK(a->ops->lease_grant(a, 30000, &lease));
    /* Create only: applied, answer lost: created (not WP_EEXIST). */
    etcd_proxy_drop(p, "/v3/kv/txn", 1, NULL, NULL);
    CHECK_OK(a->ops->kv_put(a, "stream/coord", "node-a", 6, 0, lease, &rev));
    CHECK_OK(b->ops->kv_get(b, "stream/coord", &g));
    CHECK(g.rev == rev && g.create_rev == rev && g.lease_id == lease);
    meta_kv_free(&g);
    /* Create only, not applied (B's record was there), answer lost. */
    CHECK_OK(b->ops->kv_put(b, "k2", "by-b", 4, 0, 0, NULL));
    etcd_proxy_drop(p, "/v3/kv/txn", 1, NULL, NULL);
    CHECK_RC(WP_EEXIST, a->ops->kv_put(a, "k2", "by-a", 4, 0, 0, NULL));
    CHECK(mc_kv_is(b, "k2", "by-b", 4));

    /* CAS: applied once. */
    etcd_proxy_drop(p, "/v3/kv/txn", 1, NULL, NULL);
    CHECK_OK(a->ops->kv_put(a, "stream/coord", "node-a2", 7, rev, lease, &rev2));
    CHECK_OK(b->ops->kv_get(b, "stream/coord", &g));
    CHECK(g.rev == rev2 && rev2 > rev && g.create_rev == rev && g.len == 7);
    meta_kv_free(&g);
    /* CAS applied, then B wrote on top before the retry: still ours (the
     * first change after our base revision). */
    kv_bump_hook h = {b, "stream/coord"};
    int64_t rev3 = 0;
    etcd_proxy_drop(p, "/v3/kv/txn", 1, kv_bump_on_drop, &h);
    CHECK_OK(a->ops->kv_put(a, "stream/coord", "node-a3", 7, rev2, lease, &rev3));
    CHECK_OK(b->ops->kv_get(b, "stream/coord", &g));
    CHECK(g.len == 4 && memcmp(g.value, "by-b", 4) == 0 && rev3 > rev2 && g.rev > rev3);
    int64_t cur = g.rev;
    meta_kv_free(&g);
    /* CAS not applied (a stale rev), answer lost: WP_ECONFLICT. */
    etcd_proxy_drop(p, "/v3/kv/txn", 1, NULL, NULL);
    CHECK_RC(WP_ECONFLICT, a->ops->kv_put(a, "stream/coord", "node-a4", 7, rev3, lease, NULL));
    CHECK(mc_kv_is(b, "stream/coord", "by-b", 4));
    /* Upsert: re-sent, harmless. */
    etcd_proxy_drop(p, "/v3/kv/txn", 1, NULL, NULL);
    CHECK_OK(a->ops->kv_put(a, "up", "u", 1, -1, 0, &rev));
    CHECK_OK(b->ops->kv_get(b, "up", &g));
    CHECK(g.rev == rev);
    meta_kv_free(&g);
    /* Delete: gone on the retry, done. */
    etcd_proxy_drop(p, "/v3/kv/txn", 1, NULL, NULL);
    CHECK_OK(a->ops->kv_delete(a, "stream/coord", cur));
    CHECK_RC(WP_ENOENT, b->ops->kv_get(b, "stream/coord", &g));
    int dropped = etcd_proxy_dropped(p);
    if (dropped != 7)
        fprintf(stderr, "  dropped %d\n", dropped);
    CHECK(dropped == 7);
    CHECK_OK(a->ops->lease_revoke(a, lease));
    a->ops->close(a);
    b->ops->close(b);
    etcd_proxy_stop(p);
}

typedef struct {
    atomic_int rc;
    char msg[256];
} watch_err;

static void on_watch_err(void *arg, int rc, const char *msg)
{
    watch_err *e = arg;
    snprintf(e->msg, sizeof e->msg, "%s", msg);
    atomic_store(&e->rc, rc);
}

static void ignore_events(void *arg, const etcd_event *ev, size_t n)
{
    (void)arg;
    (void)ev;
    (void)n;
}

/* History below a compaction is gone: the watch reports it and ends. */
TEST(et_watch_compacted)
{
    etcd_client *c = raw_client(cl.endpoints, 3000, 0);
    REQUIRE(c);
    etcd_result r;
    int64_t first = 0, last = 0;
    for (int i = 0; i < 3; i++) {
        CHECK_OK(etcd_put(c, "compact/k", "v", 1, 0, 0, &r));
        first = first ? first : r.revision;
        last = r.revision;
        etcd_result_free(&r);
    }
    char body[64];
    snprintf(body, sizeof body, "{\"revision\":\"%lld\"}", (long long)last);
    void *json = NULL;
    CHECK_OK(etcd_call_json(c, "/v3/kv/compaction", body, false, 0, &json));
    cJSON_Delete(json);
    watch_err e = {0};
    etcd_watch *w = NULL;
    CHECK_OK(etcd_watch_start(c, "compact/", true, first, ignore_events, on_watch_err, &e, &w));
    for (int64_t end = ms_now() + 3000; atomic_load(&e.rc) == 0 && ms_now() < end;)
        mc_sleep_ms(5);
    CHECK(atomic_load(&e.rc) == WP_ETRUNCATED);
    CHECK(strstr(e.msg, "compacted") != NULL);
    etcd_watch_stop(w);
    etcd_event ev;
    CHECK_RC(WP_ETRUNCATED, etcd_first_change(c, "compact/k", first, 0, &ev));
    CHECK_OK(etcd_first_change(c, "compact/k", last - 1, 0, &ev));
    CHECK(ev.kv.mod_rev == last && ev.type == ETCD_EV_PUT);
    etcd_kv_free(&ev.kv);
    etcd_client_free(c);
}

/* ---- auth -------------------------------------------------------------- */

static int raw_call(etcd_client *c, const char *path, const char *body)
{
    void *json = NULL;
    int rc = etcd_call_json(c, path, body, false, 0, &json);
    if (rc != 0)
        fprintf(stderr, "  %s: %s\n", path, wp_errmsg());
    cJSON_Delete(json);
    return rc;
}

TEST(et_auth)
{
    static const char *const extra[] = {"--auth-token-ttl", "1", NULL};
    etcd_cluster ac;
    REQUIRE(etcd_cluster_start(&ac, 1, extra) == 0);
    etcd_client *c = raw_client(ac.endpoints, 3000, 0);
    REQUIRE(c);
    CHECK_OK(raw_call(c, "/v3/auth/role/add", "{\"name\":\"root\"}"));
    CHECK_OK(raw_call(c, "/v3/auth/user/add", "{\"name\":\"root\",\"password\":\"pw\"}"));
    CHECK_OK(raw_call(c, "/v3/auth/user/grant", "{\"user\":\"root\",\"role\":\"root\"}"));
    CHECK_OK(raw_call(c, "/v3/auth/enable", "{}"));
    etcd_client_free(c);

    meta *m = open_at(ac.endpoints, "auth", 3000, "root", "pw");
    CHECK(m != NULL);
    meta *anon = open_at(ac.endpoints, "auth", 1000, NULL, NULL);
    CHECK(anon == NULL);
    meta *wrong = open_at(ac.endpoints, "auth", 1000, "root", "nope");
    CHECK(wrong == NULL);
    if (m) {
        meta_log l;
        CHECK_OK(m->ops->log_create(m, "a", 1, &l));
        mc_sleep_ms(2600); /* the simple token expires after 1 s idle */
        CHECK_OK(m->ops->log_get(m, "a", &l));
        CHECK_OK(m->ops->log_update(m, &l));
        m->ops->close(m);
    }
    etcd_cluster_destroy(&ac);
}

/* ---- TLS --------------------------------------------------------------- */

static meta *open_tls(const char *eps, const char *ca, const char *cert, const char *key,
                      int64_t timeout_ms)
{
    wp_config *cfg = NULL;
    meta *m = NULL;
    if (wp_config_default(&cfg) != 0)
        return NULL;
    snprintf(cfg->etcd_endpoints, sizeof cfg->etcd_endpoints, "%s", eps);
    snprintf(cfg->meta_prefix, sizeof cfg->meta_prefix, "tls");
    snprintf(cfg->etcd_ca_file, sizeof cfg->etcd_ca_file, "%s", ca);
    snprintf(cfg->etcd_cert_file, sizeof cfg->etcd_cert_file, "%s", cert);
    snprintf(cfg->etcd_key_file, sizeof cfg->etcd_key_file, "%s", key);
    cfg->etcd_timeout_ms = timeout_ms;
    if (meta_etcd_open(cfg, &m) != 0)
        fprintf(stderr, "  (meta_etcd_open tls: %s)\n", wp_errmsg());
    wp_config_free(cfg);
    return m;
}

/* https with a private CA and client certificates (--client-cert-auth). */
TEST(et_tls)
{
    etcd_tls tls;
    REQUIRE(etcd_tls_make(test_tmpdir("etcd_tls"), &tls) == 0);
    etcd_cluster tc;
    REQUIRE(etcd_cluster_start_tls(&tc, 1, NULL, &tls) == 0);
    CHECK(strncmp(tc.endpoints, "https://", 8) == 0);
    meta *m = open_tls(tc.endpoints, tls.ca, tls.client_cert, tls.client_key, 15000); /* slow under ASan + load */
    CHECK(m != NULL);
    if (m) {
        meta_log l;
        CHECK_OK(m->ops->log_create(m, "t", 1, &l));
        CHECK_OK(m->ops->log_update(m, &l));
        ev_log e = {.mu = PTHREAD_MUTEX_INITIALIZER};
        etcd_watch *w = NULL; /* the watch stream uses TLS too */
        CHECK_OK(meta_etcd_watch_segments(m, l.log_id, 0, on_events, NULL, &e, &w));
        meta_seg s = mc_seg(l.log_id, 0, 0);
        CHECK_OK(m->ops->seg_create(m, &l, &s));
        CHECK(wait_events(&e, 1));
        etcd_watch_stop(w);
        m->ops->close(m);
    }
    /* The server's certificate is not trusted without the CA... */
    CHECK(open_tls(tc.endpoints, "", tls.client_cert, tls.client_key, 8000) == NULL);
    CHECK(strstr(wp_errmsg(), "SSL") != NULL || strstr(wp_errmsg(), "certificate") != NULL);
    /* ...and etcd refuses a client without a certificate. */
    CHECK(open_tls(tc.endpoints, tls.ca, "", "", 8000) == NULL);
    etcd_cluster_destroy(&tc);
}

/* ---- latency (printed, not asserted) ----------------------------------- */

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static void report(const char *what, int64_t *us, int n)
{
    qsort(us, (size_t)n, sizeof *us, cmp_i64);
    printf("latency %-22s p50 %5.2f ms  p99 %5.2f ms  (n=%d)\n", what, us[n / 2] / 1000.0,
           us[n * 99 / 100] / 1000.0, n);
}

#define LAT_N 200

TEST(et_latency)
{
    etcd_client *c = raw_client(cl.endpoints, 3000, 0);
    meta *m = open_at(cl.endpoints, "latency", 3000, NULL, NULL);
    REQUIRE(c && m);
    static int64_t us[LAT_N];
    int fails = 0;
    for (int i = 0; i < LAT_N; i++) {
        etcd_result r;
        int64_t t0 = wp__now_ns();
        fails += etcd_put(c, "latency/k", "value", 5, 0, 0, &r) != 0;
        us[i] = (wp__now_ns() - t0) / 1000;
        etcd_result_free(&r);
    }
    report("put", us, LAT_N);
    for (int i = 0; i < LAT_N; i++) {
        etcd_result r;
        etcd_op op = {.kind = ETCD_OP_RANGE, .key = "latency/k"};
        int64_t t0 = wp__now_ns();
        fails += etcd_range(c, &op, 0, &r) != 0;
        us[i] = (wp__now_ns() - t0) / 1000;
        etcd_result_free(&r);
    }
    report("range", us, LAT_N);
    meta_log l;
    CHECK_OK(m->ops->log_create(m, "lat", 1, &l));
    for (int i = 0; i < LAT_N; i++) {
        l.epoch++;
        int64_t t0 = wp__now_ns();
        fails += m->ops->log_update(m, &l) != 0; /* one txn (CAS) per call */
        us[i] = (wp__now_ns() - t0) / 1000;
    }
    report("txn (log_update CAS)", us, LAT_N);
    for (int i = 0; i < LAT_N; i++) {
        meta_seg s = mc_seg(l.log_id, i, l.epoch);
        int64_t t0 = wp__now_ns();
        fails += m->ops->seg_create(m, &l, &s) != 0;
        s.state = WP_SEG_COMPLETED;
        fails += m->ops->seg_update(m, &s) != 0;
        us[i] = (wp__now_ns() - t0) / 1000;
    }
    report("segment roll (2 txns)", us, LAT_N);
    CHECK(fails == 0);
    m->ops->close(m);
    etcd_client_free(c);
}

int main(void)
{
    if (etcd_cluster_start(&cl, 1, NULL) != 0) {
        fprintf(stderr, "cannot start etcd (is etcd-server installed?)\n");
        test_failed++;
        return test_done();
    }
    et_store store;
    memset(&store, 0, sizeof store);
    /* etcd grants whole seconds (1 s minimum with this member's election
     * timeout) and revokes on a 500 ms tick. */
    meta_conformance_set_lease(1000, 800);
    meta_conformance_run(et_open_fresh, et_open_again, &store);
    RUN(et_b64);
    RUN(et_parse_odd);
    RUN(et_fake_responses);
    RUN(et_unreachable);
    RUN(et_failover);
    RUN(et_hung_endpoint);
    RUN(et_unknown_outcome);
    RUN(et_corrupt_records);
    RUN(et_corrupt_claims);
    RUN(et_node_values);
    RUN(et_watch_segments);
    RUN(et_watch_compacted);
    RUN(et_kv_layout);
    RUN(et_corrupt_kv);
    RUN(et_kv_unknown_outcome);
    RUN(et_auth);
    RUN(et_tls);
    RUN(et_latency);
    etcd_cluster_destroy(&cl);
    return test_done();
}
