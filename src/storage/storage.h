/* storage.h — the storage backend interface. A segment is a byte stream
 * that grows by durable appends (local: one file per segment, written and
 * fdatasync'd; object storage: one object per append). The bytes are the
 * codec's (docs/format.md); storage does not interpret them.
 * Every backend passes tests/unit/test_storage_conformance.c. */
#ifndef WP_STORAGE_STORAGE_H
#define WP_STORAGE_STORAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "base/err.h"

typedef struct storage storage;
typedef struct {
    uint64_t puts, put_bytes; /* objects written and their bytes */
} storage_stats;
/* Entries read by seg_read_entries: n records (docs/format.md §4) of
 * entries first.., concatenated in len bytes; valid until the next read. */
typedef struct {
    int64_t first;
    uint32_t n;
    const uint8_t *records;
    size_t len;
} st_entries;
typedef struct st_writer st_writer;
typedef struct st_reader st_reader;

struct storage_ops {
    const char *name;
    /* Capabilities (code above asks these, never the name):
     * appends_atomic: an append becomes visible whole or not at all, even
     * across a crash (one object per append), so recovery never meets a
     * torn append: damage anywhere is corruption, only a missing append at
     * the end was never written. */
    bool appends_atomic;
    /* durable_when_visible: appended bytes become visible to readers only
     * once durable (objects), so readers in other processes may read every
     * complete block they see; otherwise they read up to the LAC hint the
     * writer publishes (seg_read_lac). */
    bool durable_when_visible;
    /* Defaults for this kind of store, applied where the configuration
     * does not set the key (0: the configuration's default): a flush's
     * bytes and interval (object storage is batch-oriented: each append
     * is a request), and the shortest poll interval of a reader following
     * a writer in another process (each poll of object storage lists). */
    int64_t flush_bytes_default, flush_interval_ms_default, poll_min_ms;
    /* Default of flush.max_threads (0: the configuration's): appends in
     * flight at once, for backends with seg_append_nth. */
    int64_t flush_threads_default;
    /* Ownership, one rule for every backend: a segment is owned by the
     * highest epoch that created, fenced or reopened it, and nobody acts on
     * a segment owned by a higher epoch than its own (WP_EFENCED).
     *
     * Creates segment (log_id, seg_id) empty and durable (its directory
     * entry fsync'd), owned by writer epoch `epoch`. WP_EEXIST if present;
     * WP_EFENCED if a higher epoch already claimed it. */
    int (*seg_create)(storage *, int64_t log_id, int64_t seg_id, int64_t epoch, st_writer **out);
    /* Opens an existing segment for appending at byte len (cutting anything
     * after it, e.g. a torn tail), for the writer of epoch `epoch` which must
     * have fenced it first (used to write the footer during recovery).
     * WP_EFENCED if it is owned by a higher epoch; the owner check and the
     * cut are atomic with respect to other fencers and reopeners, and no
     * higher epoch's fence can slip between the cut and this writer's
     * appends without failing them. */
    int (*seg_reopen)(storage *, int64_t log_id, int64_t seg_id, int64_t epoch, uint64_t len,
                      st_writer **out);
    /* Appends the bytes at the end. Returns 0 only when they are durable
     * (written and fdatasync'd) AND the segment had not been fenced against
     * this writer when they became durable; WP_EFENCED otherwise. After any
     * error the writer is failed for good: every later call returns an error
     * (fsyncgate: never retry an fsync and trust it). Not thread-safe: one
     * caller at a time per writer. */
    int (*seg_append)(st_writer *, const struct iovec *iov, int iovcnt);
    /* Optional (NULL if the backend cannot): the same as the k-th append of
     * this writer (k counts every append since seg_create/seg_reopen, from
     * 0), callable from several threads at once so that uploads overlap.
     * The caller uses each k once, calls it only after appends < k were
     * issued, and treats append k as durable only once every append < k
     * returned 0. After any error the writer is failed for good; appends
     * > k may have landed (they are beyond what the caller acknowledged). */
    int (*seg_append_nth)(st_writer *, uint64_t k, const struct iovec *iov, int iovcnt);
    /* Publishes a hint "entries up to lac are durable" for readers in other
     * processes (no sync needed: it is written after the data's fdatasync).
     * May be a no-op for backends where appended bytes are durable once
     * visible. */
    int (*seg_publish_lac)(st_writer *, int64_t lac);
    uint64_t (*seg_writer_size)(st_writer *); /* bytes appended so far */
    void (*seg_writer_close)(st_writer *);

    /* Fences the segment against every writer of an epoch < `epoch`: after
     * this returns, no such writer's seg_append returns 0. Idempotent at
     * the same epoch; WP_EFENCED (nothing done) if a higher epoch owns the
     * segment; WP_ENOENT if it does not exist. (Quorum: a server cannot
     * tell "never written" from "first ADD still on its way", so a fence
     * keeps an empty copy owned by `epoch` and returns 0: the late ADDs of
     * an older writer are refused by it.) */
    int (*seg_fence)(storage *, int64_t log_id, int64_t seg_id, int64_t epoch);

    /* Readers. seg_read returns *got < len only at the current end. */
    int (*seg_open_read)(storage *, int64_t log_id, int64_t seg_id, st_reader **out);
    int (*seg_read)(st_reader *, uint64_t off, void *buf, size_t len, size_t *got);
    int (*seg_size)(st_reader *, uint64_t *size); /* current length */
    /* The last published LAC hint; -1 if none. WP_ENOTSUP if the backend
     * has none. */
    int (*seg_read_lac)(st_reader *, int64_t *lac);
    void (*seg_reader_close)(st_reader *);

    /* Deletion is idempotent (missing is fine) and durable. A writer still
     * appending to a deleted segment gets an error (WP_EFENCED or
     * WP_ECLOSED) on its next append instead of its acknowledgement. */
    int (*seg_delete)(storage *, int64_t log_id, int64_t seg_id);
    int (*log_delete)(storage *, int64_t log_id);
    /* Segment ids present for a log, ascending; free(*ids). */
    int (*seg_list)(storage *, int64_t log_id, int64_t **ids, size_t *n);

    /* Optional (NULL: the backend needs neither). seg_finalize records that
     * the segment is complete at len bytes (its stream ends with the
     * logstore's footer): object storage writes the footer object, after
     * which readers read exactly those bytes and the segment cannot change
     * (format.md section 11.1). Idempotent; WP_ECORRUPT if it was
     * finalized at another length, or len is not an append boundary.
     * seg_compact rewrites a finalized segment's small objects into objects
     * of about max_bytes, crash-safe and safe against concurrent
     * compactors (section 11.2); *compact tells whether the segment is now
     * compact. WP_ENOENT if not finalized, WP_ENOTSUP if the endpoint
     * cannot commit a compaction. Readers see the same bytes throughout. */
    int (*seg_finalize)(storage *, int64_t log_id, int64_t seg_id, uint64_t len);
    int (*seg_compact)(storage *, int64_t log_id, int64_t seg_id, uint64_t max_bytes,
                       bool *compact);

    /* Optional (NULL: the store's fencing always holds). Whether the
     * store's fencing primitive holds (object storage: the endpoint honours
     * If-None-Match); when it does not, writers check their epoch in
     * metadata before every ack. */
    int (*fence_probe)(storage *, bool *holds);
    /* Optional (NULL: none): counters since open, for wp_log_compact's
     * report and benchmarks. */
    void (*stats)(storage *, storage_stats *out);

    /* Optional, for backends that keep entries rather than a byte stream
     * (quorum: replicas on LogStore servers, docs/protocol.md). With
     * seg_recover the backend recovers a segment by its own rules (the
     * quorum rules of ARCHITECTURE §7.1) instead of lseg's scan of the byte
     * stream: fence at `epoch`, find the last entry every acked entry is
     * at or below, complete the segment there; *bytes may be 0. With
     * seg_read_entries readers take entries, not bytes: the records of
     * entries [from, min(upto, what is readable)], at most max_bytes of
     * them (at least one), into out (the reader's buffer, valid until the
     * next call); confirmed entries only, unless `completed` (the caller
     * knows entries up to upto are acked). n == 0: nothing yet. The
     * records are checked (each one's CRC) by the backend before it
     * returns them, so the reader walks them with rec_decode_checked. */
    int (*seg_recover)(storage *, int64_t log_id, int64_t seg_id, int64_t epoch,
                       int64_t *last_entry_id, uint64_t *bytes);
    int (*seg_read_entries)(st_reader *, int64_t from, int64_t upto, bool completed,
                            size_t max_bytes, st_entries *out);
    /* Optional, with seg_read_entries (NULL: reads answer at once): the
     * reader's next seg_read_entries of a segment not `completed` that
     * finds nothing readable may wait up to wait_ms for entries to become
     * readable (the servers push them: a held READ) before answering
     * n == 0. 0: answer at once. */
    void (*seg_reader_wait)(st_reader *, int wait_ms);

    /* Optional, for backends that place each segment on some of many
     * servers (quorum). seg_place chooses where a new segment will live
     * and writes it as text into out[cap] (docs/metadata.md §3.2); the
     * writer records it in the segment's metadata record before
     * seg_create, and every operation on the segment, in any process,
     * finds its servers there. seg_writer_degraded tells the writer that
     * its segment lost a server and a better placement is possible: the
     * writer then rolls to a new segment. */
    int (*seg_place)(storage *, int64_t log_id, int64_t seg_id, char *out, size_t cap);
    bool (*seg_writer_degraded)(st_writer *);

    void (*close)(storage *);
};

struct storage {
    const struct storage_ops *ops;
    const wp__logger *logger; /* may be NULL */
    /* The metadata store of the client that opened it (may be NULL): the
     * placements of segments and the registered servers live there. */
    struct meta *meta;
};

/* Local file system backend rooted at `root` (created if missing). */
int storage_local_open(const char *root, const wp__logger *logger, storage **out);
/* The owner epoch of a local segment (its fence file; docs/format.md §9):
 * -1 if it has none. For the LogStore replica, which owns its disk. */
int storage_local_owner(storage *s, int64_t log_id, int64_t seg_id, int64_t *epoch);

/* Opens the backend cfg->storage_type names. The one place that maps a
 * type name to a backend: code above the interface asks the ops'
 * capabilities, never the name. */
struct wp_config;
struct meta;
int storage_open(const struct wp_config *cfg, const wp__logger *logger, struct meta *m,
                 storage **out);

#endif
