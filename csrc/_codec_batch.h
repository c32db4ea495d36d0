/* Fast path of packing (term, type, payload) entries: an exact tuple of an exact int, an exact
 * int in 0..65535 and exact bytes. Runs no Python code, so the caller may use borrowed
 * references; anything else returns 0 and goes through the general (slower) path. */
#ifndef AERONPY_CODEC_BATCH_H
#define AERONPY_CODEC_BATCH_H

#include <Python.h>
#include <stdint.h>
#if PY_VERSION_HEX < 0x030B0000
#include "longintrepr.h"
#endif

/* Value of an exact int that fits in 64 bits; small ones (one digit) without a call. */
static inline int ap_exact_int64(PyObject *o, int64_t *out)
{
    long long value;
    int overflow;
#if PY_VERSION_HEX >= 0x030C0000
    if (PyUnstable_Long_IsCompact((PyLongObject *)o)) {
        *out = (int64_t)PyUnstable_Long_CompactValue((PyLongObject *)o);
        return 1;
    }
#else
    Py_ssize_t size = Py_SIZE(o);
    if (size == 0) { *out = 0; return 1; }
    if (size == 1 || size == -1) {
        *out = (int64_t)size * (int64_t)((PyLongObject *)o)->ob_digit[0];
        return 1;
    }
#endif
    value = PyLong_AsLongLongAndOverflow(o, &overflow);
    *out = (int64_t)value;
    return !overflow;
}

/* Payload length of an entry of the exact shape, or -1. */
static inline Py_ssize_t ap_entry_fast_length(PyObject *item)
{
    PyObject *payload;
    if (!PyTuple_CheckExact(item) || PyTuple_GET_SIZE(item) != 3) return -1;
    payload = PyTuple_GET_ITEM(item, 2);
    if (!PyBytes_CheckExact(payload) || !PyLong_CheckExact(PyTuple_GET_ITEM(item, 0))
            || !PyLong_CheckExact(PyTuple_GET_ITEM(item, 1)))
        return -1;
    return PyBytes_GET_SIZE(payload);
}

/* All fields of an entry of the exact shape with in-range values; 0 if not. */
static inline int ap_entry_fast(PyObject *item, int64_t *term, uint16_t *entry_type,
                                const unsigned char **data, Py_ssize_t *length)
{
    int64_t type_value;
    if (ap_entry_fast_length(item) < 0) return 0;
    if (!ap_exact_int64(PyTuple_GET_ITEM(item, 0), term)) return 0;
    if (!ap_exact_int64(PyTuple_GET_ITEM(item, 1), &type_value) || type_value < 0 || type_value > 0xFFFF)
        return 0;
    *entry_type = (uint16_t)type_value;
    *data = (const unsigned char *)PyBytes_AS_STRING(PyTuple_GET_ITEM(item, 2));
    *length = PyBytes_GET_SIZE(PyTuple_GET_ITEM(item, 2));
    return 1;
}

#endif
