/* crc32c.c — CRC-32C (Castagnoli), docs/format.md §1.
 *
 * Two implementations with identical results: the SSE4.2 crc32 instruction
 * when the CPU has it, else slicing-by-8 tables. The choice is made once,
 * at the first call. Both take and return the finalized value, so
 * crc32c(crc32c(0, a), b) == crc32c(0, a || b).
 *
 * The crc32 instruction takes 3 cycles but can start one per cycle, so the
 * SSE4.2 path runs three independent CRCs over three adjacent stretches of
 * the buffer and joins them: crc(A || B) is crc(A) shifted over len(B) zero
 * bytes, xor crc(B) (unfinalized). The shift is a linear map, applied with
 * four 256-entry tables per stretch length (Mark Adler's crc32c.c). Every
 * record and block is checksummed, so this is on the append path. */
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

/* The stretch lengths of the three-way SSE4.2 loop, and tables that shift
 * an unfinalized CRC over that many zero bytes. */
#define STRETCH_LONG 8192
#define STRETCH_SHORT 256
static uint32_t shift_long[4][256], shift_short[4][256];

/* GF(2) 32x32 matrix (mat[i]: image of bit i) times vector. */
static uint32_t gf2_times(const uint32_t *mat, uint32_t vec)
{
    uint32_t sum = 0;
    for (; vec; vec >>= 1, mat++)
        if (vec & 1)
            sum ^= *mat;
    return sum;
}

static void gf2_square(uint32_t *square, const uint32_t *mat)
{
    for (int n = 0; n < 32; n++)
        square[n] = gf2_times(mat, mat[n]);
}

/* The operator that appends len zero bytes (len a power of two >= 1) to an
 * unfinalized CRC, as four byte-indexed tables. */
static void shift_tables(uint32_t out[4][256], size_t len)
{
    uint32_t even[32], odd[32]; /* operators for 2^k zero bits */
    odd[0] = CRC32C_POLY;       /* one zero bit */
    for (int n = 1; n < 32; n++)
        odd[n] = 1u << (n - 1);
    gf2_square(even, odd); /* 2 bits */
    gf2_square(odd, even); /* 4 bits */
    const uint32_t *op;
    for (;;) {
        gf2_square(even, odd); /* 8 bits (a byte), then 4, 16, ... bytes */
        len >>= 1;
        if (!len) {
            op = even;
            break;
        }
        gf2_square(odd, even);
        len >>= 1;
        if (!len) {
            op = odd;
            break;
        }
    }
    for (uint32_t n = 0; n < 256; n++)
        for (int k = 0; k < 4; k++)
            out[k][n] = gf2_times(op, n << (8 * k));
}

static inline uint32_t shift(uint32_t t[4][256], uint32_t crc)
{
    return t[0][crc & 0xff] ^ t[1][(crc >> 8) & 0xff] ^ t[2][(crc >> 16) & 0xff] ^ t[3][crc >> 24];
}
static pthread_once_t init_once = PTHREAD_ONCE_INIT;
/* x^(2^k) mod p(x), for crc32c_combine. */
static uint32_t x2n_table[64];
static uint32_t multmodp(uint32_t a, uint32_t b);

static void crc32c_init(void)
{
    uint32_t xp = 1u << 30; /* x^1 */
    x2n_table[0] = xp;
    for (int k = 1; k < 64; k++)
        x2n_table[k] = xp = multmodp(xp, xp);
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? (c >> 1) ^ CRC32C_POLY : c >> 1;
        table[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++)
        for (int t = 1; t < 8; t++)
            table[t][i] = (table[t - 1][i] >> 8) ^ table[0][table[t - 1][i] & 0xff];
    shift_tables(shift_long, STRETCH_LONG);
    shift_tables(shift_short, STRETCH_SHORT);
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
#if defined(__x86_64__)
static inline uint64_t load64(const uint8_t *p)
{
    uint64_t w;
    memcpy(&w, p, 8);
    return w;
}

/* Three CRCs over three adjacent stretches of len bytes (a multiple of 8)
 * from p, joined into c; returns the new c. */
__attribute__((target("sse4.2"))) static inline uint64_t
crc_3way(uint64_t c, const uint8_t *p, size_t len, uint32_t t[4][256])
{
    uint64_t c1 = 0, c2 = 0;
    for (const uint8_t *end = p + len; p < end; p += 8) {
        c = _mm_crc32_u64(c, load64(p));
        c1 = _mm_crc32_u64(c1, load64(p + len));
        c2 = _mm_crc32_u64(c2, load64(p + 2 * len));
    }
    c = shift(t, (uint32_t)c) ^ (uint32_t)c1;
    return shift(t, (uint32_t)c) ^ (uint32_t)c2;
}
#endif

__attribute__((target("sse4.2"))) uint32_t crc32c_sse42(uint32_t crc, const void *buf,
                                                        size_t n)
{
    const uint8_t *p = buf;
#if defined(__x86_64__)
    pthread_once(&init_once, crc32c_init);
    uint64_t c = ~crc;
    for (; n > 0 && ((uintptr_t)p & 7); n--)
        c = _mm_crc32_u8((uint32_t)c, *p++);
    for (; n >= 3 * STRETCH_LONG; n -= 3 * STRETCH_LONG, p += 3 * STRETCH_LONG)
        c = crc_3way(c, p, STRETCH_LONG, shift_long);
    for (; n >= 3 * STRETCH_SHORT; n -= 3 * STRETCH_SHORT, p += 3 * STRETCH_SHORT)
        c = crc_3way(c, p, STRETCH_SHORT, shift_short);
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

/* ---- combining ------------------------------------------------------------ */

/* a * b mod p(x), both polynomials with x^0 in the top bit (reflected). */
static uint32_t multmodp(uint32_t a, uint32_t b)
{
    uint32_t m = 1u << 31, p = 0;
    for (;;) {
        if (a & m) {
            p ^= b;
            if ((a & (m - 1)) == 0)
                break;
        }
        m >>= 1;
        b = b & 1 ? (b >> 1) ^ CRC32C_POLY : b >> 1;
    }
    return p;
}

uint32_t crc32c_combine(uint32_t crc_a, uint32_t crc_b, size_t len_b)
{
    /* zlib 1.2.12's crc32_combine with this polynomial: crc_a times
     * x^(8 len_b) mod p(x), from the x^(2^k) table, plus crc_b. */
    pthread_once(&init_once, crc32c_init);
    uint32_t xp = 1u << 31; /* x^0 */
    unsigned k = 3;         /* 8 len_b = len_b << 3 */
    for (size_t n = len_b; n; n >>= 1, k++)
        if (n & 1)
            xp = multmodp(x2n_table[k & 63], xp);
    return multmodp(xp, crc_a) ^ crc_b;
}
