/* test_quorum_faults.c — storage.type quorum under network faults, with 3
 * real LogStore servers and a real TCP proxy (tests/support/tcpproxy.h)
 * between the client and a server (issue 10):
 *   - one replica delayed, blackholed, cut (RST, refused; FIN, reconnect)
 *     or frozen (its TCP window closed) while a writer appends, sync and
 *     async: the appends go on at the other two, within a bound; a new
 *     writer on another client recovers with the fault still on; a fresh
 *     reader then reads every acked entry once, in order;
 *   - a reader with one replica blackholed;
 *   - two writers in two processes racing on one log: one wins, the other
 *     gets WP_EFENCED, and no entry of the loser follows the winner's;
 *   - a server killed -9 and restarted keeps its fences: a stale writer
 *     that can reach only it is refused (the protocol-level check is
 *     test_logstore's add_read_fence_survive_kill9; this is end to end).
 *
 * The bounds are "does not stall", not performance: an append within
 * APPEND_BOUND_MS, a batch within PHASE_BOUND_MS (a watchdog: past it the
 * fault is lifted so that the test ends, and the case fails). */
#include "test.h"
#include "support/logstore_proc.h"
#include "support/tcpproxy.h"
#include "support/testutil.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "codec/codec.h"
#include "net/conn.h"

#define APPEND_BOUND_MS 5000  /* one append, sync or async (submit to callback) */
#define PHASE_BOUND_MS 30000  /* one batch of appends, the watchdog */
#define OPEN_BOUND_MS 20000   /* a new writer's fence and recovery */
#define READ_BOUND_MS 5000    /* one wp_reader_next */
#define ENTRIES_MAX 4096
#define SMALL_LEN 200
#define BIG_LEN (16 * 1024)

/* ---- a cluster: 3 servers, proxies in front of some --------------------- */

static struct {
    char dir[1024];
    logstore_proc srv[3];
    tcpproxy *px[3];
    char nodes[256], meta[1100];
} cl;

/* Starts the servers, a proxy in front of server i for each bit i of
 * proxied, and the quorum.nodes list (proxies where there are some). Each
 * server registers in metadata of its own, not the clients': a client
 * that looked a server up by id among the registered ones would reach it
 * at its registered address, around the proxy. */
static void cluster_stop(void);

static int cluster_start(const char *tag, int proxied)
{
    cluster_stop(); /* what a failed case left */
    memset(&cl, 0, sizeof cl);
    snprintf(cl.dir, sizeof cl.dir, "%s", test_tmpdir(tag));
    snprintf(cl.meta, sizeof cl.meta, "%s/meta.sqlite", cl.dir);
    size_t n = 0;
    for (int i = 0; i < 3; i++) {
        char sub[1100], id[16];
        snprintf(sub, sizeof sub, "%s/s%d", cl.dir, i);
        snprintf(id, sizeof id, "qf%d", i);
        if (logstore_proc_start(&cl.srv[i], sub, id, NULL) != 0)
            return -1;
        if ((proxied & (1 << i)) && tcpproxy_start(cl.srv[i].addr, &cl.px[i]) != 0)
            return -1;
        n += (size_t)snprintf(cl.nodes + n, sizeof cl.nodes - n, "%s%s", i ? "," : "",
                              cl.px[i] ? tcpproxy_addr(cl.px[i]) : cl.srv[i].addr);
    }
    return 0;
}

static void cluster_stop(void)
{
    for (int i = 0; i < 3; i++) {
        tcpproxy_stop(cl.px[i]);
        cl.px[i] = NULL;
        if (cl.srv[i].pid > 0)
            logstore_proc_stop(&cl.srv[i], SIGTERM);
        cl.srv[i].pid = 0;
    }
}

/* The library's warnings and errors, on stderr: what a failed case went
 * through (a replica given up, a roll, the detail of a failed append). */
static pthread_mutex_t last_error_mu = PTHREAD_MUTEX_INITIALIZER;
static char last_error[1024]; /* the last error logged */

static void log_to_stderr(void *arg, int level, const char *msg)
{
    if (level < WP_LOG_WARN)
        return;
    fprintf(stderr, "  [%s] %s: %s\n", (const char *)arg, level == WP_LOG_WARN ? "warn" : "error",
            msg);
    pthread_mutex_lock(&last_error_mu);
    if (level >= WP_LOG_ERROR)
        snprintf(last_error, sizeof last_error, "%s", msg);
    pthread_mutex_unlock(&last_error_mu);
}

static const char *client_threads; /* flush.max_threads of the next clients, if set */

static wp_client *client_open(const char *root, const char *nodes, const char *meta,
                              const char *seg_max, const char *who)
{
    const char *kv[] = {"storage.root", root, "storage.type", "quorum", "quorum.nodes", nodes,
                        "meta.path", meta, "segment.max_bytes", seg_max, NULL};
    wp_config *cfg;
    wp_client *c = NULL;
    if (wp_config_default(&cfg))
        return NULL;
    for (int i = 0; kv[i]; i += 2)
        if (wp_config_set(cfg, kv[i], kv[i + 1])) {
            fprintf(stderr, "  config %s=%s: %s\n", kv[i], kv[i + 1], wp_errmsg());
            goto out_free;
        }
    if (client_threads && wp_config_set(cfg, "flush.max_threads", client_threads))
        goto out_free;
    wp_config_set_log(cfg, log_to_stderr, (void *)who);
    if (wp_client_open(cfg, &c))
        fprintf(stderr, "  client open: %s\n", wp_errmsg());
out_free:
    wp_config_free(cfg);
    return c;
}

static wp_client *cluster_client(const char *nodes, const char *seg_max, const char *who)
{
    return client_open(cl.dir, nodes, cl.meta, seg_max, who);
}

/* ---- entries: "e-<i>-" then a pattern, len bytes ----------------------- */

static size_t payload(char *buf, int i, size_t len)
{
    int n = snprintf(buf, len + 1, "e-%d-", i);
    for (size_t k = (size_t)n; k < len; k++)
        buf[k] = (char)('a' + (size_t)(i + 7) * k % 26);
    return len;
}

/* What was acked, by entry number: its id and length (0: not acked). */
static wp_msg_id acked_id[ENTRIES_MAX];
static size_t acked_len[ENTRIES_MAX];

/* ---- a batch of appends on a thread, with a watchdog -------------------- */

typedef struct {
    wp_writer *w;
    int first, n_sync, n_async; /* entries first.. : n_sync sync, then n_async async */
    size_t len;
    /* results (under mu) */
    int rc;             /* the first failure */
    int acked;
    int64_t slowest_ms; /* a sync call, or an async append's submit to callback */
    int64_t took_ms;
    bool order_ok;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    bool done;
    int cbs;
    int64_t submit_ms[ENTRIES_MAX];
} phase;

static void phase_ack(phase *ph, int i, int rc, wp_msg_id id, int64_t t0)
{
    int64_t dt = test_now_ms() - t0;
    if (dt > ph->slowest_ms)
        ph->slowest_ms = dt;
    if (rc) {
        if (!ph->rc)
            ph->rc = rc;
        return;
    }
    if (i > 0 && acked_len[i - 1] && wp_msg_id_cmp(acked_id[i - 1], id) >= 0)
        ph->order_ok = false;
    acked_id[i] = id;
    acked_len[i] = ph->len;
    ph->acked++;
}

static void phase_cb(void *arg, int rc, wp_msg_id id)
{
    phase *ph = arg;
    pthread_mutex_lock(&ph->mu);
    int k = ph->cbs++; /* callbacks run in append order */
    phase_ack(ph, ph->first + ph->n_sync + k, rc, id, ph->submit_ms[k]);
    pthread_mutex_unlock(&ph->mu);
}

static void *phase_main(void *arg)
{
    phase *ph = arg;
    char *buf = malloc(ph->len + 1);
    int64_t t0 = test_now_ms();
    int rc = 0;
    for (int k = 0; buf && rc == 0 && k < ph->n_sync; k++) {
        int i = ph->first + k;
        wp_msg_id id;
        int64_t t = test_now_ms();
        rc = wp_writer_append(ph->w, buf, payload(buf, i, ph->len), &id);
        pthread_mutex_lock(&ph->mu);
        phase_ack(ph, i, rc, id, t);
        pthread_mutex_unlock(&ph->mu);
    }
    for (int k = 0; buf && rc == 0 && k < ph->n_async; k++) {
        int i = ph->first + ph->n_sync + k;
        size_t len = payload(buf, i, ph->len);
        pthread_mutex_lock(&ph->mu);
        ph->submit_ms[k] = test_now_ms();
        pthread_mutex_unlock(&ph->mu);
        if ((rc = wp_writer_append_async(ph->w, buf, len, phase_cb, ph)) != 0) {
            pthread_mutex_lock(&ph->mu);
            if (!ph->rc)
                ph->rc = rc;
            pthread_mutex_unlock(&ph->mu);
        }
    }
    rc = wp_writer_flush(ph->w);
    free(buf);
    pthread_mutex_lock(&ph->mu);
    if (rc && !ph->rc)
        ph->rc = rc;
    ph->took_ms = test_now_ms() - t0;
    ph->done = true;
    pthread_cond_broadcast(&ph->cond);
    pthread_mutex_unlock(&ph->mu);
    return NULL;
}

static bool phase_wait(phase *ph, int64_t ms)
{
    int64_t due = test_now_ms() + ms;
    pthread_mutex_lock(&ph->mu);
    while (!ph->done && test_now_ms() < due) {
        pthread_mutex_unlock(&ph->mu);
        test_sleep_ms(20);
        pthread_mutex_lock(&ph->mu);
    }
    bool done = ph->done;
    pthread_mutex_unlock(&ph->mu);
    return done;
}

/* Runs a batch and checks it: every append acked, in order, each within
 * APPEND_BOUND_MS, all within PHASE_BOUND_MS. On a stall, unstick (may be
 * NULL) has its faults lifted so that the batch can end. */
static phase *run_phase(const char *what, wp_writer *w, int first, int n_sync, int n_async,
                        size_t len, tcpproxy *unstick)
{
    phase *ph = calloc(1, sizeof *ph);
    *ph = (phase){.w = w, .first = first, .n_sync = n_sync, .n_async = n_async, .len = len,
                  .order_ok = true};
    pthread_mutex_init(&ph->mu, NULL);
    pthread_cond_init(&ph->cond, NULL);
    pthread_t thr;
    if (pthread_create(&thr, NULL, phase_main, ph) != 0) {
        fprintf(stderr, "  cannot start a thread\n");
        exit(2);
    }
    bool in_time = phase_wait(ph, PHASE_BOUND_MS);
    if (!in_time) {
        fprintf(stderr, "  %s: STALLED: %d of %d appends acked after %d ms%s\n", what, ph->acked,
                n_sync + n_async, PHASE_BOUND_MS, unstick ? "; lifting the fault" : "");
        if (unstick) /* the rest of the case runs without the fault */
            tcpproxy_resume(unstick);
        if (!phase_wait(ph, 120000)) {
            fprintf(stderr, "  %s: still stalled with the fault lifted: giving up\n", what);
            exit(1);
        }
    }
    pthread_join(thr, NULL);
    fprintf(stderr, "  %s: %d+%d appends of %zu B: %d acked, rc %d, %lld ms, slowest %lld ms\n",
            what, n_sync, n_async, len, ph->acked, ph->rc, (long long)ph->took_ms,
            (long long)ph->slowest_ms);
    CHECK(in_time);
    CHECK_OK(ph->rc);
    CHECK(ph->acked == n_sync + n_async);
    CHECK(ph->order_ok);
    CHECK(ph->slowest_ms <= APPEND_BOUND_MS);
    return ph;
}

static void phase_free(phase *ph)
{
    pthread_mutex_destroy(&ph->mu);
    pthread_cond_destroy(&ph->cond);
    free(ph);
}

/* ---- reading back --------------------------------------------------------- */

/* Reads log name from the start on a fresh client: exactly the acked
 * entries 0..n-1 (their ids, lengths and bytes), in order, then nothing.
 * Each wp_reader_next within READ_BOUND_MS. */
static void read_check(const char *nodes, const char *name, int n)
{
    wp_client *c = cluster_client(nodes, "64KiB", "reader");
    REQUIRE(c);
    wp_log *log;
    wp_reader *r;
    REQUIRE(wp_log_open(c, name, &log) == 0);
    REQUIRE(wp_reader_open(log, WP_EARLIEST, &r) == 0);
    char *want = malloc(BIG_LEN + 1);
    int i = 0, rc = 0;
    int64_t slowest = 0, t_all = test_now_ms();
    for (; i < n; i++) {
        wp_entry e;
        int64_t t = test_now_ms();
        rc = wp_reader_next(r, 2000, &e);
        if (test_now_ms() - t > slowest)
            slowest = test_now_ms() - t;
        if (rc)
            break;
        size_t len = payload(want, i, acked_len[i]);
        if (wp_msg_id_cmp(e.id, acked_id[i]) != 0 || e.len != len || memcmp(e.data, want, len)) {
            fprintf(stderr, "  entry %d: read %" PRId64 ":%" PRId64 " '%.20s' (%zu B), acked as "
                    "%" PRId64 ":%" PRId64 " (%zu B)\n", i, e.id.segment_id, e.id.entry_id,
                    (const char *)e.data, e.len, acked_id[i].segment_id, acked_id[i].entry_id,
                    len);
            rc = WP_ECORRUPT;
            break;
        }
    }
    if (rc)
        fprintf(stderr, "  read %d of %d entries: %s (%s)\n", i, n, wp_strerror(rc), wp_errmsg());
    CHECK(i == n);
    wp_entry e;
    if (i == n)
        CHECK_RC(WP_ETIMEDOUT, wp_reader_next(r, 300, &e)); /* nothing past the acked */
    fprintf(stderr, "  read back %d entries in %lld ms, slowest next %lld ms\n", i,
            (long long)(test_now_ms() - t_all), (long long)slowest);
    CHECK(slowest <= READ_BOUND_MS);
    free(want);
    wp_reader_close(r);
    wp_log_close(log);
    wp_client_close(c);
}

/* ---- (a) one replica behind a faulty network ------------------------------ */

typedef void (*fault_fn)(tcpproxy *p);

static void fault_delay(tcpproxy *p) { tcpproxy_delay(p, 200); }
static void fault_blackhole(tcpproxy *p) { tcpproxy_blackhole(p, TCPPROXY_BOTH); }
static void fault_cut_rst_refuse(tcpproxy *p) { tcpproxy_cut(p, true, true); }
static void fault_cut_fin(tcpproxy *p) { tcpproxy_cut(p, false, false); }
static void fault_freeze(tcpproxy *p) { tcpproxy_freeze(p, TCPPROXY_UP); }

/* Server 0 is reached through a proxy, 1 and 2 directly. A writer appends
 * (sync and async), the fault hits server 0's link, the writer goes on;
 * a writer on another client then recovers the log, the fault still on,
 * and appends; the fault is lifted; every acked entry reads back once. */
static void fault_case(const char *tag, fault_fn fault, size_t len, int n_fault)
{
    memset(acked_len, 0, sizeof acked_len);
    REQUIRE(cluster_start(tag, 1) == 0);
    tcpproxy *px = cl.px[0];
    const char *seg_max = len > SMALL_LEN ? "8MiB" : "64KiB";
    wp_client *c = cluster_client(cl.nodes, seg_max, "writer 1"), *c2 = NULL;
    REQUIRE(c);
    CHECK_OK(wp_log_create(c, "f"));
    wp_log *log, *log2 = NULL;
    wp_writer *w, *w2 = NULL;
    REQUIRE(wp_log_open(c, "f", &log) == 0);
    REQUIRE(wp_writer_open(log, &w) == 0);
    int next = 0;
    phase_free(run_phase("before the fault", w, next, 150, 150, SMALL_LEN, NULL));
    next += 300;
    tcpproxy_stats st;
    tcpproxy_get_stats(px, &st);
    CHECK(st.fwd_bytes[0] > 300 * SMALL_LEN && st.fwd_bytes[1] > 0); /* server 0 took part */

    fault(px);
    phase_free(run_phase("with the fault", w, next, 50, n_fault, len, px));
    next += 50 + n_fault;

    /* Recovery by a new writer on another client, the fault still on. */
    REQUIRE((c2 = cluster_client(cl.nodes, seg_max, "writer 2")) != NULL);
    REQUIRE(wp_log_open(c2, "f", &log2) == 0);
    int64_t t0 = test_now_ms();
    int rc = wp_writer_open(log2, &w2);
    int64_t took = test_now_ms() - t0;
    fprintf(stderr, "  new writer on another client: rc %d, %lld ms\n", rc, (long long)took);
    CHECK_OK(rc);
    CHECK(took <= OPEN_BOUND_MS);
    if (rc == WP_OK) {
        char stale[SMALL_LEN + 1];
        CHECK_RC(WP_EFENCED, wp_writer_append(w, stale, payload(stale, 99999, SMALL_LEN), NULL));
        phase_free(run_phase("new writer, the fault on", w2, next, 5, 20, SMALL_LEN, px));
        next += 25;
    }
    CHECK(tcpproxy_resume(px) == 0);
    if (rc == WP_OK) {
        phase_free(run_phase("new writer, the fault lifted", w2, next, 50, 50, SMALL_LEN, NULL));
        next += 100;
    }
    tcpproxy_get_stats(px, &st);
    fprintf(stderr, "  proxy: %llu connections, %llu B up, %llu B down, %llu B dropped, %llu cut\n",
            (unsigned long long)st.accepted, (unsigned long long)st.fwd_bytes[0],
            (unsigned long long)st.fwd_bytes[1],
            (unsigned long long)(st.dropped_bytes[0] + st.dropped_bytes[1]),
            (unsigned long long)st.cut);
    read_check(cl.nodes, "f", next);
    (void)wp_writer_close(w); /* fenced */
    if (w2)
        CHECK_OK(wp_writer_close(w2));
    if (log2)
        wp_log_close(log2);
    if (c2)
        wp_client_close(c2);
    wp_log_close(log);
    wp_client_close(c);
    cluster_stop();
}

TEST(replica_delayed) { fault_case("qf-delay", fault_delay, SMALL_LEN, 150); }
TEST(replica_blackholed) { fault_case("qf-blackhole", fault_blackhole, SMALL_LEN, 150); }
TEST(replica_cut_rst_refused) { fault_case("qf-cutrst", fault_cut_rst_refuse, SMALL_LEN, 150); }
TEST(replica_cut_fin_reconnects) { fault_case("qf-cutfin", fault_cut_fin, SMALL_LEN, 150); }
/* A hung server: its TCP window closes once the buffers are full (entries
 * big enough to fill them: 1000 x 16 KiB).
 * The client's sends never wait on it: a full socket buffer fails that
 * replica's request (nothing sent) and a frame begun is finished within
 * 500 ms or the connection fails (src/net/conn.c send_all). Before that,
 * every append stalled in sendmsg until the watchdog lifted the fault. */
TEST(replica_frozen) { fault_case("qf-freeze", fault_freeze, BIG_LEN, 1000); }

/* Two of the three servers stop reading for a moment (their TCP windows
 * close; a busy machine does the same) while a writer appends 16 KiB
 * entries with 8 flushes in flight: appends wait for them instead of failing the writer, and go on
 * once they read again; every entry reads back. Before, a full socket
 * buffer failed that replica's ADD at once, so with two full the ADD had
 * one replica and the writer failed for good (WP_EQUORUM): bench/tiering.sh
 * hit that on a loaded machine. */
typedef struct {
    tcpproxy *a, *b;
} two_proxies;

static void *thaw_later(void *arg)
{
    two_proxies *t = arg;
    test_sleep_ms(400); /* within SEND_FINISH_MS: a frame begun still finishes */
    tcpproxy_freeze(t->a, 0);
    tcpproxy_freeze(t->b, 0);
    return NULL;
}

TEST(two_replicas_slow_for_a_moment)
{
    memset(acked_len, 0, sizeof acked_len);
    REQUIRE(cluster_start("qf-twoslow", 3) == 0); /* proxies in front of servers 0 and 1 */
    client_threads = "8"; /* flushes pipelined: frames pile up in a full buffer */
    wp_client *c = cluster_client(cl.nodes, "64MiB", "writer");
    client_threads = NULL;
    REQUIRE(c);
    CHECK_OK(wp_log_create(c, "f"));
    wp_log *log;
    wp_writer *w;
    REQUIRE(wp_log_open(c, "f", &log) == 0);
    REQUIRE(wp_writer_open(log, &w) == 0);
    two_proxies t = {cl.px[0], cl.px[1]};
    pthread_t th;
    tcpproxy_freeze(t.a, TCPPROXY_UP);
    tcpproxy_freeze(t.b, TCPPROXY_UP);
    REQUIRE(pthread_create(&th, NULL, thaw_later, &t) == 0);
    phase_free(run_phase("two servers not reading for 0.4 s", w, 0, 0, 4000, BIG_LEN, NULL));
    pthread_join(th, NULL);
    CHECK_OK(wp_writer_close(w));
    read_check(cl.nodes, "f", 4000);
    wp_log_close(log);
    wp_client_close(c);
    cluster_stop();
}

/* A reader while one replica is blackholed: on the writer's client (its
 * connection to that replica is open and goes silent) and on a fresh one
 * (its connection attempts go unanswered). Small segments, so that some
 * have that replica as the one a reader asks first.
 * A silent replica is left after quorum.replica_timeout_ms for the next
 * one (before, wp_reader_next(r, 2000) blocked 30 s on it). */
TEST(reader_with_replica_blackholed)
{
    memset(acked_len, 0, sizeof acked_len);
    REQUIRE(cluster_start("qf-reader", 1) == 0);
    wp_client *c = cluster_client(cl.nodes, "16KiB", "writer");
    REQUIRE(c);
    CHECK_OK(wp_log_create(c, "f"));
    wp_log *log;
    wp_writer *w;
    REQUIRE(wp_log_open(c, "f", &log) == 0);
    REQUIRE(wp_writer_open(log, &w) == 0);
    phase_free(run_phase("appends", w, 0, 100, 1100, SMALL_LEN, NULL));
    CHECK(acked_id[1199].segment_id >= 10);
    CHECK_OK(wp_writer_close(w));
    wp_reader *r;
    REQUIRE(wp_reader_open(log, WP_EARLIEST, &r) == 0);
    wp_entry e;
    CHECK_OK(wp_reader_next(r, 2000, &e));
    tcpproxy_blackhole(cl.px[0], TCPPROXY_BOTH);
    tcpproxy_stats st0, st;
    tcpproxy_get_stats(cl.px[0], &st0);
    int i = 1, rc = 0;
    int64_t slowest = 0, t_all = test_now_ms();
    for (; i < 1200; i++) {
        int64_t t = test_now_ms();
        rc = wp_reader_next(r, 2000, &e);
        if (test_now_ms() - t > slowest)
            slowest = test_now_ms() - t;
        if (rc || wp_msg_id_cmp(e.id, acked_id[i]) != 0)
            break;
        if (test_now_ms() - t_all > 2 * PHASE_BOUND_MS)
            break; /* enough seen: not to run for many minutes */
    }
    tcpproxy_get_stats(cl.px[0], &st);
    fprintf(stderr, "  writer's client: read %d of 1200 with a replica blackholed: rc %d, %lld ms, "
            "slowest next %lld ms (timeout 2000); %llu B sent to that replica meanwhile\n", i, rc,
            (long long)(test_now_ms() - t_all), (long long)slowest,
            (unsigned long long)(st.dropped_bytes[0] - st0.dropped_bytes[0]));
    CHECK(i == 1200);
    CHECK(slowest <= READ_BOUND_MS);
    wp_reader_close(r);
    /* A fresh client, the replica still blackholed. */
    read_check(cl.nodes, "f", 1200);
    CHECK(tcpproxy_resume(cl.px[0]) == 0);
    wp_log_close(log);
    wp_client_close(c);
    cluster_stop();
}

/* ---- (b) two writers in two processes race ------------------------------- */

#define RACE_RUN_MS 2500
#define RACE_ENTRIES_MAX 20000

/* The child (this binary, re-executed): opens a client and the log, says
 * ready, waits for the start, and stagger_ms more, opens a writer and
 * appends "<tag>-<i>" until an error or run_ms after its writer opened.
 * Writes to out:
 *   open <rc> <t_ms>        t_ms: CLOCK_MONOTONIC when wp_writer_open returned
 *   ack <i> <seg> <entry>   each acked append
 *   fail <i> <rc>           the append that failed (its outcome unknown)
 *   end <n>                 ran to the end without error */
static int race_child(char **argv)
{
    const char *nodes = argv[2], *meta = argv[3], *root = argv[4], *name = argv[5],
               *tag = argv[6], *out_path = argv[7];
    int start_fd = atoi(argv[8]), ready_fd = atoi(argv[9]), run_ms = atoi(argv[10]),
        stagger_ms = atoi(argv[11]);
    FILE *out = fopen(out_path, "w");
    wp_client *c = out ? client_open(root, nodes, meta, "16KiB", tag) : NULL;
    wp_log *log = NULL;
    if (!c || wp_log_open(c, name, &log) != 0) {
        fprintf(stderr, "race child %s: cannot open: %s\n", tag, wp_errmsg());
        return 2;
    }
    char one = 'r', b;
    if (write(ready_fd, &one, 1) != 1 || read(start_fd, &b, 1) != 0) /* EOF: go */
        return 2;
    test_sleep_ms(stagger_ms);
    wp_writer *w = NULL;
    int rc = wp_writer_open(log, &w);
    int64_t t_open = test_now_ms();
    bool opened = rc == WP_OK;
    fprintf(out, "open %d %lld\n", rc, (long long)t_open);
    fflush(out);
    for (int i = 0; rc == WP_OK; i++) {
        char buf[64];
        int len = snprintf(buf, sizeof buf, "%s-%d", tag, i);
        wp_msg_id id;
        if (test_now_ms() - t_open > run_ms || i == RACE_ENTRIES_MAX) {
            fprintf(out, "end %d\n", i);
            break;
        }
        if ((rc = wp_writer_append(w, buf, (size_t)len, &id)) != WP_OK)
            fprintf(out, "fail %d %d %s\n", i, rc, wp_errmsg());
        else
            fprintf(out, "ack %d %" PRId64 " %" PRId64 "\n", i, id.segment_id, id.entry_id);
        fflush(out);
    }
    if (opened)
        (void)wp_writer_close(w);
    wp_log_close(log);
    wp_client_close(c);
    fclose(out);
    return 0;
}

typedef struct {
    int open_rc;
    int64_t t_open;
    int n_acked;      /* acked appends: entries 0..n_acked-1 */
    wp_msg_id *ids;   /* their ids */
    int fail_i, fail_rc; /* -1: none */
    bool ended;
    int pos_first, pos_last; /* positions of its entries in the log (-1: none) */
    int n_in_log;
} racer;

static int race_parse(const char *path, racer *r)
{
    *r = (racer){.open_rc = 1, .fail_i = -1, .pos_first = -1, .pos_last = -1};
    r->ids = calloc(RACE_ENTRIES_MAX, sizeof *r->ids);
    FILE *f = fopen(path, "r");
    if (!f || !r->ids)
        return -1;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        long long a, b2, c3;
        int i, rc;
        if (sscanf(line, "open %d %lld", &rc, &a) == 2) {
            r->open_rc = rc;
            r->t_open = a;
        } else if (sscanf(line, "ack %d %lld %lld", &i, &b2, &c3) == 3 && i == r->n_acked &&
                   i < RACE_ENTRIES_MAX) {
            r->ids[r->n_acked++] = (wp_msg_id){b2, c3};
        } else if (sscanf(line, "fail %d %d", &i, &rc) == 2) {
            r->fail_i = i;
            r->fail_rc = rc;
            fprintf(stderr, "  %s", line);
        } else if (strncmp(line, "end ", 4) == 0) {
            r->ended = true;
        }
    }
    fclose(f);
    return 0;
}

static pid_t race_spawn(const char *self, const char *log, const char *tag, const char *out,
                        const char *nodes, int stagger_ms, int start_fd, int ready_fd)
{
    char root[1100], sfd[16], rfd[16], run[16], stagger[16];
    snprintf(root, sizeof root, "%s/%s", cl.dir, tag);
    mkdir(root, 0755);
    snprintf(sfd, sizeof sfd, "%d", start_fd);
    snprintf(rfd, sizeof rfd, "%d", ready_fd);
    snprintf(run, sizeof run, "%d", RACE_RUN_MS);
    snprintf(stagger, sizeof stagger, "%d", stagger_ms);
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        execl(self, self, "--race-writer", nodes, cl.meta, root, log, tag, out, sfd, rfd, run,
              stagger, (char *)NULL);
        _exit(127);
    }
    return pid;
}

/* Waits for pid up to ms; kills it past that. Its exit status, or -1. */
static int wait_child(pid_t pid, int ms)
{
    int status = 0;
    for (int64_t due = test_now_ms() + ms; test_now_ms() < due; test_sleep_ms(20))
        if (waitpid(pid, &status, WNOHANG) == pid)
            return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    fprintf(stderr, "  race child %d did not finish in %d ms: killed\n", (int)pid, ms);
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    return -1;
}

/* Reads the log and places each racer's entries: every acked entry once,
 * at its acked id; no entry twice; the loser's entries (acked or not) all
 * before the winner's first. */
static void race_check_log(const char *name, racer *rs)
{
    wp_client *c = cluster_client(cl.nodes, "16KiB", "race parent");
    REQUIRE(c);
    wp_log *log;
    wp_reader *r;
    REQUIRE(wp_log_open(c, name, &log) == 0);
    REQUIRE(wp_reader_open(log, WP_EARLIEST, &r) == 0);
    char *seen[2];
    seen[0] = calloc(RACE_ENTRIES_MAX + 1, 1);
    seen[1] = calloc(RACE_ENTRIES_MAX + 1, 1);
    wp_entry e;
    int pos = 0, rc;
    while ((rc = wp_reader_next(r, 1000, &e)) == WP_OK) {
        char s[64];
        int i = -1;
        snprintf(s, sizeof s, "%.*s", (int)(e.len < 63 ? e.len : 63), (const char *)e.data);
        int who = s[0] == 'A' ? 0 : s[0] == 'B' ? 1 : -1;
        if (who < 0 || sscanf(s + 1, "-%d", &i) != 1 || i < 0 || i > RACE_ENTRIES_MAX) {
            fprintf(stderr, "  entry '%s' at %d is not a racer's\n", s, pos);
            CHECK(0);
            break;
        }
        racer *x = &rs[who];
        if (seen[who][i]++)
            fprintf(stderr, "  '%s' read twice\n", s);
        CHECK(seen[who][i] == 1);
        if (i < x->n_acked && wp_msg_id_cmp(e.id, x->ids[i]) != 0) {
            fprintf(stderr, "  '%s' read at %" PRId64 ":%" PRId64 ", acked at %" PRId64
                    ":%" PRId64 "\n", s, e.id.segment_id, e.id.entry_id, x->ids[i].segment_id,
                    x->ids[i].entry_id);
            CHECK(0);
        }
        if (x->pos_first < 0)
            x->pos_first = pos;
        x->pos_last = pos;
        x->n_in_log++;
        pos++;
    }
    CHECK(rc == WP_ETIMEDOUT);
    for (int who = 0; who < 2; who++)
        for (int i = 0; i < rs[who].n_acked; i++)
            if (!seen[who][i]) {
                fprintf(stderr, "  acked %c-%d is missing from the log\n", "AB"[who], i);
                CHECK(0);
                break;
            }
    free(seen[0]);
    free(seen[1]);
    wp_reader_close(r);
    wp_log_close(log);
    wp_client_close(c);
}

/* One race on a new log; stagger_ms[k]: how much later racer k starts. */
static void race_round(const char *self, int round, const char *nodes, const int stagger_ms[2])
{
    char name[32], out[2][1200];
    snprintf(name, sizeof name, "race%d", round);
    wp_client *c = cluster_client(cl.nodes, "16KiB", "race parent");
    REQUIRE(c);
    CHECK_OK(wp_log_create(c, name));
    wp_client_close(c);
    int start[2], ready[2];
    REQUIRE(pipe(start) == 0 && pipe(ready) == 0);
    fcntl(start[1], F_SETFD, FD_CLOEXEC); /* only the parent may hold it: its close is the start */
    fcntl(ready[0], F_SETFD, FD_CLOEXEC);
    pid_t pid[2];
    for (int k = 0; k < 2; k++) {
        snprintf(out[k], sizeof out[k], "%s/race%d-%c.out", cl.dir, round, "AB"[k]);
        pid[k] = race_spawn(self, name, k ? "B" : "A", out[k], nodes, stagger_ms[k], start[0],
                            ready[1]);
    }
    close(start[0]);
    close(ready[1]);
    char b[2];
    struct pollfd p = {ready[0], POLLIN, 0};
    int got = 0;
    while (got < 2 && poll(&p, 1, 20000) == 1 && read(ready[0], b, 1) == 1)
        got++;
    CHECK(got == 2);
    close(start[1]); /* both go */
    close(ready[0]);
    CHECK(wait_child(pid[0], 60000) == 0);
    CHECK(wait_child(pid[1], 60000) == 0);
    racer rs[2];
    CHECK(race_parse(out[0], &rs[0]) == 0 && race_parse(out[1], &rs[1]) == 0);
    /* Exactly one ran to the end; the other was fenced, at open or append. */
    int winner = rs[0].ended && !rs[1].ended ? 0 : rs[1].ended && !rs[0].ended ? 1 : -1;
    CHECK(winner >= 0);
    if (winner >= 0) {
        racer *l = &rs[1 - winner], *wn = &rs[winner];
        int lrc = l->open_rc ? l->open_rc : l->fail_rc;
        CHECK_RC(WP_EFENCED, lrc);
        race_check_log(name, rs);
        fprintf(stderr, "  round %d: winner %c (%d acked, %d in the log, its open returned "
                "%+lld ms after the loser's), loser %c (%s, %d acked, %d in the log)\n", round,
                "AB"[winner], wn->n_acked, wn->n_in_log, (long long)(wn->t_open - l->t_open),
                "AB"[1 - winner], l->open_rc ? "fenced at open" : "fenced at append", l->n_acked,
                l->n_in_log);
        CHECK(wn->n_acked > 0);
        /* no entry of the loser after the winner's first */
        if (l->pos_last >= 0 && wn->pos_first >= 0 && l->pos_last > wn->pos_first) {
            fprintf(stderr, "  the loser's entry at %d follows the winner's first at %d\n",
                    l->pos_last, wn->pos_first);
            CHECK(0);
        }
    }
    free(rs[0].ids);
    free(rs[1].ids);
}

TEST(two_writers_race)
{
    char self[1024];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    REQUIRE(n > 0);
    self[n] = '\0';
    REQUIRE(cluster_start("qf-race", 1) == 0);
    char direct[256];
    snprintf(direct, sizeof direct, "%s,%s,%s", cl.srv[0].addr, cl.srv[1].addr, cl.srv[2].addr);
    static const int together[2] = {0, 0}, b_later[2] = {0, 30}, a_later[2] = {30, 0};
    race_round(self, 0, direct, together);
    race_round(self, 1, direct, b_later); /* A has appended when B fences it */
    /* Server 0 slow for both: the loser's ADDs stay in flight longer. */
    tcpproxy_delay(cl.px[0], 30);
    race_round(self, 2, cl.nodes, together);
    race_round(self, 3, cl.nodes, a_later);
    tcpproxy_resume(cl.px[0]);
    cluster_stop();
}

/* ---- (c) a restarted server keeps its fences ------------------------------ */

typedef struct {
    wp_writer *w;
    int rc;
    pthread_mutex_t mu;
    bool done;
} stale_try;

static void *stale_main(void *arg)
{
    stale_try *t = arg;
    char buf[SMALL_LEN + 1];
    int rc = wp_writer_append(t->w, buf, payload(buf, 99999, SMALL_LEN), NULL);
    pthread_mutex_lock(&t->mu);
    t->rc = rc;
    t->done = true;
    pthread_mutex_unlock(&t->mu);
    return NULL;
}

static bool stale_done(stale_try *t)
{
    pthread_mutex_lock(&t->mu);
    bool done = t->done;
    pthread_mutex_unlock(&t->mu);
    return done;
}

/* Asks the server at addr directly, over the protocol (src/net/conn.h),
 * for an ADD of entry `entry` and a FENCE of segment log_id/seg_id at
 * epoch: their answers (0 or the ERROR code). */
static void probe_stale(const char *addr, int64_t log_id, int64_t seg_id, int64_t epoch,
                        int64_t entry, int *add_rc, int *fence_rc)
{
    pconn *c;
    *add_rc = *fence_rc = WP_EUNAVAILABLE;
    if (pconn_open(addr, "probe", 3000, &c) != WP_OK) {
        fprintf(stderr, "  probe: %s\n", wp_errmsg());
        return;
    }
    wp_payload p = {.data = "stale", .len = 5};
    uint8_t rec[64];
    size_t n = rec_encode(&p, rec);
    proto_msg m = {.type = PROTO_ADD}, ans;
    m.u.add = (proto_add){.log_id = log_id, .segment_id = seg_id, .epoch = epoch,
                          .first_entry_id = entry, .lac = entry - 1, .n_entries = 1,
                          .records = rec, .records_len = n};
    uint8_t *body = NULL;
    *add_rc = pconn_call(c, &m, 10000, &ans, &body);
    fprintf(stderr, "  probe: ADD %" PRId64 "/%" PRId64 " entry %" PRId64 " at epoch %" PRId64
            ": %s (%s)\n", log_id, seg_id, entry, epoch, wp_strerror(*add_rc),
            *add_rc ? wp_errmsg() : "taken");
    free(body);
    body = NULL;
    m = (proto_msg){.type = PROTO_FENCE};
    m.u.fence = (proto_fence){.log_id = log_id, .segment_id = seg_id, .epoch = epoch};
    *fence_rc = pconn_call(c, &m, 10000, &ans, &body);
    fprintf(stderr, "  probe: FENCE at epoch %" PRId64 ": %s (%s)\n", epoch,
            wp_strerror(*fence_rc), *fence_rc ? wp_errmsg() : "taken");
    free(body);
    pconn_close(c);
}

/* Every server behind a proxy (its address stays when it restarts). A
 * writer is fenced by a newer one; server 0 is killed -9 and restarted on
 * its data. Then:
 *   - the stale writer appends with servers 1 and 2 blackholed, and cut
 *     off a second later, so that if the append goes to the replicas,
 *     server 0's answer decides (an answer from 1 or 2 would be
 *     WP_EFENCED whatever server 0 did); the client may also learn of the
 *     fence from metadata first (when it rolls to a new segment) and never
 *     ask server 0: the append must fail with WP_EFENCED either way;
 *   - so the restarted server is also asked directly: an ADD and a FENCE
 *     at the stale writer's epoch on its segment are refused (WP_EFENCED). */
TEST(restarted_server_keeps_fences)
{
    memset(acked_len, 0, sizeof acked_len);
    REQUIRE(cluster_start("qf-restart", 7) == 0);
    wp_client *c1 = cluster_client(cl.nodes, "64KiB", "stale writer"),
              *c2 = cluster_client(cl.nodes, "64KiB", "new writer");
    REQUIRE(c1 && c2);
    CHECK_OK(wp_log_create(c1, "f"));
    wp_log *l1, *l2;
    wp_writer *w1, *w2;
    REQUIRE(wp_log_open(c1, "f", &l1) == 0 && wp_log_open(c2, "f", &l2) == 0);
    REQUIRE(wp_writer_open(l1, &w1) == 0);
    wp_log_info info;
    REQUIRE(wp_log_stat(l1, &info) == 0); /* w1's epoch */
    phase_free(run_phase("stale writer", w1, 0, 50, 0, SMALL_LEN, NULL));
    REQUIRE(wp_writer_open(l2, &w2) == 0); /* fences w1's segment on the replicas */
    phase_free(run_phase("new writer", w2, 50, 10, 0, SMALL_LEN, NULL));

    CHECK(logstore_proc_stop(&cl.srv[0], SIGKILL) == 128 + SIGKILL);
    char sub[1100];
    snprintf(sub, sizeof sub, "%s/s0", cl.dir);
    REQUIRE(logstore_proc_start(&cl.srv[0], sub, "qf0", NULL) == 0);
    REQUIRE(tcpproxy_set_target(cl.px[0], cl.srv[0].addr) == 0);
    tcpproxy_cut(cl.px[0], true, false);
    tcpproxy_blackhole(cl.px[1], TCPPROXY_BOTH);
    tcpproxy_blackhole(cl.px[2], TCPPROXY_BOTH);
    stale_try t = {.w = w1};
    pthread_mutex_init(&t.mu, NULL);
    pthread_t thr;
    REQUIRE(pthread_create(&thr, NULL, stale_main, &t) == 0);
    for (int64_t due = test_now_ms() + 1000; test_now_ms() < due && !stale_done(&t);)
        test_sleep_ms(10); /* server 0 answers in a few ms */
    tcpproxy_cut(cl.px[1], true, true);
    tcpproxy_cut(cl.px[2], true, true);
    pthread_join(thr, NULL);
    pthread_mutex_destroy(&t.mu);
    pthread_mutex_lock(&last_error_mu);
    fprintf(stderr, "  stale writer's append: %s; refused by: %s\n", wp_strerror(t.rc),
            strstr(last_error, tcpproxy_addr(cl.px[0])) ? "server 0"
            : strstr(last_error, "meta")                ? "metadata"
                                                        : last_error);
    pthread_mutex_unlock(&last_error_mu);
    CHECK_RC(WP_EFENCED, t.rc);

    int add_rc, fence_rc;
    probe_stale(cl.srv[0].addr, info.log_id, acked_id[49].segment_id, info.writer_epoch,
                acked_id[49].entry_id + 1, &add_rc, &fence_rc);
    CHECK_RC(WP_EFENCED, add_rc);
    CHECK_RC(WP_EFENCED, fence_rc);

    CHECK(tcpproxy_resume(cl.px[1]) == 0 && tcpproxy_resume(cl.px[2]) == 0);
    test_sleep_ms(500); /* past the client's reconnect backoff (200 ms) */
    phase_free(run_phase("new writer after the restart", w2, 60, 10, 10, SMALL_LEN, NULL));
    read_check(cl.nodes, "f", 80);
    (void)wp_writer_close(w1);
    CHECK_OK(wp_writer_close(w2));
    wp_log_close(l1);
    wp_log_close(l2);
    wp_client_close(c1);
    wp_client_close(c2);
    cluster_stop();
}

/* ---- the proxy itself ------------------------------------------------------ */

static int raw_listen(char *addr, size_t len)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof sa;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) || listen(fd, 8) ||
        getsockname(fd, (struct sockaddr *)&sa, &sl))
        return -1;
    snprintf(addr, len, "127.0.0.1:%d", ntohs(sa.sin_port));
    return fd;
}

static int raw_connect(const char *addr)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
                             .sin_port = htons((uint16_t)atoi(strrchr(addr, ':') + 1))};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int raw_accept(int lfd)
{
    struct pollfd p = {lfd, POLLIN, 0};
    return poll(&p, 1, 5000) == 1 ? accept4(lfd, NULL, NULL, SOCK_CLOEXEC) : -1;
}

/* Bytes read within ms (stops at len): >= 0, or -errno (reset), or -1000
 * for an end of stream with nothing read. */
static long raw_recv(int fd, char *buf, size_t len, int ms)
{
    size_t got = 0;
    for (int64_t due = test_now_ms() + ms; got < len;) {
        struct pollfd p = {fd, POLLIN, 0};
        int left = (int)(due - test_now_ms());
        if (left <= 0 || poll(&p, 1, left) != 1)
            break;
        ssize_t r = recv(fd, buf + got, len - got, MSG_DONTWAIT);
        if (r < 0 && errno == EAGAIN)
            continue;
        if (r < 0)
            return got ? (long)got : -errno;
        if (r == 0)
            return got ? (long)got : -1000;
        got += (size_t)r;
    }
    return (long)got;
}

TEST(proxy_self_check)
{
    char target[64], buf[256];
    int lfd = raw_listen(target, sizeof target);
    REQUIRE(lfd >= 0);
    tcpproxy *p;
    REQUIRE(tcpproxy_start(target, &p) == 0);
    int c = raw_connect(tcpproxy_addr(p)), s = raw_accept(lfd);
    REQUIRE(c >= 0 && s >= 0);
    /* pass */
    CHECK(send(c, "hello", 5, 0) == 5 && raw_recv(s, buf, 5, 2000) == 5);
    CHECK(memcmp(buf, "hello", 5) == 0);
    CHECK(send(s, "world", 5, 0) == 5 && raw_recv(c, buf, 5, 2000) == 5);
    CHECK(memcmp(buf, "world", 5) == 0);
    /* delay */
    tcpproxy_delay(p, 300);
    int64_t t0 = test_now_ms();
    CHECK(send(c, "x", 1, 0) == 1 && raw_recv(s, buf, 1, 3000) == 1);
    CHECK(test_now_ms() - t0 >= 280);
    tcpproxy_delay(p, 0);
    /* freeze up: the sender blocks at some point, nothing is lost */
    tcpproxy_freeze(p, TCPPROXY_UP);
    static char big[1 << 16];
    long sent = 0;
    for (ssize_t k; sent < 256L << 20 && (k = send(c, big, sizeof big, MSG_DONTWAIT)) > 0;)
        sent += k;
    CHECK(sent < 256L << 20);
    CHECK(raw_recv(s, buf, 1, 200) == 0);
    tcpproxy_freeze(p, 0);
    long got = 0;
    for (long k; got < sent && (k = raw_recv(s, big, (size_t)(sent - got < (long)sizeof big
                                                                   ? sent - got
                                                                   : (long)sizeof big),
                                              3000)) > 0;)
        got += k;
    CHECK(got == sent);
    /* blackhole: read and dropped; the server's close is not passed on either */
    tcpproxy_blackhole(p, TCPPROXY_BOTH);
    CHECK(send(c, "lost", 4, 0) == 4);
    CHECK(raw_recv(s, buf, 4, 300) == 0);
    shutdown(s, SHUT_WR);
    CHECK(raw_recv(c, buf, 1, 300) == 0); /* silence, not a close */
    tcpproxy_stats st;
    tcpproxy_get_stats(p, &st);
    CHECK(st.dropped_bytes[0] == 4 && st.open == 1);
    /* resume closes the connection that lost bytes */
    CHECK(tcpproxy_resume(p) == 0);
    long r = raw_recv(c, buf, 1, 2000);
    CHECK(r == -ECONNRESET || r == -1000);
    close(c);
    close(s);
    /* cut + refuse, then resume on the same port */
    c = raw_connect(tcpproxy_addr(p));
    s = raw_accept(lfd);
    REQUIRE(c >= 0 && s >= 0);
    tcpproxy_cut(p, true, true);
    r = raw_recv(c, buf, 1, 2000);
    CHECK(r == -ECONNRESET || r == -1000);
    CHECK(raw_recv(s, buf, 1, 2000) < 0);
    close(c);
    close(s);
    CHECK(raw_connect(tcpproxy_addr(p)) == -1 && errno == ECONNREFUSED);
    CHECK(tcpproxy_resume(p) == 0);
    c = raw_connect(tcpproxy_addr(p));
    s = raw_accept(lfd);
    REQUIRE(c >= 0 && s >= 0);
    CHECK(send(c, "again", 5, 0) == 5 && raw_recv(s, buf, 5, 2000) == 5);
    /* cut with FIN: both ends see an end of stream */
    tcpproxy_cut(p, false, false);
    CHECK(raw_recv(c, buf, 1, 2000) == -1000 && raw_recv(s, buf, 1, 2000) == -1000);
    tcpproxy_get_stats(p, &st);
    CHECK(st.accepted == 3 && st.open == 0 && st.cut == 3);
    close(c);
    close(s);
    tcpproxy_stop(p);
    close(lfd);
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    if (argc == 12 && strcmp(argv[1], "--race-writer") == 0)
        return race_child(argv);
    const char *only = argc > 1 ? argv[1] : NULL; /* run one case by name */
#define RUN_IF(name)                                                                          \
    do {                                                                                      \
        if (!only || strcmp(only, #name) == 0)                                                \
            RUN(name);                                                                        \
    } while (0)
    RUN_IF(proxy_self_check);
    RUN_IF(replica_delayed);
    RUN_IF(replica_blackholed);
    RUN_IF(replica_cut_rst_refused);
    RUN_IF(replica_cut_fin_reconnects);
    RUN_IF(replica_frozen);
    RUN_IF(two_replicas_slow_for_a_moment);
    RUN_IF(reader_with_replica_blackholed);
    RUN_IF(two_writers_race);
    RUN_IF(restarted_server_keeps_fences);
    return test_done();
}
