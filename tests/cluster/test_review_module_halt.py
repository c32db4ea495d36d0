"""Review: once the driver halts applying (a cluster shutdown or abort entry), no later entry
reaches the services, whichever path applies it (apply_ready's compiled run or apply)."""
from types import SimpleNamespace

import pytest

from aeronpy.cluster import entries as E
from aeronpy.cluster.module import ConsensusModule
from aeronpy.cluster.module_config import ModuleConfig
from aeronpy.service import Role

from .fakes import FakeCore, RecordingService

EP = "c1:7000"


def halting_member(action):
    core = FakeCore(0)
    core.role, core.term, core.leader_id = Role.FOLLOWER, 1, 1
    module = ConsensusModule(0, core, [RecordingService()],
                             ModuleConfig(members={0: "m0:9000", 1: "m1:9000"}), 0)
    module.start()
    # as the node's admin does: the shutdown / abort entry halts applying
    module.cluster_action_listeners.append(
        lambda index, a, arg: module.halt_applying() if a == action else None)
    log = [(1, E.SESSION_OPEN, E.encode_session_open(1_000, 1, 11, EP)),
           (1, E.SESSION_MESSAGE, E.encode_session_message(1_001, 1, 1, 1, 0, b"before")),
           (1, E.CLUSTER_ACTION, E.encode_cluster_action(1_002, action, 0)),
           (1, E.SESSION_MESSAGE, E.encode_session_message(1_003, 1, 2, 2, 0, b"after")),
           (1, E.SESSION_MESSAGE, E.encode_session_message(1_004, 1, 3, 3, 0, b"after2"))]
    for entry in log:
        core.log.append(*entry)
    core.commit_index = len(log)
    return module, len(log)


@pytest.mark.parametrize("action", [E.ACTION_SHUTDOWN, E.ACTION_ABORT])
def test_apply_ready_applies_nothing_after_a_halt_like_apply(action):
    fast, n = halting_member(action)
    slow, _ = halting_member(action)
    fast.apply_ready(SimpleNamespace(apply_lo=1, apply_hi=n + 1), 5_000)
    for index in range(1, n + 1):
        slow.apply(index, *slow.core.log.entries[index - 1])
    assert slow.container.services[0].messages == [b"before"]
    assert fast.container.services[0].messages == slow.container.services[0].messages
    assert fast.applied_index == slow.applied_index == 3
    assert fast.sessions.get(1).last_applied_seq == slow.sessions.get(1).last_applied_seq == 1
    assert fast.snapshot_state() == slow.snapshot_state()


@pytest.mark.parametrize("action", [E.ACTION_SHUTDOWN])
def test_a_later_apply_ready_after_a_halt_applies_nothing(action):
    fast, n = halting_member(action)
    fast.apply_ready(SimpleNamespace(apply_lo=1, apply_hi=4), 5_000)
    assert fast.halted
    fast.apply_ready(SimpleNamespace(apply_lo=4, apply_hi=n + 1), 5_000)
    assert fast.container.services[0].messages == [b"before"]
    assert fast.applied_index == 3
