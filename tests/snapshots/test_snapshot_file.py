"""The snapshot file container: round trip, and every kind of damage is refused."""
import pytest

from aeronpy.cluster.snapshotting import SnapshotFileError, decode_snapshot, encode_snapshot


def _file(streams=(b"service-zero", b"")) -> bytes:
    return b"".join(bytes(p) for p in encode_snapshot(42, 3, 123456789, b"module-state", list(streams)))


def test_round_trip_keeps_every_section():
    contents = decode_snapshot(_file())
    assert (contents.index, contents.term, contents.cluster_time_ns) == (42, 3, 123456789)
    assert contents.module_state == b"module-state"
    assert [bytes(s) for s in contents.service_streams] == [b"service-zero", b""]
    assert [f.read() for f in contents.service_files()] == [b"service-zero", b""]


def test_file_checksum_differs_between_snapshots():
    # A trailer holding the plain CRC would make every file's own CRC the same constant.
    from aeronpy._crc import crc32c
    assert crc32c(_file((b"a",))) != crc32c(_file((b"b",)))


@pytest.mark.parametrize("position", [0, 5, 30, 50, -5, -1])
def test_any_flipped_byte_is_refused(position):
    raw = bytearray(_file())
    raw[position] ^= 0x40
    with pytest.raises(SnapshotFileError):
        decode_snapshot(raw)


def test_truncated_file_is_refused():
    raw = _file()
    for cut in (0, 10, len(raw) - 1):
        with pytest.raises(SnapshotFileError):
            decode_snapshot(raw[:cut])


def test_a_received_snapshot_of_other_services_is_discarded_before_it_is_recorded():
    """A snapshot from a leader hosting another service list is refused in the background
    check, before it is recorded: recorded, it would have been installed (stopping this
    member) and chosen by every later recovery (stopping it at each start)."""
    import aeronpy
    from aeronpy.cluster.container import service_set_tail
    from aeronpy.cluster.snapshot_transfer import verify_and_commit

    class A(aeronpy.ClusteredService):
        pass

    class B(aeronpy.ClusteredService):
        pass

    class Writer:
        def __init__(self, raw):
            self.raw, self.aborted, self.committed = raw, False, False

        def read_back(self):
            return self.raw

        def abort(self):
            self.aborted = True

        def commit(self, timestamp_ns):
            self.committed = True
            return "info"

    raw = b"".join(bytes(p) for p in encode_snapshot(7, 1, 5, b"m", [b"a", b"b"],
                                                     service_set_tail([A(), B()])))
    refused = Writer(raw)
    with pytest.raises(SnapshotFileError, match="was taken by services"):
        verify_and_commit(refused, [B(), A()])
    assert refused.aborted and not refused.committed
    kept = Writer(raw)                                       # the control: the same services
    assert verify_and_commit(kept, [A(), B()]) == "info" and kept.committed
