/* segment.c — segment header, the first 48 bytes of every segment:
 * docs/format.md §3.
 *
 *   "WPSEGMNT" version:u16 reserved:u16 flags:u32 log_id:i64 segment_id:i64
 *   epoch:i64 reserved:u32 crc:u32 (crc32c of bytes 0..43) */
#include <assert.h>
#include <inttypes.h>
#include <string.h>

#include "base/err.h"
#include "codec/codec.h"
#include "codec/le.h"

#define SEG_MAGIC "WPSEGMNT"
#define SEG_MAGIC_LEN 8
#define SEG_VERSION 1
#define SEG_CRC_OFF 44

void seg_header_encode(const seg_header *h, uint8_t out[SEG_HEADER_SIZE])
{
    assert(h->log_id >= 0 && h->segment_id >= 0 && h->epoch >= 0);
    memcpy(out, SEG_MAGIC, SEG_MAGIC_LEN);
    le_put16(out + 8, SEG_VERSION);
    le_put16(out + 10, 0);
    le_put32(out + 12, h->flags);
    le_puti64(out + 16, h->log_id);
    le_puti64(out + 24, h->segment_id);
    le_puti64(out + 32, h->epoch);
    le_put32(out + 40, 0);
    le_put32(out + SEG_CRC_OFF, crc32c(0, out, SEG_CRC_OFF));
}

int seg_header_decode(const uint8_t in[SEG_HEADER_SIZE], seg_header *out)
{
    if (memcmp(in, SEG_MAGIC, SEG_MAGIC_LEN) != 0)
        return wp__err(WP_ECORRUPT, "segment header: bad magic");
    uint16_t version = le_get16(in + 8);
    if (version != SEG_VERSION)
        return wp__err(WP_ECORRUPT, "segment header: unsupported version %u", version);
    uint32_t want = le_get32(in + SEG_CRC_OFF), got = crc32c(0, in, SEG_CRC_OFF);
    if (want != got)
        return wp__err(WP_ECORRUPT,
                       "segment header: crc mismatch (stored %08" PRIx32 ", computed %08" PRIx32
                       ")",
                       want, got);
    if (le_get16(in + 10) != 0 || le_get32(in + 40) != 0)
        return wp__err(WP_ECORRUPT, "segment header: nonzero reserved field");
    seg_header h = {
        .flags = le_get32(in + 12),
        .log_id = le_geti64(in + 16),
        .segment_id = le_geti64(in + 24),
        .epoch = le_geti64(in + 32),
    };
    if (h.log_id < 0 || h.segment_id < 0 || h.epoch < 0)
        return wp__err(WP_ECORRUPT,
                       "segment header: negative id or epoch (log %" PRId64 ", segment %" PRId64
                       ", epoch %" PRId64 ")",
                       h.log_id, h.segment_id, h.epoch);
    *out = h;
    return 0;
}
