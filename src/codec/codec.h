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
/* The same without the CRC, for a record of a block that blk_open_records
 * or blk_check_records accepted (they checked every record's CRC): the
 * reader's third pass over the bytes is not needed. Bounds still hold. */
int rec_decode_checked(const uint8_t *buf, size_t len, rec_view *out, size_t *consumed);
/* Iterates properties: *off starts at 0; returns 1 with key/value (not NUL
 * terminated) while there are more, 0 at the end. rec_decode has already
 * validated the property area, so this cannot fail. */
int rec_prop_next(const rec_view *r, size_t *off, const uint8_t **key, size_t *klen,
                  const uint8_t **val, size_t *vlen);

/* ---- blocks: one flush each -------------------------------------------- */
#define BLK_HEADER_SIZE 40
/* Codecs of a block's records (docs/format.md §5.1): bits 0..3 of the
 * header's flags. Equal to the indexes of flush.compression's values. */
#define BLK_CODEC_NONE 0u
#define BLK_CODEC_ZSTD 1u
#define BLK_CODEC_LZ4 2u
#define BLK_CODEC_MAX BLK_CODEC_LZ4
#define BLK_CODEC_MASK 0xFu
typedef struct {
    int64_t first_entry_id;
    uint32_t n_entries;   /* >= 1 */
    uint32_t records_len; /* bytes stored after the header (compressed or not) */
    uint32_t records_crc; /* CRC32C of those stored bytes */
    uint32_t flags;       /* bits 4..31 of the flags field (passed through) */
    uint32_t codec;       /* BLK_CODEC_*: bits 0..3 of the flags field */
    uint32_t raw_len;     /* the records' length once decompressed; decoders
                           * set it to records_len for BLK_CODEC_NONE, for
                           * which encoders accept 0 */
} blk_header;
void blk_header_encode(const blk_header *h, uint8_t out[BLK_HEADER_SIZE]);
/* Checks magic, version, header CRC and field bounds (raw_len at most
 * WP_BLOCK_BYTES_MAX: a reader may allocate raw_len bytes after this). */
int blk_header_decode(const uint8_t in[BLK_HEADER_SIZE], blk_header *out);
/* Checks the records area of a decoded header of an uncompressed block:
 * CRC, and that it holds exactly n_entries well-formed records
 * (WP_ECORRUPT for a compressed block: see blk_open_records). */
int blk_check_records(const blk_header *h, const uint8_t *records);
/* Checks a block's stored bytes (the h->records_len bytes after its
 * header) and walks its records: the CRC first; then, for a compressed
 * block, *raw (of *raw_cap bytes; the caller's, freed by the caller) is
 * grown to h->raw_len bytes — only now, once the CRC matched — and the
 * records are decompressed into it. *records is then `stored` or *raw:
 * h->raw_len bytes holding exactly n_entries records. raw and raw_cap may
 * be NULL for an uncompressed block. */
int blk_open_records(const blk_header *h, const uint8_t *stored, uint8_t **raw, size_t *raw_cap,
                     const uint8_t **records);
/* Offset of the first position >= 0 in buf where a valid block header
 * starts, or -1 (used to tell a torn tail from corruption). */
ptrdiff_t blk_find_header(const uint8_t *buf, size_t len);

/* ---- block compression (compress.c; docs/format.md §5.1) ---------------- */
/* "none", "zstd", "lz4"; "?" for anything else. */
const char *blk_codec_name(uint32_t codec);
/* Decompresses a compressed block's stored bytes (records_crc already
 * checked) into raw (h->raw_len bytes): WP_ECORRUPT unless they decode to
 * exactly h->raw_len bytes. Never writes past raw + h->raw_len. */
int blk_decompress(const blk_header *h, const uint8_t *stored, uint8_t *raw);
/* A compressor for one thread at a time (it keeps the codec's context). */
typedef struct blk_compressor blk_compressor;
int blk_compressor_new(uint32_t codec, blk_compressor **out);
void blk_compressor_free(blk_compressor *c);
uint32_t blk_compressor_codec(const blk_compressor *c);
/* Compresses len bytes of records into dst (cap bytes). Returns the
 * compressed length, or 0 if that would not be below both len and cap
 * (the caller then stores the records uncompressed). */
size_t blk_compress(blk_compressor *c, const uint8_t *src, size_t len, uint8_t *dst, size_t cap);

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
