"""An idle node parks until its next timer is due, not 1 ms at a time.

Each part that has timers says when ``do_work``/``tick`` next has something to do
(``next_due_ns``): the stream sender and receiver, the transport over them, the Raft core and
the consensus module. The node parks until the earliest (``ClusterNode._idle_park_s``), at most
``_IDLE_PARK_MAX_NS``, and 1 ms while anything is in progress or it did work in the last
``_QUIET_NS``. The streams' rule is checked exactly in tests/transport/test_stream_due.py.
The node's rule is checked on a single-member leader with a
service timer and with work in progress; ``close()`` from another thread ends a long park.

Before this an idle 3-node cluster ran about 1,030 duty cycles a second per node and took
2.4-3.0 % of a CPU per node; after it 160-210 and 0.6-0.8 % (bench/results/perf.md).
"""
from __future__ import annotations

import json
import threading
import time

import pytest

MS = 1_000_000

from aeronpy.cluster import node as node_module
from aeronpy.cluster.config import NodeConfig
from aeronpy.cluster.idle import BackoffIdleStrategy, idle_strategy_from_name
from aeronpy.cluster.node import ClusterNode
from aeronpy.service import ClusteredService, Role
from aeronpy.testing.process_cluster import free_udp_ports
from aeronpy.testing.waits import wait_until



# ------------------------------------------------------------------ the idle strategy
def test_backoff_parks_for_what_park_s_names():
    waits = []
    lengths = iter([0.001, 0.037, 0.05])
    s = BackoffIdleStrategy(max_spins=0, max_yields=0, min_park_s=0.001, max_park_s=0.001,
                            waiter=waits.append, park_s=lambda: next(lengths))
    for _ in range(3):
        s.idle(0)
    assert waits == [0.001, 0.037, 0.05]
    blind = idle_strategy_from_name("backoff", park_s=lambda: 1.0)   # no waiter: ignored
    assert blind._park_s_fn is None


# ------------------------------------------------------------------ the node
class TimerService(ClusteredService):
    """Schedules a timer ``delay_ms`` ahead when a client asks; notes the fires."""

    def __init__(self):
        self.fired = []

    def on_start(self, cluster, snapshot) -> None:
        self.cluster = cluster

    def on_session_message(self, session, timestamp_ns, message) -> None:
        delay_ms = json.loads(bytes(message))["delay_ms"]
        self.cluster.schedule_timer(1, self.cluster.time_ns + delay_ms * 1_000_000)
        session.offer(b"ok")

    def on_timer_event(self, correlation_id, timestamp_ns) -> None:
        self.fired.append(correlation_id)


def _leader(tmp_path, service) -> ClusterNode:
    ports = free_udp_ports(2)
    cfg = NodeConfig(cluster_id=1, member_id=0, data_dir=str(tmp_path / "n0"), log_level="WARNING",
                     members=[{"id": 0, "host": "127.0.0.1", "consensus_port": ports[0],
                               "ingress_port": ports[1]}])
    node = ClusterNode(cfg, [service])
    assert wait_until(lambda: node.do_work() >= 0 and node.role == Role.LEADER, 10.0)
    return node


def _settled_park_s(node) -> float:
    """Run the node until a cycle does nothing, wait out the quiet time and the transport
    counters' copy, and ask its park; again, a few times, while a timer of its own happens to
    be due within the millisecond (a lone leader's 50 ms heartbeat tick), so the callers'
    "idle: a long park" holds without depending on where that tick falls."""
    for _ in range(5):
        for _ in range(50):
            if node.do_work() == 0:
                break
        time.sleep(0.012)          # past the quiet time and the counters' 10 ms copy
        node.do_work()             # an empty cycle: it publishes what the last work changed
        time.sleep(2 * node_module._QUIET_NS / 1e9)
        park_s = node._idle_park_s()
        if park_s > node_module._PARK_NS / 1e9:
            return park_s
    return park_s


def test_an_idle_leader_parks_longer_than_a_millisecond_and_at_most_the_cap(tmp_path):
    node = _leader(tmp_path, ClusteredService())
    try:
        park_s = _settled_park_s(node)
        assert node_module._PARK_NS / 1e9 < park_s <= node_module._IDLE_PARK_MAX_NS / 1e9
        # never past the core's next timer (a lone leader's check of its own heartbeat)
        assert park_s * 1e9 <= max(node.core.next_due_ns() - node._clock(), 0) + 1e6 \
            or park_s == node_module._IDLE_PARK_MAX_NS / 1e9
    finally:
        node.close()


def test_an_idle_started_leader_fires_a_service_timer(tmp_path):
    """End to end on a started node (its own duty-cycle thread and idle strategy): the fire is
    proposed from the leader's tick, so a park past the timer would hold it back."""
    from aeronpy import ClusterClient
    service = TimerService()
    node = _leader(tmp_path, service)
    client = None
    try:
        endpoint = f"127.0.0.1:{node.ingress.local_address[1]}"
        client = ClusterClient.open(endpoint)
        assert wait_until(lambda: node.do_work() >= 0 and client.do_work() >= 0
                          and client.is_connected, 10.0)
        node.start()
        got = []
        client.offer(json.dumps({"delay_ms": 30}).encode())
        assert wait_until(lambda: client.poll_egress(lambda c, p: got.append(bytes(p))) >= 0
                          and got, 10.0)
        assert got == [b"ok"]
        assert wait_until(lambda: client.do_work() >= 0 and service.fired == [1], 5.0)
    finally:
        if client is not None:
            client.close()
        node.close()


def test_the_park_ends_at_the_next_service_timer(tmp_path):
    node = _leader(tmp_path, ClusteredService())
    try:
        _settled_park_s(node)
        module = node.module
        due_cluster_ns = node._cluster_clock() + 20 * MS
        module.timers.schedule(0, 99, due_cluster_ns)      # as the service's schedule applies
        before_ns = node._clock()
        park_s = node._idle_park_s()
        due_ns = due_cluster_ns - node._cluster_offset_ns
        assert park_s * 1e9 <= due_ns - before_ns + 1_000
        assert park_s > node_module._PARK_NS / 1e9        # still a long park: 20 ms away
    finally:
        node.close()


@pytest.mark.parametrize("in_progress", ["egress", "snapshot", "admin", "stopping", "recent work"])
def test_work_in_progress_keeps_the_one_millisecond_park(tmp_path, monkeypatch, in_progress):
    node = _leader(tmp_path, ClusteredService())
    try:
        long_park = _settled_park_s(node)
        assert long_park > node_module._PARK_NS / 1e9      # the control: idle, a long park
        if in_progress == "egress":
            monkeypatch.setattr(type(node.module), "next_due_ns", lambda self: 0)
        elif in_progress == "snapshot":
            monkeypatch.setattr(type(node.snapshots), "busy", property(lambda self: True))
        elif in_progress == "admin":
            monkeypatch.setattr(node._admin, "pending", True)
        elif in_progress == "stopping":
            node._stop.set()
        else:
            node._last_work_ns = node._clock()
        assert node._idle_park_s() == node_module._PARK_NS / 1e9
        node._stop.clear()
    finally:
        node.close()


def test_module_egress_queued_makes_it_due_now(tmp_path):
    node = _leader(tmp_path, ClusteredService())
    try:
        _settled_park_s(node)
        assert node.module.next_due_ns() > 0
        node.module.egress.put(-1, (1, 2, 3, b"x"))
        assert node.module.next_due_ns() == 0
    finally:
        node.close()


def test_close_from_another_thread_ends_a_long_park(tmp_path):
    node = _leader(tmp_path, ClusteredService())
    try:
        _settled_park_s(node)
        waker = threading.Timer(0.05, node._wake)
        waker.start()
        t0 = time.monotonic()
        woke = node._idle._park(3.0)                   # the node's own waiter
        waker.join()
        assert woke is True and time.monotonic() - t0 < 2.5
    finally:
        node.close()


def test_negative_control_without_the_wake_byte_the_park_runs_out(tmp_path):
    node = _leader(tmp_path, ClusteredService())
    try:
        _settled_park_s(node)
        assert node._idle._park(0.05) is False
    finally:
        node.close()


def test_a_started_idle_node_closes(tmp_path):
    node = _leader(tmp_path, ClusteredService())
    node.start()
    time.sleep(0.2)                                    # parked long by now
    node.close()
    assert node.closed and node._wake_pipe is None


def test_the_park_ends_when_the_transport_counters_are_due_after_work(tmp_path):
    """The transport counters are copied at most every 10 ms: an idle node wakes for the
    copy of what its last work changed, so they never lag by a whole long park."""
    node = _leader(tmp_path, ClusteredService())
    try:
        long_park = _settled_park_s(node)
        publisher = node._transport_counters
        before_ns = node._clock()
        publisher._next_ns = before_ns + 5 * MS            # published 5 ms ago
        node._last_work_ns = before_ns - 2 * MS             # ... and work came after it
        park_s = node._idle_park_s()
        assert park_s * 1e9 <= 5 * MS + 1_000
        node._last_work_ns = before_ns - 6 * MS             # work before the last copy
        assert node._idle_park_s() * 1e9 > 5 * MS or long_park * 1e9 <= 5 * MS
    finally:
        node.close()


def _idle_leader_stream_heartbeats(tmp_path, idle_s=1.0) -> int:
    """Stream HEARTBEAT frames an idle leader of 3 started in-process nodes sends in ``idle_s``:
    its streams carry a consensus heartbeat every 50 ms, so none should be needed."""
    ports = free_udp_ports(6)
    members = [{"id": i, "host": "127.0.0.1", "consensus_port": ports[2 * i],
                "ingress_port": ports[2 * i + 1]} for i in range(3)]
    nodes = [ClusterNode(NodeConfig(cluster_id=1, member_id=i, data_dir=str(tmp_path / f"n{i}"),
                                    log_level="WARNING", members=members), [ClusteredService()])
             for i in range(3)]
    try:
        for node in nodes:
            node.start()
        assert wait_until(lambda: any(n.role == Role.LEADER for n in nodes), 10.0)
        time.sleep(0.3)
        leader = next(n for n in nodes if n.role == Role.LEADER)
        before = leader.consensus.counters.heartbeats_sent
        time.sleep(idle_s)
        return leader.consensus.counters.heartbeats_sent - before
    finally:
        for node in nodes:
            node.close()


def test_an_idle_leader_sends_no_stream_heartbeat_after_its_own(tmp_path):
    """After a long park the leader's heartbeat was stamped with the time of the transport's
    last poll, up to 50 ms back, and drew a stream HEARTBEAT each time (20/s per follower)."""
    assert _idle_leader_stream_heartbeats(tmp_path) <= 2


def test_negative_control_unstamped_transports_draw_a_heartbeat_per_heartbeat(tmp_path, monkeypatch):
    monkeypatch.setattr(ClusterNode, "_stamp_transports", lambda self, now_ns: None)
    assert _idle_leader_stream_heartbeats(tmp_path) >= 10


# ------------------------------------------------------------------ no empty cycle after work
@pytest.mark.parametrize("left", ["service message", "timer due", "egress", "ready", "fsync",
                                  "snapshot", "admin"])
def test_a_cycle_that_leaves_something_is_followed_by_another_at_once(tmp_path, monkeypatch,
                                                                      left):
    """After a cycle that did work, the duty-cycle thread parks at once instead of running
    an empty confirming cycle (~5 us per request and member), unless the cycle left something
    that needs a cycle now: a service message to propose (a service's cluster.offer), a
    timer due, egress queued, a Ready, a finished fsync, a snapshot or an admin action. A park there
    would hold it back up to 1 ms."""
    node = _leader(tmp_path, ClusteredService())
    try:
        _settled_park_s(node)
        assert node._settled()                                   # the control: nothing left
        module = node.module
        if left == "service message":
            module.pending_service_messages[1] = (0, b"to the log")
        elif left == "timer due":
            module.timers.schedule(0, 7, node._cluster_clock())
        elif left == "egress":
            module.egress.put(-1, (1, 2, 3, b"x"))
        elif left == "ready":
            assert node.core.propose(15, b"entry") > 0     # a plain entry type of the core's range
        elif left == "fsync":
            # a sync that completed: what it made durable counts (commits, held messages);
            # one still running needs no cycle now, its completion writes the sync pipe
            monkeypatch.setattr(node, "_sync_signalled", True)
        elif left == "snapshot":
            monkeypatch.setattr(type(node.snapshots), "busy", property(lambda self: True))
        else:
            monkeypatch.setattr(node._admin, "pending", True)
        assert not node._settled()
    finally:
        node.close()


def test_the_duty_cycle_thread_parks_right_after_work_when_settled(tmp_path, monkeypatch):
    """Traced on a started leader: a cycle that did work is followed by a park, not by an
    empty cycle run at once (the old loop ran one after every cycle that did work)."""
    from aeronpy import ClusterClient
    from aeronpy.testing.services import EchoService
    node = _leader(tmp_path, EchoService())
    client = None
    trace = []                       # "W" a cycle with work, "E" an empty one, "P" a park
    real_cycle, real_park = node._cycle, node._idle._park

    def traced_cycle():
        work = real_cycle()
        trace.append("W" if work else "E")
        return work

    def traced_park(timeout_s):
        trace.append("P")
        return real_park(timeout_s)
    try:
        endpoint = f"127.0.0.1:{node.ingress.local_address[1]}"
        client = ClusterClient.open(endpoint)
        assert wait_until(lambda: node.do_work() >= 0 and client.do_work() >= 0
                          and client.is_connected, 10.0)
        monkeypatch.setattr(node, "_cycle", traced_cycle)
        monkeypatch.setattr(node._idle, "_park", traced_park)
        node.start()
        for _ in range(20):
            got = []
            client.offer(b"ping")
            assert wait_until(lambda: client.poll_egress(lambda c, p: got.append(1)) >= 0
                              and got, 5.0)
    finally:
        if client is not None:
            client.close()
        node.close()
    text = "".join(trace)
    working = text.count("W")
    assert working >= 20, text
    # "WE": an empty cycle straight after work; now only when a cycle left something (rare)
    assert text.count("WE") <= working // 4, text
    assert text.count("WP") >= working // 2, text
