/* err.h — error reporting: thread-local detail messages and errno mapping. */
#ifndef WP_BASE_ERR_H
#define WP_BASE_ERR_H

#include "woodpecker.h"

/* Records a detail message for wp_errmsg() and returns rc (a WP_E* code).
 * Use as: return wp__err(WP_EINVAL, "flush.max_bytes: %s", why); */
int wp__err(int rc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Maps an errno value to a WP_E* code (EIO, ENOSPC, ENOENT, ...). */
int wp__errno_to_wp(int e);
/* wp__err with "<what> <path>: <strerror(e)>" and the mapped code. */
int wp__err_sys(int e, const char *what, const char *path);
/* Clears the thread's detail message. */
void wp__err_clear(void);

/* Log callback carried by the client (see wp_config_set_log). */
typedef struct {
    wp_log_fn fn;
    void *arg;
    int min_level;
} wp__logger;
void wp__log(const wp__logger *lg, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Monotonic and wall clocks. */
int64_t wp__now_ns(void);  /* CLOCK_MONOTONIC */
int64_t wp__wall_ms(void); /* unix ms */

#endif
