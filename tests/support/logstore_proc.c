/* logstore_proc.c — see logstore_proc.h. */
#include "logstore_proc.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

int logstore_proc_start(logstore_proc *s, const char *dir, const char *id, const char *meta_path)
{
    return logstore_proc_start_opts(s, dir, id, meta_path, NULL);
}

/* Forks and execs argv (stdout to a pipe, stderr to dir/server.log), then
 * reads its lines until one contains `ready` (lines with "metrics on
 * http://" before it set metrics_addr). The text after `ready` goes to
 * s->addr. 0, or -1 with the reason on stderr. */
static int spawn(logstore_proc *s, const char *dir, const char *id, const char *const *argv,
                 const char *ready)
{
    snprintf(s->dir, sizeof s->dir, "%s", dir);
    snprintf(s->id, sizeof s->id, "%s", id);
    int pfd[2];
    if (pipe(pfd) != 0)
        return -1;
    char errlog[1200];
    snprintf(errlog, sizeof errlog, "%s/server.log", dir);
    mkdir(dir, 0755);
    s->pid = fork();
    if (s->pid == 0) {
        /* Dies with the test (a failed check must not leave it running),
         * and keeps no pipe of the test runner open (its log is a file). */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int fd = open(errlog, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0)
            dup2(fd, 2);
        dup2(pfd[1], 1);
        close(pfd[0]);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(pfd[1]);
    char line[256] = {0};
    s->metrics_addr[0] = '\0';
    for (;;) { /* lines up to the ready one (a "metrics on" line comes first) */
        size_t n = 0;
        struct pollfd p = {pfd[0], POLLIN, 0};
        while (n < sizeof line - 1 && poll(&p, 1, 10000) == 1) {
            ssize_t r = read(pfd[0], line + n, 1);
            if (r <= 0 || line[n] == '\n')
                break;
            n++;
        }
        line[n] = '\0'; /* without the newline */
        const char *m = strstr(line, "metrics on http://");
        if (!m)
            break;
        snprintf(s->metrics_addr, sizeof s->metrics_addr, "%.*s",
                 (int)strcspn(m + strlen("metrics on http://"), "/"), m + strlen("metrics on http://"));
    }
    close(pfd[0]);
    const char *at = strstr(line, ready);
    if (!at) {
        fprintf(stderr, "  server %s did not start: '%s' (see %s)\n", id, line, errlog);
        return -1;
    }
    snprintf(s->addr, sizeof s->addr, "%s", at + strlen(ready));
    return 0;
}

static const char *bin_path(char *out, size_t cap)
{
    const char *b = getenv("WP_BIN");
    snprintf(out, cap, "%s/woodpecker", b ? b : ".");
    return out;
}

int logstore_proc_start_opts(logstore_proc *s, const char *dir, const char *id,
                             const char *meta_path, const char *const *opts)
{
    char bin[1200], o_id[200], o_data[1200], o_meta[1200];
    bin_path(bin, sizeof bin);
    snprintf(o_id, sizeof o_id, "node.id=%s", id);
    snprintf(o_data, sizeof o_data, "node.data_dir=%s/data", dir);
    if (meta_path)
        snprintf(o_meta, sizeof o_meta, "meta.path=%s", meta_path);
    else
        snprintf(o_meta, sizeof o_meta, "meta.path=%s/meta.sqlite", dir);
    const char *argv[64] = {bin, "logstore", "-o", o_id, "-o", "node.listen=127.0.0.1:0",
                            "-o", o_data, "-o", o_meta, "-o", "node.workers=2", "-o",
                            "node.disk_reserve_bytes=0", "-o", "node.zone=zone-b"};
    int argc = 16;
    for (int i = 0; opts && opts[i] && argc < 62; i++) { /* later -o win */
        argv[argc++] = "-o";
        argv[argc++] = opts[i];
    }
    argv[argc] = NULL;
    return spawn(s, dir, id, argv, "serving on ");
}

int stream_proc_start(logstore_proc *s, const char *role, const char *dir, const char *id,
                      const char *const *opts)
{
    char bin[1200], o_id[200], o_root[1200];
    bin_path(bin, sizeof bin);
    snprintf(o_id, sizeof o_id, "node.id=%s", id);
    snprintf(o_root, sizeof o_root, "storage.root=%s/data", dir);
    const char *argv[64] = {bin, role, "-o", o_id, "-o", "stream.listen=127.0.0.1:0", "-o",
                            o_root};
    int argc = 8;
    for (int i = 0; opts && opts[i] && argc < 62; i++) {
        argv[argc++] = "-o";
        argv[argc++] = opts[i];
    }
    argv[argc] = NULL;
    bool coord = strcmp(role, "streaming-coord") == 0;
    return spawn(s, dir, id, argv, coord ? "streaming-coord: " : "serving on ");
}

int logstore_proc_stop(logstore_proc *s, int sig)
{
    int status = 0;
    kill(s->pid, sig);
    waitpid(s->pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}
