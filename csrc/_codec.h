/* Direct access to the __slots__ of aeronpy's message classes.
 *
 * A slot of a __slots__ class is an object pointer at a fixed offset in the instance, described
 * by a member descriptor on the class. Reading and writing it there skips the attribute lookup
 * and the generated Python __init__, which dominate the cost of decoding a small message.
 * _codec.pyx uses this only after checking each descriptor and round-tripping a probe instance;
 * otherwise it falls back to getattr/setattr.
 */
#ifndef AERONPY_CODEC_H
#define AERONPY_CODEC_H

#include <Python.h>
#include "structmember.h"

/* Offset of the object slot a member descriptor describes, or -1 if it is anything else. */
static Py_ssize_t ap_slot_offset(PyObject *descr)
{
    PyMemberDef *member;
    if (descr == NULL || Py_TYPE(descr) != &PyMemberDescr_Type) return -1;
    member = ((PyMemberDescrObject *)descr)->d_member;
    if (member->type != T_OBJECT_EX || (member->flags & READONLY)) return -1;
    return member->offset;
}

/* Borrowed reference to the slot's value, NULL if unset. */
static inline PyObject *ap_slot_get(PyObject *obj, Py_ssize_t offset)
{
    return *(PyObject **)((char *)obj + offset);
}

/* Store a new reference in the slot (the caller gives one up), dropping any old value. */
static inline void ap_slot_set(PyObject *obj, Py_ssize_t offset, PyObject *value)
{
    PyObject **slot = (PyObject **)((char *)obj + offset);
    PyObject *old = *slot;
    *slot = value;
    Py_XDECREF(old);
}

#endif
