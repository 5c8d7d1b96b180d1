/* cli.h — what the commands of the wp CLI share (the shape of git's
 * builtin/): the invocation state, error and usage reporting, ONE option
 * parser (cli_parse, table-driven), value parsing and formatting, opening
 * the client and a log, and the command table. Each command group is its
 * own file (cmd_log.c, cmd_data.c, cmd_admin.c, cmd_nodes.c, cmd_bench.c,
 * cmd_stats.c);
 * wp.c parses the global options and dispatches. Uses only the public API
 * (include/woodpecker.h).
 *
 * Command functions return a process exit status: 0, EXIT_FAILURE (1) for a
 * failed operation, EXIT_USAGE (2) for a bad command line. */
#ifndef WP_TOOLS_CLI_H
#define WP_TOOLS_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "woodpecker.h"

#define EXIT_USAGE 2
/* Longest message the CLI composes itself (the "what" of an error). */
#define CLI_MSG_MAX 512
#define TIME_STR_MAX 32
/* Longest text of format_bytes and format_duration_ms, with its NUL. */
#define AMOUNT_STR_MAX 24

/* The state of one wp invocation. */
typedef struct {
    wp_config *cfg;     /* resolved: defaults or -c file, env, then -o */
    wp_client *client;  /* opened by cli_open_client() / cli_open_log() */
} cli;

/* ---- the command table ------------------------------------------------------ */

typedef int (*cli_cmd_fn)(cli *, int argc, char **argv);
typedef struct {
    const char *name, *sub; /* sub: NULL for one-word commands ("log create": "log", "create") */
    cli_cmd_fn fn;
    const char *help;       /* its lines of `wp --help` (usage, then what it does) */
} cli_command;
extern const cli_command cli_commands[];
extern const size_t cli_n_commands;

int cmd_log_create(cli *, int, char **);
int cmd_log_delete(cli *, int, char **);
int cmd_log_list(cli *, int, char **);
int cmd_log_info(cli *, int, char **);
int cmd_append(cli *, int, char **);
int cmd_read(cli *, int, char **);
int cmd_truncate(cli *, int, char **);
int cmd_segments(cli *, int, char **);
int cmd_verify(cli *, int, char **);
int cmd_compact(cli *, int, char **);
int cmd_nodes(cli *, int, char **);
int cmd_bench(cli *, int, char **);
int cmd_stats(cli *, int, char **);

/* ---- the option parser ------------------------------------------------------ */

typedef enum {
    CLI_FLAG,     /* no value: *(bool *)out = true */
    CLI_STR,      /* *(const char **)out = value */
    CLI_I64,      /* *(int64_t *)out, in [min, max] */
    CLI_BYTES,    /* *(int64_t *)out: digits with K/KiB, M/MiB, G/GiB, at most max */
    CLI_CHOICE,   /* *(int *)out = index of value in choices (NULL-terminated) */
    CLI_POSITION, /* *(wp_msg_id *)out: earliest, latest or S:E */
    CLI_CALL,     /* call(out, value): 0, or an exit status (it reported why) */
} cli_opt_kind;

typedef struct {
    const char *name;  /* "--count"; NULL ends the table */
    const char *alias; /* another spelling ("-f"), or NULL */
    cli_opt_kind kind;
    void *out;
    int64_t min, max;             /* CLI_I64; CLI_BYTES: max */
    const char *const *choices;   /* CLI_CHOICE */
    const char *want;             /* the error's "<name> wants <want>" */
    int (*call)(void *out, const char *value);
} cli_opt;

/* Parses a command's arguments: the options of opts anywhere (as "--name
 * VALUE" or "--name=VALUE"; flags take none), and the positional
 * arguments into pos[0 .. max_pos) in order, of which the first min_pos
 * are required (pos_names[i] names each in the "missing ..." error).
 * *n_pos (may be NULL) gets how many came. 0, or EXIT_USAGE after printing
 * the error and the command's usage line. */
int cli_parse(const char *usage, int argc, char **argv, const cli_opt *opts, const char **pos,
              int min_pos, int max_pos, const char *const *pos_names, int *n_pos);

/* ---- errors ----------------------------------------------------------------- */

/* Prints "wp: error: <what>: <wp_strerror(rc)> (<wp_errmsg()>)" and returns
 * EXIT_FAILURE. Call it right after the failing call, on the same thread. */
int fail(int rc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prints "wp: error: <msg>" for a failure the CLI itself detected. */
int fail_msg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Prints "wp: error: <msg>" and the usage line of the command; returns 2. */
int usage_err(const char *usage, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- values ----------------------------------------------------------------- */

/* Matches argv[*i] against "--name" (value in the next argument) or
 * "--name=value". Returns 1 and sets *val on a match, 0 if argv[*i] is not
 * this option, -1 if the value is missing. */
int opt_value(int argc, char **argv, int *i, const char *name, const char **val);
bool is_option(const char *a);
/* A decimal integer in [min, max]. */
bool parse_i64(const char *s, int64_t min, int64_t max, int64_t *out);
/* A byte count: digits with an optional K/KiB, M/MiB or G/GiB suffix. */
bool parse_bytes(const char *s, int64_t max, int64_t *out);
/* A reader position: earliest, latest or S:E. */
bool parse_position(const char *s, wp_msg_id *out);
/* Unix milliseconds as "2024-05-01T12:00:00.123Z" ("-" for 0). */
const char *format_time_ms(int64_t ms, char buf[TIME_STR_MAX]);
/* "S:E", or "none" for an id with a negative part ({-1,-1}: not set). */
const char *format_id(wp_msg_id id, char buf[WP_MSG_ID_STR_MAX]);
/* Bytes for people: "512 B", "1.0 KiB", "48.0 MiB", "12.3 GiB" (binary
 * units, one decimal; negative counts as 0). */
const char *format_bytes(int64_t bytes, char buf[AMOUNT_STR_MAX]);
/* A duration for people: "850 ms", "1.2 s", "5m07s", "3h05m", "2d04h"
 * (negative counts as 0). */
const char *format_duration_ms(int64_t ms, char buf[AMOUNT_STR_MAX]);

/* ---- opening ---------------------------------------------------------------- */

/* Checks a log name before any backend is touched. */
int check_name(const char *name);
/* Opens the client (once) from the resolved config. */
int cli_open_client(cli *c);
/* Validates the name, opens the client and the log. */
int cli_open_log(cli *c, const char *name, wp_log **out);
/* Flushes stdout; a write error (full disk, closed pipe) is a failure. */
int finish_stdout(void);

#endif
