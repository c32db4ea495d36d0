"""``SimCluster``: a whole cluster in one thread on virtual time (docs/programming.md section 3).

Each member is the production stack (``RaftCore`` + ``ConsensusModule`` hosting the real
services + ``Archive`` on an in-memory disk), driven as ``ClusterNode`` drives it; each client
is the real ``ClientCore`` over the simulated network. One seed derives everything: a single
``random.Random(seed)`` hands out the seeds of the network's, the fault model's, each member's
and each client's generators in a fixed order, so the same seed replays the same run event
for event (``trace_hash()`` proves it). Events sit in a heap keyed by (time, sequence number).
After every event the invariant checker runs.

Snapshots (``snapshot_log_bytes`` > 0 for automatic ones, ``snapshot()`` for an admin one),
compaction, recovery from a snapshot and install-snapshot run through the node's own
``NodeSnapshots`` with a simulated executor (aeronpy/testing/sim_snapshots.py).
"""
from __future__ import annotations

import hashlib
import heapq
import random
from typing import Optional

from aeronpy.cluster.client_core import ClientConfig, ClientCore, ClientState
from aeronpy.cluster.container import service_set_tag, service_set_tail
from aeronpy.cluster.module_config import Authenticator, ModuleConfig
from aeronpy.core import CoreConfig
from aeronpy.cluster.node_snapshots import ADMIN_OK, TRANSFER_MESSAGES
from aeronpy.core.messages import AppendEntries, InstallSnapshot, Vote
from aeronpy.errors import NotConnectedError
from aeronpy.service import ClusteredService, Role
from aeronpy.testing.client import SimClient, SimClientTransport
from aeronpy.testing.invariants import InvariantChecker
from aeronpy.testing.member import CrashedMidReady, MemberStopped, SimMember
from aeronpy.testing.network import SimNetwork
from aeronpy.testing.sim_snapshots import SimJobs, SimSnapshotOptions
from aeronpy.testing.storage import DEFAULT_SIM_SEGMENT_BYTES, SimDisk

MS = 1_000_000
INGRESS_PORT = 9000
CLIENT_PORT = 7000


class SimCluster:
    def __init__(self, members: int = 3, seed: int = 0, service=None, *, file_sync: str = "data",
                 election_timeout_ms: float = 200, heartbeat_interval_ms: float = 50,
                 leader_heartbeat_timeout_ms: float = 400, max_append_bytes: int = 64 * 1024,
                 max_inflight_appends: int = 64, pre_vote: bool = True, check_quorum: bool = True,
                 tick_ms: float = 10, check_invariants: bool = True, session_timeout_ms: float = 10_000,
                 authenticator: Authenticator | None = None, segment_bytes: int = DEFAULT_SIM_SEGMENT_BYTES,
                 module_options: dict | None = None, snapshot_log_bytes: int = 0, snapshots_to_keep: int = 1,
                 snapshot_chunk_bytes: int = 512, snapshot_write_ms: float = 2.0,
                 fast_step_path: bool = True, apply_caps: tuple = (), state_digests: bool = False,
                 sync_lags_ms: tuple = ()):
        if members < 1:
            raise ValueError(f"members: need at least 1, got {members}")
        self.seed = seed
        self.member_count = members
        if service is not None and not callable(service):
            # an instance would be shared by every member (one state for all): each member
            # builds its own from a factory
            raise TypeError(f"service must be a factory (a ClusteredService subclass, or a "
                            f"function returning a service or a list of them) that each "
                            f"member calls for its own state, got the instance {service!r}: "
                            f"pass service={type(service).__name__}")
        self._service_factory = service or ClusteredService
        # how many committed entries a member applies per Ready at most (0: all), one drawn per
        # member incarnation: a ClusterNode whose apply budget runs out applies the rest in
        # later cycles. Drawn apart from the seeded generators, so a seed's course without
        # apply_caps stays as it was.
        self.apply_caps = tuple(apply_caps)
        # how long a member's writes wait for their sync after it advanced past them
        # (SimMember.sync_lag_ns; 0: synced at once), one drawn per member incarnation, apart
        # from the seeded generators as apply_caps
        self.sync_lags_ms = tuple(sync_lags_ms)
        if any(not isinstance(v, (int, float)) or v < 0 for v in self.sync_lags_ms):
            raise ValueError(f"sync_lags_ms: numbers >= 0, got {sync_lags_ms!r}")
        self.apply_capped = 0                    # Readies whose apply range a cap shortened
        self.lagged_syncs = 0                    # Readies advanced before their sync
        if any(type(c) is not int or c < 0 for c in self.apply_caps):
            raise ValueError(f"apply_caps: ints >= 0 (0: no cap), got {apply_caps!r}")
        self._master_rng = random.Random(seed)
        derive = self._master_rng.getrandbits
        self._net_rng = random.Random(derive(64))
        self._fault_rng = random.Random(derive(64))
        self._member_seed_rngs = [random.Random(derive(64)) for _ in range(members)]
        self._client_seed_rng = random.Random(derive(64))
        self._tick_ns = int(tick_ms * MS)
        voters = tuple(range(members))
        self._configs = [CoreConfig(m, voters, election_timeout_ns=int(election_timeout_ms * MS),
                                    heartbeat_interval_ns=int(heartbeat_interval_ms * MS),
                                    leader_heartbeat_timeout_ns=int(leader_heartbeat_timeout_ms * MS),
                                    max_append_bytes=max_append_bytes, max_inflight_appends=max_inflight_appends,
                                    pre_vote=pre_vote, check_quorum=check_quorum)
                         for m in range(members)]
        self.ingress_endpoints = {m: f"member{m}:{INGRESS_PORT}" for m in range(members)}
        self._member_of_endpoint = {e: m for m, e in self.ingress_endpoints.items()}
        self._client_of_endpoint: dict = {}
        self.module_config = ModuleConfig(members=dict(self.ingress_endpoints),
                                          session_timeout_ns=int(session_timeout_ms * MS),
                                          authenticator=authenticator or Authenticator(),
                                          client_ref_of_endpoint=self._client_of_endpoint.get,
                                          **(module_options or {}))
        self.snapshot_options = SimSnapshotOptions(snapshot_log_bytes, snapshots_to_keep, snapshot_chunk_bytes,
                                                   snapshot_write_ms, state_digests)
        self.snapshot_totals = {"snapshots_recorded": 0, "snapshots_installed": 0, "snapshot_restarts": 0}
        self.crashed_mid_ready = 0               # armed members that crashed (crash_mid_ready)
        self.crashed_after_vote = 0              # armed members that crashed (crash_after_vote)
        self._armed_after_vote: dict = {}        # member -> restart at once after the crash
        self._voted: set = set()                 # armed members that granted a vote this cycle
        # members step the steady-state AppendEntries and AppendResponse through the node's
        # compiled path (aeronpy._steppath), as ClusterNode does; False: RaftCore.step for all
        self.fast_step_path = fast_step_path
        self.fast_steps = [0, 0]                 # AppendResponses, AppendEntries that path took
        self.rejoins_completed = 0               # rejoining marks lifted (first starts included)
        self.now_ns = 0
        self.events = 0
        self._seq = 0
        self._queue: list = []
        self._trace = hashlib.blake2b(digest_size=16)
        self.net = SimNetwork(self._net_rng, self._schedule)
        self.members: list = [None] * members
        self.stopped: dict = {}                  # member -> why it stopped itself (a service raised)
        self._incarnation = [0] * members
        self._last_services: list = [None] * members
        self._last_modules: list = [None] * members
        self._clients: dict = {}
        self.disks = {m: SimDisk(m, file_sync, segment_bytes) for m in range(members)}
        self.storages = self.disks               # the checker's name for them
        self.checker = InvariantChecker(self.describe, self.disks, members)
        self.checker.enabled = check_invariants
        for m in range(members):
            self._start_member(m)

    # ------------------------------------------------------------------ the public surface
    def run_for(self, ms: float) -> None:
        end = self.now_ns + int(ms * MS)
        queue = self._queue
        while queue and queue[0][0] <= end:
            self._run_one()
        self.now_ns = end

    def run_until(self, predicate, within_ms: float) -> bool:
        if predicate():
            return True
        end = self.now_ns + int(within_ms * MS)
        queue = self._queue
        while queue and queue[0][0] <= end:
            self._run_one()
            if predicate():
                return True
        self.now_ns = end
        return False

    def leader(self) -> Optional[int]:
        best = None
        for member in self.members:
            if member is not None and member.core.role == Role.LEADER:
                if best is None or member.core.term > best.core.term:
                    best = member
        return None if best is None else best.member_id

    def client(self, *, connect_timeout_ms: float = 5000.0, credentials: bytes = b"",
               config: ClientConfig | None = None) -> SimClient:
        """A connected client session; runs the simulation until the session is open.

        Raises NotConnectedError (AuthenticationError when the credentials are refused) if no
        session opens within ``connect_timeout_ms`` of simulated time."""
        number = len(self._clients) + 1
        client_id = -number
        endpoint = f"client{number}:{CLIENT_PORT}"
        self._client_of_endpoint[endpoint] = client_id
        rng = random.Random(self._client_seed_rng.getrandbits(64))
        core = ClientCore(",".join(self.ingress_endpoints[m] for m in range(self.member_count)), endpoint,
                          config or ClientConfig(), rng, credentials)
        client = SimClient(self, client_id, core, SimClientTransport(self, client_id, endpoint), self._tick_ns)
        self._clients[client_id] = client
        self._note("client", client_id)
        client.start()
        self.run_until(lambda: core.state is not ClientState.CONNECTING, connect_timeout_ms)
        if core.state is not ClientState.CONNECTED:
            client.close()
            raise core.error or NotConnectedError(
                f"no session within {connect_timeout_ms}ms of simulated time ({self.describe()})")
        return client

    def partition(self, *groups) -> None:
        """Members (and clients, by their negative ids) in different groups cannot talk;
        members named in no group are isolated, clients named in none reach everyone."""
        clients = [c for g in groups for c in g if c < 0]
        unknown = [c for c in clients if c not in self._clients]
        if unknown:
            raise ValueError(f"unknown client id(s) {unknown} in a partition group")
        self.net.partition(list(range(self.member_count)) + clients, *[set(g) for g in groups])
        self._note("partition", repr(sorted(sorted(g) for g in groups)))

    def heal(self) -> None:
        self.net.heal()
        self._note("heal")

    def crash(self, member: int) -> None:
        self._kill(member)
        self.disks[member].crash()
        self._note("crash", member, self.disks[member].written_index)

    def crash_mid_ready(self, member: int) -> None:
        """Arm a running member to crash inside its next duty cycle that writes to its disk:
        after sending whatever its Ready lets go out before the write (``Ready.send_first``:
        a leader's appends), before writing any of it. What it sent is out; its disk lacks
        the Ready's entries (a process crash there: nothing of that Ready was written)."""
        live = self.members[member]
        if live is None:
            raise ValueError(f"member {member} is not running")
        live.crash_at_next_write = True
        self._note("crash_mid_ready", member)

    def crash_after_vote(self, member: int, restart: bool = True) -> None:
        """Arm a running member to crash right after the duty cycle in which it grants a vote
        (a ballot's Vote, not a canvass answer): the vote is out, and what the member wrote
        before sending it (its hard state: the vote, if it saved it) is on its disk.
        ``restart``: it starts again at once, so ballots still in flight reach the new
        incarnation, which must remember whom it voted for in the term."""
        if self.members[member] is None:
            raise ValueError(f"member {member} is not running")
        self._armed_after_vote[member] = bool(restart)
        self._note("crash_after_vote", member, restart)

    @property
    def armed_after_vote(self) -> frozenset:
        """Members armed by crash_after_vote that have not voted (and crashed) yet."""
        return frozenset(self._armed_after_vote)

    def disarm_vote_crashes(self) -> None:
        """Members armed by crash_after_vote that have not crashed yet will not."""
        self._armed_after_vote.clear()
        self._voted.clear()
        self._note("disarm_vote_crashes")

    def disarm_crashes(self) -> None:
        """Members armed by crash_mid_ready or crash_after_vote that have not crashed yet will not."""
        for live in self.members:
            if live is not None:
                live.crash_at_next_write = False
        self._armed_after_vote.clear()
        self._voted.clear()
        self._note("disarm_crashes")

    def power_fail(self, member: int) -> None:
        self._kill(member)
        self.disks[member].power_fail(self._fault_rng)
        self._note("power_fail", member, self.disks[member].written_index)

    def wipe(self, member: int) -> None:
        """Operator action on a stopped member: its data dir deleted (the documented way out
        of a damaged disk); the next `restart` starts it empty. The checker forgets its term
        and commit (a new history) and the votes it cast (lost with the disk: what a second
        vote in a term could break is election safety, checked as ever)."""
        if self.members[member] is not None:
            raise ValueError(f"member {member} is running; crash it first")
        old = self.disks[member]
        self.disks[member] = SimDisk(member, old.file_sync, old.segment_bytes)
        self.checker.on_wiped(member, old)
        self._note("wipe", member)

    def rejoining(self, member: int) -> bool:
        """That member's disk carries the rejoining mark (it started on an empty disk and has
        not caught up since; kept while it is down)."""
        return self.disks[member].rejoin_mark

    def restart(self, member: int) -> None:
        if self.members[member] is not None:
            raise ValueError(f"member {member} is running; crash it first")
        self._start_member(member)
        self._note("restart", member)

    def network(self, drop: float = 0.0, duplicate: float = 0.0, delay_ms=(1.0, 1.0)) -> None:
        self.net.configure(drop, duplicate, delay_ms)
        self._note("network", drop, duplicate, delay_ms)

    def service(self, member: int, service_id: int = 0):
        live = self.members[member]
        services = live.services if live is not None else self._last_services[member]
        return services[service_id]

    def check(self) -> None:
        self.checker.raise_if_violated()

    # ------------------------------------------------------------------ extras for tests
    def trace_hash(self) -> str:
        return self._trace.hexdigest()

    def describe(self) -> str:
        return f"SimCluster(seed={self.seed}) at t={self.now_ns / MS:.3f}ms"

    def core(self, member: int):
        live = self.members[member]
        return None if live is None else live.core

    def module(self, member: int):
        """That member's ConsensusModule (the last incarnation's when it is down)."""
        live = self.members[member]
        return live.module if live is not None else self._last_modules[member]

    def alive(self, member: int) -> bool:
        return self.members[member] is not None

    def isolate(self, member: int) -> None:
        others = [m for m in range(self.member_count) if m != member]
        self.partition({member}, set(others))

    def cut(self, src: int, dst: int) -> None:
        """Asymmetric partition: ``src`` can no longer reach ``dst`` (members or client ids)."""
        self.net.block(src, dst)
        self._note("cut", src, dst)

    def transfer_leadership(self, target=None) -> bool:
        leader = self.leader()
        if leader is None:
            return False
        member = self.members[leader]
        ok = member.core.transfer_leadership(target, self.now_ns)
        self._run_member(member, member.duty_cycle, self.now_ns)
        return ok

    def snapshot(self) -> int:
        """Admin-requested snapshot, as ``aeronpy tool snapshot``: the leader appends a
        CLUSTER_ACTION entry and every member snapshots when it applies it. Returns the entry's
        index, 0 when there is no leader or it refused."""
        leader = self.leader()
        if leader is None:
            return 0
        member = self.members[leader]
        code, payload = member.snapshots._admin_snapshot()
        self._note("snapshot", leader, code)
        if code != ADMIN_OK:
            return 0
        self._run_member(member, member.duty_cycle, self.now_ns)
        return int.from_bytes(payload, "little", signed=True)

    def snapshot_stats(self, member: int):
        """That member's SnapshotStats (taken, failed, purged segments, ...), None if down."""
        live = self.members[member]
        return None if live is None else live.snapshots.snapshotter.stats

    def corrupt_snapshot(self, member: int) -> str | None:
        """Disk fault on a crashed member: flip a byte of its newest recorded snapshot file
        (recovery must skip it in favour of an older one). Returns the file, None if none."""
        if self.members[member] is not None:
            raise ValueError(f"member {member} is running; crash it first")
        disk = self.disks[member]
        recorded = disk.archive.recorded_snapshots()
        if not recorded:
            return None
        path = recorded[-1].path
        fs = disk.fs
        handle = fs.open_file(path)
        try:
            size = fs.size(handle)
            offset = self._fault_rng.randrange(size)
            byte = fs.pread(handle, 1, offset)
            fs.pwrite(handle, bytes([byte[0] ^ 0x5A]), offset)
            fs.fsync(handle)
        finally:
            fs.close(handle)
        disk.crash()                         # recover again from the damaged disk
        self._note("corrupt_snapshot", member, path, offset)
        return path

    def propose(self, member: int, entry_type: int, payload: bytes) -> int:
        """Propose straight into a member's core (tests that bypass the client and module)."""
        live = self.members[member]
        if live is None:
            return 0
        index = live.core.propose(entry_type, payload)
        self._run_member(live, live.duty_cycle, self.now_ns)
        return index

    # ------------------------------------------------------------------ machinery
    def _schedule(self, at_ns: int, fn, *args) -> None:
        self._seq += 1
        heapq.heappush(self._queue, (at_ns, self._seq, fn, args))

    def _schedule_in(self, delay_ns: int, fn, *args) -> None:
        self._schedule(self.now_ns + delay_ns, fn, *args)

    def _run_one(self) -> None:
        at_ns, _seq, fn, args = heapq.heappop(self._queue)
        self.now_ns = at_ns
        self.events += 1
        fn(*args)

    def _note(self, *parts) -> None:
        self._trace.update(f"{self.now_ns}|{'|'.join(map(str, parts))}\n".encode())

    def _start_member(self, m: int) -> None:
        self._incarnation[m] += 1
        made = self._service_factory()
        services = list(made) if isinstance(made, (list, tuple)) else [made]
        # as a node: the leader names its services in its term's first entry, and ballots
        # carry their digest (checked by every member that applies or votes)
        self._configs[m].term_entry_tail = service_set_tail(services)
        self._configs[m].ballot_tag = service_set_tag(services)
        rng = random.Random(self._member_seed_rngs[m].getrandbits(64))
        incarnation = self._incarnation[m]
        jobs = SimJobs(self._schedule_in, int(self.snapshot_options.write_delay_ms * MS),
                       lambda: self._incarnation[m] == incarnation and self.members[m] is not None,
                       lambda *parts: self._note(m, *parts))
        apply_cap = (random.Random(f"apply-cap-{self.seed}-{m}-{incarnation}").choice(self.apply_caps)
                     if self.apply_caps else 0)
        lag_ms = (random.Random(f"sync-lag-{self.seed}-{m}-{incarnation}").choice(self.sync_lags_ms)
                  if self.sync_lags_ms else 0)
        member = SimMember(m, self._configs[m], self.module_config, self.disks[m], services, rng, self,
                           self.checker, self.snapshot_options, jobs, apply_cap=apply_cap,
                           sync_lag_ns=int(lag_ms * MS))
        self.members[m] = member
        self._last_services[m] = services
        self._last_modules[m] = member.module
        self.stopped.pop(m, None)
        phase = rng.randrange(0, self._tick_ns) if self._tick_ns > 1 else 0
        self._schedule_in(phase, self._tick, m, self._incarnation[m])

    def _kill(self, m: int) -> None:
        if self.members[m] is None:
            raise ValueError(f"member {m} is not running")
        self.members[m].alive = False
        self.members[m] = None
        if self._armed_after_vote:           # an arm is the incarnation's, as crash_mid_ready's
            self._armed_after_vote.pop(m, None)
            self._voted.discard(m)

    def _crash_after_vote(self, m: int) -> None:
        restart = self._armed_after_vote.get(m, False)
        self._kill(m)
        self.disks[m].crash()
        self.crashed_after_vote += 1
        self._note("crashed_after_vote", m, self.disks[m].written_index)
        if restart:
            self.restart(m)

    def _run_member(self, member, step, *args) -> None:
        """One duty cycle; a member whose service raised stops (as a node does), its disk as
        after a process exit."""
        try:
            step(*args)
            if self._voted and member.member_id in self._voted and self.members[member.member_id] is member:
                self._crash_after_vote(member.member_id)
        except MemberStopped as exc:
            m = member.member_id
            self.stopped[m] = exc
            self._note("stopped", m, exc)
            self._kill(m)
            self.disks[m].crash()
        except CrashedMidReady:
            m = member.member_id
            self._kill(m)
            self.disks[m].crash()
            self.crashed_mid_ready += 1
            self._note("crashed_mid_ready", m, self.disks[m].written_index)

    def _tick(self, m: int, incarnation: int) -> None:
        member = self.members[m]
        if member is None or self._incarnation[m] != incarnation:
            return
        self._run_member(member, member.on_tick, self.now_ns)
        self._schedule_in(self._tick_ns, self._tick, m, incarnation)

    # transport used by members and clients ---------------------------------------------
    def send_member(self, src: int, dst: int, msg) -> None:
        if self._armed_after_vote and src in self._armed_after_vote and type(msg) is Vote \
                and msg.granted and not msg.pre:
            self._voted.add(src)             # crashes when this duty cycle is over
        self.net.send(self.now_ns, src, dst, self._deliver_member, dst, src, msg)

    def _deliver_member(self, dst: int, src: int, msg) -> None:
        kind = type(msg)
        if kind is AppendEntries:
            self._note("d", src, dst, "AE", msg.term, msg.prev_index, msg.prev_term, msg.count, msg.commit_index)
        elif kind is InstallSnapshot:
            self._note("d", src, dst, "IS", msg.term, msg.snapshot_index, msg.snapshot_term, msg.offset,
                       len(msg.data), msg.done)
        else:
            self._note("d", src, dst, repr(msg))
        member = self.members[dst]
        if member is not None:
            if kind in TRANSFER_MESSAGES:
                self._run_member(member, member.on_transfer, src, msg, self.now_ns)
            else:
                self._run_member(member, member.on_message, src, msg, self.now_ns)

    def send_egress(self, src: int, client_ref, msg) -> None:
        """A member's egress to a client (client_ref: the client's id; None: unknown)."""
        if client_ref is None or client_ref not in self._clients:
            return
        self.net.send(self.now_ns, src, client_ref, self._deliver_egress, client_ref, src, msg)

    def _deliver_egress(self, client_id: int, src: int, msg) -> None:
        self._note("e", src, client_id, repr(msg))
        self._clients[client_id].on_egress_arrived(msg)

    def send_ingress(self, client_id: int, endpoint: str, msg) -> None:
        dst = self._member_of_endpoint.get(endpoint)
        if dst is None:
            return
        self.net.send(self.now_ns, client_id, dst, self._deliver_ingress, dst, client_id, msg)

    def _deliver_ingress(self, dst: int, client_id: int, msg) -> None:
        self._note("i", client_id, dst, repr(msg))
        member = self.members[dst]
        if member is not None:
            self._run_member(member, member.on_ingress, client_id, msg, self.now_ns)
