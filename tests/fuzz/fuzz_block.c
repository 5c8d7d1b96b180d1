/* fuzz_block.c — libFuzzer target for blk_header_decode, blk_check_records
 * and blk_find_header (docs/format.md §5). Input: a block (header then
 * records). A header that decodes must re-encode to the same 40 bytes; a
 * records area that checks must walk as exactly n_entries records;
 * blk_find_header must agree with a brute-force scan. Each input is tried
 * as is and with every crc (records, records area, header) recomputed. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/limits.h"
#include "codec/codec.h"
#include "codec/le.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_records(const blk_header *h, const uint8_t *rec)
{
    if (blk_check_records(h, rec) != 0)
        return;
    if (crc32c(0, rec, h->records_len) != h->records_crc)
        abort();
    size_t off = 0, used;
    rec_view r;
    for (uint32_t i = 0; i < h->n_entries; i++) {
        if (rec_decode(rec + off, h->records_len - off, &r, &used) != 0)
            abort();
        off += used;
    }
    if (off != h->records_len)
        abort();
}

static void check_find(const uint8_t *data, size_t size)
{
    ptrdiff_t at = blk_find_header(data, size);
    blk_header h;
    ptrdiff_t brute = -1;
    for (size_t i = 0; i + BLK_HEADER_SIZE <= size; i++)
        if (memcmp(data + i, "WPBK", 4) == 0 && blk_header_decode(data + i, &h) == 0) {
            brute = (ptrdiff_t)i;
            break;
        }
    if (at != brute)
        abort();
}

static void check_one(const uint8_t *data, size_t size)
{
    check_find(data, size);
    if (size < BLK_HEADER_SIZE)
        return;
    blk_header h;
    if (blk_header_decode(data, &h) != 0)
        return;
    if (h.first_entry_id < 0 || h.n_entries < 1 || h.n_entries > WP_BLOCK_ENTRIES_MAX ||
        h.records_len > WP_BLOCK_BYTES_MAX || h.raw_len > WP_BLOCK_BYTES_MAX ||
        h.raw_len < 12ull * h.n_entries || h.codec > BLK_CODEC_MAX ||
        (h.codec == BLK_CODEC_NONE ? h.records_len != h.raw_len : h.records_len >= h.raw_len))
        abort(); /* compressed blocks: fuzz_blockz.c */
    uint8_t again[BLK_HEADER_SIZE];
    blk_header_encode(&h, again);
    if (memcmp(again, data, BLK_HEADER_SIZE) != 0)
        abort();
    if (h.records_len <= size - BLK_HEADER_SIZE) {
        /* exact-size copy so that ASan catches any read past records_len */
        uint8_t *rec = malloc(h.records_len);
        if (!rec)
            abort();
        memcpy(rec, data + BLK_HEADER_SIZE, h.records_len);
        check_records(&h, rec);
        free(rec);
    }
}

/* Recomputes the crc of each record (as far as their lengths chain), of
 * the records area and of the header. */
static void fix_crcs(uint8_t *b, size_t size)
{
    size_t off = BLK_HEADER_SIZE;
    while (size - off >= 8 && le_get32(b + off + 4) <= size - off - 8) {
        size_t body = le_get32(b + off + 4);
        le_put32(b + off, crc32c(0, b + off + 4, body + 4));
        off += 8 + body;
    }
    uint32_t records_len = le_get32(b + 20);
    if (records_len <= size - BLK_HEADER_SIZE)
        le_put32(b + 24, crc32c(0, b + BLK_HEADER_SIZE, records_len));
    le_put32(b + 36, crc32c(0, b, 36));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_one(data, size);
    if (size < BLK_HEADER_SIZE)
        return 0;
    uint8_t *fixed = malloc(size);
    if (!fixed)
        abort();
    memcpy(fixed, data, size);
    fix_crcs(fixed, size);
    check_one(fixed, size);
    free(fixed);
    return 0;
}
