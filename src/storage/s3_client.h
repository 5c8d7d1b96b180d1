/* s3_client.h — a small S3 client on libcurl (SigV4 signatures and hashes
 * computed with OpenSSL libcrypto; requests never carry "Expect:
 * 100-continue", so a PUT's body goes with its request).
 *
 * One s3_client talks to one bucket. It is thread-safe: requests take an
 * easy handle from a bounded pool (so connections are reused) and give it
 * back. Every request has a timeout; failures that may be transient (HTTP
 * 500/502/503/504, 408, 429, timeouts, connection errors and resets) are
 * retried up to max_retries times with exponential backoff and full jitter.
 * Other 4xx answers fail at once with a wp_errmsg() naming the method,
 * bucket, key and the S3 error Code from the XML body.
 *
 * Return codes: 0, or WP_ENOENT (404), WP_EEXIST (412 on a conditional PUT:
 * the key exists; callers map it to WP_EFENCED), WP_ECONFLICT (412 or 404
 * on an If-Match PUT: the object is not the one named), WP_ETOOBIG (413 or an
 * answer larger than its bound), WP_ETIMEDOUT (retries exhausted, last
 * failure a timeout), WP_EUNAVAILABLE (retries exhausted otherwise),
 * WP_EIO (any other failure, including malformed answers), WP_EINVAL,
 * WP_ENOMEM.
 *
 * Every byte from the network is bounded: XML answers by S3_XML_BYTES_MAX,
 * keys by S3_KEY_MAX, ETags by S3_ETAG_MAX, GET bodies by the caller's
 * buffer, header lines by their callback's length. */
#ifndef WP_STORAGE_S3_CLIENT_H
#define WP_STORAGE_S3_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "base/err.h"

#define S3_KEY_MAX 1024              /* bytes in an object key (S3's own limit) */
#define S3_ETAG_MAX 128              /* bytes in an ETag, quotes stripped */
#define S3_UPLOAD_ID_MAX 1024        /* bytes in a multipart upload id */
#define S3_CODE_MAX 64               /* bytes kept of an S3 error Code */
#define S3_XML_BYTES_MAX (8 * 1024 * 1024) /* an XML answer (list, error, ...) */
#define S3_LIST_KEYS_MAX 1000        /* max-keys of one list page (S3's limit) */
#define S3_DELETE_KEYS_MAX 1000      /* keys of one DeleteObjects request (S3's limit) */
#define S3_RETRIES_MAX 30            /* cap on max_retries */
#define S3_PARTS_MAX 10000           /* parts of a multipart upload (S3's limit) */
#define S3_PART_BYTES_MIN (5 * 1024 * 1024) /* every part but the last (S3's limit) */
#define S3_OBJECT_BYTES_MAX (5LL * 1024 * 1024 * 1024) /* one PUT or part (S3's limit) */

typedef struct s3_client s3_client;

typedef struct {
    const char *endpoint;   /* http://host[:port] or https://...; no path */
    const char *bucket;     /* DNS-compatible name (3..63 bytes) */
    const char *region;     /* NULL or "" = us-east-1 */
    const char *access_key; /* NULL or "" = $AWS_ACCESS_KEY_ID (keys: at most 256 bytes) */
    const char *secret_key; /* NULL or "" = $AWS_SECRET_ACCESS_KEY */
    const char *session_token; /* NULL = $AWS_SESSION_TOKEN (may be unset) */
    const char *ca_file;    /* NULL or "" = the system's CA bundle */
    bool path_style;        /* host/bucket/key instead of bucket.host/key */
    int64_t timeout_ms;     /* per attempt, plus 1 ms per KiB of body; 0 = 30000 */
    int max_retries;        /* retries after the first attempt, 0..S3_RETRIES_MAX */
    int retry_base_ms;      /* backoff: attempt k sleeps rand[0, min(cap, base*2^k)]; 0 = 50 */
    int retry_cap_ms;       /* 0 = 2000 */
    const wp__logger *logger; /* may be NULL; retries are logged at WARN */
} s3_options;

/* Opens a client (copies every string of o). */
int s3_client_open(const s3_options *o, s3_client **out);
void s3_client_close(s3_client *c);
const char *s3_client_bucket(const s3_client *c);

/* ---- fault injection (tests) --------------------------------------------- */

typedef enum {
    S3_FAULT_NONE = 0,  /* send the request normally */
    S3_FAULT_STATUS,    /* do not send; answer `status` with body `body` */
    S3_FAULT_RESET,     /* do not send; fail as a connection reset */
    S3_FAULT_RESET_AFTER, /* send it (the server applies it), then fail as a
                           * reset: the answer is lost */
    S3_FAULT_SLOW,      /* send it, then stall delay_ms before reading the
                         * answer (a timeout if delay_ms exceeds it) */
} s3_fault_kind;

typedef struct {
    const char *method; /* "GET", "PUT", "HEAD", "DELETE", "POST" */
    const char *key;    /* "" for bucket-level requests */
    const char *query;  /* "" if none; sorted and encoded, without '?' */
    const char *url;
    int attempt;        /* 0 for the first try */
    uint64_t body_bytes;
} s3_fault_req;

typedef struct {
    s3_fault_kind kind;
    int status;         /* S3_FAULT_STATUS */
    const char *body;   /* S3_FAULT_STATUS; NULL = empty; copied */
    int64_t delay_ms;   /* S3_FAULT_SLOW */
} s3_fault;

/* Called before every attempt of every request (from the calling thread);
 * fills *out (zeroed beforehand). NULL removes the hook. */
typedef void (*s3_fault_fn)(void *arg, const s3_fault_req *req, s3_fault *out);
void s3_client_set_fault(s3_client *c, s3_fault_fn fn, void *arg);

/* Counters since open (for tests and benchmarks). */
typedef struct {
    uint64_t requests; /* logical operations */
    uint64_t attempts; /* HTTP exchanges tried, retries included */
    uint64_t retries;
    uint64_t puts;     /* successful object or part PUTs */
    uint64_t put_bytes;
    uint64_t own_object_412; /* conditional PUTs that found their own object */
    uint64_t gets;     /* successful s3_get/s3_get_ex calls */
    uint64_t deletes;  /* keys deleted, singly or in batches (missing ones too) */
    uint64_t batch_deletes; /* DeleteObjects requests (one per batch; retries
                             * are counted in attempts) */
} s3_stats;
void s3_client_stats(s3_client *c, s3_stats *out);

/* ---- objects ----------------------------------------------------------- */

#define S3_PUT_IF_ABSENT 1u /* If-None-Match: *  (412 -> WP_EEXIST) */

typedef struct {
    uint64_t size;
    char etag[S3_ETAG_MAX]; /* without quotes; "" if the answer had none */
} s3_obj_info;

typedef struct {
    unsigned flags;       /* S3_PUT_IF_ABSENT */
    const char *if_match; /* NULL, or the If-Match value, sent verbatim (RGW
                           * matches only the unquoted ETag, AWS both forms) */
} s3_put_opts;

/* Uploads the bytes of iov (any iovcnt >= 0) as object key in one PUT with
 * x-amz-content-sha256 and Content-MD5. o may be NULL (no condition).
 * With S3_PUT_IF_ABSENT, WP_EEXIST if the key exists; with if_match,
 * WP_ECONFLICT if the object's ETag differs or the key is missing (412 or
 * 404); both at once are WP_EINVAL. A 412 after an earlier attempt of this
 * same call may have succeeded (its answer lost) is 0 if the object found
 * has our size and MD5 (so identical bytes written by another count as
 * ours: make bodies unique where that matters). out may be NULL; on
 * success it receives our size and the new object's ETag from the answer
 * (from a HEAD when the own-object check decided). */
int s3_put_ex(s3_client *c, const char *key, const struct iovec *iov, int iovcnt,
              const s3_put_opts *o, s3_obj_info *out);

/* s3_put_ex with options {flags} and no out. */
int s3_put(s3_client *c, const char *key, const struct iovec *iov, int iovcnt, unsigned flags);

/* Reads up to len bytes of object key from byte off into buf (a ranged GET);
 * *got < len only at the object's end (0 if off is at or past it). If
 * obj_size is not NULL it receives the object's total size (when off is
 * past the end: what the 416 answer states, or 0). len == 0 reads nothing
 * but still checks the object exists (a HEAD). */
int s3_get(s3_client *c, const char *key, uint64_t off, void *buf, size_t len, size_t *got,
           uint64_t *obj_size);

/* s3_get that also reports, if info is not NULL, the object's total size
 * and the ETag of the answer the bytes came from: an If-Match PUT with it
 * replaces exactly the object read. When off is at or past the end and the
 * 416 answer names no ETag (RGW's names neither ETag nor size), a HEAD
 * supplies both if it finds the object still ending at or before off;
 * otherwise (changed in between, HEAD failed, no ETag at all) it is "". */
int s3_get_ex(s3_client *c, const char *key, uint64_t off, void *buf, size_t len, size_t *got,
              s3_obj_info *info);

int s3_head(s3_client *c, const char *key, s3_obj_info *out);

/* Deletes key; a missing key is success (idempotent). */
int s3_delete(s3_client *c, const char *key);

/* Deletes the n keys (n == 0 does nothing) with DeleteObjects (POST
 * /?delete, quiet, Content-MD5), S3_DELETE_KEYS_MAX keys per request, in
 * order; a batch is re-sent whole on transient failures. Missing keys are
 * success (also an <Error> with Code NoSuchKey); any other per-key <Error>
 * is WP_EIO naming the first such key, its Code and Message (the batches
 * before it are done; keys of its own batch may be). A batch answered 501
 * or 405 is deleted with s3_delete, one key at a time, as are keys XML
 * cannot carry (control bytes, invalid UTF-8). Every key is checked
 * (WP_EINVAL) before anything is sent. */
int s3_delete_many(s3_client *c, const char *const *keys, size_t n);

/* ---- listing (ListObjectsV2) ------------------------------------------- */

typedef struct {
    char *key;
    uint64_t size;
} s3_list_item;

typedef struct {
    s3_list_item *items;
    size_t n_items;
    char **prefixes; /* CommonPrefixes, with a delimiter */
    size_t n_prefixes;
    bool truncated;
    char *next_token; /* NextContinuationToken, NULL if none */
} s3_list_page;

/* One page of keys under prefix (in key order). delimiter, start_after and
 * token may be NULL; max_keys 1..S3_LIST_KEYS_MAX (0 = 1000). Every key and
 * prefix returned starts with `prefix` (checked). Free with
 * s3_list_page_free even after an error. */
int s3_list(s3_client *c, const char *prefix, const char *delimiter, const char *start_after,
            const char *token, int max_keys, s3_list_page *out);
void s3_list_page_free(s3_list_page *p);

/* Calls fn for every key under prefix (all pages), in key order, stopping
 * at the first non-zero return of fn (which s3_list_all returns). At most
 * max_items keys are visited; more is WP_ETOOBIG. */
typedef int (*s3_list_fn)(void *arg, const char *key, uint64_t size);
int s3_list_all(s3_client *c, const char *prefix, const char *start_after, int max_keys,
                size_t max_items, s3_list_fn fn, void *arg);

/* ---- multipart upload -------------------------------------------------- */

int s3_mpu_create(s3_client *c, const char *key, char upload_id[S3_UPLOAD_ID_MAX]);
/* part_no 1..S3_PARTS_MAX; etag receives the part's ETag. */
int s3_mpu_put_part(s3_client *c, const char *key, const char *upload_id, int part_no,
                    const struct iovec *iov, int iovcnt, char etag[S3_ETAG_MAX]);
int s3_mpu_complete(s3_client *c, const char *key, const char *upload_id,
                    const char (*etags)[S3_ETAG_MAX], int n_parts);
int s3_mpu_abort(s3_client *c, const char *key, const char *upload_id);
/* Uploads buf as key in parts of part_bytes (>= S3_PART_BYTES_MIN), then
 * completes; aborts the upload on any failure. Not conditional (S3
 * servers differ on If-None-Match at completion). */
int s3_put_multipart(s3_client *c, const char *key, const void *buf, size_t len,
                     size_t part_bytes);

/* ---- helpers exposed for tests -------------------------------------------- */

/* Parses a ListObjectsV2 answer. WP_EIO if malformed (detail set). */
int s3_parse_list(const char *xml, size_t len, s3_list_page *out);
/* Copies the <Code> and <Message> of an S3 <Error> body (each truncated to
 * its capacity, entities decoded); "" when absent. */
void s3_parse_error(const char *xml, size_t len, char *code, size_t code_cap, char *msg,
                    size_t msg_cap);
/* Percent-encodes s per SigV4 (unreserved bytes kept; '/' kept iff
 * keep_slash). Returns the length, or -1 if it does not fit cap. */
int s3_uri_encode(const char *s, bool keep_slash, char *out, size_t cap);
/* The backoff before retry k (k >= 1): uniform in [0, min(cap, base*2^(k-1))]. */
int64_t s3_backoff_ms(int k, int base_ms, int cap_ms);

#endif
