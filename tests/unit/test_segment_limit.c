/* test_segment_limit.c — a segment the writer filled to segment.max_bytes
 * and segment.max_blocks completes, and its size is what the bound of
 * segment.max_bytes reserves room for (issue 9, item 10):
 *
 *   size <= segment.max_bytes + 16 * segment.max_blocks + 64
 *
 * (data, then index and footer; docs/format.md §6, §7), or, for a segment
 * holding a single entry above segment.max_bytes, header + one block +
 * one index entry + footer. test_config checks the same formula at the
 * highest values the configuration accepts against WP_SEGMENT_BYTES_MAX;
 * here it is checked with small values on real segments (also on
 * storage.type quorum: unit/test_segment_limit@quorum). */
#include "test.h"
#include "support/testutil.h"

#include "codec/codec.h"

#define MAX_BYTES 4096
#define MAX_BLOCKS 8

static wp_client *open_client(const char *dir, const char *max_entries)
{
    char max_bytes[32], max_blocks[32];
    snprintf(max_bytes, sizeof max_bytes, "%d", MAX_BYTES);
    snprintf(max_blocks, sizeof max_blocks, "%d", MAX_BLOCKS);
    const char *kv[] = {"segment.max_bytes", max_bytes, "segment.max_blocks", max_blocks,
                        "flush.max_entries", max_entries, NULL};
    return test_client_open(dir, kv);
}

static int64_t bound(void) { return MAX_BYTES + (int64_t)IDX_ENTRY_SIZE * MAX_BLOCKS + FTR_SIZE; }

/* Entries sized so that MAX_BLOCKS blocks of one record each fill the
 * segment to exactly MAX_BYTES: the segment is at both limits at once. */
TEST(segment_at_both_limits_completes)
{
    wp_client *c = open_client(test_tmpdir("seglimit"), "1");
    REQUIRE(c);
    CHECK_OK(wp_log_create(c, "l"));
    wp_log *log;
    REQUIRE(wp_log_open(c, "l", &log) == 0);
    wp_writer *w;
    REQUIRE(wp_writer_open(log, &w) == 0);
    const size_t block = (MAX_BYTES - SEG_HEADER_SIZE) / MAX_BLOCKS;
    REQUIRE(SEG_HEADER_SIZE + block * MAX_BLOCKS == MAX_BYTES);
    wp_payload empty = {.data = "", .len = 0};
    static char buf[MAX_BYTES];
    memset(buf, 'x', sizeof buf);
    wp_payload p = {.data = buf, .len = block - BLK_HEADER_SIZE - rec_size(&empty)};
    REQUIRE(SEG_HEADER_SIZE + MAX_BLOCKS * (BLK_HEADER_SIZE + rec_size(&p)) == MAX_BYTES);
    wp_msg_id id = {0, 0};
    for (int i = 0; i <= MAX_BLOCKS; i++) /* sync: one block each */
        CHECK_OK(wp_writer_append_entry(w, &p, &id));
    CHECK(id.segment_id == 1 && id.entry_id == 0); /* the last one rolled */
    CHECK_OK(wp_writer_close(w));
    wp_segment_info *segs;
    size_t n;
    REQUIRE(wp_log_segments(log, &segs, &n) == 0);
    REQUIRE(n == 2);
    CHECK(segs[0].state == WP_SEG_COMPLETED && segs[0].last_entry_id == MAX_BLOCKS - 1);
    CHECK(segs[0].bytes == bound()); /* exactly: data, full index, footer */
    free(segs);
    int64_t entries = 0;
    {
        CHECK_OK(wp_log_verify(log, NULL, NULL, &entries));
        CHECK(entries == MAX_BLOCKS + 1);
    }
    wp_log_close(log);
    wp_client_close(c);
}

/* Entries of many sizes, some above segment.max_bytes: every completed
 * segment fits the formula. */
TEST(every_segment_fits_its_bound)
{
    wp_client *c = open_client(test_tmpdir("segbound"), "3");
    REQUIRE(c);
    CHECK_OK(wp_log_create(c, "l"));
    wp_log *log;
    REQUIRE(wp_log_open(c, "l", &log) == 0);
    wp_writer *w;
    REQUIRE(wp_writer_open(log, &w) == 0);
    static char buf[2 * MAX_BYTES];
    memset(buf, 'y', sizeof buf);
    uint32_t x = 12345;
    const int total = 600;
    for (int i = 0; i < total; i++) {
        x = x * 1103515245u + 12345u;
        size_t len = (x >> 8) % 64 == 0 ? MAX_BYTES + (x >> 4) % MAX_BYTES : (x >> 8) % 1500;
        CHECK_OK(wp_writer_append_async(w, buf, len, NULL, NULL));
        if (i % 7 == 0)
            CHECK_OK(wp_writer_flush(w));
    }
    CHECK_OK(wp_writer_close(w));
    wp_payload big = {.data = buf, .len = sizeof buf};
    const int64_t single_max = SEG_HEADER_SIZE + BLK_HEADER_SIZE + (int64_t)rec_size(&big) +
                               IDX_ENTRY_SIZE + FTR_SIZE;
    wp_segment_info *segs;
    size_t n;
    REQUIRE(wp_log_segments(log, &segs, &n) == 0);
    CHECK(n > 10);
    for (size_t i = 0; i < n; i++) {
        CHECK(segs[i].state == WP_SEG_COMPLETED);
        if (segs[i].last_entry_id > 0)
            CHECK(segs[i].bytes <= bound());
        else
            CHECK(segs[i].bytes <= single_max);
    }
    free(segs);
    int64_t entries = 0;
    {
        CHECK_OK(wp_log_verify(log, NULL, NULL, &entries));
        CHECK(entries == total);
    }
    wp_log_close(log);
    wp_client_close(c);
}

int main(void)
{
    RUN(segment_at_both_limits_completes);
    RUN(every_segment_fits_its_bound);
    return test_done();
}
