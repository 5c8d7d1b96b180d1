/* storage_conformance.h — the storage interface conformance suite
 * (src/storage/storage.h). Header-only: the including .c includes
 * tests/test.h first, then this, and calls
 *
 *     storage_conformance_run(open_fresh, arg);
 *
 * where open_fresh(arg) returns a new, empty backend (every test gets its
 * own and closes it). Only interface semantics are tested here, so every
 * backend (local, s3) runs it unchanged; backend specifics (file layout,
 * syscalls, objects) belong in the backend's own test. */
#ifndef WP_TESTS_STORAGE_CONFORMANCE_H
#define WP_TESTS_STORAGE_CONFORMANCE_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "storage/storage.h"

static storage *(*sc_open_fresh)(void *arg);
static void *sc_arg;

/* Deterministic test bytes: byte i of stream `seed` (position-dependent so
 * a misplaced or repeated chunk is caught). */
static unsigned char sc_byte(uint32_t seed, uint64_t i)
{
    uint64_t x = (i + 1) * 0x9E3779B97F4A7C15ULL ^ ((uint64_t)seed << 32 | seed);
    x ^= x >> 29;
    x *= 0xBF58476D1CE4E5B9ULL;
    x ^= x >> 32;
    return (unsigned char)x;
}

static void sc_fill(unsigned char *b, size_t n, uint32_t seed, uint64_t from)
{
    for (size_t i = 0; i < n; i++)
        b[i] = sc_byte(seed, from + i);
}

static storage *sc_open(void)
{
    storage *s = sc_open_fresh(sc_arg);
    if (!s)
        fprintf(stderr, "  %s: open_fresh failed: %s\n", test_cur_name, wp_errmsg());
    return s;
}

/* Appends n bytes of stream seed starting at stream offset from, split into
 * `pieces` iovecs. */
static int sc_append(storage *s, st_writer *w, size_t n, uint32_t seed, uint64_t from, int pieces)
{
    unsigned char *b = malloc(n ? n : 1);
    if (!b)
        return WP_ENOMEM;
    sc_fill(b, n, seed, from);
    struct iovec iov[16];
    if (pieces < 1)
        pieces = 1;
    if (pieces > 16)
        pieces = 16;
    size_t off = 0;
    for (int i = 0; i < pieces; i++) {
        size_t len = (i == pieces - 1) ? n - off : (n / (size_t)pieces);
        iov[i].iov_base = b + off;
        iov[i].iov_len = len;
        off += len;
    }
    int rc = s->ops->seg_append(w, iov, pieces);
    free(b);
    return rc;
}

/* 1 if the reader's bytes [off, off+n) are stream seed from `from`. */
static int sc_matches(storage *s, st_reader *r, uint64_t off, size_t n, uint32_t seed, uint64_t from)
{
    unsigned char *b = malloc(n ? n : 1);
    if (!b)
        return 0;
    size_t got = (size_t)-1;
    int ok = s->ops->seg_read(r, off, b, n, &got) == 0 && got == n;
    for (size_t i = 0; ok && i < n; i++)
        ok = b[i] == sc_byte(seed, from + i);
    free(b);
    return ok;
}

static uint64_t sc_size(storage *s, st_reader *r)
{
    uint64_t size = UINT64_MAX;
    if (s->ops->seg_size(r, &size) != 0)
        return UINT64_MAX;
    return size;
}

TEST(sc_create_exists)
{
    storage *s = sc_open();
    REQUIRE(s);
    st_writer *w = NULL, *w2 = NULL;
    CHECK_OK(s->ops->seg_create(s, 1, 0, 1, &w));
    CHECK(w != NULL);
    CHECK_RC(WP_EEXIST, s->ops->seg_create(s, 1, 0, 1, &w2));
    CHECK_RC(WP_EEXIST, s->ops->seg_create(s, 1, 0, 2, &w2));
    CHECK(w2 == NULL);
    if (w)
        CHECK(s->ops->seg_writer_size(w) == 0);
    /* Same segment id in another log, another id in the same log. */
    st_writer *a = NULL, *b = NULL;
    CHECK_OK(s->ops->seg_create(s, 2, 0, 1, &a));
    CHECK_OK(s->ops->seg_create(s, 1, 1, 1, &b));
    /* An empty segment reads as empty. */
    st_reader *r = NULL;
    CHECK_OK(s->ops->seg_open_read(s, 1, 0, &r));
    if (r) {
        unsigned char buf[8];
        size_t got = 99;
        CHECK(sc_size(s, r) == 0);
        CHECK_OK(s->ops->seg_read(r, 0, buf, sizeof buf, &got));
        CHECK(got == 0);
        s->ops->seg_reader_close(r);
    }
    if (w)
        s->ops->seg_writer_close(w);
    if (a)
        s->ops->seg_writer_close(a);
    if (b)
        s->ops->seg_writer_close(b);
    /* Closing the writer does not remove the segment. */
    CHECK_RC(WP_EEXIST, s->ops->seg_create(s, 1, 0, 3, &w2));
    s->ops->close(s);
}

TEST(sc_append_read_back)
{
    storage *s = sc_open();
    REQUIRE(s);
    st_writer *w = NULL;
    CHECK_OK(s->ops->seg_create(s, 3, 7, 1, &w));
    REQUIRE(w);
    /* Sizes 0..a few MiB, one to many iovecs. */
    static const size_t sizes[] = {1, 0, 17, 4096, 4095, 100, 65536, 3 * 1024 * 1024 + 5, 0, 12345, 1};
    uint64_t total = 0;
    for (int round = 0; round < 4; round++) {
        for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
            size_t n = sizes[i];
            if (round > 0 && n > 65536)
                continue; /* only one multi-MiB append per round 0 */
            CHECK_OK(sc_append(s, w, n, 42, total, 1 + (int)((i + (size_t)round) % 7)));
            total += n;
            CHECK(s->ops->seg_writer_size(w) == total);
        }
    }
    /* An append with no iovec at all. */
    CHECK_OK(s->ops->seg_append(w, NULL, 0));
    CHECK(s->ops->seg_writer_size(w) == total);

    st_reader *r = NULL;
    CHECK_OK(s->ops->seg_open_read(s, 3, 7, &r));
    REQUIRE(r);
    CHECK(sc_size(s, r) == total);
    CHECK(sc_matches(s, r, 0, (size_t)total, 42, 0));
    /* Reads at arbitrary offsets and lengths. */
    CHECK(sc_matches(s, r, 1, 1, 42, 1));
    CHECK(sc_matches(s, r, 4000, 300000, 42, 4000));
    CHECK(sc_matches(s, r, total - 3, 3, 42, total - 3));
    s->ops->seg_reader_close(r);
    s->ops->seg_writer_close(w);
    s->ops->close(s);
}

TEST(sc_read_past_end)
{
    storage *s = sc_open();
    REQUIRE(s);
    st_writer *w = NULL;
    CHECK_OK(s->ops->seg_create(s, 1, 2, 1, &w));
    REQUIRE(w);
    CHECK_OK(sc_append(s, w, 1000, 5, 0, 2));
    st_reader *r = NULL;
    CHECK_OK(s->ops->seg_open_read(s, 1, 2, &r));
    REQUIRE(r);
    unsigned char buf[256];
    size_t got = 0;
    CHECK_OK(s->ops->seg_read(r, 990, buf, sizeof buf, &got));
    CHECK(got == 10);
    CHECK(got == 10 && buf[0] == sc_byte(5, 990) && buf[9] == sc_byte(5, 999));
    got = 99;
    CHECK_OK(s->ops->seg_read(r, 1000, buf, sizeof buf, &got));
    CHECK(got == 0);
    got = 99;
    CHECK_OK(s->ops->seg_read(r, 5000, buf, sizeof buf, &got));
    CHECK(got == 0);
    got = 99;
    CHECK_OK(s->ops->seg_read(r, 0, buf, 0, &got));
    CHECK(got == 0);
    s->ops->seg_reader_close(r);
    s->ops->seg_writer_close(w);
    s->ops->close(s);
}

TEST(sc_reader_sees_later_appends)
{
    storage *s = sc_open();
    REQUIRE(s);
    st_writer *w = NULL;
    CHECK_OK(s->ops->seg_create(s, 4, 0, 1, &w));
    REQUIRE(w);
    CHECK_OK(sc_append(s, w, 300, 9, 0, 1));
    st_reader *r = NULL;
    CHECK_OK(s->ops->seg_open_read(s, 4, 0, &r));
    REQUIRE(r);
    CHECK(sc_size(s, r) == 300);
    uint64_t total = 300;
    for (int i = 0; i < 5; i++) {
        CHECK_OK(sc_append(s, w, 1000 + (size_t)i, 9, total, 3));
        total += 1000 + (uint64_t)i;
        CHECK(sc_size(s, r) == total);
        CHECK(sc_matches(s, r, total - 1000 - (uint64_t)i, 1000 + (size_t)i, 9,
                         total - 1000 - (uint64_t)i));
    }
    CHECK(sc_matches(s, r, 0, (size_t)total, 9, 0));
    s->ops->seg_reader_close(r);
    s->ops->seg_writer_close(w);
    s->ops->close(s);
}

TEST(sc_reopen_cuts_tail)
{
    storage *s = sc_open();
    REQUIRE(s);
    st_writer *w = NULL;
    CHECK_OK(s->ops->seg_create(s, 5, 3, 1, &w));
    REQUIRE(w);
    CHECK_OK(sc_append(s, w, 600, 11, 0, 2));
    CHECK_OK(sc_append(s, w, 400, 11, 600, 2)); /* the "torn tail" to cut */
    s->ops->seg_writer_close(w);
    w = NULL;

    CHECK_OK(s->ops->seg_fence(s, 5, 3, 2));
    CHECK_OK(s->ops->seg_reopen(s, 5, 3, 2, 600, &w));
    REQUIRE(w);
    CHECK(s->ops->seg_writer_size(w) == 600);
    st_reader *r = NULL;
    CHECK_OK(s->ops->seg_open_read(s, 5, 3, &r));
    REQUIRE(r);
    CHECK(sc_size(s, r) == 600);
    /* Appends continue at len, with new bytes. */
    CHECK_OK(sc_append(s, w, 250, 12, 0, 3));
    CHECK(s->ops->seg_writer_size(w) == 850);
    CHECK(sc_size(s, r) == 850);
    CHECK(sc_matches(s, r, 0, 600, 11, 0));
    CHECK(sc_matches(s, r, 600, 250, 12, 0));
    s->ops->seg_writer_close(w);
    w = NULL;

    /* Reopen at the exact length keeps everything. */
    CHECK_OK(s->ops->seg_reopen(s, 5, 3, 2, 850, &w));
    if (w) {
        CHECK_OK(sc_append(s, w, 10, 13, 0, 1));
        s->ops->seg_writer_close(w);
        w = NULL;
    }
    CHECK(sc_size(s, r) == 860);
    CHECK(sc_matches(s, r, 0, 600, 11, 0) && sc_matches(s, r, 600, 250, 12, 0) &&
          sc_matches(s, r, 850, 10, 13, 0));
    /* Reopen beyond the end is refused; the segment is unchanged. */
    CHECK(s->ops->seg_reopen(s, 5, 3, 2, 861, &w) != 0);
    CHECK(w == NULL);
    CHECK(sc_size(s, r) == 860);
    /* Reopen of a missing segment. */
    CHECK_RC(WP_ENOENT, s->ops->seg_reopen(s, 5, 99, 2, 0, &w));
    CHECK(w == NULL);
    s->ops->seg_reader_close(r);
    s->ops->close(s);
}

TEST(sc_fence)
{
    storage *s = sc_open();
    REQUIRE(s);
    st_writer *w1 = NULL, *w2 = NULL, *w0 = NULL;
    CHECK_OK(s->ops->seg_create(s, 6, 0, 1, &w1));
    REQUIRE(w1);
    CHECK_OK(sc_append(s, w1, 500, 21, 0, 2));
    CHECK_OK(sc_append(s, w1, 500, 21, 500, 1));
    uint64_t good = s->ops->seg_writer_size(w1);
    CHECK(good == 1000);

    CHECK_OK(s->ops->seg_fence(s, 6, 0, 2));
    /* The old writer is refused on its next append and every later one. */
    CHECK_RC(WP_EFENCED, sc_append(s, w1, 100, 99, 0, 1));
    CHECK_RC(WP_EFENCED, sc_append(s, w1, 100, 99, 0, 1));
    CHECK_RC(WP_EFENCED, s->ops->seg_append(w1, NULL, 0));
    /* Fencing is idempotent; a lower epoch is refused and does not undo it. */
    CHECK_OK(s->ops->seg_fence(s, 6, 0, 2));
    CHECK_RC(WP_EFENCED, s->ops->seg_fence(s, 6, 0, 1));
    CHECK_RC(WP_EFENCED, sc_append(s, w1, 1, 99, 0, 1));

    /* The fencing writer reopens at the last good length and appends. */
    CHECK_OK(s->ops->seg_reopen(s, 6, 0, 2, good, &w2));
    REQUIRE(w2);
    CHECK_OK(sc_append(s, w2, 300, 22, 0, 3));
    CHECK_OK(s->ops->seg_fence(s, 6, 0, 2)); /* again: w2 is not stopped */
    CHECK_RC(WP_EFENCED, s->ops->seg_fence(s, 6, 0, 1));
    CHECK_OK(sc_append(s, w2, 200, 22, 300, 1));
    CHECK_RC(WP_EFENCED, sc_append(s, w1, 1, 99, 0, 1));

    /* A writer of an older epoch reopening after the fence gets nowhere. */
    int rc = s->ops->seg_reopen(s, 6, 0, 1, good, &w0);
    if (rc == 0) {
        CHECK(w0 != NULL);
        if (w0) {
            CHECK_RC(WP_EFENCED, sc_append(s, w0, 5, 99, 0, 1));
            s->ops->seg_writer_close(w0);
        }
    } else {
        CHECK(rc == WP_EFENCED);
        CHECK(w0 == NULL);
    }

    /* The data is exactly the successful appends, in order. */
    st_reader *r = NULL;
    CHECK_OK(s->ops->seg_open_read(s, 6, 0, &r));
    REQUIRE(r);
    CHECK(sc_size(s, r) == 1500);
    CHECK(sc_matches(s, r, 0, 1000, 21, 0));
    CHECK(sc_matches(s, r, 1000, 500, 22, 0));

    /* A higher epoch fences the second writer too. */
    CHECK_OK(s->ops->seg_fence(s, 6, 0, 3));
    CHECK_RC(WP_EFENCED, sc_append(s, w2, 10, 99, 0, 1));
    CHECK_RC(WP_EFENCED, sc_append(s, w2, 10, 99, 0, 1));
    s->ops->seg_reader_close(r);
    s->ops->seg_writer_close(w1);
    s->ops->seg_writer_close(w2);

    /* Fencing a segment that does not exist. */
    CHECK_RC(WP_ENOENT, s->ops->seg_fence(s, 6, 42, 2));
    CHECK_RC(WP_ENOENT, s->ops->seg_fence(s, 77, 0, 2));
    s->ops->close(s);
}

TEST(sc_fence_before_first_append)
{
    storage *s = sc_open();
    REQUIRE(s);
    st_writer *w = NULL;
    CHECK_OK(s->ops->seg_create(s, 6, 1, 4, &w));
    REQUIRE(w);
    CHECK_OK(s->ops->seg_fence(s, 6, 1, 5));
    CHECK_RC(WP_EFENCED, sc_append(s, w, 10, 1, 0, 1));
    CHECK_RC(WP_EFENCED, sc_append(s, w, 10, 1, 0, 1));
    s->ops->seg_writer_close(w);
    s->ops->close(s);
}

TEST(sc_lac)
{
    storage *s = sc_open();
    REQUIRE(s);
    st_writer *w = NULL;
    CHECK_OK(s->ops->seg_create(s, 8, 0, 1, &w));
    REQUIRE(w);
    st_reader *r = NULL;
    CHECK_OK(s->ops->seg_open_read(s, 8, 0, &r));
    REQUIRE(r);
    int64_t lac = 12345;
    int rc = s->ops->seg_read_lac(r, &lac);
    if (rc == WP_ENOTSUP) {
        /* The backend has no lac hint; publishing must still work. */
        CHECK_OK(s->ops->seg_publish_lac(w, 0));
    } else {
        CHECK_OK(rc);
        CHECK(lac == -1);
        CHECK_OK(sc_append(s, w, 64, 3, 0, 1));
        CHECK_OK(s->ops->seg_publish_lac(w, 0));
        CHECK_OK(s->ops->seg_read_lac(r, &lac));
        CHECK(lac == 0);
        CHECK_OK(s->ops->seg_publish_lac(w, 5));
        CHECK_OK(s->ops->seg_read_lac(r, &lac));
        CHECK(lac == 5);
        CHECK_OK(s->ops->seg_publish_lac(w, (int64_t)1 << 40));
        CHECK_OK(s->ops->seg_read_lac(r, &lac));
        CHECK(lac == (int64_t)1 << 40);
        /* A reader opened later sees the last value too. */
        st_reader *r2 = NULL;
        CHECK_OK(s->ops->seg_open_read(s, 8, 0, &r2));
        if (r2) {
            lac = 0;
            CHECK_OK(s->ops->seg_read_lac(r2, &lac));
            CHECK(lac == (int64_t)1 << 40);
            s->ops->seg_reader_close(r2);
        }
    }
    s->ops->seg_reader_close(r);
    s->ops->seg_writer_close(w);
    s->ops->close(s);
}

static int sc_list_is(storage *s, int64_t log_id, const int64_t *want, size_t nwant)
{
    int64_t *ids = NULL;
    size_t n = 99;
    int rc = s->ops->seg_list(s, log_id, &ids, &n);
    int ok = rc == 0 && n == nwant;
    for (size_t i = 0; ok && i < n; i++)
        ok = ids[i] == want[i];
    if (!ok) {
        fprintf(stderr, "  seg_list(%lld): rc %d n %zu:", (long long)log_id, rc, n);
        for (size_t i = 0; rc == 0 && i < n; i++)
            fprintf(stderr, " %lld", (long long)ids[i]);
        fprintf(stderr, "\n");
    }
    free(ids);
    return ok;
}

static int sc_create_closed(storage *s, int64_t log_id, int64_t seg_id)
{
    st_writer *w = NULL;
    int rc = s->ops->seg_create(s, log_id, seg_id, 1, &w);
    if (rc == 0) {
        rc = sc_append(s, w, 10, (uint32_t)seg_id, 0, 1);
        s->ops->seg_writer_close(w);
    }
    return rc;
}

TEST(sc_list)
{
    storage *s = sc_open();
    REQUIRE(s);
    CHECK(sc_list_is(s, 9, NULL, 0)); /* unknown log: empty */
    static const int64_t order[] = {10, 2, 0, 1, 100, 11};
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++)
        CHECK_OK(sc_create_closed(s, 9, order[i]));
    CHECK_OK(sc_create_closed(s, 10, 5));
    static const int64_t want9[] = {0, 1, 2, 10, 11, 100};
    CHECK(sc_list_is(s, 9, want9, 6));
    static const int64_t want10[] = {5};
    CHECK(sc_list_is(s, 10, want10, 1));
    s->ops->close(s);
}

TEST(sc_delete)
{
    storage *s = sc_open();
    REQUIRE(s);
    CHECK_OK(sc_create_closed(s, 11, 0));
    CHECK_OK(sc_create_closed(s, 11, 1));
    CHECK_OK(sc_create_closed(s, 11, 2));
    CHECK_OK(s->ops->seg_delete(s, 11, 1));
    st_reader *r = NULL;
    CHECK_RC(WP_ENOENT, s->ops->seg_open_read(s, 11, 1, &r));
    CHECK(r == NULL);
    static const int64_t want[] = {0, 2};
    CHECK(sc_list_is(s, 11, want, 2));
    /* Idempotent, and fine for what never existed. */
    CHECK_OK(s->ops->seg_delete(s, 11, 1));
    CHECK_OK(s->ops->seg_delete(s, 11, 55));
    CHECK_OK(s->ops->seg_delete(s, 12345, 0));
    /* The id can be created again, empty. */
    st_writer *w = NULL;
    CHECK_OK(s->ops->seg_create(s, 11, 1, 2, &w));
    if (w)
        s->ops->seg_writer_close(w);
    CHECK_OK(s->ops->seg_open_read(s, 11, 1, &r));
    if (r) {
        CHECK(sc_size(s, r) == 0);
        s->ops->seg_reader_close(r);
    }
    /* Other segments are untouched. */
    CHECK_OK(s->ops->seg_open_read(s, 11, 2, &r));
    if (r) {
        CHECK(sc_matches(s, r, 0, 10, 2, 0));
        s->ops->seg_reader_close(r);
    }
    s->ops->close(s);
}

TEST(sc_log_delete)
{
    storage *s = sc_open();
    REQUIRE(s);
    CHECK_OK(sc_create_closed(s, 13, 0));
    CHECK_OK(sc_create_closed(s, 13, 1));
    CHECK_OK(sc_create_closed(s, 14, 0));
    CHECK_OK(s->ops->log_delete(s, 13));
    CHECK(sc_list_is(s, 13, NULL, 0));
    st_reader *r = NULL;
    CHECK_RC(WP_ENOENT, s->ops->seg_open_read(s, 13, 0, &r));
    CHECK_RC(WP_ENOENT, s->ops->seg_open_read(s, 13, 1, &r));
    CHECK_OK(s->ops->log_delete(s, 13));
    CHECK_OK(s->ops->log_delete(s, 999));
    static const int64_t want[] = {0};
    CHECK(sc_list_is(s, 14, want, 1));
    CHECK_OK(s->ops->seg_open_read(s, 14, 0, &r));
    if (r) {
        CHECK(sc_matches(s, r, 0, 10, 0, 0));
        s->ops->seg_reader_close(r);
    }
    /* The log can be used again. */
    CHECK_OK(sc_create_closed(s, 13, 0));
    static const int64_t want13[] = {0};
    CHECK(sc_list_is(s, 13, want13, 1));
    s->ops->close(s);
}

TEST(sc_open_read_missing)
{
    storage *s = sc_open();
    REQUIRE(s);
    st_reader *r = NULL;
    CHECK_RC(WP_ENOENT, s->ops->seg_open_read(s, 15, 0, &r)); /* no log */
    CHECK(r == NULL);
    CHECK_OK(sc_create_closed(s, 15, 0));
    CHECK_RC(WP_ENOENT, s->ops->seg_open_read(s, 15, 1, &r)); /* no segment */
    CHECK(r == NULL);
    s->ops->close(s);
}

/* Data outlives its writer; listing sees every created segment. */
TEST(sc_data_outlives_writer)
{
    storage *s = sc_open();
    REQUIRE(s);
    CHECK_OK(sc_create_closed(s, 16, 3));
    st_writer *w = NULL;
    CHECK_OK(s->ops->seg_create(s, 16, 4, 1, &w));
    if (w) {
        CHECK_OK(sc_append(s, w, 2000, 44, 0, 4));
        s->ops->seg_writer_close(w);
    }
    st_reader *r = NULL;
    CHECK_OK(s->ops->seg_open_read(s, 16, 4, &r));
    if (r) {
        CHECK(sc_size(s, r) == 2000);
        CHECK(sc_matches(s, r, 0, 2000, 44, 0));
        s->ops->seg_reader_close(r);
    }
    static const int64_t want[] = {3, 4};
    CHECK(sc_list_is(s, 16, want, 2));
    s->ops->close(s);
}

/* The ownership rule (storage.h), the same on every backend: nobody acts
 * on a segment owned by a higher epoch. A stale recoverer (epoch 2) that
 * finds a segment a newer writer (epoch 3) created can neither fence it
 * nor reopen (cut) it, and the newer writer goes on (issue 9, item 1). */
TEST(sc_owner_rule)
{
    storage *s = sc_open();
    REQUIRE(s);
    st_writer *w3 = NULL, *w2 = NULL;
    CHECK_OK(s->ops->seg_create(s, 6, 3, 3, &w3));
    REQUIRE(w3);
    CHECK_OK(sc_append(s, w3, 300, 31, 0, 1));
    CHECK_RC(WP_EFENCED, s->ops->seg_fence(s, 6, 3, 2));
    CHECK_RC(WP_EFENCED, s->ops->seg_reopen(s, 6, 3, 2, 100, &w2));
    CHECK(w2 == NULL);
    CHECK_RC(WP_EEXIST, s->ops->seg_create(s, 6, 3, 2, &w2));
    CHECK(w2 == NULL);
    CHECK_OK(sc_append(s, w3, 200, 31, 300, 2));
    CHECK_OK(s->ops->seg_fence(s, 6, 3, 3)); /* its own epoch: a no-op */
    CHECK_OK(sc_append(s, w3, 100, 31, 500, 1));
    st_reader *r = NULL;
    CHECK_OK(s->ops->seg_open_read(s, 6, 3, &r));
    REQUIRE(r);
    CHECK(sc_size(s, r) == 600);
    CHECK(sc_matches(s, r, 0, 600, 31, 0));
    s->ops->seg_reader_close(r);
    s->ops->seg_writer_close(w3);
    /* A newer epoch takes it over; then the old owner is the stale one. */
    st_writer *w4 = NULL;
    CHECK_OK(s->ops->seg_fence(s, 6, 3, 4));
    CHECK_OK(s->ops->seg_reopen(s, 6, 3, 4, 600, &w4));
    CHECK_RC(WP_EFENCED, s->ops->seg_fence(s, 6, 3, 3));
    CHECK_RC(WP_EFENCED, s->ops->seg_reopen(s, 6, 3, 3, 600, &w2));
    CHECK(w2 == NULL);
    if (w4) {
        CHECK_OK(sc_append(s, w4, 10, 41, 0, 1));
        s->ops->seg_writer_close(w4);
    }
    s->ops->close(s);
}

static void storage_conformance_run(storage *(*open_fresh)(void *arg), void *arg)
{
    sc_open_fresh = open_fresh;
    sc_arg = arg;
    RUN(sc_create_exists);
    RUN(sc_append_read_back);
    RUN(sc_read_past_end);
    RUN(sc_reader_sees_later_appends);
    RUN(sc_reopen_cuts_tail);
    RUN(sc_fence);
    RUN(sc_fence_before_first_append);
    RUN(sc_owner_rule);
    RUN(sc_lac);
    RUN(sc_list);
    RUN(sc_delete);
    RUN(sc_log_delete);
    RUN(sc_open_read_missing);
    RUN(sc_data_outlives_writer);
}

#endif
