/* wp — the Woodpecker command-line tool (ARCHITECTURE §10).
 *
 *   wp [-c woodpecker.yaml] [-o key=value]... COMMAND ...
 *
 * The config is the default (or the -c file), then WP_<SECTION>__<KEY>
 * environment overrides, then each -o in order. Errors go to stderr as
 * "wp: error: ..." with exit status 1 (2 for a bad command line).
 * Uses only the public API, include/woodpecker.h.
 *
 * Source: wp_util.h (errors, options, formatting), wp_io.h (append, read),
 * wp_bench.h (bench), this file (main, log commands, segments, verify, compact). */
#include "wp_util.h"
#include "wp_io.h"
#include "wp_bench.h"

/* Most -o options on one command line. */
#define CLI_OVERRIDES_MAX 256

static const char global_usage[] = "wp [-c woodpecker.yaml] [-o key=value]... COMMAND [ARGS]";

static const char help_text[] =
    "usage: wp [-c woodpecker.yaml] [-o key=value]... COMMAND [ARGS]\n"
    "\n"
    "Woodpecker: a durable, ordered, append-only write-ahead log.\n"
    "\n"
    "Options:\n"
    "  -c FILE          load the config from a YAML file (default: built-in defaults)\n"
    "  -o KEY=VALUE     set one config key (e.g. -o storage.root=/var/lib/wp);\n"
    "                   applied after the file and WP_<SECTION>__<KEY> variables\n"
    "  -h, --help       print this help\n"
    "\n"
    "Commands:\n"
    "  log create NAME            create a log\n"
    "  log delete NAME            delete a log and its data\n"
    "  log list [PREFIX]          list logs, one name per line\n"
    "  log info NAME              show a log's metadata (key: value lines)\n"
    "  append NAME [--prop K=V]... [--file PATH|-]\n"
    "                             append one entry per stdin line (or the whole\n"
    "                             file as one entry); prints each id S:E\n"
    "  read NAME [--from earliest|latest|S:E] [--follow] [--count N]\n"
    "            [--timeout-ms MS] [--format text|raw|json]\n"
    "                             print entries; without --follow stop at the end of\n"
    "                             what is durable (no entry for MS, default 200)\n"
    "                             text: S:E<TAB>payload (\\xNN escapes if not printable)\n"
    "                             raw: payloads, each followed by a newline\n"
    "                             json: {\"id\",\"data\",\"props\"} per line (binary data\n"
    "                             as base64 with \"encoding\":\"base64\")\n"
    "  truncate NAME S:E          truncate the log up to S:E (inclusive)\n"
    "  segments NAME              list the log's segments\n"
    "  verify NAME                check every CRC, block, index and footer\n"
    "  compact NAME               object storage: merge the completed segments' objects\n"
    "                             now and mark them sealed (also done in the background)\n"
    "  bench [--log NAME] [--entries N] [--size BYTES] [--mode async|sync]\n"
    "        [--window N] [--payload random|text] [--reader] [--json]\n"
    "                             append benchmark: throughput, ack latency and with\n"
    "                             --reader end-to-end (append to read) latency; CPU\n"
    "                             per GiB and bytes stored (see flush.compression)\n"
    "  stats                      print this client's metrics in the Prometheus text\n"
    "                             format: the segments of every log by state, and the\n"
    "                             process's counters and latency histograms\n"
    "  help                       print this help\n"
    "\n"
    "Exit status: 0 on success, 1 on failure, 2 on a bad command line.\n";

/* ---- log commands ------------------------------------------------------------ */

/* Parses exactly one positional NAME (the only argument of these commands). */
static int one_name(int argc, char **argv, const char *usage, const char **name)
{
    if (argc < 1)
        return usage_err(usage, "missing log NAME");
    if (argc > 1)
        return usage_err(usage, "unexpected argument '%s'", argv[1]);
    if (is_option(argv[0]))
        return usage_err(usage, "unknown option '%s'", argv[0]);
    *name = argv[0];
    return 0;
}

static int cmd_log_create(cli *c, int argc, char **argv)
{
    const char *name = NULL;
    int st = one_name(argc, argv, "wp log create NAME", &name);
    if (st || (st = check_name(name)) || (st = cli_open_client(c)))
        return st;
    int rc = wp_log_create(c->client, name);
    return rc ? fail(rc, "creating log '%s'", name) : 0;
}

static int cmd_log_delete(cli *c, int argc, char **argv)
{
    const char *name = NULL;
    int st = one_name(argc, argv, "wp log delete NAME", &name);
    if (st || (st = check_name(name)) || (st = cli_open_client(c)))
        return st;
    int rc = wp_log_delete(c->client, name);
    return rc ? fail(rc, "deleting log '%s'", name) : 0;
}

static int cmd_log_list(cli *c, int argc, char **argv)
{
    const char *usage = "wp log list [PREFIX]";
    if (argc > 1)
        return usage_err(usage, "unexpected argument '%s'", argv[1]);
    if (argc == 1 && is_option(argv[0]))
        return usage_err(usage, "unknown option '%s'", argv[0]);
    const char *prefix = argc == 1 ? argv[0] : "";
    char **names = NULL;
    size_t n = 0;
    int st = cli_open_client(c), rc;
    if (st)
        return st;
    if ((rc = wp_log_list(c->client, prefix, &names, &n)))
        return fail(rc, "listing logs");
    for (size_t i = 0; i < n; i++)
        printf("%s\n", names[i]);
    wp_free_names(names, n);
    return finish_stdout();
}

static int cmd_log_info(cli *c, int argc, char **argv)
{
    const char *name = NULL;
    wp_log *log = NULL;
    wp_log_info in;
    int st = one_name(argc, argv, "wp log info NAME", &name);
    if (st || (st = cli_open_log(c, name, &log)))
        return st;
    int rc = wp_log_stat(log, &in);
    wp_log_close(log);
    if (rc)
        return fail(rc, "reading the metadata of log '%s'", name);
    char t[TIME_STR_MAX], a[WP_MSG_ID_STR_MAX], b[WP_MSG_ID_STR_MAX];
    printf("name: %s\nid: %" PRId64 "\nwriter_epoch: %" PRId64 "\ntruncated_to: %s\n"
           "created: %s\nsegments: %" PRId64 "\nbytes: %" PRId64 "\nlast_id: %s\n",
           in.name, in.log_id, in.writer_epoch, format_id(in.truncated_to, a),
           format_time_ms(in.created_ms, t), in.n_segments, in.bytes, format_id(in.last_id, b));
    return finish_stdout();
}

/* ---- truncate, segments, verify ---------------------------------------------- */

static int cmd_truncate(cli *c, int argc, char **argv)
{
    const char *usage = "wp truncate NAME S:E";
    wp_msg_id upto;
    wp_log *log = NULL;
    if (argc < 2)
        return usage_err(usage, "missing %s", argc < 1 ? "log NAME" : "id S:E");
    if (argc > 2)
        return usage_err(usage, "unexpected argument '%s'", argv[2]);
    if (wp_msg_id_parse(argv[1], &upto) != WP_OK)
        return usage_err(usage, "bad id '%s' (want S:E, non-negative)", argv[1]);
    int st = cli_open_log(c, argv[0], &log);
    if (st)
        return st;
    int rc = wp_log_truncate(log, upto);
    wp_log_close(log);
    return rc ? fail(rc, "truncating '%s' at %s", argv[0], argv[1]) : 0;
}

static int cmd_segments(cli *c, int argc, char **argv)
{
    const char *name = NULL;
    wp_log *log = NULL;
    wp_segment_info *segs = NULL;
    size_t n = 0;
    int st = one_name(argc, argv, "wp segments NAME", &name);
    if (st || (st = cli_open_log(c, name, &log)))
        return st;
    int rc = wp_log_segments(log, &segs, &n);
    wp_log_close(log);
    if (rc)
        return fail(rc, "listing the segments of '%s'", name);
    printf("%-8s %-10s %12s %14s %8s %-24s %s\n", "id", "state", "last_entry", "bytes",
           "epoch", "created", "completed");
    for (size_t i = 0; i < n; i++) {
        const wp_segment_info *s = &segs[i];
        char t1[TIME_STR_MAX], t2[TIME_STR_MAX];
        printf("%-8" PRId64 " %-10s %12" PRId64 " %14" PRId64 " %8" PRId64 " %-24s %s\n",
               s->segment_id, wp_seg_state_name(s->state), s->last_entry_id, s->bytes,
               s->writer_epoch, format_time_ms(s->created_ms, t1),
               format_time_ms(s->completed_ms, t2));
    }
    free(segs);
    return finish_stdout();
}

static void verify_problem(void *arg, int64_t segment_id, const char *problem)
{
    int64_t *n = arg;
    (*n)++;
    printf("problem: segment %" PRId64 ": %s\n", segment_id, problem);
}

static int cmd_verify(cli *c, int argc, char **argv)
{
    const char *name = NULL;
    wp_log *log = NULL;
    int64_t checked = 0, problems = 0;
    int st = one_name(argc, argv, "wp verify NAME", &name);
    if (st || (st = cli_open_log(c, name, &log)))
        return st;
    int rc = wp_log_verify(log, verify_problem, &problems, &checked);
    if (rc)
        st = fail(rc, "verifying '%s' (%" PRId64 " problem(s), %" PRId64 " entries checked)",
                  name, problems, checked);
    else
        printf("ok: %" PRId64 " entries checked\n", checked);
    wp_log_close(log);
    if (finish_stdout())
        st = EXIT_FAILURE;
    return st;
}

static int cmd_compact(cli *c, int argc, char **argv)
{
    const char *name = NULL;
    wp_log *log = NULL;
    int st = one_name(argc, argv, "wp compact NAME", &name);
    if (st || (st = cli_open_log(c, name, &log)))
        return st;
    wp_compact_info info;
    int rc = wp_log_compact(log, &info);
    if (rc)
        st = fail(rc, "compacting '%s'", name);
    else
        printf("ok: %" PRId64 " segment(s) sealed, %" PRId64 " PUT(s) of %" PRId64 " bytes\n",
               info.segments_sealed, info.puts, info.put_bytes);
    wp_log_close(log);
    if (finish_stdout())
        st = EXIT_FAILURE;
    return st;
}

static int cmd_stats(cli *c, int argc, char **argv)
{
    const char *usage = "wp stats";
    if (argc > 1)
        return usage_err(usage, "unexpected argument '%s'", argv[1]);
    int st = cli_open_client(c);
    if (st)
        return st;
    char *text = NULL;
    size_t len = 0;
    int rc = wp_client_metrics_text(c->client, &text, &len);
    if (rc)
        return fail(rc, "reading the metrics");
    fwrite(text, 1, len, stdout);
    free(text);
    return finish_stdout() ? EXIT_FAILURE : EXIT_SUCCESS;
}

/* ---- main -------------------------------------------------------------------- */

typedef int (*cmd_fn)(cli *, int argc, char **argv);

static const struct {
    const char *name, *sub; /* sub: NULL for one-word commands */
    cmd_fn fn;
} commands[] = {
    {"log", "create", cmd_log_create}, {"log", "delete", cmd_log_delete},
    {"log", "list", cmd_log_list},     {"log", "info", cmd_log_info},
    {"append", NULL, cmd_append},      {"read", NULL, cmd_read},
    {"truncate", NULL, cmd_truncate},  {"segments", NULL, cmd_segments},
    {"verify", NULL, cmd_verify},      {"bench", NULL, cmd_bench},
    {"compact", NULL, cmd_compact},    {"stats", NULL, cmd_stats},
};

/* The global options before COMMAND. */
typedef struct {
    const char *config_path;
    size_t n_overrides;
    const char *overrides[CLI_OVERRIDES_MAX]; /* "key=value" */
    bool help;
} globals;

static int parse_globals(int argc, char **argv, int *i, globals *g)
{
    for (; *i < argc && is_option(argv[*i]); (*i)++) {
        const char *a = argv[*i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            g->help = true;
        } else if (strcmp(a, "--") == 0) {
            (*i)++;
            break;
        } else if (strcmp(a, "-c") == 0 || strcmp(a, "-o") == 0) {
            if (*i + 1 >= argc)
                return usage_err(global_usage, "option '%s' needs a value", a);
            const char *v = argv[++*i];
            if (a[1] == 'c') {
                g->config_path = v;
            } else if (g->n_overrides == CLI_OVERRIDES_MAX) {
                return usage_err(global_usage, "at most %d -o options", CLI_OVERRIDES_MAX);
            } else {
                g->overrides[g->n_overrides++] = v;
            }
        } else {
            return usage_err(global_usage, "unknown option '%s'", a);
        }
    }
    return 0;
}

/* Applies one -o "key=value" with wp_config_set. */
static int apply_override(wp_config *cfg, const char *kv)
{
    const char *eq = strchr(kv, '=');
    if (!eq || eq == kv)
        return usage_err(global_usage, "-o wants KEY=VALUE, got '%s'", kv);
    char key[CLI_MSG_MAX];
    if ((size_t)(eq - kv) >= sizeof key)
        return fail_msg("-o key too long: '%.64s...'", kv);
    memcpy(key, kv, (size_t)(eq - kv));
    key[eq - kv] = '\0';
    int rc = wp_config_set(cfg, key, eq + 1);
    return rc ? fail(rc, "-o %s", kv) : 0;
}

static void log_to_stderr(void *arg, int level, const char *msg)
{
    (void)arg;
    static const char *const names[] = {"debug", "info", "warn", "error"};
    const char *lvl = level >= 0 && level <= WP_LOG_ERROR ? names[level] : "log";
    fprintf(stderr, "wp: %s: %s\n", lvl, msg);
}

/* Defaults or the -c file, then the environment, then each -o. */
static int build_config(const globals *g, wp_config **out)
{
    wp_config *cfg = NULL;
    int rc = g->config_path ? wp_config_load(g->config_path, &cfg) : wp_config_default(&cfg);
    if (rc)
        return g->config_path ? fail(rc, "loading config '%s'", g->config_path)
                              : fail(rc, "building the default config");
    int st = 0;
    if ((rc = wp_config_apply_env(cfg))) {
        st = fail(rc, "applying WP_* environment overrides");
        goto out_free;
    }
    for (size_t i = 0; i < g->n_overrides; i++)
        if ((st = apply_override(cfg, g->overrides[i])))
            goto out_free;
    wp_config_set_log(cfg, log_to_stderr, NULL);
    *out = cfg;
    return 0;
out_free:
    wp_config_free(cfg);
    return st;
}

/* Finds the command at argv[i] (and its sub-command); sets *used to the
 * number of words it took. */
static cmd_fn find_command(int argc, char **argv, int i, int *used)
{
    for (size_t k = 0; k < sizeof commands / sizeof commands[0]; k++) {
        if (strcmp(argv[i], commands[k].name) != 0)
            continue;
        if (!commands[k].sub) {
            *used = 1;
            return commands[k].fn;
        }
        if (i + 1 < argc && strcmp(argv[i + 1], commands[k].sub) == 0) {
            *used = 2;
            return commands[k].fn;
        }
    }
    return NULL;
}

static int unknown_command(int argc, char **argv, int i)
{
    if (strcmp(argv[i], "log") == 0)
        return usage_err("wp log create|delete|list|info ...",
                         i + 1 < argc ? "unknown log command '%s'" : "missing log command%s",
                         i + 1 < argc ? argv[i + 1] : "");
    return usage_err(global_usage, "unknown command '%s'", argv[i]);
}

int main(int argc, char **argv)
{
    globals g = {0};
    cli c = {0};
    int i = 1, used = 0;
    int st = parse_globals(argc, argv, &i, &g);
    if (st)
        return st;
    if (g.help || (i < argc && strcmp(argv[i], "help") == 0)) {
        fputs(help_text, stdout);
        return finish_stdout();
    }
    if (i >= argc)
        return usage_err(global_usage, "missing COMMAND");
    cmd_fn fn = find_command(argc, argv, i, &used);
    if (!fn)
        return unknown_command(argc, argv, i);
    if ((st = build_config(&g, &c.cfg)))
        return st;
    st = fn(&c, argc - i - used, argv + i + used);
    if (c.client)
        wp_client_close(c.client);
    wp_config_free(c.cfg);
    return st;
}
