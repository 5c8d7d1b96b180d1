/* httpc.h — a blocking HTTP/1.1 request for tests (libcurl): the streaming
 * service's HTTP/JSON API from a test process, over a real socket. */
#ifndef WP_TEST_HTTPC_H
#define WP_TEST_HTTPC_H

/* method "GET"/"POST"/"DELETE" to url ("http://host:port/path?query"),
 * with body (NULL: none) as application/json, within timeout_ms. *status:
 * the HTTP status (0 if the request failed: refused, reset, timed out);
 * *resp: the body, NUL-terminated, malloc'd (free it; NULL if none).
 * Returns *status. */
long httpc(const char *method, const char *url, const char *body, long timeout_ms, long *status,
           char **resp);

#endif
