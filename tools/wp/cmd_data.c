/* cmd_data.c — wp append | read, and the entry output formats (text, raw,
 * json). */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

/* Largest entry the CLI reads from a line or a file (the hard cap of
 * writer.max_entry_bytes; the library enforces the configured value). */
#define CLI_ENTRY_BYTES_MAX (256LL << 20)
/* Most --prop options of one append (the format allows 1024 per entry). */
#define CLI_PROPS_MAX 1024
/* How often a --follow reader wakes to check for SIGINT/SIGTERM. */
#define FOLLOW_POLL_MS 200
/* Default idle timeout that ends a read without --follow. */
#define READ_TIMEOUT_MS_DEFAULT 200

static const char append_usage[] = "wp append NAME [--prop KEY=VALUE]... [--file PATH|-]";
static const char read_usage[] =
    "wp read NAME [--from earliest|latest|S:E] [--follow] [--count N] "
    "[--timeout-ms MS] [--format text|raw|json]";

/* ---- append --------------------------------------------------------------- */

typedef struct {
    const char *name;
    const char *file; /* NULL: one entry per stdin line */
    size_t n_props;
    const char *keys[CLI_PROPS_MAX];
    const char *values[CLI_PROPS_MAX];
    char *prop_buf[CLI_PROPS_MAX]; /* owned copies "key\0value" */
} append_opts;

/* Shared with the writer thread that runs the callbacks (in id order). */
typedef struct {
    pthread_mutex_t mu;
    int64_t acked, failed;
    int first_rc;
    wp_msg_id first_failed;
} append_state;

static void append_cb(void *arg, int rc, wp_msg_id id)
{
    append_state *st = arg;
    char buf[WP_MSG_ID_STR_MAX];
    pthread_mutex_lock(&st->mu);
    if (rc == WP_OK) {
        st->acked++;
        fputs(wp_msg_id_format(id, buf), stdout);
        fputc('\n', stdout);
    } else {
        st->failed++;
        if (!st->first_rc) {
            st->first_rc = rc;
            st->first_failed = id;
        }
    }
    pthread_mutex_unlock(&st->mu);
}

/* Reads one line (without its '\n') into *buf. Returns its length, -1 at end
 * of input, -2 if the line is longer than max, -3 on a read error. */
static int64_t read_line(FILE *f, char **buf, size_t *cap, size_t max)
{
    size_t n = 0;
    int ch;
    while ((ch = getc_unlocked(f)) != EOF && ch != '\n') {
        if (n == max)
            return -2;
        if (n + 1 > *cap) {
            size_t ncap = *cap ? *cap * 2 : 4096;
            char *p = realloc(*buf, ncap);
            if (!p)
                return -2;
            *buf = p;
            *cap = ncap;
        }
        (*buf)[n++] = (char)ch;
    }
    if (ferror(f))
        return -3;
    if (ch == EOF && n == 0)
        return -1;
    return (int64_t)n;
}

/* Reads all of a file ("-": stdin) into a new buffer. */
static int read_whole(const char *path, char **out, size_t *len)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (!f)
        return fail_msg("opening '%s': %s", path, strerror(errno));
    char *buf = NULL;
    size_t n = 0, cap = 0;
    int st = 0;
    for (;;) {
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 65536;
            char *p = ncap <= CLI_ENTRY_BYTES_MAX + 1 ? realloc(buf, ncap) : NULL;
            if (!p) {
                st = fail_msg("'%s' is larger than %lld bytes", path, CLI_ENTRY_BYTES_MAX);
                goto out_close;
            }
            buf = p;
            cap = ncap;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0)
            break;
    }
    if (ferror(f))
        st = fail_msg("reading '%s': %s", path, strerror(errno));
    else if (n > CLI_ENTRY_BYTES_MAX)
        st = fail_msg("'%s' is larger than %lld bytes", path, CLI_ENTRY_BYTES_MAX);
out_close:
    if (f != stdin)
        fclose(f);
    if (st) {
        free(buf);
        return st;
    }
    *out = buf;
    *len = n;
    return 0;
}

static int parse_prop(void *arg, const char *kv)
{
    append_opts *o = arg;
    const char *eq = strchr(kv, '=');
    if (!eq || eq == kv)
        return usage_err(append_usage, "--prop wants KEY=VALUE, got '%s'", kv);
    if (o->n_props == CLI_PROPS_MAX)
        return usage_err(append_usage, "at most %d --prop options", CLI_PROPS_MAX);
    char *copy = strdup(kv);
    if (!copy)
        return fail_msg("out of memory");
    copy[eq - kv] = '\0';
    o->prop_buf[o->n_props] = copy;
    o->keys[o->n_props] = copy;
    o->values[o->n_props] = copy + (eq - kv) + 1;
    o->n_props++;
    return 0;
}

static int parse_append(int argc, char **argv, append_opts *o)
{
    static const char *const names[] = {"log NAME"};
    const cli_opt opts[] = {
        {.name = "--prop", .kind = CLI_CALL, .out = o, .call = parse_prop, .want = "KEY=VALUE"},
        {.name = "--file", .kind = CLI_STR, .out = &o->file, .want = "a PATH (- for stdin)"},
        {0},
    };
    return cli_parse(append_usage, argc, argv, opts, &o->name, 1, 1, names, NULL);
}

/* --file: the whole file is one entry, appended synchronously. */
static int append_file(wp_writer *w, const append_opts *o)
{
    char *data = NULL;
    size_t len = 0;
    int st = read_whole(o->file, &data, &len);
    if (st)
        return st;
    wp_payload p = {data, len, o->n_props, o->keys, o->values};
    wp_msg_id id;
    char buf[WP_MSG_ID_STR_MAX];
    int rc = wp_writer_append_entry(w, &p, &id);
    if (rc)
        st = fail(rc, "appending '%s' to '%s'", o->file, o->name);
    else
        printf("%s\n", wp_msg_id_format(id, buf));
    free(data);
    return st;
}

/* Without --file: one entry per stdin line, async; ids print from the
 * callbacks, which run in id order. */
static int append_lines(wp_writer *w, const append_opts *o, append_state *as)
{
    char *line = NULL;
    size_t cap = 0;
    int64_t n, lineno = 0;
    int st = 0;
    while ((n = read_line(stdin, &line, &cap, CLI_ENTRY_BYTES_MAX)) >= 0) {
        lineno++;
        wp_payload p = {line, (size_t)n, o->n_props, o->keys, o->values};
        int rc = wp_writer_append_entry_async(w, &p, 0, append_cb, as);
        if (rc) {
            st = fail(rc, "appending line %" PRId64 " to '%s'", lineno, o->name);
            break;
        }
    }
    if (n == -2)
        st = fail_msg("line %" PRId64 " of standard input is longer than %lld bytes",
                      lineno + 1, CLI_ENTRY_BYTES_MAX);
    else if (n == -3)
        st = fail_msg("reading standard input: %s", strerror(errno));
    free(line);
    int rc = wp_writer_flush(w);
    if (rc && !st)
        st = fail(rc, "flushing appends to '%s'", o->name);
    return st;
}

int cmd_append(cli *c, int argc, char **argv)
{
    append_opts *o = calloc(1, sizeof *o);
    append_state as = {.mu = PTHREAD_MUTEX_INITIALIZER};
    wp_log *log = NULL;
    wp_writer *w = NULL;
    int st, rc;
    if (!o)
        return fail_msg("out of memory");
    if ((st = parse_append(argc, argv, o)) || (st = cli_open_log(c, o->name, &log)))
        goto out_free;
    if ((rc = wp_writer_open(log, &w))) {
        st = fail(rc, "opening a writer on '%s'", o->name);
        goto out_close_log;
    }
    st = o->file ? append_file(w, o) : append_lines(w, o, &as);
    rc = wp_writer_close(w);
    if (rc && !st)
        st = fail(rc, "closing the writer of '%s'", o->name);
    if (as.failed) {
        char buf[WP_MSG_ID_STR_MAX];
        fprintf(stderr, "wp: error: %" PRId64 " append(s) to '%s' failed, the first (%s): %s\n",
                as.failed, o->name, format_id(as.first_failed, buf), wp_strerror(as.first_rc));
        st = EXIT_FAILURE;
    }
    if (finish_stdout())
        st = EXIT_FAILURE;
out_close_log:
    wp_log_close(log);
out_free:
    for (size_t i = 0; i < o->n_props; i++)
        free(o->prop_buf[i]);
    free(o);
    return st;
}

/* ---- entry output --------------------------------------------------------- */

enum { FMT_TEXT, FMT_RAW, FMT_JSON };

/* Length (1..4) of the valid UTF-8 sequence at p and its code point in *cp;
 * 0 if the bytes there are not valid UTF-8 (overlong, surrogate, > U+10FFFF). */
static size_t utf8_seq(const uint8_t *p, size_t n, uint32_t *cp)
{
    uint8_t c = p[0];
    size_t len;
    uint32_t v;
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    if (c >= 0xc2 && c <= 0xdf)
        len = 2, v = c & 0x1fu;
    else if (c >= 0xe0 && c <= 0xef)
        len = 3, v = c & 0x0fu;
    else if (c >= 0xf0 && c <= 0xf4)
        len = 4, v = c & 0x07u;
    else
        return 0;
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        v = (v << 6) | (p[i] & 0x3fu);
    }
    if ((len == 3 && v < 0x800) || (len == 4 && (v < 0x10000 || v > 0x10ffff)) ||
        (v >= 0xd800 && v <= 0xdfff))
        return 0;
    *cp = v;
    return len;
}

/* Valid UTF-8 without control characters (C0, DEL, C1): safe to print. */
static bool printable(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t k = utf8_seq(p + i, n - i, &cp);
        if (k == 0 || cp < 0x20 || (cp >= 0x7f && cp < 0xa0))
            return false;
        i += k;
    }
    return true;
}

static bool utf8_valid(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t k = utf8_seq(p + i, n - i, &cp);
        if (k == 0)
            return false;
        i += k;
    }
    return true;
}

/* Text form of a payload: as-is if printable, else every byte outside
 * printable ASCII (and '\') as \xNN. */
static void put_text(const uint8_t *p, size_t n)
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

/* A JSON string; bytes that are not valid UTF-8 become \u00NN. */
static void put_json_string(const uint8_t *p, size_t n)
{
    putchar_unlocked('"');
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t k = utf8_seq(p + i, n - i, &cp);
        if (k == 0 || cp < 0x20 || cp == 0x7f) {
            const char *esc = p[i] == '\n' ? "\\n" : p[i] == '\t' ? "\\t" : p[i] == '\r' ? "\\r" : NULL;
            if (esc)
                fputs(esc, stdout);
            else
                printf("\\u%04x", p[i]);
            i++;
            continue;
        }
        if (cp == '"' || cp == '\\')
            putchar_unlocked('\\');
        fwrite(p + i, 1, k, stdout);
        i += k;
    }
    putchar_unlocked('"');
}

static void put_base64(const uint8_t *p, size_t n)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    putchar_unlocked('"');
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)p[i + 1] << 8;
        if (i + 2 < n)
            v |= p[i + 2];
        putchar_unlocked(tab[(v >> 18) & 63]);
        putchar_unlocked(tab[(v >> 12) & 63]);
        putchar_unlocked(i + 1 < n ? tab[(v >> 6) & 63] : '=');
        putchar_unlocked(i + 2 < n ? tab[v & 63] : '=');
    }
    putchar_unlocked('"');
}

static void put_cstr_json(const char *s) { put_json_string((const uint8_t *)s, strlen(s)); }

/* {"id":"S:E","data":"...","props":{...}}; binary data (not valid UTF-8)
 * is base64 with "encoding":"base64". */
static void put_json(const wp_entry *e)
{
    char buf[WP_MSG_ID_STR_MAX];
    const uint8_t *p = e->data;
    printf("{\"id\":\"%s\",\"data\":", wp_msg_id_format(e->id, buf));
    if (utf8_valid(p, e->len)) {
        put_json_string(p, e->len);
    } else {
        put_base64(p, e->len);
        fputs(",\"encoding\":\"base64\"", stdout);
    }
    fputs(",\"props\":{", stdout);
    for (size_t i = 0; i < e->n_props; i++) {
        if (i)
            putchar_unlocked(',');
        put_cstr_json(e->prop_keys[i]);
        putchar_unlocked(':');
        put_cstr_json(e->prop_values[i]);
    }
    fputs("}}\n", stdout);
}

static void put_entry(const wp_entry *e, int format)
{
    char buf[WP_MSG_ID_STR_MAX];
    switch (format) {
    case FMT_RAW:
        fwrite(e->data, 1, e->len, stdout);
        putchar_unlocked('\n');
        break;
    case FMT_JSON:
        put_json(e);
        break;
    default:
        fputs(wp_msg_id_format(e->id, buf), stdout);
        putchar_unlocked('\t');
        put_text(e->data, e->len);
        putchar_unlocked('\n');
    }
}

/* ---- read ----------------------------------------------------------------- */

typedef struct {
    const char *name;
    wp_msg_id from;
    bool follow;
    int64_t count; /* -1: no limit */
    int64_t timeout_ms;
    int format;
} read_opts;

static volatile sig_atomic_t stop_requested;

static void on_stop_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

/* SIGINT/SIGTERM end a --follow read cleanly (exit 0). */
static void install_stop_handlers(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

static int parse_read(int argc, char **argv, read_opts *o)
{
    static const char *const names[] = {"log NAME"};
    static const char *const formats[] = {"text", "raw", "json", NULL};
    _Static_assert(FMT_TEXT == 0 && FMT_RAW == 1 && FMT_JSON == 2, "--format choices");
    *o = (read_opts){NULL, WP_EARLIEST, false, -1, READ_TIMEOUT_MS_DEFAULT, FMT_TEXT};
    const cli_opt opts[] = {
        {.name = "--follow", .alias = "-f", .kind = CLI_FLAG, .out = &o->follow},
        {.name = "--from", .kind = CLI_POSITION, .out = &o->from,
         .want = "earliest, latest or S:E"},
        {.name = "--count", .kind = CLI_I64, .out = &o->count, .min = 0, .max = INT64_MAX,
         .want = "a non-negative number"},
        {.name = "--timeout-ms", .kind = CLI_I64, .out = &o->timeout_ms, .min = 0,
         .max = INT32_MAX, .want = "milliseconds (0..2147483647)"},
        {.name = "--format", .kind = CLI_CHOICE, .out = &o->format, .choices = formats,
         .want = "text, raw or json"},
        {0},
    };
    return cli_parse(read_usage, argc, argv, opts, &o->name, 1, 1, names, NULL);
}

/* Prints entries until the count, the idle timeout (no --follow) or a stop
 * signal (--follow). */
static int read_loop(wp_reader *r, const read_opts *o)
{
    char buf[WP_MSG_ID_STR_MAX];
    wp_msg_id last = {-1, -1};
    int wait_ms = o->follow ? FOLLOW_POLL_MS : (int)o->timeout_ms;
    for (int64_t n = 0; o->count < 0 || n < o->count;) {
        if (stop_requested)
            break;
        wp_entry e;
        int rc = wp_reader_next(r, wait_ms, &e);
        if (rc == WP_ETIMEDOUT && o->follow)
            continue;
        if (rc == WP_ETIMEDOUT)
            break;
        if (rc) {
            fflush(stdout);
            return fail(rc, "reading '%s' after %s", o->name, format_id(last, buf));
        }
        put_entry(&e, o->format);
        if (o->follow)
            fflush(stdout);
        last = e.id;
        n++;
    }
    return 0;
}

int cmd_read(cli *c, int argc, char **argv)
{
    read_opts o;
    wp_log *log = NULL;
    wp_reader *r = NULL;
    int st = parse_read(argc, argv, &o);
    if (st || (st = cli_open_log(c, o.name, &log)))
        return st;
    int rc = wp_reader_open(log, o.from, &r);
    if (rc) {
        st = fail(rc, "opening a reader on '%s'", o.name);
        goto out_close_log;
    }
    if (o.follow)
        install_stop_handlers();
    st = read_loop(r, &o);
    if (finish_stdout())
        st = EXIT_FAILURE;
    wp_reader_close(r);
out_close_log:
    wp_log_close(log);
    return st;
}
