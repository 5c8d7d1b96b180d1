/* stream_client.h — the streaming client's shared pieces (the public API is
 * include/woodpecker_stream.h; the service is docs/streaming.md):
 *   stream.c           the client: channel records kept current (watch or
 *                      poll), node choice, channel admin;
 *   stream_http.c      HTTP requests on a curl multi handle that a record
 *                      change wakes, the server's error answers;
 *   codec/wpm.c        (in src/codec) the binary messages of produce and
 *                      of the pushed stream;
 *   stream_producer.c  idempotent producers and their retries;
 *   stream_consumer.c  consumers: a pushed stream per consumer on a thread
 *                      of its own, a bounded queue, resumption on a move.
 * The client does not link src/stream/ (server code); the other way
 * round, the nodes and the coordinator decode channel records, names and
 * ids with this library's functions (sc_rec_decode, sc_channel_valid,
 * sh_id_parse), so there is one decoder of each. */
#ifndef WP_CLIENT_STREAM_CLIENT_H
#define WP_CLIENT_STREAM_CLIENT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <curl/curl.h>

#include "base/err.h"
#include "config/config.h"
#include "meta/meta.h"
#include "woodpecker_stream.h"

#define SC_KEY_CHANNELS "stream/channels/"
#define SC_KEY_PRODUCERS "stream/producers/"
#define SC_LOG_PREFIX "channel/"
#define SC_NODE_KIND "streaming"

/* Bounds (docs/streaming-api.md). */
#define SC_REQUEST_MESSAGES_MAX 10000   /* messages in one produce request (the node takes 100000) */
#define SC_ERROR_BODY_MAX (64 * 1024)   /* bytes kept of an answer that is not the stream */
#define SC_ANSWER_BYTES_MAX (64 * WP_MiB) /* a whole JSON answer (admin, produce, poll) */
/* One frame of a pushed stream (docs/streaming-api.md §7): the largest
 * entry, its properties and their headers. */
#define SC_FRAME_BYTES_MAX (64 + WP_ENTRY_BYTES_MAX + WP_PROPS_BYTES_MAX + 8 * WP_PROPS_MAX)
/* libcurl's buffers per request: what one write callback gets at most, and
 * what one send of a body takes. */
#define SC_RECV_BUFFER_BYTES (256 * 1024)
#define SC_SEND_BUFFER_BYTES (512 * 1024)
/* A consumer's queue: messages and their bytes (one message always fits). */
#define SC_QUEUE_MSGS_MAX 4096
#define SC_QUEUE_BYTES_MAX (16 * WP_MiB)
/* Retries: the first pause and the longest; one HTTP attempt at most. */
#define SC_BACKOFF_MIN_MS 20
#define SC_BACKOFF_MAX_MS 1000
#define SC_ATTEMPT_MS_MAX 30000
#define SC_CONNECT_MS 5000
#define SC_ADMIN_MS 15000
/* A pushed stream is idle for at most the node's heartbeat (10 s): no byte
 * for this long means the node is gone. */
#define SC_STREAM_IDLE_S 35
/* With a watch, the records are read again this often all the same. */
#define SC_WATCH_SAFETY_POLL_MS 30000

_Static_assert(SC_QUEUE_BYTES_MAX >= WP_MiB, "a consumer queue holds a useful amount");
_Static_assert(SC_BACKOFF_MIN_MS < SC_BACKOFF_MAX_MS, "backoff range");
_Static_assert(SC_ANSWER_BYTES_MAX > SC_ERROR_BODY_MAX, "answer bounds");

/* A channel record (docs/streaming.md §2). */
typedef struct {
    char name[WPS_CHANNEL_MAX + 1];
    int64_t term;
    char owner[WP_NODE_ID_MAX + 1];
    char addr[META_NODE_ADDR_MAX + 1];
    int64_t created_ms;
} sc_rec;

/* A request runner: a curl multi handle with one easy handle (keeps its
 * connection), registered in the client so that a change of the records
 * wakes a request in progress (sh_perform's check). */
typedef struct sh_conn {
    struct sh_conn *next; /* in the client's list, under its mu */
    wps_client *c;
    CURLM *multi;
    CURL *easy;
} sh_conn;

struct wps_client {
    wp_config cfg;
    wp__logger lg;
    meta *m;
    meta_watch *watch;
    pthread_t thr;
    bool thr_started;
    pthread_mutex_t mu; /* everything below */
    pthread_cond_t cond; /* gen changed, kick, stop */
    sc_rec *recs;        /* sorted by name */
    size_t n_recs;
    uint64_t gen;        /* bumped when the records changed */
    bool kick, stop, watch_failed;
    sh_conn *conns;      /* woken on a change */
    unsigned node_next;  /* admin: the node to ask first */
    int n_handles;       /* open producers and consumers */
};

/* ---- records (stream.c) ---- */

bool sc_channel_valid(const char *name);
/* Decodes the value of stream/channels/<name>: WP_ECORRUPT if it breaks the
 * rules of docs/streaming.md §2. */
int sc_rec_decode(const char *name, const uint8_t *v, size_t len, sc_rec *out);
/* The record as the client knows it (a copy) and the generation it is of;
 * false if the client has none. */
bool sc_lookup(wps_client *c, const char *name, sc_rec *out, uint64_t *gen);
/* Reads the record from the store now (WP_ENOENT). */
int sc_get(wps_client *c, const char *name, sc_rec *out);
/* Asks for the records to be read again now (after a failure that may mean
 * a move the client has not seen). */
void sc_kick(wps_client *c);
/* Waits until the records' generation differs from gen, the deadline
 * (CLOCK_MONOTONIC ns), or *stop (may be NULL) is set and sc_wake called.
 * True if it changed. */
bool sc_wait_change(wps_client *c, uint64_t gen, int64_t deadline_ns, const _Atomic bool *stop);
/* Wakes every sc_wait_change (to look at its stop flag). */
void sc_wake(wps_client *c);
/* Counts open producers and consumers (+1 at open, -1 at close), for the
 * check at wps_client_close. */
void sc_handles_add(wps_client *c, int d);

/* ---- a produce body (stream_body.c) ---- */

/* The body of one request of cnt messages numbered from seq0, total bytes
 * (as the encoding of §7 takes them), whose largest head (the request's
 * header, or a message's seq, length and properties) is head_max bytes.
 * Set term before each attempt, then sc_body_rewind; sc_body_read writes
 * the next bytes (at most max, fewer only at the end). */
typedef struct {
    const char *id;
    size_t idl;
    int64_t term;
    const wp_payload *msgs;
    size_t cnt;
    int64_t seq0;
    size_t total;
    uint8_t *head; /* the piece being written: header or a message's head */
    size_t head_len;
    long part;     /* -1: the request's header, else the message */
    bool payload;  /* in msgs[part]'s payload, else in head */
    size_t off;
} sc_body;
int sc_body_init(sc_body *s, const char *producer, const wp_payload *msgs, size_t cnt,
                 int64_t seq0, size_t total, size_t head_max);
void sc_body_rewind(void *s);
size_t sc_body_read(void *s, char *buf, size_t max);
void sc_body_free(sc_body *s);

/* ---- HTTP (stream_http.c) ---- */

int sh_conn_init(sh_conn *h, wps_client *c);
void sh_conn_free(sh_conn *h);

typedef struct {
    const char *method;   /* "GET", "POST", "DELETE" */
    const char *url;
    const char *body;     /* NULL: none */
    size_t body_len;
    /* Or a body of body_len bytes written by body_read into buf (at most
     * max; returns the count), from the start again after body_rewind. */
    size_t (*body_read)(void *arg, char *buf, size_t max);
    void (*body_rewind)(void *arg);
    void *body_arg;
    const char *content_type; /* of the body; NULL: application/json */
    const char *accept;       /* NULL: no Accept header */
    int64_t timeout_ms;   /* the whole request; 0: none (a stream) */
    /* Where the answer goes: on_data (a stream; return false to stop it),
     * or else collected into sh_resp.body up to SC_ANSWER_BYTES_MAX. */
    bool (*on_data)(void *arg, CURL *easy, const char *p, size_t n);
    void *arg;
    /* Called whenever the request wakes (a record change, about once a
     * second otherwise): true stops it (sh_resp.aborted). */
    bool (*check)(void *arg);
    void *check_arg;
} sh_req;

typedef struct {
    long status;       /* 0 if no answer */
    CURLcode curl_rc;
    bool aborted;      /* stopped by check or on_data */
    char *body;        /* NUL-terminated; free(); NULL if none or on_data */
    size_t len;
    char err[CURL_ERROR_SIZE];
} sh_resp;

/* Runs one request. Never fails itself: the outcome is in *r (free
 * r->body). */
void sh_perform(sh_conn *h, const sh_req *q, sh_resp *r);
void sh_resp_free(sh_resp *r);

/* The WP_E* code of an error answer (its "error" field, else the status),
 * recorded with wp__err: "<what>: <node>: HTTP <status> <error>: <message>".
 * A transport failure is WP_EUNAVAILABLE. */
int sh_error(const sh_resp *r, const char *what, const char *addr);

/* A growable byte buffer. */
typedef struct {
    char *p;
    size_t len, cap;
    bool oom;
} sh_buf;
void sh_buf_put(sh_buf *b, const void *p, size_t n);
void sh_buf_str(sh_buf *b, const char *s);
void sh_buf_fmt(sh_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sh_buf_free(sh_buf *b);

/* "S:E" with both parts non-negative decimal. */
bool sh_id_parse(const char *s, wp_msg_id *out);
/* Milliseconds left until deadline_ns (CLOCK_MONOTONIC), at least 0. */
int64_t sh_left_ms(int64_t deadline_ns);
/* Sleeps up to ms (and at most until deadline_ns), returning early when
 * the records change or *stop (may be NULL) is set (and sc_wake called). */
void sh_pause(wps_client *c, uint64_t gen, int64_t ms, int64_t deadline_ns,
              const _Atomic bool *stop);

#endif
