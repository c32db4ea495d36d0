"""The leader's SessionMessage fast path against the path it shortcuts.

- ``aeronpy._ingress.session_message_fields`` against ``_codec.decode`` on valid, mutated,
  truncated and random buffers: same fields, same refusals.
- ``ConsensusModule.on_session_message(ref, fields, now)`` against the handling it replaced
  (reference_leader.py, reached through ``on_ingress(ref, P.SessionMessage(*fields), now)``)
  on two identical 3-member worlds driven by the same random script (forged and foreign
  sessions, duplicates, gaps, oversized payloads, followers, leader changes): same log, same
  egress, same counters. The object path of the package is checked the same way.
Both comparisons have a negative control: a deliberately wrong fast path they catch.
"""
import random

from aeronpy import _codec
from aeronpy._ingress import session_message_fields
from aeronpy.cluster import protocol as P

from .fakes import FakeWorld
from .reference_leader import use_reference

MAX_MESSAGE_BYTES = 64


# ---------------------------------------------------------------- decode
def _corpus(seed: int) -> list:
    rng = random.Random(seed)
    valid = [_codec.encode(P.SessionMessage(rng.randrange(-2**63, 2**63), rng.randrange(2**40),
                                            rng.randrange(-2**63, 2**63), rng.randrange(-2**31, 2**31),
                                            rng.randbytes(rng.choice([0, 1, 32, 300]))))
             for _ in range(200)]
    others = [_codec.encode(P.SessionKeepAlive(5, 1)), _codec.encode(P.SessionClose(5, 1))]
    out = [b"", b"\x22", b"\x22\x00"] + valid + others
    for b in valid + others:
        m = bytearray(b)
        r = rng.random()
        if r < 0.4:
            m[rng.randrange(len(m))] ^= 1 << rng.randrange(8)
        elif r < 0.7:
            del m[rng.randrange(len(m)):]
        else:
            m += rng.randbytes(rng.randint(1, 3))
        out.append(bytes(m))
    out += [b"\x22\x00" + rng.randbytes(rng.randrange(60)) for _ in range(100)]
    return out


def _outcome(fn, buf):
    try:
        return ("ok", fn(buf))
    except _codec.DecodeError:
        return ("DecodeError",)


def _decode_fields(buf):
    """The reference: full decode, then the fields of a SessionMessage (None otherwise)."""
    if len(buf) < 2 or int.from_bytes(buf[:2], "little") != 34:
        return None
    m = _codec.decode(buf)
    return (m.session_id, m.seq, m.correlation_id, m.service_id, m.payload)


def _mismatches(fields_fn, corpus) -> list:
    return [b for b in corpus
            if _outcome(fields_fn, memoryview(b)) != _outcome(_decode_fields, b)]


def test_session_message_fields_agree_with_decode():
    for seed in range(5):
        corpus = _corpus(seed)
        assert _mismatches(session_message_fields, corpus) == [], seed
        refused = sum(_outcome(session_message_fields, b)[0] == "DecodeError" for b in corpus)
        assert 50 < refused < len(corpus) - 200      # both kinds are well represented


def test_decode_comparison_catches_a_decoder_that_ignores_trailing_bytes():
    def loose(buf):
        buf = bytes(buf)
        if len(buf) >= 36:
            buf = buf[:36 + int.from_bytes(buf[32:36], "little")]
        return session_message_fields(buf)
    assert _mismatches(loose, _corpus(0))


def test_other_message_types_take_the_decode_path():
    assert session_message_fields(_codec.encode(P.SessionKeepAlive(5, 1))) is None
    assert session_message_fields(b"") is None


# ---------------------------------------------------------------- leader
def _fast_entry(world, member, ref, fields):
    world.modules[member].on_session_message(ref, fields, world.now_ns)
    world.collect()


def _truncating_entry(world, member, ref, fields):
    """Negative control: a fast path that clips the payload before the size check."""
    sid, seq, cid, service, payload = fields
    _fast_entry(world, member, ref, (sid, seq, cid, service, payload[:MAX_MESSAGE_BYTES - 3]))


def _object_entry(world, member, ref, fields):
    world.ingress(member, ref, P.SessionMessage(*fields))


def _leader_trace(seed: int, entry, reference: bool = False) -> list:
    rng = random.Random(seed)
    w = FakeWorld(members=3, max_message_bytes=MAX_MESSAGE_BYTES)
    if reference:
        for module in w.modules:
            use_reference(module)
    w.elect(0)
    w.settle()
    clients = {"c1:7000": w.connect(0, "c1:7000", 11), "c2:7000": w.connect(0, "c2:7000", 12)}
    next_seq = {sid: 1 for sid in clients.values()}
    trace = []
    for step in range(300):
        r = rng.random()
        if r < 0.8:
            ref = rng.choice(["c1:7000", "c1:7000", "c2:7000", "stranger:1"])
            sid = clients.get(ref, 2) if rng.random() < 0.9 else rng.choice([999, *clients.values()])
            expected = next_seq.get(sid, 1)
            seq = max(0, expected + rng.choice([0, 0, 0, 0, -1, -3, 1, 2]))
            size = rng.choice([0, 1, 32, 32, MAX_MESSAGE_BYTES - 3, MAX_MESSAGE_BYTES + 1, 200])
            member = w.leader() if rng.random() < 0.9 else rng.randrange(3)
            entry(w, member, ref, (sid, seq, rng.randrange(1 << 40), rng.choice([0, 0, 1]),
                                   rng.randbytes(size)))
            leader = w.modules[w.leader()]
            for known in next_seq:           # what the client would send next
                s = leader.sessions.get(known)
                applied = s.last_applied_seq if s is not None else 0
                next_seq[known] = max(leader._leader_seq.get(known, 0), applied) + 1
        elif r < 0.93:
            w.settle()
        elif r < 0.97:
            w.tick(1_000_000)
        else:
            w.elect(rng.choice([m for m in range(3) if m != w.leader()]))
            if rng.random() < 0.5:
                w.settle()
        trace.append((step, [w.take(m) for m in range(3)], w.log_types(w.leader())))
    trace.append([dict(m.counters) for m in w.modules])
    return trace


def test_leader_fast_entry_matches_the_message_object_path():
    seen = dict.fromkeys(("redirects", "ingress_unknown_session", "ingress_leader_not_ready",
                          "ingress_session_client_mismatch", "ingress_too_large",
                          "replies_from_cache", "ingress_already_sequenced", "ingress_seq_gap",
                          "proposed"), 0)
    for seed in range(6):
        fast = _leader_trace(seed, _fast_entry)
        assert fast == _leader_trace(seed, _object_entry, reference=True), seed
        assert fast == _leader_trace(seed, _object_entry), seed
        for name in seen:
            seen[name] += sum(c.get(name, 0) for c in fast[-1])
    assert all(seen.values()), seen      # every check of the path was exercised


def test_leader_comparison_catches_a_wrong_fast_entry():
    assert _leader_trace(0, _truncating_entry) != _leader_trace(0, _object_entry, reference=True)
