"""RaftCore.rejoining: a member whose data dir was empty at start withholds its vote and its
pre-vote from a candidate with a non-empty log (tests/cluster/test_rejoin_from_empty.py has the
loss it prevents); an empty candidate (a cluster's first election) still gets both."""
from aeronpy.core.messages import CanvassPosition, RequestVote

from .harness import PaperNet


def _granted(net, voter: int, last_index: int) -> list:
    net.step(voter, 2, CanvassPosition(1, 2, 1 if last_index else 0, last_index, 0))
    net.step(voter, 2, RequestVote(2, 1 if last_index else 0, last_index, False, 0))
    return [m.granted for _, _, m in net.take(dst=2)]


def test_a_rejoining_member_gives_no_vote_to_a_non_empty_log():
    net = PaperNet(3, terms=[1, 1, 1])
    net[0].rejoining = True
    assert _granted(net, 0, 5) == [False, False]
    assert net[0].counters["votes_withheld_rejoining"] == 2


def test_control_an_empty_candidate_gets_it_and_a_member_not_rejoining_votes_as_ever():
    net = PaperNet(3, terms=[1, 1, 1])
    net[0].rejoining = True
    assert _granted(net, 0, 0) == [True, True]
    net = PaperNet(3, terms=[1, 1, 1])
    assert _granted(net, 1, 5) == [True, True]
    assert "votes_withheld_rejoining" not in net[1].counters
