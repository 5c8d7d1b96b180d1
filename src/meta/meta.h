/* meta.h — the metadata interface (ARCHITECTURE §6, docs/metadata.md).
 * Every record carries a revision `rev` (etcd's mod_revision); updates are
 * compare-and-swap on it, creations are "create only if absent". Every
 * backend passes tests/conformance/meta_conformance.h.
 * All calls are safe from many threads and many processes. */
#ifndef WP_META_META_H
#define WP_META_META_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/limits.h"

typedef struct meta meta;

typedef struct {
    char name[WP_LOG_NAME_MAX + 1];
    int64_t log_id;      /* assigned by log_create, unique, never reused */
    int64_t epoch;       /* writer epoch; 0 before the first writer */
    int64_t trunc_seg, trunc_entry; /* truncation point (inclusive); -1,-1 none */
    int64_t created_ms;
    int64_t rev;         /* set by the backend */
} meta_log;

/* A segment's placement: printable ASCII without spaces, 0..max bytes. */
#define META_SEG_PLACEMENT_MAX 511

typedef struct {
    int64_t log_id, seg_id;
    int state;             /* WP_SEG_* */
    int64_t last_entry_id; /* -1 if empty or unknown (active) */
    int64_t bytes;         /* valid bytes (completed); 0 while active */
    int64_t epoch;         /* writer epoch that created it */
    int64_t created_ms, completed_ms;
    int64_t truncated_ms;  /* when GC found it wholly truncated (state
                            * TRUNCATED); retention counts from here */
    /* Where its replicas live (storage.type quorum; docs/metadata.md §3.2);
     * "" otherwise. Set at creation, never changed. */
    char placement[META_SEG_PLACEMENT_MAX + 1];
    int64_t rev;
} meta_seg;

typedef struct {
    int64_t log_id;
    char name[WP_READER_NAME_MAX + 1];
    int64_t seg_id, entry_id; /* position: the next entry it will read */
    int64_t lease_id;
    int64_t rev;
} meta_reader;

/* Node registrations (docs/metadata.md §3.4). Bounds of the text fields:
 * an id is 1..WP_NODE_ID_MAX bytes of [A-Za-z0-9._-] (it is part of a key),
 * a kind 1..META_NODE_KIND_MAX bytes of [a-z0-9_-], an address
 * 1..META_NODE_ADDR_MAX printable bytes without spaces (host:port).
 * WP_NODE_ID_MAX is in limits.h (the configuration's node.id too). */
#define META_NODE_KIND_MAX 31
#define META_NODE_ADDR_MAX 255
#define META_NODE_ZONE_MAX 63

typedef struct {
    char id[WP_NODE_ID_MAX + 1];
    char kind[META_NODE_KIND_MAX + 1];  /* "logstore", "streaming", ... */
    char addr[META_NODE_ADDR_MAX + 1];  /* where to reach it: host:port */
    int64_t lease_id;      /* > 0: the lease keeping it alive (required) */
    int64_t registered_ms; /* >= 0: unix ms, set by the caller (start time) */
    char zone[META_NODE_ZONE_MAX + 1]; /* "" none; [A-Za-z0-9._-] */
    int64_t disk_free;     /* >= 0: bytes free, as of this put */
    int64_t load;          /* >= 0: requests in progress, as of this put */
    /* What a LogStore server holds, as of this put (0 for other kinds): */
    int64_t segments;        /* >= 0: segment copies on its disk */
    int64_t upload_segments; /* >= 0: of those, completed and not yet in
                              * object storage (waiting for upload) */
    int64_t upload_bytes;    /* >= 0: their bytes */
    int64_t upload_lag_ms;   /* >= 0: age of the oldest of them since it was
                              * completed; 0 if none */
    int64_t rev;           /* set by the backend */
} meta_node;

/* An upload claim (docs/metadata.md §3.6): which LogStore server is
 * uploading a completed segment to object storage. At most one live claim
 * per segment; it vanishes with its lease. */
typedef struct {
    int64_t log_id, seg_id;             /* the key: the claimed segment */
    char node_id[WP_NODE_ID_MAX + 1];   /* the claimant (node id rules) */
    int64_t lease_id;   /* > 0: the claimant's lease (required) */
    int64_t claimed_ms; /* >= 0: unix ms, set by the claimant */
    int64_t attempt;    /* >= 1: the claimant's count (1 + the last attempt
                         * it saw of this segment); stored as given */
    int64_t rev;        /* set by the backend at creation; claims are never
                         * updated, so it is the claim's generation: unique
                         * in the store, larger for every later claim */
} meta_claim;

/* A generic record (docs/metadata.md §3.7): a key of
 * 1..META_KV_KEY_MAX bytes of [A-Za-z0-9._:/-] (not starting or ending
 * with '/', no "//") holding 0..META_KV_VALUE_MAX arbitrary bytes, for
 * services built on the store (the streaming service's channel
 * assignments, coordinator election, producers' state). */
#define META_KV_KEY_MAX 255
#define META_KV_VALUE_MAX 65536
/* Bounds on one kv_list answer: records, and their values' bytes. */
#define META_KV_LIST_MAX 100000
#define META_KV_LIST_BYTES_MAX (256 * 1024 * 1024)

typedef struct {
    char key[META_KV_KEY_MAX + 1];
    uint8_t *value;     /* owned by the struct (meta_kv_free); len bytes,
                         * then a NUL not counted in len (for text values);
                         * never NULL in a record the store returned */
    size_t len;
    int64_t lease_id;   /* 0: none; else the record vanishes with the lease */
    int64_t rev;        /* revision of its last write (the store's counter) */
    int64_t create_rev; /* revision of its creation; same across updates */
} meta_kv;

typedef struct meta_watch meta_watch;

struct meta_ops {
    const char *name;
    /* Creates a log with a fresh id (epoch 0, no truncation). WP_EEXIST. */
    int (*log_create)(meta *, const char *name, int64_t now_ms, meta_log *out);
    int (*log_get)(meta *, const char *name, meta_log *out); /* WP_ENOENT */
    /* Writes l's epoch/truncation if the stored rev == l->rev, then sets
     * l->rev to the new rev. WP_ECONFLICT if rev differs, WP_ENOENT. */
    int (*log_update)(meta *, meta_log *l);
    /* Deletes the log and its segments, readers and upload claims.
     * expect_rev 0: any. */
    int (*log_delete)(meta *, const char *name, int64_t expect_rev);
    /* Names starting with prefix, sorted; free with wp_free_names. */
    int (*log_list)(meta *, const char *prefix, char ***names, size_t *n);

    /* Creates s if absent AND the log's rev still equals guard->rev (so a
     * writer whose epoch was bumped cannot create segments). WP_EEXIST if
     * the segment exists, WP_ECONFLICT if the log changed. Sets s->rev. */
    int (*seg_create)(meta *, const meta_log *guard, meta_seg *s);
    int (*seg_get)(meta *, int64_t log_id, int64_t seg_id, meta_seg *out);
    /* All segments of a log by id; free(*out). */
    int (*seg_list)(meta *, int64_t log_id, meta_seg **out, size_t *n);
    /* CAS on s->rev; sets s->rev. WP_ECONFLICT, WP_ENOENT. */
    int (*seg_update)(meta *, meta_seg *s);
    /* Deletes the segment and its upload claim, if any. CAS on expect_rev
     * (0: any); WP_ECONFLICT, WP_ENOENT. */
    int (*seg_delete)(meta *, int64_t log_id, int64_t seg_id, int64_t expect_rev);

    /* Leases: keys attached to a lease vanish when it expires or is revoked. */
    int (*lease_grant)(meta *, int64_t ttl_ms, int64_t *lease_id);
    int (*lease_keepalive)(meta *, int64_t lease_id); /* WP_ENOENT if expired */
    int (*lease_revoke)(meta *, int64_t lease_id);

    /* Reader registrations (hold GC below their position while alive).
     * reader_put upserts, attached to r->lease_id (WP_ENOENT if expired). */
    int (*reader_put)(meta *, meta_reader *r);
    int (*reader_delete)(meta *, int64_t log_id, const char *name);
    /* Live registrations of a log; free(*out). */
    int (*reader_list)(meta *, int64_t log_id, meta_reader **out, size_t *n);

    void (*close)(meta *);

    /* Node registrations (LogStore / streaming nodes): upsert attached to
     * n->lease_id (WP_ENOENT if the lease expired); they vanish with it. */
    int (*node_put)(meta *, meta_node *n);
    int (*node_get)(meta *, const char *node_id, meta_node *out); /* WP_ENOENT */
    int (*node_delete)(meta *, const char *node_id);
    int (*node_list)(meta *, const char *kind, meta_node **out, size_t *n); /* kind "" = all; sorted by id; free(*out) */

    /* Store-wide settings (docs/metadata.md §3.5), e.g. `conditionwrite`.
     * A name is 1..META_SETTING_NAME_MAX bytes of [a-z_] and not one of the
     * store's own keys (meta_setting_name_valid); a value is
     * 0..META_SETTING_VALUE_MAX printable ASCII bytes; else WP_EINVAL.
     * setting_get copies the value, NUL-terminated, into value[cap]
     * (WP_ENOENT if absent, WP_ETOOBIG if cap is too small);
     * setting_put upserts. */
    int (*setting_get)(meta *, const char *name, char *value, size_t cap);
    int (*setting_put)(meta *, const char *name, const char *value);

    /* Upload claims (docs/metadata.md §3.6), attached to c->lease_id; a
     * claim vanishes with its lease, its segment (seg_delete) and its log
     * (log_delete). Every field is checked (WP_EINVAL naming it).
     * claim_create, in one transaction: WP_ENOENT if the segment does not
     * exist, WP_EEXIST if it has a live claim (anyone's), WP_ENOENT if the
     * lease expired or was revoked; else creates c and sets c->rev. */
    int (*claim_create)(meta *, meta_claim *c);
    int (*claim_get)(meta *, int64_t log_id, int64_t seg_id, meta_claim *out); /* WP_ENOENT */
    /* Deletes the live claim if its rev == expect_rev (0: any): WP_ENOENT
     * if none, WP_ECONFLICT if it has another rev (left alone). */
    int (*claim_delete)(meta *, int64_t log_id, int64_t seg_id, int64_t expect_rev);
    /* Live claims of log_id (0: every log), sorted by (log_id, seg_id);
     * free(*out). */
    int (*claim_list)(meta *, int64_t log_id, meta_claim **out, size_t *n);

    /* Optional (NULL: the store has no watches; readers poll). Watches
     * every segment record of log_id from now on, on a background thread:
     * changed(arg) runs after each change (at least once per change, in
     * order), failed(arg, rc, msg) once if the watch ends for good (then
     * the caller reads state on every poll). Returns once the watch is in
     * place, so no change after the call is missed. watch_stop ends it
     * (no callback runs after it returns); call it before close. */
    int (*seg_watch)(meta *, int64_t log_id, void (*changed)(void *arg),
                     void (*failed)(void *arg, int rc, const char *msg), void *arg,
                     meta_watch **out);
    void (*watch_stop)(meta_watch *);

    /* Generic records (docs/metadata.md §3.7). Arguments are checked:
     * a bad key, prefix, value length, lease_id or expect_rev is
     * WP_EINVAL naming it; a stored record that breaks the rules is
     * WP_ECORRUPT naming its key. A record attached to a lease vanishes
     * with it (expiry, lease_revoke), as node records and claims do. */
    /* The live record at key into *out (overwritten, not freed; free its
     * value with meta_kv_free). WP_ENOENT if absent or its lease expired. */
    int (*kv_get)(meta *, const char *key, meta_kv *out);
    /* Writes value[len] at key attached to lease_id (0: none; an update
     * may attach, move or detach), in one transaction. expect_rev -1:
     * upsert; 0: create only if absent (WP_EEXIST, nothing stored);
     * > 0: only if the record's rev equals it (WP_ECONFLICT if it
     * differs, WP_ENOENT if absent). Then, a lease_id that expired or
     * was revoked is WP_ENOENT. Sets *rev_out (may be NULL) to the new
     * rev. */
    int (*kv_put)(meta *, const char *key, const void *value, size_t len, int64_t expect_rev,
                  int64_t lease_id, int64_t *rev_out);
    /* Deletes the live record if its rev equals expect_rev (0: any):
     * WP_ENOENT if absent, WP_ECONFLICT if it has another rev (left
     * alone). */
    int (*kv_delete)(meta *, const char *key, int64_t expect_rev);
    /* Every live record whose key starts with prefix (a plain byte
     * prefix: "a/b" lists "a/bc" too, "a/b/" only what is under a/b;
     * "" or NULL: every record), sorted bytewise by key. WP_ETOOBIG
     * beyond META_KV_LIST_MAX records or META_KV_LIST_BYTES_MAX bytes of
     * values. Free with meta_kv_free_list(*out, *n). */
    int (*kv_list)(meta *, const char *prefix, meta_kv **out, size_t *n);
    /* Optional (NULL: no watches; callers poll), like seg_watch: changed
     * (arg) runs on a background thread after each change of a record
     * under prefix (at least once per change), failed(arg, rc, msg)
     * (may be NULL) once if the watch ends for good. Returns once the
     * watch is in place. End it with watch_stop. */
    int (*kv_watch)(meta *, const char *prefix, void (*changed)(void *arg),
                    void (*failed)(void *arg, int rc, const char *msg), void *arg,
                    meta_watch **out);
};

struct meta {
    const struct meta_ops *ops;
};

/* Opens the metadata store cfg->meta_type names ("sqlite": the file
 * cfg->meta_path, by default under cfg->storage_root, which is created;
 * "etcd": cfg->etcd_*). The one place that maps a type name to a backend. */
struct wp_config;
int meta_open(const struct wp_config *cfg, meta **out);

/* ---- node records: checks and value encoding, shared by the backends ---- */

/* A segment placement's text (docs/metadata.md §3.2). */
static inline bool meta_seg_placement_valid(const char *s, size_t len)
{
    if (len > META_SEG_PLACEMENT_MAX)
        return false;
    for (size_t i = 0; i < len; i++)
        if (s[i] < 0x21 || s[i] > 0x7e) /* printable ASCII, no space */
            return false;
    return true;
}

/* min..max bytes of [A-Za-z0-9._-] (node ids, zones). */
static inline bool meta_token_valid(const char *s, size_t len, size_t min, size_t max)
{
    if (len < min || len > max)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return false;
    }
    return true;
}

static inline bool meta_node_id_valid(const char *s, size_t len)
{
    return meta_token_valid(s, len, 1, WP_NODE_ID_MAX);
}

static inline bool meta_node_zone_valid(const char *s, size_t len)
{
    return meta_token_valid(s, len, 0, META_NODE_ZONE_MAX);
}

static inline bool meta_node_kind_valid(const char *s, size_t len)
{
    if (len < 1 || len > META_NODE_KIND_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
            return false;
    }
    return true;
}

static inline bool meta_node_addr_valid(const char *s, size_t len)
{
    if (len < 1 || len > META_NODE_ADDR_MAX)
        return false;
    for (size_t i = 0; i < len; i++)
        if (s[i] < 0x21 || s[i] > 0x7e) /* printable ASCII, no space */
            return false;
    return true;
}

/* Checks a node id argument (NUL-terminated): WP_EINVAL naming it. */
static inline int meta_node_id_check(const char *op, const char *id)
{
    if (!id || !meta_node_id_valid(id, strnlen(id, WP_NODE_ID_MAX + 1)))
        return wp__err(WP_EINVAL, "meta %s: bad node id (1..%d bytes of [A-Za-z0-9._-])", op,
                       WP_NODE_ID_MAX);
    return 0;
}

/* Checks every field of n but rev: WP_EINVAL naming the bad field. */
static inline int meta_node_check(const char *op, const meta_node *n)
{
    int rc = meta_node_id_check(op, n->id);
    if (rc < 0)
        return rc;
    if (!meta_node_kind_valid(n->kind, strnlen(n->kind, sizeof n->kind)))
        return wp__err(WP_EINVAL, "meta %s %s: bad kind (1..%d bytes of [a-z0-9_-])", op, n->id,
                       META_NODE_KIND_MAX);
    if (!meta_node_addr_valid(n->addr, strnlen(n->addr, sizeof n->addr)))
        return wp__err(WP_EINVAL, "meta %s %s: bad addr (1..%d printable bytes, no spaces)", op,
                       n->id, META_NODE_ADDR_MAX);
    if (n->lease_id <= 0)
        return wp__err(WP_EINVAL, "meta %s %s: bad lease_id %lld (a node needs a lease)", op,
                       n->id, (long long)n->lease_id);
    if (n->registered_ms < 0)
        return wp__err(WP_EINVAL, "meta %s %s: bad registered_ms %lld", op, n->id,
                       (long long)n->registered_ms);
    if (!meta_node_zone_valid(n->zone, strnlen(n->zone, sizeof n->zone)))
        return wp__err(WP_EINVAL, "meta %s %s: bad zone (0..%d bytes of [A-Za-z0-9._-])", op,
                       n->id, META_NODE_ZONE_MAX);
    const struct {
        const char *name;
        int64_t v;
    } counts[] = {{"disk_free", n->disk_free},
                  {"load", n->load},
                  {"segments", n->segments},
                  {"upload_segments", n->upload_segments},
                  {"upload_bytes", n->upload_bytes},
                  {"upload_lag_ms", n->upload_lag_ms}};
    for (size_t i = 0; i < sizeof counts / sizeof counts[0]; i++)
        if (counts[i].v < 0)
            return wp__err(WP_EINVAL, "meta %s %s: bad %s %lld (>= 0)", op, n->id,
                           counts[i].name, (long long)counts[i].v);
    return 0;
}

/* The stored value of a node record, the same bytes in both backends
 * (docs/metadata.md §5.2): the format (1 byte), kind 'N', the format's
 * int64 fields (little-endian), the kind's length (1 byte), the kind, the
 * zone's length (1 byte; not in format 1), the zone, the address (the
 * rest). The id is the key. Fields by format:
 *   1: registered_ms, lease_id (no zone; read only)
 *   2: and disk_free, load, and the zone
 *   3: and segments, upload_segments, upload_bytes, upload_lag_ms
 * A record whose format-3 fields are all 0 is written in format 2, so that
 * builds from before format 3 still read it; fields a format lacks read
 * as 0 (zone ""). */
#define META_NODE_FORMAT 3
#define META_NODE_FIELDS_MAX 8
#define META_NODE_VALUE_MAX                                                               \
    (2 + META_NODE_FIELDS_MAX * 8 + 1 + META_NODE_KIND_MAX + 1 + META_NODE_ZONE_MAX + \
     META_NODE_ADDR_MAX)

/* How many int64 fields format fmt (1..META_NODE_FORMAT) has. */
static inline size_t meta_node_fields(int fmt)
{
    return fmt == 1 ? 2 : fmt == 2 ? 4 : META_NODE_FIELDS_MAX;
}

static inline void meta_le64_put(uint8_t *b, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)(v >> (8 * i));
}

static inline uint64_t meta_le64_get(const uint8_t *b)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)b[i] << (8 * i);
    return v;
}

/* Encodes a checked n into buf; returns the length. */
static inline size_t meta_node_encode(const meta_node *n, uint8_t buf[META_NODE_VALUE_MAX])
{
    const int64_t f[META_NODE_FIELDS_MAX] = {
        n->registered_ms, n->lease_id,        n->disk_free,    n->load,
        n->segments,      n->upload_segments, n->upload_bytes, n->upload_lag_ms};
    bool holds = n->segments || n->upload_segments || n->upload_bytes || n->upload_lag_ms;
    int fmt = holds ? META_NODE_FORMAT : 2;
    size_t nf = meta_node_fields(fmt), klen = strlen(n->kind), zlen = strlen(n->zone),
           alen = strlen(n->addr);
    buf[0] = (uint8_t)fmt;
    buf[1] = 'N';
    size_t o = 2;
    for (size_t i = 0; i < nf; i++, o += 8)
        meta_le64_put(buf + o, (uint64_t)f[i]);
    buf[o++] = (uint8_t)klen;
    memcpy(buf + o, n->kind, klen);
    o += klen;
    buf[o++] = (uint8_t)zlen;
    memcpy(buf + o, n->zone, zlen);
    o += zlen;
    memcpy(buf + o, n->addr, alen);
    return o + alen;
}

/* Decodes an untrusted value into out's kind, zone, addr, registered_ms,
 * lease_id and counts (id and rev untouched). NULL if valid, else what is
 * wrong. */
static inline const char *meta_node_decode(const uint8_t *v, size_t len, meta_node *out)
{
    if (len < 2 || v[0] < 1 || v[0] > META_NODE_FORMAT)
        return "unknown value format";
    int fmt = v[0];
    size_t nf = meta_node_fields(fmt), zb = fmt == 1 ? 0 : 1; /* zone length byte */
    size_t min = 2 + nf * 8 + 1 + 1 + zb + 1;                  /* kind, addr >= 1 byte */
    size_t max = 2 + nf * 8 + 1 + META_NODE_KIND_MAX + zb * (1 + META_NODE_ZONE_MAX) +
                 META_NODE_ADDR_MAX;
    if (v[1] != 'N' || len < min || len > max)
        return "wrong record kind or length";
    int64_t f[META_NODE_FIELDS_MAX] = {0};
    size_t o = 2;
    for (size_t i = 0; i < nf; i++, o += 8)
        f[i] = (int64_t)meta_le64_get(v + o);
    size_t klen = v[o++];
    if (klen > len - o)
        return "node kind length";
    const char *kind = (const char *)v + o;
    o += klen;
    size_t zlen = 0;
    if (zb) {
        if (o >= len)
            return "node zone length";
        zlen = v[o++];
        if (zlen > len - o)
            return "node zone length";
    }
    const char *zone = (const char *)v + o, *addr = zone + zlen;
    size_t alen = len - o - zlen;
    if (!meta_node_kind_valid(kind, klen) || !meta_node_addr_valid(addr, alen) ||
        !meta_node_zone_valid(zone, zlen))
        return "node kind, zone or addr";
    if (f[0] < 0 || f[1] <= 0)
        return "node registered_ms or lease_id out of range";
    for (size_t i = 2; i < nf; i++)
        if (f[i] < 0)
            return "node disk_free, load, segments or upload figures out of range";
    memcpy(out->kind, kind, klen);
    out->kind[klen] = '\0';
    memcpy(out->zone, zone, zlen);
    out->zone[zlen] = '\0';
    memcpy(out->addr, addr, alen);
    out->addr[alen] = '\0';
    out->registered_ms = f[0];
    out->lease_id = f[1];
    out->disk_free = f[2];
    out->load = f[3];
    out->segments = f[4];
    out->upload_segments = f[5];
    out->upload_bytes = f[6];
    out->upload_lag_ms = f[7];
    return NULL;
}

/* ---- upload claims: checks and value encoding, shared by the backends ---- */

/* The stored value of a claim, the same layout in both backends
 * (docs/metadata.md §5.2): format 1, kind 'C', log_id, seg_id, lease_id,
 * claimed_ms, attempt (int64 little-endian), a 16-byte write tag (etcd:
 * random per write, to re-check an unknown outcome; SQLite: zeros), then
 * the node id (the rest, 1..WP_NODE_ID_MAX bytes). */
#define META_CLAIM_FORMAT 1
#define META_CLAIM_TAG_OFF (2 + 5 * 8)
#define META_CLAIM_TAG_LEN 16
#define META_CLAIM_VALUE_MIN (META_CLAIM_TAG_OFF + META_CLAIM_TAG_LEN + 1)
#define META_CLAIM_VALUE_MAX (META_CLAIM_TAG_OFF + META_CLAIM_TAG_LEN + WP_NODE_ID_MAX)

/* Checks a claim's key (a segment): WP_EINVAL naming the bad id. */
static inline int meta_claim_key_check(const char *op, int64_t log_id, int64_t seg_id)
{
    if (log_id < 1)
        return wp__err(WP_EINVAL, "meta %s: bad log_id %lld (>= 1)", op, (long long)log_id);
    if (seg_id < 0)
        return wp__err(WP_EINVAL, "meta %s: bad seg_id %lld (>= 0)", op, (long long)seg_id);
    return 0;
}

/* Checks every field of c but rev: WP_EINVAL naming the bad field. */
static inline int meta_claim_check(const char *op, const meta_claim *c)
{
    int rc = meta_claim_key_check(op, c->log_id, c->seg_id);
    if (rc < 0)
        return rc;
    long long l = (long long)c->log_id, s = (long long)c->seg_id;
    if (!meta_node_id_valid(c->node_id, strnlen(c->node_id, sizeof c->node_id)))
        return wp__err(WP_EINVAL, "meta %s %lld/%lld: bad node_id (1..%d bytes of "
                                  "[A-Za-z0-9._-])", op, l, s, WP_NODE_ID_MAX);
    if (c->lease_id <= 0)
        return wp__err(WP_EINVAL, "meta %s %lld/%lld: bad lease_id %lld (a claim needs a lease)",
                       op, l, s, (long long)c->lease_id);
    if (c->claimed_ms < 0)
        return wp__err(WP_EINVAL, "meta %s %lld/%lld: bad claimed_ms %lld", op, l, s,
                       (long long)c->claimed_ms);
    if (c->attempt < 1)
        return wp__err(WP_EINVAL, "meta %s %lld/%lld: bad attempt %lld (>= 1)", op, l, s,
                       (long long)c->attempt);
    return 0;
}

/* Encodes a checked c with tag (NULL: zeros) into buf; returns the length. */
static inline size_t meta_claim_encode(const meta_claim *c, const uint8_t *tag,
                                       uint8_t buf[META_CLAIM_VALUE_MAX])
{
    size_t ilen = strlen(c->node_id);
    buf[0] = META_CLAIM_FORMAT;
    buf[1] = 'C';
    meta_le64_put(buf + 2, (uint64_t)c->log_id);
    meta_le64_put(buf + 10, (uint64_t)c->seg_id);
    meta_le64_put(buf + 18, (uint64_t)c->lease_id);
    meta_le64_put(buf + 26, (uint64_t)c->claimed_ms);
    meta_le64_put(buf + 34, (uint64_t)c->attempt);
    if (tag)
        memcpy(buf + META_CLAIM_TAG_OFF, tag, META_CLAIM_TAG_LEN);
    else
        memset(buf + META_CLAIM_TAG_OFF, 0, META_CLAIM_TAG_LEN);
    memcpy(buf + META_CLAIM_TAG_OFF + META_CLAIM_TAG_LEN, c->node_id, ilen);
    return META_CLAIM_TAG_OFF + META_CLAIM_TAG_LEN + ilen;
}

/* Decodes an untrusted value into out's log_id, seg_id, node_id, lease_id,
 * claimed_ms and attempt (rev untouched). NULL if valid, else what is
 * wrong. The caller checks the ids against the key and the lease against
 * the store's. */
static inline const char *meta_claim_decode(const uint8_t *v, size_t len, meta_claim *out)
{
    if (len < 2 || v[0] != META_CLAIM_FORMAT)
        return "unknown value format";
    if (v[1] != 'C' || len < META_CLAIM_VALUE_MIN || len > META_CLAIM_VALUE_MAX)
        return "wrong record kind or length";
    int64_t log_id = (int64_t)meta_le64_get(v + 2), seg_id = (int64_t)meta_le64_get(v + 10);
    int64_t lease = (int64_t)meta_le64_get(v + 18), at = (int64_t)meta_le64_get(v + 26);
    int64_t attempt = (int64_t)meta_le64_get(v + 34);
    const char *id = (const char *)v + META_CLAIM_TAG_OFF + META_CLAIM_TAG_LEN;
    size_t ilen = len - META_CLAIM_TAG_OFF - META_CLAIM_TAG_LEN;
    if (!meta_node_id_valid(id, ilen))
        return "claim node_id";
    if (log_id < 1 || seg_id < 0 || lease <= 0 || at < 0 || attempt < 1)
        return "claim log_id, seg_id, lease_id, claimed_ms or attempt out of range";
    out->log_id = log_id;
    out->seg_id = seg_id;
    memcpy(out->node_id, id, ilen);
    out->node_id[ilen] = '\0';
    out->lease_id = lease;
    out->claimed_ms = at;
    out->attempt = attempt;
    return NULL;
}

/* ---- settings: checks shared by the backends ----------------------------- */

#define META_SETTING_NAME_MAX 64
#define META_SETTING_VALUE_MAX 256

/* [a-z_]{1,64}, and not a name the store uses for itself (in etcd a
 * setting is the key P<name>, next to P version, P instance, P logidgen;
 * SQLite's kv table has revision and leaseidgen too). */
static inline bool meta_setting_name_valid(const char *s)
{
    static const char *const reserved[] = {"version", "instance", "logidgen", "leaseidgen",
                                           "revision"};
    size_t len = s ? strnlen(s, META_SETTING_NAME_MAX + 1) : 0;
    if (len < 1 || len > META_SETTING_NAME_MAX)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || s[i] == '_'))
            return false;
    for (size_t i = 0; i < sizeof reserved / sizeof *reserved; i++)
        if (strcmp(s, reserved[i]) == 0)
            return false;
    return true;
}

/* 0..256 bytes of printable ASCII (0x20..0x7e). */
static inline bool meta_setting_value_valid(const char *s, size_t len)
{
    if (len > META_SETTING_VALUE_MAX)
        return false;
    for (size_t i = 0; i < len; i++)
        if (s[i] < 0x20 || s[i] > 0x7e)
            return false;
    return true;
}

/* Checks a name argument: WP_EINVAL naming it. */
static inline int meta_setting_name_check(const char *op, const char *name)
{
    if (!meta_setting_name_valid(name))
        return wp__err(WP_EINVAL, "meta %s: bad setting name (1..%d bytes of [a-z_], not a "
                                  "reserved key)", op, META_SETTING_NAME_MAX);
    return 0;
}

/* Checks a value argument: WP_EINVAL. */
static inline int meta_setting_value_check(const char *op, const char *name, const char *value)
{
    if (!value || !meta_setting_value_valid(value, strnlen(value, META_SETTING_VALUE_MAX + 1)))
        return wp__err(WP_EINVAL, "meta %s %s: bad value (0..%d printable ASCII bytes)", op,
                       name, META_SETTING_VALUE_MAX);
    return 0;
}

/* Copies a checked value of len bytes into value[cap]: WP_ETOOBIG if it
 * does not fit with its NUL. */
static inline int meta_setting_copy(const char *op, const char *name, const char *v, size_t len,
                                    char *value, size_t cap)
{
    if (!value || len + 1 > cap)
        return wp__err(WP_ETOOBIG, "meta %s %s: value of %zu bytes does not fit %zu", op, name,
                       len, cap);
    memcpy(value, v, len);
    value[len] = '\0';
    return 0;
}

/* ---- generic records: checks shared by the backends ----------------------- */

static inline void meta_kv_free(meta_kv *kv)
{
    if (!kv)
        return;
    free(kv->value);
    kv->value = NULL;
    kv->len = 0;
}

static inline void meta_kv_free_list(meta_kv *kvs, size_t n)
{
    if (!kvs)
        return;
    for (size_t i = 0; i < n; i++)
        free(kvs[i].value);
    free(kvs);
}

/* A key (prefix false: 1..META_KV_KEY_MAX bytes, not ending with '/') or
 * a prefix (true: 0..META_KV_KEY_MAX bytes, may end with '/'): bytes of
 * [A-Za-z0-9._:/-], not starting with '/', no "//". */
static inline bool meta_kv_key_valid(const char *s, size_t len, bool prefix)
{
    if (len > META_KV_KEY_MAX || (!prefix && len == 0))
        return false;
    if (len > 0 && (s[0] == '/' || (!prefix && s[len - 1] == '/')))
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == ':' || c == '/' || c == '-'))
            return false;
        if (c == '/' && i > 0 && s[i - 1] == '/')
            return false;
    }
    return true;
}

/* Checks a key argument (NUL-terminated): WP_EINVAL naming it. */
static inline int meta_kv_key_check(const char *op, const char *key)
{
    if (!key || !meta_kv_key_valid(key, strnlen(key, META_KV_KEY_MAX + 1), false))
        return wp__err(WP_EINVAL, "meta %s: bad key (1..%d bytes of [A-Za-z0-9._:/-], not "
                                  "starting or ending with '/', no '//')", op, META_KV_KEY_MAX);
    return 0;
}

/* Checks a prefix argument (NULL: ""): WP_EINVAL naming it. */
static inline int meta_kv_prefix_check(const char *op, const char *prefix)
{
    if (prefix && !meta_kv_key_valid(prefix, strnlen(prefix, META_KV_KEY_MAX + 1), true))
        return wp__err(WP_EINVAL, "meta %s: bad prefix (0..%d bytes of [A-Za-z0-9._:/-], not "
                                  "starting with '/', no '//')", op, META_KV_KEY_MAX);
    return 0;
}

/* Checks kv_put's arguments: WP_EINVAL naming the bad one. */
static inline int meta_kv_put_check(const char *op, const char *key, const void *value,
                                    size_t len, int64_t expect_rev, int64_t lease_id)
{
    int rc = meta_kv_key_check(op, key);
    if (rc < 0)
        return rc;
    if (len > META_KV_VALUE_MAX || (!value && len > 0))
        return wp__err(WP_EINVAL, "meta %s %s: bad value (%zu bytes%s; 0..%d)", op, key, len,
                       value ? "" : " at NULL", META_KV_VALUE_MAX);
    if (expect_rev < -1)
        return wp__err(WP_EINVAL, "meta %s %s: bad expect_rev %lld (-1 upsert, 0 create, > 0 "
                                  "CAS)", op, key, (long long)expect_rev);
    if (lease_id < 0)
        return wp__err(WP_EINVAL, "meta %s %s: bad lease_id %lld (0: none)", op, key,
                       (long long)lease_id);
    return 0;
}

/* Checks a record read back (key, length, lease, revisions): NULL if
 * valid, else what is wrong. */
static inline const char *meta_kv_read_check(const char *key, size_t key_len, size_t len,
                                              int64_t lease_id, int64_t rev, int64_t create_rev)
{
    if (!meta_kv_key_valid(key, key_len, false))
        return "key breaks the key rules";
    if (len > META_KV_VALUE_MAX)
        return "value longer than META_KV_VALUE_MAX";
    if (lease_id < 0)
        return "lease_id out of range";
    if (rev < 1 || create_rev < 1 || create_rev > rev)
        return "rev or create_rev out of range";
    return NULL;
}

/* SQLite backend in one file (created if missing; WAL mode; safe across
 * processes). */
int meta_sqlite_open(const char *path, meta **out);

#endif
