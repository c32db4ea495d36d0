"""The client's receive fast path: EgressMessages (a response per offered message, the bulk
of what a client receives) are read in place and handed over as their fields, without a
message object; every other message goes through ``aeronpy._codec.decode`` as before.

``EgressDispatcher`` is the ``handler(peer_id, payload)`` a client passes to
``UdpTransport.poll``. Malformed input is counted in ``decode_errors``, never raised. The
field reading is ``aeronpy._codec``'s own ``egress_message_view`` (one layout, one reader),
so the fast path cannot drift from ``decode``; tests/cluster/test_client_fastpath.py checks
the two agree on random and on broken messages.
"""
from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_FromStringAndSize
from libc.stdint cimport int64_t, uint8_t

from aeronpy._codec cimport EgressMessageView, TYPE_EGRESS_MESSAGE, egress_message_view
from aeronpy._cursor cimport ap_load_u16


cdef class EgressDispatcher:
    """``handler(peer_id, payload)`` for ``UdpTransport.poll`` (see the module docstring).

    ``on_egress_message(session_id, correlation_id, ack_seq, payload, now_ns)`` gets every
    well-formed EgressMessage (``payload`` as bytes) when it is set; otherwise, and for every
    other message type, ``on_message(message, now_ns)`` gets the decoded message. ``now_ns``
    is whatever the caller set before polling, passed through."""

    def __init__(self, decode, decode_error, on_message=None, on_egress_message=None):
        self._decode = decode
        self._decode_error = decode_error
        self.on_message = on_message
        self.on_egress_message = on_egress_message
        self.now_ns = 0
        self.decode_errors = 0

    def __call__(self, peer_id, payload):
        cdef Py_buffer view
        cdef EgressMessageView egress
        cdef bint is_egress = False
        if self.on_egress_message is not None:
            PyObject_GetBuffer(payload, &view, PyBUF_SIMPLE)
            try:
                if view.len >= 4 and ap_load_u16(<const uint8_t*>view.buf) == TYPE_EGRESS_MESSAGE:
                    is_egress = True
                    try:
                        egress_message_view(<const uint8_t*>view.buf, view.len, &egress)
                    except self._decode_error:
                        self.decode_errors += 1
                        return
                    body = PyBytes_FromStringAndSize(<const char*>egress.payload, egress.payload_length)
            finally:
                PyBuffer_Release(&view)
            if is_egress:
                self.on_egress_message(egress.session_id, egress.correlation_id, egress.ack_seq,
                                       body, self.now_ns)
                return
        try:
            message = self._decode(payload)
        except self._decode_error:
            self.decode_errors += 1
            return
        self.on_message(message, self.now_ns)


def egress_fields(payload):
    """(session_id, correlation_id, ack_seq, payload bytes) of an encoded EgressMessage, None
    for any other message type; DecodeError when it is malformed. The dispatcher's reading,
    exposed for the differential tests."""
    cdef Py_buffer view
    cdef EgressMessageView egress
    PyObject_GetBuffer(payload, &view, PyBUF_SIMPLE)
    try:
        if view.len < 4 or ap_load_u16(<const uint8_t*>view.buf) != TYPE_EGRESS_MESSAGE:
            return None
        egress_message_view(<const uint8_t*>view.buf, view.len, &egress)
        return (egress.session_id, egress.correlation_id, egress.ack_seq,
                PyBytes_FromStringAndSize(<const char*>egress.payload, egress.payload_length))
    finally:
        PyBuffer_Release(&view)
