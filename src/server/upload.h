/* upload.h — server-driven tiering (issue 11): a LogStore server moves the
 * completed segments it holds to object storage and then drops its copies.
 *
 * Every node.upload_interval_ms the server looks at each copy it holds
 * against the segment's metadata record (docs/metadata.md §3.2):
 *   - COMPLETED, and this copy holds every entry up to the record's last
 *     entry (ARCHITECTURE §7.1: a lagging replica never uploads): it claims
 *     the segment (§3.6: create-if-absent under its node lease), completes
 *     its copy at that entry if the writer's COMPLETE never reached it,
 *     writes the copy's bytes to object storage in the S3 layout
 *     (docs/format.md §11) with the claim's generation as the writer epoch,
 *     finalizes, reads the footer and index back, compacts, seals the
 *     record (CAS: SEALED, bytes) and deletes its claim. A claimant that
 *     dies leaves its claim to expire with its lease; another replica then
 *     claims with a larger generation, reopens the objects at 0 (fencing
 *     the old claimant's late PUTs) and writes the segment again.
 *   - SEALED for node.drop_grace_ms (as seen by this server): the copy is
 *     dropped (a tombstone stays: docs/protocol.md §5.7).
 *   - No record any more while the log has others (GC deleted it and its
 *     DELETE missed this server): dropped after the same grace.
 * Without object storage configured (storage.s3.bucket empty) nothing is
 * uploaded; the rest still runs.
 *
 * Threads: one looks, node.upload_threads upload. */
#ifndef WP_SERVER_UPLOAD_H
#define WP_SERVER_UPLOAD_H

#include <stdbool.h>
#include <stdint.h>

#include "base/err.h"
#include "config/config.h"
#include "meta/meta.h"
#include "server/replica.h"

typedef struct uploader uploader;

/* What the server holds, as of the last look. */
typedef struct {
    int64_t held;           /* copies on disk */
    int64_t waiting;        /* COMPLETED segments not yet in object storage */
    int64_t waiting_bytes;  /* their bytes (as recorded, or this copy's) */
    int64_t lag_ms;         /* age of the oldest of them since completed; 0 none */
    int64_t active;         /* copies of ACTIVE segments */
    bool looked;            /* at least one look done */
} upload_view;

/* Starts the threads. *lease_id is the server's node lease (read
 * atomically: the server renews it when it expires). cfg, rs, m must
 * outlive it. */
int uploader_start(const wp_config *cfg, const wp__logger *lg, replica *rs, meta *m,
                   const int64_t *lease_id, uploader **out);
/* Whether objects storage is configured (uploads happen). */
bool uploader_uploads(const uploader *u);
void uploader_view(uploader *u, upload_view *out);
/* Looks now instead of at the next interval (e.g. after a COMPLETE). */
void uploader_kick(uploader *u);
/* True if the last look, begun at or after since_ns (wp__now_ns), found
 * no copy that is not in object storage (nothing ACTIVE, nothing
 * COMPLETED): a drained server may exit. */
bool uploader_holds_nothing_unsealed(uploader *u, int64_t since_ns);
void uploader_stop(uploader *u);
/* Process-wide counts since start, for GET /metrics: segments uploaded
 * and sealed, their bytes, failed attempts, copies dropped, uploads that
 * took over an earlier claimant's objects. */
void uploader_counters(uint64_t *uploaded, uint64_t *bytes, uint64_t *failures, uint64_t *dropped,
                       uint64_t *takeovers);

#endif
