"""Raft's safety properties, checked incrementally after every simulated event.

Each check costs O(new entries) or O(members), so the swarm can afford them everywhere:
- election safety: at most one leader per term;
- log matching: an (index, term) pair names one entry, with one predecessor term;
- committed entries never change, and no member truncates one;
- leader completeness: a new leader holds every committed entry;
- state machine safety: what a member applies at an index is the committed entry there;
- terms never decrease, across restarts too; at most one vote per member per term, across
  restarts too;
- the highest committed entry is durable on a quorum (per each member's file_sync policy; a
  wiped member's old disk counts for what it held);
- a leader advances its commit index only to an entry of its own term (figure 8);
- service level (through the real ``ConsensusModule``): every member makes the same service
  calls (callback, session, cluster time, payload) at each log index, restarted members
  replaying included; a session's messages reach the services exactly once each, in
  ``seq`` order without gaps, and each is the message of the log entry being applied;
- snapshots: every snapshot at index i (any member, taken or received) holds the same state
  (module state, service streams, cluster time) as every replay of the log to i and every
  other snapshot at i; a restored snapshot serialises back to exactly itself; no member
  compacts beyond its applied index; an entry inside a recorded snapshot counts as durable.
A violation raises :class:`InvariantViolation` naming the seed, and is kept for ``check()``.
"""
from __future__ import annotations

import bisect

from aeronpy.cluster import entries as E
from aeronpy.core.messages import RequestVote, Vote
from aeronpy.core.quorum import quorum_size
from aeronpy.service import Role
from aeronpy.testing.sim_snapshots import file_digest, live_digest


class InvariantViolation(AssertionError):
    pass


class InvariantChecker:
    def __init__(self, describe, storages: dict, voter_count: int):
        self._describe = describe               # () -> "SimCluster(seed=..) at t=..ms"
        self._storages = storages               # member id -> SimDisk (survives restarts)
        self._quorum = quorum_size(voter_count)
        self.enabled = True
        self.violations: list = []
        self.leader_of_term: dict = {}
        self.max_term: dict = {}
        self.votes: dict = {}                   # (member, term) -> candidate
        self.votes_forgotten: dict = {}         # the same, cast before the member's disk was wiped
        self.votes_again_after_wipe = 0         # votes in a term a wiped member had voted in
        self.entries: dict = {}                 # (index, term) -> (prev_term, type, payload hash)
        self.committed: list = [(0, None)]      # committed[i] = (term, payload hash); [0] unused
        self.member_commit: dict = {}           # member -> commit index checked (this incarnation)
        self.wiped_disks: dict = {}             # member -> its disk before its last wipe
        self.service_calls_at: dict = {}        # index -> the service calls applying it makes
        self.session_messages_delivered = 0
        self.checks = 0
        self.snapshot_digests: dict = {}        # index -> (state digest, member, what it came from)
        self._snapshot_points: list = []        # sorted keys of snapshot_digests
        self.snapshots_checked = 0
        self.replays_checked = 0
        self.restores_checked = 0

    # ------------------------------------------------------------------ reporting
    def fail(self, message: str) -> None:
        text = f"{self._describe()}: invariant broken: {message}"
        self.violations.append(text)
        raise InvariantViolation(text)

    def raise_if_violated(self) -> None:
        if self.violations:
            raise InvariantViolation(self.violations[0])

    # ------------------------------------------------------------------ hooks called by the driver
    def on_start(self, member) -> None:
        if not self.enabled:
            return
        core = member.core
        m = member.member_id
        if core.term < self.max_term.get(m, 0):
            self.fail(f"member {m} restarted in term {core.term} after reaching term {self.max_term[m]}")
        self.member_commit[m] = core.commit_index
        self._watch_services(member)

    def on_wiped(self, member_id: int, old_disk=None) -> None:
        """The member's disk was replaced by an empty one (an operator's action). What the old
        disk held still counts as durable on it (the operator took that copy, and a leader may
        still count the acknowledgement it gave): losing such an entry shows as leader
        completeness or a commit that changes, not here."""
        self.max_term.pop(member_id, None)
        self.member_commit.pop(member_id, None)
        if old_disk is not None:
            self.wiped_disks[member_id] = old_disk
        # its votes went with its disk: it may vote again in a term it voted in (a candidate
        # that counts both votes shows as two leaders of a term: election safety)
        for key in [k for k in self.votes if k[0] == member_id]:
            self.votes_forgotten[key] = self.votes.pop(key)

    def before_truncate(self, member, index: int) -> None:
        if not self.enabled:
            return
        committed = self.committed
        if index < len(committed):
            term = self._storages[member.member_id].written_term_at(index)
            if term is not None and term == committed[index][0]:
                self.fail(f"member {member.member_id} truncates its log from {index}, "
                          f"a committed entry (term {term}; commit is {len(committed) - 1})")

    def on_persisted(self, member, rd) -> None:
        if not self.enabled or rd.persist_hi <= rd.persist_lo:
            return
        log = member.core.log
        entries = self.entries
        lo = max(rd.persist_lo, log.first_index)     # nothing below the snapshot is persisted
        prev_term = log.term_at(lo - 1)
        for index in range(lo, rd.persist_hi):
            term = log.term_at(index)
            record = (prev_term, log.type_at(index), hash(bytes(log.payload_at(index))))
            known = entries.setdefault((index, term), record)
            if known != record:
                self.fail(f"log matching: member {member.member_id} holds a different entry at "
                          f"index {index} term {term} (prev term {prev_term} vs {known[0]})")
            prev_term = term

    def on_send(self, member, to: int, msg) -> None:
        if not self.enabled:
            return
        kind = type(msg)
        if kind is Vote:
            if msg.granted and not msg.pre:
                self._record_vote(member.member_id, msg.term, to)
        elif kind is RequestVote:
            self._record_vote(member.member_id, msg.term, member.member_id)

    def _record_vote(self, voter: int, term: int, candidate: int) -> None:
        if self.votes_forgotten and (voter, term) not in self.votes \
                and self.votes_forgotten.get((voter, term), candidate) != candidate:
            self.votes_again_after_wipe += 1
        known = self.votes.setdefault((voter, term), candidate)
        if known != candidate:
            self.fail(f"member {voter} voted twice in term {term}: for {known} and for {candidate}")

    def on_role_change(self, member, role) -> None:
        if self.enabled and role == Role.LEADER:
            self._check_leader(member)

    def on_apply(self, member, index: int) -> None:
        if not self.enabled:
            return
        core = member.core
        if index > core.commit_index:
            self.fail(f"member {member.member_id} applies index {index} beyond its commit {core.commit_index}")
        self._observe_commit(member)
        log = core.log
        if (log.term_at(index), hash(bytes(log.payload_at(index)))) != self.committed[index]:
            self.fail(f"state machine safety: member {member.member_id} applies at index {index} an entry "
                      "other than the committed one")

    def after_event(self, member) -> None:
        if not self.enabled:
            return
        self.checks += 1
        core = member.core
        m = member.member_id
        if core.term < self.max_term.get(m, 0):
            self.fail(f"member {m}'s term went back from {self.max_term[m]} to {core.term}")
        self.max_term[m] = core.term
        self._check_compaction(member)
        self._observe_commit(member)
        if core.role == Role.LEADER:
            self._check_leader(member)
        self.check_commit_durable()

    # ------------------------------------------------------------------ the checks
    def _check_leader(self, member) -> None:
        core = member.core
        m = member.member_id
        known = self.leader_of_term.setdefault(core.term, m)
        if known != m:
            self.fail(f"election safety: members {known} and {m} both lead term {core.term}")
        if known == m and not getattr(member, "_completeness_checked", None) == core.term:
            member._completeness_checked = core.term
            commit = len(self.committed) - 1
            log = core.log
            if commit > log.last_index or (commit > log.base_index
                                          and log.term_at(commit) != self.committed[commit][0]):
                self.fail(f"leader completeness: leader {m} of term {core.term} lacks committed entry {commit}")

    def _observe_commit(self, member) -> None:
        core = member.core
        m = member.member_id
        seen = self.member_commit.get(m, 0)
        commit = core.commit_index
        if commit < seen:
            self.fail(f"member {m}'s commit index went back from {seen} to {commit}")
        if commit == seen:
            return
        log = core.log
        if core.role == Role.LEADER and commit > log.base_index and log.term_at(commit) != core.term:
            self.fail(f"figure 8: leader {m} of term {core.term} advanced its commit to {commit}, "
                      f"an entry of term {log.term_at(commit)}, by counting replicas")
        committed = self.committed
        for index in range(max(seen + 1, log.first_index), commit + 1):
            record = (log.term_at(index), hash(bytes(log.payload_at(index))))
            if index < len(committed):
                if committed[index] != record:
                    self.fail(f"member {m} committed index {index} with term {record[0]}, but term "
                              f"{committed[index][0]} was committed there before")
            elif index == len(committed):
                committed.append(record)
            else:
                self.fail(f"member {m} committed {index} past a gap in the committed log")
        self.member_commit[m] = commit

    def check_commit_durable(self) -> None:
        commit = len(self.committed) - 1
        if commit == 0:
            return
        term = self.committed[commit][0]
        wiped = self.wiped_disks
        holders = sum(1 for m, s in self._storages.items()
                      if s.durably_holds(commit, term) or (wiped and m in wiped and wiped[m].durably_holds(commit, term)))
        if holders < self._quorum:
            self.fail(f"committed entry {commit} (term {term}) is durable on only {holders} members, "
                      f"fewer than a quorum of {self._quorum}")

    # ------------------------------------------------------------------ snapshots
    def snapshot_points(self, lo: int, hi: int) -> list:
        """Indexes in [lo, hi) at which some member took a snapshot (a member applying that
        range stops at each to compare its replayed state)."""
        points = self._snapshot_points
        if not self.enabled or not points or points[-1] < lo:
            return []
        return points[bisect.bisect_left(points, lo):bisect.bisect_left(points, hi)]

    def _record_snapshot(self, member, index: int, digest: bytes, what: str) -> None:
        known = self.snapshot_digests.get(index)
        if known is None:
            self.snapshot_digests[index] = (digest, member.member_id, what)
            bisect.insort(self._snapshot_points, index)
        elif known[0] != digest:
            self.fail(f"snapshot consistency: {what} of member {member.member_id} at index {index} "
                      f"differs from the {known[2]} of member {known[1]} there")

    def _check_compaction(self, member) -> None:
        core = member.core
        base = core.log.base_index
        if base > core.applied_index or base > core.commit_index:
            self.fail(f"member {member.member_id} compacted its log to {base}, beyond its applied "
                      f"index {core.applied_index} / commit index {core.commit_index}")

    def on_snapshot(self, member, info) -> None:
        """A member recorded a snapshot (and compacted): its state must equal every other
        snapshot and every replay of the log at that index."""
        if not self.enabled:
            return
        self._check_compaction(member)
        archive = member.disk.archive
        if not archive.fs.exists(info.path):
            return          # recorded after a newer one was installed, and deleted at once
        self.snapshots_checked += 1
        index, digest = file_digest(archive, info)
        if index != info.index:
            self.fail(f"member {member.member_id}'s snapshot recorded at {info.index} holds index {index}")
        self._record_snapshot(member, index, digest, "snapshot")

    def on_state_at(self, member, index: int) -> None:
        """``member`` has just applied the log up to ``index``, where a snapshot was taken."""
        if not self.enabled:
            return
        self.replays_checked += 1
        self._record_snapshot(member, index, live_digest(member.module), "state replayed to that index")

    def on_restored(self, member, info) -> None:
        """A member's state was replaced by a snapshot (recovery or install): the restored state
        must serialise to exactly what the snapshot holds."""
        if not self.enabled:
            return
        self.restores_checked += 1
        index, digest = file_digest(member.disk.archive, info)
        self._record_snapshot(member, index, digest, "snapshot")
        module = member.module
        if module.applied_index != index:
            self.fail(f"member {member.member_id} restored the snapshot at {index} but its module "
                      f"applied index is {module.applied_index}")
        if live_digest(module) != digest:
            self.fail(f"snapshot consistency: member {member.member_id} restored the snapshot at "
                      f"index {index} into a state other than the snapshot's")
        member.delivered_seq = {s.session_id: s.last_applied_seq for s in module.sessions}
        member.open_sessions = {s.session_id for s in module.sessions}

    # ------------------------------------------------------------------ service level
    def _watch_services(self, member) -> None:
        """Record every log-ordered service callback of this incarnation with its log index."""
        container = member.module.container
        invoke = container.invoke
        calls: list = []
        member.service_calls = calls
        member.delivered_seq = {}             # session id -> last seq delivered (this incarnation)
        member.open_sessions = set()          # session ids open in its services (this incarnation)

        def recording_invoke(service_id, callback, *args):
            summary = _SUMMARIES.get(callback)
            if summary is not None:
                calls.append((container.current_index, service_id, callback, summary(args)))
            return invoke(service_id, callback, *args)
        container.invoke = recording_invoke

    def after_apply(self, member, lo: int, hi: int) -> None:
        """Entries [lo, hi) were applied by ``member``'s module: compare its service calls."""
        calls = getattr(member, "service_calls", None)
        if calls is None:
            return
        if not self.enabled:
            calls.clear()
            return
        by_index: dict = {}
        for call in calls:
            by_index.setdefault(call[0], []).append(call[1:])
        calls.clear()
        known_calls = self.service_calls_at
        m = member.member_id
        for index in range(lo, hi):
            made = tuple(by_index.pop(index, ()))
            known = known_calls.setdefault(index, made)
            if known != made:
                self.fail(f"members diverge at index {index}: member {m} made service calls {made}, "
                          f"another member made {known}")
            delivered = False
            for service_id, callback, summary in made:
                if callback == "on_session_message" and summary[0] is not None:
                    self._check_exactly_once(member, index, service_id, summary)
                    delivered = True
            if not made:
                self._check_refused_placeholder(member, index)
            if not delivered:
                self._check_not_lost(member, index)
            for _service_id, callback, summary in made:
                if callback == "on_session_open":
                    member.open_sessions.add(summary[0])
                elif callback == "on_session_close":
                    member.open_sessions.discard(summary[0])
        if by_index:
            self.fail(f"member {m} called services at indexes {sorted(by_index)} outside the applied "
                      f"range [{lo}, {hi})")

    def _check_exactly_once(self, member, index: int, service_id: int, summary) -> None:
        m = member.member_id
        session_id, _timestamp, payload_hash = summary
        log = member.core.log
        if log.type_at(index) != E.SESSION_MESSAGE:
            self.fail(f"member {m} delivered a session message at index {index}, an entry of type "
                      f"{log.type_at(index)}")
        entry = E.decode_entry(E.SESSION_MESSAGE, log.payload_at(index))
        if (entry.session_id, entry.service_id, hash(bytes(entry.payload))) != (session_id, service_id, payload_hash):
            self.fail(f"member {m} delivered at index {index} a message other than the entry's "
                      f"(session {session_id} service {service_id})")
        last = member.delivered_seq.get(session_id, 0)
        if entry.seq != last + 1:
            what = "twice" if entry.seq <= last else f"after {last}, skipping some"
            self.fail(f"exactly-once: member {m} delivered message {entry.seq} of session {session_id} "
                      f"{what} (index {index})")
        member.delivered_seq[session_id] = entry.seq
        self.session_messages_delivered += 1

    def _check_not_lost(self, member, index: int) -> None:
        """A session message entry for an open session with a seq above the last delivered
        one must reach its service (exactly once: not zero times), unless it is a refused
        placeholder. Without this, a message consumed without delivery went unnoticed
        unless a later one of the same session followed it."""
        log = member.core.log
        if log.type_at(index) != E.SESSION_MESSAGE or getattr(member.module, "halted", False):
            return
        entry = E.decode_entry(E.SESSION_MESSAGE, log.payload_at(index))
        if entry.service_id == E.REJECTED_MESSAGE_SERVICE_ID or entry.session_id not in member.open_sessions \
                or not 0 <= entry.service_id < len(member.services):
            return
        last = member.delivered_seq.get(entry.session_id, 0)
        if entry.seq > last:
            self.fail(f"exactly-once: member {member.member_id} applied message {entry.seq} of session "
                      f"{entry.session_id} (index {index}, after {last}) without delivering it to "
                      f"service {entry.service_id}")

    def _check_refused_placeholder(self, member, index: int) -> None:
        """A message the leader refused (too large, unknown service) is logged as a placeholder
        that no service sees but that consumes its seq (a logged duplicate of an applied seq,
        which the module skips, is no delivery either)."""
        log = member.core.log
        if log.type_at(index) != E.SESSION_MESSAGE:
            return
        entry = E.decode_entry(E.SESSION_MESSAGE, log.payload_at(index))
        if entry.service_id != E.REJECTED_MESSAGE_SERVICE_ID:
            return
        last = member.delivered_seq.get(entry.session_id, 0)
        if entry.seq > last + 1:
            self.fail(f"exactly-once: member {member.member_id} consumed refused message "
                      f"{entry.seq} of session {entry.session_id} after {last}, skipping some "
                      f"(index {index})")
        if entry.seq == last + 1:
            member.delivered_seq[entry.session_id] = entry.seq


def _summary_session_message(args) -> tuple:
    session, timestamp_ns, message = args
    return (None if session is None else session.id, timestamp_ns, hash(bytes(message)))


_SUMMARIES = {
    "on_session_message": _summary_session_message,
    "on_timer_event": lambda args: (args[0], args[1]),
    "on_session_open": lambda args: (args[0].id, args[1]),
    "on_session_close": lambda args: (args[0].id, args[1], int(args[2])),
}
