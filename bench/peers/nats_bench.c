/* nats_bench.c — the `wp bench` workload against NATS JetStream, on cnats
 * (Debian libnats-dev, 3.x).
 *
 * Setup: creates stream <log> (file storage, 1 replica, subject <log>).
 * Writer: one connection, js_PublishAsync with jsOptions.PublishAsync
 * MaxPending = --window (the library blocks the call while that many acks
 * are outstanding); the ack is the server's PubAck, received in the ack
 * handler, whose latency is now minus the send time in the payload.
 * Reader (--reader): a second connection with an ordered push consumer
 * (ephemeral, no acks, flow control) from the start of the fresh stream.
 *
 * Build (bench/run.sh does it):
 *   gcc -O2 -std=c11 -D_GNU_SOURCE nats_bench.c -o nats_bench -lnats -lpthread -lm
 * Prints one JSON line (the fields of `wp bench --json`). Exit 0, 1 on a
 * NATS error, 2 on a bad command line. */
#include <nats/nats.h>
#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

#include "peer_common.h"

/* Longest a publish may wait for window room, and for the final acks. */
#define STALL_WAIT_MS 60000
#define COMPLETE_WAIT_MS 120000
#define URL_MAX 300

typedef struct {
    const peer_opts *o;
    peer_lat *lat;
    pthread_mutex_t mu;
    atomic_llong e2e_seen;
} bench_ctx;

static void on_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure)
{
    (void)js;
    bench_ctx *b = closure;
    int64_t now = peer_mono_ns();
    int64_t sent = peer_sent_ns(natsMsg_GetData(msg), (size_t)natsMsg_GetDataLength(msg));
    pthread_mutex_lock(&b->mu);
    if (pa && !pae && b->lat->n_ack < b->o->entries)
        b->lat->ack_ns[b->lat->n_ack++] = sent >= 0 ? now - sent : -1;
    else
        b->lat->failed++;
    pthread_mutex_unlock(&b->mu);
    natsMsg_Destroy(msg);
}

static void on_msg(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    (void)nc, (void)sub;
    bench_ctx *b = closure;
    int64_t now = peer_mono_ns();
    int64_t sent = peer_sent_ns(natsMsg_GetData(msg), (size_t)natsMsg_GetDataLength(msg));
    /* Only this thread writes e2e_ns; main reads it after e2e_seen says so. */
    int64_t k = atomic_load(&b->e2e_seen);
    if (k < b->o->entries) {
        b->lat->e2e_ns[k] = sent >= 0 ? now - sent : -1;
        atomic_store(&b->e2e_seen, k + 1);
    }
    natsMsg_Destroy(msg);
}

static int fail(const char *what, natsStatus s)
{
    fprintf(stderr, "nats_bench: %s: %s (%s)\n", what, natsStatus_GetText(s),
            nats_GetLastError(NULL) ? nats_GetLastError(NULL) : "");
    return 1;
}

static natsStatus connect_to(const peer_opts *o, natsConnection **nc)
{
    char url[URL_MAX];
    natsOptions *no = NULL;
    snprintf(url, sizeof url, "nats://%s:%d", o->host, o->port);
    natsStatus s = natsOptions_Create(&no);
    if (s == NATS_OK)
        s = natsOptions_SetURL(no, url);
    if (s == NATS_OK)
        s = natsConnection_Connect(nc, no);
    natsOptions_Destroy(no);
    return s;
}

static natsStatus add_stream(jsCtx *js, const peer_opts *o)
{
    jsStreamConfig sc;
    jsErrCode jerr = 0;
    const char *subjects[1] = {o->log};
    jsStreamConfig_Init(&sc);
    sc.Name = o->log;
    sc.Subjects = subjects;
    sc.SubjectsLen = 1;
    sc.Storage = js_FileStorage;
    sc.Replicas = 1;
    return js_AddStream(NULL, js, &sc, NULL, &jerr);
}

/* Publishes until --entries or --seconds, then waits for every ack. */
static int run_writer(jsCtx *js, bench_ctx *b, double *secs)
{
    const peer_opts *o = b->o;
    uint8_t *payload = peer_payload(o->size);
    int64_t t0 = peer_mono_ns(), deadline = t0 + (int64_t)(o->seconds_max * 1e9);
    jsPubOptions po;
    natsStatus s = NATS_OK;
    int st = 0;
    if (!payload)
        return fail("payload", NATS_NO_MEMORY);
    for (int64_t i = 0; i < o->entries && s == NATS_OK; i++) {
        if ((i & 63) == 0 && i && peer_mono_ns() > deadline)
            break;
        peer_stamp(payload, (size_t)o->size);
        s = js_PublishAsync(js, o->log, payload, (int)o->size, NULL);
    }
    if (s != NATS_OK)
        st = fail("js_PublishAsync", s);
    jsPubOptions_Init(&po);
    po.MaxWait = COMPLETE_WAIT_MS;
    if ((s = js_PublishAsyncComplete(js, &po)) != NATS_OK && !st)
        st = fail("js_PublishAsyncComplete", s);
    *secs = (double)(peer_mono_ns() - t0) / 1e9;
    pthread_mutex_lock(&b->mu);
    if (b->lat->failed && !st)
        st = fail("publish acks", NATS_ERR);
    pthread_mutex_unlock(&b->mu);
    free(payload);
    return st;
}

/* Waits until the reader has seen `want` entries (or stays idle too long). */
static int wait_reader(bench_ctx *b, int64_t want)
{
    int64_t last = -1, since = peer_mono_ns();
    for (;;) {
        int64_t seen = atomic_load(&b->e2e_seen), now = peer_mono_ns();
        if (seen >= want)
            return 0;
        if (seen != last)
            last = seen, since = now;
        else if (now - since > PEER_READER_IDLE_MS * 1000000LL)
            break;
        usleep(1000);
    }
    fprintf(stderr, "nats_bench: reader idle after %lld of %lld entries\n",
            (long long)atomic_load(&b->e2e_seen), (long long)want);
    return 1;
}

static int run(const peer_opts *o, bench_ctx *b, natsConnection *nc, natsConnection *rc)
{
    jsCtx *js = NULL, *rjs = NULL;
    natsSubscription *sub = NULL;
    jsOptions jo;
    jsSubOptions so;
    jsErrCode jerr = 0;
    double secs = 0;
    int st = 0;
    natsStatus s;
    jsOptions_Init(&jo);
    jo.PublishAsync.MaxPending = o->window;
    jo.PublishAsync.AckHandler = on_ack;
    jo.PublishAsync.AckHandlerClosure = b;
    jo.PublishAsync.StallWait = STALL_WAIT_MS;
    if ((s = natsConnection_JetStream(&js, nc, &jo)) != NATS_OK)
        return fail("JetStream context", s);
    if ((s = add_stream(js, o)) != NATS_OK) {
        st = fail("creating the stream", s);
        goto out;
    }
    if (rc) {
        jsSubOptions_Init(&so);
        so.Ordered = true;
        if ((s = natsConnection_JetStream(&rjs, rc, NULL)) != NATS_OK ||
            (s = js_Subscribe(&sub, rjs, o->log, on_msg, b, NULL, &so, &jerr)) != NATS_OK ||
            (s = natsSubscription_SetPendingLimits(sub, -1, -1)) != NATS_OK) {
            st = fail("subscribing the reader", s);
            goto out;
        }
    }
    st = run_writer(js, b, &secs);
    if (!st && rc)
        st = wait_reader(b, b->lat->n_ack);
    b->lat->n_e2e = atomic_load(&b->e2e_seen);
    if (!st)
        peer_report(o, b->lat, secs);
out:
    if (sub) {
        natsSubscription_Unsubscribe(sub);
        natsSubscription_Destroy(sub);
    }
    jsCtx_Destroy(rjs);
    jsCtx_Destroy(js);
    return st;
}

int main(int argc, char **argv)
{
    peer_opts o;
    peer_lat lat;
    bench_ctx b = {.mu = PTHREAD_MUTEX_INITIALIZER};
    natsConnection *nc = NULL, *rc = NULL;
    natsStatus s;
    int st = peer_parse(argc, argv, &o);
    if (st)
        return st;
    if (peer_lat_alloc(&lat, o.entries)) {
        fprintf(stderr, "nats_bench: out of memory\n");
        return 1;
    }
    b.o = &o, b.lat = &lat;
    atomic_init(&b.e2e_seen, 0);
    if ((s = connect_to(&o, &nc)) != NATS_OK || (o.reader && (s = connect_to(&o, &rc)) != NATS_OK))
        st = fail("connecting", s);
    else
        st = run(&o, &b, nc, rc);
    natsConnection_Destroy(rc);
    natsConnection_Destroy(nc);
    nats_CloseAndWait(5000);
    peer_lat_free(&lat);
    return st;
}
