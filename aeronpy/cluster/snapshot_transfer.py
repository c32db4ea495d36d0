"""Install-snapshot: sending a snapshot to a follower behind the leader's log, and receiving one.

The core asks for a transfer in ``Ready.snapshot_requests`` when the entries a follower lacks
were compacted away; the driver reports the outcome with ``core.report_snapshot``. The core
leaves the transfer itself to the driver (it never touches files), so it lives here.

Leader: a ``SnapshotSender`` per lagging follower. A background thread reads the snapshot file
into a bounded queue of chunks (``chunk_bytes`` each, at most ``queue_chunks`` ahead); the
duty cycle sends at most ``chunks_per_cycle`` of them per cycle and keeps at most
``inflight_chunks`` unacknowledged, so a transfer costs the other followers a few microseconds
per cycle, never a stall. Unacknowledged chunks are resent after ``ack_timeout_ns``; no progress
for ``give_up_ns`` reports failure (the core asks again if the follower is still behind).

Follower: chunks are appended, in order, to an archive snapshot writer (temp file); the
check of the inner checksum and the commit (fsync, rename, record) run on the snapshot thread; then :func:`install_snapshot` swaps the
member's state at one point of the duty cycle: core log and commit, archive, module, services
(``on_start`` is called again with the snapshot: a service replaces its whole state there).
"""
from __future__ import annotations

import queue
import threading
import time
from collections import deque
from typing import Any, Callable, Optional

from aeronpy.archive.errors import ArchiveIOError
from aeronpy.core.messages import InstallSnapshot, InstallSnapshotResponse
from aeronpy._crc import crc32c
from aeronpy.cluster.snapshotting import (SnapshotFileError, check_service_names, decode_snapshot,
                                          read_snapshot_file)
from aeronpy.service import Role

CHUNK_BYTES = 32 * 1024
INFLIGHT_CHUNKS = 16
CHUNKS_PER_CYCLE = 4
QUEUE_CHUNKS = 32
ACK_TIMEOUT_NS = 500_000_000
GIVE_UP_NS = 5_000_000_000
BACK_PRESSURED = -2


class ChunkReader:
    """Reads a file in chunks ahead of the sender, on its own thread (or inline)."""

    def __init__(self, fs: Any, path: str, total: int, chunk_bytes: int, queue_chunks: int,
                 threaded: bool, checksum: Optional[int] = None):
        self._fs, self._path, self.total, self._chunk = fs, path, total, chunk_bytes
        self._offset = 0
        self._checksum = checksum           # the file's recorded CRC: checked before the last chunk
        self._crc = 0
        self._handle = fs.open_file(path)
        self._stop = threading.Event()
        self._queue: "queue.Queue" = queue.Queue(maxsize=queue_chunks)
        self.error: Optional[BaseException] = None
        self._thread = None
        if threaded:
            self._thread = threading.Thread(target=self._run, name="aeronpy-snapshot-read", daemon=True)
            self._thread.start()

    def _read_one(self):
        size = min(self._chunk, self.total - self._offset)
        data = self._fs.pread(self._handle, size, self._offset)
        if len(data) != size:
            raise OSError(f"{self._path}: short read at {self._offset}")
        chunk = (self._offset, bytes(data))
        self._offset += size
        if self._checksum is not None:
            self._crc = crc32c(chunk[1], self._crc)
            if self._offset >= self.total and self._crc != self._checksum:
                raise OSError(f"{self._path} no longer matches its recorded checksum: not sent")
        return chunk

    def _run(self) -> None:
        try:
            while self._offset < self.total and not self._stop.is_set():
                chunk = self._read_one()
                while not self._stop.is_set():
                    try:
                        self._queue.put(chunk, timeout=0.05)
                        break
                    except queue.Full:
                        continue
        except BaseException as exc:
            self.error = exc

    def next_chunk(self):
        """(offset, bytes) of the next chunk, or None if none is ready yet."""
        if self._thread is None:
            if self._offset >= self.total or self.error is not None:
                return None
            try:
                return self._read_one()
            except OSError as exc:          # as the threaded reader: reported through .error
                self.error = exc
                return None
        try:
            return self._queue.get_nowait()
        except queue.Empty:
            return None

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        self._fs.close(self._handle)


class SnapshotSender:
    """Leader side of one transfer."""

    def __init__(self, member_id: int, term: int, info: Any, fs: Any, send: Callable, now_ns: int,
                 threaded: bool, chunk_bytes: int = CHUNK_BYTES):
        self.member_id, self.term, self.info = member_id, term, info
        self.total = info.size
        self._send = send
        self._reader = ChunkReader(fs, info.path, self.total, chunk_bytes, QUEUE_CHUNKS, threaded,
                                   checksum=info.checksum)
        self._window: deque = deque()      # [offset, data, sent] not yet acknowledged
        self.acked = 0
        self.last_progress_ns = now_ns
        self.last_send_ns = now_ns
        self.started_ns = now_ns
        self.done: Optional[bool] = None   # True/False once finished

    @property
    def source_error(self) -> Optional[BaseException]:
        """Why the snapshot file could not be read (damaged, unreadable), else None."""
        return self._reader.error

    def do_work(self, now_ns: int) -> int:
        if self.done is not None:
            return 0
        if self._reader.error is not None or now_ns - self.last_progress_ns > GIVE_UP_NS:
            self.done = False
            return 1
        if self._window and now_ns - self.last_send_ns > ACK_TIMEOUT_NS:
            for entry in self._window:
                entry[2] = False                      # resend everything unacknowledged
        sent = 0
        for entry in self._window:
            if sent >= CHUNKS_PER_CYCLE:
                return sent
            if not entry[2]:
                if not self._transmit(entry, now_ns):
                    return sent
                sent += 1
        while sent < CHUNKS_PER_CYCLE and len(self._window) < INFLIGHT_CHUNKS:
            chunk = self._reader.next_chunk()
            if chunk is None:
                break
            entry = [chunk[0], chunk[1], False]
            self._window.append(entry)
            if not self._transmit(entry, now_ns):
                break
            sent += 1
        return sent

    def _transmit(self, entry: list, now_ns: int) -> bool:
        offset, data = entry[0], entry[1]
        done = offset + len(data) >= self.total
        code = self._send(self.member_id, InstallSnapshot(self.term, self.info.index, self.info.term,
                                                          offset, self.total, done, data))
        if code == BACK_PRESSURED:
            return False
        entry[2] = True
        self.last_send_ns = now_ns
        return True

    def on_response(self, msg: Any, now_ns: int) -> None:
        if msg.snapshot_index != self.info.index or self.done is not None:
            return
        if msg.success and msg.offset >= self.total:
            self.done = True
            return
        if msg.offset > self.acked:
            self.acked = msg.offset
            self.last_progress_ns = now_ns
        window = self._window
        while window and window[0][0] + len(window[0][1]) <= self.acked:
            window.popleft()
        if not msg.success:                            # the follower wants bytes from msg.offset
            if window and window[0][0] > msg.offset:
                self.done = False                      # older than we hold: start again
                return
            for entry in window:
                if entry[0] >= msg.offset:
                    entry[2] = False

    def close(self) -> None:
        self._reader.close()


class SnapshotReceiver:
    """Follower side: one transfer at a time, chunks in order into an archive snapshot writer."""

    def __init__(self, node_hooks: Any):
        self.hooks = node_hooks             # the NodeSnapshots owning this receiver
        self._key = None                    # (leader, term, index, snapshot_term)
        self._writer = None
        self.received = 0
        self._committing = None             # Future of the commit job
        self._commit_key = None
        self.installed = 0

    def on_chunk(self, from_id: int, msg: Any) -> Optional[Any]:
        """Handle one chunk; returns the response to send (None: nothing now)."""
        hooks = self.hooks
        core = hooks.core
        if msg.term != core.term or core.role == Role.LEADER:
            return None
        if msg.snapshot_index <= core.commit_index:
            # held already, committed: but "done" promises it durably (the leader counts it),
            # and a member's commit index can run ahead of its sync: until that catches up,
            # no answer (the leader sends the chunk again)
            if msg.snapshot_index > core.persisted_index:
                return None
            return InstallSnapshotResponse(core.term, msg.snapshot_index, msg.total_bytes, True)
        key = (from_id, msg.term, msg.snapshot_index, msg.snapshot_term)
        if self._committing is not None:
            return None                     # the previous transfer is being made durable
        starts = msg.offset == 0 and key != self._key      # a new transfer: its file is made below
        if starts:
            self.abort()
        elif key != self._key or msg.offset != self.received:
            return InstallSnapshotResponse(core.term, msg.snapshot_index,
                                           self.received if key == self._key else 0, False)
        try:
            if starts:
                self._writer = hooks.archive.begin_snapshot(msg.snapshot_index, msg.snapshot_term)
                self._key = key
                self.received = 0
            self._writer.write(msg.data)
        except ArchiveIOError:
            self.abort()
            raise                 # the archive refused already (failed or closed): as it says
        except OSError as exc:
            # the member cannot go on without it (its log starts after the snapshot): it
            # stops, saying what and why, and leaves no partial file on a full disk
            self.abort()
            raise hooks.archive.fail_writing(
                exc, f"writing the snapshot at index {msg.snapshot_index} received from "
                     f"member {from_id}") from exc
        self.received += len(msg.data)
        if msg.done:
            if self.received != msg.total_bytes:
                self.abort()
                return InstallSnapshotResponse(core.term, msg.snapshot_index, 0, False)
            writer, self._writer = self._writer, None
            self._commit_key = key
            self._committing = hooks.jobs.submit(verify_and_commit, writer,
                                                 list(hooks.module.container.services))
            return None
        return InstallSnapshotResponse(core.term, msg.snapshot_index, self.received, True)

    def poll(self) -> Optional[tuple]:
        """(leader, response) once a received snapshot is durable and installed, else None."""
        future = self._committing
        if future is None or not future.done() or not self.hooks.can_install():
            return None
        self._committing = None
        key, self._commit_key, self._key = self._commit_key, None, None
        leader, term, index, _snap_term = key
        try:
            info = future.result()
        except Exception as exc:
            self.hooks.log.warning("received snapshot at %d could not be recorded: %r", index, exc)
            return leader, InstallSnapshotResponse(term, index, 0, False)
        if index <= self.hooks.core.commit_index:
            # the member got there by itself while the file was being made durable (another
            # leader's entries): installing now would take its state back (found by the
            # simulator). The recorded file only counts for retention.
            self.hooks.keep_without_installing(info)
            return leader, InstallSnapshotResponse(self.hooks.core.term, index, info.size, True)
        self.hooks.install(info)
        self.installed += 1
        return leader, InstallSnapshotResponse(self.hooks.core.term, index, info.size, True)

    def abort(self) -> None:
        if self._writer is not None:
            try:
                self._writer.abort()
            except OSError:
                pass
        self._writer = None
        self._key = None
        self.received = 0


def verify_and_commit(writer: Any, services: Any = None) -> Any:
    """Background job: check a received snapshot end to end (its inner checksum, and that it
    was taken by the services this member hosts) before it is recorded -- recovery trusts a
    recorded snapshot, so a bad one would stop the member from starting. A bad one is
    discarded (the poller answers the leader with a failure; the leader retries later)."""
    try:
        contents = decode_snapshot(writer.read_back())
        if services is not None:
            check_service_names(contents, services, "the snapshot received from the leader")
    except BaseException:
        # a bad one, or one that cannot be read back (EIO): discarded either way, so a
        # retried transfer leaves no temporary file and open handle behind each time
        try:
            writer.abort()
        except OSError:
            pass
        raise
    return writer.commit(0)


def install_snapshot(core: Any, archive: Any, module: Any, info: Any) -> None:
    """Make a member's state the snapshot's: core log/commit, archive log, module, services.

    Entries up to the snapshot are committed on the leader, so a held entry with the same term
    matches and the suffix after it stays; otherwise the whole log is replaced by the snapshot.
    """
    contents = read_snapshot_file(archive, info)
    check_service_names(contents, module.container.services, info.path)
    index, term = info.index, info.term
    log = core.log
    keeps_suffix = log.base_index < index <= log.last_index and log.term_at(index) == term
    log.drop_prefix(index, term)
    core.commit_index = max(core.commit_index, index)
    core.applied_index = index
    core.persisted_index = max(min(core.persisted_index, log.last_index), index) if keeps_suffix \
        else index
    core.verified_index = max(core.verified_index, index) if keeps_suffix else index
    reset_archive_at_snapshot(archive, index, term, keeps_suffix)
    # the archive may have dropped a suffix the core still holds (its copy there was stale):
    # the core persists it again from the archive's end
    core.persisted_index = min(core.persisted_index, max(archive.written_index, index))
    # what the archive holds past the snapshot (an ex-leader's may still be syncing)
    core.written_index = max(index, min(core.written_index, log.last_index, archive.written_index))
    core.persisted_index = min(core.persisted_index, core.written_index)
    archive.note_commit_index(index)
    module.restore_state(contents.module_state)
    module.start(contents.service_files())


def reset_archive_at_snapshot(archive: Any, index: int, term: int, keeps_suffix: bool) -> None:
    """The archived log after installing a snapshot at (index, term) (``Archive.reset_to_snapshot``)."""
    archive.reset_to_snapshot(index, term, keeps_suffix)


def now_ns() -> int:
    return time.monotonic_ns()
