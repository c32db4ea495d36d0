"""A simulated member's disk: the real ``Archive`` over its own ``MemFileSystem``.

The file system outlives the member's incarnations; the archive is the current incarnation's.
A process crash (``MemFileSystem.crash``) keeps what was written, a power failure
(``power_fail(rng)``) keeps only what was synced plus a random, possibly torn, prefix of the
rest. Either way the disk is *recovered at once* (``Archive.open`` + ``recover``, exactly as a
restarting node does): nothing touches a dead member's files, so recovering now or at restart
finds the same bytes, and the invariant checker sees what really survived while the member is
down. The recovered state waits for :meth:`take_recovered` at restart.

Beside the archive the disk keeps a shadow of the terms it handed to the archive, so the
checker can ask "what term is durable at index i" after every event without reading files,
and the index of the newest recorded snapshot (entries up to it survive inside the snapshot
even after the log below it was purged).
"""
from __future__ import annotations

from array import array

from aeronpy.archive import Archive

FILE_SYNC_POLICIES = ("none", "data", "full")
DEFAULT_SIM_SEGMENT_BYTES = 4096      # small, so the swarm rolls segments over often


def default_log_factory():
    """The compiled log (the archive and the core need it; there is no fallback)."""
    from aeronpy._logindex import LogIndex
    return LogIndex


class SimDisk:
    def __init__(self, member_id: int, file_sync: str = "data",
                 segment_bytes: int = DEFAULT_SIM_SEGMENT_BYTES, fs=None):
        if file_sync not in FILE_SYNC_POLICIES:
            raise ValueError(f"file_sync: expected one of {FILE_SYNC_POLICIES}, got {file_sync!r}")
        from aeronpy.archive import MemFileSystem
        self.member_id = member_id
        self.file_sync = file_sync
        self.segment_bytes = segment_bytes
        self.fs = fs or MemFileSystem()
        self.data_dir = f"/member-{member_id}"
        self.archive = None
        self.recoveries = 0
        # the node's DATA_DIR/rejoining file (written and synced before the member may vote):
        # survives crashes and power failures; only a wipe (a new SimDisk) loses it
        self.rejoin_mark = False
        # DATA_DIR/new-member (aeronpy tool new-member): taken by the next start, which then
        # starts unmarked on an empty disk (new_member.py)
        self.new_member = False
        self._recovered = None
        self._base = 0
        self._terms = array("q")           # term of index base+1+i as handed to the archive
        self._open()

    # ------------------------------------------------------------------ incarnations
    def _open(self) -> None:
        self.archive = Archive.open(self.data_dir, file_sync=self.file_sync, segment_bytes=self.segment_bytes,
                                    fs=self.fs, background_sync=False)
        recovered = self.archive.recover()
        self.recoveries += 1
        log = recovered.log
        self._base = log.base_index
        self._terms = array("q", (log.term_at(i) for i in range(log.first_index, log.last_index + 1)))
        self._recovered = recovered
        self.snapshot_index = recovered.snapshot.index if recovered.snapshot is not None else 0

    def take_recovered(self):
        """What recovery found, for the incarnation that starts now (once per recovery)."""
        recovered, self._recovered = self._recovered, None
        if recovered is None:
            raise RuntimeError(f"member {self.member_id}: the disk was not recovered since its last start")
        return recovered

    def crash(self) -> None:
        """kill -9: the page cache survives; open handles die. Recovers at once (see above)."""
        self.fs.crash()
        self._open()

    def power_fail(self, rng) -> None:
        """Machine crash: only synced data (plus a random, possibly torn prefix) survives."""
        self.fs.power_fail(rng)
        self._open()

    # ------------------------------------------------------------------ the driver's side
    def truncate_from(self, index: int) -> None:
        self.archive.truncate_from(index)
        del self._terms[max(0, index - self._base - 1):]

    def save_hard_state(self, term: int, voted_for) -> None:
        self.archive.save_hard_state(term, voted_for)

    def append_from(self, log, lo: int, hi: int) -> None:
        self.archive.append_from(log, lo, hi)
        self._terms.extend(log.term_at(i) for i in range(lo, hi))

    def note_snapshots(self) -> None:
        """A snapshot was recorded (and the log below the oldest kept one purged): entries up
        to the newest recorded snapshot survive any crash inside it."""
        recorded = self.archive.recorded_snapshots()
        if recorded:
            self.snapshot_index = max(self.snapshot_index, recorded[-1].index)

    def reset_shadow_at(self, index: int) -> None:
        """A snapshot at ``index`` was installed: the archive's log now starts after it and
        holds what ``Archive.reset_to_snapshot`` kept; read those terms back from it."""
        self.note_snapshots()
        archive = self.archive
        self._base = index
        self._terms = array("q", (archive.read(i)[0] for i in range(index + 1, archive.written_index + 1)))

    # ------------------------------------------------------------------ the checker's view
    @property
    def written_index(self) -> int:
        return self._base + len(self._terms)

    @property
    def durable_index(self) -> int:
        """Last index that survives a power failure (under ``none``: a process crash)."""
        return self.archive.durable_index

    def written_term_at(self, index: int):
        offset = index - self._base - 1
        return self._terms[offset] if 0 <= offset < len(self._terms) else None

    def durable_term_at(self, index: int):
        return self.written_term_at(index) if index <= self.archive.durable_index else None

    def durably_holds(self, index: int, term: int) -> bool:
        """Entry (index, term) survives a power failure: in the durable log, or inside a
        recorded (always synced) snapshot."""
        return index <= self.snapshot_index or self.durable_term_at(index) == term
