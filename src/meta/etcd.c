/* etcd.c — the metadata interface on etcd v3 (docs/metadata.md §5).
 *
 * Every record is one key under the configured prefix; its rev is the key's
 * mod_revision. Every write is one etcd txn: creations compare
 * create_revision == 0, updates and conditional deletes compare
 * mod_revision, seg_create also compares the LOG key's mod_revision with its
 * guard. A txn whose outcome is unknown (connection lost after sending, a
 * leader change) is retried only because it is a CAS (at most one attempt
 * can apply), and a failed retry is re-checked through the 16-byte random
 * tag every log, segment and claim value carries: if the first change after
 * the expected revision carries our tag, our write applied. Generic records
 * (kv_*) hold the caller's raw bytes, so they are re-checked by value and
 * lease instead.
 *
 * Updates write whole values, so they need the record's immutable fields:
 * a small per-handle cache maps (key, mod_revision) to the value stored at
 * that revision (exact: a key changes at most once per revision), so an
 * update of a record this handle read or wrote costs one round trip. */
#include "meta/etcd.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "base/err.h"
#include "base/limits.h"
#include "codec/le.h"

/* Value format version (first byte of every record value). */
#define META_ETCD_FORMAT 1
/* Schema version stored under `version` (docs/metadata.md). */
#define META_ETCD_SCHEMA "1"
/* Longest key: prefix (255 + '/') + "kv/" + a record's key (255). */
#define META_ETCD_KEY_MAX 576
_Static_assert(256 + sizeof "nodes/" + WP_NODE_ID_MAX < META_ETCD_KEY_MAX, "node keys fit");
_Static_assert(256 + sizeof "readers//" + 20 + WP_READER_NAME_MAX < META_ETCD_KEY_MAX,
               "reader keys fit");
_Static_assert(256 + sizeof "kv/" + META_KV_KEY_MAX < META_ETCD_KEY_MAX, "kv keys fit");
/* Keys per range request in list calls. */
#define META_ETCD_PAGE 512
/* A page of the largest generic records (base64 key and value, and ~256
 * bytes of JSON around each) fits one response. */
_Static_assert((unsigned long long)META_ETCD_PAGE *
                       ((META_KV_VALUE_MAX + 2) / 3 * 4 + (META_ETCD_KEY_MAX + 2) / 3 * 4 + 256) <
                   ETCD_RESPONSE_BYTES_MAX,
               "a page of kv records fits a response");
/* Bound on the rows one list call returns (as the SQLite backend). */
#define META_LIST_ROWS_MAX (16 * 1024 * 1024)
/* Bound on a lease's time to live (one day). */
#define META_LEASE_TTL_MS_MAX (24LL * 3600 * 1000)
/* Per-handle cache of recently seen record values (direct-mapped). */
#define META_ETCD_CACHE_SLOTS 128
/* Write tag length, and the value sizes (docs/metadata.md §5.2). */
#define TAG_LEN 16
#define LOG_VALUE_LEN (2 + 5 * 8 + TAG_LEN)
#define SEG_VALUE_LEN (2 + 9 * 8 + TAG_LEN)
/* With a placement: its 2-byte length and bytes before the tag. */
#define SEG_VALUE_MAX (SEG_VALUE_LEN + 2 + META_SEG_PLACEMENT_MAX)
#define READER_VALUE_LEN (2 + 4 * 8)
#define VALUE_MAX (2 + WP_LOG_NAME_MAX > SEG_VALUE_MAX ? 2 + WP_LOG_NAME_MAX : SEG_VALUE_MAX)

_Static_assert(LOG_VALUE_LEN <= VALUE_MAX && SEG_VALUE_MAX <= VALUE_MAX, "values fit the cache");
_Static_assert(TAG_LEN == META_CLAIM_TAG_LEN, "claim values carry the same write tag");
_Static_assert(256 + sizeof "claims//" + 40 < META_ETCD_KEY_MAX, "claim keys fit");

enum {
    KIND_LOG = 'L',
    KIND_SEG = 'S',
    KIND_READER = 'R',
    KIND_ID = 'I',
    KIND_SETTING = 'V',
    KIND_CLAIM = 'C'
};

typedef struct {
    char key[META_ETCD_KEY_MAX];
    int64_t rev;
    uint8_t val[VALUE_MAX];
    size_t len;
} cache_slot;

typedef struct {
    meta base; /* first: a meta * is a meta_etcd * */
    etcd_client *cli;
    char prefix[260];
    pthread_mutex_t mu; /* cache and generator */
    cache_slot *cache;
    int64_t gen_val, gen_rev; /* last seen logidgen (rev 0: unknown) */
    _Atomic int64_t n_txns, n_unknown, n_probes, n_probe_applied;
} meta_etcd;

static meta_etcd *me(meta *m) { return (meta_etcd *)m; }

/* ---- keys -------------------------------------------------------------- */

typedef char keybuf[META_ETCD_KEY_MAX];

static void key_fmt(const meta_etcd *m, keybuf k, const char *fmt, int64_t a, int64_t b)
{
    int n = snprintf(k, META_ETCD_KEY_MAX, "%s", m->prefix);
    snprintf(k + n, META_ETCD_KEY_MAX - (size_t)n, fmt, (long long)a, (long long)b);
}

static void key_log(const meta_etcd *m, keybuf k, const char *name)
{
    snprintf(k, META_ETCD_KEY_MAX, "%slogs/%s", m->prefix, name);
}

static void key_id(const meta_etcd *m, keybuf k, int64_t id) { key_fmt(m, k, "ids/%020lld", id, 0); }

static void key_seg(const meta_etcd *m, keybuf k, int64_t log_id, int64_t seg_id)
{
    key_fmt(m, k, "segs/%020lld/%020lld", log_id, seg_id);
}

static void key_reader(const meta_etcd *m, keybuf k, int64_t log_id, const char *name)
{
    key_fmt(m, k, "readers/%020lld/", log_id, 0);
    size_t n = strlen(k);
    snprintf(k + n, META_ETCD_KEY_MAX - n, "%s", name);
}

static void key_node(const meta_etcd *m, keybuf k, const char *id)
{
    snprintf(k, META_ETCD_KEY_MAX, "%snodes/%s", m->prefix, id);
}

static void key_claim(const meta_etcd *m, keybuf k, int64_t log_id, int64_t seg_id)
{
    key_fmt(m, k, "claims/%020lld/%020lld", log_id, seg_id);
}

/* A generic record's key, or (key a prefix) the start of a prefix range. */
static void key_kv(const meta_etcd *m, keybuf k, const char *key)
{
    snprintf(k, META_ETCD_KEY_MAX, "%skv/%s", m->prefix, key);
}

/* ---- value encoding (docs/metadata.md §5.2) ---------------------------- */

static size_t enc(uint8_t *p, int kind, const int64_t *f, size_t n, const uint8_t *tag)
{
    p[0] = META_ETCD_FORMAT;
    p[1] = (uint8_t)kind;
    for (size_t i = 0; i < n; i++)
        le_put64(p + 2 + 8 * i, (uint64_t)f[i]);
    if (tag)
        memcpy(p + 2 + 8 * n, tag, TAG_LEN);
    return 2 + 8 * n + (tag ? TAG_LEN : 0);
}

static int corrupt(const char *op, const char *key, const char *what)
{
    return wp__err(WP_ECORRUPT, "meta etcd %s: corrupt record %s: %s", op, key, what);
}

/* Checks format, kind and length; reads n int64 fields. */
static int dec(const char *op, const etcd_kv *kv, int kind, size_t len, int64_t *f, size_t n)
{
    if (kv->value_len < 2 || kv->value[0] != META_ETCD_FORMAT)
        return corrupt(op, kv->key, "unknown value format");
    if (kv->value[1] != kind || kv->value_len != len)
        return corrupt(op, kv->key, "wrong record kind or length");
    for (size_t i = 0; i < n; i++)
        f[i] = (int64_t)le_get64(kv->value + 2 + 8 * i);
    if (kv->mod_rev < 1)
        return corrupt(op, kv->key, "no revision");
    return 0;
}

static void new_tag(uint8_t tag[TAG_LEN])
{
    static _Atomic uint64_t fallback;
    if (getrandom(tag, TAG_LEN, 0) != TAG_LEN) { /* never expected; stay unique anyway */
        uint64_t v[2] = {(uint64_t)wp__now_ns(), ++fallback ^ (uint64_t)getpid() << 32};
        memcpy(tag, v, TAG_LEN);
    }
}

/* The tag of a log, segment or claim value, or NULL. */
static const uint8_t *value_tag(const uint8_t *v, size_t len)
{
    if (len == LOG_VALUE_LEN && v[1] == KIND_LOG)
        return v + len - TAG_LEN;
    if (len >= SEG_VALUE_LEN && len <= SEG_VALUE_MAX && v[1] == KIND_SEG)
        return v + len - TAG_LEN;
    if (len >= META_CLAIM_VALUE_MIN && len <= META_CLAIM_VALUE_MAX && v[1] == KIND_CLAIM)
        return v + META_CLAIM_TAG_OFF;
    return NULL;
}

static bool has_tag(const etcd_kv *kv, const uint8_t *tag)
{
    const uint8_t *t = value_tag(kv->value, kv->value_len);
    return t && memcmp(t, tag, TAG_LEN) == 0;
}

static size_t enc_log(uint8_t *p, const meta_log *l, const uint8_t *tag)
{
    int64_t f[5] = {l->log_id, l->epoch, l->trunc_seg, l->trunc_entry, l->created_ms};
    return enc(p, KIND_LOG, f, 5, tag);
}

static int dec_log(const meta_etcd *m, const char *op, const etcd_kv *kv, meta_log *l)
{
    int64_t f[5];
    int rc = dec(op, kv, KIND_LOG, LOG_VALUE_LEN, f, 5);
    if (rc < 0)
        return rc;
    size_t plen = strlen(m->prefix) + 5;
    size_t nlen = kv->key_len > plen ? kv->key_len - plen : 0;
    if (nlen < 1 || nlen > WP_LOG_NAME_MAX)
        return corrupt(op, kv->key, "log name length");
    if (f[0] < 1 || f[1] < 0 || f[2] < -1 || f[3] < -1)
        return corrupt(op, kv->key, "log id, epoch or truncation point out of range");
    memset(l, 0, sizeof *l);
    memcpy(l->name, kv->key + plen, nlen);
    l->log_id = f[0];
    l->epoch = f[1];
    l->trunc_seg = f[2];
    l->trunc_entry = f[3];
    l->created_ms = f[4];
    l->rev = kv->mod_rev;
    return 0;
}

/* Writes p[SEG_VALUE_MAX]; the value's length. Without a placement the
 * 90-byte form, with one its length and bytes before the tag (§5.2). */
static size_t enc_seg(uint8_t *p, const meta_seg *s, const uint8_t *tag)
{
    int64_t f[9] = {s->log_id,     s->seg_id,     s->state,        s->last_entry_id, s->bytes,
                    s->epoch,      s->created_ms, s->completed_ms, s->truncated_ms};
    size_t plen = strnlen(s->placement, META_SEG_PLACEMENT_MAX);
    if (plen == 0)
        return enc(p, KIND_SEG, f, 9, tag);
    size_t n = enc(p, KIND_SEG, f, 9, NULL);
    p[n] = (uint8_t)(plen & 0xff);
    p[n + 1] = (uint8_t)(plen >> 8);
    memcpy(p + n + 2, s->placement, plen);
    memcpy(p + n + 2 + plen, tag, TAG_LEN);
    return n + 2 + plen + TAG_LEN;
}

static int dec_seg(const meta_etcd *m, const char *op, const etcd_kv *kv, meta_seg *s)
{
    int64_t f[9];
    keybuf k;
    /* The length the placement's length field implies (the 90-byte form
     * has none); dec() checks the value against it. */
    size_t len = SEG_VALUE_LEN, plen = 0;
    if (kv->value_len > SEG_VALUE_LEN + 2) {
        plen = (size_t)kv->value[2 + 72] | (size_t)kv->value[2 + 73] << 8;
        len = SEG_VALUE_LEN + 2 + plen;
        if (plen < 1 || plen > META_SEG_PLACEMENT_MAX)
            return corrupt(op, kv->key, "segment placement length");
    }
    int rc = dec(op, kv, KIND_SEG, len, f, 9);
    if (rc < 0)
        return rc;
    const char *place = (const char *)kv->value + 2 + 72 + 2;
    if (plen && !meta_seg_placement_valid(place, plen))
        return corrupt(op, kv->key, "segment placement");
    key_seg(m, k, f[0], f[1]);
    if (strcmp(k, kv->key) != 0)
        return corrupt(op, kv->key, "segment ids do not match the key");
    if (f[0] < 1 || f[1] < 0 || f[2] < WP_SEG_ACTIVE || f[2] > WP_SEG_TRUNCATED || f[3] < -1 ||
        f[4] < 0 || f[5] < 0)
        return corrupt(op, kv->key, "segment field out of range");
    memset(s, 0, sizeof *s);
    s->log_id = f[0];
    s->seg_id = f[1];
    s->state = (int)f[2];
    s->last_entry_id = f[3];
    s->bytes = f[4];
    s->epoch = f[5];
    s->created_ms = f[6];
    s->completed_ms = f[7];
    s->truncated_ms = f[8];
    memcpy(s->placement, place, plen);
    s->placement[plen] = '\0';
    s->rev = kv->mod_rev;
    return 0;
}

static int dec_reader(const meta_etcd *m, const char *op, const etcd_kv *kv, meta_reader *r)
{
    int64_t f[4];
    keybuf k;
    int rc = dec(op, kv, KIND_READER, READER_VALUE_LEN, f, 4);
    if (rc < 0)
        return rc;
    key_reader(m, k, f[0], "");
    size_t plen = strlen(k), nlen = kv->key_len - (kv->key_len > plen ? plen : kv->key_len);
    if (strncmp(k, kv->key, plen) != 0 || nlen < 1 || nlen > WP_READER_NAME_MAX)
        return corrupt(op, kv->key, "reader key does not match its log id or name");
    if (f[1] < 0 || f[2] < 0 || f[3] != kv->lease)
        return corrupt(op, kv->key, "reader position or lease out of range");
    memset(r, 0, sizeof *r);
    r->log_id = f[0];
    memcpy(r->name, kv->key + plen, nlen);
    r->seg_id = f[1];
    r->entry_id = f[2];
    r->lease_id = f[3];
    r->rev = kv->mod_rev;
    return 0;
}

/* ---- cache of (key, rev) → value --------------------------------------- */

static cache_slot *slot_of(meta_etcd *m, const char *key)
{
    uint64_t h = 1469598103934665603ULL;
    for (const char *p = key; *p; p++)
        h = (h ^ (uint8_t)*p) * 1099511628211ULL;
    return &m->cache[h % META_ETCD_CACHE_SLOTS];
}

static void cache_put(meta_etcd *m, const char *key, int64_t rev, const uint8_t *v, size_t len)
{
    if (len > VALUE_MAX || strlen(key) >= META_ETCD_KEY_MAX)
        return;
    pthread_mutex_lock(&m->mu);
    cache_slot *s = slot_of(m, key);
    snprintf(s->key, sizeof s->key, "%s", key);
    s->rev = rev;
    memcpy(s->val, v, len);
    s->len = len;
    pthread_mutex_unlock(&m->mu);
}

/* Fills kv (pointing into buf) with key's value at rev, if cached. */
static bool cache_get(meta_etcd *m, const char *key, int64_t rev, uint8_t *buf, etcd_kv *kv)
{
    bool hit = false;
    pthread_mutex_lock(&m->mu);
    cache_slot *s = slot_of(m, key);
    if (s->rev == rev && rev > 0 && strcmp(s->key, key) == 0) {
        memcpy(buf, s->val, s->len);
        memset(kv, 0, sizeof *kv);
        kv->key = (char *)key;
        kv->key_len = strlen(key);
        kv->value = buf;
        kv->value_len = s->len;
        kv->mod_rev = rev;
        hit = true;
    }
    pthread_mutex_unlock(&m->mu);
    return hit;
}

/* ---- reads ------------------------------------------------------------- */

static int wrap(int rc, const char *op, const char *what)
{
    return wp__err(rc, "meta etcd %s %s: %s", op, what, wp_errmsg());
}

/* Reads one key (at revision rev, 0 = latest); *found tells if it exists. */
static int get_key(meta_etcd *m, const char *op, const char *key, int64_t rev, int64_t deadline,
                   etcd_result *res, const etcd_kv **kv)
{
    etcd_op r = {.kind = ETCD_OP_RANGE, .key = key, .revision = rev};
    int rc = etcd_range(m->cli, &r, deadline, res);
    if (rc < 0)
        return wrap(rc, op, key);
    *kv = res->n_ops == 1 && res->ops[0].n_kvs == 1 ? &res->ops[0].kvs[0] : NULL;
    if (*kv && strcmp((*kv)->key, key) != 0) {
        etcd_result_free(res);
        return corrupt(op, key, "range returned another key");
    }
    return 0;
}

/* Calls each(arg, kv) for every key under prefix, in key order, reading
 * pages of META_ETCD_PAGE keys at one revision (a consistent snapshot). */
static int scan(meta_etcd *m, const char *op, const char *prefix, bool keys_only,
                int (*each)(void *, const etcd_kv *), void *arg)
{
    int64_t snap = 0;
    char next[META_ETCD_KEY_MAX + 2];
    snprintf(next, sizeof next, "%s", prefix);
    for (size_t rows = 0;;) {
        etcd_op r = {.kind = ETCD_OP_RANGE, .key = next, .prefix_of = prefix,
                     .limit = META_ETCD_PAGE, .revision = snap, .keys_only = keys_only};
        etcd_result res;
        /* meta.etcd.timeout_ms is per request: per page. One deadline
         * for every page made a long list (32 MiB pages of large generic
         * records) fail as "no answer within the deadline" from an etcd
         * that answered every page. */
        int rc = etcd_range(m->cli, &r, etcd_deadline(m->cli, 0), &res);
        if (rc < 0)
            return wrap(rc, op, prefix);
        snap = snap ? snap : res.revision;
        etcd_op_result *o = &res.ops[0];
        for (size_t i = 0; rc == 0 && i < o->n_kvs; i++) {
            if (strncmp(o->kvs[i].key, prefix, strlen(prefix)) != 0 || o->kvs[i].key_len > META_ETCD_KEY_MAX)
                rc = corrupt(op, o->kvs[i].key, "outside the range asked for");
            else if (++rows > META_LIST_ROWS_MAX)
                rc = wp__err(WP_ETOOBIG, "meta etcd %s: more than %d rows", op, META_LIST_ROWS_MAX);
            else
                rc = each(arg, &o->kvs[i]);
        }
        bool more = o->more && o->n_kvs > 0;
        if (more) /* the next key after the last one read */
            snprintf(next, sizeof next, "%s\x01", o->kvs[o->n_kvs - 1].key);
        etcd_result_free(&res);
        if (rc < 0 || !more)
            return rc;
    }
}

/* ---- writes: one txn, retried only as a CAS, re-checked by tag --------- */

typedef struct {
    const etcd_cmp *cmp;
    size_t n_cmp;
    const etcd_op *ok, *fail;
    size_t n_ok, n_fail;
    const char *probe;     /* key whose new value carries tag (NULL: none) */
    int64_t probe_base;    /* probe's mod_revision the txn expects; 0 = creation */
    const uint8_t *tag;
    /* Without a tag (generic records hold the caller's raw bytes): the
     * value and lease the write puts at probe, which tell it instead. */
    const void *val;
    size_t val_len;
    int64_t lease;
} wtxn;

/* Does kv hold what our write put there? By tag, else by value and
 * lease (docs/metadata.md §5.5: a write of the same bytes on the same
 * lease by another client cannot be told apart). */
static bool probe_match(const wtxn *w, const etcd_kv *kv)
{
    if (w->tag)
        return has_tag(kv, w->tag);
    return kv->value_len == w->val_len && kv->lease == w->lease &&
           (w->val_len == 0 || memcmp(kv->value, w->val, w->val_len) == 0);
}

/* Creation: was the key's current incarnation created by our write? */
static int probe_created(meta_etcd *m, const char *op, const wtxn *w, int64_t create_rev,
                         int64_t deadline, int64_t *rev)
{
    etcd_result at;
    const etcd_kv *first = NULL;
    int rc = get_key(m, op, w->probe, create_rev, deadline, &at, &first);
    if (rc == 0) {
        rc = first && first->mod_rev == create_rev && probe_match(w, first);
        *rev = create_rev;
    }
    etcd_result_free(&at);
    return rc;
}

/* CAS: the first change after the expected revision is the one write that
 * won; was it ours? */
static int probe_successor(meta_etcd *m, const char *op, const wtxn *w, int64_t deadline,
                           int64_t *rev)
{
    etcd_event ev;
    int rc = etcd_first_change(m->cli, w->probe, w->probe_base, deadline, &ev);
    if (rc < 0)
        return wrap(rc, op, "re-check of an unknown outcome");
    rc = ev.type == ETCD_EV_PUT && probe_match(w, &ev.kv);
    *rev = ev.kv.mod_rev;
    etcd_kv_free(&ev.kv);
    return rc;
}

/* 1 if our tagged write to w->probe applied (*rev = its revision), 0 if
 * not (yet), < 0 if that cannot be told now. */
static int probe_applied(meta_etcd *m, const char *op, const wtxn *w, int64_t deadline,
                         int64_t *rev)
{
    etcd_result res;
    const etcd_kv *kv = NULL;
    m->n_probes++;
    int rc = get_key(m, op, w->probe, 0, deadline, &res, &kv);
    if (rc < 0)
        return rc;
    if (kv && w->tag && has_tag(kv, w->tag)) { /* a tag is unique: ours */
        *rev = kv->mod_rev;
        rc = 1;
    } else if (w->probe_base == 0) {
        rc = kv ? probe_created(m, op, w, kv->create_rev, deadline, rev) : 0;
    } else {
        rc = kv && kv->mod_rev == w->probe_base ? 0 : probe_successor(m, op, w, deadline, rev);
    }
    etcd_result_free(&res);
    m->n_probe_applied += rc == 1;
    return rc;
}

/* Runs the txn until a definite answer. 0: res->succeeded (applied at
 * *rev) or the failure branch's reads in res. *unknown tells that an
 * earlier attempt's outcome was unknown (for untagged deletes). */
static int run_txn(meta_etcd *m, const char *op, const wtxn *w, int64_t deadline,
                   etcd_result *res, int64_t *rev, bool *unknown)
{
    *unknown = false;
    for (;;) {
        int rc = etcd_txn(m->cli, w->cmp, w->n_cmp, w->ok, w->n_ok, w->fail, w->n_fail, deadline,
                          res);
        m->n_txns++;
        m->n_unknown += rc < 0 && res->maybe_applied;
        if (rc == 0 && res->succeeded)
            *rev = res->revision;
        if (rc == 0 && *unknown && !res->succeeded && w->probe) {
            rc = probe_applied(m, op, w, etcd_deadline(m->cli, 0), rev);
            res->succeeded = rc == 1;
            rc = rc < 0 ? rc : 0;
        }
        if (rc == 0)
            return 0;
        bool again = res->maybe_applied; /* CAS: re-sending is safe */
        if (!again && !(*unknown && rc == WP_EUNAVAILABLE))
            return wrap(rc, op, "txn"); /* a definite answer */
        *unknown = true;
        etcd_result_free(res);
        if (!again || wp__now_ns() >= deadline)
            break;
    }
    if (w->probe) { /* one last look with a fresh budget */
        int rc = probe_applied(m, op, w, etcd_deadline(m->cli, 0), rev);
        if (rc == 1) {
            res->succeeded = true;
            return 0;
        }
    }
    return wp__err(WP_EUNAVAILABLE, "meta etcd %s: outcome unknown, etcd did not answer "
                   "in time (last endpoint %s)", op, etcd_client_endpoint(m->cli));
}

static bool found(const etcd_result *res, size_t i)
{
    return i < res->n_ops && res->ops[i].n_kvs > 0;
}

static int64_t found_rev(const etcd_result *res, size_t i)
{
    return found(res, i) ? res->ops[i].kvs[0].mod_rev : 0;
}

/* ---- store ------------------------------------------------------------- */

static int gen_parse(const etcd_kv *kv, int64_t *val)
{
    char *end = NULL;
    long long v = kv ? strtoll((const char *)kv->value, &end, 10) : -1;
    if (!kv || kv->value_len == 0 || kv->value_len > 19 || *end || v < 0)
        return wp__err(WP_ECORRUPT, "meta etcd: logidgen missing or not a number");
    *val = v;
    return 0;
}

static int store_check(meta_etcd *m, const etcd_result *res)
{
    const etcd_kv *ver = found(res, 0) ? &res->ops[0].kvs[0] : NULL;
    const etcd_kv *gen = found(res, 1) ? &res->ops[1].kvs[0] : NULL;
    if (!ver || strcmp((const char *)ver->value, META_ETCD_SCHEMA) != 0)
        return wp__err(WP_EINVAL, "meta etcd open (%s): schema version %.20s, this build "
                       "supports version %s", m->prefix, ver ? (const char *)ver->value : "?",
                       META_ETCD_SCHEMA);
    int64_t v = 0;
    int rc = gen_parse(gen, &v);
    if (rc == 0) {
        m->gen_val = v;
        m->gen_rev = gen->mod_rev;
    }
    return rc;
}

/* Creates version, instance and logidgen if the store is new, else checks. */
static int store_init(meta_etcd *m)
{
    keybuf kver, kinst, kgen;
    uint8_t rnd[16];
    char inst[33];
    key_fmt(m, kver, "version", 0, 0);
    key_fmt(m, kinst, "instance", 0, 0);
    key_fmt(m, kgen, "logidgen", 0, 0);
    new_tag(rnd);
    for (int i = 0; i < 16; i++)
        snprintf(inst + 2 * i, 3, "%02x", rnd[i]);
    etcd_cmp cmp = {ETCD_CMP_CREATE, ETCD_CMP_EQUAL, kver, 0, NULL, 0};
    etcd_op ok[3] = {{.kind = ETCD_OP_PUT, .key = kver, .value = META_ETCD_SCHEMA, .value_len = 1},
                     {.kind = ETCD_OP_PUT, .key = kinst, .value = inst, .value_len = 32},
                     {.kind = ETCD_OP_PUT, .key = kgen, .value = "0", .value_len = 1}};
    etcd_op fail[2] = {{.kind = ETCD_OP_RANGE, .key = kver}, {.kind = ETCD_OP_RANGE, .key = kgen}};
    wtxn w = {.cmp = &cmp, .n_cmp = 1, .ok = ok, .fail = fail, .n_ok = 3, .n_fail = 2};
    etcd_result res;
    int64_t rev = 0;
    bool unknown;
    int rc = run_txn(m, "open", &w, etcd_deadline(m->cli, 0), &res, &rev, &unknown);
    if (rc == 0 && !res.succeeded)
        rc = store_check(m, &res);
    etcd_result_free(&res);
    return rc;
}

/* ---- logs -------------------------------------------------------------- */

static int name_check(const char *op, const char *name, size_t max)
{
    if (!name || !*name)
        return wp__err(WP_EINVAL, "meta %s: empty name", op);
    if (strnlen(name, max + 1) > max)
        return wp__err(WP_EINVAL, "meta %s: name longer than %zu bytes", op, max);
    return 0;
}

static int gen_refresh(meta_etcd *m, int64_t deadline)
{
    keybuf kgen;
    etcd_result res;
    const etcd_kv *kv;
    key_fmt(m, kgen, "logidgen", 0, 0);
    int rc = get_key(m, "log_create", kgen, 0, deadline, &res, &kv);
    int64_t v = 0;
    if (rc == 0 && (rc = gen_parse(kv, &v)) == 0) {
        pthread_mutex_lock(&m->mu);
        m->gen_val = v;
        m->gen_rev = kv->mod_rev;
        pthread_mutex_unlock(&m->mu);
    }
    etcd_result_free(&res);
    return rc;
}

/* One attempt at creating the log with id logidgen + 1: 0 done, 1 the
 * generator moved (try again), < 0 error. */
static int log_create_once(meta_etcd *m, meta_log *l, int64_t deadline)
{
    keybuf klog, kgen, kid;
    uint8_t val[LOG_VALUE_LEN], idval[VALUE_MAX], tag[TAG_LEN];
    char genval[24];
    pthread_mutex_lock(&m->mu);
    int64_t gen_val = m->gen_val, gen_rev = m->gen_rev;
    pthread_mutex_unlock(&m->mu);
    key_log(m, klog, l->name);
    key_fmt(m, kgen, "logidgen", 0, 0);
    l->log_id = gen_val + 1;
    key_id(m, kid, l->log_id);
    new_tag(tag);
    enc_log(val, l, tag);
    size_t idlen = enc(idval, KIND_ID, NULL, 0, NULL), nlen = strlen(l->name);
    memcpy(idval + idlen, l->name, nlen);
    snprintf(genval, sizeof genval, "%lld", (long long)l->log_id);
    etcd_cmp cmp[2] = {{ETCD_CMP_CREATE, ETCD_CMP_EQUAL, klog, 0, NULL, 0},
                       {ETCD_CMP_MOD, ETCD_CMP_EQUAL, kgen, gen_rev, NULL, 0}};
    etcd_op ok[3] = {{.kind = ETCD_OP_PUT, .key = kgen, .value = genval, .value_len = strlen(genval)},
                     {.kind = ETCD_OP_PUT, .key = klog, .value = val, .value_len = sizeof val},
                     {.kind = ETCD_OP_PUT, .key = kid, .value = idval, .value_len = idlen + nlen}};
    etcd_op fail[2] = {{.kind = ETCD_OP_RANGE, .key = klog}, {.kind = ETCD_OP_RANGE, .key = kgen}};
    wtxn w = {.cmp = cmp, .n_cmp = 2, .ok = ok, .fail = fail, .n_ok = 3, .n_fail = 2,
              .probe = klog, .tag = tag};
    etcd_result res;
    bool unknown;
    int rc = run_txn(m, "log_create", &w, deadline, &res, &l->rev, &unknown);
    if (rc == 0 && res.succeeded) {
        cache_put(m, klog, l->rev, val, sizeof val);
        pthread_mutex_lock(&m->mu);
        if (!unknown && l->rev > m->gen_rev) {
            m->gen_val = l->log_id;
            m->gen_rev = l->rev;
        }
        pthread_mutex_unlock(&m->mu);
    } else if (rc == 0 && found(&res, 0)) {
        rc = wp__err(WP_EEXIST, "meta log_create: log '%s' exists", l->name);
    } else if (rc == 0) {
        int64_t v = 0;
        rc = gen_parse(found(&res, 1) ? &res.ops[1].kvs[0] : NULL, &v);
        pthread_mutex_lock(&m->mu);
        m->gen_val = rc == 0 ? v : m->gen_val;
        m->gen_rev = rc == 0 ? found_rev(&res, 1) : 0;
        pthread_mutex_unlock(&m->mu);
        rc = rc < 0 ? rc : 1;
    }
    etcd_result_free(&res);
    return rc;
}

static int et_log_create(meta *mm, const char *name, int64_t now_ms, meta_log *out)
{
    meta_etcd *m = me(mm);
    int rc = name_check("log_create", name, WP_LOG_NAME_MAX);
    if (rc < 0)
        return rc;
    meta_log l;
    memset(&l, 0, sizeof l);
    strcpy(l.name, name); /* length checked above */
    l.trunc_seg = l.trunc_entry = -1;
    l.created_ms = now_ms;
    int64_t deadline = etcd_deadline(m->cli, 0);
    pthread_mutex_lock(&m->mu);
    bool known = m->gen_rev > 0;
    pthread_mutex_unlock(&m->mu);
    rc = known ? 1 : gen_refresh(m, deadline);
    for (rc = rc < 0 ? rc : 1; rc == 1;) {
        if (wp__now_ns() >= deadline)
            return wp__err(WP_EUNAVAILABLE, "meta log_create %s: logidgen contended until the "
                           "deadline", name);
        rc = log_create_once(m, &l, deadline);
    }
    if (rc == 0 && out)
        *out = l;
    return rc;
}

static int et_log_get(meta *mm, const char *name, meta_log *out)
{
    static const char op[] = "log_get";
    meta_etcd *m = me(mm);
    int rc = name_check(op, name, WP_LOG_NAME_MAX);
    if (rc < 0)
        return rc;
    keybuf k;
    etcd_result res;
    const etcd_kv *kv;
    key_log(m, k, name);
    if ((rc = get_key(m, op, k, 0, 0, &res, &kv)) < 0)
        return rc;
    if (!kv)
        rc = wp__err(WP_ENOENT, "meta %s: no log '%s'", op, name);
    else if ((rc = dec_log(m, op, kv, out)) == 0)
        cache_put(m, k, kv->mod_rev, kv->value, kv->value_len);
    etcd_result_free(&res);
    return rc;
}

static int rev_conflict(const char *op, const char *what, int64_t want, int64_t have)
{
    return wp__err(WP_ECONFLICT, "meta %s %s: expected rev %lld, stored rev %lld", op, what,
                   (long long)want, (long long)have);
}

/* The value stored at key when its rev was `rev` (cache, else a read that
 * also answers ENOENT/ECONFLICT). dec decodes it into out. */
static int load_at(meta_etcd *m, const char *op, const char *key, int64_t rev, int64_t deadline,
                   int (*decode)(const meta_etcd *, const char *, const etcd_kv *, void *),
                   void *out)
{
    uint8_t buf[VALUE_MAX];
    etcd_kv ckv;
    if (cache_get(m, key, rev, buf, &ckv))
        return decode(m, op, &ckv, out);
    etcd_result res;
    const etcd_kv *kv;
    int rc = get_key(m, op, key, 0, deadline, &res, &kv);
    if (rc < 0)
        return rc;
    if (!kv)
        rc = wp__err(WP_ENOENT, "meta %s: no record %s", op, key);
    else if (kv->mod_rev != rev)
        rc = rev_conflict(op, key, rev, kv->mod_rev);
    else
        rc = decode(m, op, kv, out);
    etcd_result_free(&res);
    return rc;
}

static int decode_log(const meta_etcd *m, const char *op, const etcd_kv *kv, void *out)
{
    return dec_log(m, op, kv, out);
}

static int decode_seg(const meta_etcd *m, const char *op, const etcd_kv *kv, void *out)
{
    return dec_seg(m, op, kv, out);
}

/* A CAS put of val at key (expected rev), tagged. 0 (and *rev), or
 * ENOENT/ECONFLICT from the failure branch. */
static int cas_put(meta_etcd *m, const char *op, const char *key, int64_t *rev,
                   const uint8_t *val, size_t len, const uint8_t *tag, int64_t deadline)
{
    etcd_cmp cmp = {ETCD_CMP_MOD, ETCD_CMP_EQUAL, key, *rev, NULL, 0};
    etcd_op ok = {.kind = ETCD_OP_PUT, .key = key, .value = val, .value_len = len};
    etcd_op fail = {.kind = ETCD_OP_RANGE, .key = key};
    wtxn w = {.cmp = &cmp, .n_cmp = 1, .ok = &ok, .fail = &fail, .n_ok = 1, .n_fail = 1,
              .probe = key, .probe_base = *rev, .tag = tag};
    etcd_result res;
    int64_t newrev = 0;
    bool unknown;
    int rc = run_txn(m, op, &w, deadline, &res, &newrev, &unknown);
    if (rc == 0 && res.succeeded) {
        *rev = newrev;
        cache_put(m, key, newrev, val, len);
    } else if (rc == 0 && !found(&res, 0)) {
        rc = wp__err(WP_ENOENT, "meta %s: no record %s", op, key);
    } else if (rc == 0) {
        rc = rev_conflict(op, key, *rev, found_rev(&res, 0));
    }
    etcd_result_free(&res);
    return rc;
}

static int et_log_update(meta *mm, meta_log *l)
{
    static const char op[] = "log_update";
    meta_etcd *m = me(mm);
    int rc = name_check(op, l->name, WP_LOG_NAME_MAX);
    if (rc < 0)
        return rc;
    if (l->epoch < 0 || l->trunc_seg < -1 || l->trunc_entry < -1)
        return wp__err(WP_EINVAL, "meta log_update %s: bad epoch or truncation point", l->name);
    keybuf k;
    meta_log cur;
    uint8_t val[LOG_VALUE_LEN], tag[TAG_LEN];
    int64_t deadline = etcd_deadline(m->cli, 0);
    key_log(m, k, l->name);
    if ((rc = load_at(m, op, k, l->rev, deadline, decode_log, &cur)) < 0)
        return rc;
    cur.epoch = l->epoch;
    cur.trunc_seg = l->trunc_seg;
    cur.trunc_entry = l->trunc_entry;
    new_tag(tag);
    enc_log(val, &cur, tag);
    return cas_put(m, op, k, &l->rev, val, sizeof val, tag, deadline);
}

/* The delete txn of one log: the log key, its id key, segments, readers,
 * upload claims. */
static int log_delete_once(meta_etcd *m, const meta_log *cur, int64_t deadline, bool *gone)
{
    keybuf klog, kid, ksegs, kreaders, kclaims;
    key_log(m, klog, cur->name);
    key_id(m, kid, cur->log_id);
    key_fmt(m, ksegs, "segs/%020lld/", cur->log_id, 0);
    key_fmt(m, kreaders, "readers/%020lld/", cur->log_id, 0);
    key_fmt(m, kclaims, "claims/%020lld/", cur->log_id, 0);
    etcd_cmp cmp = {ETCD_CMP_MOD, ETCD_CMP_EQUAL, klog, cur->rev, NULL, 0};
    etcd_op ok[5] = {{.kind = ETCD_OP_DELETE, .key = klog},
                     {.kind = ETCD_OP_DELETE, .key = kid},
                     {.kind = ETCD_OP_DELETE, .key = ksegs, .prefix = true},
                     {.kind = ETCD_OP_DELETE, .key = kreaders, .prefix = true},
                     {.kind = ETCD_OP_DELETE, .key = kclaims, .prefix = true}};
    etcd_op fail = {.kind = ETCD_OP_RANGE, .key = klog};
    wtxn w = {.cmp = &cmp, .n_cmp = 1, .ok = ok, .fail = &fail, .n_ok = 5, .n_fail = 1};
    etcd_result res;
    int64_t rev;
    bool unknown;
    int rc = run_txn(m, "log_delete", &w, deadline, &res, &rev, &unknown);
    *gone = rc == 0 && (res.succeeded || (unknown && !found(&res, 0)));
    if (rc == 0 && !*gone)
        rc = found(&res, 0) ? rev_conflict("log_delete", cur->name, cur->rev, found_rev(&res, 0))
                            : wp__err(WP_ENOENT, "meta log_delete: no log '%s'", cur->name);
    etcd_result_free(&res);
    return rc;
}

static int et_log_delete(meta *mm, const char *name, int64_t expect_rev)
{
    static const char op[] = "log_delete";
    meta_etcd *m = me(mm);
    int rc = name_check(op, name, WP_LOG_NAME_MAX);
    if (rc < 0)
        return rc;
    int64_t deadline = etcd_deadline(m->cli, 0);
    int64_t first_id = -1; /* the log this call set out to delete */
    for (;;) {
        meta_log cur;
        bool gone = false;
        rc = et_log_get(mm, name, &cur);
        /* Another log under the name now (ids are never reused), or none:
         * the one we meant is gone (our try applied, its answer lost, or
         * another client deleted it); a log created since is not ours. */
        if (first_id >= 0 && (rc == WP_ENOENT || (rc == 0 && cur.log_id != first_id)))
            return 0;
        if (rc < 0)
            return rc;
        first_id = cur.log_id;
        if (expect_rev != 0 && cur.rev != expect_rev)
            return rev_conflict(op, name, expect_rev, cur.rev);
        rc = log_delete_once(m, &cur, deadline, &gone);
        if (gone || rc != WP_ECONFLICT || expect_rev != 0)
            return gone ? 0 : rc;
        if (wp__now_ns() >= deadline) /* unconditional: the log moved, go again */
            return wp__err(WP_EUNAVAILABLE, "meta log_delete %s: contended until the deadline", name);
    }
}

typedef struct {
    char **names;
    size_t n, cap, skip;
    int rc;
} name_list;

static int add_name(void *arg, const etcd_kv *kv)
{
    name_list *nl = arg;
    size_t len = kv->key_len - nl->skip;
    if (len < 1 || len > WP_LOG_NAME_MAX)
        return corrupt("log_list", kv->key, "log name length");
    if (nl->n == nl->cap) {
        size_t cap = nl->cap ? nl->cap * 2 : 16;
        char **p = realloc(nl->names, cap * sizeof *p);
        if (!p)
            return wp__err(WP_ENOMEM, "meta log_list: out of memory");
        nl->names = p;
        nl->cap = cap;
    }
    if (!(nl->names[nl->n] = strndup(kv->key + nl->skip, len)))
        return wp__err(WP_ENOMEM, "meta log_list: out of memory");
    nl->n++;
    return 0;
}

static int et_log_list(meta *mm, const char *prefix, char ***names, size_t *n)
{
    meta_etcd *m = me(mm);
    keybuf k, base;
    *names = NULL;
    *n = 0;
    prefix = prefix ? prefix : "";
    if (strlen(prefix) > WP_LOG_NAME_MAX)
        return 0;
    key_log(m, base, "");
    key_log(m, k, prefix);
    name_list nl = {.skip = strlen(base)};
    int rc = scan(m, "log_list", k, true, add_name, &nl);
    if (rc < 0) {
        wp_free_names(nl.names, nl.n);
        return rc;
    }
    *names = nl.names;
    *n = nl.n;
    return 0;
}

/* ---- segments ---------------------------------------------------------- */

static int seg_check(const char *op, const meta_seg *s)
{
    if (s->log_id < 1 || s->seg_id < 0 || s->state < WP_SEG_ACTIVE || s->state > WP_SEG_TRUNCATED ||
        s->last_entry_id < -1 || s->bytes < 0 || s->epoch < 0 ||
        !meta_seg_placement_valid(s->placement, strnlen(s->placement, sizeof s->placement)))
        return wp__err(WP_EINVAL, "meta %s: bad segment %lld/%lld", op, (long long)s->log_id,
                       (long long)s->seg_id);
    return 0;
}

/* Why a seg_create txn failed, from its failure reads: the guard first. */
static int seg_create_failed(const etcd_result *res, const meta_log *guard, const meta_seg *s)
{
    if (!found(res, 0))
        return wp__err(WP_ENOENT, "meta seg_create: no log '%s'", guard->name);
    if (found_rev(res, 0) != guard->rev)
        return rev_conflict("seg_create", guard->name, guard->rev, found_rev(res, 0));
    if (found(res, 1))
        return wp__err(WP_EEXIST, "meta seg_create: segment %lld/%lld exists",
                       (long long)s->log_id, (long long)s->seg_id);
    return wp__err(WP_ECONFLICT, "meta seg_create: segment %lld/%lld: the store changed",
                   (long long)s->log_id, (long long)s->seg_id);
}

static int et_seg_create(meta *mm, const meta_log *guard, meta_seg *s)
{
    static const char op[] = "seg_create";
    meta_etcd *m = me(mm);
    int rc = name_check(op, guard->name, WP_LOG_NAME_MAX);
    if (rc < 0 || (rc = seg_check(op, s)) < 0)
        return rc;
    if (s->log_id != guard->log_id || guard->rev < 1)
        return wp__err(WP_EINVAL, "meta seg_create: segment of log %lld under guard of log %lld "
                       "(rev %lld)", (long long)s->log_id, (long long)guard->log_id,
                       (long long)guard->rev);
    keybuf klog, kseg;
    uint8_t val[SEG_VALUE_MAX], tag[TAG_LEN], buf[VALUE_MAX];
    etcd_kv ckv;
    meta_log cached;
    key_log(m, klog, guard->name);
    key_seg(m, kseg, s->log_id, s->seg_id);
    if (cache_get(m, klog, guard->rev, buf, &ckv) && dec_log(m, op, &ckv, &cached) == 0 &&
        cached.log_id != guard->log_id)
        return rev_conflict(op, guard->name, guard->rev, guard->rev);
    new_tag(tag);
    size_t vlen = enc_seg(val, s, tag);
    etcd_cmp cmp[2] = {{ETCD_CMP_MOD, ETCD_CMP_EQUAL, klog, guard->rev, NULL, 0},
                       {ETCD_CMP_CREATE, ETCD_CMP_EQUAL, kseg, 0, NULL, 0}};
    etcd_op ok = {.kind = ETCD_OP_PUT, .key = kseg, .value = val, .value_len = vlen};
    etcd_op fail[2] = {{.kind = ETCD_OP_RANGE, .key = klog}, {.kind = ETCD_OP_RANGE, .key = kseg}};
    wtxn w = {.cmp = cmp, .n_cmp = 2, .ok = &ok, .fail = fail, .n_ok = 1, .n_fail = 2,
              .probe = kseg, .tag = tag};
    etcd_result res;
    int64_t rev = 0;
    bool unknown;
    rc = run_txn(m, op, &w, etcd_deadline(m->cli, 0), &res, &rev, &unknown);
    if (rc == 0 && res.succeeded) {
        s->rev = rev;
        cache_put(m, kseg, rev, val, vlen);
    } else if (rc == 0) {
        rc = seg_create_failed(&res, guard, s);
    }
    etcd_result_free(&res);
    return rc;
}

static int et_seg_get(meta *mm, int64_t log_id, int64_t seg_id, meta_seg *out)
{
    static const char op[] = "seg_get";
    meta_etcd *m = me(mm);
    keybuf k;
    etcd_result res;
    const etcd_kv *kv;
    key_seg(m, k, log_id, seg_id);
    int rc = get_key(m, op, k, 0, 0, &res, &kv);
    if (rc < 0)
        return rc;
    if (!kv)
        rc = wp__err(WP_ENOENT, "meta %s: no segment %lld/%lld", op, (long long)log_id,
                     (long long)seg_id);
    else if ((rc = dec_seg(m, op, kv, out)) == 0)
        cache_put(m, k, kv->mod_rev, kv->value, kv->value_len);
    etcd_result_free(&res);
    return rc;
}

/* A growing array of records filled by scan(). */
typedef struct {
    meta_etcd *m;
    const char *op;
    void *arr;
    size_t n, cap, elem;
    int (*decode)(const meta_etcd *, const char *, const etcd_kv *, void *);
} rec_list;

static int add_rec(void *arg, const etcd_kv *kv)
{
    rec_list *rl = arg;
    if (rl->n == rl->cap) {
        size_t cap = rl->cap ? rl->cap * 2 : 16;
        void *p = realloc(rl->arr, cap * rl->elem);
        if (!p)
            return wp__err(WP_ENOMEM, "meta %s: out of memory", rl->op);
        rl->arr = p;
        rl->cap = cap;
    }
    int rc = rl->decode(rl->m, rl->op, kv, (char *)rl->arr + rl->n * rl->elem);
    if (rc == 0 && rl->decode == decode_seg)
        cache_put(rl->m, kv->key, kv->mod_rev, kv->value, kv->value_len);
    rl->n += rc == 0;
    return rc;
}

static int list_recs(meta_etcd *m, rec_list *rl, const char *prefix, void **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    int rc = scan(m, rl->op, prefix, false, add_rec, rl);
    if (rc < 0) {
        free(rl->arr);
        return rc;
    }
    *out = rl->arr;
    *n = rl->n;
    return 0;
}

static int et_seg_list(meta *mm, int64_t log_id, meta_seg **out, size_t *n)
{
    meta_etcd *m = me(mm);
    keybuf k;
    key_fmt(m, k, "segs/%020lld/", log_id, 0);
    rec_list rl = {.m = m, .op = "seg_list", .elem = sizeof(meta_seg), .decode = decode_seg};
    int rc = list_recs(m, &rl, k, (void **)out, n);
    for (size_t i = 0; rc == 0 && i < *n; i++)
        if ((*out)[i].log_id != log_id) {
            free(*out);
            *out = NULL;
            *n = 0;
            rc = corrupt("seg_list", k, "segment of another log");
        }
    return rc;
}

static int et_seg_update(meta *mm, meta_seg *s)
{
    static const char op[] = "seg_update";
    meta_etcd *m = me(mm);
    int rc = seg_check(op, s);
    if (rc < 0)
        return rc;
    keybuf k;
    meta_seg cur;
    uint8_t val[SEG_VALUE_MAX], tag[TAG_LEN];
    int64_t deadline = etcd_deadline(m->cli, 0);
    key_seg(m, k, s->log_id, s->seg_id);
    if ((rc = load_at(m, op, k, s->rev, deadline, decode_seg, &cur)) < 0)
        return rc;
    cur.state = s->state;
    cur.last_entry_id = s->last_entry_id;
    cur.bytes = s->bytes;
    cur.completed_ms = s->completed_ms;
    cur.truncated_ms = s->truncated_ms;
    new_tag(tag);
    size_t vlen = enc_seg(val, &cur, tag);
    return cas_put(m, op, k, &s->rev, val, vlen, tag, deadline);
}

/* Deletes key if it exists (expect_rev 0) or is at expect_rev, and with it
 * the key `also` if set (whether it exists or not). An unknown outcome
 * followed by "gone" counts as done. */
static int delete_key(meta_etcd *m, const char *op, const char *key, int64_t expect_rev,
                      const char *what, const char *also)
{
    etcd_cmp cmp = expect_rev ? (etcd_cmp){ETCD_CMP_MOD, ETCD_CMP_EQUAL, key, expect_rev, NULL, 0}
                              : (etcd_cmp){ETCD_CMP_CREATE, ETCD_CMP_GREATER, key, 0, NULL, 0};
    etcd_op ok[2] = {{.kind = ETCD_OP_DELETE, .key = key}, {.kind = ETCD_OP_DELETE, .key = also}};
    etcd_op fail = {.kind = ETCD_OP_RANGE, .key = key, .keys_only = true};
    wtxn w = {.cmp = &cmp, .n_cmp = 1, .ok = ok, .fail = &fail, .n_ok = also ? 2 : 1, .n_fail = 1};
    etcd_result res;
    int64_t rev;
    bool unknown;
    int rc = run_txn(m, op, &w, etcd_deadline(m->cli, 0), &res, &rev, &unknown);
    if (rc == 0 && !res.succeeded && !(unknown && !found(&res, 0)))
        rc = found(&res, 0) ? rev_conflict(op, what, expect_rev, found_rev(&res, 0))
                            : wp__err(WP_ENOENT, "meta %s: no %s", op, what);
    etcd_result_free(&res);
    return rc;
}

static int et_seg_delete(meta *mm, int64_t log_id, int64_t seg_id, int64_t expect_rev)
{
    meta_etcd *m = me(mm);
    keybuf k;
    char what[64];
    keybuf kc;
    key_seg(m, k, log_id, seg_id);
    key_claim(m, kc, log_id, seg_id); /* the segment's upload claim goes with it */
    snprintf(what, sizeof what, "segment %lld/%lld", (long long)log_id, (long long)seg_id);
    return delete_key(m, "seg_delete", k, expect_rev, what, kc);
}

/* ---- leases ------------------------------------------------------------ */

static int et_lease_grant(meta *mm, int64_t ttl_ms, int64_t *lease_id)
{
    meta_etcd *m = me(mm);
    if (ttl_ms <= 0 || ttl_ms > META_LEASE_TTL_MS_MAX)
        return wp__err(WP_EINVAL, "meta lease_grant: ttl %lld ms out of range (1..%lld)",
                       (long long)ttl_ms, (long long)META_LEASE_TTL_MS_MAX);
    int64_t ttl_s = (ttl_ms + 999) / 1000; /* etcd counts whole seconds: round up */
    int rc = etcd_lease_grant(m->cli, ttl_s, 0, lease_id, NULL);
    return rc < 0 ? wrap(rc, "lease_grant", "") : 0;
}

static int et_lease_keepalive(meta *mm, int64_t lease_id)
{
    meta_etcd *m = me(mm);
    if (lease_id <= 0)
        return wp__err(WP_ENOENT, "meta lease_keepalive: no lease %lld", (long long)lease_id);
    int rc = etcd_lease_keepalive(m->cli, lease_id, 0, NULL);
    return rc < 0 ? wrap(rc, "lease_keepalive", "") : 0;
}

static int et_lease_revoke(meta *mm, int64_t lease_id)
{
    meta_etcd *m = me(mm);
    if (lease_id == 0)
        return wp__err(WP_EINVAL, "meta lease_revoke: lease 0 is 'no lease'");
    int64_t deadline = etcd_deadline(m->cli, 0);
    bool unknown = false, maybe = false;
    int rc;
    /* Revoking twice is harmless, so an unknown outcome is retried; a
     * "not found" after that means the first attempt did it. */
    while ((rc = etcd_lease_revoke(m->cli, lease_id, deadline, &maybe)) < 0 && maybe &&
           wp__now_ns() < deadline)
        unknown = true;
    if (rc == WP_ENOENT && unknown)
        return 0;
    return rc < 0 ? wrap(rc, "lease_revoke", "") : 0;
}

/* ---- readers ----------------------------------------------------------- */

static int et_reader_put(meta *mm, meta_reader *r)
{
    static const char op[] = "reader_put";
    meta_etcd *m = me(mm);
    int rc = name_check(op, r->name, WP_READER_NAME_MAX);
    if (rc < 0)
        return rc;
    if (r->seg_id < 0 || r->entry_id < 0 || r->lease_id < 0)
        return wp__err(WP_EINVAL, "meta reader_put %s: bad position or lease", r->name);
    keybuf kid, kr;
    uint8_t val[READER_VALUE_LEN];
    int64_t f[4] = {r->log_id, r->seg_id, r->entry_id, r->lease_id};
    key_id(m, kid, r->log_id);
    key_reader(m, kr, r->log_id, r->name);
    enc(val, KIND_READER, f, 4, NULL);
    /* An upsert: retrying after an unknown outcome is harmless. */
    etcd_cmp cmp = {ETCD_CMP_CREATE, ETCD_CMP_GREATER, kid, 0, NULL, 0};
    etcd_op ok = {.kind = ETCD_OP_PUT, .key = kr, .value = val, .value_len = sizeof val,
                  .lease = r->lease_id};
    wtxn w = {.cmp = &cmp, .n_cmp = 1, .ok = &ok, .n_ok = 1};
    etcd_result res;
    int64_t rev = 0;
    bool unknown;
    rc = run_txn(m, op, &w, etcd_deadline(m->cli, 0), &res, &rev, &unknown);
    if (rc == WP_ENOENT)
        rc = wp__err(WP_ENOENT, "meta reader_put %s: lease %lld expired or revoked (%s)", r->name,
                     (long long)r->lease_id, wp_errmsg());
    else if (rc == 0 && !res.succeeded)
        rc = wp__err(WP_ENOENT, "meta reader_put %s: no log with id %lld", r->name,
                     (long long)r->log_id);
    else if (rc == 0)
        r->rev = rev;
    etcd_result_free(&res);
    return rc;
}

static int et_reader_delete(meta *mm, int64_t log_id, const char *name)
{
    static const char op[] = "reader_delete";
    meta_etcd *m = me(mm);
    int rc = name_check(op, name, WP_READER_NAME_MAX);
    if (rc < 0)
        return rc;
    keybuf k;
    char what[WP_READER_NAME_MAX + 64];
    key_reader(m, k, log_id, name);
    snprintf(what, sizeof what, "reader '%s' on log %lld", name, (long long)log_id);
    return delete_key(m, op, k, 0, what, NULL);
}

static int decode_reader(const meta_etcd *m, const char *op, const etcd_kv *kv, void *out)
{
    return dec_reader(m, op, kv, out);
}

static int et_reader_list(meta *mm, int64_t log_id, meta_reader **out, size_t *n)
{
    meta_etcd *m = me(mm);
    keybuf k;
    key_fmt(m, k, "readers/%020lld/", log_id, 0);
    rec_list rl = {.m = m, .op = "reader_list", .elem = sizeof(meta_reader), .decode = decode_reader};
    return list_recs(m, &rl, k, (void **)out, n);
}

/* ---- nodes ------------------------------------------------------------- */

/* A node value (meta.h, docs/metadata.md §5.2) whose id is the key's suffix
 * after P nodes/ and whose lease_id is the lease etcd reports for the key. */
static int dec_node(const meta_etcd *m, const char *op, const etcd_kv *kv, meta_node *n)
{
    keybuf base;
    key_node(m, base, "");
    size_t plen = strlen(base), nlen = kv->key_len > plen ? kv->key_len - plen : 0;
    memset(n, 0, sizeof *n);
    if (strncmp(kv->key, base, plen) != 0 || !meta_node_id_valid(kv->key + plen, nlen))
        return corrupt(op, kv->key, "node id");
    const char *why = meta_node_decode(kv->value, kv->value_len, n);
    if (why)
        return corrupt(op, kv->key, why);
    if (n->lease_id != kv->lease)
        return corrupt(op, kv->key, "node lease_id differs from the key's lease");
    if (kv->mod_rev < 1)
        return corrupt(op, kv->key, "no revision");
    memcpy(n->id, kv->key + plen, nlen);
    n->rev = kv->mod_rev;
    return 0;
}

static int decode_node(const meta_etcd *m, const char *op, const etcd_kv *kv, void *out)
{
    return dec_node(m, op, kv, out);
}

static int et_node_put(meta *mm, meta_node *n)
{
    static const char op[] = "node_put";
    meta_etcd *m = me(mm);
    int rc = meta_node_check(op, n);
    if (rc < 0)
        return rc;
    keybuf k;
    uint8_t val[META_NODE_VALUE_MAX];
    size_t len = meta_node_encode(n, val);
    key_node(m, k, n->id);
    /* An upsert without compares: retrying after an unknown outcome is
     * harmless; etcd refuses it (NotFound) if the lease is gone. */
    etcd_op ok = {.kind = ETCD_OP_PUT, .key = k, .value = val, .value_len = len,
                  .lease = n->lease_id};
    wtxn w = {.ok = &ok, .n_ok = 1};
    etcd_result res;
    int64_t rev = 0;
    bool unknown;
    rc = run_txn(m, op, &w, etcd_deadline(m->cli, 0), &res, &rev, &unknown);
    if (rc == WP_ENOENT)
        rc = wp__err(WP_ENOENT, "meta node_put %s: lease %lld expired or revoked (%s)", n->id,
                     (long long)n->lease_id, wp_errmsg());
    else if (rc == 0 && !res.succeeded) /* no compares: cannot fail */
        rc = wp__err(WP_ECORRUPT, "meta node_put %s: etcd reported a txn without compares "
                     "as failed", n->id);
    else if (rc == 0)
        n->rev = rev;
    etcd_result_free(&res);
    return rc;
}

static int et_node_get(meta *mm, const char *node_id, meta_node *out)
{
    static const char op[] = "node_get";
    meta_etcd *m = me(mm);
    int rc = meta_node_id_check(op, node_id);
    if (rc < 0)
        return rc;
    keybuf k;
    etcd_result res;
    const etcd_kv *kv;
    key_node(m, k, node_id);
    if ((rc = get_key(m, op, k, 0, 0, &res, &kv)) < 0)
        return rc;
    if (!kv)
        rc = wp__err(WP_ENOENT, "meta %s: no node '%s'", op, node_id);
    else
        rc = dec_node(m, op, kv, out);
    etcd_result_free(&res);
    return rc;
}

static int et_node_delete(meta *mm, const char *node_id)
{
    static const char op[] = "node_delete";
    meta_etcd *m = me(mm);
    int rc = meta_node_id_check(op, node_id);
    if (rc < 0)
        return rc;
    keybuf k;
    char what[WP_NODE_ID_MAX + 16];
    key_node(m, k, node_id);
    snprintf(what, sizeof what, "node '%s'", node_id);
    return delete_key(m, op, k, 0, what, NULL);
}

static int et_node_list(meta *mm, const char *kind, meta_node **out, size_t *n)
{
    static const char op[] = "node_list";
    meta_etcd *m = me(mm);
    *out = NULL;
    *n = 0;
    if (!kind)
        kind = "";
    if (*kind && !meta_node_kind_valid(kind, strnlen(kind, META_NODE_KIND_MAX + 1)))
        return wp__err(WP_EINVAL, "meta %s: bad kind (1..%d bytes of [a-z0-9_-])", op,
                       META_NODE_KIND_MAX);
    keybuf k;
    key_node(m, k, "");
    rec_list rl = {.m = m, .op = op, .elem = sizeof(meta_node), .decode = decode_node};
    int rc = list_recs(m, &rl, k, (void **)out, n);
    if (rc < 0 || !*kind)
        return rc;
    size_t kept = 0; /* keep the requested kind, in key (= id) order */
    for (size_t i = 0; i < *n; i++)
        if (strcmp((*out)[i].kind, kind) == 0 && kept++ != i)
            (*out)[kept - 1] = (*out)[i];
    *n = kept;
    if (kept == 0) {
        free(*out);
        *out = NULL;
    }
    return 0;
}

/* ---- settings ---------------------------------------------------------- */

/* A setting is the key P<name>; its value is format 1, kind 'V', then the
 * value's bytes (docs/metadata.md §5.2). */
#define SETTING_VALUE_MAX (2 + META_SETTING_VALUE_MAX)

static int dec_setting(const char *op, const etcd_kv *kv, const char *name, char *value,
                       size_t cap)
{
    if (kv->value_len < 2 || kv->value[0] != META_ETCD_FORMAT)
        return corrupt(op, kv->key, "unknown value format");
    if (kv->value[1] != KIND_SETTING || kv->value_len > SETTING_VALUE_MAX)
        return corrupt(op, kv->key, "wrong record kind or length");
    const char *v = (const char *)kv->value + 2;
    size_t len = kv->value_len - 2;
    if (!meta_setting_value_valid(v, len))
        return corrupt(op, kv->key, "setting value not printable");
    return meta_setting_copy(op, name, v, len, value, cap);
}

static int et_setting_get(meta *mm, const char *name, char *value, size_t cap)
{
    static const char op[] = "setting_get";
    meta_etcd *m = me(mm);
    int rc = meta_setting_name_check(op, name);
    if (rc < 0)
        return rc;
    keybuf k;
    etcd_result res;
    const etcd_kv *kv;
    snprintf(k, sizeof k, "%s%s", m->prefix, name);
    if ((rc = get_key(m, op, k, 0, 0, &res, &kv)) < 0)
        return rc;
    if (!kv)
        rc = wp__err(WP_ENOENT, "meta %s: no setting '%s'", op, name);
    else
        rc = dec_setting(op, kv, name, value, cap);
    etcd_result_free(&res);
    return rc;
}

static int et_setting_put(meta *mm, const char *name, const char *value)
{
    static const char op[] = "setting_put";
    meta_etcd *m = me(mm);
    int rc = meta_setting_name_check(op, name);
    if (rc == 0)
        rc = meta_setting_value_check(op, name, value);
    if (rc < 0)
        return rc;
    keybuf k;
    uint8_t val[SETTING_VALUE_MAX];
    size_t len = strlen(value);
    snprintf(k, sizeof k, "%s%s", m->prefix, name);
    val[0] = META_ETCD_FORMAT;
    val[1] = KIND_SETTING;
    memcpy(val + 2, value, len);
    /* An upsert without compares: re-sending after an unknown outcome is
     * harmless. */
    etcd_op ok = {.kind = ETCD_OP_PUT, .key = k, .value = val, .value_len = len + 2};
    wtxn w = {.ok = &ok, .n_ok = 1};
    etcd_result res;
    int64_t rev = 0;
    bool unknown;
    rc = run_txn(m, op, &w, etcd_deadline(m->cli, 0), &res, &rev, &unknown);
    if (rc == 0 && !res.succeeded) /* no compares: cannot fail */
        rc = wp__err(WP_ECORRUPT, "meta %s %s: etcd reported a txn without compares as failed",
                     op, name);
    etcd_result_free(&res);
    return rc;
}

/* ---- upload claims ------------------------------------------------------ */

/* A claim value (meta.h, docs/metadata.md §5.2) whose ids are those of its
 * key and whose lease_id is the lease etcd reports for the key. */
static int dec_claim(const meta_etcd *m, const char *op, const etcd_kv *kv, meta_claim *c)
{
    keybuf k;
    memset(c, 0, sizeof *c);
    const char *why = meta_claim_decode(kv->value, kv->value_len, c);
    if (why)
        return corrupt(op, kv->key, why);
    key_claim(m, k, c->log_id, c->seg_id);
    if (strcmp(k, kv->key) != 0)
        return corrupt(op, kv->key, "claim ids do not match the key");
    if (c->lease_id != kv->lease)
        return corrupt(op, kv->key, "claim lease_id differs from the key's lease");
    if (kv->mod_rev < 1)
        return corrupt(op, kv->key, "no revision");
    c->rev = kv->mod_rev;
    return 0;
}

static int decode_claim(const meta_etcd *m, const char *op, const etcd_kv *kv, void *out)
{
    return dec_claim(m, op, kv, out);
}

/* Why a claim_create txn failed, from its failure reads: the segment first. */
static int claim_create_failed(const meta_etcd *m, const etcd_result *res, const meta_claim *c)
{
    static const char op[] = "claim_create";
    meta_claim cur;
    if (!found(res, 0))
        return wp__err(WP_ENOENT, "meta %s: no segment %lld/%lld", op, (long long)c->log_id,
                       (long long)c->seg_id);
    if (!found(res, 1))
        return wp__err(WP_ECONFLICT, "meta %s: segment %lld/%lld: the store changed", op,
                       (long long)c->log_id, (long long)c->seg_id);
    int rc = dec_claim(m, op, &res->ops[1].kvs[0], &cur);
    if (rc < 0)
        return rc;
    return wp__err(WP_EEXIST, "meta %s: segment %lld/%lld is claimed by '%s' (rev %lld, lease "
                   "%lld)", op, (long long)c->log_id, (long long)c->seg_id, cur.node_id,
                   (long long)cur.rev, (long long)cur.lease_id);
}

static int et_claim_create(meta *mm, meta_claim *c)
{
    static const char op[] = "claim_create";
    meta_etcd *m = me(mm);
    int rc = meta_claim_check(op, c);
    if (rc < 0)
        return rc;
    keybuf kseg, kc;
    uint8_t val[META_CLAIM_VALUE_MAX], tag[TAG_LEN];
    key_seg(m, kseg, c->log_id, c->seg_id);
    key_claim(m, kc, c->log_id, c->seg_id);
    new_tag(tag);
    size_t len = meta_claim_encode(c, tag, val);
    /* A tagged creation: re-sent after an unknown outcome and re-checked
     * by its tag (§5.5). etcd refuses the put (NotFound) if the lease is
     * gone; it checks only the branch that runs, so a live claim is
     * WP_EEXIST whatever the lease. */
    etcd_cmp cmp[2] = {{ETCD_CMP_CREATE, ETCD_CMP_GREATER, kseg, 0, NULL, 0},
                       {ETCD_CMP_CREATE, ETCD_CMP_EQUAL, kc, 0, NULL, 0}};
    etcd_op ok = {.kind = ETCD_OP_PUT, .key = kc, .value = val, .value_len = len,
                  .lease = c->lease_id};
    etcd_op fail[2] = {{.kind = ETCD_OP_RANGE, .key = kseg, .keys_only = true},
                       {.kind = ETCD_OP_RANGE, .key = kc}};
    wtxn w = {.cmp = cmp, .n_cmp = 2, .ok = &ok, .fail = fail, .n_ok = 1, .n_fail = 2,
              .probe = kc, .tag = tag};
    etcd_result res;
    int64_t rev = 0;
    bool unknown;
    rc = run_txn(m, op, &w, etcd_deadline(m->cli, 0), &res, &rev, &unknown);
    if (rc == WP_ENOENT)
        rc = wp__err(WP_ENOENT, "meta %s %lld/%lld: lease %lld expired or revoked (%s)", op,
                     (long long)c->log_id, (long long)c->seg_id, (long long)c->lease_id,
                     wp_errmsg());
    else if (rc == 0 && res.succeeded)
        c->rev = rev;
    else if (rc == 0)
        rc = claim_create_failed(m, &res, c);
    etcd_result_free(&res);
    return rc;
}

static int et_claim_get(meta *mm, int64_t log_id, int64_t seg_id, meta_claim *out)
{
    static const char op[] = "claim_get";
    meta_etcd *m = me(mm);
    int rc = meta_claim_key_check(op, log_id, seg_id);
    if (rc < 0)
        return rc;
    keybuf k;
    etcd_result res;
    const etcd_kv *kv;
    key_claim(m, k, log_id, seg_id);
    if ((rc = get_key(m, op, k, 0, 0, &res, &kv)) < 0)
        return rc;
    if (!kv)
        rc = wp__err(WP_ENOENT, "meta %s: no claim of segment %lld/%lld", op, (long long)log_id,
                     (long long)seg_id);
    else
        rc = dec_claim(m, op, kv, out);
    etcd_result_free(&res);
    return rc;
}

static int et_claim_delete(meta *mm, int64_t log_id, int64_t seg_id, int64_t expect_rev)
{
    static const char op[] = "claim_delete";
    meta_etcd *m = me(mm);
    int rc = meta_claim_key_check(op, log_id, seg_id);
    if (rc < 0)
        return rc;
    if (expect_rev < 0)
        return wp__err(WP_EINVAL, "meta %s: bad expect_rev %lld", op, (long long)expect_rev);
    keybuf k;
    char what[64];
    key_claim(m, k, log_id, seg_id);
    snprintf(what, sizeof what, "claim %lld/%lld", (long long)log_id, (long long)seg_id);
    return delete_key(m, op, k, expect_rev, what, NULL);
}

static int et_claim_list(meta *mm, int64_t log_id, meta_claim **out, size_t *n)
{
    static const char op[] = "claim_list";
    meta_etcd *m = me(mm);
    *out = NULL;
    *n = 0;
    if (log_id < 0)
        return wp__err(WP_EINVAL, "meta %s: bad log_id %lld (0: every log)", op,
                       (long long)log_id);
    keybuf k;
    if (log_id)
        key_fmt(m, k, "claims/%020lld/", log_id, 0);
    else
        key_fmt(m, k, "claims/", 0, 0);
    /* Keys are zero-padded ids: key order is (log_id, seg_id) order, and
     * dec_claim checks each record's ids against its key. */
    rec_list rl = {.m = m, .op = op, .elem = sizeof(meta_claim), .decode = decode_claim};
    return list_recs(m, &rl, k, (void **)out, n);
}

/* ---- generic records (docs/metadata.md §3.7) --------------------------- */

/* A record: the key's suffix after P kv/, the value's raw bytes (copied,
 * if want_value), the lease and revisions etcd reports for the key. */
static int dec_kv(const meta_etcd *m, const char *op, const etcd_kv *kv, meta_kv *out,
                  bool want_value)
{
    keybuf base;
    key_kv(m, base, "");
    size_t plen = strlen(base), klen = kv->key_len > plen ? kv->key_len - plen : 0;
    memset(out, 0, sizeof *out);
    if (strncmp(kv->key, base, plen) != 0)
        return corrupt(op, kv->key, "not a kv record key");
    const char *why = meta_kv_read_check(kv->key + plen, klen, kv->value_len, kv->lease,
                                         kv->mod_rev, kv->create_rev);
    if (why)
        return corrupt(op, kv->key, why);
    memcpy(out->key, kv->key + plen, klen);
    out->key[klen] = '\0';
    out->lease_id = kv->lease;
    out->rev = kv->mod_rev;
    out->create_rev = kv->create_rev;
    if (!want_value)
        return 0;
    if (!(out->value = malloc(kv->value_len + 1)))
        return wp__err(WP_ENOMEM, "meta %s %s: out of memory", op, out->key);
    if (kv->value_len)
        memcpy(out->value, kv->value, kv->value_len);
    out->value[kv->value_len] = '\0';
    out->len = kv->value_len;
    return 0;
}

static int et_kv_get(meta *mm, const char *key, meta_kv *out)
{
    static const char op[] = "kv_get";
    meta_etcd *m = me(mm);
    int rc = meta_kv_key_check(op, key);
    if (rc < 0)
        return rc;
    if (!out)
        return wp__err(WP_EINVAL, "meta %s %s: out is NULL", op, key);
    memset(out, 0, sizeof *out);
    keybuf k;
    etcd_result res;
    const etcd_kv *kv;
    key_kv(m, k, key);
    if ((rc = get_key(m, op, k, 0, 0, &res, &kv)) < 0)
        return rc;
    if (!kv)
        rc = wp__err(WP_ENOENT, "meta %s: no record '%s'", op, key);
    else
        rc = dec_kv(m, op, kv, out, true);
    etcd_result_free(&res);
    return rc;
}

/* Why a conditional kv_put failed, from its failure read. */
static int kv_put_failed(const etcd_result *res, const char *key, int64_t expect_rev)
{
    static const char op[] = "kv_put";
    if (expect_rev == 0 && found(res, 0))
        return wp__err(WP_EEXIST, "meta %s: record '%s' exists (rev %lld)", op, key,
                       (long long)found_rev(res, 0));
    if (expect_rev == 0) /* it existed at the compare, and was gone at the read */
        return wp__err(WP_ECONFLICT, "meta %s: record '%s': the store changed", op, key);
    if (!found(res, 0))
        return wp__err(WP_ENOENT, "meta %s: no record '%s'", op, key);
    return rev_conflict(op, key, expect_rev, found_rev(res, 0));
}

static int et_kv_put(meta *mm, const char *key, const void *value, size_t len,
                     int64_t expect_rev, int64_t lease_id, int64_t *rev_out)
{
    static const char op[] = "kv_put";
    meta_etcd *m = me(mm);
    int rc = meta_kv_put_check(op, key, value, len, expect_rev, lease_id);
    if (rc < 0)
        return rc;
    keybuf k;
    key_kv(m, k, key);
    value = value ? value : "";
    /* Create: create_revision == 0; CAS: mod_revision == expect_rev; both
     * re-sent after an unknown outcome and re-checked by value and lease
     * (§5.5). An upsert has no compare: re-sending it is harmless. etcd
     * refuses the put (NotFound) if the lease is gone; it checks only the
     * branch that runs, so the compare decides first. */
    etcd_cmp cmp = expect_rev == 0
                       ? (etcd_cmp){ETCD_CMP_CREATE, ETCD_CMP_EQUAL, k, 0, NULL, 0}
                       : (etcd_cmp){ETCD_CMP_MOD, ETCD_CMP_EQUAL, k, expect_rev, NULL, 0};
    bool cond = expect_rev >= 0;
    etcd_op ok = {.kind = ETCD_OP_PUT, .key = k, .value = value, .value_len = len,
                  .lease = lease_id};
    etcd_op fail = {.kind = ETCD_OP_RANGE, .key = k, .keys_only = true};
    wtxn w = {.cmp = cond ? &cmp : NULL, .n_cmp = cond, .ok = &ok, .n_ok = 1,
              .fail = cond ? &fail : NULL, .n_fail = cond, .probe = cond ? k : NULL,
              .probe_base = cond ? expect_rev : 0, .val = value, .val_len = len,
              .lease = lease_id};
    etcd_result res;
    int64_t rev = 0;
    bool unknown;
    rc = run_txn(m, op, &w, etcd_deadline(m->cli, 0), &res, &rev, &unknown);
    if (rc == WP_ENOENT)
        rc = wp__err(WP_ENOENT, "meta %s %s: lease %lld expired or revoked (%s)", op, key,
                     (long long)lease_id, wp_errmsg());
    else if (rc == 0 && !res.succeeded)
        rc = cond ? kv_put_failed(&res, key, expect_rev)
                  : wp__err(WP_ECORRUPT, "meta %s %s: etcd reported a txn without compares "
                            "as failed", op, key);
    else if (rc == 0 && rev_out)
        *rev_out = rev;
    etcd_result_free(&res);
    return rc;
}

static int et_kv_delete(meta *mm, const char *key, int64_t expect_rev)
{
    static const char op[] = "kv_delete";
    meta_etcd *m = me(mm);
    int rc = meta_kv_key_check(op, key);
    if (rc < 0)
        return rc;
    if (expect_rev < 0)
        return wp__err(WP_EINVAL, "meta %s %s: bad expect_rev %lld (0: any)", op, key,
                       (long long)expect_rev);
    keybuf k;
    char what[META_KV_KEY_MAX + 16];
    key_kv(m, k, key);
    snprintf(what, sizeof what, "record '%s'", key);
    return delete_key(m, op, k, expect_rev, what, NULL);
}

/* The records kv_list gathers, with its bounds. */
typedef struct {
    meta_etcd *m;
    meta_kv *arr;
    size_t n, cap, bytes;
    const char *prefix;
} kv_acc;

static int add_kv(void *arg, const etcd_kv *kv)
{
    static const char op[] = "kv_list";
    kv_acc *a = arg;
    if (a->n == META_KV_LIST_MAX)
        return wp__err(WP_ETOOBIG, "meta %s '%s': more than %d records", op, a->prefix,
                       META_KV_LIST_MAX);
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 16;
        meta_kv *p = realloc(a->arr, cap * sizeof *p);
        if (!p)
            return wp__err(WP_ENOMEM, "meta %s: out of memory", op);
        a->arr = p;
        a->cap = cap;
    }
    int rc = dec_kv(a->m, op, kv, &a->arr[a->n], true);
    if (rc < 0)
        return rc;
    a->bytes += a->arr[a->n++].len;
    if (a->bytes > META_KV_LIST_BYTES_MAX)
        return wp__err(WP_ETOOBIG, "meta %s '%s': more than %d bytes of values", op, a->prefix,
                       META_KV_LIST_BYTES_MAX);
    return 0;
}

static int et_kv_list(meta *mm, const char *prefix, meta_kv **out, size_t *n)
{
    static const char op[] = "kv_list";
    meta_etcd *m = me(mm);
    *out = NULL;
    *n = 0;
    int rc = meta_kv_prefix_check(op, prefix);
    if (rc < 0)
        return rc;
    kv_acc a = {.m = m, .prefix = prefix ? prefix : ""};
    keybuf k;
    key_kv(m, k, a.prefix);
    /* One range (in pages, at one revision) of P kv/<prefix>: etcd sorts
     * keys bytewise, so the records come sorted by key. */
    if ((rc = scan(m, op, k, false, add_kv, &a)) < 0) {
        meta_kv_free_list(a.arr, a.n);
        return rc;
    }
    *out = a.arr;
    *n = a.n;
    return 0;
}

/* ---- handle ------------------------------------------------------------ */

static void et_close(meta *mm)
{
    meta_etcd *m = me(mm);
    if (!m)
        return;
    etcd_client_free(m->cli);
    pthread_mutex_destroy(&m->mu);
    free(m->cache);
    free(m);
}

/* ---- segment watches (meta_ops.seg_watch) ------------------------------ */

struct meta_watch {
    etcd_watch *w;
    void (*changed)(void *arg);
    void (*failed)(void *arg, int rc, const char *msg);
    void *arg;
};

static void et_watch_events(void *arg, const etcd_event *ev, size_t n)
{
    (void)ev;
    meta_watch *mw = arg;
    if (n > 0)
        mw->changed(mw->arg);
}

static void et_watch_err(void *arg, int rc, const char *msg)
{
    meta_watch *mw = arg;
    if (mw->failed)
        mw->failed(mw->arg, rc, msg);
}

/* Watches every key under prefix key from now on (seg_watch, kv_watch). */
static int watch_prefix(meta_etcd *m, const char *what, const char *key,
                        void (*changed)(void *arg),
                        void (*failed)(void *arg, int rc, const char *msg), void *arg,
                        meta_watch **out)
{
    meta_watch *mw = calloc(1, sizeof *mw);
    if (!mw)
        return wp__err(WP_ENOMEM, "%s watch: out of memory", what);
    *mw = (meta_watch){.changed = changed, .failed = failed, .arg = arg};
    int rc = etcd_watch_start(m->cli, key, true, 0, et_watch_events, et_watch_err, mw, &mw->w);
    if (rc) {
        free(mw);
        return rc;
    }
    *out = mw;
    return WP_OK;
}

static int et_seg_watch(meta *mm, int64_t log_id, void (*changed)(void *arg),
                        void (*failed)(void *arg, int rc, const char *msg), void *arg,
                        meta_watch **out)
{
    meta_etcd *m = me(mm);
    keybuf k;
    key_fmt(m, k, "segs/%020lld/", log_id, 0);
    return watch_prefix(m, "segment", k, changed, failed, arg, out);
}

static int et_kv_watch(meta *mm, const char *prefix, void (*changed)(void *arg),
                       void (*failed)(void *arg, int rc, const char *msg), void *arg,
                       meta_watch **out)
{
    static const char op[] = "kv_watch";
    int rc = meta_kv_prefix_check(op, prefix);
    if (rc < 0)
        return rc;
    if (!changed || !out)
        return wp__err(WP_EINVAL, "meta %s: changed and out are required", op);
    keybuf k;
    key_kv(me(mm), k, prefix ? prefix : "");
    return watch_prefix(me(mm), "record", k, changed, failed, arg, out);
}

static void et_watch_stop(meta_watch *mw)
{
    if (!mw)
        return;
    etcd_watch_stop(mw->w);
    free(mw);
}

static const struct meta_ops etcd_ops = {
    .name = "etcd",
    .seg_watch = et_seg_watch,
    .watch_stop = et_watch_stop,
    .log_create = et_log_create,
    .log_get = et_log_get,
    .log_update = et_log_update,
    .log_delete = et_log_delete,
    .log_list = et_log_list,
    .seg_create = et_seg_create,
    .seg_get = et_seg_get,
    .seg_list = et_seg_list,
    .seg_update = et_seg_update,
    .seg_delete = et_seg_delete,
    .lease_grant = et_lease_grant,
    .lease_keepalive = et_lease_keepalive,
    .lease_revoke = et_lease_revoke,
    .reader_put = et_reader_put,
    .reader_delete = et_reader_delete,
    .reader_list = et_reader_list,
    .close = et_close,
    .node_put = et_node_put,
    .node_get = et_node_get,
    .node_delete = et_node_delete,
    .node_list = et_node_list,
    .setting_get = et_setting_get,
    .setting_put = et_setting_put,
    .claim_create = et_claim_create,
    .claim_get = et_claim_get,
    .claim_delete = et_claim_delete,
    .claim_list = et_claim_list,
    .kv_get = et_kv_get,
    .kv_put = et_kv_put,
    .kv_delete = et_kv_delete,
    .kv_list = et_kv_list,
    .kv_watch = et_kv_watch,
};

static int client_from(const struct wp_config *cfg, etcd_client **cli)
{
    etcd_options o = {.endpoints = cfg->etcd_endpoints,
                      .timeout_ms = cfg->etcd_timeout_ms,
                      .username = cfg->etcd_username,
                      .password = cfg->etcd_password,
                      .ca_file = cfg->etcd_ca_file,
                      .cert_file = cfg->etcd_cert_file,
                      .key_file = cfg->etcd_key_file};
    return etcd_client_new(&o, cli);
}

int meta_etcd_open(const struct wp_config *cfg, meta **out)
{
    *out = NULL;
    size_t plen = strnlen(cfg->meta_prefix, sizeof cfg->meta_prefix);
    if (plen == 0 || plen >= sizeof cfg->meta_prefix)
        return wp__err(WP_EINVAL, "meta etcd: meta.prefix must be 1..%zu bytes",
                       sizeof cfg->meta_prefix - 1);
    meta_etcd *m = calloc(1, sizeof *m);
    cache_slot *cache = calloc(META_ETCD_CACHE_SLOTS, sizeof *cache);
    if (!m || !cache) {
        free(m);
        free(cache);
        return wp__err(WP_ENOMEM, "meta etcd: out of memory");
    }
    m->base.ops = &etcd_ops;
    m->cache = cache;
    pthread_mutex_init(&m->mu, NULL);
    snprintf(m->prefix, sizeof m->prefix, "%s%s", cfg->meta_prefix,
             cfg->meta_prefix[plen - 1] == '/' ? "" : "/");
    int rc = client_from(cfg, &m->cli);
    if (rc == 0)
        rc = store_init(m);
    if (rc < 0) {
        et_close(&m->base);
        return rc;
    }
    *out = &m->base;
    return 0;
}

int meta_etcd_watch_segments(meta *mm, int64_t log_id, int64_t start_rev, etcd_watch_fn fn,
                             etcd_watch_err_fn err_fn, void *arg, etcd_watch **out)
{
    meta_etcd *m = me(mm);
    keybuf k;
    key_fmt(m, k, "segs/%020lld/", log_id, 0);
    return etcd_watch_start(m->cli, k, true, start_rev, fn, err_fn, arg, out);
}

int meta_etcd_decode_seg(meta *mm, const etcd_kv *kv, meta_seg *out)
{
    return dec_seg(me(mm), "decode", kv, out);
}

void meta_etcd_get_stats(meta *mm, meta_etcd_stats *out)
{
    meta_etcd *m = me(mm);
    out->txns = m->n_txns;
    out->unknown = m->n_unknown;
    out->probes = m->n_probes;
    out->probe_applied = m->n_probe_applied;
}

etcd_client *meta_etcd_client(meta *mm) { return me(mm)->cli; }
