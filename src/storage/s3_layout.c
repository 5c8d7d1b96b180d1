/* s3_layout.c — the footer object codec (docs/format.md section 11.1). */
#include "storage/s3_layout.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "codec/codec.h"
#include "codec/le.h"

static const uint8_t MAGIC[8] = {'W', 'P', 'S', '3', 'F', 'O', 'O', 'T'};
#define VERSION 1

uint64_t s3_layout_size(const s3_layout *l)
{
    return S3_LAYOUT_HEADER + (uint64_t)l->n_objs * S3_LAYOUT_OBJ +
           (uint64_t)l->n_garbage * S3_LAYOUT_GONE + 4;
}

void s3_layout_encode(const s3_layout *l, uint8_t *out)
{
    memset(out, 0, S3_LAYOUT_HEADER);
    memcpy(out, MAGIC, 8);
    le_put16(out + 8, VERSION);
    le_put32(out + 12, l->n_objs);
    le_put32(out + 16, l->n_garbage);
    le_put64(out + 24, l->generation);
    le_put64(out + 32, l->bytes);
    le_puti64(out + 40, l->log_id);
    le_puti64(out + 48, l->seg_id);
    le_put32(out + 60, crc32c(0, out, 60));
    uint8_t *p = out + S3_LAYOUT_HEADER, *e0 = p;
    for (uint32_t i = 0; i < l->n_objs; i++, p += S3_LAYOUT_OBJ) {
        le_put64(p, l->objs[i].first);
        le_put64(p + 8, l->objs[i].last);
        le_put64(p + 16, l->objs[i].size);
    }
    for (uint32_t i = 0; i < l->n_garbage; i++, p += S3_LAYOUT_GONE) {
        le_put64(p, l->garbage[i].first);
        le_put64(p + 8, l->garbage[i].last);
    }
    le_put32(p, crc32c(0, e0, (size_t)(p - e0)));
}

static int bad(const char *what, uint64_t i)
{
    return wp__err(WP_ECORRUPT, "footer object: %s (entry %" PRIu64 ")", what, i);
}

int s3_layout_check(const s3_layout *l)
{
    if (l->n_objs < 1 || l->n_objs > S3_LAYOUT_ENTRIES_MAX || l->n_garbage > S3_LAYOUT_ENTRIES_MAX)
        return wp__err(WP_ECORRUPT, "footer object: %" PRIu32 " objects, %" PRIu32 " garbage",
                       l->n_objs, l->n_garbage);
    if (l->bytes < 1 || l->bytes > (uint64_t)WP_SEGMENT_BYTES_MAX)
        return wp__err(WP_ECORRUPT, "footer object: segment length %" PRIu64, l->bytes);
    if (l->log_id < 0 || l->seg_id < 0)
        return wp__err(WP_ECORRUPT, "footer object: negative id");
    uint64_t sum = 0;
    for (uint32_t i = 0; i < l->n_objs; i++) {
        const s3_layout_obj *o = &l->objs[i];
        if (o->first > o->last || o->last >= S3_LAYOUT_ENTRIES_MAX)
            return bad("bad block numbers", i);
        if (i > 0 && o->first <= l->objs[i - 1].last)
            return bad("objects out of order", i);
        if (o->size < 1 || o->size > l->bytes - sum)
            return bad("sizes exceed the segment length", i);
        sum += o->size;
    }
    if (sum != l->bytes)
        return wp__err(WP_ECORRUPT, "footer object: sizes add up to %" PRIu64 ", not %" PRIu64,
                       sum, l->bytes);
    for (uint32_t i = 0; i < l->n_garbage; i++) {
        const s3_layout_obj *o = &l->garbage[i];
        if (o->first > o->last || o->last >= S3_LAYOUT_ENTRIES_MAX)
            return bad("bad garbage block numbers", i);
    }
    return WP_OK;
}

void s3_layout_free(s3_layout *l)
{
    free(l->objs);
    free(l->garbage);
    l->objs = l->garbage = NULL;
    l->n_objs = l->n_garbage = 0;
}

int s3_layout_decode(const uint8_t *b, size_t len, int64_t log_id, int64_t seg_id, s3_layout *out)
{
    memset(out, 0, sizeof *out);
    if (len < S3_LAYOUT_HEADER + 4)
        return wp__err(WP_ECORRUPT, "footer object: %zu bytes, too short", len);
    if (memcmp(b, MAGIC, 8) != 0)
        return wp__err(WP_ECORRUPT, "footer object: bad magic");
    if (le_get32(b + 60) != crc32c(0, b, 60))
        return wp__err(WP_ECORRUPT, "footer object: header crc mismatch");
    if (le_get16(b + 8) != VERSION)
        return wp__err(WP_ECORRUPT, "footer object: version %u", le_get16(b + 8));
    if (le_get16(b + 10) || le_get32(b + 20) || le_get32(b + 56))
        return wp__err(WP_ECORRUPT, "footer object: reserved bytes set");
    uint32_t n = le_get32(b + 12), g = le_get32(b + 16);
    if (n < 1 || n > S3_LAYOUT_ENTRIES_MAX || g > S3_LAYOUT_ENTRIES_MAX)
        return wp__err(WP_ECORRUPT, "footer object: %" PRIu32 " objects, %" PRIu32 " garbage", n, g);
    uint64_t want = S3_LAYOUT_HEADER + (uint64_t)n * S3_LAYOUT_OBJ + (uint64_t)g * S3_LAYOUT_GONE + 4;
    if (len != want)
        return wp__err(WP_ECORRUPT, "footer object: %zu bytes, expected %" PRIu64, len, want);
    const uint8_t *p = b + S3_LAYOUT_HEADER;
    size_t elen = (size_t)(want - S3_LAYOUT_HEADER - 4);
    if (le_get32(p + elen) != crc32c(0, p, elen))
        return wp__err(WP_ECORRUPT, "footer object: entries crc mismatch");
    out->generation = le_get64(b + 24);
    out->bytes = le_get64(b + 32);
    out->log_id = le_geti64(b + 40);
    out->seg_id = le_geti64(b + 48);
    if (out->log_id != log_id || out->seg_id != seg_id)
        return wp__err(WP_ECORRUPT, "footer object: of segment %" PRId64 "/%" PRId64
                       ", found under %" PRId64 "/%" PRId64, out->log_id, out->seg_id, log_id,
                       seg_id);
    out->objs = malloc(n * sizeof *out->objs);
    out->garbage = malloc((g ? g : 1) * sizeof *out->garbage);
    if (!out->objs || !out->garbage) {
        s3_layout_free(out);
        return wp__err(WP_ENOMEM, "footer object: %" PRIu32 " entries", n + g);
    }
    out->n_objs = n;
    out->n_garbage = g;
    for (uint32_t i = 0; i < n; i++, p += S3_LAYOUT_OBJ)
        out->objs[i] = (s3_layout_obj){le_get64(p), le_get64(p + 8), le_get64(p + 16)};
    for (uint32_t i = 0; i < g; i++, p += S3_LAYOUT_GONE)
        out->garbage[i] = (s3_layout_obj){le_get64(p), le_get64(p + 8), 0};
    int rc = s3_layout_check(out);
    if (rc)
        s3_layout_free(out);
    return rc;
}
