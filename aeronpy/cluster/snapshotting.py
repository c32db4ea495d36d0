"""Taking, recording, loading and compacting snapshots on a real node.

Why the work is split the way it is: the duty cycle must keep the log flowing, so the only
part that runs on it is the part that *must* see one consistent state -- the consensus
module's replicated state and each service's ``on_take_snapshot`` stream, serialised into
memory at one log index. Everything slow (writing the file, its checksum, fsync, rename,
recording it) runs on one background thread; the duty cycle only polls for the result and
then compacts (drops the in-memory log prefix and purges whole segment files), both cheap.

Triggers: a CLUSTER_ACTION snapshot entry (every member snapshots at the same index): an
admin request, or the leader's log appended since its last snapshot passing
``snapshot_log_bytes``; and, per member, that log passing twice ``snapshot_log_bytes``
(followers of a leader that asks later or never). Retention: the newest
``snapshots_to_keep`` snapshots and the log after the oldest of them are kept, so recovery can still fall back to an older snapshot when
the newest fails its checksum; everything below is purged (disk stays bounded).

Snapshot file layout (inside the archive's checksummed snapshot file), little-endian::

    b"APSN" u16 version | u16 service_count | i64 index | i64 term | i64 cluster_time_ns
    u32 crc32c of the header above and everything after this field (end to end: checked
        after a transfer; kept in the header, since a CRC trailer would make the whole file's
        CRC -- the one the recording log keeps -- the same constant for every snapshot)
    u64 module_state_bytes | module_state            (ConsensusModule.snapshot_state())
    u64 names_bytes | names                          (version 2: the services that took it,
        container.service_set_tail; empty when unknown)
    service_count x (u64 bytes | service stream)     (on_take_snapshot, service id order)

Version 1 files (no names) still load. A member whose services are not the ones a snapshot
names (another list, or the same in another order) refuses it: each stream would go to
another service.
"""
from __future__ import annotations

import io
import logging
import queue
import struct
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Callable, List, Optional, Sequence

from aeronpy._crc import crc32c
from aeronpy.cluster import entries as E
from aeronpy.cluster.container import service_set_tail

MAGIC = b"APSN"
VERSION = 2
_VERSIONS = (1, 2)
_HEADER = struct.Struct("<4sHHqqq")
_CRC = struct.Struct("<I")
_LEN = struct.Struct("<Q")


class SnapshotFileError(ValueError):
    """A snapshot file is malformed, of another version, or fails its inner checksum."""


# ---------------------------------------------------------------------------------- file format
def snapshot_parts(index: int, term: int, cluster_time_ns: int, module_state: bytes,
                   service_streams: Sequence, service_names: bytes = b"") -> List:
    """The header and body of a snapshot file, checksum not yet computed (no copies made)."""
    header = _HEADER.pack(MAGIC, VERSION, len(service_streams), index, term, cluster_time_ns)
    parts: list = [header, _LEN.pack(len(module_state)), module_state,
                   _LEN.pack(len(service_names)), service_names]
    for stream in service_streams:
        parts.append(_LEN.pack(memoryview(stream).nbytes))
        parts.append(stream)
    return parts


def seal_parts(parts: Sequence) -> List:
    """Insert the checksum after the header (on the background thread: a pass over the state)."""
    crc = 0
    for p in parts:
        crc = crc32c(p, crc)
    return [parts[0], _CRC.pack(crc)] + list(parts[1:])


def encode_snapshot(index: int, term: int, cluster_time_ns: int, module_state: bytes,
                    service_streams: Sequence, service_names: bytes = b"") -> List:
    """The parts of a snapshot file, in order."""
    return seal_parts(snapshot_parts(index, term, cluster_time_ns, module_state, service_streams,
                                     service_names))


@dataclass
class SnapshotContents:
    index: int
    term: int
    cluster_time_ns: int
    module_state: bytes
    service_streams: list = field(default_factory=list)   # memoryviews into the file bytes
    service_names: bytes = b""                             # version 2; b"" when unknown

    def service_files(self) -> List[BinaryIO]:
        """A fresh readable binary file per service (for ``on_start``)."""
        return [io.BytesIO(s) for s in self.service_streams]


def decode_snapshot(data) -> SnapshotContents:
    """Parse and verify a snapshot file's bytes (raises SnapshotFileError)."""
    view = memoryview(data).cast("B")
    n = view.nbytes
    start = _HEADER.size + _CRC.size
    if n < start + _LEN.size:
        raise SnapshotFileError(f"snapshot of {n} bytes is too short")
    (stored,) = _CRC.unpack_from(view, _HEADER.size)
    if crc32c(view[start:], crc32c(view[:_HEADER.size])) != stored:
        raise SnapshotFileError("snapshot fails its inner checksum")
    magic, version, count, index, term, cluster_time_ns = _HEADER.unpack_from(view, 0)
    if magic != MAGIC or version not in _VERSIONS:
        raise SnapshotFileError(f"not an aeronpy snapshot of version {_VERSIONS} (magic "
                                f"{bytes(magic)!r}, version {version})")
    pos = start
    blobs = []
    sections = count + (2 if version >= 2 else 1)
    for _ in range(sections):
        if pos + _LEN.size > n:
            raise SnapshotFileError(f"snapshot truncated at byte {pos}")
        (length,) = _LEN.unpack_from(view, pos)
        pos += _LEN.size
        if pos + length > n:
            raise SnapshotFileError(f"snapshot section of {length} bytes overruns the file at {pos}")
        blobs.append(view[pos:pos + length])
        pos += length
    if pos != n:
        raise SnapshotFileError(f"{n - pos} trailing bytes in the snapshot")
    if version >= 2:
        return SnapshotContents(index, term, cluster_time_ns, bytes(blobs[0]), blobs[2:],
                                bytes(blobs[1]))
    return SnapshotContents(index, term, cluster_time_ns, bytes(blobs[0]), blobs[1:])


def check_service_names(contents: SnapshotContents, services: Sequence, path: str) -> None:
    """Refuse (SnapshotFileError) a snapshot taken by other services than these, or by the
    same in another order: each stream would be handed to another service."""
    from aeronpy.cluster.container import renamed_service_hint, service_names, service_set_of
    theirs = service_set_of(contents.service_names)
    if theirs is None:
        return                                   # version 1, or names unknown
    ours = service_names(services)
    if theirs != ours:
        raise SnapshotFileError(
            f"snapshot {path} was taken by services {theirs}; this member hosts {ours}: each "
            "service would be given another's state. Host the same services in the same order "
            f"(docs/operations.md, 'Changing the set of services'){renamed_service_hint(theirs, ours)}")


def snapshot_cluster_time(head) -> int:
    """The cluster time a snapshot file's header records, from its first bytes (0 when they
    are too few or not a snapshot: the full read of the file checks it anyway)."""
    head = bytes(head[:_HEADER.size])
    if len(head) < _HEADER.size:
        return 0
    magic, version, _count, _index, _term, cluster_time_ns = _HEADER.unpack(head)
    return cluster_time_ns if magic == MAGIC and version in _VERSIONS else 0


def read_snapshot_file(archive: Any, info: Any) -> SnapshotContents:
    """Open a recorded snapshot (the archive re-verifies its file checksum) and parse it."""
    return decode_snapshot(archive.open_snapshot(info).getbuffer())


# ---------------------------------------------------------------------------------- background
class BackgroundJobs:
    """One daemon worker thread for file work, or inline execution (the simulator's
    MemFileSystem is single-threaded). ``submit`` returns a Future either way.

    Not a ThreadPoolExecutor: its shutdown, and the interpreter's exit, join the worker with
    no bound, so a job stuck on a hung disk held ``ClusterNode.close()`` (and the process's
    exit) for ever; here ``close(timeout_s)`` gives up and the daemon thread is left to it."""

    def __init__(self, threaded: bool, name: str):
        self._queue = queue.SimpleQueue() if threaded else None
        self._thread = None
        self._closed = False
        if threaded:
            self._thread = threading.Thread(target=self._run, name=name, daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            future, fn, args = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn(*args))
            except BaseException as exc:
                future.set_exception(exc)

    def submit(self, fn: Callable, *args) -> Future:
        if self._closed:
            raise RuntimeError("background jobs are closed")
        future: Future = Future()
        if self._queue is not None:
            self._queue.put((future, fn, args))
            return future
        try:
            future.set_result(fn(*args))
        except BaseException as exc:  # handed to the poller, like the threaded case
            future.set_exception(exc)
        return future

    def close(self, timeout_s: Optional[float] = None) -> bool:
        """Run what was submitted, then stop; False if the worker is still busy after
        ``timeout_s`` (None: wait for it)."""
        if self._queue is None:
            return True
        if not self._closed:
            self._closed = True
            self._queue.put(None)
        self._thread.join(timeout_s)
        return not self._thread.is_alive()


SNAPSHOT_CLOSE_TIMEOUT_S = 30.0


def write_snapshot_file(archive: Any, index: int, term: int, timestamp_ns: int, parts: Sequence):
    """Background job: temp file, checksum, fsync, rename, record. Returns the SnapshotInfo."""
    parts = seal_parts(parts)
    writer = archive.begin_snapshot(index, term)
    try:
        for part in parts:
            writer.write(part)
        return writer.commit(timestamp_ns)
    except BaseException:
        writer.abort()
        raise


@dataclass
class SnapshotStats:
    taken: int = 0
    failed: int = 0
    last_index: int = 0
    last_pause_ns: int = 0          # duty cycle blocked: module + services serialising to memory
    max_pause_ns: int = 0
    last_total_ns: int = 0          # request to recorded (pause + background write + fsync)
    last_bytes: int = 0
    purged_segments: int = 0
    deleted_snapshots: int = 0


@dataclass
class _InFlight:
    index: int
    term: int
    started_ns: int
    future: Future
    size: int


# the reason of a snapshot this member takes on its own trigger: the only one not queued
# behind a snapshot in flight (take)
_OWN_AUTOMATIC = "log passed snapshot_log_bytes"


class Snapshotter:
    """Snapshots of one node. The node calls: ``on_cluster_action`` (module listener),
    ``after_apply`` (after each applied batch), ``poll`` (each duty cycle), ``close``."""

    def __init__(self, *, module: Any, core: Any, archive: Any, snapshot_log_bytes: int,
                 snapshots_to_keep: int, threaded: bool, log: logging.Logger,
                 clock: Callable[[], int] = time.monotonic_ns, initial_index: int = 0,
                 jobs: Any = None):
        self.module, self.core, self.archive, self.log = module, core, archive, log
        self.snapshot_log_bytes = snapshot_log_bytes
        self.snapshots_to_keep = max(1, snapshots_to_keep)
        self._clock = clock
        # jobs: any executor with submit(fn, *args) -> Future and close() (the simulator
        # injects one that runs each job as a later event on its virtual clock)
        self._jobs = jobs if jobs is not None else BackgroundJobs(threaded, "aeronpy-snapshot")
        self._inflight: Optional[_InFlight] = None
        self._queued: Optional[int] = None        # an admin snapshot requested while one is in flight
        self._automatic_asked = (0, 0)            # (log index, term) of this leader's last ask
        self.last_snapshot_index = initial_index
        self.kept: list = []                      # SnapshotInfo of the snapshots kept, oldest first
        self.stats = SnapshotStats()
        self.listeners: list = []                 # fn(SnapshotInfo) after a snapshot is recorded
        self.failure_listeners: list = []         # fn(index, exc) after a snapshot failed
        self.pause_listeners: list = []           # fn(pause_ns) after each serialisation
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ triggers
    def on_cluster_action(self, index: int, action: int, argument: int) -> None:
        if action != E.ACTION_SNAPSHOT:
            return
        if argument != E.SNAPSHOT_AUTOMATIC:
            self.take(index, "admin request")
        elif self.snapshot_log_bytes > 0:          # 0: this member's automatic ones are off
            self.take(index, "the leader's log passed snapshot_log_bytes")

    def after_apply(self) -> None:
        """Automatic trigger: enough log since the last snapshot (checked after each batch).
        A leader asks every member to snapshot at one log index (a CLUSTER_ACTION, as an admin
        snapshot), so the members' checksums can be compared there (state_digests.py); a
        follower takes one of its own only past twice the limit (its leader's is off or lower)."""
        if self.snapshot_log_bytes <= 0 or self._inflight is not None:
            return
        module = self.module
        applied = module.applied_index
        log = self.core.log
        lo = max(self.last_snapshot_index, log.base_index) + 1
        if applied < lo:
            return
        size = log.size_between(lo, applied + 1)
        if size < self.snapshot_log_bytes:
            return
        if module.is_leader:
            asked, asked_term = self._automatic_asked
            term = self.core.term
            if not module.leader_ready or (asked > applied and asked_term == term):
                return        # its backlog (a predecessor's ask, maybe) first; or ours pending
            index = module.propose_cluster_action(E.ACTION_SNAPSHOT, E.SNAPSHOT_AUTOMATIC)
            if index:
                self._automatic_asked = (index, term)
            return            # refused (handing over, stopping): never one of its own at 1x
        if size >= 2 * self.snapshot_log_bytes:
            self.take(applied, _OWN_AUTOMATIC)

    # ------------------------------------------------------------------ taking
    @property
    def in_progress(self) -> bool:
        return self._inflight is not None

    def take(self, index: int, reason: str) -> bool:
        """Serialise the state at ``index`` (== the module's applied index) into memory now and
        hand the file work to the background thread. False if skipped."""
        if index != self.module.applied_index:
            raise RuntimeError(f"snapshot at {index} but the services have applied "
                               f"{self.module.applied_index}")
        if index <= self.last_snapshot_index:
            return False
        if self._inflight is not None:
            self._queued = index if reason != _OWN_AUTOMATIC else self._queued
            return False
        started = self._clock()
        term = self.core.log.term_at(index)
        module_state = self.module.snapshot_state()
        buffers = [io.BytesIO() for _ in range(len(self.module.container))]
        self.module.take_service_snapshots(buffers)
        streams = [b.getbuffer() for b in buffers]
        parts = snapshot_parts(index, term, self.module.cluster_time_ns, module_state, streams,
                               service_set_tail(self.module.container.services))
        pause = self._clock() - started
        stats = self.stats
        stats.last_pause_ns = pause
        stats.max_pause_ns = max(stats.max_pause_ns, pause)
        for listener in self.pause_listeners:
            listener(pause)
        size = sum(memoryview(p).nbytes for p in parts) + _CRC.size
        future = self._jobs.submit(write_snapshot_file, self.archive, index, term,
                                   self.module.cluster_time_ns, parts)
        self._inflight = _InFlight(index, term, started, future, size)
        self.log.info("snapshot at index %d (%s): %d bytes serialised, log paused %.3f ms",
                      index, reason, size, pause / 1e6)
        return True

    def poll(self) -> int:
        """Finish a snapshot whose file is recorded: compact and purge. Returns work done."""
        inflight = self._inflight
        if inflight is None or not inflight.future.done():
            return 0
        self._inflight = None
        stats = self.stats
        try:
            info = inflight.future.result()
        except Exception as exc:
            stats.failed += 1
            self.log.warning("snapshot at index %d failed: %r", inflight.index, exc)
            for listener in self.failure_listeners:
                listener(inflight.index, exc)
            return 1
        if info.index < self.core.log.base_index:
            # overtaken by a snapshot installed from the leader meanwhile: no log follows it,
            # so it is no fallback either; drop it (found by the simulator)
            self._delete(info)
            return 1
        stats.taken += 1
        stats.last_index = info.index
        stats.last_bytes = info.size
        stats.last_total_ns = self._clock() - inflight.started_ns
        self.keep(info)
        self._compact()
        for listener in self.listeners:
            listener(info)
        self.log.info("snapshot at index %d recorded: %d bytes in %.1f ms", info.index, info.size,
                      stats.last_total_ns / 1e6)
        queued, self._queued = self._queued, None
        if queued is not None and queued > info.index:
            self.take(self.module.applied_index, "admin request")
        return 1

    def take_queued(self) -> bool:
        """Take now the admin snapshot queued behind one that failed (``failure_listeners``
        decide: the requester asked for a snapshot, not for the one that failed); False when
        none is queued or one is still in flight."""
        if self._queued is None or self._inflight is not None:
            return False
        self._queued = None
        return self.take(self.module.applied_index, "admin request")

    def wait(self, timeout_s: float = 30.0) -> bool:
        """Block until the snapshot in flight is finished and polled (tests, shutdown)."""
        inflight = self._inflight
        if inflight is None:
            return True
        try:
            inflight.future.exception(timeout=timeout_s)
        except Exception:
            return False
        self.poll()
        return True

    # ------------------------------------------------------------------ compaction
    def keep(self, info: Any) -> None:
        """Count a recorded snapshot towards retention, in index order. A snapshot taken just
        before a newer one was installed from the leader can be recorded after it: it is the
        older one then, and must never push the installed one out (found by the simulator)."""
        self.kept = sorted([k for k in self.kept if k.index != info.index] + [info],
                           key=lambda k: k.index)
        self.last_snapshot_index = max(self.last_snapshot_index, info.index)

    def _compact(self) -> None:
        """Keep the newest ``snapshots_to_keep`` snapshots and the log after the oldest kept;
        drop the in-memory log prefix and purge whole segments and snapshot files below it."""
        while len(self.kept) > self.snapshots_to_keep:
            self._delete(self.kept.pop(0))
        oldest = self.kept[0]
        core = self.core
        if oldest.index > core.log.base_index and oldest.index <= core.applied_index:
            core.compact(oldest.index, oldest.term)
        self.stats.purged_segments += self.archive.purge_below(oldest.index + 1)

    def _delete(self, info: Any) -> None:
        try:
            self.archive.remove_file(info.path)    # on the archive's remover thread (real files)
            self.stats.deleted_snapshots += 1
        except OSError as exc:
            self.log.warning("could not delete old snapshot %s: %r", info.path, exc)

    def adopt_recovered(self, archive_snapshots: Sequence, in_use_index: int = 0) -> None:
        """At start: the snapshots already on disk count towards retention. Older ones past
        ``snapshots_to_keep`` (a crash between recording a snapshot and deleting the oldest, or
        a lower setting) are deleted now, as `_compact` would have, but never one at or above
        ``in_use_index``, the snapshot the node recovered from."""
        ordered = sorted(archive_snapshots, key=lambda k: k.index)
        self.kept = ordered[-self.snapshots_to_keep:]
        for info in ordered[:-self.snapshots_to_keep]:
            if info.index < in_use_index:
                self._delete(info)
        if self.kept:
            self.last_snapshot_index = max(self.last_snapshot_index, self.kept[-1].index)

    def close(self) -> None:
        """Wait for the jobs thread to finish what it holds (this node's snapshot, a received
        one being made durable, one the wait's poll took from the queue): one bound in all,
        SNAPSHOT_CLOSE_TIMEOUT_S, then it is left to its daemon thread (a hung disk)."""
        deadline = time.monotonic() + SNAPSHOT_CLOSE_TIMEOUT_S
        if self.wait(SNAPSHOT_CLOSE_TIMEOUT_S) and \
                self._jobs.close(max(0.0, deadline - time.monotonic())):
            return
        self.log.warning("a snapshot job is still running after %.0f s (a hung disk?): closing "
                         "without it", SNAPSHOT_CLOSE_TIMEOUT_S)
        self._jobs.close(0.0)       # its thread is a daemon: it cannot hold the exit either


# ---------------------------------------------------------------------------------- recovery
def load_recovered_snapshot(module: Any, archive: Any, recovered: Any,
                            log: logging.Logger) -> Optional[List[BinaryIO]]:
    """Restore the module from the recovered snapshot; the services' ``on_start`` streams.

    The archive already skipped snapshots that fail their file checksum (warned here); a file
    that passes it but fails to parse is a bug or tampering: refuse to start rather than guess.
    """
    for skipped in getattr(recovered, "skipped_snapshots", ()):
        log.warning("snapshot %s at index %d fails its checksum or is missing: skipped in favour "
                    "of an older one", getattr(skipped, "name", skipped),
                    getattr(skipped, "index", -1))
    info = recovered.snapshot
    if info is None:
        return None
    contents = read_snapshot_file(archive, info)
    if contents.index != info.index or len(contents.service_streams) != len(module.container):
        raise SnapshotFileError(
            f"snapshot {info.path} holds index {contents.index} and "
            f"{len(contents.service_streams)} service streams; expected index {info.index} and "
            f"{len(module.container)} services")
    check_service_names(contents, module.container.services, info.path)
    module.restore_state(contents.module_state)
    log.info("restored snapshot at index %d (%d bytes)", info.index, info.size)
    return contents.service_files()


def recorded_snapshots(archive: Any) -> list:
    """SnapshotInfo of every recorded snapshot whose file still exists, oldest first (not
    re-verified here: recovery verifies the one it loads; this is for retention only)."""
    return archive.recorded_snapshots()
