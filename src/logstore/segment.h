/* segment.h — one segment in the codec's format (docs/format.md) on a
 * storage backend: writing blocks, completing with index + footer,
 * recovering an active segment after a crash or a fence, and iterating its
 * blocks and entries for readers and `verify`. */
#ifndef WP_LOGSTORE_SEGMENT_H
#define WP_LOGSTORE_SEGMENT_H

#include <stdbool.h>
#include <stdint.h>

#include "codec/codec.h"
#include "storage/storage.h"

/* ---- writing ----------------------------------------------------------- */

/* A block being built: BLK_HEADER_SIZE bytes reserved at buf, then records.
 * The caller encodes records; lseg_write fills the header. */
typedef struct {
    uint8_t *buf;
    size_t len; /* header + records */
    int64_t first_entry_id;
    uint32_t n_entries;
} lseg_block;

typedef struct lseg_w lseg_w;

/* Creates the segment in storage and writes its header durably. */
int lseg_create(storage *st, int64_t log_id, int64_t seg_id, int64_t epoch, lseg_w **out);
/* Writes blocks (ids dense and continuing the segment) in one durable
 * append and publishes the new LAC hint. Any error fails the writer. */
int lseg_write(lseg_w *w, lseg_block *const *blocks, int n);

/* The same in three steps, so that several appends can be in flight
 * (object storage): lseg_prepare (one thread, in order) encodes the block
 * headers, plans offsets and the index, and numbers the append;
 * lseg_put_run does the storage append (with `parallel`, from any thread at
 * once, if lseg_parallel says the backend can); lseg_put_done (in order)
 * records the outcome: after a failure every later one fails too. The
 * blocks must stay valid until lseg_put_run returns. */
#define LSEG_WRITE_BLOCKS_MAX 512
typedef struct {
    struct iovec iov[LSEG_WRITE_BLOCKS_MAX];
    int n;
    uint64_t k;             /* append number */
    int64_t last_entry_id;  /* last entry of the blocks */
    uint8_t *zbuf;          /* the compressed blocks, freed by lseg_put_done */
} lseg_put;
/* With a codec (lseg_set_codec), lseg_prepare compresses each block's
 * records into the put's own buffer when that makes them smaller
 * (docs/format.md §5.1); the caller's blocks keep their records. Every
 * lseg_prepare that succeeded must be followed by lseg_put_done. */
int lseg_prepare(lseg_w *w, lseg_block *const *blocks, int n, lseg_put *p);
int lseg_put_run(lseg_w *w, const lseg_put *p, bool parallel);
int lseg_put_done(lseg_w *w, lseg_put *p, int rc);
bool lseg_parallel(const lseg_w *w);
/* Compresses the records of the blocks written from now on with codec
 * (BLK_CODEC_*; flush.compression). A backend that keeps entries rather
 * than bytes (storage_ops.seg_read_entries: quorum) gets them
 * uncompressed whatever the codec. */
int lseg_set_codec(lseg_w *w, uint32_t codec);
/* Appends the index + footer durably. *last_entry_id is -1 if empty. */
int lseg_finish(lseg_w *w, int64_t *last_entry_id, uint64_t *bytes);
uint64_t lseg_bytes(const lseg_w *w);
int64_t lseg_last_entry(const lseg_w *w);
/* The storage says the segment lost a server and a better placement is
 * possible (storage_ops.seg_writer_degraded): time to roll. */
bool lseg_degraded(const lseg_w *w);
void lseg_close(lseg_w *w);

/* Fences the segment against writers older than `epoch` (creating it empty
 * if it is missing in storage), finds the last valid block, and either
 * recognises a segment completed before the crash (an index + footer that
 * the scanned blocks prove), or cuts a torn tail and writes index +
 * footer (docs/format.md section 8). WP_EFENCED if a higher epoch owns the
 * segment or created it (nothing is touched); WP_ECORRUPT for damage that
 * is not a torn tail: a bad header with blocks after it, damage below the
 * LAC hint, any damage on a backend whose appends are atomic (nothing is
 * cut then). */
int lseg_recover(storage *st, int64_t log_id, int64_t seg_id, int64_t epoch,
                 const wp__logger *lg, int64_t *last_entry_id, uint64_t *bytes);
/* lseg_recover that also cuts the blocks starting after entry `limit` and
 * completes the segment with last entry at most `limit` (a block may hold
 * entries past it; readers stop at the footer's). INT64_MAX: no limit. A
 * segment completed before is reported as it is, whatever the limit. */
int lseg_recover_at(storage *st, int64_t log_id, int64_t seg_id, int64_t epoch, int64_t limit,
                    const wp__logger *lg, int64_t *last_entry_id, uint64_t *bytes);
/* The same steps without the fence and the footer: opens an existing
 * segment for appending by `epoch` (which must own it: WP_EFENCED
 * otherwise), after cutting a torn tail (or the blocks past `limit`).
 * *out is the writer, continuing after *last_entry_id at *bytes; or NULL
 * if the segment was completed before (*last_entry_id, *bytes describe
 * it). */
int lseg_reopen(storage *st, int64_t log_id, int64_t seg_id, int64_t epoch, int64_t limit,
                const wp__logger *lg, lseg_w **out, int64_t *last_entry_id, uint64_t *bytes);

/* Checks that the first `bytes` bytes of a segment (0: its current size)
 * form a complete segment of (log_id, seg_id): header, footer, index (its
 * CRC), and the last block where the index says, holding the footer's last
 * entry; without reading the other blocks. *last_entry_id: the footer's.
 * WP_ECORRUPT if they do not. For an upload's commit (object storage
 * read back before the segment is sealed). */
int lseg_check_complete(storage *st, int64_t log_id, int64_t seg_id, uint64_t bytes,
                        int64_t *last_entry_id);

/* ---- reading ----------------------------------------------------------- */

typedef struct lseg_r lseg_r;

/* Opens a segment for reading. If `completed`, `bytes` is its length from
 * metadata and the footer's index is used to seek (falling back to a scan
 * if the footer is damaged). */
int lseg_open_read(storage *st, int64_t log_id, int64_t seg_id, bool completed, uint64_t bytes,
                   lseg_r **out);
/* Positions at the first entry >= entry_id (lazily: the next lseg_next
 * call seeks). */
void lseg_seek(lseg_r *r, int64_t entry_id);
typedef struct {
    int64_t entry_id;
    rec_view rec;
    const uint8_t *raw; /* the record's bytes as stored (docs/format.md §4) */
    size_t raw_len;
} lseg_entry;
/* Next entry if its id <= max_entry_id (the LAC). WP_EAGAIN when it is not
 * there (yet); WP_ECORRUPT for a damaged durable block. With
 * LSEG_LAC_UNKNOWN (backends whose appends are visible only once durable,
 * e.g. objects) every complete block there is readable and missing bytes
 * mean "not yet". The record's pointers stay valid until the next call. */
#define LSEG_LAC_UNKNOWN INT64_MAX
int lseg_next(lseg_r *r, int64_t max_entry_id, lseg_entry *out);
/* The id of the entry the reader would look at next (after lseg_next
 * returned WP_EAGAIN at the end: one past the last complete block). */
int64_t lseg_position(const lseg_r *r);
/* The published LAC hint of the segment (cross-process tailing). */
int lseg_read_lac(lseg_r *r, int64_t *lac);
/* For a segment not completed, on a backend whose reads can wait
 * (storage_ops.seg_reader_wait): lets the next lseg_next that finds
 * nothing wait up to wait_ms for entries (0: no waiting). lseg_waited
 * tells whether the last lseg_next's WP_EAGAIN came after such a wait. */
bool lseg_can_wait(const lseg_r *r);
void lseg_set_wait(lseg_r *r, int wait_ms);
bool lseg_waited(const lseg_r *r);
void lseg_close_read(lseg_r *r);

/* Checks a whole segment: header, every block and record, dense ids, and
 * for a completed one the index and footer against metadata. Problems go
 * to fn; returns WP_ECORRUPT if any, and counts entries checked. */
typedef void (*lseg_problem_fn)(void *arg, const char *problem);
int lseg_verify(storage *st, int64_t log_id, int64_t seg_id, bool completed, uint64_t bytes,
                int64_t last_entry_id, lseg_problem_fn fn, void *arg, int64_t *entries);

#endif
