/* test_codec.c — codec round trips, every corruption case, CRC32C vectors
 * and hardware == software (docs/format.md). */
#include <stdint.h>

#include "base/limits.h"
#include "codec/codec.h"
#include "test.h"

/* Not in codec.h: the two CRC32C implementations (crc32c.c). */
uint32_t crc32c_sw(uint32_t crc, const void *buf, size_t n);
uint32_t crc32c_sse42(uint32_t crc, const void *buf, size_t n);

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint64_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v, p[1] = (uint8_t)(v >> 8); }
static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* Bit-at-a-time reference CRC32C, independent of crc32c.c. */
static uint32_t crc_ref(uint32_t crc, const uint8_t *p, size_t n)
{
    crc = ~crc;
    while (n--) {
        crc ^= *p++;
        for (int k = 0; k < 8; k++)
            crc = (crc >> 1) ^ (0x82F63B78u & (0u - (crc & 1)));
    }
    return ~crc;
}

/* ---- CRC32C ------------------------------------------------------------ */

TEST(crc_known_vectors)
{
    uint8_t b[32];
    CHECK(crc32c(0, "123456789", 9) == 0xE3069283u);
    CHECK(crc32c_sw(0, "123456789", 9) == 0xE3069283u);
    CHECK(crc32c_sse42(0, "123456789", 9) == 0xE3069283u);
    CHECK(crc32c(0, "", 0) == 0);
    /* RFC 3720 B.4 */
    memset(b, 0, sizeof b);
    CHECK(crc32c(0, b, 32) == 0x8A9136AAu);
    memset(b, 0xff, sizeof b);
    CHECK(crc32c(0, b, 32) == 0x62A8AB43u);
    for (int i = 0; i < 32; i++)
        b[i] = (uint8_t)i;
    CHECK(crc32c(0, b, 32) == 0x46DD794Eu);
    for (int i = 0; i < 32; i++)
        b[i] = (uint8_t)(31 - i);
    CHECK(crc32c(0, b, 32) == 0x113FDB5Cu);
    CHECK(crc32c(crc32c(0, "1234", 4), "56789", 5) == 0xE3069283u);
    fprintf(stderr, "  crc32c_hw() = %d\n", (int)crc32c_hw());
}

TEST(crc_hw_equals_sw_random)
{
    /* lengths past 3 x 8192: the long three-way stretches of crc32c.c too */
    enum { MAX = 2 * 3 * 8192 + 4096 + 64 };
    uint8_t *buf = malloc(MAX);
    REQUIRE(buf);
    for (size_t i = 0; i < MAX; i++)
        buf[i] = (uint8_t)rnd();
    int bad = 0;
    for (int iter = 0; iter < 3000; iter++) {
        size_t align = rnd() % 16,
               n = rnd() % (iter < 200 ? 40 : iter < 2700 ? 4096 : MAX - 64);
        uint32_t seed = (iter & 1) ? (uint32_t)rnd() : 0;
        const uint8_t *p = buf + align;
        uint32_t r = crc_ref(seed, p, n);
        if (crc32c_sw(seed, p, n) != r || crc32c(seed, p, n) != r ||
            (crc32c_hw() && crc32c_sse42(seed, p, n) != r))
            bad++;
        size_t cut = n ? rnd() % (n + 1) : 0;
        if (crc32c(crc32c(seed, p, cut), p + cut, n - cut) != r)
            bad++;
        /* Joined from the two halves' own CRCs (seed 0: from the start). */
        uint32_t whole = crc_ref(0, p, n);
        if (crc32c_combine(crc32c(0, p, cut), crc32c(0, p + cut, n - cut), n - cut) != whole)
            bad++;
    }
    CHECK(bad == 0);
    CHECK(crc32c_combine(0x12345678, 0, 0) == 0x12345678);
    free(buf);
}

/* ---- segment header ---------------------------------------------------- */

/* Rewrites the trailing crc of a structure after a deliberate edit. */
static void recrc(uint8_t *p, size_t crc_off) { put32(p + crc_off, crc32c(0, p, crc_off)); }

TEST(seg_header_round_trip)
{
    seg_header h = {.log_id = 7, .segment_id = 3, .epoch = 42, .flags = 0x5a}, d;
    uint8_t b[SEG_HEADER_SIZE];
    seg_header_encode(&h, b);
    CHECK(memcmp(b, "WPSEGMNT", 8) == 0 && b[8] == 1 && b[9] == 0);
    CHECK_OK(seg_header_decode(b, &d));
    CHECK(d.log_id == 7 && d.segment_id == 3 && d.epoch == 42 && d.flags == 0x5a);
    h = (seg_header){.log_id = INT64_MAX, .segment_id = 0, .epoch = INT64_MAX};
    seg_header_encode(&h, b);
    CHECK_OK(seg_header_decode(b, &d));
    CHECK(d.log_id == INT64_MAX && d.segment_id == 0 && d.epoch == INT64_MAX);
}

TEST(seg_header_every_bit_flip)
{
    seg_header h = {.log_id = 1, .segment_id = 2, .epoch = 3}, d;
    uint8_t b[SEG_HEADER_SIZE];
    seg_header_encode(&h, b);
    int undetected = 0;
    for (int i = 0; i < SEG_HEADER_SIZE * 8; i++) {
        b[i / 8] ^= (uint8_t)(1 << (i % 8));
        if (seg_header_decode(b, &d) != WP_ECORRUPT)
            undetected++;
        b[i / 8] ^= (uint8_t)(1 << (i % 8));
    }
    CHECK(undetected == 0);
    CHECK_OK(seg_header_decode(b, &d));
}

TEST(seg_header_bad_fields)
{
    seg_header h = {.log_id = 1, .segment_id = 2, .epoch = 3}, d;
    uint8_t good[SEG_HEADER_SIZE], b[SEG_HEADER_SIZE];
    seg_header_encode(&h, good);
    struct {
        int off, val, width;
        const char *msg;
    } cases[] = {
        {0, 'X', 1, "magic"},  {8, 2, 2, "version"},     {8, 0, 2, "version"},
        {10, 1, 2, "reserved"}, {40, 1, 4, "reserved"}, {23, 0x80, 1, "negative"},
        {31, 0xff, 1, "negative"}, {39, 0x80, 1, "negative"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        memcpy(b, good, sizeof b);
        if (cases[i].width == 1)
            b[cases[i].off] = (uint8_t)cases[i].val;
        else if (cases[i].width == 2)
            put16(b + cases[i].off, (uint16_t)cases[i].val);
        else
            put32(b + cases[i].off, (uint32_t)cases[i].val);
        recrc(b, 44);
        CHECK_RC(WP_ECORRUPT, seg_header_decode(b, &d));
        CHECK(strstr(wp_errmsg(), cases[i].msg) != NULL);
    }
}

/* ---- records ----------------------------------------------------------- */

static uint8_t *encode(const wp_payload *p, size_t *n)
{
    *n = rec_size(p);
    uint8_t *b = malloc(*n + 1);
    if (b && rec_encode(p, b) != *n) {
        free(b);
        return NULL;
    }
    return b;
}

static const char *k3[] = {"topic", "k", "empty"};
static const char *v3[] = {"orders", "v=1", ""};

TEST(rec_round_trip)
{
    wp_payload p = {.data = "hello", .len = 5, .n_props = 3, .prop_keys = k3, .prop_values = v3};
    CHECK_OK(rec_check(&p, 1024));
    size_t n, used = 0;
    uint8_t *b = encode(&p, &n);
    REQUIRE(b);
    CHECK(n == 8 + 4 + (6 + 5 + 6) + (6 + 1 + 3) + (6 + 5 + 0) + 5);
    rec_view r;
    CHECK_OK(rec_decode(b, n, &r, &used));
    CHECK(used == n);
    CHECK(r.len == 5 && memcmp(r.data, "hello", 5) == 0 && r.n_props == 3);
    size_t off = 0, kl, vl, i = 0;
    const uint8_t *k, *v;
    while (rec_prop_next(&r, &off, &k, &kl, &v, &vl)) {
        CHECK(i < 3);
        if (i >= 3)
            break;
        CHECK(kl == strlen(k3[i]) && memcmp(k, k3[i], kl) == 0);
        CHECK(vl == strlen(v3[i]) && memcmp(v, v3[i], vl) == 0);
        i++;
    }
    CHECK(i == 3 && off == r.props_len);
    /* decoding from a longer buffer consumes only the record */
    uint8_t *big = malloc(n + 100);
    REQUIRE(big);
    memcpy(big, b, n);
    memset(big + n, 0xab, 100);
    CHECK_OK(rec_decode(big, n + 100, &r, &used));
    CHECK(used == n);
    free(big);
    free(b);
}

TEST(rec_empty_payload_and_no_props)
{
    wp_payload p = {0};
    CHECK_OK(rec_check(&p, 0));
    size_t n, used;
    uint8_t *b = encode(&p, &n);
    REQUIRE(b);
    CHECK(n == 12);
    rec_view r;
    CHECK_OK(rec_decode(b, n, &r, &used));
    CHECK(used == 12 && r.len == 0 && r.n_props == 0 && r.props_len == 0);
    size_t off = 0, kl, vl;
    const uint8_t *k, *v;
    CHECK(rec_prop_next(&r, &off, &k, &kl, &v, &vl) == 0);
    free(b);
}

TEST(rec_every_bit_flip_and_truncation)
{
    wp_payload p = {.data = "payload!", .len = 8, .n_props = 2, .prop_keys = k3, .prop_values = v3};
    size_t n, used;
    uint8_t *b = encode(&p, &n);
    REQUIRE(b);
    rec_view r;
    int undetected = 0;
    for (size_t i = 0; i < n * 8; i++) {
        b[i / 8] ^= (uint8_t)(1 << (i % 8));
        if (rec_decode(b, n, &r, &used) != WP_ECORRUPT)
            undetected++;
        b[i / 8] ^= (uint8_t)(1 << (i % 8));
    }
    CHECK(undetected == 0);
    for (size_t len = 0; len < n; len++)
        if (rec_decode(b, len, &r, &used) != WP_ECORRUPT)
            undetected++;
    CHECK(undetected == 0);
    CHECK_OK(rec_decode(b, n, &r, &used));
    /* rec_decode_checked (records of a block already checked): the same
     * view, no CRC, every bound. */
    rec_view c;
    size_t cu;
    CHECK_OK(rec_decode_checked(b, n, &c, &cu));
    CHECK(cu == used && c.len == r.len && c.data == r.data && c.n_props == r.n_props);
    b[n - 1] ^= 1; /* payload byte: only the CRC sees it */
    CHECK_RC(WP_ECORRUPT, rec_decode(b, n, &r, &used));
    CHECK_OK(rec_decode_checked(b, n, &c, &cu));
    for (size_t len = 0; len < n; len++)
        if (rec_decode_checked(b, len, &c, &cu) != WP_ECORRUPT)
            undetected++;
    CHECK(undetected == 0);
    free(b);
}

/* Builds a record around a raw body with a correct crc; returns its size. */
static size_t raw_record(uint8_t *out, const uint8_t *body, uint32_t body_len)
{
    put32(out + 4, body_len);
    memcpy(out + 8, body, body_len);
    put32(out, crc32c(0, out + 4, (size_t)body_len + 4));
    return 8 + (size_t)body_len;
}

TEST(rec_bad_contents_with_valid_crc)
{
    static const struct {
        uint8_t body[24];
        uint32_t len;
        const char *msg;
    } cases[] = {
        {{0}, 3, "body_len"},
        {{0, 0, 1, 0}, 4, "flags"},
        {{0x01, 0x04}, 4, "properties"},        /* n_props 1025 */
        {{1, 0}, 4, "property header"},        /* 1 prop, no bytes */
        {{1, 0, 0, 0, 0, 0, 0, 0, 0, 0}, 10, "empty"},      /* klen 0 */
        {{1, 0, 0, 0, 1, 0, 0, 0, 0, 0}, 10, "past"},       /* klen 1 missing */
        {{1, 0, 0, 0, 1, 0, 1, 0, 0, 0, 'k'}, 11, "past"},  /* vlen 1 missing */
        {{1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0}, 11, "NUL"},     /* key "\0" */
        {{1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 'k', 0}, 12, "NUL"},
        {{1, 0, 0, 0, 1, 0, 2, 0, 0, 0, 'k', 'v', 0}, 13, "NUL"},
        {{1, 0, 0, 0, 1, 0, 2, 0, 0, 0, 'k', 0, 'v'}, 13, "NUL"},
        {{1, 0, 0, 0, 1, 0, 0xff, 0xff, 0xff, 0x7f, 'k'}, 11, "too long"},
        {{2, 0, 0, 0, 1, 0, 0, 0, 0, 0, 'k'}, 11, "property 1"}, /* 2nd prop missing */
    };
    uint8_t rec[64];
    rec_view r;
    size_t used;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t n = raw_record(rec, cases[i].body, cases[i].len);
        CHECK_RC(WP_ECORRUPT, rec_decode(rec, n, &r, &used));
        if (!strstr(wp_errmsg(), cases[i].msg)) {
            fprintf(stderr, "  case %zu: message '%s' lacks '%s'\n", i, wp_errmsg(), cases[i].msg);
            CHECK(0);
        }
    }
    /* a good one built the same way, to show the helper is right */
    static const uint8_t ok[] = {1, 0, 0, 0, 1, 0, 1, 0, 0, 0, 'k', 'v', 'P'};
    size_t n = raw_record(rec, ok, sizeof ok);
    CHECK_OK(rec_decode(rec, n, &r, &used));
    CHECK(r.len == 1 && r.data[0] == 'P' && r.n_props == 1 && r.props_len == 8);
    /* body_len far beyond any bound, and beyond what is available */
    put32(rec + 4, 0xffffffffu);
    CHECK_RC(WP_ECORRUPT, rec_decode(rec, n, &r, &used));
    CHECK(strstr(wp_errmsg(), "body_len") != NULL);
    put32(rec + 4, 1000);
    CHECK_RC(WP_ECORRUPT, rec_decode(rec, n, &r, &used));
    CHECK(strstr(wp_errmsg(), "truncated") != NULL);
}

TEST(rec_check_bounds)
{
    wp_payload p = {.data = "x", .len = 1};
    CHECK_RC(WP_EINVAL, rec_check(NULL, 10));
    CHECK_OK(rec_check(&p, 1));
    CHECK_RC(WP_ETOOBIG, rec_check(&p, 0));
    CHECK(strstr(wp_errmsg(), "payload") != NULL);
    p.len = (size_t)WP_ENTRY_BYTES_MAX + 1;
    CHECK_RC(WP_ETOOBIG, rec_check(&p, SIZE_MAX));
    p = (wp_payload){.data = NULL, .len = 3};
    CHECK_RC(WP_EINVAL, rec_check(&p, 10));
    CHECK(strstr(wp_errmsg(), "NULL") != NULL);
    p.len = 0;
    CHECK_OK(rec_check(&p, 10));

    p = (wp_payload){.n_props = 1, .prop_keys = NULL, .prop_values = v3};
    CHECK_RC(WP_EINVAL, rec_check(&p, 10));
    CHECK(strstr(wp_errmsg(), "key array") != NULL);
    p = (wp_payload){.n_props = 1, .prop_keys = k3, .prop_values = NULL};
    CHECK_RC(WP_EINVAL, rec_check(&p, 10));
    CHECK(strstr(wp_errmsg(), "value array") != NULL);
    const char *nk[] = {"a", NULL}, *nv[] = {"b", "c"};
    p = (wp_payload){.n_props = 2, .prop_keys = nk, .prop_values = nv};
    CHECK_RC(WP_EINVAL, rec_check(&p, 10));
    CHECK(strstr(wp_errmsg(), "property 1 has a NULL key") != NULL);
    nk[1] = "d", nv[0] = NULL;
    CHECK_RC(WP_EINVAL, rec_check(&p, 10));
    CHECK(strstr(wp_errmsg(), "property 0 has a NULL value") != NULL);
    nv[0] = "b", nk[1] = "";
    CHECK_RC(WP_EINVAL, rec_check(&p, 10));
    CHECK(strstr(wp_errmsg(), "empty key") != NULL);
    nk[1] = "d";
    CHECK_OK(rec_check(&p, 10));

    const char *many_k[WP_PROPS_MAX + 1], *many_v[WP_PROPS_MAX + 1];
    for (int i = 0; i <= WP_PROPS_MAX; i++)
        many_k[i] = "k", many_v[i] = "v";
    p = (wp_payload){.n_props = WP_PROPS_MAX, .prop_keys = many_k, .prop_values = many_v};
    CHECK_OK(rec_check(&p, 0));
    p.n_props++;
    CHECK_RC(WP_ETOOBIG, rec_check(&p, 0));
    CHECK(strstr(wp_errmsg(), "properties") != NULL);
}

TEST(rec_check_string_bounds)
{
    size_t big = (size_t)WP_PROP_VALUE_MAX + 2;
    char *s = malloc(big);
    REQUIRE(s);
    const char *k[2], *v[2];
    wp_payload p = {.n_props = 1, .prop_keys = k, .prop_values = v};
    /* key of exactly WP_PROP_KEY_MAX is fine, one more is too big */
    memset(s, 'k', WP_PROP_KEY_MAX + 1);
    s[WP_PROP_KEY_MAX + 1] = '\0';
    k[0] = s + 1, v[0] = "";
    CHECK_OK(rec_check(&p, 0));
    k[0] = s;
    CHECK_RC(WP_ETOOBIG, rec_check(&p, 0));
    CHECK(strstr(wp_errmsg(), "key") != NULL);
    /* value of WP_PROP_VALUE_MAX + 1 */
    memset(s, 'v', big - 1);
    s[big - 1] = '\0';
    k[0] = "k", v[0] = s;
    CHECK_RC(WP_ETOOBIG, rec_check(&p, 0));
    CHECK(strstr(wp_errmsg(), "value") != NULL);
    /* property area of exactly WP_PROPS_BYTES_MAX: key 1 + value MAX-7 */
    const char *exact = s + (big - 1) - (size_t)(WP_PROPS_BYTES_MAX - 7);
    v[0] = exact;
    CHECK_OK(rec_check(&p, 0));
    size_t n, used;
    uint8_t *b = encode(&p, &n);
    REQUIRE(b);
    rec_view r;
    CHECK_OK(rec_decode(b, n, &r, &used));
    CHECK(r.props_len == (size_t)WP_PROPS_BYTES_MAX && r.len == 0);
    free(b);
    /* one byte more in the same property */
    v[0] = exact - 1;
    CHECK_RC(WP_ETOOBIG, rec_check(&p, 0));
    CHECK(strstr(wp_errmsg(), "properties take more") != NULL);
    v[0] = exact;
    /* ... and more, across two properties */
    p.n_props = 2;
    k[1] = "x", v[1] = "";
    CHECK_RC(WP_ETOOBIG, rec_check(&p, 0));
    CHECK(strstr(wp_errmsg(), "properties take more") != NULL);
    free(s);
}

TEST(rec_decode_size_limits)
{
    /* a property area of WP_PROPS_BYTES_MAX + 1 bytes (vlen itself in bounds) */
    uint32_t vlen = (uint32_t)(WP_PROPS_BYTES_MAX - 6);
    size_t body_len = 4 + 6 + 1 + (size_t)vlen;
    uint8_t *rec = malloc(8 + body_len), *body = rec + 8;
    REQUIRE(rec);
    body[0] = 1, body[1] = 0, body[2] = 0, body[3] = 0;
    body[4] = 1, body[5] = 0;
    put32(body + 6, vlen);
    body[10] = 'k';
    memset(body + 11, 'v', vlen);
    put32(rec + 4, (uint32_t)body_len);
    put32(rec, crc32c(0, rec + 4, body_len + 4));
    rec_view r;
    size_t used;
    CHECK_RC(WP_ECORRUPT, rec_decode(rec, 8 + body_len, &r, &used));
    CHECK(strstr(wp_errmsg(), "size limit") != NULL);
    /* one byte less is fine */
    put32(body + 6, vlen - 1);
    put32(rec + 4, (uint32_t)body_len - 1);
    put32(rec, crc32c(0, rec + 4, body_len + 3));
    CHECK_OK(rec_decode(rec, 8 + body_len - 1, &r, &used));
    CHECK(r.props_len == (size_t)WP_PROPS_BYTES_MAX && r.len == 0);
    free(rec);

    /* a payload of WP_ENTRY_BYTES_MAX + 1 bytes */
    body_len = 4 + (size_t)WP_ENTRY_BYTES_MAX + 1;
    rec = calloc(1, 8 + body_len);
    REQUIRE(rec);
    put32(rec + 4, (uint32_t)body_len);
    put32(rec, crc32c(0, rec + 4, body_len + 4));
    CHECK_RC(WP_ECORRUPT, rec_decode(rec, 8 + body_len, &r, &used));
    CHECK(strstr(wp_errmsg(), "payload") != NULL);
    put32(rec + 4, (uint32_t)body_len - 1);
    put32(rec, crc32c(0, rec + 4, body_len + 3));
    CHECK_OK(rec_decode(rec, 8 + body_len, &r, &used));
    CHECK(r.len == (size_t)WP_ENTRY_BYTES_MAX && used == 8 + body_len - 1);
    free(rec);
}

/* ---- blocks ------------------------------------------------------------ */

/* Encodes n records (varied sizes) into a fresh block: header + records. */
static uint8_t *make_block(int64_t first, uint32_t n, size_t *len, blk_header *hout)
{
    size_t cap = BLK_HEADER_SIZE + n * (size_t)(12 + 64 + 40);
    uint8_t *b = calloc(1, cap), payload[64];
    if (!b)
        return NULL;
    size_t off = BLK_HEADER_SIZE;
    for (uint32_t i = 0; i < n; i++) {
        for (size_t j = 0; j < sizeof payload; j++)
            payload[j] = (uint8_t)(i * 31 + j);
        wp_payload p = {.data = payload, .len = (i * 7) % 65};
        if (i % 3 == 1)
            p.n_props = 2, p.prop_keys = k3, p.prop_values = v3;
        off += rec_encode(&p, b + off);
    }
    blk_header h = {.first_entry_id = first, .n_entries = n,
                    .records_len = (uint32_t)(off - BLK_HEADER_SIZE), .flags = 0};
    h.records_crc = crc32c(0, b + BLK_HEADER_SIZE, h.records_len);
    blk_header_encode(&h, b);
    *len = off;
    if (hout)
        *hout = h;
    return b;
}

TEST(blk_round_trip)
{
    size_t len;
    blk_header h, d;
    uint8_t *b = make_block(100, 9, &len, &h);
    REQUIRE(b);
    CHECK(memcmp(b, "WPBK", 4) == 0);
    CHECK_OK(blk_header_decode(b, &d));
    CHECK(d.first_entry_id == 100 && d.n_entries == 9 && d.records_len == len - 40 &&
          d.records_crc == h.records_crc && d.flags == 0);
    CHECK_OK(blk_check_records(&d, b + BLK_HEADER_SIZE));
    /* walk it like a reader */
    size_t off = BLK_HEADER_SIZE, used;
    rec_view r;
    for (uint32_t i = 0; i < 9; i++) {
        CHECK_OK(rec_decode(b + off, len - off, &r, &used));
        CHECK(r.len == (i * 7) % 65 && r.n_props == (i % 3 == 1 ? 2u : 0u));
        off += used;
    }
    CHECK(off == len);
    h.flags = 0xdeadbee0; /* bits 4..31 pass through; 0..3 are the codec */
    blk_header_encode(&h, b);
    CHECK_OK(blk_header_decode(b, &d));
    CHECK(d.flags == 0xdeadbee0 && d.codec == BLK_CODEC_NONE);
    free(b);
}

TEST(blk_every_bit_flip)
{
    size_t len;
    blk_header d;
    uint8_t *b = make_block(5, 4, &len, NULL);
    REQUIRE(b);
    int undetected = 0;
    for (size_t i = 0; i < len * 8; i++) {
        b[i / 8] ^= (uint8_t)(1 << (i % 8));
        if (blk_header_decode(b, &d) == 0 && blk_check_records(&d, b + BLK_HEADER_SIZE) == 0)
            undetected++;
        if (i < BLK_HEADER_SIZE * 8 && blk_header_decode(b, &d) != WP_ECORRUPT)
            undetected++;
        b[i / 8] ^= (uint8_t)(1 << (i % 8));
    }
    CHECK(undetected == 0);
    CHECK_OK(blk_header_decode(b, &d));
    CHECK_OK(blk_check_records(&d, b + BLK_HEADER_SIZE));
    free(b);
}

TEST(blk_header_bad_fields)
{
    size_t len;
    uint8_t *good = make_block(0, 2, &len, NULL), b[BLK_HEADER_SIZE];
    REQUIRE(good);
    blk_header d;
    struct {
        int off, width;
        uint64_t val;
        const char *msg;
    } cases[] = {
        {0, 1, 'w', "magic"},
        {4, 2, 0, "version"},
        {4, 2, 2, "version"},
        {6, 2, 1, "reserved"},
        {32, 4, 1, "reserved"},
        {8, 8, UINT64_MAX, "negative"},
        {8, 8, (uint64_t)INT64_MAX - 1, "overflow"},
        {16, 4, 0, "n_entries"},
        {16, 4, WP_BLOCK_ENTRIES_MAX + 1, "n_entries"},
        {20, 4, (uint64_t)WP_BLOCK_BYTES_MAX + 1, "records_len"},
        {20, 4, 23, "records_len too small"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        memcpy(b, good, sizeof b);
        if (cases[i].width == 1)
            b[cases[i].off] = (uint8_t)cases[i].val;
        else if (cases[i].width == 2)
            put16(b + cases[i].off, (uint16_t)cases[i].val);
        else if (cases[i].width == 4)
            put32(b + cases[i].off, (uint32_t)cases[i].val);
        else
            put64(b + cases[i].off, cases[i].val);
        recrc(b, 36);
        CHECK_RC(WP_ECORRUPT, blk_header_decode(b, &d));
        if (!strstr(wp_errmsg(), cases[i].msg)) {
            fprintf(stderr, "  case %zu: message '%s' lacks '%s'\n", i, wp_errmsg(), cases[i].msg);
            CHECK(0);
        }
    }
    /* boundary values that are fine */
    memcpy(b, good, sizeof b);
    put32(b + 20, 24);
    put64(b + 8, (uint64_t)INT64_MAX - 2);
    recrc(b, 36);
    CHECK_OK(blk_header_decode(b, &d));
    free(good);
}

TEST(blk_records_count_and_length_mismatch)
{
    size_t len;
    blk_header h;
    uint8_t *b = make_block(0, 3, &len, &h);
    REQUIRE(b);
    blk_header x = h;
    x.n_entries = 4; /* claims one more record than present */
    CHECK_RC(WP_ECORRUPT, blk_check_records(&x, b + BLK_HEADER_SIZE));
    x.n_entries = 2; /* leaves the third record as trailing bytes */
    CHECK_RC(WP_ECORRUPT, blk_check_records(&x, b + BLK_HEADER_SIZE));
    CHECK(strstr(wp_errmsg(), "left after") != NULL);
    /* a shorter records_len cuts the last record; crc redone to match */
    x = h;
    x.records_len -= 1;
    x.records_crc = crc32c(0, b + BLK_HEADER_SIZE, x.records_len);
    CHECK_RC(WP_ECORRUPT, blk_check_records(&x, b + BLK_HEADER_SIZE));
    CHECK(strstr(wp_errmsg(), "record 2") != NULL);
    /* a broken record inside an area whose crc matches */
    b[BLK_HEADER_SIZE] ^= 1;
    x = h;
    x.records_crc = crc32c(0, b + BLK_HEADER_SIZE, x.records_len);
    CHECK_RC(WP_ECORRUPT, blk_check_records(&x, b + BLK_HEADER_SIZE));
    CHECK(strstr(wp_errmsg(), "record 0") != NULL);
    b[BLK_HEADER_SIZE] ^= 1;
    CHECK_OK(blk_check_records(&h, b + BLK_HEADER_SIZE));
    free(b);
}

TEST(blk_find_header_cases)
{
    size_t len;
    uint8_t *blk = make_block(7, 2, &len, NULL);
    REQUIRE(blk);
    uint8_t buf[512];
    CHECK(blk_find_header(buf, 0) == -1);
    CHECK(blk_find_header(blk, len) == 0);
    CHECK(blk_find_header(blk, BLK_HEADER_SIZE) == 0);
    CHECK(blk_find_header(blk, BLK_HEADER_SIZE - 1) == -1);
    CHECK(blk_find_header(blk + 1, len - 1) == -1);
    /* decoys: "WPBK" with garbage after it, and a header with a bad crc */
    memset(buf, 0, sizeof buf);
    memcpy(buf + 3, "WPBKWPBK", 8);
    memcpy(buf + 50, blk, BLK_HEADER_SIZE);
    buf[50 + 20] ^= 1;
    memcpy(buf + 137, blk, BLK_HEADER_SIZE);
    memcpy(buf + 300, blk, BLK_HEADER_SIZE);
    CHECK(blk_find_header(buf, sizeof buf) == 137);
    CHECK(blk_find_header(buf, 137 + BLK_HEADER_SIZE) == 137);
    CHECK(blk_find_header(buf, 137 + BLK_HEADER_SIZE - 1) == -1);
    CHECK(blk_find_header(buf + 138, sizeof buf - 138) == 300 - 138);
    for (size_t i = 0; i + 4 <= sizeof buf; i += 4)
        memcpy(buf + i, "WPBK", 4);
    CHECK(blk_find_header(buf, sizeof buf) == -1);
    free(blk);
}

/* ---- index + footer ---------------------------------------------------- */

TEST(ftr_round_trip)
{
    idx_entry e[3] = {{48, 0}, {200, 10}, {1000, 25}}, d[3];
    uint8_t ib[3 * IDX_ENTRY_SIZE], fb[FTR_SIZE];
    idx_encode(e, 3, ib);
    seg_footer f = {.n_blocks = 3, .index_offset = 5000, .last_entry_id = 40,
                    .index_crc = crc32c(0, ib, sizeof ib), .flags = 9},
               g;
    ftr_encode(&f, fb);
    CHECK(memcmp(fb, "WPFOOTER", 8) == 0);
    CHECK_OK(ftr_decode(fb, &g));
    CHECK(g.n_blocks == 3 && g.index_offset == 5000 && g.last_entry_id == 40 &&
          g.index_crc == f.index_crc && g.flags == 9);
    CHECK_OK(idx_decode(ib, &g, d));
    CHECK(memcmp(d, e, sizeof e) == 0);
    /* empty segment */
    f = (seg_footer){.n_blocks = 0, .index_offset = SEG_HEADER_SIZE, .last_entry_id = -1,
                     .index_crc = crc32c(0, NULL, 0)};
    ftr_encode(&f, fb);
    CHECK_OK(ftr_decode(fb, &g));
    CHECK(g.n_blocks == 0 && g.last_entry_id == -1 && g.index_offset == 48);
    CHECK_OK(idx_decode(ib, &g, d));
}

TEST(ftr_every_bit_flip)
{
    seg_footer f = {.n_blocks = 1, .index_offset = 100, .last_entry_id = 3}, g;
    uint8_t fb[FTR_SIZE];
    ftr_encode(&f, fb);
    int undetected = 0;
    for (int i = 0; i < FTR_SIZE * 8; i++) {
        fb[i / 8] ^= (uint8_t)(1 << (i % 8));
        if (ftr_decode(fb, &g) != WP_ECORRUPT)
            undetected++;
        fb[i / 8] ^= (uint8_t)(1 << (i % 8));
    }
    CHECK(undetected == 0);
    CHECK_OK(ftr_decode(fb, &g));
}

TEST(ftr_bad_fields)
{
    seg_footer f = {.n_blocks = 1, .index_offset = 100, .last_entry_id = 3}, g;
    uint8_t good[FTR_SIZE], b[FTR_SIZE];
    ftr_encode(&f, good);
    struct {
        int off, width;
        uint64_t val;
        const char *msg;
    } cases[] = {
        {7, 1, 'r', "magic"},
        {8, 2, 2, "version"},
        {10, 2, 1, "reserved"},
        {16, 4, WP_SEGMENT_BLOCKS_MAX + 1, "n_blocks"},
        {24, 8, 47, "index_offset"},
        {24, 8, (uint64_t)WP_SEGMENT_BYTES_MAX + 1, "index_offset"},
        {32, 8, (uint64_t)-2, "below -1"},
        {32, 8, (uint64_t)INT64_MIN, "below -1"},
        {32, 8, (uint64_t)-1, "emptiness"},
        {16, 4, 0, "emptiness"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        memcpy(b, good, sizeof b);
        if (cases[i].width == 1)
            b[cases[i].off] = (uint8_t)cases[i].val;
        else if (cases[i].width == 2)
            put16(b + cases[i].off, (uint16_t)cases[i].val);
        else if (cases[i].width == 4)
            put32(b + cases[i].off, (uint32_t)cases[i].val);
        else
            put64(b + cases[i].off, cases[i].val);
        recrc(b, 60);
        CHECK_RC(WP_ECORRUPT, ftr_decode(b, &g));
        if (!strstr(wp_errmsg(), cases[i].msg)) {
            fprintf(stderr, "  case %zu: message '%s' lacks '%s'\n", i, wp_errmsg(), cases[i].msg);
            CHECK(0);
        }
    }
    for (int i = 40; i < 60; i++) {
        memcpy(b, good, sizeof b);
        b[i] = 0x10;
        recrc(b, 60);
        CHECK_RC(WP_ECORRUPT, ftr_decode(b, &g));
    }
    memcpy(b, good, sizeof b);
    put64(b + 24, (uint64_t)WP_SEGMENT_BYTES_MAX);
    recrc(b, 60);
    CHECK_OK(ftr_decode(b, &g));
}

/* Encodes entries, fixes the footer's crc, runs idx_decode. */
static int idx_try(const idx_entry *e, uint32_t n, uint64_t index_offset, int64_t last)
{
    uint8_t ib[8 * IDX_ENTRY_SIZE];
    idx_entry out[8];
    idx_encode(e, n, ib);
    seg_footer f = {.n_blocks = n, .index_offset = index_offset, .last_entry_id = last,
                    .index_crc = crc32c(0, ib, (size_t)n * IDX_ENTRY_SIZE)};
    return idx_decode(ib, &f, out);
}

TEST(idx_bad_entries)
{
    idx_entry ok[3] = {{48, 0}, {100, 5}, {200, 9}};
    CHECK_OK(idx_try(ok, 3, 300, 9));
    CHECK_OK(idx_try(ok, 3, 240, 100));
    CHECK_RC(WP_ECORRUPT, idx_try(ok, 3, 239, 9));       /* header past index_offset */
    CHECK_RC(WP_ECORRUPT, idx_try(ok, 3, 200, 9));       /* offset == index_offset */
    CHECK_RC(WP_ECORRUPT, idx_try(ok, 3, 300, 8));       /* last block after last id */
    CHECK(strstr(wp_errmsg(), "last_entry_id") != NULL);
    idx_entry e[3];
    memcpy(e, ok, sizeof e);
    e[0].offset = 47;
    CHECK_RC(WP_ECORRUPT, idx_try(e, 3, 300, 9));
    CHECK(strstr(wp_errmsg(), "segment header") != NULL);
    memcpy(e, ok, sizeof e);
    e[1].offset = 48;
    CHECK_RC(WP_ECORRUPT, idx_try(e, 3, 300, 9));
    e[1].offset = 30; /* decreasing */
    CHECK_RC(WP_ECORRUPT, idx_try(e, 3, 300, 9));
    e[1].offset = 87; /* closer than a block header */
    CHECK_RC(WP_ECORRUPT, idx_try(e, 3, 300, 9));
    e[1].offset = 88;
    CHECK_OK(idx_try(e, 3, 300, 9));
    memcpy(e, ok, sizeof e);
    e[2].first_entry_id = 5;
    CHECK_RC(WP_ECORRUPT, idx_try(e, 3, 300, 9));
    CHECK(strstr(wp_errmsg(), "first_entry_ids") != NULL);
    e[0].first_entry_id = -1;
    CHECK_RC(WP_ECORRUPT, idx_try(e, 1, 300, 9));
    CHECK(strstr(wp_errmsg(), "negative") != NULL);
    /* index crc mismatch */
    uint8_t ib[3 * IDX_ENTRY_SIZE];
    idx_entry out[3];
    idx_encode(ok, 3, ib);
    seg_footer f = {.n_blocks = 3, .index_offset = 300, .last_entry_id = 9,
                    .index_crc = crc32c(0, ib, sizeof ib)};
    for (size_t i = 0; i < sizeof ib * 8; i++) {
        ib[i / 8] ^= (uint8_t)(1 << (i % 8));
        CHECK_RC(WP_ECORRUPT, idx_decode(ib, &f, out));
        ib[i / 8] ^= (uint8_t)(1 << (i % 8));
    }
    CHECK_OK(idx_decode(ib, &f, out));
}

/* ---- a whole segment and the torn-tail rule ---------------------------- */

TEST(segment_layout_and_torn_tail)
{
    uint8_t *seg = calloc(1, 8192);
    REQUIRE(seg);
    seg_header sh = {.log_id = 1, .segment_id = 0, .epoch = 1};
    seg_header_encode(&sh, seg);
    size_t off = SEG_HEADER_SIZE, blen[3], boff[3];
    idx_entry ix[3];
    int64_t next = 0;
    for (int k = 0; k < 3; k++) {
        blk_header h;
        uint8_t *b = make_block(next, (uint32_t)(k + 2), &blen[k], &h);
        REQUIRE(b);
        memcpy(seg + off, b, blen[k]);
        free(b);
        boff[k] = off;
        ix[k] = (idx_entry){off, next};
        next += h.n_entries;
        off += blen[k];
    }
    /* scanning an intact active segment finds every block */
    size_t pos = SEG_HEADER_SIZE;
    int blocks = 0;
    int64_t want = 0;
    blk_header h;
    while (pos + BLK_HEADER_SIZE <= off && blk_header_decode(seg + pos, &h) == 0 &&
           h.records_len <= off - pos - BLK_HEADER_SIZE &&
           blk_check_records(&h, seg + pos + BLK_HEADER_SIZE) == 0) {
        CHECK(h.first_entry_id == want);
        want += h.n_entries;
        pos += BLK_HEADER_SIZE + h.records_len;
        blocks++;
    }
    CHECK(blocks == 3 && pos == off);
    /* every cut inside the last block is a torn tail: no header after X */
    int wrong = 0;
    for (size_t end = boff[2] + 1; end < off; end++)
        if (blk_find_header(seg + boff[2] + 1, end - boff[2] - 1) != -1)
            wrong++;
    CHECK(wrong == 0);
    /* damage in block 1 with block 2 behind it is corruption */
    seg[boff[1] + BLK_HEADER_SIZE + 5] ^= 0x40;
    CHECK_OK(blk_header_decode(seg + boff[1], &h));
    CHECK_RC(WP_ECORRUPT, blk_check_records(&h, seg + boff[1] + BLK_HEADER_SIZE));
    CHECK(blk_find_header(seg + boff[1] + 1, off - boff[1] - 1) ==
          (ptrdiff_t)(boff[2] - boff[1] - 1));
    seg[boff[1] + BLK_HEADER_SIZE + 5] ^= 0x40;
    /* complete it: index + footer, total length as documented */
    idx_encode(ix, 3, seg + off);
    seg_footer f = {.n_blocks = 3, .index_offset = off, .last_entry_id = next - 1,
                    .index_crc = crc32c(0, seg + off, 3 * IDX_ENTRY_SIZE)},
               g;
    ftr_encode(&f, seg + off + 3 * IDX_ENTRY_SIZE);
    size_t total = off + 3 * IDX_ENTRY_SIZE + FTR_SIZE;
    CHECK_OK(ftr_decode(seg + total - FTR_SIZE, &g));
    CHECK(g.index_offset + 16 * g.n_blocks + 64 == total);
    idx_entry d[3];
    CHECK_OK(idx_decode(seg + g.index_offset, &g, d));
    CHECK(d[2].offset == boff[2] && d[2].first_entry_id == 5);
    free(seg);
}

/* ---- the worked example of docs/format.md §10, byte for byte ---------- */

static const uint8_t golden[207] = {
    0x57, 0x50, 0x53, 0x45, 0x47, 0x4d, 0x4e, 0x54, 0x01, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x86, 0xc1, 0x91, 0x0e,
    0x57, 0x50, 0x42, 0x4b, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x27, 0x00, 0x00, 0x00,
    0x26, 0x84, 0xb8, 0xbf, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0xb6, 0xe8, 0x55, 0x66, 0x21, 0xe5, 0xf7, 0xd0, 0x09, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x68, 0x65, 0x6c, 0x6c, 0x6f, 0x6e, 0x9b, 0x0d,
    0x9c, 0x0e, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01,
    0x00, 0x00, 0x00, 0x6b, 0x76, 0x77, 0x70, 0x30, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x57,
    0x50, 0x46, 0x4f, 0x4f, 0x54, 0x45, 0x52, 0x01, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x2b, 0xe3, 0x1a, 0x78, 0x7f,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xb2,
    0x5a, 0x7e, 0x8f
};

TEST(golden_worked_example)
{
    uint8_t b[sizeof golden];
    memset(b, 0xee, sizeof b);
    seg_header sh = {.log_id = 1, .segment_id = 0, .epoch = 1};
    seg_header_encode(&sh, b);
    static const char *k[] = {"k"}, *v[] = {"v"};
    wp_payload e0 = {.data = "hello", .len = 5};
    wp_payload e1 = {.data = "wp", .len = 2, .n_props = 1, .prop_keys = k, .prop_values = v};
    size_t off = 88;
    off += rec_encode(&e0, b + off);
    off += rec_encode(&e1, b + off);
    CHECK(off == 127);
    blk_header h = {.first_entry_id = 0, .n_entries = 2, .records_len = 39,
                    .records_crc = crc32c(0, b + 88, 39)};
    blk_header_encode(&h, b + 48);
    idx_entry ix = {48, 0};
    idx_encode(&ix, 1, b + 127);
    seg_footer f = {.n_blocks = 1, .index_offset = 127, .last_entry_id = 1,
                    .index_crc = crc32c(0, b + 127, 16)};
    ftr_encode(&f, b + 143);
    CHECK(memcmp(b, golden, sizeof b) == 0);

    /* and the documented values decode from the golden bytes */
    seg_header sd;
    blk_header hd;
    seg_footer fd;
    idx_entry id;
    CHECK_OK(seg_header_decode(golden, &sd));
    CHECK_OK(blk_header_decode(golden + 48, &hd));
    CHECK(hd.records_crc == 0xbfb88426u && hd.records_len == 39);
    CHECK_OK(blk_check_records(&hd, golden + 88));
    CHECK_OK(ftr_decode(golden + 143, &fd));
    CHECK(fd.index_crc == 0x781ae32bu && fd.index_offset == 127 && fd.last_entry_id == 1);
    CHECK_OK(idx_decode(golden + 127, &fd, &id));
    CHECK(id.offset == 48 && id.first_entry_id == 0);
}

int main(void)
{
    RUN(crc_known_vectors);
    RUN(crc_hw_equals_sw_random);
    RUN(seg_header_round_trip);
    RUN(seg_header_every_bit_flip);
    RUN(seg_header_bad_fields);
    RUN(rec_round_trip);
    RUN(rec_empty_payload_and_no_props);
    RUN(rec_every_bit_flip_and_truncation);
    RUN(rec_bad_contents_with_valid_crc);
    RUN(rec_check_bounds);
    RUN(rec_check_string_bounds);
    RUN(rec_decode_size_limits);
    RUN(blk_round_trip);
    RUN(blk_every_bit_flip);
    RUN(blk_header_bad_fields);
    RUN(blk_records_count_and_length_mismatch);
    RUN(blk_find_header_cases);
    RUN(ftr_round_trip);
    RUN(ftr_every_bit_flip);
    RUN(ftr_bad_fields);
    RUN(idx_bad_entries);
    RUN(segment_layout_and_torn_tail);
    RUN(golden_worked_example);
    return test_done();
}
