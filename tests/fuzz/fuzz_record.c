/* fuzz_record.c — libFuzzer target for rec_decode and rec_decode_checked
 * (docs/format.md §4).
 * A record that decodes must re-encode to the same bytes, pass rec_check,
 * and iterate exactly n_props NUL-free properties. Each input is tried as
 * is and, to get past the crc, with its crc recomputed. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/limits.h"
#include "codec/codec.h"
#include "codec/le.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char *dup_bytes(const uint8_t *p, size_t n)
{
    char *s = malloc(n + 1);
    if (!s)
        abort();
    memcpy(s, p, n);
    s[n] = '\0';
    if (strlen(s) != n) /* a NUL inside a key or value got through */
        abort();
    return s;
}

static void check_one(const uint8_t *data, size_t size)
{
    rec_view r, c;
    size_t used = 0, cused = 0;
    int crc_ok = rec_decode(data, size, &r, &used) == 0;
    /* Without the CRC: the same bounds, so whatever rec_decode takes it
     * takes the same way, and what it takes stays inside the input. */
    if (rec_decode_checked(data, size, &c, &cused) == 0) {
        if (cused > size || c.data + c.len != data + cused || c.props + c.props_len != c.data)
            abort();
        if (crc_ok && (cused != used || c.data != r.data || c.len != r.len))
            abort();
    } else if (crc_ok) {
        abort();
    }
    if (!crc_ok)
        return;
    if (used < 12 || used > size || r.n_props > WP_PROPS_MAX)
        abort();
    if (r.data + r.len != data + used || r.props + r.props_len != r.data)
        abort();

    char **keys = calloc(r.n_props + 1, sizeof *keys), **vals = calloc(r.n_props + 1, sizeof *vals);
    if (!keys || !vals)
        abort();
    size_t off = 0, kl, vl, n = 0;
    const uint8_t *k, *v;
    while (rec_prop_next(&r, &off, &k, &kl, &v, &vl)) {
        if (n >= r.n_props || kl == 0 || kl > WP_PROP_KEY_MAX || vl > WP_PROP_VALUE_MAX)
            abort();
        keys[n] = dup_bytes(k, kl);
        vals[n] = dup_bytes(v, vl);
        n++;
    }
    if (n != r.n_props || off != r.props_len)
        abort();

    wp_payload p = {.data = r.data, .len = r.len, .n_props = n,
                    .prop_keys = (const char *const *)keys,
                    .prop_values = (const char *const *)vals};
    if (rec_check(&p, (size_t)WP_ENTRY_BYTES_MAX) != 0 || rec_size(&p) != used)
        abort();
    uint8_t *out = malloc(used);
    if (!out || rec_encode(&p, out) != used || memcmp(out, data, used) != 0)
        abort();
    free(out);
    for (size_t i = 0; i < n; i++)
        free(keys[i]), free(vals[i]);
    free(keys);
    free(vals);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_one(data, size);
    if (size < 8 || le_get32(data + 4) > size - 8)
        return 0;
    uint8_t *fixed = malloc(size);
    if (!fixed)
        abort();
    memcpy(fixed, data, size);
    le_put32(fixed, crc32c(0, fixed + 4, (size_t)le_get32(fixed + 4) + 4));
    check_one(fixed, size);
    free(fixed);
    return 0;
}
