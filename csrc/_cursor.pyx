# cython: language_level=3
"""Home of DecodeError, the single error type every aeronpy decoder raises on malformed input.

The cursor itself is inline code in _cursor.pxd/_cursor.h; aeronpy._codec re-exports this class.
"""


class DecodeError(ValueError):
    """Malformed bytes from the wire: the sender or the network is at fault, not the caller."""

    __module__ = "aeronpy._codec"
