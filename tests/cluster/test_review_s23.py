"""Review s23 of this stop's commits (ebb53e7 state digests, 4503671 transfer-leadership,
73074c0 follower_lag_max, b0a5684 split_endpoint). Each test failed on the code before its fix.

- A digest kept for this member's snapshot still being written was never released when that
  snapshot was overtaken by one installed from the leader (Snapshotter.poll drops it without
  calling a listener): PENDING_MAX such drops filled the table for good, and every later
  digest for a snapshot in flight was counted unchecked, never compared (a real divergence
  unreported). Two digests for one snapshot (two leaders recorded it) kept only the last.
- NodeAdmin: an admin snapshot finishing while a tool-asked leadership transfer was still
  being announced cleared ``pending``; the node runs ``do_work`` only while it is set, so the
  successor was never announced to this member's clients. A transfer the core gave up on
  left ``handing_over`` set; a request started after the core stepped down in the same cycle
  raised out of do_work (the member failed).
- follower_lag_max read a new leader's whole log for each follower it had not heard from yet.
- split_endpoint refused one endpoint with blanks around it as 'joined by the wrong separator'.
"""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from aeronpy.cluster.container import StateDivergenceError
from aeronpy.cluster.node_admin import NodeAdmin
from aeronpy.cluster.state_digests import PENDING_MAX
from aeronpy.service import Role
from aeronpy.cluster.counters import ConsensusModuleState
from tests.cluster.test_state_digests import _apply_digest, _digests


def _overtaken(snapshotter):
    """Snapshotter.poll for a snapshot recorded below the log base (one installed meanwhile):
    the file is deleted, no listener runs."""
    snapshotter._inflight = None


def test_a_digest_for_an_overtaken_snapshot_does_not_block_later_comparisons():
    module, snapshotter, reports = _digests()
    for i in range(PENDING_MAX + 2):
        snapshotter.writing(10 + i)
        _apply_digest(module, 1000 + i, 10 + i, 0x1111)
        _overtaken(snapshotter)
    snapshotter.writing(500)
    _apply_digest(module, 2000, 500, 0x2222)
    snapshotter.recorded(500, 0x3333)
    assert module.counters["state_digests_checked"] == 1, module.counters
    assert module.counters["state_divergences"] == 1 and len(reports) == 1
    assert isinstance(reports[0], StateDivergenceError)
    # the overtaken ones are accounted for, as unchecked
    assert module.counters["state_digests_unchecked"] == PENDING_MAX + 2
    digests = module.state_digest_listeners[0].__self__
    assert len(digests._pending) == 0


def test_two_digests_for_one_snapshot_in_flight_are_both_compared():
    module, snapshotter, reports = _digests()
    snapshotter.writing(40)
    _apply_digest(module, 41, 40, 0x2222)      # one leader's, then another's (same snapshot)
    _apply_digest(module, 45, 40, 0x1111)
    snapshotter.recorded(40, 0x1111)
    assert module.counters["state_digests_checked"] == 2, module.counters
    assert module.counters["state_divergences"] == 1 and len(reports) == 1


# ---- NodeAdmin: pending while a transfer is announced ----------------------------------

class _Snapshotter:
    in_progress = False


def _admin_announcing():
    """A NodeAdmin (its do_work state only) whose leader has started a tool-asked transfer
    (still handing over) and whose admin snapshot is in phase SNAPSHOT."""
    told = []
    admin = NodeAdmin.__new__(NodeAdmin)
    admin.core = SimpleNamespace(role=Role.LEADER, leader_id=0,
                                 leader_state=SimpleNamespace(transfer_target=1))
    admin.node = SimpleNamespace(member_id=0, _tell_clients_the_new_leader=lambda: told.append(1))
    admin.snapshotter = _Snapshotter()
    admin._transfer = None
    admin._announce_until_ns = 10_000
    admin.phase = ConsensusModuleState.SNAPSHOT
    admin.stop_action = 0
    admin.pending = True
    return admin, told


def _drive(admin, now_ns):
    """As ClusterNode._run_cycle: do_work only while pending."""
    if admin.pending:
        admin.do_work(now_ns)


def test_an_admin_snapshot_ending_during_a_transfer_announcement_keeps_it_pending():
    admin, told = _admin_announcing()
    _drive(admin, 100)                    # the admin snapshot is recorded: phase ends
    assert admin.phase == 0
    assert admin.pending, "the transfer's announcement is still to come"
    admin.core = SimpleNamespace(role=Role.FOLLOWER, leader_id=1, leader_state=None)
    _drive(admin, 200)                    # the successor leads: our clients are told
    assert told == [1]
    assert not admin.pending and admin._announce_until_ns == 0


def test_control_without_a_snapshot_the_announcement_is_made():
    admin, told = _admin_announcing()
    admin.phase = 0
    _drive(admin, 100)
    admin.core = SimpleNamespace(role=Role.FOLLOWER, leader_id=1, leader_state=None)
    _drive(admin, 200)
    assert told == [1] and not admin.pending


# ---- NodeAdmin: a transfer started after the core stepped down ----------------------------

def test_a_transfer_started_after_the_core_stepped_down_is_redirected_not_a_crash():
    """The request was admitted while leading; before do_work starts it, the core steps down in
    the same cycle (core.tick: check_quorum; consensus.poll: a higher term), which drops
    ``leader_state`` at once, while the module's role follows only when that Ready is
    processed (after do_work). The default target was read from ``leader_state``: an
    AttributeError out of the duty cycle fails the member."""
    answers = []
    admin = NodeAdmin.__new__(NodeAdmin)
    admin._ok, admin._not_leader, admin._error = 0, 1, 2
    admin.module = SimpleNamespace(is_leader=True, _proposals_held=0,
                                   config=SimpleNamespace(members={0: "h:1", 1: "h:2", 2: "h:3"}))
    admin.core = SimpleNamespace(role=Role.FOLLOWER, leader_id=None, leader_state=None,
                                 term=4, config=SimpleNamespace(voters={0, 1, 2}))
    admin.node = SimpleNamespace(member_id=0)
    admin.stop_action = 0
    admin.phase = 0
    admin._announce_until_ns = 0
    admin.respond = lambda *args: answers.append(args)
    admin._transfer = (7, 2001, 6, b"", -1)
    admin.pending = True
    admin.do_work(100)
    assert [a[3] for a in answers] == [admin._not_leader], answers
    assert not admin.pending and admin._transfer is None


# ---- follower_lag_max just after an election -------------------------------------------------

def _new_leader(last_index: int, members=(1, 2)):
    from aeronpy.core.progress import Progress
    # as LeaderReplication.__init__: every follower's match is 0, next is the leader's tail + 1
    progress = {m: Progress(m, last_index + 1, 0, 4) for m in members}
    return SimpleNamespace(leader_state=SimpleNamespace(progress=progress),
                           log=SimpleNamespace(last_index=last_index)), progress


def test_a_new_leader_does_not_report_its_whole_log_as_follower_lag():
    """Elected over a 1,000,000-entry log, a leader knows no follower's match until each
    answers its first append: the gauge read 1,000,000 for that moment after every election
    (an alert on it fired at each failover), and for a follower down since the election
    forever, whatever it really missed."""
    from aeronpy.cluster.node import follower_lag_max
    core, progress = _new_leader(1_000_000)
    assert follower_lag_max(core) == 0
    core.log.last_index += 250                 # the follower that never answers: at least this
    assert follower_lag_max(core) == 250


def test_control_known_matches_and_a_probe_answered_low_count_in_full():
    from aeronpy.cluster.node import follower_lag_max
    core, progress = _new_leader(1_000)
    progress[1].on_ack(990, 0)
    progress[1].become_replicate(0)
    assert follower_lag_max(core) == 10
    progress[2].become_probe(1)                 # rejected: an empty member, hint 0
    assert follower_lag_max(core) == 1_000


# ---- split_endpoint (b0a5684) ---------------------------------------------------------------

def test_an_endpoint_with_blanks_around_it_is_not_taken_for_two_joined_wrongly():
    """'host:port\\n' (read from a file) was accepted before b0a5684 (int() strips the port);
    since, it was refused with 'separate endpoints with commas', advice for another mistake."""
    from aeronpy.endpoints import split_endpoint
    assert split_endpoint("localhost:9000\n") == ("localhost", 9000)
    assert split_endpoint(" [::1]:9000 ") == ("::1", 9000)
    for joined in ("a:1;b:2", "a:1 b:2", " a:1 b:2 "):          # control: still said so
        with pytest.raises(ValueError, match="separate endpoints with commas"):
            split_endpoint(joined)


def test_a_transfer_that_ends_with_this_leader_still_leading_is_no_longer_a_hand_over():
    """The successor did not take up the transfer (the core gave up after an election
    timeout): ``handing_over`` stayed set, so the next real loss of leadership, maybe hours
    later, was logged 'handed over' at INFO instead of 'lost' at WARNING."""
    admin, told = _admin_announcing()
    admin.phase = 0
    admin.handing_over = True
    admin.core = SimpleNamespace(role=Role.LEADER, leader_id=0,
                                 leader_state=SimpleNamespace(transfer_target=None))
    _drive(admin, 100)
    assert admin._announce_until_ns == 0 and told == []
    assert admin.handing_over is False
