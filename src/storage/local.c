/* local.c — the local file-system storage backend (docs/format.md §9).
 *
 * Segment s of log l is the directory <root>/<l>/<s>/ holding
 *   data   the segment bytes, appended with pwritev + fdatasync;
 *   fence  8 bytes, little-endian i64 epoch of the segment's owner: written
 *          by the creator before `data` exists, raised by each fencer;
 *   lac    16 bytes, little-endian i64 lac then its bitwise NOT (a hint).
 *
 * Fencing: an append is written and fdatasync'd, then the writer looks at
 * the fence file (one pread() of the fd it keeps). If it holds an epoch
 * above the writer's, or is still being written, the append fails with
 * WP_EFENCED. Because the check follows the sync, an append that returns 0
 * was durable before any fence that could stop it, so whoever fences and
 * then reads sees its bytes.
 *
 * One rule for every owner change (the storage conformance suite tests it
 * on every backend): nobody acts on a segment owned by a higher epoch.
 * Creating, fencing and reopening take an exclusive flock on the fence
 * file, read the owner epoch under it and refuse (WP_EFENCED) if it is
 * above theirs. A reopened writer (a recoverer cutting a torn tail and
 * writing the footer) writes at explicit offsets, so each of its appends
 * also takes the lock and checks the owner before writing: an outdated
 * recoverer can neither cut nor overwrite what a newer one wrote.
 *
 * After any error a writer is failed for good (fsyncgate): later calls
 * return the same code without touching the disk. All syscalls go through
 * os_sys (src/os/os.h) except fstat and flock, which the table lacks. */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/err.h"
#include "base/limits.h"
#include "os/os.h"
#include "storage/storage.h"

#define FENCE_BYTES 8
#define LAC_BYTES 16
/* Times a reader re-reads a lac file whose halves disagree (a write in
 * progress) before reporting "no lac" (-1). */
#define LAC_READ_TRIES 8
/* The lac file is written after every append without a sync, and synced
 * once this many bytes were appended since its last sync (and when it is
 * created), so after a power loss it is at most this far behind. */
#define LAC_SYNC_BYTES (8 * WP_MiB)

typedef struct {
    storage base;
    char *root;
} local_storage;

/* The paths of one segment, in one allocation. */
typedef struct {
    char *dir, *data, *fence, *lac;
} seg_paths;

struct st_writer {
    seg_paths p;
    int64_t epoch;
    uint64_t size;  /* bytes durably appended by this writer (and before) */
    int data_fd;
    int fence_fd;   /* -1 only for a segment created before fence files were */
    bool reopened;  /* appends take the fence lock and check before writing */
    int lac_fd;     /* -1 until the first publish */
    uint64_t lac_synced_size; /* w->size when the lac file was last synced */
    int64_t lac_pub;          /* the value last written to it (INT64_MIN: none yet) */
    int failed;     /* 0, or the WP_E* code every later call returns */
    const wp__logger *logger;
};

struct st_reader {
    seg_paths p;
    int data_fd;
    int lac_fd; /* -1 until a lac file has been seen */
};

/* ---- helpers ------------------------------------------------------------ */

static void put_le64(unsigned char *b, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        b[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get_le64(const unsigned char *b)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)b[i] << (8 * i);
    return v;
}

static void close_fd(int *fd)
{
    if (*fd >= 0)
        os_sys.close(*fd);
    *fd = -1;
}

static void paths_free(seg_paths *p)
{
    free(p->dir); /* one block holds all four strings */
    memset(p, 0, sizeof *p);
}

static int check_ids(int64_t log_id, int64_t seg_id)
{
    if (log_id < 0 || seg_id < 0)
        return wp__err(WP_EINVAL, "storage: negative id (log %lld, segment %lld)", (long long)log_id,
                       (long long)seg_id);
    return 0;
}

static int paths_make(const local_storage *ls, int64_t log_id, int64_t seg_id, seg_paths *p)
{
    memset(p, 0, sizeof *p);
    int rc = check_ids(log_id, seg_id);
    if (rc)
        return rc;
    char dir[WP_PATH_MAX];
    int n = snprintf(dir, sizeof dir, "%s/%lld/%lld", ls->root, (long long)log_id, (long long)seg_id);
    if (n < 0 || (size_t)n + sizeof "/fence" > sizeof dir)
        return wp__err(WP_EINVAL, "storage: path too long under %s", ls->root);
    size_t dl = (size_t)n + 1;
    char *blk = malloc(dl * 4 + sizeof "/data" + sizeof "/fence" + sizeof "/lac");
    if (!blk)
        return wp__err(WP_ENOMEM, "storage: out of memory");
    p->dir = blk;
    memcpy(p->dir, dir, dl);
    p->data = p->dir + dl;
    sprintf(p->data, "%s/data", dir);
    p->fence = p->data + dl + sizeof "/data";
    sprintf(p->fence, "%s/fence", dir);
    p->lac = p->fence + dl + sizeof "/fence";
    sprintf(p->lac, "%s/lac", dir);
    return 0;
}

static int log_dir(const local_storage *ls, int64_t log_id, char *out, size_t cap)
{
    if (log_id < 0)
        return wp__err(WP_EINVAL, "storage: negative log id %lld", (long long)log_id);
    int n = snprintf(out, cap, "%s/%lld", ls->root, (long long)log_id);
    if (n < 0 || (size_t)n >= cap)
        return wp__err(WP_EINVAL, "storage: path too long under %s", ls->root);
    return 0;
}

static int file_size(int fd, const char *path, uint64_t *size)
{
    struct stat st;
    if (fstat(fd, &st) != 0)
        return wp__err_sys(errno, "fstat", path);
    *size = (uint64_t)st.st_size;
    return 0;
}

/* ---- writers ------------------------------------------------------------ */

static st_writer *writer_new(const local_storage *ls, int64_t epoch, seg_paths *p)
{
    st_writer *w = calloc(1, sizeof *w);
    if (!w)
        return NULL;
    w->p = *p;
    memset(p, 0, sizeof *p);
    w->epoch = epoch;
    w->data_fd = w->fence_fd = w->lac_fd = -1;
    w->lac_pub = INT64_MIN;
    w->logger = ls->base.logger;
    return w;
}

static void local_writer_close(st_writer *w)
{
    if (!w)
        return;
    close_fd(&w->data_fd);
    close_fd(&w->fence_fd);
    close_fd(&w->lac_fd);
    paths_free(&w->p);
    free(w);
}

/* Marks the writer failed for good with rc (whose detail is already set). */
static int writer_fail(st_writer *w, int rc)
{
    w->failed = rc;
    wp__log(w->logger, WP_LOG_WARN, "storage: writer of %s failed for good: %s", w->p.dir,
            wp_errmsg());
    return rc;
}

static int writer_failed_again(const st_writer *w)
{
    if (w->failed == WP_EFENCED)
        return wp__err(WP_EFENCED, "segment %s: writer (epoch %lld) was fenced", w->p.dir,
                       (long long)w->epoch);
    return wp__err(w->failed, "segment %s: writer failed earlier (%s); open a new one", w->p.dir,
                   wp_strerror(w->failed));
}

/* ---- the fence file ----------------------------------------------------- */

static int lock_exclusive(int fd, const char *path)
{
    int r;
    do {
        r = flock(fd, LOCK_EX);
    } while (r != 0 && errno == EINTR);
    if (r != 0)
        return wp__err_sys(errno, "flock", path);
    return 0;
}

/* The owner epoch in a fence file; *epoch = -1 if it is empty or short (a
 * write that was cut, or a file a fencer created for a segment that did
 * not exist yet). */
static int fence_read(int fd, const char *path, int64_t *epoch)
{
    unsigned char b[FENCE_BYTES];
    size_t got;
    int rc = os_pread_full(fd, b, sizeof b, 0, &got, path);
    if (rc)
        return rc;
    *epoch = got < FENCE_BYTES ? -1 : (int64_t)get_le64(b);
    return 0;
}

/* Raises the owner epoch to `epoch` (the caller holds the lock and checked
 * it is not above) and syncs it. */
static int fence_raise(int fd, const char *path, int64_t cur, int64_t epoch)
{
    if (cur < epoch) {
        unsigned char b[FENCE_BYTES];
        put_le64(b, (uint64_t)epoch);
        struct iovec v = {.iov_base = b, .iov_len = sizeof b};
        int rc = os_pwritev_full(fd, &v, 1, 0, path);
        if (rc)
            return rc;
    }
    /* Synced even when already high enough: the write may not have been. */
    return os_fdatasync(fd, path);
}

static int fence_refuse(const seg_paths *p, int64_t owner, int64_t epoch, const char *what)
{
    return wp__err(WP_EFENCED, "segment %s: owned by epoch %lld, cannot %s it at epoch %lld", p->dir,
                   (long long)owner, what, (long long)epoch);
}

/* Opens (creating if missing) and locks the fence file, and reads the
 * owner epoch. Refuses if it is above `epoch`. */
static int fence_take(const seg_paths *p, int64_t epoch, const char *what, int *fd_out,
                      int64_t *owner)
{
    int fd = os_sys.open(p->fence, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        if (errno == ENOENT)
            return wp__err(WP_ENOENT, "%s: segment %s does not exist", what, p->dir);
        return wp__err_sys(errno, "open", p->fence);
    }
    int rc = lock_exclusive(fd, p->fence); /* serializes owners; close unlocks */
    if (rc == WP_OK)
        rc = fence_read(fd, p->fence, owner);
    if (rc == WP_OK && *owner > epoch)
        rc = fence_refuse(p, *owner, epoch, what);
    if (rc) {
        os_sys.close(fd);
        return rc;
    }
    *fd_out = fd;
    return 0;
}

/* 0 if the fence file holds no epoch above the writer's, WP_EFENCED if it
 * does (or is being written), WP_ECLOSED if the segment was deleted, another
 * WP_E* code on I/O errors. */
static int fence_check(st_writer *w)
{
    if (w->fence_fd < 0) { /* a segment from before fence files: look again */
        int fd = os_sys.open(w->p.fence, O_RDONLY | O_CLOEXEC, 0);
        if (fd < 0 && errno != ENOENT)
            return wp__err_sys(errno, "open", w->p.fence);
        w->fence_fd = fd;
    }
    if (w->fence_fd >= 0) {
        int64_t fenced;
        int rc = fence_read(w->fence_fd, w->p.fence, &fenced);
        if (rc)
            return rc;
        if (fenced < 0)
            return wp__err(WP_EFENCED, "segment %s: being fenced (short fence file)", w->p.dir);
        if (fenced > w->epoch)
            return wp__err(WP_EFENCED, "segment %s: fenced by epoch %lld (writer epoch %lld)",
                           w->p.dir, (long long)fenced, (long long)w->epoch);
    }
    /* A deleted segment (its log deleted, or GC) keeps its open files: an
     * append there would be acknowledged into nothing. */
    struct stat st;
    if (fstat(w->data_fd, &st) != 0)
        return wp__err_sys(errno, "fstat", w->p.data);
    if (st.st_nlink == 0)
        return wp__err(WP_ECLOSED, "segment %s was deleted", w->p.dir);
    return 0;
}

/* ---- segments whose writer failed ---------------------------------------- */

/* After a failed write or fdatasync, the page cache may hold bytes that
 * never reached the disk, and a new fd's fdatasync does not report the old
 * error (Linux errseq: it was seen), so a recoverer would trust them. A
 * failed writer therefore leaves `failed` in the segment directory: 16
 * bytes, its last durable length (i64 LE) and the bitwise NOT of it. It is
 * not synced: it only has to outlive the page cache that could lie (after
 * a reboot the disk tells the truth). The next fence or reopen, in any
 * process, cuts the data back to that length under the fence lock, syncs
 * it, and removes the file (docs/format.md section 9). */
static void failed_path(const st_writer *w, char *out, size_t cap)
{
    snprintf(out, cap, "%s/failed", w->p.dir);
}

static void poison_add(const st_writer *w)
{
    char path[WP_PATH_MAX + 16];
    failed_path(w, path, sizeof path);
    int fd = os_sys.open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        wp__log(w->logger, WP_LOG_ERROR, "storage: cannot record the failed writer of %s (%s): "
                "a recovery before a reboot may trust unsynced bytes", w->p.dir, strerror(errno));
        return;
    }
    unsigned char b[LAC_BYTES];
    put_le64(b, w->size);
    put_le64(b + 8, ~(uint64_t)w->size);
    struct iovec v = {.iov_base = b, .iov_len = sizeof b};
    if (os_sys.pwritev(fd, &v, 1, 0) != (ssize_t)sizeof b) /* a short one reads as torn */
        wp__log(w->logger, WP_LOG_ERROR, "storage: cannot record the failed writer of %s",
                w->p.dir);
    os_sys.close(fd);
}

/* If a failed writer left its mark, cuts data_fd to the durable length it
 * recorded, syncs, and removes the mark (the caller holds the fence lock). */
static int poison_cut(const seg_paths *p, int data_fd)
{
    char path[WP_PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/failed", p->dir);
    int fd = os_sys.open(path, O_RDONLY | O_CLOEXEC, 0);
    if (fd < 0)
        return errno == ENOENT ? 0 : wp__err_sys(errno, "open", path);
    unsigned char b[LAC_BYTES];
    size_t got = 0;
    int rc = os_pread_full(fd, b, sizeof b, 0, &got, path);
    os_sys.close(fd);
    if (rc)
        return rc;
    uint64_t durable = get_le64(b), size = 0;
    if (got == LAC_BYTES && durable == ~get_le64(b + 8)) { /* else torn: nothing to go by */
        if ((rc = file_size(data_fd, p->data, &size)))
            return rc;
        if (size > durable && os_sys.ftruncate(data_fd, (off_t)durable) != 0)
            return wp__err_sys(errno, "ftruncate", p->data);
    }
    if ((rc = os_fdatasync(data_fd, p->data)))
        return rc;
    if (os_sys.unlink(path) != 0 && errno != ENOENT)
        return wp__err_sys(errno, "unlink", path);
    return os_fsync_path(p->dir);
}

/* Creates `data` under the fence lock: the fence file gets the creator's
 * epoch first (synced), so a fencer or recoverer of a lower epoch that
 * finds the data refuses to touch it. WP_EEXIST if data exists. */
static int create_locked(st_writer *w, int64_t epoch)
{
    int64_t owner;
    int rc = fence_take(&w->p, INT64_MAX, "create", &w->fence_fd, &owner);
    if (rc)
        return rc;
    int fd = os_sys.open(w->p.data, O_RDONLY | O_CLOEXEC, 0);
    if (fd >= 0) {
        os_sys.close(fd);
        return wp__err(WP_EEXIST, "segment %s already exists", w->p.dir);
    }
    if (errno != ENOENT)
        return wp__err_sys(errno, "open", w->p.data);
    if (owner > epoch) /* a creation of a higher epoch was cut short */
        return fence_refuse(&w->p, owner, epoch, "create");
    rc = fence_raise(w->fence_fd, w->p.fence, owner, epoch);
    if (rc)
        return rc;
    /* O_APPEND: on Linux a pwritev on such an fd appends at the end whatever
     * its offset. A writer that has been fenced but has not noticed yet can
     * then only add bytes after what the fencer committed (index + footer
     * at a fixed length), never overwrite them. The fencer (seg_reopen)
     * writes at explicit offsets without O_APPEND. */
    w->data_fd = os_sys.open(w->p.data, O_RDWR | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0644);
    if (w->data_fd < 0) {
        if (errno == EEXIST)
            return wp__err(WP_EEXIST, "segment %s already exists", w->p.dir);
        return wp__err_sys(errno, "open", w->p.data);
    }
    return os_fsync_path(w->p.dir); /* the fence and data entries */
}

static int local_seg_create(storage *s, int64_t log_id, int64_t seg_id, int64_t epoch, st_writer **out)
{
    local_storage *ls = (local_storage *)s;
    *out = NULL;
    seg_paths p;
    int rc = paths_make(ls, log_id, seg_id, &p);
    if (rc)
        return rc;
    /* Creates the log and segment directories, each synced into its parent. */
    rc = os_mkdir_p(p.dir);
    if (rc) {
        paths_free(&p);
        return rc;
    }
    st_writer *w = writer_new(ls, epoch, &p);
    if (!w) {
        paths_free(&p);
        return wp__err(WP_ENOMEM, "segment: out of memory");
    }
    rc = create_locked(w, epoch);
    if (w->fence_fd >= 0)
        flock(w->fence_fd, LOCK_UN); /* the fd stays: appends read it */
    if (rc) {
        local_writer_close(w);
        return rc;
    }
    *out = w;
    return 0;
}

/* Opens data, cuts it to len and syncs; the caller holds the fence lock. */
static int reopen_data(st_writer *w, uint64_t len)
{
    w->data_fd = os_sys.open(w->p.data, O_RDWR | O_CLOEXEC, 0);
    if (w->data_fd < 0) {
        if (errno == ENOENT)
            return wp__err(WP_ENOENT, "segment %s does not exist", w->p.dir);
        return wp__err_sys(errno, "open", w->p.data);
    }
    int rc = poison_cut(&w->p, w->data_fd);
    if (rc)
        return rc;
    uint64_t size = 0;
    rc = file_size(w->data_fd, w->p.data, &size);
    if (rc)
        return rc;
    if (size < len)
        return wp__err(WP_ECORRUPT, "segment %s: data is %llu bytes, shorter than reopen length %llu",
                       w->p.dir, (unsigned long long)size, (unsigned long long)len);
    if (size > len && os_sys.ftruncate(w->data_fd, (off_t)len) != 0)
        return wp__err_sys(errno, "ftruncate", w->p.data);
    /* Also makes durable what the previous writer may not have synced. */
    rc = os_fdatasync(w->data_fd, w->p.data);
    if (rc)
        return rc;
    w->size = len;
    return 0;
}

static int local_seg_reopen(storage *s, int64_t log_id, int64_t seg_id, int64_t epoch, uint64_t len,
                            st_writer **out)
{
    local_storage *ls = (local_storage *)s;
    *out = NULL;
    if (len > (uint64_t)WP_SEGMENT_BYTES_MAX)
        return wp__err(WP_EINVAL, "reopen: length %llu above the segment limit",
                       (unsigned long long)len);
    seg_paths p;
    int rc = paths_make(ls, log_id, seg_id, &p);
    if (rc)
        return rc;
    st_writer *w = writer_new(ls, epoch, &p);
    if (!w) {
        paths_free(&p);
        return wp__err(WP_ENOMEM, "reopen: out of memory");
    }
    /* A stale writer must not cut a newer writer's data: the owner check
     * and the cut happen under the lock. Reopening fences too. */
    int64_t owner;
    rc = fence_take(&w->p, epoch, "reopen", &w->fence_fd, &owner);
    if (rc)
        goto out_close;
    w->reopened = true;
    rc = fence_raise(w->fence_fd, w->p.fence, owner, epoch);
    if (rc == WP_OK)
        rc = reopen_data(w, len);
    flock(w->fence_fd, LOCK_UN);
    if (rc)
        goto out_close;
    *out = w;
    return 0;
out_close:
    local_writer_close(w);
    return rc;
}

static int local_seg_append(st_writer *w, const struct iovec *iov, int iovcnt)
{
    if (w->failed)
        return writer_failed_again(w);
    if (iovcnt < 0 || (iovcnt > 0 && !iov))
        return writer_fail(w, wp__err(WP_EINVAL, "append %s: bad iovec", w->p.data));
    uint64_t total = 0;
    for (int i = 0; i < iovcnt; i++) {
        total += iov[i].iov_len;
        if (total > (uint64_t)WP_SEGMENT_BYTES_MAX)
            break;
    }
    if (total > (uint64_t)WP_SEGMENT_BYTES_MAX - w->size)
        return writer_fail(w, wp__err(WP_ETOOBIG, "append %s: segment would exceed %lld bytes",
                                      w->p.data, (long long)WP_SEGMENT_BYTES_MAX));
    int rc;
    if (w->reopened) { /* explicit offsets: check first, under the lock */
        if ((rc = lock_exclusive(w->fence_fd, w->p.fence)) != 0)
            return writer_fail(w, rc);
        rc = fence_check(w);
        if (rc) {
            flock(w->fence_fd, LOCK_UN);
            return writer_fail(w, rc);
        }
    }
    if (total > 0) {
        rc = os_pwritev_full(w->data_fd, iov, iovcnt, (off_t)w->size, w->p.data);
        if (rc == WP_OK)
            rc = os_fdatasync(w->data_fd, w->p.data);
        if (rc) {
            char why[512]; /* poison_add must not replace the detail */
            snprintf(why, sizeof why, "%s", wp_errmsg());
            poison_add(w); /* bytes past w->size are not to be trusted */
            rc = wp__err(rc, "%s", why);
            if (w->reopened)
                flock(w->fence_fd, LOCK_UN);
            return writer_fail(w, rc);
        }
    }
    if (w->reopened)
        flock(w->fence_fd, LOCK_UN);
    rc = fence_check(w);
    if (rc)
        return writer_fail(w, rc);
    w->size += total;
    return 0;
}

static int local_seg_publish_lac(st_writer *w, int64_t lac)
{
    if (w->failed)
        return writer_failed_again(w);
    if (lac < -1)
        return wp__err(WP_EINVAL, "publish lac %s: bad lac %lld", w->p.lac, (long long)lac);
    bool created = false;
    if (w->lac_fd < 0) {
        w->lac_fd = os_sys.open(w->p.lac, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        if (w->lac_fd < 0)
            return writer_fail(w, wp__err_sys(errno, "open", w->p.lac));
        created = true;
    }
    unsigned char b[LAC_BYTES];
    put_le64(b, (uint64_t)lac);
    put_le64(b + 8, ~(uint64_t)lac);
    struct iovec v = {.iov_base = b, .iov_len = sizeof b};
    int rc = os_pwritev_full(w->lac_fd, &v, 1, 0, w->p.lac);
    if (rc)
        return writer_fail(w, rc);
    /* Not synced on every append (that would double the syncs); synced when
     * created, so that it survives a power loss, and then every
     * LAC_SYNC_BYTES of data, so that it lags the truth by at most that.
     * Also when it goes down (a completion below the last entry written,
     * before the footer: a footer below a hint that came back after a
     * power loss would read as damage). */
    bool down = w->lac_pub != INT64_MIN && lac < w->lac_pub;
    w->lac_pub = lac;
    if (created || down || w->size - w->lac_synced_size >= LAC_SYNC_BYTES) {
        rc = os_fdatasync(w->lac_fd, w->p.lac);
        if (rc == WP_OK && created)
            rc = os_fsync_path(w->p.dir);
        if (rc)
            return writer_fail(w, rc);
        w->lac_synced_size = w->size;
    }
    return 0;
}

static uint64_t local_seg_writer_size(st_writer *w) { return w->size; }

/* ---- fencing ------------------------------------------------------------ */

static int local_seg_fence(storage *s, int64_t log_id, int64_t seg_id, int64_t epoch)
{
    local_storage *ls = (local_storage *)s;
    seg_paths p;
    int rc = paths_make(ls, log_id, seg_id, &p);
    if (rc)
        return rc;
    int fence_fd = -1, data_fd = -1;
    int64_t owner;
    /* A directory without data is a creation cut short: still missing. */
    data_fd = os_sys.open(p.data, O_RDONLY | O_CLOEXEC, 0);
    if (data_fd < 0) {
        rc = errno == ENOENT ? wp__err(WP_ENOENT, "fence: segment %s does not exist", p.dir)
                             : wp__err_sys(errno, "open", p.data);
        goto out_free_paths;
    }
    os_sys.close(data_fd);
    rc = fence_take(&p, epoch, "fence", &fence_fd, &owner);
    if (rc)
        goto out_free_paths;
    data_fd = os_sys.open(p.data, O_RDWR | O_CLOEXEC, 0); /* deleted meanwhile? */
    if (data_fd < 0) {
        if (errno == ENOENT)
            rc = wp__err(WP_ENOENT, "fence: segment %s does not exist", p.dir);
        else
            rc = wp__err_sys(errno, "open", p.data);
        goto out_close;
    }
    rc = poison_cut(&p, data_fd);
    if (rc == WP_OK)
        rc = fence_raise(fence_fd, p.fence, owner, epoch);
    if (rc == WP_OK)
        rc = os_fsync_path(p.dir);
out_close:
    if (data_fd >= 0)
        os_sys.close(data_fd);
    os_sys.close(fence_fd);
out_free_paths:
    paths_free(&p);
    return rc;
}

/* ---- readers ------------------------------------------------------------ */

static void local_reader_close(st_reader *r)
{
    if (!r)
        return;
    close_fd(&r->data_fd);
    close_fd(&r->lac_fd);
    paths_free(&r->p);
    free(r);
}

static int local_seg_open_read(storage *s, int64_t log_id, int64_t seg_id, st_reader **out)
{
    local_storage *ls = (local_storage *)s;
    *out = NULL;
    st_reader *r = calloc(1, sizeof *r);
    if (!r)
        return wp__err(WP_ENOMEM, "open reader: out of memory");
    r->data_fd = r->lac_fd = -1;
    int rc = paths_make(ls, log_id, seg_id, &r->p);
    if (rc)
        goto out_close;
    r->data_fd = os_sys.open(r->p.data, O_RDONLY | O_CLOEXEC, 0);
    if (r->data_fd < 0) {
        if (errno == ENOENT)
            rc = wp__err(WP_ENOENT, "segment %s does not exist", r->p.dir);
        else
            rc = wp__err_sys(errno, "open", r->p.data);
        goto out_close;
    }
    *out = r;
    return 0;
out_close:
    local_reader_close(r);
    return rc;
}

static int local_seg_read(st_reader *r, uint64_t off, void *buf, size_t len, size_t *got)
{
    *got = 0;
    if (off > (uint64_t)WP_SEGMENT_BYTES_MAX)
        return 0; /* past any possible end */
    return os_pread_full(r->data_fd, buf, len, (off_t)off, got, r->p.data);
}

static int local_seg_size(st_reader *r, uint64_t *size)
{
    return file_size(r->data_fd, r->p.data, size);
}

static int local_seg_read_lac(st_reader *r, int64_t *lac)
{
    *lac = -1;
    if (r->lac_fd < 0) {
        r->lac_fd = os_sys.open(r->p.lac, O_RDONLY | O_CLOEXEC, 0);
        if (r->lac_fd < 0) {
            if (errno == ENOENT)
                return 0;
            return wp__err_sys(errno, "open", r->p.lac);
        }
    }
    for (int i = 0; i < LAC_READ_TRIES; i++) {
        unsigned char b[LAC_BYTES];
        size_t got;
        int rc = os_pread_full(r->lac_fd, b, sizeof b, 0, &got, r->p.lac);
        if (rc)
            return rc;
        if (got == 0)
            return 0; /* created, not yet written */
        uint64_t v = get_le64(b), nv = get_le64(b + 8);
        if (got == LAC_BYTES && v == ~nv) {
            if ((int64_t)v < -1)
                return wp__err(WP_ECORRUPT, "lac %s: bad value %lld", r->p.lac, (long long)(int64_t)v);
            *lac = (int64_t)v;
            return 0;
        }
        sched_yield(); /* a write in progress: look again */
    }
    return 0; /* halves keep disagreeing: ignored (format.md §9) */
}

/* ---- deletion and listing ----------------------------------------------- */

static int local_seg_delete(storage *s, int64_t log_id, int64_t seg_id)
{
    seg_paths p;
    int rc = paths_make((local_storage *)s, log_id, seg_id, &p);
    if (rc)
        return rc;
    rc = os_rm_rf(p.dir);
    paths_free(&p);
    return rc;
}

static int local_log_delete(storage *s, int64_t log_id)
{
    char dir[WP_PATH_MAX];
    int rc = log_dir((local_storage *)s, log_id, dir, sizeof dir);
    if (rc)
        return rc;
    return os_rm_rf(dir);
}

/* Parses a canonical non-negative decimal ("0", "17"; not "007", "-1"). */
static bool parse_id(const char *s, int64_t *out)
{
    if (!*s || (s[0] == '0' && s[1]) || strlen(s) > 18)
        return false;
    int64_t v = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return false;
        v = v * 10 + (*s - '0');
    }
    *out = v;
    return true;
}

static int cmp_id(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static int local_seg_list(storage *s, int64_t log_id, int64_t **ids, size_t *n)
{
    *ids = NULL;
    *n = 0;
    char dir[WP_PATH_MAX];
    int rc = log_dir((local_storage *)s, log_id, dir, sizeof dir);
    if (rc)
        return rc;
    char **names;
    size_t cnt;
    rc = os_list_dir(dir, &names, &cnt);
    if (rc == WP_ENOENT) {
        wp__err_clear();
        return 0; /* no segment was ever created */
    }
    if (rc)
        return rc;
    int64_t *v = malloc((cnt ? cnt : 1) * sizeof *v);
    if (!v) {
        rc = wp__err(WP_ENOMEM, "list %s: out of memory", dir);
        goto out_free_names;
    }
    size_t k = 0;
    for (size_t i = 0; i < cnt; i++)
        if (parse_id(names[i], &v[k]))
            k++;
    qsort(v, k, sizeof *v, cmp_id);
    *ids = v;
    *n = k;
out_free_names:
    os_free_names(names, cnt);
    return rc;
}

/* ---- the backend -------------------------------------------------------- */

static void local_close(storage *s)
{
    local_storage *ls = (local_storage *)s;
    if (!ls)
        return;
    free(ls->root);
    free(ls);
}

static const struct storage_ops local_ops = {
    .name = "local",
    .appends_atomic = false,
    .seg_create = local_seg_create,
    .seg_reopen = local_seg_reopen,
    .seg_append = local_seg_append,
    .seg_publish_lac = local_seg_publish_lac,
    .seg_writer_size = local_seg_writer_size,
    .seg_writer_close = local_writer_close,
    .seg_fence = local_seg_fence,
    .seg_open_read = local_seg_open_read,
    .seg_read = local_seg_read,
    .seg_size = local_seg_size,
    .seg_read_lac = local_seg_read_lac,
    .seg_reader_close = local_reader_close,
    .seg_delete = local_seg_delete,
    .log_delete = local_log_delete,
    .seg_list = local_seg_list,
    .close = local_close,
};

int storage_local_owner(storage *s, int64_t log_id, int64_t seg_id, int64_t *epoch)
{
    seg_paths p;
    int rc = paths_make((local_storage *)s, log_id, seg_id, &p);
    if (rc)
        return rc;
    *epoch = -1;
    int fd = os_sys.open(p.fence, O_RDONLY | O_CLOEXEC, 0);
    if (fd < 0)
        rc = errno == ENOENT ? 0 : wp__err_sys(errno, "open", p.fence);
    else {
        rc = fence_read(fd, p.fence, epoch);
        os_sys.close(fd);
    }
    paths_free(&p);
    return rc;
}

int storage_local_open(const char *root, const wp__logger *logger, storage **out)
{
    *out = NULL;
    if (!root || !*root)
        return wp__err(WP_EINVAL, "storage: empty root path");
    size_t len = strlen(root);
    while (len > 1 && root[len - 1] == '/')
        len--;
    /* Room for "/<log id>/<segment id>/fence" under the root. */
    if (len + 2 * 21 + sizeof "/fence" >= WP_PATH_MAX)
        return wp__err(WP_EINVAL, "storage: root path too long: %.64s...", root);
    local_storage *ls = calloc(1, sizeof *ls);
    if (!ls)
        return wp__err(WP_ENOMEM, "storage: out of memory");
    ls->root = strndup(root, len);
    if (!ls->root) {
        free(ls);
        return wp__err(WP_ENOMEM, "storage: out of memory");
    }
    if (len == 1 && ls->root[0] == '/')
        ls->root[0] = '\0'; /* "/" + "/1/2" would give "//1/2" */
    int rc = os_mkdir_p(*ls->root ? ls->root : "/");
    if (rc) {
        local_close(&ls->base);
        return rc;
    }
    ls->base.ops = &local_ops;
    ls->base.logger = logger;
    *out = &ls->base;
    return 0;
}
