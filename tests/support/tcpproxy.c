/* tcpproxy.c — see tcpproxy.h.
 *
 * One thread runs a poll loop over a wake pipe, the listening socket and
 * both sockets of every connection. A connection has two directions
 * (UP: client socket -> target socket, DOWN: the reverse), each a FIFO of
 * chunks stamped with the time they may be forwarded. The thread owns the
 * connections; the controls only set the wanted state under p->mu and
 * wait until the thread has applied it (req_seq / done_seq). */
#include "tcpproxy.h"

#include <arpa/inet.h>
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
#include <time.h>
#include <unistd.h>

#define POLL_MAX_MS 1000

typedef struct chunk {
    struct chunk *next;
    int64_t due_ms; /* forwarded no earlier than this */
    size_t off, len;
    uint8_t data[];
} chunk;

typedef struct {
    chunk *head, *tail;
    size_t bytes; /* queued, not yet written */
    bool eof;     /* the source ended its stream */
    bool shut;    /* ... and the end was passed on (shutdown SHUT_WR) */
} dirq;

typedef struct {
    int fd[2];       /* [0] the client's, [1] to the target; -1 when unused */
    bool connecting; /* fd[1]'s connect is in progress */
    bool broken;     /* a blackhole dropped bytes of it */
    dirq q[2];       /* [0] up: fd[0] -> fd[1], [1] down: fd[1] -> fd[0] */
} pconn_t;

/* What the controls ask for (under mu). */
typedef struct {
    int delay_ms, blackhole, freeze;
    bool cut, cut_rst, refuse, resume;
} wanted;

struct tcpproxy {
    pthread_t thr;
    int wake[2]; /* a byte on wake[1] wakes the thread */
    char addr[64];
    struct sockaddr_in listen_sa;

    pthread_mutex_t ctl_mu; /* one control at a time */
    pthread_mutex_t mu;     /* everything below */
    pthread_cond_t applied;
    wanted want;
    uint64_t req_seq, done_seq;
    int resume_rc;
    bool stop;
    struct sockaddr_storage target;
    socklen_t target_len;
    tcpproxy_stats st;

    /* The thread's own. */
    int lfd; /* listening socket, -1 while refusing */
    int delay_ms, blackhole, freeze;
    pconn_t conns[TCPPROXY_CONNS_MAX];
    uint8_t rbuf[TCPPROXY_CHUNK_BYTES]; /* a read lands here, then in a chunk of its size */
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int resolve(const char *target, struct sockaddr_storage *sa, socklen_t *len)
{
    char host[256];
    const char *colon = strrchr(target, ':');
    if (!colon || colon == target || (size_t)(colon - target) >= sizeof host) {
        fprintf(stderr, "  tcpproxy: target '%s' is not host:port\n", target);
        return -1;
    }
    memcpy(host, target, (size_t)(colon - target));
    host[colon - target] = '\0';
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *ai = NULL;
    int g = getaddrinfo(host, colon + 1, &hints, &ai);
    if (g != 0) {
        fprintf(stderr, "  tcpproxy: target '%s': %s\n", target, gai_strerror(g));
        return -1;
    }
    memcpy(sa, ai->ai_addr, ai->ai_addrlen);
    *len = ai->ai_addrlen;
    freeaddrinfo(ai);
    return 0;
}

/* Listens on p->listen_sa (port 0 the first time: then records the port). */
static int listen_on(tcpproxy *p)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), one = 1;
    if (fd < 0)
        return -1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    socklen_t sl = sizeof p->listen_sa;
    if (bind(fd, (struct sockaddr *)&p->listen_sa, sizeof p->listen_sa) != 0 ||
        listen(fd, 64) != 0 || getsockname(fd, (struct sockaddr *)&p->listen_sa, &sl) != 0) {
        fprintf(stderr, "  tcpproxy: listen on port %d: %s\n", ntohs(p->listen_sa.sin_port),
                strerror(errno));
        close(fd);
        return -1;
    }
    p->lfd = fd;
    return 0;
}

/* ---- connections (proxy thread) ----------------------------------------- */

static void q_clear(dirq *q)
{
    while (q->head) {
        chunk *c = q->head;
        q->head = c->next;
        free(c);
    }
    q->tail = NULL;
    q->bytes = 0;
}

static void close_fd(int fd, bool rst)
{
    if (fd < 0)
        return;
    if (rst) {
        struct linger l = {1, 0}; /* close sends RST */
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
    }
    close(fd);
}

static void conn_close(tcpproxy *p, pconn_t *c, bool rst)
{
    close_fd(c->fd[0], rst);
    close_fd(c->fd[1], rst);
    q_clear(&c->q[0]);
    q_clear(&c->q[1]);
    *c = (pconn_t){.fd = {-1, -1}};
    pthread_mutex_lock(&p->mu);
    p->st.open--;
    pthread_mutex_unlock(&p->mu);
}

static void accept_one(tcpproxy *p)
{
    int cfd = accept4(p->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (cfd < 0)
        return;
    pconn_t *c = NULL;
    for (int i = 0; i < TCPPROXY_CONNS_MAX && !c; i++)
        if (p->conns[i].fd[0] < 0)
            c = &p->conns[i];
    pthread_mutex_lock(&p->mu);
    struct sockaddr_storage sa = p->target;
    socklen_t sl = p->target_len;
    pthread_mutex_unlock(&p->mu);
    int sfd = c ? socket(sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0) : -1;
    if (sfd < 0) { /* full (bounded), or no socket */
        close_fd(cfd, true);
        return;
    }
    int one = 1;
    setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(sfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    bool connecting = false;
    if (connect(sfd, (struct sockaddr *)&sa, sl) != 0) {
        if (errno != EINPROGRESS) { /* the target refuses: so does the proxy */
            close_fd(sfd, false);
            close_fd(cfd, true);
            return;
        }
        connecting = true;
    }
    *c = (pconn_t){.fd = {cfd, sfd}, .connecting = connecting};
    pthread_mutex_lock(&p->mu);
    p->st.accepted++;
    p->st.open++;
    pthread_mutex_unlock(&p->mu);
}

/* Reads what src has into direction d's queue (or drops it). false: the
 * connection failed (closed here, with RST after a reset). */
static bool dir_read(tcpproxy *p, pconn_t *c, int d)
{
    dirq *q = &c->q[d];
    bool drop = p->blackhole & (1 << d);
    size_t room = drop ? TCPPROXY_CHUNK_BYTES : TCPPROXY_QUEUE_BYTES - q->bytes;
    if (room > TCPPROXY_CHUNK_BYTES)
        room = TCPPROXY_CHUNK_BYTES;
    ssize_t r = recv(c->fd[d], p->rbuf, room, 0);
    if (r < 0 && (errno == EAGAIN || errno == EINTR))
        return true;
    if (r < 0) {
        conn_close(p, c, errno == ECONNRESET);
        return false;
    }
    if (r == 0) {
        q->eof = true;
        return true;
    }
    if (drop) {
        pthread_mutex_lock(&p->mu);
        p->st.dropped_bytes[d] += (uint64_t)r;
        pthread_mutex_unlock(&p->mu);
        c->broken = true;
        return true;
    }
    chunk *ch = malloc(sizeof *ch + (size_t)r);
    if (!ch) { /* the bytes are gone: as good as a reset */
        conn_close(p, c, true);
        return false;
    }
    *ch = (chunk){.due_ms = now_ms() + p->delay_ms, .len = (size_t)r};
    memcpy(ch->data, p->rbuf, (size_t)r);
    if (q->tail)
        q->tail->next = ch;
    else
        q->head = ch;
    q->tail = ch;
    q->bytes += (size_t)r;
    return true;
}

/* Writes direction d's due chunks to its destination; passes the end of
 * stream on once the queue is empty. false: the connection failed. */
static bool dir_write(tcpproxy *p, pconn_t *c, int d)
{
    dirq *q = &c->q[d];
    int dst = c->fd[1 - d];
    int64_t now = now_ms();
    while (q->head && q->head->due_ms <= now) {
        chunk *ch = q->head;
        ssize_t w = send(dst, ch->data + ch->off, ch->len - ch->off, MSG_NOSIGNAL);
        if (w < 0 && (errno == EAGAIN || errno == EINTR))
            return true;
        if (w < 0) {
            conn_close(p, c, errno == ECONNRESET || errno == EPIPE);
            return false;
        }
        pthread_mutex_lock(&p->mu);
        p->st.fwd_bytes[d] += (uint64_t)w;
        pthread_mutex_unlock(&p->mu);
        ch->off += (size_t)w;
        q->bytes -= (size_t)w;
        if (ch->off < ch->len)
            return true;
        q->head = ch->next;
        if (!q->head)
            q->tail = NULL;
        free(ch);
    }
    if (q->eof && !q->head && !q->shut) {
        shutdown(dst, SHUT_WR);
        q->shut = true;
    }
    return true;
}

/* ---- the loop ------------------------------------------------------------ */

static bool want_read(const tcpproxy *p, const pconn_t *c, int d)
{
    if (c->q[d].eof || (p->freeze & (1 << d)) || (d == 1 && c->connecting))
        return false;
    return (p->blackhole & (1 << d)) || c->q[d].bytes < TCPPROXY_QUEUE_BYTES;
}

/* Direction d may write now (POLLOUT wanted), or *wait_ms gets when. */
static bool want_write(const tcpproxy *p, const pconn_t *c, int d, int64_t now, int64_t *wait_ms)
{
    const dirq *q = &c->q[d];
    if ((p->freeze | p->blackhole) & (1 << d) || (d == 0 && c->connecting))
        return false;
    if (!q->head)
        return q->eof && !q->shut; /* the end of stream to pass on */
    if (q->head->due_ms <= now)
        return true;
    if (q->head->due_ms - now < *wait_ms)
        *wait_ms = q->head->due_ms - now;
    return false;
}

/* Fills pfd (wake, listener, then two per connection slot); the poll timeout. */
static int build_poll(tcpproxy *p, struct pollfd *pfd)
{
    int64_t now = now_ms(), wait_ms = POLL_MAX_MS;
    pfd[0] = (struct pollfd){p->wake[0], POLLIN, 0};
    for (int i = 0; i < TCPPROXY_CONNS_MAX; i++) {
        pconn_t *c = &p->conns[i];
        struct pollfd *f = &pfd[2 + 2 * i];
        f[0] = f[1] = (struct pollfd){-1, 0, 0};
        if (c->fd[0] < 0)
            continue;
        for (int d = 0; d < 2; d++) {
            if (want_read(p, c, d))
                f[d].events |= POLLIN;
            if (want_write(p, c, d, now, &wait_ms))
                f[1 - d].events |= POLLOUT;
        }
        if (c->connecting)
            f[1].events |= POLLOUT;
        /* An fd asked for nothing is left out: a hung-up socket would
         * otherwise wake poll at once, again and again. */
        for (int k = 0; k < 2; k++)
            if (f[k].events)
                f[k].fd = c->fd[k];
    }
    pfd[1] = (struct pollfd){p->lfd, POLLIN, 0}; /* -1 while refusing: left out */
    return (int)wait_ms;
}

static void conn_events(tcpproxy *p, pconn_t *c, const struct pollfd *f)
{
    if (c->connecting && f[1].revents) {
        int err = 0;
        socklen_t el = sizeof err;
        getsockopt(c->fd[1], SOL_SOCKET, SO_ERROR, &err, &el);
        if (err != 0) {
            conn_close(p, c, true);
            return;
        }
        c->connecting = false;
    }
    for (int d = 0; d < 2; d++) {
        if ((f[d].events & POLLIN) && (f[d].revents & (POLLIN | POLLHUP | POLLERR)) &&
            !dir_read(p, c, d))
            return;
        if (!(p->blackhole & (1 << d)) && f[1 - d].revents & (POLLOUT | POLLERR | POLLHUP) &&
            (f[1 - d].events & POLLOUT) && !dir_write(p, c, d))
            return;
    }
    if (c->q[0].shut && c->q[1].shut)
        conn_close(p, c, false);
}

/* Applies what the controls asked for (called with p->mu held). */
static void apply(tcpproxy *p)
{
    wanted *w = &p->want;
    p->delay_ms = w->delay_ms;
    p->blackhole = w->blackhole;
    p->freeze = w->freeze;
    for (int d = 0; d < 2; d++)
        if (p->blackhole & (1 << d))
            for (int i = 0; i < TCPPROXY_CONNS_MAX; i++)
                if (p->conns[i].fd[0] >= 0 && p->conns[i].q[d].head) {
                    p->st.dropped_bytes[d] += p->conns[i].q[d].bytes;
                    p->conns[i].broken = true;
                    q_clear(&p->conns[i].q[d]);
                }
    pthread_mutex_unlock(&p->mu); /* conn_close takes it */
    for (int i = 0; i < TCPPROXY_CONNS_MAX; i++) {
        pconn_t *c = &p->conns[i];
        if (c->fd[0] >= 0 && (w->cut || (w->resume && c->broken))) {
            conn_close(p, c, w->cut ? w->cut_rst : true);
            pthread_mutex_lock(&p->mu);
            p->st.cut++;
            pthread_mutex_unlock(&p->mu);
        }
    }
    pthread_mutex_lock(&p->mu);
    if (w->refuse && p->lfd >= 0) {
        close(p->lfd);
        p->lfd = -1;
    }
    p->resume_rc = 0;
    if (w->resume && p->lfd < 0)
        p->resume_rc = listen_on(p);
    w->cut = w->refuse = w->resume = false;
    p->done_seq = p->req_seq;
    pthread_cond_broadcast(&p->applied);
}

static void *proxy_main(void *arg)
{
    tcpproxy *p = arg;
    struct pollfd pfd[2 + 2 * TCPPROXY_CONNS_MAX];
    for (;;) {
        pthread_mutex_lock(&p->mu);
        if (p->done_seq != p->req_seq)
            apply(p);
        bool stop = p->stop;
        pthread_mutex_unlock(&p->mu);
        if (stop)
            break;
        int timeout = build_poll(p, pfd);
        int n = poll(pfd, 2 + 2 * TCPPROXY_CONNS_MAX, timeout);
        if (n < 0 && errno != EINTR) {
            perror("  tcpproxy: poll");
            break;
        }
        if (n <= 0)
            continue;
        if (pfd[0].revents) {
            char buf[64];
            while (read(p->wake[0], buf, sizeof buf) > 0)
                ;
        }
        if (pfd[1].revents)
            accept_one(p);
        for (int i = 0; i < TCPPROXY_CONNS_MAX; i++)
            if (p->conns[i].fd[0] >= 0 && (pfd[2 + 2 * i].revents || pfd[3 + 2 * i].revents))
                conn_events(p, &p->conns[i], &pfd[2 + 2 * i]);
    }
    return NULL;
}

/* ---- controls ------------------------------------------------------------ */

/* Runs change on p->want, wakes the thread and waits until it applied it. */
static int control(tcpproxy *p, void (*change)(wanted *, const void *), const void *arg)
{
    pthread_mutex_lock(&p->ctl_mu);
    pthread_mutex_lock(&p->mu);
    change(&p->want, arg);
    uint64_t seq = ++p->req_seq;
    pthread_mutex_unlock(&p->mu);
    char one = 1;
    if (write(p->wake[1], &one, 1) < 0 && errno != EAGAIN)
        perror("  tcpproxy: wake");
    pthread_mutex_lock(&p->mu);
    while (p->done_seq < seq)
        pthread_cond_wait(&p->applied, &p->mu);
    int rc = p->resume_rc;
    pthread_mutex_unlock(&p->mu);
    pthread_mutex_unlock(&p->ctl_mu);
    return rc;
}

static void set_delay(wanted *w, const void *arg) { w->delay_ms = *(const int *)arg; }
static void set_blackhole(wanted *w, const void *arg) { w->blackhole = *(const int *)arg; }
static void set_freeze(wanted *w, const void *arg) { w->freeze = *(const int *)arg; }

static void set_cut(wanted *w, const void *arg)
{
    const bool *b = arg;
    w->cut = true;
    w->cut_rst = b[0];
    w->refuse = b[1];
}

static void set_resume(wanted *w, const void *arg)
{
    (void)arg;
    *w = (wanted){.resume = true};
}

void tcpproxy_delay(tcpproxy *p, int delay_ms)
{
    control(p, set_delay, &delay_ms);
}

void tcpproxy_blackhole(tcpproxy *p, int dirs)
{
    dirs &= TCPPROXY_BOTH;
    control(p, set_blackhole, &dirs);
}

void tcpproxy_freeze(tcpproxy *p, int dirs)
{
    dirs &= TCPPROXY_BOTH;
    control(p, set_freeze, &dirs);
}

void tcpproxy_cut(tcpproxy *p, bool rst, bool refuse)
{
    bool b[2] = {rst, refuse};
    control(p, set_cut, b);
}

int tcpproxy_resume(tcpproxy *p) { return control(p, set_resume, NULL) == 0 ? 0 : -1; }

int tcpproxy_set_target(tcpproxy *p, const char *target)
{
    struct sockaddr_storage sa;
    socklen_t sl;
    if (resolve(target, &sa, &sl) != 0)
        return -1;
    pthread_mutex_lock(&p->mu);
    p->target = sa;
    p->target_len = sl;
    pthread_mutex_unlock(&p->mu);
    return 0;
}

const char *tcpproxy_addr(const tcpproxy *p) { return p->addr; }

void tcpproxy_get_stats(tcpproxy *p, tcpproxy_stats *out)
{
    pthread_mutex_lock(&p->mu);
    *out = p->st;
    pthread_mutex_unlock(&p->mu);
}

/* ---- start and stop ------------------------------------------------------ */

int tcpproxy_start(const char *target, tcpproxy **out)
{
    tcpproxy *p = calloc(1, sizeof *p);
    if (!p)
        return -1;
    p->lfd = p->wake[0] = p->wake[1] = -1;
    for (int i = 0; i < TCPPROXY_CONNS_MAX; i++)
        p->conns[i] = (pconn_t){.fd = {-1, -1}};
    p->listen_sa = (struct sockaddr_in){.sin_family = AF_INET,
                                        .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (resolve(target, &p->target, &p->target_len) != 0 ||
        pipe2(p->wake, O_NONBLOCK | O_CLOEXEC) != 0 || listen_on(p) != 0)
        goto out_free;
    snprintf(p->addr, sizeof p->addr, "127.0.0.1:%d", ntohs(p->listen_sa.sin_port));
    pthread_mutex_init(&p->ctl_mu, NULL);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->applied, NULL);
    if (pthread_create(&p->thr, NULL, proxy_main, p) != 0) {
        pthread_mutex_destroy(&p->ctl_mu);
        pthread_mutex_destroy(&p->mu);
        pthread_cond_destroy(&p->applied);
        goto out_free;
    }
    *out = p;
    return 0;
out_free:
    fprintf(stderr, "  tcpproxy: cannot start a proxy to %s\n", target);
    if (p->lfd >= 0)
        close(p->lfd);
    if (p->wake[0] >= 0) {
        close(p->wake[0]);
        close(p->wake[1]);
    }
    free(p);
    return -1;
}

void tcpproxy_stop(tcpproxy *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->stop = true;
    pthread_mutex_unlock(&p->mu);
    char one = 1;
    if (write(p->wake[1], &one, 1) < 0 && errno != EAGAIN)
        perror("  tcpproxy: wake");
    pthread_join(p->thr, NULL);
    for (int i = 0; i < TCPPROXY_CONNS_MAX; i++)
        if (p->conns[i].fd[0] >= 0)
            conn_close(p, &p->conns[i], false);
    if (p->lfd >= 0)
        close(p->lfd);
    close(p->wake[0]);
    close(p->wake[1]);
    pthread_mutex_destroy(&p->ctl_mu);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->applied);
    free(p);
}
