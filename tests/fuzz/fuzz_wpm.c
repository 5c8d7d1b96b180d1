/* fuzz_wpm.c — libFuzzer target for the streaming service's binary
 * encoding (codec/wpm.h, docs/streaming-api.md §7), which a node decodes
 * from any client and a client from the network. The input is tried as a
 * produce request, as a produce answer and as a pushed stream (whole, and
 * fed in chunks of the sizes its first byte picks, as the client's buffer
 * does). Whatever a decoder accepts must re-encode to exactly the bytes it
 * came from, with properties that are NUL-ended UTF-8 C strings. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/limits.h"
#include "codec/wpm.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_FRAME (1u << 20)

/* A message's properties as arrays; aborts if they break the rules. */
static size_t props_of(const wpm_msg *m, const char **keys, const char **vals)
{
    size_t off = 0, kl, vl, n = 0;
    const char *k, *v;
    while (wpm_prop_next(m, &off, &k, &kl, &v, &vl)) {
        if (n >= m->n_props || strlen(k) != kl || strlen(v) != vl || !wpm_utf8_valid(k, kl) ||
            !wpm_utf8_valid(v, vl))
            abort();
        keys[n] = k;
        vals[n++] = v;
    }
    if (n != m->n_props || off != m->props_len)
        abort();
    return n;
}

static void as_request(const uint8_t *data, size_t size)
{
    char why[WPM_WHY_MAX];
    wpm_req_hdr h;
    size_t off;
    if (wpm_req_hdr_decode(data, size, &h, &off, why))
        return;
    uint8_t hdr[WPM_REQ_HDR_FIXED + WPM_PRODUCER_MAX];
    size_t pl = strlen(h.producer);
    if (wpm_put_req_hdr(hdr, h.term, h.producer, pl) != hdr + off || memcmp(hdr, data, off))
        abort();
    static const char *keys[65], *vals[65];
    while (off < size) {
        size_t at = off;
        wpm_msg m;
        if (wpm_req_msg_decode(data, size, &off, MAX_FRAME, 64, &m, why)) {
            if (!why[0])
                abort(); /* a refusal says why */
            return;
        }
        if (off <= at || off > size || m.len > MAX_FRAME || m.n_props > 64 || m.seq < -1)
            abort();
        size_t n = props_of(&m, keys, vals);
        wp_payload p = {.data = m.data, .len = m.len, .n_props = n, .prop_keys = keys,
                        .prop_values = vals};
        size_t sz = WPM_REQ_MSG_FIXED + wpm_props_size(n, keys, vals) + m.len;
        uint8_t *out = malloc(sz ? sz : 1);
        if (!out || sz != off - at || wpm_put_req_msg(out, m.seq, &p) != out + sz ||
            memcmp(out, data + at, sz))
            abort();
        free(out);
    }
}

static void as_answer(const uint8_t *data, size_t size)
{
    int64_t term;
    uint32_t count;
    const uint8_t *ids;
    char why[WPM_WHY_MAX];
    if (wpm_ans_decode(data, size, &term, &count, &ids, why))
        return;
    if (size != WPM_ANS_HDR_FIXED + (size_t)count * WPM_ANS_ID)
        abort();
    uint8_t *out = malloc(size), *w = out;
    if (!out)
        abort();
    w = wpm_put_ans_hdr(w, term, count);
    for (uint32_t i = 0; i < count; i++) {
        wp_msg_id id;
        bool dup;
        wpm_ans_id(ids, i, &id, &dup);
        w = wpm_put_ans_id(w, id, dup);
    }
    /* The dup byte is any non-zero value on the wire, 1 when encoded. */
    for (uint32_t i = 0; i < count; i++) {
        uint8_t *d = out + WPM_ANS_HDR_FIXED + (size_t)i * WPM_ANS_ID + 16;
        if (*d != (data[d - out] != 0))
            abort();
        *d = data[d - out];
    }
    if (w != out + size || memcmp(out, data, size))
        abort();
    free(out);
}

/* Decodes the frames of p[0..n): the bytes used; -1 if one is refused.
 * Message frames must re-encode to their bytes. */
static long long frames(const uint8_t *p, size_t n, int *count)
{
    static const char *keys[WP_PROPS_MAX], *vals[WP_PROPS_MAX];
    size_t at = 0;
    while (at < n) {
        char type, why[WPM_WHY_MAX];
        wpm_msg m;
        const char *e;
        size_t el, need;
        long long k = wpm_frame_decode(p + at, n - at, MAX_FRAME, &type, &m, &e, &el, &need, why);
        if (k < 0) {
            if (!why[0])
                abort();
            return -1;
        }
        if (k == 0) {
            if (need && need <= n - at)
                abort(); /* it said it needs what it has */
            break;
        }
        if ((size_t)k > n - at || (size_t)k > MAX_FRAME)
            abort();
        if (type == WPM_FRAME_MSG) {
            size_t np = props_of(&m, keys, vals);
            size_t sz = WPM_FRAME_MSG_FIXED + wpm_props_size(np, keys, vals) + m.len;
            uint8_t *out = malloc(sz);
            if (!out || sz != (size_t)k ||
                wpm_put_frame_msg(out, m.id, m.data, m.len, np, keys, vals) != out + sz ||
                memcmp(out, p + at, sz))
                abort();
            free(out);
        } else if (type == WPM_FRAME_END) {
            if (el > WPM_END_JSON_MAX || (size_t)k != 5 + el)
                abort();
        } else if (type != WPM_FRAME_HEARTBEAT || k != 1) {
            abort();
        }
        (*count)++;
        at += (size_t)k;
    }
    return (long long)at;
}

static void as_stream(const uint8_t *data, size_t size)
{
    int whole_n = 0;
    long long whole = frames(data, size, &whole_n);
    /* In chunks, keeping the partial frame as the client does. */
    size_t chunk = size ? (size_t)data[0] % 17 + 1 : 1;
    uint8_t *buf = malloc(size + 1);
    if (!buf)
        abort();
    size_t have = 0, fed = 0, consumed = 0;
    int n = 0;
    bool bad = false;
    while (fed < size && !bad) {
        size_t k = size - fed < chunk ? size - fed : chunk;
        memcpy(buf + have, data + fed, k);
        have += k;
        fed += k;
        long long used = frames(buf, have, &n);
        if (used < 0) {
            bad = true;
            break;
        }
        memmove(buf, buf + used, have - (size_t)used);
        have -= (size_t)used;
        consumed += (size_t)used;
    }
    /* Same frames, same end: refused in both, or the same bytes used. */
    if (bad != (whole < 0) || (!bad && (consumed != (size_t)whole || n != whole_n)))
        abort();
    free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    as_request(data, size);
    as_answer(data, size);
    as_stream(data, size);
    return 0;
}
