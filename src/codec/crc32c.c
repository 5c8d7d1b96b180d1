/* crc32c.c — CRC-32C (Castagnoli), docs/format.md §1.
 *
 * Two implementations with identical results: the SSE4.2 crc32 instruction
 * (8 bytes per step) when the CPU has it, else slicing-by-8 tables. The
 * choice is made once, at the first call. Both take and return the
 * finalized value, so crc32c(crc32c(0, a), b) == crc32c(0, a || b). */
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "codec/codec.h"

#if defined(__x86_64__) || defined(__i386__)
#include <nmmintrin.h>
#define HAVE_SSE42_PATH 1
#endif

#define CRC32C_POLY 0x82F63B78u /* reflected 0x1EDC6F41 */

/* Not in codec.h: exposed for the unit test, which compares the two. */
uint32_t crc32c_sw(uint32_t crc, const void *buf, size_t n);
uint32_t crc32c_sse42(uint32_t crc, const void *buf, size_t n);

static uint32_t table[8][256];
static bool use_hw;
static pthread_once_t init_once = PTHREAD_ONCE_INIT;

static void crc32c_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? (c >> 1) ^ CRC32C_POLY : c >> 1;
        table[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++)
        for (int t = 1; t < 8; t++)
            table[t][i] = (table[t - 1][i] >> 8) ^ table[0][table[t - 1][i] & 0xff];
#ifdef HAVE_SSE42_PATH
    __builtin_cpu_init();
    use_hw = __builtin_cpu_supports("sse4.2");
#endif
}

uint32_t crc32c_sw(uint32_t crc, const void *buf, size_t n)
{
    pthread_once(&init_once, crc32c_init);
    const uint8_t *p = buf;
    uint32_t c = ~crc;
    for (; n >= 8; n -= 8, p += 8) {
        uint32_t lo = c ^ ((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                           (uint32_t)p[3] << 24);
        c = table[7][lo & 0xff] ^ table[6][(lo >> 8) & 0xff] ^ table[5][(lo >> 16) & 0xff] ^
            table[4][lo >> 24] ^ table[3][p[4]] ^ table[2][p[5]] ^ table[1][p[6]] ^
            table[0][p[7]];
    }
    while (n--)
        c = (c >> 8) ^ table[0][(c ^ *p++) & 0xff];
    return ~c;
}

#ifdef HAVE_SSE42_PATH
__attribute__((target("sse4.2"))) uint32_t crc32c_sse42(uint32_t crc, const void *buf,
                                                        size_t n)
{
    const uint8_t *p = buf;
#if defined(__x86_64__)
    uint64_t c = ~crc;
    for (; n > 0 && ((uintptr_t)p & 7); n--)
        c = _mm_crc32_u8((uint32_t)c, *p++);
    for (; n >= 8; n -= 8, p += 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        c = _mm_crc32_u64(c, w);
    }
#else
    uint32_t c = ~crc;
    for (; n >= 4; n -= 4, p += 4) {
        uint32_t w;
        memcpy(&w, p, 4);
        c = _mm_crc32_u32(c, w);
    }
#endif
    while (n--)
        c = _mm_crc32_u8((uint32_t)c, *p++);
    return ~(uint32_t)c;
}
#else
uint32_t crc32c_sse42(uint32_t crc, const void *buf, size_t n)
{
    return crc32c_sw(crc, buf, n);
}
#endif

bool crc32c_hw(void)
{
    pthread_once(&init_once, crc32c_init);
    return use_hw;
}

uint32_t crc32c(uint32_t crc, const void *buf, size_t n)
{
    return crc32c_hw() ? crc32c_sse42(crc, buf, n) : crc32c_sw(crc, buf, n);
}
