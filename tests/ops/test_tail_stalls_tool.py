"""bench/tail_stalls.py groups slow requests into stall events; the grouping is what its report
(and bench/results/perf.md's account of the open-loop tail) rests on, so it is tested here."""
from benchscript import load


def _tool():
    return load("tail_stalls")


def test_slow_requests_close_together_form_one_event():
    tool = _tool()
    ms = 1_000_000
    done = [(0, 200_000), (1 * ms, 900_000), (2 * ms, 3_000_000), (3 * ms, 700_000),
            (10 * ms, 600_000), (11 * ms, 100_000), (20 * ms, 400_000)]
    events = tool.stall_events(done)
    # [first send, last send, peak us, slow requests]: the 500 us line is exclusive
    assert events == [[1 * ms, 3 * ms, 3000, 3], [10 * ms, 10 * ms, 600, 1]]


def test_a_gap_longer_than_the_event_gap_splits_events():
    tool = _tool()
    gap = tool.EVENT_GAP_NS
    done = [(0, 800_000), (gap, 800_000), (2 * gap + 1, 800_000)]
    events = tool.stall_events(done)
    assert [e[3] for e in events] == [2, 1]          # a grouping that ignored time would give [3]


def test_no_slow_request_no_event():
    tool = _tool()
    assert tool.stall_events([(i * 100_000, 499_000) for i in range(100)]) == []
