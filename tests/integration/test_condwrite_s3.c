/* test_condwrite_s3.c — detection of conditional-write support against the
 * local Ceph RGW (started by the CTest fixture, scripts/rgw.sh), and the
 * metadata epoch check that replaces storage fencing on an endpoint that
 * ignores If-None-Match (docs/format.md §11). */
#include "test.h"

#include "support/s3env.h"
#include "support/testutil.h"

#include "client/internal.h"
#include "meta/meta.h"
#include "storage/s3.h"

static test_s3_env env;
static char prefix[128];

static int env_load(void)
{
    snprintf(prefix, sizeof prefix, "condtest-%d-%lld", (int)getpid(), (long long)test_now_ms());
    return test_s3_env_load(NULL, &env);
}

/* Log messages, for checking the fallback's warning. */
static char warned[4096];
static pthread_mutex_t warned_mu = PTHREAD_MUTEX_INITIALIZER;

static void log_cb(void *arg, int level, const char *msg)
{
    (void)arg;
    (void)level;
    pthread_mutex_lock(&warned_mu);
    size_t n = strlen(warned);
    snprintf(warned + n, sizeof warned - n, "%s\n", msg);
    pthread_mutex_unlock(&warned_mu);
}

static bool was_warned(const char *what)
{
    pthread_mutex_lock(&warned_mu);
    bool yes = strstr(warned, what) != NULL;
    pthread_mutex_unlock(&warned_mu);
    return yes;
}

/* A client on S3 data under <prefix>/<tag>, metadata in dir. */
static wp_client *open_s3(const char *tag, const char *dir)
{
    char pfx[256];
    snprintf(pfx, sizeof pfx, "%s/%s", prefix, tag);
    const char *kv[] = {"storage.type", "s3", "storage.s3.endpoint", env.endpoint,
                        "storage.s3.access_key", env.access_key, "storage.s3.secret_key", env.secret_key,
                        "storage.s3.bucket", env.bucket,
                        "storage.s3.region", env.region,
                        "storage.s3.prefix", pfx, "flush.max_interval_ms", "5",
                        "storage.root", dir, NULL};
    wp_config *cfg;
    if (wp_config_default(&cfg))
        return NULL;
    for (const char *const *p = kv; p[0]; p += 2)
        if (wp_config_set(cfg, p[0], p[1])) {
            fprintf(stderr, "config %s=%s: %s\n", p[0], p[1], wp_errmsg());
            wp_config_free(cfg);
            return NULL;
        }
    wp_config_set_log(cfg, log_cb, NULL);
    wp_client *c = NULL;
    if (wp_client_open(cfg, &c))
        fprintf(stderr, "client open: %s\n", wp_errmsg());
    wp_config_free(cfg);
    return c;
}

static meta *open_meta(const char *dir)
{
    char path[1200];
    snprintf(path, sizeof path, "%s/meta.sqlite", dir);
    meta *m = NULL;
    if (meta_sqlite_open(path, &m))
        fprintf(stderr, "meta open %s: %s\n", path, wp_errmsg());
    return m;
}

/* Keys left under <prefix>/<tag>/.probe/ (-1 on error). */
static int probe_objects(wp_client *c, const char *tag)
{
    char pfx[512];
    snprintf(pfx, sizeof pfx, "%s/%s/.probe/", prefix, tag);
    s3_list_page p = {0};
    int rc = s3_list(storage_s3_client(c->st), pfx, NULL, NULL, NULL, 0, &p);
    int n = rc ? -1 : (int)p.n_items;
    s3_list_page_free(&p);
    return n;
}

TEST(probe_honoured_and_recorded)
{
    const char *dir = test_tmpdir("condwrite_a");
    wp_client *c = open_s3("a", dir);
    REQUIRE(c);
    CHECK(c->cond_writes);
    CHECK(!was_warned("If-None-Match"));
    bool honoured = false;
    CHECK_OK(storage_s3_probe_conditional(c->st, &honoured));
    CHECK(honoured);
    CHECK(probe_objects(c, "a") == 0); /* the probe cleans up */
    wp_client_close(c);

    /* Recorded: another handle on the store reads it back. */
    meta *m = open_meta(dir);
    REQUIRE(m);
    char v[16] = "";
    CHECK_OK(m->ops->setting_get(m, "conditionwrite", v, sizeof v));
    CHECK(strcmp(v, "true") == 0);
    m->ops->close(m);

    /* A second open reads the record and does not probe again. */
    c = open_s3("a", dir);
    REQUIRE(c);
    CHECK(c->cond_writes);
    s3_stats st;
    s3_client_stats(storage_s3_client(c->st), &st);
    CHECK(st.puts == 0);
    wp_client_close(c);
}

/* Simulates an endpoint that ignores If-None-Match: the second PUT to a
 * probe key is answered 200 without being sent. */
typedef struct {
    int probe_puts;
    int fail_first; /* answer this status to the first probe PUT instead */
} fake;

static void fake_hook(void *arg, const s3_fault_req *req, s3_fault *out)
{
    fake *f = arg;
    if (strcmp(req->method, "PUT") != 0 || !strstr(req->key, "/.probe/") || req->attempt)
        return;
    int k = f->probe_puts++;
    if (k == 0 && f->fail_first) {
        out->kind = S3_FAULT_STATUS;
        out->status = f->fail_first;
        out->body = "<Error><Code>AccessDenied</Code></Error>";
    } else if (k == 1) {
        out->kind = S3_FAULT_STATUS;
        out->status = 200;
    }
}

TEST(probe_detects_ignored_condition)
{
    const char *dir = test_tmpdir("condwrite_b");
    wp_client *c = open_s3("b", dir);
    REQUIRE(c);
    s3_client *sc = storage_s3_client(c->st);
    fake f = {0, 0};
    s3_client_set_fault(sc, fake_hook, &f);
    bool honoured = true;
    CHECK_OK(storage_s3_probe_conditional(c->st, &honoured));
    CHECK(!honoured);
    CHECK(f.probe_puts == 2);
    CHECK(probe_objects(c, "b") == 0);

    /* A failing request is an error, and *honoured is left alone. */
    f = (fake){0, 403};
    honoured = true;
    CHECK_RC(WP_EIO, storage_s3_probe_conditional(c->st, &honoured));
    CHECK(honoured);
    CHECK(f.probe_puts == 1);
    s3_client_set_fault(sc, NULL, NULL);
    CHECK(probe_objects(c, "b") == 0);
    wp_client_close(c);
}

/* After fencing, answer 200 to every PUT of this client without sending
 * it: what an endpoint that ignores If-None-Match would do with the old
 * writer's upload onto the fence marker's key. */
static void put_ok_hook(void *arg, const s3_fault_req *req, s3_fault *out)
{
    (void)arg;
    if (strcmp(req->method, "PUT") == 0) {
        out->kind = S3_FAULT_STATUS;
        out->status = 200;
    }
}

static int append_seq(wp_writer *w, int first, int n)
{
    for (int i = first; i < first + n; i++) {
        char buf[64];
        int len = snprintf(buf, sizeof buf, "cw-entry-%d", i);
        int rc = wp_writer_append(w, buf, (size_t)len, NULL);
        if (rc)
            return rc;
    }
    return WP_OK;
}

/* Reads from earliest; checks the sequence from 0; returns the count. */
static int read_seq(wp_log *log)
{
    wp_reader *r;
    if (wp_reader_open(log, WP_EARLIEST, &r))
        return -1;
    int i = 0;
    wp_entry e;
    while (wp_reader_next(r, 300, &e) == WP_OK) {
        char want[64];
        int len = snprintf(want, sizeof want, "cw-entry-%d", i);
        if (e.len != (size_t)len || memcmp(e.data, want, (size_t)len)) {
            i = -1;
            break;
        }
        i++;
    }
    wp_reader_close(r);
    return i;
}

/* A writes n entries, B opens (new epoch); A's next append "succeeds" at
 * the store (put_ok_hook). Returns A's append's result. */
static int fenced_append(wp_client *ca, wp_client *cb, const char *name, int n)
{
    wp_log *la = NULL, *lb = NULL;
    wp_writer *wa = NULL, *wb = NULL;
    int rc = -1;
    if (wp_log_create(ca, name) || wp_log_open(ca, name, &la) || wp_writer_open(la, &wa) ||
        append_seq(wa, 0, n) || wp_log_open(cb, name, &lb) || wp_writer_open(lb, &wb))
        goto out;
    s3_client_set_fault(storage_s3_client(ca->st), put_ok_hook, NULL);
    rc = wp_writer_append(wa, "late", 4, NULL);
    s3_client_set_fault(storage_s3_client(ca->st), NULL, NULL);
    if (wb && append_seq(wb, n, 5)) /* B goes on where A's acks ended */
        rc = -2;
out:
    wp_writer_close(wa);
    wp_writer_close(wb);
    wp_log_close(la);
    wp_log_close(lb);
    return rc;
}

TEST(fallback_epoch_check)
{
    const char *dir = test_tmpdir("condwrite_c");
    meta *m = open_meta(dir);
    REQUIRE(m);
    CHECK_OK(m->ops->setting_put(m, "conditionwrite", "false"));
    m->ops->close(m);
    warned[0] = '\0';
    wp_client *ca = open_s3("c", dir), *cb = open_s3("c", dir);
    REQUIRE(ca && cb);
    CHECK(!ca->cond_writes && !cb->cond_writes);
    CHECK(was_warned("endpoint ignores If-None-Match: fencing falls back to a metadata "
                     "epoch check before every ack"));
    s3_stats st;
    s3_client_stats(storage_s3_client(ca->st), &st);
    CHECK(st.puts == 0); /* recorded "false": no probe ran */

    /* The old writer's upload "succeeds", but it is not acked. */
    CHECK_RC(WP_EFENCED, fenced_append(ca, cb, "fb", 20));
    wp_log *log;
    REQUIRE(wp_log_open(cb, "fb", &log) == 0);
    CHECK(read_seq(log) == 25); /* every ack of A, then B's */
    wp_log_close(log);

    /* Control: without the check the same append would have been acked. */
    ca->cond_writes = true;
    CHECK_OK(fenced_append(ca, cb, "ctl", 20));
    wp_client_close(ca);
    wp_client_close(cb);
}

int main(void)
{
    if (env_load())
        return 1;
    RUN(probe_honoured_and_recorded);
    RUN(probe_detects_ignored_condition);
    RUN(fallback_epoch_check);
    return test_done();
}
