/* fuzz_footer.c — libFuzzer target for ftr_decode, idx_decode and
 * seg_header_decode (docs/format.md §3, §6, §7). Input: a footer (64
 * bytes) followed by its index. Anything that decodes must re-encode to
 * the same bytes and satisfy the documented invariants. Each input is also
 * tried with its crcs recomputed (index + footer; segment header apart). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/limits.h"
#include "codec/codec.h"
#include "codec/le.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_seg_header(const uint8_t *data, size_t size)
{
    seg_header h;
    if (size < SEG_HEADER_SIZE || seg_header_decode(data, &h) != 0)
        return;
    if (h.log_id < 0 || h.segment_id < 0 || h.epoch < 0)
        abort();
    uint8_t again[SEG_HEADER_SIZE];
    seg_header_encode(&h, again);
    if (memcmp(again, data, SEG_HEADER_SIZE) != 0)
        abort();
}

static void check_index(const uint8_t *in, const seg_footer *f)
{
    idx_entry *e = malloc(((size_t)f->n_blocks + 1) * sizeof *e);
    if (!e)
        abort();
    if (idx_decode(in, f, e) == 0) {
        for (size_t i = 0; i < f->n_blocks; i++) {
            if (e[i].offset < SEG_HEADER_SIZE || e[i].offset + BLK_HEADER_SIZE > f->index_offset ||
                e[i].first_entry_id < 0)
                abort();
            if (i > 0 && (e[i].offset < e[i - 1].offset + BLK_HEADER_SIZE ||
                          e[i].first_entry_id <= e[i - 1].first_entry_id))
                abort();
        }
        if (f->n_blocks > 0 && e[f->n_blocks - 1].first_entry_id > f->last_entry_id)
            abort();
        size_t n = (size_t)f->n_blocks * IDX_ENTRY_SIZE;
        uint8_t *again = malloc(n + 1);
        if (!again)
            abort();
        idx_encode(e, f->n_blocks, again);
        if (memcmp(again, in, n) != 0)
            abort();
        free(again);
    }
    free(e);
}

static void check_footer(const uint8_t *data, size_t size)
{
    seg_footer f;
    if (size < FTR_SIZE || ftr_decode(data, &f) != 0)
        return;
    if (f.n_blocks > WP_SEGMENT_BLOCKS_MAX || f.index_offset < SEG_HEADER_SIZE ||
        f.index_offset > (uint64_t)WP_SEGMENT_BYTES_MAX || f.last_entry_id < -1 ||
        (f.n_blocks == 0) != (f.last_entry_id == -1))
        abort();
    uint8_t again[FTR_SIZE];
    ftr_encode(&f, again);
    if (memcmp(again, data, FTR_SIZE) != 0)
        abort();
    if ((size - FTR_SIZE) / IDX_ENTRY_SIZE >= f.n_blocks) {
        size_t n = (size_t)f.n_blocks * IDX_ENTRY_SIZE;
        uint8_t *in = malloc(n + 1); /* exact size for ASan */
        if (!in)
            abort();
        memcpy(in, data + FTR_SIZE, n);
        check_index(in, &f);
        free(in);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_seg_header(data, size);
    check_footer(data, size);
    if (size < SEG_HEADER_SIZE)
        return 0;
    uint8_t *fixed = malloc(size);
    if (!fixed)
        abort();
    memcpy(fixed, data, size);
    le_put32(fixed + 44, crc32c(0, fixed, 44));
    check_seg_header(fixed, size);
    if (size >= FTR_SIZE) {
        memcpy(fixed, data, size);
        uint32_t n_blocks = le_get32(fixed + 16);
        if ((size - FTR_SIZE) / IDX_ENTRY_SIZE >= n_blocks)
            le_put32(fixed + 20, crc32c(0, fixed + FTR_SIZE, (size_t)n_blocks * IDX_ENTRY_SIZE));
        le_put32(fixed + 60, crc32c(0, fixed, 60));
        check_footer(fixed, size);
    }
    free(fixed);
    return 0;
}
