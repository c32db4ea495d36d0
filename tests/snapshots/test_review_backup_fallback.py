"""The backup keeps `snapshots_to_keep` snapshots so that an older one is a fallback when the
newest is damaged, but on pulling a newer snapshot it purged its log up to that one: the older
snapshot had no log after it, and a backup whose newest snapshot rotted could not be restored
at all ("no segment holds index N", found by an operator walkthrough). It now purges only
below the oldest snapshot it keeps."""
from aeronpy._logindex import LogIndex
from aeronpy.archive import Archive
from aeronpy.cluster import backup as B
from aeronpy.cluster.node_snapshots import BACKUP_CHUNK, BACKUP_QUERY
from aeronpy.cluster.snapshotting import encode_snapshot

TERM = 2
ENTRY = bytes(1000)
SEGMENT = 16 * 1024                     # about 15 entries a segment: the purge is visible


def _snapshot_bytes(index: int) -> bytes:
    return b"".join(bytes(p) for p in encode_snapshot(index, TERM, 123, b"m" * 300, [b"s" * 200]))


class _Member:
    """Answers BACKUP_QUERY / BACKUP_CHUNK like serve_backup_request: a committed log up to
    ``commit`` and its newest snapshot ``newest``."""

    def __init__(self):
        self.log = LogIndex()
        for _ in range(200):
            self.log.append(TERM, 16, ENTRY)
        self.snapshots = {}
        self.newest = 0
        self.commit = 0

    def take(self, index: int) -> None:
        self.snapshots[index] = _snapshot_bytes(index)
        self.newest = index

    def request(self, kind: int, payload: bytes):
        if kind == BACKUP_QUERY:
            from_index, max_bytes = B._QUERY.unpack(payload[:B._QUERY.size])
            blob, count, first = b"", 0, 0
            if from_index <= self.commit:
                blob, count = self.log.pack(from_index, self.commit + 1, max_bytes)
                first = from_index
            size = len(self.snapshots[self.newest]) if self.newest else 0
            return B._QUERY_ANSWER.pack(self.commit, self.newest, TERM if self.newest else 0,
                                        size, 0, first, count) + bytes(blob)
        assert kind == BACKUP_CHUNK
        index, offset, length = B._CHUNK.unpack(payload)
        return B._CHUNK_ANSWER.pack(index, offset) + self.snapshots[index][offset:offset + length]


def _run(backup, until, limit=200):
    for _ in range(limit):
        backup.do_work()
        if until():
            return
    raise AssertionError("the backup did not get there")


def test_an_older_kept_snapshot_still_has_its_log_when_the_newest_is_damaged(tmp_path):
    member = _Member()
    member.take(10)
    member.commit = 100
    backup = B.ClusterBackup(["127.0.0.1:9"], str(tmp_path / "backup"), snapshots_to_keep=2,
                             request_timeout_s=0.05, segment_bytes=SEGMENT)
    backup._request = member.request
    try:
        _run(backup, lambda: backup.position == 100)
        member.take(90)                                 # a newer snapshot, within its log
        member.commit = 150
        _run(backup, lambda: backup.position == 150 and backup.snapshot_index == 90)
        assert [s.index for s in backup.snapshots] == [10, 90]
        newest = backup.snapshots[-1]
    finally:
        backup.close()
    # the newest snapshot file rots on the backup's disk
    with open(newest.path, "r+b") as f:
        f.seek(newest.size - 40)
        byte = f.read(1)
        f.seek(newest.size - 40)
        f.write(bytes([byte[0] ^ 0x40]))
    arc = Archive.open(str(tmp_path / "backup"))
    try:
        recovered = arc.recover()
        assert recovered.snapshot is not None and recovered.snapshot.index == 10
        assert recovered.log.last_index == 150          # the log from the older one on
    finally:
        arc.close()
