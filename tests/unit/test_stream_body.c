/* test_stream_body.c — a produce request's body as the client streams it
 * into curl (sc_body, client/stream_body.c): whatever the sizes curl asks
 * for, the bytes are exactly the encoding of docs/streaming-api.md §7
 * (wpm_put_req_hdr + wpm_put_req_msg), with the term of the attempt, and
 * a rewind (curl sending again on a fresh connection) starts over. */
#include <stdint.h>

#include "client/stream_client.h"
#include "codec/wpm.h"
#include "test.h"

static const char *keys[] = {"k", "quote\"key"}, *vals[] = {"v", "line\nbreak"};
static uint8_t big[70000];

static size_t reference(uint8_t *out, int64_t term, const char *id, const wp_payload *m,
                        size_t n, int64_t seq0)
{
    uint8_t *w = wpm_put_req_hdr(out, term, id, strlen(id));
    for (size_t i = 0; i < n; i++)
        w = wpm_put_req_msg(w, seq0 + (int64_t)i, &m[i]);
    return (size_t)(w - out);
}

/* Reads the whole body in pieces of the given sizes (cycled). */
static size_t read_all(sc_body *b, uint8_t *out, size_t cap, const size_t *sizes, size_t ns)
{
    size_t got = 0;
    for (size_t j = 0;; j++) {
        size_t want = sizes[j % ns];
        if (want > cap - got)
            want = cap - got;
        size_t k = sc_body_read(b, (char *)out + got, want);
        if (k == 0)
            return got;
        if (k < want && sc_body_read(b, (char *)out + got + k, 1) != 0)
            return (size_t)-1; /* a short piece before the end */
        got += k;
    }
}

TEST(body_equals_the_encoding)
{
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (uint8_t)(i * 7);
    wp_payload m[] = {
        {.data = "hello", .len = 5, .n_props = 2, .prop_keys = keys, .prop_values = vals},
        {.data = "", .len = 0},
        {.data = big, .len = sizeof big},
        {.data = "\0\1", .len = 2, .n_props = 1, .prop_keys = keys, .prop_values = vals},
        {.data = "", .len = 0, .n_props = 2, .prop_keys = keys, .prop_values = vals},
    };
    size_t n = sizeof m / sizeof m[0];
    static uint8_t want[80000], got[80000];
    size_t total = reference(want, 7, "p-1", m, n, 41);
    size_t head_max = wpm_req_hdr_size(3);
    for (size_t i = 0; i < n; i++) {
        size_t h = WPM_REQ_MSG_FIXED + wpm_props_size(m[i].n_props, m[i].prop_keys,
                                                      m[i].prop_values);
        head_max = h > head_max ? h : head_max;
    }
    sc_body b;
    REQUIRE(sc_body_init(&b, "p-1", m, n, 41, total, head_max) == WP_OK);
    static const size_t sizes[][3] = {{1, 1, 1}, {7, 3, 100}, {512 * 1024, 1, 1}, {13, 4096, 2}};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        b.term = 7;
        sc_body_rewind(&b);
        memset(got, 0, sizeof got);
        size_t k = read_all(&b, got, sizeof got, sizes[s], 3);
        CHECK(k == total && memcmp(got, want, total) == 0);
        CHECK(sc_body_read(&b, (char *)got, 100) == 0); /* the end stays the end */
    }
    /* A rewind in the middle, for another attempt at another term. */
    b.term = 7;
    sc_body_rewind(&b);
    CHECK(sc_body_read(&b, (char *)got, 1000) == 1000);
    b.term = 9;
    sc_body_rewind(&b);
    size_t total9 = reference(want, 9, "p-1", m, n, 41);
    CHECK(total9 == total && read_all(&b, got, sizeof got, (size_t[]){4096}, 1) == total &&
          memcmp(got, want, total) == 0);
    sc_body_free(&b);
}

int main(void)
{
    RUN(body_equals_the_encoding);
    return test_done();
}
