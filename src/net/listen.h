/* listen.h — a listening TCP socket on "host:port" (IPv4; port 0: any free
 * port), for the servers' protocol and metrics endpoints. */
#ifndef WP_NET_LISTEN_H
#define WP_NET_LISTEN_H

#include <stddef.h>

/* Binds and listens (non-blocking, close-on-exec, SO_REUSEADDR); *fd and
 * the address actually bound in addr[cap] ("127.0.0.1:7400"). `what`
 * names the setting in errors (e.g. "node.listen"). */
int net_listen(const char *spec, const char *what, int *fd, char *addr, size_t cap);

#endif
