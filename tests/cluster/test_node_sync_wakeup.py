"""A node waiting for its fsync is woken by the sync thread, not by its next park.

The archive's sync thread writes a byte to a pipe the node's idle strategy waits on (beside the
sockets) when a sync completes. Before, nothing announced the sync: the node found out at its
next short park. The test parks a single-member node (no datagram can come) while its fsync is
held, releases the fsync from another thread, and sees the park end because of it; the negative
control runs the same node without the pipe and sees the park run out.
"""
from __future__ import annotations

import select
import threading
import time

from aeronpy.archive.archive import Archive
from aeronpy.cluster.config import NodeConfig
from aeronpy.cluster.node import ClusterNode
from aeronpy.service import ClusteredService
from aeronpy.testing.process_cluster import free_udp_ports

from .fakes import hold_fdatasync

RAW_ENTRY = 15
PARK_S = 3.0            # long enough that only the sync (or nothing) can end it


def _node(tmp_path, file_sync="data"):
    ports = free_udp_ports(2)
    raw = {"cluster_id": 1, "file_sync": file_sync, "data_dir": str(tmp_path / "m0"),
           "members": [{"id": 0, "host": "127.0.0.1", "consensus_port": ports[0],
                        "ingress_port": ports[1]}]}
    return ClusterNode(NodeConfig.from_dict(raw, member_id=0), [ClusteredService()])


def _syncing(node) -> bool:
    """Writes wait for their fsync (the node advanced past them; the core counts them once
    the sync is reported)."""
    return node._unsynced_hi != 0


def _settle(node):
    """Run the lone member until it leads, has committed its first entry and waits for no sync."""
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline and (node.commit_index < 1 or _syncing(node)):
        node.do_work()
    assert node.commit_index >= 1 and not _syncing(node)


def _park_while_the_sync_is_held(node):
    """Returns (what the park returned, the durable index right after, the entry's index)."""
    _settle(node)
    gate = hold_fdatasync(node.archive)
    index = node.core.propose(RAW_ENTRY, b"x")
    node.do_work()                                   # written, sync requested: waiting for it
    node.do_work()                                   # (drains any earlier wake-up)
    assert _syncing(node) and node.commit_index < index   # a lone member's own copy counts
    releaser = threading.Timer(0.05, gate.set)
    releaser.start()
    try:
        woke = node._idle._park(PARK_S)              # the node's own waiter, as its idle parks
    finally:
        gate.set()
        releaser.join()
    return woke, node.archive.poll_synced(), index


def test_the_sync_thread_wakes_a_parked_node(tmp_path):
    node = _node(tmp_path)
    try:
        woke, durable, index = _park_while_the_sync_is_held(node)
        assert woke is True
        assert durable >= index                      # it woke because the sync was done
        node.do_work()
        assert not _syncing(node) and node.failure is None
        assert node.commit_index >= index                # reported to the core: committed
        # the wake-up was drained: the next park would not return at once (no spinning). A
        # later sync (of the durable marker, say) may write the pipe again just after a cycle
        # drained it, so allow a few cycles; a node that never drained it stays readable.
        for _ in range(20):
            if select.select([node._sync_pipe[0]], [], [], 0)[0] == []:
                break
            time.sleep(0.01)
            node.do_work()
        assert select.select([node._sync_pipe[0]], [], [], 0)[0] == []
    finally:
        node.close()


def test_negative_control_without_the_pipe_the_park_runs_out(tmp_path, monkeypatch):
    monkeypatch.setattr(Archive, "on_synced", lambda self, callback: False)
    node = _node(tmp_path)
    try:
        assert node._sync_pipe is None
        woke, _durable, _index = _park_while_the_sync_is_held(node)
        assert woke is False
    finally:
        node.close()


def test_no_pipe_when_syncs_are_inline(tmp_path):
    node = _node(tmp_path, file_sync="none")
    try:
        assert node._sync_pipe is None
        assert node.archive.on_synced(lambda: None) is False
    finally:
        node.close()


def test_the_pipe_is_closed_with_the_node(tmp_path):
    import os
    node = _node(tmp_path)
    read_fd, write_fd = node._sync_pipe
    node.close()
    assert node._sync_pipe is None
    for fd in (read_fd, write_fd):
        try:
            os.fstat(fd)
        except OSError:
            continue
        raise AssertionError(f"fd {fd} still open after close (or reused meanwhile)")


def test_closing_a_leader_whose_ready_waits_for_its_fsync(tmp_path):
    """Regression: close() handed leadership over while a Ready still waited for its fsync;
    the core refused the transfer before advance(rd) and close() raised RuntimeError,
    leaving files and sockets open. Now the Ready finishes first."""
    node = _node(tmp_path)
    _settle(node)
    gate = hold_fdatasync(node.archive)
    index = node.core.propose(RAW_ENTRY, b"x")
    node.do_work()
    assert _syncing(node)
    releaser = threading.Timer(0.05, gate.set)
    releaser.start()
    try:
        node.close()                                 # raised RuntimeError before the fix
    finally:
        gate.set()
        releaser.join()
    assert node.closed and node.archive.durable_index >= index
