/* listen.c — see listen.h. */
#include "net/listen.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/err.h"

int net_listen(const char *spec, const char *what, int *out, char *addr, size_t cap)
{
    char host[256];
    const char *colon = strrchr(spec, ':');
    if (!colon || colon == spec || (size_t)(colon - spec) >= sizeof host)
        return wp__err(WP_EINVAL, "%s '%s': not host:port", what, spec);
    memcpy(host, spec, (size_t)(colon - spec));
    host[colon - spec] = '\0';
    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV}, *ai = NULL;
    int g = getaddrinfo(host, colon + 1, &hints, &ai);
    if (g != 0)
        return wp__err(WP_EINVAL, "%s '%s': %s", what, spec, gai_strerror(g));
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), one = 1;
    int rc = WP_OK;
    if (fd < 0)
        rc = wp__err_sys(errno, "socket", spec);
    else if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
             bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, 128) != 0)
        rc = wp__err_sys(errno, "bind/listen", spec);
    freeaddrinfo(ai);
    if (rc) {
        if (fd >= 0)
            close(fd);
        return rc;
    }
    struct sockaddr_in sa;
    socklen_t sl = sizeof sa;
    getsockname(fd, (struct sockaddr *)&sa, &sl);
    char ip[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &sa.sin_addr, ip, sizeof ip);
    snprintf(addr, cap, "%s:%u", ip, (unsigned)ntohs(sa.sin_port));
    *out = fd;
    return WP_OK;
}
