"""Configuration and durable state of the consensus core.

Plain ``__slots__`` classes rather than dataclasses: the core must import nothing that touches
the OS, and ``dataclasses`` drags in ``inspect`` (which imports ``os``).
"""
from __future__ import annotations

MS = 1_000_000
"""Nanoseconds per millisecond."""

NO_VOTE = -1
"""``voted_for`` when this member has not voted in its current term."""

NEW_LEADERSHIP_TERM = 1
"""Entry type that opens every leadership term (payload: the leader's i64 timestamp)."""

_BUGS: set = set()
"""Deliberately broken rules, switched on by negative-control tests only (empty in production).

Known names: ``vote_not_persisted``, ``commit_old_term_by_counting``,
``truncate_matching_entries``, ``acks_before_persist`` (every Ready may send before its write,
a follower's acknowledgements and votes too), ``rejoin_follows_unheard`` (a rejoining member
follows the first leader it hears, as before the rule of RaftCore.rejoin_follows),
``rejoin_lifts_below_term`` (the rejoining mark lifts at the leader's commit index alone),
``rejoin_first_term_waits`` (in term 1 too the mark waits for a committed entry: an
availability control, not a safety one), ``leader_counts_unsynced`` (a leader's copy counts
towards a quorum at ``advance(rd, durable=False)``, before its sync finished),
``holds_all_messages`` (a driver holds every message of a Ready for its sync, votes and
heartbeat replies too, not just acknowledgements: a liveness control).
"""
KNOWN_BUGS = frozenset({"vote_not_persisted", "commit_old_term_by_counting", "truncate_matching_entries",
                        "acks_before_persist", "rejoin_follows_unheard",
                        "rejoin_lifts_below_term", "rejoin_first_term_waits",
                        "leader_counts_unsynced", "holds_all_messages"})


class CoreConfig:
    """Settings of one member's consensus core; every duration is in nanoseconds.

    Defaults replace a crashed leader in well under a second: followers time out after a
    random delay in [election_timeout, 2 * election_timeout) without hearing from the leader.
    """

    __slots__ = ("member_id", "voters", "election_timeout_ns", "heartbeat_interval_ns",
                 "leader_heartbeat_timeout_ns", "max_append_bytes", "max_inflight_appends",
                 "pre_vote", "check_quorum", "nominate_delay_max_ns", "retransmit_timeout_ns",
                 "term_entry_tail", "ballot_tag")

    def __init__(self, member_id: int, voters, election_timeout_ns: int = 200 * MS,
                 heartbeat_interval_ns: int = 50 * MS, leader_heartbeat_timeout_ns: int = 400 * MS,
                 max_append_bytes: int = 64 * 1024, max_inflight_appends: int = 64,
                 pre_vote: bool = True, check_quorum: bool = True,
                 nominate_delay_max_ns: int | None = None, retransmit_timeout_ns: int | None = None,
                 term_entry_tail: bytes = b"", ballot_tag: int = 0):
        voters = tuple(sorted(int(v) for v in voters))
        if not voters:
            raise ValueError("voters: at least one voting member is needed")
        if len(set(voters)) != len(voters):
            raise ValueError(f"voters: duplicate member id in {voters}")
        if any(v < 0 for v in voters):
            raise ValueError(f"voters: member ids must be >= 0, got {voters}")
        for name, value in (("election_timeout_ns", election_timeout_ns),
                            ("heartbeat_interval_ns", heartbeat_interval_ns),
                            ("leader_heartbeat_timeout_ns", leader_heartbeat_timeout_ns),
                            ("max_append_bytes", max_append_bytes),
                            ("max_inflight_appends", max_inflight_appends)):
            if int(value) <= 0:
                raise ValueError(f"{name}: must be > 0, got {value}")
        if heartbeat_interval_ns >= election_timeout_ns:
            raise ValueError("heartbeat_interval_ns: must be below election_timeout_ns "
                             f"({heartbeat_interval_ns} >= {election_timeout_ns})")
        self.member_id = int(member_id)
        self.voters = voters
        self.election_timeout_ns = int(election_timeout_ns)
        self.heartbeat_interval_ns = int(heartbeat_interval_ns)
        self.leader_heartbeat_timeout_ns = int(leader_heartbeat_timeout_ns)
        self.max_append_bytes = int(max_append_bytes)
        self.max_inflight_appends = int(max_inflight_appends)
        self.pre_vote = bool(pre_vote)
        self.check_quorum = bool(check_quorum)
        # A short random pause between winning the canvass and raising the term spreads out
        # members that timed out together (fewer split ballots).
        self.nominate_delay_max_ns = (self.election_timeout_ns // 10 if nominate_delay_max_ns is None
                                      else int(nominate_delay_max_ns))
        # A pipelined follower that has acknowledged nothing for this long is probed again
        # (an AppendEntries was lost and no later one exposed the gap).
        self.retransmit_timeout_ns = (2 * self.heartbeat_interval_ns if retransmit_timeout_ns is None
                                      else int(retransmit_timeout_ns))
        # Bytes a leader appends to its term's first entry after the 8-byte timestamp: the
        # driver's own business (a node puts what services it hosts there, so every member
        # applying the entry can check it hosts the same ones). Opaque to the core.
        self.term_entry_tail = bytes(term_entry_tail)
        # A 64-bit value this member sends in its canvass and ballot requests. A voter whose own
        # tag is not 0 refuses a candidate whose tag is another non-zero value: a node puts a
        # digest of the services it hosts there, so a member hosting other services never
        # leads members that would then diverge from it. 0: no tag (nothing is checked).
        if not -(1 << 63) <= int(ballot_tag) < (1 << 63):
            raise ValueError(f"ballot_tag: must fit in 64 signed bits, got {ballot_tag}")
        self.ballot_tag = int(ballot_tag)

    def __repr__(self) -> str:
        return "CoreConfig(" + ", ".join(f"{k}={getattr(self, k)!r}" for k in self.__slots__) + ")"


class HardState:
    """What must be on disk (synced) before this member sends anything that depends on it."""

    __slots__ = ("term", "voted_for")

    def __init__(self, term: int = 0, voted_for: int = NO_VOTE):
        if term < 0:
            raise ValueError(f"term: must be >= 0, got {term}")
        self.term = int(term)
        self.voted_for = int(voted_for)

    def __eq__(self, other) -> bool:
        return isinstance(other, HardState) and (self.term, self.voted_for) == (other.term, other.voted_for)

    __hash__ = None

    def __repr__(self) -> str:
        return f"HardState(term={self.term}, voted_for={self.voted_for})"
