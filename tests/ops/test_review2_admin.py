"""Second operator-CLI review, admin edges: a snapshot asked for while the cluster stops is
refused; a suspend/resume that was not seen is not reported done because the member was
already in that state; an admin snapshot queued behind one that fails is taken, and the tool
reports its outcome, not the failure of the one ahead. Each test failed before the fix, but
the ones marked as guards."""
import errno
import threading
import time

import pytest

import aeronpy.cli as cli
from aeronpy.cluster import admin, admin_client, snapshotting
from aeronpy.cluster import protocol as P
from aeronpy.cluster.counters import ConsensusModuleState, CountersWriter, SlotId
from aeronpy.cluster.node_admin import ADMIN_EXTRA_SLOTS, ADMIN_SHUTDOWN, ENUM_NAMES
from aeronpy.cluster.node_snapshots import ADMIN_ERROR, ADMIN_OK, ADMIN_SNAPSHOT
from aeronpy.service import Role

from opsfiles import one_member_node


def drive(node, until, timeout_s: float, what: str) -> None:
    """Duty cycles of an invoker-mode node until ``until()``, bounded by time."""
    deadline = time.monotonic() + timeout_s
    while not until():
        assert time.monotonic() < deadline, f"not {what} within {timeout_s} s"
        if not node.do_work():
            time.sleep(0.0005)


def leading(node):
    drive(node, lambda: node.core.role == Role.LEADER and node.module.applied_index >= 1,
          10, "leading")


# -- (a) a snapshot while the cluster stops -------------------------------------------------------

def test_a_snapshot_is_refused_once_a_shutdown_was_proposed(tmp_path, monkeypatch):
    # it was proposed behind the shutdown entry, where no member applies it: the tool waited
    # and said "stopped before recording the snapshot" (status 1), and the entry stayed in
    # the log, to be applied as a snapshot at the next start
    node = one_member_node(tmp_path)
    try:
        leading(node)
        node_admin = node._admin
        answers = []
        monkeypatch.setattr(node_admin, "respond", lambda ref, cid, kind, code, payload, tag=b"":
                            answers.append((cid, code, bytes(payload))))
        monkeypatch.setattr(node.ingress, "peer_address", lambda ref: ("127.0.0.1", 40000))

        def request(correlation_id, kind):
            node_admin.on_admin_request(7, P.AdminRequest(correlation_id, kind, b""))
            return answers[-1]

        first = request(10, ADMIN_SNAPSHOT)
        assert first[1] == ADMIN_OK
        assert request(11, ADMIN_SHUTDOWN)[1] == ADMIN_OK
        refused = request(12, ADMIN_SNAPSHOT)
        assert refused[1] == ADMIN_ERROR and b"stopping" in refused[2], refused
        # a re-sent request answered before the shutdown keeps its answer
        assert request(10, ADMIN_SNAPSHOT) == first
    finally:
        node.close()


# -- (b) suspend / resume that are not seen -------------------------------------------------------

@pytest.fixture
def suspended_member(tmp_path, monkeypatch):
    """A member whose counters say it runs, SUSPENDED, commit index 5; its leader puts the
    next action at index 9."""
    writer = CountersWriter(tmp_path / "n0", member_id=0, cluster_id=7,
                            extra_slots=ADMIN_EXTRA_SLOTS, enum_names=ENUM_NAMES,
                            members=[{"id": 0, "host": "127.0.0.1", "consensus_port": 1,
                                      "ingress_port": 2}])
    writer.values[SlotId.CONSENSUS_MODULE_STATE] = ConsensusModuleState.SUSPENDED
    writer.values[SlotId.COMMIT_INDEX] = 5
    monkeypatch.setattr(admin_client, "request_through_member",
                        lambda *args: ("127.0.0.1:2", 9))
    yield str(tmp_path / "n0"), writer
    writer.close()


def test_a_suspend_not_seen_in_time_is_not_done_because_the_member_was_suspended(
        suspended_member, capsys):
    # "completed: yes", status 0, though the entry at index 9 never reached this member
    data_dir, _ = suspended_member
    result = admin.suspend(data_dir, timeout_s=0.3)
    assert result["completed"] is False and "index 9" in result["problem"], result
    assert "already suspended" in result["note"]
    assert cli.main(["tool", "suspend", "--data-dir", data_dir, "--timeout", "0.3"]) == 1
    out = capsys.readouterr().out
    assert "completed: no" in out and "already suspended" in out


def test_a_suspend_of_a_suspended_cluster_says_already(suspended_member, capsys):
    data_dir, writer = suspended_member
    writer.values[SlotId.COMMIT_INDEX] = 9                   # the entry reached this member
    result = admin.suspend(data_dir, timeout_s=2)
    assert result["completed"] is True and result["state"] == "SUSPENDED"
    assert result["note"].startswith("already suspended")
    assert cli.main(["tool", "suspend", "--data-dir", data_dir]) == 0
    assert "note: already suspended" in capsys.readouterr().out


def test_a_resume_not_seen_in_time_on_an_active_member_is_not_done(suspended_member):
    data_dir, writer = suspended_member
    writer.values[SlotId.CONSENSUS_MODULE_STATE] = ConsensusModuleState.ACTIVE
    result = admin.resume(data_dir, timeout_s=0.3)
    assert result["completed"] is False and "already active" in result["note"]


def test_a_suspend_that_takes_effect_has_no_note(suspended_member):
    # guard: the ordinary case
    data_dir, writer = suspended_member
    writer.values[SlotId.CONSENSUS_MODULE_STATE] = ConsensusModuleState.ACTIVE

    def later():
        time.sleep(0.2)
        writer.values[SlotId.COMMIT_INDEX] = 9
        writer.values[SlotId.CONSENSUS_MODULE_STATE] = ConsensusModuleState.SUSPENDED
    threading.Thread(target=later, daemon=True).start()
    result = admin.suspend(data_dir, timeout_s=5)
    assert result["completed"] is True and "note" not in result and "problem" not in result


# -- (c) an admin snapshot queued behind one that fails -------------------------------------------

class FailingWrites:
    """Snapshot file writes: the first waits for ``release`` and fails; later ones fail too
    when ``all_fail``, else write."""

    def __init__(self, all_fail: bool):
        self.real = snapshotting.write_snapshot_file
        self.release = threading.Event()
        self.calls = []
        self.all_fail = all_fail

    def __call__(self, archive, index, term, timestamp_ns, parts):
        self.calls.append(index)
        if len(self.calls) == 1:
            self.release.wait(20)
            raise OSError(errno.EIO, "injected write failure")
        if self.all_fail:
            raise OSError(errno.EIO, "injected write failure")
        return self.real(archive, index, term, timestamp_ns, parts)


def _snapshot_behind_a_failing_one(tmp_path, monkeypatch, all_fail: bool):
    node = one_member_node(tmp_path, snapshot_log_bytes=0)
    writes = FailingWrites(all_fail)
    monkeypatch.setattr(snapshotting, "write_snapshot_file", writes)
    outcome = {}
    try:
        leading(node)
        snapshotter = node.snapshots.snapshotter
        assert snapshotter.take(node.module.applied_index, "test: ahead of the admin one")
        tool = threading.Thread(target=lambda: outcome.update(
            result=admin.snapshot(str(tmp_path / "n0"), timeout_s=15),
            took=time.monotonic() - started), daemon=True)
        started = time.monotonic()
        tool.start()
        drive(node, lambda: snapshotter._queued is not None, 10, "queued behind the first")
        writes.release.set()
        drive(node, lambda: not tool.is_alive(), 20, "answered")
    finally:
        writes.release.set()
        node.close()
    return outcome, writes


def test_an_admin_snapshot_queued_behind_a_failed_one_is_taken(tmp_path, monkeypatch):
    # it was dropped with the one ahead of it, and the tool reported that one's failure
    outcome, writes = _snapshot_behind_a_failing_one(tmp_path, monkeypatch, all_fail=False)
    result = outcome["result"]
    assert len(writes.calls) == 2, writes.calls
    assert result["recorded"] is True, result
    assert result["snapshot"]["index"] >= result["requested_at_index"]


def test_when_the_queued_snapshot_fails_too_the_tool_says_so_at_once(tmp_path, monkeypatch):
    outcome, writes = _snapshot_behind_a_failing_one(tmp_path, monkeypatch, all_fail=True)
    result = outcome["result"]
    assert len(writes.calls) == 2, writes.calls
    assert result["recorded"] is False and "snapshot failed" in result["problem"], result
    assert outcome["took"] < 10, outcome


def test_a_shutdown_whose_final_snapshot_failed_is_reported_as_that(tmp_path, monkeypatch):
    """The member stopped at the shutdown's index without its final snapshot (it could not be
    written): the tool said it 'did not show the shutdown ... within 20 s', which reads as a
    timeout (an operator's disk-full trial)."""
    node = one_member_node(tmp_path)

    def no_room(*_args):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(snapshotting, "write_snapshot_file", no_room)
    outcome = {}
    try:
        leading(node)
        tool = threading.Thread(target=lambda: outcome.update(
            result=admin.shutdown(str(tmp_path / "n0"), timeout_s=15)), daemon=True)
        tool.start()
        drive(node, lambda: node.closed, 20, "stopped by the shutdown")
        tool.join(20)
    finally:
        node.close()
    result = outcome["result"]
    assert result["completed"] is False and result["stopped"] is True, result
    assert result["stopped_at_index"] == result["index"]
    assert "without its final snapshot" in result["problem"], result
    assert "did not show" not in result["problem"]
