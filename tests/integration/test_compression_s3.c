/* test_compression_s3.c — flush.compression on object storage (the local
 * Ceph RGW of the CTest fixture, scripts/rgw.sh): logs written with zstd
 * and lz4 read back from another client, verify, compact into merged
 * objects and read the same, and store fewer bytes in the bucket than the
 * same log uncompressed (docs/format.md §5.1, §11). */
#include "test.h"

#include "support/s3env.h"
#include "support/testutil.h"

static test_s3_env env;
static char prefix[128];

static wp_client *open_s3(const char *tag, const char *dir, const char *codec)
{
    char pfx[256];
    snprintf(pfx, sizeof pfx, "%s/%s", prefix, tag);
    const char *kv[] = {"flush.compression", codec, "flush.max_threads", "8",
                        "flush.max_interval_ms", "20", "storage.type", "s3",
                        "storage.s3.endpoint", env.endpoint, "storage.s3.access_key",
                        env.access_key, "storage.s3.secret_key", env.secret_key,
                        "storage.s3.bucket", env.bucket, "storage.s3.region", env.region,
                        "storage.s3.prefix", pfx, "segment.max_bytes", "256KiB",
                        "flush.max_bytes", "32KiB", "compaction.enabled", "false", NULL};
    return test_client_open(dir, kv);
}

static size_t line(char *buf, size_t cap, int i)
{
    return (size_t)snprintf(buf, cap, "s3z-%d 2026-12-06T10:00:00Z INFO orders: order %d placed, "
                            "status=ok region=eu-west-1 user=u-%d", i, i * 7, i % 977);
}

static int read_all(wp_log *log, int n)
{
    wp_reader *r;
    if (wp_reader_open(log, WP_EARLIEST, &r))
        return -1;
    int i = 0;
    wp_entry e;
    while (wp_reader_next(r, 500, &e) == WP_OK) {
        char want[256];
        size_t len = line(want, sizeof want, i);
        if (e.len != len || memcmp(e.data, want, len) != 0) {
            fprintf(stderr, "  entry %d differs\n", i);
            i = -1;
            break;
        }
        i++;
    }
    wp_reader_close(r);
    return i == n ? 0 : (fprintf(stderr, "  read %d of %d\n", i, n), -1);
}

/* Writes N entries with codec; returns the log's bytes (in the bucket). */
static int64_t write_log(const char *codec, int n)
{
    char tag[64];
    snprintf(tag, sizeof tag, "z-%s", codec);
    const char *dir = test_tmpdir(tag);
    wp_client *c = open_s3(tag, dir, codec);
    if (!c)
        return -1;
    wp_log *log = NULL;
    wp_writer *w = NULL;
    int64_t bytes = -1;
    char buf[256];
    if (wp_log_create(c, "z") || wp_log_open(c, "z", &log) || wp_writer_open(log, &w))
        goto out;
    for (int i = 0; i < n; i++)
        if (wp_writer_append_async(w, buf, line(buf, sizeof buf, i), NULL, NULL))
            goto out;
    if (wp_writer_close(w))
        goto out;
    w = NULL;
    wp_log_close(log);
    log = NULL;
    wp_client_close(c);
    /* another client (another process would see the same objects) */
    c = open_s3(tag, dir, "none");
    if (!c || wp_log_open(c, "z", &log))
        goto out;
    CHECK_OK(read_all(log, n));
    int64_t checked = 0;
    CHECK_OK(wp_log_verify(log, NULL, NULL, &checked));
    CHECK(checked == n);
    wp_log_info li;
    CHECK_OK(wp_log_stat(log, &li));
    bytes = li.bytes;
    /* merged objects hold the same bytes */
    wp_compact_info ci;
    CHECK_OK(wp_log_compact(log, &ci));
    CHECK(ci.segments_sealed >= 1);
    CHECK_OK(read_all(log, n));
    CHECK_OK(wp_log_verify(log, NULL, NULL, NULL));
out:
    if (w)
        wp_writer_close(w);
    wp_log_close(log);
    wp_client_close(c);
    return bytes;
}

TEST(codecs_on_object_storage)
{
    enum { N = 6000 };
    int64_t none = write_log("none", N), zstd = write_log("zstd", N), lz4 = write_log("lz4", N);
    fprintf(stderr, "  bytes in the bucket: none %" PRId64 ", zstd %" PRId64 ", lz4 %" PRId64 "\n",
            none, zstd, lz4);
    CHECK(none > N * 100);
    CHECK(zstd > 0 && zstd < none / 3);
    CHECK(lz4 > 0 && lz4 < none / 2);
}

int main(void)
{
    snprintf(prefix, sizeof prefix, "ztest-%d-%lld", (int)getpid(), (long long)test_now_ms());
    if (test_s3_env_load(NULL, &env) != 0)
        return 1;
    RUN(codecs_on_object_storage);
    return test_done();
}
