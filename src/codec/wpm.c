/* wpm.c — the streaming service's binary message encoding; see wpm.h and
 * docs/streaming-api.md §7. */
#include "codec/wpm.h"

#include <stdio.h>
#include <string.h>

#include "base/limits.h"
#include "codec/le.h"

bool wpm_utf8_valid(const void *p, size_t n)
{
    const uint8_t *s = p;
    for (size_t i = 0; i < n;) {
        uint8_t c = s[i];
        if (c < 0x80) {
            if (c == 0)
                return false;
            i++;
            continue;
        }
        size_t k = (c >> 5) == 6 ? 1 : (c >> 4) == 14 ? 2 : (c >> 3) == 30 ? 3 : 0;
        if (k == 0 || i + k >= n) /* the sequence's last byte is s[i + k] */
            return false;
        uint32_t cp = c & (0x3Fu >> k);
        for (size_t j = 1; j <= k; j++) {
            if ((s[i + j] & 0xC0) != 0x80)
                return false;
            cp = (cp << 6) | (s[i + j] & 0x3F);
        }
        if ((k == 1 && cp < 0x80) || (k == 2 && cp < 0x800) || (k == 3 && cp < 0x10000) ||
            cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += k + 1;
    }
    return true;
}

/* ---- encoding ------------------------------------------------------------------- */

size_t wpm_props_size(size_t n_props, const char *const *keys, const char *const *vals)
{
    size_t n = 0;
    for (size_t i = 0; i < n_props; i++)
        n += WPM_PROP_FIXED + strlen(keys[i]) + strlen(vals[i]);
    return n;
}

static uint8_t *put_props(uint8_t *p, size_t n_props, const char *const *keys,
                          const char *const *vals)
{
    for (size_t i = 0; i < n_props; i++) {
        size_t kl = strlen(keys[i]), vl = strlen(vals[i]);
        le_put16(p, (uint16_t)kl);
        le_put32(p + 2, (uint32_t)vl);
        p += 6;
        memcpy(p, keys[i], kl + 1); /* with its NUL */
        p += kl + 1;
        memcpy(p, vals[i], vl + 1);
        p += vl + 1;
    }
    return p;
}

size_t wpm_req_hdr_size(size_t producer_len) { return WPM_REQ_HDR_FIXED + producer_len; }

uint8_t *wpm_put_req_hdr(uint8_t *p, int64_t term, const char *producer, size_t producer_len)
{
    memcpy(p, WPM_MAGIC, WPM_MAGIC_LEN);
    le_puti64(p + 4, term);
    le_put16(p + 12, (uint16_t)producer_len);
    if (producer_len)
        memcpy(p + 14, producer, producer_len);
    return p + WPM_REQ_HDR_FIXED + producer_len;
}

uint8_t *wpm_put_req_msg_head(uint8_t *p, int64_t seq, const wp_payload *m)
{
    le_puti64(p, seq);
    le_put32(p + 8, (uint32_t)m->len);
    le_put16(p + 12, (uint16_t)m->n_props);
    return put_props(p + WPM_REQ_MSG_FIXED, m->n_props, m->prop_keys, m->prop_values);
}

uint8_t *wpm_put_req_msg(uint8_t *p, int64_t seq, const wp_payload *m)
{
    p = wpm_put_req_msg_head(p, seq, m);
    if (m->len)
        memcpy(p, m->data, m->len);
    return p + m->len;
}

uint8_t *wpm_put_ans_hdr(uint8_t *p, int64_t term, uint32_t count)
{
    memcpy(p, WPM_MAGIC, WPM_MAGIC_LEN);
    le_puti64(p + 4, term);
    le_put32(p + 12, count);
    return p + WPM_ANS_HDR_FIXED;
}

uint8_t *wpm_put_ans_id(uint8_t *p, wp_msg_id id, bool dup)
{
    le_puti64(p, id.segment_id);
    le_puti64(p + 8, id.entry_id);
    p[16] = dup ? 1 : 0;
    return p + WPM_ANS_ID;
}

uint8_t *wpm_put_frame_msg(uint8_t *p, wp_msg_id id, const uint8_t *data, size_t len,
                           size_t n_props, const char *const *keys, const char *const *vals)
{
    p[0] = WPM_FRAME_MSG;
    le_puti64(p + 1, id.segment_id);
    le_puti64(p + 9, id.entry_id);
    le_put32(p + 17, (uint32_t)len);
    le_put16(p + 21, (uint16_t)n_props);
    p = put_props(p + WPM_FRAME_MSG_FIXED, n_props, keys, vals);
    if (len)
        memcpy(p, data, len);
    return p + len;
}

/* ---- decoding ------------------------------------------------------------------- */

#define WHY(...) (snprintf(why, WPM_WHY_MAX, __VA_ARGS__), -1)

/* The n_props properties at p[0..n): their length, or 0 with *bad set
 * when they break the rules or do not fit. */
static size_t props_check(const uint8_t *p, size_t n, uint16_t n_props, char *why, bool *bad)
{
    size_t off = 0;
    *bad = false;
    why[0] = '\0';
    for (uint16_t i = 0; i < n_props; i++) {
        if (n - off < 6) {
            *bad = true;
            return 0;
        }
        size_t kl = le_get16(p + off), vl = le_get32(p + off + 2);
        if (vl > WP_PROP_VALUE_MAX) {
            (void)WHY("property %u: value of %zu bytes, above %lld", i, vl,
                      (long long)WP_PROP_VALUE_MAX);
            *bad = true;
            return 0;
        }
        off += 6;
        if (n - off < kl + 1 + vl + 1) {
            *bad = true;
            return 0;
        }
        const uint8_t *k = p + off, *v = p + off + kl + 1;
        if (k[kl] != 0 || v[vl] != 0 || !wpm_utf8_valid(k, kl) || !wpm_utf8_valid(v, vl)) {
            (void)WHY("property %u: a key or value that is not NUL-ended UTF-8 without NUL", i);
            *bad = true;
            return 0;
        }
        off += kl + 1 + vl + 1;
    }
    return off;
}

bool wpm_prop_next(const wpm_msg *m, size_t *off, const char **key, size_t *klen,
                   const char **val, size_t *vlen)
{
    if (*off + 6 > m->props_len)
        return false;
    const uint8_t *p = m->props + *off;
    *klen = le_get16(p);
    *vlen = le_get32(p + 2);
    *key = (const char *)p + 6;
    *val = (const char *)p + 6 + *klen + 1;
    *off += 6 + *klen + 1 + *vlen + 1;
    return true;
}

int wpm_req_hdr_decode(const uint8_t *p, size_t n, wpm_req_hdr *out, size_t *off, char *why)
{
    if (n < WPM_REQ_HDR_FIXED || memcmp(p, WPM_MAGIC, WPM_MAGIC_LEN) != 0)
        return WHY("not a %s body (no WPM1 header)", WPM_CONTENT_TYPE);
    out->term = le_geti64(p + 4);
    size_t pl = le_get16(p + 12);
    if (out->term < -1)
        return WHY("term %lld: want -1 (none) or >= 0", (long long)out->term);
    if (pl > WPM_PRODUCER_MAX || n - WPM_REQ_HDR_FIXED < pl)
        return WHY("producer of %zu bytes: want 0..%d, within the body", pl, WPM_PRODUCER_MAX);
    for (size_t i = 0; i < pl; i++)
        if (p[14 + i] < 0x21 || p[14 + i] > 0x7e)
            return WHY("producer: printable ASCII without spaces");
    memcpy(out->producer, p + 14, pl);
    out->producer[pl] = '\0';
    *off = WPM_REQ_HDR_FIXED + pl;
    return 0;
}

int wpm_req_msg_decode(const uint8_t *p, size_t n, size_t *off, size_t max_payload,
                       size_t max_props, wpm_msg *out, char *why)
{
    size_t at = *off;
    if (at > n || n - at < WPM_REQ_MSG_FIXED)
        return WHY("the body ends inside a message's header (byte %zu)", at);
    *out = (wpm_msg){.seq = le_geti64(p + at), .id = {-1, -1}};
    out->len = le_get32(p + at + 8);
    out->n_props = le_get16(p + at + 12);
    if (out->seq < -1 || out->seq >= WPM_SEQ_MAX)
        return WHY("seq %lld: want -1 (none) or 0..2^53-1", (long long)out->seq);
    if (out->len > max_payload)
        return WHY("a payload of %zu bytes, above the maximum %zu", out->len, max_payload);
    if (out->n_props > max_props)
        return WHY("%u properties, above %zu", out->n_props, max_props);
    at += WPM_REQ_MSG_FIXED;
    bool bad;
    out->props = p + at;
    out->props_len = props_check(p + at, n - at, out->n_props, why, &bad);
    if (bad)
        return why[0] ? -1 : WHY("the body ends inside a message's properties (byte %zu)", at);
    at += out->props_len;
    if (n - at < out->len)
        return WHY("the body ends inside a payload (byte %zu, %zu bytes due)", at, out->len);
    out->data = p + at;
    *off = at + out->len;
    return 0;
}

int wpm_ans_decode(const uint8_t *p, size_t n, int64_t *term, uint32_t *count,
                   const uint8_t **ids, char *why)
{
    if (n < WPM_ANS_HDR_FIXED || memcmp(p, WPM_MAGIC, WPM_MAGIC_LEN) != 0)
        return WHY("not a %s answer", WPM_CONTENT_TYPE);
    *term = le_geti64(p + 4);
    *count = le_get32(p + 12);
    if ((n - WPM_ANS_HDR_FIXED) / WPM_ANS_ID != *count || (n - WPM_ANS_HDR_FIXED) % WPM_ANS_ID)
        return WHY("an answer of %zu bytes for %u ids", n, *count);
    *ids = p + WPM_ANS_HDR_FIXED;
    return 0;
}

void wpm_ans_id(const uint8_t *ids, uint32_t i, wp_msg_id *id, bool *dup)
{
    const uint8_t *p = ids + (size_t)i * WPM_ANS_ID;
    *id = (wp_msg_id){le_geti64(p), le_geti64(p + 8)};
    *dup = p[16] != 0;
}

long long wpm_frame_decode(const uint8_t *p, size_t n, size_t max_frame, char *type,
                           wpm_msg *msg, const char **end, size_t *end_len, size_t *need,
                           char *why)
{
    *need = 0;
    why[0] = '\0';
    if (n < 1)
        return 0;
    *type = (char)p[0];
    switch (p[0]) {
    case WPM_FRAME_HEARTBEAT:
        return 1;
    case WPM_FRAME_END: {
        if (n < 5) {
            *need = 5;
            return 0;
        }
        size_t l = le_get32(p + 1);
        if (l > WPM_END_JSON_MAX)
            return WHY("an end frame of %zu bytes", l);
        if (n - 5 < l) {
            *need = 5 + l;
            return 0;
        }
        *end = (const char *)p + 5;
        *end_len = l;
        return (long long)(5 + l);
    }
    case WPM_FRAME_MSG: {
        if (n < WPM_FRAME_MSG_FIXED) {
            *need = WPM_FRAME_MSG_FIXED;
            return 0;
        }
        *msg = (wpm_msg){.seq = -1, .id = {le_geti64(p + 1), le_geti64(p + 9)}};
        msg->len = le_get32(p + 17);
        msg->n_props = le_get16(p + 21);
        if (msg->id.segment_id < 0 || msg->id.entry_id < 0)
            return WHY("a message id below 0");
        if (msg->n_props > WP_PROPS_MAX)
            return WHY("%u properties, above %d", msg->n_props, WP_PROPS_MAX);
        if (WPM_FRAME_MSG_FIXED + msg->len > max_frame)
            return WHY("a payload of %zu bytes, above the frame bound %zu", msg->len, max_frame);
        /* The properties' lengths: whole headers first (each key and value
         * needs its 6-byte header before its length is known). */
        size_t at = WPM_FRAME_MSG_FIXED, total = WPM_FRAME_MSG_FIXED + msg->len;
        for (uint16_t i = 0; i < msg->n_props; i++) {
            if (n < at + 6) {
                *need = 0; /* not known yet */
                return 0;
            }
            size_t kl = le_get16(p + at), vl = le_get32(p + at + 2);
            if (vl > WP_PROP_VALUE_MAX)
                return WHY("a property value of %zu bytes", vl);
            at += 6 + kl + 1 + vl + 1;
            total += 6 + kl + 1 + vl + 1;
            if (total > max_frame)
                return WHY("a frame above %zu bytes", max_frame);
            if (n < at) {
                *need = 0;
                return 0;
            }
        }
        if (n < total) {
            *need = total;
            return 0;
        }
        bool bad;
        msg->props = p + WPM_FRAME_MSG_FIXED;
        msg->props_len = props_check(msg->props, at - WPM_FRAME_MSG_FIXED, msg->n_props, why, &bad);
        if (bad)
            return why[0] ? -1 : WHY("properties that do not decode");
        msg->data = p + at;
        return (long long)total;
    }
    default:
        return WHY("a frame of unknown type 0x%02x", p[0]);
    }
}
