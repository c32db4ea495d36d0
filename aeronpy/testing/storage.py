"""In-memory durable state of a simulated member: the driver side of the archive interface
(docs/internal/interfaces.md section 3) with written-versus-synced semantics.

What was *written* survives a process crash (it is in the OS page cache); only what was
*synced* survives a power failure, plus possibly a prefix of the unsynced writes, the last
of which may be torn (a torn record fails its CRC on recovery and is dropped, so it reads as
a shorter prefix). The hard state (term, vote) is always saved atomically and synced.
This is a stand-in until the real archive over ``MemFileSystem`` is swapped in.
"""
from __future__ import annotations

from aeronpy.core.config import HardState

FILE_SYNC_POLICIES = ("none", "data", "full")


def default_log_factory():
    """The compiled log when it is built, else the plain-Python model of it."""
    try:
        from aeronpy._logindex import LogIndex
    except ImportError:
        from aeronpy.testing.reference_log import ReferenceLogIndex as LogIndex
    return LogIndex


class Recovered:
    __slots__ = ("hard_state", "log", "snapshot", "durable_index")

    def __init__(self, hard_state, log, snapshot, durable_index):
        self.hard_state = hard_state
        self.log = log
        self.snapshot = snapshot
        self.durable_index = durable_index


class MemStorage:
    def __init__(self, file_sync: str = "data", log_factory=None):
        if file_sync not in FILE_SYNC_POLICIES:
            raise ValueError(f"file_sync: expected one of {FILE_SYNC_POLICIES}, got {file_sync!r}")
        self.file_sync = file_sync
        self._log_factory = log_factory or default_log_factory()
        self.hard_state = HardState()
        self.written: list = []     # (term, type, payload) of indexes 1.. as the OS sees them
        self.synced: list = []      # what is on the platter
        self._journal: list = []    # writes since the last sync, in order
        self.syncs = 0

    # ------------------------------------------------------------------ archive driver side
    def save_hard_state(self, term: int, voted_for: int) -> None:
        self.hard_state = HardState(term, voted_for)    # atomic rename + fsync

    def truncate_from(self, index: int) -> None:
        if index < 1:
            raise ValueError(f"truncate_from: index must be >= 1, got {index}")
        del self.written[index - 1:]
        self._journal.append(("truncate", index, None))

    def append_from(self, log, lo: int, hi: int) -> None:
        if lo != len(self.written) + 1:
            raise ValueError(f"append_from: expected to continue at {len(self.written) + 1}, got {lo}")
        entries = [(log.term_at(i), log.type_at(i), bytes(log.payload_at(i))) for i in range(lo, hi)]
        self.written.extend(entries)
        self._journal.append(("append", lo, entries))

    def sync(self) -> int:
        if self._journal:
            _replay(self.synced, self._journal)
            self._journal = []
            self.syncs += 1
        return self.durable_index

    @property
    def durable_index(self) -> int:
        """Last index that survives a power failure (under ``none``: a process crash)."""
        return len(self.synced) if self.file_sync != "none" else len(self.written)

    def durable_term_at(self, index: int):
        entries = self.synced if self.file_sync != "none" else self.written
        return entries[index - 1][0] if 0 < index <= len(entries) else None

    def written_term_at(self, index: int):
        return self.written[index - 1][0] if 0 < index <= len(self.written) else None

    def recover(self) -> Recovered:
        log = self._log_factory()
        for term, type_, payload in self.written:
            log.append(term, type_, payload)
        return Recovered(self.hard_state, log, None, self.durable_index)

    # ------------------------------------------------------------------ faults
    def crash(self) -> None:
        """Process crash: everything written is in the OS and survives; nothing to do."""

    def power_fail(self, rng) -> int:
        """Machine crash: keep what was synced plus a random prefix of the later writes, the
        last of which may be cut short. Returns how many unsynced writes were lost."""
        journal = self._journal
        keep = rng.randrange(0, len(journal) + 1)
        survivors = journal[:keep]
        if keep < len(journal) and journal[keep][0] == "append":
            _op, lo, entries = journal[keep]
            torn = rng.randrange(0, len(entries) + 1)   # records fully on disk before the tear
            if torn:
                survivors.append(("append", lo, entries[:torn]))
        _replay(self.synced, survivors)
        self.written = list(self.synced)
        self._journal = []
        return len(journal) - keep


def _replay(entries: list, journal: list) -> list:
    """Apply journalled writes to ``entries`` in place."""
    for op, index, payload in journal:
        if op == "truncate":
            del entries[index - 1:]
        else:
            if index != len(entries) + 1:
                # the write landed after a lost truncation or append: the file has a hole
                # that recovery would treat as the end of the log
                break
            entries.extend(payload)
    return entries
