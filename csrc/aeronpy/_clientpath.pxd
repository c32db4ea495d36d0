# cdef contract of aeronpy._clientpath: the client's receive fast path (egress without message
# objects) and the per-message half of ClientCore. Used from Python (aeronpy.client,
# aeronpy.cluster.client_core); nothing cimports it yet.
from libc.stdint cimport int64_t


cdef class EgressDispatcher:
    cdef object _decode                 # aeronpy._codec.decode: every message but EgressMessage
    cdef object _decode_error           # its exception type (malformed input)
    cdef public object on_message       # on_message(message, now_ns)
    cdef public object on_egress_message    # (session_id, correlation_id, ack_seq, payload, now_ns) or None
    cdef public object now_ns           # passed through to both callbacks
    cdef readonly Py_ssize_t decode_errors


cdef class ClientSessionBase:
    # ClientCore's per-message state: the Python subclass (aeronpy.cluster.client_core)
    # reads and writes these like any attribute; offer(), on_egress_message() and poll() use them
    # without Python frames.
    cdef public object state
    cdef public object _connected_state     # ClientState.CONNECTED / CLOSED (set by the subclass)
    cdef public object _closed_state
    cdef public int64_t session_id
    cdef public object leader_endpoint
    cdef public object outgoing             # [(endpoint, message)]
    cdef public object counters             # name -> int
    cdef public int64_t _next_correlation_id
    cdef public int64_t _next_seq
    cdef public object _window              # deque of messages, seqs _window_base ...
    cdef public int64_t _window_base
    cdef public object _answered            # seq -> [(correlation id, hash of payload)]
    cdef public int64_t _answered_floor
    cdef public object _inbox               # deque of (correlation id, payload)
    cdef public object _awaiting            # set of correlation ids
    cdef public object _replies             # correlation id -> payload
    cdef public object _abandoned           # OrderedDict of correlation ids
    cdef public object _make_message        # SessionMessage factory, None: encode inline
    cdef public int64_t _last_progress_ns
    cdef public int64_t _last_sent_ns
    cdef public int64_t _session_expiry_ns  # the cluster's session timeout; 0: not known
    cdef public Py_ssize_t _max_message_bytes
    cdef public Py_ssize_t _window_messages
    cdef public Py_ssize_t _inbox_max
    cdef void _bump(self, str name) except *
    cdef int _on_egress_fields(self, int64_t session_id, int64_t correlation_id, int64_t ack_seq,
                               bytes payload, int64_t now_ns) except -1
