"""Review of the compiled decoders against adversarial input: a differential of the flyweight
views, the table walker and an independent struct-based reference decoder (written from
docs/wire-format.md) over mutated valid encodings; edge inputs (lying lengths, huge counts,
integer limits) run in a subprocess so a C-level crash fails a test instead of pytest; the
ingress fast reader agrees with decode; the log-entry decoders and the session terms parser
raise nothing but their own errors."""
from __future__ import annotations

import random
import struct
import subprocess
import sys
import textwrap

from hypothesis import HealthCheck, given, settings, strategies as st

from aeronpy import _codec as codec
from aeronpy import _ingress
from aeronpy._codec import DecodeError
from aeronpy.cluster import entries as E
from aeronpy.cluster import protocol as P

from codec_cases import ALL_CLASSES, FIXED_FORMATS, any_message, kinds_of

_BY_ID = {cls.TYPE_ID: cls for cls in ALL_CLASSES}


class _RefReject(Exception):
    pass


def reference_decode(data: bytes):
    """Decode by the documented rules alone (struct, Python's strict UTF-8)."""
    data = bytes(data)
    if len(data) < 4:
        raise _RefReject("short header")
    type_id, version = struct.unpack_from("<HH", data)
    cls = _BY_ID.get(type_id)
    if cls is None or version != 1:
        raise _RefReject("type or version")
    kinds = kinds_of(cls)
    fmt = "<" + "".join(FIXED_FORMATS[k] for k in kinds if k in FIXED_FORMATS)
    if len(data) < 4 + struct.calcsize(fmt):
        raise _RefReject("fixed part")
    fixed = list(struct.unpack_from(fmt, data, 4))
    pos = 4 + struct.calcsize(fmt)
    values = []
    for kind in kinds:
        if kind in FIXED_FORMATS:
            value = fixed.pop(0)
            if kind == "bool":
                if value > 1:
                    raise _RefReject("bool")
                value = bool(value)
        else:
            width = 2 if kind == "str" else 4
            if len(data) - pos < width:
                raise _RefReject("length field")
            n = int.from_bytes(data[pos:pos + width], "little")
            pos += width
            if len(data) - pos < n:
                raise _RefReject("length")
            value = data[pos:pos + n]
            pos += n
            if kind == "str":
                try:
                    value = value.decode("utf-8")
                except UnicodeDecodeError:
                    raise _RefReject("utf-8") from None
        values.append(value)
    if pos != len(data):
        raise _RefReject("trailing")
    msg = cls(*values)
    if cls.__name__ == "AppendEntries":
        blob, terms, p = msg.entries, [], 0
        while p < len(blob) and len(terms) < msg.count:
            if len(blob) - p < 16:
                raise _RefReject("entry header")
            length, _, flags, term = struct.unpack_from("<IHHq", blob, p)
            if flags or len(blob) - p - 16 < length:
                raise _RefReject("entry")
            p += 16 + length
            terms.append(term)
        if p != len(blob) or len(terms) != msg.count:
            raise _RefReject("count")
        floor = msg.prev_term
        for term in terms:
            if not floor <= term <= msg.term:
                raise _RefReject("terms")
            floor = term
    return msg


def _outcome(decode, reject, data):
    try:
        return decode(data)
    except reject:
        return "rejected"


def _mutate(data: bytearray, ops) -> bytes:
    for kind, where, value in ops:
        if not data:
            break
        at = where % len(data)
        if kind == 0:
            data[at] = value & 0xFF
        elif kind == 1:
            del data[at:]
        elif kind == 2:
            data += bytes([value & 0xFF]) * (1 + value % 7)
        elif kind == 3:       # a 2- or 4-byte field set to an extreme
            width = 2 if value & 1 else 4
            extreme = (0, 1, (1 << (8 * width)) - 1, 1 << (8 * width - 1))[value % 4]
            data[at:at + width] = extreme.to_bytes(width, "little")
    return bytes(data)


_ops = st.lists(st.tuples(st.integers(0, 3), st.integers(0, 1 << 20), st.integers(0, 1 << 16)),
                min_size=1, max_size=4)


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(msg=any_message, ops=_ops)
def test_views_table_and_reference_decode_mutants_alike(msg, ops):
    data = _mutate(bytearray(codec.encode(msg)), ops)
    view = _outcome(codec.decode, DecodeError, data)
    table = _outcome(codec._decode_generic, DecodeError, data)
    ref = _outcome(reference_decode, _RefReject, data)
    assert view == table == ref, data.hex()
    if view != "rejected":
        assert codec.encode(view) == data
    if data[:2] == b"\x22\x00":        # SessionMessage: the ingress reader says the same
        fields = _outcome(_ingress.session_message_fields, DecodeError, data)
        expect = "rejected" if view == "rejected" else \
            (view.session_id, view.seq, view.correlation_id, view.service_id, view.payload)
        assert fields == expect


def test_lying_lengths_and_counts_are_rejected_without_a_crash():
    """Each input only ever raises DecodeError, in a child process (a segfault fails here)."""
    script = textwrap.dedent("""
        import struct
        from aeronpy import _codec as c, _ingress
        ae = struct.pack("<HHqqqq", 4, 1, 5, 0, 0, 0)
        cases = [
            ae + struct.pack("<II", 0xFFFFFFFF, 0),
            ae + struct.pack("<II", 1, 0xFFFFFFFF),
            ae + struct.pack("<II", 1, 16) + struct.pack("<IHHq", 0xFFFFFFFF, 0, 0, 1),
            ae + struct.pack("<II", 1, 16) + struct.pack("<IHHq", 0xFFFFFFF0, 0, 0, 1),
            ae + struct.pack("<II", 2, 32) + struct.pack("<IHHq", 0, 0, 0, 1) * 2,
            struct.pack("<HHqqqi", 34, 1, 1, 1, 1, 1) + struct.pack("<I", 0xFFFFFFFF),
            struct.pack("<HHqqqi", 34, 1, 1, 1, 1, 1)[:-1],
            struct.pack("<HHqqii", 33, 1, 1, 1, 1, 1) + b"\\0" * 8 + struct.pack("<H", 0xFFFF),
            struct.pack("<HHqqi", 32, 1, 1, 1, 1) + struct.pack("<H", 3) + b"\\xed\\xa0\\x80"
            + struct.pack("<I", 0),
            struct.pack("<HHqqqqqB", 9, 1, 0, 0, 0, 0, 0, 1) + struct.pack("<I", 0xFFFFFFFF),
            b"\\x22\\x00", b"\\x22\\x00\\x01", b"\\xff\\xff\\x01\\x00", b"",
        ]
        for data in cases:
            for decode in (c.decode, c._decode_generic, _ingress.session_message_fields):
                try:
                    decode(data)
                except c.DecodeError:
                    pass
                for blob_count in (-1, 0, 1, 2 ** 32):
                    try:
                        c.validate_packed(data, blob_count)
                    except c.DecodeError:
                        pass
        print("ok")
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


def test_log_entry_decoders_raise_only_entry_decode_error():
    rng = random.Random(20240611)
    for _ in range(20_000):
        entry_type = rng.choice(list(E.DECODERS) + [0, 15, 22, 0xFFFF])
        payload = bytearray(rng.randbytes(rng.randrange(60)))
        if entry_type == E.SESSION_OPEN and len(payload) >= 26 and rng.random() < 0.5:
            payload[24:26] = (len(payload) - 26).to_bytes(2, "little")   # a consistent length
        for form in (bytes(payload), memoryview(bytes(payload))):
            try:
                E.decode_entry(entry_type, form)
            except E.EntryDecodeError:
                pass


def test_session_terms_parser_keeps_only_plain_in_range_decimals():
    top = P.MAX_SESSION_TERM
    detail = (f"h:1;session_timeout_ms={top + 1};reply_cache_messages=\u0663;"
              "max_message_bytes=-5;max_message_bytes= 7;unknown=1;==;;")
    assert P.parse_session_terms(detail) == ("h:1", {})
    assert P.parse_session_terms(f"h:1;session_timeout_ms={top}") == ("h:1", {"session_timeout_ms": top})
    assert P.parse_session_terms("9" * 5000) == ("9" * 5000, {})
    assert P.parse_session_terms("h;max_message_bytes=" + "9" * 5000) == ("h", {})


def test_a_session_close_entry_with_an_unknown_reason_is_a_decode_error():
    # it raised an enum ValueError from the apply instead (the node stopped either way)
    import pytest

    from aeronpy.service import CloseReason
    for reason in CloseReason:
        assert E.decode_session_close(struct.pack("<qqi", 1, 2, reason)).reason == reason
    for reason in (-1, 3, 2**31 - 1):
        with pytest.raises(E.EntryDecodeError, match="reason"):
            E.decode_session_close(struct.pack("<qqi", 1, 2, reason))
