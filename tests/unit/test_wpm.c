/* test_wpm.c — the streaming service's binary encoding (codec/wpm.h,
 * docs/streaming-api.md §7): golden bytes of a request, round trips of
 * requests, answers and stream frames, every truncation refused (request)
 * or reported incomplete (stream, fed at every split point), and each rule
 * of the decoders. */
#include <stdint.h>

#include "base/limits.h"
#include "codec/le.h"
#include "codec/wpm.h"
#include "test.h"

static const char *k2[] = {"color", "w"}, *v2[] = {"blue", ""};

/* A request of 3 messages (producer "p1", term 7) into buf. */
static size_t make_request(uint8_t *buf)
{
    uint8_t *w = wpm_put_req_hdr(buf, 7, "p1", 2);
    wp_payload m0 = {.data = "hello", .len = 5};
    wp_payload m1 = {.data = "\0\1\2", .len = 3, .n_props = 2, .prop_keys = k2, .prop_values = v2};
    wp_payload m2 = {.data = NULL, .len = 0};
    w = wpm_put_req_msg(w, 41, &m0);
    w = wpm_put_req_msg(w, 42, &m1);
    w = wpm_put_req_msg(w, 43, &m2);
    return (size_t)(w - buf);
}

TEST(request_golden_bytes)
{
    uint8_t b[64];
    uint8_t *w = wpm_put_req_hdr(b, 7, "p1", 2);
    wp_payload m = {.data = "hi", .len = 2, .n_props = 1, .prop_keys = k2, .prop_values = v2};
    w = wpm_put_req_msg(w, 5, &m);
    static const uint8_t want[] = {
        'W', 'P', 'M', '1', 7, 0, 0, 0, 0, 0, 0, 0, 2, 0, 'p', '1',      /* header */
        5, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 1, 0,                        /* seq, len, n_props */
        5, 0, 4, 0, 0, 0, 'c', 'o', 'l', 'o', 'r', 0, 'b', 'l', 'u', 'e', 0, /* property */
        'h', 'i'};
    CHECK((size_t)(w - b) == sizeof want && memcmp(b, want, sizeof want) == 0);
    CHECK(wpm_req_hdr_size(2) + WPM_REQ_MSG_FIXED + wpm_props_size(1, k2, v2) + 2 == sizeof want);
}

TEST(request_round_trip)
{
    uint8_t b[256];
    size_t n = make_request(b), off;
    char why[WPM_WHY_MAX];
    wpm_req_hdr h;
    CHECK_OK(wpm_req_hdr_decode(b, n, &h, &off, why));
    CHECK(h.term == 7 && strcmp(h.producer, "p1") == 0 && off == 16);
    wpm_msg m;
    CHECK_OK(wpm_req_msg_decode(b, n, &off, 100, 64, &m, why));
    CHECK(m.seq == 41 && m.len == 5 && memcmp(m.data, "hello", 5) == 0 && m.n_props == 0);
    CHECK_OK(wpm_req_msg_decode(b, n, &off, 100, 64, &m, why));
    CHECK(m.seq == 42 && m.len == 3 && memcmp(m.data, "\0\1\2", 3) == 0 && m.n_props == 2);
    size_t po = 0, kl, vl;
    const char *k, *v;
    CHECK(wpm_prop_next(&m, &po, &k, &kl, &v, &vl) && strcmp(k, "color") == 0 && kl == 5 &&
          strcmp(v, "blue") == 0 && vl == 4);
    CHECK(wpm_prop_next(&m, &po, &k, &kl, &v, &vl) && strcmp(k, "w") == 0 && strcmp(v, "") == 0);
    CHECK(!wpm_prop_next(&m, &po, &k, &kl, &v, &vl));
    CHECK_OK(wpm_req_msg_decode(b, n, &off, 100, 64, &m, why));
    CHECK(m.seq == 43 && m.len == 0 && off == n);
    /* No producer, no term. */
    uint8_t *w = wpm_put_req_hdr(b, -1, NULL, 0);
    CHECK(w - b == WPM_REQ_HDR_FIXED);
    CHECK_OK(wpm_req_hdr_decode(b, (size_t)(w - b), &h, &off, why));
    CHECK(h.term == -1 && h.producer[0] == '\0');
}

/* Every cut of a request inside a message is refused, with a reason. */
TEST(request_truncations)
{
    uint8_t b[256];
    size_t n = make_request(b);
    char why[WPM_WHY_MAX];
    int refused = 0, cuts = 0;
    for (size_t cut = 0; cut < n; cut++) {
        wpm_req_hdr h;
        size_t off;
        if (wpm_req_hdr_decode(b, cut, &h, &off, why) != 0) {
            refused++;
            cuts++;
            CHECK(why[0]);
            continue;
        }
        wpm_msg m;
        int rc = 0;
        while (rc == 0 && off < cut)
            rc = wpm_req_msg_decode(b, cut, &off, 100, 64, &m, why);
        bool at_boundary = rc == 0; /* the cut fell between two messages */
        cuts++;
        if (!at_boundary) {
            refused++;
            CHECK(why[0]);
        }
    }
    /* Only the cuts right after the header and after messages 1 and 2 are
     * whole requests (fewer messages). */
    CHECK(cuts == (int)n && refused == (int)n - 3);
}

TEST(request_rules)
{
    uint8_t b[256];
    char why[WPM_WHY_MAX];
    wpm_req_hdr h;
    wpm_msg m;
    size_t off;
    size_t n = make_request(b);
    b[0] = 'X'; /* magic */
    CHECK(wpm_req_hdr_decode(b, n, &h, &off, why) == -1 && strstr(why, "WPM1"));
    n = make_request(b);
    le_puti64(b + 4, -2); /* term */
    CHECK(wpm_req_hdr_decode(b, n, &h, &off, why) == -1 && strstr(why, "term"));
    n = make_request(b);
    b[15] = ' '; /* a producer id with a space */
    CHECK(wpm_req_hdr_decode(b, n, &h, &off, why) == -1 && strstr(why, "producer"));
    n = make_request(b);
    le_put16(b + 12, WPM_PRODUCER_MAX + 1);
    CHECK(wpm_req_hdr_decode(b, n, &h, &off, why) == -1 && strstr(why, "producer"));
    /* seq below -1, at 2^53 */
    n = make_request(b);
    le_puti64(b + 16, -5);
    off = 16;
    CHECK(wpm_req_msg_decode(b, n, &off, 100, 64, &m, why) == -1 && strstr(why, "seq"));
    le_puti64(b + 16, WPM_SEQ_MAX);
    off = 16;
    CHECK(wpm_req_msg_decode(b, n, &off, 100, 64, &m, why) == -1 && strstr(why, "seq"));
    /* payload above the maximum; properties above the maximum */
    n = make_request(b);
    off = 16;
    CHECK(wpm_req_msg_decode(b, n, &off, 4, 64, &m, why) == -1 && strstr(why, "maximum"));
    CHECK(m.len == 5); /* the caller tells "too big" from "malformed" by it */
    off = 16;
    wpm_req_msg_decode(b, n, &off, 100, 64, &m, why);
    CHECK(wpm_req_msg_decode(b, n, &off, 100, 1, &m, why) == -1 && strstr(why, "properties"));
    /* a key without its 0 byte; a value that is not UTF-8 */
    size_t m1 = 16 + WPM_REQ_MSG_FIXED + 5;
    n = make_request(b);
    b[m1 + WPM_REQ_MSG_FIXED + 6 + 5] = 'x';
    off = m1;
    CHECK(wpm_req_msg_decode(b, n, &off, 100, 64, &m, why) == -1 && strstr(why, "UTF-8"));
    n = make_request(b);
    b[m1 + WPM_REQ_MSG_FIXED + 6 + 6] = 0xff;
    off = m1;
    CHECK(wpm_req_msg_decode(b, n, &off, 100, 64, &m, why) == -1 && strstr(why, "UTF-8"));
    /* a property value length that runs past the body */
    n = make_request(b);
    le_put32(b + m1 + WPM_REQ_MSG_FIXED + 2, 1000);
    off = m1;
    CHECK(wpm_req_msg_decode(b, n, &off, 100, 64, &m, why) == -1 && strstr(why, "ends inside"));
}

TEST(answer_round_trip)
{
    uint8_t b[WPM_ANS_HDR_FIXED + 3 * WPM_ANS_ID];
    uint8_t *w = wpm_put_ans_hdr(b, 9, 3);
    w = wpm_put_ans_id(w, (wp_msg_id){3, 17}, false);
    w = wpm_put_ans_id(w, (wp_msg_id){-1, -1}, true);
    w = wpm_put_ans_id(w, (wp_msg_id){3, 18}, false);
    CHECK((size_t)(w - b) == sizeof b);
    int64_t term;
    uint32_t count;
    const uint8_t *ids;
    char why[WPM_WHY_MAX];
    CHECK_OK(wpm_ans_decode(b, sizeof b, &term, &count, &ids, why));
    CHECK(term == 9 && count == 3);
    wp_msg_id id;
    bool dup;
    wpm_ans_id(ids, 0, &id, &dup);
    CHECK(id.segment_id == 3 && id.entry_id == 17 && !dup);
    wpm_ans_id(ids, 1, &id, &dup);
    CHECK(id.segment_id == -1 && dup);
    wpm_ans_id(ids, 2, &id, &dup);
    CHECK(id.entry_id == 18 && !dup);
    CHECK(wpm_ans_decode(b, sizeof b - 1, &term, &count, &ids, why) == -1);
    le_put32(b + 12, 4);
    CHECK(wpm_ans_decode(b, sizeof b, &term, &count, &ids, why) == -1);
    CHECK(wpm_ans_decode(b, 3, &term, &count, &ids, why) == -1);
}

/* A stream: two messages, a heartbeat, an end frame; decoded from every
 * prefix: a prefix that ends inside a frame is "not complete yet" (0),
 * never an error, and the frames come out the same. */
TEST(stream_frames_at_every_split)
{
    uint8_t b[512];
    const char *keys[] = {"wp.p", "wp.s", "k"}, *vals[] = {"prod", "12", "v"};
    uint8_t *w = b;
    w = wpm_put_frame_msg(w, (wp_msg_id){2, 5}, (const uint8_t *)"abc", 3, 3, keys, vals);
    CHECK((size_t)(w - b) == WPM_FRAME_MSG_FIXED + wpm_props_size(3, keys, vals) + 3);
    w = wpm_put_frame_msg(w, (wp_msg_id){2, 6}, NULL, 0, 0, NULL, NULL);
    *w++ = WPM_FRAME_HEARTBEAT;
    const char *end = "{\"end\":\"moved\"}";
    *w++ = WPM_FRAME_END;
    le_put32(w, (uint32_t)strlen(end));
    memcpy(w + 4, end, strlen(end));
    w += 4 + strlen(end);
    size_t n = (size_t)(w - b);
    for (size_t cut = 0; cut <= n; cut++) {
        size_t at = 0;
        int frames = 0;
        char types[8] = "";
        for (;;) {
            char type, why[WPM_WHY_MAX];
            wpm_msg m;
            const char *e;
            size_t el, need;
            long long k = wpm_frame_decode(b + at, cut - at, 1 << 20, &type, &m, &e, &el, &need, why);
            CHECK(k >= 0);
            if (k <= 0)
                break;
            if (type == WPM_FRAME_MSG && frames == 0) {
                size_t po = 0, kl, vl;
                const char *pk, *pv;
                CHECK(m.id.segment_id == 2 && m.id.entry_id == 5 && m.len == 3 &&
                      memcmp(m.data, "abc", 3) == 0 && m.n_props == 3);
                CHECK(wpm_prop_next(&m, &po, &pk, &kl, &pv, &vl) && strcmp(pv, "prod") == 0);
            }
            if (type == WPM_FRAME_END)
                CHECK(el == strlen(end) && memcmp(e, end, el) == 0);
            types[frames++] = type;
            at += (size_t)k;
        }
        if (cut == n)
            CHECK(strcmp(types, "MMHE") == 0 && at == n);
    }
}

TEST(stream_rules)
{
    uint8_t b[128];
    char type, why[WPM_WHY_MAX];
    wpm_msg m;
    const char *e;
    size_t el, need;
    uint8_t *w = wpm_put_frame_msg(b, (wp_msg_id){1, 1}, (const uint8_t *)"0123456789", 10, 0,
                                   NULL, NULL);
    size_t n = (size_t)(w - b);
    CHECK(wpm_frame_decode(b, n, 1 << 20, &type, &m, &e, &el, &need, why) == (long long)n);
    /* above the frame bound */
    CHECK(wpm_frame_decode(b, n, 20, &type, &m, &e, &el, &need, why) == -1);
    /* incomplete: says how much it needs */
    CHECK(wpm_frame_decode(b, n - 1, 1 << 20, &type, &m, &e, &el, &need, why) == 0 && need == n);
    /* a negative id */
    le_puti64(b + 1, -1);
    CHECK(wpm_frame_decode(b, n, 1 << 20, &type, &m, &e, &el, &need, why) == -1);
    /* unknown type */
    b[0] = 'Z';
    CHECK(wpm_frame_decode(b, n, 1 << 20, &type, &m, &e, &el, &need, why) == -1 &&
          strstr(why, "unknown"));
    /* an end frame above its bound */
    b[0] = WPM_FRAME_END;
    le_put32(b + 1, WPM_END_JSON_MAX + 1);
    CHECK(wpm_frame_decode(b, n, 1 << 20, &type, &m, &e, &el, &need, why) == -1);
    /* too many properties */
    w = wpm_put_frame_msg(b, (wp_msg_id){1, 1}, NULL, 0, 0, NULL, NULL);
    le_put16(b + 21, WP_PROPS_MAX + 1);
    CHECK(wpm_frame_decode(b, (size_t)(w - b), 1 << 20, &type, &m, &e, &el, &need, why) == -1);
}

TEST(utf8)
{
    CHECK(wpm_utf8_valid("", 0) && wpm_utf8_valid("h\xc3\xa9", 3));
    CHECK(!wpm_utf8_valid("a\0b", 3));             /* a 0 byte */
    CHECK(!wpm_utf8_valid("\xc3", 1));             /* cut */
    CHECK(!wpm_utf8_valid("\xc0\x80", 2));         /* overlong */
    CHECK(!wpm_utf8_valid("\xed\xa0\x80", 3));     /* a surrogate */
    CHECK(wpm_utf8_valid("\xf0\x9f\x98\x80", 4));  /* U+1F600 */
}

int main(void)
{
    RUN(request_golden_bytes);
    RUN(request_round_trip);
    RUN(request_truncations);
    RUN(request_rules);
    RUN(answer_round_trip);
    RUN(stream_frames_at_every_split);
    RUN(stream_rules);
    RUN(utf8);
    return test_done();
}
