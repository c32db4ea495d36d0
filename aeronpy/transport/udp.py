"""``UdpTransport``: reliable ordered message streams to and from peers over one UDP socket.

One transport = one bound socket, one ``cluster_id``, one ``stream_id`` and this process's
``sender_id`` (a member id, or ``-1`` for a client) with a random ``epoch`` per incarnation.
Each peer gets a ``StreamSender`` (our messages to it) and, once it sends, a
``StreamReceiver`` (its messages to us). Datagrams pass ``Admission`` before any stream sees
them; nothing from the network raises.

Peers come in two kinds:
- *members*, added with ``add_peer(member_id, host, port)``; their frames carry their member
  id as ``sender_id`` and are admitted by it when they come from that member's address (the
  configured one; behind a relay, the first one it was heard from), so a stranger cannot
  forge a "restart" that would retire the member's real stream.
- *clients* (``sender_id == -1``): with ``accept_clients=True`` a transport admits streams from
  unknown addresses. A client is identified by (source address, epoch); the first DATA or
  HEARTBEAT of a new one creates a peer with a negative ``peer_id`` (-2, -3, ...), calls
  ``on_new_client(peer_id, (host, port))``, and from then on ``send(peer_id, ...)`` reaches it
  (egress). A client silent for ``client_timeout_ns`` is removed (``on_client_lost(peer_id)``).

Duty cycle: ``poll(handler, limit)`` receives and delivers; ``send`` queues; ``do_work(now_ns)``
runs the timers (NAK retries, STATUS, HEARTBEAT, client expiry) and flushes the queued
batch with one ``sendmmsg``.
"""
from __future__ import annotations

import os
import time
from collections import OrderedDict, deque
from dataclasses import replace
from functools import partial
from typing import Callable, Optional

from aeronpy._frame import DATA, HEARTBEAT, FrameReader, FrameWriter
from aeronpy._streams import DatagramWalker, TransportCore
from aeronpy._udp import UdpSocket, address_family, address_key, address_tuple
from aeronpy.endpoints import family_name as _family_name
from aeronpy.transport.admission import RETIRED_EPOCHS_MAX, Admission, epoch_is_stale, retire_epoch
from aeronpy.transport.counters import TransportCounters
from aeronpy.transport.streams import StreamConfig, StreamReceiver, StreamSender

CLIENT_SENDER_ID = -1
DEFAULT_STREAM_ID = 1001


class Peer:
    """One remote endpoint: where to send, our stream to it, its stream to us."""

    __slots__ = ("peer_id", "address_key", "sender", "image", "epoch", "retired_epochs",
                 "last_heard_ns", "is_client", "emit", "source_key", "writer", "expire_ns")

    def __init__(self, peer_id: int, address_key_: int, sender: StreamSender, emit, is_client: bool,
                 epoch: Optional[int], now_ns: int, writer: Optional[FrameWriter] = None):
        self.peer_id = peer_id
        self.address_key = address_key_
        self.sender = sender
        self.emit = emit
        self.writer = writer                # frames to this peer (its data, our NAK/STATUS)
        self.image: Optional[StreamReceiver] = None
        self.epoch = epoch                  # the peer's current incarnation (None: not heard yet)
        self.retired_epochs: deque = deque(maxlen=RETIRED_EPOCHS_MAX)
        self.last_heard_ns: Optional[int] = None
        self.is_client = is_client
        self.source_key: Optional[int] = None   # where the current incarnation's frames come from
        self.expire_ns: Optional[int] = None    # a client let go at this time (expire_client)

    @property
    def address(self) -> tuple:
        return address_tuple(self.address_key)


class UdpTransport(TransportCore):
    """Reliable ordered streams over a non-blocking UDP socket (see the module docstring).

    ``send(peer_id, payload)`` is compiled (``TransportCore``): the new stream position (> 0),
    or ``BACK_PRESSURED`` (send buffer full: retry later), ``NOT_CONNECTED`` (no such peer),
    ``CLOSED``; too large a message raises ``MessageTooLargeError``."""

    def __init__(self, bind_host: str, bind_port: int, cluster_id: int, sender_id: int,
                 secret: Optional[bytes] = None, mtu: int = 1408, *,
                 stream_id: int = DEFAULT_STREAM_ID, epoch: Optional[int] = None,
                 config: Optional[StreamConfig] = None, accept_clients: bool = False,
                 max_clients: int = 1024, client_timeout_ns: int = 10_000_000_000,
                 liveness_timeout_ns: int = 500_000_000,
                 on_new_client: Optional[Callable[[int, tuple], object]] = None,
                 on_client_lost: Optional[Callable[[int], object]] = None,
                 rcvbuf_bytes: int = 2 * 1024 * 1024, sndbuf_bytes: int = 2 * 1024 * 1024,
                 batch: int = 64, use_mmsg: bool = True, coalesce: bool = True,
                 clock: Callable[[], int] = time.monotonic_ns):
        if sender_id < CLIENT_SENDER_ID:
            raise ValueError(f"sender_id must be a member id >= 0 or -1 (client), got {sender_id}")
        self.cluster_id = cluster_id
        self.sender_id = sender_id
        self.stream_id = stream_id
        self.epoch = epoch if epoch is not None else (int.from_bytes(os.urandom(4), "little") & 0x7FFFFFFF) or 1
        self.config = replace(config, mtu_bytes=mtu) if config is not None else StreamConfig(mtu_bytes=mtu)
        self.accept_clients = accept_clients
        self.max_clients = max_clients
        self.client_timeout_ns = client_timeout_ns
        self.liveness_timeout_ns = liveness_timeout_ns
        self.on_new_client = on_new_client
        self.on_client_lost = on_client_lost
        self.coalesce = coalesce
        self.counters = TransportCounters()
        self._clock = clock
        self._socket = UdpSocket(bind_host, bind_port, batch=batch, max_datagram_bytes=mtu,
                                 rcvbuf_bytes=rcvbuf_bytes, sndbuf_bytes=sndbuf_bytes,
                                 use_mmsg=use_mmsg)
        self._secret = secret
        self._writer = FrameWriter(cluster_id, sender_id, stream_id, self.epoch, secret)
        # With a secret, frames between members are MACed for their destination member, and
        # ours are checked as frames for us: one captured on its way to another member (same
        # cluster, stream, sender and epoch) fails here instead of taking a place in our
        # stream from that sender, which cut us off from it (a stream that never realigns)
        self._reader = FrameReader(secret, destination=sender_id
                                   if secret is not None and sender_id >= 0 else None)
        self._admission = Admission(self._reader, cluster_id, stream_id,
                                    self.config.max_message_bytes, self.counters)
        self._peers: dict[int, Peer] = {}
        self._clients: dict[tuple[int, int], int] = {}     # (address key, epoch) -> peer id
        # One client per source address: a socket is one client incarnation at a time, so a
        # new epoch from an address replaces the client there. Else one socket sending fresh
        # epochs filled the client table and locked every new client out. Earlier epochs of
        # an address are remembered (bounded) so a late datagram cannot bring one back.
        self._client_by_address: dict[int, int] = {}       # address key -> peer id
        self._retired_client_epochs: "OrderedDict[int, deque]" = OrderedDict()
        self._member_by_address: dict[int, int] = {}       # client transports: address -> peer id
        # address -> where our stream to a forgotten client ended (bounded; see remove_peer)
        self._client_stream_floor: "OrderedDict[int, int]" = OrderedDict()
        self._next_client_id = -2
        self._handler = None
        self._now_ns = clock()
        self._next_timer_ns = 0
        # the datagram walk, compiled (its Python reference: tests/transport/reference_streams.py)
        self._on_datagram_bound = DatagramWalker(self, self._admission, self.epoch)
        self.closed = False

    # ------------------------------------------------------------------ peers
    @property
    def local_address(self) -> tuple:
        return self._socket.local_address

    @property
    def socket(self) -> UdpSocket:
        return self._socket

    def add_peer(self, peer_id: int, host: str, port: int) -> None:
        """Add a member peer (``peer_id >= 0``) reachable at ``host:port``. On a client
        transport, a second id for an address already added is the same peer (one stream;
        messages from it are delivered under the first id)."""
        if peer_id < 0:
            raise ValueError("member peer ids are >= 0; clients are added by the transport")
        if peer_id in self._peers:
            raise ValueError(f"peer {peer_id} already added")
        key = address_key(host, port)
        if address_family(key) != self._socket.family:
            raise ValueError(f"peer {peer_id} at {host}:{port} is {_family_name(address_family(key))}"
                             f", but this transport's socket is {_family_name(self._socket.family)}:"
                             " members and clients of one cluster use one address family")
        same = self._member_by_address.get(key)
        if same is not None and self.sender_id == CLIENT_SENDER_ID:
            # A client given two spellings of one endpoint (a configured name and the address
            # a redirect names): one stream. Two would both start at 0 under our one epoch,
            # and the member, which sees one (address, epoch) stream, dropped the second's
            # messages as duplicates.
            self._peers[peer_id] = self._peers[same]
            return
        self._peers[peer_id] = self._new_peer(peer_id, key, False, None)
        self._member_by_address[key] = peer_id

    def _new_peer(self, peer_id: int, key: int, is_client: bool, epoch: Optional[int],
                  start_position: int = 0) -> Peer:
        # Frames queued to a peer in one duty cycle share datagrams up to the MTU (coalesce).
        emit = partial(self._socket.queue_frame if self.coalesce else self._socket.queue, key)
        writer = self._writer_for(peer_id, is_client)
        sender = StreamSender(writer, emit, self.config, self.counters, self._now_ns,
                              start_position)
        return Peer(peer_id, key, sender, emit, is_client, epoch, self._now_ns, writer)

    def _writer_for(self, peer_id: int, is_client: bool) -> FrameWriter:
        """The writer of frames to a peer: a member's, with a secret, is MACed for that member
        (see ``_reader``); clients have no secret, so theirs is the shared one."""
        if self._secret is None or is_client or peer_id < 0 or self.sender_id < 0:
            return self._writer
        return FrameWriter(self.cluster_id, self.sender_id, self.stream_id, self.epoch,
                           self._secret, destination=peer_id)

    def remove_peer(self, peer_id: int) -> bool:
        peer = self._peers.pop(peer_id, None)
        if peer is None:
            return False
        if peer.is_client:
            self._clients.pop((peer.address_key, peer.epoch), None)
            if self._client_by_address.get(peer.address_key) == peer_id:
                del self._client_by_address[peer.address_key]
            # The client may come back (same address and epoch) still holding its image of
            # our stream, under our unchanged epoch: a new stream to it starts past where this
            # one ended, so the client sees a gap (NAK, SETUP, jump) and never old positions.
            floors = self._client_stream_floor
            floors[peer.address_key] = max(floors.pop(peer.address_key, 0), peer.sender.tail_position)
            while len(floors) > 4 * self.max_clients:
                floors.popitem(last=False)
        elif self._member_by_address.get(peer.address_key) == peer_id:
            del self._member_by_address[peer.address_key]
            alias = next((i for i, p in self._peers.items() if p is peer), None)
            if alias is not None:                # another id of the same endpoint stays
                self._member_by_address[peer.address_key] = alias
                peer.peer_id = alias
        return True

    def expire_client(self, peer_id: int, after_ns: int) -> bool:
        """Let a client go ``after_ns`` from now, however it keeps sending (its session
        closed: the place it holds among ``max_clients`` is freed then, not only after
        ``client_timeout_ns`` of silence). False when there is no such client."""
        peer = self._peers.get(peer_id)
        if peer is None or not peer.is_client:
            return False
        at = self._now_ns + after_ns
        if peer.expire_ns is None or at < peer.expire_ns:
            peer.expire_ns = at
        return True

    def keep_client(self, peer_id: int) -> bool:
        """Undo ``expire_client``: a session opened at the client's address again. False when
        there is no such client."""
        peer = self._peers.get(peer_id)
        if peer is None or not peer.is_client:
            return False
        peer.expire_ns = None
        return True

    def _lose_client(self, peer_id: int) -> None:
        """Forget a client (timed out, or replaced by a new epoch from its address)."""
        self.remove_peer(peer_id)
        self.counters.clients_lost += 1
        if self.on_client_lost is not None:
            self.on_client_lost(peer_id)

    def _retire_client_epoch(self, key: int, epoch: int) -> None:
        retired = self._retired_client_epochs.pop(key, None)
        if retired is None:
            retired = deque(maxlen=RETIRED_EPOCHS_MAX)
        retire_epoch(retired, epoch)
        self._retired_client_epochs[key] = retired          # most recent last
        while len(self._retired_client_epochs) > 4 * self.max_clients:
            self._retired_client_epochs.popitem(last=False)

    def peer_ids(self) -> list:
        return list(self._peers)

    def client_ids(self) -> list:
        return [p for p, peer in self._peers.items() if peer.is_client]

    def peer_address(self, peer_id: int) -> Optional[tuple]:
        peer = self._peers.get(peer_id)
        return None if peer is None else peer.address

    def peer_alive(self, peer_id: int, now_ns: Optional[int] = None) -> bool:
        """True when any admitted frame came from the peer within ``liveness_timeout_ns``."""
        peer = self._peers.get(peer_id)
        if peer is None or peer.last_heard_ns is None:
            return False
        now = self._clock() if now_ns is None else now_ns
        return now - peer.last_heard_ns <= self.liveness_timeout_ns

    def stream_state(self, peer_id: int) -> dict:
        """Positions of both directions with a peer, for tests and diagnostics."""
        peer = self._peers[peer_id]
        s, image = peer.sender, peer.image
        return {"tail": s.tail_position, "sent": s.sent_position, "acked": s.acked_position,
                "buffered_bytes": s.buffered_bytes,
                "received": None if image is None else image.expected_position,
                "peer_epoch": peer.epoch}

    # ------------------------------------------------------------------ sending
    def flush(self) -> int:
        """Send every queued datagram now (``do_work`` does this each duty cycle)."""
        return self._socket.flush()

    # ------------------------------------------------------------------ receiving
    def poll(self, handler: Callable[[int, memoryview], object], limit: int = 64) -> int:
        """Receive up to ``limit`` datagrams; ``handler(peer_id, message)`` gets each whole
        message in order per peer (the memoryview is valid only during the call). Returns
        the number of datagrams processed. An exception from ``handler`` propagates: that
        message counts as delivered, and the rest of the socket batch is lost and repaired
        by NAK like any other loss."""
        if self.closed:
            return 0
        self._now_ns = self._clock()
        self._handler = handler
        try:
            n = self._socket.poll(self._on_datagram_bound, limit)
        finally:
            self._handler = None
        if self._socket.queued:
            self._socket.flush()     # NAK / STATUS answers go out at once
        return n

    def _new_image(self, peer: Peer) -> StreamReceiver:
        peer.image = StreamReceiver(peer.epoch, peer.writer or self._writer, peer.emit, self.config,
                                    self.counters, self._now_ns)
        return peer.image

    def _resolve_peer(self, key: int, sender_id: int, epoch: int, frame_type: int) -> Optional[Peer]:
        """The peer a frame belongs to, handling restarts (new epoch) and new clients."""
        if sender_id >= 0:
            if self.sender_id == CLIENT_SENDER_ID:
                # a client knows members by the endpoints it was given, not by member id:
                # its peer ids are its own numbering, so frames are matched by source address
                peer_id = self._member_by_address.get(key)
                peer = None if peer_id is None else self._peers.get(peer_id)
            else:
                peer = self._peers.get(sender_id)
            if peer is None:
                self._admission.drop("unknown_member")
                return None
            if key != peer.source_key:
                # A member speaks from its configured address (or, behind a relay, from the
                # first address it was heard from, until it is heard from its own). A frame
                # from anywhere else is a stranger or a replay: admitting it would let one
                # forged epoch retire the real member's stream for good.
                if key != peer.address_key and peer.source_key is not None:
                    self._admission.drop("unknown_member")
                    return None
                peer.source_key = key
            if peer.epoch != epoch:
                if epoch_is_stale(peer.retired_epochs, epoch):
                    self._admission.drop("stale_epoch")
                    return None
                if peer.epoch is not None:       # the member restarted: fresh image
                    retire_epoch(peer.retired_epochs, peer.epoch)
                    self.counters.peer_restarts += 1
                    # our tail probes to it start again at the shortest gap: the new image
                    # finds what it lacks (NAK, SETUP) from the next one
                    peer.sender._quiet_heartbeats = 0
                    if peer.image is not None and peer.image._assembly is not None:
                        self.counters.drops["incomplete_message"] += 1   # its message is lost
                peer.epoch = epoch
                peer.image = None
            return peer
        if sender_id != CLIENT_SENDER_ID or not self.accept_clients:
            self._admission.drop("unknown_member")
            return None
        peer_id = self._clients.get((key, epoch))
        if peer_id is not None:
            return self._peers[peer_id]
        if frame_type != DATA and frame_type != HEARTBEAT:
            self._admission.drop("unknown_peer")
            return None
        retired = self._retired_client_epochs.get(key)
        if retired is not None and epoch_is_stale(retired, epoch):
            self._admission.drop("stale_epoch")
            return None
        old_id = self._client_by_address.get(key)
        if old_id is not None:               # this address's client restarted: it replaces
            self._retire_client_epoch(key, self._peers[old_id].epoch)
            self._lose_client(old_id)
        if len(self._clients) >= self.max_clients:
            self._admission.drop("too_many_clients")
            return None
        peer_id = self._next_client_id
        self._next_client_id -= 1
        peer = self._new_peer(peer_id, key, True, epoch, self._client_stream_floor.pop(key, 0))
        self._peers[peer_id] = peer
        self._clients[(key, epoch)] = peer_id
        self._client_by_address[key] = peer_id
        self.counters.clients_connected += 1
        if self.on_new_client is not None:
            self.on_new_client(peer_id, peer.address)
        return peer

    # ------------------------------------------------------------------ duty cycle
    def do_work(self, now_ns: Optional[int] = None) -> int:
        """Timers (at most once per millisecond) and the flush of the queued batch."""
        if self.closed:
            return 0
        now = self._clock() if now_ns is None else now_ns
        self._now_ns = now
        work = 0
        if now >= self._next_timer_ns:
            self._next_timer_ns = now + 1_000_000
            lost = []
            for peer in self._peers.values():
                work += peer.sender.do_work(now)
                if peer.image is not None:
                    work += peer.image.do_work(now)
                if peer.is_client and (now - (peer.last_heard_ns or now) > self.client_timeout_ns
                                       or (peer.expire_ns is not None and now >= peer.expire_ns)):
                    lost.append(peer.peer_id)
            for peer_id in lost:
                self._lose_client(peer_id)
        return work + self._socket.flush()

    def next_due_ns(self) -> int:
        """When ``do_work``'s timers next have something to do (a STATUS, HEARTBEAT or re-NAK
        due, frames waiting for a window, a client to time out), never before the next timer
        run: a parked duty cycle may sleep until then. 0 when closed (nothing to wait for)."""
        if self.closed:
            return 0
        due = 1 << 62
        client_timeout_ns = self.client_timeout_ns
        for peer in self._peers.values():
            d = peer.sender.next_due_ns()
            if d < due:
                due = d
            if peer.image is not None:
                d = peer.image.next_due_ns()
                if d < due:
                    due = d
            if peer.is_client and peer.last_heard_ns is not None:
                d = peer.last_heard_ns + client_timeout_ns + 1
                if d < due:
                    due = d
            if peer.expire_ns is not None and peer.expire_ns < due:
                due = peer.expire_ns
        return max(due, self._next_timer_ns)

    def wait_readable(self, timeout_ns: int) -> bool:
        """Block until a datagram arrives or ``timeout_ns`` passes (for idle strategies)."""
        return self._socket.wait_readable(timeout_ns)

    def socket_counters(self) -> dict:
        return self._socket.counters()

    def snapshot_counters(self) -> dict:
        """Stream counters, drop counters and socket counters in one flat dict of ints."""
        out = self.counters.snapshot()
        sock = self._socket.counters()
        out.update({f"socket_{k}": v for k, v in sock.items()})
        out["drop_oversize"] += sock["truncated"]
        return out

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._socket.close()

    def __enter__(self) -> "UdpTransport":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
