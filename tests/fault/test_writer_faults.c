/* test_writer_faults.c — the writer under injected storage faults (through
 * the OS layer's syscall table): fdatasync EIO, write EIO/ENOSPC, short
 * writes, and corruption found on disk. Expected: the writer fails stop
 * with a clear error, no entry is acked that was not durable, reopening
 * recovers every acked entry. */
#include "test.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>

#include "os/os.h"

#if defined(__SANITIZE_ADDRESS__)
/* Under ASan, an allocation beyond RLIMIT_AS returns NULL (as it does
 * with glibc) instead of aborting: failed_block_allocation_* need it. */
const char *__asan_default_options(void);
const char *__asan_default_options(void) { return "allocator_may_return_null=1"; }
#endif

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
    int rc = 0, i, accepted = 0;
    for (i = 0; i < 2000 && rc == 0; i++) {
        char buf[32];
        int len = snprintf(buf, sizeof buf, "v%d", i);
        rc = wp_writer_append_async(w, buf, (size_t)len, ack_cb, &a);
        accepted += rc == 0;
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
    CHECK(a.acked + a.failed == accepted); /* one callback per accepted append */
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

/* ---- a block allocation that fails (issue 9, item 3) ------------------- */

#define OOM_ENTRY_BYTES (200u << 20)
#define OOM_HEADROOM_BYTES (64ull << 20) /* address space left for everything else */
#define OOM_SMALL_N 200
#define OOM_ALARM_S 20 /* a stalled writer becomes a failure, not a hang */

typedef struct {
    pthread_mutex_t mu;
    int calls[OOM_SMALL_N + 1]; /* per append; [OOM_SMALL_N] is the huge one */
    int bad_rc;
    wp_msg_id last;
} once_acks;

typedef struct {
    once_acks *a;
    int i;
} once_arg;

static void once_cb(void *arg, int rc, wp_msg_id id)
{
    once_arg *o = arg;
    pthread_mutex_lock(&o->a->mu);
    o->a->calls[o->i]++;
    if (rc)
        o->a->bad_rc = rc;
    if (wp_msg_id_cmp(id, o->a->last) > 0)
        o->a->last = id;
    pthread_mutex_unlock(&o->a->mu);
}

/* Caps the address space at what is mapped now plus OOM_HEADROOM_BYTES
 * (VmSize counts ASan's shadow too), so that only a huge allocation fails. */
static int cap_address_space(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    unsigned long long kib = 0;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmSize: %llu kB", &kib) == 1)
            break;
    if (f)
        fclose(f);
    struct rlimit rl;
    if (kib == 0 || getrlimit(RLIMIT_AS, &rl))
        return -1;
    rl.rlim_cur = kib * 1024 + OOM_HEADROOM_BYTES;
    if (rl.rlim_max != RLIM_INFINITY && rl.rlim_cur > rl.rlim_max)
        return -1; /* already capped lower than that */
    return setrlimit(RLIMIT_AS, &rl);
}

/* The child of failed_block_allocation_*: appends one entry, fails an
 * append of OOM_ENTRY_BYTES with ENOMEM (its block buffer cannot be
 * allocated), then appends OOM_SMALL_N entries through several rolls
 * (segment.max_blocks 2, flush.max_entries 10) and flushes (or closes at
 * once). Exit status: 0 ok, else the step that failed. */
static int oom_child(const char *dir, bool close_at_once)
{
    alarm(OOM_ALARM_S);
    wp_config *cfg;
    wp_client *c = NULL;
    if (wp_config_default(&cfg) || wp_config_set(cfg, "storage.root", dir) ||
        wp_config_set(cfg, "writer.max_entry_bytes", "256MiB") ||
        wp_config_set(cfg, "segment.max_blocks", "2") ||
        wp_config_set(cfg, "flush.max_entries", "10") || wp_client_open(cfg, &c))
        return 10;
    wp_config_free(cfg);
    wp_log *log;
    wp_writer *w;
    if (wp_log_create(c, "f") || wp_log_open(c, "f", &log) || wp_writer_open(log, &w))
        return 11;
    if (wp_writer_append(w, "first", 5, NULL))
        return 12;
    /* never read: the append fails before its payload is copied */
    void *huge = mmap(NULL, OOM_ENTRY_BYTES, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                      -1, 0);
    if (huge == MAP_FAILED || cap_address_space())
        return 13;
    static once_acks a = {.mu = PTHREAD_MUTEX_INITIALIZER, .last = {-1, -1}};
    static once_arg args[OOM_SMALL_N + 1];
    for (int i = 0; i <= OOM_SMALL_N; i++)
        args[i] = (once_arg){&a, i};
    int rc = wp_writer_append_async(w, huge, OOM_ENTRY_BYTES, once_cb, &args[OOM_SMALL_N]);
    if (rc != WP_ENOMEM) {
        fprintf(stderr, "  huge append: %s (%s), want ENOMEM\n", wp_strerror(rc), wp_errmsg());
        return 14;
    }
    for (int i = 0; i < OOM_SMALL_N; i++) {
        char buf[1024];
        memset(buf, 'a' + i % 26, sizeof buf);
        if ((rc = wp_writer_append_async(w, buf, sizeof buf, once_cb, &args[i]))) {
            fprintf(stderr, "  append %d: %s (%s)\n", i, wp_strerror(rc), wp_errmsg());
            return 15;
        }
    }
    if (!close_at_once && (rc = wp_writer_flush(w))) {
        fprintf(stderr, "  flush: %s (%s)\n", wp_strerror(rc), wp_errmsg());
        return 16;
    }
    if ((rc = wp_writer_close(w))) {
        fprintf(stderr, "  close: %s (%s)\n", wp_strerror(rc), wp_errmsg());
        return 17;
    }
    int step = 0;
    for (int i = 0; i < OOM_SMALL_N && !step; i++)
        if (a.calls[i] != 1) {
            fprintf(stderr, "  callback of append %d ran %d times\n", i, a.calls[i]);
            step = 18;
        }
    if (a.calls[OOM_SMALL_N] != 0) {
        fprintf(stderr, "  the failed append's callback ran\n");
        step = 19;
    }
    if (a.bad_rc) {
        fprintf(stderr, "  a callback got %s\n", wp_strerror(a.bad_rc));
        step = 20;
    }
    if (a.last.segment_id < 2) { /* rolled at least twice after the failure */
        fprintf(stderr, "  last ack %lld:%lld: no roll\n", (long long)a.last.segment_id,
                (long long)a.last.entry_id);
        step = 21;
    }
    int64_t n = 0;
    if (!step && (wp_log_verify(log, NULL, NULL, &n) || n != OOM_SMALL_N + 1)) {
        fprintf(stderr, "  verify: %lld entries, want %d\n", (long long)n, OOM_SMALL_N + 1);
        step = 22;
    }
    wp_log_close(log);
    wp_client_close(c);
    return step;
}

static void run_oom(const char *tag, bool close_at_once)
{
    const char *dir = test_tmpdir(tag);
    fflush(NULL);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0)
        _exit(oom_child(dir, close_at_once));
    int st;
    REQUIRE(waitpid(pid, &st, 0) == pid);
    if (WIFSIGNALED(st))
        fprintf(stderr, "  child killed by signal %d%s\n", WTERMSIG(st),
                WTERMSIG(st) == SIGALRM ? " (the writer stalled)" : "");
    else if (WEXITSTATUS(st))
        fprintf(stderr, "  child failed at step %d\n", WEXITSTATUS(st));
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

/* A failed block allocation must not leave an empty block queued ahead
 * of later appends: they, a roll and wp_writer_flush complete. */
TEST(failed_block_allocation_does_not_stall_writer) { run_oom("oomflush", false); }

/* Closing right after: every accepted append's callback runs exactly once
 * (none is freed unacked behind a stuck block). */
TEST(failed_block_allocation_close_runs_every_callback) { run_oom("oomclose", true); }

int main(void)
{
    RUN(fdatasync_eio_fails_stop);
    RUN(fdatasync_enospc);
    RUN(write_eio_fails_stop);
    RUN(write_enospc);
    RUN(short_writes_complete);
    RUN(corruption_is_reported_never_returned);
    RUN(corrupt_active_segment_is_not_cut);
    RUN(failed_block_allocation_does_not_stall_writer);
    RUN(failed_block_allocation_close_runs_every_callback);
    return test_done();
}
