/* test_replica.c — a LogStore server's segment copies (src/server/replica.c)
 * on the real disk: ADD, FENCE, READ, COMPLETE, DELETE, and what survives
 * a restart (issue 10). */
#include "test.h"

#include "codec/codec.h"
#include "server/replica.h"

/* n records "e<first+i>" concatenated into buf; returns their length. */
static size_t records(int64_t first, uint32_t n, uint8_t *buf, size_t cap)
{
    size_t off = 0;
    for (uint32_t i = 0; i < n; i++) {
        char s[32];
        int len = snprintf(s, sizeof s, "e%" PRId64, first + (int64_t)i);
        wp_payload p = {.data = s, .len = (size_t)len};
        if (off + rec_size(&p) > cap)
            return 0;
        off += rec_encode(&p, buf + off);
    }
    return off;
}

static int add(replica *rs, int64_t seg, int64_t epoch, int64_t first, uint32_t n, int64_t lac,
               replica_state *st)
{
    uint8_t buf[4096];
    size_t len = records(first, n, buf, sizeof buf);
    return replica_add(rs, 1, seg, epoch, first, n, buf, len, lac, st);
}

/* Every read_check reads into this one buffer, as a server's worker
 * does: kept and grown from one READ to the next. */
static replica_batch rb;

/* Reads entries [from, upto] and checks they are "e<id>" in order. */
static int read_check(replica *rs, int64_t seg, int64_t from, int64_t upto)
{
    replica_batch b = rb;
    replica_state st;
    int rc = replica_read(rs, 1, seg, from, upto, 1 << 20, &b, &st);
    rb = b;
    if (rc != 0)
        return -1;
    size_t off = 0;
    int ok = b.first == from;
    for (uint32_t i = 0; ok && i < b.n; i++) {
        rec_view v;
        size_t used;
        char want[32];
        int len = snprintf(want, sizeof want, "e%" PRId64, from + (int64_t)i);
        ok = rec_decode(b.buf + off, b.len - off, &v, &used) == 0 && v.len == (size_t)len &&
             memcmp(v.data, want, v.len) == 0;
        off += used;
    }
    int n = ok && off == b.len ? (int)b.n : -1;
    return n;
}

TEST(add_read_resend_gap)
{
    replica *rs = NULL;
    CHECK_OK(replica_open(test_tmpdir("rep1"), NULL, &rs));
    REQUIRE(rs);
    replica_state st;
    CHECK_OK(add(rs, 0, 1, 0, 3, -1, &st));
    CHECK(st.last == 2 && st.epoch == 1 && !st.completed);
    CHECK_OK(add(rs, 0, 1, 3, 2, 2, &st));
    CHECK(st.last == 4 && st.lac == 2);
    /* A resend overlapping what is held writes only the new part. */
    CHECK_OK(add(rs, 0, 1, 3, 4, 4, &st));
    CHECK(st.last == 6 && st.lac == 4);
    CHECK_OK(add(rs, 0, 1, 0, 2, 4, &st)); /* all held already */
    CHECK(st.last == 6);
    /* A LAC-only ADD records the LAC, writes nothing. */
    CHECK_OK(replica_add(rs, 1, 0, 1, 7, 0, NULL, 0, 6, &st));
    CHECK(st.last == 6 && st.lac == 6);
    /* A gap is refused and tells where the replica is. */
    CHECK_RC(WP_EAGAIN, add(rs, 0, 1, 9, 1, 4, &st));
    CHECK(st.last == 6);
    CHECK(read_check(rs, 0, 0, 100) == 7);
    CHECK(read_check(rs, 0, 5, 5) == 1);
    CHECK(read_check(rs, 0, 7, 100) == 0); /* nothing yet */
    /* Records that do not parse are refused, nothing written. */
    uint8_t junk[64] = {1, 2, 3};
    CHECK_RC(WP_ECORRUPT, replica_add(rs, 1, 0, 1, 7, 1, junk, sizeof junk, 4, &st));
    CHECK(st.last == 6);
    replica_batch b = {0};
    CHECK_RC(WP_ENOENT, replica_read(rs, 1, 9, 0, 10, 100, &b, &st));
    free(b.buf);
    replica_close(rs);
}

TEST(fence_refuses_older_writer_and_survives_restart)
{
    const char *dir = test_tmpdir("rep2");
    replica *rs = NULL;
    CHECK_OK(replica_open(dir, NULL, &rs));
    REQUIRE(rs);
    replica_state st;
    CHECK_OK(add(rs, 0, 3, 0, 2, -1, &st));
    CHECK_OK(replica_fence(rs, 1, 0, 5, &st));
    CHECK(st.epoch == 5 && st.last == 1);
    CHECK_RC(WP_EFENCED, add(rs, 0, 3, 2, 1, 1, &st));
    CHECK_RC(WP_EFENCED, replica_fence(rs, 1, 0, 4, &st));
    /* Fencing a segment this replica never saw creates it, owned. */
    CHECK_OK(replica_fence(rs, 1, 1, 5, &st));
    CHECK(st.last == -1 && st.epoch == 5);
    replica_close(rs);

    /* Restarted: the fences hold, the data is there. */
    rs = NULL;
    CHECK_OK(replica_open(dir, NULL, &rs));
    REQUIRE(rs);
    CHECK_OK(replica_state_get(rs, 1, 0, &st));
    CHECK(st.epoch == 5 && st.last == 1 && !st.completed);
    CHECK_RC(WP_EFENCED, add(rs, 0, 3, 2, 1, 1, &st));
    CHECK_RC(WP_EFENCED, add(rs, 1, 4, 0, 1, -1, &st));
    /* The new writer writes back and goes on. */
    CHECK_OK(add(rs, 0, 5, 2, 2, 1, &st));
    CHECK(st.last == 3 && st.epoch == 5);
    CHECK(read_check(rs, 0, 0, 100) == 4);
    replica_close(rs);
}

TEST(complete_at_the_quorum_last)
{
    const char *dir = test_tmpdir("rep3");
    replica *rs = NULL;
    CHECK_OK(replica_open(dir, NULL, &rs));
    REQUIRE(rs);
    replica_state st;
    CHECK_OK(add(rs, 0, 1, 0, 5, -1, &st)); /* one block: 0..4 */
    /* A lagging replica never seals short of the quorum's last. */
    CHECK_RC(WP_ENOENT, replica_complete(rs, 1, 0, 2, 7, &st));
    CHECK_RC(WP_EFENCED, replica_complete(rs, 1, 0, 0, 3, &st));
    CHECK_OK(replica_complete(rs, 1, 0, 2, 3, &st)); /* entry 4 was never acked */
    CHECK(st.completed && st.last == 3);
    CHECK_OK(replica_complete(rs, 1, 0, 2, 3, &st)); /* idempotent */
    CHECK_RC(WP_ECONFLICT, replica_complete(rs, 1, 0, 2, 4, &st));
    CHECK_RC(WP_ECLOSED, add(rs, 0, 2, 5, 1, 3, &st));
    CHECK(read_check(rs, 0, 0, 100) == 4);
    replica_close(rs);
    rs = NULL;
    CHECK_OK(replica_open(dir, NULL, &rs));
    REQUIRE(rs);
    CHECK_OK(replica_state_get(rs, 1, 0, &st));
    CHECK(st.completed && st.last == 3);
    CHECK(read_check(rs, 0, 0, 100) == 4);
    replica_stats s;
    CHECK_OK(add(rs, 1, 1, 0, 1, -1, &st));
    CHECK_OK(replica_stats_get(rs, &s));
    CHECK(s.disk_total > 0 && s.disk_free <= s.disk_total && s.segments == 2);
    /* Delete leaves a tombstone: a late writer cannot create the copy
     * again, readers find nothing, also after a restart. */
    CHECK_OK(replica_delete(rs, 1, 0));
    CHECK_OK(replica_delete(rs, 1, 0)); /* idempotent */
    CHECK_RC(WP_ENOENT, replica_state_get(rs, 1, 0, &st));
    CHECK_RC(WP_EFENCED, add(rs, 0, 9, 0, 1, -1, &st));
    CHECK_RC(WP_EFENCED, replica_fence(rs, 1, 0, 9, &st));
    CHECK_OK(replica_stats_get(rs, &s));
    CHECK(s.segments == 1);
    replica_close(rs);
    rs = NULL;
    CHECK_OK(replica_open(dir, NULL, &rs));
    REQUIRE(rs);
    CHECK_OK(replica_stats_get(rs, &s));
    CHECK(s.segments == 1);
    CHECK_RC(WP_EFENCED, add(rs, 0, 9, 0, 1, -1, &st));
    CHECK_OK(replica_delete(rs, 1, -1));
    CHECK_RC(WP_ENOENT, replica_state_get(rs, 1, 1, &st));
    CHECK_RC(WP_EFENCED, add(rs, 2, 9, 0, 1, -1, &st)); /* any segment of the log */
    CHECK_OK(replica_stats_get(rs, &s));
    CHECK(s.segments == 0);
    replica_close(rs);
}

int main(void)
{
    RUN(add_read_resend_gap);
    RUN(fence_refuses_older_writer_and_survives_restart);
    RUN(complete_at_the_quorum_last);
    free(rb.buf);
    return test_done();
}
