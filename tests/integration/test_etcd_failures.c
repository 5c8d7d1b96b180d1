/* test_etcd_failures.c — the etcd metadata backend when etcd fails, on
 * members this test starts: etcd stopped (clear WP_EUNAVAILABLE within the
 * timeout, recovery after restart), a watch across an etcd restart (no
 * missed or duplicated event), a 3-member cluster losing its leader in the
 * middle of CAS increments from two threads (no lost or double-applied
 * update), a killed reader's lease expiring, and two processes racing to
 * bump an epoch through different members (exactly one wins). */
#include "test.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/wait.h>
#include <time.h>

#include "config/config.h"
#include "meta/etcd.h"
#include "meta/etcd_client.h"
#include "support/etcd_proc.h"

static int64_t ms_now(void) { return wp__now_ns() / 1000000; }

static void sleep_ms(int64_t ms)
{
    if (ms <= 0)
        return;
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

static meta *open_at(const char *endpoints, const char *prefix, int64_t timeout_ms)
{
    wp_config *cfg = NULL;
    meta *m = NULL;
    if (wp_config_default(&cfg) != 0)
        return NULL;
    snprintf(cfg->etcd_endpoints, sizeof cfg->etcd_endpoints, "%s", endpoints);
    snprintf(cfg->meta_prefix, sizeof cfg->meta_prefix, "%s", prefix);
    cfg->etcd_timeout_ms = timeout_ms;
    if (meta_etcd_open(cfg, &m) != 0)
        fprintf(stderr, "  (meta_etcd_open %s: %s)\n", endpoints, wp_errmsg());
    wp_config_free(cfg);
    return m;
}

/* Member i's URL first, then the others: where a client goes first. */
static void endpoints_from(const etcd_cluster *c, int first, char *buf, size_t len)
{
    size_t o = 0;
    for (int k = 0; k < c->n; k++)
        o += (size_t)snprintf(buf + o, len - o, "%s%s", k ? "," : "", c->m[(first + k) % c->n].url);
}

/* ---- etcd stopped ------------------------------------------------------ */

#define DOWN_TIMEOUT_MS 1000
#define DOWN_MARGIN_MS 800

TEST(etcd_down_then_back)
{
    etcd_cluster c;
    REQUIRE(etcd_cluster_start(&c, 1, NULL) == 0);
    meta *m = open_at(c.endpoints, "down", DOWN_TIMEOUT_MS);
    if (!m)
        etcd_cluster_destroy(&c);
    REQUIRE(m);
    meta_log l, g;
    CHECK_OK(m->ops->log_create(m, "d", 1, &l));
    CHECK(etcd_member_stop(&c, 0, SIGTERM) == 0);

    int64_t t0 = ms_now();
    CHECK_RC(WP_EUNAVAILABLE, m->ops->log_get(m, "d", &g));
    int64_t took = ms_now() - t0;
    CHECK(took <= DOWN_TIMEOUT_MS + DOWN_MARGIN_MS);
    CHECK(strstr(wp_errmsg(), c.m[0].url) != NULL);
    meta_log u = l;
    u.epoch = 1;
    t0 = ms_now();
    CHECK_RC(WP_EUNAVAILABLE, m->ops->log_update(m, &u));
    CHECK(ms_now() - t0 <= DOWN_TIMEOUT_MS + DOWN_MARGIN_MS);
    meta_seg s = {.log_id = l.log_id, .seg_id = 0, .last_entry_id = -1};
    CHECK_RC(WP_EUNAVAILABLE, m->ops->seg_create(m, &l, &s));
    int64_t lease;
    CHECK_RC(WP_EUNAVAILABLE, m->ops->lease_grant(m, 5000, &lease));
    fprintf(stderr, "  etcd down: log_get failed after %lld ms (timeout %d ms)\n",
            (long long)took, DOWN_TIMEOUT_MS);

    CHECK(etcd_member_start(&c, 0) == 0);
    CHECK(etcd_member_wait_healthy(&c, 0, 15000) == 0);
    CHECK_OK(m->ops->log_get(m, "d", &g)); /* the same handle recovers */
    CHECK(g.rev == l.rev && g.epoch == 0); /* the failed update never applied */
    CHECK_OK(m->ops->log_update(m, &g));
    CHECK_OK(m->ops->seg_create(m, &g, &s));
    m->ops->close(m);
    etcd_cluster_destroy(&c);
}

/* ---- watch across a restart -------------------------------------------- */

#define WATCH_KEYS 60

typedef struct {
    pthread_mutex_t mu;
    int seen[WATCH_KEYS];
    int order_errors, n;
    int64_t last_rev;
} watch_log;

static void on_watch(void *arg, const etcd_event *ev, size_t n)
{
    watch_log *w = arg;
    pthread_mutex_lock(&w->mu);
    for (size_t i = 0; i < n; i++) {
        int v = atoi((const char *)ev[i].kv.value);
        if (ev[i].kv.mod_rev <= w->last_rev || v != w->n)
            w->order_errors++;
        w->last_rev = ev[i].kv.mod_rev;
        if (v >= 0 && v < WATCH_KEYS)
            w->seen[v]++;
        w->n++;
    }
    pthread_mutex_unlock(&w->mu);
}

static int watch_count(watch_log *w)
{
    pthread_mutex_lock(&w->mu);
    int n = w->n;
    pthread_mutex_unlock(&w->mu);
    return n;
}

static int put_seq(etcd_client *cli, int from, int to)
{
    int fails = 0;
    for (int i = from; i < to; i++) {
        char key[32], val[16];
        snprintf(key, sizeof key, "w/%03d", i);
        snprintf(val, sizeof val, "%d", i);
        etcd_result r;
        fails += etcd_put(cli, key, val, strlen(val), 0, 0, &r) != 0;
        etcd_result_free(&r);
    }
    return fails;
}

TEST(watch_survives_restart)
{
    etcd_cluster c;
    REQUIRE(etcd_cluster_start(&c, 1, NULL) == 0);
    etcd_options o = {.endpoints = c.endpoints, .timeout_ms = 3000};
    etcd_client *cli = NULL;
    if (etcd_client_new(&o, &cli) != 0)
        etcd_cluster_destroy(&c);
    REQUIRE(cli);
    watch_log wl = {.mu = PTHREAD_MUTEX_INITIALIZER};
    etcd_watch *w = NULL;
    CHECK_OK(etcd_watch_start(cli, "w/", true, 0, on_watch, NULL, &wl, &w));
    CHECK(put_seq(cli, 0, WATCH_KEYS / 2) == 0);
    for (int64_t end = ms_now() + 3000; watch_count(&wl) < WATCH_KEYS / 2 && ms_now() < end;)
        sleep_ms(5);
    CHECK(etcd_member_stop(&c, 0, SIGKILL) == 0);
    sleep_ms(300); /* the watch notices and starts reconnecting */
    CHECK(etcd_member_start(&c, 0) == 0);
    CHECK(etcd_member_wait_healthy(&c, 0, 15000) == 0);
    /* Written at once: most reach etcd before the watch is back, so the
     * watch must catch up from its last revision + 1. */
    CHECK(put_seq(cli, WATCH_KEYS / 2, WATCH_KEYS) == 0);
    for (int64_t end = ms_now() + 5000; watch_count(&wl) < WATCH_KEYS && ms_now() < end;)
        sleep_ms(5);
    sleep_ms(100); /* a duplicate would arrive now */
    etcd_watch_stop(w);
    CHECK(wl.n == WATCH_KEYS);
    CHECK(wl.order_errors == 0);
    int missing = 0, dup = 0;
    for (int i = 0; i < WATCH_KEYS; i++) {
        missing += wl.seen[i] == 0;
        dup += wl.seen[i] > 1;
    }
    CHECK(missing == 0 && dup == 0);
    etcd_client_free(cli);
    etcd_cluster_destroy(&c);
}

/* ---- 3 members, leader killed during CAS increments -------------------- */

#define INC_TIMEOUT_MS 5000

typedef struct {
    char endpoints[256];
    atomic_bool *stop;
    atomic_llong *killed_at; /* ms; 0 before the kill */
    int64_t ok, ok_after_kill, conflict, unavailable, unknown, other;
    int open_failed;
    meta_etcd_stats st;
} incr;

static void *incr_thread(void *arg)
{
    incr *t = arg;
    meta *m = open_at(t->endpoints, "leader", INC_TIMEOUT_MS);
    if (!m) {
        t->open_failed = 1;
        return NULL;
    }
    while (!atomic_load(t->stop)) {
        meta_log l;
        int rc = m->ops->log_get(m, "cas", &l);
        if (rc == 0) {
            l.epoch++;
            rc = m->ops->log_update(m, &l);
        }
        if (rc == 0) {
            t->ok++;
            t->ok_after_kill += atomic_load(t->killed_at) != 0;
        } else if (rc == WP_ECONFLICT) {
            t->conflict++;
        } else if (rc == WP_EUNAVAILABLE) {
            t->unavailable++;
            t->unknown += strstr(wp_errmsg(), "outcome unknown") != NULL;
        } else {
            t->other++;
            fprintf(stderr, "  increment: %s\n", wp_errmsg());
        }
    }
    meta_etcd_get_stats(m, &t->st);
    m->ops->close(m);
    return NULL;
}

static void leader_kill_run(etcd_cluster *c)
{
    meta *m = open_at(c->endpoints, "leader", INC_TIMEOUT_MS);
    REQUIRE(m);
    meta_log l;
    CHECK_OK(m->ops->log_create(m, "cas", 1, &l));
    atomic_bool stop = false;
    atomic_llong killed_at = 0;
    incr t[2];
    pthread_t th[2];
    int leader = etcd_cluster_leader(c);
    CHECK(leader >= 0);
    for (int i = 0; i < 2; i++) { /* thread 0 talks to the leader, 1 to a follower */
        memset(&t[i], 0, sizeof t[i]);
        endpoints_from(c, (leader < 0 ? 0 : leader) + i, t[i].endpoints, sizeof t[i].endpoints);
        t[i].stop = &stop;
        t[i].killed_at = &killed_at;
        pthread_create(&th[i], NULL, incr_thread, &t[i]);
    }
    sleep_ms(1000);
    leader = etcd_cluster_leader(c);
    CHECK(leader >= 0);
    if (leader >= 0)
        CHECK(etcd_member_stop(c, leader, SIGKILL) == 0);
    atomic_store(&killed_at, ms_now());
    sleep_ms(3500);
    atomic_store(&stop, true);
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    int64_t ok = t[0].ok + t[1].ok, after = t[0].ok_after_kill + t[1].ok_after_kill;
    int64_t unknown = t[0].unknown + t[1].unknown;
    CHECK(t[0].open_failed == 0 && t[1].open_failed == 0);
    CHECK(t[0].other + t[1].other == 0);
    CHECK(after > 0); /* increments continue after the re-election */
    CHECK_OK(m->ops->log_get(m, "cas", &l));
    fprintf(stderr, "  leader %d killed: %lld increments (%lld after the kill), %lld conflicts, "
            "%lld unavailable (%lld unresolved), final epoch %lld, new leader %d\n", leader,
            (long long)ok, (long long)after, (long long)(t[0].conflict + t[1].conflict),
            (long long)(t[0].unavailable + t[1].unavailable), (long long)unknown,
            (long long)l.epoch, etcd_cluster_leader(c));
    fprintf(stderr, "  txns %lld, unknown outcomes %lld, re-checks %lld (found applied %lld)\n",
            (long long)(t[0].st.txns + t[1].st.txns), (long long)(t[0].st.unknown + t[1].st.unknown),
            (long long)(t[0].st.probes + t[1].st.probes),
            (long long)(t[0].st.probe_applied + t[1].st.probe_applied));
    /* No lost and no double-applied update: every success is counted once,
     * and a write whose outcome stayed unknown is reported as such. */
    CHECK(unknown == 0);
    CHECK(l.epoch >= ok && l.epoch <= ok + unknown);
    m->ops->close(m);
}

/* ---- two processes bump the epoch through different members ----------- */

#define RACE_ROUNDS 8

/* Child: open through member `first`, wait for go, CAS once. Exit status:
 * 0 won, 1 conflict, 2 other error, 3 could not open. */
static void race_child(const etcd_cluster *c, int first, const meta_log *base, int ready,
                       int go)
{
    char eps[256];
    endpoints_from(c, first, eps, sizeof eps);
    meta *m = open_at(eps, "race", 5000);
    char ch = 'r';
    if (!m)
        _exit(3);
    if (write(ready, &ch, 1) != 1 || read(go, &ch, 1) != 1)
        _exit(2);
    meta_log l = *base;
    l.epoch++;
    int rc = m->ops->log_update(m, &l);
    m->ops->close(m);
    _exit(rc == 0 ? 0 : rc == WP_ECONFLICT ? 1 : 2);
}

static int race_round(const etcd_cluster *c, const meta_log *base, int *won, int *lost)
{
    int ready[2], go[2];
    if (pipe(ready) != 0 || pipe(go) != 0)
        return -1;
    fflush(NULL);
    pid_t pid[2];
    for (int i = 0; i < 2; i++) {
        pid[i] = fork();
        if (pid[i] == 0) {
            close(ready[0]);
            close(go[1]);
            race_child(c, i, base, ready[1], go[0]);
        }
    }
    close(ready[1]);
    close(go[0]);
    char ch;
    int n_ready = 0;
    for (int i = 0; i < 2; i++)
        n_ready += read(ready[0], &ch, 1) == 1;
    int rc = n_ready == 2 && write(go[1], "gg", 2) == 2 ? 0 : -1;
    close(go[1]);
    close(ready[0]);
    for (int i = 0; i < 2; i++) {
        int st = 0;
        waitpid(pid[i], &st, 0);
        *won += WIFEXITED(st) && WEXITSTATUS(st) == 0;
        *lost += WIFEXITED(st) && WEXITSTATUS(st) == 1;
    }
    return rc;
}

static void race_processes(etcd_cluster *c)
{
    meta *m = open_at(c->endpoints, "race", 5000);
    REQUIRE(m);
    meta_log l;
    int rc = m->ops->log_create(m, "r", 1, &l);
    m->ops->close(m); /* hold no handle across fork */
    REQUIRE(rc == 0);
    for (int round = 0; round < RACE_ROUNDS; round++) {
        int won = 0, lost = 0;
        CHECK(race_round(c, &l, &won, &lost) == 0);
        CHECK(won == 1 && lost == 1);
        m = open_at(c->endpoints, "race", 5000);
        REQUIRE(m);
        meta_log after;
        CHECK_OK(m->ops->log_get(m, "r", &after));
        CHECK(after.epoch == l.epoch + 1 && after.rev > l.rev);
        m->ops->close(m);
        l = after;
    }
}

static etcd_cluster three;
static bool three_ok;

TEST(cluster_race_processes) { REQUIRE(three_ok); race_processes(&three); }
TEST(cluster_leader_killed) { REQUIRE(three_ok); leader_kill_run(&three); }

/* ---- a killed reader's lease expires ----------------------------------- */

#define READER_LEASE_MS 2000

static void reader_child(const char *eps, int64_t log_id, int ready)
{
    meta *m = open_at(eps, "lease", 3000);
    int64_t lease = 0;
    if (!m || m->ops->lease_grant(m, READER_LEASE_MS, &lease) != 0)
        _exit(3);
    meta_reader r = {.log_id = log_id, .seg_id = 0, .entry_id = 0, .lease_id = lease};
    snprintf(r.name, sizeof r.name, "doomed");
    if (m->ops->reader_put(m, &r) != 0 || write(ready, "r", 1) != 1)
        _exit(2);
    for (;;)
        pause(); /* until SIGKILL: nothing keeps the lease alive */
}

static bool has_reader(meta *m, int64_t log_id, int *rc_out)
{
    meta_reader *rs = NULL;
    size_t n = 0;
    *rc_out = m->ops->reader_list(m, log_id, &rs, &n);
    free(rs);
    return *rc_out == 0 && n == 1;
}

TEST(killed_reader_lease_expires)
{
    etcd_cluster c;
    REQUIRE(etcd_cluster_start(&c, 1, NULL) == 0);
    meta *m = open_at(c.endpoints, "lease", 3000);
    meta_log l;
    int rc = m ? m->ops->log_create(m, "l", 1, &l) : -1;
    if (m)
        m->ops->close(m);
    if (rc != 0)
        etcd_cluster_destroy(&c);
    REQUIRE(rc == 0);
    int ready[2];
    REQUIRE(pipe(ready) == 0);
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        close(ready[0]);
        reader_child(c.endpoints, l.log_id, ready[1]);
    }
    close(ready[1]);
    char ch;
    CHECK(read(ready[0], &ch, 1) == 1);
    int64_t t_ready = ms_now();
    close(ready[0]);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    m = open_at(c.endpoints, "lease", 3000);
    REQUIRE(m);
    CHECK(has_reader(m, l.log_id, &rc)); /* the crashed reader still holds GC... */
    sleep_ms(READER_LEASE_MS / 2 - (ms_now() - t_ready));
    CHECK(has_reader(m, l.log_id, &rc)); /* ...until its lease runs out */
    int64_t gone_at = 0;
    for (int64_t end = t_ready + READER_LEASE_MS + 3000; ms_now() < end && !gone_at; sleep_ms(20))
        if (!has_reader(m, l.log_id, &rc) && rc == 0)
            gone_at = ms_now();
    CHECK(gone_at != 0);
    fprintf(stderr, "  killed reader's registration vanished %lld ms after registering "
            "(lease %d ms)\n", (long long)(gone_at - t_ready), READER_LEASE_MS);
    CHECK(gone_at - t_ready >= READER_LEASE_MS - 500);
    m->ops->close(m);
    etcd_cluster_destroy(&c);
}

int main(void)
{
    RUN(etcd_down_then_back);
    RUN(watch_survives_restart);
    RUN(killed_reader_lease_expires);
    three_ok = etcd_cluster_start(&three, 3, NULL) == 0;
    RUN(cluster_race_processes);
    RUN(cluster_leader_killed);
    if (three_ok)
        etcd_cluster_destroy(&three);
    return test_done();
}
