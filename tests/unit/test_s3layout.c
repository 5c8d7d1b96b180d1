/* test_s3layout.c — the footer object codec (docs/format.md §11.1):
 * round trips, every rule the decoder enforces, and the exact length.
 * With WP_S3LAYOUT_SEEDS=DIR it also writes fuzz seeds there. */
#include "test.h"

#include "codec/codec.h"
#include "codec/le.h"
#include "storage/s3_layout.h"

static s3_layout_obj objs3[] = {{1, 1, 48}, {2, 2, 4096}, {5, 9, 1000}};
static s3_layout_obj gone2[] = {{3, 3, 0}, {4, 4, 0}};

static s3_layout sample(void)
{
    return (s3_layout){.generation = 1, .bytes = 48 + 4096 + 1000, .log_id = 7, .seg_id = 3,
                       .objs = objs3, .n_objs = 3, .garbage = gone2, .n_garbage = 2};
}

static uint8_t *encode(const s3_layout *l, size_t *len)
{
    *len = (size_t)s3_layout_size(l);
    uint8_t *b = malloc(*len);
    s3_layout_encode(l, b);
    return b;
}

/* Recomputes both crcs after a change. */
static void refix(uint8_t *b, size_t len)
{
    le_put32(b + 60, crc32c(0, b, 60));
    le_put32(b + len - 4, crc32c(0, b + S3_LAYOUT_HEADER, len - S3_LAYOUT_HEADER - 4));
}

TEST(roundtrip)
{
    s3_layout l = sample(), d;
    size_t len;
    CHECK_OK(s3_layout_check(&l));
    uint8_t *b = encode(&l, &len);
    CHECK(len == 64 + 3 * 24 + 2 * 16 + 4);
    CHECK(memcmp(b, "WPS3FOOT", 8) == 0);
    CHECK_OK(s3_layout_decode(b, len, 7, 3, &d));
    CHECK(d.generation == 1 && d.bytes == l.bytes && d.n_objs == 3 && d.n_garbage == 2);
    CHECK(d.objs[2].first == 5 && d.objs[2].last == 9 && d.objs[2].size == 1000);
    CHECK(d.garbage[1].first == 4 && d.garbage[1].last == 4);
    s3_layout_free(&d);
    /* another segment's key */
    CHECK_RC(WP_ECORRUPT, s3_layout_decode(b, len, 7, 4, &d));
    CHECK(d.objs == NULL);
    /* length must be exact */
    CHECK_RC(WP_ECORRUPT, s3_layout_decode(b, len - 1, 7, 3, &d));
    uint8_t *longer = calloc(1, len + 1);
    memcpy(longer, b, len);
    CHECK_RC(WP_ECORRUPT, s3_layout_decode(longer, len + 1, 7, 3, &d));
    free(longer);
    free(b);
}

TEST(crcs_and_header)
{
    s3_layout l = sample(), d;
    size_t len;
    uint8_t *b = encode(&l, &len);
    b[30] ^= 1; /* bytes: header crc */
    CHECK_RC(WP_ECORRUPT, s3_layout_decode(b, len, 7, 3, &d));
    b[30] ^= 1;
    b[S3_LAYOUT_HEADER + 5] ^= 1; /* entries crc */
    CHECK_RC(WP_ECORRUPT, s3_layout_decode(b, len, 7, 3, &d));
    b[S3_LAYOUT_HEADER + 5] ^= 1;
    CHECK_OK(s3_layout_decode(b, len, 7, 3, &d));
    s3_layout_free(&d);
    b[0] = 'X'; /* magic */
    refix(b, len);
    CHECK_RC(WP_ECORRUPT, s3_layout_decode(b, len, 7, 3, &d));
    b[0] = 'W';
    le_put16(b + 8, 2); /* version */
    refix(b, len);
    CHECK_RC(WP_ECORRUPT, s3_layout_decode(b, len, 7, 3, &d));
    le_put16(b + 8, 1);
    b[56] = 1; /* reserved */
    refix(b, len);
    CHECK_RC(WP_ECORRUPT, s3_layout_decode(b, len, 7, 3, &d));
    b[56] = 0;
    refix(b, len);
    CHECK_OK(s3_layout_decode(b, len, 7, 3, &d));
    s3_layout_free(&d);
    CHECK_RC(WP_ECORRUPT, s3_layout_decode(b, 10, 7, 3, &d));
    free(b);
}

/* Each broken table is refused by check and, encoded, by decode. */
static void refused(s3_layout *l)
{
    CHECK_RC(WP_ECORRUPT, s3_layout_check(l));
    size_t len;
    uint8_t *b = encode(l, &len);
    s3_layout d;
    CHECK_RC(WP_ECORRUPT, s3_layout_decode(b, len, l->log_id, l->seg_id, &d));
    CHECK(d.objs == NULL && d.garbage == NULL);
    free(b);
}

TEST(rules)
{
    s3_layout_obj o[3];
    s3_layout l = sample();
    l.objs = o;
    memcpy(o, objs3, sizeof o);
    o[1].size = 4095; /* sizes do not add up */
    refused(&l);
    memcpy(o, objs3, sizeof o);
    o[2].first = 2; /* overlaps the previous */
    refused(&l);
    memcpy(o, objs3, sizeof o);
    o[2].first = 10; /* first > last */
    refused(&l);
    memcpy(o, objs3, sizeof o);
    o[0].size = 0; /* empty object */
    o[1].size += 48;
    refused(&l);
    memcpy(o, objs3, sizeof o);
    o[2].last = S3_LAYOUT_ENTRIES_MAX; /* past the numbers a segment can have */
    refused(&l);
    memcpy(o, objs3, sizeof o);
    l.n_objs = 0;
    l.bytes = 0;
    refused(&l);
    l = sample();
    s3_layout_obj g = {5, 4, 0}; /* garbage first > last */
    l.garbage = &g;
    l.n_garbage = 1;
    refused(&l);
    l = sample();
    l.seg_id = -1;
    CHECK_RC(WP_ECORRUPT, s3_layout_check(&l));
}

/* Counts claimed larger than the object: the length check refuses them
 * before anything is allocated. */
TEST(huge_counts)
{
    s3_layout l = sample(), d;
    size_t len;
    uint8_t *b = encode(&l, &len);
    le_put32(b + 12, 0xffffffffu);
    refix(b, len);
    CHECK_RC(WP_ECORRUPT, s3_layout_decode(b, len, 7, 3, &d));
    le_put32(b + 12, 3);
    le_put32(b + 16, (uint32_t)S3_LAYOUT_ENTRIES_MAX);
    refix(b, len);
    CHECK_RC(WP_ECORRUPT, s3_layout_decode(b, len, 7, 3, &d));
    free(b);
}

static void write_seeds(const char *dir)
{
    s3_layout l = sample();
    s3_layout_obj one = {1, 1, 4200};
    s3_layout g0 = {.generation = 0, .bytes = 4200, .log_id = 1, .seg_id = 0, .objs = &one,
                    .n_objs = 1};
    const s3_layout *all[] = {&l, &g0};
    for (int i = 0; i < 2; i++) {
        char path[512];
        size_t len;
        uint8_t *b = encode(all[i], &len);
        snprintf(path, sizeof path, "%s/seed%d", dir, i);
        FILE *f = fopen(path, "wb");
        if (f) {
            fwrite(b, 1, len, f);
            fclose(f);
        }
        free(b);
    }
}

int main(void)
{
    RUN(roundtrip);
    RUN(crcs_and_header);
    RUN(rules);
    RUN(huge_counts);
    const char *seeds = getenv("WP_S3LAYOUT_SEEDS");
    if (seeds)
        write_seeds(seeds);
    return test_done();
}
