/* http.h — the servers' metrics endpoint: GET /metrics answered with the
 * Prometheus text format (0.0.4) on its own address (node.metrics_listen),
 * by one thread, one short connection at a time (scrapes are rare and
 * small). Anything else gets 404 / 405 / 400; a request is bounded
 * (8 KiB, 2 s), so a slow or hostile client costs at most that. */
#ifndef WP_SERVER_HTTP_H
#define WP_SERVER_HTTP_H

#include "base/err.h"

typedef struct httpd httpd;

/* Writes the body of GET /metrics: returns malloc'd text (*len bytes) or
 * NULL (answered 500). */
typedef char *(*httpd_metrics_fn)(void *arg, size_t *len);

/* Binds listen ("host:port", port 0: any free one) and starts the thread. */
int httpd_start(const char *listen, httpd_metrics_fn fn, void *arg, const wp__logger *lg,
                httpd **out);
/* "host:port" actually bound. */
const char *httpd_addr(const httpd *h);
void httpd_stop(httpd *h);

#endif
