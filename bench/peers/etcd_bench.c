/* etcd_bench.c — the `wp bench` workload (writer only) against etcd v3, in
 * etcd's own protocol: gRPC over HTTP/2 without TLS (h2c, as etcd serves
 * it on its client port), on libnghttp2 (Debian libnghttp2-dev). Point it
 * at one member: the leader spares a forwarding hop (bench/quorum.sh finds
 * it).
 *
 * Each entry is one KV.Put of key <log>/<12-digit entry number>, value =
 * the entry's payload (send time in the first 8 bytes, then incompressible
 * bytes): POST /etcdserverpb.KV/Put, the PutRequest protobuf (field 1 key,
 * field 2 value) in one gRPC message. All puts go on one connection, at most
 * --window streams at a time, as etcd's Go client (clientv3) multiplexes
 * them. Ack = the stream's answer is complete with :status 200 and
 * grpc-status 0; an entry's ack latency runs from stamping its request to
 * that moment. --window 1 is one put at a time. One untimed put first opens
 * the connection. No reader: --reader is refused.
 *
 * Not libcurl: Debian 12's libcurl 7.88.1 fails every request after the
 * first on a reused HTTP/2 prior-knowledge connection ("Error in the HTTP2
 * framing layer", curl issue 10634, fixed in 8.0). Not the JSON gateway
 * (/v3/kv/put): it decodes the JSON and passes each request on over gRPC
 * inside etcd, an extra hop that etcd's clients do not pay.
 *
 * Build (bench/quorum.sh does it):
 *   gcc -O2 -std=c11 -D_GNU_SOURCE etcd_bench.c -o etcd_bench -lnghttp2 -lm
 * Prints one JSON line (the fields of `wp bench --json`). Exit 0, 1 on an
 * etcd or connection error, 2 on a bad command line. */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <nghttp2/nghttp2.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "peer_common.h"

#define KEY_MAX 64
/* gRPC frame header (5) + key field (1 + 10 + KEY_MAX) + value tag and
 * length (1 + 10) + the send time (8). */
#define PRE_MAX (5 + 11 + KEY_MAX + 11 + 8)
#define POLL_MS 100
#define RECV_BUF 65536
#define ERR_MAX 256

typedef struct {
    uint8_t pre[PRE_MAX]; /* this request's prefix: framing, key, send time */
    size_t pre_len, body_len;
    size_t off; /* bytes of the body handed to nghttp2 so far */
    int64_t start_ns, end_ns;
    int http_status, grpc_status; /* -1 until the answer carries one */
    uint32_t h2_error;            /* RST_STREAM / GOAWAY code at close */
} slot;

typedef struct {
    const peer_opts *o;
    peer_lat *lat;
    int fd;
    nghttp2_session *h2;
    slot *slots;
    int64_t nslots, active;
    slot **done; /* closed streams not yet accounted for */
    int64_t ndone;
    const uint8_t *payload; /* every value is payload with its own send time */
    char authority[128];
    char err[ERR_MAX]; /* the first failure */
} bench;

static int fail(bench *b, const char *what)
{
    fprintf(stderr, "etcd_bench: %s%s%s\n", what, b->err[0] ? ": " : "", b->err);
    return 1;
}

static size_t varint(uint8_t *p, uint64_t v)
{
    size_t n = 0;
    do {
        p[n++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
        v >>= 7;
    } while (v);
    return n;
}

/* The prefix of entry `seq`'s request (-1: the warm-up put), stamped now:
 * gRPC frame header (uncompressed, big-endian length), key field, value
 * tag and length, the 8-byte send time. payload[8..size) follows. */
static void build_prefix(bench *b, slot *s, int64_t seq)
{
    const peer_opts *o = b->o;
    char key[KEY_MAX];
    uint8_t msg[PRE_MAX];
    int klen = seq < 0 ? snprintf(key, sizeof key, "%s/warmup", o->log)
                       : snprintf(key, sizeof key, "%s/%012lld", o->log, (long long)seq);
    size_t n = 0;
    msg[n++] = 0x0a; /* PutRequest.key (1), length-delimited */
    n += varint(msg + n, (uint64_t)klen);
    memcpy(msg + n, key, (size_t)klen), n += (size_t)klen;
    msg[n++] = 0x12; /* PutRequest.value (2) */
    n += varint(msg + n, (uint64_t)o->size);
    uint64_t len = n + (uint64_t)o->size;
    uint8_t *p = s->pre;
    p[0] = 0;
    p[1] = (uint8_t)(len >> 24), p[2] = (uint8_t)(len >> 16);
    p[3] = (uint8_t)(len >> 8), p[4] = (uint8_t)len;
    memcpy(p + 5, msg, n);
    s->start_ns = peer_stamp(p + 5 + n, 8);
    s->pre_len = 5 + n + 8;
    s->body_len = s->pre_len + (size_t)o->size - 8;
}

/* nghttp2 callbacks ---------------------------------------------------- */

static ssize_t on_send(nghttp2_session *h2, const uint8_t *data, size_t len, int flags, void *arg)
{
    (void)h2, (void)flags;
    bench *b = arg;
    ssize_t n = send(b->fd, data, len, MSG_NOSIGNAL);
    if (n >= 0)
        return n;
    if (errno == EAGAIN || errno == EWOULDBLOCK)
        return NGHTTP2_ERR_WOULDBLOCK;
    snprintf(b->err, sizeof b->err, "send: %s", strerror(errno));
    return NGHTTP2_ERR_CALLBACK_FAILURE;
}

static ssize_t on_read_body(nghttp2_session *h2, int32_t id, uint8_t *buf, size_t len,
                            uint32_t *flags, nghttp2_data_source *src, void *arg)
{
    (void)h2, (void)id;
    bench *b = arg;
    slot *s = src->ptr;
    size_t n = 0;
    if (s->off < s->pre_len) {
        n = s->pre_len - s->off < len ? s->pre_len - s->off : len;
        memcpy(buf, s->pre + s->off, n);
        s->off += n;
    }
    if (n < len && s->off < s->body_len) {
        size_t at = s->off - s->pre_len + 8, m = s->body_len - s->off;
        if (m > len - n)
            m = len - n;
        memcpy(buf + n, b->payload + at, m);
        s->off += m, n += m;
    }
    if (s->off == s->body_len)
        *flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)n;
}

static int on_header(nghttp2_session *h2, const nghttp2_frame *frame, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                     void *arg)
{
    (void)flags;
    bench *b = arg;
    slot *s = nghttp2_session_get_stream_user_data(h2, frame->hd.stream_id);
    if (!s)
        return 0;
    if (namelen == 7 && memcmp(name, ":status", 7) == 0)
        s->http_status = atoi((const char *)value);
    else if (namelen == 11 && memcmp(name, "grpc-status", 11) == 0)
        s->grpc_status = atoi((const char *)value);
    else if (namelen == 12 && memcmp(name, "grpc-message", 12) == 0 && valuelen && !b->err[0])
        snprintf(b->err, sizeof b->err, "grpc-message %.*s", (int)(valuelen > 200 ? 200 : valuelen),
                 (const char *)value);
    return 0;
}

static int on_close(nghttp2_session *h2, int32_t id, uint32_t code, void *arg)
{
    bench *b = arg;
    slot *s = nghttp2_session_get_stream_user_data(h2, id);
    if (s) {
        s->end_ns = peer_mono_ns();
        s->h2_error = code;
        b->done[b->ndone++] = s;
    }
    return 0;
}

/* The connection -------------------------------------------------------- */

static int connect_h2(bench *b)
{
    const peer_opts *o = b->o;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *ai = NULL;
    char port[16];
    snprintf(port, sizeof port, "%d", o->port);
    snprintf(b->authority, sizeof b->authority, "%s:%d", o->host, o->port);
    int rc = getaddrinfo(o->host, port, &hints, &ai);
    if (rc) {
        snprintf(b->err, sizeof b->err, "%s: %s", b->authority, gai_strerror(rc));
        return -1;
    }
    b->fd = socket(ai->ai_family, SOCK_STREAM, 0);
    if (b->fd < 0 || connect(b->fd, ai->ai_addr, ai->ai_addrlen) < 0) {
        snprintf(b->err, sizeof b->err, "connect %s: %s", b->authority, strerror(errno));
        freeaddrinfo(ai);
        return -1;
    }
    freeaddrinfo(ai);
    int one = 1;
    setsockopt(b->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    fcntl(b->fd, F_SETFL, fcntl(b->fd, F_GETFL) | O_NONBLOCK);

    nghttp2_session_callbacks *cb;
    if (nghttp2_session_callbacks_new(&cb))
        return -1;
    nghttp2_session_callbacks_set_send_callback(cb, on_send);
    nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_close);
    rc = nghttp2_session_client_new(&b->h2, cb, b);
    nghttp2_session_callbacks_del(cb);
    nghttp2_settings_entry iv[] = {{NGHTTP2_SETTINGS_ENABLE_PUSH, 0}};
    if (rc || nghttp2_submit_settings(b->h2, NGHTTP2_FLAG_NONE, iv, 1)) {
        snprintf(b->err, sizeof b->err, "nghttp2 session: %s", nghttp2_strerror(rc));
        return -1;
    }
    return 0;
}

static int slot_start(bench *b, slot *s, int64_t seq)
{
    const nghttp2_nv hdrs[] = {
#define NV(n, v) {(uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, strlen(v), NGHTTP2_NV_FLAG_NONE}
        NV(":method", "POST"),
        NV(":scheme", "http"),
        NV(":path", "/etcdserverpb.KV/Put"),
        NV(":authority", b->authority),
        NV("content-type", "application/grpc"),
        NV("te", "trailers"),
#undef NV
    };
    nghttp2_data_provider body = {.source.ptr = s, .read_callback = on_read_body};
    build_prefix(b, s, seq);
    s->off = 0, s->http_status = s->grpc_status = -1, s->h2_error = 0;
    int32_t id = nghttp2_submit_request(b->h2, NULL, hdrs, sizeof hdrs / sizeof hdrs[0], &body, s);
    if (id < 0) {
        snprintf(b->err, sizeof b->err, "nghttp2_submit_request: %s", nghttp2_strerror(id));
        return -1;
    }
    b->active++;
    return 0;
}

/* Reads what the socket has and feeds it to nghttp2. */
static int pump_in(bench *b)
{
    static uint8_t buf[RECV_BUF];
    for (;;) {
        ssize_t n = recv(b->fd, buf, sizeof buf, 0);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        if (n <= 0) {
            snprintf(b->err, sizeof b->err, "recv: %s", n ? strerror(errno) : "connection closed");
            return -1;
        }
        ssize_t rv = nghttp2_session_mem_recv(b->h2, buf, (size_t)n);
        if (rv < 0) {
            snprintf(b->err, sizeof b->err, "nghttp2: %s", nghttp2_strerror((int)rv));
            return -1;
        }
    }
}

/* Puts entries first..first+n-1 (first < 0: the one warm-up put), at most
 * nslots at a time, until every started put is answered; no new put after
 * a failure or past deadline_ns (0: none). Records latencies if `timed`. */
static int run_puts(bench *b, int64_t first, int64_t n, bool timed, int64_t deadline_ns)
{
    int64_t next = 0;
    int st = 0;
    if (first < 0)
        n = 1;
    for (int64_t i = 0; i < b->nslots && next < n; i++, next++)
        if (slot_start(b, &b->slots[i], first < 0 ? -1 : first + next))
            return -1;
    while (b->active > 0) {
        int rv = nghttp2_session_send(b->h2);
        if (rv) {
            snprintf(b->err, sizeof b->err, "nghttp2_session_send: %s", nghttp2_strerror(rv));
            return -1;
        }
        struct pollfd p = {b->fd, POLLIN | (nghttp2_session_want_write(b->h2) ? POLLOUT : 0), 0};
        if (poll(&p, 1, POLL_MS) < 0 && errno != EINTR)
            return -1;
        if ((p.revents & (POLLIN | POLLHUP | POLLERR)) && pump_in(b))
            return -1;
        for (int64_t i = 0; i < b->ndone; i++) {
            slot *s = b->done[i];
            b->active--;
            if (s->h2_error || s->http_status != 200 || s->grpc_status != 0) {
                if (!st) { /* report the first failure */
                    char msg[ERR_MAX];
                    memcpy(msg, b->err, sizeof msg); /* the grpc-message, if any */
                    snprintf(b->err, sizeof b->err,
                             ":status %d, grpc-status %d, HTTP/2 error %u%s%.200s", s->http_status,
                             s->grpc_status, s->h2_error, msg[0] ? ", " : "", msg);
                }
                b->lat->failed++, st = -1;
                continue;
            }
            if (timed)
                b->lat->ack_ns[b->lat->n_ack++] = s->end_ns - s->start_ns;
            if (!st && next < n && !(deadline_ns && s->end_ns > deadline_ns))
                if (slot_start(b, s, first + next++))
                    return -1;
        }
        b->ndone = 0;
    }
    return st;
}

int main(int argc, char **argv)
{
    peer_opts o;
    peer_lat lat;
    bench b = {.fd = -1};
    int st = peer_parse(argc, argv, &o);
    (void)peer_sent_ns; /* no reader here */
    if (st)
        return st;
    if (o.reader)
        return peer_usage(argv[0], "no --reader here (writer only)");
    if (strlen(o.log) > KEY_MAX - 16)
        return peer_usage(argv[0], "--log is too long");
    b.nslots = o.window < o.entries ? o.window : o.entries;
    if (peer_lat_alloc(&lat, o.entries) || !(b.payload = peer_payload(o.size)) ||
        !(b.slots = calloc((size_t)b.nslots, sizeof *b.slots)) ||
        !(b.done = calloc((size_t)b.nslots, sizeof *b.done))) {
        fprintf(stderr, "etcd_bench: out of memory\n");
        return 1;
    }
    b.o = &o, b.lat = &lat;
    if (connect_h2(&b)) {
        st = fail(&b, "connecting");
    } else if (run_puts(&b, -1, 1, false, 0)) { /* opens the connection */
        st = fail(&b, "warm-up put");
    } else {
        int64_t t0 = peer_mono_ns();
        int rc = run_puts(&b, 0, o.entries, true, t0 + (int64_t)(o.seconds_max * 1e9));
        double secs = (double)(peer_mono_ns() - t0) / 1e9;
        if (rc)
            st = fail(&b, lat.failed ? "put failed" : "connection");
        else
            peer_report(&o, &lat, secs);
    }
    nghttp2_session_del(b.h2);
    if (b.fd >= 0)
        close(b.fd);
    free(b.done);
    free(b.slots);
    free((void *)b.payload);
    peer_lat_free(&lat);
    return st;
}
