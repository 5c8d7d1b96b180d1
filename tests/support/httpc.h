/* httpc.h — a blocking HTTP/1.1 request for tests (libcurl): the streaming
 * service's HTTP/JSON API from a test process, over a real socket. */
#ifndef WP_TEST_HTTPC_H
#define WP_TEST_HTTPC_H

#include <stddef.h>

/* method "GET"/"POST"/"DELETE" to url ("http://host:port/path?query"),
 * with body (NULL: none) as application/json, within timeout_ms. *status:
 * the HTTP status (0 if the request failed: refused, reset, timed out);
 * *resp: the body, NUL-terminated, malloc'd (free it; NULL if none).
 * Returns *status. */
long httpc(const char *method, const char *url, const char *body, long timeout_ms, long *status,
           char **resp);
/* The same with any body bytes, a content type (NULL: application/json)
 * and an Accept header (NULL: any); *resp_len (may be NULL) gets the
 * answer's length (the answer may hold 0 bytes). A transfer stopped by
 * the timeout keeps what came (a pushed stream). */
long httpc_ex(const char *method, const char *url, const char *content_type, const char *accept,
              const void *body, size_t body_len, long timeout_ms, long *status, char **resp,
              size_t *resp_len);

#endif
