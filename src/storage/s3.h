/* s3.h — the object-storage backend of the storage interface
 * (src/storage/storage.h) on an S3-compatible endpoint. Object layout:
 * docs/format.md, "Object storage layout". */
#ifndef WP_STORAGE_S3_H
#define WP_STORAGE_S3_H

#include "config/config.h"
#include "storage/s3_client.h"
#include "storage/storage.h"

/* Opens the backend described by cfg->s3_* (endpoint, bucket, region,
 * access_key/secret_key or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, prefix,
 * ca_file, path_style, timeout_ms, max_retries). Sends nothing: the first
 * request is made by the first operation. The logger may be NULL and must
 * outlive the backend. */
int storage_s3_open(const struct wp_config *cfg, const wp__logger *lg, storage **out);

/* Opens the backend on an existing client, keys under `prefix` ("" for the
 * bucket's root; leading and trailing '/' are ignored). Takes ownership of
 * the client (closed with the backend, also on failure). */
int storage_s3_open_client(s3_client *c, const char *prefix, const wp__logger *lg, storage **out);

/* The backend's client (for fault injection and counters in tests). */
s3_client *storage_s3_client(storage *s);
/* Objects readers of this backend took from its copies of recent uploads
 * instead of GETting them (tests). */
uint64_t storage_s3_recent_hits(storage *s);

/* Tells whether the endpoint honours If-None-Match: * on PUT: puts the
 * probe object <prefix>.probe/<random> twice with S3_PUT_IF_ABSENT; the
 * second must be refused (412). *honoured is set only on success. The
 * probe object is deleted again (a failed delete is returned as an
 * error). Errors of the requests are returned as s3_put gives them. */
int storage_s3_probe_conditional(storage *st, bool *honoured);

#endif
