"""The archive holds a bounded number of segment files open, however many segments it has.

Before the bound, every segment stayed open while written (4 KiB segments x 3000 records held
~180 descriptors; a recovery far behind its durable marker opened one per segment and a CI run
ran out of descriptors). Counted two ways: the archive's handle table and /proc/self/fd (real
files), and `MemFileSystem.open_handles` / ``max_open_files`` (the simulator's model).
"""
from __future__ import annotations

import os
import random
import sys

import pytest

from aeronpy._logindex import LogIndex
from aeronpy.archive import Archive, MemFileSystem
from aeronpy.archive.segments import OPEN_SEGMENTS_MAX

SEG = 4096
CONTROL_FILES = 3   # durable marker, recording log, and one spare (a snapshot or probe)

needs_proc = pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd")


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def write_many(arc: Archive, log: LogIndex, records: int, batch: int, seed: int = 1) -> None:
    rng = random.Random(seed)
    done = 0
    while done < records:
        lo = log.last_index + 1
        for _ in range(min(batch, records - done)):
            log.append(1, 16, rng.randbytes(rng.randint(40, 1500)))
        arc.append_from(log, lo, log.last_index + 1)
        arc.request_sync()
        arc.poll_synced()
        done += batch


@needs_proc
@pytest.mark.parametrize("file_sync", ["none", "data"])
def test_many_segments_on_real_files_stay_within_the_bound(tmp_path, file_sync):
    before = fd_count()
    arc = Archive.open(str(tmp_path / "d"), file_sync=file_sync, segment_bytes=SEG)
    try:
        log = arc.recover().log
        peak = 0
        for _ in range(10):
            write_many(arc, log, 300, batch=25)
            peak = max(peak, fd_count() - before)
        assert len(arc._segments.segments) > 10 * OPEN_SEGMENTS_MAX  # really many segments
        rng = random.Random(2)
        for i in rng.sample(range(1, log.last_index + 1), 300):  # random reads reopen old ones
            assert arc.read(i)[2] == bytes(log.payload_at(i))
            peak = max(peak, fd_count() - before)
        assert arc._segments.open_handles <= OPEN_SEGMENTS_MAX
        assert peak <= OPEN_SEGMENTS_MAX + CONTROL_FILES, f"{peak} descriptors held"
    finally:
        arc.close()
    assert fd_count() == before  # close releases everything


@needs_proc
def test_recovery_far_behind_the_marker_stays_within_the_bound(tmp_path):
    """Hundreds of segments past the durable marker are synced one by one, not all held."""
    d = str(tmp_path / "d")
    arc = Archive.open(d, file_sync="none", segment_bytes=SEG)
    log = arc.recover().log
    write_many(arc, log, 2000, batch=200)
    segments = len(arc._segments.segments)
    arc._closed = True          # a kill -9: no clean-shutdown sync of the marker
    arc._release_files()
    before = fd_count()
    arc2 = Archive.open(d, file_sync="data", segment_bytes=SEG)
    try:
        rec = arc2.recover()
        assert rec.log.last_index == 2000 and segments > 10 * OPEN_SEGMENTS_MAX
        assert fd_count() - before <= OPEN_SEGMENTS_MAX + CONTROL_FILES
    finally:
        arc2.close()
    assert fd_count() == before


@needs_proc
def test_the_fd_count_sees_an_unbounded_table(tmp_path):
    """Negative control: with the bound lifted the same workload holds many descriptors, so
    the checks above would catch a regression."""
    before = fd_count()
    arc = Archive.open(str(tmp_path / "d"), file_sync="none", segment_bytes=SEG,
                       open_segments_max=10**6)
    try:
        write_many(arc, arc.recover().log, 600, batch=50)
        assert fd_count() - before > 5 * OPEN_SEGMENTS_MAX
    finally:
        arc.close()
    assert fd_count() == before


@pytest.mark.parametrize("file_sync", ["none", "data", "full"])
def test_simulated_disk_models_the_bound_through_crashes_and_power_loss(file_sync):
    limit = OPEN_SEGMENTS_MAX + CONTROL_FILES
    fs = MemFileSystem(max_open_files=limit)   # EMFILE past it, as with ulimit -n
    arc = Archive.open("/d", file_sync=file_sync, segment_bytes=SEG, fs=fs)
    log = arc.recover().log
    write_many(arc, log, 1500, batch=60)
    assert arc.truncate_from(1400) is None and arc.written_index == 1399
    del log
    synced = arc.sync()
    assert fs.open_handles == accounted_handles(arc) <= limit
    fs.power_fail(random.Random(3))
    assert fs.open_handles == 0
    arc2 = Archive.open("/d", file_sync=file_sync, segment_bytes=SEG, fs=fs)
    rec = arc2.recover()
    assert rec.log.last_index >= synced == 1399
    for i in range(1, 1400, 37):
        arc2.read(i)
    assert arc2.purge_below(1) == 0
    arc2.close()
    assert fs.open_handles == 0 and fs.open_handles_peak <= limit


def test_simulated_disk_refuses_past_its_descriptor_limit():
    """Negative control for the model: an unbounded table does hit EMFILE."""
    fs = MemFileSystem(max_open_files=OPEN_SEGMENTS_MAX + CONTROL_FILES)
    arc = Archive.open("/d", file_sync="none", segment_bytes=SEG, fs=fs, open_segments_max=10**6)
    log = arc.recover().log
    with pytest.raises(OSError, match="archive now refuses writes"):
        write_many(arc, log, 1500, batch=60)
    arc.close()
    assert fs.open_handles == 0


def accounted_handles(arc: Archive) -> int:
    """Handles the archive knows it holds: its segment table plus the two control files."""
    return (arc._segments.open_handles + (arc._marker.handle is not None)
            + (arc._recording_log.handle is not None))


def test_purge_and_truncate_close_their_handles():
    fs = MemFileSystem()
    arc = Archive.open("/d", file_sync="data", segment_bytes=SEG, fs=fs)
    log = arc.recover().log
    write_many(arc, log, 400, batch=40)
    segs = arc._segments
    for i in range(1, 400, 3):   # fill the LRU with old segments, then cut them away
        arc.read(i)
    assert segs.open_handles == OPEN_SEGMENTS_MAX
    arc.truncate_from(200)
    assert fs.open_handles == accounted_handles(arc)   # nothing leaked by the removed files
    assert all(s in segs.segments and s.handle is not None for s in segs._open.values())
    snap = arc.begin_snapshot(150, 1)
    snap.write(b"state")
    snap.commit()
    removed = arc.purge_below(150)
    assert removed > 0 and segs.open_handles <= OPEN_SEGMENTS_MAX
    assert fs.open_handles == accounted_handles(arc)
    assert all(s in segs.segments for s in segs._open.values())
    arc.close()
    assert fs.open_handles == 0


def test_bound_below_two_is_refused(tmp_path):
    with pytest.raises(ValueError, match="open_segments_max"):
        Archive.open(str(tmp_path), open_segments_max=1)


if sys.platform == "win32":  # pragma: no cover
    pytestmark = pytest.mark.skip(reason="counts /proc/self/fd")
