/* cmd_stream.c — the streaming service's commands (docs/streaming.md), on
 * the C client of include/woodpecker_stream.h: wp channel create | list |
 * delete, wp produce (one message per stdin line), wp consume. */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "woodpecker_stream.h"

/* Largest message the CLI reads from a line (the hard cap of
 * writer.max_entry_bytes; the nodes enforce the configured value). */
#define STREAM_LINE_BYTES_MAX (256LL << 20)
/* wp produce sends what stdin has ready, at most this much per batch. */
#define PRODUCE_BATCH_LINES 1000
#define PRODUCE_BATCH_BYTES (4 << 20)
#define PRODUCE_READ_BYTES 65536
/* wp consume: how long it waits for a message without --follow; how often
 * a --follow consumer looks at SIGINT/SIGTERM. */
#define CONSUME_TIMEOUT_MS_DEFAULT 1000
#define FOLLOW_POLL_MS 200

static const char *const CHANNEL_NAME[] = {"channel NAME"};
static const char produce_usage[] = "wp produce CHANNEL [--producer ID]";
static const char consume_usage[] =
    "wp consume CHANNEL [--from all|latest|at|after] [--id S:E] [--count N] [--timeout-ms MS] "
    "[--follow] [--ids]";

static int check_channel(const char *name)
{
    if (wps_channel_name_valid(name))
        return 0;
    return fail_msg("invalid channel name '%.64s%s' (want 1..%d bytes of [A-Za-z0-9._-])", name,
                    strlen(name) > 64 ? "..." : "", WPS_CHANNEL_MAX);
}

static int open_stream_client(cli *c, wps_client **out)
{
    int rc = wps_client_open(c->cfg, out);
    return rc ? fail(rc, "opening the streaming client") : 0;
}

/* ---- wp channel --------------------------------------------------------------- */

/* The one positional NAME of a command, checked, and the client. */
static int name_and_client(cli *c, const char *usage, int argc, char **argv, const char **name,
                           wps_client **sc)
{
    int st = cli_parse(usage, argc, argv, NULL, name, 1, 1, CHANNEL_NAME, NULL);
    if (st || (st = check_channel(*name)))
        return st;
    return open_stream_client(c, sc);
}

int cmd_channel_create(cli *c, int argc, char **argv)
{
    const char *name = NULL;
    wps_client *sc = NULL;
    int st = name_and_client(c, "wp channel create NAME", argc, argv, &name, &sc);
    if (st)
        return st;
    int rc = wps_channel_create(sc, name);
    st = rc ? fail(rc, "creating channel '%s'", name) : 0;
    wps_client_close(sc);
    return st;
}

int cmd_channel_delete(cli *c, int argc, char **argv)
{
    const char *name = NULL;
    wps_client *sc = NULL;
    int st = name_and_client(c, "wp channel delete NAME", argc, argv, &name, &sc);
    if (st)
        return st;
    int rc = wps_channel_delete(sc, name);
    st = rc ? fail(rc, "deleting channel '%s'", name) : 0;
    wps_client_close(sc);
    return st;
}

int cmd_channel_list(cli *c, int argc, char **argv)
{
    int st = cli_parse("wp channel list", argc, argv, NULL, NULL, 0, 0, NULL, NULL);
    wps_client *sc = NULL;
    if (st || (st = open_stream_client(c, &sc)))
        return st;
    wps_channel_info *v = NULL;
    size_t n = 0;
    int rc = wps_channel_list(sc, &v, &n);
    wps_client_close(sc);
    if (rc)
        return fail(rc, "listing channels");
    int wn = 4, wo = 5, wt = 4;
    char term[24];
    for (size_t i = 0; i < n; i++) {
        int t = snprintf(term, sizeof term, "%" PRId64, v[i].term);
        wn = (int)strlen(v[i].name) > wn ? (int)strlen(v[i].name) : wn;
        wo = (int)strlen(v[i].owner) > wo ? (int)strlen(v[i].owner) : wo;
        wt = t > wt ? t : wt;
    }
    if (n == 0)
        printf("no channels\n");
    else
        printf("%-*s  %-*s  %*s  %s\n", wn, "name", wo, "owner", wt, "term", "addr");
    for (size_t i = 0; i < n; i++)
        printf("%-*s  %-*s  %*" PRId64 "  %s\n", wn, v[i].name, wo,
               v[i].owner[0] ? v[i].owner : "-", wt, v[i].term, v[i].addr[0] ? v[i].addr : "-");
    free(v);
    return finish_stdout();
}

/* ---- wp produce --------------------------------------------------------------- */

/* Standard input, read as it comes: the lines it has ready go together. */
typedef struct {
    char *p;
    size_t len, off, cap;
    bool eof;
} input;

/* One read(2) of stdin into the buffer. 0, or an exit status. */
static int input_read(input *in)
{
    if (in->cap - in->len < PRODUCE_READ_BYTES) {
        size_t cap = in->cap ? in->cap * 2 : 2 * PRODUCE_READ_BYTES;
        char *p = realloc(in->p, cap);
        if (!p)
            return fail_msg("out of memory reading standard input");
        in->p = p;
        in->cap = cap;
    }
    ssize_t k;
    do
        k = read(0, in->p + in->len, in->cap - in->len);
    while (k < 0 && errno == EINTR);
    if (k < 0)
        return fail_msg("reading standard input: %s", strerror(errno));
    if (k == 0)
        in->eof = true;
    in->len += (size_t)k;
    return 0;
}

static bool input_ready(void)
{
    struct pollfd p = {.fd = 0, .events = POLLIN};
    return poll(&p, 1, 0) == 1;
}

/* Reads until a whole line is there (or the end), then what else is ready;
 * the lines into msgs (pointing into the buffer). *n = 0 at the end. */
static int input_batch(input *in, wp_payload *msgs, size_t *n, int64_t lineno)
{
    if (in->off > 0) { /* the last batch's lines are done */
        memmove(in->p, in->p + in->off, in->len - in->off);
        in->len -= in->off;
        in->off = 0;
    }
    int st = 0;
    while (!st && !in->eof && !(in->len > 0 && memchr(in->p, '\n', in->len))) {
        if (in->len > STREAM_LINE_BYTES_MAX)
            return fail_msg("line %" PRId64 " of standard input is longer than %lld bytes",
                            lineno + 1, STREAM_LINE_BYTES_MAX);
        st = input_read(in);
    }
    while (!st && !in->eof && in->len < PRODUCE_BATCH_BYTES && input_ready())
        st = input_read(in);
    if (st)
        return st;
    size_t k = 0, at = 0;
    while (k < PRODUCE_BATCH_LINES && at < in->len && (k == 0 || at < PRODUCE_BATCH_BYTES)) {
        char *nl = memchr(in->p + at, '\n', in->len - at);
        if (!nl && !in->eof)
            break;
        size_t end = nl ? (size_t)(nl - in->p) : in->len;
        if (end - at > STREAM_LINE_BYTES_MAX)
            return fail_msg("line %" PRId64 " of standard input is longer than %lld bytes",
                            lineno + (int64_t)k + 1, STREAM_LINE_BYTES_MAX);
        msgs[k++] = (wp_payload){.data = in->p + at, .len = end - at};
        at = nl ? end + 1 : end;
    }
    in->off = at;
    *n = k;
    return 0;
}

int cmd_produce(cli *c, int argc, char **argv)
{
    const char *name = NULL, *pid = NULL;
    const cli_opt opts[] = {
        {.name = "--producer", .kind = CLI_STR, .out = &pid,
         .want = "a producer id (1..128 printable bytes, no spaces)"},
        {0},
    };
    wps_client *sc = NULL;
    wps_producer *p = NULL;
    int st = cli_parse(produce_usage, argc, argv, opts, &name, 1, 1, CHANNEL_NAME, NULL);
    if (st || (st = check_channel(name)) || (st = open_stream_client(c, &sc)))
        return st;
    int rc = wps_producer_open(sc, name, pid, &p);
    if (rc) {
        st = fail(rc, "opening a producer on channel '%s'", name);
        goto out_client;
    }
    wp_payload *msgs = calloc(PRODUCE_BATCH_LINES, sizeof *msgs);
    wp_msg_id *ids = calloc(PRODUCE_BATCH_LINES, sizeof *ids);
    input in = {0};
    int64_t lineno = 0;
    if (!msgs || !ids)
        st = fail_msg("out of memory");
    for (size_t n = 0; !st; lineno += (int64_t)n) {
        if ((st = input_batch(&in, msgs, &n, lineno)) || n == 0)
            break;
        rc = wps_produce(p, msgs, n, ids);
        for (size_t i = 0; i < n && ids[i].segment_id >= 0; i++) { /* the acked prefix */
            char buf[WP_MSG_ID_STR_MAX];
            printf("%s\n", wp_msg_id_format(ids[i], buf));
        }
        fflush(stdout);
        if (rc)
            st = fail(rc, "producing lines %" PRId64 "..%" PRId64 " to channel '%s'", lineno + 1,
                      lineno + (int64_t)n, name);
    }
    free(in.p);
    free(msgs);
    free(ids);
    wps_producer_close(p);
    if (finish_stdout())
        st = EXIT_FAILURE;
out_client:
    wps_client_close(sc);
    return st;
}

/* ---- wp consume --------------------------------------------------------------- */

static volatile sig_atomic_t stop_requested;

static void on_stop_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

/* Valid UTF-8 without control characters: printed as it is. */
static bool printable(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n;) {
        uint8_t c = p[i];
        size_t k = c < 0x80 ? 0 : (c >> 5) == 6 ? 1 : (c >> 4) == 14 ? 2 : (c >> 3) == 30 ? 3 : 9;
        if (k == 9 || (k > 0 && i + k >= n)) /* the sequence's last byte is p[i + k] */
            return false;
        uint32_t cp = k == 0 ? c : c & (0x3Fu >> k);
        for (size_t j = 1; j <= k; j++) {
            if ((p[i + j] & 0xC0) != 0x80)
                return false;
            cp = (cp << 6) | (p[i + j] & 0x3F);
        }
        if ((k == 1 && cp < 0x80) || (k == 2 && cp < 0x800) || (k == 3 && cp < 0x10000) ||
            cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF) || cp < 0x20 ||
            (cp >= 0x7f && cp < 0xa0))
            return false;
        i += k + 1;
    }
    return true;
}

/* A payload on one line: as it is if printable, else every byte outside
 * printable ASCII (and '\') as \xNN (wp read's text form). */
static void put_payload(const uint8_t *p, size_t n)
{
    if (printable(p, n)) {
        fwrite(p, 1, n, stdout);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        if (p[i] >= 0x20 && p[i] < 0x7f && p[i] != '\\')
            putchar_unlocked(p[i]);
        else
            printf("\\x%02x", p[i]);
    }
}

typedef struct {
    const char *name;
    int from;
    wp_msg_id id;
    bool has_id, follow, ids;
    int64_t count, timeout_ms;
} consume_opts;

static int parse_id(void *out, const char *v)
{
    consume_opts *o = out;
    if (wp_msg_id_parse(v, &o->id) != WP_OK)
        return usage_err(consume_usage, "--id wants S:E, got '%.64s'", v);
    o->has_id = true;
    return 0;
}

static int parse_consume(int argc, char **argv, consume_opts *o)
{
    static const char *const froms[] = {"all", "latest", "at", "after", NULL};
    _Static_assert(WPS_FROM_ALL == 0 && WPS_FROM_LATEST == 1 && WPS_FROM_AT == 2 &&
                       WPS_FROM_AFTER == 3, "--from choices");
    *o = (consume_opts){.from = WPS_FROM_ALL, .count = -1, .timeout_ms = CONSUME_TIMEOUT_MS_DEFAULT};
    const cli_opt opts[] = {
        {.name = "--from", .kind = CLI_CHOICE, .out = &o->from, .choices = froms,
         .want = "all, latest, at or after"},
        {.name = "--id", .kind = CLI_CALL, .out = o, .call = parse_id, .want = "S:E"},
        {.name = "--count", .kind = CLI_I64, .out = &o->count, .min = 0, .max = INT64_MAX,
         .want = "a non-negative number"},
        {.name = "--timeout-ms", .kind = CLI_I64, .out = &o->timeout_ms, .min = 0,
         .max = INT32_MAX, .want = "milliseconds (0..2147483647)"},
        {.name = "--follow", .alias = "-f", .kind = CLI_FLAG, .out = &o->follow},
        {.name = "--ids", .kind = CLI_FLAG, .out = &o->ids},
        {0},
    };
    int st = cli_parse(consume_usage, argc, argv, opts, &o->name, 1, 1, CHANNEL_NAME, NULL);
    if (st)
        return st;
    bool wants_id = o->from == WPS_FROM_AT || o->from == WPS_FROM_AFTER;
    if (wants_id && !o->has_id)
        return usage_err(consume_usage, "--from %s wants --id S:E", o->from == WPS_FROM_AT ? "at"
                                                                                        : "after");
    if (!wants_id && o->has_id)
        return usage_err(consume_usage, "--id goes with --from at or --from after");
    return check_channel(o->name);
}

/* Prints messages until the count, the idle timeout (no --follow) or a
 * stop signal (--follow). */
static int consume_loop(wps_consumer *co, const consume_opts *o)
{
    int wait_ms = o->follow ? FOLLOW_POLL_MS : (int)o->timeout_ms;
    for (int64_t n = 0; (o->count < 0 || n < o->count) && !stop_requested;) {
        wps_message m;
        int rc = wps_consume(co, wait_ms, &m);
        if (rc == WP_ETIMEDOUT && o->follow)
            continue;
        if (rc == WP_ETIMEDOUT)
            break;
        if (rc) {
            fflush(stdout);
            return fail(rc, "consuming channel '%s'", o->name);
        }
        if (o->ids) {
            char buf[WP_MSG_ID_STR_MAX];
            printf("%s\t", wp_msg_id_format(m.id, buf));
        }
        put_payload(m.data, m.len);
        putchar_unlocked('\n');
        if (o->follow)
            fflush(stdout);
        n++;
    }
    return 0;
}

int cmd_consume(cli *c, int argc, char **argv)
{
    consume_opts o;
    wps_client *sc = NULL;
    wps_consumer *co = NULL;
    int st = parse_consume(argc, argv, &o);
    if (st || (st = open_stream_client(c, &sc)))
        return st;
    int rc = wps_consumer_open(sc, o.name, o.from, o.id, &co);
    if (rc) {
        st = fail(rc, "opening a consumer of channel '%s'", o.name);
        goto out_client;
    }
    if (o.follow) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_stop_signal;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
    }
    st = consume_loop(co, &o);
    if (finish_stdout())
        st = EXIT_FAILURE;
    wps_consumer_close(co);
out_client:
    wps_client_close(sc);
    return st;
}
