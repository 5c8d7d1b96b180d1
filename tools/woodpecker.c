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
 * stderr. It keeps node.data_dir/logstore.pid (its pid, locked with flock
 * for as long as it runs: a second server on the same directory is
 * refused), which `woodpecker logstore drain` signals. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include "config/config.h"
#include "meta/meta.h"
#include "os/os.h"
#include "server/logstore.h"
#include "stream/coord.h"
#include "stream/node.h"

static const char usage[] =
    "usage: woodpecker logstore [-c node.yaml] [-o key=value]...\n"
    "       woodpecker logstore drain [--wait] [-c node.yaml] [-o key=value]...\n"
    "       woodpecker streaming-node [-c node.yaml] [-o key=value]...\n"
    "       woodpecker streaming-coord [-c coord.yaml] [-o key=value]...\n"
    "\n"
    "Roles:\n"
    "  logstore   serve segment copies to Woodpecker clients (service mode):\n"
    "             keys node.id (required), node.listen, node.data_dir, node.zone,\n"
    "             node.workers, node.disk_reserve_bytes, node.disk_soft_reserve_bytes,\n"
    "             node.metrics_listen, meta.* for the registration, and for\n"
    "             tiering storage.s3.* with node.upload_threads,\n"
    "             node.upload_interval_ms, node.upload_delay_ms,\n"
    "             node.drop_grace_ms, gc.interval_ms, retention.ttl_ms\n"
    "             (docs/configuration.md, \"Tiering\")\n"
    "  streaming-node   host channels and serve produce/consume over HTTP\n"
    "             (docs/streaming.md): keys node.id (required), stream.listen,\n"
    "             stream.*, meta.* (generic records: etcd or sqlite), and the\n"
    "             storage of the channels' logs (storage.*, quorum.*)\n"
    "  streaming-coord  assign channels to streaming nodes; one of several is\n"
    "             active (elected through metadata): node.id (required),\n"
    "             stream.lease_ttl_ms, stream.assign_interval_ms, meta.*\n"
    "\n"
    "Drain (`woodpecker logstore drain` with the server's config, or SIGUSR1\n"
    "to the pid in node.data_dir/logstore.pid): the server takes no new\n"
    "segments and registers no room, so that writers roll their segments\n"
    "away to other servers; it goes on serving what it holds and uploading\n"
    "completed segments to object storage (storage.s3.*), and exits 0 once\n"
    "it holds nothing that is not there. --wait: wait until it has exited.\n"
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
static int build_config(int argc, char **argv, int first, wp_config **out)
{
    const char *path = NULL;
    for (int i = first; i < argc; i++)
        if (strcmp(argv[i], "-c") == 0 && i + 1 < argc)
            path = argv[++i];
        else if (strcmp(argv[i], "-o") == 0 && i + 1 < argc)
            i++;
        else if (strcmp(argv[i], "--wait") == 0 && first == 3)
            ;
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
    for (int i = first; i < argc; i++) {
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

/* node.data_dir/logstore.pid: opened, locked (-1: another server holds
 * it) and holding this pid. */
static int pid_file(const wp_config *cfg, char *path, size_t cap)
{
    int n = snprintf(path, cap, "%s/logstore.pid", cfg->node_data_dir);
    if (n < 0 || (size_t)n >= cap) {
        fprintf(stderr, "woodpecker: error: node.data_dir is too long\n");
        return -1;
    }
    if (os_mkdir_p(cfg->node_data_dir) != WP_OK) {
        fprintf(stderr, "woodpecker: error: node.data_dir: %s\n", wp_errmsg());
        return -1;
    }
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0 || flock(fd, LOCK_EX | LOCK_NB) != 0) {
        fprintf(stderr, "woodpecker: error: %s: %s\n", path,
                fd >= 0 && errno == EWOULDBLOCK ? "another server runs on this data directory"
                                                 : strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    char b[32];
    int len = snprintf(b, sizeof b, "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, b, (size_t)len, 0) != len) {
        fprintf(stderr, "woodpecker: error: %s: %s\n", path, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

/* woodpecker logstore drain: SIGUSR1 to the server of this data directory. */
static int run_drain(int argc, char **argv)
{
    bool wait = false;
    for (int i = 3; i < argc; i++)
        wait |= strcmp(argv[i], "--wait") == 0;
    wp_config *cfg = NULL;
    int st = build_config(argc, argv, 3, &cfg);
    if (st)
        return st;
    char path[WP_PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/logstore.pid", cfg->node_data_dir);
    wp_config_free(cfg);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    char b[32] = "";
    ssize_t got = fd >= 0 ? pread(fd, b, sizeof b - 1, 0) : -1;
    long pid = got > 0 ? strtol(b, NULL, 10) : 0;
    /* A server holds the lock while it runs: if we can take it, none does. */
    bool running = fd >= 0 && flock(fd, LOCK_SH | LOCK_NB) != 0;
    if (!running || pid <= 0) {
        fprintf(stderr, "woodpecker: no LogStore server runs on %s\n", path);
        if (fd >= 0)
            close(fd);
        return 1;
    }
    if (kill((pid_t)pid, SIGUSR1) != 0) {
        fprintf(stderr, "woodpecker: signalling pid %ld: %s\n", pid, strerror(errno));
        close(fd);
        return 1;
    }
    printf("woodpecker logstore: pid %ld draining\n", pid);
    fflush(stdout);
    while (wait && flock(fd, LOCK_SH | LOCK_NB) != 0) {
        struct timespec t = {0, 100 * 1000000L};
        nanosleep(&t, NULL);
    }
    if (wait)
        printf("woodpecker logstore: pid %ld exited\n", pid);
    close(fd);
    return 0;
}

static int run_logstore(int argc, char **argv)
{
    if (argc >= 3 && strcmp(argv[2], "drain") == 0)
        return run_drain(argc, argv);
    wp_config *cfg = NULL;
    int st = build_config(argc, argv, 2, &cfg);
    if (st)
        return st;
    /* Before anything is created on disk (node.data_dir, its pid file). */
    if (!meta_node_id_valid(cfg->node_id, strlen(cfg->node_id))) {
        fprintf(stderr, "woodpecker: error: node.id %s'%s': a LogStore server needs one, 1..%d "
                "bytes of [A-Za-z0-9._-]\n", cfg->node_id[0] ? "" : "is empty ", cfg->node_id,
                WP_NODE_ID_MAX);
        wp_config_free(cfg);
        return 1;
    }
    char pid_path[WP_PATH_MAX + 32];
    int pid_fd = pid_file(cfg, pid_path, sizeof pid_path);
    if (pid_fd < 0) {
        wp_config_free(cfg);
        return 1;
    }
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
        close(pid_fd);
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
        if (logstore_drained(ls)) {
            printf("woodpecker logstore: node %s drained: it holds nothing that is not in "
                   "object storage; exiting\n", cfg->node_id);
            fflush(stdout);
            break;
        }
        if (logstore_failed(ls)) {
            fprintf(stderr, "woodpecker: error: the logstore failed; stopping\n");
            st = 1;
            break;
        }
    }
    logstore_stop(ls);
    unlink(pid_path);
    close(pid_fd); /* the lock goes last: drain --wait returns after the exit */
    wp_config_free(cfg);
    return st;
}

/* streaming-node and streaming-coord: start, print the ready line, run
 * until SIGTERM or SIGINT. */
static int run_stream(int argc, char **argv, bool coord)
{
    wp_config *cfg = NULL;
    int st = build_config(argc, argv, 2, &cfg);
    if (st)
        return st;
    wp__logger lg = {cfg->log_fn, cfg->log_arg, cfg->log_level};
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL); /* the server's threads inherit it */
    signal(SIGPIPE, SIG_IGN);
    stream_node *n = NULL;
    stream_coord *c = NULL;
    int rc = coord ? stream_coord_start(cfg, &lg, &c) : stream_node_start(cfg, &lg, &n);
    if (rc) {
        wp_config_free(cfg);
        return die(1, coord ? "starting the coordinator" : "starting the streaming node", rc);
    }
    if (coord)
        printf("woodpecker streaming-coord: %s running\n", cfg->node_id);
    else
        printf("woodpecker streaming-node: node %s serving on %s\n", cfg->node_id,
               stream_node_addr(n));
    fflush(stdout);
    int sig = 0;
    sigwait(&set, &sig);
    if (coord)
        stream_coord_stop(c);
    else
        stream_node_stop(n);
    wp_config_free(cfg);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "streaming-node") == 0)
        return run_stream(argc, argv, false);
    if (argc >= 2 && strcmp(argv[1], "streaming-coord") == 0)
        return run_stream(argc, argv, true);
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
