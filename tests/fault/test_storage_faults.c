/* test_storage_faults.c — fault injection into the local storage backend
 * through the os_sys table: write and sync errors, short and stalled
 * writes, failures while creating, fencing, reopening, deleting. Checks the
 * fsyncgate rule (a failed writer never syncs again), the error codes and
 * messages, and that a new writer recovers exactly the acknowledged bytes. */
#include "test.h"

#include <errno.h>
#include <fcntl.h>

#include "os/os.h"
#include "storage/storage.h"

/* ---- the fault plan ------------------------------------------------------ */

enum { PW_OK, PW_ERRNO, PW_SHORT, PW_ZERO, PW_EINTR_ONCE, PW_HALF_THEN_ERRNO };

static struct {
    int pwritev_mode, pwritev_errno;
    size_t short_max;          /* PW_SHORT: bytes written per call at most */
    int fdatasync_errno;       /* nonzero: fdatasync fails with it */
    int fdatasync_skip;        /* ... after this many more succeed */
    int fsync_errno;
    int ftruncate_errno;
    int pread_errno;
    int mkdir_errno;
    const char *mkdir_match;   /* fail mkdir of paths containing this */
    int open_errno;
    const char *open_match;    /* fail open of paths ending with this */
    int unlink_errno;
    int n_pwritev, n_fdatasync, n_fsync, n_mkdir, n_open;
} F;

static void faults_clear(void)
{
    memset(&F, 0, sizeof F);
}

static ssize_t f_pwritev(int fd, const struct iovec *iov, int iovcnt, off_t off)
{
    F.n_pwritev++;
    switch (F.pwritev_mode) {
    case PW_ERRNO:
        errno = F.pwritev_errno;
        return -1;
    case PW_ZERO:
        return 0;
    case PW_EINTR_ONCE:
        F.pwritev_mode = PW_OK;
        errno = EINTR;
        return -1;
    case PW_SHORT: {
        /* Write at most short_max bytes from the first iovec(s). */
        struct iovec one = iov[0];
        if (one.iov_len > F.short_max)
            one.iov_len = F.short_max;
        return pwritev(fd, &one, 1, off);
    }
    case PW_HALF_THEN_ERRNO: {
        F.pwritev_mode = PW_ERRNO;
        struct iovec one = iov[0];
        one.iov_len = one.iov_len / 2 ? one.iov_len / 2 : 1;
        return pwritev(fd, &one, 1, off);
    }
    default:
        return pwritev(fd, iov, iovcnt, off);
    }
}

static int f_fdatasync(int fd)
{
    F.n_fdatasync++;
    if (F.fdatasync_errno && F.fdatasync_skip > 0)
        F.fdatasync_skip--;
    else if (F.fdatasync_errno) {
        errno = F.fdatasync_errno;
        return -1;
    }
    return fdatasync(fd);
}

static int f_fsync(int fd)
{
    F.n_fsync++;
    if (F.fsync_errno) {
        errno = F.fsync_errno;
        return -1;
    }
    return fsync(fd);
}

static int f_ftruncate(int fd, off_t len)
{
    if (F.ftruncate_errno) {
        errno = F.ftruncate_errno;
        return -1;
    }
    return ftruncate(fd, len);
}

static ssize_t f_pread(int fd, void *buf, size_t n, off_t off)
{
    if (F.pread_errno) {
        errno = F.pread_errno;
        return -1;
    }
    return pread(fd, buf, n, off);
}

static int f_mkdir(const char *path, mode_t mode)
{
    F.n_mkdir++;
    if (F.mkdir_errno && F.mkdir_match && strstr(path, F.mkdir_match)) {
        errno = F.mkdir_errno;
        return -1;
    }
    return mkdir(path, mode);
}

static int ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

static int f_open(const char *path, int flags, mode_t mode)
{
    F.n_open++;
    if (F.open_errno && F.open_match && ends_with(path, F.open_match)) {
        errno = F.open_errno;
        return -1;
    }
    return open(path, flags, mode);
}

static int f_unlink(const char *path)
{
    if (F.unlink_errno) {
        errno = F.unlink_errno;
        return -1;
    }
    return unlink(path);
}

static void faults_install(void)
{
    faults_clear();
    os_sys.pwritev = f_pwritev;
    os_sys.fdatasync = f_fdatasync;
    os_sys.fsync = f_fsync;
    os_sys.ftruncate = f_ftruncate;
    os_sys.pread = f_pread;
    os_sys.mkdir = f_mkdir;
    os_sys.open = f_open;
    os_sys.unlink = f_unlink;
}

/* ---- helpers ------------------------------------------------------------- */

static char root[1100];

static storage *fresh(void)
{
    if (snprintf(root, sizeof root, "%s/root", test_tmpdir("stfault")) >= (int)sizeof root)
        return NULL;
    storage *s = NULL;
    if (storage_local_open(root, NULL, &s) != 0)
        return NULL;
    return s;
}

static void done(storage *s)
{
    os_sys_reset();
    s->ops->close(s);
    char top[sizeof root];
    memcpy(top, root, sizeof top);
    char *slash = strrchr(top, '/');
    if (slash)
        *slash = '\0';
    os_rm_rf(top);
}

static unsigned char pat(uint32_t seed, size_t i) { return (unsigned char)(seed * 131 + i * 7 + (i >> 8)); }

static int append_pat(storage *s, st_writer *w, size_t n, uint32_t seed)
{
    unsigned char *b = malloc(n ? n : 1);
    if (!b)
        return WP_ENOMEM;
    for (size_t i = 0; i < n; i++)
        b[i] = pat(seed, i);
    /* Three iovecs of uneven sizes. */
    struct iovec v[3] = {{b, n / 5}, {b + n / 5, n / 2}, {b + n / 5 + n / 2, n - n / 5 - n / 2}};
    int rc = s->ops->seg_append(w, v, 3);
    free(b);
    return rc;
}

/* 1 if the segment is exactly the appends (sizes[i], seeds[i]) in order. */
static int segment_is(storage *s, int64_t log_id, int64_t seg_id, const size_t *sizes,
                      const uint32_t *seeds, int n)
{
    st_reader *r = NULL;
    if (s->ops->seg_open_read(s, log_id, seg_id, &r) != 0)
        return 0;
    uint64_t total = 0, size = 0;
    for (int i = 0; i < n; i++)
        total += sizes[i];
    int ok = s->ops->seg_size(r, &size) == 0 && size == total;
    unsigned char *b = malloc(total ? total : 1);
    size_t got = 0;
    ok = ok && b && s->ops->seg_read(r, 0, b, total, &got) == 0 && got == total;
    size_t off = 0;
    for (int i = 0; ok && i < n; i++)
        for (size_t k = 0; ok && k < sizes[i]; k++)
            ok = b[off++] == pat(seeds[i], k);
    free(b);
    s->ops->seg_reader_close(r);
    return ok;
}

static int has(const char *needle) { return strstr(wp_errmsg(), needle) != NULL; }

/* ---- write errors -------------------------------------------------------- */

static void write_error(int err, int want_rc)
{
    storage *s = fresh();
    REQUIRE(s);
    faults_install();
    st_writer *w = NULL;
    CHECK_OK(s->ops->seg_create(s, 1, 0, 1, &w));
    REQUIRE(w);
    CHECK_OK(append_pat(s, w, 100, 1));
    F.pwritev_mode = PW_ERRNO;
    F.pwritev_errno = err;
    int syncs = F.n_fdatasync;
    CHECK_RC(want_rc, append_pat(s, w, 100, 2));
    CHECK(has("pwritev") && has("/1/0/data") && has(strerror(err)));
    CHECK(F.n_fdatasync == syncs); /* nothing written: nothing synced */
    /* The fault is gone, but the writer stays failed without I/O. */
    F.pwritev_mode = PW_OK;
    int writes = F.n_pwritev;
    CHECK_RC(want_rc, append_pat(s, w, 100, 3));
    CHECK_RC(want_rc, append_pat(s, w, 10, 3));
    CHECK_RC(want_rc, s->ops->seg_publish_lac(w, 0));
    CHECK(F.n_pwritev == writes && F.n_fdatasync == syncs);
    CHECK(s->ops->seg_writer_size(w) == 100);
    s->ops->seg_writer_close(w);
    static const size_t sz[] = {100};
    static const uint32_t sd[] = {1};
    CHECK(segment_is(s, 1, 0, sz, sd, 1));
    done(s);
}

TEST(pwritev_eio) { write_error(EIO, WP_EIO); }
TEST(pwritev_enospc) { write_error(ENOSPC, WP_ENOSPC); }
TEST(pwritev_edquot) { write_error(EDQUOT, WP_ENOSPC); }

TEST(short_writes_completed)
{
    storage *s = fresh();
    REQUIRE(s);
    faults_install();
    st_writer *w = NULL;
    CHECK_OK(s->ops->seg_create(s, 1, 0, 1, &w));
    REQUIRE(w);
    F.n_pwritev = F.n_fdatasync = 0; /* creation wrote and synced the fence file */
    F.pwritev_mode = PW_SHORT;
    F.short_max = 7;
    CHECK_OK(append_pat(s, w, 1000, 1));
    CHECK(F.n_pwritev >= 1000 / 7);
    CHECK(F.n_fdatasync == 1);
    CHECK_OK(append_pat(s, w, 3, 2));
    CHECK_OK(append_pat(s, w, 20000, 3));
    /* A transient EINTR is retried. */
    F.pwritev_mode = PW_EINTR_ONCE;
    int writes = F.n_pwritev;
    CHECK_OK(append_pat(s, w, 50, 4));
    CHECK(F.n_pwritev == writes + 2);
    F.pwritev_mode = PW_OK;
    CHECK(s->ops->seg_writer_size(w) == 21053);
    s->ops->seg_writer_close(w);
    static const size_t sz[] = {1000, 3, 20000, 50};
    static const uint32_t sd[] = {1, 2, 3, 4};
    CHECK(segment_is(s, 1, 0, sz, sd, 4));
    done(s);
}

TEST(many_iovecs)
{
    /* More iovecs than one pwritev takes (IOV_MAX): written in batches. */
    storage *s = fresh();
    REQUIRE(s);
    st_writer *w = NULL;
    CHECK_OK(s->ops->seg_create(s, 1, 0, 1, &w));
    REQUIRE(w);
    enum { N = 3000 };
    static struct iovec v[N];
    static unsigned char b[N * 3];
    for (size_t i = 0; i < sizeof b; i++)
        b[i] = pat(9, i);
    size_t off = 0;
    for (int i = 0; i < N; i++) {
        v[i].iov_base = b + off;
        v[i].iov_len = i == 5 ? 0 : 3; /* an empty one in the middle */
        off += v[i].iov_len;
    }
    CHECK_OK(s->ops->seg_append(w, v, N));
    CHECK(s->ops->seg_writer_size(w) == (N - 1) * 3);
    s->ops->seg_writer_close(w);
    static const size_t sz[] = {(N - 1) * 3};
    static const uint32_t sd[] = {9};
    CHECK(segment_is(s, 1, 0, sz, sd, 1));
    done(s);
}

TEST(zero_progress_write)
{
    storage *s = fresh();
    REQUIRE(s);
    faults_install();
    st_writer *w = NULL;
    CHECK_OK(s->ops->seg_create(s, 1, 0, 1, &w));
    REQUIRE(w);
    F.n_pwritev = F.n_fdatasync = 0; /* creation wrote and synced the fence file */
    F.pwritev_mode = PW_ZERO;
    CHECK_RC(WP_EIO, append_pat(s, w, 100, 1));
    CHECK(has("progress") && has("/1/0/data"));
    /* No spinning on a stuck write: one pwritev, and one more for the
     * `failed` mark (format.md section 9). */
    CHECK(F.n_pwritev == 2);
    CHECK(F.n_fdatasync == 0);
    F.pwritev_mode = PW_OK;
    CHECK_RC(WP_EIO, append_pat(s, w, 100, 1));
    CHECK(F.n_pwritev == 2);
    s->ops->seg_writer_close(w);
    done(s);
}

/* ---- sync errors (fsyncgate) --------------------------------------------- */

static void sync_error(int err, int want_rc)
{
    storage *s = fresh();
    REQUIRE(s);
    faults_install();
    st_writer *w = NULL;
    CHECK_OK(s->ops->seg_create(s, 1, 0, 1, &w));
    REQUIRE(w);
    F.n_pwritev = F.n_fdatasync = 0; /* creation wrote and synced the fence file */
    CHECK_OK(append_pat(s, w, 300, 1));
    CHECK_OK(append_pat(s, w, 200, 2));
    CHECK(F.n_fdatasync == 2);
    F.fdatasync_errno = err;
    CHECK_RC(want_rc, append_pat(s, w, 100, 3));
    CHECK(has("fdatasync") && has("/1/0/data"));
    CHECK(F.n_fdatasync == 3);
    /* Never retried, even once the disk "recovers". */
    F.fdatasync_errno = 0;
    int writes = F.n_pwritev;
    for (int i = 0; i < 3; i++)
        CHECK_RC(want_rc, append_pat(s, w, 100, 4));
    CHECK_RC(want_rc, s->ops->seg_append(w, NULL, 0));
    CHECK(F.n_fdatasync == 3);
    CHECK(F.n_pwritev == writes);
    CHECK(s->ops->seg_writer_size(w) == 500);
    s->ops->seg_writer_close(w);
    done(s);
}

TEST(fdatasync_eio) { sync_error(EIO, WP_EIO); }
TEST(fdatasync_enospc) { sync_error(ENOSPC, WP_ENOSPC); }

/* ---- recovery by a new writer -------------------------------------------- */

static void recover_after(int kind)
{
    storage *s = fresh();
    REQUIRE(s);
    faults_install();
    st_writer *w = NULL;
    CHECK_OK(s->ops->seg_create(s, 2, 5, 1, &w));
    REQUIRE(w);
    CHECK_OK(append_pat(s, w, 1000, 1));
    CHECK_OK(append_pat(s, w, 2000, 2));
    uint64_t good = s->ops->seg_writer_size(w);
    if (kind == 0)
        F.fdatasync_errno = EIO; /* bytes written, sync failed */
    else
        F.pwritev_mode = PW_HALF_THEN_ERRNO, F.pwritev_errno = EIO; /* torn write */
    CHECK_RC(WP_EIO, append_pat(s, w, 1500, 3));
    CHECK_RC(WP_EIO, append_pat(s, w, 1500, 4));
    faults_clear();
    s->ops->seg_writer_close(w);
    w = NULL;

    /* The next writer fences, reopens at the last good length, goes on. */
    CHECK_OK(s->ops->seg_fence(s, 2, 5, 2));
    CHECK_OK(s->ops->seg_reopen(s, 2, 5, 2, good, &w));
    REQUIRE(w);
    CHECK_OK(append_pat(s, w, 700, 5));
    CHECK_OK(append_pat(s, w, 1, 6));
    s->ops->seg_writer_close(w);
    static const size_t sz[] = {1000, 2000, 700, 1};
    static const uint32_t sd[] = {1, 2, 5, 6};
    CHECK(segment_is(s, 2, 5, sz, sd, 4));
    done(s);
}

TEST(recover_after_sync_failure) { recover_after(0); }
TEST(recover_after_torn_write) { recover_after(1); }

/* After a failed fdatasync the page cache holds bytes that may never
 * reach the disk, and a new fd's fdatasync does not report it (errseq).
 * A fence, in this process or another (a second handle stands for it),
 * cuts them before anyone scans (issue 9, item 8). */
static void unsynced_bytes_not_trusted(bool other_handle)
{
    storage *s = fresh();
    REQUIRE(s);
    faults_install();
    st_writer *w = NULL;
    CHECK_OK(s->ops->seg_create(s, 2, 6, 1, &w));
    REQUIRE(w);
    CHECK_OK(append_pat(s, w, 1000, 1));
    uint64_t good = s->ops->seg_writer_size(w);
    F.fdatasync_errno = EIO; /* the bytes are written, the sync fails */
    CHECK_RC(WP_EIO, append_pat(s, w, 1500, 3));
    faults_clear();
    s->ops->seg_writer_close(w);
    storage *s2 = s;
    if (other_handle)
        CHECK_OK(storage_local_open(root, NULL, &s2));
    REQUIRE(s2);
    CHECK_OK(s2->ops->seg_fence(s2, 2, 6, 2));
    st_reader *r = NULL;
    CHECK_OK(s2->ops->seg_open_read(s2, 2, 6, &r));
    uint64_t size = 0;
    if (r) {
        CHECK_OK(s2->ops->seg_size(r, &size));
        s2->ops->seg_reader_close(r);
    }
    CHECK(size == good);
    /* The mark is gone once used: a later fence cuts nothing. */
    st_writer *w2 = NULL;
    CHECK_OK(s2->ops->seg_reopen(s2, 2, 6, 2, good, &w2));
    if (w2) {
        CHECK_OK(append_pat(s2, w2, 10, 4));
        s2->ops->seg_writer_close(w2);
    }
    CHECK_OK(s2->ops->seg_fence(s2, 2, 6, 3));
    static const size_t sz[] = {1000, 10};
    static const uint32_t sd[] = {1, 4};
    CHECK(segment_is(s2, 2, 6, sz, sd, 2));
    if (s2 != s)
        s2->ops->close(s2);
    done(s);
}

TEST(unsynced_bytes_not_trusted_same_handle) { unsynced_bytes_not_trusted(false); }
TEST(unsynced_bytes_not_trusted_other_handle) { unsynced_bytes_not_trusted(true); }

/* ---- create, fence, reopen, delete, read failures ------------------------ */

TEST(create_failures)
{
    storage *s = fresh();
    REQUIRE(s);
    faults_install();
    st_writer *w = NULL;
    char want[1200];

    /* mkdir of the segment directory. */
    F.mkdir_errno = EACCES;
    F.mkdir_match = "/3/4";
    CHECK_RC(WP_EIO, s->ops->seg_create(s, 3, 4, 1, &w));
    CHECK(w == NULL);
    snprintf(want, sizeof want, "%s/3/4", root);
    CHECK(has("mkdir") && has(want) && has(strerror(EACCES)));
    /* mkdir of the log directory, ENOSPC. */
    F.mkdir_errno = ENOSPC;
    F.mkdir_match = "/8";
    CHECK_RC(WP_ENOSPC, s->ops->seg_create(s, 8, 0, 1, &w));
    snprintf(want, sizeof want, "%s/8", root);
    CHECK(has("mkdir") && has(want));
    F.mkdir_errno = 0;

    /* open of the data file. */
    F.open_errno = EMFILE;
    F.open_match = "/3/4/data";
    CHECK_RC(WP_EIO, s->ops->seg_create(s, 3, 4, 1, &w));
    CHECK(w == NULL);
    CHECK(has("open") && has("/3/4/data") && has(strerror(EMFILE)));
    F.open_errno = 0;

    /* fsync of a parent directory (every directory of the path is synced
     * into its parent, so the first to fail is near the top). */
    F.fsync_errno = EIO;
    CHECK_RC(WP_EIO, s->ops->seg_create(s, 3, 5, 1, &w));
    CHECK(w == NULL);
    CHECK(has("fsync"));
    F.fsync_errno = 0;

    /* With the faults gone, creation works (and 3/4 was never created). */
    CHECK_OK(s->ops->seg_create(s, 3, 4, 1, &w));
    if (w) {
        CHECK_OK(append_pat(s, w, 10, 1));
        s->ops->seg_writer_close(w);
    }
    done(s);
}

TEST(fence_failures)
{
    storage *s = fresh();
    REQUIRE(s);
    faults_install();
    st_writer *w = NULL;
    CHECK_OK(s->ops->seg_create(s, 1, 1, 1, &w));
    REQUIRE(w);
    CHECK_OK(append_pat(s, w, 10, 1));

    F.open_errno = EACCES;
    F.open_match = "/1/1/fence";
    CHECK_RC(WP_EIO, s->ops->seg_fence(s, 1, 1, 2));
    CHECK(has("open") && has("/1/1/fence"));
    F.open_errno = 0;

    F.fdatasync_errno = EIO;
    CHECK_RC(WP_EIO, s->ops->seg_fence(s, 1, 1, 2));
    CHECK(has("fdatasync") && has("/1/1/fence"));
    F.fdatasync_errno = 0;

    F.fsync_errno = EIO;
    CHECK_RC(WP_EIO, s->ops->seg_fence(s, 1, 1, 2));
    CHECK(has("fsync") && has("/1/1"));
    F.fsync_errno = 0;

    /* A retried fence succeeds and stops the old writer. */
    CHECK_OK(s->ops->seg_fence(s, 1, 1, 2));
    CHECK_RC(WP_EFENCED, append_pat(s, w, 10, 2));
    int syncs = F.n_fdatasync;
    CHECK_RC(WP_EFENCED, append_pat(s, w, 10, 2));
    CHECK(F.n_fdatasync == syncs);
    s->ops->seg_writer_close(w);
    done(s);
}

TEST(fence_check_read_error)
{
    storage *s = fresh();
    REQUIRE(s);
    faults_install();
    st_writer *w = NULL;
    CHECK_OK(s->ops->seg_create(s, 1, 1, 1, &w));
    REQUIRE(w);
    CHECK_OK(s->ops->seg_fence(s, 1, 1, 1)); /* same epoch: not fenced */
    CHECK_OK(append_pat(s, w, 10, 1));
    F.pread_errno = EIO;
    CHECK_RC(WP_EIO, append_pat(s, w, 10, 2));
    CHECK(has("pread") && has("/1/1/fence"));
    F.pread_errno = 0;
    CHECK_RC(WP_EIO, append_pat(s, w, 10, 2));
    s->ops->seg_writer_close(w);
    done(s);
}

TEST(reopen_failures)
{
    storage *s = fresh();
    REQUIRE(s);
    faults_install();
    st_writer *w = NULL;
    CHECK_OK(s->ops->seg_create(s, 1, 2, 1, &w));
    REQUIRE(w);
    CHECK_OK(append_pat(s, w, 100, 1));
    s->ops->seg_writer_close(w);
    w = NULL;

    F.ftruncate_errno = EIO;
    CHECK_RC(WP_EIO, s->ops->seg_reopen(s, 1, 2, 2, 50, &w));
    CHECK(w == NULL && has("ftruncate") && has("/1/2/data"));
    F.ftruncate_errno = 0;

    /* The fence file's sync (a reopen fences too), then the data's. */
    F.fdatasync_errno = EIO;
    CHECK_RC(WP_EIO, s->ops->seg_reopen(s, 1, 2, 2, 50, &w));
    CHECK(w == NULL && has("fdatasync") && has("/1/2/fence"));
    F.fdatasync_skip = 1;
    CHECK_RC(WP_EIO, s->ops->seg_reopen(s, 1, 2, 2, 50, &w));
    CHECK(w == NULL && has("fdatasync") && has("/1/2/data"));
    F.fdatasync_errno = 0;

    F.open_errno = EACCES;
    F.open_match = "/1/2/data";
    CHECK_RC(WP_EIO, s->ops->seg_reopen(s, 1, 2, 2, 50, &w));
    CHECK(w == NULL && has("open") && has("/1/2/data"));
    F.open_errno = 0;

    CHECK_OK(s->ops->seg_reopen(s, 1, 2, 2, 50, &w));
    if (w) {
        CHECK_OK(append_pat(s, w, 20, 2));
        s->ops->seg_writer_close(w);
    }
    done(s);
}

TEST(publish_lac_failure)
{
    storage *s = fresh();
    REQUIRE(s);
    faults_install();
    st_writer *w = NULL;
    CHECK_OK(s->ops->seg_create(s, 1, 3, 1, &w));
    REQUIRE(w);
    CHECK_OK(append_pat(s, w, 10, 1));
    F.pwritev_mode = PW_ERRNO;
    F.pwritev_errno = ENOSPC;
    CHECK_RC(WP_ENOSPC, s->ops->seg_publish_lac(w, 0));
    CHECK(has("/1/3/lac"));
    F.pwritev_mode = PW_OK;
    CHECK_RC(WP_ENOSPC, append_pat(s, w, 10, 2));
    s->ops->seg_writer_close(w);
    done(s);
}

/* A LAC hint that goes down (a completion below the last entry written)
 * is synced before anything else is written, as the first one is; one
 * that goes up is not (it lags by at most LAC_SYNC_BYTES). A failed sync
 * of it fails the writer (docs/format.md section 8). */
TEST(lowered_lac_hint_is_synced)
{
    storage *s = fresh();
    REQUIRE(s);
    faults_install();
    st_writer *w = NULL;
    CHECK_OK(s->ops->seg_create(s, 1, 5, 1, &w));
    REQUIRE(w);
    CHECK_OK(append_pat(s, w, 10, 1));
    CHECK_OK(s->ops->seg_publish_lac(w, 5)); /* created: synced */
    int n0 = F.n_fdatasync;
    CHECK_OK(s->ops->seg_publish_lac(w, 7)); /* up: not synced */
    CHECK(F.n_fdatasync == n0);
    CHECK_OK(s->ops->seg_publish_lac(w, 6)); /* down: synced */
    CHECK(F.n_fdatasync == n0 + 1);
    F.fdatasync_errno = EIO;
    CHECK_RC(WP_EIO, s->ops->seg_publish_lac(w, 3));
    F.fdatasync_errno = 0;
    CHECK_RC(WP_EIO, append_pat(s, w, 10, 2)); /* failed for good */
    s->ops->seg_writer_close(w);
    done(s);
}

TEST(read_and_delete_failures)
{
    storage *s = fresh();
    REQUIRE(s);
    faults_install();
    st_writer *w = NULL;
    CHECK_OK(s->ops->seg_create(s, 1, 4, 1, &w));
    REQUIRE(w);
    CHECK_OK(append_pat(s, w, 10, 1));
    CHECK_OK(s->ops->seg_publish_lac(w, 0));
    s->ops->seg_writer_close(w);

    st_reader *r = NULL;
    CHECK_OK(s->ops->seg_open_read(s, 1, 4, &r));
    REQUIRE(r);
    unsigned char b[16];
    size_t got = 0;
    int64_t lac = 0;
    F.pread_errno = EIO;
    CHECK_RC(WP_EIO, s->ops->seg_read(r, 0, b, sizeof b, &got));
    CHECK(has("pread") && has("/1/4/data"));
    CHECK_RC(WP_EIO, s->ops->seg_read_lac(r, &lac));
    CHECK(has("/1/4/lac"));
    F.pread_errno = 0;
    CHECK_OK(s->ops->seg_read(r, 0, b, sizeof b, &got));
    CHECK(got == 10);
    s->ops->seg_reader_close(r);

    F.open_errno = EACCES;
    F.open_match = "/1/4/data";
    CHECK_RC(WP_EIO, s->ops->seg_open_read(s, 1, 4, &r));
    CHECK(has("/1/4/data") && has(strerror(EACCES)));
    F.open_errno = 0;

    F.unlink_errno = EIO;
    CHECK_RC(WP_EIO, s->ops->seg_delete(s, 1, 4));
    CHECK(has("unlink") && has("/1/4/"));
    F.unlink_errno = 0;
    F.fsync_errno = EIO;
    CHECK_RC(WP_EIO, s->ops->seg_delete(s, 1, 4));
    CHECK(has("fsync") && has("/1"));
    F.fsync_errno = 0;
    CHECK_OK(s->ops->seg_delete(s, 1, 4));
    CHECK_RC(WP_ENOENT, s->ops->seg_open_read(s, 1, 4, &r));
    done(s);
}

int main(void)
{
    RUN(pwritev_eio);
    RUN(pwritev_enospc);
    RUN(pwritev_edquot);
    RUN(short_writes_completed);
    RUN(many_iovecs);
    RUN(zero_progress_write);
    RUN(fdatasync_eio);
    RUN(fdatasync_enospc);
    RUN(recover_after_sync_failure);
    RUN(recover_after_torn_write);
    RUN(unsynced_bytes_not_trusted_same_handle);
    RUN(unsynced_bytes_not_trusted_other_handle);
    RUN(create_failures);
    RUN(fence_failures);
    RUN(fence_check_read_error);
    RUN(reopen_failures);
    RUN(publish_lac_failure);
    RUN(lowered_lac_hint_is_synced);
    RUN(read_and_delete_failures);
    return test_done();
}
