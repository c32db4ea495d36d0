"""file_sync = "none" (the default): after a kill -9, a node whose log is damaged inside what it
had written (and so acknowledged) refuses to start, instead of cutting the log there and
forgetting acknowledged entries. The control restarts the same way without the damage."""
from __future__ import annotations

import glob
import os
import struct

import pytest

from aeronpy import ClusterClient
from aeronpy.archive.fs import OsFileSystem
from aeronpy.cluster.nodefiles import read_errors

from .helpers import ADD, wait_until

pytestmark = pytest.mark.process

if OsFileSystem().boot_id() is None:      # pragma: no cover - Linux has one
    pytest.skip("no OS boot id here: the written note is Linux-only", allow_module_level=True)


def _committed_then_killed(make_cluster, requests: int):
    pc = make_cluster(members=1)
    pc.start()
    assert pc.leader(timeout_s=20) == 0, pc.tail_log(0)
    client = ClusterClient.connect(pc.ingress_endpoints, timeout_s=10)
    try:
        for _ in range(requests):
            client.request(ADD.pack(1), timeout_s=10)
    finally:
        client.close()
    pc.kill(0)                                  # SIGKILL: no clean close, durable.pos not synced
    return pc


def _record_offsets(path: str) -> list:
    """Byte offsets of the records in a segment file (format: docs/archive-format.md)."""
    with open(path, "rb") as f:
        raw = f.read()
    offsets, at = [], 64
    while at + 32 <= len(raw):
        length = struct.unpack_from("<I", raw, at)[0]
        if length == 0:
            break
        offsets.append(at)
        at += length
    return offsets


def test_damage_to_written_entries_after_kill9_refuses_to_start(make_cluster):
    pc = _committed_then_killed(make_cluster, 200)
    segment = sorted(glob.glob(os.path.join(pc.data_dir(0), "*.seg")))[-1]
    offsets = _record_offsets(segment)
    assert len(offsets) > 100
    middle = offsets[len(offsets) // 2]
    with open(segment, "r+b") as f:             # bit rot in the 28th byte of a middle record
        f.seek(middle + 28)
        byte = f.read(1)
        f.seek(middle + 28)
        f.write(bytes([byte[0] ^ 0x40]))
    proc = pc.start_member(0)
    assert wait_until(lambda: proc.poll() is not None, 30), pc.tail_log(0)
    assert proc.returncode == 4, pc.tail_log(0)
    errors = " ".join(str(e) for e in read_errors(pc.data_dir(0)))
    assert "archive corrupt" in errors and "file_sync = none" in errors, errors
    assert "restart it empty" in pc.tail_log(0, lines=100)


def test_control_the_same_restart_without_damage_serves(make_cluster):
    pc = _committed_then_killed(make_cluster, 200)
    pc.start_member(0)
    assert pc.leader(timeout_s=20) == 0, pc.tail_log(0)
    client = ClusterClient.connect(pc.ingress_endpoints, timeout_s=10)
    try:
        total = ADD.unpack(bytes(client.request(ADD.pack(1), timeout_s=10)))[0]
    finally:
        client.close()
    assert total == 201                         # nothing written before the kill was lost
