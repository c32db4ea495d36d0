# C-level contract of aeronpy._applypath: the per-message objects of applying committed session
# messages (the session's replicated state, the view a service gets, and the reply path its
# offer takes). aeronpy.cluster.sessions re-exports them; the module's apply loop drives them.
from libc.stdint cimport int64_t


cdef class Reply:
    # one reply to one client message: a reply-cache entry (the single reply to its seq, as
    # [(correlation_id, data)] would be) and, on the leader, the egress item queued for it
    cdef readonly int64_t session_id
    cdef readonly int64_t correlation_id
    cdef readonly int64_t ack_seq
    cdef readonly bytes data


cdef class SessionState:
    # replicated (in snapshots): see the class docstring
    cdef public object session_id             # int: the SESSION_OPEN index
    cdef public object response_endpoint      # str
    cdef public object client_nonce           # int
    cdef public object connect_correlation_id # int
    cdef public object opened_ns              # int
    cdef public int64_t last_applied_seq
    cdef public dict replies                  # seq -> Reply (one reply) or [(correlation_id, payload)]
    cdef public int64_t offers
    cdef public bint closed
    # a member-local index into replies (its keys, oldest first)
    cdef public object reply_order            # collections.deque

    cpdef object reply_keys(self)
    cpdef bint record_reply(self, int64_t seq, int64_t correlation_id, object payload,
                            Py_ssize_t max_messages, Py_ssize_t max_replies_per_message) except -1


cdef class EgressQueues:
    cdef public Py_ssize_t queue_max          # per client, then drop and count
    cdef public Py_ssize_t dropped
    cdef public Py_ssize_t queued
    cdef dict _queues                         # client_ref -> deque, oldest first

    cpdef bint put(self, object client_ref, object message) except -1
    cdef Py_ssize_t _drain_walk(self, int mode, object send, object convert,
                                Py_ssize_t limit) except -1


cdef class ReplyPath:
    # which message a service is handling (handling is None between messages)
    cdef public SessionState handling
    cdef public int64_t handling_seq
    cdef public int64_t handling_correlation_id
    cdef public bint replied                  # the handled message got a reply
    cdef public bint leader                   # this member's role is LEADER: replies go to egress
    cdef public object config                 # ModuleConfig
    cdef public object counters               # collections.Counter
    cdef public EgressQueues egress
    # a callback outside log order is running (its name), or None: offers then refused
    cdef public object local_callback
    # leader-local: session_id -> set of seqs whose first reply the full egress queue dropped
    # (acks are held below them until the reply is queued again; module._flush_acks)
    cdef public dict dropped_replies
    # config's reply bounds, read once per apply run (apply_session_run) instead of per reply;
    # outside a run (_run_bounds False) offer reads config itself
    cdef bint _run_bounds
    cdef Py_ssize_t _max_bytes
    cdef Py_ssize_t _cache_max
    cdef Py_ssize_t _per_message
    cdef object _ref_of

    cdef int _begin_run(self) except -1
    cdef void _end_run(self) noexcept
    cpdef object offer(self, SessionState s, object payload)
    cpdef note_dropped(self, SessionState s, int64_t seq)


cdef class ClientSession:
    cdef readonly SessionState state
    cdef readonly ReplyPath path
