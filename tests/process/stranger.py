"""A stranger on the network: sprays datagrams at a cluster's ports (standard library only).

    python stranger.py --targets 127.0.0.1:1,127.0.0.1:2 --frames FILE --seconds 3 --rate 4000 --seed 7

Each round sends, to every target, in turn: a random datagram (0..1500 random bytes), a
captured frame replayed as it was, and a captured frame damaged (bytes flipped or cut).
``FILE`` holds the captured frames as ``u32 length | bytes`` records. The total rate is
bounded by ``--rate`` datagrams per second and the run by ``--seconds``. It prints one JSON
line when it starts spraying and one with what it sent when it stops.
"""
from __future__ import annotations

import argparse
import json
import random
import socket
import struct
import sys
import time


def load_frames(path: str) -> list:
    frames = []
    if not path:
        return frames
    with open(path, "rb") as f:
        data = f.read()
    offset = 0
    while offset + 4 <= len(data):
        (length,) = struct.unpack_from("<I", data, offset)
        frames.append(data[offset + 4:offset + 4 + length])
        offset += 4 + length
    return frames


def damaged(frame: bytes, rng: random.Random) -> bytes:
    if not frame or rng.random() < 0.3:
        return frame[:rng.randrange(len(frame) + 1)]
    buf = bytearray(frame)
    for _ in range(rng.randint(1, 4)):
        buf[rng.randrange(len(buf))] ^= 1 << rng.randrange(8)
    return bytes(buf)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--targets", required=True)
    ap.add_argument("--frames", default="")
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--rate", type=int, default=4000)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    rng = random.Random(args.seed)
    targets = []
    for t in args.targets.split(","):
        host, _, port = t.rpartition(":")
        targets.append((host, int(port)))
    frames = load_frames(args.frames)
    sent = {"random": 0, "replayed": 0, "damaged": 0, "errors": 0}
    per_target = {f"{h}:{p}": {"random": 0, "replayed": 0, "damaged": 0} for h, p in targets}
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    print(json.dumps({"event": "spraying", "frames": len(frames)}), flush=True)
    started = time.monotonic()
    deadline = started + args.seconds
    budget = int(args.rate * args.seconds)
    total = 0
    while total < budget:
        now = time.monotonic()
        if now >= deadline:
            break
        if total > args.rate * (now - started):      # pace to the rate
            time.sleep(0.001)
            continue
        for host, port in targets:
            batch = [("random", rng.randbytes(rng.randrange(1501)))]
            if frames:
                frame = rng.choice(frames)
                batch += [("replayed", frame), ("damaged", damaged(frame, rng))]
            for kind, datagram in batch:
                try:
                    sock.sendto(datagram, (host, port))
                    sent[kind] += 1
                    per_target[f"{host}:{port}"][kind] += 1
                except OSError:
                    sent["errors"] += 1
                total += 1
    sock.close()
    print(json.dumps({"event": "done", "sent": sent, "per_target": per_target,
                      "seconds": round(time.monotonic() - started, 3)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
