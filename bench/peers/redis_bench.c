/* redis_bench.c — the `wp bench` workload against Redis Streams, on hiredis.
 *
 * Writer: one connection, XADD <log> * d <payload>, pipelined: up to
 * --window commands sent whose replies have not arrived yet (each command is
 * written to the socket as soon as it is issued). A reply is the ack; with
 * `appendfsync always` Redis fsyncs the AOF before it sends replies.
 * Reader (--reader): a second connection, XREAD COUNT c BLOCK 100 STREAMS
 * <log> <last-id> from the start of the (fresh) stream; the end-to-end
 * latency is reader receive time minus the send time in the payload.
 *
 * Build (bench/run.sh does it):
 *   gcc -O2 -std=c11 -D_GNU_SOURCE redis_bench.c -o redis_bench -lhiredis -lpthread -lm
 * Prints one JSON line (the fields of `wp bench --json`). Exit 0, 1 on a
 * Redis error, 2 on a bad command line. */
#include <hiredis/hiredis.h>
#include <pthread.h>
#include <stdatomic.h>

#include "peer_common.h"

/* XREAD batch: at most this many payload bytes per reply (and 1024 entries). */
#define READ_BATCH_BYTES (4LL << 20)
#define READ_BATCH_MAX 1024
#define STREAM_ID_MAX 64

typedef struct {
    const peer_opts *o;
    peer_lat *lat;
    atomic_llong want; /* entries the reader must see; set when the writer is done */
    atomic_bool writer_done;
    int rc;
    char err[200];
} reader_ctx;

static redisContext *connect_or_fail(const peer_opts *o, char *err, size_t errlen)
{
    redisContext *c = redisConnect(o->host, o->port);
    if (!c || c->err) {
        snprintf(err, errlen, "connecting to %s:%d: %s", o->host, o->port,
                 c ? c->errstr : "out of memory");
        if (c)
            redisFree(c);
        return NULL;
    }
    return c;
}

/* Records the entries of one XREAD reply; updates last_id. Returns the
 * number of entries, -1 on an unexpected reply shape. */
static int64_t take_entries(redisReply *r, reader_ctx *x, char *last_id, int64_t now)
{
    if (r->type == REDIS_REPLY_NIL)
        return 0;
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 1)
        return -1;
    redisReply *s = r->element[0]; /* [key, entries] */
    if (s->type != REDIS_REPLY_ARRAY || s->elements != 2 || s->element[1]->type != REDIS_REPLY_ARRAY)
        return -1;
    redisReply *es = s->element[1];
    int64_t got = 0;
    for (size_t i = 0; i < es->elements; i++) {
        redisReply *e = es->element[i]; /* [id, [field, value]] */
        if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
            e->element[0]->type != REDIS_REPLY_STRING || e->element[1]->type != REDIS_REPLY_ARRAY ||
            e->element[1]->elements != 2 || e->element[0]->len >= STREAM_ID_MAX)
            return -1;
        redisReply *v = e->element[1]->element[1];
        memcpy(last_id, e->element[0]->str, e->element[0]->len);
        last_id[e->element[0]->len] = '\0';
        int64_t sent = peer_sent_ns(v->str, v->len);
        if (x->lat->n_e2e < x->o->entries)
            x->lat->e2e_ns[x->lat->n_e2e++] = sent >= 0 ? now - sent : -1;
        got++;
    }
    return got;
}

static void *reader_main(void *arg)
{
    reader_ctx *x = arg;
    char last_id[STREAM_ID_MAX] = "0-0", count[32];
    int64_t batch = READ_BATCH_BYTES / x->o->size, idle_since = 0;
    batch = batch < 1 ? 1 : batch > READ_BATCH_MAX ? READ_BATCH_MAX : batch;
    snprintf(count, sizeof count, "%lld", (long long)batch);
    redisContext *c = connect_or_fail(x->o, x->err, sizeof x->err);
    if (!c) {
        x->rc = 1;
        return NULL;
    }
    while (!atomic_load(&x->writer_done) || x->lat->n_e2e < atomic_load(&x->want)) {
        redisReply *r = redisCommand(c, "XREAD COUNT %s BLOCK %d STREAMS %s %s", count,
                                     PEER_READER_POLL_MS, x->o->log, last_id);
        int64_t now = peer_mono_ns();
        if (!r) {
            snprintf(x->err, sizeof x->err, "XREAD: %s", c->errstr);
            x->rc = 1;
            break;
        }
        int64_t got = take_entries(r, x, last_id, now);
        freeReplyObject(r);
        if (got < 0) {
            snprintf(x->err, sizeof x->err, "XREAD: unexpected reply");
            x->rc = 1;
            break;
        }
        if (got > 0 || !atomic_load(&x->writer_done)) {
            idle_since = 0;
        } else if (!idle_since) {
            idle_since = now;
        } else if (now - idle_since > PEER_READER_IDLE_MS * 1000000LL) {
            snprintf(x->err, sizeof x->err, "reader idle after %lld entries",
                     (long long)x->lat->n_e2e);
            x->rc = 1;
            break;
        }
    }
    redisFree(c);
    return NULL;
}

/* Takes one XADD reply: records the ack latency of the oldest in flight. */
static int take_ack(redisReply *r, peer_lat *lat, const int64_t *sent_ns, char *err, size_t n)
{
    int64_t now = peer_mono_ns(), k = lat->n_ack + lat->failed;
    int bad = r->type == REDIS_REPLY_ERROR;
    if (bad) {
        if (!lat->failed)
            snprintf(err, n, "XADD: %s", r->str);
        lat->failed++;
    } else {
        lat->ack_ns[lat->n_ack++] = now - sent_ns[k];
    }
    freeReplyObject(r);
    return bad;
}

/* Sends one XADD and writes it out; 0 or -1. */
static int send_xadd(redisContext *c, const peer_opts *o, uint8_t *payload, int64_t *sent_ns)
{
    const char *av[5] = {"XADD", o->log, "*", "d", (const char *)payload};
    size_t al[5] = {4, strlen(o->log), 1, 1, (size_t)o->size};
    int done = 0;
    *sent_ns = peer_stamp(payload, (size_t)o->size);
    if (redisAppendCommandArgv(c, 5, av, al) != REDIS_OK)
        return -1;
    while (!done)
        if (redisBufferWrite(c, &done) != REDIS_OK)
            return -1;
    return 0;
}

static int run_writer(redisContext *c, const peer_opts *o, peer_lat *lat, int64_t *sent_ns,
                      double *secs, char *err, size_t errlen)
{
    uint8_t *payload = peer_payload(o->size);
    int64_t sent = 0, t0 = peer_mono_ns(), deadline = t0 + (int64_t)(o->seconds_max * 1e9);
    bool stop = false;
    if (!payload) {
        snprintf(err, errlen, "out of memory");
        return 1;
    }
    while (lat->n_ack + lat->failed < sent || (sent < o->entries && !stop)) {
        while (sent < o->entries && !stop && sent - lat->n_ack - lat->failed < o->window) {
            if (send_xadd(c, o, payload, &sent_ns[sent]))
                goto out_io;
            sent++;
            stop = (sent & 63) == 0 && peer_mono_ns() > deadline;
        }
        redisReply *r;
        if (redisGetReply(c, (void **)&r) != REDIS_OK)
            goto out_io;
        take_ack(r, lat, sent_ns, err, errlen);
        /* Drain replies already buffered without blocking. */
        while (redisReaderGetReply(c->reader, (void **)&r) == REDIS_OK && r)
            take_ack(r, lat, sent_ns, err, errlen);
        stop = stop || peer_mono_ns() > deadline;
    }
    *secs = (double)(peer_mono_ns() - t0) / 1e9;
    free(payload);
    return lat->failed ? 1 : 0;
out_io:
    snprintf(err, errlen, "XADD: %s", c->errstr);
    free(payload);
    return 1;
}

int main(int argc, char **argv)
{
    peer_opts o;
    peer_lat lat;
    reader_ctx x = {0};
    pthread_t tid;
    char err[256] = "";
    double secs = 0;
    int st = peer_parse(argc, argv, &o);
    if (st)
        return st;
    int64_t *sent_ns = calloc((size_t)o.entries, sizeof *sent_ns);
    if (!sent_ns || peer_lat_alloc(&lat, o.entries)) {
        fprintf(stderr, "redis_bench: out of memory\n");
        return 1;
    }
    redisContext *c = connect_or_fail(&o, err, sizeof err);
    if (!c) {
        st = 1;
        goto out_free;
    }
    x.o = &o, x.lat = &lat;
    atomic_init(&x.want, 0);
    atomic_init(&x.writer_done, false);
    if (o.reader && pthread_create(&tid, NULL, reader_main, &x) != 0) {
        snprintf(err, sizeof err, "starting the reader thread");
        st = 1;
        goto out_free_ctx;
    }
    st = run_writer(c, &o, &lat, sent_ns, &secs, err, sizeof err);
    if (o.reader) {
        atomic_store(&x.want, st ? 0 : lat.n_ack);
        atomic_store(&x.writer_done, true);
        pthread_join(tid, NULL);
        if (!st && x.rc) {
            st = 1;
            snprintf(err, sizeof err, "reader: %s", x.err);
        }
    }
    if (!st)
        peer_report(&o, &lat, secs);
out_free_ctx:
    redisFree(c);
out_free:
    if (st)
        fprintf(stderr, "redis_bench: %s\n", err);
    free(sent_ns);
    peer_lat_free(&lat);
    return st;
}
