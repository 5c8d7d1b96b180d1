/* test_config.c — configuration defaults, YAML loading, text forms, bounds,
 * environment overrides (src/config/config.c, docs/configuration.md). */
#include "config/config.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test.h"

static const char *const ALL_KEYS[] = {
    "storage.type",        "storage.root",          "meta.type",
    "meta.path",           "meta.prefix",           "segment.max_bytes",
    "segment.max_age_ms",  "segment.max_blocks",    "flush.max_bytes",
    "flush.max_interval_ms", "flush.max_entries",   "writer.max_pending_bytes",
    "writer.max_entry_bytes", "retention.ttl_ms",   "gc.interval_ms",
    "reader.lease_ttl_ms", "reader.poll_max_ms",    "log.level",
};
#define N_ALL (sizeof ALL_KEYS / sizeof ALL_KEYS[0])

static bool has(const char *needle) { return strstr(wp_errmsg(), needle) != NULL; }

/* Writes text to <tmpdir>/name and returns the path (static buffer). */
static const char *write_file(const char *name, const char *text, size_t len)
{
    static char path[1200];
    snprintf(path, sizeof path, "%s/%s", test_tmpdir("config"), name);
    FILE *f = fopen(path, "wb");
    if (!f) {
        perror(path);
        exit(2);
    }
    if (len && fwrite(text, 1, len, f) != len) {
        perror(path);
        exit(2);
    }
    fclose(f);
    return path;
}

static const char *wf(const char *text) { return write_file("wp.yaml", text, strlen(text)); }

/* Loads text as a buffer; returns the rc and frees any config. */
static int load_text(const char *text)
{
    wp_config *c = NULL;
    int rc = wp__config_load_buffer(text, strlen(text), "t.yaml", &c);
    if (rc == 0 && !c)
        return 99;
    if (rc < 0 && c)
        return 98;
    wp_config_free(c);
    return rc;
}

TEST(test_defaults)
{
    wp_config *c = NULL;
    char buf[256];
    CHECK_OK(wp_config_default(&c));
    REQUIRE(c);
    CHECK(strcmp(c->storage_type, "local") == 0);
    CHECK(strcmp(c->storage_root, "./woodpecker-data") == 0);
    CHECK(strcmp(c->meta_type, "sqlite") == 0);
    CHECK(c->meta_path[0] == '\0');
    CHECK(strcmp(c->meta_prefix, "woodpecker/") == 0);
    CHECK(c->segment_max_bytes == 256 * WP_MiB);
    CHECK(c->segment_max_age_ms == 600000);
    CHECK(c->segment_max_blocks == 100000);
    CHECK(c->flush_max_bytes == 256 * WP_KiB);
    CHECK(c->flush_max_interval_ms == 0);
    CHECK(c->flush_max_entries == 10000);
    CHECK(c->writer_max_pending_bytes == 64 * WP_MiB);
    CHECK(c->writer_max_entry_bytes == WP_ENTRY_BYTES_DEFAULT);
    CHECK(c->retention_ttl_ms == 259200000);
    CHECK(c->gc_interval_ms == 10000);
    CHECK(c->reader_lease_ttl_ms == 30000);
    CHECK(c->reader_poll_max_ms == 10);
    CHECK(c->log_level == WP_LOG_WARN);
    CHECK(c->log_fn == NULL && c->log_arg == NULL);
    CHECK(strcmp(wp__config_meta_path(c, buf, sizeof buf), "./woodpecker-data/meta.sqlite") == 0);
    CHECK_OK(wp_config_get(c, "flush.max_bytes", buf, sizeof buf));
    CHECK(strcmp(buf, "256KiB") == 0);
    CHECK_OK(wp_config_get(c, "log.level", buf, sizeof buf));
    CHECK(strcmp(buf, "warn") == 0);
    wp_config_free(c);
}

TEST(test_meta_path)
{
    wp_config *c = NULL;
    char buf[64];
    REQUIRE(wp_config_default(&c) == 0);
    CHECK_OK(wp_config_set(c, "storage.root", "/data/wp/"));
    CHECK(strcmp(wp__config_meta_path(c, buf, sizeof buf), "/data/wp/meta.sqlite") == 0);
    CHECK(wp__config_meta_path(c, buf, 5) == NULL);
    CHECK_OK(wp_config_set(c, "meta.path", "/m.db"));
    CHECK(strcmp(wp__config_meta_path(c, buf, sizeof buf), "/m.db") == 0);
    CHECK_OK(wp_config_set(c, "meta.path", ""));
    CHECK(strcmp(wp__config_meta_path(c, buf, sizeof buf), "/data/wp/meta.sqlite") == 0);
    wp_config_free(c);
}

TEST(test_load_file_nested)
{
    const char *path = wf("# comment\n"
                          "storage:\n"
                          "  type: local\n"
                          "  root: /var/lib/wp\n"
                          "meta:\n"
                          "  path: \"/var/lib/wp/m.sqlite\"\n"
                          "  prefix: 'app1/'\n"
                          "flush:\n"
                          "  max_bytes: 1MiB\n"
                          "  max_interval_ms: 5ms\n"
                          "segment.max_blocks: 77\n"
                          "log: {level: debug}\n");
    wp_config *c = NULL;
    CHECK_OK(wp_config_load(path, &c));
    REQUIRE(c);
    CHECK(strcmp(c->storage_root, "/var/lib/wp") == 0);
    CHECK(strcmp(c->meta_path, "/var/lib/wp/m.sqlite") == 0);
    CHECK(strcmp(c->meta_prefix, "app1/") == 0);
    CHECK(c->flush_max_bytes == WP_MiB);
    CHECK(c->flush_max_interval_ms == 5);
    CHECK(c->segment_max_blocks == 77);
    CHECK(c->log_level == WP_LOG_DEBUG);
    CHECK(c->flush_max_entries == 10000); /* untouched keys keep defaults */
    wp_config_free(c);
}

TEST(test_empty_and_null_docs)
{
    const char *docs[] = {"", "# only a comment\n", "---\n", "~\n", "null\n",
                          "---\n...\n", "flush:\n# max_bytes: 1MiB\n", "{}\n"};
    for (size_t i = 0; i < sizeof docs / sizeof docs[0]; i++) {
        wp_config *c = NULL;
        int rc = wp__config_load_buffer(docs[i], strlen(docs[i]), "e.yaml", &c);
        CHECK_OK(rc);
        if (c)
            CHECK(c->flush_max_bytes == 256 * WP_KiB);
        wp_config_free(c);
    }
    wp_config *c = NULL;
    CHECK_OK(wp_config_load(write_file("empty.yaml", "", 0), &c));
    REQUIRE(c);
    CHECK(c->segment_max_bytes == 256 * WP_MiB);
    wp_config_free(c);
}

/* Sets each key to a non-default value and reads it back. */
TEST(test_set_get_roundtrip)
{
    static const struct {
        const char *key, *in, *out;
    } cases[] = {
        {"storage.type", "local", "local"},
        {"storage.root", "/tmp/x y", "/tmp/x y"},
        {"meta.type", "sqlite", "sqlite"},
        {"meta.path", "/tmp/m.sqlite", "/tmp/m.sqlite"},
        {"meta.prefix", "a/b/", "a/b/"},
        {"segment.max_bytes", "1G", "1GiB"},
        {"segment.max_age_ms", "2m", "120000"},
        {"segment.max_blocks", "42", "42"},
        {"flush.max_bytes", "1000", "1000"},
        {"flush.max_interval_ms", "1s", "1000"},
        {"flush.max_entries", "1", "1"},
        {"writer.max_pending_bytes", "3MiB", "3MiB"},
        {"writer.max_entry_bytes", "1025", "1025"},
        {"retention.ttl_ms", "1h", "3600000"},
        {"gc.interval_ms", "100ms", "100"},
        {"reader.lease_ttl_ms", "10s", "10000"},
        {"reader.poll_max_ms", "1000", "1000"},
        {"log.level", "error", "error"},
    };
    _Static_assert(sizeof cases / sizeof cases[0] == N_ALL, "one case per key");
    wp_config *c = NULL, *d = NULL;
    char buf[WP_PATH_MAX];
    REQUIRE(wp_config_default(&c) == 0);
    for (size_t i = 0; i < N_ALL; i++) {
        CHECK(strcmp(cases[i].key, ALL_KEYS[i]) == 0);
        CHECK_OK(wp_config_set(c, cases[i].key, cases[i].in));
        CHECK_OK(wp_config_get(c, cases[i].key, buf, sizeof buf));
        if (strcmp(buf, cases[i].out) != 0)
            fprintf(stderr, "  %s: got '%s' want '%s'\n", cases[i].key, buf, cases[i].out);
        CHECK(strcmp(buf, cases[i].out) == 0);
    }
    CHECK(c->log_level == WP_LOG_ERROR);
    /* get output re-parses to the same value, for every key */
    REQUIRE(wp_config_default(&d) == 0);
    for (size_t i = 0; i < N_ALL; i++) {
        char b2[WP_PATH_MAX];
        CHECK_OK(wp_config_get(c, ALL_KEYS[i], buf, sizeof buf));
        CHECK_OK(wp_config_set(d, ALL_KEYS[i], buf));
        CHECK_OK(wp_config_get(d, ALL_KEYS[i], b2, sizeof b2));
        CHECK(strcmp(buf, b2) == 0);
    }
    d->log_fn = c->log_fn;
    d->log_arg = c->log_arg;
    CHECK((memset(c->set_by_user, 0, sizeof c->set_by_user), memset(d->set_by_user, 0, sizeof d->set_by_user), memcmp(c, d, sizeof *c)) == 0);
    /* small buffer */
    CHECK_RC(WP_ETOOBIG, wp_config_get(c, "storage.root", buf, 3));
    CHECK(has("storage.root"));
    CHECK_RC(WP_EINVAL, wp_config_get(c, "nope.key", buf, sizeof buf));
    CHECK(has("nope.key"));
    wp_config_free(c);
    wp_config_free(d);
}

TEST(test_size_suffixes)
{
    static const struct {
        const char *in;
        int64_t want;
    } ok[] = {
        {"262144", 262144}, {"512B", 512},        {"4K", 4 * WP_KiB}, {"4KiB", 4 * WP_KiB},
        {"3M", 3 * WP_MiB}, {"3MiB", 3 * WP_MiB}, {"0256KiB", 256 * WP_KiB},
    };
    static const char *const bad[] = {"",    "12x",  "-1",   "+5",  " 1K",  "1 K", "1K ",
                                      "1KB", "1kib", "1Ki",  "1.5M", "0x10", "K",  "1MB",
                                      "1T",  "1e6",  "1KiBB", "1\t"};
    wp_config *c = NULL;
    REQUIRE(wp_config_default(&c) == 0);
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        CHECK_OK(wp_config_set(c, "flush.max_bytes", ok[i].in));
        CHECK(c->flush_max_bytes == ok[i].want);
    }
    CHECK_OK(wp_config_set(c, "segment.max_bytes", "2G"));
    CHECK(c->segment_max_bytes == 2 * WP_GiB);
    CHECK_OK(wp_config_set(c, "segment.max_bytes", "63GiB"));
    CHECK(c->segment_max_bytes == 63 * WP_GiB);
    CHECK_OK(wp_config_set(c, "flush.max_bytes", "1MiB"));
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK_RC(WP_EINVAL, wp_config_set(c, "flush.max_bytes", bad[i]));
        CHECK(has("flush.max_bytes") && has("not a size"));
        CHECK(c->flush_max_bytes == WP_MiB); /* unchanged on error */
    }
    CHECK_RC(WP_EINVAL, wp_config_set(c, "flush.max_bytes", "12x"));
    CHECK(strcmp(wp_errmsg(),
                 "flush.max_bytes: '12x' is not a size (examples: 262144, 256KiB, 1MiB, 2G)") == 0);
    /* overflow */
    CHECK_RC(WP_EINVAL, wp_config_set(c, "segment.max_bytes", "99999999999999999999"));
    CHECK(has("out of range"));
    CHECK_RC(WP_EINVAL, wp_config_set(c, "segment.max_bytes", "9223372036854775807G"));
    CHECK(has("segment.max_bytes"));
    wp_config_free(c);
}

TEST(test_durations_and_ints)
{
    wp_config *c = NULL;
    REQUIRE(wp_config_default(&c) == 0);
    CHECK_OK(wp_config_set(c, "retention.ttl_ms", "72h"));
    CHECK(c->retention_ttl_ms == 259200000);
    CHECK_OK(wp_config_set(c, "segment.max_age_ms", "0"));
    CHECK(c->segment_max_age_ms == 0);
    CHECK_OK(wp_config_set(c, "segment.max_age_ms", "5m"));
    CHECK(c->segment_max_age_ms == 300000);
    CHECK_OK(wp_config_set(c, "reader.poll_max_ms", "1s"));
    CHECK(c->reader_poll_max_ms == 1000);
    static const char *const bad_dur[] = {"", "1d", "1 s", "-1", "1.5s", "s", "1S", "1sec"};
    for (size_t i = 0; i < sizeof bad_dur / sizeof bad_dur[0]; i++) {
        CHECK_RC(WP_EINVAL, wp_config_set(c, "gc.interval_ms", bad_dur[i]));
        CHECK(has("gc.interval_ms") && has("not a duration"));
    }
    static const char *const bad_int[] = {"", "1K", "1e3", "-3", "+3", "3 ", "abc"};
    for (size_t i = 0; i < sizeof bad_int / sizeof bad_int[0]; i++) {
        CHECK_RC(WP_EINVAL, wp_config_set(c, "flush.max_entries", bad_int[i]));
        CHECK(has("flush.max_entries") && has("not an integer"));
    }
    CHECK(c->gc_interval_ms == 10000 && c->flush_max_entries == 10000);
    wp_config_free(c);
}

TEST(test_bounds)
{
    static const struct {
        const char *key, *low, *lowest_ok, *highest_ok, *high;
    } b[] = {
        {"segment.max_bytes", "4095", "4KiB", "63GiB", "67645734913"},
        {"segment.max_age_ms", NULL, "0", "604800000", "604800001"},
        {"segment.max_blocks", "0", "1", "4194304", "4194305"},
        {"flush.max_bytes", "511", "512", "256MiB", "268435457"},
        {"flush.max_interval_ms", NULL, "0", "60000", "60001"},
        {"flush.max_entries", "0", "1", "1048576", "1048577"},
        {"writer.max_pending_bytes", "1048575", "1MiB", "16GiB", "17179869185"},
        {"writer.max_entry_bytes", "0", "1", "256MiB", "268435457"},
        {"retention.ttl_ms", NULL, "0", "31536000000", "31536000001"},
        {"gc.interval_ms", "99", "100", "1h", "3600001"},
        {"reader.lease_ttl_ms", "999", "1s", "10m", "600001"},
        {"reader.poll_max_ms", "0", "1", "1000", "1001"},
    };
    wp_config *c = NULL;
    REQUIRE(wp_config_default(&c) == 0);
    for (size_t i = 0; i < sizeof b / sizeof b[0]; i++) {
        CHECK_OK(wp_config_set(c, b[i].key, b[i].lowest_ok));
        CHECK_OK(wp_config_set(c, b[i].key, b[i].highest_ok));
        if (b[i].low) {
            CHECK_RC(WP_EINVAL, wp_config_set(c, b[i].key, b[i].low));
            CHECK(has(b[i].key) && has("out of range"));
        }
        CHECK_RC(WP_EINVAL, wp_config_set(c, b[i].key, b[i].high));
        CHECK(has(b[i].key) && has("out of range"));
    }
    CHECK_RC(WP_EINVAL, wp_config_set(c, "segment.max_blocks", "0"));
    CHECK(strcmp(wp_errmsg(), "segment.max_blocks: 0 is out of range [1, 4194304]") == 0);
    /* strings */
    CHECK_RC(WP_EINVAL, wp_config_set(c, "storage.root", ""));
    CHECK(has("storage.root") && has("empty"));
    char *long_path = malloc(WP_PATH_MAX + 1);
    REQUIRE(long_path);
    memset(long_path, 'a', WP_PATH_MAX);
    long_path[WP_PATH_MAX] = '\0';
    CHECK_RC(WP_EINVAL, wp_config_set(c, "storage.root", long_path));
    CHECK(has("storage.root"));
    long_path[WP_PATH_MAX - 1] = '\0';
    CHECK_OK(wp_config_set(c, "storage.root", long_path));
    free(long_path);
    CHECK_RC(WP_EINVAL, wp_config_set(c, "storage.root", "a\nb"));
    CHECK_RC(WP_EINVAL, wp_config_set(c, "meta.prefix", ""));
    CHECK(has("meta.prefix"));
    CHECK_RC(WP_EINVAL, wp_config_set(c, "meta.prefix", "a b/"));
    CHECK(has("meta.prefix"));
    CHECK_RC(WP_EINVAL, wp_config_set(c, "meta.prefix", "caf\xc3\xa9/"));
    char p256[257];
    memset(p256, 'p', 256);
    p256[256] = '\0';
    CHECK_RC(WP_EINVAL, wp_config_set(c, "meta.prefix", p256));
    p256[255] = '\0';
    CHECK_OK(wp_config_set(c, "meta.prefix", p256));
    CHECK(strlen(c->meta_prefix) == 255);
    wp_config_free(c);
}

TEST(test_enums)
{
    wp_config *c = NULL;
    REQUIRE(wp_config_default(&c) == 0);
    CHECK_OK(wp_config_set(c, "storage.type", "s3"));
    CHECK_OK(wp_config_set(c, "meta.type", "etcd"));
    CHECK_RC(WP_EINVAL, wp_config_set(c, "meta.type", "zookeeper"));
    CHECK(has("meta.type") && has("sqlite, etcd"));
    CHECK_RC(WP_EINVAL, wp_config_set(c, "storage.type", "ftp"));
    CHECK(has("storage.type") && has("ftp"));
    CHECK_RC(WP_EINVAL, wp_config_set(c, "log.level", "WARN"));
    CHECK(has("log.level") && has("debug, info, warn, error"));
    const char *levels[] = {"debug", "info", "warn", "error"};
    for (int i = 0; i < 4; i++) {
        CHECK_OK(wp_config_set(c, "log.level", levels[i]));
        CHECK(c->log_level == i);
    }
    CHECK(strcmp(c->storage_type, "s3") == 0); /* failed sets changed nothing */
    CHECK(strcmp(c->meta_type, "etcd") == 0);
    wp_config_free(c);
}

TEST(test_unknown_key)
{
    wp_config *c = NULL;
    REQUIRE(wp_config_default(&c) == 0);
    CHECK_RC(WP_EINVAL, wp_config_set(c, "flush.max_byte", "1"));
    CHECK(has("flush.max_byte"));
    CHECK_RC(WP_EINVAL, wp_config_set(c, "flush", "1"));
    CHECK(has("section"));
    wp_config_free(c);

    const char *path = wf("storage:\n  root: /x\nflush:\n  max_bytes: 1MiB\n  max_bytez: 2\n");
    CHECK_RC(WP_EINVAL, wp_config_load(path, &c));
    CHECK(c == NULL);
    CHECK(has("flush.max_bytez") && has(":5:") && has(path));
    CHECK_RC(WP_EINVAL, load_text("bogus: 1\n"));
    CHECK(has("t.yaml:1:") && has("bogus"));
    CHECK_RC(WP_EINVAL, load_text("a:\n  b:\n    c: 1\n"));
    CHECK(has("'a'"));
}

TEST(test_wrong_type)
{
    CHECK_RC(WP_EINVAL, load_text("flush:\n  max_bytes: [1, 2]\n"));
    CHECK(has("flush.max_bytes") && has("sequence") && has("t.yaml:2:"));
    CHECK_RC(WP_EINVAL, load_text("flush:\n  max_bytes:\n    a: 1\n"));
    CHECK(has("flush.max_bytes") && has("mapping"));
    CHECK_RC(WP_EINVAL, load_text("flush: 5\n"));
    CHECK(has("flush") && has("section"));
    CHECK_RC(WP_EINVAL, load_text("flush: [1]\n"));
    CHECK(has("flush") && has("sequence"));
    CHECK_RC(WP_EINVAL, load_text("- a\n- b\n"));
    CHECK(has("top") && has("sequence"));
    CHECK_RC(WP_EINVAL, load_text("just a string\n"));
    CHECK(has("top"));
    CHECK_RC(WP_EINVAL, load_text("? [a]\n: 1\n"));
    CHECK(has("keys must be scalars"));
    CHECK_RC(WP_EINVAL, load_text("flush:\n  max_bytes: &a 1MiB\n  max_entries: *a\n"));
    CHECK(has("flush.max_entries") && has("alias"));
    CHECK_RC(WP_EINVAL, load_text("flush:\n  max_bytes: \"1\\0K\"\n"));
    CHECK(has("NUL"));
    CHECK_RC(WP_EINVAL, load_text("flush:\n  max_bytes: 12x\n"));
    CHECK(has("t.yaml:2: flush.max_bytes: '12x' is not a size"));
    CHECK_RC(WP_EINVAL, load_text("storage:\n  root:\n"));
    CHECK(has("storage.root") && has("empty"));
    CHECK_OK(load_text("meta:\n  path: ~\n"));
    CHECK_RC(WP_EINVAL, load_text("flush.max_bytes: 1K\n---\ngc.interval_ms: 200\n"));
    CHECK(has("one YAML document"));
}

TEST(test_duplicate_key)
{
    CHECK_RC(WP_EINVAL, load_text("flush:\n  max_bytes: 1MiB\n  max_bytes: 2MiB\n"));
    CHECK(has("duplicate") && has("flush.max_bytes") && has("t.yaml:3:") && has("line 2"));
    CHECK_RC(WP_EINVAL, load_text("flush.max_bytes: 1MiB\nflush:\n  max_bytes: 2MiB\n"));
    CHECK(has("duplicate") && has("flush.max_bytes"));
    CHECK_RC(WP_EINVAL, load_text("flush:\n  max_bytes: 1MiB\nflush:\n  max_entries: 2\n"));
    CHECK(has("duplicate") && has("'flush'"));
}

TEST(test_garbled_yaml)
{
    CHECK_RC(WP_EINVAL, load_text("flush:\n  max_bytes: 1MiB\n max_entries: 3\n"));
    CHECK(has("t.yaml:3:") && has("invalid YAML"));
    CHECK_RC(WP_EINVAL, load_text("flush: {max_bytes: 1MiB\n"));
    CHECK(has("t.yaml:2:") && has("invalid YAML"));
    CHECK_RC(WP_EINVAL, load_text("storage:\n  root: \"unterminated\n\n"));
    CHECK(has("invalid YAML"));
    CHECK_RC(WP_EINVAL, load_text("a: b: c\n"));
    CHECK(has("t.yaml:1:"));
    CHECK_RC(WP_EINVAL, load_text("flush:\n\tmax_bytes: 1\n"));
    CHECK(has("t.yaml:2:"));
    /* invalid UTF-8 on line 3 */
    CHECK_RC(WP_EINVAL, load_text("flush:\n  max_bytes: 1MiB\n  x: \xff\xfe\n"));
    CHECK(has("t.yaml:3:"));
}

TEST(test_missing_and_oversize_file)
{
    wp_config *c = (wp_config *)1;
    char path[1200];
    snprintf(path, sizeof path, "%s/does-not-exist.yaml", test_tmpdir("config"));
    CHECK_RC(WP_ENOENT, wp_config_load(path, &c));
    CHECK(c == NULL);
    CHECK(has("does-not-exist.yaml"));
    CHECK_RC(WP_EINVAL, wp_config_load(test_tmpdir("config"), &c));
    size_t n = WP_CONFIG_FILE_BYTES_MAX + 1;
    char *big = malloc(n);
    REQUIRE(big);
    memset(big, '#', n);
    big[n - 1] = '\n';
    for (size_t i = 80; i < n; i += 80)
        big[i] = '\n';
    const char *p = write_file("big.yaml", big, n);
    CHECK_RC(WP_EINVAL, wp_config_load(p, &c));
    CHECK(c == NULL && has("limit"));
    /* exactly the limit (all comments) is fine */
    p = write_file("max.yaml", big, n - 1);
    CHECK_OK(wp_config_load(p, &c));
    wp_config_free(c);
    free(big);
}

TEST(test_env_overrides)
{
    wp_config *c = NULL;
    REQUIRE(wp_config_default(&c) == 0);
    setenv("WP_FLUSH__MAX_BYTES", "1MiB", 1);
    setenv("WP_LOG__LEVEL", "info", 1);
    setenv("WP_STORAGE__ROOT", "/env/root", 1);
    setenv("WP_NOT_A_KEY", "ignored", 1); /* no "__": not a config override */
    CHECK_OK(wp_config_apply_env(c));
    CHECK(c->flush_max_bytes == WP_MiB);
    CHECK(c->log_level == WP_LOG_INFO);
    CHECK(strcmp(c->storage_root, "/env/root") == 0);

    setenv("WP_SEGMENT__MAX_BLOCKS", "0", 1);
    setenv("WP_FLUSH__MAX_BYTES", "2MiB", 1);
    CHECK_RC(WP_EINVAL, wp_config_apply_env(c));
    CHECK(has("WP_SEGMENT__MAX_BLOCKS") && has("segment.max_blocks"));
    CHECK(c->flush_max_bytes == WP_MiB); /* all or nothing */
    unsetenv("WP_SEGMENT__MAX_BLOCKS");

    setenv("WP_X__Y", "1", 1);
    CHECK_RC(WP_EINVAL, wp_config_apply_env(c));
    CHECK(has("WP_X__Y") && has("x.y"));
    unsetenv("WP_X__Y");
    CHECK_OK(wp_config_apply_env(c));
    CHECK(c->flush_max_bytes == 2 * WP_MiB);

    unsetenv("WP_FLUSH__MAX_BYTES");
    unsetenv("WP_LOG__LEVEL");
    unsetenv("WP_STORAGE__ROOT");
    unsetenv("WP_NOT_A_KEY");
    wp_config_free(c);
}

static void log_fn(void *arg, int level, const char *msg)
{
    (void)arg;
    (void)level;
    (void)msg;
}

TEST(test_dup_independent)
{
    wp_config *a = NULL, *b = NULL;
    int tag;
    REQUIRE(wp_config_default(&a) == 0);
    wp_config_set_log(a, log_fn, &tag);
    CHECK(a->log_fn == log_fn && a->log_arg == &tag);
    CHECK_OK(wp_config_set(a, "storage.root", "/a"));
    CHECK_OK(wp_config_dup(a, &b));
    REQUIRE(b);
    CHECK(b->log_fn == log_fn && b->log_arg == &tag);
    CHECK_OK(wp_config_set(b, "storage.root", "/b"));
    CHECK_OK(wp_config_set(b, "flush.max_bytes", "1KiB"));
    CHECK(strcmp(a->storage_root, "/a") == 0);
    CHECK(a->flush_max_bytes == 256 * WP_KiB);
    wp_config_free(a);
    CHECK(strcmp(b->storage_root, "/b") == 0);
    wp_config_free(b);
    wp_config_free(NULL);
}

TEST(test_example_file)
{
    /* the shipped woodpecker.example.yaml loads and equals the defaults */
    /* the repo root from this file's path (absolute under CMake) */
    char found[1200];
    const char *self = __FILE__, *tail = strstr(self, "tests/unit/test_config.c");
    REQUIRE(tail);
    snprintf(found, sizeof found, "%.*swoodpecker.example.yaml", (int)(tail - self), self);
    if (access(found, R_OK) != 0) {
        fprintf(stderr, "  (%s not found; skipped)\n", found);
        return;
    }
    wp_config *c = NULL, *d = NULL;
    CHECK_OK(wp_config_load(found, &c));
    REQUIRE(c && wp_config_default(&d) == 0);
    CHECK((memset(c->set_by_user, 0, sizeof c->set_by_user), memset(d->set_by_user, 0, sizeof d->set_by_user), memcmp(c, d, sizeof *c)) == 0);
    wp_config_free(c);
    wp_config_free(d);
}

/* Every key the table has (new ones included) reads back what it was set
 * to, and reports being set by the user only once set. */
TEST(test_every_key_round_trips)
{
    wp_config *c = NULL, *d = NULL;
    REQUIRE(wp_config_default(&c) == 0 && wp_config_default(&d) == 0);
    const char *k;
    size_t n = 0;
    char buf[WP_PATH_MAX + 1], b2[WP_PATH_MAX + 1];
    for (size_t i = 0; (k = wp__config_key_name(i)); i++, n++) {
        CHECK(!wp__config_is_set(d, k));
        CHECK_OK(wp_config_get(c, k, buf, sizeof buf));
        CHECK_OK(wp_config_set(d, k, buf));
        CHECK(wp__config_is_set(d, k));
        CHECK_OK(wp_config_get(d, k, b2, sizeof b2));
        CHECK(strcmp(buf, b2) == 0);
    }
    CHECK(n == N_ALL + 44); /* + 7 meta.etcd.*, 10 storage.s3.*, flush.max_threads,
                             * flush.compression, compaction.*, 12 node.*, 4 quorum.*,
                             * 7 stream.* */
    CHECK_OK(wp_config_set(d, "storage.type", "quorum"));
    CHECK_RC(WP_EINVAL, wp_config_set(d, "quorum.write", "6"));
    CHECK_RC(WP_EINVAL, wp_config_set(d, "node.listen", "a b:1"));
    CHECK_RC(WP_EINVAL, wp_config_set(d, "node.workers", "0"));
    CHECK_OK(wp_config_set(d, "node.disk_reserve_bytes", "0"));
    CHECK_RC(WP_EINVAL, wp_config_set(d, "node.upload_threads", "0"));
    CHECK_RC(WP_EINVAL, wp_config_set(d, "node.upload_threads", "17"));
    CHECK_RC(WP_EINVAL, wp_config_set(d, "node.upload_interval_ms", "9"));
    CHECK_RC(WP_EINVAL, wp_config_set(d, "node.upload_delay_ms", "86400001"));
    CHECK_RC(WP_EINVAL, wp_config_set(d, "node.drop_grace_ms", "-1"));
    CHECK_OK(wp_config_set(d, "node.drop_grace_ms", "0"));
    CHECK_RC(WP_EINVAL, wp_config_set(d, "stream.listen", "a b"));
    CHECK_RC(WP_EINVAL, wp_config_set(d, "stream.lease_ttl_ms", "999"));
    CHECK_RC(WP_EINVAL, wp_config_set(d, "stream.max_request_bytes", "1KiB"));
    CHECK_RC(WP_EINVAL, wp_config_set(d, "stream.producer_window", "0"));
    CHECK_RC(WP_EINVAL, wp_config_set(d, "stream.connections_max", "65537"));
    CHECK_OK(wp_config_set(d, "meta.etcd.endpoints", "http://10.0.0.1:2379,http://10.0.0.2:2379"));
    CHECK_RC(WP_EINVAL, wp_config_set(d, "meta.etcd.endpoints", "http://a b"));
    CHECK_RC(WP_EINVAL, wp_config_set(d, "storage.s3.path_style", "yes"));
    CHECK_RC(WP_EINVAL, wp_config_set(d, "flush.max_threads", "65"));
    CHECK_RC(WP_EINVAL, wp_config_set(d, "compaction.enabled", "1"));
    CHECK_OK(wp_config_set(d, "compaction.enabled", "false"));
    CHECK(d->compaction_enabled == 0);
    wp_config_free(c);
    wp_config_free(d);
}

/* Largest value of a numeric key that wp_config_set accepts in [lo, hi]
 * (binary search; lo must be accepted): what the table really allows. */
static int64_t highest_accepted(wp_config *c, const char *key, int64_t lo, int64_t hi)
{
    char v[32];
    while (lo < hi) {
        int64_t mid = lo + (hi - lo + 1) / 2;
        snprintf(v, sizeof v, "%lld", (long long)mid);
        if (wp_config_set(c, key, v) == 0)
            lo = mid;
        else
            hi = mid - 1;
    }
    return lo;
}

/* Issue 9, item 10: segment.max_bytes = 64GiB was accepted, but the writer
 * fills a segment up to segment.max_bytes of data (header, blocks) and
 * completing it appends the index (16 bytes per block) and the 64-byte
 * footer, which the storage refuses past WP_SEGMENT_BYTES_MAX (64 GiB):
 * WP_ETOOBIG at every completion and every recovery. At the highest
 * values the config accepts, a full segment must still complete. */
TEST(test_segment_max_bytes_leaves_room_to_complete)
{
    wp_config *c = NULL;
    REQUIRE(wp_config_default(&c) == 0);
    CHECK_RC(WP_EINVAL, wp_config_set(c, "segment.max_bytes", "64GiB"));
    CHECK(has("segment.max_bytes") && has("out of range") && has("63GiB"));
    CHECK(has("index") && has("footer"));
    CHECK(c->segment_max_bytes == 256 * WP_MiB); /* unchanged */
    CHECK_RC(WP_EINVAL, wp_config_set(c, "segment.max_bytes", "4095"));
    CHECK(strcmp(wp_errmsg(), "segment.max_bytes: 4095 is out of range [4KiB, 63GiB]") == 0);
    CHECK_RC(WP_EINVAL, load_text("segment:\n  max_bytes: 64GiB\n"));
    CHECK(has("t.yaml:2: segment.max_bytes"));
    int64_t max_bytes = highest_accepted(c, "segment.max_bytes", 4 * WP_KiB, 64 * WP_GiB);
    int64_t max_blocks = highest_accepted(c, "segment.max_blocks", 1, 1LL << 40);
    /* data up to segment.max_bytes, then 16 bytes of index per block and
     * the footer (docs/format.md §6, §7) */
    CHECK(max_bytes + 16 * max_blocks + 64 <= WP_SEGMENT_BYTES_MAX);
    /* a segment's first entry is always accepted, even above max_bytes:
     * header, one block holding the largest entry, index, footer */
    CHECK(48 + WP_BLOCK_BYTES_MAX + 16 + 64 <= WP_SEGMENT_BYTES_MAX);
    wp_config_free(c);
}

int main(void)
{
    RUN(test_defaults);
    RUN(test_meta_path);
    RUN(test_load_file_nested);
    RUN(test_empty_and_null_docs);
    RUN(test_set_get_roundtrip);
    RUN(test_size_suffixes);
    RUN(test_durations_and_ints);
    RUN(test_bounds);
    RUN(test_enums);
    RUN(test_unknown_key);
    RUN(test_wrong_type);
    RUN(test_duplicate_key);
    RUN(test_garbled_yaml);
    RUN(test_missing_and_oversize_file);
    RUN(test_env_overrides);
    RUN(test_dup_independent);
    RUN(test_example_file);
    RUN(test_every_key_round_trips);
    RUN(test_segment_max_bytes_leaves_room_to_complete);
    return test_done();
}
