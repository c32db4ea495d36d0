"""The exact error messages of the encoders' integer range checks, pinned.

Why: ``_codec.encode`` (message fields) and ``_codec_batch`` (one-call encoder arguments) share
one range check; each caller's message must keep naming its own field and showing the value
as checked (for a non-int, what its ``__index__`` returned). These messages were taken from
the build before the two checks were merged.
"""
import pytest

from aeronpy import _codec as codec
from aeronpy import _codec_batch as batch
from aeronpy.cluster.protocol import SessionMessage

I32_RANGE = "[-2147483648, 2147483647]"
I64_RANGE = "[-9223372036854775808, 9223372036854775807]"
U32_RANGE = "[0, 4294967295]"


class IndexTo:
    """Not an int; converts to ``value`` through ``__index__`` only."""

    def __init__(self, value: int) -> None:
        self.value = value

    def __index__(self) -> int:
        return self.value

    def __repr__(self) -> str:
        return f"IndexTo({self.value})"


class NamedInt(int):
    """An int subclass with a repr of its own: it is checked as it is, no __index__ call."""

    def __repr__(self) -> str:
        return "NamedInt!"


def encode_field(service_id) -> bytes:
    return codec.encode(SessionMessage(5, 6, 7, service_id, b"xy"))


def encode_argument(service_id) -> bytes:
    return batch.encode_session_message(5, 6, 7, service_id, b"xy")


ENCODERS = [
    pytest.param(encode_field, "SessionMessage.service_id", id="codec-field"),
    pytest.param(encode_argument, "service_id", id="batch-argument"),
]


@pytest.mark.parametrize("encode, name", ENCODERS)
@pytest.mark.parametrize("value, shown, bounds", [
    (2**31, "2147483648", I32_RANGE),                       # just past the top
    (-2**31 - 1, "-2147483649", I32_RANGE),                 # just past the bottom
    (2**70, str(2**70), I32_RANGE),                         # past int64 too (the overflow path)
    (IndexTo(2**31), "2147483648", I32_RANGE),              # the __index__ result, not repr(obj)
    (IndexTo(-2**80), str(-2**80), I32_RANGE),
    (NamedInt(2**40), "NamedInt!", I32_RANGE),              # an int subclass is shown as it is
])
def test_out_of_range_value_error_names_the_field_and_the_checked_value(encode, name, value,
                                                                          shown, bounds):
    with pytest.raises(ValueError) as raised:
        encode(value)
    assert str(raised.value) == f"{name} = {shown} is outside {bounds}"
    assert type(raised.value) is ValueError


@pytest.mark.parametrize("encode, name", ENCODERS)
@pytest.mark.parametrize("value, message", [
    (1.0, "'float' object cannot be interpreted as an integer"),
    ("3", "'str' object cannot be interpreted as an integer"),
    (None, "'NoneType' object cannot be interpreted as an integer"),
])
def test_non_integer_is_a_type_error(encode, name, value, message):
    with pytest.raises(TypeError) as raised:
        encode(value)
    assert str(raised.value) == message


@pytest.mark.parametrize("encode, name", ENCODERS)
@pytest.mark.parametrize("value, same_as", [
    (True, 1), (False, 0), (IndexTo(-9), -9), (NamedInt(12), 12), (2**31 - 1, 2**31 - 1),
])
def test_in_range_values_encode_as_their_int(encode, name, value, same_as):
    assert encode(value) == encode(same_as)
    assert encode(same_as) != encode(same_as - 1)


def test_codec_field_kinds_show_their_own_bounds():
    """i64 and u32 fields go through the same check with their own bounds and names."""
    from aeronpy.core.messages import AppendEntries
    with pytest.raises(ValueError) as raised:
        codec.encode(AppendEntries(IndexTo(2**63), 1, 1, 1, b"", 0))
    assert str(raised.value) == f"AppendEntries.term = {2**63} is outside {I64_RANGE}"
    with pytest.raises(ValueError) as raised:
        codec.encode(AppendEntries(1, 1, 1, 1, b"", -1))
    assert str(raised.value) == f"AppendEntries.count = -1 is outside {U32_RANGE}"


def test_batch_arguments_show_their_own_bounds():
    with pytest.raises(ValueError) as raised:
        batch.encode_append_entries_header_into(bytearray(64), 0, IndexTo(-2**63 - 1), 1, 1, 1,
                                                0, 0)
    assert str(raised.value) == f"term = {-2**63 - 1} is outside {I64_RANGE}"
    with pytest.raises(ValueError) as raised:
        batch.encode_append_entries_header_into(bytearray(64), 0, 1, 1, 1, 1, 2**32, 0)
    assert str(raised.value) == f"count = {2**32} is outside {U32_RANGE}"
    with pytest.raises(ValueError) as raised:
        batch.pack_entries([(1, True + 2**16, b"")], 100)
    assert str(raised.value) == f"entry type = {2**16 + 1} is outside [0, 65535]"
