/* Little-endian loads and stores at any alignment, and the lazily imported DecodeError type.
 *
 * memcpy of a fixed small size compiles to one unaligned load/store on every target we build
 * for; big-endian hosts swap bytes, so the wire format is little-endian everywhere.
 */
#ifndef AERONPY_CURSOR_H
#define AERONPY_CURSOR_H

#include <Python.h>
#include <stdint.h>
#include <string.h>

#if defined(__BYTE_ORDER__) && defined(__ORDER_BIG_ENDIAN__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#define AP_BSWAP16(v) __builtin_bswap16(v)
#define AP_BSWAP32(v) __builtin_bswap32(v)
#define AP_BSWAP64(v) __builtin_bswap64(v)
#else
#define AP_BSWAP16(v) (v)
#define AP_BSWAP32(v) (v)
#define AP_BSWAP64(v) (v)
#endif

static inline uint8_t ap_load_u8(const unsigned char *p) { return p[0]; }
static inline uint16_t ap_load_u16(const unsigned char *p) { uint16_t v; memcpy(&v, p, 2); return AP_BSWAP16(v); }
static inline uint32_t ap_load_u32(const unsigned char *p) { uint32_t v; memcpy(&v, p, 4); return AP_BSWAP32(v); }
static inline uint64_t ap_load_u64(const unsigned char *p) { uint64_t v; memcpy(&v, p, 8); return AP_BSWAP64(v); }
static inline int32_t ap_load_i32(const unsigned char *p) { return (int32_t)ap_load_u32(p); }
static inline int64_t ap_load_i64(const unsigned char *p) { return (int64_t)ap_load_u64(p); }

static inline void ap_store_u8(unsigned char *p, uint8_t v) { p[0] = v; }
static inline void ap_store_u16(unsigned char *p, uint16_t v) { v = AP_BSWAP16(v); memcpy(p, &v, 2); }
static inline void ap_store_u32(unsigned char *p, uint32_t v) { v = AP_BSWAP32(v); memcpy(p, &v, 4); }
static inline void ap_store_u64(unsigned char *p, uint64_t v) { v = AP_BSWAP64(v); memcpy(p, &v, 8); }
static inline void ap_store_i32(unsigned char *p, int32_t v) { ap_store_u32(p, (uint32_t)v); }
static inline void ap_store_i64(unsigned char *p, int64_t v) { ap_store_u64(p, (uint64_t)v); }

/* aeronpy._cursor.DecodeError, imported on first use and cached per including module. Only the
 * error path calls this, so modules that cimport the cursor need no import-time dependency. */
static PyObject *ap_decode_error_type(void)
{
    static PyObject *cached = NULL;
    if (cached == NULL) {
        PyObject *mod = PyImport_ImportModule("aeronpy._cursor");
        if (mod == NULL) return NULL;
        cached = PyObject_GetAttrString(mod, "DecodeError");
        Py_DECREF(mod);
    }
    return cached;
}

#endif
