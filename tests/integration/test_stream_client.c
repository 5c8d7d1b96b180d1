/* test_stream_client.c — the streaming client (include/woodpecker_stream.h)
 * and its CLI commands against real servers: etcd (started here), a
 * coordinator and 3 streaming nodes as processes on 127.0.0.1 sharing one
 * storage.root (as test_streaming.c runs them). Kills are kill -9 (and
 * SIGSTOP) of real processes; the client must carry producers and
 * consumers through them: every acknowledged message consumed exactly
 * once and in order, none written twice. One test runs everything on
 * SQLite metadata, where the client polls the records instead of watching
 * them. */
#include "test.h"
#include "support/etcd_proc.h"
#include "support/httpc.h"
#include "support/logstore_proc.h"
#include "support/testutil.h"
#include "woodpecker_stream.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/wait.h>
#include <unistd.h>

#define NODES 3
static logstore_proc node[NODES], coord;
static etcd_cluster ec;
static char o_meta1[1200], o_meta2[1200], o_meta3[300], o_root[1200];
static const char *base_opts[16];

/* The servers' and the clients' settings: etcd (or SQLite) metadata under
 * a prefix of this test, one shared storage.root, fast leases. */
static void opts_init(const char *dir, const char *tag, bool sqlite)
{
    if (sqlite) {
        snprintf(o_meta1, sizeof o_meta1, "meta.type=sqlite");
        snprintf(o_meta2, sizeof o_meta2, "meta.path=%s/meta.sqlite", dir);
        snprintf(o_meta3, sizeof o_meta3, "meta.prefix=sc-%s/", tag);
    } else {
        snprintf(o_meta1, sizeof o_meta1, "meta.type=etcd");
        snprintf(o_meta2, sizeof o_meta2, "meta.etcd.endpoints=%s", ec.endpoints);
        snprintf(o_meta3, sizeof o_meta3, "meta.prefix=sc-%s-%d/", tag, (int)getpid());
    }
    snprintf(o_root, sizeof o_root, "storage.root=%s/shared", dir);
    const char *o[] = {o_meta1, o_meta2, o_meta3, o_root, "stream.lease_ttl_ms=1000",
                       "stream.assign_interval_ms=100", "stream.producer_snapshot_ms=300",
                       "log.level=info", NULL};
    memcpy(base_opts, o, sizeof o);
}

static int start_servers(const char *dir)
{
    char sub[1100];
    snprintf(sub, sizeof sub, "%s/c0", dir);
    if (stream_proc_start(&coord, "streaming-coord", sub, "c0", base_opts) != 0)
        return -1;
    for (int i = 0; i < NODES; i++) {
        char id[16];
        snprintf(sub, sizeof sub, "%s/n%d", dir, i);
        snprintf(id, sizeof id, "n%d", i);
        if (stream_proc_start(&node[i], "streaming-node", sub, id, base_opts) != 0)
            return -1;
    }
    return 0;
}

static void stop_all(void)
{
    for (int i = 0; i < NODES; i++)
        if (node[i].pid > 0) {
            kill(node[i].pid, SIGCONT);
            logstore_proc_stop(&node[i], SIGTERM);
            node[i].pid = 0;
        }
    if (coord.pid > 0) {
        logstore_proc_stop(&coord, SIGTERM);
        coord.pid = 0;
    }
}

/* A streaming client on base_opts. NULL (reason printed) on failure. */
static wps_client *client_open(void)
{
    wp_config *cfg = NULL;
    wps_client *c = NULL;
    if (wp_config_default(&cfg) != WP_OK)
        return NULL;
    for (int i = 0; base_opts[i]; i++) {
        char key[128];
        const char *eq = strchr(base_opts[i], '=');
        snprintf(key, sizeof key, "%.*s", (int)(eq - base_opts[i]), base_opts[i]);
        if (wp_config_set(cfg, key, eq + 1) != WP_OK)
            fprintf(stderr, "  config %s: %s\n", base_opts[i], wp_errmsg());
    }
    int rc = wps_client_open(cfg, &c);
    if (rc)
        fprintf(stderr, "  wps_client_open: %s (%s)\n", wp_strerror(rc), wp_errmsg());
    wp_config_free(cfg);
    return c;
}

/* The channel's record as the nodes list it; false if absent. */
static bool channel_info(wps_client *c, const char *name, wps_channel_info *out)
{
    wps_channel_info *v = NULL;
    size_t n = 0;
    bool found = false;
    if (wps_channel_list(c, &v, &n) != WP_OK)
        return false;
    for (size_t i = 0; i < n && !found; i++)
        if (strcmp(v[i].name, name) == 0) {
            *out = v[i];
            found = true;
        }
    free(v);
    return found;
}

static bool wait_owned(wps_client *c, const char *name, wps_channel_info *out, int timeout_ms)
{
    int64_t end = test_now_ms() + timeout_ms;
    while (test_now_ms() < end) {
        if (channel_info(c, name, out) && out->owner[0])
            return true;
        test_sleep_ms(50);
    }
    return false;
}

static int node_by_addr(const char *addr)
{
    for (int i = 0; i < NODES; i++)
        if (node[i].pid > 0 && strcmp(node[i].addr, addr) == 0)
            return i;
    return -1;
}

static bool msg_is(const wps_message *m, const char *text)
{
    return m->len == strlen(text) && memcmp(m->data, text, m->len) == 0;
}

/* ---- a producer and a consumer on threads -------------------------------------- */

typedef struct {
    wps_client *c;
    const char *ch;
    int n;              /* messages "m-1".."m-n", batches of 5 */
    atomic_int acked;
    bool failed;
    int64_t done_ms;    /* when the last batch was acked */
} prod_arg;

static void *prod_main(void *arg)
{
    prod_arg *a = arg;
    wps_producer *p = NULL;
    int rc = wps_producer_open(a->c, a->ch, NULL, &p);
    if (rc) {
        fprintf(stderr, "  producer: open: %s (%s)\n", wp_strerror(rc), wp_errmsg());
        a->failed = true;
        return NULL;
    }
    wp_msg_id prev = {-1, -1};
    for (int s = 1; s <= a->n;) {
        int k = a->n - s + 1 < 5 ? a->n - s + 1 : 5;
        char text[5][32];
        wp_payload msgs[5];
        wp_msg_id ids[5];
        for (int j = 0; j < k; j++) {
            snprintf(text[j], sizeof text[j], "m-%d", s + j);
            msgs[j] = (wp_payload){.data = text[j], .len = strlen(text[j])};
        }
        if ((rc = wps_produce(p, msgs, (size_t)k, ids)) != WP_OK) {
            fprintf(stderr, "  producer: at %d: %s (%s)\n", s, wp_strerror(rc), wp_errmsg());
            a->failed = true;
            break;
        }
        for (int j = 0; j < k; j++) { /* acked ids grow, whichever node answered */
            if (wp_msg_id_cmp(ids[j], prev) <= 0) {
                fprintf(stderr, "  producer: id %lld:%lld of m-%d not above the last\n",
                        (long long)ids[j].segment_id, (long long)ids[j].entry_id, s + j);
                a->failed = true;
            }
            prev = ids[j];
        }
        s += k;
        atomic_store(&a->acked, s - 1);
    }
    a->done_ms = test_now_ms();
    wps_producer_close(p);
    return NULL;
}

typedef struct {
    wps_client *c;
    const char *ch;
    int want;          /* "m-1".."m-want", in order, each once */
    int got;
    bool bad;
    int timeout_ms;    /* 0: 90 s */
    int64_t done_ms;
} cons_arg;

static void *cons_main(void *arg)
{
    cons_arg *a = arg;
    wps_consumer *co = NULL;
    int rc = wps_consumer_open(a->c, a->ch, WPS_FROM_ALL, (wp_msg_id){0, 0}, &co);
    if (rc) {
        fprintf(stderr, "  consumer: open: %s (%s)\n", wp_strerror(rc), wp_errmsg());
        a->bad = true;
        return NULL;
    }
    int64_t end = test_now_ms() + (a->timeout_ms ? a->timeout_ms : 90000);
    wp_msg_id prev = {-1, -1};
    while (a->got < a->want && !a->bad && test_now_ms() < end) {
        wps_message m;
        rc = wps_consume(co, 500, &m);
        if (rc == WP_ETIMEDOUT)
            continue;
        char want[32];
        snprintf(want, sizeof want, "m-%d", a->got + 1);
        if (rc || !msg_is(&m, want) || wp_msg_id_cmp(m.id, prev) <= 0) {
            fprintf(stderr, "  consumer: %s where %s was due (rc %d)\n",
                    rc ? wp_errmsg() : (const char *)m.data, want, rc);
            a->bad = true;
            break;
        }
        prev = m.id;
        a->got++;
    }
    a->done_ms = test_now_ms();
    wps_consumer_close(co);
    return NULL;
}

/* Reads the whole channel from the start: exactly n messages m-1..m-n and
 * nothing after them (no retry wrote one twice). */
static bool channel_holds(wps_client *c, const char *ch, int n)
{
    cons_arg all = {.c = c, .ch = ch, .want = n, .timeout_ms = 20000};
    cons_main(&all);
    if (all.bad || all.got != n) {
        fprintf(stderr, "  channel %s: %d of %d messages\n", ch, all.got, n);
        return false;
    }
    wps_consumer *co = NULL;
    if (wps_consumer_open(c, ch, WPS_FROM_AFTER, (wp_msg_id){0, 0}, &co) != WP_OK)
        return false;
    wps_message m;
    int got = 0, rc;
    while ((rc = wps_consume(co, 1500, &m)) == WP_OK)
        got++;
    wps_consumer_close(co);
    if (rc != WP_ETIMEDOUT || got != n - 1) /* after 0:0: all but the first */
        fprintf(stderr, "  channel %s: %d messages after the first, %d expected (rc %d)\n", ch,
                got, n - 1, rc);
    return rc == WP_ETIMEDOUT && got == n - 1;
}

/* ---- tests ----------------------------------------------------------------------- */

/* Channel admin, produce and consume through the API: payloads (text,
 * binary, empty) and properties both ways, the start policies, reused
 * producer ids, delete. */
TEST(produce_and_consume)
{
    const char *dir = test_tmpdir("sclient1");
    opts_init(dir, "t1", false);
    REQUIRE(start_servers(dir) == 0);
    wps_client *c = client_open();
    REQUIRE(c);
    CHECK_RC(WP_EINVAL, wps_channel_create(c, "bad name"));
    CHECK_RC(WP_EINVAL, wps_channel_create(c, ""));
    CHECK_OK(wps_channel_create(c, "orders"));
    CHECK_RC(WP_EEXIST, wps_channel_create(c, "orders"));
    wps_channel_info info;
    REQUIRE(wait_owned(c, "orders", &info, 20000));
    CHECK(info.term >= 1 && node_by_addr(info.addr) >= 0 && info.created_ms > 0);
    wps_producer *p = NULL;
    CHECK_RC(WP_ENOENT, wps_producer_open(c, "nope", NULL, &p));
    CHECK_RC(WP_EINVAL, wps_producer_open(c, "orders", "has space", &p));
    REQUIRE(wps_producer_open(c, "orders", NULL, &p) == WP_OK);
    CHECK(strncmp(wps_producer_id(p), "p-", 2) == 0);
    const char *keys[] = {"k", "quote\"key"}, *vals[] = {"v", "line\nbreak"};
    static const uint8_t bin[] = {0x00, 0xff, 0x01, 'x'};
    wp_payload msgs[] = {
        {.data = "hello", .len = 5, .n_props = 2, .prop_keys = keys, .prop_values = vals},
        {.data = bin, .len = sizeof bin},
        {.data = "", .len = 0},
        {.data = "caf\xc3\xa9 \"q\" \\", .len = 11},
    };
    wp_msg_id ids[4];
    CHECK_OK(wps_produce(p, msgs, 4, ids));
    for (int i = 1; i < 4; i++)
        CHECK(wp_msg_id_cmp(ids[i], ids[i - 1]) > 0);
    const char *bad_keys[] = {"wp.p"}, *bad_vals[] = {"x"};
    wp_payload bad = {.data = "x", .len = 1, .n_props = 1, .prop_keys = bad_keys,
                      .prop_values = bad_vals};
    CHECK_RC(WP_EINVAL, wps_produce(p, &bad, 1, NULL)); /* reserved property: the node says 400 */
    /* From all: the four, as they were sent. */
    wps_consumer *co = NULL;
    REQUIRE(wps_consumer_open(c, "orders", WPS_FROM_ALL, (wp_msg_id){0, 0}, &co) == WP_OK);
    wps_message m;
    CHECK_OK(wps_consume(co, 10000, &m));
    CHECK(wp_msg_id_cmp(m.id, ids[0]) == 0 && msg_is(&m, "hello") && m.n_props == 2);
    CHECK(m.n_props == 2 && strcmp(m.prop_keys[0], "k") == 0 && strcmp(m.prop_values[0], "v") == 0 &&
          strcmp(m.prop_keys[1], "quote\"key") == 0 && strcmp(m.prop_values[1], "line\nbreak") == 0);
    CHECK(m.producer && strcmp(m.producer, wps_producer_id(p)) == 0 && m.seq > 0);
    int64_t seq0 = m.seq;
    CHECK_OK(wps_consume(co, 10000, &m));
    CHECK(wp_msg_id_cmp(m.id, ids[1]) == 0 && m.len == sizeof bin && memcmp(m.data, bin, sizeof bin) == 0);
    CHECK(m.seq == seq0 + 1 && m.n_props == 0);
    CHECK_OK(wps_consume(co, 10000, &m));
    CHECK(wp_msg_id_cmp(m.id, ids[2]) == 0 && m.len == 0);
    CHECK_OK(wps_consume(co, 10000, &m));
    CHECK(wp_msg_id_cmp(m.id, ids[3]) == 0 && msg_is(&m, "caf\xc3\xa9 \"q\" \\"));
    CHECK_RC(WP_ETIMEDOUT, wps_consume(co, 300, &m));
    /* A producer opened again with the same id (a restart) goes on above
     * the first one's numbers: its messages are new ones, not duplicates. */
    char pid[WPS_PRODUCER_ID_MAX + 1];
    snprintf(pid, sizeof pid, "%s", wps_producer_id(p));
    wps_producer_close(p);
    REQUIRE(wps_producer_open(c, "orders", pid, &p) == WP_OK);
    wps_producer *p2 = p;
    wp_payload again = {.data = "again", .len = 5};
    wp_msg_id id5;
    CHECK_OK(wps_produce(p2, &again, 1, &id5));
    CHECK(wp_msg_id_cmp(id5, ids[3]) > 0);
    CHECK_OK(wps_consume(co, 10000, &m));
    CHECK(wp_msg_id_cmp(m.id, id5) == 0 && msg_is(&m, "again") && m.seq > seq0 + 3);
    wps_consumer_close(co);
    /* At and after an id. */
    REQUIRE(wps_consumer_open(c, "orders", WPS_FROM_AT, ids[1], &co) == WP_OK);
    CHECK_OK(wps_consume(co, 10000, &m));
    CHECK(wp_msg_id_cmp(m.id, ids[1]) == 0);
    wps_consumer_close(co);
    REQUIRE(wps_consumer_open(c, "orders", WPS_FROM_AFTER, ids[1], &co) == WP_OK);
    CHECK_OK(wps_consume(co, 10000, &m));
    CHECK(wp_msg_id_cmp(m.id, ids[2]) == 0);
    wps_consumer_close(co);
    CHECK_RC(WP_EINVAL, wps_consumer_open(c, "orders", WPS_FROM_AT, (wp_msg_id){-1, 0}, &co));
    CHECK_RC(WP_EINVAL, wps_consumer_open(c, "orders", 7, (wp_msg_id){0, 0}, &co));
    CHECK_RC(WP_ENOENT, wps_consumer_open(c, "nope", WPS_FROM_ALL, (wp_msg_id){0, 0}, &co));
    /* From latest: only what comes after the open. */
    REQUIRE(wps_consumer_open(c, "orders", WPS_FROM_LATEST, (wp_msg_id){0, 0}, &co) == WP_OK);
    CHECK_RC(WP_ETIMEDOUT, wps_consume(co, 300, &m));
    wp_payload late[] = {{.data = "late-1", .len = 6}, {.data = "late-2", .len = 6}};
    wp_msg_id lids[2];
    CHECK_OK(wps_produce(p, late, 2, lids));
    CHECK_OK(wps_consume(co, 10000, &m));
    CHECK(wp_msg_id_cmp(m.id, lids[0]) == 0 && msg_is(&m, "late-1"));
    CHECK_OK(wps_consume(co, 10000, &m));
    CHECK(wp_msg_id_cmp(m.id, lids[1]) == 0 && msg_is(&m, "late-2"));
    /* A batch above stream.max_request_bytes of the client goes as several
     * requests, in order. */
    enum { BIG = 40 };
    static char big[BIG][3000];
    wp_payload bigm[BIG];
    wp_msg_id bigids[BIG];
    for (int i = 0; i < BIG; i++) {
        memset(big[i], 'a' + i % 26, sizeof big[i]);
        bigm[i] = (wp_payload){.data = big[i], .len = sizeof big[i]};
    }
    {
        wp_config *cfg = NULL;
        wps_client *small = NULL;
        REQUIRE(wp_config_default(&cfg) == WP_OK);
        for (int i = 0; base_opts[i]; i++) {
            char key[128];
            const char *eq = strchr(base_opts[i], '=');
            snprintf(key, sizeof key, "%.*s", (int)(eq - base_opts[i]), base_opts[i]);
            wp_config_set(cfg, key, eq + 1);
        }
        CHECK_OK(wp_config_set(cfg, "stream.max_request_bytes", "16KiB"));
        CHECK_OK(wps_client_open(cfg, &small));
        wp_config_free(cfg);
        wps_producer *ps = NULL;
        REQUIRE(small && wps_producer_open(small, "orders", NULL, &ps) == WP_OK);
        CHECK_OK(wps_produce(ps, bigm, BIG, bigids));
        wps_producer_close(ps);
        wps_client_close(small);
    }
    for (int i = 0; i < BIG; i++) {
        CHECK_OK(wps_consume(co, 10000, &m));
        CHECK(wp_msg_id_cmp(m.id, bigids[i]) == 0 && m.len == sizeof big[i] &&
              memcmp(m.data, big[i], m.len) == 0);
    }
    /* More messages than a consumer queues: its thread waits for room (and
     * a close does not wait for it). */
    CHECK_OK(wps_channel_create(c, "bulk"));
    REQUIRE(wait_owned(c, "bulk", &info, 20000));
    enum { BULK = 6000 };
    static char btext[BULK][16];
    static wp_payload bmsgs[BULK];
    for (int i = 0; i < BULK; i++) {
        snprintf(btext[i], sizeof btext[i], "b-%d", i);
        bmsgs[i] = (wp_payload){.data = btext[i], .len = strlen(btext[i])};
    }
    wps_producer *pb = NULL;
    REQUIRE(wps_producer_open(c, "bulk", NULL, &pb) == WP_OK);
    CHECK_OK(wps_produce(pb, bmsgs, BULK, NULL));
    wps_producer_close(pb);
    wps_consumer *cb = NULL;
    REQUIRE(wps_consumer_open(c, "bulk", WPS_FROM_ALL, (wp_msg_id){0, 0}, &cb) == WP_OK);
    test_sleep_ms(500); /* the queue fills up */
    int in_order = 0;
    for (int i = 0; i < BULK && wps_consume(cb, 10000, &m) == WP_OK; i++)
        in_order += msg_is(&m, btext[i]);
    CHECK(in_order == BULK);
    CHECK_RC(WP_ETIMEDOUT, wps_consume(cb, 200, &m));
    wps_consumer_close(cb);
    REQUIRE(wps_consumer_open(c, "bulk", WPS_FROM_ALL, (wp_msg_id){0, 0}, &cb) == WP_OK);
    test_sleep_ms(500);
    int64_t t0 = test_now_ms();
    wps_consumer_close(cb);
    CHECK(test_now_ms() - t0 < 1000);
    /* Delete: the consumer ends with WP_ENOENT, the producer gets it. */
    CHECK_OK(wps_channel_delete(c, "orders"));
    CHECK_RC(WP_ENOENT, wps_channel_delete(c, "orders"));
    int rc = WP_OK;
    int64_t end = test_now_ms() + 10000;
    while (test_now_ms() < end && (rc = wps_consume(co, 200, &m)) == WP_ETIMEDOUT)
        ;
    CHECK_RC(WP_ENOENT, rc);
    CHECK_RC(WP_ENOENT, wps_consume(co, 0, &m));
    wps_consumer_close(co);
    CHECK_RC(WP_ENOENT, wps_produce(p, late, 1, NULL));
    wps_producer_close(p);
    CHECK(!channel_info(c, "orders", &info));
    wps_client_close(c);
    stop_all();
}

/* The owner of a channel is killed -9 while a producer and a consumer (each
 * on a client of its own) use it: both carry on through the new owner;
 * the consumer gets every acknowledged message exactly once, in order, and
 * the channel holds each message once. */
TEST(owner_killed)
{
    const char *dir = test_tmpdir("sclient2");
    opts_init(dir, "t2", false);
    REQUIRE(start_servers(dir) == 0);
    wps_client *c = client_open(), *c2 = client_open();
    REQUIRE(c && c2);
    CHECK_OK(wps_channel_create(c, "k"));
    wps_channel_info info;
    REQUIRE(wait_owned(c, "k", &info, 20000));
    prod_arg p = {.c = c, .ch = "k", .n = 600};
    cons_arg cs = {.c = c2, .ch = "k", .want = 600};
    pthread_t pt, ct;
    REQUIRE(pthread_create(&pt, NULL, prod_main, &p) == 0);
    REQUIRE(pthread_create(&ct, NULL, cons_main, &cs) == 0);
    while (atomic_load(&p.acked) < 200 && !p.failed)
        test_sleep_ms(5);
    REQUIRE(channel_info(c, "k", &info));
    int victim = node_by_addr(info.addr);
    REQUIRE(victim >= 0);
    int64_t t_kill = test_now_ms();
    CHECK(logstore_proc_stop(&node[victim], SIGKILL) == 128 + SIGKILL);
    node[victim].pid = 0;
    pthread_join(pt, NULL);
    pthread_join(ct, NULL);
    CHECK(!p.failed && !cs.bad && cs.got == 600);
    wps_channel_info after;
    CHECK(wait_owned(c, "k", &after, 20000) && after.term > info.term &&
          node_by_addr(after.addr) >= 0);
    fprintf(stderr, "  killed n%d at 200 acked: term %lld -> %lld; producer done %lld ms, "
            "consumer %lld ms after the kill\n", victim, (long long)info.term,
            (long long)after.term, (long long)(p.done_ms - t_kill), (long long)(cs.done_ms - t_kill));
    CHECK(channel_holds(c2, "k", 600));
    wps_client_close(c);
    wps_client_close(c2);
    stop_all();
}

/* The owner is frozen (SIGSTOP): its connections stay open and silent, so
 * only the records tell the client: when the channel moves, the request
 * and the stream in progress are dropped at once (the watch wakes them)
 * and go to the new owner, long before any timeout of theirs. */
TEST(owner_frozen)
{
    const char *dir = test_tmpdir("sclient3");
    opts_init(dir, "t3", false);
    REQUIRE(start_servers(dir) == 0);
    wps_client *c = client_open();
    REQUIRE(c);
    CHECK_OK(wps_channel_create(c, "f"));
    wps_channel_info info;
    REQUIRE(wait_owned(c, "f", &info, 20000));
    prod_arg p = {.c = c, .ch = "f", .n = 400};
    cons_arg cs = {.c = c, .ch = "f", .want = 400};
    pthread_t pt, ct;
    REQUIRE(pthread_create(&pt, NULL, prod_main, &p) == 0);
    REQUIRE(pthread_create(&ct, NULL, cons_main, &cs) == 0);
    while (atomic_load(&p.acked) < 100 && !p.failed)
        test_sleep_ms(5);
    REQUIRE(channel_info(c, "f", &info));
    int frozen = node_by_addr(info.addr);
    REQUIRE(frozen >= 0);
    int64_t t0 = test_now_ms();
    CHECK(kill(node[frozen].pid, SIGSTOP) == 0);
    pthread_join(pt, NULL);
    pthread_join(ct, NULL);
    CHECK(!p.failed && !cs.bad && cs.got == 400);
    fprintf(stderr, "  froze n%d at 100 acked: producer done %lld ms, consumer %lld ms after\n",
            frozen, (long long)(p.done_ms - t0), (long long)(cs.done_ms - t0));
    /* The lease is 1 s; the attempt timeout 30 s and the stream's idle limit
     * 35 s: a move seen through the watch is far below them. */
    CHECK(p.done_ms - t0 < 20000 && cs.done_ms - t0 < 20000);
    CHECK(kill(node[frozen].pid, SIGCONT) == 0);
    CHECK(channel_holds(c, "f", 400));
    wps_client_close(c);
    stop_all();
}

/* SQLite metadata: no watches, the client reads the records every
 * stream.assign_interval_ms; a kill -9 of the owner is followed all the
 * same. */
TEST(sqlite_polls)
{
    const char *dir = test_tmpdir("sclient4");
    opts_init(dir, "t4", true);
    REQUIRE(start_servers(dir) == 0);
    wps_client *c = client_open();
    REQUIRE(c);
    CHECK_OK(wps_channel_create(c, "s"));
    wps_channel_info info;
    REQUIRE(wait_owned(c, "s", &info, 20000));
    prod_arg p = {.c = c, .ch = "s", .n = 300};
    cons_arg cs = {.c = c, .ch = "s", .want = 300};
    pthread_t pt, ct;
    REQUIRE(pthread_create(&pt, NULL, prod_main, &p) == 0);
    REQUIRE(pthread_create(&ct, NULL, cons_main, &cs) == 0);
    while (atomic_load(&p.acked) < 100 && !p.failed)
        test_sleep_ms(5);
    REQUIRE(channel_info(c, "s", &info));
    int victim = node_by_addr(info.addr);
    REQUIRE(victim >= 0);
    CHECK(logstore_proc_stop(&node[victim], SIGKILL) == 128 + SIGKILL);
    node[victim].pid = 0;
    pthread_join(pt, NULL);
    pthread_join(ct, NULL);
    CHECK(!p.failed && !cs.bad && cs.got == 300);
    CHECK(channel_holds(c, "s", 300));
    wps_client_close(c);
    stop_all();
}

/* ---- the CLI ------------------------------------------------------------------------ */

static char cli_dir[1100];

/* Runs `wp <base_opts as -o> args` through the shell in cli_dir (args may
 * redirect stdin from a file there); stdout to cli_dir/out, stderr to
 * cli_dir/err. The exit status. */
static int wp_run(const char *args)
{
    char cmd[8192];
    const char *bin = getenv("WP_BIN");
    int n = snprintf(cmd, sizeof cmd, "cd '%s' && '%s/wp'", cli_dir, bin ? bin : ".");
    for (int i = 0; base_opts[i]; i++)
        n += snprintf(cmd + n, sizeof cmd - (size_t)n, " -o '%s'", base_opts[i]);
    snprintf(cmd + n, sizeof cmd - (size_t)n, " %s >out 2>err", args);
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* The whole of cli_dir/<name> (static buffer). */
static const char *slurp(const char *name)
{
    static char buf[1 << 16];
    char path[1200];
    snprintf(path, sizeof path, "%s/%s", cli_dir, name);
    FILE *f = fopen(path, "r");
    size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    buf[n] = '\0';
    if (f)
        fclose(f);
    return buf;
}

static void write_file(const char *name, const char *text)
{
    char path[1200];
    snprintf(path, sizeof path, "%s/%s", cli_dir, name);
    FILE *f = fopen(path, "w");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

/* wp channel create|list|delete, wp produce, wp consume against the
 * servers, and their errors. */
TEST(cli)
{
    const char *dir = test_tmpdir("sclient5");
    snprintf(cli_dir, sizeof cli_dir, "%s", dir);
    opts_init(dir, "t5", false);
    REQUIRE(start_servers(dir) == 0);
    CHECK(wp_run("channel create events") == 0);
    CHECK(wp_run("channel create events") == 1 && strstr(slurp("err"), "wp: error: ") &&
          strstr(slurp("err"), "already exists"));
    CHECK(wp_run("channel create 'no good'") == 1 && strstr(slurp("err"), "invalid channel name"));
    CHECK(wp_run("channel create") == 2 && strstr(slurp("err"), "usage: wp channel create NAME"));
    int64_t end = test_now_ms() + 20000; /* assigned: the list names an owner */
    while (test_now_ms() < end && !(wp_run("channel list") == 0 && strstr(slurp("out"), "events") &&
                                    !strstr(slurp("out"), "events  -")))
        test_sleep_ms(100);
    const char *out = slurp("out");
    CHECK(strncmp(out, "name", 4) == 0 && strstr(out, "events  n"));
    write_file("in", "one\ntwo\n\nfour\xff\nfive");
    CHECK(wp_run("produce events <in") == 0);
    out = slurp("out");
    CHECK(count_lines(out) == 5);
    char ids[5][48] = {{0}};
    for (int i = 0; i < 5; i++) {
        const char *nl = strchr(out, '\n');
        if (!nl)
            break;
        snprintf(ids[i], sizeof ids[i], "%.*s", (int)(nl - out), out);
        out = nl + 1;
    }
    wp_msg_id id0;
    CHECK(wp_msg_id_parse(ids[0], &id0) == WP_OK);
    CHECK(wp_run("consume events") == 0);
    CHECK(strcmp(slurp("out"), "one\ntwo\n\nfour\\xff\nfive\n") == 0);
    CHECK(wp_run("consume events --ids --count 2") == 0);
    char want[256];
    snprintf(want, sizeof want, "%s\tone\n%s\ttwo\n", ids[0], ids[1]);
    CHECK(strcmp(slurp("out"), want) == 0);
    snprintf(want, sizeof want, "consume events --from after --id %s --count 1", ids[0]);
    CHECK(wp_run(want) == 0 && strcmp(slurp("out"), "two\n") == 0);
    snprintf(want, sizeof want, "consume events --from at --id %s --timeout-ms 500", ids[3]);
    CHECK(wp_run(want) == 0 && strcmp(slurp("out"), "four\\xff\nfive\n") == 0);
    /* A producer id of one's own, used twice: both runs' lines are kept. */
    write_file("in2", "six\n");
    CHECK(wp_run("produce events --producer me <in2") == 0 && count_lines(slurp("out")) == 1);
    CHECK(wp_run("produce events --producer me <in2") == 0 && count_lines(slurp("out")) == 1);
    CHECK(wp_run("consume events --count 100") == 0 && count_lines(slurp("out")) == 7);
    /* From latest: a consumer in the background, lines produced until it
     * has two; they are the new ones, not the earlier lines. */
    char cmd[8192];
    const char *bin = getenv("WP_BIN");
    int n = snprintf(cmd, sizeof cmd, "'%s/wp'", bin ? bin : ".");
    for (int i = 0; base_opts[i]; i++)
        n += snprintf(cmd + n, sizeof cmd - (size_t)n, " -o '%s'", base_opts[i]);
    snprintf(cmd + n, sizeof cmd - (size_t)n,
             " consume events --from latest --count 2 --timeout-ms 20000 2>'%s/err-latest'",
             cli_dir);
    FILE *lat = popen(cmd, "r");
    REQUIRE(lat);
    test_sleep_ms(300);
    write_file("in3", "late\n");
    for (int i = 0; i < 10; i++) /* the consumer has its position by the first ones */
        wp_run("produce events <in3");
    char line1[64] = "", line2[64] = "";
    CHECK(fgets(line1, sizeof line1, lat) && fgets(line2, sizeof line2, lat));
    CHECK(pclose(lat) == 0);
    CHECK(strcmp(line1, "late\n") == 0 && strcmp(line2, "late\n") == 0);
    /* Usage errors and bad values. */
    CHECK(wp_run("consume events --from at") == 2 && strstr(slurp("err"), "--id"));
    CHECK(wp_run("consume events --id 1:2") == 2);
    CHECK(wp_run("consume events --from sideways") == 2);
    CHECK(wp_run("consume events --id x:y --from at") == 2);
    CHECK(wp_run("produce nope <in2") == 1 && strstr(slurp("err"), "wp: error: ") &&
          strstr(slurp("err"), "no such"));
    /* Delete: gone from the list, consuming it fails. */
    CHECK(wp_run("channel delete events") == 0);
    CHECK(wp_run("channel delete events") == 1 && strstr(slurp("err"), "wp: error: "));
    CHECK(wp_run("channel list") == 0 && !strstr(slurp("out"), "events"));
    CHECK(wp_run("consume events") == 1 && strstr(slurp("err"), "wp: error: "));
    stop_all();
}

/* ---- a consumer that falls behind ------------------------------------------------ */

#define TC_MSGS 40000
#define TC_LEN 500

typedef struct {
    wps_client *c;
    int delay_ms;  /* before the first wps_consume: the stream falls behind */
    int got;
    bool bad;
    wp_msg_id *ids; /* as acked */
    atomic_int *acked; /* ids[0..acked) are set */
    const char *producer;
    int64_t seq0;      /* the first message's seq: the next ones follow it */
} tc_cons;

/* Every message once, in order, as sent: payload "t-<i>" padded, the
 * property "i" = i, the producer's id and seq i + 1, the acked id. */
static void *tc_cons_main(void *arg)
{
    tc_cons *a = arg;
    wps_consumer *co = NULL;
    if (wps_consumer_open(a->c, "tc", WPS_FROM_ALL, (wp_msg_id){0, 0}, &co) != WP_OK) {
        a->bad = true;
        return NULL;
    }
    test_sleep_ms(a->delay_ms);
    int64_t end = test_now_ms() + 120000;
    while (a->got < TC_MSGS && !a->bad && test_now_ms() < end) {
        wps_message m;
        int rc = wps_consume(co, 500, &m);
        if (rc == WP_ETIMEDOUT)
            continue;
        int i = a->got;
        while (rc == WP_OK && atomic_load(a->acked) <= i) /* pushed before its ack came */
            test_sleep_ms(1);
        char want[32], iv[16];
        int wl = snprintf(want, sizeof want, "t-%d", i);
        snprintf(iv, sizeof iv, "%d", i);
        if (rc || m.len != TC_LEN || memcmp(m.data, want, (size_t)wl) != 0 ||
            ((const char *)m.data)[m.len] != '\0' || m.n_props != 1 ||
            strcmp(m.prop_keys[0], "i") != 0 || strcmp(m.prop_values[0], iv) != 0 ||
            !m.producer || strcmp(m.producer, a->producer) != 0 ||
            (i > 0 && m.seq != a->seq0 + i) ||
            wp_msg_id_cmp(m.id, a->ids[i]) != 0) {
            fprintf(stderr, "  consumer (delay %d): message %d wrong (rc %d: %s; %zu bytes, "
                    "%zu props, seq %lld, id %lld:%lld)\n", a->delay_ms, i, rc,
                    rc ? wp_errmsg() : "", m.len, m.n_props, (long long)m.seq,
                    (long long)m.id.segment_id, (long long)m.id.entry_id);
            a->bad = true;
            break;
        }
        if (i == 0)
            a->seq0 = m.seq;
        a->got++;
    }
    wps_consumer_close(co);
    return NULL;
}

/* Two consumers of one channel while 40000 messages are produced in
 * requests of 200: one keeps up, one does not read for 3 s (its queue
 * fills, then TCP holds the node's stream back). Both get every message
 * once, in order, with its payload (NUL-terminated), property, producer,
 * seq and acked id. */
TEST(slow_consumer)
{
    const char *dir = test_tmpdir("sclient-slow");
    opts_init(dir, "slow", false);
    REQUIRE(start_servers(dir) == 0);
    wps_client *c = client_open(), *c2 = client_open();
    REQUIRE(c && c2);
    CHECK_OK(wps_channel_create(c, "tc"));
    wps_channel_info info;
    REQUIRE(wait_owned(c, "tc", &info, 20000));
    wps_producer *p = NULL;
    REQUIRE(wps_producer_open(c, "tc", NULL, &p) == WP_OK);
    wp_msg_id *ids = calloc(TC_MSGS, sizeof *ids);
    REQUIRE(ids);
    atomic_int acked = 0;
    tc_cons fast = {.c = c2, .ids = ids, .acked = &acked, .producer = wps_producer_id(p)};
    tc_cons slow = {.c = c2, .delay_ms = 3000, .ids = ids, .acked = &acked,
                    .producer = wps_producer_id(p)};
    /* Consumers start before the messages; ids are filled before they are due. */
    pthread_t ft, stt;
    REQUIRE(pthread_create(&ft, NULL, tc_cons_main, &fast) == 0);
    REQUIRE(pthread_create(&stt, NULL, tc_cons_main, &slow) == 0);
    static char payload[200][TC_LEN];
    char iv[200][16];
    const char *key[] = {"i"}, *val[200][1];
    wp_payload msgs[200];
    for (int s = 0; s < TC_MSGS; s += 200) {
        for (int j = 0; j < 200; j++) {
            memset(payload[j], 'x', TC_LEN);
            int l = snprintf(payload[j], TC_LEN, "t-%d", s + j);
            payload[j][l] = 'x';
            snprintf(iv[j], sizeof iv[j], "%d", s + j);
            val[j][0] = iv[j];
            msgs[j] = (wp_payload){.data = payload[j], .len = TC_LEN, .n_props = 1,
                                   .prop_keys = key, .prop_values = val[j]};
        }
        int rc = wps_produce(p, msgs, 200, ids + s);
        if (rc) {
            fprintf(stderr, "  produce at %d: %s (%s)\n", s, wp_strerror(rc), wp_errmsg());
            CHECK(rc == WP_OK);
            break;
        }
        atomic_store(&acked, s + 200);
    }
    pthread_join(ft, NULL);
    pthread_join(stt, NULL);
    CHECK(!fast.bad && fast.got == TC_MSGS);
    CHECK(!slow.bad && slow.got == TC_MSGS);
    /* The owner's metrics: its writer's appends, in the Prometheus format. */
    char url[300], *text = NULL;
    long st = 0;
    snprintf(url, sizeof url, "http://%s/metrics", info.addr);
    httpc("GET", url, NULL, 10000, &st, &text);
    static const char name[] = "\nwp_appends_total ";
    const char *a = text ? strstr(text, name) : NULL;
    CHECK(st == 200 && a && strtod(a + sizeof name - 1, NULL) >= TC_MSGS);
    free(text);
    wps_producer_close(p);
    free(ids);
    wps_client_close(c);
    wps_client_close(c2);
    stop_all();
}

int main(void)
{
    if (etcd_cluster_start(&ec, 1, NULL) != 0)
        return 1;
    RUN(produce_and_consume);
    RUN(owner_killed);
    RUN(owner_frozen);
    RUN(sqlite_polls);
    RUN(cli);
    RUN(slow_consumer);
    etcd_cluster_destroy(&ec);
    return test_done();
}
