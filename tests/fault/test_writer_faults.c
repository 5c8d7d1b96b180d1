/* test_writer_faults.c — the writer under injected storage faults (through
 * the OS layer's syscall table): fdatasync EIO, write EIO/ENOSPC, short
 * writes, and corruption found on disk. Expected: the writer fails stop
 * with a clear error, no entry is acked that was not durable, reopening
 * recovers every acked entry. */
#include "test.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/wait.h>

#include "os/os.h"

static wp_client *open_client(const char *dir)
{
    wp_config *cfg;
    if (wp_config_default(&cfg))
        return NULL;
    wp_config_set(cfg, "storage.root", dir);
    wp_config_set(cfg, "segment.max_bytes", "64KiB");
    wp_client *c = NULL;
    if (wp_client_open(cfg, &c))
        fprintf(stderr, "client open: %s\n", wp_errmsg());
    wp_config_free(cfg);
    return c;
}

/* ---- injected syscalls -------------------------------------------------- */

static int fail_after;     /* calls to let through before failing; <0 never */
static int fail_errno;
static int sync_calls_after_fail;
static bool failed_once;

static int bad_fdatasync(int fd)
{
    if (failed_once) {
        sync_calls_after_fail++;
        return fdatasync(fd);
    }
    if (fail_after-- == 0) {
        failed_once = true;
        errno = fail_errno;
        return -1;
    }
    return fdatasync(fd);
}

static ssize_t bad_pwritev(int fd, const struct iovec *iov, int iovcnt, off_t off)
{
    if (!failed_once && fail_after-- == 0) {
        failed_once = true;
        errno = fail_errno;
        return -1;
    }
    return pwritev(fd, iov, iovcnt, off);
}

/* Writes at most 7 bytes per call: every write is short. */
static ssize_t short_pwritev(int fd, const struct iovec *iov, int iovcnt, off_t off)
{
    for (int i = 0; i < iovcnt; i++)
        if (iov[i].iov_len)
            return pwrite(fd, iov[i].iov_base, iov[i].iov_len < 7 ? iov[i].iov_len : 7, off);
    return 0;
}

static void arm(int after, int err)
{
    fail_after = after;
    fail_errno = err;
    failed_once = false;
    sync_calls_after_fail = 0;
}

/* ---- helpers ------------------------------------------------------------ */

typedef struct {
    pthread_mutex_t mu;
    int acked, failed;
    int64_t acked_ids[4096][2];
} acks;

static void ack_cb(void *arg, int rc, wp_msg_id id)
{
    acks *a = arg;
    pthread_mutex_lock(&a->mu);
    if (rc == 0 && a->acked < 4096) {
        a->acked_ids[a->acked][0] = id.segment_id;
        a->acked_ids[a->acked][1] = id.entry_id;
        a->acked++;
    } else if (rc) {
        a->failed++;
    }
    pthread_mutex_unlock(&a->mu);
}

/* After recovery, every acked id must be readable with payload "v<entry>". */
static int check_acked_present(const char *dir, acks *a)
{
    wp_client *c = open_client(dir);
    wp_log *log;
    wp_writer *w;
    if (!c || wp_log_open(c, "f", &log))
        return -1;
    int rc = wp_writer_open(log, &w); /* recovery */
    if (rc)
        return rc;
    wp_writer_close(w);
    wp_reader *r;
    if ((rc = wp_reader_open(log, WP_EARLIEST, &r)))
        return rc;
    int found = 0;
    wp_entry e;
    while (found < a->acked && wp_reader_next(r, 50, &e) == WP_OK) {
        if (e.id.segment_id == a->acked_ids[found][0] && e.id.entry_id == a->acked_ids[found][1])
            found++;
    }
    wp_reader_close(r);
    wp_log_close(log);
    wp_client_close(c);
    return found == a->acked ? 0 : -1;
}

static void run_fault(const char *tag, int after, int err, bool in_sync, int want_rc)
{
    const char *dir = test_tmpdir(tag);
    wp_client *c = open_client(dir);
    REQUIRE(c);
    CHECK_OK(wp_log_create(c, "f"));
    wp_log *log;
    REQUIRE(wp_log_open(c, "f", &log) == 0);
    wp_writer *w;
    REQUIRE(wp_writer_open(log, &w) == 0);
    acks a = {.mu = PTHREAD_MUTEX_INITIALIZER};
    arm(after, err);
    if (in_sync)
        os_sys.fdatasync = bad_fdatasync;
    else
        os_sys.pwritev = bad_pwritev;
    int rc = 0, i;
    for (i = 0; i < 2000 && rc == 0; i++) {
        char buf[32];
        int len = snprintf(buf, sizeof buf, "v%d", i);
        rc = wp_writer_append_async(w, buf, (size_t)len, ack_cb, &a);
        if (i % 10 == 9 && rc == 0)
            rc = wp_writer_flush(w);
    }
    CHECK_RC(want_rc, rc);
    CHECK(strlen(wp_errmsg()) > 0);
    /* failed for good: every later call fails, and no fdatasync is retried */
    CHECK(wp_writer_append(w, "x", 1, NULL) == want_rc);
    CHECK(wp_writer_flush(w) == want_rc);
    CHECK(wp_writer_close(w) != 0);
    CHECK(sync_calls_after_fail == 0 || !in_sync);
    os_sys_reset();
    CHECK(a.failed > 0);
    wp_log_close(log);
    wp_client_close(c);
    CHECK_OK(check_acked_present(dir, &a));
}

TEST(fdatasync_eio_fails_stop) { run_fault("fsynceio", 25, EIO, true, WP_EIO); }
TEST(fdatasync_enospc) { run_fault("fsyncnospc", 5, ENOSPC, true, WP_ENOSPC); }
TEST(write_eio_fails_stop) { run_fault("writeeio", 30, EIO, false, WP_EIO); }
TEST(write_enospc) { run_fault("writenospc", 12, ENOSPC, false, WP_ENOSPC); }

TEST(short_writes_complete)
{
    const char *dir = test_tmpdir("short");
    wp_client *c = open_client(dir);
    REQUIRE(c);
    CHECK_OK(wp_log_create(c, "f"));
    wp_log *log;
    REQUIRE(wp_log_open(c, "f", &log) == 0);
    wp_writer *w;
    REQUIRE(wp_writer_open(log, &w) == 0);
    os_sys.pwritev = short_pwritev;
    acks a = {.mu = PTHREAD_MUTEX_INITIALIZER};
    for (int i = 0; i < 300; i++) {
        char buf[32];
        int len = snprintf(buf, sizeof buf, "v%d", i);
        CHECK_OK(wp_writer_append_async(w, buf, (size_t)len, ack_cb, &a));
    }
    CHECK_OK(wp_writer_close(w));
    os_sys_reset();
    CHECK(a.acked == 300 && a.failed == 0);
    int64_t n = 0;
    CHECK_OK(wp_log_verify(log, NULL, NULL, &n));
    CHECK(n == 300);
    wp_log_close(log);
    wp_client_close(c);
    CHECK_OK(check_acked_present(dir, &a));
}

/* Finds the data file of segment 0 of the only log under dir. */
static int seg_path(const char *dir, char *out, size_t len)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "find '%s' -path '*/0/data' | head -n 1", dir);
    FILE *p = popen(cmd, "r");
    if (!p || !fgets(out, (int)len, p))
        return -1;
    pclose(p);
    out[strcspn(out, "\n")] = 0;
    return 0;
}

static void flip_byte(const char *path, off_t off)
{
    int fd = open(path, O_RDWR);
    unsigned char b;
    if (fd < 0 || pread(fd, &b, 1, off) != 1)
        abort();
    b ^= 0x40;
    if (pwrite(fd, &b, 1, off) != 1)
        abort();
    close(fd);
}

TEST(corruption_is_reported_never_returned)
{
    const char *dir = test_tmpdir("corrupt");
    wp_client *c = open_client(dir);
    REQUIRE(c);
    CHECK_OK(wp_log_create(c, "f"));
    wp_log *log;
    REQUIRE(wp_log_open(c, "f", &log) == 0);
    wp_writer *w;
    REQUIRE(wp_writer_open(log, &w) == 0);
    for (int i = 0; i < 100; i++)
        CHECK_OK(wp_writer_append(w, "abcdefghijklmnopqrstuvwxyz", 26, NULL));
    CHECK_OK(wp_writer_close(w));
    char path[1024];
    REQUIRE(seg_path(dir, path, sizeof path) == 0);
    flip_byte(path, 48 + 40 + 8 + 4 + 20 * 34); /* inside a record of the first block */
    wp_reader *r;
    REQUIRE(wp_reader_open(log, WP_EARLIEST, &r) == 0);
    wp_entry e;
    int rc, good = 0;
    while ((rc = wp_reader_next(r, 50, &e)) == WP_OK) {
        CHECK(e.len == 26 && !memcmp(e.data, "abcdefghijklmnopqrstuvwxyz", 26));
        good++;
    }
    CHECK_RC(WP_ECORRUPT, rc);
    wp_reader_close(r);
    int problems = 0;
    CHECK_RC(WP_ECORRUPT, wp_log_verify(log, NULL, NULL, NULL));
    (void)problems;
    /* truncated file: reading past the cut fails too */
    REQUIRE(truncate(path, 300) == 0);
    REQUIRE(wp_reader_open(log, (wp_msg_id){0, 50}, &r) == 0);
    CHECK(wp_reader_next(r, 50, &e) == WP_ECORRUPT);
    wp_reader_close(r);
    wp_log_close(log);
    wp_client_close(c);
}

TEST(corrupt_active_segment_is_not_cut)
{
    /* a crash leaves the segment active; damage inside its durable part
     * must make recovery fail, never silently drop acked entries */
    const char *dir = test_tmpdir("corruptactive");
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        wp_client *c = open_client(dir);
        wp_log *log;
        wp_writer *w;
        if (!c || wp_log_create(c, "f") || wp_log_open(c, "f", &log) || wp_writer_open(log, &w))
            _exit(2);
        for (int i = 0; i < 50; i++)
            if (wp_writer_append(w, "0123456789", 10, NULL))
                _exit(3);
        _exit(0); /* no close: the segment stays active */
    }
    int st;
    waitpid(pid, &st, 0);
    REQUIRE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    char path[1024];
    REQUIRE(seg_path(dir, path, sizeof path) == 0);
    flip_byte(path, 48 + 40 + 12);
    wp_client *c = open_client(dir);
    REQUIRE(c);
    wp_log *log;
    REQUIRE(wp_log_open(c, "f", &log) == 0);
    wp_writer *w;
    CHECK_RC(WP_ECORRUPT, wp_writer_open(log, &w));
    wp_log_close(log);
    wp_client_close(c);
}

int main(void)
{
    RUN(fdatasync_eio_fails_stop);
    RUN(fdatasync_enospc);
    RUN(write_eio_fails_stop);
    RUN(write_enospc);
    RUN(short_writes_complete);
    RUN(corruption_is_reported_never_returned);
    RUN(corrupt_active_segment_is_not_cut);
    return test_done();
}
