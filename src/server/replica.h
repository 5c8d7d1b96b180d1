/* replica.h — a LogStore server's copies of segments (issue 10): the
 * server-side half of QuorumBuffer, without the network. Each segment is a
 * local-storage segment in the format of docs/format.md (one file, synced
 * before an ADD is answered), owned by the highest writer epoch that
 * created, fenced or wrote it (the local fence file, synced before a FENCE
 * is answered, so it survives a restart). The quorum rules of
 * ARCHITECTURE §7.1 are the client's; a replica enforces what it alone
 * can: no write below the fence epoch, no gap in entry ids, no completion
 * of a copy that does not hold [0, last].
 *
 * Thread-safe: operations on different segments run in parallel (one lock
 * per segment); on one segment they are serialized. After a failed write or
 * sync a copy is failed for good (fsyncgate): every later request on it
 * gets WP_EIO. A deleted segment leaves a tombstone (docs/protocol.md §5.7):
 * a late ADD, FENCE or COMPLETE is refused (WP_EFENCED), a READ gets
 * WP_ENOENT. */
#ifndef WP_SERVER_REPLICA_H
#define WP_SERVER_REPLICA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"

typedef struct replica replica;

/* Opens (creating if missing) the data directory. Segments are loaded
 * lazily, on first use after a restart. */
int replica_open(const char *dir, const wp__logger *lg, replica **out);
void replica_close(replica *rs);

/* What a replica holds of one segment. */
typedef struct {
    int64_t last;   /* last durable entry id on this replica (-1: none) */
    int64_t lac;    /* highest LAC a writer told it (-1: none; not durable) */
    int64_t epoch;  /* the owner (fence) epoch (-1: none) */
    bool completed; /* sealed here at `last` */
    bool deleted;   /* a tombstone: deleted here */
    uint64_t bytes; /* of a completed copy: its length (the segment file) */
} replica_state;

/* ADD: entries [first, first + n) as n concatenated records (docs/format.md
 * §4) of len bytes, from a writer of `epoch`, durable on return; n == 0 only
 * records the LAC (docs/protocol.md §5.2: nothing is written). Entries
 * this replica already holds are skipped (a resend). WP_EFENCED if epoch is
 * below the owner's, WP_EAGAIN if first is past the next entry this
 * replica expects (a gap: *out->last tells where it is), WP_ECLOSED if the
 * copy is completed, WP_ECORRUPT if the records do not parse. */
int replica_add(replica *rs, int64_t log_id, int64_t seg_id, int64_t epoch, int64_t first,
                uint32_t n, const uint8_t *records, size_t len, int64_t lac, replica_state *out);

/* FENCE: makes `epoch` the owner (synced) so that no writer of a lower
 * epoch adds anything any more; a missing segment is created empty (so a
 * stale writer cannot create it). WP_EFENCED if a higher epoch owns it. */
int replica_fence(replica *rs, int64_t log_id, int64_t seg_id, int64_t epoch, replica_state *out);

/* READ_LAC: the state. WP_ENOENT if this replica has no such segment. */
int replica_state_get(replica *rs, int64_t log_id, int64_t seg_id, replica_state *out);

/* READ: the records of entries from `from` up to min(upto, last), as many
 * as fit max_bytes (at least one), copied into buf. buf (cap bytes, NULL
 * and 0 at first) is the caller's: kept from one READ to the next and
 * grown (realloc) when a batch needs more; free it when done. first and n
 * describe the records (len bytes); n == 0 if there is nothing yet. */
typedef struct {
    uint8_t *buf;
    size_t cap;
    size_t len;
    int64_t first;
    uint32_t n;
} replica_batch;
int replica_read(replica *rs, int64_t log_id, int64_t seg_id, int64_t from, int64_t upto,
                 size_t max_bytes, replica_batch *out, replica_state *st);

/* COMPLETE: seals this copy with last entry `last` (entries past it, never
 * acked by a quorum, are cut), for a writer of `epoch`. Idempotent at the
 * same last; WP_EFENCED below the owner; WP_ENOENT if this replica does
 * not hold [0, last] (it lagged: it must not seal short); WP_ECONFLICT if
 * it was completed at another last. */
int replica_complete(replica *rs, int64_t log_id, int64_t seg_id, int64_t epoch, int64_t last,
                     replica_state *out);

/* DELETE: one segment, or every segment of the log (seg_id < 0), leaving
 * a tombstone (synced before the data goes). Idempotent. */
int replica_delete(replica *rs, int64_t log_id, int64_t seg_id);

/* The copies on disk (not deleted), sorted by (log_id, seg_id); free(*out). */
typedef struct {
    int64_t log_id, seg_id;
} replica_id;
int replica_list(replica *rs, replica_id **out, size_t *n);

/* Reads bytes [off, off + len) of a completed copy: its segment file as
 * written (docs/format.md: header, blocks, index, footer), which no longer
 * changes. *got < len only at its end. WP_ENOENT if it is not held,
 * WP_EINVAL if it is not completed. */
int replica_read_bytes(replica *rs, int64_t log_id, int64_t seg_id, uint64_t off, void *buf,
                       size_t len, size_t *got);

typedef struct {
    uint64_t disk_free, disk_total; /* bytes, of the data directory's file system */
    uint64_t segments;              /* copies held on disk */
} replica_stats;
int replica_stats_get(replica *rs, replica_stats *out);

#endif
