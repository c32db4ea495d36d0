"""Live figures of a node in ``DATA_DIR/counters.dat``, readable by any process at any time.

Why a memory-mapped file (as Aeron's cnc.dat): the agent publishes with plain stores into
shared memory, no lock, no syscall, no cooperation; ``aeronpy tool``, a metrics scraper or a
test reads the same pages from another process, even after the node died.

File layout (native byte order, little-endian on every supported platform):

- header, 128 bytes: ``magic "AERONCTR" | u32 version | u32 layout_id | i64 pid |
  i64 start_time_ns | i32 member_id | i32 cluster_id | u32 slot_count | u32 labels_offset |
  u32 values_offset | u32 metadata_offset | u32 metadata_length | u32 0 | i64 writer_state``
  (``layout_id`` is a CRC of the slot names, so a reader knows which slot table it sees;
  ``writer_state`` 1 = running, 2 = closed cleanly);
- metadata: UTF-8 JSON written once (members, enum value names, config);
- labels: one 128-byte record per slot: ``u8 kind (0 gauge, 1 counter) | u8 name_len |
  u8 help_len | u8 0 | name[48] | help[76]``;
- values: one int64 per slot, 64-byte aligned.

**Torn reads.** Every value is an int64 at an 8-byte aligned offset of a page-aligned mapping;
writer and reader access it through ``memoryview.cast('q')``, which moves it with one 8-byte
load or store. Aligned 8-byte accesses are atomic on x86-64 and AArch64, so a reader sees the
old or the new value of a slot, never a mix. Slots are independent: a reader may see a
``commit_index`` from one duty cycle and ``append_index`` from the next, which is fine for
monitoring and is why no figure is derived from two slots.

The file is created complete under a temporary name and renamed into place, so a reader never
sees a half-written header; a restarted node replaces it, and readers open it afresh.
The error log and pid file beside it are in `aeronpy.cluster.nodefiles`.
"""
from __future__ import annotations

import enum
import json
import os
import struct
import time
import zlib
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Optional

import mmap

from aeronpy.archive.fs import NotARegularFileError, check_regular_if_present, open_regular
from aeronpy.errors import AeronpyError
from aeronpy.service import Role

COUNTERS_FILE = "counters.dat"

_MAGIC = b"AERONCTR"
_VERSION = 1
_HEADER = struct.Struct("<8sIIqqiiIIIIII")
_HEADER_BYTES = 128
_WRITER_STATE_OFFSET = 64
_LABEL = struct.Struct("<BBBx48s76s")
_NAME_MAX, _HELP_MAX = 48, 76
_METADATA_MAX = 64 * 1024
WRITER_RUNNING, WRITER_CLOSED = 1, 2
_REPLACE_HINT = "remove it (a node writes a new counters file there each time it starts)"
GAUGE, COUNTER = 0, 1

# (name, kind, initial value, help). Indexes are positions in this table; never reorder
# without bumping _VERSION (layout_id changes by itself).
STANDARD_SLOTS: tuple = (
    ("role", GAUGE, -1, "Role: -1 unknown, 0 follower, 1 candidate, 2 leader"),
    ("leadership_term", GAUGE, 0, "Current leadership term"),
    ("leader_id", GAUGE, -1, "Member id of the known leader, -1 if none"),
    ("commit_index", GAUGE, 0, "Highest log index known committed"),
    ("append_index", GAUGE, 0, "Highest log index appended locally"),
    ("election_state", GAUGE, -1, "Election state machine code"),
    ("consensus_module_state", GAUGE, 0, "Consensus module state code"),
    ("snapshot_count", COUNTER, 0, "Snapshots taken by this node since it started"),
    ("sessions_open", GAUGE, 0, "Client sessions open"),
    ("elections_held", COUNTER, 0, "Elections seen: times the leadership term advanced"),
    ("frames_in", COUNTER, 0, "UDP frames received"),
    ("frames_out", COUNTER, 0, "UDP frames sent"),
    ("bytes_in", COUNTER, 0, "UDP bytes received"),
    ("bytes_out", COUNTER, 0, "UDP bytes sent"),
    ("naks_sent", COUNTER, 0, "NAKs sent for gaps in received streams"),
    ("naks_received", COUNTER, 0, "NAKs received from peers"),
    ("retransmits", COUNTER, 0, "Frames retransmitted"),
    ("drops_wrong_cluster", COUNTER, 0, "Frames dropped: another cluster id"),
    ("drops_unknown_member", COUNTER, 0, "Frames dropped: unknown sender member id"),
    ("drops_bad_mac", COUNTER, 0, "Frames dropped: MAC check failed"),
    ("drops_malformed", COUNTER, 0, "Frames dropped: failed to decode"),
    ("drops_too_large", COUNTER, 0, "Frames or messages dropped: over a size limit"),
    ("drops_stale", COUNTER, 0, "Frames dropped: from an old epoch or term"),
    ("drops_other", COUNTER, 0, "Frames dropped for any other reason"),
    ("errors", COUNTER, 0, "Errors recorded in errors.log"),
    ("duty_cycles", COUNTER, 0, "Duty cycles run"),
    ("max_duty_cycle_ns", GAUGE, 0, "Longest duty cycle seen, ns"),
    ("last_update_ns", GAUGE, 0, "Wall clock of the last counters update, ns since epoch"),
)
SlotId = enum.IntEnum("SlotId", [(name.upper(), i) for i, (name, *_rest) in enumerate(STANDARD_SLOTS)])
SlotId.__doc__ = "Index of each standard slot in `CountersWriter.values` (cache int(...) on hot paths)."
_LAST_UPDATE_NS = int(SlotId.LAST_UPDATE_NS)
_DUTY_CYCLES = int(SlotId.DUTY_CYCLES)
_MAX_DUTY_CYCLE_NS = int(SlotId.MAX_DUTY_CYCLE_NS)

class ConsensusModuleState(enum.IntEnum):
    """Codes of the ``consensus_module_state`` slot (Aeron's ConsensusModule.State, plus FAILED).

    ACTIVE sequences client messages; SUSPENDED (after ``aeronpy tool suspend``) appends
    nothing but admin actions; SNAPSHOT while an admin or final snapshot is being taken;
    QUITTING after a shutdown/abort action, until the member may stop (a leader waits for
    its followers to learn the action's commit); TERMINATING while the node closes; CLOSED
    once it has; FAILED after a service raised (the node stops)."""
    INIT = 0
    ACTIVE = 1
    SUSPENDED = 2
    SNAPSHOT = 3
    QUITTING = 4
    TERMINATING = 5
    CLOSED = 6
    FAILED = 7


def _election_state_names() -> dict:
    from aeronpy.core.election import ElectionState
    return {-1: "UNKNOWN", **{int(s): s.name for s in ElectionState}}


def knows_a_leader(role: int, leader_id: int, election_state: int) -> bool:
    """Whether a member's published figures show a live leader: it leads, or it names a
    leader and is in no election (CANVASS, NOMINATE, CANDIDATE_BALLOT: the leader it names is
    only the last one it knew). The rule of the ``no_leader_since_ns`` slot and of
    ``aeronpy tool describe``'s "no leader since", with one more: a member that names a
    leader it has not heard since its last canvass (one a quorum refused) has none either;
    the node sees that (RaftCore.heard_leader_since_campaign), the figures do not, so
    describe also goes by the slot."""
    if role == int(Role.LEADER):
        return True
    return leader_id >= 0 and election_state not in _ELECTION_STATES_WITHOUT_LEADER


def _election_states_without_leader() -> tuple:
    from aeronpy.core.election import ElectionState
    return tuple(int(s) for s in (ElectionState.CANVASS, ElectionState.NOMINATE,
                                  ElectionState.CANDIDATE_BALLOT))


_ELECTION_STATES_WITHOUT_LEADER = _election_states_without_leader()


DEFAULT_ENUM_NAMES: dict = {
    "role": {-1: "UNKNOWN", **{int(r): r.name for r in Role}},
    "election_state": _election_state_names(),
    "consensus_module_state": {int(s): s.name for s in ConsensusModuleState},
}


class CountersUnavailableError(AeronpyError, FileNotFoundError):
    """The data dir has no readable counters file (no node ever ran there, or it is foreign)."""


def _layout_id(names: Iterable[str]) -> int:
    return zlib.crc32("\n".join(names).encode())


def _normalise_enum_names(enum_names: Optional[Mapping]) -> dict:
    out = {k: dict(v) for k, v in DEFAULT_ENUM_NAMES.items()}
    for slot, names in (enum_names or {}).items():
        if isinstance(names, type) and issubclass(names, enum.Enum):
            names = {int(m.value): m.name for m in names}
        unknown = out.get(slot, {}).get(-1)       # keep the name of the slot's initial -1
        out[slot] = {**({-1: unknown} if unknown else {}),
                     **{int(k): str(v) for k, v in names.items()}}
    return out


class SlotHandle:
    """A named slot, for code off the hot path (``writer.slot("errors").add(1)``)."""

    __slots__ = ("name", "index", "_values")

    def __init__(self, name: str, index: int, values: memoryview):
        self.name, self.index, self._values = name, index, values

    def set(self, value: int) -> None:
        self._values[self.index] = value

    def add(self, delta: int = 1) -> None:
        self._values[self.index] += delta

    def get(self) -> int:
        return self._values[self.index]


class CountersWriter:
    """Creates ``DATA_DIR/counters.dat`` and publishes the node's figures into it.

    Hot path: ``writer.values[i] = v`` (``values`` is the int64 array; ``i`` an int cached from
    `SlotId` or `index`), one store with no call, lock or syscall. Call `touch` once per duty
    cycle (``time.time_ns`` is a vDSO read, not a syscall) so readers can tell a live node.
    """

    def __init__(self, data_dir: "str | os.PathLike", *, member_id: int, cluster_id: int,
                 members: Iterable[Mapping] = (), extra_slots: Iterable[tuple] = (),
                 enum_names: Optional[Mapping] = None, config: Optional[Mapping] = None,
                 pid: Optional[int] = None) -> None:
        self.data_dir = os.fspath(data_dir)
        self.path = os.path.join(self.data_dir, COUNTERS_FILE)
        slots = list(STANDARD_SLOTS)
        for extra in extra_slots:  # (name, kind[, help])
            name, kind, help_text = (tuple(extra) + ("",))[:3]
            slots.append((name, kind, 0, help_text or name.replace("_", " ")))
        names = [s[0] for s in slots]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate counter slot names in {names}")
        for name in names:
            if not name.isidentifier() or len(name.encode()) > _NAME_MAX:
                raise ValueError(f"counter slot name {name!r} must be an identifier of <= 48 bytes")
        self.names = tuple(names)
        self._index = {n: i for i, n in enumerate(names)}
        metadata = json.dumps({
            "members": [dict(m) for m in members], "config": dict(config or {}),
            "enum_names": {k: {str(c): n for c, n in v.items()}
                           for k, v in _normalise_enum_names(enum_names).items()},
        }, default=str).encode()
        if len(metadata) > _METADATA_MAX:
            raise ValueError(f"counters metadata is {len(metadata)} bytes, over {_METADATA_MAX}")
        self._create_file(slots, metadata, member_id, cluster_id, os.getpid() if pid is None else pid)
        self._file = os.fdopen(open_regular(self.path, os.O_RDWR, hint=_REPLACE_HINT), "r+b")
        self._map = mmap.mmap(self._file.fileno(), 0)
        whole = memoryview(self._map)
        self._header = whole[_WRITER_STATE_OFFSET:_WRITER_STATE_OFFSET + 8].cast("q")
        self.values = whole[self._values_offset:self._values_offset + 8 * len(slots)].cast("q")
        whole.release()
        self._header[0] = WRITER_RUNNING
        self.touch()

    def _create_file(self, slots, metadata: bytes, member_id: int, cluster_id: int, pid: int) -> None:
        labels_offset = _HEADER_BYTES + ((len(metadata) + 127) // 128) * 128
        values_offset = labels_offset + _LABEL.size * len(slots)
        values_offset = (values_offset + 63) // 64 * 64
        self._values_offset = values_offset
        buf = bytearray(values_offset + 8 * len(slots))
        _HEADER.pack_into(buf, 0, _MAGIC, _VERSION, _layout_id(s[0] for s in slots), pid,
                          time.time_ns(), member_id, cluster_id, len(slots), labels_offset,
                          values_offset, _HEADER_BYTES, len(metadata), 0)
        buf[_HEADER_BYTES:_HEADER_BYTES + len(metadata)] = metadata
        for i, (name, kind, initial, help_text) in enumerate(slots):
            name_b = name.encode()
            help_b = help_text.encode()[:_HELP_MAX].decode(errors="ignore").encode()
            _LABEL.pack_into(buf, labels_offset + i * _LABEL.size, kind, len(name_b), len(help_b),
                             name_b, help_b)
            struct.pack_into("<q", buf, values_offset + 8 * i, initial)
        os.makedirs(self.data_dir, exist_ok=True)
        # a directory there would fail the rename below with a bare EISDIR, and a FIFO or a
        # device is not what a reader may open: refuse either, naming the file
        check_regular_if_present(self.path, _REPLACE_HINT)
        tmp = f"{self.path}.{os.getpid()}.tmp"
        try:
            try:
                with open(tmp, "wb") as f:
                    f.write(buf)
                os.replace(tmp, self.path)
            except OSError as exc:
                if exc.filename is None:      # a refused write names no file: name it
                    raise OSError(exc.errno, exc.strerror, tmp) from exc
                raise
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise

    @classmethod
    def for_config(cls, config: Any, **kwargs: Any) -> "CountersWriter":
        """A writer for a `NodeConfig`: ids, members and config are recorded in the file."""
        return cls(config.data_dir, member_id=config.member_id, cluster_id=config.cluster_id,
                   members=[m for m in config.to_dict()["members"]], config=config.to_dict(),
                   **kwargs)

    def index(self, name: str) -> int:
        """Index of a slot in `values`; look it up once, outside the hot path."""
        try:
            return self._index[name]
        except KeyError:
            raise KeyError(f"no counter slot {name!r}; slots are {', '.join(self.names)}") from None

    def slot(self, name: str) -> SlotHandle:
        return SlotHandle(name, self.index(name), self.values)

    def touch(self, now_ns: Optional[int] = None) -> None:
        self.values[_LAST_UPDATE_NS] = time.time_ns() if now_ns is None else now_ns

    def observe_duty_cycle(self, duration_ns: int) -> None:
        values = self.values
        values[_DUTY_CYCLES] += 1
        if duration_ns > values[_MAX_DUTY_CYCLE_NS]:
            values[_MAX_DUTY_CYCLE_NS] = duration_ns

    def observe_duty_cycles(self, count: int, longest_ns: int) -> None:
        """``count`` duty cycles ran since the last call, the longest taking ``longest_ns``."""
        values = self.values
        values[_DUTY_CYCLES] += count
        if longest_ns > values[_MAX_DUTY_CYCLE_NS]:
            values[_MAX_DUTY_CYCLE_NS] = longest_ns

    def close(self) -> None:
        """Mark the file closed cleanly (readers then report "stopped", not "dead")."""
        if self._map is None:
            return
        self.touch()
        self._header[0] = WRITER_CLOSED
        self.values.release()
        self._header.release()
        self._map.flush()
        self._map.close()
        self._file.close()
        self._map = None

    def __enter__(self) -> "CountersWriter":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def mark_failed_in_place(data_dir: "str | os.PathLike", pid: Optional[int] = None,
                         errors: int = 1) -> None:
    """Overwrite the ``counters.dat`` already in ``data_dir`` as a FAILED run of ``pid``
    (this process) that never closed: every slot back to its initial value, then
    ``consensus_module_state`` FAILED and ``errors``. Only bytes the file has are written, so
    it works on a disk too full for a new file (a start that failed there: the earlier run's
    file would otherwise still say "stopped cleanly"). Its metadata stays the earlier run's.
    Raises OSError (FileNotFoundError when there is none, `CountersUnavailableError` for a
    file that is not a counters file)."""
    path = os.path.join(os.fspath(data_dir), COUNTERS_FILE)
    fd = open_regular(path, os.O_RDWR, hint=_REPLACE_HINT)
    try:
        head = os.pread(fd, _HEADER_BYTES, 0)
        if len(head) < _HEADER_BYTES:
            raise CountersUnavailableError(f"{path} is too short to be a counters file")
        (magic, version, layout_id, _pid, _start_ns, _member, _cluster, slot_count,
         labels_offset, values_offset, *_rest) = _HEADER.unpack_from(head, 0)
        size = os.fstat(fd).st_size
        if magic != _MAGIC or version != _VERSION or values_offset % 8 \
                or values_offset + 8 * slot_count > size \
                or labels_offset + _LABEL.size * slot_count > size:
            raise CountersUnavailableError(f"{path} is not a counters file this aeronpy writes")
        labels = os.pread(fd, _LABEL.size * slot_count, labels_offset)
        names = []
        for i in range(slot_count):
            _kind, name_len, _help_len, name, _help = _LABEL.unpack_from(labels, _LABEL.size * i)
            names.append(name[:name_len].decode(errors="replace"))
        if _layout_id(names) != layout_id:
            raise CountersUnavailableError(f"{path}: label table does not match its layout id")
        initial = {name: value for name, _kind, value, _help in STANDARD_SLOTS}
        values = [initial.get(name, 0) for name in names]
        if "consensus_module_state" in names:
            values[names.index("consensus_module_state")] = int(ConsensusModuleState.FAILED)
        if "errors" in names:
            values[names.index("errors")] = errors
        if "last_update_ns" in names:
            values[names.index("last_update_ns")] = time.time_ns()
        # values first, then who wrote them, then "running" (not closed): a reader in between
        # sees a failed node (state FAILED, file closed), never a clean stop of this run
        os.pwrite(fd, struct.pack(f"<{slot_count}q", *values), values_offset)
        os.pwrite(fd, struct.pack("<qq", os.getpid() if pid is None else pid, time.time_ns()), 16)
        os.pwrite(fd, struct.pack("<q", WRITER_RUNNING), _WRITER_STATE_OFFSET)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class CountersHeader:
    version: int
    layout_id: int
    pid: int
    start_time_ns: int
    member_id: int
    cluster_id: int
    writer_state: int


@dataclass(frozen=True)
class NodeStatus:
    """Whether the node behind a counters file is alive: running, stopped, dead or stale."""

    state: str
    pid: int
    detail: str
    last_update_age_s: float

    @property
    def running(self) -> bool:
        return self.state == "running"


def pid_alive(pid: int) -> Optional[bool]:
    """True/False when known; None where the OS gives no safe probe (Windows)."""
    if pid <= 0:
        return False
    if os.name == "nt":
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (exited, not yet reaped) is not a running node
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return True


class CountersReader:
    """Reads another process's counters file without any cooperation from it."""

    def __init__(self, data_dir: "str | os.PathLike", *, stale_after_s: float = 5.0) -> None:
        self.data_dir = os.fspath(data_dir)
        self.path = os.path.join(self.data_dir, COUNTERS_FILE)
        self.stale_after_s = stale_after_s
        try:
            # O_NONBLOCK and a regular file only: a FIFO or a link to a device there never
            # blocks or maps
            with os.fdopen(open_regular(self.path, hint=_REPLACE_HINT), "rb") as f:
                self._ino = os.fstat(f.fileno()).st_ino
                self._map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except FileNotFoundError:
            raise CountersUnavailableError(
                f"no {COUNTERS_FILE} in {self.data_dir}: no node has run with this data dir "
                "(or it is not a node's data dir)") from None
        except NotARegularFileError as exc:
            raise CountersUnavailableError(str(exc)) from None
        except (OSError, ValueError) as exc:
            raise CountersUnavailableError(f"cannot map {self.path}: {exc}") from None
        try:
            self._parse()
        except (struct.error, ValueError, UnicodeDecodeError) as exc:
            self._map.close()
            raise CountersUnavailableError(f"{self.path} is not a readable counters file: {exc}") from None

    def _parse(self) -> None:
        m = self._map
        if len(m) < _HEADER_BYTES:
            raise ValueError("file too short for a header")
        (magic, version, layout_id, pid, start_ns, member_id, cluster_id, slot_count,
         labels_offset, values_offset, meta_offset, meta_len, _) = _HEADER.unpack_from(m, 0)
        if magic != _MAGIC:
            raise ValueError(f"bad magic {magic!r}")
        if version != _VERSION:
            raise ValueError(f"version {version}, this aeronpy reads version {_VERSION}")
        if values_offset % 8 or values_offset + 8 * slot_count > len(m):
            raise ValueError("values region out of bounds")
        self.metadata = json.loads(bytes(m[meta_offset:meta_offset + meta_len]).decode())
        # the metadata has no checksum: a damaged block that still parses as JSON is refused
        # here, before any view of the mapping exists (the mapping could not close then)
        metadata = self.metadata
        if not isinstance(metadata, dict) or not isinstance(metadata.get("members", []), list) \
                or not all(isinstance(x, dict) for x in metadata.get("members", [])) \
                or not isinstance(metadata.get("enum_names", {}), dict) \
                or not all(isinstance(x, dict) for x in metadata.get("enum_names", {}).values()):
            raise ValueError("its metadata is not the table a node writes")
        enum_names = {k: {int(c): n for c, n in v.items()}
                      for k, v in metadata.get("enum_names", {}).items()}
        self.names, self.kinds, self.helps = [], [], []
        for i in range(slot_count):
            kind, name_len, help_len, name, help_text = _LABEL.unpack_from(m, labels_offset + _LABEL.size * i)
            self.names.append(name[:name_len].decode())
            self.kinds.append(kind)
            self.helps.append(help_text[:help_len].decode())
        if _layout_id(self.names) != layout_id:
            raise ValueError("label table does not match its layout id")
        self._fixed = (version, layout_id, pid, start_ns, member_id, cluster_id)
        view = memoryview(m)
        self._writer_state = view[_WRITER_STATE_OFFSET:_WRITER_STATE_OFFSET + 8].cast("q")
        self._values = view[values_offset:values_offset + 8 * slot_count].cast("q")
        view.release()
        self._index = {n: i for i, n in enumerate(self.names)}
        self.enum_names = enum_names

    @property
    def header(self) -> CountersHeader:
        return CountersHeader(*self._fixed, writer_state=self._writer_state[0])

    @property
    def members(self) -> list:
        return list(self.metadata.get("members", []))

    def value(self, name: str) -> int:
        return self._values[self._index[name]]

    def read(self) -> dict:
        """Every slot's current value, by name."""
        values = self._values
        return {name: values[i] for i, name in enumerate(self.names)}

    def enum_name(self, slot: str, value: int) -> Optional[str]:
        return self.enum_names.get(slot, {}).get(value)

    def replaced(self) -> bool:
        """True when a newer node has put a new counters file in place (re-open to follow it)."""
        try:
            return os.stat(self.path).st_ino != self._ino
        except OSError:
            return True

    def status(self, now_ns: Optional[int] = None) -> NodeStatus:
        now_ns = time.time_ns() if now_ns is None else now_ns
        header = self.header
        pid = header.pid
        last_update_ns = self.value("last_update_ns")
        age_s = max(0.0, (now_ns - last_update_ns) / 1e9)
        # stamped ahead of this host's clock: it was stepped back since, and a live node would
        # have re-stamped within ms (read as its age, a hung node would look fresh for that long)
        ahead_s = (last_update_ns - now_ns) / 1e9
        alive = None
        if self.value("consensus_module_state") == ConsensusModuleState.FAILED and (
                header.writer_state == WRITER_CLOSED or (alive := pid_alive(pid)) is False):
            return NodeStatus("failed", pid, f"node failed and stopped (pid {pid}), last update "
                                             f"{age_s:.1f} s ago: aeronpy tool errors shows why",
                              age_s)
        if header.writer_state == WRITER_CLOSED:
            return NodeStatus("stopped", pid, f"node stopped cleanly (pid {pid}), "
                                              f"last update {age_s:.1f} s ago", age_s)
        alive = pid_alive(pid) if alive is None else alive
        if alive is False:
            return NodeStatus("dead", pid, f"node not running: pid {pid} gone without closing "
                                           f"(last update {age_s:.1f} s ago)", age_s)
        if age_s > self.stale_after_s:
            who = f"pid {pid} exists but" if alive else f"pid {pid}:"
            return NodeStatus("stale", pid, f"{who} counters not updated for {age_s:.1f} s: the "
                                            "node is hung, or the pid now belongs to another "
                                            "process", age_s)
        if ahead_s > self.stale_after_s:
            return NodeStatus("stale", pid, f"pid {pid}: counters last updated {ahead_s:.1f} s "
                                            "ahead of this host's clock: the clock was stepped "
                                            "back since and the node has not updated them (hung)",
                              age_s)
        return NodeStatus("running", pid, f"node running (pid {pid})", age_s)

    def close(self) -> None:
        if self._map is not None:
            self._values.release()
            self._writer_state.release()
            self._map.close()
            self._map = None

    def __enter__(self) -> "CountersReader":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

