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
from libc.stdint cimport int64_t, uint8_t, uint64_t

from aeronpy._codec cimport EgressMessageView, TYPE_EGRESS_MESSAGE, egress_message_view
from aeronpy._cursor cimport ap_load_u16


cdef inline int64_t _response_key(int64_t correlation_id, bytes payload) except? -1:
    cdef uint64_t h = <uint64_t>hash(payload)
    h ^= (<uint64_t>correlation_id) * <uint64_t>0x9E3779B97F4A7C15
    h ^= h >> 31
    return <int64_t>h


def response_key(int64_t correlation_id, bytes payload):
    """The identity of a response for the client's duplicate check, as an int.

    An int, not a tuple in a list: the record keeps the responses of ``window_messages``
    seqs, and two objects the garbage collector tracks per response, each living for a
    window of requests, gave every young collection in the client's process thousands more
    objects to walk (280 us on average against 40 us, at 10k requests/s in an application
    keeping one tuple per request)."""
    return _response_key(correlation_id, payload)


cpdef bint record_response(dict answered, int64_t seq, object key):
    """Note response ``key`` for message ``seq``; False if it was delivered already.

    ``answered[seq]`` is the key of its one response (the usual case) or a tuple of the keys
    of several (a service may answer a message more than once)."""
    cdef object delivered = answered.get(seq)
    if delivered is None:
        answered[seq] = key
        return True
    if type(delivered) is tuple:
        if key in <tuple>delivered:
            return False
        answered[seq] = <tuple>delivered + (key,)
        return True
    if delivered == key:
        return False
    answered[seq] = (delivered, key)
    return True


cdef class EgressDispatcher:
    """``handler(peer_id, payload)`` for ``UdpTransport.poll`` (see the module docstring).

    ``on_egress_message(session_id, correlation_id, ack_seq, payload, now_ns)`` gets every
    well-formed EgressMessage (``payload`` as bytes) when it is set (a ClientCore there gets
    them by a C call to its ``on_egress_message`` step); otherwise, and for every
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
                target = self.on_egress_message
                if isinstance(target, ClientSessionBase):    # no Python call in between
                    (<ClientSessionBase>target)._on_egress_fields(
                        egress.session_id, egress.correlation_id, egress.ack_seq, body, self.now_ns)
                else:
                    target(egress.session_id, egress.correlation_id, egress.ack_seq, body, self.now_ns)
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


# ---- the per-message half of ClientCore ------------------------------------------------------

from aeronpy._codec cimport SESSION_MESSAGE_HEADER_LENGTH, session_message_header_store
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from libc.string cimport memcpy

from operator import index as _index

from aeronpy.cluster.codes import BACK_PRESSURED, CLOSED, NOT_CONNECTED
from aeronpy.errors import MessageTooLargeError


cdef class ClientSessionBase:
    """The base of ``aeronpy.cluster.client_core.ClientCore``: its per-message state and the
    steps that run once per message, ``offer``, ``on_egress_message`` and ``poll``, compiled. All
    other session logic (connecting, leader changes, resends, acks, the object path of
    ``on_egress``) is Python in the subclass, on the same attributes;
    tests/cluster/test_client_fastpath.py holds ``on_egress_message`` to that object path
    step by step."""

    cdef void _bump(self, str name) except *:
        counters = self.counters
        counters[name] = counters.get(name, 0) + 1

    def offer(self, payload, service_id=0, int64_t now_ns=0, bint expect_reply=False):
        """> 0: the message's correlation id; < 0: NOT_CONNECTED, BACK_PRESSURED or CLOSED.

        Raises MessageTooLargeError (nothing is sent) above ``max_message_bytes``.
        With ``expect_reply`` its first response is kept for :meth:`take_reply`, never
        handed to poll()."""
        cdef Py_ssize_t size
        cdef int64_t correlation_id, seq
        if type(payload) is not bytes and type(payload) is not memoryview:
            try:
                payload = memoryview(payload)
            except TypeError:
                raise TypeError("payload must be bytes-like (bytes, bytearray, memoryview), got "
                                f"{type(payload).__name__}") from None
        if type(service_id) is not int:
            # an int-like (numpy integer) as its int; anything else (a float, which the
            # compiled header store would truncate to another service) is a TypeError
            service_id = _index(service_id)
        size = payload.nbytes if type(payload) is memoryview else len(payload)
        if size > self._max_message_bytes:
            raise MessageTooLargeError(
                f"message of {size} bytes exceeds max_message_bytes {self._max_message_bytes}")
        if self.state is not self._connected_state:
            return CLOSED if self.state is self._closed_state else NOT_CONNECTED
        if self._session_expiry_ns and now_ns - self._last_sent_ns >= self._session_expiry_ns:
            self._expire(now_ns)          # silent past the cluster's session timeout: gone
            return CLOSED
        window = self._window
        if len(window) >= self._window_messages:
            self._bump("back_pressured")
            return BACK_PRESSURED
        if self._window_bytes_max and window and \
                self._window_bytes + SESSION_MESSAGE_HEADER_LENGTH + size > self._window_bytes_max:
            # the bytes the stream to the leader can hold: past them it would refuse the
            # message, which would then go out only with a stall's re-send (big messages)
            self._bytes_wanted = SESSION_MESSAGE_HEADER_LENGTH + size
            self._bump("back_pressured")
            return BACK_PRESSURED
        # the numbers are taken only once the message is built: a payload the encoder refuses
        # (a str, say) must not use up a seq the cluster would then wait for for ever
        correlation_id = self._next_correlation_id
        seq = self._next_seq
        if self._make_message is None and type(payload) is bytes:
            message = PyBytes_FromStringAndSize(NULL, SESSION_MESSAGE_HEADER_LENGTH + size)
            session_message_header_store(<uint8_t*>PyBytes_AS_STRING(message),
                                         SESSION_MESSAGE_HEADER_LENGTH + size, self.session_id, seq,
                                         correlation_id, service_id, size)
            memcpy(PyBytes_AS_STRING(message) + SESSION_MESSAGE_HEADER_LENGTH,
                   PyBytes_AS_STRING(payload), size)
        elif self._make_message is None:
            from aeronpy._codec import encode_session_message
            message = encode_session_message(self.session_id, seq, correlation_id, service_id, payload)
        else:
            message = self._make_message(self.session_id, seq, correlation_id, service_id, payload)
        self._next_correlation_id = correlation_id + 1
        self._next_seq = seq + 1
        if not window:
            self._last_progress_ns = now_ns
        window.append(message)
        if self._window_bytes_max:
            self._window_bytes += SESSION_MESSAGE_HEADER_LENGTH + size
            if self._bytes_wanted:
                self._bytes_wanted = 0
        if expect_reply:
            self._awaiting.add(correlation_id)
        self.outgoing.append((self.leader_endpoint, message))
        self._last_sent_ns = now_ns
        return correlation_id

    def poll(self, on_message, Py_ssize_t limit=1 << 30):
        """Deliver queued responses to ``on_message(correlation_id, payload)``."""
        cdef Py_ssize_t delivered = 0
        inbox = self._inbox
        while inbox and delivered < limit:
            correlation_id, payload = inbox.popleft()
            on_message(correlation_id, memoryview(payload))
            delivered += 1
        return delivered

    def on_egress_message(self, int64_t session_id, int64_t correlation_id, int64_t ack_seq,
                          bytes payload, int64_t now_ns):
        """``on_egress(EgressMessage(session_id, correlation_id, ack_seq, payload), now_ns)``
        for a transport that reads egress without building the message object (one call per
        response)."""
        self._on_egress_fields(session_id, correlation_id, ack_seq, payload, now_ns)

    cdef int _on_egress_fields(self, int64_t session_id, int64_t correlation_id, int64_t ack_seq,
                               bytes payload, int64_t now_ns) except -1:
        cdef bint first
        cdef int64_t base, floor, old_floor, s
        if session_id != self.session_id or self.state is not self._connected_state:
            self._bump("egress_not_for_us")
            return 0
        if correlation_id == 0:                 # the service's own message: answers nothing
            self._deliver(0, ack_seq, payload)
            return 0
        if ack_seq >= self._next_seq:
            # a reply to a message never sent (forged, or from a confused member): dropped, not
            # recorded, or each such datagram grew the record of answered seqs for good
            self._bump("egress_bogus_seq")
            return 0
        answered = self._answered
        first = ack_seq >= self._answered_floor
        if first:
            first = record_response(answered, ack_seq, _response_key(correlation_id, payload))
        if not first:
            self._bump("duplicate_responses")
        elif correlation_id in self._awaiting:
            self._awaiting.discard(correlation_id)
            self._replies[correlation_id] = payload
        elif correlation_id in self._abandoned:
            self._bump("late_replies_dropped")
        elif len(self._inbox) < self._inbox_max:
            self._inbox.append((correlation_id, payload))
        else:
            self._bump("inbox_dropped")
        window = self._window
        if window:
            base = self._window_base
            if ack_seq == base:
                while window and base in answered:
                    released = window.popleft()
                    if self._window_bytes_max:
                        self._window_bytes -= len(released)
                    base += 1
                self._window_base = base
                self._last_progress_ns = now_ns
                # forget what was delivered far below the window (bounded record)
                floor = base - self._window_messages
                old_floor = self._answered_floor
                if floor > old_floor:
                    self._answered_floor = floor
                    for s in range(old_floor, floor):
                        answered.pop(s, None)
            elif ack_seq > base:
                self._bump("answered_ahead_of_window")
        return 0
