/* config.h — the resolved configuration (docs/configuration.md lists every
 * key, its default and bounds). Filled by config.c; read by the client. */
#ifndef WP_CONFIG_CONFIG_H
#define WP_CONFIG_CONFIG_H

#include <stdint.h>

#include "base/limits.h"
#include "woodpecker.h"

struct wp_config {
    char storage_type[16];          /* storage.type: local */
    char storage_root[WP_PATH_MAX]; /* storage.root */
    char meta_type[16];             /* meta.type: sqlite */
    char meta_path[WP_PATH_MAX];    /* meta.path ("" = <storage.root>/meta.sqlite) */
    char meta_prefix[256];          /* meta.prefix */
    int64_t segment_max_bytes;      /* segment.max_bytes */
    int64_t segment_max_age_ms;     /* segment.max_age_ms */
    int64_t segment_max_blocks;     /* segment.max_blocks */
    int64_t flush_max_bytes;        /* flush.max_bytes */
    int64_t flush_max_interval_ms;  /* flush.max_interval_ms */
    int64_t flush_max_entries;      /* flush.max_entries */
    int64_t writer_max_pending_bytes; /* writer.max_pending_bytes */
    int64_t writer_max_entry_bytes; /* writer.max_entry_bytes */
    int64_t retention_ttl_ms;       /* retention.ttl_ms */
    int64_t gc_interval_ms;         /* gc.interval_ms */
    int64_t reader_lease_ttl_ms;    /* reader.lease_ttl_ms */
    int64_t reader_poll_max_ms;     /* reader.poll_max_ms (cross-process tail) */
    int log_level;                  /* log.level: debug|info|warn|error */
    wp_log_fn log_fn;
    void *log_arg;
};

/* Parses YAML text (as wp_config_load does for a file) over the defaults.
 * `origin` names the source in error messages. Used by the fuzz target. */
int wp__config_load_buffer(const char *text, size_t len, const char *origin, wp_config **out);
/* Sets the default for a key after the fact (e.g. meta.path from storage.root). */
const char *wp__config_meta_path(const wp_config *c, char *buf, size_t len);

#endif
