"""ClusterNode sends a leader's appends before its own write and fsync (``Ready.send_first``).

With ``file_sync = "data"`` each member fsyncs its log before its copy counts. Before, the
leader fsynced first and sent after, so a request waited for two fsyncs in a row; now the
followers write and sync theirs while the leader syncs its own. The test holds the leader's
fsync and watches the followers get, write and sync the entry meanwhile; the negative control
turns send_first off and sees them get nothing while the leader's fsync is held.
"""
from __future__ import annotations

import contextlib

from aeronpy.cluster.config import NodeConfig
from aeronpy.cluster.node import ClusterNode
from aeronpy.core import config as core_config
from aeronpy.core.raft import RaftCore
from aeronpy.service import ClusteredService, Role
from aeronpy.testing.process_cluster import free_udp_ports
from aeronpy.testing.waits import wait_until

from .fakes import hold_fdatasync

RAW_ENTRY = 15          # an entry type of the core's range: the cluster layer skips it


def _nodes(tmp_path):
    ports = free_udp_ports(6)
    members = [{"id": i, "host": "127.0.0.1", "consensus_port": ports[2 * i],
                "ingress_port": ports[2 * i + 1]} for i in range(3)]
    return [ClusterNode(NodeConfig(cluster_id=3, members=members, member_id=i, file_sync="data",
                                   data_dir=str(tmp_path / f"m{i}"), log_level="WARNING"),
                        [ClusteredService()]) for i in range(3)]


def _pump(nodes, until, within_s):
    """One duty cycle of every node between checks of ``until``, for at most ``within_s``."""
    def cycle_then_check():
        for node in nodes:
            node.do_work()
        return until()
    return wait_until(cycle_then_check, within_s, interval_s=0.0005)


def _settled_cluster(tmp_path):
    """Three nodes, elected and settled: one leader all follow, everything committed and
    durable everywhere. Returns (nodes, leader, followers); closes them if that fails."""
    nodes = _nodes(tmp_path)
    try:
        assert _pump(nodes, lambda: any(n.role == Role.LEADER for n in nodes), 10.0), "no leader"

        def settled():
            leaders = [n for n in nodes if n.role == Role.LEADER]
            if len(leaders) != 1 or any(n.core.leader_id != leaders[0].member_id for n in nodes):
                return False
            last = leaders[0].core.log.last_index
            return all(n.commit_index >= last and n.archive.durable_index >= last for n in nodes)
        assert _pump(nodes, settled, 10.0), "did not settle"
    except BaseException:
        for node in nodes:
            node.close()
        raise
    leader = next(n for n in nodes if n.role == Role.LEADER)
    return nodes, leader, [n for n in nodes if n is not leader]


@contextlib.contextmanager
def _holding(nodes):
    """For a test that holds fsyncs: yields ``hold(archive, **kw)`` (fakes.hold_fdatasync,
    returning its gate). On the way out, however the test ends, every gate is opened and
    every node closed."""
    gates = []

    def hold(archive, **kw):
        gate = hold_fdatasync(archive, **kw)
        gates.append(gate)
        return gate
    try:
        yield hold
    finally:
        for gate in gates:
            gate.set()
        for node in nodes:
            node.close()


def _held_leader_sync(tmp_path, hold_s):
    """Elect, settle, hold the leader's fsync, propose one entry and pump for ``hold_s``.
    Returns (index, follower log ends during the hold, followers' durable ends, leader's
    durable end during the hold, leader's commit after release)."""
    nodes, leader, followers = _settled_cluster(tmp_path)
    try:
        last = leader.core.log.last_index
        gate = hold_fdatasync(leader.archive)
        index = leader.core.propose(RAW_ENTRY, b"payload")
        assert index == last + 1
        _pump(nodes, lambda: all(f.archive.durable_index >= index for f in followers), hold_s)
        seen = [f.core.log.last_index if f.core.log.last_index < index
                else bytes(f.core.log.payload_at(index)) for f in followers]
        durable = [f.archive.durable_index for f in followers]
        leader_durable = leader.archive.durable_index
        gate.set()
        _pump(nodes, lambda: leader.commit_index >= index, 10.0)
        for node in nodes:
            assert node.failure is None, node.failure
        return index, seen, durable, leader_durable, leader.commit_index
    finally:
        for node in nodes:
            node.close()


def test_followers_write_while_the_leaders_fsync_is_held(tmp_path):
    index, seen, durable, leader_durable, commit = _held_leader_sync(tmp_path, hold_s=5.0)
    assert leader_durable < index                  # the hold was real
    assert seen == [b"payload", b"payload"]
    assert all(d >= index for d in durable)
    assert commit >= index                         # and the entry commits once released


def test_negative_control_without_send_first_followers_wait_for_the_leaders_fsync(tmp_path, monkeypatch):
    # the old rule whole: no send_first, and every message of such a Ready held for the sync
    # (since only acknowledgements are held, a leader's appends would go after its write)
    monkeypatch.setattr(core_config, "_BUGS", {"holds_all_messages"})
    original = RaftCore.ready

    def ready_without_send_first(self):
        rd = original(self)
        rd.send_first = False
        return rd
    monkeypatch.setattr(RaftCore, "ready", ready_without_send_first)
    # 0.1 s: long enough for the followers to have written (the test above), short of an
    # election (the held leader sends no heartbeats; election_timeout_ms is 200)
    index, seen, durable, leader_durable, commit = _held_leader_sync(tmp_path, hold_s=0.1)
    assert leader_durable < index
    assert seen == [index - 1, index - 1]          # nothing reached them during the hold
    assert commit >= index
