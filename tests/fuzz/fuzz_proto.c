/* fuzz_proto.c — libFuzzer target for the wire protocol codec
 * (docs/protocol.md, src/net/proto.h).
 *
 * The input is a byte stream from a peer. It goes to the frame reader of
 * both sides, once whole and once in small chunks: both must yield the
 * same frames and end the same way, and every frame that comes out must
 * re-encode to exactly the bytes it came from (the encoding is canonical,
 * so nothing the reader accepts is outside what the encoder can produce).
 * The input is also decoded as the body of every message type: a body that
 * decodes must re-encode to the same bytes. Each input is tried as is and
 * with its CRCs (frame headers, bodies, records) recomputed, so the fuzzer
 * gets past them to the field rules. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/limits.h"
#include "codec/codec.h"
#include "codec/le.h"
#include "net/proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint16_t all_types[] = {
    PROTO_HELLO,     PROTO_ADD,      PROTO_FENCE,        PROTO_READ,         PROTO_READ_LAC,
    PROTO_COMPLETE,  PROTO_DELETE,   PROTO_STATS,        PROTO_HELLO_ANS,    PROTO_ADD_ANS,
    PROTO_FENCE_ANS, PROTO_READ_ANS, PROTO_READ_LAC_ANS, PROTO_COMPLETE_ANS, PROTO_DELETE_ANS,
    PROTO_STATS_ANS, PROTO_ERROR};
#define N_TYPES (sizeof all_types / sizeof all_types[0])
#define FRAMES_MAX 64

/* What a reader made of a stream. */
typedef struct {
    int rc; /* the last result: EAGAIN at the end, or the error */
    size_t frames;
    size_t ends[FRAMES_MAX]; /* stream offset where each frame ended */
    size_t pending;
} outcome;

/* A decoded message must re-encode to exactly the frame's bytes. */
static void check_reencode(const proto_frame *fr, const uint8_t *bytes, size_t len)
{
    size_t cap = proto_frame_size(&fr->msg), got = 0;
    if (cap != len)
        abort();
    uint8_t *again = malloc(cap);
    if (!again)
        abort();
    if (proto_encode(fr->h.version, fr->h.request_id, &fr->msg, again, cap, &got) != 0)
        abort();
    if (got != len || memcmp(again, bytes, len) != 0)
        abort();
    free(again);
}

/* Feeds the stream in chunks of `chunk` bytes (0: all at once). */
static outcome run_reader(const uint8_t *s, size_t n, enum proto_side side, size_t chunk)
{
    outcome o = {.rc = WP_EAGAIN};
    proto_reader r;
    proto_reader_init(&r, side, PROTO_BODY_LIMIT_MIN); /* bounded allocations */
    size_t pos = 0, frame_start = 0;
    while (pos < n && o.frames < FRAMES_MAX) {
        size_t c = chunk && chunk < n - pos ? chunk : n - pos, used = 0;
        proto_frame fr;
        int rc = proto_reader_feed(&r, s + pos, c, &used, &fr);
        if (used > c)
            abort();
        pos += used;
        o.rc = rc;
        if (rc == WP_EAGAIN) {
            if (used != c)
                abort();
            continue;
        }
        if (rc != 0) {
            if (rc != WP_ECORRUPT)
                abort();
            break;
        }
        check_reencode(&fr, s + frame_start, pos - frame_start);
        if (fr.h.type == PROTO_HELLO || fr.h.type == PROTO_HELLO_ANS)
            proto_reader_set_version(&r, fr.h.version);
        o.ends[o.frames++] = pos;
        frame_start = pos;
    }
    o.pending = proto_reader_pending(&r);
    if (o.rc == WP_EAGAIN && o.pending != pos - frame_start)
        abort();
    proto_reader_free(&r);
    return o;
}

static void check_stream(const uint8_t *s, size_t n)
{
    for (int side = PROTO_SIDE_SERVER; side <= PROTO_SIDE_CLIENT; side++) {
        outcome whole = run_reader(s, n, (enum proto_side)side, 0);
        size_t chunk = 1 + (n ? s[n - 1] % 13 : 0);
        outcome parts = run_reader(s, n, (enum proto_side)side, chunk);
        if (whole.rc != parts.rc || whole.frames != parts.frames ||
            memcmp(whole.ends, parts.ends, whole.frames * sizeof whole.ends[0]) != 0)
            abort();
        if (whole.rc == WP_EAGAIN && whole.pending != parts.pending)
            abort();
    }
}

/* The input as the body of every type. */
static void check_bodies(const uint8_t *b, size_t n)
{
    if (n > UINT32_MAX)
        return;
    for (size_t i = 0; i < N_TYPES; i++) {
        proto_header h = {1, all_types[i], 42, (uint32_t)n, crc32c(0, b, n)};
        proto_msg m;
        if (proto_decode(&h, b, &m) != 0)
            continue;
        uint8_t *f = malloc(PROTO_HEADER_SIZE + n);
        if (!f)
            abort();
        proto_header_encode(&h, f);
        if (n)
            memcpy(f + PROTO_HEADER_SIZE, b, n);
        proto_frame fr = {.h = h, .body = b, .msg = m};
        check_reencode(&fr, f, PROTO_HEADER_SIZE + n);
        /* and the header decodes: the body's length suits its type */
        proto_header back;
        if (proto_header_decode(f, &back) != 0 || back.body_len != n)
            abort();
        free(f);
    }
}

/* Recomputes the crc of each record at b (as far as their lengths chain). */
static void fix_records(uint8_t *b, size_t n)
{
    size_t off = 0;
    while (n - off >= 8 && le_get32(b + off + 4) <= n - off - 8) {
        size_t body = le_get32(b + off + 4);
        le_put32(b + off, crc32c(0, b + off + 4, body + 4));
        off += 8 + body;
    }
}

/* Recomputes the crcs of the frames of a stream (records too). */
static void fix_stream(uint8_t *s, size_t n)
{
    size_t off = 0;
    while (n - off >= PROTO_HEADER_SIZE) {
        uint8_t *f = s + off;
        size_t body = le_get32(f + 16), avail = n - off - PROTO_HEADER_SIZE;
        if (body > avail)
            body = avail;
        uint16_t type = le_get16(f + 6);
        size_t fixed = type == PROTO_ADD        ? PROTO_ADD_FIXED
                       : type == PROTO_READ_ANS ? PROTO_READ_ANS_FIXED
                                                : body;
        if (fixed < body)
            fix_records(f + PROTO_HEADER_SIZE + fixed, body - fixed);
        le_put32(f + 20, crc32c(0, f + PROTO_HEADER_SIZE, body));
        le_put32(f + 28, crc32c(0, f, 28));
        off += PROTO_HEADER_SIZE + body;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_stream(data, size);
    check_bodies(data, size);
    uint8_t *fixed = malloc(size ? size : 1);
    if (!fixed)
        abort();
    memcpy(fixed, data, size);
    fix_stream(fixed, size);
    check_stream(fixed, size);
    memcpy(fixed, data, size);
    /* as an ADD or READ_ANS body with its records' crcs fixed */
    if (size > PROTO_ADD_FIXED) {
        fix_records(fixed + PROTO_ADD_FIXED, size - PROTO_ADD_FIXED);
        check_bodies(fixed, size);
        memcpy(fixed, data, size);
    }
    if (size > PROTO_READ_ANS_FIXED) {
        fix_records(fixed + PROTO_READ_ANS_FIXED, size - PROTO_READ_ANS_FIXED);
        check_bodies(fixed, size);
    }
    free(fixed);
    return 0;
}
