"""No message a peer can send makes a core raise: whatever decodes is stepped by a follower, a
leader or a member in its pre-vote without an exception (an exception in step stops the node).

Messages are drawn near the core's own numbers (its term, last index and commit, one either
side) and at extremes (0, -1, +-2**62), so they hit the comparisons the handlers make. Only
messages that survive encode and decode are stepped, as on the wire. Found so far: an
AppendResponse refusing an index past the leader's log (IndexError), and AppendEntries with
decreasing entry terms (ValueError in the log), now a counted drop and a DecodeError."""
from __future__ import annotations

import random
import struct

import pytest

from aeronpy._codec import DecodeError, decode, encode
from aeronpy.core import messages as M
from aeronpy.core.replication import LeaderReplication

from .test_step_path import MS, _follower, _leader_net

TRIALS = 1500


def _near(rng, value):
    return rng.choice([value, value + 1, value - 1, value + 2, 0, -1, -5, 1 << 62, -(1 << 62),
                       rng.randrange(-10, 20)])


def _random_message(rng, core, cls):
    term, last = core.term, core.log.last_index
    t = _near(rng, term)
    if cls is M.AppendEntries:
        prev_term = _near(rng, core.log.last_term)
        n = rng.randrange(0, 4) if t >= prev_term and t - prev_term < (1 << 40) else 0
        if rng.random() < 0.2:
            terms = [rng.randrange(-3, 6) for _ in range(n)]       # mostly refused by decode
        else:
            terms = sorted(rng.randint(prev_term, t) for _ in range(n))
        blob = b"".join(struct.pack("<IHHq", 1, 16, 0, x) + b"x" for x in terms)
        return M.AppendEntries(t, _near(rng, last), prev_term, _near(rng, core.commit_index), blob, n)
    if cls is M.InstallSnapshot:
        data = rng.randbytes(rng.randrange(0, 20))
        return M.InstallSnapshot(t, _near(rng, last), _near(rng, term), _near(rng, 0),
                                 _near(rng, len(data)), rng.random() < 0.5, data)
    values = []
    for field in cls.FIELDS:
        if field in ("granted", "pre", "success", "done", "transfer"):
            values.append(rng.random() < 0.5)
        elif field == "term":
            values.append(t)
        else:
            values.append(_near(rng, last if "index" in field else term))
    return cls(*values)


def _core(rng, kind, trial):
    if kind == "leader":
        return _leader_net(seed=trial % 5)[0], rng.choice([1, 2])
    core = _follower(seed=trial % 5, log_terms=(1, 1, 1))
    if kind == "pre-vote":
        for k in range(1, 40):                 # its leader silent: it canvasses
            core.tick(k * 50 * MS)
            _settle(core)
    return core, rng.choice([0, 0, 2])


def _settle(core):
    while core.has_ready():
        core.advance(core.ready())


def _fuzz(seed: int, trials: int) -> list:
    rng = random.Random(seed)
    raised = []
    for trial in range(trials):
        kind = ("follower", "leader", "pre-vote")[trial % 3]
        core, src = _core(rng, kind, trial)
        for step in range(rng.randrange(1, 6)):
            try:
                # a leader mostly hears acknowledgements: a third of its draws are one
                cls = (M.AppendResponse if kind == "leader" and rng.random() < 0.3
                       else rng.choice(M.CONSENSUS_MESSAGES))
                msg = decode(encode(_random_message(rng, core, cls)))
            except (DecodeError, ValueError):
                continue                       # never reaches a core: the node counts a drop
            try:
                core.step(src, msg, (2000 + step) * MS)
                _settle(core)
            except Exception as exc:
                raised.append((kind, msg, f"{type(exc).__name__}: {exc}"))
                break
    return raised


@pytest.mark.parametrize("seed", [1, 2])
def test_no_decodable_peer_message_makes_a_core_raise(seed):
    raised = _fuzz(seed, TRIALS)
    assert raised == []


def test_negative_control_without_the_response_check_the_fuzz_finds_the_crash(monkeypatch):
    monkeypatch.setattr(LeaderReplication, "_impossible_response", lambda self, msg: False)
    raised = [r for seed in (1, 2, 3, 4) for r in _fuzz(seed, TRIALS)]
    assert raised and all(kind == "leader" and type(msg) is M.AppendResponse
                          for kind, msg, _ in raised)
