/* storage_entries_conformance.h — the storage interface conformance suite
 * (src/storage/storage.h) for backends that keep entries rather than a
 * byte stream: readers take entries (seg_read_entries) and the backend
 * recovers a segment by its own rules (seg_recover); seg_read and seg_size
 * are not served (quorum: docs/protocol.md). storage_conformance.h is the
 * byte-stream suite; this one checks the same rules where they apply:
 * ownership, fencing, reading back what was appended, recovery, deletion.
 * Header-only, like storage_conformance.h: the including .c includes
 * tests/test.h first, then this, and calls
 *
 *     storage_entries_conformance_run(open_fresh, arg);
 *
 * where open_fresh(arg) returns a new, empty backend. The suite writes the
 * byte stream the logstore layer hands a backend (docs/format.md: the
 * segment header, whole blocks, then index + footer) built with the codec. */
#ifndef WP_TESTS_STORAGE_ENTRIES_CONFORMANCE_H
#define WP_TESTS_STORAGE_ENTRIES_CONFORMANCE_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>

#include "codec/codec.h"
#include "storage/storage.h"

#define SE_BLOCKS_MAX 64       /* blocks a test writes into one segment */
#define SE_WAIT_MS 5000        /* for what becomes visible asynchronously */
#define SE_BIG_ENTRY (1 << 20) /* an entry larger than a read batch */

static storage *(*se_open_fresh)(void *arg);
static void *se_arg;

static storage *se_open(void)
{
    storage *s = se_open_fresh(se_arg);
    if (!s)
        fprintf(stderr, "  %s: open_fresh failed: %s\n", test_cur_name, wp_errmsg());
    return s;
}

static int64_t se_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- the entries: payload of entry `id` of stream `seed` ----------------- */

static unsigned char se_byte(uint32_t seed, int64_t id, size_t i)
{
    uint64_t x = ((uint64_t)id * 0x9E3779B97F4A7C15ULL + i) ^ ((uint64_t)seed << 32 | seed);
    x ^= x >> 31;
    x *= 0xBF58476D1CE4E5B9ULL;
    return (unsigned char)(x >> 24);
}

/* Sizes 0..a few KiB; entry 7 of a stream is big. */
static size_t se_len(uint32_t seed, int64_t id)
{
    if (id == 7)
        return SE_BIG_ENTRY + 5;
    return (size_t)((id * 131 + seed) % 3000) * (id % 5 != 0);
}

/* Entries with id % 10 == 3 carry a property "k" = "v". */
static bool se_has_prop(int64_t id)
{
    return id % 10 == 3;
}

static int se_check_entry(const uint8_t *rec, size_t avail, uint32_t seed, int64_t id, size_t *used)
{
    rec_view v;
    if (rec_decode(rec, avail, &v, used) != WP_OK)
        return WP_ECORRUPT;
    size_t len = se_len(seed, id);
    bool ok = v.len == len && v.n_props == (se_has_prop(id) ? 1u : 0u);
    for (size_t i = 0; ok && i < len; i++)
        ok = v.data[i] == se_byte(seed, id, i);
    if (!ok)
        fprintf(stderr,
                "  %s: entry %" PRId64 " (%zu bytes, %u props) is not entry %" PRId64
                " of stream %u\n",
                test_cur_name, id, v.len, v.n_props, id, seed);
    return ok ? WP_OK : WP_ECORRUPT;
}

/* ---- writing the logstore's byte stream ---------------------------------- */

typedef struct {
    storage *s;
    st_writer *w;
    uint32_t seed;
    int64_t next;   /* the next entry id */
    uint64_t bytes; /* appended so far */
    idx_entry idx[SE_BLOCKS_MAX];
    size_t n_idx;
} se_writer;

/* seg_create, then the segment header as its first append (lseg_create). */
static int se_create(storage *s, int64_t log_id, int64_t seg_id, int64_t epoch, uint32_t seed,
                     se_writer *sw)
{
    *sw = (se_writer){.s = s, .seed = seed};
    int rc = s->ops->seg_create(s, log_id, seg_id, epoch, &sw->w);
    if (rc)
        return rc;
    uint8_t hb[SEG_HEADER_SIZE];
    seg_header h = {.log_id = log_id, .segment_id = seg_id, .epoch = epoch};
    seg_header_encode(&h, hb);
    struct iovec iov = {hb, sizeof hb};
    rc = s->ops->seg_append(sw->w, &iov, 1);
    if (rc == WP_OK)
        sw->bytes = SEG_HEADER_SIZE;
    return rc;
}

static void se_close(se_writer *sw)
{
    if (sw->w)
        sw->s->ops->seg_writer_close(sw->w);
    sw->w = NULL;
}

/* A block of n entries from `first` of the stream: malloc'd, *len bytes. */
static uint8_t *se_block(uint32_t seed, int64_t first, uint32_t n, size_t *len)
{
    static const char *const key[] = {"k"}, *const val[] = {"v"};
    size_t total = BLK_HEADER_SIZE;
    unsigned char *data = malloc(SE_BIG_ENTRY + 5);
    if (!data)
        return NULL;
    for (uint32_t i = 0; i < n; i++) {
        wp_payload p = {data, se_len(seed, first + i), se_has_prop(first + i), key, val};
        total += rec_size(&p);
    }
    uint8_t *b = malloc(total);
    size_t off = BLK_HEADER_SIZE;
    for (uint32_t i = 0; b && i < n; i++) {
        int64_t id = first + i;
        wp_payload p = {data, se_len(seed, id), se_has_prop(id), key, val};
        for (size_t k = 0; k < p.len; k++)
            data[k] = se_byte(seed, id, k);
        off += rec_encode(&p, b + off);
    }
    free(data);
    if (!b)
        return NULL;
    blk_header h = {.first_entry_id = first,
                    .n_entries = n,
                    .records_len = (uint32_t)(total - BLK_HEADER_SIZE),
                    .records_crc = crc32c(0, b + BLK_HEADER_SIZE, total - BLK_HEADER_SIZE)};
    blk_header_encode(&h, b);
    *len = total;
    return b;
}

/* One append of `blocks` blocks (one iovec each) of `per` entries each. */
static int se_append(se_writer *sw, int blocks, uint32_t per)
{
    struct iovec iov[8];
    int rc = WP_ENOMEM, made = 0;
    if (blocks < 1 || blocks > 8 || sw->n_idx + (size_t)blocks > SE_BLOCKS_MAX)
        return WP_EINVAL;
    uint64_t off = sw->bytes;
    for (; made < blocks; made++) {
        iov[made].iov_base =
            se_block(sw->seed, sw->next + made * (int64_t)per, per, &iov[made].iov_len);
        if (!iov[made].iov_base)
            goto out_free;
    }
    rc = sw->s->ops->seg_append(sw->w, iov, blocks);
    if (rc == WP_OK) {
        for (int i = 0; i < blocks; i++) {
            sw->idx[sw->n_idx++] = (idx_entry){off, sw->next};
            off += iov[i].iov_len;
            sw->next += per;
        }
        sw->bytes = off;
    }
out_free:
    for (int i = 0; i < made; i++)
        free(iov[i].iov_base);
    return rc;
}

/* Appends the index and footer: the segment completes at next - 1. */
static int se_finish(se_writer *sw)
{
    size_t ilen = sw->n_idx * IDX_ENTRY_SIZE;
    uint8_t *b = malloc(ilen + FTR_SIZE);
    if (!b)
        return WP_ENOMEM;
    idx_encode(sw->idx, sw->n_idx, b);
    seg_footer f = {.n_blocks = (uint32_t)sw->n_idx,
                    .index_offset = sw->bytes,
                    .last_entry_id = sw->next - 1,
                    .index_crc = crc32c(0, b, ilen)};
    ftr_encode(&f, b + ilen);
    struct iovec iov = {b, ilen + FTR_SIZE};
    int rc = sw->s->ops->seg_append(sw->w, &iov, 1);
    if (rc == WP_OK)
        sw->bytes += ilen + FTR_SIZE;
    free(b);
    return rc;
}

/* ---- reading ------------------------------------------------------------- */

/* Reads entries from `from` up to `upto` in batches of max_bytes, checking
 * each against the stream and the batch rules (the batch starts where
 * asked, holds whole records only, passes neither upto nor max_bytes
 * unless it is one entry). Until entry `until` was read (-1: stop at the
 * first empty batch) it asks again for SE_WAIT_MS. *next: the entry after
 * the last one read. 0, or the first error. */
static int se_read(storage *s, int64_t log_id, int64_t seg_id, int64_t from, int64_t upto,
                   bool completed, size_t max_bytes, uint32_t seed, int64_t until, int64_t *next)
{
    st_reader *r = NULL;
    int rc = s->ops->seg_open_read(s, log_id, seg_id, &r);
    *next = from;
    if (rc)
        return rc;
    int64_t due = se_now_ms() + SE_WAIT_MS;
    while (*next <= upto) {
        st_entries e;
        if ((rc = s->ops->seg_read_entries(r, *next, upto, completed, max_bytes, &e)))
            break;
        if (e.n == 0) {
            if (*next > until || se_now_ms() > due)
                break;
            struct timespec ts = {0, 5 * 1000000L};
            nanosleep(&ts, NULL);
            continue;
        }
        if (e.first != *next || e.first + e.n - 1 > upto || (e.n > 1 && e.len > max_bytes)) {
            fprintf(stderr,
                    "  %s: a batch of %u entries from %" PRId64 " (%zu bytes) for a "
                    "read from %" PRId64 " up to %" PRId64 " of at most %zu bytes\n",
                    test_cur_name, e.n, e.first, e.len, *next, upto, max_bytes);
            rc = WP_ECORRUPT;
            break;
        }
        size_t off = 0, used = 0;
        for (uint32_t i = 0; rc == WP_OK && i < e.n; i++, off += used)
            rc = se_check_entry(e.records + off, e.len - off, seed, *next + i, &used);
        if (rc == WP_OK && off != e.len)
            rc = WP_ECORRUPT; /* bytes after the n records */
        if (rc)
            break;
        *next += e.n;
    }
    s->ops->seg_reader_close(r);
    return rc;
}

/* The count of entries readable from 0 with `completed` (asking until entry
 * `until` arrived), or -1 after an error or a wrong entry. */
static int64_t se_count(storage *s, int64_t log_id, int64_t seg_id, bool completed, uint32_t seed,
                        int64_t until)
{
    int64_t next;
    int rc = se_read(s, log_id, seg_id, 0, INT64_MAX, completed, 1 << 20, seed, until, &next);
    if (rc) {
        fprintf(stderr, "  %s: reading %" PRId64 "/%" PRId64 ": %s (%s)\n", test_cur_name, log_id,
                seg_id, wp_strerror(rc), wp_errmsg());
        return -1;
    }
    return next;
}

/* True when (log_id, seg_id) holds no entry to read: WP_ENOENT, or nothing
 * there (deleted, or never created). */
static bool se_gone(storage *s, int64_t log_id, int64_t seg_id)
{
    int64_t next;
    int rc = se_read(s, log_id, seg_id, 0, INT64_MAX, true, 1 << 20, 0, -1, &next);
    if (rc != WP_OK && rc != WP_ENOENT)
        fprintf(stderr, "  %s: reading %" PRId64 "/%" PRId64 ": %s (%s)\n", test_cur_name, log_id,
                seg_id, wp_strerror(rc), wp_errmsg());
    return rc == WP_ENOENT || (rc == WP_OK && next == 0);
}

/* ---- the tests ----------------------------------------------------------- */

/* What was appended reads back, entry by entry, in batches that keep the
 * rules; the writer counts the bytes it appended. */
TEST(se_append_read_back)
{
    storage *s = se_open();
    REQUIRE(s);
    se_writer sw;
    CHECK_OK(se_create(s, 3, 7, 1, 37, &sw));
    REQUIRE(sw.w);
    CHECK_OK(se_append(&sw, 1, 1));  /* entry 0 */
    CHECK_OK(se_append(&sw, 1, 9));  /* 1..9, the big entry 7 among them */
    CHECK_OK(se_append(&sw, 3, 20)); /* three blocks in one append: 10..69 */
    CHECK_OK(se_append(&sw, 1, 1000));
    CHECK(sw.next == 1070);
    CHECK(s->ops->seg_writer_size(sw.w) == sw.bytes);
    CHECK_OK(s->ops->seg_publish_lac(sw.w, sw.next - 1));
    /* Every entry, in batches of at most 1 MiB, 4 KiB, one record. */
    int64_t next;
    CHECK_OK(se_read(s, 3, 7, 0, INT64_MAX, true, 1 << 20, 37, -1, &next));
    CHECK(next == 1070);
    CHECK_OK(se_read(s, 3, 7, 0, INT64_MAX, true, 4096, 37, -1, &next));
    CHECK(next == 1070);
    CHECK_OK(se_read(s, 3, 7, 0, 40, true, 1, 37, -1, &next));
    CHECK(next == 41);
    /* From the middle, up to a limit, and past the end. */
    CHECK_OK(se_read(s, 3, 7, 7, 12, true, 1 << 20, 37, -1, &next));
    CHECK(next == 13);
    CHECK_OK(se_read(s, 3, 7, 500, INT64_MAX, true, 1 << 16, 37, -1, &next));
    CHECK(next == 1070);
    CHECK_OK(se_read(s, 3, 7, 1070, INT64_MAX, true, 1 << 16, 37, -1, &next));
    CHECK(next == 1070);
    /* Confirmed reads get there too, once the LAC is out. */
    CHECK(se_count(s, 3, 7, false, 37, 1069) == 1070);
    /* Segments of other logs and ids are apart. */
    se_writer other;
    CHECK_OK(se_create(s, 4, 7, 1, 38, &other));
    CHECK_OK(se_append(&other, 1, 5));
    CHECK(se_count(s, 4, 7, true, 38, -1) == 5);
    CHECK(se_count(s, 3, 7, true, 37, -1) == 1070);
    CHECK(se_gone(s, 3, 8));
    se_close(&other);
    se_close(&sw);
    s->ops->close(s);
}

/* A reader that does not know entries are acked (completed false) gets
 * confirmed entries only: none above the LAC the writer published. */
TEST(se_confirmed_reads_stop_at_the_lac)
{
    storage *s = se_open();
    REQUIRE(s);
    se_writer sw;
    CHECK_OK(se_create(s, 5, 0, 1, 51, &sw));
    REQUIRE(sw.w);
    CHECK_OK(se_append(&sw, 1, 5)); /* 0..4, no LAC published */
    CHECK_OK(se_append(&sw, 1, 5)); /* 5..9 */
    int64_t next;
    CHECK_OK(se_read(s, 5, 0, 0, INT64_MAX, false, 1 << 20, 51, -1, &next));
    CHECK(next == 0);
    CHECK_OK(s->ops->seg_publish_lac(sw.w, 4));
    CHECK_OK(se_read(s, 5, 0, 0, INT64_MAX, false, 1 << 20, 51, 4, &next));
    CHECK(next == 5);
    CHECK_OK(s->ops->seg_publish_lac(sw.w, 9));
    CHECK(se_count(s, 5, 0, false, 51, 9) == 10);
    CHECK(se_count(s, 5, 0, true, 51, -1) == 10);
    se_close(&sw);
    s->ops->close(s);
}

/* Fencing: the old writer's appends fail from then on, idempotent at the
 * same epoch, refused at a lower one; what it appended before stays. */
TEST(se_fence)
{
    storage *s = se_open();
    REQUIRE(s);
    se_writer w1;
    CHECK_OK(se_create(s, 6, 0, 1, 61, &w1));
    REQUIRE(w1.w);
    CHECK_OK(se_append(&w1, 2, 10)); /* 0..19 */
    CHECK_OK(s->ops->seg_fence(s, 6, 0, 2));
    CHECK_RC(WP_EFENCED, se_append(&w1, 1, 3));
    CHECK(se_append(&w1, 1, 3) != WP_OK); /* failed for good */
    CHECK_OK(s->ops->seg_fence(s, 6, 0, 2));
    CHECK_RC(WP_EFENCED, s->ops->seg_fence(s, 6, 0, 1));
    CHECK(se_append(&w1, 1, 3) != WP_OK);
    CHECK(se_count(s, 6, 0, true, 61, -1) == 20);
    /* A higher epoch fences again; the lower ones stay refused. */
    CHECK_OK(s->ops->seg_fence(s, 6, 0, 3));
    CHECK_RC(WP_EFENCED, s->ops->seg_fence(s, 6, 0, 2));
    se_close(&w1);
    /* Fenced before its first entry: the writer gets nowhere. */
    se_writer w4;
    int rc = se_create(s, 6, 1, 4, 62, &w4);
    CHECK_OK(rc);
    if (rc == WP_OK) {
        CHECK_OK(s->ops->seg_fence(s, 6, 1, 5));
        CHECK_RC(WP_EFENCED, se_append(&w4, 1, 3));
        CHECK(se_append(&w4, 1, 3) != WP_OK);
        CHECK(se_gone(s, 6, 1));
    }
    se_close(&w4);
    s->ops->close(s);
}

/* The ownership rule (storage.h): nobody acts on a segment owned by a
 * higher epoch. A stale recoverer (epoch 2) that finds a segment a newer
 * writer (epoch 3) created can neither fence nor recover nor create it,
 * and the newer writer goes on. */
TEST(se_owner_rule)
{
    storage *s = se_open();
    REQUIRE(s);
    se_writer w3, w2;
    CHECK_OK(se_create(s, 6, 3, 3, 63, &w3));
    REQUIRE(w3.w);
    CHECK_OK(se_append(&w3, 1, 10));
    CHECK_RC(WP_EFENCED, s->ops->seg_fence(s, 6, 3, 2));
    int64_t last = 99;
    uint64_t bytes;
    CHECK_RC(WP_EFENCED, s->ops->seg_recover(s, 6, 3, 2, &last, &bytes));
    /* Creating it at the lower epoch: WP_EEXIST or WP_EFENCED at once, or
     * (a backend that creates lazily) on the first append; never data. */
    int rc = se_create(s, 6, 3, 2, 99, &w2);
    if (rc == WP_OK) {
        CHECK_RC(WP_EFENCED, se_append(&w2, 1, 4));
    } else {
        CHECK(rc == WP_EEXIST || rc == WP_EFENCED);
    }
    se_close(&w2);
    CHECK_OK(se_append(&w3, 1, 5));
    CHECK_OK(s->ops->seg_fence(s, 6, 3, 3)); /* its own epoch: no effect on it */
    CHECK_OK(se_append(&w3, 1, 5));
    CHECK(se_count(s, 6, 3, true, 63, -1) == 20);
    /* A newer epoch takes it over; then the old owner is the stale one. */
    CHECK_OK(s->ops->seg_fence(s, 6, 3, 4));
    CHECK_RC(WP_EFENCED, se_append(&w3, 1, 1));
    CHECK_RC(WP_EFENCED, s->ops->seg_fence(s, 6, 3, 3));
    CHECK_RC(WP_EFENCED, s->ops->seg_recover(s, 6, 3, 3, &last, &bytes));
    CHECK_OK(s->ops->seg_recover(s, 6, 3, 4, &last, &bytes));
    CHECK(last == 19);
    se_close(&w3);
    s->ops->close(s);
}

/* Creating a segment that exists (at any epoch) never lets the new
 * writer's entries pass for durable over the ones it holds: WP_EEXIST at
 * once, or (a lazy create) a failed first append. */
TEST(se_create_exists)
{
    storage *s = se_open();
    REQUIRE(s);
    se_writer w1, w2;
    CHECK_OK(se_create(s, 1, 0, 1, 11, &w1));
    REQUIRE(w1.w);
    CHECK_OK(se_append(&w1, 1, 5));
    se_close(&w1);
    int rc = se_create(s, 1, 0, 2, 12, &w2);
    if (rc == WP_OK) {
        rc = se_append(&w2, 1, 5);
        CHECK(rc != WP_OK);
        if (rc == WP_OK)
            fprintf(stderr,
                    "  %s: a second seg_create of 1/0 (epoch 2) and its append of "
                    "entries 0..4 succeeded over the segment's own entries 0..4\n",
                    test_cur_name);
    } else {
        CHECK_RC(WP_EEXIST, rc);
    }
    se_close(&w2);
    CHECK(se_count(s, 1, 0, true, 11, -1) == 5); /* the first writer's entries */
    s->ops->close(s);
}

/* seg_recover fences, finds the last entry every acked one is at or below
 * and completes the segment there: idempotent, and a later epoch finds the
 * same; the old writer is fenced. */
TEST(se_recover)
{
    storage *s = se_open();
    REQUIRE(s);
    se_writer w1;
    CHECK_OK(se_create(s, 7, 0, 1, 71, &w1));
    REQUIRE(w1.w);
    CHECK_OK(se_append(&w1, 1, 4));
    CHECK_OK(s->ops->seg_publish_lac(w1.w, 3));
    CHECK_OK(se_append(&w1, 2, 4)); /* 4..11, acked, no LAC published */
    int64_t last = -99;
    uint64_t bytes;
    CHECK_OK(s->ops->seg_recover(s, 7, 0, 2, &last, &bytes));
    CHECK(last == 11); /* every acked entry, and nothing was written after them */
    CHECK_RC(WP_EFENCED, se_append(&w1, 1, 1));
    se_close(&w1);
    CHECK(se_count(s, 7, 0, true, 71, -1) == 12);
    int64_t again = -99;
    CHECK_OK(s->ops->seg_recover(s, 7, 0, 2, &again, &bytes));
    CHECK(again == 11);
    CHECK_OK(s->ops->seg_recover(s, 7, 0, 3, &again, &bytes));
    CHECK(again == 11);
    CHECK_RC(WP_EFENCED, s->ops->seg_recover(s, 7, 0, 2, &again, &bytes));
    CHECK(se_count(s, 7, 0, true, 71, -1) == 12);
    /* Created, nothing appended but its header: recovers empty. */
    se_writer w2;
    CHECK_OK(se_create(s, 7, 1, 1, 72, &w2));
    se_close(&w2);
    last = -99;
    CHECK_OK(s->ops->seg_recover(s, 7, 1, 2, &last, &bytes));
    CHECK(last == -1);
    s->ops->close(s);
}

/* A segment completed by its writer (index + footer) recovers at the
 * footer's last entry; nothing can be appended after the footer. */
TEST(se_recover_completed)
{
    storage *s = se_open();
    REQUIRE(s);
    se_writer w;
    CHECK_OK(se_create(s, 7, 2, 1, 73, &w));
    REQUIRE(w.w);
    CHECK_OK(se_append(&w, 2, 3)); /* 0..5 */
    CHECK_OK(s->ops->seg_publish_lac(w.w, 5));
    CHECK_OK(se_finish(&w));
    CHECK(se_append(&w, 1, 1) != WP_OK);
    se_close(&w);
    CHECK(se_count(s, 7, 2, true, 73, -1) == 6);
    int64_t last = -99;
    uint64_t bytes;
    CHECK_OK(s->ops->seg_recover(s, 7, 2, 2, &last, &bytes));
    CHECK(last == 5);
    CHECK(se_count(s, 7, 2, true, 73, -1) == 6);
    s->ops->close(s);
}

/* Deletion is idempotent and leaves the other segments alone. */
TEST(se_delete)
{
    storage *s = se_open();
    REQUIRE(s);
    for (int64_t seg = 0; seg < 3; seg++) {
        se_writer w;
        CHECK_OK(se_create(s, 11, seg, 1, 110 + (uint32_t)seg, &w));
        CHECK_OK(se_append(&w, 1, 5));
        se_close(&w);
    }
    CHECK_OK(s->ops->seg_delete(s, 11, 1));
    CHECK(se_gone(s, 11, 1));
    CHECK_OK(s->ops->seg_delete(s, 11, 1));
    CHECK_OK(s->ops->seg_delete(s, 11, 55));
    CHECK_OK(s->ops->seg_delete(s, 12345, 0));
    CHECK(se_count(s, 11, 0, true, 110, -1) == 5);
    CHECK(se_count(s, 11, 2, true, 112, -1) == 5);
    /* A whole log. */
    se_writer a, b, c;
    CHECK_OK(se_create(s, 13, 0, 1, 130, &a));
    CHECK_OK(se_append(&a, 1, 3));
    CHECK_OK(se_create(s, 13, 1, 1, 131, &b));
    CHECK_OK(se_append(&b, 1, 3));
    CHECK_OK(se_create(s, 14, 0, 1, 140, &c));
    CHECK_OK(se_append(&c, 1, 3));
    se_close(&a);
    se_close(&b);
    se_close(&c);
    CHECK_OK(s->ops->log_delete(s, 13));
    CHECK(se_gone(s, 13, 0));
    CHECK(se_gone(s, 13, 1));
    CHECK_OK(s->ops->log_delete(s, 13));
    CHECK_OK(s->ops->log_delete(s, 999));
    CHECK(se_count(s, 14, 0, true, 140, -1) == 3);
    s->ops->close(s);
}

/* A writer still appending to a deleted segment (or log) gets an error
 * (WP_EFENCED or WP_ECLOSED) on its next append, not an ack. */
TEST(se_delete_fences_writer)
{
    storage *s = se_open();
    REQUIRE(s);
    se_writer w, v;
    CHECK_OK(se_create(s, 15, 0, 1, 150, &w));
    REQUIRE(w.w);
    CHECK_OK(se_append(&w, 1, 3));
    CHECK_OK(s->ops->seg_delete(s, 15, 0));
    int rc = se_append(&w, 1, 3);
    CHECK(rc == WP_EFENCED || rc == WP_ECLOSED);
    CHECK(se_append(&w, 1, 3) != WP_OK);
    se_close(&w);
    CHECK(se_gone(s, 15, 0));
    CHECK_OK(se_create(s, 16, 4, 1, 164, &v));
    REQUIRE(v.w);
    CHECK_OK(se_append(&v, 1, 3));
    CHECK_OK(s->ops->log_delete(s, 16));
    rc = se_append(&v, 1, 3);
    CHECK(rc == WP_EFENCED || rc == WP_ECLOSED);
    se_close(&v);
    s->ops->close(s);
}

static void storage_entries_conformance_run(storage *(*open_fresh)(void *arg), void *arg)
{
    se_open_fresh = open_fresh;
    se_arg = arg;
    RUN(se_append_read_back);
    RUN(se_confirmed_reads_stop_at_the_lac);
    RUN(se_fence);
    RUN(se_owner_rule);
    RUN(se_create_exists);
    RUN(se_recover);
    RUN(se_recover_completed);
    RUN(se_delete);
    RUN(se_delete_fences_writer);
}

#endif
