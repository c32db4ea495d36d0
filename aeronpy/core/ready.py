"""The value the core hands its driver: everything to do next, in the order it must be done."""
from __future__ import annotations

from aeronpy.core import config as _config
from aeronpy.core.messages import AppendResponse as _AppendResponse


class Ready:
    """One batch of work for the driver. Do it in field order, then call ``core.advance(rd)``.

    1. ``truncate_from``: cut the persisted log from this index (None: nothing to cut).
    2. ``hard_state`` (None: unchanged) saved and synced; entries ``[persist_lo, persist_hi)``
       of ``core.log`` written (and synced per policy).
    3. ``messages``: ``(to_member_id, message)`` pairs, sent only after 1 and 2 are done.
       An accepted AppendResponse (``vouches_for_log``) waits further, until every entry
       written so far, for this Ready and earlier ones, is durable: an acknowledgement must
       never outrun the log it promises. When ``send_first`` is True the messages may go out
       before 1 and 2 (see below).
    4. apply committed entries ``[apply_lo, apply_hi)`` of ``core.log`` to the state machine.
    ``snapshot_requests``: ``(member_id, snapshot_index, snapshot_term)`` of followers that need
    a snapshot because the entries they lack were compacted away; report the outcome with
    ``core.report_snapshot``.
    ``send_first``: this member leads and the Ready saves no hard state and cuts nothing, so
    its messages promise nothing about this member's disk (appends, heartbeats, refusals).
    The leader's own copy of new entries counts towards a quorum only once durable, so the
    followers may write theirs while the leader writes (and syncs) its own (Raft thesis,
    10.2.1): one disk write on a request's path instead of two in a row. Such a Ready may
    even be advanced before its sync finishes (``advance(rd, durable=False)``, then
    ``note_durable(index)``): the leader steps on and commits on its followers' copies.
    """

    __slots__ = ("truncate_from", "hard_state", "persist_lo", "persist_hi", "messages",
                 "apply_lo", "apply_hi", "commit_index", "role_changed", "leader_changed",
                 "snapshot_requests", "send_first")

    def __init__(self, truncate_from, hard_state, persist_lo, persist_hi, messages, apply_lo,
                 apply_hi, commit_index, role_changed, leader_changed, snapshot_requests,
                 send_first=False):
        self.truncate_from = truncate_from
        self.hard_state = hard_state
        self.persist_lo = persist_lo
        self.persist_hi = persist_hi
        self.messages = messages
        self.apply_lo = apply_lo
        self.apply_hi = apply_hi
        self.commit_index = commit_index
        self.role_changed = role_changed
        self.leader_changed = leader_changed
        self.snapshot_requests = snapshot_requests
        self.send_first = send_first

    @property
    def must_persist(self) -> bool:
        return (self.truncate_from is not None or self.hard_state is not None
                or self.persist_hi > self.persist_lo)

    def __repr__(self) -> str:
        return ("Ready(" + ", ".join(f"{k}={getattr(self, k)!r}" for k in self.__slots__
                                     if k != "messages") + f", messages={len(self.messages)})")


# A driver whose log sync has made no progress this long has a failing disk. As leader it hands
# the leadership over; as any member it holds every message with its acknowledgements
# (split_vouching(stalled=True)): its heartbeat replies would keep a leader that can commit
# nothing through it in office, and its refusals of canvasses (it hears that leader) would
# stop the members with working disks from electing another (a review's simulator run).
SYNC_STALL_NS = 2_000_000_000


def vouches_for_log(msg) -> bool:
    """Whether ``msg`` vouches for this member's log and so must wait for its sync: only an
    accepted AppendResponse does (its match_index counts towards the leader's commit).

    The rest of a Ready's messages go once its hard state is saved (``save_hard_state`` syncs
    at once whatever ``file_sync`` says): a granted vote needs only that record, and its log
    check against a written but unsynced log errs towards refusing; a refusal's conflict hint
    and a heartbeat reply's ``last_index`` only steer the leader's probe. Held, they were
    late by a whole sync: followers with syncs slower than ``leader_heartbeat_timeout_ms``
    made their leader step down, and their votes could not elect another.
    Bug switch ``holds_all_messages`` holds every message, as before (the liveness control)."""
    return (type(msg) is _AppendResponse and msg.success) or "holds_all_messages" in _config._BUGS


def split_vouching(messages: list, stalled: bool = False):
    """``(free, vouching)``: the messages that may go now and those that wait for the sync
    (``vouches_for_log``), each in their order. ``stalled``: the sync has made no progress
    for ``SYNC_STALL_NS``; then every message waits (nothing is free)."""
    if stalled:
        return [], messages
    free, vouching = [], []
    for item in messages:
        (vouching if vouches_for_log(item[1]) else free).append(item)
    return free, vouching
