/*
 * woodpecker_stream.h — the C client of the Woodpecker streaming service
 * (docs/streaming.md): publish/subscribe channels served by streaming
 * nodes, with idempotent producers and pushed consumers that follow a
 * channel when it moves to another node. Part of libwoodpecker; it speaks
 * the nodes' HTTP/JSON API (libcurl) and finds the nodes and each
 * channel's owner in the metadata store of the configuration.
 *
 * Conventions (those of woodpecker.h)
 * - Functions that act return 0 (WP_OK) or a negative WP_E* code; after a
 *   failed call wp_errmsg() has the details (the node, the HTTP status, the
 *   server's message).
 * - The library never prints; it reports through the log callback of the
 *   config (wp_config_set_log).
 * - Thread safety is stated per function. In short: a wps_client may be
 *   shared by many threads; a wps_producer too (its calls are serialized);
 *   a wps_consumer is used by one thread at a time.
 */
#ifndef WOODPECKER_STREAM_H
#define WOODPECKER_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "woodpecker.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A channel name: 1..WPS_CHANNEL_MAX bytes of [A-Za-z0-9._-]. */
#define WPS_CHANNEL_MAX 128
/* A producer id: 1..WPS_PRODUCER_ID_MAX bytes of printable ASCII without
 * spaces (0x21..0x7e). */
#define WPS_PRODUCER_ID_MAX 128
/* Properties of one produced message, at most. */
#define WPS_PROPS_MAX 64
/* How long wps_produce (and a consumer's start from WPS_FROM_LATEST) keeps
 * retrying before it gives up, unless set otherwise. */
#define WPS_TIMEOUT_MS_DEFAULT 60000

typedef struct wps_client wps_client;
typedef struct wps_producer wps_producer;
typedef struct wps_consumer wps_consumer;

/* True if name is a valid channel name. Thread-safe. */
bool wps_channel_name_valid(const char *name);

/* ---- client ------------------------------------------------------------ */

/* Opens the metadata store the config names (meta.*; the config is copied,
 * the caller's may be freed), reads every channel record and keeps them up
 * to date: through a watch where the store has watches (etcd), else by
 * reading them every stream.assign_interval_ms (SQLite). It opens no
 * storage: the nodes read and write the channels' logs. Fails if the
 * metadata store cannot be read. Thread-safe. */
int wps_client_open(const wp_config *cfg, wps_client **out);
/* Closes the client. Every producer and consumer must be closed first. */
void wps_client_close(wps_client *c);

/* ---- channel admin ----------------------------------------------------- */
/* Each goes to one live streaming node (node registrations of kind
 * "streaming"), the next one if a node cannot be reached; WP_EUNAVAILABLE
 * if none can. Thread-safe (the client may be shared). */

/* Creates the channel (owner "" until the coordinator assigns it).
 * WP_EEXIST if it exists, WP_EINVAL for a bad name. */
int wps_channel_create(wps_client *c, const char *name);
/* Deletes the channel's record and log. WP_ENOENT if there is none. Open
 * producers then get WP_ENOENT, consumers WP_ENOENT once they have
 * returned every message they had. */
int wps_channel_delete(wps_client *c, const char *name);

/* A channel as its record says (docs/streaming.md §2). */
typedef struct {
    char name[WPS_CHANNEL_MAX + 1];
    char owner[129];    /* node id of the owner, "" while unassigned */
    char addr[256];     /* the owner's HTTP address host:port, "" if none */
    int64_t term;       /* bumped on every assignment */
    int64_t created_ms; /* unix ms */
} wps_channel_info;
/* Every channel, sorted by name. Free *out with free(). */
int wps_channel_list(wps_client *c, wps_channel_info **out, size_t *n);

/* ---- producer ---------------------------------------------------------- */

/* Opens an idempotent producer on an existing channel (WP_ENOENT if there
 * is none). producer_id NULL: a generated one, unique; else the caller's
 * (WP_EINVAL if it breaks the rule above), e.g. to keep one id across
 * restarts. The producer numbers its messages with increasing sequence
 * numbers starting above what the id used before (the open time in
 * microseconds, and the last number the channel's producers' snapshot
 * holds for the id), so a reused id is never mistaken for a duplicate.
 * Two producers with the same id must not be open at once: each one's
 * numbers would look like duplicates to the channel and be dropped.
 * Thread-safe. */
int wps_producer_open(wps_client *c, const char *channel, const char *producer_id,
                      wps_producer **out);
/* The producer's id (owned by the producer, valid until it is closed). */
const char *wps_producer_id(const wps_producer *p);
/* How long wps_produce keeps retrying one request (default
 * WPS_TIMEOUT_MS_DEFAULT; at least 1). Takes effect at the next call. */
void wps_producer_set_timeout_ms(wps_producer *p, int64_t timeout_ms);

/* Sends n messages (payload bytes and string properties; property names
 * starting with "wp." are reserved) and waits until each is durable; the
 * id of msgs[i] goes to ids_out[i] (may be NULL). Payloads are any bytes
 * (sent as they are: the binary encoding of docs/streaming-api.md §7);
 * properties, at most WPS_PROPS_MAX, must be valid UTF-8 without NUL
 * (WP_EINVAL). A batch larger than
 * stream.max_request_bytes of the config (or 10000 messages) goes as
 * several requests, in order.
 *
 * A lost answer, a move of the channel (421, 409 stale term), a node that
 * is starting or opening the channel (503), a failed connection or a
 * server error (5xx) is retried against the owner the records name, with
 * the same producer id and sequence numbers, so nothing is written twice
 * (docs/streaming-api.md §2), until the timeout (wps_producer_set_timeout_ms,
 * counted for each request): then WP_ETIMEDOUT, with the last failure in
 * wp_errmsg(). A message the channel had already made
 * durable answers with the id it got the first time, or {-1,-1} if the
 * channel no longer remembers it (beyond stream.producer_window).
 *
 * Other errors come at once: WP_ENOENT (no such channel), WP_EINVAL (a bad
 * message), WP_ETOOBIG (a message or request above the nodes' limits),
 * WP_ECORRUPT (an answer that does not decode). On any error the messages
 * of the requests that were answered have their ids in ids_out and the
 * others {-1,-1}; the others may or may not have been written, and their
 * sequence numbers are used up: sending them again in another call writes
 * them again if they had been written.
 *
 * Calls on one producer are serialized (safe from many threads; messages
 * of one call stay together and in order). */
int wps_produce(wps_producer *p, const wp_payload *msgs, size_t n, wp_msg_id *ids_out);
/* Frees the producer (nothing is buffered: every wps_produce has returned). */
void wps_producer_close(wps_producer *p);

/* ---- consumer ---------------------------------------------------------- */

/* Where a consumer starts: the first message still in the channel; the
 * first message produced after wps_consumer_open; the message with the
 * given id (or the first after it); the first message after the id. */
enum { WPS_FROM_ALL = 0, WPS_FROM_LATEST = 1, WPS_FROM_AT = 2, WPS_FROM_AFTER = 3 };

/* A message returned by wps_consume. Owned by the consumer; valid until its
 * next call (or wps_consumer_close). data has len bytes followed by a NUL
 * not counted in len. */
typedef struct {
    wp_msg_id id;
    const void *data;
    size_t len;
    size_t n_props;
    const char *const *prop_keys;
    const char *const *prop_values;
    const char *producer; /* the idempotent producer that sent it, NULL if none */
    int64_t seq;          /* its sequence number, -1 if none */
} wps_message;

/* Opens a consumer of an existing channel (WP_ENOENT if there is none) at
 * policy WPS_FROM_* (id is used by WPS_FROM_AT and WPS_FROM_AFTER only;
 * WP_EINVAL if negative). A background thread keeps one pushed stream open
 * to the channel's owner (docs/streaming-api.md §4) and queues what it
 * pushes (bounded); when the channel moves or the connection drops it
 * resumes at the new owner after the last message it queued, so the
 * consumer returns every message of the channel from its start position
 * exactly once and in id order. WPS_FROM_LATEST asks the owner for its
 * end before returning (retrying up to WPS_TIMEOUT_MS_DEFAULT: then
 * WP_ETIMEDOUT). Thread-safe. */
int wps_consumer_open(wps_client *c, const char *channel, int policy, wp_msg_id id,
                      wps_consumer **out);
/* Waits up to timeout_ms (-1: forever, 0: poll) for the next message.
 * WP_ETIMEDOUT when none came. Errors that end the stream come after every
 * message queued before them, and then on every call: WP_ENOENT (the
 * channel was deleted), WP_ETRUNCATED (the next message was truncated
 * away), WP_ECORRUPT (the node sent something that does not decode),
 * WP_ETOOBIG (a message larger than the client's bound). One thread at a
 * time. */
int wps_consume(wps_consumer *co, int timeout_ms, wps_message *out);
/* Stops the stream and frees the consumer and its last message. */
void wps_consumer_close(wps_consumer *co);

#ifdef __cplusplus
}
#endif
#endif /* WOODPECKER_STREAM_H */
