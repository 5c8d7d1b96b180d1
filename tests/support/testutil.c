#include "testutil.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>
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

/* One HTTP request on a fresh connection: the whole answer in out. */
int test_http(const char *addr, const char *request, char *out, size_t cap)
{
    char host[64];
    snprintf(host, sizeof host, "%s", addr);
    char *colon = strrchr(host, ':');
    if (!colon)
        return -1;
    *colon = '\0';
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(colon + 1))};
    inet_pton(AF_INET, host, &sa.sin_addr);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    size_t n = strlen(request), off = 0;
    while (off < n) {
        ssize_t w = send(fd, request + off, n - off, MSG_NOSIGNAL);
        if (w <= 0)
            break;
        off += (size_t)w;
    }
    size_t got = 0;
    for (;;) {
        ssize_t r = recv(fd, out + got, cap - 1 - got, 0);
        if (r <= 0 || got + (size_t)r >= cap - 1) {
            if (r > 0)
                got += (size_t)r;
            break;
        }
        got += (size_t)r;
    }
    out[got] = '\0';
    close(fd);
    return (int)got;
}

/* The value of the sample line that starts with key (name{labels}). */
double test_metric_sample(const char *text, const char *key)
{
    char pat[200];
    snprintf(pat, sizeof pat, "\n%s ", key);
    const char *at = strstr(text, pat);
    return at ? strtod(at + strlen(pat), NULL) : -1;
}
