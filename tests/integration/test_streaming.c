/* test_streaming.c — the streaming service (issue 12, docs/streaming.md):
 * coordinators and streaming nodes as real processes on 127.0.0.1, etcd
 * metadata (started here), channel logs on one local directory that every
 * node shares (local storage fences across processes), clients over HTTP
 * (libcurl). Kills are kill -9 of real processes. */
#include "test.h"
#include "codec/wpm.h"
#include "support/etcd_proc.h"
#include "support/httpc.h"
#include "support/logstore_proc.h"
#include "support/testutil.h"

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <unistd.h>

#define NODES_MAX 4
static logstore_proc node[NODES_MAX], coord[2];
static etcd_cluster ec;
static char o_meta_ep[300], o_meta_pfx[100], o_root[1200];
static const char *base_opts[12];
static int frozen = -1; /* a node stopped with SIGSTOP: not asked */

static void opts_init(const char *dir, const char *tag)
{
    snprintf(o_meta_ep, sizeof o_meta_ep, "meta.etcd.endpoints=%s", ec.endpoints);
    snprintf(o_meta_pfx, sizeof o_meta_pfx, "meta.prefix=st-%s-%d/", tag, (int)getpid());
    snprintf(o_root, sizeof o_root, "storage.root=%s/shared", dir);
    const char *o[] = {"meta.type=etcd", o_meta_ep, o_meta_pfx, o_root, "stream.lease_ttl_ms=1000",
                       "stream.assign_interval_ms=100", "stream.producer_snapshot_ms=300",
                       "log.level=info", NULL};
    memcpy(base_opts, o, sizeof o);
}

static int start_node(const char *dir, int i)
{
    char sub[1100], id[16];
    snprintf(sub, sizeof sub, "%s/n%d", dir, i);
    snprintf(id, sizeof id, "n%d", i);
    return stream_proc_start(&node[i], "streaming-node", sub, id, base_opts);
}

static int start_coord(const char *dir, int i)
{
    char sub[1100], id[16];
    snprintf(sub, sizeof sub, "%s/c%d", dir, i);
    snprintf(id, sizeof id, "c%d", i);
    return stream_proc_start(&coord[i], "streaming-coord", sub, id, base_opts);
}

static void stop_all(void)
{
    for (int i = 0; i < NODES_MAX; i++)
        if (node[i].pid > 0) {
            logstore_proc_stop(&node[i], SIGTERM);
            node[i].pid = 0;
        }
    for (int i = 0; i < 2; i++)
        if (coord[i].pid > 0) {
            logstore_proc_stop(&coord[i], SIGTERM);
            coord[i].pid = 0;
        }
}

/* A live node's address (for admin and lookups). */
static const char *any_node(void)
{
    for (int i = 0; i < NODES_MAX; i++)
        if (node[i].pid > 0 && i != frozen)
            return node[i].addr;
    return NULL;
}

static long req(const char *method, const char *addr, const char *path, const char *body,
                cJSON **out)
{
    char url[600];
    snprintf(url, sizeof url, "http://%s%s", addr, path);
    long st;
    char *resp = NULL;
    httpc(method, url, body, 15000, &st, &resp);
    if (out)
        *out = resp ? cJSON_Parse(resp) : NULL;
    free(resp);
    return st;
}

/* The owner's address and term of a channel, from any live node. */
static bool owner_of(const char *ch, char *addr, size_t cap, int64_t *term)
{
    const char *a = any_node();
    char path[200];
    snprintf(path, sizeof path, "/v1/channels/%s", ch);
    cJSON *o = NULL;
    bool ok = a && req("GET", a, path, NULL, &o) == 200;
    const cJSON *ad = cJSON_GetObjectItemCaseSensitive(o, "addr");
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, "term");
    ok = ok && cJSON_IsString(ad) && ad->valuestring[0] && cJSON_IsNumber(t);
    if (ok) {
        snprintf(addr, cap, "%s", ad->valuestring);
        if (term)
            *term = (int64_t)t->valuedouble;
    }
    cJSON_Delete(o);
    return ok;
}

static int node_by_addr(const char *addr)
{
    for (int i = 0; i < NODES_MAX; i++)
        if (node[i].pid > 0 && strcmp(node[i].addr, addr) == 0)
            return i;
    return -1;
}

/* Waits until every channel c00..c<n-1> has a live owner; the count per node. */
static bool wait_assigned(int n, int per[NODES_MAX], int timeout_ms)
{
    int64_t end = test_now_ms() + timeout_ms;
    while (test_now_ms() < end) {
        memset(per, 0, NODES_MAX * sizeof *per);
        int ok = 0;
        for (int c = 0; c < n; c++) {
            char name[16], addr[128];
            snprintf(name, sizeof name, "c%02d", c);
            int k;
            if (owner_of(name, addr, sizeof addr, NULL) && (k = node_by_addr(addr)) >= 0) {
                per[k]++;
                ok++;
            }
        }
        if (ok == n)
            return true;
        test_sleep_ms(100);
    }
    return false;
}

static void create_channels(int n)
{
    for (int c = 0; c < n; c++) {
        char body[64];
        snprintf(body, sizeof body, "{\"name\":\"c%02d\"}", c);
        CHECK(req("POST", any_node(), "/v1/channels", body, NULL) == 201);
    }
}

/* ---- a producer and a consumer that follow the channel's owner ---------- */

typedef struct {
    const char *ch;
    int n;          /* messages 1..n, producer "p", seq = the number */
    atomic_int acked;
    int retries;
    bool failed;
} producer_arg;

static void *producer_main(void *arg)
{
    producer_arg *p = arg;
    char addr[128] = "", path[200];
    snprintf(path, sizeof path, "/v1/channels/%s/messages", p->ch);
    int64_t end = test_now_ms() + 90000;
    for (int s = 1; s <= p->n;) {
        int k = p->n - s + 1 < 5 ? p->n - s + 1 : 5; /* batches of 5 */
        char body[1024];
        int len = snprintf(body, sizeof body, "{\"producer\":\"p\",\"messages\":[");
        for (int j = 0; j < k; j++)
            len += snprintf(body + len, sizeof body - (size_t)len, "%s{\"payload\":\"m-%d\",\"seq\":%d}",
                            j ? "," : "", s + j, s + j);
        snprintf(body + len, sizeof body - (size_t)len, "]}");
        long st = addr[0] ? req("POST", addr, path, body, NULL) : 0;
        if (st == 200) {
            s += k;
            atomic_store(&p->acked, s - 1);
            continue;
        }
        if (test_now_ms() > end) {
            fprintf(stderr, "  producer: gave up at %d (status %ld)\n", s, st);
            p->failed = true;
            return NULL;
        }
        if (addr[0])
            p->retries++;
        test_sleep_ms(50);
        if (!owner_of(p->ch, addr, sizeof addr, NULL))
            addr[0] = '\0';
    }
    return NULL;
}

typedef struct {
    const char *ch;
    int want;
    int got;      /* messages in order, each once */
    bool bad;
    int moves;    /* times it had to find the owner again */
    int timeout_ms; /* 0: 90 s */
} consumer_arg;

static void *consumer_main(void *arg)
{
    consumer_arg *c = arg;
    char addr[128] = "", last[48] = "";
    int64_t end = test_now_ms() + (c->timeout_ms ? c->timeout_ms : 90000);
    while (c->got < c->want && !c->bad && test_now_ms() < end) {
        char path[300];
        if (last[0])
            snprintf(path, sizeof path, "/v1/channels/%s/messages?from=after&id=%s&wait_ms=500",
                     c->ch, last);
        else
            snprintf(path, sizeof path, "/v1/channels/%s/messages?from=all&wait_ms=500", c->ch);
        cJSON *o = NULL;
        long st = addr[0] ? req("GET", addr, path, NULL, &o) : 0;
        if (st != 200) {
            cJSON_Delete(o);
            c->moves++;
            test_sleep_ms(50);
            if (!owner_of(c->ch, addr, sizeof addr, NULL))
                addr[0] = '\0';
            continue;
        }
        const cJSON *m;
        cJSON_ArrayForEach(m, cJSON_GetObjectItemCaseSensitive(o, "messages"))
        {
            const cJSON *id = cJSON_GetObjectItemCaseSensitive(m, "id");
            const cJSON *pl = cJSON_GetObjectItemCaseSensitive(m, "payload");
            char want[32];
            snprintf(want, sizeof want, "m-%d", c->got + 1);
            if (!cJSON_IsString(pl) || strcmp(pl->valuestring, want) != 0) {
                fprintf(stderr, "  consumer: got '%s' where %s was due\n",
                        cJSON_IsString(pl) ? pl->valuestring : "?", want);
                c->bad = true;
                break;
            }
            snprintf(last, sizeof last, "%s", id->valuestring);
            c->got++;
        }
        cJSON_Delete(o);
    }
    return NULL;
}

/* The channel holds exactly messages m-1..m-n: all n are read (in order,
 * each once; 30 s for a channel that has just moved and whose new owner
 * may still be opening it), then nothing after them (3 s more for an
 * n+1-th, from an owner that answers by now). */
static bool channel_holds(const char *ch, int n)
{
    consumer_arg all = {.ch = ch, .want = n, .timeout_ms = 30000};
    consumer_main(&all);
    consumer_arg more = {.ch = ch, .want = n + 1, .timeout_ms = 3000};
    if (!all.bad && all.got == n)
        consumer_main(&more);
    if (all.bad || all.got != n || more.bad || more.got != n)
        fprintf(stderr, "  channel %s: %d then %d messages read (%d, %d owner lookups), %d "
                "expected\n", ch, all.got, more.got, all.moves, more.moves, n);
    return !all.bad && all.got == n && !more.bad && more.got == n;
}

/* ---- tests -------------------------------------------------------------------- */

/* A coordinator and 3 nodes, 30 channels spread over them; the owner of a
 * channel is killed -9 while a producer and a consumer use it: both carry
 * on through the new owner; every acked message is consumed exactly once
 * and in order, and none was written twice by the producer's retries. */
TEST(owner_killed_during_produce)
{
    const char *dir = test_tmpdir("stream1");
    opts_init(dir, "t1");
    REQUIRE(start_coord(dir, 0) == 0);
    for (int i = 0; i < 3; i++)
        REQUIRE(start_node(dir, i) == 0);
    create_channels(30);
    int per[NODES_MAX];
    REQUIRE(wait_assigned(30, per, 20000));
    fprintf(stderr, "  30 channels: %d, %d, %d per node\n", per[0], per[1], per[2]);
    CHECK(per[0] == 10 && per[1] == 10 && per[2] == 10);
    producer_arg p = {.ch = "c07", .n = 600};
    consumer_arg cs = {.ch = "c07", .want = 600};
    pthread_t pt, ct;
    REQUIRE(pthread_create(&pt, NULL, producer_main, &p) == 0);
    REQUIRE(pthread_create(&ct, NULL, consumer_main, &cs) == 0);
    while (atomic_load(&p.acked) < 200 && !p.failed)
        test_sleep_ms(5);
    char addr[128];
    int64_t term0 = 0, term1 = 0;
    REQUIRE(owner_of("c07", addr, sizeof addr, &term0));
    int victim = node_by_addr(addr);
    REQUIRE(victim >= 0);
    CHECK(logstore_proc_stop(&node[victim], SIGKILL) == 128 + SIGKILL);
    node[victim].pid = 0;
    pthread_join(pt, NULL);
    pthread_join(ct, NULL);
    CHECK(!p.failed && !cs.bad);
    CHECK(cs.got == 600);
    REQUIRE(owner_of("c07", addr, sizeof addr, &term1));
    CHECK(term1 > term0 && node_by_addr(addr) >= 0);
    fprintf(stderr, "  killed n%d at 200 acked; %d producer retries, consumer moved %d times; "
            "term %lld -> %lld\n", victim, p.retries, cs.moves, (long long)term0,
            (long long)term1);
    /* Exactly 600 messages in the channel: no retry wrote one twice. */
    CHECK(channel_holds("c07", 600));
    /* Its other channels moved too. */
    REQUIRE(wait_assigned(30, per, 20000));
    CHECK(per[victim] == 0);
    stop_all();
}

/* Which coordinator is active: its log says so last. -1: none yet. */
static int active_coord(const char *dir)
{
    int who = -1;
    for (int i = 0; i < 2; i++) {
        if (coord[i].pid <= 0)
            continue;
        char p[1200];
        snprintf(p, sizeof p, "%s/c%d/server.log", dir, i);
        FILE *f = fopen(p, "r");
        char line[512];
        bool active = false;
        while (f && fgets(line, sizeof line, f))
            if (strstr(line, ": active"))
                active = true;
            else if (strstr(line, "no longer active"))
                active = false;
        if (f)
            fclose(f);
        if (active)
            who = i;
    }
    return who;
}

/* Two coordinators; the active one is killed -9: the standby takes over
 * and the assignments stay as they were (no channel moves for it). Then a
 * node is frozen (SIGSTOP) past its lease: its channels move, and when it
 * runs again a produce on it is refused (its writer was fenced by the new
 * owner's): a channel never has two owners that can both write. */
TEST(coordinator_failover_and_fencing)
{
    const char *dir = test_tmpdir("stream2");
    opts_init(dir, "t2");
    REQUIRE(start_coord(dir, 0) == 0);
    REQUIRE(start_coord(dir, 1) == 0);
    for (int i = 0; i < 3; i++)
        REQUIRE(start_node(dir, i) == 0);
    create_channels(9);
    int per[NODES_MAX];
    REQUIRE(wait_assigned(9, per, 20000));
    int64_t end = test_now_ms() + 5000;
    int a;
    while ((a = active_coord(dir)) < 0 && test_now_ms() < end)
        test_sleep_ms(50);
    REQUIRE(a >= 0);
    int64_t terms[9];
    char addr[128];
    for (int c = 0; c < 9; c++) {
        char name[16];
        snprintf(name, sizeof name, "c%02d", c);
        REQUIRE(owner_of(name, addr, sizeof addr, &terms[c]));
    }
    CHECK(logstore_proc_stop(&coord[a], SIGKILL) == 128 + SIGKILL);
    coord[a].pid = 0;
    end = test_now_ms() + 10000;
    while (active_coord(dir) != 1 - a && test_now_ms() < end)
        test_sleep_ms(50);
    CHECK(active_coord(dir) == 1 - a);
    test_sleep_ms(500); /* a few passes of the new one */
    for (int c = 0; c < 9; c++) {
        char name[16];
        int64_t t;
        snprintf(name, sizeof name, "c%02d", c);
        CHECK(owner_of(name, addr, sizeof addr, &t) && t == terms[c]);
    }
    /* Freeze the owner of c03 past its lease (1 s): c03 moves. */
    int64_t t0;
    REQUIRE(owner_of("c03", addr, sizeof addr, &t0));
    int frozen_i = node_by_addr(addr);
    REQUIRE(frozen_i >= 0);
    char old_addr[128];
    snprintf(old_addr, sizeof old_addr, "%s", addr);
    const char *path = "/v1/channels/c03/messages";
    CHECK(req("POST", old_addr, path, "{\"messages\":[{\"payload\":\"before\"}]}", NULL) == 200);
    CHECK(kill(node[frozen_i].pid, SIGSTOP) == 0);
    frozen = frozen_i;
    int64_t t1 = t0;
    end = test_now_ms() + 15000;
    while (test_now_ms() < end && (!owner_of("c03", addr, sizeof addr, &t1) || t1 == t0))
        test_sleep_ms(100);
    CHECK(t1 > t0 && strcmp(addr, old_addr) != 0);
    /* The new owner writes (its writer fenced the frozen one's). */
    long st = 0;
    end = test_now_ms() + 10000;
    while (test_now_ms() < end &&
           (st = req("POST", addr, path, "{\"messages\":[{\"payload\":\"new\"}]}", NULL)) != 200)
        test_sleep_ms(100);
    CHECK(st == 200);
    /* The old owner runs again: before it notices the move, a produce on it
     * must not be acked. */
    CHECK(kill(node[frozen_i].pid, SIGCONT) == 0);
    frozen = -1;
    st = req("POST", old_addr, path, "{\"messages\":[{\"payload\":\"stale\"}]}", NULL);
    fprintf(stderr, "  produce on the old owner after the move: status %ld\n", st);
    CHECK(st != 200);
    /* The channel holds "before" and "new", never "stale". */
    cJSON *o = NULL;
    char q[200];
    snprintf(q, sizeof q, "%s?from=all&wait_ms=200", path);
    CHECK(req("GET", addr, q, NULL, &o) == 200);
    char *txt = o ? cJSON_PrintUnformatted(o) : NULL;
    CHECK(txt && strstr(txt, "before") && strstr(txt, "new") && !strstr(txt, "stale"));
    free(txt);
    cJSON_Delete(o);
    stop_all();
}

/* Two nodes hold 10 channels; a third joins: channels are rebalanced onto
 * it while a producer and a consumer use one that moves; nothing is lost
 * or repeated. */
TEST(node_added_rebalances)
{
    const char *dir = test_tmpdir("stream3");
    opts_init(dir, "t3");
    REQUIRE(start_coord(dir, 0) == 0);
    REQUIRE(start_node(dir, 0) == 0);
    REQUIRE(start_node(dir, 1) == 0);
    create_channels(10);
    int per[NODES_MAX];
    REQUIRE(wait_assigned(10, per, 20000));
    CHECK(per[0] == 5 && per[1] == 5);
    /* The channel the rebalance moves first: the last by name of the most
     * loaded node. Use every channel of node 0 and 1's last: c09 moves if
     * its owner gives one up; watch all of them. */
    producer_arg p = {.ch = "c09", .n = 400};
    consumer_arg cs = {.ch = "c09", .want = 400};
    pthread_t pt, ct;
    REQUIRE(pthread_create(&pt, NULL, producer_main, &p) == 0);
    REQUIRE(pthread_create(&ct, NULL, consumer_main, &cs) == 0);
    while (atomic_load(&p.acked) < 100 && !p.failed)
        test_sleep_ms(5);
    int64_t t0 = 0, t1 = 0;
    char addr[128];
    REQUIRE(owner_of("c09", addr, sizeof addr, &t0));
    REQUIRE(start_node(dir, 2) == 0);
    pthread_join(pt, NULL);
    pthread_join(ct, NULL);
    CHECK(!p.failed && !cs.bad && cs.got == 400);
    REQUIRE(wait_assigned(10, per, 20000));
    int64_t end = test_now_ms() + 10000;
    while (test_now_ms() < end && per[2] < 3) {
        test_sleep_ms(100);
        wait_assigned(10, per, 2000);
    }
    fprintf(stderr, "  after the join: %d, %d, %d per node\n", per[0], per[1], per[2]);
    CHECK(per[2] == 3 || per[2] == 4);
    CHECK(owner_of("c09", addr, sizeof addr, &t1));
    fprintf(stderr, "  c09: term %lld -> %lld, %d producer retries\n", (long long)t0,
            (long long)t1, p.retries);
    CHECK(channel_holds("c09", 400));
    stop_all();
}

/* A binary produce (docs/streaming-api.md §7) to the node at a: the status;
 * the answer's ids into ids (n of them) and their dup flags. */
static long bin_produce(const char *a, const uint8_t *body, size_t len, int n, wp_msg_id *ids,
                        bool *dup, char **err)
{
    char url[300];
    snprintf(url, sizeof url, "http://%s/v1/channels/c00/messages", a);
    long st;
    char *resp = NULL;
    size_t rl = 0;
    httpc_ex("POST", url, WPM_CONTENT_TYPE, WPM_CONTENT_TYPE, body, len, 15000, &st, &resp, &rl);
    if (st == 200) {
        int64_t term;
        uint32_t count;
        const uint8_t *raw;
        char why[WPM_WHY_MAX];
        bool ok = wpm_ans_decode((const uint8_t *)resp, rl, &term, &count, &raw, why) == 0 &&
                  count == (uint32_t)n && term == 1;
        for (int i = 0; ok && i < n; i++)
            wpm_ans_id(raw, (uint32_t)i, &ids[i], &dup[i]);
        if (!ok)
            st = -1;
    }
    if (err)
        *err = resp;
    else
        free(resp);
    return st;
}

/* The binary encoding: a produce with binary payloads and properties, its
 * retry (duplicates, same ids), the pushed stream in frames, and each kind
 * of bad body. */
static void binary_requests(const char *a)
{
    static const char *keys[] = {"k"}, *vals[] = {"v\xc3\xa9"};
    uint8_t body[32 * 1024], *w = wpm_put_req_hdr(body, -1, "bp", 2);
    wp_payload m0 = {.data = "\0bin\xff", .len = 5, .n_props = 1, .prop_keys = keys,
                     .prop_values = vals};
    wp_payload m1 = {.data = "two", .len = 3};
    w = wpm_put_req_msg(w, 1, &m0);
    w = wpm_put_req_msg(w, 2, &m1);
    size_t len = (size_t)(w - body);
    wp_msg_id ids[2], again[2];
    bool dup[2];
    CHECK(bin_produce(a, body, len, 2, ids, dup, NULL) == 200);
    CHECK(!dup[0] && !dup[1] && ids[0].segment_id >= 0 && ids[1].entry_id == ids[0].entry_id + 1);
    CHECK(bin_produce(a, body, len, 2, again, dup, NULL) == 200); /* a retry */
    CHECK(dup[0] && dup[1] && wp_msg_id_cmp(again[0], ids[0]) == 0 &&
          wp_msg_id_cmp(again[1], ids[1]) == 0);
    /* The pushed stream, binary: the message as it was sent. */
    char url[300], id[WP_MSG_ID_STR_MAX];
    wp_msg_id_format(ids[0], id);
    snprintf(url, sizeof url, "http://%s/v1/channels/c00/messages?stream=1&from=at&id=%s", a, id);
    long st;
    char *resp = NULL;
    size_t rl = 0;
    httpc_ex("GET", url, NULL, WPM_CONTENT_TYPE, NULL, 0, 1500, &st, &resp, &rl);
    CHECK(st == 200 && rl > WPM_MAGIC_LEN && memcmp(resp, WPM_MAGIC, WPM_MAGIC_LEN) == 0);
    char type, why[WPM_WHY_MAX];
    wpm_msg f;
    const char *e;
    size_t el, need;
    long long k = rl > WPM_MAGIC_LEN ? wpm_frame_decode((const uint8_t *)resp + WPM_MAGIC_LEN,
                                                        rl - WPM_MAGIC_LEN, 1 << 20, &type, &f,
                                                        &e, &el, &need, why)
                                     : -1;
    CHECK(k > 0 && type == WPM_FRAME_MSG && wp_msg_id_cmp(f.id, ids[0]) == 0 && f.len == 5 &&
          memcmp(f.data, "\0bin\xff", 5) == 0);
    int seen = 0;
    size_t po = 0, kl, vl;
    const char *pk, *pv;
    while (k > 0 && wpm_prop_next(&f, &po, &pk, &kl, &pv, &vl))
        seen |= (strcmp(pk, "k") == 0 && strcmp(pv, vals[0]) == 0)       ? 1
                : (strcmp(pk, "wp.p") == 0 && strcmp(pv, "bp") == 0)     ? 2
                : (strcmp(pk, "wp.s") == 0 && strcmp(pv, "1") == 0)      ? 4
                                                                         : 8;
    CHECK(seen == 7);
    free(resp);
    /* Bad bodies: not WPM1; cut inside a message; a reserved property; a
     * payload above writer.max_entry_bytes (413); no message. */
    char *err = NULL;
    body[0] = 'X';
    CHECK(bin_produce(a, body, len, 0, NULL, NULL, &err) == 400 && err && strstr(err, "WPM1"));
    free(err);
    body[0] = 'W';
    CHECK(bin_produce(a, body, len - 2, 0, NULL, NULL, &err) == 400 && err &&
          strstr(err, "ends inside"));
    free(err);
    static const char *rk[] = {"wp.x"};
    wp_payload bad = {.data = "x", .len = 1, .n_props = 1, .prop_keys = rk, .prop_values = rk};
    w = wpm_put_req_msg(wpm_put_req_hdr(body, -1, NULL, 0), -1, &bad);
    CHECK(bin_produce(a, body, (size_t)(w - body), 0, NULL, NULL, &err) == 400 && err &&
          strstr(err, "reserved"));
    free(err);
    static uint8_t big[10 * 1024];
    wp_payload bigm = {.data = big, .len = sizeof big};
    w = wpm_put_req_msg(wpm_put_req_hdr(body, -1, NULL, 0), -1, &bigm);
    CHECK(bin_produce(a, body, (size_t)(w - body), 0, NULL, NULL, NULL) == 413);
    CHECK(bin_produce(a, body, WPM_REQ_HDR_FIXED, 0, NULL, NULL, NULL) == 400);
    /* A message without a seq from a producer. */
    w = wpm_put_req_msg(wpm_put_req_hdr(body, -1, "bp", 2), -1, &m1);
    CHECK(bin_produce(a, body, (size_t)(w - body), 0, NULL, NULL, NULL) == 400);
}

/* Bad requests get clear errors and the node goes on serving. */
TEST(bad_requests)
{
    const char *dir = test_tmpdir("stream4");
    opts_init(dir, "t4");
    const char *extra_o[16];
    int k = 0;
    for (; base_opts[k]; k++)
        extra_o[k] = base_opts[k];
    extra_o[k++] = "stream.max_request_bytes=64KiB";
    extra_o[k++] = "writer.max_entry_bytes=8KiB";
    extra_o[k] = NULL;
    memcpy(base_opts, extra_o, (size_t)(k + 1) * sizeof *extra_o);
    REQUIRE(start_coord(dir, 0) == 0);
    REQUIRE(start_node(dir, 0) == 0);
    create_channels(1);
    int per[NODES_MAX];
    REQUIRE(wait_assigned(1, per, 20000));
    const char *a = node[0].addr;
    cJSON *o = NULL;
    const char *path = "/v1/channels/c00/messages";
    /* Assigned in metadata is not yet served: the node opens the channel
     * at its next look at the assignments (later on a loaded machine);
     * until then it answers 421, before it parses the body. */
    int st0 = 0;
    for (int64_t end = test_now_ms() + 20000; test_now_ms() < end; test_sleep_ms(100))
        if ((st0 = req("POST", a, path, "{\"messages\":[{\"payload\":\"first\"}]}", NULL)) == 200)
            break;
    REQUIRE(st0 == 200);
    CHECK(req("POST", a, "/v1/channels/nope/messages", "{\"messages\":[{\"payload\":\"x\"}]}",
              NULL) == 404);
    CHECK(req("POST", a, "/v1/channels", "{\"name\":\"bad name\"}", NULL) == 400);
    CHECK(req("POST", a, "/v1/channels", "{\"name\":\"c00\"}", NULL) == 409);
    CHECK(req("POST", a, path, "{not json", &o) == 400);
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(o, "error");
    CHECK(cJSON_IsString(e) && strcmp(e->valuestring, "WP_EINVAL") == 0);
    cJSON_Delete(o);
    CHECK(req("POST", a, path, "{\"messages\":[]}", NULL) == 400);
    CHECK(req("POST", a, path, "{\"messages\":[{\"payload\":\"x\",\"seq\":1}]}", NULL) == 400);
    CHECK(req("POST", a, path, "{\"messages\":[{\"payload_b64\":\"!!\"}]}", NULL) == 400);
    CHECK(req("POST", a, path, "{\"term\":0,\"messages\":[{\"payload\":\"x\"}]}", &o) == 409);
    e = cJSON_GetObjectItemCaseSensitive(o, "error");
    CHECK(cJSON_IsString(e) && strcmp(e->valuestring, "stale_term") == 0);
    cJSON_Delete(o);
    /* A message above writer.max_entry_bytes; a body above the request limit. */
    char *big = malloc(100 * 1024);
    REQUIRE(big);
    int len = snprintf(big, 100 * 1024, "{\"messages\":[{\"payload\":\"");
    memset(big + len, 'y', 10 * 1024);
    snprintf(big + len + 10 * 1024, 100, "\"}]}");
    CHECK(req("POST", a, path, big, &o) == 413);
    char *why = o ? cJSON_PrintUnformatted(o) : NULL;
    fprintf(stderr, "  an entry above writer.max_entry_bytes: %s\n", why ? why : "(no body)");
    free(why);
    cJSON_Delete(o);
    len = snprintf(big, 100 * 1024, "{\"messages\":[{\"payload\":\"");
    memset(big + len, 'y', 90 * 1024);
    snprintf(big + len + 90 * 1024, 100, "\"}]}");
    CHECK(req("POST", a, path, big, NULL) == 413);
    free(big);
    CHECK(req("GET", a, "/v1/channels/c00/messages?from=sideways", NULL, NULL) == 400);
    CHECK(req("GET", a, "/v1/channels/c00/messages?max=0", NULL, NULL) == 400);
    CHECK(req("GET", a, "/v2/whatever", NULL, NULL) == 404);
    /* A client that goes away in the middle of a pushed stream. */
    char url[300];
    snprintf(url, sizeof url, "http://%s%s?from=all&stream=1", a, path);
    long st;
    httpc("GET", url, NULL, 500, &st, NULL); /* times out: the client hangs up */
    /* Everyone else is still served. */
    CHECK(req("POST", a, path, "{\"messages\":[{\"payload\":\"ok\"}]}", &o) == 200);
    cJSON_Delete(o);
    CHECK(req("GET", a, "/v1/channels", NULL, NULL) == 200);
    binary_requests(a);
    stop_all();
}

/* First payload number ("m-<n>") of a consume answer, and its last id. */
static int first_of(cJSON *o, char *last_id, size_t cap, int *count)
{
    const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(o, "messages"), *m;
    int first = -1;
    *count = 0;
    cJSON_ArrayForEach(m, msgs)
    {
        const cJSON *pl = cJSON_GetObjectItemCaseSensitive(m, "payload");
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(m, "id");
        if (first < 0 && cJSON_IsString(pl))
            first = atoi(pl->valuestring + 2);
        if (cJSON_IsString(id))
            snprintf(last_id, cap, "%s", id->valuestring);
        (*count)++;
    }
    return first;
}

/* A named subscription: its consumer reads 40 messages, acknowledges the
 * 30th and goes away; the next consumer of the subscription starts at the
 * 31st, also after the channel's owner was killed -9 (the position is in
 * metadata). Acks never move it back. */
TEST(subscription_resumes)
{
    const char *dir = test_tmpdir("stream5");
    opts_init(dir, "t5");
    REQUIRE(start_coord(dir, 0) == 0);
    REQUIRE(start_node(dir, 0) == 0);
    REQUIRE(start_node(dir, 1) == 0);
    create_channels(1);
    int per[NODES_MAX];
    REQUIRE(wait_assigned(1, per, 20000));
    producer_arg p = {.ch = "c00", .n = 100};
    producer_main(&p);
    REQUIRE(!p.failed);
    char addr[128], path[300], last[48] = "", id30[48] = "";
    REQUIRE(owner_of("c00", addr, sizeof addr, NULL));
    cJSON *o = NULL;
    CHECK(req("GET", addr, "/v1/channels/c00/messages?sub=s1&max=40&wait_ms=500", NULL, &o) == 200);
    int n = 0;
    CHECK(first_of(o, last, sizeof last, &n) == 1 && n == 40);
    const cJSON *m30 = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(o, "messages"), 29);
    snprintf(id30, sizeof id30, "%s",
             cJSON_GetObjectItemCaseSensitive(m30, "id") ? cJSON_GetObjectItemCaseSensitive(m30, "id")->valuestring : "");
    cJSON_Delete(o);
    char body[100];
    snprintf(body, sizeof body, "{\"id\":\"%s\"}", id30);
    CHECK(req("POST", addr, "/v1/channels/c00/subscriptions/s1/ack", body, NULL) == 200);
    /* The consumer is gone; the next one resumes at the 31st. */
    snprintf(path, sizeof path, "/v1/channels/c00/messages?sub=s1&max=5&wait_ms=500");
    CHECK(req("GET", addr, path, NULL, &o) == 200);
    CHECK(first_of(o, last, sizeof last, &n) == 31);
    cJSON_Delete(o);
    /* The owner dies; the new owner has the subscription where it was. */
    int victim = node_by_addr(addr);
    REQUIRE(victim >= 0);
    CHECK(logstore_proc_stop(&node[victim], SIGKILL) == 128 + SIGKILL);
    node[victim].pid = 0;
    int64_t end = test_now_ms() + 15000;
    long st = 0;
    o = NULL;
    while (test_now_ms() < end) {
        if (owner_of("c00", addr, sizeof addr, NULL) && node_by_addr(addr) >= 0 &&
            (st = req("GET", addr, path, NULL, &o)) == 200)
            break;
        cJSON_Delete(o); /* an error answer's body */
        o = NULL;
        test_sleep_ms(100);
    }
    CHECK(st == 200);
    CHECK(first_of(o, last, sizeof last, &n) == 31);
    cJSON_Delete(o);
    /* An older ack does not move it back; the list shows it; delete. */
    CHECK(req("POST", addr, "/v1/channels/c00/subscriptions/s1/ack", "{\"id\":\"0:3\"}", &o) == 200);
    const cJSON *nx = cJSON_GetObjectItemCaseSensitive(o, "next");
    char want[48];
    wp_msg_id w30;
    REQUIRE(sscanf(id30, "%" SCNd64 ":%" SCNd64, &w30.segment_id, &w30.entry_id) == 2);
    snprintf(want, sizeof want, "%" PRId64 ":%" PRId64, w30.segment_id, w30.entry_id + 1);
    CHECK(cJSON_IsString(nx) && strcmp(nx->valuestring, want) == 0);
    cJSON_Delete(o);
    CHECK(req("GET", addr, "/v1/channels/c00/subscriptions", NULL, &o) == 200);
    char *txt = o ? cJSON_PrintUnformatted(o) : NULL;
    CHECK(txt && strstr(txt, "\"name\":\"s1\"") && strstr(txt, want));
    free(txt);
    cJSON_Delete(o);
    CHECK(req("POST", addr, "/v1/channels/c00/subscriptions/nope/ack", "{\"id\":\"0:1\"}", NULL) == 404);
    CHECK(req("POST", addr, "/v1/channels/c00/subscriptions/s1/ack", "{\"id\":\"x\"}", NULL) == 400);
    CHECK(req("DELETE", addr, "/v1/channels/c00/subscriptions/s1", NULL, NULL) == 204);
    CHECK(req("POST", addr, "/v1/channels/c00/subscriptions/s1/ack", "{\"id\":\"0:1\"}", NULL) == 404);
    stop_all();
}

/* ---- heartbeats ------------------------------------------------------------- */

typedef struct {
    char url[300];
    const char *accept; /* NULL: NDJSON */
    long status;
    char *resp;
    size_t len;
} stream_get;

static void *stream_get_main(void *arg)
{
    stream_get *g = arg;
    /* The transfer is cut by the timeout: 10 s of silence and a bit. */
    httpc_ex("GET", g->url, NULL, g->accept, NULL, 0, 11500, &g->status, &g->resp, &g->len);
    return NULL;
}

/* An idle pushed stream sends a heartbeat after 10 s without messages
 * (docs/streaming-api.md §4, §7): 'H' in the binary frames, an empty line
 * in NDJSON, and nothing else; the stream stays open. */
TEST(idle_stream_heartbeats)
{
    const char *dir = test_tmpdir("stream6");
    opts_init(dir, "t6");
    REQUIRE(start_coord(dir, 0) == 0);
    REQUIRE(start_node(dir, 0) == 0);
    create_channels(1);
    int per[NODES_MAX];
    REQUIRE(wait_assigned(1, per, 20000));
    producer_arg p = {.ch = "c00", .n = 3};
    producer_main(&p);
    REQUIRE(!p.failed);
    char addr[128];
    REQUIRE(owner_of("c00", addr, sizeof addr, NULL));
    stream_get g[2] = {{.accept = WPM_CONTENT_TYPE}, {.accept = NULL}};
    pthread_t t[2];
    for (int i = 0; i < 2; i++) {
        snprintf(g[i].url, sizeof g[i].url, "http://%s/v1/channels/c00/messages?stream=1&from=all",
                 addr);
        REQUIRE(pthread_create(&t[i], NULL, stream_get_main, &g[i]) == 0);
    }
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    /* Binary: the magic, the 3 messages, then one heartbeat frame. */
    const uint8_t *b = (const uint8_t *)g[0].resp;
    size_t at = WPM_MAGIC_LEN, n = g[0].len;
    int msgs = 0, beats = 0, other = 0;
    CHECK(g[0].status == 200 && b && n >= WPM_MAGIC_LEN && memcmp(b, WPM_MAGIC, WPM_MAGIC_LEN) == 0);
    while (b && at < n) {
        char type, why[WPM_WHY_MAX];
        wpm_msg m;
        const char *end;
        size_t end_len, need;
        long long k = wpm_frame_decode(b + at, n - at, 1 << 20, &type, &m, &end, &end_len, &need, why);
        if (k <= 0) {
            other++;
            break;
        }
        at += (size_t)k;
        msgs += type == WPM_FRAME_MSG;
        beats += type == WPM_FRAME_HEARTBEAT && msgs == 3;
        other += type != WPM_FRAME_MSG && type != WPM_FRAME_HEARTBEAT;
    }
    if (msgs != 3 || beats != 1 || other)
        fprintf(stderr, "  binary stream: %d messages, %d heartbeats, %d other\n", msgs, beats, other);
    CHECK(msgs == 3 && beats == 1 && other == 0);
    /* NDJSON: 3 message lines, then one empty line. */
    const char *s = g[1].resp;
    int lines = 0;
    for (const char *l = s; l && *l;) {
        const char *nl = strchr(l, '\n');
        if (!nl)
            break;
        lines++;
        if (lines <= 3)
            CHECK(l[0] == '{' && strstr(l, "\"id\""));
        else
            CHECK(nl == l); /* empty */
        l = nl + 1;
    }
    CHECK(g[1].status == 200 && lines == 4 && s && s[strlen(s) - 1] == '\n');
    if (lines != 4)
        fprintf(stderr, "  NDJSON stream: %d lines: %.300s\n", lines, s ? s : "");
    free(g[0].resp);
    free(g[1].resp);
    stop_all();
}

/* A node stops in a bounded time when the metadata store is gone: its
 * channels' writers are closed together (each close waits for the store
 * up to its timeout), and the registration is not deleted once more after
 * the lease's revoke found no store. With 12 channels and a 1 s store
 * timeout, one close after another took about 14 s (2 s now). Runs last: it kills
 * the tests' etcd. */
TEST(stop_without_etcd)
{
    const char *dir = test_tmpdir("stream7");
    opts_init(dir, "t7");
    static const char *o[16];
    int k = 0;
    for (; base_opts[k]; k++)
        o[k] = base_opts[k];
    o[k++] = "meta.etcd.timeout_ms=1000";
    o[k] = NULL;
    memcpy(base_opts, o, sizeof o[0] * (size_t)(k + 1));
    REQUIRE(start_coord(dir, 0) == 0);
    REQUIRE(start_node(dir, 0) == 0);
    create_channels(12);
    int per[NODES_MAX];
    REQUIRE(wait_assigned(12, per, 20000));
    for (int c = 0; c < 12; c++) { /* every channel's writer open, with a segment */
        char ch[8];
        snprintf(ch, sizeof ch, "c%02d", c);
        producer_arg p = {.ch = ch, .n = 2};
        producer_main(&p);
        CHECK(!p.failed);
    }
    logstore_proc_stop(&coord[0], SIGKILL);
    coord[0].pid = 0;
    CHECK(etcd_member_stop(&ec, 0, SIGKILL) == 0);
    int64_t t0 = test_now_ms();
    int st = logstore_proc_stop(&node[0], SIGTERM);
    int64_t took = test_now_ms() - t0;
    node[0].pid = 0;
    fprintf(stderr, "  the node stopped in %" PRId64 " ms (status %d)\n", took, st);
    CHECK(st == 0);
    CHECK(took < 8000);
    stop_all();
}

int main(void)
{
    if (etcd_cluster_start(&ec, 1, NULL) != 0)
        return 1;
    RUN(owner_killed_during_produce);
    RUN(coordinator_failover_and_fencing);
    RUN(node_added_rebalances);
    RUN(bad_requests);
    RUN(subscription_resumes);
    RUN(idle_stream_heartbeats);
    RUN(stop_without_etcd);
    etcd_cluster_destroy(&ec);
    return test_done();
}
