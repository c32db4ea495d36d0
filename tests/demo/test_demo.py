"""``aeronpy demo``: a real run keeps its promises, and its checker can fail.

The process test runs the demo exactly as a user would (``python -m aeronpy demo``), with a
leader killed and restarted, and reads its ``--json`` report. The checker tests feed
``check_final_state`` doctored member records and client ledgers (negative controls), so a
demo that reported "all invariants hold" could not do so by checking nothing.
"""
import json
import os
import subprocess
import sys

import pytest

from aeronpy import demo
from aeronpy.examples import orders as wire
from aeronpy.examples.recording_engine import RecordingMatchingEngine
from aeronpy.testing.process_cluster import child_env


# -- the real thing ------------------------------------------------------------------------------

@pytest.mark.process
def test_demo_run_keeps_every_acknowledged_order_and_identical_hashes(tmp_path):
    # not from the source tree: ``-m`` puts the working directory first on sys.path
    proc = subprocess.run([sys.executable, "-m", "aeronpy", "demo", "--duration", "10", "--json",
                           "--seed", "7"], capture_output=True, text=True, timeout=120,
                          env=child_env(), cwd=tmp_path)
    assert proc.stdout, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    print(json.dumps({k: v for k, v in report.items() if k != "members_final"}, indent=1))
    assert report["invariants"] == {"all_members_reported": True, "identical_state_hashes": True,
                                    "no_acknowledged_order_missing": True,
                                    "every_order_answered": True}, report.get("problems")
    assert proc.returncode == 0 and report["ok"] is True
    finals = report["members_final"]
    assert len(finals) == 3 and len({f["state_hash"] for f in finals.values()}) == 1
    # the run did what it says: orders flowed, trades printed, the leader was killed and replaced
    assert report["acknowledged"] == report["orders_sent"] > 1000
    assert report["orders_checked"] > 100
    assert next(iter(finals.values()))["fills"] > 0
    failover = report["failover"]
    assert failover["killed_at_s"] is not None and failover["restarted_at_s"] is not None
    assert failover["new_leader"] not in (None, failover["killed_member"])
    # nothing left behind: no node process naming the demo's directory, and the directory is gone
    if sys.platform.startswith("linux"):
        left = subprocess.run(["pgrep", "-f", report["base_dir"]], capture_output=True, text=True)
        assert left.stdout.split() == []
    assert not os.path.exists(report["base_dir"])


def test_bad_arguments_are_refused_without_starting_anything(capsys):
    assert demo.main(["--members", "2"]) == 2
    assert demo.main(["--duration", "0"]) == 2
    assert "--members >= 3" in capsys.readouterr().err


# -- the checker, with negative controls ---------------------------------------------------------

class _Session:
    def __init__(self, session_id):
        self.id = session_id
        self.sent = []

    def offer(self, payload):
        self.sent.append(bytes(payload))
        return 1


class _Cluster:
    def __init__(self, sessions):
        self.member_id, self.commit_index = 0, 0
        self.sessions = {s.id: s for s in sessions}

    def get_client_session(self, session_id):
        return self.sessions.get(session_id)

    def schedule_timer(self, correlation_id, deadline_ns):
        return True

    def cancel_timer(self, correlation_id):
        return True


def _trading_run():
    """Two clients trade on one engine; returns (canonical state, hash, ledgers)."""
    a, b = _Session(1), _Session(2)
    engine = RecordingMatchingEngine()
    engine.on_start(_Cluster([a, b]), None)
    flow = [(a, wire.encode_new_order(1, 1, wire.SELL, 100, 10)),
            (a, wire.encode_new_order(1, 2, wire.SELL, 101, 10)),
            (b, wire.encode_new_order(1, 3, wire.BUY, 101, 15)),    # fills 10 @100, 5 @101
            (b, wire.encode_new_order(1, 4, wire.BUY, 95, 7)),
            (a, wire.encode_cancel(1, 5, 2))]
    for ts, (session, message) in enumerate(flow, start=1):
        engine.on_session_message(session, ts, memoryview(message))
    ledgers = []
    for session in (a, b):
        ledger = wire.OrderLedger()
        for payload in session.sent:
            ledger.apply(wire.decode_event(payload))
        ledgers.append(ledger)
    return engine.canonical_state(), engine.state_hash(), ledgers


def _records(state_hash, members=(0, 1, 2)):
    return {m: {"member_id": m, "state_hash": state_hash} for m in members}


def test_checker_passes_a_consistent_run():
    state, digest, ledgers = _trading_run()
    result = demo.check_final_state(3, _records(digest), {m: state for m in range(3)}, ledgers)
    assert all(result["invariants"].values()), result["problems"]
    assert result["orders_checked"] == 4 and result["problems"] == []


def test_checker_fails_on_different_hashes():
    state, digest, ledgers = _trading_run()
    records = _records(digest)
    records[2]["state_hash"] = "0" * 32
    result = demo.check_final_state(3, records, {0: state, 1: state}, ledgers)
    assert result["invariants"]["identical_state_hashes"] is False
    assert any("differ" in p for p in result["problems"])


def test_checker_fails_when_a_member_did_not_report():
    state, digest, ledgers = _trading_run()
    result = demo.check_final_state(3, _records(digest, (0, 1)), {0: state, 1: state}, ledgers)
    assert result["invariants"]["all_members_reported"] is False
    assert result["invariants"]["identical_state_hashes"] is False


def test_checker_fails_on_an_acknowledged_order_the_engine_lost():
    state, digest, ledgers = _trading_run()
    ledgers[1].apply(wire.ExecutionReport(wire.ACCEPTED, 0, 1, 999, 9, 100, 5, 0, 6))
    result = demo.check_final_state(3, _records(digest), {m: state for m in range(3)}, ledgers)
    assert result["invariants"]["no_acknowledged_order_missing"] is False
    assert any("order 999" in p for p in result["problems"])


def test_checker_fails_when_the_client_saw_more_fills_than_the_engine_has():
    state, digest, ledgers = _trading_run()
    order_id = next(iter(ledgers[0].orders))
    ledgers[0].orders[order_id].filled_qty += 1
    result = demo.check_final_state(3, _records(digest), {m: state for m in range(3)}, ledgers)
    assert result["invariants"]["no_acknowledged_order_missing"] is False


def test_checker_fails_on_a_state_file_that_does_not_match_its_hash():
    state, digest, ledgers = _trading_run()
    _, other_digest, _ = _trading_run()
    assert other_digest == digest                     # determinism: same flow, same hash
    truncated = state[:-24] if len(state) > 100 else state
    damaged = demo.check_final_state(3, _records(digest), {0: truncated[:-1]}, ledgers)
    assert damaged["invariants"]["no_acknowledged_order_missing"] is False
    assert any("unreadable" in p for p in damaged["problems"])
    records = _records(digest)
    empty_state = RecordingMatchingEngine().canonical_state()
    result = demo.check_final_state(3, records, {m: empty_state for m in range(3)}, ledgers)
    assert result["invariants"]["no_acknowledged_order_missing"] is False
