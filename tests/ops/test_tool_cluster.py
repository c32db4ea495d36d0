"""``aeronpy tool`` against real 3-process clusters (issue 8), through the CLI with ``--json``.

Counters are read from this process (the nodes are other processes) while a client loads the
cluster; every tool command runs against the live cluster; suspend/resume, shutdown and
abort are checked on every member; and the tool is run on the data dirs the nodes left. Every
wait is bounded by a deadline.
"""
from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import threading
import time

import pytest

import aeronpy
from aeronpy.cluster.admin_client import _recording_entries
from aeronpy.archive.recording_log import SnapshotEntry
from aeronpy.cluster.counters import ConsensusModuleState, CountersReader
from aeronpy.cluster.snapshotting import decode_snapshot
from aeronpy.errors import ClusterTimeoutError, NotConnectedError
from aeronpy.testing.process_cluster import ProcessCluster
from aeronpy.testing.waits import wait_until as _wait_until

pytestmark = pytest.mark.process

COUNTER_SERVICE = "aeronpy.testing.services:CounterService"
ADD = struct.Struct("<q")
LEADER = 2


@pytest.fixture
def make_cluster(tmp_path):
    clusters = []

    def make(**kwargs) -> ProcessCluster:
        hash_dir = tmp_path / f"hashes{len(clusters)}"
        hash_dir.mkdir()
        pc = ProcessCluster(services=(COUNTER_SERVICE,), env={"AERONPY_HASH_DIR": str(hash_dir)},
                            base_dir=str(tmp_path / f"cluster{len(clusters)}"), **kwargs)
        pc.hash_dir = str(hash_dir)
        clusters.append(pc)
        return pc.start()

    yield make
    for pc in clusters:
        for member in range(pc.members):
            if pc.alive(member):
                print(f"--- node {member} log (still running at teardown) ---")
                print(pc.tail_log(member, 30))
        pc.close()


def tool(pc: ProcessCluster, command: str, member: int, *extra: str, data_dir: str = None) -> tuple:
    """Run ``aeronpy tool COMMAND --json`` as an operator would: (exit code, parsed JSON, stderr)."""
    out = subprocess.run(
        [sys.executable, "-m", "aeronpy", "tool", command, "--data-dir",
         data_dir or pc.data_dir(member), "--json", *extra],
        capture_output=True, text=True, timeout=60, env=pc.env, cwd=pc.base_dir)
    data = None
    if out.stdout.strip():
        try:
            data = json.loads(out.stdout)
        except ValueError:
            data = out.stdout
    return out.returncode, data, out.stderr


def counters(pc: ProcessCluster, member: int) -> dict:
    return pc.read_counters(member) or {}


def add(client, amount: int = 1, timeout_s: float = 5.0) -> int:
    return ADD.unpack(client.request(ADD.pack(amount), timeout_s=timeout_s))[0]


def wait_until(predicate, timeout_s: float, interval_s: float = 0.02) -> bool:
    return _wait_until(predicate, timeout_s, interval_s)


def roles(pc: ProcessCluster) -> str:
    return "; ".join(f"{i}: alive={pc.alive(i)} {counters(pc, i)}" for i in range(pc.members))


def exited_cleanly(pc: ProcessCluster, timeout_s: float) -> dict:
    """member -> exit code, waiting (bounded) for every member process to exit."""
    deadline = time.monotonic() + timeout_s
    codes = {}
    for member, proc in pc.procs.items():
        try:
            codes[member] = proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            codes[member] = None
    return codes


def hash_records(pc: ProcessCluster) -> dict:
    """member -> the state the CounterService recorded at on_terminate."""
    out = {}
    for name in os.listdir(pc.hash_dir):
        with open(os.path.join(pc.hash_dir, name)) as f:
            record = json.load(f)
        out[record["member_id"]] = record
    return out


# ------------------------------------------------------------------------------------------------
def test_counters_move_under_load_and_after_a_leader_kill(make_cluster):
    """Counters read from this process while a client loads the cluster: commit indexes rise
    on every member; after kill -9 of the leader a survivor's role flips to LEADER, the
    elections counters count up, and the tool on the dead node's data dir says it is dead."""
    pc = make_cluster()
    leader = pc.leader(timeout_s=20)
    assert leader is not None, roles(pc)
    client = aeronpy.ClusterClient.connect(pc.ingress_endpoints, timeout_s=10)
    stop = threading.Event()
    done = {"adds": 0, "errors": 0}

    def load() -> None:
        while not stop.is_set() and done["adds"] < 50_000:
            try:
                add(client, timeout_s=2.0)
                done["adds"] += 1
            except (ClusterTimeoutError, NotConnectedError):
                done["errors"] += 1

    loader = threading.Thread(target=load, daemon=True)
    loader.start()
    try:
        samples = {m: [] for m in range(3)}
        for _ in range(10):
            for m in range(3):
                samples[m].append(counters(pc, m)["commit_index"])
            time.sleep(0.05)
        for m, seen in samples.items():
            assert seen == sorted(seen) and seen[-1] > seen[0], (m, seen)
        before = {m: counters(pc, m) for m in range(3)}
        assert before[leader]["role"] == LEADER and all(before[m]["elections_held"] >= 1 for m in range(3))
        code, data, err = tool(pc, "describe", leader)
        assert code == 0, err
        assert data["counter_names"]["election_state"] == "LEADER_READY"
        assert data["counter_names"]["consensus_module_state"] == "ACTIVE"

        pc.kill(leader)
        new_leader = pc.leader(timeout_s=10, exclude={leader}, min_term=before[leader]["leadership_term"] + 1)
        assert new_leader is not None, roles(pc)
        survivors = [m for m in range(3) if m != leader]
        commit_at_kill = max(counters(pc, m)["commit_index"] for m in survivors)
        assert wait_until(lambda: counters(pc, new_leader)["commit_index"] > commit_at_kill + 20, 10), roles(pc)
        after = {m: counters(pc, m) for m in survivors}
        assert before[new_leader]["role"] != LEADER and after[new_leader]["role"] == LEADER
        for m in survivors:
            assert after[m]["elections_held"] > before[m]["elections_held"], (m, before[m], after[m])
            assert after[m]["leadership_term"] > before[m]["leadership_term"]
        assert after[new_leader]["election_transitions"] > before[new_leader]["election_transitions"]
    finally:
        stop.set()
        loader.join(10)
        client.close()
    assert done["adds"] > 50

    # the dead leader's data dir: its last values, and a clear word that it is not running
    code, data, err = tool(pc, "describe", leader)
    assert code == 0, err
    assert data["live"] is False and data["status"]["state"] == "dead"
    assert data["counters"]["role"] == LEADER            # what it last published
    code, data, _ = tool(pc, "is-leader", leader)
    assert code == 1 and data["is_leader"] is False and data["status"] == "dead"
    code, data, _ = tool(pc, "pid", leader)
    assert code == 1 and data["pid"] is None and "not running" in data["detail"]
    code, data, err = tool(pc, "suspend", leader)
    assert code == 2 and data is None and "is not running" in err

    # the last survivor without a quorum: it canvasses, and names its old leader only as the
    # last one it knew (before, describe said "leader member N" as if nothing had happened)
    from aeronpy.cluster import tool as tool_module
    (lone,) = [m for m in survivors if m != new_leader]
    text = tool_module.describe(pc.data_dir(lone)).text
    assert f"leader member {new_leader}\n" in text and "last known" not in text   # the control
    pc.kill(new_leader)
    assert wait_until(lambda: counters(pc, lone).get("election_state") in (1, 2, 3), 10), roles(pc)
    text = tool_module.describe(pc.data_dir(lone)).text
    assert f"leader member {new_leader} last known (this member is in an election" in text, text
    assert "(this node, leader)" not in text and "last known leader" in text


def test_every_tool_command_on_a_live_cluster_then_shutdown(make_cluster):
    pc = make_cluster()
    leader = pc.leader(timeout_s=20)
    assert leader is not None, roles(pc)
    follower = (leader + 1) % 3
    client = aeronpy.ClusterClient.connect(pc.ingress_endpoints, timeout_s=10)
    try:
        for _ in range(20):
            add(client)
        # nothing polls this client while the tool commands below run (a dozen interpreter
        # starts: over session_timeout_ms on a loaded machine, and an idle session is closed
        # by design), so it goes now and the suspend section opens its own
        client.close()

        # -- read-only commands ------------------------------------------------------------
        # Under load an election may have moved leadership since the start: wait until every
        # member's counters name one leader in one term, and check against that.
        def settled():
            c = [pc.read_counters(i) for i in range(3)]
            if any(x is None for x in c):
                return None
            leaders = {x["leader_id"] for x in c}
            terms = {x["leadership_term"] for x in c}
            return leaders.pop() if len(leaders) == 1 and len(terms) == 1 and -1 not in leaders else None
        assert pc.wait_for(lambda: settled() is not None, 20.0), roles(pc)
        leader = settled()
        follower = (leader + 1) % 3
        code, data, err = tool(pc, "describe", follower)
        assert code == 0, err
        assert data["live"] and data["member_id"] == follower and len(data["members"]) == 3
        assert data["counter_names"]["role"] == "FOLLOWER"
        assert data["counter_names"]["election_state"] == "FOLLOWER_READY"
        assert data["counters"]["leader_id"] == leader and data["counters"]["commit_index"] >= 20
        code, data, err = tool(pc, "list-members", follower)
        assert code == 0, err
        assert [m["id"] for m in data["members"]] == [0, 1, 2] and data["leader_id"] == leader
        assert [m["leader"] for m in data["members"]] == [m == leader for m in range(3)]
        code, data, _ = tool(pc, "is-leader", leader)
        assert code == 0 and data["is_leader"] is True
        code, data, _ = tool(pc, "is-leader", follower)
        assert code == 1 and data["is_leader"] is False and data["leader_id"] == leader
        code, data, _ = tool(pc, "pid", follower)
        assert code == 0 and data["pid"] == pc.procs[follower].pid
        code, data, err = tool(pc, "errors", follower)
        assert code == 0 and data == [], (data, err)
        code, data, err = tool(pc, "metrics", follower)
        assert code == 0 and data["live"] and data["counters"]["commit_index"] >= 20, err
        text = subprocess.run([sys.executable, "-m", "aeronpy", "tool", "metrics", "--data-dir",
                               pc.data_dir(follower)], capture_output=True, text=True, timeout=60,
                              env=pc.env, cwd=pc.base_dir).stdout
        assert "aeronpy_commit_index" in text and "aeronpy_elections_held" in text

        # -- snapshot, then the archive views ----------------------------------------------
        code, snap, err = tool(pc, "snapshot", follower)
        assert code == 0 and snap["recorded"], (snap, err)
        code, log, err = tool(pc, "recording-log", follower)
        assert code == 0, err
        assert [e["index"] for e in log["entries"] if e["type"] == "SNAPSHOT"] == [snap["requested_at_index"]]
        code, plan, err = tool(pc, "recovery-plan", follower)
        assert code == 0, err
        assert plan["snapshot"]["index"] == snap["requested_at_index"]
        assert wait_until(lambda: counters(pc, follower)["snapshot_count"] == 1, 5)

        # -- suspend: the control first (a request is answered), then nothing commits ------
        client = aeronpy.ClusterClient.connect(pc.ingress_endpoints, timeout_s=10)
        total = add(client, timeout_s=2.0)
        code, data, err = tool(pc, "suspend", follower)
        assert code == 0 and data["completed"] and data["state"] == "SUSPENDED", (data, err)
        assert wait_until(lambda: all(counters(pc, m)["consensus_module_state"]
                                      == ConsensusModuleState.SUSPENDED for m in range(3)), 5), roles(pc)
        commits = [counters(pc, m)["commit_index"] for m in range(3)]
        with pytest.raises(ClusterTimeoutError):
            add(client, timeout_s=0.8)                    # held, not refused: applied after resume
        assert [counters(pc, m)["commit_index"] for m in range(3)] == commits
        code, data, err = tool(pc, "describe", leader)
        assert data["counter_names"]["consensus_module_state"] == "SUSPENDED", err

        code, data, err = tool(pc, "resume", follower)
        assert code == 0 and data["completed"] and data["state"] == "ACTIVE", (data, err)
        assert add(client, timeout_s=5.0) == total + 2    # the held message, then this one
        assert counters(pc, leader)["commit_index"] > max(commits)
        for _ in range(10):
            add(client)
    finally:
        client.close()

    # -- shutdown: every member takes the same final snapshot and exits 0 -------------------
    code, data, err = tool(pc, "shutdown", follower)
    assert code == 0 and data["completed"] and data["stopped"], (data, err)
    index = data["index"]
    assert data["stopped_at_index"] == index and data["snapshot"]["index"] == index
    codes = exited_cleanly(pc, 15)
    assert codes == {0: 0, 1: 0, 2: 0}, (codes, roles(pc))
    streams = {}
    for m in range(3):
        snaps = [e for e in _recording_entries(pc.data_dir(m)) if isinstance(e, SnapshotEntry)]
        assert snaps[-1].index == index, (m, snaps)
        with open(os.path.join(pc.data_dir(m), snaps[-1].name), "rb") as f:
            contents = decode_snapshot(f.read())
        streams[m] = [bytes(s) for s in contents.service_streams]
        with CountersReader(pc.data_dir(m)) as reader:
            assert reader.status().state == "stopped"
            assert reader.value("consensus_module_state") == ConsensusModuleState.CLOSED
            assert reader.value("stopped_at_index") == index
    assert streams[0] == streams[1] == streams[2]
    hashes = hash_records(pc)
    assert sorted(hashes) == [0, 1, 2] and len({h["state_hash"] for h in hashes.values()}) == 1, hashes
    assert hashes[0]["total"] == total + 12

    # -- the tool on the stopped nodes' data dirs ---------------------------------------------
    code, data, err = tool(pc, "describe", follower)
    assert code == 0 and data["live"] is False and data["status"]["state"] == "stopped", err
    assert data["counter_names"]["consensus_module_state"] == "CLOSED"
    code, data, _ = tool(pc, "is-leader", leader)
    assert code == 1 and data["status"] == "stopped"
    code, plan, err = tool(pc, "recovery-plan", leader)
    assert code == 0 and plan["snapshot"]["index"] == index, (plan, err)
    assert plan["entries_to_replay"] == 0
    code, data, err = tool(pc, "resume", follower)
    assert code == 2 and "is not running" in err and "stopped cleanly" in err


def test_abort_stops_every_member_at_one_index_without_a_snapshot(make_cluster):
    pc = make_cluster()
    leader = pc.leader(timeout_s=20)
    assert leader is not None, roles(pc)
    with aeronpy.ClusterClient.connect(pc.ingress_endpoints, timeout_s=10) as client:
        for _ in range(30):
            add(client)
    code, data, err = tool(pc, "abort", leader)
    assert code == 0 and data["completed"] and data["stopped"], (data, err)
    assert "snapshot" not in data
    codes = exited_cleanly(pc, 15)
    assert codes == {0: 0, 1: 0, 2: 0}, (codes, roles(pc))
    for m in range(3):
        assert [e for e in _recording_entries(pc.data_dir(m)) if isinstance(e, SnapshotEntry)] == []
        with CountersReader(pc.data_dir(m)) as reader:
            assert reader.value("stopped_at_index") == data["index"]
            assert reader.value("snapshot_count") == 0
    hashes = hash_records(pc)            # on_terminate ran on every member, at the same state
    assert sorted(hashes) == [0, 1, 2] and len({h["state_hash"] for h in hashes.values()}) == 1, hashes
    assert hashes[leader]["total"] == 30
