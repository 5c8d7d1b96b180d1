/* quorum.c — the QuorumBuffer storage backend (issue 10): a segment's
 * entries live on W LogStore servers (docs/protocol.md) and an append is
 * durable once A of them fsync'd it (ARCHITECTURE §7.1).
 *
 * Placement: each new segment goes on W servers chosen by seg_place, from
 * the LogStore servers registered in metadata (one per zone first, the
 * least loaded first, none that reports no room, those that failed lately
 * last) or from the static list quorum.nodes; the writer records the
 * choice in the segment's metadata (docs/metadata.md §3.2), where every
 * later operation on the segment, in any process, finds it (resolve). A
 * writer whose replica fails or falls silent is told so
 * (seg_writer_degraded) and rolls to a segment placed elsewhere.
 *
 * The logstore layer hands this backend the bytes of the segment format
 * (docs/format.md): the 48-byte header (nothing to send: a replica writes
 * its own, the same), then appends of whole blocks (each block is one ADD
 * to every replica, acked when A answered durable), then the index and
 * footer (COMPLETE at the footer's last entry). Readers read entries
 * (seg_read_entries: READ from a replica, failing over to the next), and
 * recovery follows the quorum rules itself (seg_recover):
 *   1. FENCE at the new epoch on every replica; go on only with at least
 *      W - A + 1 answers (then no old writer can reach A again);
 *   2. the target: from the highest LAC answered, the first entry that
 *      W - A + 1 answers show absent, minus one (a missing answer is
 *      unknown, never absent: it can only raise the target);
 *   3. write the entries up to the target back (ADD at the new epoch) to
 *      the replicas that lack them until A hold them all;
 *   4. COMPLETE at the target on those replicas. */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/err.h"
#include "base/limits.h"
#include "base/metrics.h"
#include "codec/codec.h"
#include "config/config.h"
#include "logstore/segment.h"
#include "meta/meta.h"
#include "net/conn.h"
#include "storage/quorum.h"
#include "storage/s3.h"

#define CONNECT_TIMEOUT_MS 3000
/* Recovery writes entries back to lagging replicas in ADDs of at most this
 * many bytes and entries (read from the source in READs of 4 MiB). */
#define WRITEBACK_BYTES (16 * WP_MiB)
#define WRITEBACK_ENTRIES (PROTO_ENTRIES_MAX / 2)
#define CALL_TIMEOUT_MS 30000
#define RECONNECT_BACKOFF_NS (200 * 1000000LL)
/* With wait_all, how long to wait for the other replicas once a request
 * has its quorum (more answers make a better recovery target). */
#define FAN_MORE_MS 2000
/* A writer idle this long has its LAC sent on its own. */
#define LAC_IDLE_NS (2 * 1000000LL)
#define IN_FLIGHT 1 /* reply.rc while the answer is awaited */
#define NOT_ASKED 2 /* reply.rc of a replica not asked */
/* Servers this client talks to at most (each holds a connection). */
#define NODE_POOL_MAX 256
/* A server that failed is placed last for this long. */
#define AVOID_NS (10 * 1000000000LL)
/* How often a writer looks whether its replicas registered no room. */
#define REG_CHECK_NS (250 * 1000000LL)
/* How old the registered-servers snapshot may be. */
#define REGISTRY_TTL_NS (1000 * 1000000LL)
/* Blocks in one append at most (the logstore layer sends up to 512). */
#define APPEND_BLOCKS_MAX 512
/* Placements remembered (a segment's never changes). */
#define PLACE_CACHE_SLOTS 256

typedef struct {
    char addr[256];
    pthread_mutex_t mu;
    pconn *c;              /* NULL or failed: connect again after the backoff */
    int64_t next_try_ns;
    _Atomic int64_t avoid_until_ns; /* failed lately: placed last until then */
} node;

/* A segment's replicas, in replica order, and its quorums. id[i]: the node
 * id the placement recorded for replica i ("" when it recorded none). */
typedef struct {
    int w, a;
    node *n[QUORUM_W_MAX];
    char id[QUORUM_W_MAX][PROTO_ID_MAX + 1];
} replset;
_Static_assert(PROTO_ID_MAX >= WP_NODE_ID_MAX, "a recorded node id fits replset.id");

typedef struct {
    int64_t log_id, seg_id; /* log_id 0: empty */
    char placement[META_SEG_PLACEMENT_MAX + 1];
} place_slot;

typedef struct quorum_storage {
    storage base;
    /* Object storage of sealed segments (storage.s3.*; issue 11), or NULL:
     * the LogStore servers upload completed segments there, and readers of
     * a SEALED segment read it there (docs/format.md §11). */
    storage *cold;
    int w, a;                     /* for new segments */
    int64_t replica_timeout_ns;   /* quorum.replica_timeout_ms */
    char client_id[64];
    pthread_mutex_t pool_mu;      /* pool, n_pool; registry; places */
    node *pool[NODE_POOL_MAX];
    int n_pool;
    node *statics[QUORUM_STATIC_MAX]; /* quorum.nodes, if set */
    int n_static;
    meta_node *reg;               /* the registered LogStore servers */
    size_t n_reg;
    int64_t reg_at_ns;            /* 0: never listed */
    place_slot places[PLACE_CACHE_SLOTS];
    /* The LAC of an idle writer goes out in a LAC-only ADD (docs/protocol.md
     * §5.2) from this thread; a busy writer's rides on its next ADD. */
    pthread_mutex_t lac_mu; /* writers list, their lac / lac_sent / last_add_ns */
    pthread_cond_t lac_cond;
    struct st_writer *writers;
    pthread_t lac_thr;
    bool lac_started, lac_stop;
} quorum_storage;

/* How a writer's replicas keep up, updated as answers come (the callbacks
 * may outlive the writer: reference counted). */
typedef struct {
    pthread_mutex_t mu;
    int refs;
    int pending[QUORUM_W_MAX];     /* requests awaiting an answer */
    int64_t since_ns[QUORUM_W_MAX]; /* the last progress while some wait */
    int err[QUORUM_W_MAX];         /* the first failure, 0 none */
} health;

struct st_writer {
    quorum_storage *q;
    struct st_writer *next; /* q->writers */
    replset rs;
    health *h;
    int64_t log_id, seg_id, epoch;
    int64_t lac;          /* last entry acked by A (ids in order) */
    int64_t lac_sent;     /* the highest LAC the replicas were sent */
    int64_t last_add_ns;
    int64_t next_entry;
    /* Appends go out in their order k (seg_append_nth: several threads),
     * so that each replica receives a segment's entries in order. */
    pthread_mutex_t seq_mu; /* appends, next_entry, size, header_seen */
    pthread_cond_t seq_cond;
    uint64_t appends;     /* the k of the next append to send */
    uint64_t size;        /* bytes the logstore appended (it counts them) */
    bool header_seen;
    int failed;           /* under lac_mu (the LAC thread reads it) */
    int64_t reg_checked_ns; /* q_seg_writer_degraded: when the registrations were last looked at */
    bool reg_no_room;       /* then: a replica registered no room (draining, disk low) */
};

struct st_reader {
    quorum_storage *q;
    replset rs;           /* w == 0: unknown (a sealed segment's servers may be gone) */
    int64_t log_id, seg_id;
    int pref;             /* the replica tried first */
    int wait_ms;          /* seg_reader_wait: how long the next READ may be held */
    uint8_t *buf;         /* the last batch's records (read from object storage) */
    size_t buf_cap;
    uint8_t *body;        /* the last READ answer's body: its records are the batch */
    struct prefetch *pf;  /* the next READ, sent while the caller reads this batch */
    /* A SEALED segment is read from object storage (q->cold). */
    bool sealed;
    uint64_t cold_bytes;  /* its length, from the record */
    lseg_r *cold_r;       /* open on it, or NULL */
    int64_t cold_next;    /* the entry cold_r is at (-1: seek first) */
};

static quorum_storage *qs(storage *s) { return (quorum_storage *)s; }

/* ---- nodes --------------------------------------------------------------- */

/* The pool's node for addr, added if new; NULL (with the reason) if the
 * pool is full. */
static node *node_for(quorum_storage *q, const char *addr)
{
    if (strlen(addr) >= sizeof q->pool[0]->addr) {
        wp__err(WP_EINVAL, "quorum: server address too long: %.64s...", addr);
        return NULL;
    }
    pthread_mutex_lock(&q->pool_mu);
    node *n = NULL;
    for (int i = 0; i < q->n_pool && !n; i++)
        if (strcmp(q->pool[i]->addr, addr) == 0)
            n = q->pool[i];
    if (!n && q->n_pool < NODE_POOL_MAX && (n = calloc(1, sizeof *n)) != NULL) {
        snprintf(n->addr, sizeof n->addr, "%s", addr);
        pthread_mutex_init(&n->mu, NULL);
        q->pool[q->n_pool++] = n;
    }
    pthread_mutex_unlock(&q->pool_mu);
    if (!n)
        wp__err(WP_ENOMEM, "quorum: more than %d servers, or out of memory", NODE_POOL_MAX);
    return n;
}

static void node_avoid(node *n)
{
    atomic_store(&n->avoid_until_ns, wp__now_ns() + AVOID_NS);
}

static bool node_avoided(node *n, int64_t now)
{
    return atomic_load(&n->avoid_until_ns) > now;
}

/* The node's connection, (re)connecting if its backoff allows; NULL with the
 * reason in wp_errmsg() if it cannot be had now. Holds a reference: the
 * caller must not close it (only quorum_close and a failed one's
 * replacement do, under n->mu). */
static pconn *node_conn(quorum_storage *q, node *n)
{
    pthread_mutex_lock(&n->mu);
    if (n->c && !pconn_alive(n->c)) {
        pconn_close(n->c);
        n->c = NULL;
    }
    if (!n->c && wp__now_ns() >= n->next_try_ns) {
        int64_t ms = q->replica_timeout_ns / 1000000LL;
        if (pconn_open(n->addr, q->client_id, ms < CONNECT_TIMEOUT_MS ? (int)ms : CONNECT_TIMEOUT_MS,
                       &n->c) != WP_OK) {
            n->c = NULL;
            n->next_try_ns = wp__now_ns() + RECONNECT_BACKOFF_NS;
            node_avoid(n);
        }
    } else if (!n->c) {
        wp__err(WP_EUNAVAILABLE, "server %s: reconnecting after a failure (backoff)", n->addr);
    }
    pconn *c = n->c;
    pthread_mutex_unlock(&n->mu);
    return c;
}

/* Replica i's connection, if the server at its address is the one the
 * placement recorded (by the id it gave in HELLO_ANS). Another server
 * there (the replica's disk lost and a new server started in its place)
 * holds no copy: it must not answer for the replica, or its "no copy"
 * would count as "absent" in a recovery and cut acknowledged entries
 * (docs/protocol.md §8). NULL with the reason in wp_errmsg(). */
static pconn *replica_conn(quorum_storage *q, const replset *rs, int i)
{
    pconn *c = node_conn(q, rs->n[i]);
    if (c && rs->id[i][0] && strcmp(pconn_node_id(c), rs->id[i]) != 0) {
        wp__err(WP_EUNAVAILABLE, "server %s is '%s', not '%s', the replica recorded for this "
                "segment", rs->n[i]->addr, pconn_node_id(c), rs->id[i]);
        return NULL;
    }
    return c;
}

/* ---- the registered servers and placements -------------------------------- */

/* Lists the registered LogStore servers again if the snapshot is older
 * than REGISTRY_TTL_NS (or force). Called with pool_mu held. */
static int registry_refresh(quorum_storage *q, bool force)
{
    int64_t now = wp__now_ns();
    meta *m = q->base.meta;
    if (!m || (!force && q->reg_at_ns && now - q->reg_at_ns < REGISTRY_TTL_NS))
        return WP_OK;
    meta_node *list = NULL;
    size_t n = 0;
    int rc = m->ops->node_list(m, "logstore", &list, &n);
    if (rc)
        return rc;
    free(q->reg);
    q->reg = list;
    q->n_reg = n;
    q->reg_at_ns = now;
    return WP_OK;
}

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    return x ^ (x >> 33);
}

static uint64_t str_hash(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 1099511628211ULL;
    return h;
}

typedef struct {
    const meta_node *n;
    bool avoided;
    uint64_t tie; /* spreads segments among equals */
} cand;

static int cand_cmp(const void *pa, const void *pb)
{
    const cand *a = pa, *b = pb;
    if (a->avoided != b->avoided)
        return a->avoided ? 1 : -1;
    if (a->n->load != b->n->load)
        return a->n->load < b->n->load ? -1 : 1;
    /* Free disk in 1 GiB steps: a few MiB more is no reason to crowd one. */
    int64_t fa = a->n->disk_free >> 30, fb = b->n->disk_free >> 30;
    if (fa != fb)
        return fa > fb ? -1 : 1;
    return a->tie < b->tie ? -1 : a->tie > b->tie;
}

/* Appends ",entry" (or the first) to out; false if it does not fit. */
static bool place_add(char *out, size_t cap, size_t *len, const char *id, const char *addr)
{
    int k = snprintf(out + *len, cap - *len, "%s%s%s%s", out[*len - 1] == ':' ? "" : ",",
                     id ? id : "", id ? "@" : "", addr);
    if (k < 0 || (size_t)k >= cap - *len)
        return false;
    *len += (size_t)k;
    return true;
}

static int q_seg_place(storage *st, int64_t log_id, int64_t seg_id, char *out, size_t cap)
{
    quorum_storage *q = qs(st);
    uint64_t seed = mix64((uint64_t)log_id * 0x9e3779b97f4a7c15ULL ^ (uint64_t)seg_id);
    int64_t now = wp__now_ns();
    if (cap > META_SEG_PLACEMENT_MAX + 1)
        cap = META_SEG_PLACEMENT_MAX + 1;
    size_t len = (size_t)snprintf(out, cap, "%d:", q->a);
    if (q->n_static > 0) {
        /* The static list: rotated per segment, those that failed lately last. */
        int start = (int)(seed % (uint64_t)q->n_static), taken = 0;
        for (int pass = 0; pass < 2 && taken < q->w; pass++)
            for (int k = 0; k < q->n_static && taken < q->w; k++) {
                node *n = q->statics[(start + k) % q->n_static];
                if (node_avoided(n, now) != (pass == 1))
                    continue;
                /* Its id too when it said it (HELLO): found by it when it
                 * restarts on another address and is registered. */
                pconn *c = node_conn(q, n);
                const char *id = c ? pconn_node_id(c) : NULL;
                if (id && !meta_node_id_valid(id, strlen(id)))
                    id = NULL;
                if (!place_add(out, cap, &len, id, n->addr))
                    return wp__err(WP_EINVAL, "quorum: the placement of %" PRId64 "/%" PRId64
                                   " does not fit %d bytes", log_id, seg_id,
                                   META_SEG_PLACEMENT_MAX);
                taken++;
            }
        return WP_OK;
    }
    pthread_mutex_lock(&q->pool_mu);
    int rc = registry_refresh(q, true);
    cand *c = rc ? NULL : calloc(q->n_reg ? q->n_reg : 1, sizeof *c);
    size_t nc = 0;
    if (!rc && !c)
        rc = wp__err(WP_ENOMEM, "placement");
    for (size_t i = 0; c && i < q->n_reg; i++) {
        const meta_node *r = &q->reg[i];
        if (r->disk_free <= 0) /* it refuses new data */
            continue;
        bool avoided = false;
        for (int k = 0; k < q->n_pool; k++)
            if (strcmp(q->pool[k]->addr, r->addr) == 0)
                avoided = node_avoided(q->pool[k], now);
        c[nc++] = (cand){r, avoided, mix64(seed ^ str_hash(r->id))};
    }
    if (c)
        qsort(c, nc, sizeof *c, cand_cmp);
    /* One per zone first (in that order), then the rest in order. */
    bool used[64 * QUORUM_W_MAX] = {false};
    int taken = 0;
    if (!rc && (int)nc < q->w)
        rc = wp__err(WP_EQUORUM, "quorum: %d LogStore servers needed for a new segment, %zu "
                     "registered with room (of %zu registered)", q->w, nc, q->n_reg);
    for (int pass = 0; !rc && pass < 2; pass++)
        for (size_t i = 0; i < nc && i < sizeof used && taken < q->w; i++) {
            if (used[i])
                continue;
            if (pass == 0) {
                bool zone_taken = !c[i].n->zone[0];
                for (size_t k = 0; k < i && !zone_taken; k++)
                    zone_taken = used[k] && strcmp(c[k].n->zone, c[i].n->zone) == 0;
                if (zone_taken)
                    continue;
            }
            if (!place_add(out, cap, &len, c[i].n->id, c[i].n->addr)) {
                rc = wp__err(WP_EINVAL, "quorum: the placement of %" PRId64 "/%" PRId64
                             " does not fit %d bytes (long server ids or addresses)", log_id,
                             seg_id, META_SEG_PLACEMENT_MAX);
                break;
            }
            used[i] = true;
            taken++;
        }
    pthread_mutex_unlock(&q->pool_mu);
    free(c);
    return rc;
}

/* The replicas a placement names (docs/metadata.md §3.2), each
 * "id@addr" looked up among the registered servers first. */
static int parse_placement(quorum_storage *q, const char *p, replset *rs)
{
    char *end;
    long a = strtol(p, &end, 10);
    if (end == p || *end != ':' || a < 1 || a > QUORUM_W_MAX)
        return wp__err(WP_ECORRUPT, "quorum: bad placement '%.80s'", p);
    rs->a = (int)a;
    rs->w = 0;
    char buf[META_SEG_PLACEMENT_MAX + 1];
    snprintf(buf, sizeof buf, "%s", end + 1);
    pthread_mutex_lock(&q->pool_mu);
    (void)registry_refresh(q, false); /* unreachable metadata: the recorded addresses */
    char addrs[QUORUM_W_MAX][256];
    int rc = WP_OK;
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t && rc == WP_OK;
         t = strtok_r(NULL, ",", &save)) {
        if (rs->w == QUORUM_W_MAX) {
            rc = wp__err(WP_ECORRUPT, "quorum: placement with more than %d replicas", QUORUM_W_MAX);
            break;
        }
        char *at = strchr(t, '@');
        const char *addr = at ? at + 1 : t;
        rs->id[rs->w][0] = '\0';
        if (at) {
            *at = '\0';
            snprintf(rs->id[rs->w], sizeof rs->id[0], "%s", t);
            for (size_t i = 0; i < q->n_reg; i++)
                if (strcmp(q->reg[i].id, t) == 0)
                    addr = q->reg[i].addr;
        }
        snprintf(addrs[rs->w++], sizeof addrs[0], "%s", addr);
    }
    pthread_mutex_unlock(&q->pool_mu);
    if (rc == WP_OK && !(rs->w >= rs->a && 2 * rs->a > rs->w))
        rc = wp__err(WP_ECORRUPT, "quorum: placement '%.80s': %d replicas, ack %d", p, rs->w, rs->a);
    for (int i = 0; rc == WP_OK && i < rs->w; i++)
        if (!(rs->n[i] = node_for(q, addrs[i])))
            rc = WP_ENOMEM;
    return rc;
}

/* The replicas of segment (log_id, seg_id), from its metadata record. */
static int resolve(quorum_storage *q, int64_t log_id, int64_t seg_id, replset *rs)
{
    place_slot *slot = &q->places[mix64((uint64_t)log_id * 31 + (uint64_t)seg_id) %
                                  PLACE_CACHE_SLOTS];
    char p[META_SEG_PLACEMENT_MAX + 1] = "";
    pthread_mutex_lock(&q->pool_mu);
    if (slot->log_id == log_id && slot->seg_id == seg_id)
        snprintf(p, sizeof p, "%s", slot->placement);
    pthread_mutex_unlock(&q->pool_mu);
    if (!p[0] && q->base.meta) {
        meta_seg s;
        int rc = q->base.meta->ops->seg_get(q->base.meta, log_id, seg_id, &s);
        if (rc && !(rc == WP_ENOENT && q->n_static > 0))
            return rc;
        if (rc == WP_OK && s.placement[0]) {
            snprintf(p, sizeof p, "%s", s.placement);
            pthread_mutex_lock(&q->pool_mu);
            *slot = (place_slot){.log_id = log_id, .seg_id = seg_id};
            snprintf(slot->placement, sizeof slot->placement, "%s", p);
            pthread_mutex_unlock(&q->pool_mu);
        }
    }
    if (p[0])
        return parse_placement(q, p, rs);
    /* No placement recorded: the static list as configured. */
    if (q->n_static < q->w)
        return wp__err(WP_ENOENT, "quorum: segment %" PRId64 "/%" PRId64 " has no placement "
                       "and quorum.nodes lists no servers", log_id, seg_id);
    rs->w = q->w;
    rs->a = q->a;
    for (int i = 0; i < q->w; i++) {
        rs->n[i] = q->statics[i];
        rs->id[i][0] = '\0';
    }
    return WP_OK;
}

/* ---- one request to every replica, answers collected ------------------- */

typedef struct {
    int rc;               /* 0, a WP_E* code, IN_FLIGHT or NOT_ASKED */
    proto_msg ans;        /* decoded; in a snapshot only its scalar fields are valid */
    uint8_t *body;        /* what ans points into (shared state only) */
    char err[PROTO_ERRMSG_MAX + 64];
} reply;

/* The answers as they come: shared by the caller and the callbacks of the
 * requests in flight, freed by whoever lets go last, so that the caller
 * need not wait for a slow replica once it has what it needs. */
typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cond;
    int refs;    /* the caller's + one per request in flight */
    int pending; /* requests in flight */
    health *h;   /* NULL, or the writer's, told of each answer (a reference) */
    reply r[QUORUM_W_MAX];
} fan_shared;

/* What the caller keeps: a copy of the answers when it stopped waiting
 * (IN_FLIGHT: no answer by then, its outcome unknown). */
typedef struct {
    reply r[QUORUM_W_MAX];
} fanout;

typedef struct {
    fan_shared *f;
    int i;
} fan_arg;

static health *health_new(void)
{
    health *h = calloc(1, sizeof *h);
    if (h) {
        pthread_mutex_init(&h->mu, NULL);
        h->refs = 1;
    }
    return h;
}

static health *health_ref(health *h)
{
    if (h) {
        pthread_mutex_lock(&h->mu);
        h->refs++;
        pthread_mutex_unlock(&h->mu);
    }
    return h;
}

static void health_unref(health *h)
{
    if (!h)
        return;
    pthread_mutex_lock(&h->mu);
    bool last = --h->refs == 0;
    pthread_mutex_unlock(&h->mu);
    if (last) {
        pthread_mutex_destroy(&h->mu);
        free(h);
    }
}

/* A request to replica i went out (rc 0) or could not (rc: its failure). */
static void health_sent(health *h, int i, int rc)
{
    if (!h)
        return;
    pthread_mutex_lock(&h->mu);
    if (rc && !h->err[i])
        h->err[i] = rc;
    if (!rc && h->pending[i]++ == 0)
        h->since_ns[i] = wp__now_ns();
    pthread_mutex_unlock(&h->mu);
}

static void health_answered(health *h, int i, int rc)
{
    if (!h)
        return;
    pthread_mutex_lock(&h->mu);
    h->pending[i]--;
    h->since_ns[i] = wp__now_ns();
    if (rc && !h->err[i])
        h->err[i] = rc;
    pthread_mutex_unlock(&h->mu);
}

static void fan_unref_locked(fan_shared *f, int w)
{
    bool last = --f->refs == 0;
    pthread_mutex_unlock(&f->mu);
    if (!last)
        return;
    for (int i = 0; i < w; i++)
        free(f->r[i].body);
    health_unref(f->h);
    pthread_mutex_destroy(&f->mu);
    pthread_cond_destroy(&f->cond);
    free(f);
}

static void fan_cb(void *arg, int rc, const proto_frame *fr)
{
    fan_arg *fa = arg;
    fan_shared *f = fa->f;
    int fa_i = fa->i;
    reply *r = &f->r[fa_i];
    free(fa);
    pthread_mutex_lock(&f->mu);
    r->rc = rc;
    if (rc)
        snprintf(r->err, sizeof r->err, "%s", wp_errmsg());
    if (rc == WP_OK && (r->body = malloc(fr->h.body_len ? fr->h.body_len : 1)) != NULL) {
        memcpy(r->body, fr->body, fr->h.body_len);
        if (proto_decode(&fr->h, r->body, &r->ans) != WP_OK)
            r->rc = WP_ECORRUPT;
    } else if (rc == WP_OK) {
        r->rc = WP_ENOMEM;
    }
    f->pending--;
    health_answered(f->h, fa_i, r->rc);
    pthread_cond_broadcast(&f->cond);
    fan_unref_locked(f, QUORUM_W_MAX);
}

/* True when enough answered OK, or can no longer (counted under f->mu). */
static bool fan_decided(const fan_shared *f, int w, int enough)
{
    int ok = 0, open = 0;
    for (int i = 0; i < w; i++) {
        if (f->r[i].rc == WP_EFENCED) /* a newer writer owns it: nothing more to wait for */
            return true;
        ok += f->r[i].rc == WP_OK;
        open += f->r[i].rc == WP_OK || f->r[i].rc == IN_FLIGHT;
    }
    return ok >= enough || open < enough;
}

static bool wait_until(fan_shared *f, int64_t due_ns)
{
    struct timespec ts = {due_ns / 1000000000LL, due_ns % 1000000000LL};
    return pthread_cond_timedwait(&f->cond, &f->mu, &ts) == 0;
}

/* Sends m (or ms[i] to replica i; NULL: not asked) to every replica of
 * rs, without waiting: the answers collect in the result (fan_wait takes
 * them). h (may be NULL) hears of every request and answer. NULL if out of
 * memory (nothing sent).
 *
 * A send never waits on one server while others can take the request: a
 * server whose socket buffer is full (it reads slower than we write) is
 * skipped, and for an ADD it then misses this one and refuses the next
 * (a gap): the writer's segment is degraded and it rolls, acked by the
 * others meanwhile. But when fewer than `need` servers took it that way,
 * skipping would fail the request although the servers are only slow (a
 * busy machine): then the skipped ones are sent to with a wait (at most
 * SEND_WAIT_MS each, in pconn_send), until `need` have it. */
static int send_one(quorum_storage *q, const replset *rs, health *h, fan_shared *f, int i,
                    const proto_msg *mi, bool wait)
{
    pconn *c = replica_conn(q, rs, i);
    fan_arg *fa = c ? malloc(sizeof *fa) : NULL;
    int rc = c ? (fa ? WP_OK : wp__err(WP_ENOMEM, "request")) : WP_EUNAVAILABLE;
    pthread_mutex_lock(&f->mu);
    f->r[i].rc = IN_FLIGHT;
    if (rc == WP_OK) {
        *fa = (fan_arg){f, i};
        f->pending++;
        f->refs++;
    }
    pthread_mutex_unlock(&f->mu);
    if (rc == WP_OK &&
        (rc = wait ? pconn_send(c, mi, fan_cb, fa) : pconn_send_nowait(c, mi, fan_cb, fa)) != WP_OK) {
        free(fa);
        pthread_mutex_lock(&f->mu);
        f->pending--;
        f->refs--;
        pthread_mutex_unlock(&f->mu);
    }
    if (rc == WP_EAGAIN && !wait)
        return rc; /* the caller decides: skip it, or send again with a wait */
    health_sent(h, i, rc);
    if (rc) {
        pthread_mutex_lock(&f->mu);
        f->r[i].rc = rc;
        snprintf(f->r[i].err, sizeof f->r[i].err, "%s", wp_errmsg());
        pthread_mutex_unlock(&f->mu);
    }
    return rc;
}

static fan_shared *fan_send(quorum_storage *q, const replset *rs, health *h, const proto_msg *m,
                            const proto_msg *const *ms, int need)
{
    fan_shared *f = calloc(1, sizeof *f);
    if (!f) {
        wp__err(WP_ENOMEM, "request");
        return NULL;
    }
    f->h = health_ref(h);
    pthread_mutex_init(&f->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&f->cond, &ca);
    pthread_condattr_destroy(&ca);
    f->refs = 1;
    for (int i = 0; i < QUORUM_W_MAX; i++)
        f->r[i] = (reply){.rc = NOT_ASKED};
    bool full[QUORUM_W_MAX] = {false};
    int sent = 0;
    for (int i = 0; i < rs->w; i++) {
        const proto_msg *mi = ms ? ms[i] : m;
        if (!mi)
            continue;
        int rc = send_one(q, rs, h, f, i, mi, false);
        full[i] = rc == WP_EAGAIN;
        sent += rc == WP_OK;
    }
    for (int i = 0; i < rs->w; i++) {
        if (!full[i])
            continue;
        const proto_msg *mi = ms ? ms[i] : m;
        if (sent < need) { /* too few took it without waiting: wait for this one */
            sent += send_one(q, rs, h, f, i, mi, true) == WP_OK;
            continue;
        }
        health_sent(h, i, WP_EAGAIN); /* skipped: it misses this request */
        pthread_mutex_lock(&f->mu);
        f->r[i].rc = WP_EAGAIN;
        snprintf(f->r[i].err, sizeof f->r[i].err, "%s", "send: the server is not reading "
                 "(its buffer is full); skipped, the others have enough");
        pthread_mutex_unlock(&f->mu);
    }
    return f;
}

/* Waits until `enough` of f's requests answered OK or cannot (at most
 * CALL_TIMEOUT_MS), then, with wait_all, up to FAN_MORE_MS more for the
 * others; *out gets the answers as they stand then. Lets go of f. */
static void fan_wait(fan_shared *f, const replset *rs, fanout *out, int enough, bool wait_all)
{
    if (!f) {
        for (int i = 0; i < QUORUM_W_MAX; i++)
            out->r[i] = (reply){.rc = i < rs->w ? WP_ENOMEM : NOT_ASKED};
        return;
    }
    int64_t due = wp__now_ns() + CALL_TIMEOUT_MS * 1000000LL;
    pthread_mutex_lock(&f->mu);
    while (f->pending > 0 && !fan_decided(f, rs->w, enough) && wp__now_ns() < due)
        wait_until(f, due);
    if (wait_all) {
        int64_t more = wp__now_ns() + FAN_MORE_MS * 1000000LL;
        while (f->pending > 0 && wp__now_ns() < more)
            wait_until(f, more);
    }
    for (int i = 0; i < QUORUM_W_MAX; i++) {
        out->r[i] = f->r[i];
        out->r[i].body = NULL; /* ans's pointers are not to be used */
    }
    fan_unref_locked(f, QUORUM_W_MAX);
}

/* For a question "do you have it?" (OK: yes, WP_ENOENT: no): waits until
 * a replica says yes, or `enough` said no, or timeout_ns passed. An acked
 * entry is on A replicas, so A "no"s mean nothing was ever acked there. */
static void fan_wait_present(fan_shared *f, const replset *rs, fanout *out, int enough,
                             int64_t timeout_ns)
{
    if (!f) {
        fan_wait(f, rs, out, enough, false);
        return;
    }
    int64_t due = wp__now_ns() + timeout_ns;
    pthread_mutex_lock(&f->mu);
    for (;;) {
        int yes = 0, no = 0;
        for (int i = 0; i < rs->w; i++) {
            yes += f->r[i].rc == WP_OK;
            no += f->r[i].rc == WP_ENOENT;
        }
        if (yes > 0 || no >= enough || f->pending == 0 || wp__now_ns() >= due)
            break;
        wait_until(f, due);
    }
    for (int i = 0; i < QUORUM_W_MAX; i++) {
        out->r[i] = f->r[i];
        out->r[i].body = NULL;
    }
    fan_unref_locked(f, QUORUM_W_MAX);
}

/* fan_send, then fan_wait. */
static void fan_out(quorum_storage *q, const replset *rs, health *h, const proto_msg *m,
                    const proto_msg *const *ms, fanout *out, int enough, bool wait_all)
{
    fan_wait(fan_send(q, rs, h, m, ms, enough), rs, out, enough, wait_all);
}

/* A message naming every replica's outcome, for a failed quorum. */
static int quorum_err(const replset *rs, const fanout *f, int rc, const char *what, int need)
{
    char msg[1024];
    size_t n = (size_t)snprintf(msg, sizeof msg, "%s: %d of %d replicas needed;", what, need, rs->w);
    for (int i = 0; i < rs->w && n < sizeof msg; i++)
        n += (size_t)snprintf(msg + n, sizeof msg - n, " %s: %s%s%s%s;", rs->n[i]->addr,
                              f->r[i].rc == WP_OK       ? "ok"
                              : f->r[i].rc == IN_FLIGHT ? "no answer yet"
                              : f->r[i].rc == NOT_ASKED ? "not asked"
                                                        : wp_strerror(f->r[i].rc),
                              f->r[i].rc < 0 ? " (" : "", f->r[i].rc < 0 ? f->r[i].err : "",
                              f->r[i].rc < 0 ? ")" : "");
    if (n >= sizeof msg)
        n = sizeof msg - 1;
    return wp__err(rc, "%s", msg);
}

/* The first EFENCED among the answers, if any (a newer writer owns it). */
static int fenced_among(const replset *rs, const fanout *f)
{
    for (int i = 0; i < rs->w; i++)
        if (f->r[i].rc == WP_EFENCED)
            return wp__err(WP_EFENCED, "%s: %s", rs->n[i]->addr, f->r[i].err);
    return WP_OK;
}

/* Answers OK among rs's replicas. */
static int count_ok(const replset *rs, const fanout *f)
{
    int ok = 0;
    for (int i = 0; i < rs->w; i++)
        ok += f->r[i].rc == WP_OK;
    return ok;
}

/* ---- writing --------------------------------------------------------------- */

static int q_seg_create(storage *st, int64_t log_id, int64_t seg_id, int64_t epoch,
                        st_writer **out)
{
    /* Nothing to send yet: a replica creates its copy with the first ADD
     * (or FENCE), owned by that epoch. The replicas are the ones the
     * segment's record names (the writer recorded seg_place's answer). */
    quorum_storage *q = qs(st);
    st_writer *w = calloc(1, sizeof *w);
    if (!w)
        return wp__err(WP_ENOMEM, "quorum writer");
    *w = (st_writer){.q = q, .log_id = log_id, .seg_id = seg_id, .epoch = epoch, .lac = -1,
                     .lac_sent = -1};
    int rc = resolve(q, log_id, seg_id, &w->rs);
    if (rc == WP_OK && !(w->h = health_new()))
        rc = wp__err(WP_ENOMEM, "quorum writer");
    if (rc) {
        free(w);
        return rc;
    }
    /* Created means new (storage.h): a replica that has the segment
     * already (another metadata store's writer, or a forgotten one) says
     * so, and its entries are not for us to append to. Metadata's
     * create-if-absent is the real guard; this catches what it cannot see.
     * A replica that does not answer cannot tell: its ADDs will. */
    proto_msg m = {.type = PROTO_READ_LAC};
    m.u.read_lac = (proto_read_lac){.log_id = log_id, .segment_id = seg_id};
    fanout f;
    fan_wait_present(fan_send(q, &w->rs, NULL, &m, NULL, w->rs.a), &w->rs, &f, w->rs.a,
                     q->replica_timeout_ns);
    for (int i = 0; i < w->rs.w && rc == WP_OK; i++)
        if (f.r[i].rc == WP_OK)
            rc = wp__err(WP_EEXIST, "segment %" PRId64 "/%" PRId64 " exists on %s (epoch %" PRId64
                         " creates it)", log_id, seg_id, w->rs.n[i]->addr, epoch);
    if (rc) {
        health_unref(w->h);
        free(w);
        return rc;
    }
    pthread_mutex_init(&w->seq_mu, NULL);
    pthread_cond_init(&w->seq_cond, NULL);
    pthread_mutex_lock(&q->lac_mu);
    w->next = q->writers;
    q->writers = w;
    pthread_mutex_unlock(&q->lac_mu);
    *out = w;
    return WP_OK;
}

static int q_seg_reopen(storage *st, int64_t log_id, int64_t seg_id, int64_t epoch, uint64_t len,
                        st_writer **out)
{
    (void)st, (void)log_id, (void)seg_id, (void)epoch, (void)len, (void)out;
    return wp__err(WP_ENOTSUP, "quorum storage: segments are recovered by seg_recover");
}

static int writer_failed(st_writer *w)
{
    pthread_mutex_lock(&w->q->lac_mu);
    int rc = w->failed;
    pthread_mutex_unlock(&w->q->lac_mu);
    return rc;
}

static int writer_fail(st_writer *w, int rc)
{
    pthread_mutex_lock(&w->q->lac_mu); /* the LAC thread reads it */
    if (!w->failed)
        w->failed = rc;
    pthread_mutex_unlock(&w->q->lac_mu);
    pthread_mutex_lock(&w->seq_mu); /* appends waiting for their turn give up */
    pthread_cond_broadcast(&w->seq_cond);
    pthread_mutex_unlock(&w->seq_mu);
    return rc;
}

/* Sends one block: ADD to every replica (called in append order, under
 * seq_mu). *f collects the answers; *last is its last entry. */
static int add_send(st_writer *w, const uint8_t *b, size_t len, fan_shared **f, int64_t *last)
{
    quorum_storage *q = w->q;
    blk_header h;
    if (len < BLK_HEADER_SIZE || blk_header_decode(b, &h) != WP_OK ||
        len != BLK_HEADER_SIZE + h.records_len)
        return wp__err(WP_EINVAL, "quorum storage: an append that is not a block");
    if (h.codec != BLK_CODEC_NONE) /* ADDs carry records (lseg_set_codec) */
        return wp__err(WP_EINVAL, "quorum storage: a compressed block");
    if (h.first_entry_id != w->next_entry)
        return wp__err(WP_EINVAL, "quorum storage: block from entry %" PRId64 ", expected %" PRId64,
                       h.first_entry_id, w->next_entry);
    pthread_mutex_lock(&q->lac_mu);
    int64_t lac = w->lac;
    w->lac_sent = lac; /* it rides on this ADD */
    w->last_add_ns = wp__now_ns();
    pthread_mutex_unlock(&q->lac_mu);
    proto_msg m = {.type = PROTO_ADD};
    m.u.add = (proto_add){.log_id = w->log_id, .segment_id = w->seg_id, .epoch = w->epoch,
                          .first_entry_id = h.first_entry_id, .lac = lac,
                          .n_entries = h.n_entries, .records = b + BLK_HEADER_SIZE,
                          .records_len = h.records_len,
                          /* the frames' CRC from the block's: no pass over the records */
                          .records_crc_known = true, .records_crc = h.records_crc};
    if (!(*f = fan_send(q, &w->rs, w->h, &m, NULL, w->rs.a)))
        return WP_ENOMEM;
    wp__metric_add(M_QUORUM_ADDS, w->rs.w);
    *last = h.first_entry_id + h.n_entries - 1;
    w->next_entry = *last + 1;
    return WP_OK;
}

/* Durable once A replicas answered that they hold up to `last`. */
static int add_wait(st_writer *w, fan_shared *fs, int64_t last)
{
    fanout f;
    fan_wait(fs, &w->rs, &f, w->rs.a, false);
    int ok = 0;
    for (int i = 0; i < w->rs.w; i++)
        ok += f.r[i].rc == WP_OK && f.r[i].ans.u.add_ans.last_durable >= last;
    int rc = fenced_among(&w->rs, &f);
    if (rc == WP_OK && ok < w->rs.a)
        rc = quorum_err(&w->rs, &f, WP_EQUORUM, "ADD", w->rs.a);
    return rc;
}

/* The index and footer: COMPLETE at the footer's last entry on the replicas. */
static int complete(st_writer *w, const uint8_t *b, size_t len)
{
    seg_footer ft;
    if (len < FTR_SIZE || ftr_decode(b + len - FTR_SIZE, &ft) != WP_OK)
        return wp__err(WP_EINVAL, "quorum storage: an append that is neither a block nor a footer");
    proto_msg m = {.type = PROTO_COMPLETE};
    m.u.complete = (proto_complete){.log_id = w->log_id, .segment_id = w->seg_id,
                                    .epoch = w->epoch, .last_entry_id = ft.last_entry_id};
    fanout f;
    /* The writer rolls on: no waiting for stragglers. */
    fan_out(w->q, &w->rs, w->h, &m, NULL, &f, w->rs.a, false);
    int rc = fenced_among(&w->rs, &f);
    if (rc == WP_OK && count_ok(&w->rs, &f) < w->rs.a)
        rc = quorum_err(&w->rs, &f, WP_EQUORUM, "COMPLETE", w->rs.a);
    return rc;
}

/* Append k: the header (nothing to send: each replica writes its own),
 * blocks (an ADD each, sent once appends < k were sent, then awaited
 * alongside the later ones) or the index and footer (COMPLETE). */
static int q_seg_append_nth(st_writer *w, uint64_t k, const struct iovec *iov, int iovcnt)
{
    fan_shared *sent[APPEND_BLOCKS_MAX];
    int64_t last[APPEND_BLOCKS_MAX], t0 = wp__now_ns();
    int n = 0, rc = WP_OK;
    uint64_t total = 0;
    for (int i = 0; i < iovcnt; i++)
        total += iov[i].iov_len;
    pthread_mutex_lock(&w->seq_mu);
    while (w->appends != k && !writer_failed(w))
        pthread_cond_wait(&w->seq_cond, &w->seq_mu);
    if ((rc = writer_failed(w))) {
        pthread_mutex_unlock(&w->seq_mu);
        return wp__err(rc, "quorum writer of %" PRId64 "/%" PRId64 " failed earlier", w->log_id,
                       w->seg_id);
    }
    if (!w->header_seen) {
        if (total != SEG_HEADER_SIZE)
            rc = wp__err(WP_EINVAL, "quorum storage: first append is not a header");
        w->header_seen = true;
    } else {
        for (int i = 0; i < iovcnt && rc == WP_OK; i++) {
            const uint8_t *b = iov[i].iov_base;
            if (iov[i].iov_len >= 4 && memcmp(b, "WPBK", 4) == 0) {
                if (n == APPEND_BLOCKS_MAX)
                    rc = wp__err(WP_EINVAL, "quorum storage: more than %d blocks in an append",
                                 APPEND_BLOCKS_MAX);
                else if ((rc = add_send(w, b, iov[i].iov_len, &sent[n], &last[n])) == WP_OK)
                    n++;
            } else {
                /* The footer comes after every earlier append returned. */
                rc = complete(w, b, iov[i].iov_len);
            }
        }
    }
    if (rc == WP_OK) {
        w->appends++;
        w->size += total;
        pthread_cond_broadcast(&w->seq_cond);
    }
    pthread_mutex_unlock(&w->seq_mu);
    for (int i = 0; i < n; i++) {
        int rc2 = add_wait(w, sent[i], last[i]);
        wp__hist_observe(H_QUORUM_ADD, wp__now_ns() - t0);
        if (rc2 && !rc)
            rc = rc2;
    }
    return rc ? writer_fail(w, rc) : WP_OK;
}

static int q_seg_append(st_writer *w, const struct iovec *iov, int iovcnt)
{
    pthread_mutex_lock(&w->seq_mu);
    uint64_t k = w->appends;
    pthread_mutex_unlock(&w->seq_mu);
    return q_seg_append_nth(w, k, iov, iovcnt);
}

/* Whether a replica of w failed or has been silent for
 * quorum.replica_timeout_ms while requests wait on it (each such one is
 * avoided by placements for a while), and servers enough to place a
 * segment without them are known: then the writer should roll. */
static bool q_seg_writer_degraded(st_writer *w)
{
    quorum_storage *q = w->q;
    int64_t now = wp__now_ns();
    int bad = 0;
    pthread_mutex_lock(&w->h->mu);
    for (int i = 0; i < w->rs.w; i++)
        if (w->h->err[i] || (w->h->pending[i] > 0 && now - w->h->since_ns[i] >= q->replica_timeout_ns)) {
            node_avoid(w->rs.n[i]);
            bad++;
        }
    pthread_mutex_unlock(&w->h->mu);
    /* A replica registered with no room (draining, or below its soft disk
     * watermark) wants its writers elsewhere; looked at now and then. */
    if (bad == 0 && now - w->reg_checked_ns >= REG_CHECK_NS && q->base.meta) {
        w->reg_checked_ns = now;
        w->reg_no_room = false;
        pthread_mutex_lock(&q->pool_mu);
        if (registry_refresh(q, false) == WP_OK)
            for (int i = 0; i < w->rs.w; i++)
                for (size_t k = 0; k < q->n_reg; k++)
                    if (q->reg[k].disk_free <= 0 && strcmp(q->reg[k].addr, w->rs.n[i]->addr) == 0)
                        w->reg_no_room = true;
        pthread_mutex_unlock(&q->pool_mu);
    }
    if (bad == 0 && !w->reg_no_room)
        return false;
    int usable = 0;
    pthread_mutex_lock(&q->pool_mu);
    if (q->n_static > 0) {
        for (int i = 0; i < q->n_static; i++)
            usable += !node_avoided(q->statics[i], now);
    } else if (registry_refresh(q, false) == WP_OK) {
        for (size_t i = 0; i < q->n_reg; i++) {
            bool avoided = false;
            for (int k = 0; k < q->n_pool; k++)
                if (strcmp(q->pool[k]->addr, q->reg[i].addr) == 0)
                    avoided = node_avoided(q->pool[k], now);
            usable += q->reg[i].disk_free > 0 && !avoided;
        }
    }
    pthread_mutex_unlock(&q->pool_mu);
    return usable >= q->w;
}

static void send_lac(quorum_storage *q, const replset *rs, int64_t log_id, int64_t seg_id,
                     int64_t epoch, int64_t lac)
{
    proto_msg m = {.type = PROTO_ADD}; /* fire and forget: a lost one only delays readers */
    m.u.add = (proto_add){.log_id = log_id, .segment_id = seg_id, .epoch = epoch,
                          .first_entry_id = lac + 1, .lac = lac};
    fanout f;
    fan_out(q, rs, NULL, &m, NULL, &f, 0, false);
}

static int q_seg_publish_lac(st_writer *w, int64_t lac)
{
    quorum_storage *q = w->q;
    pthread_mutex_lock(&q->lac_mu);
    if (lac > w->lac)
        w->lac = lac;
    pthread_cond_signal(&q->lac_cond);
    pthread_mutex_unlock(&q->lac_mu);
    return WP_OK;
}

/* Sends the LAC of writers idle for LAC_IDLE_NS whose replicas lack it. */
static void *lac_main(void *arg)
{
    quorum_storage *q = arg;
    pthread_mutex_lock(&q->lac_mu);
    while (!q->lac_stop) {
        int64_t now = wp__now_ns(), next = now + 1000000000LL;
        st_writer *due = NULL;
        for (st_writer *w = q->writers; w; w = w->next) {
            if (w->lac <= w->lac_sent || w->failed)
                continue;
            if (now - w->last_add_ns >= LAC_IDLE_NS) {
                due = w;
                break;
            }
            if (w->last_add_ns + LAC_IDLE_NS < next)
                next = w->last_add_ns + LAC_IDLE_NS;
        }
        if (due) {
            int64_t log_id = due->log_id, seg_id = due->seg_id, epoch = due->epoch, lac = due->lac;
            replset rs = due->rs;
            due->lac_sent = lac;
            pthread_mutex_unlock(&q->lac_mu);
            send_lac(q, &rs, log_id, seg_id, epoch, lac);
            pthread_mutex_lock(&q->lac_mu);
            continue;
        }
        struct timespec ts = {next / 1000000000LL, next % 1000000000LL};
        pthread_cond_timedwait(&q->lac_cond, &q->lac_mu, &ts);
    }
    pthread_mutex_unlock(&q->lac_mu);
    return NULL;
}

static uint64_t q_seg_writer_size(st_writer *w)
{
    pthread_mutex_lock(&w->seq_mu);
    uint64_t size = w->size;
    pthread_mutex_unlock(&w->seq_mu);
    return size;
}
static void q_writer_close(st_writer *w)
{
    quorum_storage *q = w->q;
    pthread_mutex_lock(&q->lac_mu);
    for (st_writer **pp = &q->writers; *pp; pp = &(*pp)->next)
        if (*pp == w) {
            *pp = w->next;
            break;
        }
    bool unsent = w->lac > w->lac_sent && !w->failed;
    pthread_mutex_unlock(&q->lac_mu);
    if (unsent) /* readers of the replicas see the last entries */
        send_lac(q, &w->rs, w->log_id, w->seg_id, w->epoch, w->lac);
    health_unref(w->h);
    pthread_mutex_destroy(&w->seq_mu);
    pthread_cond_destroy(&w->seq_cond);
    free(w);
}

/* ---- fencing and recovery ---------------------------------------------------- */

static int q_seg_fence(storage *st, int64_t log_id, int64_t seg_id, int64_t epoch)
{
    quorum_storage *q = qs(st);
    replset rs;
    int rc = resolve(q, log_id, seg_id, &rs);
    if (rc)
        return rc;
    proto_msg m = {.type = PROTO_FENCE};
    m.u.fence = (proto_fence){.log_id = log_id, .segment_id = seg_id, .epoch = epoch};
    fanout f;
    int need = rs.w - rs.a + 1;
    fan_out(q, &rs, NULL, &m, NULL, &f, need, true);
    rc = fenced_among(&rs, &f);
    if (rc == WP_OK && count_ok(&rs, &f) < need)
        rc = quorum_err(&rs, &f, WP_EQUORUM, "FENCE", need);
    return rc;
}

/* Reads entries from `from` up to `to` from replica src (unconfirmed:
 * recovery) into a growing buffer, READs of 4 MiB until `to` or until
 * WRITEBACK_BYTES or WRITEBACK_ENTRIES are reached; *n entries (at least
 * one) of *len bytes. */
static int read_range(quorum_storage *q, const replset *rs, int src, int64_t log_id,
                      int64_t seg_id, int64_t from, int64_t to, uint8_t **buf, size_t *len,
                      uint32_t *n)
{
    size_t cap = 0;
    *buf = NULL;
    *len = 0;
    *n = 0;
    for (int64_t next = from; next <= to && *len < WRITEBACK_BYTES && *n < WRITEBACK_ENTRIES;) {
        pconn *c = replica_conn(q, rs, src);
        if (!c)
            return WP_EUNAVAILABLE;
        proto_msg m = {.type = PROTO_READ}, ans;
        m.u.read = (proto_read){.log_id = log_id, .segment_id = seg_id, .from_entry_id = next,
                                .max_bytes = 4 * WP_MiB, .flags = PROTO_READ_UNCONFIRMED};
        uint8_t *body = NULL;
        int rc = pconn_call(c, &m, CALL_TIMEOUT_MS, &ans, &body);
        if (rc)
            return rc;
        const proto_read_ans *a = &ans.u.read_ans;
        uint32_t take = 0;
        size_t off = 0;
        while (take < a->n_entries && next + take <= to) {
            rec_view v;
            size_t used;
            if (rec_decode(a->records + off, a->records_len - off, &v, &used))
                break;
            off += used;
            take++;
        }
        if (take == 0) {
            free(body);
            return wp__err(WP_EIO, "recovery: %s has no entry %" PRId64 " any more",
                           rs->n[src]->addr, next);
        }
        if (*len + off > cap) {
            size_t nc = cap ? cap : 64 * 1024;
            while (nc < *len + off)
                nc *= 2;
            uint8_t *nb = realloc(*buf, nc);
            if (!nb) {
                free(body);
                return wp__err(WP_ENOMEM, "recovery buffer");
            }
            *buf = nb;
            cap = nc;
        }
        memcpy(*buf + *len, a->records, off);
        *len += off;
        *n += take;
        next += take;
        free(body);
    }
    return WP_OK;
}

/* Offset of the k-th record in buf, whose records were checked when
 * their message was decoded (proto.c check_records): bounds only. */
static size_t rec_offset(const uint8_t *buf, size_t len, uint32_t k)
{
    size_t off = 0;
    for (uint32_t i = 0; i < k; i++) {
        rec_view v;
        size_t used;
        if (rec_decode_checked(buf + off, len - off, &v, &used))
            break;
        off += used;
    }
    return off;
}

int64_t quorum_target(int w, int a, const int64_t *last, int64_t lac)
{
    /* absent(e) = answers with last < e grows with e; the first e past the
     * LAC with absent(e) >= W - A + 1 is one past the (W - A + 1)-th
     * smallest answered last. Unknown answers are left out: they can only
     * make the target higher, never lower. */
    int need = w - a + 1, n = 0;
    int64_t v[QUORUM_W_MAX] = {0};
    for (int i = 0; i < w; i++)
        if (last[i] != INT64_MIN) {
            int j = n++;
            while (j > 0 && v[j - 1] > last[i]) {
                v[j] = v[j - 1];
                j--;
            }
            v[j] = last[i];
        }
    if (n < need)
        return INT64_MIN; /* not enough answers to tell */
    return v[need - 1] > lac ? v[need - 1] : lac;
}

static int q_seg_recover(storage *st, int64_t log_id, int64_t seg_id, int64_t epoch,
                         int64_t *last_entry_id, uint64_t *bytes)
{
    quorum_storage *q = qs(st);
    replset rs;
    int rc = resolve(q, log_id, seg_id, &rs);
    if (rc)
        return rc;
    int need = rs.w - rs.a + 1;
    /* 1. Fence: at least W - A + 1 answers. */
    proto_msg fm = {.type = PROTO_FENCE};
    fm.u.fence = (proto_fence){.log_id = log_id, .segment_id = seg_id, .epoch = epoch};
    fanout f;
    fan_out(q, &rs, NULL, &fm, NULL, &f, need, true);
    int64_t last_i[QUORUM_W_MAX], lac = -1, completed = INT64_MIN;
    for (int i = 0; i < QUORUM_W_MAX; i++)
        last_i[i] = INT64_MIN; /* unknown */
    int answered = 0;
    for (int i = 0; i < rs.w; i++) {
        last_i[i] = INT64_MIN; /* unknown */
        if (f.r[i].rc != WP_OK)
            continue;
        const proto_seg_state *s = &f.r[i].ans.u.state;
        last_i[i] = s->last_durable;
        answered++;
        if (s->lac > lac)
            lac = s->lac;
        if (s->flags & PROTO_SEG_COMPLETED)
            completed = s->last_durable;
    }
    rc = fenced_among(&rs, &f);
    if (rc == WP_OK && answered < need)
        rc = quorum_err(&rs, &f, WP_EQUORUM, "recovery FENCE", need);
    if (rc)
        return rc;
    /* 2. The target. A copy completed before was completed at the agreed
     * last entry. Otherwise: from the highest LAC on, the first entry that
     * W - A + 1 answers show absent, minus one. */
    int64_t target = completed != INT64_MIN ? completed : quorum_target(rs.w, rs.a, last_i, lac);
    if (target == INT64_MIN)
        return wp__err(WP_EQUORUM, "recovery: fewer than %d replicas answered", need);
    /* 3. Write back: every replica that answered and lacks entries gets
     * them from the one that holds the most, until A hold [0, target]. */
    int src = -1, holders = 0;
    for (int i = 0; i < rs.w; i++) {
        if (last_i[i] != INT64_MIN && (src < 0 || last_i[i] > last_i[src]))
            src = i;
        holders += last_i[i] != INT64_MIN && last_i[i] >= target;
    }
    int64_t from = target + 1;
    for (int i = 0; i < rs.w; i++)
        if (last_i[i] != INT64_MIN && last_i[i] < target && last_i[i] + 1 < from)
            from = last_i[i] + 1;
    if (holders < rs.a && target >= 0) {
        /* In pieces (at most WRITEBACK_BYTES each, in entry order): a
         * replica may lag by more than one ADD can carry, or than is worth
         * holding in memory. next[i]: the next entry replica i needs (-1:
         * not written back: it did not answer, holds the target, or failed). */
        int64_t next[QUORUM_W_MAX];
        int lagging = 0;
        for (int i = 0; i < rs.w; i++) {
            next[i] = last_i[i] != INT64_MIN && last_i[i] < target ? last_i[i] + 1 : -1;
            lagging += next[i] >= 0;
        }
        for (int64_t at = from; rc == WP_OK && at <= target && lagging > 0;) {
            uint8_t *buf = NULL;
            size_t len = 0;
            uint32_t n = 0;
            rc = read_range(q, &rs, src, log_id, seg_id, at, target, &buf, &len, &n);
            int64_t end = at + (int64_t)n - 1;
            const proto_msg *ms[QUORUM_W_MAX] = {0};
            proto_msg adds[QUORUM_W_MAX];
            int asked = 0;
            for (int i = 0; rc == WP_OK && i < rs.w; i++) {
                if (next[i] < at || next[i] > end)
                    continue;
                uint32_t skip = (uint32_t)(next[i] - at);
                size_t off = rec_offset(buf, len, skip);
                adds[i] = (proto_msg){.type = PROTO_ADD};
                adds[i].u.add = (proto_add){.log_id = log_id, .segment_id = seg_id,
                                            .epoch = epoch, .first_entry_id = next[i],
                                            .lac = lac, .n_entries = n - skip,
                                            .records = buf + off, .records_len = len - off};
                ms[i] = &adds[i];
                asked++;
            }
            if (rc == WP_OK && asked > 0) {
                fan_out(q, &rs, NULL, NULL, ms, &f, asked, false);
                for (int i = 0; i < rs.w; i++) {
                    if (!ms[i])
                        continue;
                    if (f.r[i].rc == WP_OK && f.r[i].ans.u.add_ans.last_durable >= end) {
                        next[i] = end + 1;
                    } else { /* this one is left as it is */
                        next[i] = -1;
                        lagging--;
                    }
                }
            }
            free(buf);
            at = end + 1;
        }
        if (rc)
            return rc;
        for (int i = 0; i < rs.w; i++)
            holders += next[i] > target;
        if (holders < rs.a)
            return quorum_err(&rs, &f, WP_EQUORUM, "recovery write-back", rs.a);
    }
    /* 4. Complete the copies at the target (those that hold it). */
    proto_msg cm = {.type = PROTO_COMPLETE};
    cm.u.complete = (proto_complete){.log_id = log_id, .segment_id = seg_id, .epoch = epoch,
                                     .last_entry_id = target};
    fan_out(q, &rs, NULL, &cm, NULL, &f, rs.a, true);
    rc = fenced_among(&rs, &f);
    if (rc == WP_OK && count_ok(&rs, &f) < rs.a)
        rc = quorum_err(&rs, &f, WP_EQUORUM, "recovery COMPLETE", rs.a);
    if (rc)
        return rc;
    *last_entry_id = target;
    *bytes = 0;
    return WP_OK;
}

/* ---- reading ----------------------------------------------------------------- */

/* Whether the segment's objects are the copy to read: SEALED now, or
 * TRUNCATED (still readable until GC deletes it) after it was sealed,
 * which its objects tell (a complete copy of `bytes` ending at its last
 * entry; the servers may have dropped theirs). Then r->cold_bytes is its
 * length. */
static bool sealed_now(st_reader *r)
{
    meta_seg s;
    meta *m = r->q->base.meta;
    int64_t last = -2;
    bool yes = r->q->cold && m && m->ops->seg_get(m, r->log_id, r->seg_id, &s) == WP_OK &&
               (s.state == WP_SEG_SEALED ||
                (s.state == WP_SEG_TRUNCATED && s.bytes > 0 &&
                 lseg_check_complete(r->q->cold, r->log_id, r->seg_id, (uint64_t)s.bytes,
                                     &last) == WP_OK &&
                 last == s.last_entry_id));
    wp__err_clear();
    if (yes) {
        r->sealed = true;
        r->cold_bytes = (uint64_t)s.bytes;
    }
    return yes;
}

static int q_seg_open_read(storage *st, int64_t log_id, int64_t seg_id, st_reader **out)
{
    st_reader *r = calloc(1, sizeof *r);
    if (!r)
        return wp__err(WP_ENOMEM, "quorum reader");
    *r = (st_reader){.q = qs(st), .log_id = log_id, .seg_id = seg_id, .cold_next = -1};
    bool sealed = sealed_now(r);
    int rc = resolve(r->q, log_id, seg_id, &r->rs);
    if (rc && sealed) { /* read from object storage; its servers may be gone */
        wp__err_clear();
        r->rs.w = 0;
        rc = WP_OK;
    }
    if (rc) {
        free(r);
        return rc;
    }
    r->pref = r->rs.w ? (int)((uint64_t)(log_id * 31 + seg_id) % (uint64_t)r->rs.w) : 0;
    *out = r;
    return WP_OK;
}

static int buf_room(st_reader *r, size_t need)
{
    if (need <= r->buf_cap)
        return WP_OK;
    size_t c = r->buf_cap ? r->buf_cap : 64 * 1024;
    while (c < need)
        c *= 2;
    uint8_t *nb = realloc(r->buf, c);
    if (!nb)
        return wp__err(WP_ENOMEM, "read buffer of %zu bytes", c);
    r->buf = nb;
    r->buf_cap = c;
    return WP_OK;
}

/* Entries [from, upto] of a sealed segment from its objects, at most
 * max_bytes of them (at least one), through the segment reader of the
 * object layout (its index, its read-ahead). */
static int cold_read(st_reader *r, int64_t from, int64_t upto, size_t max_bytes, st_entries *out)
{
    quorum_storage *q = r->q;
    int rc;
    if (!r->cold_r &&
        (rc = lseg_open_read(q->cold, r->log_id, r->seg_id, true, r->cold_bytes, &r->cold_r)))
        return rc;
    if (from != r->cold_next)
        lseg_seek(r->cold_r, from);
    r->cold_next = -1;
    size_t len = 0;
    uint32_t n = 0;
    lseg_entry e;
    while ((rc = lseg_next(r->cold_r, upto, &e)) == WP_OK) {
        if (e.entry_id != from + (int64_t)n) {
            rc = wp__err(WP_ECORRUPT, "segment %" PRId64 "/%" PRId64 " in object storage: entry %"
                         PRId64 " where %" PRId64 " was expected", r->log_id, r->seg_id,
                         e.entry_id, from + (int64_t)n);
            break;
        }
        if (n > 0 && len + e.raw_len > max_bytes) /* it stays for the next call (a seek) */
            break;
        if ((rc = buf_room(r, len + e.raw_len)))
            break;
        memcpy(r->buf + len, e.raw, e.raw_len);
        len += e.raw_len;
        n++;
        if (e.entry_id >= upto || len >= max_bytes) {
            r->cold_next = from + (int64_t)n;
            break;
        }
    }
    if (rc == WP_EAGAIN) { /* the end, or upto */
        wp__err_clear();
        rc = WP_OK;
        r->cold_next = from + (int64_t)n;
    }
    if (rc) {
        lseg_close_read(r->cold_r);
        r->cold_r = NULL;
        return rc;
    }
    *out = (st_entries){.first = from, .n = n, .records = r->buf, .len = len};
    return WP_OK;
}

/* ---- read-ahead ----------------------------------------------------------------
 * A reader that took a full batch from a replica sends the READ of the next
 * one at once, to the same replica, and returns; the answer arrives while
 * the caller goes through the batch. Catching up is then bound by the
 * slower of the two ends instead of their sum. The answer is only used by
 * the next call that asks for exactly that entry with the same `completed`;
 * anything else (a seek, an error, nothing there yet) drops it and asks as
 * before. */

typedef struct prefetch {
    pconn_pending *call;
    int64_t from;
    bool completed;
    int replica; /* index in rs */
} prefetch;

static void pf_drop(st_reader *r)
{
    if (r->pf) {
        pconn_call_drop(r->pf->call);
        free(r->pf);
        r->pf = NULL;
    }
}

static void pf_start(st_reader *r, int i, int64_t from, bool completed, size_t max_bytes)
{
    pconn *c = replica_conn(r->q, &r->rs, i);
    prefetch *p = c ? malloc(sizeof *p) : NULL;
    if (!p)
        return;
    *p = (prefetch){.from = from, .completed = completed, .replica = i};
    proto_msg m = {.type = PROTO_READ};
    m.u.read = (proto_read){.log_id = r->log_id, .segment_id = r->seg_id, .from_entry_id = from,
                            .max_bytes = (uint32_t)max_bytes, .wait_ms = 0,
                            .flags = completed ? PROTO_READ_UNCONFIRMED : 0};
    /* never waits: a busy connection just means no read-ahead this time */
    if (pconn_call_start(c, &m, true, &p->call) != WP_OK) {
        wp__err_clear();
        free(p);
        return;
    }
    r->pf = p;
}

/* The read-ahead's answer if it is the one asked for now and holds
 * entries: *ans and *body (the caller's now), its replica in *i. */
static bool pf_take(st_reader *r, int64_t from, bool completed, proto_msg *ans, uint8_t **body,
                    int *i)
{
    prefetch *p = r->pf;
    if (!p || p->from != from || p->completed != completed) {
        pf_drop(r);
        return false;
    }
    int rc = pconn_call_wait(p->call, (int)(r->q->replica_timeout_ns / 1000000LL), ans, body);
    if (rc == WP_ETIMEDOUT) { /* left pending: dropped below */
        wp__err_clear();
        pf_drop(r);
        return false;
    }
    *i = p->replica;
    free(p); /* the call ended with the wait */
    r->pf = NULL;
    if (rc == WP_OK && ans->type == PROTO_READ_ANS && ans->u.read_ans.n_entries > 0)
        return true;
    if (rc == WP_OK)
        free(*body);
    wp__err_clear();
    return false;
}

/* A replica's answer with entries becomes the batch (see below). */
static void take_answer(st_reader *r, int i, int64_t from, int64_t upto, bool completed,
                        size_t max_bytes, const proto_msg *ans, uint8_t *body, st_entries *out)
{
    const proto_read_ans *a = &ans->u.read_ans;
    uint32_t n = a->n_entries;
    if (n > 0 && from + (int64_t)n - 1 > upto) /* never past what the caller allows */
        n = (uint32_t)(upto - from + 1);
    size_t len = n == a->n_entries ? a->records_len : rec_offset(a->records, a->records_len, n);
    /* The batch is the answer's records where they are: the body lives
     * until the next call (st_entries), not copied again. */
    free(r->body);
    r->body = body;
    *out = (st_entries){.first = from, .n = n, .records = a->records, .len = len};
    r->pref = i;
    /* A full batch, and the caller may read on: more is there; ask for it now. */
    if (n == a->n_entries && from + (int64_t)n <= upto &&
        (completed || a->records_len >= max_bytes / 2))
        pf_start(r, i, from + (int64_t)n, completed, max_bytes);
}

static int q_seg_read_entries(st_reader *r, int64_t from, int64_t upto, bool completed,
                              size_t max_bytes, st_entries *out)
{
    quorum_storage *q = r->q;
    *out = (st_entries){.first = from};
    int cold_rc = WP_OK;
    if (r->sealed) { /* its objects first; the replicas while they still hold it */
        cold_rc = cold_read(r, from, upto, max_bytes, out);
        if (cold_rc == WP_OK || cold_rc == WP_ENOMEM)
            return cold_rc;
        wp__log(q->base.logger, WP_LOG_WARN, "quorum: segment %" PRId64 "/%" PRId64 ": reading "
                "object storage: %s (%s); trying the replicas", r->log_id, r->seg_id,
                wp_strerror(cold_rc), wp_errmsg());
    }
    {
        proto_msg ans;
        uint8_t *body;
        int i;
        if (pf_take(r, from, completed, &ans, &body, &i)) {
            take_answer(r, i, from, upto, completed, max_bytes, &ans, body, out);
            return WP_OK;
        }
    }
    int rc = wp__err(WP_EUNAVAILABLE, "no replica of segment %" PRId64 "/%" PRId64 " answers",
                     r->log_id, r->seg_id);
    bool nothing = false;
    for (int k = 0; k < r->rs.w; k++) { /* the preferred replica, then the others */
        int i = (r->pref + k) % r->rs.w;
        pconn *c = replica_conn(q, &r->rs, i);
        if (!c)
            continue;
        /* The preferred replica may hold the READ until entries come (a
         * tailing reader is pushed them); the others are asked at once. */
        int wait = k == 0 && !completed ? r->wait_ms : 0;
        proto_msg m = {.type = PROTO_READ}, ans;
        m.u.read = (proto_read){.log_id = r->log_id, .segment_id = r->seg_id, .from_entry_id = from,
                                .max_bytes = (uint32_t)max_bytes, .wait_ms = (uint32_t)wait,
                                .flags = completed ? PROTO_READ_UNCONFIRMED : 0};
        uint8_t *body = NULL;
        /* A replica that stays silent past quorum.replica_timeout_ms (on
         * top of the wait) is left for the next one. */
        rc = pconn_call(c, &m, wait + (int)(q->replica_timeout_ns / 1000000LL), &ans, &body);
        if (rc == WP_ETIMEDOUT)
            node_avoid(r->rs.n[i]);
        if (rc == WP_OK && ans.u.read_ans.n_entries == 0) {
            /* Nothing there: at the end, or this replica lags (it missed
             * ADDs or LACs while slow or away): ask the others too. (In a
             * completed segment, "nothing" before its last entry is no end:
             * lseg's reader, which knows the last, refuses it.) */
            free(body);
            body = NULL;
            nothing = true;
            continue;
        }
        if (rc == WP_OK) {
            take_answer(r, i, from, upto, completed, max_bytes, &ans, body, out);
            return WP_OK;
        }
        free(body);
        if (rc == WP_ENOENT && !completed) /* not created on it yet: nothing yet */
            nothing = true;
    }
    if (nothing && !completed)
        return WP_OK; /* n == 0: nothing yet anywhere */
    /* Sealed and dropped by the replicas since the reader opened it (or
     * they are gone): its objects hold it, from the same entry on. */
    if (!r->sealed && sealed_now(r))
        return cold_read(r, from, upto, max_bytes, out);
    if (r->sealed && cold_rc)
        return wp__err(cold_rc, "segment %" PRId64 "/%" PRId64 ": object storage failed and no "
                       "replica holds it", r->log_id, r->seg_id);
    return nothing ? WP_OK : rc;
}

static void q_seg_reader_wait(st_reader *r, int wait_ms)
{
    r->wait_ms = wait_ms < 0 ? 0 : wait_ms > PROTO_WAIT_MS_MAX ? PROTO_WAIT_MS_MAX : wait_ms;
}

static int q_seg_read(st_reader *r, uint64_t off, void *buf, size_t len, size_t *got)
{
    (void)r, (void)off, (void)buf, (void)len;
    *got = 0;
    return wp__err(WP_ENOTSUP, "quorum storage keeps entries: read them (seg_read_entries)");
}

static int q_seg_size(st_reader *r, uint64_t *size)
{
    (void)r;
    *size = 0;
    return wp__err(WP_ENOTSUP, "quorum storage keeps entries, not bytes");
}

static int q_seg_read_lac(st_reader *r, int64_t *lac)
{
    (void)r;
    *lac = -1;
    return WP_ENOTSUP;
}

static void q_reader_close(st_reader *r)
{
    if (!r)
        return;
    lseg_close_read(r->cold_r);
    pf_drop(r); /* an answer still coming is freed when it comes */
    free(r->buf);
    free(r->body);
    free(r);
}

/* ---- deletion, listing, the backend ------------------------------------------ */

/* DELETE on the replicas of rs; a replica that is down keeps its copy
 * until it is deleted there. */
static int del(quorum_storage *q, const replset *rs, int64_t log_id, int64_t seg_id)
{
    proto_msg m = {.type = PROTO_DELETE};
    m.u.del = (proto_delete){.log_id = log_id, .segment_id = seg_id};
    fanout f;
    fan_out(q, rs, NULL, &m, NULL, &f, rs->w, false);
    return count_ok(rs, &f) == rs->w ? WP_OK : quorum_err(rs, &f, WP_EUNAVAILABLE, "DELETE", rs->w);
}

/* The objects first (a sealed segment's data), then the replicas'
 * copies. A replica that cannot be reached keeps its copy: its server
 * drops it once it sees the record gone (src/server/upload.c), so an
 * unreachable server does not hold GC up. */
static int q_seg_delete(storage *st, int64_t log_id, int64_t seg_id)
{
    quorum_storage *q = qs(st);
    int rc = q->cold ? q->cold->ops->seg_delete(q->cold, log_id, seg_id) : WP_OK;
    if (rc)
        return rc;
    replset rs;
    rc = resolve(q, log_id, seg_id, &rs);
    if (rc == WP_ENOENT) /* its record is gone: deleted before */
        return WP_OK;
    if (rc)
        return rc;
    proto_msg m = {.type = PROTO_DELETE};
    m.u.del = (proto_delete){.log_id = log_id, .segment_id = seg_id};
    fanout f;
    fan_out(q, &rs, NULL, &m, NULL, &f, rs.w, false);
    for (int i = 0; i < rs.w; i++) {
        int r = f.r[i].rc;
        if (r == WP_OK)
            continue;
        bool unreachable = r == IN_FLIGHT || r == NOT_ASKED || r == WP_EUNAVAILABLE ||
                           r == WP_ETIMEDOUT || r == WP_ECLOSED;
        if (!unreachable)
            return quorum_err(&rs, &f, WP_EUNAVAILABLE, "DELETE", rs.w);
        wp__log(q->base.logger, WP_LOG_INFO, "quorum: segment %" PRId64 "/%" PRId64 ": replica %s "
                "did not answer the DELETE; its server drops the copy later", log_id, seg_id,
                rs.n[i]->addr);
    }
    return WP_OK;
}

/* A deleted log's segments may be on any server: DELETE goes to every
 * one known (the static list, the registered ones), QUORUM_W_MAX at a
 * time. */
static int q_log_delete(storage *st, int64_t log_id)
{
    quorum_storage *q = qs(st);
    if (q->cold) {
        int crc = q->cold->ops->log_delete(q->cold, log_id);
        if (crc)
            return crc;
    }
    pthread_mutex_lock(&q->pool_mu);
    int rc = registry_refresh(q, true);
    size_t n_reg = q->n_reg;
    char (*addrs)[256] = rc ? NULL : calloc(n_reg + 1, sizeof *addrs);
    for (size_t i = 0; addrs && i < n_reg; i++)
        snprintf(addrs[i], sizeof addrs[i], "%s", q->reg[i].addr);
    pthread_mutex_unlock(&q->pool_mu);
    if (!rc && !addrs)
        rc = wp__err(WP_ENOMEM, "log delete");
    node *all[NODE_POOL_MAX];
    int n = 0;
    for (int i = 0; !rc && i < q->n_static; i++)
        all[n++] = q->statics[i];
    for (size_t i = 0; !rc && i < n_reg && n < NODE_POOL_MAX; i++) {
        node *nd = node_for(q, addrs[i]);
        bool dup = false;
        for (int k = 0; nd && k < n; k++)
            dup |= all[k] == nd;
        if (nd && !dup)
            all[n++] = nd;
    }
    free(addrs);
    for (int i = 0; i < n; i += QUORUM_W_MAX) {
        replset rs = {.w = n - i < QUORUM_W_MAX ? n - i : QUORUM_W_MAX};
        for (int k = 0; k < rs.w; k++)
            rs.n[k] = all[i + k];
        int rc2 = del(q, &rs, log_id, -1);
        if (rc2 && !rc)
            rc = rc2;
    }
    return rc;
}

static int q_seg_list(storage *st, int64_t log_id, int64_t **ids, size_t *n)
{
    (void)st, (void)log_id;
    *ids = NULL;
    *n = 0;
    return wp__err(WP_ENOTSUP, "quorum storage: segments are listed in metadata");
}

static void q_close(storage *st)
{
    quorum_storage *q = qs(st);
    if (q->lac_started) {
        pthread_mutex_lock(&q->lac_mu);
        q->lac_stop = true;
        pthread_cond_signal(&q->lac_cond);
        pthread_mutex_unlock(&q->lac_mu);
        pthread_join(q->lac_thr, NULL);
    }
    pthread_mutex_destroy(&q->lac_mu);
    pthread_cond_destroy(&q->lac_cond);
    for (int i = 0; i < q->n_pool; i++) {
        pconn_close(q->pool[i]->c);
        pthread_mutex_destroy(&q->pool[i]->mu);
        free(q->pool[i]);
    }
    pthread_mutex_destroy(&q->pool_mu);
    if (q->cold)
        q->cold->ops->close(q->cold);
    free(q->reg);
    free(q);
}

static const struct storage_ops quorum_ops = {
    .name = "quorum",
    .appends_atomic = true,       /* an entry is on a replica whole or not at all */
    /* One flush in flight (it takes every ready block): on servers near by
     * more buy no throughput (the disks are the limit) and cost a thread
     * handoff per ack; raise flush.max_threads for servers far away. */
    .flush_threads_default = 1,
    .durable_when_visible = true, /* a replica serves confirmed entries only */
    .seg_create = q_seg_create,
    .seg_reopen = q_seg_reopen,
    .seg_append = q_seg_append,
    .seg_append_nth = q_seg_append_nth,
    .seg_publish_lac = q_seg_publish_lac,
    .seg_writer_size = q_seg_writer_size,
    .seg_writer_close = q_writer_close,
    .seg_fence = q_seg_fence,
    .seg_open_read = q_seg_open_read,
    .seg_read = q_seg_read,
    .seg_size = q_seg_size,
    .seg_read_lac = q_seg_read_lac,
    .seg_reader_close = q_reader_close,
    .seg_delete = q_seg_delete,
    .log_delete = q_log_delete,
    .seg_list = q_seg_list,
    .seg_recover = q_seg_recover,
    .seg_read_entries = q_seg_read_entries,
    .seg_reader_wait = q_seg_reader_wait,
    .seg_place = q_seg_place,
    .seg_writer_degraded = q_seg_writer_degraded,
    .close = q_close,
};

int storage_quorum_open(const struct wp_config *cfg, const wp__logger *lg, meta *m,
                        storage **out)
{
    int w = (int)cfg->quorum_write, a = (int)cfg->quorum_ack;
    if (!(w >= a && 2 * a > w))
        return wp__err(WP_EINVAL, "quorum.write %d, quorum.ack %d: need write >= ack > write/2 "
                       "(e.g. 3/2, 5/3)", w, a);
    quorum_storage *q = calloc(1, sizeof *q);
    if (!q)
        return wp__err(WP_ENOMEM, "quorum storage");
    q->base.ops = &quorum_ops;
    q->base.logger = lg;
    q->base.meta = m;
    q->w = w;
    q->a = a;
    q->replica_timeout_ns = cfg->quorum_replica_timeout_ms * 1000000LL;
    snprintf(q->client_id, sizeof q->client_id, "client-%d", (int)getpid());
    pthread_mutex_init(&q->pool_mu, NULL);
    pthread_mutex_init(&q->lac_mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&q->lac_cond, &ca);
    pthread_condattr_destroy(&ca);
    char list[sizeof cfg->quorum_nodes];
    snprintf(list, sizeof list, "%s", cfg->quorum_nodes);
    int rc = WP_OK;
    for (char *save = NULL, *t = strtok_r(list, ",", &save); t && rc == WP_OK;
         t = strtok_r(NULL, ",", &save)) {
        if (q->n_static == QUORUM_STATIC_MAX)
            rc = wp__err(WP_EINVAL, "quorum.nodes: at most %d servers", QUORUM_STATIC_MAX);
        else if (!meta_node_addr_valid(t, strlen(t)))
            rc = wp__err(WP_EINVAL, "quorum.nodes: bad address '%.64s' (host:port)", t);
        else if ((q->statics[q->n_static] = node_for(q, t)) == NULL)
            rc = WP_ENOMEM;
        else
            q->n_static++;
    }
    if (rc == WP_OK && q->n_static > 0 && q->n_static < w)
        rc = wp__err(WP_EINVAL, "quorum.nodes lists %d servers, quorum.write is %d: list at "
                     "least that many, or none to place segments on the registered servers",
                     q->n_static, w);
    if (rc == WP_OK && q->n_static == 0 && !m)
        rc = wp__err(WP_EINVAL, "quorum: no quorum.nodes and no metadata store to find servers in");
    if (rc == WP_OK && cfg->s3_bucket[0]) /* sealed segments are read there */
        rc = storage_s3_open(cfg, lg, &q->cold);
    if (rc == WP_OK && pthread_create(&q->lac_thr, NULL, lac_main, q) != 0)
        rc = wp__err(WP_ENOMEM, "quorum storage: cannot start the LAC thread");
    if (rc) {
        q_close(&q->base);
        return rc;
    }
    q->lac_started = true;
    *out = &q->base;
    return WP_OK;
}
