/* woodpecker — the server binary (ARCHITECTURE §1): one role per run.
 *
 *   woodpecker logstore [-c node.yaml] [-o key=value]...
 *
 * The config is the default (or the -c file), then WP_<SECTION>__<KEY>
 * environment overrides, then each -o (the same as wp's). The logstore
 * role serves docs/protocol.md on node.listen for the copies under
 * node.data_dir, registered in metadata as nodes/<node.id>. It prints one
 * line when it serves ("woodpecker logstore: node N serving on HOST:PORT")
 * and runs until SIGTERM or SIGINT, when it deregisters and exits 0; it
 * exits 1 if it fails (a failed start, or its event loop died). Logs go to
 * stderr. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config/config.h"
#include "server/logstore.h"

static const char usage[] =
    "usage: woodpecker logstore [-c node.yaml] [-o key=value]...\n"
    "\n"
    "Roles:\n"
    "  logstore   serve segment copies to Woodpecker clients (service mode):\n"
    "             keys node.id (required), node.listen, node.data_dir, node.zone,\n"
    "             node.workers, node.disk_reserve_bytes, node.disk_soft_reserve_bytes,\n"
    "             node.metrics_listen, and meta.* for the registration\n"
    "             (docs/configuration.md)\n"
    "\n"
    "SIGUSR1: drain: take no new segments and register no room, so that\n"
    "writers roll their segments away to other servers; go on serving what\n"
    "it holds.\n"
    "SIGTERM or SIGINT: deregister, close, exit 0.\n";

static void log_to_stderr(void *arg, int level, const char *msg)
{
    (void)arg;
    static const char *const names[] = {"debug", "info", "warn", "error"};
    fprintf(stderr, "woodpecker: %s: %s\n", level >= 0 && level <= 3 ? names[level] : "log", msg);
}

static int die(int status, const char *what, int rc)
{
    fprintf(stderr, "woodpecker: error: %s: %s (%s)\n", what, wp_strerror(rc), wp_errmsg());
    return status;
}

/* Defaults or -c FILE, the environment, then every -o KEY=VALUE. */
static int build_config(int argc, char **argv, wp_config **out)
{
    const char *path = NULL;
    for (int i = 2; i < argc; i++)
        if (strcmp(argv[i], "-c") == 0 && i + 1 < argc)
            path = argv[++i];
        else if (strcmp(argv[i], "-o") == 0 && i + 1 < argc)
            i++;
        else {
            fprintf(stderr, "woodpecker: unexpected argument '%s'\n%s", argv[i], usage);
            return 2;
        }
    wp_config *cfg = NULL;
    int rc = path ? wp_config_load(path, &cfg) : wp_config_default(&cfg);
    if (rc)
        return die(2, path ? path : "default config", rc);
    if ((rc = wp_config_apply_env(cfg))) {
        wp_config_free(cfg);
        return die(2, "WP_* environment overrides", rc);
    }
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "-o") != 0) {
            i += strcmp(argv[i], "-c") == 0;
            continue;
        }
        char key[256];
        const char *kv = argv[++i], *eq = strchr(kv, '=');
        if (!eq || eq == kv || (size_t)(eq - kv) >= sizeof key) {
            wp_config_free(cfg);
            fprintf(stderr, "woodpecker: -o wants KEY=VALUE, got '%s'\n", kv);
            return 2;
        }
        memcpy(key, kv, (size_t)(eq - kv));
        key[eq - kv] = '\0';
        if ((rc = wp_config_set(cfg, key, eq + 1))) {
            wp_config_free(cfg);
            return die(2, kv, rc);
        }
    }
    wp_config_set_log(cfg, log_to_stderr, NULL);
    *out = cfg;
    return 0;
}

static int run_logstore(int argc, char **argv)
{
    wp_config *cfg = NULL;
    int st = build_config(argc, argv, &cfg);
    if (st)
        return st;
    wp__logger lg = {cfg->log_fn, cfg->log_arg, cfg->log_level};
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &set, NULL); /* the server's threads inherit it */
    signal(SIGPIPE, SIG_IGN);
    logstore *ls = NULL;
    int rc = logstore_start(cfg, &lg, &ls);
    if (rc) {
        wp_config_free(cfg);
        return die(1, "starting the logstore", rc);
    }
    if (logstore_metrics_addr(ls)) /* before the "serving on" line, which says it is ready */
        printf("woodpecker logstore: metrics on http://%s/metrics\n", logstore_metrics_addr(ls));
    printf("woodpecker logstore: node %s serving on %s\n", cfg->node_id, logstore_addr(ls));
    fflush(stdout);
    st = 0;
    for (;;) {
        struct timespec one = {1, 0};
        int sig = sigtimedwait(&set, NULL, &one);
        if (sig == SIGUSR1) { /* drain: no new segments; writers move away */
            logstore_drain(ls);
            printf("woodpecker logstore: node %s draining\n", cfg->node_id);
            fflush(stdout);
            continue;
        }
        if (sig == SIGTERM || sig == SIGINT)
            break;
        if (logstore_failed(ls)) {
            fprintf(stderr, "woodpecker: error: the logstore failed; stopping\n");
            st = 1;
            break;
        }
    }
    logstore_stop(ls);
    wp_config_free(cfg);
    return st;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "logstore") == 0)
        return run_logstore(argc, argv);
    if (argc >= 2 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 ||
                      strcmp(argv[1], "help") == 0)) {
        fputs(usage, stdout);
        return 0;
    }
    fputs(usage, stderr);
    return 2;
}
