"""Codec benchmarks: batched AppendEntries encode/decode in ns per entry against a pure-Python
`struct` implementation of the same work measured in the same run, and SessionMessage /
EgressMessage encode/decode in ns per message.

    python -m pytest bench/test_bench_codec.py -q -s -p no:cacheprovider \
        --benchmark-min-time=0.00005 --benchmark-columns=min,median,mean,rounds

Frame budget: a 1408-byte datagram minus the 24-byte frame header and 16 bytes of DATA frame body
leaves 1368 bytes for the message; 44 of those are the AppendEntries header, so 27 entries of
16 + 32 bytes fit. With -s a table of ns/entry and ratios is printed at the end.
"""
import struct

import pytest

from aeronpy import _codec as codec
from aeronpy.cluster.protocol import EgressMessage, SessionMessage

MTU_BYTES = 1408
FRAME_OVERHEAD_BYTES = 24 + 16
MESSAGE_BUDGET_BYTES = MTU_BYTES - FRAME_OVERHEAD_BYTES
PAYLOAD_BYTES = 32

ENTRIES = [(7, 16, bytes([i]) * PAYLOAD_BYTES) for i in range(64)]   # more than fit a frame
FRAME, COUNT = codec.encode_append_entries(7, 1000, 7, 990, ENTRIES, MESSAGE_BUDGET_BYTES)

# ---- the pure-Python baseline: the same work with struct, entry by entry ----------------------

AE_HEADER = struct.Struct("<HHqqqqII")
ENTRY_HEADER = struct.Struct("<IHHq")


def struct_encode_append_entries(term, prev_index, prev_term, commit_index, entries, max_bytes):
    buf = bytearray(max_bytes)
    pos, count = AE_HEADER.size, 0
    for entry_term, entry_type, payload in entries:
        n = len(payload)
        if count and pos + 16 + n > max_bytes:
            break
        ENTRY_HEADER.pack_into(buf, pos, n, entry_type, 0, entry_term)
        buf[pos + 16:pos + 16 + n] = payload
        pos += 16 + n
        count += 1
    AE_HEADER.pack_into(buf, 0, 4, 1, term, prev_index, prev_term, commit_index, count, pos - AE_HEADER.size)
    return bytes(buf[:pos]), count


def struct_decode_append_entries(data):
    mtype, version, term, prev_index, prev_term, commit_index, count, length = AE_HEADER.unpack_from(data)
    if mtype != 4 or version != 1 or AE_HEADER.size + length != len(data):
        raise ValueError("bad AppendEntries")
    entries, pos, end = [], AE_HEADER.size, len(data)
    for _ in range(count):
        if end - pos < 16:
            raise ValueError("truncated entry")
        n, entry_type, flags, entry_term = ENTRY_HEADER.unpack_from(data, pos)
        if flags or pos + 16 + n > end:
            raise ValueError("bad entry")
        entries.append((entry_term, entry_type, data[pos + 16:pos + 16 + n]))
        pos += 16 + n
    if pos != end:
        raise ValueError("trailing bytes")
    return term, prev_index, prev_term, commit_index, entries


SM_HEADER = struct.Struct("<HHqqqiI")


def struct_encode_session_message(session_id, seq, correlation_id, service_id, payload):
    return SM_HEADER.pack(34, 1, session_id, seq, correlation_id, service_id, len(payload)) + payload


def struct_decode_session_message(data):
    mtype, version, session_id, seq, correlation_id, service_id, n = SM_HEADER.unpack_from(data)
    if mtype != 34 or version != 1 or SM_HEADER.size + n != len(data):
        raise ValueError("bad SessionMessage")
    return SessionMessage(session_id, seq, correlation_id, service_id, data[SM_HEADER.size:])


# ---- results table ---------------------------------------------------------------------------

RESULTS = {}


@pytest.fixture(scope="module", autouse=True)
def report():
    yield
    if not RESULTS:
        return
    print(f"\n\ncodec benchmark (median; AppendEntries frame of {COUNT} x {PAYLOAD_BYTES}-byte entries, "
          f"{len(FRAME)} bytes)")
    for name, (ns, unit) in RESULTS.items():
        print(f"  {name:48s} {ns:9.1f} ns/{unit}")
    for fast, slow in [("AE encode: encode_append_entries", "AE encode: struct baseline"),
                       ("AE decode: decode (validated blob)", "AE decode: struct baseline"),
                       ("AE decode: decode + iter_packed", "AE decode: struct baseline"),
                       ("SM encode: encode_session_message", "SM encode: struct baseline"),
                       ("SM decode: decode", "SM decode: struct baseline"),
                       ("full: LogIndex.pack + encode", "AE encode: struct baseline"),
                       ("full: LogIndex.pack_into + header_into", "AE encode: struct baseline"),
                       ("full: decode + LogIndex.append_packed", "AE decode: struct baseline")]:
        if fast in RESULTS and slow in RESULTS:
            print(f"  speed-up {fast!r} vs baseline: {RESULTS[slow][0] / RESULTS[fast][0]:.1f}x")


def _record(benchmark, name, per, unit):
    ns = benchmark.stats.stats.median * 1e9 / per
    RESULTS[name] = (ns, unit)
    benchmark.extra_info[f"ns_per_{unit}"] = round(ns, 1)


def test_sanity_baseline_and_codec_agree():
    assert COUNT == 27
    assert struct_encode_append_entries(7, 1000, 7, 990, ENTRIES, MESSAGE_BUDGET_BYTES) == (FRAME, COUNT)
    msg = codec.decode(FRAME)
    assert struct_decode_append_entries(FRAME)[4] == [(t, ty, bytes(p)) for t, ty, p in codec.iter_packed(msg.entries)]


# ---- AppendEntries ---------------------------------------------------------------------------

def test_ae_encode_codec(benchmark):
    benchmark(codec.encode_append_entries, 7, 1000, 7, 990, ENTRIES, MESSAGE_BUDGET_BYTES)
    _record(benchmark, "AE encode: encode_append_entries", COUNT, "entry")


def test_ae_encode_codec_two_step(benchmark):
    """pack_entries then encode(AppendEntries(...)): the path via a message object."""
    from aeronpy.core.messages import AppendEntries

    def two_step():
        blob, n = codec.pack_entries(ENTRIES, MESSAGE_BUDGET_BYTES - 44)
        return codec.encode(AppendEntries(7, 1000, 7, 990, blob, n))
    assert two_step() == FRAME
    benchmark(two_step)
    _record(benchmark, "AE encode: pack_entries + encode(msg)", COUNT, "entry")


def test_ae_encode_struct_baseline(benchmark):
    benchmark(struct_encode_append_entries, 7, 1000, 7, 990, ENTRIES, MESSAGE_BUDGET_BYTES)
    _record(benchmark, "AE encode: struct baseline", COUNT, "entry")


def test_ae_decode_codec(benchmark):
    benchmark(codec.decode, FRAME)
    _record(benchmark, "AE decode: decode (validated blob)", COUNT, "entry")


def test_ae_decode_codec_iterate(benchmark):
    """decode, then a Python tuple per entry through iter_packed (what a consumer without
    LogIndex.append_packed would do)."""
    def decode_and_iterate():
        return list(codec.iter_packed(codec.decode(FRAME).entries))
    benchmark(decode_and_iterate)
    _record(benchmark, "AE decode: decode + iter_packed", COUNT, "entry")


def test_ae_decode_struct_baseline(benchmark):
    benchmark(struct_decode_append_entries, FRAME)
    _record(benchmark, "AE decode: struct baseline", COUNT, "entry")


# ---- SessionMessage / EgressMessage ----------------------------------------------------------

PAYLOAD = b"x" * PAYLOAD_BYTES
SESSION_MESSAGE = SessionMessage(42, 1001, 77, 0, PAYLOAD)
SESSION_WIRE = codec.encode(SESSION_MESSAGE)
EGRESS_MESSAGE = EgressMessage(42, 77, 1001, PAYLOAD)
EGRESS_WIRE = codec.encode(EGRESS_MESSAGE)


def test_sm_encode_message_object(benchmark):
    benchmark(codec.encode, SESSION_MESSAGE)
    _record(benchmark, "SM encode: encode(msg)", 1, "msg")


def test_sm_encode_one_call(benchmark):
    benchmark(codec.encode_session_message, 42, 1001, 77, 0, PAYLOAD)
    _record(benchmark, "SM encode: encode_session_message", 1, "msg")


def test_sm_encode_struct_baseline(benchmark):
    assert struct_encode_session_message(42, 1001, 77, 0, PAYLOAD) == SESSION_WIRE
    benchmark(struct_encode_session_message, 42, 1001, 77, 0, PAYLOAD)
    _record(benchmark, "SM encode: struct baseline", 1, "msg")


def test_sm_decode(benchmark):
    benchmark(codec.decode, SESSION_WIRE)
    _record(benchmark, "SM decode: decode", 1, "msg")


def test_sm_decode_struct_baseline(benchmark):
    assert struct_decode_session_message(SESSION_WIRE) == SESSION_MESSAGE
    benchmark(struct_decode_session_message, SESSION_WIRE)
    _record(benchmark, "SM decode: struct baseline", 1, "msg")


def test_egress_encode_message_object(benchmark):
    benchmark(codec.encode, EGRESS_MESSAGE)
    _record(benchmark, "EM encode: encode(msg)", 1, "msg")


def test_egress_encode_one_call(benchmark):
    benchmark(codec.encode_egress_message, 42, 77, 1001, PAYLOAD)
    _record(benchmark, "EM encode: encode_egress_message", 1, "msg")


def test_egress_decode(benchmark):
    benchmark(codec.decode, EGRESS_WIRE)
    _record(benchmark, "EM decode: decode", 1, "msg")


# ---- full path with the log index (when aeronpy._logindex exists) -----------------------------

def _log_index_or_skip():
    logindex = pytest.importorskip("aeronpy._logindex", reason="LogIndex not built on this branch yet")
    log = logindex.LogIndex()
    for term, entry_type, payload in ENTRIES[:COUNT]:
        log.append(term, entry_type, payload)
    return logindex, log


def test_full_path_log_pack_and_encode(benchmark):
    from aeronpy.core.messages import AppendEntries
    _, log = _log_index_or_skip()

    def leader_send():
        blob, n = log.pack(1, log.last_index + 1, MESSAGE_BUDGET_BYTES - 44)
        return codec.encode(AppendEntries(7, 0, 0, 0, blob, n))
    assert codec.decode(leader_send()).count == COUNT
    benchmark(leader_send)
    _record(benchmark, "full: LogIndex.pack + encode", COUNT, "entry")


def test_full_path_log_pack_into_frame_buffer(benchmark):
    """Leader side without intermediate copies: the log packs straight into the send buffer
    after room for the header, then the header goes in front."""
    _, log = _log_index_or_skip()
    buf = bytearray(MESSAGE_BUDGET_BYTES)

    def leader_send_in_place():
        n, count = log.pack_into(buf, 44, 1, log.last_index + 1, MESSAGE_BUDGET_BYTES - 44)
        codec.encode_append_entries_header_into(buf, 0, 7, 0, 0, 0, count, n)
        return 44 + n
    assert codec.decode(bytes(buf[:leader_send_in_place()])).count == COUNT
    benchmark(leader_send_in_place)
    _record(benchmark, "full: LogIndex.pack_into + header_into", COUNT, "entry")


def test_full_path_decode_and_append(benchmark):
    """Follower side; includes creating an empty LogIndex per frame (keeps memory flat)."""
    logindex, _ = _log_index_or_skip()
    wire = codec.encode_append_entries(7, 0, 0, 0, ENTRIES, MESSAGE_BUDGET_BYTES)[0]

    def follower_receive():
        log = logindex.LogIndex()
        msg = codec.decode(wire)
        return log.append_packed(msg.entries, msg.count)
    assert follower_receive() == COUNT
    benchmark(follower_receive)
    _record(benchmark, "full: decode + LogIndex.append_packed", COUNT, "entry")
