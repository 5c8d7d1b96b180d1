/* s3.c — the storage backend on S3 (docs/format.md, "Object storage layout").
 *
 * Segment s of log l is the set of objects <prefix>/<l>/<s>/<n>.blk, n a
 * 12-digit zero-padded block number (so listing order is numeric order).
 * Every object is written once with If-None-Match: * and is either
 *   - a data object: the bytes of one seg_append, or
 *   - a marker: 36 or 44 bytes (magic, kind, epoch, a random nonce, for a
 *     reopen the cut, a check binding it to its segment) that records an
 *     ownership change and adds no bytes to the segment.
 * The segment's byte stream is the concatenation of its data objects in
 * block-number order.
 *
 * Ownership: seg_create puts a "create" marker of the writer's epoch at
 * block 0 (412: the segment exists). A writer PUTs each append at its next
 * block number; a 412 there means someone else (a fencer or a newer writer)
 * took that number: WP_EFENCED. seg_fence(E) fails with WP_EFENCED if a
 * marker above E exists, does nothing if the highest is E; otherwise it
 * puts a "fence" marker of epoch E at the first free block number, probing
 * upwards with PUTs only (a racing writer's appends cost it one request
 * each too), then removes it again (WP_EFENCED) if it skipped a newer
 * epoch's marker. seg_reopen(E, len) refuses if a marker above E exists,
 * puts a "reopen" marker of epoch E with its cut (the last data object
 * kept) REOPEN_MOAT numbers past the last object, deletes the data objects
 * past byte len, and appends after the marker. Markers are never
 * deleted (except with the whole segment): deleting one would free its
 * number for a stale writer.
 *
 * Readers list the segment (once fully, then incrementally with
 * start-after), classify objects of marker size by reading them, and map
 * byte offsets to ranged GETs. A new marker seen by an incremental refresh,
 * or an object that vanished, makes the reader list everything again
 * (a reopen may have cut data). There is no LAC hint: seg_read_lac is
 * WP_ENOTSUP; objects are visible only once durable. */
#include "storage/s3.h"

#include <inttypes.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <openssl/sha.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/limits.h"
#include "storage/s3_layout.h"

/* Objects per segment (data + markers): at most one append per block,
 * plus header, footer and markers. */
#define SEG_OBJECTS_MAX ((uint64_t)WP_SEGMENT_BLOCKS_MAX + 4096)
/* Digits of a block number in its key; SEG_OBJECTS_MAX fits. */
#define BLOCK_DIGITS 12
/* A marker object (format.md section 11): magic 8, version 2, kind 2,
 * epoch 8, nonce 8, [version 2: cut 8,] check 8 (SHA-256 of the bytes
 * before it, log_id, segment_id: first 8 bytes). Shorter than any logstore
 * append (the shortest, the segment header, is 48), so readers rarely read
 * data objects to classify them; the nonce makes every marker unique
 * (s3_put's own-object check). Version 2 is a reopen marker with its cut. */
#define MARKER_BYTES 36    /* version 1: create, fence (and older reopens) */
#define MARKER_V2_BYTES 44 /* version 2: reopen, with the cut */
#define MARKER_BYTES_MAX MARKER_V2_BYTES
#define MARKER_CHECKED 28 /* version 1: bytes covered by the check, with the ids */
/* Free block numbers a fencer probes before giving up (a writer racing
 * it takes one number per PUT). */
#define FENCE_TRIES_MAX 1000
/* Times reopen retries after losing its marker's number to a racer. */
#define REOPEN_TRIES_MAX 16
/* Listing rounds of a deletion: objects that land while it deletes (uploads
 * of a writer that was fenced, still in flight) are found by the next
 * round; the deletion ends at the first empty listing. */
#define DELETE_ROUNDS_MAX 8
/* The epoch of the fence a deletion puts first: above every writer's. */
#define DELETE_FENCE_EPOCH INT64_MAX
/* A reopen marker goes this many numbers past the last object listed: a
 * fenced writer's uploads still in flight (at most flush.max_threads, 64,
 * past its first missing number) land below it and above its cut, where
 * they are excluded, even if they overwrote the fence marker (an endpoint
 * that ignores If-None-Match). */
#define REOPEN_MOAT 1024
/* Segments listed per log. */
#define LOG_SEGMENTS_MAX (1 << 24)
/* <prefix>/<log id>/<segment id>/<n>.blk */
#define PREFIX_MAX 256
#define SEG_PFX_MAX (PREFIX_MAX + 2 * 21 + 4)
#define BLOCK_KEY_MAX (SEG_PFX_MAX + 48) /* room for m_<u64>_<u64>.blk */
/* The footer object (format.md section 11.1). */
#define FOOTER_NAME "footer.blk"
/* Merged objects built at once by a compaction, and the memory they may
 * take together (a run bigger than that is built alone). */
#define COMPACT_THREADS 4
#define COMPACT_BYTES (128ull * 1024 * 1024)

_Static_assert(SEG_OBJECTS_MAX < 1000000000000ULL, "block numbers fit BLOCK_DIGITS");
_Static_assert(BLOCK_KEY_MAX <= S3_KEY_MAX, "keys fit S3's limit");

static const char MARKER_MAGIC[8] = {'W', 'P', 'S', '3', 'M', 'A', 'R', 'K'};
enum { MARK_CREATE = 1, MARK_FENCE = 2, MARK_REOPEN = 3 };

/* Readers keep the last object they fetched whole (objects up to this
 * size), so reading a block header and then its records costs one GET. */
#define READ_CACHE_BYTES_MAX (64 * 1024 * 1024)

/* Read-ahead (format.md section 11): when a reader moves to object i, it
 * also has the next data objects of its view fetched, at most
 * READ_AHEAD_OBJECTS of them and READ_AHEAD_BYTES in its ring (in flight or
 * fetched, not yet read), by the backend's pool of AHEAD_POOL_THREADS
 * threads shared by all its readers, within AHEAD_POOL_BYTES for all of
 * them. Only whole-cached objects are fetched ahead. WP_S3_READ_AHEAD=0 in
 * the environment turns it off (benchmarks). */
#define READ_AHEAD_OBJECTS 4
#define READ_AHEAD_BYTES (32 * 1024 * 1024)
#define AHEAD_POOL_THREADS 8
#define AHEAD_POOL_BYTES (256ull * 1024 * 1024)

_Static_assert(READ_AHEAD_BYTES <= READ_CACHE_BYTES_MAX, "ahead objects are cacheable");
_Static_assert(READ_AHEAD_BYTES <= AHEAD_POOL_BYTES, "one reader fits the pool");

enum { SLOT_FREE = 0, SLOT_QUEUED, SLOT_FETCHING, SLOT_READY };

/* One object fetched ahead. Only the reader's thread moves a slot out of
 * FREE or READY; a pool thread moves it QUEUED -> FETCHING -> READY or
 * FREE. Under the pool's mutex. */
typedef struct {
    int state;
    uint64_t n, last, size; /* the object, as the view named it */
    uint64_t gen;     /* the reader's gen when queued */
    unsigned char *buf; /* READY: size bytes, owned by the slot */
} ahead_slot;

typedef struct {
    pthread_cond_t done; /* one of the slots' fetch finished */
    ahead_slot slot[READ_AHEAD_OBJECTS];
    st_reader *prev, *next; /* in the pool's list of readers */
} ahead_ring;

typedef struct {
    pthread_mutex_t mu;  /* the pool and every reader's ring */
    pthread_cond_t work; /* a slot was queued, or stop */
    pthread_t thr[AHEAD_POOL_THREADS];
    int n_thr, idle;
    bool stop;
    uint64_t held;       /* bytes of all slots that are not FREE */
    st_reader *readers;  /* with read-ahead on */
} ahead_pool;

/* Objects this backend uploaded lately, kept while it has readers open or
 * had one in the last RECENT_LINGER_NS: a reader in the same process (a
 * tailing one, typically, which opens each new segment after the writer
 * started it) takes them from here instead of GETting them back
 * (format.md section 11). Only block objects (written once: their bytes
 * never change), at most RECENT_OBJ_BYTES each and RECENT_BYTES together,
 * oldest dropped first. */
#define RECENT_BYTES (64ull * 1024 * 1024)
#define RECENT_OBJ_BYTES (16ull * 1024 * 1024)
#define RECENT_LINGER_NS (10 * 1000000000LL)

typedef struct recent_obj {
    struct recent_obj *next;
    int64_t log_id, seg_id;
    uint64_t n, size;
    unsigned char data[];
} recent_obj;

typedef struct {
    pthread_mutex_t mu;
    recent_obj *head, *tail; /* oldest first */
    uint64_t bytes;
    int readers;             /* open readers of the backend */
    int64_t until_ns;        /* keep copies until then (monotonic) */
    uint64_t hits;           /* objects served from here (tests) */
} recent_cache;

/* How the endpoint compares If-Match on PUT (format.md section 11.2). */
enum { IFMATCH_UNKNOWN = 0, IFMATCH_QUOTED, IFMATCH_BARE, IFMATCH_NONE };

typedef struct {
    storage base;
    s3_client *c;
    char prefix[PREFIX_MAX]; /* "" or "a/b/" (with the trailing '/') */
    pthread_mutex_t mu;      /* ifmatch */
    int ifmatch;             /* IFMATCH_*, probed at the first compaction */
    ahead_pool pool;         /* read-ahead for every reader */
    recent_cache recent;     /* uploaded lately, for readers in this process */
} s3_storage;

typedef struct {
    uint64_t n;    /* block number (of a merged object: the first) */
    uint64_t last; /* n, or the last block number of a merged object */
    uint64_t size; /* object size */
    uint64_t off;  /* byte offset of a data object in the segment */
    int64_t epoch; /* of a marker */
    int kind;      /* of a marker: MARK_* */
    uint64_t cut;  /* of a version-2 reopen marker: data in (cut, n) is excluded */
    bool has_cut;
    bool marker;
    bool excluded; /* data after a fence marker: a fenced writer's, not in the stream */
} seg_obj;

/* Bytes an object contributes to the segment's byte stream. */
static uint64_t obj_bytes(const seg_obj *o) { return o->marker || o->excluded ? 0 : o->size; }

/* What a listing says about a segment. */
typedef struct {
    seg_obj *v;
    size_t n, cap;
    uint64_t total;    /* bytes of data */
    int64_t max_epoch; /* highest marker epoch; INT64_MIN if none */
    bool fenced;       /* the last marker classified is a fence marker */
    bool prefix_only;  /* readers: stop at a missing number not followed by a
                        * marker (an upload still in flight) */
    uint64_t loads;    /* full listings so far (a reopen's cut shows up as one) */
    bool final;        /* loaded from the footer object: the segment is complete
                        * and the view is exactly its byte stream */
} seg_view;

typedef struct {
    s3_storage *s;
    int64_t log_id, seg_id;
    char pfx[SEG_PFX_MAX];
} seg_ref;

struct st_writer {
    seg_ref ref;
    int64_t epoch;
    uint64_t first; /* block number of this writer's append 0 */
    uint64_t next;  /* block number of the next sequential PUT (atomic) */
    uint64_t size;  /* atomic */
    int failed;     /* atomic: concurrent seg_append_nth calls */
};

struct st_reader {
    seg_ref ref;
    seg_view view;
    unsigned char *cache; /* object (cache_n, cache_last), cache_size bytes */
    size_t cache_cap;
    uint64_t cache_n, cache_last, cache_size;
    bool cached;
    bool ahead_on; /* read-ahead enabled and its ring initialised */
    bool counted;  /* in the backend's recent.readers */
    ahead_ring ahead; /* slots are valid only for the view.loads they were queued at */
};

/* ---- keys and markers ------------------------------------------------------ */

static int ref_make(s3_storage *s, int64_t log_id, int64_t seg_id, seg_ref *r)
{
    if (log_id < 0 || seg_id < 0)
        return wp__err(WP_EINVAL, "storage: negative id (log %" PRId64 ", segment %" PRId64 ")",
                       log_id, seg_id);
    r->s = s;
    r->log_id = log_id;
    r->seg_id = seg_id;
    snprintf(r->pfx, sizeof r->pfx, "%s%" PRId64 "/%" PRId64 "/", s->prefix, log_id, seg_id);
    return 0;
}

static void block_key(const seg_ref *r, uint64_t n, char key[BLOCK_KEY_MAX])
{
    snprintf(key, BLOCK_KEY_MAX, "%s%0*" PRIu64 ".blk", r->pfx, BLOCK_DIGITS, n);
}

/* The key of a block object (first == last) or a merged object. */
static void obj_key(const seg_ref *r, uint64_t first, uint64_t last, char key[BLOCK_KEY_MAX])
{
    if (first == last)
        block_key(r, first, key);
    else
        snprintf(key, BLOCK_KEY_MAX, "%sm_%0*" PRIu64 "_%0*" PRIu64 ".blk", r->pfx, BLOCK_DIGITS,
                 first, BLOCK_DIGITS, last);
}

static void footer_key(const seg_ref *r, char key[BLOCK_KEY_MAX])
{
    snprintf(key, BLOCK_KEY_MAX, "%s" FOOTER_NAME, r->pfx);
}

/* The block number of a key under r->pfx, or false for other names. */
static bool block_number(const seg_ref *r, const char *key, uint64_t *n)
{
    size_t pl = strlen(r->pfx);
    if (strncmp(key, r->pfx, pl) != 0)
        return false;
    key += pl;
    if (strlen(key) != BLOCK_DIGITS + 4 || strcmp(key + BLOCK_DIGITS, ".blk") != 0)
        return false;
    uint64_t v = 0;
    for (int i = 0; i < BLOCK_DIGITS; i++) {
        if (key[i] < '0' || key[i] > '9')
            return false;
        v = v * 10 + (uint64_t)(key[i] - '0');
    }
    *n = v;
    return true;
}

static void put_le64(unsigned char *b, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        b[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get_le64(const unsigned char *b)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)b[i] << (8 * i);
    return v;
}

static bool is_marker_size(uint64_t size) { return size == MARKER_BYTES || size == MARKER_V2_BYTES; }

/* The marker check: SHA-256 of the `checked` bytes before it, then log_id
 * and seg_id (LE). */
static void marker_check(const seg_ref *r, const unsigned char *m, size_t checked,
                         unsigned char out[8])
{
    unsigned char b[MARKER_BYTES_MAX + 16], h[SHA256_DIGEST_LENGTH];
    memcpy(b, m, checked);
    put_le64(b + checked, (uint64_t)r->log_id);
    put_le64(b + checked + 8, (uint64_t)r->seg_id);
    SHA256(b, checked + 16, h);
    memcpy(out, h, 8);
}

/* Encodes a marker: version 2 with the cut for a reopen, version 1
 * otherwise. *len gets its size. */
static int marker_encode(const seg_ref *r, int kind, int64_t epoch, uint64_t cut,
                         unsigned char m[MARKER_BYTES_MAX], size_t *len)
{
    bool v2 = kind == MARK_REOPEN;
    size_t checked = v2 ? MARKER_V2_BYTES - 8 : MARKER_CHECKED;
    memcpy(m, MARKER_MAGIC, 8);
    m[8] = v2 ? 2 : 1, m[9] = 0;
    m[10] = (unsigned char)kind, m[11] = 0;
    put_le64(m + 12, (uint64_t)epoch);
    if (RAND_bytes(m + 20, 8) != 1)
        return wp__err(WP_EIO, "storage: no random bytes for a marker nonce (OpenSSL)");
    if (v2)
        put_le64(m + 28, cut);
    marker_check(r, m, checked, m + checked);
    *len = checked + 8;
    return 0;
}

/* True if m (len bytes) is a valid marker of segment r; fills o's epoch,
 * kind and cut. */
static bool marker_decode(const seg_ref *r, const unsigned char *m, size_t len, seg_obj *o)
{
    unsigned char c[8];
    bool v2 = len == MARKER_V2_BYTES;
    if (!is_marker_size(len) || memcmp(m, MARKER_MAGIC, 8) != 0 || m[8] != (v2 ? 2 : 1) || m[9] ||
        m[10] < MARK_CREATE || m[10] > MARK_REOPEN || (v2 && m[10] != MARK_REOPEN) || m[11])
        return false;
    marker_check(r, m, len - 8, c);
    if (memcmp(m + len - 8, c, 8) != 0)
        return false;
    o->epoch = (int64_t)get_le64(m + 12);
    o->kind = m[10];
    o->has_cut = v2;
    o->cut = v2 ? get_le64(m + 28) : 0;
    return true;
}

static void recent_put(const seg_ref *r, uint64_t n, const struct iovec *iov, int iovcnt,
                       uint64_t total);
static bool recent_get(const seg_ref *r, uint64_t n, uint64_t size, unsigned char *buf);

/* PUTs a marker at block n, only if absent (WP_EEXIST if taken). */
static int marker_put(const seg_ref *r, uint64_t n, int kind, int64_t epoch, uint64_t cut)
{
    unsigned char m[MARKER_BYTES_MAX];
    char key[BLOCK_KEY_MAX];
    size_t len = 0;
    int rc = marker_encode(r, kind, epoch, cut, m, &len);
    if (rc)
        return rc;
    block_key(r, n, key);
    struct iovec v = {m, len};
    rc = s3_put(r->s->c, key, &v, 1, S3_PUT_IF_ABSENT);
    /* Create and reopen markers stay as long as their segment; a fence
     * marker may be removed again (fence_check_skipped), so it is not kept. */
    if (rc == 0 && kind != MARK_FENCE)
        recent_put(r, n, &v, 1, len);
    return rc;
}

/* Reads object o (of a marker's size): is it a marker (and which)?
 * WP_ENOENT if gone. */
static int marker_probe(const seg_ref *r, seg_obj *o)
{
    unsigned char m[MARKER_BYTES_MAX + 1];
    char key[BLOCK_KEY_MAX];
    size_t got;
    uint64_t size = 0;
    if (recent_get(r, o->n, o->size, m)) {
        o->marker = marker_decode(r, m, o->size, o);
        return 0;
    }
    block_key(r, o->n, key);
    int rc = s3_get(r->s->c, key, 0, m, sizeof m, &got, &size);
    if (rc)
        return rc;
    o->marker = is_marker_size(size) && got == size && marker_decode(r, m, got, o);
    return 0;
}

/* ---- views: what a listing says ---------------------------------------------- */

/* A deleted segment whose tombstones (format.md section 11) are all that
 * is left: it does not exist. */
static bool view_tombstones_only(const seg_view *v)
{
    for (size_t i = 0; i < v->n; i++)
        if (!v->v[i].marker || v->v[i].epoch != DELETE_FENCE_EPOCH)
            return false;
    return v->n > 0;
}

static void view_free(seg_view *v)
{
    bool prefix_only = v->prefix_only;
    uint64_t loads = v->loads;
    free(v->v);
    memset(v, 0, sizeof *v);
    v->max_epoch = INT64_MIN;
    v->prefix_only = prefix_only;
    v->loads = loads;
}

static int view_push(seg_view *v, uint64_t n, uint64_t size)
{
    if (v->n > 0 && n <= v->v[v->n - 1].n)
        return wp__err(WP_EIO, "storage: s3 listing out of order at block %" PRIu64, n);
    if (v->n >= SEG_OBJECTS_MAX)
        return wp__err(WP_ETOOBIG, "storage: segment has more than %" PRIu64 " objects",
                       (uint64_t)SEG_OBJECTS_MAX);
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 64;
        seg_obj *nv = realloc(v->v, cap * sizeof *nv);
        if (!nv)
            return wp__err(WP_ENOMEM, "storage: segment listing");
        v->v = nv;
        v->cap = cap;
    }
    v->v[v->n++] = (seg_obj){.n = n, .last = n, .size = size};
    return 0;
}

typedef struct {
    const seg_ref *r;
    seg_view *v;
    bool footer; /* the listing has the footer object */
} list_ctx;

static int on_block(void *arg, const char *key, uint64_t size)
{
    list_ctx *lc = arg;
    uint64_t n;
    if (!block_number(lc->r, key, &n)) {
        size_t pl = strlen(lc->r->pfx);
        if (strncmp(key, lc->r->pfx, pl) == 0 && strcmp(key + pl, FOOTER_NAME) == 0)
            lc->footer = true;
        return 0; /* not a block object: not classified from the listing */
    }
    return view_push(lc->v, n, size);
}

/* GETs the whole object key (at most max bytes) into *buf (malloc'd), with
 * its ETag if etag is not NULL. */
static int get_whole(s3_client *c, const char *key, uint64_t max, unsigned char **buf, size_t *len,
                     char etag[S3_ETAG_MAX])
{
    size_t cap = 64 * 1024, got = 0;
    unsigned char *b = NULL;
    *buf = NULL;
    *len = 0;
    for (int tries = 0; tries < 4; tries++) {
        unsigned char *nb = realloc(b, cap);
        if (!nb) {
            free(b);
            return wp__err(WP_ENOMEM, "storage: %zu bytes for %s", cap, key);
        }
        b = nb;
        s3_obj_info info = {0};
        int rc = s3_get_ex(c, key, 0, b, cap, &got, &info);
        if (rc) {
            free(b);
            return rc;
        }
        if (info.size > max) {
            free(b);
            return wp__err(WP_ECORRUPT, "storage: %s is %" PRIu64 " bytes, more than %" PRIu64,
                           key, info.size, max);
        }
        if (got == info.size) {
            if (etag)
                memcpy(etag, info.etag, S3_ETAG_MAX);
            *buf = b;
            *len = got;
            return 0;
        }
        cap = (size_t)info.size; /* it was bigger than the buffer (or changed): again */
        if (cap == 0)
            cap = 1;
    }
    free(b);
    return wp__err(WP_EIO, "storage: %s keeps changing size while read", key);
}

/* Reads and decodes the footer object. WP_ENOENT if there is none. */
static int footer_get(const seg_ref *r, s3_layout *l, char etag[S3_ETAG_MAX])
{
    char key[BLOCK_KEY_MAX];
    unsigned char *b;
    size_t len;
    memset(l, 0, sizeof *l);
    footer_key(r, key);
    int rc = get_whole(r->s->c, key, S3_LAYOUT_BYTES_MAX, &b, &len, etag);
    if (rc)
        return rc;
    rc = s3_layout_decode(b, len, r->log_id, r->seg_id, l);
    free(b);
    if (rc)
        return wp__err(rc, "segment %s: %s", r->pfx, wp_errmsg());
    return 0;
}

/* Replaces v with the byte stream the footer object names. WP_EAGAIN if
 * it is gone (the segment was deleted meanwhile: list again). */
static int view_from_footer(const seg_ref *r, seg_view *v)
{
    s3_layout l;
    int rc = footer_get(r, &l, NULL);
    if (rc == WP_ENOENT)
        return WP_EAGAIN;
    if (rc)
        return rc;
    view_free(v);
    for (uint32_t i = 0; i < l.n_objs && !rc; i++) {
        rc = view_push(v, l.objs[i].first, l.objs[i].size);
        if (!rc) {
            seg_obj *o = &v->v[v->n - 1];
            o->last = l.objs[i].last;
            o->off = v->total;
            v->total += o->size;
        }
    }
    v->final = rc == 0;
    s3_layout_free(&l);
    return rc;
}

/* Classifies objects [from, v->n): markers by content, offsets of data.
 * Data after a fence marker (until a create or reopen marker), and data
 * between a version-2 reopen marker's cut and the marker, belong to a
 * fenced writer and are excluded from the byte stream. With prefix_only the
 * view ends before a missing number that is followed by data that is not
 * excluded (an upload still in flight; a later listing finds it).
 * *new_marker tells whether one of them is a marker (a cut may reach back
 * before `from`: the caller then lists everything again). Objects that
 * vanish meanwhile make it WP_EAGAIN (the caller lists again). */
static int view_classify(const seg_ref *r, seg_view *v, size_t from, bool *new_marker)
{
    *new_marker = false;
    for (size_t i = from; i < v->n; i++) { /* markers, by content */
        seg_obj *o = &v->v[i];
        o->marker = o->excluded = o->has_cut = false;
        if (is_marker_size(o->size)) {
            int rc = marker_probe(r, o);
            if (rc == WP_ENOENT)
                return WP_EAGAIN;
            if (rc)
                return rc;
        }
        if (o->marker && o->has_cut && o->cut >= o->n)
            return wp__err(WP_ECORRUPT, "storage: segment %s: reopen marker %" PRIu64 " cuts at %"
                           PRIu64, r->pfx, o->n, o->cut);
        *new_marker |= o->marker;
    }
    for (size_t i = from; i < v->n; i++) /* what reopen cuts exclude */
        if (v->v[i].marker && v->v[i].has_cut)
            for (size_t j = i; j > from && v->v[j - 1].n > v->v[i].cut; j--)
                v->v[j - 1].excluded |= !v->v[j - 1].marker;
    for (size_t i = from; i < v->n; i++) { /* offsets, in order */
        seg_obj *o = &v->v[i];
        if (v->prefix_only && i > 0 && o->n != v->v[i - 1].n + 1 && !o->marker && !v->fenced &&
            !o->excluded) {
            v->n = i; /* in flight below o: not readable yet */
            break;
        }
        o->off = v->total;
        if (o->marker) {
            v->fenced = o->kind == MARK_FENCE;
            if (o->epoch > v->max_epoch)
                v->max_epoch = o->epoch;
        } else if (v->fenced) {
            o->excluded = true;
        } else if (!o->excluded) {
            if (o->size > (uint64_t)WP_SEGMENT_BYTES_MAX - v->total)
                return wp__err(WP_ECORRUPT, "storage: segment %s exceeds %lld bytes", r->pfx,
                               (long long)WP_SEGMENT_BYTES_MAX);
            v->total += o->size;
        }
    }
    return 0;
}

/* Lists the whole segment into a fresh view (retrying if objects vanish
 * while it is classified). */
static int view_load(const seg_ref *r, seg_view *v)
{
    int rc = WP_EAGAIN;
    v->loads++;
    for (int tries = 0; rc == WP_EAGAIN && tries < REOPEN_TRIES_MAX; tries++) {
        view_free(v);
        list_ctx lc = {r, v, false};
        bool nm;
        rc = s3_list_all(r->s->c, r->pfx, NULL, 0, SEG_OBJECTS_MAX, on_block, &lc);
        if (!rc)
            rc = lc.footer ? view_from_footer(r, v) : view_classify(r, v, 0, &nm);
    }
    if (rc == WP_EAGAIN)
        rc = wp__err(WP_EIO, "storage: segment %s keeps changing while listed", r->pfx);
    return rc;
}

/* Adds the objects after the last one known; lists everything again if a
 * new marker appeared (a reopen may have cut data). */
static int view_refresh(const seg_ref *r, seg_view *v)
{
    if (v->final)
        return 0; /* complete: it cannot grow */
    if (v->n == 0)
        return view_load(r, v);
    char after[BLOCK_KEY_MAX];
    block_key(r, v->v[v->n - 1].n, after);
    size_t from = v->n;
    list_ctx lc = {r, v, false};
    bool nm = false;
    int rc = s3_list_all(r->s->c, r->pfx, after, 0, SEG_OBJECTS_MAX, on_block, &lc);
    if (!rc && !lc.footer)
        rc = view_classify(r, v, from, &nm);
    if (rc == WP_EAGAIN || (!rc && (nm || lc.footer)))
        return view_load(r, v);
    return rc;
}

/* ---- objects uploaded lately ---------------------------------------------------- */

static void recent_init(recent_cache *rc) { pthread_mutex_init(&rc->mu, NULL); }

static void recent_drop_all(recent_cache *rc)
{
    while (rc->head) {
        recent_obj *o = rc->head;
        rc->head = o->next;
        free(o);
    }
    rc->tail = NULL;
    rc->bytes = 0;
}

static void recent_close(recent_cache *rc)
{
    recent_drop_all(rc);
    pthread_mutex_destroy(&rc->mu);
}

/* Keeps a copy of the object just PUT at block n, if a reader is open. */
static void recent_put(const seg_ref *r, uint64_t n, const struct iovec *iov, int iovcnt,
                       uint64_t total)
{
    recent_cache *rc = &r->s->recent;
    if (total > RECENT_OBJ_BYTES)
        return;
    pthread_mutex_lock(&rc->mu);
    bool wanted = rc->readers > 0 || wp__now_ns() < rc->until_ns;
    if (!wanted)
        recent_drop_all(rc); /* no reader lately: no memory held */
    pthread_mutex_unlock(&rc->mu);
    if (!wanted)
        return;
    recent_obj *o = malloc(sizeof *o + (size_t)total);
    if (!o)
        return; /* only a cache */
    *o = (recent_obj){NULL, r->log_id, r->seg_id, n, total};
    size_t off = 0;
    for (int i = 0; i < iovcnt; i++) {
        memcpy(o->data + off, iov[i].iov_base, iov[i].iov_len);
        off += iov[i].iov_len;
    }
    pthread_mutex_lock(&rc->mu);
    if (rc->tail)
        rc->tail->next = o;
    else
        rc->head = o;
    rc->tail = o;
    rc->bytes += total;
    while (rc->bytes > RECENT_BYTES && rc->head) {
        recent_obj *old = rc->head;
        rc->head = old->next;
        if (!rc->head)
            rc->tail = NULL;
        rc->bytes -= old->size;
        free(old);
    }
    pthread_mutex_unlock(&rc->mu);
}

/* Copies block object n of r (size bytes) into buf if it is kept. */
static bool recent_get(const seg_ref *r, uint64_t n, uint64_t size, unsigned char *buf)
{
    recent_cache *rc = &r->s->recent;
    bool hit = false;
    pthread_mutex_lock(&rc->mu);
    for (recent_obj *o = rc->head; o && !hit; o = o->next)
        if (o->n == n && o->seg_id == r->seg_id && o->log_id == r->log_id && o->size == size) {
            memcpy(buf, o->data, (size_t)size);
            hit = true;
            rc->hits++;
        }
    pthread_mutex_unlock(&rc->mu);
    return hit;
}

static void recent_reader(s3_storage *s, int delta)
{
    pthread_mutex_lock(&s->recent.mu);
    s->recent.readers += delta;
    s->recent.until_ns = wp__now_ns() + RECENT_LINGER_NS;
    pthread_mutex_unlock(&s->recent.mu);
}

uint64_t storage_s3_recent_hits(storage *st)
{
    s3_storage *s = (s3_storage *)st;
    pthread_mutex_lock(&s->recent.mu);
    uint64_t h = s->recent.hits;
    pthread_mutex_unlock(&s->recent.mu);
    return h;
}

/* ---- writers ------------------------------------------------------------------ */

static int writer_new(const seg_ref *r, int64_t epoch, uint64_t next, uint64_t size, st_writer **out)
{
    st_writer *w = calloc(1, sizeof *w);
    if (!w)
        return wp__err(WP_ENOMEM, "storage: writer");
    w->ref = *r;
    w->epoch = epoch;
    w->first = next;
    w->next = next;
    w->size = size;
    *out = w;
    return 0;
}

static void s3_writer_close(st_writer *w) { free(w); }

static int writer_fail(st_writer *w, int rc)
{
    int none = 0;
    __atomic_compare_exchange_n(&w->failed, &none, rc, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
    wp__log(w->ref.s->base.logger, WP_LOG_WARN, "storage: writer of %s failed for good: %s",
            w->ref.pfx, wp_errmsg());
    return rc;
}

static int writer_failed_again(const st_writer *w)
{
    if (w->failed == WP_EFENCED)
        return wp__err(WP_EFENCED, "segment %s: writer (epoch %" PRId64 ") was fenced", w->ref.pfx,
                       w->epoch);
    return wp__err(w->failed, "segment %s: writer failed earlier (%s); open a new one", w->ref.pfx,
                   wp_strerror(w->failed));
}

static int fenced_at(st_writer *w, uint64_t n)
{
    return writer_fail(w, wp__err(WP_EFENCED, "segment %s: block %" PRIu64 " was taken: writer "
                                  "(epoch %" PRId64 ") fenced", w->ref.pfx, n, w->epoch));
}

static int s3_seg_create(storage *st, int64_t log_id, int64_t seg_id, int64_t epoch, st_writer **out)
{
    s3_storage *s = (s3_storage *)st;
    seg_ref r;
    *out = NULL;
    int rc = ref_make(s, log_id, seg_id, &r);
    if (rc)
        return rc;
    rc = marker_put(&r, 0, MARK_CREATE, epoch, 0);
    if (rc == WP_EEXIST)
        return wp__err(WP_EEXIST, "segment %s already exists", r.pfx);
    if (rc)
        return rc;
    return writer_new(&r, epoch, 1, 0, out);
}

/* An empty append still reports a fence: is the next number taken? */
static int append_empty(st_writer *w)
{
    char key[BLOCK_KEY_MAX];
    s3_obj_info info;
    block_key(&w->ref, w->next, key);
    int rc = s3_head(w->ref.s->c, key, &info);
    if (rc == WP_ENOENT) {
        wp__err_clear();
        return 0;
    }
    return rc ? writer_fail(w, rc) : fenced_at(w, w->next);
}

/* True if the iovecs hold exactly a marker of the writer's segment. */
static bool looks_like_marker(const st_writer *w, const struct iovec *iov, int iovcnt)
{
    unsigned char m[MARKER_BYTES_MAX];
    size_t o = 0;
    for (int i = 0; i < iovcnt; i++) {
        memcpy(m + o, iov[i].iov_base, iov[i].iov_len);
        o += iov[i].iov_len;
    }
    seg_obj obj;
    return marker_decode(&w->ref, m, o, &obj);
}

static int s3_seg_append(st_writer *w, const struct iovec *iov, int iovcnt)
{
    if (w->failed)
        return writer_failed_again(w);
    if (iovcnt < 0 || (iovcnt > 0 && !iov))
        return writer_fail(w, wp__err(WP_EINVAL, "append %s: bad iovec", w->ref.pfx));
    uint64_t total = 0, room = (uint64_t)WP_SEGMENT_BYTES_MAX - w->size;
    for (int i = 0; i < iovcnt && total <= room; i++)
        total += iov[i].iov_len > room ? room + 1 : iov[i].iov_len;
    if (total > room || w->next >= SEG_OBJECTS_MAX)
        return writer_fail(w, wp__err(WP_ETOOBIG, "append %s: segment would exceed its bounds",
                                      w->ref.pfx));
    if (total == 0)
        return append_empty(w);
    if (is_marker_size(total) && looks_like_marker(w, iov, iovcnt))
        return writer_fail(w, wp__err(WP_EINVAL, "append %s: the bytes are a marker object",
                                      w->ref.pfx));
    char key[BLOCK_KEY_MAX];
    block_key(&w->ref, w->next, key);
    int rc = s3_put(w->ref.s->c, key, iov, iovcnt, S3_PUT_IF_ABSENT);
    if (rc == WP_EEXIST)
        return fenced_at(w, w->next);
    if (rc)
        return writer_fail(w, rc);
    recent_put(&w->ref, w->next, iov, iovcnt, total);
    w->next++;
    w->size += total;
    return 0;
}

/* Parallel appends: append k goes to block first + k, conditionally, so a
 * fence object at any of those numbers stops it. */
static int s3_seg_append_nth(st_writer *w, uint64_t k, const struct iovec *iov, int iovcnt)
{
    if (__atomic_load_n(&w->failed, __ATOMIC_SEQ_CST))
        return writer_failed_again(w);
    uint64_t total = 0, n = w->first + k;
    for (int i = 0; i < iovcnt; i++)
        total += iov[i].iov_len;
    if (iovcnt <= 0 || !iov || total == 0 || total > (uint64_t)WP_SEGMENT_BYTES_MAX ||
        n >= SEG_OBJECTS_MAX || (is_marker_size(total) && looks_like_marker(w, iov, iovcnt)))
        return writer_fail(w, wp__err(WP_EINVAL, "append %" PRIu64 " to %s: bad append", k,
                                      w->ref.pfx));
    char key[BLOCK_KEY_MAX];
    block_key(&w->ref, n, key);
    int rc = s3_put(w->ref.s->c, key, iov, iovcnt, S3_PUT_IF_ABSENT);
    if (rc == WP_EEXIST)
        return fenced_at(w, n);
    if (rc)
        return writer_fail(w, rc);
    recent_put(&w->ref, n, iov, iovcnt, total);
    uint64_t cur = __atomic_load_n(&w->next, __ATOMIC_SEQ_CST);
    while (cur < n + 1 &&
           !__atomic_compare_exchange_n(&w->next, &cur, n + 1, false, __ATOMIC_SEQ_CST,
                                        __ATOMIC_SEQ_CST))
        ;
    __atomic_add_fetch(&w->size, total, __ATOMIC_SEQ_CST);
    return 0;
}

static int s3_seg_publish_lac(st_writer *w, int64_t lac)
{
    if (w->failed)
        return writer_failed_again(w);
    if (lac < -1)
        return wp__err(WP_EINVAL, "publish lac %s: bad lac %" PRId64, w->ref.pfx, lac);
    return 0; /* objects are visible only once durable: nothing to publish */
}

static uint64_t s3_seg_writer_size(st_writer *w) { return w->size; }

/* ---- fencing and reopening ---------------------------------------------------- */

/* The numbers [n0, at) were taken by others while a fence marker was put
 * at `at`. If one holds a marker of an epoch above ours, that owner fenced
 * first and our marker would stop its writer: remove ours (no writer older
 * than that marker can get past it to `at`). */
static int fence_check_skipped(const seg_ref *r, uint64_t n0, uint64_t at, int64_t epoch)
{
    seg_view v = {.max_epoch = INT64_MIN};
    char after[BLOCK_KEY_MAX];
    list_ctx lc = {r, &v, false};
    bool nm;
    block_key(r, n0 - 1, after); /* n0 >= 1: block 0 is the create marker */
    int rc = s3_list_all(r->s->c, r->pfx, after, 0, SEG_OBJECTS_MAX, on_block, &lc);
    while (!rc && v.n > 0 && v.v[v.n - 1].n >= at)
        v.n--;
    if (!rc)
        rc = view_classify(r, &v, 0, &nm);
    if (!rc && v.max_epoch > epoch) {
        char key[BLOCK_KEY_MAX];
        block_key(r, at, key);
        wp__log(r->s->base.logger, WP_LOG_WARN, "segment %s: fence of epoch %" PRId64 " raced "
                "one of epoch %" PRId64 "; removing block %" PRIu64, r->pfx, epoch, v.max_epoch, at);
        rc = s3_delete(r->s->c, key);
        if (rc == WP_OK)
            rc = wp__err(WP_EFENCED, "fence: segment %s is owned by epoch %" PRId64 " (fence "
                         "epoch %" PRId64 ")", r->pfx, v.max_epoch, epoch);
    }
    view_free(&v);
    return rc == WP_EAGAIN ? 0 : rc; /* EAGAIN: a skipped object vanished (a cut) */
}

/* Puts a fence marker of `epoch` at the first free number from n0 on. A
 * writer may still be appending: each taken number costs one PUT (a 412),
 * as fast as the writer's own appends; what was skipped is checked after. */
static int fence_place(const seg_ref *r, uint64_t n0, int64_t epoch, uint64_t *at)
{
    uint64_t n = n0;
    int rc = WP_EAGAIN;
    for (int i = 0; i < FENCE_TRIES_MAX && n < SEG_OBJECTS_MAX && rc == WP_EAGAIN; i++) {
        rc = marker_put(r, n, MARK_FENCE, epoch, 0);
        if (rc == WP_EEXIST) {
            rc = WP_EAGAIN;
            n++;
        }
    }
    if (rc == WP_EAGAIN)
        return wp__err(WP_EAGAIN, "segment %s: no free block number for a fence after %d tries",
                       r->pfx, FENCE_TRIES_MAX);
    if (rc == WP_OK && at)
        *at = n;
    if (rc || n == n0)
        return rc;
    return fence_check_skipped(r, n0, n, epoch);
}

/* Where a fence goes: the first missing number after the last marker (the
 * current writer's first upload that has not landed: with uploads in
 * parallel, later ones may have), or after the last object. Nothing at or
 * after it can then be acknowledged by that writer. */
static uint64_t fence_start(const seg_view *v)
{
    size_t m = 0;
    for (size_t i = 0; i < v->n; i++)
        if (v->v[i].marker)
            m = i;
    for (size_t i = m + 1; i < v->n; i++)
        if (v->v[i].n != v->v[i - 1].n + 1)
            return v->v[i - 1].n + 1;
    return v->v[v->n - 1].n + 1;
}

static int s3_seg_fence(storage *st, int64_t log_id, int64_t seg_id, int64_t epoch)
{
    seg_ref r;
    seg_view v = {.max_epoch = INT64_MIN};
    int rc = ref_make((s3_storage *)st, log_id, seg_id, &r);
    if (!rc)
        rc = view_load(&r, &v);
    if (!rc && v.n == 0)
        rc = wp__err(WP_ENOENT, "fence: segment %s does not exist", r.pfx);
    if (!rc && v.max_epoch > epoch)
        rc = wp__err(WP_EFENCED, "fence: segment %s is owned by epoch %" PRId64 " (fence epoch %"
                     PRId64 ")", r.pfx, v.max_epoch, epoch);
    if (!rc && !v.final && v.max_epoch < epoch) /* complete: nothing can be added */
        rc = fence_place(&r, fence_start(&v), epoch, NULL);
    view_free(&v);
    return rc;
}

/* Index of the first data object at or past byte len, after checking that
 * len is an object boundary within the data. */
static int cut_point(const seg_ref *r, const seg_view *v, uint64_t len, size_t *first)
{
    if (len > v->total)
        return wp__err(WP_ECORRUPT, "segment %s: data is %" PRIu64 " bytes, shorter than reopen "
                       "length %" PRIu64, r->pfx, v->total, len);
    size_t i = 0;
    while (i < v->n && (obj_bytes(&v->v[i]) == 0 || v->v[i].off + v->v[i].size <= len))
        i++;
    if (i < v->n && v->v[i].off != len)
        return wp__err(WP_ECORRUPT, "segment %s: reopen length %" PRIu64 " is inside object %"
                       PRIu64 " (bytes %" PRIu64 "..%" PRIu64 ")", r->pfx, len, v->v[i].n,
                       v->v[i].off, v->v[i].off + v->v[i].size);
    *first = i;
    return 0;
}

/* Deletes the data objects of v from index `from` on, below block `below`. */
static int cut_data(const seg_ref *r, const seg_view *v, size_t from, uint64_t below)
{
    char key[BLOCK_KEY_MAX];
    for (size_t i = v->n; i > 0; i--) {
        const seg_obj *o = &v->v[i - 1];
        if (o->marker || o->n >= below || (i - 1 < from && !o->excluded))
            continue; /* cut: data past the point, and every fenced writer's leftover */
        block_key(r, o->n, key);
        int rc = s3_delete(r->s->c, key);
        if (rc)
            return rc;
    }
    return 0;
}

/* One try of reopen: validate, take the next number, cut. WP_EAGAIN if a
 * racer took the number (list again). */
static int reopen_try(const seg_ref *r, int64_t epoch, uint64_t len, uint64_t *next)
{
    seg_view v = {.max_epoch = INT64_MIN};
    size_t first = 0;
    uint64_t at = 0;
    int rc = view_load(r, &v);
    if (!rc && v.n == 0)
        rc = wp__err(WP_ENOENT, "segment %s does not exist", r->pfx);
    if (!rc && v.final)
        rc = wp__err(WP_EINVAL, "segment %s is complete (it has a footer object)", r->pfx);
    if (!rc && v.max_epoch > epoch)
        rc = wp__err(WP_EFENCED, "segment %s: fenced by epoch %" PRId64 " (reopen epoch %" PRId64
                     ")", r->pfx, v.max_epoch, epoch);
    if (!rc)
        rc = cut_point(r, &v, len, &first);
    if (!rc) {
        /* The cut: the last data object kept (0, the create marker's
         * number, if none); everything after it below the marker is out. */
        uint64_t cut = 0;
        for (size_t i = 0; i < first; i++)
            if (obj_bytes(&v.v[i]))
                cut = v.v[i].n;
        at = v.v[v.n - 1].n + 1 + REOPEN_MOAT;
        rc = at < SEG_OBJECTS_MAX ? marker_put(r, at, MARK_REOPEN, epoch, cut)
                                  : wp__err(WP_ETOOBIG, "segment %s: too many objects", r->pfx);
        if (rc == WP_EEXIST)
            rc = WP_EAGAIN;
    }
    if (!rc)
        rc = cut_data(r, &v, first, at);
    if (!rc)
        *next = at + 1;
    view_free(&v);
    return rc;
}

static int s3_seg_reopen(storage *st, int64_t log_id, int64_t seg_id, int64_t epoch, uint64_t len,
                         st_writer **out)
{
    seg_ref r;
    uint64_t next = 0;
    *out = NULL;
    if (len > (uint64_t)WP_SEGMENT_BYTES_MAX)
        return wp__err(WP_EINVAL, "reopen: length %" PRIu64 " above the segment limit", len);
    int rc = ref_make((s3_storage *)st, log_id, seg_id, &r);
    if (rc)
        return rc;
    rc = WP_EAGAIN;
    for (int i = 0; i < REOPEN_TRIES_MAX && rc == WP_EAGAIN; i++)
        rc = reopen_try(&r, epoch, len, &next);
    if (rc == WP_EAGAIN)
        rc = wp__err(WP_EIO, "reopen %s: lost the race for a block number %d times", r.pfx,
                     REOPEN_TRIES_MAX);
    if (rc)
        return rc;
    return writer_new(&r, epoch, next, len, out);
}

/* ---- read-ahead ---------------------------------------------------------------- */

/* The queued slot to fetch next: the lowest block number of the first
 * reader that has one (that reader then goes to the end of the list, so
 * readers take turns). NULL if none. */
static ahead_slot *pool_pick(ahead_pool *p, st_reader **who)
{
    for (st_reader *r = p->readers; r; r = r->ahead.next) {
        ahead_slot *s = NULL;
        for (int i = 0; i < READ_AHEAD_OBJECTS; i++)
            if (r->ahead.slot[i].state == SLOT_QUEUED && (!s || r->ahead.slot[i].n < s->n))
                s = &r->ahead.slot[i];
        if (!s)
            continue;
        if (r->ahead.next) { /* to the tail */
            if (r->ahead.prev)
                r->ahead.prev->ahead.next = r->ahead.next;
            else
                p->readers = r->ahead.next;
            r->ahead.next->ahead.prev = r->ahead.prev;
            st_reader *t = r->ahead.next;
            while (t->ahead.next)
                t = t->ahead.next;
            t->ahead.next = r;
            r->ahead.prev = t;
            r->ahead.next = NULL;
        }
        *who = r;
        return s;
    }
    return NULL;
}

/* A pool thread: fetches queued slots until the backend closes. */
static void *pool_main(void *arg)
{
    s3_storage *st = arg;
    ahead_pool *p = &st->pool;
    pthread_mutex_lock(&p->mu);
    while (!p->stop) {
        st_reader *r = NULL;
        ahead_slot *s = pool_pick(p, &r);
        if (!s) {
            p->idle++;
            pthread_cond_wait(&p->work, &p->mu);
            p->idle--;
            continue;
        }
        s->state = SLOT_FETCHING; /* the reader waits for it before it closes */
        uint64_t n = s->n, last = s->last, size = s->size;
        pthread_mutex_unlock(&p->mu);
        unsigned char *buf = malloc((size_t)size);
        bool ok = false;
        if (buf) {
            char key[BLOCK_KEY_MAX];
            size_t g = 0;
            uint64_t osize = 0;
            obj_key(&r->ref, n, last, key);
            /* gone, short or another size (a cut): the slot is dropped and
             * the reader's own GET finds out */
            ok = (n == last && recent_get(&r->ref, n, size, buf)) ||
                 (s3_get(st->c, key, 0, buf, (size_t)size, &g, &osize) == 0 && g == size &&
                  osize == size);
        }
        pthread_mutex_lock(&p->mu);
        if (ok) {
            s->buf = buf;
            s->state = SLOT_READY;
        } else {
            free(buf);
            s->state = SLOT_FREE;
            p->held -= size;
        }
        pthread_cond_broadcast(&r->ahead.done);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

static void pool_init(s3_storage *s)
{
    ahead_pool *p = &s->pool;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->work, NULL);
}

/* Stops the pool threads (each finishes the GET it is in) and joins them.
 * Every reader is closed by then. */
static void pool_close(s3_storage *s)
{
    ahead_pool *p = &s->pool;
    pthread_mutex_lock(&p->mu);
    p->stop = true;
    pthread_cond_broadcast(&p->work);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->n_thr; i++)
        pthread_join(p->thr[i], NULL);
    pthread_cond_destroy(&p->work);
    pthread_mutex_destroy(&p->mu);
}

static void ahead_init(st_reader *r)
{
    const char *env = getenv("WP_S3_READ_AHEAD");
    if (env && strcmp(env, "0") == 0)
        return;
    ahead_pool *p = &r->ref.s->pool;
    if (pthread_cond_init(&r->ahead.done, NULL))
        return;
    pthread_mutex_lock(&p->mu);
    r->ahead.prev = NULL;
    r->ahead.next = p->readers;
    if (p->readers)
        p->readers->ahead.prev = r;
    p->readers = r;
    pthread_mutex_unlock(&p->mu);
    r->ahead_on = true;
}

/* Takes the reader out of the pool: drops what is queued, waits for what
 * is being fetched, frees what was fetched. */
static void ahead_close(st_reader *r)
{
    if (!r->ahead_on)
        return;
    ahead_pool *p = &r->ref.s->pool;
    pthread_mutex_lock(&p->mu);
    if (r->ahead.prev)
        r->ahead.prev->ahead.next = r->ahead.next;
    else
        p->readers = r->ahead.next;
    if (r->ahead.next)
        r->ahead.next->ahead.prev = r->ahead.prev;
    for (int i = 0; i < READ_AHEAD_OBJECTS; i++) {
        ahead_slot *s = &r->ahead.slot[i];
        while (s->state == SLOT_FETCHING)
            pthread_cond_wait(&r->ahead.done, &p->mu);
        if (s->state != SLOT_FREE)
            p->held -= s->size;
        free(s->buf);
        s->buf = NULL;
        s->state = SLOT_FREE;
    }
    pthread_mutex_unlock(&p->mu);
    pthread_cond_destroy(&r->ahead.done);
    r->ahead_on = false;
}

/* Moves object o from the ring into the reader's cache if it was fetched
 * ahead, waiting for its fetch if one is in flight. false: the caller GETs
 * it (a queued slot is taken back: the reader fetches it now itself). */
static bool ahead_take(st_reader *r, const seg_obj *o)
{
    if (!r->ahead_on)
        return false;
    ahead_pool *p = &r->ref.s->pool;
    bool hit = false;
    pthread_mutex_lock(&p->mu);
    for (int i = 0; i < READ_AHEAD_OBJECTS; i++) {
        ahead_slot *s = &r->ahead.slot[i];
        if (s->state == SLOT_FREE || s->n != o->n || s->last != o->last || s->size != o->size ||
            s->gen != r->view.loads)
            continue;
        if (s->state == SLOT_QUEUED) {
            s->state = SLOT_FREE;
            p->held -= s->size;
            break;
        }
        while (s->state == SLOT_FETCHING) /* only this thread frees or requeues it */
            pthread_cond_wait(&r->ahead.done, &p->mu);
        if (s->state == SLOT_READY) {
            free(r->cache);
            r->cache = s->buf;
            r->cache_cap = (size_t)s->size;
            r->cache_n = s->n;
            r->cache_last = s->last;
            r->cache_size = s->size;
            r->cached = true;
            s->buf = NULL;
            s->state = SLOT_FREE;
            p->held -= s->size;
            hit = true;
        }
        break;
    }
    pthread_mutex_unlock(&p->mu);
    return hit;
}

/* Queues the objects after view index i (the one being read) that are not
 * in the ring yet and drops what is no longer ahead; starts pool threads
 * as needed. Best effort: without a slot, budget or thread it queues less. */
static void ahead_schedule(st_reader *r, size_t i)
{
    const seg_view *v = &r->view;
    ahead_pool *p = &r->ref.s->pool;
    uint64_t want_n[READ_AHEAD_OBJECTS], want_last[READ_AHEAD_OBJECTS];
    uint64_t want_size[READ_AHEAD_OBJECTS], bytes = 0;
    bool have[READ_AHEAD_OBJECTS] = {false};
    int nw = 0;
    for (size_t j = i + 1; j < v->n && nw < READ_AHEAD_OBJECTS; j++) {
        const seg_obj *o = &v->v[j];
        if (obj_bytes(o) == 0)
            continue;
        if (o->size > READ_AHEAD_BYTES - bytes)
            break; /* big objects are read by ranged GETs, not ahead */
        want_n[nw] = o->n;
        want_last[nw] = o->last;
        want_size[nw++] = o->size;
        bytes += o->size;
    }
    pthread_mutex_lock(&p->mu);
    uint64_t held = 0; /* bytes of this reader's slots kept: its budget */
    int busy = 0;      /* slots queued */
    for (int k = 0; k < READ_AHEAD_OBJECTS; k++) {
        ahead_slot *s = &r->ahead.slot[k];
        if (s->state == SLOT_FREE)
            continue;
        int w = 0;
        while (w < nw && (want_n[w] != s->n || want_last[w] != s->last ||
                          want_size[w] != s->size || s->gen != v->loads))
            w++;
        if (w < nw || s->state == SLOT_FETCHING) {
            if (w < nw)
                have[w] = true;
            held += s->size;
            busy += s->state == SLOT_QUEUED;
            continue;
        }
        free(s->buf); /* behind the reader, or after a seek: not needed */
        s->buf = NULL;
        s->state = SLOT_FREE;
        p->held -= s->size;
    }
    for (int w = 0; w < nw; w++) {
        if (have[w])
            continue;
        int k = 0;
        while (k < READ_AHEAD_OBJECTS && r->ahead.slot[k].state != SLOT_FREE)
            k++;
        if (k == READ_AHEAD_OBJECTS || want_size[w] > READ_AHEAD_BYTES - held ||
            want_size[w] > AHEAD_POOL_BYTES - p->held)
            break;
        r->ahead.slot[k] = (ahead_slot){.state = SLOT_QUEUED, .n = want_n[w], .last = want_last[w],
                                        .size = want_size[w], .gen = v->loads};
        held += want_size[w];
        p->held += want_size[w];
        busy++;
    }
    for (int more = busy - p->idle; more > 0 && p->n_thr < AHEAD_POOL_THREADS; more--) {
        if (pthread_create(&p->thr[p->n_thr], NULL, pool_main, r->ref.s))
            break;
        p->n_thr++;
    }
    if (p->n_thr == 0) /* no thread: nothing queued would ever be fetched */
        for (int k = 0; k < READ_AHEAD_OBJECTS; k++)
            if (r->ahead.slot[k].state == SLOT_QUEUED) {
                r->ahead.slot[k].state = SLOT_FREE;
                p->held -= r->ahead.slot[k].size;
            }
    pthread_cond_broadcast(&p->work);
    pthread_mutex_unlock(&p->mu);
}

/* ---- readers ------------------------------------------------------------------ */

static void s3_reader_close(st_reader *r)
{
    if (!r)
        return;
    ahead_close(r);
    if (r->counted)
        recent_reader(r->ref.s, -1);
    view_free(&r->view);
    free(r->cache);
    free(r);
}

static int s3_seg_open_read(storage *st, int64_t log_id, int64_t seg_id, st_reader **out)
{
    *out = NULL;
    st_reader *r = calloc(1, sizeof *r);
    if (!r)
        return wp__err(WP_ENOMEM, "storage: reader");
    r->view.max_epoch = INT64_MIN;
    r->view.prefix_only = true;
    int rc = ref_make((s3_storage *)st, log_id, seg_id, &r->ref);
    if (rc) {
        free(r);
        return rc;
    }
    ahead_init(r);
    recent_reader(r->ref.s, 1);
    r->counted = true;
    rc = view_load(&r->ref, &r->view);
    if (!rc && (r->view.n == 0 || view_tombstones_only(&r->view)))
        rc = wp__err(WP_ENOENT, "segment %s does not exist", r->ref.pfx);
    if (rc) {
        s3_reader_close(r);
        return rc;
    }
    *out = r;
    return 0;
}

/* Index of the first object whose bytes end after off (binary search). */
static size_t view_find(const seg_view *v, uint64_t off)
{
    size_t lo = 0, hi = v->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const seg_obj *o = &v->v[mid];
        uint64_t end = o->off + obj_bytes(o);
        if (end <= off)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Fetches object o whole into the reader's cache. WP_EAGAIN if it does not
 * match the view. */
static int cache_fill(st_reader *r, const seg_obj *o)
{
    if (r->cached && r->cache_n == o->n && r->cache_last == o->last && r->cache_size == o->size)
        return 0;
    if (o->size > r->cache_cap) {
        unsigned char *nb = realloc(r->cache, (size_t)o->size);
        if (!nb)
            return wp__err(WP_ENOMEM, "read %s: cache of %" PRIu64 " bytes", r->ref.pfx, o->size);
        r->cache = nb;
        r->cache_cap = (size_t)o->size;
    }
    char key[BLOCK_KEY_MAX];
    size_t g = 0;
    uint64_t osize = 0;
    r->cached = false;
    if (o->n != o->last || !recent_get(&r->ref, o->n, o->size, r->cache)) {
        obj_key(&r->ref, o->n, o->last, key);
        int rc = s3_get(r->ref.s->c, key, 0, r->cache, (size_t)o->size, &g, &osize);
        if (rc == WP_ENOENT || (!rc && (g != o->size || osize != o->size)))
            return WP_EAGAIN;
        if (rc)
            return rc;
    }
    r->cached = true;
    r->cache_n = o->n;
    r->cache_last = o->last;
    r->cache_size = o->size;
    return 0;
}

/* Reads [off, off+len) as the view maps it, whole objects through the
 * cache, larger ones by ranged GETs. WP_EAGAIN if an object does not match
 * the view (gone or another size): the view is stale. */
static int view_read(st_reader *r, uint64_t off, unsigned char *buf, size_t len, size_t *got)
{
    const seg_view *v = &r->view;
    char key[BLOCK_KEY_MAX];
    *got = 0;
    for (size_t i = view_find(v, off); i < v->n && *got < len; i++) {
        const seg_obj *o = &v->v[i];
        if (obj_bytes(o) == 0)
            continue;
        uint64_t pos = off + *got, in = pos - o->off;
        size_t take = o->size - in < len - *got ? (size_t)(o->size - in) : len - *got;
        int rc;
        if (o->size <= READ_CACHE_BYTES_MAX) {
            bool fresh = !r->cached || r->cache_n != o->n || r->cache_last != o->last ||
                         r->cache_size != o->size;
            if (fresh && !ahead_take(r, o) && (rc = cache_fill(r, o)))
                return rc;
            if (fresh && r->ahead_on)
                ahead_schedule(r, i); /* moved to object i: fetch the next ones */
            memcpy(buf + *got, r->cache + in, take);
            *got += take;
            continue;
        }
        size_t g = 0;
        uint64_t osize = 0;
        obj_key(&r->ref, o->n, o->last, key);
        rc = s3_get(r->ref.s->c, key, in, buf + *got, take, &g, &osize);
        if (rc == WP_ENOENT || (!rc && (g != take || osize != o->size)))
            return WP_EAGAIN;
        if (rc)
            return rc;
        *got += g;
    }
    return 0;
}

static int s3_seg_read(st_reader *r, uint64_t off, void *buf, size_t len, size_t *got)
{
    *got = 0;
    if (len == 0)
        return 0;
    int rc = 0;
    if (off > UINT64_MAX - len || off + len > r->view.total)
        rc = view_refresh(&r->ref, &r->view);
    if (rc)
        return rc;
    if (off >= r->view.total)
        return 0;
    if (len > r->view.total - off)
        len = (size_t)(r->view.total - off);
    rc = view_read(r, off, buf, len, got);
    if (rc == WP_EAGAIN) { /* objects changed under us: list everything again */
        rc = view_load(&r->ref, &r->view);
        if (!rc && off < r->view.total) {
            len = len < r->view.total - off ? len : (size_t)(r->view.total - off);
            rc = view_read(r, off, buf, len, got);
        }
        if (rc == WP_EAGAIN)
            rc = wp__err(WP_EIO, "read %s: objects keep changing under the reader", r->ref.pfx);
    }
    return rc;
}

static int s3_seg_size(st_reader *r, uint64_t *size)
{
    int rc = view_refresh(&r->ref, &r->view);
    if (rc)
        return rc;
    *size = r->view.total;
    return 0;
}

static int s3_seg_read_lac(st_reader *r, int64_t *lac)
{
    (void)r;
    *lac = -1;
    return WP_ENOTSUP;
}

/* ---- deletion and listing ------------------------------------------------------ */

typedef struct {
    char **keys;
    size_t n, cap;
} key_list;

static int on_key(void *arg, const char *key, uint64_t size)
{
    (void)size;
    key_list *kl = arg;
    if (kl->n == kl->cap) {
        size_t cap = kl->cap ? kl->cap * 2 : 64;
        char **nk = realloc(kl->keys, cap * sizeof *nk);
        if (!nk)
            return wp__err(WP_ENOMEM, "storage: key list");
        kl->keys = nk;
        kl->cap = cap;
    }
    if (!(kl->keys[kl->n] = strdup(key)))
        return wp__err(WP_ENOMEM, "storage: key list");
    kl->n++;
    return 0;
}

/* One round: deletes every key a listing under prefix shows except `keep`
 * (NULL: none), all but the first in batches, last key first, then the
 * first (the create marker of a segment goes last, so a half-deleted
 * segment still exists). *n gets the number of keys deleted. */
static int delete_listed(s3_storage *s, const char *prefix, size_t max_keys,
                         const key_list *keep, size_t *n)
{
    key_list kl = {0};
    int rc = s3_list_all(s->c, prefix, NULL, 0, max_keys, on_key, &kl);
    size_t k = 0; /* drop the kept keys */
    for (size_t i = 0; i < kl.n; i++) {
        bool kept = false;
        for (size_t j = 0; keep && j < keep->n && !kept; j++)
            kept = strcmp(kl.keys[i], keep->keys[j]) == 0;
        if (kept)
            free(kl.keys[i]);
        else
            kl.keys[k++] = kl.keys[i];
    }
    kl.n = k;
    if (!rc && kl.n > 1) {
        const char **rev = malloc((kl.n - 1) * sizeof *rev);
        if (!rev)
            rc = wp__err(WP_ENOMEM, "storage: %zu keys to delete", kl.n);
        for (size_t i = 0; !rc && i + 1 < kl.n; i++)
            rev[i] = kl.keys[kl.n - 1 - i];
        if (!rc)
            rc = s3_delete_many(s->c, rev, kl.n - 1);
        free(rev);
    }
    if (!rc && kl.n > 0)
        rc = s3_delete(s->c, kl.keys[0]);
    *n = kl.n;
    for (size_t i = 0; i < kl.n; i++)
        free(kl.keys[i]);
    free(kl.keys);
    return rc;
}

/* Deletes every key under prefix but `keep`, listing again until nothing
 * more is found (what landed meanwhile goes too), at most
 * DELETE_ROUNDS_MAX times. */
static int delete_prefix(s3_storage *s, const char *prefix, size_t max_keys, const key_list *keep)
{
    size_t n = 1;
    int rc = 0;
    for (int round = 0; !rc && n > 0 && round < DELETE_ROUNDS_MAX; round++)
        rc = delete_listed(s, prefix, max_keys, keep, &n);
    if (!rc && n > 0)
        rc = wp__err(WP_EAGAIN, "storage: objects keep appearing under %s after %d rounds of "
                     "deletion", prefix, DELETE_ROUNDS_MAX);
    return rc;
}

/* Before a log's segment is deleted: a fence marker above every epoch (a
 * tombstone), so that a writer still appending (the log deleted under it)
 * gets 412 at its next upload instead of acknowledging it into deleted
 * data; the tombstone's key goes to keep, and it stays when the rest is
 * deleted (format.md section 11). A complete segment (footer object) gets
 * none: nothing can be appended to it. */
static int tombstone_place(s3_storage *s, int64_t log_id, int64_t seg_id, key_list *keep)
{
    seg_ref r;
    seg_view v = {.max_epoch = INT64_MIN};
    uint64_t at = 0;
    int rc = ref_make(s, log_id, seg_id, &r);
    if (!rc)
        rc = view_load(&r, &v);
    bool need = !rc && v.n > 0 && !v.final, found = false;
    for (size_t i = 0; need && i < v.n && !found; i++) /* an earlier deletion's */
        if (v.v[i].marker && v.v[i].epoch == DELETE_FENCE_EPOCH)
            at = v.v[i].n, found = true;
    if (need && !found)
        rc = fence_place(&r, fence_start(&v), DELETE_FENCE_EPOCH, &at);
    if (rc == WP_EFENCED) /* a racing deleter's tombstone won: it stays */
        rc = 0, need = false;
    view_free(&v);
    if (!rc && need) {
        char key[BLOCK_KEY_MAX];
        block_key(&r, at, key);
        rc = on_key(keep, key, 0);
    }
    return rc;
}

static int s3_seg_delete(storage *st, int64_t log_id, int64_t seg_id)
{
    seg_ref r;
    int rc = ref_make((s3_storage *)st, log_id, seg_id, &r);
    if (rc)
        return rc;
    return delete_prefix(r.s, r.pfx, SEG_OBJECTS_MAX, NULL);
}

/* Parses "<digits>/" (canonical, no leading zero) after the log prefix. */
static bool parse_seg_prefix(const char *p, size_t lp, int64_t *id)
{
    p += lp;
    size_t n = strlen(p);
    if (n < 2 || n > 19 || p[n - 1] != '/' || (p[0] == '0' && n > 2))
        return false;
    int64_t v = 0;
    for (size_t i = 0; i + 1 < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return false;
        v = v * 10 + (p[i] - '0');
    }
    *id = v;
    return true;
}

static int cmp_id(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

typedef struct {
    int64_t *v;
    size_t n, cap;
} id_list;

static int ids_add_page(id_list *ids, const s3_list_page *p, size_t lp)
{
    for (size_t i = 0; i < p->n_prefixes; i++) {
        int64_t id;
        if (!parse_seg_prefix(p->prefixes[i], lp, &id))
            continue;
        if (ids->n >= LOG_SEGMENTS_MAX)
            return wp__err(WP_ETOOBIG, "storage: more than %d segments in a log", LOG_SEGMENTS_MAX);
        if (ids->n == ids->cap) {
            size_t cap = ids->cap ? ids->cap * 2 : 64;
            int64_t *nv = realloc(ids->v, cap * sizeof *nv);
            if (!nv)
                return wp__err(WP_ENOMEM, "storage: segment list");
            ids->v = nv;
            ids->cap = cap;
        }
        ids->v[ids->n++] = id;
    }
    return 0;
}

static int list_segments(s3_storage *s, const char *lpfx, id_list *ids)
{
    s3_list_page p = {0};
    char *token = NULL;
    int rc;
    for (;;) {
        rc = s3_list(s->c, lpfx, "/", NULL, token, 0, &p);
        if (!rc)
            rc = ids_add_page(ids, &p, strlen(lpfx));
        if (rc || !p.truncated)
            break;
        free(token);
        token = p.next_token;
        p.next_token = NULL;
        s3_list_page_free(&p);
    }
    s3_list_page_free(&p);
    free(token);
    return rc;
}

static int log_prefix(s3_storage *s, int64_t log_id, char *out, size_t cap)
{
    if (log_id < 0)
        return wp__err(WP_EINVAL, "storage: negative log id %" PRId64, log_id);
    snprintf(out, cap, "%s%" PRId64 "/", s->prefix, log_id);
    return 0;
}

static int s3_seg_list(storage *st, int64_t log_id, int64_t **out, size_t *n)
{
    s3_storage *s = (s3_storage *)st;
    char lpfx[SEG_PFX_MAX];
    id_list ids = {0};
    *out = NULL;
    *n = 0;
    int rc = log_prefix(s, log_id, lpfx, sizeof lpfx);
    if (!rc)
        rc = list_segments(s, lpfx, &ids);
    if (rc) {
        free(ids.v);
        return rc;
    }
    size_t k = 0; /* a deleted log's segments leave tombstones: not listed */
    for (size_t i = 0; !rc && i < ids.n; i++) {
        seg_ref r;
        seg_view v = {.max_epoch = INT64_MIN};
        rc = ref_make(s, log_id, ids.v[i], &r);
        if (!rc)
            rc = view_load(&r, &v);
        if (!rc && v.n > 0 && !view_tombstones_only(&v))
            ids.v[k++] = ids.v[i];
        view_free(&v);
    }
    if (rc) {
        free(ids.v);
        return rc;
    }
    ids.n = k;
    if (ids.n)
        qsort(ids.v, ids.n, sizeof *ids.v, cmp_id);
    *out = ids.v ? ids.v : malloc(sizeof(int64_t));
    if (!*out)
        return wp__err(WP_ENOMEM, "storage: segment list");
    *n = ids.n;
    return 0;
}

static int s3_log_delete(storage *st, int64_t log_id)
{
    s3_storage *s = (s3_storage *)st;
    id_list il = {0}; /* every segment prefix, tombstoned ones too */
    char lpfx[SEG_PFX_MAX];
    int rc = log_prefix(s, log_id, lpfx, sizeof lpfx);
    if (!rc)
        rc = list_segments(s, lpfx, &il);
    int64_t *ids = il.v;
    size_t n = il.n;
    key_list keep = {0};
    for (size_t i = 0; rc == 0 && i < n; i++)
        rc = tombstone_place(s, log_id, ids[i], &keep);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        seg_ref r;
        rc = ref_make(s, log_id, ids[i], &r);
        if (!rc)
            rc = delete_prefix(s, r.pfx, SEG_OBJECTS_MAX, &keep);
    }
    free(ids);
    /* Anything else under the log (not a segment) goes too. */
    if (!rc)
        rc = delete_prefix(s, lpfx, SEG_OBJECTS_MAX, &keep);
    for (size_t i = 0; i < keep.n; i++)
        free(keep.keys[i]);
    free(keep.keys);
    return rc;
}

/* ---- the backend ---------------------------------------------------------------- */

static void s3_storage_close(storage *st)
{
    s3_storage *s = (s3_storage *)st;
    if (!s)
        return;
    pool_close(s);
    recent_close(&s->recent);
    s3_client_close(s->c);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

static int s3_seg_finalize(storage *st, int64_t log_id, int64_t seg_id, uint64_t len);
static int s3_seg_compact(storage *st, int64_t log_id, int64_t seg_id, uint64_t max_bytes,
                          bool *compact);

static void s3_storage_stats(storage *st, storage_stats *out)
{
    s3_stats x;
    s3_client_stats(((s3_storage *)st)->c, &x);
    *out = (storage_stats){.puts = x.puts, .put_bytes = x.put_bytes};
}

static const struct storage_ops s3_ops = {
    .name = "s3",
    .appends_atomic = true, /* one object per append */
    .durable_when_visible = true,
    .flush_bytes_default = 2 * WP_MiB, /* batch-oriented: an append is a PUT */
    .flush_interval_ms_default = 200,
    .poll_min_ms = 200, /* a poll lists the segment: at most 5 requests/s per reader */
    .fence_probe = storage_s3_probe_conditional,
    .stats = s3_storage_stats,
    .seg_create = s3_seg_create,
    .seg_reopen = s3_seg_reopen,
    .seg_append = s3_seg_append,
    .seg_append_nth = s3_seg_append_nth,
    .seg_publish_lac = s3_seg_publish_lac,
    .seg_writer_size = s3_seg_writer_size,
    .seg_writer_close = s3_writer_close,
    .seg_fence = s3_seg_fence,
    .seg_open_read = s3_seg_open_read,
    .seg_read = s3_seg_read,
    .seg_size = s3_seg_size,
    .seg_read_lac = s3_seg_read_lac,
    .seg_reader_close = s3_reader_close,
    .seg_delete = s3_seg_delete,
    .log_delete = s3_log_delete,
    .seg_list = s3_seg_list,
    .seg_finalize = s3_seg_finalize,
    .seg_compact = s3_seg_compact,
    .close = s3_storage_close,
};

/* "/a//b/" -> "a//b/" (leading '/' dropped, one trailing '/' kept). */
static int prefix_normalize(const char *in, char out[PREFIX_MAX])
{
    while (*in == '/')
        in++;
    size_t n = strlen(in);
    while (n && in[n - 1] == '/')
        n--;
    if (n + 2 > PREFIX_MAX)
        return wp__err(WP_EINVAL, "storage: s3 prefix longer than %d bytes", PREFIX_MAX - 2);
    memcpy(out, in, n);
    if (n)
        out[n++] = '/';
    out[n] = '\0';
    return 0;
}

int storage_s3_open_client(s3_client *c, const char *prefix, const wp__logger *lg, storage **out)
{
    *out = NULL;
    s3_storage *s = calloc(1, sizeof *s);
    if (!s) {
        s3_client_close(c);
        return wp__err(WP_ENOMEM, "storage: s3 backend");
    }
    s->c = c;
    pthread_mutex_init(&s->mu, NULL);
    pool_init(s);
    recent_init(&s->recent);
    int rc = prefix_normalize(prefix ? prefix : "", s->prefix);
    if (rc) {
        s3_storage_close(&s->base);
        return rc;
    }
    s->base.ops = &s3_ops;
    s->base.logger = lg;
    *out = &s->base;
    return 0;
}

int storage_s3_open(const struct wp_config *cfg, const wp__logger *lg, storage **out)
{
    *out = NULL;
    s3_options o = {
        .endpoint = cfg->s3_endpoint,
        .bucket = cfg->s3_bucket,
        .region = cfg->s3_region,
        .access_key = cfg->s3_access_key,
        .secret_key = cfg->s3_secret_key,
        .ca_file = cfg->s3_ca_file,
        .path_style = cfg->s3_path_style != 0,
        .timeout_ms = cfg->s3_timeout_ms,
        .max_retries = cfg->s3_max_retries > S3_RETRIES_MAX ? S3_RETRIES_MAX
                       : cfg->s3_max_retries < 0           ? 0
                                                           : (int)cfg->s3_max_retries,
        .logger = lg,
    };
    s3_client *c = NULL;
    int rc = s3_client_open(&o, &c);
    if (rc)
        return rc;
    return storage_s3_open_client(c, cfg->s3_prefix, lg, out);
}

s3_client *storage_s3_client(storage *s) { return ((s3_storage *)s)->c; }

/* ---- conditional-write probe (format.md section 11) ------------------------ */

/* <prefix>.probe/<32 hex digits> */
#define PROBE_KEY_MAX (PREFIX_MAX + 8 + 32 + 1)

static int probe_key(const s3_storage *s, char key[PROBE_KEY_MAX])
{
    unsigned char rnd[16];
    if (RAND_bytes(rnd, sizeof rnd) != 1)
        return wp__err(WP_EIO, "storage: s3 probe: no random bytes");
    int n = snprintf(key, PROBE_KEY_MAX, "%s.probe/", s->prefix);
    for (size_t i = 0; i < sizeof rnd; i++)
        n += snprintf(key + n, PROBE_KEY_MAX - (size_t)n, "%02x", rnd[i]);
    return 0;
}

int storage_s3_probe_conditional(storage *st, bool *honoured)
{
    s3_storage *s = (s3_storage *)st;
    char key[PROBE_KEY_MAX];
    static char first[] = "woodpecker conditional-write probe 1\n";
    static char second[] = "woodpecker conditional-write probe 2\n";
    struct iovec v1 = {first, sizeof first - 1}, v2 = {second, sizeof second - 1};
    int rc = probe_key(s, key);
    if (rc)
        return rc;
    if ((rc = s3_put(s->c, key, &v1, 1, S3_PUT_IF_ABSENT)) != 0)
        goto out_delete;
    rc = s3_put(s->c, key, &v2, 1, S3_PUT_IF_ABSENT);
    if (rc == 0 || rc == WP_EEXIST) {
        *honoured = rc == WP_EEXIST;
        rc = 0;
    }
out_delete:;
    int drc = s3_delete(s->c, key); /* idempotent: also after a failed first PUT */
    if (rc == 0 && drc != 0)
        rc = drc;
    return rc;
}
/* ---- completion: the footer object (format.md section 11.1) ------------------- */

/* PUTs the footer object l: only if absent (if_match NULL), or only over
 * the object whose ETag matches. */
static int footer_put(const seg_ref *r, const s3_layout *l, const char *if_match)
{
    int rc = s3_layout_check(l);
    if (rc)
        return wp__err(WP_EINVAL, "segment %s: bad footer object: %s", r->pfx, wp_errmsg());
    size_t len = (size_t)s3_layout_size(l);
    unsigned char *b = malloc(len);
    if (!b)
        return wp__err(WP_ENOMEM, "segment %s: footer object of %zu bytes", r->pfx, len);
    s3_layout_encode(l, b);
    char key[BLOCK_KEY_MAX];
    footer_key(r, key);
    struct iovec v = {b, len};
    s3_put_opts o = {.flags = if_match ? 0 : S3_PUT_IF_ABSENT, .if_match = if_match};
    rc = s3_put_ex(r->s->c, key, &v, 1, &o, NULL);
    free(b);
    return rc;
}

static int s3_seg_finalize(storage *st, int64_t log_id, int64_t seg_id, uint64_t len)
{
    seg_ref r;
    seg_view v = {.max_epoch = INT64_MIN};
    s3_layout l = {0};
    size_t first = 0;
    int rc = ref_make((s3_storage *)st, log_id, seg_id, &r);
    for (int round = 0; !rc && round < 2; round++) {
        rc = view_load(&r, &v);
        if (!rc && v.n == 0)
            rc = wp__err(WP_ENOENT, "finalize: segment %s does not exist", r.pfx);
        if (rc)
            break;
        if (v.final) { /* done before, by us or by a racing completer */
            if (v.total != len)
                rc = wp__err(WP_ECORRUPT, "finalize %s: its footer object says %" PRIu64
                             " bytes, not %" PRIu64, r.pfx, v.total, len);
            break;
        }
        if ((rc = cut_point(&r, &v, len, &first)))
            break;
        l = (s3_layout){.generation = 0, .bytes = len, .log_id = log_id, .seg_id = seg_id};
        l.objs = malloc((first ? first : 1) * sizeof *l.objs);
        if (!l.objs) {
            rc = wp__err(WP_ENOMEM, "finalize %s: %zu objects", r.pfx, first);
            break;
        }
        for (size_t i = 0; i < first; i++)
            if (obj_bytes(&v.v[i]))
                l.objs[l.n_objs++] = (s3_layout_obj){v.v[i].n, v.v[i].n, v.v[i].size};
        rc = footer_put(&r, &l, NULL);
        free(l.objs);
        l.objs = NULL;
        if (rc != WP_EEXIST)
            break;
        rc = 0; /* someone finalized meanwhile: check theirs */
    }
    view_free(&v);
    return rc;
}

/* ---- compaction: merged objects (format.md section 11.2) ----------------------- */

/* Probes how the endpoint compares If-Match on PUT (once per backend). */
static int ifmatch_probe(s3_storage *s)
{
    char key[PROBE_KEY_MAX];
    static char body[] = "woodpecker if-match probe\n";
    struct iovec v = {body, sizeof body - 1};
    s3_obj_info info;
    int rc = probe_key(s, key), mode = IFMATCH_NONE;
    if (rc)
        return rc;
    s3_put_opts plain = {0};
    if ((rc = s3_put_ex(s->c, key, &v, 1, &plain, &info)) != 0)
        goto out_delete;
    char quoted[S3_ETAG_MAX + 2];
    snprintf(quoted, sizeof quoted, "\"%s\"", info.etag);
    s3_put_opts wrong = {.if_match = "\"0123456789abcdef0123456789abcdef\""};
    rc = s3_put_ex(s->c, key, &v, 1, &wrong, NULL);
    if (rc == 0)
        goto out_delete; /* ignored: IFMATCH_NONE */
    if (rc != WP_ECONFLICT)
        goto out_delete;
    s3_put_opts q = {.if_match = quoted}, b = {.if_match = info.etag};
    rc = s3_put_ex(s->c, key, &v, 1, &q, NULL);
    if (rc == 0)
        mode = IFMATCH_QUOTED;
    else if (rc == WP_ECONFLICT && (rc = s3_put_ex(s->c, key, &v, 1, &b, NULL)) == 0)
        mode = IFMATCH_BARE;
    if (rc == WP_ECONFLICT)
        rc = 0;
out_delete:;
    int drc = s3_delete(s->c, key);
    if (!rc && drc)
        rc = drc;
    if (!rc) {
        pthread_mutex_lock(&s->mu);
        s->ifmatch = mode;
        pthread_mutex_unlock(&s->mu);
        if (mode == IFMATCH_NONE)
            wp__log(s->base.logger, WP_LOG_WARN, "storage: the S3 endpoint does not honour "
                    "If-Match on PUT: compaction is off (segments keep their block objects)");
    }
    return rc;
}

/* Deletes the objects named by entries (batch DELETEs of at most
 * S3_DELETE_KEYS_MAX keys; missing is fine). */
static int delete_objs(const seg_ref *r, const s3_layout_obj *e, size_t n)
{
    char (*keys)[BLOCK_KEY_MAX] = malloc(S3_DELETE_KEYS_MAX * sizeof *keys);
    const char **kp = malloc(S3_DELETE_KEYS_MAX * sizeof *kp);
    int rc = keys && kp ? 0 : wp__err(WP_ENOMEM, "segment %s: keys to delete", r->pfx);
    for (size_t done = 0; !rc && done < n;) {
        size_t k = n - done < S3_DELETE_KEYS_MAX ? n - done : S3_DELETE_KEYS_MAX;
        for (size_t i = 0; i < k; i++) {
            obj_key(r, e[done + i].first, e[done + i].last, keys[i]);
            kp[i] = keys[i];
        }
        rc = s3_delete_many(r->s->c, kp, k);
        done += k;
    }
    free(kp);
    free(keys);
    return rc;
}

typedef struct {
    uint32_t from, to; /* object entries [from, to) of the current generation */
    uint64_t bytes;
} compact_run;

typedef struct {
    const seg_ref *r;
    const s3_layout *l;
    const compact_run *runs;
    size_t n_runs, next;
    pthread_mutex_t mu;
    int rc;
    char err[512]; /* the first failure's detail */
} compact_job;

/* Builds merged object `run`: GETs its objects, PUTs their concatenation. */
static int merge_run(const seg_ref *r, const s3_layout *l, const compact_run *run)
{
    unsigned char *buf = malloc((size_t)run->bytes);
    if (!buf)
        return wp__err(WP_ENOMEM, "compact %s: %" PRIu64 " bytes", r->pfx, run->bytes);
    char key[BLOCK_KEY_MAX];
    uint64_t off = 0;
    int rc = 0;
    for (uint32_t i = run->from; !rc && i < run->to; i++) {
        const s3_layout_obj *o = &l->objs[i];
        size_t got = 0;
        uint64_t osize = 0;
        obj_key(r, o->first, o->last, key);
        rc = s3_get(r->s->c, key, 0, buf + off, (size_t)o->size, &got, &osize);
        if (!rc && (got != o->size || osize != o->size))
            rc = wp__err(WP_ECORRUPT, "compact %s: %s is %" PRIu64 " bytes, the footer object "
                         "says %" PRIu64, r->pfx, key, osize, o->size);
        off += o->size;
    }
    if (!rc) {
        obj_key(r, l->objs[run->from].first, l->objs[run->to - 1].last, key);
        struct iovec v = {buf, (size_t)run->bytes};
        rc = s3_put(r->s->c, key, &v, 1, 0); /* the name fixes the bytes: see format.md */
    }
    free(buf);
    return rc;
}

static void *compact_worker(void *arg)
{
    compact_job *j = arg;
    pthread_mutex_lock(&j->mu);
    while (j->rc == 0 && j->next < j->n_runs) {
        size_t i = j->next++;
        pthread_mutex_unlock(&j->mu);
        int rc = merge_run(j->r, j->l, &j->runs[i]);
        pthread_mutex_lock(&j->mu);
        if (rc && j->rc == 0) {
            j->rc = rc;
            snprintf(j->err, sizeof j->err, "%s", wp_errmsg());
        }
    }
    pthread_mutex_unlock(&j->mu);
    return NULL;
}

/* Cuts l's objects greedily into runs of at most max_bytes; keeps the runs
 * of two or more objects. */
static int compact_plan(const s3_layout *l, uint64_t max_bytes, compact_run **out, size_t *n)
{
    compact_run *runs = malloc(((size_t)l->n_objs / 2 + 1) * sizeof *runs);
    if (!runs)
        return wp__err(WP_ENOMEM, "compaction plan");
    size_t k = 0;
    for (uint32_t i = 0; i < l->n_objs;) {
        uint32_t j = i;
        uint64_t bytes = 0;
        while (j < l->n_objs && (j == i || bytes + l->objs[j].size <= max_bytes))
            bytes += l->objs[j++].size;
        if (j - i >= 2) /* then bytes <= max_bytes */
            runs[k++] = (compact_run){i, j, bytes};
        i = j;
    }
    *out = runs;
    *n = k;
    return 0;
}

/* The next generation: each run replaced by its merged object, the
 * replaced entries as garbage. */
static int compact_next(const s3_layout *l, const compact_run *runs, size_t n_runs, s3_layout *nl)
{
    *nl = (s3_layout){.generation = l->generation + 1, .bytes = l->bytes, .log_id = l->log_id,
                      .seg_id = l->seg_id};
    nl->objs = malloc(l->n_objs * sizeof *nl->objs);
    nl->garbage = malloc(l->n_objs * sizeof *nl->garbage);
    if (!nl->objs || !nl->garbage) {
        s3_layout_free(nl);
        return wp__err(WP_ENOMEM, "compaction: %" PRIu32 " entries", l->n_objs);
    }
    size_t k = 0;
    for (uint32_t i = 0; i < l->n_objs;) {
        if (k < n_runs && runs[k].from == i) {
            const compact_run *run = &runs[k++];
            nl->objs[nl->n_objs++] = (s3_layout_obj){l->objs[run->from].first,
                                                     l->objs[run->to - 1].last, run->bytes};
            for (uint32_t j = run->from; j < run->to; j++)
                nl->garbage[nl->n_garbage++] = l->objs[j];
            i = run->to;
        } else {
            nl->objs[nl->n_objs++] = l->objs[i++];
        }
    }
    return 0;
}

/* Builds the merged objects on up to COMPACT_THREADS threads. */
static int compact_build(const seg_ref *r, const s3_layout *l, const compact_run *runs,
                         size_t n_runs, uint64_t max_bytes)
{
    compact_job j = {.r = r, .l = l, .runs = runs, .n_runs = n_runs};
    size_t want = COMPACT_BYTES / (max_bytes ? max_bytes : 1);
    if (want < 1)
        want = 1;
    if (want > COMPACT_THREADS)
        want = COMPACT_THREADS;
    if (want > n_runs)
        want = n_runs;
    pthread_t thr[COMPACT_THREADS];
    size_t started = 0;
    if (pthread_mutex_init(&j.mu, NULL))
        return wp__err(WP_ENOMEM, "compaction: mutex");
    while (started + 1 < want && pthread_create(&thr[started], NULL, compact_worker, &j) == 0)
        started++;
    compact_worker(&j); /* the caller's thread works too */
    for (size_t i = 0; i < started; i++)
        pthread_join(thr[i], NULL);
    pthread_mutex_destroy(&j.mu);
    if (j.rc)
        return wp__err(j.rc, "%s", j.err);
    return 0;
}

/* The commit failed its If-Match: another compactor committed first (its
 * footer names what it needs; ours are left to segment deletion), or the
 * segment was deleted meanwhile (GC): then the merged objects we wrote
 * would outlive it, so they go. */
static int compact_lost(const seg_ref *r, const s3_layout *l, const compact_run *runs,
                        size_t n_runs, uint64_t gen)
{
    char key[BLOCK_KEY_MAX];
    s3_obj_info info;
    footer_key(r, key);
    int rc = s3_head(r->s->c, key, &info);
    if (rc == 0) {
        wp__log(r->s->base.logger, WP_LOG_INFO, "compact %s: generation %" PRIu64 " was "
                "committed by someone else", r->pfx, gen);
        return 0;
    }
    if (rc != WP_ENOENT)
        return rc;
    wp__err_clear();
    s3_layout_obj *mine = malloc((n_runs ? n_runs : 1) * sizeof *mine);
    if (!mine)
        return wp__err(WP_ENOMEM, "compact %s: %zu runs", r->pfx, n_runs);
    for (size_t i = 0; i < n_runs; i++)
        mine[i] = (s3_layout_obj){l->objs[runs[i].from].first, l->objs[runs[i].to - 1].last, 0};
    rc = delete_objs(r, mine, n_runs);
    free(mine);
    if (!rc)
        rc = wp__err(WP_ENOENT, "compact %s: the segment was deleted meanwhile", r->pfx);
    return rc;
}

static int s3_seg_compact(storage *st, int64_t log_id, int64_t seg_id, uint64_t max_bytes,
                          bool *compact)
{
    s3_storage *s = (s3_storage *)st;
    seg_ref r;
    s3_layout l = {0}, nl = {0};
    compact_run *runs = NULL;
    size_t n_runs = 0;
    char etag[S3_ETAG_MAX];
    *compact = false;
    if (max_bytes < 1)
        return wp__err(WP_EINVAL, "compact: max_bytes 0");
    int rc = ref_make(s, log_id, seg_id, &r);
    if (rc)
        return rc;
    pthread_mutex_lock(&s->mu);
    int mode = s->ifmatch;
    pthread_mutex_unlock(&s->mu);
    if (mode == IFMATCH_UNKNOWN) {
        if ((rc = ifmatch_probe(s)))
            return rc;
        pthread_mutex_lock(&s->mu);
        mode = s->ifmatch;
        pthread_mutex_unlock(&s->mu);
    }
    if (mode == IFMATCH_NONE)
        return wp__err(WP_ENOTSUP, "compact %s: the endpoint does not honour If-Match", r.pfx);
    rc = footer_get(&r, &l, etag);
    if (rc == WP_ENOENT)
        return wp__err(WP_ENOENT, "compact %s: not finalized (no footer object)", r.pfx);
    if (!rc)
        rc = delete_objs(&r, l.garbage, l.n_garbage); /* left by a crash after a commit */
    if (!rc)
        rc = compact_plan(&l, max_bytes, &runs, &n_runs);
    if (!rc && n_runs == 0) {
        *compact = true;
        goto out;
    }
    if (!rc)
        rc = compact_build(&r, &l, runs, n_runs, max_bytes);
    if (!rc)
        rc = compact_next(&l, runs, n_runs, &nl);
    if (!rc) {
        char match[S3_ETAG_MAX + 2];
        snprintf(match, sizeof match, mode == IFMATCH_QUOTED ? "\"%s\"" : "%s", etag);
        rc = footer_put(&r, &nl, match); /* the commit point */
        if (rc == WP_ECONFLICT) { /* another compactor committed first, or the segment is gone */
            rc = compact_lost(&r, &l, runs, n_runs, nl.generation);
            goto out;
        }
    }
    if (!rc)
        rc = delete_objs(&r, nl.garbage, nl.n_garbage);
    if (!rc) {
        wp__log(s->base.logger, WP_LOG_INFO, "compact %s: generation %" PRIu64 ": %" PRIu32
                " objects -> %" PRIu32, r.pfx, nl.generation, l.n_objs, nl.n_objs);
        *compact = true;
    }
out:
    s3_layout_free(&l);
    s3_layout_free(&nl);
    free(runs);
    return rc;
}

