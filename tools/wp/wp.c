/* wp.c — the wp command-line client: global options (-c, -o, --help),
 * the configuration they make, and dispatch to the command table (each
 * command group in its own file; cli.h). Exit status: 0 on success, 1 on
 * failure, 2 on a bad command line. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

#define CLI_OVERRIDES_MAX 256

static const char global_usage[] = "wp [-c woodpecker.yaml] [-o key=value]... COMMAND [ARGS]";

static const char help_head[] =
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
    "Commands:\n";

static const char help_tail[] =
    "  help                       print this help\n"
    "\n"
    "Exit status: 0 on success, 1 on failure, 2 on a bad command line.\n";

/* ---- the command table ------------------------------------------------------ */

/* The streaming service's commands (cmd_stream.c). */
int cmd_channel_create(cli *, int, char **);
int cmd_channel_list(cli *, int, char **);
int cmd_channel_delete(cli *, int, char **);
int cmd_produce(cli *, int, char **);
int cmd_consume(cli *, int, char **);

const cli_command cli_commands[] = {
    {"log", "create", cmd_log_create,
         "  log create NAME            create a log\n"},
    {"log", "delete", cmd_log_delete,
         "  log delete NAME            delete a log and its data\n"},
    {"log", "list", cmd_log_list,
         "  log list [PREFIX]          list logs, one name per line\n"},
    {"log", "info", cmd_log_info,
         "  log info NAME              show a log's metadata (key: value lines)\n"},
    {"append", NULL, cmd_append,
         "  append NAME [--prop K=V]... [--file PATH|-]\n"
         "                             append one entry per stdin line (or the whole\n"
         "                             file as one entry); prints each id S:E\n"},
    {"read", NULL, cmd_read,
         "  read NAME [--from earliest|latest|S:E] [--follow] [--count N]\n"
         "            [--timeout-ms MS] [--format text|raw|json]\n"
         "                             print entries; without --follow stop at the end of\n"
         "                             what is durable (no entry for MS, default 200)\n"
         "                             text: S:E<TAB>payload (\\xNN escapes if not printable)\n"
         "                             raw: payloads, each followed by a newline\n"
         "                             json: {\"id\",\"data\",\"props\"} per line (binary data\n"
         "                             as base64 with \"encoding\":\"base64\")\n"},
    {"truncate", NULL, cmd_truncate,
         "  truncate NAME S:E          truncate the log up to S:E (inclusive)\n"},
    {"segments", NULL, cmd_segments,
         "  segments NAME              list the log's segments and where each one lives\n"
         "                             (location: local, object storage, or the replicas'\n"
         "                             node ids in service mode)\n"},
    {"verify", NULL, cmd_verify,
         "  verify NAME                check every CRC, block, index and footer\n"},
    {"compact", NULL, cmd_compact,
         "  compact NAME               object storage: merge the completed segments' objects\n"
         "                             now and mark them sealed (also done in the background)\n"},
    {"nodes", NULL, cmd_nodes,
         "  nodes [--kind KIND] [--json]\n"
         "                             list the live LogStore and streaming servers: id,\n"
         "                             kind, address, zone, load, free space, segments held,\n"
         "                             waiting for upload (count / bytes), upload lag, uptime\n"
         "                             json: an array of objects with the raw figures\n"},
    {"bench", NULL, cmd_bench,
         "  bench [--log NAME] [--entries N] [--size BYTES] [--mode async|sync]\n"
         "        [--window N] [--payload random|text] [--seconds S] [--reader] [--json]\n"
         "                             append benchmark: throughput, ack latency and with\n"
         "                             --reader end-to-end (append to read) latency; CPU\n"
         "                             per GiB and bytes stored (see flush.compression);\n"
         "                             --seconds: stop appending after S seconds\n"},
    {"channel", "create", cmd_channel_create,
         "  channel create NAME        streaming service: create a channel\n"},
    {"channel", "list", cmd_channel_list,
         "  channel list               list the channels: name, owner node, term, address\n"},
    {"channel", "delete", cmd_channel_delete,
         "  channel delete NAME        delete a channel and its messages\n"},
    {"produce", NULL, cmd_produce,
         "  produce CHANNEL [--producer ID]\n"
         "                             send one message per stdin line (an idempotent\n"
         "                             producer: retried through moves, never written\n"
         "                             twice); prints each id S:E\n"},
    {"consume", NULL, cmd_consume,
         "  consume CHANNEL [--from all|latest|at|after] [--id S:E] [--count N]\n"
         "          [--timeout-ms MS] [--follow] [--ids]\n"
         "                             print messages, one payload per line (\\xNN escapes\n"
         "                             if not printable; --ids: S:E<TAB>payload); without\n"
         "                             --follow stop when none came for MS (default 1000)\n"},
    {"stats", NULL, cmd_stats,
         "  stats                      print this client's metrics in the Prometheus text\n"
         "                             format: the segments of every log by state, and the\n"
         "                             process's counters and latency histograms\n"},
};
const size_t cli_n_commands = sizeof cli_commands / sizeof cli_commands[0];

/* ---- global options and dispatch ---------------------------------------------- */

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
static cli_cmd_fn find_command(int argc, char **argv, int i, int *used)
{
    for (size_t k = 0; k < cli_n_commands; k++) {
        const cli_command *cmd = &cli_commands[k];
        if (strcmp(argv[i], cmd->name) != 0)
            continue;
        if (!cmd->sub) {
            *used = 1;
            return cmd->fn;
        }
        if (i + 1 < argc && strcmp(argv[i + 1], cmd->sub) == 0) {
            *used = 2;
            return cmd->fn;
        }
    }
    return NULL;
}

/* `wp --help`: the options, then each command's lines from the table. */
static int print_help(void)
{
    fputs(help_head, stdout);
    for (size_t k = 0; k < cli_n_commands; k++)
        fputs(cli_commands[k].help, stdout);
    fputs(help_tail, stdout);
    return finish_stdout();
}

/* A command with sub-commands (wp log ..., wp channel ...) names them,
 * from the table. */
static int unknown_command(int argc, char **argv, int i)
{
    char subs[256] = "";
    size_t n = 0;
    for (size_t k = 0; k < cli_n_commands && n < sizeof subs - 32; k++)
        if (cli_commands[k].sub && strcmp(argv[i], cli_commands[k].name) == 0)
            n += (size_t)snprintf(subs + n, sizeof subs - n, "%s%s", n ? "|" : "",
                                  cli_commands[k].sub);
    if (!subs[0])
        return usage_err(global_usage, "unknown command '%s'", argv[i]);
    char use[320];
    snprintf(use, sizeof use, "wp %s %s ...", argv[i], subs);
    return usage_err(use, i + 1 < argc ? "unknown %s command '%s'" : "missing %s command%s",
                     argv[i], i + 1 < argc ? argv[i + 1] : "");
}

int main(int argc, char **argv)
{
    globals g = {0};
    cli c = {0};
    int i = 1, used = 0;
    int st = parse_globals(argc, argv, &i, &g);
    if (st)
        return st;
    if (g.help || (i < argc && strcmp(argv[i], "help") == 0))
        return print_help();
    if (i >= argc)
        return usage_err(global_usage, "missing COMMAND");
    cli_cmd_fn fn = find_command(argc, argv, i, &used);
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
