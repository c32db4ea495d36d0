"""aeronpy._crc: CRC-32C against published vectors, an independent bitwise reference, and the
portable implementation (so the hardware path and the table path are checked against each other)."""
import array
import random
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aeronpy._crc import IMPLEMENTATION, _crc32c_portable, crc32c

IMPLS = [crc32c, _crc32c_portable]


def reference_crc32c(data: bytes, crc: int = 0) -> int:
    """Bit-at-a-time CRC-32C straight from the definition (reflected poly 0x82F63B78)."""
    c = crc ^ 0xFFFFFFFF
    for byte in data:
        c ^= byte
        for _ in range(8):
            c = (c >> 1) ^ (0x82F63B78 if c & 1 else 0)
    return c ^ 0xFFFFFFFF


# Published check values: the CRC catalogue "check" value and RFC 3720 (iSCSI) B.4 vectors.
KNOWN_VECTORS = [
    (b"", 0x00000000),
    (b"123456789", 0xE3069283),
    (bytes(32), 0x8A9136AA),
    (b"\xff" * 32, 0x62A8AB43),
    (bytes(range(32)), 0x46DD794E),
    (bytes(range(31, -1, -1)), 0x113FDB5C),
]


@pytest.mark.parametrize("impl", IMPLS, ids=["dispatch", "portable"])
@pytest.mark.parametrize("data,expected", KNOWN_VECTORS)
def test_known_vectors(impl, data, expected):
    assert impl(data) == expected


def test_reference_agrees_with_known_vectors():
    # Guards the reference itself, so the property tests below compare against something true.
    for data, expected in KNOWN_VECTORS:
        assert reference_crc32c(data) == expected


def test_implementation_name_is_reported():
    assert IMPLEMENTATION in ("sse4.2", "armv8-crc", "portable")


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300), st.data())
def test_incremental_equals_whole(data, draw):
    cut = draw.draw(st.integers(0, len(data)))
    for impl in IMPLS:
        assert impl(data[cut:], impl(data[:cut])) == impl(data)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200), st.integers(0, 0xFFFFFFFF))
def test_matches_bitwise_reference(data, seed_crc):
    expected = reference_crc32c(data, seed_crc)
    assert crc32c(data, seed_crc) == expected
    assert _crc32c_portable(data, seed_crc) == expected


def test_hardware_and_portable_agree_on_large_misaligned_buffers():
    rng = random.Random(1234)
    blob = rng.randbytes((1 << 20) + 77)
    view = memoryview(blob)
    for start in range(0, 9):  # every alignment of the start pointer
        for length in (0, 1, 7, 8, 9, 4095, 4096, 4097, 65536 + 3, len(blob) - start):
            chunk = view[start:start + length]
            assert crc32c(chunk) == _crc32c_portable(chunk), (start, length)


def test_large_buffer_incremental_in_pieces():
    rng = random.Random(99)
    blob = rng.randbytes(3 << 20)
    crc = 0
    pos = 0
    while pos < len(blob):
        step = rng.randint(1, 200_000)
        crc = crc32c(blob[pos:pos + step], crc)
        pos += step
    assert crc == crc32c(blob) == _crc32c_portable(blob)


def test_any_contiguous_buffer_type():
    raw = bytes(range(256)) * 20  # 5120 bytes: above the GIL-release threshold
    expected = reference_crc32c(raw)
    words = array.array("I")
    words.frombytes(raw)
    np = pytest.importorskip("numpy")
    for buf in (raw, bytearray(raw), memoryview(raw), words, np.frombuffer(raw, dtype=np.uint16),
                memoryview(bytearray(raw)).toreadonly()):
        assert crc32c(buf) == expected, type(buf)
        assert _crc32c_portable(buf) == expected, type(buf)


@pytest.mark.parametrize("bad", ["123456789", 12345, None, [1, 2, 3], 1.5])
def test_non_buffers_raise_type_error(bad):
    for impl in IMPLS:
        with pytest.raises(TypeError):
            impl(bad)


def test_non_contiguous_buffer_is_refused():
    strided = memoryview(bytes(range(100)))[::2]
    with pytest.raises(BufferError):
        crc32c(strided)


@pytest.mark.parametrize("bad_crc", [-1, 1 << 32])
def test_crc_argument_out_of_range(bad_crc):
    with pytest.raises(OverflowError):
        crc32c(b"x", bad_crc)


def test_concurrent_threads_get_correct_results():
    # Large buffers run without the GIL; results must not be mixed between threads.
    rng = random.Random(5)
    blobs = [rng.randbytes(256 * 1024 + i) for i in range(4)]
    expected = [_crc32c_portable(b) for b in blobs]
    results = {}

    def work(i):
        results[i] = [crc32c(blobs[i]) for _ in range(5)]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    for i in range(4):
        assert results[i] == [expected[i]] * 5
