# cdef contract of aeronpy._clientpath: the client's receive fast path (egress without message
# objects). Used from Python only (aeronpy.client.UdpClientTransport); nothing cimports it yet.
from libc.stdint cimport int64_t


cdef class EgressDispatcher:
    cdef object _decode                 # aeronpy._codec.decode: every message but EgressMessage
    cdef object _decode_error           # its exception type (malformed input)
    cdef public object on_message       # on_message(message, now_ns)
    cdef public object on_egress_message    # (session_id, correlation_id, ack_seq, payload, now_ns) or None
    cdef public object now_ns           # passed through to both callbacks
    cdef readonly Py_ssize_t decode_errors
