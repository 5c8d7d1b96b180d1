/* segtest.c — see segtest.h. */
#include "segtest.h"

#include <stdlib.h>
#include <string.h>

#include "codec/codec.h"

int segtest_write_block(lseg_w *w, int64_t first, const void *const *payloads,
                        const size_t *lens, int n)
{
    size_t len = BLK_HEADER_SIZE;
    for (int i = 0; i < n; i++)
        len += rec_size(&(wp_payload){.data = payloads[i], .len = lens[i]});
    uint8_t *buf = malloc(len);
    if (!buf)
        return WP_ENOMEM;
    size_t off = BLK_HEADER_SIZE;
    for (int i = 0; i < n; i++)
        off += rec_encode(&(wp_payload){.data = payloads[i], .len = lens[i]}, buf + off);
    lseg_block b = {.buf = buf, .len = len, .first_entry_id = first, .n_entries = (uint32_t)n};
    lseg_block *bp = &b;
    int rc = lseg_write(w, &bp, 1);
    free(buf);
    return rc;
}

int segtest_write_str(lseg_w *w, int64_t first, const char *str)
{
    const void *p = str;
    size_t l = strlen(str);
    return segtest_write_block(w, first, &p, &l, 1);
}

int segtest_count(storage *s, int64_t log_id, int64_t seg_id, uint64_t bytes, int64_t last)
{
    lseg_r *r = NULL;
    if (lseg_open_read(s, log_id, seg_id, true, bytes, &r) != 0)
        return -1;
    lseg_entry e;
    int n = 0;
    while (lseg_next(r, last, &e) == WP_OK)
        n++;
    lseg_close_read(r);
    return n;
}

int segtest_write_forged_footer(lseg_w *w, int64_t first, uint64_t *end)
{
    enum { L = 200 }; /* one record: 40 + 8 + 4 + L bytes of block */
    uint8_t payload[L];
    memset(payload, 'p', sizeof payload);
    *end = lseg_bytes(w) + BLK_HEADER_SIZE + 12 + L;
    seg_footer f = {.n_blocks = 0, .index_offset = *end - FTR_SIZE, .last_entry_id = -1,
                    .index_crc = crc32c(0, "", 0)};
    ftr_encode(&f, payload + L - FTR_SIZE);
    const void *pp = payload;
    size_t pl = L;
    return segtest_write_block(w, first, &pp, &pl, 1);
}
