"""Client ingress on the leader's hot path: a SessionMessage frame to its proposed log entry.

Why: every client message reaches the leader as a SessionMessage, and the Python handling of
one (role and readiness checks, session lookup, sequence checks, entry encode, propose) was
about a third of the leader's CPU per message, the bottleneck process of the cluster.

``session_message_fields`` validates exactly what ``_codec.decode`` validates (the same
``session_message_view`` of ``_codec.pxd``) and returns the fields as a tuple.

``IngressPath.on_frame`` goes one step further: for the common case (this member leads and is
ready, the session is the sending client's own, the payload fits, the message is the next one
of its session, proposals are not held) it does what ``ConsensusModule.on_session_message``
does (last-heard update, cluster time stamp, the SESSION_MESSAGE entry, byte for byte as
``entries.encode_session_message`` writes it, ``core.propose``, counters, sequenced seq)
without leaving C except for ``core.propose``. Every other case (not leader, not ready,
unknown or foreign session, too large, duplicate, gap, held proposals, a role change to
notice) hands the fields to the Python ``on_session_message`` before anything was changed,
so every refusal, answer and counter stays where it is.
"""
from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from cpython.dict cimport PyDict_Check, PyDict_GetItem, PyDict_SetItem
from cpython.object cimport PyObject
from libc.stdint cimport int64_t, uint8_t
from libc.string cimport memcpy

from aeronpy._applypath cimport SessionState
from aeronpy._codec cimport SessionMessageView, TYPE_SESSION_MESSAGE, session_message_view
from aeronpy._cursor cimport ap_load_u16, ap_store_i32, ap_store_i64

from aeronpy.cluster.entries import SESSION_MESSAGE, SESSION_MESSAGE_HEADER_BYTES
from aeronpy.cluster.module_config import ModuleConfig
from aeronpy.service import Role

cdef object _LEADER = Role.LEADER
cdef object _STOCK_CLIENT_REF = ModuleConfig.client_ref
cdef object _SESSION_MESSAGE_TYPE = SESSION_MESSAGE
# entries.SESSION_MESSAGE layout: i64 timestamp | i64 session_id | i64 seq | i64 correlation_id
# | i32 service_id | payload
cdef enum:
    ENTRY_HEADER = 36
assert SESSION_MESSAGE_HEADER_BYTES == ENTRY_HEADER, "entries.SESSION_MESSAGE layout changed"
# what the Python handler catches and counts as ingress_malformed: met on the fast path, the
# message goes to that handler, which meets it again and counts it
_HANDLER_ERRORS = (TypeError, ValueError, AttributeError, OverflowError, UnicodeError)


cdef inline int _open_session_message(object buf, Py_buffer* b, SessionMessageView* v) except -1:
    """Open ``buf``'s buffer into ``b`` and read it as a SessionMessage into ``v``: 1 with the
    buffer held (``v.payload`` points into it; the caller releases ``b`` when done with ``v``),
    0 with it released for a message of another type (or too short to name one); a malformed
    SessionMessage raises ``DecodeError`` with it released."""
    PyObject_GetBuffer(buf, b, PyBUF_SIMPLE)
    cdef const uint8_t* p = <const uint8_t*>b.buf
    if b.len < 2 or ap_load_u16(p) != TYPE_SESSION_MESSAGE:
        PyBuffer_Release(b)
        return 0
    try:
        session_message_view(p, b.len, v)
    except BaseException:
        PyBuffer_Release(b)
        raise
    return 1


cpdef object session_message_fields(object buf):
    """``(session_id, seq, correlation_id, service_id, payload)`` of a SessionMessage, None
    for a message of another type (or too short to name one); a malformed SessionMessage
    raises ``DecodeError`` as ``decode`` does."""
    cdef Py_buffer b
    cdef SessionMessageView v
    if not _open_session_message(buf, &b, &v):
        return None
    try:
        return _fields(&v)
    finally:
        PyBuffer_Release(&b)


cdef inline object _fields(SessionMessageView* v):
    return (v.session_id, v.seq, v.correlation_id, v.service_id,
            PyBytes_FromStringAndSize(<const char*>v.payload, v.payload_length))


cpdef bytes encode_session_message_entry(int64_t timestamp_ns, int64_t session_id, int64_t seq,
                                         int64_t correlation_id, int service_id, object payload):
    """``entries.encode_session_message`` in C (the differential tests hold them equal)."""
    cdef Py_buffer b
    PyObject_GetBuffer(payload, &b, PyBUF_SIMPLE)
    try:
        return _entry(timestamp_ns, session_id, seq, correlation_id, service_id,
                      <const uint8_t*>b.buf, b.len)
    finally:
        PyBuffer_Release(&b)


cdef bytes _entry(int64_t timestamp_ns, int64_t session_id, int64_t seq, int64_t correlation_id,
                  int service_id, const uint8_t* payload, Py_ssize_t length):
    cdef bytes out = PyBytes_FromStringAndSize(NULL, ENTRY_HEADER + length)
    cdef uint8_t* p = <uint8_t*>PyBytes_AS_STRING(out)
    ap_store_i64(p, timestamp_ns)
    ap_store_i64(p + 8, session_id)
    ap_store_i64(p + 16, seq)
    ap_store_i64(p + 24, correlation_id)
    ap_store_i32(p + 32, service_id)
    if length:
        memcpy(p + ENTRY_HEADER, payload, length)
    return out


cdef inline int _count(object counters, str name) except -1:
    """``counters[name] += 1`` on the module's collections.Counter (a dict subclass that
    counts a missing name as 0 and does not override item assignment)."""
    if not PyDict_Check(counters):
        counters[name] += 1
        return 0
    cdef PyObject* have = PyDict_GetItem(counters, name)
    PyDict_SetItem(counters, name, 1 if have is NULL else <object>have + 1)
    return 0


cdef class IngressPath:
    """The leader's SessionMessage handling for one ``ConsensusModule`` (see the module
    docstring); it keeps no state of its own: it reads and writes the module's, each call."""

    def __init__(self, module):
        self.module = module

    cpdef bint on_frame(self, object client_ref, object buf, object clock) except -1:
        """Handle ``buf`` if it is a SessionMessage (``clock()`` gives now_ns, read after
        the decode as the node always did) and return True; False for any other message type
        (the caller decodes it); a malformed SessionMessage raises ``DecodeError``."""
        cdef Py_buffer b
        cdef SessionMessageView v
        if not _open_session_message(buf, &b, &v):
            return False
        try:
            now_ns = clock()
            if not self._propose_common(client_ref, &v, now_ns):
                self.module.on_session_message(client_ref, _fields(&v), now_ns)
            return True
        finally:
            PyBuffer_Release(&b)

    cdef bint _propose_common(self, object client_ref, SessionMessageView* v,
                              object now_ns) except -1:
        """Propose ``v`` if it is the common case and return True; False, having changed
        nothing, for any case the Python handler must see."""
        module = self.module
        core = module.core
        # on_session_message's _sync_role() would change nothing: still the same leadership
        if module._role is not _LEADER or core.role is not _LEADER \
                or core.term != module._leadership_term:
            return False
        if not module._leader_ready or module._proposals_held or module.suspended:
            return False
        config = module.config
        if v.payload_length > config.max_message_bytes:
            return False
        if v.service_id < 0 or v.service_id >= <int>module._service_count:
            return False            # refused by the Python handler (_reject_message)
        cdef PyObject* found = PyDict_GetItem(module.sessions._by_id, v.session_id)
        if found is NULL:
            return False
        cdef SessionState s = <SessionState?>(<object>found)
        if config.bind_session_to_endpoint:
            try:
                if type(config).client_ref is not _STOCK_CLIENT_REF:
                    ref = config.client_ref(s.response_endpoint)
                elif config.client_ref_of_endpoint is None:
                    ref = s.response_endpoint
                else:
                    ref = config.client_ref_of_endpoint(s.response_endpoint)
                if ref != client_ref:
                    return False
            except _HANDLER_ERRORS:
                return False
        cdef int64_t applied = s.last_applied_seq
        if v.seq <= applied:
            return False
        cdef dict leader_seq = module._leader_seq
        session_id = s.session_id
        found = PyDict_GetItem(leader_seq, session_id)
        cdef int64_t sequenced = 0 if found is NULL else <int64_t>(<object>found)
        if sequenced < applied:
            sequenced = applied
        if v.seq != sequenced + 1:
            return False
        # the common case: what on_session_message, _stamp and _propose do, in their order
        module._now_ns = now_ns
        PyDict_SetItem(module._last_heard_ns, session_id, now_ns)
        ts = now_ns
        last_stamp = module._last_stamp_ns
        if last_stamp > ts:
            ts = last_stamp
        cluster_time = module.cluster_time_ns
        if cluster_time > ts:
            ts = cluster_time
        module._last_stamp_ns = ts
        entry = _entry(ts, v.session_id, v.seq, v.correlation_id, v.service_id,
                       v.payload, v.payload_length)
        if core.propose(_SESSION_MESSAGE_TYPE, entry):
            _count(module.counters, "proposed")
            PyDict_SetItem(leader_seq, session_id, v.seq)
        else:
            _count(module.counters, "propose_refused")
        return True
