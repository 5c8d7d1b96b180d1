/* testutil.h — helpers shared by the test binaries (linked as wptest). */
#ifndef WP_TESTUTIL_H
#define WP_TESTUTIL_H

#include "woodpecker.h"

#include <stdbool.h>
#include <stdio.h>

/* Opens a client on the embedded default rooted at dir, with extra
 * key/value overrides (kv: NULL-terminated list of pairs, may be NULL).
 * With WP_TEST_STORAGE=quorum (test_on_quorum), a client whose kv does not
 * choose storage.type gets storage.type quorum on 3 LogStore servers
 * started for dir (quorum_env.h). Prints the reason and returns NULL on
 * failure. */
wp_client *test_client_open(const char *dir, const char *const *kv);

/* True when the clients of test_client_open run on storage.type quorum. */
bool test_on_quorum(void);

/* In a TEST of a binary that includes test.h, for what cannot apply on
 * quorum (e.g. reading or damaging local segment files, or a feature
 * quorum storage lacks), never silently: true on quorum, after printing
 * that the step is skipped and why (`if (QUORUM_SKIPS(why)) return;`
 * skips the rest of a test). */
#define QUORUM_SKIPS(reason)                                                                  \
    (test_on_quorum() &&                                                                      \
     (fprintf(stderr, "  SKIP (part of %s) on storage.type quorum: %s\n", test_cur_name,      \
              reason),                                                                        \
      true))

/* Sleeps ms milliseconds; CLOCK_MONOTONIC milliseconds now. */
void test_sleep_ms(int ms);
int64_t test_now_ms(void);

/* One HTTP request (the whole request text) on a fresh connection to
 * addr ("127.0.0.1:PORT"): the whole answer, NUL-terminated, in out[cap];
 * its length, or -1 if it cannot connect. */
int test_http(const char *addr, const char *request, char *out, size_t cap);
/* In Prometheus text: the value of the sample line starting with key
 * (name{labels} as printed), or -1 if there is none. */
double test_metric_sample(const char *text, const char *key);

#endif
