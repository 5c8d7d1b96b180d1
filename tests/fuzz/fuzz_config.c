/* fuzz_config.c — libFuzzer target for the YAML config loader
 * (wp__config_load_buffer). Must never crash or leak; on success every key's
 * wp_config_get text must be accepted by wp_config_set and read back equal.
 * Seeds: tests/fuzz/corpus/fuzz_config/. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char a[WP_PATH_MAX + 1], b[WP_PATH_MAX + 1];
    wp_config *c = NULL, *d = NULL;
    int rc = wp__config_load_buffer((const char *)data, size, "fuzz", &c);
    if (rc < 0) {
        if (c || wp_errmsg()[0] == '\0')
            abort(); /* an error leaves *out NULL and explains itself */
        return 0;
    }
    if (!c || wp_config_default(&d) < 0)
        abort();
    const char *k;
    for (size_t i = 0; (k = wp__config_key_name(i)); i++) {
        if (wp_config_get(c, k, a, sizeof a) < 0 || wp_config_set(d, k, a) < 0 ||
            wp_config_get(d, k, b, sizeof b) < 0 || strcmp(a, b) != 0) {
            fprintf(stderr, "round trip failed for %s: '%s' (%s)\n", k, a, wp_errmsg());
            abort();
        }
    }
    if ((memset(c->set_by_user, 0, sizeof c->set_by_user), memset(d->set_by_user, 0, sizeof d->set_by_user), memcmp(c, d, sizeof *c)) != 0)
        abort();
    wp_config_free(c);
    wp_config_free(d);
    return 0;
}
