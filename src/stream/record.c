/* record.c — channel names and records; see stream.h. */
#include "stream/stream.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

bool stream_channel_valid(const char *name)
{
    size_t n = name ? strlen(name) : 0;
    if (n == 0 || n > STREAM_CHANNEL_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return false;
    }
    return true;
}

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

/* An integer field in [0, 2^53] (exact in a JSON number). */
static bool get_int(const cJSON *o, const char *k, int64_t *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > 9007199254740992.0 ||
        v->valuedouble != (double)(int64_t)v->valuedouble)
        return false;
    *out = (int64_t)v->valuedouble;
    return true;
}

static bool get_str(const cJSON *o, const char *k, char *out, size_t cap)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!cJSON_IsString(v) || strlen(v->valuestring) >= cap)
        return false;
    snprintf(out, cap, "%s", v->valuestring);
    return true;
}

int stream_channel_decode(const char *name, const uint8_t *v, size_t len, stream_channel *out)
{
    *out = (stream_channel){0};
    if (!stream_channel_valid(name))
        return wp__err(WP_ECORRUPT, "channel record: bad name '%.140s'", name);
    snprintf(out->name, sizeof out->name, "%s", name);
    cJSON *o = cJSON_ParseWithLength((const char *)v, len);
    char log[WP_LOG_NAME_MAX + 1], want[WP_LOG_NAME_MAX + 1];
    stream_log_name(name, want);
    bool ok = cJSON_IsObject(o) && get_str(o, "log", log, sizeof log) && strcmp(log, want) == 0 &&
              get_int(o, "term", &out->term) && get_str(o, "owner", out->owner, sizeof out->owner) &&
              get_str(o, "addr", out->addr, sizeof out->addr) &&
              get_int(o, "created_ms", &out->created_ms) &&
              (!out->owner[0] || meta_node_id_valid(out->owner, strlen(out->owner)));
    cJSON_Delete(o);
    if (!ok)
        return wp__err(WP_ECORRUPT, "channel record of '%s' does not decode", name);
    return WP_OK;
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

bool stream_id_parse(const char *s, wp_msg_id *out)
{
    if (!s)
        return false;
    char *end;
    long long a = strtoll(s, &end, 10);
    if (end == s || *end != ':' || a < 0)
        return false;
    const char *t = end + 1;
    long long b = strtoll(t, &end, 10);
    if (end == t || *end || b < 0)
        return false;
    *out = (wp_msg_id){a, b};
    return true;
}
