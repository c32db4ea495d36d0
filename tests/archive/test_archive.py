"""Archive: file_sync semantics, recovery after crash and power failure, corruption detection."""
from __future__ import annotations

import random
import struct
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aeronpy._logindex import LogIndex
from aeronpy.archive import Archive, ArchiveCorruptError, DataDirError, MemFileSystem
from aeronpy.archive.segments import SEGMENT_HEADER_BYTES

SEG = 4096


def open_mem(fs: MemFileSystem, file_sync: str = "data") -> tuple:
    arc = Archive.open("/data", file_sync=file_sync, segment_bytes=SEG, fs=fs)
    return arc, arc.recover()


def fill(arc: Archive, log: LogIndex, n: int, term: int, size: int = 40, seed: int = 0) -> None:
    rng = random.Random(seed)
    lo = log.last_index + 1
    for _ in range(n):
        log.append(term, 16, rng.randbytes(size))
    arc.append_from(log, lo, log.last_index + 1)


def entries(log: LogIndex, lo: int = 0) -> list:
    return [(log.term_at(i), bytes(log.payload_at(i)))
            for i in range(max(lo, log.first_index), log.last_index + 1)]


def test_fresh_archive_recovers_empty():
    arc, rec = open_mem(MemFileSystem())
    assert rec.log.last_index == 0 and rec.snapshot is None and rec.durable_index == 0
    assert rec.hard_state.term == 0 and rec.hard_state.voted_for is None


def test_durable_index_follows_the_policy():
    for policy in ("none", "data", "full"):
        fs = MemFileSystem()
        arc, rec = open_mem(fs, policy)
        fill(arc, rec.log, 10, 1)
        assert arc.written_index == 10
        assert arc.durable_index == (10 if policy == "none" else 0)
        arc.request_sync()
        assert arc.poll_synced() == 10


def test_kill9_keeps_everything_written_under_every_policy():
    for policy in ("none", "data", "full"):
        fs = MemFileSystem()
        arc, rec = open_mem(fs, policy)
        fill(arc, rec.log, 50, 1)
        fs.crash()
        _, rec2 = open_mem(fs, policy)
        assert entries(rec2.log) == entries(rec.log)


def test_power_loss_under_none_can_lose_unsynced_entries_but_data_does_not():
    lost = 0
    for seed in range(30):
        for policy in ("none", "data"):
            fs = MemFileSystem()
            arc, rec = open_mem(fs, policy)
            fill(arc, rec.log, 30, 1, seed=seed)
            arc.request_sync()
            durable = arc.poll_synced()
            fs.power_fail(random.Random(seed))
            _, rec2 = open_mem(fs, policy)
            if policy == "data":
                assert entries(rec2.log) == entries(rec.log)[: rec2.log.last_index]
                assert rec2.log.last_index >= durable == 30
            else:
                assert entries(rec2.log) == entries(rec.log)[: rec2.log.last_index]
                lost += rec2.log.last_index < 30
    assert lost > 0, "power loss under file_sync='none' should sometimes lose entries"


def test_torn_last_record_is_cut_silently():
    fs = MemFileSystem()
    arc, rec = open_mem(fs, "none")
    fill(arc, rec.log, 5, 1)
    arc.close()
    # a sixth record written but not synced, then torn by a machine crash
    fs2 = fs
    arc, rec = open_mem(fs2, "data")
    fill(arc, rec.log, 1, 1, seed=9)
    seg = arc._segments.segments[-1]
    tail = seg.record_start(6)
    raw = fs2.read_file(seg.path)
    fs2.crash()
    h = fs2.open_file(seg.path)
    fs2.pwrite(h, raw[tail:tail + 20] + bytes(seg.end - tail - 20), tail)  # only 20 bytes landed
    _, rec2 = open_mem(fs2, "data")
    assert rec2.log.last_index == 5 and not rec2.cut.clean
    assert not any(fs2.read_file(seg.path)[tail:])


def flip_bit(fs, path: str, offset: int) -> None:
    h = fs.open_file(path)
    b = fs.pread(h, 1, offset)
    fs.pwrite(h, bytes([b[0] ^ 0x10]), offset)
    fs.close(h)


def test_bit_flip_in_the_last_record_beyond_durable_is_cut():
    fs = MemFileSystem()
    arc, rec = open_mem(fs, "data")
    fill(arc, rec.log, 20, 1)
    arc.request_sync()
    assert arc.poll_synced() == 20
    fill(arc, rec.log, 1, 1, seed=3)   # index 21: written, never synced
    seg = arc._segments.segments[-1]
    fs.crash()
    flip_bit(fs, seg.path, seg.record_start(21) + 35)
    _, rec2 = open_mem(fs, "data")
    assert rec2.log.last_index == 20 and "checksum" in rec2.cut.reason


def test_bit_flip_inside_the_durable_region_refuses_to_start():
    fs = MemFileSystem()
    arc, rec = open_mem(fs, "data")
    fill(arc, rec.log, 200, 1)
    arc.request_sync()
    assert arc.poll_synced() == 200
    seg = next(s for s in arc._segments.segments if s.first_index <= 100 <= s.last_index)
    offset = seg.record_start(100)
    fs.crash()
    flip_bit(fs, seg.path, offset + 40)
    with pytest.raises(ArchiveCorruptError) as exc:
        open_mem(fs, "data")
    msg = str(exc.value)
    assert seg.path in msg and f"offset {offset}" in msg and "index 100" in msg
    assert "durable up to index 200" in msg and "catches up from the cluster" in msg
    # and nothing was cut: the damaged record and everything after it are still on disk
    assert fs.read_file(seg.path)[offset + 40] != 0


def test_a_missing_durable_segment_refuses_to_start():
    fs = MemFileSystem()
    arc, rec = open_mem(fs, "data")
    fill(arc, rec.log, 300, 1)
    arc.sync()
    victim = arc._segments.segments[1]
    fs.crash()
    fs.remove(victim.path)
    with pytest.raises(ArchiveCorruptError, match="no segment holds"):
        open_mem(fs, "data")


def test_truncation_below_durable_lowers_the_marker_first():
    fs = MemFileSystem()
    arc, rec = open_mem(fs, "data")
    fill(arc, rec.log, 100, 1)
    assert arc.sync() == 100
    arc.truncate_from(50)
    rec.log.truncate_from(50)
    assert arc.durable_index == 49
    fs.power_fail(random.Random(0))     # legal truncation must not look like corruption
    _, rec2 = open_mem(fs, "data")
    assert rec2.log.last_index == 49


def test_truncate_refuses_committed_entries_and_append_refuses_gaps():
    arc, rec = open_mem(MemFileSystem(), "data")
    fill(arc, rec.log, 10, 1)
    arc.note_commit_index(5)
    with pytest.raises(ValueError, match="committed"):
        arc.truncate_from(5)
    rec.log.append(1, 16, b"x")
    rec.log.append(1, 16, b"y")
    with pytest.raises(ValueError, match="archived log ends at 10"):
        arc.append_from(rec.log, 12, 13)


def test_commit_index_is_recovered_for_replay():
    fs = MemFileSystem()
    arc, rec = open_mem(fs, "data")
    fill(arc, rec.log, 30, 1)
    arc.note_commit_index(25)
    arc.sync()
    fs.crash()
    _, rec2 = open_mem(fs, "data")
    assert rec2.commit_index == 25


# -- property: power failures never lose what was reported durable, never invent entries ----
op_st = st.lists(st.one_of(
    st.tuples(st.just("append"), st.integers(1, 30), st.integers(0, 700)),
    st.tuples(st.just("sync"), st.none(), st.none()),
    st.tuples(st.just("truncate"), st.floats(0, 1), st.none()),
    st.tuples(st.just("term"), st.none(), st.none()),
    st.tuples(st.just("crash"), st.none(), st.none()),
    st.tuples(st.just("power"), st.none(), st.none()),
), max_size=30)


@settings(max_examples=60, deadline=None)
@given(op_st, st.sampled_from(["data", "full"]), st.integers(0, 2**32))
def test_power_failures_keep_every_durable_entry_and_invent_none(ops, policy, seed):
    rng = random.Random(seed)
    fs = MemFileSystem()
    arc, rec = open_mem(fs, policy)
    log, model, term, durable = rec.log, [], 1, 0
    for kind, a, b in ops:
        if kind == "append":
            lo = log.last_index + 1
            for _ in range(a):
                payload = rng.randbytes(rng.randint(0, b))
                log.append(term, 16, payload)
                model.append((term, payload))
            arc.append_from(log, lo, log.last_index + 1)
        elif kind == "sync":
            arc.request_sync()
            durable = arc.poll_synced()
        elif kind == "truncate" and log.last_index > 0:
            index = 1 + int(a * (log.last_index - 1))
            arc.truncate_from(index)
            log.truncate_from(index)
            del model[index - 1:]
            durable = min(durable, index - 1)
            term += 1
        elif kind == "term":
            term += 1
            arc.record_term_start(term, log.last_index + 1)
        elif kind in ("crash", "power"):
            if kind == "crash":
                fs.crash()
            else:
                fs.power_fail(rng)
            arc, rec = open_mem(fs, policy)
            log = rec.log
            got = entries(log)
            assert len(got) >= durable, f"lost durable entries: {len(got)} < {durable}"
            assert got == model[: len(got)], "recovered log is not a prefix of what was written"
            model, durable = got, rec.durable_index
            term = max(term, log.last_term) + 1


def test_background_syncer_with_real_files(tmp_path):
    for policy in ("data", "full"):
        arc = Archive.open(str(tmp_path / policy), file_sync=policy, segment_bytes=SEG)
        rec = arc.recover()
        assert arc._syncer is not None
        for round_ in range(20):
            fill(arc, rec.log, 30, 1, seed=round_)
            arc.request_sync()
        deadline = time.monotonic() + 10
        while arc.poll_synced() < 600 and time.monotonic() < deadline:
            time.sleep(0.001)
        assert arc.poll_synced() == 600
        arc.close()
        arc2 = Archive.open(str(tmp_path / policy), file_sync=policy, segment_bytes=SEG)
        assert entries(arc2.recover().log) == entries(rec.log)
        arc2.close()


def test_data_dir_that_cannot_be_used_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_bytes(b"x")
    with pytest.raises(DataDirError) as exc:
        Archive.open(str(blocker / "sub"))
    assert str(blocker / "sub") in str(exc.value) and exc.value.key == "data_dir"
    fs = MemFileSystem()
    fs.makedirs("/d")
    fs.close(fs.open_file("/d/f", create=True))
    with pytest.raises(DataDirError, match="data_dir"):
        Archive.open("/d/f", fs=fs)
    fs.fail("create")
    with pytest.raises(DataDirError, match="not writable"):
        Archive.open("/d/ok", fs=fs)


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="file_sync"):
        Archive.open("/x", file_sync="sometimes", fs=MemFileSystem())
    arc = Archive.open("/x", fs=MemFileSystem())
    with pytest.raises(RuntimeError, match="recover"):
        arc.save_hard_state(1, None)


def test_segment_header_is_checked():
    fs = MemFileSystem()
    arc, rec = open_mem(fs, "data")
    fill(arc, rec.log, 10, 1)
    arc.sync()
    path = arc._segments.segments[0].path
    fs.crash()
    flip_bit(fs, path, 10)
    with pytest.raises(ArchiveCorruptError, match="header"):
        open_mem(fs, "data")
    assert struct.unpack_from("<q", fs.read_file(path), 16)[0] == 1 and SEGMENT_HEADER_BYTES == 64


def test_truncated_entries_never_reappear_behind_new_ones_after_power_loss():
    """The frankenlog hazard: old records cut by a truncation must not resurface after the new
    records that replaced them (same sizes, so offsets line up) when the machine dies."""
    for seed in range(40):
        fs = MemFileSystem()
        arc, rec = open_mem(fs, "data")
        log = rec.log
        fill(arc, log, 20, 3, size=50, seed=seed)
        arc.sync()
        arc.truncate_from(11)
        log.truncate_from(11)
        lo = log.last_index + 1
        for i in range(5):
            log.append(3, 17, bytes([i]) * 50)      # same size as the old records
        arc.append_from(log, lo, log.last_index + 1)
        fs.power_fail(random.Random(seed))
        _, rec2 = open_mem(fs, "data")
        got = entries(rec2.log)
        assert got == entries(log)[: len(got)], f"seed {seed}: old entries resurfaced"


def test_each_sync_call_of_a_step_is_progress(tmp_path):
    """A sync step syncs every dirty segment and maybe the directory; the node times a stall
    (2 s without progress: a leader hands over, any member holds what it sends) from
    ``sync_progress_ns``. Each call that returns counts, so several slow but working calls in
    one step are not a stall (the soak with slow disks: a leader handed over with no call
    over 1 s). Control: the step's start is what the first call sees."""
    arc = Archive.open(str(tmp_path / "d"), file_sync="data", segment_bytes=SEG)
    try:
        rec = arc.recover()
        fill(arc, rec.log, 3, 1, seed=1)
        handle = arc._segments._handle(arc._segments.take_dirty()[0][0])
        seen, real = [], arc.fs.fdatasync

        def noting(h):
            seen.append(arc.sync_progress_ns())
            time.sleep(0.002)
            real(h)
        arc.fs.fdatasync = noting
        arc._syncer.drain(5.0)
        start = arc._syncer.last_step_ns
        arc._sync_batch(0, [handle, handle, handle], False)
        arc.fs.fdatasync = real
        assert seen[0] == start                              # nothing done yet in this step
        assert seen[0] < seen[1] < seen[2] < arc.sync_progress_ns()
    finally:
        arc.close()
