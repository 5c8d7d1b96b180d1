/* test.h — a tiny test harness. Each test binary ends by printing
 * "N passed, N failed" and exits non-zero if anything failed.
 *
 *   TEST(name) { CHECK(x == 1); CHECK_OK(wp_call()); CHECK_RC(WP_EINVAL, f()); }
 *   int main(void) { RUN(name); return test_done(); }
 * WP_TEST_ONLY=name runs only that test of a binary (for debugging).
 */
#ifndef WP_TEST_H
#define WP_TEST_H

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "woodpecker.h"

static int test_passed, test_failed, test_cur_failed;
static const char *test_cur_name;

#define TEST(name) static void name(void)
#define RUN(name)                                                              \
    do {                                                                       \
        test_cur_name = #name;                                                 \
        test_cur_failed = 0;                                                   \
        if (getenv("WP_TEST_ONLY") && strcmp(getenv("WP_TEST_ONLY"), #name))  \
            break;                                                             \
        name();                                                                \
        if (test_cur_failed) {                                                 \
            test_failed++;                                                     \
            fprintf(stderr, "FAIL %s\n", #name);                               \
        } else {                                                               \
            test_passed++;                                                     \
            fprintf(stderr, "ok   %s\n", #name);                               \
        }                                                                      \
    } while (0)

#define CHECK(cond)                                                            \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "  %s:%d: %s: CHECK(%s) failed\n", __FILE__,       \
                    __LINE__, test_cur_name, #cond);                           \
            test_cur_failed = 1;                                               \
        }                                                                      \
    } while (0)

#define CHECK_RC(want, expr)                                                   \
    do {                                                                       \
        int rc_ = (expr);                                                      \
        if (rc_ != (want)) {                                                   \
            fprintf(stderr, "  %s:%d: %s: %s = %d (%s; %s), want %d (%s)\n",   \
                    __FILE__, __LINE__, test_cur_name, #expr, rc_,             \
                    wp_strerror(rc_), wp_errmsg(), (want), wp_strerror(want)); \
            test_cur_failed = 1;                                               \
        }                                                                      \
    } while (0)

#define CHECK_OK(expr) CHECK_RC(0, expr)

/* Stops the current test (use after a failed precondition). */
#define REQUIRE(cond)                                                          \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "  %s:%d: %s: REQUIRE(%s) failed\n", __FILE__,     \
                    __LINE__, test_cur_name, #cond);                           \
            test_cur_failed = 1;                                               \
            return;                                                            \
        }                                                                      \
    } while (0)

static inline int test_done(void)
{
    printf("%d passed, %d failed\n", test_passed, test_failed);
    return test_failed ? 1 : 0;
}

/* A fresh empty directory under $WP_TEST_TMP (or /tmp) for this test;
 * returns a static buffer valid until the next call. */
static inline const char *test_tmpdir(const char *tag)
{
    static char buf[1024];
    const char *base = getenv("WP_TEST_TMP");
    if (!base || !*base)
        base = "/tmp";
    mkdir(base, 0755);
    snprintf(buf, sizeof buf, "%s/%s.%d.XXXXXX", base, tag, (int)getpid());
    if (!mkdtemp(buf)) {
        perror("mkdtemp");
        exit(2);
    }
    return buf;
}

#endif
