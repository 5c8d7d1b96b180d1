/* test_metrics.c — metrics (issue 13): wp_client_metrics counters and
 * histograms move as a client appends and reads, the Prometheus text is
 * well formed, pending bytes return to 0 (they used to drift by a block
 * header per block), and a LogStore server's GET /metrics is scraped over
 * a real socket while a quorum client appends. */
#include "test.h"
#include "support/logstore_proc.h"
#include "support/testutil.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---- reading metrics back ----------------------------------------------- */

typedef struct {
    char key[160]; /* name{labels} */
    double v;
} sample;

typedef struct {
    sample s[512];
    int n;
} snap;

static void take(void *arg, const wp_metric *m)
{
    snap *sn = arg;
    if (sn->n >= 510)
        return;
    const char *l = m->labels ? m->labels : "";
    sample *s = &sn->s[sn->n++];
    snprintf(s->key, sizeof s->key, "%s%s%s%s", m->name, l[0] ? "{" : "", l, l[0] ? "}" : "");
    s->v = m->kind == WP_METRIC_HISTOGRAM ? (double)m->count : m->value;
}

static double get(const snap *sn, const char *key)
{
    for (int i = 0; i < sn->n; i++)
        if (strcmp(sn->s[i].key, key) == 0)
            return sn->s[i].v;
    fprintf(stderr, "  no metric %s\n", key);
    return -1e300;
}

static void shot(wp_client *c, snap *sn)
{
    sn->n = 0;
    CHECK_OK(wp_client_metrics(c, take, sn));
}

/* The text format: comments, or `name{labels} value`; histogram buckets
 * cumulative with +Inf equal to _count. Returns the number of samples,
 * -1 if a line breaks the format. */
static int check_text(const char *text)
{
    int samples = 0;
    double last_bucket = -1;
    for (const char *line = text; *line;) {
        const char *end = strchr(line, '\n');
        if (!end)
            return -1; /* every line ends with a newline */
        char buf[512];
        size_t len = (size_t)(end - line);
        if (len >= sizeof buf)
            return -1;
        memcpy(buf, line, len);
        buf[len] = '\0';
        line = end + 1;
        if (buf[0] == '#') {
            if (strncmp(buf, "# HELP ", 7) && strncmp(buf, "# TYPE ", 7))
                return -1;
            continue;
        }
        char *sp = strrchr(buf, ' ');
        if (!sp || sp == buf)
            return -1;
        char *num_end;
        double v = strtod(sp + 1, &num_end);
        if (*num_end || v < 0)
            return -1;
        *sp = '\0';
        for (char *p = buf; *p && *p != '{'; p++)
            if (!((*p >= 'a' && *p <= 'z') || *p == '_' || (*p >= '0' && *p <= '9')))
                return -1;
        char *brace = strchr(buf, '{');
        if (brace && buf[strlen(buf) - 1] != '}')
            return -1;
        if (strstr(buf, "_bucket{")) {
            if (strstr(buf, "le=\"5e-05\"")) /* the first bucket */
                last_bucket = -1;
            if (v < last_bucket)
                return -1;
            last_bucket = v;
        } else if (strstr(buf, "_count") && last_bucket >= 0) {
            if (v != last_bucket)
                return -1;
            last_bucket = -1;
        }
        samples++;
    }
    return samples;
}

TEST(client_metrics_move)
{
    const char *dir = test_tmpdir("metrics1");
    wp_client *c = test_client_open(dir, NULL);
    REQUIRE(c);
    snap a, b;
    shot(c, &a);
    CHECK_OK(wp_log_create(c, "m"));
    wp_log *log;
    REQUIRE(wp_log_open(c, "m", &log) == 0);
    wp_writer *w;
    REQUIRE(wp_writer_open(log, &w) == 0);
    shot(c, &b);
    CHECK(get(&b, "wp_writers") == get(&a, "wp_writers") + 1);
    CHECK(get(&b, "wp_segments{state=\"active\"}") + get(&b, "wp_segments{state=\"completed\"}") >=
          0);
    for (int i = 0; i < 100; i++)
        CHECK_OK(wp_writer_append(w, "0123456789", 10, NULL));
    shot(c, &b);
    CHECK(get(&b, "wp_appends_total") == get(&a, "wp_appends_total") + 100);
    CHECK(get(&b, "wp_append_bytes_total") == get(&a, "wp_append_bytes_total") + 1000);
    CHECK(get(&b, "wp_acked_total") == get(&a, "wp_acked_total") + 100);
    CHECK(get(&b, "wp_flushes_total") >= get(&a, "wp_flushes_total") + 1);
    CHECK(get(&b, "wp_flush_seconds") >= get(&a, "wp_flush_seconds") + 1); /* its count */
    CHECK(get(&b, "wp_flush_size_bytes") == get(&b, "wp_flush_seconds"));
    CHECK(get(&b, "wp_ack_seconds") >= get(&a, "wp_ack_seconds") + 1);
    CHECK(get(&b, "wp_fdatasync_seconds") >= get(&a, "wp_fdatasync_seconds") + 1);
    CHECK(get(&b, "wp_pending_bytes") == get(&a, "wp_pending_bytes"));
    CHECK(get(&b, "wp_logs") == 1 && get(&b, "wp_segments{state=\"active\"}") == 1);
    CHECK_OK(wp_writer_close(w));
    shot(c, &b);
    CHECK(get(&b, "wp_writers") == get(&a, "wp_writers"));
    CHECK(get(&b, "wp_segments{state=\"completed\"}") == 1);
    /* Reads. */
    wp_reader *r;
    REQUIRE(wp_reader_open(log, WP_EARLIEST, &r) == 0);
    shot(c, &b);
    CHECK(get(&b, "wp_readers") == get(&a, "wp_readers") + 1);
    wp_entry e;
    int n = 0;
    while (wp_reader_next(r, 100, &e) == WP_OK)
        n++;
    CHECK(n == 100);
    shot(c, &b);
    CHECK(get(&b, "wp_read_entries_total") == get(&a, "wp_read_entries_total") + 100);
    CHECK(get(&b, "wp_read_bytes_total") == get(&a, "wp_read_bytes_total") + 1000);
    wp_reader_close(r);
    shot(c, &b);
    CHECK(get(&b, "wp_readers") == get(&a, "wp_readers"));
    /* A failed ack counts by its code: a writer fenced by a newer one. */
    CHECK(get(&b, "wp_ack_errors_total{code=\"EFENCED\"}") == get(&a, "wp_ack_errors_total{code=\"EFENCED\"}"));
    wp_writer *w1, *w2;
    REQUIRE(wp_writer_open(log, &w1) == 0);
    CHECK_OK(wp_writer_append(w1, "x", 1, NULL));
    REQUIRE(wp_writer_open(log, &w2) == 0);
    CHECK_RC(WP_EFENCED, wp_writer_append(w1, "y", 1, NULL));
    shot(c, &b);
    CHECK(get(&b, "wp_ack_errors_total{code=\"EFENCED\"}") ==
          get(&a, "wp_ack_errors_total{code=\"EFENCED\"}") + 1);
    (void)wp_writer_close(w1);
    CHECK_OK(wp_writer_close(w2));
    char *text = NULL;
    size_t len = 0;
    CHECK_OK(wp_client_metrics_text(c, &text, &len));
    REQUIRE(text);
    CHECK(strlen(text) == len);
    int samples = check_text(text);
    CHECK(samples > 50);
    CHECK(strstr(text, "# TYPE wp_fdatasync_seconds histogram\n") != NULL);
    CHECK(strstr(text, "wp_flush_size_bytes_bucket{le=\"16777216\"} ") != NULL);
    CHECK(strstr(text, "wp_segments{state=\"completed\"} ") != NULL);
    free(text);
    wp_log_close(log);
    wp_client_close(c);
    CHECK_RC(WP_EINVAL, wp_client_metrics(NULL, take, &b));
}

/* Many small blocks: once everything is acked the pending bytes are back
 * where they were (the writer's own count drifted down a block header per
 * block, loosening writer.max_pending_bytes). */
TEST(pending_bytes_return_to_zero)
{
    const char *dir = test_tmpdir("metrics2");
    const char *kv[] = {"flush.max_bytes", "512", NULL};
    wp_client *c = test_client_open(dir, kv);
    REQUIRE(c);
    snap a, b;
    shot(c, &a);
    CHECK_OK(wp_log_create(c, "m"));
    wp_log *log;
    REQUIRE(wp_log_open(c, "m", &log) == 0);
    wp_writer *w;
    REQUIRE(wp_writer_open(log, &w) == 0);
    char buf[200];
    memset(buf, 'p', sizeof buf);
    for (int i = 0; i < 2000; i++)
        CHECK_OK(wp_writer_append_async(w, buf, sizeof buf, NULL, NULL));
    CHECK_OK(wp_writer_close(w));
    shot(c, &b);
    CHECK(get(&b, "wp_flushes_total") > get(&a, "wp_flushes_total"));
    CHECK(get(&b, "wp_acked_total") == get(&a, "wp_acked_total") + 2000);
    CHECK(get(&b, "wp_pending_bytes") == get(&a, "wp_pending_bytes"));
    wp_log_close(log);
    wp_client_close(c);
}

/* ---- a LogStore server's GET /metrics ------------------------------------- */


TEST(logstore_metrics_endpoint)
{
    const char *dir = test_tmpdir("metrics3");
    char meta_path[1100], nodes[256];
    snprintf(meta_path, sizeof meta_path, "%s/meta.sqlite", dir);
    logstore_proc srv[3];
    const char *opts[] = {"node.metrics_listen=127.0.0.1:0", NULL};
    for (int i = 0; i < 3; i++) {
        char sub[1100], id[16];
        snprintf(sub, sizeof sub, "%s/s%d", dir, i);
        snprintf(id, sizeof id, "m%d", i);
        REQUIRE(logstore_proc_start_opts(&srv[i], sub, id, meta_path, opts) == 0);
        REQUIRE(srv[i].metrics_addr[0]);
    }
    snprintf(nodes, sizeof nodes, "%s,%s,%s", srv[0].addr, srv[1].addr, srv[2].addr);
    static char before[256 * 1024], after[256 * 1024];
    const char *get_req = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
    CHECK(test_http(srv[0].metrics_addr, get_req, before, sizeof before) > 0);
    CHECK(strncmp(before, "HTTP/1.1 200 OK\r\n", 17) == 0);
    CHECK(strstr(before, "Content-Type: text/plain; version=0.0.4\r\n") != NULL);
    const char *body = strstr(before, "\r\n\r\n");
    REQUIRE(body);
    CHECK(check_text(body + 4) > 20);
    double adds0 = test_metric_sample(body + 3, "wp_logstore_requests_total{type=\"ADD\"}");
    double syncs0 = test_metric_sample(body + 3, "wp_fdatasync_seconds_count");
    CHECK(adds0 >= 0 && syncs0 >= 0);
    /* A quorum client appends: the counters move. */
    const char *kv[] = {"storage.type", "quorum", "quorum.nodes", nodes, "meta.path", meta_path,
                        NULL};
    wp_client *c = test_client_open(dir, kv);
    REQUIRE(c);
    CHECK_OK(wp_log_create(c, "m"));
    wp_log *log;
    REQUIRE(wp_log_open(c, "m", &log) == 0);
    wp_writer *w;
    REQUIRE(wp_writer_open(log, &w) == 0);
    for (int i = 0; i < 50; i++)
        CHECK_OK(wp_writer_append(w, "metrics!", 8, NULL));
    CHECK_OK(wp_writer_close(w));
    wp_log_close(log);
    snap s;
    shot(c, &s);
    CHECK(get(&s, "wp_quorum_adds_total") >= 150 && get(&s, "wp_quorum_add_seconds") >= 50);
    wp_client_close(c);
    CHECK(test_http(srv[0].metrics_addr, get_req, after, sizeof after) > 0);
    body = strstr(after, "\r\n\r\n");
    REQUIRE(body);
    double adds1 = test_metric_sample(body + 3, "wp_logstore_requests_total{type=\"ADD\"}");
    double syncs1 = test_metric_sample(body + 3, "wp_fdatasync_seconds_count");
    fprintf(stderr, "  server 0: ADDs %.0f -> %.0f, fdatasyncs %.0f -> %.0f\n", adds0, adds1,
            syncs0, syncs1);
    CHECK(adds1 >= adds0 + 50);
    CHECK(syncs1 > syncs0);
    CHECK(test_metric_sample(body + 3, "wp_logstore_segments") >= 1);
    CHECK(test_metric_sample(body + 3, "wp_logstore_disk_total_bytes") > 0);
    /* Anything else: a clear status, and the endpoint keeps serving. */
    char small[4096];
    CHECK(test_http(srv[0].metrics_addr, "GET /nope HTTP/1.1\r\n\r\n", small, sizeof small) > 0);
    CHECK(strncmp(small, "HTTP/1.1 404", 12) == 0);
    CHECK(test_http(srv[0].metrics_addr, "POST /metrics HTTP/1.1\r\n\r\n", small, sizeof small) > 0);
    CHECK(strncmp(small, "HTTP/1.1 405", 12) == 0);
    CHECK(test_http(srv[0].metrics_addr, "\x01\x02garbage\r\n\r\n", small, sizeof small) > 0);
    CHECK(strncmp(small, "HTTP/1.1 400", 12) == 0);
    static char huge[10000];
    memset(huge, 'a', sizeof huge - 1);
    CHECK(test_http(srv[0].metrics_addr, huge, small, sizeof small) > 0);
    CHECK(strncmp(small, "HTTP/1.1 400", 12) == 0);
    CHECK(test_http(srv[0].metrics_addr, get_req, after, sizeof after) > 0);
    CHECK(strncmp(after, "HTTP/1.1 200 OK\r\n", 17) == 0);
    for (int i = 0; i < 3; i++)
        CHECK(logstore_proc_stop(&srv[i], SIGTERM) == 0);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    RUN(client_metrics_move);
    RUN(pending_bytes_return_to_zero);
    RUN(logstore_metrics_endpoint);
    return test_done();
}
