"""Client ingress decode for the node's hot path: a SessionMessage straight to its fields.

Why: every client message reaches the leader as a SessionMessage; building the message object
(``_codec.decode``) only for the leader to read its five fields back was a measurable share of
the leader's CPU per message. ``session_message_fields`` validates exactly what ``decode``
validates (it runs the same ``session_message_view`` of ``_codec.pxd``) and returns the fields
as a tuple; any other message type returns None and takes the ``decode`` path.
"""
from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_FromStringAndSize
from libc.stdint cimport uint8_t

from aeronpy._codec cimport SessionMessageView, TYPE_SESSION_MESSAGE, session_message_view
from aeronpy._cursor cimport ap_load_u16


cpdef object session_message_fields(object buf):
    """``(session_id, seq, correlation_id, service_id, payload)`` of a SessionMessage, None
    for a message of another type (or too short to name one); a malformed SessionMessage
    raises ``DecodeError`` as ``decode`` does."""
    cdef Py_buffer b
    cdef SessionMessageView v
    cdef const uint8_t* p
    PyObject_GetBuffer(buf, &b, PyBUF_SIMPLE)
    try:
        p = <const uint8_t*>b.buf
        if b.len < 2 or ap_load_u16(p) != TYPE_SESSION_MESSAGE:
            return None
        session_message_view(p, b.len, &v)
        return (v.session_id, v.seq, v.correlation_id, v.service_id,
                PyBytes_FromStringAndSize(<const char*>v.payload, v.payload_length))
    finally:
        PyBuffer_Release(&b)
