/* stream_nats.c — the publish/subscribe workload of `make bench-streaming`
 * (stream_common.h) on NATS JetStream, with cnats (Debian libnats-dev).
 *
 * Channel i is the stream <name>-i (subject <name>-i, file storage,
 * --replicas replicas, default 1), created here. Per channel:
 * - producer: its own connection and JetStream context; a batch is B
 *   js_PublishAsync (PublishAsync.MaxPending = B, so none blocks), then
 *   js_PublishAsyncComplete: the batch is acked when every PubAck is in.
 *   NATS 2.9 sends the PubAck once the message is in its block file (page
 *   cache); it does not fsync at ack (bench/README.md).
 * - consumer: its own connection with an ordered push consumer (ephemeral,
 *   no acks, flow control) from the start of the fresh stream; messages
 *   are taken in cnats's delivery thread, the consumer thread waits.
 *
 * Build (bench/streaming.sh does it):
 *   gcc -O2 -std=c11 -D_GNU_SOURCE stream_nats.c -o stream_nats -lnats -lpthread -lm
 *   stream_nats --port N [--host H] [--replicas N] [workload options of stream_common.h]
 * Prints one JSON line (system "nats"). Exit 0, 1 on a failure, 2 on a bad
 * command line. */
#include <nats/nats.h>

#include "stream_common.h"

#define COMPLETE_WAIT_MS 120000
#define STALL_WAIT_MS 60000
#define STREAM_WAIT_MS 20000
#define STREAM_RETRY_MS 200
#define REPLICAS_MAX 5

static const char *host = "127.0.0.1";
static int port, replicas = 1;

typedef struct {
    natsConnection *wc, *rc;
    jsCtx *js, *rjs;
    natsSubscription *sub;
    atomic_llong nacks; /* failed publishes */
} nchan;

static void on_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure)
{
    (void)js;
    nchan *n = closure;
    if (!pa || pae)
        atomic_fetch_add(&n->nacks, 1);
    natsMsg_Destroy(msg);
}

static void on_msg(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    (void)nc, (void)sub;
    sb_chan *ch = closure;
    int64_t now = sb_now_ns();
    if (!atomic_load(&sb_abort))
        sb_take(ch, natsMsg_GetData(msg), (size_t)natsMsg_GetDataLength(msg), now);
    natsMsg_Destroy(msg);
}

static int n_fail(sb_chan *ch, const char *what, natsStatus s)
{
    sb_fail(ch, "%s: %s (%s)", what, natsStatus_GetText(s),
            nats_GetLastError(NULL) ? nats_GetLastError(NULL) : "");
    return -1;
}

static int n_send(sb_chan *ch, int64_t n)
{
    nchan *x = ch->sys;
    natsStatus s = NATS_OK;
    jsPubOptions po;
    for (int64_t k = 0; k < n && s == NATS_OK; k++)
        s = js_PublishAsync(x->js, ch->name, ch->buf + k * ch->o->size, (int)ch->o->size, NULL);
    if (s != NATS_OK)
        return n_fail(ch, "js_PublishAsync", s);
    jsPubOptions_Init(&po);
    po.MaxWait = COMPLETE_WAIT_MS;
    if ((s = js_PublishAsyncComplete(x->js, &po)) != NATS_OK)
        return n_fail(ch, "js_PublishAsyncComplete", s);
    if (atomic_load(&x->nacks)) {
        sb_fail(ch, "%lld publishes failed", (long long)atomic_load(&x->nacks));
        return -1;
    }
    return 0;
}

static int n_consume(sb_chan *ch)
{
    while (!sb_consumer_done(ch))
        usleep(1000);
    return 0;
}

static natsStatus connect_one(natsConnection **nc)
{
    char url[300];
    natsOptions *no = NULL;
    snprintf(url, sizeof url, "nats://%s:%d", host, port);
    natsStatus s = natsOptions_Create(&no);
    if (s == NATS_OK)
        s = natsOptions_SetURL(no, url);
    if (s == NATS_OK)
        s = natsConnection_Connect(nc, no);
    natsOptions_Destroy(no);
    return s;
}

/* Creates the stream (retrying while JetStream starts). */
static natsStatus add_stream(jsCtx *js, const char *name)
{
    jsStreamConfig sc;
    const char *subjects[1] = {name};
    int64_t until = sb_now_ns() + STREAM_WAIT_MS * 1000000LL;
    jsStreamConfig_Init(&sc);
    sc.Name = name;
    sc.Subjects = subjects;
    sc.SubjectsLen = 1;
    sc.Storage = js_FileStorage;
    sc.Replicas = replicas;
    for (;;) {
        jsErrCode jerr = 0;
        natsStatus s = js_AddStream(NULL, js, &sc, NULL, &jerr);
        if (s == NATS_OK || sb_now_ns() > until)
            return s;
        nats_Sleep(STREAM_RETRY_MS);
    }
}

/* Connections, the stream, the consumer's subscription. */
static int setup(sb_chan *ch, nchan *x)
{
    jsOptions jo;
    jsSubOptions so;
    jsErrCode jerr = 0;
    natsStatus s;
    atomic_init(&x->nacks, 0);
    if ((s = connect_one(&x->wc)) != NATS_OK || (s = connect_one(&x->rc)) != NATS_OK)
        return n_fail(ch, "connecting", s);
    jsOptions_Init(&jo);
    jo.PublishAsync.MaxPending = ch->o->batch;
    jo.PublishAsync.AckHandler = on_ack;
    jo.PublishAsync.AckHandlerClosure = x;
    jo.PublishAsync.StallWait = STALL_WAIT_MS;
    if ((s = natsConnection_JetStream(&x->js, x->wc, &jo)) != NATS_OK)
        return n_fail(ch, "JetStream context", s);
    if ((s = add_stream(x->js, ch->name)) != NATS_OK)
        return n_fail(ch, "creating the stream", s);
    if (ch->o->no_consume)
        return 0;
    jsSubOptions_Init(&so);
    so.Ordered = true;
    if ((s = natsConnection_JetStream(&x->rjs, x->rc, NULL)) != NATS_OK ||
        (s = js_Subscribe(&x->sub, x->rjs, ch->name, on_msg, ch, NULL, &so, &jerr)) != NATS_OK ||
        (s = natsSubscription_SetPendingLimits(x->sub, -1, -1)) != NATS_OK)
        return n_fail(ch, "subscribing the consumer", s);
    return 0;
}

static void teardown(nchan *x)
{
    if (x->sub) {
        natsSubscription_Unsubscribe(x->sub);
        natsSubscription_Destroy(x->sub);
    }
    jsCtx_Destroy(x->rjs);
    jsCtx_Destroy(x->js);
    natsConnection_Destroy(x->rc);
    natsConnection_Destroy(x->wc);
}

int main(int argc, char **argv)
{
    static const sb_system sys = {n_send, n_consume};
    sb_opts o;
    sb_chan chs[SB_CHANNELS_MAX];
    nchan nc[SB_CHANNELS_MAX];
    int st = 1, made = 0;
    sb_defaults(&o);
    memset(nc, 0, sizeof nc);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int k = sb_opt(&o, a, v);
        int64_t p;
        if (k == 0 && v && strcmp(a, "--host") == 0)
            host = v, k = 2;
        else if (k == 0 && strcmp(a, "--port") == 0 && sb_i64(v, 1, 65535, &p))
            port = (int)p, k = 2;
        else if (k == 0 && strcmp(a, "--replicas") == 0 && sb_i64(v, 1, REPLICAS_MAX, &p))
            replicas = (int)p, k = 2;
        if (k <= 0) {
            fprintf(stderr, "stream_nats: bad option or value near '%s'\nusage: %s --port N "
                    "[--host H] [--replicas N] " SB_USAGE "\n", a, argv[0]);
            return 2;
        }
        i += k - 1;
    }
    if (!port) {
        fprintf(stderr, "stream_nats: --port is required\n");
        return 2;
    }
    for (; made < o.channels; made++) {
        sb_chan *ch = &chs[made];
        if (sb_chan_init(ch, &o, made)) {
            fprintf(stderr, "stream_nats: out of memory\n");
            goto out;
        }
        ch->sys = &nc[made];
        if (setup(ch, &nc[made])) {
            made++;
            fprintf(stderr, "stream_nats: %s\n", sb_err_msg);
            goto out;
        }
    }
    st = sb_run("nats", &o, chs, &sys);
out:
    for (int i = 0; i < made; i++) {
        teardown(&nc[i]);
        sb_chan_free(&chs[i]);
    }
    nats_CloseAndWait(5000);
    return st;
}
