/* cli.c — see cli.h: error reporting, the option parser, values, opening. */
#include "cli.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* Prints "wp: error: <what>: <wp_strerror(rc)> (<wp_errmsg()>)" and returns
 * EXIT_FAILURE. Call it right after the failing call, on the same thread. */
int fail(int rc, const char *fmt, ...)
{
    char what[CLI_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    const char *detail = wp_errmsg();
    if (detail && *detail)
        fprintf(stderr, "wp: error: %s: %s (%s)\n", what, wp_strerror(rc), detail);
    else
        fprintf(stderr, "wp: error: %s: %s\n", what, wp_strerror(rc));
    return EXIT_FAILURE;
}

/* Prints "wp: error: <msg>" for a failure the CLI itself detected. */
int fail_msg(const char *fmt, ...)
{
    va_list ap;
    fputs("wp: error: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return EXIT_FAILURE;
}

/* Prints "wp: error: <msg>" and the usage line of the command; returns 2. */
int usage_err(const char *usage, const char *fmt, ...)
{
    va_list ap;
    fputs("wp: error: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nusage: %s\nTry 'wp --help' for more information.\n", usage);
    return EXIT_USAGE;
}

/* Matches argv[*i] against "--name" (value in the next argument) or
 * "--name=value". Returns 1 and sets *val on a match, 0 if argv[*i] is not
 * this option, -1 if the value is missing. */
int opt_value(int argc, char **argv, int *i, const char *name, const char **val)
{
    const char *a = argv[*i];
    size_t n = strlen(name);
    if (strncmp(a, name, n) != 0)
        return 0;
    if (a[n] == '=') {
        *val = a + n + 1;
        return 1;
    }
    if (a[n] != '\0')
        return 0;
    if (*i + 1 >= argc)
        return -1;
    *i += 1;
    *val = argv[*i];
    return 1;
}

bool is_option(const char *a) { return a[0] == '-' && a[1] != '\0'; }

/* Parses a decimal integer in [min, max]. */
bool parse_i64(const char *s, int64_t min, int64_t max, int64_t *out)
{
    char *end;
    if (!s || !*s)
        return false;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end != '\0' || v < min || v > max)
        return false;
    *out = v;
    return true;
}

/* Parses a byte count: digits with an optional K/KiB, M/MiB or G/GiB suffix. */
bool parse_bytes(const char *s, int64_t max, int64_t *out)
{
    static const struct { const char *suffix; int64_t mult; } units[] = {
        {"", 1},       {"B", 1},
        {"K", 1024},   {"KiB", 1024},   {"k", 1024},
        {"M", 1 << 20}, {"MiB", 1 << 20},
        {"G", 1 << 30}, {"GiB", 1 << 30},
    };
    char *end;
    if (!s || *s < '0' || *s > '9')
        return false;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno)
        return false;
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        if (strcmp(end, units[i].suffix) != 0)
            continue;
        if (v > max / units[i].mult)
            return false;
        *out = v * units[i].mult;
        return true;
    }
    return false;
}

/* Formats unix milliseconds as "2024-05-01T12:00:00.123Z" ("-" for 0). */
const char *format_time_ms(int64_t ms, char buf[TIME_STR_MAX])
{
    struct tm tm;
    time_t s = (time_t)(ms / 1000);
    if (ms <= 0 || !gmtime_r(&s, &tm)) {
        snprintf(buf, TIME_STR_MAX, "-");
        return buf;
    }
    size_t n = strftime(buf, TIME_STR_MAX, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, TIME_STR_MAX - n, ".%03dZ", (int)(ms % 1000));
    return buf;
}

/* "S:E", or "none" for an id with a negative part ({-1,-1}: not set). */
const char *format_id(wp_msg_id id, char buf[WP_MSG_ID_STR_MAX])
{
    if (id.segment_id < 0 || id.entry_id < 0) {
        snprintf(buf, WP_MSG_ID_STR_MAX, "none");
        return buf;
    }
    return wp_msg_id_format(id, buf);
}

/* Bytes for people: binary units, one decimal ("48.0 MiB"). */
const char *format_bytes(int64_t bytes, char buf[AMOUNT_STR_MAX])
{
    static const char *const units[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    if (bytes < 1024) {
        snprintf(buf, AMOUNT_STR_MAX, "%" PRId64 " B", bytes > 0 ? bytes : 0);
        return buf;
    }
    double v = (double)bytes / 1024;
    size_t u = 0;
    /* 1023.96 KiB would print as "1024.0 KiB": move up at what rounds to 1024 */
    while (v >= 1023.95 && u + 1 < sizeof units / sizeof units[0]) {
        v /= 1024;
        u++;
    }
    snprintf(buf, AMOUNT_STR_MAX, "%.1f %s", v, units[u]);
    return buf;
}

/* A duration for people: ms below a second, tenths below a minute, then
 * the two largest units. */
const char *format_duration_ms(int64_t ms, char buf[AMOUNT_STR_MAX])
{
    if (ms < 0)
        ms = 0;
    int64_t s = ms / 1000 + (ms % 1000 >= 500); /* whole seconds, rounded */
    if (ms < 1000)
        snprintf(buf, AMOUNT_STR_MAX, "%" PRId64 " ms", ms);
    else if (ms < 59950) /* what rounds to 60.0 s is a minute */
        snprintf(buf, AMOUNT_STR_MAX, "%.1f s", (double)ms / 1000);
    else if (s < 3600)
        snprintf(buf, AMOUNT_STR_MAX, "%" PRId64 "m%02" PRId64 "s", s / 60, s % 60);
    else if (s < 86400)
        snprintf(buf, AMOUNT_STR_MAX, "%" PRId64 "h%02" PRId64 "m", s / 3600, s % 3600 / 60);
    else
        snprintf(buf, AMOUNT_STR_MAX, "%" PRId64 "d%02" PRId64 "h", s / 86400, s % 86400 / 3600);
    return buf;
}

/* Parses a reader position: earliest, latest or S:E. */
bool parse_position(const char *s, wp_msg_id *out)
{
    if (strcmp(s, "earliest") == 0) {
        *out = WP_EARLIEST;
        return true;
    }
    if (strcmp(s, "latest") == 0) {
        *out = WP_LATEST;
        return true;
    }
    return wp_msg_id_parse(s, out) == WP_OK;
}

/* Checks a log name before any backend is touched. */
int check_name(const char *name)
{
    if (wp_log_name_valid(name))
        return 0;
    return fail_msg("invalid log name '%.64s%s' (want 1..200 bytes of [A-Za-z0-9._-] "
                    "and '/', no empty '/' parts)",
                    name, strlen(name) > 64 ? "..." : "");
}

/* Opens the client (once) from the resolved config. */
int cli_open_client(cli *c)
{
    if (c->client)
        return 0;
    int rc = wp_client_open(c->cfg, &c->client);
    if (rc)
        return fail(rc, "opening the client");
    return 0;
}

/* Validates the name, opens the client and the log. */
int cli_open_log(cli *c, const char *name, wp_log **out)
{
    int st = check_name(name);
    if (st || (st = cli_open_client(c)))
        return st;
    int rc = wp_log_open(c->client, name, out);
    if (rc)
        return fail(rc, "opening log '%s'", name);
    return 0;
}

/* Flushes stdout; a write error (full disk, closed pipe) is a failure. */
int finish_stdout(void)
{
    if (fflush(stdout) != 0 || ferror(stdout))
        return fail_msg("writing standard output: %s", strerror(errno));
    return 0;
}


/* ---- the option parser ------------------------------------------------------ */

static const cli_opt *find_opt(const cli_opt *opts, const char *arg, size_t *name_len)
{
    for (const cli_opt *o = opts; o && o->name; o++) {
        const char *names[2] = {o->name, o->alias};
        for (int k = 0; k < 2; k++) {
            size_t n = names[k] ? strlen(names[k]) : 0;
            if (n && strncmp(arg, names[k], n) == 0 && (arg[n] == '\0' || arg[n] == '=')) {
                *name_len = n;
                return o;
            }
        }
    }
    return NULL;
}

static int set_opt(const char *usage, const cli_opt *o, const char *v)
{
    bool ok = true;
    switch (o->kind) {
    case CLI_FLAG:
        *(bool *)o->out = true;
        break;
    case CLI_STR:
        *(const char **)o->out = v;
        break;
    case CLI_I64:
        ok = parse_i64(v, o->min, o->max, (int64_t *)o->out);
        break;
    case CLI_BYTES:
        ok = parse_bytes(v, o->max, (int64_t *)o->out);
        break;
    case CLI_CHOICE:
        ok = false;
        for (int i = 0; o->choices[i]; i++)
            if (strcmp(v, o->choices[i]) == 0) {
                *(int *)o->out = i;
                ok = true;
            }
        break;
    case CLI_POSITION:
        ok = parse_position(v, (wp_msg_id *)o->out);
        break;
    case CLI_CALL:
        return o->call(o->out, v);
    }
    return ok ? 0 : usage_err(usage, "%s wants %s", o->name, o->want ? o->want : "a value");
}

int cli_parse(const char *usage, int argc, char **argv, const cli_opt *opts, const char **pos,
              int min_pos, int max_pos, const char *const *pos_names, int *n_pos)
{
    int n = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!is_option(a)) {
            if (n == max_pos)
                return usage_err(usage, "unexpected argument '%s'", a);
            pos[n++] = a;
            continue;
        }
        size_t len = 0;
        const cli_opt *o = find_opt(opts, a, &len);
        if (!o)
            return usage_err(usage, "unknown option '%s'", a);
        const char *v = NULL;
        if (o->kind == CLI_FLAG) {
            if (a[len] == '=')
                return usage_err(usage, "%s takes no value", o->name);
        } else if (a[len] == '=') {
            v = a + len + 1;
        } else if (i + 1 < argc) {
            v = argv[++i];
        } else {
            return usage_err(usage, "%s wants %s", o->name, o->want ? o->want : "a value");
        }
        int st = set_opt(usage, o, v);
        if (st)
            return st;
    }
    if (n < min_pos)
        return usage_err(usage, "missing %s", pos_names && pos_names[n] ? pos_names[n] : "argument");
    if (n_pos)
        *n_pos = n;
    return 0;
}
