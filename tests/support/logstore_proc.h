/* logstore_proc.h — a LogStore server (build/woodpecker logstore) as a real
 * process on 127.0.0.1 for tests: started on a free port with its data and
 * SQLite metadata under a directory, stopped with a signal. */
#ifndef WP_TEST_LOGSTORE_PROC_H
#define WP_TEST_LOGSTORE_PROC_H

#include <sys/types.h>

typedef struct {
    pid_t pid;
    char addr[64]; /* 127.0.0.1:PORT it serves on */
    char metrics_addr[64]; /* where GET /metrics is (node.metrics_listen), or "" */
    char dir[1024];
    char id[64];
} logstore_proc;

/* Starts `woodpecker logstore` (from $WP_BIN) with node.id id, data in
 * dir/data, metadata dir/meta.sqlite (meta_path overrides when not NULL),
 * zone "zone-b"; waits for its "serving on" line. 0, or -1 (reason on
 * stderr). */
int logstore_proc_start(logstore_proc *s, const char *dir, const char *id, const char *meta_path);
/* The same with more configuration, "key=value" each, NULL-terminated
 * (they override the defaults above, e.g. "node.zone=z1"). */
int logstore_proc_start_opts(logstore_proc *s, const char *dir, const char *id,
                             const char *meta_path, const char *const *opts);
/* A streaming server (docs/streaming.md): role "streaming-node" (s->addr:
 * its HTTP address) or "streaming-coord", with node.id id, storage.root
 * dir/data, stream.listen on a free port, then opts ("key=value", NULL-
 * terminated; metadata settings among them). Waits for its ready line. */
int stream_proc_start(logstore_proc *s, const char *role, const char *dir, const char *id,
                      const char *const *opts);
/* Sends sig, waits; the exit status, or 128 + the signal that ended it. */
int logstore_proc_stop(logstore_proc *s, int sig);

#endif
