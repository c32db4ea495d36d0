"""The client's record of delivered responses holds nothing the garbage collector tracks.

The record keeps ``window_messages`` seqs below the window. When it held a list and a tuple
per response, every young collection in the client's process had thousands more tracked
objects to walk: with an application keeping one tuple per request at 10k requests/s they
took 280 us on average, 40 us after (bench/results/perf.md, "Latency work of 2026-11-27").
"""
import gc

from aeronpy._clientpath import record_response, response_key
from aeronpy.cluster import protocol as P
from aeronpy.cluster.client_core import ClientConfig, ClientCore

from tests.cluster.test_client_fastpath import SESSION, _connect


def test_record_response_first_duplicate_and_several_answers():
    answered: dict = {}
    a, b, c = (response_key(7, p) for p in (b"a", b"b", b"c"))
    assert len({a, b, c}) == 3 and response_key(7, b"a") == a != response_key(8, b"a")
    assert record_response(answered, 1, a)
    assert not record_response(answered, 1, a)            # the same response again
    assert record_response(answered, 1, b)                 # a second answer to seq 1
    assert record_response(answered, 1, c)
    assert not record_response(answered, 1, b) and not record_response(answered, 1, c)
    assert record_response(answered, 2, a)                 # another seq: its own record
    assert answered == {1: (a, b, c), 2: a}


def _drive(core: ClientCore, requests: int, fields: bool) -> None:
    for i in range(requests):
        cid = core.offer(b"x" * 32, 0, i)
        assert cid > 0
        seq = core._next_seq - 1
        if fields:
            core.on_egress_message(SESSION, cid, seq, b"reply", i)
        else:
            core.on_egress(P.EgressMessage(SESSION, cid, seq, b"reply"), i)
        core.poll(lambda _c, _p: None, 10)


def _tracked_in_record(core: ClientCore) -> list:
    record = core._answered
    return [v for v in record.values() if gc.is_tracked(v)] + ([record] if gc.is_tracked(record) else [])


def test_a_long_run_of_responses_leaves_no_tracked_object_in_the_record():
    for fields in (True, False):
        core = ClientCore("m0:1", "me:5", ClientConfig(window_messages=64), encoded_messages=fields)
        _connect(core)
        _drive(core, 1000, fields)
        assert len(core._answered) >= 64                  # the record is in use and bounded
        assert len(core._answered) <= 2 * 64
        assert _tracked_in_record(core) == []


def test_negative_control_a_record_of_lists_is_seen_as_tracked():
    core = ClientCore("m0:1", "me:5", ClientConfig(window_messages=64), encoded_messages=True)
    _connect(core)
    _drive(core, 100, True)
    seq = max(core._answered)
    core._answered[seq] = [core._answered[seq]]           # the old representation
    assert _tracked_in_record(core) != []


def test_a_service_answering_twice_is_delivered_twice_and_a_resend_once():
    core = ClientCore("m0:1", "me:5", ClientConfig(), encoded_messages=True)
    _connect(core)
    cid = core.offer(b"q", 0, 0)
    seq = core._next_seq - 1
    for payload in (b"first", b"second", b"first", b"second"):
        core.on_egress_message(SESSION, cid, seq, payload, 1)
    got = []
    core.poll(lambda c, p: got.append(bytes(p)), 10)
    assert got == [b"first", b"second"]
    assert core.counters.get("duplicate_responses") == 2
