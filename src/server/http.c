/* http.c — see http.h. */
#include "server/http.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net/listen.h"

#define REQ_MAX 8192
#define IO_TIMEOUT_MS 2000

struct httpd {
    int lfd, wake[2]; /* wake: a pipe that stops the thread */
    char addr[128];
    httpd_metrics_fn fn;
    void *arg;
    const wp__logger *lg;
    pthread_t thr;
};

static void send_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        struct pollfd pf = {fd, POLLOUT, 0};
        if (poll(&pf, 1, IO_TIMEOUT_MS) != 1)
            return;
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (w <= 0)
            return;
        p += w;
        n -= (size_t)w;
    }
}

static void reply(int fd, const char *status, const char *ctype, const char *body, size_t len)
{
    char head[256];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                     "Connection: close\r\n\r\n",
                     status, ctype, len);
    send_all(fd, head, (size_t)n);
    send_all(fd, body, len);
}

/* Reads the request head (up to the blank line), bounded in size and time. */
static bool read_head(int fd, char *buf, size_t cap, size_t *len)
{
    *len = 0;
    while (*len < cap - 1) {
        struct pollfd pf = {fd, POLLIN, 0};
        if (poll(&pf, 1, IO_TIMEOUT_MS) != 1)
            return false;
        ssize_t r = recv(fd, buf + *len, cap - 1 - *len, MSG_DONTWAIT);
        if (r < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (r <= 0)
            return false;
        *len += (size_t)r;
        buf[*len] = '\0';
        if (strstr(buf, "\r\n\r\n") || strstr(buf, "\n\n"))
            return true;
    }
    return false; /* too long */
}

static void serve(httpd *h, int fd)
{
    char req[REQ_MAX];
    size_t len;
    if (!read_head(fd, req, sizeof req, &len)) {
        static const char msg[] = "bad request: a request head within 8 KiB and 2 s\n";
        reply(fd, "400 Bad Request", "text/plain", msg, sizeof msg - 1);
        return;
    }
    char method[16], path[256];
    if (sscanf(req, "%15s %255s", method, path) != 2) {
        static const char msg[] = "bad request line\n";
        reply(fd, "400 Bad Request", "text/plain", msg, sizeof msg - 1);
        return;
    }
    char *q = strchr(path, '?');
    if (q)
        *q = '\0';
    if (strcmp(path, "/metrics") != 0) {
        static const char msg[] = "not found: GET /metrics\n";
        reply(fd, "404 Not Found", "text/plain", msg, sizeof msg - 1);
        return;
    }
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
        static const char msg[] = "method not allowed: GET /metrics\n";
        reply(fd, "405 Method Not Allowed", "text/plain", msg, sizeof msg - 1);
        return;
    }
    size_t blen = 0;
    char *body = h->fn(h->arg, &blen);
    if (!body) {
        static const char msg[] = "metrics unavailable\n";
        reply(fd, "500 Internal Server Error", "text/plain", msg, sizeof msg - 1);
        return;
    }
    reply(fd, "200 OK", "text/plain; version=0.0.4", body, strcmp(method, "HEAD") ? blen : 0);
    free(body);
}

static void *http_main(void *arg)
{
    httpd *h = arg;
    for (;;) {
        struct pollfd pf[2] = {{h->lfd, POLLIN, 0}, {h->wake[0], POLLIN, 0}};
        if (poll(pf, 2, -1) < 0 && errno != EINTR)
            break;
        if (pf[1].revents)
            break;
        if (!(pf[0].revents & POLLIN))
            continue;
        int fd = accept4(h->lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0)
            continue;
        serve(h, fd);
        close(fd);
    }
    return NULL;
}

int httpd_start(const char *listen, httpd_metrics_fn fn, void *arg, const wp__logger *lg,
                httpd **out)
{
    httpd *h = calloc(1, sizeof *h);
    if (!h)
        return wp__err(WP_ENOMEM, "metrics endpoint");
    h->fn = fn;
    h->arg = arg;
    h->lg = lg;
    h->wake[0] = h->wake[1] = -1;
    int rc = net_listen(listen, "node.metrics_listen", &h->lfd, h->addr, sizeof h->addr);
    if (rc) {
        free(h);
        return rc;
    }
    if (pipe2(h->wake, O_CLOEXEC) != 0) {
        rc = wp__err_sys(errno, "pipe", "metrics endpoint");
    } else if (pthread_create(&h->thr, NULL, http_main, h) != 0) {
        rc = wp__err(WP_ENOMEM, "metrics endpoint thread");
    }
    if (rc) {
        close(h->lfd);
        if (h->wake[0] >= 0) {
            close(h->wake[0]);
            close(h->wake[1]);
        }
        free(h);
        return rc;
    }
    *out = h;
    return WP_OK;
}

const char *httpd_addr(const httpd *h) { return h->addr; }

void httpd_stop(httpd *h)
{
    if (!h)
        return;
    (void)!write(h->wake[1], "x", 1);
    pthread_join(h->thr, NULL);
    close(h->lfd);
    close(h->wake[0]);
    close(h->wake[1]);
    free(h);
}
