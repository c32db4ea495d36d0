"""``apply_ready`` takes a fast path through runs of SESSION_MESSAGE entries; it must be
indistinguishable from applying the same entries one at a time with ``apply``.

Differential test: two identical members (same services, same role) apply the same committed
log, one through ``apply_ready`` and one entry by entry; everything observable must agree.
The fast path has three ways through a run (services called directly; through a wrapped
``container.invoke``, as the simulator's checker wraps it; through overridden per-message
hooks), each compared, under reply-cache and egress bounds tight enough to be reached.
"""
import random
from types import SimpleNamespace

import pytest

from aeronpy import _codec
from aeronpy._logindex import LogIndex
from aeronpy.cluster import entries as E
from aeronpy.cluster import protocol as P
from aeronpy.cluster.codes import BACK_PRESSURED, CLOSED, NOT_CONNECTED
from aeronpy.cluster.container import ServiceError
from aeronpy.cluster.module import ConsensusModule
from aeronpy.cluster.module_config import ModuleConfig
from aeronpy.errors import MessageTooLargeError
from aeronpy.service import Role

from .fakes import FakeCore, RecordingService

ENDPOINT = "c1:7000"


class Mixed(RecordingService):
    """Echoes, stays silent on b"quiet", closes its session on b"bye", answers twice on
    b"twice" and raises on b"boom"."""

    def on_session_message(self, session, timestamp_ns, message):
        data = bytes(message)
        if data == b"boom":
            raise RuntimeError("service bug")
        if data == b"quiet":
            self.messages.append(data)
            return
        super().on_session_message(session, timestamp_ns, message)
        if data == b"twice" and session is not None:
            session.offer(b"again")
        if data == b"bye" and session is not None:
            self.cluster.close_client_session(session.id)


def random_log(rng: random.Random, count: int, with_boom: bool = False) -> list:
    """SESSION_OPENs, then mostly SESSION_MESSAGEs with duplicates, gaps, unknown sessions and
    services, service closes, and other entry types breaking the runs."""
    log = [(1, E.SESSION_OPEN, E.encode_session_open(1_000, 1, 11, ENDPOINT)),
           (1, E.SESSION_OPEN, E.encode_session_open(1_001, 2, 12, "c2:7000"))]
    sessions = {1: 0, 2: 0}                # session id (the open's index) -> last seq used
    ts = 2_000
    for i in range(count):
        ts += rng.choice((0, 1, 5))
        roll = rng.random()
        if roll < 0.05:
            log.append((1, E.CLUSTER_ACTION, E.encode_cluster_action(ts, E.ACTION_SUSPEND, 0)))
            continue
        if roll < 0.08:
            log.append((1, E.SESSION_OPEN, E.encode_session_open(ts, 50 + i, 100 + i, f"c{i}:1")))
            sessions[len(log)] = 0
            continue
        sid = rng.choice(list(sessions)) if rng.random() > 0.03 else 999     # 999: unknown
        seq = sessions.get(sid, 0)
        step = rng.choices((1, 0, -1, 2), weights=(85, 6, 4, 5))[0]          # dup / old / gap
        seq = max(1, seq + step)
        if sid in sessions:
            sessions[sid] = max(sessions[sid], seq)
        body = rng.choices([b"m%d" % i, b"quiet", b"twice", b"bye"], weights=(90, 4, 4, 2))[0]
        service_id = 0 if rng.random() > 0.03 else 5                          # 5: unknown
        log.append((1, E.SESSION_MESSAGE,
                    E.encode_session_message(ts, sid, seq, 500 + i, service_id, body)))
    if with_boom:
        at = len(log) - count // 3
        ts = E.entry_timestamp_ns(log[at - 1][2])
        log.insert(at, (1, E.SESSION_MESSAGE, E.encode_session_message(ts, 1, 10_000, 7, 0, b"boom")))
    return log


class ReferenceSession:
    """The ClientSession the reference module's services get: its offer is plain Python."""

    def __init__(self, state, module):
        self.state, self.module = state, module

    id = property(lambda self: self.state.session_id)

    def offer(self, payload):
        return self.module.reference_offer(self.state, payload)


class ReferenceModule(ConsensusModule):
    """The slow side: services' replies through a plain-Python model of the reply cache
    (evict the oldest cached message past the bound; at most N replies per message) and
    egress (one EgressMessage object per reply), not the compiled ReplyPath."""

    def _view(self, s):
        view = self._views.get(s.session_id)
        if view is None:
            view = self._views[s.session_id] = ReferenceSession(s, self)
        return view

    def reference_offer(self, s, payload):
        if s.closed:
            return CLOSED
        data = bytes(payload)
        if len(data) > self.config.max_message_bytes:
            raise MessageTooLargeError("too large")
        s.offers += 1
        reply, config = self._reply, self.config
        first = reply.handling is s and not reply.replied
        if reply.handling is s:
            seq = ack_seq = reply.handling_seq
            correlation_id = reply.handling_correlation_id
            cache = s.replies
            if seq not in cache and config.reply_cache_messages > 0:
                cache[seq] = []
                while len(cache) > config.reply_cache_messages:
                    del cache[next(iter(cache))]
            if seq in cache and len(cache[seq]) < config.reply_cache_replies_per_message:
                cache[seq].append((correlation_id, data))
            else:
                self.counters["reply_not_cached"] += 1
            reply.replied = True
        else:
            correlation_id, ack_seq = 0, s.last_applied_seq
        if self.is_leader:
            queued = self._emit(s, P.EgressMessage(s.session_id, correlation_id, ack_seq, data))
            if not queued and first and s.replies.get(ack_seq):
                reply.note_dropped(s, ack_seq)      # acks held below it (module._flush_acks)
        return s.offers


class HookedModule(ConsensusModule):
    """Overrides a per-message hook the fast path inlines: the run must go through it."""

    def _apply_session_message(self, *args):
        self.counters["hook_called"] += 1
        return super()._apply_session_message(*args)


# reply cache and egress bounds the random logs reach (4 messages cached; the default 4096
# egress messages per client would never fill)
BOUNDS = {
    "small_cache": dict(reply_cache_messages=4),
    "no_cache": dict(reply_cache_messages=0),
    "one_reply_tight_egress": dict(reply_cache_messages=3, reply_cache_replies_per_message=1,
                                   egress_queue_max=4),
    "no_replies_kept": dict(reply_cache_replies_per_message=0, egress_queue_max=4),
}


# a leader is either ready before the log's entries (it acks as it applies) or catching up
# on the first half of them (it turns ready half way: no acks before)
LEADER, LEADER_CATCHING_UP = "leader", "leader_catching_up"


def member(log: list, role, bounds: str = "small_cache", cls=ConsensusModule,
           log_index: bool = False) -> ConsensusModule:
    """``log_index``: the core's log is the real LogIndex (which the compiled loop reads
    through its C API) instead of the test's list-backed FakeLog."""
    core = FakeCore(0)
    if log_index:
        core.log = LogIndex()
    core_role = Role.FOLLOWER if role is Role.FOLLOWER else Role.LEADER
    core.role, core.term, core.leader_id = core_role, 1, 0 if core_role is Role.LEADER else 1
    module = cls(0, core, [Mixed()], ModuleConfig(members={0: "m0:9000", 1: "m1:9000"}, **BOUNDS[bounds]), 0)
    module.start()
    # a ready leader syncs its role on an empty log; a catching-up one with half of it there
    known = 0 if role == LEADER else len(log) // 2
    for entry in log[:known]:
        core.log.append(*entry)
    if role != Role.FOLLOWER:
        module.apply_ready(SimpleNamespace(apply_lo=1, apply_hi=1), 0)
        assert module.leader_ready == (role == LEADER)
    for entry in log[known:]:
        core.log.append(*entry)
    core.commit_index = len(log)
    return module


def watch_invoke(module: ConsensusModule) -> list:
    """Wrap container.invoke as the simulator's invariant checker does; returns the calls seen."""
    calls, invoke = [], module.container.invoke

    def recording_invoke(service_id, callback, *args):
        calls.append((module.container.current_index, service_id, callback))
        return invoke(service_id, callback, *args)
    module.container.invoke = recording_invoke
    return calls


def observe(module: ConsensusModule) -> dict:
    service = module.container.services[0]
    return {
        "events": service.events, "messages": service.messages,
        "counters": dict(module.counters), "applied": module.applied_index,
        "cluster_time": module.cluster_time_ns,
        "sessions": [(s.session_id, s.last_applied_seq, s.offers, s.closed,
                      [(seq, list(r)) for seq, r in s.replies.items()]) for s in module.sessions],
        "egress": getattr(module, "egress_seen", []) + [module.take_egress()],
        "failure": None if module.failure is None else str(module.failure),
    }


def batches(total: int, rng: random.Random):
    lo = 1
    while lo <= total:
        hi = min(total + 1, lo + rng.randint(1, 40))
        yield lo, hi
        lo = hi


def apply_in_batches(module: ConsensusModule, total: int, rng: random.Random, collect: bool = True) -> None:
    """As the node: apply_ready per Ready, then (``collect``) drain egress into egress_seen,
    which makes the acks a run queues observable batch by batch."""
    module.egress_seen = []
    for lo, hi in batches(total, rng):
        module.apply_ready(SimpleNamespace(apply_lo=lo, apply_hi=hi), 5_000)
        if collect:
            module.egress_seen.append(module.take_egress())


def apply_one_by_one(module: ConsensusModule, total: int, rng: random.Random) -> None:
    """The same batches (same rng seed) through apply, one entry at a time."""
    module._now_ns = 5_000
    module.egress_seen = []
    for lo, hi in batches(total, rng):
        for index in range(lo, min(hi, total + 1)):
            module.apply(index, *module.core.log.entries[index - 1])
        module.egress_seen.append(module.take_egress())


def no_hook_path(*_args):
    raise AssertionError("the direct fast path fell back to the per-message hooks")


@pytest.mark.parametrize("role", [LEADER, LEADER_CATCHING_UP, Role.FOLLOWER])
@pytest.mark.parametrize("seed", range(5))
def test_fast_path_matches_entry_by_entry_apply(seed, role, monkeypatch):
    log = random_log(random.Random(seed), 400)
    fast, slow = member(log, role, log_index=seed % 2 == 0), member(log, role, cls=ReferenceModule)
    monkeypatch.setattr(ConsensusModule, "_apply_session_messages_via_hooks", no_hook_path)
    apply_in_batches(fast, len(log), random.Random(seed + 100))
    apply_one_by_one(slow, len(log), random.Random(seed + 100))
    got, want = observe(fast), observe(slow)
    assert got == want
    assert want["counters"].get("duplicate_message_skipped") and want["counters"].get("unknown_service")
    if role != Role.FOLLOWER:
        assert any(type(m) is P.EgressMessage for batch in want["egress"] for _, m in batch)
        assert any(type(m) is P.SessionAck for batch in want["egress"] for _, m in batch)


@pytest.mark.parametrize("bounds", sorted(BOUNDS))
@pytest.mark.parametrize("way", ["direct", "watched_invoke", "hooked"])
def test_each_way_through_a_run_matches_under_tight_bounds(way, bounds):
    log = random_log(random.Random(len(bounds)), 400)
    fast = member(log, LEADER, bounds, HookedModule if way == "hooked" else ConsensusModule)
    slow = member(log, LEADER, bounds, ReferenceModule)
    watched = watch_invoke(fast) if way == "watched_invoke" else None
    apply_in_batches(fast, len(log), random.Random(7))
    apply_one_by_one(slow, len(log), random.Random(7))
    got, want = observe(fast), observe(slow)
    hook_calls = got["counters"].pop("hook_called", 0)
    assert got == want
    assert (hook_calls > 0) == (way == "hooked")
    if watched is not None:              # every delivered message went through the wrapper
        assert sum(1 for c in watched if c[2] == "on_session_message") == len(want["messages"])
    if BOUNDS[bounds].get("egress_queue_max", 4096) < 100:
        assert want["counters"].get("egress_dropped")          # the bound was reached
    if BOUNDS[bounds].get("reply_cache_replies_per_message") == 1:
        assert want["counters"].get("reply_not_cached")        # a second reply was refused


def test_wire_egress_is_the_encoding_of_the_object_egress():
    """drain_egress(wire=True) (the node's) sends replies as bytes: exactly what encoding the
    EgressMessage objects the simulator gets would produce, in the same order."""
    log = random_log(random.Random(11), 300)
    wire, objects = member(log, LEADER), member(log, LEADER)
    for m in (wire, objects):
        apply_in_batches(m, len(log), random.Random(3), collect=False)
    sent_wire, sent_objects = [], []
    assert wire.drain_egress(lambda ref, msg: sent_wire.append((ref, msg)) or True, wire=True) > 0
    objects.drain_egress(lambda ref, msg: sent_objects.append((ref, msg)) or True)
    assert len(sent_wire) == len(sent_objects)
    replies = 0
    for (ref_w, msg_w), (ref_o, msg_o) in zip(sent_wire, sent_objects):
        assert ref_w == ref_o
        if type(msg_o) is P.EgressMessage:
            replies += 1
            assert type(msg_w) is bytes and msg_w == _codec.encode(msg_o)
            assert _codec.decode(msg_w) == msg_o
        else:
            assert msg_w == msg_o                               # events and acks: objects
    assert replies > 100


def test_encoded_drain_sends_the_encoding_of_every_object():
    """drain_egress_encoded (the node's): every message as the bytes _codec.encode makes of
    the object the simulator gets, replies encoded in C from their queued fields."""
    log = random_log(random.Random(13), 300)
    encoded, objects = member(log, LEADER), member(log, LEADER)
    for m in (encoded, objects):
        apply_in_batches(m, len(log), random.Random(4), collect=False)
    sent_bytes, sent_objects = [], []
    assert encoded.drain_egress_encoded(lambda ref, data: sent_bytes.append((ref, data)) or 1,
                                        _codec.encode) > 0
    objects.drain_egress(lambda ref, msg: sent_objects.append((ref, msg)) or True)
    assert [(ref, _codec.encode(msg)) for ref, msg in sent_objects] == sent_bytes
    assert sum(1 for _, msg in sent_objects if type(msg) is P.EgressMessage) > 100
    assert len(encoded.egress) == 0


def test_encoded_drain_keeps_a_back_pressured_backlog_and_drops_on_other_codes():
    log = random_log(random.Random(14), 80)
    module = member(log, LEADER)
    apply_in_batches(module, len(log), random.Random(3), collect=False)
    module._flush_acks()
    queued = len(module.egress)
    assert queued and module.drain_egress_encoded(lambda ref, data: BACK_PRESSURED, _codec.encode) == 0
    assert len(module.egress) == queued                       # back pressure: all kept
    assert module.drain_egress_encoded(lambda ref, data: NOT_CONNECTED, _codec.encode) == queued
    assert len(module.egress) == 0                            # a client gone: dropped


def test_encoded_drain_drops_egress_for_a_client_without_a_stream():
    log = random_log(random.Random(15), 60)
    module = member(log, LEADER)
    module.config.client_ref_of_endpoint = lambda endpoint: None   # no stream to any client
    apply_in_batches(module, len(log), random.Random(3), collect=False)
    sent = []
    queued = len(module.egress)
    assert queued and module.drain_egress_encoded(lambda ref, data: sent.append(ref) or 1, _codec.encode) >= queued
    assert sent == [] and len(module.egress) == 0


def test_a_refused_send_keeps_the_reply_queued_in_either_form():
    log = random_log(random.Random(12), 60)
    module = member(log, LEADER)
    apply_in_batches(module, len(log), random.Random(3), collect=False)
    assert module.drain_egress(lambda ref, msg: False, wire=True) == 0
    queued = len(module.egress)                 # now with the acks the drain queued first
    assert queued and module.drain_egress(lambda ref, msg: False, wire=True) == 0
    assert len(module.egress) == queued
    taken = module.take_egress()
    assert any(type(msg) is P.EgressMessage for _, msg in taken)


class Keeper(RecordingService):
    """Keeps the message views it was given; raises on b"boom"."""

    def __init__(self):
        super().__init__()
        self.kept = []

    def on_session_message(self, session, timestamp_ns, message):
        self.kept.append(message)
        if bytes(message) == b"boom":
            raise RuntimeError("service bug")
        super().on_session_message(session, timestamp_ns, message)


def apply_until_the_service_raises(role, log_store=None) -> "Keeper":
    """Apply a session's a, b, c, boom, d in one run (on ``log_store`` when given, else the
    fake core's log); the Keeper raises at boom. Returns it, with the views it was handed."""
    bodies = [b"a", b"b", b"c", b"boom", b"d"]
    log = [(1, E.SESSION_OPEN, E.encode_session_open(1_000, 1, 11, ENDPOINT))]
    log += [(1, E.SESSION_MESSAGE, E.encode_session_message(2_000, 1, i + 1, 70 + i, 0, body))
            for i, body in enumerate(bodies)]
    core = FakeCore(0)
    core.role, core.term = role, 1
    if log_store is not None:
        core.log = log_store
    for entry in log:
        core.log.append(*entry)
    service = Keeper()
    module = ConsensusModule(0, core, [service], ModuleConfig(members={0: "m0:9000"}), 0)
    module.start()
    with pytest.raises(ServiceError):
        module.apply_ready(SimpleNamespace(apply_lo=1, apply_hi=len(log) + 1), 5_000)
    assert module.applied_index == 5 and len(service.kept) == 4      # stopped at b"boom"
    assert service.messages == [b"a", b"b", b"c"]
    return service


@pytest.mark.parametrize("role", [Role.LEADER, Role.FOLLOWER])
def test_message_views_are_released_after_the_call(role):
    service = apply_until_the_service_raises(role)
    for view in service.kept:
        with pytest.raises(ValueError):
            bytes(view)                            # released once its callback returned (or raised)


def test_a_raising_service_stops_both_paths_at_the_same_entry():
    log = random_log(random.Random(3), 300, with_boom=True)
    fast, slow = member(log, Role.FOLLOWER), member(log, Role.FOLLOWER, cls=ReferenceModule)
    with pytest.raises(ServiceError):
        apply_in_batches(fast, len(log), random.Random(1))
    with pytest.raises(ServiceError):
        apply_one_by_one(slow, len(log), random.Random(1))
    got, want = observe(fast), observe(slow)
    assert got == want and "boom" not in str(want["messages"])
    with pytest.raises(ServiceError):                          # and stays stopped
        fast.apply_ready(SimpleNamespace(apply_lo=1, apply_hi=len(log) + 1), 5_000)


def test_the_comparison_notices_a_difference():
    """Negative control: one skipped entry on one side must show up."""
    log = random_log(random.Random(0), 200)
    fast, slow = member(log, LEADER), member(log, LEADER, cls=ReferenceModule)
    apply_in_batches(fast, len(log), random.Random(0))
    apply_one_by_one(slow, len(log) - 1, random.Random(0))
    assert observe(fast) != observe(slow)


def test_a_restored_reply_cache_keeps_its_bounds_and_order():
    """A snapshot restore fills ``replies`` without its key index (``reply_order``): the
    reply path must rebuild it and evict exactly as the reference does."""
    log = random_log(random.Random(21), 300)
    half = 150
    before, slow = member(log, LEADER), member(log, LEADER, cls=ReferenceModule)
    before.apply_ready(SimpleNamespace(apply_lo=1, apply_hi=half + 1), 5_000)
    after = member(log, LEADER)
    after.restore_state(before.snapshot_state())
    assert [len(s.reply_order) for s in after.sessions] == [0] * len(after.sessions)
    assert any(s.replies for s in after.sessions)
    after.apply_ready(SimpleNamespace(apply_lo=half + 1, apply_hi=len(log) + 1), 5_000)
    apply_one_by_one(slow, len(log), random.Random(0))
    got = observe(after)["sessions"]
    assert got == observe(slow)["sessions"]
    assert all(list(s.reply_order) == list(s.replies) for s in after.sessions if s.replies)
