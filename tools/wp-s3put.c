/* wp-s3put — the raw limit of an S3 endpoint for bench/s3.sh: THREADS
 * threads PUT objects of SIZE bytes (conditional, like Woodpecker's block
 * uploads) for SECONDS, then it prints one JSON line: MiB/s, PUTs/s, PUT
 * latency p50/p99. With THREADS 1 the PUTs go one at a time, each on the
 * connection the last one left open: p50/p99 are then the latency of a
 * single PUT (bench/s3.sh's low-load case compares an append's ack with
 * it). `wp-s3put count PREFIX` prints the number of objects under PREFIX
 * (PUTs per GB of a Woodpecker run).
 *
 *   wp-s3put put ENV_FILE SIZE THREADS SECONDS
 *   wp-s3put count ENV_FILE PREFIX
 *   wp-s3put delete ENV_FILE PREFIX   (the test server keeps objects in memory)
 * ENV_FILE: the file scripts/rgw.sh writes (WP_S3_ENDPOINT=..., ...). */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "storage/s3_client.h"

#define THREADS_MAX 64
#define PUTS_MAX 1000000

static char endpoint[256], ak[128], sk[128], bucket[64], region[64];

static int load_env(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = 0;
        struct {
            const char *k;
            char *v;
            size_t n;
        } vars[] = {{"WP_S3_ENDPOINT=", endpoint, sizeof endpoint},
                    {"WP_S3_ACCESS_KEY=", ak, sizeof ak},
                    {"WP_S3_SECRET_KEY=", sk, sizeof sk},
                    {"WP_S3_BUCKET=", bucket, sizeof bucket},
                    {"WP_S3_REGION=", region, sizeof region}};
        for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
            if (!strncmp(line, vars[i].k, strlen(vars[i].k)) &&
                snprintf(vars[i].v, vars[i].n, "%s", line + strlen(vars[i].k)) >= (int)vars[i].n)
                *vars[i].v = '\0'; /* too long: treated as missing */
    }
    fclose(f);
    return *endpoint && *bucket ? 0 : -1;
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

typedef struct {
    s3_client *c;
    size_t size;
    int64_t deadline;
    int id;
    int64_t *lat;
    int n, failed;
    char prefix[64];
} worker;

static void *put_main(void *arg)
{
    worker *w = arg;
    char *buf = malloc(w->size);
    if (!buf)
        return NULL;
    for (size_t i = 0; i < w->size; i++)
        buf[i] = (char)(i * 131 + (size_t)w->id);
    while (now_ns() < w->deadline && w->n < PUTS_MAX / THREADS_MAX) {
        char key[256];
        snprintf(key, sizeof key, "%s/%d/%08d.blk", w->prefix, w->id, w->n);
        struct iovec iov = {buf, w->size};
        int64_t t0 = now_ns();
        if (s3_put(w->c, key, &iov, 1, S3_PUT_IF_ABSENT)) {
            w->failed++;
            continue;
        }
        w->lat[w->n++] = now_ns() - t0;
    }
    free(buf);
    return NULL;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static int cmd_put(s3_client *c, size_t size, int threads, int seconds)
{
    worker w[THREADS_MAX];
    pthread_t th[THREADS_MAX];
    char prefix[64];
    snprintf(prefix, sizeof prefix, "rawput-%lld", (long long)now_ns());
    int64_t t0 = now_ns();
    for (int i = 0; i < threads; i++) {
        w[i] = (worker){.c = c, .size = size, .deadline = t0 + seconds * 1000000000LL, .id = i};
        snprintf(w[i].prefix, sizeof w[i].prefix, "%s", prefix);
        w[i].lat = malloc(sizeof(int64_t) * (PUTS_MAX / THREADS_MAX));
        pthread_create(&th[i], NULL, put_main, &w[i]);
    }
    int64_t *all = malloc(sizeof(int64_t) * PUTS_MAX);
    int n = 0, failed = 0;
    for (int i = 0; i < threads; i++) {
        pthread_join(th[i], NULL);
        memcpy(all + n, w[i].lat, sizeof(int64_t) * (size_t)w[i].n);
        n += w[i].n;
        failed += w[i].failed;
        free(w[i].lat);
    }
    double secs = (double)(now_ns() - t0) / 1e9;
    qsort(all, (size_t)n, sizeof *all, cmp_i64);
    double p50 = n ? (double)all[n / 2] / 1e6 : 0, p99 = n ? (double)all[(n * 99) / 100] / 1e6 : 0;
    printf("{\"size\":%zu,\"threads\":%d,\"puts\":%d,\"failed\":%d,\"seconds\":%.3f,"
           "\"mib_per_s\":%.3f,\"puts_per_s\":%.1f,\"put_p50_ms\":%.3f,\"put_p99_ms\":%.3f,"
           "\"prefix\":\"%s\"}\n",
           size, threads, n, failed, secs, (double)n * (double)size / secs / 1048576.0, n / secs,
           p50, p99, prefix);
    free(all);
    return failed ? 1 : 0;
}

static int count_cb(void *arg, const char *key, uint64_t size)
{
    (void)key;
    (void)size;
    (*(long *)arg)++;
    return 0;
}

typedef struct {
    s3_client *c;
    long n;
} del_ctx;

static int delete_cb(void *arg, const char *key, uint64_t size)
{
    (void)size;
    del_ctx *d = arg;
    d->n++;
    return s3_delete(d->c, key);
}

int main(int argc, char **argv)
{
    if (argc < 4 || load_env(argv[2])) {
        fprintf(stderr, "usage: wp-s3put put ENV_FILE SIZE THREADS SECONDS  (THREADS 1: one PUT "
                        "at a time)\n"
                        "       wp-s3put count ENV_FILE PREFIX\n"
                        "       wp-s3put delete ENV_FILE PREFIX\n");
        return 2;
    }
    s3_options o = {.endpoint = endpoint, .bucket = bucket, .region = region,
                    .access_key = ak, .secret_key = sk, .path_style = true,
                    .max_retries = 8};
    s3_client *c;
    if (s3_client_open(&o, &c)) {
        fprintf(stderr, "wp-s3put: error: %s\n", wp_errmsg());
        return 1;
    }
    int rc;
    if (!strcmp(argv[1], "count")) {
        long n = 0;
        rc = s3_list_all(c, argv[3], NULL, 1000, 100000000, count_cb, &n);
        if (!rc)
            printf("%ld\n", n);
    } else if (!strcmp(argv[1], "delete")) {
        del_ctx d = {c, 0};
        rc = s3_list_all(c, argv[3], NULL, 1000, 100000000, delete_cb, &d);
        if (!rc)
            printf("%ld\n", d.n);
    } else if (!strcmp(argv[1], "put") && argc == 6) {
        long size = atol(argv[3]), threads = atol(argv[4]), secs = atol(argv[5]);
        if (size < 1 || size > 256L << 20 || threads < 1 || threads > THREADS_MAX || secs < 1 ||
            secs > 600) {
            fprintf(stderr, "wp-s3put: error: size 1..256MiB, threads 1..%d, seconds 1..600\n",
                    THREADS_MAX);
            rc = 2;
        } else {
            rc = cmd_put(c, (size_t)size, (int)threads, (int)secs);
        }
    } else {
        fprintf(stderr, "wp-s3put: error: unknown command '%s'\n", argv[1]);
        rc = 2;
    }
    if (rc == WP_ETOOBIG || rc < 0)
        fprintf(stderr, "wp-s3put: error: %s\n", wp_errmsg());
    s3_client_close(c);
    return rc ? 1 : 0;
}
