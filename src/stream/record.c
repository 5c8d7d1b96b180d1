/* record.c — channel names and records; see stream.h. */
#include "stream/stream.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "client/stream_client.h"

/* The names, the records and ids have one decoder, the client library's
 * (src/client/stream.c): node, coordinator and clients agree by
 * construction. */
bool stream_channel_valid(const char *name) { return sc_channel_valid(name); }

_Static_assert(STREAM_CHANNEL_MAX == WPS_CHANNEL_MAX, "one channel name bound");

void stream_log_name(const char *channel, char out[WP_LOG_NAME_MAX + 1])
{
    snprintf(out, WP_LOG_NAME_MAX + 1, "%s%s", STREAM_LOG_PREFIX, channel);
}

char *stream_channel_json(const stream_channel *ch)
{
    char log[WP_LOG_NAME_MAX + 1];
    stream_log_name(ch->name, log);
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    bool ok = cJSON_AddStringToObject(o, "log", log) &&
              cJSON_AddNumberToObject(o, "term", (double)ch->term) &&
              cJSON_AddStringToObject(o, "owner", ch->owner) &&
              cJSON_AddStringToObject(o, "addr", ch->addr) &&
              cJSON_AddNumberToObject(o, "created_ms", (double)ch->created_ms);
    char *s = ok ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    return s;
}

int stream_channel_decode(const char *name, const uint8_t *v, size_t len, stream_channel *out)
{
    sc_rec r;
    *out = (stream_channel){0};
    int rc = sc_rec_decode(name, v, len, &r);
    if (rc == WP_OK) {
        memcpy(out->name, r.name, sizeof out->name);
        memcpy(out->owner, r.owner, sizeof out->owner);
        memcpy(out->addr, r.addr, sizeof out->addr);
        out->term = r.term;
        out->created_ms = r.created_ms;
    }
    return rc;
}

int stream_channel_get(meta *m, const char *name, stream_channel *out)
{
    char key[META_KV_KEY_MAX + 1];
    snprintf(key, sizeof key, "%s%s", STREAM_KEY_CHANNELS, name);
    meta_kv kv = {0};
    int rc = m->ops->kv_get(m, key, &kv);
    if (rc == WP_OK) {
        rc = stream_channel_decode(name, kv.value, kv.len, out);
        out->rev = kv.rev;
    }
    meta_kv_free(&kv);
    return rc;
}

int stream_channel_list(meta *m, stream_channel **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    meta_kv *kvs = NULL;
    size_t k = 0;
    int rc = m->ops->kv_list(m, STREAM_KEY_CHANNELS, &kvs, &k);
    if (rc)
        return rc;
    stream_channel *v = calloc(k ? k : 1, sizeof *v);
    if (!v)
        rc = wp__err(WP_ENOMEM, "channel list of %zu", k);
    size_t pl = strlen(STREAM_KEY_CHANNELS);
    for (size_t i = 0; rc == WP_OK && i < k; i++) {
        rc = stream_channel_decode(kvs[i].key + pl, kvs[i].value, kvs[i].len, &v[i]);
        v[i].rev = kvs[i].rev;
    }
    meta_kv_free_list(kvs, k);
    if (rc) {
        free(v);
        return rc;
    }
    *out = v;
    *n = k;
    return WP_OK;
}

void stream_id_text(wp_msg_id id, char out[48])
{
    snprintf(out, 48, "%" PRId64 ":%" PRId64, id.segment_id, id.entry_id);
}

bool stream_id_parse(const char *s, wp_msg_id *out) { return s && sh_id_parse(s, out); }
