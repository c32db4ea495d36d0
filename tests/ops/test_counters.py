"""Counters file: written by one process, read by another while it changes; liveness detection."""
import enum
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from aeronpy.cluster.config import NodeConfig
from aeronpy.cluster.counters import (COUNTERS_FILE, STANDARD_SLOTS, CountersReader,
                                      CountersUnavailableError, CountersWriter, SlotId)
from aeronpy.testing.process_cluster import child_env

REQUIRED = ["role", "leadership_term", "leader_id", "commit_index", "append_index",
            "election_state", "consensus_module_state", "snapshot_count", "sessions_open",
            "elections_held", "frames_in", "frames_out", "bytes_in", "bytes_out", "naks_sent",
            "naks_received", "retransmits", "errors", "max_duty_cycle_ns", "last_update_ns"]
MEMBERS = [{"id": 0, "host": "127.0.0.1", "consensus_port": 20100, "ingress_port": 20101}]


def writer(d, **kw):
    args = dict(member_id=0, cluster_id=7, members=MEMBERS)
    args.update(kw)
    return CountersWriter(d, **args)


def dead_pid():
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_required_slots_and_initial_values(tmp_path):
    with writer(tmp_path) as w, CountersReader(tmp_path) as r:
        values = r.read()
        for name in REQUIRED:
            assert name in values
        assert sum(1 for n in values if n.startswith("drops_")) >= 4
        assert values["role"] == -1 and values["leader_id"] == -1
        assert values["last_update_ns"] > 0
        assert r.names == list(w.names)
        h = r.header
        assert (h.pid, h.member_id, h.cluster_id) == (os.getpid(), 0, 7)
        assert r.members == MEMBERS


def test_fast_index_set_is_seen_by_reader(tmp_path):
    with writer(tmp_path) as w, CountersReader(tmp_path) as r:
        commit = int(SlotId.COMMIT_INDEX)
        assert w.index("commit_index") == commit
        w.values[commit] = 1234
        w.slot("errors").add(3)
        w.slot("role").set(2)
        assert r.value("commit_index") == 1234 and r.value("errors") == 3
        assert r.enum_name("role", r.value("role")) == "LEADER"
        with pytest.raises(KeyError, match="commit_index"):
            w.index("comit_index")


def test_observe_duty_cycle_keeps_the_maximum(tmp_path):
    with writer(tmp_path) as w:
        for ns in (500, 9000, 700):
            w.observe_duty_cycle(ns)
        assert w.values[SlotId.MAX_DUTY_CYCLE_NS] == 9000 and w.values[SlotId.DUTY_CYCLES] == 3


def test_extra_slots_and_enum_names(tmp_path):
    class Phase(enum.IntEnum):
        CANVASS = 1
        BALLOT = 2

    with writer(tmp_path, extra_slots=[("drops_window", 1, "Frames beyond the window")],
                enum_names={"election_state": Phase}) as w, CountersReader(tmp_path) as r:
        w.slot("drops_window").set(9)
        w.slot("election_state").set(2)
        assert r.value("drops_window") == 9
        assert r.helps[r.names.index("drops_window")] == "Frames beyond the window"
        assert r.enum_name("election_state", 2) == "BALLOT"
    with pytest.raises(ValueError, match="duplicate"):
        writer(tmp_path, extra_slots=[("errors", 1)])


def test_for_config_records_members_and_config(tmp_path):
    cfg = NodeConfig.from_dict({"cluster_id": 3, "members": MEMBERS, "data_dir": str(tmp_path),
                                "secret": "k"}, member_id=0)
    with CountersWriter.for_config(cfg), CountersReader(tmp_path) as r:
        assert r.header.cluster_id == 3 and r.members[0]["ingress_port"] == 20101
        assert r.metadata["config"]["secret"] == "<set>"


def test_status_running_stale_stopped(tmp_path):
    w = writer(tmp_path)
    r = CountersReader(tmp_path, stale_after_s=5.0)
    assert r.status().state == "running"
    last = r.value("last_update_ns")
    stale = r.status(now_ns=last + 6_000_000_000)
    assert stale.state == "stale" and "not updated for 6.0 s" in stale.detail
    w.close()
    assert r.status().state == "stopped" and r.header.writer_state == 2
    r.close()


def test_status_dead_when_pid_gone(tmp_path):
    pid = dead_pid()
    with writer(tmp_path, pid=pid), CountersReader(tmp_path) as r:
        status = r.status()
    assert status.state == "dead" and f"node not running: pid {pid} gone" in status.detail


def test_restarted_node_replaces_the_file(tmp_path):
    w1 = writer(tmp_path)
    w1.values[SlotId.COMMIT_INDEX] = 10
    r1 = CountersReader(tmp_path)
    w1.close()
    w2 = writer(tmp_path, member_id=0)
    assert r1.replaced()
    assert r1.value("commit_index") == 10   # the old mapping still reads the old file
    with CountersReader(tmp_path) as r2:
        assert r2.value("commit_index") == 0 and r2.status().state == "running"
    w2.close()
    r1.close()


def test_missing_and_foreign_files(tmp_path):
    with pytest.raises(CountersUnavailableError, match="no node has run"):
        CountersReader(tmp_path)
    (tmp_path / COUNTERS_FILE).write_bytes(b"NOTOURS!" + bytes(500))
    with pytest.raises(CountersUnavailableError, match="bad magic"):
        CountersReader(tmp_path)
    (tmp_path / COUNTERS_FILE).write_bytes(b"")
    with pytest.raises(CountersUnavailableError):
        CountersReader(tmp_path)


CHILD = textwrap.dedent("""
    import os, sys, time
    from aeronpy.cluster.counters import CountersWriter, SlotId
    data_dir, stop = sys.argv[1], sys.argv[2]
    w = CountersWriter(data_dir, member_id=2, cluster_id=9)
    values = w.values
    commit, pattern, term = int(SlotId.COMMIT_INDEX), int(SlotId.BYTES_IN), int(SlotId.LEADERSHIP_TERM)
    print("ready", flush=True)
    deadline = time.monotonic() + 20
    i = 0
    while i < 50_000_000 and time.monotonic() < deadline:
        for _ in range(5000):
            i += 1
            values[commit] = i
            # all four 16-bit lanes equal: a torn 8-byte read would show unequal lanes
            values[pattern] = (i & 0x7FFF) * 0x0001000100010001
        values[term] = i // 100000
        w.touch()
        if os.path.exists(stop):
            break
        if sys.argv[3] == "hang-after-start" and i > 100000:
            print("hanging", flush=True)
            time.sleep(60)
    w.close() if sys.argv[3] == "close" else None
    print("done", i, flush=True)
""")


def _start_child(tmp_path, mode):
    stop = tmp_path / "stop"
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path), str(stop), mode],
                             stdout=subprocess.PIPE, text=True, env=child_env(), cwd=tmp_path)
    assert child.stdout.readline().strip() == "ready"
    return child, stop


def test_reader_in_this_process_follows_a_writer_process(tmp_path):
    child, stop = _start_child(tmp_path, "close")
    try:
        r = CountersReader(tmp_path)
        assert r.header.pid == child.pid and r.header.member_id == 2
        seen = []
        deadline = time.monotonic() + 10
        while len(set(seen)) < 20 and time.monotonic() < deadline:
            values = r.read()
            lanes = [(values["bytes_in"] >> s) & 0xFFFF for s in (0, 16, 32, 48)]
            assert len(set(lanes)) == 1, f"torn read: {values['bytes_in']:#x}"
            seen.append(values["commit_index"])
            time.sleep(0.001)
        assert r.status().state == "running"
        assert seen == sorted(seen), "commit_index went backwards"
        assert len(set(seen)) >= 20, "commit_index did not move"
        stop.write_text("")
        out, _ = child.communicate(timeout=30)
        assert out.startswith("done")
        final = int(out.split()[1])
        assert r.value("commit_index") == final and r.status().state == "stopped"
        r.close()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        child.stdout.close()


def test_reader_in_another_process_sees_a_killed_writer_as_dead(tmp_path):
    child, stop = _start_child(tmp_path, "hang-after-start")
    try:
        assert child.stdout.readline().strip() == "hanging"
        check = textwrap.dedent("""
            import sys
            from aeronpy.cluster.counters import CountersReader
            r = CountersReader(sys.argv[1])
            s = r.status()
            print(s.state, r.value("commit_index") > 100000, r.header.pid)
        """)
        env = child_env()
        out = subprocess.run([sys.executable, "-c", check, str(tmp_path)], capture_output=True,
                             text=True, env=env, cwd=tmp_path, timeout=60).stdout.split()
        assert out == ["running", "True", str(child.pid)]
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
        out = subprocess.run([sys.executable, "-c", check, str(tmp_path)], capture_output=True,
                             text=True, env=env, cwd=tmp_path, timeout=60).stdout.split()
        assert out == ["dead", "True", str(child.pid)]
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        child.stdout.close()


def test_standard_slot_table_is_consistent():
    names = [s[0] for s in STANDARD_SLOTS]
    assert len(names) == len(set(names))
    assert [m.name.lower() for m in SlotId] == names


def test_status_failed_when_a_failed_node_stopped(tmp_path):
    """A node that failed (a service raised) and closed read as 'stopped cleanly', and one that
    failed while starting as 'dead': both now read 'failed', pointing at the error log."""
    from aeronpy.cluster.counters import ConsensusModuleState
    w = writer(tmp_path)
    w.values[SlotId.CONSENSUS_MODULE_STATE] = int(ConsensusModuleState.FAILED)
    r = CountersReader(tmp_path)
    assert r.status().state == "running"          # failed, but its process still runs
    w.close()
    status = r.status()
    assert status.state == "failed" and "aeronpy tool errors" in status.detail
    r.close()
    pid = dead_pid()
    with writer(tmp_path, pid=pid) as w2:
        w2.values[SlotId.CONSENSUS_MODULE_STATE] = int(ConsensusModuleState.FAILED)
        with CountersReader(tmp_path) as r2:
            assert r2.status().state == "failed"
