"""Review: a clean close keeps the commit index (docs/archive-format.md: the node replays the
committed entries before it joins "as it does after a clean close"), whatever ``file_sync``
says -- also when the commit advanced after the last append was synced."""
from __future__ import annotations

import pytest

from aeronpy.archive import Archive, MemFileSystem

SEG = 4096


def open_mem(fs, file_sync):
    arc = Archive.open("/data", file_sync=file_sync, segment_bytes=SEG, fs=fs)
    return arc, arc.recover()


@pytest.mark.parametrize("policy", ["none", "data", "full"])
def test_commit_noted_after_the_last_sync_survives_a_clean_close(policy):
    fs = MemFileSystem()
    arc, rec = open_mem(fs, policy)
    for i in range(20):
        rec.log.append(1, 16, bytes([i]) * 40)
    arc.append_from(rec.log, 1, 21)
    arc.sync()
    arc.note_commit_index(20)        # the commit arrives after the entries were synced
    arc.close()
    _, rec2 = open_mem(fs, policy)
    assert rec2.commit_index == 20


def test_commit_noted_after_the_last_sync_with_real_files(tmp_path):
    arc = Archive.open(str(tmp_path), file_sync="data", segment_bytes=SEG)
    rec = arc.recover()
    for i in range(20):
        rec.log.append(1, 16, bytes([i]) * 40)
    arc.append_from(rec.log, 1, 21)
    arc.sync()
    arc.note_commit_index(20)
    arc.close()
    arc2 = Archive.open(str(tmp_path), file_sync="data", segment_bytes=SEG)
    try:
        assert arc2.recover().commit_index == 20
    finally:
        arc2.close()
