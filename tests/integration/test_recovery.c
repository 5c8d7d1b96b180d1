/* test_recovery.c — regression tests for the recovery and fencing defects
 * of issue 9 (items 1, 2, 4, 7 and 11), on the local disk: segments built
 * with the logstore layer, then recovered as a new writer would. */
#include "test.h"
#include "support/segtest.h"
#include "support/testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <time.h>

#include "base/limits.h"
#include "codec/codec.h"
#include "logstore/segment.h"
#include "os/os.h"
#include "storage/storage.h"

static char seg_dir[1200];

static storage *fresh(const char *tag)
{
    const char *root = test_tmpdir(tag);
    storage *s = NULL;
    if (storage_local_open(root, NULL, &s) != 0)
        return NULL;
    snprintf(seg_dir, sizeof seg_dir, "%s/1/0", root);
    return s;
}

static char *seg_file(const char *name)
{
    static char path[1300];
    snprintf(path, sizeof path, "%s/%s", seg_dir, name);
    return path;
}

static uint64_t file_len(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (uint64_t)st.st_size : 0;
}

static int patch_file(const char *path, uint64_t off, const void *b, size_t n)
{
    int fd = open(path, O_WRONLY);
    if (fd < 0)
        return -1;
    ssize_t w = pwrite(fd, b, n, (off_t)off);
    close(fd);
    return w == (ssize_t)n ? 0 : -1;
}

/* Item 1: a stale writer's recovery must not act on a segment a newer
 * epoch created: it gets WP_EFENCED and the newer writer goes on. */
TEST(recovery_refuses_newer_epochs_segment)
{
    storage *s = fresh("rec1");
    REQUIRE(s);
    lseg_w *w3 = NULL;
    CHECK_OK(lseg_create(s, 1, 0, 3, &w3));
    REQUIRE(w3);
    CHECK_OK(segtest_write_str(w3, 0, "acked by epoch 3"));
    int64_t last = 7;
    uint64_t bytes = 0;
    CHECK_RC(WP_EFENCED, lseg_recover(s, 1, 0, 2, NULL, &last, &bytes));
    CHECK(last == 7); /* nothing reported */
    /* The newer writer is untouched: it appends, and completes. */
    CHECK_OK(segtest_write_str(w3, 1, "and more"));
    CHECK_OK(lseg_finish(w3, &last, &bytes));
    CHECK(last == 1);
    CHECK(file_len(seg_file("data")) == bytes);
    lseg_close(w3);
    /* Its own epoch (or a newer one) may recover it. */
    int64_t last2 = -5;
    uint64_t bytes2 = 0;
    CHECK_OK(lseg_recover(s, 1, 0, 4, NULL, &last2, &bytes2));
    CHECK(last2 == 1 && bytes2 == bytes);
    s->ops->close(s);
}

/* Item 1, the header check: a segment whose header names a higher epoch
 * than the recoverer's is refused even where the storage's owner record
 * does not say so (a fence file lost, or a segment from before them). */
TEST(recovery_checks_the_header_epoch)
{
    storage *s = fresh("rec1h");
    REQUIRE(s);
    lseg_w *w = NULL;
    CHECK_OK(lseg_create(s, 1, 0, 5, &w));
    REQUIRE(w);
    CHECK_OK(segtest_write_str(w, 0, "x"));
    lseg_close(w);
    CHECK(unlink(seg_file("fence")) == 0);
    int64_t last;
    uint64_t bytes;
    CHECK_RC(WP_EFENCED, lseg_recover(s, 1, 0, 4, NULL, &last, &bytes));
    CHECK(strstr(wp_errmsg(), "created by epoch 5") != NULL);
    s->ops->close(s);
}

/* Item 2: an entry whose payload ends with a footer-shaped 64 bytes must
 * not make recovery believe the segment was completed (empty). */
static void forged_footer(bool with_lac)
{
    storage *s = fresh("rec2");
    REQUIRE(s);
    lseg_w *w = NULL;
    CHECK_OK(lseg_create(s, 1, 0, 1, &w));
    REQUIRE(w);
    CHECK_OK(segtest_write_str(w, 0, "first acked entry"));
    uint64_t end = 0;
    CHECK_OK(segtest_write_forged_footer(w, 1, &end));
    CHECK(lseg_bytes(w) == end);
    lseg_close(w); /* a crash: no footer */
    if (!with_lac)
        CHECK(unlink(seg_file("lac")) == 0);
    int64_t last = -7;
    uint64_t bytes = 0;
    CHECK_OK(lseg_recover(s, 1, 0, 2, NULL, &last, &bytes));
    CHECK(last == 1);
    CHECK(bytes == end + 2 * IDX_ENTRY_SIZE + FTR_SIZE);
    CHECK(segtest_count(s, 1, 0, bytes, last) == 2); /* every entry reads back */
    s->ops->close(s);
}

TEST(forged_footer_in_payload_with_lac_hint) { forged_footer(true); }
TEST(forged_footer_in_payload_without_lac_hint) { forged_footer(false); }

/* A segment really completed before the crash (footer written, metadata
 * not updated) is still recognised, and not rewritten. */
TEST(completed_segment_is_recognised)
{
    storage *s = fresh("rec2c");
    REQUIRE(s);
    lseg_w *w = NULL;
    CHECK_OK(lseg_create(s, 1, 0, 1, &w));
    REQUIRE(w);
    CHECK_OK(segtest_write_str(w, 0, "a"));
    CHECK_OK(segtest_write_str(w, 1, "b"));
    int64_t last;
    uint64_t bytes;
    CHECK_OK(lseg_finish(w, &last, &bytes));
    lseg_close(w);
    int64_t last2;
    uint64_t bytes2;
    CHECK_OK(lseg_recover(s, 1, 0, 2, NULL, &last2, &bytes2));
    CHECK(last2 == 1 && bytes2 == bytes && file_len(seg_file("data")) == bytes);
    s->ops->close(s);
}

/* Item 4: a block header cut short below the LAC hint held acknowledged
 * entries: corruption, nothing cut. */
TEST(cut_short_header_below_lac_is_corruption)
{
    storage *s = fresh("rec4a");
    REQUIRE(s);
    lseg_w *w = NULL;
    CHECK_OK(lseg_create(s, 1, 0, 1, &w));
    REQUIRE(w);
    CHECK_OK(segtest_write_str(w, 0, "zero"));
    CHECK_OK(segtest_write_str(w, 1, "one"));
    uint64_t third = lseg_bytes(w);
    CHECK_OK(segtest_write_str(w, 2, "two, acked: the LAC hint says 2"));
    lseg_close(w);
    CHECK(truncate(seg_file("data"), (off_t)(third + 20)) == 0);
    int64_t last;
    uint64_t bytes;
    CHECK_RC(WP_ECORRUPT, lseg_recover(s, 1, 0, 2, NULL, &last, &bytes));
    CHECK(file_len(seg_file("data")) == third + 20); /* nothing cut */
    /* Records cut short below the hint too. */
    CHECK(truncate(seg_file("data"), (off_t)(third + 45)) == 0);
    CHECK_RC(WP_ECORRUPT, lseg_recover(s, 1, 0, 3, NULL, &last, &bytes));
    s->ops->close(s);
}

/* Item 4: a damaged segment header with blocks after it is corruption,
 * whatever the size and whether or not a LAC hint exists: the header was
 * synced before any block was written. */
TEST(bad_segment_header_is_corruption)
{
    storage *s = fresh("rec4b");
    REQUIRE(s);
    lseg_w *w = NULL;
    CHECK_OK(lseg_create(s, 1, 0, 1, &w));
    REQUIRE(w);
    CHECK_OK(segtest_write_str(w, 0, "acked"));
    uint64_t size = lseg_bytes(w);
    lseg_close(w);
    CHECK(size < 4096);
    CHECK(unlink(seg_file("lac")) == 0);
    CHECK(patch_file(seg_file("data"), 3, "X", 1) == 0);
    int64_t last = -9;
    uint64_t bytes;
    CHECK_RC(WP_ECORRUPT, lseg_recover(s, 1, 0, 2, NULL, &last, &bytes));
    CHECK(file_len(seg_file("data")) == size);
    s->ops->close(s);
}

/* ... but a header torn while the segment was created (nothing after it)
 * provably held no entry: recovery rewrites it and completes it empty. */
TEST(torn_header_of_empty_segment_is_rewritten)
{
    storage *s = fresh("rec4c");
    REQUIRE(s);
    lseg_w *w = NULL;
    CHECK_OK(lseg_create(s, 1, 0, 1, &w));
    REQUIRE(w);
    lseg_close(w);
    CHECK(patch_file(seg_file("data"), 10, "\xff\xff", 2) == 0); /* 48 bytes of garbage */
    int64_t last = 3;
    uint64_t bytes = 0;
    CHECK_OK(lseg_recover(s, 1, 0, 2, NULL, &last, &bytes));
    CHECK(last == -1 && bytes == SEG_HEADER_SIZE + FTR_SIZE);
    CHECK(truncate(seg_file("data"), 20) == 0); /* cut short */
    CHECK(unlink(seg_file("fence")) == 0);
    CHECK_OK(lseg_recover(s, 1, 0, 3, NULL, &last, &bytes));
    CHECK(last == -1 && bytes == SEG_HEADER_SIZE + FTR_SIZE);
    s->ops->close(s);
}

/* Item 7: an outdated recoverer's reopen must not cut what a newer one
 * committed between the older one's owner check and its truncate. The
 * newer recoverer runs from inside the older one's ftruncate. */
static storage *race_st;
static uint64_t race_newer_len;
static int race_newer_rc = 1;
static bool race_in_hook;
static pthread_t race_thr;
static bool race_started;

static void *newer_recoverer(void *arg)
{
    (void)arg;
    int rc = race_st->ops->seg_fence(race_st, 1, 0, 3);
    st_reader *r = NULL;
    if (rc == WP_OK)
        rc = race_st->ops->seg_open_read(race_st, 1, 0, &r);
    uint64_t size = 0;
    if (rc == WP_OK)
        rc = race_st->ops->seg_size(r, &size);
    if (r)
        race_st->ops->seg_reader_close(r);
    st_writer *w = NULL;
    if (rc == WP_OK)
        rc = race_st->ops->seg_reopen(race_st, 1, 0, 3, size, &w);
    if (rc == WP_OK) {
        struct iovec v = {(void *)"NEWER-FOOTER", 12};
        rc = race_st->ops->seg_append(w, &v, 1);
        race_st->ops->seg_writer_close(w);
    }
    race_newer_len = size;
    __atomic_store_n(&race_newer_rc, rc, __ATOMIC_SEQ_CST);
    return NULL;
}

static int racing_ftruncate(int fd, off_t len)
{
    if (!race_in_hook) {
        race_in_hook = true;
        race_started = pthread_create(&race_thr, NULL, newer_recoverer, NULL) == 0;
        /* Give the newer recoverer up to 500 ms: it finishes unless the
         * older one's reopen holds it off. */
        for (int i = 0; i < 50 && __atomic_load_n(&race_newer_rc, __ATOMIC_SEQ_CST) == 1; i++)
            test_sleep_ms(10);
    }
    return ftruncate(fd, len);
}

TEST(outdated_reopen_cannot_cut_newer_footer)
{
    storage *s = fresh("rec7");
    REQUIRE(s);
    race_st = s;
    st_writer *w1 = NULL;
    CHECK_OK(s->ops->seg_create(s, 1, 0, 1, &w1));
    REQUIRE(w1);
    struct iovec v = {(void *)"AAAAAAAA", 8};
    CHECK_OK(s->ops->seg_append(w1, &v, 1));
    /* The older recoverer (epoch 2) fences and decides on 8 bytes; the old
     * writer's next append lands anyway (fenced: not acknowledged). */
    CHECK_OK(s->ops->seg_fence(s, 1, 0, 2));
    struct iovec late = {(void *)"BBBB", 4};
    CHECK_RC(WP_EFENCED, s->ops->seg_append(w1, &late, 1));
    s->ops->seg_writer_close(w1);
    os_sys.ftruncate = racing_ftruncate;
    st_writer *w2 = NULL;
    int rc = s->ops->seg_reopen(s, 1, 0, 2, 8, &w2);
    os_sys_reset();
    if (rc == WP_OK) {
        struct iovec f = {(void *)"OLDER", 5};
        (void)s->ops->seg_append(w2, &f, 1); /* refused once the newer one fenced */
        s->ops->seg_writer_close(w2);
    }
    if (race_started)
        pthread_join(race_thr, NULL);
    /* The newer recoverer succeeded, and what it committed is intact. */
    CHECK_OK(race_newer_rc);
    int fd = open(seg_file("data"), O_RDONLY);
    char buf[64] = {0};
    ssize_t n = fd >= 0 ? pread(fd, buf, sizeof buf, 0) : -1;
    if (fd >= 0)
        close(fd);
    CHECK(n >= (ssize_t)race_newer_len + 12);
    CHECK(memcmp(buf + race_newer_len, "NEWER-FOOTER", 12) == 0);
    s->ops->close(s);
}

static void print_problem(void *arg, const char *problem)
{
    (void)arg;
    fprintf(stderr, "  verify: %s\n", problem);
}

/* lseg_recover_at: blocks past the limit are cut and the footer's last
 * entry is the limit, also inside a block (a replica completing a segment
 * at the quorum's last entry). */
TEST(recover_at_a_limit)
{
    storage *s = fresh("reclim");
    REQUIRE(s);
    lseg_w *w = NULL;
    CHECK_OK(lseg_create(s, 1, 0, 1, &w));
    REQUIRE(w);
    const void *p[3] = {"a", "b", "c"};
    size_t l[3] = {1, 1, 1};
    CHECK_OK(segtest_write_block(w, 0, p, l, 3)); /* entries 0..2 */
    uint64_t second = lseg_bytes(w);
    CHECK_OK(segtest_write_block(w, 3, p, l, 3)); /* entries 3..5 */
    lseg_close(w);
    int64_t last = -9;
    uint64_t bytes = 0;
    CHECK_OK(lseg_recover_at(s, 1, 0, 2, 1, NULL, &last, &bytes));
    CHECK(last == 1);
    CHECK(bytes == second + IDX_ENTRY_SIZE + FTR_SIZE); /* the second block is cut */
    CHECK(segtest_count(s, 1, 0, bytes, last) == 2);
    CHECK_OK(lseg_verify(s, 1, 0, true, bytes, last, print_problem, NULL, NULL));
    /* Recovered again (a crash before metadata recorded it): the footer
     * inside the block is recognised, entry 2 does not come back. */
    int64_t last2 = -9;
    uint64_t bytes2 = 0;
    CHECK_OK(lseg_recover(s, 1, 0, 3, NULL, &last2, &bytes2));
    CHECK(last2 == 1 && bytes2 == bytes);
    s->ops->close(s);
}

/* lseg_reopen: a new owner appends after the last valid block. */
TEST(reopen_for_append)
{
    storage *s = fresh("recreo");
    REQUIRE(s);
    lseg_w *w = NULL;
    CHECK_OK(lseg_create(s, 1, 0, 1, &w));
    REQUIRE(w);
    CHECK_OK(segtest_write_str(w, 0, "zero"));
    CHECK_OK(segtest_write_str(w, 1, "one"));
    lseg_close(w);
    int fd = open(seg_file("data"), O_WRONLY | O_APPEND);
    CHECK(fd >= 0 && write(fd, "torn tail", 9) == 9); /* an unacknowledged append, cut short */
    if (fd >= 0)
        close(fd);
    int64_t last = -9;
    uint64_t bytes = 0;
    lseg_w *w2 = NULL;
    CHECK_RC(WP_EFENCED, lseg_reopen(s, 1, 0, 0, INT64_MAX, NULL, &w2, &last, &bytes));
    CHECK_OK(lseg_reopen(s, 1, 0, 2, INT64_MAX, NULL, &w2, &last, &bytes));
    REQUIRE(w2);
    CHECK(last == 1 && lseg_last_entry(w2) == 1);
    CHECK_OK(segtest_write_str(w2, 2, "two"));
    CHECK_OK(lseg_finish(w2, &last, &bytes));
    lseg_close(w2);
    CHECK(last == 2 && segtest_count(s, 1, 0, bytes, last) == 3);
    /* A completed segment is reported, not reopened. */
    CHECK_OK(lseg_reopen(s, 1, 0, 3, INT64_MAX, NULL, &w2, &last, &bytes));
    CHECK(w2 == NULL && last == 2);
    s->ops->close(s);
}

/* Item 11: appends into a log deleted under the writer are not acked. */
TEST(append_after_log_delete_is_not_acked)
{
    const char *dir = test_tmpdir("rec11");
    wp_client *c = test_client_open(dir, NULL);
    REQUIRE(c);
    CHECK_OK(wp_log_create(c, "doomed"));
    wp_log *log = NULL;
    CHECK_OK(wp_log_open(c, "doomed", &log));
    REQUIRE(log);
    wp_writer *w = NULL;
    CHECK_OK(wp_writer_open(log, &w));
    REQUIRE(w);
    wp_msg_id id;
    CHECK_OK(wp_writer_append(w, "before", 6, &id));
    CHECK_OK(wp_log_delete(c, "doomed"));
    int rc = wp_writer_append(w, "after", 5, &id);
    CHECK(rc != WP_OK);
    if (rc == WP_OK)
        fprintf(stderr, "  append acked into a deleted log as %" PRId64 ":%" PRId64 "\n",
                id.segment_id, id.entry_id);
    (void)wp_writer_close(w);
    wp_log_close(log);
    wp_client_close(c);
}

int main(void)
{
    RUN(recovery_refuses_newer_epochs_segment);
    RUN(recovery_checks_the_header_epoch);
    RUN(forged_footer_in_payload_with_lac_hint);
    RUN(forged_footer_in_payload_without_lac_hint);
    RUN(completed_segment_is_recognised);
    RUN(cut_short_header_below_lac_is_corruption);
    RUN(bad_segment_header_is_corruption);
    RUN(torn_header_of_empty_segment_is_rewritten);
    RUN(outdated_reopen_cannot_cut_newer_footer);
    RUN(append_after_log_delete_is_not_acked);
    RUN(recover_at_a_limit);
    RUN(reopen_for_append);
    return test_done();
}
