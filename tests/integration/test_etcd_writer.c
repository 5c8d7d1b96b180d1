/* test_etcd_writer.c — the client with meta.type etcd (local disk data):
 * the API end to end, two writer processes racing on one log, etcd stopped
 * during appends, and a reader in another process tailing a writer. Starts
 * its own etcd (tests/support/etcd_proc.h). As
 * integration/test_etcd_writer@quorum, data on storage.type quorum
 * (tests/support/quorum_env.h). */
#include "test.h"

#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>

#include "support/etcd_proc.h"
#include "support/testutil.h"

static etcd_cluster ec;
static char root_dir[1024];

static wp_client *open_etcd_client(const char *prefix, const char *const *extra)
{
    const char *kv[16] = {"meta.type", "etcd", "meta.etcd.endpoints", ec.endpoints,
                          "meta.prefix", prefix, "meta.etcd.timeout_ms", "2000",
                          "segment.max_bytes", "16KiB", "reader.lease_ttl_ms", "3000"};
    int n = 12;
    for (; extra && *extra && n < 14; extra++)
        kv[n++] = *extra;
    kv[n] = NULL;
    char dir[1100]; /* log ids are per prefix: one data root per prefix */
    snprintf(dir, sizeof dir, "%s/%s", root_dir, prefix);
    return test_client_open(dir, kv);
}

static int append_seq(wp_writer *w, int first, int n)
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

static int read_seq(wp_log *log, int n)
{
    wp_reader *r;
    int rc = wp_reader_open(log, WP_EARLIEST, &r);
    if (rc)
        return rc;
    int i = 0;
    wp_entry e;
    while (i < n && (rc = wp_reader_next(r, 2000, &e)) == WP_OK) {
        char want[32];
        int len = snprintf(want, sizeof want, "e%d", i);
        if (e.len != (size_t)len || memcmp(e.data, want, (size_t)len))
            break;
        i++;
    }
    wp_reader_close(r);
    return i == n ? WP_OK : WP_ENOENT;
}

TEST(api_on_etcd)
{
    wp_client *c = open_etcd_client("t1/", NULL);
    REQUIRE(c);
    CHECK_OK(wp_log_create(c, "a"));
    CHECK_RC(WP_EEXIST, wp_log_create(c, "a"));
    wp_log *log;
    REQUIRE(wp_log_open(c, "a", &log) == 0);
    wp_writer *w;
    REQUIRE(wp_writer_open(log, &w) == 0);
    CHECK_OK(append_seq(w, 0, 1500));
    CHECK(wp_writer_lac(w).segment_id >= 2);
    CHECK_OK(read_seq(log, 1500));
    wp_segment_info *segs;
    size_t n;
    REQUIRE(wp_log_segments(log, &segs, &n) == 0);
    wp_msg_id cut = {segs[0].segment_id, segs[0].last_entry_id};
    free(segs);
    CHECK_OK(wp_log_truncate(log, cut));
    CHECK_OK(wp_writer_close(w));
    {
        int64_t checked;
        CHECK_OK(wp_log_verify(log, NULL, NULL, &checked));
        CHECK(checked == 1500);
    }
    wp_log_close(log);
    char **names;
    CHECK_OK(wp_log_list(c, "", &names, &n));
    CHECK(n == 1);
    wp_free_names(names, n);
    CHECK_OK(wp_log_delete(c, "a"));
    wp_client_close(c);
}

/* A child that appends until fenced or killed; exits 4 when fenced. */
static void child_writer(const char *prefix, const char *log_name, int first)
{
    wp_client *c = open_etcd_client(prefix, NULL);
    wp_log *log;
    wp_writer *w;
    if (!c || wp_log_open(c, log_name, &log) || wp_writer_open(log, &w))
        _exit(2);
    for (int i = first;; i++) {
        char buf[32];
        int len = snprintf(buf, sizeof buf, "p%d", i);
        int rc = wp_writer_append(w, buf, (size_t)len, NULL);
        if (rc)
            _exit(rc == WP_EFENCED ? 4 : 5);
    }
}

TEST(two_processes_open_writers)
{
    wp_client *c = open_etcd_client("t2/", NULL);
    REQUIRE(c);
    CHECK_OK(wp_log_create(c, "race"));
    pid_t a = fork();
    REQUIRE(a >= 0);
    if (a == 0)
        child_writer("t2/", "race", 0);
    test_sleep_ms(300);
    wp_log *log;
    REQUIRE(wp_log_open(c, "race", &log) == 0);
    wp_writer *w; /* this process takes the log over */
    REQUIRE(wp_writer_open(log, &w) == 0);
    int st;
    waitpid(a, &st, 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 4); /* the child was fenced */
    wp_msg_id id;
    CHECK_OK(wp_writer_append(w, "mine", 4, &id));
    CHECK_OK(wp_writer_close(w));
    /* everything is readable in order, the child's sequence has no hole */
    wp_reader *r;
    REQUIRE(wp_reader_open(log, WP_EARLIEST, &r) == 0);
    wp_entry e;
    int next = 0, bad = 0, total = 0;
    while (wp_reader_next(r, 200, &e) == WP_OK) {
        total++;
        if (e.len == 4 && !memcmp(e.data, "mine", 4))
            continue;
        char buf[32];
        snprintf(buf, sizeof buf, "%.*s", (int)e.len, (const char *)e.data);
        if (atoi(buf + 1) != next++)
            bad++;
    }
    wp_reader_close(r);
    CHECK(bad == 0 && next > 0 && total == next + 1);
    wp_log_close(log);
    wp_client_close(c);
}

static void ack_cb(void *arg, int rc, wp_msg_id id)
{
    (void)id;
    int *acked = arg;
    if (rc == 0)
        __atomic_add_fetch(acked, 1, __ATOMIC_SEQ_CST);
}

TEST(etcd_down_during_appends)
{
    wp_client *c = open_etcd_client("t3/", NULL);
    REQUIRE(c);
    CHECK_OK(wp_log_create(c, "down"));
    wp_log *log;
    REQUIRE(wp_log_open(c, "down", &log) == 0);
    wp_writer *w;
    REQUIRE(wp_writer_open(log, &w) == 0);
    CHECK_OK(append_seq(w, 0, 100));
    REQUIRE(etcd_member_stop(&ec, 0, SIGKILL) == 0);
    /* appends go on until a segment roll needs etcd, then fail clearly */
    int acked = 100, rc = 0, i;
    int64_t t0 = test_now_ms();
    for (i = 100; i < 5000 && rc == 0; i++) {
        char buf[32];
        int len = snprintf(buf, sizeof buf, "e%d", i);
        rc = wp_writer_append_async(w, buf, (size_t)len, ack_cb, &acked);
        if (rc == 0 && i % 50 == 0)
            rc = wp_writer_flush(w);
    }
    CHECK_RC(WP_EUNAVAILABLE, rc);
    CHECK(test_now_ms() - t0 < 15000);
    wp_writer_close(w);
    int final_acked = __atomic_load_n(&acked, __ATOMIC_SEQ_CST);
    REQUIRE(etcd_member_start(&ec, 0) == 0);
    REQUIRE(etcd_member_wait_healthy(&ec, 0, 20000) == 0);
    /* a new writer recovers; every acked entry is there, in order */
    REQUIRE(wp_writer_open(log, &w) == 0);
    CHECK_OK(wp_writer_close(w));
    CHECK_OK(read_seq(log, final_acked));
    wp_log_close(log);
    wp_client_close(c);
}

TEST(reader_in_another_process)
{
    wp_client *c = open_etcd_client("t4/", NULL);
    REQUIRE(c);
    CHECK_OK(wp_log_create(c, "x"));
    wp_log *log;
    REQUIRE(wp_log_open(c, "x", &log) == 0);
    wp_reader *r;
    REQUIRE(wp_reader_open(log, WP_EARLIEST, &r) == 0);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        wp_client *cc = open_etcd_client("t4/", NULL);
        wp_log *l;
        wp_writer *w;
        if (!cc || wp_log_open(cc, "x", &l) || wp_writer_open(l, &w) || append_seq(w, 0, 1000))
            _exit(2);
        _exit(wp_writer_close(w) ? 3 : 0);
    }
    CHECK_OK(read_seq(log, 1000));
    int st;
    waitpid(pid, &st, 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    wp_reader_close(r);
    wp_log_close(log);
    wp_client_close(c);
}

/* Range + Txn requests etcd has served (its /metrics), or -1. */
static long etcd_requests(void)
{
    char cmd[256];
    snprintf(cmd, sizeof cmd,
             "curl -sf %s/metrics | awk '/^grpc_server_handled_total.*grpc_method=\"(Range|Txn)\"/ "
             "{ s += $2 } END { print s + 0 }'", ec.m[0].url);
    FILE *p = popen(cmd, "r");
    long n = -1;
    if (p && fscanf(p, "%ld", &n) != 1)
        n = -1;
    if (p)
        pclose(p);
    return n;
}

TEST(idle_reader_does_not_poll_etcd)
{
    wp_client *c = open_etcd_client("t5/", NULL);
    REQUIRE(c);
    CHECK_OK(wp_log_create(c, "idle"));
    pid_t pid = fork(); /* a writer in another process leaves an active segment */
    REQUIRE(pid >= 0);
    if (pid == 0) {
        wp_client *cc = open_etcd_client("t5/", NULL);
        wp_log *l;
        wp_writer *w;
        if (!cc || wp_log_open(cc, "idle", &l) || wp_writer_open(l, &w) || append_seq(w, 0, 10))
            _exit(2);
        /* Idle for a moment, so that a quorum writer's LAC goes out after
         * its last ack (docs/protocol.md §8: on the next ADD, or alone
         * after 2 ms idle); without it readers see all but the last entry
         * until a new writer recovers the segment. */
        test_sleep_ms(100);
        _exit(0); /* no close: the segment stays active */
    }
    int st;
    waitpid(pid, &st, 0);
    REQUIRE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    wp_log *log;
    REQUIRE(wp_log_open(c, "idle", &log) == 0);
    wp_reader *r;
    REQUIRE(wp_reader_open(log, WP_EARLIEST, &r) == 0);
    CHECK_OK(read_seq(log, 10));
    wp_entry e;
    for (int i = 0; i < 10; i++)
        CHECK_OK(wp_reader_next(r, 1000, &e));
    long before = etcd_requests();
    CHECK_RC(WP_ETIMEDOUT, wp_reader_next(r, 1000, &e)); /* idle for 1 s */
    long after = etcd_requests();
    fprintf(stderr, "  etcd requests during 1 s of idle tailing: %ld\n", after - before);
    CHECK(before >= 0 && after - before <= 3);
    wp_reader_close(r);
    wp_log_close(log);
    wp_client_close(c);
}

int main(void)
{
    snprintf(root_dir, sizeof root_dir, "%s", test_tmpdir("etcdwriter"));
    if (etcd_cluster_start(&ec, 1, NULL) != 0) {
        fprintf(stderr, "cannot start etcd\n");
        return 1;
    }
    RUN(api_on_etcd);
    RUN(two_processes_open_writers);
    RUN(etcd_down_during_appends);
    RUN(reader_in_another_process);
    RUN(idle_reader_does_not_poll_etcd);
    etcd_cluster_destroy(&ec);
    return test_done();
}
