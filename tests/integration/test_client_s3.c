/* test_client_s3.c — the public API with storage.type s3 against the local
 * Ceph RGW (started by the CTest fixture, scripts/rgw.sh): appends, reads
 * across rolled segments, fencing by a second writer, kill -9 recovery,
 * truncation + GC deleting objects. */
#include "test.h"

#include <signal.h>
#include <sys/wait.h>

#include "support/s3env.h"
#include "support/testutil.h"

#include <pthread.h>

#include "client/internal.h"
#include "meta/meta.h"
#include "storage/s3.h"

static test_s3_env env;
static char prefix[128];

static int env_load(void)
{
    snprintf(prefix, sizeof prefix, "clienttest-%d-%lld", (int)getpid(), (long long)test_now_ms());
    return test_s3_env_load(NULL, &env);
}

/* A client on S3 data; tag separates the tests' key prefixes and SQLite files. */
static wp_client *open_s3_seg(const char *tag, const char *dir, const char *seg_bytes);

static wp_client *open_s3(const char *tag, const char *dir)
{
    return open_s3_seg(tag, dir, "64KiB");
}

static wp_client *open_s3_kv(const char *tag, const char *dir, const char *seg_bytes,
                             const char *k, const char *v);

static wp_client *open_s3_seg(const char *tag, const char *dir, const char *seg_bytes)
{
    return open_s3_kv(tag, dir, seg_bytes, NULL, NULL);
}

/* With one more setting k=v (k NULL: none). */
static wp_client *open_s3_kv(const char *tag, const char *dir, const char *seg_bytes,
                             const char *k, const char *v)
{
    char pfx[256];
    snprintf(pfx, sizeof pfx, "%s/%s", prefix, tag);
    const char *kv[] = {k, v, "flush.max_threads", "8", "flush.max_interval_ms", "20", "storage.type", "s3", "storage.s3.endpoint", env.endpoint,
                        "storage.s3.access_key", env.access_key, "storage.s3.secret_key", env.secret_key,
                        "storage.s3.bucket", env.bucket, "storage.s3.region", env.region,
                        "storage.s3.prefix", pfx, "segment.max_bytes", seg_bytes,
                        "flush.max_bytes", "8KiB", "retention.ttl_ms", "0", "gc.interval_ms", "300", NULL};
    return test_client_open(dir, k ? kv : kv + 2);
}

static int append_seq(wp_writer *w, int first, int n)
{
    for (int i = first; i < first + n; i++) {
        char buf[64];
        int len = snprintf(buf, sizeof buf, "s3-entry-%d", i);
        int rc = wp_writer_append(w, buf, (size_t)len, NULL);
        if (rc)
            return rc;
    }
    return WP_OK;
}

/* Reads from earliest; checks the sequence from `first`; returns the count. */
static int read_seq(wp_log *log, int first)
{
    wp_reader *r;
    if (wp_reader_open(log, WP_EARLIEST, &r))
        return -1;
    int i = 0;
    wp_entry e;
    while (wp_reader_next(r, 300, &e) == WP_OK) {
        char want[64];
        int len = snprintf(want, sizeof want, "s3-entry-%d", first + i);
        if (e.len != (size_t)len || memcmp(e.data, want, (size_t)len)) {
            i = -1;
            break;
        }
        i++;
    }
    wp_reader_close(r);
    return i;
}

static void count_cb(void *arg, int rc, wp_msg_id id)
{
    (void)id;
    if (rc == 0)
        __atomic_add_fetch((int *)arg, 1, __ATOMIC_SEQ_CST);
}

TEST(roundtrip_roll_fence_truncate)
{
    const char *dir = test_tmpdir("clients3");
    wp_client *c = open_s3("a", dir);
    REQUIRE(c);
    CHECK_OK(wp_log_create(c, "s3log"));
    wp_log *log;
    REQUIRE(wp_log_open(c, "s3log", &log) == 0);
    wp_writer *w, *w2;
    REQUIRE(wp_writer_open(log, &w) == 0);
    int acked = 0;
    for (int i = 0; i < 3000; i++) { /* async: many entries per PUT */
        char buf[64];
        int len = snprintf(buf, sizeof buf, "s3-entry-%d", i);
        CHECK_OK(wp_writer_append_async(w, buf, (size_t)len, count_cb, &acked));
    }
    CHECK_OK(wp_writer_flush(w));
    CHECK(acked == 3000);
    CHECK(wp_writer_lac(w).segment_id >= 1);
    /* a second writer fences the first at the storage level */
    REQUIRE(wp_writer_open(log, &w2) == 0);
    CHECK_RC(WP_EFENCED, wp_writer_append(w, "late", 4, NULL));
    wp_writer_close(w);
    CHECK_OK(append_seq(w2, 3000, 100));
    CHECK_OK(wp_writer_close(w2));
    CHECK(read_seq(log, 0) == 3100);
    int64_t checked = 0;
    CHECK_OK(wp_log_verify(log, NULL, NULL, &checked));
    CHECK(checked == 3100);
    /* truncation + GC delete the segments' objects */
    wp_segment_info *segs;
    size_t n0, n1;
    REQUIRE(wp_log_segments(log, &segs, &n0) == 0);
    wp_msg_id cut = {segs[0].segment_id, segs[0].last_entry_id};
    int first_after = (int)segs[0].last_entry_id + 1;
    free(segs);
    CHECK_OK(wp_log_truncate(log, cut));
    wp_log_close(log);
    wp_client_close(c); /* releases the reader lease */
    c = open_s3("a", dir);
    REQUIRE(c);
    REQUIRE(wp_log_open(c, "s3log", &log) == 0);
    test_sleep_ms(1500); /* a few GC passes (gc.interval_ms 300) */
    REQUIRE(wp_log_segments(log, &segs, &n1) == 0);
    CHECK(n1 == n0 - 1);
    free(segs);
    CHECK(read_seq(log, first_after) == 3100 - first_after);
    wp_log_close(log);
    wp_client_close(c);
}

/* Records the acked entry ids (entry numbers from the payload) in order. */
static void ack_file_cb(void *arg, int rc, wp_msg_id id)
{
    (void)id;
    static int next;
    if (rc == 0)
        fprintf((FILE *)arg, "%d\n", next++);
}

TEST(kill9_during_uploads)
{
    const char *dir = test_tmpdir("clients3kill");
    wp_client *c = open_s3("k", dir);
    REQUIRE(c);
    CHECK_OK(wp_log_create(c, "k"));
    wp_client_close(c);
    char ackpath[1200];
    snprintf(ackpath, sizeof ackpath, "%s/acked", dir);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        wp_client *cc = open_s3("k", dir);
        wp_log *l;
        wp_writer *w;
        FILE *f = fopen(ackpath, "w");
        if (!cc || !f || wp_log_open(cc, "k", &l) || wp_writer_open(l, &w))
            _exit(2);
        setvbuf(f, NULL, _IONBF, 0);
        for (int i = 0;; i++) { /* async: many uploads in flight */
            char buf[64];
            int len = snprintf(buf, sizeof buf, "s3-entry-%d", i);
            if (wp_writer_append_async(w, buf, (size_t)len, ack_file_cb, f))
                _exit(3);
        }
    }
    test_sleep_ms(600);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    int last_acked = -1, v;
    FILE *f = fopen(ackpath, "r");
    while (f && fscanf(f, "%d", &v) == 1)
        last_acked = v;
    if (f)
        fclose(f);
    CHECK(last_acked > 10);
    c = open_s3("k", dir);
    REQUIRE(c);
    wp_log *log;
    REQUIRE(wp_log_open(c, "k", &log) == 0);
    wp_writer *w;
    REQUIRE(wp_writer_open(log, &w) == 0); /* recovery */
    CHECK_OK(wp_writer_close(w));
    int n = read_seq(log, 0);
    CHECK(n >= last_acked + 1); /* every acked entry, in order, once */
    fprintf(stderr, "  acked %d, recovered %d\n", last_acked + 1, n);
    wp_log_close(log);
    wp_client_close(c);
}

/* The second data upload of segment 0 (block 3: 0 is the creation marker,
 * 1 the segment header, 2 the first data) stalls 300 ms and then fails for good (403), while
 * the uploads after it go through. */
static int later_puts; /* uploads after the failing one that were sent */

static void fail_second_data_put(void *arg, const s3_fault_req *req, s3_fault *out)
{
    (void)arg;
    const char *slash = strrchr(req->key, '/');
    if (strcmp(req->method, "PUT") || !strstr(req->key, "/f/1/0/") || !slash)
        return;
    if (atoll(slash + 1) > 3)
        __atomic_add_fetch(&later_puts, 1, __ATOMIC_SEQ_CST);
    if (atoll(slash + 1) != 3)
        return;
    test_sleep_ms(300);
    out->kind = S3_FAULT_STATUS;
    out->status = 403;
    out->body = "<Error><Code>AccessDenied</Code></Error>";
}

typedef struct {
    pthread_mutex_t mu;
    int ok, failed, ok_after_fail;
    wp_msg_id last_ok;
} ackorder;

static void order_cb(void *arg, int rc, wp_msg_id id)
{
    ackorder *a = arg;
    pthread_mutex_lock(&a->mu);
    if (rc) {
        a->failed++;
    } else {
        if (a->failed)
            a->ok_after_fail++;
        a->ok++;
        a->last_ok = id;
    }
    pthread_mutex_unlock(&a->mu);
}

TEST(failed_upload_fails_every_later_one)
{
    const char *dir = test_tmpdir("clients3fail");
    wp_client *c = open_s3_seg("f", dir, "1MiB");
    REQUIRE(c);
    CHECK_OK(wp_log_create(c, "f"));
    wp_log *log;
    REQUIRE(wp_log_open(c, "f", &log) == 0);
    wp_writer *w;
    REQUIRE(wp_writer_open(log, &w) == 0);
    s3_client_set_fault(storage_s3_client(c->st), fail_second_data_put, NULL);
    ackorder a = {.mu = PTHREAD_MUTEX_INITIALIZER};
    int rc = 0;
    static char buf[1000];
    for (int i = 0; i < 200 && rc == 0; i++) { /* ~8 entries per 8 KiB block */
        int len = snprintf(buf, sizeof buf, "s3-entry-%d", i);
        memset(buf + len, 'x', sizeof buf - (size_t)len);
        rc = wp_writer_append_async(w, buf, sizeof buf, order_cb, &a);
        if (i % 8 == 7)
            test_sleep_ms(5); /* one block per upload, several in flight */
    }
    CHECK(wp_writer_flush(w) != 0);
    CHECK(wp_writer_close(w) != 0);
    s3_client_set_fault(storage_s3_client(c->st), NULL, NULL);
    CHECK(a.failed > 0 && a.ok > 0 && a.ok_after_fail == 0);
    CHECK(later_puts > 0); /* they were in flight while it failed */
    fprintf(stderr, "  acked %d, failed %d, %d later uploads sent\n", a.ok, a.failed, later_puts);
    /* a new writer recovers exactly the acked prefix: later blocks that
     * landed after the failed one are cut */
    REQUIRE(wp_writer_open(log, &w) == 0);
    CHECK_OK(wp_writer_close(w));
    wp_reader *r;
    REQUIRE(wp_reader_open(log, WP_EARLIEST, &r) == 0);
    wp_entry e;
    int n = 0;
    while (wp_reader_next(r, 300, &e) == WP_OK)
        n++;
    wp_reader_close(r);
    CHECK(n == a.ok);
    wp_log_close(log);
    wp_client_close(c);
}

/* A reader in another process learns of new objects by listing (there is
 * no LAC hint object), at most every 200 ms when idle. */
TEST(reader_in_another_process)
{
    const char *dir = test_tmpdir("clients3xproc");
    wp_client *c = open_s3("x", dir);
    REQUIRE(c);
    CHECK_OK(wp_log_create(c, "x"));
    wp_log *log;
    REQUIRE(wp_log_open(c, "x", &log) == 0);
    wp_reader *r;
    REQUIRE(wp_reader_open(log, WP_EARLIEST, &r) == 0);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        wp_client *cc = open_s3("x", dir);
        wp_log *l;
        wp_writer *w;
        if (!cc || wp_log_open(cc, "x", &l) || wp_writer_open(l, &w) || append_seq(w, 0, 300))
            _exit(2);
        test_sleep_ms(1500); /* the segment stays active while the reader catches up */
        _exit(wp_writer_close(w) ? 3 : 0);
    }
    int got = 0, bad = 0;
    wp_entry e;
    while (got < 300 && wp_reader_next(r, 10000, &e) == WP_OK) {
        char want[64];
        int len = snprintf(want, sizeof want, "s3-entry-%d", got);
        if (e.len != (size_t)len || memcmp(e.data, want, (size_t)len))
            bad++;
        got++;
    }
    CHECK(got == 300 && bad == 0);
    wp_log_info info;
    CHECK_OK(wp_log_stat(log, &info)); /* last id of an active segment, by its blocks */
    CHECK(info.last_id.entry_id >= 0);
    int st;
    waitpid(pid, &st, 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    wp_reader_close(r);
    wp_log_close(log);
    wp_client_close(c);
}

typedef struct {
    wp_log *log;
    int want, got, bad;
} tailer;

static void *tail_main(void *arg)
{
    tailer *t = arg;
    wp_reader *r;
    if (wp_reader_open(t->log, WP_EARLIEST, &r))
        return NULL;
    wp_entry e;
    int rc = 0;
    while (t->got < t->want && (rc = wp_reader_next(r, 10000, &e)) == WP_OK) {
        char want[64];
        int len = snprintf(want, sizeof want, "s3-entry-%d", t->got);
        if (e.len < (size_t)len || memcmp(e.data, want, (size_t)len))
            t->bad++;
        t->got++;
    }
    if (rc)
        fprintf(stderr, "  tail reader: %s (%s)\n", wp_strerror(rc), wp_errmsg());
    wp_reader_close(r);
    return NULL;
}

/* A reader in the writer's process tails it across many segment rolls while
 * uploads run in parallel (it reads what is there; a segment completed
 * meanwhile ends with its index and footer). */
TEST(tail_across_rolls)
{
    const char *dir = test_tmpdir("clients3tail");
    wp_client *c = open_s3("t", dir);
    REQUIRE(c);
    CHECK_OK(wp_log_create(c, "t"));
    wp_log *log;
    REQUIRE(wp_log_open(c, "t", &log) == 0);
    tailer t = {.log = log, .want = 3000};
    s3_stats s0, s1;
    s3_client_stats(storage_s3_client(c->st), &s0);
    uint64_t hits0 = storage_s3_recent_hits(c->st);
    pthread_t th;
    pthread_create(&th, NULL, tail_main, &t);
    wp_writer *w;
    REQUIRE(wp_writer_open(log, &w) == 0);
    int acked = 0;
    static char buf[600];
    for (int i = 0; i < 3000; i++) {
        int len = snprintf(buf, sizeof buf, "s3-entry-%d", i);
        memset(buf + len, '.', sizeof buf - (size_t)len);
        CHECK_OK(wp_writer_append_async(w, buf, sizeof buf, count_cb, &acked));
    }
    CHECK_OK(wp_writer_close(w));
    pthread_join(th, NULL);
    CHECK(acked == 3000 && t.got == 3000 && t.bad == 0);
    /* The tailing reader took what the writer had just uploaded from the
     * backend's copies: few of the objects were GET back. */
    s3_client_stats(storage_s3_client(c->st), &s1);
    uint64_t hits = storage_s3_recent_hits(c->st) - hits0, puts = s1.puts - s0.puts;
    fprintf(stderr, "  %" PRIu64 " PUTs, %" PRIu64 " GETs, %" PRIu64 " requests, %" PRIu64
            " objects from memory\n", puts, s1.gets - s0.gets, s1.requests - s0.requests, hits);
    CHECK(hits > 0 && hits + 10 >= puts / 2);
    wp_log_close(log);
    wp_client_close(c);
}

/* A reader part-way through a completed segment whose objects are deleted
 * under it (GC that went ahead, e.g. after its lease lapsed) gets
 * WP_ETRUNCATED, never a read error or a skip (issue 9, item 5). */
TEST(reader_of_deleted_segment_gets_etruncated)
{
    const char *dir = test_tmpdir("clients3del");
    /* No compaction: block objects stay, a segment is many GETs. */
    wp_client *c = open_s3_kv("d", dir, "64KiB", "compaction.enabled", "false");
    wp_client *c2 = open_s3_kv("d", dir, "64KiB", "compaction.enabled", "false");
    REQUIRE(c && c2);
    CHECK_OK(wp_log_create(c, "d"));
    wp_log *log, *log2;
    REQUIRE(wp_log_open(c, "d", &log) == 0);
    wp_writer *w;
    REQUIRE(wp_writer_open(log, &w) == 0);
    static char buf[600];
    for (int i = 0; i < 1500; i++) {
        int len = snprintf(buf, sizeof buf, "s3-entry-%d", i);
        CHECK_OK(wp_writer_append(w, buf, (size_t)len + 1, NULL)); /* with the NUL */
    }
    CHECK_OK(wp_writer_close(w));
    setenv("WP_S3_READ_AHEAD", "0", 1);
    REQUIRE(wp_log_open(c2, "d", &log2) == 0);
    wp_reader *r;
    REQUIRE(wp_reader_open(log2, WP_EARLIEST, &r) == 0);
    wp_entry e;
    for (int i = 0; i < 3; i++)
        CHECK_OK(wp_reader_next(r, 1000, &e));
    meta_seg s;
    REQUIRE(c->meta->ops->seg_get(c->meta, log->log_id, 0, &s) == 0);
    CHECK(s.state == WP_SEG_COMPLETED && s.last_entry_id > 100);
    if (s.state != WP_SEG_COMPLETED)
        fprintf(stderr, "  segment 0: state %d, last %" PRId64 "\n", (int)s.state, s.last_entry_id);
    s.state = WP_SEG_TRUNCATED; /* as GC does, before it deletes the data */
    s.truncated_ms = wp__wall_ms();
    CHECK_OK(c->meta->ops->seg_update(c->meta, &s));
    CHECK_OK(c->st->ops->seg_delete(c->st, log->log_id, 0));
    int rc = WP_OK, n = 3;
    while (n < 1500 && (rc = wp_reader_next(r, 1000, &e)) == WP_OK) {
        char want[64];
        snprintf(want, sizeof want, "s3-entry-%d", n);
        CHECK(e.len == strlen(want) + 1 && memcmp(e.data, want, e.len) == 0);
        n++;
    }
    CHECK_RC(WP_ETRUNCATED, rc);
    CHECK(n <= s.last_entry_id + 1); /* nothing after the deleted data */
    unsetenv("WP_S3_READ_AHEAD");
    wp_reader_close(r);
    wp_log_close(log2);
    wp_log_close(log);
    wp_client_close(c2);
    wp_client_close(c);
}

int main(void)
{
    if (env_load())
        return 1;
    RUN(roundtrip_roll_fence_truncate);
    RUN(kill9_during_uploads);
    RUN(failed_upload_fails_every_later_one);
    RUN(reader_in_another_process);
    RUN(tail_across_rolls);
    RUN(reader_of_deleted_segment_gets_etruncated);
    return test_done();
}
