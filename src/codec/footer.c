/* footer.c — block index and footer of a completed segment:
 * docs/format.md §6-7.
 *
 *   index  := (offset:u64 first_entry_id:i64){n_blocks}   at index_offset
 *   footer := "WPFOOTER" version:u16 reserved:u16 flags:u32 n_blocks:u32
 *             index_crc:u32 index_offset:u64 last_entry_id:i64
 *             reserved[20] crc:u32 (crc32c of bytes 0..59) */
#include <assert.h>
#include <inttypes.h>
#include <string.h>

#include "base/err.h"
#include "base/limits.h"
#include "codec/codec.h"
#include "codec/le.h"

#define FTR_MAGIC "WPFOOTER"
#define FTR_MAGIC_LEN 8
#define FTR_VERSION 1
#define FTR_CRC_OFF 60
#define FTR_RESERVED_OFF 40
#define FTR_RESERVED_LEN 20

void idx_encode(const idx_entry *e, size_t n, uint8_t *out)
{
    for (size_t i = 0; i < n; i++, out += IDX_ENTRY_SIZE) {
        le_put64(out, e[i].offset);
        le_puti64(out + 8, e[i].first_entry_id);
    }
}

/* Checks entry i against its predecessor and the footer; NULL or why. */
static const char *check_entry(const idx_entry *e, size_t i, const seg_footer *f)
{
    if (e[i].offset < SEG_HEADER_SIZE)
        return "block offset inside the segment header";
    if (e[i].offset > f->index_offset || f->index_offset - e[i].offset < BLK_HEADER_SIZE)
        return "block offset at or past index_offset";
    if (e[i].first_entry_id < 0)
        return "negative first_entry_id";
    if (i > 0 && e[i].offset - e[i - 1].offset < BLK_HEADER_SIZE)
        return "block offsets not increasing by a block header";
    if (i > 0 && e[i].first_entry_id <= e[i - 1].first_entry_id)
        return "first_entry_ids not increasing";
    return NULL;
}

int idx_decode(const uint8_t *in, const seg_footer *f, idx_entry *out)
{
    size_t len = (size_t)f->n_blocks * IDX_ENTRY_SIZE;
    uint32_t got = crc32c(0, in, len);
    if (got != f->index_crc)
        return wp__err(WP_ECORRUPT,
                       "segment index: crc mismatch (stored %08" PRIx32 ", computed %08" PRIx32
                       ")",
                       f->index_crc, got);
    for (size_t i = 0; i < f->n_blocks; i++, in += IDX_ENTRY_SIZE) {
        out[i].offset = le_get64(in);
        out[i].first_entry_id = le_geti64(in + 8);
        /* Offsets are increasing, so an offset below the previous one wraps
         * to a huge difference: check ordering before subtracting. */
        if (i > 0 && out[i].offset <= out[i - 1].offset)
            return wp__err(WP_ECORRUPT, "segment index: entry %zu: block offsets not increasing",
                           i);
        const char *why = check_entry(out, i, f);
        if (why)
            return wp__err(WP_ECORRUPT, "segment index: entry %zu: %s", i, why);
    }
    if (f->n_blocks > 0 && out[f->n_blocks - 1].first_entry_id > f->last_entry_id)
        return wp__err(WP_ECORRUPT,
                       "segment index: last block starts at entry %" PRId64
                       ", after last_entry_id %" PRId64,
                       out[f->n_blocks - 1].first_entry_id, f->last_entry_id);
    return 0;
}

void ftr_encode(const seg_footer *f, uint8_t out[FTR_SIZE])
{
    assert(f->n_blocks <= WP_SEGMENT_BLOCKS_MAX && f->index_offset >= SEG_HEADER_SIZE &&
           f->index_offset <= (uint64_t)WP_SEGMENT_BYTES_MAX && f->last_entry_id >= -1 &&
           (f->n_blocks == 0) == (f->last_entry_id == -1));
    memcpy(out, FTR_MAGIC, FTR_MAGIC_LEN);
    le_put16(out + 8, FTR_VERSION);
    le_put16(out + 10, 0);
    le_put32(out + 12, f->flags);
    le_put32(out + 16, f->n_blocks);
    le_put32(out + 20, f->index_crc);
    le_put64(out + 24, f->index_offset);
    le_puti64(out + 32, f->last_entry_id);
    memset(out + FTR_RESERVED_OFF, 0, FTR_RESERVED_LEN);
    le_put32(out + FTR_CRC_OFF, crc32c(0, out, FTR_CRC_OFF));
}

/* Field checks of a footer whose crc matched; NULL or why. */
static const char *check_footer(const uint8_t *in, const seg_footer *f)
{
    if (le_get16(in + 10) != 0 || !le_all_zero(in + FTR_RESERVED_OFF, FTR_RESERVED_LEN))
        return "nonzero reserved field";
    if (f->n_blocks > WP_SEGMENT_BLOCKS_MAX)
        return "n_blocks above the limit";
    if (f->index_offset < SEG_HEADER_SIZE)
        return "index_offset inside the segment header";
    if (f->index_offset > (uint64_t)WP_SEGMENT_BYTES_MAX)
        return "index_offset above the segment size limit";
    if (f->last_entry_id < -1)
        return "last_entry_id below -1";
    if ((f->n_blocks == 0) != (f->last_entry_id == -1))
        return "n_blocks and last_entry_id disagree on emptiness";
    return NULL;
}

int ftr_decode(const uint8_t in[FTR_SIZE], seg_footer *out)
{
    if (memcmp(in, FTR_MAGIC, FTR_MAGIC_LEN) != 0)
        return wp__err(WP_ECORRUPT, "segment footer: bad magic");
    uint16_t version = le_get16(in + 8);
    if (version != FTR_VERSION)
        return wp__err(WP_ECORRUPT, "segment footer: unsupported version %u", version);
    uint32_t want = le_get32(in + FTR_CRC_OFF), got = crc32c(0, in, FTR_CRC_OFF);
    if (want != got)
        return wp__err(WP_ECORRUPT,
                       "segment footer: crc mismatch (stored %08" PRIx32 ", computed %08" PRIx32
                       ")",
                       want, got);
    seg_footer f = {
        .flags = le_get32(in + 12),
        .n_blocks = le_get32(in + 16),
        .index_crc = le_get32(in + 20),
        .index_offset = le_get64(in + 24),
        .last_entry_id = le_geti64(in + 32),
    };
    const char *why = check_footer(in, &f);
    if (why)
        return wp__err(WP_ECORRUPT, "segment footer: %s", why);
    *out = f;
    return 0;
}
