"""Per-node logger and the burst logger that logs drops once per interval, with the count."""
import logging

from aeronpy.cluster.logsetup import BurstLogger, log_transition, node_logger


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def _messages(caplog):
    return [r.getMessage() for r in caplog.records]


def test_node_logger_name_and_level():
    log = node_logger(3, "debug")
    assert log.name == "aeronpy.node.3" and log.level == logging.DEBUG
    assert node_logger(3) is log


def test_burst_logs_first_drop_then_one_line_per_interval(caplog):
    clock = Clock()
    burst = BurstLogger(logging.getLogger("aeronpy.node.t1"), interval_s=1.0, clock=clock)
    with caplog.at_level(logging.WARNING, logger="aeronpy.node.t1"):
        burst.record("bad_mac")
        for _ in range(99):
            clock.now += 0.005
            burst.record("bad_mac")
        assert _messages(caplog) == ["dropped frames 1 (bad_mac)"]
        clock.now = 101.5
        burst.record("bad_mac")
        assert _messages(caplog)[1] == "dropped frames 100 (bad_mac) in 1.5 s"
        assert all(r.levelno == logging.WARNING for r in caplog.records)


def test_reasons_are_separate_and_flush_and_close_emit_pending(caplog):
    clock = Clock()
    burst = BurstLogger(logging.getLogger("aeronpy.node.t2"), interval_s=1.0, clock=clock)
    with caplog.at_level(logging.WARNING, logger="aeronpy.node.t2"):
        burst.record("bad_mac")
        burst.record("malformed", count=3)
        burst.record("bad_mac", count=4)
        burst.record("malformed")
        assert len(caplog.records) == 2
        burst.flush()                  # too early: nothing
        assert len(caplog.records) == 2
        clock.now += 2
        burst.flush()
        assert sorted(_messages(caplog)[2:]) == ["dropped frames 1 (malformed) in 2.0 s",
                                                 "dropped frames 4 (bad_mac) in 2.0 s"]
        clock.now += 2
        burst.flush()                  # a quiet interval: the next drop logs at once again
        burst.record("bad_mac")
        assert _messages(caplog)[-1] == "dropped frames 1 (bad_mac)"
        burst.record("bad_mac", count=7)
        burst.close()
        assert _messages(caplog)[-1] == "dropped frames 7 (bad_mac) in 0.0 s"


def test_log_transition_format(caplog):
    import enum

    class State(enum.Enum):
        CANVASS = 1
        NOMINATE = 2

    with caplog.at_level(logging.INFO, logger="aeronpy.node.t3"):
        log_transition(logging.getLogger("aeronpy.node.t3"), "election", State.CANVASS,
                       State.NOMINATE, "leader heartbeat timeout")
    assert _messages(caplog) == ["election CANVASS -> NOMINATE: leader heartbeat timeout"]
