"""One simulated member: ``RaftCore`` + ``ConsensusModule`` (hosting the real services) + the
real ``Archive`` on a simulated disk, driven on virtual time exactly as ``ClusterNode`` drives
them (``_process_ready`` / ``_finish_ready``): truncate, save the hard state, append, sync per
``file_sync``, then send, apply through the module, note the commit index, advance; then drain
egress. Each simulated event (a tick, a peer message, a client message) is one duty cycle.

Start-up is the node's too: ``Archive.open`` + ``recover`` (done by the disk), a core on the
recovered hard state, log and commit index, the recovered snapshot restored by the node's
snapshot machinery (``SimNodeSnapshots``), ``module.start``, and the committed entries
replayed into the services before the member joins. Snapshots, compaction and install-snapshot
run through the same ``NodeSnapshots`` hooks as the node's (aeronpy/testing/sim_snapshots.py).

The rejoining mark too: a member started on an empty disk (a first start, or after
``SimCluster.wipe``) is ``RaftCore.rejoining``, marked on its ``SimDisk`` (the node's
``rejoining`` file) until ``RaftCore.rejoin_caught_up()``, checked after every duty cycle.
"""
from __future__ import annotations

import contextlib

from aeronpy._codec import encode as _encode
from aeronpy._steppath import StepPath
from aeronpy.cluster.container import ServiceError
from aeronpy.cluster.module import ConsensusModule
from aeronpy.core import RaftCore
from aeronpy.core.messages import AppendEntries, AppendResponse
from aeronpy.core.ready import SYNC_STALL_NS, split_vouching
from aeronpy.service import Role
from aeronpy.cluster.state_digests import StateDigests
from aeronpy.testing.sim_snapshots import SimNodeSnapshots, SimSnapshotOptions

_FAST_KINDS = (AppendEntries, AppendResponse)    # what aeronpy._steppath may take
READY_ROUNDS_MAX = 16   # a Ready can enable another (commit after persist); never loop forever

MEMBER_BUGS = ("rejoin_mark_off", "apply_cap_skips_rest")
"""Negative controls of the simulated member's own logic (switched on by tests and the swarm's
``--bug`` only). ``rejoin_mark_off``: a member started on an empty disk is never marked, as
before the mark existed. ``apply_cap_skips_rest``: a member whose apply cap cuts a Ready
short applies the capped part but leaves the Ready's range whole, so advance() takes the rest
as applied and that member never applies it (what a driver that forgot to shorten the range
when its apply budget ran out would do)."""
_MEMBER_BUGS: set = set()


@contextlib.contextmanager
def member_bugs(names):
    """Switch the named MEMBER_BUGS on for the duration (the swarm's --bug)."""
    saved = set(_MEMBER_BUGS)
    _MEMBER_BUGS.clear()
    _MEMBER_BUGS.update(names)
    try:
        yield
    finally:
        _MEMBER_BUGS.clear()
        _MEMBER_BUGS.update(saved)


class MemberStopped(Exception):
    """The member hit a fault it must not continue past (a service raised: ServiceError)."""


class CrashedMidReady(Exception):
    """An armed member (``SimCluster.crash_mid_ready``) crashed inside a duty cycle: after
    sending what its Ready lets go out first, before writing anything of that Ready."""


class _ApplyRange:
    """The part of a Ready that ``ConsensusModule.apply_ready`` reads: [apply_lo, apply_hi)."""
    __slots__ = ("apply_lo", "apply_hi")

    def __init__(self, lo: int, hi: int):
        self.apply_lo, self.apply_hi = lo, hi


class SimMember:
    def __init__(self, member_id: int, core_config, module_config, disk, services: list, rng, sim, checker,
                 snapshot_options: SimSnapshotOptions | None = None, jobs=None, apply_cap: int = 0,
                 sync_lag_ns: int = 0):
        self.member_id = member_id
        self.apply_cap = apply_cap       # entries applied per Ready at most (0: all; SimCluster)
        self.apply_capped = 0            # Readies whose apply range it shortened
        # As a ClusterNode, whose background sync finishes after it advanced the Ready
        # (advance(rd, durable=False)): this member syncs its writes only at its first event
        # this long after (0: at once). Meanwhile a power failure loses them, and the
        # acknowledgements of a Ready that is not a leader's send_first one are held (_held)
        # until then (split_vouching; its other messages go at once).
        self.sync_lag_ns = sync_lag_ns
        self._unsynced_hi = 0            # the last index written but not synced (0: none)
        self._sync_due_ns = 0
        self._unsynced_since_ns = 0      # when the writes waiting for that sync began
        self._stall_handover_ns = 0      # as the node: a stalled leader hands over each SYNC_STALL_NS
        self.sync_stalls = 0             # Readies whose messages all waited for a stalled sync
        self._held: list = []            # (index, acknowledgements): sent once durable up to index
        self.lagged_syncs = 0            # Readies advanced before their sync
        self.disk = disk
        self.alive = True
        self._sim = sim                  # send_member(src, dst, msg) / send_egress(src, client_ref, msg)
        self._checker = checker
        self._sync = disk.file_sync != "none"
        self.crash_at_next_write = False   # armed by SimCluster.crash_mid_ready
        recovered = disk.take_recovered()
        self.recovered = recovered
        self.core = RaftCore(core_config, rng, recovered.hard_state, recovered.log,
                             commit_index=recovered.commit_index)
        self.module = ConsensusModule(member_id, self.core, services, module_config, now_ns=sim.now_ns)
        # every simulated member hosts the same services and shares one ModuleConfig: a term
        # entry naming other services or other settings is a bug (the simulator's leaders
        # write the service list alone, as earlier versions did: its seeds' courses stay put)
        self.module.service_set_listeners.append(
            lambda error: checker.fail(f"member {member_id}: {error}"))
        self.module.config_mismatch_listeners.append(
            lambda error: checker.fail(f"member {member_id}: {error}"))
        # as ClusterNode: an empty disk (no log, no snapshot) or a kept mark: rejoining,
        # unless the disk was prepared for a member that never ran (taken by this start)
        empty = recovered.log.last_index == 0 and recovered.snapshot is None
        if disk.new_member:
            disk.new_member = False
            if not disk.rejoin_mark:
                empty = False
        if "rejoin_mark_off" not in _MEMBER_BUGS and (empty or disk.rejoin_mark):
            disk.rejoin_mark = True
            self.core.rejoining = True
        self._step_path = StepPath(self.core).on_message if sim.fast_step_path else None
        # while rejoining every AppendEntries goes through RaftCore.step, which notes the
        # leader's commit index to catch up to (the compiled path would skip that), as the node
        self._fast_step = None if self.core.rejoining else self._step_path
        checker.on_start(self)
        # as ClusterNode: the snapshot machinery, the recovered snapshot, on_start, replay
        self.snapshots = SimNodeSnapshots(self, snapshot_options or SimSnapshotOptions(), jobs,
                                          lambda: sim.now_ns)
        if snapshot_options is not None and snapshot_options.state_digests:
            # as ClusterNode: members compare snapshot checksums through the log (a difference
            # is a divergence the checker's own state comparison should have caught first)
            StateDigests(self.module, self.snapshots.snapshotter,
                         lambda error: checker.fail(f"member {member_id}: {error}"))
        self.module.start(self.snapshots.open_recovered(recovered))
        if recovered.snapshot is not None:
            sim.snapshot_totals["snapshot_restarts"] += 1
            checker.on_restored(self, recovered.snapshot)
        self._replay_committed()
        checker.after_event(self)

    def _replay_committed(self) -> None:
        """As ClusterNode: apply what recovery knows was committed before joining."""
        core, module = self.core, self.module
        log = core.log
        lo = max(module.applied_index + 1, log.first_index)
        hi = core.commit_index + 1
        checker = self._checker
        for index in range(lo, hi):
            checker.on_apply(self, index)
        points = checker.snapshot_points(lo, hi)
        for index in range(lo, hi):
            module.apply(index, log.term_at(index), log.type_at(index), log.payload_at(index))
            if points and index == points[0]:
                checker.on_state_at(self, points.pop(0))
        checker.after_apply(self, lo, hi)

    # ------------------------------------------------------------------ snapshot hooks
    def send_transfer(self, to: int, msg) -> None:
        self._sim.send_member(self.member_id, to, msg)

    def on_snapshot_recorded(self, info) -> None:
        """The Snapshotter recorded a snapshot (and compacted): check it, update the shadow."""
        self._sim.snapshot_totals["snapshots_recorded"] += 1
        self.disk.note_snapshots()
        self._checker.on_snapshot(self, info)

    def on_snapshot_installed(self, info) -> None:
        """A snapshot from the leader replaced this member's state (install_snapshot)."""
        self._sim.snapshot_totals["snapshots_installed"] += 1
        self.disk.reset_shadow_at(info.index)
        self._checker.on_restored(self, info)

    @property
    def services(self) -> list:
        return self.module.container.services

    @property
    def role(self) -> Role:
        return self.core.role

    # ------------------------------------------------------------------ inputs (one duty cycle each)
    def on_tick(self, now_ns: int) -> None:
        self.core.tick(now_ns)
        self.duty_cycle(now_ns)

    def on_message(self, src: int, msg, now_ns: int) -> None:
        # as ClusterNode._on_consensus_message: the compiled steady-state step first (on the
        # message's wire bytes), RaftCore.step for everything it does not take
        fast_step = self._fast_step
        if fast_step is not None and type(msg) in _FAST_KINDS and fast_step(src, _encode(msg), now_ns):
            self._sim.fast_steps[type(msg) is AppendEntries] += 1
        else:
            self.core.step(src, msg, now_ns)
        self.duty_cycle(now_ns)

    def on_ingress(self, client_ref: int, msg, now_ns: int) -> None:
        self.module.on_ingress(client_ref, msg, now_ns)
        self.duty_cycle(now_ns)

    def on_transfer(self, src: int, msg, now_ns: int) -> None:
        """InstallSnapshot / InstallSnapshotResponse: to the snapshot machinery, as the node."""
        self.snapshots.on_transfer_message(src, msg, now_ns)
        self.duty_cycle(now_ns)

    def duty_cycle(self, now_ns: int) -> None:
        try:
            self.module.tick(now_ns)
            self.snapshots.do_work(now_ns)
            self.process(now_ns)
        except ServiceError as exc:
            raise MemberStopped(str(exc)) from exc
        if self.core.rejoining:
            self._check_rejoined()
        self.module.drain_egress(self._send_egress)
        self._checker.after_event(self)

    def _sync_unsynced(self) -> None:
        archive = self.disk.archive
        archive.request_sync()
        self._unsynced_hi = 0
        synced = archive.poll_synced()
        self.core.note_durable(synced)
        self._release_held(synced)

    def _sync_stalled(self, now_ns: int) -> bool:
        """As ClusterNode._check_sync: the sync has run SYNC_STALL_NS without finishing (the
        simulator's syncs finish whole, so no progress means not finished)."""
        return bool(self._unsynced_hi) and now_ns - self._unsynced_since_ns > SYNC_STALL_NS

    def _release_held(self, synced: int) -> None:
        held = self._held
        while held and held[0][0] <= synced:
            self._send_list(held.pop(0)[1])

    def _check_rejoined(self) -> None:
        """As ClusterNode._check_rejoined: the core's rule lifts the mark, on disk first."""
        core = self.core
        if not core.rejoin_caught_up():
            return
        self.disk.rejoin_mark = False
        core.rejoining, core.rejoin_target = False, None
        self._fast_step = self._step_path
        self._sim.rejoins_completed += 1

    def _send_list(self, messages) -> None:
        send = self._sim.send_member
        checker = self._checker
        for to, msg in messages:
            checker.on_send(self, to, msg)
            send(self.member_id, to, msg)

    def _send_egress(self, client_ref, message) -> bool:
        self._sim.send_egress(self.member_id, client_ref, message)
        return True

    # ------------------------------------------------------------------ the node's _process_ready
    def process(self, now_ns: int) -> None:
        core = self.core
        disk = self.disk
        checker = self._checker
        module = self.module
        for _ in range(READY_ROUNDS_MAX):
            if self._unsynced_hi and now_ns >= self._sync_due_ns:
                self._sync_unsynced()          # the node's syncer finished: the core hears it
            elif self._sync_stalled(now_ns) and core.role == Role.LEADER \
                    and now_ns - self._stall_handover_ns > SYNC_STALL_NS:
                self._stall_handover_ns = now_ns   # as ClusterNode._check_sync
                core.transfer_leadership(None, now_ns)
            if not core.has_ready():
                break
            rd = core.ready()
            if rd.send_first:
                self._send_list(rd.messages)     # a leader's: they promise nothing about our disk
            if self.crash_at_next_write and rd.must_persist:
                raise CrashedMidReady(f"member {self.member_id} crashed before writing a Ready "
                                      f"({len(rd.messages) if rd.send_first else 0} messages already sent)")
            if rd.truncate_from is not None:
                checker.before_truncate(self, rd.truncate_from)
                disk.truncate_from(rd.truncate_from)
                self._unsynced_hi = min(self._unsynced_hi, rd.truncate_from - 1)
                self._held.clear()      # as the node: acknowledgements of cut entries go
            if rd.hard_state is not None:
                disk.save_hard_state(rd.hard_state.term, rd.hard_state.voted_for)
            durable = True
            if rd.persist_hi > rd.persist_lo:
                disk.append_from(core.log, rd.persist_lo, rd.persist_hi)
                if self._sync and self.sync_lag_ns:
                    if not self._unsynced_hi:
                        self._sync_due_ns = now_ns + self.sync_lag_ns
                        self._unsynced_since_ns = now_ns
                    self._unsynced_hi = rd.persist_hi - 1
                    self.lagged_syncs += 1
                    self._sim.lagged_syncs += 1
                elif self._sync:
                    disk.archive.request_sync()     # MemFileSystem: the group commit is inline
                    if disk.archive.poll_synced() < rd.persist_hi - 1:
                        raise AssertionError(f"member {self.member_id}: the inline sync left "
                                             f"{rd.persist_hi - 1} not durable")
            if self._unsynced_hi:
                durable = False                     # this Ready's writes, or earlier ones
            checker.on_persisted(self, rd)
            # ---- _finish_ready: send only what is durable (unless sent first), then apply
            if not rd.send_first and rd.messages:
                if durable:
                    self._send_list(rd.messages)
                else:   # acknowledgements wait until every write so far is durable, the rest go
                    stalled = self._sync_stalled(now_ns)
                    self.sync_stalls += stalled
                    free, vouching = split_vouching(rd.messages, stalled)
                    self._send_list(free)
                    if vouching:
                        self._held.append((rd.persist_hi - 1, vouching))
            if rd.role_changed is not None:
                checker.on_role_change(self, rd.role_changed)
            applied = rd.apply_hi > rd.apply_lo
            capped = False
            if applied:
                committed_hi = rd.apply_hi
                lo = max(rd.apply_lo, module.applied_index + 1)
                apply_range = rd
                if self.apply_cap and rd.apply_hi - lo > self.apply_cap:
                    # as ClusterNode when its apply budget runs out: advance() takes the
                    # shortened range as applied and the core hands the rest out again
                    if "apply_cap_skips_rest" in _MEMBER_BUGS:
                        apply_range = _ApplyRange(rd.apply_lo, lo + self.apply_cap)
                    else:
                        rd.apply_hi = lo + self.apply_cap
                    self.apply_capped += 1
                    self._sim.apply_capped += 1
                    capped = True
                for index in range(lo, rd.apply_hi):
                    checker.on_apply(self, index)
                points = checker.snapshot_points(lo, rd.apply_hi)
                if apply_range is not rd:
                    module.apply_ready(apply_range, now_ns)      # the negative control
                elif points:
                    # stop at each index some member snapshotted: compare the replayed state
                    start = lo
                    for point in points:
                        module.apply_ready(_ApplyRange(start, point + 1), now_ns)
                        checker.on_state_at(self, point)
                        start = point + 1
                    module.apply_ready(_ApplyRange(start, rd.apply_hi), now_ns)
                else:
                    module.apply_ready(rd, now_ns)
                disk.archive.note_commit_index(committed_hi - 1)
                checker.after_apply(self, lo, rd.apply_hi)
            if rd.snapshot_requests:
                self.snapshots.on_snapshot_requests(rd.snapshot_requests, now_ns)
            core.advance(rd, durable)
            if applied:
                self.snapshots.after_apply()
            if capped:
                # as a node, whose next cycle polls its sockets and runs its timers before the
                # rest: this member's next event (a message, its tick) applies more
                break
