"""Snapshots in the simulator, through the node's own machinery (docs/snapshots.md, "Hooks the
simulator needs").

A simulated member runs the real ``NodeSnapshots`` (``Snapshotter``, ``SnapshotSender``,
``SnapshotReceiver``, ``install_snapshot``, ``load_recovered_snapshot``) with three things
injected instead of what a node uses:

- ``SimJobs`` instead of the snapshot thread: each background job (write + fsync + record a
  snapshot, commit a received one) runs as a later event on the simulator's queue, so a crash
  can fall between serialising a snapshot and recording it, and the run stays single-threaded
  and exact (the same seed gives the same trace). ``write_delay_ms=0`` runs jobs inline.
- non-threaded chunk readers, small chunks, virtual time;
- a ``_send`` that puts InstallSnapshot / InstallSnapshotResponse on the simulated network
  (so chunks are dropped, duplicated, delayed and reordered like any message).

``SimNodeSnapshots.install`` additionally tells the invariant checker and the disk's shadow.
Deliberate snapshot bugs for negative controls live in :data:`SNAPSHOT_BUGS`.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import logging
from concurrent.futures import Future
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Callable

from aeronpy.cluster import snapshotting
from aeronpy.cluster.module import ConsensusModule
from aeronpy.cluster.node_snapshots import NodeSnapshots
from aeronpy.cluster.snapshotting import read_snapshot_file

MS = 1_000_000
# The members' snapshot logs (warnings included) stay quiet unless a test or user attaches a
# handler: the swarm replays thousands of runs in which they are expected.
logging.getLogger("aeronpy.sim").addHandler(logging.NullHandler())


@dataclass(frozen=True)
class SimSnapshotOptions:
    """SimCluster's snapshot settings (0 bytes: no automatic snapshots; admin ones still work)."""
    snapshot_log_bytes: int = 0
    snapshots_to_keep: int = 1
    chunk_bytes: int = 512          # small, so a transfer is many chunks on the faulty network
    write_delay_ms: float = 2.0     # background job latency in simulated time; 0 = inline
    state_digests: bool = False     # members compare snapshot checksums through the log, as
    #                                 nodes do (off by default: the extra entries would change the
    #                                 course of the seeds earlier tests pin)

    def __post_init__(self):
        if self.snapshot_log_bytes < 0 or self.snapshots_to_keep < 1 or self.chunk_bytes < 1 \
                or self.write_delay_ms < 0:
            raise ValueError(f"bad snapshot options: {self}")


class SimJobs:
    """The snapshot executor of one member incarnation: ``submit`` returns a Future that the
    simulator completes ``delay_ns`` later, unless the incarnation died first (the job died with
    the process: nothing of it reaches the disk)."""

    def __init__(self, schedule_in: Callable, delay_ns: int, is_current: Callable[[], bool],
                 note: Callable):
        self._schedule_in = schedule_in
        self.delay_ns = delay_ns          # tests may lengthen one member's jobs
        self._is_current = is_current
        self._note = note
        self.submitted = 0
        self.completed = 0

    def submit(self, fn: Callable, *args) -> Future:
        future: Future = Future()
        self.submitted += 1
        if self.delay_ns <= 0:
            self._run(future, fn, args)
        else:
            self._schedule_in(self.delay_ns, self._run, future, fn, args)
        return future

    def _run(self, future: Future, fn: Callable, args: tuple) -> None:
        if not self._is_current():
            return
        self._note("job", getattr(fn, "__name__", "job"))
        self.completed += 1
        try:
            future.set_result(fn(*args))
        except BaseException as exc:   # handed to the poller, as the threaded executor does
            future.set_exception(exc)

    def close(self, timeout_s: float | None = None) -> bool:
        return True


class SimNodeSnapshots(NodeSnapshots):
    """``NodeSnapshots`` of a simulated member (see the module docstring)."""

    def __init__(self, member, options: SimSnapshotOptions, jobs: SimJobs, clock: Callable[[], int]):
        self.member = member
        view = SimpleNamespace(
            core=member.core, module=member.module, archive=member.disk.archive,
            log=logging.getLogger(f"aeronpy.sim.member{member.member_id}"), _pending=None,
            config=SimpleNamespace(snapshot_log_bytes=options.snapshot_log_bytes,
                                   snapshots_to_keep=options.snapshots_to_keep))
        super().__init__(view, threaded=False, jobs=jobs, clock=clock, chunk_bytes=options.chunk_bytes)
        self.snapshotter.listeners.append(member.on_snapshot_recorded)

    def _send(self, peer_id: int, msg) -> int:
        self.member.send_transfer(peer_id, msg)
        return 1

    def can_install(self) -> bool:
        # as the node: not while writes this member led with are still syncing
        return not self.member._unsynced_hi

    def install(self, info) -> None:
        super().install(info)
        self.member.on_snapshot_installed(info)


# ---------------------------------------------------------------------------------- digests
def snapshot_digest(cluster_time_ns: int, module_state, service_streams) -> bytes:
    """What a snapshot says the replicated state is (module state, service streams, time)."""
    h = hashlib.blake2b(digest_size=16)
    h.update(cluster_time_ns.to_bytes(8, "little", signed=True))
    h.update(len(module_state).to_bytes(8, "little"))
    h.update(module_state)
    for stream in service_streams:
        h.update(memoryview(stream).nbytes.to_bytes(8, "little"))
        h.update(stream)
    return h.digest()


def file_digest(archive, info) -> tuple:
    """(index, digest) of a recorded snapshot file, parsed and verified by the node's reader."""
    contents = read_snapshot_file(archive, info)
    return contents.index, snapshot_digest(contents.cluster_time_ns, contents.module_state,
                                           contents.service_streams)


def live_digest(module) -> bytes:
    """The digest a snapshot taken now would have: serialise the live state as a snapshot does."""
    buffers = [io.BytesIO() for _ in range(len(module.container))]
    module.take_service_snapshots(buffers)
    return snapshot_digest(module.cluster_time_ns, module.snapshot_state(),
                           [b.getbuffer() for b in buffers])


# ---------------------------------------------------------------------------------- negative controls
def _restore_without_module_state(monkeypatch_set) -> None:
    """A member restores its services from a snapshot but forgets the consensus module's part
    (sessions, timers, cluster time): it stays at an empty module with the snapshot's index."""
    def restore_state(self, data):
        self.applied_index = self.core.applied_index
    monkeypatch_set(ConsensusModule, "restore_state", restore_state)


def _snapshot_labelled_one_late(monkeypatch_set) -> None:
    """The snapshot of the state at index i is recorded as if taken at i + 1 (when the log
    already holds i + 1): recovery from it skips entry i + 1."""
    original = snapshotting.write_snapshot_file

    def write(archive, index, term, timestamp_ns, parts):
        if archive.written_index > index:
            header = snapshotting._HEADER.unpack(bytes(parts[0]))
            index, term = index + 1, archive.read(index + 1)[0]
            parts = [snapshotting._HEADER.pack(header[0], header[1], header[2], index, term,
                                               header[5])] + list(parts[1:])
        return original(archive, index, term, timestamp_ns, parts)
    monkeypatch_set(snapshotting, "write_snapshot_file", write)


def _compact_above_applied(monkeypatch_set) -> None:
    """After a snapshot, the in-memory log is also dropped past what was applied (as if the
    compaction point were taken from the commit index or the log's end instead)."""
    original = snapshotting.Snapshotter._compact

    def compact(self):
        original(self)
        core = self.core
        log = core.log
        if log.last_index > core.applied_index:
            index = core.applied_index + 1
            log.drop_prefix(index, log.term_at(index))
    monkeypatch_set(snapshotting.Snapshotter, "_compact", compact)


SNAPSHOT_BUGS = {
    "restore_without_module_state": _restore_without_module_state,
    "snapshot_labelled_one_late": _snapshot_labelled_one_late,
    "compact_above_applied": _compact_above_applied,
}


@contextlib.contextmanager
def snapshot_bugs(names):
    """Switch on deliberate snapshot bugs for the duration (tests and ``swarm --bug`` only)."""
    unknown = set(names) - set(SNAPSHOT_BUGS)
    if unknown:
        raise ValueError(f"unknown snapshot bug(s): {sorted(unknown)}")
    saved = []

    def monkeypatch_set(owner, name, value):
        saved.append((owner, name, getattr(owner, name)))
        setattr(owner, name, value)
    try:
        for name in sorted(names):
            SNAPSHOT_BUGS[name](monkeypatch_set)
        yield
    finally:
        for owner, name, value in reversed(saved):
            setattr(owner, name, value)
