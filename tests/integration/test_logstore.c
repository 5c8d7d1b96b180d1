/* test_logstore.c — the LogStore server (woodpecker logstore) as a real
 * process on 127.0.0.1, spoken to over real sockets with the protocol
 * codec (docs/protocol.md): ADD, READ (held until entries arrive), FENCE
 * (kept across a kill -9 and restart), COMPLETE, DELETE, pipelining, bad
 * frames, and the registration in metadata (issue 10). */
#include "test.h"
#include "support/logstore_proc.h"
#include "support/testutil.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "codec/codec.h"
#include "config/config.h"
#include "meta/meta.h"
#include "net/conn.h"
#include "net/proto.h"
#include "os/os.h"

#include <sys/statvfs.h>

/* ---- the server process (tests/support/logstore_proc.c) --------------- */

typedef logstore_proc srv;

static int srv_start(srv *s, const char *dir, const char *id)
{
    return logstore_proc_start(s, dir, id, NULL);
}

static int srv_stop(srv *s, int sig) { return logstore_proc_stop(s, sig); }

/* ---- a test client ----------------------------------------------------- */

typedef struct {
    int fd;
    proto_reader rd;
    uint8_t in[1 << 16];
    size_t in_off, in_len;
    uint64_t next_id;
} cli;

static int raw_connect(const char *addr)
{
    char host[64];
    const char *colon = strrchr(addr, ':');
    snprintf(host, sizeof host, "%.*s", (int)(colon - addr), addr);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(colon + 1))};
    inet_pton(AF_INET, host, &sa.sin_addr);
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int cli_send(cli *c, uint16_t version, const proto_msg *m, uint64_t id)
{
    size_t cap = proto_frame_size(m), len = 0;
    uint8_t *b = malloc(cap);
    int rc = b ? proto_encode(version, id, m, b, cap, &len) : WP_ENOMEM;
    for (size_t off = 0; rc == WP_OK && off < len;) {
        ssize_t w = send(c->fd, b + off, len - off, MSG_NOSIGNAL);
        if (w <= 0)
            rc = WP_EIO;
        else
            off += (size_t)w;
    }
    free(b);
    return rc;
}

/* The next frame (WP_ETIMEDOUT, or WP_ECLOSED when the server closed). */
static int cli_recv(cli *c, proto_frame *f, int timeout_ms)
{
    for (;;) {
        if (c->in_off < c->in_len) {
            size_t used = 0;
            int rc = proto_reader_feed(&c->rd, c->in + c->in_off, c->in_len - c->in_off, &used, f);
            c->in_off += used;
            if (rc != WP_EAGAIN)
                return rc;
        }
        struct pollfd p = {c->fd, POLLIN, 0};
        if (poll(&p, 1, timeout_ms) != 1)
            return WP_ETIMEDOUT;
        ssize_t r = recv(c->fd, c->in, sizeof c->in, 0);
        if (r <= 0)
            return WP_ECLOSED;
        c->in_off = 0;
        c->in_len = (size_t)r;
    }
}

static int cli_open(cli *c, const char *addr)
{
    memset(c, 0, sizeof *c);
    c->fd = raw_connect(addr);
    if (c->fd < 0)
        return -1;
    proto_reader_init(&c->rd, PROTO_SIDE_CLIENT, 0);
    proto_msg h = {.type = PROTO_HELLO};
    h.u.hello = (proto_hello){.min_version = 1, .max_version = 1, .body_max = PROTO_BODY_MAX,
                              .id = "test", .id_len = 4};
    proto_frame f;
    if (cli_send(c, PROTO_HELLO_VERSION, &h, 1) || cli_recv(c, &f, 5000) ||
        f.msg.type != PROTO_HELLO_ANS)
        return -1;
    proto_reader_set_version(&c->rd, f.msg.u.hello_ans.version);
    c->next_id = 2;
    return 0;
}

static void cli_close(cli *c)
{
    close(c->fd);
    proto_reader_free(&c->rd);
}

/* One request and its answer: the answer's type, or a WP_E* code (an
 * ERROR answer's, or the connection's). *ans is valid until the next call. */
static int cli_call(cli *c, const proto_msg *m, proto_frame *ans)
{
    uint64_t id = c->next_id++;
    if (cli_send(c, 1, m, id))
        return WP_EIO;
    int rc = cli_recv(c, ans, 10000);
    if (rc)
        return rc;
    if (ans->h.request_id != id)
        return WP_ECORRUPT;
    if (ans->msg.type == PROTO_ERROR)
        return proto_error_rc(&ans->msg.u.error);
    return ans->msg.type;
}

static uint8_t recbuf[1 << 16];

/* An ADD of entries [first, first+n) "e<id>" (n 0: LAC-only). */
static proto_msg add_msg(int64_t seg, int64_t epoch, int64_t first, uint32_t n, int64_t lac)
{
    size_t off = 0;
    for (uint32_t i = 0; i < n; i++) {
        char s[32];
        int len = snprintf(s, sizeof s, "e%" PRId64, first + (int64_t)i);
        off += rec_encode(&(wp_payload){.data = s, .len = (size_t)len}, recbuf + off);
    }
    proto_msg m = {.type = PROTO_ADD};
    m.u.add = (proto_add){.log_id = 1, .segment_id = seg, .epoch = epoch, .first_entry_id = first,
                          .lac = lac, .n_entries = n, .records = n ? recbuf : NULL,
                          .records_len = off};
    return m;
}

static int add(cli *c, int64_t seg, int64_t epoch, int64_t first, uint32_t n, int64_t lac,
               int64_t *last)
{
    proto_msg m = add_msg(seg, epoch, first, n, lac);
    proto_frame f;
    int rc = cli_call(c, &m, &f);
    if (rc == PROTO_ADD_ANS && last)
        *last = f.msg.u.add_ans.last_durable;
    return rc == PROTO_ADD_ANS ? 0 : rc;
}

/* READ from `from`: the number of entries (checked "e<id>"), or a code. */
static int read_n(cli *c, int64_t seg, int64_t from, uint32_t wait_ms, uint32_t flags,
                  bool *completed)
{
    proto_msg m = {.type = PROTO_READ};
    m.u.read = (proto_read){.log_id = 1, .segment_id = seg, .from_entry_id = from,
                            .max_bytes = 1 << 20, .wait_ms = wait_ms, .flags = flags};
    proto_frame f;
    int rc = cli_call(c, &m, &f);
    if (rc != PROTO_READ_ANS)
        return rc < 0 ? rc : WP_ECORRUPT;
    const proto_read_ans *a = &f.msg.u.read_ans;
    size_t off = 0;
    for (uint32_t i = 0; i < a->n_entries; i++) {
        rec_view v;
        size_t used;
        char want[32];
        int len = snprintf(want, sizeof want, "e%" PRId64, from + (int64_t)i);
        if (rec_decode(a->records + off, a->records_len - off, &v, &used) || v.len != (size_t)len ||
            memcmp(v.data, want, v.len) != 0)
            return WP_ECORRUPT;
        off += used;
    }
    if (completed)
        *completed = a->flags & PROTO_SEG_COMPLETED;
    return (int)a->n_entries;
}

static int fence(cli *c, int64_t seg, int64_t epoch, proto_seg_state *st)
{
    proto_msg m = {.type = PROTO_FENCE};
    m.u.fence = (proto_fence){.log_id = 1, .segment_id = seg, .epoch = epoch};
    proto_frame f;
    int rc = cli_call(c, &m, &f);
    if (rc == PROTO_FENCE_ANS && st)
        *st = f.msg.u.state;
    return rc == PROTO_FENCE_ANS ? 0 : rc;
}

/* ---- tests ------------------------------------------------------------- */

TEST(add_read_fence_survive_kill9)
{
    srv s;
    const char *dir = test_tmpdir("ls1");
    REQUIRE(srv_start(&s, dir, "n1") == 0);
    cli c;
    REQUIRE(cli_open(&c, s.addr) == 0);
    int64_t last = -9;
    CHECK_OK(add(&c, 0, 1, 0, 5, -1, &last));
    CHECK(last == 4);
    CHECK_OK(add(&c, 0, 1, 5, 5, 4, &last));
    CHECK(last == 9);
    CHECK(read_n(&c, 0, 0, 0, 0, NULL) == 5); /* confirmed: up to the LAC, 4 */
    CHECK_OK(add(&c, 0, 1, 10, 0, 9, NULL)); /* LAC-only */
    CHECK(read_n(&c, 0, 0, 0, 0, NULL) == 10);
    CHECK(read_n(&c, 0, 3, 0, PROTO_READ_UNCONFIRMED, NULL) == 7);
    CHECK_RC(WP_EAGAIN, add(&c, 0, 1, 12, 1, 9, NULL)); /* a gap */
    proto_seg_state st;
    CHECK_OK(fence(&c, 0, 2, &st));
    CHECK(st.last_durable == 9 && st.lac == 9);
    CHECK_RC(WP_EFENCED, add(&c, 0, 1, 10, 1, 9, NULL));
    CHECK_RC(WP_EFENCED, fence(&c, 0, 1, NULL));
    cli_close(&c);
    CHECK(srv_stop(&s, SIGKILL) == 128 + SIGKILL);

    /* Restarted on the same data: the fence and the entries are there. */
    REQUIRE(srv_start(&s, dir, "n1") == 0);
    REQUIRE(cli_open(&c, s.addr) == 0);
    CHECK_RC(WP_EFENCED, add(&c, 0, 1, 10, 1, 9, NULL));
    CHECK(read_n(&c, 0, 0, 0, PROTO_READ_UNCONFIRMED, NULL) == 10);
    CHECK_OK(add(&c, 0, 2, 10, 2, 9, &last)); /* the new writer goes on */
    CHECK(last == 11);
    cli_close(&c);
    CHECK(srv_stop(&s, SIGTERM) == 0);
}

TEST(pipelined_adds_and_group_commit)
{
    srv s;
    REQUIRE(srv_start(&s, test_tmpdir("ls2"), "n2") == 0);
    cli c;
    REQUIRE(cli_open(&c, s.addr) == 0);
    enum { N = 300 };
    for (int i = 0; i < N; i++) {
        proto_msg m = add_msg(3, 1, i, 1, i - 1);
        CHECK_OK(cli_send(&c, 1, &m, 1000 + (uint64_t)i));
    }
    int got = 0, in_order = 1;
    for (int i = 0; i < N; i++) {
        proto_frame f;
        if (cli_recv(&c, &f, 10000) != 0)
            break;
        in_order &= f.h.request_id == 1000 + (uint64_t)i && f.msg.type == PROTO_ADD_ANS &&
                    f.msg.u.add_ans.last_durable >= i;
        got++;
    }
    CHECK(got == N && in_order);
    CHECK(read_n(&c, 3, 0, 0, PROTO_READ_UNCONFIRMED, NULL) == N);
    cli_close(&c);
    CHECK(srv_stop(&s, SIGTERM) == 0);
}

TEST(read_is_held_until_entries_arrive)
{
    srv s;
    REQUIRE(srv_start(&s, test_tmpdir("ls3"), "n3") == 0);
    cli a, b;
    REQUIRE(cli_open(&a, s.addr) == 0 && cli_open(&b, s.addr) == 0);
    CHECK_OK(add(&b, 0, 1, 0, 2, 1, NULL));
    /* Nothing past entry 1 yet: held, then answered empty after its wait. */
    int64_t t0 = test_now_ms();
    CHECK(read_n(&a, 0, 2, 300, 0, NULL) == 0);
    int64_t waited = test_now_ms() - t0;
    CHECK(waited >= 250 && waited < 3000);
    /* Held, and answered as soon as entries and their LAC arrive. */
    proto_msg r = {.type = PROTO_READ};
    r.u.read = (proto_read){.log_id = 1, .segment_id = 0, .from_entry_id = 2,
                            .max_bytes = 1 << 20, .wait_ms = 10000};
    CHECK_OK(cli_send(&a, 1, &r, 77));
    test_sleep_ms(200);
    t0 = test_now_ms();
    CHECK_OK(add(&b, 0, 1, 2, 3, 1, NULL));
    CHECK_OK(add(&b, 0, 1, 5, 0, 4, NULL));
    proto_frame f;
    CHECK_OK(cli_recv(&a, &f, 5000));
    CHECK(f.h.request_id == 77 && f.msg.type == PROTO_READ_ANS && f.msg.u.read_ans.n_entries == 3);
    CHECK(test_now_ms() - t0 < 2000);
    /* A segment not there yet is waited for, then WP_ENOENT. */
    CHECK_RC(WP_ENOENT, read_n(&a, 9, 0, 200, 0, NULL));
    cli_close(&a);
    cli_close(&b);
    CHECK(srv_stop(&s, SIGTERM) == 0);
}

/* A held READ is answered when its wait_ms is over, however often ADDs of
 * its segment wake it without giving it anything (entries it does not
 * read yet). Each wake gave it a whole new wait_ms before: a reader's call
 * outlived its own timeout and failed the connection. */
TEST(held_read_keeps_its_deadline)
{
    srv s;
    REQUIRE(srv_start(&s, test_tmpdir("ls11"), "n11") == 0);
    cli a, b;
    REQUIRE(cli_open(&a, s.addr) == 0 && cli_open(&b, s.addr) == 0);
    CHECK_OK(add(&b, 0, 1, 0, 2, 1, NULL));
    proto_msg r = {.type = PROTO_READ};
    r.u.read = (proto_read){.log_id = 1, .segment_id = 0, .from_entry_id = 500,
                            .max_bytes = 1 << 20, .wait_ms = 1000};
    int64_t t0 = test_now_ms();
    CHECK_OK(cli_send(&a, 1, &r, 78));
    /* ADDs every 100 ms for 3 s, each one waking the held READ. */
    int64_t answered = -1;
    for (int i = 2; i < 32; i++) {
        CHECK_OK(add(&b, 0, 1, i, 1, i - 1, NULL));
        proto_frame f;
        if (answered < 0 && cli_recv(&a, &f, 100) == WP_OK) {
            answered = test_now_ms() - t0;
            CHECK(f.h.request_id == 78 && f.msg.type == PROTO_READ_ANS &&
                  f.msg.u.read_ans.n_entries == 0);
        }
    }
    fprintf(stderr, "  a READ held for 1000 ms, woken every 100 ms: answered after %lld ms\n",
            (long long)answered);
    CHECK(answered >= 900 && answered < 2500);
    cli_close(&a);
    cli_close(&b);
    CHECK(srv_stop(&s, SIGTERM) == 0);
}

TEST(complete_and_delete)
{
    srv s;
    REQUIRE(srv_start(&s, test_tmpdir("ls4"), "n4") == 0);
    cli c;
    REQUIRE(cli_open(&c, s.addr) == 0);
    CHECK_OK(add(&c, 0, 1, 0, 8, 5, NULL));
    proto_msg m = {.type = PROTO_COMPLETE};
    m.u.complete = (proto_complete){.log_id = 1, .segment_id = 0, .epoch = 2, .last_entry_id = 9};
    proto_frame f;
    CHECK_RC(WP_ENOENT, cli_call(&c, &m, &f)); /* does not hold [0, 9] */
    m.u.complete.last_entry_id = 5;
    CHECK(cli_call(&c, &m, &f) == PROTO_COMPLETE_ANS);
    CHECK(f.msg.u.state.last_durable == 5 && (f.msg.u.state.flags & PROTO_SEG_COMPLETED));
    bool done = false;
    CHECK(read_n(&c, 0, 0, 0, 0, &done) == 6 && done);
    CHECK(read_n(&c, 0, 6, 5000, 0, &done) == 0 && done); /* completed: not held */
    proto_msg d = {.type = PROTO_DELETE};
    d.u.del = (proto_delete){.log_id = 1, .segment_id = -1};
    CHECK(cli_call(&c, &d, &f) == PROTO_DELETE_ANS);
    CHECK_RC(WP_EFENCED, add(&c, 0, 3, 0, 1, -1, NULL));
    CHECK_RC(WP_ENOENT, read_n(&c, 0, 0, 5000, 0, NULL)); /* deleted: at once */
    proto_msg st = {.type = PROTO_STATS};
    CHECK(cli_call(&c, &st, &f) == PROTO_STATS_ANS);
    CHECK(f.msg.u.stats_ans.segments == 0 && f.msg.u.stats_ans.connections == 1);
    cli_close(&c);
    CHECK(srv_stop(&s, SIGTERM) == 0);
}

/* A copy completed below what it holds (recovery's target: entries past
 * it were never acked) keeps serving after a restart. Its LAC hint (the
 * last entry it had written) must come down with the cut, or the
 * restarted server finds a footer below the hint and calls the copy
 * damaged. Segment 0 is cut at a block boundary, segment 1 inside a
 * block. */
TEST(completed_below_its_last_survives_restart)
{
    srv s;
    const char *dir = test_tmpdir("ls9");
    REQUIRE(srv_start(&s, dir, "n9") == 0);
    cli c;
    REQUIRE(cli_open(&c, s.addr) == 0);
    CHECK_OK(add(&c, 0, 1, 0, 6, -1, NULL)); /* 0..5: one block */
    CHECK_OK(add(&c, 0, 1, 6, 4, 5, NULL));  /* 6..9: the next */
    CHECK_OK(add(&c, 1, 1, 0, 10, -1, NULL)); /* 0..9: one block */
    proto_frame f;
    for (int64_t seg = 0; seg < 2; seg++) {
        proto_msg m = {.type = PROTO_COMPLETE};
        m.u.complete = (proto_complete){.log_id = 1, .segment_id = seg, .epoch = 2,
                                        .last_entry_id = 5};
        CHECK(cli_call(&c, &m, &f) == PROTO_COMPLETE_ANS);
        CHECK(f.msg.u.state.last_durable == 5);
    }
    for (int round = 0; round < 2; round++) { /* before and after a kill -9 */
        for (int64_t seg = 0; seg < 2; seg++) {
            bool done = false;
            int n = read_n(&c, seg, 0, 0, PROTO_READ_UNCONFIRMED, &done);
            if (n != 6)
                fprintf(stderr, "  round %d, segment %lld: %d (%s)\n", round, (long long)seg, n,
                        n < 0 ? wp_strerror(n) : "entries");
            CHECK(n == 6 && done);
        }
        cli_close(&c);
        CHECK(srv_stop(&s, SIGKILL) == 128 + SIGKILL);
        REQUIRE(srv_start(&s, dir, "n9") == 0);
        REQUIRE(cli_open(&c, s.addr) == 0);
    }
    cli_close(&c);
    CHECK(srv_stop(&s, SIGTERM) == 0);
}

/* True if the file at path holds text. */
static bool file_has(const char *path, const char *text)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    static char b[1 << 16];
    size_t n = fread(b, 1, sizeof b - 1, f);
    fclose(f);
    b[n] = '\0';
    return strstr(b, text) != NULL;
}

/* A server that lost its disk must not come back under its old node id:
 * its "no copy" answers would count as "absent" in recoveries and cut
 * acknowledged entries. The data directory is bound to the node id
 * (node.data_dir/instance, and logstore/instances/<id> in metadata). */
TEST(lost_disk_refused_under_old_id)
{
    const char *dir = test_tmpdir("ls10");
    char data[1100], log[1200], meta_path[1100];
    snprintf(data, sizeof data, "%s/data", dir);
    snprintf(log, sizeof log, "%s/server.log", dir);
    snprintf(meta_path, sizeof meta_path, "%s/meta.sqlite", dir);
    srv s;
    REQUIRE(srv_start(&s, dir, "n10") == 0);
    cli c;
    REQUIRE(cli_open(&c, s.addr) == 0);
    CHECK_OK(add(&c, 0, 1, 0, 5, -1, NULL));
    cli_close(&c);
    CHECK(srv_stop(&s, SIGKILL) == 128 + SIGKILL);
    REQUIRE(srv_start(&s, dir, "n10") == 0); /* its own disk: fine */
    CHECK(srv_stop(&s, SIGTERM) == 0);
    /* The disk is lost (the directory empty again): refused. */
    REQUIRE(os_rm_rf(data) == WP_OK);
    CHECK(srv_start(&s, dir, "n10") != 0);
    CHECK(file_has(log, "its disk was lost or replaced"));
    /* Under a new id the empty directory serves (and is that node's now)... */
    REQUIRE(srv_start(&s, dir, "n11") == 0);
    REQUIRE(cli_open(&c, s.addr) == 0);
    CHECK(read_n(&c, 0, 0, 0, PROTO_READ_UNCONFIRMED, NULL) == WP_ENOENT);
    cli_close(&c);
    CHECK(srv_stop(&s, SIGTERM) == 0);
    /* ...so n10 cannot take it; nor can a directory start as n11 twice. */
    CHECK(srv_start(&s, dir, "n10") != 0);
    CHECK(file_has(log, "this data directory belongs to node 'n11'"));
    /* The operator forgets n10's old disk: an empty directory starts as n10. */
    meta *m = NULL;
    REQUIRE(meta_sqlite_open(meta_path, &m) == 0);
    CHECK_OK(m->ops->kv_delete(m, "logstore/instances/n10", 0));
    m->ops->close(m);
    REQUIRE(os_rm_rf(data) == WP_OK);
    REQUIRE(srv_start(&s, dir, "n10") == 0);
    CHECK(srv_stop(&s, SIGTERM) == 0);
}

/* A bad frame closes that connection only; the server goes on. */
TEST(bad_frames_close_only_their_connection)
{
    srv s;
    REQUIRE(srv_start(&s, test_tmpdir("ls5"), "n5") == 0);
    cli good;
    REQUIRE(cli_open(&good, s.addr) == 0);
    static const char *const kinds[] = {"garbage", "crc", "oversized", "before-hello"};
    for (int k = 0; k < 4; k++) {
        cli bad;
        if (k == 3) {
            memset(&bad, 0, sizeof bad);
            bad.fd = raw_connect(s.addr);
            proto_reader_init(&bad.rd, PROTO_SIDE_CLIENT, 0);
        } else {
            REQUIRE(cli_open(&bad, s.addr) == 0);
        }
        uint8_t b[64];
        memset(b, 0x5a, sizeof b);
        proto_msg m = {.type = PROTO_STATS};
        size_t len = 0;
        if (k == 1 || k == 3) {
            proto_encode(1, 9, &m, b, sizeof b, &len);
            if (k == 1)
                b[20] ^= 1; /* the body CRC field: the header CRC no longer holds */
        } else if (k == 2) {
            proto_header h = {.version = 1, .type = PROTO_ADD, .request_id = 9,
                              .body_len = (uint32_t)PROTO_BODY_MAX + 1};
            proto_header_encode(&h, b);
            len = PROTO_HEADER_SIZE;
        } else {
            len = sizeof b;
        }
        CHECK(send(bad.fd, b, len, MSG_NOSIGNAL) == (ssize_t)len);
        proto_frame f;
        int rc = cli_recv(&bad, &f, 5000);
        CHECK(rc == WP_ECLOSED);
        if (rc != WP_ECLOSED)
            fprintf(stderr, "  %s: connection not closed (%d)\n", kinds[k], rc);
        cli_close(&bad);
        proto_msg st = {.type = PROTO_STATS};
        CHECK(cli_call(&good, &st, &f) == PROTO_STATS_ANS);
    }
    cli_close(&good);
    CHECK(srv_stop(&s, SIGTERM) == 0);
}

/* Registered as nodes/<id> (kind logstore) while it runs; gone after SIGTERM. */
TEST(registers_in_metadata)
{
    srv s;
    const char *dir = test_tmpdir("ls6");
    REQUIRE(srv_start(&s, dir, "node-6") == 0);
    char path[1200];
    snprintf(path, sizeof path, "%s/meta.sqlite", dir);
    meta *m = NULL;
    REQUIRE(meta_sqlite_open(path, &m) == 0);
    meta_node n;
    CHECK_OK(m->ops->node_get(m, "node-6", &n));
    CHECK(strcmp(n.kind, "logstore") == 0 && strcmp(n.addr, s.addr) == 0 &&
          strcmp(n.zone, "zone-b") == 0 && n.disk_free > 0);
    if (strcmp(n.addr, s.addr) != 0)
        fprintf(stderr, "  registered '%s' kind '%s', serving on '%s'\n", n.addr, n.kind, s.addr);
    CHECK(srv_stop(&s, SIGTERM) == 0);
    CHECK_RC(WP_ENOENT, m->ops->node_get(m, "node-6", &n));
    m->ops->close(m);
    /* A server cannot start without a valid node id, and then leaves
     * nothing on disk (no node.data_dir, no pid file). */
    static const char *const bad_ids[] = {"", "bad/id"};
    for (size_t k = 0; k < sizeof bad_ids / sizeof *bad_ids; k++) {
        char bin[2600], nodir[1100];
        snprintf(nodir, sizeof nodir, "%s/no-such-dir-%zu", test_tmpdir("ls6b"), k);
        snprintf(bin, sizeof bin, "%s/woodpecker logstore -o node.listen=127.0.0.1:0 "
                 "-o 'node.id=%s' -o node.data_dir=%s 2>/dev/null",
                 getenv("WP_BIN") ? getenv("WP_BIN") : ".", bad_ids[k], nodir);
        int st = system(bin);
        CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 1);
        CHECK(access(nodir, F_OK) != 0);
    }
}

/* The disk watermarks: below the soft one a server takes no new segment
 * (the first ADD of one it does not hold: WP_ENOSPC) but goes on with the
 * ones it holds, and registers no room; below the hard one it takes no
 * ADD with entries at all. The free space cannot be made to shrink here,
 * so the watermarks are set above it (up to 1 TiB). */
TEST(disk_watermarks)
{
    srv s;
    const char *dir = test_tmpdir("ls9");
    char path[1200];
    snprintf(path, sizeof path, "%s/meta.sqlite", dir);
    REQUIRE(srv_start(&s, dir, "node-9") == 0);
    cli c;
    REQUIRE(cli_open(&c, s.addr) == 0);
    int64_t last = -1;
    CHECK_OK(add(&c, 1, 1, 0, 10, -1, &last)); /* segment 1 exists before */
    cli_close(&c);
    CHECK(srv_stop(&s, SIGTERM) == 0);
    struct statvfs v;
    REQUIRE(statvfs(dir, &v) == 0);
    if ((unsigned long long)v.f_bavail * v.f_frsize >= 1000ULL << 30) {
        fprintf(stderr, "  SKIP: over 1000 GiB free: no watermark can be set above it\n");
        return;
    }
    /* Soft watermark above the free space, hard one at 0. */
    const char *soft[] = {"node.disk_soft_reserve_bytes=1024GiB", NULL};
    REQUIRE(logstore_proc_start_opts(&s, dir, "node-9", NULL, soft) == 0);
    REQUIRE(cli_open(&c, s.addr) == 0);
    CHECK_OK(add(&c, 1, 1, 10, 10, 9, &last)); /* the segment it holds goes on */
    CHECK(last == 19);
    CHECK_RC(WP_ENOSPC, add(&c, 2, 1, 0, 5, -1, NULL)); /* a new one: no */
    CHECK_RC(WP_ENOENT, read_n(&c, 2, 0, 0, PROTO_READ_UNCONFIRMED, NULL)); /* not created */
    meta *m = NULL;
    meta_node n;
    REQUIRE(meta_sqlite_open(path, &m) == 0);
    CHECK_OK(m->ops->node_get(m, "node-9", &n));
    CHECK(n.disk_free == 0); /* placement leaves it out */
    m->ops->close(m);
    cli_close(&c);
    CHECK(srv_stop(&s, SIGTERM) == 0);
    /* Hard watermark above the free space: no ADD with entries. */
    const char *hard[] = {"node.disk_reserve_bytes=1024GiB", NULL};
    REQUIRE(logstore_proc_start_opts(&s, dir, "node-9", NULL, hard) == 0);
    REQUIRE(cli_open(&c, s.addr) == 0);
    CHECK_RC(WP_ENOSPC, add(&c, 1, 1, 20, 5, 19, NULL));
    /* Nor when a LAC-only ADD heads the group it joins (one block, one
     * sync): both frames in one write, so the worker takes them together. */
    uint8_t two[4096];
    size_t l1 = 0, l2 = 0;
    proto_msg lac_only = add_msg(1, 1, 20, 0, 19);
    REQUIRE(proto_encode(PROTO_VERSION_MAX, 501, &lac_only, two, sizeof two, &l1) == WP_OK);
    proto_msg with = add_msg(1, 1, 20, 5, 19);
    REQUIRE(proto_encode(PROTO_VERSION_MAX, 502, &with, two + l1, sizeof two - l1, &l2) == WP_OK);
    CHECK(send(c.fd, two, l1 + l2, MSG_NOSIGNAL) == (ssize_t)(l1 + l2));
    for (int i = 0; i < 2; i++) {
        proto_frame f;
        CHECK_OK(cli_recv(&c, &f, 5000));
        if (f.h.request_id == 502)
            CHECK(f.msg.type == PROTO_ERROR && f.msg.u.error.code == WP_ENOSPC);
    }
    CHECK(read_n(&c, 1, 0, 0, PROTO_READ_UNCONFIRMED, NULL) == 20); /* what it holds is read */
    cli_close(&c);
    CHECK(srv_stop(&s, SIGTERM) == 0);
}

/* ---- the client's pipelined connection (src/net/conn.c) ----------------- */

typedef struct {
    pthread_mutex_t mu;
    int ok, unavailable, other;
    int64_t max_last;
} tally;

static void tally_cb(void *arg, int rc, const proto_frame *f)
{
    tally *t = arg;
    pthread_mutex_lock(&t->mu);
    if (rc == WP_OK && f->msg.type == PROTO_ADD_ANS) {
        t->ok++;
        if (f->msg.u.add_ans.last_durable > t->max_last)
            t->max_last = f->msg.u.add_ans.last_durable;
    } else if (rc == WP_EUNAVAILABLE) {
        t->unavailable++;
    } else {
        t->other++;
    }
    pthread_mutex_unlock(&t->mu);
}

static int tally_total(tally *t)
{
    pthread_mutex_lock(&t->mu);
    int n = t->ok + t->unavailable + t->other;
    pthread_mutex_unlock(&t->mu);
    return n;
}

/* A "server" on a loopback socket (a thread of this test) that answers
 * HELLO properly, then every request with `wrong`'s kind of answer. */
typedef struct {
    int lfd;
    uint16_t wrong;
} wrong_srv;

static void *wrong_srv_main(void *arg)
{
    wrong_srv *w = arg;
    int fd = accept(w->lfd, NULL, NULL);
    if (fd < 0)
        return NULL;
    proto_reader rd;
    proto_reader_init(&rd, PROTO_SIDE_SERVER, 0);
    uint8_t in[65536], out[4096];
    ssize_t got;
    bool hello = false;
    while ((got = recv(fd, in, sizeof in, 0)) > 0) {
        size_t off = 0;
        while (off < (size_t)got) {
            size_t used = 0;
            proto_frame f;
            int rc = proto_reader_feed(&rd, in + off, (size_t)got - off, &used, &f);
            off += used;
            if (rc == WP_EAGAIN)
                break;
            if (rc)
                goto out;
            proto_msg m = {0};
            uint16_t v = PROTO_VERSION_MAX;
            if (!hello) {
                m.type = PROTO_HELLO_ANS;
                m.u.hello_ans = (proto_hello_ans){.version = PROTO_VERSION_MAX,
                                                  .body_max = PROTO_BODY_MAX, .id = "liar",
                                                  .id_len = 4};
                v = PROTO_HELLO_VERSION;
                hello = true;
            } else {
                m.type = w->wrong;
                if (m.type == PROTO_ADD_ANS)
                    m.u.add_ans.last_durable = 5;
                else if (m.type == PROTO_READ_ANS) /* from another entry than asked */
                    m.u.read_ans = (proto_read_ans){
                        .first_entry_id = f.msg.type == PROTO_READ ? f.msg.u.read.from_entry_id + 7
                                                                   : 0,
                        .lac = -1, .last_durable = -1};
                else
                    m.u.state = (proto_seg_state){.last_durable = 5, .lac = -1};
            }
            size_t len = 0;
            if (proto_encode(v, f.h.request_id, &m, out, sizeof out, &len) != WP_OK ||
                send(fd, out, len, MSG_NOSIGNAL) != (ssize_t)len)
                goto out;
            if (m.type == PROTO_HELLO_ANS)
                proto_reader_set_version(&rd, PROTO_VERSION_MAX);
        }
    }
out:
    proto_reader_free(&rd);
    close(fd);
    return NULL;
}

/* An answer of another kind than its request (a FENCE answered like an
 * ADD or a READ), or a READ answered from another entry than asked, is a
 * protocol error: the call fails, the caller never
 * reads it as its own (before: pconn_call returned it as the FENCE's
 * answer, read through the wrong union member), and the connection is
 * failed (docs/protocol.md section 2). */
TEST(answer_of_another_kind_fails_the_call)
{
    static const uint16_t wrongs[] = {PROTO_ADD_ANS, PROTO_READ_ANS};
    for (size_t k = 0; k < sizeof wrongs / sizeof *wrongs; k++) {
        wrong_srv w = {.wrong = wrongs[k]};
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t al = sizeof a;
        w.lfd = socket(AF_INET, SOCK_STREAM, 0);
        REQUIRE(w.lfd >= 0 && bind(w.lfd, (struct sockaddr *)&a, sizeof a) == 0 &&
                listen(w.lfd, 4) == 0 && getsockname(w.lfd, (struct sockaddr *)&a, &al) == 0);
        pthread_t t;
        REQUIRE(pthread_create(&t, NULL, wrong_srv_main, &w) == 0);
        char addr[64];
        snprintf(addr, sizeof addr, "127.0.0.1:%d", ntohs(a.sin_port));
        pconn *c = NULL;
        CHECK_OK(pconn_open(addr, "test-client", 5000, &c));
        if (c) {
            proto_msg q = {.type = PROTO_FENCE}, ans;
            q.u.fence = (proto_fence){.log_id = 1, .segment_id = 0, .epoch = 1};
            uint8_t *body = NULL;
            CHECK_RC(WP_EUNAVAILABLE, pconn_call(c, &q, 5000, &ans, &body));
            CHECK(strstr(wp_errmsg(), "answer of type") != NULL);
            CHECK(!pconn_alive(c));
            pconn_close(c);
        }
        if (wrongs[k] == PROTO_READ_ANS) { /* a READ answered from another entry */
            pthread_join(t, NULL);
            REQUIRE(pthread_create(&t, NULL, wrong_srv_main, &w) == 0);
            c = NULL;
            CHECK_OK(pconn_open(addr, "test-client", 5000, &c));
            if (c) {
                proto_msg q = {.type = PROTO_READ}, ans;
                q.u.read = (proto_read){.log_id = 1, .segment_id = 0, .from_entry_id = 3,
                                        .max_bytes = 4096};
                uint8_t *body = NULL;
                CHECK_RC(WP_EUNAVAILABLE, pconn_call(c, &q, 5000, &ans, &body));
                CHECK(strstr(wp_errmsg(), "READ answer from entry 10 to a READ from 3") != NULL);
                pconn_close(c);
            }
        }
        close(w.lfd); /* (the thread saw the connection close) */
        pthread_join(t, NULL);
    }
}

TEST(pipelined_connection)
{
    srv s;
    REQUIRE(srv_start(&s, test_tmpdir("ls7"), "n7") == 0);
    pconn *c = NULL;
    CHECK_OK(pconn_open(s.addr, "test-client", 5000, &c));
    REQUIRE(c);
    CHECK(strstr(pconn_peer(c), "n7") != NULL);
    /* 2000 ADDs in flight (more than PROTO_INFLIGHT_MAX: sends wait for room). */
    enum { N = 2000 };
    tally t = {.mu = PTHREAD_MUTEX_INITIALIZER, .max_last = -1};
    static uint8_t recs[N][32];
    for (int i = 0; i < N; i++) {
        char p[32];
        int len = snprintf(p, sizeof p, "e%d", i);
        size_t rl = rec_encode(&(wp_payload){.data = p, .len = (size_t)len}, recs[i]);
        proto_msg m = {.type = PROTO_ADD};
        m.u.add = (proto_add){.log_id = 1, .segment_id = 0, .epoch = 1, .first_entry_id = i,
                              .lac = i - 1, .n_entries = 1, .records = recs[i], .records_len = rl};
        CHECK_OK(pconn_send(c, &m, tally_cb, &t));
    }
    for (int i = 0; i < 500 && tally_total(&t) < N; i++)
        test_sleep_ms(10);
    CHECK(t.ok == N && t.max_last == N - 1 && t.unavailable == 0 && t.other == 0);
    /* A call: an answer, or the server's error with its message. */
    proto_msg q = {.type = PROTO_READ_LAC}, ans;
    q.u.read_lac = (proto_read_lac){.log_id = 1, .segment_id = 0};
    uint8_t *body = NULL;
    CHECK_OK(pconn_call(c, &q, 5000, &ans, &body));
    CHECK(ans.type == PROTO_READ_LAC_ANS && ans.u.state.last_durable == N - 1);
    free(body);
    q.u.read_lac.segment_id = 5;
    CHECK_RC(WP_ENOENT, pconn_call(c, &q, 5000, &ans, &body));
    CHECK(strstr(wp_errmsg(), "server") != NULL);
    /* A held READ, then the server dies: outcome unknown, never a hang. */
    proto_msg r = {.type = PROTO_READ};
    r.u.read = (proto_read){.log_id = 1, .segment_id = 0, .from_entry_id = N, .max_bytes = 4096,
                            .wait_ms = 30000};
    tally t2 = {.mu = PTHREAD_MUTEX_INITIALIZER, .max_last = -1};
    CHECK_OK(pconn_send(c, &r, tally_cb, &t2));
    test_sleep_ms(100);
    CHECK(srv_stop(&s, SIGKILL) == 128 + SIGKILL);
    for (int i = 0; i < 500 && tally_total(&t2) < 1; i++)
        test_sleep_ms(10);
    CHECK(t2.unavailable == 1);
    CHECK(!pconn_alive(c));
    CHECK_RC(WP_EUNAVAILABLE, pconn_send(c, &r, tally_cb, &t2));
    pconn_close(c);
    /* Nothing listens there now: a clear error, no hang. */
    c = NULL;
    CHECK_RC(WP_EUNAVAILABLE, pconn_open(s.addr, "test-client", 2000, &c));
    CHECK(c == NULL);
}

/* A connection with PROTO_INFLIGHT_MAX requests unanswered (held READs) is
 * not read further; once answers go out it is read again and its queued
 * request answered (docs/protocol.md §2: backpressure, not an error). */
TEST(inflight_limit_pauses_then_resumes)
{
    srv s;
    REQUIRE(srv_start(&s, test_tmpdir("ls8"), "n8") == 0);
    cli a, b;
    REQUIRE(cli_open(&a, s.addr) == 0 && cli_open(&b, s.addr) == 0);
    proto_msg r = {.type = PROTO_READ};
    r.u.read = (proto_read){.log_id = 1, .segment_id = 0, .from_entry_id = 0,
                            .max_bytes = 4096, .wait_ms = 20000};
    for (int i = 0; i < PROTO_INFLIGHT_MAX; i++)
        CHECK_OK(cli_send(&a, 1, &r, 10 + (uint64_t)i));
    proto_msg st = {.type = PROTO_STATS};
    CHECK_OK(cli_send(&a, 1, &st, 5));
    proto_frame f;
    CHECK_RC(WP_ETIMEDOUT, cli_recv(&a, &f, 500)); /* all held; STATS not read */
    CHECK_OK(add(&b, 0, 1, 0, 1, -1, NULL));
    CHECK_OK(add(&b, 0, 1, 1, 0, 0, NULL)); /* the LAC: the READs can answer */
    int reads = 0, stats = 0;
    while (reads + stats < PROTO_INFLIGHT_MAX + 1 && cli_recv(&a, &f, 10000) == WP_OK) {
        reads += f.msg.type == PROTO_READ_ANS && f.msg.u.read_ans.n_entries == 1;
        stats += f.msg.type == PROTO_STATS_ANS && f.h.request_id == 5;
    }
    CHECK(reads == PROTO_INFLIGHT_MAX && stats == 1);
    cli_close(&a);
    cli_close(&b);
    CHECK(srv_stop(&s, SIGTERM) == 0);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    RUN(add_read_fence_survive_kill9);
    RUN(pipelined_adds_and_group_commit);
    RUN(read_is_held_until_entries_arrive);
    RUN(held_read_keeps_its_deadline);
    RUN(complete_and_delete);
    RUN(completed_below_its_last_survives_restart);
    RUN(lost_disk_refused_under_old_id);
    RUN(bad_frames_close_only_their_connection);
    RUN(registers_in_metadata);
    RUN(disk_watermarks);
    RUN(pipelined_connection);
    RUN(answer_of_another_kind_fails_the_call);
    RUN(inflight_limit_pauses_then_resumes);
    return test_done();
}
