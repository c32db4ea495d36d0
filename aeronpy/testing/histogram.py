"""A small HDR-style latency histogram: log-linear buckets holding 3 significant digits.

Why not keep every sample: a 60-second benchmark at 200k msgs/s would hold 12M floats; a
histogram holds a few thousand counters whatever the run length, merges across processes by
adding counters, and still answers p99.9 within 0.1 %.

Bucket layout (the HdrHistogram idea, written here from its description): values below
``2 * SUB_BUCKET_HALF`` (2048) get one bucket each, so they are exact. Above that, every
power-of-two range ``[2**k, 2**(k+1))`` is split into ``SUB_BUCKET_HALF`` (1024) equal
sub-buckets, so a bucket's width is at most 1/1024 of its lowest value: a relative error
below 0.1 %, i.e. 3 significant decimal digits. Values are integers (nanoseconds by
convention); the bucket array grows on demand, so there is no upper bound to configure.
"""
from __future__ import annotations

import math
from typing import Dict, Iterable, Iterator, List, Tuple

SUB_BUCKET_BITS = 10
SUB_BUCKET_HALF = 1 << SUB_BUCKET_BITS            # 1024 sub-buckets per power of two
LINEAR_LIMIT = SUB_BUCKET_HALF << 1               # 2048: below this, one bucket per value
MAX_VALUE = (1 << 62) - 1                         # ~146 years in ns; a larger value is an error


def bucket_index(value: int) -> int:
    """Index of the bucket holding ``value`` (a non-negative int)."""
    if value < LINEAR_LIMIT:
        return value
    shift = value.bit_length() - (SUB_BUCKET_BITS + 1)   # >= 1
    sub = value >> shift                                  # in [1024, 2047]
    return LINEAR_LIMIT + (shift - 1) * SUB_BUCKET_HALF + (sub - SUB_BUCKET_HALF)


def bucket_bounds(index: int) -> Tuple[int, int]:
    """(lowest, highest) value that map to bucket ``index``, both inclusive."""
    if index < LINEAR_LIMIT:
        return index, index
    shift = (index - LINEAR_LIMIT) // SUB_BUCKET_HALF + 1
    sub = (index - LINEAR_LIMIT) % SUB_BUCKET_HALF + SUB_BUCKET_HALF
    return sub << shift, ((sub + 1) << shift) - 1


class Histogram:
    """Counts of integer values (ns) in log-linear buckets; exact min, max, count and sum."""

    __slots__ = ("_counts", "count", "min", "max", "total")

    def __init__(self) -> None:
        self._counts: List[int] = []
        self.count = 0
        self.min = 0
        self.max = 0
        self.total = 0      # sum of recorded values, for the mean

    def record(self, value_ns: int, count: int = 1) -> None:
        """Record ``value_ns`` ``count`` times. Floats are rounded; negatives are refused."""
        value = int(round(value_ns))
        if value < 0 or value > MAX_VALUE:
            raise ValueError(f"histogram value {value_ns!r} outside [0, {MAX_VALUE}]")
        if count <= 0:
            raise ValueError(f"histogram count must be positive, got {count!r}")
        index = bucket_index(value)
        counts = self._counts
        if index >= len(counts):
            counts.extend([0] * (index + 1 - len(counts)))
        counts[index] += count
        if self.count == 0:
            self.min = self.max = value
        else:
            if value < self.min:
                self.min = value
            if value > self.max:
                self.max = value
        self.count += count
        self.total += value * count

    def record_many(self, values_ns: Iterable[int]) -> None:
        for value in values_ns:
            self.record(value)

    def merge(self, other: "Histogram") -> "Histogram":
        """Add ``other``'s counts into this histogram (in place); returns self."""
        if other.count == 0:
            return self
        if len(other._counts) > len(self._counts):
            self._counts.extend([0] * (len(other._counts) - len(self._counts)))
        for index, n in enumerate(other._counts):
            if n:
                self._counts[index] += n
        if self.count == 0:
            self.min, self.max = other.min, other.max
        else:
            self.min = min(self.min, other.min)
            self.max = max(self.max, other.max)
        self.count += other.count
        self.total += other.total
        return self

    def percentile(self, p: float) -> int:
        """Smallest recorded value v (to 3 significant digits) with at least p % of values <= v.

        This is the "inverted CDF" definition (numpy ``method="inverted_cdf"``), as
        HdrHistogram's ``getValueAtPercentile``; the answer is clamped to the exact min/max.
        """
        if not 0.0 <= p <= 100.0:
            raise ValueError(f"percentile must be within [0, 100], got {p!r}")
        if self.count == 0:
            return 0
        rank = max(1, math.ceil(p / 100.0 * self.count - 1e-9))
        seen = 0
        for index, n in enumerate(self._counts):
            seen += n
            if seen >= rank:
                return max(self.min, min(self.max, bucket_bounds(index)[1]))
        return self.max

    def mean(self) -> float:
        return self.total / self.count if self.count else 0.0

    def buckets(self) -> Iterator[Tuple[int, int, int]]:
        """(lowest, highest, count) of every non-empty bucket, in value order (for plots)."""
        for index, n in enumerate(self._counts):
            if n:
                low, high = bucket_bounds(index)
                yield low, high, n

    def summary_us(self) -> Dict[str, float]:
        """The figures every benchmark reports, in microseconds (values recorded in ns)."""
        return {
            "count": self.count,
            "mean_us": round(self.mean() / 1e3, 1),
            "p50_us": round(self.percentile(50) / 1e3, 1),
            "p90_us": round(self.percentile(90) / 1e3, 1),
            "p99_us": round(self.percentile(99) / 1e3, 1),
            "p99_9_us": round(self.percentile(99.9) / 1e3, 1),
            "max_us": round(self.max / 1e3, 1),
        }

    def to_dict(self) -> Dict[str, object]:
        """Sparse JSON-safe form, for shipping a histogram between processes."""
        return {"buckets": [[i, n] for i, n in enumerate(self._counts) if n],
                "min": self.min, "max": self.max, "total": self.total}

    @classmethod
    def from_dict(cls, data: Dict[str, object]) -> "Histogram":
        hist = cls()
        for index, n in data["buckets"]:  # type: ignore[union-attr]
            index, n = int(index), int(n)
            if index < 0 or n <= 0:
                raise ValueError(f"bad histogram bucket {index}:{n}")
            if index >= len(hist._counts):
                hist._counts.extend([0] * (index + 1 - len(hist._counts)))
            hist._counts[index] += n
            hist.count += n
        if hist.count:
            hist.min, hist.max = int(data["min"]), int(data["max"])  # type: ignore[arg-type]
            hist.total = int(data["total"])  # type: ignore[arg-type]
        return hist
