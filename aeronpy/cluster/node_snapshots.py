"""The glue between ``ClusterNode`` and the snapshot machinery, kept out of node.py.

``ClusterNode`` calls into one ``NodeSnapshots`` at six points (each a one-line hook): at start
(restore the recovered snapshot), for InstallSnapshot messages, for AdminRequest ingress, after
each Ready (snapshot requests from the core, the automatic trigger), once per duty cycle
(finish snapshots, pump transfers, install a received snapshot) and at close.
"""
from __future__ import annotations

import struct
import time
from typing import Any, Callable, Optional

from aeronpy.cluster import entries as E
from aeronpy.cluster import protocol as P
from aeronpy.cluster.snapshot_transfer import (CHUNK_BYTES, SnapshotReceiver, SnapshotSender,
                                               install_snapshot)
from aeronpy.cluster.snapshotting import (Snapshotter, load_recovered_snapshot, recorded_snapshots)
from aeronpy.core.messages import InstallSnapshot, InstallSnapshotResponse, out_of_range
from aeronpy.service import Role

TRANSFER_MESSAGES = (InstallSnapshot, InstallSnapshotResponse)

# AdminRequest.request_type / AdminResponse.code
ADMIN_SNAPSHOT = 1
BACKUP_QUERY = 16
BACKUP_CHUNK = 17
ADMIN_OK = 0
ADMIN_NOT_LEADER = 1
ADMIN_ERROR = 2
_I64 = struct.Struct("<q")
RETRY_AFTER_NS = 100_000_000      # after a failed transfer, wait this long before the next
_SNAPSHOT_ANSWERS_KEPT = 64     # answers kept for re-sent snapshot requests (same correlation id)


def not_leader_answer(core: Any, module: Any) -> tuple:
    """An admin request's answer from a member that does not lead: the leader's ingress
    endpoint (empty when none is known), which the tool asks next."""
    leader = core.leader_id
    endpoint = module.config.members.get(leader, "") if leader is not None else ""
    return ADMIN_NOT_LEADER, endpoint.encode()


class NodeSnapshots:
    def __init__(self, node: Any, threaded: bool = True, *, jobs: Any = None,
                 clock: Optional[Callable[[], int]] = None, chunk_bytes: int = CHUNK_BYTES):
        """``jobs``/``clock``/``chunk_bytes``: injected by the simulator (an executor on its
        event queue, virtual time, small chunks); a node uses the defaults."""
        self.node = node
        self.core, self.module, self.archive, self.log = node.core, node.module, node.archive, node.log
        config = node.config
        self.threaded = threaded
        self.chunk_bytes = chunk_bytes
        self.snapshotter = Snapshotter(module=self.module, core=self.core, archive=self.archive,
                                       snapshot_log_bytes=config.snapshot_log_bytes,
                                       snapshots_to_keep=config.snapshots_to_keep,
                                       threaded=threaded, log=self.log,
                                       clock=clock or time.monotonic_ns, jobs=jobs)
        self.jobs = self.snapshotter._jobs
        self.receiver = SnapshotReceiver(self)
        self.senders: dict = {}
        self._retry_at: dict = {}           # member -> earliest time of the next attempt (ns)
        self._deferred: dict = {}           # member -> (index, term) asked for during the wait
        self.transfers_sent = 0
        self.transfers_failed = 0
        self._snapshot_answers: dict = {}
        self.module.cluster_action_listeners.append(self.snapshotter.on_cluster_action)
        # a failed snapshot (disk full, say) goes to errors.log, where operators look: the
        # node carries on (the log and the older snapshot still hold the state)
        self.snapshotter.failure_listeners.append(self._record_failed_snapshot)

    # ------------------------------------------------------------------ start
    def open_recovered(self, recovered: Any) -> Optional[list]:
        # snapshots recovery skipped (bad checksum) never count for retention: one of them
        # could become the compaction point and be sent to a follower (found by the simulator)
        skipped = {(s.index, s.term) for s in getattr(recovered, "skipped_snapshots", ())}
        in_use = recovered.snapshot.index if recovered.snapshot is not None else 0
        self.snapshotter.adopt_recovered([s for s in recorded_snapshots(self.archive)
                                          if (s.index, s.term) not in skipped], in_use)
        if recovered.snapshot is not None:
            self.snapshotter.last_snapshot_index = max(self.snapshotter.last_snapshot_index,
                                                       recovered.snapshot.index)
        return load_recovered_snapshot(self.module, self.archive, recovered, self.log)

    # ------------------------------------------------------------------ consensus messages
    def on_transfer_message(self, peer_id: int, msg: Any, now_ns: int) -> None:
        core = self.core
        if out_of_range(msg):
            core.counters_add("dropped_out_of_range")
            return
        if msg.term > core.term:
            core.step(peer_id, msg, now_ns)          # adopts the term (and the leader); drops it
        if msg.term != core.term:                    # stale, or not adopted (unknown sender)
            if type(msg) is InstallSnapshot and msg.term < core.term:
                self._send(peer_id, InstallSnapshotResponse(core.term, msg.snapshot_index, 0, False))
            return
        if type(msg) is InstallSnapshot:
            response = self.receiver.on_chunk(peer_id, msg)
            if response is not None:
                self._send(peer_id, response)
        else:
            sender = self.senders.get(peer_id)
            if sender is not None and core.role == Role.LEADER:
                sender.on_response(msg, now_ns)

    def _send(self, peer_id: int, msg: Any) -> int:
        return self.node.consensus.send(peer_id, self.node._encode(msg))

    # ------------------------------------------------------------------ after each Ready
    def on_snapshot_requests(self, requests, now_ns: int) -> None:
        for member_id, index, term in requests:
            old = self.senders.pop(member_id, None)
            if old is not None:
                old.close()
            if now_ns < self._retry_at.get(member_id, 0):
                self._deferred[member_id] = (index, term)   # the last attempt failed: wait
                continue
            self._start_transfer(member_id, index, term, now_ns)

    def _start_transfer(self, member_id: int, index: int, term: int, now_ns: int) -> None:
        """A failed attempt is retried after RETRY_AFTER_NS, not at once: the core asks again as
        soon as it hears of the failure, and a transfer failing fast (a damaged file) would
        otherwise restart every duty cycle and flood the follower (found by the simulator)."""
        info = self._snapshot_to_send(index, term)
        if info is None or self.core.role != Role.LEADER:
            self.log.warning("member %d needs snapshot %d/%d, which this node does not hold",
                             member_id, index, term)
            self._retry_at[member_id] = now_ns + RETRY_AFTER_NS
            self.core.report_snapshot(member_id, False)
            return
        self.log.info("sending snapshot at index %d (%d bytes) to member %d", index, info.size,
                      member_id)
        self.senders[member_id] = SnapshotSender(member_id, self.core.term, info, self.archive.fs,
                                                 self._send, now_ns, self.threaded,
                                                 chunk_bytes=self.chunk_bytes)

    def _snapshot_to_send(self, index: int, term: int) -> Any:
        """The newest kept snapshot at or after the one the core asked for (its log base), so
        the follower replays only the entries after it. Safe: the leader's log holds every
        entry after its base, a kept snapshot is recorded (fsynced) and at or below the commit
        index; the core counts the follower from its base, and the follower's answer to the
        next append (below its own base: "matches up to my commit") moves it up at once."""
        kept = self.snapshotter.kept
        newest = kept[-1] if kept else None          # kept is in index order
        if newest is not None and newest.index >= index and newest.index <= self.core.commit_index:
            return newest
        return next((s for s in kept if s.index == index and s.term == term), None)

    def after_apply(self) -> None:
        self.snapshotter.after_apply()

    # ------------------------------------------------------------------ each duty cycle
    def can_install(self) -> bool:
        # no write waiting for its sync (nor messages held for it): a follower that needs a
        # snapshot gets no appends meanwhile, so this comes within one sync
        return not self.node._unsynced_hi

    def install(self, info: Any) -> None:
        install_snapshot(self.core, self.archive, self.module, info)
        snapshotter = self.snapshotter
        # the archive kept no log below the installed snapshot, so an older one can no longer
        # be recovered around: it must not count as a fallback (found by the simulator)
        for old in [k for k in snapshotter.kept if k.index < info.index]:
            snapshotter.kept.remove(old)
            snapshotter._delete(old)
        snapshotter.keep(info)
        snapshotter._compact()
        self.log.info("installed snapshot at index %d (%d bytes) from the leader", info.index, info.size)

    def keep_without_installing(self, info: Any) -> None:
        """A received snapshot the member no longer needs: retention only."""
        self.snapshotter.keep(info)
        self.snapshotter._compact()

    @property
    def busy(self) -> bool:
        """A snapshot is being written, received, sent or waits to be sent again: the node's
        duty cycle keeps polling (ClusterNode._idle_park_s)."""
        return not (self.snapshotter._inflight is None and self.receiver._committing is None
                    and not self.senders and not self._deferred)

    def do_work(self, now_ns: int) -> int:
        if (self.snapshotter._inflight is None and self.receiver._committing is None
                and not self.senders and not self._deferred):
            return 0       # nearly every cycle: nothing being written, received or sent
        work = self.snapshotter.poll()
        done = self.receiver.poll()
        if done is not None:
            self._send(*done)
            work += 1
        if self.senders:
            leading = self.core.role == Role.LEADER
            for member_id, sender in list(self.senders.items()):
                if leading and sender.term == self.core.term:
                    work += sender.do_work(now_ns)
                    if sender.done is None:
                        continue
                    self.transfers_sent += sender.done
                    self.transfers_failed += not sender.done
                    self.log.info("snapshot transfer to member %d %s after %.1f ms", member_id,
                                  "finished" if sender.done else "failed",
                                  (now_ns - sender.started_ns) / 1e6)
                    if not sender.done:
                        self._retry_at[member_id] = now_ns + RETRY_AFTER_NS
                        if sender.source_error is not None:
                            self._replace_damaged(sender.info, sender.source_error)
                    self.core.report_snapshot(member_id, bool(sender.done))
                sender.close()
                del self.senders[member_id]
        if self._deferred:
            for member_id, (index, term) in list(self._deferred.items()):
                if now_ns >= self._retry_at.get(member_id, 0):
                    del self._deferred[member_id]
                    self._start_transfer(member_id, index, term, now_ns)
                    work += 1
        return work

    def _replace_damaged(self, info: Any, error: BaseException) -> None:
        """The kept snapshot could not be read back intact: stop serving it and take a fresh
        one at the applied index, which becomes the compaction point the core asks for."""
        snapshotter = self.snapshotter
        self.log.warning("snapshot at index %d is damaged (%r): taking a new one", info.index, error)
        snapshotter.kept = [k for k in snapshotter.kept if k is not info]
        snapshotter.last_snapshot_index = max((k.index for k in snapshotter.kept), default=0)
        if snapshotter.kept:
            # the log may still start at the damaged one: start it at the oldest intact kept
            # snapshot now, which the core then asks for. On an idle member no fresh snapshot
            # is taken below (the applied index is the newest kept one's), and the core asked
            # for the damaged one again and again: a lagging follower never caught up
            snapshotter._compact()
        if not snapshotter.in_progress:
            snapshotter.take(self.module.applied_index, "replace a damaged snapshot")

    def _record_failed_snapshot(self, index: int, exc: BaseException) -> None:
        from aeronpy.cluster.nodefiles import describe_error, describe_traceback
        self.node._errors.record(f"snapshot failed: {describe_error(exc)}",
                                 detail=f"(first at index {index})\n{describe_traceback(exc)}")

    # ------------------------------------------------------------------ admin ingress
    def on_admin_request(self, client_ref: int, msg: Any) -> tuple:
        """(code, payload) answering an admitted snapshot or backup request."""
        kind = msg.request_type
        if kind == ADMIN_SNAPSHOT:
            # the tool re-sends a request it has no answer to yet: answer it again, never
            # propose a second snapshot for it
            key = (client_ref, msg.correlation_id)
            answer = self._snapshot_answers.get(key)
            if answer is None:
                answer = self._admin_snapshot()
                if answer[0] != ADMIN_NOT_LEADER:
                    if len(self._snapshot_answers) >= _SNAPSHOT_ANSWERS_KEPT:
                        del self._snapshot_answers[next(iter(self._snapshot_answers))]
                    self._snapshot_answers[key] = answer
            code, payload = answer
        elif kind in (BACKUP_QUERY, BACKUP_CHUNK):
            from aeronpy.cluster.backup import serve_backup_request
            try:
                code, payload = serve_backup_request(self, kind, bytes(msg.payload))
            except (ValueError, OSError, struct.error) as exc:   # struct.error: too short
                code, payload = ADMIN_ERROR, f"bad backup request: {exc}".encode()
            except Exception as exc:
                # a fault in serving it (an IndexError at an edge, say) fails this request,
                # never the member: the backup asks another member or again
                self.log.warning("backup request failed: %r", exc, exc_info=True)
                code, payload = ADMIN_ERROR, f"backup request failed: {exc!r}".encode()
        else:
            code, payload = ADMIN_ERROR, f"unknown admin request type {kind}".encode()
        return code, payload

    def _admin_snapshot(self) -> tuple:
        module = self.module
        if not module.is_leader:
            return not_leader_answer(self.core, module)
        index = module.propose_cluster_action(E.ACTION_SNAPSHOT, 0)
        if not index:
            return ADMIN_ERROR, b"the leader refused the proposal (handing over?)"
        return ADMIN_OK, _I64.pack(index)

    def close(self) -> None:
        for sender in self.senders.values():
            sender.close()
        self.senders.clear()
        self.receiver.abort()
        self.snapshotter.close()
