/* test_storage_local.c — the storage conformance suite on the local backend,
 * then what is specific to it: the file layout (docs/format.md §9), the
 * durability syscalls it issues (counted through os_sys), and concurrency. */
#include "test.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

#include "conformance/storage_conformance.h"
#include "os/os.h"
#include "storage/storage.h"

/* ---- fresh backends, removed at exit ------------------------------------- */

#define MAX_ROOTS 64
static char *roots[MAX_ROOTS];
static int nroots;

static const char *new_root(const char *tag)
{
    char buf[1100];
    if (nroots == MAX_ROOTS ||
        snprintf(buf, sizeof buf, "%s/a/b/root", test_tmpdir(tag)) >= (int)sizeof buf)
        return NULL;
    roots[nroots] = strdup(buf);
    return roots[nroots++];
}

static storage *open_fresh(void *arg)
{
    (void)arg;
    const char *root = new_root("stlocal");
    storage *s = NULL;
    if (!root || storage_local_open(root, NULL, &s) != 0)
        return NULL;
    return s;
}

static void cleanup_roots(void)
{
    for (int i = 0; i < nroots; i++) {
        /* roots[i] is <tmpdir>/a/b/root: remove the whole tmpdir. */
        char *p = roots[i];
        for (int k = 0; k < 3; k++) {
            char *slash = strrchr(p, '/');
            if (slash)
                *slash = '\0';
        }
        os_rm_rf(p);
        free(p);
    }
    nroots = 0;
}

static int read_file(const char *path, unsigned char *buf, size_t cap, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    *len = fread(buf, 1, cap, f);
    fclose(f);
    return 0;
}

static int write_file(const char *path, const void *buf, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    size_t w = fwrite(buf, 1, len, f);
    fclose(f);
    return w == len ? 0 : -1;
}

static int append_str(storage *s, st_writer *w, const char *str)
{
    struct iovec v = {.iov_base = (void *)str, .iov_len = strlen(str)};
    return s->ops->seg_append(w, &v, 1);
}

static int exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* ---- syscall counting through os_sys ------------------------------------- */

static atomic_int n_fdatasync, n_fsync;
#define MAX_FSYNCED 64
static char fsynced[MAX_FSYNCED][1024]; /* paths fsync'd, in order */
static int nfsynced;
static char fd_path[1024][1024];         /* path each open fd came from */

static int count_open(const char *path, int flags, mode_t mode)
{
    int fd = open(path, flags, mode);
    if (fd >= 0 && fd < 1024)
        snprintf(fd_path[fd], sizeof fd_path[fd], "%s", path);
    return fd;
}

static int count_fdatasync(int fd)
{
    atomic_fetch_add(&n_fdatasync, 1);
    return fdatasync(fd);
}

static int count_fsync(int fd)
{
    atomic_fetch_add(&n_fsync, 1);
    if (nfsynced < MAX_FSYNCED && fd >= 0 && fd < 1024)
        snprintf(fsynced[nfsynced++], sizeof fsynced[0], "%s", fd_path[fd]);
    return fsync(fd);
}

static void counting_on(void)
{
    atomic_store(&n_fdatasync, 0);
    atomic_store(&n_fsync, 0);
    nfsynced = 0;
    os_sys.open = count_open;
    os_sys.fdatasync = count_fdatasync;
    os_sys.fsync = count_fsync;
}

static int was_fsynced(const char *path)
{
    for (int i = 0; i < nfsynced; i++)
        if (strcmp(fsynced[i], path) == 0)
            return 1;
    return 0;
}

/* ---- tests --------------------------------------------------------------- */

TEST(layout_on_disk)
{
    const char *root = new_root("stlayout");
    storage *s = NULL;
    CHECK_OK(storage_local_open(root, NULL, &s));
    REQUIRE(s);
    CHECK(exists(root));
    st_writer *w = NULL;
    CHECK_OK(s->ops->seg_create(s, 7, 3, 5, &w));
    REQUIRE(w);
    CHECK_OK(append_str(s, w, "hello"));
    CHECK_OK(append_str(s, w, "world"));
    CHECK_OK(s->ops->seg_publish_lac(w, 258));
    CHECK_OK(s->ops->seg_fence(s, 7, 3, 0x0102030405LL));

    char path[2048];
    unsigned char buf[64];
    size_t len = 0;
    snprintf(path, sizeof path, "%s/7/3/data", root);
    CHECK(read_file(path, buf, sizeof buf, &len) == 0);
    CHECK(len == 10 && memcmp(buf, "helloworld", 10) == 0);

    snprintf(path, sizeof path, "%s/7/3/lac", root);
    CHECK(read_file(path, buf, sizeof buf, &len) == 0);
    static const unsigned char lac[16] = {0x02, 0x01, 0, 0, 0, 0, 0, 0,
                                          0xfd, 0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    CHECK(len == 16 && memcmp(buf, lac, 16) == 0);

    snprintf(path, sizeof path, "%s/7/3/fence", root);
    CHECK(read_file(path, buf, sizeof buf, &len) == 0);
    static const unsigned char fence[8] = {0x05, 0x04, 0x03, 0x02, 0x01, 0, 0, 0};
    CHECK(len == 8 && memcmp(buf, fence, 8) == 0);
    /* A lower fence is refused and leaves the stored epoch alone. */
    CHECK_RC(WP_EFENCED, s->ops->seg_fence(s, 7, 3, 7));
    CHECK(read_file(path, buf, sizeof buf, &len) == 0);
    CHECK(len == 8 && memcmp(buf, fence, 8) == 0);

    s->ops->seg_writer_close(w);
    s->ops->close(s);
}

TEST(root_handling)
{
    const char *root = new_root("stroot");
    char withslash[1200];
    snprintf(withslash, sizeof withslash, "%s//", root);
    storage *s = NULL;
    CHECK_OK(storage_local_open(withslash, NULL, &s));
    REQUIRE(s);
    st_writer *w = NULL;
    CHECK_OK(s->ops->seg_create(s, 1, 2, 1, &w));
    if (w)
        s->ops->seg_writer_close(w);
    char path[2048];
    snprintf(path, sizeof path, "%s/1/2/data", root);
    CHECK(exists(path));
    s->ops->close(s);

    /* A root that is a file cannot be used, and the message names it. */
    snprintf(path, sizeof path, "%s/afile", root);
    CHECK(write_file(path, "x", 1) == 0);
    s = NULL;
    CHECK(storage_local_open(path, NULL, &s) != 0);
    CHECK(s == NULL);
    CHECK(strstr(wp_errmsg(), "afile") != NULL);
    CHECK_RC(WP_EINVAL, storage_local_open("", NULL, &s));
}

TEST(one_fdatasync_per_append)
{
    storage *s = open_fresh(NULL);
    REQUIRE(s);
    st_writer *w = NULL;
    CHECK_OK(s->ops->seg_create(s, 1, 0, 1, &w));
    REQUIRE(w);
    counting_on();
    for (int i = 0; i < 20; i++)
        CHECK_OK(append_str(s, w, "some bytes"));
    CHECK(atomic_load(&n_fdatasync) == 20);
    CHECK(atomic_load(&n_fsync) == 0);
    /* The lac hint is synced when its file is created (with its directory),
     * then not again until LAC_SYNC_BYTES (8 MiB) more were appended. */
    CHECK_OK(s->ops->seg_publish_lac(w, 19));
    CHECK(atomic_load(&n_fdatasync) == 21);
    CHECK(atomic_load(&n_fsync) == 1);
    CHECK_OK(s->ops->seg_publish_lac(w, 20));
    CHECK(atomic_load(&n_fdatasync) == 21);
    CHECK(atomic_load(&n_fsync) == 1);
    /* A reopen syncs the fence file and the data once (it may have cut a tail). */
    s->ops->seg_writer_close(w);
    w = NULL;
    CHECK_OK(s->ops->seg_fence(s, 1, 0, 2));
    atomic_store(&n_fdatasync, 0);
    CHECK_OK(s->ops->seg_reopen(s, 1, 0, 2, 100, &w));
    CHECK(atomic_load(&n_fdatasync) == 2);
    /* The fencer's appends are one fdatasync each too. */
    for (int i = 0; w && i < 5; i++)
        CHECK_OK(append_str(s, w, "more"));
    CHECK(atomic_load(&n_fdatasync) == 7);
    os_sys_reset();
    if (w)
        s->ops->seg_writer_close(w);
    s->ops->close(s);
}

TEST(directories_fsynced)
{
    const char *root = new_root("stfsync");
    storage *s = NULL;
    CHECK_OK(storage_local_open(root, NULL, &s));
    REQUIRE(s);
    char logdir[1200], segdir[1300], segdir2[1300];
    snprintf(logdir, sizeof logdir, "%s/4", root);
    snprintf(segdir, sizeof segdir, "%s/4/9", root);
    snprintf(segdir2, sizeof segdir2, "%s/4/10", root);

    counting_on();
    st_writer *w = NULL;
    CHECK_OK(s->ops->seg_create(s, 4, 9, 1, &w));
    /* New log dir into root, new segment dir into log dir, data and fence
     * into segment; the fence file holds the creator's epoch (synced). */
    CHECK(was_fsynced(root));
    CHECK(was_fsynced(logdir));
    CHECK(was_fsynced(segdir));
    CHECK(atomic_load(&n_fdatasync) == 1);
    if (w)
        s->ops->seg_writer_close(w);

    nfsynced = 0;
    CHECK_OK(s->ops->seg_create(s, 4, 10, 1, &w));
    CHECK(was_fsynced(root)); /* the log dir exists, and is synced again */
    CHECK(was_fsynced(logdir));
    CHECK(was_fsynced(segdir2));
    if (w)
        s->ops->seg_writer_close(w);

    /* A fence syncs its file and the segment directory. */
    nfsynced = 0;
    atomic_store(&n_fdatasync, 0);
    CHECK_OK(s->ops->seg_fence(s, 4, 9, 2));
    CHECK(was_fsynced(segdir));
    CHECK(atomic_load(&n_fdatasync) == 1);

    /* Deletion syncs the parent. */
    nfsynced = 0;
    CHECK_OK(s->ops->seg_delete(s, 4, 9));
    CHECK(was_fsynced(logdir));
    nfsynced = 0;
    CHECK_OK(s->ops->log_delete(s, 4));
    CHECK(was_fsynced(root));
    CHECK(!exists(logdir));
    os_sys_reset();
    s->ops->close(s);
}

/* A directory that exists may come from a create that crashed before
 * its parent's fsync: creating under it syncs it into its parent again
 * (issue 9, item 9). */
TEST(existing_dirs_synced_again)
{
    const char *root = new_root("stsync2");
    storage *s = NULL;
    CHECK_OK(storage_local_open(root, NULL, &s));
    REQUIRE(s);
    char logdir[1200];
    snprintf(logdir, sizeof logdir, "%s/5", root);
    CHECK(mkdir(logdir, 0755) == 0); /* as left by a crash: never synced */
    counting_on();
    st_writer *w = NULL;
    CHECK_OK(s->ops->seg_create(s, 5, 0, 1, &w));
    CHECK(was_fsynced(root));   /* the log dir's entry */
    CHECK(was_fsynced(logdir)); /* the segment dir's entry */
    os_sys_reset();
    if (w)
        s->ops->seg_writer_close(w);
    s->ops->close(s);
}

/* The lac hint must survive a power loss: its file is synced (with its
 * directory entry) when created, then every LAC_SYNC_BYTES of data. */
TEST(lac_file_synced)
{
    storage *s = open_fresh(NULL);
    REQUIRE(s);
    st_writer *w = NULL;
    CHECK_OK(s->ops->seg_create(s, 1, 0, 1, &w));
    REQUIRE(w);
    CHECK_OK(append_str(s, w, "x"));
    counting_on();
    CHECK_OK(s->ops->seg_publish_lac(w, 0));
    CHECK(atomic_load(&n_fdatasync) == 1 && atomic_load(&n_fsync) == 1);
    /* Another 8 MiB: the next publish syncs it again. */
    static char big[1 << 20];
    struct iovec v = {big, sizeof big};
    for (int i = 0; i < 8; i++)
        CHECK_OK(s->ops->seg_append(w, &v, 1));
    atomic_store(&n_fdatasync, 0);
    CHECK_OK(s->ops->seg_publish_lac(w, 8));
    CHECK(atomic_load(&n_fdatasync) == 1);
    CHECK_OK(s->ops->seg_publish_lac(w, 9));
    CHECK(atomic_load(&n_fdatasync) == 1);
    os_sys_reset();
    s->ops->seg_writer_close(w);
    s->ops->close(s);
}

TEST(list_ignores_other_names)
{
    const char *root = new_root("stlist");
    storage *s = NULL;
    CHECK_OK(storage_local_open(root, NULL, &s));
    REQUIRE(s);
    st_writer *w = NULL;
    CHECK_OK(s->ops->seg_create(s, 20, 3, 1, &w));
    if (w)
        s->ops->seg_writer_close(w);
    char path[2048];
    snprintf(path, sizeof path, "%s/20/abc", root);
    CHECK(mkdir(path, 0755) == 0);
    snprintf(path, sizeof path, "%s/20/007", root);
    CHECK(mkdir(path, 0755) == 0);
    snprintf(path, sizeof path, "%s/20/-1", root);
    CHECK(mkdir(path, 0755) == 0);
    snprintf(path, sizeof path, "%s/20/12x", root);
    CHECK(write_file(path, "", 0) == 0);
    int64_t *ids = NULL;
    size_t n = 0;
    CHECK_OK(s->ops->seg_list(s, 20, &ids, &n));
    CHECK(n == 1 && ids && ids[0] == 3);
    free(ids);
    /* Negative ids are refused. */
    CHECK_RC(WP_EINVAL, s->ops->seg_create(s, -1, 0, 1, &w));
    CHECK_RC(WP_EINVAL, s->ops->seg_create(s, 1, -2, 1, &w));
    s->ops->close(s);
}

TEST(lac_file_validation)
{
    const char *root = new_root("stlac");
    storage *s = NULL;
    CHECK_OK(storage_local_open(root, NULL, &s));
    REQUIRE(s);
    st_writer *w = NULL;
    CHECK_OK(s->ops->seg_create(s, 2, 0, 1, &w));
    REQUIRE(w);
    st_reader *r = NULL;
    CHECK_OK(s->ops->seg_open_read(s, 2, 0, &r));
    REQUIRE(r);
    char path[2048];
    snprintf(path, sizeof path, "%s/2/0/lac", root);
    int64_t lac = 0;

    /* Halves that disagree (torn write) are ignored. */
    unsigned char b[16] = {7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    CHECK(write_file(path, b, 16) == 0);
    CHECK_OK(s->ops->seg_read_lac(r, &lac));
    CHECK(lac == -1);
    /* A short file too. */
    CHECK(write_file(path, b, 8) == 0);
    lac = 0;
    CHECK_OK(s->ops->seg_read_lac(r, &lac));
    CHECK(lac == -1);
    /* Consistent halves with an impossible value are corrupt. */
    int64_t bad = -5;
    for (int i = 0; i < 8; i++) {
        b[i] = (unsigned char)((uint64_t)bad >> (8 * i));
        b[8 + i] = (unsigned char)(~(uint64_t)bad >> (8 * i));
    }
    CHECK(write_file(path, b, 16) == 0);
    CHECK_RC(WP_ECORRUPT, s->ops->seg_read_lac(r, &lac));
    /* The writer's publish overwrites in place: the open reader sees it. */
    CHECK_OK(s->ops->seg_publish_lac(w, 77));
    CHECK_OK(s->ops->seg_read_lac(r, &lac));
    CHECK(lac == 77);
    CHECK_RC(WP_EINVAL, s->ops->seg_publish_lac(w, -2));
    s->ops->seg_reader_close(r);
    s->ops->seg_writer_close(w);
    s->ops->close(s);
}

TEST(fence_epochs)
{
    const char *root = new_root("stfence");
    storage *s = NULL;
    CHECK_OK(storage_local_open(root, NULL, &s));
    REQUIRE(s);
    st_writer *w = NULL, *w5 = NULL;
    CHECK_OK(s->ops->seg_create(s, 3, 0, 5, &w));
    REQUIRE(w);
    CHECK_OK(append_str(s, w, "abc"));
    /* Only a higher epoch fences (storage.h: "writers of an epoch < epoch"). */
    CHECK_OK(s->ops->seg_fence(s, 3, 0, 5));
    CHECK_OK(append_str(s, w, "def"));
    CHECK_OK(s->ops->seg_fence(s, 3, 0, 6));
    CHECK_RC(WP_EFENCED, append_str(s, w, "ghi"));
    CHECK(strstr(wp_errmsg(), "fenced") != NULL);
    s->ops->seg_writer_close(w);

    /* A reopened writer of a higher epoch than the fence appends, until a
     * fence above it arrives; the fence fd is read again on each append. */
    CHECK_OK(s->ops->seg_reopen(s, 3, 0, 8, 6, &w5));
    REQUIRE(w5);
    CHECK_OK(append_str(s, w5, "jkl"));
    CHECK_RC(WP_EFENCED, s->ops->seg_fence(s, 3, 0, 7)); /* owned by 8 */
    CHECK_OK(append_str(s, w5, "mno"));
    CHECK_OK(s->ops->seg_fence(s, 3, 0, 9));
    CHECK_RC(WP_EFENCED, append_str(s, w5, "pqr"));
    CHECK_RC(WP_EFENCED, s->ops->seg_publish_lac(w5, 1));
    s->ops->seg_writer_close(w5);

    /* A fence file still being written (short) stops writers; a fence
     * over it stores the epoch. */
    CHECK_OK(s->ops->seg_create(s, 3, 1, 1, &w));
    REQUIRE(w);
    char path[2048];
    snprintf(path, sizeof path, "%s/3/1/fence", root);
    CHECK(write_file(path, "\0\0\0", 3) == 0);
    CHECK_RC(WP_EFENCED, append_str(s, w, "x"));
    s->ops->seg_writer_close(w);
    CHECK_OK(s->ops->seg_fence(s, 3, 1, 2));
    unsigned char b[16];
    size_t len = 0;
    CHECK(read_file(path, b, sizeof b, &len) == 0);
    CHECK(len == 8 && b[0] == 2 && b[1] == 0);
    s->ops->close(s);
}

TEST(reopen_shorter_data)
{
    const char *root = new_root("streopen");
    storage *s = NULL;
    CHECK_OK(storage_local_open(root, NULL, &s));
    REQUIRE(s);
    st_writer *w = NULL;
    CHECK_OK(s->ops->seg_create(s, 1, 1, 1, &w));
    REQUIRE(w);
    CHECK_OK(append_str(s, w, "0123456789"));
    s->ops->seg_writer_close(w);
    w = NULL;
    CHECK_RC(WP_ECORRUPT, s->ops->seg_reopen(s, 1, 1, 1, 11, &w));
    CHECK(strstr(wp_errmsg(), "/1/1") != NULL);
    CHECK(w == NULL);
    /* Data untouched; a reopen at 4 cuts the file on disk. */
    char path[2048];
    snprintf(path, sizeof path, "%s/1/1/data", root);
    unsigned char b[32];
    size_t len = 0;
    CHECK(read_file(path, b, sizeof b, &len) == 0 && len == 10);
    CHECK_OK(s->ops->seg_reopen(s, 1, 1, 1, 4, &w));
    CHECK(read_file(path, b, sizeof b, &len) == 0 && len == 4 && memcmp(b, "0123", 4) == 0);
    if (w)
        s->ops->seg_writer_close(w);
    /* Missing segment: ENOENT naming it. */
    st_reader *r = NULL;
    CHECK_RC(WP_ENOENT, s->ops->seg_open_read(s, 1, 2, &r));
    CHECK(strstr(wp_errmsg(), "/1/2") != NULL);
    s->ops->close(s);
}

/* A segment directory left without data (a creation cut short by a crash)
 * counts as missing for fence and read, and can be created. */
TEST(leftover_segment_dir)
{
    const char *root = new_root("stleft");
    storage *s = NULL;
    CHECK_OK(storage_local_open(root, NULL, &s));
    REQUIRE(s);
    char path[2048];
    snprintf(path, sizeof path, "%s/6", root);
    CHECK(mkdir(path, 0755) == 0);
    snprintf(path, sizeof path, "%s/6/2", root);
    CHECK(mkdir(path, 0755) == 0);
    CHECK_RC(WP_ENOENT, s->ops->seg_fence(s, 6, 2, 3));
    snprintf(path, sizeof path, "%s/6/2/fence", root);
    CHECK(!exists(path));
    st_reader *r = NULL;
    CHECK_RC(WP_ENOENT, s->ops->seg_open_read(s, 6, 2, &r));
    st_writer *w = NULL;
    CHECK_OK(s->ops->seg_create(s, 6, 2, 3, &w));
    if (w) {
        CHECK_OK(append_str(s, w, "x"));
        s->ops->seg_writer_close(w);
    }
    CHECK_OK(s->ops->seg_fence(s, 6, 2, 3));
    s->ops->close(s);
}

/* -- concurrency: readers follow a writer in another thread ---------------- */

#define CONC_APPENDS 300
#define CONC_SEED 77u

typedef struct {
    storage *s;
    st_writer *w;
    uint64_t final_size;
    atomic_int errors;
} conc_ctx;

static size_t conc_len(int i) { return 1 + (size_t)((i * 7919) % 3000); }

static void *conc_writer(void *arg)
{
    conc_ctx *c = arg;
    uint64_t off = 0;
    for (int i = 0; i < CONC_APPENDS; i++) {
        size_t n = conc_len(i);
        if (sc_append(c->s, c->w, n, CONC_SEED, off, 1 + i % 3) != 0)
            atomic_fetch_add(&c->errors, 1);
        off += n;
    }
    return NULL;
}

static void *conc_reader(void *arg)
{
    conc_ctx *c = arg;
    st_reader *r = NULL;
    if (c->s->ops->seg_open_read(c->s, 1, 0, &r) != 0) {
        atomic_fetch_add(&c->errors, 1);
        return NULL;
    }
    unsigned char *buf = malloc(1 << 16);
    uint64_t pos = 0;
    int64_t deadline = wp__now_ns() + 20LL * 1000000000;
    while (buf && pos < c->final_size && wp__now_ns() < deadline) {
        uint64_t size = 0;
        if (c->s->ops->seg_size(r, &size) != 0 || size < pos) {
            atomic_fetch_add(&c->errors, 1);
            break;
        }
        size_t want = size - pos > (1 << 16) ? (1 << 16) : (size_t)(size - pos);
        size_t got = 0;
        if (c->s->ops->seg_read(r, pos, buf, want, &got) != 0 || got != want) {
            atomic_fetch_add(&c->errors, 1);
            break;
        }
        for (size_t i = 0; i < got; i++)
            if (buf[i] != sc_byte(CONC_SEED, pos + i)) {
                atomic_fetch_add(&c->errors, 1);
                goto out;
            }
        pos += got;
    }
out:
    if (pos != c->final_size)
        atomic_fetch_add(&c->errors, 1);
    free(buf);
    c->s->ops->seg_reader_close(r);
    return NULL;
}

TEST(concurrent_readers)
{
    conc_ctx c = {.s = open_fresh(NULL)};
    REQUIRE(c.s);
    CHECK_OK(c.s->ops->seg_create(c.s, 1, 0, 1, &c.w));
    REQUIRE(c.w);
    for (int i = 0; i < CONC_APPENDS; i++)
        c.final_size += conc_len(i);
    pthread_t tw, tr[2];
    CHECK(pthread_create(&tw, NULL, conc_writer, &c) == 0);
    for (int i = 0; i < 2; i++)
        CHECK(pthread_create(&tr[i], NULL, conc_reader, &c) == 0);
    pthread_join(tw, NULL);
    for (int i = 0; i < 2; i++)
        pthread_join(tr[i], NULL);
    CHECK(atomic_load(&c.errors) == 0);
    CHECK(c.s->ops->seg_writer_size(c.w) == c.final_size);
    c.s->ops->seg_writer_close(c.w);
    c.s->ops->close(c.s);
}

/* -- concurrency: a fence lands while another thread appends --------------- */

typedef struct {
    storage *s;
    st_writer *w;
    atomic_int fence_done;  /* set by the fencer once seg_fence returned */
    atomic_int ok_appends;
    atomic_int late_ok;     /* appends begun after the fence that succeeded */
    atomic_int bad_rc;      /* failures other than WP_EFENCED */
    uint64_t acked_bytes;
} fence_ctx;

static void *fence_appender(void *arg)
{
    fence_ctx *c = arg;
    int64_t deadline = wp__now_ns() + 10LL * 1000000000;
    while (wp__now_ns() < deadline) {
        int fenced_before = atomic_load(&c->fence_done);
        int rc = sc_append(c->s, c->w, 100, 5, c->acked_bytes, 1);
        if (rc == 0) {
            c->acked_bytes += 100;
            atomic_fetch_add(&c->ok_appends, 1);
            if (fenced_before)
                atomic_fetch_add(&c->late_ok, 1);
        } else {
            if (rc != WP_EFENCED)
                atomic_fetch_add(&c->bad_rc, 1);
            break;
        }
    }
    return NULL;
}

TEST(fence_while_appending)
{
    fence_ctx c = {.s = open_fresh(NULL)};
    REQUIRE(c.s);
    CHECK_OK(c.s->ops->seg_create(c.s, 2, 0, 1, &c.w));
    REQUIRE(c.w);
    pthread_t t;
    REQUIRE(pthread_create(&t, NULL, fence_appender, &c) == 0);
    int64_t deadline = wp__now_ns() + 10LL * 1000000000;
    while (atomic_load(&c.ok_appends) < 30 && wp__now_ns() < deadline)
        sched_yield();
    CHECK_OK(c.s->ops->seg_fence(c.s, 2, 0, 2));
    atomic_store(&c.fence_done, 1);
    pthread_join(t, NULL);
    CHECK(atomic_load(&c.ok_appends) >= 30);
    CHECK(atomic_load(&c.late_ok) == 0);
    CHECK(atomic_load(&c.bad_rc) == 0);
    /* Every acked byte is there for the fencer to recover. */
    st_reader *r = NULL;
    CHECK_OK(c.s->ops->seg_open_read(c.s, 2, 0, &r));
    if (r) {
        uint64_t size = 0;
        CHECK_OK(c.s->ops->seg_size(r, &size));
        CHECK(size >= c.acked_bytes);
        CHECK(sc_matches(c.s, r, 0, (size_t)c.acked_bytes, 5, 0));
        c.s->ops->seg_reader_close(r);
    }
    c.s->ops->seg_writer_close(c.w);
    c.s->ops->close(c.s);
}

int main(void)
{
    storage_conformance_run(open_fresh, NULL);
    RUN(layout_on_disk);
    RUN(root_handling);
    RUN(one_fdatasync_per_append);
    RUN(directories_fsynced);
    RUN(existing_dirs_synced_again);
    RUN(lac_file_synced);
    RUN(list_ignores_other_names);
    RUN(lac_file_validation);
    RUN(fence_epochs);
    RUN(reopen_shorter_data);
    RUN(leftover_segment_dir);
    RUN(concurrent_readers);
    RUN(fence_while_appending);
    cleanup_roots();
    return test_done();
}
