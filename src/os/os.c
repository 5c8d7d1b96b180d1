/* os.c — the syscall table and the durable file-system helpers (see os.h).
 *
 * Every syscall that can fail in an interesting way (I/O, space, sync) goes
 * through os_sys so fault tests can replace it. A few read-only calls that
 * the table does not carry (lstat, fdopendir/readdir) are made directly. */
#include "os/os.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/err.h"
#include "base/metrics.h"
#include "base/limits.h"

/* iovecs handed to one pwritev call (the kernel's IOV_MAX is 1024). */
#define OS_IOV_BATCH 1024
/* iovecs copied on the stack before falling back to the heap. */
#define OS_IOV_STACK 64
/* Depth of nested directories os_rm_rf descends into. */
#define OS_RM_DEPTH_MAX 32
/* Entries os_list_dir returns (a log holds at most this many segments). */
#define OS_LIST_DIR_MAX (1 << 24)

static int sys_open(const char *path, int flags, mode_t mode) { return open(path, flags, mode); }

static const os_syscalls os_sys_default = {
    .open = sys_open,
    .close = close,
    .pwritev = pwritev,
    .pread = pread,
    .fdatasync = fdatasync,
    .fsync = fsync,
    .ftruncate = ftruncate,
    .mkdir = mkdir,
    .unlink = unlink,
    .rmdir = rmdir,
    .rename = rename,
};

os_syscalls os_sys = {
    .open = sys_open,
    .close = close,
    .pwritev = pwritev,
    .pread = pread,
    .fdatasync = fdatasync,
    .fsync = fsync,
    .ftruncate = ftruncate,
    .mkdir = mkdir,
    .unlink = unlink,
    .rmdir = rmdir,
    .rename = rename,
};

void os_sys_reset(void) { os_sys = os_sys_default; }

/* ---- writes and reads --------------------------------------------------- */

int os_pwritev_full(int fd, const struct iovec *iov, int iovcnt, off_t off, const char *path)
{
    if (iovcnt < 0 || (iovcnt > 0 && !iov) || off < 0)
        return wp__err(WP_EINVAL, "pwritev %s: bad arguments", path ? path : "");
    struct iovec stack[OS_IOV_STACK];
    struct iovec *v = stack;
    if (iovcnt > OS_IOV_STACK) {
        v = malloc((size_t)iovcnt * sizeof *v);
        if (!v)
            return wp__err(WP_ENOMEM, "pwritev %s: out of memory", path ? path : "");
    }
    /* Copy, dropping empty entries, so progress can be applied in place. */
    int n = 0;
    for (int i = 0; i < iovcnt; i++)
        if (iov[i].iov_len > 0)
            v[n++] = iov[i];

    int rc = 0, i = 0;
    while (i < n) {
        int cnt = n - i < OS_IOV_BATCH ? n - i : OS_IOV_BATCH;
        ssize_t w = os_sys.pwritev(fd, v + i, cnt, off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            rc = wp__err_sys(errno, "pwritev", path);
            goto out_free;
        }
        if (w == 0) {
            rc = wp__err(WP_EIO, "pwritev %s: write made no progress at offset %lld", path ? path : "",
                         (long long)off);
            goto out_free;
        }
        off += w;
        size_t left = (size_t)w;
        while (i < n && left >= v[i].iov_len)
            left -= v[i++].iov_len;
        if (left > 0) {
            v[i].iov_base = (char *)v[i].iov_base + left;
            v[i].iov_len -= left;
        }
    }
out_free:
    if (v != stack)
        free(v);
    return rc;
}

int os_pread_full(int fd, void *buf, size_t n, off_t off, size_t *got, const char *path)
{
    size_t done = 0;
    *got = 0;
    if (off < 0)
        return wp__err(WP_EINVAL, "pread %s: negative offset", path ? path : "");
    while (done < n) {
        ssize_t r = os_sys.pread(fd, (char *)buf + done, n - done, off + (off_t)done);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return wp__err_sys(errno, "pread", path);
        }
        if (r == 0)
            break; /* end of file */
        done += (size_t)r;
    }
    *got = done;
    return 0;
}

/* ---- sync --------------------------------------------------------------- */

int os_fdatasync(int fd, const char *path)
{
    /* Never retried: after a failed sync the dirty pages may be gone. */
    int64_t t0 = wp__now_ns();
    int r = os_sys.fdatasync(fd), e = errno;
    wp__hist_observe(H_FDATASYNC, wp__now_ns() - t0);
    if (r != 0)
        return wp__err_sys(e, "fdatasync", path);
    return 0;
}

int os_fsync_path(const char *path)
{
    int fd = os_sys.open(path, O_RDONLY | O_CLOEXEC, 0);
    if (fd < 0)
        return wp__err_sys(errno, "open", path);
    int rc = 0;
    int64_t t0 = wp__now_ns();
    int r = os_sys.fsync(fd), e = errno;
    wp__hist_observe(H_FDATASYNC, wp__now_ns() - t0);
    if (r != 0)
        rc = wp__err_sys(e, "fsync", path);
    os_sys.close(fd);
    return rc;
}

/* Writes the parent directory of path into out ("." if it has none). */
static int parent_of(const char *path, char *out, size_t cap)
{
    size_t len = strlen(path);
    while (len > 1 && path[len - 1] == '/')
        len--;
    while (len > 0 && path[len - 1] != '/')
        len--;
    while (len > 1 && path[len - 1] == '/')
        len--;
    if (len == 0) {
        out[0] = '.';
        out[1] = '\0';
        return 0;
    }
    if (len >= cap)
        return wp__err(WP_EINVAL, "path too long: %s", path);
    memcpy(out, path, len);
    out[len] = '\0';
    return 0;
}

static int fsync_parent(const char *path)
{
    char parent[WP_PATH_MAX];
    int rc = parent_of(path, parent, sizeof parent);
    if (rc)
        return rc;
    return os_fsync_path(parent);
}

/* ---- directories -------------------------------------------------------- */

/* mkdir of one directory; *created tells whether it is new. An existing
 * non-directory is ENOTDIR. Errors keep errno for the caller. */
static int mkdir_one(const char *path, bool *created)
{
    *created = false;
    if (os_sys.mkdir(path, 0755) == 0) {
        *created = true;
        return 0;
    }
    if (errno != EEXIST)
        return -1;
    struct stat st;
    if (stat(path, &st) != 0)
        return -1;
    if (!S_ISDIR(st.st_mode)) {
        errno = ENOTDIR;
        return -1;
    }
    return 0;
}

int os_mkdir_p(const char *path)
{
    size_t len = strlen(path);
    while (len > 1 && path[len - 1] == '/')
        len--;
    if (len == 0)
        return wp__err(WP_EINVAL, "mkdir: empty path");
    if (len >= WP_PATH_MAX)
        return wp__err(WP_EINVAL, "mkdir: path too long: %.64s...", path);
    char buf[WP_PATH_MAX];

    /* Every component, from the top, is created if missing and then synced
     * into its parent, whether it is new or not: a directory that exists
     * may come from a create that crashed before its parent's fsync, and
     * would vanish at the next power loss (fsync of a clean directory is
     * cheap). */
    size_t end = 0;
    while (end < len) {
        while (end < len && path[end] == '/')
            end++;
        while (end < len && path[end] != '/')
            end++;
        memcpy(buf, path, end);
        buf[end] = '\0';
        bool created;
        if (mkdir_one(buf, &created) != 0)
            return wp__err_sys(errno, "mkdir", buf);
        if (strcmp(buf, "/") != 0) {
            int rc = fsync_parent(buf);
            if (rc)
                return rc;
        }
    }
    return 0;
}

static int list_dir_fd(int fd, const char *path, char ***names, size_t *n)
{
    DIR *d = fdopendir(fd);
    if (!d) {
        int e = errno;
        os_sys.close(fd);
        return wp__err_sys(e, "fdopendir", path);
    }
    char **v = NULL;
    size_t cnt = 0, cap = 0;
    int rc = 0;
    for (;;) {
        errno = 0;
        struct dirent *de = readdir(d);
        if (!de) {
            if (errno)
                rc = wp__err_sys(errno, "readdir", path);
            break;
        }
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (cnt == OS_LIST_DIR_MAX) {
            rc = wp__err(WP_ETOOBIG, "readdir %s: more than %d entries", path, OS_LIST_DIR_MAX);
            break;
        }
        if (cnt == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            char **nv = realloc(v, ncap * sizeof *nv);
            if (!nv) {
                rc = wp__err(WP_ENOMEM, "readdir %s: out of memory", path);
                break;
            }
            v = nv;
            cap = ncap;
        }
        v[cnt] = strdup(de->d_name);
        if (!v[cnt]) {
            rc = wp__err(WP_ENOMEM, "readdir %s: out of memory", path);
            break;
        }
        cnt++;
    }
    closedir(d); /* closes fd */
    if (rc) {
        os_free_names(v, cnt);
        return rc;
    }
    *names = v;
    *n = cnt;
    return 0;
}

int os_list_dir(const char *path, char ***names, size_t *n)
{
    *names = NULL;
    *n = 0;
    int fd = os_sys.open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
    if (fd < 0)
        return wp__err_sys(errno, "open", path);
    return list_dir_fd(fd, path, names, n);
}

void os_free_names(char **names, size_t n)
{
    if (!names)
        return;
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

/* Removes path (file or tree) without syncing; missing is fine. */
static int rm_tree(const char *path, int depth)
{
    struct stat st;
    if (lstat(path, &st) != 0) {
        if (errno == ENOENT)
            return 0;
        return wp__err_sys(errno, "lstat", path);
    }
    if (!S_ISDIR(st.st_mode)) {
        if (os_sys.unlink(path) != 0 && errno != ENOENT)
            return wp__err_sys(errno, "unlink", path);
        return 0;
    }
    if (depth >= OS_RM_DEPTH_MAX)
        return wp__err(WP_EINVAL, "remove %s: deeper than %d levels", path, OS_RM_DEPTH_MAX);

    char **names = NULL;
    size_t n = 0;
    int rc = os_list_dir(path, &names, &n);
    if (rc == WP_ENOENT)
        return 0; /* removed concurrently */
    if (rc)
        return rc;
    char *child = malloc(WP_PATH_MAX);
    if (!child) {
        rc = wp__err(WP_ENOMEM, "remove %s: out of memory", path);
        goto out_free_names;
    }
    for (size_t i = 0; i < n; i++) {
        int len = snprintf(child, WP_PATH_MAX, "%s/%s", path, names[i]);
        if (len < 0 || len >= WP_PATH_MAX) {
            rc = wp__err(WP_EINVAL, "remove %s: path too long", path);
            goto out_free_child;
        }
        rc = rm_tree(child, depth + 1);
        if (rc)
            goto out_free_child;
    }
    if (os_sys.rmdir(path) != 0 && errno != ENOENT)
        rc = wp__err_sys(errno, "rmdir", path);
out_free_child:
    free(child);
out_free_names:
    os_free_names(names, n);
    return rc;
}

int os_rm_rf(const char *path)
{
    int rc = rm_tree(path, 0);
    if (rc)
        return rc;
    /* Also when path was already missing: an earlier removal may have been
     * cut short before its parent was synced. A missing parent is fine. */
    rc = fsync_parent(path);
    if (rc == WP_ENOENT) {
        wp__err_clear();
        return 0;
    }
    return rc;
}
