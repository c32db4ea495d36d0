"""Capture a running cluster's real UDP frames on loopback, to replay them later.

Why a packet socket: frames between members never pass through the test process, and a
proxy would change the addresses the members use. ``AF_PACKET`` on ``lo`` needs root (or
CAP_NET_RAW) and Linux; without it the caller falls back to synthesised frames.
"""
from __future__ import annotations

import socket
import struct
import threading
from typing import Iterable, List, Optional

_ETH_P_ALL = 0x0003
_PACKET_HOST = 0


def can_capture() -> Optional[str]:
    """None when a loopback capture is possible, else the reason it is not."""
    if not hasattr(socket, "AF_PACKET"):
        return "no AF_PACKET on this platform"
    try:
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(_ETH_P_ALL))
    except OSError as exc:
        return f"cannot open a packet socket ({exc}); needs root or CAP_NET_RAW"
    s.close()
    return None


class LoopbackCapture:
    """Collects UDP payloads from or to ``ports`` on ``lo`` while running (bounded count)."""

    def __init__(self, ports: Iterable[int], max_frames: int = 3000):
        self.ports = set(ports)
        self.max_frames = max_frames
        self.frames: List[bytes] = []
        self._stop = threading.Event()
        self._sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(_ETH_P_ALL))
        self._sock.bind(("lo", 0))
        self._sock.settimeout(0.05)
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "LoopbackCapture":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sock.close()

    def _run(self) -> None:
        while not self._stop.is_set() and len(self.frames) < self.max_frames:
            try:
                packet, address = self._sock.recvfrom(65535)
            except socket.timeout:
                continue
            except OSError:
                return
            if address[2] != _PACKET_HOST:     # each loopback packet is seen out and in
                continue
            payload = self._udp_payload(packet)
            if payload is not None:
                self.frames.append(payload)

    def _udp_payload(self, packet: bytes) -> Optional[bytes]:
        if len(packet) < 14 + 20 + 8 or packet[12:14] != b"\x08\x00":
            return None
        ip = packet[14:]
        ihl = (ip[0] & 0x0F) * 4
        if ip[9] != 17 or len(ip) < ihl + 8:
            return None
        sport, dport, length = struct.unpack_from("!HHH", ip, ihl)
        if sport not in self.ports and dport not in self.ports:
            return None
        return bytes(ip[ihl + 8:ihl + length])


def write_frames(path: str, frames: Iterable[bytes]) -> int:
    n = 0
    with open(path, "wb") as f:
        for frame in frames:
            f.write(struct.pack("<I", len(frame)) + frame)
            n += 1
    return n


def synthesised_frames(cluster_id: int, members: int) -> List[bytes]:
    """Well-formed frames of every type that a stranger could forge without a capture:
    foreign cluster ids, member ids the cluster does not have, and client frames."""
    from aeronpy._frame import FrameWriter

    frames = []
    writers = [FrameWriter(cluster_id, members + 5, 1, 12345),      # unknown member id
               FrameWriter(cluster_id + 1, 0, 1, 12345),            # another cluster
               FrameWriter(0, -1, 1, 777),                          # a client (ingress)
               FrameWriter(0, -1, 0, 778)]
    for w in writers:
        frames += [w.setup(0), w.heartbeat(64), w.data(0, 3, 5, b"hello"),
                   w.nak(99, 0, 64), w.status(99, 0, 65536)]
    return frames
