/* etcd_proc.h — test helper: etcd members as child processes on free
 * loopback ports, each in a fresh data directory under $WP_TEST_TMP (or
 * /tmp). Members die with the test process (PR_SET_PDEATHSIG), so start
 * them from the main thread. Elections are fast (heartbeat 50 ms, election
 * timeout 500 ms), which also makes etcd's minimum lease TTL 1 s. */
#ifndef WP_TESTS_ETCD_PROC_H
#define WP_TESTS_ETCD_PROC_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#define ETCD_PROC_MEMBERS_MAX 3
#define ETCD_PROC_EXTRA_MAX 8

typedef struct {
    char name[16];
    int client_port, peer_port;
    pid_t pid; /* 0 while stopped */
    char url[64];
    char dir[1100], log[1100];
} etcd_member;

/* TLS material for a cluster serving https to clients (peers stay http). */
typedef struct {
    char ca[1100];                    /* CA certificate (PEM) */
    char cert[1100], key[1100];       /* server certificate for 127.0.0.1 */
    char client_cert[1100], client_key[1100]; /* a client certificate */
} etcd_tls;

typedef struct {
    int n;
    etcd_member m[ETCD_PROC_MEMBERS_MAX];
    bool use_tls;
    etcd_tls tls;
    char root[1024];
    char endpoints[3 * 64];   /* every member's client URL, comma-separated */
    char initial[3 * 96];     /* --initial-cluster */
    const char *extra[ETCD_PROC_EXTRA_MAX + 1]; /* extra flags (static strings) */
} etcd_cluster;

/* Starts n (1..3) members and waits until the cluster is healthy (has a
 * leader). extra: NULL or a NULL-terminated list of extra etcd flags.
 * Returns 0 or -1 (with a message on stderr). */
int etcd_cluster_start(etcd_cluster *c, int n, const char *const *extra);
/* The same, serving https and requiring client certificates. */
int etcd_cluster_start_tls(etcd_cluster *c, int n, const char *const *extra, const etcd_tls *tls);
/* Makes a CA, a server certificate (IP 127.0.0.1) and a client certificate
 * in dir with the openssl command. Returns 0 or -1. */
int etcd_tls_make(const char *dir, etcd_tls *out);
/* Sends sig (SIGTERM: clean stop, SIGKILL: crash) to member i and reaps it. */
int etcd_member_stop(etcd_cluster *c, int i, int sig);
/* Restarts a stopped member on its data directory and ports. */
int etcd_member_start(etcd_cluster *c, int i);
/* Waits until member i answers /health with true. */
int etcd_member_wait_healthy(etcd_cluster *c, int i, int64_t timeout_ms);
/* The index of the current leader among running members, or -1. */
int etcd_cluster_leader(etcd_cluster *c);
/* Kills every member and removes the data directories. */
void etcd_cluster_destroy(etcd_cluster *c);

/* ---- a fault-injecting TCP proxy in front of one member ---------------- */

typedef struct etcd_proxy etcd_proxy;

/* Listens on a free loopback port and forwards to 127.0.0.1:target_port. */
etcd_proxy *etcd_proxy_start(int target_port);
/* "http://127.0.0.1:<port>" of the proxy. */
const char *etcd_proxy_url(etcd_proxy *p);
/* The next n requests whose request line starts with "POST <path_prefix>"
 * reach etcd, but their responses are dropped: the proxy runs hook(arg)
 * (if any) and then closes the client's connection, so the client cannot
 * tell whether the request took effect. */
void etcd_proxy_drop(etcd_proxy *p, const char *path_prefix, int n, void (*hook)(void *),
                     void *arg);
/* While on, requests are read and never answered. */
void etcd_proxy_blackhole(etcd_proxy *p, bool on);
/* Responses dropped so far. */
int etcd_proxy_dropped(etcd_proxy *p);
void etcd_proxy_stop(etcd_proxy *p);

#endif
