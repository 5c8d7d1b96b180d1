#include "s3env.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int test_s3_env_load(const char *path, test_s3_env *e)
{
    memset(e, 0, sizeof *e);
    if (!path)
        path = getenv("WP_TEST_S3_ENV");
    FILE *f = path ? fopen(path, "r") : NULL;
    if (!f) {
        fprintf(stderr, "S3 env file (%s) unreadable: run through ctest (scripts/rgw.sh starts "
                        "the server) or scripts/rgw.sh start DIR; WP_TEST_S3_ENV=DIR/env\n",
                path ? path : "WP_TEST_S3_ENV unset");
        return -1;
    }
    const struct {
        const char *k;
        char *v;
        size_t n;
    } vars[] = {{"WP_S3_ENDPOINT=", e->endpoint, sizeof e->endpoint},
                {"WP_S3_ACCESS_KEY=", e->access_key, sizeof e->access_key},
                {"WP_S3_SECRET_KEY=", e->secret_key, sizeof e->secret_key},
                {"WP_S3_BUCKET=", e->bucket, sizeof e->bucket},
                {"WP_S3_REGION=", e->region, sizeof e->region},
                {"WP_S3_HTTPS_ENDPOINT=", e->https_endpoint, sizeof e->https_endpoint},
                {"WP_S3_CA_FILE=", e->ca_file, sizeof e->ca_file}};
    char line[512];
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = 0;
        for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
            if (!strncmp(line, vars[i].k, strlen(vars[i].k)) &&
                snprintf(vars[i].v, vars[i].n, "%s", line + strlen(vars[i].k)) >= (int)vars[i].n)
                *vars[i].v = '\0'; /* too long: treated as missing */
    }
    fclose(f);
    if (!e->region[0])
        snprintf(e->region, sizeof e->region, "us-east-1");
    if (!e->endpoint[0] || !e->bucket[0] || !e->access_key[0] || !e->secret_key[0]) {
        fprintf(stderr, "%s lacks WP_S3_ENDPOINT, WP_S3_BUCKET, WP_S3_ACCESS_KEY or "
                "WP_S3_SECRET_KEY\n", path);
        return -1;
    }
    return 0;
}
