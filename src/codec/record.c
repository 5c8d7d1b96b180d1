/* record.c — one entry as a record: docs/format.md §4.
 *
 *   crc:u32 body_len:u32 | n_props:u16 flags:u16 property* payload
 *   property := klen:u16 vlen:u32 key value
 * The crc covers body_len and the body (bytes 4 .. 8+body_len-1). */
#include <assert.h>
#include <inttypes.h>
#include <string.h>

#include "base/err.h"
#include "base/limits.h"
#include "codec/codec.h"
#include "codec/le.h"

#define REC_HEADER_SIZE 8    /* crc + body_len */
#define REC_BODY_FIXED 4     /* n_props + flags */
#define REC_PROP_HEADER 6    /* klen + vlen */
#define REC_BODY_MAX (REC_BODY_FIXED + WP_PROPS_BYTES_MAX + WP_ENTRY_BYTES_MAX)
_Static_assert(REC_BODY_MAX < (1LL << 32), "body_len fits u32");

/* Bytes of the encoded property area of a checked payload. */
static size_t props_size(const wp_payload *p)
{
    size_t n = 0;
    for (size_t i = 0; i < p->n_props; i++)
        n += REC_PROP_HEADER + strlen(p->prop_keys[i]) + strlen(p->prop_values[i]);
    return n;
}

static int check_props(const wp_payload *p)
{
    if (p->n_props > WP_PROPS_MAX)
        return wp__err(WP_ETOOBIG, "entry has %zu properties, above the maximum %d",
                       p->n_props, WP_PROPS_MAX);
    if (p->n_props > 0 && (!p->prop_keys || !p->prop_values))
        return wp__err(WP_EINVAL, "entry has %zu properties but a NULL %s array",
                       p->n_props, !p->prop_keys ? "key" : "value");
    size_t total = 0;
    for (size_t i = 0; i < p->n_props; i++) {
        const char *k = p->prop_keys[i], *v = p->prop_values[i];
        if (!k || !v)
            return wp__err(WP_EINVAL, "property %zu has a NULL %s", i, !k ? "key" : "value");
        size_t klen = strnlen(k, (size_t)WP_PROP_KEY_MAX + 1);
        size_t vlen = strnlen(v, (size_t)WP_PROP_VALUE_MAX + 1);
        if (klen == 0)
            return wp__err(WP_EINVAL, "property %zu has an empty key", i);
        if (klen > WP_PROP_KEY_MAX)
            return wp__err(WP_ETOOBIG, "property %zu key is longer than %d bytes", i,
                           WP_PROP_KEY_MAX);
        if (vlen > WP_PROP_VALUE_MAX)
            return wp__err(WP_ETOOBIG, "property %zu value is longer than %lld bytes", i,
                           (long long)WP_PROP_VALUE_MAX);
        total += REC_PROP_HEADER + klen + vlen;
        if (total > WP_PROPS_BYTES_MAX)
            return wp__err(WP_ETOOBIG, "properties take more than %lld bytes (at property %zu)",
                           (long long)WP_PROPS_BYTES_MAX, i);
    }
    return 0;
}

int rec_check(const wp_payload *p, size_t max_entry_bytes)
{
    if (!p)
        return wp__err(WP_EINVAL, "entry is NULL");
    size_t cap = max_entry_bytes < (size_t)WP_ENTRY_BYTES_MAX ? max_entry_bytes
                                                                : (size_t)WP_ENTRY_BYTES_MAX;
    if (p->len > cap)
        return wp__err(WP_ETOOBIG, "entry payload is %zu bytes, above the maximum %zu",
                       p->len, cap);
    if (p->len > 0 && !p->data)
        return wp__err(WP_EINVAL, "entry payload has length %zu but NULL data", p->len);
    return check_props(p);
}

size_t rec_size(const wp_payload *p)
{
    return REC_HEADER_SIZE + REC_BODY_FIXED + props_size(p) + p->len;
}

size_t rec_encode(const wp_payload *p, uint8_t *out)
{
    assert(p->n_props <= WP_PROPS_MAX && p->len <= (size_t)WP_ENTRY_BYTES_MAX);
    uint8_t *q = out + REC_HEADER_SIZE;
    le_put16(q, (uint16_t)p->n_props);
    le_put16(q + 2, 0);
    q += REC_BODY_FIXED;
    for (size_t i = 0; i < p->n_props; i++) {
        size_t klen = strlen(p->prop_keys[i]), vlen = strlen(p->prop_values[i]);
        assert(klen >= 1 && klen <= WP_PROP_KEY_MAX && vlen <= WP_PROP_VALUE_MAX);
        le_put16(q, (uint16_t)klen);
        le_put32(q + 2, (uint32_t)vlen);
        q += REC_PROP_HEADER;
        memcpy(q, p->prop_keys[i], klen);
        q += klen;
        memcpy(q, p->prop_values[i], vlen);
        q += vlen;
    }
    if (p->len)
        memcpy(q, p->data, p->len);
    q += p->len;
    size_t body_len = (size_t)(q - out) - REC_HEADER_SIZE;
    assert(body_len <= REC_BODY_MAX);
    le_put32(out + 4, (uint32_t)body_len);
    le_put32(out, crc32c(0, out + 4, body_len + 4));
    return REC_HEADER_SIZE + body_len;
}

/* Validates the property area at the start of body (body_len bytes after
 * the fixed part); sets *props_len. Returns NULL or what is wrong. */
static const char *parse_props(const uint8_t *b, size_t n, uint32_t n_props, size_t *props_len,
                               uint32_t *bad)
{
    size_t off = 0;
    for (uint32_t i = 0; i < n_props; i++) {
        *bad = i;
        if (n - off < REC_PROP_HEADER)
            return "property header runs past the body";
        size_t klen = le_get16(b + off), vlen = le_get32(b + off + 2);
        off += REC_PROP_HEADER;
        if (klen == 0)
            return "property key is empty";
        if (klen > WP_PROP_KEY_MAX)
            return "property key too long";
        if (vlen > WP_PROP_VALUE_MAX)
            return "property value too long";
        if (n - off < klen || n - off - klen < vlen)
            return "property runs past the body";
        if (memchr(b + off, 0, klen))
            return "property key contains a NUL byte";
        if (vlen && memchr(b + off + klen, 0, vlen))
            return "property value contains a NUL byte";
        off += klen + vlen;
        if (off > WP_PROPS_BYTES_MAX)
            return "properties exceed the size limit";
    }
    *props_len = off;
    return NULL;
}

static int decode(const uint8_t *buf, size_t len, rec_view *out, size_t *consumed, bool crc);

int rec_decode(const uint8_t *buf, size_t len, rec_view *out, size_t *consumed)
{
    return decode(buf, len, out, consumed, true);
}

int rec_decode_checked(const uint8_t *buf, size_t len, rec_view *out, size_t *consumed)
{
    return decode(buf, len, out, consumed, false);
}

static int decode(const uint8_t *buf, size_t len, rec_view *out, size_t *consumed, bool crc)
{
    if (len < REC_HEADER_SIZE)
        return wp__err(WP_ECORRUPT, "record: truncated header (%zu of %d bytes)", len,
                       REC_HEADER_SIZE);
    uint32_t body_len = le_get32(buf + 4);
    if (body_len < REC_BODY_FIXED || body_len > REC_BODY_MAX)
        return wp__err(WP_ECORRUPT, "record: bad body_len %" PRIu32, body_len);
    if (body_len > len - REC_HEADER_SIZE)
        return wp__err(WP_ECORRUPT, "record: truncated (body_len %" PRIu32 ", %zu bytes left)",
                       body_len, len - REC_HEADER_SIZE);
    uint32_t want = le_get32(buf), got = crc ? crc32c(0, buf + 4, (size_t)body_len + 4) : want;
    if (want != got)
        return wp__err(WP_ECORRUPT, "record: crc mismatch (stored %08" PRIx32
                       ", computed %08" PRIx32 ")", want, got);
    const uint8_t *b = buf + REC_HEADER_SIZE;
    uint32_t n_props = le_get16(b), flags = le_get16(b + 2);
    if (n_props > WP_PROPS_MAX)
        return wp__err(WP_ECORRUPT, "record: %" PRIu32 " properties, above %d", n_props,
                       WP_PROPS_MAX);
    if (flags != 0)
        return wp__err(WP_ECORRUPT, "record: nonzero flags %04" PRIx32, flags);
    size_t rest = body_len - REC_BODY_FIXED, props_len = 0;
    uint32_t bad = 0;
    const char *why = parse_props(b + REC_BODY_FIXED, rest, n_props, &props_len, &bad);
    if (why)
        return wp__err(WP_ECORRUPT, "record: property %" PRIu32 ": %s", bad, why);
    if (rest - props_len > (size_t)WP_ENTRY_BYTES_MAX)
        return wp__err(WP_ECORRUPT, "record: payload of %zu bytes, above %lld",
                       rest - props_len, (long long)WP_ENTRY_BYTES_MAX);
    out->n_props = n_props;
    out->props = b + REC_BODY_FIXED;
    out->props_len = props_len;
    out->data = out->props + props_len;
    out->len = rest - props_len;
    *consumed = REC_HEADER_SIZE + (size_t)body_len;
    return 0;
}

int rec_prop_next(const rec_view *r, size_t *off, const uint8_t **key, size_t *klen,
                  const uint8_t **val, size_t *vlen)
{
    if (*off + REC_PROP_HEADER > r->props_len)
        return 0;
    const uint8_t *p = r->props + *off;
    *klen = le_get16(p);
    *vlen = le_get32(p + 2);
    *key = p + REC_PROP_HEADER;
    *val = *key + *klen;
    *off += REC_PROP_HEADER + *klen + *vlen;
    return 1;
}
