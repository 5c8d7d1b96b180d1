/* test_writer.c — writer limits and policies: backpressure (blocking and
 * WP_NONBLOCK), rolling by age and block count, flush interval, and a
 * reader in another process tailing a writer. Also run on storage.type
 * quorum (integration/test_writer@quorum, tests/support/quorum_env.h). */
#include "test.h"
#include "support/testutil.h"

#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>

#include "client/internal.h"
#include "os/os.h"

static wp_client *open_client(const char *dir, const char *const *kv)
{
    return test_client_open(dir, kv);
}



/* A slow disk: every fdatasync takes 20 ms, so appends pile up. (On
 * storage.type quorum the client syncs nothing: they pile up behind the
 * round trips to the servers instead.) */
static int slow_fdatasync(int fd)
{
    test_sleep_ms(20);
    return fdatasync(fd);
}

static void count_cb(void *arg, int rc, wp_msg_id id)
{
    (void)id;
    if (rc == 0)
        __atomic_add_fetch((int *)arg, 1, __ATOMIC_SEQ_CST);
}

TEST(backpressure_bounds_pending_bytes)
{
    const char *kv[] = {"writer.max_pending_bytes", "1MiB", "flush.max_bytes", "64KiB", NULL};
    wp_client *c = open_client(test_tmpdir("bp"), kv);
    REQUIRE(c);
    CHECK_OK(wp_log_create(c, "bp"));
    wp_log *log;
    REQUIRE(wp_log_open(c, "bp", &log) == 0);
    wp_writer *w;
    REQUIRE(wp_writer_open(log, &w) == 0);
    os_sys.fdatasync = slow_fdatasync;
    static char buf[64 * 1024];
    wp_payload p = {buf, sizeof buf, 0, NULL, NULL};
    int acked = 0, accepted = 0, rc = 0;
    /* non-blocking: accepted until ~1 MiB is pending, then WP_EAGAIN */
    while ((rc = wp_writer_append_entry_async(w, &p, WP_NONBLOCK, count_cb, &acked)) == 0)
        accepted++;
    CHECK_RC(WP_EAGAIN, rc);
    CHECK(accepted >= 8 && accepted <= 20);
    /* blocking: waits for room instead, never fails */
    int64_t t0 = test_now_ms();
    for (int i = 0; i < 40; i++)
        CHECK_OK(wp_writer_append_async(w, buf, sizeof buf, count_cb, &acked));
    CHECK(test_now_ms() - t0 >= 20); /* it had to wait for at least one flush */
    CHECK_OK(wp_writer_flush(w));
    CHECK(__atomic_load_n(&acked, __ATOMIC_SEQ_CST) == accepted + 40);
    os_sys_reset();
    CHECK_OK(wp_writer_close(w));
    wp_log_close(log);
    wp_client_close(c);
}

TEST(roll_by_age_and_blocks)
{
    const char *kv[] = {"segment.max_age_ms", "300", NULL};
    wp_client *c = open_client(test_tmpdir("age"), kv);
    REQUIRE(c);
    CHECK_OK(wp_log_create(c, "a"));
    wp_log *log;
    REQUIRE(wp_log_open(c, "a", &log) == 0);
    wp_writer *w;
    REQUIRE(wp_writer_open(log, &w) == 0);
    wp_msg_id a, b, d;
    int64_t t0 = test_now_ms();
    CHECK_OK(wp_writer_append(w, "1", 1, &a));
    CHECK_OK(wp_writer_append(w, "2", 1, &b));
    /* Within the age, one segment (on a loaded machine, under ASan and on
     * quorum, two appends may take longer than the age: not checked then). */
    if (test_now_ms() - t0 < 250)
        CHECK(a.segment_id == b.segment_id);
    test_sleep_ms(400);
    CHECK_OK(wp_writer_append(w, "3", 1, &d));
    CHECK(d.segment_id == b.segment_id + 1 && d.entry_id == 0);
    CHECK_OK(wp_writer_close(w));
    wp_log_close(log);
    wp_client_close(c);

    const char *kv2[] = {"segment.max_blocks", "3", NULL};
    c = open_client(test_tmpdir("blocks"), kv2);
    REQUIRE(c);
    CHECK_OK(wp_log_create(c, "b"));
    REQUIRE(wp_log_open(c, "b", &log) == 0);
    REQUIRE(wp_writer_open(log, &w) == 0);
    for (int i = 0; i < 9; i++) /* sync appends: one block each */
        CHECK_OK(wp_writer_append(w, "x", 1, &d));
    CHECK(d.segment_id == 2 && d.entry_id == 2);
    CHECK_OK(wp_writer_close(w));
    wp_log_close(log);
    wp_client_close(c);
}

TEST(flush_interval_batches)
{
    const char *kv[] = {"flush.max_interval_ms", "100", NULL};
    wp_client *c = open_client(test_tmpdir("interval"), kv);
    REQUIRE(c);
    CHECK_OK(wp_log_create(c, "i"));
    wp_log *log;
    REQUIRE(wp_log_open(c, "i", &log) == 0);
    wp_writer *w;
    REQUIRE(wp_writer_open(log, &w) == 0);
    int acked = 0;
    int64_t t0 = test_now_ms();
    for (int i = 0; i < 10; i++)
        CHECK_OK(wp_writer_append_async(w, "x", 1, count_cb, &acked));
    test_sleep_ms(30);
    CHECK(__atomic_load_n(&acked, __ATOMIC_SEQ_CST) == 0); /* still buffered */
    CHECK_OK(wp_writer_flush(w));
    CHECK(test_now_ms() - t0 >= 90);
    CHECK(acked == 10);
    wp_segment_info *segs;
    size_t n;
    CHECK_OK(wp_writer_close(w));
    REQUIRE(wp_log_segments(log, &segs, &n) == 0);
    /* one block: header 48 + block 40 + 10 records of 13 bytes + index 16 + footer 64 */
    CHECK(n == 1 && segs[0].bytes == 48 + 40 + 10 * 13 + 16 + 64);
    free(segs);
    wp_log_close(log);
    wp_client_close(c);
}

TEST(reader_in_another_process_tails)
{
    const char *dir = test_tmpdir("xproc");
    const char *kv[] = {"segment.max_bytes", "16KiB", NULL};
    wp_client *c = open_client(dir, kv);
    REQUIRE(c);
    CHECK_OK(wp_log_create(c, "x"));
    wp_log *log;
    REQUIRE(wp_log_open(c, "x", &log) == 0);
    wp_reader *r;
    REQUIRE(wp_reader_open(log, WP_EARLIEST, &r) == 0);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) { /* the writer process */
        wp_client *cc = open_client(dir, kv);
        wp_log *l;
        wp_writer *w;
        if (!cc || wp_log_open(cc, "x", &l) || wp_writer_open(l, &w))
            _exit(2);
        for (int i = 0; i < 2000; i++) {
            char buf[32];
            int len = snprintf(buf, sizeof buf, "e%d", i);
            if (wp_writer_append(w, buf, (size_t)len, NULL))
                _exit(3);
            if (i % 500 == 0)
                test_sleep_ms(20); /* let the reader catch up and wait */
        }
        _exit(wp_writer_close(w) ? 4 : 0);
    }
    int got = 0, bad = 0;
    wp_entry e;
    while (got < 2000 && wp_reader_next(r, 5000, &e) == WP_OK) {
        char want[32];
        int len = snprintf(want, sizeof want, "e%d", got);
        if (e.len != (size_t)len || memcmp(e.data, want, (size_t)len))
            bad++;
        got++;
    }
    CHECK(got == 2000 && bad == 0);
    CHECK_RC(WP_ETIMEDOUT, wp_reader_next(r, 50, &e));
    int st;
    waitpid(pid, &st, 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    wp_reader_close(r);
    wp_log_close(log);
    wp_client_close(c);
}

TEST(reader_registration_survives_lease_and_is_released)
{
    const char *dir = test_tmpdir("lease");
    const char *kv[] = {"reader.lease_ttl_ms", "1000", "segment.max_bytes", "4KiB",
                        "retention.ttl_ms", "0", NULL};
    wp_client *c = open_client(dir, kv);
    REQUIRE(c);
    CHECK_OK(wp_log_create(c, "l"));
    wp_log *log;
    REQUIRE(wp_log_open(c, "l", &log) == 0);
    wp_writer *w;
    REQUIRE(wp_writer_open(log, &w) == 0);
    for (int i = 0; i < 300; i++)
        CHECK_OK(wp_writer_append(w, "0123456789012345678901234567890123456789", 40, NULL));
    /* a reader in a child process holds segment 0, then is killed */
    int pfd[2];
    REQUIRE(pipe(pfd) == 0);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        wp_client *cc = open_client(dir, kv);
        wp_log *l;
        wp_reader *r;
        if (!cc || wp_log_open(cc, "l", &l) || wp_reader_open(l, (wp_msg_id){0, 0}, &r))
            _exit(2);
        if (write(pfd[1], "k", 1) != 1)
            _exit(3);
        for (;;)
            pause();
    }
    char ch;
    REQUIRE(read(pfd[0], &ch, 1) == 1);
    wp_segment_info *segs;
    size_t n;
    REQUIRE(wp_log_segments(log, &segs, &n) == 0);
    wp_msg_id cut = {segs[1].segment_id, segs[1].last_entry_id};
    free(segs);
    CHECK_OK(wp_log_truncate(log, cut));
    test_sleep_ms(1500); /* longer than the TTL: the live child's keepalive holds */
    CHECK_OK(wp__gc_run(c, wp__wall_ms()));
    REQUIRE(wp_log_segments(log, &segs, &n) == 0);
    CHECK(n > 0 && segs[0].segment_id == 0);
    free(segs);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    test_sleep_ms(1200); /* its lease expires */
    CHECK_OK(wp__gc_run(c, wp__wall_ms()));
    REQUIRE(wp_log_segments(log, &segs, &n) == 0);
    CHECK(n > 0 && segs[0].segment_id == 2);
    free(segs);
    CHECK_OK(wp_writer_close(w));
    wp_log_close(log);
    wp_client_close(c);
    close(pfd[0]);
    close(pfd[1]);
}

int main(void)
{
    RUN(backpressure_bounds_pending_bytes);
    RUN(roll_by_age_and_blocks);
    RUN(flush_interval_batches);
    RUN(reader_in_another_process_tails);
    RUN(reader_registration_survives_lease_and_is_released);
    return test_done();
}
