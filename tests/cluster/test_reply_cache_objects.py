"""The reply cache's compiled entries (``Reply``) against the plain-list form they replace,
and the apply run's direct read of the real LogIndex.

The snapshot bytes of a reply cache must not change with the in-memory form: the golden
bytes below were produced by main's code (reply-cache entries as lists of tuples, before
``Reply``) for the same log, so a member running either code restores the other's snapshot.
"""
import random
from types import SimpleNamespace

import pytest

from aeronpy._logindex import LogIndex
from aeronpy.cluster import entries as E
from aeronpy.cluster.container import ServiceError
from aeronpy.cluster.entries import EntryDecodeError
from aeronpy.cluster.module import ConsensusModule
from aeronpy.cluster.sessions import SessionState
from aeronpy.service import Role

from .test_apply_fast_path import (LEADER, ReferenceModule, apply_in_batches,
                                   apply_one_by_one, apply_until_the_service_raises, member,
                                   observe, random_log)

# snapshot_state() of member(random_log(Random(4), 60), LEADER, "small_cache") after applying
# the whole log, computed on main 6eeaa45 (14 cached seqs, one with two replies)
GOLDEN_SNAPSHOT = bytes.fromhex(
    "4150434d020059080000000000003e00000000000000010000000000000001000000000000000400000001000000"
    "000000000b000000000000000100000000000000e8030000000000000c000000000000000b000000000000000700"
    "63313a373030300400000009000000000000000100000023020000000000000600000072653a6d34370a00000000"
    "0000000100000028020000000000000600000072653a6d35320b00000000000000010000002b0200000000000006"
    "00000072653a6d35350c00000000000000010000002f020000000000000600000072653a6d353902000000000000"
    "000c000000000000000200000000000000e90300000000000018000000000000001400000000000000070063323a"
    "37303030040000001500000000000000010000001b020000000000000600000072653a6d33391600000000000000"
    "010000001f020000000000000600000072653a6d3433170000000000000001000000250200000000000006000000"
    "72653a6d34391800000000000000010000002d020000000000000600000072653a6d353726000000000000008700"
    "000000000000550000000000000018080000000000000400000000000000040000000000000005006333353a3104"
    "00000001000000000000000100000018020000000000000600000072653a6d33360200000000000000010000001e"
    "020000000000000600000072653a6d343203000000000000000100000026020000000000000600000072653a6d35"
    "3004000000000000000100000029020000000000000600000072653a6d3533300000000000000091000000000000"
    "005f0000000000000034080000000000000300000000000000030000000000000005006334353a31020000000200"
    "0000000000000100000024020000000000000600000072653a6d34380300000000000000020000002c0200000000"
    "00000800000072653a74776963652c0200000000000005000000616761696e000000000000000001"
)


def applied_golden_member() -> ConsensusModule:
    log = random_log(random.Random(4), 60)
    module = member(log, LEADER, "small_cache", log_index=True)
    module.apply_ready(SimpleNamespace(apply_lo=1, apply_hi=len(log) + 1), 5_000)
    return module


def test_reply_cache_snapshot_bytes_are_the_golden_bytes():
    module = applied_golden_member()
    lengths = [len(r) for s in module.sessions for r in s.replies.values()]
    assert 2 in lengths and lengths.count(1) > 5      # both entry forms are in the snapshot
    assert module.snapshot_state() == GOLDEN_SNAPSHOT


def test_golden_snapshot_restores_and_re_encodes_identically():
    restored = member(random_log(random.Random(4), 60), LEADER, "small_cache")
    restored.restore_state(GOLDEN_SNAPSHOT)
    assert restored.snapshot_state() == GOLDEN_SNAPSHOT


def test_the_golden_comparison_notices_a_changed_reply():
    """Negative control: one cached reply with other bytes must change the snapshot."""
    module = applied_golden_member()
    s = next(s for s in module.sessions if s.replies)
    seq = next(iter(s.replies))
    s.replies[seq] = [(list(s.replies[seq])[0][0], b"other")]
    assert module.snapshot_state() != GOLDEN_SNAPSHOT


def reference_record(cache: dict, seq, cid, payload, max_messages, per_message) -> bool:
    """record_reply's contract on plain lists (the form before Reply)."""
    if seq not in cache:
        if max_messages <= 0:
            return False
        cache[seq] = []
        while len(cache) > max_messages:
            del cache[next(iter(cache))]
    if len(cache[seq]) >= per_message:
        return False
    cache[seq].append((cid, payload))
    return True


@pytest.mark.parametrize("seed", range(6))
def test_record_reply_matches_the_list_model(seed):
    rng = random.Random(seed)
    s, model = SessionState(3, "c:1", 1, 2, 0), {}
    for i in range(300):
        if rng.random() < 0.1:                    # bounds may change between calls
            max_messages, per_message = rng.randint(0, 5), rng.randint(0, 3)
        elif i == 0:
            max_messages, per_message = 4, 2
        seq = rng.randint(1, 12)
        payload = rng.choice([b"p%d" % i, bytearray(b"ba"), b""])
        got = s.record_reply(seq, 900 + i, payload, max_messages, per_message)
        want = reference_record(model, seq, 900 + i, payload, max_messages, per_message)
        assert got == want, i
        assert {k: list(v) for k, v in s.replies.items()} == model, i
        assert list(s.reply_order) == list(s.replies)


def test_a_reply_reads_as_the_one_entry_list_it_replaces():
    s = SessionState(7, "c:1", 1, 2, 0)
    assert s.record_reply(5, 42, b"r", 4, 2)
    entry = s.replies[5]
    assert len(entry) == 1 and bool(entry) and list(entry) == [(42, b"r")]
    assert entry == [(42, b"r")] and entry != [(42, b"x")] and entry[0] == (42, b"r")
    assert (entry.session_id, entry.ack_seq, entry.as_tuple()) == (7, 5, (7, 42, 5, b"r"))
    with pytest.raises(TypeError):
        hash(entry)
    assert s.record_reply(5, 43, b"again", 4, 2)          # a second reply: now a list
    assert s.replies[5] == [(42, b"r"), (43, b"again")] and type(s.replies[5]) is list
    assert not s.record_reply(5, 44, b"third", 4, 2)       # bound per message


def session_log(bodies) -> list:
    log = [(1, E.SESSION_OPEN, E.encode_session_open(1_000, 1, 11, "c1:7000"))]
    return log + [(1, E.SESSION_MESSAGE, E.encode_session_message(2_000, 1, i + 1, 70 + i, 0, b))
                  for i, b in enumerate(bodies)]


@pytest.mark.parametrize("role", [Role.LEADER, Role.FOLLOWER])
def test_views_from_the_real_log_are_released_after_the_call(role):
    service = apply_until_the_service_raises(role, LogIndex())
    for view in service.kept:
        with pytest.raises(ValueError):
            bytes(view)


def test_a_short_session_message_in_the_real_log_is_a_decode_error_at_its_index():
    log = session_log([b"a", b"b"])
    log.insert(2, (1, E.SESSION_MESSAGE, b"\x00" * 20))     # shorter than its header
    results = []
    for log_index in (True, False):
        module = member(log, Role.FOLLOWER, log_index=log_index)
        with pytest.raises(EntryDecodeError):
            module.apply_ready(SimpleNamespace(apply_lo=1, apply_hi=len(log) + 1), 5_000)
        results.append((module.applied_index, module.container.services[0].messages))
    assert results[0] == results[1] and results[0][0] == 2      # stopped before it


@pytest.mark.parametrize("change", ["cache_bounds", "max_message_bytes"])
def test_bounds_changed_between_runs_are_used_by_the_next_run(change):
    """The reply path reads config's bounds once per run: a change between runs counts."""
    log = random_log(random.Random(9), 300)
    fast, slow = member(log, LEADER, log_index=True), member(log, LEADER, cls=ReferenceModule)
    half = len(log) // 2
    apply_in_batches(fast, half, random.Random(3), collect=False)
    apply_one_by_one(slow, half, random.Random(3))
    for m in (fast, slow):
        if change == "cache_bounds":
            m.config.reply_cache_messages, m.config.reply_cache_replies_per_message = 2, 1
        else:
            m.config.max_message_bytes = 2         # every echo of 3 bytes or more: too large
    raised = []
    for m in (fast, slow):
        try:
            if m is fast:
                m.apply_ready(SimpleNamespace(apply_lo=half + 1, apply_hi=len(log) + 1), 5_000)
            else:
                for index in range(half + 1, len(log) + 1):
                    m.apply(index, *m.core.log.entries[index - 1])
        except ServiceError:
            raised.append(m is fast)
    got, want = observe(fast), observe(slow)
    got["egress"], want["egress"] = [], []        # drained at other points on the two sides
    failures = [str(got.pop("failure")).split(":")[0], str(want.pop("failure")).split(":")[0]]
    assert got == want and failures[0] == failures[1]        # same service, callback, index
    if change == "cache_bounds":
        assert not raised and want["counters"].get("reply_not_cached")
        assert all(len(s.replies) <= 2 for s in fast.sessions)
    else:
        assert raised == [True, False] and want["applied"] < len(log)
        assert "log index" in failures[0]
