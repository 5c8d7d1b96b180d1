/* nats_bench.c — the `wp bench` workload against NATS JetStream, on cnats
 * (Debian libnats-dev, 3.x).
 *
 * Setup: creates stream <log> (file storage, --replicas replicas, default
 * 1, subject <log>); in a fresh cluster it retries while JetStream is not
 * ready yet (up to STREAM_WAIT_MS).
 * Options: peer_common.h's, plus --replicas N (1..5) and --servers
 * [NAME=]URL,... (up to 8).
 * Servers: --port/--host (one server), or --servers URL,URL,... (a cluster;
 * tried in that order). With NAME=URL entries (NAME = the server_name in
 * its configuration), the writer connects to the stream's leader, as the
 * etcd client is pointed at the Raft leader: a publish to another server
 * takes one more route hop.
 * Writer: one connection, js_PublishAsync with jsOptions.PublishAsync
 * MaxPending = --window (the library blocks the call while that many acks
 * are outstanding); the ack is the server's PubAck, received in the ack
 * handler, whose latency is now minus the send time in the payload.
 * Reader (--reader): a second connection with an ordered push consumer
 * (ephemeral, no acks, flow control) from the start of the fresh stream.
 *
 * Build (bench/run.sh and bench/quorum.sh do it):
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
/* How long to retry creating the stream (a new cluster elects its
 * JetStream meta leader first). */
#define STREAM_WAIT_MS 20000
#define STREAM_RETRY_MS 200
#define SERVERS_MAX 8
#define LIST_MAX (SERVERS_MAX * (URL_MAX + 64))
#define ARGS_MAX 64
#define REPLICAS_MAX 5

/* The options only this client has (peer_parse has the shared ones). */
typedef struct {
    int replicas;                /* --replicas */
    int nservers;                /* --servers entries; 0: --host/--port */
    char names[SERVERS_MAX][64]; /* NAME= of each entry, or "" */
    char urls[SERVERS_MAX][URL_MAX];
    const char *url_ptrs[SERVERS_MAX]; /* for natsOptions_SetServers */
    char list[LIST_MAX];               /* every URL, comma-separated (messages) */
} nats_opts;

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

/* Connects to one of urls[0..n), trying them in order. */
static natsStatus connect_to(const char **urls, int n, natsConnection **nc)
{
    natsOptions *no = NULL;
    natsStatus s = natsOptions_Create(&no);
    if (s == NATS_OK)
        s = natsOptions_SetServers(no, urls, n);
    if (s == NATS_OK)
        s = natsOptions_SetNoRandomize(no, true);
    if (s == NATS_OK)
        s = natsConnection_Connect(nc, no);
    natsOptions_Destroy(no);
    return s;
}

/* Creates the stream, retrying while JetStream is not ready; copies the
 * name of its leader (server_name) into leader ("" if not clustered). */
static natsStatus add_stream(jsCtx *js, const peer_opts *o, int replicas, char *leader, size_t cap)
{
    jsStreamConfig sc;
    const char *subjects[1] = {o->log};
    int64_t until = peer_mono_ns() + STREAM_WAIT_MS * 1000000LL;
    natsStatus s;
    jsStreamConfig_Init(&sc);
    sc.Name = o->log;
    sc.Subjects = subjects;
    sc.SubjectsLen = 1;
    sc.Storage = js_FileStorage;
    sc.Replicas = replicas;
    for (;;) {
        jsStreamInfo *si = NULL;
        jsErrCode jerr = 0;
        if ((s = js_AddStream(&si, js, &sc, NULL, &jerr)) == NATS_OK) {
            snprintf(leader, cap, "%s",
                     si && si->Cluster && si->Cluster->Leader ? si->Cluster->Leader : "");
            jsStreamInfo_Destroy(si);
            return s;
        }
        if (peer_mono_ns() > until)
            return s;
        nats_Sleep(STREAM_RETRY_MS);
    }
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

/* Creates the stream over nc; sets *wc to the connection the writer uses:
 * a new one to the stream's leader if --servers named it, else nc. */
static int setup_stream(const peer_opts *o, const nats_opts *no, natsConnection *nc,
                        natsConnection **wc)
{
    jsCtx *js = NULL;
    char leader[64] = "";
    const char *url = NULL;
    natsStatus s = natsConnection_JetStream(&js, nc, NULL);
    if (s == NATS_OK)
        s = add_stream(js, o, no->replicas, leader, sizeof leader);
    jsCtx_Destroy(js);
    if (s != NATS_OK)
        return fail("creating the stream", s);
    for (int i = 0; i < no->nservers && leader[0]; i++)
        if (strcmp(no->names[i], leader) == 0)
            url = no->urls[i];
    if (no->nservers)
        fprintf(stderr, "nats_bench: stream %s, %d replicas, leader %s, writer on %s\n", o->log,
                no->replicas, leader[0] ? leader : "?", url ? url : no->list);
    *wc = nc;
    if (url && (s = connect_to(&url, 1, wc)) != NATS_OK)
        return fail("connecting to the stream leader", s);
    return 0;
}

static int run(const peer_opts *o, const nats_opts *no, bench_ctx *b, natsConnection *nc,
               natsConnection *rc)
{
    jsCtx *js = NULL, *rjs = NULL;
    natsConnection *wc = NULL;
    natsSubscription *sub = NULL;
    jsOptions jo;
    jsSubOptions so;
    jsErrCode jerr = 0;
    double secs = 0;
    int st = setup_stream(o, no, nc, &wc);
    natsStatus s;
    if (st)
        return st;
    jsOptions_Init(&jo);
    jo.PublishAsync.MaxPending = o->window;
    jo.PublishAsync.AckHandler = on_ack;
    jo.PublishAsync.AckHandlerClosure = b;
    jo.PublishAsync.StallWait = STALL_WAIT_MS;
    if ((s = natsConnection_JetStream(&js, wc, &jo)) != NATS_OK) {
        st = fail("JetStream context", s);
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
    if (wc != nc)
        natsConnection_Destroy(wc);
    return st;
}

/* One --servers entry, "URL" or "NAME=URL". */
static bool add_server(nats_opts *no, const char *e, size_t len)
{
    const char *eq = memchr(e, '=', len);
    size_t nl = eq ? (size_t)(eq - e) : 0, ul = eq ? len - nl - 1 : len;
    if (no->nservers == SERVERS_MAX || nl >= sizeof no->names[0] || !ul || ul >= URL_MAX)
        return false;
    int i = no->nservers++;
    no->url_ptrs[i] = no->urls[i];
    snprintf(no->names[i], sizeof no->names[i], "%.*s", (int)nl, e);
    snprintf(no->urls[i], sizeof no->urls[i], "%.*s", (int)ul, eq ? eq + 1 : e);
    size_t at = strlen(no->list);
    snprintf(no->list + at, sizeof no->list - at, "%s%s", at ? "," : "", no->urls[i]);
    return true;
}

/* Takes --replicas and --servers out of argv, the rest goes to peer_parse.
 * With --servers, --host/--port are not used (peer_parse still wants a
 * port: a placeholder is passed if there is none). */
static int parse(int argc, char **argv, peer_opts *o, nats_opts *no)
{
    char *rest[ARGS_MAX + 2], port[] = "--port", one[] = "1";
    int n = 0;
    bool has_port = false;
    memset(no, 0, sizeof *no);
    no->replicas = 1;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int64_t r;
        if (i > 0 && strcmp(a, "--replicas") == 0) {
            if (!v || !peer_i64(v, 1, REPLICAS_MAX, &r))
                return peer_usage(argv[0], "--replicas wants 1..5");
            no->replicas = (int)r, i++;
        } else if (i > 0 && strcmp(a, "--servers") == 0) {
            if (!v)
                return peer_usage(argv[0], "--servers wants [NAME=]URL,...");
            for (const char *e = v; *e;) {
                size_t len = strcspn(e, ",");
                if (!add_server(no, e, len))
                    return peer_usage(argv[0], "--servers wants up to 8 [NAME=]URL,...");
                e += len + (e[len] == ',');
            }
            i++;
        } else if (n < ARGS_MAX) {
            has_port |= i > 0 && strcmp(a, "--port") == 0;
            rest[n++] = argv[i];
        } else {
            return peer_usage(argv[0], "too many arguments");
        }
    }
    if (no->nservers && !has_port)
        rest[n++] = port, rest[n++] = one;
    return peer_parse(n, rest, o);
}

int main(int argc, char **argv)
{
    peer_opts o;
    nats_opts no;
    peer_lat lat;
    bench_ctx b = {.mu = PTHREAD_MUTEX_INITIALIZER};
    natsConnection *nc = NULL, *rc = NULL;
    natsStatus s;
    int st = parse(argc, argv, &o, &no);
    if (st)
        return st;
    if (!no.nservers) {
        snprintf(no.urls[0], sizeof no.urls[0], "nats://%s:%d", o.host, o.port);
        no.url_ptrs[0] = no.urls[0];
    }
    if (peer_lat_alloc(&lat, o.entries)) {
        fprintf(stderr, "nats_bench: out of memory\n");
        return 1;
    }
    b.o = &o, b.lat = &lat;
    atomic_init(&b.e2e_seen, 0);
    int nurls = no.nservers ? no.nservers : 1;
    if ((s = connect_to(no.url_ptrs, nurls, &nc)) != NATS_OK ||
        (o.reader && (s = connect_to(no.url_ptrs, nurls, &rc)) != NATS_OK))
        st = fail("connecting", s);
    else
        st = run(&o, &no, &b, nc, rc);
    natsConnection_Destroy(rc);
    natsConnection_Destroy(nc);
    nats_CloseAndWait(5000);
    peer_lat_free(&lat);
    return st;
}
