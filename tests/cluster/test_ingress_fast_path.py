"""The leader's SessionMessage fast path against the path it shortcuts.

- ``aeronpy._ingress.session_message_fields`` against ``_codec.decode`` on valid, mutated,
  truncated and random buffers: same fields, same refusals.
- ``encode_session_message_entry`` (C) against ``entries.encode_session_message``: same bytes.
- ``ConsensusModule.on_session_message(ref, fields, now)`` and the node's compiled entry
  ``module.ingress_path.on_frame(ref, frame, clock)`` against the handling they replaced
  (reference_leader.py, reached through ``on_ingress(ref, P.SessionMessage(*fields), now)``)
  on identical 3-member worlds driven by the same random script (forged and foreign sessions,
  duplicates, gaps, oversized payloads, followers, leader changes, a term change the module
  has not seen yet, refused and held proposals, a clock that moves): same log (every entry's
  bytes), same egress, same counters; under three endpoint-binding configurations. The
  object path of the package is checked the same way.
Every comparison has a negative control: a deliberately wrong path it catches.
"""
import random

from aeronpy import _codec
from aeronpy.core.config import NEW_LEADERSHIP_TERM
from aeronpy._ingress import encode_session_message_entry, session_message_fields
from aeronpy.cluster import entries as E
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


# ---------------------------------------------------------------- entry encode
def _entry_fields(seed: int) -> list:
    rng = random.Random(seed)
    edge64 = [-2**63, -1, 0, 1, 2**63 - 1]
    edge32 = [-2**31, -1, 0, 1, 2**31 - 1]
    out = []
    for _ in range(300):
        pick64 = lambda: rng.choice(edge64) if rng.random() < 0.3 else rng.randrange(-2**63, 2**63)
        out.append((pick64(), pick64(), pick64(), pick64(),
                    rng.choice(edge32) if rng.random() < 0.3 else rng.randrange(-2**31, 2**31),
                    rng.randbytes(rng.choice([0, 1, 32, 1000]))))
    return out


def _encode_mismatches(encode, fields_list) -> list:
    return [f for f in fields_list
            if encode(*f[:5], memoryview(f[5])) != E.encode_session_message(*f)]


def test_compiled_entry_encode_is_byte_identical():
    for seed in range(3):
        assert _encode_mismatches(encode_session_message_entry, _entry_fields(seed)) == [], seed


def test_encode_comparison_catches_a_wrong_byte_order():
    def big_endian_service(ts, sid, seq, cid, service_id, payload):
        out = bytearray(encode_session_message_entry(ts, sid, seq, cid, service_id, payload))
        out[32:36] = out[32:36][::-1]
        return bytes(out)
    assert _encode_mismatches(big_endian_service, _entry_fields(0))


# ---------------------------------------------------------------- leader
_ENDPOINTS = {"c1:7000": "c1:7000", "c2:7000": "c2:7000"}
BINDINGS = {       # ModuleConfig variants the fast paths must honour alike
    "bound": {},
    "bound_through_a_map": {"client_ref_of_endpoint": _ENDPOINTS.get},
    "unbound": {"bind_session_to_endpoint": False},
}


def _fast_entry(world, member, ref, fields):
    world.modules[member].on_session_message(ref, fields, world.now_ns)
    world.collect()


def _frame_entry(world, member, ref, fields):
    """The node's entry: the encoded frame to the compiled path (which must say it took it)."""
    frame = _codec.encode(P.SessionMessage(*fields))
    assert world.modules[member].ingress_path.on_frame(ref, memoryview(frame), lambda: world.now_ns)
    world.collect()


def _truncating_entry(world, member, ref, fields):
    """Negative control: a fast path that clips the payload before the size check."""
    sid, seq, cid, service, payload = fields
    _fast_entry(world, member, ref, (sid, seq, cid, service, payload[:MAX_MESSAGE_BYTES - 3]))


def _unbound_frame_entry(world, member, ref, fields):
    """Negative control: a compiled path that skips the session-to-client binding check (as
    if every sender were the session's own client)."""
    s = world.modules[member].sessions.get(fields[0])
    _frame_entry(world, member, ref if s is None else s.response_endpoint, fields)


def _late_stamp_frame_entry(world, member, ref, fields):
    """Negative control: a compiled path whose entry carries the clock read one tick later."""
    _frame_entry(world, member, ref, fields)
    world.now_ns += 1


def _object_entry(world, member, ref, fields):
    world.ingress(member, ref, P.SessionMessage(*fields))


def _leader_event(w, rng) -> None:
    """Something other than a client message happens to the cluster."""
    r = rng.random()
    leader = w.leader()
    if r < 0.45:
        w.settle()
    elif r < 0.65:
        w.tick(1_000_000)
    elif r < 0.75:
        w.elect(rng.choice([m for m in range(3) if m != leader]))
        if rng.random() < 0.5:
            w.settle()
    elif r < 0.8:      # a new term of the same leader the module has not been told of yet
        w.term += 1
        for core in w.cores:
            core.term = w.term
        w.cores[leader].log.append(w.term, NEW_LEADERSHIP_TERM, b"")
    elif r < 0.88:     # the core refuses proposals for a while (a leadership transfer)
        w.cores[leader].refuse_proposals = not w.cores[leader].refuse_proposals
    else:              # suspend, later resume: proposals held, then suspended
        module = w.modules[leader]
        action = E.ACTION_RESUME if module.suspended or module._proposals_held else E.ACTION_SUSPEND
        module.propose_cluster_action(action)
        if rng.random() < 0.7:
            w.settle()


def _leader_trace(seed: int, entry, reference: bool = False, binding: str = "bound") -> list:
    rng = random.Random(seed)
    w = FakeWorld(members=3, max_message_bytes=MAX_MESSAGE_BYTES, **BINDINGS[binding])
    if reference:
        for module in w.modules:
            use_reference(module)
    w.elect(0)
    w.settle()
    clients = {"c1:7000": w.connect(0, "c1:7000", 11), "c2:7000": w.connect(0, "c2:7000", 12)}
    next_seq = {sid: 1 for sid in clients.values()}
    trace = []
    for step in range(300):
        if rng.random() < 0.8:
            w.now_ns += rng.choice([0, 0, 1, 1000])
            ref = rng.choice(["c1:7000", "c1:7000", "c2:7000", "stranger:1"])
            sid = clients.get(ref, 2) if rng.random() < 0.9 else rng.choice([999, *clients.values()])
            expected = next_seq.get(sid, 1)
            seq = max(0, expected + rng.choice([0, 0, 0, 0, -1, -3, 1, 2]))
            size = rng.choice([0, 1, 32, 32, MAX_MESSAGE_BYTES - 3, MAX_MESSAGE_BYTES + 1, 200])
            member = w.leader() if rng.random() < 0.9 else rng.randrange(3)
            entry(w, member, ref, (sid, seq, rng.randrange(1 << 40), rng.choice([0, 0, 0, 1, -1, 7]),
                                   rng.randbytes(size)))
            leader = w.modules[w.leader()]
            for known in next_seq:           # what the client would send next
                s = leader.sessions.get(known)
                applied = s.last_applied_seq if s is not None else 0
                next_seq[known] = max(leader._leader_seq.get(known, 0), applied) + 1
        else:
            _leader_event(w, rng)
        trace.append((step, [w.take(m) for m in range(3)], list(w.cores[w.leader()].log.entries)))
    trace.append([dict(m.counters) for m in w.modules])
    return trace


COUNTERS_SEEN = ("redirects", "ingress_unknown_session", "ingress_leader_not_ready",
                 "ingress_too_large", "replies_from_cache", "ingress_already_sequenced",
                 "ingress_seq_gap", "proposed", "propose_refused", "proposals_held",
                 "ingress_unknown_service")


def test_leader_fast_entries_match_the_message_object_path():
    seen = dict.fromkeys(COUNTERS_SEEN + ("ingress_session_client_mismatch",), 0)
    for binding in BINDINGS:
        for seed in range(4):
            reference = _leader_trace(seed, _object_entry, reference=True, binding=binding)
            frame = _leader_trace(seed, _frame_entry, binding=binding)
            assert frame == reference, (binding, seed)
            assert _leader_trace(seed, _fast_entry, binding=binding) == reference, (binding, seed)
            assert _leader_trace(seed, _object_entry, binding=binding) == reference, (binding, seed)
            for name in seen:
                seen[name] += sum(c.get(name, 0) for c in frame[-1])
    assert all(seen.values()), seen      # every check of the path was exercised


def test_leader_comparison_catches_a_wrong_fast_entry():
    assert _leader_trace(0, _truncating_entry) != _leader_trace(0, _object_entry, reference=True)


def test_leader_comparison_catches_a_compiled_path_without_the_binding_check():
    assert _leader_trace(0, _unbound_frame_entry) != _leader_trace(0, _object_entry, reference=True)


def test_leader_comparison_catches_a_wrong_entry_stamp():
    assert _leader_trace(0, _late_stamp_frame_entry) != _leader_trace(0, _object_entry, reference=True)


def test_compiled_entry_leaves_other_message_types_and_raises_on_malformed():
    w = FakeWorld(members=1)
    path = w.modules[0].ingress_path
    assert path.on_frame("c1:7000", _codec.encode(P.SessionKeepAlive(5, 1)), lambda: 0) is False
    assert path.on_frame("c1:7000", b"", lambda: 0) is False
    frame = _codec.encode(P.SessionMessage(1, 1, 1, 0, b"abc"))
    try:
        path.on_frame("c1:7000", frame + b"\x00", lambda: 0)
    except _codec.DecodeError:
        pass
    else:
        raise AssertionError("a malformed SessionMessage was taken")
    assert w.modules[0].counters["proposed"] == 0


def test_compiled_entry_proposes_the_next_message_without_the_python_handler():
    """The common case never reaches ``on_session_message``; a gap does (the fallback)."""
    w = FakeWorld(members=1)
    sid = w.connect(0, "c1:7000", 11)
    module = w.modules[0]
    handled = []
    module.on_session_message = lambda ref, fields, now_ns: handled.append(fields)
    proposed = module.counters["proposed"]
    for seq in (1, 2):
        frame = _codec.encode(P.SessionMessage(sid, seq, 40 + seq, 0, b"x" * 32))
        assert module.ingress_path.on_frame("c1:7000", frame, lambda: w.now_ns)
    assert handled == [] and module.counters["proposed"] == proposed + 2
    assert w.cores[0].log.entries[-1][2] == E.encode_session_message(w.now_ns, sid, 2, 42, 0, b"x" * 32)
    gap = _codec.encode(P.SessionMessage(sid, 4, 44, 0, b"y"))
    assert module.ingress_path.on_frame("c1:7000", gap, lambda: w.now_ns)
    assert handled == [(sid, 4, 44, 0, b"y")]
