/* test_compress.c — compressed blocks (docs/format.md §5.1, §5.2): round
 * trips per codec, incompressible records left alone, damaged compressed
 * bytes and headers (WP_ECORRUPT, never a crash), declared lengths that
 * are refused before anything is allocated, and the worked example. */
#include <stdint.h>
#include <zstd.h>

#include "base/limits.h"
#include "codec/codec.h"
#include "codec/le.h"
#include "test.h"

static uint64_t rng = 0x2545F4914F6CDD1Dull;
static uint64_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* n records into out (returns their length): log-like text when
 * `text`, random bytes otherwise. out has room for n * 300 bytes. */
static size_t make_records(uint8_t *out, uint32_t n, bool text)
{
    size_t off = 0;
    char line[256];
    static const char *k[] = {"trace"}, *v[] = {"abc123"};
    for (uint32_t i = 0; i < n; i++) {
        size_t len;
        if (text) {
            len = (size_t)snprintf(line, sizeof line,
                                   "2026-12-06T10:00:%02u.%03uZ INFO orders: order %u placed "
                                   "by user %u, total %u.%02u EUR\n",
                                   i % 60, (unsigned)(rnd() % 1000), i, (unsigned)(rnd() % 5000),
                                   (unsigned)(rnd() % 900), (unsigned)(rnd() % 100));
        } else {
            len = 64 + rnd() % 128;
            for (size_t j = 0; j < len; j++)
                line[j] = (char)rnd();
        }
        wp_payload p = {.data = line, .len = len};
        if (i % 5 == 2)
            p.n_props = 1, p.prop_keys = k, p.prop_values = v;
        off += rec_encode(&p, out + off);
    }
    return off;
}

/* A stored block at out (header + compressed records) of n text records
 * with codec; *raw gets the records. Returns the block's length, 0 if the
 * records did not compress. */
static size_t make_zblock(uint32_t codec, uint32_t n, uint8_t *out, uint8_t *raw, size_t *raw_len)
{
    *raw_len = make_records(raw, n, true);
    blk_compressor *c = NULL;
    if (blk_compressor_new(codec, &c))
        return 0;
    size_t z = blk_compress(c, raw, *raw_len, out + BLK_HEADER_SIZE, *raw_len);
    blk_compressor_free(c);
    if (!z)
        return 0;
    blk_header h = {.first_entry_id = 7, .n_entries = n, .codec = codec,
                    .raw_len = (uint32_t)*raw_len, .records_len = (uint32_t)z,
                    .records_crc = crc32c(0, out + BLK_HEADER_SIZE, z)};
    blk_header_encode(&h, out);
    return BLK_HEADER_SIZE + z;
}

static void recrc_header(uint8_t *b) { le_put32(b + 36, crc32c(0, b, 36)); }
static void recrc_stored(uint8_t *b)
{
    le_put32(b + 24, crc32c(0, b + BLK_HEADER_SIZE, le_get32(b + 20)));
    recrc_header(b);
}

/* Decodes and opens a block of len bytes whose decompressed records go to
 * an exact-size heap buffer (ASan catches a write past raw_len). */
static int open_block(const uint8_t *b, size_t len, uint8_t *want, size_t want_len)
{
    blk_header h;
    int rc = blk_header_decode(b, &h);
    if (rc)
        return rc;
    if (BLK_HEADER_SIZE + (size_t)h.records_len > len)
        return WP_EAGAIN;
    uint8_t *stored = malloc(h.records_len ? h.records_len : 1), *raw = NULL;
    size_t raw_cap = 0; /* grown to exactly raw_len (ASan sees any overrun) */
    if (!stored)
        abort();
    memcpy(stored, b + BLK_HEADER_SIZE, h.records_len);
    const uint8_t *rec = NULL;
    rc = blk_open_records(&h, stored, &raw, &raw_cap, &rec);
    if (rc == 0 && h.codec != BLK_CODEC_NONE && raw_cap != h.raw_len)
        rc = -1001;
    if (rc == 0 && want && (h.raw_len != want_len || memcmp(rec, want, want_len) != 0))
        rc = -1000;
    free(stored);
    free(raw);
    return rc;
}

TEST(round_trip_each_codec)
{
    static uint8_t raw[200 * 300], blk[BLK_HEADER_SIZE + sizeof raw];
    for (uint32_t codec = BLK_CODEC_ZSTD; codec <= BLK_CODEC_MAX; codec++) {
        for (uint32_t n = 5; n <= 200; n += 65) {
            size_t raw_len, len = make_zblock(codec, n, blk, raw, &raw_len);
            REQUIRE(len > 0);
            CHECK(len - BLK_HEADER_SIZE < raw_len);
            blk_header h;
            CHECK_OK(blk_header_decode(blk, &h));
            CHECK(h.codec == codec && h.raw_len == raw_len && h.n_entries == n &&
                  h.first_entry_id == 7 && h.flags == 0 && le_get32(blk + 28) == codec);
            CHECK_OK(open_block(blk, len, raw, raw_len));
            /* blk_check_records is for uncompressed blocks only */
            CHECK_RC(WP_ECORRUPT, blk_check_records(&h, blk + BLK_HEADER_SIZE));
            CHECK(strstr(wp_errmsg(), blk_codec_name(codec)) != NULL);
            /* the header re-encodes to the same bytes */
            uint8_t again[BLK_HEADER_SIZE];
            blk_header_encode(&h, again);
            CHECK(memcmp(again, blk, BLK_HEADER_SIZE) == 0);
            CHECK(blk_find_header(blk, len) == 0);
        }
        if (codec == BLK_CODEC_ZSTD) /* text compresses: well below half */
            CHECK(make_zblock(codec, 200, blk, raw, &(size_t){0}) < sizeof raw / 2);
    }
    /* An uncompressed block opens in place; raw may be NULL. */
    size_t raw_len = make_records(raw, 10, true);
    memcpy(blk + BLK_HEADER_SIZE, raw, raw_len);
    blk_header h = {.first_entry_id = 0, .n_entries = 10, .records_len = (uint32_t)raw_len,
                    .records_crc = crc32c(0, raw, raw_len)};
    blk_header_encode(&h, blk);
    CHECK(le_get32(blk + 32) == 0 && le_get32(blk + 28) == 0);
    blk_header d;
    const uint8_t *rec = NULL;
    CHECK_OK(blk_header_decode(blk, &d));
    CHECK(d.codec == BLK_CODEC_NONE && d.raw_len == raw_len);
    CHECK_OK(blk_open_records(&d, blk + BLK_HEADER_SIZE, NULL, NULL, &rec));
    CHECK(rec == blk + BLK_HEADER_SIZE);
    CHECK_OK(blk_check_records(&d, blk + BLK_HEADER_SIZE));
}

TEST(incompressible_records_are_not_compressed)
{
    static uint8_t raw[100 * 300], text[100 * 300], out[sizeof raw], noise[16384];
    for (size_t i = 0; i < sizeof noise; i++)
        noise[i] = (uint8_t)rnd();
    size_t raw_len = rec_encode(&(wp_payload){.data = noise, .len = sizeof noise}, raw);
    for (uint32_t codec = BLK_CODEC_ZSTD; codec <= BLK_CODEC_MAX; codec++) {
        blk_compressor *c = NULL;
        CHECK_OK(blk_compressor_new(codec, &c));
        REQUIRE(c);
        CHECK(blk_compressor_codec(c) == codec);
        CHECK(blk_compress(c, raw, raw_len, out, sizeof out) == 0);
        /* and a compressible input that cannot get below cap */
        size_t tl = make_records(text, 100, true);
        size_t z = blk_compress(c, text, tl, out, sizeof out);
        CHECK(z > 0 && z < tl);
        CHECK(blk_compress(c, text, tl, out, z / 2) == 0); /* cap: at most z / 2 */
        CHECK(blk_compress(c, text, 1, out, sizeof out) == 0);
        blk_compressor_free(c);
    }
    blk_compressor *c = NULL;
    CHECK_RC(WP_EINVAL, blk_compressor_new(BLK_CODEC_NONE, &c));
    CHECK_RC(WP_EINVAL, blk_compressor_new(3, &c));
    blk_compressor_free(NULL);
    CHECK(strcmp(blk_codec_name(0), "none") == 0 && strcmp(blk_codec_name(1), "zstd") == 0 &&
          strcmp(blk_codec_name(2), "lz4") == 0 && strcmp(blk_codec_name(9), "?") == 0);
}

/* Every bit of the stored bytes flipped, with records_crc recomputed so
 * that the decompressor runs on the damage: WP_ECORRUPT, or (a flip that
 * changes only the encoding, e.g. a match offset to equal bytes) the same
 * records. Without the recomputed CRC, the CRC catches it first. And
 * every truncation. */
TEST(corrupt_compressed_bytes_are_ecorrupt)
{
    static uint8_t raw[40 * 300], blk[BLK_HEADER_SIZE + sizeof raw];
    for (uint32_t codec = BLK_CODEC_ZSTD; codec <= BLK_CODEC_MAX; codec++) {
        size_t raw_len, len = make_zblock(codec, 40, blk, raw, &raw_len);
        REQUIRE(len > 0);
        int undetected = 0, crc_first = 0, same = 0;
        for (size_t i = BLK_HEADER_SIZE * 8; i < len * 8; i++) {
            blk[i / 8] ^= (uint8_t)(1 << (i % 8));
            if (open_block(blk, len, NULL, 0) == WP_ECORRUPT &&
                strstr(wp_errmsg(), "records crc mismatch"))
                crc_first++;
            recrc_stored(blk);
            int rc = open_block(blk, len, raw, raw_len);
            if (rc != WP_ECORRUPT && rc != WP_OK)
                undetected++;
            same += rc == WP_OK;
            blk[i / 8] ^= (uint8_t)(1 << (i % 8));
            recrc_stored(blk);
        }
        CHECK(undetected == 0);
        CHECK(crc_first == (int)((len - BLK_HEADER_SIZE) * 8));
        fprintf(stderr, "  %s: %d of %zu flips decode to the same records\n",
                blk_codec_name(codec), same, (len - BLK_HEADER_SIZE) * 8);
        CHECK_OK(open_block(blk, len, raw, raw_len));
        /* cut short (CRC and header fixed): never a valid block */
        uint32_t z = (uint32_t)(len - BLK_HEADER_SIZE);
        for (uint32_t cut = 1; cut < z; cut++) {
            le_put32(blk + 20, cut);
            recrc_stored(blk);
            if (open_block(blk, len, NULL, 0) != WP_ECORRUPT)
                undetected++;
        }
        CHECK(undetected == 0);
        CHECK(undetected == 0);
        /* raw_len off by one either way: the data no longer fits it */
        le_put32(blk + 20, z);
        recrc_stored(blk);
        le_put32(blk + 32, (uint32_t)raw_len - 1);
        recrc_header(blk);
        CHECK_RC(WP_ECORRUPT, open_block(blk, len, NULL, 0));
        le_put32(blk + 32, (uint32_t)raw_len + 1);
        recrc_header(blk);
        CHECK_RC(WP_ECORRUPT, open_block(blk, len, NULL, 0));
        le_put32(blk + 32, (uint32_t)raw_len);
        recrc_header(blk);
        CHECK_OK(open_block(blk, len, raw, raw_len));
        /* decompresses fine, but the records do not walk as n_entries */
        le_put32(blk + 16, 39);
        recrc_header(blk);
        CHECK_RC(WP_ECORRUPT, open_block(blk, len, NULL, 0));
        CHECK(strstr(wp_errmsg(), "left after") != NULL);
        le_put32(blk + 16, 40);
        recrc_header(blk);
    }
}

/* zstd: exactly one frame spanning the stored bytes, its declared content
 * size equal to raw_len. */
TEST(zstd_frame_rules)
{
    static uint8_t raw[50 * 300], blk[2 * sizeof raw];
    size_t raw_len, len = make_zblock(BLK_CODEC_ZSTD, 50, blk, raw, &raw_len);
    REQUIRE(len > 0);
    size_t z = len - BLK_HEADER_SIZE;
    /* a second frame after the first (a valid one, of other records) */
    size_t z2 = ZSTD_compress(blk + len, sizeof blk - len, raw, 100, 1);
    REQUIRE(!ZSTD_isError(z2));
    le_put32(blk + 20, (uint32_t)(z + z2));
    le_put32(blk + 32, (uint32_t)(raw_len + 100));
    recrc_stored(blk);
    CHECK_RC(WP_ECORRUPT, open_block(blk, len + z2, NULL, 0));
    CHECK(strstr(wp_errmsg(), "not one zstd frame") != NULL);
    /* a trailing garbage byte */
    blk[len] = 0x5a;
    le_put32(blk + 20, (uint32_t)z + 1);
    le_put32(blk + 32, (uint32_t)raw_len);
    recrc_stored(blk);
    CHECK_RC(WP_ECORRUPT, open_block(blk, len + 1, NULL, 0));
    /* a frame without its content size (streamed) decodes by raw_len */
    ZSTD_CCtx *cc = ZSTD_createCCtx();
    REQUIRE(cc);
    ZSTD_CCtx_setParameter(cc, ZSTD_c_contentSizeFlag, 0);
    ZSTD_CCtx_setParameter(cc, ZSTD_c_checksumFlag, 1);
    size_t z3 = ZSTD_compress2(cc, blk + BLK_HEADER_SIZE, sizeof blk - BLK_HEADER_SIZE, raw,
                               raw_len);
    REQUIRE(!ZSTD_isError(z3));
    CHECK(ZSTD_getFrameContentSize(blk + BLK_HEADER_SIZE, z3) == ZSTD_CONTENTSIZE_UNKNOWN);
    le_put32(blk + 20, (uint32_t)z3);
    recrc_stored(blk);
    CHECK_OK(open_block(blk, BLK_HEADER_SIZE + z3, raw, raw_len));
    /* its checksum is verified */
    blk[BLK_HEADER_SIZE + z3 - 1] ^= 1;
    recrc_stored(blk);
    CHECK_RC(WP_ECORRUPT, open_block(blk, BLK_HEADER_SIZE + z3, NULL, 0));
    /* and without a content size, a raw_len too small stops the decoder */
    blk[BLK_HEADER_SIZE + z3 - 1] ^= 1;
    le_put32(blk + 32, (uint32_t)raw_len - 10);
    recrc_stored(blk);
    CHECK_RC(WP_ECORRUPT, open_block(blk, BLK_HEADER_SIZE + z3, NULL, 0));
    ZSTD_freeCCtx(cc);
}

/* Decompression bombs: a declared raw_len above WP_BLOCK_BYTES_MAX is
 * refused by the header decoder, before a reader allocates; a frame that
 * holds more than raw_len stops at raw_len (the buffer is exact: ASan). */
TEST(huge_declared_sizes_are_refused)
{
    static uint8_t raw[20 * 300], blk[BLK_HEADER_SIZE + sizeof raw];
    size_t raw_len, len = make_zblock(BLK_CODEC_LZ4, 20, blk, raw, &raw_len);
    REQUIRE(len > 0);
    blk_header h;
    uint32_t huge[] = {(uint32_t)WP_BLOCK_BYTES_MAX + 1, UINT32_MAX, 0x80000000u};
    for (size_t i = 0; i < sizeof huge / sizeof huge[0]; i++)
        for (uint32_t codec = BLK_CODEC_ZSTD; codec <= BLK_CODEC_MAX; codec++) {
            le_put32(blk + 28, codec);
            le_put32(blk + 32, huge[i]);
            recrc_header(blk);
            CHECK_RC(WP_ECORRUPT, blk_header_decode(blk, &h));
            CHECK(strstr(wp_errmsg(), "raw_len above the block size limit") != NULL);
        }
    /* the limit itself is a valid declaration (what a reader may allocate) */
    le_put32(blk + 32, (uint32_t)WP_BLOCK_BYTES_MAX);
    recrc_header(blk);
    CHECK_OK(blk_header_decode(blk, &h));
    CHECK(h.raw_len == WP_BLOCK_BYTES_MAX);

    /* A real bomb: 64 MiB of one byte is a few KiB of zstd. Declared as
     * what it is, it decodes; declared smaller, it stops there. */
    size_t big = 64 * WP_MiB;
    uint8_t *zeros = calloc(1, big), *frame = malloc(ZSTD_compressBound(big));
    REQUIRE(zeros && frame);
    size_t fz = ZSTD_compress(frame, ZSTD_compressBound(big), zeros, big, 1);
    REQUIRE(!ZSTD_isError(fz) && fz < 64 * 1024);
    free(zeros);
    h = (blk_header){.first_entry_id = 0, .n_entries = 1, .codec = BLK_CODEC_ZSTD,
                     .raw_len = 4096, .records_len = (uint32_t)fz,
                     .records_crc = crc32c(0, frame, fz)};
    uint8_t *out = malloc(4096);
    REQUIRE(out);
    CHECK_RC(WP_ECORRUPT, blk_decompress(&h, frame, out));
    CHECK(strstr(wp_errmsg(), "declares 67108864 bytes") != NULL);
    const uint8_t *rec;
    size_t cap = 4096;
    CHECK_RC(WP_ECORRUPT, blk_open_records(&h, frame, &out, &cap, &rec));
    CHECK(cap == 4096);
    /* a damaged CRC: refused before the buffer grows to raw_len */
    uint8_t *none = NULL;
    size_t none_cap = 0;
    h.raw_len = WP_BLOCK_BYTES_MAX;
    h.records_crc ^= 1;
    CHECK_RC(WP_ECORRUPT, blk_open_records(&h, frame, &none, &none_cap, &rec));
    CHECK(none == NULL && none_cap == 0 && strstr(wp_errmsg(), "records crc mismatch") != NULL);
    free(out);
    free(frame);

    /* an LZ4 block that would produce more than raw_len */
    le_put32(blk + 28, BLK_CODEC_LZ4);
    le_put32(blk + 32, (uint32_t)raw_len - 1);
    recrc_header(blk);
    CHECK_RC(WP_ECORRUPT, open_block(blk, len, NULL, 0));
    CHECK(strstr(wp_errmsg(), "lz4") != NULL);
}

TEST(header_rules_for_codecs)
{
    static uint8_t raw[20 * 300], blk[BLK_HEADER_SIZE + sizeof raw];
    size_t raw_len, len = make_zblock(BLK_CODEC_ZSTD, 20, blk, raw, &raw_len);
    REQUIRE(len > 0);
    uint8_t b[BLK_HEADER_SIZE];
    blk_header h;
    uint32_t z = (uint32_t)(len - BLK_HEADER_SIZE);
    struct {
        int off;
        uint32_t val;
        const char *msg;
    } cases[] = {
        {28, 3, "unknown codec"},
        {28, 15, "unknown codec"},
        {28, 0xfffffff3u, "unknown codec"},
        {20, 0, "compressed records_len"},
        {20, (uint32_t)raw_len, "compressed records_len"},
        {20, (uint32_t)raw_len + 1, "compressed records_len"},
        {32, 20 * 12 - 1, "raw_len too small"},
        {32, 0, "raw_len too small"},
        {20, (uint32_t)WP_BLOCK_BYTES_MAX + 1, "records_len above"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        memcpy(b, blk, sizeof b);
        le_put32(b + cases[i].off, cases[i].val);
        recrc_header(b);
        CHECK_RC(WP_ECORRUPT, blk_header_decode(b, &h));
        if (!strstr(wp_errmsg(), cases[i].msg)) {
            fprintf(stderr, "  case %zu: '%s' lacks '%s'\n", i, wp_errmsg(), cases[i].msg);
            CHECK(0);
        }
        CHECK(blk_find_header(b, sizeof b) == -1);
    }
    /* uncompressed: raw_len must stay 0 (the old reserved field) */
    memcpy(b, blk, sizeof b);
    le_put32(b + 28, 0);
    le_put32(b + 20, (uint32_t)raw_len);
    recrc_header(b);
    CHECK_RC(WP_ECORRUPT, blk_header_decode(b, &h));
    CHECK(strstr(wp_errmsg(), "reserved") != NULL);
    le_put32(b + 32, 0);
    recrc_header(b);
    CHECK_OK(blk_header_decode(b, &h));
    CHECK(h.codec == 0 && h.raw_len == raw_len);
    /* the other flag bits pass through with a codec */
    memcpy(b, blk, sizeof b);
    le_put32(b + 28, 0xabc00001u);
    recrc_header(b);
    CHECK_OK(blk_header_decode(b, &h));
    CHECK(h.codec == BLK_CODEC_ZSTD && h.flags == 0xabc00000u && h.records_len == z);
}

/* docs/format.md §5.2, byte for byte. */
static const uint8_t golden[] = {
    0x57, 0x50, 0x42, 0x4b, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x02, 0x00, 0x00, 0x00, 0x29, 0x00, 0x00, 0x00, 0xed, 0x7d, 0x8a, 0x77, 0x02, 0x00, 0x00, 0x00,
    0x3a, 0x00, 0x00, 0x00, 0xcb, 0x81, 0xe5, 0xdb, 0x62, 0x2a, 0x6a, 0x60, 0xc5, 0x15, 0x00, 0x01,
    0x00, 0xff, 0x06, 0x47, 0x45, 0x54, 0x20, 0x2f, 0x6f, 0x72, 0x64, 0x65, 0x72, 0x73, 0x2f, 0x31,
    0x20, 0x32, 0x30, 0x30, 0xde, 0xda, 0x53, 0x8d, 0x1d, 0x00, 0x01, 0x50, 0x32, 0x20, 0x32, 0x30,
    0x30,
};
static const uint8_t golden_records[] = {
    0x2a, 0x6a, 0x60, 0xc5, 0x15, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x47, 0x45, 0x54, 0x20,
    0x2f, 0x6f, 0x72, 0x64, 0x65, 0x72, 0x73, 0x2f, 0x31, 0x20, 0x32, 0x30, 0x30, 0xde, 0xda, 0x53,
    0x8d, 0x15, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x47, 0x45, 0x54, 0x20, 0x2f, 0x6f, 0x72,
    0x64, 0x65, 0x72, 0x73, 0x2f, 0x32, 0x20, 0x32, 0x30, 0x30,
};

TEST(golden_compressed_block)
{
    /* The records of the example, from the record encoder. */
    uint8_t rec[64];
    wp_payload e0 = {.data = "GET /orders/1 200", .len = 17};
    wp_payload e1 = {.data = "GET /orders/2 200", .len = 17};
    size_t off = rec_encode(&e0, rec);
    off += rec_encode(&e1, rec + off);
    REQUIRE(off == sizeof golden_records);
    CHECK(memcmp(rec, golden_records, off) == 0);

    /* The documented values decode from the golden bytes. */
    blk_header h;
    CHECK_OK(blk_header_decode(golden, &h));
    CHECK(h.first_entry_id == 0 && h.n_entries == 2 && h.records_len == 41 &&
          h.records_crc == 0x778a7dedu && h.codec == BLK_CODEC_LZ4 && h.raw_len == 58 &&
          h.flags == 0);
    CHECK(crc32c(0, golden, 36) == 0xdbe581cbu);
    CHECK(crc32c(0, golden_records, 58) != 0 && le_get32(golden_records) == 0xc5606a2au &&
          le_get32(golden_records + 29) == 0x8d53dadeu);
    CHECK_OK(open_block(golden, sizeof golden, rec, off));
    uint8_t *raw = NULL;
    size_t raw_cap = 0;
    const uint8_t *r = NULL;
    CHECK_OK(blk_open_records(&h, golden + BLK_HEADER_SIZE, &raw, &raw_cap, &r));
    REQUIRE(r == raw && raw_cap == 58);
    rec_view v;
    size_t used;
    CHECK_OK(rec_decode(r, 58, &v, &used));
    CHECK(used == 29 && v.len == 17 && memcmp(v.data, "GET /orders/1 200", 17) == 0);
    CHECK_OK(rec_decode(r + 29, 29, &v, &used));
    CHECK(used == 29 && v.len == 17 && memcmp(v.data, "GET /orders/2 200", 17) == 0);
    free(raw);

    /* The writer's path produces these bytes: lz4's compressor (1.9.x; the
     * decoding above is the format's contract, this pins the writer). */
    uint8_t out[sizeof golden];
    blk_compressor *c = NULL;
    CHECK_OK(blk_compressor_new(BLK_CODEC_LZ4, &c));
    REQUIRE(c);
    size_t z = blk_compress(c, rec, off, out + BLK_HEADER_SIZE, off - 1);
    blk_compressor_free(c);
    CHECK(z == 41);
    blk_header e = {.first_entry_id = 0, .n_entries = 2, .codec = BLK_CODEC_LZ4, .raw_len = 58,
                    .records_len = (uint32_t)z, .records_crc = crc32c(0, out + BLK_HEADER_SIZE, z)};
    blk_header_encode(&e, out);
    CHECK(z == 41 && memcmp(out, golden, sizeof golden) == 0);
    /* zstd does not shrink records this small: stored uncompressed */
    CHECK_OK(blk_compressor_new(BLK_CODEC_ZSTD, &c));
    CHECK(blk_compress(c, rec, off, out, sizeof out) == 0);
    blk_compressor_free(c);
}

int main(void)
{
    RUN(round_trip_each_codec);
    RUN(incompressible_records_are_not_compressed);
    RUN(corrupt_compressed_bytes_are_ecorrupt);
    RUN(zstd_frame_rules);
    RUN(huge_declared_sizes_are_refused);
    RUN(header_rules_for_codecs);
    RUN(golden_compressed_block);
    return test_done();
}
