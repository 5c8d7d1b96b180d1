/* wp-stream-bench — the Woodpecker side of `make bench-streaming`
 * (bench/streaming.sh): the publish/subscribe workload of
 * bench/peers/stream_common.h (C channels, a producer and a consumer per
 * channel, batches of B messages, one batch in flight per channel, e2e =
 * produce call → consumer has the message) run either through the
 * streaming service or on the library directly:
 *
 *   wp-stream-bench service [-c FILE] [-o KEY=VALUE]... [workload options]
 *     Creates channels <name>-0 .. <name>-<C-1> through the nodes' API
 *     (wps_channel_create), waits until the coordinator has assigned each,
 *     then per channel one wps_producer (a batch = one wps_produce call,
 *     which returns once every message is durable) and one wps_consumer
 *     from the start of the channel (the pushed stream, in the binary
 *     encoding of docs/streaming-api.md §7, as produce is). The
 *     configuration names the metadata store the service uses.
 *   wp-stream-bench direct [-c FILE] [-o KEY=VALUE]... [workload options]
 *     The same on the library in this process: per channel a log <name>-i,
 *     its wp_writer (a batch = B wp_writer_append_async, then wait for the
 *     B callbacks, which run once the entries are durable) and a wp_reader
 *     from WP_EARLIEST tailing it. The configuration is the one the
 *     service's nodes use (same storage, same metadata store).
 *   wp-stream-bench relay [-c FILE] [-o KEY=VALUE]... [workload options]
 *     The library directly, behind two bare loopback TCP hops (see
 *     run_relay): the least any networked service of it pays here.
 *
 * Workload options: see stream_common.h (--channels, --size, --batch,
 * --seconds, --name, --payload, --no-consume). Prints one JSON line (stream_common.h's
 * fields; system "wp-service" or "wp-direct"); in service mode the owner of
 * each channel goes to stderr. Exit 0, 1 on a failure, 2 on a bad command
 * line. */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "woodpecker.h"
#include "woodpecker_stream.h"

#include "../bench/peers/stream_common.h"

/* How long the coordinator may take to assign the new channels. */
#define ASSIGN_WAIT_MS 30000
#define OVERRIDES_MAX 64

static const char usage[] =
    "usage: wp-stream-bench service|direct|relay [-c FILE] [-o KEY=VALUE]... " SB_USAGE "\n";

static void log_stderr(void *arg, int level, const char *msg)
{
    (void)arg;
    if (level >= WP_LOG_WARN)
        fprintf(stderr, "wp-stream-bench: %s: %s\n", level >= WP_LOG_ERROR ? "error" : "warn",
                msg);
}

static int die(const char *what, int rc)
{
    fprintf(stderr, "wp-stream-bench: %s: %s (%s)\n", what, wp_strerror(rc), wp_errmsg());
    return 1;
}

/* ---- the service ---------------------------------------------------------- */

typedef struct {
    wps_producer *p;
    wps_consumer *co;
    wp_payload *msgs; /* batch entries pointing into ch->buf */
} svc_chan;

static int svc_send(sb_chan *ch, int64_t n)
{
    svc_chan *s = ch->sys;
    for (int64_t k = 0; k < n; k++)
        s->msgs[k] = (wp_payload){.data = ch->buf + k * ch->o->size, .len = (size_t)ch->o->size};
    int rc = wps_produce(s->p, s->msgs, (size_t)n, NULL);
    if (rc) {
        sb_fail(ch, "wps_produce: %s (%s)", wp_strerror(rc), wp_errmsg());
        return -1;
    }
    return 0;
}

static int svc_consume(sb_chan *ch)
{
    svc_chan *s = ch->sys;
    while (!sb_consumer_done(ch)) {
        wps_message m;
        int rc = wps_consume(s->co, SB_POLL_MS, &m);
        if (rc == WP_ETIMEDOUT)
            continue;
        if (rc) {
            sb_fail(ch, "wps_consume: %s (%s)", wp_strerror(rc), wp_errmsg());
            return -1;
        }
        if (!sb_take(ch, m.data, m.len, sb_now_ns()))
            return -1;
    }
    return 0;
}

/* Until every channel of chs has an owner; prints who owns what. */
static int wait_assigned(wps_client *c, const sb_opts *o, sb_chan *chs)
{
    int64_t until = sb_now_ns() + ASSIGN_WAIT_MS * 1000000LL;
    for (;;) {
        wps_channel_info *v = NULL;
        size_t n = 0;
        int rc = wps_channel_list(c, &v, &n), assigned = 0;
        if (rc)
            return die("wps_channel_list", rc);
        for (int i = 0; i < o->channels; i++)
            for (size_t k = 0; k < n; k++)
                if (strcmp(v[k].name, chs[i].name) == 0 && v[k].owner[0])
                    assigned++;
        if (assigned == o->channels) {
            fprintf(stderr, "wp-stream-bench: owners:");
            for (size_t k = 0; k < n; k++)
                fprintf(stderr, " %s=%s", v[k].name, v[k].owner);
            fprintf(stderr, "\n");
        }
        free(v);
        if (assigned == o->channels)
            return 0;
        if (sb_now_ns() > until) {
            fprintf(stderr, "wp-stream-bench: %d of %d channels assigned after %d ms\n",
                    assigned, o->channels, ASSIGN_WAIT_MS);
            return 1;
        }
        usleep(20000);
    }
}

static int run_service(const wp_config *cfg, const sb_opts *o, sb_chan *chs)
{
    static const sb_system sys = {svc_send, svc_consume};
    svc_chan sc[SB_CHANNELS_MAX] = {{0}};
    wps_client *c = NULL;
    int rc = wps_client_open(cfg, &c), st = 1;
    if (rc)
        return die("wps_client_open", rc);
    for (int i = 0; i < o->channels; i++)
        if ((rc = wps_channel_create(c, chs[i].name))) {
            st = die(chs[i].name, rc); /* WP_EEXIST: use a new --name */
            goto out;
        }
    if (wait_assigned(c, o, chs))
        goto out;
    for (int i = 0; i < o->channels; i++) {
        chs[i].sys = &sc[i];
        sc[i].msgs = calloc((size_t)o->batch, sizeof *sc[i].msgs);
        if (!sc[i].msgs) {
            fprintf(stderr, "wp-stream-bench: out of memory\n");
            goto out;
        }
        if ((!o->no_consume &&
             (rc = wps_consumer_open(c, chs[i].name, WPS_FROM_ALL, (wp_msg_id){0, 0}, &sc[i].co))) ||
            (rc = wps_producer_open(c, chs[i].name, NULL, &sc[i].p))) {
            st = die(chs[i].name, rc);
            goto out;
        }
    }
    st = sb_run("wp-service", o, chs, &sys);
out:
    for (int i = 0; i < o->channels; i++) {
        if (sc[i].p)
            wps_producer_close(sc[i].p);
        if (sc[i].co)
            wps_consumer_close(sc[i].co);
        free(sc[i].msgs);
    }
    wps_client_close(c);
    return st;
}

/* ---- the library directly ------------------------------------------------- */

typedef struct {
    wp_log *log;
    wp_writer *w;
    wp_reader *r;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    int64_t pending;
    int rc;
} dir_chan;

static void dir_acked(void *arg, int rc, wp_msg_id id)
{
    (void)id;
    dir_chan *d = arg;
    pthread_mutex_lock(&d->mu);
    if (rc && !d->rc)
        d->rc = rc;
    if (--d->pending == 0)
        pthread_cond_signal(&d->cond);
    pthread_mutex_unlock(&d->mu);
}

static int dir_send(sb_chan *ch, int64_t n)
{
    dir_chan *d = ch->sys;
    int rc = WP_OK;
    int64_t k = 0;
    pthread_mutex_lock(&d->mu);
    d->pending = n;
    pthread_mutex_unlock(&d->mu);
    for (; k < n && rc == WP_OK; k++)
        rc = wp_writer_append_async(d->w, ch->buf + k * ch->o->size, (size_t)ch->o->size,
                                    dir_acked, d);
    pthread_mutex_lock(&d->mu);
    if (rc) { /* the failed one and those after it were not appended */
        d->pending -= n - k + 1;
        if (!d->rc)
            d->rc = rc;
    }
    while (d->pending > 0)
        pthread_cond_wait(&d->cond, &d->mu);
    rc = d->rc;
    pthread_mutex_unlock(&d->mu);
    if (rc) {
        sb_fail(ch, "append: %s (%s)", wp_strerror(rc), wp_errmsg());
        return -1;
    }
    return 0;
}

static int dir_consume(sb_chan *ch)
{
    dir_chan *d = ch->sys;
    while (!sb_consumer_done(ch)) {
        wp_entry e;
        int rc = wp_reader_next(d->r, SB_POLL_MS, &e);
        if (rc == WP_ETIMEDOUT)
            continue;
        if (rc) {
            sb_fail(ch, "wp_reader_next: %s (%s)", wp_strerror(rc), wp_errmsg());
            return -1;
        }
        if (!sb_take(ch, e.data, e.len, sb_now_ns()))
            return -1;
    }
    return 0;
}

static int run_direct(const wp_config *cfg, const sb_opts *o, sb_chan *chs)
{
    static const sb_system sys = {dir_send, dir_consume};
    dir_chan dc[SB_CHANNELS_MAX];
    wp_client *c = NULL;
    int rc = wp_client_open(cfg, &c), st = 1;
    if (rc)
        return die("wp_client_open", rc);
    memset(dc, 0, sizeof dc);
    for (int i = 0; i < o->channels; i++) {
        dir_chan *d = &dc[i];
        pthread_mutex_init(&d->mu, NULL);
        pthread_cond_init(&d->cond, NULL);
        chs[i].sys = d;
        if ((rc = wp_log_create(c, chs[i].name)) || (rc = wp_log_open(c, chs[i].name, &d->log)) ||
            (rc = wp_writer_open(d->log, &d->w)) ||
            (!o->no_consume && (rc = wp_reader_open(d->log, WP_EARLIEST, &d->r)))) {
            st = die(chs[i].name, rc);
            goto out;
        }
    }
    st = sb_run("wp-direct", o, chs, &sys);
out:
    for (int i = 0; i < o->channels; i++) {
        if (dc[i].r)
            wp_reader_close(dc[i].r);
        if (dc[i].w && (rc = wp_writer_close(dc[i].w)) && !st)
            st = die("wp_writer_close", rc);
        if (dc[i].log)
            wp_log_close(dc[i].log);
        pthread_mutex_destroy(&dc[i].mu);
        pthread_cond_destroy(&dc[i].cond);
    }
    wp_client_close(c);
    return st;
}

/* ---- the library behind two bare TCP hops ---------------------------------
 * What any networked service of this library pays at least on these cores:
 * the producer's batch goes over a loopback TCP connection (u32 length +
 * payload per message) to a relay thread that appends it to the writer and
 * answers one byte once the batch is durable; a second relay thread tails
 * the log with a reader and writes the messages (the same framing, up to
 * 64 KiB per write) over a second connection to the consumer. No HTTP, no
 * ids, no properties, no idempotence: the floor, not a design. */

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#define RELAY_CHUNK (64 * 1024)

typedef struct {
    dir_chan d;          /* the log, writer, reader, ack wait */
    int prod_cli, prod_srv, cons_srv, cons_cli;
    pthread_t in_thr, out_thr;
    bool in_started, out_started;
    uint8_t *sendbuf;    /* producer side: a batch, framed */
    uint8_t *rbuf;       /* consumer side: received bytes */
    size_t rlen;
} relay_chan;

static int tcp_pair(int *a, int *b)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof sa;
    int l = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    *a = *b = -1;
    if (l < 0 || bind(l, (struct sockaddr *)&sa, sizeof sa) || listen(l, 1) ||
        getsockname(l, (struct sockaddr *)&sa, &sl) || (*a = socket(AF_INET, SOCK_STREAM, 0)) < 0 ||
        connect(*a, (struct sockaddr *)&sa, sizeof sa) || (*b = accept(l, NULL, NULL)) < 0) {
        if (l >= 0)
            close(l);
        return -1;
    }
    close(l);
    setsockopt(*a, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(*b, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return 0;
}

static bool write_all(int fd, const uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
        if (k <= 0)
            return false;
        p += k;
        n -= (size_t)k;
    }
    return true;
}

static bool read_all(int fd, uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t k = recv(fd, p, n, 0);
        if (k <= 0)
            return false;
        p += k;
        n -= (size_t)k;
    }
    return true;
}

/* Relay, ingest: a batch header (u32 count), the messages, then the ack. */
static void *relay_in_main(void *arg)
{
    sb_chan *ch = arg;
    relay_chan *r = ch->sys;
    size_t cap = (size_t)ch->o->batch * ((size_t)ch->o->size + 4);
    uint8_t *b = malloc(cap), hdr[4];
    while (b && read_all(r->prod_srv, hdr, 4)) {
        uint32_t n = (uint32_t)hdr[0] | (uint32_t)hdr[1] << 8 | (uint32_t)hdr[2] << 16 |
                     (uint32_t)hdr[3] << 24;
        if (n > ch->o->batch || !read_all(r->prod_srv, b, n * ((size_t)ch->o->size + 4)))
            break;
        pthread_mutex_lock(&r->d.mu);
        r->d.pending = n;
        pthread_mutex_unlock(&r->d.mu);
        int rc = WP_OK;
        for (uint32_t k = 0; k < n && rc == WP_OK; k++)
            rc = wp_writer_append_async(r->d.w, b + k * ((size_t)ch->o->size + 4) + 4,
                                        (size_t)ch->o->size, dir_acked, &r->d);
        pthread_mutex_lock(&r->d.mu);
        if (rc)
            r->d.pending = 0, r->d.rc = rc;
        while (r->d.pending > 0)
            pthread_cond_wait(&r->d.cond, &r->d.mu);
        uint8_t ack = r->d.rc ? 1 : 0;
        pthread_mutex_unlock(&r->d.mu);
        if (!write_all(r->prod_srv, &ack, 1) || ack)
            break;
    }
    free(b);
    return NULL;
}

/* Relay, egress: tails the log, writes what is ready in one send. */
static void *relay_out_main(void *arg)
{
    sb_chan *ch = arg;
    relay_chan *r = ch->sys;
    uint8_t *b = malloc(RELAY_CHUNK + (size_t)ch->o->size + 4);
    size_t len = 0;
    while (b && !atomic_load(&sb_abort)) {
        wp_entry e;
        int rc = wp_reader_next(r->d.r, len ? 0 : SB_POLL_MS, &e);
        if (rc == WP_ETIMEDOUT) {
            if (len && !write_all(r->cons_srv, b, len))
                break;
            len = 0;
            continue;
        }
        if (rc)
            break;
        b[len] = (uint8_t)e.len;
        b[len + 1] = (uint8_t)(e.len >> 8);
        b[len + 2] = (uint8_t)(e.len >> 16);
        b[len + 3] = (uint8_t)(e.len >> 24);
        memcpy(b + len + 4, e.data, e.len);
        len += 4 + e.len;
        if (len >= RELAY_CHUNK) {
            if (!write_all(r->cons_srv, b, len))
                break;
            len = 0;
        }
    }
    free(b);
    return NULL;
}

static int relay_send(sb_chan *ch, int64_t n)
{
    relay_chan *r = ch->sys;
    size_t sz = (size_t)ch->o->size, len = 4;
    uint8_t *b = r->sendbuf, ack = 1;
    b[0] = (uint8_t)n, b[1] = (uint8_t)(n >> 8), b[2] = (uint8_t)(n >> 16), b[3] = (uint8_t)(n >> 24);
    for (int64_t k = 0; k < n; k++) { /* framed, as a client would */
        b[len] = (uint8_t)sz, b[len + 1] = (uint8_t)(sz >> 8);
        b[len + 2] = (uint8_t)(sz >> 16), b[len + 3] = (uint8_t)(sz >> 24);
        memcpy(b + len + 4, ch->buf + k * (int64_t)sz, sz);
        len += 4 + sz;
    }
    if (!write_all(r->prod_cli, b, len) || !read_all(r->prod_cli, &ack, 1) || ack) {
        sb_fail(ch, "relay: the batch was not acknowledged");
        return -1;
    }
    return 0;
}

static int relay_consume(sb_chan *ch)
{
    relay_chan *r = ch->sys;
    size_t cap = RELAY_CHUNK * 4 + (size_t)ch->o->size + 4;
    while (!sb_consumer_done(ch)) { /* the socket's receive timeout is SB_POLL_MS */
        ssize_t k = recv(r->cons_cli, r->rbuf + r->rlen, cap - r->rlen, 0);
        if (k <= 0)
            continue;
        r->rlen += (size_t)k;
        size_t at = 0;
        while (r->rlen - at >= 4) {
            size_t l = (size_t)r->rbuf[at] | (size_t)r->rbuf[at + 1] << 8 |
                       (size_t)r->rbuf[at + 2] << 16 | (size_t)r->rbuf[at + 3] << 24;
            if (r->rlen - at < 4 + l)
                break;
            if (!sb_take(ch, r->rbuf + at + 4, l, sb_now_ns()))
                return -1;
            at += 4 + l;
        }
        memmove(r->rbuf, r->rbuf + at, r->rlen - at);
        r->rlen -= at;
    }
    return 0;
}

static int run_relay(const wp_config *cfg, const sb_opts *o, sb_chan *chs)
{
    static const sb_system sys = {relay_send, relay_consume};
    static relay_chan rc_[SB_CHANNELS_MAX];
    wp_client *c = NULL;
    int rc = wp_client_open(cfg, &c), st = 1;
    if (rc)
        return die("wp_client_open", rc);
    for (int i = 0; i < o->channels; i++) {
        relay_chan *r = &rc_[i];
        *r = (relay_chan){.prod_cli = -1, .prod_srv = -1, .cons_srv = -1, .cons_cli = -1};
        pthread_mutex_init(&r->d.mu, NULL);
        pthread_cond_init(&r->d.cond, NULL);
        chs[i].sys = r;
        r->sendbuf = malloc(4 + (size_t)o->batch * ((size_t)o->size + 4));
        r->rbuf = malloc(RELAY_CHUNK * 4 + (size_t)o->size + 4);
        if (!r->sendbuf || !r->rbuf || tcp_pair(&r->prod_cli, &r->prod_srv) ||
            tcp_pair(&r->cons_cli, &r->cons_srv)) {
            fprintf(stderr, "wp-stream-bench: relay %d: no memory or no loopback TCP\n", i);
            goto out;
        }
        struct timeval tv = {0, SB_POLL_MS * 1000};
        setsockopt(r->cons_cli, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        if ((rc = wp_log_create(c, chs[i].name)) || (rc = wp_log_open(c, chs[i].name, &r->d.log)) ||
            (rc = wp_writer_open(r->d.log, &r->d.w)) ||
            (!o->no_consume && (rc = wp_reader_open(r->d.log, WP_EARLIEST, &r->d.r)))) {
            st = die(chs[i].name, rc);
            goto out;
        }
        r->in_started = pthread_create(&r->in_thr, NULL, relay_in_main, &chs[i]) == 0;
        r->out_started = !o->no_consume &&
                         pthread_create(&r->out_thr, NULL, relay_out_main, &chs[i]) == 0;
    }
    st = sb_run("wp-relay", o, chs, &sys);
out:
    atomic_store(&sb_abort, true); /* the relays' loops end */
    for (int i = 0; i < o->channels; i++) {
        relay_chan *r = &rc_[i];
        if (r->prod_cli >= 0)
            shutdown(r->prod_cli, SHUT_RDWR);
        if (r->cons_srv >= 0)
            shutdown(r->cons_srv, SHUT_RDWR);
        if (r->in_started)
            pthread_join(r->in_thr, NULL);
        if (r->out_started)
            pthread_join(r->out_thr, NULL);
        int fds[] = {r->prod_cli, r->prod_srv, r->cons_srv, r->cons_cli};
        for (int k = 0; k < 4; k++)
            if (fds[k] >= 0)
                close(fds[k]);
        if (r->d.r)
            wp_reader_close(r->d.r);
        if (r->d.w && (rc = wp_writer_close(r->d.w)) && !st)
            st = die("wp_writer_close", rc);
        if (r->d.log)
            wp_log_close(r->d.log);
        free(r->sendbuf);
        free(r->rbuf);
        pthread_mutex_destroy(&r->d.mu);
        pthread_cond_destroy(&r->d.cond);
    }
    wp_client_close(c);
    return st;
}

/* ---- main ---------------------------------------------------------------- */

int main(int argc, char **argv)
{
    sb_opts o;
    sb_chan chs[SB_CHANNELS_MAX];
    const char *cfg_path = NULL, *overrides[OVERRIDES_MAX];
    int n_over = 0, st = 2;
    sb_defaults(&o);
    if (argc < 2 ||
        (strcmp(argv[1], "service") && strcmp(argv[1], "direct") && strcmp(argv[1], "relay"))) {
        fputs(usage, stderr);
        return 2;
    }
    bool service = strcmp(argv[1], "service") == 0;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int k = sb_opt(&o, a, v);
        if (k == 0 && v && !strcmp(a, "-c"))
            cfg_path = v, k = 2;
        else if (k == 0 && v && !strcmp(a, "-o") && n_over < OVERRIDES_MAX)
            overrides[n_over++] = v, k = 2;
        if (k <= 0) {
            fprintf(stderr, "wp-stream-bench: bad option or value near '%s'\n%s", a, usage);
            return 2;
        }
        i += k - 1;
    }
    wp_config *cfg = NULL;
    int rc = cfg_path ? wp_config_load(cfg_path, &cfg) : wp_config_default(&cfg);
    if (rc)
        return die(cfg_path ? cfg_path : "config", rc);
    for (int i = 0; i < n_over; i++) {
        char key[128];
        const char *eq = strchr(overrides[i], '=');
        if (!eq || eq == overrides[i] || (size_t)(eq - overrides[i]) >= sizeof key) {
            fprintf(stderr, "wp-stream-bench: -o wants KEY=VALUE, got '%s'\n", overrides[i]);
            goto out_cfg;
        }
        snprintf(key, sizeof key, "%.*s", (int)(eq - overrides[i]), overrides[i]);
        if ((rc = wp_config_set(cfg, key, eq + 1))) {
            st = die(overrides[i], rc);
            goto out_cfg;
        }
    }
    wp_config_set_log(cfg, log_stderr, NULL);
    int made = 0;
    for (; made < o.channels; made++)
        if (sb_chan_init(&chs[made], &o, made)) {
            fprintf(stderr, "wp-stream-bench: out of memory\n");
            st = 1;
            goto out_chans;
        }
    st = service                          ? run_service(cfg, &o, chs)
         : strcmp(argv[1], "relay") == 0 ? run_relay(cfg, &o, chs)
                                         : run_direct(cfg, &o, chs);
out_chans:
    for (int i = 0; i < made; i++)
        sb_chan_free(&chs[i]);
out_cfg:
    wp_config_free(cfg);
    return st;
}
