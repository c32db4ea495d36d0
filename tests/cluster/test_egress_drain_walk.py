"""EgressQueues.drain and drain_encoded against a plain-Python model of their walk.

Why: both drains share one compiled walk (per client oldest first, at most ``limit``, a
client's backlog kept at its first back-pressured message, emptied clients forgotten) and
differ only in how one message is handed over. Random scenarios of puts and drains with
scripted send answers must give, call for call, what the model gives: what was sent, the
counts, each client's backlog and the order the queues are left in.
"""
from __future__ import annotations

import random
from types import SimpleNamespace

import pytest

from aeronpy import _codec_batch
from aeronpy._applypath import EgressQueues, ReplyPath, SessionState
from aeronpy.cluster.codes import BACK_PRESSURED, CLOSED

SCENARIOS = 300
REFS = ["a", "b", "c", ("d", 1), None]
# drain: only `is False` keeps the backlog (None and 0 are "sent")
OBJECT_ANSWERS = [True, True, True, False, None, 0, 1]
# drain_encoded: only `== BACK_PRESSURED` keeps the backlog (-2.0 equals it), other codes drop
ENCODED_ANSWERS = [1, 1, 1, 32, BACK_PRESSURED, float(BACK_PRESSURED), CLOSED, 0]


def make_reply(session_id: int, correlation_id: int, seq: int, data: bytes):
    """A real _applypath.Reply, as the reply path caches (and queues) it."""
    config = SimpleNamespace(max_message_bytes=1 << 20, reply_cache_messages=8,
                             reply_cache_replies_per_message=4, client_ref_of_endpoint=None)
    path = ReplyPath(config, {}, EgressQueues(8))
    s = SessionState(session_id, "127.0.0.1:9", 1, 1, 0)
    path.handling, path.handling_seq, path.handling_correlation_id = s, seq, correlation_id
    path.offer(s, data)
    reply = s.replies[seq]
    assert type(reply).__name__ == "Reply" and reply.as_tuple() == (session_id, correlation_id,
                                                                     seq, data)
    return reply


def fields_of(message) -> tuple | None:
    if type(message) is tuple:
        return message
    if type(message).__name__ == "Reply":
        return message.as_tuple()
    return None


def reply_form(*fields):
    return ("form",) + fields


def encode_other(message) -> bytes:
    return b"E" + message.encode()


def expected_object(message):
    fields = fields_of(message)
    return message if fields is None else reply_form(*fields)


def expected_bytes(message) -> bytes:
    fields = fields_of(message)
    return encode_other(message) if fields is None else _codec_batch.encode_egress_message(*fields)


class Scripted:
    """A send that records each call and answers from a seeded script."""

    def __init__(self, rng: random.Random, answers: list) -> None:
        self.rng, self.answers, self.calls = rng, answers, []

    def __call__(self, client_ref, message):
        answer = self.rng.choice(self.answers)
        self.calls.append((client_ref, message, answer))
        return answer


def model_drain(model: dict, calls: list, limit: int, encoded: bool) -> tuple[int, list]:
    """The walk as the drains' docstrings state it, replaying the answers the real send gave;
    returns (sent, the calls it would have made)."""
    answers = iter(answer for _, _, answer in calls)     # a missing answer: None (a mismatch)
    made, sent, emptied = [], 0, []
    for ref, queue in model.items():
        while queue and sent < limit:
            message = queue[0]
            if encoded:
                if ref is not None:
                    data = expected_bytes(message)
                    answer = next(answers, None)
                    made.append((ref, data, answer))
                    if answer == BACK_PRESSURED:
                        break
            else:
                answer = next(answers, None)
                made.append((ref, expected_object(message), answer))
                if answer is False:
                    break
            queue.pop(0)
            sent += 1
        if not queue:
            emptied.append(ref)
        if sent >= limit:
            break
    for ref in emptied:
        del model[ref]
    return sent, made


def random_message(rng: random.Random, n: int):
    kind = rng.randrange(3)
    if kind == 0:
        return make_reply(rng.randrange(1, 50), rng.randrange(100), n, b"r%d" % n)
    if kind == 1:
        return (rng.randrange(1, 50), rng.randrange(100), n, b"t%d" % n)
    return f"other-{n}"


def run_scenario(seed: int, encoded: bool, queues_type: type = EgressQueues) -> str | None:
    """One seeded scenario; None when the queues agree with the model throughout, else what
    differed first."""
    rng = random.Random(seed)
    queue_max = rng.choice([0, 2, 4, 100])
    queues, model = queues_type(queue_max), {}
    dropped, n = 0, 0
    for round_ in range(rng.randrange(1, 6)):
        for _ in range(rng.randrange(0, 12)):
            ref = rng.choice(REFS if encoded else REFS[:-1])
            n += 1
            message = random_message(rng, n)
            kept = model.setdefault(ref, [])
            accepted = queues.put(ref, message)
            if accepted != (len(kept) < queue_max):
                return f"seed {seed}: put {message!r} for {ref!r} answered {accepted}"
            if accepted:
                kept.append(message)
            else:
                dropped += 1
        limit = rng.choice([0, 1, 3, 7, 1 << 30])
        send = Scripted(rng, ENCODED_ANSWERS if encoded else OBJECT_ANSWERS)
        if encoded:
            sent = queues.drain_encoded(send, encode_other, limit)
        else:
            sent = queues.drain(send, limit, reply_form)
        want_sent, want_calls = model_drain(model, send.calls, limit, encoded)
        got = (sent, send.calls, len(queues), queues.dropped,
               [queues.backlog(ref) for ref in REFS])
        want = (want_sent, want_calls, sum(len(q) for q in model.values()), dropped,
                [len(model.get(ref, ())) for ref in REFS])
        if got != want:
            return f"seed {seed} round {round_}: {got} != {want}"
    # what is left, in the queues' own order (emptied clients forgotten, re-added at the end)
    left = queues.take_all(reply_form)
    want_left = [(ref, expected_object(m)) for ref, q in model.items() for m in q]
    return None if left == want_left else f"seed {seed}: left {left} != {want_left}"


@pytest.mark.parametrize("encoded", [False, True], ids=["drain", "drain_encoded"])
def test_drain_walk_matches_the_model(encoded: bool) -> None:
    for seed in range(SCENARIOS):
        assert run_scenario(seed, encoded) is None


class IgnoresBackPressure(EgressQueues):
    """A planted fault: each drain hands over a back-pressured message as if it had gone."""

    def drain(self, send, limit=1 << 30, reply_form=None):
        return super().drain(lambda ref, message: send(ref, message) is not False or 1,
                             limit, reply_form)

    def drain_encoded(self, send_bytes, encode, limit=1 << 30):
        return super().drain_encoded(lambda ref, data: send_bytes(ref, data) == BACK_PRESSURED
                                     or 1, encode, limit)


@pytest.mark.parametrize("encoded", [False, True], ids=["drain", "drain_encoded"])
def test_the_model_check_catches_a_drain_that_ignores_back_pressure(encoded: bool) -> None:
    """Negative control: the same scenarios tell the planted fault apart."""
    failures = [run_scenario(seed, encoded, IgnoresBackPressure) for seed in range(40)]
    assert sum(f is not None for f in failures) >= 10


def test_a_drain_whose_send_raises_propagates_and_leaves_the_counts_as_today() -> None:
    """A send that raises ends the drain with the exception; the messages it already took
    stay taken, but neither drain settles `queued` or forgets emptied clients (pinned as the
    drains behave today, so merging their walk changes nothing)."""
    for encoded in (False, True):
        queues = EgressQueues(10)
        for ref, message in [("a", "m1"), ("a", "m2"), ("b", "m3")]:
            queues.put(ref, message)
        calls = []

        def send(ref, message):
            calls.append(ref)
            if len(calls) == 3:
                raise RuntimeError("send failed")
            return 1 if encoded else True

        with pytest.raises(RuntimeError, match="send failed"):
            if encoded:
                queues.drain_encoded(send, encode_other)
            else:
                queues.drain(send, 1 << 30, reply_form)
        assert calls == ["a", "a", "b"]
        assert (queues.backlog("a"), queues.backlog("b"), len(queues)) == (0, 1, 3)
        assert queues.take_all(reply_form) == [("b", "m3")]


def test_a_reply_needs_a_reply_form_to_drain_as_objects() -> None:
    queues = EgressQueues(4)
    queues.put("a", make_reply(3, 4, 5, b"x"))
    with pytest.raises(TypeError):
        queues.drain(lambda ref, message: True)
    assert len(queues) == 1 and queues.backlog("a") == 1
