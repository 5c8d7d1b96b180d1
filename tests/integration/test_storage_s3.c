/* test_storage_s3.c — the storage conformance suite on the S3 backend
 * against a real S3 server (Ceph RGW, started by the CTest fixture through
 * scripts/rgw.sh; $WP_TEST_S3_ENV names its env file), then what is
 * specific to S3: SigV4 verification, conditional PUTs, ranged GETs, list
 * continuation, multipart, fencing across two handles, and injected
 * faults (503 bursts, resets, slow answers) recovered by retry. Prints a
 * 2 MiB PUT throughput and a 1 KiB PUT p50 (not asserted). */
#include "test.h"

#include <dirent.h>

#include <openssl/sha.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

#include "conformance/storage_conformance.h"
#include "config/config.h"
#include "storage/s3.h"
#include "storage/s3_client.h"
#include "support/s3env.h"
#include "support/segtest.h"
#include "codec/codec.h"

/* ---- the server's coordinates ------------------------------------------------ */

static test_s3_env env;
static char run_prefix[128]; /* every key of this run lives under it */
static int n_stores;

static int env_load(void)
{
    if (test_s3_env_load(NULL, &env) != 0)
        return -1;
    snprintf(run_prefix, sizeof run_prefix, "wptest/%d-%lld", (int)getpid(),
             (long long)wp__wall_ms());
    return 0;
}

static s3_options base_options(void)
{
    s3_options o = {.endpoint = env.endpoint, .bucket = env.bucket, .region = env.region,
                    .access_key = env.access_key, .secret_key = env.secret_key, .path_style = true,
                    .timeout_ms = 10000, .max_retries = 4, .retry_base_ms = 5, .retry_cap_ms = 50};
    return o;
}

static s3_client *client_open(void)
{
    s3_options o = base_options();
    s3_client *c = NULL;
    if (s3_client_open(&o, &c) != 0)
        fprintf(stderr, "  s3_client_open: %s\n", wp_errmsg());
    return c;
}

/* A backend under a fresh prefix of this run. */
static storage *store_open(const char *tag)
{
    char prefix[256];
    snprintf(prefix, sizeof prefix, "%s/%s%d", run_prefix, tag, n_stores++);
    s3_client *c = client_open();
    storage *s = NULL;
    if (c && storage_s3_open_client(c, prefix, NULL, &s) != 0)
        fprintf(stderr, "  storage_s3_open_client: %s\n", wp_errmsg());
    return s;
}

static storage *open_fresh(void *arg)
{
    (void)arg;
    return store_open("sc");
}

static storage *store_at(const char *prefix)
{
    s3_client *c = client_open();
    storage *s = NULL;
    if (c && storage_s3_open_client(c, prefix, NULL, &s) != 0)
        fprintf(stderr, "  storage_s3_open_client: %s\n", wp_errmsg());
    return s;
}

static int del_cb(void *arg, const char *key, uint64_t size)
{
    (void)size;
    return s3_delete(arg, key);
}

/* Removes every object this run wrote. */
static void cleanup_run(void)
{
    s3_client *c = client_open();
    char prefix[160];
    snprintf(prefix, sizeof prefix, "%s/", run_prefix);
    if (c && s3_list_all(c, prefix, NULL, 0, 1000000, del_cb, c) != 0)
        fprintf(stderr, "cleanup of %s failed: %s\n", prefix, wp_errmsg());
    s3_client_close(c);
}

static void key_of(char *buf, size_t cap, const char *name)
{
    snprintf(buf, cap, "%s/obj/%s", run_prefix, name);
}

static int put_str(s3_client *c, const char *key, const char *s, unsigned flags)
{
    struct iovec v = {(void *)s, strlen(s)};
    return s3_put(c, key, &v, 1, flags);
}

/* Checks a marker's bytes independently of src/storage/s3.c
 * (docs/format.md section 11). */
/* A marker by format.md section 11: version 1 (36 bytes), or version 2
 * (44 bytes, a reopen with its cut) when cut >= 0. */
static int marker_ok_cut(const unsigned char *m, int kind, int64_t epoch, int64_t log_id,
                         int64_t seg_id, int64_t cut)
{
    size_t checked = cut >= 0 ? 36 : 28;
    unsigned char b[52], h[32];
    memcpy(b, m, checked);
    for (int i = 0; i < 8; i++) {
        b[checked + i] = (unsigned char)((uint64_t)log_id >> (8 * i));
        b[checked + 8 + i] = (unsigned char)((uint64_t)seg_id >> (8 * i));
    }
    SHA256(b, checked + 16, h);
    int64_t e = 0, c = 0;
    for (int i = 7; i >= 0; i--) {
        e = (int64_t)((uint64_t)e << 8 | m[12 + i]);
        c = (int64_t)((uint64_t)c << 8 | m[28 + i]);
    }
    return memcmp(m, cut >= 0 ? "WPS3MARK\x02\x00" : "WPS3MARK\x01\x00", 10) == 0 &&
           m[10] == kind && m[11] == 0 && e == epoch && (cut < 0 || c == cut) &&
           memcmp(m + checked, h, 8) == 0;
}

static int marker_ok(const unsigned char *m, int kind, int64_t epoch, int64_t log_id, int64_t seg_id)
{
    return marker_ok_cut(m, kind, epoch, log_id, seg_id, -1);
}

/* ---- S3 client against RGW ------------------------------------------------------ */

TEST(sigv4_wrong_secret)
{
    s3_options o = base_options();
    o.secret_key = "not-the-secret-key-0000000000000000000000";
    s3_client *c = NULL;
    CHECK_OK(s3_client_open(&o, &c));
    REQUIRE(c);
    char key[256];
    key_of(key, sizeof key, "badsig");
    CHECK_RC(WP_EIO, put_str(c, key, "x", 0));
    fprintf(stderr, "  wrong secret: %s\n", wp_errmsg());
    CHECK(strstr(wp_errmsg(), "403") != NULL);
    CHECK(strstr(wp_errmsg(), "SignatureDoesNotMatch") != NULL);
    CHECK(strstr(wp_errmsg(), key) != NULL);
    CHECK(strstr(wp_errmsg(), env.bucket) != NULL);
    s3_stats st;
    s3_client_stats(c, &st);
    CHECK(st.attempts == 1); /* a 403 is not retried */
    s3_client_close(c);
    /* The right secret works; a wrong access key is refused too. */
    c = client_open();
    REQUIRE(c);
    CHECK_OK(put_str(c, key, "x", 0));
    s3_client_close(c);
    o = base_options();
    o.access_key = "NOSUCHKEY0000000000";
    CHECK_OK(s3_client_open(&o, &c));
    CHECK_RC(WP_EIO, put_str(c, key, "y", 0));
    CHECK(strstr(wp_errmsg(), "InvalidAccessKeyId") != NULL);
    s3_client_close(c);
}

TEST(conditional_put)
{
    s3_client *c = client_open();
    REQUIRE(c);
    char key[256];
    key_of(key, sizeof key, "cond");
    CHECK_OK(put_str(c, key, "first", S3_PUT_IF_ABSENT));
    CHECK_RC(WP_EEXIST, put_str(c, key, "second", S3_PUT_IF_ABSENT));
    CHECK(strstr(wp_errmsg(), "412") != NULL && strstr(wp_errmsg(), "PreconditionFailed") != NULL);
    /* The same bytes again on a first attempt are still a 412: only a
     * retried attempt may claim the object as its own. */
    CHECK_RC(WP_EEXIST, put_str(c, key, "first", S3_PUT_IF_ABSENT));
    char buf[16];
    size_t got = 0;
    CHECK_OK(s3_get(c, key, 0, buf, sizeof buf, &got, NULL));
    CHECK(got == 5 && memcmp(buf, "first", 5) == 0);
    /* A plain PUT overwrites. */
    CHECK_OK(put_str(c, key, "third!", 0));
    CHECK_OK(s3_get(c, key, 0, buf, sizeof buf, &got, NULL));
    CHECK(got == 6 && memcmp(buf, "third!", 6) == 0);
    s3_obj_info info;
    CHECK_OK(s3_head(c, key, &info));
    CHECK(info.size == 6 && strlen(info.etag) == 32);
    CHECK_OK(s3_delete(c, key));
    CHECK_OK(s3_delete(c, key)); /* idempotent */
    CHECK_RC(WP_ENOENT, s3_head(c, key, &info));
    CHECK_RC(WP_ENOENT, s3_get(c, key, 0, buf, sizeof buf, &got, NULL));
    CHECK(strstr(wp_errmsg(), "NoSuchKey") != NULL);
    s3_client_close(c);
}

TEST(ranged_get)
{
    s3_client *c = client_open();
    REQUIRE(c);
    char key[256];
    key_of(key, sizeof key, "range");
    enum { N = 100000 };
    unsigned char *b = malloc(N), *r = malloc(N);
    REQUIRE(b && r);
    sc_fill(b, N, 7, 0);
    struct iovec v[3] = {{b, 10}, {b + 10, 50000}, {b + 50010, N - 50010}};
    CHECK_OK(s3_put(c, key, v, 3, 0));
    static const struct {
        uint64_t off;
        size_t len, want;
    } cases[] = {{0, N, N}, {0, 1, 1}, {1, 10, 10}, {N - 1, 1, 1}, {N - 5, 100, 5},
                 {4096, 65536, 65536}, {N, 10, 0}, {N + 100, 10, 0}, {12345, 0, 0}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t got = 99;
        uint64_t total = 0;
        CHECK_OK(s3_get(c, key, cases[i].off, r, cases[i].len, &got, &total));
        CHECK(got == cases[i].want);
        CHECK(got == 0 || memcmp(r, b + cases[i].off, got) == 0);
        if (cases[i].off < N)
            CHECK(total == N);
    }
    free(b);
    free(r);
    s3_client_close(c);
}

typedef struct {
    int n;
    char last[S3_KEY_MAX + 1];
    int out_of_order;
} list_seen;

static int list_cb(void *arg, const char *key, uint64_t size)
{
    list_seen *ls = arg;
    if (ls->n > 0 && strcmp(ls->last, key) >= 0)
        ls->out_of_order++;
    snprintf(ls->last, sizeof ls->last, "%s", key);
    ls->n++;
    return size == 3 ? 0 : WP_EIO;
}

TEST(list_continuation)
{
    s3_client *c = client_open();
    REQUIRE(c);
    char prefix[256], key[300];
    snprintf(prefix, sizeof prefix, "%s/list/", run_prefix);
    enum { N = 23 };
    for (int i = 0; i < N; i++) {
        snprintf(key, sizeof key, "%s%s/k%02d", prefix, i % 2 ? "odd" : "even", i);
        CHECK_OK(put_str(c, key, "abc", 0));
    }
    /* Pages of 5 keys, followed with continuation tokens. */
    list_seen ls = {0};
    CHECK_OK(s3_list_all(c, prefix, NULL, 5, 1000, list_cb, &ls));
    CHECK(ls.n == N && ls.out_of_order == 0);
    s3_list_page p;
    CHECK_OK(s3_list(c, prefix, NULL, NULL, NULL, 5, &p));
    CHECK(p.n_items == 5 && p.truncated && p.next_token != NULL);
    char *tok = p.next_token ? strdup(p.next_token) : NULL;
    s3_list_page_free(&p);
    CHECK_OK(s3_list(c, prefix, NULL, NULL, tok, 5, &p));
    CHECK(p.n_items == 5);
    s3_list_page_free(&p);
    free(tok);
    /* start-after skips. */
    ls = (list_seen){0};
    snprintf(key, sizeof key, "%seven/k10", prefix);
    CHECK_OK(s3_list_all(c, prefix, key, 4, 1000, list_cb, &ls));
    CHECK(ls.n == N - 6); /* even k00..k10 are 6 keys */
    /* The bound on visited keys. */
    ls = (list_seen){0};
    CHECK_RC(WP_ETOOBIG, s3_list_all(c, prefix, NULL, 5, 10, list_cb, &ls));
    /* Delimiter: two common prefixes. */
    CHECK_OK(s3_list(c, prefix, "/", NULL, NULL, 0, &p));
    CHECK(p.n_items == 0 && p.n_prefixes == 2);
    if (p.n_prefixes == 2)
        CHECK(strstr(p.prefixes[0], "/even/") && strstr(p.prefixes[1], "/odd/"));
    s3_list_page_free(&p);
    s3_client_close(c);
}

TEST(multipart)
{
    s3_client *c = client_open();
    REQUIRE(c);
    char key[256];
    key_of(key, sizeof key, "multi");
    size_t n = 11 * 1024 * 1024 + 17;
    unsigned char *b = malloc(n), *r = malloc(n);
    REQUIRE(b && r);
    sc_fill(b, n, 3, 0);
    CHECK_OK(s3_put_multipart(c, key, b, n, S3_PART_BYTES_MIN));
    s3_obj_info info;
    CHECK_OK(s3_head(c, key, &info));
    CHECK(info.size == n);
    CHECK(strstr(info.etag, "-3") != NULL); /* a 3-part upload */
    size_t got = 0;
    CHECK_OK(s3_get(c, key, 0, r, n, &got, NULL));
    CHECK(got == n && memcmp(b, r, n) == 0);
    /* An aborted upload leaves nothing; completing it then fails. */
    char key2[256], id[S3_UPLOAD_ID_MAX], etag[1][S3_ETAG_MAX];
    key_of(key2, sizeof key2, "multi-aborted");
    CHECK_OK(s3_mpu_create(c, key2, id));
    struct iovec v = {b, 1000};
    CHECK_OK(s3_mpu_put_part(c, key2, id, 1, &v, 1, etag[0]));
    CHECK(strlen(etag[0]) == 32);
    CHECK_OK(s3_mpu_abort(c, key2, id));
    CHECK(s3_mpu_complete(c, key2, id, (const char(*)[S3_ETAG_MAX])etag, 1) != 0);
    CHECK_RC(WP_ENOENT, s3_head(c, key2, &info));
    CHECK_RC(WP_EINVAL, s3_put_multipart(c, key2, b, n, 1024));
    free(b);
    free(r);
    s3_client_close(c);
}

TEST(virtual_host_addressing)
{
    /* RGW answers <bucket>.localhost (rgw_dns_name); libcurl resolves
     * *.localhost to the loopback address. */
    char ep[300];
    const char *port = strrchr(env.endpoint, ':');
    REQUIRE(port);
    snprintf(ep, sizeof ep, "http://localhost%s", port);
    s3_options o = base_options();
    o.endpoint = ep;
    o.path_style = false;
    s3_client *c = NULL;
    CHECK_OK(s3_client_open(&o, &c));
    REQUIRE(c);
    char key[256], buf[8];
    key_of(key, sizeof key, "vhost");
    CHECK_OK(put_str(c, key, "vh", S3_PUT_IF_ABSENT));
    size_t got = 0;
    CHECK_OK(s3_get(c, key, 0, buf, sizeof buf, &got, NULL));
    CHECK(got == 2 && memcmp(buf, "vh", 2) == 0);
    s3_client_close(c);
}

TEST(https_with_ca_file)
{
    if (!*env.https_endpoint) {
        fprintf(stderr, "  skipped: scripts/rgw.sh found no openssl, so RGW serves no HTTPS\n");
        return;
    }
    s3_options o = base_options();
    o.endpoint = env.https_endpoint;
    o.ca_file = env.ca_file;
    s3_client *c = NULL;
    CHECK_OK(s3_client_open(&o, &c));
    REQUIRE(c);
    char key[256], buf[8];
    size_t got = 0;
    key_of(key, sizeof key, "tls");
    CHECK_OK(put_str(c, key, "tls", S3_PUT_IF_ABSENT));
    CHECK_OK(s3_get(c, key, 0, buf, sizeof buf, &got, NULL));
    CHECK(got == 3 && memcmp(buf, "tls", 3) == 0);
    s3_client_close(c);
    /* Without the CA file the self-signed certificate is refused at once. */
    o.ca_file = NULL;
    CHECK_OK(s3_client_open(&o, &c));
    REQUIRE(c);
    CHECK_RC(WP_EIO, s3_get(c, key, 0, buf, sizeof buf, &got, NULL));
    CHECK(strstr(wp_errmsg(), "1 attempt") != NULL);
    fprintf(stderr, "  without the CA: %s\n", wp_errmsg());
    s3_client_close(c);
}

TEST(config_and_env_credentials)
{
    struct wp_config *cfg = calloc(1, sizeof *cfg);
    REQUIRE(cfg);
    snprintf(cfg->s3_endpoint, sizeof cfg->s3_endpoint, "%s", env.endpoint);
    snprintf(cfg->s3_bucket, sizeof cfg->s3_bucket, "%s", env.bucket);
    snprintf(cfg->s3_region, sizeof cfg->s3_region, "%s", env.region);
    snprintf(cfg->s3_prefix, sizeof cfg->s3_prefix, "/%s/cfg/", run_prefix);
    cfg->s3_path_style = 1;
    cfg->s3_timeout_ms = 5000;
    cfg->s3_max_retries = 3;
    /* No keys in the config: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY. */
    unsetenv("AWS_ACCESS_KEY_ID");
    unsetenv("AWS_SECRET_ACCESS_KEY");
    storage *s = NULL;
    CHECK_RC(WP_EINVAL, storage_s3_open(cfg, NULL, &s));
    CHECK(strstr(wp_errmsg(), "AWS_ACCESS_KEY_ID") != NULL);
    setenv("AWS_ACCESS_KEY_ID", env.access_key, 1);
    setenv("AWS_SECRET_ACCESS_KEY", env.secret_key, 1);
    CHECK_OK(storage_s3_open(cfg, NULL, &s));
    unsetenv("AWS_ACCESS_KEY_ID");
    unsetenv("AWS_SECRET_ACCESS_KEY");
    REQUIRE(s);
    st_writer *w = NULL;
    CHECK_OK(s->ops->seg_create(s, 1, 0, 1, &w));
    if (w) {
        CHECK_OK(sc_append(s, w, 100, 1, 0, 2));
        s->ops->seg_writer_close(w);
    }
    /* The keys are where format.md says. */
    s3_client *c = client_open();
    char key[300];
    s3_obj_info info;
    snprintf(key, sizeof key, "%s/cfg/1/0/000000000000.blk", run_prefix);
    CHECK_OK(s3_head(c, key, &info));
    CHECK(info.size == 36); /* the create marker (format.md section 11) */
    unsigned char mb[64];
    size_t got = 0;
    CHECK_OK(s3_get(c, key, 0, mb, sizeof mb, &got, NULL));
    CHECK(got == 36 && marker_ok(mb, 1, 1, 1, 0));
    snprintf(key, sizeof key, "%s/cfg/1/0/000000000001.blk", run_prefix);
    CHECK_OK(s3_head(c, key, &info));
    CHECK(info.size == 100);
    s3_client_close(c);
    s->ops->close(s);
    /* A bad endpoint is refused at open. */
    snprintf(cfg->s3_endpoint, sizeof cfg->s3_endpoint, "ftp://x");
    snprintf(cfg->s3_access_key, sizeof cfg->s3_access_key, "a");
    snprintf(cfg->s3_secret_key, sizeof cfg->s3_secret_key, "b");
    CHECK_RC(WP_EINVAL, storage_s3_open(cfg, NULL, &s));
    free(cfg);
}

/* ---- fencing across two handles -------------------------------------------------- */

TEST(fence_two_handles)
{
    char prefix[256];
    snprintf(prefix, sizeof prefix, "%s/fence2", run_prefix);
    storage *a = store_at(prefix), *b = store_at(prefix);
    REQUIRE(a && b);
    st_writer *wa = NULL, *wb = NULL;
    CHECK_OK(a->ops->seg_create(a, 1, 0, 1, &wa));
    REQUIRE(wa);
    CHECK_RC(WP_EEXIST, b->ops->seg_create(b, 1, 0, 2, &wb));
    CHECK_OK(sc_append(a, wa, 700, 1, 0, 2));
    CHECK_OK(b->ops->seg_fence(b, 1, 0, 2));
    CHECK_RC(WP_EFENCED, sc_append(a, wa, 10, 9, 0, 1));
    CHECK(strstr(wp_errmsg(), "fenced") != NULL);
    CHECK_OK(b->ops->seg_reopen(b, 1, 0, 2, 700, &wb));
    REQUIRE(wb);
    CHECK_OK(sc_append(b, wb, 300, 2, 0, 1));
    /* A's handle reads B's bytes after A's. */
    st_reader *r = NULL;
    CHECK_OK(a->ops->seg_open_read(a, 1, 0, &r));
    if (r) {
        uint64_t size = 0;
        CHECK_OK(a->ops->seg_size(r, &size));
        CHECK(size == 1000);
        CHECK(sc_matches(a, r, 0, 700, 1, 0) && sc_matches(a, r, 700, 300, 2, 0));
        a->ops->seg_reader_close(r);
    }
    /* The objects are as format.md section 11's example says. */
    s3_client *c = client_open();
    REQUIRE(c);
    static const struct {
        int n, kind;
        int64_t epoch, cut;
        size_t size;
    } marks[] = {{0, 1, 1, -1, 36}, {2, 2, 2, -1, 36}, /* reopen: past REOPEN_MOAT, kept 1 */
                 {3 + 1024, 3, 2, 1, 44}};
    unsigned char m[3][64];
    for (int i = 0; i < 3; i++) {
        char key[300];
        size_t got = 0;
        snprintf(key, sizeof key, "%s/1/0/%012d.blk", prefix, marks[i].n);
        CHECK_OK(s3_get(c, key, 0, m[i], sizeof m[i], &got, NULL));
        CHECK(got == marks[i].size &&
              marker_ok_cut(m[i], marks[i].kind, marks[i].epoch, 1, 0, marks[i].cut));
    }
    CHECK(memcmp(m[1] + 20, m[2] + 20, 8) != 0); /* nonces differ */
    s3_client_close(c);
    /* A stale reopen through A is refused; A fencing at epoch 3 stops B. */
    st_writer *w0 = NULL;
    CHECK_RC(WP_EFENCED, a->ops->seg_reopen(a, 1, 0, 1, 700, &w0));
    CHECK_OK(a->ops->seg_fence(a, 1, 0, 3));
    CHECK_RC(WP_EFENCED, sc_append(b, wb, 5, 3, 0, 1));
    a->ops->seg_writer_close(wa);
    b->ops->seg_writer_close(wb);
    a->ops->close(a);
    b->ops->close(b);
}

typedef struct {
    storage *s;
    st_writer *w;
    atomic_int fence_done, ok_appends, late_ok, bad_rc;
    uint64_t acked;
} race_ctx;

static void *race_appender(void *arg)
{
    race_ctx *c = arg;
    int64_t deadline = wp__now_ns() + 10LL * 1000000000;
    while (wp__now_ns() < deadline) {
        int fenced_before = atomic_load(&c->fence_done);
        int rc = sc_append(c->s, c->w, 100, 5, c->acked, 1);
        if (rc != 0) {
            if (rc != WP_EFENCED)
                atomic_fetch_add(&c->bad_rc, 1);
            break;
        }
        c->acked += 100;
        atomic_fetch_add(&c->ok_appends, 1);
        if (fenced_before)
            atomic_fetch_add(&c->late_ok, 1);
    }
    return NULL;
}

/* A fence through another handle lands while a thread appends. */
TEST(fence_while_appending)
{
    char prefix[256];
    snprintf(prefix, sizeof prefix, "%s/fencerace", run_prefix);
    race_ctx c = {.s = store_at(prefix)};
    storage *f = store_at(prefix);
    REQUIRE(c.s && f);
    CHECK_OK(c.s->ops->seg_create(c.s, 2, 0, 1, &c.w));
    REQUIRE(c.w);
    pthread_t t;
    REQUIRE(pthread_create(&t, NULL, race_appender, &c) == 0);
    int64_t deadline = wp__now_ns() + 10LL * 1000000000;
    while (atomic_load(&c.ok_appends) < 20 && wp__now_ns() < deadline)
        sched_yield();
    CHECK_OK(f->ops->seg_fence(f, 2, 0, 2));
    atomic_store(&c.fence_done, 1);
    pthread_join(t, NULL);
    CHECK(atomic_load(&c.ok_appends) >= 20);
    CHECK(atomic_load(&c.late_ok) == 0);
    CHECK(atomic_load(&c.bad_rc) == 0);
    st_reader *r = NULL;
    CHECK_OK(f->ops->seg_open_read(f, 2, 0, &r));
    if (r) {
        uint64_t size = 0;
        CHECK_OK(f->ops->seg_size(r, &size));
        CHECK(size >= c.acked && size <= c.acked + 100);
        CHECK(sc_matches(f, r, 0, (size_t)c.acked, 5, 0));
        f->ops->seg_reader_close(r);
    }
    c.s->ops->seg_writer_close(c.w);
    c.s->ops->close(c.s);
    f->ops->close(f);
}

/* A reopen cuts data that readers opened before it had listed. */
TEST(readers_follow_a_cut)
{
    storage *s = store_open("cut");
    REQUIRE(s);
    st_writer *w = NULL, *w2 = NULL;
    CHECK_OK(s->ops->seg_create(s, 1, 0, 1, &w));
    REQUIRE(w);
    CHECK_OK(sc_append(s, w, 100, 1, 0, 1));
    CHECK_OK(sc_append(s, w, 200, 1, 100, 1));
    st_reader *r1 = NULL, *r2 = NULL;
    CHECK_OK(s->ops->seg_open_read(s, 1, 0, &r1));
    CHECK_OK(s->ops->seg_open_read(s, 1, 0, &r2));
    REQUIRE(r1 && r2);
    CHECK(sc_size(s, r1) == 300 && sc_size(s, r2) == 300);
    CHECK_OK(s->ops->seg_fence(s, 1, 0, 2));
    /* Not an object boundary: refused, nothing changes. */
    CHECK_RC(WP_ECORRUPT, s->ops->seg_reopen(s, 1, 0, 2, 150, &w2));
    CHECK(strstr(wp_errmsg(), "inside object") != NULL);
    CHECK(sc_size(s, r1) == 300);
    CHECK_OK(s->ops->seg_reopen(s, 1, 0, 2, 100, &w2));
    REQUIRE(w2);
    CHECK_OK(sc_append(s, w2, 50, 2, 0, 1));
    /* r1 reads inside its stale view (a deleted object): lists again. */
    CHECK(sc_matches(s, r1, 0, 100, 1, 0) && sc_matches(s, r1, 100, 50, 2, 0));
    CHECK(sc_size(s, r1) == 150);
    /* r2 asks the size first: the new markers make it list again. */
    CHECK(sc_size(s, r2) == 150);
    CHECK(sc_matches(s, r2, 100, 50, 2, 0));
    /* An append that is exactly a marker's bytes is refused. */
    unsigned char m[36];
    s3_client *c = client_open();
    char key[300];
    size_t got = 0;
    snprintf(key, sizeof key, "%s/cut%d/1/0/000000000000.blk", run_prefix, n_stores - 1);
    CHECK_OK(s3_get(c, key, 0, m, sizeof m, &got, NULL));
    CHECK(got == 36 && marker_ok(m, 1, 1, 1, 0));
    struct iovec v[2] = {{m, 20}, {m + 20, 16}};
    CHECK_RC(WP_EINVAL, s->ops->seg_append(w2, v, 2));
    CHECK(strstr(wp_errmsg(), "marker") != NULL);
    s3_client_close(c);
    s->ops->seg_reader_close(r1);
    s->ops->seg_reader_close(r2);
    s->ops->seg_writer_close(w);
    s->ops->seg_writer_close(w2);
    s->ops->close(s);
}

/* Two fencers race: epoch 5 fences and reopens just as epoch 2 puts its
 * fence; the epoch 2 fencer skips the taken numbers, lands its marker where
 * the epoch 5 writer appends next, then sees the newer marker it skipped
 * and removes its own, so the epoch 5 owner is not fenced by it. */
typedef struct {
    storage *newer;
    st_writer *w5;
    atomic_int fired;
} race_fence;

static void race_fence_hook(void *arg, const s3_fault_req *req, s3_fault *out)
{
    (void)out;
    race_fence *rf = arg;
    if (strcmp(req->method, "PUT") != 0 || req->attempt != 0 || atomic_exchange(&rf->fired, 1))
        return;
    CHECK_OK(rf->newer->ops->seg_fence(rf->newer, 1, 0, 5));
    CHECK_OK(rf->newer->ops->seg_reopen(rf->newer, 1, 0, 5, 10, &rf->w5));
}

TEST(racing_fencers)
{
    char prefix[256];
    snprintf(prefix, sizeof prefix, "%s/racefence", run_prefix);
    storage *a = store_at(prefix), *b = store_at(prefix);
    REQUIRE(a && b);
    st_writer *w = NULL, *w5 = NULL;
    CHECK_OK(a->ops->seg_create(a, 1, 0, 1, &w));
    REQUIRE(w);
    CHECK_OK(sc_append(a, w, 10, 1, 0, 1));
    race_fence rf = {.newer = b};
    s3_client_set_fault(storage_s3_client(a), race_fence_hook, &rf);
    /* The outdated fencer learns it lost (storage.h's ownership rule). */
    CHECK_RC(WP_EFENCED, a->ops->seg_fence(a, 1, 0, 2));
    s3_client_set_fault(storage_s3_client(a), NULL, NULL);
    CHECK(atomic_load(&rf.fired) == 1);
    CHECK_RC(WP_EFENCED, sc_append(a, w, 10, 1, 10, 1));
    w5 = rf.w5;
    REQUIRE(w5);
    CHECK_OK(sc_append(b, w5, 20, 3, 0, 1));
    CHECK_OK(sc_append(b, w5, 20, 3, 20, 1));
    st_reader *r = NULL;
    CHECK_OK(a->ops->seg_open_read(a, 1, 0, &r));
    if (r) {
        CHECK(sc_size(a, r) == 50);
        CHECK(sc_matches(a, r, 0, 10, 1, 0) && sc_matches(a, r, 10, 40, 3, 0));
        a->ops->seg_reader_close(r);
    }
    a->ops->seg_writer_close(w);
    b->ops->seg_writer_close(w5);
    a->ops->close(a);
    b->ops->close(b);
}

/* ---- recovery on object storage (issue 9, items 2 and 6) ---------------------- */

static int count_key(void *arg, const char *key, uint64_t size)
{
    (void)key;
    (void)size;
    (*(int *)arg)++;
    return 0;
}

static int count_objects(storage *s, const char *pfx)
{
    int n = 0;
    char p[300];
    snprintf(p, sizeof p, "%s/", pfx);
    return s3_list_all(storage_s3_client(s), p, NULL, 0, 100000, count_key, &n) ? -1 : n;
}

/* Objects are written whole: an invalid one is corruption, never a torn
 * tail, and recovery deletes nothing (item 6). */
TEST(recovery_corrupt_object_is_not_cut)
{
    char prefix[256], key[400];
    snprintf(prefix, sizeof prefix, "%s/reccorrupt", run_prefix);
    storage *s = store_at(prefix);
    REQUIRE(s);
    lseg_w *w = NULL;
    CHECK_OK(lseg_create(s, 1, 0, 1, &w));
    REQUIRE(w);
    CHECK_OK(segtest_write_str(w, 0, "zero"));
    CHECK_OK(segtest_write_str(w, 1, "one"));
    CHECK_OK(segtest_write_str(w, 2, "two, in the last object"));
    lseg_close(w);
    /* Objects: 0 create marker, 1 header, 2..4 blocks. Damage object 4 (a
     * flipped byte in its records, same size). */
    snprintf(key, sizeof key, "%s/1/0/000000000004.blk", prefix);
    uint8_t b[256];
    size_t got = 0;
    CHECK_OK(s3_get(storage_s3_client(s), key, 0, b, sizeof b, &got, NULL));
    REQUIRE(got > BLK_HEADER_SIZE + 10);
    b[got - 3] ^= 0x40;
    struct iovec v = {b, got};
    CHECK_OK(s3_put(storage_s3_client(s), key, &v, 1, 0));
    int before = count_objects(s, prefix);
    int64_t last = -7;
    uint64_t bytes = 0;
    CHECK_RC(WP_ECORRUPT, lseg_recover(s, 1, 0, 2, NULL, &last, &bytes));
    CHECK(strstr(wp_errmsg(), "atomic") != NULL);
    /* The fence marker is the only new object; nothing was deleted. */
    CHECK(count_objects(s, prefix) == before + 1);
    size_t got2 = 0;
    CHECK_OK(s3_get(storage_s3_client(s), key, 0, b, sizeof b, &got2, NULL));
    CHECK(got2 == got);
    s->ops->close(s);
}

/* A payload ending in a footer-shaped 64 bytes is not a footer (item 2). */
TEST(recovery_forged_footer)
{
    storage *s = store_open("recforged");
    REQUIRE(s);
    lseg_w *w = NULL;
    CHECK_OK(lseg_create(s, 1, 0, 1, &w));
    REQUIRE(w);
    CHECK_OK(segtest_write_str(w, 0, "first"));
    uint64_t end = 0;
    CHECK_OK(segtest_write_forged_footer(w, 1, &end));
    lseg_close(w);
    int64_t last = -7;
    uint64_t bytes = 0;
    CHECK_OK(lseg_recover(s, 1, 0, 2, NULL, &last, &bytes));
    CHECK(last == 1);
    CHECK(segtest_count(s, 1, 0, bytes, last) == 2);
    s->ops->close(s);
}

/* ---- deletion under a writer (issue 9, item 11) -------------------------------- */

/* A log deleted under its writer: the writer's next upload is refused
 * (not acknowledged into deleted data); only the segment's tombstone (a
 * fence marker above every epoch) is left behind. */
TEST(delete_fences_the_writer)
{
    char prefix[256];
    snprintf(prefix, sizeof prefix, "%s/delwriter", run_prefix);
    storage *s = store_at(prefix);
    REQUIRE(s);
    st_writer *w = NULL;
    CHECK_OK(s->ops->seg_create(s, 4, 0, 1, &w));
    REQUIRE(w);
    CHECK_OK(sc_append(s, w, 100, 1, 0, 1));
    CHECK_OK(s->ops->log_delete(s, 4));
    CHECK_RC(WP_EFENCED, sc_append(s, w, 100, 1, 100, 1));
    CHECK_RC(WP_EFENCED, sc_append(s, w, 100, 1, 100, 1));
    s->ops->seg_writer_close(w);
    CHECK(count_objects(s, prefix) == 1); /* the tombstone */
    /* Deleting again is a no-op that adds no tombstone. */
    CHECK_OK(s->ops->log_delete(s, 4));
    CHECK(count_objects(s, prefix) == 1);
    s->ops->close(s);
}

/* Objects that land while a deletion runs (a fenced writer's uploads
 * still in flight) are deleted too: the deletion lists until empty. */
typedef struct {
    storage *other;
    const char *key;
    atomic_int fired;
} late_put;

static void late_put_hook(void *arg, const s3_fault_req *req, s3_fault *out)
{
    (void)out;
    late_put *lp = arg;
    if (strcmp(req->method, "DELETE") != 0 || atomic_exchange(&lp->fired, 1))
        return;
    struct iovec v = {(void *)"late upload", 11};
    CHECK_OK(s3_put(storage_s3_client(lp->other), lp->key, &v, 1, 0));
}

TEST(delete_removes_objects_landing_meanwhile)
{
    char prefix[256], key[400];
    snprintf(prefix, sizeof prefix, "%s/dellate", run_prefix);
    storage *s = store_at(prefix), *o = store_at(prefix);
    REQUIRE(s && o);
    st_writer *w = NULL;
    CHECK_OK(s->ops->seg_create(s, 4, 0, 1, &w));
    REQUIRE(w);
    CHECK_OK(sc_append(s, w, 100, 1, 0, 1));
    s->ops->seg_writer_close(w);
    snprintf(key, sizeof key, "%s/4/0/000000000007.blk", prefix);
    late_put lp = {.other = o, .key = key};
    s3_client_set_fault(storage_s3_client(s), late_put_hook, &lp);
    CHECK_OK(s->ops->log_delete(s, 4));
    s3_client_set_fault(storage_s3_client(s), NULL, NULL);
    CHECK(atomic_load(&lp.fired) == 1);
    CHECK(count_objects(s, prefix) == 1); /* the tombstone only */
    s->ops->close(s);
    o->ops->close(o);
}

/* ---- endpoints that ignore If-None-Match (issue 9, item 12) --------------------- */

/* An upload of the old writer still in flight lands on an endpoint that
 * overwrites anyway: simulated by an unconditional PUT of its bytes. */
static int late_put_at(storage *s, const char *prefix, uint64_t n, const void *b, size_t len)
{
    char key[400];
    snprintf(key, sizeof key, "%s/1/0/%012llu.blk", prefix, (unsigned long long)n);
    struct iovec v = {(void *)b, len};
    return s3_put(storage_s3_client(s), key, &v, 1, 0);
}

/* The old writer's next block (entry 2), as it would have uploaded it. */
static size_t late_block(uint8_t *buf, size_t cap)
{
    const char *p = "entry 2, never acknowledged";
    wp_payload pl = {.data = p, .len = strlen(p)};
    size_t len = BLK_HEADER_SIZE + rec_size(&pl);
    if (len > cap)
        return 0;
    rec_encode(&pl, buf + BLK_HEADER_SIZE);
    blk_header h = {.first_entry_id = 2, .n_entries = 1,
                    .records_len = (uint32_t)(len - BLK_HEADER_SIZE),
                    .records_crc = crc32c(0, buf + BLK_HEADER_SIZE, len - BLK_HEADER_SIZE)};
    blk_header_encode(&h, buf);
    return len;
}

static void verify_problem(void *arg, const char *problem)
{
    (void)arg;
    fprintf(stderr, "  verify: %s\n", problem);
}

/* A segment with entries 0 and 1 (objects 0 create, 1 header, 2, 3);
 * the old writer's next upload would be object 4. */
static storage *two_entries(const char *tag, char *prefix, size_t cap)
{
    snprintf(prefix, cap, "%s/%s", run_prefix, tag);
    storage *s = store_at(prefix);
    lseg_w *w = NULL;
    if (!s || lseg_create(s, 1, 0, 1, &w) || segtest_write_str(w, 0, "zero") ||
        segtest_write_str(w, 1, "one")) {
        lseg_close(w);
        return s;
    }
    lseg_close(w);
    return s;
}

/* The late upload overwrites the fence marker after recovery completed the
 * segment: the committed bytes must still be the stream. */
TEST(late_upload_over_fence_marker)
{
    char prefix[256];
    storage *s = two_entries("late1", prefix, sizeof prefix);
    REQUIRE(s);
    int64_t last = -7;
    uint64_t bytes = 0;
    CHECK_OK(lseg_recover(s, 1, 0, 2, NULL, &last, &bytes));
    CHECK(last == 1);
    uint8_t b[256];
    size_t len = late_block(b, sizeof b);
    CHECK_OK(late_put_at(s, prefix, 4, b, len));
    CHECK_OK(lseg_verify(s, 1, 0, true, bytes, last, verify_problem, NULL, NULL));
    CHECK(segtest_count(s, 1, 0, bytes, last) == 2);
    s->ops->close(s);
}

/* The late uploads land between the fence and the reopen, and right after
 * the point the reopen would take without a moat. */
TEST(late_uploads_around_reopen)
{
    char prefix[256];
    storage *s = two_entries("late2", prefix, sizeof prefix);
    REQUIRE(s);
    CHECK_OK(s->ops->seg_fence(s, 1, 0, 2));
    st_reader *r = NULL;
    uint64_t size = 0;
    CHECK_OK(s->ops->seg_open_read(s, 1, 0, &r));
    if (r) {
        CHECK_OK(s->ops->seg_size(r, &size));
        s->ops->seg_reader_close(r);
    }
    uint8_t b[256];
    size_t len = late_block(b, sizeof b);
    CHECK_OK(late_put_at(s, prefix, 4, b, len)); /* over the fence marker */
    st_writer *w = NULL;
    CHECK_OK(s->ops->seg_reopen(s, 1, 0, 2, size, &w));
    REQUIRE(w);
    CHECK_OK(late_put_at(s, prefix, 5, b, len));
    CHECK_OK(late_put_at(s, prefix, 6, b, len));
    struct iovec v = {(void *)"0123456789abcdef0123456789abcdef0123456789abcdef", 48};
    CHECK_OK(s->ops->seg_append(w, &v, 1));
    CHECK_OK(late_put_at(s, prefix, 7, b, len));
    s->ops->seg_writer_close(w);
    CHECK_OK(s->ops->seg_open_read(s, 1, 0, &r));
    if (r) {
        uint64_t now = 0;
        CHECK_OK(s->ops->seg_size(r, &now));
        CHECK(now == size + 48);
        uint8_t got[64];
        size_t n = 0;
        CHECK_OK(s->ops->seg_read(r, size, got, sizeof got, &n));
        CHECK(n == 48 && memcmp(got, v.iov_base, 48) == 0);
        s->ops->seg_reader_close(r);
    }
    s->ops->close(s);
}

/* ---- injected faults ------------------------------------------------------------- */

typedef struct {
    const char *method;  /* requests this applies to ("" = any) */
    s3_fault_kind kind;
    int status;
    const char *body;
    int64_t delay_ms;
    int first_n;         /* attempts that get the fault; then none */
    atomic_int seen;     /* matching attempts seen */
    s3_client *foreign;  /* if set: write a foreign object before the fault */
} fault_plan;

static void plan_hook(void *arg, const s3_fault_req *req, s3_fault *out)
{
    fault_plan *p = arg;
    if (*p->method && strcmp(p->method, req->method) != 0)
        return;
    int k = atomic_fetch_add(&p->seen, 1);
    if (k >= p->first_n)
        return;
    if (p->foreign && k == 0)
        put_str(p->foreign, req->key, "somebody else's bytes", 0);
    out->kind = p->kind;
    out->status = p->status;
    out->body = p->body;
    out->delay_ms = p->delay_ms;
}

static const char SLOWDOWN[] =
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>SlowDown</Code>"
    "<Message>Please reduce your request rate.</Message></Error>";

TEST(retry_503_burst)
{
    storage *s = store_open("f503");
    REQUIRE(s);
    s3_client *c = storage_s3_client(s);
    fault_plan p = {.method = "PUT", .kind = S3_FAULT_STATUS, .status = 503, .body = SLOWDOWN,
                    .first_n = 3};
    s3_client_set_fault(c, plan_hook, &p);
    st_writer *w = NULL;
    CHECK_OK(s->ops->seg_create(s, 1, 0, 1, &w)); /* 3 x 503, then the PUT */
    REQUIRE(w);
    s3_stats st;
    s3_client_stats(c, &st);
    CHECK(st.retries == 3);
    atomic_store(&p.seen, 0);
    CHECK_OK(sc_append(s, w, 5000, 4, 0, 3));
    /* A longer burst than max_retries (4): the append fails, naming SlowDown. */
    atomic_store(&p.seen, 0);
    p.first_n = 5;
    CHECK_RC(WP_EUNAVAILABLE, sc_append(s, w, 10, 4, 5000, 1));
    CHECK(strstr(wp_errmsg(), "SlowDown") != NULL && strstr(wp_errmsg(), "5 attempts") != NULL);
    s3_client_set_fault(c, NULL, NULL);
    s->ops->seg_writer_close(w);
    st_reader *r = NULL;
    CHECK_OK(s->ops->seg_open_read(s, 1, 0, &r));
    if (r) {
        uint64_t size = 0;
        CHECK_OK(s->ops->seg_size(r, &size));
        CHECK(size == 5000);
        CHECK(sc_matches(s, r, 0, 5000, 4, 0));
        s->ops->seg_reader_close(r);
    }
    /* 429 is retried too, 403 is not; GETs are retried like PUTs. */
    fault_plan q = {.method = "GET", .kind = S3_FAULT_STATUS, .status = 429, .first_n = 2};
    s3_client_set_fault(c, plan_hook, &q);
    CHECK_OK(s->ops->seg_open_read(s, 1, 0, &r));
    if (r)
        s->ops->seg_reader_close(r);
    fault_plan f403 = {.method = "GET", .kind = S3_FAULT_STATUS, .status = 403, .first_n = 1,
                       .body = "<Error><Code>AccessDenied</Code></Error>"};
    s3_client_set_fault(c, plan_hook, &f403);
    CHECK_RC(WP_EIO, s->ops->seg_open_read(s, 1, 0, &r));
    CHECK(strstr(wp_errmsg(), "AccessDenied") != NULL && strstr(wp_errmsg(), "1 attempt") != NULL);
    CHECK(atomic_load(&f403.seen) == 1);
    s3_client_set_fault(c, NULL, NULL);
    s->ops->close(s);
}

TEST(retry_resets)
{
    s3_options o = base_options();
    o.timeout_ms = 1000; /* the slow fault below waits this long */
    s3_client *sc = NULL;
    storage *s = NULL;
    char prefix[256];
    snprintf(prefix, sizeof prefix, "%s/freset", run_prefix);
    CHECK_OK(s3_client_open(&o, &sc));
    if (sc)
        CHECK_OK(storage_s3_open_client(sc, prefix, NULL, &s));
    REQUIRE(s);
    s3_client *c = storage_s3_client(s);
    st_writer *w = NULL;
    CHECK_OK(s->ops->seg_create(s, 1, 0, 1, &w));
    REQUIRE(w);
    /* Reset before the request is sent: plainly retried. */
    fault_plan p = {.method = "PUT", .kind = S3_FAULT_RESET, .first_n = 2};
    s3_client_set_fault(c, plan_hook, &p);
    CHECK_OK(sc_append(s, w, 1000, 8, 0, 1));
    /* Reset after the PUT was applied: the retry gets 412, finds its own
     * object, and the append counts once. */
    fault_plan q = {.method = "PUT", .kind = S3_FAULT_RESET_AFTER, .first_n = 1};
    s3_client_set_fault(c, plan_hook, &q);
    CHECK_OK(sc_append(s, w, 2000, 8, 1000, 2));
    s3_stats st;
    s3_client_stats(c, &st);
    CHECK(st.own_object_412 == 1);
    /* Slow answers: below the timeout they just arrive; above it the
     * attempt times out (after the PUT was applied) and the retry finds
     * the object. */
    fault_plan sl = {.method = "PUT", .kind = S3_FAULT_SLOW, .delay_ms = 50, .first_n = 1};
    s3_client_set_fault(c, plan_hook, &sl);
    CHECK_OK(sc_append(s, w, 500, 8, 3000, 1));
    fault_plan to = {.method = "PUT", .kind = S3_FAULT_SLOW, .delay_ms = 60000, .first_n = 1};
    s3_client_set_fault(c, plan_hook, &to);
    int64_t t0 = wp__now_ns();
    CHECK_OK(sc_append(s, w, 700, 8, 3500, 1));
    CHECK(wp__now_ns() - t0 < 20LL * 1000000000);
    s3_client_stats(c, &st);
    CHECK(st.own_object_412 == 2);
    s3_client_set_fault(c, NULL, NULL);
    st_reader *r = NULL;
    CHECK_OK(s->ops->seg_open_read(s, 1, 0, &r));
    if (r) {
        uint64_t size = 0;
        CHECK_OK(s->ops->seg_size(r, &size));
        CHECK(size == 4200); /* no duplicate, no loss */
        CHECK(sc_matches(s, r, 0, 4200, 8, 0));
        s->ops->seg_reader_close(r);
    }
    s->ops->seg_writer_close(w);
    s->ops->close(s);
}

TEST(foreign_412_is_fenced)
{
    /* The first attempt is lost (reset) while someone else writes the
     * writer's next block: the retry's 412 is not ours -> WP_EFENCED. */
    storage *s = store_open("ffor");
    REQUIRE(s);
    s3_client *c = storage_s3_client(s), *other = client_open();
    REQUIRE(other);
    st_writer *w = NULL;
    CHECK_OK(s->ops->seg_create(s, 1, 0, 1, &w));
    REQUIRE(w);
    fault_plan p = {.method = "PUT", .kind = S3_FAULT_RESET, .first_n = 1, .foreign = other};
    s3_client_set_fault(c, plan_hook, &p);
    CHECK_RC(WP_EFENCED, sc_append(s, w, 64, 1, 0, 1));
    s3_client_set_fault(c, NULL, NULL);
    CHECK_RC(WP_EFENCED, sc_append(s, w, 64, 1, 0, 1));
    s->ops->seg_writer_close(w);
    s3_client_close(other);
    s->ops->close(s);
}

TEST(timeouts_exhausted)
{
    s3_options o = base_options();
    o.timeout_ms = 200;
    o.max_retries = 2;
    s3_client *c = NULL;
    CHECK_OK(s3_client_open(&o, &c));
    REQUIRE(c);
    fault_plan p = {.method = "", .kind = S3_FAULT_SLOW, .delay_ms = 100000, .first_n = 100};
    s3_client_set_fault(c, plan_hook, &p);
    char key[256];
    s3_obj_info info;
    key_of(key, sizeof key, "slow");
    int64_t t0 = wp__now_ns();
    CHECK_RC(WP_ETIMEDOUT, s3_head(c, key, &info));
    int64_t ms = (wp__now_ns() - t0) / 1000000;
    CHECK(ms >= 600 && ms < 5000);
    CHECK(atomic_load(&p.seen) == 3);
    /* Nothing listens: connection errors are retried, then reported. */
    s3_client_close(c);
    o.endpoint = "http://127.0.0.1:1";
    CHECK_OK(s3_client_open(&o, &c));
    CHECK_RC(WP_EUNAVAILABLE, s3_head(c, key, &info));
    CHECK(strstr(wp_errmsg(), "3 attempts") != NULL);
    s3_client_close(c);
}

/* ---- figures (printed, not asserted) ---------------------------------------------- */

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

TEST(perf_figures)
{
    s3_client *c = client_open();
    REQUIRE(c);
    size_t big = 2 * 1024 * 1024;
    unsigned char *b = malloc(big);
    REQUIRE(b);
    sc_fill(b, big, 11, 0);
    char key[256];
    enum { NBIG = 24, NSMALL = 200 };
    int64_t t0 = wp__now_ns();
    int fails = 0;
    for (int i = 0; i < NBIG; i++) {
        snprintf(key, sizeof key, "%s/perf/big%03d", run_prefix, i);
        struct iovec v = {b, big};
        fails += s3_put(c, key, &v, 1, S3_PUT_IF_ABSENT) != 0;
    }
    double secs = (double)(wp__now_ns() - t0) / 1e9;
    int64_t lat[NSMALL];
    for (int i = 0; i < NSMALL; i++) {
        snprintf(key, sizeof key, "%s/perf/small%03d", run_prefix, i);
        struct iovec v = {b, 1024};
        int64_t s0 = wp__now_ns();
        fails += s3_put(c, key, &v, 1, S3_PUT_IF_ABSENT) != 0;
        lat[i] = wp__now_ns() - s0;
    }
    qsort(lat, NSMALL, sizeof lat[0], cmp_i64);
    CHECK(fails == 0);
    printf("perf: 2 MiB PUT single stream: %.1f MiB/s (%d PUTs in %.2f s); "
           "1 KiB PUT p50 %.2f ms, p99 %.2f ms\n",
           NBIG * 2.0 / secs, NBIG, secs, (double)lat[NSMALL / 2] / 1e6,
           (double)lat[NSMALL * 99 / 100] / 1e6);
    free(b);
    s3_client_close(c);
}

/* Parallel uploads: appends 1 and 3 of writer A landed, append 2 is still
 * in flight when B fences. The fence must take append 2's number, so A can
 * never acknowledge 2 or 3; A's append 3 is excluded from the stream; a
 * late append 4 lands below B's reopen marker and is excluded too. */
TEST(fence_with_upload_in_flight)
{
    char prefix[256];
    snprintf(prefix, sizeof prefix, "%s/inflight", run_prefix);
    storage *a = store_at(prefix), *b = store_at(prefix);
    REQUIRE(a && b && a->ops->seg_append_nth);
    st_writer *wa = NULL, *wb = NULL;
    REQUIRE(a->ops->seg_create(a, 1, 0, 1, &wa) == 0);
    static char d1[100], d2[200], d3[300], d4[400];
    memset(d1, '1', sizeof d1), memset(d2, '2', sizeof d2), memset(d3, '3', sizeof d3);
    memset(d4, '4', sizeof d4);
    struct iovec v1 = {d1, sizeof d1}, v2 = {d2, sizeof d2}, v3 = {d3, sizeof d3}, v4 = {d4, sizeof d4};
    CHECK_OK(a->ops->seg_append_nth(wa, 0, &v1, 1)); /* append 0 is block 1 */
    CHECK_OK(a->ops->seg_append_nth(wa, 2, &v3, 1)); /* block 3 lands before block 2 */
    /* a reader sees only the contiguous prefix: block 3 waits for block 2 */
    st_reader *r = NULL;
    uint64_t size = 0;
    REQUIRE(b->ops->seg_open_read(b, 1, 0, &r) == 0);
    CHECK_OK(b->ops->seg_size(r, &size));
    CHECK(size == sizeof d1);
    b->ops->seg_reader_close(r);
    CHECK_OK(b->ops->seg_fence(b, 1, 0, 2));
    CHECK_RC(WP_EFENCED, a->ops->seg_append_nth(wa, 1, &v2, 1)); /* its number is the fence */
    REQUIRE(b->ops->seg_open_read(b, 1, 0, &r) == 0);
    CHECK_OK(b->ops->seg_size(r, &size));
    CHECK(size == sizeof d1); /* block 3 is excluded */
    b->ops->seg_reader_close(r);
    CHECK_OK(b->ops->seg_reopen(b, 1, 0, 2, sizeof d1, &wb));
    /* a last upload of A lands after the reopen: below B's marker, excluded */
    s3_client *c = client_open();
    REQUIRE(c);
    char key[300];
    snprintf(key, sizeof key, "%s/1/0/%012d.blk", prefix, 4);
    CHECK_OK(s3_put(c, key, &v4, 1, S3_PUT_IF_ABSENT));
    s3_client_close(c);
    CHECK_OK(b->ops->seg_append(wb, &v2, 1));
    REQUIRE(a->ops->seg_open_read(a, 1, 0, &r) == 0);
    CHECK_OK(a->ops->seg_size(r, &size));
    CHECK(size == sizeof d1 + sizeof d2);
    char got[sizeof d1 + sizeof d2];
    size_t n = 0;
    CHECK_OK(a->ops->seg_read(r, 0, got, sizeof got, &n));
    CHECK(n == sizeof got && !memcmp(got, d1, sizeof d1) && !memcmp(got + sizeof d1, d2, sizeof d2));
    a->ops->seg_reader_close(r);
    a->ops->seg_writer_close(wa);
    b->ops->seg_writer_close(wb);
    a->ops->close(a);
    b->ops->close(b);
}

/* Read-ahead: a segment of 40 objects of 64 KiB read sequentially in
 * chunks that straddle objects costs one GET per object (no duplicates),
 * most of them issued by the reader's read-ahead threads; a seek costs at
 * most the ahead window; a reader closed with fetches in flight returns.
 * Prints the time of a sequential read with and without read-ahead, on
 * loopback and with 20 ms added to every GET (not asserted). */
enum { RA_OBJS = 40, RA_OBJ = 64 * 1024, RA_CHUNK = 10000 };

typedef struct {
    pthread_t main_thread;
    int64_t delay_ms;
    atomic_int gets, gets_elsewhere;
} ra_hook_ctx;

static void ra_hook(void *arg, const s3_fault_req *req, s3_fault *out)
{
    ra_hook_ctx *h = arg;
    if (strcmp(req->method, "GET") != 0 || !strstr(req->key, ".blk"))
        return;
    atomic_fetch_add(&h->gets, 1);
    if (!pthread_equal(pthread_self(), h->main_thread))
        atomic_fetch_add(&h->gets_elsewhere, 1);
    if (h->delay_ms > 0) {
        out->kind = S3_FAULT_SLOW;
        out->delay_ms = h->delay_ms;
    }
}

/* Reads the whole segment through r in RA_CHUNK pieces; 0 if every byte matches. */
static int ra_check(storage *s, st_reader *r)
{
    unsigned char *got = malloc(RA_CHUNK), *want = malloc(RA_CHUNK);
    uint64_t total = (uint64_t)RA_OBJS * RA_OBJ;
    int rc = got && want ? 0 : WP_ENOMEM;
    for (uint64_t off = 0; !rc && off < total; off += RA_CHUNK) {
        size_t len = total - off < RA_CHUNK ? (size_t)(total - off) : RA_CHUNK, n = 0;
        rc = s->ops->seg_read(r, off, got, len, &n);
        sc_fill(want, len, 9, off);
        if (!rc && (n != len || memcmp(got, want, len) != 0))
            rc = WP_ECORRUPT;
    }
    free(got);
    free(want);
    return rc;
}

/* Opens a reader (read-ahead on or off) and times ra_check. */
static int ra_read_all(storage *s, ra_hook_ctx *h, bool ahead, double *secs, uint64_t *reqs)
{
    setenv("WP_S3_READ_AHEAD", ahead ? "1" : "0", 1);
    s3_client *c = storage_s3_client(s);
    st_reader *r = NULL;
    int rc = s->ops->seg_open_read(s, 1, 0, &r);
    unsetenv("WP_S3_READ_AHEAD");
    if (rc)
        return rc;
    s3_stats a, b;
    s3_client_stats(c, &a);
    atomic_store(&h->gets, 0);
    atomic_store(&h->gets_elsewhere, 0);
    int64_t t0 = wp__now_ns();
    rc = ra_check(s, r);
    *secs = (double)(wp__now_ns() - t0) / 1e9;
    s3_client_stats(c, &b);
    *reqs = b.requests - a.requests;
    s->ops->seg_reader_close(r);
    return rc;
}

/* A backend holding segment 1/0 of RA_OBJS objects of RA_OBJ bytes. */
static storage *ra_store(const char *tag)
{
    storage *s = store_open(tag);
    st_writer *w = NULL;
    if (!s)
        return NULL;
    int rc = s->ops->seg_create(s, 1, 0, 1, &w);
    for (int i = 0; !rc && i < RA_OBJS; i++)
        rc = sc_append(s, w, RA_OBJ, 9, (uint64_t)i * RA_OBJ, 1);
    if (w)
        s->ops->seg_writer_close(w);
    if (rc) {
        s->ops->close(s);
        return NULL;
    }
    return s;
}

TEST(read_ahead)
{
    storage *s = ra_store("ra");
    REQUIRE(s);
    s3_client *c = storage_s3_client(s);
    ra_hook_ctx h = {.main_thread = pthread_self()};
    s3_client_set_fault(c, ra_hook, &h);
    double t_on[2] = {0}, t_off[2] = {0};
    uint64_t reqs = 0;
    for (int d = 0; d < 2; d++) {
        h.delay_ms = d ? 20 : 0;
        CHECK_OK(ra_read_all(s, &h, true, &t_on[d], &reqs));
        /* one GET per object, at most a few extra; most from the read-ahead threads */
        CHECK(reqs >= RA_OBJS && reqs <= RA_OBJS + 2);
        CHECK(atomic_load(&h.gets) >= RA_OBJS && atomic_load(&h.gets) <= RA_OBJS + 2);
        CHECK(atomic_load(&h.gets_elsewhere) >= RA_OBJS / 2);
        CHECK_OK(ra_read_all(s, &h, false, &t_off[d], &reqs));
        CHECK(reqs == RA_OBJS && atomic_load(&h.gets_elsewhere) == 0);
    }
    printf("perf: sequential read of %d x 64 KiB objects: loopback %.3f s with read-ahead, "
           "%.3f s without; +20 ms per GET %.3f s with, %.3f s without\n",
           RA_OBJS, t_on[0], t_off[0], t_on[1], t_off[1]);
    /* A seek: one read in the middle costs its object plus the ahead window. */
    h.delay_ms = 0;
    st_reader *r = NULL;
    REQUIRE(s->ops->seg_open_read(s, 1, 0, &r) == 0);
    unsigned char buf[100], want[100];
    size_t n = 0;
    s3_stats a, b;
    s3_client_stats(c, &a);
    uint64_t off = 17 * (uint64_t)RA_OBJ + 5;
    CHECK_OK(s->ops->seg_read(r, off, buf, sizeof buf, &n));
    sc_fill(want, sizeof want, 9, off);
    CHECK(n == sizeof buf && memcmp(buf, want, sizeof buf) == 0);
    s->ops->seg_reader_close(r); /* joins the fetches ahead */
    s3_client_stats(c, &b);
    CHECK(b.requests - a.requests >= 1 && b.requests - a.requests <= 1 + 4);
    /* Closed mid-way with slow fetches in flight: returns after them, no leak. */
    h.delay_ms = 200;
    REQUIRE(s->ops->seg_open_read(s, 1, 0, &r) == 0);
    CHECK_OK(s->ops->seg_read(r, 0, buf, sizeof buf, &n));
    int64_t t0 = wp__now_ns();
    s->ops->seg_reader_close(r);
    CHECK(wp__now_ns() - t0 < 5 * 1000000000LL);
    s3_client_set_fault(c, NULL, NULL);
    s->ops->close(s);
}

/* Many readers at once share the backend's read-ahead pool: at most 8
 * threads fetch for all of them (not 4 per reader), and each reads right. */
#define MANY_READERS 12
typedef struct {
    storage *s;
    int rc;
} many_arg;

static void *many_main(void *arg)
{
    many_arg *m = arg;
    st_reader *r = NULL;
    m->rc = m->s->ops->seg_open_read(m->s, 1, 0, &r);
    if (m->rc)
        return NULL;
    m->rc = ra_check(m->s, r);
    m->s->ops->seg_reader_close(r);
    return NULL;
}

static int task_count(void)
{
    DIR *d = opendir("/proc/self/task");
    int n = 0;
    if (!d)
        return -1;
    for (struct dirent *e; (e = readdir(d));)
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

TEST(read_ahead_pool_shared)
{
    storage *s = ra_store("rapool");
    REQUIRE(s);
    s3_client *c = storage_s3_client(s);
    ra_hook_ctx h = {.main_thread = pthread_self(), .delay_ms = 5};
    s3_client_set_fault(c, ra_hook, &h);
    int base = task_count(), peak = base;
    pthread_t t[MANY_READERS];
    many_arg m[MANY_READERS];
    for (int i = 0; i < MANY_READERS; i++) {
        m[i] = (many_arg){s, -1};
        pthread_create(&t[i], NULL, many_main, &m[i]);
    }
    for (int k = 0; k < 400; k++) { /* while they read */
        int n = task_count();
        if (n > peak)
            peak = n;
        usleep(2000);
    }
    for (int i = 0; i < MANY_READERS; i++) {
        pthread_join(t[i], NULL);
        CHECK_OK(m[i].rc);
    }
    fprintf(stderr, "  threads: %d before, at most %d with %d readers\n", base, peak, MANY_READERS);
    CHECK(peak - base <= MANY_READERS + 8);
    CHECK(peak - base > MANY_READERS); /* the pool did fetch */
    s3_client_set_fault(c, NULL, NULL);
    s->ops->close(s);
}

int main(void)
{
    if (env_load() != 0) {
        printf("0 passed, 1 failed\n");
        return 1;
    }
    int64_t t0 = wp__now_ns();
    storage_conformance_run(open_fresh, NULL);
    fprintf(stderr, "conformance suite: %.1f s\n", (double)(wp__now_ns() - t0) / 1e9);
    RUN(sigv4_wrong_secret);
    RUN(conditional_put);
    RUN(ranged_get);
    RUN(list_continuation);
    RUN(multipart);
    RUN(virtual_host_addressing);
    RUN(https_with_ca_file);
    RUN(config_and_env_credentials);
    RUN(fence_two_handles);
    RUN(fence_with_upload_in_flight);
    RUN(fence_while_appending);
    RUN(readers_follow_a_cut);
    RUN(racing_fencers);
    RUN(recovery_corrupt_object_is_not_cut);
    RUN(recovery_forged_footer);
    RUN(delete_fences_the_writer);
    RUN(delete_removes_objects_landing_meanwhile);
    RUN(late_upload_over_fence_marker);
    RUN(late_uploads_around_reopen);
    RUN(retry_503_burst);
    RUN(retry_resets);
    RUN(foreign_412_is_fenced);
    RUN(timeouts_exhausted);
    RUN(perf_figures);
    RUN(read_ahead);
    RUN(read_ahead_pool_shared);
    cleanup_run();
    return test_done();
}
