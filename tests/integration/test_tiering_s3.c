/* test_tiering_s3.c — server-driven tiering (issue 11): LogStore servers
 * (real processes on 127.0.0.1) upload completed segments to the S3
 * server (Ceph RGW, the CTest fixture), seal them, drop their copies; a
 * reader follows the data there; GC runs on the servers; a drained server
 * exits once it holds nothing un-uploaded; an uploader killed -9 mid-upload
 * is taken over; etcd unavailable for a while during uploads. Metadata is
 * one SQLite file shared by every process, or a real etcd (started here). */
#include "test.h"
#include "meta/meta.h"
#include "support/etcd_proc.h"
#include "support/logstore_proc.h"
#include "support/s3env.h"
#include "support/testutil.h"
#include "storage/s3.h"
#include "storage/storage.h"

#include <dirent.h>
#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#define NSRV 4
static logstore_proc srv[NSRV];
static char meta_path[1100], prefix[128];
static test_s3_env env;
/* etcd metadata instead of SQLite when etcd_ep[0] (meta.prefix etcd_pfx). */
static char etcd_ep[256], etcd_pfx[64], o_mtype[64], o_mep[320], o_mpfx[128];
static char o_ep[400], o_bucket[120], o_region[120], o_ak[200], o_sk[200], o_prefix[200];

static void s3_opts(const char *tag)
{
    snprintf(prefix, sizeof prefix, "tier-%d-%s", (int)getpid(), tag);
    snprintf(o_ep, sizeof o_ep, "storage.s3.endpoint=%s", env.endpoint);
    snprintf(o_bucket, sizeof o_bucket, "storage.s3.bucket=%s", env.bucket);
    snprintf(o_region, sizeof o_region, "storage.s3.region=%s", env.region);
    snprintf(o_ak, sizeof o_ak, "storage.s3.access_key=%s", env.access_key);
    snprintf(o_sk, sizeof o_sk, "storage.s3.secret_key=%s", env.secret_key);
    snprintf(o_prefix, sizeof o_prefix, "storage.s3.prefix=%s", prefix);
}

/* Server i of the fleet under dir, with extra "key=value" options. */
static int srv_start(const char *dir, int i, const char *const *extra)
{
    char sub[1100], id[16];
    snprintf(sub, sizeof sub, "%s/s%d", dir, i);
    snprintf(id, sizeof id, "t%d", i);
    const char *opts[32] = {o_ep, o_bucket, o_region, o_ak, o_sk, o_prefix,
                            "node.upload_interval_ms=100", "node.drop_grace_ms=300",
                            "gc.interval_ms=200", "compaction.max_bytes=1MiB", NULL};
    int n = 10;
    if (etcd_ep[0]) {
        snprintf(o_mtype, sizeof o_mtype, "meta.type=etcd");
        snprintf(o_mep, sizeof o_mep, "meta.etcd.endpoints=%s", etcd_ep);
        snprintf(o_mpfx, sizeof o_mpfx, "meta.prefix=%s", etcd_pfx);
        opts[n++] = o_mtype;
        opts[n++] = o_mep;
        opts[n++] = o_mpfx;
    }
    for (int k = 0; extra && extra[k] && n < 31; k++)
        opts[n++] = extra[k];
    opts[n] = NULL;
    return logstore_proc_start_opts(&srv[i], sub, id, meta_path, opts);
}

static int fleet_up(const char *dir, int n, const char *const *extra)
{
    snprintf(meta_path, sizeof meta_path, "%s/meta.sqlite", dir);
    for (int i = 0; i < n; i++)
        if (srv_start(dir, i, extra) != 0)
            return -1;
    return 0;
}

static void fleet_down(void)
{
    for (int i = 0; i < NSRV; i++)
        if (srv[i].pid > 0) {
            logstore_proc_stop(&srv[i], SIGTERM);
            srv[i].pid = 0;
        }
}

static wp_client *client(const char *dir, const char *seg_bytes)
{
    const char *kv[] = {"storage.type", "quorum", "meta.path", meta_path,
                        "segment.max_bytes", seg_bytes, "quorum.replica_timeout_ms", "500",
                        "storage.s3.endpoint", env.endpoint, "storage.s3.bucket", env.bucket,
                        "storage.s3.region", env.region, "storage.s3.access_key", env.access_key,
                        "storage.s3.secret_key", env.secret_key, "storage.s3.prefix", prefix,
                        etcd_ep[0] ? "meta.type" : NULL, "etcd", "meta.etcd.endpoints", etcd_ep,
                        "meta.prefix", etcd_pfx, NULL};
    return test_client_open(dir, kv);
}

static int append_seq(wp_writer *w, int first, int n, int pad)
{
    char buf[4096];
    for (int i = first; i < first + n; i++) {
        int len = snprintf(buf, sizeof buf, "t-entry-%d", i);
        if (pad > len && pad < (int)sizeof buf) {
            memset(buf + len, 'x', (size_t)(pad - len));
            len = pad;
        }
        int rc = wp_writer_append(w, buf, (size_t)len, NULL);
        if (rc)
            return rc;
    }
    return WP_OK;
}

/* Checks entry i's payload. */
static bool entry_is(const wp_entry *e, int i)
{
    char want[32];
    int len = snprintf(want, sizeof want, "t-entry-%d", i);
    return e->len >= (size_t)len && memcmp(e->data, want, (size_t)len) == 0 &&
           (e->len == (size_t)len || ((const char *)e->data)[len] == 'x');
}

/* Reads from earliest: the count of entries in sequence from 0, or -1. */
static int read_seq(wp_log *log)
{
    wp_reader *r;
    if (wp_reader_open(log, WP_EARLIEST, &r))
        return -1;
    int i = 0;
    wp_entry e;
    int rc;
    while ((rc = wp_reader_next(r, 1000, &e)) == WP_OK) {
        if (!entry_is(&e, i)) {
            fprintf(stderr, "  entry %d is '%.*s'\n", i, (int)(e.len > 40 ? 40 : e.len),
                    (const char *)e.data);
            i = -1;
            break;
        }
        i++;
    }
    if (rc != WP_OK && rc != WP_ETIMEDOUT)
        fprintf(stderr, "  read stopped at %d: %s (%s)\n", i, wp_strerror(rc), wp_errmsg());
    wp_reader_close(r);
    return i;
}

static meta *meta_of(void)
{
    meta *m = NULL;
    if (!etcd_ep[0])
        return meta_sqlite_open(meta_path, &m) == 0 ? m : NULL;
    wp_config *cfg = NULL;
    if (wp_config_default(&cfg) == 0 && wp_config_set(cfg, "meta.type", "etcd") == 0 &&
        wp_config_set(cfg, "meta.etcd.endpoints", etcd_ep) == 0 &&
        wp_config_set(cfg, "meta.prefix", etcd_pfx) == 0 && meta_open(cfg, &m) != 0)
        m = NULL;
    wp_config_free(cfg);
    return m;
}

/* Segments of log `name` in each state; -1 if the metadata fails. */
static int count_states(const char *name, int counts[4], int64_t *last_seg)
{
    meta *m = meta_of();
    if (!m)
        return -1;
    meta_log ml;
    meta_seg *segs = NULL;
    size_t n = 0;
    int rc = m->ops->log_get(m, name, &ml);
    if (rc == 0)
        rc = m->ops->seg_list(m, ml.log_id, &segs, &n);
    memset(counts, 0, 4 * sizeof *counts);
    for (size_t i = 0; rc == 0 && i < n; i++)
        if (segs[i].state >= 0 && segs[i].state < 4)
            counts[segs[i].state]++;
    if (last_seg)
        *last_seg = n ? segs[n - 1].seg_id : -1;
    free(segs);
    m->ops->close(m);
    return rc ? -1 : (int)n;
}

/* Waits until every segment but the last `keep` is SEALED. */
static bool wait_sealed(const char *name, int keep, int timeout_ms)
{
    int64_t end = test_now_ms() + timeout_ms;
    int c[4];
    int n = 0;
    while (test_now_ms() < end) {
        n = count_states(name, c, NULL);
        if (n > keep && c[WP_SEG_SEALED] >= n - keep)
            return true;
        test_sleep_ms(50);
    }
    fprintf(stderr, "  not sealed in time: %d segments, %d active, %d completed, %d sealed\n", n,
            c[0], c[1], c[2]);
    return false;
}

/* Segment copies in a server's data directory: the directories
 * data/segments/<log>/<seg>/ (docs/format.md §9). */
static int copies_held(int i, const char *dir)
{
    char p[1300];
    snprintf(p, sizeof p, "%s/s%d/data/segments", dir, i);
    DIR *d = opendir(p);
    if (!d)
        return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char q[1600];
        snprintf(q, sizeof q, "%s/%s", p, e->d_name);
        DIR *d2 = opendir(q);
        if (!d2)
            continue;
        struct dirent *f;
        while ((f = readdir(d2)) != NULL)
            n += f->d_name[0] >= '0' && f->d_name[0] <= '9';
        closedir(d2);
    }
    closedir(d);
    return n;
}

/* Objects under the test's prefix for (log, seg) (-1: all). */
static int objects_of(int64_t log_id, int64_t seg_id)
{
    s3_options o = {.endpoint = env.endpoint, .bucket = env.bucket, .region = env.region,
                    .access_key = env.access_key, .secret_key = env.secret_key,
                    .path_style = true, .timeout_ms = 10000, .max_retries = 3};
    s3_client *c = NULL;
    storage *st = NULL;
    if (s3_client_open(&o, &c) != 0 || storage_s3_open_client(c, prefix, NULL, &st) != 0)
        return -1;
    int64_t *ids = NULL;
    size_t n = 0;
    int rc = st->ops->seg_list(st, log_id, &ids, &n);
    int found = 0;
    for (size_t i = 0; rc == 0 && i < n; i++)
        found += seg_id < 0 || ids[i] == seg_id;
    free(ids);
    st->ops->close(st);
    return rc ? -1 : found;
}

static int64_t log_id_of(const char *name)
{
    meta *m = meta_of();
    meta_log ml = {.log_id = -1};
    if (m) {
        if (m->ops->log_get(m, name, &ml) != 0)
            ml.log_id = -1;
        m->ops->close(m);
    }
    return ml.log_id;
}

/* The first running server a placement names (docs/metadata.md 3.2), or -1. */
static int first_replica(const char *placement)
{
    for (int i = 0; i < NSRV; i++) {
        char needle[80];
        snprintf(needle, sizeof needle, "%s@", srv[i].id);
        if (srv[i].pid > 0 && strstr(placement, needle))
            return i;
    }
    return -1;
}

/* ---- tests ----------------------------------------------------------------- */

/* Segments rolled by a writer are uploaded, sealed and dropped from the
 * servers; with every server stopped, the log reads back from object
 * storage alone; GC on the servers deletes the truncated ones there with
 * no client running. */
TEST(upload_seal_drop_read_gc)
{
    const char *dir = test_tmpdir("tier1");
    s3_opts("t1");
    const char *extra[] = {"retention.ttl_ms=0", "node.metrics_listen=127.0.0.1:0", NULL};
    REQUIRE(fleet_up(dir, 3, extra) == 0);
    wp_client *c = client(dir, "64KiB");
    REQUIRE(c);
    CHECK_OK(wp_log_create(c, "t"));
    wp_log *log;
    REQUIRE(wp_log_open(c, "t", &log) == 0);
    wp_writer *w;
    REQUIRE(wp_writer_open(log, &w) == 0);
    CHECK_OK(append_seq(w, 0, 4000, 100)); /* ~450 KiB: several segments */
    CHECK_OK(wp_writer_close(w));          /* the last one completes too */
    /* The last segment was completed just now: its copies are there (they
     * are dropped 300 ms after it is sealed at the earliest). */
    CHECK(copies_held(0, dir) + copies_held(1, dir) + copies_held(2, dir) >= 3);
    REQUIRE(wait_sealed("t", 0, 60000));
    /* Every copy dropped after the grace (300 ms). */
    int64_t end = test_now_ms() + 20000;
    while (test_now_ms() < end &&
           copies_held(0, dir) + copies_held(1, dir) + copies_held(2, dir) > 0)
        test_sleep_ms(100);
    CHECK(copies_held(0, dir) + copies_held(1, dir) + copies_held(2, dir) == 0);
    int64_t lid = log_id_of("t");
    int n_obj = objects_of(lid, -1);
    CHECK(n_obj >= 4);
    /* The servers' metrics: every segment uploaded once, nothing waits. */
    double uploads = 0, waiting = 0, dropped = 0;
    static char body[256 * 1024];
    for (int i = 0; i < 3; i++) {
        REQUIRE(srv[i].metrics_addr[0]);
        CHECK(test_http(srv[i].metrics_addr, "GET /metrics HTTP/1.1\r\n\r\n", body, sizeof body) > 0);
        uploads += test_metric_sample(body, "wp_logstore_uploads_total");
        waiting += test_metric_sample(body, "wp_logstore_upload_waiting_segments");
        dropped += test_metric_sample(body, "wp_logstore_dropped_total");
    }
    fprintf(stderr, "  %d segments: %.0f uploads, %.0f waiting, %.0f copies dropped\n", n_obj, uploads,
            waiting, dropped);
    CHECK(uploads == n_obj && waiting == 0 && dropped == 3 * n_obj);
    /* Read while the servers run (they no longer hold it), then with
     * every server gone: object storage alone. */
    CHECK(read_seq(log) == 4000);
    int64_t checked = 0;
    CHECK_OK(wp_log_verify(log, NULL, NULL, &checked));
    CHECK(checked == 4000);
    fleet_down();
    CHECK(read_seq(log) == 4000);
    /* GC by the servers: truncate, close the client, start the servers. */
    wp_msg_id upto = {.segment_id = 2, .entry_id = 0};
    meta_seg s2;
    meta *m = meta_of();
    REQUIRE(m);
    REQUIRE(m->ops->seg_get(m, lid, 2, &s2) == 0);
    upto.entry_id = s2.last_entry_id;
    m->ops->close(m);
    CHECK_OK(wp_log_truncate(log, upto));
    wp_log_close(log);
    wp_client_close(c);
    REQUIRE(fleet_up(dir, 3, extra) == 0);
    end = test_now_ms() + 30000;
    while (test_now_ms() < end && objects_of(lid, -1) > n_obj - 3)
        test_sleep_ms(100);
    CHECK(objects_of(lid, 0) == 0 && objects_of(lid, 1) == 0 && objects_of(lid, 2) == 0);
    CHECK(objects_of(lid, 3) == 1);
    int st[4];
    CHECK(count_states("t", st, NULL) == n_obj - 3);
    fleet_down();
}


/* A reader in another client tails the log while its segments are
 * completed, uploaded, sealed and dropped from the servers (grace 0):
 * every entry exactly once, in order. */
typedef struct {
    wp_log *log;
    int want, got;
    bool bad;
} tail_arg;

static void *tail_main(void *arg)
{
    tail_arg *t = arg;
    wp_reader *r;
    if (wp_reader_open(t->log, WP_EARLIEST, &r)) {
        t->bad = true;
        return NULL;
    }
    int64_t end = test_now_ms() + 120000;
    while (t->got < t->want && test_now_ms() < end) {
        wp_entry e;
        int rc = wp_reader_next(r, 500, &e);
        if (rc == WP_ETIMEDOUT)
            continue;
        if (rc || !entry_is(&e, t->got)) {
            fprintf(stderr, "  tail: at %d: %s %s\n", t->got, wp_strerror(rc),
                    rc ? wp_errmsg() : "(wrong entry)");
            t->bad = true;
            break;
        }
        t->got++;
    }
    wp_reader_close(r);
    return NULL;
}

TEST(reader_tails_across_sealing)
{
    const char *dir = test_tmpdir("tier2");
    s3_opts("t2");
    const char *extra[] = {"node.drop_grace_ms=0", "node.upload_interval_ms=20", NULL};
    REQUIRE(fleet_up(dir, 3, extra) == 0);
    wp_client *cw = client(dir, "16KiB"), *cr = client(dir, "16KiB");
    REQUIRE(cw && cr);
    CHECK_OK(wp_log_create(cw, "t"));
    wp_log *lw, *lr;
    REQUIRE(wp_log_open(cw, "t", &lw) == 0);
    REQUIRE(wp_log_open(cr, "t", &lr) == 0);
    wp_writer *w;
    REQUIRE(wp_writer_open(lw, &w) == 0);
    CHECK_OK(append_seq(w, 0, 300, 100));
    tail_arg t = {.log = lr, .want = 6000};
    pthread_t th;
    REQUIRE(pthread_create(&th, NULL, tail_main, &t) == 0);
    for (int i = 300; i < 6000; i += 100) { /* paced: sealing overtakes the reader */
        CHECK_OK(append_seq(w, i, 100, 100));
        test_sleep_ms(5);
    }
    CHECK_OK(wp_writer_close(w));
    pthread_join(th, NULL);
    CHECK(!t.bad);
    CHECK(t.got == 6000);
    int c[4];
    int n = count_states("t", c, NULL);
    CHECK(n > 20 && c[WP_SEG_SEALED] > 10);
    fprintf(stderr, "  %d segments, %d sealed while read\n", n, c[WP_SEG_SEALED]);
    /* And a second reader from the start, everything sealed now. */
    CHECK(wait_sealed("t", 0, 60000));
    CHECK(read_seq(lr) == 6000);
    wp_log_close(lw);
    wp_log_close(lr);
    wp_client_close(cw);
    wp_client_close(cr);
    fleet_down();
}

/* The server that claimed a segment is killed -9 while it uploads; once
 * its lease is gone another replica claims it (a larger generation),
 * starts the objects over and seals it: complete, readable, nothing lost. */
TEST(uploader_killed_mid_upload)
{
    const char *dir = test_tmpdir("tier3");
    s3_opts("t3");
    /* One big segment in 1 MiB parts, uploaded one part at a time. */
    const char *extra[] = {"node.upload_threads=1", "node.upload_delay_ms=500", NULL};
    REQUIRE(fleet_up(dir, 3, extra) == 0);
    wp_client *c = client(dir, "48MiB");
    REQUIRE(c);
    CHECK_OK(wp_log_create(c, "t"));
    wp_log *log;
    REQUIRE(wp_log_open(c, "t", &log) == 0);
    wp_writer *w;
    REQUIRE(wp_writer_open(log, &w) == 0);
    CHECK_OK(append_seq(w, 0, 12000, 3000)); /* ~36 MiB: one segment */
    CHECK_OK(wp_writer_close(w));
    int64_t lid = log_id_of("t");
    /* Wait for the claim and the first objects, then kill the claimant. */
    meta *m = meta_of();
    REQUIRE(m);
    meta_claim cl;
    int victim = -1;
    int64_t end = test_now_ms() + 30000;
    while (victim < 0 && test_now_ms() < end) {
        if (m->ops->claim_get(m, lid, 0, &cl) == 0 && objects_of(lid, 0) == 1) {
            for (int i = 0; i < 3; i++)
                if (strcmp(cl.node_id, srv[i].id) == 0)
                    victim = i;
        } else {
            test_sleep_ms(5);
        }
    }
    REQUIRE(victim >= 0);
    meta_seg s;
    REQUIRE(m->ops->seg_get(m, lid, 0, &s) == 0);
    CHECK(s.state == WP_SEG_COMPLETED); /* not sealed yet: killed mid-upload */
    int64_t gen1 = cl.rev;
    CHECK(logstore_proc_stop(&srv[victim], SIGKILL) == 128 + SIGKILL);
    srv[victim].pid = 0;
    fprintf(stderr, "  killed %s (claim %lld) mid-upload\n", cl.node_id, (long long)gen1);
    CHECK(wait_sealed("t", 0, 60000)); /* the lease (10 s) expires first */
    REQUIRE(m->ops->seg_get(m, lid, 0, &s) == 0);
    CHECK(s.state == WP_SEG_SEALED && s.last_entry_id == 11999);
    m->ops->close(m);
    fleet_down(); /* object storage alone */
    CHECK(read_seq(log) == 12000);
    int64_t checked = 0;
    CHECK_OK(wp_log_verify(log, NULL, NULL, &checked));
    CHECK(checked == 12000);
    wp_log_close(log);
    wp_client_close(c);
}

/* Drain a server while a writer appends (4 servers, W 3): the writer rolls
 * away without an error, the drained server uploads or sees sealed what it
 * holds and exits 0 by itself; every entry reads back. */
TEST(drain_with_active_writer)
{
    const char *dir = test_tmpdir("tier4");
    s3_opts("t4");
    REQUIRE(fleet_up(dir, 4, NULL) == 0);
    wp_client *c = client(dir, "256KiB");
    REQUIRE(c);
    CHECK_OK(wp_log_create(c, "t"));
    wp_log *log;
    REQUIRE(wp_log_open(c, "t", &log) == 0);
    wp_writer *w;
    REQUIRE(wp_writer_open(log, &w) == 0);
    CHECK_OK(append_seq(w, 0, 500, 100));
    /* Drain the server that holds the active segment. */
    meta *m = meta_of();
    REQUIRE(m);
    meta_seg s;
    int64_t lid = log_id_of("t");
    REQUIRE(m->ops->seg_get(m, lid, 0, &s) == 0);
    int d = first_replica(s.placement);
    REQUIRE(d >= 0);
    char cmd[2000];
    snprintf(cmd, sizeof cmd, "%s/woodpecker logstore drain -o node.data_dir=%s/s%d/data >/dev/null",
             getenv("WP_BIN"), dir, d);
    CHECK(system(cmd) == 0);
    /* The writer goes on; the drained server exits by itself. */
    int status = -1, i = 500;
    int64_t end = test_now_ms() + 60000;
    while (test_now_ms() < end) {
        CHECK_OK(append_seq(w, i, 50, 100));
        i += 50;
        pid_t p = waitpid(srv[d].pid, &status, WNOHANG);
        if (p == srv[d].pid) {
            srv[d].pid = 0;
            break;
        }
        test_sleep_ms(20);
    }
    CHECK(srv[d].pid == 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK_OK(append_seq(w, i, 200, 100));
    i += 200;
    CHECK_OK(wp_writer_close(w));
    /* Nothing it held is missing: everything it had is sealed. */
    meta_seg *segs = NULL;
    size_t n = 0;
    REQUIRE(m->ops->seg_list(m, lid, &segs, &n) == 0);
    char needle[80];
    snprintf(needle, sizeof needle, "%s@", srv[d].id);
    for (size_t k = 0; k < n; k++)
        if (strstr(segs[k].placement, needle))
            CHECK(segs[k].state == WP_SEG_SEALED);
    free(segs);
    m->ops->close(m);
    CHECK(read_seq(log) == i);
    wp_log_close(log);
    wp_client_close(c);
    fleet_down();
}

/* Servers restarted (SIGTERM or -9, then started again on the same data)
 * while uploads go on (4 servers: a writer rolls onto 3 live ones): they
 * resume; every segment is sealed, whole. */
TEST(restart_during_uploads)
{
    const char *dir = test_tmpdir("tier5");
    s3_opts("t5");
    const char *extra[] = {"node.upload_threads=1", NULL};
    REQUIRE(fleet_up(dir, 4, extra) == 0);
    wp_client *c = client(dir, "1MiB");
    REQUIRE(c);
    CHECK_OK(wp_log_create(c, "t"));
    wp_log *log;
    REQUIRE(wp_log_open(c, "t", &log) == 0);
    wp_writer *w;
    REQUIRE(wp_writer_open(log, &w) == 0);
    CHECK_OK(append_seq(w, 0, 4000, 2000)); /* ~8 MiB: 8 segments */
    for (int k = 0; k < 3; k++) { /* restart each server in turn */
        CHECK(logstore_proc_stop(&srv[k], k == 1 ? SIGKILL : SIGTERM) >= 0);
        srv[k].pid = 0;
        CHECK_OK(append_seq(w, 4000 + 500 * k, 500, 2000));
        REQUIRE(srv_start(dir, k, extra) == 0);
    }
    CHECK_OK(wp_writer_close(w));
    CHECK(wait_sealed("t", 0, 90000));
    fleet_down();
    CHECK(read_seq(log) == 5500);
    wp_log_close(log);
    wp_client_close(c);
}

/* The server that holds an idle writer's active segment is drained: the
 * writer completes that segment without an append (its next append starts
 * a new one elsewhere), so the server uploads it and exits: an idle log
 * does not hold a decommission up. */
TEST(drain_with_idle_writer)
{
    const char *dir = test_tmpdir("tier6");
    s3_opts("t6");
    REQUIRE(fleet_up(dir, 4, NULL) == 0);
    wp_client *c = client(dir, "256KiB");
    REQUIRE(c);
    CHECK_OK(wp_log_create(c, "t"));
    wp_log *log;
    REQUIRE(wp_log_open(c, "t", &log) == 0);
    wp_writer *w;
    REQUIRE(wp_writer_open(log, &w) == 0);
    CHECK_OK(append_seq(w, 0, 100, 100)); /* then idle */
    meta *m = meta_of();
    REQUIRE(m);
    meta_seg s;
    int64_t lid = log_id_of("t");
    REQUIRE(m->ops->seg_get(m, lid, 0, &s) == 0);
    int d = first_replica(s.placement);
    REQUIRE(d >= 0);
    CHECK(kill(srv[d].pid, SIGUSR1) == 0);
    int status = -1;
    int64_t end = test_now_ms() + 30000;
    while (test_now_ms() < end && waitpid(srv[d].pid, &status, WNOHANG) == 0)
        test_sleep_ms(50);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    srv[d].pid = 0;
    REQUIRE(m->ops->seg_get(m, lid, 0, &s) == 0);
    CHECK(s.state == WP_SEG_SEALED && s.last_entry_id == 99);
    m->ops->close(m);
    CHECK_OK(append_seq(w, 100, 100, 100)); /* segment 1, on the others */
    CHECK_OK(wp_writer_close(w));
    CHECK(read_seq(log) == 200);
    wp_log_close(log);
    wp_client_close(c);
    fleet_down();
}

/* Which servers claimed segment (lid, 0) while watching until it is
 * sealed or timeout_ms passes: bit i for server i. */
static int claimants_until_sealed(int64_t lid, int timeout_ms, meta_seg *out)
{
    meta *m = meta_of();
    if (!m)
        return -1;
    int seen = 0;
    int64_t end = test_now_ms() + timeout_ms;
    while (test_now_ms() < end) {
        meta_claim cl;
        if (m->ops->claim_get(m, lid, 0, &cl) == 0)
            for (int i = 0; i < NSRV; i++)
                if (strcmp(cl.node_id, srv[i].id) == 0)
                    seen |= 1 << i;
        if (m->ops->seg_get(m, lid, 0, out) == 0 && out->state == WP_SEG_SEALED)
            break;
        test_sleep_ms(10);
    }
    m->ops->close(m);
    return seen;
}

/* Server 2 lags: it is stopped (SIGSTOP) while entries 200..499 are
 * written, then killed and restarted, so it holds 0..199 of the segment,
 * which completes at 499 on servers 0 and 1. Both of those are killed -9
 * before the upload (uploads wait node.upload_delay_ms): the lagging
 * server alone never claims the segment and it is never sealed short;
 * once server 1 (a whole copy) is back, it uploads all of it. */
TEST(tail_replica_dies_before_upload)
{
    const char *dir = test_tmpdir("tier7");
    s3_opts("t7");
    const char *extra[] = {"node.upload_delay_ms=3000", NULL};
    REQUIRE(fleet_up(dir, 3, extra) == 0);
    wp_client *c = client(dir, "64MiB");
    REQUIRE(c);
    CHECK_OK(wp_log_create(c, "t"));
    wp_log *log;
    REQUIRE(wp_log_open(c, "t", &log) == 0);
    wp_writer *w;
    REQUIRE(wp_writer_open(log, &w) == 0);
    CHECK_OK(append_seq(w, 0, 200, 100));
    CHECK_OK(wp_writer_flush(w));
    CHECK(kill(srv[2].pid, SIGSTOP) == 0);
    CHECK_OK(append_seq(w, 200, 300, 100)); /* acked by servers 0 and 1 */
    CHECK_OK(wp_writer_close(w));            /* COMPLETE on servers 0 and 1 */
    CHECK(logstore_proc_stop(&srv[2], SIGKILL) == 128 + SIGKILL);
    srv[2].pid = 0;
    int64_t lid = log_id_of("t");
    CHECK(logstore_proc_stop(&srv[0], SIGKILL) == 128 + SIGKILL);
    srv[0].pid = 0;
    CHECK(logstore_proc_stop(&srv[1], SIGKILL) == 128 + SIGKILL);
    srv[1].pid = 0;
    REQUIRE(srv_start(dir, 2, extra) == 0); /* holds 0..199 */
    /* Only the lagging server runs: nothing may be claimed or sealed. */
    meta_seg s;
    int seen = claimants_until_sealed(lid, 5000, &s);
    CHECK(seen == 0);
    CHECK(s.state == WP_SEG_COMPLETED && s.last_entry_id == 499);
    /* Its registration says what it holds and that it waits for upload. */
    meta *m = meta_of();
    REQUIRE(m);
    meta_node nd;
    CHECK_OK(m->ops->node_get(m, srv[2].id, &nd));
    fprintf(stderr, "  t2 registered: %lld segments, %lld waiting (%lld bytes), lag %lld ms\n",
            (long long)nd.segments, (long long)nd.upload_segments, (long long)nd.upload_bytes,
            (long long)nd.upload_lag_ms);
    CHECK(nd.segments == 1 && nd.upload_segments == 1 && nd.upload_lag_ms >= 3000);
    m->ops->close(m);
    /* Server 1 is back: it uploads; server 2 still never claims. */
    REQUIRE(srv_start(dir, 1, extra) == 0);
    seen = claimants_until_sealed(lid, 30000, &s);
    CHECK(s.state == WP_SEG_SEALED && s.last_entry_id == 499);
    CHECK((seen & 4) == 0);
    fleet_down();
    CHECK(read_seq(log) == 500); /* object storage alone */
    wp_log_close(log);
    wp_client_close(c);
}

/* etcd metadata, killed for 5 s while the servers upload (some in the
 * middle of an upload, others before they claim) and started again: the
 * uploads resume; every segment ends sealed once, with a whole copy. */
TEST(etcd_unavailable_during_uploads)
{
    const char *dir = test_tmpdir("tier8");
    s3_opts("t8");
    etcd_cluster ec;
    REQUIRE(etcd_cluster_start(&ec, 1, NULL) == 0);
    snprintf(etcd_ep, sizeof etcd_ep, "%s", ec.endpoints);
    snprintf(etcd_pfx, sizeof etcd_pfx, "tier8-%d/", (int)getpid());
    const char *extra[] = {"node.upload_threads=1", "node.upload_delay_ms=2000", "log.level=info",
                           NULL};
    REQUIRE(fleet_up(dir, 3, extra) == 0);
    wp_client *c = client(dir, "4MiB");
    REQUIRE(c);
    CHECK_OK(wp_log_create(c, "t"));
    wp_log *log;
    REQUIRE(wp_log_open(c, "t", &log) == 0);
    wp_writer *w;
    REQUIRE(wp_writer_open(log, &w) == 0);
    CHECK_OK(append_seq(w, 0, 16000, 2000)); /* ~32 MiB: 8 segments */
    CHECK_OK(wp_writer_close(w));
    /* Kill etcd as soon as a server claims a segment: that upload cannot
     * seal or delete its claim, the others cannot claim. */
    meta *m = meta_of();
    REQUIRE(m);
    int64_t lid = log_id_of("t"), end = test_now_ms() + 30000;
    bool claimed = false;
    while (!claimed && test_now_ms() < end) {
        meta_claim *cl = NULL;
        size_t n = 0;
        claimed = m->ops->claim_list(m, lid, &cl, &n) == 0 && n > 0;
        free(cl);
        if (!claimed)
            test_sleep_ms(2);
    }
    m->ops->close(m);
    CHECK(claimed);
    CHECK(etcd_member_stop(&ec, 0, SIGKILL) == 0);
    test_sleep_ms(5000);
    CHECK(etcd_member_start(&ec, 0) == 0);
    CHECK(etcd_member_wait_healthy(&ec, 0, 20000) == 0);
    CHECK(wait_sealed("t", 0, 120000));
    /* Every sealed record's bytes are its object copy's: verify reads
     * each segment's footer, index and entries from object storage. */
    fleet_down();
    int64_t checked = 0;
    CHECK_OK(wp_log_verify(log, NULL, NULL, &checked));
    CHECK(checked == 16000);
    CHECK(read_seq(log) == 16000);
    wp_log_close(log);
    wp_client_close(c);
    etcd_cluster_destroy(&ec);
    etcd_ep[0] = '\0';
}

/* A claim of server 0's own, under its live node lease, left by an attempt
 * that could not delete it (as when metadata was unavailable): the others
 * must wait for it (it is live), so server 0 goes on with it and seals. */
TEST(own_stale_claim_is_adopted)
{
    const char *dir = test_tmpdir("tier9");
    s3_opts("t9");
    const char *extra[] = {"node.upload_delay_ms=1500", NULL};
    REQUIRE(fleet_up(dir, 3, extra) == 0);
    wp_client *c = client(dir, "64MiB");
    REQUIRE(c);
    CHECK_OK(wp_log_create(c, "t"));
    wp_log *log;
    REQUIRE(wp_log_open(c, "t", &log) == 0);
    wp_writer *w;
    REQUIRE(wp_writer_open(log, &w) == 0);
    CHECK_OK(append_seq(w, 0, 300, 100));
    CHECK_OK(wp_writer_close(w));
    meta *m = meta_of();
    REQUIRE(m);
    int64_t lid = log_id_of("t");
    meta_node nd;
    REQUIRE(m->ops->node_get(m, srv[0].id, &nd) == 0);
    meta_claim cl = {.log_id = lid, .seg_id = 0, .lease_id = nd.lease_id, .claimed_ms = 1,
                     .attempt = 1};
    snprintf(cl.node_id, sizeof cl.node_id, "%s", srv[0].id);
    CHECK_OK(m->ops->claim_create(m, &cl));
    m->ops->close(m);
    meta_seg s;
    int seen = claimants_until_sealed(lid, 15000, &s);
    CHECK(s.state == WP_SEG_SEALED && s.last_entry_id == 299);
    CHECK(seen == 1); /* only server 0's claim was ever there */
    fleet_down();
    CHECK(read_seq(log) == 300);
    wp_log_close(log);
    wp_client_close(c);
}

/* A reader positioned before a truncation reads on through segments that
 * were sealed (the servers dropped their copies) and are now TRUNCATED,
 * kept for retention.ttl_ms: from their objects. */
TEST(truncated_sealed_segments_stay_readable)
{
    const char *dir = test_tmpdir("tier10");
    s3_opts("t10");
    REQUIRE(fleet_up(dir, 3, NULL) == 0);
    wp_client *c = client(dir, "64KiB");
    REQUIRE(c);
    CHECK_OK(wp_log_create(c, "t"));
    wp_log *log;
    REQUIRE(wp_log_open(c, "t", &log) == 0);
    wp_writer *w;
    REQUIRE(wp_writer_open(log, &w) == 0);
    CHECK_OK(append_seq(w, 0, 3000, 100));
    CHECK_OK(wp_writer_close(w));
    REQUIRE(wait_sealed("t", 0, 60000));
    int64_t end = test_now_ms() + 20000;
    while (test_now_ms() < end &&
           copies_held(0, dir) + copies_held(1, dir) + copies_held(2, dir) > 0)
        test_sleep_ms(100);
    wp_reader *r;
    REQUIRE(wp_reader_open(log, WP_EARLIEST, &r) == 0);
    wp_entry e;
    CHECK_OK(wp_reader_next(r, 1000, &e));
    CHECK(entry_is(&e, 0));
    /* Truncate through segment 2; the servers' GC marks 0..2 TRUNCATED
     * (deleted only after the default retention of 72 h). */
    meta *m = meta_of();
    REQUIRE(m);
    meta_seg s2;
    int64_t lid = log_id_of("t");
    REQUIRE(m->ops->seg_get(m, lid, 2, &s2) == 0);
    CHECK_OK(wp_log_truncate(log, (wp_msg_id){2, s2.last_entry_id}));
    end = test_now_ms() + 10000;
    while (test_now_ms() < end && m->ops->seg_get(m, lid, 1, &s2) == 0 &&
           s2.state != WP_SEG_TRUNCATED)
        test_sleep_ms(50);
    CHECK(s2.state == WP_SEG_TRUNCATED);
    m->ops->close(m);
    int i = 1;
    while (i < 3000 && wp_reader_next(r, 1000, &e) == WP_OK && entry_is(&e, i))
        i++;
    CHECK(i == 3000);
    wp_reader_close(r);
    wp_log_close(log);
    wp_client_close(c);
    fleet_down();
}

int main(void)
{
    if (test_s3_env_load(NULL, &env) != 0)
        return 1;
    RUN(upload_seal_drop_read_gc);
    RUN(reader_tails_across_sealing);
    RUN(uploader_killed_mid_upload);
    RUN(drain_with_active_writer);
    RUN(restart_during_uploads);
    RUN(drain_with_idle_writer);
    RUN(tail_replica_dies_before_upload);
    RUN(etcd_unavailable_during_uploads);
    RUN(own_stale_claim_is_adopted);
    RUN(truncated_sealed_segments_stay_readable);
    return test_done();
}
