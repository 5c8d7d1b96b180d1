/* segtest.h — building segments block by block with the logstore layer,
 * for recovery tests on any storage backend. */
#ifndef WP_TEST_SEGTEST_H
#define WP_TEST_SEGTEST_H

#include <stddef.h>
#include <stdint.h>

#include "logstore/segment.h"

/* Writes one block of n entries (payloads[i] of lens[i] bytes), the first
 * with id `first`, as one durable append. */
int segtest_write_block(lseg_w *w, int64_t first, const void *const *payloads,
                        const size_t *lens, int n);
/* One block with one entry: the string str. */
int segtest_write_str(lseg_w *w, int64_t first, const char *str);
/* Writes entry `first` as one block whose 200-byte payload ends with 64
 * bytes that decode as the footer of an empty segment whose (empty) index
 * starts 64 bytes before the segment's end: the forgery recovery must not
 * take for a completed segment. *end gets the segment's length after it. */
int segtest_write_forged_footer(lseg_w *w, int64_t first, uint64_t *end);
/* Counts the entries of a completed segment of `bytes` up to last. */
int segtest_count(storage *s, int64_t log_id, int64_t seg_id, uint64_t bytes, int64_t last);

#endif
