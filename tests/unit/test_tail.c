/* test_tail.c — the streaming node's tail cache (stream/tail.h): frames
 * come out as the binary stream's frames, whole, in order, many at once;
 * a stream finds its place only by an id the tail holds; eviction by the
 * byte budget sends a stream back (TAIL_BEHIND) and never skips a frame;
 * a frame above the reader's buffer is reported with its size; nothing is
 * kept with no stream attached; a reader waits for a writer's put. */
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <string.h>

#include "base/err.h"
#include "codec/wpm.h"
#include "stream/tail.h"
#include "test.h"

static const char *keys[] = {"wp.p", "wp.s"};

/* Puts message i (payload "m<i>" padded to len, props wp.p/wp.s) and
 * does not mark it durable. */
static tail_tok put_pending(tail *t, int64_t i, size_t len)
{
    char payload[4096], seq[24];
    memset(payload, 'x', sizeof payload);
    int k = snprintf(payload, sizeof payload, "m%lld", (long long)i);
    payload[k] = 'x';
    snprintf(seq, sizeof seq, "%lld", (long long)i);
    const char *vals[] = {"p1", seq};
    return tail_put(t, payload, len, 2, keys, vals);
}

/* Puts message i as id 1:i, durable. */
static void put(tail *t, int64_t i, size_t len)
{
    tail_durable(t, put_pending(t, i, len), 0, (wp_msg_id){1, i});
}

/* Decodes the frames in b[0..n): every one an 'M' with the next id after
 * *expect (advanced), payload starting "m<id>", wp.s = the entry id. */
static int check_frames(const uint8_t *b, size_t n, int64_t *expect)
{
    int frames = 0;
    while (n > 0) {
        char type, why[WPM_WHY_MAX + 1];
        wpm_msg m;
        const char *end;
        size_t end_len, need;
        long long k = wpm_frame_decode(b, n, 1 << 20, &type, &m, &end, &end_len, &need, why);
        if (k <= 0 || type != 'M' || m.id.segment_id != 1 || m.id.entry_id != *expect)
            return -1;
        char want[32];
        int wl = snprintf(want, sizeof want, "m%lld", (long long)*expect);
        if (m.len < (size_t)wl || memcmp(m.data, want, (size_t)wl) != 0 || m.n_props != 2)
            return -1;
        size_t off = 0, kl, vl;
        const char *key, *val;
        wpm_prop_next(&m, &off, &key, &kl, &val, &vl);
        wpm_prop_next(&m, &off, &key, &kl, &val, &vl);
        if (strcmp(key, "wp.s") != 0 || strtoll(val, NULL, 10) != *expect)
            return -1;
        (*expect)++;
        frames++;
        b += k;
        n -= (size_t)k;
    }
    return frames;
}

TEST(nothing_kept_without_a_stream)
{
    tail *t = tail_new(1 << 20);
    put(t, 0, 100);
    uint64_t cur;
    CHECK(!tail_seek(t, (wp_msg_id){1, 0}, &cur));
    tail_attach(t);
    CHECK(!tail_seek(t, (wp_msg_id){1, 0}, &cur));
    put(t, 1, 100);
    put(t, 2, 100);
    CHECK(tail_seek(t, (wp_msg_id){1, 1}, &cur));
    CHECK(!tail_seek(t, (wp_msg_id){1, 0}, &cur)); /* before what it holds */
    CHECK(!tail_seek(t, (wp_msg_id){0, 5}, &cur));
    CHECK(!tail_seek(t, (wp_msg_id){1, 3}, &cur)); /* after it */
    tail_detach(t); /* the last stream: everything goes */
    tail_attach(t);
    CHECK(!tail_seek(t, (wp_msg_id){1, 1}, &cur));
    tail_detach(t);
    tail_free(t);
}

TEST(whole_frames_in_order_many_at_once)
{
    tail *t = tail_new(4 << 20);
    tail_attach(t);
    for (int64_t i = 0; i < 1000; i++)
        put(t, i, 1000);
    uint64_t cur;
    CHECK(tail_seek(t, (wp_msg_id){1, 9}, &cur));
    static uint8_t buf[64 * 1024];
    int64_t expect = 10;
    wp_msg_id last = {-1, -1};
    size_t need = 0;
    int reads = 0;
    for (;;) {
        ssize_t k = tail_read(t, &cur, buf, sizeof buf, 0, &last, &need);
        CHECK(k >= 0);
        if (k <= 0)
            break;
        reads++;
        int f = check_frames(buf, (size_t)k, &expect);
        CHECK(f >= 1);
        CHECK(last.segment_id == 1 && last.entry_id == expect - 1);
    }
    CHECK(expect == 1000);
    CHECK(reads < 40); /* 990 frames of ~1 KiB in 64 KiB reads */
    /* A small buffer still gets whole frames, one at a time. */
    CHECK(tail_seek(t, (wp_msg_id){1, 500}, &cur));
    ssize_t k = tail_read(t, &cur, buf, 1100, 0, &last, &need);
    expect = 501;
    CHECK(k > 1000 && check_frames(buf, (size_t)k, &expect) == 1);
    /* A frame above the buffer: its size, and the cursor stays. */
    k = tail_read(t, &cur, buf, 100, 0, &last, &need);
    CHECK(k == TAIL_TOO_BIG && need > 1000 && need < 1100);
    k = tail_read(t, &cur, buf, need, 0, &last, &need);
    CHECK(k > 0 && check_frames(buf, (size_t)k, &expect) == 1 && expect == 503);
    tail_detach(t);
    tail_free(t);
}

TEST(eviction_sends_a_stream_back)
{
    tail *t = tail_new(300 * 1024); /* about one block of 256 KiB kept */
    tail_attach(t);
    put(t, 0, 1000);
    uint64_t cur;
    CHECK(tail_seek(t, (wp_msg_id){1, 0}, &cur));
    for (int64_t i = 1; i < 2000; i++)
        put(t, i, 1000);
    static uint8_t buf[4096];
    wp_msg_id last = {1, 0};
    size_t need;
    CHECK(tail_read(t, &cur, buf, sizeof buf, 0, &last, &need) == TAIL_BEHIND);
    CHECK(last.entry_id == 0); /* where the stream goes on from the log */
    CHECK(!tail_seek(t, (wp_msg_id){1, 0}, &cur));
    CHECK(tail_seek(t, (wp_msg_id){1, 1998}, &cur));
    int64_t expect = 1999;
    ssize_t k = tail_read(t, &cur, buf, sizeof buf, 0, &last, &need);
    CHECK(k > 0 && check_frames(buf, (size_t)k, &expect) == 1);
    tail_detach(t);
    tail_free(t);
}

TEST(frame_above_a_block)
{
    tail *t = tail_new(1024); /* below one block: only the newest is kept */
    tail_attach(t);
    put(t, 0, 10);
    put(t, 1, 10);
    uint64_t cur;
    CHECK(tail_seek(t, (wp_msg_id){1, 1}, &cur));
    size_t big = 300 * 1024;
    uint8_t *payload = malloc(big), *buf = malloc(big + 1024);
    REQUIRE(payload && buf);
    memcpy(payload, "m2", 2);
    memset(payload + 2, 'y', big - 2);
    const char *vals[] = {"p1", "2"};
    tail_durable(t, tail_put(t, payload, big, 2, keys, vals), 0, (wp_msg_id){1, 2});
    uint64_t c0;
    CHECK(!tail_seek(t, (wp_msg_id){1, 0}, &c0)); /* its block went */
    wp_msg_id last = {1, 1};
    size_t need = 0;
    CHECK(tail_read(t, &cur, buf, 64 * 1024, 0, &last, &need) == TAIL_TOO_BIG);
    CHECK(need > big && need < big + 100 && last.entry_id == 1);
    int64_t expect = 2;
    ssize_t k = tail_read(t, &cur, buf, need, 0, &last, &need);
    CHECK(k > 0 && check_frames(buf, (size_t)k, &expect) == 1 && last.entry_id == 2);
    put(t, 3, 10); /* a new block; the big one goes */
    CHECK(!tail_seek(t, (wp_msg_id){1, 2}, &c0));
    k = tail_read(t, &cur, buf, 64 * 1024, 0, &last, &need);
    CHECK(k > 0 && check_frames(buf, (size_t)k, &expect) == 1 && last.entry_id == 3);
    free(buf);
    free(payload);
    tail_detach(t);
    tail_free(t);
}

typedef struct {
    tail *t;
    int n;
} writer_arg;

static void *writer_main(void *a)
{
    writer_arg *w = a;
    for (int64_t i = 1; i <= w->n; i++) {
        put(w->t, i, 16 + (size_t)(i * 37 % 2000));
        if (i % 64 == 0)
            sched_yield();
    }
    return NULL;
}

TEST(reader_follows_a_writer)
{
    tail *t = tail_new(64 * 1024); /* small: the reader may fall behind */
    tail_attach(t);
    put(t, 0, 10);
    uint64_t cur;
    CHECK(tail_seek(t, (wp_msg_id){1, 0}, &cur));
    writer_arg w = {t, 20000};
    pthread_t thr;
    CHECK(pthread_create(&thr, NULL, writer_main, &w) == 0);
    static uint8_t buf[16 * 1024];
    int64_t expect = 1;
    wp_msg_id last = {1, 0};
    int behind = 0;
    while (expect <= w.n) {
        size_t need;
        ssize_t k = tail_read(t, &cur, buf, sizeof buf, 1000, &last, &need);
        if (k == TAIL_BEHIND) {
            /* What a stream does: the log from last on; here, the next
             * frames it holds, found again by an id it holds. */
            behind++;
            CHECK(last.entry_id == expect - 1);
            while (!tail_seek(t, (wp_msg_id){1, expect - 1}, &cur) && expect <= w.n)
                expect++; /* "read from the log" */
            last = (wp_msg_id){1, expect - 1};
            continue;
        }
        REQUIRE(k > 0);
        REQUIRE(check_frames(buf, (size_t)k, &expect) > 0);
        CHECK(last.entry_id == expect - 1);
    }
    pthread_join(thr, NULL);
    CHECK(expect == w.n + 1);
    tail_detach(t);
    tail_free(t);
}

/* Frames are readable once durable, in order; a refused append takes its
 * frame back; after a failed writer nothing more is kept; a drop while
 * frames are pending leaves their callbacks nothing to mark. */
TEST(pending_until_durable)
{
    tail *t = tail_new(4 << 20);
    tail_attach(t);
    put(t, 0, 10);
    uint64_t cur;
    CHECK(tail_seek(t, (wp_msg_id){1, 0}, &cur));
    tail_tok a = put_pending(t, 1, 100), b = put_pending(t, 2, 100);
    CHECK(a.gen != 0 && b.g == a.g + 1);
    static uint8_t buf[4096];
    wp_msg_id last = {1, 0};
    size_t need;
    CHECK(tail_read(t, &cur, buf, sizeof buf, 0, &last, &need) == 0); /* none durable */
    uint64_t c2;
    CHECK(!tail_seek(t, (wp_msg_id){1, 1}, &c2));
    tail_durable(t, a, 0, (wp_msg_id){1, 1});
    int64_t expect = 1;
    ssize_t k = tail_read(t, &cur, buf, sizeof buf, 0, &last, &need);
    CHECK(k > 0 && check_frames(buf, (size_t)k, &expect) == 1 && last.entry_id == 1);
    tail_tok c = put_pending(t, 99, 50); /* refused by the writer at once */
    tail_unput(t, c);
    tail_durable(t, b, 0, (wp_msg_id){1, 2});
    put(t, 3, 100);
    k = tail_read(t, &cur, buf, sizeof buf, 0, &last, &need);
    CHECK(k > 0 && check_frames(buf, (size_t)k, &expect) == 2 && last.entry_id == 3);
    /* The writer fails: 4 never becomes readable, nothing more is kept. */
    tail_tok d = put_pending(t, 4, 10);
    tail_durable(t, d, WP_EIO, (wp_msg_id){-1, -1});
    CHECK(put_pending(t, 5, 10).gen == 0);
    CHECK(tail_read(t, &cur, buf, sizeof buf, 0, &last, &need) == 0);
    tail_detach(t);
    tail_free(t);
    /* Dropped with frames pending (the last stream went). */
    t = tail_new(4 << 20);
    tail_attach(t);
    tail_tok e = put_pending(t, 0, 10);
    tail_detach(t);
    tail_attach(t);
    tail_durable(t, e, 0, (wp_msg_id){1, 0}); /* its generation is gone */
    CHECK(!tail_seek(t, (wp_msg_id){1, 0}, &c2));
    put(t, 1, 10);
    CHECK(tail_seek(t, (wp_msg_id){1, 1}, &c2));
    tail_detach(t);
    tail_free(t);
}

TEST(read_waits_then_times_out)
{
    tail *t = tail_new(1 << 20);
    tail_attach(t);
    put(t, 0, 10);
    uint64_t cur;
    CHECK(tail_seek(t, (wp_msg_id){1, 0}, &cur));
    uint8_t buf[256];
    wp_msg_id last;
    size_t need;
    int64_t t0 = wp__now_ns();
    CHECK(tail_read(t, &cur, buf, sizeof buf, 50, &last, &need) == 0);
    CHECK(wp__now_ns() - t0 >= 45 * 1000000LL);
    tail_detach(t);
    tail_free(t);
}

int main(void)
{
    RUN(nothing_kept_without_a_stream);
    RUN(whole_frames_in_order_many_at_once);
    RUN(eviction_sends_a_stream_back);
    RUN(frame_above_a_block);
    RUN(reader_follows_a_writer);
    RUN(read_waits_then_times_out);
    RUN(pending_until_durable);
    return test_done();
}
