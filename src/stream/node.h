/* node.h — a streaming node (docs/streaming.md §4, §5): hosts the
 * channels the coordinator assigns to it (the only writer of each channel's
 * log, opened at the channel's term, which fences the previous owner), and
 * serves the HTTP/JSON API: channel admin, produce (idempotent producers),
 * consume (long poll and pushed NDJSON streams).
 *
 * Threads: libmicrohttpd's listener and one thread per connection (a
 * produce waits for durability, a consume for messages: both block), one
 * sync thread (lease, registration, assignments, producer snapshots). */
#ifndef WP_STREAM_NODE_H
#define WP_STREAM_NODE_H

#include <stdbool.h>

#include "base/err.h"
#include "config/config.h"

typedef struct stream_node stream_node;

/* Opens a client of cfg (storage and metadata as configured), binds
 * stream.listen (port 0: any), registers as nodes/<node.id> (kind
 * "streaming") and starts serving. cfg must outlive it. */
int stream_node_start(const wp_config *cfg, const wp__logger *lg, stream_node **out);
/* The HTTP address actually bound ("127.0.0.1:7600"). */
const char *stream_node_addr(const stream_node *n);
/* Channels it hosts now. */
int stream_node_hosted(stream_node *n);
/* Ends the pushed streams, closes every channel's writer, deregisters,
 * stops. */
void stream_node_stop(stream_node *n);

#endif
