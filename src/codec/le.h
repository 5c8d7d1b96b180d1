/* le.h — little-endian fixed-width loads and stores for the codec
 * (docs/format.md §1: every integer is little-endian and unaligned). */
#ifndef WP_CODEC_LE_H
#define WP_CODEC_LE_H

#include <stdint.h>

static inline void le_put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static inline void le_put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static inline void le_put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static inline uint16_t le_get16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

static inline uint32_t le_get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

static inline uint64_t le_get64(const uint8_t *p)
{
    return (uint64_t)le_get32(p) | (uint64_t)le_get32(p + 4) << 32;
}

/* i64 fields are two's complement; the conversion is done through
 * memcpy-free arithmetic so that it is defined for every bit pattern. */
static inline int64_t le_geti64(const uint8_t *p)
{
    uint64_t u = le_get64(p);
    return u <= (uint64_t)INT64_MAX ? (int64_t)u : -(int64_t)(~u) - 1;
}

static inline void le_puti64(uint8_t *p, int64_t v) { le_put64(p, (uint64_t)v); }

/* True when n bytes at p are all zero. */
static inline int le_all_zero(const uint8_t *p, unsigned n)
{
    uint8_t acc = 0;
    for (unsigned i = 0; i < n; i++)
        acc |= p[i];
    return acc == 0;
}

#endif
