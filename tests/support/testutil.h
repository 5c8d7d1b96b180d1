/* testutil.h — helpers shared by the test binaries (linked as wptest). */
#ifndef WP_TESTUTIL_H
#define WP_TESTUTIL_H

#include "woodpecker.h"

/* Opens a client on the embedded default rooted at dir, with extra
 * key/value overrides (kv: NULL-terminated list of pairs, may be NULL).
 * Prints the reason and returns NULL on failure. */
wp_client *test_client_open(const char *dir, const char *const *kv);

/* Sleeps ms milliseconds; CLOCK_MONOTONIC milliseconds now. */
void test_sleep_ms(int ms);
int64_t test_now_ms(void);

#endif
