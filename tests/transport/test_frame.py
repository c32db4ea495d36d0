"""Frame layer: golden layouts, round trips, MAC, and a fuzz run where only FrameError may
come out of the reader."""
import hashlib
import random
import struct

import pytest
from hypothesis import given, settings, strategies as st

from aeronpy import _frame as F
from aeronpy._frame import FrameError, FrameReader, FrameWriter

HEADER = struct.Struct("<IBBHiiii")


def test_golden_data_frame_bytes():
    frame = FrameWriter(7, 1, 1001, 0x01020304).data(0x10, F.UNFRAGMENTED, 3, b"abc")
    assert frame.hex() == (
        "2b000000" "01" "00" "0100" "07000000" "01000000" "e9030000" "04030201"
        "1000000000000000" "03" "00" "0000" "03000000" "616263")


@pytest.mark.parametrize("kind", ["nak", "status", "heartbeat", "setup"])
def test_control_frames_match_struct_layout(kind):
    w = FrameWriter(-5, 3, 9, -77)
    if kind == "nak":
        frame = w.nak(42, 1 << 40, 1234)
        body = struct.pack("<qii", 1 << 40, 1234, 42)
        ftype = F.NAK
    elif kind == "status":
        frame = w.status(42, 999, 65536)
        body = struct.pack("<qii", 999, 65536, 42)
        ftype = F.STATUS
    elif kind == "heartbeat":
        frame, body, ftype = w.heartbeat(5), struct.pack("<q", 5), F.HEARTBEAT
    else:
        frame, body, ftype = w.setup(6), struct.pack("<q", 6), F.SETUP
    expected = HEADER.pack(24 + len(body), 1, 0, ftype, -5, 3, 9, -77) + body
    assert frame == expected
    assert FrameReader().read(frame) == ftype


@given(position=st.integers(0, (1 << 63) - 1), payload=st.binary(min_size=1, max_size=2000),
       extra=st.integers(0, 5000), flags=st.sampled_from([0, 1, 2, 3]),
       ids=st.tuples(*[st.integers(-(1 << 31), (1 << 31) - 1)] * 4))
@settings(max_examples=200, deadline=None)
def test_data_round_trip(position, payload, extra, flags, ids):
    message_length = len(payload) + (0 if flags == F.UNFRAGMENTED else extra)
    frame = FrameWriter(*ids).data(position, flags, message_length, payload)
    r = FrameReader()
    assert r.read(frame) == F.DATA
    assert (r.cluster_id, r.sender_id, r.stream_id, r.epoch) == ids
    assert (r.position, r.fragment_flags, r.message_length) == (position, flags, message_length)
    assert bytes(r.payload(frame)) == payload


def test_mac_is_keyed_blake2b_and_checked():
    key = b"s" * 32
    w, r = FrameWriter(7, 1, 1, 5, secret=key), FrameReader(secret=key)
    frame = w.data(0, F.UNFRAGMENTED, 4, b"ping")
    body = frame[:-16]
    assert frame[5] & F.MAC_FLAG
    assert frame[-16:] == hashlib.blake2b(body, key=key, digest_size=16).digest()
    assert r.read(frame) == F.DATA and r.mac_ok(frame)
    for i in range(len(frame)):          # any flipped bit breaks the frame or its MAC
        bad = bytearray(frame)
        bad[i] ^= 0x40
        try:
            r.read(bad)
        except FrameError:
            continue
        assert not r.mac_ok(bad), i
    plain = FrameWriter(7, 1, 1, 5).data(0, F.UNFRAGMENTED, 4, b"ping")
    assert r.read(plain) == F.DATA and not r.mac_ok(plain)         # missing MAC
    other = FrameWriter(7, 1, 1, 5, secret=b"x" * 32).heartbeat(3)
    assert r.read(other) == F.HEARTBEAT and not r.mac_ok(other)    # wrong key
    assert FrameReader().read(frame) == F.DATA                     # no secret: MAC ignored


@pytest.mark.parametrize("bad, reason", [
    (b"", "short"), (b"\x00" * 23, "short"),
    (HEADER.pack(24, 2, 0, 4, 0, 0, 0, 0), "version"),
    (HEADER.pack(24, 1, 0x80, 4, 0, 0, 0, 0), "flags"),
    (HEADER.pack(99, 1, 0, 4, 0, 0, 0, 0) + b"\0" * 8, "length"),
    (HEADER.pack(24, 1, 0, 77, 0, 0, 0, 0), "type"),
    (HEADER.pack(24, 1, 0, 1, 0, 0, 0, 0), "body"),                  # DATA without payload
    (HEADER.pack(36, 1, 0, 2, 0, 0, 0, 0) + b"\0" * 12, "body"),     # short NAK
    (HEADER.pack(32, 1, 0, 4, 0, 0, 0, 0) + struct.pack("<q", -1), "body"),
    (HEADER.pack(44, 1, 0, 1, 0, 0, 0, 0) + struct.pack("<qBBHi", 0, 3, 0, 0, 9) + b"abcd", "body"),
    (HEADER.pack(44, 1, 0, 1, 0, 0, 0, 0) + struct.pack("<qBBHi", 0, 8, 0, 0, 4) + b"abcd", "body"),
])
def test_malformed_frames_raise_frame_error(bad, reason):
    with pytest.raises(FrameError) as info:
        FrameReader().read(bad)
    assert info.value.reason == reason
    assert isinstance(info.value, ValueError)


def test_writer_rejects_bad_arguments():
    w = FrameWriter(1, 1, 1, 1)
    for call in (lambda: w.data(-1, 3, 1, b"x"), lambda: w.data(0, 3, 1, b""),
                 lambda: w.data(0, 4, 1, b"x"), lambda: w.data(0, 3, 1, b"xy"),
                 lambda: w.nak(0, 0, 0), lambda: w.status(0, -1, 0), lambda: w.heartbeat(-1)):
        with pytest.raises(ValueError):
            call()
    with pytest.raises(ValueError):
        FrameWriter(1, 1, 1, 1, secret=b"k" * 65)


def test_fuzz_random_and_mutated_frames_only_raise_frame_error():
    rng = random.Random(2024)
    key = b"k" * 16
    readers = [FrameReader(), FrameReader(secret=key)]
    w = FrameWriter(7, 1, 1001, 99, secret=key)
    seeds = [w.data(5, 1, 5000, b"x" * 100), w.nak(3, 0, 10), w.status(3, 7, 100),
             w.heartbeat(9), w.setup(1), FrameWriter(7, 1, 1, 1).data(0, 3, 2, b"hi")]
    parsed = 0
    for i in range(100_000):
        if i % 3 == 0:
            data = rng.randbytes(rng.randrange(0, 80))
        else:
            data = bytearray(rng.choice(seeds))
            for _ in range(rng.randrange(1, 4)):
                op = rng.randrange(3)
                if op == 0 and data:
                    data[rng.randrange(len(data))] = rng.randrange(256)
                elif op == 1:
                    del data[rng.randrange(len(data) + 1):]
                else:
                    data += rng.randbytes(rng.randrange(1, 8))
        for r in readers:
            try:
                r.read(data)
                r.mac_ok(data)
                parsed += 1
            except FrameError:
                pass
    assert parsed > 0     # mutations that keep a frame valid exist; the fuzz reached the bodies
