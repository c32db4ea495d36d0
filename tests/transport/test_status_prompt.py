"""When a receiver acknowledges progress that no DATA of its own carried a STATUS for
(``StreamReceiver._status_due_ns``): once the sender has been quiet ``status_prompt_ns``.

- Not at once: a request's reply, sent meanwhile, carries the STATUS in its datagram, so the
  requester is not woken by a STATUS before its reply. (The rule before counted
  ``status_interval_ns`` from the last STATUS, long past after an idle spell, so a lone
  request drew a STATUS straight away.)
- Not late: the STATUS reaches the sender before its first tail HEARTBEAT
  (``heartbeat_interval_ns``), so a lone message with no reply draws no probe. (Before, the
  STATUS came up to ``status_interval_ns``, 20 ms, later, after two HEARTBEATs.)
- A steady flow is still acknowledged every ``status_interval_ns`` (or quarter window).
"""
from __future__ import annotations

from aeronpy._frame import HEARTBEAT, STATUS, FrameReader, FrameWriter
from aeronpy.transport.counters import TransportCounters
from aeronpy.transport.streams import StreamConfig, StreamReceiver, StreamSender
from aeronpy.transport.udp import UdpTransport
from tests.transport.harness import FakeClock

from .test_streams import Wire, control, deliver

MS = 1_000_000
HALF_MS = MS // 2


def _pair(config):
    to_rx, to_tx = Wire(), Wire()
    tx = StreamSender(FrameWriter(1, 0, 1, 42), to_rx, config, TransportCounters())
    rx = StreamReceiver(42, FrameWriter(1, 1, 1, 7), to_tx, config, TransportCounters())
    return tx, rx, to_rx, to_tx


def _lone_message(config, at_ms=50, until_ms=120):
    """A first message at 0 (acknowledged at once: a receiver's first STATUS), then a lone one
    at ``at_ms``, both sides' timers run every 0.5 ms. Returns the times (ms) of the sender's
    HEARTBEATs and of the receiver's STATUS frames after ``at_ms``."""
    tx, rx, to_rx, to_tx = _pair(config)
    reader = FrameReader()
    heartbeats, statuses = [], []
    for step in range(until_ms * 2 + 1):
        now = step * HALF_MS
        if now in (0, at_ms * MS):
            tx.offer(b"m", now)
        tx.do_work(now)
        frames = to_rx.take()
        heartbeats += [now / MS for f in frames if reader.read(f) == HEARTBEAT and now > at_ms * MS]
        deliver(rx, frames, [], now)
        rx.do_work(now)
        back = to_tx.take()
        statuses += [now / MS for f in back if reader.read(f) == STATUS and now >= at_ms * MS]
        control(tx, back, now)
    return heartbeats, statuses


def test_a_lone_message_is_acknowledged_after_the_prompt_and_draws_no_heartbeat():
    cfg = StreamConfig()                       # defaults: prompt 2 ms, heartbeat 5 ms
    assert cfg.status_prompt_ns < cfg.heartbeat_interval_ns
    heartbeats, statuses = _lone_message(cfg)
    assert statuses == [52.0]
    assert heartbeats == []


def test_control_a_prompt_past_the_heartbeat_draws_probes():
    # the same run with the acknowledgement left to status_interval_ns: the sender probes
    cfg = StreamConfig(status_prompt_ns=20 * MS)
    heartbeats, statuses = _lone_message(cfg)
    assert heartbeats[:2] == [55.0, 65.0]
    assert statuses[0] == 70.0


def test_progress_is_not_acknowledged_at_once_after_an_idle_spell():
    tx, rx, to_rx, to_tx = _pair(StreamConfig())
    tx.offer(b"a", 0)
    deliver(rx, to_rx.take(), [], 0)
    rx.do_work(0)
    to_tx.take()                               # the first STATUS
    tx.offer(b"b", 500 * MS)                   # long after it
    deliver(rx, to_rx.take(), [], 500 * MS)
    assert rx.next_due_ns() == 502 * MS
    assert rx.do_work(502 * MS - 1) == 0 and to_tx.take() == []
    assert rx.do_work(502 * MS) == 1 and len(to_tx.take()) == 1


def test_a_steady_flow_is_acknowledged_every_status_interval():
    cfg = StreamConfig(status_prompt_ns=2 * MS, status_interval_ns=20 * MS)
    tx, rx, to_rx, to_tx = _pair(cfg)
    reader, statuses = FrameReader(), []
    for step in range(100):                    # a message every ms for 100 ms
        now = step * MS
        tx.offer(b"s", now)
        deliver(rx, to_rx.take(), [], now)
        rx.do_work(now)
        statuses += [now // MS for f in to_tx.take() if reader.read(f) == STATUS]
    # the first message's STATUS at once, then one per 20 ms of flow, never the prompt
    assert statuses == [0, 21, 42, 63, 84]


def test_a_reply_after_an_idle_spell_still_carries_the_acknowledgement():
    """The whole path on loopback: 50 ms after the last keep-alive, a request's receiver runs
    its timers before it replies (the reply is 0.5 ms later); the requester gets one datagram."""
    ca, cb = FakeClock(), FakeClock()
    cfg = StreamConfig()
    a = UdpTransport("127.0.0.1", 0, 7, 0, config=cfg, clock=ca)
    b = UdpTransport("127.0.0.1", 0, 7, 1, config=cfg, clock=cb)
    try:
        a.add_peer(1, *b.local_address)
        b.add_peer(0, *a.local_address)

        def exchange(tag):
            b.do_work(cb.now)                  # keep-alives due after the quiet second ...
            while a.wait_readable(0):          # ... are read before the count starts
                a.poll(lambda peer, m: None)
            ca.now += 50 * MS                  # the request comes 50 ms after them
            cb.now += 50 * MS
            before = a.socket_counters()["datagrams_in"]
            got = []
            assert a.send(1, b"request" + tag) > 0
            a.flush()
            for _ in range(500):
                b.poll(lambda peer, m: got.append(bytes(m)))
                if got:
                    break
                b.wait_readable(2 * MS)
            assert got
            b.do_work(cb.now)                  # timers run between the request and the reply
            cb.now += HALF_MS
            b.do_work(cb.now)
            assert b.send(0, b"reply" + tag) > 0
            b.flush()
            replies = []
            for _ in range(500):
                a.poll(lambda peer, m: replies.append(bytes(m)))
                if replies:
                    break
                a.wait_readable(2 * MS)
            assert replies == [b"reply" + tag]
            assert not a.wait_readable(0)
            return a.socket_counters()["datagrams_in"] - before

        exchange(b"0")
        ca.now += 1000 * MS
        cb.now += 1000 * MS
        assert exchange(b"1") == 1             # the reply, with the STATUS inside
        assert a.stream_state(1)["acked"] == a.stream_state(1)["sent"]
    finally:
        a.close()
        b.close()
