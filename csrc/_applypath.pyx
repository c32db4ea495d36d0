# cython: language_level=3, boundscheck=False, wraparound=False
"""Client sessions' per-message objects, compiled: ``SessionState``, ``ClientSession`` and the
reply path ``ClientSession.offer`` takes.

Every member runs ``ClientSession.offer`` once per reply to every committed client message
(followers too: the reply cache is replicated state). In Python it was two frames and a dozen
attribute lookups per reply, the largest single cost of applying a message; here it is one C
call. The logic is exactly ``SessionState.record_reply`` plus queueing on the leader; the
module's apply loop sets ``ReplyPath.handling`` while a service handles a client message.
"""
from collections import deque

cimport cython

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from cpython.buffer cimport (PyBUF_SIMPLE, PyBuffer_IsContiguous, PyBuffer_Release, PyObject_CheckBuffer,
                             PyObject_GetBuffer)
from cpython.memoryview cimport PyMemoryView_Check, PyMemoryView_GET_BUFFER
from cpython.object cimport PyObject
from cpython.time cimport monotonic_ns

from libc.stdint cimport int64_t, uint8_t, uint32_t
from libc.string cimport memcpy

from aeronpy._codec cimport egress_message_bytes
from aeronpy._cursor cimport ap_load_i32, ap_load_i64, ap_store_i64, ap_store_u32
from aeronpy._logindex cimport LogIndex

cdef extern from "Python.h":
    # getattr(obj, name)(*args[1:]) with obj = args[0], without the bound method getattr would
    # make for a plain method: the attribute is looked up afresh on every call
    object PyObject_VectorcallMethod(object name, PyObject** args, size_t nargsf, PyObject* kwnames)

from aeronpy.cluster.codes import BACK_PRESSURED, CLOSED
from aeronpy.errors import ClusterStateError, MessageTooLargeError

cdef object _CLOSED = CLOSED
cdef object _BACK_PRESSURED = BACK_PRESSURED


cdef bytes _encode_reply(tuple reply):
    """A queued reply (session_id, correlation_id, ack_seq, payload) as EgressMessage bytes."""
    return _encode_reply_fields(reply[0], reply[1], reply[2], reply[3])


cdef inline bytes _encode_reply_fields(int64_t session_id, int64_t correlation_id, int64_t ack_seq,
                                       bytes payload):
    return egress_message_bytes(session_id, correlation_id, ack_seq,
                                <const uint8_t*>PyBytes_AS_STRING(payload), len(payload))


cdef object _deque = deque


cdef inline Reply _new_reply(int64_t session_id, int64_t correlation_id, int64_t ack_seq,
                             bytes data):
    cdef Reply r = Reply.__new__(Reply)
    r.session_id = session_id
    r.correlation_id = correlation_id
    r.ack_seq = ack_seq
    r.data = data
    return r


@cython.final
@cython.no_gc               # holds ints and one bytes object: it can be part of no cycle
@cython.freelist(64)
cdef class Reply:
    """One reply to one client message, made once per reply and used twice.

    As a reply-cache entry (``SessionState.replies[seq]``) it stands for the one reply to
    ``seq`` and reads as the list it replaces, ``[(correlation_id, data)]`` (``len``,
    iteration, ``==``): a second reply to the same seq turns the entry into that list. As an
    egress item it is ``(session_id, correlation_id, ack_seq, data)`` for the drain. One
    object instead of a list, two tuples and two boxed ints per reply on every member.
    """

    def __len__(self) -> int:
        return 1

    def __iter__(self):
        return iter(((self.correlation_id, self.data),))

    def __getitem__(self, index):
        return [(self.correlation_id, self.data)][index]

    def __eq__(self, other):
        if isinstance(other, (Reply, list)):
            return list(self) == list(other)
        return NotImplemented

    def __ne__(self, other):
        result = self.__eq__(other)
        return result if result is NotImplemented else not result

    __hash__ = None

    def as_tuple(self) -> tuple:
        """The egress form: (session_id, correlation_id, ack_seq, data)."""
        return (self.session_id, self.correlation_id, self.ack_seq, self.data)

    def __repr__(self) -> str:
        return (f"Reply(session_id={self.session_id}, correlation_id={self.correlation_id}, "
                f"ack_seq={self.ack_seq}, data={self.data!r})")


cdef class SessionState:
    """One open session as every member knows it.

    ``last_applied_seq`` is the highest message number of the session applied so far: a
    message numbered at or below it is skipped, which is what makes delivery exactly-once
    even when a message is sequenced twice across a leader change. ``replies`` keeps the
    responses to the session's latest messages (seq -> [(correlation_id, payload)], oldest
    first), bounded, so that a new leader can answer a re-sent message with its original reply.
    A seq's only reply is kept as a ``Reply``, which reads as that one-entry list (``len``,
    iteration, ``==``); a second reply turns the entry into the list. A snapshot restore
    fills in plain lists; the snapshot bytes are the same either way.

    ``reply_order`` is only an index into ``replies`` (its keys, oldest first) that makes
    evicting the oldest cheap; a plain dict's first key is not (its iteration walks over the
    slots of every key deleted before), an OrderedDict costs twice a dict per reply.
    """

    def __init__(self, session_id, response_endpoint, client_nonce, connect_correlation_id, opened_ns):
        self.session_id = session_id
        self.response_endpoint = response_endpoint
        self.client_nonce = client_nonce
        self.connect_correlation_id = connect_correlation_id
        self.opened_ns = opened_ns
        self.last_applied_seq = 0
        self.replies = {}
        self.reply_order = _deque()
        self.offers = 0        # responses offered on this session (ClientSession.offer's result)
        self.closed = False

    cpdef object reply_keys(self):
        """``reply_order``, rebuilt when ``replies`` was filled without it (snapshot restore)."""
        if len(self.reply_order) != len(self.replies):
            self.reply_order = _deque(self.replies)
        return self.reply_order

    cpdef bint record_reply(self, int64_t seq, int64_t correlation_id, object payload,
                            Py_ssize_t max_messages, Py_ssize_t max_replies_per_message) except -1:
        """Keep a reply to message ``seq``; False when it was not kept (bound reached)."""
        cdef dict cache = self.replies
        cdef object key = seq
        cdef object replies = cache.get(key)
        cdef object order
        cdef Reply first
        if replies is None:
            if max_messages <= 0:
                return False
            if max_replies_per_message <= 0:
                # the seq still takes its place in the cache, as an empty entry
                replies = []
            elif type(payload) is bytes:
                replies = _new_reply(self.session_id, correlation_id, seq, <bytes>payload)
            else:
                replies = [(correlation_id, payload)]
            order = self.reply_keys()
            cache[key] = replies
            order.append(key)
            while len(order) > max_messages:
                del cache[order.popleft()]
            return max_replies_per_message > 0
        if type(replies) is Reply:
            if max_replies_per_message <= 1:
                return False
            first = <Reply>replies
            replies = [(first.correlation_id, first.data)]
            cache[key] = replies          # a new value for a present key: the order stands
        if len(<list>replies) >= max_replies_per_message:
            return False
        (<list>replies).append((correlation_id, payload))
        return True

    def __repr__(self) -> str:
        return (f"SessionState(id={self.session_id}, endpoint={self.response_endpoint!r}, "
                f"last_applied_seq={self.last_applied_seq}, cached={list(self.replies)})")


# EgressQueues._drain_walk modes: how one queued message is handed over
cdef enum:
    _DRAIN_OBJECTS = 0      # drain: send(client_ref, message object)
    _DRAIN_ENCODED = 1      # drain_encoded: send_bytes(client_ref, wire bytes)


cdef inline bint _offer_object(object client_ref, object message, object send,
                               object reply_form) except -1:
    """Hand one message to ``send`` (a queued reply as ``reply_form(...)`` of its fields);
    False when ``send`` answers False (back-pressure: keep it queued)."""
    cdef Reply r
    if type(message) is Reply:
        r = <Reply>message
        message = reply_form(r.session_id, r.correlation_id, r.ack_seq, r.data)
    elif type(message) is tuple:
        message = reply_form(*message)
    return send(client_ref, message) is not False


cdef inline bint _offer_encoded(object client_ref, object message, object send_bytes,
                                object encode) except -1:
    """Hand one message to ``send_bytes`` as wire bytes (a reply encoded here, anything else
    by ``encode``); False when it answers BACK_PRESSURED (keep it queued). With no client
    stream (client_ref None) the message is dropped: True, unsent."""
    cdef Reply r
    if client_ref is None:
        return True
    if type(message) is Reply:
        r = <Reply>message
        data = _encode_reply_fields(r.session_id, r.correlation_id, r.ack_seq, r.data)
    elif type(message) is tuple:
        data = _encode_reply(<tuple>message)
    else:
        data = encode(message)
    return not (send_bytes(client_ref, data) == _BACK_PRESSURED)


cdef class EgressQueues:
    """Bounded per-client egress queues (see aeronpy/cluster/egress.py, which re-exports it)."""

    def __init__(self, Py_ssize_t queue_max):
        self.queue_max = queue_max
        self._queues = {}
        self.dropped = 0
        self.queued = 0

    cpdef bint put(self, object client_ref, object message) except -1:
        """Queue ``message`` for ``client_ref``; False (dropped, counted) when its queue is full."""
        queue = self._queues.get(client_ref)
        if queue is None:
            queue = self._queues[client_ref] = _deque()
        if len(queue) >= self.queue_max:
            self.dropped += 1
            return False
        queue.append(message)
        self.queued += 1
        return True

    def drain(self, send, Py_ssize_t limit=1 << 30, reply_form=None) -> int:
        """Hand queued messages to ``send`` (oldest first per client); returns how many went.
        Queued reply tuples go through ``reply_form`` first (required when there are any).
        ``send(...) is False`` keeps that client's backlog."""
        return self._drain_walk(_DRAIN_OBJECTS, send, reply_form, limit)

    def drain_encoded(self, send_bytes, encode, Py_ssize_t limit=1 << 30) -> int:
        """``drain`` for a driver that sends bytes: ``send_bytes(client_ref, data) -> int``
        (> 0 sent; BACK_PRESSURED keeps that client's backlog; any other code drops the
        message, as for a client gone). Replies are encoded here, straight from their tuple,
        other messages with ``encode(message)``; a None client_ref (no stream to the client)
        drops its messages. No Python call per message besides ``send_bytes``."""
        return self._drain_walk(_DRAIN_ENCODED, send_bytes, encode, limit)

    cdef Py_ssize_t _drain_walk(self, int mode, object send, object convert,
                                Py_ssize_t limit) except -1:
        """The walk both drains share: per client oldest first, at most ``limit`` messages,
        a client's backlog kept at its first back-pressured message; emptied clients are
        forgotten. ``mode`` says how one message is handed over (_offer_object or
        _offer_encoded); a message handed over (or dropped) counts as sent."""
        cdef Py_ssize_t sent = 0
        cdef list emptied = []
        cdef bint taken
        for client_ref, queue in self._queues.items():
            while queue and sent < limit:
                if mode == _DRAIN_ENCODED:
                    taken = _offer_encoded(client_ref, queue[0], send, convert)
                else:
                    taken = _offer_object(client_ref, queue[0], send, convert)
                if not taken:
                    break
                queue.popleft()
                sent += 1
            if not queue:
                emptied.append(client_ref)
            if sent >= limit:
                break
        for client_ref in emptied:
            del self._queues[client_ref]
        self.queued -= sent
        return sent

    def take_all(self, reply_form=None) -> list:
        """Every queued message as (client_ref, message), oldest first per client; empties the queues."""
        out = [(ref, reply_form(*msg.as_tuple()) if type(msg) is Reply
                else reply_form(*msg) if type(msg) is tuple else msg)
               for ref, queue in self._queues.items() for msg in queue]
        self._queues.clear()
        self.queued = 0
        return out

    def backlog(self, client_ref) -> int:
        queue = self._queues.get(client_ref)
        return 0 if queue is None else len(queue)

    def clear(self) -> None:
        self._queues.clear()
        self.queued = 0

    def __len__(self) -> int:
        return self.queued


cdef class ReplyPath:
    """What a reply needs of its member: which message is being handled, the role, the
    bounds (``config``), the counters and the egress queues. One per ConsensusModule."""

    def __init__(self, config, counters, egress):
        self.handling = None
        self.handling_seq = 0
        self.handling_correlation_id = 0
        self.replied = False
        self.leader = False
        self.config = config
        self.counters = counters
        self.egress = egress
        self._run_bounds = False
        self.local_callback = None
        self.dropped_replies = {}

    cdef int _begin_run(self) except -1:
        config = self.config
        self._max_bytes = config.max_message_bytes
        self._cache_max = config.reply_cache_messages
        self._per_message = config.reply_cache_replies_per_message
        self._ref_of = config.client_ref_of_endpoint
        self._run_bounds = True
        return 0

    cdef void _end_run(self) noexcept:
        self._run_bounds = False
        self._ref_of = None

    cpdef object offer(self, SessionState s, object payload):
        """ClientSession.offer: cache the reply to the handled message (every member), queue
        it for the client (leader only); s.offers, or CLOSED for a closed session."""
        cdef Py_ssize_t size
        cdef bytes data
        cdef object config = self.config
        cdef int64_t correlation_id, ack_seq
        cdef object key, order
        cdef Reply reply = None
        cdef bint answering = False
        cdef dict cache
        cdef Py_ssize_t cache_max, per_message, max_bytes
        cdef object ref_of
        if self.local_callback is not None:
            raise ClusterStateError.outside_log_order("ClientSession.offer", self.local_callback)
        if s.closed:
            return _CLOSED
        if self._run_bounds:
            max_bytes = self._max_bytes
            cache_max = self._cache_max
            per_message = self._per_message
            ref_of = self._ref_of
        else:
            max_bytes = config.max_message_bytes
            cache_max = config.reply_cache_messages
            per_message = config.reply_cache_replies_per_message
            ref_of = config.client_ref_of_endpoint
        if type(payload) is not bytes and not PyMemoryView_Check(payload) \
                and PyObject_CheckBuffer(payload):
            # a buffer (array, bytearray ...): bounded by its size in bytes, not its len()
            payload = memoryview(payload)
        if PyMemoryView_Check(payload):
            view = PyMemoryView_GET_BUFFER(payload)
            size = view.len
            if size > max_bytes:
                raise MessageTooLargeError(f"response of {size} bytes exceeds max_message_bytes {max_bytes}")
            if PyBuffer_IsContiguous(view, b'C'):
                data = PyBytes_FromStringAndSize(<char*>view.buf, size)
            else:
                data = payload.tobytes()
        else:
            size = len(payload)
            if size > max_bytes:
                raise MessageTooLargeError(f"response of {size} bytes exceeds max_message_bytes {max_bytes}")
            data = bytes(payload)
        s.offers += 1
        if self.handling is s:
            answering = True
            ack_seq = self.handling_seq
            correlation_id = self.handling_correlation_id
            key = ack_seq
            cache = s.replies
            order = s.reply_order
            if cache_max > 0 and per_message > 0 and len(order) == len(cache) and key not in cache:
                # the common case: record_reply's first reply to a seq, inline
                reply = _new_reply(s.session_id, correlation_id, ack_seq, data)
                cache[key] = reply
                order.append(key)
                while len(order) > cache_max:
                    del cache[order.popleft()]
            elif not s.record_reply(ack_seq, correlation_id, data, cache_max, per_message):
                self.counters["reply_not_cached"] += 1
            self.replied = True
        else:
            correlation_id, ack_seq = 0, s.last_applied_seq
        if self.leader:
            if reply is None:
                reply = _new_reply(s.session_id, correlation_id, ack_seq, data)
            endpoint = s.response_endpoint
            # queued as a Reply (the cached one, if any): the drain makes it an
            # EgressMessage or its wire bytes
            if not self.egress.put(endpoint if ref_of is None else ref_of(endpoint), reply):
                self.counters["egress_dropped"] += 1
                if answering and s.replies.get(ack_seq):
                    # a reply to this message missed the queue, and the cache can answer it:
                    # acks stop below it. The first: the client re-sends the message. A later
                    # one (the first got through, the client released the message on it): the
                    # client's window start at its next re-send round ends the hold, and the
                    # leader queues every kept reply again then (acks._resend_multi_replies)
                    self.note_dropped(s, ack_seq)
        return s.offers

    cpdef note_dropped(self, SessionState s, int64_t seq):
        """The reply to ``seq`` was dropped for a full egress queue: hold acks below it.
        Bounded: seqs that left the reply cache can never be answered and are forgotten."""
        seqs = self.dropped_replies.get(s.session_id)
        if seqs is None:
            seqs = self.dropped_replies[s.session_id] = set()
        seqs.add(seq)
        if len(seqs) > len(s.replies):
            keep_answerable(seqs, s.replies)


def keep_answerable(set seqs, dict replies):
    """Drop from ``seqs`` those the reply cache holds no reply for (left it, or none kept):
    the one pruning of the leader's egress-hold records (module._ack_below_dropped,
    leader._answer_applied)."""
    for seq in [q for q in seqs if not replies.get(q)]:
        seqs.discard(seq)


cdef class ClientSession:
    """A client's session as a service sees it (docs/programming.md section 2).

    ``offer`` sends a response on egress. Its result never depends on this member's role or
    on the network (on followers nothing is sent and a positive value is still returned), so
    service code that looks at it stays deterministic on every member.
    """

    def __init__(self, SessionState state, ReplyPath path):
        self.state = state
        self.path = path

    @property
    def id(self) -> int:
        return self.state.session_id

    @property
    def response_endpoint(self) -> str:
        return self.state.response_endpoint

    @property
    def is_closed(self) -> bool:
        return self.state.closed

    def offer(self, payload) -> int:
        """Send ``payload`` to the client: > 0 once accepted, aeronpy.CLOSED if the session is closed.

        Raises MessageTooLargeError for a payload above the cluster's max message size, and
        ClusterStateError when called outside log order (from on_role_change,
        on_take_snapshot or on_terminate, which run on one member only).
        """
        return self.path.offer(self.state, payload)

    def __eq__(self, other):
        if not isinstance(other, ClientSession):
            return False
        return (<ClientSession>other).state is self.state

    def __hash__(self) -> int:
        return hash(self.state.session_id)

    def __repr__(self) -> str:
        return f"ClientSession(id={self.id}, endpoint={self.response_endpoint!r})"


# ---- the apply loop over a run of committed SESSION_MESSAGE entries --------------------------

cdef enum:
    SESSION_MESSAGE_TYPE = 18              # entries.SESSION_MESSAGE
    SESSION_MESSAGE_HEADER = 36            # entries.SESSION_MESSAGE_HEADER_BYTES: i64 x 4, i32
    REJECTED_MESSAGE_SERVICE_ID = -1       # entries.REJECTED_MESSAGE_SERVICE_ID


cdef inline void _release(object view):
    try:
        view.release()       # "valid only during the call", enforced
    except BufferError:
        pass                 # the service holds an export of it; nothing to enforce


cdef int _decode_or_raise(object payload) except -1:
    """A SESSION_MESSAGE payload the fast path cannot read: the reference decoder's error."""
    from aeronpy.cluster.entries import decode_session_message
    decode_session_message(payload)                 # raises EntryDecodeError
    return 0


cdef object _ON_SESSION_MESSAGE = "on_session_message"


def apply_session_run(module, log, int64_t index, int64_t hi, list handlers, invoke,
                      bint acking, bint check_ready, int64_t deadline_ns=0) -> int:
    """ConsensusModule._apply_session_message for each SESSION_MESSAGE from ``index`` up to
    ``hi`` or the first other entry, or until ``time.monotonic_ns()`` reaches ``deadline_ns``
    (0: no deadline; read after each entry, so one entry at least is applied); returns the
    first index not applied. ``handlers``: the
    hosted services, whose on_session_message is called as ServiceContainer.invoke would (looked
    up on each call, as invoke's getattr does: a service may replace its handler inside a run,
    and members split the log into runs differently); None: call
    ``invoke(service_id, "on_session_message", ...)`` instead (a wrapped container.invoke).
    ``acking``: the member is a ready leader; ``check_ready``: a leader that may turn ready.
    The caller sets module._in_apply around it and checks every precondition (no failure)."""
    cdef object container = module.container
    cdef dict sessions = module.sessions._by_id
    cdef dict views = module._views
    cdef object counters = module.counters
    cdef set ack_pending = module._ack_pending
    cdef ReplyPath reply = module._reply
    cdef object type_at = log.type_at
    cdef object payload_at = log.payload_at
    cdef Py_ssize_t services_count = len(handlers) if handlers is not None else len(container.services)
    cdef int64_t cluster_time_ns = module.cluster_time_ns
    cdef int64_t timestamp_ns, seq, correlation_id
    cdef int service_id
    cdef const unsigned char* p
    cdef Py_buffer* buf
    cdef SessionState s
    cdef object payload, body, session_id, view, found, boxed_index, chunk_view = None
    cdef object service, boxed_time
    cdef PyObject* call_args[4]
    cdef Py_ssize_t length = 0, block_start = 0
    cdef LogIndex log_index = log if type(log) is LogIndex else None     # else a test's fake
    reply._begin_run()
    try:
        while index < hi and (log_index.c_type_at(index) if log_index is not None
                              else type_at(index)) == SESSION_MESSAGE_TYPE:
            if log_index is not None:
                # the real log: read the header in place and slice the body straight out of the
                # view of the log's chunk (what payload_at(index)[36:] gives, one memoryview fewer)
                p = log_index.c_payload(index, &length)
                if length < SESSION_MESSAGE_HEADER:
                    _decode_or_raise(payload_at(index))
                payload = None
                chunk_view = log_index.c_chunk_view(index, &block_start)
            else:
                payload = payload_at(index)
                if not PyMemoryView_Check(payload):
                    payload = memoryview(payload)
                buf = PyMemoryView_GET_BUFFER(payload)
                if buf.len < SESSION_MESSAGE_HEADER or not PyBuffer_IsContiguous(buf, b'C'):
                    _decode_or_raise(payload)
                    payload = memoryview(bytes(payload))
                    buf = PyMemoryView_GET_BUFFER(payload)
                p = <const unsigned char*>buf.buf
            timestamp_ns = ap_load_i64(p)
            session_id = ap_load_i64(p + 8)
            seq = ap_load_i64(p + 16)
            correlation_id = ap_load_i64(p + 24)
            service_id = ap_load_i32(p + 32)
            boxed_index = index                  # boxed once for both
            module.applied_index = boxed_index
            container.current_index = boxed_index
            index += 1
            if timestamp_ns > cluster_time_ns:
                cluster_time_ns = timestamp_ns
                module.cluster_time_ns = timestamp_ns
            found = sessions.get(session_id)
            if found is None:
                counters["message_for_closed_session"] += 1
            else:
                s = <SessionState>found
                if seq <= s.last_applied_seq:
                    counters["duplicate_message_skipped"] += 1
                else:
                    if seq != s.last_applied_seq + 1:
                        counters["seq_gap_applied"] += 1
                    s.last_applied_seq = seq
                    reply.replied = False
                    if service_id == REJECTED_MESSAGE_SERVICE_ID:
                        counters["rejected_message_skipped"] += 1    # it only consumes its seq
                    elif 0 <= service_id < services_count:
                        if payload is None:
                            body = chunk_view[block_start + SESSION_MESSAGE_HEADER:
                                              block_start + length]
                        else:
                            body = payload[SESSION_MESSAGE_HEADER:]
                        view = views.get(session_id)
                        if view is None:
                            view = module._view(s)
                        reply.handling = s
                        reply.handling_seq = seq
                        reply.handling_correlation_id = correlation_id
                        try:
                            if handlers is not None:
                                service = handlers[service_id]
                                boxed_time = cluster_time_ns
                                call_args[0] = <PyObject*>service
                                call_args[1] = <PyObject*>view
                                call_args[2] = <PyObject*>boxed_time
                                call_args[3] = <PyObject*>body
                                PyObject_VectorcallMethod(_ON_SESSION_MESSAGE, call_args, 4, NULL)
                            else:
                                invoke(service_id, "on_session_message", view, cluster_time_ns, body)
                        except Exception as exc:  # any service bug stops the node (container.py)
                            reply.handling = None
                            _release(body)
                            if handlers is not None:
                                container.fail(service_id, "on_session_message", exc)
                            raise                # the ServiceError invoke raised
                        reply.handling = None
                        _release(body)
                    else:
                        counters["unknown_service"] += 1
                    if acking and not reply.replied:
                        ack_pending.add(session_id)
            if module._service_closes:
                module._finish_service_closes()
            if check_ready:
                module._check_ready()
                if module._leader_ready:
                    check_ready = False
                    acking = True
            if deadline_ns and monotonic_ns() >= deadline_ns:
                break
    finally:
        reply._end_run()
    return index


# ------------------------------------------------------------------ snapshots
cpdef bytes encode_reply_cache(dict replies):
    """A session's reply cache in the module snapshot's layout (aeronpy/cluster/snapshot.py):
    ``u32 cached``, then per seq ``i64 seq | u32 replies``, then per reply ``i64 correlation_id
    | u32 length | bytes``, in the dict's order. Byte for byte what the Python encoder it
    replaced writes (its reference: tests/cluster/test_reply_cache_encoder.py).

    Why: the snapshot's serialisation pauses the log, and the reply caches are most of a
    module's state: 0.53 us per cached reply in Python, so 1,000 sessions with full caches of
    256 paused about 0.14 s."""
    cdef Py_ssize_t total = 4, n, count
    cdef int64_t correlation_id
    cdef object seq, value, item
    cdef Reply r
    cdef bytes out
    cdef uint8_t* p
    cdef Py_buffer view
    # pass 1: size (a value is a Reply, or a list of (correlation_id, payload) pairs)
    for value in replies.values():
        total += 12
        if type(value) is Reply:
            total += 12 + len((<Reply>value).data)
        else:
            for item in value:
                total += 12 + len(item[1])
    out = PyBytes_FromStringAndSize(NULL, total)
    p = <uint8_t*>PyBytes_AS_STRING(out)
    cdef uint8_t* end = p + total
    ap_store_u32(p, <uint32_t>_u32(len(replies)))
    p += 4
    for seq, value in replies.items():
        _room(p, 12, end)
        ap_store_i64(p, <int64_t>seq)
        if type(value) is Reply:
            r = <Reply>value
            ap_store_u32(p + 8, 1)
            p += 12
            n = len(r.data)
            _room(p, 12 + n, end)
            ap_store_i64(p, r.correlation_id)
            ap_store_u32(p + 8, <uint32_t>_u32(n))
            memcpy(p + 12, PyBytes_AS_STRING(r.data), n)
            p += 12 + n
            continue
        count = len(value)
        ap_store_u32(p + 8, <uint32_t>_u32(count))
        p += 12
        for item in value:
            correlation_id = item[0]
            PyObject_GetBuffer(item[1], &view, PyBUF_SIMPLE)
            try:
                n = view.len
                _room(p, 12 + n, end)
                ap_store_i64(p, correlation_id)
                ap_store_u32(p + 8, <uint32_t>_u32(n))
                memcpy(p + 12, view.buf, n)
            finally:
                PyBuffer_Release(&view)
            p += 12 + n
    if p != <uint8_t*>PyBytes_AS_STRING(out) + total:
        raise RuntimeError("reply cache changed while it was encoded")
    return out


cdef inline int _room(const uint8_t* p, Py_ssize_t need, const uint8_t* end) except -1:
    # pass 1 sized the output from len(); a payload whose buffer is longer (a memoryview of
    # another format) or a cache changed meanwhile must not write past it
    if need > end - p:
        raise RuntimeError("reply cache changed while it was encoded (or a payload's len() "
                           "is not its size in bytes)")
    return 0


cdef inline Py_ssize_t _u32(Py_ssize_t n) except -1:
    if n < 0 or n > 0xFFFFFFFF:
        raise OverflowError(f"{n} does not fit the snapshot's u32 field")
    return n
