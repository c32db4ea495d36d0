"""The fixed-size control files (node.state, durable.pos) are never read whole whatever they
grew to: a huge one (a mistaken copy, a damaged file system) was loaded into memory at start
(found by the archive review). node.state is then refused as corrupt, durable.pos is
unreadable (a warning, as a damaged one)."""
import pytest

from aeronpy.archive import ArchiveCorruptError
from aeronpy.archive.durable_marker import DurableMarker
from aeronpy.archive.fs import MemFileSystem, OsFileSystem
from aeronpy.archive.node_state import NODE_STATE_FILE, load_node_state, save_node_state

BIG = 64 * 1024 * 1024


def test_a_huge_node_state_is_refused_without_reading_it(tmp_path):
    fs = OsFileSystem()
    save_node_state(fs, str(tmp_path), 3, 1)
    assert load_node_state(fs, str(tmp_path)).term == 3
    with open(tmp_path / NODE_STATE_FILE, "r+b") as f:
        f.truncate(BIG)                      # sparse: costs no disk
    # "more than": refused on its size (the old code read all 64 MiB first, then said so)
    with pytest.raises(ArchiveCorruptError, match="more than the"):
        load_node_state(fs, str(tmp_path))


def test_a_huge_durable_marker_is_unreadable_not_loaded():
    fs = MemFileSystem()
    fs.makedirs("/d")
    marker = DurableMarker(fs, "/d")
    marker.open()
    marker.write(5, 4, sync=True)
    again = DurableMarker(fs, "/d")
    again.load()
    assert again.valid and again.durable_index == 5
    h = fs.open_file(marker.path)
    fs.pwrite(h, b"\0", 10 * 1024 * 1024)
    fs.close(h)
    grown = DurableMarker(fs, "/d")
    grown.load()
    assert not grown.valid
