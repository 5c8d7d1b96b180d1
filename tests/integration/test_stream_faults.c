/* test_stream_faults.c — the streaming client (include/woodpecker_stream.h)
 * against what a real streaming node never does. A consumer gets stream
 * bytes with a frame that does not decode after good ones, a frame above
 * the bound, no magic, another content type; a producer's connection is
 * closed in the middle of a request body (curl then rewinds the body
 * through the client's seek callback and sends it again on a new
 * connection; no real node cuts a body off). The "node" is a thread of
 * this test on a real loopback socket that answers the consumer's GET with
 * the bytes a scenario gives (fault injection: these faults cannot be made
 * with our node); the channel record that sends the consumer there is a
 * real record in SQLite metadata. Every message before the fault must
 * come out whole (payload, NUL, properties), then the consumer ends with
 * the fault's error; under ASan a message that points past its batch is
 * a failure. */
#include "test.h"
#include "codec/wpm.h"
#include "meta/meta.h"
#include "stream/stream.h"
#include "support/testutil.h"
#include "woodpecker_stream.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>

#define CONNS_MAX 3
#define WRITES_MAX 4

/* What the fake node sends on one connection: an HTTP head, then writes
 * of bytes, each after a pause; then it closes (close_after) or holds the
 * connection until the consumer closes it. */
typedef struct {
    const char *content_type;
    struct {
        uint8_t *p;
        size_t n;
        int pause_ms;
    } w[WRITES_MAX];
    int n_w;
    bool close_after;
} fconn;

typedef struct {
    int lfd;
    fconn conns[CONNS_MAX];
    int n_conns;
    char request_line[CONNS_MAX][512]; /* what each connection asked for */
    int served;
} fnode;

static bool send_all(int fd, const void *p, size_t n)
{
    const uint8_t *b = p;
    while (n > 0) {
        ssize_t k = send(fd, b, n, MSG_NOSIGNAL);
        if (k <= 0)
            return false;
        b += k;
        n -= (size_t)k;
    }
    return true;
}

/* Reads the request's head (up to the blank line); its first line into line. */
static bool read_head(int fd, char *line, size_t cap)
{
    char buf[8192];
    size_t len = 0;
    while (len < sizeof buf - 1) {
        struct pollfd pf = {.fd = fd, .events = POLLIN};
        if (poll(&pf, 1, 20000) != 1)
            return false;
        ssize_t k = recv(fd, buf + len, sizeof buf - 1 - len, 0);
        if (k <= 0)
            return false;
        len += (size_t)k;
        buf[len] = '\0';
        if (strstr(buf, "\r\n\r\n")) {
            size_t l = strcspn(buf, "\r\n");
            snprintf(line, cap, "%.*s", (int)l, buf);
            return true;
        }
    }
    return false;
}

static void *fnode_main(void *arg)
{
    fnode *f = arg;
    for (int i = 0; i < f->n_conns; i++) {
        struct pollfd pl = {.fd = f->lfd, .events = POLLIN};
        if (poll(&pl, 1, 20000) != 1)
            break;
        int fd = accept(f->lfd, NULL, NULL);
        if (fd < 0)
            break;
        const fconn *c = &f->conns[i];
        if (read_head(fd, f->request_line[i], sizeof f->request_line[i])) {
            char head[256];
            int hl = snprintf(head, sizeof head, "HTTP/1.1 200 OK\r\nContent-Type: %s\r\n"
                              "Connection: close\r\n\r\n", c->content_type);
            bool ok = send_all(fd, head, (size_t)hl);
            for (int k = 0; ok && k < c->n_w; k++) {
                if (c->w[k].pause_ms)
                    test_sleep_ms(c->w[k].pause_ms);
                ok = send_all(fd, c->w[k].p, c->w[k].n);
            }
            if (ok && !c->close_after) { /* until the consumer lets go (at most 20 s) */
                char b[256];
                struct pollfd pf = {.fd = fd, .events = POLLIN};
                while (poll(&pf, 1, 20000) == 1 && recv(fd, b, sizeof b, 0) > 0)
                    ;
            }
        }
        close(fd);
        f->served = i + 1;
    }
    return NULL;
}

/* ---- stream bytes ---------------------------------------------------------------- */

typedef struct {
    uint8_t b[4096];
    size_t n;
} sbuf;

static void put(sbuf *s, const void *p, size_t n)
{
    memcpy(s->b + s->n, p, n);
    s->n += n;
}

static void put_msg(sbuf *s, int64_t seg, int64_t ent, const char *payload, const char *key,
                    const char *val)
{
    const char *keys[1] = {key}, *vals[1] = {val};
    size_t np = key ? 1 : 0, len = strlen(payload);
    size_t k = WPM_FRAME_MSG_FIXED + wpm_props_size(np, keys, vals) + len;
    wpm_put_frame_msg(s->b + s->n, (wp_msg_id){seg, ent}, (const uint8_t *)payload, len, np, keys,
                      vals);
    s->n += k;
}

/* ---- the consumer's side ---------------------------------------------------------- */

static char o_path[1200], o_prefix[64];

static wp_config *cfg_new(const char *dir, const char *tag)
{
    wp_config *cfg = NULL;
    if (wp_config_default(&cfg) != WP_OK)
        return NULL;
    snprintf(o_path, sizeof o_path, "%s/meta.sqlite", dir);
    snprintf(o_prefix, sizeof o_prefix, "sf-%s/", tag);
    if (wp_config_set(cfg, "meta.type", "sqlite") || wp_config_set(cfg, "meta.path", o_path) ||
        wp_config_set(cfg, "meta.prefix", o_prefix) ||
        wp_config_set(cfg, "stream.assign_interval_ms", "100")) {
        wp_config_free(cfg);
        return NULL;
    }
    return cfg;
}

/* Starts the fake node on 127.0.0.1 and writes channel "f"'s record
 * (term 1) naming it as the owner. */
static bool setup(fnode *f, const wp_config *cfg, pthread_t *thr)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof sa;
    f->lfd = socket(AF_INET, SOCK_STREAM, 0);
    if (f->lfd < 0 || bind(f->lfd, (struct sockaddr *)&sa, sizeof sa) || listen(f->lfd, 4) ||
        getsockname(f->lfd, (struct sockaddr *)&sa, &sl))
        return false;
    stream_channel rec = {.name = "f", .term = 1, .owner = "fake", .created_ms = 1};
    snprintf(rec.addr, sizeof rec.addr, "127.0.0.1:%d", ntohs(sa.sin_port));
    meta *m = NULL;
    if (meta_open(cfg, &m) != WP_OK)
        return false;
    char *v = stream_channel_json(&rec);
    int rc = v ? m->ops->kv_put(m, STREAM_KEY_CHANNELS "f", v, strlen(v), 0, 0, NULL) : WP_ENOMEM;
    free(v);
    m->ops->close(m);
    if (rc != WP_OK) {
        fprintf(stderr, "  channel record: %s (%s)\n", wp_strerror(rc), wp_errmsg());
        return false;
    }
    return pthread_create(thr, NULL, fnode_main, f) == 0;
}

/* The next message: want its id, payload (with the NUL after it) and, if
 * key, its one property. */
static bool got(wps_consumer *co, int64_t seg, int64_t ent, const char *payload, const char *key,
                const char *val)
{
    wps_message m;
    int rc = wps_consume(co, 20000, &m);
    if (rc != WP_OK) {
        fprintf(stderr, "  want %" PRId64 ":%" PRId64 ": %s (%s)\n", seg, ent, wp_strerror(rc),
                wp_errmsg());
        return false;
    }
    size_t len = strlen(payload);
    bool ok = m.id.segment_id == seg && m.id.entry_id == ent && m.len == len &&
              memcmp(m.data, payload, len) == 0 && ((const char *)m.data)[len] == '\0';
    if (key)
        ok = ok && m.n_props == 1 && strcmp(m.prop_keys[0], key) == 0 &&
             strcmp(m.prop_values[0], val) == 0;
    else
        ok = ok && m.n_props == 0;
    if (!ok)
        fprintf(stderr, "  want %" PRId64 ":%" PRId64 " '%s', got %" PRId64 ":%" PRId64
                " of %zu bytes\n", seg, ent, payload, m.id.segment_id, m.id.entry_id, m.len);
    return ok;
}

/* Runs the scenario in f: the consumer from the start must return the
 * messages of want[] (NULL-terminated payloads, ids 0:0, 0:1, ...), then
 * end with want_rc whose message contains want_msg. */
static void run(const char *tag, fnode *f, const char *const *want, int want_rc,
                const char *want_msg)
{
    const char *dir = test_tmpdir(tag);
    wp_config *cfg = cfg_new(dir, tag);
    REQUIRE(cfg);
    pthread_t thr;
    bool started = setup(f, cfg, &thr);
    wps_client *c = NULL;
    wps_consumer *co = NULL;
    if (started)
        CHECK_OK(wps_client_open(cfg, &c));
    if (c)
        CHECK_OK(wps_consumer_open(c, "f", WPS_FROM_ALL, (wp_msg_id){0, 0}, &co));
    for (int i = 0; co && want[i]; i++) {
        char key[16], val[16];
        snprintf(key, sizeof key, "k%d", i);
        snprintf(val, sizeof val, "v%d", i);
        CHECK(got(co, 0, i, want[i], i % 2 ? key : NULL, val));
    }
    if (co) {
        wps_message m;
        int64_t t0 = test_now_ms();
        int rc = wps_consume(co, 20000, &m);
        CHECK_RC(want_rc, rc);
        if (want_msg && !strstr(wp_errmsg(), want_msg)) {
            fprintf(stderr, "  error '%s' lacks '%s'\n", wp_errmsg(), want_msg);
            CHECK(false);
        }
        CHECK(test_now_ms() - t0 < 10000); /* the fault ends the stream, it is not retried */
        CHECK_RC(want_rc, wps_consume(co, 0, &m)); /* and stays ended */
    }
    wps_consumer_close(co); /* the fake node's held connection ends */
    wps_client_close(c);
    if (started)
        pthread_join(thr, NULL);
    if (f->lfd >= 0)
        close(f->lfd);
    wp_config_free(cfg);
}

/* Stream bytes of messages 0:first .. 0:first+n-1 of payloads want[] (odd
 * ones with property k<i>=v<i>). */
static void put_msgs(sbuf *s, const char *const *want, int first, int n)
{
    for (int i = first; i < first + n; i++) {
        char key[16], val[16];
        snprintf(key, sizeof key, "k%d", i);
        snprintf(val, sizeof val, "v%d", i);
        put_msg(s, 0, i, want[i], i % 2 ? key : NULL, val);
    }
}

static const char *const three[] = {"alpha", "bravo-bravo", "charlie", NULL};

/* Good frames, then one that does not decode, in one write: the messages
 * decoded from the same piece as the bad frame come out whole. */
TEST(bad_frame_in_one_piece)
{
    static sbuf s;
    s.n = 0;
    put(&s, WPM_MAGIC, WPM_MAGIC_LEN);
    put_msgs(&s, three, 0, 3);
    put(&s, "Zjunk", 5); /* no such frame type */
    fnode f = {.n_conns = 1,
               .conns = {{.content_type = WPM_CONTENT_TYPE, .w = {{s.b, s.n, 0}}, .n_w = 1}}};
    run("sfault1", &f, three, WP_ECORRUPT, "does not decode");
    CHECK(f.served == 1 && strstr(f.request_line[0], "from=all"));
}

/* A frame split across two writes, then a bad frame: the partial-frame
 * path. A message id below 0 is the fault this time. */
TEST(bad_frame_after_partial)
{
    static sbuf s;
    s.n = 0;
    put(&s, WPM_MAGIC, WPM_MAGIC_LEN);
    put_msgs(&s, three, 0, 3);
    size_t cut = s.n - 4; /* inside the third message */
    sbuf bad = {.n = 0};
    put_msg(&bad, -1, 7, "x", NULL, NULL);
    put(&s, bad.b, bad.n);
    fnode f = {.n_conns = 1,
               .conns = {{.content_type = WPM_CONTENT_TYPE,
                          .w = {{s.b, cut, 0}, {s.b + cut, s.n - cut, 300}},
                          .n_w = 2}}};
    run("sfault2", &f, three, WP_ECORRUPT, "below 0");
}

/* The connection drops after two messages: the consumer comes back after
 * the last one it queued; the second stream sends the third and then a
 * frame whose payload is above any bound (it must not be buffered). */
TEST(drop_then_oversized_frame)
{
    static sbuf s1, s2;
    s1.n = s2.n = 0;
    put(&s1, WPM_MAGIC, WPM_MAGIC_LEN);
    put_msgs(&s1, three, 0, 2);
    put(&s2, WPM_MAGIC, WPM_MAGIC_LEN);
    put_msgs(&s2, three, 2, 1);
    uint8_t big[WPM_FRAME_MSG_FIXED] = {WPM_FRAME_MSG};
    memset(big + 17, 0xff, 4); /* payload length 4 GiB - 1 */
    put(&s2, big, sizeof big);
    fnode f = {.n_conns = 2,
               .conns = {{.content_type = WPM_CONTENT_TYPE, .w = {{s1.b, s1.n, 0}}, .n_w = 1,
                          .close_after = true},
                         {.content_type = WPM_CONTENT_TYPE, .w = {{s2.b, s2.n, 0}}, .n_w = 1}}};
    run("sfault3", &f, three, WP_ECORRUPT, "above the frame bound");
    CHECK(f.served == 2 && strstr(f.request_line[1], "from=after&id=0:1"));
}

/* Not a stream of ours: no magic; and an answer in another content type. */
TEST(not_a_stream)
{
    static const char *const none[] = {NULL};
    fnode f = {.n_conns = 1,
               .conns = {{.content_type = WPM_CONTENT_TYPE, .w = {{(uint8_t *)"WPM9....", 8, 0}},
                          .n_w = 1}}};
    run("sfault4", &f, none, WP_ECORRUPT, "does not start with");
    fnode g = {.n_conns = 1,
               .conns = {{.content_type = "application/x-ndjson",
                          .w = {{(uint8_t *)"{}\n", 3, 0}}, .n_w = 1}}};
    run("sfault5", &g, none, WP_ECORRUPT, "older node");
}

/* ---- a produce cut in the middle of its body ------------------------------------- */

/* The fake node's side of a produce: reads a request's head and then its
 * body (Content-Length) up to limit bytes into *body. */
static bool read_request(int fd, uint8_t **body, size_t *len, size_t limit)
{
    size_t cap = 1 << 16, n = 0, head = 0, want = 0;
    uint8_t *b = malloc(cap);
    while (b) {
        if (head && n - head >= want)
            break;
        if (n == cap) {
            uint8_t *nb = realloc(b, cap *= 2);
            if (!nb)
                break;
            b = nb;
        }
        struct pollfd pf = {.fd = fd, .events = POLLIN};
        ssize_t k = poll(&pf, 1, 20000) == 1 ? recv(fd, b + n, cap - n, 0) : -1;
        if (k <= 0)
            break;
        n += (size_t)k;
        if (!head) {
            uint8_t *e = memmem(b, n, "\r\n\r\n", 4);
            if (!e)
                continue;
            head = (size_t)(e - b) + 4;
            *e = '\0';
            const char *cl = strcasestr((char *)b, "\r\ncontent-length:");
            want = cl ? strtoull(cl + 17, NULL, 10) : 0;
            if (want > limit)
                want = limit;
        }
    }
    if (!b || !head || n - head < want) {
        free(b);
        return false;
    }
    *len = want;
    *body = malloc(want ? want : 1);
    if (*body)
        memcpy(*body, b + head, want);
    free(b);
    return *body != NULL;
}

/* The messages of a produce body (docs/streaming-api.md §7); -1 if it does
 * not decode whole. */
static int req_count(const uint8_t *b, size_t n, wpm_req_hdr *h, int64_t *first_seq)
{
    char why[WPM_WHY_MAX];
    size_t off = 0;
    int k = 0;
    if (wpm_req_hdr_decode(b, n, h, &off, why))
        return -1;
    while (off < n) {
        wpm_msg m;
        if (wpm_req_msg_decode(b, n, &off, 1 << 20, WP_PROPS_MAX, &m, why))
            return -1;
        if (k++ == 0)
            *first_seq = m.seq;
    }
    return k;
}

static bool answer(int fd, int count, int64_t first_entry)
{
    uint8_t a[WPM_ANS_HDR_FIXED + 16 * WPM_ANS_ID];
    uint8_t *e = wpm_put_ans_hdr(a, 1, (uint32_t)count);
    for (int i = 0; i < count && i < 16; i++)
        e = wpm_put_ans_id(e, (wp_msg_id){0, first_entry + i}, false);
    char head[200];
    int hl = snprintf(head, sizeof head, "HTTP/1.1 200 OK\r\nContent-Type: %s\r\n"
                      "Content-Length: %zu\r\n\r\n", WPM_CONTENT_TYPE, (size_t)(e - a));
    return send_all(fd, head, (size_t)hl) && send_all(fd, a, (size_t)(e - a));
}

/* Connection A: the first request, answered (kept alive); the second one's
 * head and CUT bytes of its body, then the connection closes. Connection
 * B: the second request again, answered. */
#define CUT 1000
typedef struct {
    int lfd;
    uint8_t *req1, *part, *req2;
    size_t req1_len, part_len, req2_len;
    int n1, n2;
} pnode;

static void *pnode_main(void *arg)
{
    pnode *f = arg;
    struct pollfd pl = {.fd = f->lfd, .events = POLLIN};
    int a = poll(&pl, 1, 20000) == 1 ? accept(f->lfd, NULL, NULL) : -1;
    wpm_req_hdr h;
    int64_t seq;
    if (a < 0 || !read_request(a, &f->req1, &f->req1_len, SIZE_MAX) ||
        (f->n1 = req_count(f->req1, f->req1_len, &h, &seq)) <= 0 || !answer(a, f->n1, 0) ||
        !read_request(a, &f->part, &f->part_len, CUT)) {
        if (a >= 0)
            close(a);
        return NULL;
    }
    close(a); /* unread bytes: the client's send fails, or it reads an end */
    int b = poll(&pl, 1, 20000) == 1 ? accept(f->lfd, NULL, NULL) : -1;
    if (b >= 0 && read_request(b, &f->req2, &f->req2_len, SIZE_MAX) &&
        (f->n2 = req_count(f->req2, f->req2_len, &h, &seq)) > 0 && answer(b, f->n2, f->n1)) {
        char x[64];
        struct pollfd pf = {.fd = b, .events = POLLIN};
        while (poll(&pf, 1, 5000) == 1 && recv(b, x, sizeof x, 0) > 0)
            ;
    }
    if (b >= 0)
        close(b);
    return NULL;
}

/* The second produce's connection closes after CUT bytes of its body: the
 * produce goes through on a new connection with its whole body again, byte
 * for byte what it began with (same term, producer id and seqs), and gets
 * the ids of that answer. */
TEST(produce_cut_mid_body)
{
    const char *dir = test_tmpdir("sfault6");
    wp_config *cfg = cfg_new(dir, "p6");
    REQUIRE(cfg);
    pnode f = {.lfd = -1};
    fnode dummy = {.n_conns = 0};
    pthread_t thr;
    REQUIRE(setup(&dummy, cfg, &thr)); /* the record and the listening socket */
    pthread_join(thr, NULL);            /* (its thread serves no connection) */
    f.lfd = dummy.lfd;
    REQUIRE(pthread_create(&thr, NULL, pnode_main, &f) == 0);
    wps_client *c = NULL;
    wps_producer *p = NULL;
    CHECK_OK(wps_client_open(cfg, &c));
    if (c)
        CHECK_OK(wps_producer_open(c, "f", "prod-6", &p));
    static uint8_t big[3][5000];
    wp_payload m1[2] = {{.data = "one", .len = 3}, {.data = "two", .len = 3}}, m2[3];
    for (int i = 0; i < 3; i++) {
        memset(big[i], 'a' + i, sizeof big[i]);
        m2[i] = (wp_payload){.data = big[i], .len = sizeof big[i]};
    }
    wp_msg_id ids[3];
    if (p) {
        CHECK_OK(wps_produce(p, m1, 2, ids));
        CHECK(ids[0].entry_id == 0 && ids[1].entry_id == 1);
        CHECK_OK(wps_produce(p, m2, 3, ids));
        CHECK(ids[0].entry_id == 2 && ids[2].entry_id == 4);
    }
    wps_producer_close(p);
    wps_client_close(c);
    pthread_join(thr, NULL);
    close(f.lfd);
    /* What the node got: the second body whole, the cut one its prefix. */
    wpm_req_hdr h1 = {0}, h2 = {0};
    int64_t s1 = -1, s2 = -1;
    CHECK(f.n1 == 2 && req_count(f.req1, f.req1_len, &h1, &s1) == 2);
    CHECK(f.n2 == 3 && req_count(f.req2, f.req2_len, &h2, &s2) == 3);
    CHECK(strcmp(h2.producer, "prod-6") == 0 && h2.term == 1 && s2 == s1 + 2);
    CHECK(f.part && f.part_len == CUT && f.req2_len > CUT &&
          memcmp(f.part, f.req2, CUT) == 0);
    free(f.req1);
    free(f.part);
    free(f.req2);
    wp_config_free(cfg);
}

int main(void)
{
    RUN(bad_frame_in_one_piece);
    RUN(bad_frame_after_partial);
    RUN(drop_then_oversized_frame);
    RUN(not_a_stream);
    RUN(produce_cut_mid_body);
    return test_done();
}
