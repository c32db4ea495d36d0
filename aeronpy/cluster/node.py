"""``ClusterNode``: the duty-cycle agent that makes one cluster member real.

One ``do_work()`` (Agrona's ``Agent.doWork``) polls the consensus and ingress transports,
steps the Raft core and the consensus module, writes the archive, sends, applies committed
entries to the services and flushes egress, and returns how much work it did; the idle
strategy decides what to do when that is 0. ``start()`` runs the cycle on a background
thread (thread mode); an application may instead call ``do_work()`` from its own loop
(invoker mode). The GIL makes more threads pointless on the hot path, so there is one.

The core and the module are sans-I/O: everything with a clock, a socket or a file lives
here, and ``aeronpy.testing.SimCluster`` drives the same two objects on virtual time.
"""
from __future__ import annotations

import os
import random
from collections import deque
import threading
import time
from typing import Callable, Optional, Sequence

from aeronpy import _codec
from aeronpy._steppath import StepPath
from aeronpy.archive import Archive
from aeronpy.cluster.config import NodeConfig
from aeronpy.errors import ConfigError
from aeronpy.endpoints import format_endpoint
from aeronpy.cluster.counters import CountersWriter, SlotId
from aeronpy.cluster.container import (ServiceSetError, check_services, service_names,
                                       service_set_tag, term_entry_tail)
from aeronpy.cluster.identity import check_identity
from aeronpy.cluster.idle import idle_strategy_from_name, select_waiter
from aeronpy.cluster.new_member import NEW_MEMBER_FILE, take_new_member_mark
from aeronpy.cluster.restored import read_restored_log_end
from aeronpy.cluster.logsetup import BurstLogger, node_logger
from aeronpy.cluster.module import ConsensusModule
from aeronpy.cluster.protocol import NewLeaderEvent
from aeronpy.cluster.module_config import (CLIENT_STREAM_IDLE_NS, Authenticator, ModuleConfig,
                                           client_stream_message_bytes,
                                           members_digest)
from aeronpy.cluster.node_admin import ADMIN_EXTRA_SLOTS, ENUM_NAMES as _ENUM_NAMES, NodeAdmin
from aeronpy.cluster.node_counters import (REFUSAL_EXTRA_SLOTS, TRANSPORT_EXTRA_SLOTS,
                                           TransportCounterPublisher)
from aeronpy.cluster.nodefiles import ErrorLog, PidFile
from aeronpy.cluster.node_snapshots import TRANSFER_MESSAGES as _TRANSFER_MESSAGES
from aeronpy.cluster.protocol import AdminRequest as _AdminRequest
from aeronpy.core import CoreConfig, RaftCore
from aeronpy.core.messages import AppendResponse as _AppendResponse, TimeoutNow
from aeronpy.core.progress import PROBE
from aeronpy.core.ready import SYNC_STALL_NS as _SYNC_STALL_NS, split_vouching as _split_vouching
from aeronpy.service import ClusteredService, Role
from aeronpy.transport.streams import StreamConfig
from aeronpy.transport.udp import UdpTransport
from aeronpy.cluster.codes import INGRESS_CLUSTER_ID

_MS = 1_000_000
_POLL_LIMIT = 64
CONSENSUS_STREAM_ID = 1

_S = SlotId
_ROLE, _TERM, _LEADER, _COMMIT, _APPEND = (int(_S.ROLE), int(_S.LEADERSHIP_TERM), int(_S.LEADER_ID),
                                           int(_S.COMMIT_INDEX), int(_S.APPEND_INDEX))
_ELECTION_STATE, _CM_STATE, _SESSIONS = (int(_S.ELECTION_STATE), int(_S.CONSENSUS_MODULE_STATE),
                                         int(_S.SESSIONS_OPEN))
_ERRORS = int(_S.ERRORS)
# While a node is busy (cycle after cycle with work) its counters are published at most this
# often; the first empty cycle after work publishes at once, as does a role or leader change,
# so a reader sees a node that has gone quiet (a request answered, an entry applied) at most
# about a millisecond late: that cycle runs after the park that follows work (_run).
# Duty-cycle figures are gathered locally in between.
_COUNTERS_INTERVAL_NS = 1 * _MS
_FILES_CHECK_NS = 1000 * _MS     # how often the data dir's files are checked still there
# An idle node parks until its next timer is due rather than 1 ms at a time (each empty cycle
# after a 1 ms park cost 3-5 % of a core per idle node), but only once it has done no work for
# _QUIET_NS: anything in progress (a stream's re-NAK, a retry) keeps the 1 ms rhythm. A park
# never exceeds _IDLE_PARK_MAX_NS; a datagram, a finished sync or close() ends it at once.
_QUIET_NS = 1 * _MS
_IDLE_PARK_MAX_NS = 50 * _MS
_PARK_NS = 1 * _MS
# A duty cycle applies committed entries for at most this share of heartbeat_interval_ms (and
# 1 ms at least), then leaves the rest to the next cycles, after the sockets and timers: a burst
# of slow service callbacks (each well under the election timeout, hundreds of ms together)
# held a whole cycle, heartbeats and acknowledgements waited behind it on every member alike,
# and leaders were deposed (a user's trial, 2026-11-28). The clock is read after each entry.
_APPLY_BUDGET_SHARE = 0.2
# a cycle longer than heartbeat_interval_ms is logged, at most once per this (_note_slow_cycle)
_SLOW_CYCLE_WARN_NS = 10_000 * _MS
# _SYNC_STALL_NS (core.ready.SYNC_STALL_NS, 2 s): a member whose log sync has made no progress
# this long has a failing disk. A leader hands the leadership over: it goes on committing on
# its followers' copies meanwhile, but the cluster is one member short of its fault tolerance
# while it leads. Any member holds all it sends until the sync moves (_check_sync).
# A follower whose log sync runs leaves the leader's appends in the socket this long (they are
# taken in one batch when the sync is done, as when a follower waited for every sync): on a
# fast disk that is cheaper than taking each on its own and holding its acknowledgement (an
# open-loop p50 ~15 % lower under file_sync data). A sync that runs longer no longer holds it.
_FOLLOWER_SYNC_BATCH_NS = 2 * _MS
# Messages waiting for their member's log sync (_held): at most this many Readies' worth; past
# it the oldest are dropped and counted (a hung disk; the peers re-send what they need)
_HELD_READIES_MAX = 1024
# close() waits for the duty-cycle thread to end (a service callback or on_take_snapshot may
# hold it for long), saying so every this many seconds: it never closes beside a running cycle
_DUTY_THREAD_JOIN_S = 5.0
# A closed session's client, or one whose connect was refused, keeps its ingress transport
# place this long (the answer delivered, repaired by NAK if lost), then frees it (_let_client_go)
_CLOSED_CLIENT_GRACE_NS = 500 * _MS


def load_authenticator(spec: str) -> Authenticator:
    """The ``authenticator = "module:ClassName"`` config key: import and construct it."""
    import importlib

    module_name, _, attr = spec.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name.strip()), attr.strip())
    except (ImportError, AttributeError) as exc:
        raise ConfigError("authenticator", f"cannot load {spec!r}: {exc}") from None
    if not (isinstance(cls, type) and issubclass(cls, Authenticator)):
        raise ConfigError("authenticator", f"{spec!r} is not a subclass of aeronpy.Authenticator")
    try:
        return cls()
    except Exception as exc:  # the user's constructor
        raise ConfigError("authenticator", f"{spec}() raised {type(exc).__name__}: {exc}") from None


_EPOCH_2001_NS = 1_000_000_000 * 10**9   # 2001-09-09: below it, cluster time is not epoch time


REJOIN_MARK = "rejoining"      # in a data dir: the member has not caught up since it started empty


def _not_taken(*_args) -> bool:
    return False


def _write_rejoin_mark(path: str) -> None:
    """The rejoining mark, durable (file and directory) before the member may vote."""
    if os.path.exists(path):
        return
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, b"started on an empty data dir: no vote for a non-empty log until caught up\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    dir_fd = os.open(os.path.dirname(path) or ".", os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def epoch_anchored_clock(wall_ns=time.time_ns, mono_ns=time.monotonic_ns):
    """The clock cluster time is read from on a leader: ns since the Unix epoch, read from the
    wall clock once (now) and advanced by the monotonic clock after that. Members on different
    hosts then stamp comparable times (to their wall clocks' agreement at start), while a step
    of the wall clock (NTP) during the run neither stops nor jumps cluster time. A monotonic
    clock alone counts from an unrelated origin per host (boot): after a failover to a host
    booted later, cluster time would stand still, and no timer fire, until it caught up."""
    offset = wall_ns() - mono_ns()

    def now_ns(_mono=mono_ns, _offset=offset) -> int:
        return _mono() + _offset

    now_ns.offset_ns = offset
    return now_ns


def follower_lag_max(core: "RaftCore") -> int:
    """The ``follower_lag_max`` gauge: on a leader, the log entries its furthest follower has
    not acknowledged; 0 elsewhere. A follower that has not answered this leader yet (match 0,
    probing) counts from the probe's index, not from 0: a new leader knows no match, and its
    whole log is not what the follower lacks (it read that after every election)."""
    leader_state = core.leader_state
    if leader_state is None:
        return 0
    last = core.log.last_index
    return max((last - (pr.match or (pr.next - 1 if pr.mode == PROBE else 0))
                for pr in leader_state.progress.values()), default=0)


def adaptive_timeouts_ns(pause_ns: int, election_ns: int, leader_ns: int,
                         session_ns: int) -> tuple:
    """(election, leader heartbeat, capped) timeouts for a member whose last snapshot paused
    it pause_ns, given the configured election, leader-heartbeat and session timeouts.

    Raised to twice the pause (the leader-heartbeat timeout by as much), never below the
    configured values. Capped so that the raised leader-heartbeat timeout plus the raised
    election timeout stays below the session timeout, the relation the configuration checks
    at load (sessions survive a failover): 2E + (L - E) < S, so E <= (S - L + E - 1) // 2.
    `capped` says the cap, not the pause, set the result."""
    election = max(election_ns, 2 * pause_ns)
    cap = max(election_ns, (session_ns - leader_ns + election_ns - 1) // 2)
    capped = election > cap
    election = min(election, cap)
    return election, leader_ns + election - election_ns, capped


class ClusterNode:
    """One member of a cluster (docs/programming.md section 4). Construct, then ``start()`` or drive ``do_work()``."""

    def __init__(self, config: NodeConfig, services: Sequence[ClusteredService],
                 authenticator: Optional[Authenticator] = None, *, check_startable: bool = True):
        services = check_services(services)    # before taking anything (docs/programming.md)
        if check_startable:
            config.check_startable()
        if authenticator is None and config.authenticator:
            authenticator = load_authenticator(config.authenticator)   # before taking any resource
        self.config = config
        self.member_id = config.member_id
        self.log = node_logger(config.member_id, config.log_level)
        self._pid_file = PidFile(config.data_dir).acquire()
        try:
            self._open(config, services, authenticator)
        except BaseException:
            self._release_after_failed_start()
            raise

    def _open(self, config: NodeConfig, services: Sequence[ClusteredService],
              authenticator: Optional[Authenticator]) -> None:
        """Everything a node opens once it holds its data dir's lock (recovery, sockets, the
        services' on_start): if it raises, ``_release_after_failed_start`` gives it all back."""
        self._errors = ErrorLog(config.data_dir)
        self._drop_log = BurstLogger(self.log)
        self._auth_error_kinds: set = set()   # exception types logged in full once
        self.failure: Optional[BaseException] = None
        self._closed = False          # close() has begun: the duty cycle does nothing more
        self._close_done = threading.Event()   # close() has finished every closer
        # "closer": (thread, token) of the one close() that closes; others wait for it (or
        # return, on its own thread): see close()
        self._close_claim: dict = {}
        # Held by every do_work() and by close() from its hand-over to the end: an
        # application driving the node itself (invoker mode) and a close() from another
        # thread (a signal or HTTP handler) would otherwise run two cycles at once, or close
        # sockets and the archive under a running one. Reentrant: close() from a callback
        # runs at the end of the do_work() that holds it.
        self._drive_lock = threading.RLock()
        self._cycle_thread = None     # the thread inside _cycle now (close() from a callback)
        self._driving = None          # the thread inside do_work() now
        self._close_after_cycle = None  # close() asked from inside a cycle: (timeout_ms,)
        self._thread: Optional[threading.Thread] = None
        self._stop = threading.Event()
        self._clock = time.monotonic_ns
        # cluster time (the module's clock): epoch ns; the rest of the node runs on _clock
        self._cluster_clock = epoch_anchored_clock()
        self._cluster_offset_ns = self._cluster_clock.offset_ns
        self._stop_by_action = False      # a cluster shutdown/abort told this node to close
        self._apply_budget_ns = max(_MS, int(config.heartbeat_interval_ms * _MS * _APPLY_BUDGET_SHARE))
        self._slow_cycle_ns = config.heartbeat_interval_ms * _MS   # longer: _note_slow_cycle
        self._backlog: list = []      # (term, committed index) while applying behind: _note_backlog
        self._slow_cycles = 0
        self._slow_cycle_warn_at_ns = 0
        # A Ready is advanced before its sync finishes (advance(rd, durable=False)): the core
        # steps on meanwhile. _unsynced_hi: the last index written but not yet reported durable
        # to the core (0: none); _unsynced_since_ns: since when the sync has made no progress;
        # _held: (index, messages): a follower's acknowledgements (vouches_for_log), sent once
        # the log is durable up to index
        self._unsynced_hi = 0
        self._unsynced_since_ns = 0
        self._sync_slow = False             # this wait was counted as slow already
        self._sync_stalled = False          # ... and has made no progress for _SYNC_STALL_NS
        self._stall_handover_ns = 0         # when this stall last made the leader hand over
        self._held: deque = deque()
        self._slow_sync_warn_at_ns = 0

        # -- archive and recovery ---------------------------------------------------------
        check_identity(config.data_dir, config.cluster_id, config.member_id)
        self.archive = Archive.open(config.data_dir, file_sync=config.file_sync,
                                    segment_bytes=config.segment_bytes)
        recovered = self.archive.recover(require_node_state=True)
        snap = recovered.snapshot
        self.log.info("recovered: term=%d voted_for=%s log=[%d, %d] commit=%d snapshot=%s",
                      recovered.hard_state.term, recovered.hard_state.voted_for,
                      recovered.log.first_index, recovered.log.last_index,
                      recovered.commit_index,
                      "none" if snap is None else f"index {snap.index} term {snap.term}")
        cut = getattr(recovered, "cut", None)
        if cut is not None and not cut.clean and cut.reason.startswith("no segment holds"):
            self.log.warning("recovery dropped the log from index %d on (%s): the segments "
                             "after the gap held nothing the member had reported kept (its "
                             "files deleted while it ran?); it catches up from the leader",
                             cut.index, cut.reason)
        elif cut is not None and not cut.clean:
            self.log.warning("recovery cut the log at index %d (%s, %s offset %s): a torn or "
                             "damaged tail past the durable region was removed", cut.index,
                             cut.reason, cut.path, cut.offset)
        for name in getattr(recovered, "stray_files_removed", ()):
            self.log.warning("recovery removed %s: a snapshot file a crash left unfinished or "
                             "unrecorded", name)
        restored_log_end, unusable = read_restored_log_end(config.data_dir)
        if unusable:
            self.log.warning("%s: the old term entries it replays may be reported as another "
                             "[[members]] list (harmless)", unusable)
        elif restored_log_end:
            self.log.info("restored from a backup: the term entries up to index %d carry the "
                          "old cluster's member list, which is not compared with this one's",
                          restored_log_end)
        # the module's settings before the core: a leader writes its values of those every
        # member must share into its term's first entry, after its service list
        self._client_of_endpoint: dict = {}
        self._endpoint_of_client: dict = {}     # the reverse: a lost client's entry in O(1)
        module_config = ModuleConfig(
            members={m.id: format_endpoint(m.host, m.ingress_port) for m in config.members},
            session_timeout_ns=config.session_timeout_ms * _MS,
            reply_cache_messages=config.reply_cache_messages,
            max_sessions=config.max_sessions,
            max_timers=config.max_timers,
            max_message_bytes=config.max_message_bytes,
            authenticator=authenticator or Authenticator(),
            client_ref_of_endpoint=self._client_of_endpoint.get,
            on_authenticator_error=self._on_authenticator_error,
            on_session_closed=self._on_session_closed,
            on_session_opened=self._on_session_opened,
            on_connect_refused=self._let_client_go,
            members_digest=members_digest(config.members),
            restored_log_end=restored_log_end)
        voters = tuple(m.id for m in config.members)
        core_config = CoreConfig(
            member_id=config.member_id, voters=voters,
            election_timeout_ns=config.election_timeout_ms * _MS,
            heartbeat_interval_ns=config.heartbeat_interval_ms * _MS,
            leader_heartbeat_timeout_ns=config.leader_heartbeat_timeout_ms * _MS,
            max_append_bytes=config.max_append_bytes,
            term_entry_tail=term_entry_tail(services, module_config.replicated_settings()),
            # the service list only: a member refuses its vote over another list, never over
            # other settings (a rolling change of one restarts members one by one)
            ballot_tag=service_set_tag(services))
        self.core = RaftCore(core_config, rng=random.Random(), hard_state=recovered.hard_state,
                             log=recovered.log, commit_index=recovered.commit_index)
        self._ballot_tag_reported: set = set()
        self._pause_cap_warned_ns = 0        # the largest capped pause already warned about
        self._service_names = service_names(services)
        self.core.on_ballot_tag_mismatch = self._on_ballot_tag_mismatch
        # A member on an empty data dir (first start, or its dir emptied) may have lost its log
        # and its vote: it withholds its vote from members with a non-empty log until it has
        # caught up (RaftCore.rejoining), marked on disk until then so that a restart midway
        # keeps withholding. A cluster's first election (every log empty) is unaffected.
        self._rejoin_mark = os.path.join(config.data_dir, REJOIN_MARK)
        empty = recovered.log.last_index == 0 and recovered.snapshot is None
        marked = os.path.exists(self._rejoin_mark)
        # unless the operator prepared the dir for a member that never ran (new_member.py):
        # one start only, the file taken away (durably) at the end of a start that succeeded,
        # before the first duty cycle (a start that fails before, say on a port in use, has
        # voted for nothing and leaves it for the next)
        self._new_member = os.path.lexists(os.path.join(config.data_dir, NEW_MEMBER_FILE))
        if self._new_member:
            if empty and not marked:
                self.log.info("a new member (its data dir was prepared by aeronpy tool "
                              "new-member): it votes from its first start")
                empty = False
            else:
                self.log.warning("%s removed unused: the data dir holds a log or a rejoining "
                                 "mark already", NEW_MEMBER_FILE)
        if empty or marked:
            _write_rejoin_mark(self._rejoin_mark)
            self.core.rejoining = True
        # payload chunks the log releases (compaction after a snapshot, a cut tail) are freed
        # on the archive's remover thread: an munmap of a few MiB is not the duty cycle's
        recovered.log.retire = self.archive.release_later

        # -- transports -----------------------------------------------------------------
        me = config.member
        secret = config.secret
        # An AppendEntries holds up to max_append_bytes of entries, or one entry past that: a
        # message of up to max_message_bytes in its envelope (the stream's default, 4 MiB, once
        # capped it whatever the config said, and a bigger entry stopped the leader).
        consensus_bytes = config.max_append_bytes + client_stream_message_bytes(
            config.max_message_bytes)
        stream_hb_ns = config.stream_heartbeat_interval_ms * _MS
        self.consensus = UdpTransport(me.host, me.consensus_port, config.cluster_id, config.member_id,
                                      secret=secret, mtu=config.mtu_bytes, stream_id=CONSENSUS_STREAM_ID,
                                      config=StreamConfig.for_message_bytes(
                                          consensus_bytes, heartbeat_interval_ns=stream_hb_ns),
                                      rcvbuf_bytes=config.socket_rcvbuf_bytes,
                                      sndbuf_bytes=config.socket_sndbuf_bytes)
        for peer in config.peers:
            self.consensus.add_peer(peer.id, peer.host, peer.consensus_port)
        # Clients are told only endpoints, not the cluster id: the ingress stream uses the
        # client cluster id (0); clients are vetted by the Authenticator, not by frame ids.
        self.ingress = UdpTransport(me.host, me.ingress_port, INGRESS_CLUSTER_ID, config.member_id,
                                    secret=None, mtu=config.mtu_bytes,
                                    accept_clients=True, on_new_client=self._on_new_client,
                                    on_client_lost=self._on_client_lost,
                                    # room for every session and as many clients again on
                                    # their way in or out (refused, or closed and not yet let go)
                                    max_clients=max(1024, 2 * config.max_sessions + 64),
                                    client_timeout_ns=max(config.session_timeout_ms * _MS, 1_000 * _MS),
                                    # (never below the stream default: a message a little
                                    # over max_message_bytes reaches the module, which answers
                                    # MessageTooLargeError instead of a silent transport drop)
                                    config=StreamConfig.for_message_bytes(
                                        client_stream_message_bytes(config.max_message_bytes),
                                        heartbeat_interval_ns=stream_hb_ns,
                                        idle_interval_ns=CLIENT_STREAM_IDLE_NS),
                                    rcvbuf_bytes=config.socket_rcvbuf_bytes,
                                    sndbuf_bytes=config.socket_sndbuf_bytes)

        # -- consensus module and services ----------------------------------------------
        self.module = ConsensusModule(config.member_id, self.core, list(services), module_config,
                                      now_ns=self._cluster_clock())
        self.module.start(self._open_snapshots(recovered))
        self._replay_committed()
        if 0 < self.module.cluster_time_ns < _EPOCH_2001_NS:
            self.log.warning(
                "the log's cluster time (%d ns) is not epoch time: it was stamped by an aeronpy "
                "from before 2026-11-27 (the leader's monotonic clock). The next entry jumps to "
                "epoch time, so timers pending now fire at once (docs/operations.md, "
                "\"Cluster time\")", self.module.cluster_time_ns)

        # -- counters and idling -------------------------------------------------------
        self.counters = CountersWriter.for_config(config, extra_slots=TRANSPORT_EXTRA_SLOTS + ADMIN_EXTRA_SLOTS
                                                  + REFUSAL_EXTRA_SLOTS,
                                                  enum_names=_ENUM_NAMES)
        self._values = self.counters.values
        self._lag_slot = self.counters.index("follower_lag_max")
        self._admin = NodeAdmin(self)    # after the replay: replayed shutdowns are history
        self._transport_counters = TransportCounterPublisher(
            self.counters, (self.consensus, self.ingress),
            sources={"module": self.module.counters, "core": self.core.counters})
        self._transport_counters.drop_log = self._drop_log
        self._transport_counters.leader_heard = self.core.heard_leader_since_campaign
        fds = [self.consensus.socket.fileno(), self.ingress.socket.fileno()]
        # A background sync that completes writes a byte here, so a duty cycle parked while
        # writes wait for their fsync wakes at once (it used to find out at its next short
        # park, up to ~130 us late with a ~100 us fsync).
        self._sync_pipe = None
        self._sync_signalled = False  # set after each byte written: drain only then
        # the sync thread's write and close()'s closing of the pipe exclude each other: a
        # write to a descriptor closed meanwhile could reach whatever reused its number
        self._sync_pipe_lock = threading.Lock()
        if self.archive.on_synced(self._signal_synced):
            self._sync_pipe = os.pipe()
            for fd in self._sync_pipe:
                os.set_blocking(fd, False)
            fds.append(self._sync_pipe[0])
        # close() from another thread writes a byte here: a node parked until its next timer
        # (up to _IDLE_PARK_MAX_NS) stops at once
        self._wake_pipe = os.pipe()
        for fd in self._wake_pipe:
            os.set_blocking(fd, False)
        fds.append(self._wake_pipe[0])
        self._consensus_fd, self._ingress_fd = fds[0], fds[1]
        self._woken_by = None        # after a park: the fds select found readable
        self._last_work_ns = 0       # the end of the last duty cycle that did work
        self._wait_all = select_waiter(fds, note=self._note_woken)
        self._wait_but_consensus = select_waiter(fds[1:], note=self._note_woken)
        self._idle = idle_strategy_from_name(config.idle_strategy, waiter=self._park,
                                             park_s=self._idle_park_s)
        self._file_sync = config.file_sync != "none"
        self._decode = _codec.decode
        self._encode = _codec.encode
        self._step_path = StepPath(self.core)
        # while rejoining every AppendEntries goes through RaftCore.step, which notes the
        # leader's commit index to catch up to (the compiled path would skip that)
        self._fast_step = _not_taken if self.core.rejoining else self._step_path.on_message
        self._counters_due_ns = 0
        self._files_check_due_ns = 0
        self._cycles_unpublished = 0   # duty cycles run since the last publish
        self._work_unpublished = False # a cycle did work since the last publish
        self._cycle_max_ns = 0         # the longest of them
        self._publish_counters()
        self._metrics = self._start_metrics_server(config)
        if self._new_member:
            take_new_member_mark(config.data_dir)
        self.log.info("started: member %d of cluster %d, %d members, data dir %s",
                      config.member_id, config.cluster_id, len(config.members), config.data_dir)

    def _start_metrics_server(self, config: NodeConfig):
        """Serve the counters as Prometheus text when ``metrics_http_port`` is set, for an
        embedded node as for ``aeronpy node`` (a thread of its own; it reads the counters
        file the duty cycle publishes, so it never touches the duty cycle's state)."""
        if config.metrics_http_port is None:
            return None
        from aeronpy.cluster.metrics import MetricsServer
        try:
            server = MetricsServer(config.data_dir, config.metrics_http_port).start()
        except OSError as exc:
            raise ConfigError("metrics_http_port", f"cannot listen on 127.0.0.1:"
                                                   f"{config.metrics_http_port}: {exc}") from exc
        self.log.info("metrics at %s", server.url)
        return server

    def _close_metrics_server(self) -> None:
        server, self._metrics = self.__dict__.get("_metrics"), None
        if server is not None:
            server.close()

    def _release_after_failed_start(self) -> None:
        """Close what ``_open`` opened before it raised, and release the data dir's lock, so a
        library user's failed start holds no sockets, files or lock until garbage collection
        (``aeronpy node`` then records the failure in the data dir: nodefiles)."""
        admin = self.__dict__.get("_admin")
        if admin is not None:
            admin.gate.close()
        self._close_metrics_server()
        for name in ("ingress", "consensus", "archive", "counters", "_errors"):
            resource = self.__dict__.get(name)
            if resource is not None:
                try:
                    resource.close()
                except Exception:  # noqa: BLE001 - the first failure is the one to report
                    pass
        if self.__dict__.get("_sync_pipe") is not None:
            self._close_sync_pipe()
        if self.__dict__.get("_wake_pipe") is not None:
            self._close_wake_pipe()
        self._closed = True
        self._pid_file.release()

    # ------------------------------------------------------------------ recovery helpers
    def _open_snapshots(self, recovered):
        """Service snapshot streams for ``on_start`` (None for a node without a snapshot).
        Creates the snapshot machinery (aeronpy.cluster.node_snapshots) that the hooks use."""
        from aeronpy.cluster.node_snapshots import NodeSnapshots
        self.snapshots = NodeSnapshots(self)
        self.snapshots.snapshotter.pause_listeners.append(self._fit_timeouts_to_pause)
        self.module.service_set_listeners.append(self._on_divergence)
        self.module.config_mismatch_listeners.append(self._on_divergence)
        from aeronpy.cluster.state_digests import StateDigests
        self.state_digests = StateDigests(self.module, self.snapshots.snapshotter,
                                          self._on_divergence)
        return self.snapshots.open_recovered(recovered)

    def _replay_committed(self) -> None:
        """Apply the entries recovery knows were committed, before joining the cluster."""
        log = self.core.log
        end = self.core.commit_index
        start = max(self.module.applied_index + 1, log.first_index)
        for index in range(start, end + 1):
            self.module.apply(index, log.term_at(index), log.type_at(index), log.payload_at(index))
        if end >= start:
            self.log.info("replayed %d committed entries into the services", end - start + 1)

    # ------------------------------------------------------------------ client bookkeeping
    def _on_new_client(self, peer_id: int, address: tuple) -> None:
        endpoint = format_endpoint(address[0], address[1])
        self._client_of_endpoint[endpoint] = peer_id
        self._endpoint_of_client[peer_id] = endpoint

    def _on_client_lost(self, peer_id: int) -> None:
        # (a scan of every endpoint here made a mass expiry of N clients cost O(N^2): 79 ms
        # of one duty cycle for 1,000 of them)
        endpoint = self._endpoint_of_client.pop(peer_id, None)
        if endpoint is not None and self._client_of_endpoint.get(endpoint) == peer_id:
            del self._client_of_endpoint[endpoint]

    def _on_session_closed(self, endpoint: str) -> None:
        """A session closed (applied here): its client's transport place is freed
        _CLOSED_CLIENT_GRACE_NS later, long enough for the close to reach it (and be
        repaired if lost), instead of after session_timeout_ms of its silence."""
        ref = self._client_of_endpoint.get(endpoint)
        if ref is not None:
            self._let_client_go(ref)

    def _on_session_opened(self, endpoint: str) -> None:
        """A session opened (applied here): a client whose place a close was freeing (it
        closed and connected again at once, from the same address) keeps it."""
        ref = self._client_of_endpoint.get(endpoint)
        if ref is not None:
            self.ingress.keep_client(ref)

    def _let_client_go(self, client_ref) -> None:
        """A client with no session here (closed, or its connect refused): its transport place
        is freed _CLOSED_CLIENT_GRACE_NS from now, once the answer has reached it."""
        self.ingress.expire_client(client_ref, _CLOSED_CLIENT_GRACE_NS)

    # ------------------------------------------------------------------ duty cycle
    def do_work(self) -> int:
        """One duty cycle; returns how much work it did (0 lets the idle strategy back off).
        For invoker mode: a node started with ``start()`` runs its own duty-cycle thread, and
        a call from another thread raises RuntimeError (two drivers corrupt the core)."""
        me = threading.current_thread()
        with self._drive_lock:
            thread = self._thread      # under the lock: start() sets it holding the lock
            if thread is not None and thread is not me:
                raise RuntimeError(f"node {self.member_id} runs its own duty-cycle thread "
                                   "(start()): do not also call do_work()")
            self._driving = me         # close() from a signal handler here defers to the end
            try:
                work = self._cycle()
            finally:
                self._driving = None
            deferred = (self._stop_by_action or self._close_after_cycle) and self._thread is None
        if deferred:
            # invoker mode: the caller sees node.closed. Outside the drive lock: a close()
            # another thread claimed meanwhile waits for that lock, and this one for it
            self._close_deferred()
        return work

    @property
    def _close_claimed(self) -> bool:
        """A close() has claimed the node (the claim itself, not a copy of it)."""
        return "closer" in self._close_claim

    def _cycle(self) -> int:
        if self._closed:
            return 0
        if self.failure is not None:
            # a failed node runs no more cycles: its core may wait for an advance(rd) that
            # never comes, and a new error must not replace the cause in node.failure
            raise RuntimeError(f"node {self.member_id} failed and stopped: {self.failure!r}; "
                               "close() it") from self.failure
        clock = self._clock
        start_ns = clock()
        self._cycle_thread = threading.current_thread()
        try:
            work = self._do_work(start_ns)
        except BaseException as exc:  # a fault we must not continue past: stop, don't diverge
            # (BaseException: a service's sys.exit() on the duty-cycle thread ended it with
            # nothing recorded, the node neither running nor failed)
            self._fail(exc)
            raise
        finally:
            self._cycle_thread = None
        end_ns = clock()
        cycle_ns = end_ns - start_ns
        self._cycles_unpublished += 1
        if cycle_ns > self._cycle_max_ns:
            self._cycle_max_ns = cycle_ns
            if cycle_ns > self._slow_cycle_ns:
                self._note_slow_cycle(cycle_ns, end_ns)
        if end_ns >= self._counters_due_ns or (not work and self._work_unpublished):
            self._counters_due_ns = end_ns + _COUNTERS_INTERVAL_NS
            self._work_unpublished = False
            self._publish_counters()
            self._transport_counters.maybe_publish(end_ns)
        elif work:
            self._work_unpublished = True    # published by the first empty cycle after it
        if work:
            self._last_work_ns = end_ns
        return work

    def _note_backlog(self, term: int, committed: int) -> None:
        """Entries up to ``committed`` were known committed while this member was in ``term``,
        and some are not applied yet (the apply budget ran out). A shutdown or abort entry
        among them is acted on as one ordered in that term (``committed_in_term``): its term
        may have ended before the member reached it, and the leader that ordered it may
        already have stopped."""
        backlog = self._backlog
        if backlog and backlog[-1][0] == term:
            backlog[-1] = (term, max(backlog[-1][1], committed))
        else:
            backlog.append((term, committed))
        applied = self.module.applied_index
        while backlog and backlog[0][1] <= applied:
            backlog.pop(0)

    def committed_in_term(self, index: int, term: int) -> bool:
        """This member learned that ``index`` was committed while it was in ``term``: in the
        current term, or during a backlog of committed entries it applies over several cycles
        (_note_backlog). What NodeAdmin asks of a shutdown or abort entry before acting on it."""
        if term == self.core.term:
            return True
        return any(t == term and index <= upto for t, upto in self._backlog)

    def _note_slow_cycle(self, cycle_ns: int, now_ns: int) -> None:
        """A cycle longer than heartbeat_interval_ms: heartbeats and acknowledgements waited
        behind it, and elections follow if it happens often or lasts long. Said at most once
        per _SLOW_CYCLE_WARN_NS (with how many since), so an operator sees the cause rather
        than only the elections. Only cycles that set a new maximum since the counters were
        last published are looked at (a cheap test on every cycle)."""
        self._slow_cycles += 1
        if now_ns < self._slow_cycle_warn_at_ns:
            return
        self.log.warning(
            "a duty cycle took %.0f ms, longer than heartbeat_interval_ms (%d ms; %d such "
            "cycle(s) since the last warning): heartbeats and acknowledgements waited behind "
            "it. A service callback or on_take_snapshot this slow risks elections "
            "(docs/programming.md, 'Slow callbacks'); so does a slow disk, where a new term's "
            "vote record or a truncation is synced on this thread", cycle_ns / 1e6,
            self.config.heartbeat_interval_ms, self._slow_cycles)
        self._slow_cycles = 0
        self._slow_cycle_warn_at_ns = now_ns + _SLOW_CYCLE_WARN_NS

    def _check_sync(self, now_ns: int) -> None:
        """Writes still wait for their sync, and the sync thread has finished nothing since
        _unsynced_since_ns (nor since its last step: a marker sync it ran first is progress
        too): past heartbeat_interval_ms that is a slow sync (_note_slow_sync). Past
        _SYNC_STALL_NS the member holds everything it sends until the sync moves
        (``sync_stalls``; a follower's heartbeat replies would keep a leader that can commit
        nothing through it in office), and a leader hands the leadership to its most
        up-to-date follower (``leader_sync_stalls``), again each _SYNC_STALL_NS the stall
        lasts while it still leads (a transfer that found no taker in time is aborted)."""
        waited = now_ns - max(self._unsynced_since_ns, self.archive.sync_progress_ns())
        core = self.core
        if not self._sync_slow and waited > self._slow_cycle_ns:
            self._note_slow_sync(now_ns, waited, leading=core.role == Role.LEADER)
        if waited <= _SYNC_STALL_NS:
            return
        if not self._sync_stalled:
            self._sync_stalled = True
            core.counters_add("sync_stalls")
            if core.role != Role.LEADER:
                self.log.warning(
                    "this member's log sync has made no progress for %.1f s (file_sync = %r): "
                    "until it does, this member answers nothing (no heartbeat reply, vote or "
                    "acknowledgement), so its leader does not count on it. Its disk is failing "
                    "or overloaded (docs/operations.md, 'A slow disk')", waited / 1e9,
                    self.config.file_sync)
        if core.role != Role.LEADER or now_ns - self._stall_handover_ns <= _SYNC_STALL_NS:
            return
        self._stall_handover_ns = now_ns
        core.counters_add("leader_sync_stalls")
        handed = core.transfer_leadership(None, now_ns)
        self.log.warning(
            "this leader's log sync has made no progress for %.1f s (file_sync = %r): %s. Its "
            "disk is failing or overloaded (docs/operations.md, 'A slow disk')", waited / 1e9,
            self.config.file_sync, "handing the leadership over" if handed
            else "no follower to hand the leadership to")

    def _note_slow_sync(self, now_ns: int, waited_ns: int, leading: bool) -> None:
        """A log sync has made no progress for longer than heartbeat_interval_ms. A follower's
        acknowledgements wait for it; a leader (``leading``) commits on its
        followers' copies meanwhile. Counted once per wait (``slow_log_syncs``), said at most
        once per _SLOW_CYCLE_WARN_NS: an operator then sees the disk behind the elections or
        the latency."""
        self._sync_slow = True
        self.core.counters_add("slow_log_syncs")
        if now_ns < self._slow_sync_warn_at_ns:
            return
        self._slow_sync_warn_at_ns = now_ns + _SLOW_CYCLE_WARN_NS
        if leading:
            self.log.warning(
                "this leader's log sync (file_sync = %r) has run %.0f ms, longer than "
                "heartbeat_interval_ms (%d ms): meanwhile entries commit only on its "
                "followers' copies, so one more slow or lost member stalls the cluster. The "
                "data dir's disk is slow (docs/operations.md, 'A slow disk'); slow_log_syncs "
                "counts these", self.config.file_sync, waited_ns / 1e6,
                self.config.heartbeat_interval_ms)
            return
        self.log.warning(
            "this member's log sync (file_sync = %r) has run %.0f ms, longer than "
            "heartbeat_interval_ms (%d ms): its acknowledgements wait for it. The data "
            "dir's disk is slow (docs/operations.md, 'A slow disk'); slow_log_syncs counts "
            "these", self.config.file_sync, waited_ns / 1e6, self.config.heartbeat_interval_ms)

    def _settled(self) -> bool:
        """Nothing a cycle that just did work left for an immediate next one: no Ready (new
        entries, commits, messages to send); nothing the module has due now (egress, acks,
        service messages to propose, a timer); no fsync, snapshot or admin action in
        progress."""
        return (not self._sync_signalled
                and not self.core.has_ready() and not self.snapshots.busy
                and not self._admin.pending
                and self.module.next_due_ns() - self._cluster_offset_ns > self._clock())

    def _idle_park_s(self) -> float:
        """How long the idle strategy may park after an empty cycle: 1 ms while the node did
        work in the last _QUIET_NS or has something in progress; else until the earliest
        timer of the core (heartbeat, election), the module (service timers, session
        timeouts, retries), the transports (STATUS, HEARTBEAT, re-NAK) and the copy of the
        transport counters (they lag by at most its 10 ms), at most _IDLE_PARK_MAX_NS. A
        park ends at once on a datagram, so only timers wait for it."""
        now = self._clock()
        if now - self._last_work_ns < _QUIET_NS or self._sync_signalled or self._admin.pending \
                or self.snapshots.busy or self._stop.is_set():
            return _PARK_NS / 1e9
        due = now + _IDLE_PARK_MAX_NS
        for d in (self.core.next_due_ns(),
                  self.module.next_due_ns() - self._cluster_offset_ns,
                  self.consensus.next_due_ns(), self.ingress.next_due_ns(),
                  self._transport_counters.due_after(self._last_work_ns)):
            if d < due:
                due = d
        return max(due - now, _PARK_NS) / 1e9

    def _park(self, timeout_s: float) -> bool:
        """The idle strategy's waiter: until a datagram, a wake-up pipe byte or timeout_s. A
        follower batching the appends that come while its sync runs does not watch the
        consensus socket until the batch window ends (else the park returned at once)."""
        left_ns = self._batching_left_ns(self._clock())
        if left_ns <= 0:
            return self._wait_all(timeout_s)
        return self._wait_but_consensus(min(timeout_s, left_ns / 1e9))

    def _batching_left_ns(self, now_ns: int) -> int:
        """How long this follower still leaves appends in the socket while its sync runs
        (_FOLLOWER_SYNC_BATCH_NS); 0 or less: it takes them now."""
        if not self._unsynced_hi or self.core.leader_state is not None:
            return 0
        return self._unsynced_since_ns + _FOLLOWER_SYNC_BATCH_NS - now_ns

    def _note_woken(self, readable: list) -> None:
        """After a park: which fds select found readable (the next cycle polls only those)."""
        self._woken_by = readable

    def _do_work(self, now_ns: int) -> int:
        # The first cycle after a park polls only the sockets select found readable (an empty
        # poll is a syscall, ~1 us, on the way to the answer); a datagram that came to the
        # other one since is polled by the next cycle, which this one's work makes run at once.
        work = 0
        woken_by = self._woken_by
        self._woken_by = None
        if woken_by is not None:
            self._stamp_transports(now_ns)
        if (woken_by is None or self._consensus_fd in woken_by) \
                and (not self._unsynced_hi or self._batching_left_ns(now_ns) <= 0):
            work += self.consensus.poll(self._on_consensus_message, _POLL_LIMIT)
        if woken_by is None or self._ingress_fd in woken_by:
            work += self.ingress.poll(self._on_ingress_message, _POLL_LIMIT)
        now_ns = self._clock()
        self.core.tick(now_ns)
        work += self.module.tick(now_ns + self._cluster_offset_ns)
        work += self.snapshots.do_work(now_ns)
        if self._admin.pending:
            work += self._admin.do_work(now_ns)
        work += self._process_ready(now_ns)
        if self.core.rejoining:
            self._check_rejoined()
        # drain_egress, not egress.drain: it first queues the SessionAcks of messages the
        # service did not answer (and of re-sent duplicates), which release client windows
        if type(self)._send_egress is _SEND_EGRESS:
            # no Python call per message: replies encoded in C, straight into the transport
            work += self.module.drain_egress_encoded(self.ingress.send, self._encode)
        else:   # _send_egress is wrapped (bench/latency_trace.py stamps egress): through it
            work += self.module.drain_egress(self._send_egress, wire=True)
        work += self.consensus.do_work(now_ns)
        work += self.ingress.do_work(now_ns)
        if now_ns >= self._files_check_due_ns:
            self._files_check_due_ns = now_ns + _FILES_CHECK_NS
            self.archive.check_files()       # deleted under us (rm -rf): stop, said why
        return work

    def _stamp_transports(self, now_ns: int) -> None:
        """A transport stamps what it sends with the time of its last poll or timer run. One
        not polled after a long park (up to _IDLE_PARK_MAX_NS) stamped a timer's send (the
        leader's heartbeat) that far back, and its sender followed the data with a needless
        stream HEARTBEAT ("nothing sent for heartbeat_interval_ns"): 20 a second per follower
        from an idle leader (tests/cluster/test_node_idle_park.py)."""
        self.consensus._now_ns = self.ingress._now_ns = now_ns

    def _on_consensus_message(self, peer_id: int, payload: memoryview) -> None:
        # the steady-state AppendEntries (follower) and AppendResponse (leader), stepped in C
        # (aeronpy._steppath); any other message, or case it does not take, is decoded here
        if self._fast_step(peer_id, payload, self._clock()):
            return
        try:
            msg = self._decode(payload)
        except _codec.DecodeError:
            self._transport_counters.decode_drops += 1
            self._drop_log.record("malformed consensus message")
            return
        if type(msg) in _TRANSFER_MESSAGES:
            self.snapshots.on_transfer_message(peer_id, msg, self._clock())
            return
        self.core.step(peer_id, msg, self._clock())

    def _on_ingress_message(self, client_ref: int, payload: memoryview) -> None:
        try:
            # a SessionMessage, the common case, is handled here with no message object (and
            # proposed in C when it is the next message of a session of this ready leader)
            if self.module.ingress_path.on_frame(client_ref, payload, self._cluster_clock):
                return
            msg = self._decode(payload)
        except _codec.DecodeError:
            self._transport_counters.decode_drops += 1
            self._drop_log.record("malformed ingress message")
            return
        if type(msg) is _AdminRequest:
            self._admin.on_admin_request(client_ref, msg)
            return
        self.module.on_ingress(client_ref, msg, self._cluster_clock())

    def _on_authenticator_error(self, exc: BaseException) -> None:
        """The application's authenticator raised: the client was refused; say why here (the
        first of a burst in full, then a count per kind, so a client retrying cannot flood)."""
        kind = type(exc).__name__
        if kind not in self._auth_error_kinds and len(self._auth_error_kinds) < 64:
            self._auth_error_kinds.add(kind)
            self.log.error("authenticator raised %r: the connect was refused", exc,
                           exc_info=(type(exc), exc, exc.__traceback__))
        else:
            self._drop_log.record(f"connect refused: the authenticator raised {kind}")

    def _send_egress(self, client_ref, message) -> bool:
        """One egress message (the drain's per-message path; drain_egress_encoded does the
        same in C: a None client_ref drops, only back pressure keeps it queued)."""
        if client_ref is None:
            return True   # the client has no stream to this member: drop (it reconnects)
        # replies come encoded already (drain_egress(wire=True)); events and acks as objects
        code = self.ingress.send(client_ref, message if type(message) is bytes else self._encode(message))
        return code > 0 or code != -2   # only back pressure keeps the message queued

    def _signal_synced(self) -> None:
        """On the archive's sync thread: wake the duty cycle (a full pipe is woken already)."""
        with self._sync_pipe_lock:
            pipe = self._sync_pipe
            if pipe is None:
                return
            try:
                os.write(pipe[1], b"\0")
            except OSError:          # BlockingIOError: a wake-up is waiting already
                pass
        # after the write: a duty cycle that sees the flag finds every byte written so far
        self._sync_signalled = True

    def _process_ready(self, now_ns: int) -> int:
        archive = self.archive
        work = 0
        if self._sync_signalled:
            # the wake-ups so far (the state is read below); cleared first, so a byte written
            # after this read sets the flag again and is drained by the next cycle
            self._sync_signalled = False
            try:
                os.read(self._sync_pipe[0], 4096)
            except OSError:
                pass
        core = self.core
        if self._unsynced_hi:
            synced = archive.poll_synced()
            before = core.persisted_index
            core.note_durable(synced)      # a leader's own copy counts from here (commits)
            if self._held:
                work += self._release_held(synced)
            if synced >= self._unsynced_hi:
                self._unsynced_hi = 0
            elif core.persisted_index > before:
                self._start_sync_wait(now_ns)   # progress: what is left waits for the next
            else:
                self._check_sync(now_ns)
        if not core.has_ready():
            return work
        rd = core.ready()
        if rd.send_first and rd.messages:
            # a leader's appends go out before its own write (and fsync): the followers write
            # theirs meanwhile, and its copy counts for a quorum only once synced
            self._send_messages(rd.messages)
        if rd.truncate_from is not None:
            archive.truncate_from(rd.truncate_from)     # waits for a sync in flight
            self._unsynced_hi = min(self._unsynced_hi, rd.truncate_from - 1)
            if self._held:
                # acknowledgements of the cut entries must not go out once new ones at their
                # indexes are durable; dropped like lost datagrams (the leader re-sends)
                self._drop_held()
        if rd.hard_state is not None:
            archive.save_hard_state(rd.hard_state.term, rd.hard_state.voted_for)
        if rd.persist_hi > rd.persist_lo:
            archive.append_from(core.log, rd.persist_lo, rd.persist_hi)
            archive.record_term_starts(core.log, rd.persist_lo, rd.persist_hi)  # once per term
            if self._file_sync:
                archive.request_sync()
        if not self._file_sync:
            self._finish_ready(rd, now_ns)
            return work + 1
        synced = archive.poll_synced()
        if synced >= rd.persist_hi - 1:
            if self._held:
                self._release_held(synced)   # (older first)
            self._unsynced_hi = 0            # every write so far is durable
            self._finish_ready(rd, now_ns)
            return work + 1
        # The sync runs on its thread (group commit: what arrives meanwhile joins the next) and
        # the core steps on. A follower's acknowledgements (any Ready but a leader's send_first
        # one) wait for every write so far (_held); its votes, refusals and heartbeat replies
        # go now (vouches_for_log). A leader's own copy counts once the sync is reported.
        if not self._unsynced_hi:
            self._start_sync_wait(now_ns)
        self._unsynced_hi = rd.persist_hi - 1
        if rd.messages and not rd.send_first:
            rd.messages, vouching = _split_vouching(rd.messages, self._sync_stalled)
            if vouching:
                self._hold(rd.persist_hi - 1, vouching)
        self._finish_ready(rd, now_ns, durable=False)
        return work + 1

    def _start_sync_wait(self, now_ns: int) -> None:
        """Writes wait for a sync from now: its slow-sync and stall timing start afresh."""
        self._unsynced_since_ns, self._sync_slow, self._stall_handover_ns = now_ns, False, 0
        self._sync_stalled = False

    def _hold(self, index: int, messages: list) -> None:
        held = self._held
        if len(held) >= _HELD_READIES_MAX:
            self.core.counters_add("held_messages_dropped", len(held.popleft()[1]))
        held.append((index, messages))

    def _drop_held(self) -> None:
        self.core.counters_add("held_messages_dropped",
                               sum(len(messages) for _index, messages in self._held))
        self._held.clear()

    def _release_held(self, synced: int) -> int:
        """Send the held messages whose writes are durable now, oldest first. Of the
        acknowledgements to one leader in one term only the highest goes: a sync releases one
        per append that came in while it ran, and the rest say less."""
        held = self._held
        if not held or held[0][0] > synced:
            return 0
        released = []
        while held and held[0][0] <= synced:
            released.extend(held.popleft()[1])
        if len(released) > 1:
            best = {}
            for i, (to, msg) in enumerate(released):
                if type(msg) is _AppendResponse and msg.success:
                    key = (to, msg.term)
                    j = best.get(key)
                    if j is None or msg.match_index >= released[j][1].match_index:
                        best[key] = i
            released = [m for i, m in enumerate(released) if type(m[1]) is not _AppendResponse
                        or not m[1].success or best[(m[0], m[1].term)] == i]
        self._send_messages(released)
        return 1

    def _send_messages(self, messages) -> None:
        send = self.consensus.send
        encode = self._encode
        for to, msg in messages:
            send(to, encode(msg))
        # Out now, not at the end of the cycle: the peers' next step (a follower's append,
        # the leader's commit) waits for these, not for our apply, egress and timers.
        self.consensus.flush()

    def _finish_ready(self, rd, now_ns: int, durable: bool = True) -> None:
        if rd.messages and not rd.send_first:
            self._send_messages(rd.messages)
        if rd.apply_hi > rd.apply_lo:
            committed_hi = rd.apply_hi
            end = self.module.apply_ready(rd, now_ns + self._cluster_offset_ns,
                                          self._apply_budget_ns)
            if end < committed_hi:
                # the budget ran out: the rest is applied in the next cycles, after the
                # sockets and timers (advance() takes this as what was applied, and the core
                # hands the rest out again), so slow callbacks cannot starve heartbeats
                rd.apply_hi = end
                self._note_backlog(self.core.term, committed_hi - 1)
            elif self._backlog:
                self._backlog.clear()          # caught up
            if type(self)._send_egress is _SEND_EGRESS:
                # the replies go out now, not after the rest of the cycle: the client waits
                self.module.drain_egress_encoded(self.ingress.send, self._encode)
                self.ingress.flush()
            self.archive.note_commit_index(committed_hi - 1)
        if rd.role_changed is not None or rd.leader_changed:
            self._admin.on_role_change()
            self._counters_due_ns = 0      # a reader sees a new role or leader at once
        if rd.snapshot_requests:
            self.snapshots.on_snapshot_requests(rd.snapshot_requests, now_ns)
        self.core.advance(rd, durable)
        if rd.apply_hi > rd.apply_lo:
            self.snapshots.after_apply()

    # ------------------------------------------------------------------ counters
    def _publish_counters(self) -> None:
        v = self._values
        if self._cycles_unpublished:
            self.counters.observe_duty_cycles(self._cycles_unpublished, self._cycle_max_ns)
            self._cycles_unpublished = self._cycle_max_ns = 0
        core = self.core
        v[_ROLE] = int(core.role)
        v[_TERM] = core.term
        v[_LEADER] = -1 if core.leader_id is None else core.leader_id
        v[_COMMIT] = core.commit_index
        v[_APPEND] = core.log.last_index
        v[_ELECTION_STATE] = core.election.state
        v[_SESSIONS] = len(self.module.sessions)
        admin = self._admin
        if core.election.transition_count != admin.transitions_seen or core.term != admin.term_seen:
            admin.observe_election()
        v[_CM_STATE] = admin.state_code
        # a follower that is down, cut off one way or slow shows here, while its own role
        # and counters may look healthy (the partition trial's one-way cut)
        v[self._lag_slot] = follower_lag_max(core)
        self.counters.touch()

    def _fail(self, exc: BaseException) -> None:
        self.failure = exc
        self._values[_ERRORS] += 1
        self._admin.failed()
        # logged first, and a record that fails (a full disk) only adds a line: the reason
        # for stopping is told either way
        self.log.error("node stopping after an unrecoverable error: %r", exc)
        try:
            self._errors.record(exc)
        except Exception as record_exc:  # noqa: BLE001
            self.log.error("could not record it in errors.log: %r", record_exc)

    # ------------------------------------------------------------------ read-only views
    @property
    def role(self) -> Role:
        return Role(int(self.core.role))

    @property
    def leader_id(self) -> Optional[int]:
        return self.core.leader_id

    @property
    def term(self) -> int:
        return self.core.term

    @property
    def commit_index(self) -> int:
        return self.core.commit_index

    @property
    def closed(self) -> bool:
        """True once the node has finished closing (files, sockets and counters closed), so a
        caller that exits on it (``aeronpy node``) never cuts a close short."""
        return self._close_done.is_set()

    # ------------------------------------------------------------------ thread mode
    def start(self) -> "ClusterNode":
        """Run the duty cycle on a background thread until ``close()``."""
        if self._thread is not None:
            raise RuntimeError("node already started")
        if self._closed or self._close_claimed:
            raise RuntimeError("node is closed: a closed node cannot be started again")
        if self.failure is not None:
            raise RuntimeError(f"node {self.member_id} failed and stopped: {self.failure!r}")
        if not self._drive_lock.acquire(blocking=False):
            raise RuntimeError(f"node {self.member_id}: do_work() is running on another "
                               "thread: do not also start() it")
        try:
            thread = threading.Thread(target=self._pin_then_run,
                                      name=f"aeronpy-node-{self.member_id}", daemon=True)
            if self._close_claimed:     # closed meanwhile (a signal handler's close())
                raise RuntimeError("node is closed: a closed node cannot be started again")
            self._thread = thread
        finally:
            self._drive_lock.release()
        thread.start()
        return self

    def _pin_then_run(self) -> None:
        """The duty-cycle thread: pin itself to ``cpu_affinity`` and take ``sched_policy``
        (when set), then loop."""
        if self._close_claimed:        # closed before this thread ran: nothing to pin or fail
            return
        if self.config.cpu_affinity is not None and not self._pin_duty_cycle_thread():
            return
        if self.config.sched_policy != "normal" and not self._set_duty_cycle_policy():
            return
        self._run()

    def _run(self) -> None:
        idle = self._idle.idle
        stop = self._stop
        settled = self._settled
        while not stop.is_set() and not self._close_claimed:
            try:
                work = self._cycle()
            except BaseException:     # recorded by _cycle (node.failure)
                break
            try:
                # After a cycle that did work, the next one usually finds nothing (~5 us each,
                # one or two per request on every member): park instead when nothing is left
                # for it. A datagram that came meanwhile ends the park at once; a timer waits
                # at most the 1 ms park that follows work anyway.
                idle(0 if work and settled() else work)
            except BaseException as exc:
                # the park failing (a descriptor the waiter refuses, say) ends the thread as
                # a failed cycle does: recorded, never a member that silently stops
                self._fail(exc)
                break
        if self._stop_by_action or self._close_after_cycle:
            self._close_deferred()

    def _pin_duty_cycle_thread(self) -> bool:
        """Pin the calling (duty-cycle) thread to ``cpu_affinity``; pid 0 means this thread on
        Linux. A node that cannot pin fails rather than run unpinned on a latency-critical box."""
        cpus = self.config.cpu_affinity
        try:
            os.sched_setaffinity(0, cpus)
        except Exception as exc:  # OSError (CPU gone from the cpuset), or no such call here
            self._fail(ConfigError("cpu_affinity", f"cannot pin the duty-cycle thread to CPUs "
                                                   f"{list(cpus)}: {type(exc).__name__}: {exc}"))
            return False
        self.log.info("duty-cycle thread pinned to CPUs %s", list(cpus))
        return True

    def _set_duty_cycle_policy(self) -> bool:
        """Give the calling (duty-cycle) thread ``sched_policy`` (pid 0: this thread on Linux).
        A node that cannot fails rather than run with other scheduling than configured."""
        policy = self.config.sched_policy
        try:
            os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
        except Exception as exc:  # no such call or policy here, or refused
            self._fail(ConfigError("sched_policy", f"cannot give the duty-cycle thread scheduling "
                                                   f"policy {policy!r}: {type(exc).__name__}: {exc}"))
            return False
        self.log.info("duty-cycle thread runs with scheduling policy %s", policy)
        return True

    def _stop_by_cluster_action(self) -> None:
        """Called by NodeAdmin when a cluster shutdown/abort is done here: close the node from
        its own duty cycle (thread mode: after the loop; invoker mode: after this cycle)."""
        self._stop_by_action = True
        self._stop.set()

    def close(self, transfer_timeout_ms: Optional[int] = None) -> None:
        """Stop the node. A leader first hands leadership to an up-to-date follower, so a
        rolling restart costs no election timeout.

        One call closes; a concurrent one waits for it, a re-entrant one (from on_terminate)
        returns. Called from inside a duty cycle (a service callback), it closes once that
        cycle is done. It waits for the duty-cycle thread to end (in invoker mode, for a
        do_work() running on another thread), however long a callback holds it: closing
        beside a running cycle raised and left the node open."""
        me = threading.current_thread()
        if (self._cycle_thread is me or self._driving is me) and not self._close_claimed:
            # inside a duty cycle (a service callback): the cycle must finish (its Ready be
            # advanced) before a hand-over, and nothing may close under the running apply
            self._close_after_cycle = (transfer_timeout_ms,)
            self._stop.set()
            return
        # The first caller claims the close: one dict.setdefault, atomic, no lock. (With a lock,
        # a signal handler's close() interrupting the claim on the same thread blocked on it
        # for ever.) Each call has its own token, so a call re-entered on the closer's thread
        # (on_terminate, a signal handler) knows it is not the closer, and returns.
        token = object()
        closer, closer_token = self._close_claim.setdefault("closer", (me, token))
        if closer_token is not token:  # closing already (possibly on the duty-cycle thread)
            # not from inside a cycle (a callback on the application's thread in invoker mode):
            # the closer waits for that cycle (_drive_lock), so waiting for it here is a deadlock
            if me is not closer and me is not self._thread and self._cycle_thread is not me:
                # as long as the first close waits (it returned after 30 s, the node still open)
                self._wait_busy(self._close_done.wait, "another close()")
            return
        thread = self._thread
        if thread is not None and thread is not me:
            self._stop.set()
            self._wake()
            if thread.ident is not None:   # not one start() set but had not started yet
                self._wait_busy(lambda t: (thread.join(t), not thread.is_alive())[1],
                                "the duty cycle")
            self._thread = None
        drive = self._drive_lock
        self._wait_busy(lambda t: drive.acquire(timeout=t), "a do_work() call")
        try:
            self._close_driven(transfer_timeout_ms)
        finally:
            drive.release()

    def _wait_busy(self, done: Callable[[float], bool], what: str) -> None:
        """close() waiting for a running cycle, however long (``done(timeout_s)`` is True
        once it ended), saying so every _DUTY_THREAD_JOIN_S."""
        waited = 0.0
        while not done(_DUTY_THREAD_JOIN_S):
            waited += _DUTY_THREAD_JOIN_S
            self.log.warning("close: %s is still busy after %.0f s (a service callback or "
                             "snapshot running?): waiting for it", what, waited)

    def _close_driven(self, transfer_timeout_ms: Optional[int]) -> None:
        """close() once no other thread can run a cycle: hand over, then close everything."""
        if self.failure is None and self.core.role == Role.LEADER and not self._admin.stopping:
            try:
                self._hand_over(transfer_timeout_ms or 2 * self.config.election_timeout_ms)
            except Exception as exc:  # a failure (recorded by the cycle) or a failed hand-over
                if self.failure is None:
                    self.log.warning("leadership hand-over failed: %r", exc)
        elif self.failure is not None and self.core.role == Role.LEADER:
            self._ask_successor_to_stand()
        self._closed = True
        self._admin.closing()
        try:
            self.snapshots.close()
        except Exception as exc:
            self.log.warning("error while finishing snapshots: %r", exc)
        try:
            if self.failure is None:   # on_terminate: not after a failure (docs/programming.md)
                self.module.close()
        finally:
            for closer in (self._close_metrics_server,
                           self._publish_counters, self._transport_counters.publish,
                           self._drop_log.close, self.consensus.close,
                           self.ingress.close, self._close_archive, self._close_sync_pipe,
                           self._close_wake_pipe,
                           self._admin.closed,
                           self.counters.close, self._errors.close, self._pid_file.release):
                try:
                    closer()
                except Exception as exc:  # keep closing the rest
                    self.log.warning("error while closing: %r", exc)
            self._close_done.set()

    def _close_deferred(self) -> None:
        """close() after the cycle that asked for it (a cluster shutdown/abort, or close()
        called from a service callback)."""
        asked = self._close_after_cycle
        self.close(asked[0] if asked else None)

    def _close_archive(self) -> None:
        """The archive's final sync failing (EIO, ENOSPC) is an archive failure like any
        other: node.failure, errors.log and FAILED, not a warning and a clean stop."""
        try:
            self.archive.close()
        except Exception as exc:
            if self.failure is not None:
                raise
            self._fail(exc)

    def _check_rejoined(self) -> None:
        """A rejoining member (empty data dir at start) votes again once it holds, durably,
        everything the leader had committed when it first heard from it, or once it leads
        (only members with empty logs can have elected it: a cluster's first election)."""
        core = self.core
        if not core.rejoin_caught_up():
            return
        target = core.rejoin_target
        try:
            os.remove(self._rejoin_mark)
            self.archive.fs.sync_dir(self.config.data_dir)
        except FileNotFoundError:
            pass
        core.rejoining, core.rejoin_target = False, None
        self._fast_step = self._step_path.on_message
        if target:                       # a first start (nothing committed yet) says nothing
            self.log.info("caught up with the cluster (commit index %d, the leader's when this "
                          "member started on an empty data dir): it votes again", target)

    def _wake(self) -> None:
        """End a park of the duty-cycle thread now (close() from another thread)."""
        pipe = self._wake_pipe
        if pipe is not None:
            try:
                os.write(pipe[1], b"\0")
            except OSError:          # BlockingIOError: a wake-up is waiting already
                pass

    def _close_wake_pipe(self) -> None:
        pipe, self._wake_pipe = self._wake_pipe, None
        if pipe is not None:
            for fd in pipe:
                os.close(fd)

    def _close_sync_pipe(self) -> None:
        with self._sync_pipe_lock:
            pipe, self._sync_pipe = self._sync_pipe, None
        if pipe is not None:
            for fd in pipe:
                os.close(fd)

    def _on_divergence(self, error: BaseException) -> None:
        """This member and a leader disagree on what every member must share: the service list
        (ConsensusModule._check_service_set), the settings (ConsensusModule._check_settings) or
        a snapshot's state (StateDigests). Said loudly (log and errors.log, where `aeronpy tool
        describe` shows it), no stop: the member cannot tell which side is wrong."""
        self.log.error("%s", error)
        self._errors.record(error)

    def _on_ballot_tag_mismatch(self, member_id: int, tag: int) -> None:
        """A candidate hosting other services asked for this member's vote and was refused
        (CoreConfig.ballot_tag): said once per member and tag (log and errors.log)."""
        key = (member_id, tag)
        if key in self._ballot_tag_reported or len(self._ballot_tag_reported) >= 64:
            return
        self._ballot_tag_reported.add(key)
        error = ServiceSetError(
            f"member {member_id} asked for this member's vote but hosts other services (or the "
            f"same in another order) than this member's {self._service_names}: "
            "refused, so it cannot lead this member. Every member must host the same --service "
            "list in the same order (docs/operations.md, 'Changing the set of services')")
        self.log.error("%s", error)
        self._errors.record(error)

    def _fit_timeouts_to_pause(self, pause_ns: int) -> None:
        """Keep the election and leader-heartbeat timeouts above twice the last snapshot's
        pause. A snapshot stops the duty cycle (the services serialise their state), and the
        members take theirs at about the same index: with timeouts below the pause, a leader's
        snapshot looked like its death to its followers, and the followers' like theirs to it
        (a 500 ms snapshot on 200/400 ms timeouts gave 14 elections in 15 s). A member cannot
        tell a dead peer from one that serialises for as long as it does itself, so it waits
        that long; failover then takes that long too. Never below the configured values, and
        never so high that a failover outlasts the session timeout (adaptive_timeouts_ns): one
        freak pause (swap, a stalled VM) must not leave failover unbounded or close every
        client session at the next failover."""
        cfg = self.core.config
        base_election = self.config.election_timeout_ms * _MS
        base_leader = self.config.leader_heartbeat_timeout_ms * _MS
        election, leader, capped = adaptive_timeouts_ns(
            pause_ns, base_election, base_leader, self.config.session_timeout_ms * _MS)
        if capped and pause_ns > self._pause_cap_warned_ns:
            self._pause_cap_warned_ns = pause_ns
            self.log.warning(
                "snapshot paused this member %.0f ms: its election timeout is capped at %.0f ms "
                "(so that leader_heartbeat_timeout + election timeout stay below "
                "session_timeout_ms %d), less than twice the pause, so the next snapshot may "
                "cost an election. Keep on_take_snapshot fast, or raise session_timeout_ms "
                "(docs/snapshots.md)", pause_ns / 1e6, election / 1e6,
                self.config.session_timeout_ms)
        if election != cfg.election_timeout_ns:
            if abs(election - cfg.election_timeout_ns) * 4 > cfg.election_timeout_ns:  # >25%
                self.log.info("snapshot paused this member %.0f ms: election timeout now %.0f ms, "
                              "leader heartbeat timeout %.0f ms (configured %d and %d ms)",
                              pause_ns / 1e6, election / 1e6, leader / 1e6,
                              self.config.election_timeout_ms,
                              self.config.leader_heartbeat_timeout_ms)
            cfg.election_timeout_ns = election
            cfg.leader_heartbeat_timeout_ns = leader

    def _hand_over(self, timeout_ms: int) -> None:
        deadline = self._clock() + timeout_ms * _MS
        if not self.core.transfer_leadership(None, self._clock()):
            return
        self._admin.handing_over = True       # the leadership it loses next is given, not lost
        core = self.core
        # Run until a successor leads (its first append names it), not just until we step down.
        while self._clock() < deadline and (core.role == Role.LEADER or core.leader_id in
                                            (None, self.member_id)):
            if self.do_work() == 0:
                time.sleep(0.0002)
        self._tell_clients_the_new_leader()
        # let the TimeoutNow and final acknowledgements leave before the sockets close
        for _ in range(20):
            self.consensus.do_work(self._clock())
            self.ingress.do_work(self._clock())
        if core.leader_id in (None, self.member_id):
            self.log.info("leadership not handed over: no member took over within %d ms (the "
                          "others closing or unreachable); closing as %s", timeout_ms,
                          Role(int(core.role)).name)
        else:
            self.log.info("leadership handed over to member %d (now %s)", core.leader_id,
                          Role(int(core.role)).name)

    def _ask_successor_to_stand(self) -> None:
        """A leader that failed (its disk full, say) cannot run its core any more (a Ready may
        wait for a sync that never comes), but its followers need not wait out the leader
        heartbeat timeout and an election to notice: the follower most up to date is told to
        stand now (TimeoutNow, as a leadership transfer does). Safe whatever it holds: the
        election's votes decide, as after any timeout."""
        leader_state = self.core.leader_state
        target = leader_state.best_transfer_target() if leader_state is not None else None
        if target is None:
            return
        try:
            self.consensus.send(target, self._encode(TimeoutNow(self.core.term)))
            for _ in range(5):           # out before the sockets close
                self.consensus.do_work(self._clock())
        except Exception as exc:  # noqa: BLE001 - best effort on the way out
            self.log.warning("could not ask member %d to stand for election: %r", target, exc)
            return
        self.log.info("this leader failed: member %d asked to stand for election now", target)

    def _tell_clients_the_new_leader(self) -> None:
        """Send each session a NEW_LEADER event naming our successor, from this member.

        Why: the successor's own NEW_LEADER reaches only clients its ingress has heard from
        (a client's first heartbeat to it may be 100 ms away), and a client that misses it
        waits for its resend timeouts (about 1 s) before probing. We still hold a stream to
        every client of ours, and the event is true: the successor leads in ``core.term``.
        """
        core = self.core
        successor = core.leader_id
        if core.role == Role.LEADER or successor is None or successor == self.member_id:
            return
        endpoints = self.module.config.ingress_endpoints()
        for session in self.module.sessions:
            client_ref = self._client_of_endpoint.get(session.response_endpoint)
            if client_ref is not None:
                self.ingress.send(client_ref, self._encode(NewLeaderEvent(
                    session.session_id, core.term, successor, endpoints)))
        self.ingress.flush()

    def __enter__(self) -> "ClusterNode":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


_SEND_EGRESS = ClusterNode._send_egress   # what drain_egress_encoded stands in for
