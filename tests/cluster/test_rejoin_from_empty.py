"""A member started on an empty data dir has lost its log and its vote: it must not help a
member with an older log win an election before it has caught up with the cluster.

Found by an operator walkthrough: member 2 stopped; members 0 and 1 acknowledged requests;
then 0 and 1 stopped, 0's data dir was emptied, and 0 and 2 started. 2 (the older log) won
with 0's vote, and the acknowledged requests were gone for good. Now a member that starts on
an empty data dir withholds its vote from any candidate with a non-empty log until its commit
index reaches the leader's commit index of the first AppendEntries it gets (or it leads): a
cluster's first election (every log empty) is unchanged.
"""
import shutil
import time

from aeronpy.client import ClusterClient
from aeronpy.cluster.config import NodeConfig
from aeronpy.cluster.node import ClusterNode
from aeronpy.service import Role
from aeronpy.testing.process_cluster import free_udp_ports
from aeronpy.testing.services import CounterService


class Members:
    """Three embedded members on fixed ports and data dirs, each driven by ``pump``."""

    def __init__(self, base):
        ports = free_udp_ports(6)
        self.base = base
        self.members = [{"id": i, "host": "127.0.0.1", "consensus_port": ports[2 * i],
                         "ingress_port": ports[2 * i + 1]} for i in range(3)]
        self.nodes = {}

    def data_dir(self, i):
        return str(self.base / f"n{i}")

    def start(self, i):
        cfg = NodeConfig(cluster_id=7, members=self.members, member_id=i,
                         data_dir=self.data_dir(i), log_level="WARNING",
                         segment_bytes=1 << 20)
        self.nodes[i] = ClusterNode(cfg, [CounterService()])

    def stop(self, i):
        self.nodes.pop(i).close(transfer_timeout_ms=0)

    def pump(self, seconds=0.0, until=None):
        deadline = time.monotonic() + seconds
        while True:
            for node in list(self.nodes.values()):
                node.do_work()
            if until is not None and until():
                return True
            if time.monotonic() >= deadline:
                return until is None
            time.sleep(0.0002)

    def leader(self):
        leaders = [i for i, n in self.nodes.items() if n.role == Role.LEADER]
        return leaders[0] if leaders else None

    def endpoints(self, ids):
        return ",".join(f"127.0.0.1:{self.members[i]['ingress_port']}" for i in ids)

    def close(self):
        for i in list(self.nodes):
            self.stop(i)


def add(members, ids, count):
    """``count`` increments through the members ``ids``, each acknowledged."""
    client = ClusterClient.open(members.endpoints(ids))
    try:
        assert members.pump(10, until=lambda: client.do_work() >= 0 and client.is_connected)
        for _ in range(count):
            cid = client.offer(b"\x01\x00\x00\x00\x00\x00\x00\x00")
            assert cid > 0
            got = []
            assert members.pump(10, until=lambda: client.poll_egress(
                lambda c, p: got.append(c)) >= 0 and cid in got)
    finally:
        client.close()


def started_with_five_increments(members):
    """All three started (a first election: every log empty) and 5 increments acknowledged;
    (the leader, a follower)."""
    for i in range(3):
        members.start(i)
    assert members.pump(10, until=lambda: members.leader() is not None)
    add(members, [0, 1, 2], 5)
    leader = members.leader()
    return leader, next(i for i in range(3) if i != leader)


def applied(node):
    return node.module.container.services[0].applied


def test_an_emptied_member_does_not_elect_an_older_log(tmp_path):
    members = Members(tmp_path)
    try:
        leader, follower = started_with_five_increments(members)
        stale = 3 - leader - follower
        members.stop(stale)                               # the stale member misses what follows
        add(members, [leader, follower], 20)              # acknowledged by leader + follower
        acked = applied(members.nodes[leader])
        assert acked >= 25
        members.stop(leader)
        members.stop(follower)
        shutil.rmtree(members.data_dir(follower))         # the operator empties one data dir
        members.start(follower)
        members.start(stale)
        # the emptied member must not give the stale one its vote: no leader, nothing lost
        elected = members.pump(3, until=lambda: members.leader() is not None)
        assert not elected, (f"member {members.leader()} was elected with the emptied "
                             f"member's vote: the acknowledged entries are lost")
        assert members.nodes[follower].core.counters.get("votes_withheld_rejoining", 0) > 0
        # the member that holds them comes back: it leads, and everything is there
        members.start(leader)
        assert members.pump(10, until=lambda: members.leader() is not None)
        assert members.pump(10, until=lambda: all(applied(n) >= acked
                                                   for n in members.nodes.values()))
        # caught up, the emptied member votes again (its mark is gone)
        assert members.pump(10, until=lambda: not members.nodes[follower].core.rejoining)
    finally:
        members.close()


def test_a_new_cluster_still_elects_and_an_emptied_member_rejoins(tmp_path):
    """The control: every log empty (a cluster's first start) elects at once, and a member
    emptied while both others run catches up and votes again."""
    members = Members(tmp_path)
    try:
        leader, follower = started_with_five_increments(members)
        members.stop(follower)
        shutil.rmtree(members.data_dir(follower))
        members.start(follower)
        assert members.nodes[follower].core.rejoining
        assert members.pump(10, until=lambda: not members.nodes[follower].core.rejoining
                            and applied(members.nodes[follower]) >= 5)
        # and with it caught up, the cluster survives losing its leader
        members.stop(leader)
        assert members.pump(10, until=lambda: members.leader() is not None)
        add(members, [i for i in range(3) if i != leader], 3)
    finally:
        members.close()
