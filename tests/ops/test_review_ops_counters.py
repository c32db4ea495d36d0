"""A counters file whose metadata (the JSON block, which no checksum covers) is damaged but
still parses as JSON: every local tool command answers in one line, never a traceback.

Before: ``null`` or a list as the metadata raised AttributeError in `CountersReader`; an enum
table with a key that is not a number raised ValueError after the values were mapped, and
closing the mapping then raised BufferError; a member entry that is not a table, or one
without an id, raised in ``describe`` and ``list-members``.
"""
import json
import os

import pytest

import aeronpy.cli as cli
from aeronpy.cluster import counters as C
from aeronpy.cluster.counters import CountersReader, CountersUnavailableError, CountersWriter

MEMBERS = [{"id": 0, "host": "127.0.0.1", "consensus_port": 20100, "ingress_port": 20101}]
COMMANDS = ("describe", "list-members", "is-leader", "pid", "metrics")


def with_metadata(tmp_path, change) -> str:
    """A closed node's counters file whose metadata is ``change(metadata)``, re-encoded in
    place (padded with spaces, so every offset stays)."""
    data_dir = tmp_path / "d"
    CountersWriter(data_dir, member_id=0, cluster_id=7, members=MEMBERS).close()
    path = os.path.join(data_dir, C.COUNTERS_FILE)
    raw = bytearray(open(path, "rb").read())
    fields = C._HEADER.unpack_from(raw, 0)
    at, length = fields[10], fields[11]
    new = json.dumps(change(json.loads(bytes(raw[at:at + length])))).encode()
    assert len(new) <= length
    raw[at:at + length] = new.ljust(length, b" ")
    with open(path, "wb") as f:
        f.write(raw)
    return str(data_dir)


SHAPES = {
    "null": lambda m: None,
    "a list": lambda m: [1],
    "enum names a list": lambda m: dict(m, enum_names=[1]),
    "an enum table a list": lambda m: dict(m, enum_names={"role": [1]}),
    "an enum code not a number": lambda m: dict(m, enum_names={"role": {"x": "LEADER"}}),
    "members a string": lambda m: dict(m, members="x"),
    "members not tables": lambda m: dict(m, members=[1, 2]),
}


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_damaged_metadata_is_refused_in_one_line(tmp_path, capsys, shape):
    data_dir = with_metadata(tmp_path, SHAPES[shape])
    with pytest.raises(CountersUnavailableError, match="not a readable counters file"):
        CountersReader(data_dir)
    for command in COMMANDS:
        code = cli.main(["tool", command, "--data-dir", data_dir])
        out, err = capsys.readouterr()
        assert code in (1, 2), (command, code, out, err)   # 1: is-leader / pid say "no"
        assert "not a readable counters file" in out + err, (command, out, err)


def test_a_member_entry_without_an_id_still_describes(tmp_path, capsys):
    data_dir = with_metadata(tmp_path, lambda m: dict(m, members=[{"host": "127.0.0.1"}]))
    for command in ("describe", "list-members"):
        code = cli.main(["tool", command, "--data-dir", data_dir])
        out, err = capsys.readouterr()
        assert code == 0, (command, out, err)
        assert "127.0.0.1" in out
