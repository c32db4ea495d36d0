"""The glue between ``ClusterNode`` and the snapshot machinery, kept out of node.py.

``ClusterNode`` calls into one ``NodeSnapshots`` at six points (each a one-line hook): at start
(restore the recovered snapshot), for InstallSnapshot messages, for AdminRequest ingress, after
each Ready (snapshot requests from the core, the automatic trigger), once per duty cycle
(finish snapshots, pump transfers, install a received snapshot) and at close.
"""
from __future__ import annotations

import struct
from typing import Any, Optional

from aeronpy.cluster import entries as E
from aeronpy.cluster import protocol as P
from aeronpy.cluster.snapshot_transfer import (SnapshotReceiver, SnapshotSender, install_snapshot)
from aeronpy.cluster.snapshotting import (Snapshotter, load_recovered_snapshot, recorded_snapshots)
from aeronpy.core.messages import InstallSnapshot, InstallSnapshotResponse
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
_SNAPSHOT_ANSWERS_KEPT = 64     # answers kept for re-sent snapshot requests (same correlation id)


class NodeSnapshots:
    def __init__(self, node: Any, threaded: bool = True):
        self.node = node
        self.core, self.module, self.archive, self.log = node.core, node.module, node.archive, node.log
        config = node.config
        self.threaded = threaded
        self.snapshotter = Snapshotter(module=self.module, core=self.core, archive=self.archive,
                                       snapshot_log_bytes=config.snapshot_log_bytes,
                                       snapshots_to_keep=config.snapshots_to_keep,
                                       threaded=threaded, log=self.log)
        self.jobs = self.snapshotter._jobs
        self.receiver = SnapshotReceiver(self)
        self.senders: dict = {}
        self.transfers_sent = 0
        self.transfers_failed = 0
        self._snapshot_answers: dict = {}
        self.module.cluster_action_listeners.append(self.snapshotter.on_cluster_action)

    # ------------------------------------------------------------------ start
    def open_recovered(self, recovered: Any) -> Optional[list]:
        self.snapshotter.adopt_recovered(recorded_snapshots(self.archive))
        if recovered.snapshot is not None:
            self.snapshotter.last_snapshot_index = max(self.snapshotter.last_snapshot_index,
                                                       recovered.snapshot.index)
        return load_recovered_snapshot(self.module, self.archive, recovered, self.log)

    # ------------------------------------------------------------------ consensus messages
    def on_transfer_message(self, peer_id: int, msg: Any, now_ns: int) -> None:
        core = self.core
        if msg.term > core.term:
            core.step(peer_id, msg, now_ns)          # adopts the term (and the leader); drops it
        if msg.term < core.term:
            if type(msg) is InstallSnapshot:
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
            info = next((s for s in self.snapshotter.kept if s.index == index and s.term == term), None)
            old = self.senders.pop(member_id, None)
            if old is not None:
                old.close()
            if info is None or self.core.role != Role.LEADER:
                self.log.warning("member %d needs snapshot %d/%d, which this node does not hold",
                                 member_id, index, term)
                self.core.report_snapshot(member_id, False)
                continue
            self.log.info("sending snapshot at index %d (%d bytes) to member %d", index, info.size,
                          member_id)
            self.senders[member_id] = SnapshotSender(member_id, self.core.term, info, self.archive.fs,
                                                     self._send, now_ns, self.threaded)

    def after_apply(self) -> None:
        self.snapshotter.after_apply()

    # ------------------------------------------------------------------ each duty cycle
    def can_install(self) -> bool:
        return self.node._pending is None

    def install(self, info: Any) -> None:
        install_snapshot(self.core, self.archive, self.module, info)
        snapshotter = self.snapshotter
        snapshotter.last_snapshot_index = max(snapshotter.last_snapshot_index, info.index)
        snapshotter.kept.append(info)
        snapshotter._compact()
        self.log.info("installed snapshot at index %d (%d bytes) from the leader", info.index, info.size)

    def do_work(self, now_ns: int) -> int:
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
                    self.core.report_snapshot(member_id, bool(sender.done))
                sender.close()
                del self.senders[member_id]
        return work

    # ------------------------------------------------------------------ admin ingress
    def on_admin_request(self, client_ref: int, msg: Any) -> None:
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
            except (ValueError, OSError) as exc:
                code, payload = ADMIN_ERROR, str(exc).encode()
        else:
            code, payload = ADMIN_ERROR, f"unknown admin request type {kind}".encode()
        response = P.AdminResponse(msg.correlation_id, kind, code, payload)
        self.node.ingress.send(client_ref, self.node._encode(response))

    def _admin_snapshot(self) -> tuple:
        module = self.module
        if not module.is_leader:
            leader = self.core.leader_id
            endpoint = module.config.members.get(leader, "") if leader is not None else ""
            return ADMIN_NOT_LEADER, endpoint.encode()
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
