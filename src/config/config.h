/* config.h — the resolved configuration (docs/configuration.md lists every
 * key, its default and bounds). Filled by config.c; read by the client. */
#ifndef WP_CONFIG_CONFIG_H
#define WP_CONFIG_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

#include "base/limits.h"
#include "woodpecker.h"

struct wp_config {
    char storage_type[16];          /* storage.type: local */
    char storage_root[WP_PATH_MAX]; /* storage.root */
    char meta_type[16];             /* meta.type: sqlite */
    char meta_path[WP_PATH_MAX];    /* meta.path ("" = <storage.root>/meta.sqlite) */
    char meta_prefix[256];          /* meta.prefix */
    char etcd_endpoints[1024];      /* meta.etcd.endpoints: comma-separated URLs */
    int64_t etcd_timeout_ms;        /* meta.etcd.timeout_ms: per request */
    char etcd_username[256];        /* meta.etcd.username ("" = no auth) */
    char etcd_password[256];        /* meta.etcd.password */
    char etcd_ca_file[WP_PATH_MAX]; /* meta.etcd.ca_file (https endpoints) */
    char etcd_cert_file[WP_PATH_MAX]; /* meta.etcd.cert_file (client TLS) */
    char etcd_key_file[WP_PATH_MAX];  /* meta.etcd.key_file */
    char s3_endpoint[1024];         /* storage.s3.endpoint: http(s)://host:port */
    char s3_bucket[64];             /* storage.s3.bucket */
    char s3_region[64];             /* storage.s3.region */
    char s3_access_key[256];        /* storage.s3.access_key ("" = AWS_ACCESS_KEY_ID) */
    char s3_secret_key[256];        /* storage.s3.secret_key ("" = AWS_SECRET_ACCESS_KEY) */
    char s3_prefix[256];            /* storage.s3.prefix: key prefix in the bucket */
    char s3_ca_file[WP_PATH_MAX];   /* storage.s3.ca_file */
    int s3_path_style;              /* storage.s3.path_style: false|true */
    int64_t s3_timeout_ms;          /* storage.s3.timeout_ms: per request */
    int64_t s3_max_retries;         /* storage.s3.max_retries */
    int64_t flush_max_threads;      /* flush.max_threads: uploads in flight (object storage) */
    int64_t compaction_max_bytes;   /* compaction.max_bytes: merged object size */
    int compaction_enabled;         /* compaction.enabled: false|true */
    int64_t segment_max_bytes;      /* segment.max_bytes */
    int64_t segment_max_age_ms;     /* segment.max_age_ms */
    int64_t segment_max_blocks;     /* segment.max_blocks */
    int64_t flush_max_bytes;        /* flush.max_bytes */
    int64_t flush_max_interval_ms;  /* flush.max_interval_ms */
    int64_t flush_max_entries;      /* flush.max_entries */
    int flush_compression;          /* flush.compression: none|zstd|lz4 (BLK_CODEC_*) */
    int64_t writer_max_pending_bytes; /* writer.max_pending_bytes */
    int64_t writer_max_entry_bytes; /* writer.max_entry_bytes */
    int64_t retention_ttl_ms;       /* retention.ttl_ms */
    int64_t gc_interval_ms;         /* gc.interval_ms */
    int64_t reader_lease_ttl_ms;    /* reader.lease_ttl_ms */
    int64_t reader_poll_max_ms;     /* reader.poll_max_ms (cross-process tail) */
    int log_level;                  /* log.level: debug|info|warn|error */
    char quorum_nodes[1280];        /* quorum.nodes: host:port,... (storage.type quorum) */
    int64_t quorum_write;           /* quorum.write: replicas of a segment */
    int64_t quorum_ack;             /* quorum.ack: durable replicas for an ack */
    int64_t quorum_replica_timeout_ms; /* quorum.replica_timeout_ms: a silent replica is dropped */
    char node_id[WP_NODE_ID_MAX + 1]; /* node.id: a LogStore server's id */
    char node_listen[256];          /* node.listen: host:port it serves on */
    char node_data_dir[WP_PATH_MAX]; /* node.data_dir: its segment copies */
    char node_zone[64];             /* node.zone: for placement across zones */
    int64_t node_workers;           /* node.workers: write/sync threads */
    int64_t node_disk_reserve_bytes; /* node.disk_reserve_bytes: refuse ADDs below */
    int64_t node_disk_soft_reserve_bytes; /* node.disk_soft_reserve_bytes: no new segments below */
    char node_metrics_listen[256];  /* node.metrics_listen: host:port of GET /metrics; "" off */
    int64_t node_upload_threads;    /* node.upload_threads: segments uploaded at once */
    int64_t node_upload_interval_ms; /* node.upload_interval_ms: how often held copies are looked at */
    int64_t node_upload_delay_ms;   /* node.upload_delay_ms: a completed segment waits this long */
    int64_t node_drop_grace_ms;     /* node.drop_grace_ms: a sealed copy is kept this long */
    char stream_listen[256];        /* stream.listen: a streaming node's HTTP host:port */
    int64_t stream_lease_ttl_ms;    /* stream.lease_ttl_ms: node and coordinator leases */
    int64_t stream_assign_interval_ms; /* stream.assign_interval_ms: assignment passes / polls */
    int64_t stream_max_request_bytes; /* stream.max_request_bytes: an HTTP request body at most */
    int64_t stream_producer_window; /* stream.producer_window: (seq, id) kept per producer */
    int64_t stream_producer_snapshot_ms; /* stream.producer_snapshot_ms */
    int64_t stream_connections_max; /* stream.connections_max: HTTP connections at once */
    unsigned char set_by_user[96];  /* per key: 1 if set by file/env/wp_config_set */
    wp_log_fn log_fn;
    void *log_arg;
};

/* Parses YAML text (as wp_config_load does for a file) over the defaults.
 * `origin` names the source in error messages. Used by the fuzz target. */
int wp__config_load_buffer(const char *text, size_t len, const char *origin, wp_config **out);
/* The i-th key's name (i from 0), NULL past the last: for tools and tests
 * that go over every key. */
const char *wp__config_key_name(size_t i);
/* True if the key was given a value (file, environment or wp_config_set)
 * rather than left at its default. Lets defaults depend on other keys
 * (flush.* differs for storage.type s3). */
bool wp__config_is_set(const wp_config *c, const char *key);
/* Sets the default for a key after the fact (e.g. meta.path from storage.root). */
const char *wp__config_meta_path(const wp_config *c, char *buf, size_t len);

#endif
