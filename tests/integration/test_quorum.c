/* test_quorum.c — the public API with storage.type quorum on 3 LogStore
 * servers, real processes on 127.0.0.1 (issue 10): appends acked at 2 of
 * 3, reads, a writer's recovery by the quorum rules, a server killed -9
 * during appends, two killed (WP_EQUORUM), a stale writer fenced. */
#include "test.h"
#include "support/logstore_proc.h"
#include "support/testutil.h"

#include <pthread.h>
#include <signal.h>

static logstore_proc srv[3];
static char nodes[256], meta_path[1100];

static int start_all(const char *dir)
{
    snprintf(meta_path, sizeof meta_path, "%s/meta.sqlite", dir);
    for (int i = 0; i < 3; i++) {
        char sub[1100], id[16];
        snprintf(sub, sizeof sub, "%s/s%d", dir, i);
        snprintf(id, sizeof id, "q%d", i);
        if (logstore_proc_start(&srv[i], sub, id, meta_path) != 0)
            return -1;
    }
    snprintf(nodes, sizeof nodes, "%s,%s,%s", srv[0].addr, srv[1].addr, srv[2].addr);
    return 0;
}

static void stop_all(void)
{
    for (int i = 0; i < 3; i++)
        if (srv[i].pid > 0)
            logstore_proc_stop(&srv[i], SIGTERM);
}

static wp_client *client(const char *dir)
{
    const char *kv[] = {"storage.type", "quorum", "quorum.nodes", nodes, "meta.path", meta_path,
                        "segment.max_bytes", "64KiB", NULL};
    return test_client_open(dir, kv);
}

static int append_seq(wp_writer *w, int first, int n, wp_msg_id *last)
{
    for (int i = first; i < first + n; i++) {
        char buf[64];
        int len = snprintf(buf, sizeof buf, "q-entry-%d", i);
        int rc = wp_writer_append(w, buf, (size_t)len, last);
        if (rc)
            return rc;
    }
    return WP_OK;
}

/* Reads from earliest: the count of entries in sequence from 0, or -1. */
static int read_seq(wp_log *log)
{
    wp_reader *r;
    if (wp_reader_open(log, WP_EARLIEST, &r))
        return -1;
    int i = 0;
    wp_entry e;
    while (wp_reader_next(r, 500, &e) == WP_OK) {
        char want[64];
        int len = snprintf(want, sizeof want, "q-entry-%d", i);
        if (e.len != (size_t)len || memcmp(e.data, want, (size_t)len)) {
            fprintf(stderr, "  entry %d is '%.*s'\n", i, (int)e.len, (const char *)e.data);
            i = -1;
            break;
        }
        i++;
    }
    wp_reader_close(r);
    return i;
}

TEST(append_read_roll_recover)
{
    const char *dir = test_tmpdir("quorum1");
    REQUIRE(start_all(dir) == 0);
    wp_client *c = client(dir);
    REQUIRE(c);
    CHECK_OK(wp_log_create(c, "q"));
    wp_log *log;
    REQUIRE(wp_log_open(c, "q", &log) == 0);
    wp_writer *w;
    REQUIRE(wp_writer_open(log, &w) == 0);
    wp_msg_id last;
    CHECK_OK(append_seq(w, 0, 3000, &last)); /* several segments of 64 KiB */
    CHECK(last.segment_id >= 1);
    CHECK(read_seq(log) == 3000);
    /* A second writer (a crash of the first is the same to it): fences on
     * the replicas, recovers the active segment by the quorum rules. */
    wp_writer *w2;
    CHECK_OK(wp_writer_open(log, &w2));
    CHECK_RC(WP_EFENCED, append_seq(w, 3000, 1, NULL));
    CHECK_OK(append_seq(w2, 3000, 500, NULL));
    CHECK(read_seq(log) == 3500);
    (void)wp_writer_close(w);
    CHECK_OK(wp_writer_close(w2));
    wp_log_close(log);
    wp_client_close(c);
    stop_all();
}

TEST(one_server_down_then_two)
{
    const char *dir = test_tmpdir("quorum2");
    REQUIRE(start_all(dir) == 0);
    wp_client *c = client(dir);
    REQUIRE(c);
    CHECK_OK(wp_log_create(c, "q"));
    wp_log *log;
    REQUIRE(wp_log_open(c, "q", &log) == 0);
    wp_writer *w;
    REQUIRE(wp_writer_open(log, &w) == 0);
    CHECK_OK(append_seq(w, 0, 200, NULL));
    /* One of three gone: appends go on at 2 of 3. */
    CHECK(logstore_proc_stop(&srv[1], SIGKILL) == 128 + SIGKILL);
    srv[1].pid = 0;
    CHECK_OK(append_seq(w, 200, 300, NULL));
    /* Two gone: no quorum, an error naming the servers; nothing acked lost. */
    CHECK(logstore_proc_stop(&srv[2], SIGKILL) == 128 + SIGKILL);
    srv[2].pid = 0;
    int rc = append_seq(w, 500, 1, NULL);
    CHECK(rc == WP_EQUORUM || rc == WP_EUNAVAILABLE);
    (void)wp_writer_close(w);
    /* Restart them: a new writer recovers every acked entry. */
    char sub[1100];
    snprintf(sub, sizeof sub, "%s/s1", dir);
    REQUIRE(logstore_proc_start(&srv[1], sub, "q1", meta_path) == 0);
    snprintf(sub, sizeof sub, "%s/s2", dir);
    REQUIRE(logstore_proc_start(&srv[2], sub, "q2", meta_path) == 0);
    wp_log_close(log);
    wp_client_close(c);
    snprintf(nodes, sizeof nodes, "%s,%s,%s", srv[0].addr, srv[1].addr, srv[2].addr);
    c = client(dir);
    REQUIRE(c);
    REQUIRE(wp_log_open(c, "q", &log) == 0);
    CHECK_OK(wp_writer_open(log, &w));
    int n = read_seq(log);
    CHECK(n >= 500 && n <= 501); /* 500 acked; the one that failed may have landed */
    CHECK_OK(append_seq(w, n, 10, NULL));
    CHECK(read_seq(log) == n + 10);
    CHECK_OK(wp_writer_close(w));
    wp_log_close(log);
    wp_client_close(c);
    stop_all();
}

TEST(bad_quorum_settings)
{
    const char *dir = test_tmpdir("quorum3");
    wp_config *cfg;
    REQUIRE(wp_config_default(&cfg) == 0);
    CHECK_OK(wp_config_set(cfg, "storage.root", dir));
    CHECK_OK(wp_config_set(cfg, "storage.type", "quorum"));
    CHECK_OK(wp_config_set(cfg, "quorum.nodes", "127.0.0.1:1,127.0.0.1:2,127.0.0.1:3"));
    CHECK_OK(wp_config_set(cfg, "quorum.ack", "1"));
    wp_client *c = NULL;
    CHECK_RC(WP_EINVAL, wp_client_open(cfg, &c)); /* 3/1: two writers could both ack */
    CHECK(strstr(wp_errmsg(), "quorum.ack") != NULL);
    CHECK_OK(wp_config_set(cfg, "quorum.ack", "2"));
    CHECK_OK(wp_config_set(cfg, "quorum.nodes", "127.0.0.1:1,127.0.0.1:2"));
    CHECK_RC(WP_EINVAL, wp_client_open(cfg, &c));
    CHECK(strstr(wp_errmsg(), "quorum.nodes") != NULL);
    wp_config_free(cfg);
}

/* A server that stops answering (SIGSTOP: its connections stay open) does
 * not hold up the appends: they are acked by the other two. */
TEST(hung_server_does_not_stall_appends)
{
    const char *dir = test_tmpdir("quorum4");
    REQUIRE(start_all(dir) == 0);
    wp_client *c = client(dir);
    REQUIRE(c);
    CHECK_OK(wp_log_create(c, "q"));
    wp_log *log;
    REQUIRE(wp_log_open(c, "q", &log) == 0);
    wp_writer *w;
    REQUIRE(wp_writer_open(log, &w) == 0);
    CHECK_OK(append_seq(w, 0, 50, NULL));
    kill(srv[2].pid, SIGSTOP);
    int64_t t0 = test_now_ms();
    CHECK_OK(append_seq(w, 50, 1500, NULL)); /* past PROTO_INFLIGHT_MAX requests to it */
    int64_t took = test_now_ms() - t0;
    fprintf(stderr, "  1500 appends with one server stopped: %lld ms\n", (long long)took);
    CHECK(took < 20000);
    kill(srv[2].pid, SIGCONT);
    CHECK(read_seq(log) == 1550);
    CHECK_OK(wp_writer_close(w));
    wp_log_close(log);
    wp_client_close(c);
    stop_all();
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    RUN(append_read_roll_recover);
    RUN(one_server_down_then_two);
    RUN(bad_quorum_settings);
    RUN(hung_server_does_not_stall_appends);
    return test_done();
}
