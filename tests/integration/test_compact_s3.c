/* test_compact_s3.c — completion and compaction on object storage
 * (docs/format.md sections 11.1-11.3) against the local Ceph RGW:
 * the footer object, merged objects, readers across a compaction, a
 * failure at every step then a re-run, racing compactors, an endpoint that
 * ignores If-Match, the client's compaction pass (COMPLETED -> SEALED),
 * and kill -9 of a compacting process in a loop. */
#include "test.h"

#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>

#include "client/internal.h"
#include "storage/s3.h"
#include "storage/s3_layout.h"
#include "support/s3env.h"
#include "support/testutil.h"

static test_s3_env env;
static char prefix[128]; /* every key of this run lives under it */

static s3_client *client_open(void)
{
    s3_options o = {.endpoint = env.endpoint, .bucket = env.bucket, .region = env.region,
                    .access_key = env.access_key, .secret_key = env.secret_key,
                    .path_style = true, .max_retries = 3, .retry_base_ms = 5, .retry_cap_ms = 50};
    s3_client *c = NULL;
    return s3_client_open(&o, &c) == 0 ? c : NULL;
}

static storage *store_open(const char *tag)
{
    char pfx[256];
    snprintf(pfx, sizeof pfx, "%s/%s", prefix, tag);
    s3_client *c = client_open();
    storage *st = NULL;
    if (!c || storage_s3_open_client(c, pfx, NULL, &st) != 0)
        return NULL;
    return st;
}

/* Segment bytes are a function of the offset, so any read can be checked. */
static unsigned char pat(int64_t seg, uint64_t off) { return (unsigned char)(off * 7 + off / 251 + (uint64_t)seg); }

/* Creates (log 1, seg) with n appends of size bytes each; returns the length. */
static uint64_t mk_segment(storage *st, int64_t seg, int n, size_t size)
{
    st_writer *w;
    if (st->ops->seg_create(st, 1, seg, 1, &w))
        return 0;
    unsigned char *b = malloc(size);
    uint64_t off = 0;
    for (int i = 0; i < n; i++) {
        for (size_t k = 0; k < size; k++)
            b[k] = pat(seg, off + k);
        struct iovec v = {b, size};
        if (st->ops->seg_append(w, &v, 1)) {
            off = 0;
            break;
        }
        off += size;
    }
    free(b);
    st->ops->seg_writer_close(w);
    return off;
}

/* Reads [0, len) through r in chunks of step bytes and checks every byte. */
static int check_reader(storage *st, st_reader *r, int64_t seg, uint64_t from, uint64_t to, size_t step)
{
    unsigned char *b = malloc(step);
    int bad = 0;
    for (uint64_t off = from; off < to && !bad; off += step) {
        size_t want = to - off < step ? (size_t)(to - off) : step, got = 0;
        int rc = st->ops->seg_read(r, off, b, want, &got);
        if (rc || got != want) {
            fprintf(stderr, "  read at %" PRIu64 ": rc %d (%s) got %zu of %zu\n", off, rc,
                    wp_errmsg(), got, want);
            bad = 1;
        }
        for (size_t k = 0; k < got && !bad; k++)
            if (b[k] != pat(seg, off + k)) {
                fprintf(stderr, "  byte %" PRIu64 " differs\n", off + k);
                bad = 1;
            }
    }
    free(b);
    return bad ? -1 : 0;
}

static int check_all(storage *st, int64_t seg, uint64_t len)
{
    st_reader *r;
    if (st->ops->seg_open_read(st, 1, seg, &r))
        return -1;
    uint64_t size = 0;
    int rc = st->ops->seg_size(r, &size);
    if (rc || size != len) {
        fprintf(stderr, "  size %" PRIu64 ", want %" PRIu64 "\n", size, len);
        st->ops->seg_reader_close(r);
        return -1;
    }
    rc = check_reader(st, r, seg, 0, len, 77777);
    st->ops->seg_reader_close(r);
    return rc;
}

/* Objects under a segment's prefix, by kind. */
typedef struct {
    int blocks, merged, footer, other;
    char pfx[300];
} census;

static int census_cb(void *arg, const char *key, uint64_t size)
{
    census *c = arg;
    (void)size;
    const char *name = key + strlen(c->pfx);
    if (strcmp(name, "footer.blk") == 0)
        c->footer++;
    else if (strncmp(name, "m_", 2) == 0)
        c->merged++;
    else if (strlen(name) == 16 && strcmp(name + 12, ".blk") == 0)
        c->blocks++;
    else
        c->other++;
    return 0;
}

static census count_objects(storage *st, const char *tag, int64_t seg)
{
    census c = {0};
    snprintf(c.pfx, sizeof c.pfx, "%s/%s/1/%" PRId64 "/", prefix, tag, seg);
    s3_list_all(storage_s3_client(st), c.pfx, NULL, 0, 100000, census_cb, &c);
    return c;
}

static int footer_of(storage *st, const char *tag, int64_t seg, s3_layout *l)
{
    char key[400];
    snprintf(key, sizeof key, "%s/%s/1/%" PRId64 "/footer.blk", prefix, tag, seg);
    static unsigned char buf[1 << 20];
    size_t got = 0;
    int rc = s3_get(storage_s3_client(st), key, 0, buf, sizeof buf, &got, NULL);
    return rc ? rc : s3_layout_decode(buf, got, 1, seg, l);
}

static int compact_until_done(storage *st, int64_t seg, uint64_t max)
{
    for (int i = 0; i < 4; i++) {
        bool done = false;
        int rc = st->ops->seg_compact(st, 1, seg, max, &done);
        if (rc || done)
            return rc;
    }
    return WP_EAGAIN;
}

TEST(finalize)
{
    storage *st = store_open("fin");
    REQUIRE(st);
    uint64_t len = mk_segment(st, 0, 12, 1000);
    REQUIRE(len == 12000);
    st_reader *before;
    REQUIRE(st->ops->seg_open_read(st, 1, 0, &before) == 0);
    CHECK(check_reader(st, before, 0, 0, 3000, 700) == 0);
    /* not a boundary; past the end */
    CHECK_RC(WP_ECORRUPT, st->ops->seg_finalize(st, 1, 0, 10500));
    CHECK_RC(WP_ECORRUPT, st->ops->seg_finalize(st, 1, 0, 13000));
    CHECK(count_objects(st, "fin", 0).footer == 0);
    /* the stream ends at 10000: the last two appends are not part of it */
    CHECK_OK(st->ops->seg_finalize(st, 1, 0, 10000));
    CHECK_OK(st->ops->seg_finalize(st, 1, 0, 10000)); /* idempotent */
    CHECK_RC(WP_ECORRUPT, st->ops->seg_finalize(st, 1, 0, 12000));
    census c = count_objects(st, "fin", 0);
    CHECK(c.footer == 1 && c.blocks == 13);
    s3_layout l;
    REQUIRE(footer_of(st, "fin", 0, &l) == 0);
    CHECK(l.generation == 0 && l.bytes == 10000 && l.n_objs == 10 && l.n_garbage == 0);
    CHECK(l.objs[0].first == 1 && l.objs[9].last == 10 && l.objs[3].size == 1000);
    s3_layout_free(&l);
    CHECK(check_all(st, 0, 10000) == 0);
    /* a reader opened before keeps reading; once it looks past what it
     * listed, it finds the footer object and the final length */
    CHECK(check_reader(st, before, 0, 3000, 10000, 900) == 0);
    unsigned char b[10];
    size_t got = 1;
    CHECK_OK(st->ops->seg_read(before, 12000, b, sizeof b, &got));
    CHECK(got == 0);
    CHECK_OK(st->ops->seg_read(before, 10000, b, sizeof b, &got));
    CHECK(got == 0);
    uint64_t size = 0;
    CHECK_OK(st->ops->seg_size(before, &size));
    CHECK(size == 10000);
    st->ops->seg_reader_close(before);
    /* complete: a fence changes nothing, a reopen is refused */
    CHECK_OK(st->ops->seg_fence(st, 1, 0, 5));
    CHECK(count_objects(st, "fin", 0).blocks == 13);
    st_writer *w = NULL;
    CHECK_RC(WP_EINVAL, st->ops->seg_reopen(st, 1, 0, 6, 10000, &w));
    CHECK_RC(WP_ENOENT, st->ops->seg_finalize(st, 1, 7, 100));
    CHECK_OK(st->ops->seg_delete(st, 1, 0));
    c = count_objects(st, "fin", 0);
    CHECK(c.footer + c.blocks + c.merged + c.other == 0);
    st->ops->close(st);
}

TEST(compact)
{
    storage *st = store_open("cmp");
    REQUIRE(st);
    uint64_t len = mk_segment(st, 0, 40, 100 * 1024);
    REQUIRE(len == 40 * 100 * 1024);
    bool done = true;
    CHECK_RC(WP_ENOENT, st->ops->seg_compact(st, 1, 0, WP_MiB, &done)); /* not finalized */
    CHECK(!done);
    CHECK_OK(st->ops->seg_finalize(st, 1, 0, len));
    s3_stats s0, s1;
    s3_client_stats(storage_s3_client(st), &s0);
    CHECK_OK(st->ops->seg_compact(st, 1, 0, WP_MiB, &done));
    CHECK(done);
    s3_client_stats(storage_s3_client(st), &s1);
    /* 10 x 100 KiB per merged object: 4 of them, the footer, and the
     * If-Match probe's successful PUTs */
    CHECK(s1.puts - s0.puts >= 5 && s1.puts - s0.puts <= 8);
    census c = count_objects(st, "cmp", 0);
    CHECK(c.merged == 4 && c.footer == 1 && c.blocks == 1 /* the create marker */);
    s3_layout l;
    REQUIRE(footer_of(st, "cmp", 0, &l) == 0);
    CHECK(l.generation == 1 && l.n_objs == 4 && l.n_garbage == 40);
    CHECK(l.objs[0].first == 1 && l.objs[0].last == 10 && l.objs[0].size == 10 * 100 * 1024);
    s3_layout_free(&l);
    CHECK(check_all(st, 0, len) == 0);
    /* compact already: nothing changes */
    s3_client_stats(storage_s3_client(st), &s0);
    CHECK_OK(st->ops->seg_compact(st, 1, 0, WP_MiB, &done));
    CHECK(done);
    s3_client_stats(storage_s3_client(st), &s1);
    CHECK(s1.puts == s0.puts);
    /* a bigger max_bytes merges the merged objects: generation 2 */
    CHECK_OK(compact_until_done(st, 0, 3 * WP_MiB));
    REQUIRE(footer_of(st, "cmp", 0, &l) == 0);
    CHECK(l.generation == 2 && l.n_objs == 2 && l.objs[0].last == 30 && l.objs[1].last == 40);
    s3_layout_free(&l);
    c = count_objects(st, "cmp", 0);
    CHECK(c.merged == 2 && c.blocks == 1);
    CHECK(check_all(st, 0, len) == 0);
    CHECK_OK(st->ops->seg_delete(st, 1, 0));
    st->ops->close(st);
}

/* A reader in the middle of a segment when its objects are replaced goes
 * on reading the same bytes (a 404 makes it load the new generation). */
TEST(reader_across_compaction)
{
    storage *st = store_open("rdr");
    REQUIRE(st);
    uint64_t len = mk_segment(st, 3, 30, 64 * 1024);
    REQUIRE(len > 0);
    CHECK_OK(st->ops->seg_finalize(st, 1, 3, len));
    st_reader *r;
    REQUIRE(st->ops->seg_open_read(st, 1, 3, &r) == 0);
    CHECK(check_reader(st, r, 3, 0, len / 3, 10000) == 0);
    CHECK_OK(compact_until_done(st, 3, WP_MiB));
    CHECK(count_objects(st, "rdr", 3).merged == 2);
    CHECK(check_reader(st, r, 3, len / 3, len, 10000) == 0);
    CHECK(check_reader(st, r, 3, 0, len, 300000) == 0); /* and back from the start */
    st->ops->seg_reader_close(r);
    CHECK_OK(st->ops->seg_delete(st, 1, 3));
    st->ops->close(st);
}

/* ---- a failure at each step, then a re-run ---------------------------------- */

typedef struct {
    const char *method;
    const char *key_part; /* fail requests whose key contains it */
    const char *query_part;
    int skip;             /* let this many matching ones through first */
    int failed;
} fail_plan;

static void fail_hook(void *arg, const s3_fault_req *req, s3_fault *out)
{
    fail_plan *p = arg;
    if (strcmp(req->method, p->method) != 0 || !strstr(req->key, p->key_part) ||
        (p->query_part && !strstr(req->query, p->query_part)))
        return;
    if (req->attempt == 0 && p->skip > 0) {
        p->skip--;
        return;
    }
    out->kind = S3_FAULT_STATUS;
    out->status = 403;
    out->body = "<Error><Code>AccessDenied</Code><Message>injected</Message></Error>";
    p->failed++;
}

TEST(failure_at_each_step)
{
    storage *st = store_open("crash");
    REQUIRE(st);
    fail_plan plans[] = {
        {"PUT", "/m_", NULL, 1, 0},          /* the second merged object */
        {"PUT", "footer.blk", NULL, 0, 0},   /* the commit */
        {"POST", "", "delete", 0, 0},        /* deleting the garbage */
        {"GET", ".blk", NULL, 5, 0},         /* reading the originals */
    };
    for (int i = 0; i < 4; i++) {
        uint64_t len = mk_segment(st, 10 + i, 24, 100 * 1024);
        REQUIRE(len > 0);
        CHECK_OK(st->ops->seg_finalize(st, 1, 10 + i, len));
        if (i == 3) { /* a later GET (a probe is done by now): skip the footer's */
            CHECK_OK(compact_until_done(st, 10 + i, 100 * 1024)); /* nothing to merge */
        }
        s3_client_set_fault(storage_s3_client(st), fail_hook, &plans[i]);
        bool done = true;
        int rc = st->ops->seg_compact(st, 1, 10 + i, WP_MiB, &done);
        s3_client_set_fault(storage_s3_client(st), NULL, NULL);
        CHECK(rc != 0 && !done && plans[i].failed > 0);
        if (rc == 0)
            fprintf(stderr, "  plan %d did not fail\n", i);
        CHECK(check_all(st, 10 + i, len) == 0); /* readable after the failure */
        CHECK_OK(compact_until_done(st, 10 + i, WP_MiB));
        CHECK(check_all(st, 10 + i, len) == 0);
        census c = count_objects(st, "crash", 10 + i);
        /* originals and garbage gone; the same plan re-ran, so no orphans */
        CHECK(c.blocks == 1 && c.merged == 3 && c.footer == 1 && c.other == 0);
        if (c.blocks != 1 || c.merged != 3)
            fprintf(stderr, "  plan %d: %d blocks, %d merged\n", i, c.blocks, c.merged);
        CHECK_OK(st->ops->seg_delete(st, 1, 10 + i));
    }
    st->ops->close(st);
}

/* Two compactors with different plans at once: one commits, the segment
 * reads the same throughout, and a last pass leaves it compact. */
typedef struct {
    storage *st;
    uint64_t max;
    int rc;
} racer;

static void *race_main(void *arg)
{
    racer *r = arg;
    bool done;
    r->rc = r->st->ops->seg_compact(r->st, 1, 20, r->max, &done);
    return NULL;
}

TEST(racing_compactors)
{
    storage *a = store_open("race"), *b = store_open("race");
    REQUIRE(a && b);
    uint64_t len = mk_segment(a, 20, 48, 100 * 1024);
    REQUIRE(len > 0);
    CHECK_OK(a->ops->seg_finalize(a, 1, 20, len));
    for (int round = 0; round < 3; round++) {
        racer ra = {a, WP_MiB + (uint64_t)round * WP_MiB, -1}, rb = {b, 2 * WP_MiB, -1};
        pthread_t t1, t2;
        pthread_create(&t1, NULL, race_main, &ra);
        pthread_create(&t2, NULL, race_main, &rb);
        pthread_join(t1, NULL);
        pthread_join(t2, NULL);
        /* a loser may find objects gone under it (the winner deleted them) */
        CHECK(ra.rc == 0 || rb.rc == 0);
        CHECK(check_all(a, 20, len) == 0);
        CHECK(check_all(b, 20, len) == 0);
    }
    CHECK_OK(compact_until_done(a, 20, 4 * WP_MiB));
    CHECK(check_all(b, 20, len) == 0);
    s3_layout l;
    REQUIRE(footer_of(a, "race", 20, &l) == 0);
    CHECK(l.n_objs <= 3); /* 4.8 MB in runs of up to 4 MiB, from whatever the race left */
    s3_layout_free(&l);
    CHECK_OK(a->ops->seg_delete(a, 1, 20));
    a->ops->close(a);
    b->ops->close(b);
}

/* An endpoint that ignores If-Match (simulated: the probe's PUT with a
 * wrong ETag "succeeds") gets no compaction, and the segment is untouched. */
static void ignore_ifmatch_hook(void *arg, const s3_fault_req *req, s3_fault *out)
{
    int *puts = arg;
    if (strcmp(req->method, "PUT") == 0 && strstr(req->key, ".probe/") && req->attempt == 0 &&
        ++*puts == 2) {
        out->kind = S3_FAULT_STATUS;
        out->status = 200;
    }
}

TEST(ifmatch_ignored)
{
    storage *st = store_open("noim");
    REQUIRE(st);
    uint64_t len = mk_segment(st, 0, 8, 10000);
    REQUIRE(len > 0);
    CHECK_OK(st->ops->seg_finalize(st, 1, 0, len));
    int puts = 0;
    s3_client_set_fault(storage_s3_client(st), ignore_ifmatch_hook, &puts);
    bool done = true;
    CHECK_RC(WP_ENOTSUP, st->ops->seg_compact(st, 1, 0, WP_MiB, &done));
    CHECK_RC(WP_ENOTSUP, st->ops->seg_compact(st, 1, 0, WP_MiB, &done)); /* probed once */
    s3_client_set_fault(storage_s3_client(st), NULL, NULL);
    CHECK(puts == 2 && !done);
    census c = count_objects(st, "noim", 0);
    CHECK(c.merged == 0 && c.blocks == 9);
    CHECK(check_all(st, 0, len) == 0);
    CHECK_OK(st->ops->seg_delete(st, 1, 0));
    st->ops->close(st);
}

/* The commit's If-Match fails: if the footer object is still there another
 * compactor won (our merged objects stay, unnamed); if it is gone the
 * segment was deleted meanwhile and our merged objects go too. */
static void lost_hook(void *arg, const s3_fault_req *req, s3_fault *out)
{
    bool gone = *(bool *)arg;
    if (!strstr(req->key, "footer.blk"))
        return;
    if (strcmp(req->method, "PUT") == 0) {
        out->kind = S3_FAULT_STATUS;
        out->status = 412;
        out->body = "<Error><Code>PreconditionFailed</Code></Error>";
    } else if (gone && strcmp(req->method, "HEAD") == 0) {
        out->kind = S3_FAULT_STATUS;
        out->status = 404;
    }
}

TEST(commit_lost)
{
    storage *st = store_open("lost");
    REQUIRE(st);
    for (int gone = 0; gone < 2; gone++) {
        uint64_t len = mk_segment(st, gone, 24, 100 * 1024);
        REQUIRE(len > 0);
        CHECK_OK(st->ops->seg_finalize(st, 1, gone, len));
        CHECK_OK(compact_until_done(st, gone, 50 * 1024)); /* the If-Match probe, nothing merged */
        bool flag = gone, done = true;
        s3_client_set_fault(storage_s3_client(st), lost_hook, &flag);
        int rc = st->ops->seg_compact(st, 1, gone, WP_MiB, &done);
        s3_client_set_fault(storage_s3_client(st), NULL, NULL);
        CHECK(!done);
        census c = count_objects(st, "lost", gone);
        if (gone) {
            CHECK_RC(WP_ENOENT, rc);
            CHECK(c.merged == 0 && c.blocks == 25);
        } else {
            CHECK_OK(rc);
            CHECK(c.merged == 3 && c.blocks == 25); /* unnamed until a commit names them */
            CHECK_OK(compact_until_done(st, gone, WP_MiB)); /* the same plan: they are reused */
            c = count_objects(st, "lost", gone);
            CHECK(c.merged == 3 && c.blocks == 1);
        }
        CHECK(check_all(st, gone, len) == 0);
        CHECK_OK(st->ops->seg_delete(st, 1, gone));
    }
    st->ops->close(st);
}

/* ---- through the client --------------------------------------------------------- */

static wp_client *open_client(const char *tag, const char *dir, const char *max_bytes)
{
    char pfx[256];
    snprintf(pfx, sizeof pfx, "%s/%s", prefix, tag);
    const char *kv[] = {"storage.type", "s3", "storage.s3.endpoint", env.endpoint,
                        "storage.s3.access_key", env.access_key, "storage.s3.secret_key", env.secret_key,
                        "storage.s3.bucket", env.bucket, "storage.s3.region", env.region,
                        "storage.s3.prefix", pfx, "segment.max_bytes", "2MiB",
                        "flush.max_bytes", "32KiB", "flush.max_interval_ms", "20",
                        "flush.max_threads", "8", "compaction.enabled", "false",
                        "compaction.max_bytes", max_bytes, NULL};
    return test_client_open(dir, kv);
}

static void payload(int i, char *buf, size_t *len)
{
    *len = 200 + (size_t)(i % 300);
    memset(buf, 'a' + i % 26, *len);
    snprintf(buf, 32, "e%d.", i);
}

static int total; /* entries written to the log of kill9_during_compaction */

static int write_from(wp_client *c, const char *name, int from, int n)
{
    wp_log *log;
    wp_writer *w;
    if (wp_log_open(c, name, &log) || wp_writer_open(log, &w))
        return -1;
    for (int i = from; i < from + n; i++) {
        char buf[600];
        size_t len;
        payload(i, buf, &len);
        if (wp_writer_append_async(w, buf, len, NULL, NULL))
            return -1;
    }
    int rc = wp_writer_close(w); /* flushes: every entry acked */
    wp_log_close(log);
    return rc;
}

static int write_entries(wp_client *c, const char *name, int n) { return write_from(c, name, 0, n); }

static int append_more(wp_client *c, const char *name, int n)
{
    int rc = write_from(c, name, total, n);
    if (!rc)
        total += n;
    return rc;
}

/* Every entry, in order, exactly once. */
static int read_entries(wp_client *c, const char *name)
{
    wp_log *log;
    wp_reader *r;
    if (wp_log_open(c, name, &log) || wp_reader_open(log, WP_EARLIEST, &r))
        return -1;
    int i = 0;
    wp_entry e;
    while (wp_reader_next(r, 500, &e) == WP_OK) {
        char want[600];
        size_t len;
        payload(i, want, &len);
        if (e.len != len || memcmp(e.data, want, len) != 0) {
            fprintf(stderr, "  entry %d differs\n", i);
            i = -1;
            break;
        }
        i++;
    }
    wp_reader_close(r);
    wp_log_close(log);
    return i;
}

static int count_state(wp_client *c, const char *name, int state)
{
    wp_log *log;
    wp_segment_info *s;
    size_t n;
    if (wp_log_open(c, name, &log) || wp_log_segments(log, &s, &n))
        return -1;
    int k = 0;
    for (size_t i = 0; i < n; i++)
        k += s[i].state == state;
    free(s);
    wp_log_close(log);
    return k;
}

#define N_ENTRIES 30000 /* about 10 MB: 5 segments of 2 MiB, 64 objects each */

TEST(client_seals_segments)
{
    const char *dir = test_tmpdir("compacts3");
    wp_client *c = open_client("cl", dir, "1MiB");
    REQUIRE(c);
    CHECK_OK(wp_log_create(c, "cl"));
    CHECK_OK(write_entries(c, "cl", N_ENTRIES));
    int completed = count_state(c, "cl", WP_SEG_COMPLETED);
    CHECK(completed >= 4);
    int done = 0;
    while (wp__compact_run(c, &done) == 0 && done > 0)
        ;
    CHECK(count_state(c, "cl", WP_SEG_COMPLETED) == 0);
    CHECK(count_state(c, "cl", WP_SEG_SEALED) == completed);
    CHECK(read_entries(c, "cl") == N_ENTRIES);
    wp_log *log;
    REQUIRE(wp_log_open(c, "cl", &log) == 0);
    int64_t checked = 0;
    CHECK_OK(wp_log_verify(log, NULL, NULL, &checked));
    CHECK(checked == N_ENTRIES);
    wp_log_close(log);
    CHECK_OK(wp_log_delete(c, "cl"));
    wp_client_close(c);
}

static void slow_hook(void *arg, const s3_fault_req *req, s3_fault *out)
{
    (void)arg;
    (void)req;
    out->kind = S3_FAULT_SLOW;
    out->delay_ms = 4;
}

/* kill -9 of a process compacting, in a loop, with the merge size changing
 * every round (so a re-run may plan differently); then a last pass: every
 * entry is there, in order, once; every segment sealed and verified. */
TEST(kill9_during_compaction)
{
    const char *dir = test_tmpdir("compacts3kill");
    wp_client *c = open_client("kill", dir, "1MiB");
    REQUIRE(c);
    CHECK_OK(wp_log_create(c, "k"));
    CHECK_OK(write_entries(c, "k", N_ENTRIES));
    total = N_ENTRIES;
    int completed = count_state(c, "k", WP_SEG_COMPLETED);
    wp_client_close(c);
    static const char *sizes[] = {"1MiB", "2MiB", "3MiB"};
    int killed = 0; /* rounds whose child died by the signal with work left */
    for (int round = 0; round < 12; round++) {
        pid_t pid = fork();
        REQUIRE(pid >= 0);
        if (pid == 0) {
            wp_client *cc = open_client("kill", dir, sizes[round % 3]);
            if (!cc)
                _exit(2);
            /* slow answers, so that the kill lands inside a compaction */
            s3_client_set_fault(storage_s3_client(cc->st), slow_hook, NULL);
            int done;
            while (wp__compact_run(cc, &done) == 0 && done > 0)
                ;
            _exit(0);
        }
        test_sleep_ms(30 + (round * 37) % 120);
        kill(pid, SIGKILL);
        int status = 0;
        waitpid(pid, &status, 0);
        c = open_client("kill", dir, "1MiB");
        REQUIRE(c);
        int sealed = count_state(c, "k", WP_SEG_SEALED);
        wp_client_close(c);
        fprintf(stderr, "  round %d: %s, %d of %d sealed\n", round,
                WIFSIGNALED(status) ? "killed" : "finished", sealed, completed);
        if (WIFSIGNALED(status) && sealed < completed)
            killed++;
        if (sealed == completed && killed >= 3)
            break;
        if (sealed == completed) { /* more work for the next kills: new segments */
            c = open_client("kill", dir, "1MiB");
            REQUIRE(c);
            CHECK_OK(append_more(c, "k", N_ENTRIES / 5));
            completed = count_state(c, "k", WP_SEG_COMPLETED) + sealed;
            wp_client_close(c);
        }
    }
    CHECK(killed >= 3);
    c = open_client("kill", dir, "2MiB");
    REQUIRE(c);
    int done = 0, rc;
    while ((rc = wp__compact_run(c, &done)) == 0 && done > 0)
        ;
    CHECK_OK(rc);
    CHECK(count_state(c, "k", WP_SEG_SEALED) == completed);
    CHECK(read_entries(c, "k") == total);
    wp_log *log;
    REQUIRE(wp_log_open(c, "k", &log) == 0);
    int64_t checked = 0;
    CHECK_OK(wp_log_verify(log, NULL, NULL, &checked));
    CHECK(checked == total);
    wp_log_close(log);
    CHECK_OK(wp_log_delete(c, "k"));
    wp_client_close(c);
}

int main(void)
{
    if (test_s3_env_load(NULL, &env) != 0)
        return 1;
    snprintf(prefix, sizeof prefix, "compact-%d-%lld", (int)getpid(), (long long)test_now_ms());
    RUN(finalize);
    RUN(compact);
    RUN(reader_across_compaction);
    RUN(failure_at_each_step);
    RUN(racing_compactors);
    RUN(ifmatch_ignored);
    RUN(commit_lost);
    RUN(client_seals_segments);
    RUN(kill9_during_compaction);
    return test_done();
}
