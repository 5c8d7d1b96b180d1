/* etcd_client.h — a small etcd v3 client over the HTTP/JSON gateway
 * (libcurl + cJSON): range, put, deleterange, txn, leases, watch, several
 * endpoints with failover, TLS, user/password auth, a deadline on every call.
 *
 * Keys are NUL-terminated strings (Woodpecker's keys are text); values are
 * bytes. Everything an etcd server returns is validated: a response that is
 * not the JSON we expect is WP_ECORRUPT, one larger than max_response_bytes
 * is WP_ETOOBIG, never a crash.
 *
 * Errors: WP_EUNAVAILABLE when no endpoint answered before the deadline (the
 * message names the endpoint and the transport error), WP_ENOENT for etcd's
 * NotFound (an unknown lease), WP_EINVAL for requests etcd rejects,
 * WP_ETRUNCATED for a compacted revision, WP_ENOSPC when etcd's quota is
 * exhausted. A write whose outcome is unknown (sent, then the connection
 * failed or the server answered with a transient error) sets maybe_applied
 * in its result: the caller must re-check, never blindly retry.
 *
 * Thread safety: a client may be used by many threads at once; it keeps a
 * small pool of curl handles (connection reuse). Watches run on their own
 * threads. */
#ifndef WP_META_ETCD_CLIENT_H
#define WP_META_ETCD_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct etcd_client etcd_client;
typedef struct etcd_watch etcd_watch;

typedef struct {
    const char *endpoints;       /* comma-separated http(s)://host:port URLs */
    int64_t timeout_ms;          /* default deadline of a call (> 0) */
    const char *username;        /* NULL or "" = no auth */
    const char *password;
    const char *ca_file;         /* NULL or "": system CAs */
    const char *cert_file;       /* client TLS certificate (optional) */
    const char *key_file;
    size_t max_response_bytes;   /* 0 = ETCD_RESPONSE_BYTES_MAX */
} etcd_options;

/* Bound on one response body and on one watch line (64 MiB). */
#define ETCD_RESPONSE_BYTES_MAX (64u * 1024 * 1024)
/* Bound on endpoints in the list. */
#define ETCD_ENDPOINTS_MAX 16

typedef struct {
    char *key;               /* NUL-terminated (keys with a NUL are refused) */
    size_t key_len;
    uint8_t *value;          /* NUL-terminated too, for convenience */
    size_t value_len;
    int64_t create_rev, mod_rev, version, lease;
} etcd_kv;

/* The result of one operation (a range, a put or a delete). */
typedef struct {
    etcd_kv *kvs;
    size_t n_kvs;
    int64_t count;           /* range: keys matching; delete: keys deleted */
    bool more;               /* range: more keys beyond the limit */
} etcd_op_result;

typedef struct {
    int64_t revision;        /* header.revision: the store revision */
    bool succeeded;          /* txn: the compares held */
    etcd_op_result *ops;     /* range: one; txn: one per op of the branch */
    size_t n_ops;
    bool maybe_applied;      /* on error: the write may have taken effect */
} etcd_result;

void etcd_result_free(etcd_result *r);

typedef enum { ETCD_CMP_CREATE, ETCD_CMP_MOD, ETCD_CMP_VALUE } etcd_cmp_target;
typedef enum { ETCD_CMP_EQUAL, ETCD_CMP_GREATER, ETCD_CMP_LESS, ETCD_CMP_NOT_EQUAL } etcd_cmp_result;

typedef struct {
    etcd_cmp_target target;
    etcd_cmp_result result;
    const char *key;
    int64_t rev;             /* CREATE/MOD */
    const void *value;       /* VALUE */
    size_t value_len;
} etcd_cmp;

typedef enum { ETCD_OP_RANGE, ETCD_OP_PUT, ETCD_OP_DELETE } etcd_op_kind;

typedef struct {
    etcd_op_kind kind;
    const char *key;
    bool prefix;             /* RANGE/DELETE: every key starting with key */
    const void *value;       /* PUT */
    size_t value_len;
    int64_t lease;           /* PUT: 0 = none */
    int64_t limit;           /* RANGE: 0 = no limit */
    int64_t revision;        /* RANGE: read at this revision; 0 = latest */
    bool keys_only;          /* RANGE */
    const char *prefix_of;   /* RANGE: if set, the range runs from key to the
                              * end of the keys starting with prefix_of
                              * (pagination: key = the next key to read) */
} etcd_op;

/* Creates a client (no network I/O yet). */
int etcd_client_new(const etcd_options *o, etcd_client **out);
void etcd_client_free(etcd_client *c);
/* The endpoint requests go to now (for messages and tests). */
const char *etcd_client_endpoint(etcd_client *c);
/* A monotonic deadline (ns) `timeout_ms` from now; 0 = the client default. */
int64_t etcd_deadline(const etcd_client *c, int64_t timeout_ms);

/* Every call takes a monotonic deadline (wp__now_ns scale); 0 = now + the
 * client's timeout. Results are filled on success; free them with
 * etcd_result_free (also after an error: it is then empty). */
int etcd_range(etcd_client *c, const etcd_op *range, int64_t deadline_ns, etcd_result *out);
int etcd_put(etcd_client *c, const char *key, const void *val, size_t len, int64_t lease,
             int64_t deadline_ns, etcd_result *out);
int etcd_delete(etcd_client *c, const char *key, bool prefix, int64_t deadline_ns,
                etcd_result *out);
int etcd_txn(etcd_client *c, const etcd_cmp *cmp, size_t n_cmp, const etcd_op *success,
             size_t n_success, const etcd_op *failure, size_t n_failure, int64_t deadline_ns,
             etcd_result *out);

/* Leases (ttl in seconds, as etcd counts; the server may raise it to its
 * minimum). keepalive and timetolive give WP_ENOENT for a lease that is
 * gone; revoke gives WP_ENOENT for an unknown lease. */
int etcd_lease_grant(etcd_client *c, int64_t ttl_s, int64_t deadline_ns, int64_t *id,
                     int64_t *granted_ttl_s);
int etcd_lease_keepalive(etcd_client *c, int64_t id, int64_t deadline_ns, int64_t *ttl_s);
int etcd_lease_revoke(etcd_client *c, int64_t id, int64_t deadline_ns, bool *maybe_applied);
int etcd_lease_timetolive(etcd_client *c, int64_t id, int64_t deadline_ns, int64_t *ttl_s);

/* Raw POST of a JSON body to path (e.g. "/v3/maintenance/status"); *json
 * receives the parsed response (a cJSON *, free with cJSON_Delete). For
 * tests and tools. idempotent: may be retried on another endpoint. */
int etcd_call_json(etcd_client *c, const char *path, const char *body, bool idempotent,
                   int64_t deadline_ns, void **json);

/* ---- watch ------------------------------------------------------------- */

enum { ETCD_EV_PUT = 0, ETCD_EV_DELETE = 1 };

typedef struct {
    int type;                /* ETCD_EV_* */
    etcd_kv kv;              /* DELETE: key and mod_rev only */
} etcd_event;

/* Called on the watch's thread with every batch of events, in revision
 * order, each event exactly once (also across reconnects). The events live
 * until the callback returns. */
typedef void (*etcd_watch_fn)(void *arg, const etcd_event *ev, size_t n);
/* Called on the watch's thread when the watch ends for good: rc is
 * WP_ETRUNCATED when the next revision it needs was compacted (the caller
 * must re-read state and start a new watch), WP_ECORRUPT for garbage. */
typedef void (*etcd_watch_err_fn)(void *arg, int rc, const char *msg);

/* Watches key (or every key under it if prefix) from start_rev (0 = from
 * now). Returns once etcd confirmed the watch (or with WP_EUNAVAILABLE at
 * the deadline). After a disconnect it reconnects, rotating endpoints, from
 * the last delivered revision + 1. */
int etcd_watch_start(etcd_client *c, const char *key, bool prefix, int64_t start_rev,
                     etcd_watch_fn fn, etcd_watch_err_fn err_fn, void *arg, etcd_watch **out);
/* Stops the watch and joins its thread (prompt: no polling interval). Do
 * not call it from the watch's own callbacks. */
void etcd_watch_stop(etcd_watch *w);
/* Times the watch reconnected (tests). */
int64_t etcd_watch_reconnects(etcd_watch *w);

/* The first change to key after revision `after` (synchronous, through a
 * short-lived watch). WP_ETRUNCATED if that history was compacted. Free
 * out->kv with etcd_kv_free. */
int etcd_first_change(etcd_client *c, const char *key, int64_t after, int64_t deadline_ns,
                      etcd_event *out);
void etcd_kv_free(etcd_kv *kv);

/* ---- helpers exposed for tests ---------------------------------------- */

/* Standard base64 with padding. encode: out holds 4*ceil(n/3)+1 bytes.
 * decode: strict (alphabet, padding, length); returns the decoded length
 * or -1; out holds at least 3*(len/4) bytes. */
size_t etcd_b64_encode(const void *in, size_t n, char *out);
long etcd_b64_decode(const char *in, size_t len, uint8_t *out);
/* Parses a range or txn response body (as received) into out. */
int etcd_parse_range(const char *body, size_t len, etcd_result *out);
int etcd_parse_txn(const char *body, size_t len, etcd_result *out);

#endif
