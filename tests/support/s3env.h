/* s3env.h — the coordinates of the test S3 server: the env file that
 * scripts/rgw.sh writes (WP_S3_ENDPOINT=..., ...), named by $WP_TEST_S3_ENV
 * (CTest sets it for tests named *_s3*). */
#ifndef WP_TEST_S3ENV_H
#define WP_TEST_S3ENV_H

typedef struct {
    char endpoint[256], access_key[128], secret_key[128], bucket[64], region[64];
    char https_endpoint[256], ca_file[1024]; /* optional: the server's TLS endpoint */
} test_s3_env;

/* Reads $WP_TEST_S3_ENV (or `path` if not NULL) into *out; region defaults
 * to us-east-1. Returns 0, or -1 with the reason on stderr. */
int test_s3_env_load(const char *path, test_s3_env *out);

#endif
