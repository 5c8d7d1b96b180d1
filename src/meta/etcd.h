/* etcd.h — the metadata interface (meta.h) on etcd v3 through its HTTP/JSON
 * gateway. Key layout, value encoding and failure behaviour are in
 * docs/metadata.md §5. */
#ifndef WP_META_ETCD_H
#define WP_META_ETCD_H

#include "config/config.h"
#include "meta/etcd_client.h"
#include "meta/meta.h"

/* Opens a handle on the store under cfg->meta_prefix at
 * cfg->etcd_endpoints (comma-separated), creating the store's version,
 * instance and logidgen keys if absent. Uses etcd_timeout_ms, the
 * username/password and the TLS files of cfg. WP_EUNAVAILABLE if no endpoint
 * answers within the timeout (the message names the endpoint), WP_EINVAL
 * for a store of another schema version. The handle is safe from many
 * threads; close it with m->ops->close. */
int meta_etcd_open(const struct wp_config *cfg, meta **out);

/* Tail notification: watches every segment record of log_id from revision
 * start_rev (0 = from now) on a background thread; fn gets each change
 * exactly once (decode PUT values with meta_etcd_decode_seg). An idle watch
 * costs one open HTTP stream and no requests. Stop with etcd_watch_stop
 * before closing m. */
int meta_etcd_watch_segments(meta *m, int64_t log_id, int64_t start_rev, etcd_watch_fn fn,
                             etcd_watch_err_fn err_fn, void *arg, etcd_watch **out);
/* Decodes a segment record of m's store (e.g. from a watch event). */
int meta_etcd_decode_seg(meta *m, const etcd_kv *kv, meta_seg *out);
/* Counters of a handle's writes (tests, benchmarks). */
typedef struct {
    int64_t txns;          /* txn requests sent */
    int64_t unknown;       /* ...whose outcome was unknown (then re-sent as CAS) */
    int64_t probes;        /* re-checks by tag after an unknown outcome */
    int64_t probe_applied; /* ...that found the earlier attempt had applied */
} meta_etcd_stats;
void meta_etcd_get_stats(meta *m, meta_etcd_stats *out);
/* The handle's client (tests, tools). */
etcd_client *meta_etcd_client(meta *m);

#endif
