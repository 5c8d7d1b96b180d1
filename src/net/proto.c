/* proto.c — the LogStore wire protocol: docs/protocol.md.
 *
 *   frame  := header body
 *   header := "WPRP" version:u16 type:u16 request_id:u64 body_len:u32
 *             body_crc:u32 reserved:u32 header_crc:u32
 * Bodies by type: §4 (HELLO), §5 (requests and answers), §6 (ERROR).
 * One rule set per message (check_*) serves both the encoders (WP_EINVAL)
 * and the decoders (WP_ECORRUPT). */
#include "net/proto.h"

#include <assert.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "codec/codec.h"
#include "codec/le.h"

#define MAGIC_LEN 4
#define HDR_CRC_OFF 28
#define REC_MIN_SIZE 12 /* smallest record (docs/format.md §4) */
#define HELLO_FIXED 12
#define ERROR_FIXED 8
#define STATE_SIZE 24

/* ---- message types (§3.2) ---------------------------------------------- */

typedef struct {
    uint16_t type;
    const char *name;
    uint32_t fixed;            /* body bytes before the variable part */
    uint32_t var_min, var_max; /* bytes of the id, message or records after them */
} type_info;

static const type_info types[] = {
    {PROTO_HELLO, "HELLO", HELLO_FIXED, 1, PROTO_ID_MAX},
    {PROTO_ADD, "ADD", PROTO_ADD_FIXED, 0, PROTO_RECORDS_BYTES_MAX},
    {PROTO_FENCE, "FENCE", 24, 0, 0},
    {PROTO_READ, "READ", 40, 0, 0},
    {PROTO_READ_LAC, "READ_LAC", 16, 0, 0},
    {PROTO_COMPLETE, "COMPLETE", 32, 0, 0},
    {PROTO_DELETE, "DELETE", 16, 0, 0},
    {PROTO_STATS, "STATS", 0, 0, 0},
    {PROTO_HELLO_ANS, "HELLO_ANS", HELLO_FIXED, 1, PROTO_ID_MAX},
    {PROTO_ADD_ANS, "ADD_ANS", 8, 0, 0},
    {PROTO_FENCE_ANS, "FENCE_ANS", STATE_SIZE, 0, 0},
    {PROTO_READ_ANS, "READ_ANS", PROTO_READ_ANS_FIXED, 0, PROTO_RECORDS_BYTES_MAX},
    {PROTO_READ_LAC_ANS, "READ_LAC_ANS", STATE_SIZE, 0, 0},
    {PROTO_COMPLETE_ANS, "COMPLETE_ANS", STATE_SIZE, 0, 0},
    {PROTO_DELETE_ANS, "DELETE_ANS", 0, 0, 0},
    {PROTO_STATS_ANS, "STATS_ANS", 32, 0, 0},
    {PROTO_ERROR, "ERROR", ERROR_FIXED, 0, PROTO_ERRMSG_MAX},
};

static const type_info *type_find(uint16_t type)
{
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        if (types[i].type == type)
            return &types[i];
    return NULL;
}

const char *proto_type_name(uint16_t type)
{
    const type_info *t = type_find(type);
    return t ? t->name : "unknown";
}

/* wp__err(rc, "<what>: <detail>"). The detail is formatted first, so an
 * argument may be wp_errmsg() itself. */
static int fail(int rc, const char *what, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(int rc, const char *what, const char *fmt, ...)
{
    char buf[WP_ERRMSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    return wp__err(rc, "%s: %s", what, buf);
}

/* Inside a check: `rc` (WP_EINVAL encoding, WP_ECORRUPT decoding) and
 * `what` (the message's name) are in scope. */
#define RULE(cond, ...)                                                                            \
    do {                                                                                           \
        if (!(cond))                                                                               \
            return fail(rc, what, __VA_ARGS__);                                                    \
    } while (0)

#define RULE_MIN(value, name, min)                                                                 \
    RULE((value) >= (min), "%s %" PRId64 " is below %d", name, (int64_t)(value), (min))

/* ---- field rules, shared by encoders and decoders ---------------------- */

static int check_id_string(int rc, const char *what, const char *s, size_t len)
{
    RULE(len >= 1 && len <= PROTO_ID_MAX, "id of %zu bytes, want 1..%d", len, PROTO_ID_MAX);
    RULE(s != NULL, "id is NULL");
    for (size_t i = 0; i < len; i++)
        RULE(s[i] >= 0x21 && s[i] <= 0x7e, "id byte %zu is 0x%02x, not printable ASCII", i,
             (unsigned)(uint8_t)s[i]);
    return 0;
}

static int check_body_max(int rc, const char *what, uint32_t body_max)
{
    RULE(body_max >= PROTO_BODY_LIMIT_MIN && body_max <= PROTO_BODY_MAX,
         "body_max %" PRIu32 " outside %lld..%lld", body_max, (long long)PROTO_BODY_LIMIT_MIN,
         (long long)PROTO_BODY_MAX);
    return 0;
}

/* Exactly n records (docs/format.md §4) filling len bytes. */
static int check_records(int rc, const char *what, const uint8_t *recs, size_t len, uint32_t n)
{
    RULE(n <= PROTO_ENTRIES_MAX, "n_entries %" PRIu32 " above %d", n, PROTO_ENTRIES_MAX);
    RULE(len <= PROTO_RECORDS_BYTES_MAX, "%zu bytes of records, above %lld", len,
         (long long)PROTO_RECORDS_BYTES_MAX);
    RULE((n == 0) == (len == 0), "n_entries %" PRIu32 " with %zu bytes of records", n, len);
    RULE(len >= (uint64_t)REC_MIN_SIZE * n,
         "%zu bytes of records cannot hold n_entries %" PRIu32 " records", len, n);
    RULE(len == 0 || recs != NULL, "records are NULL");
    size_t off = 0;
    for (uint32_t i = 0; i < n; i++) {
        rec_view v;
        size_t used;
        if (rec_decode(recs + off, len - off, &v, &used) != 0)
            return fail(rc, what, "record %" PRIu32 " of %" PRIu32 ": %s", i, n, wp_errmsg());
        off += used;
    }
    RULE(off == len, "%zu bytes after the %" PRIu32 " records", len - off, n);
    return 0;
}

static int check_hello(int rc, const char *what, const proto_hello *x)
{
    RULE(x->min_version >= 1, "min_version 0");
    RULE(x->max_version >= x->min_version, "max_version %u below min_version %u", x->max_version,
         x->min_version);
    int e = check_body_max(rc, what, x->body_max);
    return e ? e : check_id_string(rc, what, x->id, x->id_len);
}

static int check_hello_ans(int rc, const char *what, const proto_hello_ans *x)
{
    RULE(x->version >= PROTO_VERSION_MIN && x->version <= PROTO_VERSION_MAX,
         "version %u is not one this build speaks (%d..%d)", x->version, PROTO_VERSION_MIN,
         PROTO_VERSION_MAX);
    int e = check_body_max(rc, what, x->body_max);
    return e ? e : check_id_string(rc, what, x->id, x->id_len);
}

static int check_add(int rc, const char *what, const proto_add *x)
{
    RULE_MIN(x->log_id, "log_id", 0);
    RULE_MIN(x->segment_id, "segment_id", 0);
    RULE_MIN(x->epoch, "epoch", 0);
    RULE_MIN(x->first_entry_id, "first_entry_id", 0);
    RULE_MIN(x->lac, "lac", -1);
    RULE(x->n_entries <= PROTO_ENTRIES_MAX, "n_entries %" PRIu32 " above %d", x->n_entries,
         PROTO_ENTRIES_MAX);
    RULE(x->first_entry_id <= INT64_MAX - (int64_t)x->n_entries,
         "entry ids overflow (first_entry_id %" PRId64 ", n_entries %" PRIu32 ")",
         x->first_entry_id, x->n_entries);
    RULE(x->n_entries > 0 || x->first_entry_id - 1 == x->lac,
         "LAC-only ADD with first_entry_id %" PRId64 " not lac + 1 (lac %" PRId64 ")",
         x->first_entry_id, x->lac);
    return check_records(rc, what, x->records, x->records_len, x->n_entries);
}

static int check_state(int rc, const char *what, int64_t last_durable, int64_t lac, uint32_t flags)
{
    RULE_MIN(last_durable, "last_durable", -1);
    RULE_MIN(lac, "lac", -1);
    RULE((flags & ~PROTO_SEG_COMPLETED) == 0, "undefined flags %08" PRIx32, flags);
    RULE(!(flags & PROTO_SEG_COMPLETED) || lac <= last_durable,
         "completed copy with lac %" PRId64 " above last_durable %" PRId64, lac, last_durable);
    return 0;
}

static int check_read(int rc, const char *what, const proto_read *x)
{
    RULE_MIN(x->log_id, "log_id", 0);
    RULE_MIN(x->segment_id, "segment_id", 0);
    RULE_MIN(x->from_entry_id, "from_entry_id", 0);
    RULE(x->max_bytes >= 1 && x->max_bytes <= PROTO_READ_BYTES_MAX,
         "max_bytes %" PRIu32 " outside 1..%lld", x->max_bytes, (long long)PROTO_READ_BYTES_MAX);
    RULE(x->wait_ms <= PROTO_WAIT_MS_MAX, "wait_ms %" PRIu32 " above %d", x->wait_ms,
         PROTO_WAIT_MS_MAX);
    RULE((x->flags & ~PROTO_READ_UNCONFIRMED) == 0, "undefined flags %08" PRIx32, x->flags);
    return 0;
}

static int check_read_ans(int rc, const char *what, const proto_read_ans *x)
{
    RULE_MIN(x->first_entry_id, "first_entry_id", 0);
    int e = check_state(rc, what, x->last_durable, x->lac, x->flags);
    if (e)
        return e;
    RULE(x->n_entries <= PROTO_ENTRIES_MAX, "n_entries %" PRIu32 " above %d", x->n_entries,
         PROTO_ENTRIES_MAX);
    RULE(x->first_entry_id <= INT64_MAX - (int64_t)x->n_entries,
         "entry ids overflow (first_entry_id %" PRId64 ", n_entries %" PRIu32 ")",
         x->first_entry_id, x->n_entries);
    RULE(x->n_entries == 0 || x->first_entry_id + (int64_t)x->n_entries - 1 <= x->last_durable,
         "entries %" PRId64 "..%" PRId64 " past last_durable %" PRId64, x->first_entry_id,
         x->first_entry_id + (int64_t)x->n_entries - 1, x->last_durable);
    return check_records(rc, what, x->records, x->records_len, x->n_entries);
}

static int check_stats_ans(int rc, const char *what, const proto_stats_ans *x)
{
    RULE(x->disk_total_bytes <= INT64_MAX, "disk_total_bytes %" PRIu64 " above 2^63 - 1",
         x->disk_total_bytes);
    RULE(x->disk_free_bytes <= x->disk_total_bytes,
         "disk_free_bytes %" PRIu64 " above disk_total_bytes %" PRIu64, x->disk_free_bytes,
         x->disk_total_bytes);
    RULE(x->segments <= INT64_MAX, "segments %" PRIu64 " above 2^63 - 1", x->segments);
    return 0;
}

static int check_error(int rc, const char *what, const proto_error *x)
{
    RULE(x->code >= PROTO_ERR_CODE_MIN && x->code <= -1, "code %" PRId32 " is not a WP_E* code",
         x->code);
    RULE(x->msg_len <= PROTO_ERRMSG_MAX, "message of %zu bytes, above %d", x->msg_len,
         PROTO_ERRMSG_MAX);
    RULE(x->msg_len == 0 || x->msg != NULL, "message is NULL");
    RULE(x->msg_len == 0 || !memchr(x->msg, 0, x->msg_len), "message contains a NUL byte");
    return 0;
}

/* The rules of §4-§6 for m's fields. */
static int check_msg(const proto_msg *m, int rc)
{
    const char *what = proto_type_name(m->type);
    switch (m->type) {
    case PROTO_HELLO:
        return check_hello(rc, what, &m->u.hello);
    case PROTO_HELLO_ANS:
        return check_hello_ans(rc, what, &m->u.hello_ans);
    case PROTO_ADD:
        return check_add(rc, what, &m->u.add);
    case PROTO_ADD_ANS:
        RULE_MIN(m->u.add_ans.last_durable, "last_durable", -1);
        return 0;
    case PROTO_FENCE:
        RULE_MIN(m->u.fence.log_id, "log_id", 0);
        RULE_MIN(m->u.fence.segment_id, "segment_id", 0);
        RULE_MIN(m->u.fence.epoch, "epoch", 0);
        return 0;
    case PROTO_COMPLETE_ANS:
        RULE(m->u.state.flags & PROTO_SEG_COMPLETED, "COMPLETED flag not set");
        /* fall through */
    case PROTO_FENCE_ANS:
    case PROTO_READ_LAC_ANS:
        return check_state(rc, what, m->u.state.last_durable, m->u.state.lac, m->u.state.flags);
    case PROTO_READ:
        return check_read(rc, what, &m->u.read);
    case PROTO_READ_ANS:
        return check_read_ans(rc, what, &m->u.read_ans);
    case PROTO_READ_LAC:
        RULE_MIN(m->u.read_lac.log_id, "log_id", 0);
        RULE_MIN(m->u.read_lac.segment_id, "segment_id", 0);
        return 0;
    case PROTO_COMPLETE:
        RULE_MIN(m->u.complete.log_id, "log_id", 0);
        RULE_MIN(m->u.complete.segment_id, "segment_id", 0);
        RULE_MIN(m->u.complete.epoch, "epoch", 0);
        RULE_MIN(m->u.complete.last_entry_id, "last_entry_id", -1);
        return 0;
    case PROTO_DELETE:
        RULE_MIN(m->u.del.log_id, "log_id", 0);
        RULE_MIN(m->u.del.segment_id, "segment_id", -1);
        return 0;
    case PROTO_STATS:
    case PROTO_DELETE_ANS:
        return 0;
    case PROTO_STATS_ANS:
        return check_stats_ans(rc, what, &m->u.stats_ans);
    case PROTO_ERROR:
        return check_error(rc, what, &m->u.error);
    default:
        return fail(rc, "message", "unknown type 0x%04x", m->type);
    }
}

/* ---- header ------------------------------------------------------------ */

void proto_header_encode(const proto_header *h, uint8_t out[PROTO_HEADER_SIZE])
{
    memcpy(out, PROTO_MAGIC, MAGIC_LEN);
    le_put16(out + 4, h->version);
    le_put16(out + 6, h->type);
    le_put64(out + 8, h->request_id);
    le_put32(out + 16, h->body_len);
    le_put32(out + 20, h->body_crc);
    le_put32(out + 24, 0);
    le_put32(out + HDR_CRC_OFF, crc32c(0, out, HDR_CRC_OFF));
}

/* body_len within the type's bounds. */
static int check_body_len(const type_info *t, uint32_t body_len)
{
    if (body_len < t->fixed + t->var_min || body_len - t->fixed > t->var_max)
        return fail(WP_ECORRUPT, t->name, "body of %" PRIu32 " bytes, want %" PRIu32 "..%llu",
                    body_len, t->fixed + t->var_min, (unsigned long long)t->fixed + t->var_max);
    return 0;
}

int proto_header_decode(const uint8_t in[PROTO_HEADER_SIZE], proto_header *out)
{
    const char *what = "frame header";
    int rc = WP_ECORRUPT;
    RULE(memcmp(in, PROTO_MAGIC, MAGIC_LEN) == 0, "bad magic %02x %02x %02x %02x", in[0], in[1],
         in[2], in[3]);
    proto_header h = {
        .version = le_get16(in + 4),
        .type = le_get16(in + 6),
        .request_id = le_get64(in + 8),
        .body_len = le_get32(in + 16),
        .body_crc = le_get32(in + 20),
    };
    RULE(h.version >= PROTO_VERSION_MIN && h.version <= PROTO_VERSION_MAX,
         "unsupported version %u (this build speaks %d..%d)", h.version, PROTO_VERSION_MIN,
         PROTO_VERSION_MAX);
    uint32_t want = le_get32(in + HDR_CRC_OFF), got = crc32c(0, in, HDR_CRC_OFF);
    RULE(want == got, "crc mismatch (stored %08" PRIx32 ", computed %08" PRIx32 ")", want, got);
    RULE(le_get32(in + 24) == 0, "nonzero reserved field");
    const type_info *t = type_find(h.type);
    RULE(t != NULL, "unknown type 0x%04x", h.type);
    int e = check_body_len(t, h.body_len);
    if (e)
        return e;
    *out = h;
    return 0;
}

/* ---- encoding ---------------------------------------------------------- */

static void put_state(uint8_t *b, int64_t last_durable, int64_t lac, uint32_t flags)
{
    le_puti64(b, last_durable);
    le_puti64(b + 8, lac);
    le_put32(b + 16, flags);
    le_put32(b + 20, 0);
}

static size_t put_hello(uint8_t *b, uint16_t v1, uint16_t v2, uint32_t body_max, const char *id,
                        size_t id_len)
{
    le_put16(b, v1);
    le_put16(b + 2, v2);
    le_put32(b + 4, body_max);
    le_put16(b + 8, (uint16_t)id_len);
    le_put16(b + 10, 0);
    memcpy(b + HELLO_FIXED, id, id_len);
    return HELLO_FIXED + id_len;
}

/* Writes the body of a checked m up to its records; returns its length. */
static size_t put_body(const proto_msg *m, uint8_t *b)
{
    const proto_add *a = &m->u.add;
    const proto_read *r = &m->u.read;
    const proto_read_ans *ra = &m->u.read_ans;
    const proto_stats_ans *s = &m->u.stats_ans;
    switch (m->type) {
    case PROTO_HELLO:
        return put_hello(b, m->u.hello.min_version, m->u.hello.max_version, m->u.hello.body_max,
                         m->u.hello.id, m->u.hello.id_len);
    case PROTO_HELLO_ANS:
        return put_hello(b, m->u.hello_ans.version, 0, m->u.hello_ans.body_max, m->u.hello_ans.id,
                         m->u.hello_ans.id_len);
    case PROTO_ADD:
        le_puti64(b, a->log_id);
        le_puti64(b + 8, a->segment_id);
        le_puti64(b + 16, a->epoch);
        le_puti64(b + 24, a->first_entry_id);
        le_puti64(b + 32, a->lac);
        le_put32(b + 40, a->n_entries);
        le_put32(b + 44, 0);
        return PROTO_ADD_FIXED;
    case PROTO_ADD_ANS:
        le_puti64(b, m->u.add_ans.last_durable);
        return 8;
    case PROTO_FENCE:
        le_puti64(b, m->u.fence.log_id);
        le_puti64(b + 8, m->u.fence.segment_id);
        le_puti64(b + 16, m->u.fence.epoch);
        return 24;
    case PROTO_FENCE_ANS:
    case PROTO_READ_LAC_ANS:
    case PROTO_COMPLETE_ANS:
        put_state(b, m->u.state.last_durable, m->u.state.lac, m->u.state.flags);
        return STATE_SIZE;
    case PROTO_READ:
        le_puti64(b, r->log_id);
        le_puti64(b + 8, r->segment_id);
        le_puti64(b + 16, r->from_entry_id);
        le_put32(b + 24, r->max_bytes);
        le_put32(b + 28, r->wait_ms);
        le_put32(b + 32, r->flags);
        le_put32(b + 36, 0);
        return 40;
    case PROTO_READ_ANS:
        le_puti64(b, ra->first_entry_id);
        le_puti64(b + 8, ra->lac);
        le_puti64(b + 16, ra->last_durable);
        le_put32(b + 24, ra->n_entries);
        le_put32(b + 28, ra->flags);
        return PROTO_READ_ANS_FIXED;
    case PROTO_READ_LAC:
        le_puti64(b, m->u.read_lac.log_id);
        le_puti64(b + 8, m->u.read_lac.segment_id);
        return 16;
    case PROTO_COMPLETE:
        le_puti64(b, m->u.complete.log_id);
        le_puti64(b + 8, m->u.complete.segment_id);
        le_puti64(b + 16, m->u.complete.epoch);
        le_puti64(b + 24, m->u.complete.last_entry_id);
        return 32;
    case PROTO_DELETE:
        le_puti64(b, m->u.del.log_id);
        le_puti64(b + 8, m->u.del.segment_id);
        return 16;
    case PROTO_STATS_ANS:
        le_put64(b, s->disk_total_bytes);
        le_put64(b + 8, s->disk_free_bytes);
        le_put64(b + 16, s->segments);
        le_put32(b + 24, s->connections);
        le_put32(b + 28, s->load);
        return 32;
    case PROTO_ERROR:
        le_put32(b, (uint32_t)m->u.error.code);
        le_put16(b + 4, (uint16_t)m->u.error.msg_len);
        le_put16(b + 6, 0);
        if (m->u.error.msg_len)
            memcpy(b + ERROR_FIXED, m->u.error.msg, m->u.error.msg_len);
        return ERROR_FIXED + m->u.error.msg_len;
    default: /* PROTO_STATS, PROTO_DELETE_ANS */
        return 0;
    }
}

/* The records m carries (ADD, READ_ANS), or none. */
static void records_of(const proto_msg *m, const uint8_t **recs, size_t *len)
{
    *recs = NULL;
    *len = 0;
    if (m->type == PROTO_ADD) {
        *recs = m->u.add.records;
        *len = m->u.add.records_len;
    } else if (m->type == PROTO_READ_ANS) {
        *recs = m->u.read_ans.records;
        *len = m->u.read_ans.records_len;
    }
}

size_t proto_frame_size(const proto_msg *m)
{
    const type_info *t = type_find(m->type);
    if (!t)
        return 0;
    size_t var = 0;
    const uint8_t *recs;
    records_of(m, &recs, &var);
    if (m->type == PROTO_HELLO)
        var = m->u.hello.id_len;
    else if (m->type == PROTO_HELLO_ANS)
        var = m->u.hello_ans.id_len;
    else if (m->type == PROTO_ERROR)
        var = m->u.error.msg_len;
    return PROTO_HEADER_SIZE + t->fixed + var;
}

int proto_encode_head(uint16_t version, uint64_t request_id, const proto_msg *m,
                      uint8_t out[PROTO_HEAD_MAX], size_t *len)
{
    if (version < PROTO_VERSION_MIN || version > PROTO_VERSION_MAX)
        return wp__err(WP_EINVAL, "%s: version %u is not one this build speaks (%d..%d)",
                       proto_type_name(m->type), version, PROTO_VERSION_MIN, PROTO_VERSION_MAX);
    if ((m->type == PROTO_HELLO || m->type == PROTO_HELLO_ANS) && version != PROTO_HELLO_VERSION)
        return wp__err(WP_EINVAL, "%s: header version must be %d", proto_type_name(m->type),
                       PROTO_HELLO_VERSION);
    int rc = check_msg(m, WP_EINVAL);
    if (rc)
        return rc;
    size_t n = put_body(m, out + PROTO_HEADER_SIZE);
    assert(PROTO_HEADER_SIZE + n <= PROTO_HEAD_MAX);
    const uint8_t *recs;
    size_t rlen;
    records_of(m, &recs, &rlen);
    uint32_t crc = crc32c(0, out + PROTO_HEADER_SIZE, n);
    if (rlen && m->type == PROTO_ADD && m->u.add.records_crc_known)
        crc = crc32c_combine(crc, m->u.add.records_crc, rlen);
    else if (rlen)
        crc = crc32c(crc, recs, rlen);
    proto_header h = {.version = version,
                      .type = m->type,
                      .request_id = request_id,
                      .body_len = (uint32_t)(n + rlen),
                      .body_crc = crc};
    proto_header_encode(&h, out);
    *len = PROTO_HEADER_SIZE + n;
    return 0;
}

int proto_encode(uint16_t version, uint64_t request_id, const proto_msg *m, uint8_t *out,
                 size_t cap, size_t *len)
{
    uint8_t head[PROTO_HEAD_MAX];
    size_t hlen;
    int rc = proto_encode_head(version, request_id, m, head, &hlen);
    if (rc)
        return rc;
    const uint8_t *recs;
    size_t rlen;
    records_of(m, &recs, &rlen);
    if (cap < hlen || cap - hlen < rlen)
        return wp__err(WP_EINVAL, "%s: frame of %zu bytes does not fit a buffer of %zu",
                       proto_type_name(m->type), hlen + rlen, cap);
    memcpy(out, head, hlen);
    if (rlen)
        memcpy(out + hlen, recs, rlen);
    *len = hlen + rlen;
    return 0;
}

/* ---- decoding ---------------------------------------------------------- */

/* HELLO and HELLO_ANS share a layout: two u16, body_max, id_len, reserved, id. */
static int get_hello(const char *what, const uint8_t *b, size_t var, uint16_t *v1, uint16_t *v2,
                     uint32_t *body_max, const char **id, size_t *id_len)
{
    int rc = WP_ECORRUPT;
    *v1 = le_get16(b);
    *v2 = le_get16(b + 2);
    *body_max = le_get32(b + 4);
    RULE(le_get16(b + 8) == var, "id_len %u but %zu bytes follow", le_get16(b + 8), var);
    RULE(le_get16(b + 10) == 0, "nonzero reserved field");
    *id = (const char *)b + HELLO_FIXED;
    *id_len = var;
    return 0;
}

/* i32 fields are two's complement (defined for every bit pattern). */
static int32_t get_i32(const uint8_t *p)
{
    uint32_t u = le_get32(p);
    return u <= (uint32_t)INT32_MAX ? (int32_t)u : -(int32_t)(~u) - 1;
}

static void get_state(const uint8_t *b, proto_seg_state *s)
{
    s->last_durable = le_geti64(b);
    s->lac = le_geti64(b + 8);
    s->flags = le_get32(b + 16);
}

/* Parses the fields of a body whose length suits its type (t); the
 * layout's own rules (reserved fields, string lengths) are checked here,
 * the field rules by check_msg. */
static int get_body(const type_info *t, const uint8_t *b, size_t body_len, proto_msg *m)
{
    const char *what = t->name;
    int rc = WP_ECORRUPT;
    size_t var = body_len - t->fixed;
    proto_add *a = &m->u.add;
    proto_read *r = &m->u.read;
    proto_read_ans *ra = &m->u.read_ans;
    proto_stats_ans *s = &m->u.stats_ans;
    uint16_t unused;
    switch (t->type) {
    case PROTO_HELLO:
        return get_hello(what, b, var, &m->u.hello.min_version, &m->u.hello.max_version,
                         &m->u.hello.body_max, &m->u.hello.id, &m->u.hello.id_len);
    case PROTO_HELLO_ANS:
        rc = get_hello(what, b, var, &m->u.hello_ans.version, &unused, &m->u.hello_ans.body_max,
                       &m->u.hello_ans.id, &m->u.hello_ans.id_len);
        if (rc)
            return rc;
        rc = WP_ECORRUPT;
        RULE(unused == 0, "nonzero reserved field");
        return 0;
    case PROTO_ADD:
        a->log_id = le_geti64(b);
        a->segment_id = le_geti64(b + 8);
        a->epoch = le_geti64(b + 16);
        a->first_entry_id = le_geti64(b + 24);
        a->lac = le_geti64(b + 32);
        a->n_entries = le_get32(b + 40);
        RULE(le_get32(b + 44) == 0, "undefined flags %08" PRIx32, le_get32(b + 44));
        a->records = b + PROTO_ADD_FIXED;
        a->records_len = var;
        return 0;
    case PROTO_ADD_ANS:
        m->u.add_ans.last_durable = le_geti64(b);
        return 0;
    case PROTO_FENCE:
        m->u.fence.log_id = le_geti64(b);
        m->u.fence.segment_id = le_geti64(b + 8);
        m->u.fence.epoch = le_geti64(b + 16);
        return 0;
    case PROTO_FENCE_ANS:
    case PROTO_READ_LAC_ANS:
    case PROTO_COMPLETE_ANS:
        get_state(b, &m->u.state);
        RULE(le_get32(b + 20) == 0, "nonzero reserved field");
        return 0;
    case PROTO_READ:
        r->log_id = le_geti64(b);
        r->segment_id = le_geti64(b + 8);
        r->from_entry_id = le_geti64(b + 16);
        r->max_bytes = le_get32(b + 24);
        r->wait_ms = le_get32(b + 28);
        r->flags = le_get32(b + 32);
        RULE(le_get32(b + 36) == 0, "nonzero reserved field");
        return 0;
    case PROTO_READ_ANS:
        ra->first_entry_id = le_geti64(b);
        ra->lac = le_geti64(b + 8);
        ra->last_durable = le_geti64(b + 16);
        ra->n_entries = le_get32(b + 24);
        ra->flags = le_get32(b + 28);
        ra->records = b + PROTO_READ_ANS_FIXED;
        ra->records_len = var;
        return 0;
    case PROTO_READ_LAC:
        m->u.read_lac.log_id = le_geti64(b);
        m->u.read_lac.segment_id = le_geti64(b + 8);
        return 0;
    case PROTO_COMPLETE:
        m->u.complete.log_id = le_geti64(b);
        m->u.complete.segment_id = le_geti64(b + 8);
        m->u.complete.epoch = le_geti64(b + 16);
        m->u.complete.last_entry_id = le_geti64(b + 24);
        return 0;
    case PROTO_DELETE:
        m->u.del.log_id = le_geti64(b);
        m->u.del.segment_id = le_geti64(b + 8);
        return 0;
    case PROTO_STATS_ANS:
        s->disk_total_bytes = le_get64(b);
        s->disk_free_bytes = le_get64(b + 8);
        s->segments = le_get64(b + 16);
        s->connections = le_get32(b + 24);
        s->load = le_get32(b + 28);
        return 0;
    case PROTO_ERROR:
        m->u.error.code = get_i32(b);
        RULE(le_get16(b + 4) == var, "msg_len %u but %zu bytes follow", le_get16(b + 4), var);
        RULE(le_get16(b + 6) == 0, "nonzero reserved field");
        m->u.error.msg = (const char *)b + ERROR_FIXED;
        m->u.error.msg_len = var;
        return 0;
    default: /* PROTO_STATS, PROTO_DELETE_ANS: empty */
        return 0;
    }
}

void proto_msg_rebase(proto_msg *m, const uint8_t *old_body, const uint8_t *body_copy)
{
#define REBASE(T, p) \
    if (p)           \
        p = (T)(body_copy + ((const uint8_t *)(p) - old_body))
    switch (m->type) {
    case PROTO_HELLO: REBASE(const char *, m->u.hello.id); break;
    case PROTO_HELLO_ANS: REBASE(const char *, m->u.hello_ans.id); break;
    case PROTO_ADD: REBASE(const uint8_t *, m->u.add.records); break;
    case PROTO_READ_ANS: REBASE(const uint8_t *, m->u.read_ans.records); break;
    case PROTO_ERROR: REBASE(const char *, m->u.error.msg); break;
    default: break; /* no pointers */
    }
#undef REBASE
}

int proto_decode(const proto_header *h, const uint8_t *body, proto_msg *out)
{
    const type_info *t = type_find(h->type);
    if (!t)
        return fail(WP_ECORRUPT, "frame", "unknown type 0x%04x", h->type);
    int rc = check_body_len(t, h->body_len);
    if (rc)
        return rc;
    uint32_t got = h->body_len ? crc32c(0, body, h->body_len) : 0;
    if (got != h->body_crc)
        return fail(WP_ECORRUPT, t->name,
                    "body crc mismatch (header %08" PRIx32 ", computed %08" PRIx32 ")", h->body_crc,
                    got);
    memset(out, 0, sizeof *out);
    out->type = h->type;
    rc = get_body(t, body, h->body_len, out);
    return rc ? rc : check_msg(out, WP_ECORRUPT);
}

/* ---- helpers ----------------------------------------------------------- */

uint16_t proto_version_choose(uint16_t min_a, uint16_t max_a, uint16_t min_b, uint16_t max_b)
{
    uint16_t lo = min_a > min_b ? min_a : min_b, hi = max_a < max_b ? max_a : max_b;
    return lo <= hi && hi >= 1 ? hi : 0;
}

int proto_error_rc(const proto_error *e)
{
    return wp__err(e->code, "server: %.*s", (int)e->msg_len, e->msg ? e->msg : "");
}

/* ---- incremental frame reader ------------------------------------------ */

static const uint8_t empty_body[1];

void proto_reader_init(proto_reader *r, enum proto_side side, uint32_t body_max)
{
    assert(side == PROTO_SIDE_SERVER || side == PROTO_SIDE_CLIENT);
    assert(body_max == 0 || (body_max >= PROTO_BODY_LIMIT_MIN && body_max <= PROTO_BODY_MAX));
    memset(r, 0, sizeof *r);
    r->side = (uint8_t)side;
    r->body_max = body_max ? body_max : (uint32_t)PROTO_BODY_MAX;
}

void proto_reader_set_version(proto_reader *r, uint16_t version)
{
    assert(r->hello_seen && r->version == 0);
    assert(version >= PROTO_VERSION_MIN && version <= PROTO_VERSION_MAX);
    r->version = version;
}

size_t proto_reader_pending(const proto_reader *r)
{
    return r->in_body ? PROTO_HEADER_SIZE + r->body_got : r->hdr_got;
}

void proto_reader_free(proto_reader *r)
{
    free(r->buf);
    r->buf = NULL;
    r->buf_cap = 0;
}

/* The header rules that depend on the connection (§3.1, §4). */
static int check_frame_state(const proto_reader *r, const proto_header *h)
{
    const char *what = proto_type_name(h->type);
    int rc = WP_ECORRUPT;
    bool answer = (h->type & PROTO_ANSWER) != 0, server = r->side == PROTO_SIDE_SERVER;
    RULE(answer != server, "%s (request %" PRIu64 ") sent to a %s",
         answer ? "an answer" : "a request", h->request_id, server ? "server" : "client");
    RULE(h->body_len <= r->body_max,
         "body of %" PRIu32 " bytes, above this end's body_max %" PRIu32, h->body_len, r->body_max);
    bool hello = h->type == PROTO_HELLO || h->type == PROTO_HELLO_ANS;
    if (!r->hello_seen) {
        RULE(hello || h->type == PROTO_ERROR, "frame before HELLO");
        RULE(h->version == PROTO_HELLO_VERSION, "version %u before the version was negotiated",
             h->version);
    } else {
        RULE(r->version != 0, "frame before the version was negotiated");
        RULE(!hello, "a second HELLO on the connection");
        RULE(h->version == r->version, "version %u on a connection at version %u", h->version,
             r->version);
    }
    return 0;
}

static int start_frame(proto_reader *r, const uint8_t *hdr)
{
    int rc = proto_header_decode(hdr, &r->cur);
    return rc ? rc : check_frame_state(r, &r->cur);
}

/* Decodes the frame in r->cur whose body (cur.body_len bytes) is at body. */
static int finish_frame(proto_reader *r, const uint8_t *body, proto_frame *out)
{
    if (!body)
        body = empty_body;
    int rc = proto_decode(&r->cur, body, &out->msg);
    if (rc)
        return wp__err(rc, "%s (request %" PRIu64 ")", wp_errmsg(), r->cur.request_id);
    out->h = r->cur;
    out->body = body;
    if (r->cur.type == PROTO_HELLO || r->cur.type == PROTO_HELLO_ANS)
        r->hello_seen = true;
    return 0;
}

static int reader_fail(proto_reader *r, int rc)
{
    r->err = rc;
    return wp__err(rc, "protocol error: %s", wp_errmsg());
}

static int buffer_body(proto_reader *r)
{
    size_t n = r->cur.body_len;
    if (n > r->buf_cap) {
        free(r->buf);
        r->buf_cap = 0;
        r->buf = malloc(n);
        if (!r->buf)
            return wp__err(WP_ENOMEM, "no memory for a body of %zu bytes", n);
        r->buf_cap = n;
    }
    r->in_body = true;
    r->body_got = 0;
    return 0;
}

int proto_reader_feed(proto_reader *r, const uint8_t *data, size_t len, size_t *used,
                      proto_frame *out)
{
    *used = 0;
    if (r->err)
        return wp__err(r->err, "protocol error: the connection failed earlier");
    if (r->release) {
        r->release = false;
        if (r->buf_cap > PROTO_READER_KEEP_BYTES)
            proto_reader_free(r);
    }
    size_t off = 0;
    int rc;
    if (!r->in_body) {
        if (r->hdr_got == 0 && len >= PROTO_HEADER_SIZE) {
            if ((rc = start_frame(r, data)) != 0)
                return reader_fail(r, rc);
            off = PROTO_HEADER_SIZE;
            if (len - off >= r->cur.body_len) { /* the whole frame is here: no copy */
                *used = off + r->cur.body_len;
                rc = finish_frame(r, data + off, out);
                return rc ? reader_fail(r, rc) : 0;
            }
        } else {
            size_t n = PROTO_HEADER_SIZE - r->hdr_got < len ? PROTO_HEADER_SIZE - r->hdr_got : len;
            if (n)
                memcpy(r->hdr + r->hdr_got, data, n);
            r->hdr_got += n;
            off = *used = n;
            if (r->hdr_got < PROTO_HEADER_SIZE)
                return WP_EAGAIN;
            r->hdr_got = 0;
            if ((rc = start_frame(r, r->hdr)) != 0)
                return reader_fail(r, rc);
        }
        if ((rc = buffer_body(r)) != 0) {
            *used = off;
            return reader_fail(r, rc);
        }
    }
    size_t want = r->cur.body_len - r->body_got, n = want < len - off ? want : len - off;
    if (n)
        memcpy(r->buf + r->body_got, data + off, n);
    r->body_got += n;
    *used = off + n;
    if (r->body_got < r->cur.body_len)
        return WP_EAGAIN;
    r->in_body = false;
    r->release = true;
    rc = finish_frame(r, r->buf, out);
    return rc ? reader_fail(r, rc) : 0;
}
