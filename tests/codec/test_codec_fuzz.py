"""Fuzz the decoders with random and mutated messages: DecodeError is the only error allowed, and
anything that does decode must re-encode to exactly the same bytes (the format is canonical).

The harness is checked against deliberately broken decoders (negative controls), so a harness
that silently stopped finding anything would fail here too."""
import random
import struct
import time

import pytest

from aeronpy import _codec as codec
from aeronpy._codec import DecodeError
from aeronpy.core.messages import AppendEntries

from codec_cases import ALL_CLASSES, kinds_of, reference_pack
from test_codec_golden import GOLDEN_INSTANCES

SEED = 20240611
FRAMES_DEFAULT_RUN = 300_000
TIME_LIMIT_S = 60.0          # a bound, not a target: the run takes a few seconds


def _length_fields(msg) -> list:
    """(offset, width) of every length field of a valid encoding of msg, including the lengths
    inside a packed-entry blob, so mutations can aim at them."""
    rows = codec.layout(type(msg))
    widths = {"i64": 8, "i32": 4, "u32": 4, "bool": 1}
    pos = 4 + sum(widths.get(kind, 0) for _, kind, _ in rows)
    fields = []
    for name, kind, _ in rows:
        if kind in widths:
            continue
        width = 2 if kind == "str" else 4
        value = getattr(msg, name)
        data = value.encode() if kind == "str" else bytes(value)
        fields.append((pos, width))
        if kind == "entries":
            entry = pos + 4
            while entry < pos + 4 + len(data):
                fields.append((entry, 4))
                entry += 16 + struct.unpack_from("<I", data, entry - pos - 4)[0]
        pos += width + len(data)
    if isinstance(msg, AppendEntries):
        fields.append((36, 4))          # the entry count
    return fields


def build_corpus(rng: random.Random) -> list:
    """Valid encodings with their length-field positions: the golden instances, random messages of
    every type, and AppendEntries batches."""
    msgs = list(GOLDEN_INSTANCES)
    for cls in ALL_CLASSES:
        msgs += [_random_message(cls, rng) for _ in range(6)]
    return [(codec.encode(msg), _length_fields(msg)) for msg in msgs]


def _random_message(cls, rng: random.Random):
    if cls is AppendEntries:
        n = rng.choice([0, 1, 5, 27])
        terms = sorted(rng.randrange(6, 1 << 40) for _ in range(n))   # as a leader's log
        entries = [(t, rng.randrange(1 << 16), rng.randbytes(rng.randrange(40))) for t in terms]
        return AppendEntries(rng.randrange(1 << 40, 1 << 41), 100, 6, 99, reference_pack(entries), n)
    pick = {
        "i64": lambda: rng.choice([-(1 << 63), -1, 0, 1, (1 << 63) - 1, rng.getrandbits(63)]),
        "i32": lambda: rng.choice([-(1 << 31), -1, 0, 7, (1 << 31) - 1]),
        "bool": lambda: rng.random() < 0.5,
        "str": lambda: rng.choice(["", "127.0.0.1:9000", "é€😀", "h0:1,h1:2"]),
        "bytes": lambda: rng.randbytes(rng.randrange(60)),   # small: mutation cost grows with size
    }
    return cls(*[pick[kind]() for kind in kinds_of(cls)])


def mutate(rng: random.Random, wire: bytes, length_fields: list, type_ids: list) -> bytes:
    choice = rng.randrange(8)
    data = bytearray(wire)
    if choice == 0 and data:                                        # bit flips
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    elif choice == 1:                                               # truncation
        del data[rng.randrange(len(data) + 1):]
    elif choice == 2:                                               # extension
        data += rng.randbytes(rng.randint(1, 16))
    elif choice == 3 and length_fields:                             # length-field corruption
        offset, width = rng.choice(length_fields)
        old = int.from_bytes(data[offset:offset + width], "little")
        new = rng.choice([0, 1, old - 1, old + 1, old * 2, (1 << (8 * width)) - 1, rng.getrandbits(8 * width)])
        data[offset:offset + width] = (new % (1 << (8 * width))).to_bytes(width, "little")
    elif choice == 4:                                               # another type's header
        data[0:2] = struct.pack("<H", rng.choice(type_ids + [0, 11, 63, 64, 0xFFFF]))
    elif choice == 5:                                               # version corruption
        data[2:4] = struct.pack("<H", rng.choice([0, 2, 0x100, 0xFFFF]))
    elif choice == 6:                                               # valid header, random body
        data = bytearray(struct.pack("<HH", rng.choice(type_ids), 1) + rng.randbytes(rng.randrange(64)))
    else:                                                           # pure noise
        data = bytearray(rng.randbytes(rng.randrange(48)))
    return bytes(data)


def fuzz(decode, encode, corpus, frames: int, rng: random.Random, time_limit_s: float) -> dict:
    """Run `frames` inputs (originals and mutants) through decode; return counts and failures."""
    type_ids = sorted(codec.message_classes())
    stats = {"frames": 0, "decoded": 0, "rejected": 0, "failures": []}
    deadline = time.monotonic() + time_limit_s
    for i in range(frames):
        if i % 4096 == 0 and time.monotonic() > deadline:
            break
        wire, fields = corpus[rng.randrange(len(corpus))]
        data = wire if i % 16 == 0 else mutate(rng, wire, fields, type_ids)
        stats["frames"] += 1
        try:
            msg = decode(data)
        except DecodeError:
            stats["rejected"] += 1
            continue
        except Exception as exc:  # noqa: BLE001 - any other error is exactly what we look for
            stats["failures"].append((data.hex(), repr(exc)))
            continue
        stats["decoded"] += 1
        again = encode(msg)
        if again != data:
            stats["failures"].append((data.hex(), f"re-encodes differently: {again.hex()}"))
    return stats


def test_fuzz_decode_only_raises_decode_error_and_valid_results_round_trip():
    rng = random.Random(SEED)
    corpus = build_corpus(rng)
    stats = fuzz(codec.decode, codec.encode, corpus, FRAMES_DEFAULT_RUN, rng, TIME_LIMIT_S)
    assert stats["failures"] == [], f"seed {SEED}: {stats['failures'][:5]}"
    assert stats["frames"] >= 100_000, stats
    # Both outcomes must be well exercised, or the mutations are too tame or too wild.
    assert stats["decoded"] > 10_000 and stats["rejected"] > 50_000, stats
    print(f"fuzz seed {SEED}: {stats['frames']} frames, {stats['decoded']} decoded, "
          f"{stats['rejected']} rejected")


@pytest.mark.slow
def test_fuzz_long_run_many_seeds():
    """AERONPY_LONG=1: ten more seeds of 1,000,000 frames each."""
    for seed in range(SEED + 100, SEED + 110):
        rng = random.Random(seed)
        stats = fuzz(codec.decode, codec.encode, build_corpus(rng), 1_000_000, rng, 600.0)
        assert stats["failures"] == [], f"seed {seed}: {stats['failures'][:5]}"
        assert stats["frames"] == 1_000_000, stats


def test_fuzz_views_and_layout_table_agree():
    """The flyweight views (decode) and the table walker (_decode_generic) accept and reject the
    same inputs and produce the same messages."""
    rng = random.Random(SEED + 1)
    corpus = build_corpus(rng)
    type_ids = sorted(codec.message_classes())
    for _ in range(50_000):
        wire, fields = corpus[rng.randrange(len(corpus))]
        data = mutate(rng, wire, fields, type_ids)
        outcomes = []
        for decode in (codec.decode, codec._decode_generic):
            try:
                outcomes.append(decode(data))
            except DecodeError:
                outcomes.append(DecodeError)
        assert outcomes[0] == outcomes[1], data.hex()


def test_fuzz_packed_entry_helpers():
    rng = random.Random(SEED + 2)
    for _ in range(20_000):
        entries = [(rng.randrange(-5, 5), rng.randrange(3), rng.randbytes(rng.randrange(20)))
                   for _ in range(rng.randrange(6))]
        blob = bytearray(reference_pack(entries))
        if blob and rng.random() < 0.8:
            if rng.random() < 0.5:
                blob[rng.randrange(len(blob))] ^= 1 << rng.randrange(8)
            else:
                del blob[rng.randrange(len(blob)):]
        try:
            count = codec.validate_packed(blob)
        except DecodeError:
            with pytest.raises(DecodeError):
                codec.iter_packed(blob)
            continue
        parsed = [(t, ty, bytes(p)) for t, ty, p in codec.iter_packed(blob)]
        assert len(parsed) == count and reference_pack(parsed) == bytes(blob)


# ---- negative controls: the harness must catch broken decoders --------------------------------

def test_negative_control_harness_reports_foreign_exceptions():
    rng = random.Random(SEED)
    corpus = build_corpus(rng)

    def leaky_decode(data):
        struct.unpack_from("<HHq", data)          # raises struct.error on short input
        return codec.decode(data)
    stats = fuzz(leaky_decode, codec.encode, corpus, 3000, rng, TIME_LIMIT_S)
    assert any("struct.error" in reason or "error(" in reason for _, reason in stats["failures"])


def test_negative_control_harness_reports_lossy_decoders():
    rng = random.Random(SEED)
    corpus = build_corpus(rng)

    def lossy_decode(data):
        msg = codec.decode(data)
        if hasattr(msg, "term"):
            msg.term = 0                          # drops information: re-encoding differs
        return msg
    stats = fuzz(lossy_decode, codec.encode, corpus, 3000, rng, TIME_LIMIT_S)
    assert any("re-encodes differently" in reason for _, reason in stats["failures"])
