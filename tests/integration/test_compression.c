/* test_compression.c — flush.compression end to end (docs/format.md §5.1):
 * segments written with zstd and lz4 read back, seek, verify and recover
 * after a crash with a torn compressed tail; incompressible blocks stay
 * uncompressed; old uncompressed segments (the format.md §10 example) and
 * logs mixing codecs read with the new reader. As
 * integration/test_compression@quorum, the client-level tests run on
 * storage.type quorum, where the records stay uncompressed. */
#include "test.h"
#include "support/segtest.h"
#include "support/testutil.h"

#include <fcntl.h>
#include <pthread.h>

#include "base/limits.h"
#include "codec/codec.h"
#include "codec/le.h"
#include "logstore/segment.h"
#include "storage/storage.h"

static const char *const CODECS[] = {"none", "zstd", "lz4"};

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint64_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* Entry i's payload: a log line that names i (compressible), or with
 * `noise` the name and 600 random bytes. Returns its length. */
static size_t payload(char *buf, size_t cap, int i, bool noise)
{
    if (!noise)
        return (size_t)snprintf(buf, cap, "e%d 2026-12-06T10:00:00Z INFO orders: order %d "
                                "placed, status=ok region=eu-west-1", i, i * 7);
    size_t n = (size_t)snprintf(buf, cap, "e%d ", i), len = n + 600;
    for (size_t j = n; j < len && j < cap; j++)
        buf[j] = (char)rnd();
    return len < cap ? len : cap;
}

/* Whether data is entry i's payload (its name only, for a noisy one). */
static bool payload_ok(const void *data, size_t len, int i)
{
    char buf[1024];
    size_t n = payload(buf, sizeof buf, i, false);
    if (len == n && memcmp(data, buf, n) == 0)
        return true;
    n = (size_t)snprintf(buf, sizeof buf, "e%d ", i);
    return len == n + 600 && memcmp(data, buf, n) == 0;
}

/* Walks the blocks of a local segment file: counts them by codec. Returns
 * the number of blocks, -1 if a header does not decode. */
static int file_codecs(const char *path, uint64_t limit, int counts[BLK_CODEC_MAX + 1])
{
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return -1;
    uint64_t off = SEG_HEADER_SIZE;
    int n = 0;
    uint8_t hb[BLK_HEADER_SIZE];
    while (off + BLK_HEADER_SIZE <= limit &&
           pread(fd, hb, sizeof hb, (off_t)off) == (ssize_t)sizeof hb) {
        blk_header h;
        if (memcmp(hb, "WPBK", 4) != 0)
            break; /* the index */
        if (blk_header_decode(hb, &h)) {
            n = -1;
            break;
        }
        counts[h.codec]++;
        n++;
        off += BLK_HEADER_SIZE + h.records_len;
    }
    close(fd);
    return n;
}

/* ---- the logstore layer on local disk ---------------------------------- */

static storage *fresh(const char *tag, char *root, size_t cap)
{
    snprintf(root, cap, "%s", test_tmpdir(tag));
    storage *s = NULL;
    return storage_local_open(root, NULL, &s) == 0 ? s : NULL;
}

/* Writes blocks of 20 text entries (and, as block 2, 3 noisy ones) from
 * entry `first`; returns the next entry id. */
static int64_t write_blocks(lseg_w *w, int64_t first, int blocks)
{
    static char bufs[20][1024];
    const void *p[20];
    size_t l[20];
    for (int b = 0; b < blocks; b++) {
        int n = b == 2 ? 3 : 20;
        for (int i = 0; i < n; i++) {
            l[i] = payload(bufs[i], sizeof bufs[i], (int)first + i, b == 2);
            p[i] = bufs[i];
        }
        if (segtest_write_block(w, first, p, l, n))
            return -1;
        first += n;
    }
    return first;
}

/* Reads entries first..last of a segment and checks their numbers. */
static int read_back(storage *s, uint64_t bytes, bool completed, int64_t from, int64_t last)
{
    lseg_r *r = NULL;
    int rc = lseg_open_read(s, 1, 0, completed, bytes, &r);
    if (rc)
        return rc;
    lseg_seek(r, from);
    lseg_entry e;
    int64_t want = from;
    while ((rc = lseg_next(r, last, &e)) == WP_OK) {
        if (e.entry_id != want || !payload_ok(e.rec.data, e.rec.len, (int)want)) {
            rc = WP_ECORRUPT;
            break;
        }
        want++;
    }
    lseg_close_read(r);
    if (rc == WP_EAGAIN && want == last + 1)
        return WP_OK;
    fprintf(stderr, "  read %" PRId64 "..%" PRId64 ": stopped at %" PRId64 " (%s)\n", from, last,
            want, wp_strerror(rc));
    return rc ? rc : WP_ENOENT;
}

TEST(segment_round_trip_per_codec)
{
    for (uint32_t codec = BLK_CODEC_NONE; codec <= BLK_CODEC_MAX; codec++) {
        char root[1024], path[1200];
        storage *s = fresh(CODECS[codec], root, sizeof root);
        REQUIRE(s);
        lseg_w *w = NULL;
        CHECK_OK(lseg_create(s, 1, 0, 1, &w));
        REQUIRE(w);
        CHECK_OK(lseg_set_codec(w, codec));
        int64_t next = write_blocks(w, 0, 5);
        CHECK(next == 83);
        int64_t last;
        uint64_t bytes;
        CHECK_OK(lseg_finish(w, &last, &bytes));
        lseg_close(w);
        CHECK(last == 82);
        /* on disk: text blocks compressed, the noisy block (2) not */
        int counts[BLK_CODEC_MAX + 1] = {0};
        snprintf(path, sizeof path, "%s/1/0/data", root);
        CHECK(file_codecs(path, bytes, counts) == 5);
        if (codec == BLK_CODEC_NONE)
            CHECK(counts[0] == 5);
        else
            CHECK(counts[codec] == 4 && counts[0] == 1);
        fprintf(stderr, "  %s: %" PRIu64 " bytes\n", CODECS[codec], bytes);
        /* read all, and from the middle of a compressed block (index seek) */
        CHECK_OK(read_back(s, bytes, true, 0, last));
        CHECK_OK(read_back(s, bytes, true, 50, last));
        CHECK_OK(read_back(s, bytes, true, 61, 70));
        int64_t entries = 0;
        CHECK_OK(lseg_verify(s, 1, 0, true, bytes, last, NULL, NULL, &entries));
        CHECK(entries == 83);
        /* recovery of a completed segment reports it as it is */
        int64_t l2;
        uint64_t b2;
        CHECK_OK(lseg_recover(s, 1, 0, 2, NULL, &l2, &b2));
        CHECK(l2 == last && b2 == bytes);
        s->ops->close(s);
    }
}

/* A crash (no footer) while a compressed block was being written: its
 * prefix is a torn tail that recovery cuts; the acknowledged compressed
 * blocks before it read back. */
TEST(recovery_cuts_a_torn_compressed_tail)
{
    for (uint32_t codec = BLK_CODEC_ZSTD; codec <= BLK_CODEC_MAX; codec++) {
        char root[1024], path[1200];
        storage *s = fresh("torn", root, sizeof root);
        REQUIRE(s);
        lseg_w *w = NULL;
        CHECK_OK(lseg_create(s, 1, 0, 1, &w));
        REQUIRE(w);
        CHECK_OK(lseg_set_codec(w, codec));
        int64_t next = write_blocks(w, 0, 2);
        uint64_t end = lseg_bytes(w);
        lseg_close(w); /* the crash */
        /* the unacknowledged next block, compressed, cut in its records */
        static uint8_t raw[20 * 1024], blk[BLK_HEADER_SIZE + sizeof raw];
        size_t raw_len = 0;
        char buf[1024];
        for (int i = 0; i < 20; i++) {
            size_t n = payload(buf, sizeof buf, (int)next + i, false);
            raw_len += rec_encode(&(wp_payload){.data = buf, .len = n}, raw + raw_len);
        }
        blk_compressor *c = NULL;
        CHECK_OK(blk_compressor_new(codec, &c));
        REQUIRE(c);
        size_t z = blk_compress(c, raw, raw_len, blk + BLK_HEADER_SIZE, raw_len);
        blk_compressor_free(c);
        REQUIRE(z > 0);
        blk_header h = {.first_entry_id = next, .n_entries = 20, .codec = codec,
                        .raw_len = (uint32_t)raw_len, .records_len = (uint32_t)z,
                        .records_crc = crc32c(0, blk + BLK_HEADER_SIZE, z)};
        blk_header_encode(&h, blk);
        snprintf(path, sizeof path, "%s/1/0/data", root);
        int fd = open(path, O_WRONLY | O_APPEND);
        REQUIRE(fd >= 0);
        CHECK(write(fd, blk, BLK_HEADER_SIZE + z / 2) == (ssize_t)(BLK_HEADER_SIZE + z / 2));
        close(fd);
        /* the header and half its records: a scan finds it cut short */
        int64_t last;
        uint64_t bytes;
        CHECK_OK(lseg_recover(s, 1, 0, 2, NULL, &last, &bytes));
        CHECK(last == next - 1);
        CHECK(bytes == end + 2 * IDX_ENTRY_SIZE + FTR_SIZE);
        CHECK_OK(read_back(s, bytes, true, 0, last));
        CHECK_OK(lseg_verify(s, 1, 0, true, bytes, last, NULL, NULL, NULL));
        s->ops->close(s);
    }
}

/* Damage inside an acknowledged compressed block (below the LAC hint),
 * with its CRC made to match so that the decompressor meets it: corrupt,
 * never cut, never a crash. */
TEST(damaged_acknowledged_compressed_block_is_corrupt)
{
    for (uint32_t codec = BLK_CODEC_ZSTD; codec <= BLK_CODEC_MAX; codec++) {
        char root[1024], path[1200];
        storage *s = fresh("dmg", root, sizeof root);
        REQUIRE(s);
        lseg_w *w = NULL;
        CHECK_OK(lseg_create(s, 1, 0, 1, &w));
        REQUIRE(w);
        CHECK_OK(lseg_set_codec(w, codec));
        CHECK(write_blocks(w, 0, 2) == 40);
        uint64_t end = lseg_bytes(w);
        lseg_close(w);
        snprintf(path, sizeof path, "%s/1/0/data", root);
        int fd = open(path, O_RDWR);
        REQUIRE(fd >= 0);
        uint8_t hb[BLK_HEADER_SIZE];
        REQUIRE(pread(fd, hb, sizeof hb, SEG_HEADER_SIZE) == (ssize_t)sizeof hb);
        blk_header h;
        REQUIRE(blk_header_decode(hb, &h) == 0 && h.codec == codec);
        uint8_t *st = malloc(h.records_len);
        REQUIRE(st);
        REQUIRE(pread(fd, st, h.records_len, SEG_HEADER_SIZE + BLK_HEADER_SIZE) ==
                (ssize_t)h.records_len);
        for (uint32_t i = h.records_len / 3; i < h.records_len / 3 + 8; i++)
            st[i] ^= 0x5a;
        le_put32(hb + 24, crc32c(0, st, h.records_len));
        le_put32(hb + 36, crc32c(0, hb, 36));
        CHECK(pwrite(fd, hb, sizeof hb, SEG_HEADER_SIZE) == (ssize_t)sizeof hb);
        CHECK(pwrite(fd, st, h.records_len, SEG_HEADER_SIZE + BLK_HEADER_SIZE) ==
              (ssize_t)h.records_len);
        close(fd);
        free(st);
        int64_t last;
        uint64_t bytes;
        CHECK_RC(WP_ECORRUPT, lseg_recover(s, 1, 0, 2, NULL, &last, &bytes));
        CHECK(strstr(wp_errmsg(), "durable entry 0") != NULL);
        CHECK(read_back(s, 0, false, 0, 39) == WP_ECORRUPT);
        CHECK_RC(WP_ECORRUPT, lseg_verify(s, 1, 0, false, end, 39, NULL, NULL, NULL));
        s->ops->close(s);
    }
}

/* docs/format.md §10: the 207-byte segment of the worked example, as an
 * earlier version wrote it, reads with this reader. */
static const uint8_t golden_segment[] = {
    0x57, 0x50, 0x53, 0x45, 0x47, 0x4d, 0x4e, 0x54, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x86, 0xc1, 0x91, 0x0e,
    0x57, 0x50, 0x42, 0x4b, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x02, 0x00, 0x00, 0x00, 0x27, 0x00, 0x00, 0x00, 0x26, 0x84, 0xb8, 0xbf, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0xb6, 0xe8, 0x55, 0x66, 0x21, 0xe5, 0xf7, 0xd0, 0x09, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x68, 0x65, 0x6c, 0x6c, 0x6f, 0x6e, 0x9b, 0x0d, 0x9c, 0x0e, 0x00, 0x00,
    0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x6b, 0x76, 0x77, 0x70, 0x30,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x57,
    0x50, 0x46, 0x4f, 0x4f, 0x54, 0x45, 0x52, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01,
    0x00, 0x00, 0x00, 0x2b, 0xe3, 0x1a, 0x78, 0x7f, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xb2, 0x5a, 0x7e, 0x8f,
};

TEST(old_uncompressed_segment_reads)
{
    char root[1024], path[1200];
    storage *s = fresh("old", root, sizeof root);
    REQUIRE(s);
    /* create the segment's directory and fence through the backend, then
     * put the old bytes in place of its data */
    lseg_w *w = NULL;
    CHECK_OK(lseg_create(s, 1, 0, 1, &w));
    lseg_close(w);
    snprintf(path, sizeof path, "%s/1/0/data", root);
    int fd = open(path, O_WRONLY | O_TRUNC);
    REQUIRE(fd >= 0);
    CHECK(write(fd, golden_segment, sizeof golden_segment) == (ssize_t)sizeof golden_segment);
    close(fd);
    lseg_r *r = NULL;
    CHECK_OK(lseg_open_read(s, 1, 0, true, sizeof golden_segment, &r));
    REQUIRE(r);
    lseg_entry e;
    CHECK_OK(lseg_next(r, 1, &e));
    CHECK(e.entry_id == 0 && e.rec.len == 5 && memcmp(e.rec.data, "hello", 5) == 0);
    CHECK_OK(lseg_next(r, 1, &e));
    CHECK(e.entry_id == 1 && e.rec.len == 2 && memcmp(e.rec.data, "wp", 2) == 0 &&
          e.rec.n_props == 1);
    CHECK_RC(WP_EAGAIN, lseg_next(r, 1, &e));
    lseg_close_read(r);
    int64_t entries = 0, last;
    uint64_t bytes;
    CHECK_OK(lseg_verify(s, 1, 0, true, sizeof golden_segment, 1, NULL, NULL, &entries));
    CHECK(entries == 2);
    CHECK_OK(lseg_recover(s, 1, 0, 2, NULL, &last, &bytes));
    CHECK(last == 1 && bytes == sizeof golden_segment);
    s->ops->close(s);
}

/* ---- the public API --------------------------------------------------- */

static wp_client *open_codec(const char *dir, const char *codec)
{
    const char *kv[] = {"flush.compression", codec, "flush.max_bytes", "16KiB",
                        "segment.max_bytes", "128KiB", NULL};
    return test_client_open(dir, kv);
}

typedef struct {
    wp_reader *r;
    int want, got, bad;
} tailer;

static void *tail_main(void *arg)
{
    tailer *t = arg;
    wp_entry e;
    while (t->got < t->want) {
        int rc = wp_reader_next(t->r, 5000, &e);
        if (rc) {
            fprintf(stderr, "  tail: %s (%s)\n", wp_strerror(rc), wp_errmsg());
            t->bad++;
            break;
        }
        if (!payload_ok(e.data, e.len, t->got))
            t->bad++;
        t->got++;
    }
    return NULL;
}

/* Appends entries first..first+n-1 (every 10th noisy), async. */
static int append_range(wp_writer *w, int first, int n)
{
    char buf[1024];
    for (int i = first; i < first + n; i++) {
        size_t len = payload(buf, sizeof buf, i, i % 10 == 3);
        int rc = wp_writer_append_async(w, buf, len, NULL, NULL);
        if (rc)
            return rc;
    }
    return wp_writer_flush(w);
}

/* Reads the whole log from `from` and checks entries first..first+n-1. */
static int read_range(wp_log *log, wp_msg_id from, int first, int n)
{
    wp_reader *r;
    int rc = wp_reader_open(log, from, &r);
    if (rc)
        return rc;
    wp_entry e;
    int i = first;
    while ((rc = wp_reader_next(r, 200, &e)) == WP_OK) {
        if (!payload_ok(e.data, e.len, i)) {
            fprintf(stderr, "  entry %d: got '%.*s'\n", i, (int)(e.len < 20 ? e.len : 20),
                    (const char *)e.data);
            rc = WP_ECORRUPT;
            break;
        }
        i++;
    }
    wp_reader_close(r);
    if (rc == WP_ETIMEDOUT && i == first + n)
        return WP_OK;
    fprintf(stderr, "  read %d..: stopped at %d of %d (%s)\n", first, i, first + n,
            wp_strerror(rc));
    return rc == WP_ETIMEDOUT ? WP_ENOENT : rc;
}

/* Sums the bytes of a local log's segment files and counts blocks by codec. */
static int64_t log_disk(const char *dir, wp_log *log, int counts[BLK_CODEC_MAX + 1])
{
    wp_log_info li;
    wp_segment_info *segs = NULL;
    size_t n = 0;
    if (wp_log_stat(log, &li) || wp_log_segments(log, &segs, &n))
        return -1;
    int64_t sum = 0;
    for (size_t i = 0; i < n; i++) {
        char path[1400];
        snprintf(path, sizeof path, "%s/%" PRId64 "/%" PRId64 "/data", dir, li.log_id,
                 segs[i].segment_id);
        struct stat st;
        if (stat(path, &st) != 0 || file_codecs(path, (uint64_t)st.st_size, counts) < 0)
            sum = -1;
        else if (sum >= 0)
            sum += st.st_size;
    }
    free(segs);
    return sum;
}

/* A log written with each codec: a tailing reader in the process, rolled
 * segments, a second client's reader from the start and from the middle,
 * verify, and the bytes on disk. */
TEST(log_per_codec)
{
    enum { N = 3000 };
    int64_t disk_none = 0;
    for (int k = 0; k < 3; k++) {
        char tag[32];
        snprintf(tag, sizeof tag, "log-%s", CODECS[k]);
        const char *dir = test_tmpdir(tag);
        wp_client *c = open_codec(dir, CODECS[k]);
        REQUIRE(c);
        char got[16];
        wp_config *cfg;
        REQUIRE(wp_config_default(&cfg) == 0);
        CHECK_OK(wp_config_set(cfg, "flush.compression", CODECS[k]));
        CHECK_OK(wp_config_get(cfg, "flush.compression", got, sizeof got));
        CHECK(strcmp(got, CODECS[k]) == 0);
        wp_config_free(cfg);
        CHECK_OK(wp_log_create(c, "z"));
        wp_log *log = NULL;
        wp_writer *w = NULL;
        CHECK_OK(wp_log_open(c, "z", &log));
        REQUIRE(log);
        CHECK_OK(wp_writer_open(log, &w));
        REQUIRE(w);
        tailer t = {.want = N};
        CHECK_OK(wp_reader_open(log, WP_EARLIEST, &t.r));
        pthread_t tid;
        REQUIRE(pthread_create(&tid, NULL, tail_main, &t) == 0);
        CHECK_OK(append_range(w, 0, N));
        pthread_join(tid, NULL);
        CHECK(t.got == N && t.bad == 0);
        wp_reader_close(t.r);
        CHECK_OK(wp_writer_close(w));
        CHECK_OK(read_range(log, WP_EARLIEST, 0, N));
        int64_t checked = 0;
        CHECK_OK(wp_log_verify(log, NULL, NULL, &checked));
        CHECK(checked == N);
        if (!QUORUM_SKIPS("reads local segment files")) {
            int counts[BLK_CODEC_MAX + 1] = {0};
            int64_t disk = log_disk(dir, log, counts);
            fprintf(stderr, "  %s: %" PRId64 " bytes on disk; blocks none %d zstd %d lz4 %d\n",
                    CODECS[k], disk, counts[0], counts[1], counts[2]);
            CHECK(disk > 0);
            if (k == 0) {
                CHECK(counts[1] == 0 && counts[2] == 0 && disk > N * 100);
                disk_none = disk;
            } else {
                /* a tenth of the entries are 600 random bytes, a third of
                 * the bytes: the rest, log lines, compress several times */
                CHECK(counts[k] > 0 && counts[3 - k] == 0);
                CHECK(disk < disk_none * 6 / 10);
            }
        }
        wp_log_close(log);
        wp_client_close(c);
        /* a second client: from the start, and from an entry in the middle */
        c = open_codec(dir, "none");
        REQUIRE(c);
        CHECK_OK(wp_log_open(c, "z", &log));
        wp_reader *r = NULL;
        CHECK_OK(wp_reader_open(log, WP_EARLIEST, &r));
        wp_entry e;
        int i = 0;
        wp_msg_id mid = {-1, -1};
        while (wp_reader_next(r, 200, &e) == WP_OK && i < N / 2 + 1)
            if (i++ == N / 2)
                mid = e.id;
        wp_reader_close(r);
        CHECK(mid.segment_id > 0); /* it rolled */
        CHECK_OK(read_range(log, mid, N / 2, N - N / 2));
        wp_log_close(log);
        wp_client_close(c);
    }
}

/* Writers of one log with different codecs, and a crash-like reopen (a
 * writer that was never closed is fenced and its segment recovered): the
 * log reads as one. */
TEST(mixed_codecs_in_one_log)
{
    const char *dir = test_tmpdir("mixed");
    int n = 0;
    for (int k = 0; k < 4; k++) {
        wp_client *c = open_codec(dir, CODECS[k % 3]);
        REQUIRE(c);
        if (k == 0)
            CHECK_OK(wp_log_create(c, "m"));
        wp_log *log = NULL;
        wp_writer *w = NULL;
        CHECK_OK(wp_log_open(c, "m", &log));
        REQUIRE(log);
        CHECK_OK(wp_writer_open(log, &w));
        REQUIRE(w);
        CHECK_OK(append_range(w, n, 500));
        n += 500;
        if (k == 2) {
            /* a second writer fences this one (its segment stays active,
             * as after a crash) and recovers it */
            wp_writer *w2 = NULL;
            CHECK_OK(wp_writer_open(log, &w2));
            REQUIRE(w2);
            CHECK_RC(WP_EFENCED, wp_writer_append(w, "x", 1, NULL));
            wp_writer_close(w);
            w = w2;
            CHECK_OK(append_range(w, n, 100));
            n += 100;
        }
        CHECK_OK(wp_writer_close(w));
        CHECK_OK(read_range(log, WP_EARLIEST, 0, n));
        wp_log_close(log);
        wp_client_close(c);
    }
    wp_client *c = open_codec(dir, "none");
    REQUIRE(c);
    wp_log *log = NULL;
    CHECK_OK(wp_log_open(c, "m", &log));
    REQUIRE(log);
    int64_t checked = 0;
    CHECK_OK(wp_log_verify(log, NULL, NULL, &checked));
    CHECK(checked == n);
    if (!QUORUM_SKIPS("reads local segment files")) {
        int counts[BLK_CODEC_MAX + 1] = {0};
        CHECK(log_disk(dir, log, counts) > 0);
        CHECK(counts[0] > 0 && counts[1] > 0 && counts[2] > 0);
    }
    wp_log_close(log);
    wp_client_close(c);
}

TEST(config_values)
{
    wp_config *cfg;
    REQUIRE(wp_config_default(&cfg) == 0);
    char got[16];
    CHECK_OK(wp_config_get(cfg, "flush.compression", got, sizeof got));
    CHECK(strcmp(got, "none") == 0);
    CHECK_RC(WP_EINVAL, wp_config_set(cfg, "flush.compression", "gzip"));
    CHECK(strstr(wp_errmsg(), "flush.compression") != NULL);
    CHECK_RC(WP_EINVAL, wp_config_set(cfg, "flush.compression", "ZSTD"));
    setenv("WP_FLUSH__COMPRESSION", "lz4", 1);
    CHECK_OK(wp_config_apply_env(cfg));
    unsetenv("WP_FLUSH__COMPRESSION");
    CHECK_OK(wp_config_get(cfg, "flush.compression", got, sizeof got));
    CHECK(strcmp(got, "lz4") == 0);
    wp_config_free(cfg);
}

int main(void)
{
    if (!test_on_quorum()) {
        RUN(segment_round_trip_per_codec);
        RUN(recovery_cuts_a_torn_compressed_tail);
        RUN(damaged_acknowledged_compressed_block_is_corrupt);
        RUN(old_uncompressed_segment_reads);
        RUN(config_values);
    }
    RUN(log_per_codec);
    RUN(mixed_codecs_in_one_log);
    return test_done();
}
