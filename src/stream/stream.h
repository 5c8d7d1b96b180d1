/* stream.h — the streaming service's shared pieces (issue 12,
 * docs/streaming.md): channel names, the channel record (§2) and its JSON,
 * message ids as text. Used by the coordinator (coord.c), the streaming
 * node (node.c) and tests. */
#ifndef WP_STREAM_STREAM_H
#define WP_STREAM_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "base/limits.h"
#include "meta/meta.h"
#include "woodpecker.h"

#define STREAM_CHANNEL_MAX 128 /* bytes of a channel name, [A-Za-z0-9._-] */
#define STREAM_KEY_CHANNELS "stream/channels/"
#define STREAM_KEY_COORD "stream/coord"
#define STREAM_KEY_PRODUCERS "stream/producers/"
#define STREAM_LOG_PREFIX "channel/"
#define STREAM_NODE_KIND "streaming"

bool stream_channel_valid(const char *name);
/* "channel/<name>": the channel's log. */
void stream_log_name(const char *channel, char out[WP_LOG_NAME_MAX + 1]);

/* A channel record (docs/streaming.md §2). */
typedef struct {
    char name[STREAM_CHANNEL_MAX + 1];
    int64_t term;
    char owner[WP_NODE_ID_MAX + 1];    /* "" unassigned */
    char addr[META_NODE_ADDR_MAX + 1]; /* the owner's HTTP address */
    int64_t created_ms;
    int64_t rev; /* of the kv record */
} stream_channel;

/* JSON of the record's value (malloc'd, NUL-terminated). */
char *stream_channel_json(const stream_channel *ch);
/* Decodes the value of stream/channels/<name> (name from the key).
 * WP_ECORRUPT if it does not follow the rules. */
int stream_channel_decode(const char *name, const uint8_t *v, size_t len, stream_channel *out);
/* Reads one record; WP_ENOENT. */
int stream_channel_get(meta *m, const char *name, stream_channel *out);
/* Every channel record, sorted by name; free(*out). */
int stream_channel_list(meta *m, stream_channel **out, size_t *n);

/* "S:E" <-> id. */
void stream_id_text(wp_msg_id id, char out[48]);
bool stream_id_parse(const char *s, wp_msg_id *out);

#endif
