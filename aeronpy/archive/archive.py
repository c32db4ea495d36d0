"""`Archive`: a node's durable state in one data directory -- the log (segment files), the node
state (term, vote), the recording log (term starts, snapshots), snapshots, and the durable
marker -- with the ``file_sync`` policy, group commit, and recovery.

Threading: every method is called from the duty-cycle thread. Under ``file_sync="data"`` or
``"full"`` with real files, syncs run on a `BackgroundSyncer` thread: `request_sync()` hands
over what was written, `poll_synced()` reports how far it is durable. With `MemFileSystem`
(the simulator) there is no thread: `request_sync()` syncs at once, deterministically.

What "durable" means per policy (docs/archive-format.md has the full story):
  none  written to the OS page cache. Survives kill -9, not power loss.
  data  fdatasync'd (and the directory synced when a segment file is created). Survives both.
  full  fsync'd (data and all file metadata) and the directory synced. Survives both.
"""
from __future__ import annotations

import errno as errno_codes
import logging
import time
import warnings
from dataclasses import dataclass

from .. import _segscan
from .durable_marker import DurableMarker
from .errors import ArchiveCorruptError, ArchiveIOError, DataDirError
from .fs import FileSystem, OsFileSystem
from .node_state import NODE_STATE_FILE, HardState, load_node_state, save_node_state
from .recording_log import RecordingLog, TermStart
from .remover import BackgroundRemover
from .segments import DEFAULT_SEGMENT_BYTES, OPEN_SEGMENTS_MAX, ScanStop, SegmentLog
from .snapshots import (SNAPSHOT_PREFIX, SNAPSHOT_SUFFIX, SNAPSHOT_TMP_SUFFIX, SnapshotInfo,
                        SnapshotWriter, latest_valid_snapshot, open_snapshot)
from .syncer import BackgroundSyncer

FILE_SYNC_LEVELS = ("none", "data", "full")
# After a power loss, the most recently synced log (this much of it, or MARKER_SYNC_SLOW_FACTOR
# data syncs' worth, when the syncer was idle between batches) may lie beyond the durable
# marker on disk: outside the corruption check, kept if intact (a torn tail there is cut).
MARKER_SYNC_INTERVAL_S = 0.1
# and at most every this many times the last data sync's duration: on a disk whose syncs take
# 50 ms, a marker sync after each batch doubled every round's cost (the slow-disk trial)
MARKER_SYNC_SLOW_FACTOR = 10
# `close()` waits at most this long in all for the sync thread (its final sync, then its stop):
# a hung disk makes close fail after one limit, not after several waits of it in a row.
CLOSE_SYNC_TIMEOUT_S = 60.0
SYNC_WAIT_TIMEOUT_S = 60.0      # any other wait for the sync thread (truncate, purge, sync)
_log = logging.getLogger("aeronpy.archive")


def _log_index_class():
    from .._logindex import LogIndex  # compiled; imported late so the archive module loads first
    return LogIndex


@dataclass
class Recovered:
    """What `Archive.recover` found. ``log`` starts after ``snapshot`` (if any); entries up to
    ``commit_index`` are known committed (replay them into the services); ``cut`` says where
    the log ends now (last segment file, offset) and why the scan stopped there (``cut.clean``
    is False when a torn or damaged tail was removed)."""
    hard_state: HardState
    log: object
    snapshot: SnapshotInfo | None
    durable_index: int
    commit_index: int = 0
    term_starts: tuple = ()
    cut: ScanStop | None = None
    skipped_snapshots: tuple = ()
    stray_files_removed: tuple = ()   # names of half-written or unrecorded snapshot files


class Archive:
    """Open with `Archive.open`, then call `recover()` once before anything else."""

    def __init__(self, data_dir: str, file_sync: str, segment_bytes: int, fs: FileSystem,
                 background_sync: bool, open_segments_max: int = OPEN_SEGMENTS_MAX,
                 background_remove: bool = False):
        self.data_dir = data_dir
        self.file_sync = file_sync
        self.fs = fs
        self._segments = SegmentLog(fs, data_dir, segment_bytes, open_segments_max)
        # a sealed segment leaving the handle table is synced first under data/full; under
        # none it stays dirty and `sync()` reopens it
        self._segments.before_close = self._sync_handle if file_sync != "none" else None
        self._segments.wait_for_syncs = self._wait_for_syncs
        # Files no longer needed (segments below a snapshot, old snapshots) are deleted on a
        # thread with real files: an unlink can take tens of ms (remover.py); the simulator's
        # MemFileSystem deletes at once, deterministically.
        self._remover = BackgroundRemover(fs.remove) if background_remove else None
        if self._remover is not None:
            self._segments.remove_path = self._remover.submit
        self._recording_log = RecordingLog(fs, data_dir)
        self._marker = DurableMarker(fs, data_dir)
        self._background = background_sync
        self._syncer: BackgroundSyncer | None = None
        self._recovered = False
        self._state_seen = False      # node.state existed at a check_files(): it must stay
        self._closed = False
        self._failure: ArchiveIOError | None = None
        self._durable = 0
        self._requested = 0
        self._commit = 0
        self._marker_synced_at = 0.0
        self._last_data_sync_s = 0.0        # how long the last batch's data syncs took
        # term of the last live recorded term start (None: unknown): an append whose last entry
        # has this term records nothing (`record_term_starts`' one compare per append)
        self.recorded_term: int | None = None
        # Under none, every append is noted in durable.pos with the boot id, so recovery in
        # the same boot can tell damage to acknowledged entries from a torn tail.
        self._boot = fs.boot_id() if file_sync == "none" else None

    @classmethod
    def open(cls, data_dir: str, file_sync: str = "none", segment_bytes: int = DEFAULT_SEGMENT_BYTES,
             fs: FileSystem | None = None, background_sync: bool | None = None,
             open_segments_max: int = OPEN_SEGMENTS_MAX,
             background_remove: bool | None = None) -> "Archive":
        """Check the data directory (created if missing; must be writable) and the settings.

        ``background_sync`` defaults to True for real files under ``data``/``full`` and False
        otherwise (the simulator's `MemFileSystem` must stay single-threaded);
        ``background_remove`` (purged segments and old snapshots deleted on a thread) to True
        for real files under every policy.
        ``open_segments_max`` bounds the segment files held open (tail + LRU of readers)."""
        if file_sync not in FILE_SYNC_LEVELS:
            raise ValueError(f"file_sync must be one of {FILE_SYNC_LEVELS}, got {file_sync!r}")
        fs = fs or OsFileSystem()
        data_dir = str(data_dir).rstrip("/") or "/"
        _check_data_dir(fs, data_dir)
        if background_sync is None:
            background_sync = isinstance(fs, OsFileSystem) and file_sync != "none"
        if background_remove is None:
            background_remove = isinstance(fs, OsFileSystem)
        return cls(data_dir, file_sync, segment_bytes, fs, background_sync, open_segments_max,
                   background_remove)

    # -- positions ---------------------------------------------------------------------------
    @property
    def written_index(self) -> int:
        """Last index handed to the OS."""
        return self._segments.last_index

    @property
    def durable_index(self) -> int:
        """Last index durable under the ``file_sync`` policy (``none``: written)."""
        return self.written_index if self.file_sync == "none" else self._durable

    @property
    def failed(self) -> bool:
        return self._failure is not None

    # -- recovery ----------------------------------------------------------------------------
    def recover(self, require_node_state: bool = False) -> Recovered:
        """Load the node state, choose the newest valid snapshot, read the log after it back
        (verifying every record), cut a torn tail, and report what was found.

        Raises `ArchiveCorruptError` when damage lies inside what the node had reported
        durable: cutting it would forget acknowledged entries; and, with
        ``require_node_state`` (a Raft member: it saves its term before it keeps entries of
        that term), when node.state is missing from a data dir whose log has terms."""
        if self._recovered:
            raise RuntimeError("recover() is called once, right after open()")
        try:
            return self._recover(require_node_state)
        except BaseException:
            # a failed recovery must not keep the files it opened (callers cannot close a
            # half-recovered archive; a leak here once exhausted a test run's descriptors)
            self._release_files()
            raise

    def _recover(self, require_node_state: bool) -> Recovered:
        hard_state = load_node_state(self.fs, self.data_dir)
        state_saved = self.fs.exists(f"{self.data_dir}/{NODE_STATE_FILE}")
        self._recording_log.load(cut=False)     # cut below, once nothing refuses the start
        damaged_entry = self._recording_log.damaged_at
        if damaged_entry is not None:
            warnings.warn(f"{self._recording_log.path}: the entry at offset {damaged_entry} "
                          "fails its checksum; it and what follows are ignored as a torn write",
                          RuntimeWarning, stacklevel=2)
        marker_found = self.fs.exists(self._marker.path)
        self._marker.load()
        if not self._marker.valid:
            warnings.warn(f"{self._marker.path} is unreadable: corruption checks of the log "
                          "cover nothing this time", RuntimeWarning, stacklevel=2)
        acked_index, acked_commit = self._marker.acknowledged(self.fs.boot_id())
        reported_durable = max(self._marker.durable_index, acked_index)
        snapshot, failed = latest_valid_snapshot(self.fs, self.data_dir, self._recording_log)
        start = snapshot.index + 1 if snapshot else 1
        base = (snapshot.index, snapshot.term) if snapshot else None
        log, stop = self._segments.recover(start, base, _log_index_class())
        last_term = max(log.last_term, snapshot.term if snapshot else 0)
        if require_node_state and not state_saved and last_term > 0:
            # the term and vote are saved before any entry of a term is kept, so a log with
            # terms and no node.state lost the file: starting at term 0 with no vote could
            # vote twice in one term (two leaders)
            raise ArchiveCorruptError(
                f"{NODE_STATE_FILE} is missing, but the log holds entries up to term "
                f"{last_term}: the member's term and vote are lost",
                path=f"{self.data_dir}/{NODE_STATE_FILE}", index=log.last_index)
        if not marker_found and last_term > 0:
            warnings.warn(f"{self._marker.path} is missing from a data dir with a log: "
                          "corruption checks of the log cover nothing this time",
                          RuntimeWarning, stacklevel=2)
        if stop.index <= reported_durable:
            what = "the log ends cleanly" if stop.clean else stop.reason
            claim = ("durable" if reported_durable == self._marker.durable_index else
                     "written (file_sync = none, in this boot of the OS)")
            also = "" if damaged_entry is None else (
                f"; also, the entry at offset {damaged_entry} of {self._recording_log.path} "
                "fails its checksum (a newer snapshot's record may be damaged)")
            raise ArchiveCorruptError(
                f"{what} at index {stop.index}, but the node had reported the log {claim} up to "
                f"index {reported_durable}{also}", path=stop.path, offset=stop.offset,
                index=stop.index)
        if snapshot is not None:
            log = self._align_with_snapshot(log, snapshot, reported_durable)
        self._commit = max(min(max(self._marker.commit_index, acked_commit),
                               self._segments.last_index),
                           snapshot.index if snapshot else 0)
        try:
            stop = self._segments.cut_after_recovery(stop)
            self._recording_log.cut_torn_tail()
            strays = self._remove_stray_snapshot_files()
            self._marker.open()
            if self.file_sync != "none":
                self._sync_everything()
            else:   # a clean close syncs what the killed process left in the page cache too
                self._segments.mark_dirty_after(self._marker.durable_index)
            self._note_written()
        except OSError as exc:
            raise self._fail(exc, "recovery")
        # what is synced: all of it under data/full (just done); under none only what the
        # marker says (a truncation must not lower the marker to entries never synced)
        self._durable = self._requested = self._segments.last_index if self.file_sync != "none" \
            else min(self._marker.durable_index, self._segments.last_index)
        commit = self._commit
        self._recovered = True
        if self._background:
            self._syncer = BackgroundSyncer(self._sync_batch, self._idle_sync)
        # a start past the log's end, or over entries of another term (a truncation, then a
        # crash before the new term's start was recorded), is dead: left out, and the next
        # append checks (its term is not recorded_term)
        plan = self._recording_log.plan(
            snapshot, self._segments.last_index,
            lambda i: log.term_at(i) if log.base_index < i <= log.last_index else None)
        live = self._recording_log.term_starts()
        self.recorded_term = live[-1].term if live and plan.term_starts \
            and plan.term_starts[-1] == live[-1] else None
        return Recovered(hard_state, log, snapshot, self.durable_index, commit, plan.term_starts,
                         stop, tuple(failed), strays)

    def _remove_stray_snapshot_files(self) -> tuple:
        """Delete the snapshot files a crash left behind that nothing refers to: a temporary
        file never committed, or a file renamed into place but never recorded. Recorded files
        stay, even those that fail their checksum (they are the evidence of the damage)."""
        recorded = {entry.name for entry in self._recording_log.snapshots()}
        removed = []
        for name in sorted(self.fs.listdir(self.data_dir)):
            if not name.startswith(SNAPSHOT_PREFIX):
                continue
            stray = (name.endswith(SNAPSHOT_SUFFIX + SNAPSHOT_TMP_SUFFIX)
                     or (name.endswith(SNAPSHOT_SUFFIX) and name not in recorded))
            if stray:
                try:
                    self.fs.remove(f"{self.data_dir}/{name}")
                except OSError as exc:     # leftovers never stop a start (a directory, perms)
                    warnings.warn(f"could not remove the stray snapshot file {name}: {exc}",
                                  RuntimeWarning, stacklevel=3)
                    continue
                removed.append(name)
        return tuple(removed)   # not synced: a removal a power failure undoes is redone next time

    def _align_with_snapshot(self, log, snapshot: SnapshotInfo, reported_durable: int):
        """Start the in-memory log at the snapshot. If the archived log ends below it, the old
        segments are useless (all below a durable snapshot): delete them.

        A log holding another term at the snapshot's index (or starting right after it with
        another term before it) is a snapshot installed from the leader whose
        `reset_to_snapshot` a crash prevented: the local entries from there on were never
        committed (the leader's differ), so they are dropped as the reset would have. Only
        when the node had known them committed is that corruption."""
        if log.last_index >= snapshot.index >= log.base_index:
            held = log.term_at(snapshot.index) if snapshot.index > log.base_index else log.base_term
            if held != snapshot.term:
                known_commit = max(self._marker.commit_index,
                                   self._marker.acknowledged(self.fs.boot_id())[1])
                if known_commit >= snapshot.index:
                    raise ArchiveCorruptError(
                        f"the log has term {held} at index {snapshot.index} (committed up to "
                        f"{known_commit}) but snapshot {snapshot.path} was taken at term "
                        f"{snapshot.term}", path=snapshot.path, index=snapshot.index)
                return self._reset_log_at_snapshot(snapshot)
            if snapshot.index > log.base_index:
                log.drop_prefix(snapshot.index, snapshot.term)
        elif log.last_index < snapshot.index:
            self._segments.reset_at(snapshot.index, snapshot.term)
            try:
                self.fs.sync_dir(self.data_dir)
            except OSError as exc:
                raise self._fail(exc, "recovery")
            log = _log_index_class()(snapshot.index, snapshot.term)
        return log

    def _reset_log_at_snapshot(self, snapshot: SnapshotInfo):
        """Drop every segment (a stale, uncommitted history past an installed snapshot) and
        start the log at the snapshot. The marker is lowered (synced) first, as in
        `reset_to_snapshot`: a crash before the files go must not leave a claim on entries
        that are gone (a false corruption alarm next time)."""
        index = snapshot.index
        warnings.warn(f"the log after snapshot {snapshot.path} holds another history (a crash "
                      f"before the installed snapshot reset the log): entries after index "
                      f"{index} were dropped", RuntimeWarning, stacklevel=3)
        try:
            self._marker.open()
            if self._boot is not None:
                self._marker.note_written(min(self._marker.written_index, index),
                                          min(self._marker.written_commit, index), self._boot)
            self._marker.write(min(self._marker.durable_index, index),
                               min(self._marker.commit_index, index), sync=True)
            self._segments.reset_at(index, snapshot.term)
            self.fs.sync_dir(self.data_dir)
        except OSError as exc:
            raise self._fail(exc, "recovery")
        return _log_index_class()(index, snapshot.term)

    def _sync_everything(self) -> None:
        """After recovery under data/full: what survived a kill -9 in the page cache may not
        be on disk yet; sync the segments past the old durable mark so it is."""
        for seg in self._segments.segments:
            if seg.last_index > self._marker.durable_index or seg.count == 0:
                self._sync_handle(self._segments._handle(seg))
                self._segments.trim()
        self._segments.take_dirty()
        self.fs.sync_dir(self.data_dir)
        self._marker.write(self._segments.last_index, self._commit_for_marker(), sync=True)

    # -- hard state, term starts, commit -----------------------------------------------------------
    def save_hard_state(self, term: int, voted_for: int | None) -> None:
        """Atomically replace (term, voted_for); durable on return whatever ``file_sync`` says."""
        self._check_writable()
        try:
            save_node_state(self.fs, self.data_dir, term, voted_for)
        except OSError as exc:
            raise self._fail(exc, "saving the node state")

    def record_term_start(self, term: int, index: int) -> None:
        """Note in the recording log that ``term`` begins at ``index`` (a node records its
        terms through `record_term_starts`; this is for tools and tests). Not synced."""
        self._check_writable()
        try:
            self._recording_log.append_term_start(term, index, sync=False)
        except OSError as exc:
            raise self._fail(exc, "recording a term start")
        self.recorded_term = term

    def record_term_starts(self, log, lo: int, hi: int) -> None:
        """After each `append_from(log, lo, hi)`; does nothing (one compare, the per-append
        cost) while the last entry's term is `recorded_term`, else (once per term) records
        (term, first index) for each term of ``[lo, hi)`` that the recording log's live history
        does not end with. Not synced: the term history is informational (recovery needs none
        of it), and a later snapshot entry's sync covers it. Written after the entries, so a
        crash in between leaves the start unrecorded, never one past the log; the next append
        of that term (`recorded_term` differs) records it."""
        if log.term_at(hi - 1) == self.recorded_term:
            return
        self._check_writable()
        try:
            self._append_term_starts(log, lo, hi)
        except OSError as exc:
            # informational, so not fatal (a full disk may still take entries into the
            # preallocated segments): the start is left out, once; a failed append is cut
            # back, so the recording log stays sound for later entries
            term = log.term_at(hi - 1)
            _log.warning("archive %s: term %d's start not recorded in the term history (%s); "
                         "the member goes on", self.data_dir, term, exc)
            self.recorded_term = term

    def _append_term_starts(self, log, lo: int, hi: int) -> None:
        rl = self._recording_log
        live = rl.term_starts()
        index = lo
        while index < hi:
            term = log.term_at(index)
            if index == lo:
                # the term may have begun before this batch: keep its live start if it has one
                # (a rewrite after a truncation may have left later, dead starts to supersede)
                first = next((s.index for s in live if s.term == term and s.index <= lo), None)
                if first is None:
                    first = log.first_index_of_term(term) or lo
                    if term == log.base_term and first <= log.base_index + 1:
                        # the term of the snapshot the log starts after (installed from the
                        # leader): it began at or before the snapshot, where is unknown here,
                        # so no start is recorded rather than a wrong one
                        index = log.last_index_of_term(term) + 1
                        continue
            else:
                first = index
            start = TermStart(term, first)
            if not live or live[-1] != start:
                rl.append_term_start(term, first, sync=False)
                while live and (live[-1].index >= first or live[-1].term >= term):
                    live.pop()                   # as live_term_starts supersedes
                live.append(start)
            index = log.last_index_of_term(term) + 1
        self.recorded_term = log.term_at(hi - 1)

    def note_commit_index(self, index: int) -> None:
        """Remember the commit index; stored with the next durable-marker write (no sync of its
        own) so recovery can replay committed entries before joining the cluster."""
        self._commit = max(self._commit, index)

    def _commit_for_marker(self) -> int:
        return min(self._commit, self._segments.last_index)

    # -- appending and syncing ---------------------------------------------------------------
    def append_from(self, log, lo: int, hi: int) -> None:
        """Write entries ``[lo, hi)`` of ``log`` (a `LogIndex`): one write per segment touched,
        however many entries (group commit). ``lo`` must follow the archived log's end."""
        self._check_writable()
        if lo != self._segments.last_index + 1:      # the written index
            raise ValueError(f"append_from({lo}, {hi}): the archived log ends at "
                             f"{self.written_index}; truncate_from() first to overwrite")
        while lo < hi:
            packed, count = log.pack(lo, hi, log.size_between(lo, hi))
            records, ends, last_term = _segscan.encode_records(packed, count, lo)
            try:
                self._segments.append(records, ends, lo, count, last_term)
            except OSError as exc:
                raise self._fail(exc, f"appending entries {lo}..{lo + count - 1}")
            lo += count
        if self._boot is not None:        # (inline: once per append under none)
            last = self._segments.last_index
            try:
                self._marker.note_written(last, min(self._commit, last), self._boot)
            except OSError as exc:
                raise self._fail(exc, "noting the written index in the durable marker")

    def _note_written(self) -> None:
        """Under none: durable.pos notes how far the log is written, after the log's write."""
        if self._boot is not None:
            self._marker.note_written(self._segments.last_index, self._commit_for_marker(),
                                      self._boot)

    def request_sync(self) -> None:
        """Start making everything written durable (a no-op under ``none``)."""
        if self.file_sync == "none" or self._failure is not None or not self._recovered:
            return
        target = self.written_index
        segs, dir_dirty = self._segments.take_dirty()
        if not segs and not dir_dirty and target <= self._requested:
            return
        self._requested = max(self._requested, target)
        handles = [self._segments._handle(s) for s in segs]
        if self._syncer is not None:
            self._segments.pin(segs, target)  # the sync thread uses them: no close until done
            self._syncer.submit(target, handles, dir_dirty)
            return
        try:
            self._sync_batch(target, handles, dir_dirty)
            self._idle_sync()
            self._segments.trim()
        except OSError as exc:
            raise self._fail(exc, "syncing the log")
        self._durable = max(self._durable, target)

    def on_synced(self, callback) -> bool:
        """Have ``callback()`` called, on the sync thread, each time a background sync
        completes (for waking a parked duty cycle). False when syncs run inline (``none``,
        or the simulator's files): nothing ever completes behind the caller's back."""
        if self._syncer is None:
            return False
        self._syncer.on_complete = callback
        return True

    def poll_synced(self) -> int:
        """The durable index now; raises `ArchiveIOError` if a background sync failed."""
        if self._failure is not None:
            raise self._failure
        if self._syncer is not None:
            if self._syncer.error is not None:
                raise self._fail(self._syncer.error, "syncing the log")
            if self._syncer.completed > self._durable:
                self._durable = self._syncer.completed
                self._segments.unpin(self._durable)
                try:
                    self._segments.trim()
                except OSError as exc:
                    raise self._fail(exc, "syncing the log")
        return self.durable_index

    def sync_progress_ns(self) -> int:
        """``time.monotonic_ns()`` when the sync thread last finished a step (a data sync or
        the marker's idle sync) or one sync call within one; 0 when syncs run inline."""
        return 0 if self._syncer is None else self._syncer.last_step_ns

    def _sync_call_done(self) -> None:
        """One sync call of a step returned: the disk works, if slowly. A step syncs every
        dirty segment and maybe the directory, so several slow calls in a row (1 s each, say)
        made one step of over 2 s and looked like a stall (the soak with slow disks)."""
        syncer = self._syncer
        if syncer is not None:
            syncer.last_step_ns = time.monotonic_ns()

    def sync(self, timeout_s: float = SYNC_WAIT_TIMEOUT_S) -> int:
        """Block until everything written is durable (under ``none``: synced anyway, for a
        clean shutdown). Returns the durable index. ``timeout_s`` bounds the wait for the sync
        thread (not an inline sync under ``none``: a syscall cannot be given up on)."""
        self._check_writable()
        if self.file_sync == "none":
            try:
                self._drain()
                for seg in self._segments.take_dirty()[0]:  # one at a time: the handle bound holds
                    self._sync_handle(self._segments._handle(seg))
                    self._segments.trim()
                self._sync_batch(self.written_index, [], True)
                self._idle_sync()
            except OSError as exc:
                raise self._fail(exc, "syncing the log")
            self._durable = self.written_index
            return self.durable_index
        self.request_sync()
        self._drain(timeout_s)
        return self.poll_synced()

    def _sync_handle(self, handle) -> None:
        if self.file_sync == "full":
            self.fs.fsync(handle)
        else:
            self.fs.fdatasync(handle)

    def _sync_batch(self, target: int, handles: list, sync_dir: bool) -> None:
        """Runs on the syncer thread (or inline): data first, then the marker that claims it."""
        started = time.monotonic()
        for h in handles:
            self._sync_handle(h)
            self._sync_call_done()
        if sync_dir:
            self.fs.sync_dir(self.data_dir)
            self._sync_call_done()
        self._last_data_sync_s = time.monotonic() - started
        if self._closed:      # a sync that hung past close(): its files are closed, claim nothing
            return
        self._marker.write(target, self._commit_for_marker(), sync=False)

    def _idle_sync(self) -> None:
        """Sync the durable marker when the syncer has nothing else to do -- but on the
        background thread at most every MARKER_SYNC_INTERVAL_S, and every
        MARKER_SYNC_SLOW_FACTOR times the last data sync's duration, so an idle-between-batches
        workload does not pay two device flushes per group commit, on a fast disk or a slow
        one. A marker that lags only narrows what recovery can call corruption rather than a
        torn tail; the entries it has not claimed yet are kept if intact. (Inline, as in the
        simulator, every time: deterministic, and free in memory.)"""
        if self._syncer is not None:
            now = time.monotonic()
            interval = max(MARKER_SYNC_INTERVAL_S, MARKER_SYNC_SLOW_FACTOR * self._last_data_sync_s)
            if now - self._marker_synced_at < interval:
                return
            self._marker_synced_at = now
        if not self._closed:
            self._marker.sync()

    def _drain(self, timeout_s: float = SYNC_WAIT_TIMEOUT_S) -> None:
        if self._syncer is not None:
            if not self._syncer.drain(timeout_s):
                self._durable = max(self._durable, self._syncer.completed)
                raise self._fail(OSError(errno_codes.ETIMEDOUT, (
                    f"the sync thread did not finish within {timeout_s:g} s: entries "
                    f"{self._durable + 1}..{self.written_index} may not be durable")), "syncing")
            if self._syncer.error is not None:
                raise self._fail(self._syncer.error, "syncing the log")
            self._durable = max(self._durable, self._syncer.completed)
            self._segments.unpin(self._syncer.completed)

    def _wait_for_syncs(self) -> bool:
        """For the handle table: wait for the sync thread so pinned handles can be closed.
        Never raises (a failed sync is reported by the next `poll_synced`)."""
        if self._syncer is None or not self._syncer.drain() or self._syncer.error is not None:
            return False
        self._segments.unpin(self._syncer.completed)
        return True

    # -- truncating and purging --------------------------------------------------------------
    def truncate_from(self, index: int) -> None:
        """Drop entries ``index``.. (a conflicting uncommitted tail). Under ``data``/``full``
        the cut is durable on return, so no old entry can reappear behind new ones."""
        self._check_writable()
        if index > self.written_index:
            return
        if index <= self._commit:
            raise ValueError(f"truncate_from({index}) would drop committed entries "
                             f"(commit index {self._commit})")
        self._drain()
        self.recorded_term = None               # a start at or past the cut is dead now
        if self._syncer is not None:
            self._syncer.lower_to(index - 1)     # what it synced past the cut is gone
        try:
            self._durable = min(self._durable, index - 1)
            self._requested = min(self._requested, index - 1)
            if self._boot is not None:     # lowered before the cut (synced by the write below)
                self._marker.note_written(index - 1, self._commit_for_marker(), self._boot)
            self._marker.write(self._durable, self._commit_for_marker(), sync=True)
            self._segments.truncate_from(index)
            if self.file_sync != "none":
                segs, dir_dirty = self._segments.take_dirty()
                self._sync_batch(self.written_index, [self._segments._handle(s) for s in segs],
                                 dir_dirty)
            self._segments.trim()
        except OSError as exc:
            raise self._fail(exc, f"truncating from index {index}")

    def remove_file(self, path: str) -> None:
        """Delete a file the archive no longer needs (an old snapshot): on the remover thread
        with real files, at once otherwise. Raises OSError only when deleting at once."""
        if self._remover is not None:
            self._remover.submit(path)
        else:
            self.fs.remove(path)

    def release_later(self, obj: object) -> None:
        """Let the remover thread drop ``obj`` (a payload chunk the log index released, see
        ``LogIndex.retire``), so freeing it does not hold up the caller; without a remover it
        is dropped at once."""
        if self._remover is not None:
            self._remover.release(obj)

    @property
    def removals_pending(self) -> int:
        """Files handed to the remover thread and not deleted yet (0 without one)."""
        return 0 if self._remover is None else self._remover.pending

    def drain_removals(self, timeout_s: float = 30.0) -> bool:
        """Wait for the remover thread to delete what it was given (tests, tools)."""
        return True if self._remover is None else self._remover.drain(timeout_s)

    def purge_below(self, index: int) -> int:
        """Delete whole segment files below ``index``, which must not exceed the newest
        recorded snapshot. Returns how many files were deleted."""
        self._check_writable()
        newest = max((s.index for s in self._recording_log.snapshots()), default=0)
        if index > newest + 1:
            raise ValueError(f"purge_below({index}): no snapshot covers the entries below it "
                             f"(newest snapshot at {newest})")
        if self._syncer is not None:
            self.poll_synced()       # unpins what the sync thread finished
            if self._segments.purge_touches_pinned(index):
                # a segment to delete is in a running sync: wait for it (rare: the snapshot
                # covers whole segments written since the last sync finished)
                self._drain()
        try:
            return self._segments.purge_below(index)
        except OSError as exc:
            raise self._fail(exc, f"purging below index {index}")

    def reset_to_snapshot(self, index: int, term: int, keeps_suffix: bool,
                          purge: bool = True) -> None:
        """The archived log after a snapshot at (``index``, ``term``) was installed from the
        leader (InstallSnapshot). The snapshot must already be recorded.

        ``keeps_suffix``: the member's log holds the entry (``index``, ``term``), so the entries
        after it stay; only whole segments below the snapshot are purged. Otherwise (or when
        the archived entry at ``index`` is missing or of another term) every segment is
        dropped and the next append starts at ``index + 1``. Durable on return; the commit
        index becomes at least ``index``. ``purge=False`` (a backup, which keeps older
        snapshots as fallbacks and purges below the oldest itself) keeps the segments below."""
        self._check_writable()
        newest = max((s.index for s in self._recording_log.snapshots()), default=0)
        if index > newest:
            raise ValueError(f"reset_to_snapshot({index}): record the snapshot first "
                             f"(newest recorded snapshot at {newest})")
        if keeps_suffix and self._holds(index, term):
            self._commit = max(self._commit, index)
            if purge:
                self.purge_below(index + 1)
            return
        self._drain()
        self.recorded_term = None               # starts past the snapshot are dead now
        if self._syncer is not None:
            self._syncer.lower_to(index)         # what it synced past the snapshot is gone
        try:
            # lower the marker before the old segments go: a crash in between must not find
            # a claim on entries the reset already removed (a false corruption alarm)
            if self._boot is not None:
                self._marker.note_written(min(self._marker.written_index, index),
                                          self._commit_for_marker(), self._boot)
            self._marker.write(min(self._durable, index), self._commit_for_marker(), sync=True)
            self._segments.reset_at(index, term)
            self.fs.sync_dir(self.data_dir)
            self._durable = self._requested = index
            self._commit = max(self._commit, index)
            self._marker.write(index, self._commit_for_marker(), sync=True)
            self._note_written()
        except OSError as exc:
            raise self._fail(exc, f"resetting the log at snapshot {index}")

    def _holds(self, index: int, term: int) -> bool:
        segments = self._segments
        if index == segments.base_index:
            return segments.base_term == term
        if not segments.base_index < index <= self.written_index:
            return False
        try:
            return self._segments.read(index)[0] == term
        except (OSError, ValueError):
            return False

    def recorded_snapshots(self) -> list:
        """`SnapshotInfo` of every recorded snapshot whose file still exists, lowest index first.
        Not re-verified (recovery verifies the one it loads): for retention and transfer."""
        out = []
        for entry in self._recording_log.snapshots():
            path = f"{self.data_dir}/{entry.name}"
            if not self.fs.exists(path):
                continue
            handle = self.fs.open_file(path)
            try:
                size = self.fs.size(handle)
            finally:
                self.fs.close(handle)
            out.append(SnapshotInfo(entry.index, entry.term, path, entry.checksum,
                                    entry.timestamp_ns, size))
        out.sort(key=lambda info: info.index)
        return out

    # -- snapshots ---------------------------------------------------------------------------
    def begin_snapshot(self, index: int, term: int) -> SnapshotWriter:
        """A writable file for the snapshot taken at (``index``, ``term``); `commit()` it.

        A file that cannot be made (ENOSPC: exhausted inodes, a full directory block) raises
        the OSError as it is, as a refused write of its bytes does: the archive stays
        writable, since nothing of the log was touched. The caller decides whether it is
        fatal (a received snapshot: `fail_writing`; one of the member's own: not)."""
        self._check_writable()
        return SnapshotWriter(self.fs, self.data_dir, self._recording_log, index, term)

    def latest_valid_snapshot(self) -> SnapshotInfo | None:
        return latest_valid_snapshot(self.fs, self.data_dir, self._recording_log)[0]

    def open_snapshot(self, info: SnapshotInfo):
        return open_snapshot(self.fs, info)

    def read(self, index: int) -> tuple:
        """(term, type, payload) of an archived entry, read back from its segment."""
        return self._segments.read(index)

    # -- failure and closing -----------------------------------------------------------------
    def _check_writable(self) -> None:
        if self._closed:
            raise ArchiveIOError(f"archive {self.data_dir} is closed")
        if self._failure is not None:
            raise ArchiveIOError(f"archive {self.data_dir} refuses writes after an earlier "
                                 f"failure: {self._failure}", self._failure.errno)
        if not self._recovered:
            raise RuntimeError("call recover() before writing to the archive")

    def check_files(self) -> None:
        """Raise ArchiveIOError (and refuse writes from now on) if a file the archive writes
        was deleted under it: the segment being appended to, the durable marker, or the node
        state once saved. The node would go on acknowledging entries written into a file
        with no name, all lost at its next start; it stops instead (checked once a second)."""
        if self._failure is not None or self._closed:
            return
        segments = self._segments.segments
        held = [(self._marker.path, self._marker.handle)]
        if segments and segments[-1].handle is not None:
            held.append((segments[-1].path, segments[-1].handle))
        gone = [path for path, handle in held if handle is not None and self.fs.unlinked(handle)]
        state_path = f"{self.data_dir}/{NODE_STATE_FILE}"
        if self._state_seen and not self.fs.exists(state_path):
            gone.append(state_path)
        elif not self._state_seen:
            self._state_seen = self.fs.exists(state_path)
        if gone:
            self._failure = ArchiveIOError(
                f"archive {self.data_dir}: {', '.join(gone)} deleted while the node ran (it "
                "went on writing into files with no name, all lost at its next start); the "
                "node stops rather than acknowledge more. Restart it: it recovers what is "
                "left in the data dir and catches up from the leader", errno_codes.ENOENT)
            raise self._failure

    def fail_writing(self, exc: BaseException, doing: str) -> ArchiveIOError:
        """A write of the node's into the data dir failed (a received snapshot's): the
        archive refuses writes from now on, and the error to stop with says what and why."""
        return self._fail(exc, doing)

    def _fail(self, exc: BaseException, doing: str) -> ArchiveIOError:
        if self._failure is None:
            code = getattr(exc, "errno", None)
            hint = {errno_codes.ENOSPC: "the disk is full", errno_codes.EIO: "an I/O error",
                    errno_codes.ETIMEDOUT: "a sync that did not finish (a hung disk?)"}.get(code, str(exc))
            self._failure = ArchiveIOError(
                f"archive {self.data_dir}: {hint} while {doing} ({exc}); the archive now refuses "
                "writes. What was durable before is intact: free space / fix the disk and "
                "restart the node.", code)
            self._failure.__cause__ = exc if isinstance(exc, BaseException) else None
        return self._failure

    def close(self) -> None:
        """Sync what was written (all policies, for a clean shutdown) and release files."""
        if self._closed:
            return
        deadline = time.monotonic() + CLOSE_SYNC_TIMEOUT_S
        try:
            if self._recovered and self._failure is None:
                try:
                    self.sync(CLOSE_SYNC_TIMEOUT_S)
                except ArchiveIOError as exc:
                    if exc.errno == errno_codes.ETIMEDOUT:   # the data stays; its sync is unknown
                        _log.warning("archive %s: closing without a complete sync: %s",
                                     self.data_dir, exc.__cause__ or exc)
                    raise
                # a commit noted after the last sync (no append since) is not in the marker
                # yet: a clean close keeps it, so recovery replays what was committed
                commit = min(self._commit_for_marker(), self._marker.durable_index)
                if commit > self._marker.commit_index:
                    try:
                        self._marker.write(self._marker.durable_index, commit, sync=False)
                    except OSError as exc:
                        raise self._fail(exc, "closing")
                self._marker.sync()
        finally:
            self._closed = True
            sync_ended = True
            if self._syncer is not None:
                sync_ended = self._syncer.stop(max(0.0, deadline - time.monotonic()))
            if self._remover is not None:
                # a reopened archive must not meet half-deleted files (what is left past the
                # limit is only stale segments, which recovery ignores; the remover says so)
                self._remover.close(max(0.0, min(30.0, deadline - time.monotonic())))
            self._release_files(sync_ended)

    def _release_files(self, sync_ended: bool = True) -> None:
        closes = [self._segments.close, self._recording_log.close, self._marker.close]
        if not sync_ended:
            # the sync thread still holds the segments' and the marker's descriptors (a hung
            # fsync, then the marker's write): closed under it, a reused number would take
            # that write into another file. Left open for it: restart the process before this
            # data dir is opened again (that thread may still write durable.pos when it ends).
            _log.warning("archive %s: the sync thread is still busy (a hung disk?): the log's "
                         "segment files and durable.pos are left open for it; restart the "
                         "process before opening this data dir again", self.data_dir)
            closes = [self._recording_log.close]
        for close in closes:
            try:
                close()
            except OSError:  # a handle the OS already dropped; keep closing the others
                pass

    def __enter__(self) -> "Archive":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _check_data_dir(fs: FileSystem, data_dir: str) -> None:
    """A data dir that cannot be used is a DataDirError (a configuration error, exit status 2);
    one refused for lack of space is an ArchiveIOError (a full disk, status 4: it passes once
    space is freed, so a supervisor must not take it for a permanent misconfiguration)."""
    try:
        fs.makedirs(data_dir)
    except OSError as exc:
        _raise_if_disk_full(exc, data_dir, "creating it")
        raise DataDirError(data_dir, f"cannot create it ({exc.strerror or exc})") from exc
    probe = f"{data_dir}/.write-probe"
    try:
        h = fs.open_file(probe, create=True)
        try:
            fs.pwrite(h, b"probe", 0)
        finally:
            fs.close(h)
        fs.remove(probe)
    except OSError as exc:
        try:
            fs.remove(probe)          # made, then refused its bytes (a full disk)
        except OSError:
            pass
        _raise_if_disk_full(exc, data_dir, "checking that it takes writes")
        raise DataDirError(data_dir, f"not writable ({exc.strerror or exc})") from exc


_DISK_FULL_ERRNOS = (errno_codes.ENOSPC, getattr(errno_codes, "EDQUOT", errno_codes.ENOSPC))


def _raise_if_disk_full(exc: OSError, data_dir: str, doing: str) -> None:
    if exc.errno in _DISK_FULL_ERRNOS:
        raise ArchiveIOError(f"archive {data_dir}: the disk is full while {doing} ({exc}): "
                             "free space and start the node again", exc.errno) from exc
