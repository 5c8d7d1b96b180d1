/* fuzz_s3layout.c — libFuzzer target for s3_layout_decode, the footer
 * object of a segment on object storage (docs/format.md §11.1). Anything
 * that decodes must pass s3_layout_check and re-encode to the same bytes.
 * Each input is also tried with both crcs recomputed, so the fuzzer gets
 * past them. The segment ids expected are those the input claims when it
 * is long enough (else 0/0). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codec/codec.h"
#include "codec/le.h"
#include "storage/s3_layout.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(const uint8_t *data, size_t size)
{
    int64_t log_id = 0, seg_id = 0;
    if (size >= S3_LAYOUT_HEADER) {
        log_id = le_geti64(data + 40);
        seg_id = le_geti64(data + 48);
    }
    s3_layout l;
    int rc = s3_layout_decode(data, size, log_id, seg_id, &l);
    if (rc == 0) {
        if (s3_layout_check(&l) != 0 || s3_layout_size(&l) != size)
            abort();
        uint8_t *again = malloc(size);
        if (!again)
            abort();
        s3_layout_encode(&l, again);
        if (memcmp(again, data, size) != 0)
            abort();
        free(again);
    } else if (l.objs || l.garbage) {
        abort(); /* an error leaves nothing allocated */
    }
    s3_layout_free(&l);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check(data, size);
    if (size < S3_LAYOUT_HEADER + 4)
        return 0;
    uint8_t *fixed = malloc(size);
    if (!fixed)
        abort();
    memcpy(fixed, data, size);
    le_put32(fixed + 60, crc32c(0, fixed, 60));
    size_t elen = size - S3_LAYOUT_HEADER - 4;
    le_put32(fixed + size - 4, crc32c(0, fixed + S3_LAYOUT_HEADER, elen));
    check(fixed, size);
    free(fixed);
    return 0;
}
