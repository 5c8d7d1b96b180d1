#include "testutil.h"

#include <stdio.h>
#include <time.h>

wp_client *test_client_open(const char *dir, const char *const *kv)
{
    wp_config *cfg;
    if (wp_config_default(&cfg))
        return NULL;
    wp_config_set(cfg, "storage.root", dir);
    for (; kv && kv[0]; kv += 2)
        if (wp_config_set(cfg, kv[0], kv[1])) {
            fprintf(stderr, "config %s=%s: %s\n", kv[0], kv[1], wp_errmsg());
            wp_config_free(cfg);
            return NULL;
        }
    wp_client *c = NULL;
    if (wp_client_open(cfg, &c))
        fprintf(stderr, "client open: %s\n", wp_errmsg());
    wp_config_free(cfg);
    return c;
}

void test_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

int64_t test_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
