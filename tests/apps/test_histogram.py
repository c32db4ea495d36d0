"""The histogram against numpy's exact percentiles: within 3 significant digits."""
import math
from fractions import Fraction

import numpy as np
import pytest

from aeronpy.testing.histogram import Histogram, bucket_bounds, bucket_index

PERCENTILES = (0, 1, 10, 50, 90, 99, 99.9, 99.99, 100)


def exact_percentile(data, p):
    """numpy's method="inverted_cdf" with the rank computed in exact arithmetic: numpy's float
    p * n / 100 can land a hair above an integer (99.9 % of 5000) and pick the next value."""
    rank = max(1, math.ceil(Fraction(str(p)) * len(data) / 100))
    return int(np.sort(data)[rank - 1])


def assert_close(got, exact):
    # 3 significant digits: the bucket's width is at most 1/1024 of its value
    assert abs(got - exact) <= exact / 1000 + 1, (got, exact)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_percentiles_match_numpy_on_lognormal_latencies(seed):
    rng = np.random.default_rng(seed)
    data = rng.lognormal(mean=11, sigma=1.5, size=20_000).astype(np.int64)  # ~60 us median, long tail
    hist = Histogram()
    hist.record_many(data.tolist())
    for p in PERCENTILES:
        assert_close(hist.percentile(p), exact_percentile(data, p))
    assert hist.count == len(data)
    assert hist.min == data.min() and hist.max == data.max()
    assert hist.mean() == pytest.approx(data.mean())


def test_small_values_are_exact():
    rng = np.random.default_rng(9)
    data = rng.integers(0, 2048, size=5000)
    hist = Histogram()
    hist.record_many(data.tolist())
    for p in PERCENTILES:
        assert hist.percentile(p) == exact_percentile(data, p)


def test_merge_equals_recording_everything_in_one():
    rng = np.random.default_rng(4)
    a = rng.integers(1, 10**9, size=3000).tolist()
    b = rng.integers(1, 10**5, size=3000).tolist()
    ha, hb, hall = Histogram(), Histogram(), Histogram()
    ha.record_many(a)
    hb.record_many(b)
    hall.record_many(a + b)
    ha.merge(hb)
    assert ha.count == hall.count and ha.min == hall.min and ha.max == hall.max
    for p in PERCENTILES:
        assert ha.percentile(p) == hall.percentile(p)
    assert_close(ha.percentile(50), exact_percentile(np.array(a + b), 50))


def test_bucket_layout_is_contiguous_and_within_a_thousandth():
    previous_high = -1
    for index in range(0, bucket_index(10**12), 997):
        low, high = bucket_bounds(index)
        assert bucket_index(low) == index and bucket_index(high) == index
        assert (high - low) <= max(1, low / 1000)
        assert low > previous_high
        previous_high = high
    for index in range(3000, 3100):  # neighbours touch
        assert bucket_bounds(index)[1] + 1 == bucket_bounds(index + 1)[0]


def test_dict_round_trip_and_bad_input():
    hist = Histogram()
    hist.record_many([5, 5000, 5_000_000])
    again = Histogram.from_dict(hist.to_dict())
    assert again.count == 3 and again.percentile(50) == hist.percentile(50) and again.max == 5_000_000
    with pytest.raises(ValueError):
        hist.record(-1)
    with pytest.raises(ValueError):
        hist.percentile(101)
    assert Histogram().percentile(99) == 0
