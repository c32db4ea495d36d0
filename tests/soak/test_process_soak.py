"""Soak of a real 3-process cluster under random faults (aeronpy.testing.soak).

The soak itself is opt-in (``@pytest.mark.slow``: set ``AERONPY_LONG=1``); its length comes
from ``AERONPY_SOAK_SECONDS`` (default 120) and its seed from ``AERONPY_SOAK_SEED`` (default:
random, printed). A failure names the seed and the command that re-runs it::

    AERONPY_LONG=1 AERONPY_SOAK_SECONDS=120 AERONPY_SOAK_SEED=42 python -m pytest -s -p no:warnings tests/soak
    python -m aeronpy.testing.soak --seconds 120 --seed 42

``test_process_cluster_soak_with_slow_disks`` (same opt-in) is the soak with ``--slow-disks``
(``--file-sync data``; gcc needed).

The negative controls show that each end-of-run check can fail: the fast ones (in the default
run, no cluster) feed :func:`evaluate` a hand-made run and broken copies of it; the soak test
also breaks copies of its own real run's outcome and asserts they are rejected.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import random
import shutil
import subprocess
import sys
import time

import pytest

from aeronpy.testing.linearizability import CAS, NOT_REPORTED, READ, WRITE, Operation
from aeronpy.testing.soak import (COUNTER_SERVICE_ID, FINAL_READER, KV_SERVICE_ID, CounterOp,
                                  SoakOutcome, evaluate, run_soak, summary)
from aeronpy.testing.services import KeyValueService

SECONDS = float(os.environ.get("AERONPY_SOAK_SECONDS", "120"))


# ------------------------------------------------------------------ negative controls (fast)
def _good_outcome(increments: int = 50, indeterminate: int = 3) -> SoakOutcome:
    """A small, correct run: 50 acknowledged increments, 3 unanswered of which 1 applied."""
    ops = [CounterOp(i % 2, 1, i + 1, 1000 * i, 1000 * i + 500, [i + 1]) for i in range(increments)]
    ops += [CounterOp(0, 1, 1000 + i, 10**6 + i) for i in range(indeterminate)]
    final = increments + 1
    kv = [Operation(1, WRITE, ("a", "v1"), 0, 10),
          Operation(2, READ, ("a",), 20, 30, "v1"),
          Operation(1, CAS, ("a", "v1", "v2"), 40, 50, True),
          Operation(2, WRITE, ("b", "w1"), 45, math.inf),        # timed out; applied
          Operation(1, CAS, ("a", "v1", "v3"), 60, 70, False, "v2"),   # failed: "a" held "v2"
          Operation(FINAL_READER, READ, ("a",), 100, 110, "v2"),
          Operation(FINAL_READER, READ, ("b",), 120, 130, "w1")]
    data = {"a": "v2", "b": "w1"}
    records = {m: {COUNTER_SERVICE_ID: {"member_id": m, "service_id": 0, "commit_index": 99,
                                        "state_hash": f"{final}:{final}", "total": final, "applied": final},
                   KV_SERVICE_ID: {"member_id": m, "service_id": 1, "commit_index": 99,
                                   "state_hash": "h", "data": dict(data)}}
               for m in range(3)}
    return SoakOutcome(seed=1, seconds=1.0, counter_ops=ops, kv_history=kv, member_records=records,
                       final_exit_codes={0: 0, 1: 0, 2: 0}, member_errors={0: [], 1: [], 2: []},
                       log_errors={0: [], 1: [], 2: []})


def _set_total(outcome: SoakOutcome, member: int, total: int) -> None:
    record = outcome.member_records[member][COUNTER_SERVICE_ID]
    record.update(total=total, applied=total, state_hash=f"{total}:{total}")


def _broken(outcome: SoakOutcome, how: str) -> SoakOutcome:
    """A copy of ``outcome`` with one thing wrong, as a buggy cluster would produce."""
    o = copy.deepcopy(outcome)
    acked = [op for op in o.counter_ops if op.replies]
    if how == "count_lost":            # an acknowledged increment missing on every member
        for m in range(3):
            _set_total(o, m, len(acked) - 1)
    elif how == "count_applied_twice":  # more increments applied than could have been sent
        unanswered = sum(1 for op in o.counter_ops if not op.replies)
        for m in range(3):
            _set_total(o, m, len(acked) + unanswered + 1)
    elif how == "reply_twice":         # one correlation id answered twice
        acked[len(acked) // 2].replies.append(acked[len(acked) // 2].replies[0])
    elif how == "reply_repeated":      # two increments answered with the same total
        acked[-1].replies[0] = acked[0].replies[0]
    elif how == "members_diverge":     # one member's counter ends elsewhere
        record = o.member_records[2][COUNTER_SERVICE_ID]
        _set_total(o, 2, record["total"] - 1)
    elif how == "kv_diverge":
        record = o.member_records[1][KV_SERVICE_ID]
        record.update(state_hash="other", data={**record["data"], "zzz": "extra"})
    elif how == "stale_read":          # a read after an overwrite returns the old value
        end = max(op.complete_ns for op in o.kv_history if not op.indeterminate)
        key, old = next((op.key, op.args[1]) for op in o.kv_history
                        if op.op == WRITE and not op.indeterminate)
        o.kv_history += [Operation(99, WRITE, (key, "fresh"), end + 10, end + 20),
                         Operation(99, READ, (key,), end + 30, end + 40, old)]
    elif how == "cas_reports_stale_value":  # a failed cas reports a value overwritten before it began
        end = max(op.complete_ns for op in o.kv_history if not op.indeterminate)
        key = o.kv_history[0].key
        o.kv_history += [Operation(99, WRITE, (key, "fresh1"), end + 10, end + 20),
                         Operation(99, WRITE, (key, "fresh2"), end + 30, end + 40),
                         Operation(98, CAS, (key, "other", "x"), end + 50, end + 60, False, "fresh1")]
    elif how == "final_read_mismatch":  # the leader's final read disagrees with the members' data
        for op in list(o.kv_history):
            if op.client_id == FINAL_READER:
                o.kv_history.remove(op)
                o.kv_history.append(dataclasses.replace(op, result="never-written"))
                break
    elif how == "member_died":
        o.unexpected_exits.append("member 1 exited (exit code 4)")
    elif how == "bad_exit":
        o.final_exit_codes[0] = 4
    elif how == "errors_log":
        o.member_errors[2] = ["x1 RuntimeError: something broke"]
    else:
        raise ValueError(how)
    return o


BREAKAGES = {
    "count_lost": "exactly-once",
    "count_applied_twice": "exactly-once",
    "reply_twice": "exactly-once",
    "reply_repeated": "exactly-once",
    "members_diverge": "agreement",
    "kv_diverge": "agreement",
    "stale_read": "linearizability",
    "cas_reports_stale_value": "linearizability",
    "final_read_mismatch": "linearizability",
    "member_died": "member death",
    "bad_exit": "final shutdown",
    "errors_log": "errors.log",
}


def test_the_checker_passes_a_correct_run():
    assert evaluate(_good_outcome()) == []


@pytest.mark.parametrize("how", sorted(BREAKAGES))
def test_the_checker_rejects_a_broken_run(how):
    failures = evaluate(_broken(_good_outcome(), how))
    assert failures, f"{how}: the checker passed a broken run"
    assert any(f.startswith(BREAKAGES[how]) for f in failures), (how, failures)


# ------------------------------------------------- what the key-value client records (fast)
class _StaleCasService(KeyValueService):
    """A KeyValueService whose failed compare-and-set reports the value the key held before
    its last write (as a lagging replica answering would), while refusing correctly."""

    def __init__(self):
        super().__init__()
        self.previous: dict = {}

    def on_session_message(self, session, timestamp_ns, message):
        req = json.loads(bytes(message))
        key = str(req["key"])
        before = self.data.get(key)
        replies = []
        super().on_session_message(_Session(replies), timestamp_ns, message)
        reply = replies[0]
        if req["op"] == "cas" and not reply["ok"] and key in self.previous:
            reply["value"] = self.previous[key]
        if self.data.get(key) != before:
            self.previous[key] = before
        session.offer(json.dumps(reply).encode())


class _Session:
    def __init__(self, replies):
        self.replies = replies

    def offer(self, payload):
        self.replies.append(json.loads(payload))


class _InProcessKV:
    """Stands in for the soak's ClusterClient: requests go straight to a KeyValueService.
    Before some requests another writer (client 999, recorded too) writes the same key, so
    compare-and-sets fail; after ``ops`` requests the client thread is told to stop."""

    def __init__(self, service, recorder, kv_client, ops):
        self.service, self.recorder, self.kv_client, self.ops = service, recorder, kv_client, ops
        self.rng = random.Random(7)
        self.served = 0

    def request(self, payload, service_id, timeout_s):
        assert service_id == KV_SERVICE_ID
        self.served += 1
        if self.served >= self.ops:
            self.kv_client.stop_sending.set()
        key = json.loads(payload)["key"]
        if self.rng.random() < 0.4:
            value = f"other-{self.served}"
            token = self.recorder.invoke(999, WRITE, (key, value))
            self._call(json.dumps({"op": "write", "key": key, "value": value}).encode())
            self.recorder.complete(token, None)
        return self._call(payload)

    def _call(self, payload):
        replies = []
        self.service.on_session_message(_Session(replies), 0, payload)
        return json.dumps(replies[0]).encode()

    def close(self):
        pass


def _record_kv_client(monkeypatch, service, ops=400):
    """Run the soak's KVClient (its own thread body, here) against ``service``; the history."""
    from aeronpy.testing import soak
    from aeronpy.testing.linearizability import HistoryRecorder
    recorder = HistoryRecorder()
    kv = soak.KVClient(100, "unused", time.monotonic() + 60, recorder, random.Random(5))
    fake = _InProcessKV(service, recorder, kv, ops)
    monkeypatch.setattr(soak, "_connect", lambda endpoints, timeout_s=5.0: fake)
    monkeypatch.setattr(soak, "KV_RATE_PER_CLIENT", 1e9)          # no pacing
    kv.run()
    assert not kv.errors, kv.errors
    return recorder.history()


def test_the_soak_records_the_value_a_failed_cas_saw(monkeypatch):
    """The KeyValueService replies the key's value to a compare-and-set; the soak must record
    it with a failed one (it recorded a bare False, so the check could not use it)."""
    history = _record_kv_client(monkeypatch, KeyValueService())
    failed = [op for op in history if op.op == CAS and op.result is False]
    assert len(failed) >= 10, history
    assert all(op.current is not NOT_REPORTED for op in failed)
    assert evaluate(dataclasses.replace(_good_outcome(), kv_history=history)) == []


def test_the_soak_rejects_a_failed_cas_that_reports_a_stale_value(monkeypatch):
    """Negative control: a service whose failed compare-and-set reports an overwritten value
    must fail the soak's linearizability check (with the value dropped, it passed)."""
    history = _record_kv_client(monkeypatch, _StaleCasService())
    assert any(op.op == CAS and op.result is False for op in history)
    failures = evaluate(dataclasses.replace(_good_outcome(), kv_history=history))
    assert any(f.startswith("linearizability") and "not linearizable" in f for f in failures), failures


def test_a_soak_on_ipv6_says_so_in_its_rerun_command(monkeypatch):
    """--host ::1 soaks an IPv6 cluster; a failure's re-run command must carry it."""
    from aeronpy.testing import soak
    seen = {}

    def fake_run_soak(seconds, seed, **kw):
        seen.update(kw)
        return _good_outcome(), []
    monkeypatch.setattr(soak, "run_soak", fake_run_soak)
    assert soak.main(["--seconds", "1", "--seed", "3", "--host", "::1", "--quiet"]) == 0
    assert seen["host"] == "::1"
    assert soak.Soak(1, 3, host="::1").options() == " --host ::1"
    assert soak.Soak(1, 3).options() == ""

    class Built(Exception):
        pass

    def fake_cluster(**kw):
        seen["cluster"] = kw
        raise Built
    from aeronpy.testing import process_cluster
    monkeypatch.setattr(process_cluster, "ProcessCluster", fake_cluster)   # run() imports it
    run = soak.Soak(1, 3, verbose=False, host="::1")
    try:
        with pytest.raises(Built):
            run.run()
    finally:
        run.cleanup(False)
    assert seen["cluster"]["host"] == "::1"            # the cluster it starts is on IPv6


# ------------------------------------------------------------------ --slow-disks (fast)
def _capture_main(monkeypatch, argv):
    """soak.main(argv) with run_soak faked: (exit status, run_soak's keywords)."""
    from aeronpy.testing import soak
    seen = {}

    def fake_run_soak(seconds, seed, **kw):
        seen.update(kw)
        return _good_outcome(), []
    monkeypatch.setattr(soak, "run_soak", fake_run_soak)
    return soak.main(argv + ["--seconds", "1", "--seed", "3", "--quiet"]), seen


def test_slow_disks_option_needs_file_sync_data_or_full(monkeypatch, capsys):
    from aeronpy.testing import soak
    for sync in ("data", "full"):
        code, seen = _capture_main(monkeypatch, ["--slow-disks", "--file-sync", sync])
        assert code == 0 and seen["slow_disks"] is True and seen["file_sync"] == sync
        assert soak.Soak(1, 3, file_sync=sync, slow_disks=True).options() == f" --file-sync {sync} --slow-disks"
    code, seen = _capture_main(monkeypatch, ["--file-sync", "data"])
    assert code == 0 and seen["slow_disks"] is False
    for argv in (["--slow-disks"], ["--slow-disks", "--file-sync", "none"]):
        with pytest.raises(SystemExit) as exc:
            _capture_main(monkeypatch, argv)
        assert exc.value.code == 2
        assert "--slow-disks needs --file-sync data or full" in capsys.readouterr().err
    with pytest.raises(ValueError, match="file_sync 'data' or 'full'"):
        soak.Soak(1, 3, slow_disks=True)


def test_slow_disks_without_gcc_is_a_clear_error(monkeypatch, capsys):
    """gcc is needed only for --slow-disks: without it the soak says so (status 2) and starts
    no cluster."""
    from aeronpy.testing import process_cluster, slowdisk, soak
    monkeypatch.setattr(slowdisk.shutil, "which", lambda name: None)
    monkeypatch.setattr(process_cluster, "ProcessCluster", None)      # any use would fail
    assert soak.main(["--seconds", "1", "--seed", "3", "--quiet", "--file-sync", "data", "--slow-disks"]) == 2
    assert "gcc not found on PATH" in capsys.readouterr().err


def _draws(seed, slow_disks, n=300):
    from aeronpy.testing.soak import Soak
    run = Soak(1, seed, verbose=False, file_sync="data", slow_disks=slow_disks)
    return [run.draw_fault() for _ in range(n)]


def test_fault_draws_depend_on_the_seed_only():
    from aeronpy.testing.soak import FOLLOWER_SYNC_MS, LEADER_SYNC_MS, STALL_SYNC_MS, Soak
    assert _draws(11, True) == _draws(11, True)
    assert _draws(11, True) != _draws(12, True)
    kinds = {d.kind for d in _draws(11, True)}
    assert kinds == {k for k, _ in Soak.FAULTS + Soak.SLOW_DISK_FAULTS}
    # without --slow-disks a seed still draws what the soak always drew (its faults replay)
    rng = random.Random(11)
    kinds, weights = zip(*Soak.FAULTS)
    old = [(rng.uniform(0.3, 3.0), rng.choices(kinds, weights)[0], round(rng.uniform(0.2, 3.0), 2),
            round(rng.uniform(0.2, 1.5), 2), rng.random(), rng.random()) for _ in range(300)]
    assert [(d.gap_s, d.kind, d.delay, d.pause_s, d.pick, d.pick2) for d in _draws(11, False)] == old
    # the slowed syncs stay in the bounds the soak names
    stalls = 0
    for d in _draws(11, True):
        assert 1.0 <= d.window_s <= 4.0 and 0.25 <= d.kill_at <= 0.6
        lead, follower = d.slowness(leader=True), d.slowness(leader=False)
        if d.stall:
            stalls += 1
            assert lead.delay_us == STALL_SYNC_MS * 1000 and lead.jitter_us == 0
        else:
            assert 20_000 <= lead.delay_us <= lead.delay_us + lead.jitter_us <= LEADER_SYNC_MS * 1000
        assert 20_000 <= follower.delay_us <= follower.delay_us + follower.jitter_us <= FOLLOWER_SYNC_MS * 1000
    assert 0 < stalls < 300


class _FakeCluster:
    """Stands in for ProcessCluster in a slow-disk fault: members 0-2, member 1 leads."""
    members = 3

    def __init__(self, events):
        self.events = events

    def leader(self, timeout_s):
        return 1

    def kill(self, m, sig, wait_s):
        self.events.append(("kill", m))
        return -sig

    def start_member(self, m):
        self.events.append(("start", m))

    def data_dir(self, m):
        return "/nonexistent"


class _FakeShim:
    def __init__(self, events):
        self.events = events

    def set(self, m, slowness):
        self.events.append(("slow", m, slowness.describe()))

    def all_fast(self):
        self.events.append(("fast",))


@pytest.mark.parametrize("kind, pick, pick2, kill_leader, expected", [
    ("slow_leader", 0.0, 0.0, False, [("slow", 1, "every sync 2500 ms"), ("fast",)]),
    ("slow_followers", 0.9, 0.7, False, [("slow", 2, "every sync 20-600 ms"), ("fast",)]),
    ("slow_followers", 0.0, 0.2, False, [("slow", 0, "every sync 20-600 ms"),
                                         ("slow", 2, "every sync 20-600 ms"), ("fast",)]),
    ("slow_then_kill", 0.2, 0.0, False, [("slow", 1, "every sync 2500 ms"), ("kill", 1), ("start", 1), ("fast",)]),
    ("slow_then_kill", 0.8, 0.0, False, [("slow", 0, "every sync 20-600 ms"), ("kill", 0), ("start", 0), ("fast",)]),
    ("slow_then_kill", 0.8, 0.9, True, [("slow", 2, "every sync 20-600 ms"), ("kill", 1), ("start", 1), ("fast",)]),
])
def test_a_slow_disk_fault_slows_kills_and_restarts_then_makes_every_disk_fast(kind, pick, pick2, kill_leader,
                                                                               expected):
    from aeronpy.testing.soak import FaultDraw, Soak
    events = []
    run = Soak(1, 3, verbose=False, file_sync="data", slow_disks=True, overlap=True)   # overlap: no wait_up
    run.pc, run.shim = _FakeCluster(events), _FakeShim(events)
    draw = FaultDraw(0.0, kind, 0.05, 0.2, pick, pick2, window_s=0.2, sync_span=(0.0, 1.0), stall=True,
                     kill_at=0.5, kill_leader=kill_leader)
    started = time.monotonic()
    run.one_fault(draw)
    assert events == expected
    assert time.monotonic() - started >= 0.2            # the window lasts its time
    record = run.outcome.faults[-1]
    assert record["kind"] == kind and record["leader"] == 1 and record["window_s"] == 0.2
    assert ("killed" in record) == (kind == "slow_then_kill")


class _StatsShim:
    def __init__(self, slowed):
        self.slowed = slowed

    def total_stats(self, m):
        return {"calls": 100, "slowed": self.slowed} if self.slowed is not None else {}


@pytest.mark.parametrize("slowed", [None, 0, 7])
def test_the_summary_counts_slow_disk_faults_and_a_shim_that_slowed_nothing_fails_the_run(slowed):
    """Negative control of the set-up: slow-disk faults with no sync slowed (the members not
    under the shim) is a harness problem, so the run fails rather than passing untested."""
    from aeronpy.testing.soak import Soak
    run = Soak(1, 3, verbose=False, file_sync="data", slow_disks=True)
    run.pc, run.shim = _FakeCluster([]), _StatsShim(slowed)
    run.counter_runs = {(0, 11, 1): {"slow_log_syncs": 2, "leader_sync_stalls": 1, "sync_stalls": 1,
                                     "held_messages_dropped": 0},
                        (0, 12, 2): {"slow_log_syncs": 3, "leader_sync_stalls": 0, "sync_stalls": 2,
                                     "held_messages_dropped": 4}}
    run.outcome.faults = [{"kind": "slow_leader"}, {"kind": "pause"}, {"kind": "slow_then_kill"},
                          {"kind": "slow_leader"}]
    run.disk_stats()
    stats = run.outcome.stats
    assert stats["slow_disk_faults"] == {"slow_leader": 2, "slow_followers": 0, "slow_then_kill": 1}
    assert stats["sync_counters"][0] == {"slow_log_syncs": 5, "leader_sync_stalls": 1, "sync_stalls": 3,
                                         "held_messages_dropped": 4}
    assert stats["sync_counters"][2] == {"slow_log_syncs": 0, "leader_sync_stalls": 0, "sync_stalls": 0,
                                         "held_messages_dropped": 0}
    failures = evaluate(dataclasses.replace(_good_outcome(), harness_problems=run.outcome.harness_problems))
    if slowed:
        assert failures == [] and stats["shim_syncs_calls_slowed"][1] == [100, 7]
    else:
        assert any(f.startswith("harness: slow-disk faults ran but the shim slowed no") for f in failures), failures


@pytest.mark.skipif(shutil.which("gcc") is None or not sys.platform.startswith("linux"), reason="needs gcc, Linux")
def test_the_shim_keeps_statistics_per_start_and_sums_them(tmp_path):
    """A restarted member counts its syncs from zero: the soak sums the runs' statistics."""
    from aeronpy.testing.slowdisk import Slowness, SlowSyncShim
    shim = SlowSyncShim(str(tmp_path), 2, seed=1)
    shim.set(0, Slowness(1, 2))                           # every 2nd sync of member 0 sleeps 1 us
    script = ("import os, sys\nfd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)\n"
              "for _ in range(int(sys.argv[2])): os.fsync(fd)\n")
    for syncs in (4, 6):
        argv = shim.wrap(0, [sys.executable, "-c", script, str(tmp_path / "data"), str(syncs)])
        subprocess.run(argv, check=True, timeout=60)
        assert shim.stats(0)["calls"] == syncs
    total = shim.total_stats(0)
    assert (total["calls"], total["slowed"], total["injected_ns"]) == (10, 5, 5000)
    assert shim.stats(1) is None and shim.total_stats(1) == {}


# ------------------------------------------------------------------ the soak (opt-in)
def _soak_and_check(**kw):
    seed = int(os.environ.get("AERONPY_SOAK_SEED") or random.SystemRandom().randrange(1 << 31))
    print(f"\nsoak seed {seed} ({SECONDS:g} s) {kw}")
    outcome, failures = run_soak(SECONDS, seed, **kw)
    print("summary:", summary(outcome))
    assert not failures, "soak failed (seed %d):\n%s\nfaults: %s\nsummary: %s" % (
        seed, "\n".join(failures), outcome.faults, summary(outcome))
    # the run did real work under real faults
    stats = outcome.stats
    assert stats["counter_acked"] > 0 and stats["kv_completed"] > 0, summary(outcome)
    assert sum(stats["faults"].values()) > 0 or SECONDS < 5, summary(outcome)
    # negative control on the real run: each broken copy is rejected by the same checks
    for how, check in sorted(BREAKAGES.items()):
        rejected = evaluate(_broken(outcome, how))
        assert any(f.startswith(check) for f in rejected), \
            f"seed {seed}: the {how!r} copy of the real run passed the {check} check: {rejected}"
    return outcome


@pytest.mark.slow
@pytest.mark.process
def test_process_cluster_soak_under_random_faults():
    _soak_and_check(file_sync=os.environ.get("AERONPY_SOAK_FILE_SYNC", "none"))


@pytest.mark.slow
@pytest.mark.process
@pytest.mark.skipif(shutil.which("gcc") is None or not sys.platform.startswith("linux"), reason="needs gcc, Linux")
def test_process_cluster_soak_with_slow_disks():
    """The soak with --slow-disks (file_sync AERONPY_SOAK_FILE_SYNC if data or full, else data)."""
    sync = os.environ.get("AERONPY_SOAK_FILE_SYNC", "data")
    outcome = _soak_and_check(file_sync=sync if sync in ("data", "full") else "data", slow_disks=True)
    assert sum(outcome.stats["slow_disk_faults"].values()) > 0 or SECONDS < 20, summary(outcome)
