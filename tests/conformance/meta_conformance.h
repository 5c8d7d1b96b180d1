/* meta_conformance.h — the conformance suite of the metadata interface
 * (src/meta/meta.h, docs/metadata.md). Header-only: include tests/test.h
 * first, then this, then call
 *
 *   meta_conformance_run(open_fresh, open_again, arg);
 *
 * open_fresh(arg) returns a handle on a new, empty store; open_again(arg)
 * returns another handle on the SAME store as the last open_fresh, as another
 * client or process would (it is also called in forked children). Both return
 * NULL on failure. The suite tests interface semantics only, so every backend
 * (sqlite, etcd) runs it unchanged. It closes every handle it opens, and
 * holds none while it forks. */
#ifndef WP_TESTS_META_CONFORMANCE_H
#define WP_TESTS_META_CONFORMANCE_H

#include <pthread.h>
#include <sys/wait.h>
#include <time.h>

#include "meta/meta.h"

#ifndef WP_TEST_H
#error "include tests/test.h before meta_conformance.h"
#endif

#define MC_RACE_THREADS 4
#define MC_RACE_HANDLES 3 /* threads 0 and 3 share a handle */
#define MC_RACE_ITERS 40
#define MC_PROC_ROUNDS 3
#define MC_LEASE_TTL_MS 300

static meta *(*mc_fresh)(void *arg);
static meta *(*mc_again)(void *arg);
static void *mc_arg;
/* Lease timing of the backend: the ttl mc_lease_expiry grants, and how late
 * after its ttl an expired lease may still be visible. SQLite expires
 * leases exactly (lazily, on the wall clock); etcd counts whole seconds
 * (etcd's minimum ttl here is 1 s) and its leader revokes expired leases
 * on a 500 ms tick. Set with meta_conformance_set_lease before the run. */
static int64_t mc_lease_ttl_ms = MC_LEASE_TTL_MS;
static int64_t mc_lease_slack_ms = 100;

static inline void meta_conformance_set_lease(int64_t ttl_ms, int64_t slack_ms)
{
    mc_lease_ttl_ms = ttl_ms;
    mc_lease_slack_ms = slack_ms;
}

static void mc_sleep_ms(int64_t ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

static int64_t mc_mono_ms(void) { return wp__now_ns() / 1000000; }

static void mc_close(meta *m)
{
    if (m)
        m->ops->close(m);
}

static meta_seg mc_seg(int64_t log_id, int64_t seg_id, int64_t epoch)
{
    meta_seg s;
    memset(&s, 0, sizeof s);
    s.log_id = log_id;
    s.seg_id = seg_id;
    s.state = WP_SEG_ACTIVE;
    s.last_entry_id = -1;
    s.bytes = 0;
    s.epoch = epoch;
    s.created_ms = 1000 + seg_id;
    s.completed_ms = 0;
    return s;
}

static meta_reader mc_reader(int64_t log_id, const char *name, int64_t seg, int64_t entry,
                             int64_t lease_id)
{
    meta_reader r;
    memset(&r, 0, sizeof r);
    r.log_id = log_id;
    snprintf(r.name, sizeof r.name, "%s", name);
    r.seg_id = seg;
    r.entry_id = entry;
    r.lease_id = lease_id;
    return r;
}

static int mc_count_segs(meta *m, int64_t log_id)
{
    meta_seg *segs = NULL;
    size_t n = 0;
    int rc = m->ops->seg_list(m, log_id, &segs, &n);
    free(segs);
    return rc < 0 ? rc : (int)n;
}

static int mc_count_readers(meta *m, int64_t log_id)
{
    meta_reader *rs = NULL;
    size_t n = 0;
    int rc = m->ops->reader_list(m, log_id, &rs, &n);
    free(rs);
    return rc < 0 ? rc : (int)n;
}

static bool mc_has_reader(meta *m, int64_t log_id, const char *name)
{
    meta_reader *rs = NULL;
    size_t n = 0;
    bool found = false;
    if (m->ops->reader_list(m, log_id, &rs, &n) == 0)
        for (size_t i = 0; i < n; i++)
            found = found || strcmp(rs[i].name, name) == 0;
    free(rs);
    return found;
}

/* ---- logs -------------------------------------------------------------- */

TEST(mc_log_crud)
{
    meta *m = mc_fresh(mc_arg);
    REQUIRE(m);
    meta_log l, g;
    CHECK_OK(m->ops->log_create(m, "ns/alpha", 12345, &l));
    CHECK(strcmp(l.name, "ns/alpha") == 0);
    CHECK(l.log_id > 0);
    CHECK(l.epoch == 0);
    CHECK(l.trunc_seg == -1 && l.trunc_entry == -1);
    CHECK(l.created_ms == 12345);
    CHECK(l.rev > 0);

    memset(&g, 0xab, sizeof g);
    CHECK_OK(m->ops->log_get(m, "ns/alpha", &g));
    CHECK(strcmp(g.name, "ns/alpha") == 0);
    CHECK(g.log_id == l.log_id && g.epoch == 0 && g.rev == l.rev);
    CHECK(g.trunc_seg == -1 && g.trunc_entry == -1 && g.created_ms == 12345);

    CHECK_RC(WP_EEXIST, m->ops->log_create(m, "ns/alpha", 1, &g));
    CHECK_RC(WP_ENOENT, m->ops->log_get(m, "ns/beta", &g));
    CHECK_RC(WP_ENOENT, m->ops->log_get(m, "ns/alph", &g));

    /* Name length: exactly WP_LOG_NAME_MAX is fine, one more is not. */
    char longname[WP_LOG_NAME_MAX + 2];
    memset(longname, 'n', WP_LOG_NAME_MAX);
    longname[WP_LOG_NAME_MAX] = '\0';
    CHECK_OK(m->ops->log_create(m, longname, 1, &g));
    CHECK_OK(m->ops->log_get(m, longname, &g));
    CHECK(strcmp(g.name, longname) == 0);
    longname[WP_LOG_NAME_MAX] = 'n';
    longname[WP_LOG_NAME_MAX + 1] = '\0';
    CHECK_RC(WP_EINVAL, m->ops->log_create(m, longname, 1, &g));

    /* Update writes only the mutable fields and advances the rev. */
    meta_log u = l;
    u.epoch = 3;
    u.trunc_seg = 2;
    u.trunc_entry = 5;
    u.log_id = 999999; /* immutable: ignored */
    u.created_ms = 1;  /* immutable: ignored */
    CHECK_OK(m->ops->log_update(m, &u));
    CHECK(u.rev > l.rev);
    CHECK_OK(m->ops->log_get(m, "ns/alpha", &g));
    CHECK(g.epoch == 3 && g.trunc_seg == 2 && g.trunc_entry == 5);
    CHECK(g.log_id == l.log_id && g.created_ms == 12345);
    CHECK(g.rev == u.rev);

    meta_log missing = l;
    snprintf(missing.name, sizeof missing.name, "ns/none");
    CHECK_RC(WP_ENOENT, m->ops->log_update(m, &missing));

    CHECK_OK(m->ops->log_delete(m, "ns/alpha", 0));
    CHECK_RC(WP_ENOENT, m->ops->log_get(m, "ns/alpha", &g));
    CHECK_RC(WP_ENOENT, m->ops->log_delete(m, "ns/alpha", 0));
    CHECK_RC(WP_ENOENT, m->ops->log_update(m, &u));
    mc_close(m);
}

TEST(mc_log_cas)
{
    meta *m = mc_fresh(mc_arg);
    REQUIRE(m);
    meta_log a, b, g;
    REQUIRE(m->ops->log_create(m, "cas", 1, &a) == 0);
    b = a;
    a.epoch = 1;
    CHECK_OK(m->ops->log_update(m, &a));
    int64_t stale = b.rev;
    b.epoch = 7;
    CHECK_RC(WP_ECONFLICT, m->ops->log_update(m, &b));
    CHECK(b.rev == stale); /* untouched on failure */
    CHECK_OK(m->ops->log_get(m, "cas", &g));
    CHECK(g.epoch == 1 && g.rev == a.rev);

    /* Updating with the current rev works again, and every write gets a
     * new, larger revision from one store-wide counter. */
    int64_t r1 = a.rev;
    meta_log other;
    CHECK_OK(m->ops->log_create(m, "other", 1, &other));
    CHECK(other.rev > r1);
    a.epoch = 2;
    CHECK_OK(m->ops->log_update(m, &a));
    CHECK(a.rev > other.rev);

    /* Conditional delete. */
    CHECK_RC(WP_ECONFLICT, m->ops->log_delete(m, "cas", stale));
    CHECK_OK(m->ops->log_get(m, "cas", &g));
    CHECK_OK(m->ops->log_delete(m, "cas", a.rev));
    CHECK_RC(WP_ENOENT, m->ops->log_get(m, "cas", &g));
    CHECK_RC(WP_ENOENT, m->ops->log_delete(m, "cas", a.rev));
    mc_close(m);
}

static bool mc_list_is(meta *m, const char *prefix, const char *const *want, size_t n_want)
{
    char **names = NULL;
    size_t n = 0;
    if (m->ops->log_list(m, prefix, &names, &n) != 0)
        return false;
    bool ok = n == n_want;
    for (size_t i = 0; ok && i < n; i++)
        ok = strcmp(names[i], want[i]) == 0;
    if (!ok) {
        fprintf(stderr, "  log_list(\"%s\") returned %zu:", prefix, n);
        for (size_t i = 0; i < n; i++)
            fprintf(stderr, " %s", names[i]);
        fprintf(stderr, "\n");
    }
    wp_free_names(names, n);
    return ok;
}

TEST(mc_log_list)
{
    meta *m = mc_fresh(mc_arg);
    REQUIRE(m);
    static const char *const create[] = {"b", "a/c", "x_y", "ab", "a", "xay", "a/b", "a.b"};
    for (size_t i = 0; i < sizeof create / sizeof *create; i++)
        CHECK_OK(m->ops->log_create(m, create[i], 1, NULL));

    static const char *const all[] = {"a", "a.b", "a/b", "a/c", "ab", "b", "x_y", "xay"};
    CHECK(mc_list_is(m, "", all, 8));
    static const char *const a[] = {"a", "a.b", "a/b", "a/c", "ab"};
    CHECK(mc_list_is(m, "a", a, 5));
    static const char *const aslash[] = {"a/b", "a/c"};
    CHECK(mc_list_is(m, "a/", aslash, 2));
    static const char *const x_[] = {"x_y"}; /* '_' is not a wildcard */
    CHECK(mc_list_is(m, "x_", x_, 1));
    CHECK(mc_list_is(m, "a%", NULL, 0)); /* nor is '%' */
    CHECK(mc_list_is(m, "zzz", NULL, 0));
    static const char *const exact[] = {"xay"};
    CHECK(mc_list_is(m, "xay", exact, 1));

    CHECK_OK(m->ops->log_delete(m, "a/b", 0));
    static const char *const after[] = {"a/c"};
    CHECK(mc_list_is(m, "a/", after, 1));
    mc_close(m);
}

TEST(mc_ids_never_reused)
{
    meta *m = mc_fresh(mc_arg);
    REQUIRE(m);
    meta_log a, b, c, a2;
    REQUIRE(m->ops->log_create(m, "a", 1, &a) == 0);
    REQUIRE(m->ops->log_create(m, "b", 1, &b) == 0);
    CHECK(b.log_id > a.log_id);
    CHECK_OK(m->ops->log_delete(m, "b", 0));
    CHECK_OK(m->ops->log_create(m, "c", 1, &c));
    CHECK(c.log_id > b.log_id);
    CHECK_OK(m->ops->log_delete(m, "a", 0));
    CHECK_OK(m->ops->log_create(m, "a", 1, &a2));
    CHECK(a2.log_id > c.log_id);
    CHECK(a2.rev > c.rev);

    /* Another handle on the same store continues the same generator. */
    meta *m2 = mc_again(mc_arg);
    REQUIRE(m2);
    meta_log d;
    CHECK_OK(m2->ops->log_create(m2, "d", 1, &d));
    CHECK(d.log_id > a2.log_id);
    CHECK(d.rev > a2.rev);
    CHECK_RC(WP_EEXIST, m2->ops->log_create(m2, "a", 1, &d));
    mc_close(m2);
    mc_close(m);
}

/* ---- segments ---------------------------------------------------------- */

TEST(mc_seg_crud)
{
    meta *m = mc_fresh(mc_arg);
    REQUIRE(m);
    meta_log l, l2;
    REQUIRE(m->ops->log_create(m, "segs", 1, &l) == 0);
    REQUIRE(m->ops->log_create(m, "other", 1, &l2) == 0);

    meta_seg s2 = mc_seg(l.log_id, 2, 0), s0 = mc_seg(l.log_id, 0, 0),
             s1 = mc_seg(l.log_id, 1, 0), g;
    CHECK_OK(m->ops->seg_create(m, &l, &s2));
    CHECK_OK(m->ops->seg_create(m, &l, &s0));
    CHECK_OK(m->ops->seg_create(m, &l, &s1));
    CHECK(s2.rev > l.rev && s0.rev > s2.rev && s1.rev > s0.rev);

    memset(&g, 0xab, sizeof g);
    CHECK_OK(m->ops->seg_get(m, l.log_id, 0, &g));
    CHECK(g.log_id == l.log_id && g.seg_id == 0 && g.state == WP_SEG_ACTIVE);
    CHECK(g.last_entry_id == -1 && g.bytes == 0 && g.epoch == 0);
    CHECK(g.created_ms == 1000 && g.completed_ms == 0 && g.rev == s0.rev);
    CHECK_RC(WP_ENOENT, m->ops->seg_get(m, l.log_id, 3, &g));
    CHECK_RC(WP_ENOENT, m->ops->seg_get(m, l2.log_id, 0, &g));

    meta_seg dup = mc_seg(l.log_id, 1, 0);
    CHECK_RC(WP_EEXIST, m->ops->seg_create(m, &l, &dup));

    meta_seg *segs = NULL;
    size_t n = 0;
    CHECK_OK(m->ops->seg_list(m, l.log_id, &segs, &n));
    CHECK(n == 3);
    for (size_t i = 0; i < n && i < 3; i++)
        CHECK(segs[i].seg_id == (int64_t)i && segs[i].log_id == l.log_id);
    if (n == 3)
        CHECK(segs[1].rev == s1.rev);
    free(segs);
    CHECK(mc_count_segs(m, l2.log_id) == 0);

    /* Complete segment 0: only state/last/bytes/completed change. */
    meta_seg u = s0;
    u.state = WP_SEG_COMPLETED;
    u.last_entry_id = 41;
    u.bytes = 4096;
    u.completed_ms = 2000;
    u.truncated_ms = 3000;
    u.epoch = 99;       /* immutable: ignored */
    u.created_ms = 5;   /* immutable: ignored */
    CHECK_OK(m->ops->seg_update(m, &u));
    CHECK(u.rev > s1.rev);
    CHECK_OK(m->ops->seg_get(m, l.log_id, 0, &g));
    CHECK(g.state == WP_SEG_COMPLETED && g.last_entry_id == 41 && g.bytes == 4096);
    CHECK(g.completed_ms == 2000 && g.epoch == 0 && g.created_ms == 1000 && g.rev == u.rev);
    CHECK(g.truncated_ms == 3000);

    /* Stale rev, missing segment. */
    s0.state = WP_SEG_SEALED;
    CHECK_RC(WP_ECONFLICT, m->ops->seg_update(m, &s0));
    CHECK_OK(m->ops->seg_get(m, l.log_id, 0, &g));
    CHECK(g.state == WP_SEG_COMPLETED);
    meta_seg none = mc_seg(l.log_id, 7, 0);
    none.rev = u.rev;
    CHECK_RC(WP_ENOENT, m->ops->seg_update(m, &none));

    /* Delete: CAS, unconditional, missing. */
    CHECK_RC(WP_ECONFLICT, m->ops->seg_delete(m, l.log_id, 0, s0.rev));
    CHECK_OK(m->ops->seg_delete(m, l.log_id, 0, u.rev));
    CHECK_RC(WP_ENOENT, m->ops->seg_get(m, l.log_id, 0, &g));
    CHECK_RC(WP_ENOENT, m->ops->seg_delete(m, l.log_id, 0, 0));
    CHECK_OK(m->ops->seg_delete(m, l.log_id, 2, 0));
    CHECK(mc_count_segs(m, l.log_id) == 1);
    mc_close(m);
}

TEST(mc_seg_guard)
{
    meta *m = mc_fresh(mc_arg);
    REQUIRE(m);
    meta_log l, g;
    meta_seg s;
    REQUIRE(m->ops->log_create(m, "guarded", 1, &l) == 0);
    meta_log old = l;
    s = mc_seg(l.log_id, 0, 0);
    CHECK_OK(m->ops->seg_create(m, &l, &s));

    /* A newer writer bumps the epoch: the old guard can no longer create. */
    l.epoch = 1;
    CHECK_OK(m->ops->log_update(m, &l));
    s = mc_seg(l.log_id, 1, 0);
    CHECK_RC(WP_ECONFLICT, m->ops->seg_create(m, &old, &s));
    meta_seg x;
    CHECK_RC(WP_ENOENT, m->ops->seg_get(m, l.log_id, 1, &x));
    /* A stale guard is reported even when the segment also exists. */
    s = mc_seg(l.log_id, 0, 0);
    CHECK_RC(WP_ECONFLICT, m->ops->seg_create(m, &old, &s));

    /* The current guard works; creating segments does not move the log's
     * rev, so one guard serves several creations. */
    s = mc_seg(l.log_id, 1, 1);
    CHECK_OK(m->ops->seg_create(m, &l, &s));
    s = mc_seg(l.log_id, 2, 1);
    CHECK_OK(m->ops->seg_create(m, &l, &s));
    CHECK_OK(m->ops->log_get(m, "guarded", &g));
    CHECK(g.rev == l.rev);
    CHECK(mc_count_segs(m, l.log_id) == 3);

    /* Seen from another handle too. */
    meta *m2 = mc_again(mc_arg);
    REQUIRE(m2);
    s = mc_seg(l.log_id, 3, 0);
    CHECK_RC(WP_ECONFLICT, m2->ops->seg_create(m2, &old, &s));
    CHECK_OK(m2->ops->seg_create(m2, &l, &s));

    /* The log is gone: the guard fails and nothing is created. */
    CHECK_OK(m->ops->log_delete(m, "guarded", 0));
    s = mc_seg(l.log_id, 4, 1);
    int rc = m2->ops->seg_create(m2, &l, &s);
    CHECK(rc == WP_ENOENT || rc == WP_ECONFLICT);
    CHECK(mc_count_segs(m, l.log_id) == 0);
    mc_close(m2);
    mc_close(m);
}

/* ---- many clients ------------------------------------------------------ */

TEST(mc_cross_handle)
{
    meta *a = mc_fresh(mc_arg);
    REQUIRE(a);
    meta *b = mc_again(mc_arg);
    if (!b)
        mc_close(a);
    REQUIRE(b);
    meta_log la, lb;
    CHECK_OK(a->ops->log_create(a, "shared", 1, &la));
    CHECK_OK(b->ops->log_get(b, "shared", &lb));
    CHECK(lb.log_id == la.log_id && lb.rev == la.rev);
    lb.epoch = 1;
    CHECK_OK(b->ops->log_update(b, &lb));
    la.epoch = 1;
    CHECK_RC(WP_ECONFLICT, a->ops->log_update(a, &la));
    CHECK_OK(a->ops->log_get(a, "shared", &la));
    CHECK(la.rev == lb.rev && la.epoch == 1);
    CHECK_RC(WP_EEXIST, b->ops->log_create(b, "shared", 1, NULL));
    mc_close(b);
    mc_close(a);
}

typedef struct {
    meta *h;
    int64_t ok, conflict, other;
} mc_racer;

static void *mc_race_thread(void *p)
{
    mc_racer *r = p;
    for (int i = 0; i < MC_RACE_ITERS; i++) {
        meta_log l;
        int rc = r->h->ops->log_get(r->h, "race", &l);
        if (rc == 0) {
            l.epoch++;
            mc_sleep_ms(1); /* "think" between read and CAS: widen the race */
            rc = r->h->ops->log_update(r->h, &l);
        }
        if (rc == 0)
            r->ok++;
        else if (rc == WP_ECONFLICT)
            r->conflict++;
        else
            r->other++;
    }
    return NULL;
}

/* Threads on separate handles CAS-increment one epoch: no lost update. */
TEST(mc_race_threads)
{
    meta *h[MC_RACE_HANDLES] = {NULL};
    h[0] = mc_fresh(mc_arg);
    REQUIRE(h[0]);
    for (int i = 1; i < MC_RACE_HANDLES; i++)
        h[i] = mc_again(mc_arg);
    bool opened = true;
    for (int i = 1; i < MC_RACE_HANDLES; i++)
        opened = opened && h[i];
    CHECK(opened);
    meta_log l;
    CHECK_OK(h[0]->ops->log_create(h[0], "race", 1, &l));

    mc_racer r[MC_RACE_THREADS];
    pthread_t t[MC_RACE_THREADS];
    int started = 0;
    memset(r, 0, sizeof r);
    for (int i = 0; opened && i < MC_RACE_THREADS; i++) {
        r[i].h = h[i % MC_RACE_HANDLES];
        if (pthread_create(&t[i], NULL, mc_race_thread, &r[i]) != 0)
            break;
        started++;
    }
    CHECK(!opened || started == MC_RACE_THREADS);
    int64_t ok = 0, conflict = 0, other = 0;
    for (int i = 0; i < started; i++) {
        pthread_join(t[i], NULL);
        ok += r[i].ok;
        conflict += r[i].conflict;
        other += r[i].other;
    }
    if (started == MC_RACE_THREADS) {
        CHECK(other == 0);
        CHECK(ok + conflict == (int64_t)MC_RACE_THREADS * MC_RACE_ITERS);
        CHECK(ok >= MC_RACE_ITERS); /* someone always wins */
        CHECK_OK(h[0]->ops->log_get(h[0], "race", &l));
        CHECK(l.epoch == ok);
    }
    for (int i = 0; i < MC_RACE_HANDLES; i++)
        mc_close(h[i]);
}

/* Child: open a handle, report ready, wait for go, try one CAS. Exit status:
 * 0 won, 1 conflict, 2 other error, 3 could not open. */
static void mc_proc_child(const meta_log *base, int ready_fd, int go_fd)
{
    meta *h = mc_again(mc_arg);
    char c = 'r';
    if (!h)
        _exit(3);
    if (write(ready_fd, &c, 1) != 1 || read(go_fd, &c, 1) != 1)
        _exit(2);
    meta_log l = *base;
    l.epoch++;
    int rc = h->ops->log_update(h, &l);
    h->ops->close(h);
    _exit(rc == 0 ? 0 : rc == WP_ECONFLICT ? 1 : 2);
}

/* Two processes bump the epoch from the same rev: exactly one wins. */
TEST(mc_race_processes)
{
    meta *m = mc_fresh(mc_arg);
    REQUIRE(m);
    meta_log l;
    int rc = m->ops->log_create(m, "procrace", 1, &l);
    mc_close(m); /* hold no handle across fork */
    REQUIRE(rc == 0);
    for (int round = 0; round < MC_PROC_ROUNDS; round++) {
        int ready[2], go[2];
        REQUIRE(pipe(ready) == 0);
        REQUIRE(pipe(go) == 0);
        fflush(NULL);
        pid_t pid[2];
        for (int i = 0; i < 2; i++) {
            pid[i] = fork();
            REQUIRE(pid[i] >= 0);
            if (pid[i] == 0) {
                close(ready[0]);
                close(go[1]);
                mc_proc_child(&l, ready[1], go[0]);
            }
        }
        close(ready[1]);
        close(go[0]);
        char c;
        int n_ready = 0;
        for (int i = 0; i < 2; i++)
            n_ready += read(ready[0], &c, 1) == 1;
        CHECK(n_ready == 2);
        CHECK(write(go[1], "gg", 2) == 2);
        close(go[1]);
        close(ready[0]);
        int won = 0, lost = 0;
        for (int i = 0; i < 2; i++) {
            int st = 0;
            CHECK(waitpid(pid[i], &st, 0) == pid[i]);
            CHECK(WIFEXITED(st));
            if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
                won++;
            else if (WIFEXITED(st) && WEXITSTATUS(st) == 1)
                lost++;
            else
                fprintf(stderr, "  round %d: child %d status 0x%x\n", round, i, st);
        }
        CHECK(won == 1 && lost == 1);

        m = mc_again(mc_arg);
        REQUIRE(m);
        meta_log after;
        CHECK_OK(m->ops->log_get(m, "procrace", &after));
        CHECK(after.epoch == l.epoch + 1);
        CHECK(after.rev > l.rev);
        mc_close(m);
        l = after;
    }
}

/* ---- leases and readers ------------------------------------------------ */

TEST(mc_reader_crud)
{
    meta *m = mc_fresh(mc_arg);
    REQUIRE(m);
    meta_log l, l2;
    REQUIRE(m->ops->log_create(m, "rd", 1, &l) == 0);
    REQUIRE(m->ops->log_create(m, "rd2", 1, &l2) == 0);
    int64_t lease = 0;
    CHECK_OK(m->ops->lease_grant(m, 60000, &lease));
    CHECK(lease != 0);

    meta_reader r = mc_reader(l.log_id, "sub-b", 3, 7, lease);
    CHECK_OK(m->ops->reader_put(m, &r));
    CHECK(r.rev > l2.rev);
    meta_reader r0 = mc_reader(l.log_id, "sub-a", 0, 0, 0); /* lease 0: no lease */
    CHECK_OK(m->ops->reader_put(m, &r0));
    meta_reader other = mc_reader(l2.log_id, "sub-b", 9, 9, lease);
    CHECK_OK(m->ops->reader_put(m, &other));

    meta_reader *rs = NULL;
    size_t n = 0;
    CHECK_OK(m->ops->reader_list(m, l.log_id, &rs, &n));
    CHECK(n == 2);
    if (n == 2) {
        CHECK(strcmp(rs[0].name, "sub-a") == 0 && rs[0].lease_id == 0);
        CHECK(strcmp(rs[1].name, "sub-b") == 0 && rs[1].log_id == l.log_id);
        CHECK(rs[1].seg_id == 3 && rs[1].entry_id == 7 && rs[1].lease_id == lease);
        CHECK(rs[1].rev == r.rev);
    }
    free(rs);

    /* Upsert moves the position and the rev, still one registration. */
    int64_t old_rev = r.rev;
    r.seg_id = 4;
    r.entry_id = 0;
    CHECK_OK(m->ops->reader_put(m, &r));
    CHECK(r.rev > old_rev);
    rs = NULL;
    CHECK_OK(m->ops->reader_list(m, l.log_id, &rs, &n));
    CHECK(n == 2);
    if (n == 2)
        CHECK(rs[1].seg_id == 4 && rs[1].entry_id == 0 && rs[1].rev == r.rev);
    free(rs);

    CHECK_OK(m->ops->reader_delete(m, l.log_id, "sub-b"));
    CHECK_RC(WP_ENOENT, m->ops->reader_delete(m, l.log_id, "sub-b"));
    CHECK(mc_count_readers(m, l.log_id) == 1);
    CHECK(mc_has_reader(m, l2.log_id, "sub-b"));

    /* No such log; name too long; unknown lease. */
    meta_reader bad = mc_reader(l2.log_id + 1000, "x", 0, 0, lease);
    CHECK_RC(WP_ENOENT, m->ops->reader_put(m, &bad));
    bad = mc_reader(l.log_id, "x", 0, 0, lease + 1000);
    CHECK_RC(WP_ENOENT, m->ops->reader_put(m, &bad));
    bad = mc_reader(l.log_id, "x", 0, 0, lease);
    memset(bad.name, 'r', sizeof bad.name); /* unterminated: too long */
    CHECK_RC(WP_EINVAL, m->ops->reader_put(m, &bad));
    CHECK(mc_count_readers(m, l.log_id) == 1);
    CHECK_OK(m->ops->lease_revoke(m, lease));
    mc_close(m);
}

TEST(mc_lease_expiry)
{
    meta *m = mc_fresh(mc_arg);
    REQUIRE(m);
    meta *m2 = mc_again(mc_arg);
    if (!m2)
        mc_close(m);
    REQUIRE(m2);
    meta_log l;
    int64_t lease = 0, dummy = 0;
    CHECK_RC(WP_EINVAL, m->ops->lease_grant(m, 0, &dummy));
    CHECK_RC(WP_EINVAL, m->ops->lease_grant(m, -5, &dummy));
    CHECK_OK(m->ops->log_create(m, "leased", 1, &l));
    int64_t t_grant = mc_mono_ms();
    CHECK_OK(m->ops->lease_grant(m, mc_lease_ttl_ms, &lease));
    meta_reader r = mc_reader(l.log_id, "tail", 0, 0, lease);
    CHECK_OK(m->ops->reader_put(m, &r));
    meta_reader keep = mc_reader(l.log_id, "keep", 0, 0, 0);
    CHECK_OK(m->ops->reader_put(m, &keep));
    CHECK(mc_count_readers(m2, l.log_id) == 2);

    /* Keepalive (from the other handle) at half the ttl... */
    mc_sleep_ms(mc_lease_ttl_ms / 2);
    int64_t t_keep = mc_mono_ms();
    CHECK_OK(m2->ops->lease_keepalive(m2, lease));
    /* ...keeps it alive past the original expiry. */
    mc_sleep_ms(mc_lease_ttl_ms * 5 / 6);
    int visible = mc_count_readers(m, l.log_id);
    int64_t t_list = mc_mono_ms();
    CHECK(t_list - t_grant > mc_lease_ttl_ms); /* the original ttl has passed */
    if (t_list - t_keep < mc_lease_ttl_ms - 10)
        CHECK(visible == 2);
    else
        fprintf(stderr, "  (machine too slow: skipped the keepalive visibility check)\n");

    /* Without keepalive it expires: the reader vanishes, the lease is gone. */
    mc_sleep_ms(mc_lease_ttl_ms + mc_lease_slack_ms);
    CHECK(mc_count_readers(m, l.log_id) == 1);
    CHECK(mc_count_readers(m2, l.log_id) == 1);
    CHECK(!mc_has_reader(m, l.log_id, "tail"));
    CHECK(mc_has_reader(m, l.log_id, "keep"));
    CHECK_RC(WP_ENOENT, m->ops->lease_keepalive(m, lease));
    r.seg_id = 1;
    CHECK_RC(WP_ENOENT, m->ops->reader_put(m, &r));
    CHECK_RC(WP_ENOENT, m->ops->reader_delete(m, l.log_id, "tail"));
    CHECK(mc_count_readers(m, l.log_id) == 1);

    /* A fresh lease works and gets a new id. */
    int64_t lease2 = 0;
    CHECK_OK(m->ops->lease_grant(m, 60000, &lease2));
    CHECK(lease2 != lease);
    r.lease_id = lease2;
    CHECK_OK(m->ops->reader_put(m, &r));
    CHECK(mc_count_readers(m2, l.log_id) == 2);
    CHECK_OK(m->ops->lease_revoke(m, lease2));
    mc_close(m2);
    mc_close(m);
}

TEST(mc_lease_revoke)
{
    meta *m = mc_fresh(mc_arg);
    REQUIRE(m);
    meta_log a, b;
    REQUIRE(m->ops->log_create(m, "ra", 1, &a) == 0);
    REQUIRE(m->ops->log_create(m, "rb", 1, &b) == 0);
    int64_t l1 = 0, l2 = 0;
    CHECK_OK(m->ops->lease_grant(m, 60000, &l1));
    CHECK_OK(m->ops->lease_grant(m, 60000, &l2));
    CHECK(l1 != l2);
    meta_reader r;
    r = mc_reader(a.log_id, "one", 0, 0, l1);
    CHECK_OK(m->ops->reader_put(m, &r));
    r = mc_reader(b.log_id, "one", 0, 0, l1);
    CHECK_OK(m->ops->reader_put(m, &r));
    r = mc_reader(a.log_id, "two", 0, 0, l2);
    CHECK_OK(m->ops->reader_put(m, &r));
    CHECK(mc_count_readers(m, a.log_id) == 2);

    meta *m2 = mc_again(mc_arg);
    REQUIRE(m2);
    CHECK_OK(m2->ops->lease_revoke(m2, l1));
    CHECK(mc_count_readers(m, a.log_id) == 1);
    CHECK(mc_has_reader(m, a.log_id, "two"));
    CHECK(mc_count_readers(m, b.log_id) == 0);
    CHECK_RC(WP_ENOENT, m->ops->lease_keepalive(m, l1));
    CHECK_RC(WP_ENOENT, m->ops->lease_revoke(m, l1));
    r = mc_reader(a.log_id, "one", 0, 0, l1);
    CHECK_RC(WP_ENOENT, m->ops->reader_put(m, &r));
    CHECK_OK(m->ops->lease_keepalive(m, l2));
    CHECK_OK(m->ops->lease_revoke(m, l2));
    CHECK(mc_count_readers(m2, a.log_id) == 0);
    mc_close(m2);
    mc_close(m);
}

TEST(mc_log_delete_cascade)
{
    meta *m = mc_fresh(mc_arg);
    REQUIRE(m);
    meta_log l, keep, again;
    REQUIRE(m->ops->log_create(m, "doomed", 1, &l) == 0);
    REQUIRE(m->ops->log_create(m, "kept", 1, &keep) == 0);
    int64_t lease = 0;
    CHECK_OK(m->ops->lease_grant(m, 60000, &lease));
    for (int64_t i = 0; i < 3; i++) {
        meta_seg s = mc_seg(l.log_id, i, 0);
        CHECK_OK(m->ops->seg_create(m, &l, &s));
        s = mc_seg(keep.log_id, i, 0);
        CHECK_OK(m->ops->seg_create(m, &keep, &s));
    }
    meta_reader r = mc_reader(l.log_id, "r1", 1, 0, lease);
    CHECK_OK(m->ops->reader_put(m, &r));
    r = mc_reader(l.log_id, "r2", 1, 0, 0);
    CHECK_OK(m->ops->reader_put(m, &r));
    r = mc_reader(keep.log_id, "r1", 1, 0, lease);
    CHECK_OK(m->ops->reader_put(m, &r));

    CHECK_RC(WP_ECONFLICT, m->ops->log_delete(m, "doomed", l.rev + 1000));
    CHECK(mc_count_segs(m, l.log_id) == 3);
    CHECK_OK(m->ops->log_delete(m, "doomed", l.rev));
    CHECK(mc_count_segs(m, l.log_id) == 0);
    CHECK(mc_count_readers(m, l.log_id) == 0);
    meta_seg g;
    CHECK_RC(WP_ENOENT, m->ops->seg_get(m, l.log_id, 0, &g));
    CHECK_RC(WP_ENOENT, m->ops->reader_delete(m, l.log_id, "r2"));
    CHECK(mc_count_segs(m, keep.log_id) == 3);
    CHECK(mc_count_readers(m, keep.log_id) == 1);

    /* Same name again: a new id and nothing inherited. */
    CHECK_OK(m->ops->log_create(m, "doomed", 1, &again));
    CHECK(again.log_id > keep.log_id);
    CHECK(again.epoch == 0 && again.trunc_seg == -1);
    CHECK(mc_count_segs(m, again.log_id) == 0);
    CHECK(mc_count_readers(m, again.log_id) == 0);
    CHECK_OK(m->ops->lease_revoke(m, lease));
    mc_close(m);
}

/* ---- node registrations ----------------------------------------------- */

static meta_node mc_node(const char *id, const char *kind, const char *addr, int64_t lease_id,
                         int64_t registered_ms)
{
    meta_node n;
    memset(&n, 0, sizeof n);
    snprintf(n.id, sizeof n.id, "%s", id);
    snprintf(n.kind, sizeof n.kind, "%s", kind);
    snprintf(n.addr, sizeof n.addr, "%s", addr);
    n.lease_id = lease_id;
    n.registered_ms = registered_ms;
    /* zone, free space and load round-trip too (docs/metadata.md §3.4) */
    snprintf(n.zone, sizeof n.zone, "%s", registered_ms % 2 ? "zone-a" : "");
    n.disk_free = registered_ms * 1000003;
    n.load = registered_ms % 7;
    /* and the upload figures, on some (the others keep the default 0) */
    if (registered_ms % 3) {
        n.segments = registered_ms % 11 + 3;
        n.upload_segments = registered_ms % 3;
        n.upload_bytes = registered_ms * 65537;
        n.upload_lag_ms = registered_ms * 13;
    }
    return n;
}

/* node_list(kind) returns exactly the ids want, in that order. */
static bool mc_nodes_are(meta *m, const char *kind, const char *const *want, size_t n_want)
{
    meta_node *ns = NULL;
    size_t n = 0;
    int rc = m->ops->node_list(m, kind, &ns, &n);
    if (rc != 0) {
        fprintf(stderr, "  node_list(\"%s\"): %s\n", kind, wp_errmsg());
        return false;
    }
    bool ok = n == n_want;
    for (size_t i = 0; ok && i < n; i++)
        ok = strcmp(ns[i].id, want[i]) == 0 && (!*kind || strcmp(ns[i].kind, kind) == 0);
    if (!ok) {
        fprintf(stderr, "  node_list(\"%s\") returned %zu:", kind, n);
        for (size_t i = 0; i < n; i++)
            fprintf(stderr, " %s(%s)", ns[i].id, ns[i].kind);
        fprintf(stderr, "\n");
    }
    free(ns);
    return ok;
}

static bool mc_node_eq(const meta_node *a, const meta_node *b)
{
    return strcmp(a->id, b->id) == 0 && strcmp(a->kind, b->kind) == 0 &&
           strcmp(a->addr, b->addr) == 0 && a->lease_id == b->lease_id &&
           a->registered_ms == b->registered_ms && a->rev == b->rev &&
           strcmp(a->zone, b->zone) == 0 && a->disk_free == b->disk_free && a->load == b->load &&
           a->segments == b->segments && a->upload_segments == b->upload_segments &&
           a->upload_bytes == b->upload_bytes && a->upload_lag_ms == b->upload_lag_ms;
}

TEST(mc_node_crud)
{
    meta *m = mc_fresh(mc_arg);
    REQUIRE(m);
    int64_t lease = 0;
    CHECK_OK(m->ops->lease_grant(m, 60000, &lease));
    CHECK(mc_nodes_are(m, "", NULL, 0));

    meta_node ls2 = mc_node("ls-2", "logstore", "10.0.0.2:9000", lease, 1002);
    meta_node ls1 = mc_node("ls-1", "logstore", "10.0.0.1:9000", lease, 1001);
    meta_node st = mc_node("st.A_1", "streaming", "host-a.example:7000", lease, 0);
    meta_node a9 = mc_node("A-9", "logstore", "[::1]:9009", lease, 1009);
    CHECK_OK(m->ops->node_put(m, &ls2));
    CHECK_OK(m->ops->node_put(m, &ls1));
    CHECK_OK(m->ops->node_put(m, &st));
    CHECK_OK(m->ops->node_put(m, &a9));
    CHECK(ls2.rev > 0 && ls1.rev > ls2.rev && st.rev > ls1.rev && a9.rev > st.rev);

    meta_node g;
    memset(&g, 0xab, sizeof g);
    CHECK_OK(m->ops->node_get(m, "ls-1", &g));
    CHECK(mc_node_eq(&g, &ls1));
    CHECK_OK(m->ops->node_get(m, "st.A_1", &g));
    CHECK(mc_node_eq(&g, &st));
    CHECK_RC(WP_ENOENT, m->ops->node_get(m, "ls-3", &g));
    CHECK_RC(WP_ENOENT, m->ops->node_get(m, "ls-", &g));

    /* Sorted by id bytewise ('A' < 'l'), not by insertion; filtered by kind. */
    static const char *const all[] = {"A-9", "ls-1", "ls-2", "st.A_1"};
    static const char *const logstores[] = {"A-9", "ls-1", "ls-2"};
    static const char *const streaming[] = {"st.A_1"};
    CHECK(mc_nodes_are(m, "", all, 4));
    CHECK(mc_nodes_are(m, "logstore", logstores, 3));
    CHECK(mc_nodes_are(m, "streaming", streaming, 1));
    CHECK(mc_nodes_are(m, "logstor", NULL, 0)); /* whole kinds, not prefixes */
    CHECK(mc_nodes_are(m, "other", NULL, 0));
    meta_node *ns = NULL;
    size_t n = 0;
    CHECK_OK(m->ops->node_list(m, "logstore", &ns, &n));
    if (n == 3)
        CHECK(mc_node_eq(&ns[0], &a9) && mc_node_eq(&ns[2], &ls2));
    free(ns);

    /* Upsert: a new address (and kind) and a new rev, still one record. */
    meta_node up = ls1;
    snprintf(up.addr, sizeof up.addr, "10.0.0.9:9001");
    up.registered_ms = 2001;
    up.rev = 12345; /* ignored */
    CHECK_OK(m->ops->node_put(m, &up));
    CHECK(up.rev > a9.rev);
    CHECK_OK(m->ops->node_get(m, "ls-1", &g));
    CHECK(mc_node_eq(&g, &up) && strcmp(g.addr, "10.0.0.9:9001") == 0);
    CHECK(mc_nodes_are(m, "", all, 4));
    /* The upload figures: set, then back to the default 0 (every put
     * replaces them), then set again. */
    CHECK(ls1.segments > 0 && ls2.segments == 0 && st.segments == 0);
    up.segments = 7;
    up.upload_segments = 2;
    up.upload_bytes = 3LL << 40;
    up.upload_lag_ms = 86400000;
    CHECK_OK(m->ops->node_put(m, &up));
    memset(&g, 0xab, sizeof g);
    CHECK_OK(m->ops->node_get(m, "ls-1", &g));
    CHECK(mc_node_eq(&g, &up) && g.segments == 7 && g.upload_segments == 2 &&
          g.upload_bytes == 3LL << 40 && g.upload_lag_ms == 86400000);
    up.segments = up.upload_segments = up.upload_bytes = up.upload_lag_ms = 0;
    CHECK_OK(m->ops->node_put(m, &up));
    memset(&g, 0xab, sizeof g);
    CHECK_OK(m->ops->node_get(m, "ls-1", &g));
    CHECK(mc_node_eq(&g, &up) && g.segments == 0 && g.upload_segments == 0 &&
          g.upload_bytes == 0 && g.upload_lag_ms == 0);
    up.segments = 1;
    up.upload_lag_ms = 1;
    CHECK_OK(m->ops->node_put(m, &up));
    CHECK_OK(m->ops->node_get(m, "ls-1", &g));
    CHECK(mc_node_eq(&g, &up));
    meta_node moved = a9;
    snprintf(moved.kind, sizeof moved.kind, "streaming");
    CHECK_OK(m->ops->node_put(m, &moved));
    static const char *const logstores2[] = {"ls-1", "ls-2"};
    static const char *const streaming2[] = {"A-9", "st.A_1"};
    CHECK(mc_nodes_are(m, "logstore", logstores2, 2));
    CHECK(mc_nodes_are(m, "streaming", streaming2, 2));

    /* Another handle sees the same records; delete is WP_ENOENT when gone. */
    meta *m2 = mc_again(mc_arg);
    if (!m2)
        mc_close(m);
    REQUIRE(m2);
    CHECK_OK(m2->ops->node_get(m2, "ls-1", &g));
    CHECK(mc_node_eq(&g, &up));
    CHECK(mc_nodes_are(m2, "", all, 4));
    CHECK_OK(m2->ops->node_delete(m2, "ls-2"));
    CHECK_RC(WP_ENOENT, m->ops->node_get(m, "ls-2", &g));
    CHECK_RC(WP_ENOENT, m->ops->node_delete(m, "ls-2"));
    CHECK_RC(WP_ENOENT, m2->ops->node_delete(m2, "never"));
    static const char *const after[] = {"A-9", "ls-1", "st.A_1"};
    CHECK(mc_nodes_are(m, "", after, 3));
    /* Deleting a node leaves the lease and its other keys alone. */
    CHECK_OK(m->ops->lease_keepalive(m, lease));
    CHECK_OK(m->ops->lease_revoke(m, lease));
    CHECK(mc_nodes_are(m2, "", NULL, 0));
    mc_close(m2);
    mc_close(m);
}

TEST(mc_node_bad_fields)
{
    meta *m = mc_fresh(mc_arg);
    REQUIRE(m);
    int64_t lease = 0;
    CHECK_OK(m->ops->lease_grant(m, 60000, &lease));
    meta_node ok = mc_node("ok", "logstore", "h:1", lease, 5), b, g;

    /* The longest of each field is fine. */
    meta_node lng = ok;
    memset(lng.id, 'i', WP_NODE_ID_MAX);
    lng.id[WP_NODE_ID_MAX] = '\0';
    memset(lng.kind, 'k', sizeof lng.kind - 1);
    lng.kind[sizeof lng.kind - 1] = '\0';
    memset(lng.addr, 'a', sizeof lng.addr - 1);
    lng.addr[sizeof lng.addr - 1] = '\0';
    memset(lng.zone, 'z', sizeof lng.zone - 1);
    lng.zone[sizeof lng.zone - 1] = '\0';
    lng.disk_free = lng.load = lng.segments = lng.upload_segments = lng.upload_bytes =
        lng.upload_lag_ms = INT64_MAX;
    CHECK_OK(m->ops->node_put(m, &ok));
    CHECK_OK(m->ops->node_put(m, &lng));
    CHECK_OK(m->ops->node_get(m, lng.id, &g));
    CHECK(mc_node_eq(&g, &lng));

    static const char *const bad_ids[] = {"", "a/b", "a b", "a:b", "caf\xc3\xa9", "x\n"};
    for (size_t i = 0; i < sizeof bad_ids / sizeof *bad_ids; i++) {
        b = ok;
        snprintf(b.id, sizeof b.id, "%s", bad_ids[i]);
        CHECK_RC(WP_EINVAL, m->ops->node_put(m, &b));
        CHECK(strstr(wp_errmsg(), "id") != NULL);
        CHECK_RC(WP_EINVAL, m->ops->node_get(m, bad_ids[i], &g));
        CHECK_RC(WP_EINVAL, m->ops->node_delete(m, bad_ids[i]));
    }
    b = ok;
    memset(b.id, 'i', sizeof b.id); /* unterminated: too long */
    CHECK_RC(WP_EINVAL, m->ops->node_put(m, &b));
    char longid[WP_NODE_ID_MAX + 2];
    memset(longid, 'i', WP_NODE_ID_MAX + 1);
    longid[WP_NODE_ID_MAX + 1] = '\0';
    CHECK_RC(WP_EINVAL, m->ops->node_get(m, longid, &g));
    CHECK_RC(WP_EINVAL, m->ops->node_delete(m, longid));

    static const char *const bad_kinds[] = {"", "LogStore", "log store", "a.b", "a/b"};
    for (size_t i = 0; i < sizeof bad_kinds / sizeof *bad_kinds; i++) {
        b = ok;
        snprintf(b.kind, sizeof b.kind, "%s", bad_kinds[i]);
        CHECK_RC(WP_EINVAL, m->ops->node_put(m, &b));
        CHECK(strstr(wp_errmsg(), "kind") != NULL);
        meta_node *ns = NULL;
        size_t n = 0;
        if (*bad_kinds[i]) /* "" lists all */
            CHECK_RC(WP_EINVAL, m->ops->node_list(m, bad_kinds[i], &ns, &n));
        free(ns);
    }
    b = ok;
    memset(b.kind, 'k', sizeof b.kind);
    CHECK_RC(WP_EINVAL, m->ops->node_put(m, &b));
    CHECK(strstr(wp_errmsg(), "kind") != NULL);

    static const char *const bad_addrs[] = {"", "h :1", "h\t:1", "h:1\x7f", "h\xc3\xa9:1"};
    for (size_t i = 0; i < sizeof bad_addrs / sizeof *bad_addrs; i++) {
        b = ok;
        snprintf(b.addr, sizeof b.addr, "%s", bad_addrs[i]);
        CHECK_RC(WP_EINVAL, m->ops->node_put(m, &b));
        CHECK(strstr(wp_errmsg(), "addr") != NULL);
    }
    b = ok;
    memset(b.addr, 'a', sizeof b.addr);
    CHECK_RC(WP_EINVAL, m->ops->node_put(m, &b));
    CHECK(strstr(wp_errmsg(), "addr") != NULL);

    b = ok;
    b.lease_id = 0; /* a node registration needs a lease */
    CHECK_RC(WP_EINVAL, m->ops->node_put(m, &b));
    CHECK(strstr(wp_errmsg(), "lease_id") != NULL);
    b.lease_id = -1;
    CHECK_RC(WP_EINVAL, m->ops->node_put(m, &b));
    CHECK(strstr(wp_errmsg(), "lease_id") != NULL);
    b = ok;
    b.registered_ms = -1;
    CHECK_RC(WP_EINVAL, m->ops->node_put(m, &b));
    CHECK(strstr(wp_errmsg(), "registered_ms") != NULL);
    b = ok;
    snprintf(b.zone, sizeof b.zone, "a zone"); /* a space */
    CHECK_RC(WP_EINVAL, m->ops->node_put(m, &b));
    CHECK(strstr(wp_errmsg(), "zone") != NULL);
    /* Counts and figures: >= 0, a bad one named. */
    static const char *const counts[] = {"disk_free", "load", "segments", "upload_segments",
                                         "upload_bytes", "upload_lag_ms"};
    for (size_t i = 0; i < sizeof counts / sizeof *counts; i++) {
        for (int k = 0; k < 2; k++) {
            b = ok;
            int64_t *f[] = {&b.disk_free,       &b.load,         &b.segments,
                            &b.upload_segments, &b.upload_bytes, &b.upload_lag_ms};
            *f[i] = k ? INT64_MIN : -1;
            CHECK_RC(WP_EINVAL, m->ops->node_put(m, &b));
            char want[64];
            snprintf(want, sizeof want, "bad %s ", counts[i]);
            if (!strstr(wp_errmsg(), want))
                fprintf(stderr, "  %s: %s\n", counts[i], wp_errmsg());
            CHECK(strstr(wp_errmsg(), want) != NULL);
        }
    }

    /* Nothing bad was stored, and the good ones are unchanged. */
    meta_node *ns = NULL;
    size_t n = 0;
    CHECK_OK(m->ops->node_list(m, "", &ns, &n));
    CHECK(n == 2);
    if (n == 2)
        CHECK(mc_node_eq(&ns[0], &lng) && mc_node_eq(&ns[1], &ok));
    free(ns);
    CHECK_OK(m->ops->lease_revoke(m, lease));
    mc_close(m);
}

TEST(mc_node_lease)
{
    meta *m = mc_fresh(mc_arg);
    REQUIRE(m);
    meta *m2 = mc_again(mc_arg);
    if (!m2)
        mc_close(m);
    REQUIRE(m2);
    meta_node g;

    /* A revoked lease: put is WP_ENOENT and stores nothing. */
    int64_t gone = 0;
    CHECK_OK(m->ops->lease_grant(m, 60000, &gone));
    CHECK_OK(m->ops->lease_revoke(m, gone));
    meta_node n1 = mc_node("n1", "logstore", "h1:1", gone, 1);
    CHECK_RC(WP_ENOENT, m->ops->node_put(m, &n1));
    CHECK_RC(WP_ENOENT, m->ops->node_get(m, "n1", &g));

    /* Revoke (from another handle) removes exactly the lease's nodes. */
    int64_t la = 0, lb = 0, lc = 0;
    CHECK_OK(m->ops->lease_grant(m, 60000, &la));
    CHECK_OK(m->ops->lease_grant(m, 60000, &lb));
    CHECK_OK(m->ops->lease_grant(m, 60000, &lc));
    n1.lease_id = la;
    meta_node n2 = mc_node("n2", "streaming", "h2:2", la, 2);
    meta_node n3 = mc_node("n3", "logstore", "h3:3", lb, 3);
    CHECK_OK(m->ops->node_put(m, &n1));
    CHECK_OK(m->ops->node_put(m, &n2));
    CHECK_OK(m->ops->node_put(m, &n3));
    static const char *const three[] = {"n1", "n2", "n3"};
    CHECK(mc_nodes_are(m2, "", three, 3));
    CHECK_OK(m2->ops->lease_revoke(m2, la));
    static const char *const only3[] = {"n3"};
    CHECK(mc_nodes_are(m, "", only3, 1));
    CHECK_RC(WP_ENOENT, m->ops->node_get(m, "n1", &g));
    CHECK_RC(WP_ENOENT, m->ops->node_delete(m, "n2"));
    CHECK_RC(WP_ENOENT, m->ops->node_put(m, &n1));

    /* An upsert moves the node to its new lease: revoking the old one
     * leaves it. */
    n3.lease_id = lc;
    CHECK_OK(m->ops->node_put(m, &n3));
    CHECK_OK(m->ops->lease_revoke(m, lb));
    CHECK_OK(m2->ops->node_get(m2, "n3", &g));
    CHECK(g.lease_id == lc && g.rev == n3.rev);

    /* Expiry: without keepalive the node vanishes for every handle, and the
     * expired lease cannot take a put. */
    int64_t ls = 0;
    CHECK_OK(m->ops->lease_grant(m, mc_lease_ttl_ms, &ls));
    meta_node eph = mc_node("eph", "streaming", "h4:4", ls, 4);
    CHECK_OK(m->ops->node_put(m, &eph));
    CHECK_OK(m2->ops->node_get(m2, "eph", &g));
    CHECK(mc_node_eq(&g, &eph));
    mc_sleep_ms(mc_lease_ttl_ms + mc_lease_slack_ms);
    CHECK_RC(WP_ENOENT, m->ops->node_get(m, "eph", &g));
    CHECK_RC(WP_ENOENT, m2->ops->node_get(m2, "eph", &g));
    CHECK(mc_nodes_are(m, "", only3, 1));
    CHECK(mc_nodes_are(m2, "streaming", NULL, 0));
    CHECK_RC(WP_ENOENT, m->ops->node_delete(m, "eph"));
    CHECK_RC(WP_ENOENT, m->ops->node_put(m, &eph));
    CHECK_RC(WP_ENOENT, m2->ops->node_get(m2, "eph", &g));
    CHECK_OK(m->ops->node_get(m, "n3", &g)); /* the long lease still holds */
    CHECK_OK(m->ops->lease_revoke(m, lc));
    CHECK(mc_nodes_are(m2, "", NULL, 0));
    mc_close(m2);
    mc_close(m);
}

/* Store-wide settings: absent, upsert, visible to other handles, checks. */
TEST(mc_setting)
{
    meta *m = mc_fresh(mc_arg);
    CHECK(m != NULL);
    if (!m)
        return;
    meta *m2 = mc_again(mc_arg);
    CHECK(m2 != NULL);
    char v[META_SETTING_VALUE_MAX + 1];
    CHECK_RC(WP_ENOENT, m->ops->setting_get(m, "conditionwrite", v, sizeof v));
    CHECK_OK(m->ops->setting_put(m, "conditionwrite", "true"));
    CHECK_OK(m->ops->setting_get(m, "conditionwrite", v, sizeof v));
    CHECK(strcmp(v, "true") == 0);
    if (m2) {
        CHECK_OK(m2->ops->setting_get(m2, "conditionwrite", v, sizeof v));
        CHECK(strcmp(v, "true") == 0);
        CHECK_OK(m2->ops->setting_put(m2, "conditionwrite", "false")); /* upsert */
    }
    CHECK_OK(m->ops->setting_get(m, "conditionwrite", v, sizeof v));
    CHECK(strcmp(v, m2 ? "false" : "true") == 0);
    CHECK_RC(WP_ENOENT, m->ops->setting_get(m, "other_setting", v, sizeof v));

    /* Bounds: a 256-byte value and an empty one are fine; the cap is kept. */
    char big[META_SETTING_VALUE_MAX + 2];
    memset(big, 'x', sizeof big);
    big[META_SETTING_VALUE_MAX] = '\0';
    CHECK_OK(m->ops->setting_put(m, "big", big));
    CHECK_OK(m->ops->setting_get(m, "big", v, sizeof v));
    CHECK(strcmp(v, big) == 0);
    char small[8];
    CHECK_RC(WP_ETOOBIG, m->ops->setting_get(m, "big", small, sizeof small));
    CHECK_OK(m->ops->setting_put(m, "empty", ""));
    CHECK_OK(m->ops->setting_get(m, "empty", small, sizeof small));
    CHECK(small[0] == '\0');
    big[META_SETTING_VALUE_MAX] = 'x';
    big[META_SETTING_VALUE_MAX + 1] = '\0';
    CHECK_RC(WP_EINVAL, m->ops->setting_put(m, "big", big));
    CHECK_RC(WP_EINVAL, m->ops->setting_put(m, "big", "a\nb"));
    CHECK_RC(WP_EINVAL, m->ops->setting_put(m, "big", "\x7f"));
    CHECK_RC(WP_EINVAL, m->ops->setting_put(m, "big", NULL));
    CHECK_OK(m->ops->setting_get(m, "big", v, sizeof v));
    CHECK(strlen(v) == META_SETTING_VALUE_MAX);

    /* Names: [a-z_]{1,64}, not the store's own keys. */
    char longname[META_SETTING_NAME_MAX + 2];
    memset(longname, 'n', sizeof longname);
    longname[META_SETTING_NAME_MAX] = '\0';
    CHECK_OK(m->ops->setting_put(m, longname, "1"));
    longname[META_SETTING_NAME_MAX] = 'n';
    longname[META_SETTING_NAME_MAX + 1] = '\0';
    static const char *const bad[] = {"", "Cond", "a-b", "a/b", "a b", "x1", "version",
                                      "instance", "logidgen"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        CHECK_RC(WP_EINVAL, m->ops->setting_put(m, bad[i], "v"));
        CHECK(strstr(wp_errmsg(), "name") != NULL);
        CHECK_RC(WP_EINVAL, m->ops->setting_get(m, bad[i], v, sizeof v));
    }
    CHECK_RC(WP_EINVAL, m->ops->setting_put(m, longname, "v"));
    CHECK_RC(WP_EINVAL, m->ops->setting_get(m, NULL, v, sizeof v));

    /* The store itself is unharmed: a new handle opens it, logs work. */
    mc_close(m2);
    m2 = mc_again(mc_arg);
    CHECK(m2 != NULL);
    if (m2) {
        meta_log l;
        CHECK_OK(m2->ops->log_create(m2, "after_settings", 1, &l));
        CHECK_OK(m2->ops->setting_get(m2, "empty", v, sizeof v));
        CHECK(v[0] == '\0');
    }
    mc_close(m2);
    mc_close(m);
}

/* A segment's placement (docs/metadata.md §3.2): stored at creation, read
 * back by get and list and by another handle, unchanged by updates; bad
 * text refused. */
TEST(mc_seg_placement)
{
    meta *m = mc_fresh(mc_arg);
    REQUIRE(m);
    meta_log l;
    REQUIRE(m->ops->log_create(m, "placed", 1, &l) == 0);
    meta_seg s = mc_seg(l.log_id, 0, 0), none = mc_seg(l.log_id, 1, 0), g;
    const char *p = "ls-1@127.0.0.1:7001,ls-2@127.0.0.1:7002,ls-3@[::1]:7003";
    snprintf(s.placement, sizeof s.placement, "%s", p);
    CHECK_OK(m->ops->seg_create(m, &l, &s));
    CHECK_OK(m->ops->seg_create(m, &l, &none));
    CHECK_OK(m->ops->seg_get(m, l.log_id, 0, &g));
    CHECK(strcmp(p, g.placement) == 0);
    CHECK_OK(m->ops->seg_get(m, l.log_id, 1, &g));
    CHECK(strcmp("", g.placement) == 0);
    /* Updates leave it as created. */
    meta_seg u = s;
    u.state = WP_SEG_COMPLETED;
    u.last_entry_id = 9;
    snprintf(u.placement, sizeof u.placement, "elsewhere:1");
    CHECK_OK(m->ops->seg_update(m, &u));
    meta *m2 = mc_again(mc_arg);
    REQUIRE(m2);
    meta_seg *segs = NULL;
    size_t n = 0;
    CHECK_OK(m2->ops->seg_list(m2, l.log_id, &segs, &n));
    CHECK(n == 2);
    if (n == 2) {
        CHECK(strcmp(p, segs[0].placement) == 0);
        CHECK(segs[0].state == WP_SEG_COMPLETED && segs[0].last_entry_id == 9);
        CHECK(strcmp("", segs[1].placement) == 0);
    }
    free(segs);
    /* The longest one fits; a space, a control byte or one byte too many
     * do not. */
    meta_seg big = mc_seg(l.log_id, 2, 0);
    memset(big.placement, 'x', META_SEG_PLACEMENT_MAX);
    big.placement[META_SEG_PLACEMENT_MAX] = '\0';
    CHECK_OK(m->ops->seg_create(m, &l, &big));
    CHECK_OK(m2->ops->seg_get(m2, l.log_id, 2, &g));
    CHECK(strlen(g.placement) == META_SEG_PLACEMENT_MAX);
    meta_seg bad = mc_seg(l.log_id, 3, 0);
    snprintf(bad.placement, sizeof bad.placement, "a b");
    CHECK_RC(WP_EINVAL, m->ops->seg_create(m, &l, &bad));
    snprintf(bad.placement, sizeof bad.placement, "a\tb");
    CHECK_RC(WP_EINVAL, m->ops->seg_create(m, &l, &bad));
    memset(bad.placement, 'y', sizeof bad.placement); /* unterminated */
    CHECK_RC(WP_EINVAL, m->ops->seg_create(m, &l, &bad));
    CHECK_RC(WP_ENOENT, m->ops->seg_get(m, l.log_id, 3, &g));
    mc_close(m2);
    mc_close(m);
}

/* ---- upload claims (docs/metadata.md §3.6) ----------------------------- */

static meta_claim mc_claim(int64_t log_id, int64_t seg_id, const char *node_id, int64_t lease_id,
                           int64_t attempt)
{
    meta_claim c;
    memset(&c, 0, sizeof c);
    c.log_id = log_id;
    c.seg_id = seg_id;
    snprintf(c.node_id, sizeof c.node_id, "%s", node_id);
    c.lease_id = lease_id;
    c.claimed_ms = 5000 + seg_id;
    c.attempt = attempt;
    return c;
}

static bool mc_claim_eq(const meta_claim *a, const meta_claim *b)
{
    return a->log_id == b->log_id && a->seg_id == b->seg_id &&
           strcmp(a->node_id, b->node_id) == 0 && a->lease_id == b->lease_id &&
           a->claimed_ms == b->claimed_ms && a->attempt == b->attempt && a->rev == b->rev;
}

/* claim_list(log_id) returns exactly the (log_id, seg_id) pairs want, in
 * that order (want holds 2 * n_want ids). */
static bool mc_claims_are(meta *m, int64_t log_id, const int64_t *want, size_t n_want)
{
    meta_claim *cs = NULL;
    size_t n = 0;
    int rc = m->ops->claim_list(m, log_id, &cs, &n);
    if (rc != 0) {
        fprintf(stderr, "  claim_list(%lld): %s\n", (long long)log_id, wp_errmsg());
        return false;
    }
    bool ok = n == n_want;
    for (size_t i = 0; ok && i < n; i++)
        ok = cs[i].log_id == want[2 * i] && cs[i].seg_id == want[2 * i + 1];
    if (!ok) {
        fprintf(stderr, "  claim_list(%lld) returned %zu:", (long long)log_id, n);
        for (size_t i = 0; i < n; i++)
            fprintf(stderr, " %lld/%lld", (long long)cs[i].log_id, (long long)cs[i].seg_id);
        fprintf(stderr, "\n");
    }
    free(cs);
    return ok;
}

/* Creates segments 0..n-1 of l. */
static bool mc_make_segs(meta *m, const meta_log *l, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        meta_seg s = mc_seg(l->log_id, i, 0);
        if (m->ops->seg_create(m, l, &s) != 0) {
            fprintf(stderr, "  seg_create %lld/%lld: %s\n", (long long)l->log_id, (long long)i,
                    wp_errmsg());
            return false;
        }
    }
    return true;
}

TEST(mc_claim_crud)
{
    meta *m = mc_fresh(mc_arg);
    REQUIRE(m);
    meta_log a, b;
    REQUIRE(m->ops->log_create(m, "claimed", 1, &a) == 0);
    REQUIRE(m->ops->log_create(m, "claimed2", 1, &b) == 0);
    REQUIRE(mc_make_segs(m, &a, 3) && mc_make_segs(m, &b, 2));
    int64_t l1 = 0, l2 = 0;
    CHECK_OK(m->ops->lease_grant(m, 60000, &l1));
    CHECK_OK(m->ops->lease_grant(m, 60000, &l2));

    meta_claim c1 = mc_claim(a.log_id, 1, "ls-1", l1, 1), g;
    c1.rev = 777; /* ignored */
    CHECK_OK(m->ops->claim_create(m, &c1));
    CHECK(c1.rev > 0 && c1.rev != 777);
    memset(&g, 0xab, sizeof g);
    CHECK_OK(m->ops->claim_get(m, a.log_id, 1, &g));
    CHECK(mc_claim_eq(&g, &c1));
    CHECK(g.claimed_ms == 5001 && strcmp(g.node_id, "ls-1") == 0 && g.attempt == 1);
    CHECK_RC(WP_ENOENT, m->ops->claim_get(m, a.log_id, 0, &g));
    CHECK_RC(WP_ENOENT, m->ops->claim_get(m, b.log_id, 1, &g));

    /* A live claim: anyone's create is WP_EEXIST (the claimant's own too)
     * and changes nothing. */
    meta_claim dup = mc_claim(a.log_id, 1, "ls-2", l2, 1);
    CHECK_RC(WP_EEXIST, m->ops->claim_create(m, &dup));
    CHECK(strstr(wp_errmsg(), "ls-1") != NULL); /* names the holder */
    CHECK(dup.rev == 0);
    dup = c1;
    CHECK_RC(WP_EEXIST, m->ops->claim_create(m, &dup));
    CHECK(dup.rev == c1.rev);
    CHECK_OK(m->ops->claim_get(m, a.log_id, 1, &g));
    CHECK(mc_claim_eq(&g, &c1));

    /* A segment that does not exist cannot be claimed. */
    meta_claim none = mc_claim(a.log_id, 3, "ls-1", l1, 1);
    CHECK_RC(WP_ENOENT, m->ops->claim_create(m, &none));
    none = mc_claim(b.log_id + 1000, 0, "ls-1", l1, 1);
    CHECK_RC(WP_ENOENT, m->ops->claim_create(m, &none));

    /* More claims; list sorts by (log_id, seg_id), 0 lists every log. */
    meta_claim c0 = mc_claim(a.log_id, 0, "ls-2", l2, 3);
    meta_claim cb1 = mc_claim(b.log_id, 1, "ls-1", l1, 1);
    meta_claim cb0 = mc_claim(b.log_id, 0, "ls-3", l2, 1);
    CHECK_OK(m->ops->claim_create(m, &cb1));
    CHECK_OK(m->ops->claim_create(m, &c0));
    CHECK_OK(m->ops->claim_create(m, &cb0));
    CHECK(cb1.rev > c1.rev && c0.rev > cb1.rev && cb0.rev > c0.rev);
    int64_t want_a[] = {a.log_id, 0, a.log_id, 1};
    int64_t want_b[] = {b.log_id, 0, b.log_id, 1};
    int64_t want_all[] = {a.log_id, 0, a.log_id, 1, b.log_id, 0, b.log_id, 1};
    CHECK(mc_claims_are(m, a.log_id, want_a, 2));
    CHECK(mc_claims_are(m, b.log_id, want_b, 2));
    CHECK(mc_claims_are(m, 0, want_all, 4));
    CHECK(mc_claims_are(m, b.log_id + 1000, NULL, 0));

    /* Another handle sees the same records. */
    meta *m2 = mc_again(mc_arg);
    if (!m2)
        mc_close(m);
    REQUIRE(m2);
    meta_claim *cs = NULL;
    size_t n = 0;
    CHECK_OK(m2->ops->claim_list(m2, 0, &cs, &n));
    CHECK(n == 4);
    if (n == 4)
        CHECK(mc_claim_eq(&cs[0], &c0) && mc_claim_eq(&cs[1], &c1) &&
              mc_claim_eq(&cs[2], &cb0) && mc_claim_eq(&cs[3], &cb1));
    free(cs);

    /* Delete: a stale rev is WP_ECONFLICT and leaves the claim alone. */
    int64_t stale = c1.rev;
    CHECK_OK(m2->ops->claim_delete(m2, a.log_id, 1, c1.rev));
    CHECK_RC(WP_ENOENT, m->ops->claim_get(m, a.log_id, 1, &g));
    CHECK_RC(WP_ENOENT, m->ops->claim_delete(m, a.log_id, 1, c1.rev));
    CHECK_RC(WP_ENOENT, m->ops->claim_delete(m, a.log_id, 1, 0));
    meta_claim c1b = mc_claim(a.log_id, 1, "ls-2", l2, 2);
    CHECK_OK(m->ops->claim_create(m, &c1b)); /* a new claim, a new generation */
    CHECK(c1b.rev > cb0.rev);
    CHECK_RC(WP_ECONFLICT, m->ops->claim_delete(m, a.log_id, 1, stale));
    CHECK_OK(m2->ops->claim_get(m2, a.log_id, 1, &g));
    CHECK(mc_claim_eq(&g, &c1b));
    CHECK_OK(m->ops->claim_delete(m, a.log_id, 1, 0)); /* 0: whatever its rev */
    CHECK_RC(WP_ENOENT, m2->ops->claim_get(m2, a.log_id, 1, &g));
    CHECK(mc_claims_are(m2, 0, (int64_t[]){a.log_id, 0, b.log_id, 0, b.log_id, 1}, 3));

    /* Deleting claims leaves the leases and the segments alone. */
    CHECK(mc_count_segs(m, a.log_id) == 3);
    CHECK_OK(m->ops->lease_keepalive(m, l1));
    CHECK_OK(m->ops->lease_revoke(m, l1));
    CHECK_OK(m->ops->lease_revoke(m, l2));
    CHECK(mc_claims_are(m2, 0, NULL, 0));
    mc_close(m2);
    mc_close(m);
}

TEST(mc_claim_bad_args)
{
    meta *m = mc_fresh(mc_arg);
    REQUIRE(m);
    meta_log l;
    REQUIRE(m->ops->log_create(m, "badclaims", 1, &l) == 0);
    REQUIRE(mc_make_segs(m, &l, 2));
    int64_t lease = 0;
    CHECK_OK(m->ops->lease_grant(m, 60000, &lease));
    meta_claim ok = mc_claim(l.log_id, 0, "ok", lease, 1), b, g;

    /* The longest node id and claimed_ms 0 are fine. */
    meta_claim lng = mc_claim(l.log_id, 1, "", lease, INT64_MAX);
    memset(lng.node_id, 'i', WP_NODE_ID_MAX);
    lng.node_id[WP_NODE_ID_MAX] = '\0';
    lng.claimed_ms = 0;
    CHECK_OK(m->ops->claim_create(m, &lng));
    CHECK_OK(m->ops->claim_get(m, l.log_id, 1, &g));
    CHECK(mc_claim_eq(&g, &lng));

    static const char *const bad_ids[] = {"", "a/b", "a b", "a:b", "caf\xc3\xa9", "x\n"};
    for (size_t i = 0; i < sizeof bad_ids / sizeof *bad_ids; i++) {
        b = ok;
        snprintf(b.node_id, sizeof b.node_id, "%s", bad_ids[i]);
        CHECK_RC(WP_EINVAL, m->ops->claim_create(m, &b));
        CHECK(strstr(wp_errmsg(), "node_id") != NULL);
    }
    b = ok;
    memset(b.node_id, 'i', sizeof b.node_id); /* unterminated: too long */
    CHECK_RC(WP_EINVAL, m->ops->claim_create(m, &b));
    CHECK(strstr(wp_errmsg(), "node_id") != NULL);

    static const struct {
        int64_t log_id, seg_id, lease_id, claimed_ms, attempt;
        const char *field;
    } bad[] = {
        {0, 0, 1, 0, 1, "log_id"},     {-1, 0, 1, 0, 1, "log_id"},  {1, -1, 1, 0, 1, "seg_id"},
        {1, 0, 0, 0, 1, "lease_id"},   {1, 0, -1, 0, 1, "lease_id"}, {1, 0, 1, -1, 1, "claimed_ms"},
        {1, 0, 1, 0, 0, "attempt"},    {1, 0, 1, 0, -1, "attempt"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        b = ok;
        b.log_id = bad[i].log_id == 1 ? l.log_id : bad[i].log_id;
        b.seg_id = bad[i].seg_id;
        b.lease_id = bad[i].lease_id == 1 ? lease : bad[i].lease_id;
        b.claimed_ms = bad[i].claimed_ms;
        b.attempt = bad[i].attempt;
        CHECK_RC(WP_EINVAL, m->ops->claim_create(m, &b));
        if (!strstr(wp_errmsg(), bad[i].field))
            fprintf(stderr, "  case %zu: '%s' does not name %s\n", i, wp_errmsg(), bad[i].field);
        CHECK(strstr(wp_errmsg(), bad[i].field) != NULL);
    }

    /* Bad keys and revs given to get, delete and list. */
    CHECK_RC(WP_EINVAL, m->ops->claim_get(m, 0, 0, &g));
    CHECK_RC(WP_EINVAL, m->ops->claim_get(m, -5, 0, &g));
    CHECK_RC(WP_EINVAL, m->ops->claim_get(m, l.log_id, -1, &g));
    CHECK_RC(WP_EINVAL, m->ops->claim_delete(m, 0, 0, 0));
    CHECK_RC(WP_EINVAL, m->ops->claim_delete(m, l.log_id, -1, 0));
    CHECK_RC(WP_EINVAL, m->ops->claim_delete(m, l.log_id, 1, -1));
    meta_claim *cs = (meta_claim *)1;
    size_t n = 7;
    CHECK_RC(WP_EINVAL, m->ops->claim_list(m, -1, &cs, &n));
    CHECK(cs == NULL && n == 0);

    /* Nothing bad was stored; the good one is unchanged. */
    CHECK(mc_claims_are(m, 0, (int64_t[]){l.log_id, 1}, 1));
    CHECK_OK(m->ops->claim_get(m, l.log_id, 1, &g));
    CHECK(mc_claim_eq(&g, &lng));
    CHECK_OK(m->ops->claim_create(m, &ok));
    CHECK_OK(m->ops->lease_revoke(m, lease));
    CHECK(mc_claims_are(m, l.log_id, NULL, 0));
    mc_close(m);
}

/* A claim lives exactly as long as its lease: revoked or expired, it is
 * gone for every handle and the segment can be claimed again, with a new,
 * larger generation; the old claimant's delete is then WP_ECONFLICT. */
TEST(mc_claim_lease)
{
    meta *m = mc_fresh(mc_arg);
    REQUIRE(m);
    meta *m2 = mc_again(mc_arg);
    if (!m2)
        mc_close(m);
    REQUIRE(m2);
    meta_log l;
    REQUIRE(m->ops->log_create(m, "leaseclaims", 1, &l) == 0);
    REQUIRE(mc_make_segs(m, &l, 4));
    meta_claim g;

    /* A revoked lease: create is WP_ENOENT and stores nothing. */
    int64_t gone = 0, la = 0, lb = 0;
    CHECK_OK(m->ops->lease_grant(m, 60000, &gone));
    CHECK_OK(m->ops->lease_revoke(m, gone));
    meta_claim c = mc_claim(l.log_id, 0, "ls-1", gone, 1);
    CHECK_RC(WP_ENOENT, m->ops->claim_create(m, &c));
    CHECK(strstr(wp_errmsg(), "lease") != NULL);
    CHECK_RC(WP_ENOENT, m->ops->claim_get(m, l.log_id, 0, &g));

    /* Revoke (from another handle) removes exactly that lease's claims. */
    CHECK_OK(m->ops->lease_grant(m, 60000, &la));
    CHECK_OK(m->ops->lease_grant(m, 60000, &lb));
    meta_claim ca0 = mc_claim(l.log_id, 0, "ls-1", la, 1);
    meta_claim ca1 = mc_claim(l.log_id, 1, "ls-1", la, 1);
    meta_claim cb2 = mc_claim(l.log_id, 2, "ls-2", lb, 1);
    CHECK_OK(m->ops->claim_create(m, &ca0));
    CHECK_OK(m->ops->claim_create(m, &ca1));
    CHECK_OK(m->ops->claim_create(m, &cb2));
    CHECK_OK(m2->ops->lease_revoke(m2, la));
    CHECK(mc_claims_are(m, l.log_id, (int64_t[]){l.log_id, 2}, 1));
    CHECK_RC(WP_ENOENT, m->ops->claim_get(m, l.log_id, 0, &g));
    CHECK_RC(WP_ENOENT, m->ops->claim_delete(m, l.log_id, 1, ca1.rev));
    meta_claim take = mc_claim(l.log_id, 0, "ls-2", lb, 2);
    CHECK_OK(m2->ops->claim_create(m2, &take));
    CHECK(take.rev > ca0.rev);

    /* Expiry: the claimant stops its keepalives; while the lease lives the
     * segment is taken, then the claim vanishes and another claimant takes
     * the segment over. */
    int64_t ls = 0;
    CHECK_OK(m->ops->lease_grant(m, mc_lease_ttl_ms, &ls));
    meta_claim eph = mc_claim(l.log_id, 3, "ls-3", ls, 1);
    CHECK_OK(m->ops->claim_create(m, &eph));
    meta_claim over = mc_claim(l.log_id, 3, "ls-2", lb, 2);
    CHECK_RC(WP_EEXIST, m2->ops->claim_create(m2, &over));
    CHECK_OK(m2->ops->claim_get(m2, l.log_id, 3, &g));
    CHECK(mc_claim_eq(&g, &eph));
    mc_sleep_ms(mc_lease_ttl_ms + mc_lease_slack_ms);
    CHECK_RC(WP_ENOENT, m->ops->claim_get(m, l.log_id, 3, &g));
    CHECK_RC(WP_ENOENT, m2->ops->claim_get(m2, l.log_id, 3, &g));
    CHECK(mc_claims_are(m2, l.log_id, (int64_t[]){l.log_id, 0, l.log_id, 2}, 2));
    CHECK_RC(WP_ENOENT, m->ops->claim_delete(m, l.log_id, 3, eph.rev));
    CHECK_OK(m2->ops->claim_create(m2, &over)); /* the takeover */
    CHECK(over.rev > eph.rev && over.rev > take.rev);
    CHECK_OK(m->ops->claim_get(m, l.log_id, 3, &g));
    CHECK(mc_claim_eq(&g, &over) && g.attempt == 2 && strcmp(g.node_id, "ls-2") == 0);
    /* The old claimant, late: its delete cannot remove the new claim, and
     * its expired lease cannot claim again. */
    CHECK_RC(WP_ECONFLICT, m->ops->claim_delete(m, l.log_id, 3, eph.rev));
    CHECK_OK(m2->ops->claim_get(m2, l.log_id, 3, &g));
    CHECK(mc_claim_eq(&g, &over));
    CHECK_RC(WP_ENOENT, m->ops->lease_keepalive(m, ls));
    CHECK_RC(WP_ENOENT, m->ops->claim_delete(m, l.log_id, 1, 0)); /* gone with la */
    meta_claim late = mc_claim(l.log_id, 1, "ls-3", ls, 1);
    CHECK_RC(WP_ENOENT, m->ops->claim_create(m, &late));
    CHECK_RC(WP_ENOENT, m->ops->claim_get(m, l.log_id, 1, &g));

    CHECK_OK(m->ops->lease_revoke(m, lb));
    CHECK(mc_claims_are(m2, 0, NULL, 0));
    mc_close(m2);
    mc_close(m);
}

/* log_delete removes every claim of the log; seg_delete the segment's
 * only (and not when its CAS fails). */
TEST(mc_claim_cascade)
{
    meta *m = mc_fresh(mc_arg);
    REQUIRE(m);
    meta_log l, keep, again;
    REQUIRE(m->ops->log_create(m, "doomedc", 1, &l) == 0);
    REQUIRE(m->ops->log_create(m, "keptc", 1, &keep) == 0);
    REQUIRE(mc_make_segs(m, &l, 3) && mc_make_segs(m, &keep, 3));
    int64_t lease = 0;
    CHECK_OK(m->ops->lease_grant(m, 60000, &lease));
    for (int64_t i = 0; i < 3; i++) {
        meta_claim c = mc_claim(l.log_id, i, "ls-1", lease, 1);
        CHECK_OK(m->ops->claim_create(m, &c));
        c = mc_claim(keep.log_id, i, "ls-1", lease, 1);
        CHECK_OK(m->ops->claim_create(m, &c));
    }
    meta_seg s1;
    CHECK_OK(m->ops->seg_get(m, keep.log_id, 1, &s1));
    CHECK_RC(WP_ECONFLICT, m->ops->seg_delete(m, keep.log_id, 1, s1.rev + 1000));
    CHECK(mc_claims_are(m, keep.log_id,
                        (int64_t[]){keep.log_id, 0, keep.log_id, 1, keep.log_id, 2}, 3));
    CHECK_OK(m->ops->seg_delete(m, keep.log_id, 1, s1.rev));
    CHECK(mc_claims_are(m, keep.log_id, (int64_t[]){keep.log_id, 0, keep.log_id, 2}, 2));
    CHECK_OK(m->ops->seg_delete(m, keep.log_id, 2, 0));
    CHECK(mc_claims_are(m, keep.log_id, (int64_t[]){keep.log_id, 0}, 1));
    meta_claim g;
    CHECK_RC(WP_ENOENT, m->ops->claim_get(m, keep.log_id, 2, &g));
    /* A segment deleted and made again starts unclaimed. */
    meta_seg s = mc_seg(keep.log_id, 2, 0);
    CHECK_OK(m->ops->seg_create(m, &keep, &s));
    CHECK_RC(WP_ENOENT, m->ops->claim_get(m, keep.log_id, 2, &g));

    CHECK_OK(m->ops->log_delete(m, "doomedc", l.rev));
    CHECK(mc_claims_are(m, l.log_id, NULL, 0));
    CHECK_RC(WP_ENOENT, m->ops->claim_get(m, l.log_id, 0, &g));
    CHECK_RC(WP_ENOENT, m->ops->claim_delete(m, l.log_id, 2, 0));
    meta_claim c = mc_claim(l.log_id, 0, "ls-1", lease, 1);
    CHECK_RC(WP_ENOENT, m->ops->claim_create(m, &c)); /* its segments are gone */
    CHECK(mc_claims_are(m, 0, (int64_t[]){keep.log_id, 0}, 1));
    CHECK_OK(m->ops->log_create(m, "doomedc", 1, &again));
    REQUIRE(mc_make_segs(m, &again, 1));
    CHECK(mc_claims_are(m, again.log_id, NULL, 0));
    CHECK_OK(m->ops->lease_revoke(m, lease));
    mc_close(m);
}

#define MC_CLAIM_ROUNDS 12

typedef struct {
    meta *h;
    int64_t log_id, lease, won[MC_CLAIM_ROUNDS], rev[MC_CLAIM_ROUNDS];
    int64_t exist, other;
    char node_id[16];
    pthread_barrier_t *start;
} mc_claimer;

static void *mc_claim_thread(void *p)
{
    mc_claimer *r = p;
    for (int i = 0; i < MC_CLAIM_ROUNDS; i++) {
        meta_claim c = mc_claim(r->log_id, i, r->node_id, r->lease, 1);
        pthread_barrier_wait(r->start);
        int rc = r->h->ops->claim_create(r->h, &c);
        r->won[i] = rc == 0;
        r->rev[i] = rc == 0 ? c.rev : 0;
        r->exist += rc == WP_EEXIST;
        r->other += rc != 0 && rc != WP_EEXIST;
        if (rc != 0 && rc != WP_EEXIST)
            fprintf(stderr, "  %s round %d: %s\n", r->node_id, i, wp_errmsg());
    }
    return NULL;
}

/* Threads on separate handles (two of them sharing one) claim the same
 * segments at the same moment: exactly one wins each, and the stored
 * claim is the winner's. */
TEST(mc_claim_race_threads)
{
    meta *h[MC_RACE_HANDLES] = {NULL};
    h[0] = mc_fresh(mc_arg);
    REQUIRE(h[0]);
    bool opened = true;
    for (int i = 1; i < MC_RACE_HANDLES; i++)
        opened = (h[i] = mc_again(mc_arg)) != NULL && opened;
    CHECK(opened);
    meta_log l;
    CHECK_OK(h[0]->ops->log_create(h[0], "claimrace", 1, &l));
    CHECK(mc_make_segs(h[0], &l, MC_CLAIM_ROUNDS));
    mc_claimer r[MC_RACE_THREADS];
    pthread_t t[MC_RACE_THREADS];
    pthread_barrier_t start;
    memset(r, 0, sizeof r);
    for (int i = 0; opened && i < MC_RACE_THREADS; i++) {
        r[i].h = h[i % MC_RACE_HANDLES];
        r[i].log_id = l.log_id;
        r[i].start = &start;
        snprintf(r[i].node_id, sizeof r[i].node_id, "ls-%d", i);
        CHECK_OK(r[i].h->ops->lease_grant(r[i].h, 60000, &r[i].lease));
    }
    int started = 0;
    if (opened && pthread_barrier_init(&start, NULL, MC_RACE_THREADS) == 0) {
        for (int i = 0; i < MC_RACE_THREADS; i++) {
            if (pthread_create(&t[i], NULL, mc_claim_thread, &r[i]) != 0)
                break;
            started++;
        }
        if (started < MC_RACE_THREADS) /* cannot happen in practice; never hang */
            fprintf(stderr, "  only %d threads started\n", started);
        REQUIRE(started == MC_RACE_THREADS);
        for (int i = 0; i < started; i++)
            pthread_join(t[i], NULL);
        pthread_barrier_destroy(&start);
    }
    CHECK(started == MC_RACE_THREADS);
    int64_t exist = 0, other = 0;
    for (int i = 0; i < started; i++) {
        exist += r[i].exist;
        other += r[i].other;
    }
    CHECK(other == 0);
    CHECK(exist == (int64_t)(MC_RACE_THREADS - 1) * MC_CLAIM_ROUNDS);
    for (int s = 0; started == MC_RACE_THREADS && s < MC_CLAIM_ROUNDS; s++) {
        int winners = 0, w = 0;
        for (int i = 0; i < MC_RACE_THREADS; i++)
            if (r[i].won[s]) {
                winners++;
                w = i;
            }
        CHECK(winners == 1);
        meta_claim g;
        CHECK_OK(h[1 % MC_RACE_HANDLES]->ops->claim_get(h[1 % MC_RACE_HANDLES], l.log_id, s, &g));
        if (winners == 1)
            CHECK(strcmp(g.node_id, r[w].node_id) == 0 && g.rev == r[w].rev[s] &&
                  g.lease_id == r[w].lease);
    }
    for (int i = 0; opened && i < MC_RACE_THREADS; i++)
        CHECK_OK(h[0]->ops->lease_revoke(h[0], r[i].lease));
    for (int i = 0; i < MC_RACE_HANDLES; i++)
        mc_close(h[i]);
}

/* Child: open a handle, grant a lease, report ready, wait for go, claim
 * segment seg_id as node `id`. Exit status: 0 won, 1 WP_EEXIST, 2 other
 * error, 3 could not open. The winner's claim outlives it (its lease). */
static void mc_claim_child(int64_t log_id, int64_t seg_id, const char *id, int ready_fd, int go_fd)
{
    meta *h = mc_again(mc_arg);
    char c = 'r';
    int64_t lease = 0;
    if (!h)
        _exit(3);
    if (h->ops->lease_grant(h, 60000, &lease) != 0 || write(ready_fd, &c, 1) != 1 ||
        read(go_fd, &c, 1) != 1)
        _exit(2);
    meta_claim cl = mc_claim(log_id, seg_id, id, lease, 1);
    int rc = h->ops->claim_create(h, &cl);
    h->ops->close(h);
    _exit(rc == 0 ? 0 : rc == WP_EEXIST ? 1 : 2);
}

/* Two processes claim the same segment at once: exactly one wins. */
TEST(mc_claim_race_processes)
{
    meta *m = mc_fresh(mc_arg);
    REQUIRE(m);
    meta_log l;
    int rc = m->ops->log_create(m, "claimprocs", 1, &l);
    bool made = rc == 0 && mc_make_segs(m, &l, MC_PROC_ROUNDS);
    mc_close(m); /* hold no handle across fork */
    REQUIRE(made);
    for (int round = 0; round < MC_PROC_ROUNDS; round++) {
        int ready[2], go[2];
        REQUIRE(pipe(ready) == 0);
        REQUIRE(pipe(go) == 0);
        fflush(NULL);
        pid_t pid[2];
        for (int i = 0; i < 2; i++) {
            pid[i] = fork();
            REQUIRE(pid[i] >= 0);
            if (pid[i] == 0) {
                close(ready[0]);
                close(go[1]);
                mc_claim_child(l.log_id, round, i ? "proc-1" : "proc-0", ready[1], go[0]);
            }
        }
        close(ready[1]);
        close(go[0]);
        char c;
        int n_ready = 0;
        for (int i = 0; i < 2; i++)
            n_ready += read(ready[0], &c, 1) == 1;
        CHECK(n_ready == 2);
        CHECK(write(go[1], "gg", 2) == 2);
        close(go[1]);
        close(ready[0]);
        int won = 0, lost = 0, winner = -1;
        for (int i = 0; i < 2; i++) {
            int st = 0;
            CHECK(waitpid(pid[i], &st, 0) == pid[i]);
            CHECK(WIFEXITED(st));
            if (WIFEXITED(st) && WEXITSTATUS(st) == 0) {
                won++;
                winner = i;
            } else if (WIFEXITED(st) && WEXITSTATUS(st) == 1) {
                lost++;
            } else {
                fprintf(stderr, "  round %d: child %d status 0x%x\n", round, i, st);
            }
        }
        CHECK(won == 1 && lost == 1);
        m = mc_again(mc_arg);
        REQUIRE(m);
        meta_claim g;
        CHECK_OK(m->ops->claim_get(m, l.log_id, round, &g));
        if (won == 1)
            CHECK(strcmp(g.node_id, winner ? "proc-1" : "proc-0") == 0);
        CHECK_OK(m->ops->lease_revoke(m, g.lease_id)); /* the child's lease */
        mc_close(m);
    }
}

/* ---- generic records (docs/metadata.md §3.7) --------------------------- */

/* kv_get(key) holds exactly value[len] (and a NUL after it). */
static bool mc_kv_is(meta *m, const char *key, const void *value, size_t len)
{
    meta_kv g;
    int rc = m->ops->kv_get(m, key, &g);
    if (rc != 0) {
        fprintf(stderr, "  kv_get %s: %s\n", key, wp_errmsg());
        return false;
    }
    bool ok = strcmp(g.key, key) == 0 && g.len == len && g.value && g.value[len] == '\0' &&
              (len == 0 || memcmp(g.value, value, len) == 0);
    if (!ok)
        fprintf(stderr, "  kv_get %s: key '%s', %zu bytes, want %zu\n", key, g.key, g.len, len);
    meta_kv_free(&g);
    return ok;
}

/* kv_list(prefix) returns exactly the keys want, in that order. */
static bool mc_kv_list_is(meta *m, const char *prefix, const char *const *want, size_t n_want)
{
    meta_kv *kvs = NULL;
    size_t n = 0;
    int rc = m->ops->kv_list(m, prefix, &kvs, &n);
    if (rc != 0) {
        fprintf(stderr, "  kv_list(%s): %s\n", prefix ? prefix : "NULL", wp_errmsg());
        return false;
    }
    bool ok = n == n_want && (n > 0 || kvs == NULL);
    for (size_t i = 0; ok && i < n; i++)
        ok = strcmp(kvs[i].key, want[i]) == 0;
    if (!ok) {
        fprintf(stderr, "  kv_list(%s) returned %zu:", prefix ? prefix : "NULL", n);
        for (size_t i = 0; i < n; i++)
            fprintf(stderr, " %s", kvs[i].key);
        fprintf(stderr, "\n");
    }
    meta_kv_free_list(kvs, n);
    return ok;
}

static int mc_kv_put_str(meta *m, const char *key, const char *value, int64_t expect_rev,
                         int64_t lease_id, int64_t *rev)
{
    return m->ops->kv_put(m, key, value, strlen(value), expect_rev, lease_id, rev);
}

/* Create-only, upsert, compare-and-swap and delete, each success and
 * each error; revisions from the store's one counter; another handle
 * sees the same records. */
TEST(mc_kv_crud)
{
    meta *m = mc_fresh(mc_arg);
    REQUIRE(m);
    meta_log l;
    REQUIRE(m->ops->log_create(m, "kvlog", 1, &l) == 0);
    meta_kv g;
    int64_t r1 = 0, r2 = 0, r3 = 0, r4 = 0, stale = 0;

    /* Create only if absent: once, then WP_EEXIST and nothing stored. */
    CHECK_RC(WP_ENOENT, m->ops->kv_get(m, "stream/coord", &g));
    CHECK_OK(mc_kv_put_str(m, "stream/coord", "one", 0, 0, &r1));
    CHECK(r1 > l.rev); /* the store's single counter */
    memset(&g, 0xab, sizeof g);
    CHECK_OK(m->ops->kv_get(m, "stream/coord", &g));
    CHECK(strcmp(g.key, "stream/coord") == 0 && g.len == 3 && memcmp(g.value, "one", 4) == 0);
    CHECK(g.lease_id == 0 && g.rev == r1 && g.create_rev == r1);
    meta_kv_free(&g);
    CHECK(g.value == NULL);
    int64_t untouched = 4242;
    CHECK_RC(WP_EEXIST, mc_kv_put_str(m, "stream/coord", "two", 0, 0, &untouched));
    CHECK(untouched == 4242);
    CHECK(mc_kv_is(m, "stream/coord", "one", 3));

    /* Upsert: replaces, a new rev, the same create_rev. rev_out may be NULL. */
    CHECK_OK(mc_kv_put_str(m, "stream/coord", "three", -1, 0, &r2));
    CHECK(r2 > r1);
    CHECK_OK(m->ops->kv_get(m, "stream/coord", &g));
    CHECK(g.rev == r2 && g.create_rev == r1 && g.len == 5);
    meta_kv_free(&g);
    CHECK_OK(mc_kv_put_str(m, "up/new", "x", -1, 0, NULL)); /* upsert creates */
    CHECK_OK(m->ops->kv_get(m, "up/new", &g));
    CHECK(g.rev > r2 && g.create_rev == g.rev);
    meta_kv_free(&g);

    /* Compare-and-swap on rev. */
    CHECK_OK(mc_kv_put_str(m, "stream/coord", "four", r2, 0, &r3));
    CHECK(r3 > r2);
    stale = r2;
    untouched = 4242;
    CHECK_RC(WP_ECONFLICT, mc_kv_put_str(m, "stream/coord", "stale", stale, 0, &untouched));
    CHECK(untouched == 4242);
    CHECK(strstr(wp_errmsg(), "stream/coord") != NULL);
    CHECK(mc_kv_is(m, "stream/coord", "four", 4));
    CHECK_RC(WP_ENOENT, mc_kv_put_str(m, "stream/absent", "x", r3, 0, NULL));
    CHECK_RC(WP_ENOENT, m->ops->kv_get(m, "stream/absent", &g));
    CHECK_OK(m->ops->kv_get(m, "stream/coord", &g));
    CHECK(g.rev == r3 && g.create_rev == r1);
    meta_kv_free(&g);

    /* Another handle sees the same record, and CASes from what it read. */
    meta *m2 = mc_again(mc_arg);
    if (!m2)
        mc_close(m);
    REQUIRE(m2);
    CHECK(mc_kv_is(m2, "stream/coord", "four", 4));
    CHECK_OK(mc_kv_put_str(m2, "stream/coord", "five", r3, 0, &r4));
    CHECK(r4 > r3);
    CHECK_RC(WP_ECONFLICT, mc_kv_put_str(m, "stream/coord", "six", r3, 0, NULL));

    /* Delete: a stale rev leaves the record alone; absent is WP_ENOENT. */
    CHECK_RC(WP_ECONFLICT, m->ops->kv_delete(m, "stream/coord", r3));
    CHECK(mc_kv_is(m2, "stream/coord", "five", 4));
    CHECK_OK(m->ops->kv_delete(m, "stream/coord", r4));
    CHECK_RC(WP_ENOENT, m2->ops->kv_get(m2, "stream/coord", &g));
    CHECK_RC(WP_ENOENT, m->ops->kv_delete(m, "stream/coord", r4));
    CHECK_RC(WP_ENOENT, m->ops->kv_delete(m, "stream/coord", 0));
    CHECK_RC(WP_ENOENT, mc_kv_put_str(m, "stream/coord", "x", r4, 0, NULL));
    CHECK_OK(m->ops->kv_delete(m2, "up/new", 0)); /* 0: whatever its rev */
    CHECK_RC(WP_ENOENT, m->ops->kv_get(m, "up/new", &g));

    /* Created again after a delete: a new incarnation, a new create_rev. */
    int64_t r5 = 0;
    CHECK_OK(mc_kv_put_str(m, "stream/coord", "again", 0, 0, &r5));
    CHECK_OK(m2->ops->kv_get(m2, "stream/coord", &g));
    CHECK(g.rev == r5 && g.create_rev == r5 && r5 > r4);
    meta_kv_free(&g);

    /* Records are their own namespace: a log, a setting or a node with a
     * name like a record's key neither shows nor clashes. */
    CHECK_OK(m->ops->setting_put(m, "kv", "v"));
    CHECK_OK(m->ops->log_create(m, "stream/coord", 1, &l));
    CHECK(mc_kv_list_is(m, "", (const char *const[]){"stream/coord"}, 1));
    CHECK(mc_kv_is(m, "stream/coord", "again", 5));
    CHECK_OK(m->ops->log_delete(m, "stream/coord", 0));
    CHECK(mc_kv_is(m, "stream/coord", "again", 5));
    mc_close(m2);
    mc_close(m);
}

/* Values are arbitrary bytes: zeros, every byte value, empty, the
 * largest; one byte more is WP_EINVAL and stores nothing. */
TEST(mc_kv_values)
{
    meta *m = mc_fresh(mc_arg);
    REQUIRE(m);
    uint8_t bytes[512];
    for (size_t i = 0; i < sizeof bytes; i++)
        bytes[i] = (uint8_t)(i * 7 + (i >> 8)); /* every byte value, zeros too */
    bytes[0] = bytes[10] = bytes[511] = 0;
    int64_t rev = 0;
    CHECK_OK(m->ops->kv_put(m, "bin/a", bytes, sizeof bytes, 0, 0, &rev));
    CHECK(mc_kv_is(m, "bin/a", bytes, sizeof bytes));
    CHECK_OK(m->ops->kv_put(m, "bin/zero", "\0\0\0", 3, 0, 0, NULL));
    CHECK(mc_kv_is(m, "bin/zero", "\0\0\0", 3));
    CHECK_OK(m->ops->kv_put(m, "bin/empty", NULL, 0, 0, 0, NULL));
    CHECK(mc_kv_is(m, "bin/empty", "", 0));
    CHECK_OK(m->ops->kv_put(m, "bin/empty2", "", 0, -1, 0, NULL));
    CHECK(mc_kv_is(m, "bin/empty2", "", 0));

    uint8_t *big = malloc(META_KV_VALUE_MAX + 1);
    REQUIRE(big);
    uint32_t x = 12345;
    for (size_t i = 0; i < META_KV_VALUE_MAX + 1; i++) {
        x = x * 1103515245u + 12345u;
        big[i] = (uint8_t)(x >> 16);
    }
    CHECK_OK(m->ops->kv_put(m, "bin/max", big, META_KV_VALUE_MAX, 0, 0, &rev));
    CHECK(mc_kv_is(m, "bin/max", big, META_KV_VALUE_MAX));
    CHECK_RC(WP_EINVAL, m->ops->kv_put(m, "bin/over", big, META_KV_VALUE_MAX + 1, -1, 0, NULL));
    CHECK(strstr(wp_errmsg(), "value") != NULL);
    CHECK_RC(WP_EINVAL, m->ops->kv_put(m, "bin/max", big, META_KV_VALUE_MAX + 1, rev, 0, NULL));
    CHECK(mc_kv_is(m, "bin/max", big, META_KV_VALUE_MAX)); /* unchanged */
    CHECK_RC(WP_EINVAL, m->ops->kv_put(m, "bin/null", NULL, 1, -1, 0, NULL));
    CHECK(strstr(wp_errmsg(), "value") != NULL);
    meta_kv g;
    CHECK_RC(WP_ENOENT, m->ops->kv_get(m, "bin/over", &g));
    CHECK_RC(WP_ENOENT, m->ops->kv_get(m, "bin/null", &g));

    /* The list returns the same bytes. */
    meta_kv *kvs = NULL;
    size_t n = 0;
    CHECK_OK(m->ops->kv_list(m, "bin/", &kvs, &n));
    CHECK(n == 5);
    if (n == 5) {
        CHECK(strcmp(kvs[0].key, "bin/a") == 0 && kvs[0].len == sizeof bytes &&
              memcmp(kvs[0].value, bytes, sizeof bytes) == 0);
        CHECK(strcmp(kvs[1].key, "bin/empty") == 0 && kvs[1].len == 0 && kvs[1].value &&
              kvs[1].value[0] == '\0');
        CHECK(strcmp(kvs[3].key, "bin/max") == 0 && kvs[3].len == META_KV_VALUE_MAX &&
              memcmp(kvs[3].value, big, META_KV_VALUE_MAX) == 0 && kvs[3].rev == rev);
        CHECK(strcmp(kvs[4].key, "bin/zero") == 0 && kvs[4].len == 3 &&
              memcmp(kvs[4].value, "\0\0\0", 3) == 0);
    }
    meta_kv_free_list(kvs, n);
    free(big);
    mc_close(m);
}

/* Keys, prefixes and the other arguments are checked: WP_EINVAL naming
 * the argument, and nothing stored. */
TEST(mc_kv_bad_args)
{
    meta *m = mc_fresh(mc_arg);
    REQUIRE(m);
    char longest[META_KV_KEY_MAX + 2];
    memset(longest, 'k', sizeof longest);
    longest[META_KV_KEY_MAX] = '\0';
    static const char *const good[] = {"a", "A-Z_a.z:0/9", "-", ".", ":", "_", "a/b/c", "..",
                                       "x:y"};
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
        CHECK_OK(mc_kv_put_str(m, good[i], "v", 0, 0, NULL));
        CHECK(mc_kv_is(m, good[i], "v", 1));
    }
    CHECK_OK(mc_kv_put_str(m, longest, "v", 0, 0, NULL));
    CHECK(mc_kv_is(m, longest, "v", 1));
    CHECK_OK(m->ops->kv_delete(m, longest, 0));

    static const char *const bad[] = {"", "/a", "a/", "/", "a//b", "a b", "a\n", "caf\xc3\xa9",
                                      "a*", "a%b", "a?b", "a\\b", "a+b", "~", "a\x7f"};
    meta_kv g;
    meta_kv *kvs = (meta_kv *)1;
    size_t n = 7;
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        CHECK_RC(WP_EINVAL, mc_kv_put_str(m, bad[i], "v", -1, 0, NULL));
        CHECK(strstr(wp_errmsg(), "key") != NULL);
        CHECK_RC(WP_EINVAL, m->ops->kv_get(m, bad[i], &g));
        CHECK(strstr(wp_errmsg(), "key") != NULL);
        CHECK_RC(WP_EINVAL, m->ops->kv_delete(m, bad[i], 0));
        CHECK(strstr(wp_errmsg(), "key") != NULL);
    }
    longest[META_KV_KEY_MAX] = 'k'; /* one byte too long */
    longest[META_KV_KEY_MAX + 1] = '\0';
    CHECK_RC(WP_EINVAL, mc_kv_put_str(m, longest, "v", -1, 0, NULL));
    CHECK(strstr(wp_errmsg(), "key") != NULL);
    CHECK_RC(WP_EINVAL, m->ops->kv_get(m, longest, &g));
    CHECK_RC(WP_EINVAL, mc_kv_put_str(m, NULL, "v", -1, 0, NULL));
    CHECK_RC(WP_EINVAL, m->ops->kv_get(m, NULL, &g));
    CHECK_RC(WP_EINVAL, m->ops->kv_delete(m, NULL, 0));

    /* Prefixes: like keys, but empty and a trailing '/' are fine. */
    static const char *const bad_prefix[] = {"/a", "/", "a//", "a b", "a*", "\xc3\xa9"};
    for (size_t i = 0; i < sizeof bad_prefix / sizeof *bad_prefix; i++) {
        kvs = (meta_kv *)1;
        n = 7;
        CHECK_RC(WP_EINVAL, m->ops->kv_list(m, bad_prefix[i], &kvs, &n));
        CHECK(strstr(wp_errmsg(), "prefix") != NULL);
        CHECK(kvs == NULL && n == 0);
    }
    CHECK_RC(WP_EINVAL, m->ops->kv_list(m, longest, &kvs, &n));
    CHECK(strstr(wp_errmsg(), "prefix") != NULL);
    CHECK(mc_kv_list_is(m, "a/", (const char *const[]){"a/b/c"}, 1));
    CHECK(mc_kv_list_is(m, "a/b/", (const char *const[]){"a/b/c"}, 1));

    /* expect_rev, lease_id. */
    CHECK_RC(WP_EINVAL, mc_kv_put_str(m, "a", "v", -2, 0, NULL));
    CHECK(strstr(wp_errmsg(), "expect_rev") != NULL);
    CHECK_RC(WP_EINVAL, mc_kv_put_str(m, "a", "v", INT64_MIN, 0, NULL));
    CHECK(strstr(wp_errmsg(), "expect_rev") != NULL);
    CHECK_RC(WP_EINVAL, mc_kv_put_str(m, "new", "v", 0, -1, NULL));
    CHECK(strstr(wp_errmsg(), "lease_id") != NULL);
    CHECK_RC(WP_EINVAL, m->ops->kv_delete(m, "a", -1));
    CHECK(strstr(wp_errmsg(), "expect_rev") != NULL);
    CHECK_RC(WP_ENOENT, m->ops->kv_get(m, "new", &g));
    CHECK(mc_kv_is(m, "a", "v", 1));

    /* A watch checks its prefix too (where the store has watches). */
    if (m->ops->kv_watch) {
        meta_watch *w = NULL;
        CHECK_RC(WP_EINVAL, m->ops->kv_watch(m, "/a", NULL, NULL, NULL, &w));
        CHECK(strstr(wp_errmsg(), "prefix") != NULL);
        CHECK(w == NULL);
    }
    CHECK(mc_kv_list_is(m, "",
                        (const char *const[]){"-", ".", "..", ":", "A-Z_a.z:0/9", "_", "a",
                                              "a/b/c", "x:y"},
                        9));
    mc_close(m);
}

/* A prefix is a plain byte prefix; "" lists every record; the list is
 * sorted bytewise and holds each record's fields. */
/* kv_list's byte bound: the values it would return add up to more than
 * META_KV_LIST_BYTES_MAX (4097 values of META_KV_VALUE_MAX bytes): it
 * fails with WP_ETOOBIG naming the bound, returns nothing, and the
 * records are intact (a narrower prefix lists, a record reads back). */
TEST(mc_kv_list_bytes_bound)
{
    meta *m = mc_fresh(mc_arg);
    REQUIRE(m);
    enum { K = META_KV_LIST_BYTES_MAX / META_KV_VALUE_MAX + 1 };
    uint8_t *v = malloc(META_KV_VALUE_MAX);
    if (!v)
        mc_close(m);
    REQUIRE(v);
    int rc = WP_OK;
    for (int i = 0; i < K && rc == WP_OK; i++) {
        char key[32];
        snprintf(key, sizeof key, "big/%05d", i);
        memset(v, 'a' + i % 26, META_KV_VALUE_MAX);
        rc = m->ops->kv_put(m, key, v, META_KV_VALUE_MAX, -1, 0, NULL);
    }
    CHECK_OK(rc);
    meta_kv *kvs = (meta_kv *)1;
    size_t n = 7;
    CHECK_RC(WP_ETOOBIG, m->ops->kv_list(m, "big/", &kvs, &n));
    char want[32];
    snprintf(want, sizeof want, "%d bytes", META_KV_LIST_BYTES_MAX);
    CHECK(strstr(wp_errmsg(), want) != NULL);
    CHECK(kvs == NULL && n == 0);
    /* Under the bound: the first 10 (big/0000*), whole. */
    kvs = NULL;
    CHECK_OK(m->ops->kv_list(m, "big/0000", &kvs, &n));
    CHECK(n == 10);
    for (size_t i = 0; i < n && n == 10; i++)
        CHECK(kvs[i].len == META_KV_VALUE_MAX && kvs[i].value[0] == 'a' + (int)i % 26 &&
              kvs[i].value[META_KV_VALUE_MAX - 1] == 'a' + (int)i % 26);
    meta_kv_free_list(kvs, n);
    meta_kv g;
    char last[32];
    snprintf(last, sizeof last, "big/%05d", K - 1);
    CHECK_OK(m->ops->kv_get(m, last, &g));
    CHECK(g.len == META_KV_VALUE_MAX && g.value[0] == 'a' + (K - 1) % 26);
    meta_kv_free(&g);
    free(v);
    mc_close(m);
}

TEST(mc_kv_list)
{
    meta *m = mc_fresh(mc_arg);
    REQUIRE(m);
    static const char *const keys[] = {"a/bc/x", "a/b", "b", "a/b/d", "a.b", "a/bc", "A",
                                       "a/b/c", "a", "a-b", "a/b0", "a:b"};
    int64_t revs[sizeof keys / sizeof *keys];
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++)
        CHECK_OK(mc_kv_put_str(m, keys[i], keys[i], 0, 0, &revs[i]));
    static const char *const all[] = {"A",     "a",     "a-b",  "a.b",  "a/b",    "a/b/c",
                                      "a/b/d", "a/b0", "a/bc", "a/bc/x", "a:b", "b"};
    CHECK(mc_kv_list_is(m, "", all, 12));
    CHECK(mc_kv_list_is(m, NULL, all, 12));
    /* "a/b" is a byte prefix: it lists a/b0, a/bc and a/bc/x too ... */
    CHECK(mc_kv_list_is(m, "a/b",
                        (const char *const[]){"a/b", "a/b/c", "a/b/d", "a/b0", "a/bc", "a/bc/x"},
                        6));
    /* ... while "a/b/" is the directory. */
    CHECK(mc_kv_list_is(m, "a/b/", (const char *const[]){"a/b/c", "a/b/d"}, 2));
    CHECK(mc_kv_list_is(m, "a/bc/", (const char *const[]){"a/bc/x"}, 1));
    CHECK(mc_kv_list_is(m, "a", all + 1, 10));
    CHECK(mc_kv_list_is(m, "b", (const char *const[]){"b"}, 1));
    CHECK(mc_kv_list_is(m, "a/b/c", (const char *const[]){"a/b/c"}, 1));
    CHECK(mc_kv_list_is(m, "zz", NULL, 0));
    CHECK(mc_kv_list_is(m, "a/b/c/", NULL, 0));
    CHECK(mc_kv_list_is(m, "B", NULL, 0));

    /* Each listed record carries its value, lease and revisions. */
    meta_kv *kvs = NULL;
    size_t n = 0;
    CHECK_OK(m->ops->kv_list(m, "", &kvs, &n));
    for (size_t i = 0; n == 12 && i < n; i++) {
        size_t j = 0;
        while (strcmp(keys[j], kvs[i].key) != 0)
            j++;
        CHECK(kvs[i].len == strlen(keys[j]) && memcmp(kvs[i].value, keys[j], kvs[i].len) == 0);
        CHECK(kvs[i].value[kvs[i].len] == '\0');
        CHECK(kvs[i].rev == revs[j] && kvs[i].create_rev == revs[j] && kvs[i].lease_id == 0);
    }
    meta_kv_free_list(kvs, n);

    /* Deletions and other stores' records: another handle lists the same. */
    CHECK_OK(m->ops->kv_delete(m, "a/b/c", 0));
    meta *m2 = mc_again(mc_arg);
    if (!m2)
        mc_close(m);
    REQUIRE(m2);
    CHECK(mc_kv_list_is(m2, "a/b/", (const char *const[]){"a/b/d"}, 1));
    mc_close(m2);
    mc_close(m);
}

/* A record on a lease vanishes with it, exactly like node records and
 * claims: revoked (from any handle) or expired; a put on a gone lease is
 * WP_ENOENT; an update attaches, moves or detaches the lease. */
TEST(mc_kv_lease)
{
    meta *m = mc_fresh(mc_arg);
    REQUIRE(m);
    meta *m2 = mc_again(mc_arg);
    if (!m2)
        mc_close(m);
    REQUIRE(m2);
    meta_kv g;
    int64_t la = 0, lb = 0, gone = 0, rev = 0;
    CHECK_OK(m->ops->lease_grant(m, 60000, &la));
    CHECK_OK(m->ops->lease_grant(m, 60000, &lb));
    CHECK_OK(m->ops->lease_grant(m, 60000, &gone));
    CHECK_OK(m->ops->lease_revoke(m, gone));

    /* A gone lease: WP_ENOENT naming it, nothing stored (every mode). */
    CHECK_RC(WP_ENOENT, mc_kv_put_str(m, "l/x", "v", 0, gone, NULL));
    CHECK(strstr(wp_errmsg(), "lease") != NULL);
    CHECK_RC(WP_ENOENT, mc_kv_put_str(m, "l/x", "v", -1, gone, NULL));
    CHECK_RC(WP_ENOENT, m->ops->kv_get(m, "l/x", &g));

    CHECK_OK(mc_kv_put_str(m, "l/a1", "a", 0, la, &rev));
    CHECK_OK(mc_kv_put_str(m, "l/a2", "a", -1, la, NULL));
    CHECK_OK(mc_kv_put_str(m, "l/b", "b", 0, lb, NULL));
    CHECK_OK(mc_kv_put_str(m, "l/none", "n", 0, 0, NULL));
    CHECK_OK(m->ops->kv_get(m2, "l/a1", &g));
    CHECK(g.lease_id == la && g.rev == rev);
    meta_kv_free(&g);
    /* A CAS on a gone lease: the compare first (a stale rev is still
     * WP_ECONFLICT), then the lease (WP_ENOENT), and the record stays. */
    CHECK_RC(WP_ECONFLICT, mc_kv_put_str(m, "l/a1", "x", rev + 1000, gone, NULL));
    CHECK_RC(WP_EEXIST, mc_kv_put_str(m, "l/a1", "x", 0, gone, NULL));
    CHECK_RC(WP_ENOENT, mc_kv_put_str(m, "l/a1", "x", rev, gone, NULL));
    CHECK(mc_kv_is(m, "l/a1", "a", 1));

    /* Move l/a2 from la to lb, and detach l/b from lb. */
    CHECK_OK(mc_kv_put_str(m, "l/a2", "moved", -1, lb, NULL));
    CHECK_OK(m->ops->kv_get(m, "l/b", &g));
    CHECK_OK(mc_kv_put_str(m, "l/b", "kept", g.rev, 0, NULL));
    meta_kv_free(&g);
    CHECK_OK(m->ops->kv_get(m, "l/b", &g));
    CHECK(g.lease_id == 0);
    meta_kv_free(&g);

    /* Revoke from another handle: exactly la's records go. */
    CHECK_OK(m2->ops->lease_revoke(m2, la));
    CHECK(mc_kv_list_is(m, "l/", (const char *const[]){"l/a2", "l/b", "l/none"}, 3));
    CHECK_RC(WP_ENOENT, m->ops->kv_get(m, "l/a1", &g));
    CHECK_RC(WP_ENOENT, m->ops->kv_delete(m, "l/a1", 0));
    CHECK_RC(WP_ENOENT, mc_kv_put_str(m, "l/a1", "x", rev, 0, NULL));
    CHECK_OK(m2->ops->lease_revoke(m2, lb));
    CHECK(mc_kv_list_is(m, "l/", (const char *const[]){"l/b", "l/none"}, 2));
    CHECK(mc_kv_is(m2, "l/b", "kept", 4));

    /* Expiry (the election): the holder stops its keepalives; while the
     * lease lives the create-only put of a contender fails, then the
     * record vanishes for every handle and the contender's succeeds. */
    int64_t ls = 0, lc = 0, r1 = 0, r2 = 0;
    CHECK_OK(m->ops->lease_grant(m, mc_lease_ttl_ms, &ls));
    CHECK_OK(m2->ops->lease_grant(m2, 60000, &lc));
    CHECK_OK(mc_kv_put_str(m, "stream/coord", "node-1", 0, ls, &r1));
    CHECK_RC(WP_EEXIST, mc_kv_put_str(m2, "stream/coord", "node-2", 0, lc, NULL));
    CHECK(mc_kv_is(m2, "stream/coord", "node-1", 6));
    mc_sleep_ms(mc_lease_ttl_ms + mc_lease_slack_ms);
    CHECK_RC(WP_ENOENT, m->ops->kv_get(m, "stream/coord", &g));
    CHECK_RC(WP_ENOENT, m2->ops->kv_get(m2, "stream/coord", &g));
    CHECK(mc_kv_list_is(m2, "stream/", NULL, 0));
    CHECK_RC(WP_ENOENT, m->ops->kv_delete(m, "stream/coord", r1));
    CHECK_RC(WP_ENOENT, mc_kv_put_str(m, "stream/coord", "node-1", r1, ls, NULL));
    CHECK_OK(mc_kv_put_str(m2, "stream/coord", "node-2", 0, lc, &r2)); /* the takeover */
    CHECK_OK(m->ops->kv_get(m, "stream/coord", &g));
    CHECK(g.create_rev == r2 && r2 > r1 && g.lease_id == lc);
    meta_kv_free(&g);
    /* The old holder, late: its lease is gone, its CAS and delete fail. */
    CHECK_RC(WP_ENOENT, m->ops->lease_keepalive(m, ls));
    CHECK_RC(WP_ENOENT, mc_kv_put_str(m, "stream/other", "x", -1, ls, NULL));
    CHECK_RC(WP_ECONFLICT, mc_kv_put_str(m, "stream/coord", "node-1", r1, 0, NULL));
    CHECK_RC(WP_ECONFLICT, m->ops->kv_delete(m, "stream/coord", r1));
    CHECK(mc_kv_is(m, "stream/coord", "node-2", 6));
    CHECK_OK(m->ops->lease_revoke(m, lc));
    CHECK(mc_kv_list_is(m, "stream/", NULL, 0));
    mc_close(m2);
    mc_close(m);
}

#define MC_KV_ITERS 15

typedef struct {
    meta *h;
    int64_t ok, conflict, other, won;
    pthread_barrier_t *start;
} mc_kv_racer;

/* Read, CAS-increment a counter record; then race for one create-only key. */
static void *mc_kv_race_thread(void *p)
{
    mc_kv_racer *r = p;
    for (int i = 0; i < MC_KV_ITERS; i++) {
        meta_kv g;
        int rc = r->h->ops->kv_get(r->h, "race/counter", &g);
        if (rc == 0) {
            char v[32];
            long long c = strtoll((const char *)g.value, NULL, 10);
            snprintf(v, sizeof v, "%lld", c + 1);
            rc = mc_kv_put_str(r->h, "race/counter", v, g.rev, 0, NULL);
            meta_kv_free(&g);
        }
        r->ok += rc == 0;
        r->conflict += rc == WP_ECONFLICT;
        r->other += rc != 0 && rc != WP_ECONFLICT;
        if (rc != 0 && rc != WP_ECONFLICT)
            fprintf(stderr, "  kv race: %s\n", wp_errmsg());
    }
    pthread_barrier_wait(r->start);
    int rc = mc_kv_put_str(r->h, "race/leader", "me", 0, 0, NULL);
    r->won = rc == 0;
    r->other += rc != 0 && rc != WP_EEXIST;
    return NULL;
}

/* Threads on separate handles: no lost update, one creator. */
TEST(mc_kv_race_threads)
{
    meta *h[MC_RACE_HANDLES] = {NULL};
    h[0] = mc_fresh(mc_arg);
    REQUIRE(h[0]);
    bool opened = true;
    for (int i = 1; i < MC_RACE_HANDLES; i++)
        opened = (h[i] = mc_again(mc_arg)) != NULL && opened;
    CHECK(opened);
    CHECK_OK(mc_kv_put_str(h[0], "race/counter", "0", 0, 0, NULL));
    mc_kv_racer r[MC_RACE_THREADS];
    pthread_t t[MC_RACE_THREADS];
    pthread_barrier_t start;
    memset(r, 0, sizeof r);
    int started = 0;
    if (opened && pthread_barrier_init(&start, NULL, MC_RACE_THREADS) == 0) {
        for (int i = 0; i < MC_RACE_THREADS; i++) {
            r[i].h = h[i % MC_RACE_HANDLES];
            r[i].start = &start;
            if (pthread_create(&t[i], NULL, mc_kv_race_thread, &r[i]) != 0)
                break;
            started++;
        }
        REQUIRE(started == MC_RACE_THREADS); /* cannot fail in practice; never hang */
        for (int i = 0; i < started; i++)
            pthread_join(t[i], NULL);
        pthread_barrier_destroy(&start);
    }
    int64_t ok = 0, conflict = 0, other = 0, won = 0;
    for (int i = 0; i < started; i++) {
        ok += r[i].ok;
        conflict += r[i].conflict;
        other += r[i].other;
        won += r[i].won;
    }
    if (started == MC_RACE_THREADS) {
        CHECK(other == 0);
        CHECK(ok + conflict == (int64_t)MC_RACE_THREADS * MC_KV_ITERS);
        CHECK(ok >= MC_KV_ITERS);
        char want[32];
        snprintf(want, sizeof want, "%lld", (long long)ok);
        CHECK(mc_kv_is(h[0], "race/counter", want, strlen(want)));
        CHECK(won == 1);
    }
    for (int i = 0; i < MC_RACE_HANDLES; i++)
        mc_close(h[i]);
}

typedef struct {
    pthread_mutex_t mu;
    int changed, failed;
} mc_kv_watched;

static void mc_kv_on_change(void *arg)
{
    mc_kv_watched *w = arg;
    pthread_mutex_lock(&w->mu);
    w->changed++;
    pthread_mutex_unlock(&w->mu);
}

static void mc_kv_on_fail(void *arg, int rc, const char *msg)
{
    mc_kv_watched *w = arg;
    fprintf(stderr, "  kv watch failed: %d %s\n", rc, msg);
    pthread_mutex_lock(&w->mu);
    w->failed++;
    pthread_mutex_unlock(&w->mu);
}

static int mc_kv_changes(mc_kv_watched *w)
{
    pthread_mutex_lock(&w->mu);
    int n = w->changed;
    pthread_mutex_unlock(&w->mu);
    return n;
}

/* Waits up to 5 s until the watch has seen more than `than` changes. */
static bool mc_kv_wait(mc_kv_watched *w, int than)
{
    for (int64_t end = mc_mono_ms() + 5000; mc_mono_ms() < end; mc_sleep_ms(5))
        if (mc_kv_changes(w) > than)
            return true;
    return false;
}

/* kv_watch (stores that have it): fires after puts and deletes under its
 * prefix, from any handle, in place when the call returns, and not for
 * records outside the prefix (a byte prefix: "w/" is not "w" or "w2"). */
TEST(mc_kv_watch)
{
    meta *m = mc_fresh(mc_arg);
    REQUIRE(m);
    if (!m->ops->kv_watch) { /* SQLite: callers poll */
        mc_close(m);
        return;
    }
    meta *m2 = mc_again(mc_arg);
    if (!m2)
        mc_close(m);
    REQUIRE(m2);
    mc_kv_watched seen = {.mu = PTHREAD_MUTEX_INITIALIZER}, all = {.mu = PTHREAD_MUTEX_INITIALIZER};
    meta_watch *w = NULL, *wall = NULL;
    CHECK_OK(m->ops->kv_watch(m, "w/", mc_kv_on_change, mc_kv_on_fail, &seen, &w));
    CHECK_OK(m->ops->kv_watch(m, "", mc_kv_on_change, NULL, &all, &wall));
    REQUIRE(w && wall);
    int64_t rev = 0;
    /* A put right after the call is seen (the watch is in place). */
    CHECK_OK(mc_kv_put_str(m2, "w/a", "1", 0, 0, &rev));
    CHECK(mc_kv_wait(&seen, 0));
    int c = mc_kv_changes(&seen);
    CHECK_OK(mc_kv_put_str(m2, "w/a", "2", rev, 0, &rev));
    CHECK(mc_kv_wait(&seen, c));
    c = mc_kv_changes(&seen);
    CHECK_OK(m->ops->kv_delete(m, "w/a", rev));
    CHECK(mc_kv_wait(&seen, c));

    /* Records outside the prefix, and other kinds of records: nothing;
     * then one more change under it: seen once, after them. */
    c = mc_kv_changes(&seen);
    int a = mc_kv_changes(&all);
    CHECK_OK(mc_kv_put_str(m2, "w", "x", -1, 0, NULL));
    CHECK_OK(mc_kv_put_str(m2, "w2/a", "x", -1, 0, NULL));
    CHECK_OK(mc_kv_put_str(m2, "x/w/a", "x", -1, 0, NULL));
    meta_log l;
    CHECK_OK(m2->ops->log_create(m2, "w/a", 1, &l));
    CHECK(mc_kv_wait(&all, a)); /* the "" watch sees records under any prefix */
    CHECK_OK(mc_kv_put_str(m2, "w/b", "x", -1, 0, NULL));
    CHECK(mc_kv_wait(&seen, c));
    mc_sleep_ms(200);
    CHECK(mc_kv_changes(&seen) == c + 1);

    /* A record on a lease vanishing with it is a change too. */
    int64_t lease = 0;
    CHECK_OK(m->ops->lease_grant(m, 60000, &lease));
    CHECK_OK(mc_kv_put_str(m, "w/l", "x", 0, lease, NULL));
    CHECK(mc_kv_wait(&seen, c + 1));
    c = mc_kv_changes(&seen);
    CHECK_OK(m2->ops->lease_revoke(m2, lease));
    CHECK(mc_kv_wait(&seen, c));
    m->ops->watch_stop(w);
    m->ops->watch_stop(wall);
    /* No callback after watch_stop returned. */
    c = mc_kv_changes(&seen);
    CHECK_OK(mc_kv_put_str(m2, "w/c", "x", -1, 0, NULL));
    mc_sleep_ms(100);
    CHECK(mc_kv_changes(&seen) == c);
    CHECK(seen.failed == 0 && all.failed == 0);
    mc_close(m2);
    mc_close(m);
}

static void meta_conformance_run(meta *(*open_fresh)(void *arg), meta *(*open_again)(void *arg),
                                 void *arg)
{
    mc_fresh = open_fresh;
    mc_again = open_again;
    mc_arg = arg;
    RUN(mc_log_crud);
    RUN(mc_log_cas);
    RUN(mc_log_list);
    RUN(mc_ids_never_reused);
    RUN(mc_seg_crud);
    RUN(mc_seg_placement);
    RUN(mc_seg_guard);
    RUN(mc_cross_handle);
    RUN(mc_race_threads);
    RUN(mc_race_processes);
    RUN(mc_reader_crud);
    RUN(mc_lease_expiry);
    RUN(mc_lease_revoke);
    RUN(mc_log_delete_cascade);
    RUN(mc_node_crud);
    RUN(mc_node_bad_fields);
    RUN(mc_node_lease);
    RUN(mc_setting);
    RUN(mc_claim_crud);
    RUN(mc_claim_bad_args);
    RUN(mc_claim_lease);
    RUN(mc_claim_cascade);
    RUN(mc_claim_race_threads);
    RUN(mc_claim_race_processes);
    RUN(mc_kv_crud);
    RUN(mc_kv_values);
    RUN(mc_kv_bad_args);
    RUN(mc_kv_list);
    RUN(mc_kv_list_bytes_bound);
    RUN(mc_kv_lease);
    RUN(mc_kv_race_threads);
    RUN(mc_kv_watch);
}

#endif
