"""The consensus module's side of suspend / resume / shutdown / abort, on fake cores (fast)."""
from aeronpy.cluster import entries as E
from aeronpy.cluster import protocol as P
from aeronpy.cluster import snapshot as S
from aeronpy.cluster.module import ConsensusModule
from aeronpy.cluster.module_config import ModuleConfig

from tests.cluster.fakes import FakeCore, FakeWorld, RecordingService

C1 = "c1:7000"


def three() -> FakeWorld:
    w = FakeWorld(members=3)
    w.elect(0)
    w.settle()
    return w


def send(w, sid, seq, payload=b"x"):
    w.ingress(0, C1, P.SessionMessage(sid, seq, 1000 + seq, 0, payload))


def test_suspend_holds_client_messages_on_every_member_until_resume():
    w = three()
    sid = w.connect(0)
    send(w, sid, 1, b"before")
    w.settle()
    assert w.modules[0].propose_cluster_action(E.ACTION_SUSPEND)
    send(w, sid, 2, b"proposed-before-suspend-applied")   # held already: the leader proposed it
    w.settle()
    assert all(m.suspended for m in w.modules)
    length = len(w.cores[0].log.entries)
    send(w, sid, 2, b"during")
    w.ingress(0, "c2:7000", P.SessionConnect(5, 12, "c2:7000"))
    w.tick(10_000_000)
    w.settle()
    assert len(w.cores[0].log.entries) == length               # nothing appended
    assert w.modules[0].counters["proposals_held"] >= 2
    assert [s[0].messages for s in map(w.services, range(3))] == [[b"before"]] * 3
    w.take(0)
    assert w.modules[0].propose_cluster_action(E.ACTION_RESUME)  # admin actions still go in
    w.settle()
    assert not any(m.suspended for m in w.modules)
    nudges = w.take(0, P.NewLeaderEvent, C1)
    assert [(e.session_id, e.leader_member_id) for e in nudges] == [(sid, 0)]   # re-send now
    send(w, sid, 2, b"during")
    w.settle()
    assert [s[0].messages for s in map(w.services, range(3))] == [[b"before", b"during"]] * 3


def test_shutdown_proposal_holds_everything_behind_it_even_after_a_resume():
    w = three()
    sid = w.connect(0)
    assert w.modules[0].propose_cluster_action(E.ACTION_SUSPEND)
    assert w.modules[0].propose_cluster_action(E.ACTION_SHUTDOWN)
    assert w.modules[0].propose_cluster_action(E.ACTION_RESUME)
    w.settle()
    send(w, sid, 1)
    w.settle()
    assert w.log_types(0)[-3:] == [E.CLUSTER_ACTION] * 3
    assert w.modules[0].counters["proposals_held"] == 1


def test_halt_applying_stops_at_the_entry_on_which_it_was_called():
    w = three()
    sid = w.connect(0)
    stop_at = {}

    def on_action(index, action, argument):
        if action == E.ACTION_ABORT:
            stop_at[index] = True
            w.modules[1].halt_applying()
    w.modules[1].cluster_action_listeners.append(on_action)
    core = w.cores[0]
    core.log.append(core.term, E.CLUSTER_ACTION, E.encode_cluster_action(0, E.ACTION_ABORT, 0))
    send(w, sid, 1, b"after-abort")                          # already in the log behind it
    w.settle()
    [index] = stop_at
    assert w.modules[1].applied_index == index and w.modules[1].halted
    assert w.services(1)[0].messages == [] and w.services(0)[0].messages == [b"after-abort"]


def test_suspended_survives_a_snapshot_and_version_1_snapshots_still_load():
    w = three()
    w.connect(0)
    assert w.modules[0].propose_cluster_action(E.ACTION_SUSPEND)
    w.settle()
    blob = w.modules[1].snapshot_state()
    fresh = ConsensusModule(1, FakeCore(1), [RecordingService()], ModuleConfig())
    fresh.restore_state(blob)
    assert fresh.suspended and fresh.snapshot_state() == blob
    w.modules[1].suspended = False
    v1 = bytearray(w.modules[1].snapshot_state()[:-1])        # version 1: no flags byte
    v1[4:6] = (1).to_bytes(2, "little")
    fresh.restore_state(bytes(v1))
    assert not fresh.suspended and len(fresh.sessions) == 1
    bad = bytearray(blob)
    bad[-1] = 0x80
    try:
        fresh.restore_state(bytes(bad))
    except S.SnapshotFormatError as exc:
        assert "flags" in str(exc)
    else:
        raise AssertionError("unknown flags must be refused")
