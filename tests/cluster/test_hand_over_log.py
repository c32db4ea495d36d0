"""What a closing leader logs about its hand-over: "handed over (... leader None)" was logged
when no member took over (the others closing too), which read as a hand-over that happened."""
import logging

from aeronpy.service import Role
from aeronpy.testing.inproc import close_leader_handing_over, inproc_cluster


def close_leader(nodes, caplog):
    leader = next(n for n in nodes if n.role == Role.LEADER)
    leader.log.setLevel(logging.INFO)             # inproc_cluster's nodes log WARNING and up
    with caplog.at_level(logging.INFO):
        leader.close()
    return [r.getMessage() for r in caplog.records if "leadership" in r.getMessage()]


def close_leader_with_followers_running(nodes, caplog):
    """close_leader while another thread runs the followers' duty cycles (so one takes over)."""
    return close_leader_handing_over(nodes, lambda _leader: close_leader(nodes, caplog))[1]


def test_a_hand_over_to_a_live_follower_names_it(caplog):
    with inproc_cluster() as (nodes, pump, client):
        lines = close_leader_with_followers_running(nodes, caplog)
        assert any("leadership handed over to member" in line for line in lines), lines
        assert not any("leader None" in line for line in lines), lines


def test_no_successor_is_said_as_such(caplog):
    with inproc_cluster() as (nodes, pump, client):
        lines = close_leader(nodes, caplog)          # nothing runs the followers: nobody takes over
        assert any("no member took over" in line for line in lines), lines
        assert not any("leadership handed over" in line for line in lines), lines


def test_the_line_names_the_term_the_node_led(caplog):
    """'handed over leadership of term 2' came from the leader of term 1: the line named the
    term the node had moved to (found by an operator walkthrough)."""
    with inproc_cluster() as (nodes, pump, client):
        led = next(n for n in nodes if n.role == Role.LEADER).core.term
        lines = close_leader_with_followers_running(nodes, caplog)
        [line] = [line for line in lines if "handed over leadership of term" in line]
        assert line.startswith(f"handed over leadership of term {led}: now FOLLOWER in term "), line
