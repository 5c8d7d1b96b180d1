/* os.h — the OS layer: every syscall the storage layer makes goes through
 * the table os_sys, so fault tests can replace entries (EIO, ENOSPC, short
 * writes) without touching the code under test. Helpers here keep the
 * failing syscall, errno and path in the wp_errmsg() detail. */
#ifndef WP_OS_OS_H
#define WP_OS_OS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

typedef struct {
    int (*open)(const char *path, int flags, mode_t mode);
    int (*close)(int fd);
    ssize_t (*pwritev)(int fd, const struct iovec *iov, int iovcnt, off_t off);
    ssize_t (*pread)(int fd, void *buf, size_t n, off_t off);
    int (*fdatasync)(int fd);
    int (*fsync)(int fd);
    int (*ftruncate)(int fd, off_t len);
    int (*mkdir)(const char *path, mode_t mode);
    int (*unlink)(const char *path);
    int (*rmdir)(const char *path);
    int (*rename)(const char *from, const char *to);
} os_syscalls;

/* The live table. Tests may overwrite entries; os_sys_reset restores. */
extern os_syscalls os_sys;
void os_sys_reset(void);

/* Writes all of iov at off, looping over short writes (a short write that
 * makes no progress is EIO). Returns 0 or a WP_E* code with detail. */
int os_pwritev_full(int fd, const struct iovec *iov, int iovcnt, off_t off, const char *path);
/* Reads up to n bytes at off, looping; *got < n only at end of file. */
int os_pread_full(int fd, void *buf, size_t n, off_t off, size_t *got, const char *path);
/* fdatasync / fsync with detail on failure. */
int os_fdatasync(int fd, const char *path);
int os_fsync_path(const char *path); /* opens, fsyncs, closes (for directories) */
/* mkdir -p; every directory of the path, new or existing, is made durable
 * in its parent (parent fsync'd), so a crash cannot leave a half-synced chain. */
int os_mkdir_p(const char *path);
/* Removes a directory tree (missing is fine); parent fsync'd. */
int os_rm_rf(const char *path);
/* Directory entries (names, excluding . and ..); free with os_free_names. */
int os_list_dir(const char *path, char ***names, size_t *n);
void os_free_names(char **names, size_t n);

#endif
