/* block.c — block header and records area: docs/format.md §5.
 *
 *   "WPBK" version:u16 reserved:u16 first_entry_id:i64 n_entries:u32
 *   records_len:u32 records_crc:u32 flags:u32 raw_len:u32 crc:u32
 * followed by records_len stored bytes: exactly n_entries records, or
 * (codec in flags bits 0..3, §5.1) those records compressed to raw_len. */
#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/limits.h"
#include "codec/codec.h"
#include "codec/le.h"

#define BLK_MAGIC "WPBK"
#define BLK_MAGIC_LEN 4
#define BLK_VERSION 1
#define BLK_CRC_OFF 36
#define REC_MIN_SIZE 12 /* smallest record: 8-byte header + n_props + flags */

void blk_header_encode(const blk_header *h, uint8_t out[BLK_HEADER_SIZE])
{
    assert(h->first_entry_id >= 0 && h->n_entries >= 1 &&
           h->first_entry_id <= INT64_MAX - (int64_t)h->n_entries &&
           h->n_entries <= WP_BLOCK_ENTRIES_MAX && h->records_len <= WP_BLOCK_BYTES_MAX);
    assert((h->flags & BLK_CODEC_MASK) == 0 && h->codec <= BLK_CODEC_MAX);
    if (h->codec == BLK_CODEC_NONE)
        assert(h->records_len >= (uint64_t)REC_MIN_SIZE * h->n_entries &&
               (h->raw_len == 0 || h->raw_len == h->records_len));
    else
        assert(h->records_len >= 1 && h->records_len < h->raw_len &&
               h->raw_len <= WP_BLOCK_BYTES_MAX &&
               h->raw_len >= (uint64_t)REC_MIN_SIZE * h->n_entries);
    memcpy(out, BLK_MAGIC, BLK_MAGIC_LEN);
    le_put16(out + 4, BLK_VERSION);
    le_put16(out + 6, 0);
    le_puti64(out + 8, h->first_entry_id);
    le_put32(out + 16, h->n_entries);
    le_put32(out + 20, h->records_len);
    le_put32(out + 24, h->records_crc);
    le_put32(out + 28, h->flags | h->codec);
    le_put32(out + 32, h->codec == BLK_CODEC_NONE ? 0 : h->raw_len);
    le_put32(out + BLK_CRC_OFF, crc32c(0, out, BLK_CRC_OFF));
}

/* The lengths of a header (docs/format.md §5 and §5.1): NULL or what is
 * wrong. raw_len is bounded here, before any reader allocates it. */
static const char *check_lengths(const blk_header *h)
{
    uint64_t min_raw = (uint64_t)REC_MIN_SIZE * h->n_entries;
    if (h->records_len > WP_BLOCK_BYTES_MAX)
        return "records_len above the block size limit";
    if (h->codec == BLK_CODEC_NONE)
        return h->records_len < min_raw ? "records_len too small for n_entries" : NULL;
    if (h->codec > BLK_CODEC_MAX)
        return "unknown codec";
    if (h->raw_len > WP_BLOCK_BYTES_MAX)
        return "raw_len above the block size limit";
    if (h->raw_len < min_raw)
        return "raw_len too small for n_entries";
    if (h->records_len == 0 || h->records_len >= h->raw_len)
        return "compressed records_len not in 1..raw_len-1";
    return NULL;
}

/* Parses a header without touching the error message; returns NULL or
 * what is wrong (shared by blk_header_decode and blk_find_header). */
static const char *parse_header(const uint8_t *in, blk_header *out)
{
    if (memcmp(in, BLK_MAGIC, BLK_MAGIC_LEN) != 0)
        return "bad magic";
    if (le_get16(in + 4) != BLK_VERSION)
        return "unsupported version";
    if (le_get32(in + BLK_CRC_OFF) != crc32c(0, in, BLK_CRC_OFF))
        return "header crc mismatch";
    if (le_get16(in + 6) != 0)
        return "nonzero reserved field";
    uint32_t flags = le_get32(in + 28);
    blk_header h = {
        .first_entry_id = le_geti64(in + 8),
        .n_entries = le_get32(in + 16),
        .records_len = le_get32(in + 20),
        .records_crc = le_get32(in + 24),
        .flags = flags & ~BLK_CODEC_MASK,
        .codec = flags & BLK_CODEC_MASK,
        .raw_len = le_get32(in + 32),
    };
    if (h.codec == BLK_CODEC_NONE && h.raw_len != 0)
        return "nonzero raw_len (reserved) in an uncompressed block";
    if (h.first_entry_id < 0)
        return "negative first_entry_id";
    if (h.n_entries < 1 || h.n_entries > WP_BLOCK_ENTRIES_MAX)
        return "n_entries out of bounds";
    if (h.first_entry_id > INT64_MAX - (int64_t)h.n_entries)
        return "entry ids overflow";
    const char *why = check_lengths(&h);
    if (why)
        return why;
    if (h.codec == BLK_CODEC_NONE)
        h.raw_len = h.records_len;
    *out = h;
    return NULL;
}

int blk_header_decode(const uint8_t in[BLK_HEADER_SIZE], blk_header *out)
{
    const char *why = parse_header(in, out);
    if (why)
        return wp__err(WP_ECORRUPT, "block header: %s", why);
    return 0;
}

static int check_crc(const blk_header *h, const uint8_t *stored)
{
    uint32_t got = crc32c(0, stored, h->records_len);
    if (got != h->records_crc)
        return wp__err(WP_ECORRUPT,
                       "block at entry %" PRId64 ": records crc mismatch (stored %08" PRIx32
                       ", computed %08" PRIx32 ")",
                       h->first_entry_id, h->records_crc, got);
    return WP_OK;
}

/* Walks exactly n_entries records over len bytes. */
static int walk_records(const blk_header *h, const uint8_t *records, size_t len)
{
    size_t off = 0;
    for (uint32_t i = 0; i < h->n_entries; i++) {
        rec_view r;
        size_t used;
        if (rec_decode(records + off, len - off, &r, &used) != 0) {
            char why[WP_ERRMSG_MAX];
            snprintf(why, sizeof why, "%s", wp_errmsg());
            return wp__err(WP_ECORRUPT, "block at entry %" PRId64 ", record %" PRIu32 ": %s",
                           h->first_entry_id, i, why);
        }
        off += used;
    }
    if (off != len)
        return wp__err(WP_ECORRUPT,
                       "block at entry %" PRId64 ": %zu bytes left after its %" PRIu32
                       " records",
                       h->first_entry_id, len - off, h->n_entries);
    return 0;
}

int blk_check_records(const blk_header *h, const uint8_t *records)
{
    if (h->codec != BLK_CODEC_NONE)
        return wp__err(WP_ECORRUPT, "block at entry %" PRId64 " is compressed (%s)",
                       h->first_entry_id, blk_codec_name(h->codec));
    int rc = check_crc(h, records);
    return rc ? rc : walk_records(h, records, h->records_len);
}

int blk_open_records(const blk_header *h, const uint8_t *stored, uint8_t **raw, size_t *raw_cap,
                     const uint8_t **records)
{
    int rc = check_crc(h, stored); /* before allocating or decompressing */
    if (rc)
        return rc;
    const uint8_t *rec = stored;
    size_t len = h->records_len;
    if (h->codec != BLK_CODEC_NONE) {
        assert(raw && raw_cap && h->raw_len <= WP_BLOCK_BYTES_MAX); /* blk_header_decode */
        if (*raw_cap < h->raw_len) {
            uint8_t *nb = realloc(*raw, h->raw_len);
            if (!nb)
                return wp__err(WP_ENOMEM, "%" PRIu32 " bytes for a block's records", h->raw_len);
            *raw = nb;
            *raw_cap = h->raw_len;
        }
        if ((rc = blk_decompress(h, stored, *raw)))
            return rc;
        rec = *raw;
        len = h->raw_len;
    }
    if ((rc = walk_records(h, rec, len)))
        return rc;
    *records = rec;
    return WP_OK;
}

ptrdiff_t blk_find_header(const uint8_t *buf, size_t len)
{
    size_t off = 0;
    while (len - off >= BLK_HEADER_SIZE) {
        const uint8_t *p = memmem(buf + off, len - off - BLK_HEADER_SIZE + BLK_MAGIC_LEN,
                                  BLK_MAGIC, BLK_MAGIC_LEN);
        if (!p)
            return -1;
        blk_header h;
        if (!parse_header(p, &h))
            return p - buf;
        off = (size_t)(p - buf) + 1;
    }
    return -1;
}
