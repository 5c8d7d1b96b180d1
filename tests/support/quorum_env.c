/* quorum_env.c — see quorum_env.h. */
#include "quorum_env.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "logstore_proc.h"

#define QE_SERVERS 3  /* quorum.write's default */
#define QE_STOPPING 8 /* clusters told to stop and not yet reaped */

typedef struct {
    char root[1024];
    pid_t pid[QE_SERVERS];
} stopping;

static struct {
    bool running;
    pid_t owner; /* the process that started them */
    char root[1024];
    char nodes[QE_SERVERS * 64 + QE_SERVERS];
    logstore_proc srv[QE_SERVERS];
    /* A server takes up to a second to exit on SIGTERM: the clusters of
     * earlier roots exit in the background while the tests go on. */
    stopping old[QE_STOPPING];
    int n_old;
} qe;

bool quorum_env_on(void)
{
    const char *s = getenv("WP_TEST_STORAGE");
    return s && strcmp(s, "quorum") == 0;
}

/* Waits for the servers of old cluster i and forgets it. */
static void reap(int i)
{
    for (int k = 0; k < QE_SERVERS; k++)
        if (qe.old[i].pid[k] > 0)
            waitpid(qe.old[i].pid[k], NULL, 0);
    qe.old[i] = qe.old[--qe.n_old];
}

/* Tells the running servers to stop; they exit in the background. */
static void stop_running(void)
{
    if (!qe.running || qe.owner != getpid())
        return;
    if (qe.n_old == QE_STOPPING)
        reap(0);
    stopping *o = &qe.old[qe.n_old++];
    snprintf(o->root, sizeof o->root, "%s", qe.root);
    for (int k = 0; k < QE_SERVERS; k++) {
        o->pid[k] = qe.srv[k].pid;
        if (o->pid[k] > 0)
            kill(o->pid[k], SIGTERM);
    }
    qe.running = false;
}

void quorum_env_stop(void)
{
    if (qe.owner != getpid())
        return;
    stop_running();
    while (qe.n_old > 0)
        reap(qe.n_old - 1);
}

static int start(const char *root)
{
    static bool at_exit;
    if (!at_exit) {
        signal(SIGPIPE, SIG_IGN); /* a server that goes away must not end the test */
        atexit(quorum_env_stop);
        at_exit = true;
    }
    for (int i = qe.n_old - 1; i >= 0; i--) /* its data is theirs until they exit */
        if (strcmp(qe.old[i].root, root) == 0)
            reap(i);
    char dir[1200], meta[1300];
    mkdir(root, 0755);
    snprintf(dir, sizeof dir, "%s/logstore", root);
    mkdir(dir, 0755);
    snprintf(meta, sizeof meta, "%s/meta.sqlite", dir);
    qe.owner = getpid();
    snprintf(qe.root, sizeof qe.root, "%s", root);
    memset(qe.srv, 0, sizeof qe.srv);
    qe.running = true;
    size_t n = 0;
    for (int i = 0; i < QE_SERVERS; i++) {
        char sub[1300], id[16];
        snprintf(sub, sizeof sub, "%s/s%d", dir, i);
        snprintf(id, sizeof id, "qe%d", i);
        if (logstore_proc_start(&qe.srv[i], sub, id, meta) != 0) {
            quorum_env_stop();
            return -1;
        }
        n += (size_t)snprintf(qe.nodes + n, sizeof qe.nodes - n, "%s%s", i ? "," : "",
                              qe.srv[i].addr);
    }
    fprintf(stderr, "  (storage.type quorum: LogStore servers %s, data under %s)\n", qe.nodes, dir);
    return 0;
}

/* Server i's directory under the running set's root. */
static void server_dir(int i, char *out, size_t cap)
{
    snprintf(out, cap, "%s/logstore/s%d", qe.root, i);
}

int quorum_env_kill(int i)
{
    if (!qe.running || qe.owner != getpid() || i < 0 || i >= QE_SERVERS || qe.srv[i].pid <= 0)
        return -1;
    logstore_proc_stop(&qe.srv[i], SIGKILL);
    qe.srv[i].pid = 0;
    return 0;
}

int quorum_env_restart(int i)
{
    if (!qe.running || qe.owner != getpid() || i < 0 || i >= QE_SERVERS || qe.srv[i].pid > 0)
        return -1;
    char sub[1300], id[16], meta[1300], listen[100];
    server_dir(i, sub, sizeof sub);
    snprintf(id, sizeof id, "qe%d", i);
    snprintf(meta, sizeof meta, "%s/logstore/meta.sqlite", qe.root);
    char addr[64];
    snprintf(addr, sizeof addr, "%s", qe.srv[i].addr);
    snprintf(listen, sizeof listen, "node.listen=%s", addr);
    const char *opts[] = {listen, NULL};
    if (logstore_proc_start_opts(&qe.srv[i], sub, id, meta, opts) != 0)
        return -1;
    if (strcmp(qe.srv[i].addr, addr) != 0) {
        fprintf(stderr, "  quorum_env: server %d came back on %s, not %s\n", i, qe.srv[i].addr,
                addr);
        return -1;
    }
    return 0;
}

int quorum_env_nodes(const char *root, char *nodes, size_t cap)
{
    if (!qe.running || strcmp(qe.root, root) != 0) {
        if (qe.running && qe.owner != getpid()) {
            fprintf(stderr,
                    "  quorum_env: a forked process opens a client on %s, but the "
                    "servers run for %s\n",
                    root, qe.root);
            return -1;
        }
        stop_running();
        if (start(root) != 0)
            return -1;
    }
    if ((size_t)snprintf(nodes, cap, "%s", qe.nodes) >= cap) {
        fprintf(stderr, "  quorum_env: the server list does not fit %zu bytes\n", cap);
        return -1;
    }
    return 0;
}
