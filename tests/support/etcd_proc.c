/* etcd_proc.c — etcd members as child processes for tests (etcd_proc.h). */
#include "etcd_proc.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* How long a fresh cluster or a restarted member may take to be healthy. */
#define ETCD_PROC_START_MS 15000
/* Attempts with fresh ports when a member fails to start (port races). */
#define ETCD_PROC_TRIES 3

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void nap_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* A port that was free a moment ago (bound to 0, then released). */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    socklen_t len = sizeof a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int port = -1;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

/* ---- HTTP helpers ------------------------------------------------------ */

typedef struct {
    char buf[4096];
    size_t len;
} small_buf;

static size_t sb_write(char *p, size_t size, size_t nmemb, void *arg)
{
    small_buf *b = arg;
    size_t n = size * nmemb, room = sizeof b->buf - 1 - b->len;
    memcpy(b->buf + b->len, p, n < room ? n : room);
    b->len += n < room ? n : room;
    b->buf[b->len] = '\0';
    return n;
}

/* GET (body NULL) or POST url; the answer (truncated) into out. */
static int http(const etcd_cluster *c, const char *url, const char *body, small_buf *out)
{
    CURL *h = curl_easy_init();
    if (!h)
        return -1;
    if (c->use_tls) {
        curl_easy_setopt(h, CURLOPT_CAINFO, c->tls.ca);
        curl_easy_setopt(h, CURLOPT_SSLCERT, c->tls.client_cert);
        curl_easy_setopt(h, CURLOPT_SSLKEY, c->tls.client_key);
    }
    out->len = 0;
    out->buf[0] = '\0';
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 1000L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, sb_write);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, out);
    if (body)
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
    long code = 0;
    CURLcode cc = curl_easy_perform(h);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
    curl_easy_cleanup(h);
    return cc == CURLE_OK && code == 200 ? 0 : -1;
}

/* ---- processes --------------------------------------------------------- */

static void assign_ports(etcd_cluster *c)
{
    size_t eo = 0, io = 0;
    for (int i = 0; i < c->n; i++) {
        etcd_member *m = &c->m[i];
        m->client_port = free_port();
        m->peer_port = free_port();
        snprintf(m->url, sizeof m->url, "%s://127.0.0.1:%d", c->use_tls ? "https" : "http",
                 m->client_port);
        eo += (size_t)snprintf(c->endpoints + eo, sizeof c->endpoints - eo, "%s%s",
                               i ? "," : "", m->url);
        io += (size_t)snprintf(c->initial + io, sizeof c->initial - io,
                               "%s%s=http://127.0.0.1:%d", i ? "," : "", m->name, m->peer_port);
    }
}

static pid_t spawn(etcd_cluster *c, int i, bool fresh)
{
    etcd_member *m = &c->m[i];
    char client[64], peer[64];
    snprintf(client, sizeof client, "%s", m->url);
    snprintf(peer, sizeof peer, "http://127.0.0.1:%d", m->peer_port);
    const char *argv[64] = {"etcd", "--name", m->name, "--data-dir", m->dir, "--logger=zap",
                            "--log-level=warn", "--listen-client-urls", client,
                            "--advertise-client-urls", client, "--listen-peer-urls", peer,
                            "--initial-advertise-peer-urls", peer, "--initial-cluster", c->initial,
                            "--initial-cluster-state", fresh ? "new" : "existing",
                            "--heartbeat-interval", "50", "--election-timeout", "500"};
    int argc = 0;
    while (argv[argc])
        argc++;
    if (c->use_tls) {
        argv[argc++] = "--cert-file";
        argv[argc++] = c->tls.cert;
        argv[argc++] = "--key-file";
        argv[argc++] = c->tls.key;
        argv[argc++] = "--trusted-ca-file";
        argv[argc++] = c->tls.ca;
        argv[argc++] = "--client-cert-auth";
    }
    for (int k = 0; c->extra[k] && argc < 62; k++)
        argv[argc++] = c->extra[k];
    argv[argc] = NULL;
    pid_t parent = getpid();
    fflush(NULL);
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(126);
    int fd = open(m->log, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
        dup2(fd, 1);
        dup2(fd, 2);
        close(fd);
    }
    execvp("etcd", (char *const *)argv);
    _exit(127);
}

static void print_log(const etcd_member *m)
{
    FILE *f = fopen(m->log, "r");
    char line[512];
    int n = 0;
    fprintf(stderr, "  --- %s (last lines of %s) ---\n", m->name, m->log);
    while (f && fgets(line, sizeof line, f))
        if (++n > 0)
            fprintf(stderr, "  %s", line);
    if (f)
        fclose(f);
}

/* Reaps member i if it exited; true if it is still running. */
static bool alive(etcd_member *m)
{
    if (m->pid <= 0)
        return false;
    if (waitpid(m->pid, NULL, WNOHANG) == m->pid) {
        m->pid = 0;
        return false;
    }
    return true;
}

int etcd_member_wait_healthy(etcd_cluster *c, int i, int64_t timeout_ms)
{
    etcd_member *m = &c->m[i];
    char url[128];
    snprintf(url, sizeof url, "%s/health", m->url);
    int64_t end = mono_ms() + timeout_ms;
    while (mono_ms() < end) {
        small_buf b;
        if (http(c, url, NULL, &b) == 0 && strstr(b.buf, "\"health\":\"true\""))
            return 0;
        if (!alive(m))
            return -1;
        nap_ms(20);
    }
    return -1;
}

int etcd_member_start(etcd_cluster *c, int i)
{
    etcd_member *m = &c->m[i];
    if (alive(m))
        return 0;
    m->pid = spawn(c, i, false);
    if (m->pid < 0) {
        m->pid = 0;
        return -1;
    }
    return 0;
}

int etcd_member_stop(etcd_cluster *c, int i, int sig)
{
    etcd_member *m = &c->m[i];
    if (m->pid <= 0)
        return -1;
    kill(m->pid, sig);
    for (int64_t end = mono_ms() + 10000; mono_ms() < end; nap_ms(10))
        if (waitpid(m->pid, NULL, WNOHANG) == m->pid) {
            m->pid = 0;
            return 0;
        }
    kill(m->pid, SIGKILL);
    waitpid(m->pid, NULL, 0);
    m->pid = 0;
    return 0;
}

static int start_once(etcd_cluster *c)
{
    assign_ports(c);
    for (int i = 0; i < c->n; i++) {
        char name[sizeof c->m[i].name], root[sizeof c->root];
        memcpy(name, c->m[i].name, sizeof name);
        memcpy(root, c->root, sizeof root);
        snprintf(c->m[i].dir, sizeof c->m[i].dir, "%s/%s.data", root, name);
        snprintf(c->m[i].log, sizeof c->m[i].log, "%s/%s.log", root, name);
        c->m[i].pid = spawn(c, i, true);
        if (c->m[i].pid < 0)
            return -1;
    }
    for (int i = 0; i < c->n; i++)
        if (etcd_member_wait_healthy(c, i, ETCD_PROC_START_MS) < 0)
            return -1;
    return 0;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

int etcd_cluster_start(etcd_cluster *c, int n, const char *const *extra)
{
    return etcd_cluster_start_tls(c, n, extra, NULL);
}

int etcd_cluster_start_tls(etcd_cluster *c, int n, const char *const *extra, const etcd_tls *tls)
{
    memset(c, 0, sizeof *c);
    if (n < 1 || n > ETCD_PROC_MEMBERS_MAX)
        return -1;
    if (tls) {
        c->use_tls = true;
        c->tls = *tls;
    }
    c->n = n;
    for (int k = 0; extra && extra[k] && k < ETCD_PROC_EXTRA_MAX; k++)
        c->extra[k] = extra[k];
    const char *base = getenv("WP_TEST_TMP");
    base = base && *base ? base : "/tmp";
    mkdir(base, 0755);
    for (int i = 0; i < n; i++)
        snprintf(c->m[i].name, sizeof c->m[i].name, "m%d", i);
    for (int t = 0; t < ETCD_PROC_TRIES; t++) {
        snprintf(c->root, sizeof c->root, "%s/etcd.%d.XXXXXX", base, (int)getpid());
        if (!mkdtemp(c->root)) {
            perror("etcd_proc: mkdtemp");
            return -1;
        }
        if (start_once(c) == 0)
            return 0;
        fprintf(stderr, "etcd_proc: cluster of %d did not start (try %d)\n", n, t + 1);
        for (int i = 0; i < n; i++)
            print_log(&c->m[i]);
        etcd_cluster_destroy(c);
        c->n = n;
    }
    return -1;
}

static int sh(const char *fmt, const char *dir)
{
    char cmd[4096];
    snprintf(cmd, sizeof cmd, fmt, dir, dir, dir, dir, dir, dir, dir);
    int rc = system(cmd);
    if (rc != 0)
        fprintf(stderr, "etcd_proc: failed (%d): %s\n", rc, cmd);
    return rc == 0 ? 0 : -1;
}

#define EC_KEY "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"

int etcd_tls_make(const char *dir, etcd_tls *t)
{
    memset(t, 0, sizeof *t);
    snprintf(t->ca, sizeof t->ca, "%s/ca.crt", dir);
    snprintf(t->cert, sizeof t->cert, "%s/server.crt", dir);
    snprintf(t->key, sizeof t->key, "%s/server.key", dir);
    snprintf(t->client_cert, sizeof t->client_cert, "%s/client.crt", dir);
    snprintf(t->client_key, sizeof t->client_key, "%s/client.key", dir);
    const char *ext = "printf 'subjectAltName=IP:127.0.0.1\\nextendedKeyUsage=serverAuth,clientAuth\\n' "
                      "> %s/ext.cnf";
    if (sh(ext, dir) < 0 ||
        sh("openssl req -x509 " EC_KEY " -keyout %s/ca.key -out %s/ca.crt -days 2 "
           "-subj /CN=wp-test-ca 2>/dev/null", dir) < 0)
        return -1;
    static const char *const who[] = {"server", "client"};
    for (int i = 0; i < 2; i++) {
        char fmt[1024];
        snprintf(fmt, sizeof fmt, "openssl req " EC_KEY " -keyout %%s/%s.key -out %%s/%s.csr "
                 "-subj /CN=%s 2>/dev/null && openssl x509 -req -in %%s/%s.csr -CA %%s/ca.crt "
                 "-CAkey %%s/ca.key -CAcreateserial -days 2 -extfile %%s/ext.cnf -out %%s/%s.crt "
                 "2>/dev/null", who[i], who[i], i ? "client" : "127.0.0.1", who[i], who[i]);
        if (sh(fmt, dir) < 0)
            return -1;
    }
    return 0;
}

int etcd_cluster_leader(etcd_cluster *c)
{
    for (int i = 0; i < c->n; i++) {
        char url[128];
        small_buf b;
        if (!alive(&c->m[i]))
            continue;
        snprintf(url, sizeof url, "%s/v3/maintenance/status", c->m[i].url);
        if (http(c, url, "{}", &b) < 0)
            continue;
        const char *mid = strstr(b.buf, "\"member_id\":\""), *lead = strstr(b.buf, "\"leader\":\"");
        if (!mid || !lead)
            continue;
        mid += strlen("\"member_id\":\"");
        lead += strlen("\"leader\":\"");
        size_t n = strcspn(mid, "\"");
        if (n > 0 && strncmp(mid, lead, n) == 0 && lead[n] == '"')
            return i;
    }
    return -1;
}

void etcd_cluster_destroy(etcd_cluster *c)
{
    for (int i = 0; i < c->n; i++)
        if (c->m[i].pid > 0)
            etcd_member_stop(c, i, SIGKILL);
    if (c->root[0])
        nftw(c->root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    c->root[0] = '\0';
    c->n = 0;
}

/* ---- proxy ------------------------------------------------------------- */

#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>

#define PROXY_CONNS_MAX 256

struct etcd_proxy {
    int lfd, target_port;
    char url[64];
    pthread_t thr;
    atomic_bool stop;
    pthread_mutex_t mu;
    char drop_prefix[128];
    int drops_left, dropped;
    void (*hook)(void *);
    void *hook_arg;
    bool blackhole;
    pthread_t conns[PROXY_CONNS_MAX];
    int n_conns;
};

typedef struct {
    etcd_proxy *p;
    int cfd;
} proxy_conn;

static bool write_all(int fd, const char *b, ssize_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, b, (size_t)n, MSG_NOSIGNAL); /* either end may hang up */
        if (w <= 0)
            return false;
        b += w;
        n -= w;
    }
    return true;
}

static int connect_target(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons((uint16_t)port);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        fd = -1;
    }
    return fd;
}

/* Whether this chunk from the client starts a request to be dropped. */
static bool should_drop(etcd_proxy *p, const char *b, ssize_t n)
{
    char want[160];
    bool drop = false;
    pthread_mutex_lock(&p->mu);
    snprintf(want, sizeof want, "POST %s", p->drop_prefix);
    if (p->drops_left > 0 && n >= (ssize_t)strlen(want) && memcmp(b, want, strlen(want)) == 0) {
        p->drops_left--;
        drop = true;
    }
    pthread_mutex_unlock(&p->mu);
    return drop;
}

static void run_drop(etcd_proxy *p)
{
    pthread_mutex_lock(&p->mu);
    p->dropped++;
    void (*hook)(void *) = p->hook;
    void *arg = p->hook_arg;
    pthread_mutex_unlock(&p->mu);
    if (hook)
        hook(arg);
}

static void *proxy_pump(void *arg)
{
    proxy_conn *pc = arg;
    etcd_proxy *p = pc->p;
    int sfd = connect_target(p->target_port);
    bool dropping = false;
    char buf[65536];
    while (sfd >= 0 && !atomic_load(&p->stop)) {
        struct pollfd f[2] = {{pc->cfd, POLLIN, 0}, {sfd, POLLIN, 0}};
        if (poll(f, 2, 100) <= 0)
            continue;
        if (f[0].revents) {
            ssize_t n = read(pc->cfd, buf, sizeof buf);
            pthread_mutex_lock(&p->mu);
            bool hole = p->blackhole;
            pthread_mutex_unlock(&p->mu);
            if (n <= 0)
                break;
            if (hole)
                continue;
            dropping = dropping || should_drop(p, buf, n);
            if (!write_all(sfd, buf, n))
                break;
        }
        if (f[1].revents) {
            ssize_t n = read(sfd, buf, sizeof buf);
            if (n <= 0)
                break;
            if (dropping) {
                run_drop(p);
                break;
            }
            if (!write_all(pc->cfd, buf, n))
                break;
        }
    }
    if (sfd >= 0)
        close(sfd);
    close(pc->cfd);
    free(pc);
    return NULL;
}

static void *proxy_accept(void *arg)
{
    etcd_proxy *p = arg;
    while (!atomic_load(&p->stop)) {
        struct pollfd f = {p->lfd, POLLIN, 0};
        if (poll(&f, 1, 100) <= 0)
            continue;
        int cfd = accept(p->lfd, NULL, NULL);
        proxy_conn *pc = cfd >= 0 ? malloc(sizeof *pc) : NULL;
        if (!pc || p->n_conns == PROXY_CONNS_MAX) {
            if (cfd >= 0)
                close(cfd);
            free(pc);
            continue;
        }
        pc->p = p;
        pc->cfd = cfd;
        if (pthread_create(&p->conns[p->n_conns], NULL, proxy_pump, pc) == 0)
            p->n_conns++;
        else {
            close(cfd);
            free(pc);
        }
    }
    return NULL;
}

etcd_proxy *etcd_proxy_start(int target_port)
{
    etcd_proxy *p = calloc(1, sizeof *p);
    struct sockaddr_in a;
    socklen_t len = sizeof a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (!p)
        return NULL;
    p->target_port = target_port;
    pthread_mutex_init(&p->mu, NULL);
    p->lfd = socket(AF_INET, SOCK_STREAM, 0);
    if (p->lfd < 0 || bind(p->lfd, (struct sockaddr *)&a, sizeof a) != 0 || listen(p->lfd, 64) != 0 ||
        getsockname(p->lfd, (struct sockaddr *)&a, &len) != 0 ||
        pthread_create(&p->thr, NULL, proxy_accept, p) != 0) {
        if (p->lfd >= 0)
            close(p->lfd);
        free(p);
        return NULL;
    }
    snprintf(p->url, sizeof p->url, "http://127.0.0.1:%d", ntohs(a.sin_port));
    return p;
}

const char *etcd_proxy_url(etcd_proxy *p) { return p->url; }

void etcd_proxy_drop(etcd_proxy *p, const char *path_prefix, int n, void (*hook)(void *),
                     void *arg)
{
    pthread_mutex_lock(&p->mu);
    snprintf(p->drop_prefix, sizeof p->drop_prefix, "%s", path_prefix);
    p->drops_left = n;
    p->hook = hook;
    p->hook_arg = arg;
    pthread_mutex_unlock(&p->mu);
}

void etcd_proxy_blackhole(etcd_proxy *p, bool on)
{
    pthread_mutex_lock(&p->mu);
    p->blackhole = on;
    pthread_mutex_unlock(&p->mu);
}

int etcd_proxy_dropped(etcd_proxy *p)
{
    pthread_mutex_lock(&p->mu);
    int n = p->dropped;
    pthread_mutex_unlock(&p->mu);
    return n;
}

void etcd_proxy_stop(etcd_proxy *p)
{
    if (!p)
        return;
    atomic_store(&p->stop, true);
    pthread_join(p->thr, NULL);
    for (int i = 0; i < p->n_conns; i++)
        pthread_join(p->conns[i], NULL);
    close(p->lfd);
    pthread_mutex_destroy(&p->mu);
    free(p);
}
