"""The two consensus messages on every request's path, stepped in C from their frame bytes.

Why: a request waits for the leader's AppendEntries to be appended and acknowledged by a
follower and for that AppendResponse to be counted by the leader. In Python each took a
decode to a message object and ``RaftCore.step``'s checks and dispatch: about 5 us warm for
the follower's append and 3 us for each acknowledgement at the leader, more when cold after a
wake-up. Latency on the 2-core machine reacts to work on the path several times more than CPU
per request does (bench/results/perf.md), so the steady state of both is done here.

``StepPath(core).on_message(from_id, buf, now_ns)`` takes exactly two cases:

- **A follower's next AppendEntries**: this member follows ``from_id`` (a peer) in the frame's
  term, its election is settled (FOLLOWER_READY), and the frame's ``prev_index`` is the last
  index of the log with a matching term (the leader streams what follows what it sent).
- **A leader's successful AppendResponse** in its term, from a peer it replicates to in
  REPLICATE mode, with no leadership transfer under way.

For either, it does what ``RaftCore.step`` does, in the same order and with the same effects
(for the append: the election timer reset through ``Election.reset_timer``, so the random
draws match, the leader contact time, the entries, the verified and commit index, the queued
``AppendResponse``; for the acknowledgement: the progress's heard time, match, next and
in-flight window, the commit by quorum with the figure-8 rule, and ``send_appends`` when the
follower's window has room and entries wait) and returns True. In every other case (another
message type, a malformed frame, a Ready awaiting ``advance``, a test bug switched on, any
guard failing) it changes nothing and returns False: the caller decodes and steps as before,
so every refusal, counter and error stays in one place (aeronpy/core).

Tested against ``RaftCore.step`` message by message on twin cores and by the simulator,
whose members take this path too: swarm seeds leave the same trace digest with it and
without (tests/core/test_step_path.py).
"""
from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from libc.stdint cimport int64_t, uint8_t

from aeronpy._codec cimport (AppendEntriesView, MESSAGE_VERSION, TYPE_APPEND_ENTRIES,
                             append_entries_view)
from aeronpy._cursor cimport ap_load_i64, ap_load_u16
from aeronpy._logindex cimport LogIndex

from aeronpy.core import config as _core_config
from aeronpy.core.election import ElectionState
from aeronpy.core.messages import MAX_WIRE_VALUE, AppendResponse
from aeronpy.core.progress import REPLICATE
from aeronpy.service import Role

cdef object _FOLLOWER = Role.FOLLOWER
cdef object _FOLLOWER_READY = ElectionState.FOLLOWER_READY
cdef object _APPEND_RESPONSE = AppendResponse
cdef int _REPLICATE = REPLICATE
# step drops (and counts) a message with a term, index or offset outside [0, MAX_WIRE_VALUE]
# (messages.out_of_range): the path declines one, so the drop stays step's
cdef int64_t _MAX_WIRE = MAX_WIRE_VALUE

cdef enum:
    TYPE_APPEND_RESPONSE = 5
    APPEND_RESPONSE_LENGTH = 37     # header, i64 term, u8 success, 3 x i64 (docs/wire-format.md)
    MAX_VOTERS = 64                 # the commit count's stack array; larger clusters: Python


cdef inline bint _in_range(int64_t value):
    return 0 <= value <= _MAX_WIRE


cdef class StepPath:
    """The compiled steady-state step of one ``RaftCore`` (see the module docstring). A core
    whose log is not a ``LogIndex`` is never handled here (``on_message`` is False)."""

    cdef object core
    cdef object election
    cdef LogIndex log
    cdef frozenset peers
    cdef readonly long long appends_handled   # frames each case took (diagnostics, tests)
    cdef readonly long long acks_handled

    def __init__(self, core):
        self.core = core
        self.election = core.election
        log = core.log      # a core keeps its log object for life (compaction works in place)
        self.log = log if type(log) is LogIndex else None
        self.peers = core._peers
        self.appends_handled = 0
        self.acks_handled = 0

    cpdef bint on_message(self, int64_t from_id, object buf, int64_t now_ns) except -1:
        """Step ``buf`` (one consensus message from ``from_id``) if it is one of the two
        steady-state cases: True when done, False (nothing changed) when the caller must
        decode and step it."""
        cdef Py_buffer b
        cdef const uint8_t* p
        cdef int kind
        if self.log is None:
            return False
        PyObject_GetBuffer(buf, &b, PyBUF_SIMPLE)
        try:
            p = <const uint8_t*>b.buf
            if b.len < 4 or ap_load_u16(p + 2) != MESSAGE_VERSION:
                return False
            kind = ap_load_u16(p)
            if kind == TYPE_APPEND_ENTRIES:
                return self._append(from_id, p, b.len, now_ns)
            if kind == TYPE_APPEND_RESPONSE and b.len == APPEND_RESPONSE_LENGTH:
                return self._ack(from_id, p, now_ns)
            return False
        finally:
            PyBuffer_Release(&b)

    cdef bint _steppable(self, int64_t from_id, int64_t term) except -1:
        """What ``step`` checks first, read-only: no Ready awaits advance, no test bug is on
        (the fast path knows none), a peer sent it, and it is of this member's term."""
        core = self.core
        if _core_config._BUGS or core._awaiting_advance is not None:
            return False
        return from_id in self.peers and term == <int64_t>core.term

    # ---------------------------------------------------------------- follower: AppendEntries
    cdef bint _append(self, int64_t from_id, const uint8_t* p, Py_ssize_t n,
                      int64_t now_ns) except -1:
        cdef AppendEntriesView v
        cdef LogIndex log = self.log
        cdef int64_t last, new_last, verified, commit
        try:
            append_entries_view(p, n, &v)
        except Exception:
            return False            # malformed: the caller's decode meets it and counts it
        core = self.core
        if not self._steppable(from_id, v.term):
            return False
        if not _in_range(v.commit_index):
            return False            # out of range: step drops and counts it
        if core.role is not _FOLLOWER or core.leader_id != from_id \
                or self.election.state is not _FOLLOWER_READY:
            return False
        last = log.c_last_index()
        if v.prev_index != last or log.c_term_at(last) != v.prev_term:
            return False
        # RaftCore.step -> _on_append_entries: _accept_leader, then follower_on_append
        core.now_ns = now_ns
        self.election.reset_timer(now_ns)
        core.last_leader_contact_ns = now_ns
        if v.count:
            log.c_append_packed(v.entries, v.entries_length, v.count)
        new_last = v.prev_index + v.count
        verified = core.verified_index
        if new_last > verified:
            verified = new_last
            core.verified_index = verified
        commit = v.commit_index if v.commit_index < verified else verified
        if commit > <int64_t>core.commit_index:
            core.set_commit(commit)
        core._messages.append((from_id, _APPEND_RESPONSE(v.term, True, new_last)))
        self.appends_handled += 1
        return True

    # ---------------------------------------------------------------- leader: AppendResponse
    cdef bint _ack(self, int64_t from_id, const uint8_t* p, int64_t now_ns) except -1:
        cdef int64_t term = ap_load_i64(p + 4)
        cdef int64_t match = ap_load_i64(p + 13)
        cdef int64_t pr_match, pr_next
        if p[12] != 1 or not self._steppable(from_id, term):
            return False            # a refusal (or a malformed flag) goes the long way
        if match > self.log.c_last_index():
            return False            # impossible from a follower: step drops and counts it
        if match < 0 or not _in_range(ap_load_i64(p + 21)) or not _in_range(ap_load_i64(p + 29)):
            return False            # out of range (conflict fields too): step drops and counts it
        core = self.core
        leader_state = core.leader_state
        if leader_state is None or leader_state.transfer_target is not None:
            return False
        pr = leader_state.progress.get(from_id)
        if pr is None or pr.mode != _REPLICATE:
            return False
        # RaftCore.step -> LeaderReplication.on_append_response, success branch
        core.now_ns = now_ns
        pr.last_heard_ns = now_ns
        pr_match = pr.match
        if match > pr_match:                       # Progress.on_ack
            pr.match = match
            pr_next = pr.next
            if pr_next <= match:
                pr.next = match + 1
            inflight = pr.inflight
            while inflight and <int64_t>inflight[0] <= match:
                inflight.popleft()
            pr.last_ack_ns = now_ns
            self._maybe_commit(leader_state)
        # send_appends(pr): in REPLICATE it sends only with room in the window and entries
        # past pr.next; otherwise its loop returns at once
        if len(pr.inflight) < <Py_ssize_t>pr.max_inflight and \
                <int64_t>pr.next <= self.log.c_last_index():
            leader_state.send_appends(pr)
        self.acks_handled += 1
        return True

    cdef int _maybe_commit(self, object leader_state) except -1:
        """LeaderReplication.maybe_commit: the highest index a majority holds (the leader's
        own copy counts from its persisted index), committed only if of this term."""
        cdef int64_t matches[MAX_VOTERS]
        cdef int64_t value
        cdef Py_ssize_t n = 0, i, j
        core = self.core
        progress = leader_state.progress
        if len(progress) + 1 > MAX_VOTERS:
            leader_state.maybe_commit()
            return 0
        for pr in progress.values():
            matches[n] = pr.match
            n += 1
        matches[n] = core.persisted_index
        n += 1
        for i in range(1, n):                      # insertion sort, descending: n is tiny
            value = matches[i]
            j = i - 1
            while j >= 0 and matches[j] < value:
                matches[j + 1] = matches[j]
                j -= 1
            matches[j + 1] = value
        value = matches[n // 2]                    # quorum_size(n) - 1 == n // 2
        if value <= <int64_t>core.commit_index:
            return 0
        if self.log.c_term_at(value) != <int64_t>core.term:
            return 0                               # figure 8: only an entry of this term
        core.set_commit(value)
        return 0
