/* CRC-32C (Castagnoli, reflected polynomial 0x82F63B78) for aeronpy._crc.
 *
 * Two implementations with one contract, chosen once at import time:
 *  - hardware: the SSE4.2 crc32 instruction on x86-64 (checked with cpuid at run time, so a
 *    wheel built for baseline x86-64 still uses it) or the ARMv8 CRC32 extension when the
 *    compiler targets it (__ARM_FEATURE_CRC32, e.g. Apple arm64);
 *  - portable: slice-by-8 tables, any compiler, any endianness.
 * Both operate on the raw (non-inverted) register; aeronpy_crc32c_update() applies the
 * standard pre/post inversion so results chain: update(update(0, a), b) == update(0, a+b).
 */
#ifndef AERONPY_CRC32C_IMPL_H
#define AERONPY_CRC32C_IMPL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define AERONPY_CRC32C_POLY 0x82F63B78u

static uint32_t aeronpy_crc32c_table[8][256];
static int aeronpy_crc32c_use_hw = 0;

static uint32_t aeronpy_crc32c_load_le32(const unsigned char *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static void aeronpy_crc32c_build_tables(void)
{
    uint32_t n, c;
    int k;
    for (n = 0; n < 256; n++) {
        c = n;
        for (k = 0; k < 8; k++)
            c = (c >> 1) ^ (AERONPY_CRC32C_POLY & (0u - (c & 1u)));
        aeronpy_crc32c_table[0][n] = c;
    }
    for (n = 0; n < 256; n++) {
        c = aeronpy_crc32c_table[0][n];
        for (k = 1; k < 8; k++) {
            c = (c >> 8) ^ aeronpy_crc32c_table[0][c & 0xFFu];
            aeronpy_crc32c_table[k][n] = c;
        }
    }
}

/* Slice-by-8 over the raw register. */
static uint32_t aeronpy_crc32c_sw(uint32_t c, const unsigned char *p, size_t n)
{
    const uint32_t (*t)[256] = (const uint32_t (*)[256])aeronpy_crc32c_table;
    while (n && ((uintptr_t)p & 7u)) {
        c = t[0][(c ^ *p++) & 0xFFu] ^ (c >> 8);
        n--;
    }
    while (n >= 8) {
        uint32_t lo = c ^ aeronpy_crc32c_load_le32(p);
        uint32_t hi = aeronpy_crc32c_load_le32(p + 4);
        c = t[7][lo & 0xFFu] ^ t[6][(lo >> 8) & 0xFFu] ^ t[5][(lo >> 16) & 0xFFu] ^ t[4][lo >> 24]
          ^ t[3][hi & 0xFFu] ^ t[2][(hi >> 8) & 0xFFu] ^ t[1][(hi >> 16) & 0xFFu] ^ t[0][hi >> 24];
        p += 8;
        n -= 8;
    }
    while (n--)
        c = t[0][(c ^ *p++) & 0xFFu] ^ (c >> 8);
    return c;
}

/* ---- hardware paths ------------------------------------------------------------------- */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define AERONPY_CRC32C_HW_NAME "sse4.2"
#include <cpuid.h>
#include <nmmintrin.h>

__attribute__((target("sse4.2")))
static uint32_t aeronpy_crc32c_hw(uint32_t c, const unsigned char *p, size_t n)
{
    uint64_t c64;
    while (n && ((uintptr_t)p & 7u)) {
        c = _mm_crc32_u8(c, *p++);
        n--;
    }
    c64 = c;
    while (n >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        c64 = _mm_crc32_u64(c64, v);
        p += 8;
        n -= 8;
    }
    c = (uint32_t)c64;
    while (n--)
        c = _mm_crc32_u8(c, *p++);
    return c;
}

static int aeronpy_crc32c_cpu_has_hw(void)
{
    unsigned int a, b, cx, d;
    if (!__get_cpuid(1, &a, &b, &cx, &d))
        return 0;
    return (cx & (1u << 20)) != 0; /* SSE4.2 */
}

#elif defined(_MSC_VER) && defined(_M_X64)
#define AERONPY_CRC32C_HW_NAME "sse4.2"
#include <intrin.h>
#include <nmmintrin.h>

static uint32_t aeronpy_crc32c_hw(uint32_t c, const unsigned char *p, size_t n)
{
    unsigned __int64 c64;
    while (n && ((uintptr_t)p & 7u)) {
        c = _mm_crc32_u8(c, *p++);
        n--;
    }
    c64 = c;
    while (n >= 8) {
        unsigned __int64 v;
        memcpy(&v, p, 8);
        c64 = _mm_crc32_u64(c64, v);
        p += 8;
        n -= 8;
    }
    c = (uint32_t)c64;
    while (n--)
        c = _mm_crc32_u8(c, *p++);
    return c;
}

static int aeronpy_crc32c_cpu_has_hw(void)
{
    int info[4];
    __cpuid(info, 1);
    return (info[2] & (1 << 20)) != 0;
}

#elif defined(__aarch64__) && defined(__ARM_FEATURE_CRC32)
#define AERONPY_CRC32C_HW_NAME "armv8-crc"
#include <arm_acle.h>

static uint32_t aeronpy_crc32c_hw(uint32_t c, const unsigned char *p, size_t n)
{
    while (n && ((uintptr_t)p & 7u)) {
        c = __crc32cb(c, *p++);
        n--;
    }
    while (n >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        c = __crc32cd(c, v);
        p += 8;
        n -= 8;
    }
    while (n--)
        c = __crc32cb(c, *p++);
    return c;
}

static int aeronpy_crc32c_cpu_has_hw(void) { return 1; }

#else
#define AERONPY_CRC32C_HW_NAME "portable"
static uint32_t aeronpy_crc32c_hw(uint32_t c, const unsigned char *p, size_t n)
{
    return aeronpy_crc32c_sw(c, p, n);
}
static int aeronpy_crc32c_cpu_has_hw(void) { return 0; }
#endif

/* ---- public entry points ---------------------------------------------------------------- */

/* Call once (module import, under the GIL) before any update. */
static void aeronpy_crc32c_init(void)
{
    aeronpy_crc32c_build_tables();
    aeronpy_crc32c_use_hw = aeronpy_crc32c_cpu_has_hw();
}

/* Name of the implementation in use: "sse4.2", "armv8-crc" or "portable". */
static const char *aeronpy_crc32c_impl_name(void)
{
    return aeronpy_crc32c_use_hw ? AERONPY_CRC32C_HW_NAME : "portable";
}

static uint32_t aeronpy_crc32c_update(uint32_t crc, const unsigned char *p, size_t n)
{
    uint32_t c = ~crc;
    c = aeronpy_crc32c_use_hw ? aeronpy_crc32c_hw(c, p, n) : aeronpy_crc32c_sw(c, p, n);
    return ~c;
}

static uint32_t aeronpy_crc32c_update_portable(uint32_t crc, const unsigned char *p, size_t n)
{
    return ~aeronpy_crc32c_sw(~crc, p, n);
}

#endif /* AERONPY_CRC32C_IMPL_H */
