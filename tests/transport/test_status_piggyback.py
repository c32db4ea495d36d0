"""Acknowledgements that cost no datagram, and tail probes that back off.

- A transport that sends DATA to a peer puts its STATUS for that peer's stream in the same
  datagram (``TransportCore.send``, at most one per ``status_piggyback_ns``). A request's reply
  then acknowledges the request, and its sender does not follow a lone message with a
  HEARTBEAT: what lets the stream heartbeat interval be short (a lost tail found sooner)
  without a HEARTBEAT per quiet request.
- A sender whose tail is unacknowledged probes with HEARTBEATs whose gaps double up to the
  idle interval (``StreamSender._heartbeat_due_ns``): a receiver that is not reading (a
  blocking client between requests) is not sent one every ``heartbeat_interval_ns``.
Each test has its control: the same run without piggybacking, or a fixed-interval count.
"""
from __future__ import annotations

from aeronpy._frame import HEARTBEAT, FrameReader, FrameWriter
from aeronpy.transport.counters import TransportCounters
from aeronpy.transport.streams import StreamConfig, StreamSender
from aeronpy.transport.udp import UdpTransport
from tests.transport.harness import FakeClock

MS = 1_000_000
LOOPBACK = "127.0.0.1"


def _pair(config):
    ca, cb = FakeClock(), FakeClock()
    a = UdpTransport(LOOPBACK, 0, 7, 0, config=config, clock=ca)
    b = UdpTransport(LOOPBACK, 0, 7, 1, config=config, clock=cb)
    a.add_peer(1, *b.local_address)
    b.add_peer(0, *a.local_address)
    return a, b, ca, cb


def _poll_until(transport, got, count, tries=500):
    for _ in range(tries):
        transport.poll(lambda peer, message: got.append(bytes(message)))
        if len(got) >= count:
            return True
        transport.wait_readable(2 * MS)
    return False


# Long timers: nothing but the sends under test may put a STATUS or HEARTBEAT on the wire.
QUIET = dict(status_interval_ns=10_000 * MS, idle_interval_ns=10_000 * MS,
             heartbeat_interval_ns=10_000 * MS)


def _request_reply(config):
    a, b, ca, cb = _pair(config)
    try:
        at_b, at_a = [], []
        assert a.send(1, b"request") > 0
        a.flush()
        assert _poll_until(b, at_b, 1)
        assert b.send(0, b"reply") > 0
        b.flush()
        datagrams_before = a.socket_counters()["datagrams_in"]
        assert _poll_until(a, at_a, 1)
        assert at_a == [b"reply"]
        return a.stream_state(1), a.socket_counters()["datagrams_in"] - datagrams_before, b
    finally:
        a.close()
        b.close()


def test_a_reply_carries_the_acknowledgement_of_the_request():
    state, datagrams, b = _request_reply(StreamConfig(**QUIET))
    assert state["acked"] == state["sent"] == len(b"request")
    assert datagrams == 1                      # the STATUS came inside the reply's datagram
    assert b.counters.status_sent == 1


def test_control_without_piggybacking_the_request_stays_unacknowledged():
    # (a receiver's first STATUS is never "recent": only a bound past any clock turns it off)
    state, datagrams, b = _request_reply(StreamConfig(status_piggyback_ns=2**63 - 1, **QUIET))
    assert state["acked"] == 0 and state["sent"] == len(b"request")
    assert b.counters.status_sent == 0


def test_at_most_one_piggybacked_status_per_interval():
    a, b, ca, cb = _pair(StreamConfig(status_piggyback_ns=MS, **QUIET))
    try:
        got = []
        for i, advance in enumerate([0, 0, 0, MS, 0]):
            cb.now += advance
            assert a.send(1, b"m%d" % i) > 0
            a.flush()
            assert _poll_until(b, got, i + 1)
            assert b.send(0, b"r%d" % i) > 0
            b.flush()
        # the first reply and the first after the clock moved 1 ms carry one; the others not
        assert b.counters.status_sent == 2
    finally:
        a.close()
        b.close()


def _heartbeat_times(config, until_ns, status_at=None):
    """Times (ms) of the HEARTBEATs a sender with one unacknowledged message sends, its
    do_work run every 0.5 ms; ``status_at``: (ms, consumed) STATUS answers to deliver."""
    frames = []
    s = StreamSender(FrameWriter(7, 0, 1, 42), frames.append, config, TransportCounters())
    s.offer(b"x" * 10, 0)
    reader, times = FrameReader(), []
    statuses = dict(status_at or {})
    for step in range(until_ns // (MS // 2) + 1):
        now = step * (MS // 2)
        if now // (MS // 2) * (MS // 2) == now and now / MS in statuses:
            s.on_status(statuses.pop(now / MS), config.window_bytes, now)
            s.offer(b"y" * 10, now)                # new data after the answer
        before = len(frames)
        s.do_work(now)
        for frame in frames[before:]:
            if reader.read(frame) == HEARTBEAT:
                times.append(now / MS)
    return times


def test_unanswered_tail_heartbeats_back_off_to_the_idle_interval():
    cfg = StreamConfig(heartbeat_interval_ns=5 * MS, idle_interval_ns=100 * MS)
    # gaps 5, 10, 20, 40, 80, then the idle interval
    assert _heartbeat_times(cfg, 400 * MS) == [5, 15, 35, 75, 155, 255, 355]


def test_an_answer_starts_the_probes_afresh():
    cfg = StreamConfig(heartbeat_interval_ns=5 * MS, idle_interval_ns=100 * MS)
    times = _heartbeat_times(cfg, 120 * MS, status_at={40: 10})
    # probes at 5, 15, 35; at 40 the receiver answers and new data goes: 45, 55, 75, 115
    assert times == [5, 15, 35, 45, 55, 75, 115]


def test_control_a_fixed_interval_would_probe_every_interval():
    # the rule without the back-off, with the same driver: one probe every 5 ms
    cfg = StreamConfig(heartbeat_interval_ns=5 * MS, idle_interval_ns=5 * MS)
    assert _heartbeat_times(cfg, 40 * MS) == [5, 10, 15, 20, 25, 30, 35, 40]


def test_a_restarted_peer_is_probed_at_the_shortest_gap_again():
    """Probes backed off to a peer that did not answer; once it is heard again under a new
    epoch (a restart), its new image learns what it lacks from our next probe, so the
    back-off starts again (else up to idle_interval_ns later)."""
    cfg = StreamConfig(heartbeat_interval_ns=5 * MS, idle_interval_ns=100 * MS,
                       status_interval_ns=10_000 * MS)
    a, b, ca, cb = _pair(cfg)
    b2 = None
    try:
        assert b.send(0, b"hello") > 0       # a knows b's first epoch
        b.flush()
        assert _poll_until(a, [], 1)
        assert a.send(1, b"lost") > 0
        a.flush()
        for _ in range(40):                  # 40 ms of timers, nobody answering
            ca.now += MS
            a.do_work(ca.now)
        sender = a._peers[1].sender
        assert sender._quiet_heartbeats >= 3
        port = b.local_address[1]
        b.close()
        b2 = UdpTransport(LOOPBACK, port, 7, 1, config=cfg, clock=cb)   # member 1, new epoch
        b2.add_peer(0, *a.local_address)
        assert b2.send(0, b"back") > 0
        b2.flush()
        got = []
        assert _poll_until(a, got, 1)
        assert a.counters.peer_restarts == 1
        assert sender._quiet_heartbeats == 0
    finally:
        a.close()
        b.close()
        if b2 is not None:
            b2.close()
