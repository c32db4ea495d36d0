"""CoreConfig.ballot_tag: a voter refuses its vote (canvass and ballot) to a candidate whose tag
differs from its own, both being set. A node puts a digest of its service list there, so a
member that hosts other services can never lead members that would diverge from it."""
from __future__ import annotations

import pytest

from aeronpy.core import CoreConfig, Role
from aeronpy.core.messages import CanvassPosition, RequestVote

from .harness import PaperNet

A, B = 0x0A0A, -0x0B0B


def _tagged(tags, **config):
    net = PaperNet(len(tags), terms=[1] * len(tags), **config)
    reports = []
    for i, tag in enumerate(tags):
        net[i].config.ballot_tag = tag
        net[i].on_ballot_tag_mismatch = lambda member, tag, i=i: reports.append((i, member, tag))
    return net, reports


def _time_out(net, member: int, rounds: int = 30) -> None:
    """Only ``member`` is ticked past its election timeout, again and again."""
    for _ in range(rounds):
        net.tick(member, 500)
        net.deliver_all()
        if net[member].role is Role.LEADER:
            return


@pytest.mark.parametrize("pre_vote", [True, False])
@pytest.mark.parametrize("odd_tag,wins", [(A, True), (B, False)], ids=["same tag (control)", "other tag"])
def test_a_candidate_with_another_tag_never_wins(pre_vote, odd_tag, wins):
    net, reports = _tagged([A, A, odd_tag], pre_vote=pre_vote)
    _time_out(net, 2)
    assert (net[2].role is Role.LEADER) is wins
    if not wins:
        assert net[0].counters["votes_refused_ballot_tag"] >= 1
        assert net[1].counters["votes_refused_ballot_tag"] >= 1
        assert (0, 2, B) in reports and (1, 2, B) in reports
        if pre_vote:                          # refused at the canvass: no term was raised
            assert net[0].term == net[1].term == net[2].term == 1
    else:
        assert reports == [] and "votes_refused_ballot_tag" not in net[0].counters


def test_the_members_sharing_a_tag_elect_one_of_theirs():
    net, reports = _tagged([A, A, B])
    net.elect(0)                              # member 2 refuses; member 1's vote is the quorum
    assert net[0].role is Role.LEADER
    assert net[2].counters["votes_refused_ballot_tag"] >= 1 and set(reports) == {(2, 0, A)}


def test_a_tag_of_0_on_either_side_is_not_checked():
    for own, candidate in ((0, B), (A, 0), (0, 0)):
        net, reports = _tagged([own, own, own])
        net.step(0, 2, CanvassPosition(1, 2, 1, 0, candidate))
        net.step(1, 2, RequestVote(2, 1, 0, False, candidate))
        assert [m.granted for _, _, m in net.take(dst=2)] == [True, True], (own, candidate)
        assert reports == []


def test_both_requests_carry_the_tag():
    net, _ = _tagged([A, A, B])
    net.tick(2)
    net.tick(2, 500)
    assert [(type(m), m.ballot_tag) for _, _, m in net.take(src=2)] == [(CanvassPosition, B)] * 2
    net, _ = _tagged([A, A, B], pre_vote=False)
    net.tick(2)
    net.tick(2, 500)
    assert [(type(m), m.ballot_tag) for _, _, m in net.take(src=2)] == [(RequestVote, B)] * 2


def test_the_tag_must_fit_in_64_signed_bits():
    assert CoreConfig(0, (0,), ballot_tag=-(1 << 63)).ballot_tag == -(1 << 63)
    for bad in (1 << 63, -(1 << 63) - 1):
        with pytest.raises(ValueError, match="ballot_tag"):
            CoreConfig(0, (0,), ballot_tag=bad)


def test_a_mismatch_is_told_even_when_the_log_alone_would_refuse():
    net, reports = _tagged([A, A, B])
    net.elect(0)                              # members 0 and 1 now hold a longer log than 2 would
    net.step(1, 2, CanvassPosition(net[1].term, net[1].term + 1, 0, 0, B))
    assert (1, 2, B) in reports
    [(_, _, vote)] = net.take(src=1, dst=2)
    assert not vote.granted
