"""Gaps found by mutation testing (round 3, /work/notes/trials/mutants3): each test here failed
with one mutant of the node's snapshot, transfer, ack-hold or backup code applied (the diff
beside its id there), and passes on the real code. Small fakes stand in for the node, so each
rule is driven directly; the ack-hold tests use the FakeWorld harness of the earlier reviews."""
from __future__ import annotations

import errno
import io
import logging
from concurrent.futures import Future
from types import SimpleNamespace

import pytest

from aeronpy._logindex import LogIndex
from aeronpy.archive import Archive
from aeronpy.cluster import backup as B
from aeronpy.cluster import entries as E
from aeronpy.cluster import protocol as P
from aeronpy.cluster.container import service_set_tail
from aeronpy.cluster.node_snapshots import BACKUP_QUERY
from aeronpy.cluster.snapshotting import (SnapshotFileError, Snapshotter, encode_snapshot,
                                          load_recovered_snapshot, snapshot_parts,
                                          write_snapshot_file)
from aeronpy.service import ClusteredService

from .test_egress_drop_holds_acks import C1, acks, apply_committed, drain, msg
from .test_review5_session_window import caught_up_leader

TERM = 2
LOG = logging.getLogger("tests.mutant_gaps_node")


# ------------------------------------------------------------------ snapshotting fakes
class _Container:
    def __init__(self, services):
        self.services = services

    def __len__(self) -> int:
        return len(self.services)


class _ServiceA(ClusteredService):
    service_name = "a"


class _ServiceB(ClusteredService):
    service_name = "b"


class _Module:
    def __init__(self, applied_index: int = 0, services=None):
        self.applied_index = applied_index
        self.cluster_time_ns = 0
        self.container = _Container(services or [_ServiceA()])
        self.restored = []
        self.is_leader = False
        self.leader_ready = True                # read only while is_leader
        self.proposed = []                      # (action, argument) of the leader's proposals

    def propose_cluster_action(self, action: int, argument: int = 0) -> int:
        self.proposed.append((action, argument))
        return 3 + len(self.proposed)           # the log index it would be appended at

    def snapshot_state(self) -> bytes:
        return b"module"

    def take_service_snapshots(self, buffers) -> None:
        for b in buffers:
            b.write(b"service")

    def restore_state(self, state) -> None:
        self.restored.append(bytes(state))


class _Core:
    def __init__(self, entries: int):
        self.term = TERM
        self.log = LogIndex()
        for _ in range(entries):
            self.log.append(TERM, 16, bytes(10))
        self.applied_index = entries
        self.commit_index = entries
        self.compacted = []

    def compact(self, index: int, term: int) -> None:
        self.compacted.append(index)


class _Archive:
    def __init__(self):
        self.removed = []

    def purge_below(self, index: int) -> int:
        return 0

    def remove_file(self, path: str) -> None:
        self.removed.append(path)


class _Jobs:
    """Holds each job's Future for the test to finish (the background write, by hand)."""

    def __init__(self):
        self.jobs = []

    def submit(self, fn, *args) -> Future:
        future = Future()
        self.jobs.append((args, future))
        return future

    def close(self, timeout_s=None) -> bool:
        return True


def _info(index: int):
    return SimpleNamespace(index=index, term=TERM, size=100, path=f"snap-{index}", checksum=0)


def _snapshotter(entries=10, applied=None, log_bytes=0, keep=1):
    module, core, archive, jobs = _Module(applied if applied is not None else entries), \
        _Core(entries), _Archive(), _Jobs()
    s = Snapshotter(module=module, core=core, archive=archive, snapshot_log_bytes=log_bytes,
                    snapshots_to_keep=keep, threaded=False, log=LOG, jobs=jobs)
    return s, module, core, archive, jobs


def test_the_automatic_snapshot_is_taken_once_the_log_reaches_snapshot_log_bytes():
    # (mutant P03: taken only once the log passed the setting, not when it reached it.)
    # A leader asks for it through the log; it asks once, until its ask is applied.
    probe = _Core(3).log
    three = probe.size_between(1, 4)
    s, module, core, _archive, jobs = _snapshotter(entries=3, applied=2, log_bytes=three)
    module.is_leader = True
    s.after_apply()
    assert module.proposed == []               # the control: two entries are less
    module.applied_index = 3
    s.after_apply()
    s.after_apply()
    assert module.proposed == [(E.ACTION_SNAPSHOT, E.SNAPSHOT_AUTOMATIC)]
    assert jobs.jobs == []                     # taken when the ask is applied, at its index
    core.log.append(TERM, 16, bytes(10))
    module.applied_index = 4
    s.on_cluster_action(4, E.ACTION_SNAPSHOT, E.SNAPSHOT_AUTOMATIC)
    assert [args[1] for args, _f in jobs.jobs] == [4]   # write_snapshot_file(archive, index, ...)


def test_a_follower_takes_an_automatic_snapshot_of_its_own_at_twice_the_setting():
    # Its leader asks at the setting; a leader whose setting is off or higher never does.
    probe = _Core(6).log
    three = probe.size_between(1, 4)
    assert probe.size_between(1, 7) == 2 * three
    s, module, core, _archive, jobs = _snapshotter(entries=6, applied=5, log_bytes=three)
    s.after_apply()
    assert jobs.jobs == [] and module.proposed == []     # the control: past once, not twice
    module.applied_index = 6
    s.after_apply()
    assert [args[1] for args, _f in jobs.jobs] == [6] and module.proposed == []


def test_an_admin_snapshot_asked_while_one_is_written_is_taken_after_it():
    # (mutant P05: the request queued behind the snapshot in flight was forgotten.) The admin
    # request's entry is applied at 7 while the automatic snapshot at 5 is still being written:
    # once that one is recorded, one is taken at the applied index.
    s, module, _core, _archive, jobs = _snapshotter(entries=10, applied=5)
    assert s.take(5, "log passed snapshot_log_bytes")
    module.applied_index = 7
    s.on_cluster_action(7, E.ACTION_SNAPSHOT, 0)
    assert len(jobs.jobs) == 1                 # one write at a time
    jobs.jobs[0][1].set_result(_info(5))
    assert s.poll() == 1
    assert [args[1] for args, _f in jobs.jobs] == [5, 7]


def test_a_snapshot_recorded_after_a_newer_one_never_pushes_the_newer_one_out():
    # (mutant P08: retention kept snapshots in the order they were recorded.) A received
    # snapshot finished after the member recorded a newer one of its own: with one kept, the
    # older is deleted, never the newest.
    s, _module, _core, archive, _jobs = _snapshotter(entries=12, keep=1)
    s.keep(_info(12))
    s._compact()
    s.keep(_info(11))                           # as NodeSnapshots.keep_without_installing does
    s._compact()
    assert archive.removed == ["snap-11"]
    assert [k.index for k in s.kept] == [12] and s.last_snapshot_index == 12


def test_a_snapshot_write_that_fails_aborts_its_temporary_file():
    # (mutant P10: the writer not aborted.) A disk-full write left its temporary file and its
    # open handle behind, once per failed snapshot.
    class Writer:
        aborted = False

        def write(self, part):
            raise OSError(errno.ENOSPC, "no space left on device")

        def abort(self):
            Writer.aborted = True

    archive = SimpleNamespace(begin_snapshot=lambda index, term: Writer())
    parts = snapshot_parts(5, TERM, 0, b"module", [b"service"])
    with pytest.raises(OSError):
        write_snapshot_file(archive, 5, TERM, 0, parts)
    assert Writer.aborted


def _recovered_from(services_that_took_it):
    data = b"".join(bytes(p) for p in encode_snapshot(
        5, TERM, 0, b"module", [b"service"], service_set_tail(services_that_took_it)))
    info = SimpleNamespace(index=5, term=TERM, size=len(data), path="snap-5")
    archive = SimpleNamespace(open_snapshot=lambda _info: io.BytesIO(data))
    return archive, SimpleNamespace(snapshot=info, skipped_snapshots=())


def test_a_member_hosting_other_services_refuses_its_recovered_snapshot():
    # (mutant P11: the services not compared at recovery.) Each service's stream would have
    # gone to another service.
    archive, recovered = _recovered_from([_ServiceA()])
    module = _Module(services=[_ServiceB()])
    with pytest.raises(SnapshotFileError, match="services"):
        load_recovered_snapshot(module, archive, recovered, LOG)
    assert module.restored == []
    # the control: the services that took it load it
    module = _Module(services=[_ServiceA()])
    files = load_recovered_snapshot(module, archive, recovered, LOG)
    assert module.restored == [b"module"] and [f.read() for f in files] == [b"service"]


# ------------------------------------------------------------------ the ack hold
def test_a_session_window_at_an_unread_answer_keeps_the_hold_on_it():
    # (mutant K05: the window floor taken at the window start itself.) A new leader answered
    # 1 before it was ready; the client still holds 1 (its window starts there), so the ack
    # must stay below 1 until a re-send of 1 is answered here: released, its reply is lost.
    w, sid, module = caught_up_leader(queue_max=16)
    drain(module)                                   # the catch-up reply and NEW_LEADER event
    module.on_ingress(C1, P.SessionWindow(sid, w.term, 1), w.now_ns)
    assert max(acks(drain(module)) or [0]) == 0
    # the control: a window starting at 2 says 1 was released: the hold ends
    module.on_ingress(C1, P.SessionWindow(sid, w.term, 2), w.now_ns)
    assert acks(drain(module)) == [2]


def test_an_ack_at_the_new_leaders_base_ends_the_hold_for_late_duplicates():
    # (mutant K10: the hold ended only past the base.) Once an ack reached the base, the client
    # has released everything up to it; a late duplicate of 1 whose answer a full queue drops
    # must not hold the acks below 1 again, for the client never re-sends it.
    w, sid, module = caught_up_leader(queue_max=2)
    drain(module)
    module.on_ingress(C1, P.SessionWindow(sid, w.term, 2), w.now_ns)
    assert acks(drain(module)) == [2]               # at the base (2)
    module.egress.put(C1, P.SessionAck(sid, w.term, 2))    # the client's queue fills up
    module.egress.put(C1, P.SessionAck(sid, w.term, 2))
    module.on_ingress(C1, msg(sid, 1, b"r1"), w.now_ns)    # a late duplicate: answer dropped
    assert not module._reply.dropped_replies
    drain(module)
    module.on_ingress(C1, msg(sid, 3, b"s3"), w.now_ns)    # the next message is acked
    w.replicate()
    apply_committed(w, 1)
    assert acks(drain(module)) == [3]


# ------------------------------------------------------------------ backup, member side
def _hooks(entries: int, commit: int, base: int = 0):
    core = _Core(entries)
    if base:
        core.log.drop_prefix(base, TERM)
    core.commit_index = commit
    kept = [_info(base)] if base else []
    return SimpleNamespace(core=core, snapshotter=SimpleNamespace(kept=kept),
                           archive=SimpleNamespace(fs=None))


def _query(hooks, from_index: int) -> tuple:
    code, payload = B.serve_backup_request(hooks, BACKUP_QUERY,
                                           B._QUERY.pack(from_index, B.MAX_ENTRY_BYTES))
    return code, B._QUERY_ANSWER.unpack_from(payload)


def test_a_backup_is_served_committed_entries_only():
    # (mutant B02: entries up to the member's last index served.) The backup's position is
    # "every entry the cluster committed up to it": an uncommitted one may yet be cut.
    code, (commit, _si, _st, _ss, _base, first, count) = _query(_hooks(10, commit=6), 1)
    assert code == B.ADMIN_OK and commit == 6 and (first, count) == (1, 6)


def test_a_backup_asking_from_the_members_snapshot_index_gets_the_snapshot_not_an_error():
    # (mutant B01: a pull from the compacted base index answered from the log.) The log holds
    # nothing at its base: packing from there raised IndexError out of the member's duty cycle.
    hooks = _hooks(10, commit=10, base=5)
    code, (commit, snap_index, _st, _ss, base, first, count) = _query(hooks, 5)
    assert code == B.ADMIN_OK and (snap_index, base) == (5, 5) and count == 0
    # the control: from the first entry after it, entries
    code, (_c, _si, _st, _ss, _b, first, count) = _query(hooks, 6)
    assert (first, count) == (6, 5)


# ------------------------------------------------------------------ backup, puller side
class _EntriesMember:
    """Answers BACKUP_QUERY with entries of term 3 from ``first`` (whatever was asked)."""

    def __init__(self, first: int, count: int = 2, term: int = 3):
        self.log = LogIndex()
        for _ in range(first + count - 1):
            self.log.append(term, 16, bytes(10))
        self.first, self.count = first, count

    def request(self, kind: int, payload: bytes):
        assert kind == BACKUP_QUERY
        blob, count = self.log.pack(self.first, self.first + self.count, B.MAX_ENTRY_BYTES)
        commit = self.first + self.count - 1
        return B._QUERY_ANSWER.pack(commit, 0, 0, 0, 0, self.first, count) + bytes(blob)


def _backup(tmp_path, member):
    backup = B.ClusterBackup(["127.0.0.1:9"], str(tmp_path / "backup"), request_timeout_s=0.05)
    backup._request = member.request
    return backup


def test_the_backup_appends_only_entries_that_follow_its_position(tmp_path):
    # (mutant B04: entries appended wherever they were from.) Entries 5 and 6 given to a backup
    # at position 0 would have been stored as 1 and 2.
    backup = _backup(tmp_path, _EntriesMember(first=5))
    try:
        assert backup.do_work() == 0
        assert backup.position == 0 and backup.log.last_index == 0
    finally:
        backup.close()
    backup = _backup(tmp_path, _EntriesMember(first=1))     # the control
    try:
        assert backup.do_work() == 2 and backup.position == 2
    finally:
        backup.close()


def test_the_backup_saves_the_term_of_the_entries_it_pulls(tmp_path):
    # (mutant B05: node.state not raised with pulled entries.) A member restored from it
    # would hold entries of term 3 beside a saved term 0: refused at start (its vote lost).
    backup = _backup(tmp_path, _EntriesMember(first=1, term=3))
    try:
        assert backup.do_work() == 2
    finally:
        backup.close()
    arc = Archive.open(str(tmp_path / "backup"))
    try:
        assert arc.recover(require_node_state=True).hard_state.term == 3
    finally:
        arc.close()


# ------------------------------------------------------------------ install-snapshot, member side
def test_a_chunk_from_a_deposed_leader_is_answered_with_the_newer_term():
    # (mutant S01: a stale InstallSnapshot dropped unanswered.) The old leader keeps sending
    # chunks until its give-up timeout unless the answer tells it the term moved on.
    from aeronpy.cluster.node_snapshots import NodeSnapshots
    from aeronpy.core.messages import InstallSnapshot, InstallSnapshotResponse
    from aeronpy.service import Role
    sent = []
    consensus = SimpleNamespace(send=lambda peer, data: sent.append((peer, data)) or 1)
    node = SimpleNamespace(consensus=consensus, _encode=lambda m: m)
    core = SimpleNamespace(term=5, role=Role.FOLLOWER, counters_add=lambda _name: None,
                           step=lambda *_a: None)
    snaps = NodeSnapshots.__new__(NodeSnapshots)        # the transfer hooks only
    snaps.node, snaps.core, snaps.senders = node, core, {}
    chunk = InstallSnapshot(4, 100, 3, 0, 1000, False, b"x" * 10)
    snaps.on_transfer_message(2, chunk, 0)
    assert sent == [(2, InstallSnapshotResponse(5, 100, 0, False))]
    # the control: a stale response (not a chunk) is dropped unanswered
    snaps.on_transfer_message(2, InstallSnapshotResponse(4, 100, 0, True), 0)
    assert len(sent) == 1


def _transfer_hooks(kept=()):
    """NodeSnapshots with fakes for what a leader's transfer bookkeeping touches."""
    from aeronpy.cluster.node_snapshots import NodeSnapshots
    from aeronpy.service import Role
    reports = []
    snaps = NodeSnapshots.__new__(NodeSnapshots)
    snaps.core = SimpleNamespace(role=Role.LEADER, term=5,
                                 report_snapshot=lambda member, ok: reports.append((member, ok)))
    snaps.log = LOG
    snaps.senders, snaps._retry_at, snaps._deferred = {}, {}, {}
    snaps.snapshotter = SimpleNamespace(kept=list(kept), _inflight=None, poll=lambda: 0)
    snaps.receiver = SimpleNamespace(_committing=None, poll=lambda: None)
    return snaps, reports


def test_a_transfer_that_just_failed_is_asked_again_only_after_the_back_off():
    # (mutants S03, S04: the back-off ignored, or never set after a snapshot this node no
    # longer holds.) The core asks again as soon as it hears of the failure: without the
    # back-off every duty cycle started (and failed) a transfer.
    from aeronpy.cluster.node_snapshots import RETRY_AFTER_NS
    snaps, reports = _transfer_hooks()
    ms = 1_000_000
    snaps.on_snapshot_requests([(2, 100, TERM)], 0)
    assert reports == [(2, False)]                 # not held: failed, once
    snaps.on_snapshot_requests([(2, 100, TERM)], 1 * ms)
    assert reports == [(2, False)] and snaps._deferred == {2: (100, TERM)}
    snaps.do_work(RETRY_AFTER_NS - 1)
    assert reports == [(2, False)]
    snaps.do_work(RETRY_AFTER_NS)                  # the control: tried again after it
    assert reports == [(2, False), (2, False)] and snaps._deferred == {}


def test_installing_a_snapshot_from_the_leader_drops_the_older_kept_ones(monkeypatch):
    # (mutant S05: older kept snapshots stayed.) The archive keeps no log below the installed
    # snapshot, so an older one is no fallback: kept, it could become the compaction point.
    import aeronpy.cluster.node_snapshots as NS
    monkeypatch.setattr(NS, "install_snapshot", lambda *_args: None)
    s, _module, _core, archive, _jobs = _snapshotter(entries=30, keep=2)
    s.keep(_info(10))
    snaps = NS.NodeSnapshots.__new__(NS.NodeSnapshots)
    snaps.core, snaps.archive, snaps.module, snaps.log, snaps.snapshotter = \
        s.core, archive, s.module, LOG, s
    snaps.install(_info(20))
    assert [k.index for k in s.kept] == [20] and archive.removed == ["snap-10"]


def test_a_failed_backup_request_asks_the_next_member_next(tmp_path):
    # (mutant B10: the backup kept asking the member that did not answer.)
    asked = []
    transport = SimpleNamespace(send=lambda endpoint, message: asked.append(endpoint),
                                poll=lambda on_message: 0, close=lambda: None)
    backup = B.ClusterBackup(["127.0.0.1:9", "127.0.0.1:10", "127.0.0.1:11"],
                             str(tmp_path / "backup"), request_timeout_s=0.01)
    backup._transport.close()
    backup._transport = transport
    try:
        for _ in range(4):
            assert backup.do_work() == 0
        assert asked == ["127.0.0.1:9", "127.0.0.1:10", "127.0.0.1:11", "127.0.0.1:9"]
        assert backup.failures == 4 and "no answer" in backup.last_error
    finally:
        backup.close()


def test_a_transfer_of_an_earlier_term_is_dropped_not_continued():
    # (mutant S08: a sender of an earlier leadership term kept sending.) A member that led
    # again in a later term dropped the old transfer unreported: the core asks afresh.
    snaps, reports = _transfer_hooks()
    calls = []
    old = SimpleNamespace(term=3, done=None, do_work=lambda now: calls.append("work") or 1,
                          close=lambda: calls.append("close"))
    snaps.senders = {2: old}
    snaps.do_work(0)
    assert calls == ["close"] and snaps.senders == {} and reports == []


def _snapshot_sender(data: bytes, chunk_bytes: int):
    """An unthreaded SnapshotSender of ``data`` (snapshot 100 of TERM) from member 5 to member
    2; ``sent`` gathers the offset of every chunk it sends."""
    from aeronpy.cluster.snapshot_transfer import SnapshotSender
    fs = SimpleNamespace(open_file=lambda path: path,
                         pread=lambda handle, size, offset: data[offset:offset + size],
                         close=lambda handle: None)
    info = SimpleNamespace(index=100, term=TERM, size=len(data), path="snap-100", checksum=None)
    sent = []
    sender = SnapshotSender(2, 5, info, fs, lambda member, m: sent.append(m.offset) or 1, 0,
                            threaded=False, chunk_bytes=chunk_bytes)
    return sender, sent


def test_a_snapshot_transfer_without_progress_gives_up():
    # (mutants X02: no give-up; X03: no resend after the ack timeout.) A follower that stopped
    # answering kept the leader resending the unacknowledged chunks every ack timeout, for
    # ever, and the core never heard; and a lost chunk must be sent again.
    from aeronpy.cluster.snapshot_transfer import ACK_TIMEOUT_NS, GIVE_UP_NS
    sender, sent = _snapshot_sender(bytes(range(256)) * 4, chunk_bytes=256)
    now = 0
    while now <= GIVE_UP_NS and sender.done is None:
        sender.do_work(now)
        now += ACK_TIMEOUT_NS // 2
    assert sender.done is None                       # resending until the give-up time
    sender.do_work(GIVE_UP_NS + 1)
    assert sender.done is False and len(sent) > 4    # the chunks were resent meanwhile
    sender.close()


def test_the_largest_and_smallest_64_bit_timer_ids_are_accepted():
    # (mutant C02: the bound checked with < at the top.) Ids are kept as signed 64-bit
    # integers: both ends fit, and fire with their id.
    from .fakes import FakeWorld
    from .test_module_timers import T0, TimerService, command, timer_events
    w = FakeWorld(services=lambda: [TimerService()])
    sid = w.connect()
    command(w, sid, 1, b"s %d %d" % (2 ** 63 - 1, T0 + 5))
    command(w, sid, 2, b"s %d %d" % (-(2 ** 63), T0 + 5))
    assert w.services(0)[0].results == [True, True]
    w.tick(10)
    w.settle()
    assert sorted(e[1] for e in timer_events(w)) == [-(2 ** 63), 2 ** 63 - 1]


def test_installing_a_snapshot_over_an_entry_of_another_term_drops_the_whole_log():
    # (mutant X10: the suffix counted as kept whatever the held entry's term.) The log is
    # emptied at the snapshot, but the core's verified and persisted indexes stayed at the old
    # suffix: a follower could then count as verified (and commit) entries it no longer held.
    from aeronpy.cluster.snapshot_transfer import install_snapshot
    core = _Core(8)                               # entries 1..8 of TERM (an old leader's)
    core.commit_index, core.applied_index = 3, 3
    core.persisted_index = core.verified_index = core.written_index = 8
    data = b"".join(bytes(p) for p in encode_snapshot(5, TERM + 1, 0, b"module", [b"service"],
                                                      service_set_tail([_ServiceA()])))
    resets = []
    archive = SimpleNamespace(open_snapshot=lambda _info: io.BytesIO(data),
                              reset_to_snapshot=lambda i, t, keeps: resets.append((i, t, keeps)),
                              written_index=5, note_commit_index=lambda _i: None)
    module = _Module(services=[_ServiceA()])
    module.start = lambda files: None
    info = SimpleNamespace(index=5, term=TERM + 1, size=len(data), path="snap-5")
    install_snapshot(core, archive, module, info)
    assert (core.log.base_index, core.log.last_index) == (5, 5)
    assert core.verified_index == core.persisted_index == core.written_index == 5 and core.commit_index == 5
    assert resets == [(5, TERM + 1, False)]


def test_a_snapshot_transfer_keeps_at_most_inflight_chunks_unacknowledged():
    # (mutant X04: no bound.) Without acknowledgements the leader sent the whole file, four
    # chunks a cycle, into a follower that may not keep up: INFLIGHT_CHUNKS is the bound.
    from aeronpy.cluster.snapshot_transfer import INFLIGHT_CHUNKS
    sender, sent = _snapshot_sender(bytes(64 * 100), chunk_bytes=100)
    for cycle in range(20):
        sender.do_work(cycle * 1000)
    assert sent == [i * 100 for i in range(INFLIGHT_CHUNKS)]
    # the control: an acknowledgement of the first four frees room for four more
    from aeronpy.core.messages import InstallSnapshotResponse
    sender.on_response(InstallSnapshotResponse(5, 100, 400, True), 30_000)
    sender.do_work(31_000)
    assert sent[INFLIGHT_CHUNKS:] == [i * 100 for i in range(INFLIGHT_CHUNKS, INFLIGHT_CHUNKS + 4)]
    sender.close()


def test_a_snapshot_at_the_index_of_the_last_one_is_not_taken_again():
    # (mutant P04: only an older index skipped.) A queued admin request can come due right
    # after a snapshot at the applied index was installed: a second file at that index would
    # replace the first in retention and leave it on disk.
    s, _module, _core, _archive, jobs = _snapshotter(entries=10, applied=5)
    assert s.take(5, "admin request")
    jobs.jobs[0][1].set_result(_info(5))
    assert s.poll() == 1 and s.last_snapshot_index == 5
    assert s.take(5, "admin request") is False and len(jobs.jobs) == 1
    s.module.applied_index = 6                     # the control: a newer index is taken
    assert s.take(6, "admin request") and len(jobs.jobs) == 2


def test_a_follower_that_committed_the_snapshot_index_answers_done_without_a_transfer():
    # (mutant X07: a snapshot at exactly the commit index was transferred again.) The member
    # holds everything up to it: the whole file would be written and then only kept.
    from aeronpy.cluster.snapshot_transfer import SnapshotReceiver
    from aeronpy.core.messages import InstallSnapshot, InstallSnapshotResponse
    from aeronpy.service import Role

    def no_file(*_args):
        raise AssertionError("a transfer was started")
    hooks = SimpleNamespace(core=SimpleNamespace(term=5, role=Role.FOLLOWER, commit_index=100,
                                                 persisted_index=100),
                            archive=SimpleNamespace(begin_snapshot=no_file))
    receiver = SnapshotReceiver(hooks)
    answer = receiver.on_chunk(0, InstallSnapshot(5, 100, 4, 0, 1000, False, b"x" * 10))
    assert answer == InstallSnapshotResponse(5, 100, 1000, True)
    # committed but its sync still running (the second review of e5a1035): no answer yet,
    # and no transfer; the leader sends the chunk again
    hooks.core.persisted_index = 99
    assert receiver.on_chunk(0, InstallSnapshot(5, 100, 4, 0, 1000, False, b"x" * 10)) is None
    hooks.core.persisted_index = 100
    # the control: one past the commit index is transferred
    hooks.core.commit_index = 99
    with pytest.raises(AssertionError, match="a transfer was started"):
        receiver.on_chunk(0, InstallSnapshot(5, 100, 4, 0, 1000, False, b"x" * 10))


def test_a_fault_serving_a_backup_request_fails_the_request_not_the_member(monkeypatch):
    """Only ValueError, OSError and struct.error were caught: any other exception from the
    backup handlers (the IndexError mutant B01 made) left the duty cycle and failed the
    member. Now it is answered ADMIN_ERROR and logged."""
    import logging
    from types import SimpleNamespace

    from aeronpy.cluster import backup
    from aeronpy.cluster.node_snapshots import ADMIN_ERROR, BACKUP_QUERY, NodeSnapshots

    def broken(snapshots, kind, payload):
        raise IndexError("list index out of range")
    monkeypatch.setattr(backup, "serve_backup_request", broken)
    snapshots = NodeSnapshots.__new__(NodeSnapshots)
    snapshots.log = logging.getLogger("test.backup")
    code, payload = snapshots.on_admin_request(7, SimpleNamespace(request_type=BACKUP_QUERY,
                                                                  payload=b"\0" * 16, correlation_id=1))
    assert code == ADMIN_ERROR and b"IndexError" in payload


def test_a_member_with_automatic_snapshots_off_ignores_the_leaders_automatic_ask():
    s, module, core, _archive, jobs = _snapshotter(entries=4, applied=4, log_bytes=0)
    s.on_cluster_action(4, E.ACTION_SNAPSHOT, E.SNAPSHOT_AUTOMATIC)
    assert jobs.jobs == []
    s.on_cluster_action(4, E.ACTION_SNAPSHOT, 0)            # the control: an admin request
    assert [args[1] for args, _f in jobs.jobs] == [4]
