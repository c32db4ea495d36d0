"""Log replication: the leader's side (progress, batching, commit) and the follower's side.

Leader: every follower gets AppendEntries in the same step (parallel, never one after the
other), each carrying everything waiting for it up to ``max_append_bytes`` (natural batching:
nothing waits to fill a batch). A rejection carries the follower's conflicting term and that
term's first index, so the leader skips a whole term per round trip. Commit counts replicas
only for entries of the leader's own term (Raft paper, figure 8).

Follower: truncate only from the first entry that *conflicts* (same index, other term), never
a matching one (a delayed or duplicated AppendEntries must not cut entries already
acknowledged); commit = min(leader's commit, last index verified against this leader).
"""
from __future__ import annotations

from struct import Struct

from aeronpy.core import config as _config
from aeronpy.core.messages import AppendEntries, AppendResponse, Heartbeat, HeartbeatResponse, TimeoutNow
from aeronpy.core.progress import PROBE, REPLICATE, SNAPSHOT, Progress
from aeronpy.core.quorum import quorum_index, quorum_size

_ENTRY_HEADER = Struct("<IHHq")   # payload_length, type, flags, term (interfaces.md 1.2)
ENTRY_HEADER_BYTES = _ENTRY_HEADER.size


class LeaderReplication:
    """Exists only while this member leads; dropped when it steps down."""

    __slots__ = ("core", "progress", "next_heartbeat_ns", "transfer_target", "transfer_deadline_ns",
                 "broadcast_pending", "tick_due_ns")

    def __init__(self, core, now_ns: int):
        self.core = core
        next_index = core.log.last_index + 1
        cfg = core.config
        self.progress = {m: Progress(m, next_index, now_ns, cfg.max_inflight_appends)
                         for m in cfg.voters if m != core.member_id}
        self.next_heartbeat_ns = now_ns + cfg.heartbeat_interval_ns
        self.transfer_target = None
        self.transfer_deadline_ns = 0
        self.broadcast_pending = False
        # No timer of on_tick can fire before this time: a tick earlier than it does nothing
        # and is skipped. Recomputed by every full on_tick; whatever could make a timer due
        # earlier (a first append in flight, a transfer) lowers it. 0: run the next tick.
        self.tick_due_ns = 0

    # ---------------------------------------------------------------- sending
    def broadcast(self) -> None:
        self.broadcast_pending = False
        for pr in self.progress.values():
            self.send_appends(pr)

    def send_appends(self, pr: Progress) -> None:
        core = self.core
        log = core.log
        last = log.last_index
        max_bytes = core.config.max_append_bytes
        while pr.can_send():
            if pr.next <= log.base_index:
                if not self._recently_active(pr):
                    # A snapshot sent now may go nowhere and then wait out its ack timeout.
                    # Probe instead; its heartbeat answer (proof of life) brings us back here.
                    if pr.mode != PROBE:
                        pr.become_probe(pr.next)
                    pr.probe_sent = True
                    return
                pr.become_snapshot(log.base_index)
                core.request_snapshot(pr.member_id, log.base_index, log.base_term)
                return
            if pr.mode == REPLICATE and pr.next > last:
                return
            prev = pr.next - 1
            if pr.next <= last:
                blob, count = log.pack(pr.next, last + 1, max_bytes)
            else:
                blob, count = b"", 0
            core.send(pr.member_id, AppendEntries(core.term, prev, log.term_at(prev), core.commit_index,
                                                  blob, count))
            pr.on_sent(prev + count)
            if pr.mode == REPLICATE and len(pr.inflight) == 1:
                self._retransmit_timer_started(pr)

    def _recently_active(self, pr: Progress) -> bool:
        """Heard from within a retransmit timeout (as etcd's RecentActive): worth a snapshot."""
        return self.core.now_ns - pr.last_heard_ns <= self.core.config.retransmit_timeout_ns

    def _retransmit_timer_started(self, pr: Progress) -> None:
        """``pr`` has an append in flight after none: its retransmit timer starts now. Counting
        from the last ack instead (long past after a quiet spell) took the first append of
        every burst for lost on the next tick: a needless probe re-sent it, and the rest of
        the burst waited in PROBE for that probe's answer. The next tick may be due sooner."""
        now = self.core.now_ns
        if pr.last_ack_ns < now:
            pr.last_ack_ns = now
        due = pr.last_ack_ns + self.core.config.retransmit_timeout_ns
        if due < self.tick_due_ns:
            self.tick_due_ns = due

    def heartbeat(self) -> None:
        core = self.core
        term, commit = core.term, core.commit_index
        for pr in self.progress.values():
            core.send(pr.member_id, Heartbeat(term, pr.match if pr.match < commit else commit))

    # ---------------------------------------------------------------- timers
    def on_tick(self, now_ns: int) -> bool:
        """Heartbeats, retransmission and check-quorum; False if leadership was lost."""
        core = self.core
        cfg = core.config
        if cfg.check_quorum and not self._quorum_active(now_ns):
            core.counters_add("check_quorum_step_down")
            core.become_follower(core.term, None, now_ns, "check quorum: no quorum heard from")
            return False
        if self.transfer_target is not None and now_ns >= self.transfer_deadline_ns:
            core.counters_add("transfer_aborted")
            self.transfer_target = None
        retransmit_ns = cfg.retransmit_timeout_ns
        for pr in self.progress.values():
            if pr.mode == REPLICATE and pr.inflight and now_ns - pr.last_ack_ns >= retransmit_ns:
                core.counters_add("retransmit_probe")
                pr.become_probe(pr.match + 1)
                self.send_appends(pr)
        if now_ns >= self.next_heartbeat_ns:
            self.next_heartbeat_ns = now_ns + cfg.heartbeat_interval_ns
            self.heartbeat()
        self.tick_due_ns = self._next_due_ns()
        return True

    def _next_due_ns(self) -> int:
        """The earliest time a timer of on_tick can fire, given the state now. Later changes
        only move it later (acks and replies are heard later), except the ones that lower
        ``tick_due_ns`` themselves (send_appends, start_transfer)."""
        cfg = self.core.config
        due = self.next_heartbeat_ns
        if self.transfer_target is not None and self.transfer_deadline_ns < due:
            due = self.transfer_deadline_ns
        retransmit_ns = cfg.retransmit_timeout_ns
        heard = []
        for pr in self.progress.values():
            if pr.mode == REPLICATE and pr.inflight:
                pr_due = pr.last_ack_ns + retransmit_ns
                if pr_due < due:
                    due = pr_due
            heard.append(pr.last_heard_ns)
        if cfg.check_quorum:
            # active peers needed besides us; quorum is lost when the needed-th most recent
            # of them falls silent for the heartbeat timeout
            needed = quorum_size(len(cfg.voters)) - 1
            if needed > 0:
                heard.sort(reverse=True)
                lost = heard[needed - 1] + cfg.leader_heartbeat_timeout_ns if needed <= len(heard) else 0
                if lost < due:
                    due = lost
        return due

    def _quorum_active(self, now_ns: int) -> bool:
        timeout = self.core.config.leader_heartbeat_timeout_ns
        active = 1
        for pr in self.progress.values():
            if now_ns - pr.last_heard_ns < timeout:
                active += 1
        return active >= quorum_size(len(self.core.config.voters))

    # ---------------------------------------------------------------- responses
    def on_append_response(self, from_id: int, msg, now_ns: int) -> None:
        core = self.core
        if self._impossible_response(msg):
            core.counters_add("invalid_append_response")
            return
        pr = self.progress[from_id]
        pr.last_heard_ns = now_ns
        if msg.success:
            advanced = pr.on_ack(msg.match_index, now_ns)
            if pr.mode == PROBE and msg.match_index >= pr.next - 1:
                pr.become_replicate(now_ns)
            if advanced:
                self.maybe_commit()
                if self.transfer_target == from_id and pr.match == core.log.last_index:
                    core.send(from_id, TimeoutNow(core.term))
            self.send_appends(pr)
            return
        # Rejection; msg.match_index is the prev_index the follower could not match.
        rejected = msg.match_index
        if (pr.mode == REPLICATE and rejected <= pr.match) or (pr.mode == PROBE and rejected != pr.next - 1) \
                or pr.mode == SNAPSHOT:
            core.counters_add("stale_append_reject")
            return
        if msg.conflict_term == 0:
            next_index = msg.conflict_index
            if next_index <= pr.match:
                # The follower lost entries it had acknowledged (it ran without syncing and lost
                # power): only liveness can be restored now, so believe it.
                core.counters_add("follower_lost_acknowledged_entries")
                pr.match = next_index - 1
        else:
            last_of_term = core.log.last_index_of_term(msg.conflict_term)
            next_index = last_of_term + 1 if last_of_term > 0 else msg.conflict_index
        next_index = min(next_index, rejected)
        pr.become_probe(next_index)
        self.send_appends(pr)

    def _impossible_response(self, msg) -> bool:
        """No follower of this leader can say this: it acknowledges or refuses an index this
        leader never sent (its log only grows in its term), or names no valid conflict. From a
        corrupt or buggy peer it is dropped and counted, so it cannot move the follower's
        progress past the log (that raised IndexError and stopped the node; found by fuzzing
        the core with peer messages, tests/core/test_peer_input_fuzz.py)."""
        return msg.match_index > self.core.log.last_index or (
            not msg.success and (msg.conflict_index < 1 or msg.conflict_term < 0))

    def on_heartbeat_response(self, from_id: int, msg, now_ns: int) -> None:
        pr = self.progress[from_id]
        pr.last_heard_ns = now_ns
        if msg.last_index < pr.match and pr.mode != SNAPSHOT:
            # The follower may hold less than it acknowledged (restarted with an empty or cut
            # data dir, or lost power under file_sync none), or this reply is older than its
            # last acknowledgement (a transport that reorders). A probe at pr.match tells them
            # apart: refused, the reject path counts follower_lost_acknowledged_entries and
            # backs up; accepted, nothing changes. Before, an idle cluster left an emptied
            # follower empty until the next client entry was rejected.
            pr.become_probe(pr.match + 1)
            self.send_appends(pr)
            return
        if pr.mode == PROBE and pr.match < self.core.log.last_index:
            pr.probe_sent = False
            self.send_appends(pr)

    def on_snapshot_reported(self, member_id: int, success: bool) -> None:
        pr = self.progress.get(member_id)
        if pr is None or pr.mode != SNAPSHOT:
            return
        if success and pr.pending_snapshot_index > pr.match:
            pr.match = pr.pending_snapshot_index
        pr.become_probe(pr.pending_snapshot_index + 1 if success else pr.match + 1)
        self.send_appends(pr)

    # ---------------------------------------------------------------- commit
    def maybe_commit(self) -> None:
        core = self.core
        matches = [pr.match for pr in self.progress.values()]
        matches.append(core.persisted_index)
        index = quorum_index(matches)
        if index <= core.commit_index:
            return
        if core.log.term_at(index) != core.term and "commit_old_term_by_counting" not in _config._BUGS:
            return  # figure 8: an earlier term's entry commits only under one of this term
        core.set_commit(index)

    # ---------------------------------------------------------------- leadership transfer
    def start_transfer(self, target: int, now_ns: int) -> bool:
        pr = self.progress.get(target)
        if pr is None:
            return False
        core = self.core
        self.transfer_target = target
        self.transfer_deadline_ns = now_ns + core.config.election_timeout_ns
        if self.transfer_deadline_ns < self.tick_due_ns:
            self.tick_due_ns = self.transfer_deadline_ns
        if pr.match == core.log.last_index:
            core.send(target, TimeoutNow(core.term))
        else:
            if pr.mode == REPLICATE:
                pr.become_probe(pr.match + 1)   # do not wait for a retransmit timeout
            self.send_appends(pr)
        return True

    def best_transfer_target(self):
        """The most up-to-date follower among those heard from recently (within a retransmit
        timeout, as for a snapshot); any follower only when none is. Matching alone picked a
        crashed follower on an idle cluster (every match equal, the first one won): the
        TimeoutNow went nowhere, proposals were refused until the transfer aborted an election
        timeout later, and a closing leader then left the cluster without one."""
        best = best_active = None
        for pr in self.progress.values():
            if best is None or pr.match > best.match:
                best = pr
            if self._recently_active(pr) and (best_active is None or pr.match > best_active.match):
                best_active = pr
        best = best_active or best
        return None if best is None else best.member_id


# -------------------------------------------------------------------- follower side
def follower_on_append(core, from_id: int, msg) -> None:
    log = core.log
    prev = msg.prev_index
    if prev < log.base_index:
        # Everything up to our snapshot is committed, hence matches the leader's log.
        core.send(from_id, AppendResponse(core.term, True, core.commit_index))
        return
    last = log.last_index
    if prev > last:
        core.counters_add("append_reject_gap")
        core.send(from_id, AppendResponse(core.term, False, prev, last + 1, 0))
        return
    local_term = log.term_at(prev)
    if local_term != msg.prev_term:
        core.counters_add("append_reject_conflict")
        first = max(log.first_index_of_term(local_term), log.base_index + 1)
        core.send(from_id, AppendResponse(core.term, False, prev, first, local_term))
        return
    count = msg.count
    new_last = prev + count
    if count:
        if "truncate_matching_entries" in _config._BUGS:
            if prev < last:
                core.truncate_log(prev + 1)
            log.append_packed(msg.entries, count)
        elif not _append_new_entries(core, msg.entries, prev, count):
            return
    if new_last > core.verified_index:
        core.verified_index = new_last
    commit = msg.commit_index if msg.commit_index < core.verified_index else core.verified_index
    if commit > core.commit_index:
        core.set_commit(commit)
    core.send(from_id, AppendResponse(core.term, True, new_last))


def _append_new_entries(core, entries, prev: int, count: int) -> bool:
    """Skip the entries we already hold, truncate at the first conflict, append the rest."""
    log = core.log
    last = log.last_index
    if prev == last:
        log.append_packed(entries, count)
        return True
    view = memoryview(entries)
    offset = 0
    index = prev + 1
    skipped = 0
    unpack_from = _ENTRY_HEADER.unpack_from
    while skipped < count and index <= last:
        payload_length, _type, _flags, term = unpack_from(view, offset)
        if log.term_at(index) != term:
            if index <= core.commit_index:
                core.counters_add("conflict_below_commit_refused")
                return False
            core.truncate_log(index)
            break
        offset += ENTRY_HEADER_BYTES + payload_length
        index += 1
        skipped += 1
    if skipped < count:
        log.append_packed(view[offset:], count - skipped)
    return True


def follower_on_heartbeat(core, from_id: int, msg) -> None:
    verified = core.verified_index
    commit = msg.commit_index if msg.commit_index < verified else verified
    if commit > core.commit_index:
        core.set_commit(commit)
    core.send(from_id, HeartbeatResponse(core.term, core.log.last_index))
