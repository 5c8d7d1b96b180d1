/* fuzz_blockz.c — libFuzzer target for compressed blocks (docs/format.md
 * §5.1): blk_header_decode, blk_open_records and blk_decompress on
 * untrusted bytes. The first input byte picks a mode:
 *   even: the rest is a block (header + stored bytes), tried as is and
 *         with its header and records CRCs recomputed;
 *   odd:  the rest is [codec, raw_len:u24, n_entries:u8, stored...]: a
 *         valid header is built around the stored bytes, so that the
 *         decompressors themselves meet arbitrary input;
 * and every input's tail is also compressed with each codec and must
 * decompress to itself.
 * Invariants: a decoded header never declares raw_len above
 * WP_BLOCK_BYTES_MAX (the decompression-bomb bound a reader allocates
 * by); decompression writes only the raw_len bytes it is given (exact-size
 * heap buffers: ASan) and fails unless it produced all of them; records
 * that open walk as exactly n_entries records. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/limits.h"
#include "codec/codec.h"
#include "codec/le.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Decompressed sizes the target actually allocates; a larger declaration
 * (up to the bound) is only checked against the bound, so that one input
 * cannot stall the run with a 336 MiB allocation. */
#define FUZZ_RAW_MAX (8 * 1024 * 1024)

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        abort();
    return p;
}

static void check_walk(const blk_header *h, const uint8_t *rec)
{
    size_t off = 0, used;
    rec_view r;
    for (uint32_t i = 0; i < h->n_entries; i++) {
        if (rec_decode(rec + off, h->raw_len - off, &r, &used) != 0)
            abort();
        off += used;
    }
    if (off != h->raw_len)
        abort();
}

/* A block at b (len bytes): decode and open it with exact-size buffers. */
static void open_block(const uint8_t *b, size_t len)
{
    blk_header h;
    if (len < BLK_HEADER_SIZE || blk_header_decode(b, &h) != 0)
        return;
    if (h.raw_len > WP_BLOCK_BYTES_MAX || h.records_len > WP_BLOCK_BYTES_MAX ||
        h.codec > BLK_CODEC_MAX ||
        (h.codec != BLK_CODEC_NONE && (h.records_len == 0 || h.records_len >= h.raw_len)) ||
        (h.codec == BLK_CODEC_NONE && h.raw_len != h.records_len))
        abort(); /* the header decoder let a bound through */
    if (h.records_len > len - BLK_HEADER_SIZE || h.raw_len > FUZZ_RAW_MAX)
        return;
    uint8_t *stored = xmalloc(h.records_len);
    memcpy(stored, b + BLK_HEADER_SIZE, h.records_len);
    uint8_t *raw = NULL;
    size_t raw_cap = 0; /* grown to exactly raw_len: ASan sees an overrun */
    const uint8_t *rec = NULL;
    int rc = blk_open_records(&h, stored, &raw, &raw_cap, &rec);
    if (rc == 0) {
        if (crc32c(0, stored, h.records_len) != h.records_crc)
            abort();
        if (rec != (h.codec == BLK_CODEC_NONE ? stored : raw))
            abort();
        check_walk(&h, rec);
    }
    if (raw && raw_cap != h.raw_len)
        abort();
    if (h.codec != BLK_CODEC_NONE) { /* the decompressor alone, CRC aside */
        if (!raw)
            raw = xmalloc(h.raw_len);
        (void)blk_decompress(&h, stored, raw);
    }
    free(raw);
    free(stored);
}

static void fix_crcs(uint8_t *b, size_t len)
{
    uint32_t rl = le_get32(b + 20);
    if (rl <= len - BLK_HEADER_SIZE)
        le_put32(b + 24, crc32c(0, b + BLK_HEADER_SIZE, rl));
    le_put32(b + 36, crc32c(0, b, 36));
}

/* odd mode: [codec, raw_len:u24, n:u8, stored...] */
static void synth_block(const uint8_t *d, size_t size)
{
    if (size < 5)
        return;
    uint32_t codec = 1 + d[0] % BLK_CODEC_MAX;
    uint32_t raw_len = (uint32_t)d[1] | (uint32_t)d[2] << 8 | (uint32_t)d[3] << 16;
    uint32_t n = 1 + d[4] % 16;
    size_t z = size - 5;
    uint8_t *b = xmalloc(BLK_HEADER_SIZE + z);
    memcpy(b + BLK_HEADER_SIZE, d + 5, z);
    memcpy(b, "WPBK", 4);
    le_put16(b + 4, 1);
    le_put16(b + 6, 0);
    le_put64(b + 8, 0);
    le_put32(b + 16, n);
    le_put32(b + 20, (uint32_t)z);
    le_put32(b + 28, codec);
    le_put32(b + 32, raw_len);
    fix_crcs(b, BLK_HEADER_SIZE + z);
    open_block(b, BLK_HEADER_SIZE + z);
    free(b);
}

/* Whatever compresses must decompress to itself, in an exact buffer. */
static void round_trip(const uint8_t *d, size_t size)
{
    if (size < 2)
        return;
    uint8_t *z = xmalloc(size);
    uint8_t *back = xmalloc(size);
    static blk_compressor *cs[BLK_CODEC_MAX + 1]; /* kept: contexts are costly */
    for (uint32_t codec = BLK_CODEC_ZSTD; codec <= BLK_CODEC_MAX; codec++) {
        if (!cs[codec] && blk_compressor_new(codec, &cs[codec]) != 0)
            abort();
        size_t n = blk_compress(cs[codec], d, size, z, size);
        if (n == 0)
            continue;
        if (n >= size)
            abort();
        blk_header h = {.first_entry_id = 0, .n_entries = 1, .codec = codec,
                        .raw_len = (uint32_t)size, .records_len = (uint32_t)n};
        if (blk_decompress(&h, z, back) != 0 || memcmp(back, d, size) != 0)
            abort();
    }
    free(back);
    free(z);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const uint8_t *d = data + 1;
    size_t n = size - 1;
    if (data[0] & 1) {
        synth_block(d, n);
    } else {
        open_block(d, n);
        if (n >= BLK_HEADER_SIZE) {
            uint8_t *fixed = xmalloc(n);
            memcpy(fixed, d, n);
            fix_crcs(fixed, n);
            open_block(fixed, n);
            free(fixed);
        }
    }
    round_trip(d, n);
    return 0;
}
