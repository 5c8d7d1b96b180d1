/* logstore.h — the LogStore server (issue 10): serves the wire protocol of
 * docs/protocol.md over TCP for a replica store (replica.h), and registers
 * itself in metadata as nodes/<node.id> (kind "logstore") under a lease it
 * keeps alive.
 *
 * Threads: one event loop (epoll) owns every socket and connection; the
 * requests of a segment go to one of node.workers worker threads (chosen by
 * the segment, so a segment's ADDs are applied and answered in order, and
 * consecutive ADDs of a segment are written with one sync: group commit),
 * which hand the answers back to the loop through an eventfd; one thread
 * keeps the lease alive. No thread per connection. Every connection has a
 * bounded input (the frame reader's body_max), a bounded number of
 * unanswered requests (PROTO_INFLIGHT_MAX: then it is not read until
 * answers go out) and a bounded output buffer; a bad frame closes that
 * connection (logged), never the server. */
#ifndef WP_SERVER_LOGSTORE_H
#define WP_SERVER_LOGSTORE_H

#include <stdbool.h>

#include "base/err.h"
#include "config/config.h"

typedef struct logstore logstore;

/* Opens the data directory (node.data_dir), binds node.listen (port 0: any
 * free port), registers in the metadata cfg names, and starts serving.
 * cfg must outlive the server; lg may be NULL. */
int logstore_start(const struct wp_config *cfg, const wp__logger *lg, logstore **out);
/* The address actually bound ("127.0.0.1:7400"). */
const char *logstore_addr(const logstore *ls);
/* Where GET /metrics is served (node.metrics_listen as bound), or NULL. */
const char *logstore_metrics_addr(const logstore *ls);
/* Starts draining: the server takes no new segments (a new segment's
 * first ADD gets WP_EUNAVAILABLE) and registers no room at once, so
 * placement leaves it out and writers whose segments it holds roll to
 * others (storage.type quorum); the segments it holds are still served.
 * The server's uploads go on; logstore_drained tells when it may exit. */
void logstore_drain(logstore *ls);
/* True once draining and a look begun after the drain found nothing held
 * that is not in object storage (no ACTIVE or COMPLETED copy): the
 * server may stop. */
bool logstore_drained(logstore *ls);
/* True once the server failed for good (a failed write or sync, or its
 * event loop died): it must stop. */
bool logstore_failed(const logstore *ls);
/* Deregisters, closes every connection, stops the threads, frees. */
void logstore_stop(logstore *ls);

#endif
