/* test_reader_gc.c — readers against GC (ARCHITECTURE §4): a reader gets
 * every entry in order or WP_ETRUNCATED, never a silent jump over deleted
 * data; its registration holds GC while it is open, also when a GC pass
 * outlasts the reader lease and across the opening of the reader. Embedded
 * default: local disk + SQLite; as integration/test_reader_gc@quorum, data
 * on storage.type quorum (tests/support/quorum_env.h). */
#include "test.h"
#include "support/testutil.h"

#include "client/internal.h"

/* Segment payloads are "e<N>" with N counting from 0 over the log. */
static int append_n(wp_writer *w, int first, int n)
{
    for (int i = first; i < first + n; i++) {
        char buf[32];
        int len = snprintf(buf, sizeof buf, "e%d", i);
        int rc = wp_writer_append(w, buf, (size_t)len, NULL);
        if (rc)
            return rc;
    }
    return WP_OK;
}

/* Creates `name` with n entries in segments of 4 KiB, writer closed (all
 * segments completed). *first[s] is the index N of entry (s,0) and
 * *last[s] the last entry id of segment s, for s < *n_segs (at most 64). */
typedef struct {
    int n_segs;
    int first[64];
    int64_t last[64];
} layout;

static int make_log(wp_client *c, const char *name, int n, layout *lo)
{
    wp_log *log;
    wp_writer *w;
    int rc = wp_log_create(c, name);
    if (!rc)
        rc = wp_log_open(c, name, &log);
    if (rc)
        return rc;
    if (!(rc = wp_writer_open(log, &w))) {
        rc = append_n(w, 0, n);
        int rc2 = wp_writer_close(w);
        if (!rc)
            rc = rc2;
    }
    wp_segment_info *segs;
    size_t ns;
    if (!rc && !(rc = wp_log_segments(log, &segs, &ns))) {
        lo->n_segs = ns < 64 ? (int)ns : 64;
        int at = 0;
        for (int i = 0; i < lo->n_segs; i++) {
            lo->first[i] = at;
            lo->last[i] = segs[i].last_entry_id;
            at += (int)segs[i].last_entry_id + 1;
        }
        free(segs);
    }
    wp_log_close(log);
    return rc;
}

static int first_seg(wp_log *log)
{
    wp_segment_info *segs;
    size_t n;
    if (wp_log_segments(log, &segs, &n) || n == 0)
        return -1;
    int s = (int)segs[0].segment_id;
    free(segs);
    return s;
}

/* Checks that e is "e<want>". */
static bool is_entry(const wp_entry *e, int want)
{
    char buf[32];
    int len = snprintf(buf, sizeof buf, "e%d", want);
    return e->len == (size_t)len && memcmp(e->data, buf, (size_t)len) == 0;
}

/* Reads on from entry index `from`: every entry must be the next one in
 * order. Returns the code that ended the reading (WP_ETIMEDOUT once
 * nothing more comes) and the number read in *got. */
static int read_in_order(wp_reader *r, int from, int *got)
{
    wp_entry e;
    int rc;
    *got = 0;
    while ((rc = wp_reader_next(r, 200, &e)) == WP_OK) {
        if (!is_entry(&e, from + *got)) {
            fprintf(stderr, "  entry %" PRId64 ":%" PRId64 " is '%.*s', want e%d\n",
                    e.id.segment_id, e.id.entry_id, (int)e.len, (const char *)e.data, from + *got);
            return WP_ECORRUPT;
        }
        (*got)++;
    }
    return rc;
}

static size_t n_registered(wp_client *c, int64_t log_id, meta_reader **out)
{
    meta_reader *rds = NULL;
    size_t n = 0;
    if (c->meta->ops->reader_list(c->meta, log_id, &rds, &n) != WP_OK)
        return (size_t)-1;
    if (out)
        *out = rds;
    else
        free(rds);
    return n;
}

/* Lost registrations (the lease expired unnoticed) let GC delete a
 * reader's segments: the reader must then fail with WP_ETRUNCATED, not jump
 * to the next segment that exists. A position past the end of a deleted
 * segment legitimately goes on with the next one. */
TEST(reader_gets_etruncated_not_a_later_segment)
{
    const char *kv[] = {"segment.max_bytes", "4096", "retention.ttl_ms", "0",
                        "gc.interval_ms", "3600000", NULL};
    wp_client *c = test_client_open(test_tmpdir("rgc_a"), kv);
    REQUIRE(c);
    layout lo;
    REQUIRE(make_log(c, "a", 600, &lo) == 0 && lo.n_segs > 4);
    wp_log *log;
    REQUIRE(wp_log_open(c, "a", &log) == 0);
    wp_reader *ra, *rb, *rp;
    wp_entry e;
    REQUIRE(wp_reader_open(log, (wp_msg_id){1, 0}, &ra) == 0); /* not read yet */
    REQUIRE(wp_reader_open(log, WP_EARLIEST, &rb) == 0);
    for (int i = 0; i < 3; i++) /* segment 0 open */
        CHECK_OK(wp_reader_next(rb, 200, &e));
    REQUIRE(wp_reader_open(log, (wp_msg_id){2, lo.last[2] + 1}, &rp) == 0); /* past the end of 2 */
    CHECK_OK(wp_log_truncate(log, (wp_msg_id){2, lo.last[2]}));
    /* the registrations vanish, as when the lease expired unnoticed */
    int64_t lease = c->lease_id;
    REQUIRE(lease != 0);
    CHECK_OK(c->meta->ops->lease_revoke(c->meta, lease));
    CHECK(n_registered(c, log->log_id, NULL) == 0);
    CHECK_OK(wp__gc_run(c, wp__wall_ms()));
    REQUIRE(first_seg(log) == 3);

    /* at (1,0), segment 1 deleted: truncated, not (3,0) */
    int rc = wp_reader_next(ra, 200, &e);
    if (rc == WP_OK)
        fprintf(stderr, "  reader at 1:0 got %" PRId64 ":%" PRId64 "\n", e.id.segment_id,
                e.id.entry_id);
    CHECK_RC(WP_ETRUNCATED, rc);
    CHECK_RC(WP_ETRUNCATED, wp_reader_next(ra, 200, &e)); /* and stays so */
    /* in segment 0: what is still readable comes in order, then truncated */
    int got;
    CHECK_RC(WP_ETRUNCATED, read_in_order(rb, 3, &got));
    CHECK(got <= lo.first[1] - 3);
    /* past the end of deleted segment 2: goes on with (3,0) */
    CHECK_OK(wp_reader_next(rp, 200, &e));
    CHECK(e.id.segment_id == 3 && e.id.entry_id == 0 && is_entry(&e, lo.first[3]));
    wp_reader_close(ra);
    wp_reader_close(rb);
    wp_reader_close(rp);

    wp_log_close(log);

    /* opening (in a client whose lease is alive): a deleted position fails
     * at once; past the end of a deleted segment, or earliest, starts with
     * (3,0) */
    wp_client *c2 = test_client_open(c->cfg.storage_root, kv);
    REQUIRE(c2);
    REQUIRE(wp_log_open(c2, "a", &log) == 0);
    CHECK_RC(WP_ETRUNCATED, wp_reader_open(log, (wp_msg_id){1, 0}, &ra));
    CHECK_RC(WP_ETRUNCATED, wp_reader_open(log, (wp_msg_id){2, lo.last[2]}, &ra));
    REQUIRE(wp_reader_open(log, (wp_msg_id){2, lo.last[2] + 1}, &rp) == 0);
    CHECK_OK(wp_reader_next(rp, 200, &e));
    CHECK(e.id.segment_id == 3 && e.id.entry_id == 0);
    wp_reader_close(rp);
    REQUIRE(wp_reader_open(log, WP_EARLIEST, &rp) == 0);
    CHECK_RC(WP_ETIMEDOUT, read_in_order(rp, lo.first[3], &got));
    CHECK(got == 600 - lo.first[3]);
    wp_reader_close(rp);
    wp_log_close(log);
    wp_client_close(c2);
    wp_client_close(c);
}

/* A gap in the segment ids above the truncation point (a segment never
 * created) and a segment completed empty are not deletions: a reader goes
 * on past them. */
TEST(reader_passes_gaps_and_empty_segments)
{
    const char *kv[] = {"segment.max_bytes", "4096", "gc.interval_ms", "3600000", NULL};
    wp_client *c = test_client_open(test_tmpdir("rgc_gap"), kv);
    REQUIRE(c);
    layout lo;
    REQUIRE(make_log(c, "g", 300, &lo) == 0 && lo.n_segs >= 2);
    wp_log *log;
    REQUIRE(wp_log_open(c, "g", &log) == 0);
    /* segment n+1 completed empty, n never created; a new writer goes on
     * after n+1 */
    meta_log ml;
    REQUIRE(c->meta->ops->log_get(c->meta, "g", &ml) == 0);
    int64_t n = lo.n_segs;
    meta_seg s = {.log_id = ml.log_id, .seg_id = n + 1, .state = WP_SEG_COMPLETED,
                  .last_entry_id = -1, .epoch = ml.epoch, .created_ms = wp__wall_ms(),
                  .completed_ms = wp__wall_ms()};
    REQUIRE(c->meta->ops->seg_create(c->meta, &ml, &s) == 0);
    wp_reader *r;
    REQUIRE(wp_reader_open(log, WP_EARLIEST, &r) == 0);
    int got;
    CHECK_RC(WP_ETIMEDOUT, read_in_order(r, 0, &got));
    CHECK(got == 300);
    wp_writer *w;
    REQUIRE(wp_writer_open(log, &w) == 0);
    wp_msg_id id;
    CHECK_OK(wp_writer_append(w, "e300", 4, &id));
    CHECK(id.segment_id == n + 2 && id.entry_id == 0);
    CHECK_OK(wp_writer_close(w));
    wp_entry e;
    CHECK_OK(wp_reader_next(r, 1000, &e));
    CHECK(wp_msg_id_cmp(e.id, id) == 0 && is_entry(&e, 300));
    wp_reader_close(r);
    REQUIRE(wp_reader_open(log, (wp_msg_id){n, 0}, &r) == 0); /* in the gap */
    CHECK_OK(wp_reader_next(r, 200, &e));
    CHECK(wp_msg_id_cmp(e.id, id) == 0);
    wp_reader_close(r);
    wp_log_close(log);
    wp_client_close(c);
}

/* The reader lease is kept alive while a GC pass runs longer than the
 * lease TTL (slow deletions of another log): the reader's registration
 * stays, GC keeps its segments, and it reads every entry. */
TEST(lease_keepalive_not_blocked_by_slow_gc)
{
    const char *kv[] = {"segment.max_bytes", "4096", "retention.ttl_ms", "0",
                        "reader.lease_ttl_ms", "1000", "gc.interval_ms", "100", NULL};
    wp_client *c = test_client_open(test_tmpdir("rgc_b1"), kv);
    REQUIRE(c);
    layout big, lo;
    REQUIRE(make_log(c, "big", 600, &big) == 0 && big.n_segs > 4);
    REQUIRE(make_log(c, "r", 600, &lo) == 0 && lo.n_segs > 4);
    wp_log *lbig, *log;
    REQUIRE(wp_log_open(c, "big", &lbig) == 0 && wp_log_open(c, "r", &log) == 0);
    wp_reader *r;
    REQUIRE(wp_reader_open(log, (wp_msg_id){0, 0}, &r) == 0);
    wp__gc_test_delay(c, 1500); /* 3 segments of "big": a pass of 4.5 s */
    CHECK_OK(wp_log_truncate(lbig, (wp_msg_id){2, big.last[2]}));
    CHECK_OK(wp_log_truncate(log, (wp_msg_id){2, lo.last[2]}));
    test_sleep_ms(2500); /* 2.5 lease TTLs into the pass */
    CHECK(n_registered(c, log->log_id, NULL) == 1);
    int64_t t0 = test_now_ms();
    while (first_seg(lbig) != 3 && test_now_ms() - t0 < 20000)
        test_sleep_ms(50);
    CHECK(first_seg(lbig) == 3); /* the slow pass is over */
    wp__gc_test_delay(c, 0);
    CHECK_OK(wp__gc_run(c, wp__wall_ms()));
    CHECK(first_seg(log) == 0); /* held by the reader */
    int got;
    CHECK_RC(WP_ETIMEDOUT, read_in_order(r, 0, &got));
    CHECK(got == 600);
    wp_reader_close(r);
    wp_log_close(lbig);
    wp_log_close(log);
    wp_client_close(c);
}

/* When the lease expires anyway, the client takes a new one and every
 * open reader registers again at once, without waiting to change segment. */
TEST(expired_lease_reregisters_every_reader)
{
    const char *kv[] = {"segment.max_bytes", "4096", "retention.ttl_ms", "0",
                        "reader.lease_ttl_ms", "1000", "gc.interval_ms", "3600000", NULL};
    wp_client *c = test_client_open(test_tmpdir("rgc_b2"), kv);
    REQUIRE(c);
    layout lo;
    REQUIRE(make_log(c, "x", 600, &lo) == 0 && lo.n_segs > 4);
    wp_log *log;
    REQUIRE(wp_log_open(c, "x", &log) == 0);
    wp_reader *ra, *rb;
    wp_entry e;
    REQUIRE(wp_reader_open(log, WP_EARLIEST, &ra) == 0);
    for (int i = 0; i < 3; i++)
        CHECK_OK(wp_reader_next(ra, 200, &e));
    REQUIRE(wp_reader_open(log, (wp_msg_id){1, 0}, &rb) == 0);
    REQUIRE(n_registered(c, log->log_id, NULL) == 2);
    CHECK_OK(c->meta->ops->lease_revoke(c->meta, c->lease_id)); /* as if expired */
    CHECK(n_registered(c, log->log_id, NULL) == 0);
    int64_t t0 = test_now_ms();
    while (n_registered(c, log->log_id, NULL) != 2 && test_now_ms() - t0 < 3000)
        test_sleep_ms(20);
    meta_reader *rds = NULL;
    size_t n = n_registered(c, log->log_id, &rds);
    CHECK(n == 2);
    if (n == 2)
        CHECK((rds[0].seg_id == 0 && rds[1].seg_id == 1) ||
              (rds[0].seg_id == 1 && rds[1].seg_id == 0));
    free(rds);
    CHECK_OK(wp_log_truncate(log, (wp_msg_id){2, lo.last[2]}));
    CHECK_OK(wp__gc_run(c, wp__wall_ms()));
    CHECK(first_seg(log) == 0);
    int got;
    CHECK_RC(WP_ETIMEDOUT, read_in_order(ra, 3, &got));
    CHECK(got == 600 - 3);
    CHECK_RC(WP_ETIMEDOUT, read_in_order(rb, lo.first[1], &got));
    CHECK(got == 600 - lo.first[1]);
    wp_reader_close(ra);
    wp_reader_close(rb);
    wp_log_close(log);
    wp_client_close(c);
}

typedef struct {
    wp_client *c;
    int rc, runs;
} gc_hook;

static void gc_on_resolved(void *arg)
{
    gc_hook *h = arg;
    h->runs++;
    h->rc = wp__gc_run(h->c, wp__wall_ms());
}

/* A GC pass between the reader resolving its start and returning from
 * wp_reader_open must not delete what the reader resolved. */
TEST(reader_open_holds_gc_before_resolving)
{
    const char *kv[] = {"segment.max_bytes", "4096", "retention.ttl_ms", "0",
                        "gc.interval_ms", "3600000", NULL};
    wp_client *c = test_client_open(test_tmpdir("rgc_c"), kv);
    REQUIRE(c);
    layout lo;
    REQUIRE(make_log(c, "h", 600, &lo) == 0 && lo.n_segs > 4);
    wp_log *log;
    REQUIRE(wp_log_open(c, "h", &log) == 0);
    CHECK_OK(wp_log_truncate(log, (wp_msg_id){2, lo.last[2]})); /* 0..2 deletable */
    gc_hook h = {c, 0, 0};
    wp__reader_test_on_resolved(c, gc_on_resolved, &h);
    wp_reader *r;
    REQUIRE(wp_reader_open(log, (wp_msg_id){1, 0}, &r) == 0);
    wp__reader_test_on_resolved(c, NULL, NULL);
    CHECK(h.runs == 1 && h.rc == 0);
    CHECK(first_seg(log) == 1); /* only segment 0 went */
    int got;
    CHECK_RC(WP_ETIMEDOUT, read_in_order(r, lo.first[1], &got));
    CHECK(got == 600 - lo.first[1]);
    wp_reader_close(r);
    wp_log_close(log);
    wp_client_close(c);
}

static int seg_state(wp_log *log, int64_t seg_id)
{
    wp_segment_info *segs;
    size_t n;
    int state = -1;
    if (wp_log_segments(log, &segs, &n))
        return -1;
    for (size_t i = 0; i < n; i++)
        if (segs[i].segment_id == seg_id)
            state = segs[i].state;
    free(segs);
    return state;
}

/* A GC pass reads the readers again before each deletion: a reader that
 * registers while the pass deletes a segment (slowly) holds the next ones. */
TEST(gc_rereads_readers_before_each_deletion)
{
    const char *kv[] = {"segment.max_bytes", "4096", "retention.ttl_ms", "0",
                        "gc.interval_ms", "100", NULL};
    wp_client *c = test_client_open(test_tmpdir("rgc_c2"), kv);
    REQUIRE(c);
    layout lo;
    REQUIRE(make_log(c, "d", 600, &lo) == 0 && lo.n_segs > 4);
    wp_log *log;
    REQUIRE(wp_log_open(c, "d", &log) == 0);
    wp__gc_test_delay(c, 60000);
    CHECK_OK(wp_log_truncate(log, (wp_msg_id){2, lo.last[2]}));
    int64_t t0 = test_now_ms();
    while (seg_state(log, 0) != WP_SEG_TRUNCATED && test_now_ms() - t0 < 5000)
        test_sleep_ms(10);
    REQUIRE(seg_state(log, 0) == WP_SEG_TRUNCATED); /* the pass waits to delete segment 0 */
    wp_reader *r;
    REQUIRE(wp_reader_open(log, (wp_msg_id){1, 0}, &r) == 0);
    wp__gc_test_delay(c, 0); /* the pass goes on at full speed */
    t0 = test_now_ms();
    while (first_seg(log) == 0 && test_now_ms() - t0 < 5000)
        test_sleep_ms(10);
    test_sleep_ms(300); /* the rest of the pass, and more passes */
    CHECK(first_seg(log) == 1);
    int got;
    CHECK_RC(WP_ETIMEDOUT, read_in_order(r, lo.first[1], &got));
    CHECK(got == 600 - lo.first[1]);
    wp_reader_close(r);
    wp_log_close(log);
    wp_client_close(c);
}

int main(void)
{
    RUN(reader_gets_etruncated_not_a_later_segment);
    RUN(reader_passes_gaps_and_empty_segments);
    RUN(lease_keepalive_not_blocked_by_slow_gc);
    RUN(expired_lease_reregisters_every_reader);
    RUN(reader_open_holds_gc_before_resolving);
    RUN(gc_rereads_readers_before_each_deletion);
    return test_done();
}
