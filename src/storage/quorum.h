/* quorum.h — the QuorumBuffer storage backend (storage.type quorum): each
 * segment on quorum.write LogStore servers, an append durable once
 * quorum.ack of them fsync'd it (ARCHITECTURE §7.1; quorum.c). */
#ifndef WP_STORAGE_QUORUM_H
#define WP_STORAGE_QUORUM_H

#include "storage/storage.h"

#define QUORUM_W_MAX 5 /* replicas of a segment at most (5/3) */

struct wp_config;
int storage_quorum_open(const struct wp_config *cfg, const wp__logger *lg, storage **out);

#endif
