"""Publish a node's transport counters (consensus + ingress) into its counters file.

Why a separate publisher: the transports keep plain-int counters on their hot path; the
node copies them into ``counters.dat`` at most once per ``period_ns`` so that an operator,
``aeronpy tool`` or a process test can see drops, NAKs and retransmits from another process,
without the duty cycle paying for it on every turn (a busy node turns thousands of times a
second).

Mapping onto the standard slots (`aeronpy.cluster.counters.STANDARD_SLOTS`), summed over both
transports: ``frames_in/out`` and ``bytes_in/out`` are socket datagrams and bytes;
``naks_sent``, ``naks_received`` and ``retransmits`` are the stream counters; the transport's
drop reasons fold into the standard drop slots (``oversize`` and socket truncations ->
``drops_too_large``; ``stale_epoch`` -> ``drops_stale``; reasons without a standard slot ->
``drops_other``). The node's own decode failures (a well-formed frame whose message does not
decode) are added to ``drops_malformed``. The exact per-reason breakdown is kept in the extra
slots ``transport_drop_<reason>`` (every reason of `aeronpy.transport.counters.DROP_REASONS`).
It also keeps ``no_leader_since_ns`` (when this member last lost its leader; 0 while it has
one) from the role, leader and election state the node itself published, and whether the
member heard that leader since it last stood for election (``leader_heard``).
"""
from __future__ import annotations

import logging
import time
from typing import Callable, Optional, Sequence

from aeronpy.cluster.counters import COUNTER, GAUGE, CountersWriter, SlotId, knows_a_leader
from aeronpy.transport.counters import DROP_REASONS

PUBLISH_PERIOD_NS = 10_000_000   # fresh enough for any reader; cheap at ~5 us a publish

# Drops a restart leaves behind (docs/operations.md, "Logs"): frames of a peer's previous run
# and about this node's previous run (stale_epoch), and frames ahead of a window a restarted
# run has not opened yet (beyond_window). Within RESTART_DROPS_GRACE_S of this node's start or
# of a peer restart its transports counted, they are logged at INFO; otherwise (no restart in
# sight: an old process of a member still sending, a replay; or long after one) at WARNING,
# as every other drop reason is.
RESTART_DROP_REASONS = frozenset(("stale_epoch", "beyond_window"))
RESTART_DROPS_GRACE_S = 10.0

# Stream counters published besides the standard NAK/retransmit slots: (slot, counter attribute
# of TransportCounters, help), summed over both transports.
STREAM_COUNTERS: tuple = (
    ("stream_heartbeats_sent", "heartbeats_sent",
     "Stream HEARTBEATs sent: tail probes of unacknowledged data and idle keep-alives"),
    ("stream_status_sent", "status_sent",
     "Stream STATUS frames sent (acknowledgements, alone or riding with data)"),
    ("stream_duplicates", "duplicates",
     "Stream DATA frames received that were already delivered or held (resends that crossed "
     "the original, or duplication on the network)"),
)

# Derived from the figures the node itself published (role, leader_id, election_state) and
# `TransportCounterPublisher.leader_heard`, each time the node publishes them (maybe_publish).
NO_LEADER_SINCE = "no_leader_since_ns"
LEADER_EXTRA_SLOTS: tuple = (
    (NO_LEADER_SINCE, GAUGE,
     "Wall clock (ns) since when this member knows no live leader; 0 while it has one"),
)

# Extra slots a node declares when it creates its counters file (the leader slots ride with
# the transport's: this tuple is the one the node and the CLI pass for this module).
TRANSPORT_EXTRA_SLOTS: tuple = tuple(
    (f"transport_drop_{reason}", COUNTER, f"Transport drops: {reason.replace('_', ' ')}")
    for reason in DROP_REASONS) + tuple((slot, COUNTER, text) for slot, _, text in STREAM_COUNTERS) \
    + LEADER_EXTRA_SLOTS

# Refusals and drops the consensus module (``module``) and the core (``core``) count in dicts
# of their own: copied into slots of the same names at each publish, so operators see them.
REFUSAL_COUNTERS: tuple = (
    ("module", "ingress_malformed", "Client messages that decoded but made no sense (dropped)"),
    ("module", "ingress_too_large", "Client messages over max_message_bytes (refused, unapplied)"),
    ("module", "ingress_unknown_service",
     "Client messages for a service id no service has (refused, unapplied)"),
    ("module", "ingress_unknown_session", "Client messages naming no open session (refused)"),
    ("module", "ingress_session_client_mismatch",
     "Client messages naming another client's session (refused)"),
    ("module", "authentication_rejected", "Connects the authenticator refused"),
    ("module", "authenticator_errors",
     "Connects refused because the authenticator raised (a bug in it; the node logs each)"),
    ("module", "connect_session_limit", "Connects refused because max_sessions were open"),
    ("module", "connect_bad_version", "Connects with a protocol version this cluster does not speak"),
    ("module", "connect_bad_endpoint", "Connects with an unusable response endpoint"),
    ("module", "egress_dropped", "Replies and events dropped: the client's egress queue was full"),
    ("module", "session_window_refused",
     "SessionWindow messages with a window base no client of the session can hold (<= 0 or past "
     "its last applied seq + 1; dropped)"),
    ("module", "timer_schedule_refused",
     "schedule_timer calls refused because max_timers timers were live"),
    ("module", "service_set_mismatches",
     "Term entries whose leader hosts another service list than this member (logged)"),
    ("module", "config_mismatches",
     "Term entries whose leader runs with other values of the settings every member must share "
     "(max_timers, reply_cache_messages, max_message_bytes ...; logged)"),
    ("module", "keepalive_newer_term",
     "Keepalives naming a newer leadership term than this leader's (it is stale; unanswered)"),
    ("module", "leader_clock_behind",
     "Leaderships this member took with its clock over 1 s behind cluster time (it stands still "
     "until the clock catches up; logged)"),
    ("module", "state_digests_proposed",
     "Checksums of this leader's own snapshots appended to the log for the members to compare"),
    ("module", "state_digests_checked",
     "Leaders' snapshot checksums compared with this member's own snapshot at the same index"),
    ("module", "state_divergences",
     "Those that differed: this member's state is not the leader's (a non-deterministic "
     "service; logged, in errors.log)"),
    ("module", "state_digests_unchecked",
     "Leaders' snapshot checksums this member had no snapshot at that index to compare with"),
    ("core", "votes_withheld_rejoining",
     "Canvass and ballot requests refused while this member, started on an empty data dir, has "
     "not caught up (a candidate with a non-empty log)"),
    ("core", "campaigns_withheld_rejoining",
     "Elections this member did not stand in (timeouts and leadership transfers) while, started "
     "on an empty data dir, it holds part of the log and has not caught up"),
    ("core", "leader_held_rejoining",
     "AppendEntries and heartbeats left unanswered while this member, started on an empty data "
     "dir, had not yet heard enough members' terms to know their sender is no deposed leader"),
    ("core", "rejoin_term_probes",
     "Canvasses sent, while started on an empty data dir, to learn other members' terms"),
    ("core", "rejoin_terms_heard",
     "1 once this member, started on an empty data dir, has heard the terms of enough members "
     "to follow a leader"),
    ("core", "invalid_append_response",
     "AppendResponses no follower of this leader can send (a corrupt or buggy peer; dropped)"),
    ("core", "dropped_out_of_range",
     "Consensus messages with a term, index or offset no member could reach (corrupt or "
     "forged; dropped)"),
    ("core", "votes_refused_ballot_tag",
     "Canvass and ballot requests refused because the candidate hosts another service list "
     "(logged)"),
    ("core", "slow_log_syncs",
     "Log syncs (file_sync data or full) without progress for longer than "
     "heartbeat_interval_ms: a follower's acknowledgements waited, a leader's commits "
     "needed its followers' copies; a slow disk (logged)"),
    ("core", "leader_sync_stalls",
     "Times this member, leading, found its log sync without progress for 2 s and handed the "
     "leadership over (logged)"),
    ("core", "sync_stalls",
     "Times this member's log sync made no progress for 2 s: until it did, the member held "
     "everything it sent (heartbeat replies and votes too), so no leader counted on it "
     "(a follower's logged)"),
    ("core", "held_messages_dropped",
     "Messages dropped while waiting for this member's log sync (acknowledgements; anything "
     "during a 2 s stall): more than 1024 Readies' worth waited (a hung disk), or a "
     "truncation dropped all that waited"),
    ("core", "follower_lost_acknowledged_entries",
     "Times a follower turned out to have lost entries it had acknowledged"),
    ("module", "apply_budget_spent",
     "Duty cycles that stopped applying committed entries when their time budget ran out (the "
     "rest in the next cycles): slow service callbacks (docs/programming.md, 'Slow callbacks')"),
)
REFUSAL_EXTRA_SLOTS: tuple = tuple((name, COUNTER, text) for _, name, text in REFUSAL_COUNTERS)

_STANDARD_DROP_SLOT = {
    "malformed": SlotId.DROPS_MALFORMED,
    "oversize": SlotId.DROPS_TOO_LARGE,
    "wrong_cluster": SlotId.DROPS_WRONG_CLUSTER,
    "bad_mac": SlotId.DROPS_BAD_MAC,
    "unknown_member": SlotId.DROPS_UNKNOWN_MEMBER,
    "stale_epoch": SlotId.DROPS_STALE,
}
_DROP_SLOTS = tuple(int(s) for s in (
    SlotId.DROPS_WRONG_CLUSTER, SlotId.DROPS_UNKNOWN_MEMBER, SlotId.DROPS_BAD_MAC,
    SlotId.DROPS_MALFORMED, SlotId.DROPS_TOO_LARGE, SlotId.DROPS_STALE, SlotId.DROPS_OTHER))
_FRAMES_IN, _FRAMES_OUT, _BYTES_IN, _BYTES_OUT = (int(SlotId.FRAMES_IN), int(SlotId.FRAMES_OUT),
                                                  int(SlotId.BYTES_IN), int(SlotId.BYTES_OUT))
_NAKS_SENT, _NAKS_RECEIVED, _RETRANSMITS = (int(SlotId.NAKS_SENT), int(SlotId.NAKS_RECEIVED),
                                            int(SlotId.RETRANSMITS))
_MALFORMED, _TOO_LARGE = int(SlotId.DROPS_MALFORMED), int(SlotId.DROPS_TOO_LARGE)
_ROLE, _LEADER_ID, _ELECTION_STATE = (int(SlotId.ROLE), int(SlotId.LEADER_ID),
                                      int(SlotId.ELECTION_STATE))


class TransportCounterPublisher:
    """Copies the counters of ``transports`` into ``writer`` (see the module docstring)."""

    def __init__(self, writer: CountersWriter, transports: Sequence, period_ns: int = PUBLISH_PERIOD_NS,
                 sources: Optional[dict] = None, clock: Callable[[], float] = time.monotonic,
                 wall_clock: Callable[[], int] = time.time_ns):
        """``sources``: ``{"module": dict, "core": dict}``, the counter dicts whose
        `REFUSAL_COUNTERS` are copied into their slots (when the writer declared them).
        ``clock`` (seconds) times the grace after a restart (`RESTART_DROPS_GRACE_S`);
        ``wall_clock`` (ns since the epoch) stamps ``no_leader_since_ns``."""
        self._writer = writer
        self._dict_slots = tuple((sources[owner], name, writer.index(name))
                                 for owner, name, _ in REFUSAL_COUNTERS
                                 if sources and owner in sources and name in writer.names)
        self._values = writer.values
        self._transports = tuple(transports)
        self._period_ns = period_ns
        self._next_ns = 0
        self.decode_drops = 0        # bumped by the node for messages that fail to decode
        self.drop_log = None         # a logsetup.BurstLogger: drops logged as bursts, per reason
        # set by the node: RaftCore.heard_leader_since_campaign. A member whose canvass was
        # refused names its last leader again without hearing it: it still has none. None:
        # naming a leader outside an election counts as having one
        self.leader_heard: Optional[Callable[[], bool]] = None
        self._clock = clock
        self._wall_clock = wall_clock
        self._no_leader_slot = (writer.index(NO_LEADER_SINCE) if NO_LEADER_SINCE in writer.names
                                else None)
        self._restart_at = clock()   # this node's start: peers still send about its last run
        self._peer_restarts = 0
        self._stream_slots = tuple((writer.index(slot), attr) for slot, attr, _ in STREAM_COUNTERS
                                   if slot in writer.names)
        # (reason, standard slot index, detail slot index), resolved once
        self._reason_slots = tuple(
            (reason, int(_STANDARD_DROP_SLOT.get(reason, SlotId.DROPS_OTHER)),
             writer.index(f"transport_drop_{reason}"))
            for reason in DROP_REASONS)

    def maybe_publish(self, now_ns: int) -> None:
        """Publish if ``period_ns`` has passed since the last time (cheap otherwise). The
        ``no_leader_since_ns`` gauge is derived at every call, in the duty cycle that published
        the role and leader it comes from, not up to ``period_ns`` later: ``aeronpy tool
        describe`` goes by both, and would say "no leader" for a while after one was heard."""
        if now_ns >= self._next_ns:
            self._next_ns = now_ns + self._period_ns
            self.publish()
        elif self._no_leader_slot is not None:
            self._publish_no_leader()

    def due_after(self, work_ns: int) -> int:
        """When the next ``maybe_publish`` would copy figures changed by work done at
        ``work_ns`` (an idle node parks no longer, so they lag by at most the period), or
        1 << 62 when the last publish came after that work."""
        next_ns = self._next_ns
        return next_ns if work_ns >= next_ns - self._period_ns else 1 << 62

    def publish(self) -> None:
        v = self._values
        frames_in = frames_out = bytes_in = bytes_out = 0
        naks_sent = naks_received = retransmits = truncated = 0
        for t in self._transports:
            sock = t.socket
            frames_in += sock.datagrams_in
            frames_out += sock.datagrams_out
            bytes_in += sock.bytes_in
            bytes_out += sock.bytes_out
            truncated += sock.truncated
            c = t.counters
            naks_sent += c.naks_sent
            naks_received += c.naks_received
            retransmits += c.retransmits
        v[_FRAMES_IN] = frames_in
        v[_FRAMES_OUT] = frames_out
        v[_BYTES_IN] = bytes_in
        v[_BYTES_OUT] = bytes_out
        v[_NAKS_SENT] = naks_sent
        v[_NAKS_RECEIVED] = naks_received
        v[_RETRANSMITS] = retransmits
        for slot, attr in self._stream_slots:
            v[slot] = sum(getattr(t.counters, attr) for t in self._transports)
        totals = dict.fromkeys(_DROP_SLOTS, 0)
        totals[_MALFORMED] = self.decode_drops
        totals[_TOO_LARGE] = truncated
        drop_tables = [t.counters.drops for t in self._transports]
        drop_log = self.drop_log
        restart_level = None
        if drop_log is not None:
            restarts = sum(t.counters.peer_restarts for t in self._transports)
            if restarts != self._peer_restarts:
                self._peer_restarts = restarts
                self._restart_at = self._clock()
            if self._clock() - self._restart_at < RESTART_DROPS_GRACE_S:
                restart_level = logging.INFO
        for reason, standard, detail in self._reason_slots:
            n = 0
            for drops in drop_tables:
                n += drops[reason]
            if drop_log is not None and n > v[detail]:
                drop_log.record(reason, n - v[detail],
                                level=restart_level if reason in RESTART_DROP_REASONS else None)
            v[detail] = n
            totals[standard] += n
        for slot, n in totals.items():
            v[slot] = n
        for counts, name, slot in self._dict_slots:
            v[slot] = counts.get(name, 0)
        if self._no_leader_slot is not None:
            self._publish_no_leader()
        if drop_log is not None:
            drop_log.flush()

    def _publish_no_leader(self) -> None:
        v, slot, heard = self._values, self._no_leader_slot, self.leader_heard
        # a leader named outside an election but not heard since the last canvass (one a
        # quorum refused) is only the last one known: the time it was lost stays until it is
        # heard again. The canvass itself lasts a round trip, too short to be seen here.
        if knows_a_leader(v[_ROLE], v[_LEADER_ID], v[_ELECTION_STATE]) \
                and (heard is None or heard()):
            v[slot] = 0
        elif v[slot] == 0:          # kept through CANVASS -> NOMINATE -> BALLOT -> CANVASS
            v[slot] = self._wall_clock()
