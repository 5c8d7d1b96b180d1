/* conn.c — a client's pipelined connection to a LogStore server; see conn.h.
 *
 * A request takes a free slot of the in-flight table; its request id is
 * (sequence << SLOT_BITS) | slot, so the reader thread finds an answer's
 * request in one step and checks the whole id. Sends are serialized by a
 * mutex (one frame at a time on the socket); the reader thread is the only
 * one that receives. */
#include "net/conn.h"

#include "base/err.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#define SLOT_BITS 10
_Static_assert((1 << SLOT_BITS) == PROTO_INFLIGHT_MAX, "one slot per request in flight");
#define RECV_CHUNK (256 * 1024)
/* How long a frame may take to go out: a blocking send (pconn_send), and
 * the rest of a frame begun by pconn_send_nowait. Past that the server is
 * taken for gone (it stopped reading) and the connection fails. */
#define SEND_WAIT_MS 10000
#define SEND_FINISH_MS 500

typedef struct {
    uint64_t id; /* 0: free */
    pconn_cb cb;
    void *arg;
    uint16_t type; /* the request's: its answer is type | PROTO_ANSWER, or ERROR */
    int64_t from;  /* a READ's from_entry_id: its answer's first_entry_id */
} slot;

struct pconn {
    int fd;
    uint16_t version;
    char peer[PROTO_ID_MAX + 1];
    char node_id[PROTO_ID_MAX + 1]; /* from HELLO */
    pthread_mutex_t send_mu; /* one frame at a time on the socket */
    pthread_mutex_t mu;      /* slots, n_inflight, dead */
    pthread_cond_t room;
    slot slots[PROTO_INFLIGHT_MAX];
    int n_inflight;
    uint64_t seq;
    bool dead;
    pthread_t reader;
    bool reader_started;
    proto_reader rd;
    uint8_t *in; /* RECV_CHUNK */
    size_t in_off, in_len;
};

/* ---- connecting ---------------------------------------------------------- */

static int connect_to(const char *addr, int timeout_ms, int *out)
{
    char host[256];
    const char *colon = strrchr(addr, ':');
    if (!colon || colon == addr || (size_t)(colon - addr) >= sizeof host)
        return wp__err(WP_EINVAL, "server address '%s': not host:port", addr);
    memcpy(host, addr, (size_t)(colon - addr));
    host[colon - addr] = '\0';
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *ai = NULL;
    int g = getaddrinfo(host, colon + 1, &hints, &ai);
    if (g != 0)
        return wp__err(WP_EUNAVAILABLE, "server %s: %s", addr, gai_strerror(g));
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int rc = fd < 0 ? wp__err_sys(errno, "socket", addr) : WP_OK;
    if (rc == WP_OK && connect(fd, ai->ai_addr, ai->ai_addrlen) != 0 && errno != EINPROGRESS)
        rc = wp__err(WP_EUNAVAILABLE, "server %s: connect: %s", addr, strerror(errno));
    freeaddrinfo(ai);
    if (rc == WP_OK) {
        struct pollfd p = {fd, POLLOUT, 0};
        int err = 0;
        socklen_t el = sizeof err;
        if (poll(&p, 1, timeout_ms) != 1)
            rc = wp__err(WP_EUNAVAILABLE, "server %s: connect timed out after %d ms", addr,
                         timeout_ms);
        else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) != 0 || err != 0)
            rc = wp__err(WP_EUNAVAILABLE, "server %s: connect: %s", addr, strerror(err));
    }
    int one = 1;
    if (rc == WP_OK && (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0 ||
                        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) != 0))
        rc = wp__err_sys(errno, "setsockopt/fcntl", addr);
    if (rc) {
        if (fd >= 0)
            close(fd);
        return rc;
    }
    *out = fd; /* blocking from now on: the reader waits in recv, senders in send */
    return WP_OK;
}

/* Sends a whole frame, never waiting without end on a server that stopped
 * reading: WP_EAGAIN if `nowait` and its socket buffer is full before the
 * first byte (nothing sent: the connection is fine), WP_EUNAVAILABLE if the
 * frame is not all out within deadline_ms (a frame begun must be finished
 * or the stream is broken: the connection is failed). */
static int send_all(int fd, const struct iovec *iov, int n, bool nowait, int deadline_ms)
{
    struct iovec v[2];
    memcpy(v, iov, (size_t)n * sizeof *v);
    int i = 0;
    bool started = false;
    int64_t due = wp__now_ns() + (int64_t)deadline_ms * 1000000LL;
    while (i < n) {
        struct msghdr mh = {.msg_iov = v + i, .msg_iovlen = (size_t)(n - i)};
        ssize_t w = sendmsg(fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (nowait && !started)
                return wp__err(WP_EAGAIN, "send: the server is not reading (its buffer is full)");
            int64_t left = (due - wp__now_ns()) / 1000000LL;
            struct pollfd p = {fd, POLLOUT, 0};
            if (left <= 0 || (poll(&p, 1, (int)left) < 0 && errno != EINTR))
                return wp__err(WP_EUNAVAILABLE, "send: the server read nothing for %d ms",
                               deadline_ms);
            continue;
        }
        if (w <= 0)
            return wp__err(WP_EUNAVAILABLE, "send: %s", w < 0 ? strerror(errno) : "closed");
        started = true;
        size_t left = (size_t)w;
        while (i < n && left >= v[i].iov_len)
            left -= v[i++].iov_len;
        if (i < n) {
            v[i].iov_base = (uint8_t *)v[i].iov_base + left;
            v[i].iov_len -= left;
        }
    }
    return WP_OK;
}

/* Receives the next frame (blocking); used by the handshake and the reader. */
static int recv_frame(pconn *c, proto_frame *f, int timeout_ms)
{
    for (;;) {
        if (c->in_off < c->in_len) {
            size_t used = 0;
            int rc = proto_reader_feed(&c->rd, c->in + c->in_off, c->in_len - c->in_off, &used, f);
            c->in_off += used;
            if (rc != WP_EAGAIN)
                return rc;
        }
        if (timeout_ms >= 0) {
            struct pollfd p = {c->fd, POLLIN, 0};
            if (poll(&p, 1, timeout_ms) != 1)
                return wp__err(WP_ETIMEDOUT, "no answer from %s in %d ms", c->peer, timeout_ms);
        }
        ssize_t r = recv(c->fd, c->in, RECV_CHUNK, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return wp__err(WP_EUNAVAILABLE, "server %s closed the connection%s", c->peer,
                           proto_reader_pending(&c->rd) ? " inside a frame" : "");
        c->in_off = 0;
        c->in_len = (size_t)r;
    }
}

/* ---- failing --------------------------------------------------------------- */

/* Marks the connection failed and gives every request in flight
 * WP_EUNAVAILABLE (outcome unknown). */
static void fail_all(pconn *c, const char *why)
{
    slot taken[PROTO_INFLIGHT_MAX];
    int n = 0;
    pthread_mutex_lock(&c->mu);
    c->dead = true;
    for (int i = 0; i < PROTO_INFLIGHT_MAX; i++)
        if (c->slots[i].id) {
            taken[n++] = c->slots[i];
            c->slots[i].id = 0;
        }
    c->n_inflight = 0;
    pthread_cond_broadcast(&c->room);
    pthread_mutex_unlock(&c->mu);
    for (int i = 0; i < n; i++) {
        wp__err(WP_EUNAVAILABLE, "connection to %s failed (%s): outcome unknown", c->peer, why);
        taken[i].cb(taken[i].arg, WP_EUNAVAILABLE, NULL);
    }
}

static void *reader_main(void *arg)
{
    pconn *c = arg;
    char why[256] = "closed";
    for (;;) {
        proto_frame f;
        int rc = recv_frame(c, &f, -1);
        if (rc) {
            snprintf(why, sizeof why, "%s", wp_errmsg());
            break;
        }
        uint64_t id = f.h.request_id;
        pthread_mutex_lock(&c->mu);
        slot *s = &c->slots[id & (PROTO_INFLIGHT_MAX - 1)];
        slot got = {0};
        if (s->id == id && id != 0) {
            got = *s;
            s->id = 0;
            c->n_inflight--;
            pthread_cond_signal(&c->room);
        }
        pthread_mutex_unlock(&c->mu);
        if (!got.id) { /* an answer to nothing in flight: a protocol error (§2) */
            snprintf(why, sizeof why, "answer to request %llu, which is not in flight",
                     (unsigned long long)id);
            break;
        }
        bool other_kind = f.msg.type != PROTO_ERROR && f.msg.type != (got.type | PROTO_ANSWER);
        if (other_kind || (f.msg.type == PROTO_READ_ANS &&
                           f.msg.u.read_ans.first_entry_id != got.from)) {
            /* another request's kind of answer, or a READ answered from
             * another entry: a protocol error (§2); the caller must not
             * read it as its own */
            if (other_kind)
                snprintf(why, sizeof why, "answer of type 0x%04x to a request of type 0x%04x",
                         (unsigned)f.msg.type, (unsigned)got.type);
            else
                snprintf(why, sizeof why, "READ answer from entry %lld to a READ from %lld",
                         (long long)f.msg.u.read_ans.first_entry_id, (long long)got.from);
            pthread_mutex_lock(&c->mu);
            c->dead = true; /* before the caller hears of it */
            pthread_mutex_unlock(&c->mu);
            wp__err(WP_EUNAVAILABLE, "server %s: %s", c->peer, why);
            got.cb(got.arg, WP_EUNAVAILABLE, NULL);
            break;
        }
        rc = f.msg.type == PROTO_ERROR ? proto_error_rc(&f.msg.u.error) : WP_OK;
        got.cb(got.arg, rc, &f);
    }
    shutdown(c->fd, SHUT_RDWR);
    fail_all(c, why);
    return NULL;
}

/* ---- the interface ----------------------------------------------------- */

int pconn_open(const char *addr, const char *client_id, int timeout_ms, pconn **out)
{
    pconn *c = calloc(1, sizeof *c);
    if (!c || !(c->in = malloc(RECV_CHUNK))) {
        if (c)
            free(c);
        return wp__err(WP_ENOMEM, "connection");
    }
    snprintf(c->peer, sizeof c->peer, "%s", addr);
    pthread_mutex_init(&c->send_mu, NULL);
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->room, NULL);
    proto_reader_init(&c->rd, PROTO_SIDE_CLIENT, 0);
    c->fd = -1;
    int rc = connect_to(addr, timeout_ms, &c->fd);
    proto_msg h = {.type = PROTO_HELLO};
    h.u.hello = (proto_hello){.min_version = PROTO_VERSION_MIN, .max_version = PROTO_VERSION_MAX,
                              .body_max = PROTO_BODY_MAX, .id = client_id,
                              .id_len = strnlen(client_id, PROTO_ID_MAX)};
    uint8_t hb[PROTO_HEADER_SIZE + 16 + PROTO_ID_MAX];
    size_t len = 0;
    if (rc == WP_OK)
        rc = proto_encode(PROTO_HELLO_VERSION, 1, &h, hb, sizeof hb, &len);
    if (rc == WP_OK)
        rc = send_all(c->fd, &(struct iovec){hb, len}, 1, false, timeout_ms);
    proto_frame f;
    if (rc == WP_OK)
        rc = recv_frame(c, &f, timeout_ms);
    if (rc == WP_OK && f.msg.type == PROTO_ERROR)
        rc = proto_error_rc(&f.msg.u.error);
    else if (rc == WP_OK && (f.msg.type != PROTO_HELLO_ANS || f.h.request_id != 1))
        rc = wp__err(WP_ECORRUPT, "server %s: HELLO answered with %s", addr,
                     proto_type_name(f.msg.type));
    if (rc == WP_OK) {
        c->version = f.msg.u.hello_ans.version;
        proto_reader_set_version(&c->rd, c->version);
        snprintf(c->peer, sizeof c->peer, "%.*s (%s)", (int)f.msg.u.hello_ans.id_len,
                 f.msg.u.hello_ans.id, addr);
        snprintf(c->node_id, sizeof c->node_id, "%.*s", (int)f.msg.u.hello_ans.id_len,
                 f.msg.u.hello_ans.id);
        c->reader_started = pthread_create(&c->reader, NULL, reader_main, c) == 0;
        if (!c->reader_started)
            rc = wp__err(WP_ENOMEM, "connection reader thread");
    }
    if (rc) {
        c->dead = true;
        pconn_close(c);
        return rc;
    }
    *out = c;
    return WP_OK;
}

static int send_req(pconn *c, const proto_msg *m, pconn_cb cb, void *arg, bool wait)
{
    uint8_t head[PROTO_HEAD_MAX];
    size_t hlen = 0;
    pthread_mutex_lock(&c->mu);
    if (!wait && !c->dead && c->n_inflight >= PROTO_INFLIGHT_MAX) {
        pthread_mutex_unlock(&c->mu);
        return wp__err(WP_EAGAIN, "%s has %d requests unanswered", c->peer, PROTO_INFLIGHT_MAX);
    }
    while (!c->dead && c->n_inflight >= PROTO_INFLIGHT_MAX)
        pthread_cond_wait(&c->room, &c->mu);
    if (c->dead) {
        pthread_mutex_unlock(&c->mu);
        return wp__err(WP_EUNAVAILABLE, "connection to %s has failed", c->peer);
    }
    int s = 0;
    while (c->slots[s].id)
        s++;
    uint64_t id = (++c->seq << SLOT_BITS) | (uint64_t)s;
    c->slots[s] = (slot){id, cb, arg, (uint16_t)m->type,
                         m->type == PROTO_READ ? m->u.read.from_entry_id : -1};
    c->n_inflight++;
    pthread_mutex_unlock(&c->mu);
    int rc = proto_encode_head(c->version, id, m, head, &hlen);
    if (rc == WP_OK) {
        const uint8_t *recs = NULL;
        size_t rlen = 0;
        if (m->type == PROTO_ADD)
            recs = m->u.add.records, rlen = m->u.add.records_len;
        struct iovec v[2] = {{head, hlen}, {(void *)recs, rlen}};
        pthread_mutex_lock(&c->send_mu);
        rc = send_all(c->fd, v, rlen ? 2 : 1, !wait, wait ? SEND_WAIT_MS : SEND_FINISH_MS);
        pthread_mutex_unlock(&c->send_mu);
        if (rc == WP_OK)
            return WP_OK;
        if (rc != WP_EAGAIN) { /* broken: the reader fails what is in flight, this one included */
            shutdown(c->fd, SHUT_RDWR);
            return WP_OK;
        }
    }
    pthread_mutex_lock(&c->mu); /* not sent: take the slot back */
    if (c->slots[s].id == id) {
        c->slots[s].id = 0;
        c->n_inflight--;
        pthread_cond_signal(&c->room);
    }
    pthread_mutex_unlock(&c->mu);
    return rc;
}

int pconn_send(pconn *c, const proto_msg *m, pconn_cb cb, void *arg)
{
    return send_req(c, m, cb, arg, true);
}

int pconn_send_nowait(pconn *c, const proto_msg *m, pconn_cb cb, void *arg)
{
    return send_req(c, m, cb, arg, false);
}

struct pconn_pending {
    pthread_mutex_t mu;
    pthread_cond_t cond;
    int refs; /* the caller's and the callback's */
    bool done;
    int rc;
    char err[PROTO_ERRMSG_MAX + 64];
    uint8_t *body;
    proto_msg msg; /* decoded by the reader thread, its pointers into body */
    char peer[sizeof ((pconn *)0)->peer]; /* for messages (the connection may be gone) */
};

static void pending_release(pconn_pending *w)
{
    pthread_mutex_lock(&w->mu);
    int left = --w->refs;
    pthread_mutex_unlock(&w->mu);
    if (left > 0)
        return;
    free(w->body);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cond);
    free(w);
}

static void call_cb(void *arg, int rc, const proto_frame *f)
{
    pconn_pending *w = arg;
    pthread_mutex_lock(&w->mu);
    w->rc = rc;
    if (rc)
        snprintf(w->err, sizeof w->err, "%s", wp_errmsg());
    if (rc == WP_OK && (w->body = malloc(f->h.body_len ? f->h.body_len : 1)) != NULL) {
        memcpy(w->body, f->body, f->h.body_len);
        w->msg = f->msg;
        proto_msg_rebase(&w->msg, f->body, w->body);
    } else if (rc == WP_OK) {
        w->rc = WP_ENOMEM;
        snprintf(w->err, sizeof w->err, "answer of %u bytes", f->h.body_len);
    }
    w->done = true;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->mu);
    pending_release(w);
}

int pconn_call_start(pconn *c, const proto_msg *m, bool nowait, pconn_pending **out)
{
    pconn_pending *w = calloc(1, sizeof *w);
    if (!w)
        return wp__err(WP_ENOMEM, "call");
    pthread_mutex_init(&w->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&w->cond, &ca);
    pthread_condattr_destroy(&ca);
    w->refs = 2;
    memcpy(w->peer, c->peer, sizeof w->peer);
    int rc = send_req(c, m, call_cb, w, !nowait);
    if (rc) {
        w->refs = 1; /* the callback will not run */
        pending_release(w);
        return rc;
    }
    *out = w;
    return WP_OK;
}

int pconn_call_wait(pconn_pending *w, int timeout_ms, proto_msg *ans, uint8_t **body)
{
    int64_t due = wp__now_ns() + (int64_t)timeout_ms * 1000000LL;
    struct timespec ts = {due / 1000000000LL, due % 1000000000LL};
    pthread_mutex_lock(&w->mu);
    while (!w->done && pthread_cond_timedwait(&w->cond, &w->mu, &ts) == 0)
        ;
    int rc = w->done ? w->rc : WP_ETIMEDOUT;
    if (w->done && rc == WP_OK) /* checked when the reader thread decoded it */
        *ans = w->msg, *body = w->body, w->body = NULL;
    else if (w->done)
        wp__err(rc, "%s", w->err);
    pthread_mutex_unlock(&w->mu);
    if (rc == WP_ETIMEDOUT)
        return wp__err(WP_ETIMEDOUT, "no answer from %s in %d ms", w->peer, timeout_ms);
    pending_release(w);
    return rc;
}

void pconn_call_drop(pconn_pending *w)
{
    if (w)
        pending_release(w);
}

int pconn_call(pconn *c, const proto_msg *m, int timeout_ms, proto_msg *ans, uint8_t **body)
{
    pconn_pending *w;
    int rc = pconn_call_start(c, m, false, &w);
    if (rc == WP_OK && (rc = pconn_call_wait(w, timeout_ms, ans, body)) == WP_ETIMEDOUT) {
        /* still in flight and the protocol cannot cancel it: fail the
         * connection, and wait for its callback (the connection is seen
         * failed when this returns) */
        shutdown(c->fd, SHUT_RDWR);
        proto_msg a;
        uint8_t *b = NULL;
        while (pconn_call_wait(w, 1000, &a, &b) == WP_ETIMEDOUT)
            ;
        free(b);
        rc = wp__err(WP_ETIMEDOUT, "no answer from %s in %d ms (connection closed)", c->peer,
                     timeout_ms);
    }
    return rc;
}

bool pconn_alive(pconn *c)
{
    pthread_mutex_lock(&c->mu);
    bool a = !c->dead;
    pthread_mutex_unlock(&c->mu);
    return a;
}

const char *pconn_peer(const pconn *c) { return c->peer; }
const char *pconn_node_id(const pconn *c) { return c->node_id; }

void pconn_close(pconn *c)
{
    if (!c)
        return;
    if (c->fd >= 0)
        shutdown(c->fd, SHUT_RDWR);
    if (c->reader_started)
        pthread_join(c->reader, NULL); /* it fails what is in flight */
    else
        fail_all(c, "closed");
    if (c->fd >= 0)
        close(c->fd);
    proto_reader_free(&c->rd);
    pthread_mutex_destroy(&c->send_mu);
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->room);
    free(c->in);
    free(c);
}
