#include "testutil.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "quorum_env.h"

bool test_on_quorum(void) { return quorum_env_on(); }

/* Whether kv chooses the storage type itself (then it keeps it). */
static bool sets_storage_type(const char *const *kv)
{
    for (; kv && kv[0]; kv += 2)
        if (strcmp(kv[0], "storage.type") == 0)
            return true;
    return false;
}

wp_client *test_client_open(const char *dir, const char *const *kv)
{
    wp_config *cfg;
    if (wp_config_default(&cfg))
        return NULL;
    wp_config_set(cfg, "storage.root", dir);
    if (quorum_env_on() && !sets_storage_type(kv)) {
        char nodes[256];
        if (quorum_env_nodes(dir, nodes, sizeof nodes) != 0 ||
            wp_config_set(cfg, "storage.type", "quorum") ||
            wp_config_set(cfg, "quorum.nodes", nodes)) {
            fprintf(stderr, "quorum storage for %s: %s\n", dir, wp_errmsg());
            wp_config_free(cfg);
            return NULL;
        }
    }
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
