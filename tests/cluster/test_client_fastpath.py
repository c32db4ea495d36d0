"""The client's hot path against the slow path it replaces.

- ``_clientpath.egress_fields`` / ``EgressDispatcher`` read EgressMessages in place: they must
  agree with ``_codec.decode`` on every well-formed message and fail on exactly the inputs it
  fails on (malformed egress is counted by the dispatcher, never raised).
- ``ClientCore(encoded_messages=True)`` fed ``on_egress_message(fields)`` must behave step by
  step like ``ClientCore()`` fed ``on_egress(EgressMessage)``: same counters, window, sends,
  deliveries and replies, on random sessions with duplicates, reordering, acks and resends.
Each comparison has a negative control: a deliberately wrong reader or core must be caught.
"""
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aeronpy import _codec
from aeronpy._clientpath import EgressDispatcher, egress_fields
from aeronpy.client import ClusterClient, UdpClientTransport
from aeronpy.cluster import protocol as P
from aeronpy.cluster.client_core import ClientConfig, ClientCore, ClientState

I64 = st.integers(-(1 << 63), (1 << 63) - 1)
SESSION = 42


# ---- reading egress in place ------------------------------------------------------------

def reads_like_decode(reader, buf) -> None:
    """``reader(buf)`` gives decode(buf)'s fields for an EgressMessage, None for any other
    type, and raises DecodeError exactly when decode does."""
    try:
        expected = _codec.decode(buf)
    except _codec.DecodeError:
        if len(buf) >= 4 and int.from_bytes(bytes(buf[:2]), "little") == P.EgressMessage.TYPE_ID:
            with pytest.raises(_codec.DecodeError):
                reader(buf)
        return
    got = reader(buf)
    if type(expected) is P.EgressMessage:
        assert got == (expected.session_id, expected.correlation_id, expected.ack_seq, expected.payload)
        assert type(got[3]) is bytes
    else:
        assert got is None


@settings(max_examples=300, deadline=None)
@given(I64, I64, I64, st.binary(max_size=300))
def test_egress_fields_agree_with_decode(session_id, correlation_id, ack_seq, payload):
    buf = _codec.encode_egress_message(session_id, correlation_id, ack_seq, payload)
    assert buf == _codec.encode(P.EgressMessage(session_id, correlation_id, ack_seq, payload))
    reads_like_decode(egress_fields, buf)
    reads_like_decode(egress_fields, memoryview(buf))
    reads_like_decode(egress_fields, bytearray(buf))


def test_other_message_types_are_not_read_as_egress():
    for message in (P.SessionAck(SESSION, 3, 7), P.SessionEvent(1, SESSION, P.EVENT_OK, 0, 3, "h:1"),
                    P.NewLeaderEvent(SESSION, 4, 1, "0=h:1,1=h:2"), P.SessionMessage(SESSION, 1, 2, 0, b"x")):
        reads_like_decode(egress_fields, _codec.encode(message))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=80), st.integers(0, 60), st.integers(0, 255))
def test_broken_egress_fails_exactly_where_decode_fails(payload, cut, junk):
    good = _codec.encode_egress_message(SESSION, 5, 3, payload)
    for buf in (good[:cut],                                   # truncated anywhere
                good + bytes([junk]),                         # trailing byte
                good[:2] + b"\x09\x00" + good[4:],            # unknown version
                good[:28] + (len(payload) + 1 + junk).to_bytes(4, "little") + good[32:]):  # length past end
        reads_like_decode(egress_fields, buf)


def test_negative_control_a_reader_that_swaps_fields_is_caught():
    def swapped(buf):
        fields = egress_fields(buf)
        return fields and (fields[0], fields[2], fields[1], fields[3])
    with pytest.raises(AssertionError):
        reads_like_decode(swapped, _codec.encode_egress_message(SESSION, 5, 3, b"x"))


def test_dispatcher_routes_by_type_counts_malformed_and_never_raises():
    decoded, fields = [], []
    d = EgressDispatcher(_codec.decode, _codec.DecodeError, lambda m, now: decoded.append((m, now)),
                         lambda *args: fields.append(args))
    d.now_ns = 77
    egress = _codec.encode_egress_message(SESSION, 5, 3, b"reply")
    ack = _codec.encode(P.SessionAck(SESSION, 3, 2))
    d(0, memoryview(egress))
    d(0, memoryview(ack))
    for broken in (egress[:20], egress + b"\x00", b"", b"\x26", ack[:5], b"\xff\xff\x01\x00"):
        d(0, memoryview(broken))
    assert fields == [(SESSION, 5, 3, b"reply", 77)]
    assert decoded == [(P.SessionAck(SESSION, 3, 2), 77)]
    assert d.decode_errors == 6
    d.on_egress_message = None                 # then EgressMessages come decoded as well
    d(0, memoryview(egress))
    assert decoded[-1] == (P.EgressMessage(SESSION, 5, 3, b"reply"), 77)


# ---- the core: fields path (encoded) against the object path -----------------------------

def _connect(core: ClientCore) -> None:
    core.connect(0)
    [(_, connect)] = core.take_outgoing()
    if type(connect) is bytes:
        connect = _codec.decode(connect)
    core.on_egress(P.SessionEvent(connect.correlation_id, SESSION, P.EVENT_OK, 1, 3,
                                  "m1:1;session_timeout_ms=10000"), 0)   # a protocol-2 cluster's OK
    assert core.state is ClientState.CONNECTED


def _as_message(message):
    return _codec.decode(message) if type(message) is bytes else message


def _state(core: ClientCore) -> dict:
    return {"counters": dict(core.counters), "unacknowledged": core.unacknowledged,
            "base": core._window_base, "window": [_as_message(m) for m in core._window],
            "floor": core._answered_floor, "answered": dict(core._answered),
            "progress": core._last_progress_ns,
            "leader": core.leader_endpoint, "awaiting": set(core._awaiting)}


def run_differential(seed: int, fast_class=ClientCore, steps: int = 600) -> int:
    """Drive a ClientCore on the object path and one of ``fast_class`` (encoded messages,
    egress by fields) through the same random session; assert they agree after every step.
    Returns how many responses were fed (so callers can see the run did something)."""
    rng = random.Random(seed)
    config = dict(window_messages=rng.choice([4, 16, 64]), inbox_max=rng.choice([2, 1000]),
                  resend_timeout_ns=50, keepalive_interval_ns=10 ** 12, abandoned_max=8)
    slow = ClientCore("m0:1,m1:1,m2:1", "me:5", ClientConfig(**config), random.Random(1))
    fast = fast_class("m0:1,m1:1,m2:1", "me:5", ClientConfig(**config), random.Random(1),
                      encoded_messages=True)
    for core in (slow, fast):
        _connect(core)
    offered: list = []            # (seq, correlation id, payload)
    responses: list = []          # every response fed so far, for duplicates
    now = 0
    fed = 0
    for _ in range(steps):
        now += rng.randrange(0, 20)
        op = rng.random()
        if op < 0.3:
            payload = rng.randbytes(rng.randrange(1, 40))
            expect, service_id = rng.random() < 0.2, rng.randrange(2)
            cids = [c.offer(payload, service_id, now, expect_reply=expect) for c in (slow, fast)]
            assert cids[0] == cids[1]
            if cids[0] > 0:
                offered.append((slow._next_seq - 1, cids[0], payload))
        elif op < 0.7 and offered:
            if responses and rng.random() < 0.25:
                response = rng.choice(responses)                       # a duplicate
            else:
                seq, cid, payload = rng.choice(offered[-70:] if rng.random() < 0.8 else offered)
                kind = rng.random()
                session = SESSION if kind > 0.05 else SESSION + 1      # not ours
                if kind < 0.1:
                    cid = 0                                            # the service's own
                response = (session, cid, seq, b"re:" + payload + (b"!" if kind > 0.97 else b""))
                responses.append(response)
            slow.on_egress(P.EgressMessage(*response), now)
            fast.on_egress_message(*response, now)
            fed += 1
        elif op < 0.75 and offered:
            ack = P.SessionAck(SESSION, 3, rng.randrange(0, slow._next_seq + 1))
            slow.on_egress(ack, now)
            fast.on_egress(ack, now)
        elif op < 0.85:
            for c in (slow, fast):
                c.tick(now)
        elif op < 0.88:
            event = P.NewLeaderEvent(SESSION, 3 + rng.randrange(3), rng.randrange(3), "0=m0:1,1=m1:1,2=m2:1")
            for c in (slow, fast):
                c.on_egress(event, now)
        elif op < 0.92 and offered:
            cid = rng.choice(offered)[1]
            assert slow.take_reply(cid) == fast.take_reply(cid)
            if rng.random() < 0.5:
                slow.abandon(cid)
                fast.abandon(cid)
        else:
            limit = rng.randrange(1, 20)
            got = [[], []]
            for c, out in zip((slow, fast), got):
                c.poll(lambda cid, p, out=out: out.append((cid, bytes(p))), limit)
            assert got[0] == got[1]
        assert [(e, _as_message(m)) for e, m in slow.take_outgoing()] == \
            [(e, _as_message(m)) for e, m in fast.take_outgoing()]
        assert _state(slow) == _state(fast)
    return fed


@pytest.mark.parametrize("seed", range(12))
def test_fields_path_matches_the_object_path_step_by_step(seed):
    assert run_differential(seed) > 100


class _DeliversDuplicates(ClientCore):
    """A fast path that forgot duplicate detection."""

    def on_egress_message(self, session_id, correlation_id, ack_seq, payload, now_ns):
        self._answered.pop(ack_seq, None)
        super().on_egress_message(session_id, correlation_id, ack_seq, payload, now_ns)


class _ReleasesPastAGap(ClientCore):
    """A fast path that releases the window up to any answered seq (the bug the module
    docstring warns about: responses are not cumulative)."""

    def on_egress_message(self, session_id, correlation_id, ack_seq, payload, now_ns):
        super().on_egress_message(session_id, correlation_id, ack_seq, payload, now_ns)
        if correlation_id and session_id == self.session_id:
            self._release(ack_seq, now_ns)


@pytest.mark.parametrize("broken", [_DeliversDuplicates, _ReleasesPastAGap])
def test_negative_control_a_diverging_fast_path_is_caught(broken):
    with pytest.raises(AssertionError):
        run_differential(0, broken)


def test_encoded_window_bytes_are_the_encoded_message_and_are_resent_unchanged():
    core = ClientCore("m0:1,m1:1", "me:5", ClientConfig(resend_timeout_ns=10), random.Random(1),
                      encoded_messages=True)
    _connect(core)
    cid = core.offer(memoryview(b"abc"), 3, 1)
    [(endpoint, first)] = core.take_outgoing()
    assert endpoint == "m1:1" and type(first) is bytes
    assert first == _codec.encode(P.SessionMessage(SESSION, 1, cid, 3, b"abc"))
    core.on_egress(P.NewLeaderEvent(SESSION, 4, 0, "0=m0:1,1=m1:1"), 2)
    assert core.take_outgoing() == [("m0:1", first)]


# ---- the UDP client transport's fast path, without a network ------------------------------

class _StubUdp:
    def __init__(self, datagrams):
        self.datagrams = list(datagrams)
        self.sent = []

    def send(self, peer_id, payload):
        self.sent.append((peer_id, payload))
        return 1

    def poll(self, handler, limit=64):
        n = 0
        while self.datagrams and n < limit:
            handler(0, memoryview(self.datagrams.pop(0)))
            n += 1
        return n

    def do_work(self, now_ns=None):
        return 0

    def flush(self):
        return 0

    def close(self):
        pass


def test_udp_client_transport_fast_path_counts_malformed_egress_and_delivers_the_rest():
    transport = UdpClientTransport(["127.0.0.1:9"])
    transport._udp.close()
    event = _codec.encode(P.SessionEvent(1, SESSION, P.EVENT_OK, 0, 3, "127.0.0.1:9;session_timeout_ms=10000"))
    transport._udp = _StubUdp([event])
    client = ClusterClient.open("127.0.0.1:9", transport=transport)
    client.do_work()
    assert client.is_connected
    cid = client.offer(b"q")
    [(_, wire)] = transport._udp.sent[1:]
    assert _codec.decode(wire) == P.SessionMessage(SESSION, 1, cid, 0, b"q")
    good = _codec.encode_egress_message(SESSION, cid, 1, b"answer")
    transport._udp.datagrams = [good[:-1], b"\x26\x00\x01\x00", good + b"x", good, good]
    got = []
    client.poll_egress(lambda c, p: got.append((c, bytes(p))))
    assert got == [(cid, b"answer")]
    assert transport.decode_errors == 3
    assert client.counters["duplicate_responses"] == 1 and client._core.unacknowledged == 0
    # the protocol's plain poll(handler) still hands over decoded messages
    transport._udp.datagrams = [good, b"\x00"]
    seen = []
    transport.poll(seen.append)
    assert seen == [P.EgressMessage(SESSION, cid, 1, b"answer")] and transport.decode_errors == 4


# ---- idling without a socket to wait on ---------------------------------------------------

def test_backoff_without_a_waiter_spins_then_sleeps_doubling_up_to_a_cap(monkeypatch):
    import aeronpy.client as client_mod
    slept = []
    monkeypatch.setattr(client_mod.time, "sleep", slept.append)
    idle = client_mod._Backoff()
    for _ in range(client_mod._Backoff.SPINS):
        idle(0)
    assert slept == []                                   # the spins cost no sleep
    for _ in range(8):
        idle(0)
    assert slept == pytest.approx([50e-6, 100e-6, 200e-6, 400e-6, 800e-6, 1e-3, 1e-3, 1e-3])
    idle(3)                                              # work: back to spinning
    for _ in range(client_mod._Backoff.SPINS + 1):
        idle(0)
    assert slept[-1] == pytest.approx(50e-6) and len(slept) == 9
