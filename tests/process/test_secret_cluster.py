"""A three-member cluster with a `secret`: every member-to-member frame carries a MAC bound to
the member it is for (docs/transport.md section 3). The members elect, replicate, fail over
and catch up with it, and no member drops a frame of its peers as a bad MAC; the control is a
member given another secret, whose frames the others drop as bad MACs while it is left out."""
from __future__ import annotations

import signal

import pytest

import aeronpy

from .helpers import add, counters, describe, wait_until

pytestmark = pytest.mark.process

SECRET = "destination-bound-" + "k" * 20


def test_a_cluster_with_a_secret_elects_replicates_and_fails_over(make_cluster):
    pc = make_cluster(config={"secret": SECRET}).start()
    leader = pc.leader(timeout_s=20)
    assert leader is not None, "no leader elected\n" + describe(pc)
    client = aeronpy.ClusterClient.connect(pc.ingress_endpoints, timeout_s=10)
    try:
        assert [add(client) for _ in range(20)] == list(range(1, 21))
        pc.kill(leader, signal.SIGKILL)
        assert add(client, timeout_s=10) == 21               # the survivors elect and commit
        pc.start_member(leader)                              # and the old leader catches up
        target = max(counters(pc, m).get("commit_index", 0) for m in range(3) if m != leader)
        assert wait_until(lambda: counters(pc, leader).get("commit_index", 0) >= target, 15), \
            describe(pc)
    finally:
        client.close()
    for m in range(3):
        assert counters(pc, m).get("drops_bad_mac", 0) == 0, (m, counters(pc, m))


def test_control_a_member_with_another_secret_is_dropped_as_bad_mac(make_cluster, tmp_path):
    pc = make_cluster(config={"secret": SECRET})
    other = tmp_path / "other.toml"                         # member 2 runs with another secret
    other.write_text(open(pc.config_path).read().replace(SECRET, "another-secret"))
    pc.wrap_command = lambda m, argv: ([a if a != pc.config_path else str(other) for a in argv]
                                       if m == 2 else argv)
    pc.start()
    assert pc.leader(timeout_s=20) is not None, describe(pc)
    assert wait_until(lambda: all(counters(pc, m).get("drops_bad_mac", 0) > 0 for m in (0, 1)),
                      10), describe(pc)
