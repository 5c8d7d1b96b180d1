/* segment.c — segments in the codec's format on a storage backend.
 * Format and torn-tail rule: docs/format.md. */
#include "logstore/segment.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/limits.h"

/* The longest torn tail recovery may cut: one flush writes either blocks
 * totalling at most 64 MiB or a single block (docs/format.md §8). */
#define TORN_TAIL_BYTES_MAX ((uint64_t)WP_BLOCK_BYTES_MAX)
/* Entries a reader of an entry-reading backend asks for at once. */
#define LSEG_READ_BATCH_BYTES (4 * WP_MiB)
_Static_assert(WP_BLOCK_BYTES_MAX >= 64 * WP_MiB, "a torn multi-block flush fits the bound");
/* A block is stored compressed only if that saves more than 1/32 of its
 * records (3 %): less is not worth decompressing on every read. */
#define LSEG_COMPRESS_GAIN_MIN 32


/* ---- block loading (shared by readers, recovery and verify) ------------ */

typedef struct {
    st_reader *r;
    uint64_t off;   /* offset of the next block header */
    uint64_t limit; /* no block may extend past this */
    uint8_t *buf;   /* stored bytes of the loaded block */
    size_t cap;
    uint8_t *raw;   /* its records decompressed (compressed blocks) */
    size_t raw_cap;
    const uint8_t *rec; /* its records: buf or raw, h.raw_len bytes */
    blk_header h;
} biter;

static int read_exact(st_reader *r, const storage *st, uint64_t off, void *buf, size_t len,
                      size_t *got)
{
    return st->ops->seg_read(r, off, buf, len, got);
}

/* Loads the block header at it->off. WP_EAGAIN if fewer than
 * BLK_HEADER_SIZE bytes are there, WP_ECORRUPT if they do not decode. */
static int biter_header(biter *it, const storage *st)
{
    uint8_t hb[BLK_HEADER_SIZE];
    size_t got;
    if (it->off + BLK_HEADER_SIZE > it->limit)
        return WP_EAGAIN;
    int rc = read_exact(it->r, st, it->off, hb, sizeof hb, &got);
    if (rc)
        return rc;
    if (got < sizeof hb)
        return WP_EAGAIN;
    rc = blk_header_decode(hb, &it->h);
    if (rc)
        return wp__err(WP_ECORRUPT, "block header at offset %" PRIu64 ": %s", it->off,
                       wp_errmsg());
    if (it->off + BLK_HEADER_SIZE + it->h.records_len > it->limit)
        return wp__err(WP_ECORRUPT, "block at offset %" PRIu64 " runs past the end (%" PRIu64 ")",
                       it->off, it->limit);
    return WP_OK;
}

/* Grows *buf to hold need bytes (need <= WP_BLOCK_BYTES_MAX: checked by
 * blk_header_decode before anything is allocated; the stored bytes must
 * then be there to be read). */
static int buf_reserve(uint8_t **buf, size_t *cap, size_t need)
{
    if (need <= *cap)
        return WP_OK;
    size_t c = *cap ? *cap : 64 * 1024;
    while (c < need)
        c *= 2;
    uint8_t *nb = realloc(*buf, c);
    if (!nb)
        return wp__err(WP_ENOMEM, "block buffer of %zu bytes", c);
    *buf = nb;
    *cap = c;
    return WP_OK;
}

/* Loads the records of the block whose header biter_header just read and
 * checks them: the stored bytes' CRC, then (compressed blocks) their
 * decompression, then the records (docs/format.md §5, §5.1). WP_EAGAIN if
 * not all bytes are there yet. */
static int biter_records(biter *it, const storage *st)
{
    size_t need = it->h.records_len, got;
    int rc = buf_reserve(&it->buf, &it->cap, need);
    if (rc)
        return rc;
    rc = read_exact(it->r, st, it->off + BLK_HEADER_SIZE, it->buf, need, &got);
    if (rc)
        return rc;
    if (got < need)
        return WP_EAGAIN;
    /* grows it->raw to raw_len once the stored bytes' CRC matched */
    rc = blk_open_records(&it->h, it->buf, &it->raw, &it->raw_cap, &it->rec);
    if (rc == WP_ENOMEM)
        return rc;
    if (rc)
        return wp__err(WP_ECORRUPT, "block at offset %" PRIu64 " (entries %" PRId64 "..): %s",
                       it->off, it->h.first_entry_id, wp_errmsg());
    return WP_OK;
}

/* ---- writing ----------------------------------------------------------- */

struct lseg_w {
    storage *st;
    st_writer *sw;
    uint64_t bytes;
    int64_t next_entry;
    uint64_t appends; /* storage appends so far (the header is append 0) */
    idx_entry *idx;
    size_t n_idx, cap_idx;
    int64_t finish_last; /* the footer's last entry at most this (INT64_MAX: none) */
    int64_t lac_hint;    /* the LAC hint published so far, as far as known (-1: none) */
    blk_compressor *z;   /* flush.compression (lseg_set_codec); NULL: none */
    int failed;
};

static int lseg_w_new(storage *st, st_writer *sw, uint64_t bytes, lseg_w **out)
{
    lseg_w *w = calloc(1, sizeof *w);
    if (!w)
        return wp__err(WP_ENOMEM, "segment writer");
    w->st = st;
    w->sw = sw;
    w->bytes = bytes;
    w->finish_last = INT64_MAX;
    w->lac_hint = -1;
    *out = w;
    return WP_OK;
}

int lseg_create(storage *st, int64_t log_id, int64_t seg_id, int64_t epoch, lseg_w **out)
{
    st_writer *sw;
    int rc = st->ops->seg_create(st, log_id, seg_id, epoch, &sw);
    if (rc)
        return rc;
    uint8_t hb[SEG_HEADER_SIZE];
    seg_header h = {.log_id = log_id, .segment_id = seg_id, .epoch = epoch, .flags = 0};
    seg_header_encode(&h, hb);
    struct iovec iov = {hb, sizeof hb};
    rc = st->ops->seg_append(sw, &iov, 1);
    if (rc)
        goto out_close;
    rc = lseg_w_new(st, sw, SEG_HEADER_SIZE, out);
    if (rc)
        goto out_close;
    (*out)->appends = 1;
    return WP_OK;
out_close:
    st->ops->seg_writer_close(sw);
    return rc;
}

static int idx_push(lseg_w *w, uint64_t off, int64_t first)
{
    if (w->n_idx == w->cap_idx) {
        size_t cap = w->cap_idx ? w->cap_idx * 2 : 256;
        idx_entry *ni = realloc(w->idx, cap * sizeof *ni);
        if (!ni)
            return wp__err(WP_ENOMEM, "segment index");
        w->idx = ni;
        w->cap_idx = cap;
    }
    w->idx[w->n_idx++] = (idx_entry){off, first};
    return WP_OK;
}

int lseg_set_codec(lseg_w *w, uint32_t codec)
{
    /* A backend that keeps entries splits blocks into records (quorum:
     * ADD frames carry the records): it gets them uncompressed. */
    if (w->st->ops->seg_read_entries)
        codec = BLK_CODEC_NONE;
    if (w->z && blk_compressor_codec(w->z) == codec)
        return WP_OK;
    blk_compressor_free(w->z);
    w->z = NULL;
    return codec == BLK_CODEC_NONE ? WP_OK : blk_compressor_new(codec, &w->z);
}

/* Fills a block's header, compressing its records into *zp (advanced past
 * what it used) when w compresses and that makes them smaller; the
 * stored block is *out: at b->buf, or in the area *zp pointed to. */
static void block_seal(lseg_w *w, lseg_block *b, uint8_t **zp, struct iovec *out)
{
    const uint8_t *rec = b->buf + BLK_HEADER_SIZE;
    size_t raw_len = b->len - BLK_HEADER_SIZE;
    blk_header h = {.first_entry_id = b->first_entry_id, .n_entries = b->n_entries};
    size_t zlen = 0;
    /* Worth it only if it saves LSEG_COMPRESS_GAIN_MIN of the records
     * (docs/format.md §5.1); then it also fits where b->len would. */
    if (w->z && *zp)
        zlen = blk_compress(w->z, rec, raw_len, *zp + BLK_HEADER_SIZE,
                            raw_len - 1 - raw_len / LSEG_COMPRESS_GAIN_MIN);
    if (zlen) {
        h.codec = blk_compressor_codec(w->z);
        h.raw_len = (uint32_t)raw_len;
        h.records_len = (uint32_t)zlen;
        h.records_crc = crc32c(0, *zp + BLK_HEADER_SIZE, zlen);
        blk_header_encode(&h, *zp);
        *out = (struct iovec){*zp, BLK_HEADER_SIZE + zlen};
        *zp += BLK_HEADER_SIZE + zlen;
        return;
    }
    h.records_len = (uint32_t)raw_len;
    h.records_crc = crc32c(0, rec, raw_len);
    blk_header_encode(&h, b->buf);
    *out = (struct iovec){b->buf, b->len};
}

int lseg_prepare(lseg_w *w, lseg_block *const *blocks, int n, lseg_put *p)
{
    p->zbuf = NULL;
    if (w->failed)
        return w->failed;
    if (n <= 0 || n > LSEG_WRITE_BLOCKS_MAX)
        return wp__err(WP_EINVAL, "lseg_prepare: %d blocks", n);
    uint64_t off = w->bytes;
    int64_t next = w->next_entry;
    if (w->z) { /* compressed blocks go here: each smaller than its block */
        size_t total = 0;
        for (int i = 0; i < n; i++)
            total += blocks[i]->len;
        p->zbuf = malloc(total);
        /* Without it, the blocks are written uncompressed. */
    }
    uint8_t *zp = p->zbuf;
    for (int i = 0; i < n; i++) {
        lseg_block *b = blocks[i];
        if (b->first_entry_id != next || b->n_entries == 0) {
            free(p->zbuf);
            p->zbuf = NULL;
            return wp__err(WP_EINVAL, "lseg_prepare: block starts at %" PRId64 ", want %" PRId64,
                           b->first_entry_id, next);
        }
        block_seal(w, b, &zp, &p->iov[i]);
        int rc = idx_push(w, off, b->first_entry_id);
        if (rc) {
            free(p->zbuf);
            p->zbuf = NULL;
            return w->failed = rc;
        }
        off += p->iov[i].iov_len;
        next += b->n_entries;
    }
    p->n = n;
    p->k = w->appends++;
    p->last_entry_id = next - 1;
    w->bytes = off; /* as if it succeeds: after a failure nothing follows */
    w->next_entry = next;
    return WP_OK;
}

int lseg_put_run(lseg_w *w, const lseg_put *p, bool parallel)
{
    const struct storage_ops *ops = w->st->ops;
    if (parallel && ops->seg_append_nth)
        return ops->seg_append_nth(w->sw, p->k, p->iov, p->n);
    return ops->seg_append(w->sw, p->iov, p->n);
}

bool lseg_parallel(const lseg_w *w) { return w->st->ops->seg_append_nth != NULL; }

int lseg_put_done(lseg_w *w, lseg_put *p, int rc)
{
    free(p->zbuf);
    p->zbuf = NULL;
    if (rc && !w->failed)
        w->failed = rc;
    if (w->failed)
        return w->failed;
    /* A failed hint only delays other processes' readers; the data is durable. */
    if (w->st->ops->seg_publish_lac(w->sw, p->last_entry_id) == WP_OK)
        w->lac_hint = p->last_entry_id;
    return WP_OK;
}

int lseg_write(lseg_w *w, lseg_block *const *blocks, int n)
{
    lseg_put p;
    int rc = lseg_prepare(w, blocks, n, &p);
    if (rc)
        return rc;
    return lseg_put_done(w, &p, lseg_put_run(w, &p, false));
}

int lseg_finish(lseg_w *w, int64_t *last_entry_id, uint64_t *bytes)
{
    if (w->failed)
        return w->failed;
    size_t ilen = w->n_idx * IDX_ENTRY_SIZE;
    uint8_t *ib = malloc(ilen + FTR_SIZE);
    if (!ib)
        return wp__err(WP_ENOMEM, "segment index of %zu bytes", ilen);
    idx_encode(w->idx, w->n_idx, ib);
    int64_t last = w->next_entry - 1 < w->finish_last ? w->next_entry - 1 : w->finish_last;
    /* Completing below the last written entry (a replica at the quorum's
     * last entry), or below a hint published before a cut (lseg_reopen
     * with a limit that fell on a block boundary): the LAC hint comes down
     * first, so that the footer covers it (footer_proven) even after a
     * crash in between. */
    if (last < w->next_entry - 1 || last < w->lac_hint) {
        int rc = w->st->ops->seg_publish_lac(w->sw, last);
        if (rc) { /* a footer below the hint would read as damage */
            free(ib);
            w->failed = rc;
            return rc;
        }
        w->lac_hint = last;
    }
    seg_footer f = {.n_blocks = (uint32_t)w->n_idx,
                    .index_offset = w->bytes,
                    .last_entry_id = last,
                    .index_crc = crc32c(0, ib, ilen),
                    .flags = 0};
    ftr_encode(&f, ib + ilen);
    struct iovec iov = {ib, ilen + FTR_SIZE};
    int rc = w->st->ops->seg_append(w->sw, &iov, 1);
    free(ib);
    if (rc) {
        w->failed = rc;
        return rc;
    }
    w->bytes += ilen + FTR_SIZE;
    w->failed = WP_ECLOSED; /* nothing may follow the footer */
    if (last_entry_id)
        *last_entry_id = last;
    if (bytes)
        *bytes = w->bytes;
    return WP_OK;
}

bool lseg_degraded(const lseg_w *w)
{
    return !w->failed && w->st->ops->seg_writer_degraded && w->st->ops->seg_writer_degraded(w->sw);
}

uint64_t lseg_bytes(const lseg_w *w) { return w->bytes; }
int64_t lseg_last_entry(const lseg_w *w) { return w->next_entry - 1; }

void lseg_close(lseg_w *w)
{
    if (!w)
        return;
    w->st->ops->seg_writer_close(w->sw);
    blk_compressor_free(w->z);
    free(w->idx);
    free(w);
}

/* ---- recovery ---------------------------------------------------------- */

/* Reads the footer at the end of a segment of `size` bytes; WP_OK only if
 * it decodes and its geometry matches the size. */
static int footer_read(const storage *st, st_reader *r, uint64_t size, seg_footer *f)
{
    uint8_t fb[FTR_SIZE];
    size_t got;
    if (size < SEG_HEADER_SIZE + FTR_SIZE)
        return wp__err(WP_ECORRUPT, "segment of %" PRIu64 " bytes has no room for a footer", size);
    int rc = read_exact(r, st, size - FTR_SIZE, fb, FTR_SIZE, &got);
    if (rc)
        return rc;
    if (got < FTR_SIZE)
        return wp__err(WP_ECORRUPT, "footer: short read");
    rc = ftr_decode(fb, f);
    if (rc)
        return rc;
    if (f->index_offset + (uint64_t)f->n_blocks * IDX_ENTRY_SIZE + FTR_SIZE != size)
        return wp__err(WP_ECORRUPT, "footer geometry (index at %" PRIu64 ", %" PRIu32
                       " blocks) does not match segment size %" PRIu64,
                       f->index_offset, f->n_blocks, size);
    return WP_OK;
}

/* Reads and checks the segment header: WP_EAGAIN if fewer than 48 bytes
 * are there, WP_ECORRUPT if they do not decode or name another segment. */
static int header_check(const storage *st, st_reader *r, int64_t log_id, int64_t seg_id,
                        seg_header *out)
{
    uint8_t hb[SEG_HEADER_SIZE];
    size_t got;
    int rc = read_exact(r, st, 0, hb, sizeof hb, &got);
    if (rc)
        return rc;
    if (got < sizeof hb)
        return WP_EAGAIN;
    seg_header h;
    rc = seg_header_decode(hb, &h);
    if (rc)
        return wp__err(WP_ECORRUPT, "segment header: %s", wp_errmsg());
    if (h.log_id != log_id || h.segment_id != seg_id)
        return wp__err(WP_ECORRUPT, "segment header names log %" PRId64 " segment %" PRId64
                       ", expected %" PRId64 "/%" PRId64, h.log_id, h.segment_id, log_id, seg_id);
    if (out)
        *out = h;
    return WP_OK;
}

/* How a scan of blocks ended (docs/format.md section 8). */
typedef struct {
    uint64_t end; /* first position that is not a complete valid block */
    int stop;     /* WP_OK: the bytes end there; WP_EAGAIN: a block cut short
                   * (header or records); WP_ECORRUPT: damaged bytes */
    bool limited; /* stopped at blocks past the writer's finish_last */
    char why[256];
} scan_end;

/* Scans the blocks of a segment from its header on, collecting the index
 * and the dense ids in w, up to `size` bytes. Returns only hard errors
 * (I/O, memory); where and why the valid blocks end goes to *se. */
static int scan_blocks(const storage *st, st_reader *r, uint64_t size, lseg_w *w, scan_end *se)
{
    biter it = {.r = r, .off = SEG_HEADER_SIZE, .limit = size};
    int rc;
    for (;;) {
        if (w->next_entry > w->finish_last) { /* blocks past the limit: cut, not damage */
            se->stop = WP_OK;
            se->limited = it.off < size;
            rc = WP_OK;
            break;
        }
        rc = biter_header(&it, st);
        if (rc == WP_OK)
            rc = biter_records(&it, st);
        if (rc == WP_OK && it.h.first_entry_id != w->next_entry)
            rc = wp__err(WP_ECORRUPT, "block at offset %" PRIu64 " starts at entry %" PRId64
                         ", expected %" PRId64, it.off, it.h.first_entry_id, w->next_entry);
        if (rc == WP_EAGAIN || rc == WP_ECORRUPT) {
            se->stop = rc == WP_EAGAIN && it.off >= size ? WP_OK : rc;
            if (rc == WP_EAGAIN)
                snprintf(se->why, sizeof se->why, "block at offset %" PRIu64 " is cut short "
                         "(%" PRIu64 " bytes left)", it.off, size - it.off);
            else
                snprintf(se->why, sizeof se->why, "%s", wp_errmsg());
            rc = WP_OK;
            break;
        }
        if (rc)
            break;
        rc = idx_push(w, it.off, it.h.first_entry_id);
        if (rc)
            break;
        w->next_entry += it.h.n_entries;
        it.off += BLK_HEADER_SIZE + it.h.records_len;
    }
    free(it.buf);
    free(it.raw);
    se->end = it.off;
    return rc;
}

/* True if the bytes from `end` (where the valid blocks stop) to `size` are
 * exactly the index and footer of those blocks: the footer decodes, its
 * geometry matches, its index sits at the end of the last block, parses
 * and lists exactly the scanned blocks, and its last entry is the last
 * scanned one and covers the LAC hint. A footer-shaped tail of an entry's
 * payload is inside a block, so it can never pass. */
static bool footer_proven(const storage *st, st_reader *r, uint64_t size, const lseg_w *w,
                          uint64_t end, int64_t lac_hint, seg_footer *f)
{
    /* The last entry is the last scanned one, or (completed at a limit:
     * lseg_recover_at) one inside the last block. */
    int64_t last_min = w->n_idx ? w->idx[w->n_idx - 1].first_entry_id : -1;
    if (footer_read(st, r, size, f) != WP_OK || f->index_offset != end ||
        f->n_blocks != w->n_idx || f->last_entry_id > w->next_entry - 1 ||
        f->last_entry_id < last_min || f->last_entry_id < lac_hint)
        return false;
    size_t ilen = (size_t)f->n_blocks * IDX_ENTRY_SIZE, got;
    uint8_t *ib = malloc(ilen ? ilen : 1);
    idx_entry *idx = malloc((f->n_blocks ? f->n_blocks : 1) * sizeof *idx);
    bool ok = ib && idx && read_exact(r, st, end, ib, ilen, &got) == WP_OK && got == ilen &&
              idx_decode(ib, f, idx) == WP_OK &&
              (ilen == 0 || memcmp(idx, w->idx, f->n_blocks * sizeof *idx) == 0);
    free(ib);
    free(idx);
    wp__err_clear();
    return ok;
}

static int recover_open(storage *st, int64_t log_id, int64_t seg_id, int64_t epoch)
{
    int rc = st->ops->seg_fence(st, log_id, seg_id, epoch);
    if (rc != WP_ENOENT)
        return rc;
    /* Missing in storage: create it ourselves (fenced by construction), so
     * an older writer that has not created it yet fails to. */
    lseg_w *w;
    rc = lseg_create(st, log_id, seg_id, epoch, &w);
    if (rc == WP_OK)
        lseg_close(w);
    else if (rc != WP_EEXIST)
        return rc;
    return st->ops->seg_fence(st, log_id, seg_id, epoch);
}

/* The header of a segment being recovered. *rewrite is set when it never
 * became durable, so the segment provably holds no acknowledged entry: a
 * header is written and synced before any block, so that is only when
 * nothing follows it (local: at most 48 bytes, of which a torn write may
 * have left garbage; object storage: no bytes at all). Any other bad
 * header is corruption. A header of a higher epoch is a newer writer's
 * segment: not ours to touch. */
static int recover_header(const storage *st, st_reader *r, int64_t log_id, int64_t seg_id,
                          int64_t epoch, uint64_t size, bool *rewrite)
{
    seg_header h;
    int rc = header_check(st, r, log_id, seg_id, &h);
    bool never_durable = st->ops->appends_atomic ? size == 0 : size <= SEG_HEADER_SIZE;
    *rewrite = false;
    if ((rc == WP_EAGAIN || rc == WP_ECORRUPT) && never_durable) {
        wp__err_clear();
        *rewrite = true;
        return WP_OK;
    }
    if (rc == WP_EAGAIN)
        return wp__err(WP_ECORRUPT, "segment %" PRId64 "/%" PRId64 ": header cut short at %"
                       PRIu64 " bytes", log_id, seg_id, size);
    if (rc)
        return wp__err(rc, "segment %" PRId64 "/%" PRId64 " (%" PRIu64 " bytes): %s", log_id,
                       seg_id, size, wp_errmsg());
    if (h.epoch > epoch)
        return wp__err(WP_EFENCED, "segment %" PRId64 "/%" PRId64 " was created by epoch %" PRId64
                       ", above this writer's %" PRId64, log_id, seg_id, h.epoch, epoch);
    return WP_OK;
}

/* The torn-tail rule (docs/format.md section 8) for valid blocks ending at
 * se->end < size: WP_OK if the rest is an append that was never
 * acknowledged and may be cut, WP_ECORRUPT otherwise. */
static int torn_tail_rule(const storage *st, int64_t log_id, int64_t seg_id, uint64_t size,
                          const lseg_w *w, const scan_end *se, int64_t lac_hint)
{
    if (st->ops->appends_atomic)
        return wp__err(WP_ECORRUPT, "segment %" PRId64 "/%" PRId64 ": %s (appends are atomic: "
                       "no torn tail, this is damage)", log_id, seg_id, se->why);
    if (w->next_entry <= lac_hint)
        return wp__err(WP_ECORRUPT, "segment %" PRId64 "/%" PRId64 ": durable entry %" PRId64
                       " (LAC hint %" PRId64 ") is damaged: %s", log_id, seg_id, w->next_entry,
                       lac_hint, se->why);
    if (size - se->end > TORN_TAIL_BYTES_MAX)
        return wp__err(WP_ECORRUPT, "segment %" PRId64 "/%" PRId64 ": %s, with %" PRIu64
                       " bytes after it: longer than one flush, not a torn tail", log_id, seg_id,
                       se->why, size - se->end);
    return WP_OK;
}

int lseg_reopen(storage *st, int64_t log_id, int64_t seg_id, int64_t epoch, int64_t limit,
                const wp__logger *lg, lseg_w **out, int64_t *last_entry_id, uint64_t *bytes)
{
    *out = NULL;
    st_reader *r;
    int rc = st->ops->seg_open_read(st, log_id, seg_id, &r);
    if (rc)
        return rc;
    uint64_t size;
    rc = st->ops->seg_size(r, &size);
    if (rc)
        goto out_reader;
    int64_t lac_hint = -1;
    if (st->ops->seg_read_lac(r, &lac_hint))
        lac_hint = -1;
    bool rewrite_header;
    rc = recover_header(st, r, log_id, seg_id, epoch, size, &rewrite_header);
    if (rc)
        goto out_reader;
    lseg_w *w = NULL;
    st_writer *sw = NULL;
    scan_end se = {.end = SEG_HEADER_SIZE, .stop = WP_OK};
    rc = lseg_w_new(st, NULL, SEG_HEADER_SIZE, &w);
    if (rc)
        goto out_reader;
    w->finish_last = limit;
    w->lac_hint = lac_hint;
    if (!rewrite_header) {
        rc = scan_blocks(st, r, size, w, &se);
        if (rc)
            goto out_w;
    }
    if (!rewrite_header && se.end < size) {
        seg_footer f;
        if (footer_proven(st, r, size, w, se.end, lac_hint, &f)) {
            *last_entry_id = f.last_entry_id; /* completed before the crash */
            *bytes = size;
            goto out_w;
        }
        if (!se.limited && (rc = torn_tail_rule(st, log_id, seg_id, size, w, &se, lac_hint)))
            goto out_w;
    }
    if (se.end < size || rewrite_header)
        wp__log(lg, WP_LOG_WARN, "segment %" PRId64 "/%" PRId64 ": cutting %s at %" PRIu64
                " (%" PRIu64 " bytes)", log_id, seg_id,
                se.limited ? "the blocks past the last entry" : "a torn tail",
                rewrite_header ? 0 : se.end, size - (rewrite_header ? 0 : se.end));
    rc = st->ops->seg_reopen(st, log_id, seg_id, epoch, rewrite_header ? 0 : se.end, &sw);
    if (rc)
        goto out_w;
    w->sw = sw;
    if (rewrite_header) {
        uint8_t hb[SEG_HEADER_SIZE];
        seg_header h = {.log_id = log_id, .segment_id = seg_id, .epoch = epoch};
        seg_header_encode(&h, hb);
        struct iovec iov = {hb, sizeof hb};
        rc = st->ops->seg_append(sw, &iov, 1);
        if (rc)
            goto out_w;
        w->appends = 1;
    }
    w->bytes = se.end;
    *last_entry_id = w->next_entry - 1;
    *bytes = w->bytes;
    *out = w;
    w = NULL;
out_w:
    if (w && !w->sw)
        free(w->idx), free(w);
    else if (w)
        lseg_close(w);
out_reader:
    st->ops->seg_reader_close(r);
    return rc;
}

int lseg_recover_at(storage *st, int64_t log_id, int64_t seg_id, int64_t epoch, int64_t limit,
                    const wp__logger *lg, int64_t *last_entry_id, uint64_t *bytes)
{
    if (st->ops->seg_recover) { /* the backend's own rules (quorum) */
        if (limit != INT64_MAX)
            return wp__err(WP_ENOTSUP, "storage '%s': no recovery at a limit", st->ops->name);
        return st->ops->seg_recover(st, log_id, seg_id, epoch, last_entry_id, bytes);
    }
    /* The fence refuses a segment owned by a higher epoch (WP_EFENCED). */
    int rc = recover_open(st, log_id, seg_id, epoch);
    if (rc)
        return rc;
    lseg_w *w = NULL;
    rc = lseg_reopen(st, log_id, seg_id, epoch, limit, lg, &w, last_entry_id, bytes);
    if (rc || !w)
        return rc; /* an error, or completed before */
    rc = lseg_finish(w, last_entry_id, bytes);
    lseg_close(w);
    return rc;
}

int lseg_recover(storage *st, int64_t log_id, int64_t seg_id, int64_t epoch,
                 const wp__logger *lg, int64_t *last_entry_id, uint64_t *bytes)
{
    return lseg_recover_at(st, log_id, seg_id, epoch, INT64_MAX, lg, last_entry_id, bytes);
}

/* ---- reading ----------------------------------------------------------- */

struct lseg_r {
    storage *st;
    st_reader *r;
    int64_t log_id, seg_id;
    bool completed;
    idx_entry *idx; /* from the footer; NULL: scan */
    uint32_t n_idx;
    biter it;
    bool loaded;      /* it.h/it.buf hold the block at it.off */
    uint32_t rec_i;   /* next record within the loaded block */
    size_t rec_off;   /* its offset in it.buf */
    int64_t next_id;  /* id of the entry at (it.off, rec_i) */
    int64_t target;   /* skip entries below this */
    bool need_seek;
    /* Backends that read entries (seg_read_entries): the batch in hand. */
    bool entries;
    st_entries batch;
    size_t batch_off;
    uint32_t batch_i;
    int64_t last; /* of a completed segment: entries are read up to it */
    int wait_ms;  /* lseg_set_wait */
    bool waited;  /* the last read found nothing after waiting */
};

static int load_index(lseg_r *rd, uint64_t bytes)
{
    seg_footer f;
    int rc = footer_read(rd->st, rd->r, bytes, &f);
    if (rc)
        return rc;
    size_t ilen = (size_t)f.n_blocks * IDX_ENTRY_SIZE;
    uint8_t *ib = malloc(ilen ? ilen : 1);
    idx_entry *idx = malloc((f.n_blocks ? f.n_blocks : 1) * sizeof *idx);
    size_t got;
    if (!ib || !idx) {
        rc = wp__err(WP_ENOMEM, "segment index");
        goto out;
    }
    rc = read_exact(rd->r, rd->st, f.index_offset, ib, ilen, &got);
    if (rc == WP_OK && got < ilen)
        rc = wp__err(WP_ECORRUPT, "index: short read");
    if (rc == WP_OK)
        rc = idx_decode(ib, &f, idx);
    if (rc)
        goto out;
    rd->idx = idx;
    rd->n_idx = f.n_blocks;
    rd->it.limit = f.index_offset;
    idx = NULL;
out:
    free(ib);
    free(idx);
    return rc;
}

int lseg_check_complete(storage *st, int64_t log_id, int64_t seg_id, uint64_t bytes,
                        int64_t *last_entry_id)
{
    st_reader *r = NULL;
    int rc = st->ops->seg_open_read(st, log_id, seg_id, &r);
    if (rc)
        return rc;
    if (bytes == 0 && (rc = st->ops->seg_size(r, &bytes)) != WP_OK)
        goto out;
    seg_footer f;
    rc = header_check(st, r, log_id, seg_id, NULL);
    if (rc == WP_EAGAIN)
        rc = wp__err(WP_ECORRUPT, "segment %" PRId64 "/%" PRId64 ": no header", log_id, seg_id);
    if (rc || (rc = footer_read(st, r, bytes, &f)) != WP_OK)
        goto out;
    size_t ilen = (size_t)f.n_blocks * IDX_ENTRY_SIZE;
    uint8_t *ib = malloc(ilen ? ilen : 1);
    idx_entry *idx = malloc((f.n_blocks ? f.n_blocks : 1) * sizeof *idx);
    size_t got = 0;
    if (!ib || !idx)
        rc = wp__err(WP_ENOMEM, "segment index");
    if (rc == WP_OK && (rc = read_exact(r, st, f.index_offset, ib, ilen, &got)) == WP_OK &&
        got < ilen)
        rc = wp__err(WP_ECORRUPT, "index: short read");
    if (rc == WP_OK)
        rc = idx_decode(ib, &f, idx);
    /* The last block the index names must be there and hold the last entry. */
    if (rc == WP_OK && f.n_blocks > 0) {
        biter it = {.r = r, .off = idx[f.n_blocks - 1].offset, .limit = f.index_offset};
        rc = biter_header(&it, st);
        if (rc == WP_EAGAIN)
            rc = wp__err(WP_ECORRUPT, "last block at %" PRIu64 ": cut short", it.off);
        if (rc == WP_OK && (it.h.first_entry_id != idx[f.n_blocks - 1].first_entry_id ||
                            it.h.first_entry_id > f.last_entry_id ||
                            it.h.first_entry_id + (int64_t)it.h.n_entries - 1 < f.last_entry_id))
            rc = wp__err(WP_ECORRUPT, "last block (entries %" PRId64 "+%" PRIu32 ") does not "
                         "match the index and footer (last entry %" PRId64 ")",
                         it.h.first_entry_id, it.h.n_entries, f.last_entry_id);
    }
    if (rc == WP_OK && f.n_blocks == 0 && f.last_entry_id != -1)
        rc = wp__err(WP_ECORRUPT, "footer: no blocks, last entry %" PRId64, f.last_entry_id);
    free(ib);
    free(idx);
    if (rc == WP_OK)
        *last_entry_id = f.last_entry_id;
out:
    st->ops->seg_reader_close(r);
    if (rc && rc != WP_ENOMEM && rc != WP_EIO && rc != WP_ENOENT && rc != WP_EUNAVAILABLE)
        rc = wp__err(WP_ECORRUPT, "segment %" PRId64 "/%" PRId64 " of %" PRIu64 " bytes is not "
                     "a complete segment: %s", log_id, seg_id, bytes, wp_errmsg());
    return rc;
}

int lseg_open_read(storage *st, int64_t log_id, int64_t seg_id, bool completed, uint64_t bytes,
                   lseg_r **out)
{
    lseg_r *rd = calloc(1, sizeof *rd);
    if (!rd)
        return wp__err(WP_ENOMEM, "segment reader");
    int rc = st->ops->seg_open_read(st, log_id, seg_id, &rd->r);
    if (rc) {
        free(rd);
        return rc;
    }
    rd->st = st;
    rd->log_id = log_id;
    rd->seg_id = seg_id;
    rd->completed = completed;
    if (st->ops->seg_read_entries) { /* entries, not bytes: no header, no index */
        rd->entries = true;
        rd->need_seek = true;
        *out = rd;
        return WP_OK;
    }
    rd->it = (biter){.r = rd->r, .off = SEG_HEADER_SIZE, .limit = UINT64_MAX};
    if (completed) {
        rd->it.limit = bytes;
        if (load_index(rd, bytes) != WP_OK)
            rd->it.limit = bytes > FTR_SIZE ? bytes - FTR_SIZE : bytes; /* scan instead */
    }
    rd->need_seek = true;
    *out = rd;
    return WP_OK;
}

void lseg_seek(lseg_r *r, int64_t entry_id)
{
    r->target = entry_id < 0 ? 0 : entry_id;
    r->need_seek = true;
}

/* Positions it.off/next_id at the block that holds r->target, or the
 * first block if it precedes all. Uses the index when there is one. */
static void seek_index(lseg_r *r)
{
    r->it.off = SEG_HEADER_SIZE;
    r->next_id = 0;
    r->loaded = false;
    if (!r->idx || r->n_idx == 0)
        return;
    uint32_t lo = 0, hi = r->n_idx; /* last block with first <= target */
    while (hi - lo > 1) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (r->idx[mid].first_entry_id <= r->target)
            lo = mid;
        else
            hi = mid;
    }
    r->it.off = r->idx[lo].offset;
    r->next_id = r->idx[lo].first_entry_id;
}

/* Loads the block at it.off, whose first entry must be next_id. */
static int load_block(lseg_r *r, int64_t max_entry_id)
{
    int rc;
    for (;;) {
        if (r->next_id > max_entry_id)
            return WP_EAGAIN;
        rc = biter_header(&r->it, r->st);
        if (rc == WP_OK && r->it.h.first_entry_id != r->next_id)
            rc = wp__err(WP_ECORRUPT, "block at offset %" PRIu64 " starts at entry %" PRId64
                         ", expected %" PRId64, r->it.off, r->it.h.first_entry_id, r->next_id);
        /* Skip whole blocks below the target without reading their records. */
        if (rc != WP_OK || r->target < r->next_id + (int64_t)r->it.h.n_entries)
            break;
        r->it.off += BLK_HEADER_SIZE + r->it.h.records_len;
        r->next_id += r->it.h.n_entries;
    }
    if (rc == WP_OK)
        rc = biter_records(&r->it, r->st);
    if (rc == WP_EAGAIN && max_entry_id == LSEG_LAC_UNKNOWN)
        return WP_EAGAIN; /* not written yet */
    if (rc == WP_EAGAIN)
        /* entries up to max_entry_id are durable, so their bytes are there */
        rc = wp__err(WP_ECORRUPT, "segment %" PRId64 "/%" PRId64 ": durable entry %" PRId64
                     " missing at offset %" PRIu64, r->log_id, r->seg_id, r->next_id, r->it.off);
    if (rc)
        return rc;
    r->loaded = true;
    r->rec_i = 0;
    r->rec_off = 0;
    return WP_OK;
}

/* lseg_next for backends that read entries: batches of records. */
static int next_entry_batch(lseg_r *r, int64_t max_entry_id, lseg_entry *out)
{
    if (r->need_seek) {
        r->next_id = r->target;
        r->batch = (st_entries){0};
        r->batch_i = 0;
        r->batch_off = 0;
        r->need_seek = false;
    }
    r->waited = false;
    if (r->next_id > max_entry_id)
        return WP_EAGAIN;
    if (r->batch_i >= r->batch.n) {
        bool wait = r->wait_ms > 0 && !r->completed && r->st->ops->seg_reader_wait;
        if (wait)
            r->st->ops->seg_reader_wait(r->r, r->wait_ms);
        int rc = r->st->ops->seg_read_entries(r->r, r->next_id, max_entry_id, r->completed,
                                              LSEG_READ_BATCH_BYTES, &r->batch);
        if (wait)
            r->st->ops->seg_reader_wait(r->r, 0);
        if (rc)
            return rc;
        r->batch_i = 0;
        r->batch_off = 0;
        if (r->batch.n == 0) {
            /* Nothing, in a completed segment: not its end (next_id is at
             * most its last), so never a skip to the next one. */
            if (r->completed)
                return wp__err(WP_EUNAVAILABLE, "segment %" PRId64 "/%" PRId64 ": entry %" PRId64
                               " of the completed segment was not returned", r->log_id,
                               r->seg_id, r->next_id);
            r->waited = wait;
            return WP_EAGAIN;
        }
        if (r->batch.first != r->next_id)
            return wp__err(WP_ECORRUPT, "segment %" PRId64 "/%" PRId64 ": asked for entry %" PRId64
                           ", got %" PRId64, r->log_id, r->seg_id, r->next_id, r->batch.first);
    }
    size_t used; /* checked by the backend (storage.h, seg_read_entries) */
    int rc = rec_decode_checked(r->batch.records + r->batch_off, r->batch.len - r->batch_off,
                                &out->rec, &used);
    if (rc)
        return wp__err(WP_ECORRUPT, "segment %" PRId64 "/%" PRId64 " entry %" PRId64 ": %s",
                       r->log_id, r->seg_id, r->next_id, wp_errmsg());
    out->raw = r->batch.records + r->batch_off;
    out->raw_len = used;
    out->entry_id = r->next_id++;
    r->batch_off += used;
    r->batch_i++;
    return WP_OK;
}

int lseg_next(lseg_r *r, int64_t max_entry_id, lseg_entry *out)
{
    if (r->entries)
        return next_entry_batch(r, max_entry_id, out);
    if (r->need_seek) {
        seek_index(r);
        r->need_seek = false;
    }
    for (;;) {
        if (!r->loaded) {
            int rc = load_block(r, max_entry_id);
            if (rc)
                return rc;
        }
        if (r->rec_i == r->it.h.n_entries) {
            r->it.off += BLK_HEADER_SIZE + r->it.h.records_len;
            r->loaded = false;
            continue;
        }
        if (r->next_id > max_entry_id)
            return WP_EAGAIN;
        size_t used;
        int rc = rec_decode_checked(r->it.rec + r->rec_off, r->it.h.raw_len - r->rec_off,
                                    &out->rec, &used);
        if (rc) /* blk_open_records already passed; cannot happen */
            return wp__err(WP_ECORRUPT, "record %" PRId64 ": %s", r->next_id, wp_errmsg());
        out->entry_id = r->next_id++;
        out->raw = r->it.rec + r->rec_off;
        out->raw_len = used;
        r->rec_i++;
        r->rec_off += used;
        if (out->entry_id >= r->target)
            return WP_OK;
    }
}

int64_t lseg_position(const lseg_r *r) { return r->next_id; }

int lseg_read_lac(lseg_r *r, int64_t *lac)
{
    return r->st->ops->seg_read_lac(r->r, lac);
}

bool lseg_can_wait(const lseg_r *r)
{
    return r->entries && !r->completed && r->st->ops->seg_reader_wait;
}

void lseg_set_wait(lseg_r *r, int wait_ms) { r->wait_ms = wait_ms > 0 ? wait_ms : 0; }

bool lseg_waited(const lseg_r *r) { return r->waited; }

void lseg_close_read(lseg_r *r)
{
    if (!r)
        return;
    r->st->ops->seg_reader_close(r->r);
    free(r->idx);
    free(r->it.buf);
    free(r->it.raw);
    free(r);
}

/* ---- verify ------------------------------------------------------------ */

static void problem(lseg_problem_fn fn, void *arg, int *bad, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void problem(lseg_problem_fn fn, void *arg, int *bad, const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    *bad = 1;
    if (fn)
        fn(arg, buf);
}

/* Checks the footer and index against the blocks the scan found. */
static void verify_footer(const storage *st, st_reader *r, uint64_t bytes, const lseg_w *w,
                          uint64_t end, int64_t last_entry_id, lseg_problem_fn fn, void *arg,
                          int *bad)
{
    seg_footer f;
    if (footer_read(st, r, bytes, &f)) {
        problem(fn, arg, bad, "footer: %s", wp_errmsg());
        return;
    }
    if (f.index_offset != end)
        problem(fn, arg, bad, "footer: index at %" PRIu64 " but blocks end at %" PRIu64,
                f.index_offset, end);
    /* The footer's last entry is in the last block (format.md section 7). */
    int64_t last_min = w->n_idx ? w->idx[w->n_idx - 1].first_entry_id : -1;
    if (f.last_entry_id != last_entry_id || last_entry_id > w->next_entry - 1 ||
        last_entry_id < last_min)
        problem(fn, arg, bad, "last entry: footer %" PRId64 ", blocks up to %" PRId64
                ", metadata %" PRId64, f.last_entry_id, w->next_entry - 1, last_entry_id);
    if (f.n_blocks != w->n_idx) {
        problem(fn, arg, bad, "footer: %" PRIu32 " blocks, found %zu", f.n_blocks, w->n_idx);
        return;
    }
    size_t ilen = (size_t)f.n_blocks * IDX_ENTRY_SIZE, got;
    uint8_t *ib = malloc(ilen ? ilen : 1);
    idx_entry *idx = malloc((f.n_blocks ? f.n_blocks : 1) * sizeof *idx);
    if (ib && idx && st->ops->seg_read(r, f.index_offset, ib, ilen, &got) == WP_OK && got == ilen) {
        if (idx_decode(ib, &f, idx))
            problem(fn, arg, bad, "index: %s", wp_errmsg());
        else if (f.n_blocks && memcmp(idx, w->idx, f.n_blocks * sizeof *idx) != 0)
            problem(fn, arg, bad, "index does not match the blocks");
    } else {
        problem(fn, arg, bad, "index: cannot read %zu bytes", ilen);
    }
    free(ib);
    free(idx);
}

/* A backend that keeps entries (seg_read_entries): every entry read back
 * in order, each record whole (its CRC), and a completed segment holds
 * exactly 0..last_entry_id. Replicas missing entries are failed over by
 * the backend's reader: what counts is that the segment is readable. */
static int verify_entries(storage *st, int64_t log_id, int64_t seg_id, bool completed,
                          int64_t last_entry_id, lseg_problem_fn fn, void *arg, int64_t *entries)
{
    int bad = 0;
    lseg_r *r;
    int rc = lseg_open_read(st, log_id, seg_id, completed, 0, &r);
    if (rc) {
        problem(fn, arg, &bad, "cannot open: %s (%s)", wp_strerror(rc), wp_errmsg());
        return WP_ECORRUPT;
    }
    int64_t n = 0, max = completed ? last_entry_id : LSEG_LAC_UNKNOWN;
    for (;;) {
        lseg_entry e;
        rc = lseg_next(r, max, &e);
        if (rc == WP_EAGAIN)
            break;
        if (rc == WP_EUNAVAILABLE && completed) { /* short of its last (next_entry_batch) */
            problem(fn, arg, &bad, "readable entries 0..%" PRId64 ", but metadata says the last "
                    "is %" PRId64 " (%s)", n - 1, last_entry_id, wp_errmsg());
            break;
        }
        if (rc) {
            problem(fn, arg, &bad, "entry %" PRId64 ": %s (%s)", n, wp_strerror(rc), wp_errmsg());
            break;
        }
        if (e.entry_id != n) {
            problem(fn, arg, &bad, "entry %" PRId64 " where %" PRId64 " belongs", e.entry_id, n);
            break;
        }
        n++;
    }
    if (!bad && completed && n != last_entry_id + 1)
        problem(fn, arg, &bad, "readable entries 0..%" PRId64 ", but metadata says the last is %" PRId64,
                n - 1, last_entry_id);
    if (entries)
        *entries += n;
    lseg_close_read(r);
    return bad ? WP_ECORRUPT : WP_OK;
}

int lseg_verify(storage *st, int64_t log_id, int64_t seg_id, bool completed, uint64_t bytes,
                int64_t last_entry_id, lseg_problem_fn fn, void *arg, int64_t *entries)
{
    if (st->ops->seg_read_entries)
        return verify_entries(st, log_id, seg_id, completed, last_entry_id, fn, arg, entries);
    st_reader *r;
    int bad = 0;
    int rc = st->ops->seg_open_read(st, log_id, seg_id, &r);
    if (rc) {
        problem(fn, arg, &bad, "cannot open: %s (%s)", wp_strerror(rc), wp_errmsg());
        return WP_ECORRUPT;
    }
    uint64_t size = 0;
    st->ops->seg_size(r, &size);
    if (completed && size < bytes)
        problem(fn, arg, &bad, "size %" PRIu64 " but metadata says %" PRIu64, size, bytes);
    if (completed)
        size = bytes; /* bytes past the committed length (a fenced writer's) are ignored */
    rc = header_check(st, r, log_id, seg_id, NULL);
    if (rc)
        problem(fn, arg, &bad, "header: %s", rc == WP_EAGAIN ? "missing" : wp_errmsg());
    lseg_w w = {.bytes = SEG_HEADER_SIZE, .finish_last = INT64_MAX};
    uint64_t end = SEG_HEADER_SIZE;
    if (!rc) {
        uint64_t limit = size;
        if (completed) {
            seg_footer f;
            limit = footer_read(st, r, size, &f) == WP_OK ? f.index_offset
                                                          : (size > FTR_SIZE ? size - FTR_SIZE : size);
        }
        scan_end se = {0};
        rc = scan_blocks(st, r, limit, &w, &se);
        end = se.end;
        if (rc)
            problem(fn, arg, &bad, "%s", wp_errmsg());
        else if (completed && se.stop != WP_OK)
            problem(fn, arg, &bad, "%s", se.why);
        else if (!completed && end != size)
            problem(fn, arg, &bad, "active segment: %" PRIu64 " unreadable bytes at offset %" PRIu64
                    " (%s; a torn tail is cut at recovery; damage if acknowledged)", size - end, end,
                    se.why);
        if (completed)
            verify_footer(st, r, size, &w, end, last_entry_id, fn, arg, &bad);
    }
    if (entries)
        *entries += w.next_entry;
    free(w.idx);
    st->ops->seg_reader_close(r);
    return bad ? WP_ECORRUPT : WP_OK;
}
