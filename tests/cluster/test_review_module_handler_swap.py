"""Review: a service that changes its own ``on_session_message`` (a state pattern: the
instance attribute replaced from inside a callback) is called the same way whichever path
applies the entries: apply_ready's compiled run looks the handler up per run, apply per entry,
and members batch their Readies differently, so a stale handler would diverge them."""
from types import SimpleNamespace

from aeronpy.cluster import entries as E
from aeronpy.cluster.module import ConsensusModule
from aeronpy.cluster.module_config import ModuleConfig
from aeronpy.service import ClusteredService, Role

from .fakes import FakeCore

EP = "c1:7000"


class Phased(ClusteredService):
    def __init__(self):
        self.seen = []

    def on_session_message(self, session, timestamp_ns, message):
        self.seen.append(("phase1", bytes(message)))
        if bytes(message) == b"switch":
            self.on_session_message = self.phase2      # from now on

    def phase2(self, session, timestamp_ns, message):
        self.seen.append(("phase2", bytes(message)))


def member():
    core = FakeCore(0)
    core.role, core.term, core.leader_id = Role.FOLLOWER, 1, 1
    module = ConsensusModule(0, core, [Phased()], ModuleConfig(members={0: "m0:9000"}), 0)
    module.start()
    log = [(1, E.SESSION_OPEN, E.encode_session_open(1_000, 1, 11, EP))]
    log += [(1, E.SESSION_MESSAGE, E.encode_session_message(1_000 + i, 1, i, i, 0, body))
            for i, body in enumerate((b"a", b"switch", b"b", b"c"), start=1)]
    for entry in log:
        core.log.append(*entry)
    core.commit_index = len(log)
    return module, len(log)


def test_a_handler_replaced_in_a_run_is_used_for_the_rest_of_the_run():
    fast, n = member()
    slow, _ = member()
    fast.apply_ready(SimpleNamespace(apply_lo=1, apply_hi=n + 1), 0)
    for index in range(1, n + 1):
        slow.apply(index, *slow.core.log.entries[index - 1])
    want = [("phase1", b"a"), ("phase1", b"switch"), ("phase2", b"b"), ("phase2", b"c")]
    assert slow.container.services[0].seen == want
    assert fast.container.services[0].seen == want
