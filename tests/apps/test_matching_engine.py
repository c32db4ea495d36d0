"""Matching engine rules, driven through the service callbacks with a fake cluster."""
import io

import pytest

from aeronpy.examples import orders as wire
from aeronpy.examples.matching_engine import MatchingEngine
from tests.apps.fakes import FakeCluster

BUY, SELL = wire.BUY, wire.SELL
INSTR = 7


@pytest.fixture
def env():
    cluster = FakeCluster()
    engine = cluster.start(MatchingEngine())
    alice = cluster.open_session(1)
    bob = cluster.open_session(2)
    return cluster, engine, alice, bob


def new(cluster, session, side, price, qty, coid=0, tif=wire.GTC, expire_ns=0, instrument=INSTR):
    """Send a new order; return its execution report (the one reply)."""
    before = len(session.sent)
    cluster.send(session, wire.encode_new_order(instrument, coid, side, price, qty, tif, expire_ns))
    reply = wire.decode_event(session.sent[before])
    assert isinstance(reply, wire.ExecutionReport)
    return reply


def test_price_then_time_priority(env):
    cluster, engine, alice, bob = env
    a = new(cluster, alice, SELL, 100, 5, coid=1)
    b = new(cluster, alice, SELL, 100, 5, coid=2)
    c = new(cluster, alice, SELL, 99, 5, coid=3)       # better price, arrived last
    assert [r.status for r in (a, b, c)] == [wire.ACCEPTED] * 3
    alice.take()
    report = new(cluster, bob, BUY, 101, 12)
    assert report.status == wire.FILLED and report.filled_qty == 12
    # 99 first (price), then the two at 100 oldest first (time), printing at resting prices
    assert [(f.price, f.qty) for f in report.fills] == [(99, 5), (100, 5), (100, 2)]
    fills = alice.take()
    assert [(f.order_id, f.qty, f.leaves_qty) for f in fills] == [
        (c.order_id, 5, 0), (a.order_id, 5, 0), (b.order_id, 2, 3)]
    assert engine.order_state(b.order_id).leaves_qty == 3
    assert engine.order_state(a.order_id).status == wire.FILLED


def test_partial_fill_rests_the_remainder(env):
    cluster, engine, alice, bob = env
    resting = new(cluster, alice, BUY, 50, 10)
    report = new(cluster, bob, SELL, 49, 4)
    assert report.status == wire.FILLED and report.fills[0].price == 50
    assert engine.order_state(resting.order_id) == (resting.order_id, INSTR, wire.ACCEPTED, 6, 4)
    big = new(cluster, bob, SELL, 50, 10)                   # takes 6, rests 4
    assert big.status == wire.ACCEPTED and big.filled_qty == 6 and big.leaves_qty == 4
    assert engine.books[INSTR].asks.depth() == [(50, 4, 1)]
    assert engine.books[INSTR].bids.depth() == []
    assert new(cluster, alice, BUY, 49, 1).status == wire.ACCEPTED     # does not cross


def test_unique_match_ids_and_match_volume(env):
    cluster, engine, alice, bob = env
    for price in (10, 11, 12):
        new(cluster, alice, SELL, price, 3)
    report = new(cluster, bob, BUY, 12, 9)
    assert [f.match_id for f in report.fills] == [1, 2, 3]
    assert engine.fills == 3 and engine.volume == 9


def test_cancel(env):
    cluster, engine, alice, bob = env
    order = new(cluster, alice, BUY, 10, 5, coid=11)
    cluster.send(bob, wire.encode_cancel(INSTR, 99, order.order_id))
    assert bob.take()[-1].reason == wire.NOT_OWNER
    cluster.send(alice, wire.encode_cancel(INSTR, 12, 12345))
    assert alice.take()[-1].reason == wire.UNKNOWN_ORDER
    cluster.send(alice, wire.encode_cancel(INSTR + 1, 12, order.order_id))   # wrong instrument
    assert alice.take()[-1].reason == wire.UNKNOWN_ORDER
    cluster.send(alice, wire.encode_cancel(INSTR, 13, order.order_id))
    report = alice.take()[-1]
    assert (report.status, report.order_id, report.client_order_id) == (wire.CANCELLED, order.order_id, 13)
    assert engine.books[INSTR].bids.depth() == []
    assert new(cluster, bob, SELL, 10, 5).status == wire.ACCEPTED      # nothing left to hit
    cluster.send(alice, wire.encode_cancel(INSTR, 14, order.order_id))   # already cancelled
    assert alice.take()[-1].status == wire.REJECTED


def queue_at(engine, side, price):
    book_side = engine.books[INSTR].bids if side == BUY else engine.books[INSTR].asks
    return [o.order_id for o in book_side.orders_by_priority() if o.price == price]


def test_replace_smaller_quantity_keeps_priority(env):
    cluster, engine, alice, bob = env
    first = new(cluster, alice, BUY, 10, 5).order_id
    second = new(cluster, bob, BUY, 10, 5).order_id
    cluster.send(alice, wire.encode_replace(INSTR, 2, first, 10, 3))
    report = alice.take()[-1]
    assert report.status == wire.REPLACED and report.leaves_qty == 3
    assert queue_at(engine, BUY, 10) == [first, second]


@pytest.mark.parametrize("new_price,new_qty", [(10, 6), (11, 5), (9, 5)])
def test_replace_loses_priority_when_price_changes_or_quantity_grows(env, new_price, new_qty):
    cluster, engine, alice, bob = env
    first = new(cluster, alice, BUY, 10, 5).order_id
    second = new(cluster, bob, BUY, new_price, 5).order_id
    cluster.send(alice, wire.encode_replace(INSTR, 2, first, new_price, new_qty))
    assert alice.take()[-1].status == wire.REPLACED
    assert queue_at(engine, BUY, new_price) == [second, first]


def test_replace_that_crosses_trades_at_once(env):
    cluster, engine, alice, bob = env
    ask = new(cluster, bob, SELL, 12, 3).order_id
    bid = new(cluster, alice, BUY, 10, 5).order_id
    cluster.send(alice, wire.encode_replace(INSTR, 2, bid, 12, 5))
    report = alice.take()[-1]
    assert report.status == wire.REPLACED and report.filled_qty == 3 and report.leaves_qty == 2
    assert engine.order_state(ask).status == wire.FILLED
    cluster.send(alice, wire.encode_replace(INSTR, 3, bid, 10, 0))
    assert alice.take()[-1].reason == wire.BAD_QUANTITY
    new(cluster, bob, SELL, 13, 2)
    cluster.send(alice, wire.encode_replace(INSTR, 4, bid, 13, 2))     # fills completely
    report = alice.take()[-1]
    assert report.status == wire.FILLED and engine.order_state(bid).status == wire.FILLED


def test_good_till_time_expiry(env):
    cluster, engine, alice, bob = env
    cluster.advance_to(1_000)
    gtt = new(cluster, alice, SELL, 10, 5, tif=wire.GTT, expire_ns=5_000)
    assert cluster.timers == {gtt.order_id: 5_000}
    assert new(cluster, alice, SELL, 10, 5, tif=wire.GTT, expire_ns=500).reason == wire.EXPIRED_ON_ARRIVAL
    alice.take()
    cluster.advance_to(4_999)
    assert engine.order_state(gtt.order_id).status == wire.ACCEPTED
    cluster.advance_to(5_000)
    expired = alice.take()
    assert len(expired) == 1 and expired[0].status == wire.EXPIRED
    assert expired[0].order_id == gtt.order_id and expired[0].timestamp_ns == 5_000
    assert engine.order_state(gtt.order_id).status == wire.EXPIRED
    assert new(cluster, bob, BUY, 10, 5).status == wire.ACCEPTED         # nothing to hit


def test_fill_and_cancel_cancel_the_timer(env):
    cluster, engine, alice, bob = env
    filled = new(cluster, alice, SELL, 10, 5, tif=wire.GTT, expire_ns=9_000).order_id
    cancelled = new(cluster, alice, SELL, 20, 5, tif=wire.GTT, expire_ns=9_000).order_id
    assert set(cluster.timers) == {filled, cancelled}
    new(cluster, bob, BUY, 10, 5)
    cluster.send(alice, wire.encode_cancel(INSTR, 0, cancelled))
    assert cluster.timers == {}


def test_a_gtt_order_beyond_the_clusters_timers_is_rejected_before_it_touches_the_book(env):
    """It raised after resting the order (every member stopped at that entry, and again after
    each restart: today's review); now it is refused with LIMIT_REACHED first."""
    cluster, engine, alice, bob = env
    cluster.max_timers = 1
    resting = new(cluster, alice, SELL, 10, 5, tif=wire.GTT, expire_ns=9_000)
    assert resting.status == wire.ACCEPTED
    refused = new(cluster, alice, SELL, 11, 5, tif=wire.GTT, expire_ns=9_000)
    assert (refused.status, refused.reason) == (wire.REJECTED, wire.LIMIT_REACHED)
    assert engine.books[INSTR].order_count == 1 and set(cluster.timers) == {resting.order_id}
    # a GTT order takes its timer on arrival, before it trades (so at the limit it is refused
    # even if it would fill at once); one that fills gives it back
    cluster.max_timers = 2
    assert new(cluster, bob, BUY, 10, 5, tif=wire.GTT, expire_ns=9_000).status == wire.FILLED
    assert cluster.timers == {}             # the filled order's timer and the resting one's


def test_expired_order_is_never_filled_even_if_its_timer_is_late(env):
    cluster, engine, alice, bob = env
    gtt = new(cluster, alice, SELL, 10, 5, tif=wire.GTT, expire_ns=100).order_id
    cluster.timers.clear()                   # the timer has not been delivered yet
    cluster.time_ns = 200
    report = new(cluster, bob, BUY, 10, 5)
    assert report.status == wire.ACCEPTED and report.filled_qty == 0
    assert engine.order_state(gtt).status == wire.EXPIRED
    cluster.service.on_timer_event(gtt, 250)   # a late, stale timer is harmless
    assert engine.order_state(gtt).status == wire.EXPIRED


def test_ioc_remainder_is_cancelled(env):
    cluster, engine, alice, bob = env
    new(cluster, alice, SELL, 10, 3)
    report = new(cluster, bob, BUY, 10, 5, tif=wire.IOC)
    assert (report.status, report.reason, report.filled_qty) == (wire.CANCELLED, wire.IOC_REMAINDER, 3)
    assert engine.books[INSTR].order_count == 0


def test_fill_to_a_closed_session_is_skipped(env):
    cluster, engine, alice, bob = env
    resting = new(cluster, alice, SELL, 10, 5).order_id
    cluster.close_session(1)
    assert new(cluster, bob, BUY, 10, 5).status == wire.FILLED          # order outlives its session
    assert engine.order_state(resting).status == wire.FILLED


def test_many_fills_overflow_into_fill_messages(env):
    cluster, engine, alice, bob = env
    for _ in range(wire.MAX_FILLS_IN_REPORT + 5):
        new(cluster, alice, SELL, 10, 1)
    report = new(cluster, bob, BUY, 10, 100)
    events = bob.take()
    assert len(report.fills) == wire.MAX_FILLS_IN_REPORT and report.filled_qty == 37
    assert [type(e).__name__ for e in events[1:]] == ["Fill"] * 5
    assert report.leaves_qty == 63


@pytest.mark.parametrize("payload,reason", [
    (b"", wire.UNKNOWN_MESSAGE), (b"\x63" * 40, wire.UNKNOWN_MESSAGE),
    (wire.encode_new_order(INSTR, 1, BUY, 10, 5)[:-1], wire.MALFORMED),
    (wire.encode_new_order(INSTR, 1, 3, 10, 5), wire.BAD_SIDE_OR_TIF),
    (wire.encode_new_order(INSTR, 1, BUY, 10, 5, tif=9), wire.BAD_SIDE_OR_TIF),
    (wire.encode_new_order(INSTR, 1, BUY, 0, 5), wire.BAD_PRICE),
    (wire.encode_new_order(INSTR, 1, BUY, 10, -5), wire.BAD_QUANTITY),
])
def test_bad_requests_are_rejected_not_raised(env, payload, reason):
    cluster, engine, alice, bob = env
    cluster.send(alice, payload)
    report = alice.take()[-1]
    assert (report.status, report.reason) == (wire.REJECTED, reason)
    assert engine.rejects == 1 and not engine.open_orders


def test_limits_are_enforced():
    cluster = FakeCluster()
    engine = cluster.start(MatchingEngine(max_open_orders=2, max_instruments=1, max_done_orders=3))
    s = cluster.open_session(1)
    assert new(cluster, s, BUY, 10, 1).status == wire.ACCEPTED
    assert new(cluster, s, BUY, 10, 1, instrument=INSTR + 1).reason == wire.LIMIT_REACHED
    assert new(cluster, s, BUY, 10, 1).status == wire.ACCEPTED
    assert new(cluster, s, BUY, 10, 1).reason == wire.LIMIT_REACHED
    cluster.send(s, wire.encode_cancel(INSTR, 0, 1))        # frees a place
    for _ in range(5):
        new(cluster, s, SELL, 10, 1, tif=wire.IOC)         # 1 fills, 4 cancelled
    assert len(engine.done_orders) == 3 and engine.done_evicted == 4
    assert list(engine.done_orders) == [5, 6, 7]           # oldest evicted first
    assert engine.order_state(1) is None


def test_service_messages_are_ignored(env):
    cluster, engine, alice, bob = env
    engine.on_session_message(None, 0, memoryview(b"x"))
    assert engine.ignored_messages == 1 and engine.requests == 0


def test_snapshot_round_trip_keeps_priority_and_hash(env):
    cluster, engine, alice, bob = env
    ids = [new(cluster, alice if i % 2 else bob, BUY, 10 + i % 3, 5).order_id for i in range(9)]
    new(cluster, alice, SELL, 20, 4, tif=wire.GTT, expire_ns=10**9)
    buf = io.BytesIO()
    engine.on_take_snapshot(buf)
    other_cluster = FakeCluster()
    restored = other_cluster.start(MatchingEngine(), io.BytesIO(buf.getvalue()))
    assert restored.state_hash() == engine.state_hash()
    assert [o.order_id for o in restored.books[INSTR].bids.orders_by_priority()] == \
        [o.order_id for o in engine.books[INSTR].bids.orders_by_priority()]
    assert set(ids) <= set(restored.open_orders)
    assert other_cluster.timers == {}        # timers belong to the cluster's own state


def test_state_hash_sees_differences(env):
    cluster, engine, alice, bob = env
    empty = engine.state_hash()
    new(cluster, alice, BUY, 10, 5)
    one = engine.state_hash()
    assert one != empty
    other = FakeCluster()
    e2 = other.start(MatchingEngine())
    s = other.open_session(1)
    new(other, s, BUY, 10, 6)                # same flow but one lot more
    assert e2.state_hash() != one


@pytest.mark.parametrize("damage", [
    lambda b: b[:10], lambda b: b[:-1], lambda b: b + b"\0", lambda b: b"XXXX" + b[4:]])
def test_corrupt_snapshot_is_refused(env, damage):
    cluster, engine, alice, bob = env
    new(cluster, alice, BUY, 10, 5)
    new(cluster, alice, BUY, 10, 5)
    cluster.send(alice, wire.encode_cancel(INSTR, 0, 1))
    data = engine.canonical_state()
    with pytest.raises(ValueError, match="snapshot"):
        FakeCluster().start(MatchingEngine(), io.BytesIO(damage(data)))


def test_ledger_accounts_for_every_acknowledged_order(env):
    cluster, engine, alice, bob = env
    ledger = wire.OrderLedger()
    for i in range(20):
        session = alice if i % 3 else bob
        new(cluster, session, BUY if i % 2 else SELL, 10 + i % 4, 1 + i % 5, coid=i)
    for session in (alice, bob):
        for event in session.events():
            ledger.apply(event)
    assert len(ledger.orders) == 20 and ledger.missing_from(engine) == []
    # negative control: an order the engine lost is reported
    lost = next(iter(engine.open_orders))
    engine.books[INSTR].side_of(engine.open_orders[lost]).remove(engine.open_orders[lost])
    del engine.open_orders[lost]
    assert ledger.missing_from(engine) == [f"order {lost} acknowledged but unknown to the engine"]


def test_ledger_counts_a_fill_notice_re_sent_across_failover_once(env):
    cluster, engine, alice, bob = env
    ledger = wire.OrderLedger()
    new(cluster, alice, SELL, 10, 5, coid=1)          # rests
    new(cluster, bob, BUY, 10, 2, coid=2)             # fills 2 of alice's 5
    events = [e for s in (alice, bob) for e in s.events()]
    notices = [e for e in events if isinstance(e, wire.Fill)]
    assert notices, "the resting owner got a fill notice"
    for event in events + notices:                    # every notice delivered twice
        ledger.apply(event)
    assert ledger.duplicate_fills == len(notices)
    assert ledger.missing_from(engine) == []
    # negative control: a notice with a new match id is a real extra fill and is reported
    extra = notices[0]
    ledger.apply(wire.Fill(extra.side, extra.instrument, extra.order_id, extra.client_order_id,
                           extra.match_id + 1000, extra.price, extra.qty, extra.leaves_qty,
                           extra.timestamp_ns))
    assert any("client saw" in p for p in ledger.missing_from(engine))
