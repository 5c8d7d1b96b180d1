/* httpc.c — see httpc.h. */
#include "httpc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

typedef struct {
    char *p;
    size_t len;
} buf;

static size_t on_data(char *d, size_t sz, size_t n, void *arg)
{
    buf *b = arg;
    size_t k = sz * n;
    char *np = realloc(b->p, b->len + k + 1);
    if (!np)
        return 0;
    memcpy(np + b->len, d, k);
    b->p = np;
    b->len += k;
    b->p[b->len] = '\0';
    return k;
}

long httpc_ex(const char *method, const char *url, const char *content_type, const char *accept,
              const void *body, size_t body_len, long timeout_ms, long *status, char **resp,
              size_t *resp_len)
{
    *status = 0;
    if (resp)
        *resp = NULL;
    if (resp_len)
        *resp_len = 0;
    CURL *c = curl_easy_init();
    if (!c)
        return 0;
    buf b = {0};
    char ct[200], acc[200];
    snprintf(ct, sizeof ct, "Content-Type: %s", content_type ? content_type : "application/json");
    snprintf(acc, sizeof acc, "Accept: %s", accept ? accept : "*/*");
    struct curl_slist *h = curl_slist_append(NULL, ct);
    h = curl_slist_append(h, acc);
    h = curl_slist_append(h, "Expect:");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms < 2000 ? timeout_ms : 2000L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
    }
    CURLcode cr = curl_easy_perform(c);
    if (cr == CURLE_OK || (cr == CURLE_OPERATION_TIMEDOUT && b.len > 0))
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    if (resp_len)
        *resp_len = b.len;
    if (resp)
        *resp = b.p;
    else
        free(b.p);
    return *status;
}

long httpc(const char *method, const char *url, const char *body, long timeout_ms, long *status,
           char **resp)
{
    return httpc_ex(method, url, NULL, NULL, body, body ? strlen(body) : 0, timeout_ms, status,
                    resp, NULL);
}
