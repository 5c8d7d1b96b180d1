/* config.c — the configuration: one table of keys (name, type, field,
 * default, bounds), the text forms of values (sizes, durations, enums), the
 * YAML loader (libyaml event API) and environment overrides.
 * docs/configuration.md lists every key; adding a key is one line in KEYS. */
#include "config/config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#include "base/err.h"
#include "codec/codec.h"

extern char **environ;

/* Longest dotted key name we build while walking nested YAML mappings. */
#define KEY_NAME_MAX 128
/* Bytes of a bad value quoted back in an error message. */
#define QUOTE_MAX 64
#define DAY_MS (24LL * 3600 * 1000)

/* ---- the key table ------------------------------------------------------ */

enum kind {
    K_STR,      /* char[] field: a path or a name; min/max bound its length */
    K_ENUM_STR, /* char[] field holding one of `choices` */
    K_ENUM_INT, /* int field holding the index of one of `choices` */
    K_SIZE,     /* int64_t bytes: 262144, 256KiB, 1M, ... */
    K_DUR,      /* int64_t milliseconds: 500, 500ms, 10s, 5m, 72h */
    K_INT,      /* int64_t plain decimal */
};

enum { F_TOKEN = 1 }; /* K_STR: printable ASCII, no spaces */

typedef struct {
    const char *name;
    enum kind kind;
    size_t off, cap;            /* field offset and size in struct wp_config */
    const char *def;            /* default, in text form */
    int64_t min, max;           /* numbers: value bounds; K_STR: length bounds */
    int flags;                  /* F_* */
    const char *const *choices; /* enums: accepted values (NULL-terminated) */
    const char *const *later;   /* enums: known but not supported yet */
    const char *why;            /* numbers: why the upper bound, added to its error */
} key_def;

static const char *const STORAGE_TYPES[] = {"local", "s3", "quorum", NULL};
static const char *const STORAGE_LATER[] = {NULL};
static const char *const META_TYPES[] = {"sqlite", "etcd", NULL};
static const char *const META_LATER[] = {NULL};
/* Indexes equal WP_LOG_DEBUG..WP_LOG_ERROR. */
static const char *const BOOLS[] = {"false", "true", NULL};
static const char *const LOG_LEVELS[] = {"debug", "info", "warn", "error", NULL};
/* Indexes equal BLK_CODEC_* (docs/format.md §5.1). */
static const char *const CODECS[] = {"none", "zstd", "lz4", NULL};

#define FIELD(f) offsetof(struct wp_config, f), sizeof(((struct wp_config *)0)->f)
#define STR(n, f, def, lo, hi, fl) {n, K_STR, FIELD(f), def, lo, hi, fl, NULL, NULL, NULL}
#define ENUM_S(n, f, def, ch, la) {n, K_ENUM_STR, FIELD(f), def, 0, 0, 0, ch, la, NULL}
#define ENUM_I(n, f, def, ch) {n, K_ENUM_INT, FIELD(f), def, 0, 0, 0, ch, NULL, NULL}
#define NUM(n, k, f, def, lo, hi) {n, k, FIELD(f), def, lo, hi, 0, NULL, NULL, NULL}
#define NUM_WHY(n, k, f, def, lo, hi, why) {n, k, FIELD(f), def, lo, hi, 0, NULL, NULL, why}

static const key_def KEYS[] = {
    ENUM_S("storage.type", storage_type, "local", STORAGE_TYPES, STORAGE_LATER),
    STR("storage.root", storage_root, "./woodpecker-data", 1, WP_PATH_MAX - 1, 0),
    ENUM_S("meta.type", meta_type, "sqlite", META_TYPES, META_LATER),
    STR("meta.path", meta_path, "", 0, WP_PATH_MAX - 1, 0),
    STR("meta.prefix", meta_prefix, "woodpecker/", 1, 255, F_TOKEN),
    STR("meta.etcd.endpoints", etcd_endpoints, "http://127.0.0.1:2379", 1, 1023, F_TOKEN),
    NUM("meta.etcd.timeout_ms", K_DUR, etcd_timeout_ms, "5000", 100, 600 * 1000),
    STR("meta.etcd.username", etcd_username, "", 0, 255, F_TOKEN),
    STR("meta.etcd.password", etcd_password, "", 0, 255, 0),
    STR("meta.etcd.ca_file", etcd_ca_file, "", 0, WP_PATH_MAX - 1, 0),
    STR("meta.etcd.cert_file", etcd_cert_file, "", 0, WP_PATH_MAX - 1, 0),
    STR("meta.etcd.key_file", etcd_key_file, "", 0, WP_PATH_MAX - 1, 0),
    STR("storage.s3.endpoint", s3_endpoint, "", 0, 1023, F_TOKEN),
    STR("storage.s3.bucket", s3_bucket, "", 0, 63, F_TOKEN),
    STR("storage.s3.region", s3_region, "us-east-1", 1, 63, F_TOKEN),
    STR("storage.s3.access_key", s3_access_key, "", 0, 255, F_TOKEN),
    STR("storage.s3.secret_key", s3_secret_key, "", 0, 255, 0),
    STR("storage.s3.prefix", s3_prefix, "woodpecker", 1, 255, F_TOKEN),
    STR("storage.s3.ca_file", s3_ca_file, "", 0, WP_PATH_MAX - 1, 0),
    ENUM_I("storage.s3.path_style", s3_path_style, "true", BOOLS),
    NUM("storage.s3.timeout_ms", K_DUR, s3_timeout_ms, "30000", 100, 600 * 1000),
    NUM("storage.s3.max_retries", K_INT, s3_max_retries, "8", 0, 100),
    NUM("flush.max_threads", K_INT, flush_max_threads, "16", 1, 64),
    NUM("compaction.max_bytes", K_SIZE, compaction_max_bytes, "32MiB", WP_MiB, 4 * WP_GiB),
    ENUM_I("compaction.enabled", compaction_enabled, "true", BOOLS),
    NUM_WHY("segment.max_bytes", K_SIZE, segment_max_bytes, "256MiB", 4 * WP_KiB,
            WP_SEGMENT_MAX_BYTES_MAX,
            "a full segment must keep room for its index (16 bytes per block, up to 4194304 "
            "blocks) and 64-byte footer within the format's 64GiB"),
    NUM("segment.max_age_ms", K_DUR, segment_max_age_ms, "600000", 0, 7 * DAY_MS),
    NUM("segment.max_blocks", K_INT, segment_max_blocks, "100000", 1, WP_SEGMENT_BLOCKS_MAX),
    NUM("flush.max_bytes", K_SIZE, flush_max_bytes, "256KiB", WP_FLUSH_BYTES_MIN, WP_FLUSH_BYTES_MAX),
    NUM("flush.max_interval_ms", K_DUR, flush_max_interval_ms, "0", 0, WP_FLUSH_INTERVAL_MS_MAX),
    NUM("flush.max_entries", K_INT, flush_max_entries, "10000", 1, WP_BLOCK_ENTRIES_MAX),
    ENUM_I("flush.compression", flush_compression, "none", CODECS),
    NUM("writer.max_pending_bytes", K_SIZE, writer_max_pending_bytes, "64MiB", WP_MiB, WP_PENDING_BYTES_MAX),
    NUM("writer.max_entry_bytes", K_SIZE, writer_max_entry_bytes, "64MiB", 1, WP_ENTRY_BYTES_MAX),
    NUM("retention.ttl_ms", K_DUR, retention_ttl_ms, "259200000", 0, 365 * DAY_MS),
    NUM("gc.interval_ms", K_DUR, gc_interval_ms, "10000", 100, 3600 * 1000),
    NUM("reader.lease_ttl_ms", K_DUR, reader_lease_ttl_ms, "30000", 1000, 600 * 1000),
    NUM("reader.poll_max_ms", K_DUR, reader_poll_max_ms, "10", 1, 1000),
    ENUM_I("log.level", log_level, "warn", LOG_LEVELS),
    STR("quorum.nodes", quorum_nodes, "", 0, 1279, F_TOKEN),
    NUM("quorum.write", K_INT, quorum_write, "3", 1, 5),
    NUM("quorum.ack", K_INT, quorum_ack, "2", 1, 5),
    NUM("quorum.replica_timeout_ms", K_DUR, quorum_replica_timeout_ms, "2000", 100, 600 * 1000),
    STR("node.id", node_id, "", 0, WP_NODE_ID_MAX, F_TOKEN),
    STR("node.listen", node_listen, "127.0.0.1:7400", 3, 255, F_TOKEN),
    STR("node.data_dir", node_data_dir, "./woodpecker-logstore", 1, WP_PATH_MAX - 1, 0),
    STR("node.zone", node_zone, "", 0, 63, F_TOKEN),
    NUM("node.workers", K_INT, node_workers, "4", 1, 64),
    NUM("node.disk_reserve_bytes", K_SIZE, node_disk_reserve_bytes, "1GiB", 0, 1024 * WP_GiB),
    NUM("node.disk_soft_reserve_bytes", K_SIZE, node_disk_soft_reserve_bytes, "0", 0, 1024 * WP_GiB),
    STR("node.metrics_listen", node_metrics_listen, "", 0, 255, F_TOKEN),
    NUM("node.upload_threads", K_INT, node_upload_threads, "2", 1, 16),
    NUM("node.upload_interval_ms", K_DUR, node_upload_interval_ms, "1000", 10, 600 * 1000),
    NUM("node.upload_delay_ms", K_DUR, node_upload_delay_ms, "0", 0, DAY_MS),
    NUM("node.drop_grace_ms", K_DUR, node_drop_grace_ms, "30000", 0, 7 * DAY_MS),
    STR("stream.listen", stream_listen, "127.0.0.1:7600", 3, 255, F_TOKEN),
    NUM("stream.lease_ttl_ms", K_DUR, stream_lease_ttl_ms, "5000", 1000, 600 * 1000),
    NUM("stream.assign_interval_ms", K_DUR, stream_assign_interval_ms, "1000", 20, 60 * 1000),
    NUM("stream.max_request_bytes", K_SIZE, stream_max_request_bytes, "16MiB", 4 * WP_KiB, 256 * WP_MiB),
    NUM("stream.producer_window", K_INT, stream_producer_window, "256", 1, 65536),
    NUM("stream.producer_snapshot_ms", K_DUR, stream_producer_snapshot_ms, "5000", 100, 3600 * 1000),
    NUM("stream.connections_max", K_INT, stream_connections_max, "1024", 1, 65536),
};
#define N_KEYS (sizeof KEYS / sizeof KEYS[0])
_Static_assert(N_KEYS <= sizeof(((struct wp_config *)0)->set_by_user), "set_by_user has a slot per key");

_Static_assert(WP_ENTRY_BYTES_DEFAULT == 64 * WP_MiB, "writer.max_entry_bytes default text");
_Static_assert(WP_SEGMENT_BLOCKS_MAX == 4194304 && WP_SEGMENT_BYTES_MAX == 64 * WP_GiB,
               "segment.max_bytes 'why' text");
_Static_assert(WP_LOG_DEBUG == 0 && WP_LOG_ERROR == 3, "log.level indexes");
_Static_assert(BLK_CODEC_NONE == 0 && BLK_CODEC_ZSTD == 1 && BLK_CODEC_LZ4 == 2,
               "flush.compression indexes");

static const key_def *key_find(const char *name)
{
    for (size_t i = 0; i < N_KEYS; i++)
        if (strcmp(KEYS[i].name, name) == 0)
            return &KEYS[i];
    return NULL;
}

/* True if `name` is a section: some key is "<name>.<rest>". */
static bool section_known(const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; i < N_KEYS; i++)
        if (strncmp(KEYS[i].name, name, n) == 0 && KEYS[i].name[n] == '.')
            return true;
    return false;
}

/* Copies at most QUOTE_MAX bytes of s into out, replacing unprintable bytes
 * with '?', so error messages stay one readable line. */
static const char *quote(const char *s, char out[QUOTE_MAX + 4])
{
    size_t i = 0;
    for (; s[i] && i < QUOTE_MAX; i++)
        out[i] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
    if (s[i]) {
        memcpy(out + i, "...", 3);
        i += 3;
    }
    out[i] = '\0';
    return out;
}

/* ---- value text forms --------------------------------------------------- */

typedef struct {
    const char *suffix;
    int64_t mul;
} unit;

static const unit SIZE_UNITS[] = {{"", 1},         {"B", 1},         {"K", WP_KiB},
                                  {"KiB", WP_KiB}, {"M", WP_MiB},    {"MiB", WP_MiB},
                                  {"G", WP_GiB},   {"GiB", WP_GiB},  {NULL, 0}};
static const unit DUR_UNITS[] = {{"", 1},         {"ms", 1},          {"s", 1000},
                                 {"m", 60 * 1000}, {"h", 3600 * 1000}, {NULL, 0}};
static const unit INT_UNITS[] = {{"", 1}, {NULL, 0}};

enum { NUM_OK = 0, NUM_SYNTAX = -1, NUM_OVERFLOW = -2 };

/* Parses "<digits><suffix>" with a suffix from units. */
static int parse_num(const char *s, const unit *units, int64_t *out)
{
    const char *p = s;
    int64_t v = 0;
    bool overflow = false;
    if (*p < '0' || *p > '9')
        return NUM_SYNTAX;
    for (; *p >= '0' && *p <= '9'; p++) {
        int d = *p - '0';
        if (v > (INT64_MAX - d) / 10)
            overflow = true;
        else
            v = v * 10 + d;
    }
    for (const unit *u = units; u->suffix; u++) {
        if (strcmp(p, u->suffix) != 0)
            continue;
        if (overflow || v > INT64_MAX / u->mul)
            return NUM_OVERFLOW;
        *out = v * u->mul;
        return NUM_OK;
    }
    return NUM_SYNTAX;
}

/* Text form of a number of kind k that parse_num reads back. */
static void format_num(enum kind k, int64_t v, char *buf, size_t len)
{
    static const unit big[] = {{"GiB", WP_GiB}, {"MiB", WP_MiB}, {"KiB", WP_KiB}, {NULL, 0}};
    if (k == K_SIZE && v > 0)
        for (const unit *u = big; u->suffix; u++)
            if (v % u->mul == 0) {
                snprintf(buf, len, "%lld%s", (long long)(v / u->mul), u->suffix);
                return;
            }
    snprintf(buf, len, "%lld", (long long)v);
}

static int set_number(const key_def *k, const char *value, int64_t *out)
{
    static const char *const what[] = {
        [K_SIZE] = "a size (examples: 262144, 256KiB, 1MiB, 2G)",
        [K_DUR] = "a duration in ms (examples: 500, 500ms, 10s, 5m, 72h)",
        [K_INT] = "an integer (example: 10000)",
    };
    const unit *units = k->kind == K_SIZE ? SIZE_UNITS : k->kind == K_DUR ? DUR_UNITS : INT_UNITS;
    char q[QUOTE_MAX + 4], lo[32], hi[32];
    int64_t v = 0;
    int r = parse_num(value, units, &v);
    format_num(k->kind, k->min, lo, sizeof lo);
    format_num(k->kind, k->max, hi, sizeof hi);
    if (r == NUM_SYNTAX)
        return wp__err(WP_EINVAL, "%s: '%s' is not %s", k->name, quote(value, q), what[k->kind]);
    if (r == NUM_OVERFLOW || v < k->min || v > k->max) {
        bool why = k->why && (r == NUM_OVERFLOW || v > k->max);
        return wp__err(WP_EINVAL, "%s: %s is out of range [%s, %s]%s%s", k->name, quote(value, q),
                       lo, hi, why ? ": " : "", why ? k->why : "");
    }
    *out = v;
    return 0;
}

static int choice_index(const char *const *choices, const char *value)
{
    for (int i = 0; choices && choices[i]; i++)
        if (strcmp(choices[i], value) == 0)
            return i;
    return -1;
}

static void join_choices(const char *const *choices, char *buf, size_t len)
{
    size_t n = 0;
    buf[0] = '\0';
    for (int i = 0; choices[i] && n < len; i++)
        n += (size_t)snprintf(buf + n, len - n, "%s%s", i ? ", " : "", choices[i]);
}

static int set_enum(const key_def *k, const char *value, int *index)
{
    char q[QUOTE_MAX + 4], list[128];
    join_choices(k->choices, list, sizeof list);
    int i = choice_index(k->choices, value);
    if (i >= 0) {
        *index = i;
        return 0;
    }
    if (choice_index(k->later, value) >= 0)
        return wp__err(WP_EINVAL, "%s: '%s' is not supported yet (supported: %s)", k->name,
                       value, list);
    return wp__err(WP_EINVAL, "%s: '%s' is not one of: %s", k->name, quote(value, q), list);
}

static int check_string(const key_def *k, const char *value, size_t n)
{
    if ((int64_t)n < k->min)
        return wp__err(WP_EINVAL, "%s: must not be empty", k->name);
    if ((int64_t)n > k->max || n >= k->cap)
        return wp__err(WP_EINVAL, "%s: value is %zu bytes; the limit is %lld", k->name, n,
                       (long long)k->max);
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)value[i];
        if (ch < 0x20 || ch == 0x7f)
            return wp__err(WP_EINVAL, "%s: control character (0x%02x) at byte %zu", k->name, ch,
                           i);
        if ((k->flags & F_TOKEN) && (ch == ' ' || ch > 0x7e))
            return wp__err(WP_EINVAL, "%s: byte %zu must be printable ASCII without spaces",
                           k->name, i);
    }
    return 0;
}

/* Validates value and stores it in c's field for k. c is untouched on error. */
static int key_set_value(wp_config *c, const key_def *k, const char *value);

/* Sets a key and marks it as given by the user (wp__config_is_set). */
static int key_set(wp_config *c, const key_def *k, const char *value)
{
    int rc = key_set_value(c, k, value);
    if (rc == 0)
        c->set_by_user[k - KEYS] = 1;
    return rc;
}

const char *wp__config_key_name(size_t i) { return i < N_KEYS ? KEYS[i].name : NULL; }

bool wp__config_is_set(const wp_config *c, const char *key)
{
    const key_def *k = key_find(key);
    return k && c->set_by_user[k - KEYS];
}

static int key_set_value(wp_config *c, const key_def *k, const char *value)
{
    char *field = (char *)c + k->off;
    size_t n = strlen(value);
    int rc, idx = 0;
    int64_t v = 0;
    if (n > WP_CONFIG_VALUE_MAX)
        return wp__err(WP_EINVAL, "%s: value is %zu bytes; the limit is %d", k->name, n,
                       WP_CONFIG_VALUE_MAX);
    switch (k->kind) {
    case K_STR:
        if ((rc = check_string(k, value, n)) < 0)
            return rc;
        memset(field, 0, k->cap); /* no stale bytes: configs compare with memcmp */
        memcpy(field, value, n);
        return 0;
    case K_ENUM_STR:
    case K_ENUM_INT:
        if ((rc = set_enum(k, value, &idx)) < 0)
            return rc;
        if (k->kind == K_ENUM_INT)
            memcpy(field, &idx, sizeof idx);
        else {
            memset(field, 0, k->cap);
            snprintf(field, k->cap, "%s", k->choices[idx]);
        }
        return 0;
    case K_SIZE:
    case K_DUR:
    case K_INT:
        if ((rc = set_number(k, value, &v)) < 0)
            return rc;
        memcpy(field, &v, sizeof v);
        return 0;
    }
    return wp__err(WP_EINVAL, "%s: bad key kind", k->name);
}

/* ---- public API --------------------------------------------------------- */

int wp_config_default(wp_config **out)
{
    if (!out)
        return wp__err(WP_EINVAL, "wp_config_default: out is NULL");
    *out = NULL;
    wp_config *c = calloc(1, sizeof *c);
    if (!c)
        return wp__err(WP_ENOMEM, "wp_config_default: out of memory");
    for (size_t i = 0; i < N_KEYS; i++) {
        int rc = key_set_value(c, &KEYS[i], KEYS[i].def);
        if (rc < 0) { /* a bad default in KEYS: a bug, but report it */
            free(c);
            return rc;
        }
    }
    *out = c;
    return 0;
}

int wp_config_set(wp_config *c, const char *key, const char *value)
{
    char q[QUOTE_MAX + 4];
    if (!c || !key || !value)
        return wp__err(WP_EINVAL, "wp_config_set: NULL argument");
    const key_def *k = key_find(key);
    if (!k) {
        if (section_known(key))
            return wp__err(WP_EINVAL, "'%s' is a section, not a key (e.g. %s.<key>)",
                           quote(key, q), key);
        return wp__err(WP_EINVAL, "unknown key '%s' (see docs/configuration.md)", quote(key, q));
    }
    return key_set(c, k, value);
}

int wp_config_get(const wp_config *c, const char *key, char *buf, size_t len)
{
    char q[QUOTE_MAX + 4], tmp[64] = "";
    if (!c || !key || !buf || len == 0)
        return wp__err(WP_EINVAL, "wp_config_get: NULL argument");
    const key_def *k = key_find(key);
    if (!k)
        return wp__err(WP_EINVAL, "unknown key '%s' (see docs/configuration.md)", quote(key, q));
    const char *field = (const char *)c + k->off;
    const char *text = tmp;
    int idx;
    int64_t v;
    switch (k->kind) {
    case K_STR:
    case K_ENUM_STR:
        text = field;
        break;
    case K_ENUM_INT:
        memcpy(&idx, field, sizeof idx);
        text = "?";
        for (int i = 0; k->choices[i]; i++)
            if (i == idx)
                text = k->choices[i];
        break;
    case K_SIZE:
    case K_DUR:
    case K_INT:
        memcpy(&v, field, sizeof v);
        format_num(k->kind, v, tmp, sizeof tmp);
        break;
    }
    size_t n = strlen(text);
    if (n >= len)
        return wp__err(WP_ETOOBIG, "%s: value needs %zu bytes; buffer has %zu", k->name, n + 1,
                       len);
    memcpy(buf, text, n + 1);
    return 0;
}

int wp_config_dup(const wp_config *c, wp_config **out)
{
    if (!c || !out)
        return wp__err(WP_EINVAL, "wp_config_dup: NULL argument");
    *out = malloc(sizeof **out);
    if (!*out)
        return wp__err(WP_ENOMEM, "wp_config_dup: out of memory");
    memcpy(*out, c, sizeof **out);
    return 0;
}

void wp_config_free(wp_config *c) { free(c); }

void wp_config_set_log(wp_config *c, wp_log_fn fn, void *arg)
{
    if (!c)
        return;
    c->log_fn = fn;
    c->log_arg = arg;
}

const char *wp__config_meta_path(const wp_config *c, char *buf, size_t len)
{
    if (!c || !buf || len == 0)
        return NULL;
    int n;
    if (c->meta_path[0]) {
        n = snprintf(buf, len, "%s", c->meta_path);
    } else {
        size_t r = strlen(c->storage_root);
        const char *sep = (r > 0 && c->storage_root[r - 1] == '/') ? "" : "/";
        n = snprintf(buf, len, "%s%smeta.sqlite", c->storage_root, sep);
    }
    if (n < 0 || (size_t)n >= len) {
        buf[0] = '\0';
        return NULL;
    }
    return buf;
}

/* WP_FLUSH__MAX_BYTES -> "flush.max_bytes" into key; false if not WP_*__*. */
static bool env_key(const char *name, size_t n, char *key, size_t cap)
{
    if (n < 3 || strncmp(name, "WP_", 3) != 0 || !memmem(name, n, "__", 2))
        return false;
    size_t o = 0;
    for (size_t i = 3; i < n && o + 1 < cap; i++) {
        if (name[i] == '_' && i + 1 < n && name[i + 1] == '_') {
            key[o++] = '.';
            i++;
        } else {
            char ch = name[i];
            key[o++] = (ch >= 'A' && ch <= 'Z') ? (char)(ch - 'A' + 'a') : ch;
        }
    }
    key[o] = '\0';
    return true;
}

int wp_config_apply_env(wp_config *c)
{
    if (!c)
        return wp__err(WP_EINVAL, "wp_config_apply_env: NULL argument");
    wp_config tmp; /* all or nothing */
    memcpy(&tmp, c, sizeof tmp);
    for (char **e = environ; e && *e; e++) {
        const char *eq = strchr(*e, '=');
        char key[KEY_NAME_MAX], q[QUOTE_MAX + 4];
        if (!eq || !env_key(*e, (size_t)(eq - *e), key, sizeof key))
            continue;
        const key_def *k = key_find(key);
        if (!k)
            return wp__err(WP_EINVAL, "environment: %.*s names unknown key '%s'",
                           (int)(eq - *e) > QUOTE_MAX ? QUOTE_MAX : (int)(eq - *e), *e,
                           quote(key, q));
        int rc = key_set(&tmp, k, eq + 1);
        if (rc < 0) {
            char msg[WP_ERRMSG_MAX];
            snprintf(msg, sizeof msg, "%s", wp_errmsg());
            return wp__err(rc, "environment %.*s: %s",
                           (int)(eq - *e) > QUOTE_MAX ? QUOTE_MAX : (int)(eq - *e), *e, msg);
        }
    }
    memcpy(c, &tmp, sizeof tmp);
    return 0;
}

/* ---- YAML --------------------------------------------------------------- */

/* Dotted names seen so far in the document, to reject duplicates. Every
 * entry is a known key or section (anything else fails at once), so the
 * list is bounded by twice the table. */
#define SEEN_MAX (2 * N_KEYS)

typedef struct {
    yaml_parser_t p;
    const char *origin;
    const char *text; /* for line numbers of reader errors */
    size_t len;
    wp_config *c;
    size_t n_seen;
    char seen[SEEN_MAX][KEY_NAME_MAX];
    size_t seen_line[SEEN_MAX];
} yctx;

static size_t ev_line(const yaml_event_t *ev) { return ev->start_mark.line + 1; }

/* Rewrites the current wp_errmsg() as "origin:line: msg". */
static int at_line(yctx *y, size_t line, int rc)
{
    char msg[WP_ERRMSG_MAX];
    snprintf(msg, sizeof msg, "%s", wp_errmsg());
    return wp__err(rc, "%s:%zu: %s", y->origin, line, msg);
}

static int next_event(yctx *y, yaml_event_t *ev)
{
    if (yaml_parser_parse(&y->p, ev))
        return 0;
    if (y->p.error == YAML_MEMORY_ERROR)
        return wp__err(WP_ENOMEM, "%s: out of memory parsing YAML", y->origin);
    size_t line = y->p.problem_mark.line + 1;
    if (y->p.error == YAML_READER_ERROR) {
        line = 1;
        for (size_t i = 0; i < y->p.problem_offset && i < y->len; i++)
            line += y->text[i] == '\n';
    }
    const char *problem = y->p.problem ? y->p.problem : "syntax error";
    if (y->p.context)
        return wp__err(WP_EINVAL, "%s:%zu: invalid YAML: %s %s", y->origin, line, problem,
                       y->p.context);
    return wp__err(WP_EINVAL, "%s:%zu: invalid YAML: %s", y->origin, line, problem);
}

static bool scalar_is_null(const yaml_event_t *ev)
{
    static const char *const nulls[] = {"", "~", "null", "Null", "NULL", NULL};
    if (ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false;
    return choice_index(nulls, (const char *)ev->data.scalar.value) >= 0;
}

static const char *event_what(yaml_event_type_t t)
{
    switch (t) {
    case YAML_SEQUENCE_START_EVENT:
        return "a sequence";
    case YAML_MAPPING_START_EVENT:
        return "a mapping";
    case YAML_ALIAS_EVENT:
        return "an alias";
    case YAML_SCALAR_EVENT:
        return "a scalar";
    default:
        return "an unexpected event";
    }
}

static int mark_seen(yctx *y, const char *name, size_t line)
{
    for (size_t i = 0; i < y->n_seen; i++)
        if (strcmp(y->seen[i], name) == 0)
            return wp__err(WP_EINVAL, "%s:%zu: duplicate key '%s' (first set on line %zu)",
                           y->origin, line, name, y->seen_line[i]);
    if (y->n_seen == SEEN_MAX) /* cannot happen: see SEEN_MAX */
        return wp__err(WP_EINVAL, "%s:%zu: too many keys", y->origin, line);
    snprintf(y->seen[y->n_seen], KEY_NAME_MAX, "%s", name);
    y->seen_line[y->n_seen++] = line;
    return 0;
}

static int parse_mapping(yctx *y, const char *prefix);

/* Handles the value event of key `name` (already a full dotted name). */
static int parse_value(yctx *y, const char *name, yaml_event_t *ev)
{
    char q[QUOTE_MAX + 4];
    size_t line = ev_line(ev);
    const key_def *k = key_find(name);
    bool section = !k && section_known(name);
    if (!k && !section)
        return wp__err(WP_EINVAL, "%s:%zu: unknown key '%s' (see docs/configuration.md)",
                       y->origin, line, quote(name, q));
    if (ev->type == YAML_SCALAR_EVENT) {
        const char *v = (const char *)ev->data.scalar.value;
        if (section && scalar_is_null(ev)) /* "flush:" with every key commented out */
            return mark_seen(y, name, line);
        if (section)
            return wp__err(WP_EINVAL, "%s:%zu: '%s' is a section: expected a mapping of keys",
                           y->origin, line, name);
        if (memchr(v, '\0', ev->data.scalar.length))
            return wp__err(WP_EINVAL, "%s:%zu: %s: value contains a NUL byte", y->origin, line,
                           name);
        int rc = mark_seen(y, name, line);
        if (rc < 0)
            return rc;
        rc = key_set(y->c, k, scalar_is_null(ev) ? "" : v);
        return rc < 0 ? at_line(y, line, rc) : 0;
    }
    if (ev->type == YAML_MAPPING_START_EVENT && section) {
        int rc = mark_seen(y, name, line);
        return rc < 0 ? rc : parse_mapping(y, name);
    }
    return wp__err(WP_EINVAL, "%s:%zu: %s: expected %s, got %s", y->origin, line, name,
                   section ? "a mapping" : "a scalar value", event_what(ev->type));
}

/* Reads "key: value" pairs until MAPPING_END; the MAPPING_START is consumed. */
static int parse_mapping(yctx *y, const char *prefix)
{
    yaml_event_t ev;
    char name[KEY_NAME_MAX], q[QUOTE_MAX + 4];
    int rc;
    for (;;) {
        if ((rc = next_event(y, &ev)) < 0)
            return rc;
        if (ev.type == YAML_MAPPING_END_EVENT) {
            yaml_event_delete(&ev);
            return 0;
        }
        if (ev.type != YAML_SCALAR_EVENT) {
            rc = wp__err(WP_EINVAL, "%s:%zu: keys must be scalars, got %s", y->origin,
                         ev_line(&ev), event_what(ev.type));
            goto out_event;
        }
        const char *key = (const char *)ev.data.scalar.value;
        int n = snprintf(name, sizeof name, "%s%s%s", prefix, *prefix ? "." : "", key);
        if (n < 0 || (size_t)n >= sizeof name || strlen(key) != ev.data.scalar.length) {
            rc = wp__err(WP_EINVAL, "%s:%zu: unknown key '%s'", y->origin, ev_line(&ev),
                         quote(key, q));
            goto out_event;
        }
        yaml_event_delete(&ev);
        if ((rc = next_event(y, &ev)) < 0)
            return rc;
        rc = parse_value(y, name, &ev);
        yaml_event_delete(&ev);
        if (rc < 0)
            return rc;
    }
out_event:
    yaml_event_delete(&ev);
    return rc;
}

/* After STREAM_START: an empty stream, or one document holding a mapping
 * (or null), then STREAM_END. */
static int parse_stream(yctx *y)
{
    yaml_event_t ev;
    int rc;
    if ((rc = next_event(y, &ev)) < 0)
        return rc;
    if (ev.type == YAML_STREAM_END_EVENT)
        goto out_ok;
    yaml_event_delete(&ev); /* DOCUMENT_START */
    if ((rc = next_event(y, &ev)) < 0)
        return rc;
    if (ev.type == YAML_MAPPING_START_EVENT) {
        yaml_event_delete(&ev);
        if ((rc = parse_mapping(y, "")) < 0)
            return rc;
    } else if (ev.type == YAML_SCALAR_EVENT && scalar_is_null(&ev)) {
        yaml_event_delete(&ev);
    } else {
        rc = wp__err(WP_EINVAL, "%s:%zu: expected a mapping of keys at the top, got %s",
                     y->origin, ev_line(&ev), event_what(ev.type));
        goto out_event;
    }
    if ((rc = next_event(y, &ev)) < 0) /* DOCUMENT_END */
        return rc;
    yaml_event_delete(&ev);
    if ((rc = next_event(y, &ev)) < 0)
        return rc;
    if (ev.type != YAML_STREAM_END_EVENT) {
        rc = wp__err(WP_EINVAL, "%s:%zu: only one YAML document is allowed", y->origin,
                     ev_line(&ev));
        goto out_event;
    }
out_ok:
    rc = 0;
out_event:
    yaml_event_delete(&ev);
    return rc;
}

int wp__config_load_buffer(const char *text, size_t len, const char *origin, wp_config **out)
{
    if (!out || (!text && len))
        return wp__err(WP_EINVAL, "wp__config_load_buffer: NULL argument");
    *out = NULL;
    if (!origin)
        origin = "<config>";
    if (len > WP_CONFIG_FILE_BYTES_MAX)
        return wp__err(WP_EINVAL, "%s: config is %zu bytes; the limit is %lld", origin, len,
                       (long long)WP_CONFIG_FILE_BYTES_MAX);
    yctx *y = calloc(1, sizeof *y);
    if (!y)
        return wp__err(WP_ENOMEM, "%s: out of memory", origin);
    yaml_event_t ev;
    int rc = wp_config_default(&y->c);
    if (rc < 0)
        goto out_free_ctx;
    y->origin = origin;
    y->text = text;
    y->len = len;
    if (!yaml_parser_initialize(&y->p)) {
        rc = wp__err(WP_ENOMEM, "%s: out of memory", origin);
        goto out_free_config;
    }
    yaml_parser_set_input_string(&y->p, (const unsigned char *)(text ? text : ""), len);
    if ((rc = next_event(y, &ev)) < 0) /* STREAM_START */
        goto out_parser;
    yaml_event_delete(&ev);
    if ((rc = parse_stream(y)) < 0)
        goto out_parser;
    *out = y->c;
    y->c = NULL;
out_parser:
    yaml_parser_delete(&y->p);
out_free_config:
    wp_config_free(y->c);
out_free_ctx:
    free(y);
    return rc;
}

/* Reads at most WP_CONFIG_FILE_BYTES_MAX + 1 bytes of path into *buf. */
static int read_file(const char *path, char **buf, size_t *len)
{
    size_t cap = WP_CONFIG_FILE_BYTES_MAX + 1, n = 0;
    struct stat st;
    int rc = 0, fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return wp__err_sys(errno, "open", path);
    if (fstat(fd, &st) < 0) {
        rc = wp__err_sys(errno, "fstat", path);
        goto out_close;
    }
    if (S_ISDIR(st.st_mode)) {
        rc = wp__err(WP_EINVAL, "%s: is a directory, not a config file", path);
        goto out_close;
    }
    char *b = malloc(cap);
    if (!b) {
        rc = wp__err(WP_ENOMEM, "%s: out of memory", path);
        goto out_close;
    }
    while (n < cap) {
        ssize_t r = read(fd, b + n, cap - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            rc = wp__err_sys(errno, "read", path);
            free(b);
            goto out_close;
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    *buf = b;
    *len = n;
out_close:
    close(fd);
    return rc;
}

int wp_config_load(const char *yaml_path, wp_config **out)
{
    if (!yaml_path || !out)
        return wp__err(WP_EINVAL, "wp_config_load: NULL argument");
    *out = NULL;
    char *text = NULL;
    size_t len = 0;
    int rc = read_file(yaml_path, &text, &len);
    if (rc < 0)
        return rc;
    rc = wp__config_load_buffer(text, len, yaml_path, out);
    free(text);
    return rc;
}
