/* quorum.h — the QuorumBuffer storage backend (storage.type quorum): each
 * segment on quorum.write LogStore servers, an append durable once
 * quorum.ack of them fsync'd it (ARCHITECTURE §7.1; quorum.c). */
#ifndef WP_STORAGE_QUORUM_H
#define WP_STORAGE_QUORUM_H

#include "storage/storage.h"

#define QUORUM_W_MAX 5 /* replicas of a segment at most (5/3) */
#define QUORUM_STATIC_MAX 64 /* servers in quorum.nodes at most */

/* The recovery target of ARCHITECTURE §7.1 from the FENCE answers: last[i]
 * is replica i's last durable entry, INT64_MIN if it did not answer
 * (unknown, never "absent"); lac the highest LAC answered. The last entry
 * such that every acked entry is at or below it: at least lac, and below
 * the first entry W - A + 1 answers show absent. INT64_MIN if fewer than
 * W - A + 1 answered. */
int64_t quorum_target(int w, int a, const int64_t *last, int64_t lac);

/* Opens the backend. m (the client's metadata store, kept, not owned)
 * holds the segments' placements and the registered servers; it may be
 * NULL with a static quorum.nodes list (the segments then live on its
 * first quorum.write servers). */
struct wp_config;
struct meta;
int storage_quorum_open(const struct wp_config *cfg, const wp__logger *lg, struct meta *m,
                        storage **out);

#endif
