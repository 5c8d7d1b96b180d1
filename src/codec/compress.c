/* compress.c — compressed records of a block: docs/format.md §5.1.
 *
 * codec 1: one zstd frame (RFC 8878) whose content is raw_len bytes;
 * codec 2: one LZ4 block (lz4_Block_format.md) of raw_len bytes.
 * Both are decoded in one pass into a raw_len-byte buffer, so the memory a
 * block can demand is bounded by raw_len <= WP_BLOCK_BYTES_MAX, which
 * blk_header_decode checks before any reader allocates it. */
#include <inttypes.h>
#include <lz4.h>
#include <stdlib.h>
#include <zstd.h>

#include "base/err.h"
#include "base/limits.h"
#include "codec/codec.h"

/* The writer's zstd level: 1 is the fastest standard level (a WAL
 * compresses on its write path); docs/format.md §5.1. */
#define BLK_ZSTD_LEVEL 1

_Static_assert(WP_BLOCK_BYTES_MAX <= LZ4_MAX_INPUT_SIZE, "a whole block fits one LZ4 block");

struct blk_compressor {
    uint32_t codec;
    ZSTD_CCtx *zstd;
    void *lz4_state;
};

const char *blk_codec_name(uint32_t codec)
{
    switch (codec) {
    case BLK_CODEC_NONE:
        return "none";
    case BLK_CODEC_ZSTD:
        return "zstd";
    case BLK_CODEC_LZ4:
        return "lz4";
    default:
        return "?";
    }
}

static int decompress_zstd(const blk_header *h, const uint8_t *stored, uint8_t *raw)
{
    /* Exactly one frame, spanning every stored byte. */
    size_t frame = ZSTD_findFrameCompressedSize(stored, h->records_len);
    if (ZSTD_isError(frame) || frame != h->records_len)
        return wp__err(WP_ECORRUPT, "block at entry %" PRId64 ": stored bytes are not one zstd "
                       "frame (%s)", h->first_entry_id,
                       ZSTD_isError(frame) ? ZSTD_getErrorName(frame) : "bytes after it");
    unsigned long long declared = ZSTD_getFrameContentSize(stored, h->records_len);
    if (declared == ZSTD_CONTENTSIZE_ERROR ||
        (declared != ZSTD_CONTENTSIZE_UNKNOWN && declared != h->raw_len))
        return wp__err(WP_ECORRUPT, "block at entry %" PRId64 ": zstd frame declares %llu bytes, "
                       "raw_len is %" PRIu32, h->first_entry_id, declared, h->raw_len);
    ZSTD_DCtx *d = ZSTD_createDCtx();
    if (!d)
        return wp__err(WP_ENOMEM, "zstd decompression context");
    /* One-shot: decodes straight into raw, allocating no window buffer. */
    size_t n = ZSTD_decompressDCtx(d, raw, h->raw_len, stored, h->records_len);
    ZSTD_freeDCtx(d);
    if (ZSTD_isError(n))
        return wp__err(WP_ECORRUPT, "block at entry %" PRId64 ": zstd: %s", h->first_entry_id,
                       ZSTD_getErrorName(n));
    if (n != h->raw_len)
        return wp__err(WP_ECORRUPT, "block at entry %" PRId64 ": zstd frame holds %zu bytes, "
                       "raw_len is %" PRIu32, h->first_entry_id, n, h->raw_len);
    return WP_OK;
}

static int decompress_lz4(const blk_header *h, const uint8_t *stored, uint8_t *raw)
{
    /* LZ4_decompress_safe reads only [stored, +records_len) and writes
     * only [raw, +raw_len); any other outcome is a negative result. */
    int n = LZ4_decompress_safe((const char *)stored, (char *)raw, (int)h->records_len,
                                (int)h->raw_len);
    if (n < 0)
        return wp__err(WP_ECORRUPT, "block at entry %" PRId64 ": malformed lz4 block",
                       h->first_entry_id);
    if ((uint32_t)n != h->raw_len)
        return wp__err(WP_ECORRUPT, "block at entry %" PRId64 ": lz4 block holds %d bytes, "
                       "raw_len is %" PRIu32, h->first_entry_id, n, h->raw_len);
    return WP_OK;
}

int blk_decompress(const blk_header *h, const uint8_t *stored, uint8_t *raw)
{
    switch (h->codec) {
    case BLK_CODEC_ZSTD:
        return decompress_zstd(h, stored, raw);
    case BLK_CODEC_LZ4:
        return decompress_lz4(h, stored, raw);
    default: /* blk_header_decode refuses other codecs */
        return wp__err(WP_ECORRUPT, "block at entry %" PRId64 ": codec %" PRIu32
                       " is not a compression", h->first_entry_id, h->codec);
    }
}

int blk_compressor_new(uint32_t codec, blk_compressor **out)
{
    if (codec == BLK_CODEC_NONE || codec > BLK_CODEC_MAX)
        return wp__err(WP_EINVAL, "no compressor for codec %" PRIu32, codec);
    blk_compressor *c = calloc(1, sizeof *c);
    if (!c)
        return wp__err(WP_ENOMEM, "block compressor");
    c->codec = codec;
    if (codec == BLK_CODEC_ZSTD)
        c->zstd = ZSTD_createCCtx();
    else
        c->lz4_state = malloc((size_t)LZ4_sizeofState());
    if (!c->zstd && !c->lz4_state) {
        free(c);
        return wp__err(WP_ENOMEM, "%s compression context", blk_codec_name(codec));
    }
    *out = c;
    return WP_OK;
}

void blk_compressor_free(blk_compressor *c)
{
    if (!c)
        return;
    ZSTD_freeCCtx(c->zstd);
    free(c->lz4_state);
    free(c);
}

uint32_t blk_compressor_codec(const blk_compressor *c) { return c->codec; }

size_t blk_compress(blk_compressor *c, const uint8_t *src, size_t len, uint8_t *dst, size_t cap)
{
    if (len < 2 || len > WP_BLOCK_BYTES_MAX)
        return 0;
    if (cap > len - 1)
        cap = len - 1; /* only a smaller result is worth storing */
    if (c->codec == BLK_CODEC_ZSTD) {
        /* One frame with its content size, no checksum (records_crc and
         * each record's CRC cover the bytes). Too big for cap: an error. */
        size_t n = ZSTD_compressCCtx(c->zstd, dst, cap, src, len, BLK_ZSTD_LEVEL);
        return ZSTD_isError(n) ? 0 : n;
    }
    int n = LZ4_compress_fast_extState(c->lz4_state, (const char *)src, (char *)dst, (int)len,
                                       (int)(cap > INT32_MAX ? INT32_MAX : cap), 1);
    return n > 0 ? (size_t)n : 0;
}
