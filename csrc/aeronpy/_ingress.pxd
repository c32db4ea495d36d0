# cdef contract of aeronpy._ingress: the leader's client ingress without message objects.
from libc.stdint cimport int64_t

from aeronpy._codec cimport SessionMessageView

cpdef object session_message_fields(object buf)
cpdef bytes encode_session_message_entry(int64_t timestamp_ns, int64_t session_id, int64_t seq,
                                         int64_t correlation_id, int service_id, object payload)


cdef class IngressPath:
    cdef readonly object module     # the ConsensusModule whose state it reads and writes

    cpdef bint on_frame(self, object client_ref, object buf, object clock) except -1
    cdef bint _propose_common(self, object client_ref, SessionMessageView* v,
                              object now_ns) except -1
