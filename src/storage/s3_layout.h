/* s3_layout.h — the footer object of a segment on object storage
 * (docs/format.md section 11.1): which objects make up the segment's byte
 * stream, in order, and which objects of the previous generation are
 * garbage. A pure codec: no I/O. */
#ifndef WP_STORAGE_S3_LAYOUT_H
#define WP_STORAGE_S3_LAYOUT_H

#include <stddef.h>
#include <stdint.h>

#include "base/limits.h"

#define S3_LAYOUT_HEADER 64
#define S3_LAYOUT_OBJ 24
#define S3_LAYOUT_GONE 16
/* Entries of either kind: the objects a segment can have. */
#define S3_LAYOUT_ENTRIES_MAX ((uint64_t)WP_SEGMENT_BLOCKS_MAX + 4096)
/* Bytes of the largest valid footer object. */
#define S3_LAYOUT_BYTES_MAX \
    (S3_LAYOUT_HEADER + S3_LAYOUT_ENTRIES_MAX * (S3_LAYOUT_OBJ + S3_LAYOUT_GONE) + 4)

/* An object: the block object <first>.blk when first == last, else the
 * merged object m_<first>_<last>.blk. */
typedef struct {
    uint64_t first, last, size; /* size unused for garbage entries */
} s3_layout_obj;

typedef struct {
    uint64_t generation, bytes;
    int64_t log_id, seg_id;
    s3_layout_obj *objs; /* the byte stream, in order */
    uint32_t n_objs;
    s3_layout_obj *garbage; /* of the previous generation, to delete */
    uint32_t n_garbage;
} s3_layout;

/* Exact size of the encoding of l. */
uint64_t s3_layout_size(const s3_layout *l);
/* Encodes l (which must satisfy the rules; checked by the caller with
 * s3_layout_check) into out[s3_layout_size(l)]. */
void s3_layout_encode(const s3_layout *l, uint8_t *out);
/* WP_OK if l satisfies every rule of the format (counts, order, sizes
 * adding up to bytes); else WP_ECORRUPT with a detail. */
int s3_layout_check(const s3_layout *l);
/* Decodes len bytes of the footer object of segment (log_id, seg_id):
 * every rule of the format, the ids, an exact length. Allocates out's
 * arrays (free with s3_layout_free, also after an error). */
int s3_layout_decode(const uint8_t *b, size_t len, int64_t log_id, int64_t seg_id, s3_layout *out);
void s3_layout_free(s3_layout *l);

#endif
