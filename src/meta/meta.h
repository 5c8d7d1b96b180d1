/* meta.h — the metadata interface (ARCHITECTURE §6, docs/metadata.md).
 * Every record carries a revision `rev` (etcd's mod_revision); updates are
 * compare-and-swap on it, creations are "create only if absent". Every
 * backend passes tests/unit/test_meta_conformance.c.
 * All calls are safe from many threads and many processes. */
#ifndef WP_META_META_H
#define WP_META_META_H

#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "base/limits.h"

typedef struct meta meta;

typedef struct {
    char name[WP_LOG_NAME_MAX + 1];
    int64_t log_id;      /* assigned by log_create, unique, never reused */
    int64_t epoch;       /* writer epoch; 0 before the first writer */
    int64_t trunc_seg, trunc_entry; /* truncation point (inclusive); -1,-1 none */
    int64_t created_ms;
    int64_t rev;         /* set by the backend */
} meta_log;

typedef struct {
    int64_t log_id, seg_id;
    int state;             /* WP_SEG_* */
    int64_t last_entry_id; /* -1 if empty or unknown (active) */
    int64_t bytes;         /* valid bytes (completed); 0 while active */
    int64_t epoch;         /* writer epoch that created it */
    int64_t created_ms, completed_ms;
    int64_t truncated_ms;  /* when GC found it wholly truncated (state
                            * TRUNCATED); retention counts from here */
    int64_t rev;
} meta_seg;

typedef struct {
    int64_t log_id;
    char name[WP_READER_NAME_MAX + 1];
    int64_t seg_id, entry_id; /* position: the next entry it will read */
    int64_t lease_id;
    int64_t rev;
} meta_reader;

struct meta_ops {
    const char *name;
    /* Creates a log with a fresh id (epoch 0, no truncation). WP_EEXIST. */
    int (*log_create)(meta *, const char *name, int64_t now_ms, meta_log *out);
    int (*log_get)(meta *, const char *name, meta_log *out); /* WP_ENOENT */
    /* Writes l's epoch/truncation if the stored rev == l->rev, then sets
     * l->rev to the new rev. WP_ECONFLICT if rev differs, WP_ENOENT. */
    int (*log_update)(meta *, meta_log *l);
    /* Deletes the log and its segments and readers. expect_rev 0: any. */
    int (*log_delete)(meta *, const char *name, int64_t expect_rev);
    /* Names starting with prefix, sorted; free with wp_free_names. */
    int (*log_list)(meta *, const char *prefix, char ***names, size_t *n);

    /* Creates s if absent AND the log's rev still equals guard->rev (so a
     * writer whose epoch was bumped cannot create segments). WP_EEXIST if
     * the segment exists, WP_ECONFLICT if the log changed. Sets s->rev. */
    int (*seg_create)(meta *, const meta_log *guard, meta_seg *s);
    int (*seg_get)(meta *, int64_t log_id, int64_t seg_id, meta_seg *out);
    /* All segments of a log by id; free(*out). */
    int (*seg_list)(meta *, int64_t log_id, meta_seg **out, size_t *n);
    /* CAS on s->rev; sets s->rev. WP_ECONFLICT, WP_ENOENT. */
    int (*seg_update)(meta *, meta_seg *s);
    int (*seg_delete)(meta *, int64_t log_id, int64_t seg_id, int64_t expect_rev);

    /* Leases: keys attached to a lease vanish when it expires or is revoked. */
    int (*lease_grant)(meta *, int64_t ttl_ms, int64_t *lease_id);
    int (*lease_keepalive)(meta *, int64_t lease_id); /* WP_ENOENT if expired */
    int (*lease_revoke)(meta *, int64_t lease_id);

    /* Reader registrations (hold GC below their position while alive).
     * reader_put upserts, attached to r->lease_id (WP_ENOENT if expired). */
    int (*reader_put)(meta *, meta_reader *r);
    int (*reader_delete)(meta *, int64_t log_id, const char *name);
    /* Live registrations of a log; free(*out). */
    int (*reader_list)(meta *, int64_t log_id, meta_reader **out, size_t *n);

    void (*close)(meta *);
};

struct meta {
    const struct meta_ops *ops;
};

/* SQLite backend in one file (created if missing; WAL mode; safe across
 * processes). */
int meta_sqlite_open(const char *path, meta **out);

#endif
