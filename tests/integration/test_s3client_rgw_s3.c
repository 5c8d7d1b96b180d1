/* test_s3client_rgw_s3.c — the S3 client's ETag, If-Match and batch-delete
 * calls (s3_put_ex, s3_get_ex, s3_delete_many) against the local Ceph RGW
 * (started by the CTest fixture, scripts/rgw.sh; $WP_TEST_S3_ENV names
 * its env file). Covered: the ETag of a PUT equals the ETag a GET reports;
 * If-Match with the unquoted ETag replaces, a stale or quoted one (RGW
 * compares unquoted only) or a missing key is WP_ECONFLICT; a lost answer
 * to an If-Match PUT is recovered by the own-object check; DeleteObjects
 * of 2500 keys (some missing, some needing XML escapes, one only a single
 * DELETE can name) leaves nothing under the prefix; the counters move;
 * the client's own SigV4 signatures (issue 14: it signs so that a PUT goes
 * without "Expect: 100-continue") pass RGW's check for every kind of
 * request, with keys, prefixes and tokens that need encoding, over HTTP
 * and HTTPS, and a wrong secret is refused. Every object created is
 * deleted (RGW's memstore is RAM). */
#include "test.h"

#include "support/s3env.h"
#include "support/testutil.h"

#include "storage/s3_client.h"

#define N_KEYS 2500

static test_s3_env env;
static char prefix[128]; /* every key of this run lives under it */

static s3_client *open_client(void)
{
    s3_options o = {.endpoint = env.endpoint, .bucket = env.bucket, .region = env.region,
                    .access_key = env.access_key, .secret_key = env.secret_key,
                    .session_token = "", .path_style = true, .timeout_ms = 10000,
                    .max_retries = 4, .retry_base_ms = 5, .retry_cap_ms = 50};
    s3_client *c = NULL;
    if (s3_client_open(&o, &c) != 0)
        fprintf(stderr, "  s3_client_open: %s\n", wp_errmsg());
    return c;
}

static void key_of(char *out, size_t cap, const char *name)
{
    snprintf(out, cap, "%s%s", prefix, name);
}

static int put_ex_str(s3_client *c, const char *key, const char *s, const char *if_match,
                      s3_obj_info *out)
{
    struct iovec v = {(void *)s, strlen(s)};
    s3_put_opts o = {.if_match = if_match};
    return s3_put_ex(c, key, &v, 1, &o, out);
}

static bool is_md5_hex(const char *s)
{
    size_t n = strlen(s);
    return n == 32 && strspn(s, "0123456789abcdef") == 32;
}

/* Reads key whole; 0 and its bytes in buf (NUL-terminated) and info. */
static int read_all(s3_client *c, const char *key, char *buf, size_t cap, s3_obj_info *info)
{
    size_t got = 0;
    int rc = s3_get_ex(c, key, 0, buf, cap - 1, &got, info);
    buf[rc ? 0 : got] = '\0';
    return rc;
}

TEST(etag_round_trip)
{
    s3_client *c = open_client();
    REQUIRE(c);
    char key[256], buf[64];
    s3_obj_info p, g;
    s3_stats st0, st1;
    s3_client_stats(c, &st0);
    key_of(key, sizeof key, "etag");
    CHECK_OK(put_ex_str(c, key, "hello etag", NULL, &p));
    CHECK(p.size == 10 && is_md5_hex(p.etag));
    CHECK_OK(read_all(c, key, buf, sizeof buf, &g));
    CHECK(strcmp(buf, "hello etag") == 0 && g.size == 10 && strcmp(g.etag, p.etag) == 0);
    /* A part of it: the same ETag. */
    size_t got = 0;
    CHECK_OK(s3_get_ex(c, key, 6, buf, 2, &got, &g));
    CHECK(got == 2 && memcmp(buf, "et", 2) == 0 && g.size == 10 && strcmp(g.etag, p.etag) == 0);
    /* At the end RGW answers 416 without ETag or size: a HEAD fills both in. */
    CHECK_OK(s3_get_ex(c, key, 10, buf, sizeof buf, &got, &g));
    CHECK(got == 0 && g.size == 10 && strcmp(g.etag, p.etag) == 0);
    /* An empty object (any range of it is a 416 on RGW). */
    key_of(key, sizeof key, "empty");
    CHECK_OK(put_ex_str(c, key, "", NULL, &p));
    CHECK(p.size == 0 && strcmp(p.etag, "d41d8cd98f00b204e9800998ecf8427e") == 0);
    CHECK_OK(s3_get_ex(c, key, 0, buf, sizeof buf, &got, &g));
    CHECK(got == 0 && g.size == 0 && strcmp(g.etag, p.etag) == 0);
    s3_client_stats(c, &st1);
    CHECK(st1.puts - st0.puts == 2 && st1.gets - st0.gets == 4);
    s3_client_close(c);
}

/* Every request kind the client signs, with keys that need encoding. */
static void signed_requests(s3_client *c)
{
    static const char *names[] = {"sig/a b+c=d&e~f_g.h", "sig/\303\274n\303\257c\303\270de",
                                  "sig/semi;colon,comma!*'()$@:", "sig/per%cent"};
    char key[256], buf[64], pfx[256];
    s3_obj_info info;
    size_t got = 0;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        key_of(key, sizeof key, names[i]);
        CHECK_OK(put_ex_str(c, key, "signed", NULL, NULL));
        struct iovec v = {"again", 5};
        CHECK_RC(WP_EEXIST, s3_put(c, key, &v, 1, S3_PUT_IF_ABSENT));
        CHECK_OK(s3_head(c, key, &info));
        CHECK(info.size == 6);
        CHECK_OK(s3_get(c, key, 2, buf, 3, &got, NULL));
        CHECK(got == 3 && memcmp(buf, "gne", 3) == 0);
    }
    /* Listing page by page: a prefix and continuation tokens to encode. */
    key_of(pfx, sizeof pfx, "sig/");
    s3_list_page p;
    char *token = NULL;
    size_t seen = 0;
    for (int page = 0; page < 8; page++) {
        int rc = s3_list(c, pfx, "/", NULL, token, 1, &p);
        CHECK_OK(rc);
        free(token);
        token = p.next_token ? strdup(p.next_token) : NULL;
        seen += p.n_items;
        bool more = rc == 0 && p.truncated;
        s3_list_page_free(&p);
        if (!more)
            break;
    }
    free(token);
    CHECK(seen == sizeof names / sizeof names[0]);
    /* Multipart (POST ?uploads=, PUT ?partNumber=&uploadId=, POST ?uploadId=). */
    size_t n = S3_PART_BYTES_MIN + 10;
    char *big = malloc(n);
    REQUIRE(big);
    memset(big, 'm', n);
    key_of(key, sizeof key, "sig/multi part");
    CHECK_OK(s3_put_multipart(c, key, big, n, S3_PART_BYTES_MIN));
    free(big);
    CHECK_OK(s3_head(c, key, &info));
    CHECK(info.size == n);
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        key_of(key, sizeof key, names[i]);
        CHECK_OK(s3_delete(c, key));
    }
    key_of(key, sizeof key, "sig/multi part");
    CHECK_OK(s3_delete(c, key));
}

TEST(signing_on_rgw)
{
    s3_client *c = open_client();
    REQUIRE(c);
    signed_requests(c);
    s3_client_close(c);
    if (*env.https_endpoint) {
        s3_options o = {.endpoint = env.https_endpoint, .ca_file = env.ca_file,
                        .bucket = env.bucket, .region = env.region, .access_key = env.access_key,
                        .secret_key = env.secret_key, .session_token = "", .path_style = true,
                        .timeout_ms = 10000, .max_retries = 4};
        CHECK_OK(s3_client_open(&o, &c));
        if (c)
            signed_requests(c);
        s3_client_close(c);
    }
    /* A wrong secret: RGW refuses the signature (HTTP 403). */
    s3_options o = {.endpoint = env.endpoint, .bucket = env.bucket, .region = env.region,
                    .access_key = env.access_key, .secret_key = "not-the-secret",
                    .session_token = "", .path_style = true, .timeout_ms = 10000};
    CHECK_OK(s3_client_open(&o, &c));
    if (c) {
        char key[256];
        key_of(key, sizeof key, "sig/refused");
        CHECK_RC(WP_EIO, put_ex_str(c, key, "x", NULL, NULL));
        CHECK(strstr(wp_errmsg(), "403") != NULL);
    }
    s3_client_close(c);
}

TEST(if_match_on_rgw)
{
    s3_client *c = open_client();
    REQUIRE(c);
    char key[256], buf[64], quoted[S3_ETAG_MAX + 2];
    s3_obj_info p1, p2, g;
    key_of(key, sizeof key, "cas");
    CHECK_OK(put_ex_str(c, key, "version 1", NULL, &p1));
    CHECK_OK(read_all(c, key, buf, sizeof buf, &g));
    /* If-Match with the unquoted ETag we read: replaced. */
    CHECK_OK(put_ex_str(c, key, "version 2", g.etag, &p2));
    CHECK(is_md5_hex(p2.etag) && strcmp(p2.etag, p1.etag) != 0);
    CHECK_OK(read_all(c, key, buf, sizeof buf, &g));
    CHECK(strcmp(buf, "version 2") == 0 && strcmp(g.etag, p2.etag) == 0);
    /* A stale ETag: WP_ECONFLICT naming bucket and key; nothing changes. */
    CHECK_RC(WP_ECONFLICT, put_ex_str(c, key, "version 3", p1.etag, NULL));
    CHECK(strstr(wp_errmsg(), key) && strstr(wp_errmsg(), env.bucket) && strstr(wp_errmsg(), "412"));
    CHECK_OK(read_all(c, key, buf, sizeof buf, &g));
    CHECK(strcmp(buf, "version 2") == 0 && strcmp(g.etag, p2.etag) == 0);
    /* RGW never matches the quoted form (AWS would): sent verbatim, 412. */
    snprintf(quoted, sizeof quoted, "\"%s\"", p2.etag);
    CHECK_RC(WP_ECONFLICT, put_ex_str(c, key, "version 3", quoted, NULL));
    /* A missing key (RGW answers 412 where AWS answers 404). */
    char missing[256];
    key_of(missing, sizeof missing, "cas-missing");
    CHECK_RC(WP_ECONFLICT, put_ex_str(c, missing, "x", p2.etag, NULL));
    CHECK(strstr(wp_errmsg(), missing) != NULL);
    s3_obj_info h;
    CHECK_RC(WP_ENOENT, s3_head(c, missing, &h));
    s3_client_close(c);
}

/* Loses the answer of the first attempt of every PUT (the server applies it). */
static void lose_first_put(void *arg, const s3_fault_req *req, s3_fault *out)
{
    int *n = arg;
    if (strcmp(req->method, "PUT") == 0 && req->attempt == 0 && (*n)++ == 0)
        out->kind = S3_FAULT_RESET_AFTER;
}

TEST(if_match_lost_answer_on_rgw)
{
    s3_client *c = open_client();
    REQUIRE(c);
    char key[256], buf[64];
    s3_obj_info p1, p2, g;
    s3_stats st0, st1;
    key_of(key, sizeof key, "cas-lost");
    CHECK_OK(put_ex_str(c, key, "before", NULL, &p1));
    int lost = 0;
    s3_client_stats(c, &st0);
    s3_client_set_fault(c, lose_first_put, &lost);
    /* Applied, answer lost; the retry's If-Match fails (412) against our
     * own write; the HEAD shows our bytes: success. */
    CHECK_OK(put_ex_str(c, key, "after!", p1.etag, &p2));
    s3_client_set_fault(c, NULL, NULL);
    s3_client_stats(c, &st1);
    CHECK(lost == 1 && st1.own_object_412 - st0.own_object_412 == 1 && st1.retries - st0.retries == 1);
    CHECK_OK(read_all(c, key, buf, sizeof buf, &g));
    CHECK(strcmp(buf, "after!") == 0 && p2.size == 6 && strcmp(p2.etag, g.etag) == 0);
    s3_client_close(c);
}

/* Counts DeleteObjects requests seen by the fault hook; loses the answer
 * of the first one if lose_first (the batch is applied, then re-sent). */
typedef struct {
    int posts;
    bool lose_first, shape_ok;
} post_count;

static void count_posts(void *arg, const s3_fault_req *req, s3_fault *out)
{
    post_count *p = arg;
    if (strcmp(req->method, "POST") != 0)
        return;
    if (req->key[0] != '\0' || strcmp(req->query, "delete=") != 0)
        p->shape_ok = false;
    if (p->posts++ == 0 && p->lose_first)
        out->kind = S3_FAULT_RESET_AFTER;
}

static int count_key(void *arg, const char *key, uint64_t size)
{
    (void)key;
    (void)size;
    ++*(size_t *)arg;
    return 0;
}

static size_t keys_under(s3_client *c, const char *pfx)
{
    size_t n = 0;
    if (s3_list_all(c, pfx, NULL, 0, 100000, count_key, &n) != 0) {
        fprintf(stderr, "  list %s: %s\n", pfx, wp_errmsg());
        return (size_t)-1;
    }
    return n;
}

/* Keys that need XML escapes, and one XML cannot carry (a single DELETE). */
static const char *const odd_names[] = {"odd/a&b<c>\"d'e", "odd/tab\there", "odd/cr\rlf\n",
                                        "odd/sp ace+plus", "odd/\xc3\xa9\xe4\xb8\xad",
                                        "odd/ctl\001byte"};
#define N_ODD (sizeof odd_names / sizeof odd_names[0])

TEST(delete_many_on_rgw)
{
    s3_client *c = open_client();
    REQUIRE(c);
    char pfx[256];
    key_of(pfx, sizeof pfx, "many/");
    size_t n = N_KEYS + N_ODD;
    char **keys = calloc(n, sizeof *keys);
    REQUIRE(keys);
    size_t made = 0;
    for (size_t i = 0; i < n; i++) {
        char k[512];
        if (i < N_KEYS)
            snprintf(k, sizeof k, "%s%04zu", pfx, i);
        else
            snprintf(k, sizeof k, "%s%s", pfx, odd_names[i - N_KEYS]);
        keys[i] = strdup(k);
        REQUIRE(keys[i]);
        if (i % 5 == 3)
            continue; /* some keys are missing */
        struct iovec v = {k, strlen(k)};
        int rc = s3_put(c, k, &v, 1, 0);
        CHECK_OK(rc);
        made += rc == 0;
    }
    CHECK(keys_under(c, pfx) == made);
    s3_stats st0, st1;
    s3_client_stats(c, &st0);
    post_count pc = {.shape_ok = true};
    s3_client_set_fault(c, count_posts, &pc);
    int64_t t0 = test_now_ms();
    CHECK_OK(s3_delete_many(c, (const char *const *)keys, n));
    int64_t ms = test_now_ms() - t0;
    s3_client_set_fault(c, NULL, NULL);
    s3_client_stats(c, &st1);
    fprintf(stderr, "  delete_many: %zu keys (%zu present) in %lld ms\n", n, made, (long long)ms);
    /* 2506 keys: 1000 + 1000 + 505 by DeleteObjects, the control-byte key alone. */
    CHECK(pc.posts == 3 && pc.shape_ok);
    CHECK(st1.batch_deletes - st0.batch_deletes == 3 && st1.deletes - st0.deletes == n);
    CHECK(st1.retries == st0.retries);
    CHECK(keys_under(c, pfx) == 0);
    /* Again: all missing now, still success. */
    CHECK_OK(s3_delete_many(c, (const char *const *)keys, n));
    for (size_t i = 0; i < n; i++)
        free(keys[i]);
    free(keys);
    s3_client_close(c);
}

TEST(delete_many_lost_answer_on_rgw)
{
    s3_client *c = open_client();
    REQUIRE(c);
    char pfx[200], k[8][256];
    const char *keys[8];
    key_of(pfx, sizeof pfx, "lost/");
    for (int i = 0; i < 8; i++) {
        snprintf(k[i], sizeof k[i], "%s%d", pfx, i);
        keys[i] = k[i];
        struct iovec v = {"x", 1};
        CHECK_OK(s3_put(c, k[i], &v, 1, 0));
    }
    /* The first request is applied but its answer lost: the whole batch is
     * re-sent and succeeds although every key is gone by then. */
    post_count pc = {.lose_first = true, .shape_ok = true};
    s3_client_set_fault(c, count_posts, &pc);
    CHECK_OK(s3_delete_many(c, keys, 8));
    s3_client_set_fault(c, NULL, NULL);
    CHECK(pc.posts == 2 && pc.shape_ok);
    CHECK(keys_under(c, pfx) == 0);
    s3_client_close(c);
}

/* Deletes whatever this run left under its prefix. */
static int collect(void *arg, const char *key, uint64_t size)
{
    (void)size;
    char ***v = arg;
    size_t n = 0;
    while ((*v)[n])
        n++;
    char **nv = realloc(*v, (n + 2) * sizeof *nv);
    if (!nv || !(nv[n] = strdup(key)))
        return WP_ENOMEM;
    nv[n + 1] = NULL;
    *v = nv;
    return 0;
}

static void cleanup(void)
{
    s3_client *c = open_client();
    if (!c)
        return;
    char **keys = calloc(1, sizeof *keys);
    size_t n = 0;
    if (keys && s3_list_all(c, prefix, NULL, 0, 100000, collect, &keys) == 0) {
        while (keys[n])
            n++;
        if (s3_delete_many(c, (const char *const *)keys, n) != 0)
            fprintf(stderr, "cleanup: %s\n", wp_errmsg());
    }
    if (n)
        fprintf(stderr, "cleanup: deleted the %zu objects of this run\n", n);
    for (size_t i = 0; keys && keys[i]; i++)
        free(keys[i]);
    free(keys);
    if (keys_under(c, prefix) != 0) {
        fprintf(stderr, "cleanup: objects remain under %s\n", prefix);
        test_failed++;
    }
    s3_client_close(c);
}

int main(void)
{
    if (test_s3_env_load(NULL, &env) != 0)
        return 2;
    snprintf(prefix, sizeof prefix, "s3client-%d-%lld/", (int)getpid(), (long long)test_now_ms());
    RUN(etag_round_trip);
    RUN(signing_on_rgw);
    RUN(if_match_on_rgw);
    RUN(if_match_lost_answer_on_rgw);
    RUN(delete_many_on_rgw);
    RUN(delete_many_lost_answer_on_rgw);
    cleanup();
    return test_done();
}
