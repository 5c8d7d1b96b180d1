/* msgid.c — message id helpers (ARCHITECTURE §2). */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "base/err.h"

const wp_msg_id WP_EARLIEST = {-1, -1};
const wp_msg_id WP_LATEST = {INT64_MAX, INT64_MAX};

int wp_msg_id_cmp(wp_msg_id a, wp_msg_id b)
{
    if (a.segment_id != b.segment_id)
        return a.segment_id < b.segment_id ? -1 : 1;
    if (a.entry_id != b.entry_id)
        return a.entry_id < b.entry_id ? -1 : 1;
    return 0;
}

char *wp_msg_id_format(wp_msg_id id, char *buf)
{
    snprintf(buf, WP_MSG_ID_STR_MAX, "%" PRId64 ":%" PRId64, id.segment_id, id.entry_id);
    return buf;
}

static int parse_part(const char *s, const char *end, int64_t *out)
{
    if (s == end || end - s > 19)
        return -1;
    int64_t v = 0;
    for (const char *p = s; p < end; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        int d = *p - '0';
        if (v > (INT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

int wp_msg_id_parse(const char *s, wp_msg_id *out)
{
    if (!s || !out)
        return wp__err(WP_EINVAL, "message id: NULL");
    const char *colon = s;
    while (*colon && *colon != ':')
        colon++;
    const char *end = colon;
    while (*end)
        end++;
    wp_msg_id id;
    if (*colon != ':' || parse_part(s, colon, &id.segment_id) ||
        parse_part(colon + 1, end, &id.entry_id))
        return wp__err(WP_EINVAL, "bad message id '%.64s' (want SEG:ENTRY, non-negative)", s);
    *out = id;
    return WP_OK;
}

void wp_msg_id_encode(wp_msg_id id, uint8_t out[16])
{
    uint64_t a = (uint64_t)id.segment_id, b = (uint64_t)id.entry_id;
    for (int i = 0; i < 8; i++) {
        out[i] = (uint8_t)(a >> (56 - 8 * i));
        out[8 + i] = (uint8_t)(b >> (56 - 8 * i));
    }
}

wp_msg_id wp_msg_id_decode(const uint8_t in[16])
{
    uint64_t a = 0, b = 0;
    for (int i = 0; i < 8; i++) {
        a = (a << 8) | in[i];
        b = (b << 8) | in[8 + i];
    }
    return (wp_msg_id){(int64_t)a, (int64_t)b};
}
