/* codec.h — the byte formats of docs/format.md: records, block headers,
 * segment header, block index and footer, and CRC32C.
 * Every decoder validates its input as untrusted bytes and returns
 * WP_ECORRUPT (with a wp_errmsg() detail) on any mismatch; none asserts. */
#ifndef WP_CODEC_CODEC_H
#define WP_CODEC_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "woodpecker.h"

/* ---- CRC32C (Castagnoli), hardware (SSE4.2) when the CPU has it -------- */
uint32_t crc32c(uint32_t crc, const void *buf, size_t n); /* crc32c(0, ...) to start */
bool crc32c_hw(void);
/* crc32c(0, a || b) from crc_a = crc32c(0, a), crc_b = crc32c(0, b) and
 * len_b: b is not read again (O(log len_b) work). */
uint32_t crc32c_combine(uint32_t crc_a, uint32_t crc_b, size_t len_b);

/* ---- segment header: first bytes of every segment ---------------------- */
#define SEG_HEADER_SIZE 48
typedef struct {
    int64_t log_id, segment_id, epoch;
    uint32_t flags;
} seg_header;
void seg_header_encode(const seg_header *h, uint8_t out[SEG_HEADER_SIZE]);
int seg_header_decode(const uint8_t in[SEG_HEADER_SIZE], seg_header *out);

/* ---- records: one entry each ------------------------------------------- */
/* Validates a payload against the bounds (limits.h and max_entry_bytes). */
int rec_check(const wp_payload *p, size_t max_entry_bytes);
/* Exact encoded size of a record (header included). */
size_t rec_size(const wp_payload *p);
/* Encodes a checked payload into out (rec_size(p) bytes). Returns bytes written. */
size_t rec_encode(const wp_payload *p, uint8_t *out);
/* A decoded record; pointers point into the decoded buffer. */
typedef struct {
    const uint8_t *data;
    size_t len;
    uint32_t n_props;
    const uint8_t *props; /* encoded properties (see rec_prop_next) */
    size_t props_len;
} rec_view;
/* Decodes one record at buf (len bytes available), checking its CRC and
 * bounds; *consumed is the record's total size. */
int rec_decode(const uint8_t *buf, size_t len, rec_view *out, size_t *consumed);
/* Iterates properties: *off starts at 0; returns 1 with key/value (not NUL
 * terminated) while there are more, 0 at the end. rec_decode has already
 * validated the property area, so this cannot fail. */
int rec_prop_next(const rec_view *r, size_t *off, const uint8_t **key, size_t *klen,
                  const uint8_t **val, size_t *vlen);

/* ---- blocks: one flush each -------------------------------------------- */
#define BLK_HEADER_SIZE 40
typedef struct {
    int64_t first_entry_id;
    uint32_t n_entries;   /* >= 1 */
    uint32_t records_len; /* bytes of records after the header */
    uint32_t records_crc; /* CRC32C of those bytes */
    uint32_t flags;
} blk_header;
void blk_header_encode(const blk_header *h, uint8_t out[BLK_HEADER_SIZE]);
/* Checks magic, version, header CRC and field bounds. */
int blk_header_decode(const uint8_t in[BLK_HEADER_SIZE], blk_header *out);
/* Checks the records area of a decoded header: CRC, and that it holds
 * exactly n_entries well-formed records. */
int blk_check_records(const blk_header *h, const uint8_t *records);
/* Offset of the first position >= 0 in buf where a valid block header
 * starts, or -1 (used to tell a torn tail from corruption). */
ptrdiff_t blk_find_header(const uint8_t *buf, size_t len);

/* ---- block index + footer: written when a segment completes ------------ */
#define IDX_ENTRY_SIZE 16
typedef struct {
    uint64_t offset;        /* of the block header, from segment start */
    int64_t first_entry_id;
} idx_entry;
#define FTR_SIZE 64
typedef struct {
    uint32_t n_blocks;
    uint64_t index_offset;  /* where the index starts == end of the last block */
    int64_t last_entry_id;  /* the segment's LAC; -1 if empty */
    uint32_t index_crc;     /* CRC32C of the index bytes */
    uint32_t flags;
} seg_footer;
void idx_encode(const idx_entry *e, size_t n, uint8_t *out); /* n * IDX_ENTRY_SIZE bytes */
/* Decodes and checks an index against its footer (CRC, offsets increasing
 * and below index_offset, first ids increasing). */
int idx_decode(const uint8_t *in, const seg_footer *f, idx_entry *out);
void ftr_encode(const seg_footer *f, uint8_t out[FTR_SIZE]);
int ftr_decode(const uint8_t in[FTR_SIZE], seg_footer *out);

#endif
