/* test_log.c — the public API end to end on the embedded default (local
 * disk + SQLite): logs, writer, reader, rolling, tailing, truncation, GC,
 * recovery, bad input. As integration/test_log@quorum, the same on
 * storage.type quorum (tests/support/quorum_env.h). */
#include "test.h"
#include "support/testutil.h"

#include <pthread.h>
#include <time.h>

#include "client/internal.h"

static wp_client *open_client(const char *dir, const char *const *kv)
{
    return test_client_open(dir, kv);
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Reads everything visible from `from`; checks payload "e<N>" order. */
static int read_all(wp_log *log, wp_msg_id from, int expect_first, int expect_n)
{
    wp_reader *r;
    int rc = wp_reader_open(log, from, &r);
    if (rc)
        return rc;
    int i = 0;
    wp_entry e;
    while ((rc = wp_reader_next(r, 100, &e)) == WP_OK) {
        char want[32];
        int n = snprintf(want, sizeof want, "e%d", expect_first + i);
        if (e.len != (size_t)n || memcmp(e.data, want, (size_t)n) != 0) {
            fprintf(stderr, "  entry %d: got '%.*s', want '%s'\n", i, (int)e.len,
                    (const char *)e.data, want);
            rc = WP_ECORRUPT;
            break;
        }
        i++;
    }
    wp_reader_close(r);
    if (rc == WP_ETIMEDOUT && i == expect_n)
        return WP_OK;
    if (rc == WP_ETIMEDOUT) {
        fprintf(stderr, "  read %d entries, want %d\n", i, expect_n);
        return WP_ENOENT;
    }
    return rc;
}

static int append_n(wp_writer *w, int first, int n)
{
    for (int i = first; i < first + n; i++) {
        char buf[32];
        int len = snprintf(buf, sizeof buf, "e%d", i);
        int rc = wp_writer_append(w, buf, (size_t)len, NULL);
        if (rc)
            return rc;
    }
    return WP_OK;
}

TEST(log_lifecycle)
{
    wp_client *c = open_client(test_tmpdir("lifecycle"), NULL);
    REQUIRE(c);
    CHECK_OK(wp_log_create(c, "a"));
    CHECK_OK(wp_log_create(c, "ns/b"));
    CHECK_OK(wp_log_create(c, "ns/c"));
    CHECK_RC(WP_EEXIST, wp_log_create(c, "a"));
    CHECK_RC(WP_EINVAL, wp_log_create(c, "bad name"));
    CHECK_RC(WP_EINVAL, wp_log_create(c, ""));
    CHECK_RC(WP_EINVAL, wp_log_create(c, "/x"));
    CHECK_RC(WP_EINVAL, wp_log_create(c, "x//y"));
    CHECK_RC(WP_EINVAL, wp_log_create(c, "x/../y"));
    char big[300];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = 0;
    CHECK_RC(WP_EINVAL, wp_log_create(c, big));
    big[200] = 0;
    CHECK_OK(wp_log_create(c, big));
    char **names;
    size_t n;
    CHECK_OK(wp_log_list(c, "ns/", &names, &n));
    CHECK(n == 2 && !strcmp(names[0], "ns/b") && !strcmp(names[1], "ns/c"));
    wp_free_names(names, n);
    wp_log *log;
    CHECK_RC(WP_ENOENT, wp_log_open(c, "nope", &log));
    CHECK_OK(wp_log_delete(c, "ns/b"));
    CHECK_RC(WP_ENOENT, wp_log_delete(c, "ns/b"));
    CHECK_OK(wp_log_list(c, "", &names, &n));
    CHECK(n == 3);
    wp_free_names(names, n);
    wp_client_close(c);
}

TEST(append_read_roundtrip)
{
    const char *kv[] = {"segment.max_bytes", "4096", NULL};
    wp_client *c = open_client(test_tmpdir("roundtrip"), kv);
    REQUIRE(c);
    CHECK_OK(wp_log_create(c, "l"));
    wp_log *log;
    REQUIRE(wp_log_open(c, "l", &log) == 0);
    wp_writer *w;
    REQUIRE(wp_writer_open(log, &w) == 0);
    CHECK_OK(append_n(w, 0, 500));
    wp_msg_id lac = wp_writer_lac(w);
    CHECK(lac.segment_id > 1); /* rolled several times at 4 KiB */
    CHECK_OK(read_all(log, WP_EARLIEST, 0, 500));
    /* exact and after positions */
    wp_reader *r;
    wp_entry e;
    REQUIRE(wp_reader_open(log, (wp_msg_id){1, 3}, &r) == 0);
    CHECK_OK(wp_reader_next(r, 100, &e));
    CHECK(e.id.segment_id == 1 && e.id.entry_id == 3);
    wp_reader_close(r);
    /* a position past the end of a segment continues with the next one */
    REQUIRE(wp_reader_open(log, (wp_msg_id){0, 100000}, &r) == 0);
    CHECK_OK(wp_reader_next(r, 100, &e));
    CHECK(e.id.segment_id == 1 && e.id.entry_id == 0);
    wp_reader_close(r);
    /* latest: nothing until something new */
    REQUIRE(wp_reader_open(log, WP_LATEST, &r) == 0);
    CHECK_RC(WP_ETIMEDOUT, wp_reader_next(r, 20, &e));
    wp_msg_id id;
    CHECK_OK(wp_writer_append(w, "new", 3, &id));
    CHECK_OK(wp_reader_next(r, 1000, &e));
    CHECK(wp_msg_id_cmp(e.id, id) == 0 && e.len == 3 && !memcmp(e.data, "new", 3));
    wp_reader_close(r);
    CHECK_OK(wp_writer_close(w));
    /* reopen: a new writer continues after the last segment */
    REQUIRE(wp_writer_open(log, &w) == 0);
    CHECK_OK(wp_writer_append(w, "more", 4, &id));
    CHECK(id.segment_id > lac.segment_id && id.entry_id == 0);
    CHECK_OK(wp_writer_close(w));
    {
        int64_t checked = 0;
        CHECK_OK(wp_log_verify(log, NULL, NULL, &checked));
        CHECK(checked == 502);
    }
    wp_log_close(log);
    wp_client_close(c);
}

TEST(properties_and_empty_entries)
{
    wp_client *c = open_client(test_tmpdir("props"), NULL);
    REQUIRE(c);
    CHECK_OK(wp_log_create(c, "p"));
    wp_log *log;
    REQUIRE(wp_log_open(c, "p", &log) == 0);
    wp_writer *w;
    REQUIRE(wp_writer_open(log, &w) == 0);
    const char *keys[] = {"k1", "key2"}, *vals[] = {"v1", ""};
    wp_payload p = {"data", 4, 2, keys, vals};
    CHECK_OK(wp_writer_append_entry(w, &p, NULL));
    CHECK_OK(wp_writer_append(w, "", 0, NULL));
    /* bad input */
    wp_payload bad = {NULL, 5, 0, NULL, NULL};
    CHECK_RC(WP_EINVAL, wp_writer_append_entry(w, &bad, NULL));
    const char *nulkey[] = {""};
    wp_payload badk = {"x", 1, 1, nulkey, vals};
    CHECK(wp_writer_append_entry(w, &badk, NULL) != 0);
    CHECK_OK(wp_writer_close(w));
    wp_reader *r;
    wp_entry e;
    REQUIRE(wp_reader_open(log, WP_EARLIEST, &r) == 0);
    CHECK_OK(wp_reader_next(r, 100, &e));
    CHECK(e.n_props == 2 && !strcmp(e.prop_keys[0], "k1") && !strcmp(e.prop_values[0], "v1") &&
          !strcmp(e.prop_keys[1], "key2") && !strcmp(e.prop_values[1], ""));
    CHECK(e.len == 4 && !memcmp(e.data, "data", 4));
    CHECK_OK(wp_reader_next(r, 100, &e));
    CHECK(e.len == 0 && e.n_props == 0);
    CHECK_RC(WP_ETIMEDOUT, wp_reader_next(r, 10, &e));
    wp_reader_close(r);
    wp_log_close(log);
    wp_client_close(c);
}

TEST(oversize_entry_rejected)
{
    const char *kv[] = {"writer.max_entry_bytes", "1024", NULL};
    wp_client *c = open_client(test_tmpdir("oversize"), kv);
    REQUIRE(c);
    CHECK_OK(wp_log_create(c, "o"));
    wp_log *log;
    REQUIRE(wp_log_open(c, "o", &log) == 0);
    wp_writer *w;
    REQUIRE(wp_writer_open(log, &w) == 0);
    char buf[2048] = {0};
    CHECK_RC(WP_ETOOBIG, wp_writer_append(w, buf, sizeof buf, NULL));
    CHECK_OK(wp_writer_append(w, buf, 1024, NULL));
    CHECK_OK(wp_writer_close(w));
    wp_log_close(log);
    wp_client_close(c);
}

/* ---- async + concurrency ----------------------------------------------- */

typedef struct {
    pthread_mutex_t mu;
    wp_msg_id last;
    int acked, failed, out_of_order;
} ackstate;

static void ack_cb(void *arg, int rc, wp_msg_id id)
{
    ackstate *a = arg;
    pthread_mutex_lock(&a->mu);
    if (rc)
        a->failed++;
    else {
        if (a->acked && wp_msg_id_cmp(id, a->last) <= 0)
            a->out_of_order++;
        a->last = id;
        a->acked++;
    }
    pthread_mutex_unlock(&a->mu);
}

typedef struct {
    wp_writer *w;
    ackstate *a;
    int n, tid;
} appender;

static void *appender_main(void *arg)
{
    appender *ap = arg;
    for (int i = 0; i < ap->n; i++) {
        char buf[64];
        int len = snprintf(buf, sizeof buf, "t%d-%d", ap->tid, i);
        if (wp_writer_append_async(ap->w, buf, (size_t)len, ack_cb, ap->a))
            break;
    }
    return NULL;
}

TEST(concurrent_async_appends_ack_in_order)
{
    const char *kv[] = {"segment.max_bytes", "65536", "flush.max_bytes", "4096", NULL};
    wp_client *c = open_client(test_tmpdir("concurrent"), kv);
    REQUIRE(c);
    CHECK_OK(wp_log_create(c, "cc"));
    wp_log *log;
    REQUIRE(wp_log_open(c, "cc", &log) == 0);
    wp_writer *w;
    REQUIRE(wp_writer_open(log, &w) == 0);
    ackstate a = {.mu = PTHREAD_MUTEX_INITIALIZER};
    pthread_t th[4];
    appender ap[4];
    for (int t = 0; t < 4; t++) {
        ap[t] = (appender){w, &a, 5000, t};
        pthread_create(&th[t], NULL, appender_main, &ap[t]);
    }
    for (int t = 0; t < 4; t++)
        pthread_join(th[t], NULL);
    CHECK_OK(wp_writer_flush(w));
    CHECK(a.acked == 20000 && a.failed == 0 && a.out_of_order == 0);
    CHECK_OK(wp_writer_close(w));
    /* each thread's entries appear in its own order, all exactly once */
    wp_reader *r;
    REQUIRE(wp_reader_open(log, WP_EARLIEST, &r) == 0);
    int next[4] = {0}, total = 0, bad = 0;
    wp_entry e;
    while (wp_reader_next(r, 100, &e) == WP_OK) {
        int t, i;
        char buf[64];
        snprintf(buf, sizeof buf, "%.*s", (int)e.len, (const char *)e.data);
        if (sscanf(buf, "t%d-%d", &t, &i) != 2 || t < 0 || t > 3 || next[t] != i)
            bad++;
        else
            next[t]++;
        total++;
    }
    wp_reader_close(r);
    CHECK(total == 20000 && bad == 0);
    wp_log_close(log);
    wp_client_close(c);
}

/* ---- tailing ----------------------------------------------------------- */

typedef struct {
    wp_log *log;
    int n;
    int got, bad;
    int64_t max_lat_ns;
    int64_t *sent_ns;
} tailer;

static void *tailer_main(void *arg)
{
    tailer *t = arg;
    wp_reader *r;
    if (wp_reader_open(t->log, WP_EARLIEST, &r)) {
        t->bad = -1;
        return NULL;
    }
    wp_entry e;
    while (t->got < t->n && wp_reader_next(r, 5000, &e) == WP_OK) {
        int i;
        char buf[32];
        snprintf(buf, sizeof buf, "%.*s", (int)e.len, (const char *)e.data);
        if (sscanf(buf, "e%d", &i) != 1 || i != t->got)
            t->bad++;
        t->got++;
    }
    wp_reader_close(r);
    return NULL;
}

TEST(tailing_reader_sees_every_entry_once)
{
    const char *kv[] = {"segment.max_bytes", "8192", NULL};
    wp_client *c = open_client(test_tmpdir("tail"), kv);
    REQUIRE(c);
    CHECK_OK(wp_log_create(c, "t"));
    wp_log *log;
    REQUIRE(wp_log_open(c, "t", &log) == 0);
    tailer t = {.log = log, .n = 2000};
    pthread_t th;
    pthread_create(&th, NULL, tailer_main, &t);
    wp_writer *w;
    REQUIRE(wp_writer_open(log, &w) == 0);
    CHECK_OK(append_n(w, 0, 1000));
    CHECK_OK(wp_writer_close(w));
    REQUIRE(wp_writer_open(log, &w) == 0); /* across writers too */
    CHECK_OK(append_n(w, 1000, 1000));
    pthread_join(th, NULL);
    CHECK(t.got == 2000 && t.bad == 0);
    CHECK_OK(wp_writer_close(w));
    wp_log_close(log);
    wp_client_close(c);
}

TEST(tail_wakeup_is_fast)
{
    wp_client *c = open_client(test_tmpdir("wake"), NULL);
    REQUIRE(c);
    CHECK_OK(wp_log_create(c, "w"));
    wp_log *log;
    REQUIRE(wp_log_open(c, "w", &log) == 0);
    wp_writer *w;
    REQUIRE(wp_writer_open(log, &w) == 0);
    wp_reader *r;
    REQUIRE(wp_reader_open(log, WP_LATEST, &r) == 0);
    /* a blocked next() returns the entry after the append, well before its timeout */
    wp_msg_id id;
    CHECK_OK(wp_writer_append(w, "x", 1, &id));
    int64_t t0 = now_ns();
    wp_entry e;
    CHECK_OK(wp_reader_next(r, 10000, &e));
    CHECK(now_ns() - t0 < 2000000000LL);
    CHECK(wp_msg_id_cmp(e.id, id) == 0);
    wp_reader_close(r);
    CHECK_OK(wp_writer_close(w));
    wp_log_close(log);
    wp_client_close(c);
}

/* ---- truncation and GC ------------------------------------------------- */

TEST(truncate_and_gc)
{
    const char *kv[] = {"segment.max_bytes", "4096", "retention.ttl_ms", "0", NULL};
    wp_client *c = open_client(test_tmpdir("trunc"), kv);
    REQUIRE(c);
    CHECK_OK(wp_log_create(c, "g"));
    wp_log *log;
    REQUIRE(wp_log_open(c, "g", &log) == 0);
    wp_writer *w;
    REQUIRE(wp_writer_open(log, &w) == 0);
    CHECK_OK(append_n(w, 0, 600));
    wp_segment_info *segs;
    size_t n0, n1;
    REQUIRE(wp_log_segments(log, &segs, &n0) == 0);
    REQUIRE(n0 > 4);
    wp_msg_id cut = {segs[2].segment_id, segs[2].last_entry_id}; /* end of segment 2 */
    int before_cut = 0;
    for (size_t i = 0; i <= 2; i++)
        before_cut += (int)segs[i].last_entry_id + 1;
    free(segs);
    CHECK_RC(WP_EINVAL, wp_log_truncate(log, (wp_msg_id){999, 0})); /* beyond the LAC */
    /* a reader holding segment 1 keeps it alive */
    wp_reader *hold;
    REQUIRE(wp_reader_open(log, (wp_msg_id){1, 0}, &hold) == 0);
    CHECK_OK(wp_log_truncate(log, cut));
    CHECK_OK(read_all(log, WP_EARLIEST, before_cut, 600 - before_cut));
    CHECK_OK(wp__gc_run(log->c, wp__wall_ms()));
    REQUIRE(wp_log_segments(log, &segs, &n1) == 0);
    CHECK(n1 == n0 - 1 && segs[0].segment_id == 1); /* only segment 0 went */
    CHECK(segs[0].state == WP_SEG_TRUNCATED);
    free(segs);
    wp_entry e;
    CHECK_OK(wp_reader_next(hold, 100, &e));
    CHECK(e.id.segment_id == 1 && e.id.entry_id == 0);
    wp_reader_close(hold);
    CHECK_OK(wp__gc_run(log->c, wp__wall_ms()));
    REQUIRE(wp_log_segments(log, &segs, &n1) == 0);
    CHECK(n1 == n0 - 3 && segs[0].segment_id == 3);
    free(segs);
    /* reading a deleted position fails at once, never skips */
    wp_reader *r;
    CHECK_RC(WP_ETRUNCATED, wp_reader_open(log, (wp_msg_id){1, 0}, &r));
    CHECK_OK(wp_writer_close(w));
    wp_log_close(log);
    wp_client_close(c);
}

TEST(retention_ttl_delays_deletion)
{
    const char *kv[] = {"segment.max_bytes", "4096", "retention.ttl_ms", "3600000", NULL};
    wp_client *c = open_client(test_tmpdir("ttl"), kv);
    REQUIRE(c);
    CHECK_OK(wp_log_create(c, "g"));
    wp_log *log;
    REQUIRE(wp_log_open(c, "g", &log) == 0);
    wp_writer *w;
    REQUIRE(wp_writer_open(log, &w) == 0);
    CHECK_OK(append_n(w, 0, 400));
    CHECK_OK(wp_writer_close(w));
    wp_segment_info *segs;
    size_t n0, n1;
    REQUIRE(wp_log_segments(log, &segs, &n0) == 0);
    wp_msg_id cut = {segs[1].segment_id, segs[1].last_entry_id};
    free(segs);
    CHECK_OK(wp_log_truncate(log, cut));
    CHECK_OK(wp__gc_run(log->c, wp__wall_ms()));
    REQUIRE(wp_log_segments(log, &segs, &n1) == 0);
    CHECK(n1 == n0 && segs[0].state == WP_SEG_TRUNCATED && segs[1].state == WP_SEG_TRUNCATED);
    free(segs);
    /* still readable explicitly while retained */
    wp_reader *r;
    wp_entry e;
    REQUIRE(wp_reader_open(log, (wp_msg_id){0, 0}, &r) == 0);
    CHECK_OK(wp_reader_next(r, 100, &e));
    wp_reader_close(r);
    CHECK_OK(wp__gc_run(log->c, wp__wall_ms() + 3600001));
    REQUIRE(wp_log_segments(log, &segs, &n1) == 0);
    CHECK(n1 == n0 - 2);
    free(segs);
    wp_log_close(log);
    wp_client_close(c);
}

/* ---- fencing in one process -------------------------------------------- */

TEST(second_writer_fences_first)
{
    wp_client *c = open_client(test_tmpdir("fence"), NULL);
    REQUIRE(c);
    CHECK_OK(wp_log_create(c, "f"));
    wp_log *log;
    REQUIRE(wp_log_open(c, "f", &log) == 0);
    wp_writer *w1, *w2;
    REQUIRE(wp_writer_open(log, &w1) == 0);
    CHECK_OK(append_n(w1, 0, 10));
    REQUIRE(wp_writer_open(log, &w2) == 0);
    CHECK_RC(WP_EFENCED, wp_writer_append(w1, "x", 1, NULL));
    CHECK_RC(WP_EFENCED, wp_writer_append(w1, "y", 1, NULL));
    CHECK_OK(append_n(w2, 10, 10));
    CHECK(wp_writer_close(w1) != 0);
    CHECK_OK(wp_writer_close(w2));
    CHECK_OK(read_all(log, WP_EARLIEST, 0, 20));
    wp_log_close(log);
    wp_client_close(c);
}

TEST(second_client_fences_first)
{
    const char *dir = test_tmpdir("fence2");
    wp_client *c1 = open_client(dir, NULL), *c2 = open_client(dir, NULL);
    REQUIRE(c1 && c2);
    CHECK_OK(wp_log_create(c1, "f"));
    wp_log *l1, *l2;
    REQUIRE(wp_log_open(c1, "f", &l1) == 0);
    REQUIRE(wp_log_open(c2, "f", &l2) == 0);
    wp_writer *w1, *w2;
    REQUIRE(wp_writer_open(l1, &w1) == 0);
    CHECK_OK(append_n(w1, 0, 10));
    REQUIRE(wp_writer_open(l2, &w2) == 0);
    CHECK_RC(WP_EFENCED, wp_writer_append(w1, "x", 1, NULL));
    CHECK_OK(append_n(w2, 10, 5));
    wp_writer_close(w1);
    CHECK_OK(wp_writer_close(w2));
    CHECK_OK(read_all(l1, WP_EARLIEST, 0, 15));
    wp_log_close(l1);
    wp_log_close(l2);
    wp_client_close(c1);
    wp_client_close(c2);
}

TEST(deleted_log)
{
    wp_client *c = open_client(test_tmpdir("del"), NULL);
    REQUIRE(c);
    CHECK_OK(wp_log_create(c, "d"));
    wp_log *log;
    REQUIRE(wp_log_open(c, "d", &log) == 0);
    wp_writer *w;
    REQUIRE(wp_writer_open(log, &w) == 0);
    CHECK_OK(append_n(w, 0, 3));
    CHECK_OK(wp_writer_close(w));
    CHECK_OK(wp_log_delete(c, "d"));
    wp_reader *r;
    CHECK(wp_reader_open(log, WP_EARLIEST, &r) != 0);
    CHECK(wp_writer_open(log, &w) != 0);
    wp_log_close(log);
    CHECK_OK(wp_log_create(c, "d")); /* a new log with the same name starts empty */
    REQUIRE(wp_log_open(c, "d", &log) == 0);
    CHECK_OK(read_all(log, WP_EARLIEST, 0, 0));
    wp_log_close(log);
    wp_client_close(c);
}

int main(void)
{
    RUN(log_lifecycle);
    RUN(append_read_roundtrip);
    RUN(properties_and_empty_entries);
    RUN(oversize_entry_rejected);
    RUN(concurrent_async_appends_ack_in_order);
    RUN(tailing_reader_sees_every_entry_once);
    RUN(tail_wakeup_is_fast);
    RUN(truncate_and_gc);
    RUN(retention_ttl_delays_deletion);
    RUN(second_writer_fences_first);
    RUN(second_client_fences_first);
    RUN(deleted_log);
    return test_done();
}
