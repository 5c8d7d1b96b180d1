#include "base/err.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "base/limits.h"

static _Thread_local char errmsg[WP_ERRMSG_MAX];

const char *wp_strerror(int rc)
{
    switch (rc) {
    case WP_OK:
        return "success";
#define WP_ERR_CASE(name, val, msg) \
    case WP_##name:                 \
        return msg;
        WP_ERRNO_MAP(WP_ERR_CASE)
#undef WP_ERR_CASE
    default:
        return "unknown error";
    }
}

const char *wp_errmsg(void) { return errmsg; }

void wp__err_clear(void) { errmsg[0] = '\0'; }

int wp__err(int rc, const char *fmt, ...)
{
    /* Format into a copy: callers may pass wp_errmsg() as an argument to
     * wrap the previous detail. */
    char buf[WP_ERRMSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    memcpy(errmsg, buf, sizeof errmsg);
    return rc;
}

int wp__errno_to_wp(int e)
{
    switch (e) {
    case 0:
        return WP_OK;
    case ENOENT:
        return WP_ENOENT;
    case EEXIST:
        return WP_EEXIST;
    case ENOSPC:
    case EDQUOT:
        return WP_ENOSPC;
    case ENOMEM:
        return WP_ENOMEM;
    case EINVAL:
    case ENAMETOOLONG:
        return WP_EINVAL;
    case EAGAIN:
        return WP_EAGAIN;
    case ETIMEDOUT:
        return WP_ETIMEDOUT;
    case EFBIG:
        return WP_ETOOBIG;
    default:
        return WP_EIO;
    }
}

int wp__err_sys(int e, const char *what, const char *path)
{
    return wp__err(wp__errno_to_wp(e), "%s %s: %s", what, path ? path : "", strerror(e));
}

void wp__log(const wp__logger *lg, int level, const char *fmt, ...)
{
    if (!lg || !lg->fn || level < lg->min_level)
        return;
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    lg->fn(lg->arg, level, buf);
}

int64_t wp__now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int64_t wp__wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}
