"""Gaps found by mutation testing, round 4 (csrc/_frame.pyx): each test fails on the mutant
named in its docstring (/work/notes/trials/mutants4) and passes on the real code. Frames are
built by hand here, from the layout in docs/transport.md, not by the writer under test."""
import struct

import pytest

from aeronpy import _frame as F
from aeronpy._frame import FrameError, FrameReader, FrameWriter

HEADER = struct.Struct("<IBBHiiii")          # frame_length, version, flags, type, ids, epoch
DATA_BODY = struct.Struct("<qBBHI")          # position, fragment flags, 0, 0, message_length


def _data(payload: bytes, fragment_flags: int, message_length: int, reserved8=0,
          reserved16=0) -> bytes:
    return (HEADER.pack(F.DATA_HEADER + len(payload), F.VERSION, 0, F.DATA, 7, 1, 1001, 5)
            + DATA_BODY.pack(64, fragment_flags, reserved8, reserved16, message_length) + payload)


def test_control_a_hand_built_data_frame_reads():
    frame = _data(b"abcd", F.BEGIN, 10)
    assert FrameReader().read(frame) == F.DATA
    assert F.decode(frame)["payload"] == b"abcd"


def test_a_data_frame_without_payload_is_refused():
    """F07 (`flen <= DATA_HEADER` turned `<`): a 40-byte DATA frame (header only) was read
    as a fragment of length 0, which no sender makes."""
    with pytest.raises(FrameError) as err:
        FrameReader().read(_data(b"", F.BEGIN, 10))
    assert err.value.reason == "body"


@pytest.mark.parametrize("reserved8, reserved16", [(1, 0), (0, 1), (0, 0x8000)])
def test_a_data_frame_with_its_reserved_bytes_set_is_refused(reserved8, reserved16):
    """F08 (only the fragment flags checked): bytes 33..36 of a DATA frame are reserved
    (zero); a frame with them set is from a later layout or damaged, never read as ours."""
    with pytest.raises(FrameError, match="reserved"):
        FrameReader().read(_data(b"abcd", F.BEGIN, 10, reserved8, reserved16))


@pytest.mark.parametrize("flags", [F.BEGIN, F.END, 0])
def test_a_fragment_longer_than_its_message_is_refused(flags):
    """F09 (message_length < payload length accepted): a fragment carrying more bytes than
    the whole message it belongs to would overrun the receiver's reassembly of it."""
    with pytest.raises(FrameError, match="longer than its message"):
        FrameReader().read(_data(b"abcdef", flags, 4))
    assert FrameReader().read(_data(b"abcd", flags, 4)) == F.DATA      # control: equal is fine


def test_a_nak_of_no_bytes_is_refused():
    """F11 (NAK length < 1 turned < 0): a NAK asking for 0 bytes asks for nothing; read as
    a NAK it made the sender look up and resend the frame at its position."""
    control = struct.Struct("<qii")          # position, length (NAK) / window (STATUS), epoch
    nak = HEADER.pack(HEADER.size + control.size, F.VERSION, 0, F.NAK, 7, 1, 1001, 5)
    with pytest.raises(FrameError, match="NAK length"):
        FrameReader().read(nak + control.pack(64, 0, 5))
    assert FrameReader().read(nak + control.pack(64, 1, 5)) == F.NAK        # control
    status = HEADER.pack(HEADER.size + control.size, F.VERSION, 0, F.STATUS, 7, 1, 1001, 5)
    assert FrameReader().read(status + control.pack(64, 0, 5)) == F.STATUS  # a window of 0 is fine
