"""A member that has lost its leader (a survivor canvassing with no quorum in reach) is shown
as having no leader, and since when: ``aeronpy tool describe`` said only ``status running``
(and the dead leader as the last one known), which reads as healthy to an operator.

The time comes from a gauge added for it, ``no_leader_since_ns`` (wall clock, 0 while the
member leads or follows a leader); no existing counter or field changes meaning: the status
line still starts ``status       running`` and ``status.state`` is still ``running``."""
from __future__ import annotations

import time

import pytest

from aeronpy.cluster import tool
from aeronpy.cluster.counters import GAUGE, CountersWriter, SlotId
from aeronpy.core.election import ElectionState
from aeronpy.service import Role

MEMBERS = [{"id": i, "host": "127.0.0.1", "consensus_port": 20100 + 10 * i,
            "ingress_port": 20101 + 10 * i} for i in range(3)]
SLOT = "no_leader_since_ns"
S = 10**9


@pytest.fixture
def writer(tmp_path):
    # the slot is declared here, as a node declares it, so the describe tests read the same
    # file with and without the change to the node's publisher
    w = CountersWriter(tmp_path / "node2", member_id=2, cluster_id=7, members=MEMBERS,
                       extra_slots=[(SLOT, GAUGE, "no leader since (wall clock, ns)")])
    yield w
    w.close()


def _set(w, role, leader_id, election_state, since_ns=0):
    w.values[SlotId.ROLE] = int(role)
    w.values[SlotId.LEADER_ID] = leader_id
    w.values[SlotId.LEADERSHIP_TERM] = 5
    w.values[SlotId.ELECTION_STATE] = int(election_state)
    w.values[w.index(SLOT)] = since_ns
    w.touch()


def _status_line(text: str) -> str:
    return next(line for line in text.splitlines() if line.startswith("status"))


def test_describe_says_a_canvassing_member_has_no_leader_and_since_when(writer):
    since = time.time_ns() - 12 * S
    _set(writer, Role.FOLLOWER, 0, ElectionState.CANVASS, since)
    result = tool.describe(writer.data_dir)
    line = _status_line(result.text)
    assert line.startswith("status       running: node running"), line      # unchanged part
    assert f"no leader since {tool.iso_time(since)} (12 s ago)" in line, line
    assert "canvass" in line, line
    assert result.data["status"]["state"] == "running" and result.data["live"] is True
    no_leader = result.data["no_leader"]
    assert no_leader["since"] == tool.iso_time(since) and 12 <= no_leader["age_s"] < 20
    assert no_leader["election_state"] == "CANVASS"


def test_control_a_member_following_a_leader_shows_none_of_it(writer):
    _set(writer, Role.FOLLOWER, 0, ElectionState.FOLLOWER_READY, 0)
    result = tool.describe(writer.data_dir)
    assert _status_line(result.text) == f"status       running: node running (pid {writer_pid()})"
    assert "no leader" not in result.text and result.data["no_leader"] is None
    _set(writer, Role.LEADER, 2, ElectionState.LEADER_READY, 0)
    assert tool.describe(writer.data_dir).data["no_leader"] is None


def writer_pid() -> int:
    import os
    return os.getpid()


def test_describe_no_leader_known_and_not_yet_timed(writer):
    """A follower naming no leader counts too; a slot not yet published (it lags the role by
    up to 10 ms) gives no time rather than a wrong one."""
    _set(writer, Role.FOLLOWER, -1, ElectionState.FOLLOWER_READY, 0)
    result = tool.describe(writer.data_dir)
    assert "no leader" in _status_line(result.text), result.text
    assert result.data["no_leader"]["since"] is None and result.data["no_leader"]["age_s"] is None


def test_describe_says_no_leader_after_a_refused_canvass(writer):
    """A member whose canvass a quorum refused names its last leader again (FOLLOWER_READY)
    though it has not heard it: the gauge keeps the time it lost it, and describe says so."""
    since = time.time_ns() - 7 * S
    _set(writer, Role.FOLLOWER, 0, ElectionState.FOLLOWER_READY, since)
    result = tool.describe(writer.data_dir)
    line = _status_line(result.text)
    assert f"no leader since {tool.iso_time(since)} (7 s ago)" in line, line
    assert "waiting to hear from a leader" in line, line
    assert result.data["no_leader"]["election_state"] == "FOLLOWER_READY"


def test_a_stopped_members_last_values_are_not_read_as_now(writer):
    _set(writer, Role.FOLLOWER, 0, ElectionState.CANVASS, time.time_ns() - 5 * S)
    writer.close()
    result = tool.describe(writer.data_dir)
    assert result.data["live"] is False and result.data["no_leader"] is None
    assert "no leader since" not in _status_line(result.text)


# ------------------------------------------------------------------------ the node's publisher
class _Writer:
    """The slots the publisher reads and writes (standard ones and the new one)."""

    def __init__(self, with_slot: bool = True):
        from aeronpy.cluster.counters import STANDARD_SLOTS
        from aeronpy.cluster.node_counters import TRANSPORT_EXTRA_SLOTS
        self.names = [s[0] for s in STANDARD_SLOTS] + [s[0] for s in TRANSPORT_EXTRA_SLOTS
                                                       if s[0] != SLOT]
        if with_slot:
            self.names.append(SLOT)
        self.values = [s[2] for s in STANDARD_SLOTS] + [0] * (len(self.names) - len(STANDARD_SLOTS))

    def index(self, name):
        return self.names.index(name)


class _Transport:
    def __init__(self):
        from collections import Counter
        from types import SimpleNamespace
        self.socket = SimpleNamespace(datagrams_in=0, datagrams_out=0, bytes_in=0, bytes_out=0,
                                      truncated=0)
        self.counters = SimpleNamespace(naks_sent=0, naks_received=0, retransmits=0,
                                        heartbeats_sent=0, status_sent=0, duplicates=0,
                                        peer_restarts=0, drops=Counter())


def test_the_publisher_records_when_the_member_lost_its_leader_and_keeps_it():
    from aeronpy.cluster.node_counters import TransportCounterPublisher
    wall = [1_000 * S]
    w = _Writer()
    publisher = TransportCounterPublisher(w, (_Transport(),), wall_clock=lambda: wall[0])
    slot = w.index(SLOT)

    def publish(role, leader_id, state):
        w.values[SlotId.ROLE], w.values[SlotId.LEADER_ID] = int(role), leader_id
        w.values[SlotId.ELECTION_STATE] = int(state)
        publisher.publish()
        wall[0] += S
        return w.values[slot]

    assert publish(Role.FOLLOWER, 0, ElectionState.FOLLOWER_READY) == 0        # following
    lost = wall[0]
    assert publish(Role.FOLLOWER, 0, ElectionState.CANVASS) == lost            # leader lost
    for state in (ElectionState.CANVASS, ElectionState.NOMINATE,
                  ElectionState.CANDIDATE_BALLOT, ElectionState.CANVASS):
        assert publish(Role.FOLLOWER if state != ElectionState.CANDIDATE_BALLOT
                       else Role.CANDIDATE, 0, state) == lost                  # the first time kept
    assert publish(Role.FOLLOWER, 1, ElectionState.FOLLOWER_READY) == 0        # a new leader
    again = wall[0]
    assert publish(Role.FOLLOWER, -1, ElectionState.FOLLOWER_READY) == again   # none known
    assert publish(Role.LEADER, 2, ElectionState.LEADER_READY) == 0            # leads itself


def test_the_publisher_keeps_the_time_through_a_refused_canvass():
    """A member whose canvass a quorum refuses follows its last leader again (FOLLOWER_READY,
    leader_id kept) without hearing it: the gauge keeps the time it lost the leader until it
    hears one (``leader_heard``: RaftCore.heard_leader_since_campaign). Before, it read 0
    between canvasses."""
    from aeronpy.cluster.node_counters import TransportCounterPublisher
    wall = [1_000 * S]
    heard = [True]
    w = _Writer()
    publisher = TransportCounterPublisher(w, (_Transport(),), wall_clock=lambda: wall[0])
    publisher.leader_heard = lambda: heard[0]
    slot = w.index(SLOT)

    def publish(state, leader_id=0, role=Role.FOLLOWER):
        w.values[SlotId.ROLE], w.values[SlotId.LEADER_ID] = int(role), leader_id
        w.values[SlotId.ELECTION_STATE] = int(state)
        publisher.publish()
        wall[0] += S
        return w.values[slot]

    assert publish(ElectionState.FOLLOWER_READY) == 0                  # following member 0
    heard[0] = False                                                   # it canvasses
    lost = wall[0]
    assert publish(ElectionState.CANVASS) == lost
    for _ in range(3):                         # refused: member 0 named again, never heard
        assert publish(ElectionState.FOLLOWER_READY) == lost
    heard[0] = True                                                    # its heartbeat arrives
    assert publish(ElectionState.FOLLOWER_READY) == 0
    # a canvass refused between two publishes (it takes a round trip; they come every 10 ms)
    heard[0] = False
    lost = wall[0]
    assert publish(ElectionState.FOLLOWER_READY) == lost
    heard[0] = True                           # the core's rule: True while it leads
    assert publish(ElectionState.LEADER_READY, 2, Role.LEADER) == 0    # it leads now


def test_the_publisher_works_on_a_counters_file_without_the_slot():
    from aeronpy.cluster.node_counters import TransportCounterPublisher
    w = _Writer(with_slot=False)
    publisher = TransportCounterPublisher(w, (_Transport(),), wall_clock=lambda: 5 * S)
    w.values[SlotId.ELECTION_STATE] = int(ElectionState.CANVASS)
    publisher.publish()                           # nothing to write, nothing raised


# ------------------------------------------------------------------------ real processes
@pytest.mark.process
def test_the_last_survivor_of_a_real_cluster_says_no_leader_since_it_lost_it(tmp_path):
    from aeronpy.testing.process_cluster import ProcessCluster
    from aeronpy.testing.waits import wait_until
    pc = ProcessCluster(base_dir=str(tmp_path / "cluster"))
    try:
        pc.start()
        leader = pc.leader(timeout_s=30)
        assert leader is not None
        lone = (leader + 1) % 3
        assert wait_until(lambda: (pc.read_counters(lone) or {}).get("leader_id") == leader, 10)
        before = tool.describe(pc.data_dir(lone))
        assert before.data["no_leader"] is None and "no leader" not in before.text   # control
        killed_at = time.time_ns()
        pc.kill(leader)
        pc.kill(3 - leader - lone)
        assert wait_until(lambda: (pc.read_counters(lone) or {}).get("election_state")
                          in (1, 2, 3), 10), pc.read_counters(lone)
        assert wait_until(lambda: (pc.read_counters(lone) or {}).get(SLOT, 0) > 0, 5), \
            pc.read_counters(lone)
        result = tool.describe(pc.data_dir(lone))
        line = _status_line(result.text)
        assert line.startswith("status       running: node running") and "no leader since" in line, \
            result.text
        since = (pc.read_counters(lone) or {})[SLOT]
        assert killed_at - S < since <= time.time_ns(), (killed_at, since)
        assert result.data["no_leader"]["since"] == tool.iso_time(since)
    finally:
        pc.close()


# ------------------------------------------------------------------ an in-process cluster
def test_a_member_cut_off_from_its_leader_whose_canvass_is_refused_has_no_leader():
    """The leader's messages to one follower are lost except its answers to a canvass; the
    third member still hears the leader, so it and the leader refuse the lone follower's
    canvass, which then names its leader again between canvasses. The gauge (and describe)
    must say it has had no leader since its first canvass, until the leader's messages reach
    it again. Before, it read 0 nearly always: the canvass lasts a round trip."""
    from aeronpy.cluster.counters import CountersReader
    from aeronpy.core.messages import Vote
    from aeronpy.testing.inproc import inproc_cluster
    with inproc_cluster() as (nodes, pump, _client):
        leader = next(n for n in nodes if n.role == Role.LEADER)
        lone = next(n for n in nodes if n is not leader)
        leader_id = leader.config.member_id
        reader = CountersReader(lone.config.data_dir)

        def pump_until(predicate, timeout_s: float) -> bool:
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                pump()
                if predicate():
                    return True
                time.sleep(0.0005)
            return False
        assert pump_until(lambda: reader.read()["leader_id"] == leader_id
                          and reader.read()[SLOT] == 0, 5), reader.read()     # control
        cut = [True]
        deliver = lone._on_consensus_message

        def from_peer(peer_id, payload):
            # decoded only to pick the canvass answers out: the node decodes again
            if cut[0] and peer_id == leader_id and type(lone._decode(payload)) is not Vote:
                return
            deliver(peer_id, payload)
        lone._on_consensus_message = from_peer
        history = lone.core.election.history
        seen = len(history)
        assert pump_until(lambda: any(reason == "canvass lost" for *_, reason in history[seen:])
                          and lone.core.election_state == ElectionState.FOLLOWER_READY, 10), \
            history[seen:]
        samples = []
        deadline = time.monotonic() + 0.3                 # the time between two canvasses
        while time.monotonic() < deadline:
            pump()
            samples.append(reader.read())
            time.sleep(0.0005)
        refused = [v for v in samples if v["election_state"] == int(ElectionState.FOLLOWER_READY)
                   and v["leader_id"] == leader_id]
        assert refused, samples[-1]
        assert all(v[SLOT] > 0 for v in refused), \
            f"{sum(v[SLOT] == 0 for v in refused)} of {len(refused)} samples read 0"
        since = refused[-1][SLOT]
        assert all(v[SLOT] == since for v in refused)                      # kept, not restamped
        assert 0 < time.time_ns() - since < 30 * S
        result = tool.describe(lone.config.data_dir)
        assert result.data["no_leader"] is not None, result.text
        assert result.data["no_leader"]["since"] == tool.iso_time(reader.read()[SLOT])
        cut[0] = False                                    # the leader's messages arrive again
        assert pump_until(lambda: reader.read()[SLOT] == 0, 5), reader.read()
        assert reader.read()["leader_id"] == leader_id
        assert tool.describe(lone.config.data_dir).data["no_leader"] is None
        reader.close()
