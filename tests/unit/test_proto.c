/* test_proto.c — the wire protocol codec (docs/protocol.md): round trips of
 * every message, the worked example's golden bytes, every rejection
 * (header, body, connection state), and the incremental frame reader fed
 * byte by byte and in random chunks. */
#include <stdint.h>

#include "base/limits.h"
#include "codec/codec.h"
#include "codec/le.h"
#include "net/proto.h"
#include "test.h"

static uint64_t rng = 0x2545F4914F6CDD1Dull;
static uint64_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* ---- fixtures ---------------------------------------------------------- */

/* n records (entry i: payload of (i * 7) % 50 bytes, every third with a
 * property) into buf; returns their length. */
static size_t make_records(uint8_t *buf, uint32_t n)
{
    static const char *k[] = {"key"}, *v[] = {"value"};
    static uint8_t payload[64];
    size_t off = 0;
    for (uint32_t i = 0; i < n; i++) {
        for (size_t j = 0; j < sizeof payload; j++)
            payload[j] = (uint8_t)(i + j);
        wp_payload p = {.data = payload, .len = (i * 7) % 50};
        if (i % 3 == 0) {
            p.n_props = 1;
            p.prop_keys = k;
            p.prop_values = v;
        }
        off += rec_encode(&p, buf + off);
    }
    return off;
}

static uint8_t recs5[1024];
static size_t recs5_len;

/* One valid message of each type. */
static proto_msg sample(uint16_t type)
{
    if (!recs5_len)
        recs5_len = make_records(recs5, 5);
    proto_msg m = {.type = type};
    switch (type) {
    case PROTO_HELLO:
        m.u.hello = (proto_hello){1, 1, PROTO_BODY_MAX, "client-42", 9};
        break;
    case PROTO_HELLO_ANS:
        m.u.hello_ans = (proto_hello_ans){1, 8 * WP_MiB, "node-7", 6};
        break;
    case PROTO_ADD:
        m.u.add = (proto_add){.log_id = 3,
                              .segment_id = 9,
                              .epoch = 4,
                              .first_entry_id = 100,
                              .lac = 97,
                              .n_entries = 5,
                              .records = recs5,
                              .records_len = recs5_len};
        break;
    case PROTO_ADD_ANS:
        m.u.add_ans.last_durable = 104;
        break;
    case PROTO_FENCE:
        m.u.fence = (proto_fence){3, 9, 5};
        break;
    case PROTO_FENCE_ANS:
        m.u.state = (proto_seg_state){104, 99, 0};
        break;
    case PROTO_READ:
        m.u.read = (proto_read){3, 9, 100, 1 << 20, 250, PROTO_READ_UNCONFIRMED};
        break;
    case PROTO_READ_ANS:
        m.u.read_ans = (proto_read_ans){.first_entry_id = 100,
                                        .lac = 104,
                                        .last_durable = 104,
                                        .n_entries = 5,
                                        .flags = PROTO_SEG_COMPLETED,
                                        .records = recs5,
                                        .records_len = recs5_len};
        break;
    case PROTO_READ_LAC:
        m.u.read_lac = (proto_read_lac){3, 9};
        break;
    case PROTO_READ_LAC_ANS:
        m.u.state = (proto_seg_state){-1, -1, 0};
        break;
    case PROTO_COMPLETE:
        m.u.complete = (proto_complete){3, 9, 5, 104};
        break;
    case PROTO_COMPLETE_ANS:
        m.u.state = (proto_seg_state){104, 104, PROTO_SEG_COMPLETED};
        break;
    case PROTO_DELETE:
        m.u.del = (proto_delete){3, -1};
        break;
    case PROTO_STATS_ANS:
        m.u.stats_ans = (proto_stats_ans){1ull << 40, 1ull << 39, 12345, 17, 3};
        break;
    case PROTO_ERROR:
        m.u.error = (proto_error){WP_EFENCED, "epoch 4 below fence epoch 5", 27};
        break;
    default: /* PROTO_STATS, PROTO_DELETE_ANS: no fields */
        break;
    }
    return m;
}

static const uint16_t all_types[] = {
    PROTO_HELLO,     PROTO_ADD,      PROTO_FENCE,        PROTO_READ,         PROTO_READ_LAC,
    PROTO_COMPLETE,  PROTO_DELETE,   PROTO_STATS,        PROTO_HELLO_ANS,    PROTO_ADD_ANS,
    PROTO_FENCE_ANS, PROTO_READ_ANS, PROTO_READ_LAC_ANS, PROTO_COMPLETE_ANS, PROTO_DELETE_ANS,
    PROTO_STATS_ANS, PROTO_ERROR};
#define N_TYPES (sizeof all_types / sizeof all_types[0])

static uint8_t frame_buf[8192];

/* Encodes m at version 1 into frame_buf; returns the frame's length. */
static size_t enc(const proto_msg *m, uint64_t id)
{
    size_t len = 0;
    int rc = proto_encode(1, id, m, frame_buf, sizeof frame_buf, &len);
    if (rc != 0) {
        fprintf(stderr, "  enc %s: %s\n", proto_type_name(m->type), wp_errmsg());
        return 0;
    }
    return len;
}

/* Decodes a whole frame (header then body, exactly len bytes). */
static int dec(const uint8_t *f, size_t len, proto_header *h, proto_msg *m)
{
    if (len < PROTO_HEADER_SIZE)
        return WP_EAGAIN;
    int rc = proto_header_decode(f, h);
    if (rc)
        return rc;
    if (len - PROTO_HEADER_SIZE != h->body_len)
        return WP_EAGAIN;
    return proto_decode(h, f + PROTO_HEADER_SIZE, m);
}

/* Recomputes both CRCs of a frame after a test patched it. */
static void fix_crcs(uint8_t *f, size_t len)
{
    le_put32(f + 20, crc32c(0, f + PROTO_HEADER_SIZE, len - PROTO_HEADER_SIZE));
    le_put32(f + 28, crc32c(0, f, 28));
}

/* Patches a frame body at off (after the header), fixes the CRCs, decodes. */
static int dec_patched(const proto_msg *m, size_t off, const void *bytes, size_t n)
{
    uint8_t f[8192];
    size_t len = enc(m, 1);
    memcpy(f, frame_buf, len);
    memcpy(f + PROTO_HEADER_SIZE + off, bytes, n);
    fix_crcs(f, len);
    proto_header h;
    proto_msg out;
    return dec(f, len, &h, &out);
}

static int dec_patch64(uint16_t type, size_t off, int64_t v)
{
    uint8_t b[8];
    le_puti64(b, v);
    proto_msg m = sample(type);
    return dec_patched(&m, off, b, 8);
}

static int dec_patch32(uint16_t type, size_t off, uint32_t v)
{
    uint8_t b[4];
    le_put32(b, v);
    proto_msg m = sample(type);
    return dec_patched(&m, off, b, 4);
}

static int dec_patch16(uint16_t type, size_t off, uint16_t v)
{
    uint8_t b[2];
    le_put16(b, v);
    proto_msg m = sample(type);
    return dec_patched(&m, off, b, 2);
}

/* Builds a frame by hand from a raw body (valid CRCs) and decodes it. */
static int dec_raw(uint16_t type, const uint8_t *body, uint32_t body_len)
{
    static uint8_t f[PROTO_HEADER_SIZE + 4096];
    proto_header h = {1, type, 5, body_len, crc32c(0, body, body_len)};
    proto_header_encode(&h, f);
    memcpy(f + PROTO_HEADER_SIZE, body, body_len);
    proto_header hd;
    proto_msg m;
    return dec(f, PROTO_HEADER_SIZE + body_len, &hd, &m);
}

/* ---- worked example (docs/protocol.md §10) ----------------------------- */

static const uint8_t golden_add[] = {
    0x57, 0x50, 0x52, 0x50, 0x01, 0x00, 0x02, 0x00, 0x07, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x57, 0x00, 0x00, 0x00, 0x9d, 0x92, 0xf1, 0xa0, 0x00, 0x00, 0x00, 0x00, 0x3c, 0xf0,
    0x25, 0xbb, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x21, 0xe5, 0xf7, 0xd0, 0x09, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x68, 0x65, 0x6c, 0x6c, 0x6f, 0x6e, 0x9b, 0x0d, 0x9c, 0x0e, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x6b, 0x76, 0x77, 0x70};
static const uint8_t golden_ans[] = {0x57, 0x50, 0x52, 0x50, 0x01, 0x00, 0x02, 0x80, 0x07, 0x00,
                                     0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x08, 0x00, 0x00, 0x00,
                                     0xad, 0xcf, 0x14, 0xc5, 0x00, 0x00, 0x00, 0x00, 0xa4, 0x5e,
                                     0x0f, 0x95, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00};

TEST(golden_worked_example)
{
    static const char *k[] = {"k"}, *v[] = {"v"};
    wp_payload e0 = {.data = "hello", .len = 5};
    wp_payload e1 = {.data = "wp", .len = 2, .n_props = 1, .prop_keys = k, .prop_values = v};
    uint8_t recs[64];
    size_t rl = rec_encode(&e0, recs);
    rl += rec_encode(&e1, recs + rl);
    CHECK(rl == 39);
    proto_msg m = {.type = PROTO_ADD};
    m.u.add = (proto_add){.log_id = 1,
                          .segment_id = 0,
                          .epoch = 1,
                          .first_entry_id = 0,
                          .lac = -1,
                          .n_entries = 2,
                          .records = recs,
                          .records_len = rl};
    size_t len = enc(&m, 7);
    CHECK(len == sizeof golden_add);
    CHECK(memcmp(frame_buf, golden_add, sizeof golden_add) == 0);
    /* The same bytes when the sender gives the records' CRC (combined,
     * not recomputed), and a wrong one shows in the frame. */
    m.u.add.records_crc_known = true;
    m.u.add.records_crc = crc32c(0, recs, rl);
    CHECK(enc(&m, 7) == sizeof golden_add && memcmp(frame_buf, golden_add, sizeof golden_add) == 0);
    m.u.add.records_crc ^= 1;
    CHECK(enc(&m, 7) == sizeof golden_add && memcmp(frame_buf, golden_add, sizeof golden_add) != 0);
    m.u.add.records_crc_known = false;
    len = enc(&m, 7);
    for (size_t i = 0; i < len && i < sizeof golden_add; i++)
        if (frame_buf[i] != golden_add[i]) {
            fprintf(stderr, "  ADD differs at byte %zu: %02x, golden %02x\n", i, frame_buf[i],
                    golden_add[i]);
            break;
        }
    proto_msg a = {.type = PROTO_ADD_ANS, .u.add_ans.last_durable = 1};
    len = enc(&a, 7);
    CHECK(len == sizeof golden_ans && memcmp(frame_buf, golden_ans, sizeof golden_ans) == 0);

    /* the documented values decode from the golden bytes */
    proto_header h;
    proto_msg d;
    CHECK_OK(dec(golden_add, sizeof golden_add, &h, &d));
    CHECK(h.version == 1 && h.type == PROTO_ADD && h.request_id == 7 && h.body_len == 87);
    CHECK(d.u.add.log_id == 1 && d.u.add.segment_id == 0 && d.u.add.epoch == 1 &&
          d.u.add.first_entry_id == 0 && d.u.add.lac == -1 && d.u.add.n_entries == 2 &&
          d.u.add.records_len == 39 && memcmp(d.u.add.records, recs, 39) == 0);
    CHECK_OK(dec(golden_ans, sizeof golden_ans, &h, &d));
    CHECK(h.type == PROTO_ADD_ANS && h.request_id == 7 && d.u.add_ans.last_durable == 1);
    /* the records are those of docs/format.md §10 (block at offset 88 there) */
    blk_header bh = {.first_entry_id = 0,
                     .n_entries = 2,
                     .records_len = 39,
                     .records_crc = crc32c(0, golden_add + 80, 39)};
    CHECK(bh.records_crc == 0xbfb88426u);
    CHECK_OK(blk_check_records(&bh, golden_add + 80));
}

/* ---- round trips ------------------------------------------------------- */

static bool same_msg(const proto_msg *a, const proto_msg *b)
{
    /* re-encode both: the encoding is canonical */
    uint8_t fa[8192], fb[8192];
    size_t la = 0, lb = 0;
    if (proto_encode(1, 1, a, fa, sizeof fa, &la) || proto_encode(1, 1, b, fb, sizeof fb, &lb))
        return false;
    return la == lb && memcmp(fa, fb, la) == 0;
}

TEST(round_trip_every_message)
{
    for (size_t i = 0; i < N_TYPES; i++) {
        proto_msg m = sample(all_types[i]), d;
        size_t len = enc(&m, 1000 + i);
        REQUIRE(len > 0);
        CHECK(len == proto_frame_size(&m));
        proto_header h;
        CHECK_OK(dec(frame_buf, len, &h, &d));
        CHECK(h.type == m.type && h.request_id == 1000 + i && h.version == 1);
        CHECK(same_msg(&m, &d));
        /* encode_head + records == encode */
        uint8_t head[PROTO_HEAD_MAX];
        size_t hl;
        CHECK_OK(proto_encode_head(1, 1000 + i, &m, head, &hl));
        CHECK(hl <= PROTO_HEAD_MAX && memcmp(head, frame_buf, hl) == 0);
        if (m.type == PROTO_ADD)
            CHECK(hl == PROTO_HEADER_SIZE + PROTO_ADD_FIXED &&
                  memcmp(frame_buf + hl, recs5, recs5_len) == 0 && len == hl + recs5_len);
        else if (m.type == PROTO_READ_ANS)
            CHECK(hl == PROTO_HEADER_SIZE + PROTO_READ_ANS_FIXED && len == hl + recs5_len);
        else
            CHECK(hl == len);
        CHECK(strcmp(proto_type_name(m.type), "unknown") != 0);
    }
    /* field by field for a few */
    proto_msg m = sample(PROTO_READ), d;
    proto_header h;
    CHECK_OK(dec(frame_buf, enc(&m, 1), &h, &d));
    CHECK(d.u.read.log_id == 3 && d.u.read.segment_id == 9 && d.u.read.from_entry_id == 100 &&
          d.u.read.max_bytes == 1u << 20 && d.u.read.wait_ms == 250 &&
          d.u.read.flags == PROTO_READ_UNCONFIRMED);
    m = sample(PROTO_ERROR);
    CHECK_OK(dec(frame_buf, enc(&m, 1), &h, &d));
    CHECK(d.u.error.code == WP_EFENCED && d.u.error.msg_len == 27 &&
          memcmp(d.u.error.msg, "epoch 4 below fence epoch 5", 27) == 0);
    m = sample(PROTO_HELLO);
    CHECK_OK(dec(frame_buf, enc(&m, 1), &h, &d));
    CHECK(d.u.hello.min_version == 1 && d.u.hello.max_version == 1 &&
          d.u.hello.body_max == PROTO_BODY_MAX && d.u.hello.id_len == 9 &&
          memcmp(d.u.hello.id, "client-42", 9) == 0);
    m = sample(PROTO_STATS_ANS);
    CHECK_OK(dec(frame_buf, enc(&m, 1), &h, &d));
    CHECK(d.u.stats_ans.disk_total_bytes == 1ull << 40 &&
          d.u.stats_ans.disk_free_bytes == 1ull << 39 && d.u.stats_ans.segments == 12345 &&
          d.u.stats_ans.connections == 17 && d.u.stats_ans.load == 3);
}

/* proto_msg_rebase: a decoded message moved to a copy of its body is the
 * same message, and none of its pointers is left in the old body (which is
 * wiped before it is compared). */
TEST(rebase_every_message)
{
    for (size_t i = 0; i < N_TYPES; i++) {
        proto_msg m = sample(all_types[i]), d;
        size_t len = enc(&m, 7);
        REQUIRE(len > 0);
        proto_header h;
        CHECK_OK(dec(frame_buf, len, &h, &d));
        uint8_t *copy = malloc(h.body_len ? h.body_len : 1);
        REQUIRE(copy);
        memcpy(copy, frame_buf + PROTO_HEADER_SIZE, h.body_len);
        proto_msg_rebase(&d, frame_buf + PROTO_HEADER_SIZE, copy);
        memset(frame_buf, 0xa5, len); /* the old body is gone */
        CHECK(same_msg(&m, &d));
        free(copy);
    }
}

TEST(round_trip_edges)
{
    proto_msg d;
    proto_header h;
    /* LAC-only ADD; extreme ids; every error code; empty and maximal strings */
    proto_msg m = {.type = PROTO_ADD};
    m.u.add = (proto_add){.log_id = INT64_MAX,
                          .segment_id = INT64_MAX,
                          .epoch = INT64_MAX,
                          .first_entry_id = 0,
                          .lac = -1};
    CHECK_OK(dec(frame_buf, enc(&m, UINT64_MAX), &h, &d));
    CHECK(h.request_id == UINT64_MAX && same_msg(&m, &d) && d.u.add.records_len == 0);
    m.u.add.first_entry_id = INT64_MAX;
    m.u.add.lac = INT64_MAX - 1;
    CHECK_OK(dec(frame_buf, enc(&m, 0), &h, &d));
    CHECK(d.u.add.first_entry_id == INT64_MAX && d.u.add.lac == INT64_MAX - 1);
    for (int code = PROTO_ERR_CODE_MIN; code <= -1; code++) {
        m = (proto_msg){.type = PROTO_ERROR, .u.error = {code, NULL, 0}};
        CHECK_OK(dec(frame_buf, enc(&m, 2), &h, &d));
        CHECK(d.u.error.code == code && d.u.error.msg_len == 0);
    }
    char msg[PROTO_ERRMSG_MAX], id[PROTO_ID_MAX];
    memset(msg, 0xc3, sizeof msg); /* any byte but NUL */
    memset(id, '~', sizeof id);
    m = (proto_msg){.type = PROTO_ERROR, .u.error = {WP_EIO, msg, sizeof msg}};
    CHECK_OK(dec(frame_buf, enc(&m, 2), &h, &d));
    CHECK(d.u.error.msg_len == sizeof msg && same_msg(&m, &d));
    CHECK(proto_frame_size(&m) == PROTO_HEAD_MAX);
    m = (proto_msg){.type = PROTO_HELLO, .u.hello = {1, 7, PROTO_BODY_LIMIT_MIN, id, sizeof id}};
    CHECK_OK(dec(frame_buf, enc(&m, 2), &h, &d));
    CHECK(d.u.hello.id_len == PROTO_ID_MAX && d.u.hello.max_version == 7);
    /* READ_ANS with no entries; a completed empty segment */
    m = (proto_msg){.type = PROTO_READ_ANS};
    m.u.read_ans = (proto_read_ans){
        .first_entry_id = 0, .lac = -1, .last_durable = -1, .flags = PROTO_SEG_COMPLETED};
    CHECK_OK(dec(frame_buf, enc(&m, 2), &h, &d));
    CHECK(d.u.read_ans.n_entries == 0 && d.u.read_ans.flags == PROTO_SEG_COMPLETED);
    m = (proto_msg){.type = PROTO_COMPLETE_ANS, .u.state = {-1, -1, PROTO_SEG_COMPLETED}};
    CHECK_OK(dec(frame_buf, enc(&m, 2), &h, &d));
    m = (proto_msg){.type = PROTO_COMPLETE, .u.complete = {0, 0, 0, -1}};
    CHECK_OK(dec(frame_buf, enc(&m, 2), &h, &d));
    /* a lagging replica: lac above last_durable when not completed */
    m = (proto_msg){.type = PROTO_FENCE_ANS, .u.state = {5, 10, 0}};
    CHECK_OK(dec(frame_buf, enc(&m, 2), &h, &d));
    CHECK(d.u.state.last_durable == 5 && d.u.state.lac == 10);
}

TEST(round_trip_large_add)
{
    /* many entries and one big one, through the reader in one piece */
    uint32_t n = 3000;
    size_t cap = n * 80 + 2 * WP_MiB;
    uint8_t *recs = malloc(cap), *f = malloc(cap + PROTO_HEAD_MAX);
    REQUIRE(recs && f);
    size_t rl = make_records(recs, n - 1);
    uint8_t *big = malloc(2 * WP_MiB);
    REQUIRE(big);
    memset(big, 'x', 2 * WP_MiB);
    wp_payload p = {.data = big, .len = 2 * WP_MiB - 100};
    rl += rec_encode(&p, recs + rl);
    proto_msg m = {.type = PROTO_ADD};
    m.u.add = (proto_add){.log_id = 1,
                          .segment_id = 2,
                          .epoch = 3,
                          .first_entry_id = 0,
                          .lac = -1,
                          .n_entries = n,
                          .records = recs,
                          .records_len = rl};
    size_t len;
    CHECK_OK(proto_encode(1, 9, &m, f, cap + PROTO_HEAD_MAX, &len));
    CHECK_RC(WP_EINVAL, proto_encode(1, 9, &m, f, len - 1, &len));
    proto_header h;
    proto_msg d;
    CHECK_OK(dec(f, len, &h, &d));
    CHECK(d.u.add.n_entries == n && d.u.add.records_len == rl);
    free(big);
    free(recs);
    free(f);
}

/* ---- header rejections ------------------------------------------------- */

TEST(header_every_bit_flip)
{
    proto_msg m = sample(PROTO_FENCE);
    size_t len = enc(&m, 77);
    for (size_t bit = 0; bit < PROTO_HEADER_SIZE * 8; bit++) {
        uint8_t f[256];
        memcpy(f, frame_buf, len);
        f[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        proto_header h;
        CHECK_RC(WP_ECORRUPT, proto_header_decode(f, &h));
    }
}

TEST(header_bad_fields)
{
    proto_msg m = sample(PROTO_FENCE);
    size_t len = enc(&m, 77);
    uint8_t f[256];
    proto_header h, good;
    CHECK_OK(proto_header_decode(frame_buf, &good));
    /* each bad field with a correct header crc */
    struct {
        size_t off;
        int width;
        uint64_t v;
        const char *msg;
    } cases[] = {
        {0, 4, 0x50525058, "magic"},              /* "XPRP" */
        {4, 2, 0, "version"},                     /* version 0 */
        {4, 2, PROTO_VERSION_MAX + 1, "version"}, /* a future version */
        {6, 2, 0x0009, "unknown type"},
        {6, 2, 0x0000, "unknown type"},
        {6, 2, 0x8009, "unknown type"},
        {6, 2, 0x7fff, "unknown type"},
        {16, 4, 25, "body of"}, /* FENCE is exactly 24 */
        {16, 4, 23, "body of"},
        {16, 4, 0xffffffff, "body of"},
        {24, 4, 1, "reserved"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        memcpy(f, frame_buf, len);
        if (cases[i].width == 2)
            le_put16(f + cases[i].off, (uint16_t)cases[i].v);
        else
            le_put32(f + cases[i].off, (uint32_t)cases[i].v);
        le_put32(f + 28, crc32c(0, f, 28));
        CHECK_RC(WP_ECORRUPT, proto_header_decode(f, &h));
        if (!strstr(wp_errmsg(), cases[i].msg)) {
            fprintf(stderr, "  case %zu: detail '%s' lacks '%s'\n", i, wp_errmsg(), cases[i].msg);
            test_cur_failed = 1;
        }
    }
    /* oversized bodies for every type; the largest ADD / READ_ANS is fine */
    for (size_t i = 0; i < N_TYPES; i++) {
        proto_header b = {1, all_types[i], 1, (uint32_t)PROTO_BODY_MAX + 1, 0};
        proto_header_encode(&b, f);
        CHECK_RC(WP_ECORRUPT, proto_header_decode(f, &h));
    }
    proto_header b = {1, PROTO_ADD, 1, (uint32_t)PROTO_BODY_MAX, 0};
    proto_header_encode(&b, f);
    CHECK_OK(proto_header_decode(f, &h));
    b = (proto_header){1, PROTO_READ_ANS, 1, (uint32_t)PROTO_BODY_MAX, 0};
    proto_header_encode(&b, f);
    CHECK_RC(WP_ECORRUPT, proto_header_decode(f, &h));
    b.body_len = PROTO_READ_ANS_FIXED + PROTO_RECORDS_BYTES_MAX;
    proto_header_encode(&b, f);
    CHECK_OK(proto_header_decode(f, &h));
    /* too short for the fixed part: ADD of 47, HELLO with an empty id, ERROR of 7 */
    uint16_t ty[] = {PROTO_ADD, PROTO_HELLO, PROTO_HELLO_ANS, PROTO_ERROR, PROTO_READ_ANS};
    uint32_t bl[] = {47, 12, 12, 7, 31};
    for (size_t i = 0; i < 5; i++) {
        b = (proto_header){1, ty[i], 1, bl[i], 0};
        proto_header_encode(&b, f);
        CHECK_RC(WP_ECORRUPT, proto_header_decode(f, &h));
    }
    /* strings above their bound */
    b = (proto_header){1, PROTO_HELLO, 1, 12 + PROTO_ID_MAX + 1, 0};
    proto_header_encode(&b, f);
    CHECK_RC(WP_ECORRUPT, proto_header_decode(f, &h));
    b = (proto_header){1, PROTO_ERROR, 1, 8 + PROTO_ERRMSG_MAX + 1, 0};
    proto_header_encode(&b, f);
    CHECK_RC(WP_ECORRUPT, proto_header_decode(f, &h));
}

/* ---- body rejections --------------------------------------------------- */

TEST(body_crc_and_every_bit_flip)
{
    for (size_t t = 0; t < N_TYPES; t++) {
        proto_msg m = sample(all_types[t]);
        size_t len = enc(&m, 3);
        uint8_t f[8192];
        for (size_t bit = PROTO_HEADER_SIZE * 8; bit < len * 8; bit++) {
            memcpy(f, frame_buf, len);
            f[bit / 8] ^= (uint8_t)(1u << (bit % 8));
            proto_header h;
            proto_msg d;
            CHECK_RC(WP_ECORRUPT, dec(f, len, &h, &d));
        }
        if (len > PROTO_HEADER_SIZE) {
            proto_header h;
            proto_msg d;
            memcpy(f, frame_buf, len);
            le_put32(f + 20, le_get32(f + 20) ^ 1); /* body_crc wrong, header crc right */
            le_put32(f + 28, crc32c(0, f, 28));
            CHECK_RC(WP_ECORRUPT, dec(f, len, &h, &d));
            CHECK(strstr(wp_errmsg(), "body crc mismatch") != NULL);
        }
    }
}

TEST(body_bad_ids_and_bounds)
{
    /* ADD: log, segment, epoch, first, lac */
    CHECK_RC(WP_ECORRUPT, dec_patch64(PROTO_ADD, 0, -1));
    CHECK_RC(WP_ECORRUPT, dec_patch64(PROTO_ADD, 8, -1));
    CHECK_RC(WP_ECORRUPT, dec_patch64(PROTO_ADD, 16, -1));
    CHECK_RC(WP_ECORRUPT, dec_patch64(PROTO_ADD, 24, -1));
    CHECK_RC(WP_ECORRUPT, dec_patch64(PROTO_ADD, 24, INT64_MAX - 3)); /* ids overflow */
    CHECK_OK(dec_patch64(PROTO_ADD, 24, INT64_MAX - 5));
    CHECK_RC(WP_ECORRUPT, dec_patch64(PROTO_ADD, 32, -2));
    CHECK_RC(WP_ECORRUPT, dec_patch64(PROTO_ADD, 32, INT64_MIN));
    CHECK_OK(dec_patch64(PROTO_ADD, 32, INT64_MAX)); /* a write-back may carry any LAC */
    /* ADD: count past the bound, counts that do not match the records, flags */
    CHECK_RC(WP_ECORRUPT, dec_patch32(PROTO_ADD, 40, PROTO_ENTRIES_MAX + 1));
    CHECK_RC(WP_ECORRUPT, dec_patch32(PROTO_ADD, 40, 4));
    CHECK_RC(WP_ECORRUPT, dec_patch32(PROTO_ADD, 40, 6));
    CHECK_RC(WP_ECORRUPT, dec_patch32(PROTO_ADD, 40, 0));
    CHECK_RC(WP_ECORRUPT, dec_patch32(PROTO_ADD, 44, 1));
    CHECK_RC(WP_ECORRUPT, dec_patch32(PROTO_ADD, 44, 0x80000000u));
    /* ADD_ANS, FENCE, FENCE_ANS, READ_LAC, COMPLETE, DELETE ids */
    CHECK_RC(WP_ECORRUPT, dec_patch64(PROTO_ADD_ANS, 0, -2));
    CHECK_OK(dec_patch64(PROTO_ADD_ANS, 0, -1));
    for (size_t off = 0; off < 24; off += 8)
        CHECK_RC(WP_ECORRUPT, dec_patch64(PROTO_FENCE, off, -1));
    CHECK_RC(WP_ECORRUPT, dec_patch64(PROTO_FENCE_ANS, 0, -2));
    CHECK_RC(WP_ECORRUPT, dec_patch64(PROTO_FENCE_ANS, 8, -2));
    CHECK_RC(WP_ECORRUPT, dec_patch32(PROTO_FENCE_ANS, 16, 2)); /* undefined flag */
    CHECK_RC(WP_ECORRUPT, dec_patch32(PROTO_FENCE_ANS, 20, 1)); /* reserved */
    CHECK_OK(dec_patch32(PROTO_FENCE_ANS, 16, 1));              /* completed, lac 99 <= 104 */
    CHECK_OK(dec_patch64(PROTO_FENCE_ANS, 8, 105));             /* lagging: lac above, open */
    CHECK_RC(WP_ECORRUPT, dec_patch64(PROTO_READ_LAC, 0, -1));
    CHECK_RC(WP_ECORRUPT, dec_patch64(PROTO_READ_LAC, 8, -1));
    for (size_t off = 0; off < 24; off += 8)
        CHECK_RC(WP_ECORRUPT, dec_patch64(PROTO_COMPLETE, off, -1));
    CHECK_RC(WP_ECORRUPT, dec_patch64(PROTO_COMPLETE, 24, -2));
    CHECK_OK(dec_patch64(PROTO_COMPLETE, 24, -1));
    CHECK_RC(WP_ECORRUPT, dec_patch64(PROTO_DELETE, 0, -1));
    CHECK_RC(WP_ECORRUPT, dec_patch64(PROTO_DELETE, 8, -2));
    CHECK_OK(dec_patch64(PROTO_DELETE, 8, 0));
    /* COMPLETE_ANS needs COMPLETED, and lac <= last_durable */
    CHECK_RC(WP_ECORRUPT, dec_patch32(PROTO_COMPLETE_ANS, 16, 0));
    CHECK_RC(WP_ECORRUPT, dec_patch64(PROTO_COMPLETE_ANS, 8, 105));
    /* READ */
    for (size_t off = 0; off < 24; off += 8)
        CHECK_RC(WP_ECORRUPT, dec_patch64(PROTO_READ, off, -1));
    CHECK_RC(WP_ECORRUPT, dec_patch32(PROTO_READ, 24, 0));
    CHECK_RC(WP_ECORRUPT, dec_patch32(PROTO_READ, 24, PROTO_READ_BYTES_MAX + 1));
    CHECK_OK(dec_patch32(PROTO_READ, 24, PROTO_READ_BYTES_MAX));
    CHECK_RC(WP_ECORRUPT, dec_patch32(PROTO_READ, 28, PROTO_WAIT_MS_MAX + 1));
    CHECK_OK(dec_patch32(PROTO_READ, 28, PROTO_WAIT_MS_MAX));
    CHECK_RC(WP_ECORRUPT, dec_patch32(PROTO_READ, 32, 2));
    CHECK_RC(WP_ECORRUPT, dec_patch32(PROTO_READ, 36, 1));
    /* READ_ANS */
    CHECK_RC(WP_ECORRUPT, dec_patch64(PROTO_READ_ANS, 0, -1));
    CHECK_RC(WP_ECORRUPT, dec_patch64(PROTO_READ_ANS, 8, -2));
    CHECK_RC(WP_ECORRUPT, dec_patch64(PROTO_READ_ANS, 16, 103)); /* entries 100..104 past it */
    CHECK_RC(WP_ECORRUPT, dec_patch64(PROTO_READ_ANS, 8, 105));  /* completed, lac above */
    CHECK_RC(WP_ECORRUPT, dec_patch32(PROTO_READ_ANS, 24, 0));
    CHECK_RC(WP_ECORRUPT, dec_patch32(PROTO_READ_ANS, 24, PROTO_ENTRIES_MAX + 1));
    CHECK_RC(WP_ECORRUPT, dec_patch32(PROTO_READ_ANS, 28, 3));
    CHECK_OK(dec_patch32(PROTO_READ_ANS, 28, 0));
    /* STATS_ANS */
    CHECK_RC(WP_ECORRUPT, dec_patch64(PROTO_STATS_ANS, 0, INT64_MIN)); /* 2^63 */
    CHECK_RC(WP_ECORRUPT, dec_patch64(PROTO_STATS_ANS, 8, (1ll << 40) + 1));
    CHECK_OK(dec_patch64(PROTO_STATS_ANS, 8, 1ll << 40));
    CHECK_RC(WP_ECORRUPT, dec_patch64(PROTO_STATS_ANS, 16, -1));
    /* HELLO / HELLO_ANS */
    CHECK_RC(WP_ECORRUPT, dec_patch16(PROTO_HELLO, 0, 0));
    CHECK_RC(WP_ECORRUPT, dec_patch16(PROTO_HELLO, 2, 0)); /* max below min */
    CHECK_OK(dec_patch16(PROTO_HELLO, 2, 9));              /* a newer client: fine */
    CHECK_RC(WP_ECORRUPT, dec_patch32(PROTO_HELLO, 4, PROTO_BODY_LIMIT_MIN - 1));
    CHECK_RC(WP_ECORRUPT, dec_patch32(PROTO_HELLO, 4, (uint32_t)PROTO_BODY_MAX + 1));
    CHECK_RC(WP_ECORRUPT, dec_patch16(PROTO_HELLO, 8, 8)); /* id_len != bytes that follow */
    CHECK_RC(WP_ECORRUPT, dec_patch16(PROTO_HELLO, 8, 10));
    CHECK_RC(WP_ECORRUPT, dec_patch16(PROTO_HELLO, 10, 1));
    CHECK_RC(WP_ECORRUPT, dec_patched(&(proto_msg){.type = PROTO_HELLO,
                                                   .u.hello = {1, 1, PROTO_BODY_MAX, "c", 1}},
                                      12, " ", 1)); /* a space in the id */
    CHECK_RC(WP_ECORRUPT, dec_patched(&(proto_msg){.type = PROTO_HELLO,
                                                   .u.hello = {1, 1, PROTO_BODY_MAX, "c", 1}},
                                      12, "\0", 1));
    CHECK_RC(WP_ECORRUPT, dec_patch16(PROTO_HELLO_ANS, 0, 0));
    CHECK_RC(WP_ECORRUPT, dec_patch16(PROTO_HELLO_ANS, 0, PROTO_VERSION_MAX + 1));
    CHECK_RC(WP_ECORRUPT, dec_patch16(PROTO_HELLO_ANS, 2, 1));
    CHECK_RC(WP_ECORRUPT, dec_patch32(PROTO_HELLO_ANS, 4, 0));
    /* ERROR */
    CHECK_RC(WP_ECORRUPT, dec_patch32(PROTO_ERROR, 0, 0));
    CHECK_RC(WP_ECORRUPT, dec_patch32(PROTO_ERROR, 0, 1));
    CHECK_RC(WP_ECORRUPT, dec_patch32(PROTO_ERROR, 0, (uint32_t)(PROTO_ERR_CODE_MIN - 1)));
    CHECK_RC(WP_ECORRUPT, dec_patch32(PROTO_ERROR, 0, 0x80000000u));
    CHECK_OK(dec_patch32(PROTO_ERROR, 0, (uint32_t)PROTO_ERR_CODE_MIN));
    CHECK_RC(WP_ECORRUPT, dec_patch16(PROTO_ERROR, 4, 26));
    CHECK_RC(WP_ECORRUPT, dec_patch16(PROTO_ERROR, 6, 1));
    proto_msg e = sample(PROTO_ERROR);
    CHECK_RC(WP_ECORRUPT, dec_patched(&e, 8 + 5, "\0", 1));
}

TEST(body_bad_records)
{
    proto_msg m = sample(PROTO_ADD);
    size_t rec0 = PROTO_ADD_FIXED; /* records start here in the body */
    /* a record whose crc is wrong (the frame crc is right) */
    uint8_t x = recs5[0] ^ 0xff;
    CHECK_RC(WP_ECORRUPT, dec_patched(&m, rec0, &x, 1));
    CHECK(strstr(wp_errmsg(), "record 0") != NULL);
    /* a body_len running past the records */
    uint8_t big[4];
    le_put32(big, 1000);
    CHECK_RC(WP_ECORRUPT, dec_patched(&m, rec0 + 4, big, 4));
    /* nonzero record flags with the record crc fixed */
    uint8_t r[1024];
    memcpy(r, recs5, recs5_len);
    le_put16(r + 10, 1);
    le_put32(r, crc32c(0, r + 4, le_get32(r + 4) + 4));
    m.u.add.records = r;
    CHECK_RC(WP_EINVAL, proto_encode(1, 1, &m, frame_buf, sizeof frame_buf, &(size_t){0}));
    proto_msg good = sample(PROTO_ADD);
    CHECK_RC(WP_ECORRUPT, dec_patched(&good, rec0, r, 12));

    /* trailing bytes after the n records: one more record than n says */
    uint8_t body[2048];
    proto_msg a = sample(PROTO_ADD);
    size_t len = enc(&a, 1) - PROTO_HEADER_SIZE;
    memcpy(body, frame_buf + PROTO_HEADER_SIZE, len);
    size_t extra = make_records(body + len, 1);
    CHECK_RC(WP_ECORRUPT, dec_raw(PROTO_ADD, body, (uint32_t)(len + extra)));
    CHECK_RC(WP_ECORRUPT, dec_raw(PROTO_ADD, body, (uint32_t)(len + 1))); /* one stray byte */
    CHECK_RC(WP_ECORRUPT, dec_raw(PROTO_ADD, body, (uint32_t)(len - 1))); /* cut short */
    le_put32(body + 40, 6);
    CHECK_OK(dec_raw(PROTO_ADD, body, (uint32_t)(len + extra))); /* with n = 6 it is fine */
    /* LAC-only ADD: no records, first == lac + 1 */
    proto_msg l = {.type = PROTO_ADD,
                   .u.add = {.log_id = 1, .segment_id = 1, .epoch = 1, .first_entry_id = 5, .lac = 4}};
    len = enc(&l, 1) - PROTO_HEADER_SIZE;
    REQUIRE(len == PROTO_ADD_FIXED);
    memcpy(body, frame_buf + PROTO_HEADER_SIZE, len);
    CHECK_OK(dec_raw(PROTO_ADD, body, (uint32_t)len));
    le_puti64(body + 32, 3);
    CHECK_RC(WP_ECORRUPT, dec_raw(PROTO_ADD, body, (uint32_t)len));
    le_puti64(body + 32, 4);
    make_records(body + len, 1); /* records with n = 0 */
    CHECK_RC(WP_ECORRUPT, dec_raw(PROTO_ADD, body, (uint32_t)len + 12));
    /* READ_ANS records: too few, too many, garbage */
    proto_msg ra = sample(PROTO_READ_ANS);
    len = enc(&ra, 1) - PROTO_HEADER_SIZE;
    memcpy(body, frame_buf + PROTO_HEADER_SIZE, len);
    le_put32(body + 24, 4);
    CHECK_RC(WP_ECORRUPT, dec_raw(PROTO_READ_ANS, body, (uint32_t)len));
    le_put32(body + 24, 5);
    CHECK_OK(dec_raw(PROTO_READ_ANS, body, (uint32_t)len));
    memset(body + PROTO_READ_ANS_FIXED, 0, 12); /* a record of zeros: crc 0 != crc(...) */
    CHECK_RC(WP_ECORRUPT, dec_raw(PROTO_READ_ANS, body, (uint32_t)len));
}

TEST(body_trailing_bytes_fixed_types)
{
    /* a fixed-size body with one more byte is refused by its length rule */
    uint8_t body[64] = {0};
    uint16_t ty[] = {PROTO_FENCE,        PROTO_READ,         PROTO_READ_LAC,   PROTO_COMPLETE,
                     PROTO_DELETE,       PROTO_STATS,        PROTO_ADD_ANS,    PROTO_FENCE_ANS,
                     PROTO_READ_LAC_ANS, PROTO_COMPLETE_ANS, PROTO_DELETE_ANS, PROTO_STATS_ANS};
    uint32_t size[] = {24, 40, 16, 32, 16, 0, 8, 24, 24, 24, 0, 32};
    for (size_t i = 0; i < sizeof ty / sizeof ty[0]; i++) {
        CHECK_RC(WP_ECORRUPT, dec_raw(ty[i], body, size[i] + 1));
        if (size[i])
            CHECK_RC(WP_ECORRUPT, dec_raw(ty[i], body, size[i] - 1));
    }
    /* HELLO / ERROR with bytes beyond their declared string */
    proto_msg h = sample(PROTO_HELLO);
    size_t len = enc(&h, 1) - PROTO_HEADER_SIZE;
    memcpy(body, frame_buf + PROTO_HEADER_SIZE, len);
    body[len] = 'x';
    CHECK_RC(WP_ECORRUPT, dec_raw(PROTO_HELLO, body, (uint32_t)len + 1));
    CHECK_OK(dec_raw(PROTO_HELLO, body, (uint32_t)len));
    proto_msg e = sample(PROTO_ERROR);
    len = enc(&e, 1) - PROTO_HEADER_SIZE;
    memcpy(body, frame_buf + PROTO_HEADER_SIZE, len);
    body[len] = 'x';
    CHECK_RC(WP_ECORRUPT, dec_raw(PROTO_ERROR, body, (uint32_t)len + 1));
}

TEST(encode_refuses_bad_messages)
{
    size_t len;
    uint8_t f[8192];
    proto_msg m;
#define REFUSE(type, field, value)                                                                 \
    do {                                                                                           \
        m = sample(type);                                                                          \
        m.u.field = value;                                                                         \
        CHECK_RC(WP_EINVAL, proto_encode(1, 1, &m, f, sizeof f, &len));                            \
    } while (0)
    REFUSE(PROTO_ADD, add.log_id, -1);
    REFUSE(PROTO_ADD, add.epoch, -1);
    REFUSE(PROTO_ADD, add.lac, -2);
    REFUSE(PROTO_ADD, add.n_entries, 4);
    REFUSE(PROTO_ADD, add.records_len, recs5_len - 1);
    REFUSE(PROTO_ADD, add.records, NULL);
    REFUSE(PROTO_FENCE, fence.segment_id, -1);
    REFUSE(PROTO_FENCE_ANS, state.flags, 4);
    REFUSE(PROTO_COMPLETE_ANS, state.flags, 0);
    REFUSE(PROTO_READ, read.max_bytes, 0);
    REFUSE(PROTO_READ, read.wait_ms, PROTO_WAIT_MS_MAX + 1);
    REFUSE(PROTO_READ_ANS, read_ans.last_durable, 50);
    REFUSE(PROTO_DELETE, del.segment_id, -2);
    REFUSE(PROTO_STATS_ANS, stats_ans.disk_free_bytes, 1ull << 41);
    REFUSE(PROTO_ERROR, error.code, 0);
    REFUSE(PROTO_ERROR, error.code, -18);
    REFUSE(PROTO_ERROR, error.msg_len, PROTO_ERRMSG_MAX + 1);
    REFUSE(PROTO_ERROR, error.msg, "with\0nul.............................");
    REFUSE(PROTO_HELLO, hello.id_len, 0);
    REFUSE(PROTO_HELLO, hello.id_len, PROTO_ID_MAX + 1);
    REFUSE(PROTO_HELLO, hello.id, "a b c d e f");
    REFUSE(PROTO_HELLO, hello.min_version, 0);
    REFUSE(PROTO_HELLO, hello.body_max, 1000);
    REFUSE(PROTO_HELLO_ANS, hello_ans.version, PROTO_VERSION_MAX + 1);
#undef REFUSE
    m = sample(PROTO_FENCE);
    CHECK_RC(WP_EINVAL, proto_encode(0, 1, &m, f, sizeof f, &len));
    CHECK_RC(WP_EINVAL, proto_encode(PROTO_VERSION_MAX + 1, 1, &m, f, sizeof f, &len));
    CHECK_RC(WP_EINVAL, proto_encode(1, 1, &m, f, PROTO_HEADER_SIZE + 23, &len));
    CHECK_OK(proto_encode(1, 1, &m, f, PROTO_HEADER_SIZE + 24, &len));
    m.type = 0x0042;
    CHECK_RC(WP_EINVAL, proto_encode(1, 1, &m, f, sizeof f, &len));
    CHECK(proto_frame_size(&m) == 0);
    CHECK(strcmp(proto_type_name(0x0042), "unknown") == 0);
}

/* ---- the frame reader -------------------------------------------------- */

/* A stream: HELLO, then one of every other request (ids 1..), and the
 * matching client stream: HELLO_ANS, then every answer. */
static size_t build_stream(uint8_t *s, size_t cap, bool server, size_t *n_frames)
{
    size_t off = 0, len;
    uint16_t first = server ? PROTO_HELLO : PROTO_HELLO_ANS;
    proto_msg m = sample(first);
    if (proto_encode(1, 0, &m, s, cap, &len))
        return 0;
    off += len;
    *n_frames = 1;
    for (int rep = 0; rep < 3; rep++)
        for (size_t i = 0; i < N_TYPES; i++) {
            uint16_t t = all_types[i];
            if (t == PROTO_HELLO || t == PROTO_HELLO_ANS || ((t & PROTO_ANSWER) != 0) == server)
                continue;
            m = sample(t);
            if (proto_encode(1, *n_frames, &m, s + off, cap - off, &len))
                return 0;
            off += len;
            (*n_frames)++;
        }
    return off;
}

/* Feeds s in chunks of the sizes chunk() gives; checks that every frame
 * comes out, in order, and re-encodes to its bytes. */
static void feed_stream(const uint8_t *s, size_t len, size_t n_frames, bool server,
                        size_t (*chunk)(void))
{
    proto_reader r;
    proto_reader_init(&r, server ? PROTO_SIDE_SERVER : PROTO_SIDE_CLIENT, 0);
    size_t pos = 0, got = 0, frame_start = 0;
    while (pos < len) {
        size_t c = chunk();
        if (c > len - pos)
            c = len - pos;
        size_t off = 0;
        while (true) {
            size_t used;
            proto_frame fr;
            int rc = proto_reader_feed(&r, s + pos + off, c - off, &used, &fr);
            off += used;
            if (rc == WP_EAGAIN) {
                CHECK(off == c);
                break;
            }
            CHECK_OK(rc);
            if (rc)
                goto out;
            CHECK(fr.h.request_id == got);
            CHECK(proto_reader_pending(&r) == 0);
            uint8_t again[8192];
            size_t alen;
            CHECK_OK(proto_encode(1, fr.h.request_id, &fr.msg, again, sizeof again, &alen));
            CHECK(frame_start + alen <= len && memcmp(again, s + frame_start, alen) == 0);
            frame_start += alen;
            if (got++ == 0)
                proto_reader_set_version(&r, 1);
        }
        pos += c;
        CHECK(proto_reader_pending(&r) == pos - frame_start);
    }
out:
    CHECK(got == n_frames);
    proto_reader_free(&r);
}

static size_t one(void)
{
    return 1;
}
static size_t random_chunk(void)
{
    switch (rnd() % 4) {
    case 0:
        return 1 + rnd() % 8;
    case 1:
        return 1 + rnd() % 64;
    case 2:
        return 1 + rnd() % 512;
    default:
        return 1 + rnd() % 4096;
    }
}
static size_t whole(void)
{
    return SIZE_MAX;
}

TEST(reader_byte_by_byte_and_random_chunks)
{
    static uint8_t s[65536];
    for (int side = 0; side < 2; side++) {
        size_t n, len = build_stream(s, sizeof s, side == 0, &n);
        REQUIRE(len > 0 && n > 10);
        feed_stream(s, len, n, side == 0, one);
        feed_stream(s, len, n, side == 0, whole);
        for (int i = 0; i < 50; i++)
            feed_stream(s, len, n, side == 0, random_chunk);
    }
}

TEST(reader_zero_copy_and_buffer)
{
    proto_reader r;
    proto_reader_init(&r, PROTO_SIDE_SERVER, 0);
    uint8_t s[4096];
    proto_msg h = sample(PROTO_HELLO);
    size_t hl, used;
    CHECK_OK(proto_encode(1, 0, &h, s, sizeof s, &hl));
    proto_frame fr;
    CHECK_OK(proto_reader_feed(&r, s, hl, &used, &fr));
    CHECK(used == hl && fr.body == s + PROTO_HEADER_SIZE); /* pointed into the input */
    CHECK((const uint8_t *)fr.msg.u.hello.id == s + PROTO_HEADER_SIZE + 12);
    proto_reader_set_version(&r, 1);
    proto_msg a = sample(PROTO_ADD);
    size_t al;
    CHECK_OK(proto_encode(1, 1, &a, s, sizeof s, &al));
    /* in two pieces: the body is buffered */
    CHECK_RC(WP_EAGAIN, proto_reader_feed(&r, s, 40, &used, &fr));
    CHECK(used == 40 && proto_reader_pending(&r) == 40);
    CHECK_OK(proto_reader_feed(&r, s + 40, al - 40, &used, &fr));
    CHECK(used == al - 40 && fr.body != s + PROTO_HEADER_SIZE);
    CHECK(fr.msg.u.add.n_entries == 5 && memcmp(fr.msg.u.add.records, recs5, recs5_len) == 0);
    /* an empty read is fine and consumes nothing */
    CHECK_RC(WP_EAGAIN, proto_reader_feed(&r, NULL, 0, &used, &fr));
    CHECK(used == 0 && proto_reader_pending(&r) == 0);
    /* STATS: empty body, buffered path */
    proto_msg st = {.type = PROTO_STATS};
    size_t sl;
    CHECK_OK(proto_encode(1, 2, &st, s, sizeof s, &sl));
    CHECK(sl == PROTO_HEADER_SIZE);
    CHECK_RC(WP_EAGAIN, proto_reader_feed(&r, s, 31, &used, &fr));
    CHECK_OK(proto_reader_feed(&r, s + 31, 1, &used, &fr));
    CHECK(used == 1 && fr.h.type == PROTO_STATS && fr.h.body_len == 0);
    proto_reader_free(&r);
}

TEST(reader_large_body_released)
{
    /* a 2 MiB ADD buffered in pieces, then small frames: no leak (ASan) */
    size_t cap = 3 * WP_MiB;
    uint8_t *recs = malloc(cap), *f = malloc(cap), *pay = calloc(1, 2 * WP_MiB);
    REQUIRE(recs && f && pay);
    wp_payload p = {.data = pay, .len = 2 * WP_MiB};
    size_t rl = rec_encode(&p, recs);
    proto_msg a = {.type = PROTO_ADD,
                   .u.add = {.log_id = 1, .segment_id = 1, .epoch = 1, .first_entry_id = 0,
                             .lac = -1, .n_entries = 1, .records = recs, .records_len = rl}};
    proto_msg h = sample(PROTO_HELLO);
    size_t len, hl, used;
    CHECK_OK(proto_encode(1, 0, &h, f, cap, &hl));
    CHECK_OK(proto_encode(1, 1, &a, f + hl, cap - hl, &len));
    proto_reader r;
    proto_reader_init(&r, PROTO_SIDE_SERVER, 4 * WP_MiB);
    proto_frame fr;
    CHECK_OK(proto_reader_feed(&r, f, hl, &used, &fr));
    proto_reader_set_version(&r, 1);
    size_t off = hl;
    int frames = 0;
    while (off < hl + len) {
        size_t c = hl + len - off < 100000 ? hl + len - off : 100000;
        int rc = proto_reader_feed(&r, f + off, c, &used, &fr);
        off += used;
        if (rc == 0) {
            frames++;
            CHECK(fr.msg.u.add.records_len == rl);
        } else {
            CHECK_RC(WP_EAGAIN, rc);
        }
    }
    CHECK(frames == 1 && r.buf_cap >= rl);
    proto_msg st = {.type = PROTO_STATS};
    CHECK_OK(proto_encode(1, 2, &st, f, cap, &len));
    CHECK_OK(proto_reader_feed(&r, f, len, &used, &fr));
    CHECK(r.buf == NULL); /* the big buffer went */
    /* the same ADD against a smaller body_max: refused at its header */
    proto_reader r2;
    proto_reader_init(&r2, PROTO_SIDE_SERVER, PROTO_BODY_LIMIT_MIN);
    CHECK_OK(proto_encode(1, 0, &h, f, cap, &hl));
    CHECK_OK(proto_encode(1, 1, &a, f + hl, cap - hl, &len));
    CHECK_OK(proto_reader_feed(&r2, f, hl, &used, &fr));
    proto_reader_set_version(&r2, 1);
    CHECK_RC(WP_ECORRUPT, proto_reader_feed(&r2, f + hl, PROTO_HEADER_SIZE, &used, &fr));
    CHECK(strstr(wp_errmsg(), "body_max") != NULL && r2.buf == NULL);
    proto_reader_free(&r);
    proto_reader_free(&r2);
    free(recs);
    free(f);
    free(pay);
}

/* Feeds frames (each encoded from a message at a version) to a fresh
 * reader; returns the first non-zero result. */
static int feed_frames(bool server, const proto_msg *msgs, const uint16_t *versions, int n,
                       bool set_version)
{
    proto_reader r;
    proto_reader_init(&r, server ? PROTO_SIDE_SERVER : PROTO_SIDE_CLIENT, 0);
    int rc = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        uint8_t f[8192];
        size_t len, used;
        proto_header h = {versions[i], msgs[i].type, (uint64_t)i, 0, 0};
        if (proto_encode(1, (uint64_t)i, &msgs[i], f, sizeof f, &len) != 0)
            return 99;
        h.body_len = (uint32_t)(len - PROTO_HEADER_SIZE);
        h.body_crc = le_get32(f + 20);
        proto_header_encode(&h, f); /* the version under test */
        proto_frame fr;
        rc = proto_reader_feed(&r, f, len, &used, &fr);
        if (rc == 0 && set_version && (fr.h.type == PROTO_HELLO || fr.h.type == PROTO_HELLO_ANS))
            proto_reader_set_version(&r, 1);
    }
    proto_reader_free(&r);
    return rc;
}

TEST(reader_connection_rules)
{
    proto_msg hello = sample(PROTO_HELLO), hans = sample(PROTO_HELLO_ANS),
              fence = sample(PROTO_FENCE), fans = sample(PROTO_FENCE_ANS),
              err = sample(PROTO_ERROR);
    uint16_t v1[] = {1, 1, 1};
    /* the normal openings */
    CHECK_OK(feed_frames(true, (proto_msg[]){hello, fence}, v1, 2, true));
    CHECK_OK(feed_frames(false, (proto_msg[]){hans, fans}, v1, 2, true));
    CHECK_OK(feed_frames(false, (proto_msg[]){err}, v1, 1, true)); /* HELLO refused */
    /* a request before HELLO; an answer to a server; a request to a client */
    CHECK_RC(WP_ECORRUPT, feed_frames(true, (proto_msg[]){fence}, v1, 1, true));
    CHECK(strstr(wp_errmsg(), "before HELLO") != NULL);
    CHECK_RC(WP_ECORRUPT, feed_frames(true, (proto_msg[]){hello, fans}, v1, 2, true));
    CHECK_RC(WP_ECORRUPT, feed_frames(true, (proto_msg[]){hans}, v1, 1, true));
    CHECK_RC(WP_ECORRUPT, feed_frames(false, (proto_msg[]){hans, fence}, v1, 2, true));
    CHECK_RC(WP_ECORRUPT, feed_frames(false, (proto_msg[]){fans}, v1, 1, true));
    /* a second HELLO; a frame before the version was set */
    CHECK_RC(WP_ECORRUPT, feed_frames(true, (proto_msg[]){hello, hello}, v1, 2, true));
    CHECK(strstr(wp_errmsg(), "second HELLO") != NULL);
    CHECK_RC(WP_ECORRUPT, feed_frames(false, (proto_msg[]){hans, hans}, v1, 2, true));
    CHECK_RC(WP_ECORRUPT, feed_frames(true, (proto_msg[]){hello, fence}, v1, 2, false));
    /* an unsupported version in a header is refused before anything else */
    uint16_t v2[] = {2, 1};
    CHECK_RC(WP_ECORRUPT, feed_frames(true, (proto_msg[]){hello}, v2, 1, true));
    uint16_t v12[] = {1, 2};
    CHECK_RC(WP_ECORRUPT, feed_frames(true, (proto_msg[]){hello, fence}, v12, 2, true));
}

TEST(reader_errors_are_sticky_and_mid_stream)
{
    /* a good stream with one damaged frame in the middle: frames before it
     * come out, then the error, then the same error for ever */
    static uint8_t s[65536];
    size_t n, len = build_stream(s, sizeof s, true, &n);
    REQUIRE(len > 0);
    proto_reader r;
    proto_reader_init(&r, PROTO_SIDE_SERVER, 0);
    /* find the 4th frame and damage its body */
    size_t off = 0;
    for (int i = 0; i < 4; i++)
        off += PROTO_HEADER_SIZE + le_get32(s + off + 16);
    CHECK(le_get32(s + off + 16) > 0);
    s[off + PROTO_HEADER_SIZE] ^= 0x10;
    size_t pos = 0, used;
    int frames = 0, rc;
    proto_frame fr;
    while ((rc = proto_reader_feed(&r, s + pos, len - pos, &used, &fr)) == 0) {
        pos += used;
        if (frames++ == 0)
            proto_reader_set_version(&r, 1);
    }
    CHECK(frames == 4);
    CHECK_RC(WP_ECORRUPT, rc);
    CHECK(strstr(wp_errmsg(), "protocol error") && strstr(wp_errmsg(), "body crc mismatch") &&
          strstr(wp_errmsg(), "request 4"));
    CHECK_RC(WP_ECORRUPT, proto_reader_feed(&r, s, len, &used, &fr));
    CHECK(used == 0);
    proto_reader_free(&r);
    /* byte by byte: the header error shows at its 32nd byte */
    proto_reader_init(&r, PROTO_SIDE_SERVER, 0);
    uint8_t bad[PROTO_HEADER_SIZE];
    memcpy(bad, s, sizeof bad);
    bad[0] = 'X';
    for (size_t i = 0; i < PROTO_HEADER_SIZE - 1; i++) {
        CHECK_RC(WP_EAGAIN, proto_reader_feed(&r, bad + i, 1, &used, &fr));
        CHECK(proto_reader_pending(&r) == i + 1); /* a truncated header: EOF here is a cut */
    }
    CHECK_RC(WP_ECORRUPT, proto_reader_feed(&r, bad + 31, 1, &used, &fr));
    CHECK(strstr(wp_errmsg(), "bad magic") != NULL);
    proto_reader_free(&r);
}

TEST(reader_every_truncation)
{
    /* a frame cut at every length never yields a frame */
    proto_msg h = sample(PROTO_HELLO), a = sample(PROTO_ADD);
    uint8_t s[4096];
    size_t hl, al, used;
    CHECK_OK(proto_encode(1, 0, &h, s, sizeof s, &hl));
    CHECK_OK(proto_encode(1, 1, &a, s + hl, sizeof s - hl, &al));
    for (size_t cut = 0; cut < al; cut++) {
        proto_reader r;
        proto_reader_init(&r, PROTO_SIDE_SERVER, 0);
        proto_frame fr;
        CHECK_OK(proto_reader_feed(&r, s, hl, &used, &fr));
        proto_reader_set_version(&r, 1);
        CHECK_RC(WP_EAGAIN, proto_reader_feed(&r, s + hl, cut, &used, &fr));
        CHECK(used == cut && proto_reader_pending(&r) == cut);
        proto_reader_free(&r);
    }
}

TEST(helpers)
{
    CHECK(proto_version_choose(1, 1, 1, 1) == 1);
    CHECK(proto_version_choose(1, 5, 3, 9) == 5);
    CHECK(proto_version_choose(3, 9, 1, 5) == 5);
    CHECK(proto_version_choose(1, 2, 3, 4) == 0);
    CHECK(proto_version_choose(4, 4, 1, 3) == 0);
    proto_error e = {WP_ENOSPC, "disk 97% full", 13};
    CHECK_RC(WP_ENOSPC, proto_error_rc(&e));
    CHECK(strcmp(wp_errmsg(), "server: disk 97% full") == 0);
}

int main(void)
{
    RUN(golden_worked_example);
    RUN(round_trip_every_message);
    RUN(rebase_every_message);
    RUN(round_trip_edges);
    RUN(round_trip_large_add);
    RUN(header_every_bit_flip);
    RUN(header_bad_fields);
    RUN(body_crc_and_every_bit_flip);
    RUN(body_bad_ids_and_bounds);
    RUN(body_bad_records);
    RUN(body_trailing_bytes_fixed_types);
    RUN(encode_refuses_bad_messages);
    RUN(reader_byte_by_byte_and_random_chunks);
    RUN(reader_zero_copy_and_buffer);
    RUN(reader_large_body_released);
    RUN(reader_connection_rules);
    RUN(reader_errors_are_sticky_and_mid_stream);
    RUN(reader_every_truncation);
    RUN(helpers);
    return test_done();
}
