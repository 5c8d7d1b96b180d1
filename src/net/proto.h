/* proto.h — the LogStore wire protocol of docs/protocol.md: the frame
 * header, every message and its answer, and an incremental frame reader
 * for an event loop.
 *
 * A pure codec: no I/O. The only allocation is the frame reader's body
 * buffer (at most the reader's body_max, freed by proto_reader_free).
 * Every decoder treats its input as untrusted bytes from the network and
 * fails with WP_ECORRUPT and a wp_errmsg() detail (a protocol error: the
 * caller closes that connection); none asserts. Encoders refuse a message
 * that breaks a rule of the document with WP_EINVAL, so a peer never
 * receives one. Decoded messages point into the bytes they were decoded
 * from (ids, error messages and records are not copied). */
#ifndef WP_NET_PROTO_H
#define WP_NET_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/limits.h"
#include "woodpecker.h"

/* ---- framing (docs/protocol.md §3) ------------------------------------- */
#define PROTO_MAGIC "WPRP"
#define PROTO_HEADER_SIZE 32
#define PROTO_VERSION_MIN 1 /* versions this build speaks */
#define PROTO_VERSION_MAX 1
/* The header version of HELLO, HELLO_ANS and an ERROR answering HELLO. */
#define PROTO_HELLO_VERSION 1

/* ---- bounds (§7) ------------------------------------------------------- */
#define PROTO_ID_MAX 128                           /* HELLO / HELLO_ANS id bytes */
#define PROTO_ERRMSG_MAX 256                       /* ERROR message bytes */
#define PROTO_ENTRIES_MAX WP_BLOCK_ENTRIES_MAX     /* records in one ADD / READ_ANS */
#define PROTO_RECORDS_BYTES_MAX WP_BLOCK_BYTES_MAX /* record bytes in one ADD / READ_ANS */
#define PROTO_ADD_FIXED 48                         /* ADD body before its records */
#define PROTO_READ_ANS_FIXED 32                    /* READ_ANS body before its records */
#define PROTO_BODY_MAX (PROTO_ADD_FIXED + PROTO_RECORDS_BYTES_MAX)
#define PROTO_BODY_LIMIT_MIN (1 * WP_MiB)  /* smallest body_max a peer may announce */
#define PROTO_READ_BYTES_MAX (64 * WP_MiB) /* READ max_bytes */
#define PROTO_WAIT_MS_MAX 60000            /* READ wait_ms */
#define PROTO_INFLIGHT_MAX 1024            /* unanswered requests per connection */
/* Header plus the largest body part that is not records (an ERROR). */
#define PROTO_HEAD_MAX (PROTO_HEADER_SIZE + 8 + PROTO_ERRMSG_MAX)
/* The reader keeps a body buffer up to this size between frames. */
#define PROTO_READER_KEEP_BYTES (64 * WP_KiB)

_Static_assert(PROTO_ENTRIES_MAX == WP_BLOCK_ENTRIES_MAX &&
                   PROTO_RECORDS_BYTES_MAX == WP_BLOCK_BYTES_MAX,
               "one ADD becomes one block (docs/format.md §5)");
_Static_assert(12LL + WP_PROPS_BYTES_MAX + WP_ENTRY_BYTES_MAX <= PROTO_RECORDS_BYTES_MAX,
               "a READ answer can carry one maximal record whole");
_Static_assert(PROTO_BODY_MAX < (1LL << 32), "body_len fits the u32 header field");
_Static_assert(PROTO_READ_ANS_FIXED <= PROTO_ADD_FIXED, "PROTO_BODY_MAX covers READ_ANS");
_Static_assert(PROTO_READ_BYTES_MAX <= PROTO_RECORDS_BYTES_MAX, "a READ fits one answer");
_Static_assert(PROTO_BODY_LIMIT_MIN >= PROTO_HEAD_MAX && PROTO_BODY_LIMIT_MIN >= 12 + PROTO_ID_MAX,
               "every body without records fits the smallest body_max");
_Static_assert(PROTO_BODY_LIMIT_MIN <= PROTO_BODY_MAX, "body_max range");
_Static_assert(PROTO_ERRMSG_MAX + 64 < WP_ERRMSG_MAX && PROTO_ID_MAX + 64 < WP_ERRMSG_MAX,
               "a peer's message or id fits a wp_errmsg() detail");
_Static_assert(PROTO_ID_MAX <= 65535 && PROTO_ERRMSG_MAX <= 65535, "u16 length fields");
_Static_assert(PROTO_WAIT_MS_MAX <= 2147483647, "wait_ms fits an int");
_Static_assert(PROTO_READER_KEEP_BYTES <= PROTO_BODY_LIMIT_MIN, "kept buffer is small");
/* The error codes on the wire are include/woodpecker.h's, frozen for
 * version 1 (§6.1): changing one is a new protocol version. */
_Static_assert(WP_EINVAL == -1 && WP_ENOENT == -2 && WP_EEXIST == -3 && WP_EFENCED == -4 &&
                   WP_ETIMEDOUT == -5 && WP_ECORRUPT == -6 && WP_EIO == -7 && WP_ENOSPC == -8 &&
                   WP_ECLOSED == -9 && WP_ETRUNCATED == -10 && WP_EAGAIN == -11 &&
                   WP_EUNAVAILABLE == -12 && WP_EQUORUM == -13 && WP_ENOMEM == -14 &&
                   WP_ECONFLICT == -15 && WP_ETOOBIG == -16 && WP_ENOTSUP == -17,
               "wire error codes of protocol version 1");
#define PROTO_ERR_CODE_MIN WP_ENOTSUP /* codes are PROTO_ERR_CODE_MIN .. -1 */

/* ---- message types (§3.2) ---------------------------------------------- */
enum proto_type {
    PROTO_HELLO = 0x0001,
    PROTO_ADD = 0x0002,
    PROTO_FENCE = 0x0003,
    PROTO_READ = 0x0004,
    PROTO_READ_LAC = 0x0005,
    PROTO_COMPLETE = 0x0006,
    PROTO_DELETE = 0x0007,
    PROTO_STATS = 0x0008,
    PROTO_ANSWER = 0x8000, /* bit set in every answer type */
    PROTO_HELLO_ANS = 0x8001,
    PROTO_ADD_ANS = 0x8002,
    PROTO_FENCE_ANS = 0x8003,
    PROTO_READ_ANS = 0x8004,
    PROTO_READ_LAC_ANS = 0x8005,
    PROTO_COMPLETE_ANS = 0x8006,
    PROTO_DELETE_ANS = 0x8007,
    PROTO_STATS_ANS = 0x8008,
    PROTO_ERROR = 0xffff,
};

#define PROTO_READ_UNCONFIRMED 0x1u /* READ flags: up to last_durable, not the LAC */
#define PROTO_SEG_COMPLETED 0x1u    /* segment state / READ_ANS flags */

/* ---- messages (§4, §5, §6) --------------------------------------------- */
/* Strings are (pointer, length), not NUL-terminated. */
typedef struct {
    uint16_t min_version, max_version;
    uint32_t body_max; /* the largest answer body the client accepts */
    const char *id;
    size_t id_len;
} proto_hello;

typedef struct {
    uint16_t version;  /* chosen */
    uint32_t body_max; /* the largest request body the server accepts */
    const char *id;    /* the server's node id */
    size_t id_len;
} proto_hello_ans;

typedef struct {
    int64_t log_id, segment_id, epoch, first_entry_id, lac;
    uint32_t n_entries;     /* 0: a LAC-only ADD (first_entry_id == lac + 1) */
    const uint8_t *records; /* n_entries records (docs/format.md §4) */
    size_t records_len;
    /* Encoding only, optional: crc32c(0, records) when the sender has it
     * (the block's records_crc), so the frame's body_crc needs no pass
     * over the records. Not on the wire; decoding leaves it unset. */
    bool records_crc_known;
    uint32_t records_crc;
} proto_add;

typedef struct {
    int64_t last_durable;
} proto_add_ans;

typedef struct {
    int64_t log_id, segment_id, epoch;
} proto_fence;

/* FENCE_ANS, READ_LAC_ANS, COMPLETE_ANS (§5.1). */
typedef struct {
    int64_t last_durable, lac;
    uint32_t flags; /* PROTO_SEG_COMPLETED */
} proto_seg_state;

typedef struct {
    int64_t log_id, segment_id, from_entry_id;
    uint32_t max_bytes, wait_ms;
    uint32_t flags; /* PROTO_READ_UNCONFIRMED */
} proto_read;

typedef struct {
    int64_t first_entry_id, lac, last_durable;
    uint32_t n_entries;
    uint32_t flags; /* PROTO_SEG_COMPLETED */
    const uint8_t *records;
    size_t records_len;
} proto_read_ans;

typedef struct {
    int64_t log_id, segment_id;
} proto_read_lac;

typedef struct {
    int64_t log_id, segment_id, epoch, last_entry_id;
} proto_complete;

typedef struct {
    int64_t log_id, segment_id; /* segment_id -1: every segment of the log */
} proto_delete;

typedef struct {
    uint64_t disk_total_bytes, disk_free_bytes, segments;
    uint32_t connections, load;
} proto_stats_ans;

typedef struct {
    int32_t code; /* a WP_E* code, PROTO_ERR_CODE_MIN .. -1 */
    const char *msg;
    size_t msg_len;
} proto_error;

/* One message of any type; STATS and DELETE_ANS have no fields. */
typedef struct {
    uint16_t type; /* enum proto_type */
    union {
        proto_hello hello;
        proto_hello_ans hello_ans;
        proto_add add;
        proto_add_ans add_ans;
        proto_fence fence;
        proto_seg_state state; /* FENCE_ANS, READ_LAC_ANS, COMPLETE_ANS */
        proto_read read;
        proto_read_ans read_ans;
        proto_read_lac read_lac;
        proto_complete complete;
        proto_delete del;
        proto_stats_ans stats_ans;
        proto_error error;
    } u;
} proto_msg;

/* ---- header ------------------------------------------------------------ */
typedef struct {
    uint16_t version, type;
    uint64_t request_id;
    uint32_t body_len, body_crc;
} proto_header;

/* Writes the fields as given and the header CRC (no checks: tests build bad
 * frames with it; proto_encode is the checked path). */
void proto_header_encode(const proto_header *h, uint8_t out[PROTO_HEADER_SIZE]);
/* Checks magic, version (PROTO_VERSION_MIN..MAX), header CRC, reserved,
 * type and body_len against the type's bounds (§3.1). */
int proto_header_decode(const uint8_t in[PROTO_HEADER_SIZE], proto_header *out);

/* ---- messages ---------------------------------------------------------- */
/* Name of a type ("ADD", "READ_ANS", ...), or "unknown". */
const char *proto_type_name(uint16_t type);
/* Bytes of the frame that encodes m (header included); 0 if m's type is
 * unknown. Does not check the fields (proto_encode does). */
size_t proto_frame_size(const proto_msg *m);
/* Encodes the frame of m into out (cap bytes), *len = its size. WP_EINVAL
 * (nothing meaningful written) if a field breaks a rule, version is not
 * one this build speaks (PROTO_HELLO_VERSION for HELLO and HELLO_ANS), or
 * cap is too small. Records are walked with the codec (rec_decode) first:
 * a record is checked right before it is sent. */
int proto_encode(uint16_t version, uint64_t request_id, const proto_msg *m, uint8_t *out,
                 size_t cap, size_t *len);
/* The same without copying the records: writes the header and the body up
 * to its records (at most PROTO_HEAD_MAX bytes) into out; the frame is
 * out[0 .. *len) followed by m's records_len record bytes (for writev).
 * The body CRC covers the records, so they must not change until sent. */
int proto_encode_head(uint16_t version, uint64_t request_id, const proto_msg *m,
                      uint8_t out[PROTO_HEAD_MAX], size_t *len);
/* Decodes the body of a frame whose header h was decoded (body_len bytes at
 * body): body CRC, body_len against the type, every field rule, reserved
 * fields, exact string lengths, and for ADD / READ_ANS that the records are
 * exactly n_entries valid records ending at the end of the body.
 * out's pointers point into body. */
int proto_decode(const proto_header *h, const uint8_t *body, proto_msg *out);

/* m was decoded from old_body; body_copy holds the same bytes: m's
 * pointers (strings, records) are moved into it. The copy needs no second
 * proto_decode (and no second pass over its records' CRCs). */
void proto_msg_rebase(proto_msg *m, const uint8_t *old_body, const uint8_t *body_copy);

/* ---- helpers ----------------------------------------------------------- */
/* The highest version in both ranges, or 0 if they do not overlap (§4). */
uint16_t proto_version_choose(uint16_t min_a, uint16_t max_a, uint16_t min_b, uint16_t max_b);
/* Records e as the wp_errmsg() detail ("server: <msg>") and returns its code. */
int proto_error_rc(const proto_error *e);

/* ---- incremental frame reader ------------------------------------------ */
/* Which end reads: a server reads requests, a client answers. */
enum proto_side { PROTO_SIDE_SERVER = 1, PROTO_SIDE_CLIENT = 2 };

/* A complete, validated frame: the header, the body and its decoded
 * message. body and msg's pointers point into the bytes given to
 * proto_reader_feed (when the whole frame was in them) or into the reader's
 * buffer: valid until the next proto_reader_* call on this reader, and as
 * long as the fed bytes are unchanged. */
typedef struct {
    proto_header h;
    const uint8_t *body;
    proto_msg msg;
} proto_frame;

/* Fields are private (the struct is public so it can be embedded). */
typedef struct {
    uint32_t body_max;
    uint16_t version; /* 0 until proto_reader_set_version */
    uint8_t side;
    bool hello_seen; /* a valid HELLO (server) / HELLO_ANS (client) came */
    bool in_body;    /* cur is decoded, its body is being buffered */
    bool release;    /* the buffer held the last frame's body */
    int err;         /* sticky: a protocol error ends the stream */
    size_t hdr_got;
    uint8_t hdr[PROTO_HEADER_SIZE];
    proto_header cur;
    uint8_t *buf;
    size_t buf_cap, body_got;
} proto_reader;

/* body_max: the largest body this end accepts (what it announces in HELLO
 * or HELLO_ANS), PROTO_BODY_LIMIT_MIN .. PROTO_BODY_MAX; 0 means
 * PROTO_BODY_MAX. */
void proto_reader_init(proto_reader *r, enum proto_side side, uint32_t body_max);
/* After the HELLO (server) or HELLO_ANS (client) frame: every later frame
 * must carry this version and must not be a HELLO / HELLO_ANS. */
void proto_reader_set_version(proto_reader *r, uint16_t version);
/* Consumes bytes from data (len bytes); *used says how many. Returns 0 with
 * a frame in *out as soon as one is complete (call again with the rest);
 * WP_EAGAIN when all len bytes were consumed and the frame is incomplete;
 * WP_ECORRUPT on a protocol error (bad header, body_len above body_max, a
 * frame the connection state does not allow, CRC mismatch, a body that
 * does not decode); WP_ENOMEM if the body buffer cannot be allocated.
 * Errors are sticky: the connection must be closed. */
int proto_reader_feed(proto_reader *r, const uint8_t *data, size_t len, size_t *used,
                      proto_frame *out);
/* Bytes of an incomplete frame consumed so far (0 between frames): a peer
 * that closes with this > 0 cut a frame short. */
size_t proto_reader_pending(const proto_reader *r);
/* Frees the buffer; the reader may be initialised again. */
void proto_reader_free(proto_reader *r);

#endif
