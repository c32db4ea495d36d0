"""file_sync = "none": durable.pos notes how far the log was written, with the OS boot id, so a
restart in the same boot refuses damage to acknowledged entries instead of cutting it as a torn
tail; after a reboot (a power failure in MemFileSystem) the note proves nothing and is ignored."""
from __future__ import annotations

import os
import random
import struct
import warnings

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aeronpy.archive import Archive, ArchiveCorruptError, MemFileSystem
from aeronpy.archive.durable_marker import DURABLE_MARKER_FILE, DurableMarker
from aeronpy.archive.fs import OsFileSystem

from .test_archive import entries, fill, flip_bit, open_mem


def damage_record(fs, arc: Archive, index: int) -> str:
    """Bit rot on the platter: a flipped bit in a record, synced."""
    seg = next(s for s in arc._segments.segments if s.first_index <= index <= s.last_index)
    flip_bit(fs, seg.path, seg.record_start(index) + 35)
    h = fs.open_file(seg.path)
    fs.fsync(h)
    fs.close(h)
    return seg.path


def test_damage_to_written_entries_after_kill9_refuses_to_start():
    fs = MemFileSystem()
    arc, rec = open_mem(fs, "none")
    fill(arc, rec.log, 200, 1)
    path = damage_record(fs, arc, 100)
    fs.crash()                                  # kill -9: same boot, page cache intact
    with pytest.raises(ArchiveCorruptError) as exc:
        open_mem(fs, "none")
    msg = str(exc.value)
    assert "index 100" in msg and path in msg
    assert "written (file_sync = none, in this boot of the OS) up to index 200" in msg


def test_same_damage_after_a_reboot_is_cut_as_before():
    """The control: once the boot id changed, the written note is ignored and recovery cuts."""
    fs = MemFileSystem()
    arc, rec = open_mem(fs, "none")
    fill(arc, rec.log, 200, 1)
    for seg in arc._segments.segments:           # the kernel's writeback: on the platter,
        h = fs.open_file(seg.path)               # though the archive never synced (none)
        fs.fsync(h)
        fs.close(h)
    fs.sync_dir("/data")
    damage_record(fs, arc, 150)
    fs.power_fail(random.Random(2))              # reboot: a new boot id
    _, rec = open_mem(fs, "none")
    assert rec.log.last_index == 149 and not rec.cut.clean and "checksum" in rec.cut.reason


def test_a_torn_last_write_after_kill9_is_still_cut():
    """The note follows the log's write: a write the process died in lies beyond it."""
    fs = MemFileSystem()
    arc, rec = open_mem(fs, "none")
    fill(arc, rec.log, 20, 1)
    seg = arc._segments.segments[-1]
    assert seg.last_index == 20 and seg.end + 64 < seg.capacity
    fs.crash()
    h = fs.open_file(seg.path)
    # a record header claiming 60 bytes and only 20 of them: a write cut short by the kill
    fs.pwrite(h, struct.pack("<I", 60) + bytes(range(1, 21)), seg.end)
    fs.close(h)
    _, rec2 = open_mem(fs, "none")
    assert rec2.log.last_index == 20 and not rec2.cut.clean
    assert entries(rec2.log) == entries(rec.log)


def test_truncation_lowers_the_note_before_cutting():
    fs = MemFileSystem()
    arc, rec = open_mem(fs, "none")
    fill(arc, rec.log, 60, 1)
    arc.truncate_from(31)
    rec.log.truncate_from(31)
    fs.crash()
    _, rec2 = open_mem(fs, "none")              # no false alarm for the entries cut on purpose
    assert rec2.log.last_index == 30
    assert entries(rec2.log) == entries(rec.log)


def test_commit_index_survives_kill9_under_none():
    """Before the note, a kill -9 under none left the commit index of the last clean close."""
    fs = MemFileSystem()
    arc, rec = open_mem(fs, "none")
    fill(arc, rec.log, 30, 1)
    arc.note_commit_index(25)
    fill(arc, rec.log, 1, 1)                    # the note rides on the next append
    fs.crash()
    _, rec2 = open_mem(fs, "none")
    assert rec2.commit_index == 25


def test_policies_that_sync_do_not_write_the_note():
    fs = MemFileSystem()
    arc, rec = open_mem(fs, "data")
    fill(arc, rec.log, 10, 1)
    arc.sync()
    marker = DurableMarker(fs, "/data")
    marker.load()
    assert marker.written_sequence == 0 and marker.written_index == 0


def test_a_marker_file_from_before_the_note_still_loads(tmp_path):
    """Old files have only the two durable slots; new ones keep them where they were."""
    fs = OsFileSystem()
    d = str(tmp_path)
    m = DurableMarker(fs, d)
    m.open()
    m.write(40, 30, sync=True)
    m.close()
    os.truncate(os.path.join(d, DURABLE_MARKER_FILE), 544)   # the old file's size
    old = DurableMarker(fs, d)
    old.load()
    assert (old.durable_index, old.commit_index, old.valid) == (40, 30, True)
    assert old.acknowledged(fs.boot_id()) == (0, 0)


def test_the_note_is_ignored_without_a_boot_id_and_a_torn_note_falls_back():
    fs = MemFileSystem()
    fs.makedirs("/d")
    m = DurableMarker(fs, "/d")
    m.open()
    boot = fs.boot_id()
    m.note_written(10, 5, boot)
    m.note_written(20, 15, boot)
    assert m.acknowledged(None) == (0, 0)
    assert m.acknowledged(b"x" * 16) == (0, 0)
    h = fs.open_file("/d/" + DURABLE_MARKER_FILE)
    fs.pwrite(h, b"\xff\xff", 1024 + 20)        # the newer note (sequence 2, slot 1024) torn
    again = DurableMarker(fs, "/d")
    again.load()
    assert again.acknowledged(boot) == (10, 5)


def test_real_files_kill9_then_damage_refuses(tmp_path):
    """With OsFileSystem: the boot id is the kernel's; a second open without a close is what a
    restart after kill -9 sees."""
    fs = OsFileSystem()
    if fs.boot_id() is None:
        pytest.skip("no boot id on this OS: the note is not written (documented)")
    arc = Archive.open(str(tmp_path), file_sync="none", segment_bytes=4096, fs=fs)
    rec = arc.recover()
    fill(arc, rec.log, 100, 1)
    damage_record(fs, arc, 50)
    arc2 = Archive.open(str(tmp_path), file_sync="none", segment_bytes=4096, fs=OsFileSystem())
    with pytest.raises(ArchiveCorruptError, match="index 50"):
        arc2.recover()
    arc._release_files()


# -- property: under none, a kill -9 keeps everything written and never raises a false alarm --
op_st = st.lists(st.one_of(
    st.tuples(st.just("append"), st.integers(1, 30), st.integers(0, 700)),
    st.tuples(st.just("truncate"), st.floats(0, 1)),
    st.tuples(st.just("crash"), st.none()),
    st.tuples(st.just("power"), st.none()),
    st.tuples(st.just("close"), st.none()),
), max_size=30)


@settings(max_examples=80, deadline=None)
@given(op_st, st.integers(0, 2**32))
def test_none_keeps_everything_written_across_kill9_and_never_false_alarms(ops, seed):
    rng = random.Random(seed)
    fs = MemFileSystem()
    arc, rec = open_mem(fs, "none")
    log, model, term = rec.log, [], 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for kind, a, *rest in ops:
            b = rest[0] if rest else None
            if kind == "append":
                lo = log.last_index + 1
                for _ in range(a):
                    payload = rng.randbytes(rng.randint(0, b))
                    log.append(term, 16, payload)
                    model.append((term, payload))
                arc.append_from(log, lo, log.last_index + 1)
            elif kind == "truncate" and log.last_index > 0:
                index = 1 + int(a * (log.last_index - 1))
                arc.truncate_from(index)
                log.truncate_from(index)
                del model[index - 1:]
                term += 1
            elif kind in ("crash", "power", "close"):
                if kind == "crash":
                    fs.crash()
                elif kind == "power":
                    fs.power_fail(rng)
                else:
                    arc.close()
                arc, rec = open_mem(fs, "none")          # must never raise
                log = rec.log
                got = entries(log)
                if kind != "power":   # (a power loss under none may undo anything unsynced,
                    # a truncation included: docs/archive-format.md; only "no false alarm" holds)
                    assert got == model, "a kill -9 or a close lost written entries"
                model = got
                term = max(term, log.last_term) + 1


# -- aeronpy tool recovery-plan: the same verdict, read-only ---------------------------------
def _killed_archive(path: str, n: int) -> Archive:
    arc = Archive.open(path, file_sync="none", segment_bytes=4096, fs=OsFileSystem())
    rec = arc.recover()
    fill(arc, rec.log, n, 1)
    arc._release_files()                        # no clean close: what a kill -9 leaves
    return arc


def test_recovery_plan_reports_the_refusal_and_changes_nothing(tmp_path):
    from aeronpy.cluster import admin
    if OsFileSystem().boot_id() is None:
        pytest.skip("no boot id on this OS")
    arc = _killed_archive(str(tmp_path), 100)
    plan = admin.recovery_plan(str(tmp_path))
    assert plan["log_end"] == 100 and plan["written_index_this_boot"] == 100
    assert "problem" not in plan and "note" not in plan        # the control: a sound log
    path = damage_record(OsFileSystem(), arc, 40)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    plan = admin.recovery_plan(str(tmp_path))
    assert plan["log_end"] == 39 and "checksum" in plan["log_end_reason"]
    assert "refuse to start" in plan["problem"] and path in plan["problem"]
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_recovery_plan_notes_a_torn_tail_it_would_cut(tmp_path):
    from aeronpy.cluster import admin
    arc = _killed_archive(str(tmp_path), 20)
    seg = arc._segments.segments[-1]
    with open(seg.path, "r+b") as f:
        f.seek(seg.end)
        f.write(struct.pack("<I", 60) + bytes(range(1, 21)))
    plan = admin.recovery_plan(str(tmp_path))
    assert plan["log_end"] == 20 and "problem" not in plan
    assert "would cut the log at index 21" in plan["note"]


def test_tool_recovery_plan_exits_1_on_a_problem(tmp_path):
    import subprocess
    import sys
    if OsFileSystem().boot_id() is None:
        pytest.skip("no boot id on this OS")
    arc = _killed_archive(str(tmp_path), 60)
    from aeronpy.testing.process_cluster import child_env
    run = lambda: subprocess.run([sys.executable, "-m", "aeronpy", "tool", "recovery-plan",  # noqa: E731
                                  "--data-dir", str(tmp_path)], capture_output=True, text=True,
                                 timeout=60, env=child_env(), cwd=tmp_path.parent)
    ok = run()
    assert ok.returncode == 0 and "log_end: 60" in ok.stdout, ok.stderr
    damage_record(OsFileSystem(), arc, 30)
    bad = run()
    assert bad.returncode == 1 and "refuse to start" in bad.stdout, (bad.stdout, bad.stderr)


def test_a_missing_node_state_beside_a_log_with_terms_is_refused_when_required():
    fs = MemFileSystem()
    arc, rec = open_mem(fs, "data")
    arc.save_hard_state(3, 1)
    fill(arc, rec.log, 10, 3)
    arc.close()
    fs.remove("/data/node.state")
    with pytest.raises(ArchiveCorruptError, match="node.state is missing, but the log holds "
                                                  "entries up to term 3"):
        Archive.open("/data", file_sync="data", segment_bytes=4096, fs=fs).recover(
            require_node_state=True)
    # without the requirement (tools, tests writing logs without terms saved) it loads
    assert Archive.open("/data", file_sync="data", segment_bytes=4096, fs=fs).recover() \
        .log.last_index == 10


def test_a_missing_durable_marker_beside_a_log_is_warned_about():
    fs = MemFileSystem()
    arc, rec = open_mem(fs, "data")
    fill(arc, rec.log, 10, 1)
    arc.close()
    fs.remove("/data/" + DURABLE_MARKER_FILE)
    with pytest.warns(RuntimeWarning, match="durable.pos is missing from a data dir with a log"):
        open_mem(fs, "data")
    with warnings.catch_warnings():                 # the control: a fresh dir says nothing
        warnings.simplefilter("error", RuntimeWarning)
        open_mem(MemFileSystem(), "data")


def test_a_note_left_behind_by_a_run_that_kept_none_is_ignored():
    """A review of the diff: an older version run in between (same boot) writes the durable
    slot but no note, and may cut or rewrite the log; the note left from before then claimed
    entries that run removed, and recovery refused to start. A note names the durable slot
    it goes with, so it is ignored once another run wrote that slot without renewing it."""
    fs = MemFileSystem()
    fs.makedirs("/d")
    boot = fs.boot_id()
    new = DurableMarker(fs, "/d")
    new.open()
    new.note_written(50, 40, boot)
    new.write(0, 0, sync=True)                  # its own durable write renews the note
    again = DurableMarker(fs, "/d")
    again.load()
    assert again.acknowledged(boot) == (50, 40)              # the control
    old = DurableMarker(fs, "/d")               # an older version: loads, writes, no note
    old.load()
    old.open()
    old.write(30, 30, sync=True)
    after = DurableMarker(fs, "/d")
    after.load()
    assert after.acknowledged(boot) == (0, 0)


@pytest.mark.parametrize("marker_kept", [False, True], ids=["nothing-reported", "reported"])
def test_recovery_plan_agrees_with_recovery_on_a_log_that_starts_too_late(tmp_path, marker_kept):
    """The data dir emptied under a running member (rm -rf): it went on writing later segments
    and no marker. The tool said 'the snapshot that covered the gap is unusable' (a refusal)
    where the node cut the log (nothing had been reported kept) and started, catching up as an
    emptied member (an operator's trial). Where the marker still reports the lost entries,
    both refuse."""
    from aeronpy.cluster import admin
    if marker_kept and OsFileSystem().boot_id() is None:
        pytest.skip("no boot id on this OS")
    arc = _killed_archive(str(tmp_path), 100)
    first = arc._segments.segments[0].path
    assert len(arc._segments.segments) >= 2
    os.remove(first)
    if not marker_kept:
        os.remove(os.path.join(str(tmp_path), DURABLE_MARKER_FILE))
    plan = admin.recovery_plan(str(tmp_path))
    assert plan["log_end"] == 0 and "no segment holds index 1" in plan["log_end_reason"]
    again = Archive.open(str(tmp_path), file_sync="none", segment_bytes=4096, fs=OsFileSystem())
    try:
        if marker_kept:
            assert "refuse to start" in plan["problem"], plan
            with pytest.raises(ArchiveCorruptError):
                again.recover()
        else:
            assert "problem" not in plan, plan
            assert "would cut the log at index 1" in plan["note"], plan
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)     # the marker is missing
                assert again.recover().log.last_index == 0
    finally:
        again.close()


@pytest.mark.parametrize("victim", ["none", "segment", "marker", "node.state"])
def test_check_files_finds_a_file_deleted_under_the_archive(victim):
    """A data dir emptied under a running member: it went on acknowledging entries written
    into files with no name, lost at its next start (an operator's trial). check_files()
    (the node calls it once a second) says so and the archive refuses writes."""
    from aeronpy.archive.errors import ArchiveIOError
    from aeronpy.archive.node_state import NODE_STATE_FILE
    fs = MemFileSystem()
    arc, rec = open_mem(fs, "none")
    fill(arc, rec.log, 10, 1)
    arc.save_hard_state(1, 0)
    arc.check_files()                                   # the control: all there
    path = {"segment": arc._segments.segments[-1].path, "marker": arc._marker.path,
            "node.state": f"{arc.data_dir}/{NODE_STATE_FILE}"}.get(victim)
    if path is None:
        arc.check_files()
        return
    fs.remove(path)
    with pytest.raises(ArchiveIOError, match="deleted while the node ran") as caught:
        arc.check_files()
    assert path in str(caught.value)
    with pytest.raises(ArchiveIOError):
        fill(arc, rec.log, 1, 1)                        # no more writes
