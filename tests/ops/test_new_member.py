"""`aeronpy tool new-member`: a data dir prepared for a member that has never run starts
unmarked (it votes from its first start), once; anything else stays as before."""
from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys

import pytest

from aeronpy.cluster.new_member import (NEW_MEMBER_FILE, NewMemberError, prepare_new_member,
                                        take_new_member_mark)
from aeronpy.errors import ConfigError

from tests.ops.opsfiles import one_member_node


def _tool(*args):
    return subprocess.run([sys.executable, "-m", "aeronpy", "tool", "new-member", *args],
                          capture_output=True, text=True, timeout=60)


def test_the_tool_prepares_a_missing_or_empty_dir_and_refuses_anything_else(tmp_path):
    out = _tool("--data-dir", str(tmp_path / "m0"))
    assert out.returncode == 0, out.stderr
    assert os.listdir(tmp_path / "m0") == [NEW_MEMBER_FILE]
    (tmp_path / "m1").mkdir()
    assert _tool("--data-dir", str(tmp_path / "m1")).returncode == 0
    again = _tool("--data-dir", str(tmp_path / "m0"))
    assert again.returncode == 2 and "is not empty (new-member)" in again.stderr
    (tmp_path / "ran").mkdir()
    (tmp_path / "ran" / "node.state").write_bytes(b"x")
    ran = _tool("--data-dir", str(tmp_path / "ran"))
    assert ran.returncode == 2 and "never run" in ran.stderr
    assert os.listdir(tmp_path / "ran") == ["node.state"]
    (tmp_path / "file").write_text("")
    with pytest.raises(NewMemberError, match="not a directory"):
        prepare_new_member(str(tmp_path / "file"))


def test_a_node_on_a_prepared_dir_votes_from_its_first_start_and_only_then(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    prepare_new_member(str(tmp_path / "n0"))
    node = one_member_node(tmp_path, log_level="INFO")
    try:
        assert not node.core.rejoining
        assert not os.path.exists(tmp_path / "n0" / NEW_MEMBER_FILE)
        assert any("a new member" in r.getMessage() for r in caplog.records)
    finally:
        node.close()
    shutil.rmtree(tmp_path / "n0")          # the disk is lost later: back empty, marked
    assert _starts_rejoining_on_an_empty_dir(tmp_path)


def _starts_rejoining_on_an_empty_dir(tmp_path) -> bool:
    os.mkdir(tmp_path / "n0")
    node = one_member_node(tmp_path)
    try:
        return node.core.rejoining
    finally:
        node.close()


def test_control_an_unprepared_empty_dir_counts_as_rejoining(tmp_path):
    assert _starts_rejoining_on_an_empty_dir(tmp_path)


def test_the_file_beside_a_rejoining_mark_is_removed_unused(tmp_path, caplog):
    """Put there by hand on a member that is catching up (a restart midway keeps the mark):
    it changes nothing."""
    os.mkdir(tmp_path / "n0")
    node = one_member_node(tmp_path)
    node.close()
    assert os.path.exists(tmp_path / "n0" / "rejoining")
    (tmp_path / "n0" / NEW_MEMBER_FILE).write_text("{}")
    caplog.set_level(logging.WARNING)
    node = one_member_node(tmp_path)
    try:
        assert node.core.rejoining
        assert not os.path.exists(tmp_path / "n0" / NEW_MEMBER_FILE)
        assert any("removed unused" in r.getMessage() for r in caplog.records)
    finally:
        node.close()


def test_a_directory_in_the_files_place_is_a_clear_error(tmp_path):
    os.makedirs(tmp_path / "n0" / NEW_MEMBER_FILE)
    with pytest.raises(ConfigError, match="cannot be removed"):
        take_new_member_mark(str(tmp_path / "n0"))


def test_a_start_that_fails_leaves_the_file_for_the_next(tmp_path):
    """A port in use: the node never ran a duty cycle (voted for nothing), so the preparation
    still counts at the next start."""
    import socket
    from aeronpy.testing.process_cluster import free_udp_ports
    prepare_new_member(str(tmp_path / "n0"))
    consensus, ingress = free_udp_ports(2)
    taken = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    taken.bind(("127.0.0.1", ingress))
    try:
        with pytest.raises(ConfigError, match="already in use"):
            one_member_node(tmp_path, ports=(consensus, ingress))
    finally:
        taken.close()
    assert os.path.exists(tmp_path / "n0" / NEW_MEMBER_FILE)
    node = one_member_node(tmp_path, ports=(consensus, ingress))
    try:
        assert not node.core.rejoining
        assert not os.path.exists(tmp_path / "n0" / NEW_MEMBER_FILE)
    finally:
        node.close()
