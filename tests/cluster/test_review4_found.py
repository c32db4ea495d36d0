"""Review 4 (fresh eyes on 2026-11-28's commits, from da9b573 on): the bugs it found, each
test failing before its fix. Small fakes drive each rule directly, as test_mutant_gaps_node.py
does."""
from __future__ import annotations

import logging
from types import SimpleNamespace


from aeronpy._logindex import LogIndex
from aeronpy.cluster import entries as E
from aeronpy.cluster import protocol as P
from aeronpy.cluster.snapshotting import Snapshotter

from .fakes import FakeWorld
from .test_mutant_gaps_node import TERM, _Jobs, _snapshotter

LOG = logging.getLogger("tests.review4_found")


def test_no_automatic_snapshot_ask_is_appended_behind_a_shutdown():
    w = FakeWorld()
    w.settle()
    module = w.modules[0]
    stop = module.propose_cluster_action(E.ACTION_SHUTDOWN)      # the tool's shutdown
    assert stop == len(w.cores[0].log.entries)
    # the log applied so far reaches snapshot_log_bytes
    log = LogIndex()
    for _ in range(module.applied_index):
        log.append(TERM, 16, bytes(10))
    s = Snapshotter(module=module, core=SimpleNamespace(log=log, term=w.cores[0].term), archive=None,
                    snapshot_log_bytes=log.size_between(1, module.applied_index + 1),
                    snapshots_to_keep=1, threaded=False, log=LOG, jobs=_Jobs())
    s.after_apply()
    # no member applies past the stop entry; a restart would (node_admin._refuse_snapshot)
    assert w.log_types(0)[stop:] == []


def test_a_new_leader_does_not_ask_again_before_applying_the_ask_in_its_log():
    probe = LogIndex()
    for _ in range(3):
        probe.append(TERM, 16, bytes(10))
    three = probe.size_between(1, 4)
    s, module, core, _archive, jobs = _snapshotter(entries=4, applied=3, log_bytes=three)
    # entry 5: the previous leader's automatic ask, replicated here, committed by this member's
    # term entry (6) once it leads; this member won the election and applies its backlog
    core.log.append(TERM, E.CLUSTER_ACTION, E.encode_cluster_action(
        1, E.ACTION_SNAPSHOT, E.SNAPSHOT_AUTOMATIC))
    core.log.append(TERM + 1, 16, bytes(10))
    module.is_leader = True
    module.leader_ready = False          # applied 3 of the 6 its log held when it won
    s.after_apply()
    assert module.proposed == []         # the ask at 5 is applied soon: every member takes it


def test_a_close_then_an_immediate_reconnect_from_one_port_keeps_the_transport_place():
    """A gateway that closes its session and connects again at once from its fixed port: the
    close is applied before the new session's open, so the node is told to let the endpoint
    go; the open that follows must tell it to keep the place (else it expired 0.5 s later,
    however the new client sent)."""
    told = []
    w = FakeWorld(on_session_closed=lambda e: told.append(("let go", e)),
                  on_session_opened=lambda e: told.append(("keep", e)))
    w.elect(0)
    w.settle()
    old = w.connect(0, endpoint="gw:9000", nonce=1, correlation_id=1)
    w.ingress(0, "gw:9000", P.SessionClose(old, w.term))      # ClusterClient.close() returns
    w.ingress(0, "gw:9000", P.SessionConnect(2, 2, "gw:9000", b""))   # reconnected at once
    w.settle()
    events = [e for e in w.take(0, P.SessionEvent, "gw:9000") if e.correlation_id == 2]
    assert events and events[-1].code == P.EVENT_OK
    new = events[-1].session_id
    assert old not in w.modules[0].sessions and new in w.modules[0].sessions
    assert told == [("keep", "gw:9000"), ("let go", "gw:9000"), ("keep", "gw:9000")]
