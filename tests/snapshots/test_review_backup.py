"""Review: the backup must never record a snapshot it cannot restore from.

A member serves its snapshot files as they are on its disk (BACKUP_CHUNK reads the file, it
does not re-verify it); one that rotted there reaches the backup intact in transit. The
backup checks the inner checksum only after it has recorded the file: it then stopped with a
traceback, and the recorded damaged snapshot became its recovery point (a restored member
refuses to start from it)."""
import pytest

from aeronpy.archive import Archive
from aeronpy.cluster import backup as B
from aeronpy.cluster.node_snapshots import BACKUP_CHUNK, BACKUP_QUERY
from aeronpy.cluster.snapshotting import decode_snapshot, encode_snapshot


def _snapshot_bytes(index: int, term: int) -> bytes:
    module_state = b"m" * 300
    return b"".join(bytes(p) for p in encode_snapshot(index, term, 123, module_state,
                                                      [b"s" * 200]))


class _FakeMember:
    """Answers BACKUP_QUERY/BACKUP_CHUNK like serve_backup_request, from given file bytes."""

    def __init__(self, index: int, term: int, data: bytes):
        self.index, self.term, self.data = index, term, data

    def request(self, kind: int, payload: bytes):
        if kind == BACKUP_QUERY:
            return B._QUERY_ANSWER.pack(self.index, self.index, self.term, len(self.data),
                                        self.index, 0, 0)
        assert kind == BACKUP_CHUNK
        index, offset, length = B._CHUNK.unpack(payload)
        assert index == self.index
        chunk = self.data[offset:offset + min(length, 100)]     # several chunks
        return B._CHUNK_ANSWER.pack(index, offset) + chunk


def _backup(tmp_path, member):
    backup = B.ClusterBackup(["127.0.0.1:9"], str(tmp_path / "backup"), request_timeout_s=0.05)
    backup._request = member.request
    return backup


def test_a_damaged_snapshot_served_by_a_member_is_not_recorded_and_does_not_stop_the_backup(tmp_path):
    good = _snapshot_bytes(10, 2)
    damaged = bytearray(good)
    damaged[len(damaged) - 50] ^= 0x40        # a service stream byte: the inner CRC fails
    damaged = bytes(damaged)
    with pytest.raises(ValueError):
        decode_snapshot(damaged)
    backup = _backup(tmp_path, _FakeMember(10, 2, damaged))
    try:
        for _ in range(3):
            assert backup.do_work() == 0           # refused, counted, no traceback
        assert backup.snapshot_index == 0 and backup.snapshots == []
        assert backup.failures >= 1 and "checksum" in (backup.last_error or "")
    finally:
        backup.close()
    arc = Archive.open(str(tmp_path / "backup"))
    try:
        assert arc.recorded_snapshots() == []      # nothing for recovery to pick
        assert arc.recover().snapshot is None
    finally:
        arc.close()
    # control: the intact file is pulled and recorded
    backup = _backup(tmp_path, _FakeMember(10, 2, good))
    try:
        assert backup.do_work() == len(good)
        assert backup.snapshot_index == 10 and backup.position >= 10
    finally:
        backup.close()
    arc = Archive.open(str(tmp_path / "backup"))
    try:
        assert arc.recover().snapshot.index == 10
    finally:
        arc.close()
