/* logstore.c — the LogStore server; see logstore.h and docs/protocol.md.
 *
 * The event loop (loop_main) owns the listening socket, every connection
 * and the list of held READs. A request becomes a job: its body is copied
 * and decoded again there (the frame reader's bytes do not outlive the next
 * read), and the job goes to the worker of its segment. A worker takes all
 * its queued jobs at once, runs them against the replica store in order
 * (consecutive ADDs of one segment in one replica_add: one sync for all of
 * them), encodes each answer and hands the jobs back through an eventfd.
 * The loop then writes the answers out, holds a READ that found nothing
 * (until an ADD of its segment completes, or its wait_ms passes), and
 * drops the jobs of connections closed meanwhile (a connection generation
 * tells). */
#include "server/logstore.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "codec/codec.h"
#include "meta/meta.h"
#include "base/metrics.h"
#include "net/listen.h"
#include "net/proto.h"
#include "os/os.h"
#include "server/http.h"
#include "server/replica.h"
#include "server/upload.h"
#include "woodpecker.h"

#define CONNS_MAX 4096              /* connections (fds below this) */
#define READ_CHUNK (256 * WP_KiB)   /* bytes read per recv */
#define OUT_PAUSE_BYTES (64 * WP_MiB) /* stop reading a connection whose answers pile up */
#define GROUP_BYTES_MAX (64 * WP_MiB) /* ADDs of one segment written as one block */
#define LEASE_TTL_MS 10000
#define DISK_CHECK_NS 1000000000LL  /* free space is looked at once a second per worker */
#define EVENTS_MAX 64

typedef struct job {
    struct job *next;
    int fd;
    uint64_t gen; /* the connection's; a closed one's jobs are dropped */
    uint64_t req_id;
    uint16_t version;
    proto_header h;
    uint8_t *body; /* owned; msg points into it */
    proto_msg msg;
    uint8_t *ans;  /* the encoded answer frame */
    size_t ans_len;
    bool park;     /* a READ that found nothing: hold it */
    bool final;    /* a held READ whose wait is over: answer whatever */
    bool added;    /* an ADD, COMPLETE or DELETE done: wake its segment's held READs */
    int64_t deadline_ns;
} job;

typedef struct {
    int fd;
    uint64_t gen;
    proto_reader rd;
    uint16_t version; /* 0 until HELLO */
    uint8_t *out;
    size_t out_len, out_off, out_cap;
    uint64_t ids[PROTO_INFLIGHT_MAX]; /* request ids in flight */
    int n_ids;
    bool paused;  /* not read: too many in flight or too much output */
    uint8_t *stash; /* bytes read but not fed while paused */
    size_t stash_len;
    bool closing; /* close once the output is written */
} conn;

typedef struct {
    pthread_t thr;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    job *head, *tail;
    bool stop;
    struct logstore *ls;
    int64_t disk_checked_ns;
    bool disk_low, disk_soft_low;
    replica_batch rd; /* READs' buffer, kept from one to the next */
} worker;

struct logstore {
    const wp_config *cfg;
    const wp__logger *lg;
    replica *rs;
    meta *meta;
    int64_t lease_id;
    int lfd, epfd, evfd;
    char addr[128];
    conn *conns[CONNS_MAX];
    uint64_t next_gen;
    uint32_t n_conns, load; /* load: atomic (the lease thread reads it) */
    worker *workers;
    int n_workers;
    pthread_mutex_t done_mu;
    job *done_head, *done_tail;
    job *parked; /* loop only */
    pthread_t loop_thr, lease_thr;
    pthread_mutex_t stop_mu;
    pthread_cond_t stop_cond;
    bool stop;
    bool failed; /* atomic */
    bool lease_started, loop_started;
    int64_t started_ms;
    httpd *http; /* GET /metrics on node.metrics_listen, or NULL */
    bool draining;     /* atomic: takes no new segments (logstore_drain) */
    bool repost;       /* under stop_mu: the lease thread puts the record now */
    uint32_t n_parked; /* held READs (atomic: the metrics thread reads it) */
    int64_t lease_pub; /* lease_id as published to the uploader (atomic) */
    uploader *up;      /* tiering: uploads, drops (upload.h) */
    wp_client *gc;     /* GC and retention of every log, with no client running */
    int64_t drain_ns;  /* atomic: when the drain began (0: not draining) */
};

/* ---- metrics (per process: a server process runs one logstore) ---------- */

#define N_TYPES 16 /* protocol message types 1..15 */
#define N_CODES 32
static _Atomic uint64_t srv_requests[N_TYPES], srv_request_bytes, srv_errors[N_CODES];

/* ---- answers ----------------------------------------------------------- */

static int answer(job *j, const proto_msg *m)
{
    size_t cap = proto_frame_size(m);
    j->ans = malloc(cap ? cap : 1);
    if (!j->ans)
        return wp__err(WP_ENOMEM, "answer of %zu bytes", cap);
    int rc = proto_encode(j->version, j->req_id, m, j->ans, cap, &j->ans_len);
    if (rc) {
        free(j->ans);
        j->ans = NULL;
    }
    return rc;
}

static void answer_error(job *j, int rc, const char *msg)
{
    if (rc < PROTO_ERR_CODE_MIN || rc >= 0)
        rc = WP_EIO;
    if (-rc < N_CODES)
        atomic_fetch_add_explicit(&srv_errors[-rc], 1, memory_order_relaxed);
    proto_msg m = {.type = PROTO_ERROR};
    m.u.error = (proto_error){.code = rc, .msg = msg, .msg_len = strnlen(msg, PROTO_ERRMSG_MAX)};
    if (answer(j, &m) != WP_OK)
        j->ans_len = 0; /* cannot even say why: the loop closes the connection */
}

static void answer_state(job *j, uint16_t type, const replica_state *st)
{
    proto_msg m = {.type = type};
    int64_t lac = st->lac;
    if (st->completed && lac > st->last)
        lac = st->last;
    m.u.state = (proto_seg_state){.last_durable = st->last, .lac = lac,
                                  .flags = st->completed ? PROTO_SEG_COMPLETED : 0};
    if (answer(j, &m) != WP_OK)
        answer_error(j, WP_EIO, wp_errmsg());
}

/* ---- workers ----------------------------------------------------------- */

/* The watermarks: below the soft one (node.disk_soft_reserve_bytes, at
 * least the hard one) no new segments; below the hard one
 * (node.disk_reserve_bytes) no ADDs at all. */
static uint64_t soft_reserve(const wp_config *cfg)
{
    int64_t soft = cfg->node_disk_soft_reserve_bytes, hard = cfg->node_disk_reserve_bytes;
    return (uint64_t)(soft > hard ? soft : hard);
}

static void disk_check(worker *w)
{
    int64_t now = wp__now_ns();
    if (now - w->disk_checked_ns >= DISK_CHECK_NS) {
        replica_stats st;
        bool ok = replica_stats_get(w->ls->rs, &st) == WP_OK;
        w->disk_low = ok && st.disk_free < (uint64_t)w->ls->cfg->node_disk_reserve_bytes;
        w->disk_soft_low = ok && st.disk_free < soft_reserve(w->ls->cfg);
        w->disk_checked_ns = now;
    }
}

static bool disk_low(worker *w)
{
    disk_check(w);
    return w->disk_low;
}

/* Below the soft watermark or draining, and the ADDs (entries of them in
 * all) would create a copy. */
static bool refuses_new_segment(worker *w, const proto_add *a, uint32_t entries)
{
    disk_check(w);
    replica_state st;
    return (w->disk_soft_low || __atomic_load_n(&w->ls->draining, __ATOMIC_RELAXED)) &&
           entries > 0 &&
           replica_state_get(w->ls->rs, a->log_id, a->segment_id, &st) == WP_ENOENT;
}

/* How many jobs from j on are ADDs of j's segment and epoch whose entries
 * follow each other (one block, one sync), within the group bounds. */
static int add_group(const job *j, size_t *bytes, uint32_t *entries)
{
    const proto_add *a = &j->msg.u.add;
    int n = 1;
    *bytes = a->records_len;
    *entries = a->n_entries;
    int64_t next = a->first_entry_id + a->n_entries;
    for (const job *k = j->next; k && k->msg.type == PROTO_ADD; k = k->next) {
        const proto_add *b = &k->msg.u.add;
        if (b->log_id != a->log_id || b->segment_id != a->segment_id || b->epoch != a->epoch ||
            b->n_entries == 0 || b->first_entry_id != next ||
            *bytes + b->records_len > GROUP_BYTES_MAX || *entries + b->n_entries > PROTO_ENTRIES_MAX)
            break;
        *bytes += b->records_len;
        *entries += b->n_entries;
        next += b->n_entries;
        n++;
    }
    return n;
}

/* Runs the ADDs j .. (n of them) as one; returns the job after them. */
static job *run_adds(worker *w, job *j)
{
    size_t bytes;
    uint32_t entries;
    int n = add_group(j, &bytes, &entries);
    const proto_add *a = &j->msg.u.add;
    int64_t lac = a->lac;
    uint8_t *buf = NULL;
    const uint8_t *recs = a->records;
    job *k = j;
    int rc = WP_OK;
    /* The group's entries, not its first ADD's: a LAC-only ADD may head it. */
    if (entries > 0 && disk_low(w))
        rc = wp__err(WP_ENOSPC, "logstore: free disk below node.disk_reserve_bytes (%" PRId64 ")",
                     w->ls->cfg->node_disk_reserve_bytes);
    else if (refuses_new_segment(w, a, entries))
        rc = __atomic_load_n(&w->ls->draining, __ATOMIC_RELAXED)
                 ? wp__err(WP_EUNAVAILABLE, "logstore: draining: no new segments")
                 : wp__err(WP_ENOSPC, "logstore: free disk below node.disk_soft_reserve_bytes (%" PRIu64
                           "): no new segments", soft_reserve(w->ls->cfg));
    else if (n > 1 && !(buf = malloc(bytes)))
        rc = wp__err(WP_ENOMEM, "logstore: %zu bytes of ADDs", bytes);
    if (rc == WP_OK && buf) {
        size_t off = 0;
        for (int i = 0; i < n; i++, k = k->next) {
            memcpy(buf + off, k->msg.u.add.records, k->msg.u.add.records_len);
            off += k->msg.u.add.records_len;
            if (k->msg.u.add.lac > lac)
                lac = k->msg.u.add.lac;
        }
        recs = buf;
    }
    replica_state st = {0};
    if (rc == WP_OK)
        rc = replica_add(w->ls->rs, a->log_id, a->segment_id, a->epoch, a->first_entry_id, entries,
                         recs, bytes, lac, &st);
    free(buf);
    char why[PROTO_ERRMSG_MAX];
    snprintf(why, sizeof why, "%s", rc ? wp_errmsg() : "");
    k = j;
    for (int i = 0; i < n; i++, k = k->next) {
        if (rc) {
            answer_error(k, rc, why);
            continue;
        }
        proto_msg m = {.type = PROTO_ADD_ANS, .u.add_ans = {.last_durable = st.last}};
        if (answer(k, &m) != WP_OK)
            answer_error(k, WP_EIO, wp_errmsg());
        k->added = true;
    }
    return k;
}

static void run_read(worker *w, job *j)
{
    const proto_read *q = &j->msg.u.read;
    replica_state st = {0};
    replica_batch b = w->rd;
    /* A confirmed read goes up to the LAC the replica heard of; recovery
     * (UNCONFIRMED) up to what it holds. */
    int rc = replica_read(w->ls->rs, q->log_id, q->segment_id, q->from_entry_id, INT64_MAX,
                          q->max_bytes, &b, &st);
    w->rd = b; /* the buffer, for the next READ */
    int64_t upto = (q->flags & PROTO_READ_UNCONFIRMED) || st.completed ? st.last : st.lac;
    if (rc == WP_OK && b.n > 0 && b.first + (int64_t)b.n - 1 > upto) { /* trim to the LAC */
        size_t off = 0;
        uint32_t keep = upto >= b.first ? (uint32_t)(upto - b.first + 1) : 0;
        for (uint32_t i = 0; i < keep; i++) {
            rec_view v;
            size_t used;
            if (rec_decode(b.buf + off, b.len - off, &v, &used))
                break;
            off += used;
        }
        b.n = keep;
        b.len = keep ? off : 0;
    }
    bool nothing = (rc == WP_OK && b.n == 0 && !st.completed) || (rc == WP_ENOENT && !st.deleted);
    if (nothing && q->wait_ms > 0 && !j->final) {
        j->park = true;
        return;
    }
    if (rc) {
        answer_error(j, rc, wp_errmsg());
    } else {
        proto_msg m = {.type = PROTO_READ_ANS};
        int64_t lac = st.completed && st.lac > st.last ? st.last : st.lac;
        m.u.read_ans = (proto_read_ans){.first_entry_id = q->from_entry_id, .lac = lac,
                                        .last_durable = st.last, .n_entries = b.n,
                                        .flags = st.completed ? PROTO_SEG_COMPLETED : 0,
                                        .records = b.buf, .records_len = b.len};
        if (answer(j, &m) != WP_OK)
            answer_error(j, WP_EIO, wp_errmsg());
    }
}

/* Runs one job (an ADD group counts as one); returns the next to run. */
static job *run_job(worker *w, job *j)
{
    replica *rs = w->ls->rs;
    replica_state st = {0};
    int rc;
    switch (j->msg.type) {
    case PROTO_ADD:
        return run_adds(w, j);
    case PROTO_READ:
        run_read(w, j);
        break;
    case PROTO_FENCE: {
        const proto_fence *f = &j->msg.u.fence;
        rc = replica_fence(rs, f->log_id, f->segment_id, f->epoch, &st);
        if (rc)
            answer_error(j, rc, wp_errmsg());
        else
            answer_state(j, PROTO_FENCE_ANS, &st);
        break;
    }
    case PROTO_READ_LAC:
        rc = replica_state_get(rs, j->msg.u.read_lac.log_id, j->msg.u.read_lac.segment_id, &st);
        if (rc)
            answer_error(j, rc, wp_errmsg());
        else
            answer_state(j, PROTO_READ_LAC_ANS, &st);
        break;
    case PROTO_COMPLETE: {
        const proto_complete *c = &j->msg.u.complete;
        rc = replica_complete(rs, c->log_id, c->segment_id, c->epoch, c->last_entry_id, &st);
        if (rc)
            answer_error(j, rc, wp_errmsg());
        else
            answer_state(j, PROTO_COMPLETE_ANS, &st);
        j->added = rc == WP_OK; /* held READs: up to the last entry, or the end */
        if (rc == WP_OK && w->ls->up)
            uploader_kick(w->ls->up); /* completed: upload it without waiting */
        break;
    }
    case PROTO_DELETE: {
        rc = replica_delete(rs, j->msg.u.del.log_id, j->msg.u.del.segment_id);
        proto_msg m = {.type = PROTO_DELETE_ANS};
        if (rc || answer(j, &m) != WP_OK)
            answer_error(j, rc ? rc : WP_EIO, wp_errmsg());
        j->added = true; /* held READs: the copy is gone */
        break;
    }
    default:
        answer_error(j, WP_EINVAL, "logstore: not a request a worker runs");
    }
    return j->next;
}

static void done_push(logstore *ls, job *first, job *stop_at)
{
    pthread_mutex_lock(&ls->done_mu);
    for (job *j = first; j != stop_at;) {
        job *next = j->next;
        j->next = NULL;
        if (ls->done_tail)
            ls->done_tail->next = j;
        else
            ls->done_head = j;
        ls->done_tail = j;
        j = next;
    }
    pthread_mutex_unlock(&ls->done_mu);
    uint64_t one = 1;
    (void)!write(ls->evfd, &one, sizeof one);
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (!w->head && !w->stop)
            pthread_cond_wait(&w->cond, &w->mu);
        if (!w->head)
            break;
        job *batch = w->head;
        w->head = w->tail = NULL;
        pthread_mutex_unlock(&w->mu);
        for (job *j = batch; j;) {
            job *next = run_job(w, j);
            done_push(w->ls, j, next);
            j = next;
        }
        pthread_mutex_lock(&w->mu);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

/* The log and segment a request is about (DELETE: segment -1 for all). */
static void job_segment(const job *j, int64_t *log_id_out, int64_t *seg_id_out)
{
    int64_t log_id = 0, seg_id = 0;
    switch (j->msg.type) {
    case PROTO_ADD: log_id = j->msg.u.add.log_id, seg_id = j->msg.u.add.segment_id; break;
    case PROTO_FENCE: log_id = j->msg.u.fence.log_id, seg_id = j->msg.u.fence.segment_id; break;
    case PROTO_READ: log_id = j->msg.u.read.log_id, seg_id = j->msg.u.read.segment_id; break;
    case PROTO_READ_LAC: log_id = j->msg.u.read_lac.log_id, seg_id = j->msg.u.read_lac.segment_id; break;
    case PROTO_COMPLETE: log_id = j->msg.u.complete.log_id, seg_id = j->msg.u.complete.segment_id; break;
    case PROTO_DELETE: log_id = j->msg.u.del.log_id, seg_id = j->msg.u.del.segment_id; break;
    default: break;
    }
    *log_id_out = log_id;
    *seg_id_out = seg_id;
}

static void dispatch(logstore *ls, job *j)
{
    int64_t log_id, seg_id;
    job_segment(j, &log_id, &seg_id);
    if (seg_id < 0)
        seg_id = 0;
    uint64_t h = (uint64_t)log_id * 0x9E3779B97F4A7C15ULL ^ (uint64_t)seg_id * 0xC2B2AE3D27D4EB4FULL;
    worker *w = &ls->workers[(h >> 33) % (uint64_t)ls->n_workers];
    j->next = NULL;
    pthread_mutex_lock(&w->mu);
    if (w->tail)
        w->tail->next = j;
    else
        w->head = j;
    w->tail = j;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->mu);
}

/* ---- connections (event loop only) ------------------------------------- */

static void job_free(job *j)
{
    free(j->body);
    free(j->ans);
    free(j);
}

static void conn_close(logstore *ls, conn *c, const char *why)
{
    if (why)
        wp__log(ls->lg, WP_LOG_WARN, "logstore: closing connection %d: %s", c->fd, why);
    epoll_ctl(ls->epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    ls->conns[c->fd] = NULL;
    ls->n_conns--;
    __atomic_sub_fetch(&ls->load, (uint32_t)c->n_ids, __ATOMIC_RELAXED);
    proto_reader_free(&c->rd);
    free(c->out);
    free(c->stash);
    free(c);
}

static void conn_events(logstore *ls, conn *c)
{
    struct epoll_event ev = {.data.fd = c->fd};
    if (!c->paused && !c->closing)
        ev.events |= EPOLLIN;
    if (c->out_len > c->out_off)
        ev.events |= EPOLLOUT;
    epoll_ctl(ls->epfd, EPOLL_CTL_MOD, c->fd, &ev);
}

static int conn_queue(conn *c, const uint8_t *b, size_t len)
{
    if (c->out_off == c->out_len)
        c->out_off = c->out_len = 0;
    if (c->out_len + len > c->out_cap) {
        size_t cap = c->out_cap ? c->out_cap : 64 * 1024;
        while (cap < c->out_len + len)
            cap *= 2;
        uint8_t *nb = realloc(c->out, cap);
        if (!nb)
            return WP_ENOMEM;
        c->out = nb;
        c->out_cap = cap;
    }
    memcpy(c->out + c->out_len, b, len);
    c->out_len += len;
    return WP_OK;
}

/* Writes what it can; false if the connection was closed. */
static bool conn_flush(logstore *ls, conn *c)
{
    while (c->out_off < c->out_len) {
        ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        if (n <= 0) {
            conn_close(ls, c, strerror(errno));
            return false;
        }
        c->out_off += (size_t)n;
    }
    if (c->closing && c->out_off == c->out_len) {
        conn_close(ls, c, NULL);
        return false;
    }
    if (c->n_ids >= PROTO_INFLIGHT_MAX || c->out_len - c->out_off > OUT_PAUSE_BYTES || c->stash)
        c->paused = true; /* resumed by maybe_resume once it has room */
    conn_events(ls, c);
    return true;
}

static void id_remove(conn *c, uint64_t id)
{
    for (int i = 0; i < c->n_ids; i++)
        if (c->ids[i] == id) {
            c->ids[i] = c->ids[--c->n_ids];
            return;
        }
}

static void on_hello(logstore *ls, conn *c, const proto_frame *f)
{
    const proto_hello *h = &f->msg.u.hello;
    uint16_t v = proto_version_choose(h->min_version, h->max_version, PROTO_VERSION_MIN,
                                      PROTO_VERSION_MAX);
    job j = {.req_id = f->h.request_id, .version = PROTO_HELLO_VERSION};
    if (v == 0) {
        answer_error(&j, WP_ENOTSUP, "logstore: no common protocol version");
        c->closing = true;
    } else {
        proto_msg m = {.type = PROTO_HELLO_ANS};
        m.u.hello_ans = (proto_hello_ans){.version = v, .body_max = PROTO_BODY_MAX,
                                          .id = ls->cfg->node_id,
                                          .id_len = strlen(ls->cfg->node_id)};
        if (answer(&j, &m) != WP_OK)
            c->closing = true;
        c->version = v;
        proto_reader_set_version(&c->rd, v);
    }
    if (j.ans && conn_queue(c, j.ans, j.ans_len) != WP_OK)
        c->closing = true;
    free(j.ans);
}

static void on_stats(logstore *ls, conn *c, const proto_frame *f)
{
    replica_stats st = {0};
    job j = {.req_id = f->h.request_id, .version = c->version};
    int rc = replica_stats_get(ls->rs, &st);
    if (rc) {
        answer_error(&j, rc, wp_errmsg());
    } else {
        proto_msg m = {.type = PROTO_STATS_ANS};
        m.u.stats_ans = (proto_stats_ans){.disk_total_bytes = st.disk_total,
                                          .disk_free_bytes = st.disk_free,
                                          .segments = st.segments,
                                          .connections = ls->n_conns,
                                          .load = __atomic_load_n(&ls->load, __ATOMIC_RELAXED)};
        if (answer(&j, &m) != WP_OK)
            answer_error(&j, WP_EIO, wp_errmsg());
    }
    if (!j.ans || conn_queue(c, j.ans, j.ans_len) != WP_OK)
        c->closing = true;
    free(j.ans);
}

/* A request frame: answered here (HELLO, STATS) or made a job. */
static int on_frame(logstore *ls, conn *c, const proto_frame *f)
{
    atomic_fetch_add_explicit(&srv_requests[f->msg.type < N_TYPES ? f->msg.type : 0], 1,
                              memory_order_relaxed);
    atomic_fetch_add_explicit(&srv_request_bytes, f->h.body_len, memory_order_relaxed);
    if (f->msg.type == PROTO_HELLO) {
        on_hello(ls, c, f);
        return WP_OK;
    }
    for (int i = 0; i < c->n_ids; i++)
        if (c->ids[i] == f->h.request_id)
            return wp__err(WP_ECORRUPT, "request id %" PRIu64 " is already in flight",
                           f->h.request_id);
    if (f->msg.type == PROTO_STATS) {
        on_stats(ls, c, f);
        return WP_OK;
    }
    job *j = calloc(1, sizeof *j);
    if (j)
        j->body = malloc(f->h.body_len ? f->h.body_len : 1);
    if (!j || !j->body) {
        free(j);
        return wp__err(WP_ENOMEM, "job");
    }
    memcpy(j->body, f->body, f->h.body_len);
    j->h = f->h;
    int rc = proto_decode(&j->h, j->body, &j->msg); /* point into our copy */
    if (rc) {
        job_free(j);
        return rc;
    }
    j->fd = c->fd;
    j->gen = c->gen;
    j->req_id = f->h.request_id;
    j->version = c->version;
    c->ids[c->n_ids++] = j->req_id;
    __atomic_add_fetch(&ls->load, 1, __ATOMIC_RELAXED);
    dispatch(ls, j);
    return WP_OK;
}

/* Feeds bytes to the frame reader and handles the frames; stops (keeping
 * the rest in c->stash) once PROTO_INFLIGHT_MAX requests are in flight.
 * False if the connection was closed. */
static bool conn_feed(logstore *ls, conn *c, const uint8_t *data, size_t len)
{
    size_t off = 0;
    while (off < len) {
        if (c->n_ids >= PROTO_INFLIGHT_MAX) { /* backpressure: the rest waits */
            uint8_t *st = malloc(len - off);
            if (!st) {
                conn_close(ls, c, "out of memory");
                return false;
            }
            memcpy(st, data + off, len - off);
            c->stash = st;
            c->stash_len = len - off;
            c->paused = true;
            return true;
        }
        size_t used = 0;
        proto_frame f;
        int rc = proto_reader_feed(&c->rd, data + off, len - off, &used, &f);
        off += used;
        if (rc == WP_EAGAIN)
            break;
        if (rc == WP_OK)
            rc = on_frame(ls, c, &f);
        if (rc) {
            char why[300];
            snprintf(why, sizeof why, "%s", wp_errmsg());
            conn_close(ls, c, why);
            return false;
        }
    }
    return true;
}

static void conn_read(logstore *ls, conn *c)
{
    static uint8_t buf[READ_CHUNK]; /* the loop thread only */
    for (int rounds = 0; rounds < 16 && !c->paused && !c->closing; rounds++) {
        ssize_t n = recv(c->fd, buf, sizeof buf, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        if (n <= 0) {
            conn_close(ls, c, n < 0 ? strerror(errno) :
                       proto_reader_pending(&c->rd) ? "peer closed inside a frame" : NULL);
            return;
        }
        if (!conn_feed(ls, c, buf, (size_t)n))
            return;
    }
    conn_flush(ls, c);
}

/* A paused connection may go on: its stashed bytes first. */
static void conn_resume(logstore *ls, conn *c)
{
    c->paused = false;
    if (c->stash) {
        uint8_t *st = c->stash;
        size_t len = c->stash_len;
        c->stash = NULL;
        c->stash_len = 0;
        bool alive = conn_feed(ls, c, st, len);
        free(st);
        if (!alive)
            return;
    }
    conn_flush(ls, c);
}

static void on_accept(logstore *ls)
{
    for (;;) {
        int fd = accept4(ls->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return; /* EAGAIN, or a transient error: the next event retries */
        if (fd >= CONNS_MAX) {
            wp__log(ls->lg, WP_LOG_WARN, "logstore: %d connections: refusing one", CONNS_MAX);
            close(fd);
            continue;
        }
        conn *c = calloc(1, sizeof *c);
        if (!c) {
            close(fd);
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        c->fd = fd;
        c->gen = ++ls->next_gen;
        proto_reader_init(&c->rd, PROTO_SIDE_SERVER, 0);
        struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
        if (epoll_ctl(ls->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
            close(fd);
            free(c);
            continue;
        }
        ls->conns[fd] = c;
        ls->n_conns++;
    }
}

static conn *conn_of(logstore *ls, const job *j)
{
    conn *c = j->fd >= 0 && j->fd < CONNS_MAX ? ls->conns[j->fd] : NULL;
    return c && c->gen == j->gen ? c : NULL;
}

/* Held READs of the segment an ADD just wrote to: run them again. */
static void wake_parked(logstore *ls, const job *done)
{
    int64_t log_id, seg_id;
    job_segment(done, &log_id, &seg_id);
    for (job **pp = &ls->parked; *pp;) {
        job *j = *pp;
        if (j->msg.u.read.log_id == log_id &&
            (j->msg.u.read.segment_id == seg_id || seg_id < 0)) {
            *pp = j->next;
            j->park = false;
            dispatch(ls, j);
        } else {
            pp = &j->next;
        }
    }
}

/* A paused connection goes on once it has room again: fewer requests in
 * flight and its answers written out (after a delivery, or a flush). */
static void maybe_resume(logstore *ls, conn *c)
{
    if (c->paused && !c->closing && c->n_ids < PROTO_INFLIGHT_MAX &&
        c->out_len - c->out_off <= OUT_PAUSE_BYTES)
        conn_resume(ls, c);
}

static void deliver(logstore *ls, job *j)
{
    conn *c = conn_of(ls, j);
    if (!c) {
        job_free(j);
        return;
    }
    if (j->park) {
        if (!j->deadline_ns) /* the first time: a READ woken for nothing keeps it */
            j->deadline_ns = wp__now_ns() + (int64_t)j->msg.u.read.wait_ms * 1000000LL;
        j->next = ls->parked;
        ls->parked = j;
        return;
    }
    if (j->added)
        wake_parked(ls, j);
    id_remove(c, j->req_id);
    __atomic_sub_fetch(&ls->load, 1, __ATOMIC_RELAXED);
    if (!j->ans_len || conn_queue(c, j->ans, j->ans_len) != WP_OK)
        c->closing = true;
    job_free(j);
    if (conn_flush(ls, c))
        maybe_resume(ls, c);
}

static void on_done(logstore *ls)
{
    uint64_t v;
    (void)!read(ls->evfd, &v, sizeof v);
    pthread_mutex_lock(&ls->done_mu);
    job *list = ls->done_head;
    ls->done_head = ls->done_tail = NULL;
    pthread_mutex_unlock(&ls->done_mu);
    while (list) {
        job *next = list->next;
        deliver(ls, list);
        list = next;
    }
}

/* Held READs whose wait is over: run once more, answering whatever. */
static int64_t expire_parked(logstore *ls)
{
    int64_t now = wp__now_ns(), next = now + 1000000000LL;
    uint32_t held = 0;
    for (job **pp = &ls->parked; *pp;) {
        job *j = *pp;
        if (!conn_of(ls, j)) {
            *pp = j->next;
            job_free(j);
        } else if (j->deadline_ns <= now) {
            *pp = j->next;
            j->park = false;
            j->final = true;
            dispatch(ls, j);
        } else {
            if (j->deadline_ns < next)
                next = j->deadline_ns;
            pp = &j->next;
            held++;
        }
    }
    __atomic_store_n(&ls->n_parked, held, __ATOMIC_RELAXED);
    return next;
}

static bool stopping(logstore *ls)
{
    pthread_mutex_lock(&ls->stop_mu);
    bool s = ls->stop;
    pthread_mutex_unlock(&ls->stop_mu);
    return s;
}

static void *loop_main(void *arg)
{
    logstore *ls = arg;
    struct epoll_event evs[EVENTS_MAX];
    while (!stopping(ls)) {
        int64_t next = expire_parked(ls);
        int64_t wait_ms = (next - wp__now_ns()) / 1000000LL + 1;
        int n = epoll_wait(ls->epfd, evs, EVENTS_MAX, wait_ms > 1000 ? 1000 : (int)wait_ms);
        if (n < 0 && errno != EINTR) {
            wp__log(ls->lg, WP_LOG_ERROR, "logstore: epoll_wait: %s", strerror(errno));
            __atomic_store_n(&ls->failed, true, __ATOMIC_SEQ_CST);
            break;
        }
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == ls->lfd) {
                on_accept(ls);
            } else if (fd == ls->evfd) {
                on_done(ls);
            } else if (fd >= 0 && fd < CONNS_MAX && ls->conns[fd]) {
                conn *c = ls->conns[fd];
                if (evs[i].events & (EPOLLERR | EPOLLHUP) && !(evs[i].events & EPOLLIN))
                    conn_close(ls, c, NULL);
                else if (evs[i].events & EPOLLIN)
                    conn_read(ls, c);
                else if ((evs[i].events & EPOLLOUT) && conn_flush(ls, c))
                    maybe_resume(ls, c);
            }
        }
    }
    return NULL;
}

/* ---- registration ------------------------------------------------------ */

/* Puts the node record: its address, zone, free space and load now. */
static int node_put(logstore *ls)
{
    replica_stats st = {0};
    (void)replica_stats_get(ls->rs, &st);
    /* What it can still take: placement skips a server that reports 0. */
    uint64_t reserve = soft_reserve(ls->cfg);
    uint64_t room = st.disk_free > reserve ? st.disk_free - reserve : 0;
    if (__atomic_load_n(&ls->draining, __ATOMIC_RELAXED))
        room = 0; /* no new segments: placement skips it, writers roll away */
    upload_view uv = {0};
    if (ls->up)
        uploader_view(ls->up, &uv);
    meta_node n = {.lease_id = ls->lease_id, .registered_ms = ls->started_ms,
                   .disk_free = (int64_t)(room > INT64_MAX ? INT64_MAX : room),
                   .load = __atomic_load_n(&ls->load, __ATOMIC_RELAXED),
                   .segments = (int64_t)st.segments, .upload_segments = uv.waiting,
                   .upload_bytes = uv.waiting_bytes, .upload_lag_ms = uv.lag_ms};
    snprintf(n.id, sizeof n.id, "%s", ls->cfg->node_id);
    snprintf(n.kind, sizeof n.kind, "logstore");
    snprintf(n.zone, sizeof n.zone, "%s", ls->cfg->node_zone);
    snprintf(n.addr, sizeof n.addr, "%s", ls->addr);
    return ls->meta->ops->node_put(ls->meta, &n);
}

static int node_register(logstore *ls)
{
    int rc = ls->meta->ops->lease_grant(ls->meta, LEASE_TTL_MS, &ls->lease_id);
    if (rc == WP_OK)
        __atomic_store_n(&ls->lease_pub, ls->lease_id, __ATOMIC_RELAXED);
    return rc ? rc : node_put(ls);
}

static void *lease_main(void *arg)
{
    logstore *ls = arg;
    pthread_mutex_lock(&ls->stop_mu);
    while (!ls->stop) {
        int64_t due = wp__now_ns() + LEASE_TTL_MS / 3 * 1000000LL;
        struct timespec ts = {due / 1000000000LL, due % 1000000000LL};
        while (!ls->stop && !ls->repost &&
               pthread_cond_timedwait(&ls->stop_cond, &ls->stop_mu, &ts) == 0)
            ;
        if (ls->stop)
            break;
        ls->repost = false;
        pthread_mutex_unlock(&ls->stop_mu);
        int rc = ls->meta->ops->lease_keepalive(ls->meta, ls->lease_id);
        if (rc == WP_ENOENT) { /* expired: register again */
            wp__log(ls->lg, WP_LOG_WARN, "logstore: lease expired; registering again");
            rc = node_register(ls);
        } else if (rc == WP_OK) {
            rc = node_put(ls); /* fresh free space and load for placement */
        }
        if (rc)
            wp__log(ls->lg, WP_LOG_WARN, "logstore: keeping the registration: %s (%s)",
                    wp_strerror(rc), wp_errmsg());
        pthread_mutex_lock(&ls->stop_mu);
    }
    pthread_mutex_unlock(&ls->stop_mu);
    return NULL;
}

/* ---- start and stop ---------------------------------------------------- */

static int listen_on(logstore *ls, const char *spec)
{
    return net_listen(spec, "node.listen", &ls->lfd, ls->addr, sizeof ls->addr);
}

static int start_threads(logstore *ls)
{
    ls->n_workers = (int)ls->cfg->node_workers;
    ls->workers = calloc((size_t)ls->n_workers, sizeof *ls->workers);
    if (!ls->workers)
        return wp__err(WP_ENOMEM, "workers");
    for (int i = 0; i < ls->n_workers; i++) {
        worker *w = &ls->workers[i];
        w->ls = ls;
        pthread_mutex_init(&w->mu, NULL);
        pthread_cond_init(&w->cond, NULL);
        if (pthread_create(&w->thr, NULL, worker_main, w) != 0) {
            ls->n_workers = i;
            return wp__err(WP_ENOMEM, "cannot start worker %d", i);
        }
    }
    if (pthread_create(&ls->loop_thr, NULL, loop_main, ls) != 0)
        return wp__err(WP_ENOMEM, "cannot start the event loop");
    ls->loop_started = true;
    if (pthread_create(&ls->lease_thr, NULL, lease_main, ls) != 0)
        return wp__err(WP_ENOMEM, "cannot start the lease thread");
    ls->lease_started = true;
    return WP_OK;
}

static void srv_metric(wp__prom *p, const char *name, const char *help, int kind,
                       const char *labels, double v)
{
    wp_metric m = {.name = name, .help = help, .kind = kind, .labels = labels, .value = v};
    wp__prom_metric(p, &m);
}

/* GET /metrics: the process's metrics (fdatasync latency among them) and
 * the server's own. */
static char *metrics_text(void *arg, size_t *len)
{
    logstore *ls = arg;
    wp__prom p = {0};
    wp__metrics_visit(wp__prom_metric, &p);
    for (int t = 1; t < N_TYPES; t++) {
        const char *name = proto_type_name((uint16_t)t);
        if (strcmp(name, "unknown") == 0 || strstr(name, "_ANS") || strcmp(name, "ERROR") == 0)
            continue;
        char labels[48];
        snprintf(labels, sizeof labels, "type=\"%s\"", name);
        srv_metric(&p, "wp_logstore_requests_total", "Requests received, by type.",
                   WP_METRIC_COUNTER, labels, (double)atomic_load(&srv_requests[t]));
    }
    srv_metric(&p, "wp_logstore_request_bytes_total", "Bytes of request bodies received.",
               WP_METRIC_COUNTER, "", (double)atomic_load(&srv_request_bytes));
    for (int rc = -1; rc > -N_CODES; rc--) {
        const char *text = wp_strerror(rc);
        if (!text || strcmp(text, "unknown error") == 0)
            continue;
        char labels[48];
        snprintf(labels, sizeof labels, "code=\"%d\"", rc);
        srv_metric(&p, "wp_logstore_errors_total", "Requests answered with an error, by WP_E* code.",
                   WP_METRIC_COUNTER, labels, (double)atomic_load(&srv_errors[-rc]));
    }
    replica_stats st = {0};
    (void)replica_stats_get(ls->rs, &st);
    srv_metric(&p, "wp_logstore_connections", "Client connections open.", WP_METRIC_GAUGE, "",
               (double)__atomic_load_n(&ls->n_conns, __ATOMIC_RELAXED));
    srv_metric(&p, "wp_logstore_load", "Requests in progress.", WP_METRIC_GAUGE, "",
               (double)__atomic_load_n(&ls->load, __ATOMIC_RELAXED));
    srv_metric(&p, "wp_logstore_held_reads", "READs held until entries come.", WP_METRIC_GAUGE,
               "", (double)__atomic_load_n(&ls->n_parked, __ATOMIC_RELAXED));
    srv_metric(&p, "wp_logstore_segments", "Segment copies held on disk.", WP_METRIC_GAUGE, "",
               (double)st.segments);
    srv_metric(&p, "wp_logstore_disk_free_bytes", "Free bytes of the data directory's file system.",
               WP_METRIC_GAUGE, "", (double)st.disk_free);
    srv_metric(&p, "wp_logstore_disk_total_bytes", "Size of the data directory's file system.",
               WP_METRIC_GAUGE, "", (double)st.disk_total);
    upload_view uv = {0};
    uploader_view(ls->up, &uv);
    uint64_t up_n, up_bytes, up_fail, up_drop, up_take;
    uploader_counters(&up_n, &up_bytes, &up_fail, &up_drop, &up_take);
    srv_metric(&p, "wp_logstore_upload_waiting_segments", "Completed segments held here and not "
               "yet in object storage.", WP_METRIC_GAUGE, "", (double)uv.waiting);
    srv_metric(&p, "wp_logstore_upload_waiting_bytes", "Their bytes.", WP_METRIC_GAUGE, "",
               (double)uv.waiting_bytes);
    srv_metric(&p, "wp_logstore_upload_lag_seconds", "Age of the oldest of them since it was "
               "completed.", WP_METRIC_GAUGE, "", (double)uv.lag_ms / 1000.0);
    srv_metric(&p, "wp_logstore_uploads_total", "Segments this server uploaded and sealed.",
               WP_METRIC_COUNTER, "", (double)up_n);
    srv_metric(&p, "wp_logstore_upload_bytes_total", "Bytes of those segments.", WP_METRIC_COUNTER,
               "", (double)up_bytes);
    srv_metric(&p, "wp_logstore_upload_failures_total", "Upload attempts that failed (tried again "
               "later).", WP_METRIC_COUNTER, "", (double)up_fail);
    srv_metric(&p, "wp_logstore_upload_takeovers_total", "Uploads that started over an earlier "
               "claimant's objects.", WP_METRIC_COUNTER, "", (double)up_take);
    srv_metric(&p, "wp_logstore_dropped_total", "Copies dropped: sealed in object storage, or "
               "deleted, for node.drop_grace_ms.", WP_METRIC_COUNTER, "", (double)up_drop);
    if (p.failed) {
        free(p.buf);
        return NULL;
    }
    *len = p.len;
    return p.buf;
}

/* GC and retention (docs/metadata.md §3.2) of every log, run by the
 * servers so that they happen with no client running: an embedded client
 * of the same metadata, whose background thread runs the GC passes
 * (gc.interval_ms; several servers doing so is safe: every step is a CAS
 * or idempotent). Its storage is the quorum backend, with the object
 * storage of sealed segments when storage.s3.bucket is set. */
static int gc_start(logstore *ls)
{
    wp_config *c = malloc(sizeof *c);
    if (!c)
        return wp__err(WP_ENOMEM, "gc client config");
    *c = *ls->cfg;
    snprintf(c->storage_type, sizeof c->storage_type, "quorum");
    int rc = wp_client_open(c, &ls->gc);
    free(c);
    return rc;
}

/* ---- the data directory's identity (docs/protocol.md §5.3) ---------------- */

#define INSTANCE_HEX 32 /* 128 random bits */

/* Writes node.data_dir/instance ("<node id> <hex>\n") durably: a new file
 * synced, renamed into place, the directory synced. */
static int instance_write(const char *dir, const char *path, const char *text)
{
    char tmp[WP_PATH_MAX + 32];
    snprintf(tmp, sizeof tmp, "%s.new", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return wp__err_sys(errno, "open", tmp);
    struct iovec v = {(void *)text, strlen(text)};
    int rc = os_pwritev_full(fd, &v, 1, 0, tmp);
    if (rc == WP_OK)
        rc = os_fdatasync(fd, tmp);
    close(fd);
    if (rc == WP_OK && rename(tmp, path) != 0)
        rc = wp__err_sys(errno, "rename", tmp);
    if (rc == WP_OK)
        rc = os_fsync_path(dir);
    return rc;
}

/* A server answers "I hold no copy" for every segment it lacks, and the
 * quorum rules count that as "absent": a server that lost its disk and
 * comes back under its old node id would have recovery cut entries it
 * once acknowledged. So the data directory is bound to the node id: its
 * file `instance` holds the id and a random instance made at the first
 * start, and the metadata record logstore/instances/<node id> holds the
 * same instance. A directory without the file while the record exists
 * lost its data: the server refuses to start (a new node id, or the
 * record deleted by the operator, lets it). */
static int identity_check(logstore *ls)
{
    const wp_config *cfg = ls->cfg;
    char path[WP_PATH_MAX + 16], key[META_KV_KEY_MAX + 1];
    char mine[WP_NODE_ID_MAX + INSTANCE_HEX + 4];
    snprintf(path, sizeof path, "%s/instance", cfg->node_data_dir);
    snprintf(key, sizeof key, "logstore/instances/%s", cfg->node_id);
    char inst[INSTANCE_HEX + 1] = "";
    FILE *f = fopen(path, "re");
    if (f) {
        char line[sizeof mine + 2] = "", id[WP_NODE_ID_MAX + 2] = "";
        bool ok = fgets(line, sizeof line, f) != NULL &&
                  sscanf(line, "%129s %32[0-9a-f]", id, inst) == 2 &&
                  strlen(inst) == INSTANCE_HEX;
        fclose(f);
        if (!ok)
            return wp__err(WP_ECORRUPT, "%s: not '<node id> <%d hex digits>'", path,
                           INSTANCE_HEX);
        if (strcmp(id, cfg->node_id) != 0)
            return wp__err(WP_EINVAL, "%s: this data directory belongs to node '%s', not to "
                           "node.id '%s'", cfg->node_data_dir, id, cfg->node_id);
    } else if (errno != ENOENT) {
        return wp__err_sys(errno, "open", path);
    }
    meta_kv kv = {0};
    int rc = ls->meta->ops->kv_get(ls->meta, key, &kv);
    if (rc && rc != WP_ENOENT)
        return rc;
    bool recorded = rc == WP_OK;
    bool same = recorded && kv.len == INSTANCE_HEX && inst[0] &&
                memcmp(kv.value, inst, INSTANCE_HEX) == 0;
    char other[INSTANCE_HEX + 1] = "";
    if (recorded)
        snprintf(other, sizeof other, "%.*s", (int)(kv.len < INSTANCE_HEX ? kv.len : INSTANCE_HEX),
                 (const char *)kv.value);
    meta_kv_free(&kv);
    if (recorded && !inst[0])
        return wp__err(WP_EINVAL, "node '%s' held data (instance %s, metadata record %s) that "
                       "%s does not hold: its disk was lost or replaced. Start it under a new "
                       "node.id (the writers recover its segments from the other replicas), or "
                       "delete that record if this directory is meant to start over as '%s'",
                       cfg->node_id, other, key, cfg->node_data_dir, cfg->node_id);
    if (recorded && !same)
        return wp__err(WP_EINVAL, "%s holds instance %s of node '%s', but metadata record %s "
                       "says %s: another directory is that node", cfg->node_data_dir, inst,
                       cfg->node_id, key, other);
    if (same)
        return WP_OK;
    if (!inst[0]) { /* the first start on this directory */
        uint8_t rnd[INSTANCE_HEX / 2];
        if (RAND_bytes(rnd, sizeof rnd) != 1)
            return wp__err(WP_EIO, "logstore: no random bytes for an instance id (OpenSSL)");
        for (size_t i = 0; i < sizeof rnd; i++)
            snprintf(inst + 2 * i, 3, "%02x", rnd[i]);
        snprintf(mine, sizeof mine, "%s %s\n", cfg->node_id, inst);
        if ((rc = instance_write(cfg->node_data_dir, path, mine)))
            return rc;
    }
    /* Recorded only after the directory holds it: a crash in between
     * leaves a directory whose record a restart writes. */
    rc = ls->meta->ops->kv_put(ls->meta, key, inst, INSTANCE_HEX, 0, 0, NULL);
    if (rc == WP_EEXIST)
        return wp__err(WP_ECONFLICT, "metadata record %s appeared while node '%s' started: "
                       "another server with this node.id?", key, cfg->node_id);
    return rc;
}

int logstore_start(const wp_config *cfg, const wp__logger *lg, logstore **out)
{
    if (!cfg->node_id[0])
        return wp__err(WP_EINVAL, "node.id is required for a LogStore server");
    logstore *ls = calloc(1, sizeof *ls);
    if (!ls)
        return wp__err(WP_ENOMEM, "logstore");
    ls->cfg = cfg;
    ls->lg = lg;
    ls->lfd = ls->epfd = ls->evfd = -1;
    ls->started_ms = wp__wall_ms();
    pthread_mutex_init(&ls->done_mu, NULL);
    pthread_mutex_init(&ls->stop_mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&ls->stop_cond, &ca);
    pthread_condattr_destroy(&ca);
    int rc = replica_open(cfg->node_data_dir, lg, &ls->rs);
    if (rc == WP_OK)
        rc = listen_on(ls, cfg->node_listen);
    if (rc == WP_OK && ((ls->epfd = epoll_create1(EPOLL_CLOEXEC)) < 0 ||
                        (ls->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0))
        rc = wp__err_sys(errno, "epoll/eventfd", NULL);
    if (rc == WP_OK) {
        struct epoll_event ev = {.events = EPOLLIN, .data.fd = ls->lfd};
        struct epoll_event ev2 = {.events = EPOLLIN, .data.fd = ls->evfd};
        if (epoll_ctl(ls->epfd, EPOLL_CTL_ADD, ls->lfd, &ev) != 0 ||
            epoll_ctl(ls->epfd, EPOLL_CTL_ADD, ls->evfd, &ev2) != 0)
            rc = wp__err_sys(errno, "epoll_ctl", NULL);
    }
    if (rc == WP_OK)
        rc = meta_open(cfg, &ls->meta);
    if (rc == WP_OK)
        rc = identity_check(ls);
    if (rc == WP_OK)
        rc = node_register(ls);
    if (rc == WP_OK)
        rc = start_threads(ls);
    if (rc == WP_OK)
        rc = uploader_start(cfg, lg, ls->rs, ls->meta, &ls->lease_pub, &ls->up);
    if (rc == WP_OK)
        rc = gc_start(ls);
    if (rc == WP_OK && cfg->node_metrics_listen[0])
        rc = httpd_start(cfg->node_metrics_listen, metrics_text, ls, lg, &ls->http);
    if (rc) {
        char why[WP_ERRMSG_MAX];
        snprintf(why, sizeof why, "%s", wp_errmsg());
        logstore_stop(ls); /* its clean-up may set another message */
        return wp__err(rc, "%s", why);
    }
    wp__log(lg, WP_LOG_INFO, "logstore %s: serving on %s, data in %s", cfg->node_id, ls->addr,
            cfg->node_data_dir);
    *out = ls;
    return WP_OK;
}

const char *logstore_addr(const logstore *ls) { return ls->addr; }

void logstore_drain(logstore *ls)
{
    int64_t zero = 0, now = wp__now_ns();
    __atomic_compare_exchange_n(&ls->drain_ns, &zero, now, false, __ATOMIC_SEQ_CST,
                                __ATOMIC_SEQ_CST);
    __atomic_store_n(&ls->draining, true, __ATOMIC_RELAXED);
    if (ls->up) {
        if (!uploader_uploads(ls->up))
            wp__log(ls->lg, WP_LOG_WARN, "logstore %s: draining without object storage "
                    "(storage.s3.bucket is empty): the completed segments it holds stay here, "
                    "so the drain does not end", ls->cfg->node_id);
        uploader_kick(ls->up);
    }
    pthread_mutex_lock(&ls->stop_mu);
    ls->repost = true; /* the registration says so now, not at the next keepalive */
    pthread_cond_broadcast(&ls->stop_cond);
    pthread_mutex_unlock(&ls->stop_mu);
    wp__log(ls->lg, WP_LOG_INFO, "logstore %s: draining: no new segments", ls->cfg->node_id);
}

const char *logstore_metrics_addr(const logstore *ls)
{
    return ls->http ? httpd_addr(ls->http) : NULL;
}

bool logstore_drained(logstore *ls)
{
    int64_t since = __atomic_load_n(&ls->drain_ns, __ATOMIC_SEQ_CST);
    return since > 0 && ls->up && uploader_holds_nothing_unsealed(ls->up, since);
}

bool logstore_failed(const logstore *ls)
{
    return __atomic_load_n(&ls->failed, __ATOMIC_SEQ_CST);
}

static void free_list(job *j)
{
    while (j) {
        job *next = j->next;
        job_free(j);
        j = next;
    }
}

void logstore_stop(logstore *ls)
{
    if (!ls)
        return;
    httpd_stop(ls->http);
    ls->http = NULL;
    if (ls->gc)
        wp_client_close(ls->gc);
    uploader_stop(ls->up);
    pthread_mutex_lock(&ls->stop_mu);
    ls->stop = true;
    pthread_cond_broadcast(&ls->stop_cond);
    pthread_mutex_unlock(&ls->stop_mu);
    if (ls->evfd >= 0) { /* the loop sees the stop now, not after its epoll timeout */
        uint64_t one = 1;
        (void)!write(ls->evfd, &one, sizeof one);
    }
    if (ls->lease_started)
        pthread_join(ls->lease_thr, NULL);
    if (ls->loop_started)
        pthread_join(ls->loop_thr, NULL);
    for (int i = 0; i < ls->n_workers; i++) {
        worker *w = &ls->workers[i];
        pthread_mutex_lock(&w->mu);
        w->stop = true;
        pthread_cond_signal(&w->cond);
        pthread_mutex_unlock(&w->mu);
        pthread_join(w->thr, NULL);
        free_list(w->head);
        free(w->rd.buf);
        pthread_mutex_destroy(&w->mu);
        pthread_cond_destroy(&w->cond);
    }
    free(ls->workers);
    free_list(ls->done_head);
    free_list(ls->parked);
    for (int fd = 0; fd < CONNS_MAX; fd++)
        if (ls->conns[fd])
            conn_close(ls, ls->conns[fd], NULL);
    if (ls->meta) { /* deregister: clients stop placing segments here */
        ls->meta->ops->node_delete(ls->meta, ls->cfg->node_id);
        if (ls->lease_id)
            ls->meta->ops->lease_revoke(ls->meta, ls->lease_id);
        ls->meta->ops->close(ls->meta);
    }
    if (ls->lfd >= 0)
        close(ls->lfd);
    if (ls->evfd >= 0)
        close(ls->evfd);
    if (ls->epfd >= 0)
        close(ls->epfd);
    replica_close(ls->rs);
    pthread_mutex_destroy(&ls->done_mu);
    pthread_mutex_destroy(&ls->stop_mu);
    pthread_cond_destroy(&ls->stop_cond);
    free(ls);
}
