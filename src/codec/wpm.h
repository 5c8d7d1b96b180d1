/* wpm.h — the streaming service's binary message encoding
 * (docs/streaming-api.md §7, "WPM1"): produce requests and answers, and the
 * frames of a pushed stream. Shared by the streaming node (src/stream/) and
 * the C client (src/client/stream_*.c). Encoders write into memory the
 * caller sized with the *_size functions; decoders never read past the
 * bytes they are given and return a reason for what they refuse. */
#ifndef WP_CODEC_WPM_H
#define WP_CODEC_WPM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "woodpecker.h"

#define WPM_CONTENT_TYPE "application/vnd.woodpecker.messages"
#define WPM_MAGIC "WPM1"
#define WPM_MAGIC_LEN 4
#define WPM_PRODUCER_MAX 128
#define WPM_SEQ_MAX 9007199254740992LL /* 2^53: seqs are JSON numbers too */

#define WPM_FRAME_MSG 'M'
#define WPM_FRAME_HEARTBEAT 'H'
#define WPM_FRAME_END 'E'
#define WPM_END_JSON_MAX 4096

/* Fixed parts. */
#define WPM_REQ_HDR_FIXED (WPM_MAGIC_LEN + 8 + 2)   /* magic, term, producer_len */
#define WPM_REQ_MSG_FIXED (8 + 4 + 2)               /* seq, payload_len, n_props */
#define WPM_PROP_FIXED (2 + 4 + 2)                  /* key_len, value_len, two 0 bytes */
#define WPM_ANS_HDR_FIXED (WPM_MAGIC_LEN + 8 + 4)   /* magic, term, count */
#define WPM_ANS_ID 17                               /* segment, entry, dup */
#define WPM_FRAME_MSG_FIXED (1 + 8 + 8 + 4 + 2)     /* type, id, payload_len, n_props */

/* A message as decoded: pointers into the decoded bytes (keys and values
 * are NUL-terminated there). Properties are read with wpm_prop_next. */
typedef struct {
    int64_t seq;            /* request: -1 none */
    wp_msg_id id;           /* stream frame */
    const uint8_t *data;
    size_t len;
    uint16_t n_props;
    const uint8_t *props;   /* n_props encoded properties */
    size_t props_len;
} wpm_msg;

/* The properties of a message: *off starts at 0; fills key/value (C
 * strings of the given lengths) and returns true while there is one. Only
 * for a message the decoder accepted. */
bool wpm_prop_next(const wpm_msg *m, size_t *off, const char **key, size_t *klen,
                   const char **val, size_t *vlen);

/* Valid UTF-8 without a 0 byte (what a JSON string and a property hold). */
bool wpm_utf8_valid(const void *p, size_t n);

/* ---- encoding ---- */

/* Bytes of the properties of m (keys and values are C strings). */
size_t wpm_props_size(size_t n_props, const char *const *keys, const char *const *vals);
size_t wpm_req_hdr_size(size_t producer_len);
uint8_t *wpm_put_req_hdr(uint8_t *p, int64_t term, const char *producer, size_t producer_len);
/* A request message: WPM_REQ_MSG_FIXED + wpm_props_size + len bytes. */
uint8_t *wpm_put_req_msg(uint8_t *p, int64_t seq, const wp_payload *m);
/* The same without the payload (what comes before it), for a writer that
 * sends the payload from where it is. */
uint8_t *wpm_put_req_msg_head(uint8_t *p, int64_t seq, const wp_payload *m);
uint8_t *wpm_put_ans_hdr(uint8_t *p, int64_t term, uint32_t count);
uint8_t *wpm_put_ans_id(uint8_t *p, wp_msg_id id, bool dup);
/* A stream message frame: WPM_FRAME_MSG_FIXED + wpm_props_size + len. */
uint8_t *wpm_put_frame_msg(uint8_t *p, wp_msg_id id, const uint8_t *data, size_t len,
                           size_t n_props, const char *const *keys, const char *const *vals);

/* ---- decoding ----
 * Each returns 0 and fills *out, or -1 with a reason in why (at most
 * WPM_WHY_MAX bytes). */
#define WPM_WHY_MAX 160

/* A produce request's header: *off is where the messages start. */
typedef struct {
    int64_t term; /* -1: none */
    char producer[WPM_PRODUCER_MAX + 1]; /* "" none */
} wpm_req_hdr;
int wpm_req_hdr_decode(const uint8_t *p, size_t n, wpm_req_hdr *out, size_t *off, char *why);
/* The request message at p[*off..n): advances *off. payload_len above
 * max_payload or more than max_props properties is refused. */
int wpm_req_msg_decode(const uint8_t *p, size_t n, size_t *off, size_t max_payload,
                       size_t max_props, wpm_msg *out, char *why);

/* A produce answer: the count and where its ids start; wpm_ans_id reads
 * the i-th (i < count). */
int wpm_ans_decode(const uint8_t *p, size_t n, int64_t *term, uint32_t *count,
                   const uint8_t **ids, char *why);
void wpm_ans_id(const uint8_t *ids, uint32_t i, wp_msg_id *id, bool *dup);

/* A stream frame at p[0..n): returns the frame's length (> 0) and its
 * type in *type (with *msg for 'M', *end and *end_len for 'E'), 0 if the frame
 * is not complete yet (*need: the bytes it needs, when known, else 0), or
 * -1 if it is malformed or above max_frame bytes. */
long long wpm_frame_decode(const uint8_t *p, size_t n, size_t max_frame, char *type,
                           wpm_msg *msg, const char **end, size_t *end_len, size_t *need,
                           char *why);

#endif
