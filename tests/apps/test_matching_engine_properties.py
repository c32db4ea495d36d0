"""Property tests: the engine is a deterministic function of its input log, and a snapshot
captures all of it."""
import io
import random

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from aeronpy.examples import orders as wire
from aeronpy.examples.matching_engine import MatchingEngine
from tests.apps.fakes import FakeCluster

SESSIONS = (1, 2, 3)

# bids at 97..100 and asks at 100..103: books build up and cross at 100; replaces move freely
new_order = st.tuples(
    st.just("new"), st.sampled_from(SESSIONS), st.sampled_from([1, 2]),         # instrument
    st.sampled_from([wire.BUY, wire.SELL]), st.integers(0, 3), st.integers(1, 10),
    st.sampled_from([wire.GTC, wire.GTC, wire.GTT, wire.IOC]), st.integers(1, 400))
cancel = st.tuples(st.just("cancel"), st.sampled_from(SESSIONS), st.sampled_from([1, 2]),
                   st.integers(1, 40))
replace = st.tuples(st.just("replace"), st.sampled_from(SESSIONS), st.sampled_from([1, 2]),
                    st.integers(1, 40), st.integers(95, 105), st.integers(1, 12))
advance = st.tuples(st.just("advance"), st.integers(1, 30))
close = st.tuples(st.just("close"), st.just(3))         # sessions 1 and 2 stay open
garbage = st.tuples(st.just("garbage"), st.sampled_from(SESSIONS), st.binary(max_size=48))
# one_of picks its branches evenly, so weight by repetition: mostly new orders, rarely a close
flows = st.lists(st.one_of(*[new_order] * 8, cancel, cancel, replace, replace, advance, close, garbage),
                 min_size=20, max_size=150)


def start(snapshot=None, like=None):
    cluster = FakeCluster()
    if like is not None:                 # a restarted member: the cluster's own state survives
        cluster.time_ns = like.time_ns
        cluster.timers = dict(like.timers)
    engine = cluster.start(MatchingEngine(), snapshot)
    for sid in SESSIONS:
        if like is None or sid in like.sessions:
            cluster.open_session(sid)
    return cluster, engine


def apply(cluster, action):
    kind = action[0]
    if kind == "advance":
        cluster.advance_to(cluster.time_ns + action[1])
        return
    if kind == "close":
        if action[1] in cluster.sessions:
            cluster.close_session(action[1])
        return
    session = cluster.sessions.get(action[1])
    if session is None:
        return
    if kind == "new":
        _, _, instrument, side, offset, qty, tif, ttl = action
        price = 100 - offset if side == wire.BUY else 100 + offset
        payload = wire.encode_new_order(instrument, 0, side, price, qty, tif, cluster.time_ns + ttl)
    elif kind == "cancel":
        payload = wire.encode_cancel(action[2], 0, action[3])
    elif kind == "replace":
        payload = wire.encode_replace(action[2], 0, action[3], action[4], action[5])
    else:
        payload = action[2]
    cluster.send(session, payload)


def crowded_level(engine):
    """Whether some price level holds two or more orders (so time priority matters)."""
    return any(len(level) > 1 for book in engine.books.values()
               for side in (book.bids, book.asks) for level in side._levels.values())


def egress(cluster):
    return {sid: list(s.sent) for sid, s in cluster.sessions.items()}


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(flow=flows)
def test_same_flow_on_two_fresh_books_gives_identical_hash_and_replies(flow):
    (c1, e1), (c2, e2) = start(), start()
    for action in flow:
        apply(c1, action)
        apply(c2, action)
    assert e1.state_hash() == e2.state_hash()
    assert egress(c1) == egress(c2)
    # the book is consistent with the order index
    for book in e1.books.values():
        for side in (book.bids, book.asks):
            for order in side.orders_by_priority():
                assert e1.open_orders[order.order_id] is order and order.leaves_qty > 0
    assert sum(b.order_count for b in e1.books.values()) == len(e1.open_orders)


def snapshot_case(flow, k, note=lambda text: None):
    """Run flow[:k], snapshot, restore into a fresh engine, run flow[k:] on both."""
    c1, e1 = start()
    for action in flow[:k]:
        apply(c1, action)
    buf = io.BytesIO()
    e1.on_take_snapshot(buf)
    c2, e2 = start(io.BytesIO(buf.getvalue()), like=c1)
    note("time priority matters at the cut" if crowded_level(e1) else "no crowded level at the cut")
    assert e2.state_hash() == e1.state_hash()
    for s in c1.sessions.values():
        s.sent.clear()
    for action in flow[k:]:
        apply(c1, action)
        apply(c2, action)
    assert e2.state_hash() == e1.state_hash()
    assert egress(c1) == egress(c2)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(flow=flows, cut=st.floats(0.2, 1))
def test_snapshot_restore_gives_identical_hash_and_future(flow, cut):
    snapshot_case(flow, int(cut * len(flow)), note=event)


def random_flow(rng, n):
    flow = []
    for _ in range(n):
        side = rng.choice([wire.BUY, wire.SELL])
        flow.append(("new", rng.choice([1, 2]), 1, side, rng.randint(0, 3), rng.randint(1, 10),
                     wire.GTC, 0))
    return flow


def test_negative_control_a_restore_that_loses_time_priority_is_caught(monkeypatch):
    """The snapshot property must be able to fail: break restore (reverse each price level)."""
    original = MatchingEngine._restore

    def broken_restore(self, data):
        original(self, data)
        for book in self.books.values():
            for side in (book.bids, book.asks):
                resting = list(side.orders_by_priority())
                for order in resting:
                    side.remove(order)
                for order in reversed(resting):
                    side.add(order)

    monkeypatch.setattr(MatchingEngine, "_restore", broken_restore)
    rng = random.Random(3)
    caught = 0
    for _ in range(20):
        flow = random_flow(rng, 40)
        try:
            snapshot_case(flow, 30)
        except AssertionError:
            caught += 1
    assert caught >= 10
