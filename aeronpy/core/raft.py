"""``RaftCore``: one member's consensus state machine, sans-I/O.

Inputs are ``tick(now_ns)``, ``step(from_id, msg, now_ns)``, ``propose(...)``; the output is a
:class:`~aeronpy.core.ready.Ready` listing what to persist, send and apply, in that order.
It never reads a clock, draws global randomness or touches the OS: time comes in as an
argument and randomness from the injected ``random.Random``. That is what makes the
simulator exact. The election lives in ``election.py``, replication in ``replication.py``;
this class keeps the shared state (term, vote, role, commit) and dispatches.
"""
from __future__ import annotations

from aeronpy.core import config as _config
from aeronpy.core.config import NEW_LEADERSHIP_TERM, NO_VOTE, CoreConfig, HardState
from aeronpy.core.election import Election, ElectionState
from aeronpy.core.messages import (AppendEntries, AppendResponse, CanvassPosition, Heartbeat,
                                   HeartbeatResponse, InstallSnapshot,
                                   RequestVote, TimeoutNow, Vote, MAX_TERM_STEP, out_of_range)
from aeronpy.core.quorum import quorum_size
from aeronpy.core.ready import Ready
from aeronpy.core.replication import LeaderReplication, follower_on_append, follower_on_heartbeat
from aeronpy.service import Role

_LEADER_MESSAGES = (AppendEntries, Heartbeat, TimeoutNow, InstallSnapshot)


class RaftCore:
    """Consensus for one member. Not thread-safe; one driver calls it."""

    def __init__(self, config: CoreConfig, rng, hard_state: HardState | None = None, log=None,
                 commit_index: int = 0):
        if log is None:
            from aeronpy._logindex import LogIndex  # compiled; imports nothing from the OS
            log = LogIndex()
        hard_state = hard_state or HardState()
        self.config = config
        self.member_id = config.member_id
        self.is_voter = config.member_id in config.voters
        self._peers = frozenset(config.voters) - {config.member_id}
        self._rng = rng
        self.log = log
        self.term = hard_state.term
        # the archive's HardState says None for "no vote"; the core's own value is NO_VOTE
        self.voted_for = NO_VOTE if hard_state.voted_for is None else hard_state.voted_for
        self.role = Role.FOLLOWER
        self.leader_id = None
        if not log.base_index <= commit_index <= log.last_index:
            commit_index = min(max(commit_index, log.base_index), log.last_index)
        self.commit_index = commit_index
        self.applied_index = commit_index
        # written_index: the last entry handed to the driver to write; persisted_index: the
        # last one the driver reported durable. They differ while the driver's sync of a Ready
        # it advanced already runs (advance(rd, durable=False), then note_durable).
        self.written_index = self.persisted_index = log.last_index
        self.verified_index = 0           # follower: last index known to match this term's leader
        self.last_leader_contact_ns = None
        self.now_ns = 0                   # latest time given by the driver
        self.counters: dict = {}
        # told (member id, its ballot tag) of each ballot or canvass refused for a tag that
        # differs from ours (CoreConfig.ballot_tag): a node says so loudly
        self.on_ballot_tag_mismatch = None
        # Set by the driver for a member that started on an empty data dir (its log and its
        # vote lost): it withholds its vote from any candidate with a non-empty log until it
        # has caught up (withholds_vote). Otherwise its vote could elect a member whose log
        # lacks entries committed with its own lost acknowledgements. rejoin_target: the
        # leader's commit index in the first AppendEntries since; the driver clears both once
        # commit_index reaches it, or once this member leads (only empty logs elected it).
        self.rejoining = False
        self.rejoin_target: int | None = None
        # A rejoining member's term went with its disk, so the first leader it hears may be a
        # deposed one. It follows no leader it did not vote for until it has heard the term of
        # enough voters that one of them holds every committed entry (rejoin_term_known).
        self._rejoin_heard: set = set()
        self._rejoin_term_known = False
        self._rejoin_probe_due_ns = 0
        self.election = Election(self)
        self.leader_state: LeaderReplication | None = None
        # pending output
        self._messages: list = []
        self._pending_hard_state: HardState | None = None
        self._truncate_from = None
        self._snapshot_requests: list = []
        self._reported_role = Role.FOLLOWER
        self._reported_leader = None
        self._awaiting_advance: Ready | None = None
        if log.last_term > self.term:
            # A saved term below the log's (a restore from a backup made without node.state):
            # a member's term is never below its last entry's, or as a leader it would append
            # below it. No vote is known for that term; the next Ready saves it.
            self.term, self.voted_for = log.last_term, NO_VOTE
            self._pending_hard_state = HardState(self.term, NO_VOTE)

    # ================================================================ public API
    @property
    def election_state(self) -> ElectionState:
        return self.election.state

    def tick(self, now_ns: int) -> None:
        """Run the timers due at ``now_ns``. Most ticks find none due: they compare one
        deadline (the leader's ``tick_due_ns``, the election's ``deadline_ns``) and return."""
        if self._awaiting_advance is not None:
            self._check_not_awaiting()
        self.now_ns = now_ns
        leader_state = self.leader_state
        if leader_state is not None:
            if now_ns < leader_state.tick_due_ns or leader_state.on_tick(now_ns):
                return
        self.election.on_tick(now_ns)

    def next_due_ns(self) -> int:
        """When ``tick`` next has something to do (a leader's heartbeat or quorum check, an
        election deadline), or 0 when that is unknown until the next tick sets it: a driver
        with nothing else to do may sleep until then (ClusterNode's idle park)."""
        leader_state = self.leader_state
        if leader_state is not None:
            return leader_state.tick_due_ns
        deadline_ns = self.election.deadline_ns
        return 0 if deadline_ns is None else deadline_ns

    def step(self, from_id: int, msg, now_ns: int) -> None:
        """Handle a message from a peer. Unknown senders, values out of range (a term no
        member could reach) and stale terms are dropped and counted."""
        self._check_not_awaiting()
        self.now_ns = now_ns
        if from_id not in self._peers:
            self.counters_add("dropped_unknown_sender")
            return
        kind = type(msg)
        if out_of_range(msg) or (msg.proposed_term if kind is CanvassPosition else msg.term) \
                > self.term + MAX_TERM_STEP:
            self.counters_add("dropped_out_of_range")
            return
        if self.rejoining and not self._rejoin_term_known:
            # every message but a canvass leaves our term at or above the sender's (a higher
            # one is adopted below); a granted vote's term is at least the sender's
            if kind is not CanvassPosition or msg.term <= self.term:
                self._note_rejoin_heard(from_id)
        if kind is CanvassPosition:
            self.election.on_canvass(from_id, msg, now_ns)
            return
        if kind is Vote and msg.pre:
            self.election.on_vote(from_id, msg, now_ns)
            return
        term = msg.term
        if term > self.term:
            if kind is RequestVote:
                if not msg.transfer and self.in_leader_lease(now_ns):
                    self.counters_add("ballot_ignored_in_lease")
                    return
                self.become_follower(term, None, now_ns, "higher term in a ballot")
            elif kind in _LEADER_MESSAGES:
                self.become_follower(term, from_id, now_ns, "higher term from a leader")
            else:
                self.become_follower(term, None, now_ns, "higher term in a reply")
        elif term < self.term:
            self.counters_add("dropped_stale_term")
            # Tell a stale leader or candidate about the newer term so it steps down.
            if kind is AppendEntries:
                self.send(from_id, AppendResponse(self.term, False, msg.prev_index, 0, 0))
            elif kind is Heartbeat:
                self.send(from_id, HeartbeatResponse(self.term, self.log.last_index))
            elif kind is RequestVote:
                self.send(from_id, Vote(self.term, False, False))
            return
        handler = _DISPATCH.get(kind)
        if handler is None:
            self.counters_add("dropped_unsupported_message")
            return
        handler(self, from_id, msg, now_ns)

    def propose(self, entry_type: int, payload) -> int:
        """Append an entry if this member leads (and is not handing over); else return 0."""
        leader_state = self.leader_state
        if leader_state is None or leader_state.transfer_target is not None:
            return 0
        index = self.log.append(self.term, entry_type, payload)
        leader_state.broadcast_pending = True
        return index

    def transfer_leadership(self, target: int | None = None, now_ns: int | None = None) -> bool:
        """Hand leadership to ``target`` (default: the most up-to-date follower)."""
        self._check_not_awaiting()
        if now_ns is not None:
            self.now_ns = now_ns
        leader_state = self.leader_state
        if leader_state is None:
            return False
        if target is None:
            target = leader_state.best_transfer_target()
        if target is None or target == self.member_id:
            return False
        return leader_state.start_transfer(target, self.now_ns)

    def compact(self, index: int, term: int) -> None:
        """A snapshot covers the log up to ``index``: drop that prefix from the in-memory log."""
        if index > self.applied_index:
            raise ValueError(f"compact: index {index} is beyond the applied index {self.applied_index}")
        if index <= self.log.base_index:
            return
        if self.log.term_at(index) != term:
            raise ValueError(f"compact: entry {index} has term {self.log.term_at(index)}, not {term}")
        self.log.drop_prefix(index, term)

    def report_snapshot(self, member_id: int, success: bool) -> None:
        """The driver finished (or gave up) sending a snapshot requested in a Ready."""
        if self.leader_state is not None:
            self.leader_state.on_snapshot_reported(member_id, success)

    def has_ready(self) -> bool:
        leader_state = self.leader_state
        if leader_state is not None and leader_state.broadcast_pending:
            leader_state.broadcast()
        return bool(self._messages or self._pending_hard_state is not None or self._truncate_from is not None
                    or self.log.last_index > self.written_index or self.commit_index > self.applied_index
                    or self.role != self._reported_role or self.leader_id != self._reported_leader
                    or self._snapshot_requests)

    def ready(self) -> Ready:
        self._check_not_awaiting()
        leader_state = self.leader_state
        if leader_state is not None and leader_state.broadcast_pending:
            leader_state.broadcast()
        role_changed = self.role if self.role != self._reported_role else None
        leader_changed = self.leader_id != self._reported_leader
        hard_state = self._pending_hard_state
        truncate_from = self._truncate_from
        # A leader's messages (appends, heartbeats, refusals) promise nothing about its disk;
        # a term or vote not yet saved (a lone member elects itself in one step) goes first.
        send_first = leader_state is not None and hard_state is None and truncate_from is None
        if _config._BUGS and "acks_before_persist" in _config._BUGS:
            send_first = True
        rd = Ready(truncate_from, hard_state, self.written_index + 1,
                   self.log.last_index + 1, self._messages, self.applied_index + 1, self.commit_index + 1,
                   self.commit_index, role_changed, leader_changed, self._snapshot_requests, send_first)
        self._messages = []
        self._snapshot_requests = []
        self._pending_hard_state = None
        self._truncate_from = None
        self._reported_role = self.role
        self._reported_leader = self.leader_id
        self._awaiting_advance = rd
        return rd

    def advance(self, rd: Ready, durable: bool = True) -> None:
        """The driver persisted, sent and applied everything in ``rd``.

        ``durable=False``: it wrote the Ready's entries but their sync has not finished. The
        core steps on meanwhile: a leader counts its followers' acknowledgements while its own
        disk syncs (Raft thesis 10.2.1), its own copy counting only once the driver calls
        ``note_durable``; a follower takes the next appends. The driver holds back the
        accepted AppendResponses of any Ready that is not ``send_first`` until every entry
        written so far is durable (an acknowledgement must not outrun the log it promises;
        ``ready.vouches_for_log``)."""
        if rd is not self._awaiting_advance:
            raise RuntimeError("advance() must be given the Ready returned by the last ready()")
        self._awaiting_advance = None
        self.written_index = rd.persist_hi - 1
        if durable or "leader_counts_unsynced" in _config._BUGS:
            self.persisted_index = rd.persist_hi - 1
        self.applied_index = rd.apply_hi - 1
        if self.leader_state is not None:
            self.leader_state.maybe_commit()   # our own log is durable further now

    def note_durable(self, index: int) -> None:
        """The driver's log is durable up to ``index`` (a sync that finished after
        ``advance(rd, durable=False)``). Capped at what was handed out since the last cut, so
        a sync of entries a truncation has since replaced claims nothing."""
        self._check_not_awaiting()
        index = min(index, self.written_index)
        if index > self.persisted_index:
            self.persisted_index = index
            if self.leader_state is not None:
                self.leader_state.maybe_commit()

    # ================================================================ helpers for election/replication
    def withholds_vote(self, candidate_last_index: int) -> bool:
        """A rejoining member (``rejoining``) gives no vote or pre-vote to a candidate with a
        non-empty log: the cluster has history this member no longer holds. A cluster's first
        election (every log empty) is unaffected."""
        if self.rejoining and candidate_last_index > 0:
            self.counters_add("votes_withheld_rejoining")
            return True
        return False

    def rejoin_caught_up(self) -> bool:
        """The rule that lifts the rejoining mark, asked by every driver (ClusterNode and the
        simulator) after each cycle: this member holds, durably and as committed, everything
        the leader had committed at its first AppendEntries since the start (rejoin_target)
        and an entry of the leader's term, or it leads (only members with empty logs can have
        elected it: a first start)."""
        if self.role == Role.LEADER:
            return True
        target = self.rejoin_target
        if target is None:
            return False
        held = min(self.commit_index, self.persisted_index)
        if held < target:
            return False
        if "rejoin_lifts_below_term" in _config._BUGS or \
                (self.leader_id is not None and self.voted_for == self.leader_id):
            return True      # our vote went to this leader: both logs were empty, a first start
        if self.term == 1 and "rejoin_first_term_waits" not in _config._BUGS:
            # the first term: its leader is the first ever (a leader never resumes its term
            # after a restart), so it committed everything ever committed, and its commit
            # index, uncapped in AppendEntries, lags nothing. Without this a first start
            # whose leader died before its first commit kept a member that had not voted for
            # it marked, withholding the vote every other candidate needed
            return True
        # and an entry of the leader's own term: the leader's commit index can lag what is
        # committed (a new leader commits its predecessors' entries only with its first one),
        # and every entry committed before its term precedes that first one. A sync still
        # running can leave the durable end below a snapshot just taken (entries applied
        # before they were durable here): its term is unknown then, so not yet.
        if held < self.log.base_index:
            return False
        return held > 0 and self.log.term_at(held) == self.term

    def rejoin_follows(self, leader: int) -> bool:
        """Whether a rejoining member may follow ``leader`` in the current term: it voted for
        it (its vote goes only to empty logs: a first start), or it has heard the term of
        every voter of a set that meets every quorum it was part of before its disk was
        emptied (``_note_rejoin_heard``), so no deposed leader's term is below its own."""
        return self._rejoin_term_known or self.voted_for == leader \
            or "rejoin_follows_unheard" in _config._BUGS

    def _note_rejoin_heard(self, member: int) -> None:
        """A committed entry is on a quorum; without this member at least quorum - 1 other
        voters hold it, so hearing n - quorum + 1 other voters reaches one of them, whose
        term is at least the entry's. A leader of a term at least that high holds the entry
        (leader completeness): following it cannot help commit over it."""
        voters = self.config.voters
        if member not in voters:
            return
        heard = self._rejoin_heard
        heard.add(member)
        others = len(voters) - (self.member_id in voters)
        needed = min(others, len(voters) - quorum_size(len(voters)) + 1)
        if len(heard) >= needed:
            self._rejoin_term_known = True
            self.counters_add("rejoin_terms_heard")

    def _hold_unheard_leader(self, from_id: int, now_ns: int) -> None:
        """A leader a rejoining member may not follow yet: no answer (its appends count for
        nothing), no election of our own meanwhile, and a canvass (a pre-vote, which changes
        nobody's term) to each voter not heard yet, whose answer carries its term."""
        self.counters_add("leader_held_rejoining")
        if self.role != Role.FOLLOWER or self.election.state != ElectionState.FOLLOWER_READY:
            self.become_follower(self.term, None, now_ns, "a leader held while rejoining")
        else:
            self.election.reset_timer(now_ns)
        if now_ns < self._rejoin_probe_due_ns:
            return
        self._rejoin_probe_due_ns = now_ns + self.config.heartbeat_interval_ns
        probe = self.election.canvass_message()
        for peer in self.config.voters:
            if peer != self.member_id and peer != from_id and peer not in self._rejoin_heard:
                self.counters_add("rejoin_term_probes")
                self.send(peer, probe)

    def withholds_campaign(self) -> bool:
        """A rejoining member with a non-empty log does not stand for election: its own vote
        is the vote it withholds from others (a partial copy of the leader's log won with it
        and the vote of a member that lagged behind both, losing what it had acknowledged
        before its disk was emptied). With an empty log (a first start) it stands as ever.
        Asked by Election.start_campaign, the one way into a campaign."""
        if self.rejoining and self.log.last_index > 0:
            self.counters_add("campaigns_withheld_rejoining")
            return True
        return False

    def counters_add(self, name: str, n: int = 1) -> None:
        counters = self.counters
        counters[name] = counters.get(name, 0) + n

    def send(self, to: int, msg) -> None:
        self._messages.append((to, msg))

    def note_ballot_tag_mismatch(self, from_id: int, tag: int) -> None:
        report = self.on_ballot_tag_mismatch
        if report is not None:
            report(from_id, tag)

    def request_snapshot(self, member_id: int, index: int, term: int) -> None:
        self._snapshot_requests.append((member_id, index, term))

    def log_is_up_to_date(self, last_log_term: int, last_log_index: int) -> bool:
        """Raft 5.4.1: compare last terms; with equal terms the longer log wins."""
        log = self.log
        my_term = log.last_term
        return last_log_term > my_term or (last_log_term == my_term and last_log_index >= log.last_index)

    def in_leader_lease(self, now_ns: int) -> bool:
        """True if we lead, or heard from a live leader within the election timeout."""
        if not self.config.check_quorum or self.leader_id is None:
            return False
        if self.leader_id == self.member_id:
            return True
        contact = self.last_leader_contact_ns
        return contact is not None and now_ns - contact < self.config.election_timeout_ns

    def heard_leader_since_campaign(self) -> bool:
        """Whether this member leads, or has heard from a leader since it last canvassed or
        asked for votes. A member whose canvass a quorum refuses (they still hear a leader it
        does not) names its last leader again (FOLLOWER_READY, ``leader_id`` kept) without
        having heard it: False then, until the leader's next message is accepted. The node's
        ``no_leader_since_ns`` gauge goes by it."""
        if self.role == Role.LEADER:
            return True
        started = self.election.campaign_ns
        contact = self.last_leader_contact_ns
        return started is None or (contact is not None and contact >= started)

    def record_vote(self, candidate: int) -> None:
        self.voted_for = candidate
        if "vote_not_persisted" in _config._BUGS:
            return
        self._pending_hard_state = HardState(self.term, candidate)

    def set_commit(self, index: int) -> None:
        self.commit_index = index

    def truncate_log(self, index: int) -> None:
        """Drop entries from ``index`` on, in memory now and on disk in the next Ready."""
        self.log.truncate_from(index)
        if index <= self.written_index:
            self.written_index = index - 1
            self.persisted_index = min(self.persisted_index, index - 1)
            if self._truncate_from is None or index < self._truncate_from:
                self._truncate_from = index
        if self.verified_index >= index:
            self.verified_index = index - 1

    # ================================================================ role changes
    def _set_term(self, term: int) -> None:
        if term < self.term:
            raise AssertionError(f"term must never decrease ({self.term} -> {term})")
        if term > self.term:
            self.term = term
            self.voted_for = NO_VOTE
            self.verified_index = 0
            self._pending_hard_state = HardState(term, NO_VOTE)

    def become_follower(self, term: int, leader_id, now_ns: int, reason: str) -> None:
        self._set_term(term)
        self.role = Role.FOLLOWER
        self.leader_state = None
        self.leader_id = leader_id
        if leader_id is not None:
            self.last_leader_contact_ns = now_ns
        self.election.follow(now_ns, reason)

    def become_candidate(self, now_ns: int) -> None:
        """Entry action of CANDIDATE_BALLOT: a new term and a vote for ourselves."""
        self._set_term(self.term + 1)
        self.role = Role.CANDIDATE
        self.leader_state = None
        self.leader_id = None
        self.record_vote(self.member_id)

    def become_leader(self, now_ns: int) -> None:
        """Entry action of LEADER_READY: open the term with a new-leadership-term entry."""
        self.role = Role.LEADER
        self.leader_id = self.member_id
        self.leader_state = LeaderReplication(self, now_ns)
        self.log.append(self.term, NEW_LEADERSHIP_TERM,
                        now_ns.to_bytes(8, "little", signed=True) + self.config.term_entry_tail)
        self.leader_state.broadcast_pending = True

    def _accept_leader(self, from_id: int, now_ns: int) -> bool:
        """A leader's AppendEntries or Heartbeat in our term: follow it and restart the
        election timer. False when the message is not to be handled: we lead this term
        ourselves, or, rejoining, we may not follow this leader yet (rejoin_follows)."""
        if self.role == Role.LEADER:
            self.counters_add("dropped_second_leader_in_term")   # impossible unless safety broke
            return False
        if self.rejoining and not self.rejoin_follows(from_id):
            self._hold_unheard_leader(from_id, now_ns)
            return False
        if self.role != Role.FOLLOWER or self.leader_id != from_id \
                or self.election.state != ElectionState.FOLLOWER_READY:
            self.become_follower(self.term, from_id, now_ns, "heard from the leader")
        else:
            self.election.reset_timer(now_ns)
        self.last_leader_contact_ns = now_ns
        return True

    def _check_not_awaiting(self) -> None:
        if self._awaiting_advance is not None:
            raise RuntimeError("the driver must call advance(rd) before the next tick/step/ready")

    def __repr__(self) -> str:
        return (f"RaftCore(member={self.member_id}, role={self.role.name}, term={self.term}, "
                f"leader={self.leader_id}, last={self.log.last_index}, commit={self.commit_index})")


# ==================================================================== dispatch (same-term messages)
def _on_append_entries(core: RaftCore, from_id: int, msg, now_ns: int) -> None:
    if not core._accept_leader(from_id, now_ns):
        return
    if core.rejoining and core.rejoin_target is None:
        core.rejoin_target = msg.commit_index          # caught up once commit_index reaches it
    follower_on_append(core, from_id, msg)


def _on_heartbeat(core: RaftCore, from_id: int, msg, now_ns: int) -> None:
    if not core._accept_leader(from_id, now_ns):
        return
    if core.rejoining and core.rejoin_target is None and core.log.last_index > 0:
        # restarted midway (the target is memory only): a heartbeat's commit index is capped
        # by what the leader counted for us, so report nothing held; its probe, an
        # AppendEntries, carries the commit index to catch up to (or an idle cluster never sends one)
        core.send(from_id, HeartbeatResponse(core.term, 0))
        return
    follower_on_heartbeat(core, from_id, msg)


def _on_append_response(core: RaftCore, from_id: int, msg, now_ns: int) -> None:
    if core.leader_state is not None:
        core.leader_state.on_append_response(from_id, msg, now_ns)


def _on_heartbeat_response(core: RaftCore, from_id: int, msg, now_ns: int) -> None:
    if core.leader_state is not None:
        core.leader_state.on_heartbeat_response(from_id, msg, now_ns)


def _on_request_vote(core: RaftCore, from_id: int, msg, now_ns: int) -> None:
    core.election.on_request_vote(from_id, msg, now_ns)


def _on_vote(core: RaftCore, from_id: int, msg, now_ns: int) -> None:
    core.election.on_vote(from_id, msg, now_ns)


def _on_timeout_now(core: RaftCore, from_id: int, msg, now_ns: int) -> None:
    if core.role == Role.LEADER or not core.is_voter:
        return
    if core.election.start_campaign(now_ns, "leadership transferred to us", transfer=True):
        core.counters_add("timeout_now_received")


_DISPATCH = {
    AppendEntries: _on_append_entries,
    Heartbeat: _on_heartbeat,
    AppendResponse: _on_append_response,
    HeartbeatResponse: _on_heartbeat_response,
    RequestVote: _on_request_vote,
    Vote: _on_vote,
    TimeoutNow: _on_timeout_now,
}
# InstallSnapshot/InstallSnapshotResponse are not dispatched yet: snapshot transfer is the
# driver's job (Ready.snapshot_requests, report_snapshot); they are dropped and counted.
