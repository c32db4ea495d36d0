"""How the compiled ingress opens a frame: every outcome of reading a SessionMessage view
(another message type, too short to name one, malformed, well formed) and the buffer's
lifetime around it.

Why: ``session_message_fields`` and ``IngressPath.on_frame`` share one helper that opens the
buffer and reads the view; the view's payload points into the frame, so the buffer must stay
held while on_frame handles the message and be released on every way out (a bytearray frame
cannot be resized while it is held, which is what these tests look at).
"""
from __future__ import annotations

import struct
from types import SimpleNamespace

import pytest

from aeronpy import _codec
from aeronpy._codec import DecodeError
from aeronpy._ingress import IngressPath, session_message_fields
from aeronpy.cluster.protocol import SessionKeepAlive, SessionMessage

GOOD = _codec.encode(SessionMessage(11, 12, 13, 4, b"payload"))
OTHER = _codec.encode(SessionKeepAlive(11, 2))
MALFORMED = GOOD[:-1]                                      # payload one byte short


def assert_released(frame: bytearray | memoryview) -> None:
    """BufferError while a buffer of ``frame`` is still exported."""
    if type(frame) is memoryview:
        frame.release()
    else:
        frame.extend(b"\x00")
        del frame[-1]


def assert_held(frame: bytearray) -> None:
    with pytest.raises(BufferError):
        frame.extend(b"\x00")


@pytest.mark.parametrize("wire, want", [
    (GOOD, (11, 12, 13, 4, b"payload")),
    (OTHER, None),
    (b"", None),
    (GOOD[:1], None),
    (struct.pack("<H", 34), "DecodeError"),                 # names SessionMessage, no more
    (MALFORMED, "DecodeError"),
    (GOOD + b"\x00", "DecodeError"),
], ids=["good", "other-type", "empty", "one-byte", "type-only", "short-payload", "trailing"])
def test_session_message_fields_outcomes_release_the_frame(wire: bytes, want) -> None:
    for frame in (bytearray(wire), memoryview(bytearray(wire))):
        if want == "DecodeError":
            with pytest.raises(DecodeError):
                session_message_fields(frame)
        else:
            assert session_message_fields(frame) == want
        assert_released(frame)


def test_session_message_fields_refuses_what_has_no_buffer() -> None:
    with pytest.raises(TypeError):
        session_message_fields("not bytes")


@pytest.mark.parametrize("wire", [OTHER, b"", GOOD[:1]], ids=["other-type", "empty", "one-byte"])
def test_on_frame_leaves_other_messages_to_the_caller_untouched(wire: bytes) -> None:
    """Not a SessionMessage: False, before the clock or the module are looked at."""
    def clock():
        raise AssertionError("clock read for a message that is not a SessionMessage")

    frame = bytearray(wire)
    assert IngressPath(SimpleNamespace()).on_frame("ref", frame, clock) is False
    assert_released(frame)


@pytest.mark.parametrize("wire", [struct.pack("<H", 34), MALFORMED, GOOD + b"\x00"],
                         ids=["type-only", "short-payload", "trailing"])
def test_on_frame_raises_decode_error_before_the_clock(wire: bytes) -> None:
    read = []
    frame = bytearray(wire)
    with pytest.raises(DecodeError):
        IngressPath(SimpleNamespace()).on_frame("ref", frame, lambda: read.append(1) or 0)
    assert read == []
    assert_released(frame)


def test_on_frame_holds_the_frame_while_handling_and_releases_it_on_an_error() -> None:
    """The clock is read after the decode, with the frame still held; an error from there
    on leaves on_frame with the frame released."""
    frame = bytearray(GOOD)
    seen = []

    def clock():
        assert_held(frame)
        seen.append("clock")
        raise RuntimeError("clock failed")

    with pytest.raises(RuntimeError, match="clock failed"):
        IngressPath(SimpleNamespace()).on_frame("ref", frame, clock)
    assert seen == ["clock"]
    assert_released(frame)
